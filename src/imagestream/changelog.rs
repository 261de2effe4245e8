//! The change log: how watchers on one replica learn what another replica committed.
//!
//! On a shared store (etcd) every transaction that changes streams, images or webhooks also
//! writes its changes under `changelog\0<revision>`, in the same transaction, so the log holds
//! exactly the committed changes and never one that was not. Every replica (the writer too)
//! follows the log in revision order, woken by the store's watch on the prefix, and hands each
//! entry to its [`Events`]; revisions without an entry took no change. The log is bounded:
//! each entry written deletes the one [`KEEP`] revisions older. On the embedded store nothing
//! of this runs: only this process writes, and it publishes after each commit.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use berth_storage::record::{decode, encode};
use berth_storage::{MetadataStore, Record, TxError, Txn};
use serde::{Deserialize, Serialize};

use super::events::Events;
use super::notice::NoticeSink;
use super::store::{Change, ChangeKind};
use super::types::{Image, ImageStream};

/// Entries kept: a replica further behind than this misses changes (and says so in its log).
pub const KEEP: u64 = 10_000;
/// Entries read per page while catching up.
const PAGE: usize = 128;
/// A follower with no wake-up looks anyway this often (a lost watch event costs this much).
const POLL: Duration = Duration::from_secs(2);

const PREFIX: &[u8] = b"changelog\0";

fn key(revision: u64) -> Vec<u8> {
    // Fixed width, so byte order is revision order.
    [PREFIX, format!("{revision:020}").as_bytes()].concat()
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Kind {
    Added,
    Modified,
    Deleted,
}

impl From<ChangeKind> for Kind {
    fn from(k: ChangeKind) -> Self {
        match k {
            ChangeKind::Added => Kind::Added,
            ChangeKind::Modified => Kind::Modified,
            ChangeKind::Deleted => Kind::Deleted,
        }
    }
}

impl From<Kind> for ChangeKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Added => ChangeKind::Added,
            Kind::Modified => ChangeKind::Modified,
            Kind::Deleted => ChangeKind::Deleted,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "object")]
enum Entry {
    Stream {
        kind: Kind,
        stream: Box<ImageStream>,
        /// Absent in entries written before it existed: read as "all tags".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tags_written: Option<BTreeSet<String>>,
    },
    Image {
        kind: Kind,
        image: Box<Image>,
    },
    Webhook {
        kind: Kind,
        webhook: Box<crate::webhooks::Webhook>,
    },
}

#[derive(Serialize, Deserialize)]
struct LogRecord {
    changes: Vec<Entry>,
    /// The transaction queued webhook events: the delivery worker (on whichever replica runs
    /// it) is woken as when the commit happened in its own process.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    notices: bool,
}

impl Record for LogRecord {
    const KIND: &'static str = "change log entry";
    const VERSION: u8 = 1;
}

/// Writes the watchable changes of the transaction committing at `revision` (notices are for
/// the webhook outbox, not watchers; `notices` says the outbox got some), and trims the log.
pub fn append<E>(
    tx: &mut dyn Txn,
    revision: u64,
    changes: &[Change],
    notices: bool,
) -> Result<(), TxError<E>> {
    let changes: Vec<Entry> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Stream {
                kind,
                stream,
                tags_written,
            } => Some(Entry::Stream {
                kind: (*kind).into(),
                stream: Box::new(stream.clone()),
                tags_written: tags_written.clone(),
            }),
            // Watchers render an added or modified Image when they deliver it, so its metadata
            // is enough (and keeps the entry small: an Image holds its whole manifest).
            Change::Image { kind, image } => Some(Entry::Image {
                kind: (*kind).into(),
                image: Box::new(match kind {
                    ChangeKind::Deleted => image.clone(),
                    _ => Image {
                        metadata: image.metadata.clone(),
                        ..Image::default()
                    },
                }),
            }),
            Change::Webhook { kind, webhook } => Some(Entry::Webhook {
                kind: (*kind).into(),
                webhook: webhook.clone(),
            }),
            Change::Notice(_) => None,
        })
        .collect();
    if changes.is_empty() && !notices {
        return Ok(());
    }
    tx.put(&key(revision), &encode(&LogRecord { changes, notices }))?;
    if revision > KEEP {
        tx.delete(&key(revision - KEEP))?;
    }
    Ok(())
}

/// One logged transaction: its revision, its changes, whether it queued webhook events.
pub type Logged = (u64, Vec<Change>, bool);

/// Logged entries after `after`, in revision order, at most `limit`.
pub fn read_after(
    meta: &dyn MetadataStore,
    after: u64,
    limit: usize,
) -> berth_storage::Result<Vec<Logged>> {
    let page = meta.scan(PREFIX, Some(&key(after)), limit)?;
    let mut out = Vec::with_capacity(page.len());
    for (k, v) in page {
        let revision = std::str::from_utf8(&k[PREFIX.len()..])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| berth_storage::Error::Corrupt {
                kind: LogRecord::KIND,
                reason: "key is not a revision".into(),
            })?;
        let record: LogRecord = decode(&v)?;
        let notices = record.notices;
        let changes = record
            .changes
            .into_iter()
            .map(|e| match e {
                Entry::Stream {
                    kind,
                    stream,
                    tags_written,
                } => Change::Stream {
                    kind: kind.into(),
                    stream: *stream,
                    tags_written,
                },
                Entry::Image { kind, image } => Change::Image {
                    kind: kind.into(),
                    image: *image,
                },
                Entry::Webhook { kind, webhook } => Change::Webhook {
                    kind: kind.into(),
                    webhook,
                },
            })
            .collect();
        out.push((revision, changes, notices));
    }
    Ok(out)
}

/// Follows the log of a shared store from revision `from` on, handing each entry to `events`,
/// on a thread of its own that ends when the store or the events are dropped. Does nothing on a
/// store that is not shared.
pub fn follow(
    meta: &Arc<dyn MetadataStore>,
    events: &Arc<Events>,
    sink: &Arc<OnceLock<Arc<dyn NoticeSink>>>,
    from: u64,
) {
    if !meta.shared() {
        return;
    }
    let (wake_tx, wake_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let watching = meta.watch_prefix(
        PREFIX,
        Arc::new(move || {
            let _ = wake_tx.try_send(());
        }),
    );
    if !watching {
        tracing::warn!("the metadata store cannot be watched: changes are polled");
    }
    let (meta, events): (Weak<dyn MetadataStore>, Weak<Events>) =
        (Arc::downgrade(meta), Arc::downgrade(events));
    let sink = Arc::downgrade(sink);
    let spawned = std::thread::Builder::new()
        .name("berth-changelog".into())
        .spawn(move || {
            let mut last = from;
            loop {
                let (Some(meta), Some(events)) = (meta.upgrade(), events.upgrade()) else {
                    return;
                };
                let caught_up = match read_after(meta.as_ref(), last, PAGE) {
                    Ok(page) => {
                        let full = page.len() == PAGE;
                        // Entries after `last` are gone once `KEEP` more revisions were taken;
                        // holes are also revisions that changed nothing, so only then is one
                        // a loss.
                        if let Some(&(first, _, _)) = page.first() {
                            let newest = meta.revision().unwrap_or(0);
                            if first > last + 1 && newest > last + KEEP {
                                tracing::warn!(
                                    from = last,
                                    to = first,
                                    "fell behind the change log: watches here start over (410)"
                                );
                                events.gap(first - 1);
                            }
                        }
                        let mut noticed = false;
                        for (revision, changes, notices) in page {
                            events.deliver_logged(revision, changes);
                            noticed |= notices;
                            last = revision;
                        }
                        if noticed {
                            if let Some(sink) = sink.upgrade().as_ref().and_then(|s| s.get()) {
                                sink.committed();
                            }
                        }
                        !full
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the change log failed; retrying");
                        true
                    }
                };
                drop((meta, events));
                if caught_up {
                    match wake_rx.recv_timeout(POLL) {
                        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        // The store (and its watch) is gone.
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start following the change log");
    }
}
