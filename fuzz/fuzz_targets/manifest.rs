//! Manifest and index parsing and structural validation.
#![no_main]

use berth::registry::manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Option<&str>, &[u8])| {
    let (content_type, body) = input;
    if let Ok(m) = manifest::parse(content_type, body) {
        let _ = m.required_blobs().count();
        let _ = m.effective_artifact_type();
    }
});
