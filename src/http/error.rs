//! OCI error responses: one enum of wire error codes, and the mapping from domain errors.

use http::StatusCode;

use super::endpoint::ParseError;
use super::response::{json, Response};
use crate::registry;

/// The distribution spec's error codes (the only ones berth ever sends on /v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// Not one of the spec's codes: the one CNCF Distribution itself sends for failures on the
    /// server's side, so clients know it. Used where the client must learn the cause (a full
    /// disk), not for internal errors in general.
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Unknown => "UNKNOWN",
        }
    }
}

/// An error as the client will see it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// `None` only for internal errors, which have no spec code.
    pub code: Option<Code>,
    pub message: String,
    pub detail: serde_json::Value,
    /// Extra headers (e.g. `Range` on a 416 so the client can resume).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: Some(code),
            message: message.into(),
            detail: serde_json::Value::Null,
            headers: Vec::new(),
        }
    }

    pub fn internal() -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: None,
            message: "internal server error".into(),
            detail: serde_json::Value::Null,
            headers: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    pub fn into_response(self) -> Response {
        let errors = match self.code {
            Some(code) => serde_json::json!([{
                "code": code.as_str(),
                "message": self.message,
                "detail": self.detail,
            }]),
            // 5xx: no spec code fits, and inventing one would break strict clients.
            None => serde_json::json!([]),
        };
        let mut resp = json(self.status, &serde_json::json!({ "errors": errors }));
        for (name, value) in self.headers {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            ParseError::NotFound => ApiError::new(S::NOT_FOUND, Code::Unsupported, msg),
            ParseError::MethodNotAllowed => {
                ApiError::new(S::METHOD_NOT_ALLOWED, Code::Unsupported, msg)
            }
            ParseError::NameInvalid(_) => ApiError::new(S::BAD_REQUEST, Code::NameInvalid, msg),
            ParseError::DigestInvalid(_) => ApiError::new(S::BAD_REQUEST, Code::DigestInvalid, msg),
            ParseError::ManifestUnknown(_) => {
                ApiError::new(S::NOT_FOUND, Code::ManifestUnknown, msg)
            }
            ParseError::ManifestInvalid(_) => {
                ApiError::new(S::BAD_REQUEST, Code::ManifestInvalid, msg)
            }
            ParseError::UploadUnknown => ApiError::new(S::NOT_FOUND, Code::BlobUploadUnknown, msg),
            ParseError::PaginationInvalid(_) => {
                ApiError::new(S::BAD_REQUEST, Code::Unsupported, msg)
            }
        }
    }
}

impl From<registry::Error> for ApiError {
    fn from(e: registry::Error) -> Self {
        use registry::Error as E;
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            E::BlobUnknown => ApiError::new(S::NOT_FOUND, Code::BlobUnknown, msg),
            E::UploadUnknown => ApiError::new(S::NOT_FOUND, Code::BlobUploadUnknown, msg),
            E::UploadInvalid(_) => ApiError::new(S::BAD_REQUEST, Code::BlobUploadInvalid, msg),
            E::RangeInvalid { current } => {
                let mut err = ApiError::new(S::RANGE_NOT_SATISFIABLE, Code::BlobUploadInvalid, msg);
                err.headers
                    .push(("range", super::response::upload_range(current)));
                err
            }
            E::DigestInvalid(_) => ApiError::new(S::BAD_REQUEST, Code::DigestInvalid, msg),
            E::ManifestUnknown => ApiError::new(S::NOT_FOUND, Code::ManifestUnknown, msg),
            E::ManifestInvalid(_) => ApiError::new(S::BAD_REQUEST, Code::ManifestInvalid, msg),
            E::ManifestBlobUnknown(ref d) => {
                let digest = d.to_string();
                ApiError::new(S::BAD_REQUEST, Code::ManifestBlobUnknown, msg)
                    .with_detail(serde_json::json!({ "digest": digest }))
            }
            E::NameUnknown(_) => ApiError::new(S::NOT_FOUND, Code::NameUnknown, msg),
            E::TooLarge(_) => ApiError::new(S::PAYLOAD_TOO_LARGE, Code::SizeInvalid, msg),
            E::TooManyUploads(_) => ApiError::new(S::TOO_MANY_REQUESTS, Code::TooManyRequests, msg),
            E::Upstream {
                too_many_requests: true,
                ..
            } => ApiError::new(S::TOO_MANY_REQUESTS, Code::TooManyRequests, msg),
            // No OCI code means "the upstream failed"; the status says it is not our content.
            E::Upstream { .. } => ApiError::new(S::BAD_GATEWAY, Code::BlobUnknown, msg),
            E::StreamChanged => ApiError::new(S::CONFLICT, Code::Unsupported, msg),
            E::Storage(e) if e.is_disk_full() => insufficient_storage(&e),
            // etcd's transaction limits: a request too big to record (e.g. a manifest of over
            // about 1.4 MiB), refused before anything was written.
            E::Storage(berth_storage::Error::TooLarge(why)) => {
                tracing::warn!(error = %why, "request too large for the metadata store");
                ApiError::new(S::PAYLOAD_TOO_LARGE, Code::SizeInvalid, msg)
            }
            E::Storage(berth_storage::Error::Unavailable(why)) => {
                tracing::warn!(error = %why, "storage unavailable");
                retry_later(
                    "storage (object storage or etcd) is unavailable; retry shortly",
                    5,
                )
            }
            // Concurrent writes kept colliding past the store's retries (a hot key on etcd
            // under load): nothing was written, and a later attempt will go through.
            E::Storage(berth_storage::Error::Conflict) => {
                tracing::warn!("metadata transaction gave up after repeated conflicts");
                retry_later(
                    "the registry is busy with concurrent writes to the same records; retry shortly",
                    1,
                )
            }
            E::Storage(e) => {
                // Logged once here; the client learns only that it was our fault.
                tracing::error!(error = %e, "storage failure");
                ApiError::internal()
            }
        }
    }
}

/// 503 with `Retry-After`: nothing was done, and the same request later should work.
fn retry_later(message: &str, after_secs: u32) -> ApiError {
    let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, Code::Unknown, message);
    err.headers.push(("retry-after", after_secs.to_string()));
    err
}

/// 507 for a write the data directory has no room for: the client learns the cause, and that
/// retrying once space is freed will work.
pub fn insufficient_storage(e: &berth_storage::Error) -> ApiError {
    tracing::warn!(error = %e, "write refused: the data directory is full");
    let cause = match e {
        berth_storage::Error::NoSpace { .. } => e.to_string(),
        _ => "no space left on the data directory's filesystem".to_string(),
    };
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        Code::Unknown,
        format!("insufficient storage: {cause}; retry once space is freed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_that_kept_conflicting_are_a_503_to_retry_not_a_500() {
        let e = ApiError::from(registry::Error::Storage(berth_storage::Error::Conflict));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e
            .headers
            .iter()
            .any(|(h, v)| *h == "retry-after" && v == "1"));
        let other = ApiError::from(registry::Error::Storage(berth_storage::Error::Backend(
            "x".into(),
        )));
        assert_eq!(other.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
