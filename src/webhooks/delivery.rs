//! The delivery worker of `berth serve`: one task per subscription sends its outbox in order,
//! one event at a time, and moves on only when the receiver acknowledges with a 2xx. It reads
//! a few events per scan (so a subscription costs at most [`READ_AHEAD`] events of memory
//! however far behind it is, and one while it is failing). Failures back off exponentially
//! with jitter up to a cap; a slow or dead receiver delays only its own subscription. A
//! supervisor starts and stops tasks as subscriptions come and go, and removes the outbox of a
//! deleted one.
//!
//! The worker runs on a runtime of its own, on threads of slightly lower priority: the
//! requests a push raises (two events for each of its subscriptions) then take CPU time the
//! request handlers leave, instead of competing with the pushes that queue them. Events are
//! durable before any delivery starts, so delivering later loses nothing.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_storage::MetadataStore;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use super::outbox::{Outbox, Queued, PERSIST_INTERVAL};
use super::subscriptions::{self, Subscription, Webhooks};
use super::types::DeliveryError;
use super::{format, signing, target};
use crate::imagestream::types::now_rfc3339;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Per request, connecting included.
    pub timeout: Duration,
    /// The first retry's delay; each failure doubles it.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Events older than this are dropped undelivered (and counted).
    pub max_age: Duration,
    /// Requests in flight at once, across subscriptions.
    pub max_in_flight: usize,
    pub allow_private: bool,
    /// Extra PEM roots trusted besides the system's.
    pub ca_bundle: Option<PathBuf>,
    /// Named in Distribution envelopes.
    pub public_host: String,
}

/// How long an idle task waits before looking at its outbox again anyway.
const IDLE_RECHECK: Duration = Duration::from_secs(30);
/// Events a task reads with one scan.
const READ_AHEAD: usize = 16;
/// The niceness of the worker's threads: about half a request handler's share of a busy CPU,
/// and all of an idle one. Not more: on a host saturated by other work (10 at 12 runnable
/// threads on 2 cores) deliveries starved, seconds late for a healthy receiver.
const NICENESS: i32 = 3;

struct Shared {
    meta: Arc<dyn MetadataStore>,
    outbox: Arc<Outbox>,
    client: reqwest::Client,
    settings: Settings,
    slots: Semaphore,
    commits: watch::Receiver<u64>,
    subs: watch::Receiver<u64>,
}

fn client(s: &Settings) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(s.timeout)
        .connect_timeout(s.timeout)
        // A proxy would connect on our behalf, past the address check.
        .no_proxy()
        .user_agent(concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")));
    if !s.allow_private {
        b = b.dns_resolver(Arc::new(target::PublicOnly));
    }
    if let Some(path) = &s.ca_bundle {
        let pem = std::fs::read(path)
            .map_err(|e| format!("webhook_ca_bundle {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("webhook_ca_bundle {}: {e}", path.display()))?;
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| e.to_string())
}

/// The running worker.
pub struct Worker {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Stops every delivery and waits until none runs any more (so a cursor persisted after
    /// this is final). Blocks.
    pub fn stop(mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A dropped sender stops the worker; its thread finishes on its own.
        drop(self.stop.take());
    }
}

/// Lowers the calling thread's priority (Linux: niceness is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICENESS);
    }
}

/// Starts the worker on its own thread; it runs until [`Worker::stop`] (or a drop).
pub fn spawn(
    meta: Arc<dyn MetadataStore>,
    outbox: Arc<Outbox>,
    webhooks: &Webhooks,
    settings: Settings,
) -> Result<Worker, String> {
    let shared = Arc::new(Shared {
        commits: outbox.commits(),
        outbox,
        client: client(&settings)?,
        slots: Semaphore::new(settings.max_in_flight.max(1)),
        meta,
        settings,
        subs: webhooks.changes(),
    });
    // The blocking pool's threads (store reads, name resolution) start with the same
    // priority.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("berth-webhooks-io")
        .on_thread_start(lower_priority)
        .build()
        .map_err(|e| format!("webhook worker runtime: {e}"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("berth-webhooks".into())
        .spawn(move || {
            lower_priority();
            runtime.block_on(async {
                tokio::select! {
                    _ = supervise(shared) => {}
                    _ = stopped => {}
                }
            });
            // Store reads in flight end quickly; a stuck name lookup is not waited for.
            runtime.shutdown_timeout(Duration::from_secs(5));
        })
        .map_err(|e| format!("webhook worker thread: {e}"))?;
    Ok(Worker {
        stop: Some(stop),
        thread: Some(thread),
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> berth_storage::Result<T> + Send + 'static,
) -> berth_storage::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| berth_storage::Error::Backend(e.to_string()))?
}

/// The per-subscription tasks, aborted with the supervisor (a dropped `JoinHandle` would
/// leave its task running, holding the store open after the server stopped).
#[derive(Default)]
struct Tasks(HashMap<String, JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

async fn supervise(shared: Arc<Shared>) {
    let mut owned = Tasks::default();
    let tasks = &mut owned.0;
    let mut changed = shared.subs.clone();
    loop {
        changed.borrow_and_update();
        let meta = shared.meta.clone();
        let outbox = shared.outbox.clone();
        let found = blocking(move || {
            let subs = subscriptions::load_all(meta.as_ref())?;
            let uids = outbox.uids()?;
            Ok((subs, uids))
        })
        .await;
        match found {
            Ok((subs, uids)) => {
                tasks.retain(|uid, task| {
                    let keep = subs.iter().any(|s| &s.uid == uid) && !task.is_finished();
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for sub in &subs {
                    if !tasks.contains_key(&sub.uid) {
                        let task = tokio::spawn(deliver(shared.clone(), sub.clone()));
                        tasks.insert(sub.uid.clone(), task);
                    }
                }
                // Outboxes of deleted subscriptions.
                for uid in uids
                    .into_iter()
                    .filter(|u| !subs.iter().any(|s| &s.uid == u))
                {
                    let outbox = shared.outbox.clone();
                    if let Err(e) = blocking(move || outbox.purge(&uid)).await {
                        tracing::warn!(error = %e, "removing a deleted webhook's outbox failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "webhook worker cannot list subscriptions"),
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(IDLE_RECHECK) => {}
        }
    }
}

async fn deliver(shared: Arc<Shared>, first: Subscription) {
    let (ns, name, uid) = (
        first.namespace.clone(),
        first.name.clone(),
        first.uid.clone(),
    );
    let mut sub = first;
    let mut commits = shared.commits.clone();
    let mut subs = shared.subs.clone();
    let webhook = || format!("{ns}/{name}");
    // The subscription is read again only when some subscription changed (and once at the
    // start: it may have changed since the supervisor read it).
    let mut reload = true;
    // Read ahead, oldest first; emptied when the subscription may have changed.
    let mut ahead: VecDeque<(u64, Queued)> = VecDeque::new();
    // Whether the last scan read the outbox to its end: then, until another commit, a scan
    // would find nothing (a push wakes every subscription; this spares each its empty scan).
    let mut drained = false;
    loop {
        reload |= subs.has_changed().unwrap_or(true);
        if reload {
            ahead.clear();
        }
        let first = match ahead.pop_front() {
            Some(first) => first,
            None if drained && !reload && !commits.has_changed().unwrap_or(true) => {
                idle(&shared, &uid, &mut commits, &mut subs, &mut reload).await;
                drained = false;
                continue;
            }
            None => {
                commits.borrow_and_update();
                if reload {
                    subs.borrow_and_update();
                }
                let (meta, outbox) = (shared.meta.clone(), shared.outbox.clone());
                let (n, m, u) = (ns.clone(), name.clone(), uid.clone());
                let next = blocking(move || {
                    let sub = if reload {
                        match subscriptions::load(meta.as_ref(), &n, &m, &u) {
                            Some(s) => Some(s),
                            None => return Ok(None),
                        }
                    } else {
                        None
                    };
                    Ok(Some((sub, outbox.scan_next(&u, READ_AHEAD)?)))
                })
                .await;
                let event = match next {
                    Ok(Some((fresh, (events, at_end)))) => {
                        if let Some(fresh) = fresh {
                            sub = fresh;
                            reload = false;
                        }
                        drained = at_end;
                        ahead.extend(events);
                        ahead.pop_front()
                    }
                    // Deleted (or replaced under the same name): the supervisor cleans up.
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(webhook = %webhook(), error = %e, "reading the webhook outbox failed");
                        tokio::time::sleep(
                            shared.settings.backoff_base.max(Duration::from_millis(100)),
                        )
                        .await;
                        continue;
                    }
                };
                // Nothing queued: the scan reached the end, so the next turn idles.
                let Some(first) = event else { continue };
                first
            }
        };
        if !handle(
            &shared,
            &sub,
            &uid,
            first,
            &mut ahead,
            &mut subs,
            &mut reload,
        )
        .await
        {
            // The failed event is still the next one.
            drained = false;
        }
    }
}

/// Waits for a commit or a changed subscription. Acknowledgements still only in memory are
/// persisted after a short quiet spell (so a burst of events costs one write, not one per
/// event).
async fn idle(
    shared: &Shared,
    uid: &str,
    commits: &mut watch::Receiver<u64>,
    subs: &mut watch::Receiver<u64>,
    reload: &mut bool,
) {
    let quiet = if shared.outbox.unpersisted(uid) {
        PERSIST_INTERVAL
    } else {
        IDLE_RECHECK
    };
    tokio::select! {
        _ = commits.changed() => {}
        _ = subs.changed() => *reload = true,
        _ = tokio::time::sleep(quiet) => persist(shared, uid).await,
    }
}

/// Delivers (or expires) one event; after a failure, backs off and forgets what was read
/// ahead, so a failing subscription holds one event in memory. False after a failure.
async fn handle(
    shared: &Shared,
    sub: &Subscription,
    uid: &str,
    (seq, event): (u64, Queued),
    ahead: &mut VecDeque<(u64, Queued)>,
    subs: &mut watch::Receiver<u64>,
    reload: &mut bool,
) -> bool {
    let age = now_secs().saturating_sub(event.queued_at);
    if age > shared.settings.max_age.as_secs() {
        if shared.outbox.expired(uid, seq) {
            persist(shared, uid).await;
        }
        return true;
    }
    match send(shared, sub, &event).await {
        Ok(()) => {
            if shared.outbox.delivered(uid, seq) {
                persist(shared, uid).await;
            }
            true
        }
        Err(error) => {
            ahead.clear();
            tracing::debug!(webhook = %format!("{}/{}", sub.namespace, sub.name),
                status = ?error.status_code, error = %error.message, "webhook delivery failed");
            let (outbox, u) = (shared.outbox.clone(), uid.to_string());
            let failures = blocking(move || outbox.failed(&u, error))
                .await
                .unwrap_or(1);
            let s = &shared.settings;
            let wait = crate::backoff::backoff(s.backoff_base, s.backoff_cap, failures);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // A changed subscription (a fixed URL) is tried again at once.
                _ = subs.changed() => *reload = true,
            }
            false
        }
    }
}

/// Persists `uid`'s cursor; a failure only means more redeliveries after a crash.
async fn persist(shared: &Shared, uid: &str) {
    let (outbox, u) = (shared.outbox.clone(), uid.to_string());
    if let Err(e) = blocking(move || outbox.persist(&u)).await {
        tracing::warn!(error = %e, "persisting a webhook delivery cursor failed");
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn error(status_code: Option<u16>, message: String) -> DeliveryError {
    DeliveryError {
        time: now_rfc3339(),
        status_code,
        message,
    }
}

/// One attempt. Formats that cannot express the event count it delivered unsent.
async fn send(shared: &Shared, sub: &Subscription, event: &Queued) -> Result<(), DeliveryError> {
    let s = &shared.settings;
    let url = target::check_url(&sub.spec.url, s.allow_private).map_err(|e| error(None, e))?;
    let Some((content_type, body)) = format::render(sub.spec.format, event, &s.public_host) else {
        return Ok(());
    };
    let timestamp = now_secs();
    let mut req = shared
        .client
        .post(url)
        .header(http::header::CONTENT_TYPE, content_type)
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", timestamp.to_string());
    let keys = sub.signing_keys(timestamp);
    if !keys.is_empty() {
        let signature = signing::signature_header(&keys, &event.id, timestamp, &body);
        req = req.header("webhook-signature", signature);
    }
    let _slot = shared.slots.acquire().await;
    match req.body(body).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) if r.status().is_redirection() => Err(error(
            Some(r.status().as_u16()),
            "the receiver redirected; redirects are not followed".into(),
        )),
        Ok(r) => Err(error(
            Some(r.status().as_u16()),
            format!("the receiver answered {}", r.status()),
        )),
        Err(e) => Err(error(None, chain(&e))),
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::backoff;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(3600));
        for n in 1..40 {
            let d = backoff(base, cap, n);
            let full = base * 2u32.pow((n - 1).min(31) as u32);
            let full = full.min(cap);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
        }
        assert!(backoff(base, cap, 100) <= cap);
    }
}
