//! `(method, path, query)` → [`ApiEndpoint`] for the Kubernetes-style API: `/version`, `/api`,
//! `/apis` and everything under `/apis/image.openshift.io/v1`.
//!
//! Like `http::endpoint`, paths are never percent-decoded (a `%` anywhere is a 400, since no
//! valid name contains one), an empty segment (`//`, a trailing slash) is a different path and
//! so a 404, and every name is validated into a newtype before a handler sees it. The order of
//! checks is route (404), then method (405), then names (422, or 400 for a malformed
//! `<stream>:<tag>` / `<stream>@<id>`), then query options (400).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http::Method;

use super::resource::{Resource, GROUP, VERSION};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{FieldError, StatusError};
use crate::http::query::Query;
use crate::registry::names::{Namespace, StreamName, Tag, MAX_NAME_SEGMENT};

/// The regex OpenShift quotes for stream names (spec §4).
pub const STREAM_NAME_PATTERN: &str = "[a-z0-9]+(?:[._-][a-z0-9]+)*";
/// The regex Kubernetes quotes for DNS-1123 labels.
pub const NAMESPACE_PATTERN: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
/// The distribution tag regex berth enforces on image-stream tags (spec §4 recommendation).
pub const TAG_PATTERN: &str = "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiEndpoint {
    /// `GET /version`: the Python dynamic client reads it before anything else.
    Version,
    /// `GET /api` (APIVersions of the core group).
    CoreVersions,
    /// `GET /api/v1` (core APIResourceList).
    CoreResources,
    /// `GET /openapi/v2`: the OpenAPI v2 document (JSON).
    OpenApiV2,
    /// `GET /openapi/v3`: where each group-version's OpenAPI v3 document is.
    OpenApiV3Index,
    /// `GET /openapi/v3/<group-version>`.
    OpenApiV3(super::openapi::GroupVersion),
    /// `GET /apis` (APIGroupList).
    Groups,
    /// `GET /apis/image.openshift.io` (APIGroup).
    Group,
    /// `GET /apis/image.openshift.io/v1` (APIResourceList).
    GroupResources,
    /// `GET /apis/berth.io` (APIGroup of berth's own group).
    BerthGroup,
    /// `GET /apis/berth.io/v1` (APIResourceList: webhooks).
    BerthGroupResources,

    /// `GET [namespaces/{ns}/]imagestreams`; `namespace: None` lists every namespace.
    ListImageStreams {
        namespace: Option<Namespace>,
        options: ListOptions,
    },
    /// The same path with `?watch=true` (or `1`).
    WatchImageStreams {
        namespace: Option<Namespace>,
        options: ListOptions,
    },
    /// `POST namespaces/{ns}/imagestreams` (name in the body).
    CreateImageStream {
        namespace: Namespace,
    },
    GetImageStream {
        namespace: Namespace,
        name: StreamName,
    },
    /// `PUT`: requires `metadata.resourceVersion` in the body (spec §2).
    ReplaceImageStream {
        namespace: Namespace,
        name: StreamName,
    },
    /// `PATCH`: the patch type comes from `Content-Type`, see `patch::PatchKind`.
    PatchImageStream {
        namespace: Namespace,
        name: StreamName,
    },
    DeleteImageStream {
        namespace: Namespace,
        name: StreamName,
    },
    /// `GET .../imagestreams/{name}/status`
    GetImageStreamStatus {
        namespace: Namespace,
        name: StreamName,
    },
    /// `PUT .../imagestreams/{name}/status`: only status may change.
    ReplaceImageStreamStatus {
        namespace: Namespace,
        name: StreamName,
    },

    /// `GET [namespaces/{ns}/]imagestreamtags` (no watch: 405).
    ListImageStreamTags {
        namespace: Option<Namespace>,
        options: ListOptions,
    },
    /// `POST namespaces/{ns}/imagestreamtags` (`name: None`, name in the body: parse it with
    /// [`IstagName::parse`]) or `POST .../imagestreamtags/{stream}:{tag}`.
    CreateImageStreamTag {
        namespace: Namespace,
        name: Option<IstagName>,
    },
    GetImageStreamTag {
        namespace: Namespace,
        name: IstagName,
    },
    /// `PUT`: may create the stream; blind (no resourceVersion) is allowed (spec §2).
    ReplaceImageStreamTag {
        namespace: Namespace,
        name: IstagName,
    },
    DeleteImageStreamTag {
        namespace: Namespace,
        name: IstagName,
    },

    /// `GET namespaces/{ns}/imagestreamimages/{stream}@{id}`
    GetImageStreamImage {
        namespace: Namespace,
        name: IsimageName,
    },
    /// `POST namespaces/{ns}/imagestreammappings`
    CreateImageStreamMapping {
        namespace: Namespace,
    },
    /// `POST namespaces/{ns}/imagestreamimports`
    CreateImageStreamImport {
        namespace: Namespace,
    },

    /// `GET /api/v1/namespaces/{ns}/secrets`
    /// The namespaces that hold something (read-only; filtered to what the caller may view).
    ListNamespaces,
    GetNamespace {
        namespace: Namespace,
    },
    ListSecrets {
        namespace: Namespace,
    },
    /// `POST /api/v1/namespaces/{ns}/secrets`
    CreateSecret {
        namespace: Namespace,
    },
    /// `GET /api/v1/namespaces/{ns}/secrets/{name}` (values blanked)
    GetSecret {
        namespace: Namespace,
        name: String,
    },
    /// `DELETE /api/v1/namespaces/{ns}/secrets/{name}`
    DeleteSecret {
        namespace: Namespace,
        name: String,
    },

    /// `GET /apis/berth.io/v1/namespaces/{ns}/webhooks`
    ListWebhooks {
        namespace: Namespace,
    },
    /// The same path with `?watch=true`.
    WatchWebhooks {
        namespace: Namespace,
        options: ListOptions,
    },
    /// `POST /apis/berth.io/v1/namespaces/{ns}/webhooks` (name in the body)
    CreateWebhook {
        namespace: Namespace,
    },
    /// `GET .../webhooks/{name}` (the secret never shows)
    GetWebhook {
        namespace: Namespace,
        name: String,
    },
    /// `PUT .../webhooks/{name}`: a new `spec.secret` rotates, none keeps the current one.
    ReplaceWebhook {
        namespace: Namespace,
        name: String,
    },
    DeleteWebhook {
        namespace: Namespace,
        name: String,
    },

    /// `GET images`
    ListImages {
        options: ListOptions,
    },
    /// `GET images?watch=true`
    WatchImages {
        options: ListOptions,
    },
    /// `GET images/{name}`: the name is opaque (by convention a digest, not checked here).
    GetImage {
        name: String,
    },
    DeleteImage {
        name: String,
    },
}

impl ApiEndpoint {
    /// The endpoint's kind, for metrics: it names no namespace or object.
    pub fn kind(&self) -> &'static str {
        use ApiEndpoint as E;
        match self {
            E::Version => "version",
            E::CoreVersions => "core_versions",
            E::CoreResources => "core_resources",
            E::Groups => "api_groups",
            E::Group => "api_group",
            E::GroupResources => "group_resources",
            E::OpenApiV2 => "openapi_v2",
            E::OpenApiV3Index => "openapi_v3_index",
            E::OpenApiV3(_) => "openapi_v3",
            E::BerthGroup => "berth_group",
            E::BerthGroupResources => "berth_group_resources",
            E::ListImageStreams { .. } => "list_imagestreams",
            E::WatchImageStreams { .. } => "watch_imagestreams",
            E::CreateImageStream { .. } => "create_imagestream",
            E::GetImageStream { .. } => "get_imagestream",
            E::ReplaceImageStream { .. } => "replace_imagestream",
            E::PatchImageStream { .. } => "patch_imagestream",
            E::DeleteImageStream { .. } => "delete_imagestream",
            E::GetImageStreamStatus { .. } => "get_imagestream_status",
            E::ReplaceImageStreamStatus { .. } => "replace_imagestream_status",
            E::ListImageStreamTags { .. } => "list_imagestreamtags",
            E::CreateImageStreamTag { .. } => "create_imagestreamtag",
            E::GetImageStreamTag { .. } => "get_imagestreamtag",
            E::ReplaceImageStreamTag { .. } => "replace_imagestreamtag",
            E::DeleteImageStreamTag { .. } => "delete_imagestreamtag",
            E::GetImageStreamImage { .. } => "get_imagestreamimage",
            E::CreateImageStreamMapping { .. } => "create_imagestreammapping",
            E::CreateImageStreamImport { .. } => "create_imagestreamimport",
            E::ListNamespaces => "list_namespaces",
            E::GetNamespace { .. } => "get_namespace",
            E::ListSecrets { .. } => "list_secrets",
            E::CreateSecret { .. } => "create_secret",
            E::GetSecret { .. } => "get_secret",
            E::DeleteSecret { .. } => "delete_secret",
            E::ListWebhooks { .. } => "list_webhooks",
            E::WatchWebhooks { .. } => "watch_webhooks",
            E::CreateWebhook { .. } => "create_webhook",
            E::GetWebhook { .. } => "get_webhook",
            E::ReplaceWebhook { .. } => "replace_webhook",
            E::DeleteWebhook { .. } => "delete_webhook",
            E::ListImages { .. } => "list_images",
            E::WatchImages { .. } => "watch_images",
            E::GetImage { .. } => "get_image",
            E::DeleteImage { .. } => "delete_image",
        }
    }

    /// The resource the request addresses, for error messages; `None` for discovery.
    pub fn resource(&self) -> Option<Resource> {
        use ApiEndpoint as E;
        Some(match self {
            E::Version
            | E::CoreVersions
            | E::CoreResources
            | E::Groups
            | E::Group
            | E::GroupResources
            | E::OpenApiV2
            | E::OpenApiV3Index
            | E::OpenApiV3(_)
            | E::BerthGroup
            | E::BerthGroupResources => return None,
            E::ListImageStreams { .. }
            | E::WatchImageStreams { .. }
            | E::CreateImageStream { .. }
            | E::GetImageStream { .. }
            | E::ReplaceImageStream { .. }
            | E::PatchImageStream { .. }
            | E::DeleteImageStream { .. }
            | E::GetImageStreamStatus { .. }
            | E::ReplaceImageStreamStatus { .. } => Resource::ImageStreams,
            E::ListImageStreamTags { .. }
            | E::CreateImageStreamTag { .. }
            | E::GetImageStreamTag { .. }
            | E::ReplaceImageStreamTag { .. }
            | E::DeleteImageStreamTag { .. } => Resource::ImageStreamTags,
            E::GetImageStreamImage { .. } => Resource::ImageStreamImages,
            E::CreateImageStreamMapping { .. } => Resource::ImageStreamMappings,
            E::CreateImageStreamImport { .. } => Resource::ImageStreamImports,
            E::ListImages { .. }
            | E::WatchImages { .. }
            | E::GetImage { .. }
            | E::DeleteImage { .. } => Resource::Images,
            E::ListNamespaces | E::GetNamespace { .. } => Resource::Namespaces,
            E::ListSecrets { .. }
            | E::CreateSecret { .. }
            | E::GetSecret { .. }
            | E::DeleteSecret { .. } => Resource::Secrets,
            E::ListWebhooks { .. }
            | E::WatchWebhooks { .. }
            | E::CreateWebhook { .. }
            | E::GetWebhook { .. }
            | E::ReplaceWebhook { .. }
            | E::DeleteWebhook { .. } => Resource::Webhooks,
        })
    }
}

/// `<stream>:<tag>`, the name of an ImageStreamTag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IstagName {
    pub stream: StreamName,
    pub tag: Tag,
}

impl IstagName {
    /// Exactly one `:`, no `@`, both halves non-empty (else 400, OpenShift's message), then a
    /// valid stream and tag (else 422 on `metadata.name`). Also for `metadata.name` in bodies.
    pub fn parse(s: &str) -> Result<Self, StatusError> {
        let malformed =
            || StatusError::bad_request("ImageStreamTags must be retrieved with <name>:<tag>");
        if s.contains('@') {
            return Err(malformed());
        }
        let (stream, tag) = match s.split_once(':') {
            Some((st, t)) if !st.is_empty() && !t.is_empty() && !t.contains(':') => (st, t),
            _ => return Err(malformed()),
        };
        let invalid = |e: FieldError| StatusError::invalid(Resource::ImageStreamTags, s, vec![e]);
        Ok(IstagName {
            stream: validate_stream_name("metadata.name", stream).map_err(invalid)?,
            tag: validate_tag("metadata.name", tag).map_err(invalid)?,
        })
    }
}

impl fmt::Display for IstagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.stream.as_str(), self.tag.as_str())
    }
}

/// `<stream>@<id>`, the name of an ImageStreamImage. `id` may be a digest or a prefix of one
/// (hex or full string, spec §4), so it is only checked to be non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IsimageName {
    pub stream: StreamName,
    pub id: String,
}

impl IsimageName {
    pub fn parse(s: &str) -> Result<Self, StatusError> {
        let malformed =
            || StatusError::bad_request("ImageStreamImages must be retrieved with <name>@<id>");
        let (stream, id) = match s.split_once('@') {
            Some((st, id)) if !st.is_empty() && !id.is_empty() && !id.contains('@') => (st, id),
            _ => return Err(malformed()),
        };
        let stream = validate_stream_name("metadata.name", stream)
            .map_err(|e| StatusError::invalid(Resource::ImageStreamImages, s, vec![e]))?;
        Ok(IsimageName {
            stream,
            id: id.to_string(),
        })
    }
}

impl fmt::Display for IsimageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.stream.as_str(), self.id)
    }
}

/// Validates a namespace (DNS-1123 label ≤ 63) for `field`, with Kubernetes' wording.
pub fn validate_namespace(field: &str, s: &str) -> Result<Namespace, FieldError> {
    Namespace::parse(s).map_err(|_| {
        let detail = if s.len() > MAX_NAME_SEGMENT {
            format!("must be no more than {MAX_NAME_SEGMENT} characters")
        } else {
            format!(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (regex used for validation is '{NAMESPACE_PATTERN}')"
            )
        };
        FieldError::invalid(field, s, detail)
    })
}

/// Validates an image stream name (spec §4 regex, and berth's 63-character cap).
pub fn validate_stream_name(field: &str, s: &str) -> Result<StreamName, FieldError> {
    StreamName::parse(s).map_err(|_| {
        let detail = if s.len() > MAX_NAME_SEGMENT {
            format!("must be no more than {MAX_NAME_SEGMENT} characters")
        } else {
            format!("must match {STREAM_NAME_PATTERN:?}")
        };
        FieldError::invalid(field, s, detail)
    })
}

/// Validates a tag against the distribution tag grammar.
pub fn validate_tag(field: &str, s: &str) -> Result<Tag, FieldError> {
    Tag::parse(s).map_err(|_| FieldError::invalid(field, s, format!("must match {TAG_PATTERN:?}")))
}

/// How a watch starts, from `resourceVersion` and `sendInitialEvents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// `resourceVersion` absent or `0`, or `sendInitialEvents=true`: send every matching object
    /// as ADDED, then changes after the snapshot.
    InitialState,
    /// `resourceVersion=N`: replay changes newer than N (410 Expired when N is no longer buffered).
    After(u64),
}

/// Options of list and watch requests. `limit` and `continue` are accepted and ignored:
/// lists are always complete (no `metadata.continue`), which every client handles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    /// `resourceVersion`; `None` when absent or empty.
    pub resource_version: Option<u64>,
    /// `timeoutSeconds`; `None` when absent or 0 (server default).
    pub timeout: Option<Duration>,
    pub allow_watch_bookmarks: bool,
    pub send_initial_events: Option<bool>,
}

impl ListOptions {
    pub fn watch_start(&self) -> WatchStart {
        match (self.send_initial_events, self.resource_version) {
            (Some(true), _) | (_, None | Some(0)) => WatchStart::InitialState,
            (_, Some(rv)) => WatchStart::After(rv),
        }
    }

    /// Label and field selectors together; `namespace` is `None` for cluster-scoped objects.
    pub fn matches(
        &self,
        name: &str,
        namespace: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        self.field_selector.matches(name, namespace) && self.label_selector.matches(labels)
    }
}

/// True for the paths [`parse`] owns, so the top-level router can dispatch on the path alone.
pub fn is_api_path(path: &str) -> bool {
    path == "/version"
        || path == "/api"
        || path.starts_with("/api/")
        || path == "/apis"
        || path.starts_with("/apis/")
        || path == "/openapi/v2"
        || path == "/openapi/v3"
        || path.starts_with("/openapi/v3/")
}

/// Parses one request. `query` is the raw query string, if any.
pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<ApiEndpoint, StatusError> {
    if path.contains('%') {
        return Err(StatusError::bad_request(
            "percent-encoded characters are not allowed in API paths",
        ));
    }
    let q = Query::parse(query);
    let discovery = |e: ApiEndpoint| only_get(method, None, e);
    match path {
        "/version" => return discovery(ApiEndpoint::Version),
        "/api" => return discovery(ApiEndpoint::CoreVersions),
        "/api/v1" => return discovery(ApiEndpoint::CoreResources),
        "/apis" => return discovery(ApiEndpoint::Groups),
        "/openapi/v2" => return discovery(ApiEndpoint::OpenApiV2),
        "/openapi/v3" => return discovery(ApiEndpoint::OpenApiV3Index),
        "/apis/berth.io" => return discovery(ApiEndpoint::BerthGroup),
        "/apis/berth.io/v1" => return discovery(ApiEndpoint::BerthGroupResources),
        _ => {}
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        return match super::openapi::GroupVersion::parse(gv) {
            Some(gv) => discovery(ApiEndpoint::OpenApiV3(gv)),
            None => Err(StatusError::path_not_found()),
        };
    }
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        return core(method, rest);
    }
    if let Some(rest) = path.strip_prefix("/apis/berth.io/v1/") {
        return berth_group(method, rest, &q);
    }
    let rest = path
        .strip_prefix("/apis/")
        .and_then(|r| r.strip_prefix(GROUP))
        .ok_or_else(StatusError::path_not_found)?;
    if rest.is_empty() {
        return discovery(ApiEndpoint::Group);
    }
    let rest = rest
        .strip_prefix('/')
        .and_then(|r| r.strip_prefix(VERSION))
        .ok_or_else(StatusError::path_not_found)?;
    if rest.is_empty() {
        return discovery(ApiEndpoint::GroupResources);
    }
    let rest = rest
        .strip_prefix('/')
        .ok_or_else(StatusError::path_not_found)?;
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(StatusError::path_not_found());
    }
    match segments.as_slice() {
        ["imagestreams"] => collection(method, None, Resource::ImageStreams, &q),
        ["imagestreamtags"] => collection(method, None, Resource::ImageStreamTags, &q),
        ["images"] => collection(method, None, Resource::Images, &q),
        ["images", name] => image(method, name),
        ["namespaces", ns, resource, tail @ ..] => namespaced(method, ns, resource, tail, &q),
        _ => Err(StatusError::path_not_found()),
    }
}

/// The core group: namespaces (read-only) and namespaced secrets.
fn core(method: &Method, rest: &str) -> Result<ApiEndpoint, StatusError> {
    use ApiEndpoint as E;
    let segments: Vec<&str> = rest.split('/').collect();
    if let ["namespaces"] | ["namespaces", _] = segments.as_slice() {
        if method != Method::GET {
            return Err(not_allowed(method, Some(Resource::Namespaces)));
        }
        return Ok(match segments.as_slice() {
            [_, ns] => match validate_namespace("metadata.name", ns) {
                Ok(namespace) => E::GetNamespace { namespace },
                // No namespace can have that name.
                Err(_) => return Err(StatusError::path_not_found()),
            },
            _ => E::ListNamespaces,
        });
    }
    let (ns, name) = match segments.as_slice() {
        ["namespaces", ns, "secrets"] => (*ns, None),
        ["namespaces", ns, "secrets", name] if !name.is_empty() => (*ns, Some(*name)),
        _ => return Err(StatusError::path_not_found()),
    };
    let allowed: &[Method] = match name {
        None => &[Method::GET, Method::POST],
        Some(_) => &[Method::GET, Method::DELETE],
    };
    if !allowed.contains(method) {
        return Err(not_allowed(method, Some(Resource::Secrets)));
    }
    let namespace = validate_namespace("metadata.namespace", ns)
        .map_err(|e| StatusError::invalid(Resource::Secrets, ns, vec![e]))?;
    Ok(match (name, method.clone()) {
        (None, Method::GET) => E::ListSecrets { namespace },
        (None, _) => E::CreateSecret { namespace },
        (Some(name), Method::GET) => E::GetSecret {
            namespace,
            name: name.to_string(),
        },
        (Some(name), _) => E::DeleteSecret {
            namespace,
            name: name.to_string(),
        },
    })
}

/// berth's own group, `berth.io/v1`: namespaced webhooks.
fn berth_group(method: &Method, rest: &str, q: &Query) -> Result<ApiEndpoint, StatusError> {
    use ApiEndpoint as E;
    let segments: Vec<&str> = rest.split('/').collect();
    let (ns, name) = match segments.as_slice() {
        ["namespaces", ns, "webhooks"] => (*ns, None),
        ["namespaces", ns, "webhooks", name] if !name.is_empty() => (*ns, Some(*name)),
        _ => return Err(StatusError::path_not_found()),
    };
    let allowed: &[Method] = match name {
        None => &[Method::GET, Method::POST],
        Some(_) => &[Method::GET, Method::PUT, Method::DELETE],
    };
    if !allowed.contains(method) {
        return Err(not_allowed(method, Some(Resource::Webhooks)));
    }
    let namespace = validate_namespace("metadata.namespace", ns)
        .map_err(|e| StatusError::invalid(Resource::Webhooks, ns, vec![e]))?;
    let name = name.map(str::to_string);
    Ok(match (name, method.clone()) {
        (None, Method::GET) if q.flag("watch") => E::WatchWebhooks {
            namespace,
            options: list_options(q)?,
        },
        (None, Method::GET) => E::ListWebhooks { namespace },
        (None, _) => E::CreateWebhook { namespace },
        (Some(name), Method::GET) => E::GetWebhook { namespace, name },
        (Some(name), Method::PUT) => E::ReplaceWebhook { namespace, name },
        (Some(name), _) => E::DeleteWebhook { namespace, name },
    })
}

fn only_get(
    method: &Method,
    resource: Option<Resource>,
    e: ApiEndpoint,
) -> Result<ApiEndpoint, StatusError> {
    if method == Method::GET {
        Ok(e)
    } else {
        Err(not_allowed(method, resource))
    }
}

/// Kubernetes names the refused verb, not the HTTP method.
fn not_allowed(method: &Method, resource: Option<Resource>) -> StatusError {
    let verb = match *method {
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        ref other => other.as_str(),
    };
    StatusError::method_not_allowed(resource, verb)
}

fn namespaced(
    method: &Method,
    ns: &str,
    resource: &str,
    tail: &[&str],
    q: &Query,
) -> Result<ApiEndpoint, StatusError> {
    use ApiEndpoint as E;
    let resource = match resource {
        "imagestreams" => Resource::ImageStreams,
        "imagestreamtags" => Resource::ImageStreamTags,
        "imagestreamimages" => Resource::ImageStreamImages,
        "imagestreammappings" => Resource::ImageStreamMappings,
        "imagestreamimports" => Resource::ImageStreamImports,
        _ => return Err(StatusError::path_not_found()),
    };
    // Route shape and method first, so a wrong verb is a 405 whatever the names.
    let allowed: &[Method] = match (resource, tail.len()) {
        (Resource::ImageStreams | Resource::ImageStreamTags, 0) => &[Method::GET, Method::POST],
        (Resource::ImageStreams, 1) => &[Method::GET, Method::PUT, Method::PATCH, Method::DELETE],
        (Resource::ImageStreams, 2) if tail[1] == "status" => &[Method::GET, Method::PUT],
        (Resource::ImageStreamTags, 1) => &[Method::GET, Method::POST, Method::PUT, Method::DELETE],
        (Resource::ImageStreamImages, 1) => &[Method::GET],
        (Resource::ImageStreamMappings | Resource::ImageStreamImports, 0) => &[Method::POST],
        _ => return Err(StatusError::path_not_found()),
    };
    if !allowed.contains(method) {
        return Err(not_allowed(method, Some(resource)));
    }
    let invalid_ns = |e| StatusError::invalid(resource, ns, vec![e]);
    let namespace = validate_namespace("metadata.namespace", ns).map_err(invalid_ns)?;
    let stream = |name: &str| {
        validate_stream_name("metadata.name", name)
            .map_err(|e| StatusError::invalid(resource, name, vec![e]))
    };

    Ok(match (resource, tail, method.clone()) {
        (Resource::ImageStreams | Resource::ImageStreamTags, [], Method::GET) => {
            return collection(method, Some(namespace), resource, q)
        }
        (Resource::ImageStreams, [], _) => E::CreateImageStream { namespace },
        (Resource::ImageStreamTags, [], _) => E::CreateImageStreamTag {
            namespace,
            name: None,
        },
        (Resource::ImageStreams, [name], m) => {
            let name = stream(name)?;
            match m {
                Method::GET => E::GetImageStream { namespace, name },
                Method::PUT => E::ReplaceImageStream { namespace, name },
                Method::PATCH => E::PatchImageStream { namespace, name },
                _ => E::DeleteImageStream { namespace, name },
            }
        }
        (Resource::ImageStreams, [name, _status], m) => {
            let name = stream(name)?;
            match m {
                Method::GET => E::GetImageStreamStatus { namespace, name },
                _ => E::ReplaceImageStreamStatus { namespace, name },
            }
        }
        (Resource::ImageStreamTags, [name], m) => {
            let name = IstagName::parse(name)?;
            match m {
                Method::GET => E::GetImageStreamTag { namespace, name },
                Method::POST => E::CreateImageStreamTag {
                    namespace,
                    name: Some(name),
                },
                Method::PUT => E::ReplaceImageStreamTag { namespace, name },
                _ => E::DeleteImageStreamTag { namespace, name },
            }
        }
        (Resource::ImageStreamImages, [name], _) => E::GetImageStreamImage {
            namespace,
            name: IsimageName::parse(name)?,
        },
        (Resource::ImageStreamMappings, [], _) => E::CreateImageStreamMapping { namespace },
        (Resource::ImageStreamImports, [], _) => E::CreateImageStreamImport { namespace },
        _ => return Err(StatusError::path_not_found()),
    })
}

/// A collection GET: list, or watch when `?watch` says so.
fn collection(
    method: &Method,
    namespace: Option<Namespace>,
    resource: Resource,
    q: &Query,
) -> Result<ApiEndpoint, StatusError> {
    use ApiEndpoint as E;
    if method != Method::GET {
        return Err(not_allowed(method, Some(resource)));
    }
    let watch = q.flag("watch");
    let options = list_options(q)?;
    Ok(match (resource, watch) {
        (Resource::ImageStreams, false) => E::ListImageStreams { namespace, options },
        (Resource::ImageStreams, true) => E::WatchImageStreams { namespace, options },
        (Resource::ImageStreamTags, false) => E::ListImageStreamTags { namespace, options },
        (Resource::Images, false) => E::ListImages { options },
        (Resource::Images, true) => E::WatchImages { options },
        (r, true) => return Err(StatusError::method_not_allowed(Some(r), "watch")),
        _ => return Err(StatusError::path_not_found()),
    })
}

fn image(method: &Method, name: &str) -> Result<ApiEndpoint, StatusError> {
    let name = match *method {
        Method::GET | Method::DELETE => image_name(name)?,
        _ => return Err(not_allowed(method, Some(Resource::Images))),
    };
    Ok(if method == Method::GET {
        ApiEndpoint::GetImage { name }
    } else {
        ApiEndpoint::DeleteImage { name }
    })
}

/// Image names are digests by convention but only checked as path segments (spec §4).
fn image_name(name: &str) -> Result<String, StatusError> {
    if name == "." || name == ".." {
        return Err(StatusError::invalid(
            Resource::Images,
            name,
            vec![FieldError::invalid(
                "metadata.name",
                name,
                format!("may not be '{name}'"),
            )],
        ));
    }
    Ok(name.to_string())
}

/// The list and watch options of a request.
fn list_options(q: &Query) -> Result<ListOptions, StatusError> {
    let bad = |e: super::selector::SelectorError| StatusError::bad_request(e.0);
    let resource_version =
        match q.get("resourceVersion") {
            None | Some("") => None,
            Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                StatusError::bad_request(format!("invalid resource version {rv:?}"))
            })?),
        };
    let timeout = match q.get("timeoutSeconds") {
        None | Some("") => None,
        Some(t) => match t.parse::<u64>() {
            Ok(0) => None,
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => {
                return Err(StatusError::bad_request(format!(
                    "timeoutSeconds must be a non-negative integer, got {t:?}"
                )))
            }
        },
    };
    Ok(ListOptions {
        label_selector: LabelSelector::parse(q.get("labelSelector").unwrap_or("")).map_err(bad)?,
        field_selector: FieldSelector::parse(q.get("fieldSelector").unwrap_or("")).map_err(bad)?,
        resource_version,
        timeout,
        allow_watch_bookmarks: q.flag("allowWatchBookmarks"),
        send_initial_events: q.opt_flag("sendInitialEvents"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::apis::status::Reason;
    use http::StatusCode;

    const BASE: &str = "/apis/image.openshift.io/v1";

    fn p(m: Method, path: &str) -> Result<ApiEndpoint, StatusError> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        parse(&m, path, query)
    }

    fn api(m: Method, rest: &str) -> Result<ApiEndpoint, StatusError> {
        p(m, &format!("{BASE}/{rest}"))
    }

    fn ns(s: &str) -> Namespace {
        Namespace::parse(s).unwrap()
    }

    fn sn(s: &str) -> StreamName {
        StreamName::parse(s).unwrap()
    }

    fn code(r: Result<ApiEndpoint, StatusError>) -> StatusCode {
        r.expect_err("expected an error").code
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(p(Method::GET, "/version"), Ok(ApiEndpoint::Version));
        assert_eq!(p(Method::GET, "/api"), Ok(ApiEndpoint::CoreVersions));
        assert_eq!(p(Method::GET, "/api/v1"), Ok(ApiEndpoint::CoreResources));
        assert_eq!(p(Method::GET, "/apis"), Ok(ApiEndpoint::Groups));
        assert_eq!(
            p(Method::GET, "/apis/berth.io"),
            Ok(ApiEndpoint::BerthGroup)
        );
        assert_eq!(
            p(Method::GET, "/apis/berth.io/v1"),
            Ok(ApiEndpoint::BerthGroupResources)
        );
        assert_eq!(
            p(Method::GET, "/apis/image.openshift.io"),
            Ok(ApiEndpoint::Group)
        );
        assert_eq!(p(Method::GET, BASE), Ok(ApiEndpoint::GroupResources));
        assert_eq!(
            code(p(Method::POST, "/apis")),
            StatusCode::METHOD_NOT_ALLOWED
        );
        for missing in [
            "/apis/",
            "/api/",
            "/api/v2",
            "/apis/image.openshift.io/",
            "/apis/image.openshift.io/v1/",
            "/apis/image.openshift.io/v2",
            "/apis/image.openshift.iox/v1",
            "/apis/apps/v1",
            "/apis/image.openshift.io/v1/imagestreams/",
            "/apis/image.openshift.io/v1/namespaces/ns/imagestreams/",
            "/apis/image.openshift.io/v1/namespaces//imagestreams",
            "/apis/image.openshift.io/v1/namespaces/ns/pods",
            "/apis/image.openshift.io/v1/namespaces/ns/imagestreams/a/secrets",
            "/apis/image.openshift.io/v1/namespaces/ns/imagestreams/a/status/x",
            "/apis/image.openshift.io/v1/namespaces/ns/imagestreammappings/x",
            "/apis/image.openshift.io/v1/namespaces/ns",
        ] {
            let e = p(Method::GET, missing).expect_err(missing);
            assert_eq!(e, StatusError::path_not_found(), "{missing}");
        }
        assert!(is_api_path("/apis/image.openshift.io/v1"));
        assert!(is_api_path("/version"));
        assert!(!is_api_path("/v2/"));
        assert!(!is_api_path("/apiserver"));
    }

    #[test]
    fn image_streams() {
        assert_eq!(
            api(Method::GET, "namespaces/ns/imagestreams"),
            Ok(ApiEndpoint::ListImageStreams {
                namespace: Some(ns("ns")),
                options: ListOptions::default()
            })
        );
        assert_eq!(
            api(Method::GET, "imagestreams"),
            Ok(ApiEndpoint::ListImageStreams {
                namespace: None,
                options: ListOptions::default()
            })
        );
        for w in ["watch=true", "watch=1", "watch=True", "watch="] {
            assert!(
                matches!(
                    api(Method::GET, &format!("namespaces/ns/imagestreams?{w}")),
                    Ok(ApiEndpoint::WatchImageStreams {
                        namespace: Some(_),
                        ..
                    })
                ),
                "{w}"
            );
        }
        for w in ["watch=false", "watch=0", "watch=FALSE"] {
            assert!(
                matches!(
                    api(Method::GET, &format!("imagestreams?{w}")),
                    Ok(ApiEndpoint::ListImageStreams { .. })
                ),
                "{w}"
            );
        }
        assert!(matches!(
            api(Method::GET, "imagestreams?watch=true"),
            Ok(ApiEndpoint::WatchImageStreams {
                namespace: None,
                ..
            })
        ));
        assert_eq!(
            api(Method::POST, "namespaces/ns/imagestreams"),
            Ok(ApiEndpoint::CreateImageStream {
                namespace: ns("ns")
            })
        );
        let named = |m| api(m, "namespaces/my-ns/imagestreams/my.app_1");
        let (namespace, name) = (ns("my-ns"), sn("my.app_1"));
        assert_eq!(
            named(Method::GET),
            Ok(ApiEndpoint::GetImageStream {
                namespace: namespace.clone(),
                name: name.clone()
            })
        );
        assert_eq!(
            named(Method::PUT),
            Ok(ApiEndpoint::ReplaceImageStream {
                namespace: namespace.clone(),
                name: name.clone()
            })
        );
        assert_eq!(
            named(Method::PATCH),
            Ok(ApiEndpoint::PatchImageStream {
                namespace: namespace.clone(),
                name: name.clone()
            })
        );
        assert_eq!(
            named(Method::DELETE),
            Ok(ApiEndpoint::DeleteImageStream {
                namespace: namespace.clone(),
                name: name.clone()
            })
        );
        assert_eq!(
            api(Method::GET, "namespaces/my-ns/imagestreams/my.app_1/status"),
            Ok(ApiEndpoint::GetImageStreamStatus {
                namespace: namespace.clone(),
                name: name.clone()
            })
        );
        assert_eq!(
            api(Method::PUT, "namespaces/my-ns/imagestreams/my.app_1/status"),
            Ok(ApiEndpoint::ReplaceImageStreamStatus { namespace, name })
        );
        assert_eq!(code(named(Method::POST)), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            code(api(Method::DELETE, "namespaces/ns/imagestreams/a/status")),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            code(api(Method::PUT, "namespaces/ns/imagestreams")),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            code(api(Method::POST, "imagestreams")),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn invalid_names_are_422_with_the_field() {
        let e = api(Method::GET, "namespaces/ns/imagestreams/Foo").unwrap_err();
        assert_eq!(e.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.reason, Reason::Invalid);
        assert_eq!(
            e.message,
            r#"ImageStream.image.openshift.io "Foo" is invalid: metadata.name: Invalid value: "Foo": must match "[a-z0-9]+(?:[._-][a-z0-9]+)*""#
        );
        let long = "a".repeat(64);
        let e = api(Method::GET, &format!("namespaces/ns/imagestreams/{long}")).unwrap_err();
        assert!(
            e.message.ends_with("must be no more than 63 characters"),
            "{}",
            e.message
        );
        assert!(api(
            Method::GET,
            &format!("namespaces/ns/imagestreams/{}", &long[1..])
        )
        .is_ok());

        let e = api(Method::GET, "namespaces/Bad_NS/imagestreams").unwrap_err();
        assert_eq!(e.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.details.unwrap().causes[0].field, "metadata.namespace");
        assert_eq!(
            code(api(Method::GET, &format!("namespaces/{long}/imagestreams"))),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        for bad in ["a..b", "-a", "a-", ".a"] {
            assert_eq!(
                code(api(
                    Method::GET,
                    &format!("namespaces/ns/imagestreams/{bad}")
                )),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{bad}"
            );
        }
    }

    #[test]
    fn image_stream_tags() {
        let t = IstagName {
            stream: sn("app"),
            tag: Tag::parse("v1.0").unwrap(),
        };
        assert_eq!(t.to_string(), "app:v1.0");
        assert_eq!(
            api(Method::GET, "namespaces/ns/imagestreamtags/app:v1.0"),
            Ok(ApiEndpoint::GetImageStreamTag {
                namespace: ns("ns"),
                name: t.clone()
            })
        );
        assert_eq!(
            api(Method::PUT, "namespaces/ns/imagestreamtags/app:v1.0"),
            Ok(ApiEndpoint::ReplaceImageStreamTag {
                namespace: ns("ns"),
                name: t.clone()
            })
        );
        assert_eq!(
            api(Method::DELETE, "namespaces/ns/imagestreamtags/app:v1.0"),
            Ok(ApiEndpoint::DeleteImageStreamTag {
                namespace: ns("ns"),
                name: t.clone()
            })
        );
        assert_eq!(
            api(Method::POST, "namespaces/ns/imagestreamtags/app:v1.0"),
            Ok(ApiEndpoint::CreateImageStreamTag {
                namespace: ns("ns"),
                name: Some(t)
            })
        );
        assert_eq!(
            api(Method::POST, "namespaces/ns/imagestreamtags"),
            Ok(ApiEndpoint::CreateImageStreamTag {
                namespace: ns("ns"),
                name: None
            })
        );
        assert!(matches!(
            api(Method::GET, "namespaces/ns/imagestreamtags?labelSelector=a%3Db"),
            Ok(ApiEndpoint::ListImageStreamTags { namespace: Some(_), ref options }) if !options.label_selector.is_empty()
        ));
        assert!(matches!(
            api(Method::GET, "imagestreamtags"),
            Ok(ApiEndpoint::ListImageStreamTags {
                namespace: None,
                ..
            })
        ));
        let e = api(Method::GET, "namespaces/ns/imagestreamtags?watch=true").unwrap_err();
        assert_eq!(e.code, StatusCode::METHOD_NOT_ALLOWED);
        assert!(e.message.starts_with("watch is not supported"));
        assert_eq!(
            code(api(Method::PATCH, "namespaces/ns/imagestreamtags/a:b")),
            StatusCode::METHOD_NOT_ALLOWED
        );

        for malformed in [
            "app",
            "app:",
            ":v1",
            "app:a:b",
            "app@sha256:abc",
            "app:v1@x",
        ] {
            let e = api(
                Method::GET,
                &format!("namespaces/ns/imagestreamtags/{malformed}"),
            )
            .unwrap_err();
            assert_eq!(e.code, StatusCode::BAD_REQUEST, "{malformed}");
            assert_eq!(
                e.message,
                "ImageStreamTags must be retrieved with <name>:<tag>"
            );
        }
        for invalid in ["App:v1", "app:.v1", "app:-x"] {
            let e = api(
                Method::GET,
                &format!("namespaces/ns/imagestreamtags/{invalid}"),
            )
            .unwrap_err();
            assert_eq!(e.code, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");
            assert_eq!(e.details.unwrap().kind, "ImageStreamTag");
        }
        let long_tag = format!("app:{}", "t".repeat(129));
        assert_eq!(
            code(api(
                Method::GET,
                &format!("namespaces/ns/imagestreamtags/{long_tag}")
            )),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    #[test]
    fn image_stream_images_mappings_imports() {
        const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        assert_eq!(
            api(
                Method::GET,
                &format!("namespaces/ns/imagestreamimages/app@{D}")
            ),
            Ok(ApiEndpoint::GetImageStreamImage {
                namespace: ns("ns"),
                name: IsimageName {
                    stream: sn("app"),
                    id: D.into()
                }
            })
        );
        // A prefix is a valid id.
        assert!(api(Method::GET, "namespaces/ns/imagestreamimages/app@44136f").is_ok());
        for malformed in ["app", "app@", "@x", "app@a@b"] {
            let e = api(
                Method::GET,
                &format!("namespaces/ns/imagestreamimages/{malformed}"),
            )
            .unwrap_err();
            assert_eq!(e.code, StatusCode::BAD_REQUEST, "{malformed}");
            assert_eq!(
                e.message,
                "ImageStreamImages must be retrieved with <name>@<id>"
            );
        }
        assert_eq!(
            code(api(Method::DELETE, "namespaces/ns/imagestreamimages/app@x")),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            api(Method::POST, "namespaces/ns/imagestreammappings"),
            Ok(ApiEndpoint::CreateImageStreamMapping {
                namespace: ns("ns")
            })
        );
        assert_eq!(
            api(Method::POST, "namespaces/ns/imagestreamimports"),
            Ok(ApiEndpoint::CreateImageStreamImport {
                namespace: ns("ns")
            })
        );
        let e = api(Method::GET, "namespaces/ns/imagestreammappings").unwrap_err();
        assert_eq!(e.code, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            e.message,
            "get is not supported on resources of kind \"imagestreammappings.image.openshift.io\""
        );
        assert_eq!(
            code(api(Method::GET, "namespaces/ns/imagestreamimports")),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn images() {
        const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        assert_eq!(
            api(Method::GET, &format!("images/{D}")),
            Ok(ApiEndpoint::GetImage { name: D.into() })
        );
        assert_eq!(
            api(Method::DELETE, &format!("images/{D}")),
            Ok(ApiEndpoint::DeleteImage { name: D.into() })
        );
        assert!(matches!(
            api(Method::GET, "images"),
            Ok(ApiEndpoint::ListImages { .. })
        ));
        assert!(matches!(
            api(Method::GET, "images?watch=1&resourceVersion=7"),
            Ok(ApiEndpoint::WatchImages { ref options }) if options.watch_start() == WatchStart::After(7)
        ));
        assert_eq!(
            code(api(Method::PUT, &format!("images/{D}"))),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            code(api(Method::POST, "images")),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            code(api(Method::GET, "images/..")),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            code(api(Method::GET, "namespaces/ns/images")),
            StatusCode::NOT_FOUND,
            "images are cluster-scoped"
        );
    }

    #[test]
    fn percent_encoding_is_refused_not_decoded() {
        for path in [
            "namespaces/ns/imagestreamtags/app%3Alatest",
            "namespaces/n%73/imagestreams",
            "images/sha256%3Aabc",
        ] {
            let e = api(Method::GET, path).unwrap_err();
            assert_eq!(e.code, StatusCode::BAD_REQUEST, "{path}");
            assert!(e.message.contains("percent-encoded"));
        }
    }

    #[test]
    fn list_options() {
        let opts = |q: &str| match api(Method::GET, &format!("imagestreams?{q}")) {
            Ok(
                ApiEndpoint::ListImageStreams { options, .. }
                | ApiEndpoint::WatchImageStreams { options, .. },
            ) => Ok(options),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        let o = opts("labelSelector=app%3Dweb%2Ctier%21%3Ddb&fieldSelector=metadata.name%3Dfoo&resourceVersion=42&timeoutSeconds=10&allowWatchBookmarks=true&limit=500&continue=x").unwrap();
        assert_eq!(o.label_selector.to_string(), "app=web,tier!=db");
        assert_eq!(o.field_selector.exact_name(), Some("foo"));
        assert_eq!(o.resource_version, Some(42));
        assert_eq!(o.timeout, Some(Duration::from_secs(10)));
        assert!(o.allow_watch_bookmarks);
        assert_eq!(o.watch_start(), WatchStart::After(42));
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert!(o.matches("foo", Some("ns"), &labels));
        assert!(!o.matches("bar", Some("ns"), &labels));

        assert_eq!(
            opts("resourceVersion=0").unwrap().watch_start(),
            WatchStart::InitialState
        );
        assert_eq!(
            opts("resourceVersion=").unwrap().watch_start(),
            WatchStart::InitialState
        );
        assert_eq!(opts("").unwrap().watch_start(), WatchStart::InitialState);
        assert_eq!(
            opts("resourceVersion=9&sendInitialEvents=true")
                .unwrap()
                .watch_start(),
            WatchStart::InitialState
        );
        assert_eq!(
            opts("sendInitialEvents=false").unwrap().send_initial_events,
            Some(false)
        );
        assert_eq!(opts("timeoutSeconds=0").unwrap().timeout, None);

        for bad in [
            "resourceVersion=abc",
            "timeoutSeconds=-1",
            "labelSelector=a%20b",
            "fieldSelector=spec.x%3D1",
        ] {
            assert_eq!(
                opts(bad).unwrap_err().code,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        assert_eq!(
            opts("fieldSelector=spec.x%3D1").unwrap_err().message,
            "field label not supported: spec.x"
        );
    }

    #[test]
    fn helpers_for_body_validation() {
        assert!(IstagName::parse("s:t").is_ok());
        assert_eq!(
            IstagName::parse("s").unwrap_err().code,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            validate_tag("tag", ".x").unwrap_err().to_string(),
            r#"tag: Invalid value: ".x": must match "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}""#
        );
        assert!(validate_namespace("metadata.namespace", "ok-ns").is_ok());
        assert!(validate_stream_name("metadata.name", "ok.name").is_ok());
        assert_eq!(IsimageName::parse("s@abc").unwrap().to_string(), "s@abc");
    }

    #[test]
    fn resource_of_each_endpoint() {
        assert_eq!(ApiEndpoint::Groups.resource(), None);
        assert_eq!(
            api(Method::POST, "namespaces/ns/imagestreammappings")
                .unwrap()
                .resource(),
            Some(Resource::ImageStreamMappings)
        );
        assert_eq!(
            api(Method::GET, "namespaces/ns/imagestreamtags/a:b")
                .unwrap()
                .resource(),
            Some(Resource::ImageStreamTags)
        );
    }
}
