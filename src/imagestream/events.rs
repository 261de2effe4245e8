//! Delivery of committed changes to watchers, in resourceVersion order.
//!
//! Transactions commit concurrently, so their changes can reach this point out of order. Every
//! transaction that changes an object commits at its own store revision (the resourceVersion
//! of everything it wrote), so the revisions have no gaps and a small reorder buffer releases
//! each transaction's changes strictly in order. Within one transaction an object changes at
//! most once as far as watchers see: several writes of one stream become one change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::store::{Change, ChangeKind};

pub type Listener = Arc<dyn Fn(&Change) + Send + Sync>;
/// Told the newest revision whose changes may have been missed.
pub type GapListener = Arc<dyn Fn(u64) + Send + Sync>;

pub struct Events {
    inner: Mutex<Inner>,
}

struct Inner {
    next: u64,
    pending: BTreeMap<u64, Vec<Change>>,
    listeners: Vec<Listener>,
    gap_listeners: Vec<GapListener>,
}

impl Change {
    pub fn resource_version(&self) -> u64 {
        let rv = match self {
            Change::Stream { stream, .. } => &stream.metadata.resource_version,
            Change::Image { image, .. } => &image.metadata.resource_version,
            Change::Webhook { webhook, .. } => &webhook.metadata.resource_version,
            Change::Notice(_) => return 0,
        };
        rv.parse().unwrap_or(0)
    }
}

/// One change per object: later writes of a stream in the same transaction absorb earlier ones
/// (the head as last written, the union of the tags they touched, later ones winning).
fn coalesce(changes: Vec<Change>) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::with_capacity(changes.len());
    for c in changes {
        let same = out.iter_mut().find(|o| match (&**o, &c) {
            (Change::Stream { stream: a, .. }, Change::Stream { stream: b, .. }) => {
                a.metadata.namespace == b.metadata.namespace && a.metadata.name == b.metadata.name
            }
            (Change::Image { image: a, .. }, Change::Image { image: b, .. }) => {
                a.metadata.name == b.metadata.name
            }
            _ => false,
        });
        let Some(earlier) = same else {
            out.push(c);
            continue;
        };
        *earlier = match (std::mem::replace(earlier, c.clone()), c) {
            (
                Change::Stream {
                    kind: first,
                    stream: mut merged,
                    tags_written: written_first,
                },
                Change::Stream {
                    kind,
                    stream,
                    tags_written,
                },
            ) => {
                for t in stream.spec.tags {
                    merged.spec.tags.retain(|x| x.name != t.name);
                    merged.spec.tags.push(t);
                }
                for t in stream.status.tags {
                    merged.status.tags.retain(|x| x.tag != t.tag);
                    merged.status.tags.push(t);
                }
                merged.metadata = stream.metadata;
                merged.spec.lookup_policy = stream.spec.lookup_policy;
                merged.normalize();
                Change::Stream {
                    // Created in this transaction: still an addition for watchers.
                    kind: if first == ChangeKind::Added && kind == ChangeKind::Modified {
                        ChangeKind::Added
                    } else {
                        kind
                    },
                    stream: merged,
                    tags_written: written_first.zip(tags_written).map(|(mut a, b)| {
                        a.extend(b);
                        a
                    }),
                }
            }
            (_, later) => later,
        };
    }
    out
}

impl Events {
    /// `last` is the store's current resourceVersion: the next change will carry `last + 1`.
    pub fn new(last: u64) -> Self {
        Events {
            inner: Mutex::new(Inner {
                next: last + 1,
                pending: BTreeMap::new(),
                listeners: Vec::new(),
                gap_listeners: Vec::new(),
            }),
        }
    }

    pub fn listen(&self, listener: Listener) {
        self.lock().listeners.push(listener);
    }

    /// `listener` hears of changes that may have been missed (see [`Events::gap`]).
    pub fn on_gap(&self, listener: GapListener) {
        self.lock().gap_listeners.push(listener);
    }

    /// Changes up to `upto` may never be delivered (a replica fell behind the trimmed change
    /// log): delivery goes on after it, and the gap listeners make watchers start over.
    pub fn gap(&self, upto: u64) {
        let mut inner = self.lock();
        inner.next = inner.next.max(upto + 1);
        for l in &inner.gap_listeners {
            l(upto);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panicking listener must not stop every later delivery.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands over the changes of the transaction that committed at `revision`, read back from
    /// a shared store's change log in commit order: delivered at once, since revisions without
    /// an entry took no change (see [`super::changelog`]). An entry seen before is ignored.
    pub fn deliver_logged(&self, revision: u64, changes: Vec<Change>) {
        let mut inner = self.lock();
        if revision < inner.next {
            return;
        }
        inner.next = revision + 1;
        let changes = changes
            .into_iter()
            .filter(|c| !matches!(c, Change::Notice(_)))
            .collect();
        for c in coalesce(changes) {
            for l in &inner.listeners {
                l(&c);
            }
        }
    }

    /// Hands over the changes of one committed transaction.
    pub fn publish(&self, changes: Vec<Change>) {
        let mut inner = self.lock();
        let changes = changes
            .into_iter()
            .filter(|c| !matches!(c, Change::Notice(_)))
            .collect();
        for c in coalesce(changes) {
            let rv = c.resource_version();
            if rv < inner.next {
                // Should not happen; deliver rather than drop.
                for l in &inner.listeners {
                    l(&c);
                }
            } else {
                inner.pending.entry(rv).or_default().push(c);
            }
        }
        while let Some(batch) = {
            let next = inner.next;
            inner.pending.remove(&next)
        } {
            inner.next += 1;
            for c in &batch {
                for l in &inner.listeners {
                    l(c);
                }
            }
        }
        // A transaction whose flush failed never publishes; don't let it stall the rest.
        if inner.pending.len() > 1024 {
            if let Some((&first, _)) = inner.pending.iter().next() {
                tracing::warn!(skipped_to = first, "resourceVersion gap in watch events");
                inner.next = first;
            }
            drop(inner);
            self.publish(Vec::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagestream::types::Image;

    fn change(rv: u64) -> Change {
        let mut image = Image::default();
        image.metadata.name = format!("sha256:{rv}");
        image.metadata.resource_version = rv.to_string();
        Change::Image {
            kind: ChangeKind::Added,
            image,
        }
    }

    fn stream_change(rv: u64, kind: ChangeKind, tag: &str) -> Change {
        let mut stream = crate::imagestream::mapping::new_stream("ns", "app");
        stream.metadata.resource_version = rv.to_string();
        stream.status_tag_mut(tag);
        Change::Stream {
            kind,
            stream,
            tags_written: Some([tag.to_string()].into()),
        }
    }

    fn recorder(events: &Events) -> Arc<Mutex<Vec<Change>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        events.listen(Arc::new(move |c| s.lock().unwrap().push(c.clone())));
        seen
    }

    #[test]
    fn a_gap_is_reported_and_delivery_goes_on_after_it() {
        let events = Events::new(10);
        let seen = recorder(&events);
        let gaps = Arc::new(Mutex::new(Vec::new()));
        let g = gaps.clone();
        events.on_gap(Arc::new(move |upto| g.lock().unwrap().push(upto)));
        events.deliver_logged(11, vec![change(11)]);
        events.gap(20);
        assert_eq!(*gaps.lock().unwrap(), [20]);
        events.deliver_logged(15, vec![change(15)]);
        events.deliver_logged(21, vec![change(21)]);
        let rvs: Vec<u64> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.resource_version())
            .collect();
        assert_eq!(rvs, [11, 21], "nothing from before the gap after it");
    }

    #[test]
    fn releases_transactions_in_order() {
        let events = Events::new(10);
        let seen = recorder(&events);
        events.publish(vec![change(12)]);
        events.publish(vec![change(13)]);
        assert!(seen.lock().unwrap().is_empty());
        // One transaction, two objects: both released, at its revision.
        let mut other = change(11);
        if let Change::Image { image, .. } = &mut other {
            image.metadata.name = "sha256:other".into();
        }
        events.publish(vec![change(11), other]);
        let rvs: Vec<u64> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.resource_version())
            .collect();
        assert_eq!(rvs, [11, 11, 12, 13]);
    }

    #[test]
    fn writes_of_one_stream_in_a_transaction_are_one_change() {
        let events = Events::new(0);
        let seen = recorder(&events);
        events.publish(vec![
            stream_change(1, ChangeKind::Added, "a"),
            stream_change(1, ChangeKind::Modified, "b"),
        ]);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let Change::Stream {
            kind,
            stream,
            tags_written,
        } = &seen[0]
        else {
            panic!("a stream change")
        };
        assert_eq!(*kind, ChangeKind::Added);
        let tags: Vec<&str> = stream.status.tags.iter().map(|t| t.tag.as_str()).collect();
        assert_eq!(tags, ["a", "b"]);
        assert_eq!(tags_written, &Some(["a".into(), "b".into()].into()));
    }
}
