//! The workloads of issue 8. Each runs its repetitions alternating the servers (berth, peer,
//! berth, peer, ...), after an unmeasured warm-up where it has one.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{
    make_image, manifest_for, random_bytes, sha256_digest, shared_bytes, Blob, Image, OpResult,
    Registry,
};
use crate::results::{Metric, Results};
use crate::server::Kind;
use crate::stats::{self, ms, Batch};

const MIB: usize = 1 << 20;

/// Sizes and counts of one mode.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub big_layer: usize,
    pub big_reps: usize,
    pub range_gets: usize,
    pub reps: usize,
    pub images: usize,
    pub pool: usize,
    /// Seconds each repetition of workload 5 runs.
    pub manifest_secs: f64,
    pub tags: usize,
    pub listings: usize,
    pub mixed_ops: usize,
    pub stream_tags: usize,
    pub stream_history: usize,
    pub stream_gets: usize,
    pub watch_pushes: usize,
    pub big_watch_pushes: usize,
    /// Workload 9: new tags pushed into one repository.
    pub big_tags: usize,
    /// Workload 9: tags re-pushed, and how many rounds of that.
    pub big_history_tags: usize,
    pub big_history_rounds: usize,
    /// Workload 9: new tags pushed one at a time while a watch is open.
    pub big_watch: usize,
    /// Workload 11: unreferenced blobs each GC pass sweeps.
    pub gc_blobs: usize,
    /// Workload 11: image pushes timed with GC idle per round.
    pub gc_pushes: usize,
    /// Workload 12: the layer pushed and pulled through Garage.
    pub s3_layer: usize,
    /// Workload 12 with blob redirects on both sides (`--s3-redirect`).
    pub s3_redirect: bool,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                big_layer: 64 * MIB,
                big_reps: 2,
                range_gets: 20,
                reps: 2,
                images: 20,
                pool: 5,
                manifest_secs: 1.0,
                tags: 500,
                listings: 2,
                mixed_ops: 40,
                stream_tags: 100,
                stream_history: 3,
                stream_gets: 5,
                watch_pushes: 5,
                big_watch_pushes: 2,
                big_tags: 300,
                big_history_tags: 30,
                big_history_rounds: 3,
                big_watch: 20,
                gc_blobs: 300,
                gc_pushes: 10,
                s3_layer: 16 * MIB,
                s3_redirect: false,
            }
        } else {
            Plan {
                big_layer: 1 << 30,
                big_reps: 3,
                range_gets: 100,
                reps: 5,
                images: 100,
                pool: 20,
                manifest_secs: 5.0,
                tags: 10_000,
                listings: 3,
                mixed_ops: 400,
                stream_tags: 1000,
                stream_history: 10,
                stream_gets: 20,
                watch_pushes: 20,
                big_watch_pushes: 5,
                big_tags: 10_000,
                big_history_tags: 1000,
                big_history_rounds: 10,
                big_watch: 50,
                gc_blobs: 10_000,
                gc_pushes: 50,
                s3_layer: 1 << 30,
                s3_redirect: false,
            }
        }
    }
}

pub struct Bench {
    pub plan: Plan,
    /// berth first, then the peer: the A B order of every repetition.
    pub regs: Vec<(Kind, Registry)>,
    /// berth's process id, watched while the big image streams are built.
    pub berth_pid: u32,
    /// The peer's process id, for its VmHWM.
    pub peer_pid: u32,
    /// A setup stops pushing once berth's RSS passes this many bytes.
    pub rss_cap: u64,
    pub results: Results,
    pool: Arc<Vec<Image>>,
}

/// Raised once berth's RSS passes the cap; sampled every 50 ms while it lives.
pub(crate) struct RssGuard {
    over: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl RssGuard {
    pub(crate) fn start(pid: u32, cap: u64) -> RssGuard {
        let over = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s) = (over.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if crate::server::memory_of(pid).1 > cap {
                    o.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        RssGuard { over, stop }
    }
    pub(crate) fn over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }
}

impl Drop for RssGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) fn log(msg: &str) {
    eprintln!("[{}] {msg}", chrono_like_now());
}

/// Seconds since the start of the process, for progress lines.
fn chrono_like_now() -> String {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    let s = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    format!("{s:7.1}s")
}

fn mb_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// A distinct seed per (purpose, repetition, server, index).
pub(crate) fn seed(purpose: u64, rep: usize, kind: Kind, i: usize) -> u64 {
    (purpose << 48) ^ ((rep as u64) << 32) ^ ((kind as u64) << 28) ^ i as u64
}

impl Bench {
    pub fn new(
        plan: Plan,
        regs: Vec<(Kind, Registry)>,
        (berth_pid, peer_pid): (u32, u32),
        rss_cap: u64,
    ) -> Bench {
        let pool = Arc::new(
            (0..plan.pool)
                .map(|i| make_image(900_000 + i as u64, MIB))
                .collect(),
        );
        Bench {
            plan,
            regs,
            berth_pid,
            peer_pid,
            rss_cap,
            results: Results::default(),
            pool,
        }
    }

    /// Points the workloads at a fresh pair of servers.
    pub fn set_servers(&mut self, regs: Vec<(Kind, Registry)>, (berth, peer): (u32, u32)) {
        self.regs = regs;
        self.berth_pid = berth;
        self.peer_pid = peer;
    }

    pub(crate) fn record_batch(&mut self, m: &Metric, kind: Kind, b: &Batch) {
        self.results
            .fail(m, kind, b.failures, b.first_error.clone());
    }

    /// Pushes the shared pool of 1 MiB images (`bench/pool-N:latest`) used by 5 and 7, and
    /// warms each server up with a few pushes and pulls.
    pub async fn setup_pool(&mut self) {
        log("setup: image pool and warm-up");
        let warm = Metric::higher("0", "setup", "warm-up");
        for (kind, reg) in self.regs.clone() {
            let pool = self.pool.clone();
            let r = reg.clone();
            let b = stats::run(pool.len(), 4, move |i| {
                let (r, pool) = (r.clone(), pool.clone());
                async move {
                    r.push_image(&format!("bench/pool-{i}"), "latest", &pool[i])
                        .await
                }
            })
            .await;
            self.record_batch(&warm, kind, &b);
            let pool = self.pool.clone();
            let r = reg.clone();
            let b = stats::run(pool.len() * 5, 4, move |i| {
                let (r, pool) = (r.clone(), pool.clone());
                async move {
                    let n = i % pool.len();
                    r.pull_image(&format!("bench/pool-{n}"), "latest", &pool[n])
                        .await
                }
            })
            .await;
            self.record_batch(&warm, kind, &b);
        }
    }

    /// Workloads 1-3: a big random layer pushed monolithic and chunked, then pulled whole and
    /// by a 1 MiB range from its middle.
    pub async fn big_layer(&mut self) {
        let size = self.plan.big_layer;
        let label = format!("{} MiB", size / MIB);
        let w1 = Metric::higher("1", "push big layer, monolithic", "MB/s").target(1.5);
        let w2 = Metric::higher("2", "push big layer, chunked 8 MiB", "MB/s").target(1.5);
        let w3 = Metric::higher("3", "pull big layer", "MB/s").target(1.5);
        let w3r = Metric::lower("3", "Range GET 1 MiB of big layer", "p50 ms").target(1.5);
        let w3r99 = Metric::lower("3", "Range GET 1 MiB of big layer", "p99 ms");
        log(&format!(
            "workloads 1-3: {label} layer, {} repetitions",
            self.plan.big_reps
        ));
        let mut buf = Arc::new(random_bytes(11, size));
        let mut stamp = 0u64;
        let mut last: Vec<Option<String>> = vec![None; self.regs.len()];
        for (m, chunked) in [(w1, false), (w2, true)] {
            for rep in 0..self.plan.big_reps {
                for (si, (kind, reg)) in self.regs.clone().into_iter().enumerate() {
                    stamp += 1;
                    // A distinct blob every time: the first 8 bytes count pushes.
                    Arc::make_mut(&mut buf)[..8].copy_from_slice(&stamp.to_le_bytes());
                    let digest = sha256_digest(&buf);
                    let data = shared_bytes(&buf);
                    let t = Instant::now();
                    let r = if chunked {
                        reg.push_blob_chunked("bench/layer", data, &digest, 8 * MIB)
                            .await
                    } else {
                        reg.push_blob("bench/layer", data, &digest).await
                    };
                    let took = t.elapsed();
                    match r {
                        Ok(()) => {
                            self.results.add(&m, kind, mb_s(size, took));
                            last[si] = Some(digest);
                        }
                        Err(e) => self.results.fail(&m, kind, 1, Some(e)),
                    }
                    log(&format!(
                        "  {} rep {rep} {}: {:.0} MB/s",
                        m.id,
                        kind.label(),
                        mb_s(size, took)
                    ));
                }
            }
        }
        let start = size / 2;
        let expected = Arc::new(buf[start..start + MIB].to_vec());
        for rep in 0..self.plan.big_reps {
            for (si, (kind, reg)) in self.regs.clone().into_iter().enumerate() {
                let Some(digest) = last[si].clone() else {
                    continue;
                };
                let t = Instant::now();
                match reg.get_blob("bench/layer", &digest, size as u64).await {
                    Ok(_) => self.results.add(&w3, kind, mb_s(size, t.elapsed())),
                    Err(e) => self.results.fail(&w3, kind, 1, Some(e)),
                }
                let (r, d, e) = (reg.clone(), digest.clone(), expected.clone());
                let b = stats::run(self.plan.range_gets, 1, move |_| {
                    let (r, d, e) = (r.clone(), d.clone(), e.clone());
                    async move { r.get_range("bench/layer", &d, start as u64, &e).await }
                })
                .await;
                self.record_batch(&w3r, kind, &b);
                if !b.latencies_ms.is_empty() {
                    self.results.add(&w3r, kind, b.p(50.0));
                    self.results.add(&w3r99, kind, b.p(99.0));
                }
                log(&format!("  3 rep {rep} {} done", kind.label()));
            }
        }
    }

    /// Workload 4: 1 MiB images (config + layer + manifest), a new repository each, at
    /// concurrency 10.
    pub async fn push_images(&mut self) {
        let n = self.plan.images;
        let rate = Metric::higher("4", "push 1 MiB images, conc 10", "images/s").target(1.5);
        let p50 = Metric::lower("4", "push 1 MiB images, conc 10", "p50 ms");
        let p99 = Metric::lower("4", "push 1 MiB images, conc 10", "p99 ms");
        log(&format!(
            "workload 4: {n} images x {} repetitions",
            self.plan.reps
        ));
        for rep in 0..self.plan.reps {
            for (kind, reg) in self.regs.clone() {
                let images: Arc<Vec<Image>> = Arc::new(
                    (0..n)
                        .map(|i| make_image(seed(4, rep, kind, i), MIB))
                        .collect(),
                );
                let b = stats::run(n, 10, move |i| {
                    let (reg, images) = (reg.clone(), images.clone());
                    async move {
                        reg.push_image(&format!("bench/img-{rep}-{i}"), "v1", &images[i])
                            .await
                    }
                })
                .await;
                self.record_batch(&rate, kind, &b);
                self.results.add(&rate, kind, b.rate());
                self.results.add(&p50, kind, b.p(50.0));
                self.results.add(&p99, kind, b.p(99.0));
                log(&format!(
                    "  4 rep {rep} {}: {:.1} images/s",
                    kind.label(),
                    b.rate()
                ));
            }
        }
    }

    /// Workload 5: manifest HEAD, then GET, by tag at concurrency 64.
    pub async fn manifests(&mut self) {
        let secs = self.plan.manifest_secs;
        log(&format!(
            "workload 5: {secs} s x {} repetitions",
            self.plan.reps
        ));
        for head in [true, false] {
            let name = if head {
                "manifest HEAD by tag, conc 64"
            } else {
                "manifest GET by tag, conc 64"
            };
            let rate = Metric::higher("5", name, "req/s").target(3.0);
            let p99 = Metric::lower("5", name, "p99 ms").target(3.0);
            for (kind, reg) in self.regs.clone() {
                let b = self.manifest_batch(&reg, secs / 5.0, head).await;
                self.record_batch(&rate, kind, &b);
            }
            for rep in 0..self.plan.reps {
                for (kind, reg) in self.regs.clone() {
                    let b = self.manifest_batch(&reg, secs, head).await;
                    self.record_batch(&rate, kind, &b);
                    self.results.add(&rate, kind, b.rate());
                    self.results.add(&p99, kind, b.p(99.0));
                    log(&format!(
                        "  5 {} rep {rep} {}: {:.0} req/s",
                        if head { "HEAD" } else { "GET" },
                        kind.label(),
                        b.rate()
                    ));
                }
            }
        }
    }

    async fn manifest_batch(&self, reg: &Registry, secs: f64, head: bool) -> Batch {
        let (reg, pool) = (reg.clone(), self.pool.clone());
        stats::run_for(Duration::from_secs_f64(secs), 64, move |i| {
            let (reg, pool) = (reg.clone(), pool.clone());
            async move {
                let k = i % pool.len();
                reg.get_manifest(
                    &format!("bench/pool-{k}"),
                    "latest",
                    &pool[k].manifest.digest,
                    head,
                )
                .await
            }
        })
        .await
    }

    /// Workload 6: a repository with many tags, listed in pages of 100 following `Link`. berth
    /// is set up first, under the RSS cap; the peer then gets exactly the tags berth got.
    pub async fn tags_list(&mut self) {
        let wanted = self.plan.tags;
        // Charted too: tagging into a big repository is where berth is slowest.
        let setup = Metric::higher("6", "setup: tag one manifest, conc 8", "tags/s");
        const NOTE: &str = "— (the peer ignores n: one page of all tags)";
        let pages = Metric::higher("6", "tags/list n=100", "pages/s").note(NOTE);
        let p99 = Metric::lower("6", "tags/list n=100", "p99 ms/page").note(NOTE);
        let full = Metric::lower("6", "tags/list n=100, whole listing", "ms").target(3.0);
        log(&format!("workload 6: setup of {wanted} tags"));
        let image = make_image(600, 1024);
        let mut tagged: Vec<usize> = (0..wanted).collect();
        for (kind, reg) in self.regs.clone() {
            if let Err(e) = reg.push_image("bench/tags", "t00000", &image).await {
                self.results.fail(&setup, kind, 1, Some(e));
                continue;
            }
            let guard = Arc::new(
                (kind == Kind::Berth).then(|| RssGuard::start(self.berth_pid, self.rss_cap)),
            );
            let done = Arc::new(Mutex::new(vec![0usize]));
            let todo = Arc::new(tagged.clone());
            let (r, m, g, d, todo2) = (
                reg.clone(),
                image.manifest.clone(),
                guard.clone(),
                done.clone(),
                todo.clone(),
            );
            let b = stats::run(todo.len() - 1, 8, move |i| {
                let (r, m, g, d) = (r.clone(), m.clone(), g.clone(), d.clone());
                let t = todo2[i + 1];
                async move {
                    if g.as_ref().as_ref().is_some_and(RssGuard::over) {
                        return Ok(());
                    }
                    r.put_manifest("bench/tags", &format!("t{t:05}"), &m)
                        .await?;
                    d.lock().expect("done").push(t);
                    Ok(())
                }
            })
            .await;
            self.record_batch(&setup, kind, &b);
            let mut got = std::mem::take(&mut *done.lock().expect("done"));
            got.sort_unstable();
            let rate = (got.len() - 1) as f64 / b.wall.as_secs_f64();
            self.results.add(&setup, kind, rate);
            log(&format!(
                "  6 setup {}: {} tags, {rate:.0} tags/s",
                kind.label(),
                got.len()
            ));
            if got.len() < tagged.len() {
                let why = if guard.as_ref().as_ref().is_some_and(RssGuard::over) {
                    format!("berth's RSS passed the cap of {} MiB", self.rss_cap >> 20)
                } else {
                    format!("{} pushes failed", b.failures)
                };
                self.results.notes.push(format!(
                    "6: {why} after {} of {wanted} tags; both registries were listed with those {} tags",
                    got.len(),
                    got.len()
                ));
                tagged = got;
            }
        }
        let expected: Vec<String> = tagged.iter().map(|i| format!("t{i:05}")).collect();
        for rep in 0..self.plan.reps {
            for (kind, reg) in self.regs.clone() {
                let mut lat = Vec::new();
                let mut listings = Vec::new();
                let mut failures = 0;
                let mut first = None;
                let started = Instant::now();
                for _ in 0..self.plan.listings {
                    let l0 = Instant::now();
                    match list_all(&reg, &mut lat).await {
                        Ok(got) if got == expected => listings.push(ms(l0.elapsed())),
                        Ok(got) => {
                            failures += 1;
                            first = Some(format!(
                                "listing returned {} tags, wanted {}",
                                got.len(),
                                expected.len()
                            ));
                        }
                        Err(e) => {
                            failures += 1;
                            first = Some(e);
                        }
                    }
                }
                let wall = started.elapsed();
                self.results.fail(&full, kind, failures, first);
                if !lat.is_empty() {
                    self.results
                        .add(&pages, kind, lat.len() as f64 / wall.as_secs_f64());
                    self.results.add(&p99, kind, stats::percentile(&lat, 99.0));
                }
                if !listings.is_empty() {
                    self.results.add(&full, kind, stats::median(&listings));
                }
                log(&format!(
                    "  6 rep {rep} {}: {} pages",
                    kind.label(),
                    lat.len()
                ));
            }
        }
    }

    /// Workload 7: 75% pulls of pool images, 25% pushes of new 1 MiB images, concurrency 16.
    pub async fn mixed(&mut self) {
        let n = self.plan.mixed_ops;
        let rate = Metric::higher("7", "mixed 75% pull / 25% push, conc 16", "ops/s").target(1.5);
        let p50 = Metric::lower("7", "mixed 75% pull / 25% push, conc 16", "p50 ms");
        let p99 = Metric::lower("7", "mixed 75% pull / 25% push, conc 16", "p99 ms");
        log(&format!(
            "workload 7: {n} ops x {} repetitions",
            self.plan.reps
        ));
        for rep in 0..self.plan.reps {
            for (kind, reg) in self.regs.clone() {
                let pushes: Arc<Vec<Image>> = Arc::new(
                    (0..n / 4)
                        .map(|i| make_image(seed(7, rep, kind, i), MIB))
                        .collect(),
                );
                let pool = self.pool.clone();
                let b = stats::run(n, 16, move |i| {
                    let (reg, pushes, pool) = (reg.clone(), pushes.clone(), pool.clone());
                    async move {
                        if i % 4 == 3 {
                            reg.push_image(&format!("bench/mix-{rep}-{i}"), "v1", &pushes[i / 4])
                                .await
                        } else {
                            let k = (i * 7919) % pool.len();
                            reg.pull_image(&format!("bench/pool-{k}"), "latest", &pool[k])
                                .await
                        }
                    }
                })
                .await;
                self.record_batch(&rate, kind, &b);
                self.results.add(&rate, kind, b.rate());
                self.results.add(&p50, kind, b.p(50.0));
                self.results.add(&p99, kind, b.p(99.0));
                log(&format!(
                    "  7 rep {rep} {}: {:.1} ops/s",
                    kind.label(),
                    b.rate()
                ));
            }
        }
    }

    /// Workload 8 (berth only): GET of an image stream with many tags and history entries, and
    /// the time from a manifest push to its watch event.
    pub async fn image_streams(&mut self) {
        let Some((kind, reg)) = self.regs.iter().find(|(k, _)| *k == Kind::Berth).cloned() else {
            return;
        };
        let (tags, history) = (self.plan.stream_tags, self.plan.stream_history);
        let name = format!("{tags} tags x {history} history");
        let setup =
            Metric::higher("8", "setup: push to the stream, conc 8", "manifests/s").uncompared();
        let get50 = Metric::lower("8", "GET imagestream", "p50 ms").uncompared();
        let get_mb = Metric::higher("8", "GET imagestream", "MB/s of JSON").uncompared();
        let watch = Metric::lower("8", "push -> watch event, small stream", "p50 ms").uncompared();
        let watch_max =
            Metric::lower("8", "push -> watch event, small stream", "max ms").uncompared();
        let big_watch =
            Metric::lower("8", "push -> watch event, big stream", "p50 ms").uncompared();
        log(&format!("workload 8: setup of a stream of {name}"));
        let layer = Blob::new(random_bytes(800, 1024));
        let config = make_image(801, 16).config;
        let base = Instant::now();
        let mut setup_failed = false;
        for blob in [&config, &layer] {
            if let Err(e) = reg
                .push_blob("bench/stream", blob.data.clone(), &blob.digest)
                .await
            {
                self.results.fail(&setup, kind, 1, Some(e));
                setup_failed = true;
            }
        }
        if setup_failed {
            return;
        }
        let counts: Arc<Vec<AtomicUsize>> =
            Arc::new((0..tags).map(|_| AtomicUsize::new(0)).collect());
        let guard = Arc::new(RssGuard::start(self.berth_pid, self.rss_cap));
        for round in 0..history {
            if guard.over() {
                break;
            }
            let (r, c, l, g, n) = (
                reg.clone(),
                config.clone(),
                layer.clone(),
                guard.clone(),
                counts.clone(),
            );
            let t0 = Instant::now();
            let b = stats::run(tags, 8, move |t| {
                let (r, c, l, g, n) = (r.clone(), c.clone(), l.clone(), g.clone(), n.clone());
                async move {
                    if g.over() {
                        return Ok(());
                    }
                    let m = manifest_for(&c, &l, Some(&format!("{round}-{t}")));
                    r.put_manifest("bench/stream", &format!("tag-{t:04}"), &m)
                        .await?;
                    n[t].fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            })
            .await;
            self.record_batch(&setup, kind, &b);
            log(&format!(
                "  8 setup round {round}: {:.0} manifests/s",
                b.latencies_ms.len() as f64 / t0.elapsed().as_secs_f64()
            ));
        }
        drop(guard);
        let counts: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let pushed: usize = counts.iter().sum();
        self.results
            .add(&setup, kind, pushed as f64 / base.elapsed().as_secs_f64());
        if pushed < tags * history {
            self.results.notes.push(format!(
                "8: berth's RSS passed the cap of {} MiB after {pushed} of {} pushes; the stream measured has {} tags with {}-{} history entries",
                self.rss_cap >> 20,
                tags * history,
                counts.iter().filter(|&&c| c > 0).count(),
                counts.iter().min().copied().unwrap_or(0),
                counts.iter().max().copied().unwrap_or(0),
            ));
        }
        let url = format!(
            "{}/apis/image.openshift.io/v1/namespaces/bench/imagestreams/stream",
            reg.base
        );
        // The small stream the watch latency is measured on.
        let small_cfg = make_image(802, 16).config;
        for blob in [&small_cfg, &layer] {
            if let Err(e) = reg
                .push_blob("bench/watched", blob.data.clone(), &blob.digest)
                .await
            {
                self.results.fail(&watch, kind, 1, Some(e));
                return;
            }
        }
        let first = manifest_for(&small_cfg, &layer, Some("w-initial"));
        if let Err(e) = reg.put_manifest("bench/watched", "latest", &first).await {
            self.results.fail(&watch, kind, 1, Some(e));
            return;
        }
        let mut pushes = 0usize;
        for rep in 0..self.plan.reps {
            let mut lat = Vec::new();
            let mut bytes = 0usize;
            let mut failures = 0;
            let mut first_err = None;
            for _ in 0..self.plan.stream_gets {
                let t = Instant::now();
                match reg.get_ok(&url).await {
                    Ok(body) => {
                        lat.push(ms(t.elapsed()));
                        bytes += body.len();
                        if let Err(e) = check_stream(&body, &counts) {
                            failures += 1;
                            first_err = Some(e);
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        first_err = Some(e);
                    }
                }
            }
            self.results.fail(&get50, kind, failures, first_err);
            if !lat.is_empty() {
                self.results.add(&get50, kind, stats::median(&lat));
                let secs: f64 = lat.iter().sum::<f64>() / 1000.0;
                self.results.add(&get_mb, kind, bytes as f64 / secs / 1e6);
            }
            for (metric, max_metric, stream, tag, count, small) in [
                (
                    &watch,
                    Some(&watch_max),
                    "watched",
                    "latest",
                    self.plan.watch_pushes,
                    true,
                ),
                (
                    &big_watch,
                    None,
                    "stream",
                    "tag-0000",
                    self.plan.big_watch_pushes,
                    false,
                ),
            ] {
                let (cfg, lyr) = if small {
                    (&small_cfg, &layer)
                } else {
                    (&config, &layer)
                };
                match watch_latency(&reg, stream, tag, count, |_| {
                    pushes += 1;
                    manifest_for(cfg, lyr, Some(&format!("w-{stream}-{rep}-{pushes}")))
                })
                .await
                {
                    Ok(lat) => {
                        self.results.add(metric, kind, stats::median(&lat));
                        if let Some(m) = max_metric {
                            self.results.add(m, kind, stats::max(&lat));
                        }
                    }
                    Err(e) => self.results.fail(metric, kind, 1, Some(e)),
                }
            }
            log(&format!("  8 rep {rep} done"));
        }
    }
}

/// Follows `Link` from `tags/list?n=100` to the end; every page's latency goes to `lat`.
async fn list_all(reg: &Registry, lat: &mut Vec<f64>) -> OpResult<Vec<String>> {
    let mut url = Some(format!("{}/v2/bench/tags/tags/list?n=100", reg.base));
    let mut tags = Vec::new();
    let mut seen = BTreeSet::new();
    while let Some(u) = url {
        let t = Instant::now();
        let (page, next) = reg.tags_page(&u).await?;
        lat.push(ms(t.elapsed()));
        for tag in page {
            if !seen.insert(tag.clone()) {
                return Err(format!("tag {tag} listed twice"));
            }
            tags.push(tag);
        }
        url = next;
        if lat.len() > 1_000_000 {
            return Err("too many pages".into());
        }
    }
    tags.sort();
    Ok(tags)
}

/// Checks an image stream body: the tags pushed (`counts[i]` times to `tag-i`), each with
/// that many history entries.
fn check_stream(body: &[u8], counts: &[usize]) -> OpResult {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("imagestream: {e}"))?;
    let st = v["status"]["tags"]
        .as_array()
        .ok_or("imagestream: no status.tags")?;
    let tags = counts.iter().filter(|&&c| c > 0).count();
    if st.len() != tags {
        return Err(format!("imagestream: {} tags, wanted {tags}", st.len()));
    }
    for t in st {
        let want = t["tag"]
            .as_str()
            .and_then(|n| n.strip_prefix("tag-"))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|i| counts.get(i).copied())
            .ok_or_else(|| format!("imagestream: unexpected tag {}", t["tag"]))?;
        let n = t["items"].as_array().map_or(0, Vec::len);
        // The watch measurement adds entries to tag-0000.
        if n < want {
            return Err(format!(
                "imagestream: tag {} has {n} history entries, wanted {want}",
                t["tag"]
            ));
        }
    }
    Ok(())
}

/// Reads a Kubernetes watch stream (one JSON event per line).
struct WatchStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl WatchStream {
    async fn next_event(&mut self) -> OpResult<Value> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line).map_err(|e| format!("watch line: {e}"));
            }
            match tokio::time::timeout(Duration::from_secs(20), self.resp.chunk()).await {
                Err(_) => return Err("no watch event within 20 s".into()),
                Ok(Err(e)) => return Err(format!("watch: {e}")),
                Ok(Ok(None)) => return Err("watch ended".into()),
                Ok(Ok(Some(c))) => self.buf.extend_from_slice(&c),
            }
        }
    }
}

/// Opens a watch on `bench/<stream>` from its current resourceVersion, then pushes `count`
/// manifests to `tag` one after the other, timing each from the start of the PUT to the
/// MODIFIED event that shows it on top of the tag.
async fn watch_latency(
    reg: &Registry,
    stream: &str,
    tag: &str,
    count: usize,
    mut next_manifest: impl FnMut(usize) -> Blob,
) -> OpResult<Vec<f64>> {
    let api = format!(
        "{}/apis/image.openshift.io/v1/namespaces/bench/imagestreams",
        reg.base
    );
    let current: Value = serde_json::from_slice(&reg.get_ok(&format!("{api}/{stream}")).await?)
        .map_err(|e| format!("imagestream: {e}"))?;
    let rv = current["metadata"]["resourceVersion"]
        .as_str()
        .ok_or("imagestream without resourceVersion")?
        .to_string();
    let resp = reg
        .client
        .get(format!(
            "{api}?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3D{stream}"
        ))
        .send()
        .await
        .map_err(|e| format!("watch: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("watch: status {}", resp.status()));
    }
    let mut watch = WatchStream {
        resp,
        buf: Vec::new(),
    };
    let mut lat = Vec::new();
    for i in 0..count {
        let m = next_manifest(i);
        let t = Instant::now();
        reg.put_manifest(&format!("bench/{stream}"), tag, &m)
            .await?;
        loop {
            let ev = watch.next_event().await?;
            if ev["type"] == "ERROR" {
                return Err(format!("watch error event: {}", ev["object"]));
            }
            let top = ev["object"]["status"]["tags"]
                .as_array()
                .and_then(|tags| tags.iter().find(|t| t["tag"] == tag))
                .and_then(|t| t["items"][0]["image"].as_str());
            if ev["type"] == "MODIFIED" && top == Some(m.digest.as_str()) {
                lat.push(ms(t.elapsed()));
                break;
            }
        }
    }
    Ok(lat)
}
