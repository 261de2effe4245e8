//! The server loop: accepts connections on an injected listener until an injected shutdown
//! future resolves, then drains in-flight requests. With TLS, each connection's handshake runs
//! in its own task (bounded by [`Limits::tls_handshake_timeout`]), and a verified client
//! certificate's subject CN goes into every request of that connection as a
//! [`ClientCertificate`]. Every request carries its connection's peer address as a
//! [`RemoteAddr`].
//!
//! Every connection costs a file descriptor and buffers, so their number is capped: at the
//! cap the loop stops accepting (the kernel's backlog holds newcomers) until one closes. A
//! connection is closed when a request header takes too long, and when no request has been in
//! flight on it for the idle timeout (that also covers clients that never send a byte, which
//! hyper's header timer does not see before the protocol is known).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::http::State;

/// How long in-flight requests may take to finish after shutdown is requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the loop pauses after a failed `accept()` (EMFILE, ENFILE, ENOBUFS...): retrying at
/// once would only fail again, at full CPU.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What one connection may cost, and for how long (defaults: `crate::config::Config`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; beyond it the loop waits for one to close.
    pub max_connections: usize,
    /// Largest request header (request line and fields) of HTTP/1.1, and header list of
    /// HTTP/2; larger ones get 431.
    pub max_header_bytes: usize,
    /// Most header fields of an HTTP/1.1 request; more get 431.
    pub max_headers: usize,
    /// Time a client has to send a complete request header, counted from when the connection
    /// is ready for the next request (so on HTTP/1.1 it also ends idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
}

/// hyper's smallest allowed HTTP/1 buffer; the header limit cannot go below it.
const MIN_HTTP1_BUFFER: usize = 8192;

/// The client certificate a TLS connection presented and the server verified against the
/// configured client CA bundle (`tls_client_ca`), found in the extensions of every request on
/// that connection. Absent on plain HTTP, without a client certificate, or when the verified
/// certificate has no single usable subject Common Name (see [`crate::tls::subject_common_name`]).
#[derive(Clone, Debug)]
pub struct ClientCertificate {
    /// The subject Common Name.
    pub common_name: String,
}

/// Closes the connection a request came on, whatever it is doing: for a response that can no
/// longer be delivered (a watcher that stopped reading), which hyper would otherwise keep
/// waiting to write. Found in every request's extensions.
#[derive(Clone, Debug, Default)]
pub struct CloseConnection(Arc<tokio::sync::Notify>);

impl CloseConnection {
    pub fn close(&self) {
        // A permit is kept if the connection is not waiting right now.
        self.0.notify_one();
    }

    async fn closed(&self) {
        self.0.notified().await;
    }
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
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = builder(&limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut accept_failures = AcceptFailures::default();
    let mut at_capacity = false;
    tokio::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !std::mem::replace(&mut at_capacity, true) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: not accepting until a connection closes"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                accept_failures.failed(&e);
                drop(slot);
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        accept_failures.recovered();
        if slots.available_permits() > 0 {
            at_capacity = false;
        }
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        // Taken now, so a shutdown also waits for connections still in their handshake.
        let watcher = graceful.watcher();
        let idle_timeout = limits.idle_timeout;
        let Some(acceptor) = tls.clone() else {
            let served = connection(&builder, stream, peer, None, state, watcher, idle_timeout);
            tokio::spawn(async move {
                served.await;
                drop(slot);
            });
            continue;
        };
        let builder = builder.clone();
        let handshake_timeout = limits.tls_handshake_timeout;
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
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
            connection(
                &builder,
                stream,
                peer,
                client_cert,
                state,
                watcher,
                idle_timeout,
            )
            .await;
            drop(slot);
        });
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

/// The protocol settings every connection shares.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut http1 = builder.http1();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper refuses a header that does not fit its read buffer.
        .max_buf_size(limits.max_header_bytes.max(MIN_HTTP1_BUFFER));
    if limits.max_headers != 100 {
        // Only when changed: hyper then parses into a heap buffer instead of the stack.
        http1.max_headers(limits.max_headers);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Logs a burst of failing `accept()`s once, not once per failure.
#[derive(Default)]
struct AcceptFailures {
    in_burst: u64,
}

impl AcceptFailures {
    fn failed(&mut self, e: &std::io::Error) {
        if self.in_burst == 0 {
            tracing::warn!(
                error = %e,
                "accept failed (out of file descriptors?); pausing {ACCEPT_BACKOFF:?} between retries"
            );
        }
        self.in_burst += 1;
    }

    fn recovered(&mut self) {
        if self.in_burst > 0 {
            tracing::info!(failures = self.in_burst, "accepting connections again");
            self.in_burst = 0;
        }
    }
}

/// Whether a connection has requests in flight, and since when it has had none.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.idle_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let deadline = if self.in_flight.load(Ordering::SeqCst) == 0 {
                *self.lock() + limit
            } else {
                Instant::now() + limit
            };
            tokio::time::sleep_until(deadline).await;
            if self.in_flight.load(Ordering::SeqCst) == 0 && *self.lock() + limit <= Instant::now()
            {
                return;
            }
        }
    }
}

/// A request in flight, from its header to the end of its response body.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut since = self.0.lock();
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *since = Instant::now();
        }
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
struct Tracked {
    body: crate::http::response::Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves one connection (HTTP/1.1 or HTTP/2) until it closes, a graceful shutdown ends it,
/// or it has been idle for `idle_timeout`. Every request on it carries `client_cert`.
fn connection<S>(
    builder: &auto::Builder<TokioExecutor>,
    stream: S,
    peer: std::net::SocketAddr,
    client_cert: Option<ClientCertificate>,
    state: Arc<State>,
    watcher: Watcher,
    idle_timeout: Duration,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connections = state.metrics.connections();
    let activity = Activity::new();
    let counted = activity.clone();
    let closer = CloseConnection::default();
    let close = closer.clone();
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let in_flight = counted.enter();
        req.extensions_mut().insert(RemoteAddr(peer));
        req.extensions_mut().insert(close.clone());
        if let Some(cert) = &client_cert {
            req.extensions_mut().insert(cert.clone());
        }
        let state = state.clone();
        async move {
            let req = req.map(crate::http::box_body);
            let response = crate::http::handle(&state, req).await;
            Ok::<_, Infallible>(response.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        }
    });
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    let conn = watcher.watch(conn);
    async move {
        let _open = connections.open();
        tokio::select! {
            ended = conn => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            () = activity.idle_for(idle_timeout) => {
                tracing::debug!(%peer, "idle connection closed");
            }
            () = closer.closed() => {
                tracing::debug!(%peer, "connection closed by the server");
            }
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
