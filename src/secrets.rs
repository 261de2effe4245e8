//! Namespaced registry credentials: Kubernetes `Secret`s of type
//! `kubernetes.io/dockerconfigjson` (or the older `kubernetes.io/dockercfg`), which the importer
//! and pull-through use to authenticate to other registries.
//!
//! Secret values are write-only: every read through the API returns the keys with empty
//! values, and no log line carries them. Only [`Secrets::credentials_for`] reads them back.

use std::collections::BTreeMap;

use base64::Engine;
use berth_storage::record::{decode, encode};
use berth_storage::{TxError, Txn};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::imagestream::types::{now_rfc3339, ObjectMeta};
use crate::imagestream::{Cause, Error, Result};
use crate::importer::remote::Credentials;
use crate::registry::{Namespace, Registry};

pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
const DOCKER_CFG: &str = "kubernetes.io/dockercfg";
const DOCKER_CFG_KEY: &str = ".dockercfg";

/// Secret holds secret data of a certain type; berth keeps registry credentials
/// (kubernetes.io/dockerconfigjson, kubernetes.io/dockercfg) for imports and pull-through.
/// Values are write-only: reads return them blank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// The versioned schema of this representation: `Secret`.
    #[serde(default = "secret_kind")]
    pub kind: String,
    /// The version of the schema: `v1`.
    #[serde(default = "core_version")]
    pub api_version: String,
    /// Standard object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Used to facilitate programmatic handling of secret data.
    #[serde(rename = "type", default = "opaque")]
    pub kind_of_secret: String,
    /// Data contains the secret data, base64 encoded.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// stringData allows specifying non-binary secret data in string form; it is merged into
    /// the data field on write.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
}

fn secret_kind() -> String {
    "Secret".into()
}
fn core_version() -> String {
    "v1".into()
}
fn opaque() -> String {
    "Opaque".into()
}

impl Secret {
    /// The secret as every API read returns it: keys kept, values blanked.
    pub fn redacted(mut self) -> Secret {
        for v in self.data.values_mut() {
            v.clear();
        }
        self.string_data.clear();
        self
    }
}

impl berth_storage::Record for Secret {
    const KIND: &'static str = "secret";
    const VERSION: u8 = 1;
}

fn key(ns: &str, name: &str) -> Vec<u8> {
    format!("secret\0{ns}\0{name}").into_bytes()
}

fn prefix(ns: &str) -> Vec<u8> {
    format!("secret\0{ns}\0").into_bytes()
}

fn not_found(name: &str) -> Error {
    Error::NotFound {
        resource: "secrets",
        name: name.to_string(),
    }
}

#[derive(Clone)]
pub struct Secrets {
    registry: Registry,
}

impl Secrets {
    pub fn new(registry: Registry) -> Self {
        Secrets { registry }
    }

    pub async fn create(&self, ns: &str, mut secret: Secret) -> Result<Secret> {
        let name = secret.metadata.name.clone();
        let mut causes = Vec::new();
        if let Err(e) = Namespace::parse(ns) {
            causes.push(Cause::invalid("metadata.namespace", ns, &e.to_string()));
        }
        if name.is_empty() {
            causes.push(Cause::required("metadata.name"));
        } else if Namespace::parse(&name).is_err() {
            causes.push(Cause::invalid(
                "metadata.name",
                &name,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters \
                 or '-', and must start and end with an alphanumeric character",
            ));
        }
        let engine = base64::engine::general_purpose::STANDARD;
        for (k, v) in std::mem::take(&mut secret.string_data) {
            secret.data.insert(k, engine.encode(v));
        }
        for (k, v) in &secret.data {
            if engine.decode(v).is_err() {
                causes.push(Cause::invalid(
                    format!("data[{k}]"),
                    "<redacted>",
                    "must be base64",
                ));
            }
        }
        if let Some(cause) = docker_config_cause(&secret) {
            causes.push(cause);
        }
        if !causes.is_empty() {
            return Err(Error::Invalid {
                kind: "Secret",
                name,
                causes,
            });
        }
        secret.kind = secret_kind();
        secret.api_version = core_version();
        secret.metadata.namespace = ns.to_string();
        secret.metadata.uid = uuid::Uuid::new_v4().to_string();
        secret.metadata.creation_timestamp = Some(now_rfc3339());
        secret.metadata.resource_version = "1".into();
        let k = key(ns, &name);
        let stored = secret.clone();
        self.registry
            .write_changes_as(move |tx: &mut dyn Txn, _changes| {
                if tx.get(&k)?.is_some() {
                    return Err(TxError::Abort(Error::AlreadyExists {
                        resource: "secrets",
                        name: name.clone(),
                    }));
                }
                tx.put(&k, &encode(&stored))?;
                Ok(())
            })
            .await?;
        Ok(secret.redacted())
    }

    fn load(&self, ns: &str, name: &str) -> Result<Option<Secret>> {
        match self.registry.metadata().get(&key(ns, name))? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn load_all(&self, ns: &str) -> Result<Vec<Secret>> {
        let (meta, prefix) = (self.registry.metadata(), prefix(ns));
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = meta.scan(&prefix, after.as_deref(), 500)?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            after = Some(last.clone());
            for (_, v) in &page {
                out.push(decode(v)?);
            }
        }
    }

    /// The namespaces that hold at least one secret.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        Ok(crate::imagestream::store::namespaces(
            self.registry.metadata().as_ref(),
            b"secret\0",
        )?)
    }

    pub fn get(&self, ns: &str, name: &str) -> Result<Secret> {
        self.load(ns, name)?
            .map(Secret::redacted)
            .ok_or_else(|| not_found(name))
    }

    pub fn list(&self, ns: &str) -> Result<Vec<Secret>> {
        Ok(self
            .load_all(ns)?
            .into_iter()
            .map(Secret::redacted)
            .collect())
    }

    pub async fn delete(&self, ns: &str, name: &str) -> Result<Secret> {
        let k = key(ns, name);
        let name = name.to_string();
        let old = self
            .registry
            .write_changes_as(move |tx: &mut dyn Txn, _changes| {
                let Some(bytes) = tx.get(&k)? else {
                    return Err(TxError::Abort(not_found(&name)));
                };
                tx.delete(&k)?;
                Ok(decode::<Secret>(&bytes)?)
            })
            .await?;
        Ok(old.redacted())
    }

    /// The credentials the namespace's docker-config secrets hold for `registry`
    /// (`host[:port]`), matched as OpenShift's credential lookup does: the host, and the port
    /// where both name one, or a port that is the default of a scheme the import may use
    /// where one side names none (443; 80 too for an `insecure` import, which may fall back
    /// to HTTP). Secrets are tried in name order; an unreadable one is skipped.
    pub fn credentials_for(
        &self,
        ns: &str,
        registry: &str,
        insecure: bool,
    ) -> Result<Option<Credentials>> {
        let default_ports: &[u16] = if insecure { &[443, 80] } else { &[443] };
        for secret in self.load_all(ns)? {
            let auths = match docker_auths(&secret) {
                Some(a) => a,
                None => continue,
            };
            for (server, entry) in auths {
                if same_registry(&server, registry, default_ports) {
                    if let Some(c) = entry_credentials(&entry) {
                        return Ok(Some(c));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// The `auths` map of a docker-config secret (`{"auths": {...}}` or the older bare map).
fn docker_auths(secret: &Secret) -> Option<serde_json::Map<String, Value>> {
    let engine = base64::engine::general_purpose::STANDARD;
    let (raw, nested) = match secret.kind_of_secret.as_str() {
        DOCKER_CONFIG_JSON => (secret.data.get(DOCKER_CONFIG_JSON_KEY)?, true),
        DOCKER_CFG => (secret.data.get(DOCKER_CFG_KEY)?, false),
        _ => return None,
    };
    let bytes = engine.decode(raw).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let map = if nested { value.get("auths")? } else { &value };
    map.as_object().cloned()
}

fn docker_config_cause(secret: &Secret) -> Option<Cause> {
    let key = match secret.kind_of_secret.as_str() {
        DOCKER_CONFIG_JSON => DOCKER_CONFIG_JSON_KEY,
        DOCKER_CFG => DOCKER_CFG_KEY,
        _ => return None,
    };
    if !secret.data.contains_key(key) {
        return Some(Cause::required(format!("data[{key}]")));
    }
    docker_auths(secret).is_none().then(|| {
        Cause::invalid(
            format!("data[{key}]"),
            "<secret contents redacted>",
            "invalid docker config: expected JSON with an \"auths\" object",
        )
    })
}

/// `https://host:port/v1/` and `host:port` name the same registry; docker.io has aliases; a
/// side without a port matches the other side's port if it is one of `default_ports`.
fn same_registry(server: &str, registry: &str, default_ports: &[u16]) -> bool {
    let (a_host, a_port) = host_and_port(server);
    let (b_host, b_port) = host_and_port(registry);
    a_host == b_host
        && match (a_port, b_port) {
            (Some(a), Some(b)) => a == b,
            (None, Some(p)) | (Some(p), None) => default_ports.contains(&p),
            (None, None) => true,
        }
}

/// A registry key's host (lower case, docker.io's aliases folded) and port, if it names one.
fn host_and_port(key: &str) -> (String, Option<u16>) {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let authority = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    // `[::1]:5000`: the port follows the bracket; a bare IPv6 address has no port.
    let split = match authority.rfind(':') {
        Some(i)
            if !authority[i..].contains(']')
                && (authority.starts_with('[') || authority[..i].find(':').is_none()) =>
        {
            authority[i + 1..].parse::<u16>().ok().map(|p| (i, p))
        }
        _ => None,
    };
    let (host, port) = match split {
        Some((i, p)) => (authority[..i].to_string(), Some(p)),
        None => (authority, None),
    };
    let host = match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    };
    (host, port)
}

fn entry_credentials(entry: &Value) -> Option<Credentials> {
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let (Some(u), Some(p)) = (field("username"), field("password")) {
        return Some(Credentials {
            username: u.into(),
            password: p.into(),
        });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(field("auth")?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credentials {
        username: u.into(),
        password: p.into(),
    })
}

/// A docker config JSON holding one registry's credentials (what
/// `berth create secret docker-registry` stores).
pub fn docker_config_json(server: &str, username: &str, password: &str, email: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut entry = serde_json::json!({"username": username, "password": password, "auth": auth});
    if !email.is_empty() {
        entry["email"] = email.into();
    }
    serde_json::json!({"auths": {server: entry}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(json: &str) -> Secret {
        Secret {
            kind: secret_kind(),
            api_version: core_version(),
            metadata: ObjectMeta::default(),
            kind_of_secret: DOCKER_CONFIG_JSON.into(),
            data: [(
                DOCKER_CONFIG_JSON_KEY.to_string(),
                base64::engine::general_purpose::STANDARD.encode(json),
            )]
            .into(),
            string_data: BTreeMap::new(),
        }
    }

    #[test]
    fn credentials_match_host_and_port() {
        let s = secret(&docker_config_json("127.0.0.1:5000", "u", "p", ""));
        let auths = docker_auths(&s).unwrap();
        let (server, entry) = auths.iter().next().unwrap();
        let secure: &[u16] = &[443];
        let insecure: &[u16] = &[443, 80];
        assert!(same_registry(server, "127.0.0.1:5000", insecure));
        assert!(
            !same_registry(server, "127.0.0.1", insecure),
            "5000 is no default"
        );
        assert!(!same_registry(server, "127.0.0.1:80", insecure));
        // The scheme's default port is the same registry as no port, both ways.
        assert!(same_registry("registry:80", "registry", insecure));
        assert!(same_registry("registry", "registry:80", insecure));
        assert!(
            !same_registry("registry:80", "registry", secure),
            "80 is HTTP's"
        );
        assert!(same_registry("registry:443", "registry", secure));
        assert!(same_registry(
            "https://Registry/v1/",
            "registry:443",
            secure
        ));
        assert!(!same_registry("registry:80", "registry:443", insecure));
        assert!(!same_registry("registry", "other", insecure));
        assert!(same_registry("[::1]:443", "[::1]", secure));
        assert!(!same_registry("[::1]:5000", "[::1]", secure));
        let c = entry_credentials(entry).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        assert!(
            !format!("{c:?}").contains("\"p\""),
            "the password never shows"
        );
    }

    #[test]
    fn auth_field_and_aliases() {
        let auth = base64::engine::general_purpose::STANDARD.encode("me:secret");
        let s = secret(&format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}}}}}}"#
        ));
        let (server, entry) = docker_auths(&s).unwrap().into_iter().next().unwrap();
        assert!(same_registry(&server, "docker.io", &[443]));
        assert_eq!(entry_credentials(&entry).unwrap().password, "secret");
    }

    #[test]
    fn redaction_blanks_values() {
        let s = secret(&docker_config_json("h:1", "u", "p", "")).redacted();
        assert_eq!(s.data[DOCKER_CONFIG_JSON_KEY], "");
        assert!(docker_config_cause(&secret("{}")).is_some());
    }
}
