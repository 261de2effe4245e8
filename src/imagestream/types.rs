//! The image.openshift.io/v1 objects as berth stores and serves them.
//!
//! These are plain data with the Kubernetes JSON field names: a Kubernetes object *is* its
//! wire form, so a separate DTO layer would only copy fields. Tags are kept as arrays sorted
//! by name, the v1 wire shape.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "image.openshift.io/v1";
pub const MANAGED_ANNOTATION: &str = "openshift.io/image.managed";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
/// Standard object metadata: what every persisted object carries.
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Name of the object, unique within its namespace (an Image's name is its manifest
    /// digest).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The namespace the object belongs to; empty for cluster-scoped objects (Images).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// A unique identifier the server assigns when the object is created.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The version of the object the server last wrote, for optimistic concurrency (an update
    /// naming an older one is refused with 409 Conflict) and for resuming watches.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// A sequence number of the object's desired state, set by the server.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: i64,
    /// When the object was created (RFC 3339), set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub creation_timestamp: Option<String>,
    /// Key-value pairs that organise and select objects (`-l` selectors match them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Key-value pairs of arbitrary metadata, not used for selection.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// An ImageStream stores a mapping of tags to images, metadata overrides that are applied when
/// images are tagged in a stream, and an optional reference to a container image repository on
/// a registry. Pushing to `<namespace>/<name>:<tag>` records the image under that tag.
#[serde(rename_all = "camelCase")]
pub struct ImageStream {
    /// The versioned schema of this representation: `ImageStream`.
    #[serde(default = "image_stream_kind")]
    pub kind: String,
    /// The group and version of the schema: `image.openshift.io/v1`.
    #[serde(default = "api_version")]
    pub api_version: String,
    /// Standard object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The desired state of the stream: its tags and where they come from.
    #[serde(default)]
    pub spec: ImageStreamSpec,
    /// The observed state, written by the server: each tag's history of images.
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
/// The desired state of an image stream.
#[serde(rename_all = "camelCase")]
pub struct ImageStreamSpec {
    /// Controls how other resources of the namespace reference images of this stream.
    #[serde(default)]
    pub lookup_policy: LookupPolicy,
    /// Optional; if set, the whole repository on that registry is imported into the stream
    /// (deprecated in favour of per-tag sources).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_repository: String,
    /// A map of arbitrary string values to specific image locators.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagReference>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
/// How short names of the stream's tags resolve in the namespace.
pub struct LookupPolicy {
    /// If true, pods and builds of the namespace may refer to the stream's tags by their short
    /// names (`name:tag`), which resolve to the tag's current image.
    #[serde(default)]
    pub local: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
/// TagReference specifies optional annotations for images using this tag and an optional
/// reference to an ImageStreamTag, ImageStreamImage, or DockerImage this tag should track.
#[serde(rename_all = "camelCase")]
pub struct TagReference {
    /// Name of the tag.
    pub name: String,
    /// Optional; if specified, annotations that are applied to images retrieved via
    /// ImageStreamTags.
    // Always emitted (`null` when empty), as OpenShift does.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Optional; if specified, a reference to another image that this tag should point to.
    /// Valid values are ImageStreamTag, ImageStreamImage, and DockerImage. ImageStreamTag
    /// references can only reference a tag within this same ImageStream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ObjectReference>,
    /// Reference states if the tag will be imported. Default value is false, which means the
    /// tag will be imported.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reference: bool,
    /// Generation is a counter that tracks mutations to the spec tag (user intent). When a tag
    /// reference is changed the generation is set to match the current stream generation
    /// (which is incremented every time spec is changed). Other processes in the system like
    /// the image importer observe that the generation of spec tag is newer than the
    /// generation recorded in the status and use that as a trigger to import the newest
    /// remote tag. To trigger a new import, clients may set this value to zero which will
    /// reset the generation to the latest stream generation. Legacy clients will send this
    /// value as nil which will be merged with the current tag generation.
    // Always emitted (may be `null`); the server controls it.
    #[serde(default)]
    pub generation: Option<i64>,
    /// ImportPolicy is information that controls how images may be imported by the server.
    #[serde(default)]
    pub import_policy: TagImportPolicy,
    /// ReferencePolicy defines how other components should consume the image.
    #[serde(default)]
    pub reference_policy: TagReferencePolicy,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
/// A reference to another object: the source of a tag.
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// Kind of the referent: DockerImage, ImageStreamTag or ImageStreamImage.
    #[serde(default)]
    pub kind: String,
    /// Name of the referent: a pull spec, `stream:tag`, or `stream@id`.
    #[serde(default)]
    pub name: String,
    /// Namespace of the referent; empty means the stream's own.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// Controls how images of a tag are imported.
#[serde(rename_all = "camelCase")]
pub struct TagImportPolicy {
    /// Insecure is true if the server may bypass certificate verification or connect
    /// directly over HTTP during image import.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    /// Scheduled indicates to the server that this tag should be periodically checked to
    /// ensure it is up to date, and imported.
    #[serde(default, skip_serializing_if = "is_false")]
    pub scheduled: bool,
    /// ImportMode describes how to import an image manifest: Legacy (one platform of a
    /// manifest list) or PreserveOriginal (the whole list and its manifests).
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// Describes how pull specs of images in this tag are generated.
pub struct TagReferencePolicy {
    /// Source (the default) keeps the pull spec of the image's origin; Local serves it through
    /// this registry (pull-through).
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
/// The observed state of an image stream, written by the server.
#[serde(rename_all = "camelCase")]
pub struct ImageStreamStatus {
    /// DockerImageRepository represents the effective location this stream may be accessed
    /// at. May be empty until the server determines where the repository is located.
    // Always emitted; recomputed from the internal host on every read.
    #[serde(default)]
    pub docker_image_repository: String,
    /// PublicDockerImageRepository represents the public location from where the image can be
    /// pulled outside the cluster. This field may be empty if the administrator has not
    /// exposed the integrated registry externally.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_docker_image_repository: String,
    /// Tags are a historical record of images associated with each tag. The first entry in the
    /// TagEvent array is the currently tagged image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<NamedTagEventList>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
/// NamedTagEventList relates a tag to its image history.
#[serde(rename_all = "camelCase")]
pub struct NamedTagEventList {
    /// Tag is the tag for which the history is recorded.
    pub tag: String,
    /// Standard object's metadata: the tag's history, newest first.
    // Always emitted.
    #[serde(default)]
    pub items: Vec<TagEvent>,
    /// Conditions is an array of conditions that apply to the tag event list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<TagEventCondition>,
}

// Fields in the order the API writes them (sorted keys): a stored event's JSON is already its
// wire form, so a stream is served without decoding its history.
/// TagEvent is used by ImageStreamStatus to keep a historical record of images associated with
/// a tag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagEvent {
    /// Created holds the time the TagEvent was created.
    pub created: String,
    /// DockerImageReference is the string that can be used to pull this image.
    pub docker_image_reference: String,
    /// Generation is the spec tag generation that resulted in this tag being updated.
    #[serde(default)]
    pub generation: i64,
    /// Image is the image (its digest).
    #[serde(default)]
    pub image: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
/// TagEventCondition contains condition information for a tag event.
#[serde(rename_all = "camelCase")]
pub struct TagEventCondition {
    /// Type of tag event condition, currently only ImportSuccess.
    #[serde(rename = "type")]
    pub kind: String,
    /// Status of the condition, one of True, False, Unknown.
    pub status: String,
    /// LastTransitionTIme is the time the condition transitioned from one status to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// Reason is a brief machine readable explanation for the condition's last transition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Message is a human readable description of the details about last transition,
    /// complementing reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Generation is the spec tag generation that this status corresponds to.
    #[serde(default)]
    pub generation: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// Image is an immutable representation of a container image and metadata at a point in
/// time. Images are named by taking a hash of their contents (metadata and content) and any
/// change in format, content, or metadata results in a new name.
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The versioned schema of this representation: `Image`.
    #[serde(default = "image_kind")]
    pub kind: String,
    /// The group and version of the schema: `image.openshift.io/v1`.
    #[serde(default = "api_version")]
    pub api_version: String,
    /// Standard object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// DockerImageReference is the string that can be used to pull this image.
    #[serde(default)]
    pub docker_image_reference: String,
    /// DockerImageMetadata contains metadata about this image (the image config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image_metadata: Option<serde_json::Value>,
    /// DockerImageMetadataVersion conveys the version of the object, which if empty defaults
    /// to "1.0".
    #[serde(default = "metadata_version", skip_serializing_if = "String::is_empty")]
    pub docker_image_metadata_version: String,
    /// DockerImageManifestMediaType specifies the mediaType of manifest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_manifest_media_type: String,
    /// DockerImageLayers represents the layers in the image. May not be set if the image
    /// does not define that data or if the image represents a manifest list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_image_layers: Vec<ImageLayer>,
    /// DockerImageManifests holds information about sub-manifests when the image represents
    /// a manifest list. When this field is present, no DockerImageLayers should be specified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub docker_image_manifests: Vec<ImageManifest>,
    /// The digest of the image's config blob (berth's own field).
    // Not part of OpenShift's schema; berth needs it to link an image's blobs into a stream
    // it is tagged into.
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
/// ImageLayer represents a single layer of the image.
pub struct ImageLayer {
    /// Name of the layer as defined by the underlying store (its digest).
    pub name: String,
    /// Size of the layer in bytes as defined by the underlying store.
    pub size: u64,
    /// MediaType of the referenced object.
    // Optional in OpenShift's API (the seed's ImageStreamMapping example has none).
    #[serde(default = "docker_layer_media_type")]
    pub media_type: String,
}

fn docker_layer_media_type() -> String {
    "application/vnd.docker.image.rootfs.diff.tar.gzip".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
/// ImageManifest represents sub-manifests of a manifest list.
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Digest is the unique identifier for the manifest. It refers to an Image object.
    pub digest: String,
    /// MediaType defines the type of the manifest.
    pub media_type: String,
    /// ManifestSize represents the size of the raw object contents, in bytes.
    pub manifest_size: u64,
    /// Architecture specifies the supported CPU architecture, for example `amd64` or
    /// `ppc64le`.
    pub architecture: String,
    /// OS specifies the operating system, for example `linux`.
    pub os: String,
    /// Variant is an optional field repreenting a variant of the CPU, for example v6 to
    /// specify a particular CPU variant of the ARM CPU.
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
/// A Kubernetes timestamp (`2006-01-02T15:04:05Z`) as a time.
pub fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
