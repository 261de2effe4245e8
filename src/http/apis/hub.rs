//! [`Hub`]: fans committed changes out to watchers and remembers the most recent ones, so a
//! watch can resume from a `resourceVersion` instead of re-listing.
//!
//! Publish and subscribe take the same lock, so every event is either in a subscriber's
//! backlog or in its queue, never both and never neither. Events must be published in
//! increasing resourceVersion order (the domain's `imagestream::events::Events` releases them
//! that way); one hub per watchable resource (imagestreams, images) is the intended use.
//!
//! Every watcher has its own queue, bounded in events and in bytes, and all queues together
//! stay within a server-wide [`WatchBudget`]. A watcher whose queue would pass a bound is
//! dropped from fan-out at once and its queue freed: it then reads a [`RecvError::Lagged`]
//! (the watch ends with a 410), and its `on_lag` action runs, so one that does not read at all
//! can be disconnected. Publishing never waits for a watcher.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

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

/// Why a receiver gets no more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// It fell this many events behind a bound and was dropped.
    Lagged(u64),
    /// The hub closed (shutdown).
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    Empty,
    Lagged(u64),
    Closed,
}

/// The bytes all watchers' queues may hold together, shared by every hub of a server. Each
/// watcher is charged for each event it holds, as if it held its own copy.
#[derive(Debug)]
pub struct WatchBudget {
    limit: usize,
    used: AtomicUsize,
}

impl WatchBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(WatchBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes the watchers' queues hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn charge(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::SeqCst);
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
    }
}

/// What one watcher may have queued: events it has not yet taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatcherLimits {
    pub events: usize,
    pub bytes: usize,
}

/// What a new watcher starts from.
#[derive(Debug)]
pub struct Subscription {
    /// Buffered events newer than the requested resourceVersion, oldest first.
    pub backlog: Vec<WatchEvent>,
    /// Every event published after this subscription, in order.
    pub receiver: Receiver,
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
    watcher: WatcherLimits,
    watchers_budget: Arc<WatchBudget>,
    state: Mutex<State>,
    gauges: WatchGauges,
}

/// Default memory budget of one hub's backlog.
pub const DEFAULT_BUDGET: usize = 64 * 1024 * 1024;
/// Default bound of one watcher's queue, in bytes.
pub const DEFAULT_WATCHER_BYTES: usize = 16 * 1024 * 1024;
/// Default budget of all watchers' queues together.
pub const DEFAULT_WATCHERS_BUDGET: usize = 256 * 1024 * 1024;

struct State {
    closed: bool,
    watchers: Vec<Arc<Slot>>,
    buffer: VecDeque<WatchEvent>,
    /// Sum of the buffered events' weights.
    weight: usize,
    /// Every event newer than `floor` is in `buffer` or still to come.
    floor: u64,
    latest: u64,
}

/// One watcher's queue.
struct Slot {
    queue: Mutex<Queue>,
    ready: Notify,
}

type OnLag = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    events: VecDeque<WatchEvent>,
    bytes: usize,
    /// Set once no more events will be added (the queued ones are still delivered).
    end: Option<RecvError>,
    on_lag: Option<OnLag>,
}

impl Slot {
    fn new(end: Option<RecvError>) -> Arc<Self> {
        Arc::new(Slot {
            queue: Mutex::new(Queue {
                end,
                ..Queue::default()
            }),
            ready: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ended(&self) -> bool {
        self.lock().end.is_some()
    }
}

impl Queue {
    /// Drops the queue and ends it with `Lagged`; returns the action to run.
    fn lag(&mut self, budget: &WatchBudget) -> Option<OnLag> {
        let missed = self.events.len() as u64;
        self.events.clear();
        budget.release(std::mem::take(&mut self.bytes));
        self.end = Some(RecvError::Lagged(missed));
        self.on_lag.take()
    }
}

/// A watcher's end of its queue.
pub struct Receiver {
    slot: Arc<Slot>,
    budget: Arc<WatchBudget>,
}

impl Receiver {
    /// The next event, or why there are no more.
    pub async fn recv(&mut self) -> Result<WatchEvent, RecvError> {
        loop {
            match self.try_recv() {
                Ok(e) => return Ok(e),
                Err(TryRecvError::Lagged(n)) => return Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
                // One receiver per slot: a wake-up sent before this wait is kept as a permit.
                Err(TryRecvError::Empty) => self.slot.ready.notified().await,
            }
        }
    }

    pub fn try_recv(&mut self) -> Result<WatchEvent, TryRecvError> {
        let mut q = self.slot.lock();
        if let Some(e) = q.events.pop_front() {
            q.bytes -= e.weight;
            self.budget.release(e.weight);
            return Ok(e);
        }
        match q.end {
            None => Err(TryRecvError::Empty),
            Some(RecvError::Lagged(n)) => Err(TryRecvError::Lagged(n)),
            Some(RecvError::Closed) => Err(TryRecvError::Closed),
        }
    }

    /// Runs `action` (once, from the publishing task) if this watcher is dropped for falling
    /// behind; right away if it already was.
    pub fn on_lag(&self, action: impl FnOnce() + Send + 'static) {
        let mut q = self.slot.lock();
        if matches!(q.end, Some(RecvError::Lagged(_))) {
            drop(q);
            action();
        } else {
            q.on_lag = Some(Box::new(action));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut q = self.slot.lock();
        q.events.clear();
        self.budget.release(std::mem::take(&mut q.bytes));
        q.end.get_or_insert(RecvError::Closed);
        q.on_lag = None;
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
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
        let capacity = capacity.max(1);
        Self::with_limits(
            capacity,
            budget,
            WatcherLimits {
                events: capacity,
                bytes: DEFAULT_WATCHER_BYTES,
            },
            WatchBudget::new(DEFAULT_WATCHERS_BUDGET),
            current_rv,
        )
    }

    /// A hub whose watchers may each queue up to `watcher` and all together (with those of
    /// other hubs sharing `watchers_budget`) up to that budget.
    pub fn with_limits(
        capacity: usize,
        budget: usize,
        watcher: WatcherLimits,
        watchers_budget: Arc<WatchBudget>,
        current_rv: u64,
    ) -> Self {
        Hub {
            capacity: capacity.max(1),
            budget,
            watcher: WatcherLimits {
                events: watcher.events.max(1),
                bytes: watcher.bytes,
            },
            watchers_budget,
            state: Mutex::new(State {
                closed: false,
                watchers: Vec::new(),
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

    /// Buffers `event` and queues it for every current watcher. Ignored once closed.
    pub fn publish(&self, event: WatchEvent) {
        let mut lagged = Vec::new();
        {
            let mut s = self.lock();
            if s.closed {
                return;
            }
            // Objects written by one transaction share its revision.
            if event.resource_version < s.latest {
                tracing::warn!(
                    rv = event.resource_version,
                    latest = s.latest,
                    "watch event published out of resourceVersion order"
                );
            }
            s.latest = s.latest.max(event.resource_version);
            while s.buffer.len() >= self.capacity
                || (!s.buffer.is_empty() && s.weight + event.weight > self.budget)
            {
                let Some(evicted) = s.buffer.pop_front() else {
                    break;
                };
                s.weight -= evicted.weight;
                self.gauges.buffered_bytes.sub(gauge_value(evicted.weight));
                s.floor = s.floor.max(evicted.resource_version);
            }
            s.weight += event.weight;
            self.gauges.buffered_bytes.add(gauge_value(event.weight));
            s.buffer.push_back(event.clone());
            s.watchers.retain(|w| !w.ended());
            for w in &s.watchers {
                let mut q = w.lock();
                q.events.push_back(event.clone());
                q.bytes += event.weight;
                self.watchers_budget.charge(event.weight);
                if q.events.len() > self.watcher.events || q.bytes > self.watcher.bytes {
                    lagged.extend(q.lag(&self.watchers_budget));
                }
                drop(q);
                w.ready.notify_one();
            }
            // Over the server-wide budget: the watchers holding the most go first.
            while self.watchers_budget.used() > self.watchers_budget.limit {
                let fullest = s
                    .watchers
                    .iter()
                    .map(|w| (w.lock().bytes, w))
                    .filter(|(bytes, _)| *bytes > 0)
                    .max_by_key(|(bytes, _)| *bytes)
                    .map(|(_, w)| w.clone());
                let Some(w) = fullest else { break };
                lagged.extend(w.lock().lag(&self.watchers_budget));
                w.ready.notify_one();
            }
        }
        for action in lagged {
            action();
        }
    }

    /// Subscribes a watcher. `None` (a watch that starts from a fresh list) gets no backlog;
    /// `Some(rv)` gets every buffered event newer than `rv`, or [`TooOld`] when some of them
    /// have already been evicted.
    pub fn subscribe_from(&self, resource_version: Option<u64>) -> Result<Subscription, TooOld> {
        let mut s = self.lock();
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
        let slot = if s.closed {
            Slot::new(Some(RecvError::Closed))
        } else {
            let slot = Slot::new(None);
            s.watchers.push(slot.clone());
            slot
        };
        self.gauges.watchers.inc();
        Ok(Subscription {
            backlog,
            receiver: Receiver {
                slot,
                budget: self.watchers_budget.clone(),
            },
            resource_version: s.latest,
            watcher: WatcherGuard(self.gauges.watchers.clone()),
        })
    }

    /// Whether any watch is receiving events now.
    pub fn watched(&self) -> bool {
        let s = self.lock();
        !s.closed && s.watchers.iter().any(|w| !w.ended())
    }

    /// The newest resourceVersion published (or the starting one).
    pub fn resource_version(&self) -> u64 {
        self.lock().latest
    }

    /// Events up to `upto` may never have been published here (a replica that fell behind the
    /// change log): the backlog is dropped, so resuming from before it is refused as too old
    /// (410), and every current watcher ends with the 410 a lagging watcher gets, so clients
    /// list again rather than go on with a hole.
    pub fn gap(&self, upto: u64) {
        let mut lagged = Vec::new();
        {
            let mut s = self.lock();
            for e in s.buffer.drain(..) {
                self.gauges.buffered_bytes.sub(gauge_value(e.weight));
            }
            s.weight = 0;
            s.floor = s.floor.max(upto);
            s.latest = s.latest.max(upto);
            for w in s.watchers.drain(..) {
                lagged.extend(w.lock().lag(&self.watchers_budget));
                w.ready.notify_one();
            }
        }
        for action in lagged {
            action();
        }
    }

    /// Ends every watch (their bodies finish cleanly) and refuses new events; for graceful
    /// shutdown, which would otherwise wait out every open watch's timeout.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        for w in s.watchers.drain(..) {
            w.lock().end.get_or_insert(RecvError::Closed);
            w.ready.notify_one();
        }
    }
}

fn gauge_value(weight: usize) -> i64 {
    i64::try_from(weight).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_ends_watchers_with_lag_and_refuses_older_resumes() {
        let hub = Hub::new(100);
        for rv in 1..=5 {
            hub.publish(big(rv));
        }
        let mut sub = hub.subscribe_from(Some(3)).unwrap();
        assert_eq!(sub.backlog.len(), 2);
        hub.gap(9);
        assert!(matches!(
            sub.receiver.try_recv(),
            Err(TryRecvError::Lagged(_))
        ));
        assert!(
            hub.subscribe_from(Some(5)).is_err(),
            "resume across the gap"
        );
        let mut fresh = hub.subscribe_from(Some(9)).unwrap();
        hub.publish(big(10));
        assert_eq!(fresh.receiver.try_recv().unwrap().resource_version, 10);
    }

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
    use std::sync::atomic::AtomicBool;

    fn big(rv: u64) -> WatchEvent {
        let object = json!({"metadata": {"name": "x"}, "blob": "y".repeat(1000)});
        WatchEvent::new(EventType::Modified, rv, object)
    }

    #[test]
    fn a_watcher_past_its_byte_bound_is_dropped_and_its_bytes_freed() {
        let budget = WatchBudget::new(1 << 20);
        let weight = big(0).weight;
        let limits = WatcherLimits {
            events: 100,
            bytes: 5 * weight,
        };
        let hub = Hub::with_limits(100, 1 << 20, limits, budget.clone(), 0);
        let mut slow = hub.subscribe_from(None).unwrap().receiver;
        let mut fast = hub.subscribe_from(None).unwrap().receiver;
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        slow.on_lag(move || flag.store(true, Ordering::SeqCst));
        for rv in 1..=10 {
            hub.publish(big(rv));
            assert_eq!(fast.try_recv().unwrap().resource_version, rv);
            assert_eq!(dropped.load(Ordering::SeqCst), rv > 5, "after {rv}");
        }
        assert_eq!(slow.try_recv().unwrap_err(), TryRecvError::Lagged(6));
        assert_eq!(budget.used(), 0);
        assert!(hub.watched());
        drop(fast);
        hub.publish(big(11));
        assert!(!hub.watched());
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_server_wide_budget_drops_the_fullest_watchers() {
        let weight = big(0).weight;
        let budget = WatchBudget::new(7 * weight);
        let limits = WatcherLimits {
            events: 100,
            bytes: 100 * weight,
        };
        let streams = Hub::with_limits(100, 1 << 20, limits, budget.clone(), 0);
        let images = Hub::with_limits(100, 1 << 20, limits, budget.clone(), 0);
        let mut a = streams.subscribe_from(None).unwrap().receiver;
        let mut b = streams.subscribe_from(None).unwrap().receiver;
        let mut c = images.subscribe_from(None).unwrap().receiver;
        images.publish(big(1));
        // a and b hold 3 events each, c one: 7 in all.
        for rv in 2..=4 {
            streams.publish(big(rv));
        }
        assert_eq!(budget.used(), 7 * weight);
        b.try_recv().unwrap();
        streams.publish(big(5));
        // 8 > 7: a holds the most and goes; b and c carry on.
        assert_eq!(a.try_recv().unwrap_err(), TryRecvError::Lagged(4));
        assert_eq!(budget.used(), 4 * weight);
        assert_eq!(b.try_recv().unwrap().resource_version, 3);
        assert_eq!(c.try_recv().unwrap().resource_version, 1);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

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
