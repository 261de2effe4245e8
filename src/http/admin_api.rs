//! `/admin/v1/...`: storage administration, for `image-pruner` and cluster-admin callers.
//!
//! - `GET /admin/v1/gc`: garbage collection's status (totals, pending candidates, last runs).
//! - `POST /admin/v1/gc` `{"full": bool, "dryRun": bool}`: a pass now; `full` rebuilds the
//!   reference counts and sweeps orphan files too.
//! - `POST /admin/v1/prune/images` `{"keepTagRevisions", "keepYoungerThan", "all", "namespace",
//!   "confirm"}`: `oc adm prune images`, a dry run unless `confirm`.
//! - `GET /admin/v1/retention`: the policies (from the config and stored);
//!   `PUT|DELETE /admin/v1/retention/{name}`: store or remove one;
//!   `POST /admin/v1/retention/run`: apply them all now.
//!
//! Errors are Kubernetes `Status` objects, as on `/apis`.

use std::time::Duration;

use http::{Method, StatusCode};
use serde::Deserialize;

use super::apis::status::StatusError;
use super::auth::{Caller, Refused};
use super::auth_api::{json_body, read_body, require};
use super::response::{self as resp, Response};
use super::{ReqBody, State};
use crate::auth::Action;
use crate::imagestream::prune::PruneOptions;
use crate::imagestream::retention::{self, RetentionPolicy};
use crate::imagestream::service::ImageStreams;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GcRequest {
    #[serde(default)]
    full: bool,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PruneRequest {
    #[serde(default = "default_revisions")]
    keep_tag_revisions: usize,
    /// A duration as oc takes it (`60m`, `1h30m`, `0s`).
    #[serde(default = "default_younger")]
    keep_younger_than: String,
    #[serde(default = "yes")]
    all: bool,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    confirm: bool,
}

fn default_revisions() -> usize {
    3
}
fn default_younger() -> String {
    "60m".into()
}
fn yes() -> bool {
    true
}

pub async fn handle(
    state: &State,
    caller: Result<Caller, Refused>,
    req: http::Request<ReqBody>,
) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let result = match caller {
        Ok(Caller::User(id)) if id.scope.is_some() => Err(StatusError::unauthorized(Some(
            "registry tokens are not accepted here: use a password or an access token",
        ))),
        Ok(Caller::Anonymous) => Err(StatusError::unauthorized(None)),
        Ok(caller) => serve(state, &caller, &method, &path, req.into_body()).await,
        Err(refused) => Err(refused.status()),
    };
    result.unwrap_or_else(StatusError::into_response)
}

async fn serve(
    state: &State,
    caller: &Caller,
    method: &Method,
    path: &str,
    body: ReqBody,
) -> Result<Response, StatusError> {
    match (method, path) {
        (&Method::GET, "/admin/v1/gc") => {
            require(
                state,
                caller,
                Action::DeleteImages,
                "read garbage collection status",
            )?;
            let status = state.gc.status().map_err(storage)?;
            Ok(resp::json(StatusCode::OK, &to_json(&status)))
        }
        (&Method::POST, "/admin/v1/gc") => {
            require(
                state,
                caller,
                Action::DeleteImages,
                "run garbage collection",
            )?;
            let bytes = read_body(body).await?;
            let ask: GcRequest = if bytes.is_empty() {
                GcRequest::default()
            } else {
                json_body(&bytes)?
            };
            if ask.dry_run && !ask.full {
                return Err(StatusError::bad_request("a dry run needs \"full\": true"));
            }
            let report = if ask.full {
                state.gc.full(ask.dry_run).await
            } else {
                state.gc.collect().await
            }
            .map_err(storage)?;
            Ok(resp::json(StatusCode::OK, &to_json(&report)))
        }
        (&Method::POST, "/admin/v1/prune/images") => {
            require(state, caller, Action::DeleteImages, "prune images")?;
            let ask: PruneRequest = json_body(&read_body(body).await?)?;
            let keep_younger_than = parse_duration(&ask.keep_younger_than)?;
            let opts = PruneOptions {
                keep_tag_revisions: ask.keep_tag_revisions,
                keep_younger_than,
                all: ask.all,
                namespace: ask.namespace.filter(|n| !n.is_empty()),
                confirm: ask.confirm,
                tag_rules: None,
            };
            let report = ImageStreams::new(state.registry.clone())
                .prune_images(&opts)
                .await?;
            Ok(resp::json(StatusCode::OK, &to_json(&report)))
        }
        (&Method::GET, "/admin/v1/retention") => {
            require(
                state,
                caller,
                Action::DeleteImages,
                "read retention policies",
            )?;
            let stored = retention::stored(state.registry.metadata().as_ref())?;
            let items: Vec<serde_json::Value> = state
                .retention
                .iter()
                .map(|p| (p, "config"))
                .chain(stored.iter().map(|p| (p, "api")))
                .map(|(p, source)| {
                    let mut v = to_json(p);
                    v["source"] = source.into();
                    v
                })
                .collect();
            Ok(resp::json(
                StatusCode::OK,
                &serde_json::json!({ "items": items }),
            ))
        }
        (&Method::POST, "/admin/v1/retention/run") => {
            require(
                state,
                caller,
                Action::DeleteImages,
                "apply retention policies",
            )?;
            let reports = ImageStreams::new(state.registry.clone())
                .apply_retention(&state.retention)
                .await?;
            let items: Vec<serde_json::Value> = reports
                .iter()
                .map(|(name, r)| {
                    let mut v = to_json(r);
                    v["policy"] = name.clone().into();
                    v
                })
                .collect();
            Ok(resp::json(
                StatusCode::OK,
                &serde_json::json!({ "items": items }),
            ))
        }
        (method, path) if path.starts_with("/admin/v1/retention/") => {
            let name = &path["/admin/v1/retention/".len()..];
            require(
                state,
                caller,
                Action::DeleteImages,
                "manage retention policies",
            )?;
            if state.retention.iter().any(|p| p.name == name) {
                return Err(StatusError::bad_request(format!(
                    "retention policy {name:?} comes from the server config; change it there"
                )));
            }
            let streams = ImageStreams::new(state.registry.clone());
            match *method {
                Method::PUT => {
                    let policy: RetentionPolicy = json_body(&read_body(body).await?)?;
                    if policy.name != name {
                        return Err(StatusError::bad_request(format!(
                            "the body names policy {:?}, the path {name:?}",
                            policy.name
                        )));
                    }
                    streams.put_retention(policy.clone()).await?;
                    Ok(resp::json(StatusCode::OK, &to_json(&policy)))
                }
                Method::DELETE => {
                    if !streams.delete_retention(name).await? {
                        return Err(StatusError::new(
                            StatusCode::NOT_FOUND,
                            super::apis::status::Reason::NotFound,
                            format!("retention policy {name:?} not found"),
                        ));
                    }
                    Ok(resp::json(
                        StatusCode::OK,
                        &serde_json::json!({"status": "Success"}),
                    ))
                }
                _ => Err(StatusError::path_not_found()),
            }
        }
        _ => Err(StatusError::path_not_found()),
    }
}

/// Go's duration syntax as oc accepts it (`60m`, `1h30m`, `90s`, `0`).
fn parse_duration(s: &str) -> Result<Duration, StatusError> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| {
        StatusError::bad_request(format!("keepYoungerThan {s:?} is not a duration: {e}"))
    })
}

fn storage(e: crate::registry::Error) -> StatusError {
    tracing::error!(error = %e, "garbage collection failed");
    StatusError::internal("internal error")
}

fn to_json(v: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
