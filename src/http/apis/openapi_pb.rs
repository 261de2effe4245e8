//! The protobuf form of `/openapi/v2` (gnostic's `openapi.v2.Document`), which kubectl reads
//! for `explain` and client-side validation before it learned OpenAPI v3 (kubectl 1.20 asks for
//! nothing else). Encoded by hand from the JSON document: only the parts of a schema the
//! documents use (`$ref`, type, format, description, minimum, required, properties, items,
//! additionalProperties, allOf and `x-` extensions, whose values travel as YAML text, of which
//! JSON is a subset).

use serde_json::{Map, Value};

/// What kubectl asks for (the `@` is not valid in a media type a Go client parses back).
pub const ACCEPTED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// What the apiserver answers with.
pub const MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn message(&mut self, field: u32, m: Message) {
        self.bytes(field, &m.0);
    }

    fn boolean(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn double(&mut self, field: u32, d: f64) {
        self.key(field, 1);
        self.0.extend_from_slice(&d.to_le_bytes());
    }
}

/// `Document { swagger = 1; info = 2; paths = 8; definitions = 9 }`.
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut m = Message::default();
    m.string(1, doc["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Message::default();
    info.string(1, doc["info"]["title"].as_str().unwrap_or(""));
    info.string(2, doc["info"]["version"].as_str().unwrap_or(""));
    m.message(2, info);
    m.message(8, Message::default());
    let mut definitions = Message::default();
    if let Some(defs) = doc["definitions"].as_object() {
        for (name, schema) in defs {
            definitions.message(1, named_schema(name, schema));
        }
    }
    m.message(9, definitions);
    m.0
}

/// `NamedSchema { name = 1; value = 2 }`.
fn named_schema(name: &str, schema: &Value) -> Message {
    let mut m = Message::default();
    m.string(1, name);
    m.message(2, schema_message(schema));
    m
}

/// `Schema`, field numbers as in gnostic's OpenAPIv2.proto.
fn schema_message(schema: &Value) -> Message {
    let mut m = Message::default();
    let Some(s) = schema.as_object() else {
        return m;
    };
    let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("");
    m.string(1, text("$ref"));
    m.string(2, text("format"));
    m.string(4, text("description"));
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        m.double(9, min);
    }
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.string(19, r.as_str().unwrap_or(""));
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Message::default();
            item.boolean(2, *b);
            m.message(21, item);
        }
        Some(v @ Value::Object(_)) => {
            let mut item = Message::default();
            item.message(1, schema_message(v));
            m.message(21, item);
        }
        _ => {}
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let mut t = Message::default();
        for ty in types {
            t.string(1, ty);
        }
        m.message(22, t);
    }
    if let Some(items) = s.get("items") {
        let mut i = Message::default();
        match items {
            Value::Array(a) => a.iter().for_each(|x| i.message(1, schema_message(x))),
            x => i.message(1, schema_message(x)),
        }
        m.message(23, i);
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, schema_message(sub));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        let mut p = Message::default();
        for (name, v) in props {
            p.message(1, named_schema(name, v));
        }
        m.message(25, p);
    }
    for (k, v) in extensions(s) {
        // NamedAny { name = 1; value = 2: Any { yaml = 2 } }
        let mut any = Message::default();
        any.string(2, &v.to_string());
        let mut named = Message::default();
        named.string(1, k);
        named.message(2, any);
        m.message(31, named);
    }
    m
}

fn extensions(s: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
    s.iter().filter(|(k, _)| k.starts_with("x-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varints_and_fields() {
        let mut m = Message::default();
        m.varint(300);
        assert_eq!(m.0, [0xac, 0x02]);
        let mut m = Message::default();
        m.string(1, "2.0");
        assert_eq!(m.0, [0x0a, 3, b'2', b'.', b'0']);
        let mut m = Message::default();
        m.boolean(2, true);
        m.double(9, 0.0);
        assert_eq!(m.0[..2], [0x10, 1]);
        assert_eq!(m.0[2], 9 << 3 | 1);
    }

    #[test]
    fn a_document_encodes_its_definitions() {
        let doc = json!({"swagger": "2.0", "info": {"title": "t", "version": "1"},
            "definitions": {"A": {"type": "object", "description": "an A",
                "required": ["x"], "properties": {"x": {"$ref": "#/definitions/B"}},
                "x-kubernetes-group-version-kind": [{"group": "g", "kind": "A", "version": "v1"}]}}});
        let bytes = encode(&doc);
        let text = String::from_utf8_lossy(&bytes);
        for part in [
            "2.0",
            "an A",
            "#/definitions/B",
            "x-kubernetes-group-version-kind",
            "{\"group\":\"g\",\"kind\":\"A\",\"version\":\"v1\"}",
        ] {
            assert!(text.contains(part), "{part} in {text:?}");
        }
        // The whole served document encodes.
        assert!(encode(super::super::openapi::v2()).len() > 1000);
    }
}
