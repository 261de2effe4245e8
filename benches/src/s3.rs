//! Workload 12: berth and docker-registry with their blobs on the same S3 server, a one-node
//! Garage started here (issue 17). Each registry has its own bucket; both serve blob bytes
//! themselves (berth's `--blob-redirect` is off by default, and the peer's redirect to presigned
//! URLs is disabled) so the figures compare the registries, not Garage serving a client.
//!
//! The Garage binary is `GARAGE_BIN` or `~/.cache/berth-tools/garage/bin/garage`, built by
//! `scripts/install-deps.sh`; without it the workload reports itself skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{make_image, random_bytes, sha256_digest, shared_bytes, Image};
use crate::results::Metric;
use crate::stats;
use crate::workloads::{log, seed, Bench};

const MIB: usize = 1 << 20;
pub const BERTH_BUCKET: &str = "berth";
pub const PEER_BUCKET: &str = "registry";

pub fn garage_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/berth-tools/garage/bin/garage")
}

/// A one-node Garage (replication factor 1) with one key allowed on both buckets; killed on
/// drop. The same setup as `scripts/garage-cluster.sh start DIR 1`, which the bench does not
/// call so that it runs from any directory.
pub struct Garage {
    child: Child,
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16, String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port())
}

/// Runs a garage admin command until it succeeds (the node still starting), for 30 s.
fn garage_cmd(config: &Path, args: &[&str]) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(garage_binary())
            .arg("-c")
            .arg(config)
            .args(args)
            .output()
            .map_err(|e| format!("garage {args:?}: {e}"))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "garage {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn field(text: &str, label: &str) -> Result<String, String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| format!("no {label:?} in garage's answer:\n{text}"))
}

impl Garage {
    pub fn start(work: &Path) -> Result<Garage, String> {
        let dir = tempfile::Builder::new()
            .prefix("bench-garage-")
            .tempdir_in(work)
            .map_err(|e| e.to_string())?;
        let root = dir.path();
        let (rpc, s3, admin) = (free_port()?, free_port()?, free_port()?);
        let secret: String = random_bytes(12, 32)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let config = root.join("garage.toml");
        // No compression: the bench's layers are random bytes, and on a small machine zstd's
        // cost would land on whichever registry is running, not on the registry's own work.
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{r}/meta\"\ndata_dir = \"{r}/data\"\n\
                 db_engine = \"sqlite\"\nreplication_factor = 1\ncompression_level = \"none\"\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{secret}\"\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                r = root.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(root.join("log")).map_err(|e| e.to_string())?;
        let child = Command::new(garage_binary())
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting garage: {e}"))?;
        let mut garage = Garage {
            child,
            endpoint: format!("http://127.0.0.1:{s3}"),
            key_id: String::new(),
            secret: String::new(),
            _dir: dir,
        };
        let id = garage_cmd(&config, &["node", "id", "-q"])?;
        let id = id.trim().split('@').next().unwrap_or_default().to_string();
        garage_cmd(
            &config,
            &["layout", "assign", "-z", "dc0", "-c", "10G", &id],
        )?;
        garage_cmd(&config, &["layout", "apply", "--version", "1"])?;
        let key = garage_cmd(&config, &["key", "create", "bench"])?;
        garage.key_id = field(&key, "Key ID:")?;
        garage.secret = field(&key, "Secret key:")?;
        for bucket in [BERTH_BUCKET, PEER_BUCKET] {
            garage_cmd(&config, &["bucket", "create", bucket])?;
            garage_cmd(
                &config,
                &[
                    "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", "bench",
                ],
            )?;
        }
        Ok(garage)
    }

    /// berth's flags for its bucket.
    pub fn berth_flags(&self) -> Vec<String> {
        vec![
            "--blob-store".into(),
            format!("s3://{BERTH_BUCKET}/berth"),
            "--s3-endpoint".into(),
            self.endpoint.clone(),
            "--s3-region".into(),
            "garage".into(),
        ]
    }

    pub fn berth_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
        ]
    }

    /// docker-registry's `storage:` driver section for its bucket. `redirect: disable` makes it
    /// serve blob GETs itself, as berth does by default; with `redirect` it answers 307 to a
    /// presigned URL, as berth does with `--blob-redirect`.
    pub fn peer_storage(&self, redirect: bool) -> String {
        let disable = if redirect {
            ""
        } else {
            "  redirect:\n    disable: true\n"
        };
        format!(
            "  s3:\n    accesskey: {}\n    secretkey: {}\n    region: garage\n    \
             regionendpoint: {}\n    bucket: {PEER_BUCKET}\n    secure: false\n    v4auth: true\n\
             {disable}",
            self.key_id, self.secret, self.endpoint
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mb_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

impl Bench {
    /// Workload 12: a big layer pushed (monolithic `PUT`) then pulled whole, and 1 MiB images
    /// pushed at concurrency 10, berth and the peer alternating, both on Garage.
    pub async fn s3(&mut self) {
        let size = self.plan.s3_layer;
        let push = Metric::higher("12", "S3: push big layer", "MB/s").target(1.2);
        let pull = if self.plan.s3_redirect {
            Metric::higher("12", "S3: pull big layer, 307 to presigned URL", "MB/s")
        } else {
            Metric::higher("12", "S3: pull big layer", "MB/s").target(1.2)
        };
        let images = Metric::higher("12", "S3: push 1 MiB images, conc 10", "images/s").target(1.2);
        let p50 = Metric::lower("12", "S3: push 1 MiB images, conc 10", "p50 ms");
        log(&format!(
            "workload 12 (Garage): {} MiB layer x {} repetitions, {} images x {} repetitions",
            size / MIB,
            self.plan.big_reps,
            self.plan.images,
            self.plan.reps
        ));
        let mut buf = Arc::new(random_bytes(12 << 40, size));
        let mut stamp = 0u64;
        for rep in 0..self.plan.big_reps {
            for (kind, reg) in self.regs.clone() {
                stamp += 1;
                // A distinct blob every time, so no push finds its blob already stored.
                Arc::make_mut(&mut buf)[..8].copy_from_slice(&stamp.to_le_bytes());
                let digest = sha256_digest(&buf);
                let t = Instant::now();
                let pushed = reg
                    .push_blob("bench/s3-layer", shared_bytes(&buf), &digest)
                    .await;
                let push_rate = mb_s(size, t.elapsed());
                if let Err(e) = pushed {
                    self.results.fail(&push, kind, 1, Some(e));
                    continue;
                }
                self.results.add(&push, kind, push_rate);
                let t = Instant::now();
                let pulled = reg.get_blob("bench/s3-layer", &digest, size as u64).await;
                let pull_rate = mb_s(size, t.elapsed());
                match pulled {
                    Ok(_) => self.results.add(&pull, kind, pull_rate),
                    Err(e) => self.results.fail(&pull, kind, 1, Some(e)),
                }
                log(&format!(
                    "  12 rep {rep} {}: push {push_rate:.0} MB/s, pull {pull_rate:.0} MB/s",
                    kind.label()
                ));
            }
        }
        drop(buf);
        let n = self.plan.images;
        for rep in 0..self.plan.reps {
            for (kind, reg) in self.regs.clone() {
                let imgs: Arc<Vec<Image>> = Arc::new(
                    (0..n)
                        .map(|i| make_image(seed(12, rep, kind, i), MIB))
                        .collect(),
                );
                let b = stats::run(n, 10, move |i| {
                    let (reg, imgs) = (reg.clone(), imgs.clone());
                    async move {
                        reg.push_image(&format!("bench/s3-img-{rep}-{i}"), "v1", &imgs[i])
                            .await
                    }
                })
                .await;
                self.record_batch(&images, kind, &b);
                self.results.add(&images, kind, b.rate());
                self.results.add(&p50, kind, b.p(50.0));
                log(&format!(
                    "  12 images rep {rep} {}: {:.1} images/s",
                    kind.label(),
                    b.rate()
                ));
            }
        }
    }
}
