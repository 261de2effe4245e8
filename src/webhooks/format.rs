//! Delivery bodies: CloudEvents 1.0 in structured mode, or Distribution's notification
//! envelope (so receivers written for Distribution work unchanged). Rendered when sent, from
//! the queued event, so a redelivery carries the same id and the same content.

use serde_json::{json, Value};

use super::outbox::Queued;
use super::types::{
    Format, IMAGE_PRUNED, IMPORT_FAILED, MANIFEST_DELETED, MANIFEST_PUSHED, TAG_DELETED,
    TAG_UPDATED,
};

pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
pub const DISTRIBUTION_EVENTS: &str = "application/vnd.docker.distribution.events.v2+json";
/// The reverse-DNS prefix of CloudEvents types (berth.io).
pub const TYPE_PREFIX: &str = "io.berth.";

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// `ns/stream:tag` for istag events, `ns/stream@digest` for manifest events, the digest for
/// a pruned Image (cluster-scoped).
pub fn subject(e: &Queued) -> String {
    let d = &e.data;
    if e.kind == IMAGE_PRUNED {
        return s(d, "image").to_string();
    }
    let base = format!("{}/{}", s(d, "namespace"), s(d, "stream"));
    match e.kind.as_str() {
        MANIFEST_PUSHED | MANIFEST_DELETED => format!("{base}@{}", s(d, "digest")),
        _ => format!("{base}:{}", s(d, "tag")),
    }
}

/// The body and its content type, or `None` when the format cannot express the event.
pub fn render(format: Format, e: &Queued, public_host: &str) -> Option<(&'static str, Vec<u8>)> {
    let body = match format {
        Format::CloudEvents => (CLOUDEVENTS_JSON, cloudevent(e)),
        Format::Distribution => (DISTRIBUTION_EVENTS, distribution(e, public_host)?),
    };
    Some((body.0, serde_json::to_vec(&body.1).ok()?))
}

fn cloudevent(e: &Queued) -> Value {
    let d = &e.data;
    let (ns, stream) = (s(d, "namespace"), s(d, "stream"));
    let source = match e.kind.as_str() {
        MANIFEST_PUSHED | MANIFEST_DELETED => format!("/v2/{ns}/{stream}"),
        IMAGE_PRUNED => format!("/apis/image.openshift.io/v1/images/{}", s(d, "image")),
        _ => format!("/apis/image.openshift.io/v1/namespaces/{ns}/imagestreams/{stream}"),
    };
    let mut data = d.clone();
    if let Some(o) = data.as_object_mut() {
        // `stream` is berth's short name; the API calls it the image stream.
        if let Some(v) = o.remove("stream") {
            o.insert("imageStream".into(), v);
        }
    }
    json!({
        "specversion": "1.0",
        "id": e.id,
        "source": source,
        "type": format!("{TYPE_PREFIX}{}", e.kind),
        "subject": subject(e),
        "time": e.time,
        "datacontenttype": "application/json",
        "data": data,
    })
}

/// Distribution's envelope: `{"events":[{id, timestamp, action, target, request, actor,
/// source}]}`. An istag update is a push of the tag, a delete a delete; import failures have
/// no Distribution equivalent.
fn distribution(e: &Queued, public_host: &str) -> Option<Value> {
    let d = &e.data;
    let repository = format!("{}/{}", s(d, "namespace"), s(d, "stream"));
    let (action, digest, tag) = match e.kind.as_str() {
        MANIFEST_PUSHED => (
            "push",
            s(d, "digest").to_string(),
            d.get("tags")
                .and_then(|t| t.get(0))
                .and_then(Value::as_str)
                .map(str::to_string),
        ),
        MANIFEST_DELETED => ("delete", s(d, "digest").to_string(), None),
        TAG_UPDATED => (
            "push",
            s(d, "image").to_string(),
            Some(s(d, "tag").to_string()),
        ),
        TAG_DELETED => (
            "delete",
            s(d, "previousImage").to_string(),
            Some(s(d, "tag").to_string()),
        ),
        IMPORT_FAILED | IMAGE_PRUNED => return None,
        _ => return None,
    };
    let mut target = json!({
        "repository": repository,
        "digest": digest,
        "url": format!("http://{public_host}/v2/{repository}/manifests/{digest}"),
    });
    if let Some(m) = d.get("mediaType").and_then(Value::as_str) {
        target["mediaType"] = m.into();
    }
    if let Some(size) = d.get("size").and_then(Value::as_u64) {
        target["size"] = size.into();
        target["length"] = size.into();
    }
    if let Some(tag) = tag {
        target["tag"] = tag.into();
    }
    Some(json!({
        "events": [{
            "id": e.id,
            "timestamp": e.time,
            "action": action,
            "target": target,
            "request": {"host": public_host, "method": if action == "push" { "PUT" } else { "DELETE" }},
            "actor": {},
            "source": {"addr": public_host},
        }]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(kind: &str, data: Value) -> Queued {
        Queued {
            id: "id-1".into(),
            kind: kind.into(),
            time: "2026-11-30T00:00:00Z".into(),
            queued_at: 0,
            data,
        }
    }

    #[test]
    fn cloudevents_carry_the_required_attributes() {
        let e = queued(
            TAG_UPDATED,
            json!({"namespace": "ns", "stream": "app", "tag": "latest", "image": "sha256:1"}),
        );
        let (ct, body) = render(Format::CloudEvents, &e, "reg:5000").unwrap();
        assert_eq!(ct, CLOUDEVENTS_JSON);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "io.berth.imagestreamtag.updated");
        assert_eq!(v["subject"], "ns/app:latest");
        assert_eq!(v["data"]["imageStream"], "app");
    }

    #[test]
    fn distribution_envelope_for_pushes_not_import_failures() {
        let e = queued(
            MANIFEST_PUSHED,
            json!({"namespace": "ns", "stream": "app", "digest": "sha256:1",
                   "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 7,
                   "tags": ["v1"]}),
        );
        let (ct, body) = render(Format::Distribution, &e, "reg:5000").unwrap();
        assert_eq!(ct, DISTRIBUTION_EVENTS);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let ev = &v["events"][0];
        assert_eq!(ev["action"], "push");
        assert_eq!(ev["target"]["repository"], "ns/app");
        assert_eq!(ev["target"]["tag"], "v1");
        assert_eq!(ev["target"]["size"], 7);
        assert!(render(Format::Distribution, &queued(IMPORT_FAILED, json!({})), "h").is_none());
    }
}
