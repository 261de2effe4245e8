//! Image streams stored as many small records: big streams read back exactly, concurrent pushes
//! to one stream all land, watches see every change in order, and data directories written by
//! the release that stored a stream whole are converted at start-up (also after a crash
//! part-way through the conversion).

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{history, image_manifest, stream, TestServer, OCI_MANIFEST};

const API: &str = "/apis/image.openshift.io/v1";

/// `tests/integration/fixtures/format1-data.tar.gz`: a data directory written by the release
/// that kept each stream in one record (made by `fixtures/make-format1-data.sh`), with the
/// API's answers for its streams then.
pub(crate) fn unpack_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let archive = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/integration/fixtures/format1-data.tar.gz"
    );
    let status = std::process::Command::new("tar")
        .args(["xzf", archive, "-C"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

async fn start_on_fixture(dir: tempfile::TempDir) -> TestServer {
    let data = dir.path().join("data");
    TestServer::start_in(dir, |c| {
        c.data_dir = data;
        // The old release had one host; without a public host the new one adds no
        // publicDockerImageRepository, so the answers stay byte for byte the same.
        c.internal_host = Some("registry.example:5000".into());
    })
    .await
}

/// Every stream reads back byte for byte as the old release served it.
async fn assert_fixture_streams(s: &TestServer) {
    for name in ["app", "tools", "many"] {
        let expected = std::fs::read_to_string(s.data_dir().join(format!("{name}.json"))).unwrap();
        let r = s
            .get(&format!("{API}/namespaces/team/imagestreams/{name}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), expected, "stream {name}");
    }
    let expected = std::fs::read_to_string(s.data_dir().join("app-tags.json")).unwrap();
    assert_eq!(
        s.get("/v2/team/app/tags/list").await.text().await.unwrap(),
        expected
    );
}

/// Pushes `team/app:v1` anew: the tag's history grows and `stable`, which tracks it, follows.
async fn push_after_conversion(s: &TestServer) {
    let before = stream(s, "team", "app").await;
    let (digest, _) = s.push_image("team/app", "v1", "after conversion").await;
    let after = stream(s, "team", "app").await;
    let (v1, stable) = (history(&after, "v1"), history(&after, "stable"));
    assert_eq!(v1[0], digest);
    assert_eq!(&v1[1..], &history(&before, "v1")[..]);
    assert_eq!(stable[0], digest, "the tracking tag follows");
    let r = s.get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_format1_data_directory_is_converted_at_start() {
    let s = start_on_fixture(unpack_fixture()).await;
    assert_fixture_streams(&s).await;
    // Pulls by tag and the rolled-back tag resolve as before.
    for tag in ["latest", "stable", "rolledback", "candidate"] {
        let r = s.get(&format!("/v2/team/app/manifests/{tag}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{tag}");
    }
    push_after_conversion(&s).await;
    // A restart finds nothing left to convert and the same streams.
    let s = s.restart().await;
    let is = stream(&s, "team", "app").await;
    assert_eq!(history(&is, "v1").len(), 3);
}

#[tokio::test]
async fn a_crash_during_conversion_is_finished_by_the_next_start() {
    let dir = unpack_fixture();
    {
        // What a kill -9 after the first stream leaves: each stream converts in one
        // transaction, so the store holds converted and unconverted streams side by side.
        let meta = berth_storage::sled_store::SledMetadata::open(&dir.path().join("data/metadata"))
            .unwrap();
        assert_eq!(
            berth::imagestream::store::migrate_at_most(&meta, 1).unwrap(),
            1
        );
        use berth_storage::MetadataStore;
        meta.flush().unwrap();
    }
    let s = start_on_fixture(dir).await;
    assert_fixture_streams(&s).await;
    push_after_conversion(&s).await;
}

/// One config and layer for every image; each manifest differs by an annotation.
async fn shared_blobs(s: &TestServer, repo: &str) -> (String, usize, String, usize) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"the one layer";
    let c = s.push_blob(repo, config).await;
    let l = s.push_blob(repo, layer).await;
    (c, config.len(), l, layer.len())
}

fn manifest_for(blobs: &(String, usize, String, usize), n: &str) -> Vec<u8> {
    let m = image_manifest(&blobs.0, blobs.1, &[(&blobs.2, blobs.3)], "");
    let mut v: Value = serde_json::from_slice(&m).unwrap();
    v["annotations"] = serde_json::json!({ "n": n });
    serde_json::to_vec(&v).unwrap()
}

async fn push_tags(s: &TestServer, repo: &str, tags: Vec<String>, round: usize) -> Vec<String> {
    let blobs = shared_blobs(s, repo).await;
    let pushes = futures_util::stream::iter(tags.into_iter().map(|tag| {
        let body = manifest_for(&blobs, &format!("{tag}/{round}"));
        async move {
            let r = s.put_manifest(repo, &tag, OCI_MANIFEST, &body).await;
            assert_eq!(r.status(), StatusCode::CREATED, "{tag}");
            crate::common::sha256(&body)
        }
    }));
    pushes.buffered(8).collect().await
}

#[tokio::test]
async fn a_stream_of_five_thousand_tags_reads_back_exactly() {
    let s = TestServer::start().await;
    let tags: Vec<String> = (0..5000).map(|i| format!("t{i:05}")).collect();
    let digests = push_tags(&s, "big/app", tags.clone(), 0).await;
    let is = stream(&s, "big", "app").await;
    let status = is["status"]["tags"].as_array().unwrap();
    assert_eq!(status.len(), 5000);
    for ((t, tag), digest) in status.iter().zip(&tags).zip(&digests) {
        assert_eq!(t["tag"], tag.as_str());
        assert_eq!(t["items"].as_array().unwrap().len(), 1);
        assert_eq!(t["items"][0]["image"], digest.as_str(), "{tag}");
    }
    let r: Value = s.get("/v2/big/app/tags/list").await.json().await.unwrap();
    let listed: Vec<&str> = r["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(listed, tags.iter().map(String::as_str).collect::<Vec<_>>());
    let istag: Value = s
        .get(&format!("{API}/namespaces/big/imagestreamtags/app:t04999"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(istag["image"]["metadata"]["name"], digests[4999].as_str());
}

#[tokio::test]
async fn concurrent_pushes_to_64_tags_of_one_stream_all_land() {
    let s = TestServer::start().await;
    let tags: Vec<String> = (0..64).map(|i| format!("c{i}")).collect();
    let blobs = shared_blobs(&s, "busy/app").await;
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); 64];
    for round in 0..3 {
        let pushes = tags.iter().enumerate().map(|(i, tag)| {
            let body = manifest_for(&blobs, &format!("{tag}/{round}"));
            let s = &s;
            async move {
                let r = s.put_manifest("busy/app", tag, OCI_MANIFEST, &body).await;
                assert_eq!(r.status(), StatusCode::CREATED);
                (i, crate::common::sha256(&body))
            }
        });
        // All 64 at once, each round.
        for (i, digest) in futures_util::future::join_all(pushes).await {
            expected[i].insert(0, digest);
        }
    }
    let is = stream(&s, "busy", "app").await;
    for (tag, want) in tags.iter().zip(&expected) {
        assert_eq!(&history(&is, tag), want, "{tag}");
    }
}

/// Reads watch lines until `n` events have arrived.
async fn watch_events(r: reqwest::Response, n: usize) -> Vec<Value> {
    let mut body = r.bytes_stream();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    while events.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .expect("watch events arrive")
            .expect("the watch stays open")
            .unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            events.push(serde_json::from_slice::<Value>(&line).unwrap());
        }
    }
    events
}

fn rv(e: &Value) -> u64 {
    e["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_watch_sees_every_change_of_a_busy_stream_in_order() {
    let s = TestServer::start().await;
    push_tags(&s, "w/app", vec!["seed".into()], 0).await;
    let list: Value = s
        .get(&format!("{API}/namespaces/w/imagestreams"))
        .await
        .json()
        .await
        .unwrap();
    let start = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // Nobody watches while these land: their events are stubs, built when delivered.
    let quiet: Vec<String> = (0..5).map(|i| format!("q{i}")).collect();
    push_tags(&s, "w/app", quiet, 0).await;
    let r = s
        .get(&format!(
            "{API}/namespaces/w/imagestreams?watch=true&resourceVersion={start}"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let replayed = watch_events(r, 5).await;
    for e in &replayed {
        assert_eq!(e["type"], "MODIFIED");
        assert!(e["object"]["status"]["tags"].as_array().unwrap().len() >= 2);
    }
    let last = &replayed[4]["object"];
    assert_eq!(last["status"]["tags"].as_array().unwrap().len(), 6);

    // A live watch during 200 pushes from 8 clients at once: one event per push, in order.
    let from = rv(&replayed[4]);
    let r = s
        .get(&format!(
            "{API}/namespaces/w/imagestreams?watch=true&resourceVersion={from}"
        ))
        .await;
    let tags: Vec<String> = (0..200).map(|i| format!("b{i:03}")).collect();
    let (events, _) = tokio::join!(watch_events(r, 200), push_tags(&s, "w/app", tags, 1));
    let rvs: Vec<u64> = events.iter().map(rv).collect();
    assert!(rvs.windows(2).all(|w| w[0] <= w[1]), "{rvs:?}");
    assert!(rvs[0] > from);
    let final_tags = events[199]["object"]["status"]["tags"].as_array().unwrap();
    assert_eq!(final_tags.len(), 206);
    // Renderings are kept and updated by tag: each shows every tag the one before did, and
    // the last is exactly what a GET reads from the store.
    let tag_names = |e: &Value| -> std::collections::BTreeSet<String> {
        e["object"]["status"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tag"].as_str().unwrap().to_string())
            .collect()
    };
    for w in events.windows(2) {
        assert!(tag_names(&w[0]).is_subset(&tag_names(&w[1])));
    }
    let got: Value = s
        .get(&format!("{API}/namespaces/w/imagestreams/app"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, events[199]["object"]);
}
