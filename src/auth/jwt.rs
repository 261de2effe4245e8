//! Registry tokens of the Docker token flow: short-lived JWTs (HS256) naming the repository
//! actions granted. Signing keys live in the metadata store (so every replica sharing it can
//! verify), carry a key id, and rotate: a new key signs from then on, the previous one still
//! verifies until its tokens have expired.

use std::sync::RwLock;

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

fn key_of(kid: &str) -> Vec<u8> {
    format!("signingkey\0{kid}").into_bytes()
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
                // A concurrent first start may have made one already; keep both, newest signs.
                tx.put(&key, &encode(&record))?;
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
            let record: KeyRecord = decode(&v)?;
            let secret = base64::engine::general_purpose::STANDARD
                .decode(record.secret)
                .map_err(|e| AuthError::Invalid(format!("corrupt signing key: {e}")))?;
            keys.push((
                String::from_utf8_lossy(&k[KEY_PREFIX.len()..]).into_owned(),
                secret,
            ));
        }
        self.set.write().unwrap().keys = keys;
        Ok(())
    }

    /// Makes a new key the signing key; keys older than the previous one are dropped, so
    /// tokens signed before the last-but-one rotation stop verifying.
    pub async fn rotate(&self) -> Result<String> {
        let kid = new_kid();
        let record = KeyRecord {
            secret: base64::engine::general_purpose::STANDARD.encode(random_secret()),
            created: now(),
        };
        let old: Vec<String> = {
            let set = self.set.read().unwrap();
            let n = set.keys.len();
            set.keys
                .iter()
                .take(n.saturating_sub(1))
                .map(|(k, _)| k.clone())
                .collect()
        };
        let new_kid = kid.clone();
        self.registry
            .write_changes_as(move |tx: &mut dyn Txn, _| {
                tx.put(&key_of(&new_kid), &encode(&record))?;
                for k in &old {
                    tx.delete(&key_of(k))?;
                }
                Ok::<_, TxError<AuthError>>(())
            })
            .await?;
        self.reload()?;
        Ok(kid)
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
        let kid = header.kid?;
        let set = self.set.read().unwrap();
        let (_, secret) = set.keys.iter().find(|(k, _)| *k == kid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[aud]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 0;
        validation.validate_nbf = true;
        jwt_decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
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
