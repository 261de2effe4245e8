//! Which registries berth may fetch from (OpenShift's `allowedRegistriesForImport`): anyone who
//! may import makes the server send requests wherever a pull spec, a token realm or a redirect
//! points, so without a limit an `edit` user reaches the server's own loopback services and
//! cloud metadata endpoints (SSRF).
//!
//! - An empty list allows every registry except loopback (127.0.0.0/8, ::1, `localhost`) and
//!   link-local (169.254.0.0/16, fe80::/10) ones; 0.0.0.0 and :: count as loopback, since
//!   connecting to them reaches this host.
//! - A non-empty list allows only registries one of its patterns matches.
//! - A loopback or link-local target needs a pattern naming that host exactly (no wildcard).
//! - An entry with `insecure = false` allows no insecure import (plain HTTP, unverified TLS).
//!
//! A pattern is `HOST[:PORT]`: `*.example.com` matches every name under example.com (not the
//! apex), `*` as the port matches any port, and without a port it matches the standard ones (443,
//! 80, or none given). The addresses a name resolves to are checked when the connection is made
//! ([`AllowedRegistries::resolver`]), so a name that resolves to 127.0.0.1 (by design or by DNS
//! rebinding after an earlier check) is refused too.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// A refused target, with OpenShift's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("importing images from registry {registry:?} is forbidden: {why}")]
pub struct Refused {
    /// As written (`host[:port]`).
    pub registry: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// Lowercase, without a trailing dot.
    Name(String),
    Ip(IpAddr),
}

impl Host {
    fn parse(s: &str) -> Option<Host> {
        let inner = s.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
        if let Some(v6) = inner {
            return v6.parse().ok().map(Host::Ip);
        }
        if let Ok(ip) = s.parse::<std::net::Ipv4Addr>() {
            return Some(Host::Ip(IpAddr::V4(ip)));
        }
        let name = s.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        valid.then_some(Host::Name(name))
    }

    /// Loopback or link-local, by address or by name (RFC 6761 reserves `localhost`).
    fn is_special(&self) -> bool {
        match self {
            Host::Ip(ip) => is_special_ip(*ip),
            Host::Name(n) => n == "localhost" || n.ends_with(".localhost"),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Loopback, link-local or unspecified (which reaches this host too), IPv4-mapped included.
pub fn is_special_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.octets()[0] == 0,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_special_ip(IpAddr::V4(v4)),
            None => {
                v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(Host),
    /// `*.example.com` as `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    /// None given: 443, 80, or a target without a port.
    Standard,
    Exact(u16),
    Any,
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryPattern {
    host: HostPattern,
    port: PortPattern,
    insecure: bool,
}

impl RegistryPattern {
    /// Parses `HOST[:PORT]` (`*.` host prefix, `*` port; IPv6 in brackets).
    pub fn parse(pattern: &str, insecure: bool) -> Result<RegistryPattern, String> {
        let bad = |why: &str| format!("invalid registry pattern {pattern:?}: {why}");
        let (host, port) = match pattern.rfind(':') {
            Some(i) if !pattern[i..].contains(']') => (&pattern[..i], Some(&pattern[i + 1..])),
            _ => (pattern, None),
        };
        let port = match port {
            None => PortPattern::Standard,
            Some("*") => PortPattern::Any,
            Some(p) => PortPattern::Exact(
                p.parse()
                    .map_err(|_| bad("the port must be a number or *"))?,
            ),
        };
        let host =
            match host.strip_prefix("*.") {
                Some(rest) => match Host::parse(rest) {
                    Some(Host::Name(n)) => HostPattern::Suffix(format!(".{n}")),
                    _ => return Err(bad("*. must be followed by a domain name")),
                },
                None => HostPattern::Exact(Host::parse(host).ok_or_else(|| {
                    bad("expected HOST[:PORT], e.g. quay.io or *.example.com:5000")
                })?),
            };
        Ok(RegistryPattern {
            host,
            port,
            insecure,
        })
    }

    fn matches_host(&self, host: &Host) -> bool {
        match (&self.host, host) {
            (HostPattern::Exact(h), host) => h == host,
            (HostPattern::Suffix(suffix), Host::Name(n)) => n.ends_with(suffix.as_str()),
            (HostPattern::Suffix(_), Host::Ip(_)) => false,
        }
    }

    fn matches_port(&self, port: Option<u16>) -> bool {
        match self.port {
            PortPattern::Any => true,
            PortPattern::Standard => matches!(port, None | Some(443) | Some(80)),
            PortPattern::Exact(p) => port == Some(p) || (p == 443 && port.is_none()),
        }
    }

    /// Names `host` itself, not by a wildcard.
    fn names(&self, host: &Host) -> bool {
        matches!(&self.host, HostPattern::Exact(h) if h == host)
    }
}

/// The list, as configured. An empty list is the default.
#[derive(Debug, Clone, Default)]
pub struct AllowedRegistries {
    patterns: Vec<RegistryPattern>,
}

/// A host and optional port, parsed from `host[:port]` as written in a pull spec.
fn split_registry(registry: &str) -> Option<(Host, Option<u16>)> {
    let (host, port) = match registry.rfind(':') {
        Some(i) if !registry[i..].contains(']') => {
            (&registry[..i], Some(registry[i + 1..].parse().ok()?))
        }
        _ => (registry, None),
    };
    Some((Host::parse(host)?, port))
}

impl AllowedRegistries {
    pub fn new(patterns: Vec<RegistryPattern>) -> AllowedRegistries {
        AllowedRegistries { patterns }
    }

    /// Whether `registry` (`host[:port]` as in a pull spec) may be fetched from, over an
    /// insecure transport too when `insecure`. Checks the name only; see
    /// [`AllowedRegistries::admit_resolved`] and [`AllowedRegistries::resolver`].
    pub fn admit(&self, registry: &str, insecure: bool) -> Result<(), Refused> {
        let refused = |why: String| Refused {
            registry: registry.to_string(),
            why,
        };
        let Some((host, port)) = split_registry(registry) else {
            return Err(refused("not a valid registry host".into()));
        };
        let special = host.is_special();
        let matching: Vec<&RegistryPattern> = self
            .patterns
            .iter()
            .filter(|p| p.matches_host(&host) && p.matches_port(port))
            .collect();
        if !self.patterns.is_empty() && matching.is_empty() {
            return Err(refused(
                "it is not in allowed_registries_for_import".to_string(),
            ));
        }
        if special && !matching.iter().any(|p| p.names(&host)) {
            return Err(refused(special_reason(&host.to_string())));
        }
        let admits =
            |p: &&RegistryPattern| (!special || p.names(&host)) && (!insecure || p.insecure);
        if !self.patterns.is_empty() && !matching.iter().any(admits) {
            return Err(refused(
                "insecure imports from it are not allowed (allowed_registries_for_import lists \
                 it with insecure = false)"
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// [`AllowedRegistries::admit`] for the target of a URL (a redirect, a token realm); plain
    /// HTTP is an insecure transport.
    pub fn admit_url(&self, url: &Url) -> Result<(), Refused> {
        let registry = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        self.admit(&registry, url.scheme() == "http")
    }

    /// [`AllowedRegistries::admit`], then the addresses `api_host` (where `registry`'s API is
    /// served) resolves to now. A name that does not resolve is left to the fetch to report.
    pub async fn admit_resolved(
        &self,
        registry: &str,
        api_host: &str,
        insecure: bool,
    ) -> Result<(), Refused> {
        self.admit(registry, insecure)?;
        let Some((Host::Name(name), _)) = split_registry(api_host) else {
            return Ok(());
        };
        let Ok(addrs) = tokio::net::lookup_host((name.as_str(), 0)).await else {
            return Ok(());
        };
        let addrs: Vec<SocketAddr> = addrs.collect();
        self.admit_addresses(&name, &addrs).map_err(|why| Refused {
            registry: registry.to_string(),
            why,
        })
    }

    /// Refuses a name resolving to a loopback or link-local address, unless a pattern names
    /// the name or the address exactly.
    fn admit_addresses(&self, name: &str, addrs: &[SocketAddr]) -> Result<(), String> {
        let host = Host::parse(name).unwrap_or_else(|| Host::Name(name.to_ascii_lowercase()));
        for ip in addrs
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| is_special_ip(*ip))
        {
            let named = self
                .patterns
                .iter()
                .any(|p| p.names(&host) || p.names(&Host::Ip(ip)));
            if !named {
                return Err(special_reason(&format!("{name} resolves to {ip}, which")));
            }
        }
        Ok(())
    }

    /// A DNS resolver for the HTTP client that refuses (with a [`Refused`] error) names that
    /// resolve to addresses this list does not allow, at connect time: every connection,
    /// redirects and token realms included, goes through it.
    pub fn resolver(self: &Arc<Self>) -> Arc<CheckedResolver> {
        Arc::new(CheckedResolver {
            allowed: self.clone(),
        })
    }
}

fn special_reason(what: &str) -> String {
    format!(
        "{what} is a loopback or link-local address, refused unless \
         allowed_registries_for_import names it"
    )
}

/// See [`AllowedRegistries::resolver`].
pub struct CheckedResolver {
    allowed: Arc<AllowedRegistries>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            allowed
                .admit_addresses(&name, &addrs)
                .map_err(|why| Refused {
                    registry: name.clone(),
                    why,
                })?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The [`Refused`] somewhere in an error's sources (the HTTP client wraps what the resolver
/// and the redirect policy return).
pub fn find_refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[(&str, bool)]) -> AllowedRegistries {
        AllowedRegistries::new(
            patterns
                .iter()
                .map(|(p, insecure)| RegistryPattern::parse(p, *insecure).unwrap())
                .collect(),
        )
    }

    fn why(allowed: &AllowedRegistries, registry: &str, insecure: bool) -> String {
        allowed.admit(registry, insecure).unwrap_err().to_string()
    }

    #[test]
    fn patterns_parse() {
        for bad in [
            "",
            "*",
            "*.",
            "a:b",
            "a:99999",
            "*.1.2.3.4",
            "a/b",
            "[::1",
            "a b",
        ] {
            assert!(RegistryPattern::parse(bad, false).is_err(), "{bad:?}");
        }
        for good in [
            "quay.io",
            "Quay.IO.",
            "*.example.com:*",
            "[::1]:5000",
            "127.0.0.1:*",
        ] {
            assert!(RegistryPattern::parse(good, false).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn wildcards_and_ports() {
        let allowed = list(&[
            ("*.example.com", false),
            ("quay.io:*", false),
            ("registry.local:5000", false),
        ]);
        for ok in [
            "a.example.com",
            "a.b.example.com:443",
            "A.Example.COM:80",
            "quay.io:8443",
            "quay.io",
            "registry.local:5000",
        ] {
            assert_eq!(allowed.admit(ok, false), Ok(()), "{ok}");
        }
        for refused in [
            "example.com",
            "evilexample.com",
            "a.example.com:5000",
            "registry.local",
            "registry.local:5001",
            "docker.io",
        ] {
            assert_eq!(
                why(&allowed, refused, false),
                format!(
                    "importing images from registry {refused:?} is forbidden: it is not in \
                     allowed_registries_for_import"
                ),
                "{refused}"
            );
        }
        let exact_443 = list(&[("quay.io:443", false)]);
        assert_eq!(exact_443.admit("quay.io", false), Ok(()));
        assert!(exact_443.admit("quay.io:80", false).is_err());
    }

    #[test]
    fn loopback_and_link_local_need_an_exact_entry() {
        let open = AllowedRegistries::default();
        assert_eq!(open.admit("quay.io", true), Ok(()));
        assert_eq!(open.admit("10.0.0.1:5000", true), Ok(()));
        for special in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "LOCALHOST.",
            "x.localhost",
            "[::1]:5000",
            "[::ffff:127.0.0.1]",
            "169.254.169.254",
            "[fe80::1]:80",
            "0.0.0.0:5000",
            "[::]:5000",
        ] {
            let message = why(&open, special, false);
            assert!(
                message.contains("is a loopback or link-local address"),
                "{special}: {message}"
            );
        }
        let wildcard = list(&[("*.localhost:*", true)]);
        assert!(wildcard.admit("x.localhost:5000", false).is_err());
        let named = list(&[("127.0.0.1:*", true), ("localhost:5000", false)]);
        assert_eq!(named.admit("127.0.0.1:5000", true), Ok(()));
        assert_eq!(named.admit("localhost:5000", false), Ok(()));
        assert!(named.admit("127.0.0.2:5000", false).is_err());
    }

    #[test]
    fn insecure_needs_an_insecure_entry() {
        let allowed = list(&[("secure.example.com", false), ("*.lab.example.com:*", true)]);
        assert_eq!(allowed.admit("secure.example.com", false), Ok(()));
        assert!(why(&allowed, "secure.example.com", true).contains("insecure = false"));
        assert_eq!(allowed.admit("r.lab.example.com:5000", true), Ok(()));
        let url = |u: &str| Url::parse(u).unwrap();
        assert!(allowed
            .admit_url(&url("http://secure.example.com/v2/"))
            .is_err());
        assert_eq!(
            allowed.admit_url(&url("https://secure.example.com/token")),
            Ok(())
        );
        assert!(AllowedRegistries::default()
            .admit_url(&url("http://169.254.169.254/latest/meta-data"))
            .is_err());
    }

    #[test]
    fn resolved_addresses() {
        let open = AllowedRegistries::default();
        let at = |ip: &str| vec![SocketAddr::new(ip.parse().unwrap(), 0)];
        assert_eq!(open.admit_addresses("quay.io", &at("203.0.113.5")), Ok(()));
        let refused = open.admit_addresses("rebind.example", &at("127.0.0.1"));
        assert_eq!(
            refused.unwrap_err(),
            "rebind.example resolves to 127.0.0.1, which is a loopback or link-local address, \
             refused unless allowed_registries_for_import names it"
        );
        let named = list(&[("127.0.0.1:*", true)]);
        assert_eq!(
            named.admit_addresses("rebind.example", &at("127.0.0.1")),
            Ok(())
        );
        assert!(named.admit_addresses("x", &at("::1")).is_err());
        let by_name = list(&[("registry.internal:5000", false)]);
        assert_eq!(
            by_name.admit_addresses("registry.internal", &at("169.254.1.1")),
            Ok(())
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_that_resolve_to_loopback() {
        let open = Arc::new(AllowedRegistries::default());
        let resolver = open.resolver();
        let err = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolved"),
            Err(e) => e,
        };
        let refusal = find_refusal(err.as_ref()).expect("a Refused error");
        assert!(
            refusal.why.starts_with("localhost resolves to"),
            "{refusal}"
        );
        let allowed = Arc::new(list(&[("localhost:*", false)]));
        assert!(allowed
            .resolver()
            .resolve("localhost".parse().unwrap())
            .await
            .is_ok());
        assert!(open
            .admit_resolved("localhost.:5000", "localhost.", false)
            .await
            .is_err());
    }
}
