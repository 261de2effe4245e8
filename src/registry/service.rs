//! `Registry`: the operations behind the distribution API, over a metadata store and a blob
//! store. Every mutation is one metadata transaction followed by a flush, so an acknowledged
//! write survives a crash and a half-done one is never visible.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use berth_storage::record::{decode, encode};
use berth_storage::{
    Algorithm, BlobStore, ByteStream, Digest, MetadataStore, MetadataStoreExt, Record, TxError,
    Txn, UploadId,
};
use bytes::Bytes;

use super::content;
use super::error::{Error, Result};
use super::gc::{BlobLocks, WriteGate};
use super::manifest::{self, Kind};
use super::names::{Reference, RepositoryName, Tag};
use super::records::{
    keys, now_secs, BlobRecord, ManifestRecord, OpenUploads, ReferrerRecord, RepositoryRecord,
    TagRecord, UploadRecord,
};
use crate::imagestream::{
    self,
    events::Events,
    mapping::{apply_mapping, delete_tag, remove_image, Mapping},
    notice::{ManifestChanged, Notice, NoticeSink},
    reach::Reach,
    store::content_image,
    Change,
};

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest manifest body accepted.
    pub max_manifest_bytes: usize,
    /// Largest page of tags or repositories returned at once; bigger `n` is clamped (with a
    /// `Link` to the rest) rather than refused, so clients asking for huge pages still work.
    pub max_page: usize,
    /// Most extra tags (`?tag=`) one manifest push may name.
    pub max_tags_per_push: usize,
    /// Most upload sessions open at once in one repository (0: no limit).
    pub max_uploads_per_repository: u64,
    /// Most upload sessions one owner (user) may have open at once (0: no limit).
    pub max_uploads_per_owner: u64,
    /// Free bytes below which the registry reports itself not ready (the stores refuse
    /// writes below it themselves).
    pub min_free_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: 4 * 1024 * 1024,
            max_page: 100_000,
            max_tags_per_push: 100,
            max_uploads_per_repository: 100,
            max_uploads_per_owner: 500,
            min_free_bytes: 0,
        }
    }
}

/// One page of a listing; `more` says whether entries follow the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    pub more: bool,
}

#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
}

#[derive(Debug, Clone)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

#[derive(Debug, Clone)]
pub struct Referrer {
    pub digest: Digest,
    pub record: ReferrerRecord,
}

/// The registry's names in pull specs, as OpenShift distinguishes them.
#[derive(Clone, Debug, Default)]
pub struct RepositoryHosts {
    /// `host[:port]` written into the references of pushed images and into
    /// `status.dockerImageRepository` (OpenShift's internal registry hostname).
    pub internal: String,
    /// The externally reachable `host[:port]`, when one is configured: streams show it in
    /// `status.publicDockerImageRepository`.
    pub public: Option<String>,
}

#[derive(Clone)]
pub struct Registry {
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    limits: Limits,
    hosts: RepositoryHosts,
    events: Arc<Events>,
    /// Serializes a blob's commit with its collection (see `gc`).
    blob_locks: Arc<BlobLocks>,
    /// Held shared by every write; exclusively while reference counts are rebuilt.
    gate: WriteGate,
    /// Set once at start-up by the webhook outbox; shared by every clone.
    sink: Arc<OnceLock<Arc<dyn NoticeSink>>>,
}

/// Largest config blob read to fill an Image's metadata; image configs are a few KiB.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

fn get_record<R: Record>(tx: &mut dyn Txn, key: &[u8]) -> Result<Option<R>, TxError<Error>> {
    match tx.get(key)? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// How often a write that reads a whole stream first is retried when the stream changes.
pub const MAX_STREAM_RETRIES: usize = 10;

fn abort<T>(e: Error) -> Result<T, TxError<Error>> {
    Err(TxError::Abort(e))
}

impl Registry {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        limits: Limits,
        internal_host: String,
    ) -> Result<Self> {
        let last = imagestream::store::current_resource_version(meta.as_ref())?;
        let events = Arc::new(Events::new(last));
        // Replicas sharing the store learn each other's changes from its change log.
        let sink: Arc<OnceLock<Arc<dyn NoticeSink>>> = Arc::new(OnceLock::new());
        imagestream::changelog::follow(&meta, &events, &sink, last);
        Ok(Registry {
            meta,
            blobs,
            limits,
            hosts: RepositoryHosts {
                internal: internal_host,
                public: None,
            },
            events,
            blob_locks: Arc::new(BlobLocks::default()),
            gate: WriteGate::default(),
            sink,
        })
    }

    /// Installs what every transaction's notices are written to (once; later calls are
    /// ignored).
    pub fn set_notice_sink(&self, sink: Arc<dyn NoticeSink>) {
        let _ = self.sink.set(sink);
    }

    /// Sets the host of `status.publicDockerImageRepository`.
    pub fn with_public_repository_host(mut self, host: Option<String>) -> Self {
        self.hosts.public = host;
        self
    }

    pub fn hosts(&self) -> &RepositoryHosts {
        &self.hosts
    }

    pub fn internal_host(&self) -> &str {
        &self.hosts.internal
    }

    /// Committed image-stream and image changes, in resourceVersion order.
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.meta
    }

    pub fn blob_store(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    pub(super) fn blob_locks(&self) -> &BlobLocks {
        &self.blob_locks
    }

    pub(super) fn gate(&self) -> &WriteGate {
        &self.gate
    }

    fn read<R: Record>(&self, key: &[u8]) -> Result<Option<R>> {
        match self.meta.get(key)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Runs `body` as one transaction, then makes it durable before returning.
    async fn write<T: Send + 'static>(
        &self,
        body: impl FnMut(&mut dyn Txn) -> Result<T, TxError<Error>> + Send + 'static,
    ) -> Result<T> {
        self.write_as(body).await
    }

    /// [`Registry::write`] for bodies with their own error type.
    pub(super) async fn write_as<T, E>(
        &self,
        mut body: impl FnMut(&mut dyn Txn) -> Result<T, TxError<E>> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<TxError<E>> + From<berth_storage::Error> + Send + 'static,
    {
        let meta = self.meta.clone();
        let _shared = self.gate.shared().await;
        tokio::task::spawn_blocking(move || {
            let value = meta.transaction(&mut body)?;
            meta.flush()?;
            Ok(value)
        })
        .await
        .map_err(|e| E::from(berth_storage::Error::Backend(e.to_string())))?
    }

    /// Open upload sessions (their records; a scan, for scrapes rather than requests).
    pub fn count_uploads(&self) -> Result<u64> {
        let prefix = keys::uploads();
        let (mut count, mut after) = (0u64, None::<Vec<u8>>);
        loop {
            let page = self.meta.scan(&prefix, after.as_deref(), 1000)?;
            count += page.len() as u64;
            match page.into_iter().last() {
                Some((last, _)) => after = Some(last),
                None => return Ok(count),
            }
        }
    }

    /// Bytes of complete blobs, when the blob store knows them.
    pub fn blob_bytes(&self) -> Option<u64> {
        self.blobs.stored_bytes()
    }

    /// Bytes still free for the blob store.
    pub fn free_bytes(&self) -> Option<u64> {
        self.blobs.free_bytes()
    }

    /// Fails unless the metadata store answers a read (readiness).
    pub fn check_store(&self) -> Result<()> {
        self.meta.revision()?;
        Ok(())
    }

    /// Whether the blob store answers (object storage reachable): one metadata-only lookup.
    pub async fn check_blobs(&self) -> Result<()> {
        self.blobs.stat(&Digest::sha256_of(b"")).await?;
        Ok(())
    }

    /// Why writes would be refused now, if they would: the data directory short of its
    /// reserve, or a metadata store that has refused writes since an I/O error.
    pub fn write_trouble(&self) -> Option<String> {
        if let Some(available) = self.free_bytes() {
            if available < self.limits.min_free_bytes {
                return Some(
                    berth_storage::Error::NoSpace {
                        available,
                        reserve: self.limits.min_free_bytes,
                    }
                    .to_string(),
                );
            }
        }
        (!self.meta.writable()).then(|| {
            "the metadata store refuses writes since a write failed; it reopens at the next \
             write once space allows"
                .to_string()
        })
    }

    /// A repository exists once something was pushed to it or its image stream was created.
    pub fn repository_exists(&self, repo: &RepositoryName) -> Result<bool> {
        Ok(self.meta.get(&keys::repository(repo))?.is_some()
            || self
                .meta
                .get(&imagestream::store::keys::stream(
                    repo.namespace().as_str(),
                    repo.stream().as_str(),
                ))?
                .is_some())
    }

    /// Like [`Registry::write`], for bodies that change image streams or images: their changes
    /// reach watchers after the commit is durable.
    pub async fn write_changes<T: Send + 'static>(
        &self,
        body: impl FnMut(&mut dyn Txn, &mut Vec<Change>) -> Result<T, TxError<Error>> + Send + 'static,
    ) -> Result<T> {
        self.write_changes_as(body).await
    }

    /// [`Registry::write_changes`] for bodies with their own error type (the image-stream API).
    pub async fn write_changes_as<T, E>(
        &self,
        mut body: impl FnMut(&mut dyn Txn, &mut Vec<Change>) -> Result<T, TxError<E>> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<TxError<E>> + From<berth_storage::Error> + Send + 'static,
    {
        let (meta, events, sink) = (self.meta.clone(), self.events.clone(), self.sink.clone());
        let _shared = self.gate.shared().await;
        tokio::task::spawn_blocking(move || {
            let logged = meta.shared();
            let (value, changes, noticed) = meta.transaction(|tx| {
                let mut changes = Vec::new();
                let value = body(tx, &mut changes)?;
                // The outbox commits with the change it describes, or neither does.
                let notices: Vec<&Notice> = changes
                    .iter()
                    .filter_map(|c| match c {
                        Change::Notice(n) => Some(n),
                        _ => None,
                    })
                    .collect();
                let noticed = match sink.get() {
                    Some(sink) if !notices.is_empty() => sink.record(tx, &notices)?,
                    _ => false,
                };
                if logged && (noticed || changes.iter().any(|c| !matches!(c, Change::Notice(_)))) {
                    let revision = tx.revision()?;
                    imagestream::changelog::append(tx, revision, &changes, noticed)?;
                }
                Ok((value, changes, noticed))
            })?;
            let flushed = meta.flush();
            // Committed, so readers see it and its revision is taken, even if the flush failed:
            // held back, it would stop every later change from reaching watchers. On a shared
            // store the change log delivers it instead, in the order of every replica's commits.
            if !logged {
                events.publish(changes);
            }
            flushed?;
            if noticed {
                if let Some(sink) = sink.get() {
                    sink.committed();
                }
            }
            Ok(value)
        })
        .await
        .map_err(|e| E::from(berth_storage::Error::Backend(e.to_string())))?
    }

    // ---- blobs

    /// Size of a blob this repository may serve.
    pub async fn blob_size(&self, repo: &RepositoryName, digest: &Digest) -> Result<u64> {
        if self.meta.get(&keys::repo_blob(repo, digest))?.is_none() {
            return Err(Error::BlobUnknown);
        }
        let record: BlobRecord = self.read(&keys::blob(digest))?.ok_or(Error::BlobUnknown)?;
        if content::needs_touch(&record, now_secs()) {
            self.touch_blob(digest).await;
        }
        Ok(record.size)
    }

    /// Restarts a blob's grace period (a client was just told it exists). Not flushed: losing
    /// it in a crash only shortens a grace period the restart lengthens anyway.
    async fn touch_blob(&self, digest: &Digest) {
        let (meta, digest) = (self.meta.clone(), digest.clone());
        let _shared = self.gate.shared().await;
        let done = tokio::task::spawn_blocking(move || {
            meta.transaction(|tx| content::touch_blob::<Error>(tx, &digest, now_secs()))
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::debug!(error = ?e, "could not refresh a blob's grace period");
        }
    }

    /// The bytes of a blob (or of `range` of it, end exclusive and within its size).
    pub async fn read_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream> {
        self.blob_size(repo, digest).await?;
        match self.blobs.read(digest, range).await? {
            Some(stream) => Ok(stream),
            None => {
                tracing::error!(%digest, "blob recorded in metadata but missing from the blob store");
                Err(Error::BlobUnknown)
            }
        }
    }

    /// Where the client may fetch a blob directly (object storage with redirects on); the
    /// caller has checked that the repository serves it.
    pub async fn blob_redirect(&self, digest: &Digest) -> Result<Option<String>> {
        Ok(self.blobs.redirect_url(digest).await?)
    }

    /// Unlinks a blob from a repository. The bytes stay while other repositories link them;
    /// reclaiming unreferenced bytes is garbage collection's job, not a request's.
    pub async fn delete_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.write(move |tx| {
            if !content::unlink_blob(tx, &repo, &digest, now_secs())? {
                return abort(Error::BlobUnknown);
            }
            Ok(())
        })
        .await
    }

    /// Links a blob already held by `from` into `repo`. Returns false when `from` does not hold
    /// it (the caller then opens an ordinary upload session).
    pub async fn mount_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        from: &RepositoryName,
    ) -> Result<bool> {
        let source = keys::repo_blob(from, digest);
        let (target, blob) = (repo.clone(), digest.clone());
        let repo_key = keys::repository(repo);
        let mounted = self
            .write(move |tx| {
                if tx.get(&source)?.is_none() {
                    return Ok(false);
                }
                if !content::link_blob(tx, &target, &blob, now_secs())? {
                    return Ok(false);
                }
                ensure_repository(tx, &repo_key)?;
                Ok(true)
            })
            .await?;
        if mounted {
            tracing::info!(%digest, %from, to = %repo, "blob mounted");
        }
        Ok(mounted)
    }

    // ---- uploads

    /// Opens an upload session for `owner` (the client, for the per-owner limit; `None` for the
    /// server's own sessions, which no limit counts).
    pub async fn start_upload(
        &self,
        repo: &RepositoryName,
        algorithm: Algorithm,
        owner: Option<&str>,
    ) -> Result<UploadId> {
        let id = self.blobs.create_upload(algorithm).await?;
        let (key, record) = (
            keys::upload(&id),
            UploadRecord {
                repository: repo.to_string(),
                started: now_secs(),
                owner: owner.map(str::to_string),
            },
        );
        let limits = self.limits.clone();
        let opened = self
            .write(move |tx| {
                if let Some(owner) = &record.owner {
                    let repo = RepositoryName::parse(&record.repository)
                        .map_err(|e| TxError::Abort(Error::UploadInvalid(e.to_string())))?;
                    let per_repository = (
                        keys::open_uploads_of_repository(&repo),
                        limits.max_uploads_per_repository,
                        format!("repository {repo}"),
                        "max_uploads_per_repository",
                    );
                    let per_owner = (
                        keys::open_uploads_of_owner(owner),
                        limits.max_uploads_per_owner,
                        owner.clone(),
                        "max_uploads_per_user",
                    );
                    for (counter, max, who, setting) in [per_repository, per_owner] {
                        let mut open: OpenUploads = get_record(tx, &counter)?.unwrap_or_default();
                        if max > 0 && open.count >= max {
                            return abort(Error::TooManyUploads(format!(
                                "{who} has {} upload sessions open; the limit is {max} \
                                 ({setting}): finish or cancel one first",
                                open.count
                            )));
                        }
                        open.count += 1;
                        tx.put(&counter, &encode(&open))?;
                    }
                }
                tx.put(&key, &encode(&record))?;
                Ok(())
            })
            .await;
        if let Err(e) = opened {
            // Nobody will ever learn this session's id: its directory would only be litter.
            if let Err(c) = self.blobs.cancel(&id).await {
                tracing::warn!(upload = %id, error = %c, "could not remove an unrecorded upload");
            }
            return Err(e);
        }
        Ok(id)
    }

    fn check_upload(&self, repo: &RepositoryName, id: &UploadId) -> Result<()> {
        match self.read::<UploadRecord>(&keys::upload(id))? {
            Some(r) if r.repository == repo.as_str() => Ok(()),
            _ => Err(Error::UploadUnknown),
        }
    }

    /// Bytes received so far by an upload session.
    pub async fn upload_status(&self, repo: &RepositoryName, id: &UploadId) -> Result<u64> {
        self.check_upload(repo, id)?;
        self.blobs
            .upload_size(id)
            .await?
            .ok_or(Error::UploadUnknown)
    }

    pub async fn append_upload(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        offset: Option<u64>,
        data: ByteStream,
    ) -> Result<u64> {
        self.check_upload(repo, id)?;
        match self.blobs.append(id, offset, data).await {
            Err(e) if e.is_disk_full() => {
                // A session cannot grow while the disk is full, and its bytes are the space
                // others need: it goes at once (clients start blobs over after such errors).
                if let Err(c) = self.cancel_upload(repo, id).await {
                    tracing::warn!(upload = %id, error = %c, "could not discard an upload");
                }
                Err(Error::Storage(e))
            }
            other => other.map_err(upload_error),
        }
    }

    /// Discards a session this request made and nobody else knows of (a one-request upload
    /// that failed).
    pub async fn abandon_upload(&self, repo: &RepositoryName, id: &UploadId) {
        match self.cancel_upload(repo, id).await {
            Ok(()) | Err(Error::UploadUnknown) => {}
            Err(e) => tracing::warn!(upload = %id, error = %e, "could not discard an upload"),
        }
    }

    /// Verifies and stores the session's bytes as `digest`, linked into `repo`.
    pub async fn finish_upload(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
    ) -> Result<u64> {
        self.check_upload(repo, id)?;
        // The bytes land under their digest before the record names them; collection of the
        // same digest must not delete them in between.
        let _locked = self.blob_locks.lock(digest).await;
        let committed = self.blobs.commit(id, digest).await;
        let upload_key = keys::upload(id);
        let size = match committed {
            Ok(size) => size,
            Err(e) => {
                if matches!(e, berth_storage::Error::DigestMismatch { .. }) {
                    // The store discarded the bytes; forget the session too.
                    self.write(move |tx| forget_upload(tx, &upload_key)).await?;
                }
                return Err(upload_error(e));
            }
        };
        let repo_key = keys::repository(repo);
        let (repo, digest) = (repo.clone(), digest.clone());
        self.write(move |tx| {
            let now = now_secs();
            content::put_blob(tx, &digest, size, now)?;
            content::link_blob(tx, &repo, &digest, now)?;
            ensure_repository(tx, &repo_key)?;
            forget_upload(tx, &upload_key)
        })
        .await?;
        Ok(size)
    }

    pub async fn cancel_upload(&self, repo: &RepositoryName, id: &UploadId) -> Result<()> {
        self.check_upload(repo, id)?;
        self.blobs.cancel(id).await?;
        let key = keys::upload(id);
        self.write(move |tx| forget_upload(tx, &key)).await
    }

    /// Removes upload sessions untouched for `max_age`, bytes and records both.
    pub async fn purge_uploads(&self, max_age: std::time::Duration) -> Result<usize> {
        let cutoff = std::time::SystemTime::now() - max_age;
        let purged = self.blobs.purge_uploads(cutoff).await?;
        // Drop records whose bytes are gone.
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.meta.scan(&keys::uploads(), after.as_deref(), 1000)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, _) in page {
                let id = std::str::from_utf8(keys::last_part(&key))
                    .ok()
                    .and_then(UploadId::parse);
                let gone = match &id {
                    Some(id) => self.blobs.upload_size(id).await?.is_none(),
                    None => true,
                };
                if gone {
                    self.write(move |tx| forget_upload(tx, &key)).await?;
                }
            }
        }
        Ok(purged)
    }

    // ---- manifests

    pub async fn put_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        extra_tags: &[Tag],
    ) -> Result<PushedManifest> {
        if extra_tags.len() > self.limits.max_tags_per_push {
            return Err(Error::ManifestInvalid(format!(
                "{} tags given; a manifest push may name at most {} (max_tags_per_push)",
                extra_tags.len(),
                self.limits.max_tags_per_push
            )));
        }
        if body.len() > self.limits.max_manifest_bytes {
            return Err(Error::TooLarge(format!(
                "manifest is {} bytes; the limit is {}",
                body.len(),
                self.limits.max_manifest_bytes
            )));
        }
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = expected.algorithm().digest_of(&body);
                if &actual != expected {
                    return Err(Error::DigestInvalid(format!(
                        "manifest body hashes to {actual}, not {expected}"
                    )));
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(&body),
        };
        let parsed =
            manifest::parse(content_type, &body).map_err(|e| Error::ManifestInvalid(e.0))?;
        let content = String::from_utf8(body.to_vec())
            .map_err(|_| Error::ManifestInvalid("manifest is not UTF-8".into()))?;

        let config = self.read_config(repo, &parsed).await?;
        let image = imagestream::image::build(
            &digest.to_string(),
            format!("{}/{repo}@{digest}", self.hosts.internal),
            &parsed,
            config.as_deref(),
        );
        let internal_host = self.hosts.internal.clone();
        let mut tags: Vec<Tag> = extra_tags.to_vec();
        if let Reference::Tag(t) = reference {
            tags.push(t.clone());
        }
        let required_blobs: Vec<Digest> =
            parsed.required_blobs().map(|d| d.digest.clone()).collect();
        let children: Vec<Digest> = parsed.manifests.iter().map(|d| d.digest.clone()).collect();
        let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
        let referrer = ReferrerRecord {
            media_type: parsed.media_type.clone(),
            size: body.len() as u64,
            artifact_type: parsed.effective_artifact_type(),
            annotations: parsed.annotations.clone(),
        };
        let media_type = parsed.media_type.clone();
        let repo = repo.clone();
        let d = digest.clone();
        let kind = parsed.kind;
        let pushed = ManifestChanged {
            namespace: repo.namespace().as_str().to_string(),
            stream: repo.stream().as_str().to_string(),
            digest: digest.to_string(),
            media_type: parsed.media_type.clone(),
            size: body.len() as u64,
            tags: tags.iter().map(|t| t.as_str().to_string()).collect(),
        };
        self.write_changes(move |tx, changes| {
            // Checked inside the transaction so a concurrent blob delete cannot slip between
            // the check and the write.
            for blob in &required_blobs {
                if tx.get(&keys::repo_blob(&repo, blob))?.is_none() {
                    return abort(Error::ManifestBlobUnknown(blob.clone()));
                }
            }
            debug_assert!(kind == Kind::Index || children.is_empty());
            for child in &children {
                if tx.get(&keys::repo_manifest(&repo, child))?.is_none() {
                    return abort(Error::ManifestBlobUnknown(child.clone()));
                }
            }
            let now = now_secs();
            let first_store =
                content::store_manifest(tx, &d, &media_type, &content, subject.clone(), now)?;
            ensure_repository(tx, &keys::repository(&repo))?;
            content::link_manifest(tx, &repo, &d, now)?;
            if let Some(subject) = &subject {
                tx.put(&keys::referrer(&repo, subject, &d), &encode(&referrer))?;
            }
            // The ImageStreamMapping of spec §3.4, in the same transaction: the Image is
            // created once, the stream if missing, and each tag gets a history event.
            content_image(tx, &image, first_store, changes).map_err(stream_error)?;
            changes.push(Change::Notice(Notice::ManifestPushed(pushed.clone())));
            if tags.is_empty() {
                return Ok(());
            }
            let tags: Vec<&str> = tags.iter().map(Tag::as_str).collect();
            apply_mapping(
                tx,
                &Mapping {
                    namespace: repo.namespace().as_str(),
                    name: repo.stream().as_str(),
                    tags: &tags,
                    image: &image,
                    create_stream: true,
                    public_host: &internal_host,
                    // A push: every blob and child was checked linked above.
                    reach: &Reach::trusted(),
                    origin: imagestream::Origin::Push,
                },
                changes,
            )
            .map_err(stream_error)?;
            Ok(())
        })
        .await?;
        Ok(PushedManifest {
            digest,
            subject: parsed.subject.map(|s| s.digest),
        })
    }

    fn resolve(&self, repo: &RepositoryName, reference: &Reference) -> Result<Digest> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                self.read::<TagRecord>(&keys::tag(repo, t))?
                    .ok_or(Error::ManifestUnknown)?
                    .digest
            }
        };
        if self
            .meta
            .get(&keys::repo_manifest(repo, &digest))?
            .is_none()
        {
            return Err(Error::ManifestUnknown);
        }
        Ok(digest)
    }

    pub async fn get_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        let digest = self.resolve(repo, reference)?;
        let record: ManifestRecord = self
            .read(&keys::manifest(&digest))?
            .ok_or(Error::ManifestUnknown)?;
        Ok(StoredManifest {
            digest,
            media_type: record.media_type,
            content: Bytes::from(record.content),
        })
    }

    /// Deletes a tag (the ImageStreamTag: spec and status), or a manifest together with its
    /// entries in every tag's history of this stream (tags left empty disappear).
    pub async fn delete_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<()> {
        // Removing an image from every tag's history reads the whole stream, which happens
        // outside the transaction; the transaction retries if the stream changed meanwhile.
        for _ in 0..MAX_STREAM_RETRIES {
            let snapshot = match reference {
                Reference::Digest(_) => imagestream::store::read_stream(
                    self.meta.as_ref(),
                    repo.namespace().as_str(),
                    repo.stream().as_str(),
                )?,
                Reference::Tag(_) => None,
            };
            let (repo, reference) = (repo.clone(), reference.clone());
            let result = self
                .write_changes(move |tx, changes| {
                    let (ns, stream) = (repo.namespace().as_str(), repo.stream().as_str());
                    match &reference {
                        Reference::Tag(t) => {
                            if !delete_tag(tx, ns, stream, t.as_str(), changes)
                                .map_err(stream_error)?
                            {
                                return abort(Error::ManifestUnknown);
                            }
                        }
                        Reference::Digest(digest) => {
                            if !content::unlink_manifest(tx, &repo, digest, now_secs())? {
                                return abort(Error::ManifestUnknown);
                            }
                            let record = get_record::<ManifestRecord>(tx, &keys::manifest(digest))?;
                            changes.push(Change::Notice(Notice::ManifestDeleted(
                                ManifestChanged {
                                    namespace: ns.to_string(),
                                    stream: stream.to_string(),
                                    digest: digest.to_string(),
                                    media_type: record
                                        .as_ref()
                                        .map(|m| m.media_type.clone())
                                        .unwrap_or_default(),
                                    size: record.as_ref().map_or(0, |m| m.content.len() as u64),
                                    tags: Vec::new(),
                                },
                            )));
                            if let Some(snapshot) = &snapshot {
                                remove_image(tx, snapshot, &digest.to_string(), changes)
                                    .map_err(stream_error)?;
                            }
                        }
                    }
                    Ok(())
                })
                .await;
            match result {
                Err(Error::StreamChanged) => continue,
                other => return other,
            }
        }
        Err(Error::StreamChanged)
    }

    /// The config blob of an image manifest, when it is small enough to describe the image.
    async fn read_config(
        &self,
        repo: &RepositoryName,
        m: &manifest::Manifest,
    ) -> Result<Option<Vec<u8>>> {
        let Some(cfg) = m.config.as_ref().filter(|c| c.size <= MAX_CONFIG_BYTES) else {
            return Ok(None);
        };
        if self
            .meta
            .get(&keys::repo_blob(repo, &cfg.digest))?
            .is_none()
        {
            return Ok(None);
        }
        let Some(mut stream) = self.blobs.read(&cfg.digest, None).await? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(cfg.size as usize);
        while let Some(chunk) = futures_util::TryStreamExt::try_next(&mut stream)
            .await
            .map_err(berth_storage::Error::Io)?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_CONFIG_BYTES {
                return Ok(None);
            }
        }
        Ok(Some(bytes))
    }

    // ---- listings

    fn page(&self, prefix: &[u8], n: Option<usize>, last: Option<&str>) -> Result<Page> {
        let n = n.unwrap_or(self.limits.max_page).min(self.limits.max_page);
        if n == 0 {
            return Ok(Page {
                items: Vec::new(),
                more: false,
            });
        }
        let after = last.map(|l| [prefix, l.as_bytes()].concat());
        let mut entries = self.meta.scan(prefix, after.as_deref(), n + 1)?;
        let more = entries.len() > n;
        entries.truncate(n);
        let items = entries
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(keys::last_part(&k)).into_owned())
            .collect();
        Ok(Page { items, more })
    }

    /// Tags of a repository in byte order, after `last`, at most `n` (clamped).
    pub fn list_tags(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page> {
        if !self.repository_exists(repo)? {
            return Err(Error::NameUnknown(repo.to_string()));
        }
        self.page(&keys::tags_of(repo), n, last)
    }

    pub fn list_repositories(&self, n: Option<usize>, last: Option<&str>) -> Result<Page> {
        self.page(&keys::repositories(), n, last)
    }

    /// [`Registry::list_repositories`] restricted to the repositories `keep` accepts (the
    /// caller's view of the catalog); pages stay full.
    pub fn list_repositories_where(
        &self,
        n: Option<usize>,
        last: Option<&str>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Page> {
        let n = n.unwrap_or(self.limits.max_page).min(self.limits.max_page);
        let mut items = Vec::new();
        let mut cursor = last.map(str::to_string);
        loop {
            let page = self.page(&keys::repositories(), Some(n), cursor.as_deref())?;
            cursor = page.items.last().cloned();
            for item in page.items {
                if items.len() == n {
                    return Ok(Page { items, more: true });
                }
                if keep(&item) {
                    items.push(item);
                }
            }
            if !page.more {
                return Ok(Page { items, more: false });
            }
        }
    }

    /// Manifests in `repo` whose subject is `subject`, optionally of one artifact type.
    pub fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let prefix = keys::referrers_of(repo, subject);
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.meta.scan(&prefix, after.as_deref(), 1000)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, value) in page {
                let record: ReferrerRecord = decode(&value)?;
                if artifact_type.is_some_and(|t| record.artifact_type.as_deref() != Some(t)) {
                    continue;
                }
                let digest = std::str::from_utf8(keys::last_part(&key))
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(berth_storage::Error::Corrupt {
                        kind: ReferrerRecord::KIND,
                        reason: "key does not end in a digest".into(),
                    })?;
                out.push(Referrer { digest, record });
            }
        }
        Ok(out)
    }
}

/// Keeps a manifest's exact bytes (once: manifests are content-addressed). The importer's way
/// to hold the manifests of images whose blobs stay at their source. Returns whether this was
/// the first time.
pub fn store_manifest<E>(
    tx: &mut dyn Txn,
    digest: &Digest,
    media_type: &str,
    manifest: &str,
) -> Result<bool, TxError<E>> {
    content::store_manifest(tx, digest, media_type, manifest, None, now_secs())
}

/// Deletes an upload session's record and takes it off the counts it was on.
fn forget_upload(tx: &mut dyn Txn, key: &[u8]) -> Result<(), TxError<Error>> {
    let record = match tx.get(key)? {
        Some(bytes) => decode::<UploadRecord>(&bytes).ok(),
        None => return Ok(()),
    };
    tx.delete(key)?;
    let Some(UploadRecord {
        repository,
        owner: Some(owner),
        ..
    }) = record
    else {
        return Ok(());
    };
    let mut counters = vec![keys::open_uploads_of_owner(&owner)];
    if let Ok(repo) = RepositoryName::parse(&repository) {
        counters.push(keys::open_uploads_of_repository(&repo));
    }
    for counter in counters {
        let mut open: OpenUploads = get_record(tx, &counter)?.unwrap_or_default();
        open.count = open.count.saturating_sub(1);
        if open.count == 0 {
            tx.delete(&counter)?;
        } else {
            tx.put(&counter, &encode(&open))?;
        }
    }
    Ok(())
}

fn ensure_repository(tx: &mut dyn Txn, key: &[u8]) -> Result<(), TxError<Error>> {
    if tx.get(key)?.is_none() {
        tx.put(
            key,
            &encode(&RepositoryRecord {
                created: now_secs(),
                generation: 0,
            }),
        )?;
    }
    Ok(())
}

/// Image-stream failures inside a registry transaction: storage faults stay internal, anything
/// else means the push cannot be recorded as asked.
fn stream_error(e: TxError<imagestream::Error>) -> TxError<Error> {
    match e {
        TxError::Storage(e) | TxError::Abort(imagestream::Error::Storage(e)) => TxError::Storage(e),
        TxError::Abort(imagestream::Error::Retry) => TxError::Abort(Error::StreamChanged),
        TxError::Abort(other) => TxError::Abort(Error::ManifestInvalid(other.to_string())),
    }
}

fn upload_error(e: berth_storage::Error) -> Error {
    match e {
        berth_storage::Error::UploadUnknown => Error::UploadUnknown,
        berth_storage::Error::RangeMismatch { current } => Error::RangeInvalid { current },
        berth_storage::Error::DigestMismatch { computed } => Error::DigestInvalid(format!(
            "uploaded content hashes to {computed}, not to the digest given"
        )),
        other => Error::Storage(other),
    }
}
