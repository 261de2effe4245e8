//! The server loop: accepts connections on an injected listener until an injected shutdown
//! future resolves, then drains in-flight requests. With TLS, each connection's handshake runs
//! in its own task (bounded by [`HANDSHAKE_TIMEOUT`]), and a verified client certificate's
//! subject CN goes into every request of that connection as a [`ClientCertificate`]. Every
//! request carries its connection's peer address as a [`RemoteAddr`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::http::State;

/// How long in-flight requests may take to finish after shutdown is requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client certificate a TLS connection presented and the server verified against the
/// configured client CA bundle (`tls_client_ca`), found in the extensions of every request on
/// that connection. Absent on plain HTTP, without a client certificate, or when the verified
/// certificate has no single usable subject Common Name (see [`crate::tls::subject_common_name`]).
#[derive(Clone, Debug)]
pub struct ClientCertificate {
    /// The subject Common Name.
    pub common_name: String,
}

/// The address of the connection's peer (the TCP peer: a proxy in front is what it sees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteAddr(pub std::net::SocketAddr);

/// Serves connections from `listener` (over TLS when `tls` is given) until `shutdown`
/// resolves, then drains in-flight requests.
pub async fn run(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                // Taken now, so a shutdown also waits for connections still in their handshake.
                let watcher = graceful.watcher();
                let Some(acceptor) = tls.clone() else {
                    tokio::spawn(connection(&builder, stream, peer, None, state, watcher));
                    continue;
                };
                let builder = builder.clone();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "tls handshake timed out");
                            return;
                        }
                    };
                    let client_cert = verified_client_certificate(stream.get_ref().1);
                    connection(&builder, stream, peer, client_cert, state, watcher).await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; closing anyway");
        }
    }
}

/// Serves one connection (HTTP/1.1 or HTTP/2) until it closes or a graceful shutdown ends it.
/// Every request on it carries `client_cert`.
fn connection<S>(
    builder: &auto::Builder<TokioExecutor>,
    stream: S,
    peer: std::net::SocketAddr,
    client_cert: Option<ClientCertificate>,
    state: Arc<State>,
    watcher: Watcher,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connections = state.metrics.connections();
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(RemoteAddr(peer));
        if let Some(cert) = &client_cert {
            req.extensions_mut().insert(cert.clone());
        }
        let state = state.clone();
        async move {
            let req = req.map(crate::http::box_body);
            Ok::<_, Infallible>(crate::http::handle(&state, req).await)
        }
    });
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    let conn = watcher.watch(conn);
    async move {
        let _open = connections.open();
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// The identity of the client certificate a finished handshake verified, if any. rustls only
/// lets a handshake with a client certificate finish when the certificate verified.
fn verified_client_certificate(conn: &rustls::ServerConnection) -> Option<ClientCertificate> {
    let leaf = conn.peer_certificates()?.first()?;
    match crate::tls::subject_common_name(leaf) {
        Some(common_name) => Some(ClientCertificate { common_name }),
        None => {
            tracing::debug!("verified client certificate without a single usable subject CN");
            None
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};

    struct Issued {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    fn issue(cn: &str, sans: &[&str], ca: Option<&Issued>, client: bool) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = match ca {
            None => {
                params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                params.self_signed(&key).unwrap()
            }
            Some(ca) => {
                params.extended_key_usages = vec![if client {
                    rcgen::ExtendedKeyUsagePurpose::ClientAuth
                } else {
                    rcgen::ExtendedKeyUsagePurpose::ServerAuth
                }];
                params.signed_by(&key, &ca.cert, &ca.key).unwrap()
            }
        };
        Issued { cert, key }
    }

    /// A real handshake over an in-memory pipe: the server side sees the verified client
    /// certificate's CN, and nothing without a client certificate.
    #[tokio::test]
    async fn client_certificate_common_name_from_a_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let ca = issue("test ca", &[], None, false);
        let server = issue("server", &["localhost"], Some(&ca), false);
        let client = issue("alice", &[], Some(&ca), true);
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let config = crate::config::Config {
            tls_cert: Some(write("server.crt", server.cert.pem())),
            tls_key: Some(write("server.key", server.key.serialize_pem())),
            tls_client_ca: Some(write("ca.crt", ca.cert.pem())),
            ..Default::default()
        };
        let acceptor = crate::tls::Tls::from_config(&config)
            .unwrap()
            .unwrap()
            .acceptor();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let with_cert = builder
            .clone()
            .with_client_auth_cert(
                vec![CertificateDer::from(client.cert.der().to_vec())],
                PrivatePkcs8KeyDer::from(client.key.serialize_der()).into(),
            )
            .unwrap();
        let without_cert = builder.with_no_client_auth();

        for (client_config, expect) in [(with_cert, Some("alice")), (without_cert, None)] {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
            let name = ServerName::try_from("localhost").unwrap();
            let (server_side, client_side) =
                tokio::join!(acceptor.accept(a), connector.connect(name, b));
            let server_side = server_side.unwrap();
            client_side.unwrap();
            let seen = verified_client_certificate(server_side.get_ref().1);
            assert_eq!(seen.map(|c| c.common_name).as_deref(), expect);
        }
    }
}
