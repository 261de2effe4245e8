//! Validated names: repository (`<namespace>/<stream>`), tag and manifest reference.
//!
//! Every name entering berth is parsed here once; the rest of the code only sees these types.

use std::fmt;

use berth_storage::Digest;

/// Longest namespace or stream name: both must fit a DNS label / Kubernetes object name.
pub const MAX_NAME_SEGMENT: usize = 63;
/// Longest tag, from the distribution spec's tag grammar.
pub const MAX_TAG: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("repository name must be <namespace>/<stream> (exactly two path segments), got {0:?}")]
    NotTwoSegments(String),
    #[error("namespace {0:?} must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters")]
    Namespace(String),
    #[error(
        "stream name {0:?} must match [a-z0-9]+(?:[._-][a-z0-9]+)* and be at most 63 characters"
    )]
    Stream(String),
    #[error("tag {0:?} must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}")]
    Tag(String),
}

/// A DNS-1123 label of at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NAME_SEGMENT
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Namespace(s.to_string()))
        } else {
            Err(NameError::Namespace(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An image stream name: `[a-z0-9]+(?:[._-][a-z0-9]+)*`, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(String);

impl StreamName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NAME_SEGMENT
            && s.split(['.', '_', '-']).all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if ok {
            Ok(StreamName(s.to_string()))
        } else {
            Err(NameError::Stream(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `<namespace>/<stream>`: the only repository shape berth serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName {
    namespace: Namespace,
    stream: StreamName,
    full: String,
}

impl RepositoryName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let mut parts = s.split('/');
        let (Some(ns), Some(stream), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NameError::NotTwoSegments(s.to_string()));
        };
        Ok(Self::new(Namespace::parse(ns)?, StreamName::parse(stream)?))
    }

    pub fn new(namespace: Namespace, stream: StreamName) -> Self {
        let full = format!("{}/{}", namespace.0, stream.0);
        RepositoryName {
            namespace,
            stream,
            full,
        }
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    pub fn stream(&self) -> &StreamName {
        &self.stream
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`, case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let mut bytes = s.bytes();
        let ok = s.len() <= MAX_TAG
            && bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(s.to_string()))
        } else {
            Err(NameError::Tag(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        let r = RepositoryName::parse("my-ns/my.stream_1").unwrap();
        assert_eq!(r.namespace().as_str(), "my-ns");
        assert_eq!(r.stream().as_str(), "my.stream_1");
        for bad in [
            "single", "a/b/c", "A/b", "a/B", "-a/b", "a-/b", "a/.b", "a/b..c", "a//b", "/b", "a/",
        ] {
            assert!(RepositoryName::parse(bad).is_err(), "{bad}");
        }
        let long = "a".repeat(64);
        assert!(matches!(
            RepositoryName::parse(&format!("{long}/s")),
            Err(NameError::Namespace(_))
        ));
        assert!(matches!(
            RepositoryName::parse(&format!("ns/{long}")),
            Err(NameError::Stream(_))
        ));
        assert!(RepositoryName::parse(&format!("{}/{}", &long[1..], &long[1..])).is_ok());
    }

    #[test]
    fn tags() {
        for good in ["latest", "TEST0", "_x", "v1.2.3-rc_1", &"a".repeat(128)] {
            assert!(Tag::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".INVALID_MANIFEST_NAME",
            "-x",
            "a:b",
            "a/b",
            &"a".repeat(129),
        ] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }
}
