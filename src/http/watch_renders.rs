//! Whole-stream renderings for watch events, kept per watched stream and brought up to date by
//! tag.
//!
//! A watch delivers a stream's change as the whole ImageStream (Kubernetes semantics): for a
//! stream of 10,000 tags that is megabytes of JSON, and rendering it from the store on every
//! change means reading every record. Here the rendering of each tag (its spec entry, its status
//! entry with the history) is kept once a stream is watched; each commit says which tags it
//! wrote (`Change::Stream::tags_written`), and the next rendering re-reads only those tags and
//! the stream's head.
//!
//! Consistency: a rendering is labelled with its head's resourceVersion, and a client may resume
//! a watch from that label, so it must hold every change up to it. Commits are told here in
//! resourceVersion order, before their events are published; a head newer than the last commit
//! told (its commit is in the store but not yet told) makes the rendering a whole read.
//!
//! Bounds: at most [`MAX_STREAMS`] streams are kept, none of more than [`MAX_BYTES`] in all, and
//! none left unused for [`IDLE`]; past the bounds a rendering is read whole, as without a cache.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_storage::record::decode;
use berth_storage::MetadataStore;
use bytes::Bytes;

use super::rope::Rope;
use super::stream_body::{self, Piece};
use crate::imagestream::store::{self, ChangeKind};
use crate::imagestream::types::ImageStream;
use crate::registry::RepositoryHosts;

/// Streams whose pieces are kept at once.
const MAX_STREAMS: usize = 8;
/// Bytes of pieces kept over all streams; a stream bigger than this alone is not kept.
const MAX_BYTES: usize = 96 << 20;
/// A stream nobody rendered for this long is forgotten.
const IDLE: Duration = Duration::from_secs(60);

type StreamKey = (String, String);

#[derive(Default)]
pub struct Renders {
    streams: Mutex<HashMap<StreamKey, Arc<Kept>>>,
    /// Renderings that read their stream whole (the rest re-read only the tags written).
    whole_reads: AtomicU64,
}

struct Kept {
    told: Mutex<Told>,
    rendered: Mutex<Rendered>,
}

/// What commits said since the pieces were last brought up to date.
struct Told {
    /// Tags written since (`None`: any of them; read the stream whole).
    stale: Option<BTreeSet<String>>,
    /// Every commit of the stream up to this resourceVersion is in `stale` or in the pieces.
    through: u64,
    last_used: Instant,
    /// The pieces' bytes, for the bound over all streams.
    bytes: usize,
}

#[derive(Default)]
struct Rendered {
    pieces: Option<Pieces>,
    /// The last rendering and the event it was made for: every watcher of an event shares it.
    last: Option<(u64, Arc<Rope>)>,
}

#[derive(Default)]
struct Pieces {
    spec: BTreeMap<String, Bytes>,
    status: BTreeMap<String, Bytes>,
    bytes: usize,
}

impl Pieces {
    fn put(&mut self, Piece { status, tag, json }: Piece) {
        self.bytes += json.len();
        let side = if status {
            &mut self.status
        } else {
            &mut self.spec
        };
        if let Some(old) = side.insert(tag, json) {
            self.bytes -= old.len();
        }
    }

    fn remove(&mut self, tag: &str) {
        for old in [self.spec.remove(tag), self.status.remove(tag)]
            .into_iter()
            .flatten()
        {
            self.bytes -= old.len();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Renders {
    /// A commit at `rv` changed the stream `ns/name` (told in resourceVersion order, before
    /// its watch event is published). Costs a map lookup when the stream is not watched.
    pub fn written(
        &self,
        (ns, name): (&str, &str),
        kind: ChangeKind,
        rv: u64,
        tags: Option<&BTreeSet<String>>,
    ) {
        let mut streams = lock(&self.streams);
        // The common case, nobody watching: nothing to look up, nothing allocated.
        if streams.is_empty() {
            return;
        }
        let key = (ns.to_string(), name.to_string());
        if kind == ChangeKind::Deleted {
            streams.remove(&key);
            return;
        }
        let Some(kept) = streams.get(&key) else {
            return;
        };
        let mut told = lock(&kept.told);
        match (&mut told.stale, tags) {
            (Some(stale), Some(tags)) => stale.extend(tags.iter().cloned()),
            (stale, _) => *stale = None,
        }
        told.through = told.through.max(rv);
    }

    /// Commits may have been missed (the change log fell behind): nothing kept can be trusted.
    pub fn gap(&self) {
        lock(&self.streams).clear();
    }

    /// The stream `ns/name` as JSON for the watch event at `rv` (`None`: it is gone, or could
    /// not be read: logged).
    pub fn render(
        &self,
        meta: &dyn MetadataStore,
        hosts: &RepositoryHosts,
        (ns, name): (&str, &str),
        rv: u64,
    ) -> Option<Arc<Rope>> {
        let kept = self.kept(ns, name);
        let mut rendered = lock(&kept.rendered);
        if let Some((at, json)) = &rendered.last {
            if *at == rv {
                return Some(json.clone());
            }
        }
        // Not kept while the next one is made (watchers still sending it hold their own).
        rendered.last = None;
        let json = match self.bring_up_to_date(&kept, &mut rendered, meta, hosts, (ns, name)) {
            Some(json) => json,
            None => {
                rendered.pieces = None;
                lock(&kept.told).stale = None;
                return None;
            }
        };
        let json = Arc::new(json);
        rendered.last = Some((rv, json.clone()));
        let bytes = rendered.pieces.as_ref().map_or(0, |p| p.bytes);
        drop(rendered);
        lock(&kept.told).bytes = bytes;
        Some(json)
    }

    /// The stream's entry, made when it is first rendered; forgets idle streams and the least
    /// recently used ones past the bounds.
    fn kept(&self, ns: &str, name: &str) -> Arc<Kept> {
        let mut streams = lock(&self.streams);
        let now = Instant::now();
        streams.retain(|_, k| now.duration_since(lock(&k.told).last_used) < IDLE);
        let key = (ns.to_string(), name.to_string());
        let kept = streams
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Kept {
                    told: Mutex::new(Told {
                        stale: None,
                        through: 0,
                        last_used: now,
                        bytes: 0,
                    }),
                    rendered: Mutex::default(),
                })
            })
            .clone();
        lock(&kept.told).last_used = now;
        loop {
            let (total, oldest) = streams.iter().filter(|(k, _)| **k != key).fold(
                (lock(&kept.told).bytes, None::<(Instant, &StreamKey)>),
                |(total, oldest), (k, v)| {
                    let told = lock(&v.told);
                    let older = oldest.is_none_or(|(t, _)| told.last_used < t);
                    (
                        total + told.bytes,
                        if older {
                            Some((told.last_used, k))
                        } else {
                            oldest
                        },
                    )
                },
            );
            let over = streams.len() > MAX_STREAMS || total > MAX_BYTES;
            match oldest {
                Some((_, k)) if over => {
                    let k = k.clone();
                    streams.remove(&k);
                }
                _ => break,
            }
        }
        kept
    }

    /// The rendering as of now, from the kept pieces where they are current.
    fn bring_up_to_date(
        &self,
        kept: &Kept,
        rendered: &mut Rendered,
        meta: &dyn MetadataStore,
        hosts: &RepositoryHosts,
        (ns, name): (&str, &str),
    ) -> Option<Rope> {
        let failed = |e: &dyn std::fmt::Display| {
            tracing::warn!(stream = %format!("{ns}/{name}"), error = %e, "rendering an image stream failed");
        };
        // The head first: everything read after it is at least as new as its label.
        let head = match meta.get(&store::keys::stream(ns, name)) {
            Ok(Some(bytes)) => decode::<ImageStream>(&bytes).map_err(|e| failed(&e)).ok()?,
            Ok(None) => return None,
            Err(e) => {
                failed(&e);
                return None;
            }
        };
        let head_rv: u64 = head.metadata.resource_version.parse().unwrap_or(u64::MAX);
        let stale = {
            let mut told = lock(&kept.told);
            if told.through < head_rv {
                None
            } else {
                told.stale.replace(BTreeSet::new())
            }
        };
        let (head, pieces) = match (rendered.pieces.as_mut(), stale) {
            (Some(pieces), Some(stale)) => {
                for tag in stale {
                    update_tag(pieces, meta, hosts, (ns, name, &tag))?;
                }
                (head, pieces)
            }
            _ => {
                let (head, pieces) = self.whole(kept, meta, hosts, (ns, name))?;
                (head, rendered.pieces.insert(pieces))
            }
        };
        let rope =
            stream_body::assemble(hosts, &head, pieces.spec.values(), pieces.status.values())
                .map_err(|e| failed(&e))
                .ok()?;
        if pieces.bytes > MAX_BYTES {
            // Too big to keep: read whole again next time.
            rendered.pieces = None;
            lock(&kept.told).stale = None;
        }
        Some(rope)
    }

    /// Reads the stream whole, as pieces.
    fn whole(
        &self,
        kept: &Kept,
        meta: &dyn MetadataStore,
        hosts: &RepositoryHosts,
        (ns, name): (&str, &str),
    ) -> Option<(ImageStream, Pieces)> {
        // Commits from here on are told again: whatever they wrote may postdate the read.
        lock(&kept.told).stale = Some(BTreeSet::new());
        self.whole_reads.fetch_add(1, Ordering::Relaxed);
        let (head, cut) = stream_body::render_pieces(meta, hosts, ns, name)?;
        let mut pieces = Pieces::default();
        for piece in cut {
            pieces.put(piece);
        }
        // Its head may be newer than any commit told: the read holds those commits' tags.
        let read_at = head.metadata.resource_version.parse().unwrap_or(0);
        let mut told = lock(&kept.told);
        told.through = told.through.max(read_at);
        Some((head, pieces))
    }
}

/// Re-reads one tag's pieces into `pieces` (removing them when the tag is gone).
fn update_tag(
    pieces: &mut Pieces,
    meta: &dyn MetadataStore,
    hosts: &RepositoryHosts,
    (ns, name, tag): (&str, &str, &str),
) -> Option<()> {
    let fresh = stream_body::render_tag(meta, hosts, (ns, name, tag))
        .map_err(|e| tracing::warn!(stream = %format!("{ns}/{name}"), %tag, error = %e, "rendering an image stream tag failed"))
        .ok()?;
    pieces.remove(tag);
    for piece in fresh {
        pieces.put(piece);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagestream::reach::Reach;
    use crate::imagestream::store::Change;
    use crate::imagestream::types::{ObjectReference, TagEvent, TagEventCondition, TagReference};
    use crate::imagestream::Origin;
    use berth_storage::memory::MemoryMetadata;
    use berth_storage::{MetadataStoreExt, TxError, Txn};

    fn hosts() -> RepositoryHosts {
        RepositoryHosts {
            internal: "reg:5000".into(),
            public: None,
        }
    }

    fn event(tag: &str, n: usize) -> TagEvent {
        TagEvent {
            created: "2026-01-01T00:00:00Z".into(),
            docker_image_reference: format!("reg:5000/ns/app@sha256:{n:064x}"),
            image: format!("sha256:{n:064x}"),
            generation: n as i64 + tag.len() as i64,
        }
    }

    /// Applies `edit` to the stream (as loaded for `tags`) in one transaction; returns its
    /// stream changes.
    fn write(
        meta: &dyn MetadataStore,
        tags: &[&str],
        edit: impl Fn(&mut ImageStream),
    ) -> Vec<Change> {
        meta.transaction(|tx: &mut dyn Txn| {
            let loaded = store::load_tags(tx, "ns", "app", tags).map_err(|_| TxError::Abort(()))?;
            let mut new = match &loaded {
                Some(l) => l.stream().clone(),
                None => crate::imagestream::mapping::new_stream("ns", "app"),
            };
            edit(&mut new);
            let mut changes = Vec::new();
            store::save_stream(
                tx,
                loaded.as_ref(),
                &mut new,
                &mut changes,
                &Reach::trusted(),
                Origin::Update,
            )
            .map_err(|_| TxError::Abort(()))?;
            Ok(changes)
        })
        .unwrap()
    }

    fn tell(renders: &Renders, changes: &[Change]) {
        for c in changes {
            if let Change::Stream {
                kind,
                stream,
                tags_written,
            } = c
            {
                renders.written(
                    ("ns", "app"),
                    *kind,
                    stream.metadata.resource_version.parse().unwrap(),
                    tags_written.as_ref(),
                );
            }
        }
    }

    fn push(tag: &'static str, n: usize) -> impl Fn(&mut ImageStream) {
        move |s| {
            let list = s.status_tag_mut(tag);
            list.items.insert(0, event(tag, n));
        }
    }

    fn assert_current(renders: &Renders, meta: &dyn MetadataStore, rv: u64, what: &str) {
        let kept = renders.render(meta, &hosts(), ("ns", "app"), rv).unwrap();
        let whole = stream_body::render(meta, &hosts(), "ns", "app").unwrap();
        assert_eq!(
            String::from_utf8_lossy(&kept.to_bytes()),
            String::from_utf8_lossy(&whole),
            "after {what}"
        );
    }

    #[test]
    fn kept_renderings_equal_whole_reads_through_every_kind_of_change() {
        let meta = MemoryMetadata::new();
        let renders = Renders::default();
        let mut rv = 0;
        let mut step = |what: &str, tags: &[&str], edit: &dyn Fn(&mut ImageStream), told: bool| {
            let changes = write(&meta, tags, edit);
            if told {
                tell(&renders, &changes);
            }
            rv += 1;
            assert_current(&renders, &meta, rv, what);
        };
        step("creation", &["a"], &push("a", 1), true);
        step("a push to a new tag", &["b"], &push("b", 2), true);
        step("a push to an old tag", &["a"], &push("a", 3), true);
        step(
            "a spec tag",
            &["c"],
            &|s| {
                s.spec.tags.push(TagReference {
                    name: "c".into(),
                    from: Some(ObjectReference {
                        kind: "DockerImage".into(),
                        name: "example.com/x/y:1".into(),
                        namespace: String::new(),
                    }),
                    ..Default::default()
                })
            },
            true,
        );
        step(
            "a condition",
            &["c"],
            &|s| {
                s.status_tag_mut("c").conditions.push(TagEventCondition {
                    kind: "ImportSuccess".into(),
                    status: "False".into(),
                    message: "m".into(),
                    generation: 1,
                    ..Default::default()
                })
            },
            true,
        );
        step(
            "labels (the head alone)",
            &[],
            &|s| {
                s.metadata.labels.insert("team".into(), "x".into());
            },
            true,
        );
        step(
            "a tag deleted",
            &["b"],
            &|s| {
                s.status.tags.retain(|t| t.tag != "b");
                s.spec.tags.retain(|t| t.name != "b");
            },
            true,
        );
        // A commit in the store whose news has not arrived yet: its head is newer than anything
        // told, so the rendering must not miss its tag.
        step("an untold push", &["a"], &push("a", 4), false);
        step("a push after it", &["d"], &push("d", 5), true);
        step("a push to a tag sorting first", &["0"], &push("0", 6), true);
        // The first rendering and the one after the untold commit.
        assert_eq!(renders.whole_reads.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_stream_rendered_again_for_the_same_event_is_shared_and_a_gap_forgets_everything() {
        let meta = MemoryMetadata::new();
        let renders = Renders::default();
        tell(&renders, &write(&meta, &["a"], push("a", 1)));
        let first = renders.render(&meta, &hosts(), ("ns", "app"), 1).unwrap();
        let again = renders.render(&meta, &hosts(), ("ns", "app"), 1).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "one rendering per event");
        renders.gap();
        assert!(lock(&renders.streams).is_empty());
        // A write after the gap is told to nobody; the stream is read whole again.
        write(&meta, &["a"], push("a", 2));
        assert_current(&renders, &meta, 2, "a gap");
    }

    #[test]
    fn a_deleted_stream_renders_as_gone_and_is_forgotten() {
        let meta = MemoryMetadata::new();
        let renders = Renders::default();
        tell(&renders, &write(&meta, &["a"], push("a", 1)));
        assert_current(&renders, &meta, 1, "creation");
        let whole = store::read_stream(&meta, "ns", "app").unwrap().unwrap();
        let changes = meta
            .transaction(|tx: &mut dyn Txn| {
                let loaded = store::load_checked(tx, &whole)
                    .map_err(|_| TxError::Abort(()))?
                    .unwrap();
                let mut changes = Vec::new();
                store::delete_stream(tx, &loaded, &mut changes).map_err(|_| TxError::Abort(()))?;
                Ok::<_, TxError<()>>(changes)
            })
            .unwrap();
        tell(&renders, &changes);
        assert!(lock(&renders.streams).is_empty());
        assert!(renders.render(&meta, &hosts(), ("ns", "app"), 2).is_none());
    }

    #[test]
    fn kept_streams_are_bounded_in_number() {
        let meta = MemoryMetadata::new();
        let renders = Renders::default();
        tell(&renders, &write(&meta, &["a"], push("a", 1)));
        for i in 0..MAX_STREAMS + 3 {
            // Another stream name each time; none exists, but each is looked up and kept.
            let _ = renders.render(&meta, &hosts(), ("ns", &format!("s{i}")), 1);
        }
        assert!(lock(&renders.streams).len() <= MAX_STREAMS + 1);
    }

    #[test]
    fn many_pushes_keep_the_rendering_exact_and_its_memory_bounded() {
        let meta = MemoryMetadata::new();
        let renders = Renders::default();
        const TAGS: usize = 50;
        let tags: Vec<&'static str> = (0..TAGS)
            .map(|i| &*Box::leak(format!("t{i:02}").into_boxed_str()))
            .collect();
        for (n, tag) in tags.iter().enumerate() {
            write(&meta, &[tag], push(tag, n));
        }
        for n in TAGS..TAGS + 200 {
            // Most pushes go to a few busy tags, as CI's do.
            let tag = tags[if n % 10 == 0 { n % TAGS } else { n % 4 }];
            tell(&renders, &write(&meta, &[tag], push(tag, n)));
            assert_current(&renders, &meta, n as u64 + 1, &format!("push {n}"));
            let kept = renders.kept("ns", "app");
            let rendered = lock(&kept.rendered);
            let pieces = rendered.pieces.as_ref().unwrap();
            let held: usize = pieces
                .spec
                .values()
                .chain(pieces.status.values())
                .map(Bytes::len)
                .sum();
            assert_eq!(pieces.bytes, held, "push {n}");
        }
        // Read whole once; every later rendering re-reads only the tag pushed to.
        assert_eq!(renders.whole_reads.load(Ordering::Relaxed), 1);
    }
}
