//! Spec-tag processing on stream create and update (spec §3.2-3.3): generations, and the
//! status events a tag's `from` produces at once (ImageStreamTag and ImageStreamImage sources,
//! and DockerImage references). DockerImage imports are the importer's job.

use super::error::{Cause, Error};
use super::history::{add_tag_event, update_tracking_tags};
use std::collections::HashMap;

use super::reach::Reach;
use super::store::{self, image_in_stream, load_head, load_tags, TxResult};
use super::types::{now_rfc3339, ImageStream, TagEvent, TagReference};
use berth_storage::{MetadataStore, TxError, Txn};

pub const IMPORT_MODES: [&str; 3] = ["", "Legacy", "PreserveOriginal"];

/// Checks spec tags; field paths are relative to `prefix` (`spec.tags[i]` or `tag`).
pub fn validate(tags: &[TagReference], prefix: impl Fn(usize) -> String) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        let p = prefix(i);
        if crate::registry::Tag::parse(&t.name).is_err() {
            causes.push(Cause::invalid(
                format!("{p}.name"),
                &t.name,
                "must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}",
            ));
        }
        if !IMPORT_MODES.contains(&t.import_policy.import_mode.as_str()) {
            causes.push(Cause::invalid(
                format!("{p}.importPolicy.importMode"),
                &t.import_policy.import_mode,
                "invalid import mode, valid modes are '', 'Legacy', 'PreserveOriginal'",
            ));
        }
        if !["Source", "Local"].contains(&t.reference_policy.kind.as_str()) {
            causes.push(Cause::invalid(
                format!("{p}.referencePolicy.type"),
                &t.reference_policy.kind,
                "valid values are \"Source\", \"Local\"",
            ));
        }
        if let Some(from) = &t.from {
            match from.kind.as_str() {
                "DockerImage" | "ImageStreamTag" | "ImageStreamImage" => {}
                _ => causes.push(Cause {
                    detail: "valid values are 'DockerImage', 'ImageStreamImage', 'ImageStreamTag'"
                        .into(),
                    ..Cause::required(format!("{p}.from.kind"))
                }),
            }
            if from.name.is_empty() {
                causes.push(Cause::required(format!("{p}.from.name")));
            }
            if t.import_policy.scheduled && from.kind != "DockerImage" {
                causes.push(Cause::invalid(
                    format!("{p}.importPolicy.scheduled"),
                    "true",
                    "only tags pointing to Docker repositories may be scheduled for background import",
                ));
            }
        }
    }
    causes
}

/// Whether a tag's source changed between `old` and `new` (§3.2).
fn source_changed(old: Option<&TagReference>, new: &TagReference, ns: &str) -> bool {
    let Some(old) = old else { return true };
    let eff_ns = |t: &TagReference| {
        t.from.as_ref().map(|f| {
            if f.namespace.is_empty() {
                ns.to_string()
            } else {
                f.namespace.clone()
            }
        })
    };
    eff_ns(old) != eff_ns(new)
        || old.from.as_ref().map(|f| &f.name) != new.from.as_ref().map(|f| &f.name)
        || old.reference != new.reference
        || old.import_policy.import_mode != new.import_policy.import_mode
        || new.generation == Some(0)
        || new.generation.is_none()
}

/// Assigns spec-tag generations for a stream at `generation` and returns the tags whose source
/// changed (to be processed).
pub fn assign_generations(old: Option<&ImageStream>, new: &mut ImageStream) -> Vec<String> {
    let ns = new.metadata.namespace.clone();
    let generation = new.metadata.generation;
    let mut changed = Vec::new();
    for t in &mut new.spec.tags {
        let previous = old.and_then(|o| o.spec_tag(&t.name));
        if source_changed(previous, t, &ns) {
            t.generation = Some(generation);
            changed.push(t.name.clone());
        } else {
            t.generation = previous.and_then(|p| p.generation);
        }
    }
    changed
}

/// Candidate images of ImageStreamImage sources, looked up before the write's transaction
/// (prefix lookups are scans, which transactions cannot do); the transaction checks again that
/// the one it uses is still in the stream.
#[derive(Debug, Default)]
pub struct Sources {
    images: HashMap<(String, String, String), Vec<String>>,
}

impl Sources {
    /// Looks up the ImageStreamImage sources of `tags` in stream `ns/name`. A source in
    /// another namespace needs `reach` to view it, checked before anything is looked up.
    pub fn prepare(
        meta: &dyn MetadataStore,
        ns: &str,
        name: &str,
        tags: &[TagReference],
        reach: &Reach,
    ) -> Result<Sources, Error> {
        let mut sources = Sources::default();
        for t in tags {
            let Some(from) = &t.from else { continue };
            let from_ns = if from.namespace.is_empty() {
                ns
            } else {
                from.namespace.as_str()
            };
            if from.kind != "DockerImage" {
                reach.check_namespace(from_ns)?;
            }
            if from.kind != "ImageStreamImage" {
                continue;
            }
            let (stream, id) = from.name.split_once('@').unwrap_or((name, &from.name));
            let key = (from_ns.to_string(), stream.to_string(), id.to_string());
            let found = lookup(meta, from_ns, stream, id)?;
            sources.images.insert(key, found);
        }
        Ok(sources)
    }
}

/// The images of stream `ns/name` whose id starts with `id` (a digest, or a prefix of either
/// the whole id or its hex part). An id with no hex digits matches nothing (it would match
/// every image).
pub fn lookup(
    meta: &dyn MetadataStore,
    ns: &str,
    name: &str,
    id: &str,
) -> Result<Vec<String>, Error> {
    let hex_part = id.split_once(':').map_or(id, |(_, h)| h);
    if hex_part.is_empty() {
        return Ok(Vec::new());
    }
    Ok(store::images_matching(meta, ns, name, id)?)
}

/// The one image `found` names, or the §3.3 errors (NotFound; Conflict listing the matches).
pub fn one_image(stream: &str, id: &str, mut found: Vec<String>) -> Result<String, Error> {
    match found.len() {
        0 => Err(Error::NotFound {
            resource: "imagestreamimages",
            name: format!("{stream}@{id}"),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(Error::Conflict {
            resource: "imagestreamimages",
            name: format!("{stream}@{id}"),
            message: format!(
                "multiple images match the prefix {id:?}: {}",
                found.join(", ")
            ),
        }),
    }
}

/// Applies the immediate status effect of each changed spec tag (§3.3), then tracking tags.
/// `stream` holds the changed tags, their trackers and any tag of this stream they track. A
/// source in another namespace needs `reach` to view it, checked before it is looked up;
/// images resolved from a source its repository serves are vouched for in `reach`.
pub fn process(
    tx: &mut dyn Txn,
    stream: &mut ImageStream,
    changed: &[String],
    public_host: &str,
    reach: &mut Reach,
    sources: &Sources,
) -> TxResult<()> {
    let ns = stream.metadata.namespace.clone();
    let own = stream.metadata.name.clone();
    let mut causes = Vec::new();
    for (i, tag) in changed.iter().enumerate() {
        let Some(spec) = stream.spec_tag(tag).cloned() else {
            continue;
        };
        let Some(from) = spec.from.clone() else {
            continue;
        };
        let field = format!("spec.tags[{i}].from.name");
        let generation = spec.generation.unwrap_or(stream.metadata.generation);
        let from_ns = if from.namespace.is_empty() {
            ns.clone()
        } else {
            from.namespace.clone()
        };
        if from.kind != "DockerImage" {
            reach.check_namespace(&from_ns).map_err(TxError::Abort)?;
        }
        let event = match from.kind.as_str() {
            "DockerImage" if spec.reference => Some(TagEvent {
                created: now_rfc3339(),
                docker_image_reference: from.name.clone(),
                image: String::new(),
                generation,
            }),
            "ImageStreamTag" if other_stream(stream, &from_ns, &from.name) => {
                // As OpenShift does: the source's current image is taken now; the tag does
                // not follow that stream afterwards (only a tag of its own stream does).
                let (src, src_tag) = from.name.split_once(':').unwrap_or((&own, &from.name));
                let top = load_tags(tx, &from_ns, src, &[src_tag])?.and_then(|l| {
                    l.stream()
                        .status_tag(src_tag)
                        .and_then(|t| t.items.first().cloned())
                });
                if let (Some(top), Some(repo)) = (&top, repo_name(&from_ns, src)) {
                    reach.source_readable(tx, &repo, &top.image)?;
                }
                top.map(|top| TagEvent {
                    created: now_rfc3339(),
                    docker_image_reference: local_reference(
                        &top.docker_image_reference,
                        &top.image,
                        (&from_ns, src),
                        &ns,
                        &own,
                        public_host,
                    ),
                    image: top.image,
                    generation,
                })
            }
            "ImageStreamTag" => {
                let src_tag = from
                    .name
                    .split_once(':')
                    .map_or(from.name.as_str(), |(_, t)| t);
                let top = stream
                    .status_tag(src_tag)
                    .and_then(|t| t.items.first())
                    .cloned();
                if let (Some(top), Some(repo)) = (&top, repo_name(&ns, &own)) {
                    reach.source_readable(tx, &repo, &top.image)?;
                }
                top.map(|top| TagEvent {
                    generation,
                    docker_image_reference: local_reference(
                        &top.docker_image_reference,
                        &top.image,
                        (&ns, &own),
                        &ns,
                        &own,
                        public_host,
                    ),
                    ..top
                })
            }
            "ImageStreamImage" => {
                let (src, id) = from
                    .name
                    .split_once('@')
                    .unwrap_or((own.as_str(), &from.name));
                let exists =
                    (src == own && from_ns == ns) || load_head(tx, &from_ns, src)?.is_some();
                if !exists {
                    causes.push(Cause::not_found(field, &from.name));
                    continue;
                }
                let found = sources
                    .images
                    .get(&(from_ns.clone(), src.to_string(), id.to_string()))
                    .cloned()
                    .unwrap_or_default();
                let image = match one_image(src, id, found) {
                    Ok(image) => image,
                    Err(Error::Conflict { message, .. }) => {
                        causes.push(Cause::invalid(field, &from.name, &message));
                        continue;
                    }
                    Err(_) => {
                        causes.push(Cause::not_found(field, &from.name));
                        continue;
                    }
                };
                // Looked up before the transaction: it must still be there.
                let Some(reference) = image_in_stream(tx, &from_ns, src, &image)? else {
                    causes.push(Cause::not_found(field, &from.name));
                    continue;
                };
                if let Some(repo) = repo_name(&from_ns, src) {
                    reach.source_readable(tx, &repo, &image)?;
                }
                Some(TagEvent {
                    created: now_rfc3339(),
                    docker_image_reference: local_reference(
                        &reference,
                        &image,
                        (&from_ns, src),
                        &ns,
                        &own,
                        public_host,
                    ),
                    image,
                    generation,
                })
            }
            _ => None,
        };
        if let Some(event) = event {
            if add_tag_event(stream, tag, event.clone()) {
                update_tracking_tags(stream, tag, &event);
            }
        }
    }
    if !causes.is_empty() {
        return Err(TxError::Abort(Error::Invalid {
            kind: "ImageStream",
            name: own,
            causes,
        }));
    }
    Ok(())
}

fn repo_name(ns: &str, name: &str) -> Option<crate::registry::RepositoryName> {
    crate::registry::RepositoryName::parse(&format!("{ns}/{name}")).ok()
}

/// The tag of this stream a spec tag's ImageStreamTag source names, if it is in this stream
/// (a write loads it alongside the tag).
pub fn source_tag_in_stream(ns: &str, name: &str, spec: &TagReference) -> Option<String> {
    let from = spec.from.as_ref()?;
    if from.kind != "ImageStreamTag" || !(from.namespace.is_empty() || from.namespace == ns) {
        return None;
    }
    match from.name.split_once(':') {
        None => Some(from.name.clone()),
        Some((s, t)) if s == name => Some(t.to_string()),
        Some(_) => None,
    }
}

/// Whether an ImageStreamTag source lies in another stream (or namespace).
fn other_stream(this: &ImageStream, from_ns: &str, from_name: &str) -> bool {
    let stream = from_name
        .split_once(':')
        .map_or(this.metadata.name.as_str(), |(s, _)| s);
    stream != this.metadata.name || from_ns != this.metadata.namespace
}

/// A reference into the source stream's repository on this registry is rewritten to this
/// stream, so the image is pulled through the stream it is tagged into (§3.3).
fn local_reference(
    reference: &str,
    image: &str,
    (source_ns, source_name): (&str, &str),
    ns: &str,
    name: &str,
    public_host: &str,
) -> String {
    let source_repo = format!("{public_host}/{source_ns}/{source_name}@");
    if !image.is_empty() && reference.starts_with(&source_repo) {
        format!("{public_host}/{ns}/{name}@{image}")
    } else {
        reference.to_string()
    }
}
