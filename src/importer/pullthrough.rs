//! Pull-through (spec §5): a blob of an imported image that this registry does not hold yet
//! is fetched from the image's source on first pull, streamed to the client while it is
//! stored, and served locally afterwards.
//!
//! Each blob is fetched once at a time: the first request leads the fetch; requests arriving
//! meanwhile wait for it to be stored and are then served from local storage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_storage::record::decode;
use berth_storage::{ByteStream, Digest};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::fetch::connect;
use super::reference::ImageReference;
use super::remote::RemoteError;
use super::Importer;
use crate::imagestream::service::ImageStreams;
use crate::registry::records::{keys, PullThroughRecord};
use crate::registry::{Error, RepositoryName, Result};

/// Chunks buffered between the fetch and a slow client before the fetch waits.
const CLIENT_BUFFER: usize = 16;

/// Becomes `Some(stored)` when a fetch ends.
type Done = watch::Receiver<Option<bool>>;

#[derive(Clone)]
pub struct PullThrough {
    importer: Importer,
    /// Fetches in progress; the receiver learns whether the blob got stored.
    inflight: Arc<Mutex<HashMap<(RepositoryName, Digest), Done>>>,
}

/// The outcome of [`PullThrough::fetch`].
pub enum Fetch {
    /// This request leads the fetch: the bytes as they arrive, and their length if known.
    Streaming {
        length: Option<u64>,
        stream: ByteStream,
    },
    /// The blob is now stored locally (by this request or a concurrent one).
    Stored,
}

impl PullThrough {
    pub fn new(importer: Importer) -> Self {
        PullThrough {
            importer,
            inflight: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Fetches `digest` for `repo` from its source, if it is a pull-through blob (`None`
    /// otherwise). With `stream`, the leading request gets the bytes as they arrive; without,
    /// it returns once the blob is stored.
    pub async fn fetch(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        stream: bool,
    ) -> Result<Option<Fetch>> {
        let record_key = keys::pull_through(repo, digest);
        let Some(bytes) = self.importer.registry().metadata().get(&record_key)? else {
            return Ok(None);
        };
        let record: PullThroughRecord = decode(&bytes)?;
        let key = (repo.clone(), digest.clone());
        let done = {
            let mut inflight = self.inflight.lock().unwrap();
            match inflight.get(&key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(key.clone(), rx);
                    Ok(tx)
                }
            }
        };
        let done = match done {
            Ok(tx) => tx,
            Err(mut rx) => {
                // Another request is fetching it: wait, then serve what it stored.
                let _ = rx.wait_for(Option::is_some).await;
                return Ok(Some(Fetch::Stored));
            }
        };
        let started = self.start(repo, digest, &record, stream).await;
        let finish = {
            let inflight = self.inflight.clone();
            move |ok: bool| {
                inflight.lock().unwrap().remove(&key);
                let _ = done.send(Some(ok));
            }
        };
        match started {
            Err(e) => {
                finish(false);
                Err(e)
            }
            Ok((length, copy, client)) => {
                let task = tokio::spawn(async move {
                    let ok = copy.await;
                    finish(ok);
                    ok
                });
                match client {
                    Some(stream) => Ok(Some(Fetch::Streaming { length, stream })),
                    None => match task.await {
                        Ok(true) => Ok(Some(Fetch::Stored)),
                        _ => Err(Error::BlobUnknown),
                    },
                }
            }
        }
    }

    /// Opens the remote blob and an upload; returns the length, the copy (remote → store,
    /// teeing to the client), and the client's stream when asked for.
    async fn start(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        record: &PullThroughRecord,
        stream: bool,
    ) -> Result<(
        Option<u64>,
        impl std::future::Future<Output = bool> + Send + 'static,
        Option<ByteStream>,
    )> {
        let reference = ImageReference::parse(&record.source).map_err(|e| Error::Upstream {
            too_many_requests: false,
            message: e,
        })?;
        let ns = repo.namespace().as_str();
        let insecure = self.insecure(ns, repo.stream().as_str(), &reference);
        let remote = connect(
            self.importer.secrets(),
            self.importer.settings(),
            ns,
            &reference,
            insecure,
        )
        .map_err(|f| Error::Upstream {
            too_many_requests: false,
            message: f.message,
        })?;
        let (length, remote_stream) = remote.open_blob(digest).await.map_err(upstream)?;
        tracing::info!(%digest, source = %record.source, repository = %repo, "pulling blob through");
        let registry = self.importer.registry().clone();
        let id = registry
            .start_upload(repo, digest.algorithm(), None)
            .await?;
        let (client_tx, client_rx) = if stream {
            let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(CLIENT_BUFFER);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let tee: ByteStream = Box::pin(remote_stream.then(move |item| {
            let client = client_tx.clone();
            async move {
                let item = item.map_err(|e| std::io::Error::other(e.to_string()));
                if let Some(client) = client {
                    let copy = match &item {
                        Ok(b) => Ok(b.clone()),
                        Err(e) => Err(std::io::Error::other(e.to_string())),
                    };
                    // A client that went away does not stop the copy into the store.
                    let _ = client.send(copy).await;
                }
                item
            }
        }));
        let (repo, digest) = (repo.clone(), digest.clone());
        let copy = async move {
            let stored = match registry.append_upload(&repo, &id, None, tee).await {
                Ok(_) => registry
                    .finish_upload(&repo, &id, &digest)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(%digest, repository = %repo, error = %e, "pull-through failed");
                    let _ = registry.cancel_upload(&repo, &id).await;
                    false
                }
            }
        };
        let client = client_rx.map(|mut rx| -> ByteStream {
            Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
        });
        Ok((length, copy, client))
    }

    /// Whether the stream imports from the source's registry with `insecure` (the tag's
    /// policy decides how its registry is reached, for imports and pulls alike).
    fn insecure(&self, ns: &str, name: &str, source: &ImageReference) -> bool {
        let Ok(stream) = ImageStreams::new(self.importer.registry().clone()).get(ns, name) else {
            return false;
        };
        stream.spec.tags.iter().any(|t| {
            t.import_policy.insecure
                && t.from.as_ref().is_some_and(|f| {
                    f.kind == "DockerImage"
                        && ImageReference::parse(&f.name)
                            .is_ok_and(|r| r.registry == source.registry)
                })
        })
    }
}

fn upstream(e: RemoteError) -> Error {
    match e {
        RemoteError::NotFound(_) => Error::BlobUnknown,
        RemoteError::TooManyRequests(_) => Error::Upstream {
            too_many_requests: true,
            message: e.to_string(),
        },
        e => Error::Upstream {
            too_many_requests: false,
            message: e.to_string(),
        },
    }
}
