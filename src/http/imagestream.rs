//! Handlers of `/apis/image.openshift.io/v1`: wire JSON ↔ the image-stream domain, Kubernetes
//! `Status` errors, lists and watches.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::apis::discovery;
use super::apis::hub::{Hub, WatchBudget, WatcherLimits};
use super::apis::patch::PatchKind;
use super::apis::path::{ApiEndpoint, ListOptions, WatchStart};
use super::apis::resource::Resource;
use super::apis::status::{self, FieldError, StatusError};
use super::apis::table;
use super::apis::watch::{EventType, Presenter, Resolver, Stub, Watch, WatchEvent};
use super::apis::{openapi, openapi_pb};
use super::auth::{AuthSettings, Caller};
use super::response::{self as resp, Response};
use super::rope::Rope;
use super::watch_renders::Renders;
use super::ReqBody;
use crate::auth::Action;
use crate::imagestream::service::{decorate, ImageStreams};
use crate::imagestream::types::ImageStream;
use crate::imagestream::{Cause, CauseKind, Change, ChangeKind, Error, Reach};
use crate::importer::stream_import::ImageStreamImport;
use crate::importer::Importer;
use crate::registry::Namespace;
use crate::secrets::Secret;
use crate::server::CloseConnection;

/// Largest object body accepted on the API (Kubernetes' own limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;
/// Recent changes kept per resource so watches can resume from a resourceVersion; also the
/// most events one watcher may have queued.
const WATCH_BACKLOG: usize = 4096;

/// What watches may buffer.
#[derive(Debug, Clone, Copy)]
pub struct WatchLimits {
    /// Bytes of events one watcher may have queued before it is closed.
    pub per_watcher_bytes: usize,
    /// Events one watcher may be behind before it is closed.
    pub per_watcher_events: usize,
    /// Bytes all watchers' queues may hold together; beyond it the fullest are closed.
    pub total_bytes: usize,
    /// Bytes of recent events each hub keeps for watches resuming from a resourceVersion.
    pub backlog_bytes: usize,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            per_watcher_bytes: super::apis::hub::DEFAULT_WATCHER_BYTES,
            per_watcher_events: 1000,
            total_bytes: super::apis::hub::DEFAULT_WATCHERS_BUDGET,
            backlog_bytes: super::apis::hub::DEFAULT_BUDGET,
        }
    }
}

pub struct Api {
    pub streams: ImageStreams,
    pub importer: Importer,
    /// The berth.io/v1 Webhook objects.
    pub webhooks: crate::webhooks::Webhooks,
    stream_hub: Arc<Hub>,
    image_hub: Arc<Hub>,
    webhook_hub: Arc<Hub>,
    renders: Arc<Renders>,
}

impl Api {
    /// Builds the API over `streams` and subscribes its watch hubs to committed changes.
    pub fn new(
        streams: ImageStreams,
        importer: Importer,
        webhooks: crate::webhooks::Webhooks,
        limits: WatchLimits,
        gauges: crate::metrics::WatchGauges,
    ) -> Result<Self, crate::imagestream::Error> {
        let rv = streams.resource_version()?;
        let budget = WatchBudget::new(limits.total_bytes);
        let hub = || {
            let per_watcher = WatcherLimits {
                events: limits.per_watcher_events,
                bytes: limits.per_watcher_bytes,
            };
            Arc::new(
                Hub::with_limits(
                    WATCH_BACKLOG,
                    limits.backlog_bytes,
                    per_watcher,
                    budget.clone(),
                    rv,
                )
                .with_gauges(gauges.clone()),
            )
        };
        let (stream_hub, image_hub, webhook_hub) = (hub(), hub(), hub());
        // The listener lives inside the registry: it must not hold the registry itself (a
        // reference cycle would keep the store, and sled's lock, alive forever).
        let (sh, ih, wh, host) = (
            stream_hub.clone(),
            image_hub.clone(),
            webhook_hub.clone(),
            streams.registry().hosts().clone(),
        );
        let hubs = (stream_hub.clone(), image_hub.clone(), webhook_hub.clone());
        let renders = Arc::new(Renders::default());
        let (told, forget) = (renders.clone(), renders.clone());
        streams.registry().events().on_gap(Arc::new(move |upto| {
            forget.gap();
            hubs.0.gap(upto);
            hubs.1.gap(upto);
            hubs.2.gap(upto);
        }));
        streams
            .registry()
            .events()
            .listen(Arc::new(move |change: &Change| {
                let rv = change.resource_version();
                match change {
                    // Events carry stubs (metadata, for filters); a watch renders the whole
                    // object when it delivers one, so neither pushes nor backlogs pay for
                    // objects nobody reads. A deleted object's last state is its stub.
                    Change::Stream {
                        kind,
                        stream,
                        tags_written,
                    } => {
                        // Before the event is out: a watch rendering it re-reads these tags.
                        told.written(
                            (&stream.metadata.namespace, &stream.metadata.name),
                            *kind,
                            rv,
                            tags_written.as_ref(),
                        );
                        let event = match event_type(*kind) {
                            EventType::Deleted => {
                                let mut head = stream.clone();
                                head.spec.tags.clear();
                                head.status.tags.clear();
                                serde_json::to_value(decorate(&host, head))
                                    .map(|v| WatchEvent::new(EventType::Deleted, rv, v))
                            }
                            kind => Ok(WatchEvent::lazy(kind, rv, stub(&stream.metadata))),
                        };
                        if let Ok(event) = event {
                            sh.publish(event);
                        }
                    }
                    Change::Image { kind, image } => {
                        let event = match event_type(*kind) {
                            EventType::Deleted => serde_json::to_value(image)
                                .map(|v| WatchEvent::new(EventType::Deleted, rv, v)),
                            kind => Ok(WatchEvent::lazy(kind, rv, stub(&image.metadata))),
                        };
                        if let Ok(event) = event {
                            ih.publish(event);
                        }
                    }
                    // Webhooks are small and written rarely: events carry the whole object
                    // as written (delivery status is not part of it; a GET has it).
                    Change::Webhook { kind, webhook } => {
                        if let Ok(v) = serde_json::to_value(webhook) {
                            wh.publish(WatchEvent::new(event_type(*kind), rv, v));
                        }
                    }
                    // Released to webhooks by the outbox, never to watchers.
                    Change::Notice(_) => {}
                }
            }));
        Ok(Api {
            streams,
            importer,
            webhooks,
            stream_hub,
            image_hub,
            webhook_hub,
            renders,
        })
    }
}

impl Api {
    /// Ends every open watch (on shutdown, so draining does not wait for watch timeouts).
    pub fn close(&self) {
        self.stream_hub.close();
        self.image_hub.close();
        self.webhook_hub.close();
    }
}

/// What a lazy event keeps until delivery: what watch filters look at, nothing more (backlogs
/// hold thousands of these).
fn stub(meta: &crate::imagestream::types::ObjectMeta) -> Stub {
    Stub {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        resource_version: meta.resource_version.clone(),
        labels: meta.labels.clone(),
    }
}

fn event_type(kind: ChangeKind) -> EventType {
    match kind {
        ChangeKind::Added => EventType::Added,
        ChangeKind::Modified => EventType::Modified,
        ChangeKind::Deleted => EventType::Deleted,
    }
}

fn resource_named(plural: &str) -> Resource {
    match plural {
        "images" => Resource::Images,
        "imagestreamtags" => Resource::ImageStreamTags,
        "imagestreamimages" => Resource::ImageStreamImages,
        "imagestreammappings" => Resource::ImageStreamMappings,
        "imagestreamimports" => Resource::ImageStreamImports,
        "secrets" => Resource::Secrets,
        "webhooks" => Resource::Webhooks,
        "namespaces" => Resource::Namespaces,
        _ => Resource::ImageStreams,
    }
}

fn resource_of_kind(kind: &str) -> Resource {
    match kind {
        "ImageStreamTag" => Resource::ImageStreamTags,
        "ImageStreamMapping" => Resource::ImageStreamMappings,
        "Image" => Resource::Images,
        "ImageStreamImport" => Resource::ImageStreamImports,
        "Secret" => Resource::Secrets,
        "Webhook" => Resource::Webhooks,
        _ => Resource::ImageStreams,
    }
}

fn field_error(c: Cause) -> FieldError {
    match c.kind {
        CauseKind::Invalid => FieldError::invalid(c.field, c.value, c.detail),
        CauseKind::Required => FieldError::required(c.field, c.detail),
        CauseKind::NotFound => FieldError::not_found(c.field, c.value),
    }
}

impl From<Error> for StatusError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { resource, name } => {
                StatusError::not_found(resource_named(resource), &name)
            }
            Error::AlreadyExists { resource, name } => {
                StatusError::already_exists(resource_named(resource), &name)
            }
            Error::Conflict {
                resource,
                name,
                message,
            } => StatusError::conflict(resource_named(resource), &name, message),
            Error::Invalid { kind, name, causes } => StatusError::invalid(
                resource_of_kind(kind),
                &name,
                causes.into_iter().map(field_error).collect(),
            ),
            Error::BadRequest(m) => StatusError::bad_request(m),
            Error::Forbidden {
                resource,
                name,
                message,
            } => StatusError {
                // OpenShift's own message, not prefixed with the resource.
                message,
                ..StatusError::forbidden(resource_named(resource), &name, "")
            },
            Error::Retry => {
                StatusError::conflict(Resource::ImageStreams, "", Error::Retry.to_string())
            }
            Error::Storage(e) if e.is_disk_full() => {
                let refusal = super::error::insufficient_storage(&e);
                StatusError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    status::Reason::InternalError,
                    refusal.message,
                )
            }
            Error::Storage(berth_storage::Error::TooLarge(why)) => StatusError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                status::Reason::RequestEntityTooLarge,
                why,
            ),
            Error::Storage(berth_storage::Error::Unavailable(why)) => {
                tracing::warn!(error = %why, "storage unavailable");
                StatusError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    status::Reason::ServiceUnavailable,
                    "storage is unavailable; retry shortly",
                )
            }
            Error::Storage(berth_storage::Error::Conflict) => {
                tracing::warn!("metadata transaction gave up after repeated conflicts");
                StatusError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    status::Reason::ServiceUnavailable,
                    "busy with concurrent writes to the same records; retry shortly",
                )
            }
            Error::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                StatusError::internal("internal error")
            }
        }
    }
}

/// The caller's reading rights, for the content-reachability rule of the writes it makes.
fn reach_of(caller: &Caller, auth: &AuthSettings) -> Reach {
    match caller {
        Caller::Open => Reach::trusted(),
        Caller::User(id) if crate::auth::allowed(id, &Action::ManageUsers) => Reach::trusted(),
        Caller::User(id) => {
            let id = id.clone();
            Reach::caller(&id.user.clone(), move |ns| {
                crate::auth::allowed(&id, &Action::View(ns.to_string()))
            })
        }
        Caller::Anonymous => {
            let open = auth.anonymous_pull.clone();
            Reach::caller(caller.user(), move |ns| open.iter().any(|n| n == ns))
        }
    }
}

/// [`read_json`] for a `kind` the OpenAPI documents describe; with `strict`, a field the kind
/// does not have is refused as Kubernetes refuses it.
async fn read_object<T: DeserializeOwned>(
    body: ReqBody,
    kind: &str,
    strict: bool,
) -> Result<T, StatusError> {
    let bytes = read_body(body).await?;
    if strict {
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            refuse_unknown(kind, &v)?;
        }
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        StatusError::bad_request(format!("the request body is not a valid object: {e}"))
    })
}

fn refuse_unknown(kind: &str, v: &Value) -> Result<(), StatusError> {
    let unknown = openapi::unknown_fields(kind, v);
    if unknown.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    Err(StatusError::bad_request(format!(
        "strict decoding error: {}",
        fields.join(", ")
    )))
}

async fn read_json<T: DeserializeOwned>(body: ReqBody) -> Result<T, StatusError> {
    let bytes = read_body(body).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        StatusError::bad_request(format!("the request body is not a valid object: {e}"))
    })
}

async fn read_body(body: ReqBody) -> Result<Bytes, StatusError> {
    http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| match e.downcast_ref::<std::io::Error>() {
            Some(e) if e.kind() == std::io::ErrorKind::TimedOut => StatusError::new(
                StatusCode::REQUEST_TIMEOUT,
                status::Reason::Timeout,
                e.to_string(),
            ),
            _ => StatusError::too_large(format!("reading the request body: {e}")),
        })
}

fn object<T: Serialize>(code: StatusCode, value: &T) -> Result<Response, StatusError> {
    let v = serde_json::to_value(value).map_err(|e| StatusError::internal(e.to_string()))?;
    Ok(resp::json(code, &v))
}

/// A namespace as the core API shows one (berth keeps no namespace objects: a namespace exists
/// while it holds something).
fn namespace_object(name: &str) -> Value {
    json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

fn list(kind: &str, items: Vec<Value>, rv: u64) -> Response {
    resp::json(
        StatusCode::OK,
        &json!({
            "kind": kind,
            "apiVersion": "image.openshift.io/v1",
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        }),
    )
}

fn labels_of(v: &Value) -> std::collections::BTreeMap<String, String> {
    v["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn selected(items: Vec<Value>, options: &ListOptions, namespaced: bool) -> Vec<Value> {
    items
        .into_iter()
        .filter(|v| {
            let name = v["metadata"]["name"].as_str().unwrap_or("");
            let ns = if namespaced {
                v["metadata"]["namespace"].as_str()
            } else {
                None
            };
            options.matches(name, ns, &labels_of(v))
        })
        .collect()
}

fn to_values<T: Serialize>(items: Vec<T>) -> Vec<Value> {
    items
        .into_iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

/// A namespace's webhooks and a resourceVersion a watch can resume from without missing a
/// change: read before the objects, so a change during the read is replayed, not lost.
fn webhook_list(api: &Api, namespace: &Namespace) -> Result<(Vec<Value>, u64), StatusError> {
    let rv = api.streams.resource_version()?;
    let items = api.webhooks.list(namespace.as_str())?;
    Ok((to_values(items), rv))
}

/// Renders a lazy stream event's whole object (the stream as it is now) when a watch
/// delivers it.
fn stream_resolver(streams: &ImageStreams, renders: Arc<Renders>) -> Resolver {
    let registry = streams.registry().clone();
    Arc::new(move |e: &WatchEvent| {
        let ns = e.namespace()?;
        renders.render(
            registry.metadata().as_ref(),
            registry.hosts(),
            (ns, e.name()),
            e.resource_version,
        )
    })
}

/// Renders a lazy Image event's whole object when a watch delivers it.
fn image_resolver(streams: &ImageStreams) -> Resolver {
    let streams = streams.clone();
    Arc::new(move |e: &WatchEvent| {
        let image = streams.get_image(e.name()).ok()?;
        let v = serde_json::to_value(image).ok()?;
        let json = serde_json::to_vec(&v).ok()?;
        Some(Arc::new(Rope::from(Bytes::from(json))))
    })
}

/// A watch: replay from a resourceVersion, or the current objects as ADDED, then live changes.
fn watch(
    hub: &Hub,
    resource: Resource,
    namespace: Option<Namespace>,
    options: &ListOptions,
    snapshot: impl FnOnce() -> Result<(Vec<Value>, u64), StatusError>,
    (resolver, presenter): (Option<Resolver>, Option<Presenter>),
    connection: Option<CloseConnection>,
) -> Result<Response, StatusError> {
    let (sub, initial, start_rv) = match options.watch_start() {
        WatchStart::After(rv) => {
            let sub = hub.subscribe_from(Some(rv))?;
            let backlog = sub.backlog.clone();
            (sub, backlog, rv)
        }
        WatchStart::InitialState => {
            // Subscribe first, then snapshot: changes already in the snapshot are skipped by rv.
            let sub = hub.subscribe_from(None)?;
            let (items, rv) = snapshot()?;
            let added = items
                .into_iter()
                .map(|v| WatchEvent::new(EventType::Added, rv, v))
                .collect();
            (sub, added, rv)
        }
    };
    let mut watch = Watch::new(sub.receiver, start_rv).counted(sub.watcher);
    if let Some(connection) = connection {
        watch = watch.disconnect_if_stuck(move || connection.close());
    }
    Ok(watch
        .resolver(resolver)
        .presenter(presenter)
        .initial(initial)
        .options(resource, namespace, options)
        .into_response())
}

pub async fn handle(
    api: &Api,
    endpoint: ApiEndpoint,
    req: http::Request<ReqBody>,
    server_address: &str,
    caller: &Caller,
    auth: &AuthSettings,
) -> Result<Response, StatusError> {
    // Lists across namespaces show only what the caller may view.
    let visible = |ns: &str| {
        caller.may(auth, &Action::View(ns.to_string()), None)
            || caller.may(auth, &Action::ReadAll, None)
    };
    if let Some(r) = discovery::respond(&endpoint, server_address) {
        return Ok(r);
    }
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match endpoint {
        ApiEndpoint::OpenApiV2 => {
            // JSON, or the protobuf form older kubectl asks for (and only for).
            if accept.is_empty() || accept.contains("application/json") || accept.contains("*/*") {
                return Ok(resp::json(StatusCode::OK, openapi::v2()));
            }
            if accept.contains(openapi_pb::ACCEPTED) || accept.contains(openapi_pb::MEDIA_TYPE) {
                return Ok(resp::with_content_type(
                    StatusCode::OK,
                    openapi_pb::MEDIA_TYPE,
                    openapi::v2_protobuf().to_vec(),
                ));
            }
            return Err(StatusError::new(
                StatusCode::NOT_ACCEPTABLE,
                status::Reason::NotAcceptable,
                "/openapi/v2 is served as application/json or as protobuf",
            ));
        }
        ApiEndpoint::OpenApiV3Index => return Ok(resp::json(StatusCode::OK, &openapi::v3_index())),
        ApiEndpoint::OpenApiV3(gv) => return Ok(resp::json(StatusCode::OK, openapi::v3(gv))),
        _ => {}
    }
    // `?fieldValidation=Strict`: a body with fields its kind does not have is refused.
    let strict = req.uri().query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "fieldValidation" && v == "Strict")
    });
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let connection = req.extensions().get::<CloseConnection>().cloned();
    // `kubectl get` asks for a Table (and takes plain JSON for what has no columns).
    let table_version = table::wanted(
        req.headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let tabled = |resource: Resource, items: Vec<Value>, rv: Option<u64>| {
        table_version
            .filter(|_| table::has_columns(resource))
            .map(|v| resp::json(StatusCode::OK, &table::table(v, resource, &items, rv)))
    };
    // A watch for kubectl delivers each object as a Table of one row.
    let presenter = |resource: Resource| -> Option<Presenter> {
        let v = table_version.filter(|_| table::has_columns(resource))?;
        Some(Arc::new(move |o: Value| {
            table::table(v, resource, &[o], None)
        }))
    };
    let body = req.into_body();
    let s = &api.streams;
    match endpoint {
        ApiEndpoint::ListImageStreams { namespace, options } => {
            let (mut items, rv) = s.list(namespace.as_ref().map(|n| n.as_str()))?;
            items.retain(|i| visible(&i.metadata.namespace));
            let items = selected(to_values(items), &options, true);
            if let Some(t) = tabled(Resource::ImageStreams, items.clone(), Some(rv)) {
                return Ok(t);
            }
            Ok(list("ImageStreamList", items, rv))
        }
        ApiEndpoint::WatchImageStreams { namespace, options } => {
            let ns = namespace.clone();
            watch(
                &api.stream_hub,
                Resource::ImageStreams,
                namespace,
                &options,
                || {
                    let (items, rv) = s.list(ns.as_ref().map(|n| n.as_str()))?;
                    Ok((to_values(items), rv))
                },
                (
                    Some(stream_resolver(s, api.renders.clone())),
                    presenter(Resource::ImageStreams),
                ),
                connection,
            )
        }
        ApiEndpoint::CreateImageStream { namespace } => {
            let stream: ImageStream = read_object(body, "ImageStream", strict).await?;
            object(
                StatusCode::CREATED,
                &s.create(namespace.as_str(), stream, reach_of(caller, auth))
                    .await?,
            )
        }
        ApiEndpoint::GetImageStream { namespace, name }
        | ApiEndpoint::GetImageStreamStatus { namespace, name } => {
            if table_version.is_some() {
                let is = s.get(namespace.as_str(), name.as_str())?;
                let v =
                    serde_json::to_value(is).map_err(|e| StatusError::internal(e.to_string()))?;
                if let Some(t) = tabled(Resource::ImageStreams, vec![v], None) {
                    return Ok(t);
                }
            }
            // Written while read: a stream's size does not weigh on memory.
            let meta = s.registry().metadata().clone();
            let hosts = s.registry().hosts().clone();
            super::stream_body::respond(meta, hosts, namespace.as_str(), name.as_str())?
                .ok_or_else(|| Error::NotFound {
                    resource: "imagestreams",
                    name: name.as_str().to_string(),
                })
                .map_err(StatusError::from)
        }
        ApiEndpoint::ReplaceImageStream { namespace, name } => {
            let stream: ImageStream = read_object(body, "ImageStream", strict).await?;
            object(
                StatusCode::OK,
                &s.update(
                    namespace.as_str(),
                    name.as_str(),
                    stream,
                    reach_of(caller, auth),
                )
                .await?,
            )
        }
        ApiEndpoint::ReplaceImageStreamStatus { namespace, name } => {
            let stream: ImageStream = read_object(body, "ImageStream", strict).await?;
            object(
                StatusCode::OK,
                &s.update_status(
                    namespace.as_str(),
                    name.as_str(),
                    stream,
                    reach_of(caller, auth),
                )
                .await?,
            )
        }
        ApiEndpoint::PatchImageStream { namespace, name } => {
            let kind = PatchKind::from_content_type(content_type.as_deref())?;
            let patch = read_body(body).await?;
            let current = s.get(namespace.as_str(), name.as_str())?;
            let rv = current.metadata.resource_version.clone();
            let mut v =
                serde_json::to_value(&current).map_err(|e| StatusError::internal(e.to_string()))?;
            kind.apply(&mut v, &patch)?;
            if strict {
                refuse_unknown("ImageStream", &v)?;
            }
            let mut patched: ImageStream = serde_json::from_value(v).map_err(|e| {
                StatusError::bad_request(format!("the patched object is not an ImageStream: {e}"))
            })?;
            if patched.metadata.resource_version.is_empty() {
                patched.metadata.resource_version = rv;
            }
            object(
                StatusCode::OK,
                &s.update(
                    namespace.as_str(),
                    name.as_str(),
                    patched,
                    reach_of(caller, auth),
                )
                .await?,
            )
        }
        ApiEndpoint::DeleteImageStream { namespace, name } => {
            s.delete(namespace.as_str(), name.as_str()).await?;
            Ok(status::success_with_details(
                StatusCode::OK,
                Resource::ImageStreams,
                name.as_str(),
            ))
        }
        ApiEndpoint::ListImageStreamTags { namespace, options } => {
            let mut items = Vec::new();
            let namespaces: Vec<String> = match &namespace {
                Some(ns) => vec![ns.as_str().to_string()],
                None => {
                    let all = s.list_heads(None)?;
                    let mut n: Vec<String> = all
                        .into_iter()
                        .map(|i| i.metadata.namespace)
                        .filter(|ns| visible(ns))
                        .collect();
                    n.dedup();
                    n
                }
            };
            for ns in namespaces {
                items.extend(to_values(s.list_tags(&ns)?));
            }
            let rv = s.resource_version()?;
            let items = selected(items, &options, true);
            if let Some(t) = tabled(Resource::ImageStreamTags, items.clone(), Some(rv)) {
                return Ok(t);
            }
            Ok(list("ImageStreamTagList", items, rv))
        }
        ApiEndpoint::GetImageStreamTag { namespace, name } => {
            let tag = s.get_tag(namespace.as_str(), name.stream.as_str(), name.tag.as_str())?;
            let v = serde_json::to_value(&tag).map_err(|e| StatusError::internal(e.to_string()))?;
            if let Some(t) = tabled(Resource::ImageStreamTags, vec![v.clone()], None) {
                return Ok(t);
            }
            Ok(resp::json(StatusCode::OK, &v))
        }
        ApiEndpoint::CreateImageStreamTag { namespace, name } => {
            let istag: crate::imagestream::service::ImageStreamTag =
                read_object(body, "ImageStreamTag", strict).await?;
            let name = match name {
                Some(n) => n,
                None => super::apis::path::IstagName::parse(&istag.metadata.name)?,
            };
            let created = s
                .put_tag(
                    namespace.as_str(),
                    name.stream.as_str(),
                    name.tag.as_str(),
                    istag,
                    true,
                    reach_of(caller, auth),
                )
                .await?;
            object(StatusCode::CREATED, &created)
        }
        ApiEndpoint::ReplaceImageStreamTag { namespace, name } => {
            let istag: crate::imagestream::service::ImageStreamTag =
                read_object(body, "ImageStreamTag", strict).await?;
            let updated = s
                .put_tag(
                    namespace.as_str(),
                    name.stream.as_str(),
                    name.tag.as_str(),
                    istag,
                    false,
                    reach_of(caller, auth),
                )
                .await?;
            object(StatusCode::OK, &updated)
        }
        ApiEndpoint::DeleteImageStreamTag { namespace, name } => {
            s.delete_tag(namespace.as_str(), name.stream.as_str(), name.tag.as_str())
                .await?;
            Ok(status::success_with_details(
                StatusCode::OK,
                Resource::ImageStreamTags,
                &name.to_string(),
            ))
        }
        ApiEndpoint::GetImageStreamImage { namespace, name } => object(
            StatusCode::OK,
            &s.get_stream_image(namespace.as_str(), name.stream.as_str(), &name.id)?,
        ),
        ApiEndpoint::CreateImageStreamMapping { namespace } => {
            let mapping: crate::imagestream::service::ImageStreamMapping = read_json(body).await?;
            s.create_mapping(namespace.as_str(), mapping, reach_of(caller, auth))
                .await?;
            Ok(status::success(StatusCode::CREATED))
        }
        ApiEndpoint::CreateImageStreamImport { namespace } => {
            let isi: ImageStreamImport = read_json(body).await?;
            let done = api
                .importer
                .import_stream(namespace.as_str(), isi, s.registry().hosts())
                .await?;
            object(StatusCode::CREATED, &done)
        }
        ApiEndpoint::ListNamespaces => {
            let mut names = s.namespaces()?;
            names.extend(api.importer.secrets().namespaces()?);
            names.sort();
            names.dedup();
            names.retain(|n| visible(n));
            let items: Vec<Value> = names.iter().map(|n| namespace_object(n)).collect();
            if let Some(v) = table_version {
                return Ok(resp::json(
                    StatusCode::OK,
                    &table::table(v, Resource::Namespaces, &items, None),
                ));
            }
            Ok(resp::json(
                StatusCode::OK,
                &Resource::Namespaces.list(s.resource_version()?, items),
            ))
        }
        ApiEndpoint::GetNamespace { namespace } => {
            let ns = namespace.as_str();
            let holds = s.namespaces()?.iter().any(|n| n == ns)
                || api.importer.secrets().namespaces()?.iter().any(|n| n == ns);
            if !holds {
                return Err(StatusError::from(Error::NotFound {
                    resource: "namespaces",
                    name: ns.to_string(),
                }));
            }
            let v = namespace_object(ns);
            if let Some(v2) = table_version {
                return Ok(resp::json(
                    StatusCode::OK,
                    &table::table(v2, Resource::Namespaces, &[v], None),
                ));
            }
            Ok(resp::json(StatusCode::OK, &v))
        }
        ApiEndpoint::ListSecrets { namespace } => {
            let items = api.importer.secrets().list(namespace.as_str())?;
            Ok(resp::json(
                StatusCode::OK,
                &Resource::Secrets.list(s.resource_version()?, to_values(items)),
            ))
        }
        ApiEndpoint::CreateSecret { namespace } => {
            let secret: Secret = read_object(body, "Secret", strict).await?;
            let created = api
                .importer
                .secrets()
                .create(namespace.as_str(), secret)
                .await?;
            object(StatusCode::CREATED, &created)
        }
        ApiEndpoint::GetSecret { namespace, name } => object(
            StatusCode::OK,
            &api.importer.secrets().get(namespace.as_str(), &name)?,
        ),
        ApiEndpoint::DeleteSecret { namespace, name } => {
            api.importer
                .secrets()
                .delete(namespace.as_str(), &name)
                .await?;
            Ok(status::success_with_details(
                StatusCode::OK,
                Resource::Secrets,
                &name,
            ))
        }
        ApiEndpoint::ListWebhooks { namespace } => {
            let (items, rv) = webhook_list(api, &namespace)?;
            Ok(resp::json(
                StatusCode::OK,
                &Resource::Webhooks.list(rv, items),
            ))
        }
        ApiEndpoint::WatchWebhooks { namespace, options } => watch(
            &api.webhook_hub,
            Resource::Webhooks,
            Some(namespace.clone()),
            &options,
            || webhook_list(api, &namespace),
            (None, None),
            connection,
        ),
        ApiEndpoint::CreateWebhook { namespace } => {
            let w: crate::webhooks::Webhook = read_json(body).await?;
            let created = api.webhooks.create(namespace.as_str(), w).await?;
            object(StatusCode::CREATED, &created)
        }
        ApiEndpoint::GetWebhook { namespace, name } => object(
            StatusCode::OK,
            &api.webhooks.get(namespace.as_str(), &name)?,
        ),
        ApiEndpoint::ReplaceWebhook { namespace, name } => {
            let w: crate::webhooks::Webhook = read_json(body).await?;
            let updated = api.webhooks.update(namespace.as_str(), &name, w).await?;
            object(StatusCode::OK, &updated)
        }
        ApiEndpoint::DeleteWebhook { namespace, name } => {
            api.webhooks.delete(namespace.as_str(), &name).await?;
            Ok(status::success_with_details(
                StatusCode::OK,
                Resource::Webhooks,
                &name,
            ))
        }
        ApiEndpoint::ListImages { options } => {
            let (items, rv) = s.list_images()?;
            let items = selected(to_values(items), &options, false);
            if let Some(t) = tabled(Resource::Images, items.clone(), Some(rv)) {
                return Ok(t);
            }
            Ok(list("ImageList", items, rv))
        }
        ApiEndpoint::WatchImages { options } => watch(
            &api.image_hub,
            Resource::Images,
            None,
            &options,
            || {
                let (items, rv) = s.list_images()?;
                Ok((to_values(items), rv))
            },
            (Some(image_resolver(s)), presenter(Resource::Images)),
            connection,
        ),
        ApiEndpoint::GetImage { name } => {
            let v = serde_json::to_value(s.get_image(&name)?)
                .map_err(|e| StatusError::internal(e.to_string()))?;
            if let Some(t) = tabled(Resource::Images, vec![v.clone()], None) {
                return Ok(t);
            }
            Ok(resp::json(StatusCode::OK, &v))
        }
        ApiEndpoint::DeleteImage { name } => {
            s.delete_image(&name).await?;
            Ok(status::success_with_details(
                StatusCode::OK,
                Resource::Images,
                &name,
            ))
        }
        ApiEndpoint::Version
        | ApiEndpoint::CoreVersions
        | ApiEndpoint::CoreResources
        | ApiEndpoint::Groups
        | ApiEndpoint::Group
        | ApiEndpoint::GroupResources
        | ApiEndpoint::OpenApiV2
        | ApiEndpoint::OpenApiV3Index
        | ApiEndpoint::OpenApiV3(_)
        | ApiEndpoint::BerthGroup
        | ApiEndpoint::BerthGroupResources => Err(StatusError::path_not_found()),
    }
}
