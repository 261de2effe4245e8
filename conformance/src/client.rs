//! A thin blocking HTTP client for the distribution API.
//!
//! Every response is fully read into memory. Every 4xx answer to a request
//! other than HEAD is checked to carry an OCI error body whose codes all come
//! from the spec's list: `send` fails otherwise, so no case can pass while
//! ignoring a malformed error.

use std::time::Duration;

use reqwest::blocking::{Body, Client as Http, RequestBuilder};
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use serde_json::Value;

/// The 14 error codes of the distribution spec.
pub const ERROR_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

pub type R<T = ()> = Result<T, String>;

pub struct Client {
    http: Http,
    base: Url,
}

impl Client {
    pub fn new(base: &str) -> R<Self> {
        let base = Url::parse(base).map_err(|e| format!("bad base url {base:?}: {e}"))?;
        let http = Http::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("building http client: {e}"))?;
        Ok(Client { http, base })
    }

    /// Absolute URL for a path such as `/v2/`.
    pub fn url(&self, path: &str) -> String {
        self.resolve(path)
    }

    /// Resolves a `Location` value (absolute URL, absolute path or relative
    /// reference) against the base URL, keeping its query verbatim.
    pub fn resolve(&self, location: &str) -> String {
        match self.base.join(location) {
            Ok(u) => u.to_string(),
            Err(_) => location.to_string(),
        }
    }

    pub fn request(&self, method: Method, url: &str) -> Req {
        Req {
            builder: self.http.request(method.clone(), url),
            method,
            url: url.to_string(),
        }
    }

    pub fn get(&self, url: &str) -> Req {
        self.request(Method::GET, url)
    }
    pub fn head(&self, url: &str) -> Req {
        self.request(Method::HEAD, url)
    }
    pub fn post(&self, url: &str) -> Req {
        self.request(Method::POST, url)
    }
    pub fn put(&self, url: &str) -> Req {
        self.request(Method::PUT, url)
    }
    pub fn patch(&self, url: &str) -> Req {
        self.request(Method::PATCH, url)
    }
    pub fn delete(&self, url: &str) -> Req {
        self.request(Method::DELETE, url)
    }
}

/// A request under construction.
pub struct Req {
    builder: RequestBuilder,
    method: Method,
    url: String,
}

impl Req {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// A body with an explicit `Content-Length`.
    pub fn body(mut self, data: Vec<u8>) -> Self {
        let len = data.len().to_string();
        self.builder = self.builder.header("Content-Length", len).body(data);
        self
    }

    /// Octet-stream body with `Content-Length`.
    pub fn octets(self, data: &[u8]) -> Self {
        self.header("Content-Type", "application/octet-stream")
            .body(data.to_vec())
    }

    /// An empty body with an explicit `Content-Length: 0`.
    pub fn empty(self) -> Self {
        self.body(Vec::new())
    }

    /// A body of unknown length: sent with `Transfer-Encoding: chunked`.
    pub fn streamed(mut self, data: &[u8]) -> Self {
        let reader = std::io::Cursor::new(data.to_vec());
        self.builder = self
            .builder
            .header("Content-Type", "application/octet-stream")
            .body(Body::new(reader));
        self
    }

    pub fn send(self) -> R<Resp> {
        let what = format!("{} {}", self.method, short_url(&self.url));
        let resp = self
            .builder
            .send()
            .map_err(|e| format!("{what}: request failed: {}", error_chain(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .map_err(|e| {
                format!(
                    "{what}: answered {status} but its body could not be read: {}",
                    error_chain(&e)
                )
            })?
            .to_vec();
        let r = Resp {
            what,
            status,
            headers,
            body,
        };
        if (400..500).contains(&status) && self.method != Method::HEAD {
            r.check_error_body()?;
        }
        Ok(r)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The URL without scheme and host, for messages.
/// The URL without scheme and host, for messages; opaque query parameters
/// (such as signed upload state) are shortened.
fn short_url(url: &str) -> String {
    let Ok(u) = Url::parse(url) else {
        return url.to_string();
    };
    let Some(q) = u.query() else {
        return u.path().to_string();
    };
    let params: Vec<String> = q
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if v.len() > 24 && k != "digest" && k != "mount" => {
                format!(
                    "{k}={}…",
                    &v[..v.char_indices().nth(12).map_or(v.len(), |(i, _)| i)]
                )
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{}?{}", u.path(), params.join("&"))
}

/// A fully read response.
pub struct Resp {
    /// `METHOD /path` of the request, for messages.
    pub what: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header that must be present.
    pub fn need_header(&self, name: &str) -> R<&str> {
        self.header(name)
            .ok_or_else(|| format!("{}: missing {name} header", self.what))
    }

    /// Fails unless the status is one of `codes`.
    pub fn expect(&self, codes: &[u16]) -> R<&Self> {
        if codes.contains(&self.status) {
            return Ok(self);
        }
        let want = codes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" or ");
        Err(format!(
            "{}: expected {want}, got {}{}",
            self.what,
            self.status,
            self.body_snippet()
        ))
    }

    /// The `Location` header, resolved against the base URL.
    pub fn location(&self, client: &Client) -> R<String> {
        Ok(client.resolve(self.need_header("Location")?))
    }

    /// Fails unless the header equals `want` exactly.
    pub fn header_eq(&self, name: &str, want: &str) -> R<&Self> {
        match self.header(name) {
            Some(v) if v == want => Ok(self),
            Some(v) => Err(format!("{}: {name} is {v:?}, want {want:?}", self.what)),
            None => Err(format!(
                "{}: missing {name} header (want {want:?})",
                self.what
            )),
        }
    }

    /// If `Docker-Content-Digest` is present it must equal `digest`.
    pub fn digest_if_present(&self, digest: &str) -> R<&Self> {
        match self.header("Docker-Content-Digest") {
            Some(v) if v != digest => Err(format!(
                "{}: Docker-Content-Digest is {v}, want {digest}",
                self.what
            )),
            _ => Ok(self),
        }
    }

    /// The body must be exactly `want`.
    pub fn body_eq(&self, want: &[u8]) -> R<&Self> {
        if self.body == want {
            return Ok(self);
        }
        let first_diff = self
            .body
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(self.body.len().min(want.len()));
        Err(format!(
            "{}: body differs ({} bytes, want {}; first difference at byte {first_diff})",
            self.what,
            self.body.len(),
            want.len()
        ))
    }

    /// The `Content-Length` header must be present and equal `len`.
    pub fn content_length_eq(&self, len: usize) -> R<&Self> {
        self.header_eq("Content-Length", &len.to_string())
    }

    pub fn json(&self) -> R<Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "{}: body is not JSON: {e}{}",
                self.what,
                self.body_snippet()
            )
        })
    }

    /// The error codes of an OCI error body.
    pub fn error_codes(&self) -> Vec<String> {
        let Ok(v) = serde_json::from_slice::<Value>(&self.body) else {
            return Vec::new();
        };
        v["errors"]
            .as_array()
            .map(|errs| {
                errs.iter()
                    .filter_map(|e| e["code"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails unless the body is an OCI error naming `code`.
    pub fn expect_error_code(&self, code: &str) -> R<&Self> {
        let codes = self.error_codes();
        if codes.iter().any(|c| c == code) {
            Ok(self)
        } else {
            Err(format!(
                "{}: error codes {codes:?}, want {code}{}",
                self.what,
                self.body_snippet()
            ))
        }
    }

    /// A 4xx body must be `{"errors":[{"code":..,"message":..,"detail":..}]}`
    /// with every code from the spec's list.
    fn check_error_body(&self) -> R {
        let bad = |why: &str| {
            Err(format!(
                "{}: {} error body {why}{}",
                self.what,
                self.status,
                self.body_snippet()
            ))
        };
        // RFC 9110 §15.5.17: a 416 on a ranged GET says everything in `Content-Range: bytes */N`;
        // none of the spec's 14 codes describes it, so an empty body is the honest answer.
        if self.status == 416 && self.body.is_empty() && self.header("content-range").is_some() {
            return Ok(());
        }
        if self.body.is_empty() {
            return bad("is empty, not OCI error JSON");
        }
        let v: Value = match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(_) => return bad("is not OCI error JSON"),
        };
        let Some(errors) = v.get("errors").and_then(Value::as_array) else {
            return bad("has no \"errors\" array");
        };
        if errors.is_empty() {
            return bad("has an empty \"errors\" array");
        }
        for e in errors {
            let Some(code) = e.get("code").and_then(Value::as_str) else {
                return bad("has an error without a string \"code\"");
            };
            if !ERROR_CODES.contains(&code) {
                return bad(&format!("uses code {code:?}, not one of the spec's 14"));
            }
            if let Some(m) = e.get("message") {
                if !m.is_string() {
                    return bad("has a non-string \"message\"");
                }
            }
        }
        Ok(())
    }

    fn body_snippet(&self) -> String {
        if self.body.is_empty() {
            return String::new();
        }
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(200)]);
        let text = text.replace('\n', " ");
        format!(
            " (body: {}{})",
            text.trim(),
            if self.body.len() > 200 { "…" } else { "" }
        )
    }
}
