//! Delivery of committed changes to watchers, in resourceVersion order.
//!
//! Transactions commit concurrently, so their changes can reach this point out of order. Every
//! resourceVersion bump is exactly one [`Change`], so the sequence has no gaps and a small
//! reorder buffer can release changes strictly in order.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::store::Change;

pub type Listener = Arc<dyn Fn(&Change) + Send + Sync>;

pub struct Events {
    inner: Mutex<Inner>,
}

struct Inner {
    next: u64,
    pending: BTreeMap<u64, Change>,
    listeners: Vec<Listener>,
}

impl Change {
    pub fn resource_version(&self) -> u64 {
        let rv = match self {
            Change::Stream { stream, .. } => &stream.metadata.resource_version,
            Change::Image { image, .. } => &image.metadata.resource_version,
        };
        rv.parse().unwrap_or(0)
    }
}

impl Events {
    /// `last` is the store's current resourceVersion: the next change will carry `last + 1`.
    pub fn new(last: u64) -> Self {
        Events {
            inner: Mutex::new(Inner {
                next: last + 1,
                pending: BTreeMap::new(),
                listeners: Vec::new(),
            }),
        }
    }

    pub fn listen(&self, listener: Listener) {
        self.lock().listeners.push(listener);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panicking listener must not stop every later delivery.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands over the changes of one committed transaction.
    pub fn publish(&self, changes: Vec<Change>) {
        let mut inner = self.lock();
        for c in changes {
            let rv = c.resource_version();
            if rv < inner.next {
                // Should not happen; deliver rather than drop.
                for l in &inner.listeners {
                    l(&c);
                }
            } else {
                inner.pending.insert(rv, c);
            }
        }
        while let Some(c) = {
            let next = inner.next;
            inner.pending.remove(&next)
        } {
            inner.next += 1;
            for l in &inner.listeners {
                l(&c);
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
    use crate::imagestream::store::ChangeKind;
    use crate::imagestream::types::Image;

    fn change(rv: u64) -> Change {
        let mut image = Image::default();
        image.metadata.resource_version = rv.to_string();
        Change::Image {
            kind: ChangeKind::Added,
            image,
        }
    }

    #[test]
    fn releases_in_order() {
        let events = Events::new(10);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        events.listen(Arc::new(move |c| {
            s.lock().unwrap().push(c.resource_version())
        }));
        events.publish(vec![change(12), change(13)]);
        assert!(seen.lock().unwrap().is_empty());
        events.publish(vec![change(11)]);
        assert_eq!(*seen.lock().unwrap(), [11, 12, 13]);
    }
}
