//! HTTPS: a CA, server and client certificates made at test time (rcgen); the server in-process
//! (and once as the real binary, for SIGHUP), driven with reqwest and raw rustls clients.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::config::Config;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

// ---- certificates -------------------------------------------------------------------------

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A certificate and its key, as PEM and DER.
#[derive(Clone)]
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Usage {
    Server,
    Client,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `cn` with serial `serial`: a server certificate for 127.0.0.1 (IP SAN)
    /// or a client certificate.
    fn issue(&self, cn: &str, serial: u64, usage: Usage) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let sans = match usage {
            Usage::Server => vec!["127.0.0.1".to_string()],
            Usage::Client => vec![],
        };
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.extended_key_usages = vec![match usage {
            Usage::Server => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        }];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// server.crt / server.key in `dir`.
fn write_pair(dir: &Path, leaf: &Leaf) -> (PathBuf, PathBuf) {
    (
        write(dir, "server.crt", &leaf.cert_pem),
        write(dir, "server.key", &leaf.key_pem),
    )
}

// ---- clients ------------------------------------------------------------------------------

/// An HTTPS client trusting only `ca` (nothing when None), presenting `identity`.
fn https_client(ca: Option<&Ca>, identity: Option<&Leaf>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap());
    }
    if let Some(id) = identity {
        let pem = format!("{}{}", id.cert_pem, id.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// GET /v2/; the status and the DER certificate the server presented.
async fn get_v2(client: &reqwest::Client, addr: SocketAddr) -> reqwest::Result<(u16, Vec<u8>)> {
    let resp = client.get(format!("https://{addr}/v2/")).send().await?;
    let cert = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info with the peer certificate")
        .to_vec();
    Ok((resp.status().as_u16(), cert))
}

/// A raw rustls handshake with the given versions and ALPN protocols.
async fn handshake(
    addr: SocketAddr,
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

/// Sends a minimal pre-TLS-1.3 ClientHello (no supported_versions extension) announcing
/// `version`; returns the first 7 bytes of the server's reply.
async fn raw_hello(addr: SocketAddr, version: [u8; 2]) -> [u8; 7] {
    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend(kind.to_be_bytes());
        out.extend((body.len() as u16).to_be_bytes());
        out.extend(body);
    }
    let mut extensions = Vec::new();
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    ext(&mut extensions, 0x000d, &[0, 6, 4, 3, 8, 4, 4, 1]);
    // supported_groups: x25519, secp256r1; ec_point_formats: uncompressed
    ext(&mut extensions, 0x000a, &[0, 4, 0, 0x1d, 0, 0x17]);
    ext(&mut extensions, 0x000b, &[1, 0]);
    let mut hello = version.to_vec();
    hello.extend([0x5a; 32]); // random
    hello.push(0); // no session id
                   // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-SHA
    hello.extend([0, 6, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x13]);
    hello.extend([1, 0]); // null compression
    hello.extend((extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);
    let mut message = vec![0x01, 0x00]; // ClientHello, 24-bit length
    message.extend((hello.len() as u16).to_be_bytes());
    message.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((message.len() as u16).to_be_bytes());
    record.extend(message);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let mut reply = [0u8; 7];
    tcp.read_exact(&mut reply).await.unwrap();
    reply
}

// ---- in-process server --------------------------------------------------------------------

struct TlsServer {
    addr: SocketAddr,
    cert: Option<Arc<berth::tls::ReloadableCert>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _data: tempfile::TempDir,
}

impl TlsServer {
    async fn start(tweak: impl FnOnce(&mut Config)) -> TlsServer {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().to_path_buf(),
            ..Config::default()
        };
        tweak(&mut config);
        let server = berth::Server::bind(config).await.expect("server binds");
        let addr = server.local_addr().unwrap();
        let cert = server.tls_certificate();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        TlsServer {
            addr,
            cert,
            stop: Some(stop),
            task: Some(task),
            _data: data,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

async fn start_tls(dir: &Path, leaf: &Leaf, client_ca: Option<&Ca>) -> TlsServer {
    let (cert, key) = write_pair(dir, leaf);
    let client_ca = client_ca.map(|ca| write(dir, "clients.crt", &ca.pem()));
    TlsServer::start(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.tls_client_ca = client_ca;
    })
    .await
}

// ---- tests --------------------------------------------------------------------------------

#[tokio::test]
async fn https_with_the_ca_trusted_and_not_without() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("berth test ca");
    let leaf = ca.issue("berth-server", 1, Usage::Server);
    let server = start_tls(dir.path(), &leaf, None).await;

    let (status, cert) = get_v2(&https_client(Some(&ca), None), server.addr)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(cert, leaf.der, "the configured certificate is served");

    let err = get_v2(&https_client(None, None), server.addr)
        .await
        .expect_err("an untrusted certificate must fail");
    assert!(err.is_connect(), "{err:?}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/v2/", server.addr))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    server.stop().await;
}

#[tokio::test]
async fn tls_versions_and_alpn() {
    use rustls::version::{TLS12, TLS13};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("berth test ca");
    let server = start_tls(dir.path(), &ca.issue("s", 1, Usage::Server), None).await;

    let tls13 = handshake(server.addr, &ca, &[&TLS13, &TLS12], &[b"h2", b"http/1.1"]).await;
    assert_eq!(
        tls13.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(tls13.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // HTTP/2 is spoken: the server answers the connection preface with its SETTINGS frame.
    let mut h2 = tls13;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut frame = [0u8; 9];
    h2.read_exact(&mut frame).await.unwrap();
    assert_eq!(frame[3], 0x04, "first frame is SETTINGS: {frame:?}");
    drop(h2); // an open connection would hold up the graceful stop

    let tls12 = handshake(server.addr, &ca, &[&TLS12], &[b"http/1.1"]).await;
    assert_eq!(
        tls12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(tls12.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut h1 = tls12;
    h1.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = h1.read_to_end(&mut answer).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A ClientHello that only differs in its version: TLS 1.2 gets a ServerHello, TLS 1.1 a
    // protocol_version alert.
    assert_eq!(
        raw_hello(server.addr, [3, 3]).await[..1],
        [0x16],
        "handshake record"
    );
    let reply = raw_hello(server.addr, [3, 2]).await;
    assert_eq!(reply[0], 0x15, "an alert record: {reply:?}");
    assert_eq!(reply[6], 70, "protocol_version alert: {reply:?}");
    server.stop().await;
}

#[tokio::test]
async fn reload_serves_the_new_certificate_and_keeps_connections_and_the_old_one_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("berth test ca");
    let first = ca.issue("berth-one", 1, Usage::Server);
    let second = ca.issue("berth-two", 2, Usage::Server);
    let server = start_tls(dir.path(), &first, None).await;
    let reloader = server.cert.clone().unwrap();

    let kept = https_client(Some(&ca), None);
    assert_eq!(get_v2(&kept, server.addr).await.unwrap().1, first.der);

    write_pair(dir.path(), &second);
    reloader.reload().unwrap();
    assert_eq!(
        get_v2(&https_client(Some(&ca), None), server.addr)
            .await
            .unwrap()
            .1,
        second.der,
        "a new connection gets the reloaded certificate"
    );
    let (status, cert) = get_v2(&kept, server.addr).await.unwrap();
    assert_eq!(
        (status, cert),
        (200, first.der.clone()),
        "the open connection keeps working (on its handshake's certificate)"
    );

    // A key that does not match, then a missing key file: the reload fails, the old pair stays.
    let third = ca.issue("berth-three", 3, Usage::Server);
    write(dir.path(), "server.crt", &third.cert_pem);
    let err = reloader.reload().unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    std::fs::remove_file(dir.path().join("server.key")).unwrap();
    let err = reloader.reload().unwrap_err();
    assert!(err.to_string().contains("server.key"), "{err}");
    assert_eq!(
        get_v2(&https_client(Some(&ca), None), server.addr)
            .await
            .unwrap()
            .1,
        second.der
    );
    server.stop().await;
}

#[tokio::test]
async fn client_certificates_are_optional_but_verified() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("berth test ca");
    let clients = Ca::new("berth clients ca");
    let other = Ca::new("someone else's ca");
    let server = start_tls(dir.path(), &ca.issue("s", 1, Usage::Server), Some(&clients)).await;

    let alice = clients.issue("alice", 10, Usage::Client);
    let with_cert = https_client(Some(&ca), Some(&alice));
    assert_eq!(get_v2(&with_cert, server.addr).await.unwrap().0, 200);

    let without = https_client(Some(&ca), None);
    assert_eq!(get_v2(&without, server.addr).await.unwrap().0, 200);

    let mallory = other.issue("alice", 10, Usage::Client);
    let foreign = https_client(Some(&ca), Some(&mallory));
    let err = get_v2(&foreign, server.addr)
        .await
        .expect_err("a client certificate from another CA is refused");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn start_up_refuses_incomplete_or_mismatched_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("berth test ca");
    let one = ca.issue("one", 1, Usage::Server);
    let two = ca.issue("two", 2, Usage::Server);
    let cert = write(dir.path(), "one.crt", &one.cert_pem);
    let other_key = write(dir.path(), "two.key", &two.key_pem);
    let ca_file = write(dir.path(), "ca.crt", &ca.pem());

    let bind = |tweak: &dyn Fn(&mut Config)| {
        let data = dir.path().join("data");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data,
            ..Config::default()
        };
        tweak(&mut config);
        async move {
            match berth::Server::bind(config).await {
                Ok(_) => panic!("the server started"),
                Err(e) => e.to_string(),
            }
        }
    };
    let msg = bind(&|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(other_key.clone());
    })
    .await;
    assert!(
        msg.contains("does not match the certificate") && msg.contains("two.key"),
        "{msg}"
    );
    let msg = bind(&|c| c.tls_cert = Some(cert.clone())).await;
    assert!(msg.contains("--tls-key"), "{msg}");
    let msg = bind(&|c| c.tls_key = Some(other_key.clone())).await;
    assert!(msg.contains("--tls-cert"), "{msg}");
    let msg = bind(&|c| c.tls_client_ca = Some(ca_file.clone())).await;
    assert!(msg.contains("--tls-client-ca needs"), "{msg}");
    let msg = bind(&|c| {
        c.tls_cert = Some(ca_file.clone()); // a certificate where the key should be
        c.tls_key = Some(ca_file.clone());
    })
    .await;
    assert!(msg.contains("no PEM PRIVATE KEY"), "{msg}");

    // The binary says so and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("bin-data"))
        .arg("--tls-cert")
        .arg(&cert)
        .env_remove("BERTH_TLS_KEY")
        .env_remove("BERTH_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tls-cert") && stderr.contains("--tls-key"),
        "{stderr}"
    );
}

/// A `berth serve` child process whose stderr is collected; killed if the test fails.
struct Child {
    child: std::process::Child,
    log: Arc<Mutex<String>>,
}

impl Child {
    fn wait_for_log(&self, needle: &str, from: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log.lock().unwrap().clone();
            if log[from..].contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_berth_serve() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("berth test ca");
    let first = ca.issue("berth-one", 1, Usage::Server);
    let second = ca.issue("berth-two", 2, Usage::Server);
    let (cert, key) = write_pair(dir.path(), &first);

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .env("BERTH_TLS_KEY", &key) // the environment works as the flag does
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("BERTH_CONFIG")
        .env_remove("BERTH_TLS_CLIENT_CA")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let child = Child { child, log };

    let log = child.wait_for_log("listening addr=", 0);
    assert!(
        log.contains("tls enabled") && log.contains(&cert.display().to_string()),
        "{log}"
    );
    let addr: SocketAddr = log
        .split("listening addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        get_v2(&https_client(Some(&ca), None), addr).await.unwrap(),
        (200, first.der.clone())
    );

    write_pair(dir.path(), &second);
    let mark = child.log.lock().unwrap().len();
    child.signal(libc::SIGHUP);
    child.wait_for_log("tls certificate reloaded", mark);
    assert_eq!(
        get_v2(&https_client(Some(&ca), None), addr).await.unwrap(),
        (200, second.der.clone())
    );

    // A broken renewal (key of another certificate): logged, and the server keeps going.
    write(dir.path(), "server.key", &first.key_pem);
    let mark = child.log.lock().unwrap().len();
    child.signal(libc::SIGHUP);
    let log = child.wait_for_log("reload failed", mark);
    assert!(log[mark..].contains("does not match"), "{log}");
    assert_eq!(
        get_v2(&https_client(Some(&ca), None), addr).await.unwrap(),
        (200, second.der.clone())
    );

    // SIGTERM still means a clean stop.
    child.signal(libc::SIGTERM);
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "berth did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

/// With auth on, a verified client certificate authenticates as the user its CN names.
#[tokio::test]
async fn a_client_certificate_authenticates_as_its_common_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("berth test ca");
    let clients = Ca::new("berth clients ca");
    let (cert, key) = write_pair(dir.path(), &ca.issue("s", 1, Usage::Server));
    let client_ca = write(dir.path(), "clients.crt", &clients.pem());
    let server = TlsServer::start(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.tls_client_ca = Some(client_ca);
        c.admin_password = Some("admin-password-1".into());
    })
    .await;
    let base = format!("https://{}", server.addr);
    let admin = https_client(Some(&ca), None);
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/auth/v1/users",
            serde_json::json!({"name": "alice"}),
        ),
        (
            reqwest::Method::PUT,
            "/auth/v1/namespaces/team/rolebindings/alice",
            serde_json::json!({"role": "view"}),
        ),
    ] {
        let r = admin
            .request(method, format!("{base}{path}"))
            .basic_auth("admin", Some("admin-password-1"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let streams = format!("{base}/apis/image.openshift.io/v1/namespaces/team/imagestreams");
    let alice = https_client(Some(&ca), Some(&clients.issue("alice", 10, Usage::Client)));
    assert_eq!(alice.get(&streams).send().await.unwrap().status(), 200);
    let who: serde_json::Value = alice
        .get(format!("{base}/auth/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["name"], "alice");
    // No certificate, no credentials: anonymous. A CN that names no user: anonymous too.
    assert_eq!(admin.get(&streams).send().await.unwrap().status(), 401);
    let nobody = https_client(Some(&ca), Some(&clients.issue("nobody", 11, Usage::Client)));
    assert_eq!(nobody.get(&streams).send().await.unwrap().status(), 401);
    server.stop().await;
}
