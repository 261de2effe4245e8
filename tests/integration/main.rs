//! In-process integration tests: a real berth server on 127.0.0.1:0 with sled on a temp dir,
//! driven over HTTP.

mod auth;
mod cli;
mod cli_verbs;
mod common;
mod console;
mod crash_loop;
mod describe;
mod disk_full;
mod distribution;
mod etcd;
mod garage;
mod gc;
mod hardening;
mod imagestreams;
mod import;
mod isolation;
mod isolation_props;
mod kube_api;
mod kubectl;
mod limits;
mod metrics;
mod parser_props;
mod peer;
mod plateau;
mod remote;
mod s3;
mod streams_at_scale;
mod tls;
mod webhooks;
