//! berth: a container registry with OpenShift image streams built in.
//!
//! # Layout
//! - [`config`]: what `berth serve` can be told (TOML, env, flags).
//! - [`registry`]: the distribution domain (names, manifests, blobs, tags, referrers); no HTTP.
//! - [`http`]: the only module that knows HTTP: endpoint parsing, handlers, wire errors.
//! - [`server`]: the accept loop with graceful shutdown.
//! - storage lives in the `berth-storage` crate (metadata store and blob store traits).

pub mod cli;
pub mod config;
pub mod http;
pub mod imagestream;
pub mod importer;
pub mod registry;
pub mod secrets;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use berth_storage::fs::FsBlobStore;
use berth_storage::sled_store::SledMetadata;
use tokio::net::TcpListener;

use config::Config;
use registry::{Limits, Registry};

/// Opens the stores under `config.data_dir` and builds the registry.
pub fn open_registry(config: &Config, public_host: String) -> anyhow_like::Result<Registry> {
    let meta = SledMetadata::open(&config.data_dir.join("metadata"))?;
    let blobs = FsBlobStore::open(&config.data_dir)?;
    Ok(Registry::new(
        Arc::new(meta),
        Arc::new(blobs),
        Limits {
            max_manifest_bytes: config.max_manifest_bytes,
            ..Limits::default()
        },
        public_host,
    )?)
}

/// A bound, ready-to-run server.
pub struct Server {
    listener: TcpListener,
    state: Arc<http::State>,
    config: Config,
}

impl Server {
    /// Opens the stores and binds the listener (port 0 picks a free port).
    pub async fn bind(config: Config) -> anyhow_like::Result<Server> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let public_host = config
            .public_host
            .clone()
            .unwrap_or_else(|| addr.to_string());
        let registry = open_registry(&config, public_host.clone())?;
        let importer = importer::Importer::new(
            registry.clone(),
            importer::fetch::RemoteSettings {
                ca_bundle: config.import_ca_bundle.clone(),
                timeout: Duration::from_secs(config.import_timeout_secs.max(1)),
            },
        );
        Ok(Server {
            listener,
            state: Arc::new(http::State {
                pull_through: importer::pullthrough::PullThrough::new(importer.clone()),
                api: http::imagestream::Api::new(
                    imagestream::service::ImageStreams::new(registry.clone()),
                    importer.clone(),
                )?,
                importer,
                registry,
                public_host,
            }),
            config,
        })
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
        tracing::info!(%addr, data_dir = %self.config.data_dir.display(), "listening");
        let state = self.state.clone();
        let max_age = Duration::from_secs(self.config.upload_max_age_secs);
        let janitor = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                match state.registry.purge_uploads(max_age).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "expired upload sessions removed"),
                    Err(e) => tracing::warn!(error = %e, "purging upload sessions failed"),
                }
            }
        });
        let controller = importer::controller::spawn(
            self.state.importer.clone(),
            importer::controller::Schedule {
                interval: Duration::from_secs(self.config.scheduled_import_interval_secs),
                max_per_minute: self.config.max_scheduled_imports_per_minute,
            },
        );
        let api_state = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            api_state.api.close();
        };
        server::run(self.listener, self.state.clone(), shutdown).await;
        janitor.abort();
        controller.abort();
        let meta = self.state.registry.metadata().clone();
        tokio::task::spawn_blocking(move || meta.flush()).await??;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Boxed errors for start-up paths, where the only consumer is a human reading a message.
pub mod anyhow_like {
    pub type Error = Box<dyn std::error::Error + Send + Sync>;
    pub type Result<T, E = Error> = std::result::Result<T, E>;
}
