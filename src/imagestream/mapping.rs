//! ImageStreamMapping (spec §3.4) and the other history edits the registry makes, as
//! transaction steps. The registry's push path and the API's POST share this code.

use super::error::Error;
use super::history::{add_tag_event, update_tracking_tags};
use super::notice::Origin;
use super::reach::Reach;
use super::store::{ensure_image, load_checked, load_tags, save_stream, Change, TxResult};
use super::types::{now_rfc3339, Image, ImageStream, ObjectMeta, TagEvent};
use berth_storage::{TxError, Txn};

/// A new, empty stream (generation 1), as the registry creates on a first push.
pub fn new_stream(ns: &str, name: &str) -> ImageStream {
    ImageStream {
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: ns.to_string(),
            uid: uuid::Uuid::new_v4().to_string(),
            generation: 1,
            creation_timestamp: Some(now_rfc3339()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// One ImageStreamMapping: `image` recorded under `ns/name:tag` for each of `tags`.
pub struct Mapping<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// A push may name many tags at once; they share one load and one save of the stream, so
    /// the cost grows with the number of tags, not with its square.
    pub tags: &'a [&'a str],
    pub image: &'a Image,
    /// The registry creates a missing stream; the API's mapping never does (NotFound).
    pub create_stream: bool,
    /// Registry host for references made local to this stream.
    pub public_host: &'a str,
    /// Whose rights decide what content may enter the stream.
    pub reach: &'a Reach,
    /// A push or an API mapping, for the istag notices.
    pub origin: Origin,
}

pub fn apply_mapping(tx: &mut dyn Txn, m: &Mapping<'_>, changes: &mut Vec<Change>) -> TxResult<()> {
    let (ns, name, image, create_stream, public_host) =
        (m.namespace, m.name, m.image, m.create_stream, m.public_host);
    let old = load_tags(tx, ns, name, m.tags)?;
    let mut stream = match &old {
        Some(s) => s.stream().clone(),
        None if create_stream => new_stream(ns, name),
        None => {
            return Err(TxError::Abort(Error::NotFound {
                resource: "imagestreammappings",
                name: name.to_string(),
            }))
        }
    };
    let existed = ensure_image(tx, image, changes)?;
    let managed = image.is_managed();
    let reference = if (existed && managed) || image.docker_image_reference.is_empty() {
        format!("{public_host}/{ns}/{name}@{}", image.metadata.name)
    } else {
        image.docker_image_reference.clone()
    };
    let event = TagEvent {
        created: now_rfc3339(),
        docker_image_reference: reference,
        image: image.metadata.name.clone(),
        generation: stream.metadata.generation,
    };
    let mut changed = false;
    for tag in m.tags {
        if add_tag_event(&mut stream, tag, event.clone()) {
            update_tracking_tags(&mut stream, tag, &event);
            changed = true;
        }
    }
    if changed || old.is_none() {
        save_stream(tx, old.as_ref(), &mut stream, changes, m.reach, m.origin)?;
    }
    Ok(())
}

/// Removes `tag` from spec and status (DELETE of an istag or a registry tag). Returns false
/// when neither existed.
pub fn delete_tag(
    tx: &mut dyn Txn,
    ns: &str,
    name: &str,
    tag: &str,
    changes: &mut Vec<Change>,
) -> TxResult<bool> {
    let Some(old) = load_tags(tx, ns, name, &[tag])? else {
        return Ok(false);
    };
    let mut stream = old.stream().clone();
    stream.spec.tags.retain(|t| t.name != tag);
    stream.status.tags.retain(|t| t.tag != tag);
    if stream == *old.stream() {
        return Ok(false);
    }
    // Removing a tag adds no content.
    save_stream(
        tx,
        Some(&old),
        &mut stream,
        changes,
        &Reach::trusted(),
        Origin::Delete,
    )?;
    Ok(true)
}

/// Removes every history entry of `image` from the stream `snapshot` (read whole before the
/// transaction); tags left empty disappear. [`Error::Retry`] when the stream changed since.
pub fn remove_image(
    tx: &mut dyn Txn,
    snapshot: &ImageStream,
    image: &str,
    changes: &mut Vec<Change>,
) -> TxResult<()> {
    let Some(old) = load_checked(tx, snapshot)? else {
        return Ok(());
    };
    let mut stream = old.stream().clone();
    for t in &mut stream.status.tags {
        t.items.retain(|e| e.image != image);
    }
    stream
        .status
        .tags
        .retain(|t| !t.items.is_empty() || !t.conditions.is_empty());
    if stream != *old.stream() {
        // Pruning (image-pruner or cluster-admin) only removes entries.
        save_stream(
            tx,
            Some(&old),
            &mut stream,
            changes,
            &Reach::trusted(),
            Origin::Prune,
        )?;
    }
    Ok(())
}
