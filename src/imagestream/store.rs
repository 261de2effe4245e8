//! Image streams and images in the metadata store, inside a transaction.
//!
//! Every stream write goes through [`save_stream`], which keeps the derived indexes true in
//! the same transaction: the tag index the registry pulls and lists from
//! (`tag\0<ns>/<stream>\0<tag>` → top image), and the repository links that let a stream serve
//! the content of every image in its tags' tops. It also bumps the store-wide resourceVersion.

use berth_storage::record::{decode, encode};
use berth_storage::{Digest, Record, TxError, Txn};
use serde::{Deserialize, Serialize};

use super::error::Error;
use super::reach::Reach;
use super::types::{Image, ImageStream};
use crate::registry::records::{keys as reg_keys, Link, PullThroughRecord, TagRecord};
use crate::registry::{RepositoryName, Tag};

impl Record for ImageStream {
    const KIND: &'static str = "imagestream";
    const VERSION: u8 = 1;
}

impl Record for Image {
    const KIND: &'static str = "image";
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
    pub fn stream(ns: &str, name: &str) -> Vec<u8> {
        format!("is\0{ns}\0{name}").into_bytes()
    }
    /// Every stream of a namespace, or of all namespaces with `None`.
    pub fn streams(ns: Option<&str>) -> Vec<u8> {
        match ns {
            Some(ns) => format!("is\0{ns}\0").into_bytes(),
            None => b"is\0".to_vec(),
        }
    }
    pub fn image(name: &str) -> Vec<u8> {
        format!("image\0{name}").into_bytes()
    }
    pub fn images() -> Vec<u8> {
        b"image\0".to_vec()
    }
    pub const RESOURCE_VERSION: &[u8] = b"meta\0resourceVersion";
}

/// What a committed transaction changed, for watchers. Carries the object as written.
#[derive(Debug, Clone)]
pub enum Change {
    Stream {
        kind: ChangeKind,
        stream: ImageStream,
    },
    Image {
        kind: ChangeKind,
        image: Image,
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

/// The store-wide resourceVersion now.
pub fn current_resource_version(
    meta: &dyn berth_storage::MetadataStore,
) -> berth_storage::Result<u64> {
    match meta.get(keys::RESOURCE_VERSION)? {
        Some(bytes) => Ok(decode::<Counter>(&bytes)?.value),
        None => Ok(0),
    }
}

/// Takes the next store-wide resourceVersion.
pub fn next_resource_version(tx: &mut dyn Txn) -> TxResult<u64> {
    let mut c: Counter = get(tx, keys::RESOURCE_VERSION)?.unwrap_or_default();
    c.value += 1;
    tx.put(keys::RESOURCE_VERSION, &encode(&c))?;
    Ok(c.value)
}

pub fn load_stream(tx: &mut dyn Txn, ns: &str, name: &str) -> TxResult<Option<ImageStream>> {
    get(tx, &keys::stream(ns, name))
}

fn repo_of(stream: &ImageStream) -> Option<RepositoryName> {
    RepositoryName::parse(&format!(
        "{}/{}",
        stream.metadata.namespace, stream.metadata.name
    ))
    .ok()
}

/// Writes `new` (whose previous version is `old`), bumps its resourceVersion and keeps the
/// tag index and content links in step. `reach` decides whether each image new to the stream
/// may become reachable through it (the one place that rule is enforced).
pub fn save_stream(
    tx: &mut dyn Txn,
    old: Option<&ImageStream>,
    new: &mut ImageStream,
    changes: &mut Vec<Change>,
    reach: &Reach,
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
    if !reach.is_trusted() {
        let before: std::collections::HashSet<&str> = old
            .iter()
            .flat_map(|o| o.status.tags.iter())
            .flat_map(|t| t.items.iter().map(|e| e.image.as_str()))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for e in new.status.tags.iter().flat_map(|t| t.items.iter()) {
            if !before.contains(e.image.as_str()) && seen.insert(e.image.as_str()) {
                reach.admit(tx, &repo, &e.image)?;
            }
        }
    }
    // Tag index: tags whose top image changed, appeared or vanished.
    let mut names: Vec<&str> = new.status.tags.iter().map(|t| t.tag.as_str()).collect();
    if let Some(old) = old {
        names.extend(old.status.tags.iter().map(|t| t.tag.as_str()));
    }
    names.sort_unstable();
    names.dedup();
    // Top images by tag, looked up once: streams can have thousands of tags.
    let tops = |s: &ImageStream| -> std::collections::HashMap<String, String> {
        s.status
            .tags
            .iter()
            .filter_map(|t| {
                let image = &t.items.first()?.image;
                (!image.is_empty()).then(|| (t.tag.clone(), image.clone()))
            })
            .collect()
    };
    let (old_tops, new_tops) = (old.map(tops).unwrap_or_default(), tops(new));
    for name in names {
        let before = old_tops.get(name).map(String::as_str);
        let after = new_tops.get(name).map(String::as_str);
        if before == after {
            continue;
        }
        let Ok(tag) = Tag::parse(name) else { continue };
        let key = reg_keys::tag(&repo, &tag);
        match after.and_then(|d| d.parse::<Digest>().ok()) {
            Some(digest) => {
                // An image already in the history becomes reachable only now, on top.
                reach.admit(tx, &repo, &digest.to_string())?;
                link_image_content(tx, &repo, &digest, 0)?;
                tx.put(&key, &encode(&TagRecord { digest }))?;
            }
            None => tx.delete(&key)?,
        }
    }
    tx.put(
        &keys::stream(&new.metadata.namespace, &new.metadata.name),
        &encode(&*new),
    )?;
    changes.push(Change::Stream {
        kind: if old.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        },
        stream: new.clone(),
    });
    Ok(())
}

pub fn delete_stream(
    tx: &mut dyn Txn,
    old: &ImageStream,
    changes: &mut Vec<Change>,
) -> TxResult<()> {
    if let Some(repo) = repo_of(old) {
        for t in &old.status.tags {
            if let Ok(tag) = Tag::parse(&t.tag) {
                tx.delete(&reg_keys::tag(&repo, &tag))?;
            }
        }
    }
    tx.delete(&keys::stream(&old.metadata.namespace, &old.metadata.name))?;
    let mut gone = old.clone();
    gone.metadata.resource_version = next_resource_version(tx)?.to_string();
    changes.push(Change::Stream {
        kind: ChangeKind::Deleted,
        stream: gone,
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
    let link = reg_keys::repo_manifest(repo, digest);
    if tx.get(&link)?.is_some() || depth > 4 {
        return Ok(());
    }
    // Only content this registry holds can be linked; imported references stay remote.
    if tx.get(&reg_keys::manifest(digest))?.is_none() {
        return Ok(());
    }
    tx.put(&link, &encode(&Link {}))?;
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
            None if tx.get(&reg_keys::blob(&d))?.is_some() => {
                tx.put(&reg_keys::repo_blob(repo, &d), &encode(&Link {}))?
            }
            None => {}
        }
    }
    for child in &image.docker_image_manifests {
        if let Ok(d) = child.digest.parse::<Digest>() {
            link_image_content(tx, repo, &d, depth + 1)?;
        }
    }
    Ok(())
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
