//! Blobs on S3-compatible object storage (Garage, MinIO, AWS), through `object_store`.
//!
//! Objects: `<prefix>/blobs/<alg>/<hex>` for complete blobs; an upload session writes
//! `<prefix>/uploads/<id>/chunk-<n>` (chunks smaller than S3's 5 MiB part minimum) and a
//! multipart upload to `<prefix>/uploads/<id>/data`. A session's state (multipart id, part
//! ETags, pending chunks, the resumable hash state) lives in the metadata store, not in this
//! process, so any replica can take the next PATCH and a restart loses nothing.
//!
//! Chunks: data arrives into a buffer; once pending chunks plus the buffer reach a part
//! (`PART_BYTES`), they are uploaded as the next part and the chunk objects deleted; what is
//! left at the end of a request becomes one more chunk object. Memory per request is at most
//! two parts. The digest is computed while streaming; at commit the last part is uploaded, the
//! multipart completed, and only if the digest matches is the object copied to its content
//! address (small blobs, all in chunks, are written there directly). Nothing under `blobs/` is
//! ever a half-written or unverified object.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio_util::task::AbortOnDropHandle;

use crate::blob::{BlobStore, ByteStream, StoredBlob, UploadId};
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::metadata::{MetadataStore, MetadataStoreExt, TxError};
use crate::record::{decode, encode, Record};
use crate::resumable::HashState;

/// Size of every part but the last (S3's minimum is 5 MiB).
pub const PART_BYTES: usize = 8 << 20;

/// How long a request holds its session without progress; renewed with every part.
const LEASE_SECS: u64 = 60;

/// How to reach the bucket.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), possibly empty.
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; path-style addressing is used then.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Answer blob GETs with a redirect to a presigned URL instead of the bytes.
    pub redirect: bool,
}

impl S3Config {
    /// `s3://BUCKET[/PREFIX]`.
    pub fn parse_url(url: &str) -> std::result::Result<(String, String), String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?}: a blob store URL is s3://BUCKET[/PREFIX]"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?}: the bucket name is missing"));
        }
        Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
    }
}

/// An upload session's state, in the metadata store under `s3upload\0<id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    hash: HashState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart: Option<String>,
    /// ETags of the parts uploaded, in order.
    #[serde(default)]
    parts: Vec<String>,
    /// Lengths of the chunk objects not yet in a part (`chunk-<n>` for n counting from
    /// `first_chunk`).
    #[serde(default)]
    chunks: Vec<u64>,
    #[serde(default)]
    first_chunk: u64,
    /// Seconds since the epoch of the last write (for expiry).
    updated: u64,
    /// A request in progress holds the session until then (seconds), so another process does
    /// not upload the same part numbers meanwhile; `holder` names that process.
    #[serde(default)]
    lease_until: u64,
    #[serde(default)]
    holder: u64,
}

impl Record for Session {
    const KIND: &'static str = "s3upload";
    const VERSION: u8 = 1;
}

fn session_key(id: &UploadId) -> Vec<u8> {
    format!("s3upload\0{id}").into_bytes()
}

const SESSIONS: &[u8] = b"s3upload\0";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// S3 trouble is the caller's 503, not a corrupt store.
fn unavailable(e: object_store::Error) -> Error {
    Error::Unavailable(e.to_string())
}

pub struct S3BlobStore {
    s3: Arc<AmazonS3>,
    prefix: String,
    meta: Arc<dyn MetadataStore>,
    redirect: bool,
    /// This process, as a session lease holder.
    instance: u64,
    /// Serializes requests on one session within this process; across processes a lease in
    /// the session record does, and its length is compared when it is written.
    sessions: StdMutex<HashMap<UploadId, Arc<Mutex<()>>>>,
}

impl S3BlobStore {
    pub fn new(config: &S3Config, meta: Arc<dyn MetadataStore>) -> Result<Self> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region);
        if let Some(endpoint) = &config.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        let s3 = b
            .build()
            .map_err(|e| Error::Backend(format!("S3 configuration: {e}")))?;
        Ok(S3BlobStore {
            s3: Arc::new(s3),
            prefix: config.prefix.clone(),
            meta,
            redirect: config.redirect,
            instance: uuid::Uuid::new_v4().as_u64_pair().0,
            sessions: StdMutex::default(),
        })
    }

    fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn blob_key(&self, d: &Digest) -> Path {
        self.key(&format!("blobs/{}/{}", d.algorithm().name(), d.hex()))
    }

    fn data_key(&self, id: &UploadId) -> Path {
        self.key(&format!("uploads/{id}/data"))
    }

    fn chunk_key(&self, id: &UploadId, n: u64) -> Path {
        self.key(&format!("uploads/{id}/chunk-{n}"))
    }

    fn lock_of(&self, id: &UploadId) -> Arc<Mutex<()>> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.clone())
            .or_default()
            .clone()
    }

    fn forget_lock(&self, id: &UploadId) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn load(&self, id: &UploadId) -> Result<Session> {
        match self.meta.get(&session_key(id))? {
            Some(v) => decode(&v),
            None => Err(Error::UploadUnknown),
        }
    }

    /// Writes `new` if the session still holds `expected_len` bytes and this process still
    /// holds its lease (another may have taken it over after it expired).
    fn save(&self, id: &UploadId, expected_len: u64, new: &Session) -> Result<()> {
        let key = session_key(id);
        let value = encode(new);
        let instance = self.instance;
        self.meta
            .transaction(|tx| {
                let current: Session = match tx.get(&key)? {
                    Some(v) => decode(&v)?,
                    None => return Err(TxError::Abort(Error::UploadUnknown)),
                };
                if current.hash.len() != expected_len || current.holder != instance {
                    return Err(TxError::Abort(Error::RangeMismatch {
                        current: current.hash.len(),
                    }));
                }
                tx.put(&key, &value)?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.meta.flush()
    }

    /// Takes the session for a request: refused (with its length, as a range mismatch) while
    /// another process holds it or when it no longer holds `expected_len` bytes.
    fn claim(&self, id: &UploadId, expected_len: u64) -> Result<Session> {
        let key = session_key(id);
        let (instance, t) = (self.instance, now());
        let claimed = self
            .meta
            .transaction(|tx| {
                let mut current: Session = match tx.get(&key)? {
                    Some(v) => decode(&v)?,
                    None => return Err(TxError::Abort(Error::UploadUnknown)),
                };
                let held = current.lease_until > t && current.holder != instance;
                if held || current.hash.len() != expected_len {
                    return Err(TxError::Abort(Error::RangeMismatch {
                        current: current.hash.len(),
                    }));
                }
                current.lease_until = t + LEASE_SECS;
                current.holder = instance;
                tx.put(&key, &encode(&current))?;
                Ok(current)
            })
            .map_err(tx_error)?;
        // Not flushed: a lease promises nothing to a client, and a lease lost in a crash
        // only frees the session sooner. The save that ends the request flushes it with
        // the data.
        Ok(claimed)
    }

    fn remove(&self, id: &UploadId) -> Result<()> {
        let key = session_key(id);
        self.meta
            .transaction(|tx| {
                tx.delete(&key)?;
                Ok::<_, TxError<Error>>(())
            })
            .map_err(tx_error)?;
        self.meta.flush()
    }

    /// The pending chunk objects, concatenated (at most a part's worth). Fetched a few at a
    /// time: each is a round trip, and merging a part waits for all of them.
    async fn read_chunks(&self, id: &UploadId, s: &Session) -> Result<BytesMut> {
        let total: u64 = s.chunks.iter().sum();
        let mut out = BytesMut::with_capacity(total as usize);
        let mut chunks = futures_util::stream::iter(0..s.chunks.len() as u64)
            .map(|i| {
                let key = self.chunk_key(id, s.first_chunk + i);
                async move { self.s3.get(&key).await?.bytes().await }
            })
            .buffered(CHUNKS_AT_ONCE);
        while let Some(bytes) = chunks.next().await {
            out.extend_from_slice(&bytes.map_err(unavailable)?);
        }
        Ok(out)
    }

    async fn delete_chunks(&self, id: &UploadId, chunks: impl IntoIterator<Item = u64>) {
        futures_util::stream::iter(chunks)
            .for_each_concurrent(CHUNKS_AT_ONCE, |n| async move {
                if let Err(e) = self.s3.delete(&self.chunk_key(id, n)).await {
                    tracing::warn!(upload = %id, error = %e, "could not delete an upload chunk");
                }
            })
            .await;
    }

    /// Uploads `data` as the session's next part.
    async fn put_part(&self, id: &UploadId, s: &mut Session, data: Bytes) -> Result<()> {
        let path = self.data_key(id);
        let multipart = match &s.multipart {
            Some(m) => m.clone(),
            None => {
                let m = self.s3.create_multipart(&path).await.map_err(unavailable)?;
                s.multipart = Some(m.clone());
                m
            }
        };
        let part = self
            .s3
            .put_part(&path, &multipart, s.parts.len(), PutPayload::from(data))
            .await
            .map_err(unavailable)?;
        s.parts.push(part.content_id);
        Ok(())
    }

    /// Moves pending chunks plus `buffer` into a part once they make one. The chunk objects
    /// it used are added to `spent`, deleted only once the session record no longer names them
    /// (a failure before that leaves a record whose chunks all still exist).
    async fn flush_part(
        &self,
        id: &UploadId,
        s: &mut Session,
        buffer: &mut BytesMut,
        spent: &mut Vec<u64>,
    ) -> Result<()> {
        let pending: u64 = s.chunks.iter().sum();
        if pending as usize + buffer.len() < PART_BYTES {
            return Ok(());
        }
        let mut part = self.read_chunks(id, s).await?;
        part.extend_from_slice(&buffer.split());
        self.put_part(id, s, part.freeze()).await?;
        spent.extend(s.first_chunk..s.first_chunk + s.chunks.len() as u64);
        s.first_chunk += s.chunks.len() as u64;
        s.chunks.clear();
        Ok(())
    }

    async fn discard(&self, id: &UploadId, s: &Session) {
        if let Some(m) = &s.multipart {
            if let Err(e) = self.s3.abort_multipart(&self.data_key(id), m).await {
                tracing::warn!(upload = %id, error = %e, "could not abort a multipart upload");
            }
        }
        self.delete_chunks(id, s.first_chunk..s.first_chunk + s.chunks.len() as u64)
            .await;
        let _ = self.s3.delete(&self.data_key(id)).await;
    }

    async fn read_whole(&self, key: &Path) -> Result<Option<ByteStream>> {
        match self.s3.get(key).await {
            Ok(r) => Ok(Some(Box::pin(r.into_stream().map_err(io_error)))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The digest of an object under another algorithm than the one hashed while uploading.
    async fn rehash(&self, path: &Path, algorithm: Algorithm) -> Result<Digest> {
        let mut stream = self.s3.get(path).await.map_err(unavailable)?.into_stream();
        let mut h = HashState::new(algorithm);
        while let Some(chunk) = stream.next().await {
            h.update(&chunk.map_err(unavailable)?);
        }
        Ok(h.finish())
    }
}

/// Chunk objects of an upload fetched or deleted at once.
const CHUNKS_AT_ONCE: usize = 4;

/// Bytes per GET of a big read.
const READ_RANGE: u64 = 8 << 20;
/// GETs of one read in flight at once, besides the range the client is being sent.
const RANGES_AHEAD: usize = 2;

fn io_error(e: object_store::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// A big read as ranged GETs fetched ahead of the client: S3 serves the next ranges (on other
/// cores) while the client receives the current one, instead of each side waiting for the
/// other over one response. Each GET runs as a task of its own, so it makes progress while
/// the client is being sent an earlier range (a future polled only between sends would
/// stall on its socket's buffer). Holds at most `RANGES_AHEAD` + 1 ranges (24 MiB); when
/// the client goes away the stream is dropped and every GET with it.
fn read_ahead(
    s3: Arc<AmazonS3>,
    key: Path,
    first: object_store::GetResult,
    rest: Range<u64>,
) -> ByteStream {
    let end = rest.end;
    let mut ranges = rest
        .step_by(READ_RANGE as usize)
        .map(move |at| at..end.min(at + READ_RANGE));
    let mut fetch_next = move || {
        ranges.next().map(|range| {
            AbortOnDropHandle::new(tokio::spawn(fetch_range(s3.clone(), key.clone(), range)))
        })
    };
    let inflight: VecDeque<_> = (0..RANGES_AHEAD).map_while(|_| fetch_next()).collect();
    // A range is kept as the chunks it arrived in: joining them into one buffer would copy
    // every byte once more, into freshly faulted-in pages.
    let current = first.into_stream().map_err(io_error).boxed();
    let stream = futures_util::stream::unfold(
        (current, inflight, fetch_next),
        |(mut current, mut inflight, mut fetch_next)| async move {
            loop {
                if let Some(chunk) = current.next().await {
                    return Some((chunk, (current, inflight, fetch_next)));
                }
                let next = inflight.pop_front()?;
                inflight.extend(fetch_next());
                let error = match next.await {
                    Ok(Ok(chunks)) => {
                        current = futures_util::stream::iter(chunks.into_iter().map(Ok)).boxed();
                        continue;
                    }
                    Ok(Err(e)) => io_error(e),
                    Err(e) => std::io::Error::other(e),
                };
                // The read ends with its first error; the GETs still in flight are dropped.
                let done = futures_util::stream::empty().boxed();
                return Some((Err(error), (done, VecDeque::new(), fetch_next)));
            }
        },
    );
    Box::pin(stream)
}

async fn fetch_range(
    s3: Arc<AmazonS3>,
    key: Path,
    range: Range<u64>,
) -> object_store::Result<Vec<Bytes>> {
    let opts = GetOptions {
        range: Some(GetRange::Bounded(range)),
        ..GetOptions::default()
    };
    s3.get_opts(&key, opts)
        .await?
        .into_stream()
        .try_collect()
        .await
}

fn tx_error(e: TxError<Error>) -> Error {
    match e {
        TxError::Abort(e) | TxError::Storage(e) => e,
    }
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.s3.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<ByteStream>> {
        if let Some(r) = &range {
            if r.start >= r.end {
                // S3 refuses empty ranges; there is nothing to fetch.
                return Ok(Some(Box::pin(futures_util::stream::empty())));
            }
        }
        let key = self.blob_key(digest);
        let (start, end) = match &range {
            Some(r) => (r.start, r.end),
            None => (0, u64::MAX),
        };
        // The first range tells the object's size, so a big read costs no extra HEAD.
        let first = start..end.min(start.saturating_add(READ_RANGE));
        let opts = GetOptions {
            range: Some(GetRange::Bounded(first.clone())),
            ..GetOptions::default()
        };
        let r = match self.s3.get_opts(&key, opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            // An empty object has no first byte to range over.
            Err(_) if range.is_none() => return self.read_whole(&key).await,
            Err(e) => return Err(unavailable(e)),
        };
        let end = end.min(r.meta.size);
        if first.end >= end {
            return Ok(Some(Box::pin(r.into_stream().map_err(io_error))));
        }
        Ok(Some(read_ahead(self.s3.clone(), key, r, first.end..end)))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let existed = self.stat(digest).await?.is_some();
        match self.s3.delete(&self.blob_key(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(existed),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn create_upload(&self, algorithm: Algorithm) -> Result<UploadId> {
        let id = UploadId::new();
        let s = Session {
            hash: HashState::new(algorithm),
            multipart: None,
            parts: Vec::new(),
            chunks: Vec::new(),
            first_chunk: 0,
            updated: now(),
            lease_until: 0,
            holder: 0,
        };
        let (key, value) = (session_key(&id), encode(&s));
        self.meta
            .transaction(|tx| {
                tx.put(&key, &value)?;
                Ok::<_, TxError<Error>>(())
            })
            .map_err(tx_error)?;
        self.meta.flush()?;
        Ok(id)
    }

    async fn upload_size(&self, id: &UploadId) -> Result<Option<u64>> {
        match self.load(id) {
            Ok(s) => Ok(Some(s.hash.len())),
            Err(Error::UploadUnknown) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn append(
        &self,
        id: &UploadId,
        offset: Option<u64>,
        mut data: ByteStream,
    ) -> Result<u64> {
        let lock = self.lock_of(id);
        let _held = lock.lock().await;
        let start = self.load(id)?.hash.len();
        if let Some(offset) = offset {
            if offset != start {
                return Err(Error::RangeMismatch { current: start });
            }
        }
        let mut s = self.claim(id, start)?;
        let mut saved = start;
        let mut buffer = BytesMut::new();
        let mut spent = Vec::new();
        let mut failed = None;
        while let Some(chunk) = data.next().await {
            match chunk {
                Ok(bytes) => {
                    s.hash.update(&bytes);
                    buffer.extend_from_slice(&bytes);
                    // On failure what was saved stays: the client resends from there, and
                    // parts are numbered from the record, so later ones are overwritten.
                    let parts = s.parts.len();
                    self.flush_part(id, &mut s, &mut buffer, &mut spent).await?;
                    if s.parts.len() > parts {
                        // The buffer went into the part: the state is whole, so keep it and
                        // renew the lease.
                        s.updated = now();
                        s.lease_until = s.updated + LEASE_SECS;
                        self.save(id, saved, &s)?;
                        saved = s.hash.len();
                        self.delete_chunks(id, spent.drain(..)).await;
                    }
                }
                Err(e) => {
                    // A cut-off request keeps what arrived, as on the filesystem.
                    failed = Some(e);
                    break;
                }
            }
        }
        if !buffer.is_empty() {
            let n = s.first_chunk + s.chunks.len() as u64;
            let len = buffer.len() as u64;
            self.s3
                .put(&self.chunk_key(id, n), PutPayload::from(buffer.freeze()))
                .await
                .map_err(unavailable)?;
            s.chunks.push(len);
        }
        s.updated = now();
        s.lease_until = 0;
        self.save(id, saved, &s)?;
        self.delete_chunks(id, spent).await;
        match failed {
            Some(e) => Err(Error::Io(e)),
            None => Ok(s.hash.len()),
        }
    }

    async fn commit(&self, id: &UploadId, expected: &Digest) -> Result<u64> {
        let lock = self.lock_of(id);
        let _held = lock.lock().await;
        let len = self.load(id)?.hash.len();
        let mut s = self.claim(id, len)?;
        let size = s.hash.len();
        let target = self.blob_key(expected);
        let digest = (expected.algorithm() == s.hash.algorithm).then(|| s.hash.finish());
        if digest.as_ref().is_some_and(|d| d != expected) {
            self.discard(id, &s).await;
            self.remove(id)?;
            self.forget_lock(id);
            return Err(Error::DigestMismatch {
                computed: digest.expect("checked"),
            });
        }
        let tail = self.read_chunks(id, &s).await?.freeze();
        let staged = if s.multipart.is_none() && digest.is_some() {
            // Small enough to have stayed in chunks: verified, so written to its address.
            self.s3
                .put(&target, PutPayload::from(tail))
                .await
                .map_err(unavailable)?;
            None
        } else {
            if !tail.is_empty() || s.parts.is_empty() {
                self.put_part(id, &mut s, tail).await?;
            }
            let path = self.data_key(id);
            let parts = s
                .parts
                .iter()
                .map(|e| PartId {
                    content_id: e.clone(),
                })
                .collect();
            let multipart = s.multipart.clone().expect("a part was uploaded");
            self.s3
                .complete_multipart(&path, &multipart, parts)
                .await
                .map_err(unavailable)?;
            Some(path)
        };
        if let Some(path) = &staged {
            if digest.is_none() {
                let computed = self.rehash(path, expected.algorithm()).await?;
                if &computed != expected {
                    let _ = self.s3.delete(path).await;
                    self.delete_chunks(id, s.first_chunk..s.first_chunk + s.chunks.len() as u64)
                        .await;
                    self.remove(id)?;
                    self.forget_lock(id);
                    return Err(Error::DigestMismatch { computed });
                }
            }
            // Server-side copy: the content address only ever holds verified bytes.
            self.s3.copy(path, &target).await.map_err(unavailable)?;
            let _ = self.s3.delete(path).await;
        }
        self.delete_chunks(id, s.first_chunk..s.first_chunk + s.chunks.len() as u64)
            .await;
        self.remove(id)?;
        self.forget_lock(id);
        Ok(size)
    }

    async fn cancel(&self, id: &UploadId) -> Result<bool> {
        let lock = self.lock_of(id);
        let _held = lock.lock().await;
        let s = match self.load(id) {
            Ok(s) => s,
            Err(Error::UploadUnknown) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.discard(id, &s).await;
        self.remove(id)?;
        self.forget_lock(id);
        Ok(true)
    }

    async fn purge_uploads(&self, cutoff: SystemTime) -> Result<usize> {
        let cutoff = cutoff
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut stale = Vec::new();
        self.meta.visit::<Error>(SESSIONS, |k, v| {
            let s: Session = decode(v)?;
            let id = std::str::from_utf8(&k[SESSIONS.len()..])
                .ok()
                .and_then(UploadId::parse);
            if let Some(id) = id.filter(|_| s.updated < cutoff) {
                stale.push(id);
            }
            Ok(())
        })?;
        let mut purged = 0;
        for id in stale {
            // A session busy in this process is in use, whatever its age says.
            let lock = self.lock_of(&id);
            let Ok(_held) = lock.try_lock() else { continue };
            if let Ok(s) = self.load(&id) {
                if s.updated < cutoff {
                    self.discard(&id, &s).await;
                    self.remove(&id)?;
                    purged += 1;
                }
            }
            self.forget_lock(&id);
        }
        Ok(purged)
    }

    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>> {
        let prefix = self.key("blobs");
        let mut listing = match after {
            Some(a) => self.s3.list_with_offset(Some(&prefix), &self.blob_key(a)),
            None => self.s3.list(Some(&prefix)),
        };
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(unavailable)?;
            let mut parts = meta.location.parts().collect::<Vec<_>>().into_iter().rev();
            let (Some(hex), Some(alg)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(digest) = format!("{}:{}", alg.as_ref(), hex.as_ref()).parse::<Digest>() else {
                continue;
            };
            out.push(StoredBlob {
                digest,
                size: meta.size,
                modified: SystemTime::from(meta.last_modified),
            });
            if out.len() >= limit {
                break;
            }
        }
        // S3 lists in key order, which is digest order (algorithm name, then hex).
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>> {
        if !self.redirect {
            return Ok(None);
        }
        let url = self
            .s3
            .signed_url(
                http::Method::GET,
                &self.blob_key(digest),
                Duration::from_secs(20 * 60),
            )
            .await
            .map_err(unavailable)?;
        Ok(Some(url.to_string()))
    }
}
