//! The metadata store: one ordered key/value space with serializable transactions.
//!
//! Keys are byte strings; callers build them as `<keyspace>\0<part>\0<part>` so that a prefix
//! scan lists one keyspace (or one repository inside it) in byte order. The trait is small on
//! purpose: sled implements it today, and an etcd backend (range reads plus compare-and-swap
//! transactions) can implement it later without touching the layers above.

use crate::error::{Error, Result};

/// Reads and writes inside one transaction. Reads see the transaction's own writes.
pub trait Txn {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    fn delete(&mut self, key: &[u8]) -> Result<()>;
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
}

/// Typed transactions over any `MetadataStore`.
pub trait MetadataStoreExt {
    /// Runs `body` as one transaction; its value or its abort reason comes back typed.
    fn transaction<T, E>(
        &self,
        body: impl FnMut(&mut dyn Txn) -> std::result::Result<T, TxError<E>>,
    ) -> std::result::Result<T, TxError<E>>;
}

impl<S: MetadataStore + ?Sized> MetadataStoreExt for S {
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
