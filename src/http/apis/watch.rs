//! Streaming watch responses: one JSON object per line, `{"type":"ADDED","object":{...}}`, as
//! the Kubernetes apiserver writes them for `?watch=true`.
//!
//! A watch sends, in order: the initial events it was given (ADDED for a fresh list, or a
//! [`Hub`](super::hub::Hub) backlog), an optional `k8s.io/initial-events-end` BOOKMARK, then
//! live events from the hub. It ends cleanly after `timeoutSeconds` (default 30
//! minutes, at most a day) or when the hub closes; clients simply re-watch from the last
//! resourceVersion they saw. A receiver that fell behind gets an `ERROR` event carrying a 410
//! Expired `Status` and the stream ends: the client then re-lists, exactly as after a too-old
//! resourceVersion.
//!
//! Bookmarks: only when the client sent `allowWatchBookmarks=true`, one BOOKMARK per minute
//! carrying the newest resourceVersion the watcher has been brought up to (including events
//! the filter dropped), so an idle watch can resume without replaying or re-listing.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{header, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use super::hub::WatcherGuard;
pub use super::hub::{Hub, Receiver, RecvError, Subscription, TooOld};
use super::path::ListOptions;
use super::resource::Resource;
use super::status::StatusError;
use crate::http::response::{set, Body, Response};
use crate::http::rope::Rope;
use crate::registry::names::Namespace;

/// Server default for `timeoutSeconds` (the apiserver's is 30–60 minutes, randomised).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Upper bound on `timeoutSeconds`, so a huge value cannot overflow the deadline.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a watcher dropped for falling behind has to take its 410 ERROR event before its
/// connection is closed: one that does not read at all would otherwise hold it forever.
pub const LAGGED_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// The change kinds a hub carries. BOOKMARK and ERROR are written by the watch itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change to one object, shared by every watcher (the object is not copied).
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: EventType,
    /// The object's `metadata.resourceVersion` after the change (for a delete: of the delete).
    pub resource_version: u64,
    /// The full wire object (ImageStream, Image, ...), with `kind` and `apiVersion` set.
    pub object: Arc<Value>,
    /// About how many bytes the object holds (what a watch backlog budgets by).
    pub weight: usize,
    /// The object is too costly to build when nobody may be watching: `stub` holds what
    /// filters need, and the watch builds the whole object when it delivers the event.
    pub lazy: bool,
    stub: Option<Arc<Stub>>,
}

/// A lazy event's object until delivery: its metadata as filters see it. Backlogs hold
/// thousands of these, so it is a struct, not a JSON value (about a kilobyte less each).
#[derive(Debug, Default)]
pub struct Stub {
    pub name: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
}

impl Stub {
    /// The object a watch sends when the whole one cannot be built (it is gone).
    fn to_value(&self) -> Value {
        let mut metadata = json!({
            "name": self.name,
            "resourceVersion": self.resource_version,
        });
        if !self.namespace.is_empty() {
            metadata["namespace"] = json!(self.namespace);
        }
        if !self.labels.is_empty() {
            metadata["labels"] = json!(self.labels);
        }
        json!({ "metadata": metadata })
    }

    fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.name.len()
            + self.namespace.len()
            + self.resource_version.len()
            + self
                .labels
                .iter()
                .map(|(k, v)| 64 + k.len() + v.len())
                .sum::<usize>()
    }
}

/// Renders the whole object of a lazy event as JSON (`None`: it is gone; the stub is sent).
pub type Resolver = Arc<dyn Fn(&WatchEvent) -> Option<Arc<Rope>> + Send + Sync>;

/// Most bytes copied into one chunk of a rendered object as it is sent.
const ROPE_CHUNK: usize = 64 * 1024;

/// Turns each delivered object into what the client asked for (a Table row for kubectl).
pub type Presenter = Arc<dyn Fn(Value) -> Value + Send + Sync>;

/// Roughly the heap a JSON value takes: its text plus a node's cost (a `Value`, and for object
/// members a map entry and a key `String`; measured with massif at 60-80 bytes).
fn approximate_size(v: &Value) -> usize {
    72 + match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(approximate_size).sum(),
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + approximate_size(v)).sum(),
        _ => 0,
    }
}

impl WatchEvent {
    pub fn new(kind: EventType, resource_version: u64, object: impl Into<Arc<Value>>) -> Self {
        let object = object.into();
        WatchEvent {
            kind,
            resource_version,
            weight: approximate_size(&object),
            object,
            lazy: false,
            stub: None,
        }
    }

    /// An event whose whole object is built on delivery (see [`WatchEvent::lazy`]).
    pub fn lazy(kind: EventType, resource_version: u64, stub: Stub) -> Self {
        static NONE: std::sync::OnceLock<Arc<Value>> = std::sync::OnceLock::new();
        WatchEvent {
            kind,
            resource_version,
            object: NONE.get_or_init(|| Arc::new(Value::Null)).clone(),
            weight: stub.weight(),
            lazy: true,
            stub: Some(Arc::new(stub)),
        }
    }

    /// The object as known without building it: the whole object, or a lazy event's stub.
    fn known_object(&self) -> std::borrow::Cow<'_, Value> {
        match &self.stub {
            Some(stub) => std::borrow::Cow::Owned(stub.to_value()),
            None => std::borrow::Cow::Borrowed(&self.object),
        }
    }

    pub fn name(&self) -> &str {
        match &self.stub {
            Some(stub) => &stub.name,
            None => self.object["metadata"]["name"].as_str().unwrap_or(""),
        }
    }

    /// `None` for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        match &self.stub {
            Some(stub) => Some(stub.namespace.as_str()).filter(|ns| !ns.is_empty()),
            None => self.object["metadata"]["namespace"].as_str(),
        }
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        if let Some(stub) = &self.stub {
            return stub.labels.clone();
        }
        match self.object["metadata"]["labels"].as_object() {
            Some(m) => m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect(),
            None => BTreeMap::new(),
        }
    }
}

/// Decides which events a watcher sees.
pub type EventFilter = Arc<dyn Fn(&WatchEvent) -> bool + Send + Sync>;

pub fn match_all() -> EventFilter {
    Arc::new(|_| true)
}

/// The filter a watch request asks for: its namespace (if namespaced), `fieldSelector` and
/// `labelSelector`.
pub fn selector_filter(namespace: Option<Namespace>, options: &ListOptions) -> EventFilter {
    let options = options.clone();
    Arc::new(move |e: &WatchEvent| {
        let in_namespace = match &namespace {
            Some(ns) => e.namespace() == Some(ns.as_str()),
            None => true,
        };
        in_namespace
            && options.field_selector.matches(e.name(), e.namespace())
            && (options.label_selector.is_empty() || options.label_selector.matches(&e.labels()))
    })
}

/// BOOKMARK settings: what the bookmark objects are (client-go decodes them into the watched
/// type, so they need its kind) and whether to mark the end of the initial events.
#[derive(Debug, Clone)]
pub struct Bookmarks {
    pub resource: Resource,
    pub interval: Duration,
    /// `sendInitialEvents=true`: after the initial events, send a BOOKMARK annotated
    /// `k8s.io/initial-events-end: "true"` (client-go's streaming list waits for it).
    pub initial_events_end: bool,
}

/// A watch response under construction.
///
/// ```ignore
/// let sub = hub.subscribe_from(match options.watch_start() {
///     WatchStart::InitialState => None,
///     WatchStart::After(rv) => Some(rv),
/// })?;
/// let (initial, start_rv) = match options.watch_start() {
///     // Subscribe first, then snapshot: events already in the snapshot are skipped by rv.
///     WatchStart::InitialState => snapshot_as_added_events(),
///     WatchStart::After(rv) => (sub.backlog, rv),
/// };
/// Watch::new(sub.receiver, start_rv)
///     .initial(initial)
///     .options(Resource::ImageStreams, namespace, &options)
///     .into_response()
/// ```
pub struct Watch {
    initial: Vec<WatchEvent>,
    receiver: Receiver,
    start_rv: u64,
    filter: EventFilter,
    timeout: Duration,
    bookmarks: Option<Bookmarks>,
    resolver: Option<Resolver>,
    presenter: Option<Presenter>,
    /// Dropped with the body; while it lives, the watch was not delivered to its end.
    alive: Arc<()>,
    watcher: Option<WatcherGuard>,
}

impl Watch {
    /// Live events with a resourceVersion at or below `start_rv` are skipped: they are already
    /// reflected in the initial events (or before the version the client resumed from).
    pub fn new(receiver: Receiver, start_rv: u64) -> Self {
        Watch {
            initial: Vec::new(),
            receiver,
            start_rv,
            filter: match_all(),
            timeout: DEFAULT_TIMEOUT,
            bookmarks: None,
            resolver: None,
            presenter: None,
            alive: Arc::new(()),
            watcher: None,
        }
    }

    /// When the watcher is dropped for falling behind and its body has not ended
    /// [`LAGGED_CLOSE_GRACE`] later (the client is not reading), `disconnect` runs.
    pub fn disconnect_if_stuck(self, disconnect: impl FnOnce() + Send + 'static) -> Self {
        let alive = Arc::downgrade(&self.alive);
        self.receiver.on_lag(move || {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return disconnect();
            };
            runtime.spawn(async move {
                tokio::time::sleep(LAGGED_CLOSE_GRACE).await;
                if alive.upgrade().is_some() {
                    tracing::info!("closing the connection of a watcher that stopped reading");
                    disconnect();
                }
            });
        });
        self
    }

    /// Keeps the subscription's guard for as long as the body runs (the watch counts as open).
    pub fn counted(mut self, watcher: WatcherGuard) -> Self {
        self.watcher = Some(watcher);
        self
    }

    /// How lazy events get their whole object.
    /// Each event's object goes through `presenter` when delivered.
    pub fn presenter(mut self, presenter: Option<Presenter>) -> Self {
        self.presenter = presenter;
        self
    }

    pub fn resolver(mut self, resolver: Option<Resolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Events sent first, in order (the filter still applies to them).
    pub fn initial(mut self, events: Vec<WatchEvent>) -> Self {
        self.initial = events;
        self
    }

    pub fn filter(mut self, filter: EventFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Clamped to [`MAX_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    pub fn bookmarks(mut self, bookmarks: Option<Bookmarks>) -> Self {
        self.bookmarks = bookmarks;
        self
    }

    /// Everything a request's list options decide: the selector filter, `timeoutSeconds`,
    /// `allowWatchBookmarks` and `sendInitialEvents`.
    pub fn options(
        self,
        resource: Resource,
        namespace: Option<Namespace>,
        options: &ListOptions,
    ) -> Self {
        let bookmarks = options.allow_watch_bookmarks.then(|| Bookmarks {
            resource,
            interval: BOOKMARK_INTERVAL,
            initial_events_end: options.send_initial_events == Some(true),
        });
        self.filter(selector_filter(namespace, options))
            .timeout(options.timeout.unwrap_or(DEFAULT_TIMEOUT))
            .bookmarks(bookmarks)
    }

    pub fn into_body(self) -> Body {
        let bookmark_timer = self.bookmarks.as_ref().map(|b| {
            let period = b.interval.max(Duration::from_millis(1));
            let mut i = tokio::time::interval_at(Instant::now() + period, period);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        let pump = Pump {
            send_end_bookmark: self
                .bookmarks
                .as_ref()
                .is_some_and(|b| b.initial_events_end),
            initial: self.initial.into(),
            receiver: self.receiver,
            start_rv: self.start_rv,
            seen_rv: self.start_rv,
            filter: self.filter,
            deadline: Box::pin(tokio::time::sleep(self.timeout)),
            bookmark_resource: self.bookmarks.map(|b| b.resource),
            bookmark_timer,
            finished: false,
            resolver: self.resolver,
            presenter: self.presenter,
            sending: None,
            _alive: self.alive,
            _watcher: self.watcher,
        };
        let frames = stream::unfold(pump, |mut pump| async move {
            let bytes = pump.next().await?;
            Some((Ok::<_, io::Error>(http_body::Frame::data(bytes)), pump))
        });
        StreamBody::new(frames).boxed_unsync()
    }

    /// 200 with a chunked `application/json` body (no Content-Length: it never ends on its own).
    pub fn into_response(self) -> Response {
        let mut resp = http::Response::new(self.into_body());
        *resp.status_mut() = StatusCode::OK;
        set(&mut resp, header::CONTENT_TYPE, "application/json");
        set(&mut resp, header::CACHE_CONTROL, "no-cache, private");
        resp
    }
}

struct Pump {
    initial: VecDeque<WatchEvent>,
    send_end_bookmark: bool,
    receiver: Receiver,
    start_rv: u64,
    /// Newest resourceVersion this watcher is up to date with; what bookmarks report.
    seen_rv: u64,
    filter: EventFilter,
    deadline: Pin<Box<Sleep>>,
    bookmark_resource: Option<Resource>,
    bookmark_timer: Option<Interval>,
    finished: bool,
    resolver: Option<Resolver>,
    presenter: Option<Presenter>,
    /// A rendered object being sent: the object, its next part, the end of its line.
    sending: Option<(Arc<Rope>, usize, Bytes)>,
    _alive: Arc<()>,
    /// Dropped with the body, however the watch ends.
    _watcher: Option<WatcherGuard>,
}

impl Pump {
    /// The event's line, or its first chunk with the rest queued.
    fn event_line(&mut self, e: &WatchEvent) -> Bytes {
        let built = match (&self.resolver, e.lazy) {
            (Some(resolve), true) => resolve(e),
            _ => None,
        };
        match (built, self.presenter.as_ref()) {
            (Some(object), Some(present)) => {
                let object = object.to_bytes();
                match serde_json::from_slice(&object) {
                    Ok(v) => line(e.kind.as_str(), &present(v)),
                    Err(_) => rendered_line(e.kind.as_str(), &object),
                }
            }
            (None, Some(present)) => line(e.kind.as_str(), &present(e.known_object().into_owned())),
            (Some(object), None) => {
                // The object (megabytes for a big stream, shared by every watcher of the event)
                // is sent a chunk at a time: a watcher holds a chunk, not a copy.
                let (head, tail) = rendered_line_parts(e.kind.as_str());
                self.sending = Some((object, 0, tail));
                head
            }
            (None, None) => line(e.kind.as_str(), &e.known_object()),
        }
    }

    /// The next line to write, or `None` when the watch is over.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some((object, next, tail)) = &mut self.sending {
            let chunk = object.chunk(next, ROPE_CHUNK);
            if chunk.is_some() {
                return chunk;
            }
            let tail = tail.clone();
            self.sending = None;
            return Some(tail);
        }
        if self.finished {
            return None;
        }
        while let Some(e) = self.initial.pop_front() {
            self.seen_rv = self.seen_rv.max(e.resource_version);
            if (self.filter)(&e) {
                return Some(self.event_line(&e));
            }
        }
        if std::mem::take(&mut self.send_end_bookmark) {
            return self.bookmark(true);
        }
        loop {
            tokio::select! {
                biased;
                () = &mut self.deadline => return None,
                r = self.receiver.recv() => match r {
                    Ok(e) => {
                        self.seen_rv = self.seen_rv.max(e.resource_version);
                        if e.resource_version > self.start_rv && (self.filter)(&e) {
                            return Some(self.event_line(&e));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        self.finished = true;
                        let status = StatusError::expired(format!(
                            "the watch fell behind by more than its buffer holds ({missed} events unsent) and was closed; re-list to continue (last seen resource version: {})",
                            self.seen_rv
                        ));
                        return Some(line("ERROR", &status.to_json()));
                    }
                    Err(RecvError::Closed) => return None,
                },
                () = tick(&mut self.bookmark_timer) => return self.bookmark(false),
            }
        }
    }

    fn bookmark(&self, initial_events_end: bool) -> Option<Bytes> {
        let resource = self.bookmark_resource?;
        let mut metadata =
            json!({ "resourceVersion": self.seen_rv.to_string(), "creationTimestamp": null });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object = json!({
            "kind": resource.kind(),
            "apiVersion": resource.api_version(),
            "metadata": metadata,
        });
        Some(line("BOOKMARK", &object))
    }
}

async fn tick(timer: &mut Option<Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// `{"type":...,"object":...}` and a newline.
fn line(kind: &str, object: &Value) -> Bytes {
    #[derive(Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a Value,
    }
    let mut v = serde_json::to_vec(&Line { kind, object }).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// [`line`] for an object already rendered as JSON.
fn rendered_line(kind: &str, object: &[u8]) -> Bytes {
    let (head, tail) = rendered_line_parts(kind);
    let mut v = Vec::with_capacity(head.len() + object.len() + tail.len());
    v.extend_from_slice(&head);
    v.extend_from_slice(object);
    v.extend_from_slice(&tail);
    Bytes::from(v)
}

/// What goes before and after an object already rendered as JSON in its [`line`].
fn rendered_line_parts(kind: &str) -> (Bytes, Bytes) {
    let mut head = b"{\"type\":".to_vec();
    head.extend_from_slice(&serde_json::to_vec(kind).unwrap_or_default());
    head.extend_from_slice(b",\"object\":");
    (Bytes::from(head), Bytes::from_static(b"}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::apis::selector::{FieldSelector, LabelSelector};
    use http_body_util::BodyExt;

    fn obj(ns: &str, name: &str, rv: u64, labels: Value) -> Value {
        json!({
            "kind": "ImageStream", "apiVersion": "image.openshift.io/v1",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string(), "labels": labels}
        })
    }

    fn ev(kind: EventType, ns: &str, name: &str, rv: u64) -> WatchEvent {
        WatchEvent::new(kind, rv, obj(ns, name, rv, json!({"app": name})))
    }

    /// Reads the next line, or `None` at the end of the stream.
    async fn next_line(body: &mut Body) -> Option<Value> {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("watch stalled")?
            .expect("body error");
        let data = frame.into_data().expect("data frame");
        assert_eq!(data.last(), Some(&b'\n'), "one object per line");
        Some(serde_json::from_slice(&data).unwrap())
    }

    fn summary(v: &Value) -> (String, String) {
        (
            v["type"].as_str().unwrap().to_string(),
            v["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    }

    #[tokio::test]
    async fn initial_then_live_events_filtered_until_timeout() {
        let hub = Hub::new(16);
        let sub = hub.subscribe_from(None).unwrap();
        // Published between subscribe and snapshot: already in the snapshot at rv 3.
        hub.publish(ev(EventType::Modified, "ns", "a", 3));
        let options = ListOptions {
            label_selector: LabelSelector::parse("app in (a,b)").unwrap(),
            ..ListOptions::default()
        };
        let mut body = Watch::new(sub.receiver, 3)
            .initial(vec![
                ev(EventType::Added, "ns", "a", 3),
                ev(EventType::Added, "ns", "b", 2),
                ev(EventType::Added, "ns", "c", 1),
            ])
            .options(
                Resource::ImageStreams,
                Some(Namespace::parse("ns").unwrap()),
                &options,
            )
            .timeout(Duration::from_millis(1500))
            .into_body();
        assert_eq!(
            summary(&next_line(&mut body).await.unwrap()),
            ("ADDED".into(), "3".into())
        );
        assert_eq!(
            summary(&next_line(&mut body).await.unwrap()),
            ("ADDED".into(), "2".into())
        );
        hub.publish(ev(EventType::Modified, "other", "a", 4)); // other namespace
        hub.publish(ev(EventType::Modified, "ns", "c", 5)); // label mismatch
        hub.publish(ev(EventType::Deleted, "ns", "b", 6));
        let deleted = next_line(&mut body).await.unwrap();
        assert_eq!(summary(&deleted), ("DELETED".into(), "6".into()));
        assert_eq!(deleted["object"]["metadata"]["name"], "b");
        assert!(next_line(&mut body).await.is_none(), "ends at the timeout");
    }

    #[tokio::test]
    async fn replay_from_backlog_with_field_selector() {
        let hub = Hub::new(16);
        for rv in 1..=4 {
            hub.publish(ev(
                EventType::Modified,
                "ns",
                if rv % 2 == 0 { "x" } else { "y" },
                rv,
            ));
        }
        let sub = hub.subscribe_from(Some(1)).unwrap();
        let options = ListOptions {
            field_selector: FieldSelector::parse("metadata.name=x").unwrap(),
            timeout: Some(Duration::from_millis(100)),
            ..ListOptions::default()
        };
        let mut body = Watch::new(sub.receiver, 1)
            .initial(sub.backlog)
            .options(Resource::ImageStreams, None, &options)
            .into_body();
        assert_eq!(summary(&next_line(&mut body).await.unwrap()).1, "2");
        assert_eq!(summary(&next_line(&mut body).await.unwrap()).1, "4");
        assert!(next_line(&mut body).await.is_none());
    }

    #[tokio::test]
    async fn lagging_watch_gets_410_error_and_ends() {
        let hub = Hub::new(2);
        let sub = hub.subscribe_from(None).unwrap();
        let mut body = Watch::new(sub.receiver, 0).into_body();
        for rv in 1..=5 {
            hub.publish(ev(EventType::Modified, "ns", "a", rv));
        }
        let err = next_line(&mut body).await.unwrap();
        assert_eq!(err["type"], "ERROR");
        assert_eq!(err["object"]["kind"], "Status");
        assert_eq!(err["object"]["code"], 410);
        assert_eq!(err["object"]["reason"], "Expired");
        assert!(next_line(&mut body).await.is_none());
    }

    #[tokio::test]
    async fn bookmarks_carry_the_newest_seen_version() {
        let hub = Hub::new(8);
        let sub = hub.subscribe_from(None).unwrap();
        let options = ListOptions {
            allow_watch_bookmarks: true,
            send_initial_events: Some(true),
            ..ListOptions::default()
        };
        let mut body = Watch::new(sub.receiver, 7)
            .initial(vec![ev(EventType::Added, "ns", "a", 5)])
            .options(
                Resource::ImageStreams,
                Some(Namespace::parse("ns").unwrap()),
                &options,
            )
            .bookmarks(Some(Bookmarks {
                resource: Resource::ImageStreams,
                interval: Duration::from_millis(50),
                initial_events_end: true,
            }))
            .timeout(Duration::from_secs(2))
            .into_body();
        assert_eq!(next_line(&mut body).await.unwrap()["type"], "ADDED");
        let end = next_line(&mut body).await.unwrap();
        assert_eq!(end["type"], "BOOKMARK");
        assert_eq!(end["object"]["kind"], "ImageStream");
        assert_eq!(end["object"]["apiVersion"], "image.openshift.io/v1");
        assert_eq!(end["object"]["metadata"]["resourceVersion"], "7");
        assert_eq!(
            end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
        // An event the filter drops still advances the bookmark.
        hub.publish(ev(EventType::Modified, "elsewhere", "z", 9));
        let periodic = next_line(&mut body).await.unwrap();
        assert_eq!(periodic["type"], "BOOKMARK");
        assert_eq!(periodic["object"]["metadata"]["resourceVersion"], "9");
        assert!(periodic["object"]["metadata"].get("annotations").is_none());
    }

    #[tokio::test]
    async fn closing_the_hub_ends_the_watch() {
        let hub = Hub::new(4);
        let sub = hub.subscribe_from(None).unwrap();
        let resp = Watch::new(sub.receiver, 0).into_response();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
        let mut body = resp.into_body();
        hub.close();
        assert!(next_line(&mut body).await.is_none());
    }

    #[test]
    fn event_accessors_and_filters() {
        let e = ev(EventType::Added, "ns", "a", 1);
        assert_eq!((e.name(), e.namespace()), ("a", Some("ns")));
        assert_eq!(e.labels().get("app").map(String::as_str), Some("a"));
        let image = WatchEvent::new(
            EventType::Added,
            2,
            json!({"metadata": {"name": "sha256:x"}}),
        );
        assert_eq!(image.namespace(), None);
        assert!(image.labels().is_empty());

        let any = ListOptions::default();
        assert!(selector_filter(None, &any)(&e));
        assert!(selector_filter(Some(Namespace::parse("ns").unwrap()), &any)(&e));
        assert!(!selector_filter(
            Some(Namespace::parse("other").unwrap()),
            &any
        )(&e));
        assert!(!selector_filter(
            Some(Namespace::parse("ns").unwrap()),
            &any
        )(&image));
        let by_label = ListOptions {
            label_selector: LabelSelector::parse("app!=a").unwrap(),
            ..ListOptions::default()
        };
        assert!(!selector_filter(None, &by_label)(&e));
        assert!(selector_filter(None, &by_label)(&image));
    }
}
