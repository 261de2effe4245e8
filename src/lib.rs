//! berth: a container registry with OpenShift image streams built in.
//!
//! # Layout
//! - [`config`]: what `berth serve` can be told (TOML, env, flags).
//! - [`registry`]: the distribution domain (names, manifests, blobs, tags, referrers); no HTTP.
//! - [`http`]: the only module that knows HTTP: endpoint parsing, handlers, wire errors.
//! - [`server`]: the accept loop with graceful shutdown.
//! - [`tls`]: HTTPS (rustls), certificate reload, client-certificate identities.
//! - [`webhooks`]: subscriptions, the transactional outbox and its delivery worker.
//! - storage lives in the `berth-storage` crate (metadata store and blob store traits).

pub mod auth;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod http;
pub mod imagestream;
pub mod importer;
pub mod leader;
pub mod metrics;
pub mod registry;
pub mod secrets;
pub mod server;
pub mod tls;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use berth_storage::fs::FsBlobStore;
use berth_storage::sled_store::SledMetadata;
use tokio::net::TcpListener;

use config::Config;
use registry::{Limits, Registry};

/// Opens the stores under `config.data_dir` and builds the registry.
pub fn open_registry(config: &Config, public_host: String) -> anyhow_like::Result<Registry> {
    let meta = open_metadata(config)?;
    // Streams stored whole by earlier releases become per-tag records, once.
    let converted = imagestream::store::migrate(meta.as_ref())?;
    if converted > 0 {
        tracing::info!(
            streams = converted,
            "converted image streams to the per-tag layout"
        );
    }
    // Reference counts for garbage collection, rebuilt once for a store from before them.
    if registry::gc::upgrade(meta.as_ref())? {
        tracing::info!("reference counts for garbage collection built");
    }
    let blobs: Arc<dyn berth_storage::BlobStore> = match config.s3() {
        Some(s3) => {
            tracing::info!(bucket = %s3.bucket, prefix = %s3.prefix, endpoint = ?s3.endpoint,
                "blobs on S3-compatible object storage");
            Arc::new(berth_storage::s3::S3BlobStore::new(&s3, meta.clone())?)
        }
        None => Arc::new(FsBlobStore::open(&config.data_dir)?.with_reserve(config.min_free_bytes)),
    };
    Ok(Registry::new(
        meta,
        blobs,
        Limits {
            max_manifest_bytes: config.max_manifest_bytes,
            max_tags_per_push: config.max_tags_per_push,
            max_uploads_per_repository: config.max_uploads_per_repository,
            max_uploads_per_owner: config.max_uploads_per_user,
            min_free_bytes: config.min_free_bytes,
            ..Limits::default()
        },
        public_host,
    )?)
}

/// The metadata store `config` names: embedded sled under the data directory, or etcd.
fn open_metadata(config: &Config) -> anyhow_like::Result<Arc<dyn berth_storage::MetadataStore>> {
    if let Some(etcd) = config.etcd() {
        let etcd = etcd?;
        tracing::info!(endpoints = ?etcd.endpoints, prefix = %etcd.prefix, "metadata on etcd");
        return Ok(Arc::new(berth_storage::etcd::EtcdMetadata::connect(&etcd)?));
    }
    let sled = SledMetadata::open_with_cache(
        &config.data_dir.join("metadata"),
        Some(config.metadata_cache_mib.max(1) << 20),
    )?
    .with_reserve(config.min_free_bytes);
    Ok(Arc::new(sled))
}

/// `allowed_registries_for_import` parsed; a bad pattern stops the start.
fn allowed_registries(
    config: &Config,
) -> anyhow_like::Result<importer::allowed::AllowedRegistries> {
    let patterns = config
        .allowed_registries_for_import
        .iter()
        .map(|r| importer::allowed::RegistryPattern::parse(&r.domain_name, r.insecure))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("allowed_registries_for_import: {e}"))?;
    if patterns.is_empty() {
        tracing::info!(
            "allowed_registries_for_import is empty: imports may fetch from any registry except \
             loopback and link-local ones"
        );
    }
    Ok(importer::allowed::AllowedRegistries::new(patterns))
}

/// Builds the authentication settings; creates the first admin when asked to.
async fn start_auth(
    config: &Config,
    registry: &Registry,
) -> anyhow_like::Result<http::auth::AuthSettings> {
    let auth = auth::Auth::new(
        registry.clone(),
        auth::LoginLimits {
            per_user: config.login_failures_per_user_per_minute,
            per_source: config.login_failures_per_source_per_minute,
        },
    )?;
    let enabled = config.auth_enabled();
    if let Some(password) = &config.admin_password {
        if auth.get_user(&config.admin_user).is_err() {
            auth.create_user(
                &config.admin_user,
                Some(password),
                vec![auth::ClusterRole::ClusterAdmin],
            )
            .await?;
            tracing::info!(user = %config.admin_user, "created the first admin");
        }
    }
    if enabled && !auth.has_users()? {
        return Err(
            "authentication is on but no user exists: set BERTH_ADMIN_PASSWORD (or \
                    admin_password) to create the first admin"
                .into(),
        );
    }
    if !enabled {
        tracing::warn!(
            "authentication is off: every client that reaches this server may do anything \
             (loopback only; turn it on with --auth or BERTH_ADMIN_PASSWORD)"
        );
    }
    Ok(http::auth::AuthSettings {
        auth,
        enabled,
        anonymous_pull: config.anonymous_pull_namespaces.clone(),
        service: config.token_service.clone(),
        token_ttl: config.token_ttl_secs.max(1),
    })
}

/// A bound, ready-to-run server.
pub struct Server {
    listener: TcpListener,
    outbox: Arc<webhooks::outbox::Outbox>,
    delivery: webhooks::delivery::Settings,
    state: Arc<http::State>,
    config: Config,
    tls: Option<tls::Tls>,
}

impl Server {
    /// Opens the stores and binds the listener (port 0 picks a free port).
    pub async fn bind(config: Config) -> anyhow_like::Result<Server> {
        // Certificate problems fail start-up before anything is bound or opened.
        let tls = tls::Tls::from_config(&config)?;
        let allowed = Arc::new(allowed_registries(&config)?);
        if !config.auth_enabled() && !config.listen.ip().is_loopback() && !config.insecure_no_auth {
            return Err(format!(
                "refusing to listen on {} without authentication: turn auth on (--auth, or \
                 BERTH_ADMIN_PASSWORD for the first admin) or pass --insecure-no-auth",
                config.listen
            )
            .into());
        }
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let public_host = config
            .public_host
            .clone()
            .unwrap_or_else(|| addr.to_string());
        if config.public_host.is_none() && addr.ip().is_unspecified() && config.auth_enabled() {
            tracing::warn!(
                %addr,
                "no public host configured: token realms and image references name {addr}, \
                 which clients cannot reach; set --public-host"
            );
        }
        // References name the internal host; streams show the public one beside it when it
        // is configured (OpenShift's status.publicDockerImageRepository).
        let internal_host = config
            .internal_host
            .clone()
            .unwrap_or_else(|| public_host.clone());
        let registry = open_registry(&config, internal_host)?
            .with_public_repository_host(config.public_host.clone());
        let metrics = Arc::new(metrics::Metrics::new());
        let importer = importer::Importer::new(
            registry.clone(),
            importer::fetch::RemoteSettings {
                ca_bundle: config.import_ca_bundle.clone(),
                timeout: Duration::from_secs(config.import_timeout_secs.max(1)),
                allowed,
            },
            metrics.import_counters(),
        );
        let auth = start_auth(&config, &registry).await?;
        // Every transaction that raises notices queues them for subscribers as it commits.
        let outbox = webhooks::outbox::Outbox::open(
            registry.metadata().clone(),
            config.webhook_outbox_max_events,
        )?;
        registry.set_notice_sink(outbox.clone());
        let webhooks = webhooks::Webhooks::new(
            registry.clone(),
            outbox.clone(),
            webhooks::subscriptions::Policy {
                allow_private: config.webhook_allow_private,
                rotation_overlap: Duration::from_secs(config.webhook_rotation_overlap_secs),
            },
        );
        let delivery = webhooks::delivery::Settings {
            timeout: Duration::from_secs(config.webhook_timeout_secs.max(1)),
            backoff_base: Duration::from_millis(config.webhook_backoff_base_ms.max(1)),
            backoff_cap: Duration::from_secs(config.webhook_backoff_cap_secs.max(1)),
            max_age: Duration::from_secs(config.webhook_outbox_max_age_secs),
            max_in_flight: config.webhook_max_in_flight,
            allow_private: config.webhook_allow_private,
            ca_bundle: config.webhook_ca_bundle.clone(),
            public_host: public_host.clone(),
        };
        Ok(Server {
            outbox,
            delivery,
            listener,
            state: Arc::new(http::State {
                auth,
                https: tls.is_some(),
                min_body_rate: http::min_rate::MinRate::new(
                    config.min_body_bytes_per_window,
                    Duration::from_secs(config.body_rate_window_secs),
                ),
                pull_through: importer::pullthrough::PullThrough::new(importer.clone()),
                api: http::imagestream::Api::new(
                    imagestream::service::ImageStreams::new(registry.clone()),
                    importer.clone(),
                    webhooks,
                    http::imagestream::WatchLimits {
                        per_watcher_bytes: mib(config.watch_buffer_mib_per_watcher),
                        per_watcher_events: config.watch_buffer_events_per_watcher.max(1),
                        total_bytes: mib(config.watch_buffer_mib_total),
                        backlog_bytes: mib(config.watch_backlog_mib),
                    },
                    metrics.watch_gauges(),
                )?,
                importer,
                retention: Arc::new(config.retention.clone()),
                gc: registry::gc::Collector::new(
                    registry.clone(),
                    Duration::from_secs(config.gc_delay_secs),
                ),
                registry,
                public_host,
                metrics,
                metrics_token: config.metrics_token.clone().filter(|t| !t.is_empty()),
            }),
            config,
            tls,
        })
    }

    /// The served TLS certificate when TLS is configured; `reload()` re-reads it (what SIGHUP
    /// does).
    pub fn tls_certificate(&self) -> Option<Arc<tls::ReloadableCert>> {
        self.tls.as_ref().map(tls::Tls::certificate)
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains requests and flushes the store.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow_like::Result<()> {
        let addr = self.listener.local_addr()?;
        let reloader = self.tls.as_ref().map(|tls| {
            tracing::info!(
                cert = %tls.certificate().cert_path().display(),
                client_ca = %tls.client_ca().map(|p| p.display().to_string()).unwrap_or_default(),
                "tls enabled (SIGHUP reloads the certificate)"
            );
            tls::spawn_reload_on_sighup(tls.certificate())
        });
        tracing::info!(%addr, data_dir = %self.config.data_dir.display(), "listening");
        let state = self.state.clone();
        let max_age = Duration::from_secs(self.config.upload_max_age_secs);
        // Often enough that a session outlives its max age by at most a quarter of it.
        let every = (max_age / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        let janitor = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match state.registry.purge_uploads(max_age).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "expired upload sessions removed"),
                    Err(e) => tracing::warn!(error = %e, "purging upload sessions failed"),
                }
            }
        });
        let controllers = {
            let (state, config) = (self.state.clone(), self.config.clone());
            let (outbox, delivery) = (self.outbox.clone(), self.delivery.clone());
            move || {
                let mut tasks = vec![
                    registry::gc::spawn(
                        state.gc.clone(),
                        Duration::from_secs(config.gc_interval_secs.max(1)),
                        Duration::from_secs(config.gc_sweep_interval_secs.max(1)),
                    ),
                    imagestream::retention::spawn(
                        imagestream::service::ImageStreams::new(state.registry.clone()),
                        config.retention.clone(),
                        Duration::from_secs(config.retention_interval_secs.max(1)),
                    ),
                    importer::controller::spawn(
                        state.importer.clone(),
                        importer::controller::Schedule {
                            interval: Duration::from_secs(config.scheduled_import_interval_secs),
                            max_per_minute: config.max_scheduled_imports_per_minute,
                        },
                    ),
                ];
                match webhooks::delivery::spawn(
                    state.registry.metadata().clone(),
                    outbox.clone(),
                    &state.api.webhooks,
                    delivery.clone(),
                ) {
                    // The worker runs on a thread of its own; this task owns it, and aborting
                    // the task (losing the lease, shutdown) drops it, which stops it.
                    Ok(worker) => tasks.push(tokio::spawn(async move {
                        let _worker = worker;
                        std::future::pending::<()>().await
                    })),
                    Err(e) => tracing::error!(error = %e, "webhook delivery did not start"),
                }
                tasks
            }
        };
        let controllers = leader::supervise(
            self.state.registry.metadata().clone(),
            Duration::from_secs(self.config.leader_lease_secs.max(3)),
            controllers,
        );
        let api_state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            api_state.api.close();
        };
        let acceptor = self.tls.as_ref().map(tls::Tls::acceptor);
        server::run(
            self.listener,
            self.state.clone(),
            acceptor,
            self.config.connection_limits(),
            shutdown,
        )
        .await;
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        janitor.abort();
        controllers.stop().await;
        let meta = self.state.registry.metadata().clone();
        // Acknowledgements still only in memory: persisted, a restart repeats no delivery.
        let outbox = self.outbox.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            if let Err(e) = outbox.persist_all() {
                tracing::warn!(error = %e, "persisting webhook delivery cursors failed");
            }
            meta.flush()
        });
        match flushed.await? {
            Ok(()) => {}
            // Every acknowledged write was flushed before it was acknowledged; what this flush
            // could not write was never promised to anyone.
            Err(e) if e.is_disk_full() => {
                tracing::warn!(error = %e, "the final flush failed for want of space")
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!("stopped");
        Ok(())
    }
}

fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

/// Boxed errors for start-up paths, where the only consumer is a human reading a message.
pub mod anyhow_like {
    pub type Error = Box<dyn std::error::Error + Send + Sync>;
    pub type Result<T, E = Error> = std::result::Result<T, E>;
}
