//! Memory under ordinary load levels off: 60 s of mixed pulls and pushes at concurrency 16 over
//! a fixed set of images end with the server's RSS within 1.3x of what it was at 20 s
//! (issue 13). The server is the real binary in its own process, so other tests running
//! meanwhile do not count.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::{image_manifest, rss_of, Serve, TestServer, OCI_MANIFEST};

const CLIENTS: usize = 16;
const IMAGES: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_levels_off_under_mixed_load() {
    let dir = tempfile::tempdir().unwrap();
    let server = tokio::task::block_in_place(|| Serve::start(dir.path()));
    let pid = server.child.id();
    let s = std::sync::Arc::new(TestServer::client_for(&server.base));
    // A fixed working set: each client re-pushes and pulls these, so nothing new is stored
    // after the first round and any growth is memory the server keeps per request.
    let mut images = Vec::new();
    for i in 0..IMAGES {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","n":{i}}}"#);
        let layer = vec![i as u8; 64 * 1024];
        let cd = s.push_blob("load/app", config.as_bytes()).await;
        let ld = s.push_blob("load/app", &layer).await;
        let manifest = image_manifest(&cd, config.len(), &[(&ld, layer.len())], "");
        let r = s
            .put_manifest("load/app", &format!("t{i}"), OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        images.push((config, layer, ld, manifest));
    }
    let images = std::sync::Arc::new(images);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (s, images) = (s.clone(), images.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = c;
            while Instant::now() < deadline {
                let (config, layer, ld, manifest) = &images[n % IMAGES];
                let tag = format!("t{}", n % IMAGES);
                if n % 2 == 0 {
                    s.push_blob("load/app", config.as_bytes()).await;
                    s.push_blob("load/app", layer).await;
                    let r = s
                        .put_manifest("load/app", &tag, OCI_MANIFEST, manifest)
                        .await;
                    assert_eq!(r.status(), StatusCode::CREATED);
                } else {
                    let r = s.get(&format!("/v2/load/app/manifests/{tag}")).await;
                    assert_eq!(r.status(), StatusCode::OK);
                    let r = s.get(&format!("/v2/load/app/blobs/{ld}")).await;
                    assert_eq!(r.bytes().await.unwrap().len(), layer.len());
                }
                n += CLIENTS;
            }
        }));
    }
    tokio::time::sleep_until((start + Duration::from_secs(20)).into()).await;
    let at_20s = rss_of(pid);
    let mut peak_after = at_20s;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak_after = peak_after.max(rss_of(pid));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let at_60s = rss_of(pid);
    assert!(
        (peak_after as f64) <= 1.3 * at_20s as f64,
        "RSS {} MiB at 20 s, peak {} MiB after (and {} MiB at 60 s)",
        at_20s >> 20,
        peak_after >> 20,
        at_60s >> 20
    );
}
