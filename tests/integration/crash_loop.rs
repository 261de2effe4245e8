//! Crash loop: the real `berth serve` binary is SIGKILLed at a random moment while clients push
//! images and move a tag, 20 times on the same data directory. After each restart every
//! acknowledged write must still be there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::common::{image_manifest, sha256, Serve, OCI_MANIFEST};

const ROUNDS: usize = 20;
const WORKERS: usize = 4;
const REPO: &str = "crash/app";
const MOVE_PATH: &str = "/apis/image.openshift.io/v1/namespaces/crash/imagestreamtags/app:moving";
const STREAM_PATH: &str = "/apis/image.openshift.io/v1/namespaces/crash/imagestreams/app";

/// One attempt to move `moving`: logical start, logical acknowledgement (if any), target.
#[derive(Clone, Debug)]
struct Move {
    start: u64,
    acked: Option<u64>,
    digest: String,
}

#[derive(Default)]
struct Acked {
    /// tag -> manifest digest
    tags: BTreeMap<String, String>,
    blobs: Vec<String>,
    moves: Vec<Move>,
}

struct Shared {
    acked: Mutex<Acked>,
    clock: AtomicU64,
}

impl Shared {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }
}

/// xorshift64*: deterministic delays without a new dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Uploads a blob (POST + PUT); `Some(digest)` when the PUT was acknowledged with 201.
async fn push_blob(c: &Client, base: &str, data: &[u8]) -> Option<String> {
    let digest = sha256(data);
    let r = c
        .post(format!("{base}/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .ok()?;
    if r.status() != StatusCode::ACCEPTED {
        return None;
    }
    let loc = r.headers().get("location")?.to_str().ok()?.to_string();
    let url = if loc.starts_with("http") {
        loc
    } else {
        format!("{base}{loc}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{url}{sep}digest={digest}"))
        .body(data.to_vec())
        .send()
        .await
        .ok()?;
    (r.status() == StatusCode::CREATED).then_some(digest)
}

/// Pushes and moves until the server goes away.
async fn worker(c: Client, base: String, shared: Arc<Shared>, round: usize, id: usize) {
    for n in 0.. {
        let seed = format!("r{round}-w{id}-{n}");
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        let layer = format!("layer of {seed}");
        let Some(cd) = push_blob(&c, &base, config.as_bytes()).await else {
            return;
        };
        shared.acked.lock().unwrap().blobs.push(cd.clone());
        let Some(ld) = push_blob(&c, &base, layer.as_bytes()).await else {
            return;
        };
        shared.acked.lock().unwrap().blobs.push(ld.clone());
        let manifest = image_manifest(&cd, config.len(), &[(&ld, layer.len())], "");
        let digest = sha256(&manifest);
        let tag = format!("r{round}-{id}-{n}");
        let Ok(r) = c
            .put(format!("{base}/v2/{REPO}/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest)
            .send()
            .await
        else {
            return;
        };
        if r.status() != StatusCode::CREATED {
            return;
        }
        shared
            .acked
            .lock()
            .unwrap()
            .tags
            .insert(tag, digest.clone());

        // Every other image is also moved to `moving`.
        if n % 2 == 0 {
            let index = {
                let mut acked = shared.acked.lock().unwrap();
                let start = shared.tick();
                acked.moves.push(Move {
                    start,
                    acked: None,
                    digest: digest.clone(),
                });
                acked.moves.len() - 1
            };
            let body = json!({"metadata": {"name": "app:moving"}, "tag": {"name": "moving",
                "from": {"kind": "ImageStreamImage", "name": format!("app@{digest}")}}});
            let Ok(r) = c.put(format!("{base}{MOVE_PATH}")).json(&body).send().await else {
                return;
            };
            if !(r.status() == StatusCode::OK || r.status() == StatusCode::CREATED) {
                return;
            }
            let mut acked = shared.acked.lock().unwrap();
            acked.moves[index].acked = Some(shared.tick());
        }
    }
}

/// Everything acknowledged so far is readable from the server at `base`.
async fn verify(c: &Client, base: &str, shared: &Shared, round: usize) {
    let (tags, blobs, moves) = {
        let acked = shared.acked.lock().unwrap();
        (acked.tags.clone(), acked.blobs.clone(), acked.moves.clone())
    };
    let mut lost = Vec::new();

    let mut checks = tokio::task::JoinSet::new();
    let tags: Vec<(String, String)> = tags.into_iter().collect();
    for chunk in tags.chunks(tags.len().div_ceil(8).max(1)) {
        let (c, base, chunk) = (c.clone(), base.to_string(), chunk.to_vec());
        checks.spawn(async move {
            let mut lost = Vec::new();
            for (tag, digest) in chunk {
                let r = c
                    .get(format!("{base}/v2/{REPO}/manifests/{tag}"))
                    .header("accept", OCI_MANIFEST)
                    .send()
                    .await
                    .unwrap();
                let got = r
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if r.status() != StatusCode::OK || got.as_deref() != Some(digest.as_str()) {
                    lost.push(format!(
                        "tag {tag}: {} {got:?}, acknowledged as {digest}",
                        r.status()
                    ));
                }
            }
            lost
        });
    }
    for chunk in blobs.chunks(blobs.len().div_ceil(8).max(1)) {
        let (c, base, chunk) = (c.clone(), base.to_string(), chunk.to_vec());
        checks.spawn(async move {
            let mut lost = Vec::new();
            for digest in chunk {
                let r = c
                    .head(format!("{base}/v2/{REPO}/blobs/{digest}"))
                    .send()
                    .await
                    .unwrap();
                if r.status() != StatusCode::OK {
                    lost.push(format!("blob {digest}: {}", r.status()));
                }
            }
            lost
        });
    }
    while let Some(found) = checks.join_next().await {
        lost.extend(found.unwrap());
    }

    // `moving`: the last acknowledged move, or any move not finished before it started.
    let r = c
        .get(format!("{base}/v2/{REPO}/manifests/moving"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let got = r
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let last = moves
        .iter()
        .filter(|m| m.acked.is_some())
        .max_by_key(|m| m.acked);
    let allowed: Vec<&str> = match last {
        Some(last) => moves
            .iter()
            .filter(|m| m.acked.is_none_or(|a| a > last.start))
            .map(|m| m.digest.as_str())
            .collect(),
        None => moves.iter().map(|m| m.digest.as_str()).collect(),
    };
    match (r.status(), got) {
        (StatusCode::OK, Some(d)) if allowed.contains(&d.as_str()) => {}
        (StatusCode::NOT_FOUND, _) if last.is_none() => {}
        (status, got) => lost.push(format!(
            "moving: {status} {got:?}, expected one of {allowed:?} (last acknowledged {:?})",
            last.map(|m| &m.digest)
        )),
    }

    if !tags.is_empty() {
        let r = c.get(format!("{base}{STREAM_PATH}")).send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if status == StatusCode::OK && v["kind"] == "ImageStream" => {}
            _ => lost.push(format!("image stream: {status} {text}")),
        }
    }

    assert!(
        lost.is_empty(),
        "after the kill ending round {}: {} acknowledged writes lost or wrong:\n{}",
        round,
        lost.len(),
        lost.join("\n")
    );
}

fn tree_size(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            tree_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill_loops() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let shared = Arc::new(Shared {
        acked: Mutex::new(Acked::default()),
        clock: AtomicU64::new(0),
    });
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    for round in 0..=ROUNDS {
        let mut serve = Serve::start(&data);
        if round > 0 {
            verify(&client, &serve.base, &shared, round - 1).await;
        }
        if round == ROUNDS {
            break;
        }
        let mut workers = Vec::new();
        for id in 0..WORKERS {
            workers.push(tokio::spawn(worker(
                client.clone(),
                serve.base.clone(),
                shared.clone(),
                round,
                id,
            )));
        }
        let delay = 50 + rng.next() % 351;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        serve.kill();
        for w in workers {
            w.await.unwrap();
        }
    }

    let acked = shared.acked.lock().unwrap();
    let metadata = tree_size(&data.join("metadata"));
    eprintln!(
        "crash loop: {} rounds, {} tags, {} blobs, {} moves ({} acknowledged), metadata {} KiB, {:?}",
        ROUNDS,
        acked.tags.len(),
        acked.blobs.len(),
        acked.moves.len(),
        acked.moves.iter().filter(|m| m.acked.is_some()).count(),
        metadata / 1024,
        started.elapsed()
    );
    assert!(!acked.tags.is_empty(), "no push was ever acknowledged");
    assert!(
        metadata < 64 << 20,
        "metadata is {metadata} bytes after {ROUNDS} crash rounds"
    );
}
