//! `Range` of blob GETs and `Content-Range` of upload chunks.
#![no_main]

use berth::http::distribution::chunk_offset;
use berth::http::range::{self, RangeRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, u64, &[u8], Option<&[u8]>)| {
    let (header, size, content_range, content_length) = input;
    if let RangeRequest::Partial(r) = range::parse(Some(header), size) {
        assert!(
            r.start < r.end && r.end <= size,
            "{r:?} outside a blob of {size}"
        );
    }
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(content_range) {
        headers.insert(http::header::CONTENT_RANGE, v);
    }
    if let Some(Ok(v)) = content_length.map(http::HeaderValue::from_bytes) {
        headers.insert(http::header::CONTENT_LENGTH, v);
    }
    let _ = chunk_offset(&headers);
});
