//! An in-memory [`MetadataStore`] for tests and throwaway registries. Nothing survives a restart.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};
use crate::metadata::{MetadataStore, TxBody, TxBodyError, Txn};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// How often a body that reports a conflict is rerun before the conflict is returned.
const MAX_ATTEMPTS: u32 = 100;

#[derive(Debug, Default)]
pub struct MemoryMetadata {
    map: Mutex<Map>,
}

impl MemoryMetadata {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Map> {
        // Transactions only touch the map once their body has succeeded, so a panic in a body
        // cannot leave it half-written: a poisoned lock still guards consistent data.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A transaction over the locked map: writes are staged (`None` = delete) and applied only when
/// the body succeeds, so an abort leaves nothing behind.
struct MemoryTxn<'a> {
    base: &'a Map,
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    revision: Option<u64>,
}

impl Txn for MemoryTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(match self.staged.get(key) {
            Some(staged) => staged.clone(),
            None => self.base.get(key).cloned(),
        })
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.staged.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.staged.insert(key.to_vec(), None);
        Ok(())
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

impl MetadataStore for MemoryMetadata {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let map = self.lock();
        // Every key with the prefix sorts at or after the prefix itself, so an `after` below it
        // excludes nothing.
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        Ok(map
            .range::<[u8], _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    /// Holds the store's lock for the whole body, which makes transactions trivially
    /// serializable; the body must therefore not call back into this store.
    fn transact_dyn(&self, body: &mut TxBody<'_>) -> std::result::Result<(), TxBodyError> {
        let mut map = self.lock();
        let mut attempts = 0;
        let staged = loop {
            attempts += 1;
            let mut txn = MemoryTxn {
                base: &map,
                staged: BTreeMap::new(),
                revision: None,
            };
            match body(&mut txn) {
                Ok(()) => break txn.staged,
                // Nothing here conflicts, but a body may report a conflict of its own; rerun it
                // like the other backends do, so callers see one behaviour.
                Err(TxBodyError::Storage(Error::Conflict)) if attempts < MAX_ATTEMPTS => {}
                Err(e) => return Err(e),
            }
        };
        for (key, value) in staged {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_suite_on_memory() {
        crate::testsuite::metadata_suite(&MemoryMetadata::new());
    }
}
