//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and Kubernetes' strategic
//! merge patch (kubectl's and oc's default) for image streams: a merge patch whose lists with
//! a merge key (`spec.tags` by `name`, `status.tags` by `tag`, as the OpenAPI documents
//! declare) merge element by element, with the `$patch` (`delete`, `replace`, `merge`) and
//! `$setElementOrder` directives.

use serde_json::{Map, Value};

use super::status::StatusError;

pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const JSON_PATCH: &str = "application/json-patch+json";
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";

/// Kubernetes' cap on JSON patch operations per request.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

const ACCEPTED: &[&str] = &[JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH];

/// The lists of an ImageStream that merge by key, with their keys.
pub const IMAGE_STREAM_MERGE_KEYS: &[(&[&str], &str)] =
    &[(&["spec", "tags"], "name"), (&["status", "tags"], "tag")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    /// Strategic merge patch with these merge keys.
    Strategic(&'static [(&'static [&'static str], &'static str)]),
}

impl PatchKind {
    /// From the request's `Content-Type` (parameters such as `charset` ignored).
    pub fn from_content_type(content_type: Option<&str>) -> Result<Self, StatusError> {
        let raw = content_type.unwrap_or("");
        let essence = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            MERGE_PATCH => Ok(PatchKind::Merge),
            JSON_PATCH => Ok(PatchKind::Json),
            STRATEGIC_MERGE_PATCH => Ok(PatchKind::Strategic(IMAGE_STREAM_MERGE_KEYS)),
            _ => Err(StatusError::unsupported_media_type(raw, ACCEPTED)),
        }
    }

    /// Parses `body` and applies it to `target`. On error `target` is unchanged.
    /// Malformed patches are 400 BadRequest; a JSON patch that does not apply (failed `test`,
    /// missing path) is 422, as in Kubernetes.
    pub fn apply(self, target: &mut Value, body: &[u8]) -> Result<(), StatusError> {
        let patch: Value = serde_json::from_slice(body)
            .map_err(|e| StatusError::bad_request(format!("the patch is not valid JSON: {e}")))?;
        match self {
            PatchKind::Merge => {
                if !patch.is_object() {
                    return Err(StatusError::bad_request(
                        "a merge patch must be a JSON object",
                    ));
                }
                apply_merge_patch(target, &patch);
                Ok(())
            }
            PatchKind::Json => apply_json_patch(target, patch),
            PatchKind::Strategic(keys) => {
                if !patch.is_object() {
                    return Err(StatusError::bad_request(
                        "a strategic merge patch must be a JSON object",
                    ));
                }
                let mut patched = target.clone();
                apply_strategic(&mut patched, &patch, &mut Vec::new(), keys)?;
                *target = patched;
                Ok(())
            }
        }
    }
}

type MergeKeys = [(&'static [&'static str], &'static str)];

fn merge_key(path: &[String], keys: &MergeKeys) -> Option<&'static str> {
    keys.iter()
        .find(|(p, _)| p.len() == path.len() && p.iter().zip(path).all(|(a, b)| a == b))
        .map(|(_, k)| *k)
}

fn directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

/// Kubernetes' strategic merge patch of `patch` into the object `target` at `path`.
fn apply_strategic(
    target: &mut Value,
    patch: &Value,
    path: &mut Vec<String>,
    keys: &MergeKeys,
) -> Result<(), StatusError> {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match directive(patch) {
        Some("replace") => {
            let mut m = members.clone();
            m.remove("$patch");
            *target = Value::Object(m);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(StatusError::bad_request(format!(
                "unknown patch type: {other}"
            )))
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in members {
        if key == "$patch" || key.starts_with("$setElementOrder/") || key == "$retainKeys" {
            continue;
        }
        path.push(key.clone());
        match (value, merge_key(path, keys)) {
            (Value::Null, _) => {
                map.remove(key);
            }
            (Value::Array(items), Some(mk)) => {
                let live = map.entry(key.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(live, items, mk, path, keys)?;
                if let Some(Value::Array(order)) = members.get(&format!("$setElementOrder/{key}")) {
                    reorder(live, order, mk);
                }
            }
            (Value::Object(_), _) => {
                let child = map.entry(key.clone()).or_insert(Value::Null);
                apply_strategic(child, value, path, keys)?;
                if child.is_null() {
                    map.remove(key);
                }
            }
            _ => {
                map.insert(key.clone(), value.clone());
            }
        }
        path.pop();
    }
    Ok(())
}

/// Merges the elements of `items` into the list `live` by `mk`: an element whose key is new is
/// appended, one with `$patch: delete` removes its match, others merge into their match; a
/// `{"$patch": "replace"}` element makes the patch's elements the whole list.
fn merge_list(
    live: &mut Value,
    items: &[Value],
    mk: &str,
    path: &mut Vec<String>,
    keys: &MergeKeys,
) -> Result<(), StatusError> {
    let replace = items
        .iter()
        .any(|i| directive(i) == Some("replace") && i.get(mk).is_none());
    if replace || !live.is_array() {
        *live = Value::Array(
            items
                .iter()
                .filter(|i| directive(i).is_none())
                .cloned()
                .collect(),
        );
        return Ok(());
    }
    let Value::Array(list) = live else {
        unreachable!("checked above")
    };
    for item in items {
        let Some(k) = item.get(mk) else {
            return Err(StatusError::bad_request(format!(
                "map: {item} does not contain declared merge key: {mk}"
            )));
        };
        let at = list.iter().position(|l| l.get(mk) == Some(k));
        match (directive(item), at) {
            (Some("delete"), Some(i)) => {
                list.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => apply_strategic(&mut list[i], item, path, keys)?,
            (_, None) => {
                let mut fresh = Value::Null;
                apply_strategic(&mut fresh, item, path, keys)?;
                list.push(fresh);
            }
        }
    }
    Ok(())
}

/// `$setElementOrder`: the listed elements in that order, then any others as they were.
fn reorder(live: &mut Value, order: &[Value], mk: &str) {
    let Value::Array(list) = live else { return };
    let mut rest = std::mem::take(list);
    for o in order {
        if let Some(i) = rest.iter().position(|l| l.get(mk) == o.get(mk)) {
            list.push(rest.remove(i));
        }
    }
    list.append(&mut rest);
}

/// RFC 7386: objects merge recursively, `null` deletes a member, anything else replaces.
pub fn apply_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in members {
        if value.is_null() {
            map.remove(key);
        } else {
            apply_merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// RFC 6902, atomically: either every operation applies or `target` is unchanged.
pub fn apply_json_patch(target: &mut Value, patch: Value) -> Result<(), StatusError> {
    let patch: json_patch::Patch = serde_json::from_value(patch)
        .map_err(|e| StatusError::bad_request(format!("invalid JSON patch: {e}")))?;
    if patch.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(StatusError::too_large(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            patch.0.len()
        )));
    }
    json_patch::patch(target, &patch.0).map_err(|e| {
        StatusError::new(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            super::status::Reason::Invalid,
            e.to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use serde_json::json;

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type(Some(MERGE_PATCH)),
            Ok(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type(Some("Application/Merge-Patch+JSON; charset=utf-8")),
            Ok(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type(Some(JSON_PATCH)),
            Ok(PatchKind::Json)
        );
        assert_eq!(
            PatchKind::from_content_type(Some(STRATEGIC_MERGE_PATCH)),
            Ok(PatchKind::Strategic(IMAGE_STREAM_MERGE_KEYS))
        );
        for other in [
            None,
            Some("application/json"),
            Some("application/apply-patch+yaml"),
        ] {
            assert_eq!(
                PatchKind::from_content_type(other).unwrap_err().code,
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            );
        }
    }

    fn smp(target: Value, patch: Value) -> Result<Value, StatusError> {
        let mut t = target;
        PatchKind::Strategic(IMAGE_STREAM_MERGE_KEYS)
            .apply(&mut t, patch.to_string().as_bytes())?;
        Ok(t)
    }

    #[test]
    fn strategic_merge_by_key() {
        let live = json!({"metadata": {"labels": {"a": "1"}},
            "spec": {"lookupPolicy": {"local": false}, "tags": [
                {"name": "v1", "from": {"kind": "DockerImage", "name": "r/x:1"}, "generation": 2},
                {"name": "v2", "from": {"kind": "DockerImage", "name": "r/x:2"}}]},
            "status": {"tags": [{"tag": "v1", "items": [{"image": "sha256:a"}]}]}});
        // Merge into v1 by name (keeping its other fields), add v3, delete v2.
        let out = smp(
            live.clone(),
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"tags": [
                {"name": "v1", "from": {"name": "r/x:9"}},
                {"name": "v3", "reference": true},
                {"name": "v2", "$patch": "delete"}]}}),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(
            out["spec"]["tags"],
            json!([{"name": "v1", "from": {"kind": "DockerImage", "name": "r/x:9"},
                    "generation": 2}, {"name": "v3", "reference": true}])
        );
        assert_eq!(out["status"], live["status"]);
        // status.tags merge by `tag`; other lists are replaced.
        let out = smp(
            live.clone(),
            json!({"status": {"tags": [{"tag": "v2", "items": []}]}}),
        )
        .unwrap();
        assert_eq!(out["status"]["tags"].as_array().unwrap().len(), 2);
        // $setElementOrder, a replaced list, a replaced map, null deletes.
        let out = smp(
            live.clone(),
            json!({"spec": {"$setElementOrder/tags": [{"name": "v2"}, {"name": "v1"}],
                            "tags": [{"name": "v1", "reference": true}]}}),
        )
        .unwrap();
        let names: Vec<&str> = out["spec"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["v2", "v1"]);
        let out = smp(
            live.clone(),
            json!({"spec": {"tags": [{"$patch": "replace"}, {"name": "only"}]}}),
        )
        .unwrap();
        assert_eq!(out["spec"]["tags"], json!([{"name": "only"}]));
        let out = smp(
            live.clone(),
            json!({"spec": {"lookupPolicy": {"$patch": "replace", "x": 1}}, "status": null}),
        )
        .unwrap();
        assert_eq!(out["spec"]["lookupPolicy"], json!({"x": 1}));
        assert!(out.get("status").is_none());
        // An element without its merge key is refused, and the target is left as it was.
        let mut t = live.clone();
        let e = PatchKind::Strategic(IMAGE_STREAM_MERGE_KEYS)
            .apply(&mut t, br#"{"spec": {"tags": [{"from": {}}]}}"#)
            .unwrap_err();
        assert_eq!(e.code, StatusCode::BAD_REQUEST);
        assert_eq!(t, live);
    }

    /// The merge keys are the ones the OpenAPI documents declare.
    #[test]
    fn merge_keys_match_the_openapi_documents() {
        let defs = &super::super::openapi::v2()["definitions"];
        for (path, key) in IMAGE_STREAM_MERGE_KEYS {
            let def = match path[0] {
                "spec" => "com.github.openshift.api.image.v1.ImageStreamSpec",
                _ => "com.github.openshift.api.image.v1.ImageStreamStatus",
            };
            assert_eq!(
                defs[def]["properties"][path[1]]["x-kubernetes-patch-merge-key"],
                *key
            );
        }
    }

    /// The examples of RFC 7386 appendix A.
    #[test]
    fn rfc7386_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (mut target, patch, want) in cases {
            apply_merge_patch(&mut target, &patch);
            assert_eq!(target, want, "patch {patch}");
        }
    }

    #[test]
    fn merge_patch_on_an_image_stream() {
        let mut is = json!({
            "metadata": {"name": "app", "labels": {"a": "1", "b": "2"}},
            "spec": {"lookupPolicy": {"local": false}, "tags": [{"name": "latest"}]}
        });
        PatchKind::Merge
            .apply(
                &mut is,
                br#"{"metadata":{"labels":{"a":null,"c":"3"}},"spec":{"lookupPolicy":{"local":true}}}"#,
            )
            .unwrap();
        assert_eq!(is["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(is["spec"]["lookupPolicy"]["local"], true);
        assert_eq!(is["spec"]["tags"], json!([{"name": "latest"}]));
        let before = is.clone();
        assert_eq!(
            PatchKind::Merge.apply(&mut is, b"[1]").unwrap_err().code,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            PatchKind::Merge
                .apply(&mut is, b"{not json")
                .unwrap_err()
                .code,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(is, before);
    }

    #[test]
    fn json_patch() {
        let mut is = json!({"spec": {"tags": [{"name": "a"}, {"name": "b"}]}});
        PatchKind::Json
            .apply(
                &mut is,
                br#"[{"op":"test","path":"/spec/tags/0/name","value":"a"},{"op":"remove","path":"/spec/tags/0"},{"op":"add","path":"/spec/tags/-","value":{"name":"c"}}]"#,
            )
            .unwrap();
        assert_eq!(
            is,
            json!({"spec": {"tags": [{"name": "b"}, {"name": "c"}]}})
        );

        // A failing operation leaves the document untouched.
        let before = is.clone();
        let e = PatchKind::Json
            .apply(
                &mut is,
                br#"[{"op":"remove","path":"/spec/tags/0"},{"op":"test","path":"/spec/tags/0/name","value":"zzz"}]"#,
            )
            .unwrap_err();
        assert_eq!(e.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(is, before);

        for bad in [
            &br#"{"op":"add"}"#[..],
            br#"[{"op":"frobnicate","path":"/a"}]"#,
        ] {
            assert_eq!(
                PatchKind::Json.apply(&mut is, bad).unwrap_err().code,
                StatusCode::BAD_REQUEST
            );
        }
        let too_many = format!(
            "[{}]",
            vec![r#"{"op":"test","path":"","value":null}"#; MAX_JSON_PATCH_OPERATIONS + 1]
                .join(",")
        );
        assert_eq!(
            PatchKind::Json
                .apply(&mut is, too_many.as_bytes())
                .unwrap_err()
                .code,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
