//! The distribution domain: blobs, uploads, manifests, tags and referrers of `<ns>/<stream>`
//! repositories. It never sees a Request or a status code; the http layer translates.

pub mod content;
pub mod error;
pub mod gc;
pub mod manifest;
pub mod names;
pub mod records;
mod service;

pub use error::{Error, Result};
pub use names::{NameError, Namespace, Reference, RepositoryName, StreamName, Tag};
pub use service::{
    store_manifest, Limits, Page, PushedManifest, Referrer, Registry, RepositoryHosts,
    StoredManifest, MAX_STREAM_RETRIES,
};
