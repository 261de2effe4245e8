//! Image streams and images in the metadata store: the one module that reads and writes their
//! records.
//!
//! A stream is many small records, so a write touches only what it changes, however many tags
//! and history entries the stream has (see ARCHITECTURE.md for the layout):
//! - `is\0<ns>\0<name>`: the stream's head: metadata and spec without tags (format 2; format 1
//!   was the whole stream in one value, converted at start-up by [`migrate`]);
//! - `ist\0<ns>\0<name>\0<tag>`: one spec tag;
//! - `iss\0<ns>\0<name>\0<tag>`: one status tag's conditions and the range of its events;
//! - `ise\0<ns>\0<name>\0<tag>\0<!seq>`: one history event; keys count down so a scan lists
//!   the newest first, and a tag's events are always the contiguous sequence numbers
//!   `next - count .. next`, so the top is found without a scan;
//! - `isi\0<ns>\0<name>\0<image>`: how many events of the stream name an image (resolving
//!   image ids, and telling whether an image is new to the stream);
//! - `itk\0<ns>\0<name>\0<tag>`: the spec tags of the stream that track `<tag>`;
//! - and the registry's derived tag index `tag\0<ns>/<name>\0<tag>` (top image per tag).
//!
//! Writes load what they need with [`load_tags`] (the head, the named tags and the tags that
//! track them, each with its top event only) and store the result with [`save_stream`], which
//! writes only records that changed, bumps the store-wide resourceVersion, keeps the tag index
//! and content links true, and applies the content-reachability rule. Writes that replace the
//! whole stream (PUT, delete, pruning) read it with [`read_stream`] outside the transaction and
//! check inside it, with [`load_checked`], that nothing changed meanwhile.

use std::collections::{BTreeMap, BTreeSet};

use berth_storage::record::{decode, encode};
use berth_storage::{Digest, MetadataStore, MetadataStoreExt, Record, TxError, Txn};
use serde::{Deserialize, Serialize};

use super::error::Error;
use super::notice::{ImportFailed, Notice, Origin, TagMoved};
use super::reach::Reach;
use super::types::{Image, ImageStream, NamedTagEventList, TagEvent, TagEventCondition};
use crate::registry::content;
use crate::registry::records::{keys as reg_keys, now_secs, PullThroughRecord, TagRecord};
use crate::registry::{RepositoryName, Tag};

impl Record for ImageStream {
    const KIND: &'static str = "imagestream";
    /// 2: the head only. 1 (whole stream in one value) is read by [`migrate`] alone.
    const VERSION: u8 = 2;
}

impl Record for Image {
    const KIND: &'static str = "image";
    const VERSION: u8 = 1;
}

impl Record for super::types::TagReference {
    const KIND: &'static str = "spectag";
    const VERSION: u8 = 1;
}

impl Record for TagEvent {
    const KIND: &'static str = "tagevent";
    /// 2: fields in wire order (see [`TagEvent`]); 1 (converted streams) decodes the same way.
    const VERSION: u8 = 2;

    fn decode_version(version: u8, json: &[u8]) -> berth_storage::Result<Self> {
        match version {
            1 | 2 => serde_json::from_slice(json).map_err(|e| berth_storage::Error::Corrupt {
                kind: Self::KIND,
                reason: e.to_string(),
            }),
            found => Err(berth_storage::Error::UnsupportedVersion {
                kind: Self::KIND,
                found,
                supported: Self::VERSION,
            }),
        }
    }
}

/// A status tag without its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct StatusHead {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    conditions: Vec<TagEventCondition>,
    /// The next event's sequence number; the top event is `next - 1`.
    next: u64,
    /// Events kept: sequence numbers `next - count .. next`.
    count: u64,
}
impl Record for StatusHead {
    const KIND: &'static str = "statustag";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ImageRefs {
    count: u64,
    /// The pull spec of the newest event naming the image (what tagging it by id records).
    #[serde(default)]
    reference: String,
}
impl Record for ImageRefs {
    const KIND: &'static str = "imagerefs";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Trackers {
    tags: BTreeSet<String>,
}
impl Record for Trackers {
    const KIND: &'static str = "trackers";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Counter {
    value: u64,
}
impl Record for Counter {
    const KIND: &'static str = "counter";
    const VERSION: u8 = 1;
}

pub type TxResult<T> = Result<T, TxError<Error>>;

pub mod keys {
    fn key(parts: &[&str]) -> Vec<u8> {
        parts.join("\0").into_bytes()
    }
    fn prefix(parts: &[&str]) -> Vec<u8> {
        let mut k = key(parts);
        k.push(0);
        k
    }
    pub fn stream(ns: &str, name: &str) -> Vec<u8> {
        key(&["is", ns, name])
    }
    /// Every stream of a namespace, or of all namespaces with `None`.
    pub fn streams(ns: Option<&str>) -> Vec<u8> {
        match ns {
            Some(ns) => prefix(&["is", ns]),
            None => b"is\0".to_vec(),
        }
    }
    pub fn spec_tag(ns: &str, name: &str, tag: &str) -> Vec<u8> {
        key(&["ist", ns, name, tag])
    }
    pub fn spec_tags(ns: &str, name: &str) -> Vec<u8> {
        prefix(&["ist", ns, name])
    }
    pub fn status_tag(ns: &str, name: &str, tag: &str) -> Vec<u8> {
        key(&["iss", ns, name, tag])
    }
    pub fn status_tags(ns: &str, name: &str) -> Vec<u8> {
        prefix(&["iss", ns, name])
    }
    pub fn event(ns: &str, name: &str, tag: &str, seq: u64) -> Vec<u8> {
        let mut k = events(ns, name, tag);
        k.extend_from_slice(format!("{:016x}", u64::MAX - seq).as_bytes());
        k
    }
    pub fn events(ns: &str, name: &str, tag: &str) -> Vec<u8> {
        prefix(&["ise", ns, name, tag])
    }
    /// Every event of every tag of the stream, by tag then newest first.
    pub fn all_events(ns: &str, name: &str) -> Vec<u8> {
        prefix(&["ise", ns, name])
    }
    pub fn image_refs(ns: &str, name: &str, image: &str) -> Vec<u8> {
        key(&["isi", ns, name, image])
    }
    pub fn image_refs_of(ns: &str, name: &str) -> Vec<u8> {
        prefix(&["isi", ns, name])
    }
    pub fn trackers(ns: &str, name: &str, tag: &str) -> Vec<u8> {
        key(&["itk", ns, name, tag])
    }
    pub fn image(name: &str) -> Vec<u8> {
        format!("image\0{name}").into_bytes()
    }
    pub fn images() -> Vec<u8> {
        b"image\0".to_vec()
    }
    /// Where the previous format counted resourceVersions (now the store's revision).
    pub const OLD_RESOURCE_VERSION: &[u8] = b"meta\0resourceVersion";
}

/// What a committed transaction changed, for watchers and controllers.
#[derive(Debug, Clone)]
pub enum Change {
    /// `stream` holds the head as written and the tags this write loaded (not the whole
    /// stream: watchers that want it read it; for a delete, the head alone).
    Stream {
        kind: ChangeKind,
        stream: ImageStream,
        /// The tags whose records (spec or status) the write rewrote, added or removed: what a
        /// kept rendering of the stream must read again. `None`: not known, all of them.
        tags_written: Option<BTreeSet<String>>,
    },
    Image {
        kind: ChangeKind,
        image: Image,
    },
    /// For subscribers outside berth (webhooks); never released to watchers.
    Notice(Notice),
    /// A berth.io Webhook subscription (created, replaced or deleted), as stored minus its
    /// secret; written through the registry like streams so its resourceVersion is the
    /// store's revision and its watchers get it in order.
    Webhook {
        kind: ChangeKind,
        webhook: Box<crate::webhooks::Webhook>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

pub fn get<R: Record>(tx: &mut dyn Txn, key: &[u8]) -> TxResult<Option<R>> {
    match tx.get(key)? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// The store-wide resourceVersion now: the metadata store's revision.
pub fn current_resource_version(meta: &dyn MetadataStore) -> berth_storage::Result<u64> {
    meta.revision()
}

/// The resourceVersion of everything this transaction writes: the store's revision of the
/// commit, shared by every object the transaction changes (as etcd's is).
pub fn next_resource_version(tx: &mut dyn Txn) -> TxResult<u64> {
    Ok(tx.revision()?)
}

/// A stream as a write loaded it: which tags it holds, and how their events are stored.
#[derive(Debug, Clone)]
pub struct Loaded {
    stream: ImageStream,
    /// The status heads of the loaded status tags.
    heads: BTreeMap<String, StatusHead>,
    /// Spec tags looked at (present or not): only these are compared on save.
    spec_scope: BTreeSet<String>,
    /// Whether every event of every tag is loaded (a whole-stream write).
    full: bool,
}

impl Loaded {
    /// The stream as loaded (only the loaded tags, unless a whole-stream write).
    pub fn stream(&self) -> &ImageStream {
        &self.stream
    }
}

/// The stream's head (metadata, spec without tags), inside a transaction.
pub fn load_head(tx: &mut dyn Txn, ns: &str, name: &str) -> TxResult<Option<ImageStream>> {
    get(tx, &keys::stream(ns, name))
}

/// The head plus `tags` and every spec tag that tracks them (transitively), each status tag
/// with its top event only: what a push, a tag, an import or a rollback reads.
pub fn load_tags(
    tx: &mut dyn Txn,
    ns: &str,
    name: &str,
    tags: &[&str],
) -> TxResult<Option<Loaded>> {
    let Some(mut stream) = load_head(tx, ns, name)? else {
        return Ok(None);
    };
    let mut heads = BTreeMap::new();
    let mut spec_scope = BTreeSet::new();
    let mut pending: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    while let Some(tag) = pending.pop() {
        if !spec_scope.insert(tag.clone()) {
            continue;
        }
        if let Some(spec) = get(tx, &keys::spec_tag(ns, name, &tag))? {
            stream.spec.tags.push(spec);
        }
        if let Some(head) = get::<StatusHead>(tx, &keys::status_tag(ns, name, &tag))? {
            let mut items = Vec::new();
            if head.count > 0 {
                if let Some(top) = get(tx, &keys::event(ns, name, &tag, head.next - 1))? {
                    items.push(top);
                }
            }
            stream.status.tags.push(NamedTagEventList {
                tag: tag.clone(),
                items,
                conditions: head.conditions.clone(),
            });
            heads.insert(tag.clone(), head);
        }
        if let Some(t) = get::<Trackers>(tx, &keys::trackers(ns, name, &tag))? {
            pending.extend(t.tags);
        }
    }
    stream.normalize();
    Ok(Some(Loaded {
        stream,
        heads,
        spec_scope,
        full: false,
    }))
}

/// The whole stream, read outside any transaction (scans), or `None` when it does not exist.
pub fn read_stream(
    meta: &dyn MetadataStore,
    ns: &str,
    name: &str,
) -> berth_storage::Result<Option<ImageStream>> {
    read_with(meta, ns, name, true)
}

/// The stream with every tag but only each tag's top event (listing istags).
pub fn read_tops(
    meta: &dyn MetadataStore,
    ns: &str,
    name: &str,
) -> berth_storage::Result<Option<ImageStream>> {
    read_with(meta, ns, name, false)
}

fn read_with(
    meta: &dyn MetadataStore,
    ns: &str,
    name: &str,
    history: bool,
) -> berth_storage::Result<Option<ImageStream>> {
    if history {
        let mut collect = Collect::default();
        return match visit_stream(meta, ns, name, &mut collect) {
            Ok(true) => Ok(collect.stream),
            Ok(false) => Ok(None),
            Err(VisitError::Storage(e)) => Err(e),
            Err(VisitError::Visitor(e)) => Err(berth_storage::Error::Io(e)),
        };
    }
    let Some(bytes) = meta.get(&keys::stream(ns, name))? else {
        return Ok(None);
    };
    let mut stream: ImageStream = decode(&bytes)?;
    stream.spec.tags = scan_values(meta, &keys::spec_tags(ns, name))?;
    let base = keys::status_tags(ns, name);
    for (k, v) in scan_all(meta, &base)? {
        let tag = String::from_utf8_lossy(&k[base.len()..]).into_owned();
        let head: StatusHead = decode(&v)?;
        let items = top_event(meta, (ns, name, &tag), &head)?
            .into_iter()
            .collect();
        stream.status.tags.push(NamedTagEventList {
            tag,
            items,
            conditions: head.conditions,
        });
    }
    Ok(Some(stream))
}

/// Assembles the whole stream from [`visit_stream`].
#[derive(Default)]
struct Collect {
    stream: Option<ImageStream>,
}

impl StreamVisitor for Collect {
    fn head(&mut self, head: &ImageStream) -> std::io::Result<()> {
        self.stream = Some(head.clone());
        Ok(())
    }
    fn spec_tag(&mut self, tag: &super::types::TagReference) -> std::io::Result<()> {
        if let Some(s) = &mut self.stream {
            s.spec.tags.push(tag.clone());
        }
        Ok(())
    }
    fn status_tag(&mut self, tag: &str, conditions: &[TagEventCondition]) -> std::io::Result<()> {
        if let Some(s) = &mut self.stream {
            s.status.tags.push(NamedTagEventList {
                tag: tag.to_string(),
                items: Vec::new(),
                conditions: conditions.to_vec(),
            });
        }
        Ok(())
    }
    fn event(&mut self, event: &TagEvent) -> std::io::Result<()> {
        if let Some(t) = self.stream.as_mut().and_then(|s| s.status.tags.last_mut()) {
            t.items.push(event.clone());
        }
        Ok(())
    }
    fn end_tag(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Receives a stream piece by piece (see [`visit_stream`]).
pub trait StreamVisitor {
    fn head(&mut self, head: &ImageStream) -> std::io::Result<()>;
    fn spec_tag(&mut self, tag: &super::types::TagReference) -> std::io::Result<()>;
    /// A status tag begins; its events follow, newest first, then [`StreamVisitor::end_tag`].
    fn status_tag(&mut self, tag: &str, conditions: &[TagEventCondition]) -> std::io::Result<()>;
    fn event(&mut self, event: &TagEvent) -> std::io::Result<()>;
    /// An event as stored in the current format: `json` is its wire form.
    fn event_json(&mut self, json: &[u8]) -> std::io::Result<()> {
        let event = serde_json::from_slice(json).map_err(std::io::Error::other)?;
        self.event(&event)
    }
    fn end_tag(&mut self) -> std::io::Result<()>;
}

/// Reads the whole stream a page at a time into `visitor`, holding one page in memory
/// whatever the stream's size, in three scans however many tags it has. Returns false when
/// the stream does not exist. The pages are read one after another, not from one snapshot: a
/// write landing meanwhile may show in the pages read after it.
pub fn visit_stream(
    meta: &dyn MetadataStore,
    ns: &str,
    name: &str,
    visitor: &mut dyn StreamVisitor,
) -> Result<bool, VisitError> {
    let Some(bytes) = meta.get(&keys::stream(ns, name))? else {
        return Ok(false);
    };
    let head: ImageStream = decode(&bytes)?;
    visitor.head(&head)?;
    meta.visit::<VisitError>(&keys::spec_tags(ns, name), |_, v| {
        visitor.spec_tag(&decode(v)?)?;
        Ok(())
    })?;
    // Status heads and events both sort by tag, so one pass over each lists every tag's events
    // without a scan per tag.
    let base = keys::status_tags(ns, name);
    let event_base = keys::all_events(ns, name);
    let mut events = Cursor::new(meta, event_base.clone());
    meta.visit::<VisitError>(&base, |k, v| {
        let tag = &k[base.len()..];
        visit_status_head(visitor, &String::from_utf8_lossy(tag), v)?;
        while let Some((key, value)) = events.peek()? {
            // `<tag>\0<16 hex digits>`
            let event_tag = &key[event_base.len()..key.len().saturating_sub(17)];
            match event_tag.cmp(tag) {
                // Events of a tag without a head (none are written) are skipped.
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => visit_event(visitor, value)?,
                std::cmp::Ordering::Greater => break,
            }
            events.advance();
        }
        visitor.end_tag()?;
        Ok(())
    })?;
    Ok(true)
}

/// One tag of the stream as [`visit_stream`] shows it: its spec tag and its status tag with
/// every event, each only when stored (a tag may have either, both or, once deleted, neither).
pub fn visit_tag(
    meta: &dyn MetadataStore,
    (ns, name, tag): (&str, &str, &str),
    visitor: &mut dyn StreamVisitor,
) -> Result<(), VisitError> {
    if let Some(spec) = meta.get(&keys::spec_tag(ns, name, tag))? {
        visitor.spec_tag(&decode(&spec)?)?;
    }
    let Some(head) = meta.get(&keys::status_tag(ns, name, tag))? else {
        return Ok(());
    };
    visit_status_head(visitor, tag, &head)?;
    meta.visit::<VisitError>(&keys::events(ns, name, tag), |_, v| visit_event(visitor, v))?;
    visitor.end_tag()?;
    Ok(())
}

fn visit_status_head(
    visitor: &mut dyn StreamVisitor,
    tag: &str,
    stored: &[u8],
) -> Result<(), VisitError> {
    // Most tags have no conditions: their head need not be decoded to be served.
    let conditions = if stored.windows(12).any(|w| w == b"\"conditions\"") {
        decode::<StatusHead>(stored)?.conditions
    } else {
        Vec::new()
    };
    visitor.status_tag(tag, &conditions)?;
    Ok(())
}

fn visit_event(visitor: &mut dyn StreamVisitor, stored: &[u8]) -> Result<(), VisitError> {
    match stored.split_first() {
        Some((&v, json)) if v == <TagEvent as Record>::VERSION => visitor.event_json(json)?,
        _ => visitor.event(&decode(stored)?)?,
    }
    Ok(())
}

/// Why [`visit_stream`] stopped: the store failed, or the visitor did (its reader left).
#[derive(Debug, thiserror::Error)]
pub enum VisitError {
    #[error(transparent)]
    Storage(#[from] berth_storage::Error),
    #[error(transparent)]
    Visitor(#[from] std::io::Error),
}

/// Entries read per scan when a stream is read whole (small records: a page is well under a
/// MiB).
const PAGE: usize = 1024;

/// Reads a prefix a page at a time, one entry after another.
struct Cursor<'a> {
    meta: &'a dyn MetadataStore,
    prefix: Vec<u8>,
    page: std::collections::VecDeque<KeyValue>,
    after: Option<Vec<u8>>,
    done: bool,
}

impl<'a> Cursor<'a> {
    fn new(meta: &'a dyn MetadataStore, prefix: Vec<u8>) -> Self {
        Cursor {
            meta,
            prefix,
            page: Default::default(),
            after: None,
            done: false,
        }
    }

    fn peek(&mut self) -> berth_storage::Result<Option<(&[u8], &[u8])>> {
        if self.page.is_empty() && !self.done {
            let page = self.meta.scan(&self.prefix, self.after.as_deref(), PAGE)?;
            match page.last() {
                Some((last, _)) => self.after = Some(last.clone()),
                None => self.done = true,
            }
            self.page = page.into();
        }
        Ok(self.page.front().map(|(k, v)| (k.as_slice(), v.as_slice())))
    }

    fn advance(&mut self) {
        self.page.pop_front();
    }
}

fn top_event(
    meta: &dyn MetadataStore,
    (ns, name, tag): (&str, &str, &str),
    head: &StatusHead,
) -> berth_storage::Result<Option<TagEvent>> {
    if head.count == 0 {
        return Ok(None);
    }
    match meta.get(&keys::event(ns, name, tag, head.next - 1))? {
        Some(v) => Ok(Some(decode(&v)?)),
        None => Ok(None),
    }
}

/// The head and one tag (spec, and status with its top event only), outside a transaction.
pub fn read_tag(
    meta: &dyn MetadataStore,
    ns: &str,
    name: &str,
    tag: &str,
) -> berth_storage::Result<Option<ImageStream>> {
    let Some(bytes) = meta.get(&keys::stream(ns, name))? else {
        return Ok(None);
    };
    let mut stream: ImageStream = decode(&bytes)?;
    if let Some(v) = meta.get(&keys::spec_tag(ns, name, tag))? {
        stream.spec.tags.push(decode(&v)?);
    }
    if let Some(v) = meta.get(&keys::status_tag(ns, name, tag))? {
        let head: StatusHead = decode(&v)?;
        stream.status.tags.push(NamedTagEventList {
            tag: tag.to_string(),
            items: top_event(meta, (ns, name, tag), &head)?
                .into_iter()
                .collect(),
            conditions: head.conditions,
        });
    }
    Ok(Some(stream))
}

/// The distinct namespaces of the keys `<prefix><ns>\0...`, skipping each namespace's keys
/// (one one-key scan per namespace, whatever it holds).
pub fn namespaces(meta: &dyn MetadataStore, prefix: &[u8]) -> berth_storage::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = meta.scan(prefix, after.as_deref(), 1)?;
        let Some((key, _)) = page.first() else {
            return Ok(out);
        };
        let rest = &key[prefix.len()..];
        let ns = &rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())];
        out.push(String::from_utf8_lossy(ns).into_owned());
        // Past every key of this namespace: `\x01` sorts after its `\0` separator.
        let mut next = prefix.to_vec();
        next.extend_from_slice(ns);
        next.push(1);
        after = Some(next);
    }
}

fn scan_all(meta: &dyn MetadataStore, prefix: &[u8]) -> berth_storage::Result<Vec<KeyValue>> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = meta.scan(prefix, after.as_deref(), 1000)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        out.extend(page);
    }
    Ok(out)
}

type KeyValue = (Vec<u8>, Vec<u8>);

fn scan_values<R: Record>(
    meta: &dyn MetadataStore,
    prefix: &[u8],
) -> berth_storage::Result<Vec<R>> {
    scan_all(meta, prefix)?
        .into_iter()
        .map(|(_, v)| decode(&v))
        .collect()
}

/// `snapshot` (from [`read_stream`]) as a whole-stream write's starting point, if the stream
/// has not changed since it was read; [`Error::Retry`] otherwise.
pub fn load_checked(tx: &mut dyn Txn, snapshot: &ImageStream) -> TxResult<Option<Loaded>> {
    let (ns, name) = (&snapshot.metadata.namespace, &snapshot.metadata.name);
    let Some(head) = load_head(tx, ns, name)? else {
        return Ok(None);
    };
    if head.metadata.resource_version != snapshot.metadata.resource_version {
        return Err(TxError::Abort(Error::Retry));
    }
    let mut heads = BTreeMap::new();
    for t in &snapshot.status.tags {
        if let Some(h) = get::<StatusHead>(tx, &keys::status_tag(ns, name, &t.tag))? {
            heads.insert(t.tag.clone(), h);
        }
    }
    let mut stream = snapshot.clone();
    stream.normalize();
    Ok(Some(Loaded {
        spec_scope: stream.spec.tags.iter().map(|t| t.name.clone()).collect(),
        stream,
        heads,
        full: true,
    }))
}

fn repo_of(stream: &ImageStream) -> Option<RepositoryName> {
    RepositoryName::parse(&format!(
        "{}/{}",
        stream.metadata.namespace, stream.metadata.name
    ))
    .ok()
}

fn tracked_tag(stream: &ImageStream, spec: &super::types::TagReference) -> Option<String> {
    super::spec_tags::source_tag_in_stream(&stream.metadata.namespace, &stream.metadata.name, spec)
}

/// Writes `new` (which started as `old`, or as a new stream when `old` is `None`): only the
/// records that changed, the store-wide resourceVersion, the tag index and content links.
/// `reach` decides whether each image new to the stream may become reachable through it (the
/// one place that rule is enforced). Each tag whose current image moves raises one notice,
/// caused by `origin` (or by tracking the tag it follows).
pub fn save_stream(
    tx: &mut dyn Txn,
    old: Option<&Loaded>,
    new: &mut ImageStream,
    changes: &mut Vec<Change>,
    reach: &Reach,
    origin: Origin,
) -> TxResult<()> {
    new.normalize();
    let rv = next_resource_version(tx)?;
    new.metadata.resource_version = rv.to_string();
    // Status is derived on read; never persist a host that may change.
    new.status.docker_image_repository.clear();
    let Some(repo) = repo_of(new) else {
        return Err(TxError::Abort(Error::BadRequest(format!(
            "invalid image stream name {}/{}",
            new.metadata.namespace, new.metadata.name
        ))));
    };
    let (ns, name) = (new.metadata.namespace.clone(), new.metadata.name.clone());
    let empty = ImageStream::default();
    let before = old.map_or(&empty, |o| &o.stream);

    let mut tags_written = BTreeSet::new();
    // Spec tags, and the tracker index of those that follow another tag of this stream.
    let mut scope: BTreeSet<&str> = new.spec.tags.iter().map(|t| t.name.as_str()).collect();
    if let Some(o) = old {
        scope.extend(o.spec_scope.iter().map(String::as_str));
    }
    for tag in scope {
        let was = before.spec_tag(tag);
        let now = new.spec_tag(tag);
        if was == now {
            continue;
        }
        tags_written.insert(tag.to_string());
        match now {
            Some(spec) => tx.put(&keys::spec_tag(&ns, &name, tag), &encode(spec))?,
            None => tx.delete(&keys::spec_tag(&ns, &name, tag))?,
        }
        let (was_tracking, now_tracking) = (
            was.and_then(|s| tracked_tag(before, s)),
            now.and_then(|s| tracked_tag(new, s)),
        );
        if was_tracking != now_tracking {
            if let Some(source) = was_tracking {
                update_trackers(tx, &ns, &name, &source, tag, false)?;
            }
            if let Some(source) = now_tracking {
                update_trackers(tx, &ns, &name, &source, tag, true)?;
            }
        }
    }

    // Status tags: events, image counts, heads, and the tag index of tags whose top moved.
    let mut tags: BTreeSet<&str> = new.status.tags.iter().map(|t| t.tag.as_str()).collect();
    tags.extend(before.status.tags.iter().map(|t| t.tag.as_str()));
    let empty_list = NamedTagEventList::default();
    let mut notices = Vec::new();
    for tag in tags {
        let was = before.status_tag(tag);
        let now = new.status_tag(tag);
        if was == now {
            continue;
        }
        tags_written.insert(tag.to_string());
        if let Some(failed) = new_import_failure(was, now) {
            notices.push(Notice::ImportFailed(ImportFailed {
                namespace: ns.clone(),
                stream: name.clone(),
                tag: tag.to_string(),
                reason: failed.reason.clone(),
                message: failed.message.clone(),
                generation: failed.generation,
                resource_version: rv,
            }));
        }
        let head = old.and_then(|o| o.heads.get(tag)).cloned();
        let full = old.is_none_or(|o| o.full);
        let was_list = was.unwrap_or(&empty_list);
        let top = |l: Option<&NamedTagEventList>| {
            l.and_then(|l| l.items.first())
                .map(|e| e.image.clone())
                .filter(|i| !i.is_empty())
        };
        let (top_before, top_after) = (top(was), top(now));
        // Tagging a tag back to an image it held before is a rollback; read before the
        // events are rewritten.
        let cause = match &top_after {
            Some(image)
                if origin == Origin::Tag
                    && top_before.as_ref() != Some(image)
                    && held_before(
                        tx,
                        (&ns, &name, tag),
                        head.as_ref(),
                        full,
                        was_list,
                        image,
                    )? =>
            {
                Origin::Rollback
            }
            _ => origin,
        };
        let new_head = write_events(
            tx,
            &repo,
            (&ns, &name, tag),
            head.as_ref(),
            full,
            &was_list.items,
            now.map_or(&[][..], |l| &l.items[..]),
            reach,
        )?;
        match now {
            Some(list) => {
                let head = StatusHead {
                    conditions: list.conditions.clone(),
                    ..new_head
                };
                tx.put(&keys::status_tag(&ns, &name, tag), &encode(&head))?;
            }
            None => tx.delete(&keys::status_tag(&ns, &name, tag))?,
        }
        if top_before == top_after {
            continue;
        }
        let top_event = now.and_then(|l| l.items.first());
        let moved = TagMoved {
            namespace: ns.clone(),
            stream: name.clone(),
            tag: tag.to_string(),
            previous_image: top_before.clone(),
            image: top_after.clone(),
            docker_image_reference: top_event
                .map(|e| e.docker_image_reference.clone())
                .unwrap_or_default(),
            origin: cause,
            followed: None,
            generation: top_event.map_or(new.metadata.generation, |e| e.generation),
            resource_version: rv,
        };
        notices.push(if moved.image.is_some() {
            Notice::TagUpdated(moved)
        } else {
            Notice::TagDeleted(moved)
        });
        let Ok(t) = Tag::parse(tag) else { continue };
        let key = reg_keys::tag(&repo, &t);
        match top_after.and_then(|d| d.parse::<Digest>().ok()) {
            Some(digest) => {
                // An image already in the history becomes reachable only now, on top.
                reach.admit(tx, &repo, &digest.to_string())?;
                link_image_content(tx, &repo, &digest, 0)?;
                tx.put(&key, &encode(&TagRecord { digest }))?;
            }
            None => tx.delete(&key)?,
        }
    }

    let mut head = new.clone();
    head.spec.tags.clear();
    head.status.tags.clear();
    tx.put(&keys::stream(&ns, &name), &encode(&head))?;
    attribute_tracking(new, &mut notices);
    changes.extend(notices.into_iter().map(Change::Notice));
    changes.push(Change::Stream {
        kind: if old.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        },
        stream: new.clone(),
        tags_written: Some(tags_written),
    });
    Ok(())
}

/// Whether `image` is in the tag's history as it was before this write. A partial load holds
/// only the top event; the older ones are read by their sequence numbers (a `berth tag`
/// reads a tag's history once; pushes never come here).
fn held_before(
    tx: &mut dyn Txn,
    (ns, name, tag): (&str, &str, &str),
    head: Option<&StatusHead>,
    full: bool,
    was: &NamedTagEventList,
    image: &str,
) -> TxResult<bool> {
    if was.items.iter().any(|e| e.image == image) {
        return Ok(true);
    }
    let Some(head) = head.filter(|_| !full) else {
        return Ok(false);
    };
    for seq in head.next - head.count..head.next.saturating_sub(1) {
        if let Some(e) = get::<TagEvent>(tx, &keys::event(ns, name, tag, seq))? {
            if e.image == image {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The ImportSuccess=False condition `now` has and `was` did not (at that generation).
fn new_import_failure<'a>(
    was: Option<&NamedTagEventList>,
    now: Option<&'a NamedTagEventList>,
) -> Option<&'a TagEventCondition> {
    let failed =
        |c: &&TagEventCondition| c.kind == super::import::IMPORT_SUCCESS && c.status == "False";
    let cond = now?.conditions.iter().find(failed)?;
    let known = was.is_some_and(|w| w.conditions.iter().filter(failed).any(|c| c == cond));
    (!known).then_some(cond)
}

/// A moved tag that follows another tag of the stream which moved too moved because of it.
fn attribute_tracking(stream: &ImageStream, notices: &mut [Notice]) {
    let moved: BTreeSet<String> = notices
        .iter()
        .filter_map(|n| match n {
            Notice::TagUpdated(t) => Some(t.tag.clone()),
            _ => None,
        })
        .collect();
    for n in notices {
        let Notice::TagUpdated(t) = n else { continue };
        let source = stream
            .spec_tag(&t.tag)
            .and_then(|spec| tracked_tag(stream, spec))
            .filter(|s| s != &t.tag && moved.contains(s));
        if let Some(source) = source {
            t.origin = Origin::Tracking;
            t.followed = Some(source);
        }
    }
}

fn update_trackers(
    tx: &mut dyn Txn,
    ns: &str,
    name: &str,
    source: &str,
    tracker: &str,
    add: bool,
) -> TxResult<()> {
    let key = keys::trackers(ns, name, source);
    let mut t: Trackers = get(tx, &key)?.unwrap_or_default();
    if add {
        t.tags.insert(tracker.to_string());
    } else {
        t.tags.remove(tracker);
    }
    if t.tags.is_empty() {
        tx.delete(&key)?;
    } else {
        tx.put(&key, &encode(&t))?;
    }
    Ok(())
}

/// Stores a tag's new events given what was loaded (`was`: the top only, unless `full`) and
/// returns the head's event range. A partial write only ever adds events on top or changes
/// the top in place (§3.1); a whole-stream write replaces the tag's events.
#[allow(clippy::too_many_arguments)]
fn write_events(
    tx: &mut dyn Txn,
    repo: &RepositoryName,
    (ns, name, tag): (&str, &str, &str),
    head: Option<&StatusHead>,
    full: bool,
    was: &[TagEvent],
    now: &[TagEvent],
    reach: &Reach,
) -> TxResult<StatusHead> {
    let mut head = head.cloned().unwrap_or_default();
    if was == now {
        return Ok(head);
    }
    // A partial load holds at most the top event.
    if !full && now.len() >= was.len() && was.len() <= 1 && head.count >= was.len() as u64 {
        let added = now.len() - was.len();
        // The loaded top (if any) may have changed in place.
        if let (Some(old_top), Some(new_top)) = (was.first(), now.get(added)) {
            if old_top != new_top {
                let seq = head.next - 1;
                tx.put(&keys::event(ns, name, tag, seq), &encode(new_top))?;
                if old_top.image != new_top.image {
                    count_image(tx, repo, (ns, name), new_top, true, reach)?;
                    count_image(tx, repo, (ns, name), old_top, false, reach)?;
                }
            }
        }
        // Oldest first, so the newest gets the highest sequence number.
        for event in now[..added].iter().rev() {
            tx.put(&keys::event(ns, name, tag, head.next), &encode(event))?;
            head.next += 1;
            head.count += 1;
            count_image(tx, repo, (ns, name), event, true, reach)?;
        }
        return Ok(head);
    }
    // Replace every event of the tag. With a partial load only the top is in `was`, so the
    // older events are read back first (their images leave the stream's counts).
    let mut old_events: Vec<TagEvent> = Vec::new();
    for seq in head.next - head.count..head.next {
        let key = keys::event(ns, name, tag, seq);
        if let Some(e) = get::<TagEvent>(tx, &key)? {
            old_events.push(e);
        }
        tx.delete(&key)?;
    }
    for e in now {
        count_image(tx, repo, (ns, name), e, true, reach)?;
    }
    for e in &old_events {
        count_image(tx, repo, (ns, name), e, false, reach)?;
    }
    let base = head.next;
    for (i, event) in now.iter().rev().enumerate() {
        tx.put(&keys::event(ns, name, tag, base + i as u64), &encode(event))?;
    }
    Ok(StatusHead {
        conditions: Vec::new(),
        next: base + now.len() as u64,
        count: now.len() as u64,
    })
}

/// Counts one more (or one fewer) event naming `event.image` in the stream; an image new to
/// the stream must pass `reach` first.
fn count_image(
    tx: &mut dyn Txn,
    repo: &RepositoryName,
    (ns, name): (&str, &str),
    event: &TagEvent,
    add: bool,
    reach: &Reach,
) -> TxResult<()> {
    let image = event.image.as_str();
    if image.is_empty() {
        return Ok(());
    }
    let key = keys::image_refs(ns, name, image);
    let mut refs: ImageRefs = get(tx, &key)?.unwrap_or_default();
    if add {
        if refs.count == 0 {
            reach.admit(tx, repo, image)?;
        }
        refs.count += 1;
        refs.reference = event.docker_image_reference.clone();
    } else {
        refs.count = refs.count.saturating_sub(1);
    }
    if refs.count == 0 {
        tx.delete(&key)?;
    } else {
        tx.put(&key, &encode(&refs))?;
    }
    Ok(())
}

/// Deletes the whole stream `old` (loaded with [`load_checked`]) and its derived records.
pub fn delete_stream(tx: &mut dyn Txn, old: &Loaded, changes: &mut Vec<Change>) -> TxResult<()> {
    let s = &old.stream;
    let (ns, name) = (&s.metadata.namespace, &s.metadata.name);
    let repo = repo_of(s);
    for t in &s.spec.tags {
        tx.delete(&keys::spec_tag(ns, name, &t.name))?;
        tx.delete(&keys::trackers(ns, name, &t.name))?;
    }
    for t in &s.status.tags {
        tx.delete(&keys::status_tag(ns, name, &t.tag))?;
        tx.delete(&keys::trackers(ns, name, &t.tag))?;
        if let Some(h) = old.heads.get(&t.tag) {
            for seq in h.next - h.count..h.next {
                tx.delete(&keys::event(ns, name, &t.tag, seq))?;
            }
        }
        for e in &t.items {
            tx.delete(&keys::image_refs(ns, name, &e.image))?;
        }
        if let (Some(repo), Ok(tag)) = (&repo, Tag::parse(&t.tag)) {
            tx.delete(&reg_keys::tag(repo, &tag))?;
        }
    }
    tx.delete(&keys::stream(ns, name))?;
    let mut gone = s.clone();
    gone.spec.tags.clear();
    gone.status.tags.clear();
    let rv = next_resource_version(tx)?;
    gone.metadata.resource_version = rv.to_string();
    for t in &s.status.tags {
        let Some(image) = s.current_image(&t.tag) else {
            continue;
        };
        changes.push(Change::Notice(Notice::TagDeleted(TagMoved {
            namespace: ns.clone(),
            stream: name.clone(),
            tag: t.tag.clone(),
            previous_image: Some(image.to_string()),
            image: None,
            docker_image_reference: String::new(),
            origin: Origin::Delete,
            followed: None,
            generation: s.metadata.generation,
            resource_version: rv,
        })));
    }
    changes.push(Change::Stream {
        kind: ChangeKind::Deleted,
        stream: gone,
        tags_written: None,
    });
    Ok(())
}

/// Lets `repo` serve an image tagged into it from elsewhere: links the manifest, its config and
/// layers, and (for an index) its children.
fn link_image_content(
    tx: &mut dyn Txn,
    repo: &RepositoryName,
    digest: &Digest,
    depth: u8,
) -> TxResult<()> {
    if depth > 4 || content::manifest_linked(tx, repo, digest)? {
        return Ok(());
    }
    // Only content this registry holds can be linked; imported references stay remote.
    if !content::link_manifest(tx, repo, digest, now_secs())? {
        return Ok(());
    }
    let Some(image) = get::<Image>(tx, &keys::image(&digest.to_string()))? else {
        return Ok(());
    };
    let blobs = image
        .config_digest
        .iter()
        .chain(image.docker_image_layers.iter().map(|l| &l.name));
    // An imported image's blobs stay at its source until first pulled (pull-through). Its
    // layer list comes from a manifest anyone can author, so a blob this registry holds is
    // not linked on the list's word: the pull-through fetch proves the source has the bytes.
    let source = (!image.is_managed())
        .then(|| image.docker_image_reference.split_once('@'))
        .flatten()
        .map(|(repository, _)| PullThroughRecord {
            source: repository.to_string(),
        });
    for blob in blobs {
        let Ok(d) = blob.parse::<Digest>() else {
            continue;
        };
        if tx.get(&reg_keys::repo_blob(repo, &d))?.is_some() {
            continue;
        }
        match &source {
            Some(source) => tx.put(&reg_keys::pull_through(repo, &d), &encode(source))?,
            None => {
                content::link_blob(tx, repo, &d, now_secs())?;
            }
        }
    }
    for child in &image.docker_image_manifests {
        if let Ok(d) = child.digest.parse::<Digest>() {
            link_image_content(tx, repo, &d, depth + 1)?;
        }
    }
    Ok(())
}

/// Deletes an Image record (its manifest may then be collected, if nothing else keeps it);
/// returns it with the resourceVersion of the deletion, for the caller's change.
pub fn delete_image_record(tx: &mut dyn Txn, name: &str) -> TxResult<Option<(Image, u64)>> {
    let key = keys::image(name);
    let Some(mut image) = get::<Image>(tx, &key)? else {
        return Ok(None);
    };
    tx.delete(&key)?;
    if let Ok(digest) = name.parse::<Digest>() {
        content::image_released(tx, &digest, now_secs())?;
    }
    let rv = next_resource_version(tx)?;
    image.metadata.resource_version = rv.to_string();
    Ok(Some((image, rv)))
}

/// Image ids of the stream's history that start with `prefix` (a digest or a prefix of its hex
/// part), each with the count of events naming it; read outside any transaction.
pub fn images_matching(
    meta: &dyn MetadataStore,
    ns: &str,
    name: &str,
    prefix: &str,
) -> berth_storage::Result<Vec<String>> {
    let base = keys::image_refs_of(ns, name);
    let mut out = Vec::new();
    let candidates: Vec<String> = if prefix.contains(':') {
        vec![prefix.to_string()]
    } else {
        // A bare hex prefix may follow any algorithm.
        vec![format!("sha256:{prefix}"), format!("sha512:{prefix}")]
    };
    for c in candidates {
        let mut p = base.clone();
        p.extend_from_slice(c.as_bytes());
        for (k, _) in scan_all(meta, &p)? {
            out.push(String::from_utf8_lossy(&k[base.len()..]).into_owned());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The pull spec recorded for `image` if the stream's history names it (in a transaction).
pub fn image_in_stream(
    tx: &mut dyn Txn,
    ns: &str,
    name: &str,
    image: &str,
) -> TxResult<Option<String>> {
    Ok(get::<ImageRefs>(tx, &keys::image_refs(ns, name, image))?.map(|r| r.reference))
}

/// Creates the Image unless it exists (Images are immutable once created). Returns whether it
/// already existed.
pub fn ensure_image(tx: &mut dyn Txn, image: &Image, changes: &mut Vec<Change>) -> TxResult<bool> {
    put_image(tx, image, false, changes)
}

/// The Image of content this registry has just stored for the first time (`first_store`: its
/// manifest record did not exist before this transaction). Any Image already under that name
/// was made from an API mapping's word before the content arrived, and is replaced by the
/// true one; otherwise as [`ensure_image`].
pub fn content_image(
    tx: &mut dyn Txn,
    image: &Image,
    first_store: bool,
    changes: &mut Vec<Change>,
) -> TxResult<bool> {
    put_image(tx, image, first_store, changes)
}

fn put_image(
    tx: &mut dyn Txn,
    image: &Image,
    replace: bool,
    changes: &mut Vec<Change>,
) -> TxResult<bool> {
    let key = keys::image(&image.metadata.name);
    let old = get::<Image>(tx, &key)?;
    if old.is_some() && !replace {
        return Ok(true);
    }
    let mut image = image.clone();
    image.metadata.resource_version = next_resource_version(tx)?.to_string();
    if let Some(old) = &old {
        image.metadata.uid = old.metadata.uid.clone();
        image.metadata.creation_timestamp = old.metadata.creation_timestamp.clone();
    }
    if image.metadata.creation_timestamp.is_none() {
        image.metadata.creation_timestamp = Some(super::types::now_rfc3339());
    }
    if image.metadata.uid.is_empty() {
        image.metadata.uid = uuid::Uuid::new_v4().to_string();
    }
    tx.put(&key, &encode(&image))?;
    changes.push(Change::Image {
        kind: if old.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        },
        image,
    });
    Ok(old.is_some())
}

/// Converts streams stored whole (format 1) into the layout above, one stream per
/// transaction: a crash leaves each stream either converted or not, and the next start
/// finishes the rest. Returns how many streams were converted.
pub fn migrate(meta: &dyn MetadataStore) -> berth_storage::Result<usize> {
    migrate_at_most(meta, usize::MAX)
}

/// [`migrate`], stopping after `max` streams (what a crash part-way leaves behind).
pub fn migrate_at_most(meta: &dyn MetadataStore, max: usize) -> berth_storage::Result<usize> {
    use berth_storage::MetadataStoreExt;
    // resourceVersions continue from the old counter (clients may hold any of them).
    if let Some(bytes) = meta.get(keys::OLD_RESOURCE_VERSION)? {
        let old: Counter = decode(&bytes)?;
        meta.transaction(|tx: &mut dyn Txn| {
            berth_storage::metadata::raise_revision(tx, old.value)?;
            tx.delete(keys::OLD_RESOURCE_VERSION)?;
            Ok::<_, TxError<()>>(())
        })
        .map_err(|e| match e {
            TxError::Storage(e) => e,
            TxError::Abort(()) => berth_storage::Error::Backend("revision takeover".into()),
        })?;
        meta.flush()?;
    }
    let mut converted = 0;
    for (key, value) in scan_all(meta, &keys::streams(None))? {
        if value.first() != Some(&1) {
            continue;
        }
        if converted == max {
            break;
        }
        let whole: ImageStream = serde_json::from_slice(&value[1..])
            .map_err(|e| berth_storage::Error::Backend(format!("stream record: {e}")))?;
        let result = meta.transaction(|tx: &mut dyn Txn| {
            // Another start may have converted it meanwhile.
            if tx.get(&key)?.as_ref().and_then(|v| v.first()) != Some(&1) {
                return Ok(());
            }
            write_whole(tx, &whole)
        });
        match result {
            Ok(()) => converted += 1,
            Err(TxError::Storage(e)) => return Err(e),
            Err(TxError::Abort(e)) => {
                return Err(berth_storage::Error::Backend(format!(
                    "converting {}/{}: {e}",
                    whole.metadata.namespace, whole.metadata.name
                )))
            }
        }
    }
    if converted > 0 {
        meta.flush()?;
    }
    Ok(converted)
}

/// Writes a format-1 stream as its records, keeping its resourceVersion (the tag index and
/// content links it derived are already stored).
fn write_whole(tx: &mut dyn Txn, whole: &ImageStream) -> TxResult<()> {
    let (ns, name) = (&whole.metadata.namespace, &whole.metadata.name);
    let Some(repo) = repo_of(whole) else {
        return Err(TxError::Abort(Error::BadRequest(format!(
            "invalid image stream name {ns}/{name}"
        ))));
    };
    for spec in &whole.spec.tags {
        tx.put(&keys::spec_tag(ns, name, &spec.name), &encode(spec))?;
        if let Some(source) = tracked_tag(whole, spec) {
            update_trackers(tx, ns, name, &source, &spec.name, true)?;
        }
    }
    for list in &whole.status.tags {
        for (i, event) in list.items.iter().rev().enumerate() {
            tx.put(&keys::event(ns, name, &list.tag, i as u64), &encode(event))?;
            // Migration keeps what was already reachable.
            count_image(tx, &repo, (ns, name), event, true, &Reach::trusted())?;
        }
        let head = StatusHead {
            conditions: list.conditions.clone(),
            next: list.items.len() as u64,
            count: list.items.len() as u64,
        };
        tx.put(&keys::status_tag(ns, name, &list.tag), &encode(&head))?;
    }
    let mut head = whole.clone();
    head.spec.tags.clear();
    head.status.tags.clear();
    tx.put(&keys::stream(ns, name), &encode(&head))?;
    Ok(())
}
