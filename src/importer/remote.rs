//! A client of the OCI distribution API for one remote repository: what the importer and
//! pull-through use to read manifests, blobs and tags from other registries.
//!
//! # Transport
//! HTTPS, verified against the system roots plus an optional PEM bundle. The first call probes
//! `GET /v2/` and remembers the scheme that answered, so later calls never retry:
//! - with `insecure`, certificates are not verified, and when the HTTPS connection fails the
//!   client falls back to plain HTTP on the same host and port (what Docker does for insecure
//!   registries);
//! - without it, a host that fails over HTTPS but answers plain HTTP gives
//!   [`RemoteError::HttpOnly`], and a redirect from HTTPS to HTTP is refused.
//!
//! Every request (to the registry, its token realm, and redirect targets) must be allowed by
//! [`RemoteOptions::allowed`] (`allowed_registries_for_import`): by name before it is sent, and
//! by the addresses the name resolves to when it connects. A refusal is
//! [`RemoteError::NotAllowed`].
//!
//! # Authentication
//! Anonymous until challenged. A `401` with `WWW-Authenticate: Basic` is answered with the
//! credentials; `Bearer realm=..,service=..` with the Docker token flow: `GET
//! realm?service=..&scope=repository:<repo>:pull` (with Basic credentials when there are any),
//! whose `token` (or `access_token`) is cached until `expires_in` (default 60 s) runs out. A
//! request is retried once after a challenge. The challenge seen by the probe is answered up
//! front. Credentials and tokens are never logged and never appear in errors; redirected blob
//! GETs (to storage on another host) do not carry the `Authorization` header.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use berth_storage::digest::Hasher;
use berth_storage::Digest;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode, Url};
use tokio::sync::{Mutex, OnceCell};

use super::allowed::{find_refusal, AllowedRegistries};
use super::reference::ImageReference;

/// Manifests larger than this are refused.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// A tags page larger than this is refused.
const MAX_TAGS_PAGE_BYTES: u64 = 16 << 20;
/// A token response larger than this is refused.
const MAX_TOKEN_BYTES: u64 = 1 << 20;
/// Pagination stops with an error beyond this many pages.
const MAX_TAG_PAGES: usize = 10_000;
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 10;
/// Lifetime of a token whose response has no `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The `Accept` header of manifest GETs.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// A username and password (or token) for one registry. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach a remote registry.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Accept invalid certificates and fall back to plain HTTP.
    pub insecure: bool,
    pub credentials: Option<Credentials>,
    /// Extra PEM roots trusted besides the system's.
    pub ca_bundle: Option<PathBuf>,
    /// Connect timeout, idle-read timeout, and the total time of every call except a blob
    /// stream (which may take as long as it keeps moving).
    pub timeout: Duration,
    /// Where requests may go: the registry, its token realm, redirects, and the addresses
    /// their names resolve to.
    pub allowed: Arc<AllowedRegistries>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            insecure: false,
            credentials: None,
            ca_bundle: None,
            timeout: Duration::from_secs(30),
            allowed: Arc::default(),
        }
    }
}

/// A manifest or index as the remote serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteManifest {
    /// The digest of `body` (the requested one for a by-digest fetch, verified).
    pub digest: Digest,
    /// The media type, without parameters: the `Content-Type`, or the document's own
    /// `mediaType` when the header is missing or generic.
    pub media_type: String,
    /// The exact bytes.
    pub body: Bytes,
}

/// The chunks of a blob; the last item is an error if the bytes do not match the digest.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, RemoteError>> + Send + 'static>>;

/// Why a remote call failed. The messages are those OpenShift puts in import conditions;
/// [`RemoteError::reason`] is the Kubernetes Status reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The manifest, blob or repository (the pull spec) does not exist.
    #[error("dockerimage.image.openshift.io \"{0}\" not found")]
    NotFound(String),
    /// Missing or refused credentials (the pull spec).
    #[error("you may not have access to the container image \"{0}\"")]
    Unauthorized(String),
    /// Authenticated but denied (the pull spec).
    #[error("access to the container image \"{0}\" is forbidden")]
    Forbidden(String),
    /// The registry speaks only plain HTTP and `insecure` is not set (`registry/repo`).
    #[error("the repository {0} is HTTP only and requires the insecure flag to import")]
    HttpOnly(String),
    /// The remote rate-limits us (the pull spec).
    #[error("too many requests to the registry for \"{0}\"; try again later")]
    TooManyRequests(String),
    /// The registry cannot be reached (connection, TLS, timeout).
    #[error("Internal error occurred: {0}")]
    Unreachable(String),
    /// `allowed_registries_for_import` refuses the registry, a token realm, a redirect target
    /// or an address a name resolves to (the whole message).
    #[error("{0}")]
    NotAllowed(String),
    /// The remote served something unusable: a digest mismatch, an oversized or malformed
    /// manifest, a bad reference.
    #[error("Internal error occurred: {0}")]
    Invalid(String),
    /// Anything else (unexpected statuses, local configuration).
    #[error("Internal error occurred: {0}")]
    Other(String),
}

impl RemoteError {
    /// The Kubernetes Status reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            RemoteError::NotFound(_) => "NotFound",
            RemoteError::Unauthorized(_) => "Unauthorized",
            RemoteError::Forbidden(_) | RemoteError::NotAllowed(_) => "Forbidden",
            RemoteError::TooManyRequests(_) => "TooManyRequests",
            RemoteError::HttpOnly(_)
            | RemoteError::Unreachable(_)
            | RemoteError::Invalid(_)
            | RemoteError::Other(_) => "InternalError",
        }
    }

    /// The HTTP status code that goes with [`RemoteError::reason`].
    pub fn code(&self) -> u16 {
        match self {
            RemoteError::NotFound(_) => 404,
            RemoteError::Unauthorized(_) => 401,
            RemoteError::Forbidden(_) | RemoteError::NotAllowed(_) => 403,
            RemoteError::TooManyRequests(_) => 429,
            _ => 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct CachedToken {
    value: String,
    expires: Instant,
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    token: Option<CachedToken>,
}

/// A client of one remote repository. Cheap to share by reference across tasks.
pub struct Remote {
    /// The registry as written in the pull spec (for messages).
    registry: String,
    repository: String,
    /// Where the API is served (`registry-1.docker.io` for Docker Hub).
    api_host: String,
    insecure: bool,
    timeout: Duration,
    credentials: Option<Credentials>,
    allowed: Arc<AllowedRegistries>,
    client: reqwest::Client,
    /// `scheme://host/` once the probe has found a scheme that works.
    base: OnceCell<Url>,
    auth: Mutex<AuthState>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("registry", &self.registry)
            .field("repository", &self.repository)
            .field("api_host", &self.api_host)
            .field("insecure", &self.insecure)
            .field("base", &self.base.get().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// A client of `reference`'s repository (its tag or digest is not used). Fails on local
    /// configuration (an unreadable or empty CA bundle), and with [`RemoteError::NotAllowed`]
    /// for a registry `options.allowed` refuses.
    pub fn new(reference: &ImageReference, options: RemoteOptions) -> Result<Remote, RemoteError> {
        let api_host = reference.api_host().to_string();
        // The reference grammar already rules these out; a URL must never get userinfo or a
        // path from the host.
        if api_host.contains(['@', '/', '?', '#']) {
            return Err(RemoteError::Invalid(format!(
                "invalid registry host {api_host:?}"
            )));
        }
        let insecure = options.insecure;
        options
            .allowed
            .admit(&reference.registry, insecure)
            .map_err(|r| RemoteError::NotAllowed(r.to_string()))?;
        let allowed = options.allowed.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            if let Err(refused) = allowed.admit_url(attempt.url()) {
                return attempt.error(refused);
            }
            let downgrade = attempt.url().scheme() == "http"
                && attempt
                    .previous()
                    .last()
                    .is_some_and(|u| u.scheme() == "https");
            if downgrade && !insecure {
                attempt.error("refusing to follow a redirect from https to http")
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.timeout)
            .read_timeout(options.timeout)
            .redirect(policy)
            .dns_resolver(options.allowed.resolver())
            .tls_built_in_webpki_certs(false)
            .tls_built_in_native_certs(true);
        if insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &options.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                RemoteError::Other(format!("cannot read CA bundle {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RemoteError::Other(format!("invalid CA bundle {}: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(RemoteError::Other(format!(
                    "CA bundle {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| {
            RemoteError::Other(format!("cannot build the HTTP client: {}", chain(&e)))
        })?;
        Ok(Remote {
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            api_host,
            insecure,
            timeout: options.timeout,
            credentials: options.credentials,
            allowed: options.allowed,
            client,
            base: OnceCell::new(),
            auth: Mutex::new(AuthState::default()),
        })
    }

    /// `registry/repository` as in the pull spec.
    pub fn repository_spec(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The scheme that answered (`https` or `http`), once a call has been made.
    pub fn scheme(&self) -> Option<&str> {
        self.base.get().map(Url::scheme)
    }

    /// Fetches a manifest or index by tag or digest.
    pub async fn get_manifest(&self, reference: &str) -> Result<RemoteManifest, RemoteError> {
        let (what, requested) = self.parse_reference(reference)?;
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let resp = self.get(&path, Some(MANIFEST_ACCEPT), &what, false).await?;
        let header_type = header_str(resp.headers(), CONTENT_TYPE.as_str());
        let claimed = header_str(resp.headers(), "docker-content-digest")
            .and_then(|d| d.parse::<Digest>().ok());
        let body = read_limited(resp, MAX_MANIFEST_BYTES, "the manifest", &what).await?;

        let digest = match requested {
            Some(expected) => {
                let actual = expected.algorithm().digest_of(&body);
                if actual != expected {
                    return Err(RemoteError::Invalid(format!(
                        "the manifest of {what} has digest {actual}, not the requested {expected}"
                    )));
                }
                expected
            }
            None => {
                if let Some(claimed) = claimed {
                    let actual = claimed.algorithm().digest_of(&body);
                    if actual != claimed {
                        return Err(RemoteError::Invalid(format!(
                            "the registry says the manifest of {what} has digest {claimed}, \
                             but its bytes hash to {actual}"
                        )));
                    }
                }
                Digest::sha256_of(&body)
            }
        };
        let media_type = manifest_media_type(header_type.as_deref(), &body)
            .map_err(|why| RemoteError::Invalid(format!("the manifest of {what} {why}")))?;
        Ok(RemoteManifest {
            digest,
            media_type,
            body,
        })
    }

    /// Reads a whole blob (a config) of at most `max` bytes, verified against `digest`.
    pub async fn get_blob_bytes(&self, digest: &Digest, max: u64) -> Result<Bytes, RemoteError> {
        let what = format!("{}@{digest}", self.repository_spec());
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        let resp = self.get(&path, None, &what, false).await?;
        let body = read_limited(resp, max, "the blob", &what).await?;
        let actual = digest.algorithm().digest_of(&body);
        if &actual != digest {
            return Err(RemoteError::Invalid(format!(
                "the blob {what} hashes to {actual}"
            )));
        }
        Ok(body)
    }

    /// Opens a blob for streaming: its length when the remote says it, and its chunks. The
    /// stream ends with [`RemoteError::Invalid`] if the bytes do not hash to `digest`.
    pub async fn open_blob(
        &self,
        digest: &Digest,
    ) -> Result<(Option<u64>, BlobStream), RemoteError> {
        let what = format!("{}@{digest}", self.repository_spec());
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        let resp = self.get(&path, None, &what, true).await?;
        let length = resp.content_length();
        let stream = VerifyingStream {
            inner: Box::pin(resp.bytes_stream()),
            hasher: Some(digest.algorithm().hasher()),
            expected: digest.clone(),
            what,
        };
        Ok((length, Box::pin(stream)))
    }

    /// Every tag of the repository, following `Link: <…>; rel="next"` pagination.
    pub async fn list_tags(&self) -> Result<Vec<String>, RemoteError> {
        self.list_tags_paged(None).await
    }

    /// [`Remote::list_tags`], asking for pages of `page_size` tags (`?n=`).
    pub async fn list_tags_paged(
        &self,
        page_size: Option<u32>,
    ) -> Result<Vec<String>, RemoteError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let what = self.repository_spec();
        let mut path = format!("/v2/{}/tags/list", self.repository);
        if let Some(n) = page_size {
            path.push_str(&format!("?n={n}"));
        }
        let mut tags = Vec::new();
        let mut seen = HashSet::new();
        loop {
            if !seen.insert(path.clone()) || seen.len() > MAX_TAG_PAGES {
                return Err(RemoteError::Invalid(format!(
                    "the tag list of {what} does not end (page {path} repeats or too many pages)"
                )));
            }
            let resp = self
                .get(&path, Some("application/json"), &what, false)
                .await?;
            let next = next_link(resp.headers());
            let body = read_limited(resp, MAX_TAGS_PAGE_BYTES, "the tag list", &what).await?;
            let page: TagList = serde_json::from_slice(&body).map_err(|e| {
                RemoteError::Invalid(format!("the tag list of {what} is not valid JSON: {e}"))
            })?;
            tags.extend(page.tags.unwrap_or_default());
            let Some(next) = next else { break };
            // Stay on this registry: only the path and query of the link are used.
            let base = self.base().await?;
            let url = base
                .join(&path)
                .and_then(|current| current.join(&next))
                .map_err(|e| {
                    RemoteError::Invalid(format!("the tag list of {what} has a bad next link: {e}"))
                })?;
            if !url.path().starts_with("/v2/") {
                return Err(RemoteError::Invalid(format!(
                    "the tag list of {what} links outside /v2/"
                )));
            }
            path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
        }
        Ok(tags)
    }

    /// The pull spec for errors, and the digest to verify when `reference` is one.
    fn parse_reference(&self, reference: &str) -> Result<(String, Option<Digest>), RemoteError> {
        let spec = self.repository_spec();
        if reference.contains(':') {
            let digest = reference.parse::<Digest>().map_err(|e| {
                RemoteError::Invalid(format!("invalid digest {reference:?} for {spec}: {e}"))
            })?;
            Ok((format!("{spec}@{digest}"), Some(digest)))
        } else if is_valid_tag(reference) {
            Ok((format!("{spec}:{reference}"), None))
        } else {
            Err(RemoteError::Invalid(format!(
                "invalid tag {reference:?} for {spec}"
            )))
        }
    }

    /// The base URL, probing the scheme on first use.
    async fn base(&self) -> Result<&Url, RemoteError> {
        self.base.get_or_try_init(|| self.probe()).await
    }

    /// `GET /v2/` over HTTPS, then (see the module docs) over HTTP. Any HTTP answer means the
    /// scheme works; a `401` challenge is remembered.
    async fn probe(&self) -> Result<Url, RemoteError> {
        let https = Url::parse(&format!("https://{}/", self.api_host)).map_err(|e| {
            RemoteError::Invalid(format!("invalid registry host {:?}: {e}", self.api_host))
        })?;
        let https_err = match self.ping(&https).await {
            Ok(resp) => {
                self.remember_challenge(resp.headers()).await;
                return Ok(https);
            }
            Err(e) => e,
        };
        if let Some(refused) = find_refusal(&https_err) {
            return Err(RemoteError::NotAllowed(refused.to_string()));
        }
        tracing::debug!(host = %self.api_host, error = %chain(&https_err), "https probe failed");
        let http = Url::parse(&format!("http://{}/", self.api_host)).map_err(|e| {
            RemoteError::Invalid(format!("invalid registry host {:?}: {e}", self.api_host))
        })?;
        match self.ping(&http).await {
            // Only a registry answering over HTTP counts: not a redirect back to HTTPS, and not
            // the 400 a TLS server sends to a plain-HTTP request on its port.
            Ok(resp) if speaks_registry_over_http(&resp) => {
                if self.insecure {
                    self.remember_challenge(resp.headers()).await;
                    Ok(http)
                } else {
                    Err(RemoteError::HttpOnly(self.repository_spec()))
                }
            }
            Ok(_) => Err(unreachable_error(
                &https.join("v2/").unwrap_or(https),
                https_err,
            )),
            Err(http_err) => {
                let mut err = unreachable_error(&https.join("v2/").unwrap_or(https), https_err);
                if self.insecure {
                    if let RemoteError::Unreachable(detail) = &mut err {
                        let http_url = http.join("v2/").unwrap_or(http);
                        detail.push_str(&format!(
                            "; Get \"{}\": {}",
                            redact(&http_url),
                            chain(&http_err.without_url())
                        ));
                    }
                }
                Err(err)
            }
        }
    }

    async fn ping(&self, base: &Url) -> Result<Response, reqwest::Error> {
        let url = base.join("v2/").expect("a static path joins");
        tracing::debug!(url = %redact(&url), "registry probe");
        self.client.get(url).timeout(self.timeout).send().await
    }

    async fn remember_challenge(&self, headers: &HeaderMap) {
        if let Some(challenge) = pick_challenge(headers) {
            let mut auth = self.auth.lock().await;
            if auth.challenge.as_ref() != Some(&challenge) {
                auth.token = None;
            }
            auth.challenge = Some(challenge);
        }
    }

    /// A GET of `path` (absolute, with any query) on the registry, authenticated as the
    /// registry asks, retried once after a `401` challenge; non-2xx statuses become errors.
    async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
        what: &str,
        streaming: bool,
    ) -> Result<Response, RemoteError> {
        let base = self.base().await?;
        let url = base
            .join(path)
            .map_err(|e| RemoteError::Invalid(format!("invalid request path {path:?}: {e}")))?;
        let mut sent = self.authorization(what).await?;
        let mut retried = false;
        loop {
            let mut req = self.client.get(url.clone());
            if let Some(accept) = accept {
                req = req.header(ACCEPT, accept);
            }
            if let Some(auth) = &sent {
                req = req.header(AUTHORIZATION, auth.clone());
            }
            if !streaming {
                req = req.timeout(self.timeout);
            }
            tracing::debug!(url = %redact(&url), authenticated = sent.is_some(), "GET");
            let resp = req.send().await.map_err(|e| unreachable_error(&url, e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                if let Some(challenge) = pick_challenge(resp.headers()) {
                    {
                        let mut auth = self.auth.lock().await;
                        auth.challenge = Some(challenge);
                        auth.token = None;
                    }
                    let next = self.authorization(what).await?;
                    if next.is_some() && next != sent {
                        sent = next;
                        continue;
                    }
                }
            }
            return check_status(resp, what).await;
        }
    }

    /// The `Authorization` header for the current challenge, fetching a token if needed.
    async fn authorization(&self, what: &str) -> Result<Option<HeaderValue>, RemoteError> {
        let mut auth = self.auth.lock().await;
        match auth.challenge.clone() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials.as_ref().map(basic_header)),
            Some(Challenge::Bearer { realm, service }) => {
                if let Some(token) = &auth.token {
                    if token.expires > Instant::now() {
                        return Ok(Some(bearer_header(&token.value)?));
                    }
                }
                let token = self.fetch_token(&realm, service.as_deref(), what).await?;
                let header = bearer_header(&token.value)?;
                auth.token = Some(token);
                Ok(Some(header))
            }
        }
    }

    /// The Docker token flow: `GET realm?service=&scope=repository:<repo>:pull`.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        what: &str,
    ) -> Result<CachedToken, RemoteError> {
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let mut url = Url::parse(realm).map_err(|e| {
            RemoteError::Invalid(format!(
                "the registry's token realm {realm:?} is not a URL: {e}"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RemoteError::Invalid(format!(
                "the registry's token realm {realm:?} is not an http(s) URL"
            )));
        }
        url.set_username("").ok();
        url.set_password(None).ok();
        // The realm is the registry's to choose: it must not send us (with the registry's
        // credentials) anywhere the registry itself could not.
        self.allowed
            .admit_url(&url)
            .map_err(|r| RemoteError::NotAllowed(r.to_string()))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", &format!("repository:{}:pull", self.repository));
        }
        tracing::debug!(url = %url, authenticated = self.credentials.is_some(), "token request");
        let mut req = self.client.get(url.clone()).timeout(self.timeout);
        if let Some(creds) = &self.credentials {
            req = req.header(AUTHORIZATION, basic_header(creds));
        }
        let resp = req.send().await.map_err(|e| unreachable_error(&url, e))?;
        let status = resp.status();
        let denied = matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
        );
        if !status.is_success() && !denied {
            return Err(RemoteError::Other(format!(
                "the token server {} answered {status}",
                redact(&url)
            )));
        }
        let resp = check_status(resp, what).await?;
        let body = read_limited(resp, MAX_TOKEN_BYTES, "the token response", what).await?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            RemoteError::Invalid(format!("the token server answered invalid JSON: {e}"))
        })?;
        let value = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| {
                RemoteError::Invalid("the token server answered no token".to_string())
            })?;
        let lifetime = parsed
            .expires_in
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Renew a little early so a token does not expire in flight.
        let margin = (lifetime / 10).min(Duration::from_secs(10));
        Ok(CachedToken {
            value,
            expires: Instant::now() + lifetime - margin,
        })
    }
}

/// Whether a plain-HTTP probe reached a registry: the final URL is still `http`, and the answer
/// is one a `/v2/` endpoint gives (200, 401) or carries the distribution API header.
fn speaks_registry_over_http(resp: &Response) -> bool {
    resp.url().scheme() == "http"
        && (matches!(resp.status(), StatusCode::OK | StatusCode::UNAUTHORIZED)
            || resp
                .headers()
                .contains_key("docker-distribution-api-version"))
}

/// Maps a non-2xx status to its error.
async fn check_status(resp: Response, what: &str) -> Result<Response, RemoteError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let what = what.to_string();
    match status {
        StatusCode::UNAUTHORIZED => Err(RemoteError::Unauthorized(what)),
        StatusCode::FORBIDDEN => Err(RemoteError::Forbidden(what)),
        StatusCode::NOT_FOUND => Err(RemoteError::NotFound(what)),
        StatusCode::TOO_MANY_REQUESTS => Err(RemoteError::TooManyRequests(what)),
        _ => {
            let url = redact(resp.url());
            let detail = read_limited(resp, 4096, "the error", &what)
                .await
                .ok()
                .map(|body| error_detail(&body))
                .filter(|d| !d.is_empty());
            Err(RemoteError::Other(match detail {
                Some(detail) => format!("Get \"{url}\": unexpected status {status}: {detail}"),
                None => format!("Get \"{url}\": unexpected status {status}"),
            }))
        }
    }
}

/// The messages of an OCI error body, or the start of a text body.
fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(errors) = serde_json::from_slice::<Errors>(body) {
        return errors
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    text.trim().chars().take(200).collect()
}

/// Reads a body of at most `max` bytes.
async fn read_limited(
    mut resp: Response,
    max: u64,
    thing: &str,
    what: &str,
) -> Result<Bytes, RemoteError> {
    let too_big = || RemoteError::Invalid(format!("{thing} of {what} is larger than {max} bytes"));
    if resp.content_length().is_some_and(|len| len > max) {
        return Err(too_big());
    }
    let url = resp.url().clone();
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable_error(&url, e))? {
        if (buf.len() + chunk.len()) as u64 > max {
            return Err(too_big());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The media type of a manifest: the header's when it is specific, else the document's own
/// `mediaType`, else inferred from its shape. The body must be a JSON object.
fn manifest_media_type(header: Option<&str>, body: &[u8]) -> Result<String, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("is not valid JSON: {e}"))?;
    let obj = doc.as_object().ok_or("is not a JSON object")?;
    let header = header
        .map(|h| {
            h.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|h| {
            !h.is_empty()
                && h != "application/json"
                && h != "text/plain"
                && h != "application/octet-stream"
        });
    if let Some(header) = header {
        return Ok(header);
    }
    if let Some(media_type) = obj.get("mediaType").and_then(|m| m.as_str()) {
        return Ok(media_type.to_string());
    }
    if obj.contains_key("manifests") {
        Ok(MEDIA_OCI_INDEX.to_string())
    } else if obj.contains_key("config") || obj.contains_key("layers") {
        Ok(MEDIA_OCI_MANIFEST.to_string())
    } else {
        Err("has no media type".to_string())
    }
}

/// `[\w][\w.-]{0,127}`.
fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn basic_header(creds: &Credentials) -> HeaderValue {
    use base64::Engine;
    let mut value = HeaderValue::try_from(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password))
    ))
    .expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

fn bearer_header(token: &str) -> Result<HeaderValue, RemoteError> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
        RemoteError::Invalid("the token server answered a token that is not a header value".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The challenge to answer: Bearer when offered, else Basic.
fn pick_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let mut basic = false;
    for value in headers.get_all(WWW_AUTHENTICATE) {
        let Ok(value) = value.to_str() else { continue };
        for (scheme, params) in parse_challenges(value) {
            if scheme.eq_ignore_ascii_case("bearer") {
                let param = |name: &str| {
                    params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                };
                if let Some(realm) = param("realm").filter(|r| !r.is_empty()) {
                    return Some(Challenge::Bearer {
                        realm,
                        service: param("service"),
                    });
                }
            } else if scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// Parses `WWW-Authenticate` (RFC 7235): challenges `scheme [param=value, ...]`, separated by
/// commas, with quoted values that may hold commas and `\`-escapes.
fn parse_challenges(header: &str) -> Vec<(String, Vec<(String, String)>)> {
    let s = header.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let is_token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c);
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        // Skip separators before a scheme.
        while i < s.len() && (s[i] == b',' || s[i] == b' ' || s[i] == b'\t') {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        let start = i;
        while i < s.len() && is_token(s[i]) {
            i += 1;
        }
        if i == start {
            // Not a token: skip the byte and resynchronise.
            i += 1;
            continue;
        }
        let scheme = header[start..i].to_string();
        let mut params = Vec::new();
        loop {
            skip_ws(&mut i);
            // A parameter is `name = value`; a bare token starts the next challenge.
            let name_start = i;
            while i < s.len() && is_token(s[i]) {
                i += 1;
            }
            let name_end = i;
            let mut j = i;
            skip_ws(&mut j);
            if name_end == name_start || j >= s.len() || s[j] != b'=' {
                i = name_start;
                break;
            }
            i = j + 1;
            skip_ws(&mut i);
            let value = if i < s.len() && s[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    v.push(s[i]);
                    i += 1;
                }
                i += 1; // the closing quote
                String::from_utf8_lossy(&v).into_owned()
            } else {
                let v_start = i;
                while i < s.len() && s[i] != b',' && s[i] != b' ' && s[i] != b'\t' {
                    i += 1;
                }
                header[v_start..i].to_string()
            };
            params.push((header[name_start..name_end].to_ascii_lowercase(), value));
            skip_ws(&mut i);
            if i < s.len() && s[i] == b',' {
                i += 1;
            } else {
                break;
            }
        }
        out.push((scheme, params));
        if i >= s.len() {
            break;
        }
    }
    out
}

/// The target of `Link: <url>; rel="next"`, if any.
fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            let close = after.find('>')?;
            let target = &after[..close];
            let params_end = after[close..].find('<').map_or(after.len(), |p| close + p);
            let params = &after[close + 1..params_end];
            let is_next = params.split(';').any(|p| {
                let p = p.trim().trim_end_matches(',').trim();
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("rel")
                        && v.trim()
                            .trim_matches('"')
                            .split_ascii_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                })
            });
            if is_next {
                return Some(target.to_string());
            }
            rest = &after[params_end..];
        }
    }
    None
}

/// A URL for logs and messages: no userinfo, no query (presigned storage URLs carry
/// signatures there).
fn redact(url: &Url) -> String {
    let mut url = url.clone();
    url.set_username("").ok();
    url.set_password(None).ok();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

fn unreachable_error(url: &Url, err: reqwest::Error) -> RemoteError {
    if let Some(refused) = find_refusal(&err) {
        return RemoteError::NotAllowed(refused.to_string());
    }
    RemoteError::Unreachable(format!(
        "Get \"{}\": {}",
        redact(url),
        chain(&err.without_url())
    ))
}

/// An error and its sources, `a: b: c`, without repeats.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// Hashes the chunks as they pass and fails the end of the stream on a mismatch.
struct VerifyingStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    hasher: Option<Hasher>,
    expected: Digest,
    what: String,
}

impl Stream for VerifyingStream {
    type Item = Result<Bytes, RemoteError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.hasher.is_none() {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(h) = this.hasher.as_mut() {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.hasher = None;
                Poll::Ready(Some(Err(RemoteError::Unreachable(format!(
                    "reading {}: {}",
                    this.what,
                    chain(&e.without_url())
                )))))
            }
            Poll::Ready(None) => {
                let actual = this.hasher.take().map(Hasher::finish);
                match actual {
                    Some(actual) if actual != this.expected => Poll::Ready(Some(Err(
                        RemoteError::Invalid(format!("the blob {} hashes to {actual}", this.what)),
                    ))),
                    _ => Poll::Ready(None),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn parses_bearer_challenges_with_quoted_commas() {
        let parsed = parse_challenges(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(parsed.len(), 1);
        let (scheme, params) = &parsed[0];
        assert_eq!(scheme, "Bearer");
        assert_eq!(
            params,
            &vec![
                (
                    "realm".to_string(),
                    "https://auth.example.com/token".to_string()
                ),
                ("service".to_string(), "registry.example.com".to_string()),
                ("scope".to_string(), "repository:a/b:pull,push".to_string()),
            ]
        );
        let h = headers(
            "www-authenticate",
            &[r#"Bearer realm="https://auth.example.com/token",service="registry.example.com""#],
        );
        assert_eq!(
            pick_challenge(&h),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into())
            })
        );
    }

    #[test]
    fn parses_several_challenges_and_escapes() {
        let parsed = parse_challenges(
            r#"Basic realm="a \"quoted\" realm", charset=UTF-8, Bearer realm="http://t/x", error=insufficient_scope"#,
        );
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "Basic");
        assert_eq!(
            parsed[0].1[0],
            ("realm".into(), r#"a "quoted" realm"#.into())
        );
        assert_eq!(parsed[0].1[1], ("charset".into(), "UTF-8".into()));
        assert_eq!(parsed[1].0, "Bearer");
        assert_eq!(
            parsed[1].1[1],
            ("error".into(), "insufficient_scope".into())
        );
        // Bearer is preferred; Basic alone is Basic; no realm is no Bearer.
        let h = headers(
            "www-authenticate",
            &[r#"Basic realm="r""#, r#"Bearer realm="http://t/x""#],
        );
        assert!(matches!(pick_challenge(&h), Some(Challenge::Bearer { .. })));
        let h = headers("www-authenticate", &[r#"Basic realm="Registry Realm""#]);
        assert_eq!(pick_challenge(&h), Some(Challenge::Basic));
        let h = headers("www-authenticate", &[r#"Bearer service="x""#]);
        assert_eq!(pick_challenge(&h), None);
        // Lenient about spacing and case.
        let parsed = parse_challenges(r#"bearer  REALM = "r" ,  service="s""#);
        assert_eq!(
            parsed[0].1,
            vec![("realm".into(), "r".into()), ("service".into(), "s".into())]
        );
        assert!(parse_challenges("").is_empty());
        assert_eq!(parse_challenges("Negotiate")[0].0, "Negotiate");
    }

    #[test]
    fn follows_next_links() {
        let h = headers(
            "link",
            &[r#"</v2/ns/name/tags/list?last=t3&n=3>; rel="next""#],
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("/v2/ns/name/tags/list?last=t3&n=3")
        );
        let h = headers(
            "link",
            &[r#"<https://r/v2/x?p=1>; rel="prev", <https://r/v2/x?p=3>; rel="next""#],
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://r/v2/x?p=3"));
        let h = headers("link", &[r#"</v2/x?p=1>; rel=prev"#]);
        assert_eq!(next_link(&h), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn media_types() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            manifest_media_type(Some("application/vnd.oci.image.index.v1+json"), index).unwrap(),
            MEDIA_OCI_INDEX
        );
        assert_eq!(
            manifest_media_type(Some("application/json"), index).unwrap(),
            MEDIA_OCI_INDEX
        );
        let typed = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#;
        assert_eq!(
            manifest_media_type(None, typed).unwrap(),
            MEDIA_DOCKER_MANIFEST
        );
        assert_eq!(
            manifest_media_type(
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                b"{}"
            )
            .unwrap(),
            MEDIA_OCI_MANIFEST
        );
        assert!(manifest_media_type(None, b"not json").is_err());
        assert!(manifest_media_type(None, b"[1]").is_err());
        assert!(manifest_media_type(None, b"{}").is_err());
    }

    #[test]
    fn errors_and_reasons() {
        let e = RemoteError::NotFound("docker.io/library/x:1".into());
        assert_eq!(
            e.to_string(),
            r#"dockerimage.image.openshift.io "docker.io/library/x:1" not found"#
        );
        assert_eq!((e.reason(), e.code()), ("NotFound", 404));
        let e = RemoteError::Unauthorized("q.io/a/b:c".into());
        assert_eq!(
            e.to_string(),
            r#"you may not have access to the container image "q.io/a/b:c""#
        );
        assert_eq!(e.reason(), "Unauthorized");
        let e = RemoteError::HttpOnly("127.0.0.1:5000/a/b".into());
        assert_eq!(
            e.to_string(),
            "the repository 127.0.0.1:5000/a/b is HTTP only and requires the insecure flag to import"
        );
        assert_eq!(e.reason(), "InternalError");
        assert_eq!(RemoteError::Forbidden("x".into()).reason(), "Forbidden");
        assert_eq!(
            RemoteError::TooManyRequests("x".into()).reason(),
            "TooManyRequests"
        );
        assert_eq!(RemoteError::Unreachable("x".into()).code(), 500);
    }

    #[test]
    fn base64_and_redaction() {
        let creds = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{creds:?}").contains("hunter2"));
        let header = basic_header(&creds);
        assert!(header.is_sensitive());
        assert_eq!(header.to_str().unwrap(), "Basic dTpodW50ZXIy");
        let url = Url::parse("https://u:p@s3.example.com/b/k?X-Amz-Signature=abc").unwrap();
        assert_eq!(redact(&url), "https://s3.example.com/b/k");
    }

    /// Callers spawn these calls on tasks: the futures must be `Send`, the client `Sync`.
    #[allow(dead_code)]
    fn futures_are_send(r: &Remote, d: &Digest) {
        fn send<T: Send>(_: &T) {}
        fn sync<T: Sync + Send>() {}
        sync::<Remote>();
        send(&r.get_manifest("v1"));
        send(&r.get_blob_bytes(d, 1));
        send(&r.open_blob(d));
        send(&r.list_tags());
    }

    #[test]
    fn tag_validation() {
        assert!(is_valid_tag("latest"));
        assert!(is_valid_tag("v1.2.3-rc_1"));
        assert!(!is_valid_tag(""));
        assert!(!is_valid_tag(".x"));
        assert!(!is_valid_tag("a/b"));
        assert!(!is_valid_tag(&"a".repeat(129)));
    }
}
