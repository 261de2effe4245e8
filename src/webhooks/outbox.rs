//! The outbox: events owed to each subscription, written in the transaction of the change
//! they describe (so there is no change without its event and no event without its change),
//! removed once a receiver has acknowledged them. The one owner of these records:
//!
//! - `who\0<uid>\0<seq>`: one queued event; `seq` is 16 hex digits, so a subscription's
//!   events scan oldest first and a push writes one key per matching subscription;
//! - `whp\0<uid>`: the producers' head: the next sequence number and the events dropped
//!   because the outbox was full. Only producers write it;
//! - `whc\0<uid>`: the delivery cursor as last persisted: the next sequence number to
//!   deliver, and how delivery is going. Only the delivery worker writes it.
//!
//! A producer's transaction never reads a key the worker writes: it checks the bound against
//! the acknowledged position the worker keeps in memory ([`Outbox`] is shared by both sides),
//! so acknowledgements never contend with pushes. The worker acknowledges in memory and
//! persists its cursor (deleting the events behind it) in batches; a crash loses at most the
//! acknowledgements since the last batch, and those events are delivered again with the same
//! id, never lost. Since the persisted cursor trails the one in memory, up to a batch of
//! acknowledged events may still be stored beyond `max_events` undelivered ones.
//!
//! Keyed by the subscription's uid, so a subscription deleted and created again under the same
//! name never inherits the old one's events. A subscription holds at most `max_events`
//! undelivered events: beyond that new events are dropped and counted (never silently), and
//! the delivery worker drops events older than the age limit the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_storage::record::{decode, encode};
use berth_storage::{MetadataStore, MetadataStoreExt, Record, TxError, Txn};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::subscriptions;
use super::types::{event_type, DeliveryError};
use crate::imagestream::notice::{Notice, NoticeSink};
use crate::imagestream::types::now_rfc3339;

/// One event waiting for a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    /// The same for every subscription and every redelivery of one change.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// When the change committed (RFC 3339).
    pub time: String,
    /// Unix seconds of `time`, for the age limit.
    pub queued_at: u64,
    /// The notice (its fields, camelCase).
    pub data: serde_json::Value,
}
impl Record for Queued {
    const KIND: &'static str = "webhook-event";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub next: u64,
    pub dropped: u64,
    pub last_dropped: Option<String>,
}
impl Record for Head {
    const KIND: &'static str = "webhook-head";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The next sequence number to deliver.
    pub next: u64,
    pub delivered: u64,
    /// Dropped for age by the delivery worker.
    pub expired: u64,
    pub last_expired: Option<String>,
    pub last_success: Option<String>,
    pub last_error: Option<DeliveryError>,
    pub consecutive_failures: u64,
}
impl Record for Cursor {
    const KIND: &'static str = "webhook-cursor";
    const VERSION: u8 = 1;
}

mod keys {
    pub fn event(uid: &str, seq: u64) -> Vec<u8> {
        format!("who\0{uid}\0{seq:016x}").into_bytes()
    }
    pub fn events(uid: &str) -> Vec<u8> {
        format!("who\0{uid}\0").into_bytes()
    }
    pub fn head(uid: &str) -> Vec<u8> {
        format!("whp\0{uid}").into_bytes()
    }
    pub fn heads() -> Vec<u8> {
        b"whp\0".to_vec()
    }
    pub fn cursor(uid: &str) -> Vec<u8> {
        format!("whc\0{uid}").into_bytes()
    }
    pub fn cursors() -> Vec<u8> {
        b"whc\0".to_vec()
    }
}

fn get<R: Record>(tx: &mut dyn Txn, key: &[u8]) -> berth_storage::Result<Option<R>> {
    tx.get(key)?.map(|b| decode(&b)).transpose()
}

fn read<R: Record>(meta: &dyn MetadataStore, key: &[u8]) -> berth_storage::Result<Option<R>> {
    meta.get(key)?.map(|b| decode(&b)).transpose()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Acknowledgements kept in memory before the cursor is persisted (and the events behind it
/// deleted); also what a crash can make the receivers see twice.
const PERSIST_EVERY: u64 = 64;
/// The longest an acknowledgement waits in memory while the worker is busy.
pub const PERSIST_INTERVAL: Duration = Duration::from_millis(500);

/// A subscription's delivery state while the server runs.
#[derive(Debug, Clone)]
struct Live {
    /// Authoritative: ahead of the persisted one by the acknowledgements not yet persisted.
    cursor: Cursor,
    /// `cursor.next` as last persisted: the events from here on are still stored.
    persisted: u64,
    /// Changes since the last persist.
    unpersisted: u64,
    last_persist: Instant,
}

impl Live {
    fn new(cursor: Cursor) -> Self {
        Live {
            persisted: cursor.next,
            cursor,
            unpersisted: 0,
            last_persist: Instant::now(),
        }
    }
}

/// Both sides of the outbox: the producers' [`NoticeSink`] and the delivery worker's
/// operations, sharing each subscription's acknowledged position in memory.
pub struct Outbox {
    meta: Arc<dyn MetadataStore>,
    max_events: u64,
    commits: watch::Sender<u64>,
    /// By uid. Locked briefly by producers inside their transactions, so it is never held
    /// across a call into the store (that would wait for the store's transaction lock while
    /// a producer holding it waits for this one).
    live: Mutex<HashMap<String, Live>>,
}

type TxResult<T> = Result<T, TxError<()>>;

impl Outbox {
    /// Loads every subscription's persisted cursor, so producers bound outboxes from the
    /// start.
    pub fn open(
        meta: Arc<dyn MetadataStore>,
        max_events: u64,
    ) -> berth_storage::Result<Arc<Outbox>> {
        let mut live = HashMap::new();
        let prefix = keys::cursors();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = meta.scan(&prefix, after.as_deref(), 500)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (k, v) in &page {
                let uid = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                live.insert(uid, Live::new(decode(v)?));
            }
        }
        Ok(Arc::new(Outbox {
            meta,
            max_events: max_events.max(1),
            commits: watch::channel(0).0,
            live: Mutex::new(live),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes each time a transaction that queued events is durable.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// The next sequence number the receiver has not acknowledged (as far as memory knows:
    /// never behind what is persisted).
    fn acknowledged(&self, uid: &str) -> u64 {
        self.lock().get(uid).map_or(0, |l| l.cursor.next)
    }

    /// Queues `event` (`encoded`: its record, encoded once for every subscription) for
    /// subscription `uid`, or counts it dropped when the outbox is full.
    fn append(
        &self,
        tx: &mut dyn Txn,
        uid: &str,
        event: &Queued,
        encoded: &[u8],
    ) -> berth_storage::Result<()> {
        let mut head: Head = get(tx, &keys::head(uid))?.unwrap_or_default();
        if head.next.saturating_sub(self.acknowledged(uid)) >= self.max_events {
            head.dropped += 1;
            head.last_dropped = Some(event.time.clone());
        } else {
            tx.put(&keys::event(uid, head.next), encoded)?;
            head.next += 1;
        }
        tx.put(&keys::head(uid), &encode(&head))
    }
}

impl NoticeSink for Outbox {
    fn record(&self, tx: &mut dyn Txn, notices: &[&Notice]) -> berth_storage::Result<bool> {
        let mut wrote = false;
        let mut index: Option<(String, subscriptions::Index)> = None;
        let (time, queued_at) = (now_rfc3339(), now_secs());
        for notice in notices {
            let ns = notice.namespace();
            if index.as_ref().is_none_or(|(n, _)| n != ns) {
                index = Some((ns.to_string(), subscriptions::index_in(tx, ns)?));
            }
            let Some((_, subs)) = &index else { continue };
            let kind = event_type(notice);
            let (streams, tags) = (notice.streams(), notice.tags());
            let mut event: Option<(Queued, Vec<u8>)> = None;
            for sub in subs.matching(kind, &streams, &tags) {
                let (event, encoded) = event.get_or_insert_with(|| {
                    let event = Queued {
                        id: uuid::Uuid::new_v4().to_string(),
                        kind: kind.to_string(),
                        time: time.clone(),
                        queued_at,
                        data: notice_data(notice),
                    };
                    let encoded = encode(&event);
                    (event, encoded)
                });
                self.append(tx, sub, event, encoded)?;
                wrote = true;
            }
        }
        Ok(wrote)
    }

    fn committed(&self) {
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
    }
}

fn notice_data(n: &Notice) -> serde_json::Value {
    let v = match n {
        Notice::TagUpdated(t) | Notice::TagDeleted(t) => serde_json::to_value(t),
        Notice::ImportFailed(f) => serde_json::to_value(f),
        Notice::ManifestPushed(m) | Notice::ManifestDeleted(m) => serde_json::to_value(m),
        Notice::ImagePruned(p) => serde_json::to_value(p),
    };
    v.unwrap_or_default()
}

/// A subscription's outbox as delivery and `describe` see it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub head: Head,
    pub cursor: Cursor,
}

impl Progress {
    pub fn pending(&self) -> u64 {
        self.head.next.saturating_sub(self.cursor.next)
    }
    pub fn dropped(&self) -> u64 {
        self.head.dropped + self.cursor.expired
    }
    /// The newest drop, for `Failing` (RFC 3339 strings of one format order as times do).
    pub fn last_dropped(&self) -> Option<&String> {
        self.head
            .last_dropped
            .as_ref()
            .max(self.cursor.last_expired.as_ref())
    }
}

/// The delivery side. Reads are plain reads outside transactions; the only transaction is
/// the batched persist of a cursor, which no producer reads.
impl Outbox {
    pub fn progress(&self, uid: &str) -> berth_storage::Result<Progress> {
        let head = read(self.meta.as_ref(), &keys::head(uid))?.unwrap_or_default();
        let live = self.lock().get(uid).map(|l| l.cursor.clone());
        let cursor = match live {
            Some(c) => c,
            None => read(self.meta.as_ref(), &keys::cursor(uid))?.unwrap_or_default(),
        };
        Ok(Progress { head, cursor })
    }

    /// The oldest unacknowledged event and its sequence number.
    pub fn next(&self, uid: &str) -> berth_storage::Result<Option<(u64, Queued)>> {
        Ok(self.scan_next(uid, 1)?.0.into_iter().next())
    }

    /// Up to `limit` unacknowledged events, oldest first, with consecutive sequence numbers
    /// (one scan for a burst: a push queues two events per subscription), and whether the scan
    /// reached the end of the outbox (so nothing more was queued before the scan began).
    pub fn scan_next(
        &self,
        uid: &str,
        limit: usize,
    ) -> berth_storage::Result<(Vec<(u64, Queued)>, bool)> {
        let from = self.acknowledged(uid);
        // Acknowledged events not yet deleted sort before `from`.
        let after = from.checked_sub(1).map(|s| keys::event(uid, s));
        let prefix = keys::events(uid);
        let page = self.meta.scan(&prefix, after.as_deref(), limit.max(1))?;
        let (page_len, at_end) = (page.len(), page.len() < limit.max(1));
        let mut out: Vec<(u64, Queued)> = Vec::with_capacity(page.len());
        for (key, value) in page {
            let seq = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| berth_storage::Error::Corrupt {
                    kind: "webhook-event",
                    reason: "a key without a sequence number".into(),
                })?;
            match out.last() {
                None if seq > from => {
                    // Cannot happen while producers and this worker keep the ranges; skip a
                    // hole rather than stall the subscription forever.
                    tracing::warn!(%uid, from, seq, "webhook outbox hole skipped");
                    self.update(uid, |c| {
                        if c.next == from {
                            c.next = seq;
                        }
                    });
                }
                // A later hole is left to the next call, which starts at it.
                Some((last, _)) if seq != last + 1 => break,
                _ => {}
            }
            out.push((seq, decode(&value)?));
        }
        let at_end = at_end && out.len() == page_len;
        Ok((out, at_end))
    }

    /// Applies `f` to the live cursor; returns whether a persist is due.
    fn update(&self, uid: &str, f: impl FnOnce(&mut Cursor)) -> bool {
        let mut live = self.lock();
        let l = live
            .entry(uid.to_string())
            .or_insert_with(|| Live::new(Cursor::default()));
        f(&mut l.cursor);
        l.unpersisted += 1;
        l.unpersisted >= PERSIST_EVERY || l.last_persist.elapsed() >= PERSIST_INTERVAL
    }

    /// Moves past event `seq` (if it is still the next one); returns whether a persist is due.
    fn advance(&self, uid: &str, seq: u64, f: impl FnOnce(&mut Cursor)) -> bool {
        self.update(uid, |c| {
            if c.next == seq {
                c.next += 1;
                f(c);
            }
        })
    }

    /// A receiver acknowledged event `seq`; returns whether a persist is due.
    pub fn delivered(&self, uid: &str, seq: u64) -> bool {
        let now = now_rfc3339();
        self.advance(uid, seq, |c| {
            c.delivered += 1;
            c.last_success = Some(now);
            c.consecutive_failures = 0;
        })
    }

    /// Event `seq` outlived the age limit undelivered; returns whether a persist is due.
    pub fn expired(&self, uid: &str, seq: u64) -> bool {
        let now = now_rfc3339();
        self.advance(uid, seq, |c| {
            c.expired += 1;
            c.last_expired = Some(now);
        })
    }

    /// An attempt failed; returns the consecutive failures so far. Persisted at once: failures
    /// are slow anyway, and what `describe` says about them should survive a restart.
    pub fn failed(&self, uid: &str, error: DeliveryError) -> berth_storage::Result<u64> {
        let mut count = 0;
        self.update(uid, |c| {
            c.consecutive_failures += 1;
            c.last_error = Some(error);
            count = c.consecutive_failures;
        });
        self.persist(uid)?;
        Ok(count)
    }

    /// Whether `uid` has acknowledgements only memory holds.
    pub fn unpersisted(&self, uid: &str) -> bool {
        self.lock().get(uid).is_some_and(|l| l.unpersisted > 0)
    }

    /// Writes the live cursor and deletes the events it has passed, in one transaction.
    pub fn persist(&self, uid: &str) -> berth_storage::Result<()> {
        let Some((cursor, from, changes)) = self
            .lock()
            .get(uid)
            .map(|l| (l.cursor.clone(), l.persisted, l.unpersisted))
        else {
            return Ok(());
        };
        let mut purged = false;
        self.write(|tx| {
            // No head: the subscription was deleted and its outbox purged meanwhile.
            purged = tx.get(&keys::head(uid))?.is_none();
            if purged {
                return Ok(());
            }
            for seq in from..cursor.next {
                tx.delete(&keys::event(uid, seq))?;
            }
            tx.put(&keys::cursor(uid), &encode(&cursor))
        })?;
        if purged {
            self.lock().remove(uid);
        } else if let Some(l) = self.lock().get_mut(uid) {
            l.persisted = l.persisted.max(cursor.next);
            l.unpersisted = l.unpersisted.saturating_sub(changes);
            l.last_persist = Instant::now();
        }
        Ok(())
    }

    /// Persists every subscription's cursor (at shutdown, so a restart repeats nothing).
    pub fn persist_all(&self) -> berth_storage::Result<()> {
        let uids: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, l)| l.unpersisted > 0)
            .map(|(u, _)| u.clone())
            .collect();
        for uid in uids {
            self.persist(&uid)?;
        }
        Ok(())
    }

    /// Uids that have outbox records (to find those of deleted subscriptions).
    pub fn uids(&self) -> berth_storage::Result<Vec<String>> {
        let prefix = keys::heads();
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.meta.scan(&prefix, after.as_deref(), 500)?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            after = Some(last.clone());
            out.extend(
                page.iter()
                    .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned()),
            );
        }
    }

    /// Removes every record of subscription `uid` (deleted: no producer names it any more),
    /// a page per transaction.
    pub fn purge(&self, uid: &str) -> berth_storage::Result<()> {
        let prefix = keys::events(uid);
        loop {
            let page = self.meta.scan(&prefix, None, 500)?;
            if page.is_empty() {
                break;
            }
            self.write(|tx| {
                for (k, _) in &page {
                    tx.delete(k)?;
                }
                Ok(())
            })?;
        }
        self.write(|tx| {
            tx.delete(&keys::head(uid))?;
            tx.delete(&keys::cursor(uid))?;
            Ok(())
        })?;
        self.lock().remove(uid);
        Ok(())
    }

    fn write(
        &self,
        mut body: impl FnMut(&mut dyn Txn) -> berth_storage::Result<()>,
    ) -> berth_storage::Result<()> {
        self.meta
            .transaction(|tx| -> TxResult<()> { Ok(body(tx)?) })
            .map_err(|e| match e {
                TxError::Storage(e) => e,
                TxError::Abort(()) => berth_storage::Error::Backend("aborted".into()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagestream::notice::{Origin, TagMoved};
    use berth_storage::memory::MemoryMetadata;

    fn moved(ns: &str, tag: &str) -> Notice {
        Notice::TagUpdated(TagMoved {
            namespace: ns.into(),
            stream: "app".into(),
            tag: tag.into(),
            previous_image: None,
            image: Some("sha256:1".into()),
            docker_image_reference: String::new(),
            origin: Origin::Push,
            followed: None,
            generation: 1,
            resource_version: 1,
        })
    }

    /// A transaction that notes the keys it reads.
    struct Reads<'a> {
        tx: &'a mut dyn Txn,
        keys: Vec<Vec<u8>>,
    }
    impl Txn for Reads<'_> {
        fn get(&mut self, key: &[u8]) -> berth_storage::Result<Option<Vec<u8>>> {
            self.keys.push(key.to_vec());
            self.tx.get(key)
        }
        fn put(&mut self, key: &[u8], value: &[u8]) -> berth_storage::Result<()> {
            self.tx.put(key, value)
        }
        fn delete(&mut self, key: &[u8]) -> berth_storage::Result<()> {
            self.tx.delete(key)
        }
        fn revision(&mut self) -> berth_storage::Result<u64> {
            self.tx.revision()
        }
    }

    fn push(meta: &Arc<dyn MetadataStore>, outbox: &Outbox, tag: &str) -> Vec<Vec<u8>> {
        let (n, other) = (moved("a", tag), moved("b", "x"));
        meta.transaction(|tx| -> TxResult<Vec<Vec<u8>>> {
            let mut reads = Reads {
                tx,
                keys: Vec::new(),
            };
            outbox.record(&mut reads, &[&n, &other])?;
            Ok(reads.keys)
        })
        .unwrap()
    }

    fn subscribe(meta: &Arc<dyn MetadataStore>) {
        meta.transaction(|tx| -> TxResult<()> {
            subscriptions::index_put_for_test(tx, "a", "uid-a")?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn queues_in_order_drops_when_full_and_acks() {
        let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadata::new());
        let c = Outbox::open(meta.clone(), 3).unwrap();
        subscribe(&meta);
        for i in 0..5 {
            let reads = push(&meta, &c, &format!("t{i}"));
            // Producers never read what the delivery worker writes.
            assert!(
                reads
                    .iter()
                    .all(|k| !k.starts_with(b"whc") && !k.starts_with(b"who")),
                "{reads:?}"
            );
        }
        let p = c.progress("uid-a").unwrap();
        assert_eq!((p.pending(), p.dropped()), (3, 2));
        let (seq, first) = c.next("uid-a").unwrap().unwrap();
        assert_eq!((seq, first.data["tag"].as_str()), (0, Some("t0")));
        c.delivered("uid-a", seq);
        c.delivered("uid-a", seq); // a repeated ack changes nothing
        let (seq, second) = c.next("uid-a").unwrap().unwrap();
        assert_eq!((seq, second.data["tag"].as_str()), (1, Some("t1")));
        assert_eq!(c.progress("uid-a").unwrap().cursor.delivered, 1);
        // An acknowledgement in memory makes room at once.
        push(&meta, &c, "t5");
        let p = c.progress("uid-a").unwrap();
        assert_eq!((p.pending(), p.dropped()), (3, 2));
        assert_eq!(c.uids().unwrap(), ["uid-a"]);
        c.purge("uid-a").unwrap();
        assert!(c.uids().unwrap().is_empty());
        assert!(c.next("uid-a").unwrap().is_none());
    }

    #[test]
    fn unpersisted_acks_are_delivered_again_and_persisted_ones_are_gone() {
        let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadata::new());
        let c = Outbox::open(meta.clone(), 100).unwrap();
        subscribe(&meta);
        for i in 0..4 {
            push(&meta, &c, &format!("t{i}"));
        }
        let (seq, _) = c.next("uid-a").unwrap().unwrap();
        c.delivered("uid-a", seq);
        c.persist("uid-a").unwrap();
        assert!(!c.unpersisted("uid-a"));
        assert_eq!(meta.scan(b"who\0uid-a\0", None, 10).unwrap().len(), 3);
        let (seq, second) = c.next("uid-a").unwrap().unwrap();
        c.delivered("uid-a", seq);
        assert!(c.unpersisted("uid-a"));
        // A crash now: a new outbox over the same store starts from the persisted cursor.
        let restarted = Outbox::open(meta.clone(), 100).unwrap();
        let (again, event) = restarted.next("uid-a").unwrap().unwrap();
        assert_eq!((again, &event.id), (seq, &second.id), "same event, same id");
        assert_eq!(restarted.progress("uid-a").unwrap().pending(), 3);
        // The first process goes on; at shutdown its cursor is persisted.
        c.persist_all().unwrap();
        let restarted = Outbox::open(meta.clone(), 100).unwrap();
        assert_eq!(restarted.next("uid-a").unwrap().unwrap().0, 2);
        assert_eq!(restarted.progress("uid-a").unwrap().cursor.delivered, 2);
    }
}
