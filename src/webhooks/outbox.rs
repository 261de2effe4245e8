//! The outbox: events owed to each subscription, written in the transaction of the change
//! they describe (so there is no change without its event and no event without its change),
//! removed when a receiver acknowledges them. The one owner of these records:
//!
//! - `who\0<uid>\0<seq>`: one queued event; `seq` is 16 hex digits, so a subscription's
//!   events scan oldest first and a push writes one key per matching subscription;
//! - `whp\0<uid>`: the producers' head: the next sequence number and the events dropped
//!   because the outbox was full;
//! - `whc\0<uid>`: the delivery cursor: the next sequence number to deliver, and how
//!   delivery is going (last success, last error, consecutive failures).
//!
//! Keyed by the subscription's uid, so a subscription deleted and created again under the same
//! name never inherits the old one's events. A subscription holds at most `max_events` events:
//! beyond that new events are dropped and counted (never silently), and the delivery worker
//! drops events older than the age limit the same way.

use std::sync::Arc;

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

/// The outbox's producer side (a [`NoticeSink`]) and the wake-up of the delivery worker.
pub struct Outbox {
    max_events: u64,
    commits: watch::Sender<u64>,
}

impl Outbox {
    pub fn new(max_events: u64) -> Arc<Outbox> {
        Arc::new(Outbox {
            max_events: max_events.max(1),
            commits: watch::channel(0).0,
        })
    }

    /// Changes each time a transaction that queued events is durable.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Queues `event` for subscription `uid`, or counts it dropped when the outbox is full.
    fn append(&self, tx: &mut dyn Txn, uid: &str, event: &Queued) -> berth_storage::Result<()> {
        let mut head: Head = get(tx, &keys::head(uid))?.unwrap_or_default();
        let cursor: Cursor = get(tx, &keys::cursor(uid))?.unwrap_or_default();
        if head.next.saturating_sub(cursor.next) >= self.max_events {
            head.dropped += 1;
            head.last_dropped = Some(event.time.clone());
        } else {
            tx.put(&keys::event(uid, head.next), &encode(event))?;
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
            let (stream, tags) = (notice.stream(), notice.tags());
            let mut event: Option<Queued> = None;
            for sub in subs.matching(kind, stream, &tags) {
                let event = event.get_or_insert_with(|| Queued {
                    id: uuid::Uuid::new_v4().to_string(),
                    kind: kind.to_string(),
                    time: time.clone(),
                    queued_at,
                    data: notice_data(notice),
                });
                self.append(tx, sub, event)?;
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

/// The delivery side, over the metadata store. Every write is one small transaction; acks
/// are not flushed one by one (a crash may lose an ack, never an event: the event is then
/// delivered again, with the same id).
pub struct Consumer {
    meta: Arc<dyn MetadataStore>,
}

type TxResult<T> = Result<T, TxError<()>>;

impl Consumer {
    pub fn new(meta: Arc<dyn MetadataStore>) -> Self {
        Consumer { meta }
    }

    pub fn progress(&self, uid: &str) -> berth_storage::Result<Progress> {
        Ok(Progress {
            head: read(self.meta.as_ref(), &keys::head(uid))?.unwrap_or_default(),
            cursor: read(self.meta.as_ref(), &keys::cursor(uid))?.unwrap_or_default(),
        })
    }

    /// The oldest undelivered event and its sequence number.
    pub fn next(&self, uid: &str) -> berth_storage::Result<Option<(u64, Queued)>> {
        let p = self.progress(uid)?;
        if p.pending() == 0 {
            return Ok(None);
        }
        let seq = p.cursor.next;
        match read::<Queued>(self.meta.as_ref(), &keys::event(uid, seq))? {
            Some(e) => Ok(Some((seq, e))),
            None => {
                // Cannot happen while producers and this worker keep the ranges; skip a hole
                // rather than stall the subscription forever.
                tracing::warn!(%uid, seq, "webhook outbox hole skipped");
                self.advance(uid, seq, |_| {})?;
                self.next(uid)
            }
        }
    }

    /// Removes event `seq` (if it is still the next one) and updates the cursor.
    fn advance(
        &self,
        uid: &str,
        seq: u64,
        update: impl Fn(&mut Cursor),
    ) -> berth_storage::Result<()> {
        self.write(|tx| {
            let mut c: Cursor = get(tx, &keys::cursor(uid))?.unwrap_or_default();
            if c.next == seq {
                tx.delete(&keys::event(uid, seq))?;
                c.next += 1;
                update(&mut c);
                tx.put(&keys::cursor(uid), &encode(&c))?;
            }
            Ok(())
        })
    }

    /// A receiver acknowledged event `seq`.
    pub fn delivered(&self, uid: &str, seq: u64) -> berth_storage::Result<()> {
        let now = now_rfc3339();
        self.advance(uid, seq, |c| {
            c.delivered += 1;
            c.last_success = Some(now.clone());
            c.consecutive_failures = 0;
        })
    }

    /// Event `seq` outlived the age limit undelivered.
    pub fn expired(&self, uid: &str, seq: u64) -> berth_storage::Result<()> {
        let now = now_rfc3339();
        self.advance(uid, seq, |c| {
            c.expired += 1;
            c.last_expired = Some(now.clone());
        })
    }

    /// An attempt failed; returns the consecutive failures so far.
    pub fn failed(&self, uid: &str, error: DeliveryError) -> berth_storage::Result<u64> {
        let mut count = 0;
        self.write(|tx| {
            let mut c: Cursor = get(tx, &keys::cursor(uid))?.unwrap_or_default();
            c.consecutive_failures += 1;
            c.last_error = Some(error.clone());
            count = c.consecutive_failures;
            tx.put(&keys::cursor(uid), &encode(&c))?;
            Ok(())
        })?;
        Ok(count)
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

    /// Removes every record of subscription `uid`, a page per transaction.
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
        })
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

    #[test]
    fn queues_in_order_drops_when_full_and_acks() {
        let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadata::new());
        let outbox = Outbox::new(3);
        meta.transaction(|tx| -> TxResult<()> {
            subscriptions::index_put_for_test(tx, "a", "uid-a")?;
            Ok(())
        })
        .unwrap();
        for i in 0..5 {
            let n = moved("a", &format!("t{i}"));
            let other = moved("b", "x");
            meta.transaction(|tx| -> TxResult<bool> { Ok(outbox.record(tx, &[&n, &other])?) })
                .unwrap();
        }
        let c = Consumer::new(meta.clone());
        let p = c.progress("uid-a").unwrap();
        assert_eq!((p.pending(), p.dropped()), (3, 2));
        let (seq, first) = c.next("uid-a").unwrap().unwrap();
        assert_eq!((seq, first.data["tag"].as_str()), (0, Some("t0")));
        c.delivered("uid-a", seq).unwrap();
        c.delivered("uid-a", seq).unwrap(); // a repeated ack changes nothing
        let (seq, second) = c.next("uid-a").unwrap().unwrap();
        assert_eq!((seq, second.data["tag"].as_str()), (1, Some("t1")));
        assert_eq!(c.progress("uid-a").unwrap().cursor.delivered, 1);
        assert_eq!(c.uids().unwrap(), ["uid-a"]);
        c.purge("uid-a").unwrap();
        assert!(c.uids().unwrap().is_empty());
        assert!(c.next("uid-a").unwrap().is_none());
    }
}
