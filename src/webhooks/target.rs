//! Where deliveries may go. A webhook URL is chosen by a namespace admin, not by the server's
//! operator, so without a rule it reaches the server's own loopback services, the private
//! network behind it and cloud metadata endpoints (SSRF). Unless the server allows private
//! targets (`webhook_allow_private`), loopback, private (RFC 1918, unique-local, CGNAT),
//! link-local, unspecified and multicast addresses are refused: by literal address when the
//! URL is checked, and by every resolved address when a connection is made, so a name that
//! resolves (or rebinds) to one is refused too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// A target refused by the rule above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is a loopback, private or link-local address; the server refuses webhook targets there unless webhook_allow_private is set")]
pub struct Refused(pub String);

/// True for addresses a webhook may not reach unless private targets are allowed.
pub fn is_private(ip: IpAddr) -> bool {
    if crate::importer::allowed::is_special_ip(ip) {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => (v6.segments()[0] & 0xfe00) == 0xfc00 || v6.is_multicast(),
        },
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_private()
        || v4.is_multicast()
        || v4.is_broadcast()
        // 100.64.0.0/10, carrier-grade NAT: private in practice.
        || (a == 100 && (64..128).contains(&b))
}

/// Checks a URL before anything is sent: scheme, host, and a literal address.
pub fn check_url(url: &str, allow_private: bool) -> Result<Url, String> {
    let url = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not allowed (they would be logged)".into());
    }
    let refused = |what: String| Refused(what).to_string();
    match url.host() {
        None => return Err("the URL needs a host".into()),
        Some(_) if allow_private => {}
        Some(Host::Ipv4(ip)) if is_private(IpAddr::V4(ip)) => return Err(refused(ip.to_string())),
        Some(Host::Ipv6(ip)) if is_private(IpAddr::V6(ip)) => return Err(refused(ip.to_string())),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") {
                return Err(refused(d));
            }
        }
        Some(_) => {}
    }
    Ok(url)
}

/// A DNS resolver that refuses names resolving to private addresses, at connect time.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let name = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_private(a.ip())) {
                return Err(Box::new(Refused(format!("{name} ({})", bad.ip())))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_targets_are_refused_unless_allowed() {
        for bad in [
            "http://127.0.0.1:8080/hook",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
            "http://localhost:9000/",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
            assert!(check_url(bad, true).is_ok(), "{bad}");
        }
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        assert!(check_url("https://8.8.8.8/x", false).is_ok());
        assert!(check_url("ftp://example.com/", true).is_err());
        assert!(check_url("https://u:p@example.com/", true).is_err());
    }
}
