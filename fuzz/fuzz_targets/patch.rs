//! JSON merge patch and JSON patch: never a panic, and a failed patch leaves its target as
//! it was.
#![no_main]

use berth::http::apis::patch::PatchKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &[u8], &[u8])| {
    let (merge, target, body) = input;
    let Ok(target) = serde_json::from_slice::<serde_json::Value>(target) else {
        return;
    };
    let kind = if merge {
        PatchKind::Merge
    } else {
        PatchKind::Json
    };
    let mut patched = target.clone();
    if kind.apply(&mut patched, body).is_err() {
        assert_eq!(patched, target);
    }
});
