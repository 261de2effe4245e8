//! Kubernetes `Status` objects: the only error shape clients of `/api` and `/apis` understand.
//!
//! Messages, reasons and `details` follow k8s.io/apimachinery's `errors` package closely,
//! because clients branch on them: the registry auto-creates a stream only when an
//! ImageStreamMapping 404 names `details.kind == "imagestreammappings"`, client-go re-lists on
//! reason `Expired`, and `oc` prints `message` verbatim.

use std::fmt;

use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::resource::Resource;
use crate::http::response::{set, with_content_type, Response};

/// `metav1.StatusReason`: the machine-readable half of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotFound,
    AlreadyExists,
    Conflict,
    Invalid,
    BadRequest,
    Forbidden,
    Unauthorized,
    MethodNotAllowed,
    Expired,
    InternalError,
    ServerTimeout,
    Timeout,
    UnsupportedMediaType,
    RequestEntityTooLarge,
    TooManyRequests,
    NotAcceptable,
    ServiceUnavailable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Invalid => "Invalid",
            Reason::BadRequest => "BadRequest",
            Reason::NotAcceptable => "NotAcceptable",
            Reason::ServiceUnavailable => "ServiceUnavailable",
            Reason::Forbidden => "Forbidden",
            Reason::Unauthorized => "Unauthorized",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::Expired => "Expired",
            Reason::InternalError => "InternalError",
            Reason::ServerTimeout => "ServerTimeout",
            Reason::Timeout => "Timeout",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::RequestEntityTooLarge => "RequestEntityTooLarge",
            Reason::TooManyRequests => "TooManyRequests",
        }
    }
}

/// `metav1.StatusDetails`. Empty strings and lists are omitted on the wire, as in Go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The resource plural for NotFound/AlreadyExists/Conflict/Forbidden, the Kind for Invalid
    /// (Kubernetes is inconsistent here, and clients depend on both).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u32>,
}

/// `metav1.StatusCause`. Go names the type field `Type` but serialises it as `reason`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusCause {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

/// The kinds of `field.Error` (k8s.io/apimachinery/pkg/util/validation/field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    Internal,
}

impl FieldErrorKind {
    /// The `StatusCause.reason` for this kind.
    pub fn cause_type(self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "FieldValueNotFound",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::Internal => "InternalError",
        }
    }

    fn label(self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "Not found",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::Internal => "Internal error",
        }
    }
}

/// One validation failure on one field; a list of them makes a 422 Invalid.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    /// Dotted JSON path, e.g. `spec.tags[0].from.name`.
    pub field: String,
    /// The offending value, shown quoted like Go's `%#v`; `None` omits it.
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    fn new(
        kind: FieldErrorKind,
        field: impl Into<String>,
        value: Option<Value>,
        detail: String,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            value,
            detail,
        }
    }

    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(
            FieldErrorKind::Invalid,
            field,
            Some(value.into()),
            detail.into(),
        )
    }

    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail.into())
    }

    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(
            FieldErrorKind::NotFound,
            field,
            Some(value.into()),
            String::new(),
        )
    }

    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(
            FieldErrorKind::Duplicate,
            field,
            Some(value.into()),
            String::new(),
        )
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail.into())
    }

    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            FieldErrorKind::NotSupported,
            field,
            Some(value.into()),
            detail,
        )
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new(
            FieldErrorKind::TooLong,
            field,
            None,
            format!("may not be more than {max} bytes"),
        )
    }

    pub fn internal(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Internal, field, None, detail.into())
    }

    /// Go's `ErrorBody()`: the message without the field, e.g. `Invalid value: "Foo": must ...`.
    pub fn body(&self) -> String {
        let mut s = self.kind.label().to_string();
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required
                | FieldErrorKind::Forbidden
                | FieldErrorKind::TooLong
                | FieldErrorKind::Internal
        );
        if let (true, Some(v)) = (shows_value, &self.value) {
            // serde_json's string quoting matches Go's %#v for every printable string.
            s.push_str(": ");
            s.push_str(&v.to_string());
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    pub fn to_cause(&self) -> StatusCause {
        StatusCause {
            reason: self.kind.cause_type().to_string(),
            message: self.body(),
            field: self.field.clone(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// A failed request, as a Kubernetes `Status` with `status: Failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusError {
    pub code: StatusCode,
    pub reason: Reason,
    pub message: String,
    /// `None` omits `details`; `Some(default)` sends `"details":{}` (as the 404 for unknown paths does).
    pub details: Option<Box<StatusDetails>>,
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StatusError {}

/// Boxed so `Result<_, StatusError>` stays small on the happy path.
fn boxed(details: StatusDetails) -> Option<Box<StatusDetails>> {
    Some(Box::new(details))
}

fn resource_details(resource: Resource, name: &str) -> Option<Box<StatusDetails>> {
    boxed(StatusDetails {
        name: name.to_string(),
        group: resource.group().to_string(),
        kind: resource.plural().to_string(),
        ..StatusDetails::default()
    })
}

impl StatusError {
    pub fn new(code: StatusCode, reason: Reason, message: impl Into<String>) -> Self {
        StatusError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// `imagestreams.image.openshift.io "foo" not found`. Name the resource of the *request*,
    /// not of the missing object (spec §2: istag GET of a missing stream says `imagestreamtags`).
    pub fn not_found(resource: Resource, name: &str) -> Self {
        StatusError {
            details: resource_details(resource, name),
            ..Self::new(
                StatusCode::NOT_FOUND,
                Reason::NotFound,
                format!("{} {name:?} not found", resource.qualified()),
            )
        }
    }

    /// A path that names no resource at all.
    pub fn path_not_found() -> Self {
        StatusError {
            details: boxed(StatusDetails::default()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                Reason::NotFound,
                "the server could not find the requested resource",
            )
        }
    }

    pub fn already_exists(resource: Resource, name: &str) -> Self {
        StatusError {
            details: resource_details(resource, name),
            ..Self::new(
                StatusCode::CONFLICT,
                Reason::AlreadyExists,
                format!("{} {name:?} already exists", resource.qualified()),
            )
        }
    }

    /// `Operation cannot be fulfilled on imagestreams.image.openshift.io "foo": <msg>`.
    pub fn conflict(resource: Resource, name: &str, msg: impl fmt::Display) -> Self {
        StatusError {
            details: resource_details(resource, name),
            ..Self::new(
                StatusCode::CONFLICT,
                Reason::Conflict,
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: {msg}",
                    resource.qualified()
                ),
            )
        }
    }

    /// 422: `ImageStream.image.openshift.io "Foo" is invalid: metadata.name: Invalid value: ...`,
    /// several errors as `[e1, e2]`, like Go's aggregate.
    pub fn invalid(resource: Resource, name: &str, errors: Vec<FieldError>) -> Self {
        let kind = resource.qualified_kind();
        let message = match errors.as_slice() {
            [] => format!("{kind} {name:?} is invalid"),
            [one] => format!("{kind} {name:?} is invalid: {one}"),
            many => {
                let all: Vec<String> = many.iter().map(ToString::to_string).collect();
                format!("{kind} {name:?} is invalid: [{}]", all.join(", "))
            }
        };
        StatusError {
            details: boxed(StatusDetails {
                name: name.to_string(),
                group: resource.group().to_string(),
                kind: resource.kind().to_string(),
                causes: errors.iter().map(FieldError::to_cause).collect(),
                retry_after_seconds: None,
            }),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, Reason::Invalid, message)
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Reason::BadRequest, msg)
    }

    /// A 405; with a resource it reads like Kubernetes' `NewMethodNotSupported`
    /// (`watch is not supported on resources of kind "imagestreamtags.image.openshift.io"`).
    pub fn method_not_allowed(resource: Option<Resource>, action: &str) -> Self {
        match resource {
            Some(r) => StatusError {
                details: boxed(StatusDetails {
                    group: r.group().to_string(),
                    kind: r.plural().to_string(),
                    ..StatusDetails::default()
                }),
                ..Self::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Reason::MethodNotAllowed,
                    format!(
                        "{action} is not supported on resources of kind {:?}",
                        r.qualified()
                    ),
                )
            },
            None => Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Reason::MethodNotAllowed,
                "the server does not allow this method on the requested resource",
            ),
        }
    }

    /// 410 Expired: a watch or list asked for a resourceVersion that is no longer available;
    /// client-go answers by re-listing.
    pub fn expired(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, Reason::Expired, msg)
    }

    /// 500. `msg` reaches the client: pass a safe summary and log the real cause.
    pub fn internal(msg: impl Into<String>) -> Self {
        let msg = msg.into();
        StatusError {
            details: boxed(StatusDetails {
                causes: vec![StatusCause {
                    message: msg.clone(),
                    ..StatusCause::default()
                }],
                ..StatusDetails::default()
            }),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                Reason::InternalError,
                format!("Internal error occurred: {msg}"),
            )
        }
    }

    /// 403: `imagestreams.image.openshift.io "foo" is forbidden: <msg>` (no name: `... is forbidden: <msg>`).
    pub fn forbidden(resource: Resource, name: &str, msg: impl fmt::Display) -> Self {
        let what = if name.is_empty() {
            resource.qualified()
        } else {
            format!("{} {name:?}", resource.qualified())
        };
        StatusError {
            details: resource_details(resource, name),
            ..Self::new(
                StatusCode::FORBIDDEN,
                Reason::Forbidden,
                format!("{what} is forbidden: {msg}"),
            )
        }
    }

    /// 401; the apiserver's own message is just `Unauthorized`.
    pub fn unauthorized(msg: Option<&str>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            Reason::Unauthorized,
            msg.unwrap_or("Unauthorized"),
        )
    }

    /// 500 ServerTimeout with `retryAfterSeconds` (and a `Retry-After` header), as for an
    /// istag create that lost too many conflict retries.
    pub fn server_timeout(resource: Resource, operation: &str, retry_after_seconds: u32) -> Self {
        StatusError {
            details: boxed(StatusDetails {
                name: operation.to_string(),
                group: resource.group().to_string(),
                kind: resource.plural().to_string(),
                retry_after_seconds: Some(retry_after_seconds),
                ..StatusDetails::default()
            }),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                Reason::ServerTimeout,
                format!(
                    "The {operation} operation against {} could not be completed at this time, please try again.",
                    resource.qualified()
                ),
            )
        }
    }

    /// 429 `Too many requests: <msg>` with `retryAfterSeconds` (and a `Retry-After` header), as
    /// Kubernetes' `NewTooManyRequests`.
    pub fn too_many_requests(msg: impl fmt::Display, retry_after_seconds: u64) -> Self {
        StatusError {
            details: boxed(StatusDetails {
                retry_after_seconds: Some(u32::try_from(retry_after_seconds).unwrap_or(u32::MAX)),
                ..StatusDetails::default()
            }),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                Reason::TooManyRequests,
                format!("Too many requests: {msg}"),
            )
        }
    }

    /// 415, e.g. for a strategic merge patch, which berth does not implement.
    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format ({content_type:?}) - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    pub fn too_large(msg: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Reason::RequestEntityTooLarge,
            msg,
        )
    }

    /// The `Status` object itself, e.g. for the `object` of a watch `ERROR` event.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.wire()).unwrap_or(Value::Null)
    }

    pub fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.wire()).unwrap_or_default();
        let mut resp = with_content_type(self.code, "application/json", body);
        if let Some(secs) = self.details.as_ref().and_then(|d| d.retry_after_seconds) {
            set(&mut resp, http::header::RETRY_AFTER, &secs.to_string());
        }
        resp
    }

    fn wire(&self) -> WireStatus<'_> {
        WireStatus {
            kind: "Status",
            api_version: "v1",
            metadata: EmptyMeta {},
            status: "Failure",
            message: Some(&self.message),
            reason: Some(self.reason.as_str()),
            details: self.details.as_deref(),
            code: self.code.as_u16(),
        }
    }
}

/// `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":N}`, as returned
/// by ImageStreamMapping create (201).
pub fn success(code: StatusCode) -> Response {
    success_response(code, None)
}

/// A Success `Status` naming the object, as Kubernetes returns for a delete:
/// `"details":{"name":"foo","group":"image.openshift.io","kind":"imagestreams"}`.
pub fn success_with_details(code: StatusCode, resource: Resource, name: &str) -> Response {
    success_response(code, resource_details(resource, name).as_deref())
}

fn success_response(code: StatusCode, details: Option<&StatusDetails>) -> Response {
    let status = WireStatus {
        kind: "Status",
        api_version: "v1",
        metadata: EmptyMeta {},
        status: "Success",
        message: None,
        reason: None,
        details,
        code: code.as_u16(),
    };
    with_content_type(
        code,
        "application/json",
        serde_json::to_vec(&status).unwrap_or_default(),
    )
}

#[derive(Serialize)]
struct EmptyMeta {}

/// Field order follows the apiserver's output, so captured responses diff cleanly.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireStatus<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: EmptyMeta,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a StatusDetails>,
    code: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;

    async fn body_of(resp: Response) -> (StatusCode, Value, String) {
        let code = resp.status();
        let ct = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap(), ct)
    }

    #[tokio::test]
    async fn not_found_wire_format() {
        let (code, v, ct) =
            body_of(StatusError::not_found(Resource::ImageStreams, "foo").into_response()).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(ct, "application/json");
        assert_eq!(
            v,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "imagestreams.image.openshift.io \"foo\" not found",
                "reason": "NotFound",
                "details": {"name": "foo", "group": "image.openshift.io", "kind": "imagestreams"},
                "code": 404
            })
        );
    }

    #[test]
    fn mapping_not_found_names_the_request_resource() {
        // The registry auto-creates a stream only on exactly these details (spec §5).
        let e = StatusError::not_found(Resource::ImageStreamMappings, "app");
        let d = e.details.unwrap();
        assert_eq!(
            (d.kind.as_str(), d.name.as_str()),
            ("imagestreammappings", "app")
        );
    }

    #[test]
    fn messages() {
        assert_eq!(
            StatusError::already_exists(Resource::ImageStreamTags, "s:t").message,
            "imagestreamtags.image.openshift.io \"s:t\" already exists"
        );
        let c = StatusError::conflict(
            Resource::ImageStreams,
            "foo",
            "the object has been modified; please apply your changes to the latest version and try again",
        );
        assert_eq!(c.code, StatusCode::CONFLICT);
        assert_eq!(c.reason, Reason::Conflict);
        assert!(c.message.starts_with(
            "Operation cannot be fulfilled on imagestreams.image.openshift.io \"foo\": the object"
        ));
        assert_eq!(
            StatusError::forbidden(Resource::ImageStreams, "s", "quota exceeded").message,
            "imagestreams.image.openshift.io \"s\" is forbidden: quota exceeded"
        );
        assert_eq!(
            StatusError::forbidden(Resource::ImageStreams, "", "no").message,
            "imagestreams.image.openshift.io is forbidden: no"
        );
        assert_eq!(
            StatusError::method_not_allowed(Some(Resource::ImageStreamTags), "watch").message,
            "watch is not supported on resources of kind \"imagestreamtags.image.openshift.io\""
        );
        assert_eq!(StatusError::expired("too old").code, StatusCode::GONE);
        assert_eq!(StatusError::unauthorized(None).message, "Unauthorized");
        assert_eq!(
            StatusError::internal("disk full").message,
            "Internal error occurred: disk full"
        );
    }

    #[test]
    fn invalid_messages_match_kubernetes() {
        let one = StatusError::invalid(
            Resource::ImageStreams,
            "Foo",
            vec![FieldError::invalid(
                "metadata.name",
                "Foo",
                "must match \"[a-z0-9]+(?:[._-][a-z0-9]+)*\"",
            )],
        );
        assert_eq!(one.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            one.message,
            r#"ImageStream.image.openshift.io "Foo" is invalid: metadata.name: Invalid value: "Foo": must match "[a-z0-9]+(?:[._-][a-z0-9]+)*""#
        );
        let d = one.details.unwrap();
        assert_eq!(d.kind, "ImageStream");
        assert_eq!(d.causes[0].reason, "FieldValueInvalid");
        assert_eq!(d.causes[0].field, "metadata.name");

        let two = StatusError::invalid(
            Resource::ImageStreamMappings,
            "s",
            vec![
                FieldError::required("tag", ""),
                FieldError::not_supported(
                    "spec.tags[0].referencePolicy.type",
                    "X",
                    &["Source", "Local"],
                ),
            ],
        );
        assert_eq!(
            two.message,
            r#"ImageStreamMapping.image.openshift.io "s" is invalid: [tag: Required value, spec.tags[0].referencePolicy.type: Unsupported value: "X": supported values: "Source", "Local"]"#
        );
        assert_eq!(
            FieldError::invalid(
                "metadata.resourceVersion",
                0,
                "must be specified for an update"
            )
            .body(),
            "Invalid value: 0: must be specified for an update"
        );
        assert_eq!(
            FieldError::forbidden("spec.tags[t].from", "no access").body(),
            "Forbidden: no access"
        );
    }

    #[tokio::test]
    async fn success_statuses() {
        let (code, v, _) = body_of(success(StatusCode::CREATED)).await;
        assert_eq!(code, StatusCode::CREATED);
        assert_eq!(
            v,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201})
        );
        let (_, v, _) = body_of(success_with_details(
            StatusCode::OK,
            Resource::ImageStreamTags,
            "s:t",
        ))
        .await;
        assert_eq!(v["details"]["kind"], "imagestreamtags");
        assert_eq!(v["details"]["name"], "s:t");
    }

    #[tokio::test]
    async fn server_timeout_sets_retry_after_and_path_not_found_has_empty_details() {
        let resp =
            StatusError::server_timeout(Resource::ImageStreamTags, "create", 1).into_response();
        assert_eq!(resp.headers().get(http::header::RETRY_AFTER).unwrap(), "1");
        let (_, v, _) = body_of(resp).await;
        assert_eq!(v["reason"], "ServerTimeout");
        assert_eq!(v["details"]["retryAfterSeconds"], 1);

        let (code, v, _) = body_of(StatusError::path_not_found().into_response()).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(v["details"], json!({}));
    }

    #[test]
    fn wire_field_order_is_stable() {
        let s = serde_json::to_string(&StatusError::bad_request("x").to_json()).unwrap();
        // to_json goes through a Map (sorted); the response body keeps declaration order.
        assert!(s.contains("\"reason\":\"BadRequest\""));
        let wire = serde_json::to_string(&StatusError::bad_request("x").wire()).unwrap();
        assert_eq!(
            wire,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"x","reason":"BadRequest","code":400}"#
        );
    }
}
