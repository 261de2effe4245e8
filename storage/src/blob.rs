//! The blob store: immutable content-addressed bytes, and upload sessions that become blobs.

use std::ops::Range;
use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;

use crate::digest::{Algorithm, Digest};
use crate::error::Result;

/// A body streamed in or out in bounded memory.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// An upload session id: a UUID, validated so it can be joined into a path safely.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    pub fn new() -> Self {
        UploadId(uuid::Uuid::new_v4().to_string())
    }

    /// Accepts only the canonical hyphenated lowercase UUID form.
    pub fn parse(s: &str) -> Option<Self> {
        let u = uuid::Uuid::parse_str(s).ok()?;
        let canonical = u.hyphenated().to_string();
        (canonical == s).then_some(UploadId(canonical))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One entry of [`BlobStore::list_blobs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    pub modified: SystemTime,
}

#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a complete blob, or `None` when absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// The bytes of `range` (end exclusive, already clamped to the size by the caller), or the
    /// whole blob; `None` when absent.
    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<ByteStream>>;

    /// Removes the blob's bytes. Returns whether it existed.
    async fn delete(&self, digest: &Digest) -> Result<bool>;

    /// Opens an upload session. `algorithm` is the digest the client is expected to finish with;
    /// the store hashes with it while streaming and falls back to re-reading for another one.
    async fn create_upload(&self, algorithm: Algorithm) -> Result<UploadId>;

    /// Bytes received so far, or `None` for an unknown session. Survives restarts.
    async fn upload_size(&self, id: &UploadId) -> Result<Option<u64>>;

    /// Appends `data`. With `offset`, the session must currently hold exactly that many bytes
    /// (else `Error::RangeMismatch`). Returns the new size. Concurrent appends to one session
    /// are serialized. Fails with `Error::UploadUnknown` for an unknown session.
    async fn append(&self, id: &UploadId, offset: Option<u64>, data: ByteStream) -> Result<u64>;

    /// Verifies the received bytes hash to `expected`, then makes them durable and visible as
    /// that blob (fsync, rename, directory fsync) and ends the session. Returns the size. On a
    /// mismatch the session is discarded and `Error::DigestMismatch` returned; nothing is stored.
    async fn commit(&self, id: &UploadId, expected: &Digest) -> Result<u64>;

    /// Discards a session. Returns whether it existed.
    async fn cancel(&self, id: &UploadId) -> Result<bool>;

    /// Discards sessions last written before `cutoff`; returns how many.
    async fn purge_uploads(&self, cutoff: SystemTime) -> Result<usize>;

    /// Up to `limit` stored blobs after `after` in digest order (algorithm, then hex), each
    /// with its size and when it was last written: how a sweep finds bytes no record names
    /// without holding the whole listing.
    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>>;

    /// A URL the client may fetch the blob from directly (a presigned object-storage URL),
    /// when the store is configured to redirect; `None` serves the bytes through berth.
    async fn redirect_url(&self, _digest: &Digest) -> Result<Option<String>> {
        Ok(None)
    }

    /// Bytes of all complete blobs, from counters the store keeps (never a walk per call);
    /// `None` while not yet known.
    fn stored_bytes(&self) -> Option<u64> {
        None
    }

    /// Bytes still free where the store writes; `None` when that is not known.
    fn free_bytes(&self) -> Option<u64> {
        None
    }
}
