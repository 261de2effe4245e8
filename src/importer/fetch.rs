//! Fetching one image from a remote registry and turning it into Image objects (spec §6):
//! Legacy picks one platform of a manifest list, PreserveOriginal keeps the list and every
//! child. Nothing is stored here; [`store`] does that inside the caller's transaction.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_storage::{Digest, TxError, Txn};

use super::allowed::AllowedRegistries;
use super::reference::ImageReference;
use super::remote::{Remote, RemoteError, RemoteManifest, RemoteOptions};
use crate::imagestream::import::ImportFailure;
use crate::imagestream::store::content_image;
use crate::imagestream::types::{Image, MANAGED_ANNOTATION};
use crate::imagestream::{image, Change};
use crate::registry::manifest::{self, Descriptor, Kind, Manifest};
use crate::registry::store_manifest;
use crate::secrets::Secrets;

/// Tag annotations that choose the platform a Legacy import keeps.
pub const PREFER_ARCH: &str = "importer.image.openshift.io/prefer-arch";
pub const PREFER_OS: &str = "importer.image.openshift.io/prefer-os";
/// Config blobs are a few KiB; anything bigger is not read for metadata.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    Legacy,
    PreserveOriginal,
}

impl ImportMode {
    /// `""` means Legacy; the names are case-sensitive.
    pub fn parse(s: &str) -> Option<ImportMode> {
        match s {
            "" | "Legacy" => Some(ImportMode::Legacy),
            "PreserveOriginal" => Some(ImportMode::PreserveOriginal),
            _ => None,
        }
    }
}

/// How the importer reaches remote registries (server configuration).
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// Extra PEM roots trusted besides the system's.
    pub ca_bundle: Option<PathBuf>,
    pub timeout: Duration,
    /// `allowed_registries_for_import`.
    pub allowed: Arc<AllowedRegistries>,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        RemoteSettings {
            ca_bundle: None,
            timeout: Duration::from_secs(30),
            allowed: Arc::default(),
        }
    }
}

/// One image to fetch: a spec tag's or an ImageStreamImport entry's source and policy.
#[derive(Debug, Clone)]
pub struct ImportSource {
    pub from: String,
    pub insecure: bool,
    pub mode: ImportMode,
    /// `(os, arch)` preferences from the tag's annotations.
    pub prefer_os: Option<String>,
    pub prefer_arch: Option<String>,
}

/// A fetched image, ready to be stored and recorded.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// `registry/repository@digest`: the tag event's reference.
    pub reference: String,
    /// The Image the tag points at (the list itself for PreserveOriginal).
    pub image: Image,
    /// PreserveOriginal: one Image per platform.
    pub children: Vec<Image>,
    /// Every manifest fetched, byte for byte, so pulls through berth serve them.
    manifests: Vec<RemoteManifest>,
}

impl Fetched {
    pub fn digest(&self) -> &str {
        &self.image.metadata.name
    }
}

fn failure(e: RemoteError) -> ImportFailure {
    ImportFailure {
        reason: e.reason().to_string(),
        message: e.to_string(),
    }
}

fn invalid(message: String) -> ImportFailure {
    ImportFailure {
        reason: "Invalid".into(),
        message,
    }
}

/// Opens a client for `source` in namespace `ns`, with the namespace's credentials for its
/// registry.
pub fn connect(
    secrets: &Secrets,
    settings: &RemoteSettings,
    ns: &str,
    reference: &ImageReference,
    insecure: bool,
) -> Result<Remote, ImportFailure> {
    let credentials = secrets
        .credentials_for(ns, &reference.registry, insecure)
        .map_err(|e| ImportFailure {
            reason: "InternalError".into(),
            message: e.to_string(),
        })?;
    Remote::new(
        reference,
        RemoteOptions {
            insecure,
            credentials,
            ca_bundle: settings.ca_bundle.clone(),
            timeout: settings.timeout,
            allowed: settings.allowed.clone(),
        },
    )
    .map_err(failure)
}

/// Fetches `source` as namespace `ns` sees it.
pub async fn fetch(
    secrets: &Secrets,
    settings: &RemoteSettings,
    ns: &str,
    source: &ImportSource,
) -> Result<Fetched, ImportFailure> {
    let reference = ImageReference::parse(&source.from).map_err(invalid)?;
    let remote = connect(secrets, settings, ns, &reference, source.insecure)?;
    let top = remote
        .get_manifest(&reference.reference())
        .await
        .map_err(failure)?;
    let parsed = parse(&top)?;
    let repository = reference.repository_spec();
    match (parsed.kind, source.mode) {
        (Kind::Image, _) => single(&remote, &repository, top, &parsed).await,
        (Kind::Index, ImportMode::Legacy) => {
            let child = choose_platform(&parsed.manifests, source).ok_or_else(|| {
                invalid(format!("the manifest list {} is empty", reference.exact()))
            })?;
            single_child(&remote, &repository, child)
                .await?
                .ok_or_else(|| {
                    invalid(format!(
                        "{} is a list of lists, which cannot be imported",
                        reference.exact()
                    ))
                })
        }
        (Kind::Index, ImportMode::PreserveOriginal) => {
            let mut manifests = vec![top.clone()];
            let mut children = Vec::new();
            for child in &parsed.manifests {
                let Some(f) = single_child(&remote, &repository, child).await? else {
                    continue;
                };
                children.push(f.image);
                manifests.extend(f.manifests);
            }
            let digest = top.digest.to_string();
            let reference = format!("{repository}@{digest}");
            let mut image = image::build(&digest, reference.clone(), &parsed, None);
            image.metadata.annotations.remove(MANAGED_ANNOTATION);
            Ok(Fetched {
                reference,
                image,
                children,
                manifests,
            })
        }
    }
}

fn parse(m: &RemoteManifest) -> Result<Manifest, ImportFailure> {
    manifest::parse(Some(&m.media_type), &m.body)
        .map_err(|e| invalid(format!("the manifest {} cannot be imported: {e}", m.digest)))
}

/// The image manifest a list entry names (`None` when it is itself a list).
async fn single_child(
    remote: &Remote,
    repository: &str,
    child: &Descriptor,
) -> Result<Option<Fetched>, ImportFailure> {
    let m = remote
        .get_manifest(&child.digest.to_string())
        .await
        .map_err(failure)?;
    let parsed = parse(&m)?;
    if parsed.kind != Kind::Image {
        return Ok(None);
    }
    single(remote, repository, m, &parsed).await.map(Some)
}

/// An image manifest with its config read for metadata.
async fn single(
    remote: &Remote,
    repository: &str,
    m: RemoteManifest,
    parsed: &Manifest,
) -> Result<Fetched, ImportFailure> {
    let config = match &parsed.config {
        Some(c) if c.size <= MAX_CONFIG_BYTES => Some(
            remote
                .get_blob_bytes(&c.digest, MAX_CONFIG_BYTES)
                .await
                .map_err(failure)?,
        ),
        _ => None,
    };
    let digest = m.digest.to_string();
    let reference = format!("{repository}@{digest}");
    let mut image = image::build(&digest, reference.clone(), parsed, config.as_deref());
    // Imported, not pushed: the blobs stay at the source until pulled through.
    image.metadata.annotations.remove(MANAGED_ANNOTATION);
    Ok(Fetched {
        reference,
        image,
        children: Vec::new(),
        manifests: vec![m],
    })
}

/// The platform a Legacy import keeps (§6): the tag's preferences, this server's platform,
/// linux/amd64, then the first entry.
fn choose_platform<'a>(entries: &'a [Descriptor], source: &ImportSource) -> Option<&'a Descriptor> {
    let matches = |d: &Descriptor, os: Option<&str>, arch: Option<&str>| {
        let p = d.platform.clone().unwrap_or_default();
        os.is_none_or(|o| p.os == o) && arch.is_none_or(|a| p.architecture == a)
    };
    let preferred = (source.prefer_os.is_some() || source.prefer_arch.is_some())
        .then(|| {
            entries.iter().find(|d| {
                matches(
                    d,
                    source.prefer_os.as_deref(),
                    source.prefer_arch.as_deref(),
                )
            })
        })
        .flatten();
    preferred
        .or_else(|| {
            entries
                .iter()
                .find(|d| matches(d, Some(host_os()), Some(host_arch())))
        })
        .or_else(|| {
            entries
                .iter()
                .find(|d| matches(d, Some("linux"), Some("amd64")))
        })
        .or_else(|| entries.first())
}

/// This server's platform in Go's (and so the image spec's) names.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        other => other,
    }
}

fn host_os() -> &'static str {
    std::env::consts::OS
}

/// Stores what an import fetched: manifests byte for byte, then the Images (children first).
pub fn store<E>(
    tx: &mut dyn Txn,
    fetched: &Fetched,
    changes: &mut Vec<Change>,
) -> Result<(), TxError<E>>
where
    E: From<crate::imagestream::Error>,
{
    let mut first_stored = std::collections::HashSet::new();
    for m in &fetched.manifests {
        let content = std::str::from_utf8(&m.body).unwrap_or_default();
        if store_manifest(tx, &m.digest, &m.media_type, content)? {
            first_stored.insert(m.digest.to_string());
        }
    }
    for image in fetched.children.iter().chain([&fetched.image]) {
        let first = first_stored.contains(&image.metadata.name);
        content_image(tx, image, first, changes).map_err(|e| match e {
            TxError::Abort(e) => TxError::Abort(E::from(e)),
            TxError::Storage(e) => TxError::Storage(e),
        })?;
    }
    Ok(())
}

/// The digest of a fetched image's top manifest.
pub fn digest_of(fetched: &Fetched) -> Option<Digest> {
    fetched.image.metadata.name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::manifest::Platform;

    fn entry(os: &str, arch: &str, n: u8) -> Descriptor {
        Descriptor {
            media_type: manifest::oci_manifest(),
            digest: Digest::sha256_of(&[n]),
            size: 1,
            urls: Vec::new(),
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: None,
            }),
        }
    }

    fn source(os: Option<&str>, arch: Option<&str>) -> ImportSource {
        ImportSource {
            from: "r/x".into(),
            insecure: false,
            mode: ImportMode::Legacy,
            prefer_os: os.map(Into::into),
            prefer_arch: arch.map(Into::into),
        }
    }

    #[test]
    fn legacy_platform_preference_order() {
        let list = [
            entry("linux", "s390x", 1),
            entry("linux", "arm64", 2),
            entry("linux", "amd64", 3),
            entry("linux", host_arch(), 4),
        ];
        let pick = |s| choose_platform(&list, &s).unwrap().digest.clone();
        assert_eq!(pick(source(None, Some("arm64"))), list[1].digest);
        assert_eq!(pick(source(Some("linux"), Some("s390x"))), list[0].digest);
        // No preference: this server's platform (listed before the explicit host entry when
        // the host is amd64 or arm64).
        let host = list
            .iter()
            .find(|d| d.platform.as_ref().unwrap().architecture == host_arch())
            .unwrap();
        assert_eq!(pick(source(None, None)), host.digest);
        // A preference nothing matches falls back to the host.
        assert_eq!(pick(source(None, Some("mips"))), host.digest);
        let odd = [entry("windows", "s390x", 5), entry("plan9", "mips", 6)];
        assert_eq!(
            choose_platform(&odd, &source(None, None)).unwrap().digest,
            odd[0].digest
        );
        assert!(choose_platform(&[], &source(None, None)).is_none());
        assert_eq!(ImportMode::parse(""), Some(ImportMode::Legacy));
        assert_eq!(ImportMode::parse("legacy"), None);
    }
}
