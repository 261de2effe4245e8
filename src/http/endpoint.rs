//! `(method, path, query)` → [`Endpoint`]: every request is parsed into a typed endpoint with
//! validated names before any handler runs.
//!
//! Paths are matched from the right (`.../manifests/<ref>`, `.../blobs/<digest>`, ...) and the
//! rest must be exactly `<namespace>/<stream>`. Raw paths are never percent-decoded: no valid
//! name, tag, digest or upload id contains `%`, so an encoded path cannot smuggle anything past
//! a check, and a trailing slash is simply a different (unknown) path.

use berth_storage::{Algorithm, Digest, UploadId};
use http::Method;

use super::query::Query;
use crate::registry::{Reference, RepositoryName, Tag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Healthz,
    Readyz,
    /// `GET /`, `/console/` and the console's files (no credentials needed: they are static).
    Console {
        asset: super::console::Asset,
        head: bool,
    },
    /// `GET /v2/`
    ApiVersion,
    Catalog {
        n: Option<usize>,
        last: Option<String>,
    },
    GetBlob {
        repo: RepositoryName,
        digest: Digest,
        head: bool,
    },
    DeleteBlob {
        repo: RepositoryName,
        digest: Digest,
    },
    /// `POST .../blobs/uploads/` in all its forms.
    StartUpload {
        repo: RepositoryName,
        start: UploadStart,
    },
    UploadStatus {
        repo: RepositoryName,
        id: UploadId,
    },
    PatchUpload {
        repo: RepositoryName,
        id: UploadId,
    },
    FinishUpload {
        repo: RepositoryName,
        id: UploadId,
        digest: Digest,
    },
    CancelUpload {
        repo: RepositoryName,
        id: UploadId,
    },
    GetManifest {
        repo: RepositoryName,
        reference: Reference,
        head: bool,
    },
    PutManifest {
        repo: RepositoryName,
        reference: Reference,
        tags: Vec<Tag>,
    },
    DeleteManifest {
        repo: RepositoryName,
        reference: Reference,
    },
    ListTags {
        repo: RepositoryName,
        n: Option<usize>,
        last: Option<String>,
    },
    Referrers {
        repo: RepositoryName,
        subject: Digest,
        artifact_type: Option<String>,
    },
}

impl Endpoint {
    /// The endpoint's kind, for metrics: it names no repository, tag or digest.
    pub fn kind(&self) -> &'static str {
        match self {
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Console { .. } => "console",
            Endpoint::ApiVersion => "api_version",
            Endpoint::Catalog { .. } => "catalog",
            Endpoint::GetBlob { .. } => "get_blob",
            Endpoint::DeleteBlob { .. } => "delete_blob",
            Endpoint::StartUpload { .. } => "start_upload",
            Endpoint::UploadStatus { .. } => "upload_status",
            Endpoint::PatchUpload { .. } => "patch_upload",
            Endpoint::FinishUpload { .. } => "finish_upload",
            Endpoint::CancelUpload { .. } => "cancel_upload",
            Endpoint::GetManifest { .. } => "get_manifest",
            Endpoint::PutManifest { .. } => "put_manifest",
            Endpoint::DeleteManifest { .. } => "delete_manifest",
            Endpoint::ListTags { .. } => "list_tags",
            Endpoint::Referrers { .. } => "referrers",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStart {
    /// A session for later PATCH/PUT, hashing with `algorithm`.
    Session { algorithm: Algorithm },
    /// `?digest=`: the whole blob is in this request's body.
    Monolithic { digest: Digest },
    /// `?mount=&from=`: link a blob from another repository, or fall back to a session.
    Mount {
        digest: Digest,
        from: Option<RepositoryName>,
    },
}

/// Why a request matched no endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("{0}")]
    NameInvalid(String),
    #[error("{0}")]
    DigestInvalid(String),
    /// A tag that cannot exist was asked for: nothing is known under it.
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("upload session unknown")]
    UploadUnknown,
    #[error("{0}")]
    PaginationInvalid(String),
}

fn digest(s: &str) -> Result<Digest, ParseError> {
    s.parse()
        .map_err(|e| ParseError::DigestInvalid(format!("{s:?}: {e}")))
}

fn repo(s: &str) -> Result<RepositoryName, ParseError> {
    RepositoryName::parse(s).map_err(|e| ParseError::NameInvalid(e.to_string()))
}

/// `n` of a paged listing.
fn page_size(q: &Query) -> Result<Option<usize>, ParseError> {
    q.get("n")
        .map(|n| {
            n.parse::<usize>().map_err(|_| {
                ParseError::PaginationInvalid(format!(
                    "n must be a non-negative integer, got {n:?}"
                ))
            })
        })
        .transpose()
}

/// Parses one request line. `query` is the raw query string, if any.
pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Endpoint, ParseError> {
    let q = Query::parse(query);
    let is = |m: &Method| method == m;
    let get_or_head = is(&Method::GET) || is(&Method::HEAD);
    let only = |ok: bool, e: Endpoint| {
        if ok {
            Ok(e)
        } else {
            Err(ParseError::MethodNotAllowed)
        }
    };

    if super::console::is_console_path(path) {
        let asset = super::console::parse(method, path)?;
        return Ok(Endpoint::Console {
            asset,
            head: is(&Method::HEAD),
        });
    }
    match path {
        "/healthz" => return only(get_or_head, Endpoint::Healthz),
        "/readyz" => return only(get_or_head, Endpoint::Readyz),
        "/v2" | "/v2/" => return only(get_or_head, Endpoint::ApiVersion),
        "/v2/_catalog" => {
            return only(
                get_or_head,
                Endpoint::Catalog {
                    n: page_size(&q)?,
                    last: q.get("last").map(str::to_string),
                },
            )
        }
        _ => {}
    }
    let rest = path.strip_prefix("/v2/").ok_or(ParseError::NotFound)?;
    if rest.contains('%') {
        return Err(ParseError::NameInvalid(
            "percent-encoded characters are not allowed in registry paths".into(),
        ));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    // Match the route from the right; everything before it is the repository name.
    let tail_is = |tail: &[&str]| {
        segments.len() > tail.len()
            && segments[segments.len() - tail.len()..]
                .iter()
                .zip(tail)
                .all(|(s, t)| t.is_empty() && !s.is_empty() || s == t)
    };
    let name_before = |k: usize| segments[..segments.len() - k].join("/");
    let last = segments[segments.len() - 1];

    if tail_is(&["tags", "list"]) {
        let repo = repo(&name_before(2))?;
        return only(
            get_or_head,
            Endpoint::ListTags {
                repo,
                n: page_size(&q)?,
                last: q.get("last").map(str::to_string),
            },
        );
    }
    if segments.len() >= 4
        && segments[segments.len() - 3..segments.len() - 1] == ["blobs", "uploads"]
    {
        let repo = repo(&name_before(3))?;
        if last.is_empty() {
            return start_upload(method, repo, &q);
        }
        let id = UploadId::parse(last).ok_or(ParseError::UploadUnknown)?;
        return match *method {
            Method::GET => Ok(Endpoint::UploadStatus { repo, id }),
            Method::PATCH => Ok(Endpoint::PatchUpload { repo, id }),
            Method::PUT => {
                let d = q.get("digest").ok_or_else(|| {
                    ParseError::DigestInvalid("closing an upload needs ?digest=".into())
                })?;
                Ok(Endpoint::FinishUpload {
                    repo,
                    id,
                    digest: digest(d)?,
                })
            }
            Method::DELETE => Ok(Endpoint::CancelUpload { repo, id }),
            _ => Err(ParseError::MethodNotAllowed),
        };
    }
    if tail_is(&["blobs", "uploads"]) {
        return start_upload(method, repo(&name_before(2))?, &q);
    }
    if tail_is(&["blobs", ""]) {
        let repo = repo(&name_before(2))?;
        let digest = digest(last)?;
        return match *method {
            Method::GET | Method::HEAD => Ok(Endpoint::GetBlob {
                repo,
                digest,
                head: is(&Method::HEAD),
            }),
            Method::DELETE => Ok(Endpoint::DeleteBlob { repo, digest }),
            _ => Err(ParseError::MethodNotAllowed),
        };
    }
    if tail_is(&["manifests", ""]) {
        let repo = repo(&name_before(2))?;
        let reference = if last.contains(':') {
            Reference::Digest(digest(last)?)
        } else {
            match Tag::parse(last) {
                Ok(t) => Reference::Tag(t),
                Err(e) if is(&Method::PUT) => {
                    return Err(ParseError::ManifestInvalid(e.to_string()))
                }
                Err(e) => return Err(ParseError::ManifestUnknown(e.to_string())),
            }
        };
        return match *method {
            Method::GET | Method::HEAD => Ok(Endpoint::GetManifest {
                repo,
                reference,
                head: is(&Method::HEAD),
            }),
            Method::PUT => {
                let tags = q
                    .all("tag")
                    .map(|t| Tag::parse(t).map_err(|e| ParseError::ManifestInvalid(e.to_string())))
                    .collect::<Result<_, _>>()?;
                Ok(Endpoint::PutManifest {
                    repo,
                    reference,
                    tags,
                })
            }
            Method::DELETE => Ok(Endpoint::DeleteManifest { repo, reference }),
            _ => Err(ParseError::MethodNotAllowed),
        };
    }
    if tail_is(&["referrers", ""]) {
        let repo = repo(&name_before(2))?;
        let subject = digest(last)?;
        return only(
            get_or_head,
            Endpoint::Referrers {
                repo,
                subject,
                artifact_type: q.get("artifactType").map(str::to_string),
            },
        );
    }
    Err(ParseError::NotFound)
}

fn start_upload(method: &Method, repo: RepositoryName, q: &Query) -> Result<Endpoint, ParseError> {
    if method != Method::POST {
        return Err(ParseError::MethodNotAllowed);
    }
    let start = if let Some(m) = q.get("mount") {
        UploadStart::Mount {
            digest: digest(m)?,
            // An unusable `from` cannot be mounted from; the request still gets a session.
            from: q.get("from").and_then(|f| RepositoryName::parse(f).ok()),
        }
    } else if let Some(d) = q.get("digest") {
        UploadStart::Monolithic { digest: digest(d)? }
    } else {
        let algorithm = match q.get("digest-algorithm") {
            None => Algorithm::Sha256,
            Some(a) => Algorithm::from_name(a).ok_or_else(|| {
                ParseError::DigestInvalid(format!("unsupported digest-algorithm {a:?}"))
            })?,
        };
        UploadStart::Session { algorithm }
    };
    Ok(Endpoint::StartUpload { repo, start })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn p(m: Method, path: &str) -> Result<Endpoint, ParseError> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        parse(&m, path, query)
    }

    fn r(s: &str) -> RepositoryName {
        RepositoryName::parse(s).unwrap()
    }

    #[test]
    fn spec_endpoints() {
        assert_eq!(p(Method::GET, "/v2/"), Ok(Endpoint::ApiVersion));
        // end-2 / end-10: blobs
        assert_eq!(
            p(Method::HEAD, &format!("/v2/ns/img/blobs/{D}")),
            Ok(Endpoint::GetBlob {
                repo: r("ns/img"),
                digest: D.parse().unwrap(),
                head: true
            })
        );
        assert_eq!(
            p(Method::DELETE, &format!("/v2/ns/img/blobs/{D}")),
            Ok(Endpoint::DeleteBlob {
                repo: r("ns/img"),
                digest: D.parse().unwrap()
            })
        );
        // end-3: manifests by tag and digest
        assert!(matches!(
            p(Method::GET, "/v2/ns/img/manifests/latest"),
            Ok(Endpoint::GetManifest {
                reference: Reference::Tag(_),
                head: false,
                ..
            })
        ));
        assert!(matches!(
            p(Method::PUT, &format!("/v2/ns/img/manifests/{D}?tag=a&tag=b")),
            Ok(Endpoint::PutManifest { reference: Reference::Digest(_), ref tags, .. }) if tags.len() == 2
        ));
        // end-4a / end-4b / end-11: upload starts
        assert_eq!(
            p(Method::POST, "/v2/ns/img/blobs/uploads/"),
            Ok(Endpoint::StartUpload {
                repo: r("ns/img"),
                start: UploadStart::Session {
                    algorithm: Algorithm::Sha256
                }
            })
        );
        assert!(matches!(
            p(
                Method::POST,
                &format!("/v2/ns/img/blobs/uploads/?digest={D}")
            ),
            Ok(Endpoint::StartUpload {
                start: UploadStart::Monolithic { .. },
                ..
            })
        ));
        assert!(matches!(
            p(
                Method::POST,
                &format!("/v2/ns/img/blobs/uploads/?mount={D}&from=other/img")
            ),
            Ok(Endpoint::StartUpload {
                start: UploadStart::Mount { from: Some(_), .. },
                ..
            })
        ));
        assert!(matches!(
            p(
                Method::POST,
                "/v2/ns/img/blobs/uploads/?digest-algorithm=sha512"
            ),
            Ok(Endpoint::StartUpload {
                start: UploadStart::Session {
                    algorithm: Algorithm::Sha512
                },
                ..
            })
        ));
        // end-5, end-6, end-13: the session
        let id = "3f1d1f4e-8b7a-4c1e-9a53-2a6f9d0b1c2d";
        assert!(matches!(
            p(Method::PATCH, &format!("/v2/ns/img/blobs/uploads/{id}")),
            Ok(Endpoint::PatchUpload { .. })
        ));
        assert!(matches!(
            p(Method::GET, &format!("/v2/ns/img/blobs/uploads/{id}")),
            Ok(Endpoint::UploadStatus { .. })
        ));
        assert!(matches!(
            p(Method::DELETE, &format!("/v2/ns/img/blobs/uploads/{id}")),
            Ok(Endpoint::CancelUpload { .. })
        ));
        assert!(matches!(
            p(
                Method::PUT,
                &format!("/v2/ns/img/blobs/uploads/{id}?digest={D}")
            ),
            Ok(Endpoint::FinishUpload { .. })
        ));
        // end-8: tags
        assert!(matches!(
            p(Method::GET, "/v2/ns/img/tags/list?n=10&last=b"),
            Ok(Endpoint::ListTags { n: Some(10), last: Some(ref l), .. }) if l == "b"
        ));
        // referrers and catalog
        assert!(matches!(
            p(Method::GET, &format!("/v2/ns/img/referrers/{D}?artifactType=a%2Fb")),
            Ok(Endpoint::Referrers { artifact_type: Some(ref t), .. }) if t == "a/b"
        ));
        assert!(matches!(
            p(Method::GET, "/v2/_catalog?n=5"),
            Ok(Endpoint::Catalog { n: Some(5), .. })
        ));
    }

    #[test]
    fn names_that_look_like_routes_parse_from_the_right() {
        // A stream may itself be called `manifests` or `blobs`.
        assert!(matches!(
            p(Method::GET, "/v2/ns/manifests/manifests/latest"),
            Ok(Endpoint::GetManifest { ref repo, .. }) if repo.as_str() == "ns/manifests"
        ));
        assert!(matches!(
            p(Method::GET, "/v2/ns/tags/tags/list"),
            Ok(Endpoint::ListTags { ref repo, .. }) if repo.as_str() == "ns/tags"
        ));
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            p(Method::GET, "/v2/a/b/c/manifests/latest"),
            Err(ParseError::NameInvalid(_))
        ));
        assert!(matches!(
            p(Method::GET, "/v2/single/manifests/latest"),
            Err(ParseError::NameInvalid(_))
        ));
        assert!(matches!(
            p(Method::GET, "/v2/Ns/img/tags/list"),
            Err(ParseError::NameInvalid(_))
        ));
        assert!(matches!(
            p(Method::GET, "/v2/ns/img/manifests/sha256:totallywrong"),
            Err(ParseError::DigestInvalid(_))
        ));
        assert!(matches!(
            p(Method::HEAD, "/v2/ns/img/manifests/.INVALID_MANIFEST_NAME"),
            Err(ParseError::ManifestUnknown(_))
        ));
        assert!(matches!(
            p(Method::PUT, "/v2/ns/img/manifests/.bad"),
            Err(ParseError::ManifestInvalid(_))
        ));
        assert!(matches!(
            p(Method::GET, "/v2/ns%2Fimg/x/tags/list"),
            Err(ParseError::NameInvalid(_))
        ));
        assert_eq!(p(Method::GET, "/v2/_catalog/"), Err(ParseError::NotFound));
        assert_eq!(
            p(Method::GET, "/v2/ns/img/tags/list/"),
            Err(ParseError::NotFound)
        );
        assert_eq!(
            p(Method::POST, "/v2/ns/img/tags/list"),
            Err(ParseError::MethodNotAllowed)
        );
        assert_eq!(
            p(Method::GET, "/v2/ns/img/blobs/uploads/not-a-uuid"),
            Err(ParseError::UploadUnknown)
        );
        assert!(matches!(
            p(Method::GET, "/v2/ns/img/tags/list?n=-1"),
            Err(ParseError::PaginationInvalid(_))
        ));
        assert!(matches!(
            p(
                Method::PUT,
                "/v2/ns/img/blobs/uploads/3f1d1f4e-8b7a-4c1e-9a53-2a6f9d0b1c2d"
            ),
            Err(ParseError::DigestInvalid(_))
        ));
        assert_eq!(p(Method::GET, "/other"), Err(ParseError::NotFound));
    }
}
