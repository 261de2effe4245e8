//! Building the immutable Image object of a pushed manifest.

use serde_json::{json, Map, Value};

use super::error::Cause;
use super::types::{Image, ImageLayer, ImageManifest, ObjectMeta, MANAGED_ANNOTATION};
use crate::registry::manifest::{Kind, Manifest};

/// Config media types whose blob is an image configuration (and so yields metadata).
const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The Image for manifest `digest`, pulled as `reference`. `config` is the config blob's bytes
/// when the manifest has an image config; anything else yields an Image without metadata.
pub fn build(digest: &str, reference: String, manifest: &Manifest, config: Option<&[u8]>) -> Image {
    let mut image = Image {
        metadata: ObjectMeta {
            name: digest.to_string(),
            annotations: [(MANAGED_ANNOTATION.to_string(), "true".to_string())].into(),
            ..Default::default()
        },
        docker_image_reference: reference,
        docker_image_manifest_media_type: manifest.media_type.clone(),
        docker_image_metadata_version: "1.0".into(),
        ..Default::default()
    };
    match manifest.kind {
        Kind::Index => {
            image.docker_image_manifests = manifest
                .manifests
                .iter()
                .map(|m| {
                    let p = m.platform.clone().unwrap_or_default();
                    ImageManifest {
                        digest: m.digest.to_string(),
                        media_type: m.media_type.clone(),
                        manifest_size: m.size,
                        architecture: p.architecture,
                        os: p.os,
                        variant: p.variant.unwrap_or_default(),
                    }
                })
                .collect();
        }
        Kind::Image => {
            image.docker_image_layers = manifest
                .layers
                .iter()
                .map(|l| ImageLayer {
                    name: l.digest.to_string(),
                    size: l.size,
                    media_type: l.media_type.clone(),
                })
                .collect();
            if let Some(cfg) = &manifest.config {
                image.config_digest = Some(cfg.digest.to_string());
                if IMAGE_CONFIG_TYPES.contains(&cfg.media_type.as_str()) {
                    let size = cfg.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
                    image.docker_image_metadata = config
                        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
                        .filter(Value::is_object)
                        .map(|c| metadata(&cfg.digest.to_string(), &c, size));
                }
            }
        }
    }
    image
}

/// Where `given` (an API caller's Image) contradicts `recorded` (the Image berth keeps for that
/// digest). Fields the caller left empty are not compared; the pull reference is per mapping.
pub fn contradictions(recorded: &Image, given: &Image) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut differs = |field: &str, value: String| {
        causes.push(Cause::invalid(
            format!("image.{field}"),
            &value,
            "does not match the Image already recorded for this digest (Images are immutable)",
        ))
    };
    let names = |layers: &[ImageLayer]| layers.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
    if !given.docker_image_layers.is_empty()
        && (names(&given.docker_image_layers) != names(&recorded.docker_image_layers)
            || given
                .docker_image_layers
                .iter()
                .zip(&recorded.docker_image_layers)
                .any(|(g, r)| g.size != 0 && g.size != r.size))
    {
        differs(
            "dockerImageLayers",
            names(&given.docker_image_layers).join(","),
        );
    }
    let digests = |m: &[ImageManifest]| m.iter().map(|m| m.digest.clone()).collect::<Vec<_>>();
    if !given.docker_image_manifests.is_empty()
        && digests(&given.docker_image_manifests) != digests(&recorded.docker_image_manifests)
    {
        differs(
            "dockerImageManifests",
            digests(&given.docker_image_manifests).join(","),
        );
    }
    if let Some(md) = given
        .docker_image_metadata
        .as_ref()
        .filter(|v| !v.is_null())
    {
        if Some(md) != recorded.docker_image_metadata.as_ref() {
            differs("dockerImageMetadata", String::new());
        }
    }
    if !given.docker_image_manifest_media_type.is_empty()
        && given.docker_image_manifest_media_type != recorded.docker_image_manifest_media_type
    {
        differs(
            "dockerImageManifestMediaType",
            given.docker_image_manifest_media_type.clone(),
        );
    }
    if given.config_digest.is_some() && given.config_digest != recorded.config_digest {
        differs(
            "dockerImageConfigDigest",
            given.config_digest.clone().unwrap_or_default(),
        );
    }
    if !given.metadata.labels.is_empty() && given.metadata.labels != recorded.metadata.labels {
        differs("metadata.labels", String::new());
    }
    for (k, v) in &given.metadata.annotations {
        if recorded.metadata.annotations.get(k) != Some(v) {
            differs("metadata.annotations", k.clone());
        }
    }
    causes
}

/// `dockerImageMetadata` in OpenShift's docker10 shape (capitalised keys).
fn metadata(config_digest: &str, config: &Value, size: u64) -> Value {
    let inner = config.get("config").cloned().unwrap_or(Value::Null);
    let mut cfg = Map::new();
    for key in [
        "User",
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "ExposedPorts",
        "Labels",
        "Volumes",
        "StopSignal",
    ] {
        if let Some(v) = inner.get(key).filter(|v| !v.is_null()) {
            cfg.insert(key.to_string(), v.clone());
        }
    }
    let mut m = json!({
        "kind": "DockerImage",
        "apiVersion": "1.0",
        "Id": config_digest,
        "Config": cfg,
        "Architecture": config.get("architecture").cloned().unwrap_or(Value::Null),
        "Size": size,
    });
    for (from, to) in [
        ("created", "Created"),
        ("author", "Author"),
        ("os", "Os"),
        ("variant", "Variant"),
    ] {
        if let Some(v) = config.get(from).filter(|v| !v.is_null()) {
            m[to] = v.clone();
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::manifest::parse;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn image_metadata_from_config() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":100}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D}","size":20}}]}}"#
        );
        let m = parse(None, m.as_bytes()).unwrap();
        let config = br#"{"architecture":"amd64","os":"linux","created":"2026-01-01T00:00:00Z",
            "config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/w","User":"1001","ExposedPorts":{"8080/tcp":{}},"Labels":{"a":"b"}}}"#;
        let img = build("sha256:x", "h/ns/s@sha256:x".into(), &m, Some(config));
        let md = img.docker_image_metadata.unwrap();
        assert_eq!(md["Architecture"], "amd64");
        assert_eq!(md["Size"], 120);
        assert_eq!(md["Config"]["Cmd"][0], "/bin/sh");
        assert_eq!(md["Created"], "2026-01-01T00:00:00Z");
        assert_eq!(img.docker_image_layers.len(), 1);
        assert_eq!(img.metadata.annotations[MANAGED_ANNOTATION], "true");
        // Not an image config: an Image all the same, without metadata.
        let artifact = parse(None, format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.example+json","digest":"{D}","size":2}},"layers":[]}}"#).as_bytes()).unwrap();
        assert!(build("sha256:y", "r".into(), &artifact, Some(b"{}"))
            .docker_image_metadata
            .is_none());
    }
}
