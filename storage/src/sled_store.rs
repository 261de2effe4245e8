//! The sled-backed [`MetadataStore`]: everything lives in the default tree of one `sled::Db`.

use std::cell::{Cell, RefCell};
use std::ops::Bound;
use std::path::Path;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use crate::error::{Error, Result};
use crate::metadata::{MetadataStore, TxBody, TxBodyError, Txn};

/// How often a transaction is rerun after conflicts before `Error::Conflict` is reported.
/// sled 0.34 serializes transactions behind a global lock, so real conflicts are not expected;
/// the cap only keeps a body that keeps reporting one from spinning forever.
const MAX_ATTEMPTS: u32 = 100;

pub struct SledMetadata {
    db: sled::Db,
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
        let mut config = sled::Config::new().path(path);
        if let Some(bytes) = cache_bytes {
            config = config.cache_capacity(bytes);
        }
        let db = config.open().map_err(from_sled)?;
        Ok(Self { db })
    }

    /// A database that lives in a temporary directory removed on drop.
    pub fn open_temporary() -> Result<Self> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(from_sled)?;
        Ok(Self { db })
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
}

struct SledTxn<'a> {
    tree: &'a TransactionalTree,
    fault: Option<Fault>,
    revision: Option<u64>,
}

impl SledTxn<'_> {
    fn check<T>(&mut self, r: std::result::Result<T, UnabortableTransactionError>) -> Result<T> {
        r.map_err(|e| {
            let (fault, err) = match e {
                UnabortableTransactionError::Conflict => (Fault::Conflict, Error::Conflict),
                UnabortableTransactionError::Storage(e) => {
                    let err = Error::Backend(e.to_string());
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
        let r = self.tree.insert(key, value);
        self.check(r).map(drop)
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
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
        Ok(self.db.get(key).map_err(from_sled)?.map(|v| v.to_vec()))
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
        // Every key with the prefix sorts at or after the prefix itself, so an `after` below it
        // excludes nothing.
        let iter = match after {
            Some(after) if after >= prefix => self
                .db
                .range::<&[u8], _>((Bound::Excluded(after), Bound::Unbounded)),
            _ => self.db.scan_prefix(prefix),
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
        let body = RefCell::new(body);
        let attempts = Cell::new(0u32);
        let result = self.db.transaction(|tree| {
            attempts.set(attempts.get() + 1);
            let mut txn = SledTxn {
                tree,
                fault: None,
                revision: None,
            };
            let outcome = (body.borrow_mut())(&mut txn);
            match (txn.fault, outcome) {
                (Some(Fault::Storage(e)), _) => Err(ConflictableTransactionError::Storage(e)),
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
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(TxBodyError::Storage(from_sled(e))),
        }
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(from_sled)
    }

    fn size_on_disk(&self) -> Result<Option<u64>> {
        self.db.size_on_disk().map(Some).map_err(from_sled)
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
