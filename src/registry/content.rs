//! The one owner of blob, manifest and link records and of the reference counts they carry.
//!
//! Every change of a reference (a repository linking a blob or manifest, a manifest holding a
//! blob, an index holding a child) goes through here, in the transaction that makes it, so the
//! counts garbage collection reads are exact. An object whose counts reach zero goes on the
//! review queue; the collector re-checks it in its own transaction before deleting anything,
//! so a concurrent push either keeps it (its link lands first) or finds it gone (a clean
//! BLOB_UNKNOWN).

use berth_storage::record::{decode, encode};
use berth_storage::{Digest, Record, TxError, Txn};

use super::manifest;
use super::names::RepositoryName;
use super::records::{
    keys, BlobRecord, Link, ManifestRecord, RepositoryRecord, Review, ReviewKind,
};

/// A read (HEAD, GET) refreshes an object's grace period at most this often, so pulls do not
/// turn into a write each.
pub const TOUCH_EVERY_SECS: u64 = 60;

type TxResult<T, E> = Result<T, TxError<E>>;

fn get<R: Record, E>(tx: &mut dyn Txn, key: &[u8]) -> TxResult<Option<R>, E> {
    match tx.get(key)? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

fn enqueue<E>(tx: &mut dyn Txn, kind: ReviewKind, d: &Digest, since: u64) -> TxResult<(), E> {
    tx.put(&keys::review(kind, d), &encode(&Review { since }))?;
    Ok(())
}

impl BlobRecord {
    pub fn unreferenced(&self) -> bool {
        self.links == 0 && self.manifests == 0
    }
}

impl ManifestRecord {
    pub fn unreferenced(&self) -> bool {
        self.links == 0 && self.parents == 0
    }

    /// The config and layer digests and the child manifests this manifest names.
    pub fn names(&self) -> (Vec<Digest>, Vec<Digest>) {
        match manifest::parse(Some(&self.media_type), self.content.as_bytes()) {
            Ok(m) => (
                m.config
                    .iter()
                    .chain(m.layers.iter())
                    .map(|d| d.digest.clone())
                    .collect(),
                m.manifests.iter().map(|d| d.digest.clone()).collect(),
            ),
            // Stored manifests were valid when stored; an unreadable one holds nothing.
            Err(_) => (Vec::new(), Vec::new()),
        }
    }
}

/// Records a verified blob (or refreshes an existing record's grace period).
pub fn put_blob<E>(tx: &mut dyn Txn, digest: &Digest, size: u64, now: u64) -> TxResult<(), E> {
    let key = keys::blob(digest);
    let record = match get::<BlobRecord, E>(tx, &key)? {
        Some(r) => BlobRecord { touched: now, ..r },
        None => BlobRecord {
            size,
            links: 0,
            manifests: 0,
            touched: now,
        },
    };
    tx.put(&key, &encode(&record))?;
    Ok(())
}

/// Links a blob berth holds into `repo`. Returns false when berth holds no such blob.
pub fn link_blob<E>(
    tx: &mut dyn Txn,
    repo: &RepositoryName,
    digest: &Digest,
    now: u64,
) -> TxResult<bool, E> {
    let key = keys::blob(digest);
    let Some(mut record) = get::<BlobRecord, E>(tx, &key)? else {
        return Ok(false);
    };
    let link = keys::repo_blob(repo, digest);
    if tx.get(&link)?.is_none() {
        tx.put(&link, &encode(&Link {}))?;
        record.links += 1;
    }
    record.touched = now;
    tx.put(&key, &encode(&record))?;
    Ok(true)
}

/// Removes `repo`'s link to a blob. Returns whether there was one.
pub fn unlink_blob<E>(
    tx: &mut dyn Txn,
    repo: &RepositoryName,
    digest: &Digest,
    now: u64,
) -> TxResult<bool, E> {
    let link = keys::repo_blob(repo, digest);
    if tx.get(&link)?.is_none() {
        return Ok(false);
    }
    tx.delete(&link)?;
    let key = keys::blob(digest);
    if let Some(mut record) = get::<BlobRecord, E>(tx, &key)? {
        record.links = record.links.saturating_sub(1);
        tx.put(&key, &encode(&record))?;
        if record.unreferenced() {
            enqueue(tx, ReviewKind::Blob, digest, now)?;
        }
    }
    Ok(true)
}

/// Restarts a blob's grace period because a client was told it exists (a HEAD before a push):
/// what it was told must still hold when its manifest arrives.
pub fn touch_blob<E>(tx: &mut dyn Txn, digest: &Digest, now: u64) -> TxResult<(), E> {
    let key = keys::blob(digest);
    if let Some(mut record) = get::<BlobRecord, E>(tx, &key)? {
        if now.saturating_sub(record.touched) >= TOUCH_EVERY_SECS {
            record.touched = now;
            tx.put(&key, &encode(&record))?;
        }
    }
    Ok(())
}

/// Whether a blob's grace period is stale enough for a read to refresh it.
pub fn needs_touch(record: &BlobRecord, now: u64) -> bool {
    now.saturating_sub(record.touched) >= TOUCH_EVERY_SECS
}

/// Keeps a manifest's exact bytes (once: manifests are content-addressed). The first store
/// counts the blobs and child manifests berth holds as held by it. Returns whether this was
/// the first time.
pub fn store_manifest<E>(
    tx: &mut dyn Txn,
    digest: &Digest,
    media_type: &str,
    content: &str,
    subject: Option<Digest>,
    now: u64,
) -> TxResult<bool, E> {
    let key = keys::manifest(digest);
    if let Some(mut existing) = get::<ManifestRecord, E>(tx, &key)? {
        if now.saturating_sub(existing.touched) >= TOUCH_EVERY_SECS {
            existing.touched = now;
            tx.put(&key, &encode(&existing))?;
        }
        return Ok(false);
    }
    let mut record = ManifestRecord {
        media_type: media_type.to_string(),
        content: content.to_string(),
        subject,
        links: 0,
        parents: 0,
        touched: now,
        holds: Vec::new(),
        holds_manifests: Vec::new(),
    };
    let (mut blobs, mut children) = record.names();
    blobs.sort();
    blobs.dedup();
    children.sort();
    children.dedup();
    for b in blobs {
        let bkey = keys::blob(&b);
        if let Some(mut blob) = get::<BlobRecord, E>(tx, &bkey)? {
            blob.manifests += 1;
            tx.put(&bkey, &encode(&blob))?;
            record.holds.push(b);
        }
    }
    for c in children {
        let ckey = keys::manifest(&c);
        if let Some(mut child) = get::<ManifestRecord, E>(tx, &ckey)? {
            child.parents += 1;
            tx.put(&ckey, &encode(&child))?;
            record.holds_manifests.push(c);
        }
    }
    tx.put(&key, &encode(&record))?;
    Ok(true)
}

/// Links a stored manifest into `repo` and bumps the repository's generation (even when the
/// link existed: a re-push may put the manifest back into the stream's history). Returns false
/// when berth holds no such manifest.
pub fn link_manifest<E>(
    tx: &mut dyn Txn,
    repo: &RepositoryName,
    digest: &Digest,
    now: u64,
) -> TxResult<bool, E> {
    let key = keys::manifest(digest);
    let Some(mut record) = get::<ManifestRecord, E>(tx, &key)? else {
        return Ok(false);
    };
    let link = keys::repo_manifest(repo, digest);
    let new = tx.get(&link)?.is_none();
    if new {
        tx.put(&link, &encode(&Link {}))?;
        record.links += 1;
    }
    if new || now.saturating_sub(record.touched) >= TOUCH_EVERY_SECS {
        record.touched = now;
        tx.put(&key, &encode(&record))?;
    }
    bump_generation(tx, repo, now)?;
    Ok(true)
}

/// Whether `repo` links the manifest.
pub fn manifest_linked<E>(
    tx: &mut dyn Txn,
    repo: &RepositoryName,
    digest: &Digest,
) -> TxResult<bool, E> {
    Ok(tx.get(&keys::repo_manifest(repo, digest))?.is_some())
}

/// Removes `repo`'s link to a manifest and its referrer entry. Returns whether there was one.
pub fn unlink_manifest<E>(
    tx: &mut dyn Txn,
    repo: &RepositoryName,
    digest: &Digest,
    now: u64,
) -> TxResult<bool, E> {
    let link = keys::repo_manifest(repo, digest);
    if tx.get(&link)?.is_none() {
        return Ok(false);
    }
    tx.delete(&link)?;
    let key = keys::manifest(digest);
    if let Some(mut record) = get::<ManifestRecord, E>(tx, &key)? {
        if let Some(subject) = &record.subject {
            tx.delete(&keys::referrer(repo, subject, digest))?;
        }
        record.links = record.links.saturating_sub(1);
        tx.put(&key, &encode(&record))?;
        if record.unreferenced() {
            enqueue(tx, ReviewKind::Manifest, digest, now)?;
        }
    }
    bump_generation(tx, repo, now)?;
    Ok(true)
}

/// An Image (the API object) of this manifest was deleted: the manifest may now go, if nothing
/// else keeps it.
pub fn image_released<E>(tx: &mut dyn Txn, digest: &Digest, now: u64) -> TxResult<(), E> {
    if let Some(record) = get::<ManifestRecord, E>(tx, &keys::manifest(digest))? {
        if record.unreferenced() {
            enqueue(tx, ReviewKind::Manifest, digest, now)?;
        }
    }
    Ok(())
}

/// The repository's generation (see [`RepositoryRecord::generation`]); 0 for none.
pub fn generation<E>(tx: &mut dyn Txn, repo: &RepositoryName) -> TxResult<u64, E> {
    Ok(get::<RepositoryRecord, E>(tx, &keys::repository(repo))?.map_or(0, |r| r.generation))
}

fn bump_generation<E>(tx: &mut dyn Txn, repo: &RepositoryName, now: u64) -> TxResult<(), E> {
    let key = keys::repository(repo);
    let mut record = get::<RepositoryRecord, E>(tx, &key)?.unwrap_or(RepositoryRecord {
        created: now,
        generation: 0,
    });
    record.generation += 1;
    tx.put(&key, &encode(&record))?;
    Ok(())
}

/// What reviewing a queued object found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Gone or referenced again: off the queue.
    Keep,
    /// Unreferenced but inside its grace period, which started at `since`: back on the queue.
    Wait { since: u64 },
    /// Deleted from the metadata (a blob's bytes are the caller's to remove, after the commit).
    Deleted { size: u64 },
}

/// Deletes a blob record if nothing references it and its grace period is over; takes the
/// review entry off the queue (or moves it to when the grace period ends).
pub fn collect_blob<E>(
    tx: &mut dyn Txn,
    digest: &Digest,
    now: u64,
    delay: u64,
) -> TxResult<Verdict, E> {
    let review = keys::review(ReviewKind::Blob, digest);
    let key = keys::blob(digest);
    let verdict = match get::<BlobRecord, E>(tx, &key)? {
        Some(r) if r.unreferenced() && r.touched.saturating_add(delay) > now => {
            Verdict::Wait { since: r.touched }
        }
        Some(r) if r.unreferenced() => {
            tx.delete(&key)?;
            Verdict::Deleted { size: r.size }
        }
        _ => Verdict::Keep,
    };
    settle(tx, &review, &verdict)?;
    Ok(verdict)
}

/// Deletes a manifest record if no repository links it, no stored index holds it and no Image
/// names it (`image_exists`), once its grace period is over; releases what it held.
pub fn collect_manifest<E>(
    tx: &mut dyn Txn,
    digest: &Digest,
    image_exists: bool,
    now: u64,
    delay: u64,
) -> TxResult<Verdict, E> {
    let review = keys::review(ReviewKind::Manifest, digest);
    let key = keys::manifest(digest);
    let verdict = match get::<ManifestRecord, E>(tx, &key)? {
        Some(r) if !r.unreferenced() || image_exists => Verdict::Keep,
        Some(r) if r.touched.saturating_add(delay) > now => Verdict::Wait { since: r.touched },
        Some(r) => {
            tx.delete(&key)?;
            for b in &r.holds {
                let bkey = keys::blob(b);
                if let Some(mut blob) = get::<BlobRecord, E>(tx, &bkey)? {
                    blob.manifests = blob.manifests.saturating_sub(1);
                    tx.put(&bkey, &encode(&blob))?;
                    if blob.unreferenced() {
                        enqueue(tx, ReviewKind::Blob, b, now)?;
                    }
                }
            }
            for c in &r.holds_manifests {
                let ckey = keys::manifest(c);
                if let Some(mut child) = get::<ManifestRecord, E>(tx, &ckey)? {
                    child.parents = child.parents.saturating_sub(1);
                    tx.put(&ckey, &encode(&child))?;
                    if child.unreferenced() {
                        enqueue(tx, ReviewKind::Manifest, c, now)?;
                    }
                }
            }
            Verdict::Deleted {
                size: r.content.len() as u64,
            }
        }
        None => Verdict::Keep,
    };
    settle(tx, &review, &verdict)?;
    Ok(verdict)
}

fn settle<E>(tx: &mut dyn Txn, review: &[u8], verdict: &Verdict) -> TxResult<(), E> {
    match verdict {
        Verdict::Wait { since } => tx.put(review, &encode(&Review { since: *since }))?,
        _ => tx.delete(review)?,
    }
    Ok(())
}
