//! Handlers of the OCI distribution API (`/v2/...`).

use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderMap, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;

use berth_storage::{ByteStream, Digest, UploadId};

use super::auth::Caller;
use super::endpoint::{Endpoint, UploadStart};
use super::error::{ApiError, Code};
use super::min_rate::Tripwire;
use super::range::{self, RangeRequest};
use super::response::{self as resp, Response};
use super::{ReqBody, State};
use crate::auth::Action;
use crate::importer::pullthrough::Fetch;
use crate::registry::{self, manifest, Page, RepositoryName};
use crate::server::RemoteAddr;

const API_VERSION: &str = "registry/2.0";

pub async fn handle(
    state: &State,
    endpoint: Endpoint,
    req: http::Request<ReqBody>,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let reg = &state.registry;
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let tripwire = parts.extensions.get::<Tripwire>();
    match endpoint {
        Endpoint::ApiVersion => {
            let mut r = resp::json(StatusCode::OK, &serde_json::json!({}));
            resp::set(&mut r, "docker-distribution-api-version", API_VERSION);
            Ok(r)
        }
        Endpoint::Catalog { n, last } => {
            // Only the repositories of namespaces the caller may pull from.
            let page = reg.list_repositories_where(n, last.as_deref(), |repo| {
                let ns = repo.split('/').next().unwrap_or_default();
                caller.may_ignoring_scope(&state.auth, &Action::View(ns.to_string()))
                    || caller.may_ignoring_scope(&state.auth, &Action::ReadAll)
            })?;
            let mut r = resp::json(
                StatusCode::OK,
                &serde_json::json!({ "repositories": page.items }),
            );
            link_next(
                &mut r,
                "/v2/_catalog",
                &page,
                n.unwrap_or(reg.limits().max_page)
                    .min(reg.limits().max_page),
            );
            Ok(r)
        }
        Endpoint::GetBlob { repo, digest, head } => {
            get_blob(state, &repo, &digest, head, headers).await
        }
        Endpoint::DeleteBlob { repo, digest } => {
            reg.delete_blob(&repo, &digest).await?;
            Ok(resp::status(StatusCode::ACCEPTED))
        }
        Endpoint::StartUpload { repo, start } => {
            let owner = upload_owner(caller, parts.extensions.get::<RemoteAddr>());
            match start {
                UploadStart::Session { algorithm } => {
                    let id = reg.start_upload(&repo, algorithm, Some(&owner)).await?;
                    Ok(upload_accepted(&repo, &id, 0))
                }
                UploadStart::Monolithic { digest } => {
                    let id = reg
                        .start_upload(&repo, digest.algorithm(), Some(&owner))
                        .await?;
                    // The client never learns this session's id: nobody could resume it.
                    let size = match reg
                        .append_upload(&repo, &id, None, upload_stream(body, tripwire))
                        .await
                    {
                        Ok(size) => size,
                        Err(e) => {
                            reg.abandon_upload(&repo, &id).await;
                            return Err(e.into());
                        }
                    };
                    too_slow(tripwire, &repo, &id, size)?;
                    if let Err(e) = reg.finish_upload(&repo, &id, &digest).await {
                        reg.abandon_upload(&repo, &id).await;
                        return Err(e.into());
                    }
                    Ok(blob_created(&repo, &digest))
                }
                UploadStart::Mount { digest, from } => {
                    // Mounting reads the source: without that right it is an ordinary upload.
                    let from = from.filter(|f| {
                        caller.may(
                            &state.auth,
                            &Action::View(f.namespace().as_str().to_string()),
                            Some(f.as_str()),
                        )
                    });
                    if let Some(from) = from {
                        if reg.mount_blob(&repo, &digest, &from).await? {
                            return Ok(blob_created(&repo, &digest));
                        }
                    }
                    let id = reg
                        .start_upload(&repo, digest.algorithm(), Some(&owner))
                        .await?;
                    Ok(upload_accepted(&repo, &id, 0))
                }
            }
        }
        Endpoint::UploadStatus { repo, id } => {
            let size = reg.upload_status(&repo, &id).await?;
            let mut r = upload_accepted(&repo, &id, size);
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
        Endpoint::PatchUpload { repo, id } => {
            let offset = chunk_offset(headers)?;
            let size = reg
                .append_upload(&repo, &id, offset, upload_stream(body, tripwire))
                .await?;
            too_slow(tripwire, &repo, &id, size)?;
            Ok(upload_accepted(&repo, &id, size))
        }
        Endpoint::FinishUpload { repo, id, digest } => {
            let offset = chunk_offset(headers)?;
            if !body.is_end_stream() {
                let size = reg
                    .append_upload(&repo, &id, offset, upload_stream(body, tripwire))
                    .await?;
                too_slow(tripwire, &repo, &id, size)?;
            }
            reg.finish_upload(&repo, &id, &digest).await?;
            Ok(blob_created(&repo, &digest))
        }
        Endpoint::CancelUpload { repo, id } => {
            reg.cancel_upload(&repo, &id).await?;
            Ok(resp::status(StatusCode::NO_CONTENT))
        }
        Endpoint::GetManifest {
            repo,
            reference,
            head,
        } => {
            let m = reg.get_manifest(&repo, &reference).await?;
            let len = m.content.len();
            let mut r = if head {
                resp::status(StatusCode::OK)
            } else {
                http::Response::new(resp::full(m.content))
            };
            resp::set(&mut r, header::CONTENT_TYPE, &m.media_type);
            resp::set(&mut r, header::CONTENT_LENGTH, &len.to_string());
            resp::set(&mut r, "docker-content-digest", &m.digest.to_string());
            Ok(r)
        }
        Endpoint::PutManifest {
            repo,
            reference,
            tags,
        } => {
            let bytes = read_manifest_body(body, reg.limits().max_manifest_bytes).await?;
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let pushed = reg
                .put_manifest(&repo, &reference, content_type, bytes, &tags)
                .await?;
            let mut r = resp::status(StatusCode::CREATED);
            resp::set(
                &mut r,
                header::LOCATION,
                &format!("/v2/{repo}/manifests/{}", pushed.digest),
            );
            resp::set(&mut r, "docker-content-digest", &pushed.digest.to_string());
            resp::set(&mut r, header::CONTENT_LENGTH, "0");
            if let Some(subject) = &pushed.subject {
                resp::set(&mut r, "oci-subject", &subject.to_string());
            }
            for tag in &tags {
                resp::append(&mut r, "oci-tag", tag.as_str());
            }
            Ok(r)
        }
        Endpoint::DeleteManifest { repo, reference } => {
            reg.delete_manifest(&repo, &reference).await?;
            Ok(resp::status(StatusCode::ACCEPTED))
        }
        Endpoint::ListTags { repo, n, last } => {
            let page = reg.list_tags(&repo, n, last.as_deref())?;
            let mut r = resp::json(
                StatusCode::OK,
                &serde_json::json!({ "name": repo.as_str(), "tags": page.items }),
            );
            link_next(
                &mut r,
                &format!("/v2/{repo}/tags/list"),
                &page,
                n.unwrap_or(reg.limits().max_page)
                    .min(reg.limits().max_page),
            );
            Ok(r)
        }
        Endpoint::Referrers {
            repo,
            subject,
            artifact_type,
        } => {
            let referrers = reg.referrers(&repo, &subject, artifact_type.as_deref())?;
            let manifests: Vec<_> = referrers
                .into_iter()
                .map(|r| {
                    let mut d = serde_json::json!({
                        "mediaType": r.record.media_type,
                        "digest": r.digest.to_string(),
                        "size": r.record.size,
                    });
                    if let Some(t) = r.record.artifact_type {
                        d["artifactType"] = t.into();
                    }
                    if !r.record.annotations.is_empty() {
                        d["annotations"] = serde_json::json!(r.record.annotations);
                    }
                    d
                })
                .collect();
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest::oci_index(),
                "manifests": manifests,
            });
            let body = serde_json::to_vec(&index).map_err(|_| ApiError::internal())?;
            let mut r = resp::with_content_type(StatusCode::OK, &manifest::oci_index(), body);
            if artifact_type.is_some() {
                resp::set(&mut r, "oci-filters-applied", "artifactType");
            }
            Ok(r)
        }
        Endpoint::Healthz | Endpoint::Readyz | Endpoint::Console { .. } => {
            Err(ApiError::internal())
        }
    }
}

async fn get_blob(
    state: &State,
    repo: &RepositoryName,
    digest: &Digest,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let reg = &state.registry;
    let requested = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let size = match reg.blob_size(repo, digest).await {
        Err(registry::Error::BlobUnknown) => {
            // An imported image's blob: fetch it from the source. A plain GET streams it as
            // it arrives; HEAD and ranges are answered once it is stored.
            let streaming = !head && requested.is_none();
            match state.pull_through.fetch(repo, digest, streaming).await? {
                None => return Err(registry::Error::BlobUnknown.into()),
                Some(Fetch::Stored) => reg.blob_size(repo, digest).await?,
                Some(Fetch::Streaming { length, stream }) => {
                    let mut r = http::Response::new(resp::stream(stream));
                    if let Some(length) = length {
                        resp::set(&mut r, header::CONTENT_LENGTH, &length.to_string());
                    }
                    resp::set(&mut r, header::CONTENT_TYPE, "application/octet-stream");
                    resp::set(&mut r, "docker-content-digest", &digest.to_string());
                    return Ok(r);
                }
            }
        }
        other => other?,
    };
    if !head {
        // Object storage serves the bytes itself when configured to (presigned, short-lived).
        if let Some(url) = reg.blob_redirect(digest).await? {
            let mut r = resp::status(StatusCode::TEMPORARY_REDIRECT);
            resp::set(&mut r, header::LOCATION, &url);
            resp::set(&mut r, "docker-content-digest", &digest.to_string());
            return Ok(r);
        }
    }
    let wanted = if head {
        RangeRequest::Full
    } else {
        range::parse(requested, size)
    };
    let mut r = match wanted {
        RangeRequest::Unsatisfiable => {
            let mut r = resp::status(StatusCode::RANGE_NOT_SATISFIABLE);
            resp::set(&mut r, header::CONTENT_RANGE, &format!("bytes */{size}"));
            return Ok(r);
        }
        RangeRequest::Full if head => resp::status(StatusCode::OK),
        RangeRequest::Full => {
            let stream = reg.read_blob(repo, digest, None).await?;
            http::Response::new(resp::stream(stream))
        }
        RangeRequest::Partial(range) => {
            let stream = reg.read_blob(repo, digest, Some(range.clone())).await?;
            let mut r = http::Response::new(resp::stream(stream));
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            resp::set(
                &mut r,
                header::CONTENT_RANGE,
                &format!("bytes {}-{}/{size}", range.start, range.end - 1),
            );
            resp::set(
                &mut r,
                header::CONTENT_LENGTH,
                &(range.end - range.start).to_string(),
            );
            r
        }
    };
    if r.status() == StatusCode::OK {
        resp::set(&mut r, header::CONTENT_LENGTH, &size.to_string());
    }
    resp::set(&mut r, header::CONTENT_TYPE, "application/octet-stream");
    resp::set(&mut r, header::ACCEPT_RANGES, "bytes");
    resp::set(&mut r, "docker-content-digest", &digest.to_string());
    Ok(r)
}

/// How much of an oversized manifest body is read and thrown away so the client, which writes
/// the whole body before reading the answer, actually sees the 413 instead of a reset.
const OVERSIZE_DRAIN_LIMIT: usize = 64 * 1024 * 1024;

async fn read_manifest_body(body: ReqBody, max: usize) -> Result<bytes::Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.try_next().await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            let mut err = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                Code::ManifestInvalid,
                e.to_string(),
            );
            err.headers.push(("connection", "close".into()));
            return err;
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::ManifestInvalid,
            format!("reading the manifest body failed: {e}"),
        )
    })? {
        seen += chunk.len();
        if seen <= max {
            buf.extend_from_slice(&chunk);
        } else if seen > OVERSIZE_DRAIN_LIMIT {
            break;
        }
    }
    if seen > max {
        let mut err = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::SizeInvalid,
            format!("manifest is larger than the limit of {max} bytes"),
        );
        err.headers.push(("connection", "close".into()));
        return Err(err);
    }
    Ok(buf.freeze())
}

/// Whom an upload session counts against: the user, or without authentication the client's
/// address.
fn upload_owner(caller: &Caller, peer: Option<&RemoteAddr>) -> String {
    match caller {
        Caller::User(id) => format!("user {}", id.user),
        Caller::Open | Caller::Anonymous => match peer {
            Some(RemoteAddr(addr)) => format!("client {}", addr.ip()),
            None => "client (unknown address)".to_string(),
        },
    }
}

/// An upload's body. When it is cut off for arriving too slowly it simply ends, so the store
/// keeps what did arrive and the session can resume from there ([`too_slow`] then answers).
fn upload_stream(body: ReqBody, tripwire: Option<&Tripwire>) -> ByteStream {
    let tripwire = tripwire.cloned();
    Box::pin(
        body.into_data_stream()
            .take_while(move |chunk| {
                let cut_off = chunk.is_err() && tripwire.as_ref().is_some_and(Tripwire::tripped);
                futures_util::future::ready(!cut_off)
            })
            .map_err(std::io::Error::other),
    )
}

/// 408 when the upload's body was cut off for arriving too slowly, telling the client where to
/// resume (the headers of an upload status).
fn too_slow(
    tripwire: Option<&Tripwire>,
    repo: &RepositoryName,
    id: &UploadId,
    size: u64,
) -> Result<(), ApiError> {
    let Some(tripwire) = tripwire.filter(|t| t.tripped()) else {
        return Ok(());
    };
    let message = tripwire.rate().message(&format!(
        "the upload holds {size} bytes; resume from there (GET {} reports it)",
        upload_location(repo, id)
    ));
    let mut err = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        Code::BlobUploadInvalid,
        message,
    );
    err.headers.extend([
        ("location", upload_location(repo, id)),
        ("range", resp::upload_range(size)),
        ("docker-upload-uuid", id.as_str().to_string()),
        // The rest of the body may still be on its way; the connection cannot be reused.
        ("connection", "close".to_string()),
    ]);
    Err(err)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The start offset a chunk claims with `Content-Range: <first>-<last>` (inclusive), checked
/// against its Content-Length; `None` for a streamed chunk without the header.
pub fn chunk_offset(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let invalid = |why: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::BlobUploadInvalid,
            format!("Content-Range must be <first>-<last>: {why}"),
        )
    };
    let text = value.to_str().map_err(|_| invalid("not text"))?.trim();
    // Some clients add a unit although the spec has none.
    let text = text
        .strip_prefix("bytes=")
        .or_else(|| text.strip_prefix("bytes "))
        .unwrap_or(text);
    let (first, last) = text.split_once('-').ok_or_else(|| invalid("no '-'"))?;
    let first: u64 = first.parse().map_err(|_| invalid("bad first byte"))?;
    let last: u64 = last.parse().map_err(|_| invalid("bad last byte"))?;
    if last < first {
        return Err(invalid("last byte before first"));
    }
    // 0-18446744073709551615 spans one byte more than a u64 counts.
    let span = (last - first)
        .checked_add(1)
        .ok_or_else(|| invalid("range too long"))?;
    if let Some(len) = content_length(headers) {
        if len != span {
            return Err(invalid("range length differs from Content-Length"));
        }
    }
    Ok(Some(first))
}

fn upload_location(repo: &RepositoryName, id: &UploadId) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn upload_accepted(repo: &RepositoryName, id: &UploadId, size: u64) -> Response {
    let mut r = resp::status(StatusCode::ACCEPTED);
    resp::set(&mut r, header::LOCATION, &upload_location(repo, id));
    resp::set(&mut r, header::RANGE, &resp::upload_range(size));
    resp::set(&mut r, "docker-upload-uuid", id.as_str());
    resp::set(&mut r, header::CONTENT_LENGTH, "0");
    r
}

fn blob_created(repo: &RepositoryName, digest: &Digest) -> Response {
    let mut r = resp::status(StatusCode::CREATED);
    resp::set(
        &mut r,
        header::LOCATION,
        &format!("/v2/{repo}/blobs/{digest}"),
    );
    resp::set(&mut r, "docker-content-digest", &digest.to_string());
    resp::set(&mut r, header::CONTENT_LENGTH, "0");
    r
}

/// `Link: <path?n=N&last=L>; rel="next"` when a listing has more entries.
fn link_next(r: &mut Response, path: &str, page: &Page, n: usize) {
    if let (true, Some(last)) = (page.more, page.items.last()) {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("n", &n.to_string())
            .append_pair("last", last)
            .finish();
        resp::set(r, header::LINK, &format!("<{path}?{query}>; rel=\"next\""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(range: &str, length: Option<&str>) -> Result<Option<u64>, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, range.parse().unwrap());
        if let Some(l) = length {
            h.insert(header::CONTENT_LENGTH, l.parse().unwrap());
        }
        chunk_offset(&h)
    }

    #[test]
    fn content_range_is_checked_against_content_length() {
        assert_eq!(offset("0-9", Some("10")).unwrap(), Some(0));
        assert_eq!(offset("bytes=10-19", None).unwrap(), Some(10));
        assert!(offset("10-19", Some("9")).is_err());
        assert!(offset("19-10", None).is_err());
        assert!(offset("a-b", None).is_err());
        // Found by the fuzzer: a span of 2^64 bytes overflowed (and in release builds
        // matched a Content-Length of 0).
        let whole = format!("0-{}", u64::MAX);
        assert!(offset(&whole, Some("0")).is_err());
        assert!(offset(&whole, None).is_err());
    }
}
