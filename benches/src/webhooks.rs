//! Workload 10 (berth only): what webhooks cost a push, and how soon they arrive. Pushes go to
//! a namespace with no subscription and to one with 10 (all to a local receiver), alternating
//! repetitions, first one push at a time (the latency a push pays for its subscriptions) and
//! then four at once (the rate when pushes and deliveries share saturated cores); the receiver
//! timestamps each delivery of an istag update, and push → delivery runs from the manifest
//! PUT's answer to the receipt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::client::{make_image, OpResult};
use crate::results::Metric;
use crate::server::Kind;
use crate::stats::{self, ms, percentile, Batch};
use crate::workloads::{log, Bench};

const SUBSCRIPTIONS: usize = 10;
const W1: &str = "push 1 MiB image, conc 1";
const W4: &str = "push 1 MiB image, conc 4";
const SECRET: &str = "whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";

/// Receipt times of istag updates, by image digest.
type Seen = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// A minimal HTTP/1.1 receiver (keep-alive, Content-Length bodies, 204 to everything). It
/// runs on a thread and runtime of its own, as a receiver elsewhere would: on the bench's
/// runtime its tasks would queue with the pushing client's, and any delay that added to the
/// next push inside the bench would count as berth's cost.
async fn receiver() -> std::io::Result<(String, Seen)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    std::thread::Builder::new()
        .name("bench-receiver".into())
        .spawn(move || runtime.block_on(serve(listener, s)))?;
    Ok((url, seen))
}

async fn serve(listener: std::net::TcpListener, s: Seen) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    while let Ok((conn, _)) = listener.accept().await {
        let s = s.clone();
        tokio::spawn(async move {
            let (r, mut w) = conn.into_split();
            let mut r = BufReader::new(r);
            loop {
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                let at = Instant::now();
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    if v["type"] == "io.berth.imagestreamtag.updated" {
                        if let Some(image) = v["data"]["image"].as_str() {
                            s.lock()
                                .unwrap()
                                .entry(image.to_string())
                                .or_default()
                                .push(at);
                        }
                    }
                }
                let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                if w.write_all(ok).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The metrics of one concurrency.
struct Row {
    conc: usize,
    zero: Metric,
    ten: Metric,
    ratio: Metric,
}

impl Bench {
    pub async fn webhooks(&mut self) {
        let Some((_, reg)) = self.regs.iter().find(|(k, _)| *k == Kind::Berth).cloned() else {
            return;
        };
        // One push at a time measures what subscriptions add to a push's latency; four at
        // once saturate the two cores, where the deliveries (and the bench's own receiver)
        // compete with the pushes for CPU.
        let rows = [
            Row {
                conc: 1,
                zero: Metric::lower("10", W1, "p50 ms, 0 subscriptions").uncompared(),
                ten: Metric::lower("10", W1, "p50 ms, 10 subscriptions").uncompared(),
                ratio: Metric::higher(
                    "10",
                    W1,
                    "push latency: p50 0 subs / p50 10 subs (target >= 0.9)",
                )
                .uncompared(),
            },
            Row {
                conc: 4,
                zero: Metric::lower("10", W4, "p50 ms, 0 subscriptions").uncompared(),
                ten: Metric::lower("10", W4, "p50 ms, 10 subscriptions").uncompared(),
                ratio: Metric::higher("10", W4, "rate: 10 subs / 0 subs").uncompared(),
            },
        ];
        let d50 = Metric::lower("10", "push -> webhook delivery", "p50 ms").uncompared();
        let d99 = Metric::lower("10", "push -> webhook delivery", "p99 ms").uncompared();
        let (url, seen) = match receiver().await {
            Ok(r) => r,
            Err(e) => {
                self.results
                    .fail(&rows[0].zero, Kind::Berth, 1, Some(e.to_string()));
                return;
            }
        };
        for i in 0..SUBSCRIPTIONS {
            let body = json!({"kind": "Webhook", "apiVersion": "berth.io/v1",
                "metadata": {"name": format!("hook-{i}")},
                "spec": {"url": url, "secret": SECRET}});
            let r = reg
                .client
                .post(format!(
                    "{}/apis/berth.io/v1/namespaces/wh10/webhooks",
                    reg.base
                ))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await;
            if !matches!(&r, Ok(r) if r.status().as_u16() == 201) {
                self.results.fail(
                    &rows[0].ten,
                    Kind::Berth,
                    1,
                    Some(format!("creating a webhook: {r:?}")),
                );
                return;
            }
        }
        let n = self.plan.images;
        log(&format!("workload 10: {n} pushes with 0 and with {SUBSCRIPTIONS} subscriptions x {} repetitions, one at a time and 4 at once", self.plan.reps));
        let mut delivery = Vec::new();
        for row in &rows {
            for rep in 0..self.plan.reps {
                let mut got = [0.0; 2];
                for (slot, ns) in ["wh0", "wh10"].into_iter().enumerate() {
                    let seed = (10 << 32) + ((row.conc << 28) + ((rep * 2 + slot) << 20)) as u64;
                    let (b, acked) = push_round(&reg, ns, rep, n, row.conc, seed).await;
                    let m = if slot == 0 { &row.zero } else { &row.ten };
                    self.record_batch(m, Kind::Berth, &b);
                    self.results.add(m, Kind::Berth, b.p(50.0));
                    got[slot] = if row.conc == 1 { b.p(50.0) } else { b.rate() };
                    if slot == 1 {
                        let missing = await_deliveries(&acked, &seen, &mut delivery).await;
                        if missing > 0 {
                            self.results.fail(
                                &d50,
                                Kind::Berth,
                                missing as u64,
                                Some(format!("{missing} deliveries missing after 60 s")),
                            );
                        }
                    }
                }
                // Both ratios are below 1 when subscriptions slow pushes down.
                let ratio = if row.conc == 1 {
                    got[0] / got[1]
                } else {
                    got[1] / got[0]
                };
                if ratio.is_finite() && ratio > 0.0 {
                    self.results.add(&row.ratio, Kind::Berth, ratio);
                }
                log(&format!(
                    "  10 conc {} rep {rep}: 0 vs 10 subscriptions: {:.1} vs {:.1} {}",
                    row.conc,
                    got[0],
                    got[1],
                    if row.conc == 1 { "ms p50" } else { "pushes/s" }
                ));
            }
        }
        if !delivery.is_empty() {
            self.results
                .add(&d50, Kind::Berth, percentile(&delivery, 50.0));
            self.results
                .add(&d99, Kind::Berth, percentile(&delivery, 99.0));
        }
    }
}

/// Pushes `n` distinct images into `ns/app-REP`, `conc` at a time; returns the batch and when
/// each manifest PUT was answered, by digest.
async fn push_round(
    reg: &crate::client::Registry,
    ns: &'static str,
    rep: usize,
    n: usize,
    conc: usize,
    seed: u64,
) -> (Batch, Acked) {
    let images: Arc<Vec<_>> = Arc::new(
        (0..n)
            .map(|i| make_image(seed + i as u64, 1 << 20))
            .collect(),
    );
    let acked: Acked = Arc::default();
    let (r, a) = (reg.clone(), acked.clone());
    let b = stats::run(n, conc, move |i| {
        let (reg, images, acked) = (r.clone(), images.clone(), a.clone());
        async move {
            let image = &images[i];
            reg.push_image(&format!("{ns}/app-{rep}"), &format!("c{conc}-t{i}"), image)
                .await?;
            acked
                .lock()
                .unwrap()
                .insert(image.manifest.digest.clone(), Instant::now());
            OpResult::Ok(())
        }
    })
    .await;
    (b, acked)
}

type Acked = Arc<Mutex<HashMap<String, Instant>>>;

/// Waits (up to 60 s) for every subscription's istag update of every acked push, adds each
/// push → receipt latency to `delivery`; returns how many are missing.
async fn await_deliveries(acked: &Acked, seen: &Seen, delivery: &mut Vec<f64>) -> usize {
    let want = acked.lock().unwrap().len() * SUBSCRIPTIONS;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: usize = seen.lock().unwrap().values().map(Vec::len).sum();
        if got >= want || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut seen = seen.lock().unwrap();
    let mut found = 0;
    for (digest, at) in acked.lock().unwrap().iter() {
        for r in seen.remove(digest).unwrap_or_default() {
            delivery.push(ms(r.saturating_duration_since(*at)));
            found += 1;
        }
    }
    want.saturating_sub(found)
}
