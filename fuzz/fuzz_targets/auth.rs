//! The `Authorization` header, Docker token `scope`s, and registry tokens (JWT) checked
//! against real signing keys: nothing made up verifies.
#![no_main]

use std::sync::{Arc, OnceLock};

use berth::auth::jwt::{Access, Keys};
use berth::http::auth::parse_authorization;
use berth::registry::Registry;
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static Keys {
    static KEYS: OnceLock<(tempfile::TempDir, Keys)> = OnceLock::new();
    &KEYS
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let registry = Registry::new(
                Arc::new(berth_storage::memory::MemoryMetadata::new()),
                Arc::new(berth_storage::fs::FsBlobStore::open(dir.path()).unwrap()),
                Default::default(),
                "localhost".into(),
            )
            .unwrap();
            let keys = Keys::load_or_create(&registry).unwrap();
            (dir, keys)
        })
        .1
}

fuzz_target!(|input: &str| {
    let _ = parse_authorization(input);
    let _ = Access::parse_scopes(input);
    assert!(keys().verify(input, "berth").is_none());
});
