//! The request-line parsers: `/v2` endpoints and the Kubernetes-style API paths.
#![no_main]

use berth::http::apis::path as api_path;
use berth::http::endpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &str, Option<&str>)| {
    let (m, path, query) = input;
    let method = match m % 7 {
        0 => http::Method::GET,
        1 => http::Method::HEAD,
        2 => http::Method::POST,
        3 => http::Method::PUT,
        4 => http::Method::PATCH,
        5 => http::Method::DELETE,
        _ => http::Method::OPTIONS,
    };
    if let Ok(e) = endpoint::parse(&method, path, query) {
        let _ = e.kind();
    }
    if api_path::is_api_path(path) {
        if let Ok(e) = api_path::parse(&method, path, query) {
            let _ = (e.kind(), e.resource());
        }
    }
});
