//! The shared context (client, repository names, seed) and the registry
//! operations that the workflows are built from. Each operation checks the
//! answer it gets as strictly as berth is meant to answer.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::client::{Client, Resp, R};
use crate::data::{Blob, Rng, ACCEPT_MANIFESTS, MT_INDEX};
use crate::runner::ensure;

pub struct Ctx {
    pub client: Client,
    /// Namespace every repository lives in (`<namespace>/<stream>`).
    pub ns: String,
    pub seed: u64,
    /// The registry's configured manifest size limit, when lower than the datasets need:
    /// a dataset with a larger manifest then checks the 413 the spec allows instead.
    pub max_manifest_bytes: Option<usize>,
}

impl Ctx {
    /// The repository `<namespace>/<stream>`.
    pub fn repo(&self, stream: &str) -> String {
        format!("{}/{stream}", self.ns)
    }

    /// A PRNG for one workflow: same seed and salt give the same data.
    pub fn rng(&self, salt: &str) -> Rng {
        let h = Sha256::digest(salt.as_bytes());
        let mut salt_bits = [0u8; 8];
        salt_bits.copy_from_slice(&h[..8]);
        Rng::new(self.seed ^ u64::from_le_bytes(salt_bits))
    }

    pub fn blob_url(&self, repo: &str, digest: &str) -> String {
        self.client.url(&format!("/v2/{repo}/blobs/{digest}"))
    }

    pub fn manifest_url(&self, repo: &str, reference: &str) -> String {
        self.client
            .url(&format!("/v2/{repo}/manifests/{reference}"))
    }

    /// `POST` target for upload sessions, with an optional query (no `?`).
    pub fn uploads_url(&self, repo: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.client.url(&format!("/v2/{repo}/blobs/uploads/{q}"))
    }

    pub fn tags_url(&self, repo: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.client.url(&format!("/v2/{repo}/tags/list{q}"))
    }

    pub fn referrers_url(&self, repo: &str, digest: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.client
            .url(&format!("/v2/{repo}/referrers/{digest}{q}"))
    }
}

/// Appends `key=value` to a URL that may already carry a query.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// An open upload session.
pub struct Upload {
    /// Resolved `Location` of the most recent answer.
    pub location: String,
    /// `OCI-Chunk-Min-Length` from the POST, if any.
    pub chunk_min: Option<usize>,
}

/// `POST .../blobs/uploads/[?query]` with `Content-Length: 0` → 202 + Location.
pub fn start_upload(ctx: &Ctx, repo: &str, query: &str) -> R<Upload> {
    let r = ctx
        .client
        .post(&ctx.uploads_url(repo, query))
        .empty()
        .send()?;
    r.expect(&[202])?;
    let location = r.location(&ctx.client)?;
    let chunk_min = match r.header("OCI-Chunk-Min-Length") {
        Some(v) => Some(
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("{}: OCI-Chunk-Min-Length {v:?} is not a number", r.what))?,
        ),
        None => None,
    };
    Ok(Upload {
        location,
        chunk_min,
    })
}

/// `PATCH` one chunk with `Content-Range: start-end` → 202, `Range: 0-<end>`,
/// Location. Updates the session location.
pub fn patch_chunk(ctx: &Ctx, up: &mut Upload, data: &[u8], start: usize) -> R<Resp> {
    let end = start + data.len() - 1;
    let r = ctx
        .client
        .patch(&up.location)
        .header("Content-Range", &format!("{start}-{end}"))
        .octets(data)
        .send()?;
    r.expect(&[202])?;
    r.header_eq("Range", &format!("0-{end}"))?;
    up.location = r.location(&ctx.client)?;
    Ok(r)
}

/// `PUT <location>?digest=` with `body` (maybe empty) → 201 + Location.
/// Returns the resolved Location of the blob.
pub fn finish_upload(ctx: &Ctx, up: &Upload, digest: &str, body: &[u8]) -> R<String> {
    let r = ctx
        .client
        .put(&with_query(&up.location, "digest", digest))
        .octets(body)
        .send()?;
    r.expect(&[201])?;
    r.digest_if_present(digest)?;
    r.location(&ctx.client)
}

/// The POST query announcing the digest algorithm of an upload (spec main's
/// `digest-algorithm`); empty for the default sha256.
pub fn session_query(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, _)) if alg != "sha256" => format!("digest-algorithm={alg}"),
        _ => String::new(),
    }
}

/// POST + monolithic PUT. Returns the resolved Location of the blob.
pub fn push_blob(ctx: &Ctx, repo: &str, blob: &Blob) -> R<String> {
    let up = start_upload(ctx, repo, &session_query(&blob.digest))?;
    finish_upload(ctx, &up, &blob.digest, &blob.bytes)
}

/// HEAD → 200 with exact `Content-Length`, `Docker-Content-Digest` and no body;
/// GET → 200 with the exact body.
pub fn verify_blob(ctx: &Ctx, repo: &str, digest: &str, bytes: &[u8]) -> R {
    let url = ctx.blob_url(repo, digest);
    let h = ctx.client.head(&url).send()?;
    h.expect(&[200])?
        .content_length_eq(bytes.len())?
        .header_eq("Docker-Content-Digest", digest)?;
    ensure(h.body.is_empty(), || {
        format!("{}: HEAD returned a body", h.what)
    })?;
    let g = ctx.client.get(&url).send()?;
    g.expect(&[200])?
        .body_eq(bytes)?
        .header_eq("Docker-Content-Digest", digest)?;
    Ok(())
}

/// The `Location` a final PUT returned must serve the blob.
pub fn verify_location(ctx: &Ctx, location: &str, bytes: &[u8]) -> R {
    let g = ctx.client.get(location).send()?;
    g.expect(&[200])?.body_eq(bytes)?;
    Ok(())
}

/// HEAD and GET → 404.
pub fn expect_blob_missing(ctx: &Ctx, repo: &str, digest: &str) -> R {
    let url = ctx.blob_url(repo, digest);
    ctx.client.head(&url).send()?.expect(&[404])?;
    ctx.client
        .get(&url)
        .send()?
        .expect(&[404])?
        .expect_error_code("BLOB_UNKNOWN")?;
    Ok(())
}

/// DELETE → 202, then HEAD → 404.
pub fn delete_blob(ctx: &Ctx, repo: &str, digest: &str) -> R {
    let url = ctx.blob_url(repo, digest);
    ctx.client.delete(&url).send()?.expect(&[202])?;
    ctx.client.head(&url).send()?.expect(&[404])?;
    Ok(())
}

/// `PUT manifests/<reference>` → 201 + Location, `Docker-Content-Digest`
/// equal to the manifest's digest.
pub fn put_manifest(ctx: &Ctx, repo: &str, reference: &str, m: &Blob) -> R<Resp> {
    let r = ctx
        .client
        .put(&ctx.manifest_url(repo, reference))
        .header("Content-Type", &m.media_type)
        .body(m.bytes.clone())
        .send()?;
    r.expect(&[201])?;
    r.need_header("Location")?;
    r.header_eq("Docker-Content-Digest", &m.digest)?;
    Ok(r)
}

/// GET a manifest → 200 with exact body, `Content-Type` = media type and,
/// when `digest` is given, `Docker-Content-Digest` = digest.
pub fn get_manifest(ctx: &Ctx, repo: &str, reference: &str, m: &Blob) -> R {
    get_manifest_url(
        ctx,
        &ctx.manifest_url(repo, reference),
        m,
        digest_for(reference, m),
    )
}

/// GET a manifest at an absolute URL (e.g. a PUT's Location).
pub fn get_manifest_url(ctx: &Ctx, url: &str, m: &Blob, digest: Option<&str>) -> R {
    let r = ctx
        .client
        .get(url)
        .header("Accept", ACCEPT_MANIFESTS)
        .send()?;
    r.expect(&[200])?
        .body_eq(&m.bytes)?
        .content_length_eq(m.bytes.len())?
        .header_eq("Content-Type", &m.media_type)?;
    if let Some(d) = digest {
        r.header_eq("Docker-Content-Digest", d)?;
    } else {
        r.need_header("Docker-Content-Digest")?;
    }
    Ok(())
}

/// HEAD a manifest → 200, exact Content-Length, Content-Type, digest, no body.
pub fn head_manifest(ctx: &Ctx, repo: &str, reference: &str, m: &Blob) -> R {
    let r = ctx
        .client
        .head(&ctx.manifest_url(repo, reference))
        .header("Accept", ACCEPT_MANIFESTS)
        .send()?;
    r.expect(&[200])?
        .content_length_eq(m.bytes.len())?
        .header_eq("Content-Type", &m.media_type)?;
    if let Some(d) = digest_for(reference, m) {
        r.header_eq("Docker-Content-Digest", d)?;
    }
    ensure(r.body.is_empty(), || {
        format!("{}: HEAD returned a body", r.what)
    })
}

/// The digest header to require for `reference`: the reference itself when
/// it is a digest, the manifest digest when it is a sha256 manifest pushed
/// by tag, otherwise none (a sha512 manifest pushed by tag may be sha256).
fn digest_for<'a>(reference: &'a str, m: &'a Blob) -> Option<&'a str> {
    if reference.contains(':') {
        Some(reference)
    } else if m.digest.starts_with("sha256:") {
        Some(&m.digest)
    } else {
        None
    }
}

/// GET and HEAD a manifest → 404 (GET with `MANIFEST_UNKNOWN`).
pub fn expect_manifest_missing(ctx: &Ctx, repo: &str, reference: &str) -> R {
    let url = ctx.manifest_url(repo, reference);
    ctx.client
        .head(&url)
        .header("Accept", ACCEPT_MANIFESTS)
        .send()?
        .expect(&[404])?;
    ctx.client
        .get(&url)
        .header("Accept", ACCEPT_MANIFESTS)
        .send()?
        .expect(&[404])?
        .expect_error_code("MANIFEST_UNKNOWN")?;
    Ok(())
}

/// `DELETE manifests/<reference>` → 202.
pub fn delete_manifest(ctx: &Ctx, repo: &str, reference: &str) -> R {
    ctx.client
        .delete(&ctx.manifest_url(repo, reference))
        .send()?
        .expect(&[202])?;
    Ok(())
}

/// `GET tags/list[?query]` → 200 with `{"name": repo, "tags": [...]}`.
pub fn list_tags(ctx: &Ctx, repo: &str, query: &str) -> R<(Resp, Vec<String>)> {
    let r = ctx.client.get(&ctx.tags_url(repo, query)).send()?;
    r.expect(&[200])?;
    let v = r.json()?;
    ensure(v["name"] == repo, || {
        format!("{}: name is {}, want {repo:?}", r.what, v["name"])
    })?;
    let tags = match &v["tags"] {
        Value::Null => Vec::new(),
        Value::Array(a) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{}: non-string tag {t}", r.what))
            })
            .collect::<R<Vec<_>>>()?,
        other => return Err(format!("{}: tags is not an array: {other}", r.what)),
    };
    Ok((r, tags))
}

/// `GET referrers/<digest>[?query]` → 200, OCI index content type and body.
/// Returns the response and the `manifests` descriptors.
pub fn referrers(ctx: &Ctx, repo: &str, digest: &str, query: &str) -> R<(Resp, Vec<Value>)> {
    let r = ctx
        .client
        .get(&ctx.referrers_url(repo, digest, query))
        .send()?;
    r.expect(&[200])?.header_eq("Content-Type", MT_INDEX)?;
    let v = r.json()?;
    ensure(v["schemaVersion"] == 2, || {
        format!(
            "{}: schemaVersion is {}, want 2",
            r.what, v["schemaVersion"]
        )
    })?;
    ensure(v["mediaType"] == MT_INDEX, || {
        format!(
            "{}: mediaType is {}, want {MT_INDEX}",
            r.what, v["mediaType"]
        )
    })?;
    let Some(list) = v["manifests"].as_array() else {
        return Err(format!("{}: manifests is not an array", r.what));
    };
    Ok((r, list.clone()))
}

/// A digest of random bytes that nobody pushes.
pub fn unknown_digest(rng: &mut Rng, algo: crate::data::Algo) -> String {
    algo.digest(&rng.bytes(64))
}

/// The descriptor a referrers response must list for manifest `m`: its
/// media type, digest and size, its `artifactType` (else, for an image
/// manifest, the config media type; nothing for an index without one) and
/// all its annotations.
pub fn expected_referrer(m: &Blob) -> Value {
    let v: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
    let mut d = m.descriptor();
    let artifact_type = match &v["artifactType"] {
        Value::String(s) => Some(s.clone()),
        _ if m.media_type == crate::data::MT_MANIFEST => {
            v["config"]["mediaType"].as_str().map(str::to_string)
        }
        _ => None,
    };
    if let Some(t) = artifact_type {
        d["artifactType"] = Value::String(t);
    }
    if let Some(a) = v.get("annotations") {
        d["annotations"] = a.clone();
    }
    d
}

/// The referrers list `got` must hold exactly the descriptors of `want`.
pub fn check_referrers(what: &str, got: &[Value], want: &[&Blob]) -> R {
    let fields = ["mediaType", "size", "artifactType", "annotations"];
    for m in want {
        let exp = expected_referrer(m);
        let Some(d) = got.iter().find(|d| d["digest"] == exp["digest"]) else {
            return Err(format!("{what}: {} is not listed", m.digest));
        };
        for f in fields {
            ensure(d.get(f) == exp.get(f), || {
                format!(
                    "{what}: {f} of {} is {}, want {}",
                    m.digest,
                    d.get(f).unwrap_or(&Value::Null),
                    exp.get(f).unwrap_or(&Value::Null)
                )
            })?;
        }
    }
    for d in got {
        ensure(want.iter().any(|m| d["digest"] == m.digest), || {
            format!("{what}: unexpected descriptor {}", d["digest"])
        })?;
    }
    ensure(got.len() == want.len(), || {
        format!("{what}: {} descriptors, want {}", got.len(), want.len())
    })
}

/// Tag lists may be sorted case-insensitively or byte-wise ("ASCIIbetical").
pub fn check_tag_order(what: &str, tags: &[String]) -> R {
    let bytewise = tags.windows(2).all(|w| w[0] <= w[1]);
    let lexical = tags
        .windows(2)
        .all(|w| w[0].to_lowercase() <= w[1].to_lowercase());
    ensure(bytewise || lexical, || {
        format!("{what}: tags are neither byte-sorted nor case-insensitively sorted: {tags:?}")
    })
}

/// Percent-encodes a query value (keeps unreserved characters and `/`).
pub fn query_escape(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
