//! [`Hub`]: fans committed changes out to watchers and remembers the most recent ones, so a
//! watch can resume from a `resourceVersion` instead of re-listing.
//!
//! Publish and subscribe take the same lock, so every event is either in a subscriber's
//! backlog or in its receiver, never both and never neither. Events must be published in
//! increasing resourceVersion order (the domain's `imagestream::events::Events` releases them
//! that way); one hub per watchable resource (imagestreams, images) is the intended use.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::status::StatusError;
use super::watch::WatchEvent;
use crate::metrics::WatchGauges;

/// A watch asked to resume from a resourceVersion whose successors are no longer buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too old resource version: {requested} ({oldest})")]
pub struct TooOld {
    pub requested: u64,
    /// The oldest resourceVersion a watch can still resume from.
    pub oldest: u64,
}

impl From<TooOld> for StatusError {
    /// 410 Expired, Kubernetes' wording: client-go and the Python client re-list on it.
    fn from(e: TooOld) -> Self {
        StatusError::expired(e.to_string())
    }
}

/// What a new watcher starts from.
#[derive(Debug)]
pub struct Subscription {
    /// Buffered events newer than the requested resourceVersion, oldest first.
    pub backlog: Vec<WatchEvent>,
    /// Every event published after this subscription, in order.
    pub receiver: broadcast::Receiver<WatchEvent>,
    /// The newest resourceVersion published before this subscription.
    pub resource_version: u64,
    /// Counts the watch as open until dropped: keep it as long as the watch runs.
    pub watcher: WatcherGuard,
}

/// One open watch on the hub's gauge.
#[derive(Debug)]
pub struct WatcherGuard(prometheus::IntGauge);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct Hub {
    capacity: usize,
    /// The backlog also stays under this many (approximate) bytes: events of big objects are
    /// whole copies, and thousands of them would otherwise hold gigabytes.
    budget: usize,
    state: Mutex<State>,
    gauges: WatchGauges,
}

/// Default memory budget of one hub's backlog.
pub const DEFAULT_BUDGET: usize = 64 * 1024 * 1024;

struct State {
    /// `None` once closed: new receivers then end at once.
    sender: Option<broadcast::Sender<WatchEvent>>,
    buffer: VecDeque<WatchEvent>,
    /// Sum of the buffered events' weights.
    weight: usize,
    /// Every event newer than `floor` is in `buffer` or still to come.
    floor: u64,
    latest: u64,
}

impl Hub {
    /// A hub for a store whose resourceVersion starts at 0.
    pub fn new(capacity: usize) -> Self {
        Self::starting_at(capacity, 0)
    }

    /// A hub for a store already at `current_rv` (e.g. after a restart): nothing at or before
    /// it was ever buffered, so resuming from an older version is [`TooOld`].
    pub fn starting_at(capacity: usize, current_rv: u64) -> Self {
        Self::with_budget(capacity, DEFAULT_BUDGET, current_rv)
    }

    /// [`Hub::starting_at`] with a memory budget for the backlog, in bytes.
    pub fn with_budget(capacity: usize, budget: usize, current_rv: u64) -> Self {
        // The broadcast channel needs room for at least one event.
        let capacity = capacity.max(1);
        let (sender, _) = broadcast::channel(capacity);
        Hub {
            capacity,
            budget,
            state: Mutex::new(State {
                sender: Some(sender),
                weight: 0,
                buffer: VecDeque::new(),
                floor: current_rv,
                latest: current_rv,
            }),
            gauges: WatchGauges::default(),
        }
    }

    /// Reports open watches and the backlog's bytes on `gauges`.
    pub fn with_gauges(mut self, gauges: WatchGauges) -> Self {
        self.gauges = gauges;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The critical sections cannot leave the state half-updated; keep serving after a panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Buffers `event` and sends it to every current watcher. Ignored once closed.
    pub fn publish(&self, event: WatchEvent) {
        let mut s = self.lock();
        let Some(sender) = s.sender.clone() else {
            return;
        };
        // Objects written by one transaction share its revision.
        if event.resource_version < s.latest {
            tracing::warn!(
                rv = event.resource_version,
                latest = s.latest,
                "watch event published out of resourceVersion order"
            );
        }
        s.latest = s.latest.max(event.resource_version);
        let kept = event.for_backlog();
        while s.buffer.len() >= self.capacity
            || (!s.buffer.is_empty() && s.weight + kept.weight > self.budget)
        {
            let Some(evicted) = s.buffer.pop_front() else {
                break;
            };
            s.weight -= evicted.weight;
            self.gauges.buffered_bytes.sub(gauge_value(evicted.weight));
            s.floor = s.floor.max(evicted.resource_version);
        }
        s.weight += kept.weight;
        self.gauges.buffered_bytes.add(gauge_value(kept.weight));
        s.buffer.push_back(kept);
        // No receivers is not an error: nobody is watching.
        let _ = sender.send(event);
    }

    /// Subscribes a watcher. `None` (a watch that starts from a fresh list) gets no backlog;
    /// `Some(rv)` gets every buffered event newer than `rv`, or [`TooOld`] when some of them
    /// have already been evicted.
    pub fn subscribe_from(&self, resource_version: Option<u64>) -> Result<Subscription, TooOld> {
        let s = self.lock();
        let backlog = match resource_version {
            None => Vec::new(),
            Some(rv) if rv < s.floor => {
                return Err(TooOld {
                    requested: rv,
                    oldest: s.floor,
                })
            }
            Some(rv) => s
                .buffer
                .iter()
                .filter(|e| e.resource_version > rv)
                .cloned()
                .collect(),
        };
        let receiver = match &s.sender {
            Some(sender) => sender.subscribe(),
            // Closed: a receiver whose sender is already gone reports Closed immediately.
            None => broadcast::channel(1).1,
        };
        self.gauges.watchers.inc();
        Ok(Subscription {
            backlog,
            receiver,
            resource_version: s.latest,
            watcher: WatcherGuard(self.gauges.watchers.clone()),
        })
    }

    /// Whether any watch is receiving events now (objects are built for it at publish time;
    /// otherwise events carry stubs, built on delivery).
    pub fn watched(&self) -> bool {
        self.lock()
            .sender
            .as_ref()
            .is_some_and(|s| s.receiver_count() > 0)
    }

    /// The newest resourceVersion published (or the starting one).
    pub fn resource_version(&self) -> u64 {
        self.lock().latest
    }

    /// Ends every watch (their bodies finish cleanly) and refuses new events; for graceful
    /// shutdown, which would otherwise wait out every open watch's timeout.
    pub fn close(&self) {
        self.lock().sender = None;
    }
}

fn gauge_value(weight: usize) -> i64 {
    i64::try_from(weight).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_stays_within_its_memory_budget() {
        let hub = Hub::with_budget(100, 10_000, 0);
        for rv in 1..=50 {
            let big = json!({"metadata": {"name": "x"}, "blob": "y".repeat(1000)});
            hub.publish(WatchEvent::new(EventType::Modified, rv, big));
        }
        let s = hub.lock();
        assert!(s.weight <= 10_000, "{}", s.weight);
        assert!(s.buffer.len() < 50 && !s.buffer.is_empty());
        assert_eq!(s.floor, 50 - s.buffer.len() as u64);
    }
    use crate::http::apis::watch::EventType;
    use serde_json::json;
    use tokio::sync::broadcast::error::TryRecvError;

    fn ev(rv: u64) -> WatchEvent {
        WatchEvent::new(
            EventType::Modified,
            rv,
            json!({"metadata": {"name": "s", "resourceVersion": rv.to_string()}}),
        )
    }

    fn rvs(events: &[WatchEvent]) -> Vec<u64> {
        events.iter().map(|e| e.resource_version).collect()
    }

    #[test]
    fn gauges_follow_watchers_and_the_backlog() {
        let gauges = WatchGauges::default();
        let hub = Hub::with_budget(2, 1 << 20, 0).with_gauges(gauges.clone());
        let a = hub.subscribe_from(None).unwrap();
        let b = hub.subscribe_from(None).unwrap();
        assert_eq!(gauges.watchers.get(), 2);
        drop(a);
        assert_eq!(gauges.watchers.get(), 1);
        drop(b);
        assert_eq!(gauges.watchers.get(), 0);
        for rv in 1..=5 {
            hub.publish(ev(rv));
        }
        assert_eq!(gauges.buffered_bytes.get(), gauge_value(hub.lock().weight));
        assert!(gauges.buffered_bytes.get() > 0);
    }

    #[test]
    fn replays_buffered_events_after_the_requested_version() {
        let hub = Hub::new(10);
        for rv in 1..=5 {
            hub.publish(ev(rv));
        }
        let sub = hub.subscribe_from(Some(2)).unwrap();
        assert_eq!(rvs(&sub.backlog), [3, 4, 5]);
        assert_eq!(sub.resource_version, 5);
        assert!(hub.subscribe_from(Some(5)).unwrap().backlog.is_empty());
        assert!(hub.subscribe_from(Some(0)).is_ok());
        let mut none = hub.subscribe_from(None).unwrap();
        assert!(none.backlog.is_empty());
        hub.publish(ev(6));
        assert_eq!(none.receiver.try_recv().unwrap().resource_version, 6);
        // A version from the future is not an error; the watcher just waits.
        assert!(hub.subscribe_from(Some(100)).unwrap().backlog.is_empty());
    }

    #[test]
    fn too_old_once_the_buffer_has_wrapped() {
        let hub = Hub::new(3);
        for rv in 1..=5 {
            hub.publish(ev(rv));
        }
        assert_eq!(
            hub.subscribe_from(Some(1)).unwrap_err(),
            TooOld {
                requested: 1,
                oldest: 2
            }
        );
        assert_eq!(
            rvs(&hub.subscribe_from(Some(2)).unwrap().backlog),
            [3, 4, 5]
        );
        let status: StatusError = TooOld {
            requested: 1,
            oldest: 2,
        }
        .into();
        assert_eq!(status.code, http::StatusCode::GONE);
        assert_eq!(status.message, "too old resource version: 1 (2)");
    }

    #[test]
    fn a_restarted_hub_cannot_replay_what_it_never_saw() {
        let hub = Hub::starting_at(10, 100);
        assert!(hub.subscribe_from(Some(50)).is_err());
        assert!(hub.subscribe_from(Some(100)).unwrap().backlog.is_empty());
        assert_eq!(hub.resource_version(), 100);
    }

    #[test]
    fn slow_receivers_lag() {
        let hub = Hub::new(2);
        let mut sub = hub.subscribe_from(None).unwrap();
        for rv in 1..=5 {
            hub.publish(ev(rv));
        }
        assert!(matches!(
            sub.receiver.try_recv(),
            Err(TryRecvError::Lagged(3))
        ));
    }

    #[test]
    fn close_ends_receivers_and_drops_later_events() {
        let hub = Hub::new(4);
        let mut sub = hub.subscribe_from(None).unwrap();
        hub.close();
        assert!(matches!(sub.receiver.try_recv(), Err(TryRecvError::Closed)));
        hub.publish(ev(1));
        let mut late = hub.subscribe_from(None).unwrap();
        assert!(matches!(
            late.receiver.try_recv(),
            Err(TryRecvError::Closed)
        ));
        assert_eq!(hub.resource_version(), 0);
    }

    /// Subscribing while another thread publishes never loses or duplicates an event.
    #[test]
    fn subscribe_races_publish_without_gaps() {
        const N: u64 = 5_000;
        let hub = std::sync::Arc::new(Hub::new(N as usize));
        let publisher = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for rv in 1..=N {
                    hub.publish(ev(rv));
                }
            })
        };
        let mut subs = Vec::new();
        while subs.len() < 20 {
            let from = hub.resource_version();
            subs.push((from, hub.subscribe_from(Some(from)).unwrap()));
            std::thread::yield_now();
        }
        publisher.join().unwrap();
        for (from, mut sub) in subs {
            let mut seen = rvs(&sub.backlog);
            while let Ok(e) = sub.receiver.try_recv() {
                seen.push(e.resource_version);
            }
            assert_eq!(seen, (from + 1..=N).collect::<Vec<_>>());
        }
    }
}
