//! Webhook subscriptions: the API operations and the one owner of their records.
//!
//! - `wh\0<ns>\0<name>`: the subscription (spec without its secret) and its signing keys;
//! - `whn\0<ns>`: the namespace's subscriptions with their filters, the one key a
//!   transaction that raises notices reads to find who wants them (transactions cannot scan).
//!
//! Signing secrets are write-only: reads never return them, `Debug` never prints them.

use std::sync::Arc;

use berth_storage::record::{decode, encode};
use berth_storage::{MetadataStore, Record, TxError, Txn};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::outbox::{Outbox, Progress};
use super::types::{Webhook, WebhookSpec, WebhookStatus, EVENT_TYPES};
use super::{signing, target};
use crate::imagestream::store::{Change, ChangeKind};
use crate::imagestream::types::now_rfc3339;
use crate::imagestream::{Cause, Error, Result};
use crate::registry::names::{StreamName, Tag};
use crate::registry::{Namespace, Registry};

/// Most subscriptions one namespace may have: every push in it reads them all.
pub const MAX_PER_NAMESPACE: usize = 50;

#[derive(Clone, Serialize, Deserialize)]
pub struct SigningKey {
    pub secret: String,
    /// Unix seconds after which a rotated-out key no longer signs.
    pub expires: Option<u64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(<redacted>, expires {:?})", self.expires)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    webhook: Webhook,
    keys: Vec<SigningKey>,
}
impl Record for Stored {
    const KIND: &'static str = "webhook";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    uid: String,
    spec: WebhookSpec,
}

/// A namespace's subscriptions as producers read them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    subs: Vec<Entry>,
}
impl Record for Index {
    const KIND: &'static str = "webhook-index";
    const VERSION: u8 = 1;
}

impl Index {
    /// Uids of the subscriptions that want this event (about any of `streams`).
    pub fn matching<'a>(
        &'a self,
        event_type: &'a str,
        streams: &'a [&'a str],
        tags: &'a [&'a str],
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.subs
            .iter()
            .filter(move |e| streams.iter().any(|s| e.spec.wants(event_type, s, tags)))
            .map(|e| e.uid.as_str())
    }
}

fn key(ns: &str, name: &str) -> Vec<u8> {
    format!("wh\0{ns}\0{name}").into_bytes()
}
fn all() -> Vec<u8> {
    b"wh\0".to_vec()
}
fn index_key(ns: &str) -> Vec<u8> {
    format!("whn\0{ns}").into_bytes()
}

fn get<R: Record>(tx: &mut dyn Txn, key: &[u8]) -> berth_storage::Result<Option<R>> {
    tx.get(key)?.map(|b| decode(&b)).transpose()
}

/// The namespace's subscriptions, inside a transaction.
pub fn index_in(tx: &mut dyn Txn, ns: &str) -> berth_storage::Result<Index> {
    Ok(get(tx, &index_key(ns))?.unwrap_or_default())
}

#[cfg(test)]
pub fn index_put_for_test(tx: &mut dyn Txn, ns: &str, uid: &str) -> berth_storage::Result<()> {
    let index = Index {
        subs: vec![Entry {
            name: uid.into(),
            uid: uid.into(),
            spec: WebhookSpec::default(),
        }],
    };
    tx.put(&index_key(ns), &encode(&index))
}

/// A subscription as the delivery worker needs it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub spec: WebhookSpec,
    pub keys: Vec<SigningKey>,
}

impl Subscription {
    /// The key bytes that sign now.
    pub fn signing_keys(&self, now: u64) -> Vec<Vec<u8>> {
        live_keys(&self.keys, now)
            .filter_map(|k| signing::key_of(&k.secret).ok())
            .collect()
    }
}

fn live_keys(keys: &[SigningKey], now: u64) -> impl Iterator<Item = &SigningKey> {
    keys.iter()
        .filter(move |k| k.expires.is_none_or(|e| e > now))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every subscription of every namespace (the delivery worker's view).
pub fn load_all(meta: &dyn MetadataStore) -> berth_storage::Result<Vec<Subscription>> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = meta.scan(&all(), after.as_deref(), 500)?;
        let Some((last, _)) = page.last() else {
            return Ok(out);
        };
        after = Some(last.clone());
        for (_, v) in &page {
            let s: Stored = decode(v)?;
            out.push(Subscription {
                namespace: s.webhook.metadata.namespace.clone(),
                name: s.webhook.metadata.name.clone(),
                uid: s.webhook.metadata.uid.clone(),
                spec: s.webhook.spec,
                keys: s.keys,
            });
        }
    }
}

/// One subscription by uid's place (`ns`, `name`), if it still has that uid.
pub fn load(meta: &dyn MetadataStore, ns: &str, name: &str, uid: &str) -> Option<Subscription> {
    let s: Stored = decode(&meta.get(&key(ns, name)).ok()??).ok()?;
    (s.webhook.metadata.uid == uid).then(|| Subscription {
        namespace: ns.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        spec: s.webhook.spec,
        keys: s.keys,
    })
}

/// What the API layer needs to know of the server's webhook settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub allow_private: bool,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub rotation_overlap: std::time::Duration,
}

#[derive(Clone)]
pub struct Webhooks {
    registry: Registry,
    policy: Policy,
    outbox: Arc<Outbox>,
    /// Bumped after each committed subscription change (the delivery worker reconciles).
    changed: Arc<watch::Sender<u64>>,
}

fn not_found(name: &str) -> Error {
    Error::NotFound {
        resource: "webhooks",
        name: name.to_string(),
    }
}

/// What watchers hear of a write: the object as stored, which never holds the secret.
fn change(kind: ChangeKind, w: &Webhook) -> Change {
    let mut w = w.clone();
    w.spec.secret = None;
    Change::Webhook {
        kind,
        webhook: Box::new(w),
    }
}

fn abort<T>(e: Error) -> std::result::Result<T, TxError<Error>> {
    Err(TxError::Abort(e))
}

impl Webhooks {
    pub fn new(registry: Registry, outbox: Arc<Outbox>, policy: Policy) -> Self {
        let changed: Arc<watch::Sender<u64>> = Arc::new(watch::channel(0).0);
        // With replicas, a subscription written through another one arrives as a change
        // (through the change log); the delivery supervisor must hear of it too.
        if registry.metadata().shared() {
            let changed = changed.clone();
            registry
                .events()
                .listen(Arc::new(move |c: &crate::imagestream::Change| {
                    if matches!(c, crate::imagestream::Change::Webhook { .. }) {
                        changed.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }));
        }
        Webhooks {
            registry,
            policy,
            outbox,
            changed,
        }
    }

    /// Changes after every committed create, update or delete.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn validate(&self, ns: &str, w: &Webhook, creating: bool) -> Result<()> {
        let name = &w.metadata.name;
        let mut causes = Vec::new();
        if Namespace::parse(ns).is_err() {
            causes.push(Cause::invalid(
                "metadata.namespace",
                ns,
                "not a namespace name",
            ));
        }
        if name.is_empty() {
            causes.push(Cause::required("metadata.name"));
        } else if Namespace::parse(name).is_err() {
            causes.push(Cause::invalid(
                "metadata.name",
                name,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters \
                 or '-', and must start and end with an alphanumeric character",
            ));
        }
        if w.spec.url.is_empty() {
            causes.push(Cause::required("spec.url"));
        } else if let Err(e) = target::check_url(&w.spec.url, self.policy.allow_private) {
            causes.push(Cause::invalid("spec.url", &w.spec.url, &e));
        }
        for (i, e) in w.spec.events.iter().enumerate() {
            if !EVENT_TYPES.contains(&e.as_str()) {
                causes.push(Cause::invalid(
                    format!("spec.events[{i}]"),
                    e,
                    &format!("supported values: {}", EVENT_TYPES.join(", ")),
                ));
            }
        }
        for (i, t) in w.spec.tags.iter().enumerate() {
            let (stream, tag) = match t.split_once(':') {
                Some((s, t)) => (s, Some(t)),
                None => (t.as_str(), None),
            };
            if StreamName::parse(stream).is_err() || tag.is_some_and(|t| Tag::parse(t).is_err()) {
                causes.push(Cause::invalid(
                    format!("spec.tags[{i}]"),
                    t,
                    "must be STREAM or STREAM:TAG",
                ));
            }
        }
        match &w.spec.secret {
            Some(s) => {
                if let Err(e) = signing::key_of(s) {
                    causes.push(Cause::invalid("spec.secret", "<redacted>", &e));
                }
            }
            None if creating => causes.push(Cause::required("spec.secret")),
            None => {}
        }
        if causes.is_empty() {
            return Ok(());
        }
        Err(Error::Invalid {
            kind: "Webhook",
            name: name.clone(),
            causes,
        })
    }

    pub async fn create(&self, ns: &str, mut w: Webhook) -> Result<Webhook> {
        self.validate(ns, &w, true)?;
        let secret = w.spec.secret.take().unwrap_or_default();
        w.kind = super::types::KIND.into();
        w.api_version = super::types::API_VERSION.into();
        w.status = WebhookStatus::default();
        w.metadata.namespace = ns.to_string();
        w.metadata.uid = uuid::Uuid::new_v4().to_string();
        w.metadata.creation_timestamp = Some(now_rfc3339());
        w.metadata.generation = 1;
        let mut stored = Stored {
            webhook: w.clone(),
            keys: vec![SigningKey {
                secret,
                expires: None,
            }],
        };
        let ns = ns.to_string();
        let created = self
            .registry
            .write_changes_as(move |tx: &mut dyn Txn, changes| {
                let name = &stored.webhook.metadata.name.clone();
                if tx.get(&key(&ns, name))?.is_some() {
                    return abort(Error::AlreadyExists {
                        resource: "webhooks",
                        name: name.clone(),
                    });
                }
                let mut index = index_in(tx, &ns)?;
                if index.subs.len() >= MAX_PER_NAMESPACE {
                    return abort(Error::Forbidden {
                        resource: "webhooks",
                        name: name.clone(),
                        message: format!(
                            "namespace {ns:?} has {MAX_PER_NAMESPACE} webhooks, the most allowed"
                        ),
                    });
                }
                index.subs.push(Entry {
                    name: name.clone(),
                    uid: stored.webhook.metadata.uid.clone(),
                    spec: stored.webhook.spec.clone(),
                });
                stored.webhook.metadata.resource_version = tx.revision()?.to_string();
                tx.put(&index_key(&ns), &encode(&index))?;
                tx.put(&key(&ns, name), &encode(&stored))?;
                changes.push(change(ChangeKind::Added, &stored.webhook));
                Ok(stored.webhook.clone())
            })
            .await?;
        self.notify();
        Ok(self.with_status(created, 1))
    }

    /// PUT: replaces the spec. Without `spec.secret` the current secret stays; with a new
    /// one, the old one keeps signing beside it for the rotation overlap.
    pub async fn update(&self, ns: &str, name: &str, mut w: Webhook) -> Result<Webhook> {
        w.metadata.name = name.to_string();
        self.validate(ns, &w, false)?;
        let (ns_c, name_c) = (ns.to_string(), name.to_string());
        let overlap = self.policy.rotation_overlap.as_secs();
        let updated = self
            .registry
            .write_changes_as(move |tx: &mut dyn Txn, changes| {
                let Some(mut stored) = get::<Stored>(tx, &key(&ns_c, &name_c))? else {
                    return abort(not_found(&name_c));
                };
                let current = &stored.webhook.metadata.resource_version;
                let given = &w.metadata.resource_version;
                if !given.is_empty() && given != current {
                    return abort(Error::Conflict {
                        resource: "webhooks",
                        name: name_c.clone(),
                        message: "the object has been modified; please apply your changes to \
                                  the latest version and try again"
                            .into(),
                    });
                }
                let mut spec = w.spec.clone();
                let now = now_secs();
                if let Some(secret) = spec.secret.take() {
                    if stored.keys.first().is_none_or(|k| k.secret != secret) {
                        for k in &mut stored.keys {
                            k.expires = Some(k.expires.unwrap_or(now + overlap).min(now + overlap));
                        }
                        stored.keys.insert(
                            0,
                            SigningKey {
                                secret,
                                expires: None,
                            },
                        );
                    }
                }
                stored.keys.retain(|k| k.expires.is_none_or(|e| e > now));
                let meta = &mut stored.webhook.metadata;
                meta.generation += 1;
                meta.resource_version = tx.revision()?.to_string();
                meta.labels = w.metadata.labels.clone();
                meta.annotations = w.metadata.annotations.clone();
                stored.webhook.spec = spec.clone();
                let mut index = index_in(tx, &ns_c)?;
                for e in &mut index.subs {
                    if e.name == name_c {
                        e.spec = spec.clone();
                    }
                }
                tx.put(&index_key(&ns_c), &encode(&index))?;
                tx.put(&key(&ns_c, &name_c), &encode(&stored))?;
                changes.push(change(ChangeKind::Modified, &stored.webhook));
                Ok(stored)
            })
            .await?;
        self.notify();
        let live = live_keys(&updated.keys, now_secs()).count();
        Ok(self.with_status(updated.webhook, live))
    }

    pub async fn delete(&self, ns: &str, name: &str) -> Result<Webhook> {
        let (ns_c, name_c) = (ns.to_string(), name.to_string());
        let old = self
            .registry
            .write_changes_as(move |tx: &mut dyn Txn, changes| {
                let Some(mut stored) = get::<Stored>(tx, &key(&ns_c, &name_c))? else {
                    return abort(not_found(&name_c));
                };
                let mut index = index_in(tx, &ns_c)?;
                index.subs.retain(|e| e.name != name_c);
                if index.subs.is_empty() {
                    tx.delete(&index_key(&ns_c))?;
                } else {
                    tx.put(&index_key(&ns_c), &encode(&index))?;
                }
                tx.delete(&key(&ns_c, &name_c))?;
                stored.webhook.metadata.resource_version = tx.revision()?.to_string();
                changes.push(change(ChangeKind::Deleted, &stored.webhook));
                Ok(stored.webhook)
            })
            .await?;
        // The worker stops delivering and removes the outbox.
        self.notify();
        Ok(old)
    }

    pub fn get(&self, ns: &str, name: &str) -> Result<Webhook> {
        let bytes = self
            .registry
            .metadata()
            .get(&key(ns, name))?
            .ok_or_else(|| not_found(name))?;
        let s: Stored = decode(&bytes)?;
        let live = live_keys(&s.keys, now_secs()).count();
        Ok(self.with_status(s.webhook, live))
    }

    pub fn list(&self, ns: &str) -> Result<Vec<Webhook>> {
        let meta = self.registry.metadata();
        let prefix = format!("wh\0{ns}\0").into_bytes();
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = meta.scan(&prefix, after.as_deref(), 500)?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            after = Some(last.clone());
            for (_, v) in &page {
                let s: Stored = decode(v)?;
                let live = live_keys(&s.keys, now_secs()).count();
                out.push(self.with_status(s.webhook, live));
            }
        }
    }

    /// The object as reads return it: no secret, status from the outbox.
    fn with_status(&self, mut w: Webhook, signing_secrets: usize) -> Webhook {
        w.spec.secret = None;
        let p = self.outbox.progress(&w.metadata.uid).unwrap_or_default();
        w.status = status_of(&p, signing_secrets);
        w
    }
}

fn status_of(p: &Progress, signing_secrets: usize) -> WebhookStatus {
    let c = &p.cursor;
    let failing = p.dropped() > 0 && p.last_dropped() > c.last_success.as_ref();
    WebhookStatus {
        phase: if failing {
            "Failing"
        } else if c.consecutive_failures > 0 {
            "Retrying"
        } else {
            "Active"
        }
        .into(),
        pending: p.pending(),
        delivered: c.delivered,
        dropped_events: p.dropped(),
        last_dropped_time: p.last_dropped().cloned(),
        last_success_time: c.last_success.clone(),
        last_error: c.last_error.clone(),
        consecutive_failures: c.consecutive_failures,
        signing_secrets,
    }
}
