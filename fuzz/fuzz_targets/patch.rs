//! JSON merge patch, JSON patch and strategic merge patch: never a panic, and a failed patch
//! leaves its target as it was.
#![no_main]

use berth::http::apis::patch::{PatchKind, IMAGE_STREAM_MERGE_KEYS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &[u8], &[u8])| {
    let (which, target, body) = input;
    let Ok(target) = serde_json::from_slice::<serde_json::Value>(target) else {
        return;
    };
    let kind = match which % 3 {
        0 => PatchKind::Merge,
        1 => PatchKind::Json,
        _ => PatchKind::Strategic(IMAGE_STREAM_MERGE_KEYS),
    };
    let mut patched = target.clone();
    if kind.apply(&mut patched, body).is_err() {
        assert_eq!(patched, target);
    }
});
