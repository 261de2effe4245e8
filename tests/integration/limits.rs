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
