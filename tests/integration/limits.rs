//! Bounded under abuse (issue 13, limits): each limit holds against the real server and is
//! refused with a clear error.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::{image_manifest, TestServer, OCI_MANIFEST};

/// Pushes a config and a layer and returns an OCI manifest naming them (not yet pushed).
async fn manifest_for(s: &TestServer, repo: &str, seed: &str) -> Vec<u8> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    let layer = format!("layer of {seed}");
    let cd = s.push_blob(repo, config.as_bytes()).await;
    let ld = s.push_blob(repo, layer.as_bytes()).await;
    image_manifest(&cd, config.len(), &[(&ld, layer.len())], "")
}

/// Sends `request` on a new connection and reads the answer until the server closes it.
async fn raw_exchange(s: &TestServer, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr(s)).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn addr(s: &TestServer) -> std::net::SocketAddr {
    s.base.trim_start_matches("http://").parse().unwrap()
}

/// The first OCI error of a response: (code, message).
async fn oci_error(r: reqwest::Response) -> (String, String) {
    let v: Value = r.json().await.expect("OCI error JSON");
    let e = &v["errors"][0];
    (
        e["code"].as_str().unwrap_or_default().to_string(),
        e["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_manifest_put_names_at_most_max_tags_per_push_tags() {
    let s = TestServer::start().await;
    let manifest = manifest_for(&s, "ns/many", "many tags").await;
    let digest = crate::common::sha256(&manifest);
    let put = |n: usize| {
        let query: Vec<String> = (0..n).map(|i| format!("tag=t{i}")).collect();
        s.req(
            Method::PUT,
            &format!("/v2/ns/many/manifests/{digest}?{}", query.join("&")),
        )
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
    };

    let r = put(101).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (code, message) = oci_error(r).await;
    assert_eq!(code, "MANIFEST_INVALID");
    assert!(message.contains("at most 100"), "{message}");
    // Nothing was stored: no manifest, no tag, no stream.
    assert_eq!(
        s.head(&format!("/v2/ns/many/manifests/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let tags: Value = s.get("/v2/ns/many/tags/list").await.json().await.unwrap();
    assert_eq!(tags["tags"], serde_json::json!([]));
    assert_eq!(
        s.get("/apis/image.openshift.io/v1/namespaces/ns/imagestreams/many")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // 100 `OCI-Tag` headers are more than reqwest accepts in a response: raw HTTP.
    let query: Vec<String> = (0..100).map(|i| format!("tag=t{i}")).collect();
    let head = format!(
        "PUT /v2/ns/many/manifests/{digest}?{} HTTP/1.1\r\nHost: x\r\ncontent-type: {OCI_MANIFEST}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        query.join("&"),
        manifest.len()
    );
    let answer = raw_exchange(&s, &[head.as_bytes(), &manifest].concat()).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let tag_headers = answer
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("oci-tag:"))
        .count();
    assert_eq!(tag_headers, 100);
    for i in 0..100 {
        let r = s.head(&format!("/v2/ns/many/manifests/t{i}")).await;
        assert_eq!(r.status(), StatusCode::OK, "t{i}");
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    }
    let tags: Value = s.get("/v2/ns/many/tags/list").await.json().await.unwrap();
    assert_eq!(tags["tags"].as_array().unwrap().len(), 100);
    // One push is one change of the stream, whatever the number of tags.
    let is: Value = s
        .get("/apis/image.openshift.io/v1/namespaces/ns/imagestreams/many")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(is["status"]["tags"].as_array().unwrap().len(), 100);
}

/// Waits until the server closes `conn` (EOF or reset), reading and discarding what it sends.
async fn closed_by_server(conn: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Whether a raw watch response ends (EOF, or the last chunk after an ERROR event) in time.
async fn watch_ended(conn: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    let mut saw_error = false;
    tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    let error = br#"{"type":"ERROR""#;
                    saw_error |= tail.windows(error.len()).any(|w| w == error);
                    if saw_error && tail.ends_with(b"\r\n0\r\n\r\n") {
                        return true;
                    }
                    let keep = tail.len().saturating_sub(64);
                    tail.drain(..keep);
                }
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn unfinished_headers_and_silent_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start_with(|c| {
        c.header_read_timeout_secs = 2;
        c.idle_timeout_secs = 2;
    })
    .await;
    let mut conns = Vec::new();
    for i in 0..120 {
        let mut conn = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
        if i < 100 {
            conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
                .await
                .unwrap();
        }
        conns.push(conn);
    }
    let started = std::time::Instant::now();
    let closing = conns
        .iter_mut()
        .map(|c| closed_by_server(c, Duration::from_secs(10)));
    let closed = futures_util::future::join_all(closing).await;
    assert!(
        closed.iter().all(|c| *c),
        "{} of 120 connections still open after {:?}",
        closed.iter().filter(|c| !**c).count(),
        started.elapsed()
    );
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_but_busy_ones_stay() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_with(|c| {
        c.header_read_timeout_secs = 60;
        c.idle_timeout_secs = 1;
    })
    .await;
    let mut conn = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert!(closed_by_server(&mut conn, Duration::from_secs(10)).await);

    // A watch is a request in flight: it outlives the idle timeout and ends at its own.
    let started = std::time::Instant::now();
    let r = s
        .get("/apis/image.openshift.io/v1/namespaces/ns/imagestreams?watch=true&timeoutSeconds=3")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[tokio::test]
async fn oversized_request_headers_get_431() {
    let s = TestServer::start_with(|c| c.max_header_bytes = 16 * 1024).await;
    let big = "x".repeat(20 * 1024);
    let answer = raw_exchange(
        &s,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw_exchange(
        &s,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let answer = raw_exchange(
        &s,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// CPU time this thread has used. `#[tokio::test]` runs the server on the test's own thread.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) },
        0
    );
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[tokio::test]
async fn at_max_connections_the_server_waits_for_a_free_slot_without_spinning() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_with(|c| {
        c.max_connections = 5;
        c.idle_timeout_secs = 600;
        c.header_read_timeout_secs = 600;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(addr(&s)).await.unwrap());
    }
    // The kernel completes the handshake, but the server does not take the request yet.
    let mut waiting = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let cpu = thread_cpu_time();
    let mut answer = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_secs(1), waiting.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "answered beyond the connection limit");
    let used = thread_cpu_time() - cpu;
    assert!(
        used < Duration::from_millis(500),
        "the server loop used {used:?} of CPU in 1 s while at its limit"
    );

    drop(idle);
    tokio::time::timeout(Duration::from_secs(10), waiting.read_to_end(&mut answer))
        .await
        .expect("answered once the idle connections closed")
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);
}

/// The value of header `name` in a raw HTTP answer.
fn raw_header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn a_trickling_upload_is_cut_off_and_stays_resumable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_with(|c| {
        c.min_body_bytes_per_window = 10;
        c.body_rate_window_secs = 2;
    })
    .await;
    let r = s
        .req(Method::POST, "/v2/ns/slow/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = crate::common::location(&r);
    let r = s
        .req(Method::PATCH, &loc)
        .body(vec![b'a'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = crate::common::location(&r);

    // One byte per second, in chunked encoding, until the server answers.
    let conn = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
    let (mut read, mut write) = conn.into_split();
    let path = loc.trim_start_matches(&s.base).to_string();
    let trickle = tokio::spawn(async move {
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        write.write_all(head.as_bytes()).await?;
        for _ in 0..60 {
            write.write_all(b"1\r\nx\r\n").await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), read.read_to_end(&mut answer))
        .await
        .expect("the server cuts the trickle off")
        .unwrap();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("BLOB_UPLOAD_INVALID"), "{answer}");
    assert!(answer.contains("10 bytes per 2 s"), "{answer}");
    let range = raw_header(&answer, "range").expect("Range").to_string();
    let held: usize = range.trim_start_matches("0-").parse::<usize>().unwrap() + 1;
    assert!((1000..1010).contains(&held), "{range}");

    // What arrived stays, and the session continues from there.
    let r = s.get(&loc).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], range.as_str());
    let mut content = vec![b'a'; 1000];
    content.extend(std::iter::repeat_n(b'x', held - 1000));
    let rest = b"the rest".to_vec();
    content.extend_from_slice(&rest);
    let digest = crate::common::sha256(&content);
    let r = s
        .req(
            Method::PUT,
            &crate::common::with_query(&loc, &format!("digest={digest}")),
        )
        .body(rest)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let r = s.get(&format!("/v2/ns/slow/blobs/{digest}")).await;
    assert_eq!(r.bytes().await.unwrap(), content);
}

async fn open_upload(s: &TestServer, repo: &str) -> reqwest::Response {
    s.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn open_upload_sessions_are_limited_per_repository_and_per_user() {
    let s = TestServer::start_with(|c| {
        c.max_uploads_per_repository = 3;
        c.max_uploads_per_user = 5;
    })
    .await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let r = open_upload(&s, "ns/a").await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        sessions.push(crate::common::location(&r));
    }
    let r = open_upload(&s, "ns/a").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let (code, message) = oci_error(r).await;
    assert_eq!(code, "TOOMANYREQUESTS");
    assert!(
        message.contains("the limit is 3 (max_uploads_per_repository)"),
        "{message}"
    );

    // Cancelling one frees a slot; so does finishing one.
    assert_eq!(
        s.delete(&sessions.pop().unwrap()).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = open_upload(&s, "ns/a").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        open_upload(&s, "ns/a").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let digest = crate::common::sha256(b"done");
    let r = s
        .req(
            Method::PUT,
            &crate::common::with_query(&sessions.pop().unwrap(), &format!("digest={digest}")),
        )
        .body(b"done".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(open_upload(&s, "ns/a").await.status(), StatusCode::ACCEPTED);

    // Three open in ns/a; the client may open two more anywhere, then its own limit holds.
    for _ in 0..2 {
        assert_eq!(open_upload(&s, "ns/b").await.status(), StatusCode::ACCEPTED);
    }
    let r = open_upload(&s, "ns/c").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let (_, message) = oci_error(r).await;
    assert!(
        message.contains("the limit is 5 (max_uploads_per_user)"),
        "{message}"
    );
    // A monolithic upload needs a session too.
    let r = s
        .req(
            Method::POST,
            &format!("/v2/ns/c/blobs/uploads/?digest={digest}"),
        )
        .body(b"done".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    // The counts are kept in the store: a restart sees the same open sessions.
    let s = s.restart().await;
    assert_eq!(
        open_upload(&s, "ns/c").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn expired_upload_sessions_stop_counting() {
    let s = TestServer::start_with(|c| {
        c.max_uploads_per_repository = 2;
        c.upload_max_age_secs = 1;
    })
    .await;
    let first = crate::common::location(&open_upload(&s, "ns/a").await);
    assert_eq!(open_upload(&s, "ns/a").await.status(), StatusCode::ACCEPTED);
    assert_eq!(
        open_upload(&s, "ns/a").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.get(&first).await.status() != StatusCode::NOT_FOUND {
        assert!(
            std::time::Instant::now() < deadline,
            "sessions never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both were purged together or nearly so; wait for the second as well.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = open_upload(&s, "ns/a").await;
        if r.status() == StatusCode::ACCEPTED {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slots never freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Resident memory of this process (the server runs in it), in bytes.
fn rss() -> u64 {
    crate::common::rss_of(std::process::id())
}

#[tokio::test]
async fn a_watcher_that_does_not_read_is_closed_and_costs_bounded_memory() {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    const API: &str = "/apis/image.openshift.io/v1";
    // Long enough that only being dropped as a stuck watcher can end that connection in time.
    // Events are stubs until delivered, so a stuck watcher is closed for being too many
    // events behind; a low bound closes it within the pushes below.
    let s = TestServer::start_with(|c| {
        c.idle_timeout_secs = 300;
        c.watch_buffer_events_per_watcher = 200;
    })
    .await;
    // A stream with 1,500 history entries: 15 images, each tagged 100 times in one push.
    let config = r#"{"architecture":"amd64","os":"linux"}"#;
    let cd = s.push_blob("ns/big", config.as_bytes()).await;
    let ld = s.push_blob("ns/big", b"layer").await;
    let manifest = |i: usize| {
        image_manifest(
            &cd,
            config.len(),
            &[(&ld, 5)],
            &format!(r#","annotations":{{"n":"{i}"}}"#),
        )
    };
    let tags: Vec<String> = (0..100)
        .map(|t| format!("tag=a-fairly-long-tag-name-{t}"))
        .collect();
    for i in 0..15 {
        let m = manifest(i);
        let head = format!(
            "PUT /v2/ns/big/manifests/{}?{} HTTP/1.1\r\nHost: x\r\ncontent-type: {OCI_MANIFEST}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            crate::common::sha256(&m),
            tags.join("&"),
            m.len()
        );
        let answer = raw_exchange(&s, &[head.as_bytes(), &m].concat()).await;
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    }
    let watch = format!("{API}/namespaces/ns/imagestreams?watch=true");

    // A watcher with a 4 KiB receive buffer that never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(addr(&s)).await.unwrap();
    stuck
        .write_all(format!("GET {watch} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // And one that reads everything.
    let r = s.get(&watch).await;
    assert_eq!(r.status(), StatusCode::OK);
    let reader = tokio::spawn(async move {
        let (mut modified, mut errors, mut line) = (0usize, 0usize, Vec::new());
        let mut body = r.bytes_stream();
        while let Some(chunk) = body.next().await {
            for b in chunk.unwrap() {
                if b != b'\n' {
                    line.push(b);
                    continue;
                }
                modified += usize::from(line.starts_with(br#"{"type":"MODIFIED""#));
                errors += usize::from(line.starts_with(br#"{"type":"ERROR""#));
                line.clear();
                if modified == 300 {
                    return (modified, errors);
                }
            }
        }
        (modified, errors)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = rss();
    let mut peak = before;
    for i in 0..300 {
        let m = manifest(1000 + i);
        let r = s.put_manifest("ns/big", "live", OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        peak = peak.max(rss());
    }
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 256 << 20,
        "RSS grew by {} MiB during 300 pushes",
        grown >> 20
    );
    // The stuck watcher was closed: what it has not read ends with a 410 ERROR event and the
    // end of the response (or of the connection).
    assert!(
        watch_ended(&mut stuck, Duration::from_secs(20)).await,
        "the watcher that does not read is still being served"
    );
    let (modified, errors) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the reading watcher got every change")
        .unwrap();
    assert_eq!((modified, errors), (300, 0));
}
