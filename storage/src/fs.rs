//! The filesystem [`BlobStore`].
//!
//! Layout under the root:
//! - `blobs/<alg>/<first two hex chars>/<hex>`: complete, verified blobs. They only ever appear
//!   by an atomic rename of an fsynced file, so a reader never sees a partial blob.
//! - `uploads/<uuid>/data`: the bytes received so far for one session; the file is the truth
//!   about a session and is all that survives a restart.
//!
//! Every path is built from a [`Digest`] or an [`UploadId`], both validated on construction.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::io::ReaderStream;

use crate::blob::{BlobStore, ByteStream, StoredBlob, UploadId};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, Result};

/// Bytes gathered from the request stream before one write: large enough that a body of tiny
/// frames costs few syscalls, small enough to keep a session's memory bounded.
const WRITE_BATCH: usize = 1 << 20;
/// Chunk size of streams handed out by `read`.
const READ_CHUNK: usize = 256 << 10;
/// Buffer for rehashing a data file from disk.
const HASH_CHUNK: usize = 1 << 20;
const DATA_FILE: &str = "data";

pub struct FsBlobStore {
    root: PathBuf,
    /// Sessions this process has touched. Dropped on restart; rebuilt from disk on demand.
    sessions: StdMutex<HashMap<UploadId, Arc<Mutex<Session>>>>,
    usage: Arc<Usage>,
    reserve: crate::space::Reserve,
}

/// Bytes of complete blobs. A tree of millions of files is walked once, in the background
/// after open; from then on commits and deletes keep the count, so asking costs nothing.
#[derive(Default)]
struct Usage {
    bytes: AtomicU64,
    /// While the walk runs: the blobs committed since open, which count themselves and must
    /// not be counted again by the walk. `None` once the walk is done.
    committed: StdMutex<Option<HashSet<String>>>,
    known: AtomicBool,
}

impl Usage {
    fn walking() -> Self {
        Usage {
            committed: StdMutex::new(Some(HashSet::new())),
            ..Usage::default()
        }
    }

    fn committed(&self) -> MutexGuard<'_, Option<HashSet<String>>> {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Called before a new blob file is renamed into place, so the walk never sees it
    /// uncounted-for.
    fn will_commit(&self, file: &Path) {
        if let (Some(set), Some(name)) = (self.committed().as_mut(), file_name(file)) {
            set.insert(name);
        }
    }

    fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// A blob removed while the walk still runs may be one it never reaches: the count is
    /// then low by that blob until the next start. (Deletes are rare: garbage collection.)
    fn sub(&self, n: u64) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(n))
            });
    }

    fn walk(&self, blobs: &Path) {
        let mut total = 0u64;
        let mut dirs = vec![blobs.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    dirs.push(entry.path());
                    continue;
                }
                let name = entry.file_name();
                let counted_by_commit = self
                    .committed()
                    .as_ref()
                    .is_some_and(|set| name.to_str().is_some_and(|n| set.contains(n)));
                if meta.is_file() && !counted_by_commit {
                    total += meta.len();
                }
            }
        }
        // Under the lock: a commit either found the set (and adds itself) or comes after.
        let mut committed = self.committed();
        *committed = None;
        self.add(total);
        self.known.store(true, Ordering::Release);
    }
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_string)
}

/// What this process knows about a session beyond its data file. The session's mutex
/// serializes appends, commit and cancel; it is held by blocking tasks while they touch the
/// file, so a dropped request future cannot let two writers overlap.
#[derive(Default)]
struct Session {
    /// Bytes of the data file this process accounts for.
    len: u64,
    /// Hash of exactly the first `len` bytes, in the algorithm the session was created with.
    /// `None` once that is no longer known (after a restart, or a failed rollback); commit then
    /// rehashes the file.
    hasher: Option<Hasher>,
    /// Set when the session was committed, cancelled or purged, for callers queued on its lock.
    ended: bool,
}

type SessionGuard = OwnedMutexGuard<Session>;

impl FsBlobStore {
    /// Opens the store at `root`, creating its directories as needed.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        for alg in Algorithm::ALL {
            std::fs::create_dir_all(root.join("blobs").join(alg.name()))?;
        }
        std::fs::create_dir_all(root.join("uploads"))?;
        let usage = Arc::new(Usage::walking());
        let (walker, blobs) = (usage.clone(), root.join("blobs"));
        if let Err(e) = std::thread::Builder::new()
            .name("blob-usage".into())
            .spawn(move || walker.walk(&blobs))
        {
            tracing::warn!(error = %e, "could not start counting blob bytes");
        }
        Ok(Self {
            reserve: crate::space::Reserve::new(&root, 0),
            root,
            sessions: StdMutex::default(),
            usage,
        })
    }

    /// Keeps `bytes` free: blob data is refused below it (uploads stop before the filesystem
    /// is full), and committing an upload below half of it.
    pub fn with_reserve(mut self, bytes: u64) -> Self {
        self.reserve = crate::space::Reserve::new(&self.root, bytes);
        self
    }

    /// The blob's directory and file.
    fn blob_path(&self, digest: &Digest) -> (PathBuf, PathBuf) {
        let hex = digest.hex();
        let dir = self
            .root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(&hex[..2]);
        let file = dir.join(hex);
        (dir, file)
    }

    fn upload_dir(&self, id: &UploadId) -> PathBuf {
        self.root.join("uploads").join(id.as_str())
    }

    fn data_path(&self, id: &UploadId) -> PathBuf {
        self.upload_dir(id).join(DATA_FILE)
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<UploadId, Arc<Mutex<Session>>>> {
        // The map is only ever changed by single inserts and removes, so it stays consistent
        // even if a holder panicked.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn known(&self, id: &UploadId) -> Option<Arc<Mutex<Session>>> {
        self.sessions().get(id).cloned()
    }

    fn forget(&self, id: &UploadId) {
        self.sessions().remove(id);
    }

    /// The session's state, rebuilt without a hasher when this process has not seen it before
    /// (it was created before a restart).
    async fn session(&self, id: &UploadId) -> Result<Arc<Mutex<Session>>> {
        if let Some(session) = self.known(id) {
            return Ok(session);
        }
        if file_len(&self.data_path(id)).await?.is_none() {
            return Err(Error::UploadUnknown);
        }
        Ok(self.sessions().entry(id.clone()).or_default().clone())
    }

    /// When the session last received bytes; `None` if it is gone.
    async fn last_written(&self, id: &UploadId) -> io::Result<Option<SystemTime>> {
        // A crash between creating the directory and its data file leaves just the directory.
        for path in [self.data_path(id), self.upload_dir(id)] {
            match tokio::fs::metadata(&path).await {
                Ok(m) => return m.modified().map(Some),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// Runs blocking file work off the async runtime.
async fn blocking<T, E>(
    f: impl FnOnce() -> std::result::Result<T, E> + Send + 'static,
) -> std::result::Result<T, E>
where
    T: Send + 'static,
    E: From<io::Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking file task failed: {e}")))?
}

/// Length of the regular file at `path`, `None` if there is none.
async fn file_len(path: &Path) -> io::Result<Option<u64>> {
    match tokio::fs::metadata(path).await {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes a directory tree; `false` if it was not there.
fn remove_dir(dir: &Path) -> io::Result<bool> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes a directory's entries (a rename, a new subdirectory) durable.
/// Walks `blobs/<alg>/<ab>/<hex>` in digest order from `after`, one shard directory at a time,
/// so memory stays at one shard's listing plus the page.
fn list_blobs_blocking(
    blobs: &Path,
    after: Option<&Digest>,
    limit: usize,
) -> io::Result<Vec<StoredBlob>> {
    let mut out = Vec::new();
    for alg in Algorithm::ALL {
        if after.is_some_and(|a| a.algorithm() > alg) {
            continue;
        }
        let mut shards = read_names(&blobs.join(alg.name()))?;
        shards.sort();
        for shard in shards {
            if let Some(a) = after.filter(|a| a.algorithm() == alg) {
                if shard.as_str() < &a.hex()[..2] {
                    continue;
                }
            }
            let dir = blobs.join(alg.name()).join(&shard);
            let mut digests: Vec<Digest> = read_names(&dir)?
                .into_iter()
                .filter_map(|hex| format!("{}:{hex}", alg.name()).parse::<Digest>().ok())
                .filter(|d| after.is_none_or(|a| d > a))
                .collect();
            digests.sort();
            for digest in digests {
                let meta = match std::fs::metadata(dir.join(digest.hex())) {
                    Ok(m) => m,
                    // Deleted since the directory was read.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                out.push(StoredBlob {
                    digest,
                    size: meta.len(),
                    modified: meta.modified()?,
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

fn read_names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Digest and length of everything readable from `file`, read in bounded memory.
fn hash_file(file: &mut File, algorithm: Algorithm) -> io::Result<(Digest, u64)> {
    let mut hasher = algorithm.hasher();
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut len = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok((hasher.finish(), len)),
            Ok(n) => {
                hasher.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// An append in progress: the data file opened for appending, and the locked session whose
/// `len` and `hasher` follow every completed write.
struct Writer {
    file: File,
    state: SessionGuard,
    reserve: crate::space::Reserve,
}

/// An append that failed; `writer` is `None` only if its blocking task died.
struct Failed {
    writer: Option<Writer>,
    error: io::Error,
}

impl Writer {
    async fn pump(mut self, mut data: ByteStream) -> std::result::Result<Self, Failed> {
        let mut batch = BytesMut::with_capacity(WRITE_BATCH);
        while let Some(chunk) = data.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    return Err(Failed {
                        writer: Some(self),
                        error,
                    })
                }
            };
            if batch.is_empty() && chunk.len() >= WRITE_BATCH {
                self = self.write(chunk).await?;
                continue;
            }
            batch.extend_from_slice(&chunk);
            if batch.len() >= WRITE_BATCH {
                let full = std::mem::replace(&mut batch, BytesMut::with_capacity(WRITE_BATCH));
                self = self.write(full.freeze()).await?;
            }
        }
        if !batch.is_empty() {
            self = self.write(batch.freeze()).await?;
        }
        Ok(self)
    }

    /// Writes and hashes one batch on a blocking thread. The thread owns the session lock until
    /// it is done, so even if the caller's future is dropped meanwhile, the file and the hasher
    /// end up agreeing.
    async fn write(mut self, buf: Bytes) -> std::result::Result<Self, Failed> {
        let task = tokio::task::spawn_blocking(move || {
            let written = self
                .reserve
                .check_data_io()
                .and_then(|()| self.file.write_all(&buf));
            // On a failed write the file may hold part of `buf`; `len` then disagrees with the
            // file and the next append or the rollback notices.
            if written.is_ok() {
                if let Some(hasher) = &mut self.state.hasher {
                    hasher.update(&buf);
                }
                self.state.len += buf.len() as u64;
            }
            (self, written)
        });
        match task.await {
            Ok((writer, Ok(()))) => Ok(writer),
            Ok((writer, Err(error))) => Err(Failed {
                writer: Some(writer),
                error,
            }),
            Err(e) => Err(Failed {
                writer: None,
                error: io::Error::other(format!("blocking write task failed: {e}")),
            }),
        }
    }

    /// Undoes a failed append, so a failed request leaves the session as it found it.
    async fn roll_back(self, len: u64, hasher: Option<Hasher>) {
        let Writer {
            file, mut state, ..
        } = self;
        let task = tokio::task::spawn_blocking(move || match file.set_len(len) {
            Ok(()) => {
                state.len = len;
                state.hasher = hasher;
                Ok(())
            }
            Err(e) => {
                // Whatever the file now holds, commit will hash it from disk.
                state.hasher = None;
                Err(e)
            }
        });
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not truncate a failed upload chunk"),
            Err(e) => tracing::warn!(error = %e, "upload rollback task failed"),
        }
    }
}

/// Verifies and publishes a session's data, on a blocking thread that holds the session lock
/// from the first read to the rename, so no append can slip in between.
fn commit_blocking(
    mut state: SessionGuard,
    upload_dir: &Path,
    (blob_dir, blob_file): (&Path, &Path),
    expected: &Digest,
    usage: &Usage,
) -> Result<u64> {
    let data = upload_dir.join(DATA_FILE);
    let mut file = match OpenOptions::new().read(true).write(true).open(&data) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::UploadUnknown),
        Err(e) => return Err(e.into()),
    };
    let on_disk = file.metadata()?.len();
    let (computed, size) = match &state.hasher {
        Some(h) if h.algorithm() == expected.algorithm() && state.len == on_disk => {
            (h.clone().finish(), on_disk)
        }
        _ => hash_file(&mut file, expected.algorithm())?,
    };

    if computed != *expected {
        state.ended = true;
        if let Err(e) = remove_dir(upload_dir) {
            tracing::warn!(error = %e, dir = %upload_dir.display(), "could not discard a mismatched upload");
        }
        return Err(Error::DigestMismatch { computed });
    }

    // Content-addressed: an existing blob already holds these very bytes.
    if !blob_file.try_exists()? {
        file.sync_all()?;
        drop(file);
        match std::fs::create_dir(blob_dir) {
            Ok(()) => {
                if let Some(alg_dir) = blob_dir.parent() {
                    sync_dir(alg_dir)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        usage.will_commit(blob_file);
        std::fs::rename(&data, blob_file)?;
        usage.add(size);
        sync_dir(blob_dir)?;
    }
    state.ended = true;
    // The blob is durable; a leftover directory is garbage that `purge_uploads` reclaims.
    if let Err(e) = remove_dir(upload_dir) {
        tracing::warn!(error = %e, dir = %upload_dir.display(), "could not remove a committed upload");
    }
    Ok(size)
}

#[async_trait::async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(file_len(&self.blob_path(digest).1).await?)
    }

    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<ByteStream>> {
        let mut file = match tokio::fs::File::open(&self.blob_path(digest).1).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let stream: ByteStream = match range {
            None => Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)),
            Some(r) => {
                file.seek(SeekFrom::Start(r.start)).await?;
                let limited = file.take(r.end.saturating_sub(r.start));
                Box::pin(ReaderStream::with_capacity(limited, READ_CHUNK))
            }
        };
        Ok(Some(stream))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest).1;
        let len = file_len(&path).await?.unwrap_or(0);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                self.usage.sub(len);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn create_upload(&self, algorithm: Algorithm) -> Result<UploadId> {
        self.reserve.check_data()?;
        let id = UploadId::new();
        let dir = self.upload_dir(&id);
        blocking(move || {
            std::fs::create_dir(&dir)?;
            File::create_new(dir.join(DATA_FILE)).map(drop)
        })
        .await?;
        let session = Session {
            len: 0,
            hasher: Some(algorithm.hasher()),
            ended: false,
        };
        self.sessions()
            .insert(id.clone(), Arc::new(Mutex::new(session)));
        Ok(id)
    }

    async fn upload_size(&self, id: &UploadId) -> Result<Option<u64>> {
        Ok(file_len(&self.data_path(id)).await?)
    }

    async fn append(&self, id: &UploadId, offset: Option<u64>, data: ByteStream) -> Result<u64> {
        let mut state = self.session(id).await?.lock_owned().await;
        if state.ended {
            return Err(Error::UploadUnknown);
        }
        let path = self.data_path(id);
        let opened = blocking(move || {
            let file = OpenOptions::new().append(true).open(path)?;
            let len = file.metadata()?.len();
            Ok::<_, io::Error>((file, len))
        })
        .await;
        let (file, start) = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(id);
                return Err(Error::UploadUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(offset) = offset {
            if offset != start {
                return Err(Error::RangeMismatch { current: start });
            }
        }
        if state.len != start {
            // The file holds bytes the hasher never saw (an interrupted write, or a session
            // from before a restart): only a rehash at commit can know its digest.
            state.len = start;
            state.hasher = None;
        }
        let checkpoint = state.hasher.clone();
        let writer = Writer {
            file,
            state,
            reserve: self.reserve.clone(),
        };
        match writer.pump(data).await {
            Ok(writer) => Ok(writer.state.len),
            Err(Failed { writer, error }) => {
                if let Some(writer) = writer {
                    writer.roll_back(start, checkpoint).await;
                }
                Err(crate::space::from_io(error))
            }
        }
    }

    async fn commit(&self, id: &UploadId, expected: &Digest) -> Result<u64> {
        // Before the rename: a blob whose record then could not be written would be an orphan.
        self.reserve.check_metadata()?;
        let state = self.session(id).await?.lock_owned().await;
        if state.ended {
            return Err(Error::UploadUnknown);
        }
        let upload_dir = self.upload_dir(id);
        let (blob_dir, blob_file) = self.blob_path(expected);
        let expected = expected.clone();
        let usage = self.usage.clone();
        let result = blocking(move || {
            commit_blocking(
                state,
                &upload_dir,
                (&blob_dir, &blob_file),
                &expected,
                &usage,
            )
        })
        .await;
        match &result {
            Ok(_) | Err(Error::DigestMismatch { .. } | Error::UploadUnknown) => self.forget(id),
            Err(_) => {}
        }
        result
    }

    async fn cancel(&self, id: &UploadId) -> Result<bool> {
        let state = match self.known(id) {
            Some(session) => Some(session.lock_owned().await),
            None => None,
        };
        let dir = self.upload_dir(id);
        let existed = blocking(move || {
            let existed = remove_dir(&dir)?;
            if let Some(mut state) = state {
                state.ended = true;
            }
            Ok::<_, io::Error>(existed)
        })
        .await?;
        self.forget(id);
        Ok(existed)
    }

    async fn purge_uploads(&self, cutoff: SystemTime) -> Result<usize> {
        let mut entries = tokio::fs::read_dir(self.root.join("uploads")).await?;
        let mut purged = 0;
        while let Some(entry) = entries.next_entry().await? {
            let Some(id) = entry.file_name().to_str().and_then(UploadId::parse) else {
                tracing::warn!(name = ?entry.file_name(), "ignoring a stray entry in uploads/");
                continue;
            };
            let stale = matches!(self.last_written(&id).await?, Some(t) if t < cutoff);
            if !stale {
                continue;
            }
            // A session whose lock is held is in use right now, whatever its mtime says.
            let state = match self.known(&id).map(Mutex::try_lock_owned) {
                Some(Ok(state)) if state.ended => continue,
                Some(Ok(state)) => Some(state),
                Some(Err(_)) => continue,
                None => None,
            };
            let dir = self.upload_dir(&id);
            let removed = blocking(move || {
                let removed = remove_dir(&dir)?;
                if let Some(mut state) = state {
                    state.ended = true;
                }
                Ok::<_, io::Error>(removed)
            })
            .await;
            match removed {
                Ok(removed) => purged += usize::from(removed),
                // One stuck session must not keep the others around.
                Err(e) => tracing::warn!(error = %e, upload = %id, "could not purge an upload"),
            }
            self.forget(&id);
        }
        Ok(purged)
    }

    async fn list_blobs(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<StoredBlob>> {
        let (blobs, after) = (self.root.join("blobs"), after.cloned());
        Ok(blocking(move || list_blobs_blocking(&blobs, after.as_ref(), limit)).await?)
    }

    fn free_bytes(&self) -> Option<u64> {
        crate::space::available_bytes(&self.root).ok()
    }

    fn stored_bytes(&self) -> Option<u64> {
        self.usage
            .known
            .load(Ordering::Acquire)
            .then(|| self.usage.bytes.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testsuite::{chunks, collect, failing_after, pattern};

    fn store() -> (tempfile::TempDir, FsBlobStore) {
        let dir = tempfile::TempDir::new().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn upload_entries(root: &Path) -> usize {
        std::fs::read_dir(root.join("uploads")).unwrap().count()
    }

    #[tokio::test]
    async fn blob_suite_on_fs() {
        let (dir, store) = store();
        crate::testsuite::blob_suite(&store).await;
        assert_eq!(upload_entries(dir.path()), 0, "sessions left behind");
    }

    #[tokio::test]
    async fn blobs_live_under_their_digest_and_uploads_are_cleaned() {
        let (dir, store) = store();
        let d = crate::testsuite::put_blob(&store, b"layout").await;
        let hex = d.hex();
        let path = dir.path().join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
        assert_eq!(std::fs::read(path).unwrap(), b"layout");
        assert_eq!(upload_entries(dir.path()), 0);

        let id = store.create_upload(Algorithm::Sha256).await.unwrap();
        assert!(dir
            .path()
            .join("uploads")
            .join(id.as_str())
            .join("data")
            .is_file());
        let wrong = Digest::sha256_of(b"other");
        assert!(store.commit(&id, &wrong).await.is_err());
        assert_eq!(upload_entries(dir.path()), 0);
    }

    async fn known_bytes(store: &FsBlobStore) -> u64 {
        for _ in 0..500 {
            if let Some(n) = store.stored_bytes() {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("blob bytes never counted");
    }

    #[tokio::test]
    async fn stored_bytes_are_counted_at_open_and_kept_by_commits_and_deletes() {
        let dir = tempfile::TempDir::new().unwrap();
        {
            let store = FsBlobStore::open(dir.path()).unwrap();
            assert_eq!(known_bytes(&store).await, 0);
            crate::testsuite::put_blob(&store, &pattern(1000, 1)).await;
            crate::testsuite::put_blob(&store, &pattern(1000, 1)).await;
            assert_eq!(
                known_bytes(&store).await,
                1000,
                "a blob stored twice counts once"
            );
        }
        let store = FsBlobStore::open(dir.path()).unwrap();
        let d = crate::testsuite::put_blob(&store, &pattern(300, 2)).await;
        assert_eq!(known_bytes(&store).await, 1300);
        assert!(store.delete(&d).await.unwrap());
        assert_eq!(known_bytes(&store).await, 1000);
    }

    #[tokio::test]
    async fn upload_survives_restart() {
        let dir = tempfile::TempDir::new().unwrap();
        let data = pattern(3_000_000, 20);
        let (id256, id512) = {
            let store = FsBlobStore::open(dir.path()).unwrap();
            let a = store.create_upload(Algorithm::Sha256).await.unwrap();
            let b = store.create_upload(Algorithm::Sha512).await.unwrap();
            for id in [&a, &b] {
                let head = data[..1_000_000].to_vec();
                store.append(id, Some(0), chunks([head])).await.unwrap();
            }
            (a, b)
        };

        let store = FsBlobStore::open(dir.path()).unwrap();
        for (id, alg) in [(&id256, Algorithm::Sha256), (&id512, Algorithm::Sha512)] {
            assert_eq!(store.upload_size(id).await.unwrap(), Some(1_000_000));
            let r = store.append(id, Some(0), chunks([vec![1u8]])).await;
            assert!(matches!(
                r,
                Err(Error::RangeMismatch { current: 1_000_000 })
            ));
            let tail = data[1_000_000..].to_vec();
            let end = store.append(id, Some(1_000_000), chunks([tail])).await;
            assert_eq!(end.unwrap(), 3_000_000);
            let d = alg.digest_of(&data);
            assert_eq!(store.commit(id, &d).await.unwrap(), 3_000_000);
            let back = collect(store.read(&d, None).await.unwrap().unwrap()).await;
            assert_eq!(back, data);
        }
    }

    #[tokio::test]
    async fn failed_append_is_rolled_back() {
        let (_dir, store) = store();
        let id = store.create_upload(Algorithm::Sha256).await.unwrap();
        let head = pattern(100, 21);
        store
            .append(&id, None, chunks([head.clone()]))
            .await
            .unwrap();
        // More than one batch reaches the disk before the stream fails.
        let r = store
            .append(&id, None, failing_after(pattern(3 << 20, 22)))
            .await;
        assert!(matches!(r, Err(Error::Io(_))), "{r:?}");
        assert_eq!(store.upload_size(&id).await.unwrap(), Some(100));
        // The in-memory hash was rolled back too: committing needs no rehash and is right.
        let d = Digest::sha256_of(&head);
        assert_eq!(store.commit(&id, &d).await.unwrap(), 100);
    }

    #[tokio::test]
    async fn dropped_append_leaves_a_consistent_session() {
        let (_dir, store) = store();
        let id = store.create_upload(Algorithm::Sha256).await.unwrap();
        let sent = pattern(2 << 20, 23);
        let first = futures_util::stream::iter([Ok(Bytes::from(sent.clone()))]);
        // The client stalls after one chunk and the server gives up on the request.
        let stalled: ByteStream = Box::pin(first.chain(futures_util::stream::pending()));
        let r = tokio::time::timeout(Duration::from_millis(300), store.append(&id, None, stalled));
        assert!(r.await.is_err(), "append should still be waiting");

        // An empty append waits for any write still in flight and reports the settled size.
        let none: [Vec<u8>; 0] = [];
        let kept = store.append(&id, None, chunks(none)).await.unwrap() as usize;
        assert!(kept == 0 || kept == sent.len(), "kept {kept}");
        let d = Digest::sha256_of(&sent[..kept]);
        assert_eq!(store.commit(&id, &d).await.unwrap(), kept as u64);
    }

    #[tokio::test]
    async fn purge_handles_crash_leftovers() {
        let (dir, store) = store();
        let uploads = dir.path().join("uploads");
        // A crash between creating a session's directory and its data file.
        let orphan = UploadId::new();
        std::fs::create_dir(uploads.join(orphan.as_str())).unwrap();
        // Something that is not a session at all is left alone.
        std::fs::create_dir(uploads.join("not-a-session")).unwrap();

        assert_eq!(store.upload_size(&orphan).await.unwrap(), None);
        let later = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(store.purge_uploads(later).await.unwrap(), 1);
        assert!(!uploads.join(orphan.as_str()).exists());
        assert!(uploads.join("not-a-session").exists());
    }
}
