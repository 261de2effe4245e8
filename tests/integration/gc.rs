//! Reclaiming space (issue 14): pruning and online garbage collection against the real server,
//! including races with pushes, multi-arch indexes, crashes mid-sweep and access control.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

/// A server that collects at once (grace period 0) and often.
async fn eager() -> TestServer {
    TestServer::start_with(|c| {
        c.gc_delay_secs = 0;
        c.gc_interval_secs = 1;
    })
    .await
}

/// The digests of the blob files under a data directory.
pub fn blob_files(data: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let root = data.join("blobs/sha256");
    for shard in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.insert(format!("sha256:{}", f.file_name().to_string_lossy()));
        }
    }
    out
}

/// POSTs `body` to an admin endpoint, asserting 200; returns the answer.
async fn admin(s: &TestServer, path: &str, body: Value) -> Value {
    let r = s.req(Method::POST, path).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn prune(s: &TestServer, body: Value) -> Value {
    admin(s, "/admin/v1/prune/images", body).await
}

async fn gc(s: &TestServer, body: Value) -> Value {
    admin(s, "/admin/v1/gc", body).await
}

/// Runs passes until one deletes nothing (a deleted index releases its children to the next).
async fn gc_until_quiet(s: &TestServer) {
    for _ in 0..10 {
        let r = gc(s, json!({})).await;
        if r["blobsDeleted"].as_array().unwrap().is_empty()
            && r["manifestsDeleted"].as_array().unwrap().is_empty()
        {
            return;
        }
    }
    panic!("garbage collection did not settle");
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Pushes an image whose layers are `layers` (pushed first) plus a config made from `seed`.
async fn push_with_layers(
    s: &TestServer,
    repo: &str,
    reference: &str,
    seed: &str,
    layers: &[&[u8]],
) -> String {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    let cd = s.push_blob(repo, config.as_bytes()).await;
    let mut ls = Vec::new();
    for l in layers {
        ls.push((s.push_blob(repo, l).await, l.len()));
    }
    let refs: Vec<(&str, usize)> = ls.iter().map(|(d, n)| (d.as_str(), *n)).collect();
    let manifest = image_manifest(&cd, config.len(), &refs, "");
    let digest = sha256(&manifest);
    let reference = if reference.is_empty() {
        &digest
    } else {
        reference
    };
    let r = s
        .put_manifest(repo, reference, OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    sha256(&manifest)
}

/// Pulls a manifest and every blob it names, checking each hash; panics on any failure.
pub async fn pull_completely(s: &TestServer, repo: &str, reference: &str) {
    let r = s
        .req(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
        .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{repo}:{reference}");
    let m: Value = r.json().await.unwrap();
    let mut digests: Vec<String> = Vec::new();
    if let Some(c) = m["config"]["digest"].as_str() {
        digests.push(c.into());
    }
    for l in m["layers"].as_array().into_iter().flatten() {
        digests.push(l["digest"].as_str().unwrap().into());
    }
    for d in digests {
        let r = s.get(&format!("/v2/{repo}/blobs/{d}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{repo} blob {d}");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(sha256(&bytes), d, "{repo} blob {d} bytes");
    }
    for child in m["manifests"].as_array().into_iter().flatten() {
        Box::pin(pull_completely(s, repo, child["digest"].as_str().unwrap())).await;
    }
}

#[tokio::test]
async fn deleting_a_tag_and_pruning_frees_its_bytes_but_not_shared_ones() {
    let s = eager().await;
    let shared = b"a layer both images use".as_slice();
    let only_a = b"a layer only image a uses".as_slice();
    let a = push_with_layers(&s, "ns/a", "v1", "a", &[shared, only_a]).await;
    let b = push_with_layers(&s, "ns/b", "v1", "b", &[shared, b"only b"]).await;
    let before = blob_files(&s.data_dir());

    // Deleting the tag alone frees nothing: the manifest stays pullable by digest.
    assert_eq!(
        s.delete("/v2/ns/a/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );
    gc(&s, json!({})).await;
    assert_eq!(blob_files(&s.data_dir()), before);
    pull_completely(&s, "ns/a", &a).await;

    // A dry run reports and changes nothing.
    let dry = prune(&s, json!({"keepYoungerThan": "0s"})).await;
    assert_eq!(dry["dryRun"], true);
    assert_eq!(strings(&dry["images"]), vec![a.clone()]);
    gc(&s, json!({})).await;
    assert_eq!(blob_files(&s.data_dir()), before);
    pull_completely(&s, "ns/a", &a).await;

    let done = prune(&s, json!({"keepYoungerThan": "0s", "confirm": true})).await;
    assert_eq!(done["images"], dry["images"]);
    assert_eq!(done["manifestLinks"], dry["manifestLinks"]);
    assert_eq!(done["layerLinks"].as_array().unwrap().len(), 3, "{done}");
    gc_until_quiet(&s).await;

    let after = blob_files(&s.data_dir());
    let freed: BTreeSet<String> = before.difference(&after).cloned().collect();
    let only_a_digest = sha256(only_a);
    let config_a = sha256(br#"{"architecture":"amd64","os":"linux","seed":"a"}"#);
    assert_eq!(freed, BTreeSet::from([only_a_digest, config_a]));
    assert!(after.contains(&sha256(shared)));
    let r = s.get(&format!("/v2/ns/a/manifests/{a}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .get(&format!("/apis/image.openshift.io/v1/images/{a}"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    pull_completely(&s, "ns/b", &b).await;
    pull_completely(&s, "ns/b", "v1").await;

    let status: Value = s.get("/admin/v1/gc").await.json().await.unwrap();
    assert_eq!(status["blobsDeleted"], 2, "{status}");
    assert_eq!(status["manifestsDeleted"], 1, "{status}");
    let metrics = s.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("berth_gc_deleted_blobs 2"), "{metrics}");
    assert!(
        metrics.contains("berth_gc_deleted_manifests 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_gc_pending_candidates 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_grace_period_protects_what_was_just_unreferenced() {
    let s = TestServer::start_with(|c| c.gc_delay_secs = 3600).await;
    s.push_image("ns/a", "v1", "graced").await;
    assert_eq!(
        s.delete("/v2/ns/a/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );
    prune(&s, json!({"keepYoungerThan": "0s", "confirm": true})).await;
    let before = blob_files(&s.data_dir());
    let r = gc(&s, json!({})).await;
    assert!(strings(&r["blobsDeleted"]).is_empty(), "{r}");
    assert!(r["pending"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(blob_files(&s.data_dir()), before);
    let status: Value = s.get("/admin/v1/gc").await.json().await.unwrap();
    assert_eq!(status["delaySeconds"], 3600);
    assert!(status["pending"].as_u64().unwrap() >= 1, "{status}");
}

#[tokio::test]
async fn an_index_keeps_its_untagged_children_until_it_goes() {
    let s = eager().await;
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let d = push_with_layers(
            &s,
            "ns/multi",
            "",
            arch,
            &[format!("layer {arch}").as_bytes()],
        )
        .await;
        children.push(d);
    }
    // Children pushed by digest (an empty reference).
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        children
            .iter()
            .zip(["amd64", "arm64"])
            .map(|(d, a)| format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1,"platform":{{"architecture":"{a}","os":"linux"}}}}"#
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let r = s
        .put_manifest("ns/multi", "latest", OCI_INDEX, index.as_bytes())
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let before = blob_files(&s.data_dir());

    prune(
        &s,
        json!({"keepYoungerThan": "0s", "keepTagRevisions": 1, "confirm": true}),
    )
    .await;
    gc_until_quiet(&s).await;
    assert_eq!(blob_files(&s.data_dir()), before);
    pull_completely(&s, "ns/multi", "latest").await;
    for c in &children {
        pull_completely(&s, "ns/multi", c).await;
    }

    assert_eq!(
        s.delete("/v2/ns/multi/manifests/latest").await.status(),
        StatusCode::ACCEPTED
    );
    let r = prune(&s, json!({"keepYoungerThan": "0s", "confirm": true})).await;
    assert_eq!(r["manifestLinks"].as_array().unwrap().len(), 3, "{r}");
    gc_until_quiet(&s).await;
    assert!(
        blob_files(&s.data_dir()).is_empty(),
        "{:?}",
        blob_files(&s.data_dir())
    );
    for c in &children {
        let r = s.get(&format!("/v2/ns/multi/manifests/{c}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}

/// Pushes `p<i>` using layer `L<i>`, which `v<i>` (being deleted and pruned at the same
/// moment) also uses. A MANIFEST_BLOB_UNKNOWN is fixed by uploading the layer again.
async fn push_racing(s: &TestServer, i: usize) -> String {
    let shared = format!("layer shared in round {i}");
    let own = format!("layer of p{i}");
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"p{i}"}}"#);
    let (sd, od) = (sha256(shared.as_bytes()), sha256(own.as_bytes()));
    let cd = s.push_blob("ns/race", config.as_bytes()).await;
    s.push_blob("ns/race", own.as_bytes()).await;
    let manifest = image_manifest(
        &cd,
        config.len(),
        &[(&sd, shared.len()), (&od, own.len())],
        "",
    );
    for attempt in 0..5 {
        // What docker does: skip the upload of a layer the registry says it has.
        let r = s.head(&format!("/v2/ns/race/blobs/{sd}")).await;
        if r.status() != StatusCode::OK {
            s.push_blob("ns/race", shared.as_bytes()).await;
        }
        let r = s
            .put_manifest("ns/race", &format!("p{i}"), OCI_MANIFEST, &manifest)
            .await;
        match r.status() {
            StatusCode::CREATED => return sha256(&manifest),
            StatusCode::BAD_REQUEST => {
                let code = error_code(r).await;
                assert!(
                    code == "MANIFEST_BLOB_UNKNOWN" || code == "BLOB_UNKNOWN",
                    "round {i} attempt {attempt}: {code}"
                );
                // Whatever went, push it again.
                s.push_blob("ns/race", shared.as_bytes()).await;
                s.push_blob("ns/race", own.as_bytes()).await;
                s.push_blob("ns/race", config.as_bytes()).await;
            }
            other => panic!("round {i}: {other} {}", r.text().await.unwrap()),
        }
    }
    panic!("round {i}: the push never succeeded");
}

#[tokio::test]
async fn pushes_racing_prunes_and_collection_lose_nothing_acknowledged() {
    let s = std::sync::Arc::new(eager().await);
    let rounds = 200;
    let mut pushed = Vec::new();
    for i in 0..rounds {
        let shared = format!("layer shared in round {i}");
        push_with_layers(
            &s,
            "ns/race",
            &format!("v{i}"),
            &format!("v{i}"),
            &[shared.as_bytes()],
        )
        .await;
        let pruner = {
            let s = s.clone();
            tokio::spawn(async move {
                assert_eq!(
                    s.delete(&format!("/v2/ns/race/manifests/v{i}"))
                        .await
                        .status(),
                    StatusCode::ACCEPTED
                );
                prune(
                    &s,
                    json!({"keepYoungerThan": "0s", "keepTagRevisions": 1, "confirm": true}),
                )
                .await;
                gc(&s, json!({})).await;
            })
        };
        pushed.push(push_racing(&s, i).await);
        pruner.await.unwrap();
    }
    prune(
        &s,
        json!({"keepYoungerThan": "0s", "keepTagRevisions": 1, "confirm": true}),
    )
    .await;
    gc_until_quiet(&s).await;
    for (i, digest) in pushed.iter().enumerate() {
        pull_completely(&s, "ns/race", &format!("p{i}")).await;
        pull_completely(&s, "ns/race", digest).await;
    }
}

#[tokio::test]
async fn counts_are_rebuilt_for_a_store_from_before_them() {
    // The fixture was written by a release without reference counts.
    let dir = crate::streams_at_scale::unpack_fixture();
    let data = dir.path().join("data");
    let s = TestServer::start_in(dir, |c| {
        c.data_dir = data;
        c.gc_delay_secs = 0;
    })
    .await;
    // Nothing is deleted by the upgrade itself: every count it rebuilt keeps its object.
    let files = blob_files(&s.data_dir());
    let full = gc(&s, json!({"full": true, "dryRun": true})).await;
    assert_eq!(full["countsRepaired"], 0, "{full}");
    assert!(strings(&full["blobsDeleted"]).is_empty(), "{full}");
    assert_eq!(blob_files(&s.data_dir()), files);
    // Deleting every stream and pruning leaves nothing behind.
    for name in ["app", "tools", "many"] {
        let r = s
            .delete(&format!(
                "/apis/image.openshift.io/v1/namespaces/team/imagestreams/{name}"
            ))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    prune(&s, json!({"keepYoungerThan": "0s", "confirm": true})).await;
    gc_until_quiet(&s).await;
    assert!(
        blob_files(&s.data_dir()).is_empty(),
        "{:?}",
        blob_files(&s.data_dir())
    );
}

#[tokio::test]
async fn a_full_pass_repairs_counts_and_removes_orphan_files() {
    let s = eager().await;
    s.push_image("ns/a", "v1", "kept").await;
    // A file no record names, as a crash between a record's deletion and its bytes' leaves.
    let orphan = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
    let shard = s.data_dir().join("blobs/sha256/00");
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::write(shard.join(&orphan[7..]), b"left behind").unwrap();
    let dry = gc(&s, json!({"full": true, "dryRun": true})).await;
    assert_eq!(strings(&dry["orphansDeleted"]), vec![orphan.to_string()]);
    assert!(blob_files(&s.data_dir()).contains(orphan));
    let done = gc(&s, json!({"full": true})).await;
    assert_eq!(strings(&done["orphansDeleted"]), vec![orphan.to_string()]);
    assert_eq!(done["countsRepaired"], 0);
    assert!(!blob_files(&s.data_dir()).contains(orphan));
    pull_completely(&s, "ns/a", "v1").await;
}

/// Every blob record names bytes that exist (checked with the server stopped).
fn assert_records_have_bytes(data: &Path) {
    use berth_storage::MetadataStore as _;
    let meta = berth_storage::sled_store::SledMetadata::open(&data.join("metadata")).unwrap();
    let files = blob_files(data);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = meta.scan(b"blob\0", after.as_deref(), 1000).unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (k, _) in page {
            let digest = String::from_utf8(k[5..].to_vec()).unwrap();
            assert!(files.contains(&digest), "record {digest} has no bytes");
        }
    }
}

#[tokio::test]
async fn kill_9_during_a_sweep_and_a_prune_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let start = |data: &Path| Serve::start_with_env(data, &[("BERTH_GC_DELAY_SECS", "0")]);
    let mut serve = start(&data);
    let s = TestServer::client_for(&serve.base);
    let mut kept = Vec::new();
    for i in 0..40 {
        let (d, _) = s
            .push_image("ns/keep", &format!("k{i}"), &format!("keep {i}"))
            .await;
        kept.push(d);
        s.push_image("ns/drop", &format!("d{i}"), &format!("drop {i}"))
            .await;
    }
    for i in 0..40 {
        s.delete(&format!("/v2/ns/drop/manifests/d{i}")).await;
    }
    // Killed while pruning.
    let pruning = {
        let base = serve.base.clone();
        tokio::spawn(async move {
            let s = TestServer::client_for(&base);
            let _ = s
                .req(Method::POST, "/admin/v1/prune/images")
                .json(&json!({"keepYoungerThan": "0s", "confirm": true}))
                .send()
                .await;
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    serve.kill();
    let _ = pruning.await;
    assert_records_have_bytes(&data);

    // Restarted: finish the prune, then killed while collecting.
    let mut serve = start(&data);
    let s = TestServer::client_for(&serve.base);
    prune(&s, json!({"keepYoungerThan": "0s", "confirm": true})).await;
    let collecting = {
        let base = serve.base.clone();
        tokio::spawn(async move {
            let s = TestServer::client_for(&base);
            let _ = s
                .req(Method::POST, "/admin/v1/gc")
                .json(&json!({}))
                .send()
                .await;
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    serve.kill();
    let _ = collecting.await;
    assert_records_have_bytes(&data);

    let serve = start(&data);
    let s = TestServer::client_for(&serve.base);
    gc_until_quiet(&s).await;
    gc(&s, json!({"full": true})).await;
    for (i, d) in kept.iter().enumerate() {
        pull_completely(&s, "ns/keep", &format!("k{i}")).await;
        pull_completely(&s, "ns/keep", d).await;
    }
    drop(serve);
    assert_records_have_bytes(&data);
    // Only the kept images' bytes remain: 2 blobs each.
    assert_eq!(blob_files(&data).len(), 2 * kept.len());
}

#[tokio::test]
async fn prune_output_matches_oc_and_a_dry_run_changes_nothing() {
    let s = eager().await;
    for (tag, seed) in [("v1", "one"), ("v2", "two"), ("v3", "three")] {
        s.push_image("team/app", tag, seed).await;
    }
    // Three more revisions of v1: with --keep-tag-revisions=2 the oldest two go.
    for seed in ["one-b", "one-c", "one-d"] {
        s.push_image("team/app", "v1", seed).await;
    }
    s.delete("/v2/team/app/manifests/v3").await;
    let stream_before = stream(&s, "team", "app").await;
    let files = blob_files(&s.data_dir());
    // Without -n: cluster-wide, so Images are pruned too.
    let prune_cli = |extra: &'static [&'static str]| {
        let mut args = vec![
            "--server".to_string(),
            s.base.clone(),
            "adm".into(),
            "prune".into(),
            "images".into(),
            "--keep-tag-revisions=2".into(),
            "--keep-younger-than=0s".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_berth(&args, &[]).await
        }
    };
    let dry = prune_cli(&[]).await;
    crate::describe::golden(
        "prune_images_dry_run.txt",
        &crate::describe::normalize(ok(&dry), &s),
    );
    assert_eq!(stream(&s, "team", "app").await, stream_before);
    gc(&s, json!({})).await;
    assert_eq!(blob_files(&s.data_dir()), files);

    let done = prune_cli(&["--confirm"]).await;
    crate::describe::golden(
        "prune_images_confirm.txt",
        &crate::describe::normalize(ok(&done), &s),
    );
    assert_eq!(history(&stream(&s, "team", "app").await, "v1").len(), 2);
    // With -n only that namespace's streams are pruned, and no Image (cluster-scoped).
    let scoped = berth_in(
        &s,
        "other",
        &["adm", "prune", "images", "--keep-younger-than=0s"],
    )
    .await;
    assert_eq!(
        ok(&scoped),
        "Dry run enabled - no modifications will be made. Add --confirm to remove images\n\nNo images to prune.\n"
    );
    gc_until_quiet(&s).await;
    let status = berth_in(&s, "team", &["adm", "gc", "status"]).await;
    assert!(ok(&status).contains("Blobs deleted:"), "{}", status.stdout);
    pull_completely(&s, "team/app", "v1").await;
    pull_completely(&s, "team/app", "v2").await;
}

#[tokio::test]
async fn only_pruners_may_collect_or_prune_through_any_door() {
    use crate::auth::{create_user, start, ADMIN_PASSWORD, PASSWORD};
    let s = start(|c| c.gc_delay_secs = 0).await;
    create_user(&s, "editor", &[]).await;
    create_user(&s, "pruner", &["image-pruner"]).await;
    crate::auth::bind(&s, "team", "editor", "admin").await;
    crate::auth::push_as_admin(&s, "team/app", "v1", "x").await;
    for (method, path, body) in [
        (Method::GET, "/admin/v1/gc", None),
        (Method::POST, "/admin/v1/gc", Some(json!({"full": true}))),
        (
            Method::POST,
            "/admin/v1/prune/images",
            Some(json!({"confirm": true})),
        ),
    ] {
        let send = |who: Option<(&str, &str)>| {
            let mut r = s.req(method.clone(), path);
            if let Some((u, p)) = who {
                r = r.basic_auth(u, Some(p));
            }
            if let Some(b) = &body {
                r = r.json(b);
            }
            r.send()
        };
        let anon = send(None).await.unwrap();
        assert_eq!(anon.status(), StatusCode::UNAUTHORIZED, "{path}");
        let editor = send(Some(("editor", PASSWORD))).await.unwrap();
        assert_eq!(editor.status(), StatusCode::FORBIDDEN, "{path}");
        let status: Value = editor.json().await.unwrap();
        assert_eq!(status["kind"], "Status");
        let pruner = send(Some(("pruner", PASSWORD))).await.unwrap();
        assert_eq!(pruner.status(), StatusCode::OK, "{path}");
        let admin = send(Some(("admin", ADMIN_PASSWORD))).await.unwrap();
        assert_eq!(admin.status(), StatusCode::OK, "{path}");
    }
    // The CLI door: a namespace admin's token is refused too.
    let token = crate::hardening::access_token(&s, "editor", PASSWORD).await;
    for args in [
        vec!["adm", "gc", "status"],
        vec!["adm", "gc", "--full"],
        vec!["adm", "prune", "images", "--confirm"],
    ] {
        let mut all = vec!["--server", s.base.as_str(), "--token", token.as_str()];
        all.extend(args.iter().copied());
        let r = run_berth(&all, &[]).await;
        assert_ne!(r.code, 0, "{args:?}: {}", r.stdout);
        assert!(r.stderr.contains("(Forbidden)"), "{args:?}: {}", r.stderr);
    }
    // A body past the admin API's bound is refused before it is parsed.
    let r = s
        .req(Method::POST, "/admin/v1/prune/images")
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("content-type", "application/json")
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Bad input gets a Status, not a pass.
    let r = s
        .req(Method::POST, "/admin/v1/prune/images")
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"keepYoungerThan": "soon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    pull_completely_as_admin(&s).await;
}

async fn pull_completely_as_admin(s: &TestServer) {
    let r = s
        .req(Method::GET, "/v2/team/app/manifests/v1")
        .basic_auth("admin", Some(crate::auth::ADMIN_PASSWORD))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

fn policy(v: Value) -> berth::imagestream::retention::RetentionPolicy {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn retention_policies_keep_what_they_say_and_only_where_they_apply() {
    let s = TestServer::start_with(|c| {
        c.gc_delay_secs = 0;
        c.retention = vec![policy(json!({
            "name": "teams",
            "namespaces": "team-*",
            "keepTagRevisions": 2,
            "keepTags": ["release-*"],
            "deleteTagsNotPushedFor": "2s",
        }))];
    })
    .await;
    s.push_image("team-a/app", "old", "old").await;
    for i in 0..3 {
        s.push_image("team-a/app", "release-1", &format!("release {i}"))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut v1 = Vec::new();
    for i in 0..4 {
        v1.push(s.push_image("team-a/app", "v1", &format!("v1 {i}")).await.0);
        s.push_image("prod/app", "v1", &format!("prod {i}")).await;
    }
    // A policy over the API, in dry-run mode: it reports and changes nothing.
    let r = s
        .req(Method::PUT, "/admin/v1/retention/dry")
        .json(&json!({"name": "dry", "namespaces": "prod", "keepTagRevisions": 1, "dryRun": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let listed: Value = s.get("/admin/v1/retention").await.json().await.unwrap();
    let sources: Vec<(&str, &str)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["source"].as_str().unwrap()))
        .collect();
    assert_eq!(sources, vec![("teams", "config"), ("dry", "api")]);

    let r = s
        .req(Method::POST, "/admin/v1/retention/run")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let reports: Value = r.json().await.unwrap();
    let dry = &reports["items"][1];
    assert_eq!(dry["policy"], "dry");
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["history"].as_array().unwrap().len(), 3, "{dry}");

    let app = stream(&s, "team-a", "app").await;
    assert_eq!(history(&app, "v1"), vec![v1[3].clone(), v1[2].clone()]);
    assert_eq!(
        history(&app, "release-1").len(),
        3,
        "kept by pattern though idle"
    );
    let tags: Vec<&str> = app["status"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert!(!tags.contains(&"old"), "idle tag deleted: {tags:?}");
    assert_eq!(history(&stream(&s, "prod", "app").await, "v1").len(), 4);

    gc_until_quiet(&s).await;
    pull_completely(&s, "team-a/app", "v1").await;
    pull_completely(&s, "team-a/app", "release-1").await;
    for gone in &v1[..2] {
        let r = s.get(&format!("/v2/team-a/app/manifests/{gone}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = s
            .get(&format!("/apis/image.openshift.io/v1/images/{gone}"))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    pull_completely(&s, "prod/app", "v1").await;

    // Bad policies get a Status; config policies cannot be changed over the API.
    for (name, body) in [
        (
            "bad",
            json!({"name": "bad", "namespaces": "x", "keepYoungerThan": "soon"}),
        ),
        ("Bad", json!({"name": "Bad", "namespaces": "x"})),
        ("teams", json!({"name": "teams", "namespaces": "x"})),
        ("other", json!({"name": "mismatch", "namespaces": "x"})),
    ] {
        let r = s
            .req(Method::PUT, &format!("/admin/v1/retention/{name}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}");
        let status: Value = r.json().await.unwrap();
        assert_eq!(status["kind"], "Status");
    }
    assert_eq!(
        s.req(Method::DELETE, "/admin/v1/retention/dry")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        s.req(Method::DELETE, "/admin/v1/retention/dry")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn retention_runs_by_itself_on_its_schedule() {
    let s = TestServer::start_with(|c| {
        c.retention_interval_secs = 1;
        c.retention = vec![policy(
            json!({"name": "one", "namespaces": "ns", "keepTagRevisions": 1}),
        )];
    })
    .await;
    for i in 0..3 {
        s.push_image("ns/app", "v1", &format!("{i}")).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while history(&stream(&s, "ns", "app").await, "v1").len() > 1 {
        assert!(std::time::Instant::now() < deadline, "retention never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn only_pruners_manage_retention() {
    use crate::auth::{create_user, start, PASSWORD};
    let s = start(|_| {}).await;
    create_user(&s, "editor", &[]).await;
    crate::auth::bind(&s, "team", "editor", "admin").await;
    for (method, path) in [
        (Method::GET, "/admin/v1/retention"),
        (Method::POST, "/admin/v1/retention/run"),
        (Method::PUT, "/admin/v1/retention/p"),
        (Method::DELETE, "/admin/v1/retention/p"),
    ] {
        let r = s
            .req(method.clone(), path)
            .basic_auth("editor", Some(PASSWORD))
            .json(&json!({"name": "p", "namespaces": "team"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
}
