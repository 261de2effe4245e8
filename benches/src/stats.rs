//! Medians, percentiles and the bounded-concurrency runner.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::OpResult;

/// The `p`-th percentile (0..=100) by nearest rank; 0 for no samples.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// The median (mean of the middle two for an even count).
pub fn median(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn min(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn max(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What a batch of operations did.
#[derive(Debug, Default)]
pub struct Batch {
    /// Latency of each successful operation, in milliseconds.
    pub latencies_ms: Vec<f64>,
    pub wall: Duration,
    pub failures: u64,
    pub first_error: Option<String>,
}

impl Batch {
    /// Successful operations per second of wall time.
    pub fn rate(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.wall.as_secs_f64()
    }
    pub fn p(&self, p: f64) -> f64 {
        percentile(&self.latencies_ms, p)
    }
}

/// Runs `op(0..count)` on `concurrency` spawned tasks, or, with `until`, as many operations as
/// start before that instant (so the client's own work, hashing
/// included, spreads over the runtime's threads), timing each operation.
pub async fn run<F, Fut>(count: usize, concurrency: usize, op: F) -> Batch
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = OpResult> + Send + 'static,
{
    run_until(count, None, concurrency, op).await
}

/// Runs operations for `duration` on `concurrency` tasks (see [`run`]).
pub async fn run_for<F, Fut>(duration: Duration, concurrency: usize, op: F) -> Batch
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = OpResult> + Send + 'static,
{
    run_until(usize::MAX, Some(Instant::now() + duration), concurrency, op).await
}

async fn run_until<F, Fut>(count: usize, until: Option<Instant>, concurrency: usize, op: F) -> Batch
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = OpResult> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Batch::default()));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.min(count).max(1))
        .map(|_| {
            let (op, next, out) = (op.clone(), next.clone(), out.clone());
            tokio::spawn(async move {
                let mut local = Vec::new();
                let mut errors = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || until.is_some_and(|u| Instant::now() >= u) {
                        break;
                    }
                    let t = Instant::now();
                    match op(i).await {
                        Ok(()) => local.push(ms(t.elapsed())),
                        Err(e) => errors.push(e),
                    }
                }
                let mut out = out.lock().expect("batch");
                out.latencies_ms.extend(local);
                out.failures += errors.len() as u64;
                if out.first_error.is_none() {
                    out.first_error = errors.into_iter().next();
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let wall = started.elapsed();
    let mut batch = std::mem::take(&mut *out.lock().expect("batch"));
    batch.wall = wall;
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(min(&[2.0, 1.0]), 1.0);
        assert_eq!(max(&[2.0, 1.0]), 2.0);
    }
}
