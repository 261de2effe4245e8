//! Workload 11 (berth only): what an online garbage-collection pass costs a push, and how fast
//! it deletes. docker-registry has no counterpart: its `registry garbage-collect` is an offline
//! command for a registry that is stopped or read-only, so there is no "push while it sweeps".
//!
//! berth runs with `--gc-delay-secs 0 --gc-interval-secs 3600`, so nothing is collected until
//! the bench asks (`POST /admin/v1/gc`). Each round fills the review queue with N unreferenced
//! blobs (pushed, then unlinked with `DELETE /v2/<repo>/blobs/<digest>`), times small image
//! pushes with GC idle, then the same pushes while one pass sweeps the N, and checks the pass's
//! report and the data directory.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::client::{make_image, random_bytes, Blob, Image, OpResult, Registry};
use crate::report::num;
use crate::results::{Check, Metric};
use crate::server::Kind;
use crate::stats::{self, ms, percentile};
use crate::workloads::{log, Bench};

/// Size of each unreferenced blob: small, so the pass's cost is per object, not per byte.
const GARBAGE_SIZE: usize = 4 << 10;
/// Layer of each measured image push.
const LAYER_SIZE: usize = 64 << 10;
const REPO: &str = "gc/app";
const GARBAGE_REPO: &str = "gc/garbage";
/// The berth flags of this workload: no grace period, and no pass of its own during the run.
pub const BERTH_FLAGS: &[&str] = &["--gc-delay-secs", "0", "--gc-interval-secs", "3600"];

fn blob_file(data: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    data.join("blobs/sha256").join(&hex[..2]).join(hex)
}

async fn admin_gc(reg: &Registry) -> OpResult<Value> {
    let resp = reg
        .client
        .post(format!("{}/admin/v1/gc", reg.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .map_err(|e| format!("POST /admin/v1/gc: {e}"))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("POST /admin/v1/gc body: {e}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!(
            "POST /admin/v1/gc: status {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("POST /admin/v1/gc: {e}"))
}

async fn gc_pending(reg: &Registry) -> OpResult<u64> {
    let body = reg.get_ok(&format!("{}/admin/v1/gc", reg.base)).await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("GET /admin/v1/gc: {e}"))?;
    v["pending"]
        .as_u64()
        .ok_or_else(|| format!("GET /admin/v1/gc: no pending in {v}"))
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a pass's report against the blobs queued, and that their files are gone.
fn check_report(report: &Value, queued: &BTreeSet<String>, data: &Path) -> OpResult {
    let deleted = strings(&report["blobsDeleted"]);
    if &deleted != queued {
        return Err(format!(
            "gc deleted {} blobs, {} were queued ({} queued not deleted, {} deleted not queued)",
            deleted.len(),
            queued.len(),
            queued.difference(&deleted).count(),
            deleted.difference(queued).count()
        ));
    }
    let manifests = strings(&report["manifestsDeleted"]);
    if !manifests.is_empty() {
        return Err(format!(
            "gc deleted {} manifests, none were unreferenced",
            manifests.len()
        ));
    }
    let bytes = report["bytesDeleted"].as_u64().unwrap_or(0);
    if bytes != (queued.len() * GARBAGE_SIZE) as u64 {
        return Err(format!(
            "gc reports {bytes} bytes deleted, {} were queued",
            queued.len() * GARBAGE_SIZE
        ));
    }
    if report["pending"].as_u64() != Some(0) {
        return Err(format!(
            "gc left {} pending with no grace period",
            report["pending"]
        ));
    }
    let left = queued
        .iter()
        .filter(|d| blob_file(data, d).exists())
        .count();
    if left > 0 {
        return Err(format!("{left} collected blobs still have their files"));
    }
    Ok(())
}

impl Bench {
    /// Pushes `images` one after the other with no pass running; their p50.
    async fn idle_pushes(
        &mut self,
        reg: &Registry,
        round: usize,
        images: &Arc<Vec<Image>>,
        [p50, p99]: [&Metric; 2],
    ) -> f64 {
        let (r, imgs) = (reg.clone(), images.clone());
        let b = stats::run(images.len(), 1, move |i| {
            let (r, imgs) = (r.clone(), imgs.clone());
            async move {
                r.push_image(REPO, &format!("r{round}-idle-{i}"), &imgs[i])
                    .await
            }
        })
        .await;
        self.record_batch(p50, Kind::Berth, &b);
        self.results.add(p50, Kind::Berth, b.p(50.0));
        self.results.add(p99, Kind::Berth, b.p(99.0));
        b.p(50.0)
    }

    pub async fn gc(&mut self, data: &Path) {
        let Some((_, reg)) = self.regs.iter().find(|(k, _)| *k == Kind::Berth).cloned() else {
            return;
        };
        let n = self.plan.gc_blobs;
        let pushes = self.plan.gc_pushes;
        let w = "push 64 KiB image, sequential";
        let fill = Metric::higher(
            "11",
            "setup: push + DELETE unreferenced blobs, conc 16",
            "blobs/s",
        )
        .uncompared();
        let idle50 = Metric::lower("11", w, "p50 ms, GC idle").uncompared();
        let idle99 = Metric::lower("11", w, "p99 ms, GC idle").uncompared();
        let sweep50 = Metric::lower("11", w, "p50 ms, GC sweeping").uncompared();
        let sweep99 = Metric::lower("11", w, "p99 ms, GC sweeping").uncompared();
        let ratio = Metric::higher("11", w, "idle p50 / sweeping p50 (target >= 0.9)").uncompared();
        let gw = "GC pass over the unreferenced blobs";
        let pass_s = Metric::lower("11", gw, "s per pass")
            .note("berth only: docker-registry's GC is offline (stopped or read-only registry)");
        let objects = Metric::higher("11", gw, "objects/s").uncompared();
        let bytes = Metric::higher("11", gw, "MB/s deleted").uncompared();
        log(&format!(
            "workload 11: {n} unreferenced blobs, {pushes} idle pushes, then pushes during the pass, x {} rounds",
            self.plan.reps
        ));
        let mut ratios = Vec::new();
        let mut overlapped = Vec::new();
        for round in 0..self.plan.reps {
            let seed = (11u64 << 48) + ((round as u64) << 32);
            let garbage: Arc<Vec<Blob>> = Arc::new(
                (0..n)
                    .map(|i| Blob::new(random_bytes(seed + i as u64, GARBAGE_SIZE)))
                    .collect(),
            );
            let queued: Arc<Vec<AtomicBool>> =
                Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
            let (r, g, q) = (reg.clone(), garbage.clone(), queued.clone());
            let b = stats::run(n, 16, move |i| {
                let (r, g, q) = (r.clone(), g.clone(), q.clone());
                async move {
                    r.push_blob_single(GARBAGE_REPO, g[i].data.clone(), &g[i].digest)
                        .await?;
                    r.delete_blob(GARBAGE_REPO, &g[i].digest).await?;
                    q[i].store(true, Ordering::Relaxed);
                    Ok(())
                }
            })
            .await;
            self.record_batch(&fill, Kind::Berth, &b);
            let fill_rate = b.rate();
            self.results.add(&fill, Kind::Berth, fill_rate);
            let queued: BTreeSet<String> = garbage
                .iter()
                .zip(queued.iter())
                .filter(|(_, q)| q.load(Ordering::Relaxed))
                .map(|(g, _)| g.digest.clone())
                .collect();
            // The pass must have something to delete: the files are there, and queued.
            let missing = queued
                .iter()
                .filter(|d| !blob_file(data, d).exists())
                .count();
            let pending = gc_pending(&reg).await;
            if missing > 0 || pending.as_ref().ok() != Some(&(queued.len() as u64)) {
                let e = format!(
                    "before the pass: {missing} of {} queued blobs without a file, pending {pending:?}",
                    queued.len()
                );
                self.results.fail(&pass_s, Kind::Berth, 1, Some(e));
            }

            let image =
                |phase: u64, i: usize| make_image(seed + (phase << 24) + i as u64, LAYER_SIZE);
            let idle: Arc<Vec<Image>> = Arc::new((0..pushes).map(|i| image(1, i)).collect());
            // Odd rounds time the idle pushes after the pass rather than before it, so neither
            // phase always follows the fill's burst of writes.
            let idle_first = round % 2 == 0;
            let mut idle_p50 = None;
            if idle_first {
                idle_p50 = Some(
                    self.idle_pushes(&reg, round, &idle, [&idle50, &idle99])
                        .await,
                );
            }

            // Pushes run back to back from the moment the pass is asked for until it answers;
            // a push that started before the answer counts as overlapping it.
            let done = Arc::new(AtomicBool::new(false));
            let (r, d) = (reg.clone(), done.clone());
            let pass = tokio::spawn(async move {
                let t = Instant::now();
                let report = admin_gc(&r).await;
                d.store(true, Ordering::Relaxed);
                (report, t.elapsed())
            });
            let mut lat = Vec::new();
            let mut swept = Vec::new();
            let mut failed = 0u64;
            let mut first_err = None;
            while !done.load(Ordering::Relaxed) {
                let img = image(2, swept.len() + failed as usize);
                let t = Instant::now();
                match reg
                    .push_image(REPO, &format!("r{round}-sweep-{}", swept.len()), &img)
                    .await
                {
                    Ok(()) => {
                        lat.push(ms(t.elapsed()));
                        swept.push(img);
                    }
                    Err(e) => {
                        failed += 1;
                        first_err.get_or_insert(e);
                    }
                }
            }
            self.results.fail(&sweep50, Kind::Berth, failed, first_err);
            let (report, took) = match pass.await {
                Ok(r) => r,
                Err(e) => (Err(e.to_string()), Default::default()),
            };
            let report = report.and_then(|r| check_report(&r, &queued, data).map(|()| r));
            let idle_p50 = match idle_p50 {
                Some(p) => p,
                None => {
                    self.idle_pushes(&reg, round, &idle, [&idle50, &idle99])
                        .await
                }
            };
            // Everything pushed around the pass must still pull whole.
            for (i, img) in idle.iter().enumerate() {
                if let Err(e) = reg
                    .pull_image(REPO, &format!("r{round}-idle-{i}"), img)
                    .await
                {
                    self.results.fail(&idle50, Kind::Berth, 1, Some(e));
                }
            }
            for (i, img) in swept.iter().enumerate() {
                if let Err(e) = reg
                    .pull_image(REPO, &format!("r{round}-sweep-{i}"), img)
                    .await
                {
                    self.results.fail(&sweep50, Kind::Berth, 1, Some(e));
                }
            }
            let report = match report {
                Ok(r) => r,
                Err(e) => {
                    self.results.fail(&pass_s, Kind::Berth, 1, Some(e));
                    continue;
                }
            };
            let secs = took.as_secs_f64();
            let deleted = strings(&report["blobsDeleted"]).len();
            self.results.add(&pass_s, Kind::Berth, secs);
            self.results
                .add(&objects, Kind::Berth, deleted as f64 / secs);
            self.results.add(
                &bytes,
                Kind::Berth,
                report["bytesDeleted"].as_u64().unwrap_or(0) as f64 / secs / 1e6,
            );
            overlapped.push(lat.len());
            if !lat.is_empty() {
                let sweep_p50 = percentile(&lat, 50.0);
                self.results.add(&sweep50, Kind::Berth, sweep_p50);
                self.results
                    .add(&sweep99, Kind::Berth, percentile(&lat, 99.0));
                if sweep_p50 > 0.0 {
                    self.results.add(&ratio, Kind::Berth, idle_p50 / sweep_p50);
                    ratios.push(idle_p50 / sweep_p50);
                }
            }
            log(&format!(
                "  11 round {round}: fill {:.0} blobs/s; push p50 {:.1} ms idle, {:.1} ms sweeping ({} pushes); pass {deleted} blobs in {secs:.2} s ({:.0}/s)",
                fill_rate,
                idle_p50,
                percentile(&lat, 50.0),
                lat.len(),
                deleted as f64 / secs
            ));
        }
        let figure = if ratios.is_empty() {
            "not measured".to_string()
        } else {
            format!(
                "{}× (median of {} rounds; {}-{} pushes overlapped each pass)",
                num(stats::median(&ratios)),
                ratios.len(),
                overlapped.iter().min().unwrap_or(&0),
                overlapped.iter().max().unwrap_or(&0)
            )
        };
        self.results.checks.push(Check {
            id: "11".into(),
            target: format!(
                "push p50 while GC sweeps {n} unreferenced blobs ≥ 0.9× as fast as with GC idle (idle p50 / sweeping p50)"
            ),
            figure,
            met: (!ratios.is_empty()).then(|| stats::median(&ratios) >= 0.9),
        });
        self.results.notes.push(
            "11: berth only; docker-registry's garbage collection (`registry garbage-collect`) is offline: it runs with the registry stopped or read-only, so it has no figure for pushes during a sweep".into(),
        );
    }
}
