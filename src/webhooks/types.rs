//! The Webhook object (`berth.io/v1`, namespaced): where to send which events, how, and how
//! delivery is going.

use serde::{Deserialize, Serialize};

use crate::imagestream::types::ObjectMeta;
use crate::imagestream::Notice;

pub const GROUP: &str = "berth.io";
pub const API_VERSION: &str = "berth.io/v1";
pub const KIND: &str = "Webhook";

pub const TAG_UPDATED: &str = "imagestreamtag.updated";
pub const TAG_DELETED: &str = "imagestreamtag.deleted";
pub const IMPORT_FAILED: &str = "image.import.failed";
pub const MANIFEST_PUSHED: &str = "manifest.pushed";
pub const MANIFEST_DELETED: &str = "manifest.deleted";
pub const IMAGE_PRUNED: &str = "image.pruned";
pub const EVENT_TYPES: [&str; 6] = [
    TAG_UPDATED,
    TAG_DELETED,
    IMPORT_FAILED,
    MANIFEST_PUSHED,
    MANIFEST_DELETED,
    IMAGE_PRUNED,
];

/// The event type a notice is delivered as.
pub fn event_type(n: &Notice) -> &'static str {
    match n {
        Notice::TagUpdated(_) => TAG_UPDATED,
        Notice::TagDeleted(_) => TAG_DELETED,
        Notice::ImportFailed(_) => IMPORT_FAILED,
        Notice::ManifestPushed(_) => MANIFEST_PUSHED,
        Notice::ManifestDeleted(_) => MANIFEST_DELETED,
        Notice::ImagePruned(_) => IMAGE_PRUNED,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: WebhookSpec,
    #[serde(default)]
    pub status: WebhookStatus,
}

fn kind() -> String {
    KIND.into()
}
fn api_version() -> String {
    API_VERSION.into()
}

impl Default for Webhook {
    fn default() -> Self {
        Webhook {
            kind: kind(),
            api_version: api_version(),
            metadata: ObjectMeta::default(),
            spec: WebhookSpec::default(),
            status: WebhookStatus::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// CloudEvents 1.0, structured mode (`application/cloudevents+json`).
    #[default]
    CloudEvents,
    /// Distribution's notification envelope (`application/vnd.docker.distribution.events.v2+json`).
    Distribution,
}

impl Format {
    /// Whether the format has a way to say `event_type` (Distribution speaks only of pushes
    /// and deletes).
    pub fn carries(self, event_type: &str) -> bool {
        // Distribution has no events for failed imports or for Images (which have no
        // repository).
        self == Format::CloudEvents || (event_type != IMPORT_FAILED && event_type != IMAGE_PRUNED)
    }
}

#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    pub url: String,
    /// Event types delivered; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// `stream` (every tag of it) or `stream:tag`; empty: every stream of the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub format: Format,
    /// The Standard Webhooks signing secret (`whsec_<base64>`). Write-only: reads never carry
    /// it; a write without it keeps the current one, a write with a new one rotates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("tags", &self.tags)
            .field("format", &self.format)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl WebhookSpec {
    /// Whether a notice of `event_type` about `stream` (and `tags`) is for this subscription.
    pub fn wants(&self, event_type: &str, stream: &str, tags: &[&str]) -> bool {
        let type_ok = self.events.is_empty() || self.events.iter().any(|e| e == event_type);
        let tag_ok = self.tags.is_empty()
            || self.tags.iter().any(|f| match f.split_once(':') {
                None => f == stream,
                Some((s, t)) => s == stream && tags.contains(&t),
            });
        type_ok && tag_ok && self.format.carries(event_type)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStatus {
    /// `Active`, `Retrying` (the last attempt failed) or `Failing` (events were dropped since
    /// the last success).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    /// Events waiting to be delivered.
    #[serde(default)]
    pub pending: u64,
    #[serde(default)]
    pub delivered: u64,
    /// Events dropped because the outbox was full or they were older than its age limit.
    #[serde(default)]
    pub dropped_events: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_dropped_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<DeliveryError>,
    #[serde(default)]
    pub consecutive_failures: u64,
    /// How many secrets sign each delivery now (2 during a rotation's overlap).
    #[serde(default)]
    pub signing_secrets: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryError {
    pub time: String,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_type_stream_and_tag() {
        let mut spec = WebhookSpec::default();
        assert!(spec.wants(TAG_UPDATED, "app", &["latest"]));
        spec.tags = vec!["app:latest".into(), "db".into()];
        assert!(spec.wants(TAG_UPDATED, "app", &["latest"]));
        assert!(!spec.wants(TAG_UPDATED, "app", &["dev"]));
        assert!(spec.wants(TAG_UPDATED, "db", &["any"]));
        assert!(!spec.wants(MANIFEST_PUSHED, "app", &[]));
        spec.events = vec![TAG_DELETED.into()];
        assert!(!spec.wants(TAG_UPDATED, "app", &["latest"]));
        spec = WebhookSpec {
            format: Format::Distribution,
            ..Default::default()
        };
        assert!(!spec.wants(IMPORT_FAILED, "app", &["latest"]));
        assert!(format!(
            "{:?}",
            WebhookSpec {
                secret: Some("whsec_abc".into()),
                ..Default::default()
            }
        )
        .contains("redacted"));
    }
}
