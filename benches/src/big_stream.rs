//! Workload 9 (issue 12, "a push costs the same at 100,000 tags as at 1"): one repository grown
//! tag by tag on both registries, slices alternating between them, then history on some of its
//! tags, then the reads of the big repository and, on berth, the push -> watch-event latency of
//! its image stream. Every tag is a new manifest over one shared config and layer, so what is
//! measured is the manifest PUT and whatever the registry keeps per tag.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::client::{make_image, manifest_for, random_bytes, Blob, OpResult, Registry};
use crate::results::{Check, Metric};
use crate::server::{memory_of, Kind};
use crate::stats::{self, ms, Batch};
use crate::workloads::{log, Bench, RssGuard};

const REPO: &str = "bench/big";
/// berth's image stream of [`REPO`].
const NAMESPACE: &str = "bench";
const STREAM: &str = "big";
const CONCURRENCY: usize = 8;
const SLICES: usize = 10;

const TARGET_VS_PEER: f64 = 1.5;
const TARGET_LAST_VS_FIRST: f64 = 0.8;
const TARGET_HWM_MIB: f64 = 96.0;
const TARGET_WATCH_P50_MS: f64 = 20.0;

/// How long one watch line may take: at 100,000 tags in a debug build a push and its event
/// (the whole stream) take seconds, and the smoke step must not hang forever either.
const LINE_WAIT: Duration = Duration::from_secs(120);

const W_PUSH: &str = "big stream: push new tags, conc 8";
const W_HISTORY: &str = "big stream: re-push tags (history), conc 8";
const W_MEMORY: &str = "big stream: whole workload";
const W_LIST: &str = "big stream: tags/list of the repository, whole";
const W_GET: &str = "big stream: GET imagestream";
const W_WATCH: &str = "big stream: PUT response -> watch event";

/// Metric names must be static; the slices are always tenths.
const SLICE_NAMES: [&str; SLICES] = [
    "tags/s, slice 1/10",
    "tags/s, slice 2/10",
    "tags/s, slice 3/10",
    "tags/s, slice 4/10",
    "tags/s, slice 5/10",
    "tags/s, slice 6/10",
    "tags/s, slice 7/10",
    "tags/s, slice 8/10",
    "tags/s, slice 9/10",
    "tags/s, slice 10/10",
];

/// Zero-padded so the registries' lexical tag order is the push order.
fn tag(i: usize) -> String {
    format!("t{i:06}")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn num(v: f64) -> String {
    crate::report::num(v)
}

/// The parts of an ImageStream this workload checks; everything else is skipped unparsed
/// (events of a 100,000-tag stream are tens of MB each).
#[derive(Deserialize)]
struct StreamDoc {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    status: StreamStatus,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
}

#[derive(Deserialize, Default)]
struct StreamStatus {
    #[serde(default)]
    tags: Vec<TagHistory>,
}

#[derive(Deserialize)]
struct TagHistory {
    tag: String,
    #[serde(default)]
    items: Vec<HistoryItem>,
}

#[derive(Deserialize)]
struct HistoryItem {
    #[serde(default)]
    image: String,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: StreamDoc,
}

/// Pushes `manifests[first + i]` to `tag(tags.start + i)` for every tag at concurrency 8,
/// counting each success in `counts`; returns the batch and how many pushes were made (the
/// guard, when given, skips the rest once berth's RSS passes the cap).
async fn push_batch(
    reg: &Registry,
    manifests: &Arc<Vec<Blob>>,
    first: usize,
    tags: Range<usize>,
    counts: &Arc<Vec<AtomicU32>>,
    guard: Option<Arc<RssGuard>>,
) -> (Batch, usize) {
    let done = Arc::new(AtomicUsize::new(0));
    let (r, m, c, d) = (reg.clone(), manifests.clone(), counts.clone(), done.clone());
    let lo = tags.start;
    let b = stats::run(tags.len(), CONCURRENCY, move |i| {
        let (r, m, c, d, g) = (r.clone(), m.clone(), c.clone(), d.clone(), guard.clone());
        async move {
            if g.as_ref().is_some_and(|g| g.over()) {
                return Ok(());
            }
            r.put_manifest(REPO, &tag(lo + i), &m[first + i]).await?;
            c[lo + i].fetch_add(1, Ordering::Relaxed);
            d.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    })
    .await;
    let done = done.load(Ordering::Relaxed);
    (b, done)
}

/// The whole tag list, following `Link` (berth pages at its maximum page size; the peer
/// answers everything at once).
async fn list_repo(reg: &Registry) -> OpResult<Vec<String>> {
    let mut url = Some(format!("{}/v2/{REPO}/tags/list", reg.base));
    let mut tags = Vec::new();
    let mut pages = 0;
    while let Some(u) = url {
        let (page, next) = reg.tags_page(&u).await?;
        tags.extend(page);
        url = next;
        pages += 1;
        if pages > 100_000 {
            return Err("tags/list: too many pages".into());
        }
    }
    Ok(tags)
}

/// Checks berth's image stream against the pushes that succeeded (`counts[i]` to `tag(i)`, each
/// one history entry); returns its resourceVersion.
fn check_stream(body: &[u8], counts: &[AtomicU32]) -> OpResult<String> {
    let doc: StreamDoc = serde_json::from_slice(body).map_err(|e| format!("imagestream: {e}"))?;
    let want = counts
        .iter()
        .filter(|c| c.load(Ordering::Relaxed) > 0)
        .count();
    if doc.status.tags.len() != want {
        return Err(format!(
            "imagestream: {} tags, wanted {want}",
            doc.status.tags.len()
        ));
    }
    for t in &doc.status.tags {
        let want = t
            .tag
            .strip_prefix('t')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|i| counts.get(i))
            .map(|c| c.load(Ordering::Relaxed) as usize)
            .ok_or_else(|| format!("imagestream: unexpected tag {}", t.tag))?;
        if t.items.len() != want {
            return Err(format!(
                "imagestream: tag {} has {} history entries, wanted {want}",
                t.tag,
                t.items.len()
            ));
        }
    }
    if doc.metadata.resource_version.is_empty() {
        return Err("imagestream without resourceVersion".into());
    }
    Ok(doc.metadata.resource_version)
}

/// A watch response read line by line as it arrives: one JSON event per line, never the whole
/// stream in memory.
struct WatchLines {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// Bytes of `buf` known to hold no newline, so a line of many chunks is scanned once.
    scanned: usize,
    /// When the last chunk arrived: the chunk that completed the line returned next.
    arrived: Instant,
}

impl WatchLines {
    async fn open(reg: &Registry, url: &str) -> OpResult<Option<WatchLines>> {
        let resp = reg
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("watch: {e}"))?;
        if resp.status() == reqwest::StatusCode::GONE {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(format!("watch: status {}", resp.status()));
        }
        Ok(Some(WatchLines {
            resp,
            buf: Vec::new(),
            scanned: 0,
            arrived: Instant::now(),
        }))
    }

    /// The next non-empty line and when its last byte arrived.
    async fn next_line(&mut self) -> OpResult<(Instant, Vec<u8>)> {
        loop {
            if let Some(p) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=self.scanned + p).collect();
                self.scanned = 0;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok((self.arrived, line));
            }
            self.scanned = self.buf.len();
            match tokio::time::timeout(LINE_WAIT, self.resp.chunk()).await {
                Err(_) => return Err(format!("no watch event within {LINE_WAIT:?}")),
                Ok(Err(e)) => return Err(format!("watch: {e}")),
                Ok(Ok(None)) => return Err("watch ended".into()),
                Ok(Ok(Some(c))) => {
                    self.arrived = Instant::now();
                    self.buf.extend_from_slice(&c);
                }
            }
        }
    }
}

/// Whether a watch line is the event of `tag` now pointing at `digest`.
fn shows(line: &[u8], tag: &str, digest: &str) -> OpResult<bool> {
    let ev: WatchEvent = match serde_json::from_slice(line) {
        Ok(ev) => ev,
        // An ERROR event's object is a Status, which does not parse as a stream.
        Err(e) => {
            let v: serde_json::Value =
                serde_json::from_slice(line).map_err(|_| format!("watch line: {e}"))?;
            return Err(if v["type"] == "ERROR" {
                format!("watch error event: {}", v["object"])
            } else {
                format!("watch line: {e}")
            });
        }
    };
    Ok(matches!(ev.kind.as_str(), "MODIFIED" | "ADDED")
        && ev.object.metadata.name == STREAM
        && ev
            .object
            .status
            .tags
            .iter()
            .any(|t| t.tag == tag && t.items.first().is_some_and(|i| i.image == digest)))
}

/// Opens a watch on the stream from `rv`, then pushes each manifest to a new tag one at a time,
/// timing from the PUT's response to the arrival of the event that shows the tag.
async fn watch_latency(reg: &Registry, rv: &str, manifests: &[Blob]) -> OpResult<Vec<f64>> {
    let api = format!(
        "{}/apis/image.openshift.io/v1/namespaces/{NAMESPACE}/imagestreams",
        reg.base
    );
    // The server's default timeout (30 s) is shorter than 50 pushes into a huge stream.
    let query = format!("watch=true&fieldSelector=metadata.name%3D{STREAM}&timeoutSeconds=3600");
    let mut watch =
        match WatchLines::open(reg, &format!("{api}?{query}&resourceVersion={rv}")).await? {
            Some(w) => w,
            None => {
                // 410: berth's backlog budget already dropped `rv` (each event is the whole
                // stream). Start from the current state instead; its ADDED event is read here,
                // before any clock starts.
                let mut w = WatchLines::open(reg, &format!("{api}?{query}"))
                    .await?
                    .ok_or("watch: 410 Gone even without resourceVersion")?;
                w.next_line().await?;
                w
            }
        };
    let mut lat = Vec::with_capacity(manifests.len());
    for (i, m) in manifests.iter().enumerate() {
        let tag = format!("w{i:04}");
        reg.put_manifest(REPO, &tag, m).await?;
        let answered = Instant::now();
        loop {
            let (arrived, line) = watch.next_line().await?;
            if shows(&line, &tag, &m.digest)? {
                // An event that came before the response counts as 0.
                lat.push(ms(arrived.saturating_duration_since(answered)));
                break;
            }
        }
    }
    Ok(lat)
}

impl Bench {
    /// Workload 9: see the module comment and BENCHMARKS.md.
    pub async fn big_stream(&mut self) {
        let n = self.plan.big_tags;
        let (history_tags, rounds) = (
            self.plan.big_history_tags.min(n),
            self.plan.big_history_rounds,
        );
        let watched = self.plan.big_watch;
        let slice_m: Vec<Metric> = SLICE_NAMES
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let m = Metric::higher("9", W_PUSH, name);
                if k == SLICES - 1 {
                    m.target(TARGET_VS_PEER)
                } else {
                    m.uncompared()
                }
            })
            .collect();
        let all_m = Metric::higher("9", W_PUSH, "tags/s, all slices").uncompared();
        let drift_m = Metric::higher("9", W_PUSH, "last/first slice")
            .note("— (within each server; target: berth ≥ 0.8)");
        let hist_first = Metric::higher("9", W_HISTORY, "manifests/s, first round").uncompared();
        let hist_last = Metric::higher("9", W_HISTORY, "manifests/s, last round").uncompared();
        let hist_all = Metric::higher("9", W_HISTORY, "manifests/s, all rounds").uncompared();
        let hwm_m = Metric::lower("9", W_MEMORY, "VmHWM MiB").uncompared();
        let list_m = Metric::lower("9", W_LIST, "ms");
        let get_m = Metric::lower("9", W_GET, "ms").uncompared();
        let get_mb = Metric::higher("9", W_GET, "MB of JSON").uncompared();
        let watch_p50 = Metric::lower("9", W_WATCH, "p50 ms").uncompared();
        let watch_p90 = Metric::lower("9", W_WATCH, "p90 ms").uncompared();
        let watch_max = Metric::lower("9", W_WATCH, "max ms").uncompared();
        log(&format!(
            "workload 9: {n} new tags into {REPO}, then {history_tags} tags x {rounds} rounds of history, then {watched} watched pushes"
        ));

        // Made and hashed before any clock starts.
        let layer = Blob::new(random_bytes(900, 1024));
        let config = make_image(901, 16).config;
        let make = |what: &str, count: usize| -> Arc<Vec<Blob>> {
            Arc::new(
                (0..count)
                    .map(|i| manifest_for(&config, &layer, Some(&format!("{what}-{i}"))))
                    .collect(),
            )
        };
        let fresh = make("new", n);
        let history = make("history", history_tags * rounds);
        let watch_manifests = make("watch", watched);

        let regs = self.regs.clone();
        let mut live = vec![true; regs.len()];
        for (si, (kind, reg)) in regs.iter().enumerate() {
            for blob in [&config, &layer] {
                if let Err(e) = reg.push_blob(REPO, blob.data.clone(), &blob.digest).await {
                    self.results.fail(&slice_m[0], *kind, 1, Some(e));
                    live[si] = false;
                }
            }
        }
        // Successful pushes per server and tag: what the reads must show.
        let counts: Vec<Arc<Vec<AtomicU32>>> = regs
            .iter()
            .map(|_| Arc::new((0..n).map(|_| AtomicU32::new(0)).collect()))
            .collect();
        let guard = Arc::new(RssGuard::start(self.berth_pid, self.rss_cap));
        let berth_guard = |kind: Kind| (kind == Kind::Berth).then(|| guard.clone());
        let mut capped = false;
        let cap_mib = self.rss_cap >> 20;
        let cap_note = |after: &str| {
            format!("9: berth's RSS passed the cap of {cap_mib} MiB {after}; later pushes were skipped on both servers")
        };

        // Tenths of the new tags; each slice runs on berth, then on the peer, so both see the
        // same background load at the same repository size.
        let mut slice_rates: Vec<Vec<f64>> = vec![Vec::new(); regs.len()];
        let mut pushed = vec![0usize; regs.len()];
        let mut walls = vec![Duration::ZERO; regs.len()];
        for (k, metric) in slice_m.iter().enumerate() {
            let tags = n * k / SLICES..n * (k + 1) / SLICES;
            if tags.is_empty() || capped {
                continue;
            }
            for (si, (kind, reg)) in regs.iter().enumerate() {
                if !live[si] {
                    continue;
                }
                let (b, done) = push_batch(
                    reg,
                    &fresh,
                    tags.start,
                    tags.clone(),
                    &counts[si],
                    berth_guard(*kind),
                )
                .await;
                self.record_batch(metric, *kind, &b);
                pushed[si] += done;
                walls[si] += b.wall;
                if done > 0 {
                    let rate = done as f64 / b.wall.as_secs_f64();
                    self.results.add(metric, *kind, rate);
                    slice_rates[si].push(rate);
                }
                log(&format!(
                    "  9 slice {}/{SLICES} (tags {}-{}) {}: {:.1} tags/s, VmHWM {:.1} MiB",
                    k + 1,
                    tags.start + 1,
                    tags.end,
                    kind.label(),
                    done as f64 / b.wall.as_secs_f64(),
                    mib(memory_of(self.pid_of(*kind)).0),
                ));
            }
            if guard.over() {
                capped = true;
                let note = cap_note(&format!("in slice {} of the new tags", k + 1));
                self.results.notes.push(note);
            }
        }
        for (si, (kind, _)) in regs.iter().enumerate() {
            if pushed[si] > 0 {
                let rate = pushed[si] as f64 / walls[si].as_secs_f64();
                self.results.add(&all_m, *kind, rate);
            }
            if let (Some(first), Some(last)) = (slice_rates[si].first(), slice_rates[si].last()) {
                if slice_rates[si].len() > 1 {
                    self.results.add(&drift_m, *kind, last / first);
                }
            }
        }

        // History: the first `history_tags` tags re-pushed with new manifests, round by round.
        let mut round_rates: Vec<Vec<f64>> = vec![Vec::new(); regs.len()];
        let mut hist_pushed = vec![0usize; regs.len()];
        let mut hist_walls = vec![Duration::ZERO; regs.len()];
        for round in 0..rounds {
            if capped || history_tags == 0 {
                break;
            }
            for (si, (kind, reg)) in regs.iter().enumerate() {
                if !live[si] {
                    continue;
                }
                let (b, done) = push_batch(
                    reg,
                    &history,
                    round * history_tags,
                    0..history_tags,
                    &counts[si],
                    berth_guard(*kind),
                )
                .await;
                self.record_batch(&hist_all, *kind, &b);
                hist_pushed[si] += done;
                hist_walls[si] += b.wall;
                let rate = done as f64 / b.wall.as_secs_f64();
                if done > 0 {
                    round_rates[si].push(rate);
                }
                log(&format!(
                    "  9 history round {}/{rounds} {}: {rate:.1} manifests/s, VmHWM {:.1} MiB",
                    round + 1,
                    kind.label(),
                    mib(memory_of(self.pid_of(*kind)).0),
                ));
            }
            if guard.over() {
                capped = true;
                let note = cap_note(&format!("in history round {}", round + 1));
                self.results.notes.push(note);
            }
        }
        drop(guard);
        for (si, (kind, _)) in regs.iter().enumerate() {
            if let (Some(first), Some(last)) = (round_rates[si].first(), round_rates[si].last()) {
                self.results.add(&hist_first, *kind, *first);
                self.results.add(&hist_last, *kind, *last);
                let all = hist_pushed[si] as f64 / hist_walls[si].as_secs_f64();
                self.results.add(&hist_all, *kind, all);
            }
        }

        // Reads of the big repository, alternating; the image stream exists on berth only.
        let expected: Vec<Vec<String>> = counts
            .iter()
            .map(|c| {
                (0..n)
                    .filter(|&i| c[i].load(Ordering::Relaxed) > 0)
                    .map(tag)
                    .collect()
            })
            .collect();
        let mut rv = None;
        for rep in 0..self.plan.reps {
            for (si, (kind, reg)) in regs.iter().enumerate() {
                if !live[si] {
                    continue;
                }
                let t = Instant::now();
                match list_repo(reg).await {
                    Ok(mut got) => {
                        let took = ms(t.elapsed());
                        got.sort();
                        if got == expected[si] {
                            self.results.add(&list_m, *kind, took);
                        } else {
                            let e = format!(
                                "tags/list returned {} tags, wanted {}",
                                got.len(),
                                expected[si].len()
                            );
                            self.results.fail(&list_m, *kind, 1, Some(e));
                        }
                    }
                    Err(e) => self.results.fail(&list_m, *kind, 1, Some(e)),
                }
                if *kind != Kind::Berth {
                    continue;
                }
                let url = format!(
                    "{}/apis/image.openshift.io/v1/namespaces/{NAMESPACE}/imagestreams/{STREAM}",
                    reg.base
                );
                let t = Instant::now();
                match reg.get_ok(&url).await {
                    Ok(body) => {
                        let took = t.elapsed();
                        match check_stream(&body, &counts[si]) {
                            Ok(v) => {
                                self.results.add(&get_m, *kind, ms(took));
                                self.results.add(&get_mb, *kind, body.len() as f64 / 1e6);
                                rv = Some(v);
                            }
                            Err(e) => self.results.fail(&get_m, *kind, 1, Some(e)),
                        }
                    }
                    Err(e) => self.results.fail(&get_m, *kind, 1, Some(e)),
                }
            }
            let (hwm, rss) = memory_of(self.pid_of(Kind::Berth));
            log(&format!(
                "  9 reads rep {rep} done; berth VmHWM {:.1} MiB, VmRSS {:.1} MiB",
                mib(hwm),
                mib(rss)
            ));
        }

        let mut watch = Vec::new();
        let berth = regs
            .iter()
            .zip(&live)
            .find(|((k, _), live)| *k == Kind::Berth && **live);
        if let (Some(((kind, reg), _)), Some(rv)) = (berth, rv) {
            match watch_latency(reg, &rv, &watch_manifests).await {
                Ok(lat) => {
                    self.results
                        .add(&watch_p50, *kind, stats::percentile(&lat, 50.0));
                    self.results
                        .add(&watch_p90, *kind, stats::percentile(&lat, 90.0));
                    self.results.add(&watch_max, *kind, stats::max(&lat));
                    watch = lat;
                }
                Err(e) => self.results.fail(&watch_p50, *kind, 1, Some(e)),
            }
            let (hwm, rss) = memory_of(self.pid_of(*kind));
            log(&format!(
                "  9 watch: {} pushes; berth VmHWM {:.1} MiB, VmRSS {:.1} MiB",
                watch.len(),
                mib(hwm),
                mib(rss)
            ));
        }

        // Fresh servers: the high-water mark is this workload's.
        let mut hwm = [0.0f64; 2];
        for (kind, _) in &regs {
            let h = mib(memory_of(self.pid_of(*kind)).0);
            self.results.add(&hwm_m, *kind, h);
            hwm[*kind as usize] = h;
        }

        // The targets, judged on berth's figures.
        let at = if capped {
            format!(
                "{} tags (stopped at the RSS cap)",
                pushed.iter().max().copied().unwrap_or(0)
            )
        } else {
            format!("{n} tags")
        };
        let last_of = |k: Kind| {
            regs.iter()
                .position(|(kk, _)| *kk == k)
                .and_then(|si| slice_rates[si].last().copied())
        };
        let first_of = |k: Kind| {
            regs.iter()
                .position(|(kk, _)| *kk == k)
                .and_then(|si| slice_rates[si].first().copied())
        };
        let mut checks = Vec::new();
        let check = |target: String, figure: String, met: Option<bool>| Check {
            id: "9".into(),
            target,
            figure,
            met,
        };
        checks.push(match (last_of(Kind::Berth), last_of(Kind::Peer)) {
            (Some(b), Some(p)) => check(
                format!("berth push rate at {at} (last 10 % slice) ≥ {TARGET_VS_PEER}× docker-registry's"),
                format!("berth {} tags/s, docker-registry {} tags/s: {}×", num(b), num(p), num(b / p)),
                Some(b / p >= TARGET_VS_PEER),
            ),
            _ => check(
                format!("berth push rate at {at} ≥ {TARGET_VS_PEER}× docker-registry's"),
                "—".into(),
                None,
            ),
        });
        let drift = |k: Kind| Some(last_of(k)? / first_of(k)?);
        checks.push(match (first_of(Kind::Berth), last_of(Kind::Berth)) {
            (Some(f), Some(l)) => check(
                format!("berth last slice ≥ {TARGET_LAST_VS_FIRST}× first slice ({at})"),
                format!(
                    "{} / {} tags/s = {}× (docker-registry: {})",
                    num(l),
                    num(f),
                    num(l / f),
                    drift(Kind::Peer).map_or("—".into(), |d| format!("{}×", num(d)))
                ),
                Some(l / f >= TARGET_LAST_VS_FIRST),
            ),
            _ => check(
                format!("berth last slice ≥ {TARGET_LAST_VS_FIRST}× first slice"),
                "—".into(),
                None,
            ),
        });
        let (b_hwm, p_hwm) = (hwm[Kind::Berth as usize], hwm[Kind::Peer as usize]);
        checks.push(check(
            format!("berth VmHWM ≤ {TARGET_HWM_MIB} MiB through workload 9"),
            format!("{} MiB (docker-registry: {} MiB)", num(b_hwm), num(p_hwm)),
            (b_hwm > 0.0).then_some(b_hwm <= TARGET_HWM_MIB),
        ));
        checks.push(if watch.is_empty() {
            check(
                format!("berth push → watch event p50 ≤ {TARGET_WATCH_P50_MS} ms"),
                "—".into(),
                None,
            )
        } else {
            let p50 = stats::percentile(&watch, 50.0);
            check(
                format!("berth push → watch event p50 ≤ {TARGET_WATCH_P50_MS} ms (stream of {at})"),
                format!(
                    "p50 {} ms, p90 {} ms, max {} ms ({} pushes)",
                    num(p50),
                    num(stats::percentile(&watch, 90.0)),
                    num(stats::max(&watch)),
                    watch.len()
                ),
                Some(p50 <= TARGET_WATCH_P50_MS),
            )
        });
        self.results.checks.extend(checks);
    }

    fn pid_of(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Berth => self.berth_pid,
            Kind::Peer => self.peer_pid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_event_shows_the_pushed_tag_on_top() {
        let ev = |kind: &str, image: &str| {
            format!(
                r#"{{"type":"{kind}","object":{{"metadata":{{"name":"big","resourceVersion":"7"}},"status":{{"tags":[{{"tag":"w0001","items":[{{"image":"{image}"}},{{"image":"old"}}]}}]}}}}}}"#
            )
        };
        assert_eq!(
            shows(ev("MODIFIED", "sha256:a").as_bytes(), "w0001", "sha256:a"),
            Ok(true)
        );
        assert_eq!(
            shows(ev("MODIFIED", "old").as_bytes(), "w0001", "sha256:a"),
            Ok(false)
        );
        assert_eq!(
            shows(ev("MODIFIED", "sha256:a").as_bytes(), "w0002", "sha256:a"),
            Ok(false)
        );
        assert_eq!(
            shows(ev("DELETED", "sha256:a").as_bytes(), "w0001", "sha256:a"),
            Ok(false)
        );
        let error = br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","code":410}}"#;
        assert!(shows(error, "w0001", "x")
            .unwrap_err()
            .contains("watch error event"));
    }

    #[test]
    fn stream_check_wants_every_push_as_one_history_entry() {
        let counts: Vec<AtomicU32> = [2, 1, 0].into_iter().map(AtomicU32::new).collect();
        let body = |second: &str| {
            format!(
                r#"{{"metadata":{{"name":"big","resourceVersion":"42"}},"status":{{"tags":[{{"tag":"t000000","items":[{{"image":"a"}},{{"image":"b"}}]}},{{"tag":"t000001","items":[{second}]}}]}}}}"#
            )
        };
        assert_eq!(
            check_stream(body(r#"{"image":"c"}"#).as_bytes(), &counts),
            Ok("42".into())
        );
        assert!(check_stream(body("").as_bytes(), &counts).is_err());
    }
}
