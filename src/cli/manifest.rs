//! Objects read from files for `create -f`, `apply -f` and `delete -f`: YAML or JSON, several
//! documents to a file (and `kind: List` items), each mapped to the API path that serves it.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{CliError, Client, Connection};

/// The annotation kubectl keeps the last applied document in (so a later apply knows which
/// fields it set, and removes what the file no longer has).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The kinds the client verbs write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ImageStream,
    ImageStreamTag,
    Image,
    Secret,
}

impl Kind {
    /// From a document's `kind` and `apiVersion`.
    pub fn of_document(kind: &str, api_version: &str) -> Result<Kind, CliError> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let k = match (kind, group) {
            ("ImageStream", "image.openshift.io") => Kind::ImageStream,
            ("ImageStreamTag", "image.openshift.io") => Kind::ImageStreamTag,
            ("Image", "image.openshift.io") => Kind::Image,
            ("Secret", "") if api_version == "v1" => Kind::Secret,
            _ => {
                return Err(CliError::Other(format!(
                    "resource mapping not found for kind \"{kind}\" in version \
                     \"{api_version}\": berth serves ImageStream, ImageStreamTag and Image \
                     (image.openshift.io/v1) and Secret (v1)"
                )))
            }
        };
        Ok(k)
    }

    /// From a verb's TYPE argument (`is`, `istag`, `image`, `secret`, plurals, long forms).
    pub fn of_argument(s: &str) -> Result<Kind, CliError> {
        let k = match s.split('.').next().unwrap_or(s) {
            "is" | "imagestream" | "imagestreams" => Kind::ImageStream,
            "istag" | "imagestreamtag" | "imagestreamtags" => Kind::ImageStreamTag,
            "image" | "images" => Kind::Image,
            "secret" | "secrets" => Kind::Secret,
            _ => {
                return Err(CliError::Other(format!(
                    "the server doesn't have a resource type \"{s}\""
                )))
            }
        };
        Ok(k)
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::ImageStream => "imagestreams",
            Kind::ImageStreamTag => "imagestreamtags",
            Kind::Image => "images",
            Kind::Secret => "secrets",
        }
    }

    /// How kubectl names the type in its output (`imagestream.image.openshift.io`, `secret`).
    pub fn qualified(self) -> &'static str {
        match self {
            Kind::ImageStream => "imagestream.image.openshift.io",
            Kind::ImageStreamTag => "imagestreamtag.image.openshift.io",
            Kind::Image => "image.image.openshift.io",
            Kind::Secret => "secret",
        }
    }

    /// The collection's path for [`Client`] (relative to the image API, or absolute).
    pub fn collection(self, ns: &str) -> String {
        match self {
            Kind::Image => "images".into(),
            Kind::Secret => format!("/api/v1/namespaces/{ns}/secrets"),
            k => format!("namespaces/{ns}/{}", k.plural()),
        }
    }

    pub fn object(self, ns: &str, name: &str) -> String {
        format!("{}/{name}", self.collection(ns))
    }
}

/// One object of a file.
#[derive(Debug, Clone)]
pub struct Object {
    pub kind: Kind,
    pub name: String,
    /// The document's namespace, else the connection's.
    pub namespace: String,
    pub document: Value,
}

/// The documents of `files` (`-` is standard input), in order.
pub fn read(files: &[String], conn: &Connection) -> Result<Vec<Object>, CliError> {
    if files.is_empty() {
        return Err(CliError::Other(
            "must specify one of -f and -k (only -f is supported)".into(),
        ));
    }
    let mut out = Vec::new();
    for file in files {
        let text = if file == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(file)
        }
        .map_err(|e| CliError::Other(format!("the path \"{file}\" cannot be read: {e}")))?;
        for document in
            documents(&text).map_err(|e| CliError::Other(format!("error parsing {file}: {e}")))?
        {
            out.push(object(document, conn)?);
        }
    }
    Ok(out)
}

/// The non-empty YAML (or JSON) documents of `text`, with `List` items spread out.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(de).map_err(|e| e.to_string())?;
        match v {
            Value::Null => {}
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => out
                .extend(
                    m.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                ),
            Value::Object(_) => out.push(v),
            _ => return Err("a document is not an object".into()),
        }
    }
    Ok(out)
}

fn object(document: Value, conn: &Connection) -> Result<Object, CliError> {
    let field = |path: &[&str]| {
        let mut v = &document;
        for p in path {
            v = &v[*p];
        }
        v.as_str().unwrap_or("").to_string()
    };
    let (kind, api_version) = (field(&["kind"]), field(&["apiVersion"]));
    if kind.is_empty() || api_version.is_empty() {
        return Err(CliError::Other(format!(
            "unable to decode an object: 'apiVersion' and 'kind' must be set: {document}"
        )));
    }
    let kind = Kind::of_document(&kind, &api_version)?;
    let name = field(&["metadata", "name"]);
    if name.is_empty() {
        return Err(CliError::Other("resource name may not be empty".into()));
    }
    let namespace = match field(&["metadata", "namespace"]) {
        ns if ns.is_empty() => conn.namespace.clone(),
        ns => ns,
    };
    Ok(Object {
        kind,
        name,
        namespace,
        document,
    })
}

/// `create -f`: POSTs each object; prints `<type>/<name> created` for each.
pub fn create(conn: &Connection, files: &[String]) -> Result<String, CliError> {
    let client = Client::new(conn)?;
    let mut out = String::new();
    for o in read(files, conn)? {
        client.post(&o.kind.collection(&o.namespace), &o.document)?;
        out.push_str(&format!("{}/{} created\n", o.kind.qualified(), o.name));
    }
    Ok(out)
}

/// `apply -f`: creates what is missing; otherwise merges the file into the live object
/// (spec tags by `name`; a tag the last apply set and the file no longer has is removed) and
/// replaces it if that changes anything. Prints `created`, `configured` or `unchanged`.
pub fn apply(conn: &Connection, files: &[String]) -> Result<String, CliError> {
    let client = Client::new(conn)?;
    let mut out = String::new();
    for o in read(files, conn)? {
        let mut document = o.document.clone();
        if let Some(status) = document.as_object_mut() {
            status.remove("status");
        }
        let applied = document.to_string();
        set_annotation(&mut document, LAST_APPLIED, &applied);
        let path = o.kind.object(&o.namespace, &o.name);
        let live = match client.get(&path) {
            Ok(v) => Some(v),
            Err(CliError::Server { reason, .. }) if reason == "NotFound" => None,
            Err(e) => return Err(e),
        };
        let verb = match (o.kind, live) {
            (_, None) => match client.post(&o.kind.collection(&o.namespace), &document) {
                Ok(_) => "created",
                // A tag only in the spec is not gettable, but exists.
                Err(CliError::Server { reason, .. })
                    if reason == "AlreadyExists" && o.kind == Kind::ImageStreamTag =>
                {
                    client.put(&path, &document)?;
                    "configured"
                }
                Err(e) => return Err(e),
            },
            (Kind::Secret, Some(_)) => {
                return Err(CliError::Other(format!(
                    "secret \"{}\" exists: secret values are write-only, so apply cannot \
                     compare them; delete the secret and create it again",
                    o.name
                )))
            }
            (kind, Some(live)) => {
                let merged = merge(kind, &live, &document);
                if merged == live {
                    "unchanged"
                } else {
                    client.put(&path, &merged)?;
                    "configured"
                }
            }
        };
        out.push_str(&format!("{}/{} {verb}\n", o.kind.qualified(), o.name));
    }
    Ok(out)
}

fn set_annotation(document: &mut Value, key: &str, value: &str) {
    let Some(m) = document.as_object_mut() else {
        return;
    };
    let metadata = m.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = metadata.as_object_mut() {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !annotations.is_object() {
            *annotations = Value::Object(Map::new());
        }
        annotations[key] = Value::String(value.to_string());
    }
}

/// The live object with the applied `document` merged in (RFC 7386, except that spec tags
/// merge by name, as the API declares).
fn merge(kind: Kind, live: &Value, document: &Value) -> Value {
    let mut merged = live.clone();
    let mut patch = document.clone();
    // The server's own fields are the live object's.
    if let Some(meta) = patch["metadata"].as_object_mut() {
        for k in ["resourceVersion", "uid", "generation", "creationTimestamp"] {
            meta.remove(k);
        }
    }
    if kind == Kind::ImageStream {
        let previous: Option<Value> = live["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok());
        let removed: Vec<String> = previous
            .as_ref()
            .and_then(|p| p["spec"]["tags"].as_array())
            .map(|tags| tags.iter().filter_map(|t| t["name"].as_str()))
            .into_iter()
            .flatten()
            .map(str::to_string)
            .collect();
        if let Some(tags) = patch["spec"].get("tags").and_then(Value::as_array).cloned() {
            let mut live_tags: Vec<Value> = live["spec"]["tags"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|t| {
                    let name = t["name"].as_str().unwrap_or("");
                    !removed.iter().any(|r| r == name)
                        || tags.iter().any(|f| f["name"].as_str() == Some(name))
                })
                .collect();
            for tag in tags {
                match live_tags.iter_mut().find(|t| t["name"] == tag["name"]) {
                    Some(t) => json_patch::merge(t, &tag),
                    None => live_tags.push(tag),
                }
            }
            patch["spec"]["tags"] = Value::Array(live_tags);
        }
    }
    json_patch::merge(&mut merged, &patch);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_yaml_json_and_lists() {
        let docs = documents(
            "---\nkind: ImageStream\napiVersion: image.openshift.io/v1\nmetadata:\n  name: a\n\
             ---\n---\n{\"kind\": \"List\", \"items\": [{\"kind\": \"Secret\"}, {\"kind\": \"Image\"}]}\n",
        )
        .unwrap();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["ImageStream", "Secret", "Image"]);
        assert!(documents("- a\n").is_err());
        assert!(documents("a: [").is_err());
    }

    #[test]
    fn kinds() {
        assert_eq!(
            Kind::of_document("ImageStream", "image.openshift.io/v1").unwrap(),
            Kind::ImageStream
        );
        assert!(Kind::of_document("Pod", "v1").is_err());
        assert!(Kind::of_document("ImageStream", "v1").is_err());
        assert_eq!(
            Kind::of_argument("secrets").unwrap().collection("n"),
            "/api/v1/namespaces/n/secrets"
        );
        assert_eq!(
            Kind::of_argument("is").unwrap().object("n", "a"),
            "namespaces/n/imagestreams/a"
        );
    }

    #[test]
    fn apply_merges_tags_by_name() {
        let live = json!({"metadata": {"name": "a", "resourceVersion": "7", "annotations": {
            LAST_APPLIED: json!({"spec": {"tags": [{"name": "old"}, {"name": "keep"}]}}).to_string()}},
            "spec": {"lookupPolicy": {"local": false}, "tags": [
                {"name": "old", "generation": 1},
                {"name": "keep", "generation": 2, "referencePolicy": {"type": "Source"}},
                {"name": "cli", "generation": 3}]}});
        let doc = json!({"metadata": {"name": "a", "annotations": {LAST_APPLIED: "x"}},
            "spec": {"tags": [{"name": "keep", "from": {"kind": "DockerImage", "name": "r/x"}},
                              {"name": "new"}]}});
        let merged = merge(Kind::ImageStream, &live, &doc);
        let names: Vec<&str> = merged["spec"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        // `old` was applied before and is gone from the file; `cli` was never applied.
        assert_eq!(names, ["keep", "cli", "new"]);
        assert_eq!(merged["spec"]["tags"][0]["generation"], 2);
        assert_eq!(merged["spec"]["tags"][0]["from"]["name"], "r/x");
        assert_eq!(merged["metadata"]["resourceVersion"], "7");
        assert_eq!(merged["spec"]["lookupPolicy"]["local"], false);
    }
}
