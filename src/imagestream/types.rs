//! The image.openshift.io/v1 objects as berth stores and serves them.
//!
//! These are plain data with the Kubernetes JSON field names: a Kubernetes object *is* its
//! wire form, so a separate DTO layer would only copy fields. Tags are kept as arrays sorted
//! by name, the v1 wire shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "image.openshift.io/v1";
pub const MANAGED_ANNOTATION: &str = "openshift.io/image.managed";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStream {
    #[serde(default = "image_stream_kind")]
    pub kind: String,
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ImageStreamSpec,
    #[serde(default)]
    pub status: ImageStreamStatus,
}

fn image_stream_kind() -> String {
    "ImageStream".into()
}

fn image_kind() -> String {
    "Image".into()
}

fn api_version() -> String {
    API_VERSION.into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamSpec {
    #[serde(default)]
    pub lookup_policy: LookupPolicy,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_repository: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagReference>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LookupPolicy {
    #[serde(default)]
    pub local: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagReference {
    pub name: String,
    /// Always emitted (`null` when empty), as OpenShift does.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub reference: bool,
    /// Always emitted (may be `null`); the server controls it.
    #[serde(default)]
    pub generation: Option<i64>,
    #[serde(default)]
    pub import_policy: TagImportPolicy,
    #[serde(default)]
    pub reference_policy: TagReferencePolicy,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagImportPolicy {
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub scheduled: bool,
    #[serde(default = "legacy", skip_serializing_if = "String::is_empty")]
    pub import_mode: String,
}

fn legacy() -> String {
    "Legacy".into()
}

impl Default for TagImportPolicy {
    fn default() -> Self {
        TagImportPolicy {
            insecure: false,
            scheduled: false,
            import_mode: legacy(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagReferencePolicy {
    #[serde(rename = "type", default = "source")]
    pub kind: String,
}

fn source() -> String {
    "Source".into()
}

impl Default for TagReferencePolicy {
    fn default() -> Self {
        TagReferencePolicy { kind: source() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamStatus {
    /// Always emitted; recomputed from the public host on every read.
    #[serde(default)]
    pub docker_image_repository: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_docker_image_repository: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<NamedTagEventList>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedTagEventList {
    pub tag: String,
    /// Newest first; always emitted.
    #[serde(default)]
    pub items: Vec<TagEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<TagEventCondition>,
}

/// Fields in the order the API writes them (sorted keys): a stored event's JSON is already its
/// wire form, so a stream is served without decoding its history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagEvent {
    pub created: String,
    pub docker_image_reference: String,
    #[serde(default)]
    pub generation: i64,
    #[serde(default)]
    pub image: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagEventCondition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default)]
    pub generation: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    #[serde(default = "image_kind")]
    pub kind: String,
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub docker_image_reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image_metadata: Option<serde_json::Value>,
    #[serde(default = "metadata_version", skip_serializing_if = "String::is_empty")]
    pub docker_image_metadata_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_manifest_media_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_image_layers: Vec<ImageLayer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_image_manifests: Vec<ImageManifest>,
    /// The config blob's digest (not part of OpenShift's schema; berth needs it to link an
    /// image's blobs into a stream it is tagged into).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "dockerImageConfigDigest"
    )]
    pub config_digest: Option<String>,
}

// Objects built in code carry their kind and apiVersion like decoded ones do.
impl Default for ImageStream {
    fn default() -> Self {
        ImageStream {
            kind: image_stream_kind(),
            api_version: api_version(),
            metadata: ObjectMeta::default(),
            spec: ImageStreamSpec::default(),
            status: ImageStreamStatus::default(),
        }
    }
}

impl Default for Image {
    fn default() -> Self {
        Image {
            kind: image_kind(),
            api_version: api_version(),
            metadata: ObjectMeta::default(),
            docker_image_reference: String::new(),
            docker_image_metadata: None,
            docker_image_metadata_version: metadata_version(),
            docker_image_manifest_media_type: String::new(),
            docker_image_layers: Vec::new(),
            docker_image_manifests: Vec::new(),
            config_digest: None,
        }
    }
}

impl Image {
    /// Whether this registry holds the image's content (pushed here), as opposed to an image
    /// imported from elsewhere.
    pub fn is_managed(&self) -> bool {
        self.metadata
            .annotations
            .get(MANAGED_ANNOTATION)
            .is_some_and(|v| v == "true")
    }
}

fn metadata_version() -> String {
    "1.0".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageLayer {
    pub name: String,
    pub size: u64,
    /// Optional in OpenShift's API (the seed's ImageStreamMapping example has none).
    #[serde(default = "docker_layer_media_type")]
    pub media_type: String,
}

fn docker_layer_media_type() -> String {
    "application/vnd.docker.image.rootfs.diff.tar.gzip".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub digest: String,
    pub media_type: String,
    pub manifest_size: u64,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl ImageStream {
    pub fn status_tag(&self, tag: &str) -> Option<&NamedTagEventList> {
        self.status.tags.iter().find(|t| t.tag == tag)
    }

    pub fn status_tag_mut(&mut self, tag: &str) -> &mut NamedTagEventList {
        let i = match self
            .status
            .tags
            .binary_search_by(|t| t.tag.as_str().cmp(tag))
        {
            Ok(i) => i,
            Err(i) => {
                self.status.tags.insert(
                    i,
                    NamedTagEventList {
                        tag: tag.to_string(),
                        ..Default::default()
                    },
                );
                i
            }
        };
        &mut self.status.tags[i]
    }

    pub fn spec_tag(&self, tag: &str) -> Option<&TagReference> {
        self.spec.tags.iter().find(|t| t.name == tag)
    }

    /// The image at the top of `tag`'s history, if any.
    pub fn current_image(&self, tag: &str) -> Option<&str> {
        self.status_tag(tag)
            .and_then(|t| t.items.first())
            .map(|e| e.image.as_str())
            .filter(|i| !i.is_empty())
    }

    /// Keeps both tag arrays sorted by name, the order v1 serializes them in.
    pub fn normalize(&mut self) {
        self.spec.tags.sort_by(|a, b| a.name.cmp(&b.name));
        self.spec.tags.dedup_by(|later, earlier| {
            // When a v1 array repeats a name, the last entry wins.
            if later.name == earlier.name {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
        self.status.tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    }
}

/// RFC 3339 timestamp of now, seconds precision (Kubernetes' metav1.Time format).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
