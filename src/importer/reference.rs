//! Docker pull specs (`[registry/][namespace/]name(@digest|:tag)`), parsed the way OpenShift
//! parses them (spec §5 "Reference parsing").
//!
//! - The first `/`-separated component is the registry when it contains `.` or `:` or is
//!   `localhost`; otherwise the whole string is a path on Docker Hub.
//! - Defaults: registry `docker.io`; a single-component Docker Hub name gets `library/`; with no
//!   digest, the tag `latest`.
//! - A spec may carry both a tag and a digest (`name:tag@sha256:…`); the digest is what is
//!   fetched.
//!
//! The grammar checks are those of the distribution reference grammar: lowercase path components
//! separated by `.`, `_`, `__` or dashes; tags `[\w][\w.-]{0,127}`; and a digest berth can verify
//! (sha256 or sha512).

use std::fmt;
use std::str::FromStr;

use berth_storage::Digest;

/// The registry assumed when a spec names none.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves the distribution API for Docker Hub.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The namespace of single-component Docker Hub names.
pub const DOCKER_HUB_LIBRARY: &str = "library";
/// The tag assumed when a spec names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// `host[:port]` as written (or `docker.io`).
    pub registry: String,
    /// The repository path inside the registry, e.g. `library/python`.
    pub repository: String,
    /// The tag; `latest` when the spec has neither tag nor digest.
    pub tag: Option<String>,
    /// The digest, when the spec is pinned.
    pub digest: Option<Digest>,
}

impl ImageReference {
    /// Parses a pull spec; the error text says what is wrong with it.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid image reference {spec:?}: {why}");
        if spec.is_empty() {
            return Err("invalid image reference: it is empty".to_string());
        }
        if spec.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace"));
        }

        let (rest, digest) = match spec.split_once('@') {
            Some((rest, digest)) => {
                if !is_digest_shaped(digest) {
                    return Err(invalid(&format!(
                        "{digest:?} is not a digest of the form <algorithm>:<hex>"
                    )));
                }
                let digest = Digest::from_str(digest).map_err(|e| invalid(&e.to_string()))?;
                (rest, Some(digest))
            }
            None => (spec, None),
        };

        // A tag is the part after a `:` that follows the last `/`.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !is_valid_tag(tag) {
                return Err(invalid(&format!(
                    "tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
                )));
            }
        }
        if name.is_empty() {
            return Err(invalid("the repository name is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(&format!(
                "the repository name must not be more than {MAX_NAME_LEN} characters"
            )));
        }

        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                validate_registry(first).map_err(|why| invalid(&why))?;
                (first.to_string(), path)
            }
            _ => (DOCKER_HUB.to_string(), name),
        };
        if path.is_empty() {
            return Err(invalid("the repository path is empty"));
        }
        for component in path.split('/') {
            validate_path_component(component).map_err(|why| invalid(&why))?;
        }

        let repository = if is_docker_hub(&registry) && !path.contains('/') {
            format!("{DOCKER_HUB_LIBRARY}/{path}")
        } else {
            path.to_string()
        };
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(ImageReference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, e.g. `docker.io/library/python`.
    pub fn repository_spec(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The normalised full reference: `registry/repository[:tag][@digest]`.
    pub fn exact(&self) -> String {
        let mut s = self.repository_spec();
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
        s
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The host (and port) that serves the distribution API: `registry-1.docker.io` for Docker
    /// Hub, the registry itself otherwise.
    pub fn api_host(&self) -> &str {
        if is_docker_hub(&self.registry) {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The last path component, e.g. `python` for `docker.io/library/python`.
    pub fn name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }

    /// The same repository pinned to `digest` (the tag is dropped).
    pub fn with_digest(&self, digest: Digest) -> ImageReference {
        ImageReference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The same repository at `tag` (any digest is dropped).
    pub fn with_tag(&self, tag: &str) -> ImageReference {
        ImageReference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }
}

impl FromStr for ImageReference {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageReference::parse(s)
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.exact())
    }
}

/// Docker Hub under any of the names Docker clients accept for it.
pub fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// `[\w][\w.-]{0,127}`.
fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`; whether berth can
/// verify it is checked afterwards by [`Digest`].
fn is_digest_shaped(s: &str) -> bool {
    let Some((alg, hex)) = s.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(|c| c.is_ascii_alphanumeric())
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `host[:port]`: dot-separated labels of letters, digits and inner dashes, an optional
/// numeric port; or a bracketed IPv6 literal.
fn validate_registry(registry: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = registry.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("registry {registry:?} has an unclosed '['"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("registry {registry:?} is not a valid IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(format!("registry {registry:?} is not host[:port]")),
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        };
        if !host.split('.').all(label_ok) {
            return Err(format!("registry host {host:?} is not a valid host name"));
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
            return Err(format!("registry port {port:?} must be a number"));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
fn validate_path_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("the repository name has an empty path component".to_string());
    }
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".to_string());
    }
    let b = component.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    let mut ok = alnum(b[0]);
    while ok && i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or any number of `-`; it must sit between
        // alphanumerics.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let sep_ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|c| c == b'-');
        ok = sep_ok && i < b.len();
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "path component {component:?} must match [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn parse(s: &str) -> ImageReference {
        ImageReference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_defaults() {
        let r = parse("python");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/python");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.digest, None);
        assert_eq!(r.exact(), "docker.io/library/python:latest");
        assert_eq!(r.repository_spec(), "docker.io/library/python");
        assert_eq!(r.reference(), "latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.to_string(), r.exact());
        assert_eq!(r.name(), "python");

        let r = parse("openshift/origin-cli:v4.1");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "openshift/origin-cli");
        assert_eq!(r.tag.as_deref(), Some("v4.1"));

        // An explicit docker.io also gets library/.
        assert_eq!(parse("docker.io/busybox").repository, "library/busybox");
        assert_eq!(
            parse("index.docker.io/busybox").repository,
            "library/busybox"
        );
        assert_eq!(
            parse("index.docker.io/busybox").api_host(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn registry_detection() {
        let r = parse("quay.io/coreos/etcd:v3");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("quay.io", "coreos/etcd")
        );
        assert_eq!(r.api_host(), "quay.io");

        let r = parse("localhost/foo");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "foo")
        );

        let r = parse("127.0.0.1:5000/ns/name:1.0");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "ns/name");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.exact(), "127.0.0.1:5000/ns/name:1.0");

        let r = parse("myregistry:5000/app");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("myregistry:5000", "app")
        );
        // A single non-Hub component is not prefixed with library/.
        assert_eq!(parse("quay.io/app").repository, "app");

        // No dot, colon or localhost: a Docker Hub namespace.
        let r = parse("myregistry/app");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "myregistry/app");

        // Deep paths stay whole.
        assert_eq!(parse("reg.io/a/b/c:t").repository, "a/b/c");
        assert_eq!(parse("a/b/c").repository, "a/b/c");

        // Without a slash, `host:port` reads as name:tag, as Docker reads it.
        let r = parse("localhost:5000");
        assert_eq!(r.repository, "library/localhost");
        assert_eq!(r.tag.as_deref(), Some("5000"));

        let r = parse("[::1]:5000/ns/name");
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(r.repository, "ns/name");
    }

    #[test]
    fn digests() {
        let r = parse(&format!("quay.io/ns/name@{D}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().unwrap().to_string(), D);
        assert_eq!(r.reference(), D);
        assert_eq!(r.exact(), format!("quay.io/ns/name@{D}"));

        // Tag and digest: the digest wins.
        let r = parse(&format!("busybox:1.36@{D}"));
        assert_eq!(r.tag.as_deref(), Some("1.36"));
        assert_eq!(r.reference(), D);
        assert_eq!(r.exact(), format!("docker.io/library/busybox:1.36@{D}"));

        let pinned = parse("quay.io/ns/name:t").with_digest(D.parse().unwrap());
        assert_eq!(pinned.exact(), format!("quay.io/ns/name@{D}"));
        assert_eq!(pinned.with_tag("x").exact(), "quay.io/ns/name:x");
    }

    #[test]
    fn round_trips() {
        for s in [
            "docker.io/library/python:3.12",
            "quay.io/ns/name:t",
            "127.0.0.1:5000/a/b/c:v1.2-rc_3",
        ] {
            let r = parse(s);
            assert_eq!(r.exact(), s);
            assert_eq!(parse(&r.exact()), r);
        }
        let s = format!("reg.example.com/ns/n@{D}");
        assert_eq!(parse(&s).exact(), s);
    }

    #[test]
    fn errors_are_clear() {
        let err = |s: &str| ImageReference::parse(s).unwrap_err();
        assert!(err("").contains("empty"));
        assert!(err("Python").contains("lowercase"), "{}", err("Python"));
        assert!(err("quay.io/NS/name").contains("lowercase"));
        assert!(err("name:").contains("tag"));
        assert!(err("name:-bad").contains("tag"));
        assert!(err(&format!("name:{}", "a".repeat(129))).contains("tag"));
        assert!(err("name@sha256:abc").contains("digest"));
        assert!(err("name@md5:0123456789abcdef0123456789abcdef").contains("md5"));
        assert!(err(&format!(
            "name@{}",
            D.to_uppercase().replace("SHA256", "sha256")
        ))
        .contains("hex"));
        assert!(err("quay.io/").contains("empty"));
        assert!(err("quay.io//x").contains("empty"));
        assert!(err("a b").contains("whitespace"));
        assert!(err("ns/-name").contains("path component"));
        assert!(err("ns/name-").contains("path component"));
        assert!(err("ns/na...me").contains("path component"));
        assert!(
            err("bad_host.io:port/x").contains("host")
                || err("bad_host.io:port/x").contains("port")
        );
        assert!(err("reg.io:12a/x").contains("port"));
        assert!(err(&format!("reg.io/{}", "a".repeat(260))).contains("255"));
        // Separators that are allowed.
        for ok in ["a__b", "a-b", "a---b", "a.b", "a_b"] {
            parse(&format!("ns/{ok}"));
        }
    }
}
