//! Deterministic test data: a small PRNG, digests, base64, a real tar.gz layer
//! and builders for OCI manifests, indexes and descriptors.

use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256, Sha512};

pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_LAYER_NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const MT_LAYER_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const MT_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Every manifest media type the tool ever pushes, sent as `Accept` on pulls.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// Digest of the two-byte blob `{}` (the OCI empty descriptor).
pub const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// Digest algorithms exercised by the tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Sha256,
    Sha512,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }

    pub fn digest(self, data: &[u8]) -> String {
        match self {
            Algo::Sha256 => format!("sha256:{}", hex::encode(Sha256::digest(data))),
            Algo::Sha512 => format!("sha512:{}", hex::encode(Sha512::digest(data))),
        }
    }
}

pub fn sha256(data: &[u8]) -> String {
    Algo::Sha256.digest(data)
}

/// SplitMix64: tiny, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5EED_BE27_C0FF_EE00)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// Lower-case alphanumeric string of length `n`.
    pub fn alnum(&mut self, n: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| CHARS[(self.next_u64() % CHARS.len() as u64) as usize] as char)
            .collect()
    }
}

pub fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// A POSIX tar archive holding one regular file.
pub fn tar_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[108..116].copy_from_slice(b"0000000\0");
    header[116..124].copy_from_slice(b"0000000\0");
    header[124..136].copy_from_slice(format!("{:011o}\0", content.len()).as_bytes());
    header[136..148].copy_from_slice(b"00000000000\0");
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with the checksum field filled with spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());

    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// gzip with "stored" (uncompressed) deflate blocks: valid gzip, no compressor needed.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// A blob together with its digest and media type.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self::with_algo(media_type, bytes, Algo::Sha256)
    }

    pub fn with_algo(media_type: &str, bytes: Vec<u8>, algo: Algo) -> Self {
        Blob {
            media_type: media_type.to_string(),
            digest: algo.digest(&bytes),
            bytes,
        }
    }

    pub fn json(media_type: &str, value: &Value) -> Self {
        Self::new(
            media_type,
            serde_json::to_vec(value).expect("serialize json"),
        )
    }

    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }
}

/// A real single-layer rootfs: tar.gz of one small random text file.
/// Returns (layer blob, diff_id of the uncompressed tar).
pub fn layer_targz(rng: &mut Rng, name: &str) -> (Blob, String) {
    let content = format!("{}\n", rng.alnum(64));
    let tar = tar_one_file(name, content.as_bytes());
    let diff_id = sha256(&tar);
    (Blob::new(MT_LAYER_GZIP, gzip_stored(&tar)), diff_id)
}

/// An uncompressed tar layer. Returns (layer blob, diff_id).
pub fn layer_tar(rng: &mut Rng, name: &str) -> (Blob, String) {
    let content = format!("{}\n", rng.alnum(64));
    let tar = tar_one_file(name, content.as_bytes());
    let diff_id = sha256(&tar);
    (Blob::new(MT_LAYER_TAR, tar), diff_id)
}

/// An image config naming the given diff_ids, made unique by a random author.
pub fn image_config(rng: &mut Rng, diff_ids: &[String]) -> Blob {
    Blob::json(
        MT_CONFIG,
        &json!({
            "architecture": "amd64",
            "os": "linux",
            "author": format!("berth-conformance {}", rng.alnum(16)),
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }),
    )
}

/// The empty JSON blob `{}`.
pub fn empty_json() -> Blob {
    Blob::new(MT_EMPTY, b"{}".to_vec())
}

/// Builder for an OCI image manifest.
pub struct ManifestBuilder {
    value: Map<String, Value>,
}

impl ManifestBuilder {
    pub fn new(config: Value, layers: Vec<Value>) -> Self {
        let mut value = Map::new();
        value.insert("schemaVersion".into(), json!(2));
        value.insert("mediaType".into(), json!(MT_MANIFEST));
        value.insert("config".into(), config);
        value.insert("layers".into(), Value::Array(layers));
        ManifestBuilder { value }
    }

    pub fn field(mut self, key: &str, v: Value) -> Self {
        self.value.insert(key.into(), v);
        self
    }

    pub fn artifact_type(self, t: &str) -> Self {
        self.field("artifactType", json!(t))
    }

    pub fn subject(self, subject: Value) -> Self {
        self.field("subject", subject)
    }

    pub fn annotation(mut self, key: &str, val: &str) -> Self {
        let ann = self
            .value
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        ann.as_object_mut()
            .expect("annotations object")
            .insert(key.into(), json!(val));
        self
    }

    pub fn build(self) -> Blob {
        Blob::json(MT_MANIFEST, &Value::Object(self.value))
    }

    pub fn build_algo(self, algo: Algo) -> Blob {
        let bytes = serde_json::to_vec(&Value::Object(self.value)).expect("serialize json");
        Blob::with_algo(MT_MANIFEST, bytes, algo)
    }
}

/// Builder for an OCI image index.
pub struct IndexBuilder {
    value: Map<String, Value>,
}

impl IndexBuilder {
    pub fn new(manifests: Vec<Value>) -> Self {
        let mut value = Map::new();
        value.insert("schemaVersion".into(), json!(2));
        value.insert("mediaType".into(), json!(MT_INDEX));
        value.insert("manifests".into(), Value::Array(manifests));
        IndexBuilder { value }
    }

    pub fn field(mut self, key: &str, v: Value) -> Self {
        self.value.insert(key.into(), v);
        self
    }

    pub fn artifact_type(self, t: &str) -> Self {
        self.field("artifactType", json!(t))
    }

    pub fn subject(self, subject: Value) -> Self {
        self.field("subject", subject)
    }

    pub fn annotation(mut self, key: &str, val: &str) -> Self {
        let ann = self
            .value
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        ann.as_object_mut()
            .expect("annotations object")
            .insert(key.into(), json!(val));
        self
    }

    pub fn build(self) -> Blob {
        Blob::json(MT_INDEX, &Value::Object(self.value))
    }

    pub fn build_algo(self, algo: Algo) -> Blob {
        let bytes = serde_json::to_vec(&Value::Object(self.value)).expect("serialize json");
        Blob::with_algo(MT_INDEX, bytes, algo)
    }
}

/// A descriptor for a manifest blob with a platform, for use in an index.
pub fn platform_descriptor(m: &Blob, arch: &str) -> Value {
    let mut d = m.descriptor();
    d["platform"] = json!({"architecture": arch, "os": "linux"});
    d
}

/// Test data of the legacy suite's four workflows: five configs and five
/// manifests (index 0..4, one per workflow), one real tar.gz layer, the
/// 42-byte blobs A (streamed) and B (chunked) and two referrer blobs.
#[derive(Clone)]
pub struct LegacyData {
    pub layer: Blob,
    pub configs: Vec<Blob>,
    pub manifests: Vec<Blob>,
    /// A manifest with zero layers, pushed as tag `emptylayer`.
    pub empty_layer_manifest: Blob,
    pub blob_a: Blob,
    pub blob_b: Blob,
    pub ref_blob_a: Blob,
    pub ref_blob_b: Blob,
}

impl LegacyData {
    pub fn new(rng: &mut Rng) -> Self {
        let (layer, diff_id) = layer_targz(rng, "conformance.txt");
        let configs: Vec<Blob> = (0..5)
            .map(|_| image_config(rng, std::slice::from_ref(&diff_id)))
            .collect();
        let manifests = configs
            .iter()
            .map(|c| {
                // The config descriptor carries its content in `data` and an
                // unknown extra field, which registries must keep verbatim.
                let mut config = c.descriptor();
                config["data"] = json!(base64(&c.bytes));
                config["newUnspecifiedField"] = json!(rng.alnum(12));
                ManifestBuilder::new(config, vec![layer.descriptor()]).build()
            })
            .collect();
        let empty_layer_manifest = ManifestBuilder::new(configs[1].descriptor(), vec![])
            .annotation("org.example.berth.conformance", "empty-layer")
            .build();
        LegacyData {
            blob_a: Blob::new("application/octet-stream", rng.bytes(42)),
            blob_b: Blob::new("application/octet-stream", rng.bytes(42)),
            ref_blob_a: Blob::new("application/vnd.example.berth.ref", rng.bytes(64)),
            ref_blob_b: Blob::new("application/vnd.example.berth.ref", rng.bytes(64)),
            layer,
            configs,
            manifests,
            empty_layer_manifest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_json_digest() {
        assert_eq!(sha256(b"{}"), EMPTY_JSON_DIGEST);
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn rng_is_deterministic() {
        assert_eq!(Rng::new(7).bytes(33), Rng::new(7).bytes(33));
        assert_ne!(Rng::new(7).bytes(33), Rng::new(8).bytes(33));
    }

    #[test]
    fn legacy_manifests_differ() {
        let d = LegacyData::new(&mut Rng::new(1));
        let mut digests: Vec<_> = d.manifests.iter().map(|m| &m.digest).collect();
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), 5);
    }

    #[test]
    fn tar_is_block_aligned() {
        let t = tar_one_file("a.txt", b"hello");
        assert_eq!(t.len() % 512, 0);
        assert_eq!(t.len(), 512 + 512 + 1024);
    }
}
