//! Tenant isolation as an attacker tries it: a user with `edit` on namespace `a` only must not
//! make content of namespace `b` readable through `a` by any door (istag and isimage sources,
//! stream spec and status writes, mappings, rollbacks, mounts, imports, the CLI), and refusals
//! must not tell whether anything in `b` exists. The honest paths stay open.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{berth_in, image_manifest, sha256, TestServer, OCI_MANIFEST};

const API: &str = "/apis/image.openshift.io/v1";
const ADMIN_PASSWORD: &str = "admin-password-1";
const PASSWORD: &str = "user-password-1";

/// What namespace `b` holds: its image's manifest, config and layer digests.
pub struct Secret {
    pub manifest: String,
    pub config: String,
    pub layer: String,
}

pub async fn start() -> TestServer {
    TestServer::start_with(|c| c.admin_password = Some(ADMIN_PASSWORD.into())).await
}

pub async fn admin(s: &TestServer, method: Method, path: &str, body: Value) -> reqwest::Response {
    s.req(method, path)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Creates `user` bound to each `(namespace, role)`.
pub async fn user(s: &TestServer, name: &str, roles: &[(&str, &str)]) {
    let r = admin(
        s,
        Method::POST,
        "/auth/v1/users",
        json!({"name": name, "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for (ns, role) in roles {
        let r = admin(
            s,
            Method::PUT,
            &format!("/auth/v1/namespaces/{ns}/rolebindings/{name}"),
            json!({"role": role}),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}

/// A request as `who` (password auth).
pub fn as_user(s: &TestServer, who: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    let password = if who == "admin" {
        ADMIN_PASSWORD
    } else {
        PASSWORD
    };
    s.req(method, path).basic_auth(who, Some(password))
}

pub async fn send(
    s: &TestServer,
    who: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = as_user(s, who, method, path);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Pushes `b/secret:v1` as the admin and returns its digests.
pub async fn secret_in_b(s: &TestServer) -> Secret {
    let (manifest, bytes) = s
        .push_image_as(
            Some(("admin", ADMIN_PASSWORD)),
            "b/secret",
            "v1",
            "b's secret",
        )
        .await;
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    Secret {
        manifest,
        config: m["config"]["digest"].as_str().unwrap().to_string(),
        layer: m["layers"][0]["digest"].as_str().unwrap().to_string(),
    }
}

/// Whether `who` can read `secret`'s manifest or any of its blobs through `repo`.
pub async fn can_read(s: &TestServer, who: &str, repo: &str, secret: &Secret) -> bool {
    let mut paths = vec![format!("/v2/{repo}/manifests/{}", secret.manifest)];
    for blob in [&secret.config, &secret.layer] {
        paths.push(format!("/v2/{repo}/blobs/{blob}"));
    }
    for path in paths {
        let r = as_user(s, who, Method::GET, &path).send().await.unwrap();
        if r.status().is_success() {
            return true;
        }
    }
    false
}

fn istag_body(tag: &str, kind: &str, ns: &str, name: &str) -> Value {
    json!({"kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1",
           "metadata": {"name": format!("x:{tag}")},
           "tag": {"name": tag, "from": {"kind": kind, "namespace": ns, "name": name}}})
}

/// A refusal's message with the namespace-independent parts only (to compare two refusals).
fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().to_string()
}

async fn eve_in_a(s: &TestServer) {
    user(s, "eve", &[("a", "edit")]).await;
    let r = s
        .push_image_as(Some(("eve", PASSWORD)), "a/x", "mine", "eve's own")
        .await;
    assert!(!r.0.is_empty());
}

#[tokio::test]
async fn spec_tag_sources_in_unreadable_namespaces_are_refused_alike() {
    let s = start().await;
    let secret = secret_in_b(&s).await;
    eve_in_a(&s).await;
    let istag = format!("{API}/namespaces/a/imagestreamtags/x:stolen");
    let hex = secret.manifest.trim_start_matches("sha256:");
    let mut refusals = Vec::new();
    for (kind, name) in [
        ("ImageStreamImage", format!("secret@{}", secret.manifest)),
        ("ImageStreamImage", "secret@".to_string()),
        ("ImageStreamImage", "secret@sha256:".to_string()),
        ("ImageStreamImage", format!("secret@{}", &hex[..6])),
        ("ImageStreamImage", format!("nothing@{}", secret.manifest)),
        ("ImageStreamTag", "secret:v1".to_string()),
        ("ImageStreamTag", "nothing:v1".to_string()),
    ] {
        let (status, body) = send(
            &s,
            "eve",
            Method::PUT,
            &istag,
            Some(istag_body("stolen", kind, "b", &name)),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{kind} {name}: {body}");
        let text = body.to_string();
        assert!(!text.contains(&secret.manifest[7..19]), "{text}");
        refusals.push(message(&body));
    }
    // Whether b/secret exists or not, the answer is the same.
    refusals.dedup();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0].contains("imagestreams/layers"), "{refusals:?}");

    // The stream's own spec, by PUT and by merge patch, is the same door.
    let path = format!("{API}/namespaces/a/imagestreams/x");
    let (_, mut is) = send(&s, "eve", Method::GET, &path, None).await;
    is["spec"]["tags"] = json!([{"name": "stolen", "from": {"kind": "ImageStreamImage",
        "namespace": "b", "name": format!("secret@{}", secret.manifest)}}]);
    let (status, _) = send(&s, "eve", Method::PUT, &path, Some(is)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = as_user(&s, "eve", Method::PATCH, &path)
        .header("content-type", "application/merge-patch+json")
        .body(
            json!({"spec": {"tags": [{"name": "stolen", "from": {"kind": "ImageStreamTag",
            "namespace": "b", "name": "secret:v1"}}]}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // And by strategic merge patch (kubectl's default).
    let r = as_user(&s, "eve", Method::PATCH, &path)
        .header("content-type", "application/strategic-merge-patch+json")
        .body(
            json!({"spec": {"tags": [{"name": "stolen", "from": {"kind": "ImageStreamTag",
            "namespace": "b", "name": "secret:v1"}}]}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A new stream created with such a spec.
    let (status, _) = send(
        &s,
        "eve",
        Method::POST,
        &format!("{API}/namespaces/a/imagestreams"),
        Some(
            json!({"metadata": {"name": "fresh"}, "spec": {"tags": [{"name": "t",
            "from": {"kind": "ImageStreamImage", "namespace": "b",
                     "name": format!("secret@{}", secret.manifest)}}]}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The CLI is the API with eve's token: the same refusal.
    let (_, token) = send(
        &s,
        "eve",
        Method::POST,
        "/auth/v1/tokens",
        Some(json!({"description": "cli"})),
    )
    .await;
    let token = token["token"]
        .as_str()
        .expect("an access token")
        .to_string();
    let out = berth_in(
        &s,
        "a",
        &[
            "--token",
            &token,
            "tag",
            &format!("b/secret@{}", secret.manifest),
            "a/x:stolen",
        ],
    )
    .await;
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains("forbidden"), "{}", out.stderr);

    for repo in ["a/x", "a/fresh"] {
        assert!(!can_read(&s, "eve", repo, &secret).await, "{repo}");
    }
    let is = send(&s, "admin", Method::GET, &path, None).await.1;
    assert!(!is.to_string().contains(&secret.manifest));
}

#[tokio::test]
async fn mappings_and_status_writes_cannot_name_unreadable_content() {
    let s = start().await;
    let secret = secret_in_b(&s).await;
    eve_in_a(&s).await;
    let mapping = |name: &str, tag: &str| {
        json!({"metadata": {"name": "x"}, "tag": tag,
               "image": {"metadata": {"name": name},
                         "dockerImageReference": format!("elsewhere.example/x@{name}")}})
    };
    let mappings = format!("{API}/namespaces/a/imagestreammappings");
    let (status, body) = send(
        &s,
        "eve",
        Method::POST,
        &mappings,
        Some(mapping(&secret.manifest, "mapped")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!message(&body).contains("b/"), "{body}");

    // Status writes: on top, and buried under eve's own image (a later rollback would lift it).
    let path = format!("{API}/namespaces/a/imagestreams/x");
    let status_path = format!("{path}/status");
    let (_, is) = send(&s, "eve", Method::GET, &path, None).await;
    let own = is["status"]["tags"][0]["items"][0].clone();
    let stolen = json!({"created": "2026-01-01T00:00:00Z", "image": secret.manifest,
                        "dockerImageReference": format!("h/a/x@{}", secret.manifest), "generation": 1});
    for items in [
        json!([stolen.clone()]),
        json!([own.clone(), stolen.clone()]),
    ] {
        let mut body = is.clone();
        body["status"]["tags"] = json!([{"tag": "mine", "items": items}]);
        let (status, answer) = send(&s, "eve", Method::PUT, &status_path, Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    }
    assert!(!can_read(&s, "eve", "a/x", &secret).await);

    // A cluster-admin may write status (as OpenShift's registry does).
    let mut body = send(&s, "admin", Method::GET, &path, None).await.1;
    body["status"]["tags"] = json!([{"tag": "mine", "items": [own, stolen]}]);
    let (status, answer) = send(&s, "admin", Method::PUT, &status_path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // ...but eve cannot lift the buried entry to the top by a rollback.
    let (status, _) = send(
        &s,
        "eve",
        Method::PUT,
        &format!("{API}/namespaces/a/imagestreamtags/x:up"),
        Some(istag_body(
            "up",
            "ImageStreamImage",
            "a",
            &format!("x@{}", secret.manifest),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!can_read(&s, "eve", "a/x", &secret).await);

    // Image names are digests.
    for bad in ["x/../../y", "sha256:zz", "latest"] {
        let (status, body) = send(
            &s,
            "eve",
            Method::POST,
            &mappings,
            Some(mapping(bad, "bad")),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let mut body = send(&s, "eve", Method::GET, &path, None).await.1;
    body["status"]["tags"][0]["items"][0]["image"] = json!("x/../../y");
    let (status, _) = send(&s, "eve", Method::PUT, &status_path, Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn images_come_from_content_not_from_callers() {
    let s = start().await;
    let secret = secret_in_b(&s).await;
    eve_in_a(&s).await;
    // b will push this manifest later; eve learns its digest in advance.
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"owner":"b"}}}"#;
    let layer = b"b's later layer";
    let manifest = image_manifest(
        &sha256(config),
        config.len(),
        &[(&sha256(layer), layer.len())],
        "",
    );
    let later = sha256(&manifest);
    let mappings = format!("{API}/namespaces/a/imagestreammappings");
    // The seed's shape: an Image for a digest berth does not hold, with inline metadata (here
    // a forged label and b's layer).
    let forged = json!({"metadata": {"name": "x"}, "tag": "pre",
        "image": {"metadata": {"name": later, "labels": {"forged": "yes"}},
                  "dockerImageReference": format!("elsewhere.example/x@{later}"),
                  "dockerImageLayers": [{"name": secret.layer, "size": 10,
                      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}]}});
    let (status, body) = send(&s, "eve", Method::POST, &mappings, Some(forged)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A forged layer list links nothing.
    assert!(!can_read(&s, "eve", "a/x", &secret).await);

    // b pushes that manifest: the Image becomes the true one.
    s.push_blob_as(Some(("admin", ADMIN_PASSWORD)), "b/late", config)
        .await;
    s.push_blob_as(Some(("admin", ADMIN_PASSWORD)), "b/late", layer)
        .await;
    let r = s
        .put_manifest_as(
            Some(("admin", ADMIN_PASSWORD)),
            "b/late",
            "v1",
            OCI_MANIFEST,
            &manifest,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, image) = send(
        &s,
        "admin",
        Method::GET,
        &format!("{API}/images/{later}"),
        None,
    )
    .await;
    assert!(
        image["metadata"]["labels"].get("forged").is_none(),
        "{image}"
    );
    assert_eq!(
        image["dockerImageLayers"][0]["name"],
        sha256(layer).as_str(),
        "{image}"
    );
    assert_eq!(
        image["metadata"]["annotations"]["openshift.io/image.managed"],
        "true"
    );
    // eve's early history entry does not make b's pushed content readable through a/x, on
    // top or by a rollback to it.
    let r = as_user(&s, "eve", Method::GET, "/v2/a/x/manifests/pre")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (status, _) = send(
        &s,
        "eve",
        Method::PUT,
        &format!("{API}/namespaces/a/imagestreamtags/x:back"),
        Some(istag_body(
            "back",
            "ImageStreamImage",
            "a",
            &format!("x@{later}"),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = as_user(
        &s,
        "eve",
        Method::GET,
        &format!("/v2/a/x/blobs/{}", sha256(layer)),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A mapping of content eve may read: repeating its metadata is fine, contradicting is not.
    let (own, _) = s
        .push_image_as(Some(("eve", PASSWORD)), "a/y", "v1", "eve's second")
        .await;
    let map_own = |labels: Value| {
        json!({"metadata": {"name": "y"}, "tag": "copy",
               "image": {"metadata": {"name": own, "labels": labels},
                         "dockerImageReference": format!("h/a/y@{own}")}})
    };
    let (status, body) = send(
        &s,
        "eve",
        Method::POST,
        &mappings,
        Some(map_own(json!({"fake": "1"}))),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = send(&s, "eve", Method::POST, &mappings, Some(map_own(json!({})))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let r = as_user(&s, "eve", Method::GET, "/v2/a/y/manifests/copy")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn honest_cross_namespace_tagging_still_works() {
    let s = start().await;
    let secret = secret_in_b(&s).await;
    // carol edits a and may view b: she may tag b's image into a, and pull it there.
    user(&s, "carol", &[("a", "edit"), ("b", "view")]).await;
    let (status, body) = send(
        &s,
        "carol",
        Method::PUT,
        &format!("{API}/namespaces/a/imagestreamtags/x:copied"),
        Some(istag_body(
            "copied",
            "ImageStreamImage",
            "b",
            &format!("secret@{}", secret.manifest),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(
        &s,
        "carol",
        Method::PUT,
        &format!("{API}/namespaces/a/imagestreamtags/z:tracked"),
        Some(istag_body(
            "tracked",
            "ImageStreamImage",
            "b",
            &format!("secret@{}", &secret.manifest[7..19]),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(can_read(&s, "carol", "a/x", &secret).await);
    let r = as_user(&s, "carol", Method::GET, "/v2/a/x/manifests/copied")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let layer = as_user(
        &s,
        "carol",
        Method::GET,
        &format!("/v2/a/x/blobs/{}", secret.layer),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        layer.bytes().await.unwrap().as_ref(),
        b"layer of b's secret"
    );
    // Within a, a rollback to an image the stream serves works for carol.
    let (status, body) = send(
        &s,
        "carol",
        Method::PUT,
        &format!("{API}/namespaces/a/imagestreamtags/x:again"),
        Some(istag_body(
            "again",
            "ImageStreamImage",
            "a",
            &format!("x@{}", secret.manifest),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn mounting_from_an_unreadable_repository_opens_a_plain_upload() {
    let s = start().await;
    let secret = secret_in_b(&s).await;
    eve_in_a(&s).await;
    let r = as_user(
        &s,
        "eve",
        Method::POST,
        &format!(
            "/v2/a/x/blobs/uploads/?mount={}&from=b/secret",
            secret.layer
        ),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(!can_read(&s, "eve", "a/x", &secret).await);
}

/// A registry an attacker runs: it serves one manifest (naming a layer it does not have) and
/// its config, and answers 404 for everything else.
async fn forged_registry(manifest: Vec<u8>, config: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (manifest_digest, config_digest) = (sha256(&manifest), sha256(&config));
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let (manifest, config) = (manifest.clone(), config.clone());
            let (md, cd) = (manifest_digest.clone(), config_digest.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    // A TLS handshake (the insecure policy tries HTTPS first): plain HTTP only.
                    if got.first() == Some(&0x16) {
                        return;
                    }
                }
                let head = String::from_utf8_lossy(&got);
                let line = head.lines().next().unwrap_or_default().to_string();
                let path = line.split(' ').nth(1).unwrap_or_default();
                let head_only = line.starts_with("HEAD");
                let (status, ctype, body): (&str, &str, Vec<u8>) = if path == "/v2/" {
                    ("200 OK", "application/json", b"{}".to_vec())
                } else if path.ends_with("/manifests/latest") || path.ends_with(&md) {
                    ("200 OK", OCI_MANIFEST, manifest)
                } else if path.ends_with(&cd) {
                    ("200 OK", "application/octet-stream", config)
                } else {
                    (
                        "404 Not Found",
                        "application/json",
                        br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#
                            .to_vec(),
                    )
                };
                let mut out = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\
                     docker-content-digest: {md}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                if !head_only {
                    out.extend_from_slice(&body);
                }
                let _ = conn.write_all(&out).await;
            });
        }
    });
    format!("127.0.0.1:{}", addr.port())
}

#[tokio::test]
async fn an_imported_manifest_cannot_claim_layers_it_does_not_have() {
    let s = TestServer::start_with(|c| {
        c.admin_password = Some(ADMIN_PASSWORD.into());
        crate::common::allow_loopback_imports(c);
    })
    .await;
    let secret = secret_in_b(&s).await;
    user(&s, "eve", &[("a", "edit")]).await;
    // eve knows the digest of b's layer, not its bytes, and serves a manifest naming it.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let manifest = image_manifest(
        &sha256(&config),
        config.len(),
        &[(&secret.layer, "layer of b's secret".len())],
        "",
    );
    let remote = forged_registry(manifest, config).await;
    let (status, body) = send(
        &s,
        "eve",
        Method::POST,
        &format!("{API}/namespaces/a/imagestreamimports"),
        Some(
            json!({"kind": "ImageStreamImport", "apiVersion": "image.openshift.io/v1",
            "metadata": {"name": "stolen"},
            "spec": {"import": true, "images": [{
                "from": {"kind": "DockerImage", "name": format!("{remote}/evil/img:latest")},
                "to": {"name": "latest"}, "importPolicy": {"insecure": true}}]}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["status"]["images"][0]["status"]["status"], "Success",
        "{body}"
    );
    // The layer is fetched from the source on first pull, which does not have it.
    let r = as_user(
        &s,
        "eve",
        Method::GET,
        &format!("/v2/a/stolen/blobs/{}", secret.layer),
    )
    .send()
    .await
    .unwrap();
    assert!(!r.status().is_success(), "{}", r.status());
    assert!(!can_read(&s, "eve", "a/stolen", &secret).await);
    // b still reads its own layer.
    let r = as_user(
        &s,
        "admin",
        Method::GET,
        &format!("/v2/b/secret/blobs/{}", secret.layer),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
