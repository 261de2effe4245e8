//! The load generator's registry client: every operation checks the status and the digest of
//! what it got back, so a fast wrong answer is a failure, never a result.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{header, Client, Method, StatusCode};
use sha2::{Digest as _, Sha256};

/// Why an operation counted as a failure.
pub type OpResult<T = ()> = Result<T, String>;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// One HTTP/1.1 client for the whole run: keep-alive pool large enough for concurrency 64.
pub fn http_client() -> Client {
    Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A fast deterministic generator (splitmix64): incompressible bytes at several GB/s, so making
/// test data never dominates a run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// Lets a large shared buffer be sent as `Bytes` without copying it.
pub struct SharedBuf(pub Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

pub fn shared_bytes(buf: &Arc<Vec<u8>>) -> Bytes {
    Bytes::from_owner(SharedBuf(buf.clone()))
}

/// A blob with its digest.
#[derive(Clone)]
pub struct Blob {
    pub data: Bytes,
    pub digest: String,
}

impl Blob {
    pub fn new(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        let digest = sha256_digest(&data);
        Blob { data, digest }
    }
}

/// An image: config + one layer + an OCI manifest naming them.
#[derive(Clone)]
pub struct Image {
    pub config: Blob,
    pub layer: Blob,
    pub manifest: Blob,
}

/// A distinct image whose layer is `layer_size` random bytes seeded by `seed`.
pub fn make_image(seed: u64, layer_size: usize) -> Image {
    let layer = Blob::new(random_bytes(seed, layer_size));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"bench.seed": seed.to_string()}},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    });
    let config = Blob::new(serde_json::to_vec(&config).expect("json"));
    let manifest = manifest_for(&config, &layer, None);
    Image {
        config,
        layer,
        manifest,
    }
}

/// An OCI image manifest over `config` and `layer`; `annotation` makes otherwise equal
/// manifests distinct.
pub fn manifest_for(config: &Blob, layer: &Blob, annotation: Option<&str>) -> Blob {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.data.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.data.len()}],
    });
    if let Some(a) = annotation {
        m["annotations"] = serde_json::json!({ "bench.id": a });
    }
    Blob::new(serde_json::to_vec(&m).expect("json"))
}

fn header_str(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn expect_status(
    resp: reqwest::Response,
    want: StatusCode,
    what: &str,
) -> OpResult<reqwest::Response> {
    if resp.status() == want {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    Err(format!("{what}: status {status} (wanted {want}): {body}"))
}

fn expect_digest(resp: &reqwest::Response, want: &str, what: &str) -> OpResult {
    match header_str(resp, "docker-content-digest") {
        Some(d) if d == want => Ok(()),
        other => Err(format!(
            "{what}: Docker-Content-Digest {other:?}, wanted {want}"
        )),
    }
}

fn transport(what: &str) -> impl Fn(reqwest::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// A registry at `base` (`http://127.0.0.1:PORT`).
#[derive(Clone)]
pub struct Registry {
    pub client: Client,
    pub base: String,
}

impl Registry {
    pub fn new(client: Client, base: String) -> Self {
        Registry { client, base }
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{}", self.base, location)
        }
    }

    fn location(&self, resp: &reqwest::Response, what: &str) -> OpResult<String> {
        header_str(resp, "location")
            .map(|l| self.absolute(&l))
            .ok_or_else(|| format!("{what}: no Location"))
    }

    /// `POST /v2/<repo>/blobs/uploads/`: the session's URL.
    pub async fn start_upload(&self, repo: &str) -> OpResult<String> {
        let resp = self
            .client
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .header(header::CONTENT_LENGTH, "0")
            .send()
            .await
            .map_err(transport("POST upload"))?;
        let resp = expect_status(resp, StatusCode::ACCEPTED, "POST upload").await?;
        self.location(&resp, "POST upload")
    }

    fn with_digest(location: &str, digest: &str) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={digest}")
    }

    async fn finish(&self, req: reqwest::RequestBuilder, digest: &str) -> OpResult {
        let resp = req.send().await.map_err(transport("PUT upload"))?;
        let resp = expect_status(resp, StatusCode::CREATED, "PUT upload").await?;
        expect_digest(&resp, digest, "PUT upload")
    }

    /// Monolithic push: `POST` then one `PUT ?digest=` carrying the whole blob.
    pub async fn push_blob(&self, repo: &str, data: Bytes, digest: &str) -> OpResult {
        let location = self.start_upload(repo).await?;
        let req = self
            .client
            .put(Self::with_digest(&location, digest))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(data);
        self.finish(req, digest).await
    }

    /// Single-request push: `POST ?digest=` carrying the whole blob.
    pub async fn push_blob_single(&self, repo: &str, data: Bytes, digest: &str) -> OpResult {
        let req = self
            .client
            .post(format!(
                "{}/v2/{repo}/blobs/uploads/?digest={digest}",
                self.base
            ))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(data);
        let resp = req.send().await.map_err(transport("POST ?digest="))?;
        let resp = expect_status(resp, StatusCode::CREATED, "POST ?digest=").await?;
        expect_digest(&resp, digest, "POST ?digest=")
    }

    /// `DELETE /v2/<repo>/blobs/<digest>`: unlinks the blob from the repository (202).
    pub async fn delete_blob(&self, repo: &str, digest: &str) -> OpResult {
        let resp = self
            .client
            .delete(format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .send()
            .await
            .map_err(transport("DELETE blob"))?;
        expect_status(resp, StatusCode::ACCEPTED, "DELETE blob").await?;
        Ok(())
    }

    /// Chunked push: `POST`, one `PATCH` per `chunk` bytes with `Content-Range`, then an empty
    /// `PUT ?digest=`.
    pub async fn push_blob_chunked(
        &self,
        repo: &str,
        data: Bytes,
        digest: &str,
        chunk: usize,
    ) -> OpResult {
        let mut location = self.start_upload(repo).await?;
        let mut offset = 0usize;
        while offset < data.len() {
            let end = (offset + chunk).min(data.len());
            let resp = self
                .client
                .patch(&location)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_RANGE, format!("{offset}-{}", end - 1))
                .body(data.slice(offset..end))
                .send()
                .await
                .map_err(transport("PATCH upload"))?;
            let resp = expect_status(resp, StatusCode::ACCEPTED, "PATCH upload").await?;
            let want = format!("0-{}", end - 1);
            match header_str(&resp, "range") {
                Some(r) if r == want || r == format!("bytes={want}") => {}
                other => return Err(format!("PATCH upload: Range {other:?}, wanted {want}")),
            }
            location = self.location(&resp, "PATCH upload")?;
            offset = end;
        }
        let req = self
            .client
            .put(Self::with_digest(&location, digest))
            .header(header::CONTENT_LENGTH, "0");
        self.finish(req, digest).await
    }

    pub async fn put_manifest(&self, repo: &str, reference: &str, manifest: &Blob) -> OpResult {
        let resp = self
            .client
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header(header::CONTENT_TYPE, OCI_MANIFEST)
            .body(manifest.data.clone())
            .send()
            .await
            .map_err(transport("PUT manifest"))?;
        let resp = expect_status(resp, StatusCode::CREATED, "PUT manifest").await?;
        expect_digest(&resp, &manifest.digest, "PUT manifest")
    }

    /// Pushes config, layer (both monolithic) and the manifest under `tag`.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &Image) -> OpResult {
        self.push_blob(repo, image.config.data.clone(), &image.config.digest)
            .await?;
        self.push_blob(repo, image.layer.data.clone(), &image.layer.digest)
            .await?;
        self.put_manifest(repo, tag, &image.manifest).await
    }

    /// `HEAD` or `GET` of a manifest; a GET's body must hash to the digest.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        digest: &str,
        head: bool,
    ) -> OpResult {
        let method = if head { Method::HEAD } else { Method::GET };
        let resp = self
            .client
            .request(
                method,
                format!("{}/v2/{repo}/manifests/{reference}", self.base),
            )
            .header(header::ACCEPT, OCI_MANIFEST)
            .send()
            .await
            .map_err(transport("GET manifest"))?;
        let resp = expect_status(resp, StatusCode::OK, "GET manifest").await?;
        expect_digest(&resp, digest, "GET manifest")?;
        if !head {
            let body = resp.bytes().await.map_err(transport("GET manifest body"))?;
            let got = sha256_digest(&body);
            if got != digest {
                return Err(format!(
                    "GET manifest: body hashes to {got}, wanted {digest}"
                ));
            }
        }
        Ok(())
    }

    /// Streams a whole blob, hashing it as it arrives; returns its length.
    pub async fn get_blob(&self, repo: &str, digest: &str, len: u64) -> OpResult<u64> {
        let mut resp = self
            .client
            .get(format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .send()
            .await
            .map_err(transport("GET blob"))?;
        if resp.status() != StatusCode::OK {
            return expect_status(resp, StatusCode::OK, "GET blob")
                .await
                .map(|_| 0);
        }
        let mut hasher = Sha256::new();
        let mut seen = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(transport("GET blob body"))? {
            seen += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got != digest || seen != len {
            return Err(format!(
                "GET blob: {seen} bytes hashing to {got}, wanted {len} bytes of {digest}"
            ));
        }
        Ok(seen)
    }

    /// A `Range` GET that must answer 206 with exactly `expected`.
    pub async fn get_range(
        &self,
        repo: &str,
        digest: &str,
        start: u64,
        expected: &[u8],
    ) -> OpResult {
        let end = start + expected.len() as u64 - 1;
        let resp = self
            .client
            .get(format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .header(header::RANGE, format!("bytes={start}-{end}"))
            .send()
            .await
            .map_err(transport("GET range"))?;
        let resp = expect_status(resp, StatusCode::PARTIAL_CONTENT, "GET range").await?;
        let body = resp.bytes().await.map_err(transport("GET range body"))?;
        if body.as_ref() != expected {
            return Err(format!(
                "GET range: {} bytes that differ from the blob's",
                body.len()
            ));
        }
        Ok(())
    }

    /// Pulls an image by tag: manifest, config and layer, each checked.
    pub async fn pull_image(&self, repo: &str, tag: &str, image: &Image) -> OpResult {
        self.get_manifest(repo, tag, &image.manifest.digest, false)
            .await?;
        self.get_blob(repo, &image.config.digest, image.config.data.len() as u64)
            .await?;
        self.get_blob(repo, &image.layer.digest, image.layer.data.len() as u64)
            .await?;
        Ok(())
    }

    /// One page of `tags/list`: its tags and the absolute URL of the next page, if any.
    pub async fn tags_page(&self, url: &str) -> OpResult<(Vec<String>, Option<String>)> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(transport("GET tags"))?;
        let resp = expect_status(resp, StatusCode::OK, "GET tags").await?;
        let next = header_str(&resp, "link")
            .and_then(|l| next_link(&l))
            .map(|l| self.absolute(&l));
        let body = json_body(resp).await?;
        let tags = body["tags"]
            .as_array()
            .ok_or("GET tags: no tags array")?
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_string())
            .collect();
        Ok((tags, next))
    }

    /// A GET that must answer 200; its body.
    pub async fn get_ok(&self, url: &str) -> OpResult<Bytes> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(transport("GET"))?;
        let resp = expect_status(resp, StatusCode::OK, "GET").await?;
        resp.bytes().await.map_err(transport("GET body"))
    }
}

/// The target of `<...>; rel="next"` in a Link header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let part = part.trim();
        if !part.contains("rel=\"next\"") && !part.contains("rel=next") {
            return None;
        }
        let start = part.find('<')? + 1;
        let end = part[start..].find('>')? + start;
        Some(part[start..end].to_string())
    })
}

async fn json_body(resp: reqwest::Response) -> OpResult<serde_json::Value> {
    let body = resp.bytes().await.map_err(transport("body"))?;
    serde_json::from_slice(&body).map_err(|e| format!("body is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header() {
        assert_eq!(
            next_link("</v2/a/b/tags/list?n=100&last=t1>; rel=\"next\"").as_deref(),
            Some("/v2/a/b/tags/list?n=100&last=t1")
        );
        assert_eq!(next_link("</x>; rel=\"prev\""), None);
    }

    #[test]
    fn rng_is_deterministic_and_fills_tails() {
        let a = random_bytes(7, 13);
        assert_eq!(a, random_bytes(7, 13));
        assert_ne!(a, random_bytes(8, 13));
    }
}
