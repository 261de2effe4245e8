//! Workload 13 (issue 18): berth as two replicas sharing a 3-member etcd and a Garage bucket,
//! against one replica on the same stores and against the embedded default (sled and files),
//! all on this machine. berth only: the question is what replicas cost and whether every
//! answer stays right when a push lands on one replica and the pull on the other, not a race
//! with the peer (which has no shared-metadata mode to compare with).
//!
//! etcd is Debian's `etcd` (`ETCD_BIN`), started by the storage crate's test harness; Garage
//! as in workload 12. Without either, the workload reports itself skipped.

use std::path::Path;
use std::sync::Arc;

use berth_storage::etcd_cluster::EtcdCluster;

use crate::client::{http_client, make_image, Image, Registry};
use crate::results::Metric;
use crate::s3::Garage;
use crate::server::{self, Kind, Server};
use crate::stats;
use crate::workloads::{log, seed, Bench};

const MIB: usize = 1 << 20;
const CONCURRENCY: usize = 10;

/// One way of running berth: its processes and a client for each.
struct Setup {
    label: &'static str,
    /// Metric names: images/s and p50 ms, for this setup.
    units: [&'static str; 2],
    servers: Vec<Server>,
    regs: Vec<Registry>,
}

/// A setup's label and the names of its metrics, all static (the results table keeps
/// `&'static str`s).
macro_rules! setup {
    ($label:literal, $prefix:expr, $replicas:literal) => {
        (
            $label,
            [concat!("images/s, ", $label), concat!("p50 ms, ", $label)],
            $prefix,
            $replicas,
        )
    };
}

/// berth's flags for metadata under `prefix` in `etcd` and blobs under `prefix` in Garage's
/// bucket, so each setup starts empty.
fn shared_store_flags(etcd: &EtcdCluster, garage: &Garage, prefix: &str) -> Vec<String> {
    let mut flags = garage.berth_flags();
    if let Some(store) = flags.iter_mut().find(|f| f.starts_with("s3://")) {
        *store = format!("s3://{}/{prefix}", crate::s3::BERTH_BUCKET);
    }
    flags.push("--metadata-store".into());
    flags.push(etcd.url(prefix));
    flags
}

fn start_setups(
    bin: &Path,
    work: &Path,
    wrapper: &[String],
    etcd: &EtcdCluster,
    garage: &Garage,
) -> Result<Vec<Setup>, String> {
    let env = garage.berth_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client = http_client();
    let mut setups = Vec::new();
    for (label, units, prefix, replicas) in [
        setup!("embedded (sled + files)", None, 1),
        setup!("1 replica on etcd + Garage", Some("bench13-one"), 1),
        setup!("2 replicas on etcd + Garage", Some("bench13-two"), 2),
    ] {
        let flags = prefix
            .map(|p| shared_store_flags(etcd, garage, p))
            .unwrap_or_default();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let servers = (0..replicas)
            .map(|_| server::start_berth_env(bin, work, wrapper, &flags, &env))
            .collect::<Result<Vec<_>, _>>()?;
        let regs = servers
            .iter()
            .map(|s| Registry::new(client.clone(), s.base.clone()))
            .collect();
        setups.push(Setup {
            label,
            units,
            servers,
            regs,
        });
    }
    Ok(setups)
}

impl Bench {
    /// Workload 13: 1 MiB images pushed at concurrency 10 and pulled back at once, through
    /// each setup; with two replicas, image `i` is pushed through replica `i mod 2` and pulled
    /// through the other one.
    pub async fn cluster(
        &mut self,
        bin: &Path,
        work: &Path,
        wrapper: &[String],
        etcd: &EtcdCluster,
        garage: &Garage,
    ) -> Vec<(String, (u64, u64))> {
        let setups = match start_setups(bin, work, wrapper, etcd, garage) {
            Ok(s) => s,
            Err(e) => {
                let m = Metric::higher("13", "replicas", "setup").uncompared();
                self.results.fail(&m, Kind::Berth, 1, Some(e));
                return Vec::new();
            }
        };
        let n = self.plan.images;
        log(&format!(
            "workload 13: {n} images pushed then pulled through each of {} setups x {} repetitions",
            setups.len(),
            self.plan.reps
        ));
        const PUSH: &str = "replicas: push 1 MiB images, conc 10";
        const PULL: &str = "replicas: pull them back (other replica), conc 10";
        let mut rates = vec![[Vec::new(), Vec::new()]; setups.len()];
        for rep in 0..self.plan.reps {
            for (s, setup) in setups.iter().enumerate() {
                let images: Arc<Vec<Image>> = Arc::new(
                    (0..n)
                        .map(|i| make_image(seed(13, rep * setups.len() + s, Kind::Berth, i), MIB))
                        .collect(),
                );
                let regs = Arc::new(setup.regs.clone());
                let (r, imgs) = (regs.clone(), images.clone());
                let push = stats::run(n, CONCURRENCY, move |i| {
                    let (regs, images) = (r.clone(), imgs.clone());
                    async move {
                        let reg = &regs[i % regs.len()];
                        reg.push_image(&format!("bench/r13-{rep}"), &format!("t{i}"), &images[i])
                            .await
                    }
                })
                .await;
                let (r, imgs) = (regs.clone(), images.clone());
                let pull = stats::run(n, CONCURRENCY, move |i| {
                    let (regs, images) = (r.clone(), imgs.clone());
                    async move {
                        let reg = &regs[(i + 1) % regs.len()];
                        reg.pull_image(&format!("bench/r13-{rep}"), &format!("t{i}"), &images[i])
                            .await
                    }
                })
                .await;
                for (what, b) in [(PUSH, &push), (PULL, &pull)] {
                    let rate = Metric::higher("13", what, setup.units[0]).uncompared();
                    let p50 = Metric::lower("13", what, setup.units[1]).uncompared();
                    self.record_batch(&rate, Kind::Berth, b);
                    self.results.add(&rate, Kind::Berth, b.rate());
                    self.results.add(&p50, Kind::Berth, b.p(50.0));
                }
                rates[s][0].push(push.rate());
                rates[s][1].push(pull.rate());
                log(&format!(
                    "  13 rep {rep} {}: push {:.1} images/s, pull {:.1} images/s",
                    setup.label,
                    push.rate(),
                    pull.rate()
                ));
            }
        }
        // Same-repetition ratios, so the machine's load at the time cancels out.
        if let [_, one, two] = rates.as_slice() {
            for (k, what) in [(0, PUSH), (1, PULL)] {
                let m = Metric::higher("13", what, "rate, 2 replicas / 1 replica").uncompared();
                for (a, b) in two[k].iter().zip(&one[k]) {
                    self.results.add(&m, Kind::Berth, a / b);
                }
            }
        }
        setups
            .iter()
            .flat_map(|s| {
                s.servers
                    .iter()
                    .map(|srv| (format!("13 {}", s.label), srv.memory()))
            })
            .collect()
    }
}
