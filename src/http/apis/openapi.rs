//! OpenAPI documents for kubectl (`/openapi/v2`, `/openapi/v3` and its group-version
//! documents), generated from the types the API serves: their doc comments are the field
//! descriptions `kubectl explain` prints, their serde attributes the field names.
//!
//! Besides the schemas, each served kind carries Kubernetes' extensions:
//! `x-kubernetes-group-version-kind`, and the list types and merge keys of the tag lists
//! (`spec.tags` by `name`, `status.tags` by `tag`) that strategic merge patch uses. The
//! group-version documents declare the `fieldValidation` parameter, so kubectl 1.25 and later
//! validate through the server (which refuses unknown fields when asked to); older kubectl
//! validates against `/openapi/v2` in its protobuf form (openapi_pb.rs).

use std::sync::OnceLock;

use schemars::gen::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::imagestream::service::ImageStreamTag;
use crate::imagestream::types::{Image, ImageStream};
use crate::secrets::Secret;

/// The group-versions with a document of their own under `/openapi/v3/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupVersion {
    /// `api/v1`: secrets.
    Core,
    /// `apis/image.openshift.io/v1`.
    Image,
}

impl GroupVersion {
    pub fn parse(path: &str) -> Option<GroupVersion> {
        match path {
            "api/v1" => Some(GroupVersion::Core),
            "apis/image.openshift.io/v1" => Some(GroupVersion::Image),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            GroupVersion::Core => "api/v1",
            GroupVersion::Image => "apis/image.openshift.io/v1",
        }
    }
}

/// A kind served at a collection path, with the definition that describes it.
struct Served {
    definition: &'static str,
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    group_version: GroupVersion,
}

const IMAGE_V1: &str = "com.github.openshift.api.image.v1";
const META_V1: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
const CORE_V1: &str = "io.k8s.api.core.v1";

const SERVED: &[Served] = &[
    Served {
        definition: "com.github.openshift.api.image.v1.ImageStream",
        group: "image.openshift.io",
        kind: "ImageStream",
        plural: "imagestreams",
        namespaced: true,
        group_version: GroupVersion::Image,
    },
    Served {
        definition: "com.github.openshift.api.image.v1.ImageStreamTag",
        group: "image.openshift.io",
        kind: "ImageStreamTag",
        plural: "imagestreamtags",
        namespaced: true,
        group_version: GroupVersion::Image,
    },
    Served {
        definition: "com.github.openshift.api.image.v1.Image",
        group: "image.openshift.io",
        kind: "Image",
        plural: "images",
        namespaced: false,
        group_version: GroupVersion::Image,
    },
    Served {
        definition: "io.k8s.api.core.v1.Secret",
        group: "",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
        group_version: GroupVersion::Core,
    },
];

/// Kubernetes' name for a definition schemars named after the Rust type.
fn qualified(name: &str) -> String {
    match name {
        "ObjectMeta" => format!("{META_V1}.ObjectMeta"),
        "Secret" | "ObjectReference" => format!("{CORE_V1}.{name}"),
        other => format!("{IMAGE_V1}.{other}"),
    }
}

/// The definitions of every served kind, referring to each other through `ref_prefix`
/// (`#/definitions/` or `#/components/schemas/`).
fn definitions(ref_prefix: &str) -> Map<String, Value> {
    let settings = SchemaSettings::openapi3().with(|s| {
        s.definitions_path = "#/schemars/".into();
        s.option_nullable = false;
        s.option_add_null_type = false;
    });
    let mut gen = settings.into_generator();
    gen.subschema_for::<ImageStream>();
    gen.subschema_for::<ImageStreamTag>();
    gen.subschema_for::<Image>();
    gen.subschema_for::<Secret>();
    let raw = serde_json::to_value(gen.definitions()).expect("schemas serialize");
    let Value::Object(raw) = raw else {
        unreachable!("definitions are a map")
    };
    let mut out = Map::new();
    for (name, mut schema) in raw {
        rewrite(&mut schema, ref_prefix);
        out.insert(qualified(&name), schema);
    }
    for s in SERVED {
        if let Some(Value::Object(d)) = out.get_mut(s.definition) {
            d.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": s.group, "kind": s.kind, "version": "v1"}]),
            );
        }
    }
    let list_map = |key: &str| {
        json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key],
               "x-kubernetes-patch-merge-key": key, "x-kubernetes-patch-strategy": "merge"})
    };
    for (definition, key) in [("ImageStreamSpec", "name"), ("ImageStreamStatus", "tag")] {
        let tags = &mut out[&format!("{IMAGE_V1}.{definition}")]["properties"]["tags"];
        if let (Value::Object(t), Value::Object(ext)) = (tags, list_map(key)) {
            t.extend(ext);
        }
    }
    out
}

/// Points `$ref`s at `ref_prefix` with Kubernetes' names; an any-value schema (`true`) becomes
/// an object whose fields are kept as sent.
fn rewrite(v: &mut Value, ref_prefix: &str) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/schemars/") {
                    *r = format!("{ref_prefix}{}", qualified(name));
                }
            }
            for (_, child) in m.iter_mut() {
                rewrite(child, ref_prefix);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rewrite(c, ref_prefix)),
        Value::Bool(true) => {
            *v = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
        }
        _ => {}
    }
}

/// `GET /openapi/v2` (JSON).
pub fn v2() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        json!({
            "swagger": "2.0",
            "info": {"title": "berth", "version": env!("CARGO_PKG_VERSION")},
            "paths": {},
            "definitions": definitions("#/definitions/"),
        })
    })
}

/// [`v2`] in gnostic's protobuf form.
pub fn v2_protobuf() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| super::openapi_pb::encode(v2()))
}

/// `GET /openapi/v3`: where each group-version's document is.
pub fn v3_index() -> Value {
    let paths: Map<String, Value> = [GroupVersion::Core, GroupVersion::Image]
        .into_iter()
        .map(|gv| {
            (
                gv.path().to_string(),
                json!({"serverRelativeURL": format!("/openapi/v3/{}?hash={}", gv.path(), hash(gv))}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// A version tag for a document: its content's digest, so clients may cache it.
fn hash(gv: GroupVersion) -> String {
    use sha2::Digest as _;
    let text = serde_json::to_vec(v3(gv)).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&text)[..16])
}

/// `GET /openapi/v3/<group-version>`.
pub fn v3(gv: GroupVersion) -> &'static Value {
    static CORE: OnceLock<Value> = OnceLock::new();
    static IMAGE: OnceLock<Value> = OnceLock::new();
    let cell = match gv {
        GroupVersion::Core => &CORE,
        GroupVersion::Image => &IMAGE,
    };
    cell.get_or_init(|| {
        let schemas = definitions("#/components/schemas/");
        let mut paths = Map::new();
        for s in SERVED.iter().filter(|s| s.group_version == gv) {
            let base = match s.namespaced {
                true => format!("/{}/namespaces/{{namespace}}/{}", gv.path(), s.plural),
                false => format!("/{}/{}", gv.path(), s.plural),
            };
            let gvk = json!({"group": s.group, "kind": s.kind, "version": "v1"});
            let body = json!({"content": {"application/json": {"schema": {
                "$ref": format!("#/components/schemas/{}", s.definition)}}}});
            // kubectl looks for `fieldValidation` among the PATCH operation's parameters.
            let validation = json!([{"name": "fieldValidation", "in": "query",
                "description": "Strict: unknown fields are refused (400); Warn and Ignore \
                                accept them.", "schema": {"type": "string"}}]);
            let op = |action: &str| {
                let mut op = json!({"x-kubernetes-action": action,
                    "x-kubernetes-group-version-kind": gvk, "responses": {"200": body}});
                if matches!(action, "post" | "put" | "patch") {
                    op["requestBody"] = body.clone();
                    op["parameters"] = validation.clone();
                }
                op
            };
            paths.insert(base.clone(), json!({"post": op("post")}));
            paths.insert(
                format!("{base}/{{name}}"),
                json!({"get": op("get"), "put": op("put"), "patch": op("patch"),
                       "delete": op("delete")}),
            );
        }
        json!({
            "openapi": "3.0.0",
            "info": {"title": "berth", "version": env!("CARGO_PKG_VERSION")},
            "paths": paths,
            "components": {"schemas": schemas},
        })
    })
}

/// The fields of `body` its kind's schema does not have (`spec.tags[0].foo`), for
/// `fieldValidation=Strict`; empty for kinds without a schema.
pub fn unknown_fields(kind: &str, body: &Value) -> Vec<String> {
    let doc = v2();
    let Some(s) = SERVED.iter().find(|s| s.kind == kind) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    check(
        &doc["definitions"],
        &doc["definitions"][s.definition],
        body,
        "",
        &mut out,
    );
    out
}

fn check(defs: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &defs[r.trim_start_matches("#/definitions/")],
        None => schema,
    };
    // schemars wraps a referenced field in `allOf` when it adds a description.
    if let Some(inner) = schema["allOf"].get(0) {
        return check(defs, inner, v, at, out);
    }
    match v {
        Value::Object(m) => {
            let Some(props) = schema["properties"].as_object() else {
                return;
            };
            for (k, child) in m {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match props.get(k) {
                    Some(p) => check(defs, p, child, &path, out),
                    None => out.push(path),
                }
            }
        }
        Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                check(defs, &schema["items"], item, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_has_the_kinds_with_descriptions_and_merge_keys() {
        let d = &v2()["definitions"];
        let is = &d["com.github.openshift.api.image.v1.ImageStream"];
        assert_eq!(
            is["x-kubernetes-group-version-kind"][0]["kind"],
            "ImageStream"
        );
        assert!(is["description"]
            .as_str()
            .unwrap()
            .starts_with("An ImageStream stores"));
        let tags = &d["com.github.openshift.api.image.v1.ImageStreamSpec"]["properties"]["tags"];
        assert_eq!(tags["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(tags["x-kubernetes-list-map-keys"], json!(["name"]));
        assert_eq!(
            tags["items"]["$ref"],
            "#/definitions/com.github.openshift.api.image.v1.TagReference"
        );
        let status = &d["com.github.openshift.api.image.v1.ImageStreamStatus"]["properties"];
        assert_eq!(status["tags"]["x-kubernetes-patch-merge-key"], "tag");
        assert!(d["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        assert!(d["io.k8s.api.core.v1.Secret"]["x-kubernetes-group-version-kind"].is_array());
        assert!(!v2().to_string().contains("#/schemars/"));
    }

    #[test]
    fn v3_documents_declare_field_validation() {
        let index = v3_index();
        let url = index["paths"]["apis/image.openshift.io/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/image.openshift.io/v1?hash="));
        let doc = v3(GroupVersion::Image);
        let item =
            &doc["paths"]["/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreams/{name}"];
        assert_eq!(
            item["patch"]["x-kubernetes-group-version-kind"]["kind"],
            "ImageStream"
        );
        assert_eq!(item["patch"]["parameters"][0]["name"], "fieldValidation");
        assert!(
            doc["components"]["schemas"]["com.github.openshift.api.image.v1.Image"].is_object()
        );
        assert!(!doc.to_string().contains("#/definitions/"));
    }

    #[test]
    fn unknown_fields_are_found_at_any_depth() {
        let body = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
            "metadata": {"name": "a", "labels": {"x": "y"}, "bogus": 1},
            "spec": {"tags": [{"name": "t", "form": {}}], "lookupPolicy": {"local": true}}});
        assert_eq!(
            unknown_fields("ImageStream", &body),
            ["metadata.bogus", "spec.tags[0].form"]
        );
        assert!(unknown_fields("Pod", &body).is_empty());
    }
}
