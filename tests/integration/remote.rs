//! The importer's registry client (`berth::importer::remote`) against real peers on 127.0.0.1:
//! Debian's docker-registry (CNCF distribution 2.8), open and with htpasswd Basic auth, and a
//! small in-test bearer-token registry for the Docker token flow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth::importer::allowed::{AllowedRegistries, RegistryPattern};
use berth::importer::reference::ImageReference;
use berth::importer::remote::{
    Credentials, Remote, RemoteError, RemoteOptions, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
};
use berth_storage::Digest;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::peer::{push_image, DockerRegistry, Pusher, PASSWORD, USER};

/// The peers listen on 127.0.0.1, which imports may only reach when a pattern names it.
fn loopback() -> Arc<AllowedRegistries> {
    Arc::new(AllowedRegistries::new(vec![RegistryPattern::parse(
        "127.0.0.1:*",
        true,
    )
    .unwrap()]))
}

fn remote(host: &str, repo: &str, insecure: bool, credentials: Option<Credentials>) -> Remote {
    let reference = ImageReference::parse(&format!("{host}/{repo}")).unwrap();
    Remote::new(
        &reference,
        RemoteOptions {
            insecure,
            credentials,
            timeout: Duration::from_secs(10),
            allowed: loopback(),
            ..RemoteOptions::default()
        },
    )
    .unwrap()
}

fn creds(password: &str) -> Option<Credentials> {
    Some(Credentials {
        username: USER.to_string(),
        password: password.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// Against an open docker-registry

#[tokio::test]
async fn manifests_blobs_and_tags_from_docker_registry() {
    let reg = DockerRegistry::start(false).await;
    let p = Pusher::new(&reg, false);
    let repo = "ns/app";
    let v1 = push_image(&p, repo, "v1", "amd64", MEDIA_DOCKER_MANIFEST).await;

    let r = remote(&reg.host(), repo, true, None);
    assert_eq!(r.repository_spec(), format!("{}/ns/app", reg.host()));

    // By tag: the exact bytes, their digest, the media type; the plain-HTTP fallback is kept.
    let m = r.get_manifest("v1").await.unwrap();
    assert_eq!(m.digest, v1.digest);
    assert_eq!(m.media_type, MEDIA_DOCKER_MANIFEST);
    assert_eq!(&m.body[..], &v1.manifest[..]);
    assert_eq!(r.scheme(), Some("http"));

    // By digest.
    let m = r.get_manifest(&v1.digest.to_string()).await.unwrap();
    assert_eq!(m.digest, v1.digest);
    assert_eq!(&m.body[..], &v1.manifest[..]);

    // An OCI index of two platform manifests.
    let amd = push_image(&p, repo, "amd64", "amd64", MEDIA_OCI_MANIFEST).await;
    let arm = push_image(&p, repo, "arm64", "arm64", MEDIA_OCI_MANIFEST).await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_INDEX}","manifests":[{{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
        amd.digest,
        amd.manifest.len(),
        arm.digest,
        arm.manifest.len()
    );
    let index_digest = p
        .manifest(repo, "multi", MEDIA_OCI_INDEX, index.as_bytes())
        .await;
    let m = r.get_manifest("multi").await.unwrap();
    assert_eq!(m.digest, index_digest);
    assert_eq!(m.media_type, MEDIA_OCI_INDEX);
    assert_eq!(&m.body[..], index.as_bytes());
    for child in [&amd, &arm] {
        let m = r.get_manifest(&child.digest.to_string()).await.unwrap();
        assert_eq!(m.digest, child.digest);
        assert_eq!(m.media_type, MEDIA_OCI_MANIFEST);
        assert_eq!(&m.body[..], &child.manifest[..]);
    }

    // Blobs: whole, bounded, streamed.
    let config = r.get_blob_bytes(&v1.config_digest, 1 << 20).await.unwrap();
    assert_eq!(&config[..], &v1.config[..]);
    let err = r.get_blob_bytes(&v1.layer_digest, 1024).await.unwrap_err();
    assert!(matches!(err, RemoteError::Invalid(_)), "{err:?}");
    let (len, mut stream) = r.open_blob(&arm.layer_digest).await.unwrap();
    assert_eq!(len, Some(arm.layer.len() as u64));
    let mut got = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
        chunks += 1;
    }
    assert_eq!(got, arm.layer);
    assert!(chunks >= 1);

    // Tags. docker-registry 2.8 does not paginate tags/list (it ignores `?n=` and sends no
    // Link), so a paged listing must still return everything; Link following itself is
    // checked against the in-test registry in `tag_pagination_follows_links`.
    for t in ["t1", "t2", "t3", "t4"] {
        p.manifest(repo, t, MEDIA_DOCKER_MANIFEST, &v1.manifest)
            .await;
    }
    let mut expected: Vec<String> = ["amd64", "arm64", "multi", "t1", "t2", "t3", "t4", "v1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    let mut all = r.list_tags().await.unwrap();
    all.sort();
    assert_eq!(all, expected);
    let mut paged = r.list_tags_paged(Some(3)).await.unwrap();
    paged.sort();
    assert_eq!(paged, expected);

    // Not found: a tag, a digest, a blob, a repository.
    let err = r.get_manifest("missing").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "dockerimage.image.openshift.io \"{}/ns/app:missing\" not found",
            reg.host()
        )
    );
    assert_eq!(err.reason(), "NotFound");
    let absent = Digest::sha256_of(b"absent");
    assert!(matches!(
        r.get_manifest(&absent.to_string()).await,
        Err(RemoteError::NotFound(_))
    ));
    assert!(matches!(
        r.get_blob_bytes(&absent, 1024).await,
        Err(RemoteError::NotFound(_))
    ));
    assert!(matches!(
        r.open_blob(&absent).await,
        Err(RemoteError::NotFound(_))
    ));
    let other = remote(&reg.host(), "ns/nothing", true, None);
    let err = other.list_tags().await.unwrap_err();
    assert!(matches!(err, RemoteError::NotFound(_)), "{err:?}");

    // A bad reference is refused before any request.
    assert!(matches!(
        r.get_manifest("not a tag").await,
        Err(RemoteError::Invalid(_))
    ));
    assert!(matches!(
        r.get_manifest("sha256:abc").await,
        Err(RemoteError::Invalid(_))
    ));
}

#[tokio::test]
async fn plain_http_registry_requires_the_insecure_flag() {
    let reg = DockerRegistry::start(false).await;
    let p = Pusher::new(&reg, false);
    push_image(&p, "ns/app", "v1", "amd64", MEDIA_DOCKER_MANIFEST).await;

    let r = remote(&reg.host(), "ns/app", false, None);
    let err = r.get_manifest("v1").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the repository {}/ns/app is HTTP only and requires the insecure flag to import",
            reg.host()
        )
    );
    assert!(matches!(err, RemoteError::HttpOnly(_)));
    assert_eq!(err.reason(), "InternalError");
    assert!(matches!(r.list_tags().await, Err(RemoteError::HttpOnly(_))));

    // Nothing listening: unreachable, whatever the flag.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for insecure in [false, true] {
        let r = remote(&format!("127.0.0.1:{port}"), "ns/app", insecure, None);
        let err = r.get_manifest("v1").await.unwrap_err();
        assert!(matches!(err, RemoteError::Unreachable(_)), "{err:?}");
        assert!(
            err.to_string().starts_with("Internal error occurred: "),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Against docker-registry over HTTPS with a certificate of the test's own CA

/// Makes a CA and a 127.0.0.1 server certificate it signs; returns (ca.pem, leaf.pem, leaf.key).
fn make_certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (it comes with ca-certificates; run scripts/install-deps.sh)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=berth test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    run(&ca);
    let mut csr = vec!["req", "-new", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "leaf.key", "-out", "leaf.csr"]);
    run(&csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

#[tokio::test]
async fn https_registry_with_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(certs.path());
    let reg = DockerRegistry::start_with(false, Some((&cert, &key))).await;
    let p = Pusher::new(&reg, false);
    let v1 = push_image(&p, "ns/app", "v1", "amd64", MEDIA_OCI_MANIFEST).await;
    let reference = ImageReference::parse(&format!("{}/ns/app", reg.host())).unwrap();
    let options = |insecure: bool, ca_bundle: Option<std::path::PathBuf>| RemoteOptions {
        insecure,
        ca_bundle,
        timeout: Duration::from_secs(10),
        allowed: loopback(),
        ..RemoteOptions::default()
    };

    // Untrusted certificate: a TLS failure, not "HTTP only" (the 400 a TLS port gives a
    // plain-HTTP request is not a registry answering).
    let r = Remote::new(&reference, options(false, None)).unwrap();
    let err = r.get_manifest("v1").await.unwrap_err();
    assert!(matches!(err, RemoteError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // Trusted through the CA bundle.
    let r = Remote::new(&reference, options(false, Some(ca.clone()))).unwrap();
    let m = r.get_manifest("v1").await.unwrap();
    assert_eq!(m.digest, v1.digest);
    assert_eq!(r.scheme(), Some("https"));
    assert_eq!(
        &r.get_blob_bytes(&v1.config_digest, 1 << 20).await.unwrap()[..],
        &v1.config[..]
    );

    // insecure: HTTPS without verification (no fallback to HTTP).
    let r = Remote::new(&reference, options(true, None)).unwrap();
    assert_eq!(r.get_manifest("v1").await.unwrap().digest, v1.digest);
    assert_eq!(r.scheme(), Some("https"));

    // A CA bundle that holds no certificate is a configuration error.
    let empty = certs.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = Remote::new(&reference, options(false, Some(empty))).unwrap_err();
    assert!(matches!(err, RemoteError::Other(_)), "{err:?}");
    let err = Remote::new(
        &reference,
        options(false, Some(certs.path().join("missing.pem"))),
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Against docker-registry with htpasswd Basic auth

#[tokio::test]
async fn basic_auth_docker_registry() {
    let reg = DockerRegistry::start(true).await;
    let p = Pusher::new(&reg, true);
    let v1 = push_image(&p, "ns/secret", "v1", "amd64", MEDIA_OCI_MANIFEST).await;

    let anonymous = remote(&reg.host(), "ns/secret", true, None);
    let err = anonymous.get_manifest("v1").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "you may not have access to the container image \"{}/ns/secret:v1\"",
            reg.host()
        )
    );
    assert_eq!(err.reason(), "Unauthorized");

    let wrong = remote(&reg.host(), "ns/secret", true, creds("wrong"));
    assert!(matches!(
        wrong.get_manifest("v1").await,
        Err(RemoteError::Unauthorized(_))
    ));

    let r = remote(&reg.host(), "ns/secret", true, creds(PASSWORD));
    let m = r.get_manifest("v1").await.unwrap();
    assert_eq!(m.digest, v1.digest);
    assert_eq!(&m.body[..], &v1.manifest[..]);
    assert_eq!(
        &r.get_blob_bytes(&v1.config_digest, 1 << 20).await.unwrap()[..],
        &v1.config[..]
    );
    let (_, stream) = r.open_blob(&v1.layer_digest).await.unwrap();
    let chunks: Vec<_> = stream.collect().await;
    let body: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    assert_eq!(body, v1.layer);
    assert_eq!(r.list_tags().await.unwrap(), vec!["v1".to_string()]);
    assert!(matches!(
        r.get_manifest("missing").await,
        Err(RemoteError::NotFound(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// The Docker bearer-token flow, against an in-test registry

type Handler =
    Arc<dyn Fn(hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> + Send + Sync + 'static>;

/// Serves `handler` over plain HTTP/1.1 on 127.0.0.1:0 until the test's runtime ends.
async fn serve(handler: Handler) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let resp = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn response(
    status: u16,
    headers: &[(&str, String)],
    body: impl Into<Bytes>,
) -> hyper::Response<Full<Bytes>> {
    let mut b = hyper::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Full::new(body.into())).unwrap()
}

fn query(req: &hyper::Request<Incoming>) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

#[derive(Default)]
struct TokenLog {
    /// (service, scope, had Basic credentials) per token request.
    requests: Vec<(String, String, bool)>,
    issued: Vec<String>,
    /// Authorization headers seen by the blob storage host.
    storage_auth: Vec<Option<String>>,
    /// `expires_in` to answer; `None` answers `access_token` without a lifetime.
    expires_in: Option<u64>,
}

#[tokio::test]
async fn bearer_token_flow() {
    let manifest = Bytes::from_static(
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#,
    );
    let blob = Bytes::from(vec![7u8; 200_000]);
    let blob_digest = Digest::sha256_of(&blob);
    let log = Arc::new(Mutex::new(TokenLog {
        expires_in: Some(300),
        ..TokenLog::default()
    }));

    // Blob storage on another port (another origin): records what credentials reach it.
    let storage = {
        let log = log.clone();
        let blob = blob.clone();
        serve(Arc::new(move |req| {
            log.lock().unwrap().storage_auth.push(
                req.headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string()),
            );
            response(200, &[], blob.clone())
        }))
        .await
    };

    // The registry and its token endpoint share a port; its address is known only after bind,
    // so the realm is filled in through a cell.
    let realm_cell: Arc<Mutex<String>> = Arc::default();
    let registry = {
        let log = log.clone();
        let realm_cell = realm_cell.clone();
        let manifest = manifest.clone();
        let blob_digest = blob_digest.clone();
        serve(Arc::new(move |req| {
            let path = req.uri().path().to_string();
            if path == "/token" {
                let q = query(&req);
                let basic = req
                    .headers()
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                let expected = format!("Basic {}", b64(format!("{USER}:{PASSWORD}").as_bytes()));
                let mut log = log.lock().unwrap();
                log.requests.push((
                    q.get("service").cloned().unwrap_or_default(),
                    q.get("scope").cloned().unwrap_or_default(),
                    basic.is_some(),
                ));
                if basic.as_ref().is_some_and(|b| b != &expected) {
                    return response(401, &[], "bad credentials");
                }
                let token = format!("tok-{}", log.issued.len());
                log.issued.push(token.clone());
                let body = match log.expires_in {
                    Some(s) => format!(r#"{{"token":"{token}","expires_in":{s}}}"#),
                    None => format!(r#"{{"access_token":"{token}"}}"#),
                };
                return response(200, &[("content-type", "application/json".into())], body);
            }
            let bearer = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string);
            let valid = bearer.is_some_and(|t| log.lock().unwrap().issued.contains(&t));
            if !valid {
                let scope = if path == "/v2/" {
                    String::new()
                } else {
                    // A comma inside a quoted value must not split the challenge.
                    ",scope=\"repository:ns/app:pull,push\"".to_string()
                };
                let challenge = format!(
                    "Bearer realm=\"{}\",service=\"test-registry\"{scope}",
                    realm_cell.lock().unwrap()
                );
                return response(
                    401,
                    &[
                        ("www-authenticate", challenge),
                        ("content-type", "application/json".into()),
                    ],
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                );
            }
            match path.as_str() {
                "/v2/" => response(200, &[], "{}"),
                "/v2/ns/app/manifests/v1" => response(
                    200,
                    &[("content-type", MEDIA_OCI_MANIFEST.into())],
                    manifest.clone(),
                ),
                "/v2/ns/app/tags/list" => response(
                    200,
                    &[("content-type", "application/json".into())],
                    r#"{"name":"ns/app","tags":["v1"]}"#,
                ),
                p if p == format!("/v2/ns/app/blobs/{blob_digest}") => response(
                    307,
                    &[(
                        "location",
                        format!("http://{storage}/bucket/blob?X-Signature=zz"),
                    )],
                    "",
                ),
                _ => response(
                    404,
                    &[],
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#,
                ),
            }
        }))
        .await
    };
    *realm_cell.lock().unwrap() = format!("http://{registry}/token");
    let host = registry.to_string();

    // With credentials: one token serves every call; the scope is the repository's pull scope.
    let r = remote(&host, "ns/app", true, creds(PASSWORD));
    let m = r.get_manifest("v1").await.unwrap();
    assert_eq!(m.digest, Digest::sha256_of(&manifest));
    assert_eq!(m.media_type, MEDIA_OCI_MANIFEST);
    assert_eq!(r.list_tags().await.unwrap(), vec!["v1".to_string()]);
    let (len, stream) = r.open_blob(&blob_digest).await.unwrap();
    assert_eq!(len, Some(blob.len() as u64));
    let chunks: Vec<_> = stream.collect().await;
    let got: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    assert_eq!(got, blob);
    assert_eq!(
        &r.get_blob_bytes(&blob_digest, 1 << 20).await.unwrap()[..],
        &blob[..]
    );
    let err = r.get_manifest("nope").await.unwrap_err();
    assert!(matches!(err, RemoteError::NotFound(_)), "{err:?}");
    {
        let log = log.lock().unwrap();
        assert_eq!(
            log.requests,
            vec![(
                "test-registry".to_string(),
                "repository:ns/app:pull".to_string(),
                true
            )],
            "one token request, with the service, the pull scope and the credentials"
        );
        // The redirect to storage (another origin) carried no Authorization.
        assert_eq!(log.storage_auth, vec![None, None]);
    }

    // Wrong credentials: the token endpoint refuses.
    let bad = remote(&host, "ns/app", true, creds("wrong"));
    let err = bad.get_manifest("v1").await.unwrap_err();
    assert!(matches!(err, RemoteError::Unauthorized(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("you may not have access to the container image \"{host}/ns/app:v1\"")
    );

    // Anonymous, `access_token` without a lifetime: works, and the request had no credentials.
    log.lock().unwrap().expires_in = None;
    let anon = remote(&host, "ns/app", true, None);
    let m = anon.get_manifest("v1").await.unwrap();
    assert_eq!(m.digest, Digest::sha256_of(&manifest));
    assert_eq!(
        log.lock().unwrap().requests.last().unwrap(),
        &(
            "test-registry".to_string(),
            "repository:ns/app:pull".to_string(),
            false
        )
    );

    // A short-lived token is renewed once it expires.
    log.lock().unwrap().expires_in = Some(1);
    let short = remote(&host, "ns/app", true, creds(PASSWORD));
    short.get_manifest("v1").await.unwrap();
    let before = log.lock().unwrap().requests.len();
    short.get_manifest("v1").await.unwrap();
    assert_eq!(
        log.lock().unwrap().requests.len(),
        before,
        "cached while valid"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    short.get_manifest("v1").await.unwrap();
    assert_eq!(
        log.lock().unwrap().requests.len(),
        before + 1,
        "renewed after expiry"
    );

    // A token the registry stops accepting (here: revoked) is replaced after one 401.
    log.lock().unwrap().expires_in = Some(300);
    let revoking = remote(&host, "ns/app", true, creds(PASSWORD));
    revoking.get_manifest("v1").await.unwrap();
    log.lock().unwrap().issued.clear();
    revoking.get_manifest("v1").await.unwrap();
}

#[tokio::test]
async fn digest_mismatches_are_refused() {
    // A registry that serves the same bytes whatever digest is asked for.
    let body = Bytes::from_static(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#);
    let lying_digest = Digest::sha256_of(b"something else");
    let addr = {
        let body = body.clone();
        let lying = lying_digest.to_string();
        serve(Arc::new(move |req| {
            let path = req.uri().path();
            if path == "/v2/" {
                response(200, &[], "{}")
            } else if path.ends_with("/manifests/claims") {
                // Claims a digest its bytes do not have.
                response(
                    200,
                    &[
                        ("content-type", MEDIA_OCI_MANIFEST.into()),
                        ("docker-content-digest", lying.clone()),
                    ],
                    body.clone(),
                )
            } else if path.ends_with("/manifests/huge") {
                response(
                    200,
                    &[("content-type", MEDIA_OCI_MANIFEST.into())],
                    vec![b' '; (4 << 20) + 1],
                )
            } else {
                response(
                    200,
                    &[("content-type", MEDIA_OCI_MANIFEST.into())],
                    body.clone(),
                )
            }
        }))
        .await
    };
    let r = remote(&addr.to_string(), "ns/app", true, None);
    assert_eq!(
        r.get_manifest("v1").await.unwrap().digest,
        Digest::sha256_of(&body)
    );
    let err = r.get_manifest(&lying_digest.to_string()).await.unwrap_err();
    assert!(matches!(err, RemoteError::Invalid(_)), "{err:?}");
    let err = r.get_manifest("claims").await.unwrap_err();
    assert!(matches!(err, RemoteError::Invalid(_)), "{err:?}");
    let err = r.get_manifest("huge").await.unwrap_err();
    assert!(matches!(err, RemoteError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("larger than"), "{err}");
    let err = r.get_blob_bytes(&lying_digest, 1 << 20).await.unwrap_err();
    assert!(matches!(err, RemoteError::Invalid(_)), "{err:?}");
    let (_, stream) = r.open_blob(&lying_digest).await.unwrap();
    let items: Vec<_> = stream.collect().await;
    assert!(
        matches!(items.last(), Some(Err(RemoteError::Invalid(_)))),
        "the stream ends with the mismatch"
    );
}

#[tokio::test]
async fn tag_pagination_follows_links() {
    // Pages of `n` tags after `last`, linked the way distribution 3 does (relative), except
    // that the second hop is an absolute URL naming another host: only its path and query are
    // followed, on the registry itself.
    let tags: Vec<String> = (0..11).map(|i| format!("tag{i:02}")).collect();
    let pages = Arc::new(Mutex::new(Vec::<String>::new()));
    let addr = {
        let tags = tags.clone();
        let pages = pages.clone();
        serve(Arc::new(move |req| {
            let path = req.uri().path().to_string();
            if path == "/v2/" {
                return response(200, &[], "{}");
            }
            if path == "/v2/ns/loop/tags/list" {
                return response(
                    200,
                    &[(
                        "link",
                        r#"</v2/ns/loop/tags/list?n=2>; rel="next""#.to_string(),
                    )],
                    r#"{"name":"ns/loop","tags":["a"]}"#,
                );
            }
            assert_eq!(path, "/v2/ns/app/tags/list");
            let q = query(&req);
            pages
                .lock()
                .unwrap()
                .push(req.uri().query().unwrap_or("").to_string());
            let n: usize = q.get("n").map_or(tags.len(), |n| n.parse().unwrap());
            let start = q
                .get("last")
                .map_or(0, |l| tags.iter().position(|t| t == l).unwrap() + 1);
            let page = &tags[start..(start + n).min(tags.len())];
            let mut headers = Vec::new();
            if start + n < tags.len() {
                let last = page.last().unwrap();
                let target = if start == n {
                    format!("http://elsewhere.invalid:1/v2/ns/app/tags/list?n={n}&last={last}")
                } else {
                    format!("/v2/ns/app/tags/list?n={n}&last={last}")
                };
                headers.push(("link", format!("<{target}>; rel=\"next\"")));
            }
            let body = serde_json::json!({"name": "ns/app", "tags": page}).to_string();
            response(200, &headers, body)
        }))
        .await
    };
    let r = remote(&addr.to_string(), "ns/app", true, None);
    assert_eq!(r.list_tags_paged(Some(3)).await.unwrap(), tags);
    assert_eq!(
        *pages.lock().unwrap(),
        vec![
            "n=3".to_string(),
            "n=3&last=tag02".to_string(),
            "n=3&last=tag05".to_string(),
            "n=3&last=tag08".to_string(),
        ]
    );
    assert_eq!(r.list_tags().await.unwrap(), tags);

    // A next link that repeats a page is an error, not an endless loop.
    let looping = remote(&addr.to_string(), "ns/loop", true, None);
    let err = looping.list_tags_paged(Some(2)).await.unwrap_err();
    assert!(matches!(err, RemoteError::Invalid(_)), "{err:?}");
}

/// Where a registry may send the client: redirects and token realms are checked against the
/// allowed registries before anything is sent there, and loopback needs a pattern naming it.
#[tokio::test]
async fn redirects_and_realms_stay_within_the_allowed_registries() {
    let challenge: Arc<Mutex<Option<String>>> = Arc::default();
    let addr = {
        let challenge = challenge.clone();
        serve(Arc::new(move |req| {
            let path = req.uri().path().to_string();
            match (path.as_str(), challenge.lock().unwrap().clone()) {
                (_, Some(c)) => response(401, &[("www-authenticate", c)], ""),
                ("/v2/", None) => response(200, &[], "{}"),
                ("/v2/ns/app/manifests/metadata", None) => response(
                    307,
                    &[("location", "http://169.254.169.254/latest/meta-data".into())],
                    "",
                ),
                ("/v2/ns/app/manifests/local", None) => response(
                    307,
                    &[(
                        "location",
                        "http://localhost:1/v2/ns/app/manifests/v1".into(),
                    )],
                    "",
                ),
                _ => response(404, &[], ""),
            }
        }))
        .await
    };
    let r = remote(&addr.to_string(), "ns/app", true, None);
    let err = r.get_manifest("metadata").await.unwrap_err();
    assert_eq!(
        err,
        RemoteError::NotAllowed(
            "importing images from registry \"169.254.169.254\" is forbidden: it is not in \
             allowed_registries_for_import"
                .into()
        )
    );
    assert_eq!(err.reason(), "Forbidden");
    let err = r.get_manifest("local").await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("importing images from registry \"localhost:1\" is forbidden"),
        "{err}"
    );

    // With no list, only the loopback and link-local rule holds, for redirects too.
    let open = |addr: &SocketAddr| {
        let reference = ImageReference::parse(&format!("{addr}/ns/app")).unwrap();
        Remote::new(&reference, RemoteOptions::default())
    };
    let err = open(&addr).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "importing images from registry \"{addr}\" is forbidden: 127.0.0.1 is a loopback or \
             link-local address, refused unless allowed_registries_for_import names it"
        )
    );

    // A token realm on a link-local address gets no request (and no credentials).
    *challenge.lock().unwrap() =
        Some(r#"Bearer realm="http://169.254.169.254/token",service="x""#.into());
    let r = remote(&addr.to_string(), "ns/app", true, creds("secret"));
    let err = r.get_manifest("v1").await.unwrap_err();
    assert!(
        matches!(&err, RemoteError::NotAllowed(m) if m.contains("\"169.254.169.254\"")),
        "{err:?}"
    );
}

/// A name that is not `localhost` but resolves to loopback (DNS rebinding, or /etc/hosts) is
/// refused when the connection is made. Needs such a name: the machine's host name usually is
/// one (127.0.1.1 on Debian, 127.0.0.1 in containers); the test says so and passes otherwise.
#[tokio::test]
async fn names_resolving_to_loopback_are_refused_at_connect_time() {
    use std::net::ToSocketAddrs;
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let loopback_name = !name.is_empty()
        && (name.as_str(), 0)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.any(|a| a.ip().is_loopback()));
    if !loopback_name {
        eprintln!("skipped: the host name {name:?} does not resolve to a loopback address");
        return;
    }
    let addr = serve(Arc::new(|_| response(200, &[], "{}"))).await;
    let registry = format!("{name}:{}", addr.port());
    let reference = ImageReference::parse(&format!("{registry}/ns/app")).unwrap();
    let r = Remote::new(
        &reference,
        RemoteOptions {
            insecure: true,
            ..RemoteOptions::default()
        },
    )
    .unwrap();
    let err = r.get_manifest("v1").await.unwrap_err();
    assert!(
        matches!(&err, RemoteError::NotAllowed(m) if m.contains(&format!("{name} resolves to "))),
        "{err:?}"
    );
    // Naming the host allows it.
    let named = Arc::new(AllowedRegistries::new(vec![RegistryPattern::parse(
        &format!("{name}:*"),
        true,
    )
    .unwrap()]));
    let r = Remote::new(
        &reference,
        RemoteOptions {
            insecure: true,
            allowed: named,
            ..RemoteOptions::default()
        },
    )
    .unwrap();
    assert!(matches!(
        r.get_manifest("v1").await.unwrap_err(),
        RemoteError::Invalid(_)
    ));
}

/// Standard base64 (the test's own, to check the client's Basic header independently).
fn b64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
