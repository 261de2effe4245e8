//! berth-bench: berth and CNCF Distribution (Debian's docker-registry 2.8) side by side on the
//! same machine, in the same run, repetitions alternating A B A B. See BENCHMARKS.md.
//!
//! ```sh
//! cargo build --release -p berth -p berth-bench
//! cargo run --release -p berth-bench -- [--quick] [--out benches/results]
//! ```

mod big_stream;
mod client;
mod cluster;
mod gc;
mod limits;
mod report;
mod results;
mod s3;
mod server;
mod stats;
mod webhooks;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use client::Registry;
use report::{MemorySample, Report};
use server::{Kind, Server};
use workloads::{Bench, Plan};

#[derive(Parser, Debug)]
#[command(about = "Benchmarks berth against CNCF Distribution (docker-registry) side by side")]
struct Args {
    /// Small sizes and counts: a smoke test for CI (about a minute).
    #[arg(long)]
    quick: bool,
    /// The berth binary; by default `berth` next to this program in the same target directory.
    #[arg(long)]
    berth_bin: Option<PathBuf>,
    /// The peer registry binary.
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    peer_bin: PathBuf,
    /// Where the servers' fresh data directories (and the fsync probe) go; one filesystem.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Write results.json and chart.svg here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Workloads to run, e.g. `1,4,9` (1-3 run together); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<u32>,
    /// Repetitions per server of the workloads other than 1-3 (default 5, quick 2).
    #[arg(long)]
    reps: Option<usize>,
    /// Repetitions per server of workloads 1-3 (default 3, quick 2).
    #[arg(long)]
    big_reps: Option<usize>,
    /// Tags of workload 6's repository (default 10000, quick 500).
    #[arg(long)]
    tags: Option<usize>,
    /// Tags x history entries of workload 8's image stream (default 1000x10, quick 100x3).
    #[arg(long, value_parser = parse_dims)]
    stream: Option<(usize, usize)>,
    /// New tags workload 9 pushes into one repository (default 10000, quick 300).
    #[arg(long)]
    big_tags: Option<usize>,
    /// Workload 9's history: TAGSxROUNDS re-pushes after the new tags (default 1000x10, quick
    /// 30x3).
    #[arg(long, value_parser = parse_dims)]
    big_history: Option<(usize, usize)>,
    /// Tags workload 9 pushes one at a time while watching the stream (default 50, quick 20).
    #[arg(long)]
    big_watch: Option<usize>,
    /// Workload 9 at issue 12's full size: 100000 tags, history 1000x10 (overrides --quick's
    /// sizes for 9; --big-tags and --big-history still override it).
    #[arg(long)]
    big: bool,
    /// Unreferenced blobs each of workload 11's GC passes sweeps (default 10000, quick 300).
    #[arg(long)]
    gc_blobs: Option<usize>,
    /// Setups of workloads 6, 8 and 9 stop pushing once berth's RSS passes this (MiB): they
    /// keep one copy of the whole stream per watch event, and the machine is shared.
    #[arg(long, default_value_t = 3072)]
    rss_cap_mib: u64,
    /// A command put in front of berth, for profiling: e.g. `--berth-wrapper 'perf record -g -o
    /// /tmp/perf.data --'` or `--berth-wrapper 'valgrind --tool=massif'`.
    #[arg(long, allow_hyphen_values = true)]
    berth_wrapper: Option<String>,
    /// Skip measuring the machine limits.
    #[arg(long)]
    no_limits: bool,
    /// Workload 12 with blob GETs answered by a 307 to a presigned Garage URL, by both
    /// registries (berth's `--blob-redirect`, docker-registry's default redirect); the pull is
    /// reported as its own row
    #[arg(long)]
    s3_redirect: bool,
    /// Only redraw `--out`/chart.svg from this results.json; runs nothing.
    #[arg(long)]
    replot: Option<PathBuf>,
}

fn parse_dims(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once('x')
        .ok_or("expected TAGSxHISTORY, e.g. 1000x10")?;
    let n = |v: &str| v.trim().parse::<usize>().map_err(|e| e.to_string());
    Ok((n(a)?.max(1), n(b)?.max(1)))
}

/// `--berth-wrapper`, split on spaces.
fn wrapper(args: &Args) -> Vec<String> {
    args.berth_wrapper
        .as_deref()
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Starts a fresh pair: berth first, then the peer.
fn start_pair(
    args: &Args,
    berth_bin: &std::path::Path,
    work: &std::path::Path,
) -> Result<Vec<Server>, String> {
    let berth = server::start_berth(berth_bin, work, &wrapper(args), &[])?;
    let peer = server::start_peer(&args.peer_bin, work)?;
    for s in [&berth, &peer] {
        eprintln!("{} at {} (pid {})", s.kind.label(), s.base, s.pid());
    }
    Ok(vec![berth, peer])
}

/// A one-node Garage, and berth then the peer with their blobs in its two buckets; `None`
/// without a Garage binary.
fn start_s3(
    args: &Args,
    berth_bin: &std::path::Path,
    work: &std::path::Path,
) -> Result<Option<(s3::Garage, Vec<Server>)>, String> {
    if !s3::garage_binary().exists() {
        return Ok(None);
    }
    let garage = s3::Garage::start(work)?;
    let mut flags = garage.berth_flags();
    if args.s3_redirect {
        flags.push("--blob-redirect".into());
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let env = garage.berth_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let berth = server::start_berth_env(berth_bin, work, &wrapper(args), &flags, &env)?;
    let peer = server::start_peer_with(&args.peer_bin, work, |_| {
        garage.peer_storage(args.s3_redirect)
    })?;
    for s in [&berth, &peer] {
        eprintln!(
            "{} on Garage at {} (pid {})",
            s.kind.label(),
            s.base,
            s.pid()
        );
    }
    Ok(Some((garage, vec![berth, peer])))
}

/// The registries' clients, and the (berth, peer) process ids.
fn registries(servers: &[Server], http: &reqwest::Client) -> (Vec<(Kind, Registry)>, (u32, u32)) {
    let regs = servers
        .iter()
        .map(|s| (s.kind, Registry::new(http.clone(), s.base.clone())))
        .collect();
    let pid = |k: Kind| servers.iter().find(|s| s.kind == k).map_or(0, Server::pid);
    (regs, (pid(Kind::Berth), pid(Kind::Peer)))
}

fn default_berth_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berth")))
        .unwrap_or_else(|| PathBuf::from("target/release/berth"))
}

fn peer_version(bin: &std::path::Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.split_whitespace()
                .last()
                .map(|v| format!("docker-registry {v}"))
        })
        .unwrap_or_else(|| "docker-registry".to_string())
}

/// The machine's 1-minute load average (0 when unknown).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn memory_sample(after: &str, servers: &[Server]) -> MemorySample {
    let get = |k: Kind| {
        servers
            .iter()
            .find(|s| s.kind == k)
            .map(Server::memory)
            .unwrap_or((0, 0))
    };
    let (berth_hwm, berth_rss) = get(Kind::Berth);
    let (peer_hwm, peer_rss) = get(Kind::Peer);
    let load1 = load_average();
    MemorySample {
        after: after.to_string(),
        load1,
        berth_hwm,
        berth_rss,
        peer_hwm,
        peer_rss,
    }
}

fn plan_line(p: &Plan) -> String {
    format!(
        "Sizes: 1-3 one {} MiB layer, {} repetitions per server; 4 {} images per repetition; 5 {} s per repetition; 6 {} tags; 7 {} operations per repetition; 8 {} tags x {} history entries; 9 {} new tags, then {} tags x {} rounds of history, then {} watched pushes; 11 {} unreferenced blobs per GC pass, {} idle pushes per round; 12 one {} MiB layer ({} repetitions) and {} images on Garage; 13 {} images per setup (embedded, 1 and 2 replicas on etcd + Garage); {} repetitions per server elsewhere.\n",
        p.big_layer >> 20,
        p.big_reps,
        p.images,
        p.manifest_secs,
        p.tags,
        p.mixed_ops,
        p.stream_tags,
        p.stream_history,
        p.big_tags,
        p.big_history_tags,
        p.big_history_rounds,
        p.big_watch,
        p.gc_blobs,
        p.gc_pushes,
        p.s3_layer >> 20,
        p.big_reps,
        p.images,
        p.images,
        p.reps
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(json) = &args.replot {
        let out = args.out.clone().unwrap_or_else(|| PathBuf::from("."));
        return match report::replot(json, &out.join("chart.svg")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let started = Instant::now();
    let work = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let berth_bin = args.berth_bin.clone().unwrap_or_else(default_berth_bin);
    if !berth_bin.exists() {
        eprintln!(
            "berth-bench: no berth binary at {} (build it: cargo build --release -p berth, or pass --berth-bin)",
            berth_bin.display()
        );
        return ExitCode::FAILURE;
    }
    if !args.peer_bin.exists() {
        eprintln!(
            "berth-bench: no peer at {} (apt-get install -y docker-registry, or pass --peer-bin)",
            args.peer_bin.display()
        );
        return ExitCode::FAILURE;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut plan = Plan::new(args.quick);
    if let Some(r) = args.reps {
        plan.reps = r.max(1);
    }
    if let Some(r) = args.big_reps {
        plan.big_reps = r.max(1);
    }
    if let Some(t) = args.tags {
        plan.tags = t.max(1);
    }
    if let Some((t, h)) = args.stream {
        plan.stream_tags = t;
        plan.stream_history = h;
    }
    if args.big {
        plan.big_tags = 100_000;
        plan.big_history_tags = 1000;
        plan.big_history_rounds = 10;
        plan.big_watch = 50;
    }
    if let Some(t) = args.big_tags {
        plan.big_tags = t.max(1);
    }
    if let Some((t, r)) = args.big_history {
        plan.big_history_tags = t;
        plan.big_history_rounds = r;
    }
    if let Some(w) = args.big_watch {
        plan.big_watch = w.max(1);
    }
    if let Some(n) = args.gc_blobs {
        plan.gc_blobs = n.max(1);
    }
    plan.s3_redirect = args.s3_redirect;
    // History re-pushes tags that exist.
    plan.big_history_tags = plan.big_history_tags.min(plan.big_tags);
    let wanted = |w: u32| args.only.is_empty() || args.only.contains(&w);

    let limits = if args.no_limits {
        None
    } else {
        eprintln!("measuring machine limits...");
        match limits::measure(&work, args.quick).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("berth-bench: machine limits: {e}");
                return ExitCode::FAILURE;
            }
        }
    };

    let mut servers = match start_pair(&args, &berth_bin, &work) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (regs, pids) = registries(&servers, &client::http_client());
    let mut bench = Bench::new(plan.clone(), regs, pids, args.rss_cap_mib << 20);
    let mut memory = vec![memory_sample("start", &servers)];

    bench.setup_pool().await;
    memory.push(memory_sample("setup and warm-up", &servers));
    if wanted(1) || wanted(2) || wanted(3) {
        bench.big_layer().await;
        memory.push(memory_sample("1-3 big layer", &servers));
    }
    if wanted(4) {
        bench.push_images().await;
        memory.push(memory_sample("4 push images", &servers));
    }
    if wanted(5) {
        bench.manifests().await;
        memory.push(memory_sample("5 manifests", &servers));
    }
    if wanted(7) {
        bench.mixed().await;
        memory.push(memory_sample("7 mixed", &servers));
    }
    if wanted(10) {
        bench.webhooks().await;
        memory.push(memory_sample("10 webhooks", &servers));
    }
    // 6, 8 and 9 build big image streams; each gets a fresh pair of servers so what they keep
    // in memory does not weigh on the other workloads (and each server's peak is its own).
    for (w, name) in [
        (6, "6 tags/list (fresh servers)"),
        (8, "8 image streams (fresh servers)"),
        (9, "9 big stream (fresh servers)"),
    ] {
        if !wanted(w) {
            continue;
        }
        // Idle keep-alive connections go with the old registries' clients.
        bench.set_servers(Vec::new(), (0, 0));
        drop(servers);
        servers = match start_pair(&args, &berth_bin, &work) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("berth-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        let (regs, pids) = registries(&servers, &client::http_client());
        bench.set_servers(regs, pids);
        match w {
            6 => bench.tags_list().await,
            8 => bench.image_streams().await,
            _ => bench.big_stream().await,
        }
        memory.push(memory_sample(name, &servers));
    }

    // 11 needs berth with its own GC settings, and nothing of the peer's.
    if wanted(11) {
        bench.set_servers(Vec::new(), (0, 0));
        drop(servers);
        servers = match server::start_berth(&berth_bin, &work, &wrapper(&args), gc::BERTH_FLAGS) {
            Ok(s) => vec![s],
            Err(e) => {
                eprintln!("berth-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "berth at {} (pid {}), GC on demand",
            servers[0].base,
            servers[0].pid()
        );
        let (regs, pids) = registries(&servers, &client::http_client());
        bench.set_servers(regs, pids);
        bench.gc(&servers[0].data_dir()).await;
        memory.push(memory_sample("11 gc (fresh berth only)", &servers));
    }

    // 12 needs both registries on a Garage node of its own.
    if wanted(12) {
        bench.set_servers(Vec::new(), (0, 0));
        drop(servers);
        servers = Vec::new();
        match start_s3(&args, &berth_bin, &work) {
            Ok(None) => {
                eprintln!("workload 12 skipped: no Garage binary");
                bench.results.notes.push(format!(
                    "12: skipped, no Garage binary at {} (scripts/install-deps.sh builds it)",
                    s3::garage_binary().display()
                ));
            }
            Ok(Some((garage, pair))) => {
                let (regs, pids) = registries(&pair, &client::http_client());
                bench.set_servers(regs, pids);
                bench.s3().await;
                memory.push(memory_sample("12 on Garage (fresh servers)", &pair));
                bench.set_servers(Vec::new(), (0, 0));
                // The registries before the store they write to.
                drop(pair);
                drop(garage);
            }
            Err(e) => {
                eprintln!("berth-bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    // 13 runs berth only, as several processes sharing an etcd cluster and a Garage node.
    if wanted(13) {
        bench.set_servers(Vec::new(), (0, 0));
        drop(servers);
        servers = Vec::new();
        let etcd_bin = berth_storage::etcd_cluster::binary();
        match (etcd_bin.exists(), s3::garage_binary().exists()) {
            (true, true) => {
                let stores = s3::Garage::start(&work).map(|garage| {
                    (
                        garage,
                        berth_storage::etcd_cluster::EtcdCluster::start(3, true),
                    )
                });
                match stores {
                    Ok((garage, etcd)) => {
                        let samples = bench
                            .cluster(&berth_bin, &work, &wrapper(&args), &etcd, &garage)
                            .await;
                        let load1 = load_average();
                        for (after, (hwm, rss)) in samples {
                            memory.push(MemorySample {
                                after,
                                load1,
                                berth_hwm: hwm,
                                berth_rss: rss,
                                peer_hwm: 0,
                                peer_rss: 0,
                            });
                        }
                    }
                    Err(e) => {
                        eprintln!("berth-bench: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            (etcd, garage) => {
                let missing = match (etcd, garage) {
                    (false, false) => "etcd and Garage",
                    (false, true) => "etcd",
                    _ => "Garage",
                };
                eprintln!("workload 13 skipped: no {missing} binary");
                bench.results.notes.push(format!(
                    "13: skipped, no {missing} binary (scripts/install-deps.sh installs them)"
                ));
            }
        }
    }

    let report = Report {
        quick: args.quick,
        cores,
        peer_version: peer_version(&args.peer_bin),
        plan: &plan,
        limits: limits.as_ref(),
        results: &bench.results,
        memory: &memory,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    println!("{}", plan_line(&plan));
    println!("{}", report::tables(&report));
    println!("total time: {:.0} s", report.elapsed_s);
    if !bench.results.errors.is_empty() {
        println!("\nfailures:");
        for e in &bench.results.errors {
            println!("- {e}");
        }
    }
    if let Some(out) = &args.out {
        let written = std::fs::create_dir_all(out)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                report::write_json(&out.join("results.json"), &report).map_err(|e| e.to_string())
            })
            .and_then(|()| {
                let sub = report::subtitle(&report.peer_version, cores, args.quick);
                report::write_chart(&out.join("chart.svg"), &bench.results.rows, &sub)
            });
        match written {
            Ok(()) => println!("wrote {0}/results.json and {0}/chart.svg", out.display()),
            Err(e) => {
                eprintln!("berth-bench: writing {}: {e}", out.display());
                return ExitCode::FAILURE;
            }
        }
    }
    drop(servers);
    // A wrong or failed answer from berth fails the run (the smoke test's point); the peer's
    // failures are reported only.
    if bench.results.berth_failures() > 0 {
        eprintln!(
            "berth-bench: berth failed {} operations",
            bench.results.berth_failures()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
