//! `Importer`: imports a stream's DockerImage tags and records the outcome (spec §3.8).

use std::sync::Arc;

use super::allowed::Refused;
use super::fetch::{
    self, Fetched, ImportMode, ImportSource, RemoteSettings, PREFER_ARCH, PREFER_OS,
};
use super::reference::ImageReference;
use crate::imagestream::import::{record, ImportFailure, REPOSITORY_CHECK_ANNOTATION};
use crate::imagestream::reach::Reach;
use crate::imagestream::store::{load_tags, save_stream};
use crate::imagestream::types::{now_rfc3339, TagReference};
use crate::imagestream::Error;
use crate::imagestream::Origin;
use crate::metrics::ImportCounters;
use crate::registry::Registry;
use crate::secrets::Secrets;

#[derive(Clone)]
pub struct Importer {
    registry: Registry,
    secrets: Secrets,
    settings: Arc<RemoteSettings>,
    outcomes: ImportCounters,
}

impl Importer {
    pub fn new(registry: Registry, settings: RemoteSettings, outcomes: ImportCounters) -> Self {
        Importer {
            secrets: Secrets::new(registry.clone()),
            registry,
            settings: Arc::new(settings),
            outcomes,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    pub fn settings(&self) -> &RemoteSettings {
        &self.settings
    }

    /// Whether `allowed_registries_for_import` lets `reference`'s registry be fetched from (with
    /// `insecure`), the addresses its name resolves to now included.
    pub async fn admit(&self, reference: &ImageReference, insecure: bool) -> Result<(), Refused> {
        self.settings
            .allowed
            .admit_resolved(&reference.registry, reference.api_host(), insecure)
            .await
    }

    /// Fetches one image as namespace `ns` sees its registry.
    pub async fn fetch(&self, ns: &str, source: &ImportSource) -> Result<Fetched, ImportFailure> {
        let fetched = fetch::fetch(&self.secrets, &self.settings, ns, source).await;
        match &fetched {
            Ok(_) => self.outcomes.ok.inc(),
            Err(_) => self.outcomes.failed.inc(),
        }
        fetched
    }

    /// Imports spec tag `spec` of `ns/name` and records the outcome. Returns whether the
    /// stream changed (a repeat import of an unchanged image changes nothing).
    pub async fn import_tag(
        &self,
        ns: &str,
        name: &str,
        spec: &TagReference,
    ) -> Result<bool, Error> {
        let Some(source) = source_of(spec) else {
            return Ok(false);
        };
        let outcome = match ImportMode::parse(&spec.import_policy.import_mode) {
            Some(mode) => self.fetch(ns, &ImportSource { mode, ..source }).await,
            None => Err(ImportFailure {
                reason: "Invalid".into(),
                message: format!(
                    "invalid import mode {:?}, valid modes are '', 'Legacy', 'PreserveOriginal'",
                    spec.import_policy.import_mode
                ),
            }),
        };
        match &outcome {
            Ok(f) => tracing::info!(
                stream = %format!("{ns}/{name}"), tag = %spec.name, image = %f.digest(),
                "imported"
            ),
            Err(e) => tracing::info!(
                stream = %format!("{ns}/{name}"), tag = %spec.name, reason = %e.reason,
                message = %e.message, "import failed"
            ),
        }
        let (ns, name, spec) = (ns.to_string(), name.to_string(), spec.clone());
        self.registry
            .write_changes_as(move |tx, changes| {
                let Some(old) = load_tags(tx, &ns, &name, &[spec.name.as_str()])? else {
                    return Ok(false);
                };
                let mut stream = old.stream().clone();
                let result = outcome
                    .as_ref()
                    .map(|f| (f.reference.clone(), f.digest().to_string()))
                    .map_err(Clone::clone);
                if !record(&mut stream, &spec, result) {
                    return Ok(false);
                }
                if let Ok(fetched) = &outcome {
                    fetch::store::<Error>(tx, fetched, changes)?;
                }
                stream
                    .metadata
                    .annotations
                    .insert(REPOSITORY_CHECK_ANNOTATION.into(), now_rfc3339());
                // A tag whose spec is not ahead of its status is being re-imported on schedule.
                let origin = if crate::imagestream::import::pending(old.stream(), &spec) {
                    Origin::Import
                } else {
                    Origin::ScheduledImport
                };
                // Imported content was fetched and verified; its blobs are proven on first pull.
                save_stream(
                    tx,
                    Some(&old),
                    &mut stream,
                    changes,
                    &Reach::trusted(),
                    origin,
                )?;
                Ok(true)
            })
            .await
    }
}

/// What a DockerImage spec tag imports (`None` for any other tag).
pub fn source_of(spec: &TagReference) -> Option<ImportSource> {
    let from = spec.from.as_ref().filter(|f| f.kind == "DockerImage")?;
    let annotation = |k: &str| {
        spec.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    Some(ImportSource {
        from: from.name.clone(),
        insecure: spec.import_policy.insecure,
        mode: ImportMode::Legacy,
        prefer_os: annotation(PREFER_OS),
        prefer_arch: annotation(PREFER_ARCH),
    })
}
