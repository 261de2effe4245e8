//! PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).
//!
//! Strategic merge patch (kubectl's and oc's default) is refused with 415 rather than
//! approximated: it merges `spec.tags` by `name` and `status.tags` by `tag`, and applying it as
//! a plain merge patch would silently replace those lists instead. The message tells the user
//! to pass `--type=merge` or `--type=json`.

use serde_json::{Map, Value};

use super::status::StatusError;

pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const JSON_PATCH: &str = "application/json-patch+json";
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";

/// Kubernetes' cap on JSON patch operations per request.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

const ACCEPTED: &[&str] = &[JSON_PATCH, MERGE_PATCH];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
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
            STRATEGIC_MERGE_PATCH => {
                let mut e = StatusError::unsupported_media_type(raw, ACCEPTED);
                e.message.push_str(
                    " (strategic merge patch is not supported; use `--type=merge` or `--type=json`)",
                );
                Err(e)
            }
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
        }
    }
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
        let smp = PatchKind::from_content_type(Some(STRATEGIC_MERGE_PATCH)).unwrap_err();
        assert_eq!(smp.code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(smp.message.contains("--type=merge"));
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
