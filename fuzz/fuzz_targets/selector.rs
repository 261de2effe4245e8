//! `labelSelector` and `fieldSelector`; a parsed label selector prints as text that parses
//! back to the same selector.
#![no_main]

use std::collections::BTreeMap;

use berth::http::apis::selector::{FieldSelector, LabelSelector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, BTreeMap<String, String>)| {
    let (s, labels) = input;
    if let Ok(sel) = LabelSelector::parse(s) {
        let _ = sel.matches(&labels);
        assert_eq!(LabelSelector::parse(&sel.to_string()).as_ref(), Ok(&sel));
    }
    if let Ok(sel) = FieldSelector::parse(s) {
        let _ = (sel.matches("a", Some("b")), sel.exact_name());
    }
});
