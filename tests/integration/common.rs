//! A real server per test, and protocol-speaking helpers.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::config::{AllowedRegistry, Config};
use reqwest::{Client, Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;

pub struct TestServer {
    pub base: String,
    pub client: Client,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The configuration it runs with (a restart keeps it).
    config: Config,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_in(tempfile::tempdir().unwrap(), |_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_in(tempfile::tempdir().unwrap(), tweak).await
    }

    /// The helpers of this type for a server running elsewhere (e.g. a child process).
    pub fn client_for(base: &str) -> TestServer {
        TestServer {
            base: base.to_string(),
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            dir: tempfile::tempdir().unwrap(),
            stop: None,
            task: None,
            config: Config::default(),
        }
    }

    /// A server on an existing data directory.
    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        tweak(&mut config);
        let server = berth::Server::bind(config.clone())
            .await
            .expect("server binds");
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        TestServer {
            base: format!("http://{addr}"),
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            dir,
            stop: Some(stop),
            task: Some(task),
            config,
        }
    }

    /// Stops the server (graceful shutdown) and starts a new one on the same data directory.
    pub async fn restart(self) -> TestServer {
        self.restart_with(|_| {}).await
    }

    /// [`TestServer::restart`] with a changed configuration.
    pub async fn restart_with(mut self, tweak: impl FnOnce(&mut Config)) -> TestServer {
        self.stop().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let config = self.config.clone();
        // The same directory (a fixture may keep its data in a subdirectory of it).
        Self::start_in(dir, |c| {
            *c = config;
            tweak(c);
        })
        .await
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task ends cleanly");
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path).send().await.unwrap()
    }

    pub async fn head(&self, path: &str) -> Response {
        self.req(Method::HEAD, path).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.req(Method::DELETE, path).send().await.unwrap()
    }

    /// A request with Basic credentials when `user` is given.
    fn req_as(&self, user: Basic<'_>, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.req(method, path);
        match user {
            Some((name, password)) => req.basic_auth(name, Some(password)),
            None => req,
        }
    }

    /// Pushes a blob with POST + PUT and returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        self.push_blob_as(None, repo, data).await
    }

    pub async fn push_blob_as(&self, user: Basic<'_>, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self
            .req_as(user, Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let loc = location(&r);
        let r = self
            .req_as(
                user,
                Method::PUT,
                &with_query(&loc, &format!("digest={digest}")),
            )
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

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.put_manifest_as(None, repo, reference, media_type, body)
            .await
    }

    pub async fn put_manifest_as(
        &self,
        user: Basic<'_>,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.req_as(
            user,
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
    }

    /// Pushes a config and one layer (`layer of <seed>`), then an OCI manifest under
    /// `reference`; returns the manifest digest and bytes.
    pub async fn push_image(&self, repo: &str, reference: &str, seed: &str) -> (String, Vec<u8>) {
        self.push_image_as(None, repo, reference, seed).await
    }

    /// [`TestServer::push_image`] with Basic credentials (for servers with auth on).
    pub async fn push_image_as(
        &self,
        user: Basic<'_>,
        repo: &str,
        reference: &str,
        seed: &str,
    ) -> (String, Vec<u8>) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        let layer = format!("layer of {seed}");
        let cd = self.push_blob_as(user, repo, config.as_bytes()).await;
        let ld = self.push_blob_as(user, repo, layer.as_bytes()).await;
        let manifest = image_manifest(&cd, config.len(), &[(&ld, layer.len())], "");
        let r = self
            .put_manifest_as(user, repo, reference, OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        (sha256(&manifest), manifest)
    }
}

/// Lets a server import from registries on 127.0.0.1 (the test peers), over plain HTTP too:
/// loopback sources are refused unless `allowed_registries_for_import` names them.
pub fn allow_loopback_imports(c: &mut Config) {
    c.allowed_registries_for_import.push(AllowedRegistry {
        domain_name: "127.0.0.1:*".into(),
        insecure: true,
    });
}

/// Optional Basic credentials: (user, password).
pub type Basic<'a> = Option<(&'a str, &'a str)>;

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The real binary as a child process (`berth serve` on 127.0.0.1:0), for tests that kill it or
/// measure it apart from the test process.
/// A `berth serve` child; SIGKILLed and reaped when dropped (also when the test panics).
pub struct Serve {
    pub child: std::process::Child,
    pub log: Arc<Mutex<String>>,
    pub base: String,
}

impl Serve {
    pub fn start(data_dir: &Path) -> Serve {
        Self::start_full(data_dir, &[], &[])
    }

    /// [`Serve::start`] with more `berth serve` arguments.
    pub fn start_with(data_dir: &Path, extra: &[&std::ffi::OsStr]) -> Serve {
        Self::start_full(data_dir, extra, &[])
    }

    /// [`Serve::start`] with extra environment (settings as `BERTH_*` variables).
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Serve {
        Self::start_full(data_dir, &[], env)
    }

    fn start_full(data_dir: &Path, extra: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Serve {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("BERTH_CONFIG")
            .env_remove("BERTH_TLS_CERT")
            .env_remove("BERTH_TLS_KEY")
            .env_remove("BERTH_TLS_CLIENT_CA")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut serve = Serve {
            child,
            log,
            base: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr: SocketAddr = loop {
            let log = serve.log.lock().unwrap().clone();
            if let Some(rest) = log.split("listening addr=").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            if let Some(status) = serve.child.try_wait().unwrap() {
                panic!("berth serve exited with {status:?}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "berth serve did not listen:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        serve.base = format!("http://{addr}");
        serve
    }

    pub fn kill(&mut self) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of process `pid`, in bytes.
pub fn rss_of(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS:")
}

/// VmHWM (peak resident set) of process `pid`, in bytes.
pub fn hwm_of(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:")
}

fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} of {pid}"));
    kb * 1024
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn location(r: &Response) -> String {
    r.headers()
        .get("location")
        .expect("Location header")
        .to_str()
        .unwrap()
        .to_string()
}

pub fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

pub fn with_query(url: &str, query: &str) -> String {
    if url.contains('?') {
        format!("{url}&{query}")
    } else {
        format!("{url}?{query}")
    }
}

/// An OCI image manifest; `extra` is spliced in as additional top-level fields.
pub fn image_manifest(
    config: &str,
    config_size: usize,
    layers: &[(&str, usize)],
    extra: &str,
) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| {
            format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{s}}}"#)
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{}]{extra}}}"#,
        layers.join(",")
    )
    .into_bytes()
}

/// The `code` of the first OCI error in a response body.
pub async fn error_code(r: Response) -> String {
    let body: serde_json::Value = r.json().await.expect("OCI error JSON");
    body["errors"][0]["code"]
        .as_str()
        .expect("errors[0].code")
        .to_string()
}

/// What a run of the berth binary printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The output of a run that must have succeeded.
pub fn ok(r: &Run) -> &str {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    &r.stdout
}

/// Runs the berth binary off the async runtime. Connection settings of the environment are
/// dropped and no user client config is read, unless `env` sets them.
pub async fn run_berth(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, std::ffi::OsString)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_os_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(&args)
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_NAMESPACE")
            .env_remove("BERTH_TOKEN")
            .env("BERTH_CLIENT_CONFIG", "/nonexistent/berth-test/config.toml")
            .envs(env)
            .output()
            .expect("berth runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    })
    .await
    .unwrap()
}

/// `berth --server <server> -n <ns> <args>`.
pub async fn berth_in(server: &TestServer, ns: &str, args: &[&str]) -> Run {
    let mut all = vec!["--server", server.base.as_str(), "-n", ns];
    all.extend_from_slice(args);
    run_berth(&all, &[]).await
}

/// An image stream as the API serves it (asserting 200).
pub async fn stream(s: &TestServer, ns: &str, name: &str) -> serde_json::Value {
    let r = s
        .get(&format!(
            "/apis/image.openshift.io/v1/namespaces/{ns}/imagestreams/{name}"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// `status.tags[tag]` of a stream, or null.
pub fn status_tag<'a>(is: &'a serde_json::Value, tag: &str) -> &'a serde_json::Value {
    is["status"]["tags"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["tag"] == tag))
        .unwrap_or(&serde_json::Value::Null)
}

/// The image ids of a tag's history, newest first (empty when the tag has none).
pub fn history(is: &serde_json::Value, tag: &str) -> Vec<String> {
    status_tag(is, tag)["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["image"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A registry token `s` issues to `user` (Basic auth) for `scope`.
pub async fn issued_token(s: &TestServer, user: &str, password: &str, scope: &str) -> String {
    let r = s
        .req(
            Method::GET,
            &format!("/auth/token?service=berth&scope={scope}"),
        )
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}
