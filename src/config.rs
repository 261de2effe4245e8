//! Server configuration: defaults, then an optional TOML file, then environment variables and
//! flags (clap reads both), later sources winning.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One entry of `allowed_registries_for_import` (OpenShift's `RegistryLocation`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedRegistry {
    /// `HOST[:PORT]`: `*.example.com` matches the names under example.com, `*` any port; no
    /// port matches the standard ones (443, 80).
    pub domain_name: String,
    /// Whether imports from it may use plain HTTP or unverified TLS.
    #[serde(default)]
    pub insecure: bool,
}

/// Everything `berth serve` can be told. Every field has a default, so no file is needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where metadata (sled) and blob files live.
    pub data_dir: PathBuf,
    /// Where metadata lives: `sled` (embedded, under the data directory: the default) or
    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (shared by every replica; keys under
    /// `PREFIX/`, default `berth/`).
    pub metadata_store: String,
    /// PEM CA bundle of the etcd members' certificates (turns on TLS to etcd).
    pub etcd_ca: Option<PathBuf>,
    /// PEM client certificate and key for etcd (mutual TLS).
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
    /// etcd user and password (etcd authentication).
    pub etcd_user: Option<String>,
    pub etcd_password: Option<String>,
    /// Bound on each etcd call, in seconds; past it the request fails with 503.
    pub etcd_timeout_secs: u64,
    /// With several replicas (etcd), the controllers run on the one holding a lease of this
    /// many seconds; another takes over about this long after the holder dies. Keep it over
    /// three times `etcd_timeout_secs`.
    pub leader_lease_secs: u64,
    /// Where blob bytes go: `fs` (files under the data directory, the default) or
    /// `s3://BUCKET[/PREFIX]` (S3-compatible object storage).
    pub blob_store: String,
    /// `http(s)://host:port` of an S3-compatible server (path-style addressing); none: AWS.
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    /// Credentials; when unset, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    /// Answer blob GETs with a 307 to a presigned object-storage URL (S3 only).
    pub blob_redirect: bool,
    /// Registry host (and port) clients reach berth by: token realms, and (when set)
    /// `status.publicDockerImageRepository`; defaults to the bound address.
    pub public_host: Option<String>,
    /// Registry host (and port) written into image references and
    /// `status.dockerImageRepository` (OpenShift's internal registry hostname); defaults to
    /// the public host.
    pub internal_host: Option<String>,
    /// Largest manifest accepted, in bytes (larger bodies get 413).
    pub max_manifest_bytes: usize,
    /// Most `?tag=` values one manifest PUT may carry (more get 400 MANIFEST_INVALID).
    pub max_tags_per_push: usize,
    /// Upload sessions untouched this long are discarded.
    pub upload_max_age_secs: u64,
    /// Grace period of garbage collection: an unreferenced blob or manifest is deleted only
    /// this long after it was last written, linked or checked by a client.
    pub gc_delay_secs: u64,
    /// Seconds between garbage-collection passes over the review queue.
    pub gc_interval_secs: u64,
    /// Seconds between sweeps for blob files no record names (crash leftovers).
    pub gc_sweep_interval_secs: u64,
    /// Retention policies (`[[retention]]`), applied every `retention_interval_secs`; more
    /// can be added over the API. None by default.
    pub retention: Vec<crate::imagestream::retention::RetentionPolicy>,
    pub retention_interval_secs: u64,
    /// Most upload sessions open at once in one repository; more get 429 (0: no limit).
    pub max_uploads_per_repository: u64,
    /// Most upload sessions one user (without auth: one client address) may have open at
    /// once; more get 429 (0: no limit).
    pub max_uploads_per_user: u64,
    /// Connections served at once; beyond it new ones wait (unaccepted) until one closes.
    pub max_connections: usize,
    /// Largest request header in bytes (HTTP/1.1 request line and fields, HTTP/2 header
    /// list); larger ones get 431. At least 8 KiB on HTTP/1.1.
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1.1 request; more get 431.
    pub max_headers: usize,
    /// Time a client has to send a request's complete header; HTTP/1.1 connections waiting
    /// for their next request are closed after it too.
    pub header_read_timeout_secs: u64,
    /// Connections with no request in flight for this long are closed.
    pub idle_timeout_secs: u64,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout_secs: u64,
    /// Events one watcher has not yet taken may hold this many MiB; a watcher beyond it is
    /// closed (410 ERROR event; if it does not read that either, its connection).
    pub watch_buffer_mib_per_watcher: u64,
    /// Events one watcher may be behind before it is closed the same way (it re-lists or
    /// resumes, as Kubernetes clients do).
    pub watch_buffer_events_per_watcher: usize,
    /// MiB all watchers' queued events may hold together (each charged as if it had its own
    /// copy); beyond it the watchers holding the most are closed.
    pub watch_buffer_mib_total: u64,
    /// MiB of recent events kept per watchable resource for watches resuming from a
    /// resourceVersion.
    pub watch_backlog_mib: u64,
    /// A request body (a blob upload above all) must deliver at least this many bytes in every
    /// `body_rate_window_secs`, or it is cut off (408); 0 turns the floor off.
    pub min_body_bytes_per_window: u64,
    pub body_rate_window_secs: u64,
    /// How often tags with `importPolicy.scheduled` are re-imported; 0 turns scheduling off.
    pub scheduled_import_interval_secs: u64,
    /// At most this many scheduled imports start per minute (pending imports are not limited).
    pub max_scheduled_imports_per_minute: u32,
    /// Extra PEM roots trusted when importing from other registries (besides the system's).
    pub import_ca_bundle: Option<PathBuf>,
    /// Connect and read timeout of calls to other registries.
    pub import_timeout_secs: u64,
    /// The registries imports (and pull-through) may fetch from. Empty: any registry except
    /// loopback and link-local ones, which always need an entry naming them.
    pub allowed_registries_for_import: Vec<AllowedRegistry>,
    /// PEM certificate chain (server certificate first) to serve HTTPS with; needs `tls_key`.
    /// Both are re-read on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: client certificates are requested and verified against it, but optional.
    pub tls_client_ca: Option<PathBuf>,
    /// Size of the metadata store's page cache, in MiB (sled's own default is 1 GiB). Small by
    /// default: sled holds several times this in memory, and berth's hot reads (pulls by tag,
    /// watch events) do not scan; raise it for faster whole-stream GETs of huge streams.
    pub metadata_cache_mib: u64,
    /// Require credentials (users, tokens, role bindings). Off by default: then only a loopback
    /// listen address is allowed, and every local client may do anything.
    pub auth: bool,
    /// The first admin's password: at start, user `admin_user` (cluster-admin) is created with
    /// it if missing. Setting it turns `auth` on. There is no default password.
    pub admin_password: Option<String>,
    pub admin_user: String,
    /// Namespaces anyone may pull from without credentials (when auth is on).
    pub anonymous_pull_namespaces: Vec<String>,
    /// Lifetime of registry tokens issued by `/auth/token`.
    pub token_ttl_secs: u64,
    /// The token audience (`service`) this registry answers for.
    pub token_service: String,
    /// Allow a non-loopback listen address without auth (not for production).
    pub insecure_no_auth: bool,
    /// Failed password logins per user name per minute; beyond it every login for the name is
    /// refused (429) until the minute is over. 0 turns this budget off.
    pub login_failures_per_user_per_minute: u32,
    /// Failed password logins per source address (IPv6: per /64) per minute. 0 turns it off.
    pub login_failures_per_source_per_minute: u32,
    /// Bearer token `GET /metrics` requires. Unset: only loopback clients may scrape.
    pub metrics_token: Option<String>,
    /// Free bytes kept on the data directory's filesystem: blob data is refused below it (507),
    /// metadata writes below half of it, and `/readyz` answers 503 below it. 0 turns it off.
    pub min_free_bytes: u64,
    /// Let webhooks target loopback, private and link-local addresses (refused by default:
    /// namespace admins choose webhook URLs).
    pub webhook_allow_private: bool,
    /// Extra PEM roots trusted for webhook receivers (besides the system's).
    pub webhook_ca_bundle: Option<PathBuf>,
    /// Per delivery attempt, connecting included.
    pub webhook_timeout_secs: u64,
    /// The first retry's delay after a failed delivery, in milliseconds; doubles per failure.
    pub webhook_backoff_base_ms: u64,
    /// The longest delay between retries.
    pub webhook_backoff_cap_secs: u64,
    /// Events one subscription may have waiting; beyond it new ones are dropped and counted.
    pub webhook_outbox_max_events: u64,
    /// Events older than this are dropped undelivered (and counted).
    pub webhook_outbox_max_age_secs: u64,
    /// Delivery requests in flight at once, across subscriptions.
    pub webhook_max_in_flight: usize,
    /// How long a rotated-out signing secret keeps signing beside the new one.
    pub webhook_rotation_overlap_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("berth-data"),
            metadata_store: "sled".into(),
            etcd_ca: None,
            etcd_cert: None,
            etcd_key: None,
            etcd_user: None,
            etcd_password: None,
            etcd_timeout_secs: 5,
            leader_lease_secs: 15,
            public_host: None,
            internal_host: None,
            max_manifest_bytes: 4 * 1024 * 1024,
            max_tags_per_push: 100,
            upload_max_age_secs: 24 * 3600,
            blob_store: "fs".into(),
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            blob_redirect: false,
            gc_delay_secs: 24 * 3600,
            gc_interval_secs: 60,
            gc_sweep_interval_secs: 3600,
            retention: Vec::new(),
            retention_interval_secs: 3600,
            max_uploads_per_repository: 100,
            max_uploads_per_user: 500,
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout_secs: 30,
            idle_timeout_secs: 30,
            tls_handshake_timeout_secs: 10,
            watch_buffer_mib_per_watcher: 16,
            watch_buffer_events_per_watcher: 1000,
            watch_buffer_mib_total: 256,
            watch_backlog_mib: 64,
            min_body_bytes_per_window: 1024,
            body_rate_window_secs: 30,
            scheduled_import_interval_secs: 15 * 60,
            max_scheduled_imports_per_minute: 60,
            import_ca_bundle: None,
            import_timeout_secs: 30,
            allowed_registries_for_import: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            metadata_cache_mib: 16,
            auth: false,
            admin_password: None,
            admin_user: "admin".into(),
            anonymous_pull_namespaces: Vec::new(),
            token_ttl_secs: 300,
            token_service: "berth".into(),
            insecure_no_auth: false,
            login_failures_per_user_per_minute: 10,
            login_failures_per_source_per_minute: 30,
            metrics_token: None,
            min_free_bytes: 64 * 1024 * 1024,
            webhook_allow_private: false,
            webhook_ca_bundle: None,
            webhook_timeout_secs: 10,
            webhook_backoff_base_ms: 1000,
            webhook_backoff_cap_secs: 3600,
            webhook_outbox_max_events: 10_000,
            webhook_outbox_max_age_secs: 7 * 24 * 3600,
            webhook_max_in_flight: 64,
            webhook_rotation_overlap_secs: 24 * 3600,
        }
    }
}

impl Config {
    /// The S3 settings, when blobs go to object storage.
    pub fn s3(&self) -> Option<berth_storage::s3::S3Config> {
        let (bucket, prefix) = berth_storage::s3::S3Config::parse_url(&self.blob_store).ok()?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(berth_storage::s3::S3Config {
            bucket,
            prefix,
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: self
                .s3_access_key_id
                .clone()
                .or_else(|| env("AWS_ACCESS_KEY_ID")),
            secret_access_key: self
                .s3_secret_access_key
                .clone()
                .or_else(|| env("AWS_SECRET_ACCESS_KEY")),
            redirect: self.blob_redirect,
        })
    }

    /// The etcd settings, when metadata lives on etcd.
    pub fn etcd(&self) -> Option<Result<berth_storage::etcd::EtcdConfig, ConfigError>> {
        if self.metadata_store == "sled" {
            return None;
        }
        Some(
            berth_storage::etcd::EtcdConfig::parse_url(&self.metadata_store)
                .map(|mut c| {
                    c.ca = self.etcd_ca.clone();
                    c.cert = self.etcd_cert.clone();
                    c.key = self.etcd_key.clone();
                    c.user = self.etcd_user.clone();
                    c.password = self.etcd_password.clone();
                    c.timeout = std::time::Duration::from_secs(self.etcd_timeout_secs.max(1));
                    c
                })
                .map_err(|message| ConfigError::MetadataStore { message }),
        )
    }

    /// What one connection may cost, and for how long. Zero timeouts would close every
    /// connection at once, so they count as one second.
    pub fn connection_limits(&self) -> crate::server::Limits {
        let secs = |s: u64| std::time::Duration::from_secs(s.max(1));
        crate::server::Limits {
            max_connections: self.max_connections.max(1),
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers.max(1),
            header_read_timeout: secs(self.header_read_timeout_secs),
            idle_timeout: secs(self.idle_timeout_secs),
            tls_handshake_timeout: secs(self.tls_handshake_timeout_secs),
        }
    }

    /// Whether requests must carry credentials.
    pub fn auth_enabled(&self) -> bool {
        self.auth || self.admin_password.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("blob_store: {message}")]
    BlobStore { message: String },
    #[error("metadata_store: {message}")]
    MetadataStore { message: String },
    #[error("retention policy {name:?}: {message}")]
    Retention { name: String, message: String },
}

/// Command-line (and environment) overrides for `berth serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address, ADDR:PORT (default 127.0.0.1:5000).
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (default ./berth-data).
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Registry host clients reach berth by, HOST[:PORT]: token realms and
    /// status.publicDockerImageRepository.
    #[arg(long, env = "BERTH_PUBLIC_HOST")]
    pub public_host: Option<String>,
    /// Registry host written into image references and status.dockerImageRepository,
    /// HOST[:PORT] (default: the public host).
    #[arg(long, env = "BERTH_INTERNAL_HOST")]
    pub internal_host: Option<String>,
    /// Largest manifest accepted, in bytes.
    #[arg(long, env = "BERTH_MAX_MANIFEST_BYTES")]
    pub max_manifest_bytes: Option<usize>,
    /// Most `?tag=` values one manifest PUT may carry (default 100).
    #[arg(long, env = "BERTH_MAX_TAGS_PER_PUSH")]
    pub max_tags_per_push: Option<usize>,
    /// Connections served at once (default 1024).
    #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest request header in bytes (default 65536).
    #[arg(long, env = "BERTH_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Most header fields in a request (default 100).
    #[arg(long, env = "BERTH_MAX_HEADERS")]
    pub max_headers: Option<usize>,
    /// Seconds a client has to send a complete request header (default 30).
    #[arg(long, env = "BERTH_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds after which a connection without requests in flight is closed (default 30).
    #[arg(long, env = "BERTH_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a client has to complete the TLS handshake (default 10).
    #[arg(long, env = "BERTH_TLS_HANDSHAKE_TIMEOUT_SECS")]
    pub tls_handshake_timeout_secs: Option<u64>,
    /// MiB of events one watcher may have queued before it is closed (default 16).
    #[arg(long, env = "BERTH_WATCH_BUFFER_MIB_PER_WATCHER")]
    pub watch_buffer_mib_per_watcher: Option<u64>,
    /// Events one watcher may be behind before it is closed (default 1000).
    #[arg(long, env = "BERTH_WATCH_BUFFER_EVENTS_PER_WATCHER")]
    pub watch_buffer_events_per_watcher: Option<usize>,
    /// MiB all watchers' queues may hold together (default 256).
    #[arg(long, env = "BERTH_WATCH_BUFFER_MIB_TOTAL")]
    pub watch_buffer_mib_total: Option<u64>,
    /// Least bytes a request body must deliver per window (default 1024; 0: no floor).
    #[arg(long, env = "BERTH_MIN_BODY_BYTES_PER_WINDOW")]
    pub min_body_bytes_per_window: Option<u64>,
    /// Seconds of the window for --min-body-bytes-per-window (default 30).
    #[arg(long, env = "BERTH_BODY_RATE_WINDOW_SECS")]
    pub body_rate_window_secs: Option<u64>,
    /// Most upload sessions open at once in one repository (default 100; 0: no limit).
    #[arg(long, env = "BERTH_MAX_UPLOADS_PER_REPOSITORY")]
    pub max_uploads_per_repository: Option<u64>,
    /// Most upload sessions one user may have open at once (default 500; 0: no limit).
    #[arg(long, env = "BERTH_MAX_UPLOADS_PER_USER")]
    pub max_uploads_per_user: Option<u64>,
    /// Seconds after which an untouched upload session is discarded (default 86400).
    #[arg(long, env = "BERTH_UPLOAD_MAX_AGE_SECS")]
    pub upload_max_age_secs: Option<u64>,
    /// Where metadata lives: sled (default, embedded) or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]
    /// (one etcd cluster shared by every replica).
    #[arg(long, env = "BERTH_METADATA_STORE")]
    pub metadata_store: Option<String>,
    /// PEM CA bundle of the etcd members (turns on TLS to etcd).
    #[arg(long, env = "BERTH_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-key).
    #[arg(long, env = "BERTH_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(long, env = "BERTH_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user (with --etcd-password).
    #[arg(long, env = "BERTH_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// etcd password.
    #[arg(long, env = "BERTH_ETCD_PASSWORD", hide_env_values = true)]
    pub etcd_password: Option<String>,
    /// Seconds each etcd call may take before the request fails with 503 (default 5).
    #[arg(long, env = "BERTH_ETCD_TIMEOUT_SECS")]
    pub etcd_timeout_secs: Option<u64>,
    /// Seconds of the controller lease among replicas on etcd (default 15).
    #[arg(long, env = "BERTH_LEADER_LEASE_SECS")]
    pub leader_lease_secs: Option<u64>,
    /// Where blob bytes go: fs (default) or s3://BUCKET[/PREFIX]; credentials from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the config file.
    #[arg(long, env = "BERTH_BLOB_STORE")]
    pub blob_store: Option<String>,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:3900 (path-style addressing).
    #[arg(long, env = "BERTH_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default us-east-1; Garage's is usually "garage").
    #[arg(long, env = "BERTH_S3_REGION")]
    pub s3_region: Option<String>,
    /// Redirect blob GETs to presigned object-storage URLs (clients follow 307).
    #[arg(long, env = "BERTH_BLOB_REDIRECT")]
    pub blob_redirect: bool,
    /// Garbage collection's grace period in seconds (default 86400): an unreferenced blob or
    /// manifest goes only this long after it was last written, linked or checked.
    #[arg(long, env = "BERTH_GC_DELAY_SECS")]
    pub gc_delay_secs: Option<u64>,
    /// Seconds between garbage-collection passes (default 60).
    #[arg(long, env = "BERTH_GC_INTERVAL_SECS")]
    pub gc_interval_secs: Option<u64>,
    /// Seconds between scheduled re-imports (default 900; 0 disables them).
    #[arg(long, env = "BERTH_SCHEDULED_IMPORT_INTERVAL_SECS")]
    pub scheduled_import_interval_secs: Option<u64>,
    /// PEM file of extra CA certificates trusted when importing.
    #[arg(long, env = "BERTH_IMPORT_CA_BUNDLE")]
    pub import_ca_bundle: Option<PathBuf>,
    /// Allow imports from registries matching HOST[:PORT] (`*.` host prefix, `*` port), over
    /// verified HTTPS only; repeatable, added to allowed_registries_for_import.
    #[arg(
        long,
        env = "BERTH_ALLOW_IMPORT_FROM",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    pub allow_import_from: Vec<String>,
    /// Like --allow-import-from, and insecure imports (plain HTTP, unverified TLS) too.
    #[arg(
        long,
        env = "BERTH_ALLOW_INSECURE_IMPORT_FROM",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    pub allow_insecure_import_from: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key; reloaded on SIGHUP).
    #[arg(long, env = "BERTH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "BERTH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle for optional client certificates (verified when presented).
    #[arg(long, env = "BERTH_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Require authentication (see also BERTH_ADMIN_PASSWORD).
    #[arg(long, env = "BERTH_AUTH")]
    pub auth: bool,
    /// Password of the first admin, created at start if missing (turns auth on).
    #[arg(long, env = "BERTH_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Allow listening on a non-loopback address without authentication.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Free bytes kept on the data directory (default 64 MiB; 0 = off).
    #[arg(long, env = "BERTH_MIN_FREE_BYTES")]
    pub min_free_bytes: Option<u64>,
    /// Bearer token for GET /metrics (unset: loopback clients only).
    #[arg(long, env = "BERTH_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Let webhooks target loopback, private and link-local addresses.
    #[arg(long, env = "BERTH_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// PEM file of extra CA certificates trusted for webhook receivers.
    #[arg(long, env = "BERTH_WEBHOOK_CA_BUNDLE")]
    pub webhook_ca_bundle: Option<PathBuf>,
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = args.listen {
            config.listen = v;
        }
        if let Some(v) = &args.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = &args.public_host {
            config.public_host = Some(v.clone());
        }
        if let Some(v) = &args.internal_host {
            config.internal_host = Some(v.clone());
        }
        if let Some(v) = args.max_manifest_bytes {
            config.max_manifest_bytes = v;
        }
        if let Some(v) = args.max_tags_per_push {
            config.max_tags_per_push = v;
        }
        if let Some(v) = args.max_connections {
            config.max_connections = v;
        }
        if let Some(v) = args.max_header_bytes {
            config.max_header_bytes = v;
        }
        if let Some(v) = args.max_headers {
            config.max_headers = v;
        }
        if let Some(v) = args.header_read_timeout_secs {
            config.header_read_timeout_secs = v;
        }
        if let Some(v) = args.idle_timeout_secs {
            config.idle_timeout_secs = v;
        }
        if let Some(v) = args.tls_handshake_timeout_secs {
            config.tls_handshake_timeout_secs = v;
        }
        if let Some(v) = args.watch_buffer_mib_per_watcher {
            config.watch_buffer_mib_per_watcher = v;
        }
        if let Some(v) = args.watch_buffer_events_per_watcher {
            config.watch_buffer_events_per_watcher = v;
        }
        if let Some(v) = args.watch_buffer_mib_total {
            config.watch_buffer_mib_total = v;
        }
        if let Some(v) = args.min_body_bytes_per_window {
            config.min_body_bytes_per_window = v;
        }
        if let Some(v) = args.body_rate_window_secs {
            config.body_rate_window_secs = v;
        }
        if let Some(v) = args.max_uploads_per_repository {
            config.max_uploads_per_repository = v;
        }
        if let Some(v) = args.max_uploads_per_user {
            config.max_uploads_per_user = v;
        }
        if let Some(v) = args.upload_max_age_secs {
            config.upload_max_age_secs = v;
        }
        if let Some(v) = &args.blob_store {
            config.blob_store = v.clone();
        }
        if let Some(v) = &args.metadata_store {
            config.metadata_store = v.clone();
        }
        for (arg, field) in [
            (&args.etcd_ca, &mut config.etcd_ca),
            (&args.etcd_cert, &mut config.etcd_cert),
            (&args.etcd_key, &mut config.etcd_key),
        ] {
            if arg.is_some() {
                field.clone_from(arg);
            }
        }
        if args.etcd_user.is_some() {
            config.etcd_user.clone_from(&args.etcd_user);
        }
        if args.etcd_password.is_some() {
            config.etcd_password.clone_from(&args.etcd_password);
        }
        if let Some(v) = args.etcd_timeout_secs {
            config.etcd_timeout_secs = v;
        }
        if let Some(v) = args.leader_lease_secs {
            config.leader_lease_secs = v;
        }
        if let Some(v) = &args.s3_endpoint {
            config.s3_endpoint = Some(v.clone());
        }
        if let Some(v) = &args.s3_region {
            config.s3_region = v.clone();
        }
        if args.blob_redirect {
            config.blob_redirect = true;
        }
        if let Some(v) = args.gc_delay_secs {
            config.gc_delay_secs = v;
        }
        if let Some(v) = args.gc_interval_secs {
            config.gc_interval_secs = v;
        }
        if let Some(v) = args.scheduled_import_interval_secs {
            config.scheduled_import_interval_secs = v;
        }
        if let Some(v) = &args.import_ca_bundle {
            config.import_ca_bundle = Some(v.clone());
        }
        for (patterns, insecure) in [
            (&args.allow_import_from, false),
            (&args.allow_insecure_import_from, true),
        ] {
            config
                .allowed_registries_for_import
                .extend(patterns.iter().map(|p| AllowedRegistry {
                    domain_name: p.clone(),
                    insecure,
                }));
        }
        if let Some(v) = &args.tls_cert {
            config.tls_cert = Some(v.clone());
        }
        if let Some(v) = &args.tls_key {
            config.tls_key = Some(v.clone());
        }
        if let Some(v) = &args.tls_client_ca {
            config.tls_client_ca = Some(v.clone());
        }
        config.auth |= args.auth;
        config.insecure_no_auth |= args.insecure_no_auth;
        if let Some(v) = &args.admin_password {
            config.admin_password = Some(v.clone());
        }
        if let Some(v) = args.min_free_bytes {
            config.min_free_bytes = v;
        }
        if let Some(v) = &args.metrics_token {
            config.metrics_token = Some(v.clone());
        }
        config.webhook_allow_private |= args.webhook_allow_private;
        if let Some(v) = &args.webhook_ca_bundle {
            config.webhook_ca_bundle = Some(v.clone());
        }
        if config.blob_store != "fs" {
            berth_storage::s3::S3Config::parse_url(&config.blob_store)
                .map_err(|message| ConfigError::BlobStore { message })?;
        }
        if let Some(etcd) = config.etcd() {
            etcd?;
        }
        for policy in &config.retention {
            policy
                .validate()
                .map_err(|message| ConfigError::Retention {
                    name: policy.name.clone(),
                    message,
                })?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_then_file_then_flags() {
        let c = Config::default();
        assert_eq!(
            (
                c.max_tags_per_push,
                c.max_connections,
                c.upload_max_age_secs
            ),
            (100, 1024, 24 * 3600)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "max_connections = 7\nmax_uploads_per_user = 3\nheader_read_timeout_secs = 0\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            max_connections: Some(9),
            ..Default::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!((c.max_connections, c.max_uploads_per_user), (9, 3));
        let limits = c.connection_limits();
        assert_eq!(limits.max_connections, 9);
        assert_eq!(limits.header_read_timeout.as_secs(), 1, "0 counts as 1 s");
    }

    #[test]
    fn retention_policies_from_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "retention_interval_secs = 600\n[[retention]]\nname = \"teams\"\nnamespaces = \"team-*\"\n\
             keep_tag_revisions = 3\nkeep_younger_than = \"7d\"\nkeep_tags = [\"latest\"]\n\
             delete_tags_not_pushed_for = \"90d\"\ndry_run = true\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!(c.retention_interval_secs, 600);
        let p = &c.retention[0];
        assert_eq!(
            (p.name.as_str(), p.namespaces.as_str()),
            ("teams", "team-*")
        );
        assert_eq!(p.keep_tag_revisions, Some(3));
        assert_eq!(p.keep_younger_than.as_deref(), Some("7d"));
        assert_eq!(p.keep_tags, vec!["latest".to_string()]);
        assert!(p.dry_run);
        std::fs::write(
            &path,
            "[[retention]]\nname = \"x\"\nnamespaces = \"a\"\nkeep_younger_than = \"soon\"\n",
        )
        .unwrap();
        let e = Config::load(&args).unwrap_err().to_string();
        assert!(
            e.contains("retention policy \"x\"") && e.contains("soon"),
            "{e}"
        );
    }

    #[test]
    fn metadata_store_sled_or_etcd() {
        assert!(Config::default().etcd().is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "metadata_store = \"etcd://a:2379,b:2379/reg\"\netcd_user = \"u\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            etcd_password: Some("p".into()),
            etcd_timeout_secs: Some(2),
            ..Default::default()
        };
        let etcd = Config::load(&args).unwrap().etcd().unwrap().unwrap();
        assert_eq!(etcd.endpoints, ["a:2379", "b:2379"]);
        assert_eq!(etcd.prefix, "reg");
        assert_eq!(
            (etcd.user.as_deref(), etcd.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(etcd.timeout.as_secs(), 2);
        let args = ServeArgs {
            metadata_store: Some("etcd://nohost".into()),
            ..Default::default()
        };
        let e = Config::load(&args).unwrap_err().to_string();
        assert!(e.starts_with("metadata_store:"), "{e}");
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:0\"\ndata_dir = \"/tmp/x\"\nmax_manifest_bytes = 10\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            data_dir: Some("/tmp/y".into()),
            ..Default::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
        assert_eq!(c.max_manifest_bytes, 10);
        std::fs::write(
            &path,
            "allowed_registries_for_import = [{ domain_name = \"quay.io\" }, \
             { domain_name = \"*.lab:*\", insecure = true }]\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            allow_insecure_import_from: vec!["127.0.0.1:*".into()],
            ..Default::default()
        };
        let c = Config::load(&args).unwrap();
        let entry = |d: &str, insecure| AllowedRegistry {
            domain_name: d.into(),
            insecure,
        };
        assert_eq!(
            c.allowed_registries_for_import,
            [
                entry("quay.io", false),
                entry("*.lab:*", true),
                entry("127.0.0.1:*", true)
            ]
        );
        std::fs::write(&path, "listne = 1\n").unwrap();
        assert!(matches!(
            Config::load(&args),
            Err(ConfigError::Parse { .. })
        ));
    }
}
