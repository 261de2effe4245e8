//! The only module that knows HTTP: request parsing, wire formats, status codes.
//!
//! [`handle`] is the whole application as an async function from request to response; the
//! server in `crate::server` feeds it connections, and tests can call it directly.

pub mod admin_api;
pub mod apis;
pub mod auth;
pub mod auth_api;
pub mod console;
pub mod distribution;
pub mod endpoint;
pub mod error;
pub mod imagestream;
pub mod metrics;
pub mod min_rate;
pub mod query;
pub mod range;
pub mod response;
pub mod rope;
pub mod stream_body;
pub mod watch_renders;

use std::time::Instant;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;

use crate::registry::Registry;
use endpoint::Endpoint;
use error::ApiError;
use response::Response;

/// Boxes any request body (hyper's `Incoming`, or `Full` in tests) into [`ReqBody`].
pub fn box_body<B>(body: B) -> ReqBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    body.map_err(std::io::Error::other).boxed_unsync()
}

/// Request bodies, boxed so the app serves hyper connections and in-process tests alike.
/// The error is a concrete `io::Error` (not a boxed trait object): boxed errors in a body trip
/// rustc's higher-ranked `Send` checks in spawned connection futures.
pub type ReqBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// Everything a handler may use.
pub struct State {
    pub registry: Registry,
    /// Imports (the ImageStreamImport API) and pull-through of imported images' blobs.
    pub importer: crate::importer::Importer,
    pub pull_through: crate::importer::pullthrough::PullThrough,
    /// Garbage collection (the server runs it; `/admin/v1/gc` shows and starts it).
    pub gc: crate::registry::gc::Collector,
    /// Retention policies from the config (the API shows them next to stored ones).
    pub retention: std::sync::Arc<Vec<crate::imagestream::retention::RetentionPolicy>>,
    /// The image.openshift.io/v1 API and its watch hubs.
    pub api: imagestream::Api,
    /// Registry host written into references (`<host>/<ns>/<stream>@<digest>`).
    pub public_host: String,
    pub auth: auth::AuthSettings,
    /// Whether clients reach this server over HTTPS (for the token realm).
    pub https: bool,
    /// The slowest a request body may arrive (`None`: no floor).
    pub min_body_rate: Option<min_rate::MinRate>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Bearer token `/metrics` requires; without one only loopback clients may scrape.
    pub metrics_token: Option<String>,
}

/// What a request addresses, parsed once from its method, path and query.
enum Target {
    Metrics,
    Auth { token: bool },
    Admin,
    Api(Result<apis::path::ApiEndpoint, apis::status::StatusError>),
    V2(Result<Endpoint, endpoint::ParseError>),
}

impl Target {
    fn parse(method: &http::Method, path: &str, query: Option<&str>) -> Target {
        if path == "/metrics" {
            Target::Metrics
        } else if path.starts_with("/admin/") {
            Target::Admin
        } else if path.starts_with("/auth/") {
            Target::Auth {
                token: path == "/auth/token",
            }
        } else if apis::path::is_api_path(path) {
            Target::Api(apis::path::parse(method, path, query))
        } else {
            Target::V2(endpoint::parse(method, path, query))
        }
    }

    /// The metrics label: the endpoint's kind, never anything taken from the path.
    fn route(&self) -> &'static str {
        match self {
            Target::Metrics => "metrics",
            Target::Auth { token: true } => "auth_token",
            Target::Auth { token: false } => "auth_v1",
            Target::Admin => "admin_v1",
            Target::Api(Ok(e)) => e.kind(),
            Target::V2(Ok(e)) => e.kind(),
            Target::Api(Err(_)) | Target::V2(Err(_)) => "unknown",
        }
    }
}

/// Serves one request, logs it (method, path, status, bytes, duration) and counts it.
pub async fn handle(state: &State, req: http::Request<ReqBody>) -> Response {
    let started = Instant::now();
    let req = match state.min_body_rate {
        Some(rate) if !http_body::Body::is_end_stream(req.body()) => {
            let (mut parts, body) = req.into_parts();
            let (body, tripwire) = rate.wrap(body);
            parts.extensions.insert(tripwire);
            http::Request::from_parts(parts, body)
        }
        _ => req,
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let target = Target::parse(&method, &path, req.uri().query());
    let route_label = target.route();
    let req = req.map(|b| counted(b, state.metrics.request_bytes(route_label)));
    let response = route(state, target, req)
        .await
        .unwrap_or_else(ApiError::into_response);
    state.metrics.observe_request(
        route_label,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    let bytes = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    tracing::info!(
        target: "berth::access",
        %method,
        path,
        status = response.status().as_u16(),
        bytes,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response.map(|b| counted(b, state.metrics.response_bytes(route_label)))
}

/// `body`, adding the bytes of every data frame to `counter` as they pass.
fn counted(body: ReqBody, counter: prometheus::IntCounter) -> ReqBody {
    CountedBody { body, counter }.boxed_unsync()
}

struct CountedBody {
    body: ReqBody,
    counter: prometheus::IntCounter,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

async fn route(
    state: &State,
    target: Target,
    req: http::Request<ReqBody>,
) -> Result<Response, ApiError> {
    if let Target::Metrics = target {
        return Ok(metrics::handle(state, req).await);
    }
    let client_cert = req
        .extensions()
        .get::<crate::server::ClientCertificate>()
        .map(|c| c.common_name.clone());
    let source = req
        .extensions()
        .get::<crate::server::RemoteAddr>()
        .map(|a| a.0.ip());
    let caller =
        auth::authenticate(&state.auth, req.headers(), client_cert.as_deref(), source).await;
    let realm = auth::realm_base(&state.public_host, state.https);
    let endpoint = match target {
        Target::Metrics => unreachable!("answered above"),
        Target::Auth { .. } => return Ok(auth_api::handle(state, caller, req, source).await),
        Target::Admin => return Ok(admin_api::handle(state, caller, req).await),
        Target::V2(endpoint) => endpoint?,
        Target::Api(endpoint) => {
            return Ok(api(state, caller, endpoint, req)
                .await
                .unwrap_or_else(apis::status::StatusError::into_response))
        }
    };
    if let Endpoint::Console { asset, head } = endpoint {
        return Ok(console::serve(asset, head));
    }
    if matches!(endpoint, Endpoint::Healthz | Endpoint::Readyz) {
        return health(state, &endpoint).await;
    }
    let caller = match caller {
        Ok(c) => c,
        Err(auth::Refused::Throttled(secs)) => return Ok(auth::v2_throttled(secs)),
        Err(auth::Refused::Invalid(why)) => {
            let scope = auth::v2_repository(&endpoint)
                .map(|repo| auth::v2_scope(repo, &auth::v2_actions(&endpoint, |_| true)));
            return Ok(auth::v2_challenge(&state.auth, &realm, scope, why, false));
        }
    };
    let credentials_sent = req.headers().contains_key(http::header::AUTHORIZATION);
    if let Some(refusal) = denied_v2(state, &caller, &endpoint, &realm, credentials_sent) {
        return Ok(refusal);
    }
    distribution::handle(state, endpoint, req, &caller).await
}

/// The image.openshift.io API (and the core resources berth serves).
async fn api(
    state: &State,
    caller: Result<auth::Caller, auth::Refused>,
    endpoint: Result<apis::path::ApiEndpoint, apis::status::StatusError>,
    req: http::Request<ReqBody>,
) -> Result<Response, apis::status::StatusError> {
    let caller = match caller {
        // Registry tokens carry repository scopes only; the API takes access tokens.
        Ok(auth::Caller::User(id)) if id.scope.is_some() => {
            let why = "registry tokens are not accepted here: use an access token";
            return Err(apis::status::StatusError::unauthorized(Some(why)));
        }
        Ok(c) => c,
        Err(refused) => return Err(refused.status()),
    };
    let endpoint = endpoint?;
    if let Some(e) = denied_api(state, &caller, &endpoint) {
        return Err(e);
    }
    imagestream::handle(
        &state.api,
        endpoint,
        req,
        &state.public_host,
        &caller,
        &state.auth,
    )
    .await
}

/// `/healthz` (the process answers) and `/readyz` (the stores answer): no credentials needed.
async fn health(state: &State, endpoint: &Endpoint) -> Result<Response, ApiError> {
    if *endpoint == Endpoint::Readyz {
        // Ready means the metadata store (sled or etcd) and the blob store (files or S3)
        // answer, and writes would not be refused for space. A failure is logged with its cause.
        state.registry.check_store().map_err(ApiError::from)?;
        state.registry.check_blobs().await.map_err(ApiError::from)?;
        if let Some(why) = state.registry.write_trouble() {
            return Ok(response::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"status": "not ready", "reason": why}),
            ));
        }
        return Ok(response::json(
            StatusCode::OK,
            &serde_json::json!({"status": "ready"}),
        ));
    }
    Ok(response::json(
        StatusCode::OK,
        &serde_json::json!({"status": "ok"}),
    ))
}

/// The refusal for a registry request the caller may not make: a challenge for anonymous
/// callers and for tokens whose scope is too narrow (so clients fetch a wider one), DENIED for
/// users who lack the role.
fn denied_v2(
    state: &State,
    caller: &auth::Caller,
    endpoint: &Endpoint,
    realm: &str,
    credentials_sent: bool,
) -> Option<Response> {
    let streams = &state.api.streams;
    let actions = auth::v2_actions(endpoint, |repo| {
        streams
            .exists(repo.namespace().as_str(), repo.stream().as_str())
            .unwrap_or(false)
    });
    let repo = auth::v2_repository(endpoint);
    let scoped = matches!(caller, auth::Caller::User(id) if id.scope.is_some());
    if matches!(endpoint, Endpoint::ApiVersion | Endpoint::Catalog { .. }) {
        let catalog = matches!(endpoint, Endpoint::Catalog { .. });
        let refused = matches!(caller, auth::Caller::Anonymous)
            || (catalog
                && scoped
                && !caller.may(&state.auth, &crate::auth::Action::ReadAll, None)
                && !has_catalog_scope(caller));
        return refused.then(|| {
            let scope = catalog.then(|| "registry:catalog:*".to_string());
            auth::v2_challenge(
                &state.auth,
                realm,
                scope,
                "authentication required",
                credentials_sent,
            )
        });
    }
    let repo_name = repo.map(|r| r.to_string());
    for action in &actions {
        if caller.may(&state.auth, action, repo_name.as_deref()) {
            continue;
        }
        let may_unscoped = match caller {
            auth::Caller::User(id) => crate::auth::allowed(id, action),
            _ => false,
        };
        let scope = repo.map(|r| auth::v2_scope(r, &actions));
        if matches!(caller, auth::Caller::Anonymous) || (scoped && may_unscoped) {
            return Some(auth::v2_challenge(
                &state.auth,
                realm,
                scope,
                "authentication required",
                credentials_sent,
            ));
        }
        return Some(auth::v2_denied(scope));
    }
    None
}

fn has_catalog_scope(caller: &auth::Caller) -> bool {
    matches!(caller, auth::Caller::User(id) if id.scope.as_ref().is_some_and(|s| s.iter().any(|a| a.kind == "registry" && a.name == "catalog")))
}

fn denied_api(
    state: &State,
    caller: &auth::Caller,
    endpoint: &apis::path::ApiEndpoint,
) -> Option<apis::status::StatusError> {
    if matches!(caller, auth::Caller::Anonymous) && auth::api_needs_identity(endpoint) {
        return Some(apis::status::StatusError::unauthorized(None));
    }
    for action in auth::api_actions(endpoint) {
        if caller.may(&state.auth, &action, None) {
            continue;
        }
        if matches!(caller, auth::Caller::Anonymous) {
            return Some(apis::status::StatusError::unauthorized(None));
        }
        return Some(auth::api_forbidden(caller, endpoint, &action));
    }
    None
}
