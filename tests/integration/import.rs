//! Imports from another registry (a second berth on 127.0.0.1 here; Debian's docker-registry
//! in `peer_import.rs`): the ImageStreamImport API, background and scheduled imports of
//! DockerImage tags, import modes, failure conditions, pull-through, and the CLI verbs.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use berth::config::AllowedRegistry;

use crate::common::{
    allow_loopback_imports, header, history, image_manifest, sha256, status_tag, stream,
    TestServer, OCI_INDEX, OCI_MANIFEST,
};

const API: &str = "/apis/image.openshift.io/v1";

fn host(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_string()
}

async fn post(s: &TestServer, path: &str, body: &Value) -> reqwest::Response {
    s.req(Method::POST, path).json(body).send().await.unwrap()
}

/// Polls `check` on the stream until it holds (imports run in the background).
async fn eventually(
    s: &TestServer,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = s
            .get(&format!("{API}/namespaces/{ns}/imagestreams/{name}"))
            .await;
        if r.status() == StatusCode::OK {
            let is: Value = r.json().await.unwrap();
            if check(&is) {
                return is;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}: {is:#}");
            }
        } else if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}: stream status {}", r.status());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pushes a single-layer image for `arch`; returns (manifest digest, layer digest, layer).
async fn push_arch(
    s: &TestServer,
    repo: &str,
    reference: &str,
    arch: &str,
) -> (String, String, Vec<u8>) {
    let config =
        format!(r#"{{"architecture":"{arch}","os":"linux","config":{{"Cmd":["/bin/{arch}"]}}}}"#);
    // Unique per push, so pushing the same tag twice makes a new image.
    static PUSHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = PUSHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let layer = format!("layer {n} for {arch} in {repo}:{reference}").into_bytes();
    let cd = s.push_blob(repo, config.as_bytes()).await;
    let ld = s.push_blob(repo, &layer).await;
    let manifest = image_manifest(&cd, config.len(), &[(&ld, layer.len())], "");
    let r = s
        .put_manifest(repo, reference, OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    (sha256(&manifest), ld, layer)
}

/// Pushes amd64 and arm64 images and an index of both under `tag`; returns
/// (index digest, amd64 digest, arm64 digest).
async fn push_index(s: &TestServer, repo: &str, tag: &str) -> (String, String, String) {
    let (amd, _, _) = push_arch(s, repo, "amd64-child", "amd64").await;
    let (arm, _, _) = push_arch(s, repo, "arm64-child", "arm64").await;
    let entry = |d: &str, arch: &str| {
        json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 1,
               "platform": {"architecture": arch, "os": "linux"}})
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [entry(&arm, "arm64"), entry(&amd, "amd64")],
    }))
    .unwrap();
    let r = s.put_manifest(repo, tag, OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    (sha256(&index), amd, arm)
}

fn import_request(name: &str, from: &str, to: &str, import: bool, policy: Value) -> Value {
    json!({
        "kind": "ImageStreamImport", "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": name},
        "spec": {"import": import, "images": [{
            "from": {"kind": "DockerImage", "name": from},
            "to": {"name": to},
            "importPolicy": policy,
        }]},
    })
}

/// The platform a Legacy import picks on this machine when nothing is preferred.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

#[tokio::test]
async fn import_api_dry_run_import_and_pull_through() {
    let mut src = TestServer::start().await;
    let (digest, layer_digest, layer) = push_arch(&src, "lib/app", "v1", "amd64").await;
    let from = format!("{}/lib/app:v1", host(&src));
    let dst = TestServer::start_with(allow_loopback_imports).await;
    let path = format!("{API}/namespaces/team/imagestreamimports");

    // A dry run reports the image and stores nothing.
    let r = post(
        &dst,
        &path,
        &import_request("app", &from, "v1", false, json!({"insecure": true})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let isi: Value = r.json().await.unwrap();
    assert_eq!(
        isi["status"]["images"][0]["status"]["status"], "Success",
        "{isi:#}"
    );
    assert_eq!(
        isi["status"]["images"][0]["image"]["metadata"]["name"],
        digest.as_str()
    );
    assert!(isi["status"]["import"].is_null());
    assert_eq!(
        dst.get(&format!("{API}/namespaces/team/imagestreams/app"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Plain HTTP needs the insecure flag.
    let isi: Value = post(
        &dst,
        &path,
        &import_request("app", &from, "v1", false, json!({})),
    )
    .await
    .json()
    .await
    .unwrap();
    let status = &isi["status"]["images"][0]["status"];
    assert_eq!(status["status"], "Failure");
    assert_eq!(
        status["message"],
        format!(
            "the repository {}/lib/app is HTTP only and requires the insecure flag to import",
            host(&src)
        )
    );

    // An invalid import mode is refused with the field.
    let r = post(
        &dst,
        &path,
        &import_request("app", &from, "v1", true, json!({"importMode": "legacy"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let s: Value = r.json().await.unwrap();
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("spec.images[0].importPolicy.importMode"),
        "{s}"
    );

    // The import creates the stream, the tag and the (unmanaged) Image.
    let r = post(
        &dst,
        &path,
        &import_request("app", &from, "v1", true, json!({"insecure": true})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let isi: Value = r.json().await.unwrap();
    let is = &isi["status"]["import"];
    let top = &status_tag(is, "v1")["items"][0];
    assert_eq!(top["image"], digest.as_str());
    assert_eq!(
        top["dockerImageReference"],
        format!("{}/lib/app@{digest}", host(&src))
    );
    let image: Value = dst
        .get(&format!("{API}/images/{digest}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(image["metadata"]["annotations"]["openshift.io/image.managed"].is_null());
    assert_eq!(image["dockerImageMetadata"]["Architecture"], "amd64");

    // The manifest is served by tag; the layer is pulled through from the source ...
    let r = dst.get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), Some(digest.as_str()));
    let r = dst.get(&format!("/v2/team/app/blobs/{layer_digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(layer_digest.as_str())
    );
    assert_eq!(r.bytes().await.unwrap(), layer);
    let config_digest = image["dockerImageConfigDigest"]
        .as_str()
        .unwrap()
        .to_string();
    let r = dst
        .head(&format!("/v2/team/app/blobs/{config_digest}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // ... and served locally once the source is gone.
    src.stop().await;
    let r = dst.get(&format!("/v2/team/app/blobs/{layer_digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), layer);
    let r = dst
        .get(&format!("/v2/team/app/blobs/{config_digest}"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // A blob that was never part of the image is still unknown.
    let r = dst
        .get(&format!("/v2/team/app/blobs/{}", sha256(b"nope")))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_pulls_fetch_a_blob_once() {
    let src = TestServer::start().await;
    let big = vec![7u8; 8 * 1024 * 1024];
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = src.push_blob("lib/big", config).await;
    let ld = src.push_blob("lib/big", &big).await;
    let manifest = image_manifest(&cd, config.len(), &[(&ld, big.len())], "");
    assert_eq!(
        src.put_manifest("lib/big", "v1", OCI_MANIFEST, &manifest)
            .await
            .status(),
        StatusCode::CREATED
    );
    let dst = TestServer::start_with(allow_loopback_imports).await;
    let from = format!("{}/lib/big:v1", host(&src));
    let r = post(
        &dst,
        &format!("{API}/namespaces/team/imagestreamimports"),
        &import_request("big", &from, "v1", true, json!({"insecure": true})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let pulls = (0..6).map(|_| {
        let (client, url) = (
            dst.client.clone(),
            dst.url(&format!("/v2/team/big/blobs/{ld}")),
        );
        tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            sha256(&r.bytes().await.unwrap())
        })
    });
    for p in pulls {
        assert_eq!(p.await.unwrap(), ld);
    }
}

#[tokio::test]
async fn docker_tags_import_in_the_background_and_on_schedule() {
    let src = TestServer::start().await;
    let (first, _, _) = push_arch(&src, "lib/web", "latest", "amd64").await;
    let dst = TestServer::start_with(|c| {
        allow_loopback_imports(c);
        c.scheduled_import_interval_secs = 1;
    })
    .await;
    let from = format!("{}/lib/web:latest", host(&src));

    // What `berth tag --scheduled --insecure <remote> web:latest` sends.
    let body = json!({
        "kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": "web:latest"},
        "tag": {"name": "latest", "generation": 0,
                "from": {"kind": "DockerImage", "name": from},
                "importPolicy": {"insecure": true, "scheduled": true}},
    });
    let r = dst
        .req(
            Method::PUT,
            &format!("{API}/namespaces/team/imagestreamtags/web:latest"),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // A tracker of latest follows what the import brings.
    let alias = json!({"metadata": {"name": "web:stable"},
        "tag": {"name": "stable", "from": {"kind": "ImageStreamTag", "name": "latest"}}});
    dst.req(
        Method::PUT,
        &format!("{API}/namespaces/team/imagestreamtags/web:stable"),
    )
    .json(&alias)
    .send()
    .await
    .unwrap();

    let is = eventually(&dst, "team", "web", "the first import", |is| {
        !history(is, "latest").is_empty()
    })
    .await;
    assert_eq!(history(&is, "latest"), [first.as_str()]);
    assert!(is["metadata"]["annotations"]["openshift.io/image.dockerRepositoryCheck"].is_string());

    // Ticks without a change at the source change nothing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let is = stream(&dst, "team", "web").await;
    assert_eq!(history(&is, "latest"), [first.as_str()]);

    // A restart keeps the schedule; a new image at the source is picked up.
    let dst = dst.restart().await;
    let (second, _, _) = push_arch(&src, "lib/web", "latest", "amd64").await;
    let is = eventually(&dst, "team", "web", "the scheduled re-import", |is| {
        history(is, "latest").len() == 2
    })
    .await;
    assert_eq!(history(&is, "latest"), [second.clone(), first.clone()]);
    let is = eventually(&dst, "team", "web", "the tracker", |is| {
        history(is, "stable").first() == Some(&second)
    })
    .await;
    assert_eq!(history(&is, "stable")[0], second);
    let r = dst.head("/v2/team/web/manifests/latest").await;
    assert_eq!(header(&r, "docker-content-digest"), Some(second.as_str()));
}

#[tokio::test]
async fn failed_imports_set_the_condition() {
    let dst = TestServer::start_with(allow_loopback_imports).await;
    let body = json!({
        "metadata": {"name": "gone:v1"},
        "tag": {"name": "v1", "from": {"kind": "DockerImage", "name": "127.0.0.1:9/x/y:1"},
                "importPolicy": {"insecure": true}},
    });
    let r = dst
        .req(
            Method::PUT,
            &format!("{API}/namespaces/team/imagestreamtags/gone:v1"),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let is = eventually(&dst, "team", "gone", "the failure condition", |is| {
        !status_tag(is, "v1")["conditions"].is_null()
    })
    .await;
    let c = &status_tag(&is, "v1")["conditions"][0];
    assert_eq!(c["type"], "ImportSuccess");
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "InternalError");
    assert!(!c["message"].as_str().unwrap().is_empty());
    assert_eq!(c["generation"], is["spec"]["tags"][0]["generation"]);

    // describe shows the failure as oc does.
    let (code, out, _) = berth(&dst, &["describe", "is/gone"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("! error: Import failed (InternalError): "),
        "{out}"
    );

    // A missing tag at a reachable source is NotFound.
    let src = TestServer::start().await;
    let body = json!({
        "metadata": {"name": "gone:v2"},
        "tag": {"name": "v2", "from": {"kind": "DockerImage", "name": format!("{}/lib/none:1", host(&src))},
                "importPolicy": {"insecure": true}},
    });
    dst.req(
        Method::PUT,
        &format!("{API}/namespaces/team/imagestreamtags/gone:v2"),
    )
    .json(&body)
    .send()
    .await
    .unwrap();
    let is = eventually(&dst, "team", "gone", "NotFound", |is| {
        !status_tag(is, "v2")["conditions"].is_null()
    })
    .await;
    let c = &status_tag(&is, "v2")["conditions"][0];
    assert_eq!(c["reason"], "NotFound");
    assert_eq!(
        c["message"],
        format!(
            "dockerimage.image.openshift.io \"{}/lib/none:1\" not found",
            host(&src)
        )
    );
}

#[tokio::test]
async fn manifest_lists_by_import_mode() {
    let src = TestServer::start().await;
    let (index, amd, arm) = push_index(&src, "lib/multi", "latest").await;
    let dst = TestServer::start_with(allow_loopback_imports).await;
    let from = format!("{}/lib/multi:latest", host(&src));
    let path = format!("{API}/namespaces/team/imagestreamimports");
    let native = if host_arch() == "arm64" { &arm } else { &amd };

    // Legacy: one platform, recorded by its own digest.
    let isi: Value = post(
        &dst,
        &path,
        &import_request("multi", &from, "legacy", true, json!({"insecure": true})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        isi["status"]["images"][0]["image"]["metadata"]["name"],
        native.as_str(),
        "{isi:#}"
    );
    assert!(isi["status"]["images"][0]["image"]["dockerImageManifests"].is_null());

    // Legacy with a preferred platform (tag annotation).
    let prefer = json!({"importer.image.openshift.io/prefer-arch": "arm64"});
    let body = json!({"metadata": {"name": "multi:arm", "annotations": prefer}, "tag": {"name": "arm",
        "annotations": prefer,
        "from": {"kind": "DockerImage", "name": from}, "importPolicy": {"insecure": true}}});
    let r = dst
        .req(
            Method::PUT,
            &format!("{API}/namespaces/team/imagestreamtags/multi:arm"),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let is = eventually(&dst, "team", "multi", "the preferred platform", |is| {
        !history(is, "arm").is_empty()
    })
    .await;
    assert_eq!(history(&is, "arm"), [arm.as_str()]);

    // PreserveOriginal: the list is the Image; each child is an Image of its own.
    let isi: Value = post(
        &dst,
        &path,
        &import_request(
            "multi",
            &from,
            "all",
            true,
            json!({"insecure": true, "importMode": "PreserveOriginal"}),
        ),
    )
    .await
    .json()
    .await
    .unwrap();
    let status = &isi["status"]["images"][0];
    assert_eq!(
        status["image"]["metadata"]["name"],
        index.as_str(),
        "{isi:#}"
    );
    assert_eq!(
        status["image"]["dockerImageManifests"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(status["manifests"].as_array().unwrap().len(), 2);
    let is = stream(&dst, "team", "multi").await;
    assert_eq!(history(&is, "all"), [index.as_str()]);
    let r = dst.get("/v2/team/multi/manifests/all").await;
    assert_eq!(header(&r, "docker-content-digest"), Some(index.as_str()));
    assert_eq!(
        dst.head(&format!("/v2/team/multi/manifests/{arm}"))
            .await
            .status(),
        StatusCode::OK
    );
    let child: Value = dst
        .get(&format!("{API}/images/{arm}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(child["dockerImageMetadata"]["Architecture"], "arm64");

    // Switching the import mode of a tag swaps it between single and multi on the next import.
    let is = stream(&dst, "team", "multi").await;
    let mut spec = is.clone();
    for t in spec["spec"]["tags"].as_array_mut().unwrap() {
        if t["name"] == "legacy" {
            t["importPolicy"]["importMode"] = "PreserveOriginal".into();
        }
    }
    let r = dst
        .req(
            Method::PUT,
            &format!("{API}/namespaces/team/imagestreams/multi"),
        )
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let is = eventually(&dst, "team", "multi", "the mode switch", |is| {
        history(is, "legacy").len() == 2
    })
    .await;
    assert_eq!(history(&is, "legacy"), [index.clone(), native.clone()]);
}

/// Runs the berth binary against `s` in namespace `team`: (exit code, stdout, stderr).
async fn berth(s: &TestServer, args: &[&str]) -> (i32, String, String) {
    let r = crate::common::berth_in(s, "team", args).await;
    (r.code, r.stdout, r.stderr)
}

#[tokio::test]
async fn cli_import_image_tag_and_secrets() {
    let src = TestServer::start().await;
    let (index, amd, arm) = push_index(&src, "lib/busybox", "latest").await;
    let dst = TestServer::start_with(allow_loopback_imports).await;
    let from = format!("{}/lib/busybox:latest", host(&src));

    // Without --confirm nothing is created.
    let (code, _, err) = berth(
        &dst,
        &[
            "import-image",
            "busybox:latest",
            &format!("--from={from}"),
            "--insecure",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("--confirm"), "{err}");

    let (code, out, err) = berth(
        &dst,
        &[
            "import-image",
            "busybox:latest",
            &format!("--from={from}"),
            "--confirm",
            "--insecure",
            "--import-mode=PreserveOriginal",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("imagestream.image.openshift.io/busybox imported\n"),
        "{out}"
    );
    assert!(out.contains("Manifests:"), "{out}");
    assert!(out.contains(&format!("linux/amd64\t{amd}")), "{out}");
    assert!(out.contains(&format!("linux/arm64\t{arm}")), "{out}");
    assert!(out.contains(&index), "{out}");

    // The seed's jsonpath prints one os/arch per line.
    let (code, out, _) = berth(
        &dst,
        &[
            "get",
            "istag",
            "busybox:latest",
            "-o",
            "jsonpath={range .image.dockerImageManifests[*]}{.os}/{.architecture}{'\\n'}{end}",
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(out, "linux/arm64\nlinux/amd64\n");

    // Re-importing an existing tag needs no --from or --confirm.
    let (code, out, err) = berth(&dst, &["import-image", "busybox:latest"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported"), "{out}");

    // berth tag with a registry source now imports.
    let (code, out, _) = berth(&dst, &["tag", "--insecure", &from, "busybox:tagged"]).await;
    assert_eq!(code, 0);
    assert_eq!(out, format!("Tag busybox:tagged set to {from}.\n"));
    let is = eventually(&dst, "team", "busybox", "the tag's import", |is| {
        !history(is, "tagged").is_empty()
    })
    .await;
    let native = if host_arch() == "arm64" { &arm } else { &amd };
    assert_eq!(history(&is, "tagged"), [native.as_str()]);

    // Secrets: created from flags, never read back in clear.
    let (code, out, err) = berth(
        &dst,
        &[
            "create",
            "secret",
            "docker-registry",
            "pull",
            "--docker-server=registry.example.com:5000",
            "--docker-username=me",
            "--docker-password=hunter22",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "secret/pull created\n");
    let r = dst.get("/api/v1/namespaces/team/secrets/pull").await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(!text.contains("hunter22"), "{text}");
    let secret: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(secret["data"][".dockerconfigjson"], "");
    let list: Value = dst
        .get("/api/v1/namespaces/team/secrets")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["kind"], "SecretList");
    assert!(
        !list.to_string().contains("aHVudGVyMjI"),
        "no base64 of the password either"
    );
    let (code, _, err) = berth(
        &dst,
        &[
            "create",
            "secret",
            "docker-registry",
            "pull",
            "--docker-server=x:1",
            "--docker-username=a",
            "--docker-password=b",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("AlreadyExists"), "{err}");
}

// ---- allowed_registries_for_import

const LOOPBACK_REFUSED: &str =
    "is a loopback or link-local address, refused unless allowed_registries_for_import names it";

/// The Status of a refused ImageStreamImport (asserting 403).
async fn refused_import(dst: &TestServer, from: &str, insecure: bool, import: bool) -> String {
    let r = post(
        dst,
        &format!("{API}/namespaces/team/imagestreamimports"),
        &import_request("app", from, "v1", import, json!({"insecure": insecure})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{from}");
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["reason"], "Forbidden", "{status}");
    assert_eq!(status["details"]["kind"], "imagestreamimports", "{status}");
    status["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn loopback_sources_are_refused_unless_allowed() {
    let src = TestServer::start().await;
    let (digest, _, _) = push_arch(&src, "lib/app", "v1", "amd64").await;
    let from = format!("{}/lib/app:v1", host(&src));
    let dst = TestServer::start().await;

    // The API: 403 before anything is fetched, dry run or not.
    for import in [false, true] {
        assert_eq!(
            refused_import(&dst, &from, true, import).await,
            format!(
                "importing images from registry \"{}\" is forbidden: 127.0.0.1 {LOOPBACK_REFUSED}",
                host(&src)
            )
        );
    }
    assert_eq!(
        dst.get(&format!("{API}/namespaces/team/imagestreams/app"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // A name for loopback is loopback.
    let port = host(&src).rsplit(':').next().unwrap().to_string();
    let message = refused_import(&dst, &format!("localhost:{port}/lib/app:v1"), true, true).await;
    assert!(
        message.contains(&format!("localhost {LOOPBACK_REFUSED}")),
        "{message}"
    );
    // A repository import too.
    let r = post(
        &dst,
        &format!("{API}/namespaces/team/imagestreamimports"),
        &json!({"metadata": {"name": "app"}, "spec": {"import": true, "repository": {
            "from": {"kind": "DockerImage", "name": format!("{}/lib/app", host(&src))},
            "importPolicy": {"insecure": true}}}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The controller: the tag's ImportSuccess condition says why.
    let r = dst
        .req(
            Method::PUT,
            &format!("{API}/namespaces/team/imagestreamtags/web:v1"),
        )
        .json(
            &json!({"metadata": {"name": "web:v1"}, "tag": {"name": "v1",
            "from": {"kind": "DockerImage", "name": from}, "importPolicy": {"insecure": true}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let is = eventually(&dst, "team", "web", "the failure condition", |is| {
        !status_tag(is, "v1")["conditions"].is_null()
    })
    .await;
    let c = &status_tag(&is, "v1")["conditions"][0];
    assert_eq!(c["type"], "ImportSuccess");
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "Forbidden");
    assert_eq!(
        c["message"],
        format!(
            "importing images from registry \"{}\" is forbidden: 127.0.0.1 {LOOPBACK_REFUSED}",
            host(&src)
        )
    );
    // berth import-image shows the refusal.
    let (code, _, err) = berth(
        &dst,
        &[
            "import-image",
            "cli",
            "--from",
            &from,
            "--confirm",
            "--insecure",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("is forbidden: 127.0.0.1 is a loopback"),
        "{err}"
    );

    // Allowed by a pattern naming it: the import and then the scheduled re-import work.
    let dst = dst.restart_with(allow_loopback_imports).await;
    let r = post(
        &dst,
        &format!("{API}/namespaces/team/imagestreamimports"),
        &import_request("app", &from, "v1", true, json!({"insecure": true})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let isi: Value = r.json().await.unwrap();
    assert_eq!(
        isi["status"]["images"][0]["image"]["metadata"]["name"],
        digest.as_str(),
        "{isi:#}"
    );

    // Pull-through fetches are checked as well: without the pattern, the layer is not fetched.
    let dst = dst
        .restart_with(|c| c.allowed_registries_for_import.clear())
        .await;
    let layers = status_layers(&dst, &digest).await;
    assert!(!layers.is_empty());
    let r = dst.get(&format!("/v2/team/app/blobs/{}", layers[0])).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("is forbidden: 127.0.0.1 is a loopback"),
        "the refusal reaches the client"
    );
}

/// The layer digests of Image `digest`.
async fn status_layers(s: &TestServer, digest: &str) -> Vec<String> {
    let image: Value = s
        .get(&format!("{API}/images/{digest}"))
        .await
        .json()
        .await
        .unwrap();
    image["dockerImageLayers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_non_empty_list_allows_only_what_it_names() {
    let src = TestServer::start().await;
    push_arch(&src, "lib/app", "v1", "amd64").await;
    let from = format!("{}/lib/app:v1", host(&src));
    let dst = TestServer::start_with(|c| {
        c.allowed_registries_for_import = vec![
            AllowedRegistry {
                domain_name: "*.example.com".into(),
                insecure: false,
            },
            AllowedRegistry {
                domain_name: "127.0.0.1:*".into(),
                insecure: false,
            },
        ];
    })
    .await;
    assert_eq!(
        refused_import(&dst, "quay.io/lib/app:v1", false, false).await,
        "importing images from registry \"quay.io\" is forbidden: it is not in \
         allowed_registries_for_import"
    );
    assert!(refused_import(&dst, "example.com/lib/app:v1", false, false)
        .await
        .ends_with("it is not in allowed_registries_for_import"));
    // Listed, but not for insecure imports.
    assert!(refused_import(&dst, &from, true, false)
        .await
        .ends_with("insecure imports from it are not allowed (allowed_registries_for_import lists it with insecure = false)"));
    // Listed and secure: allowed (this source is HTTP only, so the import itself fails).
    let r = post(
        &dst,
        &format!("{API}/namespaces/team/imagestreamimports"),
        &import_request("app", &from, "v1", false, json!({})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let isi: Value = r.json().await.unwrap();
    assert!(isi["status"]["images"][0]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("is HTTP only"));
}

// ---- against Debian's docker-registry

mod peer_registry {
    use super::*;
    use crate::peer::{push_image, DockerRegistry, Pusher, PASSWORD, USER};
    use berth::importer::remote::{MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST};

    async fn import(dst: &TestServer, name: &str, from: &str, to: &str, policy: Value) -> Value {
        let r = post(
            dst,
            &format!("{API}/namespaces/team/imagestreamimports"),
            &import_request(name, from, to, true, policy),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }

    #[tokio::test]
    async fn single_and_multi_arch_and_pull_through_after_the_source_stops() {
        let reg = DockerRegistry::start(false).await;
        let p = Pusher::new(&reg, false);
        let v2 = push_image(&p, "lib/app", "v1", "amd64", MEDIA_DOCKER_MANIFEST).await;
        let arm = push_image(&p, "lib/app", "arm", "arm64", MEDIA_OCI_MANIFEST).await;
        let amd = push_image(&p, "lib/app", "amd", "amd64", MEDIA_OCI_MANIFEST).await;
        let entry = |d: &berth_storage::Digest, len: usize, arch: &str| {
            json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": len,
                   "platform": {"architecture": arch, "os": "linux"}})
        };
        let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [entry(&amd.digest, amd.manifest.len(), "amd64"),
                          entry(&arm.digest, arm.manifest.len(), "arm64")]}))
        .unwrap();
        let index_digest = p.manifest("lib/app", "multi", OCI_INDEX, &index).await;
        let dst = TestServer::start_with(allow_loopback_imports).await;
        let insecure = json!({"insecure": true});

        // Docker schema 2, byte for byte.
        let isi = import(
            &dst,
            "app",
            &format!("{}/lib/app:v1", reg.host()),
            "v1",
            insecure.clone(),
        )
        .await;
        assert_eq!(
            isi["status"]["images"][0]["image"]["metadata"]["name"],
            v2.digest.to_string(),
            "{isi:#}"
        );
        let r = dst.get("/v2/team/app/manifests/v1").await;
        assert_eq!(header(&r, "content-type"), Some(MEDIA_DOCKER_MANIFEST));
        assert_eq!(r.bytes().await.unwrap(), v2.manifest);

        // Multi-arch, both modes.
        let from = format!("{}/lib/app:multi", reg.host());
        let isi = import(&dst, "app", &from, "legacy", insecure.clone()).await;
        let native = if host_arch() == "arm64" {
            &arm.digest
        } else {
            &amd.digest
        };
        assert_eq!(
            isi["status"]["images"][0]["image"]["metadata"]["name"],
            native.to_string()
        );
        let isi = import(
            &dst,
            "app",
            &from,
            "multi",
            json!({"insecure": true, "importMode": "PreserveOriginal"}),
        )
        .await;
        assert_eq!(
            isi["status"]["images"][0]["image"]["metadata"]["name"],
            index_digest.to_string()
        );
        let platforms: Vec<&str> = isi["status"]["images"][0]["image"]["dockerImageManifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["architecture"].as_str().unwrap())
            .collect();
        assert_eq!(platforms, ["amd64", "arm64"]);

        // The first pull goes through to the source; with the source stopped, later pulls are
        // served locally.
        let layer = format!("/v2/team/app/blobs/{}", v2.layer_digest);
        let r = dst.get(&layer).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap(), v2.layer);
        drop(reg);
        let r = dst.get(&layer).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap(), v2.layer);
        // A blob never pulled while the source was up cannot be served now.
        let r = dst
            .get(&format!("/v2/team/app/blobs/{}", v2.config_digest))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn basic_auth_uses_the_namespace_secret_for_that_host_and_port() {
        let reg = DockerRegistry::start(true).await;
        let p = Pusher::new(&reg, true);
        let pushed = push_image(&p, "private/app", "v1", "amd64", MEDIA_OCI_MANIFEST).await;
        let dst = TestServer::start_with(allow_loopback_imports).await;
        let from = format!("{}/private/app:v1", reg.host());
        let insecure = json!({"insecure": true});

        let isi = import(&dst, "app", &from, "v1", insecure.clone()).await;
        let status = &isi["status"]["images"][0]["status"];
        assert_eq!(status["reason"], "Unauthorized", "{isi:#}");
        assert_eq!(
            status["message"],
            format!("you may not have access to the container image \"{from}\"")
        );
        let is = stream(&dst, "team", "app").await;
        let c = &status_tag(&is, "v1")["conditions"][0];
        assert_eq!(
            (c["type"].as_str(), c["reason"].as_str()),
            (Some("ImportSuccess"), Some("Unauthorized"))
        );

        // A secret for the host without its port is not used (the seed's note).
        let secret = |name: &str, server: &str| {
            json!({"metadata": {"name": name},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": json!({"auths": {server: {"username": USER, "password": PASSWORD}}}).to_string()}})
        };
        let r = post(
            &dst,
            "/api/v1/namespaces/team/secrets",
            &secret("noport", "127.0.0.1"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let isi = import(&dst, "app", &from, "v1", insecure.clone()).await;
        assert_eq!(
            isi["status"]["images"][0]["status"]["reason"],
            "Unauthorized"
        );

        let r = post(
            &dst,
            "/api/v1/namespaces/team/secrets",
            &secret("withport", &reg.host()),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let created: Value = r.json().await.unwrap();
        assert!(!created.to_string().contains("s3cret"), "{created}");
        let isi = import(&dst, "app", &from, "v1", insecure).await;
        assert_eq!(
            isi["status"]["images"][0]["status"]["status"], "Success",
            "{isi:#}"
        );
        assert_eq!(
            isi["status"]["images"][0]["image"]["metadata"]["name"],
            pushed.digest.to_string()
        );
        let is = stream(&dst, "team", "app").await;
        assert!(status_tag(&is, "v1")["conditions"].is_null(), "{is:#}");
        // Pull-through authenticates with the same secret.
        let r = dst
            .get(&format!("/v2/team/app/blobs/{}", pushed.layer_digest))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap(), pushed.layer);
        // Another namespace has no such secret.
        let r = post(
            &dst,
            &format!("{API}/namespaces/other/imagestreamimports"),
            &import_request("app", &from, "v1", false, json!({"insecure": true})),
        )
        .await;
        let isi: Value = r.json().await.unwrap();
        assert_eq!(
            isi["status"]["images"][0]["status"]["reason"],
            "Unauthorized"
        );
    }
}

/// A secret keyed `host:80` authenticates an insecure import from `host/...`, and one keyed
/// `host` an import from `host:80/...`: HTTP's default port is the same registry (issue 16).
#[tokio::test]
async fn secrets_match_with_and_without_the_default_port() {
    use crate::peer::{push_image, DockerRegistry, Pusher, PASSWORD, USER};
    use berth::importer::remote::MEDIA_OCI_MANIFEST;
    let reg = DockerRegistry::start_on_port_80(true).await;
    let p = Pusher::new(&reg, true);
    let pushed = push_image(&p, "private/app", "v1", "amd64", MEDIA_OCI_MANIFEST).await;
    let ip = reg.ip();
    let dst = TestServer::start_with(|c| {
        c.allowed_registries_for_import.push(AllowedRegistry {
            domain_name: ip.clone(),
            insecure: true,
        });
        c.allowed_registries_for_import.push(AllowedRegistry {
            domain_name: format!("{ip}:80"),
            insecure: true,
        });
    })
    .await;
    let secret = |ns: &str, server: &str| {
        json!({"metadata": {"name": "pull", "namespace": ns},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": json!({"auths": {server: {"username": USER, "password": PASSWORD}}}).to_string()}})
    };
    for (ns, key, from) in [
        ("a", format!("{ip}:80"), format!("{ip}/private/app:v1")),
        ("b", ip.clone(), format!("{ip}:80/private/app:v1")),
    ] {
        let r = post(
            &dst,
            &format!("/api/v1/namespaces/{ns}/secrets"),
            &secret(ns, &key),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = post(
            &dst,
            &format!("{API}/namespaces/{ns}/imagestreamimports"),
            &import_request("app", &from, "v1", true, json!({"insecure": true})),
        )
        .await;
        let isi: Value = r.json().await.unwrap();
        assert_eq!(
            isi["status"]["images"][0]["status"]["status"], "Success",
            "secret {key}, import from {from}: {isi:#}"
        );
        assert_eq!(
            isi["status"]["images"][0]["image"]["metadata"]["name"],
            pushed.digest.to_string()
        );
    }
}

#[tokio::test]
async fn repository_import_takes_fifty_tags_in_priority_order() {
    let src = TestServer::start().await;
    let (digest, manifest) = src.push_image("lib/many", "latest", "many").await;
    for i in 0..52 {
        let r = src
            .put_manifest("lib/many", &format!("1.{i}"), OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let dst = TestServer::start_with(allow_loopback_imports).await;
    let body = json!({
        "metadata": {"name": "many"},
        "spec": {"import": false, "repository": {
            "from": {"kind": "DockerImage", "name": format!("{}/lib/many", host(&src))},
            "importPolicy": {"insecure": true}}},
    });
    let r = post(
        &dst,
        &format!("{API}/namespaces/team/imagestreamimports"),
        &body,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let isi: Value = r.json().await.unwrap();
    let repo = &isi["status"]["repository"];
    assert_eq!(repo["status"]["status"], "Success", "{repo:#}");
    let images = repo["images"].as_array().unwrap();
    assert_eq!(images.len(), 50);
    assert_eq!(images[0]["tag"], "latest");
    assert_eq!(images[1]["tag"], "1.51", "minor versions newest first");
    assert!(images
        .iter()
        .all(|i| i["image"]["metadata"]["name"] == digest.as_str()));
    assert_eq!(repo["additionalTags"], json!(["1.2", "1.1", "1.0"]));

    // A repository reference with a tag is refused.
    let mut bad = body.clone();
    bad["spec"]["repository"]["from"]["name"] = format!("{}/lib/many:latest", host(&src)).into();
    let r = post(
        &dst,
        &format!("{API}/namespaces/team/imagestreamimports"),
        &bad,
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// Another berth with access control as the source: the importer follows its token flow with
/// the credentials of a namespace secret.
#[tokio::test]
async fn imports_from_a_berth_with_token_auth() {
    use crate::auth::{push_as_admin, ADMIN_PASSWORD};
    let src = TestServer::start_with(|c| c.admin_password = Some(ADMIN_PASSWORD.into())).await;
    let digest = push_as_admin(&src, "private/app", "v1", "token-source").await;
    let dst = TestServer::start_with(allow_loopback_imports).await;
    let from = format!("{}/private/app:v1", host(&src));
    let path = format!("{API}/namespaces/team/imagestreamimports");

    let isi: Value = post(
        &dst,
        &path,
        &import_request("app", &from, "v1", false, json!({"insecure": true})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        isi["status"]["images"][0]["status"]["reason"], "Unauthorized",
        "{isi:#}"
    );

    let secret = json!({"metadata": {"name": "src"}, "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": json!({"auths": {host(&src): {"username": "admin", "password": ADMIN_PASSWORD}}}).to_string()}});
    assert_eq!(
        post(&dst, "/api/v1/namespaces/team/secrets", &secret)
            .await
            .status(),
        StatusCode::CREATED
    );
    let isi: Value = post(
        &dst,
        &path,
        &import_request("app", &from, "v1", true, json!({"insecure": true})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        isi["status"]["images"][0]["status"]["status"], "Success",
        "{isi:#}"
    );
    assert_eq!(
        isi["status"]["images"][0]["image"]["metadata"]["name"],
        digest.as_str()
    );
    // Pull-through uses the same credentials.
    let manifest: Value = dst
        .get("/v2/team/app/manifests/v1")
        .await
        .json()
        .await
        .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let r = dst.get(&format!("/v2/team/app/blobs/{layer}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), "layer of token-source".as_bytes());
}

/// oc's refusals (issue 16): import-image never rewrites an existing tag's source; a tracking
/// tag is followed; a pinned tag is not re-imported; new tags need no --confirm; failures and
/// dry runs print as oc prints them.
#[tokio::test]
async fn cli_import_image_refusals_as_oc() {
    let src = TestServer::start().await;
    push_arch(&src, "lib/app", "v1", "amd64").await;
    push_arch(&src, "lib/app", "v2", "amd64").await;
    let dst = TestServer::start_with(allow_loopback_imports).await;
    let v1 = format!("{}/lib/app:v1", host(&src));
    let v2 = format!("{}/lib/app:v2", host(&src));
    let from = |f: &str| format!("--from={f}");

    // A missing stream needs --confirm.
    let (code, _, err) = berth(&dst, &["import-image", "app:1", &from(&v1), "--insecure"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: no image stream named \"app\" exists, pass --confirm to create and import\n"
    );
    let (code, _, err) = berth(
        &dst,
        &[
            "import-image",
            "app:1",
            &from(&v1),
            "--insecure",
            "--confirm",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");

    // A new tag on an existing stream needs no --confirm.
    let (code, out, err) = berth(&dst, &["import-image", "app:2", &from(&v2), "--insecure"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("imagestream.image.openshift.io/app imported\n\n"),
        "{out}"
    );

    // --from may not change an existing tag's source.
    let (code, _, err) = berth(&dst, &["import-image", "app:1", &from(&v2)]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "error: the tag \"1\" points to \"{v1}\" - use the 'tag' command if you want to \
             change the source to \"{v2}\"\n"
        )
    );
    // Nor through a tag tracking it.
    let (code, _, err) = berth(&dst, &["tag", "--alias", "app:1", "app:cur"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = berth(&dst, &["import-image", "app:cur", &from(&v2)]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "error: the tag \"cur\" points to the tag \"1\" which points to \"{v1}\" - use the \
             'tag' command if you want to change the source to \"{v2}\"\n"
        )
    );
    // Without --from the tracked tag is re-imported.
    let (code, out, err) = berth(&dst, &["import-image", "app:cur"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("app:1"), "{out}");

    // A tag pinned to an image (a rollback) is not re-imported.
    let (code, out, _) = berth(&dst, &["tag", "app:1", "app:latest"]).await;
    assert_eq!(code, 0);
    let pinned = out
        .trim_end()
        .trim_end_matches('.')
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(pinned.starts_with("app@sha256:"), "{out}");
    for args in [
        vec!["import-image", "app"],
        vec!["import-image", "app", "--from", &v2],
    ] {
        let (code, _, err) = berth(&dst, &args).await;
        assert_eq!(code, 1);
        assert_eq!(
            err,
            format!(
                "error: tag \"latest\" points to existing ImageStreamImage \"{pinned}\", it \
                 cannot be re-imported\n"
            )
        );
    }
    // A tag that does not exist, without --from.
    let (code, _, err) = berth(&dst, &["import-image", "app:nope"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: the tag \"nope\" does not exist on the image stream - choose an existing tag \
         to import or use the 'tag' command to create a new tag\n"
    );

    // A failed import: oc's "imported with errors", the stream, and the tag's error.
    let missing = format!("{}/lib/missing:v1", host(&src));
    let (code, out, err) = berth(
        &dst,
        &["import-image", "app:3", &from(&missing), "--insecure"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("imagestream.image.openshift.io/app imported with errors\n\nName:"),
        "{out}"
    );
    assert!(err.starts_with("error: tag 3 failed: "), "{err}");

    // A dry run shows the image and saves nothing.
    let (code, out, err) = berth(
        &dst,
        &[
            "import-image",
            "app:4",
            &from(&v2),
            "--insecure",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("imagestream.image.openshift.io/app imported (dry run)\n\n"),
        "{out}"
    );
    assert!(out.contains("app:4"), "{out}");
    let is = stream(&dst, "team", "app").await;
    assert!(status_tag(&is, "4").is_null());
    assert!(!is["spec"]["tags"].to_string().contains("\"4\""));
}
