//! berth-conformance: replays the OCI distribution-spec conformance workflows
//! (legacy v1.1.1 suite and the 2026 suite's additional cases) against a
//! registry and prints `PASS name` / `FAIL name: reason` per case, then
//! `conformance: N passed, M failed`.

mod blobs;
mod client;
mod data;
mod datasets;
mod discovery;
mod management;
mod ops;
mod pull;
mod push;
mod runner;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use crate::client::Client;
use crate::data::LegacyData;
use crate::ops::Ctx;
use crate::runner::Reporter;

#[derive(Parser)]
#[command(
    version,
    about = "Replay the OCI distribution conformance workflows against a registry"
)]
struct Args {
    /// Base URL of a running registry, e.g. http://127.0.0.1:5000
    #[arg(
        long,
        conflicts_with = "berth_bin",
        required_unless_present = "berth_bin"
    )]
    url: Option<String>,

    /// Start this berth binary (`serve --listen 127.0.0.1:0` on a fresh
    /// temporary data directory), test it, and stop it.
    #[arg(long)]
    berth_bin: Option<PathBuf>,

    /// Namespace of every repository used (`<namespace>/repo`, ...).
    #[arg(long, default_value = "conformance")]
    namespace: String,

    /// Seed of the generated test data.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Run only these workflows (repeatable); default: all.
    #[arg(long, value_enum)]
    only: Vec<Workflow>,

    /// The registry refuses manifests above this many bytes (e.g. berth with metadata on etcd,
    /// whose requests are limited to 1.5 MiB): datasets with larger manifests expect 413.
    #[arg(long)]
    max_manifest_bytes: Option<usize>,

    /// Keep the temporary directory of a started berth even on success.
    #[arg(long)]
    keep: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workflow {
    Pull,
    Push,
    Discovery,
    Management,
    EmptyRepo,
    Blobs,
    Datasets,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut rep = Reporter::default();

    let server = match &args.berth_bin {
        Some(bin) => match server::Server::start(bin) {
            Ok(s) => {
                eprintln!("berth listening on {} (log: {})", s.addr, s.log.display());
                Some(s)
            }
            Err(e) => {
                rep.record("start berth", Err(e));
                return finish(&rep, None, args.keep);
            }
        },
        None => None,
    };
    let base = match (&server, &args.url) {
        (Some(s), _) => format!("http://{}", s.addr),
        (None, Some(u)) => u.trim_end_matches('/').to_string(),
        (None, None) => unreachable!("clap requires --url or --berth-bin"),
    };
    let client = match Client::new(&base) {
        Ok(c) => c,
        Err(e) => {
            rep.record("connect", Err(e));
            return finish(&rep, server, args.keep);
        }
    };
    let ctx = Ctx {
        client,
        ns: args.namespace.clone(),
        seed: args.seed,
        max_manifest_bytes: args.max_manifest_bytes,
    };

    let selected = |w: Workflow| args.only.is_empty() || args.only.contains(&w);
    let legacy = LegacyData::new(&mut ctx.rng("legacy"));
    if selected(Workflow::Pull) {
        pull::run(&ctx, &mut rep, &legacy);
    }
    if selected(Workflow::Push) {
        push::run(&ctx, &mut rep, &legacy);
    }
    if selected(Workflow::Discovery) {
        discovery::run(&ctx, &mut rep, &legacy);
    }
    if selected(Workflow::Management) {
        management::run(&ctx, &mut rep, &legacy);
    }
    if selected(Workflow::EmptyRepo) {
        discovery::run_empty_repo(&ctx, &mut rep);
    }
    if selected(Workflow::Blobs) {
        blobs::run(&ctx, &mut rep);
    }
    if selected(Workflow::Datasets) {
        datasets::run(&ctx, &mut rep);
    }
    drop(ctx);
    finish(&rep, server, args.keep)
}

/// Prints the summary line; keeps a started server's directory on failure.
fn finish(rep: &Reporter, server: Option<server::Server>, keep: bool) -> ExitCode {
    if let Some(s) = server {
        let (dir, log) = (s.dir.clone(), s.log.clone());
        drop(s); // stops berth
        if rep.failed > 0 || keep {
            eprintln!("berth log: {}", log.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("conformance: {} passed, {} failed", rep.passed, rep.failed);
    if rep.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
