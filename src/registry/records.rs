//! What the registry keeps in the metadata store: key layout and versioned record types.
//!
//! Keys are `<keyspace>\0<part>\0<part>`. Names, tags and digests never contain `\0`, so a
//! prefix ending in `\0` selects exactly one repository's entries, in byte order.

use std::collections::BTreeMap;

use berth_storage::{Digest, Record};
use serde::{Deserialize, Serialize};

use super::names::{RepositoryName, Tag};

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

/// Builds the prefix that lists every key under `parts` (note the trailing separator).
fn prefix(parts: &[&str]) -> Vec<u8> {
    let mut k = key(parts);
    k.push(0);
    k
}

pub mod keys {
    use super::*;

    pub fn blob(d: &Digest) -> Vec<u8> {
        key(&["blob", &d.to_string()])
    }
    pub fn repo_blob(r: &RepositoryName, d: &Digest) -> Vec<u8> {
        key(&["rblob", r.as_str(), &d.to_string()])
    }
    pub fn manifest(d: &Digest) -> Vec<u8> {
        key(&["manifest", &d.to_string()])
    }
    pub fn repo_manifest(r: &RepositoryName, d: &Digest) -> Vec<u8> {
        key(&["rmanifest", r.as_str(), &d.to_string()])
    }
    pub fn tag(r: &RepositoryName, t: &Tag) -> Vec<u8> {
        key(&["tag", r.as_str(), t.as_str()])
    }
    pub fn tags_of(r: &RepositoryName) -> Vec<u8> {
        prefix(&["tag", r.as_str()])
    }
    pub fn referrer(r: &RepositoryName, subject: &Digest, referrer: &Digest) -> Vec<u8> {
        key(&[
            "referrer",
            r.as_str(),
            &subject.to_string(),
            &referrer.to_string(),
        ])
    }
    pub fn referrers_of(r: &RepositoryName, subject: &Digest) -> Vec<u8> {
        prefix(&["referrer", r.as_str(), &subject.to_string()])
    }
    pub fn repository(r: &RepositoryName) -> Vec<u8> {
        key(&["repo", r.as_str()])
    }
    pub fn repositories() -> Vec<u8> {
        prefix(&["repo"])
    }
    pub fn pull_through(r: &RepositoryName, d: &Digest) -> Vec<u8> {
        key(&["pullthrough", r.as_str(), &d.to_string()])
    }
    pub fn repo_blobs(r: &RepositoryName) -> Vec<u8> {
        prefix(&["rblob", r.as_str()])
    }
    pub fn repo_manifests(r: &RepositoryName) -> Vec<u8> {
        prefix(&["rmanifest", r.as_str()])
    }
    pub fn blobs() -> Vec<u8> {
        prefix(&["blob"])
    }
    pub fn manifests() -> Vec<u8> {
        prefix(&["manifest"])
    }
    pub fn repo_pull_throughs(r: &RepositoryName) -> Vec<u8> {
        prefix(&["pullthrough", r.as_str()])
    }
    /// Garbage collection's review queue: an object whose last reference went away.
    pub fn review(kind: ReviewKind, d: &Digest) -> Vec<u8> {
        key(&["gcreview", kind.as_str(), &d.to_string()])
    }
    pub fn reviews() -> Vec<u8> {
        prefix(&["gcreview"])
    }
    /// Garbage collection's counters (what `berth adm gc status` shows) and store format.
    pub fn gc_state() -> Vec<u8> {
        key(&["gcstate"])
    }
    pub fn upload(id: &berth_storage::UploadId) -> Vec<u8> {
        key(&["upload", id.as_str()])
    }
    pub fn uploads() -> Vec<u8> {
        prefix(&["upload"])
    }
    /// How many upload sessions a repository has open (those opened by clients).
    pub fn open_uploads_of_repository(r: &RepositoryName) -> Vec<u8> {
        key(&["uploadcount", "repository", r.as_str()])
    }
    /// How many upload sessions one client (user, or source address without auth) has open.
    pub fn open_uploads_of_owner(owner: &str) -> Vec<u8> {
        key(&["uploadcount", "owner", owner])
    }

    /// The last `\0`-separated part of a key: the tag, repository or digest it names.
    pub fn last_part(key: &[u8]) -> &[u8] {
        match key.iter().rposition(|&b| b == 0) {
            Some(i) => &key[i + 1..],
            None => key,
        }
    }
}

/// A complete, verified blob held by the blob store, with what keeps it: `links` counts the
/// repositories linking it, `manifests` the stored manifests that hold it (their `holds`).
/// `touched` (seconds) is when it was last written, linked or checked by a client; garbage
/// collection waits the grace period after it. Only `registry::content` writes these.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobRecord {
    pub size: u64,
    #[serde(default)]
    pub links: u64,
    #[serde(default)]
    pub manifests: u64,
    #[serde(default)]
    pub touched: u64,
}
impl Record for BlobRecord {
    const KIND: &'static str = "blob";
    const VERSION: u8 = 1;
}

/// A repository's claim on a blob or manifest (what lets it be pulled from there).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Link {}
impl Record for Link {
    const KIND: &'static str = "link";
    const VERSION: u8 = 1;
}

/// A manifest, byte for byte. Manifests are valid JSON and therefore UTF-8, so the exact bytes
/// fit in a string.
///
/// `links` counts the repositories linking it, `parents` the stored indexes holding it.
/// `holds` and `holds_manifests` are the blobs and child manifests this record counted when it
/// was stored (those berth held then), so its deletion releases exactly those.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub media_type: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    #[serde(default)]
    pub links: u64,
    #[serde(default)]
    pub parents: u64,
    #[serde(default)]
    pub touched: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<Digest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds_manifests: Vec<Digest>,
}
impl Record for ManifestRecord {
    const KIND: &'static str = "manifest";
    const VERSION: u8 = 1;
}

/// A blob a repository may serve but does not hold: it belongs to an imported image and is
/// fetched from `source` (`registry/repository`) on first pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullThroughRecord {
    pub source: String,
}
impl Record for PullThroughRecord {
    const KIND: &'static str = "pullthrough";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagRecord {
    pub digest: Digest,
}
impl Record for TagRecord {
    const KIND: &'static str = "tag";
    const VERSION: u8 = 1;
}

/// One entry of a subject's referrers list, as the referrers API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferrerRecord {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}
impl Record for ReferrerRecord {
    const KIND: &'static str = "referrer";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryRecord {
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// Bumped by every manifest link into the repository, so pruning, which decides from a
    /// scan, can tell in its transaction that nothing was linked meanwhile.
    #[serde(default)]
    pub generation: u64,
}
impl Record for RepositoryRecord {
    const KIND: &'static str = "repository";
    const VERSION: u8 = 1;
}

/// An open upload session: which repository it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    pub repository: String,
    pub started: u64,
    /// Who opened it, for the per-client limit. Sessions with an owner are counted in their
    /// repository's and owner's [`OpenUploads`]; the server's own (pull-through) and those of
    /// earlier releases are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The number of counted upload sessions open in a repository or for an owner, kept in the
/// same transactions that add and remove [`UploadRecord`]s.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OpenUploads {
    pub count: u64,
}
impl Record for OpenUploads {
    const KIND: &'static str = "uploadcount";
    const VERSION: u8 = 1;
}
impl Record for UploadRecord {
    const KIND: &'static str = "upload";
    const VERSION: u8 = 1;
}

/// What a review-queue entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewKind {
    Blob,
    Manifest,
}

impl ReviewKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewKind::Blob => "blob",
            ReviewKind::Manifest => "manifest",
        }
    }

    pub fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"blob" => Some(ReviewKind::Blob),
            b"manifest" => Some(ReviewKind::Manifest),
            _ => None,
        }
    }
}

/// A review-queue entry: the object is reviewed once the grace period after `since` (seconds)
/// is over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Review {
    pub since: u64,
}
impl Record for Review {
    const KIND: &'static str = "gcreview";
    const VERSION: u8 = 1;
}

/// Garbage collection's totals, kept in the store so every replica and restart sees them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcState {
    /// 1 once reference counts are kept (a store from before is recounted at start-up).
    #[serde(default)]
    pub format: u32,
    #[serde(default)]
    pub blobs_deleted: u64,
    #[serde(default)]
    pub bytes_deleted: u64,
    #[serde(default)]
    pub manifests_deleted: u64,
    #[serde(default)]
    pub orphans_deleted: u64,
    #[serde(default)]
    pub last_run: u64,
    #[serde(default)]
    pub last_full_run: u64,
}
impl Record for GcState {
    const KIND: &'static str = "gcstate";
    const VERSION: u8 = 1;
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
