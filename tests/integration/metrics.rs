//! `GET /metrics` over real HTTP: the token rule, label hygiene (no repository, tag or digest
//! ever appears), and counters that follow the requests made.

use reqwest::StatusCode;

use crate::common::TestServer;

/// The value of the sample `name{labels}` (labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(s: &TestServer, token: Option<&str>) -> reqwest::Response {
    let req = s.req(reqwest::Method::GET, "/metrics");
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn the_token_is_required_when_set_and_no_names_leak() {
    let s = TestServer::start_with(|c| c.metrics_token = Some("scrape-me".into())).await;
    let (digest, _) = s
        .push_image("secretns/hidden-stream", "classified-tag", "m1")
        .await;
    let r = s
        .get("/v2/secretns/hidden-stream/manifests/classified-tag")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        s.get("/v2/secretns/hidden-stream/manifests/missing")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let r = scrape(&s, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r
        .headers()
        .get("www-authenticate")
        .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer ")));
    assert_eq!(
        scrape(&s, Some("scrape-mE")).await.status(),
        StatusCode::FORBIDDEN
    );
    // Registry credentials are no substitute: the metrics token is its own.
    let r = s
        .req(reqwest::Method::GET, "/metrics")
        .basic_auth("admin", Some("scrape-me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = scrape(&s, Some("scrape-me")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for secret in [
        "secretns",
        "hidden",
        "classified",
        &digest[7..19],
        "missing",
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} leaked into /metrics:\n{text}"
        );
    }
    let manifests = |status: &str| {
        sample(
            &text,
            &format!(
                "berth_http_requests_total{{method=\"GET\",route=\"get_manifest\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(manifests("200"), Some(1.0), "{text}");
    assert_eq!(manifests("404"), Some(1.0));
    let put = "berth_http_requests_total{method=\"PUT\",route=\"finish_upload\",status=\"201\"}";
    assert_eq!(sample(&text, put), Some(2.0));
    assert!(sample(
        &text,
        "berth_http_request_body_bytes_total{route=\"finish_upload\"}"
    )
    .is_some_and(|b| b > 0.0));
    assert!(sample(
        &text,
        "berth_http_response_body_bytes_total{route=\"get_manifest\"}"
    )
    .is_some_and(|b| b > 0.0));
    assert!(
        sample(
            &text,
            "berth_http_request_duration_seconds_count{method=\"PUT\",route=\"put_manifest\"}"
        ) == Some(1.0)
    );
    assert!(sample(&text, "berth_http_connections_open").is_some_and(|n| n >= 1.0));
    assert_eq!(sample(&text, "berth_uploads_open"), Some(0.0));
    assert!(sample(&text, "berth_metadata_store_disk_bytes").is_some_and(|n| n > 0.0));
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|n| n > 0.0));
}

#[tokio::test]
async fn loopback_scrapes_without_a_token_and_gauges_follow_state() {
    let s = TestServer::start().await;
    let r = s
        .req(reqwest::Method::POST, "/v2/ns/s/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    s.push_blob("ns/s", &vec![7u8; 10_000]).await;
    let watch = s
        .get("/apis/image.openshift.io/v1/namespaces/ns/imagestreams?watch=true")
        .await;
    assert_eq!(watch.status(), StatusCode::OK);

    let text = scrape(&s, None).await.text().await.unwrap();
    assert_eq!(sample(&text, "berth_uploads_open"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "berth_watches_open"), Some(1.0));
    assert!(sample(
        &text,
        "berth_http_requests_total{method=\"GET\",route=\"watch_imagestreams\",status=\"200\"}"
    )
    .is_some());
    // Counted in the background after start, then by every commit.
    let mut blob_bytes = None;
    for _ in 0..100 {
        let text = scrape(&s, None).await.text().await.unwrap();
        blob_bytes = sample(&text, "berth_blob_store_bytes");
        if blob_bytes.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(blob_bytes, Some(10_000.0));

    // The watch ends when its connection goes; the gauge follows.
    drop(watch);
    let mut open = None;
    for _ in 0..100 {
        let text = scrape(&s, None).await.text().await.unwrap();
        open = sample(&text, "berth_watches_open");
        if open == Some(0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(open, Some(0.0));
    assert_eq!(
        s.req(reqwest::Method::POST, "/metrics")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}
