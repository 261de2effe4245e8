//! `Auth`: users, service accounts, access tokens and role bindings in the metadata store, and
//! authentication of the credentials a request carries.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_storage::record::{decode, encode};
use berth_storage::{Record, TxError, Txn};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::jwt::Keys;
use super::policy::{ClusterRole, Grants, Role};
use super::throttle::{LoginLimits, LoginThrottle, Throttled};
use crate::registry::{Namespace, Registry};

/// How long a verified password is remembered, so Basic auth on every request of a push does
/// not pay for bcrypt each time.
const PASSWORD_CACHE_TTL: Duration = Duration::from_secs(60);
const BCRYPT_COST: u32 = 10;
/// Prefix of opaque access tokens (`berth_<id>_<secret>`).
const TOKEN_PREFIX: &str = "berth_";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Too many failed logins for the name or from the source.
    #[error("too many failed login attempts; try again in {} seconds", .0.retry_after_secs())]
    Throttled(Throttled),
    #[error("storage failure: {0}")]
    Storage(#[from] berth_storage::Error),
}

impl From<TxError<AuthError>> for AuthError {
    fn from(e: TxError<AuthError>) -> Self {
        match e {
            TxError::Abort(e) => e,
            TxError::Storage(e) => AuthError::Storage(e),
        }
    }
}

impl From<crate::registry::Error> for AuthError {
    fn from(e: crate::registry::Error) -> Self {
        AuthError::Invalid(e.to_string())
    }
}

pub type Result<T, E = AuthError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    /// bcrypt; none for service accounts, which authenticate with tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub service_account: bool,
    #[serde(default)]
    pub cluster_roles: Vec<ClusterRole>,
    pub created: u64,
    /// Counts the role bindings and access tokens ever given to the user. A deletion lists
    /// them before its transaction (which cannot scan) and checks in it that this is unchanged,
    /// so one given meanwhile, through any replica, is not left behind.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub grants: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Record for UserRecord {
    const KIND: &'static str = "user";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub user: String,
    /// sha256 of the secret part; the token itself is shown once, at creation.
    pub secret_sha256: String,
    #[serde(default)]
    pub description: String,
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}
impl Record for TokenRecord {
    const KIND: &'static str = "token";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindingRecord {
    pub role: Role,
}
impl Record for BindingRecord {
    const KIND: &'static str = "rolebinding";
    const VERSION: u8 = 1;
}

mod keys {
    pub fn user(name: &str) -> Vec<u8> {
        format!("user\0{name}").into_bytes()
    }
    pub fn users() -> Vec<u8> {
        b"user\0".to_vec()
    }
    pub fn token(id: &str) -> Vec<u8> {
        format!("token\0{id}").into_bytes()
    }
    pub fn tokens() -> Vec<u8> {
        b"token\0".to_vec()
    }
    pub fn binding(ns: &str, user: &str) -> Vec<u8> {
        format!("rolebinding\0{ns}\0{user}").into_bytes()
    }
    pub fn bindings(ns: &str) -> Vec<u8> {
        format!("rolebinding\0{ns}\0").into_bytes()
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Random, URL-safe text with about 240 bits of entropy.
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A user name: a DNS-1123 label, or `system:serviceaccount:<ns>:<name>`-free simple names.
fn valid_user_name(name: &str) -> bool {
    Namespace::parse(name).is_ok()
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub cluster_roles: Vec<ClusterRole>,
    pub namespace_roles: BTreeMap<String, Role>,
    /// Repository actions a registry token was scoped to (`None`: not scope-limited).
    pub scope: Option<Vec<super::jwt::Access>>,
}

impl Grants for Identity {
    fn cluster_roles(&self) -> &[ClusterRole] {
        &self.cluster_roles
    }
    fn namespace_role(&self, ns: &str) -> Option<Role> {
        self.namespace_roles.get(ns).copied()
    }
}

/// The bcrypt hash (of a random password nobody knows) that unknown users and service
/// accounts are verified against, so a failed login costs the same whether the name exists or
/// not and the answer time does not tell which names do.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        bcrypt::hash(random_secret(), BCRYPT_COST).expect("bcrypt hashes a short password")
    })
}

#[derive(Clone)]
pub struct Auth {
    registry: Registry,
    keys: Arc<Keys>,
    /// sha256(user:password) -> when it was verified.
    verified: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    throttle: Arc<LoginThrottle>,
    /// bcrypt verifications run (tests check that every failed path pays for one).
    verifications: Arc<AtomicU64>,
}

impl Auth {
    pub fn new(registry: Registry, limits: LoginLimits) -> Result<Auth> {
        let keys = Arc::new(Keys::load_or_create(&registry)?);
        keys.follow();
        Ok(Auth {
            registry,
            keys,
            verified: Arc::new(Mutex::new(HashMap::new())),
            throttle: Arc::new(LoginThrottle::new(limits)),
            verifications: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn load<R: Record>(&self, key: &[u8]) -> Result<Option<R>> {
        match self.registry.metadata().get(key)? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    fn scan<R: Record>(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, R)>> {
        let meta = self.registry.metadata();
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = meta.scan(prefix, after.as_deref(), 500)?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            after = Some(last.clone());
            for (k, v) in page {
                out.push((k, decode(&v)?));
            }
        }
    }

    pub fn has_users(&self) -> Result<bool> {
        Ok(!self
            .registry
            .metadata()
            .scan(&keys::users(), None, 1)?
            .is_empty())
    }

    // ---- users

    /// Creates a user (with a password) or a service account (without).
    pub async fn create_user(
        &self,
        name: &str,
        password: Option<&str>,
        cluster_roles: Vec<ClusterRole>,
    ) -> Result<UserRecord> {
        if !valid_user_name(name) {
            return Err(AuthError::Invalid(format!(
                "invalid user name {name:?}: lowercase letters, digits and '-', at most 63"
            )));
        }
        let password_hash = match password {
            Some(p) if p.len() < 8 => {
                return Err(AuthError::Invalid(
                    "the password must have at least 8 characters".into(),
                ))
            }
            Some(p) => {
                let p = p.to_string();
                Some(
                    tokio::task::spawn_blocking(move || bcrypt::hash(p, BCRYPT_COST))
                        .await
                        .map_err(|e| AuthError::Invalid(e.to_string()))?
                        .map_err(|e| AuthError::Invalid(e.to_string()))?,
                )
            }
            None => None,
        };
        let record = UserRecord {
            name: name.to_string(),
            service_account: password_hash.is_none(),
            password_hash,
            cluster_roles,
            created: now(),
            grants: 0,
        };
        let key = keys::user(name);
        let stored = record.clone();
        // Records naming a user that does not exist are leftovers (of deletions made before
        // they removed bindings and tokens); they must not grant the new user anything.
        let leftovers = self.owned_keys(name)?;
        self.registry
            .write_changes_as(move |tx: &mut dyn Txn, _| {
                if tx.get(&key)?.is_some() {
                    return Err(TxError::Abort(AuthError::AlreadyExists(format!(
                        "user {:?}",
                        stored.name
                    ))));
                }
                for k in &leftovers {
                    tx.delete(k)?;
                }
                tx.put(&key, &encode(&stored))?;
                Ok(())
            })
            .await?;
        Ok(record)
    }

    /// The keys of every role binding and access token of `name`.
    fn owned_keys(&self, name: &str) -> Result<Vec<Vec<u8>>> {
        let mut owned: Vec<Vec<u8>> = self
            .scan::<TokenRecord>(&keys::tokens())?
            .into_iter()
            .filter(|(_, t)| t.user == name)
            .map(|(k, _)| k)
            .collect();
        owned.extend(self.binding_keys(name)?);
        Ok(owned)
    }

    pub fn get_user(&self, name: &str) -> Result<UserRecord> {
        self.load(&keys::user(name))?
            .ok_or_else(|| AuthError::NotFound(format!("user {name:?}")))
    }

    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        Ok(self
            .scan::<UserRecord>(&keys::users())?
            .into_iter()
            .map(|(_, u)| u)
            .collect())
    }

    /// Deletes a user (or service account) with everything that grants it access: its
    /// cluster roles (in the user record), its namespace role bindings and its access tokens,
    /// in one transaction. A user later created under the same name starts with nothing.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        loop {
            let listed = self.list_grants(name)?;
            if self.delete_listed(name, listed).await? {
                break;
            }
        }
        self.verified.lock().unwrap().retain(|_, (u, _)| u != name);
        Ok(())
    }

    /// What deleting `name` removes: the user's grant count and the keys of its bindings and
    /// tokens, read in that order (so a grant listed late is also counted).
    fn list_grants(&self, name: &str) -> Result<(u64, Vec<Vec<u8>>)> {
        let grants = self.get_user(name)?.grants;
        Ok((grants, self.owned_keys(name)?))
    }

    /// Deletes `name` and what [`Auth::list_grants`] found; `false` (nothing deleted) when the
    /// user was given a binding or token since, so the listing is stale.
    async fn delete_listed(
        &self,
        name: &str,
        (grants, owned): (u64, Vec<Vec<u8>>),
    ) -> Result<bool> {
        let (key, missing) = (keys::user(name), format!("user {name:?}"));
        self.registry
            .write_changes_as(move |tx: &mut dyn Txn, _| {
                let Some(bytes) = tx.get(&key)? else {
                    return Err(TxError::Abort(AuthError::NotFound(missing.clone())));
                };
                if decode::<UserRecord>(&bytes)?.grants != grants {
                    return Ok(false);
                }
                tx.delete(&key)?;
                for k in &owned {
                    tx.delete(k)?;
                }
                Ok(true)
            })
            .await
    }

    /// In a transaction that gives `user` a binding or token: fails if the user does not
    /// exist, else counts the grant (see [`UserRecord::grants`]).
    fn count_grant(tx: &mut dyn Txn, user: &str) -> Result<(), TxError<AuthError>> {
        let key = keys::user(user);
        let Some(bytes) = tx.get(&key)? else {
            return Err(TxError::Abort(AuthError::NotFound(format!(
                "user {user:?}"
            ))));
        };
        let mut record: UserRecord = decode(&bytes)?;
        record.grants += 1;
        tx.put(&key, &encode(&record))?;
        Ok(())
    }

    /// Adds or removes a cluster role of a user.
    pub async fn set_cluster_role(&self, user: &str, role: ClusterRole, on: bool) -> Result<()> {
        let (key, user) = (keys::user(user), user.to_string());
        self.registry
            .write_changes_as(move |tx: &mut dyn Txn, _| {
                let Some(bytes) = tx.get(&key)? else {
                    return Err(TxError::Abort(AuthError::NotFound(format!(
                        "user {user:?}"
                    ))));
                };
                let mut u: UserRecord = decode(&bytes)?;
                u.cluster_roles.retain(|r| *r != role);
                if on {
                    u.cluster_roles.push(role);
                    u.cluster_roles.sort();
                }
                tx.put(&key, &encode(&u))?;
                Ok(())
            })
            .await
    }

    // ---- role bindings

    /// Binds `role` to `user` in `ns` (`None` removes the binding).
    pub async fn bind(&self, ns: &str, user: &str, role: Option<Role>) -> Result<()> {
        Namespace::parse(ns).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let (key, user_key) = (keys::binding(ns, user), keys::user(user));
        let user = user.to_string();
        self.registry
            .write_changes_as(move |tx: &mut dyn Txn, _| {
                match role {
                    Some(role) => {
                        Self::count_grant(tx, &user)?;
                        tx.put(&key, &encode(&BindingRecord { role }))?
                    }
                    None => {
                        if tx.get(&user_key)?.is_none() {
                            return Err(TxError::Abort(AuthError::NotFound(format!(
                                "user {user:?}"
                            ))));
                        }
                        if tx.get(&key)?.is_none() {
                            return Err(TxError::Abort(AuthError::NotFound(format!(
                                "role binding of {user:?}"
                            ))));
                        }
                        tx.delete(&key)?
                    }
                }
                Ok(())
            })
            .await
    }

    pub fn bindings(&self, ns: &str) -> Result<Vec<(String, Role)>> {
        let prefix = keys::bindings(ns);
        Ok(self
            .scan::<BindingRecord>(&prefix)?
            .into_iter()
            .map(|(k, b)| {
                (
                    String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                    b.role,
                )
            })
            .collect())
    }

    /// Every namespace binding of `user`: (key, namespace, role). Scans the bindings; there
    /// are few per deployment.
    fn user_bindings(&self, user: &str) -> Result<Vec<(Vec<u8>, String, Role)>> {
        let mut out = Vec::new();
        for (k, b) in self.scan::<BindingRecord>(b"rolebinding\0")? {
            let text = String::from_utf8_lossy(&k);
            let mut parts = text.split('\0').skip(1);
            if let (Some(ns), Some(u)) = (parts.next(), parts.next()) {
                if u == user {
                    out.push((k.clone(), ns.to_string(), b.role));
                }
            }
        }
        Ok(out)
    }

    fn binding_keys(&self, user: &str) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .user_bindings(user)?
            .into_iter()
            .map(|(k, _, _)| k)
            .collect())
    }

    /// Every namespace role of `user`.
    fn namespace_roles(&self, user: &str) -> Result<BTreeMap<String, Role>> {
        Ok(self
            .user_bindings(user)?
            .into_iter()
            .map(|(_, ns, role)| (ns, role))
            .collect())
    }

    pub fn identity(&self, user: &UserRecord) -> Result<Identity> {
        Ok(Identity {
            user: user.name.clone(),
            cluster_roles: user.cluster_roles.clone(),
            namespace_roles: self.namespace_roles(&user.name)?,
            scope: None,
        })
    }

    // ---- tokens

    /// Creates an access token for `user`; returns the record and the token (shown once).
    pub async fn create_token(
        &self,
        user: &str,
        description: &str,
        ttl: Option<Duration>,
    ) -> Result<(TokenRecord, String)> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let secret = random_secret();
        let record = TokenRecord {
            id: id.clone(),
            user: user.to_string(),
            secret_sha256: sha256_hex(&secret),
            description: description.to_string(),
            created: now(),
            expires: ttl.map(|t| now() + t.as_secs()),
        };
        let (key, stored) = (keys::token(&id), record.clone());
        self.registry
            .write_changes_as(move |tx: &mut dyn Txn, _| {
                Self::count_grant(tx, &stored.user)?;
                tx.put(&key, &encode(&stored))?;
                Ok(())
            })
            .await?;
        Ok((record, format!("{TOKEN_PREFIX}{id}_{secret}")))
    }

    pub fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>> {
        Ok(self
            .scan::<TokenRecord>(&keys::tokens())?
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| user.is_none_or(|u| t.user == u))
            .collect())
    }

    pub fn get_token(&self, id: &str) -> Result<TokenRecord> {
        self.load(&keys::token(id))?
            .ok_or_else(|| AuthError::NotFound(format!("token {id:?}")))
    }

    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        let (key, id) = (keys::token(id), id.to_string());
        self.registry
            .write_changes_as(move |tx: &mut dyn Txn, _| {
                if tx.get(&key)?.is_none() {
                    return Err(TxError::Abort(AuthError::NotFound(format!("token {id:?}"))));
                }
                tx.delete(&key)?;
                Ok(())
            })
            .await
    }

    // ---- authentication

    /// The user an opaque access token belongs to, if the token is valid.
    pub fn check_token(&self, token: &str) -> Result<Option<UserRecord>> {
        let Some((id, secret)) = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|t| t.split_once('_'))
        else {
            return Ok(None);
        };
        let Some(record) = self.load::<TokenRecord>(&keys::token(id))? else {
            return Ok(None);
        };
        if record.secret_sha256 != sha256_hex(secret) || record.expires.is_some_and(|e| e <= now())
        {
            return Ok(None);
        }
        self.load(&keys::user(&record.user))
    }

    /// The user a name and password (or, as docker allows, an access token as the password)
    /// belong to. Password failures count against the budgets of the name and of `source`;
    /// once one is spent, every attempt is refused with [`AuthError::Throttled`].
    pub async fn check_password(
        &self,
        name: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<Option<UserRecord>> {
        if password.starts_with(TOKEN_PREFIX) {
            // 240 random bits are not guessed; tokens do not spend login budgets.
            return Ok(self
                .check_token(password)?
                .filter(|u| u.name == name || name.is_empty() || name == "token"));
        }
        if let Err(throttled) = self.throttle.check(name, source) {
            tracing::warn!(
                user = ?name,
                source = ?source,
                retry_after_secs = throttled.retry_after_secs(),
                "login refused: too many failed attempts"
            );
            return Err(AuthError::Throttled(throttled));
        }
        let user = self.load::<UserRecord>(&keys::user(name))?;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let cache_key = hash
            .as_ref()
            .map(|hash| sha256_hex(&format!("{name}\0{password}\0{hash}")));
        if let Some(cache_key) = &cache_key {
            if let Some((_, at)) = self.verified.lock().unwrap().get(cache_key) {
                if at.elapsed() < PASSWORD_CACHE_TTL {
                    return Ok(user);
                }
            }
        }
        let ok = self.verify(password, hash).await?;
        let (Some(user), Some(cache_key), true) = (user, cache_key, ok) else {
            if self.throttle.fail(name, source) {
                tracing::warn!(user = ?name, source = ?source, "failed logins spent a budget");
            }
            return Ok(None);
        };
        let mut cache = self.verified.lock().unwrap();
        cache.retain(|_, (_, at)| at.elapsed() < PASSWORD_CACHE_TTL);
        cache.insert(cache_key, (user.name.clone(), Instant::now()));
        Ok(Some(user))
    }

    /// bcrypt-verifies `password` against `hash`, or against [`dummy_hash`] when there is none
    /// (unknown users, service accounts), which always fails but costs the same.
    async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool> {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let password = password.to_string();
        tokio::task::spawn_blocking(move || {
            let real = hash.is_some();
            let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
            bcrypt::verify(password, hash).unwrap_or(false) && real
        })
        .await
        .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_storage::fs::FsBlobStore;
    use berth_storage::memory::MemoryMetadata;

    fn auth(dir: &std::path::Path) -> Auth {
        let registry = Registry::new(
            Arc::new(MemoryMetadata::default()),
            Arc::new(FsBlobStore::open(dir).unwrap()),
            crate::registry::Limits::default(),
            "localhost:5000".into(),
        )
        .unwrap();
        Auth::new(registry, LoginLimits::default()).unwrap()
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let cost = |h: &str| h.split('$').nth(2).unwrap().parse::<u32>().unwrap();
        assert_eq!(cost(dummy_hash()), BCRYPT_COST);
        // A malformed hash would fail fast instead of costing a verification.
        assert!(matches!(bcrypt::verify("guess", dummy_hash()), Ok(false)));
    }

    #[tokio::test]
    async fn every_failed_password_costs_one_bcrypt_verification() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path());
        auth.create_user("alice", Some("alice-password"), vec![])
            .await
            .unwrap();
        auth.create_user("robot", None, vec![]).await.unwrap();
        let count = || auth.verifications.load(Ordering::Relaxed);
        for (name, password) in [
            ("nobody", "some-password"),
            ("robot", "some-password"),
            ("alice", "wrong-password"),
        ] {
            let before = count();
            let found = auth.check_password(name, password, None).await.unwrap();
            assert!(found.is_none(), "{name}");
            assert_eq!(count(), before + 1, "{name} pays for bcrypt");
        }
        let found = auth.check_password("alice", "alice-password", None).await;
        assert_eq!(found.unwrap().unwrap().name, "alice");
    }

    #[tokio::test]
    async fn a_grant_given_after_a_deletion_listed_them_is_deleted_too() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path());
        auth.create_user("eve", None, vec![]).await.unwrap();
        auth.bind("a", "eve", Some(Role::View)).await.unwrap();
        // A deletion lists eve's grants; then, say through another replica, she gets more.
        let listed = auth.list_grants("eve").unwrap();
        auth.bind("b", "eve", Some(Role::Admin)).await.unwrap();
        let (_, token) = auth.create_token("eve", "", None).await.unwrap();
        assert!(!auth.delete_listed("eve", listed).await.unwrap());
        assert!(
            auth.get_user("eve").is_ok(),
            "a stale listing deletes nothing"
        );
        auth.delete_user("eve").await.unwrap();
        assert!(auth.bindings("a").unwrap().is_empty());
        assert!(auth.bindings("b").unwrap().is_empty());
        assert!(auth.list_tokens(Some("eve")).unwrap().is_empty());
        assert!(auth.check_token(&token).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_new_user_does_not_inherit_leftovers_of_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path());
        auth.create_user("eve", None, vec![]).await.unwrap();
        auth.bind("b", "eve", Some(Role::Admin)).await.unwrap();
        let (_, token) = auth.create_token("eve", "", None).await.unwrap();
        // A deletion from before deletions removed bindings and tokens: the user record only.
        auth.registry
            .write_changes_as(|tx: &mut dyn Txn, _| {
                tx.delete(&keys::user("eve"))?;
                Ok::<_, TxError<AuthError>>(())
            })
            .await
            .unwrap();
        let eve = auth.create_user("eve", None, vec![]).await.unwrap();
        assert!(auth.identity(&eve).unwrap().namespace_roles.is_empty());
        assert!(auth.check_token(&token).unwrap().is_none());
        assert!(auth.bindings("b").unwrap().is_empty());
    }
}
