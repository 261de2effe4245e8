//! Spec-tag processing on stream create and update (spec §3.2-3.3): generations, and the
//! status events a tag's `from` produces at once (ImageStreamTag and ImageStreamImage sources,
//! and DockerImage references). DockerImage imports are the importer's job.

use super::error::{Cause, Error};
use super::history::{add_tag_event, update_tracking_tags};
use super::reach::Reach;
use super::store::{load_stream, TxResult};
use super::types::{now_rfc3339, ImageStream, TagEvent, TagReference};
use berth_storage::{TxError, Txn};

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

/// The id (digest or prefix) → image resolution over a stream's whole history (§3.3). An id
/// with no hex digits matches nothing (it would match every image).
pub fn resolve_image_id(stream: &ImageStream, id: &str) -> Result<(String, String), Error> {
    let mut found: Vec<(String, String)> = Vec::new();
    let hex_part = id.split_once(':').map_or(id, |(_, h)| h);
    if hex_part.is_empty() {
        return Err(Error::NotFound {
            resource: "imagestreamimages",
            name: format!("{}@{id}", stream.metadata.name),
        });
    }
    for t in &stream.status.tags {
        for e in &t.items {
            let hex = e.image.split_once(':').map(|(_, h)| h).unwrap_or(&e.image);
            if !e.image.is_empty()
                && (e.image.starts_with(id) || hex.starts_with(id))
                && !found.iter().any(|(i, _)| i == &e.image)
            {
                found.push((e.image.clone(), e.docker_image_reference.clone()));
            }
        }
    }
    match found.len() {
        0 => Err(Error::NotFound {
            resource: "imagestreamimages",
            name: format!("{}@{id}", stream.metadata.name),
        }),
        1 => Ok(found.remove(0)),
        _ => Err(Error::Conflict {
            resource: "imagestreamimages",
            name: format!("{}@{id}", stream.metadata.name),
            message: format!(
                "multiple images match the prefix {id:?}: {}",
                found
                    .iter()
                    .map(|(i, _)| i.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Applies the immediate status effect of each changed spec tag (§3.3), then tracking tags.
/// A source in another namespace needs `reach` to view it, checked before it is looked up;
/// images resolved from a source its repository serves are vouched for in `reach`.
pub fn process(
    tx: &mut dyn Txn,
    stream: &mut ImageStream,
    changed: &[String],
    public_host: &str,
    reach: &mut Reach,
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
            "ImageStreamTag" => {
                if let Some(other) = other_stream(stream, &from_ns, &from.name) {
                    causes.push(Cause::invalid(
                        field,
                        &from.name,
                        &format!(
                            "tracking tags are limited to a single image stream; \
                             tag the image of {other} by id (ImageStreamImage) instead"
                        ),
                    ));
                    continue;
                }
                let (source, src_tag) = source_stream(tx, stream, &from_ns, &from.name, ':')?;
                let Some(source) = source else {
                    causes.push(Cause::not_found(field, &from.name));
                    continue;
                };
                let top = source.status_tag(&src_tag).and_then(|t| t.items.first());
                if let Some(top) = top {
                    vouch(tx, reach, &source, &top.image)?;
                }
                top.map(|top| TagEvent {
                    generation,
                    docker_image_reference: local_reference(
                        &top.docker_image_reference,
                        &top.image,
                        &source,
                        &ns,
                        &own,
                        public_host,
                    ),
                    ..top.clone()
                })
            }
            "ImageStreamImage" => {
                let (source, id) = source_stream(tx, stream, &from_ns, &from.name, '@')?;
                let Some(source) = source else {
                    causes.push(Cause::not_found(field, &from.name));
                    continue;
                };
                match resolve_image_id(&source, &id) {
                    Ok((image, reference)) => {
                        vouch(tx, reach, &source, &image)?;
                        Some(TagEvent {
                            created: now_rfc3339(),
                            docker_image_reference: local_reference(
                                &reference,
                                &image,
                                &source,
                                &ns,
                                &own,
                                public_host,
                            ),
                            image,
                            generation,
                        })
                    }
                    Err(Error::Conflict { message, .. }) => {
                        causes.push(Cause::invalid(field, &from.name, &message));
                        continue;
                    }
                    Err(_) => {
                        causes.push(Cause::not_found(field, &from.name));
                        continue;
                    }
                }
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

/// Vouches for `image` if `source`'s repository serves it.
fn vouch(tx: &mut dyn Txn, reach: &mut Reach, source: &ImageStream, image: &str) -> TxResult<()> {
    let repo = crate::registry::RepositoryName::parse(&format!(
        "{}/{}",
        source.metadata.namespace, source.metadata.name
    ));
    match repo {
        Ok(repo) => reach.source_readable(tx, &repo, image),
        Err(_) => Ok(()),
    }
}

/// `Some("<ns>/<stream>:<tag>")` when an ImageStreamTag source lies in another stream: such a
/// tag would track across streams, which the seed rules out.
fn other_stream(this: &ImageStream, from_ns: &str, from_name: &str) -> Option<String> {
    let stream = from_name
        .split_once(':')
        .map_or(this.metadata.name.as_str(), |(s, _)| s);
    (stream != this.metadata.name || from_ns != this.metadata.namespace)
        .then(|| format!("{from_ns}/{from_name}"))
}

/// The stream a `from` name (`<x>` or `<stream><sep><x>`) points into, and its `<x>`. A bare
/// name means this stream; a missing stream is `None`.
fn source_stream(
    tx: &mut dyn Txn,
    this: &ImageStream,
    from_ns: &str,
    from_name: &str,
    sep: char,
) -> TxResult<(Option<ImageStream>, String)> {
    let (name, rest) = match from_name.split_once(sep) {
        Some((s, x)) => (s, x),
        None => (this.metadata.name.as_str(), from_name),
    };
    let source = if name == this.metadata.name && from_ns == this.metadata.namespace {
        Some(this.clone())
    } else {
        load_stream(tx, from_ns, name)?
    };
    Ok((source, rest.to_string()))
}

/// A reference into the source stream's repository on this registry is rewritten to this
/// stream, so the image is pulled through the stream it is tagged into (§3.3).
fn local_reference(
    reference: &str,
    image: &str,
    source: &ImageStream,
    ns: &str,
    name: &str,
    public_host: &str,
) -> String {
    let source_repo = format!(
        "{public_host}/{}/{}@",
        source.metadata.namespace, source.metadata.name
    );
    if !image.is_empty() && reference.starts_with(&source_repo) {
        format!("{public_host}/{ns}/{name}@{image}")
    } else {
        reference.to_string()
    }
}
