//! The only module that knows HTTP: request parsing, wire formats, status codes.
//!
//! [`handle`] is the whole application as an async function from request to response; the
//! server in `crate::server` feeds it connections, and tests can call it directly.

pub mod apis;
pub mod distribution;
pub mod endpoint;
pub mod error;
pub mod imagestream;
pub mod query;
pub mod range;
pub mod response;

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
}

/// Serves one request and logs it (method, path, status, bytes, duration).
pub async fn handle(state: &State, req: http::Request<ReqBody>) -> Response {
    let started = Instant::now();
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
    if apis::path::is_api_path(req.uri().path()) {
        let endpoint = apis::path::parse(req.method(), req.uri().path(), req.uri().query());
        let result = match endpoint {
            Ok(endpoint) => {
                imagestream::handle(&state.api, endpoint, req, &state.public_host).await
            }
            Err(e) => Err(e),
        };
        return Ok(result.unwrap_or_else(apis::status::StatusError::into_response));
    }
    let endpoint = endpoint::parse(req.method(), req.uri().path(), req.uri().query())?;
    match endpoint {
        Endpoint::Healthz => Ok(response::json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok"}),
        )),
        Endpoint::Readyz => {
            // Ready means the metadata store answers.
            state.registry.check_store().map_err(ApiError::from)?;
            Ok(response::json(
                StatusCode::OK,
                &serde_json::json!({"status": "ready"}),
            ))
        }
        other => distribution::handle(state, other, req).await,
    }
}
