//! A real Garage cluster (S3-compatible, distributed) on 127.0.0.1 for the object-storage
//! tests: `nodes` processes with replication factor `nodes`, one key, one bucket. The binary
//! comes from `GARAGE_BIN` or `~/.cache/berth-tools/garage/bin/garage`, where
//! `scripts/install-deps.sh` builds it (`cargo install garage --version 2.5.0 --locked`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Garage {
    nodes: Vec<Option<Child>>,
    configs: Vec<PathBuf>,
    pub s3_ports: Vec<u16>,
    pub key_id: String,
    pub secret: String,
    pub bucket: String,
    _dir: tempfile::TempDir,
}

pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/berth-tools/garage/bin/garage")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn garage(config: &Path, args: &[&str]) -> String {
    let out = Command::new(binary())
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("garage {args:?}: {e}"));
    assert!(
        out.status.success(),
        "garage {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `args` until it succeeds (a node still starting), for at most 30 s.
fn garage_retrying(config: &Path, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(binary())
            .arg("-c")
            .arg(config)
            .args(args)
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "garage {args:?} kept failing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
}

impl Garage {
    pub fn start(count: usize) -> Garage {
        assert!(
            binary().exists(),
            "{} missing: run scripts/install-deps.sh (it builds Garage 2.5.0 once) or set GARAGE_BIN",
            binary().display()
        );
        let dir = tempfile::tempdir().unwrap();
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + 11) % 256))
            .collect();
        let mut configs = Vec::new();
        let mut nodes = Vec::new();
        let mut s3_ports = Vec::new();
        let mut rpc = Vec::new();
        for n in 0..count {
            let root = dir.path().join(format!("node{n}"));
            std::fs::create_dir_all(&root).unwrap();
            // A port picked free may be taken before the node binds it (other suites run
            // alongside): a node that exits at once gets new ports.
            let mut attempt = 0;
            let (child, config, rpc_port, s3_port) = loop {
                let (rpc_port, s3_port, admin_port) = (free_port(), free_port(), free_port());
                let config = root.join("garage.toml");
                std::fs::write(
                    &config,
                    format!(
                        "metadata_dir = \"{root}/meta\"\ndata_dir = \"{root}/data\"\n\
                         db_engine = \"sqlite\"\nreplication_factor = {count}\n\
                         rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
                         rpc_public_addr = \"127.0.0.1:{rpc_port}\"\nrpc_secret = \"{secret}\"\n\
                         [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                         root_domain = \".s3.garage.localhost\"\n\
                         [admin]\napi_bind_addr = \"127.0.0.1:{admin_port}\"\n",
                        root = root.display()
                    ),
                )
                .unwrap();
                let mut child = Command::new(binary())
                    .arg("-c")
                    .arg(&config)
                    .arg("server")
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(root.join("log")).unwrap())
                    .spawn()
                    .unwrap();
                std::thread::sleep(Duration::from_millis(300));
                match child.try_wait().unwrap() {
                    None => break (child, config, rpc_port, s3_port),
                    Some(status) => {
                        attempt += 1;
                        assert!(attempt < 5, "garage node {n} keeps exiting: {status}");
                    }
                }
            };
            nodes.push(Some(child));
            configs.push(config);
            s3_ports.push(s3_port);
            rpc.push(rpc_port);
        }
        let ids: Vec<String> = configs
            .iter()
            .map(|c| {
                let out = garage_retrying(c, &["node", "id", "-q"]);
                out.trim().split('@').next().unwrap().to_string()
            })
            .collect();
        for (n, id) in ids.iter().enumerate().skip(1) {
            garage_retrying(
                &configs[0],
                &["node", "connect", &format!("{id}@127.0.0.1:{}", rpc[n])],
            );
        }
        for (n, id) in ids.iter().enumerate() {
            garage_retrying(
                &configs[0],
                &["layout", "assign", "-z", &format!("dc{n}"), "-c", "1G", id],
            );
        }
        garage_retrying(&configs[0], &["layout", "apply", "--version", "1"]);
        let key = garage_retrying(&configs[0], &["key", "create", "berth-test"]);
        let (key_id, secret_key) = (field(&key, "Key ID:"), field(&key, "Secret key:"));
        let bucket = "berth".to_string();
        garage_retrying(&configs[0], &["bucket", "create", &bucket]);
        garage(
            &configs[0],
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                &bucket,
                "--key",
                "berth-test",
            ],
        );
        let garage = Garage {
            nodes,
            configs,
            s3_ports,
            key_id,
            secret: secret_key,
            bucket,
            _dir: dir,
        };
        garage.wait_until_serving();
        garage
    }

    /// Waits until every node answers S3 requests with the key: a new key's rights reach the
    /// nodes a moment after `bucket allow` returns, and a request in between is refused.
    fn wait_until_serving(&self) {
        let configs: Vec<_> = (0..self.nodes.len())
            .map(|n| self.s3_config(n, "ready"))
            .collect();
        // On a thread of its own: the tests calling this run inside a tokio runtime already.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let probe: berth_storage::Digest =
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                    .parse()
                    .unwrap();
            for config in configs {
                let meta = std::sync::Arc::new(berth_storage::memory::MemoryMetadata::new());
                let store = berth_storage::s3::S3BlobStore::new(&config, meta).unwrap();
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    use berth_storage::BlobStore as _;
                    match rt.block_on(store.stat(&probe)) {
                        Ok(_) => break,
                        Err(_) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(100))
                        }
                        Err(e) => panic!("garage never served S3 requests: {e}"),
                    }
                }
            }
        })
        .join()
        .unwrap();
    }

    pub fn endpoint(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.s3_ports[node])
    }

    /// Kills one node (SIGKILL), as a machine dying would.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts a killed node on its old data.
    pub fn restart(&mut self, node: usize) {
        assert!(self.nodes[node].is_none());
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.configs[node])
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.nodes[node] = Some(child);
        garage_retrying(&self.configs[node], &["status"]);
    }

    /// The settings berth needs, for `node`'s S3 endpoint.
    pub fn s3_config(&self, node: usize, prefix: &str) -> berth_storage::s3::S3Config {
        berth_storage::s3::S3Config {
            bucket: self.bucket.clone(),
            prefix: prefix.to_string(),
            endpoint: Some(self.endpoint(node)),
            region: "garage".into(),
            access_key_id: Some(self.key_id.clone()),
            secret_access_key: Some(self.secret.clone()),
            redirect: false,
        }
    }

    /// Points a server's config at the bucket (under `prefix`) through `node`.
    pub fn configure(&self, c: &mut berth::config::Config, node: usize, prefix: &str) {
        c.blob_store = format!("s3://{}/{prefix}", self.bucket);
        c.s3_endpoint = Some(self.endpoint(node));
        c.s3_region = "garage".into();
        c.s3_access_key_id = Some(self.key_id.clone());
        c.s3_secret_access_key = Some(self.secret.clone());
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for n in 0..self.nodes.len() {
            self.kill(n);
        }
    }
}
