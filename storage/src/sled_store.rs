//! The sled-backed [`MetadataStore`]: everything lives in the default tree of one `sled::Db`.

use std::cell::{Cell, RefCell};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use crate::error::{Error, Result};
use crate::metadata::{MetadataStore, TxBody, TxBodyError, Txn};
use crate::space::Reserve;

/// How often a transaction is rerun after conflicts before `Error::Conflict` is reported.
/// sled 0.34 serializes transactions behind a global lock, so real conflicts are not expected;
/// the cap only keeps a body that keeps reporting one from spinning forever.
const MAX_ATTEMPTS: u32 = 100;

pub struct SledMetadata {
    /// `None` only while a reopen that failed waits for the next attempt.
    db: RwLock<Option<sled::Db>>,
    /// Where and how to reopen it; `None` for a temporary database.
    reopen: Option<(PathBuf, Option<u64>)>,
    reserve: Reserve,
    /// Set when a write or flush failed with an I/O error. sled 0.34 then keeps that error and
    /// refuses every later write and flush, even once the cause (a full disk) is gone; only a
    /// new instance, recovering from what reached the disk, writes again.
    failed: AtomicBool,
    /// Counts reopens: a commit made in one instance cannot be flushed by the next.
    generation: AtomicU64,
}

thread_local! {
    /// The store (by address) and instance generation of this thread's last commit not yet
    /// flushed. Callers commit and flush on one thread (one blocking task), so a flush can tell
    /// that its commit went to an instance that has since been replaced, and fail rather than
    /// acknowledge a write the new instance may not hold.
    static UNFLUSHED: Cell<Option<(usize, u64)>> = const { Cell::new(None) };
}

impl SledMetadata {
    /// Opens (creating as needed) the database in the directory `path`, with sled's default
    /// page cache (1 GiB).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_cache(path, None)
    }

    /// [`SledMetadata::open`] with a page cache of at most `cache_bytes` (sled's default when
    /// `None`): the cache is most of a registry's resident memory.
    pub fn open_with_cache(path: &Path, cache_bytes: Option<u64>) -> Result<Self> {
        std::fs::create_dir_all(path)?;
        let db = open_db(path, cache_bytes)?;
        Ok(Self {
            db: RwLock::new(Some(db)),
            reopen: Some((path.to_path_buf(), cache_bytes)),
            reserve: Reserve::new(path, 0),
            failed: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        })
    }

    /// A database that lives in a temporary directory removed on drop.
    pub fn open_temporary() -> Result<Self> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(from_sled)?;
        Ok(Self {
            db: RwLock::new(Some(db)),
            reopen: None,
            reserve: Reserve::new(std::env::temp_dir(), 0),
            failed: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        })
    }

    /// Refuses transactions that write while less than half of `bytes` is free on the
    /// store's filesystem, so sled itself never meets a full disk (see [`Reserve`]).
    pub fn with_reserve(mut self, bytes: u64) -> Self {
        if let Some((path, _)) = &self.reopen {
            self.reserve = Reserve::new(path, bytes);
        }
        self
    }

    fn slot(&self) -> std::sync::RwLockReadGuard<'_, Option<sled::Db>> {
        // The slot holds a handle or nothing; a panic elsewhere cannot leave it half-written.
        self.db.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current database handle, for reads (which keep working after a failed write).
    fn reader(&self) -> Result<sled::Db> {
        if let Some(db) = self.slot().clone() {
            return Ok(db);
        }
        self.recover()?;
        self.reader()
    }

    /// The handle for a write: after a failed write, a new instance once space allows.
    fn writer(&self) -> Result<sled::Db> {
        if self.failed.load(Ordering::Acquire) {
            self.recover()?;
        }
        self.reader()
    }

    /// Reopens the database after sled refused writes for an I/O error: the old instance is
    /// dropped (releasing its file lock once operations in flight end) and a new one recovers
    /// every flushed write from disk. Writes that were never flushed were never acknowledged.
    fn recover(&self) -> Result<()> {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if !self.failed.load(Ordering::Acquire) && slot.is_some() {
            return Ok(());
        }
        let Some((path, cache)) = &self.reopen else {
            return Err(Error::Backend(
                "the temporary metadata store failed a write".into(),
            ));
        };
        // Still short of space: keep the old instance for reads and refuse the write.
        self.reserve.check_metadata()?;
        drop(slot.take());
        let mut last = None;
        for _ in 0..REOPEN_ATTEMPTS {
            match open_db(path, *cache) {
                Ok(db) => {
                    *slot = Some(db);
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    self.failed.store(false, Ordering::Release);
                    tracing::warn!(path = %path.display(), "metadata store reopened after a failed write");
                    return Ok(());
                }
                // Usually the lock: an operation in flight still holds the old instance.
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(REOPEN_PAUSE);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Backend("reopening the metadata store failed".into())))
    }

    /// Notes an I/O error of a write path: sled will refuse writes from now on.
    fn note(&self, e: &sled::Error) {
        if matches!(e, sled::Error::Io(_)) {
            self.failed.store(true, Ordering::Release);
        }
    }
}

/// How often, and how far apart, a reopen tries to take sled's lock.
const REOPEN_ATTEMPTS: u32 = 100;
const REOPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

fn open_db(path: &Path, cache_bytes: Option<u64>) -> Result<sled::Db> {
    let mut config = sled::Config::new().path(path);
    if let Some(bytes) = cache_bytes {
        config = config.cache_capacity(bytes);
    }
    // A database closed a moment ago may still be locked by its flusher thread, which exits
    // shortly after the last handle is dropped (a restart in the same process): wait for it
    // briefly rather than fail.
    let mut attempts = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("could not acquire lock") =>
            {
                attempts += 1;
                if attempts >= 100 {
                    return Err(Error::Io(e));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.map_err(from_sled),
        }
    }
}

fn from_sled(e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) => Error::Io(io),
        other => Error::Backend(other.to_string()),
    }
}

/// The first thing that went wrong inside sled during one run of the body. Kept here rather than
/// trusted to the body's return value because a body may swallow the error it was given.
enum Fault {
    Conflict,
    Storage(sled::Error),
    /// Refused before reaching sled: the reserve is not free.
    NoSpace {
        available: u64,
        reserve: u64,
    },
}

struct SledTxn<'a> {
    tree: &'a TransactionalTree,
    fault: Option<Fault>,
    revision: Option<u64>,
    reserve: &'a Reserve,
    /// Whether this run of the body has checked the reserve (once, at its first write).
    checked: bool,
}

impl SledTxn<'_> {
    fn before_write(&mut self) -> Result<()> {
        if self.checked {
            return Ok(());
        }
        self.checked = true;
        if let Err(Error::NoSpace { available, reserve }) = self.reserve.check_metadata() {
            self.fault
                .get_or_insert(Fault::NoSpace { available, reserve });
        }
        match &self.fault {
            Some(Fault::NoSpace { available, reserve }) => Err(Error::NoSpace {
                available: *available,
                reserve: *reserve,
            }),
            _ => Ok(()),
        }
    }

    fn check<T>(&mut self, r: std::result::Result<T, UnabortableTransactionError>) -> Result<T> {
        r.map_err(|e| {
            let (fault, err) = match e {
                UnabortableTransactionError::Conflict => (Fault::Conflict, Error::Conflict),
                UnabortableTransactionError::Storage(e) => {
                    let err = from_sled(e.clone());
                    (Fault::Storage(e), err)
                }
            };
            self.fault.get_or_insert(fault);
            err
        })
    }
}

impl Txn for SledTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let r = self.tree.get(key);
        Ok(self.check(r)?.map(|v| v.to_vec()))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.before_write()?;
        let r = self.tree.insert(key, value);
        self.check(r).map(drop)
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.before_write()?;
        let r = self.tree.remove(key);
        self.check(r).map(drop)
    }

    fn revision(&mut self) -> Result<u64> {
        if let Some(r) = self.revision {
            return Ok(r);
        }
        let r = crate::metadata::take_revision(self)?;
        self.revision = Some(r);
        Ok(r)
    }
}

impl MetadataStore for SledMetadata {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .reader()?
            .get(key)
            .map_err(from_sled)?
            .map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let db = self.reader()?;
        // Every key with the prefix sorts at or after the prefix itself, so an `after` below it
        // excludes nothing.
        let iter = match after {
            Some(after) if after >= prefix => {
                db.range::<&[u8], _>((Bound::Excluded(after), Bound::Unbounded))
            }
            _ => db.scan_prefix(prefix),
        };
        let mut out = Vec::new();
        for entry in iter {
            let (k, v) = entry.map_err(from_sled)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// sled wants an `Fn` it may rerun after a conflict; the body is `FnMut`, so it sits in a
    /// `RefCell` (sled never reenters the closure). sled 0.34 runs every transaction of the
    /// process under one global lock whose read side its plain reads take, so the body must
    /// not call back into the store.
    fn transact_dyn(&self, body: &mut TxBody<'_>) -> std::result::Result<(), TxBodyError> {
        let db = self.writer().map_err(TxBodyError::Storage)?;
        // Read before the commit: a reopen after it must make the flush fail.
        let generation = self.generation.load(Ordering::Acquire);
        let body = RefCell::new(body);
        let attempts = Cell::new(0u32);
        let result = db.transaction(|tree| {
            attempts.set(attempts.get() + 1);
            let mut txn = SledTxn {
                tree,
                fault: None,
                revision: None,
                reserve: &self.reserve,
                checked: false,
            };
            let outcome = (body.borrow_mut())(&mut txn);
            match (txn.fault, outcome) {
                (Some(Fault::Storage(e)), _) => Err(ConflictableTransactionError::Storage(e)),
                (Some(Fault::NoSpace { available, reserve }), _) => {
                    Err(ConflictableTransactionError::Abort(TxBodyError::Storage(
                        Error::NoSpace { available, reserve },
                    )))
                }
                (Some(Fault::Conflict), _) | (None, Err(TxBodyError::Storage(Error::Conflict))) => {
                    if attempts.get() < MAX_ATTEMPTS {
                        Err(ConflictableTransactionError::Conflict)
                    } else {
                        Err(ConflictableTransactionError::Abort(TxBodyError::Storage(
                            Error::Conflict,
                        )))
                    }
                }
                (None, Ok(())) => Ok(()),
                (None, Err(e)) => Err(ConflictableTransactionError::Abort(e)),
            }
        });
        match result {
            Ok(()) => {
                let me = self as *const Self as usize;
                UNFLUSHED.with(|u| u.set(Some((me, generation))));
                Ok(())
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => {
                self.note(&e);
                Err(TxBodyError::Storage(from_sled(e)))
            }
        }
    }

    /// Never reopens: the commits it must make durable live in the current instance.
    fn flush(&self) -> Result<()> {
        let me = self as *const Self as usize;
        let generation = self.generation.load(Ordering::Acquire);
        let unflushed = UNFLUSHED.with(|u| u.take());
        if matches!(unflushed, Some((store, g)) if store == me && g != generation) {
            return Err(Error::Backend(
                "the metadata store was reopened after a failed write before this write was \
                 flushed; it may be lost"
                    .into(),
            ));
        }
        self.reader()?.flush().map(drop).map_err(|e| {
            self.note(&e);
            from_sled(e)
        })
    }

    fn writable(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
    }

    fn size_on_disk(&self) -> Result<Option<u64>> {
        self.reader()?.size_on_disk().map(Some).map_err(from_sled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{MetadataStoreExt, TxError};

    #[test]
    fn metadata_suite_on_sled() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = SledMetadata::open(&dir.path().join("nested/db")).unwrap();
        crate::testsuite::metadata_suite(&store);
    }

    #[test]
    fn metadata_suite_on_temporary_sled() {
        crate::testsuite::metadata_suite(&SledMetadata::open_temporary().unwrap());
    }

    fn put_pair(store: &SledMetadata, i: u64) {
        store
            .transaction(|tx| {
                tx.put(format!("a/{i:08}").as_bytes(), &i.to_be_bytes())?;
                tx.put(format!("b/{i:08}").as_bytes(), &i.to_be_bytes())?;
                Ok::<_, TxError<()>>(())
            })
            .unwrap();
    }

    /// Every `a/` key has its `b/` twin and vice versa, and `0..acknowledged` are all there.
    fn check_pairs(store: &SledMetadata, acknowledged: u64) -> usize {
        let a = store.scan(b"a/", None, usize::MAX).unwrap();
        let b = store.scan(b"b/", None, usize::MAX).unwrap();
        let suffixes = |v: &[(Vec<u8>, Vec<u8>)]| -> Vec<Vec<u8>> {
            v.iter().map(|(k, _)| k[2..].to_vec()).collect()
        };
        assert_eq!(suffixes(&a), suffixes(&b), "a transaction was half-applied");
        for i in 0..acknowledged {
            let key = format!("a/{i:08}");
            assert!(
                store.get(key.as_bytes()).unwrap().is_some(),
                "flushed {key} lost"
            );
        }
        a.len()
    }

    #[test]
    fn writes_are_refused_below_the_reserve_and_reads_go_on() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = SledMetadata::open(dir.path()).unwrap();
        put_pair(&store, 1);
        let store = store.with_reserve(u64::MAX);
        let r = store.transaction(|tx| {
            // A body that swallows the refusal still does not commit.
            let _ = tx.put(b"a/x", b"1");
            tx.put(b"b/x", b"1").ok();
            Ok::<_, TxError<()>>(())
        });
        match r {
            Err(TxError::Storage(e)) => assert!(e.is_disk_full(), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(check_pairs(&store, 0), 1);
        assert!(store.writable(), "a refusal is not a failure of the store");
        // Transactions that only read still run.
        let read = store.transaction(|tx| Ok::<_, TxError<()>>(tx.get(b"a/00000001")?.is_some()));
        assert!(read.unwrap());
    }

    #[test]
    fn flushed_transactions_survive_reopen() {
        let dir = tempfile::TempDir::new().unwrap();
        {
            let store = SledMetadata::open(dir.path()).unwrap();
            for i in 0..200 {
                put_pair(&store, i);
            }
            store.flush().unwrap();
        }
        let store = SledMetadata::open(dir.path()).unwrap();
        assert_eq!(check_pairs(&store, 200), 200);
    }

    const CRASH_DIR_ENV: &str = "BERTH_SLED_CRASH_WRITER_DIR";

    /// The child half of `kill9_keeps_flushed_and_atomic`: writes pairs forever, reporting
    /// each flushed count on stdout, until it is killed. Does nothing when run directly.
    #[test]
    #[ignore = "helper process for kill9_keeps_flushed_and_atomic"]
    fn crash_writer_child() {
        let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
            return;
        };
        let store = SledMetadata::open(Path::new(&dir)).unwrap();
        for i in 0.. {
            put_pair(&store, i);
            if i % 16 == 15 {
                store.flush().unwrap();
                println!("flushed {}", i + 1);
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn kill9_keeps_flushed_and_atomic() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        use std::time::{Duration, SystemTime, UNIX_EPOCH};

        let dir = tempfile::TempDir::new().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "sled_store::tests::crash_writer_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A reader thread keeps draining the pipe, so the writer never blocks on stdout and
        // the kill lands wherever it happens to be.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Some(n) = line.strip_prefix("flushed ").and_then(|n| n.parse().ok()) {
                    if tx.send(n).is_err() {
                        break;
                    }
                }
            }
        });
        let mut acknowledged = 0;
        while acknowledged < 320 {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(n) => acknowledged = n,
                Err(_) => break,
            }
        }
        let jitter = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 20;
        std::thread::sleep(Duration::from_millis(jitter.into()));
        // Child::kill sends SIGKILL: no destructor or final flush runs in the writer.
        child.kill().unwrap();
        child.wait().unwrap();
        // Counts reported before the kill are acknowledged too.
        acknowledged = rx.try_iter().fold(acknowledged, u64::max);
        assert!(acknowledged >= 320, "writer stopped early");

        let store = SledMetadata::open(dir.path()).unwrap();
        let present = check_pairs(&store, acknowledged);
        assert!(present as u64 >= acknowledged);
    }
}
