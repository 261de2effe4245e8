//! The etcd-backed [`MetadataStore`]: several berth processes share one etcd cluster.
//!
//! # Transactions
//! Optimistic: a transaction's reads all come from one snapshot (the etcd revision of its first
//! read), so the body never sees a state that did not exist; writes are buffered. At commit one
//! etcd `Txn` compares every key read (its `mod_revision`, or `create_revision == 0` for a key
//! that was absent) and applies the writes only if none changed since the snapshot. When one
//! did, the body runs again from scratch after a jittered backoff, a bounded number of times,
//! then [`Error::Conflict`]. A transaction that wrote nothing commits nothing: it is serialized
//! at its snapshot. etcd refuses transactions over 128 compares or operations, or requests over
//! 1.5 MiB (its defaults); such a transaction fails here, before it is sent, with a message that
//! says which limit.
//!
//! # Revisions
//! [`Txn::revision`] must be known while the body runs, but etcd's own revision of a commit is
//! only known after it, and other writers (leases, change-log trimming) move it too, so it is
//! neither predictable nor gap-free. Like sled, the store keeps its revision under
//! [`REVISION_KEY`]: a transaction that asks reads it (so it joins the read set and the commit
//! compares it) and writes it plus one. Two transactions taking revisions therefore conflict,
//! and exactly one of them commits each number.
//!
//! # Sync over async
//! The trait is synchronous and callers run it on tokio threads as well as on blocking ones,
//! while etcd-client is async. The store owns a small runtime of its own that runs every etcd
//! call; the caller waits for the answer (inside `block_in_place` on a multi-thread runtime's
//! worker, so the worker's other tasks move elsewhere). The caller's runtime never has to make
//! progress for the call to finish, so it cannot deadlock, and every call is bounded by
//! [`EtcdConfig::timeout`]: an unreachable cluster is [`Error::Unavailable`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions,
    TxnOp,
};

use crate::error::{Error, Result};
use crate::metadata::{MetadataStore, TxBody, TxBodyError, Txn};

/// etcd's default `--max-txn-ops`: compares and operations are each limited to this many.
pub const MAX_TXN_OPS: usize = 128;
/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// Room left under [`MAX_REQUEST_BYTES`] for what the estimate does not count exactly.
const REQUEST_MARGIN: usize = 16 * 1024;
/// Runs of a transaction body before `Error::Conflict` is reported.
const MAX_ATTEMPTS: u32 = 40;
/// Backoff between runs: a random pause up to `min(BACKOFF_CAP, BACKOFF_BASE * 2^attempt)`.
const BACKOFF_BASE: Duration = Duration::from_millis(2);
const BACKOFF_CAP: Duration = Duration::from_millis(250);
/// Entries per range request of a scan (values are small records; a page stays well under the
/// client's message limit).
const SCAN_PAGE: usize = 256;
/// The key prefix when the URL names none.
pub const DEFAULT_PREFIX: &str = "berth";

/// How to reach the cluster.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `host:port` or `http(s)://host:port`, one per member.
    pub endpoints: Vec<String>,
    /// Every key berth stores goes under `<prefix>/`, so clusters can share one etcd.
    pub prefix: String,
    /// CA bundle that signs the members' certificates (turns on TLS).
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for clusters that require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// etcd authentication.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Bound on every call (a commit, one page of a scan).
    pub timeout: Duration,
}

impl EtcdConfig {
    /// Parses `etcd://h1:2379,h2:2379[/prefix]` (endpoints may carry `http://` or `https://`
    /// themselves when given through [`EtcdConfig::endpoints`] directly).
    pub fn parse_url(url: &str) -> std::result::Result<Self, String> {
        let rest = url.strip_prefix("etcd://").ok_or_else(|| {
            format!("{url:?}: an etcd store is etcd://host:port[,host:port...][/prefix]")
        })?;
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, p.trim_matches('/')),
            None => (rest, DEFAULT_PREFIX),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(format!("{url:?}: no etcd endpoint"));
        }
        for e in &endpoints {
            let port = e.rsplit_once(':').map(|(_, p)| p);
            if !matches!(port, Some(p) if p.parse::<u16>().is_ok()) {
                return Err(format!("{url:?}: endpoint {e:?} is not host:port"));
            }
        }
        Ok(Self {
            endpoints,
            prefix: prefix.to_string(),
            ca: None,
            cert: None,
            key: None,
            user: None,
            password: None,
            timeout: Duration::from_secs(5),
        })
    }

    fn key_prefix(&self) -> Vec<u8> {
        if self.prefix.is_empty() {
            Vec::new()
        } else {
            format!("{}/", self.prefix).into_bytes()
        }
    }

    fn connect_options(&self) -> Result<ConnectOptions> {
        let mut o = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_timeout(self.timeout)
            .with_keep_alive(Duration::from_secs(5), self.timeout)
            .with_keep_alive_while_idle(true)
            // A member cut off from the quorum refuses rather than serving stale reads.
            .with_require_leader(true);
        if self.ca.is_some() || self.cert.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca {
                tls = tls.ca_certificate(Certificate::from_pem(read_file(ca)?));
            }
            match (&self.cert, &self.key) {
                (Some(c), Some(k)) => {
                    tls = tls.identity(Identity::from_pem(read_file(c)?, read_file(k)?));
                }
                (None, None) => {}
                _ => {
                    return Err(Error::Backend(
                        "etcd client certificate and key go together".into(),
                    ))
                }
            }
            o = o.with_tls(tls);
        }
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => o = o.with_user(u.clone(), p.clone()),
            (None, None) => {}
            _ => return Err(Error::Backend("etcd user and password go together".into())),
        }
        Ok(o)
    }
}

fn read_file(p: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| Error::Backend(format!("reading {}: {e}", p.display())))
}

pub struct EtcdMetadata {
    /// One client per member: tonic's balanced channel keeps handing requests to a member
    /// that died, so failover is done here (see [`EtcdMetadata::call`]).
    clients: Arc<Vec<Client>>,
    /// The member that answered last; calls start there.
    preferred: Arc<AtomicUsize>,
    prefix: Vec<u8>,
    timeout: Duration,
    /// Where etcd calls run; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    /// Values this process read or wrote, with their `mod_revision`.
    cache: std::sync::Mutex<ReadCache>,
}

/// Values a transaction may use without a round trip to etcd: the commit compares every read
/// key's `mod_revision` anyway, so a stale one fails the commit, and the transaction runs again
/// reading etcd itself. A push reads a dozen keys that the pushes before it read or wrote, so
/// most of its reads cost nothing. Bounded by entries; the oldest go first.
#[derive(Default)]
struct ReadCache {
    entries: HashMap<Vec<u8>, Cached>,
    order: std::collections::VecDeque<Vec<u8>>,
    /// Bytes of the keys and values held.
    bytes: usize,
}

/// A key's value (`None`: absent) and `mod_revision` (0 when absent), and the revision it is
/// known at.
#[derive(Clone)]
struct Cached {
    value: Option<Vec<u8>>,
    mod_revision: i64,
    known_at: i64,
}

/// Keys the read cache holds at most, and their bytes with their values.
const CACHED_KEYS: usize = 16_384;
const CACHED_BYTES: usize = 8 << 20;
/// Values larger than this are not cached (big records are read rarely).
const CACHED_VALUE_BYTES: usize = 64 * 1024;

impl ReadCache {
    fn get(&self, key: &[u8]) -> Option<&Cached> {
        self.entries.get(key)
    }

    /// Records what was seen of `key` at revision `known_at`, unless something newer is known.
    /// A key keeps its place in the eviction order when its value is refreshed.
    fn learn(&mut self, key: &[u8], c: Cached) {
        let size = |k: &[u8], c: &Cached| k.len() + c.value.as_ref().map_or(0, Vec::len) + 64;
        if self
            .entries
            .get(key)
            .is_some_and(|old| old.known_at > c.known_at)
        {
            return;
        }
        let old = self.entries.remove(key);
        if let Some(old) = &old {
            self.bytes -= size(key, old);
        }
        if c.value
            .as_ref()
            .is_some_and(|v| v.len() > CACHED_VALUE_BYTES)
        {
            return;
        }
        self.bytes += size(key, &c);
        self.entries.insert(key.to_vec(), c);
        if old.is_none() {
            self.order.push_back(key.to_vec());
        }
        while self.entries.len() > CACHED_KEYS || self.bytes > CACHED_BYTES {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.entries.remove(&k) {
                self.bytes -= size(&k, &old);
            }
        }
        // A key dropped for a value grown too big leaves its place behind.
        if self.order.len() > 2 * CACHED_KEYS {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }
}

impl Drop for EtcdMetadata {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio forbids inside another runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl EtcdMetadata {
    /// Connects (lazily: an unreachable cluster shows at the first call, as `Unavailable`,
    /// except that logging in with a user needs the cluster now).
    pub fn connect(config: &EtcdConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("berth-etcd")
            .enable_all()
            .build()?;
        let options = config.connect_options()?;
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else if config.ca.is_some() || config.cert.is_some() {
                    format!("https://{e}")
                } else {
                    format!("http://{e}")
                }
            })
            .collect::<Vec<_>>();
        let timeout = config.timeout;
        let clients = wait(&runtime, async move {
            let mut clients = Vec::new();
            let mut last = None;
            for e in endpoints {
                let connect = Client::connect([e.clone()], Some(options.clone()));
                match tokio::time::timeout(timeout, connect).await {
                    Ok(Ok(c)) => clients.push(c),
                    // Only a login needs the member now; one that is down is left out.
                    Ok(Err(err)) => {
                        tracing::warn!(endpoint = %e, error = %err, "etcd member left out");
                        last = Some(from_etcd(err));
                    }
                    Err(_) => {
                        last = Some(Error::Unavailable(format!(
                            "etcd: connecting to {e} timed out"
                        )))
                    }
                }
            }
            match (clients.is_empty(), last) {
                (true, Some(e)) => Err(e),
                _ => Ok(clients),
            }
        })?;
        Ok(Self {
            clients: Arc::new(clients),
            preferred: Arc::new(AtomicUsize::new(0)),
            prefix: config.key_prefix(),
            timeout,
            runtime: Some(runtime),
            cache: Default::default(),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ReadCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with a member's KV client on the store's runtime and waits for it, all of it
    /// bounded by the timeout. A member that cannot be reached (or has no leader) is skipped
    /// for the next one; a `write` moves on only when the request surely did not run (the
    /// connection failed, or etcd refused it for want of a leader), never after a timeout.
    fn call<T, F, Fut>(&self, what: &'static str, write: bool, f: F) -> Result<T>
    where
        F: Fn(etcd_client::KvClient) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let timeout = self.timeout;
        let (clients, preferred) = (self.clients.clone(), self.preferred.clone());
        let rt = self.runtime.as_ref().expect("runtime lives until drop");
        wait(rt, async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let first = preferred.load(Ordering::Relaxed);
            let mut last = None;
            // Twice round the members: one may come back while an election settles.
            for attempt in 0..clients.len() * 2 {
                let n = (first + attempt) % clients.len();
                let kv = clients[n].kv_client();
                match tokio::time::timeout_at(deadline, f(kv)).await {
                    Ok(Ok(v)) => {
                        preferred.store(n, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Ok(Err(e)) if skippable(&e, write) => {
                        last = Some(from_etcd(e));
                        if attempt + 1 >= clients.len() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    Ok(Err(e)) => return Err(from_etcd(e)),
                    Err(_) => break,
                }
            }
            Err(last.unwrap_or_else(|| {
                Error::Unavailable(format!("etcd: {what} timed out after {timeout:?}"))
            }))
        })
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        [&self.prefix[..], key].concat()
    }

    /// Value and `mod_revision` of `key` (when present), at `revision` when given (else the
    /// newest), with the revision the answer is from.
    fn get_at(&self, key: &[u8], revision: Option<i64>) -> Result<(Option<Versioned>, i64)> {
        let full = self.full_key(key);
        let options = revision.map(|r| GetOptions::new().with_revision(r));
        let mut resp = self.call("get", false, move |mut kv| {
            let (full, options) = (full.clone(), options.clone());
            async move { kv.get(full, options).await }
        })?;
        let at = resp.header().map(|h| h.revision()).unwrap_or(0);
        let found = resp.take_kvs().into_iter().next().map(|kv| {
            let m = kv.mod_revision();
            (kv.into_key_value().1, m)
        });
        Ok((found, at))
    }

    /// Commits `txn` if nothing it read has changed: the commit's revision, or `None`.
    fn commit(&self, txn: &EtcdTxn<'_>) -> Result<Option<i64>> {
        let compares: Vec<Compare> = txn
            .reads
            .iter()
            .map(|(k, (m, _))| {
                let k = self.full_key(k);
                if *m == 0 {
                    Compare::create_revision(k, CompareOp::Equal, 0)
                } else {
                    Compare::mod_revision(k, CompareOp::Equal, *m)
                }
            })
            .collect();
        let mut bytes = 0;
        let ops: Vec<TxnOp> = txn
            .writes
            .iter()
            .map(|(k, v)| {
                let k = self.full_key(k);
                bytes += k.len() + v.as_ref().map_or(0, Vec::len) + 16;
                match v {
                    Some(v) => TxnOp::put(k, v.clone(), None),
                    None => TxnOp::delete(k, None),
                }
            })
            .collect();
        bytes += txn
            .reads
            .keys()
            .map(|k| self.prefix.len() + k.len() + 24)
            .sum::<usize>();
        if compares.len() > MAX_TXN_OPS || ops.len() > MAX_TXN_OPS {
            return Err(Error::TooLarge(format!(
                "metadata transaction too large for etcd: {} keys read and {} written, etcd \
                 allows {MAX_TXN_OPS} of each (its --max-txn-ops)",
                compares.len(),
                ops.len()
            )));
        }
        if bytes > MAX_REQUEST_BYTES - REQUEST_MARGIN {
            return Err(Error::TooLarge(format!(
                "metadata transaction too large for etcd: about {bytes} bytes, etcd accepts \
                 requests up to {MAX_REQUEST_BYTES} (its --max-request-bytes)"
            )));
        }
        let request = etcd_client::Txn::new().when(compares).and_then(ops);
        let resp = self.call("commit", true, move |mut kv| {
            let request = request.clone();
            async move { kv.txn(request).await }
        })?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok(resp.succeeded().then_some(revision))
    }
}

/// A value and its `mod_revision`.
type Versioned = (Vec<u8>, i64);

/// Waits on `rt` for `f`, from whatever thread the caller is on.
fn wait<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    f: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    let recv = move || rx.recv();
    let answer = match tokio::runtime::Handle::try_current() {
        // A worker of a multi-thread runtime hands its other tasks to its peers while it waits.
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(recv)
        }
        _ => recv(),
    };
    answer.unwrap_or_else(|_| {
        Err(Error::Unavailable(
            "etcd: the client runtime stopped".into(),
        ))
    })
}

/// Whether another member may be tried after `e`: for a write, only when the request surely
/// did not run.
fn skippable(e: &etcd_client::Error, write: bool) -> bool {
    use etcd_client::Error as E;
    use tonic::Code;
    match e {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(s) => {
            let refused = s.message().contains("no leader")
                || s.message().contains("connect")
                || s.message().contains("Connection refused");
            match s.code() {
                Code::Unavailable if refused => true,
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => !write,
                _ => false,
            }
        }
        _ => false,
    }
}

fn from_etcd(e: etcd_client::Error) -> Error {
    use etcd_client::Error as E;
    use tonic::Code;
    match e {
        E::GRpcStatus(s) => match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                Error::Unavailable(format!("etcd: {}", s.message()))
            }
            _ => Error::Backend(format!("etcd: {}", s.message())),
        },
        E::TransportError(e) => Error::Unavailable(format!("etcd: {e}")),
        E::IoError(e) => Error::Unavailable(format!("etcd: {e}")),
        other => Error::Backend(format!("etcd: {other}")),
    }
}

/// Whether `e` says the snapshot revision was compacted away (the body runs again, newer).
fn is_compacted(e: &Error) -> bool {
    matches!(e, Error::Backend(m) if m.contains("compacted"))
}

enum Fault {
    Conflict,
    Storage(Error),
}

struct EtcdTxn<'a> {
    store: &'a EtcdMetadata,
    /// The etcd revision every read is made at (set by the first read).
    snapshot: Option<i64>,
    /// Keys read from etcd: their `mod_revision` at the snapshot (0 = absent) and value.
    reads: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)>,
    /// Buffered writes; `None` deletes.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    revision: Option<u64>,
    /// The first failed read: the body may swallow the error it was given, so it is kept here.
    fault: Option<Fault>,
    /// Whether reads may come from the process's cache (not after a failed attempt).
    use_cache: bool,
    /// Whether any read came from the cache: then what the body decided may rest on a stale
    /// value, and only a successful compare confirms it.
    from_cache: bool,
}

impl Txn for EtcdTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        if let Some((_, v)) = self.reads.get(key) {
            return Ok(v.clone());
        }
        if self.use_cache {
            if let Some(c) = self.store.cache().get(key).cloned() {
                self.from_cache = true;
                self.reads
                    .insert(key.to_vec(), (c.mod_revision, c.value.clone()));
                return Ok(c.value);
            }
        }
        match self.store.get_at(key, self.snapshot) {
            Ok((found, at)) => {
                // The answer's header gives the newest revision, not the snapshot read at.
                let snapshot = *self.snapshot.get_or_insert(at);
                let (value, m) = match found {
                    Some((v, m)) => (Some(v), m),
                    None => (None, 0),
                };
                self.store.cache().learn(
                    key,
                    Cached {
                        value: value.clone(),
                        mod_revision: m,
                        known_at: snapshot,
                    },
                );
                self.reads.insert(key.to_vec(), (m, value.clone()));
                Ok(value)
            }
            Err(e) if is_compacted(&e) => {
                self.fault.get_or_insert(Fault::Conflict);
                Err(Error::Conflict)
            }
            Err(e) => {
                let copy = match &e {
                    Error::Unavailable(m) => Error::Unavailable(m.clone()),
                    other => Error::Backend(other.to_string()),
                };
                self.fault.get_or_insert(Fault::Storage(copy));
                Err(e)
            }
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }

    fn revision(&mut self) -> Result<u64> {
        if let Some(r) = self.revision {
            return Ok(r);
        }
        let r = crate::metadata::take_revision(self)?;
        self.revision = Some(r);
        Ok(r)
    }
}

impl MetadataStore for EtcdMetadata {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_at(key, None)?.0.map(|(v, _)| v))
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let full_prefix = self.full_key(prefix);
        let end = range_end(&full_prefix);
        let mut start = match after {
            Some(after) if after >= prefix => {
                let mut s = self.full_key(after);
                s.push(0);
                s
            }
            _ => full_prefix.clone(),
        };
        if !end.is_empty() && start >= end {
            return Ok(out);
        }
        // Every page is read at the first page's revision: one consistent listing.
        let mut revision: Option<i64> = None;
        loop {
            let page = (limit - out.len()).min(SCAN_PAGE);
            let mut options = GetOptions::new()
                .with_range(if end.is_empty() { vec![0] } else { end.clone() })
                .with_limit(page as i64);
            if let Some(r) = revision {
                options = options.with_revision(r);
            }
            let from = start.clone();
            let mut resp = self.call("scan", false, move |mut kv| {
                let (from, options) = (from.clone(), options.clone());
                async move { kv.get(from, Some(options)).await }
            })?;
            revision.get_or_insert(resp.header().map(|h| h.revision()).unwrap_or(0));
            let more = resp.more();
            let kvs = resp.take_kvs();
            let Some(last) = kvs.last() else {
                return Ok(out);
            };
            start = last.key().to_vec();
            start.push(0);
            for kv in kvs {
                let (k, v) = kv.into_key_value();
                out.push((k[self.prefix.len()..].to_vec(), v));
            }
            if !more || out.len() >= limit {
                return Ok(out);
            }
        }
    }

    fn transact_dyn(&self, body: &mut TxBody<'_>) -> std::result::Result<(), TxBodyError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let mut txn = EtcdTxn {
                store: self,
                snapshot: None,
                reads: BTreeMap::new(),
                writes: BTreeMap::new(),
                revision: None,
                fault: None,
                use_cache: attempt == 1,
                from_cache: false,
            };
            let outcome = body(&mut txn);
            let retry = match (txn.fault.take(), outcome) {
                (Some(Fault::Storage(e)), _) => return Err(TxBodyError::Storage(e)),
                (Some(Fault::Conflict), _) | (None, Err(TxBodyError::Storage(Error::Conflict))) => {
                    true
                }
                // Refused on values from the cache: decide again on what etcd holds.
                (None, Err(_)) if txn.from_cache => true,
                (None, Err(e)) => return Err(e),
                (None, Ok(())) if txn.writes.is_empty() && !txn.from_cache => return Ok(()),
                // A read-only body that used the cache commits nothing but its compares.
                (None, Ok(())) => match self.commit(&txn) {
                    Ok(Some(revision)) => {
                        let mut cache = self.cache();
                        for (k, v) in &txn.writes {
                            cache.learn(
                                k,
                                Cached {
                                    mod_revision: if v.is_some() { revision } else { 0 },
                                    value: v.clone(),
                                    known_at: revision,
                                },
                            );
                        }
                        return Ok(());
                    }
                    Ok(None) => true,
                    Err(e) => return Err(TxBodyError::Storage(e)),
                },
            };
            debug_assert!(retry);
            if attempt < MAX_ATTEMPTS {
                std::thread::sleep(backoff(attempt));
            }
        }
        Err(TxBodyError::Storage(Error::Conflict))
    }

    /// etcd acknowledges a commit only once a quorum has it on disk.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn shared(&self) -> bool {
        true
    }

    /// An etcd watch on the prefix, renewed when it breaks (member down, compaction); the
    /// caller reads what changed itself, so a wake-up after each (re)connection covers whatever
    /// happened while no watch was in place.
    fn watch_prefix(&self, prefix: &[u8], wake: std::sync::Arc<dyn Fn() + Send + Sync>) -> bool {
        let (clients, preferred) = (self.clients.clone(), self.preferred.clone());
        let key = self.full_key(prefix);
        let rt = self.runtime.as_ref().expect("runtime lives until drop");
        rt.spawn(async move {
            for round in 0.. {
                // A broken watch moves to the member calls reach now, then round the others.
                let n = (preferred.load(Ordering::Relaxed) + round) % clients.len();
                let mut watch = clients[n].watch_client();
                let options = etcd_client::WatchOptions::new().with_prefix();
                if let Ok(mut stream) = watch.watch(key.clone(), Some(options)).await {
                    wake();
                    while let Ok(Some(resp)) = stream.message().await {
                        if resp.canceled() {
                            break;
                        }
                        if !resp.events().is_empty() {
                            wake();
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        true
    }
}

/// A random pause, growing with the attempt, so racing writers spread out.
fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE
        .saturating_mul(1 << attempt.min(16))
        .min(BACKOFF_CAP);
    Duration::from_micros(fastrand::u64(0..=cap.as_micros() as u64))
}

/// The end (exclusive) of the range of keys starting with `prefix`; empty for "no end".
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let c = EtcdConfig::parse_url("etcd://a:2379,b:2379").unwrap();
        assert_eq!(c.endpoints, ["a:2379", "b:2379"]);
        assert_eq!(c.prefix, "berth");
        let c = EtcdConfig::parse_url("etcd://127.0.0.1:1/team/x/").unwrap();
        assert_eq!(c.prefix, "team/x");
        assert_eq!(c.key_prefix(), b"team/x/");
        assert!(EtcdConfig::parse_url("etcd://").is_err());
        assert!(EtcdConfig::parse_url("etcd://host").is_err());
        assert!(EtcdConfig::parse_url("http://a:1").is_err());
    }

    /// The read cache holds at most its keys and bytes, skips big values, and never lets an
    /// older sighting replace a newer one.
    #[test]
    fn the_read_cache_is_bounded() {
        let seen = |v: Vec<u8>, at: i64| Cached {
            value: Some(v),
            mod_revision: at,
            known_at: at,
        };
        let mut c = ReadCache::default();
        for i in 0..CACHED_KEYS + 1000 {
            c.learn(format!("k{i}").as_bytes(), seen(vec![1], 1));
        }
        assert_eq!(c.entries.len(), CACHED_KEYS);
        assert!(c.get(b"k0").is_none(), "the oldest go first");
        assert!(c.order.len() <= 2 * CACHED_KEYS);

        let mut c = ReadCache::default();
        for i in 0..300 {
            c.learn(format!("v{i}").as_bytes(), seen(vec![0; 60 << 10], 1));
        }
        assert!(c.bytes <= CACHED_BYTES, "{} bytes held", c.bytes);
        c.learn(b"big", seen(vec![0; CACHED_VALUE_BYTES + 1], 1));
        assert!(c.get(b"big").is_none());

        c.learn(b"k", seen(b"new".to_vec(), 5));
        c.learn(b"k", seen(b"old".to_vec(), 3));
        assert_eq!(c.get(b"k").unwrap().value.as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn range_ends() {
        assert_eq!(range_end(b"ab"), b"ac");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"\xff\xff"), b"");
        assert_eq!(range_end(b""), b"");
    }
}

/// Against real etcd members (Debian's `etcd`), started per test.
#[cfg(test)]
mod etcd_tests {
    use super::*;
    use crate::etcd_cluster::EtcdCluster;
    use crate::metadata::{MetadataStoreExt, TxError};

    fn decode(v: &[u8]) -> u64 {
        u64::from_be_bytes(v.try_into().unwrap())
    }

    fn store(cluster: &EtcdCluster, prefix: &str) -> EtcdMetadata {
        EtcdMetadata::connect(&EtcdConfig::parse_url(&cluster.url(prefix)).unwrap()).unwrap()
    }

    #[test]
    fn metadata_suite_on_one_etcd_member() {
        let cluster = EtcdCluster::start(1, false);
        crate::testsuite::metadata_suite(&store(&cluster, "suite"));
        // A second prefix is a store of its own on the same cluster.
        crate::testsuite::metadata_suite(&store(&cluster, "other/suite"));
    }

    #[test]
    fn metadata_suite_on_three_etcd_members() {
        let cluster = EtcdCluster::start(3, true);
        crate::testsuite::metadata_suite(&store(&cluster, "suite"));
    }

    /// Two processes' worth of stores (two clients) incrementing one counter: no lost update,
    /// and every revision taken exactly once.
    #[test]
    fn two_clients_serialize() {
        let cluster = EtcdCluster::start(1, false);
        let stores = [store(&cluster, "p"), store(&cluster, "p")];
        let revisions = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for (i, st) in stores.iter().enumerate() {
                for t in 0..2 {
                    let revisions = &revisions;
                    s.spawn(move || {
                        for _ in 0..40 {
                            let r = st
                                .transaction(|tx| {
                                    let n = tx.get(b"n")?.map_or(0, |v| decode(&v));
                                    tx.put(b"n", &(n + 1).to_be_bytes())?;
                                    tx.put(format!("by/{i}/{t}").as_bytes(), b"x")?;
                                    Ok::<_, TxError<()>>(tx.revision()?)
                                })
                                .unwrap();
                            revisions.lock().unwrap().push(r);
                        }
                    });
                }
            }
        });
        assert_eq!(decode(&stores[1].get(b"n").unwrap().unwrap()), 160);
        let mut r = revisions.into_inner().unwrap();
        r.sort();
        assert_eq!(r, (1..=160).collect::<Vec<u64>>());
        assert_eq!(stores[0].revision().unwrap(), 160);
    }

    /// A client's cached reads never decide anything on their own: what another client wrote
    /// since is seen by read-only transactions, by writes and by refusals alike.
    #[test]
    fn cached_reads_never_hide_another_clients_write() {
        let cluster = EtcdCluster::start(1, false);
        let (a, b) = (store(&cluster, "c"), store(&cluster, "c"));
        let put = |s: &EtcdMetadata, v: &[u8]| {
            s.transaction(|tx| tx.put(b"k", v).map_err(TxError::<()>::from))
                .unwrap()
        };
        let read = |s: &EtcdMetadata| {
            s.transaction(|tx| Ok::<_, TxError<()>>(tx.get(b"k")?))
                .unwrap()
        };
        assert_eq!(read(&a), None, "a learns that k is absent");
        put(&b, b"1");
        assert_eq!(
            read(&a).as_deref(),
            Some(&b"1"[..]),
            "a read-only transaction"
        );
        put(&b, b"2");
        let seen = a.transaction(|tx| match tx.get(b"k")? {
            Some(v) if v == b"2" => Ok(v),
            other => Err(TxError::Abort(other)),
        });
        assert_eq!(
            seen.unwrap(),
            b"2",
            "a refusal on a cached value is decided again"
        );
        for (i, s) in [&a, &b, &a, &a, &b].into_iter().enumerate() {
            s.transaction(|tx| {
                let n = tx.get(b"n")?.map_or(0, |v| decode(&v));
                tx.put(b"n", &(n + 1).to_be_bytes())
                    .map_err(TxError::<()>::from)
            })
            .unwrap();
            assert_eq!(decode(&read_n(&a)), i as u64 + 1);
            assert_eq!(decode(&read_n(&b)), i as u64 + 1);
        }
        fn read_n(s: &EtcdMetadata) -> Vec<u8> {
            s.transaction(|tx| Ok::<_, TxError<()>>(tx.get(b"n")?.unwrap()))
                .unwrap()
        }
    }

    /// Called from tokio workers of both kinds of runtime, the store neither panics nor
    /// deadlocks (the server calls it from async handlers as well as blocking tasks).
    #[test]
    fn usable_from_inside_tokio_runtimes() {
        let cluster = EtcdCluster::start(1, false);
        let st = std::sync::Arc::new(store(&cluster, "rt"));
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let s = st.clone();
        current.block_on(async move {
            s.transaction(|tx| tx.put(b"a", b"1").map_err(TxError::<()>::from))
                .unwrap();
            assert_eq!(s.get(b"a").unwrap().unwrap(), b"1");
        });
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let s = st.clone();
        multi.block_on(async move {
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        s.transaction(|tx| {
                            tx.put(format!("k{i}").as_bytes(), b"v")
                                .map_err(TxError::<()>::from)
                        })
                        .unwrap();
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert_eq!(st.scan(b"k", None, 100).unwrap().len(), 8);
        // Dropped inside a runtime: no panic.
        let s = std::sync::Arc::try_unwrap(st).ok().unwrap();
        current.block_on(async move { drop(s) });
    }

    #[test]
    fn an_unreachable_cluster_is_unavailable_within_the_timeout() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = EtcdConfig::parse_url(&format!("etcd://127.0.0.1:{port}")).unwrap();
        config.timeout = Duration::from_secs(1);
        let st = EtcdMetadata::connect(&config).unwrap();
        assert!(matches!(st.get(b"x"), Err(Error::Unavailable(_))));
        let r = st.transaction(|tx| tx.put(b"x", b"1").map_err(TxError::<()>::from));
        assert!(
            matches!(r, Err(TxError::Storage(Error::Unavailable(_)))),
            "{r:?}"
        );
        // A body that swallows the read error still does not commit.
        let r = st.transaction(|tx| {
            let _ = tx.get(b"x");
            tx.put(b"x", b"1").map_err(TxError::<()>::from)
        });
        assert!(
            matches!(r, Err(TxError::Storage(Error::Unavailable(_)))),
            "{r:?}"
        );
    }

    #[test]
    fn transactions_over_etcd_limits_fail_clearly_and_write_nothing() {
        let cluster = EtcdCluster::start(1, false);
        let st = store(&cluster, "lim");
        let r = st.transaction(|tx| {
            for i in 0..=MAX_TXN_OPS {
                tx.put(format!("w{i}").as_bytes(), b"v")?;
            }
            Ok::<_, TxError<()>>(())
        });
        match r {
            Err(TxError::Storage(Error::TooLarge(m))) => assert!(m.contains("max-txn-ops"), "{m}"),
            other => panic!("{other:?}"),
        }
        let r = st.transaction(|tx| {
            for i in 0..MAX_TXN_OPS {
                tx.get(format!("r{i}").as_bytes())?;
            }
            tx.put(b"big", &vec![7u8; MAX_REQUEST_BYTES])?;
            Ok::<_, TxError<()>>(())
        });
        match r {
            Err(TxError::Storage(Error::TooLarge(m))) => {
                assert!(m.contains("max-request-bytes"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(st.scan(b"", None, 10).unwrap().is_empty());
        // At the limits exactly, it commits.
        st.transaction(|tx| {
            for i in 0..MAX_TXN_OPS {
                tx.get(format!("r{i}").as_bytes())?;
                tx.put(format!("w{i}").as_bytes(), b"v")?;
            }
            Ok::<_, TxError<()>>(())
        })
        .unwrap();
        assert_eq!(st.scan(b"w", None, 1000).unwrap().len(), MAX_TXN_OPS);
    }

    /// Every acknowledged transaction survives the whole cluster dying at once (SIGKILL) and
    /// starting again.
    #[test]
    fn acknowledged_writes_survive_killing_every_member() {
        let mut cluster = EtcdCluster::start(3, true);
        let st = store(&cluster, "d");
        for i in 0..50u32 {
            st.transaction(|tx| {
                tx.put(format!("a/{i:04}").as_bytes(), b"1")?;
                tx.put(format!("b/{i:04}").as_bytes(), b"1")?;
                tx.revision().map(drop).map_err(TxError::<()>::from)
            })
            .unwrap();
        }
        drop(st);
        for n in 0..3 {
            cluster.kill(n);
        }
        for n in 0..3 {
            cluster.restart(n);
        }
        cluster.wait_healthy(Duration::from_secs(30));
        let st = store(&cluster, "d");
        assert_eq!(st.scan(b"a/", None, 1000).unwrap().len(), 50);
        assert_eq!(st.scan(b"b/", None, 1000).unwrap().len(), 50);
        assert_eq!(st.revision().unwrap(), 50);
    }
}
