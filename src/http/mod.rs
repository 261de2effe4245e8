//! The only module that knows HTTP: request parsing, wire formats, status codes.
//!
//! [`handle`] is the whole application as an async function from request to response; the
//! server in `crate::server` feeds it connections, and tests can call it directly.

pub mod apis;
pub mod auth;
pub mod auth_api;
pub mod distribution;
pub mod endpoint;
pub mod error;
pub mod imagestream;
pub mod min_rate;
pub mod query;
pub mod range;
pub mod response;
pub mod stream_body;

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
    /// The image.openshift.io/v1 API and its watch hubs.
    pub api: imagestream::Api,
    /// Registry host written into references (`<host>/<ns>/<stream>@<digest>`).
    pub public_host: String,
    pub auth: auth::AuthSettings,
    /// Whether clients reach this server over HTTPS (for the token realm).
    pub https: bool,
    /// The slowest a request body may arrive (`None`: no floor).
    pub min_body_rate: Option<min_rate::MinRate>,
}

/// Serves one request and logs it (method, path, status, bytes, duration).
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
    let response = route(state, req)
        .await
        .unwrap_or_else(ApiError::into_response);
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
    response
}

async fn route(state: &State, req: http::Request<ReqBody>) -> Result<Response, ApiError> {
    let path = req.uri().path().to_string();
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
    if path.starts_with("/auth/") {
        return Ok(auth_api::handle(state, caller, req, source).await);
    }
    if apis::path::is_api_path(&path) {
        let caller = match caller {
            // Registry tokens carry repository scopes only; the API takes access tokens.
            Ok(auth::Caller::User(id)) if id.scope.is_some() => {
                let why = "registry tokens are not accepted here: use an access token";
                return Ok(apis::status::StatusError::unauthorized(Some(why)).into_response());
            }
            Ok(c) => c,
            Err(refused) => return Ok(refused.status().into_response()),
        };
        let endpoint = apis::path::parse(req.method(), &path, req.uri().query());
        let result = match endpoint {
            Ok(endpoint) => match denied_api(state, &caller, &endpoint) {
                Some(e) => Err(e),
                None => {
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
            },
            Err(e) => Err(e),
        };
        return Ok(result.unwrap_or_else(apis::status::StatusError::into_response));
    }
    let endpoint = endpoint::parse(req.method(), &path, req.uri().query())?;
    if matches!(endpoint, Endpoint::Healthz | Endpoint::Readyz) {
        return health(state, &endpoint);
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

/// `/healthz` (the process answers) and `/readyz` (the store answers): no credentials needed.
fn health(state: &State, endpoint: &Endpoint) -> Result<Response, ApiError> {
    if *endpoint == Endpoint::Readyz {
        // Ready means the metadata store answers.
        state.registry.check_store().map_err(ApiError::from)?;
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
