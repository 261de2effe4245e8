//! Exactly-once background work across replicas: the controllers (garbage collection,
//! retention, scheduled and background imports, webhook delivery) run only on the replica that
//! holds the `controllers` lease ([`berth_storage::election`]), and start on another within
//! about one lease time of the holder dying. On a store only this process writes (sled) there
//! is nothing to elect: they simply run.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_storage::election::Election;
use berth_storage::MetadataStore;
use tokio::task::JoinHandle;

/// The background tasks of one replica while it leads, and the loop that decides.
pub struct Supervisor {
    task: Option<JoinHandle<()>>,
    running: Arc<Mutex<Vec<JoinHandle<()>>>>,
    election: Option<Candidate>,
}

/// The store the lease lives in, and this replica's side of the election.
type Candidate = (Arc<dyn MetadataStore>, Arc<Mutex<Election>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts `start`'s tasks now (embedded store) or whenever this replica holds the lease.
/// `ttl` should be well over three times the store's call timeout, so a holder stuck in a call
/// still notices it lost the lease before another replica takes it.
pub fn supervise(
    meta: Arc<dyn MetadataStore>,
    ttl: Duration,
    start: impl Fn() -> Vec<JoinHandle<()>> + Send + 'static,
) -> Supervisor {
    let running = Arc::new(Mutex::new(Vec::new()));
    if !meta.shared() {
        *lock(&running) = start();
        return Supervisor {
            task: None,
            running,
            election: None,
        };
    }
    let me = uuid::Uuid::new_v4().simple().to_string();
    let election = Arc::new(Mutex::new(Election::new("controllers", &me, ttl)));
    let interval = lock(&election).interval();
    let (m, e, r) = (meta.clone(), election.clone(), running.clone());
    let task = tokio::spawn(async move {
        loop {
            let (meta, election) = (m.clone(), e.clone());
            let leading = tokio::task::spawn_blocking(move || {
                let mut election = lock(&election);
                election.round(meta.as_ref()).unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "renewing the controller lease failed");
                    election.leading()
                })
            })
            .await
            .unwrap_or(false);
            {
                let mut running = lock(&r);
                if leading && running.is_empty() {
                    tracing::info!(replica = %me, "leading: this replica runs the controllers");
                    *running = start();
                } else if !leading && !running.is_empty() {
                    tracing::warn!(replica = %me, "not leading: controllers stopped");
                    for t in running.drain(..) {
                        t.abort();
                    }
                }
            }
            tokio::time::sleep(interval).await;
        }
    });
    Supervisor {
        task: Some(task),
        running,
        election: Some((meta, election)),
    }
}

impl Supervisor {
    /// Stops the controllers and hands the lease over (at shutdown).
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        for t in lock(&self.running).drain(..) {
            t.abort();
        }
        if let Some((meta, election)) = self.election.take() {
            let resigned =
                tokio::task::spawn_blocking(move || lock(&election).resign(meta.as_ref())).await;
            if let Ok(Err(e)) = resigned {
                tracing::warn!(error = %e, "giving up the controller lease failed");
            }
        }
    }
}
