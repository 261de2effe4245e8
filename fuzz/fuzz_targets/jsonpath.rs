//! The client's `-o jsonpath=` templates, rendered over JSON from the same input.
#![no_main]

use berth::cli::jsonpath::Template;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &[u8])| {
    let (template, doc) = input;
    if let Ok(t) = Template::parse(template) {
        let doc = serde_json::from_slice(doc).unwrap_or(serde_json::Value::Null);
        let _ = t.render(&doc);
    }
});
