//! Registry tokens of the Docker token flow: short-lived JWTs (HS256) naming the repository
//! actions granted. Signing keys live in the metadata store (so every replica sharing it can
//! verify), carry a key id, and rotate: a new key signs from then on, the previous one still
//! verifies until its tokens have expired.
//!
//! Each process keeps the keys in memory. On a shared store (etcd) another replica may rotate
//! them, so [`Keys::follow`] reloads them whenever the store's watch says one changed (and every
//! [`RELOAD_EVERY`] in case a change went unnoticed), and a token naming a key this process does
//! not know yet makes it look that key up: a key made on one replica verifies on all at once,
//! and a retired one stops verifying everywhere about as soon as the watch tells them.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use base64::Engine;
use berth_storage::record::{decode, encode};
use berth_storage::{MetadataStoreExt, Record, TxError, Txn};
use jsonwebtoken::{decode as jwt_decode, decode_header, encode as jwt_encode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::service::{now, random_secret, AuthError, Result};
use crate::registry::Registry;

pub const ISSUER: &str = "berth";

/// One `type:name:actions` grant (`repository:team/app:pull,push`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    /// Parses one `scope` parameter; several scopes may be space-separated.
    pub fn parse_scopes(scope: &str) -> Vec<Access> {
        scope
            .split(' ')
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(Access {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    actions: actions
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    /// Base64 of the HMAC key.
    secret: String,
    created: u64,
}
impl Record for KeyRecord {
    const KIND: &'static str = "signingkey";
    const VERSION: u8 = 1;
}

const KEY_PREFIX: &[u8] = b"signingkey\0";
/// The id of the newest key, written by every change of the key set: a rotation reads it in its
/// transaction, so two rotations at once (through two replicas) cannot both commit what each
/// computed from the same old set.
const HEAD_KEY: &[u8] = b"signingkey-head";
/// Covers the keys and the head: what [`Keys::follow`] watches.
const WATCH_PREFIX: &[u8] = b"signingkey";
/// How often a follower reloads the keys without being told of a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

fn key_of(kid: &str) -> Vec<u8> {
    format!("signingkey\0{kid}").into_bytes()
}

fn decode_secret(value: &[u8]) -> Result<Vec<u8>> {
    let record: KeyRecord = decode(value)?;
    base64::engine::general_purpose::STANDARD
        .decode(record.secret)
        .map_err(|e| AuthError::Invalid(format!("corrupt signing key: {e}")))
}

struct KeySet {
    /// (kid, secret), newest last.
    keys: Vec<(String, Vec<u8>)>,
}

pub struct Keys {
    registry: Registry,
    set: RwLock<KeySet>,
}

/// Key ids sort by creation: a zero-padded time in nanoseconds (two rotations within one
/// second must still sort in order), then randomness.
fn new_kid() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{nanos:021}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

impl Keys {
    /// Loads the signing keys, creating the first one on a fresh store.
    pub fn load_or_create(registry: &Registry) -> Result<Keys> {
        let keys = Keys {
            registry: registry.clone(),
            set: RwLock::new(KeySet { keys: Vec::new() }),
        };
        keys.reload()?;
        if keys.set.read().unwrap().keys.is_empty() {
            let meta = registry.metadata().clone();
            let kid = new_kid();
            let record = KeyRecord {
                secret: base64::engine::general_purpose::STANDARD.encode(random_secret()),
                created: now(),
            };
            let key = key_of(&kid);
            meta.transaction(|tx: &mut dyn Txn| {
                // A replica starting at the same time made the first key: use that one.
                if tx.get(HEAD_KEY)?.is_some() {
                    return Ok(());
                }
                tx.put(&key, &encode(&record))?;
                tx.put(HEAD_KEY, kid.as_bytes())?;
                Ok::<_, TxError<AuthError>>(())
            })?;
            meta.flush()?;
            keys.reload()?;
        }
        Ok(keys)
    }

    /// Re-reads the keys from the store (after a rotation by another replica).
    pub fn reload(&self) -> Result<()> {
        let mut keys = Vec::new();
        for (k, v) in self.registry.metadata().scan(KEY_PREFIX, None, 1000)? {
            keys.push((
                String::from_utf8_lossy(&k[KEY_PREFIX.len()..]).into_owned(),
                decode_secret(&v)?,
            ));
        }
        self.set.write().unwrap().keys = keys;
        Ok(())
    }

    /// On a store other processes write too, keeps this process's keys equal to the stored ones,
    /// on a thread of its own that ends when the keys are dropped. Does nothing on a store only
    /// this process writes: its own rotations reload the keys.
    pub fn follow(self: &Arc<Self>) {
        let meta = self.registry.metadata();
        if !meta.shared() {
            return;
        }
        let (wake_tx, wake_rx) = std::sync::mpsc::sync_channel::<()>(1);
        meta.watch_prefix(
            WATCH_PREFIX,
            Arc::new(move || {
                let _ = wake_tx.try_send(());
            }),
        );
        let keys: Weak<Keys> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("berth-signingkeys".into())
            .spawn(move || loop {
                match wake_rx.recv_timeout(RELOAD_EVERY) {
                    Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    // The store (and its watch) is gone.
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
                let Some(keys) = keys.upgrade() else { return };
                if let Err(e) = keys.reload() {
                    tracing::warn!(error = %e, "reloading the signing keys failed; retrying");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start following the signing keys");
        }
    }

    /// Makes a new key the signing key; keys older than the previous one are dropped, so
    /// tokens signed before the last-but-one rotation stop verifying.
    pub async fn rotate(&self) -> Result<String> {
        let meta = self.registry.metadata().clone();
        loop {
            // The set as stored (this process's copy may be behind another replica's rotation),
            // read after the head, so a rotation committed in between is caught by the check.
            let head = meta.get(HEAD_KEY)?;
            let stored: Vec<Vec<u8>> = meta
                .scan(KEY_PREFIX, None, 1000)?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let retired: Vec<Vec<u8>> = stored
                .iter()
                .take(stored.len().saturating_sub(1))
                .cloned()
                .collect();
            let kid = new_kid();
            let record = KeyRecord {
                secret: base64::engine::general_purpose::STANDARD.encode(random_secret()),
                created: now(),
            };
            let new_kid = kid.clone();
            let rotated = self
                .registry
                .write_changes_as(move |tx: &mut dyn Txn, _| {
                    if tx.get(HEAD_KEY)? != head {
                        return Ok(false);
                    }
                    tx.put(&key_of(&new_kid), &encode(&record))?;
                    tx.put(HEAD_KEY, new_kid.as_bytes())?;
                    for k in &retired {
                        tx.delete(k)?;
                    }
                    Ok::<_, TxError<AuthError>>(true)
                })
                .await?;
            if rotated {
                self.reload()?;
                return Ok(kid);
            }
        }
    }

    /// The secret of key `kid`: from memory, or, on a shared store, from the store when another
    /// replica made it since this process last loaded the keys.
    fn secret(&self, kid: &str) -> Option<Vec<u8>> {
        if let Some((_, secret)) = self.set.read().unwrap().keys.iter().find(|(k, _)| k == kid) {
            return Some(secret.clone());
        }
        let meta = self.registry.metadata();
        if !meta.shared() {
            return None;
        }
        // One read per token naming an unknown key, as an unknown access token costs one.
        let secret = decode_secret(&meta.get(&key_of(kid)).ok()??).ok()?;
        let mut set = self.set.write().unwrap();
        if !set.keys.iter().any(|(k, _)| k == kid) {
            set.keys.push((kid.to_string(), secret.clone()));
            set.keys.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Some(secret)
    }

    /// Signs a token for `sub`, for audience `aud`, granting `access`, valid `ttl` seconds.
    pub fn issue(&self, sub: &str, aud: &str, access: Vec<Access>, ttl: u64) -> Result<String> {
        let set = self.set.read().unwrap();
        let (kid, secret) = set
            .keys
            .last()
            .ok_or_else(|| AuthError::Invalid("no signing key".into()))?;
        let iat = now();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: sub.into(),
            aud: aud.into(),
            exp: iat + ttl,
            nbf: iat.saturating_sub(5),
            iat,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
        };
        let header = Header {
            kid: Some(kid.clone()),
            ..Header::new(Algorithm::HS256)
        };
        jwt_encode(&header, &claims, &EncodingKey::from_secret(secret))
            .map_err(|e| AuthError::Invalid(format!("signing the token: {e}")))
    }

    /// The claims of a token signed by one of our keys for audience `aud`, unexpired.
    pub fn verify(&self, token: &str, aud: &str) -> Option<Claims> {
        let header = decode_header(token).ok()?;
        if header.alg != Algorithm::HS256 {
            return None;
        }
        let secret = self.secret(&header.kid?)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[aud]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        validation.validate_nbf = true;
        jwt_decode::<Claims>(token, &DecodingKey::from_secret(&secret), &validation)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse() {
        let s = Access::parse_scopes("repository:team/app:pull,push registry:catalog:*");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "team/app");
        assert_eq!(s[0].actions, ["pull", "push"]);
        assert_eq!(s[1].kind, "registry");
        assert_eq!(s[1].actions, ["*"]);
        // A registry host with a port in the name keeps it.
        let s = Access::parse_scopes("repository:localhost:5000/a/b:pull");
        assert_eq!(s[0].name, "localhost:5000/a/b");
    }
}
