//! Metadata on etcd (issue 18): berth servers and `berth serve` processes sharing one real etcd
//! cluster (Debian's etcd-server), with blobs on the filesystem or on a real Garage cluster.

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::auth::{
    as_admin, bind as auth_bind, create_user, push_as_admin, ADMIN_PASSWORD, PASSWORD,
};
use crate::common::*;
use crate::garage::Garage;
use berth_storage::etcd::{EtcdConfig, EtcdMetadata};
use berth_storage::etcd_cluster::EtcdCluster;
use berth_storage::MetadataStore;

/// A server with its metadata on `etcd` under `prefix` (blobs on its own filesystem).
async fn on_etcd(etcd: &EtcdCluster, prefix: &str) -> TestServer {
    let url = etcd.url(prefix);
    TestServer::start_with(move |c| c.metadata_store = url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_and_restart_with_metadata_on_etcd() {
    let etcd = EtcdCluster::start(1, false);
    let s = on_etcd(&etcd, "one").await;
    let (digest, body) = s.push_image("team/app", "v1", "etcd-one").await;
    let r = s.get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    let tags: serde_json::Value = s.get("/v2/team/app/tags/list").await.json().await.unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    // Everything is in etcd, not in the data directory: a restart finds it.
    let s = s.restart().await;
    let r = s.head(&format!("/v2/team/app/manifests/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.get("/v2/_catalog").await;
    let catalog: serde_json::Value = r.json().await.unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!(["team/app"]));
}

/// etcd unreachable: requests fail with 503 + Retry-After (no hang, no 500), and work again
/// once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_is_a_503_and_service_resumes() {
    let mut etcd = EtcdCluster::start(1, true);
    let url = etcd.url("down");
    let s = TestServer::start_with(move |c| {
        c.metadata_store = url;
        c.etcd_timeout_secs = 1;
    })
    .await;
    s.push_image("team/app", "v1", "before").await;
    assert_eq!(s.get("/readyz").await.status(), StatusCode::OK);
    etcd.kill(0);
    let r = s.get("/readyz").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&r, "retry-after"), Some("5"));
    let r = s.get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&r, "retry-after"), Some("5"));
    let r = s
        .get("/apis/image.openshift.io/v1/namespaces/team/imagestreams")
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    etcd.restart(0);
    etcd.wait_healthy(std::time::Duration::from_secs(30));
    // The client reconnects only when next used; on a loaded machine that can take seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = s.get("/v2/team/app/manifests/v1").await;
        let status = r.status();
        if status == StatusCode::OK {
            break;
        }
        let body = r.text().await.unwrap_or_default();
        assert!(
            status == StatusCode::SERVICE_UNAVAILABLE && std::time::Instant::now() < deadline,
            "after etcd came back: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(s.get("/readyz").await.status(), StatusCode::OK);
}

/// Two `berth serve` processes sharing a 3-member etcd and a 3-node Garage: what is pushed
/// through one is pulled through the other at once, and an upload started on one is finished
/// on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_etcd_and_garage() {
    let etcd = EtcdCluster::start(3, true);
    let garage = Garage::start(3);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let replica = |n: usize| replica_on(&etcd, &garage, "replicas", n, dirs[n].path());
    let (pa, pb) = (replica(0), replica(1));
    let (a, b) = (
        TestServer::client_for(&pa.base),
        TestServer::client_for(&pb.base),
    );

    let (digest, body) = a.push_image("shared/app", "v1", "through-a").await;
    let r = b.get("/v2/shared/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK, "{}", pb.log.lock().unwrap());
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let d = layer["digest"].as_str().unwrap();
        let r = b.get(&format!("/v2/shared/app/blobs/{d}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(sha256(&r.bytes().await.unwrap()), d);
    }
    // The image stream B serves has A's push.
    let is = stream(&b, "shared", "app").await;
    assert_eq!(history(&is, "v1").len(), 1, "{is}");
    assert!(is.to_string().contains(&digest));

    // An upload started on A (POST + PATCH), continued and finished on B.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = a
        .req(Method::POST, "/v2/shared/up/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = location(&r);
    let r = a
        .req(Method::PATCH, &loc)
        .header("content-type", "application/octet-stream")
        .header("content-range", "0-99999")
        .body(data[..100_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The same session through the other replica.
    let loc = path_of(&location(&r));
    let r = b.get(&loc).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), Some("0-99999"));
    let r = b
        .req(Method::PATCH, &loc)
        .header("content-type", "application/octet-stream")
        .header("content-range", "100000-299999")
        .body(data[100_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = path_of(&location(&r));
    let d = sha256(&data);
    let r = b
        .req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        pb.log.lock().unwrap()
    );
    let r = a.get(&format!("/v2/shared/up/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
}

/// A `berth serve` replica with its metadata under `prefix` in `etcd` and its blobs under
/// `prefix` in Garage's bucket, talking to Garage node `n`.
fn replica_on(
    etcd: &EtcdCluster,
    garage: &Garage,
    prefix: &str,
    n: usize,
    dir: &std::path::Path,
) -> Serve {
    let (url, endpoint) = (etcd.url(prefix), garage.endpoint(n));
    let blob_store = format!("s3://{}/{prefix}", garage.bucket);
    let env = [
        ("BERTH_METADATA_STORE", url.as_str()),
        ("BERTH_BLOB_STORE", blob_store.as_str()),
        ("BERTH_S3_ENDPOINT", endpoint.as_str()),
        ("BERTH_S3_REGION", "garage"),
        ("AWS_ACCESS_KEY_ID", garage.key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", garage.secret.as_str()),
    ];
    Serve::start_with_env(dir, &env)
}

/// Every blob of the manifest `digest` in `repo` is served by `s` and hashes to its digest.
async fn assert_blobs_intact(s: &TestServer, repo: &str, digest: &str) {
    let r = s.get(&format!("/v2/{repo}/manifests/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK, "{repo}@{digest}");
    let manifest: serde_json::Value = r.json().await.unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    blobs.extend(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string()),
    );
    for d in blobs {
        let r = s.get(&format!("/v2/{repo}/blobs/{d}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{repo}: {d}");
        assert_eq!(sha256(&r.bytes().await.unwrap()), d);
    }
}

/// The path and query of a URL or path (drops the replica it names).
fn path_of(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => rest[rest.find('/').unwrap_or(rest.len())..].to_string(),
        None => location.to_string(),
    }
}

const API: &str = "/apis/image.openshift.io/v1";

/// Reads watch events (one JSON object per line) until `count` arrived or 30 s passed.
async fn watch_events(watch: &mut reqwest::Response, count: usize) -> Vec<serde_json::Value> {
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, watch.chunk())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} events: {events:?}", events.len()))
            .unwrap()
            .expect("watch stream open");
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            events.push(serde_json::from_slice(&line).unwrap());
        }
    }
    events
}

/// A watch on replica B sees the pushes made through replica A (and through B itself), every
/// one, in resourceVersion order, with no gap between consecutive pushes to one stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_one_replica_sees_pushes_through_the_other_in_order() {
    let etcd = EtcdCluster::start(1, false);
    let a = on_etcd(&etcd, "watch").await;
    let b = on_etcd(&etcd, "watch").await;
    a.push_image("team/app", "v0", "first").await;
    let list: serde_json::Value = b
        .get(&format!("{API}/namespaces/team/imagestreams"))
        .await
        .json()
        .await
        .unwrap();
    let rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut watch = b
        .get(&format!(
            "{API}/namespaces/team/imagestreams?watch=true&resourceVersion={rv}"
        ))
        .await;
    assert_eq!(watch.status(), StatusCode::OK);
    for i in 1..=6 {
        let through = if i % 3 == 0 { &b } else { &a };
        through
            .push_image("team/app", &format!("v{i}"), &format!("push-{i}"))
            .await;
    }
    let events = watch_events(&mut watch, 6).await;
    let mut last = rv;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["type"], "MODIFIED", "{e}");
        let erv: u64 = e["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(erv > last, "event {i} at {erv} after {last}");
        last = erv;
        let tags: Vec<&str> = e["object"]["status"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tag"].as_str().unwrap())
            .collect();
        assert!(tags.contains(&format!("v{}", i + 1).as_str()), "{tags:?}");
    }
}

/// The stream `ns/name` through `s` once `check` holds (at most 60 s).
async fn stream_when(
    s: &TestServer,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = s
            .get(&format!("{API}/namespaces/{ns}/imagestreams/{name}"))
            .await;
        let is: serde_json::Value = if r.status() == StatusCode::OK {
            r.json().await.unwrap()
        } else {
            serde_json::Value::Null
        };
        if !is.is_null() && check(&is) {
            return is;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {is:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn leading(p: &Serve) -> bool {
    p.log
        .lock()
        .unwrap()
        .contains("leading: this replica runs the controllers")
}

/// Two replicas: only one runs the controllers; when it is killed (-9), the other takes the
/// lease and a scheduled import still happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_move_to_another_replica_when_their_holder_dies() {
    let etcd = EtcdCluster::start(1, false);
    let src = TestServer::start().await;
    let (first, _) = src.push_image("lib/web", "latest", "one").await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let url = etcd.url("controllers");
    let env = [
        ("BERTH_METADATA_STORE", url.as_str()),
        ("BERTH_ETCD_TIMEOUT_SECS", "1"),
        ("BERTH_LEADER_LEASE_SECS", "3"),
        ("BERTH_SCHEDULED_IMPORT_INTERVAL_SECS", "1"),
        ("BERTH_ALLOW_INSECURE_IMPORT_FROM", "127.0.0.1:*"),
    ];
    let mut replicas = [
        Serve::start_with_env(dirs[0].path(), &env),
        Serve::start_with_env(dirs[1].path(), &env),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let holder = loop {
        if let Some(n) = (0..2).find(|&n| leading(&replicas[n])) {
            break n;
        }
        assert!(std::time::Instant::now() < deadline, "no replica leads");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let survivor = 1 - holder;
    let s = TestServer::client_for(&replicas[survivor].base);
    let from = format!("{}/lib/web:latest", src.base.trim_start_matches("http://"));
    let body = serde_json::json!({
        "kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": "web:latest"},
        "tag": {"name": "latest", "from": {"kind": "DockerImage", "name": from},
                "importPolicy": {"insecure": true, "scheduled": true}},
    });
    let r = s
        .req(
            Method::PUT,
            &format!("{API}/namespaces/team/imagestreamtags/web:latest"),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // Created through the survivor, imported by the holder (it learns of the tag from the
    // change log).
    stream_when(&s, "team", "web", "the first import", |is| {
        history(is, "latest") == [first.clone()]
    })
    .await;
    assert!(!leading(&replicas[survivor]), "both replicas lead");

    replicas[holder].kill();
    let (second, _) = src.push_image("lib/web", "latest", "two").await;
    stream_when(
        &s,
        "team",
        "web",
        "the scheduled re-import after the holder died",
        |is| history(is, "latest") == [second.clone(), first.clone()],
    )
    .await;
    assert!(leading(&replicas[survivor]));
}

/// Sends a request until it gets an answer other than 5xx (a replica whose etcd is electing a
/// leader answers 503), as a client retrying would; at most about 60 s.
/// How a test client retries: `PATIENT` waits out an election or a restart (about a minute),
/// `ONCE` gives up at the first failure (to fall back to another replica).
#[derive(Clone, Copy)]
struct Retries(usize);
const PATIENT: Retries = Retries(300);
const ONCE: Retries = Retries(1);

async fn until_answered(
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, String> {
    answered_within(PATIENT, make).await
}

async fn answered_within(
    retries: Retries,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, String> {
    let mut last = String::new();
    for attempt in 0..retries.0 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        match make().send().await {
            Ok(r) if !r.status().is_server_error() => return Ok(r),
            Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// One blob pushed as a client does: a session that a failed write ended (503, then
/// BLOB_UPLOAD_UNKNOWN) is started over, at most 20 times.
async fn push_blob_retrying(
    s: &TestServer,
    repo: &str,
    blob: &[u8],
    retries: Retries,
) -> Result<(), String> {
    let d = sha256(blob);
    let mut why = String::new();
    for _ in 0..retries.0.min(20) {
        let r = answered_within(retries, || {
            s.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        })
        .await?;
        if r.status() != StatusCode::ACCEPTED {
            return Err(format!("POST upload: {}", r.status()));
        }
        let loc = location(&r);
        let r = answered_within(retries, || {
            s.req(Method::PUT, &with_query(&loc, &format!("digest={d}")))
                .body(blob.to_vec())
        })
        .await?;
        if r.status() == StatusCode::CREATED {
            return Ok(());
        }
        why = format!("{}: {}", r.status(), r.text().await.unwrap_or_default());
        // A retried PUT whose first try committed finds its session gone, the blob stored.
        let head = answered_within(retries, || {
            s.req(Method::HEAD, &format!("/v2/{repo}/blobs/{d}"))
        })
        .await?;
        if head.status() == StatusCode::OK {
            return Ok(());
        }
    }
    Err(format!("blob {d}: {why}"))
}

/// One image pushed with client retries; the manifest digest once acknowledged (201).
async fn push_retrying(
    s: &TestServer,
    repo: &str,
    tag: &str,
    seed: &str,
) -> Result<String, String> {
    push_within(s, repo, tag, seed, PATIENT).await
}

async fn push_within(
    s: &TestServer,
    repo: &str,
    tag: &str,
    seed: &str,
    retries: Retries,
) -> Result<String, String> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    // Big enough that some pushes are mid-blob when a test kills their replica.
    let layer = format!("layer of {seed}").repeat(16 * 1024);
    for blob in [config.as_bytes(), layer.as_bytes()] {
        push_blob_retrying(s, repo, blob, retries).await?;
    }
    let manifest = image_manifest(
        &sha256(config.as_bytes()),
        config.len(),
        &[(&sha256(layer.as_bytes()), layer.len())],
        "",
    );
    let r = answered_within(retries, || {
        s.req(Method::PUT, &format!("/v2/{repo}/manifests/{tag}"))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone())
    })
    .await?;
    if r.status() != StatusCode::CREATED {
        return Err(format!("PUT manifest: {}", r.status()));
    }
    Ok(sha256(&manifest))
}

/// The etcd leader killed (-9) during 100 concurrent pushes spread over two replicas: every
/// acknowledged push is intact afterwards through both (manifest by tag, blobs hashing right,
/// the tag's history exactly that image).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_leader_dying_during_concurrent_pushes_loses_nothing_acknowledged() {
    let mut etcd = EtcdCluster::start(3, true);
    let replicas =
        std::sync::Arc::new([on_etcd(&etcd, "fault").await, on_etcd(&etcd, "fault").await]);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let pushes: Vec<_> = (0..100usize)
        .map(|i| {
            let (replicas, slots) = (replicas.clone(), slots.clone());
            tokio::spawn(async move {
                let _slot = slots.acquire().await.unwrap();
                let repo = format!("team/app{}", i % 5);
                let tag = format!("t{i}");
                let r = push_retrying(&replicas[i % 2], &repo, &tag, &format!("fault-{i}")).await;
                (i, repo, tag, r)
            })
        })
        .collect();
    // Let some pushes through, then kill the leader while the rest run.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let leader = etcd.leader().expect("a leader");
    etcd.kill(leader);
    let mut acknowledged = Vec::new();
    for p in pushes {
        let (i, repo, tag, r) = p.await.unwrap();
        match r {
            Ok(digest) => acknowledged.push((i, repo, tag, digest)),
            Err(e) => eprintln!("push {i} not acknowledged: {e}"),
        }
    }
    etcd.wait_healthy(std::time::Duration::from_secs(30));
    // With client retries every push gets through once a new leader is elected.
    assert_eq!(acknowledged.len(), 100, "pushes not acknowledged");
    for (i, repo, tag, digest) in &acknowledged {
        for s in replicas.iter() {
            let r = until_answered(|| s.req(Method::HEAD, &format!("/v2/{repo}/manifests/{tag}")))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{repo}:{tag}");
            assert_eq!(header(&r, "docker-content-digest"), Some(digest.as_str()));
        }
        // Blobs live on the pushing replica's filesystem.
        assert_blobs_intact(&replicas[i % 2], repo, digest).await;
        let (ns, name) = repo.split_once('/').unwrap();
        let is = stream(&replicas[1 - i % 2], ns, name).await;
        assert_eq!(
            history(&is, tag),
            std::slice::from_ref(digest),
            "{repo}:{tag}"
        );
    }
}

/// Webhook events of pushes through either replica are delivered once each (by the replica
/// running the controllers), in order, woken by the change log rather than a timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_of_both_replicas_are_delivered_once_in_order() {
    use crate::webhooks::{verify, webhook, Receiver, SECRET};
    let etcd = EtcdCluster::start(1, false);
    let url = etcd.url("hooks");
    let tweak = move |c: &mut berth::config::Config| {
        c.metadata_store = url.clone();
        c.webhook_allow_private = true;
        c.webhook_backoff_base_ms = 20;
        c.webhook_backoff_cap_secs = 1;
    };
    let a = TestServer::start_with(tweak.clone()).await;
    let b = TestServer::start_with(tweak).await;
    let rx = Receiver::start(200).await;
    let hook = webhook(
        "ci",
        &rx.url(),
        serde_json::json!({"events": ["imagestreamtag.updated"], "tags": ["app:latest"]}),
    );
    let r = b
        .req(Method::POST, "/apis/berth.io/v1/namespaces/ns/webhooks")
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let mut pushed = Vec::new();
    for i in 0..10 {
        let through = if i % 2 == 0 { &a } else { &b };
        let (digest, _) = through
            .push_image("ns/app", "latest", &format!("hook-{i}"))
            .await;
        pushed.push(digest);
    }
    // Well under the worker's 30 s idle recheck: the change log wakes it.
    let got = rx.wait_for(10, std::time::Duration::from_secs(20)).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(rx.deliveries().len(), 10, "exactly one delivery per change");
    for (d, want) in got.iter().zip(&pushed) {
        assert!(verify(d, SECRET));
        assert_eq!(&d.json()["data"]["image"], want.as_str());
    }
}

/// A replica killed (-9) in the middle of 24 concurrent pushes: each push that fails through it
/// is retried from the start through the other replica and completes; every acknowledged push,
/// through either, is intact through the survivor (blobs on a shared Garage cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_dying_mid_push_loses_nothing_and_the_retry_through_the_other_completes() {
    let etcd = EtcdCluster::start(1, false);
    let garage = Garage::start(3);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let replica = |n: usize| replica_on(&etcd, &garage, "dying", n, dirs[n].path());
    let (mut pa, pb) = (replica(0), replica(1));
    let a = std::sync::Arc::new(TestServer::client_for(&pa.base));
    let b = std::sync::Arc::new(TestServer::client_for(&pb.base));
    let pushes: Vec<_> = (0..24usize)
        .map(|i| {
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                let (repo, tag, seed) = ("team/dying", format!("t{i}"), format!("dying-{i}"));
                match push_within(&a, repo, &tag, &seed, ONCE).await {
                    Ok(digest) => (tag, digest, "a"),
                    Err(_) => {
                        let digest = push_retrying(&b, repo, &tag, &seed)
                            .await
                            .unwrap_or_else(|e| panic!("{tag} through the survivor: {e}"));
                        (tag, digest, "b")
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    pa.kill();
    let mut through_b = 0;
    for p in pushes {
        let (tag, digest, via) = p.await.unwrap();
        through_b += usize::from(via == "b");
        let r = b.get(&format!("/v2/team/dying/manifests/{tag}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{tag} via {via}");
        assert_eq!(header(&r, "docker-content-digest"), Some(digest.as_str()));
        assert_blobs_intact(&b, "team/dying", &digest).await;
        let is = stream(&b, "team", "dying").await;
        assert_eq!(history(&is, &tag), [digest], "{tag} via {via}");
    }
    // The kill landed while pushes were running, so the retry path was taken.
    assert!(
        through_b > 0,
        "no push needed the other replica: {}",
        pb.log.lock().unwrap()
    );
}

/// Two servers with authentication on (the first admin made by whichever starts first) and
/// their metadata on `etcd` under `prefix`: replicas, each with its own in-memory state
/// (signing keys, verified passwords, login budgets).
async fn auth_replicas(etcd: &EtcdCluster, prefix: &str) -> (TestServer, TestServer) {
    let start = || {
        let url = etcd.url(prefix);
        TestServer::start_with(move |c| {
            c.metadata_store = url;
            c.admin_password = Some(ADMIN_PASSWORD.into());
        })
    };
    let a = start().await;
    (a, start().await)
}

fn bearer(req: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
    req.header("authorization", format!("Bearer {token}"))
}

/// A registry token `s` issues to `user` for pulling `repo`, and the id of the key that signed it.
async fn registry_token(
    s: &TestServer,
    user: &str,
    password: &str,
    repo: &str,
) -> (String, String) {
    let token = issued_token(s, user, password, &format!("repository:{repo}:pull")).await;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    (token, header["kid"].as_str().unwrap().to_string())
}

/// Sends `make()` until it is answered `want`, for at most `secs` seconds; the last status.
async fn status_within(
    want: StatusCode,
    secs: u64,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> StatusCode {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let status = make().send().await.unwrap().status();
        if status == want || tokio::time::Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// What authenticates a request is read from etcd on every request (the verified-password
/// cache is keyed by the stored hash), so a revocation through one replica holds on the other
/// at once: an access token revoked, a user deleted (its password, its access tokens and the
/// registry tokens issued to it), a password changed by creating the user again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_revoked_through_one_replica_are_refused_by_the_other_at_once() {
    let etcd = EtcdCluster::start(1, false);
    let (a, b) = auth_replicas(&etcd, "revoke").await;
    create_user(&a, "alice", &[]).await;
    auth_bind(&a, "team", "alice", "edit").await;
    push_as_admin(&a, "team/app", "v1", "revoke").await;
    let manifest = "/v2/team/app/manifests/v1";
    let basic = |s: &TestServer, password: &str| {
        s.req(Method::GET, manifest)
            .basic_auth("alice", Some(password))
    };

    // An access token made through A, used through B.
    let r = as_admin(
        &a,
        Method::POST,
        "/auth/v1/tokens",
        json!({"user": "alice", "description": "revoked"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: serde_json::Value = r.json().await.unwrap();
    let (token, id) = (t["token"].as_str().unwrap(), t["id"].as_str().unwrap());
    let with_token = || bearer(b.req(Method::GET, manifest), token);
    assert_eq!(with_token().send().await.unwrap().status(), StatusCode::OK);
    let r = as_admin(
        &a,
        Method::DELETE,
        &format!("/auth/v1/tokens/{id}"),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        with_token().send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // B verified alice's password (and remembers it); then A deletes her.
    assert_eq!(
        basic(&b, PASSWORD).send().await.unwrap().status(),
        StatusCode::OK
    );
    let (jwt, _) = registry_token(&b, "alice", PASSWORD, "team/app").await;
    assert_eq!(
        bearer(a.req(Method::GET, manifest), &jwt)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "B's registry token verifies on A"
    );
    let r = as_admin(&a, Method::DELETE, "/auth/v1/users/alice", json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        basic(&b, PASSWORD).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        bearer(b.req(Method::GET, manifest), &jwt)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED,
        "a registry token of a deleted user"
    );

    // alice again, with another password (berth changes a password this way).
    let r = as_admin(
        &a,
        Method::POST,
        "/auth/v1/users",
        json!({"name": "alice", "password": "another-password-2"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    auth_bind(&a, "team", "alice", "edit").await;
    assert_eq!(
        basic(&b, PASSWORD).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        basic(&b, "another-password-2")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// Signing keys rotated through A: a token signed with the new key verifies on B at once, B
/// signs with it soon after, a token of the previous key still verifies on both, and once a
/// second rotation retires a key, B refuses its tokens within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_rotated_through_one_replica_are_used_by_the_other() {
    let etcd = EtcdCluster::start(1, false);
    let (a, b) = auth_replicas(&etcd, "keys").await;
    push_as_admin(&a, "team/app", "v1", "keys").await;
    let manifest = "/v2/team/app/manifests/v1";
    let pull = |s: &TestServer, token: &str| bearer(s.req(Method::GET, manifest), token);
    let (first, first_kid) = registry_token(&b, "admin", ADMIN_PASSWORD, "team/app").await;
    assert_eq!(
        registry_token(&a, "admin", ADMIN_PASSWORD, "team/app")
            .await
            .1,
        first_kid
    );

    let rotate = || async {
        let r = as_admin(&a, Method::POST, "/auth/v1/signingkeys/rotate", json!({})).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: serde_json::Value = r.json().await.unwrap();
        body["keyId"].as_str().unwrap().to_string()
    };
    let second_kid = rotate().await;
    let (second, kid) = registry_token(&a, "admin", ADMIN_PASSWORD, "team/app").await;
    assert_eq!(kid, second_kid);
    assert_eq!(
        pull(&b, &second).send().await.unwrap().status(),
        StatusCode::OK
    );
    // B signs with the new key once it has heard of the rotation.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while registry_token(&b, "admin", ADMIN_PASSWORD, "team/app")
        .await
        .1
        != second_kid
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B still signs with the old key 10 s after the rotation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for s in [&a, &b] {
        assert_eq!(
            pull(s, &first).send().await.unwrap().status(),
            StatusCode::OK,
            "the previous key still verifies"
        );
    }

    // Another rotation retires the first key, everywhere.
    rotate().await;
    assert_eq!(
        pull(&a, &first).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_within(StatusCode::UNAUTHORIZED, 10, || pull(&b, &first)).await,
        StatusCode::UNAUTHORIZED,
        "B still takes a retired key's token 10 s after the rotation"
    );
    for s in [&a, &b] {
        assert_eq!(
            pull(s, &second).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
}

/// Two rotations at once, through both replicas: both succeed, one after the other, and the
/// key set is then the last key and the one before it (no key kept by mistake).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_at_once_through_two_replicas_keep_two_keys() {
    let etcd = EtcdCluster::start(1, false);
    let (a, b) = auth_replicas(&etcd, "rotations").await;
    push_as_admin(&a, "team/app", "v1", "rotations").await;
    let (first, _) = registry_token(&a, "admin", ADMIN_PASSWORD, "team/app").await;
    let rotate = "/auth/v1/signingkeys/rotate";
    let (ra, rb) = tokio::join!(
        as_admin(&a, Method::POST, rotate, json!({})),
        as_admin(&b, Method::POST, rotate, json!({}))
    );
    assert_eq!((ra.status(), rb.status()), (StatusCode::OK, StatusCode::OK));
    // Two rotations retired the first key: a rotation that missed the other one would have
    // kept it.
    for s in [&a, &b] {
        assert_eq!(
            status_within(StatusCode::UNAUTHORIZED, 10, || {
                bearer(s.req(Method::GET, "/v2/team/app/manifests/v1"), &first)
            })
            .await,
            StatusCode::UNAUTHORIZED
        );
    }
    let keys: Vec<String> = etcd_keys(&etcd, "rotations", "signingkey\0");
    assert_eq!(keys.len(), 2, "{keys:?}");
}

/// The keys under `under` in the berth store at `prefix` of `etcd`, read directly.
fn etcd_keys(etcd: &EtcdCluster, prefix: &str, under: &str) -> Vec<String> {
    let store = EtcdMetadata::connect(&EtcdConfig::parse_url(&etcd.url(prefix)).unwrap()).unwrap();
    store
        .scan(under.as_bytes(), None, 100)
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect()
}
