//! Garbage collection: deletes blobs and manifests nothing references, online.
//!
//! Candidates come from the review queue that `content` fills in the transactions that drop a
//! last reference, so a pass costs what changed, not the size of the store. Each candidate is
//! re-checked and deleted in the transaction that decides it (a concurrent push either links it
//! first and keeps it, or finds it gone; blobs are decided in batches sharing one flush); a
//! blob's bytes go only after its record, so a crash in between leaves an orphan file for the
//! sweep, never a record without bytes. The grace period (`delay`)
//! protects what was just written, linked or checked by a client.
//!
//! `recount` rebuilds every count from the records (a store written before counts existed, or a
//! repair with `berth adm gc --full`); writes wait while it runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_storage::record::{decode, encode};
use berth_storage::{Digest, MetadataStore, MetadataStoreExt, TxError};
use serde::Serialize;
use tokio::sync::{Mutex, MutexGuard, OwnedRwLockReadGuard, RwLock};

use super::content::{self, Verdict};
use super::error::{Error, Result};
use super::records::{keys, now_secs, BlobRecord, GcState, ManifestRecord, Review, ReviewKind};
use super::service::Registry;
use crate::imagestream::store::keys as is_keys;

/// Keys written per transaction when counts are rebuilt (well inside etcd's 128 operations).
const BATCH: usize = 100;
const PAGE: usize = 500;
/// Blob candidates decided per transaction, so one flush serves them all; each costs about
/// three operations, inside etcd's 128.
const COLLECT_BATCH: usize = 32;
/// Candidates reviewed per pass.
const MAX_PER_PASS: usize = 10_000;

/// Striped locks that serialize a blob's commit (bytes renamed into place, then the record
/// written) with the removal of its bytes by collection or the orphan sweep, which check under
/// the lock that no record names them, in this process.
pub struct BlobLocks(Vec<Mutex<()>>);

impl Default for BlobLocks {
    fn default() -> Self {
        BlobLocks((0..64).map(|_| Mutex::new(())).collect())
    }
}

impl BlobLocks {
    pub async fn lock(&self, digest: &Digest) -> MutexGuard<'_, ()> {
        let stripe = digest
            .hex()
            .bytes()
            .take(4)
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        self.0[stripe % self.0.len()].lock().await
    }
}

/// Writes hold it shared; rebuilding the counts holds it exclusively, so no write sees a
/// half-rebuilt count.
#[derive(Clone, Default)]
pub struct WriteGate(Arc<RwLock<()>>);

impl WriteGate {
    pub async fn shared(&self) -> OwnedRwLockReadGuard<()> {
        self.0.clone().read_owned().await
    }
}

/// What one pass did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dry_run: bool,
    pub blobs_deleted: Vec<String>,
    pub bytes_deleted: u64,
    pub manifests_deleted: Vec<String>,
    pub orphans_deleted: Vec<String>,
    /// Candidates still inside their grace period.
    pub pending: u64,
    /// Counts found wrong and rebuilt by a full pass.
    pub counts_repaired: u64,
}

/// `berth adm gc status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub delay_seconds: u64,
    pub pending: u64,
    #[serde(flatten)]
    pub totals: GcState,
}

#[derive(Clone)]
pub struct Collector {
    registry: Registry,
    delay: u64,
}

impl Collector {
    pub fn new(registry: Registry, delay: Duration) -> Self {
        Collector {
            registry,
            delay: delay.as_secs(),
        }
    }

    pub fn delay(&self) -> u64 {
        self.delay
    }

    fn meta(&self) -> &Arc<dyn MetadataStore> {
        self.registry.metadata()
    }

    pub fn status(&self) -> Result<Status> {
        let meta = self.meta().clone();
        let mut pending = 0;
        meta.visit::<berth_storage::Error>(&keys::reviews(), |_, _| {
            pending += 1;
            Ok(())
        })?;
        Ok(Status {
            delay_seconds: self.delay,
            pending,
            totals: read_state(meta.as_ref())?,
        })
    }

    /// Reviews the queued candidates whose grace period is over, at most `MAX_PER_PASS` (the
    /// rest wait for the next pass, counted as pending), so a pass holds a bounded list.
    pub async fn collect(&self) -> Result<Report> {
        let now = now_secs();
        let mut report = Report::default();
        let mut due = Vec::new();
        self.meta()
            .visit::<berth_storage::Error>(&keys::reviews(), |k, v| {
                let review: Review = decode(v)?;
                let Some((kind, digest)) = parse_review_key(k) else {
                    return Ok(());
                };
                if review.since.saturating_add(self.delay) <= now && due.len() < MAX_PER_PASS {
                    due.push((kind, digest));
                } else {
                    report.pending += 1;
                }
                Ok(())
            })?;
        let mut blobs = Vec::with_capacity(COLLECT_BATCH);
        for (kind, digest) in due {
            match kind {
                ReviewKind::Blob => {
                    blobs.push(digest);
                    if blobs.len() == COLLECT_BATCH {
                        self.collect_blobs(std::mem::take(&mut blobs), now, &mut report)
                            .await?;
                    }
                }
                ReviewKind::Manifest => self.collect_manifest(&digest, now, &mut report).await?,
            }
        }
        if !blobs.is_empty() {
            self.collect_blobs(blobs, now, &mut report).await?;
        }
        self.record(&report, false).await?;
        Ok(report)
    }

    /// Decides a batch of blob candidates in one transaction and one flush (a flush per blob
    /// capped a pass at about a thousand blobs a second), then removes the bytes of each record
    /// deleted. As in the orphan sweep, the bytes go under the blob's lock and only while no
    /// record names them: a push that committed the same digest after the transaction (its
    /// bytes and record under that lock) keeps them.
    async fn collect_blobs(
        &self,
        digests: Vec<Digest>,
        now: u64,
        report: &mut Report,
    ) -> Result<()> {
        let delay = self.delay;
        let batch = digests.clone();
        let verdicts = self
            .registry
            .write_as(move |tx| {
                batch
                    .iter()
                    .map(|d| content::collect_blob::<Error>(tx, d, now, delay))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .await?;
        for (digest, verdict) in digests.iter().zip(verdicts) {
            match verdict {
                Verdict::Deleted { size } => {
                    let _locked = self.registry.blob_locks().lock(digest).await;
                    if self.meta().get(&keys::blob(digest))?.is_some() {
                        continue;
                    }
                    // The record is gone and flushed: the bytes are no longer named by anything.
                    if let Err(e) = self.registry.blob_store().delete(digest).await {
                        tracing::warn!(%digest, error = %e, "blob bytes left for the orphan sweep");
                    }
                    report.blobs_deleted.push(digest.to_string());
                    report.bytes_deleted += size;
                }
                Verdict::Wait { .. } => report.pending += 1,
                Verdict::Keep => {}
            }
        }
        Ok(())
    }

    async fn collect_manifest(&self, digest: &Digest, now: u64, report: &mut Report) -> Result<()> {
        let (d, delay) = (digest.clone(), self.delay);
        let verdict = self
            .registry
            .write_as(move |tx| {
                let image = tx.get(&is_keys::image(&d.to_string()))?.is_some();
                content::collect_manifest::<Error>(tx, &d, image, now, delay)
            })
            .await?;
        match verdict {
            Verdict::Deleted { .. } => report.manifests_deleted.push(digest.to_string()),
            Verdict::Wait { .. } => report.pending += 1,
            Verdict::Keep => {}
        }
        Ok(())
    }

    /// Deletes blob files no record names, written longer ago than the grace period: what a
    /// crash between a record's deletion and its bytes' left behind.
    pub async fn sweep_orphans(&self, dry_run: bool, report: &mut Report) -> Result<()> {
        let cutoff = SystemTime::now() - Duration::from_secs(self.delay);
        let store = self.registry.blob_store().clone();
        let mut after: Option<Digest> = None;
        loop {
            let page = store.list_blobs(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            for blob in page {
                if blob.modified > cutoff {
                    continue;
                }
                let _locked = self.registry.blob_locks().lock(&blob.digest).await;
                if self.meta().get(&keys::blob(&blob.digest))?.is_some() {
                    continue;
                }
                if !dry_run {
                    store.delete(&blob.digest).await?;
                }
                report.orphans_deleted.push(blob.digest.to_string());
                report.bytes_deleted += blob.size;
            }
        }
        Ok(())
    }

    /// `berth adm gc --full`: rebuild every count, queue everything unreferenced, collect what
    /// is past its grace period and sweep orphan files. A dry run writes nothing and lists
    /// what would go now (not what deleting that would free in turn).
    pub async fn full(&self, dry_run: bool) -> Result<Report> {
        let mut report = Report {
            dry_run,
            ..Report::default()
        };
        {
            let _exclusive = self.registry.gate().0.clone().write_owned().await;
            let meta = self.meta().clone();
            let mode = if dry_run { Mode::Check } else { Mode::Repair };
            report.counts_repaired =
                tokio::task::spawn_blocking(move || recount(meta.as_ref(), mode))
                    .await
                    .map_err(|e| Error::Storage(berth_storage::Error::Backend(e.to_string())))??;
        }
        if dry_run {
            self.would_collect(&mut report)?;
        } else {
            let pass = self.collect().await?;
            report.blobs_deleted = pass.blobs_deleted;
            report.manifests_deleted = pass.manifests_deleted;
            report.bytes_deleted = pass.bytes_deleted;
            report.pending = pass.pending;
        }
        self.sweep_orphans(dry_run, &mut report).await?;
        if !dry_run {
            self.record(&report, true).await?;
        }
        Ok(report)
    }

    /// What a pass would delete now, from the records (the dry run of [`Collector::full`]).
    fn would_collect(&self, report: &mut Report) -> Result<()> {
        let now = now_secs();
        let meta = self.meta().clone();
        let past = |touched: u64| touched.saturating_add(self.delay) <= now;
        meta.visit::<berth_storage::Error>(&keys::blobs(), |k, v| {
            let r: BlobRecord = decode(v)?;
            if r.unreferenced() {
                if past(r.touched) {
                    report.blobs_deleted.push(last_part(k));
                    report.bytes_deleted += r.size;
                } else {
                    report.pending += 1;
                }
            }
            Ok(())
        })?;
        meta.visit::<berth_storage::Error>(&keys::manifests(), |k, v| {
            let r: ManifestRecord = decode(v)?;
            let name = last_part(k);
            if r.unreferenced() && meta.get(&is_keys::image(&name))?.is_none() {
                if past(r.touched) {
                    report.manifests_deleted.push(name);
                } else {
                    report.pending += 1;
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    async fn record(&self, report: &Report, full: bool) -> Result<()> {
        if report.blobs_deleted.is_empty()
            && report.manifests_deleted.is_empty()
            && report.orphans_deleted.is_empty()
            && !full
        {
            return Ok(());
        }
        let (blobs, manifests, orphans) = (
            report.blobs_deleted.len() as u64,
            report.manifests_deleted.len() as u64,
            report.orphans_deleted.len() as u64,
        );
        let bytes = report.bytes_deleted;
        self.registry
            .write_as(move |tx| {
                let key = keys::gc_state();
                let mut state: GcState = match tx.get(&key)? {
                    Some(v) => decode(&v)?,
                    None => GcState::default(),
                };
                state.blobs_deleted += blobs;
                state.manifests_deleted += manifests;
                state.orphans_deleted += orphans;
                state.bytes_deleted += bytes;
                state.last_run = now_secs();
                if full {
                    state.last_full_run = state.last_run;
                }
                tx.put(&key, &encode(&state))?;
                Ok::<_, TxError<Error>>(())
            })
            .await
    }
}

/// Runs the collector every `interval` and the orphan sweep every `sweep_every`, until aborted.
pub fn spawn(
    collector: Collector,
    interval: Duration,
    sweep_every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        let mut last_sweep: Option<tokio::time::Instant> = None;
        loop {
            tick.tick().await;
            match collector.collect().await {
                Ok(r) if !r.blobs_deleted.is_empty() || !r.manifests_deleted.is_empty() => {
                    tracing::info!(
                        blobs = r.blobs_deleted.len(),
                        manifests = r.manifests_deleted.len(),
                        bytes = r.bytes_deleted,
                        "garbage collected"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "garbage collection pass failed"),
            }
            if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
                last_sweep = Some(tokio::time::Instant::now());
                let mut report = Report::default();
                match collector.sweep_orphans(false, &mut report).await {
                    Ok(()) if !report.orphans_deleted.is_empty() => {
                        tracing::info!(
                            orphans = report.orphans_deleted.len(),
                            "orphan blob files removed"
                        );
                        if let Err(e) = collector.record(&report, false).await {
                            tracing::warn!(error = %e, "could not record the sweep");
                        }
                    }
                    Ok(()) => {}
                    Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
                }
            }
        }
    })
}

fn read_state(meta: &dyn MetadataStore) -> berth_storage::Result<GcState> {
    Ok(match meta.get(&keys::gc_state())? {
        Some(v) => decode(&v)?,
        None => GcState::default(),
    })
}

fn parse_review_key(key: &[u8]) -> Option<(ReviewKind, Digest)> {
    let mut parts = key.split(|&b| b == 0).skip(1);
    let kind = ReviewKind::parse(parts.next()?)?;
    let digest = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    Some((kind, digest))
}

fn last_part(key: &[u8]) -> String {
    String::from_utf8_lossy(keys::last_part(key)).into_owned()
}

/// How [`recount`] treats what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Count and report differences; write nothing.
    Check,
    /// Write the right counts and queue what is unreferenced.
    Repair,
    /// Like `Repair`, for a store from before counts existed: every object starts a fresh grace
    /// period, since nothing recorded when it was last used.
    Upgrade,
}

/// Rebuilds the reference counts of every blob and manifest record from the links and stored
/// manifests. Returns how many records had wrong counts. Writers must be held off meanwhile.
pub fn recount(meta: &dyn MetadataStore, mode: Mode) -> berth_storage::Result<u64> {
    let now = now_secs();
    let mut blobs: HashMap<Digest, (u64, u64)> = HashMap::new(); // links, manifests
    meta.visit::<berth_storage::Error>(&keys::blobs(), |k, _| {
        if let Ok(d) = last_part(k).parse() {
            blobs.insert(d, (0, 0));
        }
        Ok(())
    })?;
    let mut manifest_names: HashSet<Digest> = HashSet::new();
    meta.visit::<berth_storage::Error>(&keys::manifests(), |k, _| {
        if let Ok(d) = last_part(k).parse() {
            manifest_names.insert(d);
        }
        Ok(())
    })?;
    let mut manifests: HashMap<Digest, (u64, u64)> = HashMap::new(); // links, parents
    let mut holds: HashMap<Digest, (Vec<Digest>, Vec<Digest>)> = HashMap::new();
    meta.visit::<berth_storage::Error>(&keys::manifests(), |k, v| {
        let Ok(d) = last_part(k).parse::<Digest>() else {
            return Ok(());
        };
        let r: ManifestRecord = decode(v)?;
        let (mut b, mut c) = r.names();
        b.retain(|x| blobs.contains_key(x));
        b.sort();
        b.dedup();
        c.retain(|x| manifest_names.contains(x));
        c.sort();
        c.dedup();
        for x in &b {
            blobs.entry(x.clone()).or_default().1 += 1;
        }
        for x in &c {
            manifests.entry(x.clone()).or_default().1 += 1;
        }
        manifests.entry(d.clone()).or_default();
        if b != r.holds || c != r.holds_manifests {
            holds.insert(d, (b, c));
        }
        Ok(())
    })?;
    let link_digest = |k: &[u8]| last_part(k).parse::<Digest>().ok();
    meta.visit::<berth_storage::Error>(b"rblob\0", |k, _| {
        if let Some(e) = link_digest(k).and_then(|d| blobs.get_mut(&d)) {
            e.0 += 1;
        }
        Ok(())
    })?;
    meta.visit::<berth_storage::Error>(b"rmanifest\0", |k, _| {
        if let Some(e) = link_digest(k).and_then(|d| manifests.get_mut(&d)) {
            e.0 += 1;
        }
        Ok(())
    })?;

    let mut wrong = 0u64;
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let write = |batch: &mut Vec<(Vec<u8>, Vec<u8>)>| -> berth_storage::Result<()> {
        if batch.is_empty() || mode == Mode::Check {
            batch.clear();
            return Ok(());
        }
        let items = std::mem::take(batch);
        meta.transaction(|tx| {
            for (k, v) in &items {
                tx.put(k, v)?;
            }
            Ok::<_, TxError<berth_storage::Error>>(())
        })
        .map_err(|e| match e {
            TxError::Storage(e) | TxError::Abort(e) => e,
        })
    };
    let fresh = |touched: u64| if mode == Mode::Upgrade { now } else { touched };
    let mut pending_blobs = Vec::new();
    meta.visit::<berth_storage::Error>(&keys::blobs(), |k, v| {
        pending_blobs.push((k.to_vec(), v.to_vec()));
        Ok(())
    })?;
    for (k, v) in pending_blobs {
        let Ok(d) = last_part(&k).parse::<Digest>() else {
            continue;
        };
        let mut r: BlobRecord = decode(&v)?;
        let (links, held) = blobs.get(&d).copied().unwrap_or_default();
        if r.links != links || r.manifests != held {
            wrong += 1;
        }
        r.links = links;
        r.manifests = held;
        r.touched = fresh(r.touched);
        if r.unreferenced() {
            batch.push((
                keys::review(ReviewKind::Blob, &d),
                encode(&Review { since: r.touched }),
            ));
        }
        batch.push((k, encode(&r)));
        if batch.len() >= BATCH {
            write(&mut batch)?;
        }
    }
    let mut keys_of_manifests = Vec::new();
    meta.visit::<berth_storage::Error>(&keys::manifests(), |k, _| {
        keys_of_manifests.push(k.to_vec());
        Ok(())
    })?;
    for k in keys_of_manifests {
        let Ok(d) = last_part(&k).parse::<Digest>() else {
            continue;
        };
        let Some(v) = meta.get(&k)? else { continue };
        let mut r: ManifestRecord = decode(&v)?;
        let (links, parents) = manifests.get(&d).copied().unwrap_or_default();
        let mut changed = r.links != links || r.parents != parents;
        if let Some((b, c)) = holds.remove(&d) {
            r.holds = b;
            r.holds_manifests = c;
            changed = true;
        }
        if changed {
            wrong += 1;
        }
        r.links = links;
        r.parents = parents;
        r.touched = fresh(r.touched);
        if r.unreferenced() {
            batch.push((
                keys::review(ReviewKind::Manifest, &d),
                encode(&Review { since: r.touched }),
            ));
        }
        batch.push((k, encode(&r)));
        if batch.len() >= BATCH {
            write(&mut batch)?;
        }
    }
    write(&mut batch)?;
    Ok(wrong)
}

/// Converts a store written before reference counts existed (once, at start-up, before
/// serving). Idempotent: a crash part-way makes the next start recount from scratch.
pub fn upgrade(meta: &dyn MetadataStore) -> berth_storage::Result<bool> {
    let mut state = read_state(meta)?;
    if state.format >= 1 {
        return Ok(false);
    }
    recount(meta, Mode::Upgrade)?;
    state.format = 1;
    meta.transaction(|tx| {
        tx.put(&keys::gc_state(), &encode(&state))?;
        Ok::<_, TxError<berth_storage::Error>>(())
    })
    .map_err(|e| match e {
        TxError::Storage(e) | TxError::Abort(e) => e,
    })?;
    meta.flush()?;
    Ok(true)
}
