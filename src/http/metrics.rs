//! `GET /metrics`: the Prometheus exposition, for the configured bearer token only, or for
//! loopback clients when no token is configured. Route labels carry no names, but request
//! rates and sizes are still nobody else's business.

use http::{header, Method, StatusCode};
use sha2::{Digest as _, Sha256};

use super::response::{self as resp, Response};
use super::{ReqBody, State};
use crate::metrics::Sizes;

pub async fn handle(state: &State, req: http::Request<ReqBody>) -> Response {
    let (parts, _) = req.into_parts();
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        resp::set(&mut r, header::ALLOW, "GET, HEAD");
        return r;
    }
    if let Some(refusal) = refused(state.metrics_token.as_deref(), &parts) {
        return refusal;
    }
    let registry = state.registry.clone();
    let gc = state.gc.clone();
    let sizes = tokio::task::spawn_blocking(move || Sizes {
        gc: gc
            .status()
            .map(|s| crate::metrics::GcSizes {
                pending: s.pending,
                blobs_deleted: s.totals.blobs_deleted,
                bytes_deleted: s.totals.bytes_deleted,
                manifests_deleted: s.totals.manifests_deleted,
                orphans_deleted: s.totals.orphans_deleted,
                last_run: s.totals.last_run,
            })
            .map_err(|e| tracing::warn!(error = %e, "reading garbage collection status failed"))
            .ok(),
        open_uploads: registry
            .count_uploads()
            .map_err(|e| tracing::warn!(error = %e, "counting upload sessions failed"))
            .ok(),
        metadata_disk_bytes: registry.metadata().size_on_disk().ok().flatten(),
        blob_bytes: registry.blob_bytes(),
        data_dir_free_bytes: registry.free_bytes(),
    })
    .await
    .unwrap_or_default();
    let (content_type, body) = state.metrics.render(sizes);
    let mut r = resp::with_content_type(StatusCode::OK, &content_type, body);
    resp::set(&mut r, header::CACHE_CONTROL, "no-store");
    if parts.method == Method::HEAD {
        *r.body_mut() = resp::empty();
    }
    r
}

/// Why the request may not scrape: 401 without the token, 403 with a wrong one or, when no
/// token is configured, from anywhere but loopback.
fn refused(token: Option<&str>, req: &http::request::Parts) -> Option<Response> {
    let Some(token) = token else {
        let loopback = req
            .extensions
            .get::<crate::server::RemoteAddr>()
            .is_some_and(|a| a.0.ip().is_loopback());
        return (!loopback).then(|| {
            text(
                StatusCode::FORBIDDEN,
                "metrics are served to loopback clients only; set metrics_token to scrape from \
                 elsewhere\n",
            )
        });
    };
    let sent = req
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match sent {
        None => {
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "metrics need the bearer token configured as metrics_token\n",
            );
            resp::set(
                &mut r,
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"berth-metrics\"",
            );
            Some(r)
        }
        // Hashes compared, so the time taken says nothing about how much of the token matched.
        Some(sent) if Sha256::digest(sent) == Sha256::digest(token) => None,
        Some(_) => Some(text(
            StatusCode::FORBIDDEN,
            "the bearer token is not the metrics token\n",
        )),
    }
}

fn text(status: StatusCode, message: &str) -> Response {
    resp::with_content_type(
        status,
        "text/plain; charset=utf-8",
        message.as_bytes().to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::RemoteAddr;

    fn parts(peer: &str, authorization: Option<&str>) -> http::request::Parts {
        let mut req = http::Request::get("/metrics");
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        parts.extensions.insert(RemoteAddr(peer.parse().unwrap()));
        parts
    }

    fn status(token: Option<&str>, peer: &str, authorization: Option<&str>) -> u16 {
        refused(token, &parts(peer, authorization)).map_or(200, |r| r.status().as_u16())
    }

    /// Other hosts cannot be reached from the tests' loopback-only network, so the rule is
    /// checked here; the integration tests scrape over real HTTP.
    #[test]
    fn loopback_only_without_a_token_and_the_token_from_anywhere_with_one() {
        assert_eq!(status(None, "127.0.0.1:5000", None), 200);
        assert_eq!(status(None, "[::1]:5000", None), 200);
        assert_eq!(status(None, "192.0.2.7:5000", None), 403);
        assert_eq!(status(None, "192.0.2.7:5000", Some("Bearer x")), 403);
        let token = Some("s3cret");
        assert_eq!(status(token, "192.0.2.7:5000", Some("Bearer s3cret")), 200);
        assert_eq!(status(token, "192.0.2.7:5000", Some("bearer  s3cret")), 200);
        assert_eq!(status(token, "127.0.0.1:5000", None), 401);
        assert_eq!(status(token, "127.0.0.1:5000", Some("Basic czNjcmV0")), 401);
        assert_eq!(status(token, "192.0.2.7:5000", Some("Bearer s3cre")), 403);
    }
}
