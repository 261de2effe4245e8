//! The metadata store: one ordered key/value space with serializable transactions.
//!
//! Keys are byte strings; callers build them as `<keyspace>\0<part>\0<part>` so that a prefix
//! scan lists one keyspace (or one repository inside it) in byte order. The trait is small on
//! purpose: sled (embedded) and etcd (shared by replicas: range reads plus compare-and-swap
//! transactions) implement it without the layers above knowing which one they have.

use crate::error::{Error, Result};

/// Reads and writes inside one transaction. Reads see the transaction's own writes.
pub trait Txn {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    fn delete(&mut self, key: &[u8]) -> Result<()>;

    /// The store revision this transaction commits at: one more than the newest committed
    /// transaction that took one, the same number on every call. A transaction that never asks
    /// takes none, and an aborted one gives its number back, so committed revisions have no
    /// gaps. (etcd has such a revision natively; sled keeps one under a reserved key.)
    fn revision(&mut self) -> Result<u64>;
}

/// Where the embedded backends keep the revision: outside every keyspace callers scan.
pub const REVISION_KEY: &[u8] = b"\xff\xffrevision";

fn decode_revision(value: Option<Vec<u8>>) -> Result<u64> {
    match value {
        None => Ok(0),
        Some(v) => Ok(u64::from_be_bytes(v.as_slice().try_into().map_err(
            |_| Error::Corrupt {
                kind: "revision",
                reason: format!("{} bytes, not 8", v.len()),
            },
        )?)),
    }
}

/// Takes the next revision in `tx` (the embedded backends' [`Txn::revision`], called once).
pub(crate) fn take_revision(tx: &mut dyn Txn) -> Result<u64> {
    let next = decode_revision(tx.get(REVISION_KEY)?)? + 1;
    tx.put(REVISION_KEY, &next.to_be_bytes())?;
    Ok(next)
}

/// Raises the store's revision to at least `floor` (taking over a counter kept elsewhere by
/// an older format). Later transactions commit above it.
pub fn raise_revision(tx: &mut dyn Txn, floor: u64) -> Result<()> {
    if decode_revision(tx.get(REVISION_KEY)?)? < floor {
        tx.put(REVISION_KEY, &floor.to_be_bytes())?;
    }
    Ok(())
}

/// Why a transaction closure stopped: the caller's own reason, or a storage fault.
#[derive(Debug)]
pub enum TxError<E> {
    Abort(E),
    Storage(Error),
}

impl<E> From<Error> for TxError<E> {
    fn from(e: Error) -> Self {
        TxError::Storage(e)
    }
}

pub type TxBody<'a> = dyn FnMut(&mut dyn Txn) -> std::result::Result<(), TxBodyError> + 'a;

/// What a dyn transaction body may return: abort (reason kept by the caller) or a storage error.
#[derive(Debug)]
pub enum TxBodyError {
    Aborted,
    Storage(Error),
}

pub trait MetadataStore: Send + Sync + 'static {
    /// The value at `key`, outside any transaction.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Entries whose key starts with `prefix` and is strictly greater than `after` (when given),
    /// in ascending byte order, at most `limit` of them.
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Runs `body` atomically and in isolation. The backend may run it more than once when it
    /// loses a race, so `body` must not have effects outside the `Txn` it is given. When `body`
    /// returns `Err(TxBodyError::Aborted)` nothing is written and `Err(TxBodyError::Aborted)`
    /// comes back. A committed transaction is durable only after [`MetadataStore::flush`].
    fn transact_dyn(&self, body: &mut TxBody<'_>) -> std::result::Result<(), TxBodyError>;

    /// Makes every committed transaction durable (fsync).
    fn flush(&self) -> Result<()>;

    /// Whether writes can succeed now as far as the store knows (false after a failure it has
    /// not recovered from yet).
    fn writable(&self) -> bool {
        true
    }

    /// Bytes the store occupies on disk; `None` for stores that keep nothing there.
    fn size_on_disk(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Whether other processes write this store too (replicas sharing etcd): then what they
    /// commit is learned from the store ([`MetadataStore::watch_prefix`]), not in-process.
    fn shared(&self) -> bool {
        false
    }

    /// Calls `wake` (on another thread, possibly spuriously, and once more after every
    /// reconnection) whenever a key under `prefix` may have changed, until the store is
    /// dropped. `false` when the store has no way to tell (it is not [`MetadataStore::shared`]).
    fn watch_prefix(&self, _prefix: &[u8], _wake: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool {
        false
    }

    /// The revision of the newest committed transaction that took one (0 on a new store).
    fn revision(&self) -> Result<u64> {
        decode_revision(self.get(REVISION_KEY)?)
    }
}

/// Typed transactions over any `MetadataStore`.
pub trait MetadataStoreExt {
    /// Runs `body` as one transaction; its value or its abort reason comes back typed.
    fn transaction<T, E>(
        &self,
        body: impl FnMut(&mut dyn Txn) -> std::result::Result<T, TxError<E>>,
    ) -> std::result::Result<T, TxError<E>>;

    /// Calls `f` for every entry under `prefix` in key order, a page at a time, so a walk of a
    /// whole keyspace holds one page in memory.
    fn visit<E: From<Error>>(
        &self,
        prefix: &[u8],
        f: impl FnMut(&[u8], &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E>;
}

/// Entries per page of [`MetadataStoreExt::visit`].
const VISIT_PAGE: usize = 500;

impl<S: MetadataStore + ?Sized> MetadataStoreExt for S {
    fn visit<E: From<Error>>(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.scan(prefix, after.as_deref(), VISIT_PAGE)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            for (k, v) in &page {
                f(k, v)?;
            }
        }
    }

    fn transaction<T, E>(
        &self,
        mut body: impl FnMut(&mut dyn Txn) -> std::result::Result<T, TxError<E>>,
    ) -> std::result::Result<T, TxError<E>> {
        let mut outcome: Option<std::result::Result<T, TxError<E>>> = None;
        let result = self.transact_dyn(&mut |tx| {
            outcome = None;
            match body(tx) {
                Ok(v) => {
                    outcome = Some(Ok(v));
                    Ok(())
                }
                Err(TxError::Storage(Error::Conflict)) => {
                    Err(TxBodyError::Storage(Error::Conflict))
                }
                Err(e) => {
                    outcome = Some(Err(e));
                    Err(TxBodyError::Aborted)
                }
            }
        });
        match result {
            Ok(()) | Err(TxBodyError::Aborted) => outcome.unwrap_or_else(|| {
                Err(TxError::Storage(Error::Backend(
                    "transaction finished without running its body".into(),
                )))
            }),
            Err(TxBodyError::Storage(e)) => Err(TxError::Storage(e)),
        }
    }
}
