//! The content-reachability rule: a manifest, its blobs or its Image data become reachable
//! through a namespace only if whoever put them there could already read them.
//!
//! Every way content enters a stream ends in [`super::store::save_stream`], which asks
//! [`Reach::admit`] about each image that is new to the stream's history or newly on top of a
//! tag (the moment its content is linked into the repository). An image is admitted when:
//! - the writer is the registry itself (a push, whose blobs were checked linked, or an import,
//!   whose bytes were fetched and verified) or a cluster-admin;
//! - this registry holds no manifest for it (there is no content to reach);
//! - the repository already serves it; or
//! - spec-tag processing resolved it from a stream the caller may view, where that stream's
//!   repository serves it ([`Reach::source_readable`] vouched for it).
//!
//! A refusal names only what the caller sent (the digest and the target stream), so it reveals
//! nothing about namespaces the caller cannot view.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_storage::{Digest, TxError, Txn};

use super::error::Error;
use super::store::TxResult;
use crate::registry::records::keys as reg_keys;
use crate::registry::RepositoryName;

type MayView = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Who writes, as far as reading content is concerned.
#[derive(Clone)]
enum Writer {
    /// The registry's own paths (push, import) and cluster-admins: may link anything.
    Trusted,
    /// An API caller limited to the namespaces it may view.
    Caller { user: String, may_view: MayView },
}

/// One write's reader rights plus the images its source checks vouched for.
#[derive(Clone)]
pub struct Reach {
    writer: Writer,
    vouched: BTreeSet<String>,
}

impl Reach {
    /// The registry itself, or a caller who may read everything.
    pub fn trusted() -> Self {
        Reach {
            writer: Writer::Trusted,
            vouched: BTreeSet::new(),
        }
    }

    /// An API caller named `user` who may view the namespaces `may_view` accepts.
    pub fn caller(user: &str, may_view: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Reach {
            writer: Writer::Caller {
                user: user.to_string(),
                may_view: Arc::new(may_view),
            },
            vouched: BTreeSet::new(),
        }
    }

    pub fn is_trusted(&self) -> bool {
        matches!(self.writer, Writer::Trusted)
    }

    /// Refuses a source in a namespace the caller may not view, before anything in it is
    /// looked up (so the answer is the same whether the source exists or not).
    pub fn check_namespace(&self, ns: &str) -> Result<(), Error> {
        match &self.writer {
            Writer::Trusted => Ok(()),
            Writer::Caller { user, may_view } if !may_view(ns) => Err(Error::Forbidden {
                resource: "imagestreams/layers",
                name: String::new(),
                message: format!(
                    "imagestreams.image.openshift.io is forbidden: User {user:?} cannot get \
                     resource \"imagestreams/layers\" in API group \"image.openshift.io\" in \
                     the namespace {ns:?}"
                ),
            }),
            Writer::Caller { .. } => Ok(()),
        }
    }

    /// Vouches for `image` resolved from the stream `source` (whose namespace was checked with
    /// [`Reach::check_namespace`]) if that stream's repository serves it.
    pub fn source_readable(
        &mut self,
        tx: &mut dyn Txn,
        source: &RepositoryName,
        image: &str,
    ) -> TxResult<()> {
        if self.is_trusted() || image.is_empty() {
            return Ok(());
        }
        if let Ok(d) = image.parse::<Digest>() {
            if tx.get(&reg_keys::repo_manifest(source, &d))?.is_some() {
                self.vouched.insert(image.to_string());
            }
        }
        Ok(())
    }

    /// Whether `image` may become reachable through `repo` (see the module docs).
    pub fn admit(&self, tx: &mut dyn Txn, repo: &RepositoryName, image: &str) -> TxResult<()> {
        let Writer::Caller { user, .. } = &self.writer else {
            return Ok(());
        };
        if image.is_empty() || self.vouched.contains(image) {
            return Ok(());
        }
        // A name that is not a digest cannot name held content.
        let Ok(digest) = image.parse::<Digest>() else {
            return Ok(());
        };
        if tx.get(&reg_keys::manifest(&digest))?.is_none()
            || tx.get(&reg_keys::repo_manifest(repo, &digest))?.is_some()
        {
            return Ok(());
        }
        Err(TxError::Abort(Error::Forbidden {
            resource: "imagestreams",
            name: repo.stream().as_str().to_string(),
            message: format!(
                "imagestreams.image.openshift.io {:?} is forbidden: User {user:?} cannot put \
                 image {image:?} into {repo}: its content is not readable there (push it, \
                 import it, or tag it from a stream you may view)",
                repo.stream().as_str()
            ),
        }))
    }
}
