//! Importing images from other registries (issue 6, spec §3.8, §6).
//!
//! - [`reference`]: Docker pull specs parsed as OpenShift parses them.
//! - [`remote`]: a client of the distribution API for one remote repository (TLS, insecure
//!   fallback, Basic and bearer-token auth, manifests, blobs, tags).
//! - [`allowed`]: which registries, realms, redirect targets and addresses it may reach.

pub mod allowed;
pub mod fetch;
pub mod reference;
pub mod remote;
pub mod service;

pub use service::Importer;
pub mod controller;
pub mod pullthrough;
pub mod stream_import;
