//! Notices: what a transaction did that subscribers outside berth care about (an istag's
//! image moved, a manifest arrived). They ride in the transaction's change list, so whatever
//! must commit with them (the webhook outbox) is written by the same transaction; watchers
//! never see them.
//!
//! `save_stream` raises the istag notices itself, so every way an istag changes (push, tag,
//! import, tracking, delete) raises exactly one per tag whose current image moved.

use berth_storage::Txn;
use serde::{Deserialize, Serialize};

/// Why an istag changed: the operation that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// A manifest pushed by tag.
    Push,
    /// An ImageStreamMapping posted to the API.
    Mapping,
    /// An istag written through the API (`berth tag`) to an image the tag did not hold.
    Tag,
    /// An istag written through the API back to an image already in the tag's history.
    Rollback,
    /// A whole-stream write (PUT, PATCH, status PUT, create).
    Update,
    /// An import asked for (ImageStreamImport, a new or changed spec tag).
    Import,
    /// A re-import of a tag with `importPolicy.scheduled`.
    ScheduledImport,
    /// A tag following another tag of the stream that moved in the same write.
    Tracking,
    /// An istag, tag or stream deleted.
    Delete,
    /// Images removed from history (manifest delete, image delete).
    Prune,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Push => "push",
            Origin::Mapping => "mapping",
            Origin::Tag => "tag",
            Origin::Rollback => "rollback",
            Origin::Update => "update",
            Origin::Import => "import",
            Origin::ScheduledImport => "scheduled-import",
            Origin::Tracking => "tracking",
            Origin::Delete => "delete",
            Origin::Prune => "prune",
        }
    }
}

/// An istag whose current image changed (`image: None`: the tag is gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagMoved {
    pub namespace: String,
    pub stream: String,
    pub tag: String,
    pub previous_image: Option<String>,
    pub image: Option<String>,
    /// The pull spec of the new top event.
    #[serde(default)]
    pub docker_image_reference: String,
    pub origin: Origin,
    /// The tag this one followed, for [`Origin::Tracking`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followed: Option<String>,
    /// The new top event's generation (the stream's generation for a delete).
    pub generation: i64,
    pub resource_version: u64,
}

/// An import that ended with ImportSuccess=False.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportFailed {
    pub namespace: String,
    pub stream: String,
    pub tag: String,
    pub reason: String,
    pub message: String,
    pub generation: i64,
    pub resource_version: u64,
}

/// A manifest linked into (or unlinked from) a repository, tagged or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestChanged {
    pub namespace: String,
    pub stream: String,
    pub digest: String,
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub size: u64,
    /// Tags the push named (empty for a push by digest and for deletes).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// An Image deleted by pruning, told to one namespace whose streams held it until the same
/// prune (an Image is cluster-scoped; other namespaces never hear of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePruned {
    pub namespace: String,
    /// The streams of `namespace` whose history or repository held the image.
    pub streams: Vec<String>,
    /// The Image's name (its manifest digest).
    pub image: String,
    pub resource_version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    TagUpdated(TagMoved),
    TagDeleted(TagMoved),
    ImportFailed(ImportFailed),
    ManifestPushed(ManifestChanged),
    ManifestDeleted(ManifestChanged),
    ImagePruned(ImagePruned),
}

impl Notice {
    /// The namespace whose subscribers hear of it (and no other).
    pub fn namespace(&self) -> &str {
        match self {
            Notice::TagUpdated(t) | Notice::TagDeleted(t) => &t.namespace,
            Notice::ImportFailed(f) => &f.namespace,
            Notice::ManifestPushed(m) | Notice::ManifestDeleted(m) => &m.namespace,
            Notice::ImagePruned(p) => &p.namespace,
        }
    }

    /// The streams it concerns (one, but for a pruned image every stream that held it).
    pub fn streams(&self) -> Vec<&str> {
        match self {
            Notice::TagUpdated(t) | Notice::TagDeleted(t) => vec![&t.stream],
            Notice::ImportFailed(f) => vec![&f.stream],
            Notice::ManifestPushed(m) | Notice::ManifestDeleted(m) => vec![&m.stream],
            Notice::ImagePruned(p) => p.streams.iter().map(String::as_str).collect(),
        }
    }

    /// The istags it concerns (a manifest push: the tags it named).
    pub fn tags(&self) -> Vec<&str> {
        match self {
            Notice::TagUpdated(t) | Notice::TagDeleted(t) => vec![&t.tag],
            Notice::ImportFailed(f) => vec![&f.tag],
            Notice::ManifestPushed(m) | Notice::ManifestDeleted(m) => {
                m.tags.iter().map(String::as_str).collect()
            }
            Notice::ImagePruned(_) => Vec::new(),
        }
    }
}

/// What must commit together with a transaction's notices (the webhook outbox). The
/// registry calls it inside every transaction that raised notices, so a change and what it
/// owes subscribers commit or fail together.
pub trait NoticeSink: Send + Sync + 'static {
    /// Writes what `notices` need, in `tx`; returns whether it wrote anything.
    fn record(&self, tx: &mut dyn Txn, notices: &[&Notice]) -> berth_storage::Result<bool>;
    /// Called once a transaction for which [`NoticeSink::record`] wrote something is durable.
    fn committed(&self);
}
