//! Response building blocks shared by the handlers.

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{header, HeaderValue, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};

use berth_storage::ByteStream;

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;
pub type Response = http::Response<Body>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn stream(s: ByteStream) -> Body {
    StreamBody::new(s.map_ok(http_body::Frame::data)).boxed_unsync()
}

pub fn status(code: StatusCode) -> Response {
    let mut r = http::Response::new(empty());
    *r.status_mut() = code;
    r
}

pub fn json(code: StatusCode, value: &serde_json::Value) -> Response {
    with_content_type(
        code,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

pub fn with_content_type(code: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let len = body.len();
    let mut r = http::Response::new(full(body));
    *r.status_mut() = code;
    set(&mut r, header::CONTENT_TYPE, content_type);
    set(&mut r, header::CONTENT_LENGTH, &len.to_string());
    r
}

/// Sets a header; values built from validated names and digests are always valid header text.
pub fn set(r: &mut Response, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// Appends a header that may repeat (e.g. `OCI-Tag`).
pub fn append(r: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().append(name, v);
    }
}

/// The `Range` header of an upload session holding `size` bytes: `0-<last byte>`. An empty
/// session reports `0-0`, as distribution does, since `0--1` confuses some clients.
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}
