//! Webhooks over real HTTP: a receiver in the test gets one event per istag change, in order,
//! signed; kill -9 loses nothing; a receiver failing forever is bounded and does not delay
//! others; Distribution's envelope; the attacker's side (non-admins, SSRF, other namespaces).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::auth::{bind, create_user, PASSWORD};
use crate::common::{berth_in, ok, run_berth, Serve, TestServer};

const HOOKS: &str = "/apis/berth.io/v1/namespaces";
/// 32 bytes, base64.
pub const SECRET: &str = "whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A real HTTP receiver: records every request, answers `status`.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Delivery>>>,
    pub status: Arc<AtomicU16>,
}

impl Receiver {
    pub async fn start(status: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            got: Arc::default(),
            status: Arc::new(AtomicU16::new(status)),
        };
        let (got, answer) = (r.got.clone(), r.status.clone());
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (got, answer) = (got.clone(), answer.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (got, answer) = (got.clone(), answer.clone());
                            async move {
                                let h = |n: &str| {
                                    req.headers()
                                        .get(n)
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or("")
                                        .to_string()
                                };
                                let (id, timestamp, signature, content_type) = (
                                    h("webhook-id"),
                                    h("webhook-timestamp"),
                                    h("webhook-signature"),
                                    h("content-type"),
                                );
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let status = answer.load(Ordering::SeqCst);
                                if status < 300 {
                                    got.lock().unwrap().push(Delivery {
                                        id,
                                        timestamp,
                                        signature,
                                        content_type,
                                        body: body.to_vec(),
                                    });
                                }
                                Ok::<_, Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(conn), service)
                        .await;
                });
            }
        });
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` deliveries arrived (panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.deliveries();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} deliveries arrived",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Verifies a Standard Webhooks signature the way receivers do.
pub fn verify(d: &Delivery, secret: &str) -> bool {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", d.id, d.timestamp).as_bytes());
    mac.update(&d.body);
    let expected = format!("v1,{}", engine.encode(mac.finalize().into_bytes()));
    d.signature.split(' ').any(|s| s == expected)
}

fn fast(c: &mut berth::config::Config) {
    c.webhook_allow_private = true;
    c.webhook_backoff_base_ms = 20;
    c.webhook_backoff_cap_secs = 1;
}

pub fn webhook(name: &str, url: &str, extra: Value) -> Value {
    let mut spec = json!({"url": url, "secret": SECRET});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    json!({"kind": "Webhook", "apiVersion": "berth.io/v1", "metadata": {"name": name}, "spec": spec})
}

async fn create(s: &TestServer, ns: &str, body: Value) -> Value {
    let r = s
        .req(Method::POST, &format!("{HOOKS}/{ns}/webhooks"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    r.json().await.unwrap()
}

async fn get(s: &TestServer, ns: &str, name: &str) -> Value {
    let r = s.get(&format!("{HOOKS}/{ns}/webhooks/{name}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

async fn put_istag_from_image(s: &TestServer, ns: &str, stream: &str, tag: &str, image: &str) {
    let r = s
        .req(
            Method::PUT,
            &format!("/apis/image.openshift.io/v1/namespaces/{ns}/imagestreamtags/{stream}:{tag}"),
        )
        .json(&json!({
            "kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1",
            "metadata": {"name": format!("{stream}:{tag}")},
            "tag": {"name": tag, "from": {"kind": "ImageStreamImage", "name": format!("{stream}@{image}")}}
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn one_signed_cloudevent_per_istag_change_in_order() {
    let s = TestServer::start_with(fast).await;
    let rx = Receiver::start(200).await;
    let created = create(
        &s,
        "ns",
        webhook(
            "ci",
            &rx.url(),
            json!({"events": ["imagestreamtag.updated"], "tags": ["app:latest"]}),
        ),
    )
    .await;
    assert!(created["spec"].get("secret").is_none(), "{created}");
    // 200 changes of ns/app:latest: pushes, tags back to older images (rollbacks) and tags
    // of other tags (not subscribed: they must not arrive).
    let mut expected: Vec<String> = Vec::new();
    let mut origins: Vec<&str> = Vec::new();
    let mut pushed: Vec<String> = Vec::new();
    while expected.len() < 200 {
        let i = expected.len();
        if i % 10 == 9 {
            let older = pushed[pushed.len() - 3].clone();
            put_istag_from_image(&s, "ns", "app", "latest", &older).await;
            expected.push(older);
            origins.push("rollback");
        } else if i % 10 == 4 {
            // An image of another tag, never on this one: a plain tag.
            let (digest, _) = s.push_image("ns/app", "side", &format!("side-{i}")).await;
            put_istag_from_image(&s, "ns", "app", "latest", &digest).await;
            expected.push(digest);
            origins.push("tag");
        } else {
            let (digest, _) = s.push_image("ns/app", "latest", &format!("img-{i}")).await;
            pushed.push(digest.clone());
            expected.push(digest);
            origins.push("push");
            if i % 10 == 5 {
                s.push_image("ns/app", "other", &format!("other-{i}")).await;
            }
        }
    }
    let got = rx.wait_for(200, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_all = rx.deliveries();
    assert_eq!(got_all.len(), 200, "exactly one event per change");
    let mut previous: Option<String> = None;
    for ((d, want), origin) in got.iter().zip(&expected).zip(&origins) {
        assert!(verify(d, SECRET), "signature of {}", d.id);
        assert_eq!(d.content_type, "application/cloudevents+json");
        let e = d.json();
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["type"], "io.berth.imagestreamtag.updated");
        assert_eq!(e["subject"], "ns/app:latest");
        assert_eq!(e["id"], d.id.as_str());
        assert_eq!(&e["data"]["image"], want.as_str());
        assert_eq!(e["data"]["previousImage"].as_str(), previous.as_deref());
        assert_eq!(e["data"]["origin"], *origin, "{e}");
        assert!(e["data"]["resourceVersion"].as_u64().unwrap() > 0);
        previous = Some(want.clone());
    }
    let status = get(&s, "ns", "ci").await["status"].clone();
    assert_eq!(status["delivered"], 200, "{status}");
    assert_eq!(status["pending"], 0);
    assert_eq!(status["phase"], "Active");
}

/// A `berth serve` child with webhook settings for tests.
fn serve(dir: &std::path::Path) -> Serve {
    let config = dir.join("berth.toml");
    std::fs::write(
        &config,
        "webhook_allow_private = true\nwebhook_backoff_base_ms = 20\nwebhook_backoff_cap_secs = 1\n",
    )
    .unwrap();
    Serve::start_with(
        &dir.join("data"),
        &["--config".as_ref(), config.as_os_str()],
    )
}

#[tokio::test]
async fn kill_9_twice_while_the_receiver_is_down_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(503).await;
    let mut child = serve(dir.path());
    let mut s = TestServer::client_for(&child.base);
    create(
        &s,
        "ns",
        webhook(
            "ci",
            &rx.url(),
            json!({"events": ["imagestreamtag.updated"]}),
        ),
    )
    .await;
    let mut expected = Vec::new();
    for round in 0..3 {
        for i in 0..10 {
            let (digest, _) = s
                .push_image("ns/app", "latest", &format!("r{round}-{i}"))
                .await;
            expected.push(digest);
        }
        if round < 2 {
            // Mid-flight: some attempts are under way when the process dies.
            tokio::time::sleep(Duration::from_millis(50)).await;
            child.kill();
            child = serve(dir.path());
            s = TestServer::client_for(&child.base);
        }
    }
    assert_eq!(get(&s, "ns", "ci").await["status"]["pending"], 30);
    rx.status.store(200, Ordering::SeqCst);
    // Once more while delivering: an ack in flight may be lost, then that event comes again.
    rx.wait_for(5, Duration::from_secs(10)).await;
    child.kill();
    let _child = serve(dir.path());
    rx.wait_for(30, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = rx.deliveries();
    // Duplicates only where an ack was lost, each with the same id and body.
    let mut unique: Vec<&Delivery> = Vec::new();
    for d in &got {
        match unique.iter().find(|u| u.id == d.id) {
            Some(u) => assert_eq!(u.body, d.body, "a redelivery is the same event"),
            None => unique.push(d),
        }
    }
    let images: Vec<String> = unique
        .iter()
        .map(|d| d.json()["data"]["image"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(images, expected, "every event, in order");
}

#[tokio::test]
async fn a_receiver_failing_forever_is_bounded_and_delays_no_one_else() {
    let s = TestServer::start_with(|c| {
        fast(c);
        c.webhook_outbox_max_events = 5;
    })
    .await;
    let (bad, good) = (Receiver::start(500).await, Receiver::start(200).await);
    create(&s, "ns", webhook("bad", &bad.url(), json!({}))).await;
    create(
        &s,
        "ns",
        webhook(
            "good",
            &good.url(),
            json!({"events": ["imagestreamtag.updated"]}),
        ),
    )
    .await;
    for i in 0..20 {
        s.push_image("ns/app", "latest", &format!("f{i}")).await;
    }
    // The healthy receiver has everything promptly, whatever the other one does.
    good.wait_for(20, Duration::from_secs(10)).await;
    let status = get(&s, "ns", "bad").await["status"].clone();
    assert_eq!(status["phase"], "Failing", "{status}");
    assert_eq!(status["pending"], 5, "{status}");
    // 20 pushes raise 40 events (manifest.pushed and imagestreamtag.updated); 5 are kept.
    assert_eq!(status["droppedEvents"], 35, "{status}");
    assert!(status["consecutiveFailures"].as_u64().unwrap() > 0);
    assert_eq!(status["lastError"]["statusCode"], 500);
    // Describe shows the same.
    let out = berth_in(&s, "ns", &["describe", "webhook", "bad"]).await;
    let text = ok(&out);
    assert!(text.contains("Failing") && text.contains("35"), "{text}");
}

#[tokio::test]
async fn distribution_envelope_parses_as_distribution_does() {
    #[derive(serde::Deserialize)]
    struct Envelope {
        events: Vec<Event>,
    }
    #[derive(serde::Deserialize)]
    struct Event {
        id: String,
        action: String,
        target: Target,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Target {
        media_type: String,
        digest: String,
        repository: String,
        size: u64,
        #[serde(default)]
        tag: String,
    }
    let s = TestServer::start_with(fast).await;
    let rx = Receiver::start(200).await;
    create(
        &s,
        "ns",
        webhook(
            "dist",
            &rx.url(),
            json!({"format": "Distribution", "events": ["manifest.pushed"]}),
        ),
    )
    .await;
    let (digest, bytes) = s.push_image("ns/app", "v1", "dist").await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        got[0].content_type,
        "application/vnd.docker.distribution.events.v2+json"
    );
    let env: Envelope = serde_json::from_slice(&got[0].body).unwrap();
    let e = &env.events[0];
    assert_eq!(
        (e.action.as_str(), e.id.as_str()),
        ("push", got[0].id.as_str())
    );
    assert_eq!(e.target.digest, digest);
    assert_eq!(e.target.repository, "ns/app");
    assert_eq!(e.target.size, bytes.len() as u64);
    assert_eq!(e.target.tag, "v1");
    assert!(e.target.media_type.contains("manifest"));
}

#[tokio::test]
async fn namespaces_do_not_hear_each_other_and_non_admins_cannot_subscribe() {
    let s = crate::auth::start(|c| {
        fast(c);
        c.webhook_allow_private = false;
    })
    .await;
    create_user(&s, "editor", &[]).await;
    bind(&s, "a", "editor", "edit").await;
    create_user(&s, "nsadmin", &[]).await;
    bind(&s, "a", "nsadmin", "admin").await;
    let body = webhook("x", "https://hooks.example.com/x", json!({}));
    // An editor may neither list nor create; the answer names only what was asked.
    for (method, path) in [
        (Method::GET, format!("{HOOKS}/a/webhooks")),
        (Method::POST, format!("{HOOKS}/a/webhooks")),
        (Method::GET, format!("{HOOKS}/a/webhooks/x")),
        (Method::DELETE, format!("{HOOKS}/a/webhooks/x")),
    ] {
        let r = s
            .req(method, &path)
            .basic_auth("editor", Some(PASSWORD))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // The CLI says the same.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let env = [("BERTH_CLIENT_CONFIG", config.as_os_str())];
    ok(&run_berth(&["login", &s.base, "-u", "editor", "-p", PASSWORD], &env).await);
    for args in [
        &["-n", "a", "get", "webhooks"][..],
        &[
            "-n",
            "a",
            "create",
            "webhook",
            "x",
            "--url",
            "https://hooks.example.com/x",
        ],
        &["-n", "a", "describe", "webhook", "x"],
        &["-n", "a", "delete", "webhook", "x"],
    ] {
        let out = run_berth(args, &env).await;
        assert_eq!(out.code, 1, "{args:?}: {}", out.stdout);
        assert!(out.stderr.contains("Forbidden"), "{args:?}: {}", out.stderr);
    }
    // A namespace admin may, but not towards loopback or private addresses (SSRF).
    let admin = |m: Method, p: &str| s.req(m, p).basic_auth("nsadmin", Some(PASSWORD));
    for url in [
        "http://127.0.0.1:1/x",
        "http://169.254.169.254/",
        "http://10.0.0.1/",
        "http://localhost/",
    ] {
        let r = admin(Method::POST, &format!("{HOOKS}/a/webhooks"))
            .json(&webhook("x", url, json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
    }
    let r = admin(Method::POST, &format!("{HOOKS}/a/webhooks"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Admin of a, nothing in b.
    let r = admin(Method::GET, &format!("{HOOKS}/b/webhooks"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The secret never comes back.
    let r = admin(Method::GET, &format!("{HOOKS}/a/webhooks"))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(SECRET.trim_start_matches("whsec_")),
        "{text}"
    );
}

#[tokio::test]
async fn a_subscription_hears_only_its_own_namespace() {
    let s = TestServer::start_with(fast).await;
    let rx = Receiver::start(200).await;
    create(&s, "a", webhook("only-a", &rx.url(), json!({}))).await;
    s.push_image("b/app", "latest", "in-b").await;
    let (digest, _) = s.push_image("a/app", "latest", "in-a").await;
    rx.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = rx.deliveries();
    assert_eq!(
        got.len(),
        2,
        "manifest.pushed and imagestreamtag.updated of a only"
    );
    for d in &got {
        let e = d.json();
        assert!(e["subject"].as_str().unwrap().starts_with("a/app"), "{e}");
    }
    assert_eq!(got[1].json()["data"]["image"], digest.as_str());
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_and_cli_verbs_work() {
    let s = TestServer::start_with(fast).await;
    let rx = Receiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let out = berth_in(
        &s,
        "ns",
        &[
            "create",
            "webhook",
            "ci",
            "--url",
            &rx.url(),
            "--events",
            "imagestreamtag.updated",
            "--tag",
            "app:latest",
            "--secret-from-file",
            secret_file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok(&out).contains("webhook/ci created"), "{}", out.stdout);
    let out = berth_in(&s, "ns", &["get", "webhooks"]).await;
    let text = ok(&out);
    assert!(
        text.contains("NAME") && text.contains("ci") && text.contains("Active"),
        "{text}"
    );
    // Rotate: the new secret and the old one both sign during the overlap.
    let new_secret = "whsec_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=";
    let mut w = get(&s, "ns", "ci").await;
    w["spec"]["secret"] = new_secret.into();
    let r = s
        .req(Method::PUT, &format!("{HOOKS}/ns/webhooks/ci"))
        .json(&w)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(get(&s, "ns", "ci").await["status"]["signingSecrets"], 2);
    s.push_image("ns/app", "latest", "rotated").await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert!(verify(&got[0], SECRET) && verify(&got[0], new_secret));
    let out = berth_in(&s, "ns", &["describe", "webhook", "ci"]).await;
    let text = ok(&out);
    assert!(
        text.contains("Delivered:") && text.contains("app:latest"),
        "{text}"
    );
    assert!(!text.contains("whsec_"), "{text}");
    let out = berth_in(&s, "ns", &["delete", "webhook", "ci"]).await;
    assert!(ok(&out).contains("deleted"));
    let r = s.get(&format!("{HOOKS}/ns/webhooks/ci")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Reads watch lines until `n` events have arrived.
async fn watch_events(r: reqwest::Response, n: usize) -> Vec<Value> {
    use futures_util::StreamExt;
    let mut body = r.bytes_stream();
    let (mut buf, mut events) = (Vec::new(), Vec::new());
    while events.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("watch events arrive")
            .expect("the watch stays open")
            .unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            events.push(serde_json::from_slice::<Value>(&line).unwrap());
        }
    }
    events
}

fn rv_of(v: &Value) -> u64 {
    v["resourceVersion"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn webhooks_are_watched_like_other_resources() {
    let s = TestServer::start_with(fast).await;
    create(&s, "ns", webhook("a", "http://127.0.0.1:9/a", json!({}))).await;
    let list: Value = s
        .get(&format!("{HOOKS}/ns/webhooks"))
        .await
        .json()
        .await
        .unwrap();
    let start = rv_of(&list["metadata"]);
    let watch_from = |rv: u64| format!("{HOOKS}/ns/webhooks?watch=true&resourceVersion={rv}");
    let live = s.get(&watch_from(start)).await;
    assert_eq!(live.status(), StatusCode::OK);

    // Another namespace's subscription is not this watch's business.
    create(&s, "other", webhook("x", "http://127.0.0.1:9/x", json!({}))).await;
    create(&s, "ns", webhook("b", "http://127.0.0.1:9/b", json!({}))).await;
    let mut a = get(&s, "ns", "a").await;
    a["spec"]["url"] = "http://127.0.0.1:9/a2".into();
    a["spec"]["secret"] = "whsec_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=".into();
    let r = s
        .req(Method::PUT, &format!("{HOOKS}/ns/webhooks/a"))
        .json(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(s
        .delete(&format!("{HOOKS}/ns/webhooks/b"))
        .await
        .status()
        .is_success());

    let events = watch_events(live, 3).await;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]);
    let rvs: Vec<u64> = events
        .iter()
        .map(|e| rv_of(&e["object"]["metadata"]))
        .collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]) && rvs[0] > start,
        "{rvs:?}"
    );
    for e in &events {
        assert_eq!(e["object"]["kind"], "Webhook");
        assert!(e["object"]["spec"].get("secret").is_none(), "{e}");
    }
    assert_eq!(events[1]["object"]["spec"]["url"], "http://127.0.0.1:9/a2");
    // What a GET returns carries the same resourceVersion as the event.
    assert_eq!(rv_of(&get(&s, "ns", "a").await["metadata"]), rvs[1]);

    // Resuming from the first event replays the rest.
    let resumed = watch_events(s.get(&watch_from(rvs[0])).await, 2).await;
    assert_eq!(resumed[0]["type"], "MODIFIED");
    assert_eq!(resumed[1]["type"], "DELETED");
    // Without a resourceVersion: the current objects as ADDED.
    let initial = watch_events(s.get(&format!("{HOOKS}/ns/webhooks?watch=true")).await, 1).await;
    assert_eq!(initial[0]["type"], "ADDED");
    assert_eq!(initial[0]["object"]["metadata"]["name"], "a");

    // After a restart nothing before it is buffered: 410 Expired, and clients re-list.
    let s = s.restart().await;
    let r = s.get(&watch_from(start)).await;
    assert_eq!(r.status(), StatusCode::GONE);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["reason"], "Expired", "{status}");
}

#[tokio::test]
async fn discovery_lists_the_berth_group_and_its_webhooks() {
    let s = TestServer::start().await;
    let groups: Value = s.get("/apis").await.json().await.unwrap();
    let berth = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "berth.io")
        .unwrap_or_else(|| panic!("{groups}"));
    assert_eq!(berth["preferredVersion"]["groupVersion"], "berth.io/v1");
    let group: Value = s.get("/apis/berth.io").await.json().await.unwrap();
    assert_eq!(group["kind"], "APIGroup");
    let r = s.get("/apis/berth.io/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["kind"], "APIResourceList");
    assert_eq!(list["groupVersion"], "berth.io/v1");
    let hooks = &list["resources"][0];
    assert_eq!(hooks["name"], "webhooks");
    assert_eq!(hooks["kind"], "Webhook");
    assert_eq!(hooks["namespaced"], true);
    assert!(hooks["verbs"].as_array().unwrap().contains(&json!("watch")));
}

#[tokio::test]
async fn pruning_an_image_tells_the_namespaces_that_held_it() {
    let s = TestServer::start_with(fast).await;
    let (rx, other) = (Receiver::start(200).await, Receiver::start(200).await);
    create(
        &s,
        "ns",
        webhook("gc", &rx.url(), json!({"events": ["image.pruned"]})),
    )
    .await;
    create(&s, "other", webhook("all", &other.url(), json!({}))).await;
    let (old, _) = s.push_image("ns/app", "v1", "old").await;
    let (new, _) = s.push_image("ns/app", "v1", "new").await;
    let prune = |confirm: bool| {
        s.req(Method::POST, "/admin/v1/prune/images")
            .json(&json!({"keepYoungerThan": "0s", "keepTagRevisions": 1, "confirm": confirm}))
            .send()
    };
    // A dry run deletes nothing, so it tells no one.
    assert_eq!(prune(false).await.unwrap().status(), StatusCode::OK);
    let done: Value = prune(true).await.unwrap().json().await.unwrap();
    assert_eq!(done["images"], json!([old]), "{done}");
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.deliveries().len(), 1, "one event per Image pruned");
    assert!(verify(&got[0], SECRET));
    let e = got[0].json();
    assert_eq!(e["type"], "io.berth.image.pruned");
    assert_eq!(e["subject"], old.as_str());
    assert_eq!(e["data"]["image"], old.as_str());
    assert_eq!(e["data"]["namespace"], "ns");
    assert_eq!(e["data"]["streams"], json!(["app"]));
    assert!(e["data"]["resourceVersion"].as_u64().unwrap() > 0);
    assert_ne!(old, new);
    // The Image is gone, and another namespace heard nothing of it.
    let r = s
        .get(&format!("/apis/image.openshift.io/v1/images/{old}"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(other.deliveries().is_empty());
}
