//! Manifest documents: media types, parsing and structural validation.
//!
//! Parsing is deliberately lenient about unknown fields (the spec allows them) and strict about
//! the few things that make a document ambiguous: the `mediaType` must agree with the
//! Content-Type, and an image manifest may not carry `manifests` (nor an index `config` or
//! `layers`), so one document can never be read as two kinds (CVE-2021-41190).

use std::collections::BTreeMap;

use berth_storage::Digest;
use oci_spec::image::MediaType;
use serde::Deserialize;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

pub fn oci_manifest() -> String {
    MediaType::ImageManifest.to_string()
}

pub fn oci_index() -> String {
    MediaType::ImageIndex.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An image or artifact manifest: a config and layers.
    Image,
    /// An index or manifest list: child manifests.
    Index,
}

fn kind_of(media_type: &str) -> Option<Kind> {
    if media_type == DOCKER_MANIFEST || media_type == oci_manifest() {
        Some(Kind::Image)
    } else if media_type == DOCKER_MANIFEST_LIST || media_type == oci_index() {
        Some(Kind::Index)
    } else {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub urls: Vec<String>,
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Descriptor {
    /// Layers that registries are not expected to hold (Windows base layers and the like).
    pub fn is_non_distributable(&self) -> bool {
        self.media_type.contains("nondistributable") || self.media_type.contains(".foreign.")
    }
}

/// A parsed, structurally valid manifest or index.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub kind: Kind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// The `artifactType` a referrers listing shows: the explicit one, else the config's media
    /// type for an image manifest.
    pub fn effective_artifact_type(&self) -> Option<String> {
        self.artifact_type.clone().or_else(|| match self.kind {
            Kind::Image => self.config.as_ref().map(|c| c.media_type.clone()),
            Kind::Index => None,
        })
    }

    /// Every blob the registry must already hold for this manifest to be accepted.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter().filter(|l| !l.is_non_distributable()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidManifest(pub String);

fn invalid(msg: impl Into<String>) -> InvalidManifest {
    InvalidManifest(msg.into())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<i64>,
    #[serde(default)]
    urls: Vec<String>,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn descriptor(raw: RawDescriptor, field: &str) -> Result<Descriptor, InvalidManifest> {
    let media_type = raw
        .media_type
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid(format!("{field}: descriptor has no mediaType")))?;
    let digest = raw
        .digest
        .ok_or_else(|| invalid(format!("{field}: descriptor has no digest")))?
        .parse::<Digest>()
        .map_err(|e| invalid(format!("{field}: {e}")))?;
    let size = raw
        .size
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| invalid(format!("{field}: descriptor needs a non-negative size")))?;
    Ok(Descriptor {
        media_type,
        digest,
        size,
        urls: raw.urls,
        platform: raw.platform,
    })
}

/// Strips parameters (`; charset=...`) from a Content-Type.
fn bare_media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Parses `body` sent with `content_type`.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, InvalidManifest> {
    let raw: RawManifest = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let header = content_type
        .map(bare_media_type)
        .filter(|c| !c.is_empty() && kind_of(c).is_some() || DOCKER_SCHEMA1.contains(c));
    let media_type = match (raw.media_type.as_deref(), header) {
        (Some(body_type), Some(header)) if body_type != header => {
            return Err(invalid(format!(
                "mediaType {body_type:?} does not match Content-Type {header:?}"
            )))
        }
        (Some(t), _) | (None, Some(t)) => t.to_string(),
        // Without any declared type, the shape decides (OCI allows omitting mediaType).
        (None, None) if raw.manifests.is_some() => oci_index(),
        (None, None) => oci_manifest(),
    };
    if DOCKER_SCHEMA1.contains(&media_type.as_str()) {
        return Err(invalid(
            "Docker schema 1 manifests are not supported; push schema 2 or OCI",
        ));
    }
    let kind = kind_of(&media_type)
        .ok_or_else(|| invalid(format!("unsupported manifest media type {media_type:?}")))?;

    let subject = raw.subject.map(|s| descriptor(s, "subject")).transpose()?;
    match kind {
        Kind::Image => {
            if raw.manifests.is_some() {
                return Err(invalid(
                    "an image manifest must not have a `manifests` field",
                ));
            }
            let config = raw
                .config
                .ok_or_else(|| invalid("an image manifest needs a config descriptor"))?;
            let config = descriptor(config, "config")?;
            let layers = raw
                .layers
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, l)| descriptor(l, &format!("layers[{i}]")))
                .collect::<Result<_, _>>()?;
            Ok(Manifest {
                media_type,
                kind,
                config: Some(config),
                layers,
                manifests: Vec::new(),
                subject,
                artifact_type: raw.artifact_type,
                annotations: raw.annotations,
            })
        }
        Kind::Index => {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(invalid(
                    "an index must not have `config` or `layers` fields",
                ));
            }
            let manifests = raw
                .manifests
                .ok_or_else(|| invalid("an index needs a `manifests` array"))?
                .into_iter()
                .enumerate()
                .map(|(i, m)| descriptor(m, &format!("manifests[{i}]")))
                .collect::<Result<_, _>>()?;
            Ok(Manifest {
                media_type,
                kind,
                config: None,
                layers: Vec::new(),
                manifests,
                subject,
                artifact_type: raw.artifact_type,
                annotations: raw.annotations,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D}","size":2}}]{extra}}}"#
        )
    }

    #[test]
    fn parses_an_oci_image_and_keeps_unknown_fields_harmless() {
        let m = parse(
            Some("application/vnd.oci.image.manifest.v1+json"),
            image(r#","custom":{"x":1}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(m.kind, Kind::Image);
        assert_eq!(m.layers.len(), 1);
        assert_eq!(
            m.effective_artifact_type().as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn refuses_ambiguous_documents() {
        let both = image(r#","manifests":[]"#);
        assert!(parse(Some(&oci_manifest()), both.as_bytes()).is_err());
        let mismatch = parse(Some(&oci_index()), image("").as_bytes());
        assert!(mismatch.unwrap_err().0.contains("does not match"));
        let index_with_layers = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[],"layers":[]}}"#,
            oci_index()
        );
        assert!(parse(None, index_with_layers.as_bytes()).is_err());
        assert!(parse(None, b"not json").is_err());
        assert!(parse(None, br#"{"schemaVersion":1}"#).is_err());
    }

    #[test]
    fn infers_the_kind_without_a_media_type() {
        let m = parse(None, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        assert_eq!(m.kind, Kind::Index);
    }
}
