//! Debian's docker-registry (CNCF distribution 2.8) as a peer on 127.0.0.1: started per test
//! (open, with htpasswd Basic auth, or with TLS), and a plain client that pushes into it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::importer::remote::MEDIA_DOCKER_MANIFEST;
use berth_storage::Digest;
use reqwest::StatusCode;

pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";
pub const USER: &str = "importer";
pub const PASSWORD: &str = "s3cret:with:colons";

/// A docker-registry process on a free 127.0.0.1 port, killed on drop.
pub struct DockerRegistry {
    child: Child,
    pub addr: SocketAddr,
    scheme: &'static str,
    _dir: tempfile::TempDir,
}

impl DockerRegistry {
    /// Starts an open registry, or one with htpasswd Basic auth for `USER`/`PASSWORD`.
    pub async fn start(basic_auth: bool) -> DockerRegistry {
        Self::start_with(basic_auth, None).await
    }

    /// `tls`: a certificate chain and key (PEM) to serve HTTPS with.
    pub async fn start_with(basic_auth: bool, tls: Option<(&Path, &Path)>) -> DockerRegistry {
        Self::start_at(basic_auth, tls, false).await
    }

    /// An HTTP registry on port 80, the default port of plain HTTP (the test runs as root, as
    /// the suite does).
    pub async fn start_on_port_80(basic_auth: bool) -> DockerRegistry {
        Self::start_at(basic_auth, None, true).await
    }

    async fn start_at(
        basic_auth: bool,
        tls: Option<(&Path, &Path)>,
        port_80: bool,
    ) -> DockerRegistry {
        assert!(
            Path::new(DOCKER_REGISTRY).exists(),
            "{DOCKER_REGISTRY} is missing: run scripts/install-deps.sh (it installs the \
             docker-registry package)"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut auth = String::new();
        if basic_auth {
            let hash = bcrypt::hash(PASSWORD, 4).unwrap();
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{USER}:{hash}\n")).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let (scheme, tls) = match tls {
            Some((cert, key)) => (
                "https",
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                ),
            ),
            None => ("http", String::new()),
        };
        // A free port: bind, note, release; retried if another process takes it meanwhile.
        for attempt in 0..5 {
            let addr: SocketAddr = match port_80 {
                // HTTP's default port on a loopback address of its own (other tests and
                // engineers on the machine use 127.0.0.1).
                true => {
                    let n = std::process::id().wrapping_add(attempt * 7919);
                    let ip = format!(
                        "127.{}.{}.{}",
                        16 + n % 200,
                        (n / 200) % 250,
                        1 + (n / 50000) % 250
                    );
                    let addr: SocketAddr = format!("{ip}:80").parse().unwrap();
                    if let Err(e) = std::net::TcpListener::bind(addr) {
                        eprintln!("port 80 on {ip} is not free: {e}");
                        continue;
                    }
                    addr
                }
                false => {
                    let port = std::net::TcpListener::bind("127.0.0.1:0")
                        .unwrap()
                        .local_addr()
                        .unwrap()
                        .port();
                    format!("127.0.0.1:{port}").parse().unwrap()
                }
            };
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n  secret: berth-test-secret\n{tls}{auth}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
            let mut child = Command::new(DOCKER_REGISTRY)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("docker-registry starts");
            if wait_ready(&mut child, &format!("{scheme}://{addr}/v2/")).await {
                return DockerRegistry {
                    child,
                    addr,
                    scheme,
                    _dir: dir,
                };
            }
            let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            eprintln!("docker-registry did not come up on {addr}: {log}");
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The host without its port.
    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }
}

/// Waits for `GET /v2/` to answer; false if the process exited or never answered.
async fn wait_ready(child: &mut Child, url: &str) -> bool {
    let client = test_client();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if client.get(url).send().await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's own client: it trusts any certificate (the test's registries are its own).
pub fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// Pushes over plain HTTP with reqwest, optionally with Basic credentials.
pub struct Pusher {
    client: reqwest::Client,
    base: String,
    basic: bool,
}

impl Pusher {
    pub fn new(reg: &DockerRegistry, basic: bool) -> Pusher {
        Pusher {
            client: test_client(),
            base: reg.url(""),
            basic,
        }
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("{}{url}", self.base)
        };
        let req = self.client.request(method, url);
        if self.basic {
            req.basic_auth(USER, Some(PASSWORD))
        } else {
            req
        }
    }

    pub async fn blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        let r = self
            .req(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::ACCEPTED,
            "{}",
            r.text().await.unwrap()
        );
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = self
            .req(
                reqwest::Method::PUT,
                &format!("{location}{sep}digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        digest
    }

    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Digest {
        let r = self
            .req(
                reqwest::Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
            )
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        let digest = Digest::sha256_of(body);
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            digest.to_string()
        );
        digest
    }
}

/// One pushed single-platform image.
pub struct Pushed {
    pub manifest: Vec<u8>,
    pub digest: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layer: Vec<u8>,
    pub layer_digest: Digest,
}

/// Pushes a config and a ~300 KiB layer, then a manifest of `media_type` under `reference`.
pub async fn push_image(
    p: &Pusher,
    repo: &str,
    reference: &str,
    arch: &str,
    media_type: &str,
) -> Pushed {
    let layer: Vec<u8> = (0..300 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ arch.len() as u8)
        .collect();
    let layer_digest = p.blob(repo, &layer).await;
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"config":{{}}}}"#
    )
    .into_bytes();
    let config_digest = p.blob(repo, &config).await;
    let (config_type, layer_type) = if media_type == MEDIA_DOCKER_MANIFEST {
        (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar",
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar",
        )
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"{config_type}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{layer_type}","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    let digest = p.manifest(repo, reference, media_type, &manifest).await;
    Pushed {
        manifest,
        digest,
        config,
        config_digest,
        layer,
        layer_digest,
    }
}
