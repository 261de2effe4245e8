//! A whole ImageStream written as JSON while it is read, a page at a time: a GET of a stream
//! with 100,000 history entries holds a page and a chunk in memory, not the stream. The bytes
//! are those the API writes for the assembled object everywhere else: objects go through
//! `serde_json::Value`, so keys are in sorted order at every level.

use std::io;
use std::sync::Arc;

use berth_storage::MetadataStore;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use super::apis::status::StatusError;
use super::response::{self as resp, Response};
use super::rope::Rope;
use crate::imagestream::service::decorate;
use crate::imagestream::store::{self, StreamVisitor, VisitError};
use crate::imagestream::types::{ImageStream, TagEvent, TagEventCondition, TagReference};
use crate::registry::RepositoryHosts;

/// Bytes gathered before a chunk goes to the client.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for a slow client before the reader waits too.
const QUEUED_CHUNKS: usize = 4;
/// How long a client may take no bytes at all before its GET is abandoned: the reader holds a
/// blocking thread, which a client that never reads must not keep.
const STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// 200 with the stream `ns/name` as JSON, or `None` when it does not exist.
pub fn respond(
    meta: Arc<dyn MetadataStore>,
    hosts: RepositoryHosts,
    ns: &str,
    name: &str,
) -> Result<Option<Response>, StatusError> {
    let exists = meta
        .get(&store::keys::stream(ns, name))
        .map_err(|e| StatusError::internal(e.to_string()))?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(QUEUED_CHUNKS);
    let (ns, name) = (ns.to_string(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let mut w = JsonWriter::new(Some(tx.clone()), hosts);
        let outcome = store::visit_stream(meta.as_ref(), &ns, &name, &mut w)
            .and_then(|found| w.finish(found).map_err(VisitError::from));
        if let Err(e) = outcome {
            // The status line is gone already: cut the body short so the client sees an error.
            tracing::warn!(stream = %format!("{ns}/{name}"), error = %e, "streaming an image stream failed");
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
    });
    let body: berth_storage::ByteStream =
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut r = http::Response::new(resp::stream(body));
    resp::set(&mut r, http::header::CONTENT_TYPE, "application/json");
    Ok(Some(r))
}

/// The whole stream `ns/name` as JSON in memory (a watch event's object), or `None` when it
/// does not exist (or cannot be read: logged).
pub fn render(
    meta: &dyn MetadataStore,
    hosts: &RepositoryHosts,
    ns: &str,
    name: &str,
) -> Option<Bytes> {
    let mut w = JsonWriter::new(None, hosts.clone());
    visit_in_memory(meta, ns, name, &mut w)?;
    w.finish(true).ok()?;
    Some(w.into_bytes())
}

/// Visits the stream into `w` (holding it in memory); `None` when it does not exist or cannot
/// be read (logged).
fn visit_in_memory(
    meta: &dyn MetadataStore,
    ns: &str,
    name: &str,
    w: &mut JsonWriter,
) -> Option<()> {
    match store::visit_stream(meta, ns, name, w) {
        Ok(true) => Some(()),
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(stream = %format!("{ns}/{name}"), error = %e, "rendering an image stream failed");
            None
        }
    }
}

/// One tag's JSON as cut from a rendering: a spec tag is a `{...}` member of `spec.tags`, a
/// status tag a `{...}` member of `status.tags` (conditions, items, tag).
pub struct Piece {
    pub status: bool,
    pub tag: String,
    pub json: Bytes,
}

/// The stream `ns/name` read whole, as its head and each tag's pieces in order, never as one
/// buffer (`None`: the stream is gone or could not be read: logged).
pub fn render_pieces(
    meta: &dyn MetadataStore,
    hosts: &RepositoryHosts,
    ns: &str,
    name: &str,
) -> Option<(ImageStream, Vec<Piece>)> {
    let mut w = JsonWriter::new(None, hosts.clone());
    w.pieces = Some(Vec::new());
    visit_in_memory(meta, ns, name, &mut w)?;
    Some((w.stored_head.take()?, w.pieces.take().unwrap_or_default()))
}

/// One tag's pieces as [`render_pieces`] cuts them (none when the tag is gone).
pub fn render_tag(
    meta: &dyn MetadataStore,
    hosts: &RepositoryHosts,
    (ns, name, tag): (&str, &str, &str),
) -> Result<Vec<Piece>, VisitError> {
    let mut w = JsonWriter::new(None, hosts.clone());
    w.pieces = Some(Vec::new());
    store::visit_tag(meta, (ns, name, tag), &mut w)?;
    Ok(w.pieces.take().unwrap_or_default())
}

/// The stream `head` with its tags' pieces (as [`render_pieces`] cuts them), in order: the
/// bytes [`render`] writes for the stream they were cut from, as parts that share the pieces.
pub fn assemble<'a>(
    hosts: &RepositoryHosts,
    head: &ImageStream,
    spec: impl Iterator<Item = &'a Bytes>,
    status: impl Iterator<Item = &'a Bytes>,
) -> io::Result<Rope> {
    let mut rope = Rope::default();
    let mut w = JsonWriter::new(None, hosts.clone());
    w.head(head)?;
    for json in spec {
        w.open_spec_tag()?;
        rope.push(w.take_framing());
        rope.push(json.clone());
    }
    for json in status {
        w.open_status_tag()?;
        rope.push(w.take_framing());
        rope.push(json.clone());
    }
    w.finish(true)?;
    rope.push(w.take_framing());
    Ok(rope)
}

#[derive(PartialEq)]
enum Phase {
    Spec { tags_open: bool },
    Status { tags_open: bool },
}

struct JsonWriter {
    /// Where chunks go; `None` keeps everything in `buf` (rendering in memory).
    tx: Option<mpsc::Sender<io::Result<Bytes>>>,
    /// Longest wait for room in `tx`.
    stall: std::time::Duration,
    buf: Vec<u8>,
    hosts: RepositoryHosts,
    head: Option<ImageStream>,
    phase: Phase,
    first_event: bool,
    /// The status tag being written (its name is its last key).
    tag: String,
    /// When cutting pieces, each tag's JSON, taken out of `buf` as soon as it is written.
    pieces: Option<Vec<Piece>>,
    /// The head as stored, kept when cutting pieces.
    stored_head: Option<ImageStream>,
    /// Where the status tag being written starts.
    tag_start: usize,
}

impl JsonWriter {
    fn new(tx: Option<mpsc::Sender<io::Result<Bytes>>>, hosts: RepositoryHosts) -> Self {
        JsonWriter {
            tx,
            stall: STALL,
            buf: Vec::with_capacity(CHUNK),
            hosts,
            head: None,
            phase: Phase::Spec { tags_open: false },
            first_event: true,
            tag: String::new(),
            pieces: None,
            stored_head: None,
            tag_start: 0,
        }
    }

    /// The rendering, holding no more memory than its length.
    fn into_bytes(mut self) -> Bytes {
        self.buf.shrink_to_fit();
        Bytes::from(std::mem::take(&mut self.buf))
    }

    /// What was written since the last piece or framing was taken (a lone comma, most of the
    /// time, needs no allocation).
    fn take_framing(&mut self) -> Bytes {
        if self.buf == b"," {
            self.buf.clear();
            return Bytes::from_static(b",");
        }
        Bytes::from(std::mem::take(&mut self.buf))
    }

    /// Takes the piece written from `start` out of `buf`, when cutting pieces.
    fn cut(&mut self, status: bool, tag: &str, start: usize) {
        if let Some(pieces) = &mut self.pieces {
            pieces.push(Piece {
                status,
                tag: tag.to_string(),
                json: Bytes::copy_from_slice(&self.buf[start..]),
            });
            self.buf.clear();
        }
    }

    /// Writes what comes before a spec tag's `{...}`.
    fn open_spec_tag(&mut self) -> io::Result<()> {
        let Phase::Spec { tags_open } = &mut self.phase else {
            return Err(io::Error::other("spec tag after status"));
        };
        let first = !*tags_open;
        *tags_open = true;
        self.raw(if first { ",\"tags\":[" } else { "," });
        Ok(())
    }

    /// Writes what comes before a status tag's `{...}` (the status itself, before the first).
    fn open_status_tag(&mut self) -> io::Result<()> {
        self.enter_status()?;
        let Phase::Status { tags_open } = &mut self.phase else {
            unreachable!("entered the status above")
        };
        let first = !*tags_open;
        *tags_open = true;
        self.raw(if first { ",\"tags\":[" } else { "," });
        Ok(())
    }

    fn raw(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Writes `v` as the API does (through a `Value`: sorted keys).
    fn value(&mut self, v: &impl Serialize) -> io::Result<()> {
        let v = serde_json::to_value(v).map_err(io::Error::other)?;
        serde_json::to_writer(&mut self.buf, &v).map_err(io::Error::other)
    }

    fn flush_if_full(&mut self) -> io::Result<()> {
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        let mut chunk = Ok(Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK),
        )));
        let deadline = std::time::Instant::now() + self.stall;
        loop {
            match tx.try_send(chunk) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "client went away",
                    ))
                }
                Err(mpsc::error::TrySendError::Full(back)) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client stopped reading",
                        ));
                    }
                    chunk = back;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    }

    /// Closes the spec and opens the status, once.
    fn enter_status(&mut self) -> io::Result<()> {
        let Phase::Spec { tags_open } = self.phase else {
            return Ok(());
        };
        self.raw(if tags_open { "]}" } else { "}" });
        let head = self.head.take().unwrap_or_default();
        self.raw(",\"status\":{\"dockerImageRepository\":");
        self.value(&head.status.docker_image_repository)?;
        if !head.status.public_docker_image_repository.is_empty() {
            self.raw(",\"publicDockerImageRepository\":");
            self.value(&head.status.public_docker_image_repository)?;
        }
        self.phase = Phase::Status { tags_open: false };
        Ok(())
    }

    fn finish(&mut self, found: bool) -> io::Result<()> {
        if !found {
            return Err(io::Error::other(
                "the image stream was deleted while being read",
            ));
        }
        self.enter_status()?;
        let tags_open = self.phase == Phase::Status { tags_open: true };
        self.raw(if tags_open { "]}}" } else { "}}" });
        self.send()
    }
}

impl StreamVisitor for JsonWriter {
    fn head(&mut self, head: &ImageStream) -> io::Result<()> {
        if self.pieces.is_some() {
            self.stored_head = Some(head.clone());
        }
        let head = decorate(&self.hosts, head.clone());
        self.raw("{\"apiVersion\":");
        self.value(&head.api_version)?;
        self.raw(",\"kind\":");
        self.value(&head.kind)?;
        self.raw(",\"metadata\":");
        self.value(&head.metadata)?;
        self.raw(",\"spec\":{");
        if !head.spec.docker_image_repository.is_empty() {
            self.raw("\"dockerImageRepository\":");
            self.value(&head.spec.docker_image_repository)?;
            self.raw(",");
        }
        self.raw("\"lookupPolicy\":");
        self.value(&head.spec.lookup_policy)?;
        self.head = Some(head);
        Ok(())
    }

    fn spec_tag(&mut self, tag: &TagReference) -> io::Result<()> {
        self.open_spec_tag()?;
        let start = self.buf.len();
        self.value(tag)?;
        self.cut(false, &tag.name, start);
        self.flush_if_full()
    }

    fn status_tag(&mut self, tag: &str, conditions: &[TagEventCondition]) -> io::Result<()> {
        self.open_status_tag()?;
        self.tag_start = self.buf.len();
        self.raw("{");
        if !conditions.is_empty() {
            self.raw("\"conditions\":");
            self.value(&conditions)?;
            self.raw(",");
        }
        self.raw("\"items\":[");
        self.first_event = true;
        self.tag = tag.to_string();
        Ok(())
    }

    fn event(&mut self, event: &TagEvent) -> io::Result<()> {
        if !std::mem::take(&mut self.first_event) {
            self.raw(",");
        }
        self.value(event)?;
        self.flush_if_full()
    }

    fn event_json(&mut self, json: &[u8]) -> io::Result<()> {
        if !std::mem::take(&mut self.first_event) {
            self.raw(",");
        }
        self.buf.extend_from_slice(json);
        self.flush_if_full()
    }

    fn end_tag(&mut self) -> io::Result<()> {
        self.raw("],\"tag\":");
        let tag = std::mem::take(&mut self.tag);
        serde_json::to_writer(&mut self.buf, &tag).map_err(io::Error::other)?;
        self.raw("}");
        self.cut(true, &tag, self.tag_start);
        self.flush_if_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagestream::reach::Reach;
    use crate::imagestream::types::{NamedTagEventList, ObjectReference};
    use berth_storage::memory::MemoryMetadata;
    use berth_storage::{MetadataStoreExt, TxError, Txn};

    fn stream_with(tags: usize, events: usize) -> ImageStream {
        let mut s = crate::imagestream::mapping::new_stream("ns", "app");
        s.metadata.labels.insert("team".into(), "x".into());
        s.spec.tags.push(TagReference {
            name: "t0".into(),
            from: Some(ObjectReference {
                kind: "DockerImage".into(),
                name: "example.com/a/b:c".into(),
                namespace: String::new(),
            }),
            ..Default::default()
        });
        for t in 0..tags {
            s.status.tags.push(NamedTagEventList {
                tag: format!("t{t}"),
                items: (0..events)
                    .map(|e| TagEvent {
                        created: "2026-01-01T00:00:00Z".into(),
                        docker_image_reference: format!("h/ns/app@sha256:{t:032x}{e:032x}"),
                        image: format!("sha256:{t:032x}{e:032x}"),
                        generation: 1,
                    })
                    .collect(),
                conditions: if t % 2 == 0 {
                    vec![TagEventCondition {
                        kind: "ImportSuccess".into(),
                        status: "False".into(),
                        message: "m".into(),
                        generation: 1,
                        ..Default::default()
                    }]
                } else {
                    Vec::new()
                },
            });
        }
        s
    }

    fn streamed(meta: Arc<dyn MetadataStore>) -> Vec<u8> {
        let (tx, mut rx) = mpsc::channel(1 << 16);
        let mut w = JsonWriter::new(
            Some(tx),
            RepositoryHosts {
                internal: "reg:5000".into(),
                public: Some("public.example".into()),
            },
        );
        let found = store::visit_stream(meta.as_ref(), "ns", "app", &mut w).unwrap();
        w.finish(found).unwrap();
        drop(w);
        let mut out = Vec::new();
        while let Ok(Ok(chunk)) = rx.try_recv() {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn a_reader_that_stops_reading_is_abandoned() {
        let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadata::new());
        let s = stream_with(40, 60);
        meta.transaction(|tx: &mut dyn Txn| {
            let mut changes = Vec::new();
            store::save_stream(
                tx,
                None,
                &mut s.clone(),
                &mut changes,
                &Reach::trusted(),
                crate::imagestream::Origin::Update,
            )
            .map_err(|_| TxError::Abort(()))
        })
        .unwrap();
        // Room for one chunk, and nobody reading it.
        let (tx, _rx) = mpsc::channel(1);
        let mut w = JsonWriter::new(
            Some(tx),
            RepositoryHosts {
                internal: "reg:5000".into(),
                public: Some("public.example".into()),
            },
        );
        w.stall = std::time::Duration::from_millis(50);
        match store::visit_stream(meta.as_ref(), "ns", "app", &mut w) {
            Err(VisitError::Visitor(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn streamed_json_is_the_assembled_objects_bytes() {
        for (tags, events) in [(0, 0), (1, 1), (3, 2), (40, 60)] {
            let meta: Arc<dyn MetadataStore> = Arc::new(MemoryMetadata::new());
            let mut s = stream_with(tags, events);
            if tags == 0 {
                s.spec.tags.clear();
            }
            meta.transaction(|tx: &mut dyn Txn| {
                let mut changes = Vec::new();
                store::save_stream(
                    tx,
                    None,
                    &mut s.clone(),
                    &mut changes,
                    &Reach::trusted(),
                    crate::imagestream::Origin::Update,
                )
                .map_err(|e| match e {
                    TxError::Storage(e) => TxError::<()>::Storage(e),
                    TxError::Abort(_) => TxError::Abort(()),
                })
            })
            .unwrap();
            let whole = store::read_stream(meta.as_ref(), "ns", "app")
                .unwrap()
                .unwrap();
            let hosts = RepositoryHosts {
                internal: "reg:5000".into(),
                public: Some("public.example".into()),
            };
            let v = serde_json::to_value(decorate(&hosts, whole)).unwrap();
            assert_eq!(
                v["status"]["publicDockerImageRepository"],
                "public.example/ns/app"
            );
            let expected = serde_json::to_vec(&v).unwrap();
            let rendered = render(meta.as_ref(), &hosts, "ns", "app").unwrap();
            assert_eq!(
                String::from_utf8(streamed(meta)).unwrap(),
                String::from_utf8(expected.clone()).unwrap(),
                "{tags} tags x {events} events"
            );
            assert_eq!(rendered.as_ref(), &expected[..]);
        }
    }
}
