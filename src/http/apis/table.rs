//! The server-side Table format (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) that
//! `kubectl get` asks for: OpenShift's columns for image streams, tags and images, the same
//! cells `berth get` prints (one presentation, `cli::printer`).

use std::time::SystemTime;

use serde_json::{json, Value};

use super::resource::Resource;
use crate::cli::printer;

/// The meta.k8s.io version of the Table the client accepts (`v1`, else `v1beta1`), if it asks
/// for one; a client that also takes plain JSON gets plain JSON for other resources.
pub fn wanted(accept: Option<&str>) -> Option<&'static str> {
    let accept = accept?;
    let mut fallback = None;
    for media in accept.split(',') {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        let has = |p: &str| params.iter().any(|x| x.eq_ignore_ascii_case(p));
        if !(has("as=Table") && has("g=meta.k8s.io")) {
            continue;
        }
        if has("v=v1") {
            return Some("v1");
        }
        if has("v=v1beta1") {
            fallback = Some("v1beta1");
        }
    }
    fallback
}

/// Whether `resource` has columns of its own (others are served as plain objects).
pub fn has_columns(resource: Resource) -> bool {
    matches!(
        resource,
        Resource::ImageStreams | Resource::ImageStreamTags | Resource::Images
    )
}

fn column(name: &str, description: &str, format: &str, priority: u8) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": description,
           "priority": priority})
}

fn columns(resource: Resource) -> Vec<Value> {
    let name = column("Name", "Name must be unique within a namespace.", "name", 0);
    match resource {
        Resource::ImageStreams => vec![
            name,
            column(
                "Image Repository",
                "Where the stream's images are pulled from: the public repository if set, \
                 else the spec's, else the internal one.",
                "",
                0,
            ),
            column("Tags", "The tags of the stream, newest first.", "", 0),
            column("Updated", "When the newest tag was last updated.", "", 0),
        ],
        Resource::ImageStreamTags => vec![
            name,
            column(
                "Image Reference",
                "The pull spec of the tag's current image.",
                "",
                0,
            ),
            column("Updated", "When the tag was last updated.", "", 0),
            column("Image Name", "The name (digest) of the tag's image.", "", 1),
        ],
        Resource::Namespaces => vec![name, column("Status", "The phase of the namespace.", "", 0)],
        _ => vec![
            name,
            column("Image Reference", "The image's pull spec.", "", 0),
        ],
    }
}

/// A Table of `objects` (whole objects as the API serves them).
pub fn table(version: &str, resource: Resource, objects: &[Value], rv: Option<u64>) -> Value {
    let now = SystemTime::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells = match resource {
                Resource::ImageStreams => printer::stream_row(o, now),
                Resource::ImageStreamTags => printer::istag_row(o, now, true),
                Resource::Namespaces => vec![
                    o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    o["status"]["phase"].as_str().unwrap_or("").to_string(),
                ],
                _ => printer::image_row(o),
            };
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": format!("meta.k8s.io/{version}"),
                    "metadata": o["metadata"],
                },
            })
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = rv {
        metadata["resourceVersion"] = rv.to_string().into();
    }
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": metadata,
        "columnDefinitions": columns(resource),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;\
                       v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(wanted(Some(kubectl)), Some("v1"));
        assert_eq!(
            wanted(Some("application/json;as=Table;v=v1beta1;g=meta.k8s.io")),
            Some("v1beta1")
        );
        assert_eq!(wanted(Some("application/json")), None);
        assert_eq!(wanted(None), None);
    }

    #[test]
    fn stream_rows() {
        let is = json!({"metadata": {"name": "app", "namespace": "ns"},
            "status": {"dockerImageRepository": "h/ns/app", "tags": [{"tag": "v1", "items": []}]}});
        let t = table("v1", Resource::ImageStreams, &[is], Some(5));
        assert_eq!(t["metadata"]["resourceVersion"], "5");
        assert_eq!(t["columnDefinitions"][1]["name"], "Image Repository");
        assert_eq!(t["rows"][0]["cells"], json!(["app", "h/ns/app", "v1", ""]));
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "ns");
    }
}
