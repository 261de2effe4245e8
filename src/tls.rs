//! HTTPS for `berth serve`: rustls with the ring provider (the one reqwest already builds),
//! TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`.
//!
//! - The certificate chain and key come from PEM files and are re-read by
//!   [`ReloadableCert::reload`] (on SIGHUP, see [`spawn_reload_on_sighup`]). A reload that fails
//!   (unreadable file, no key, key not matching the certificate) keeps the previous pair, so a
//!   half-written renewal never takes the server down. Handshakes started after a reload get the
//!   new certificate; open connections are not touched.
//! - With a client CA bundle, client certificates are requested and verified against it but
//!   are optional: a client without one still connects (and authenticates otherwise), a client
//!   with one that does not verify is refused in the handshake. The bundle is read at start-up.
//! - [`subject_common_name`] reads the subject CN of a verified client certificate, which the
//!   server hands to the HTTP layer as [`crate::server::ClientCertificate`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS: {given} is set but {missing} is not; give both or neither")]
    Incomplete {
        given: &'static str,
        missing: &'static str,
    },
    #[error("TLS: --tls-client-ca needs --tls-cert and --tls-key")]
    ClientCaWithoutCert,
    #[error("TLS: reading {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS: {what} {}: {reason}", path.display())]
    Invalid {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "TLS: the private key in {} does not match the certificate in {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS: {0}")]
    Setup(String),
}

/// TLS as configured for `berth serve`: the acceptor for new connections and the certificate
/// it serves, which can be reloaded.
pub struct Tls {
    acceptor: TlsAcceptor,
    cert: Arc<ReloadableCert>,
    client_ca: Option<PathBuf>,
}

impl Tls {
    /// Builds the TLS setup from `tls_cert`, `tls_key` and `tls_client_ca`; `Ok(None)` when
    /// TLS is not configured. Every file is read and checked now, so a bad one fails start-up.
    pub fn from_config(config: &Config) -> Result<Option<Tls>, TlsError> {
        let (cert, key) = match (&config.tls_cert, &config.tls_key) {
            (None, None) if config.tls_client_ca.is_some() => {
                return Err(TlsError::ClientCaWithoutCert)
            }
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(TlsError::Incomplete {
                    given: "--tls-cert (tls_cert, BERTH_TLS_CERT)",
                    missing: "--tls-key (tls_key, BERTH_TLS_KEY)",
                })
            }
            (None, Some(_)) => {
                return Err(TlsError::Incomplete {
                    given: "--tls-key (tls_key, BERTH_TLS_KEY)",
                    missing: "--tls-cert (tls_cert, BERTH_TLS_CERT)",
                })
            }
            (Some(cert), Some(key)) => (cert, key),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = Arc::new(ReloadableCert::load(cert, key, provider.clone())?);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let builder = match &config.tls_client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots = load_roots(path)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| TlsError::Invalid {
                            what: "client CA bundle",
                            path: path.clone(),
                            reason: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut server_config = builder.with_cert_resolver(cert.clone());
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server_config)),
            cert,
            client_ca: config.tls_client_ca.clone(),
        }))
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// The certificate being served; [`ReloadableCert::reload`] re-reads it.
    pub fn certificate(&self) -> Arc<ReloadableCert> {
        self.cert.clone()
    }

    pub fn client_ca(&self) -> Option<&Path> {
        self.client_ca.as_deref()
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

/// The served certificate chain and key, re-read from their files on [`reload`](Self::reload).
/// As the server's certificate resolver, every handshake takes the current pair.
pub struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<ReloadableCert, TlsError> {
        let current = load_certified_key(cert_path, key_path, &provider)?;
        Ok(ReloadableCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(current)),
        })
    }

    /// Re-reads the certificate chain and key. On error the previous pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_certified_key(&self.cert_path, &self.key_path, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl fmt::Debug for ReloadableCert {
    // The key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// Reloads `cert` on every SIGHUP until the task is aborted (a no-op off Unix).
pub fn spawn_reload_on_sighup(cert: Arc<ReloadableCert>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hangups = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGHUP: no certificate reloads");
                    return;
                }
            };
            while hangups.recv().await.is_some() {
                match cert.reload() {
                    Ok(()) => tracing::info!(
                        cert = %cert.cert_path().display(),
                        "SIGHUP: tls certificate reloaded"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: tls certificate reload failed; still serving the previous one"
                    ),
                }
            }
        }
        #[cfg(not(unix))]
        drop(cert);
    })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            what,
            path: path.to_path_buf(),
            reason: "no PEM CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs("certificate", cert_path)?;
    let pem = read("private key", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        what: "private key",
        path: key_path.to_path_buf(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM PRIVATE KEY (PKCS#8, RSA or EC) block".into()
            }
            e => e.to_string(),
        },
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        },
        e => TlsError::Invalid {
            what: "certificate and key",
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        },
    })
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("client CA bundle", path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            what: "client CA bundle",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The subject Common Name of a DER X.509 certificate. `None` when the subject has no CN,
/// more than one (ambiguous), or one that is empty, holds control characters or is not a
/// UTF8String, PrintableString or IA5String. Meant for certificates rustls has already
/// verified; malformed input gives `None`, never a panic.
pub fn subject_common_name(cert: &[u8]) -> Option<String> {
    // Certificate ::= SEQUENCE { tbsCertificate TBSCertificate, ... }
    let (certificate, _) = der_expect(cert, 0x30)?;
    // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber INTEGER,
    //     signature AlgorithmIdentifier, issuer Name, validity Validity, subject Name, ... }
    let (tbs, _) = der_expect(certificate, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_read(rest)?.2;
    }
    for tag in [0x02, 0x30, 0x30, 0x30] {
        rest = der_expect(rest, tag)?.1;
    }
    // Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue)
    let (mut rdns, _) = der_expect(rest, 0x30)?;
    let mut common_name = None;
    while !rdns.is_empty() {
        let (mut set, next) = der_expect(rdns, 0x31)?;
        rdns = next;
        while !set.is_empty() {
            let (atv, next) = der_expect(set, 0x30)?;
            set = next;
            let (oid, value) = der_expect(atv, 0x06)?;
            if oid != [0x55, 0x04, 0x03] {
                continue; // not id-at-commonName (2.5.4.3)
            }
            let (tag, content, tail) = der_read(value)?;
            if !tail.is_empty() {
                return None;
            }
            let text = match tag {
                0x0c => std::str::from_utf8(content).ok()?,
                0x13 | 0x16 if content.is_ascii() => std::str::from_utf8(content).ok()?,
                _ => return None,
            };
            if text.is_empty() || text.chars().any(char::is_control) {
                return None;
            }
            if common_name.replace(text.to_owned()).is_some() {
                return None;
            }
        }
    }
    common_name
}

/// One DER TLV: (tag, contents, what follows). Definite lengths up to 4 bytes only.
fn der_read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tag numbers do not occur here
    }
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, after) = input.split_at_checked(n)?;
        input = after;
        bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b))
    };
    let (contents, rest) = input.split_at_checked(len)?;
    Some((tag, contents, rest))
}

fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = der_read(input)?;
    (t == tag).then_some((contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(dn: &[(rcgen::DnType, rcgen::DnValue)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in dn {
            params.distinguished_name.push(ty.clone(), value.clone());
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn common_name_of_a_certificate() {
        use rcgen::{DnType, DnValue};
        let utf8 = cert_with(&[
            (DnType::OrganizationName, DnValue::Utf8String("acme".into())),
            (
                DnType::CommonName,
                DnValue::Utf8String("rob\u{e9}rt".into()),
            ),
        ]);
        assert_eq!(subject_common_name(&utf8).as_deref(), Some("rob\u{e9}rt"));
        let printable = cert_with(&[(
            DnType::CommonName,
            DnValue::PrintableString("ci-bot".try_into().unwrap()),
        )]);
        assert_eq!(subject_common_name(&printable).as_deref(), Some("ci-bot"));
        let none = cert_with(&[(DnType::OrganizationName, DnValue::Utf8String("x".into()))]);
        assert_eq!(subject_common_name(&none), None);
        let control = cert_with(&[(DnType::CommonName, DnValue::Utf8String("a\nb".into()))]);
        assert_eq!(subject_common_name(&control), None);
        // Truncations and garbage never panic.
        for end in 0..utf8.len() {
            let _ = subject_common_name(&utf8[..end]);
        }
        assert_eq!(subject_common_name(b"\x30\x84\xff\xff\xff\xff"), None);
        assert_eq!(subject_common_name(b""), None);
    }
}
