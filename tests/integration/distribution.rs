//! Every /v2 endpoint, success and failure cases.

use reqwest::{Method, StatusCode};

use crate::common::*;

const REPO: &str = "team/app";

#[tokio::test]
async fn api_version_health_and_readiness() {
    let s = TestServer::start().await;
    let r = s.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(s.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(s.get("/readyz").await.status(), StatusCode::OK);
    let r = s.get("/v2/_catalog/").await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "a trailing slash is another path"
    );
}

#[tokio::test]
async fn blob_push_head_get_delete() {
    let s = TestServer::start().await;
    let data = b"hello blob".to_vec();
    let digest = s.push_blob(REPO, &data).await;
    let r = s.head(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), Some("10"));
    assert_eq!(header(&r, "docker-content-digest"), Some(digest.as_str()));
    assert_eq!(header(&r, "content-type"), Some("application/octet-stream"));
    let r = s.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    // Another repository cannot read it without a mount.
    let r = s.get(&format!("/v2/team/other/blobs/{digest}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");

    let r = s.delete(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        s.head(&format!("/v2/{REPO}/blobs/{digest}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.delete(&format!("/v2/{REPO}/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn blob_ranges() {
    let s = TestServer::start().await;
    let data: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();
    let digest = s.push_blob(REPO, &data).await;
    let path = format!("/v2/{REPO}/blobs/{digest}");
    let get_range = |range: &'static str| s.req(Method::GET, &path).header("range", range).send();
    let r = get_range("bytes=500-1499").await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), Some("bytes 500-1499/2048"));
    assert_eq!(header(&r, "content-length"), Some("1000"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[500..1500]);
    let r = get_range("bytes=-500").await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[1548..]);
    let r = get_range("bytes=2000-5000").await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[2000..]);
    for bad in ["bytes=500-0", "bytes=5000-10000"] {
        let r = get_range(bad).await.unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(header(&r, "content-range"), Some("bytes */2048"));
    }
}

#[tokio::test]
async fn monolithic_post_and_digest_mismatch() {
    let s = TestServer::start().await;
    let data = b"one shot".to_vec();
    let digest = sha256(&data);
    let r = s
        .req(
            Method::POST,
            &format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/{REPO}/blobs/{digest}"));
    assert_eq!(header(&r, "docker-content-digest"), Some(digest.as_str()));
    assert_eq!(
        s.get(&location(&r)).await.bytes().await.unwrap().as_ref(),
        data.as_slice()
    );

    // Wrong digest: 400 DIGEST_INVALID and nothing stored under either digest.
    let other = sha256(b"something else");
    let r = s
        .req(
            Method::POST,
            &format!("/v2/{REPO}/blobs/uploads/?digest={other}"),
        )
        .body(b"not that".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    assert_eq!(
        s.head(&format!("/v2/{REPO}/blobs/{other}")).await.status(),
        StatusCode::NOT_FOUND
    );
    let actual = sha256(b"not that");
    assert_eq!(
        s.head(&format!("/v2/{REPO}/blobs/{actual}")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn chunked_upload_with_ordering_rules() {
    let s = TestServer::start().await;
    let data: Vec<u8> = (0..42u8).collect();
    let digest = sha256(&data);
    let start = s
        .req(Method::POST, &format!("/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&start, "range"), Some("0-0"));
    let loc = location(&start);
    assert!(loc.starts_with(&format!("/v2/{REPO}/blobs/uploads/")));
    let patch = |loc: String, range: &'static str, body: Vec<u8>| {
        s.req(Method::PATCH, &loc)
            .header("content-range", range)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };
    // Second chunk first: out of order.
    let r = patch(loc.clone(), "22-41", data[22..].to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_INVALID");
    let r = patch(loc.clone(), "0-21", data[..22].to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), Some("0-21"));
    let loc = location(&r);
    // The same chunk again.
    let r = patch(loc.clone(), "0-21", data[..22].to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = s.get(&loc).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), Some("0-21"));
    let r = patch(loc.clone(), "22-41", data[22..].to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), Some("0-41"));
    // Content-Range that disagrees with the body length.
    let r = patch(location(&r), "42-50", vec![1, 2]).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = s
        .req(Method::PUT, &with_query(&loc, &format!("digest={digest}")))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        s.get(&location(&r)).await.bytes().await.unwrap().as_ref(),
        data.as_slice()
    );
    // The session is gone once closed.
    assert_eq!(s.get(&loc).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn streamed_sha512_upload_without_a_hint_and_final_chunk_in_put() {
    let s = TestServer::start().await;
    let data = vec![7u8; 3000];
    let digest = format!(
        "sha512:{}",
        hex::encode(<sha2::Sha512 as sha2::Digest>::digest(&data))
    );
    let r = s
        .req(Method::POST, &format!("/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let r = s
        .req(Method::PATCH, &location(&r))
        .body(data[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .req(
            Method::PUT,
            &with_query(&location(&r), &format!("digest={digest}")),
        )
        .header("content-range", "1000-2999")
        .body(data[1000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let r = s.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert_eq!(r.bytes().await.unwrap().len(), 3000);
}

#[tokio::test]
async fn cancel_and_unknown_sessions() {
    let s = TestServer::start().await;
    let r = s
        .req(Method::POST, &format!("/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = location(&r);
    assert_eq!(s.delete(&loc).await.status(), StatusCode::NO_CONTENT);
    let r = s.get(&loc).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    // A session belongs to its repository.
    let r = s
        .req(Method::POST, &format!("/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let id = location(&r).rsplit('/').next().unwrap().to_string();
    assert_eq!(
        s.get(&format!("/v2/team/other/blobs/uploads/{id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn upload_sessions_survive_a_restart() {
    let s = TestServer::start().await;
    let data = b"first half|second half".to_vec();
    let r = s
        .req(Method::POST, &format!("/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let r = s
        .req(Method::PATCH, &location(&r))
        .header("content-range", "0-10")
        .body(data[..11].to_vec())
        .send()
        .await
        .unwrap();
    let loc = location(&r);
    let s = s.restart().await;
    let r = s.get(&loc).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), Some("0-10"));
    let r = s
        .req(
            Method::PUT,
            &with_query(&loc, &format!("digest={}", sha256(&data))),
        )
        .header("content-range", format!("11-{}", data.len() - 1))
        .body(data[11..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn cross_repository_mount() {
    let s = TestServer::start().await;
    let digest = s.push_blob(REPO, b"shared layer").await;
    let r = s
        .req(
            Method::POST,
            &format!("/v2/team/copy/blobs/uploads/?mount={digest}&from={REPO}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/team/copy/blobs/{digest}"));
    assert_eq!(s.get(&location(&r)).await.status(), StatusCode::OK);
    // Unknown in the source, or no source: an ordinary session.
    let missing = sha256(b"nowhere");
    for query in [
        format!("mount={missing}&from={REPO}"),
        format!("mount={digest}"),
    ] {
        let r = s
            .req(
                Method::POST,
                &format!("/v2/team/third/blobs/uploads/?{query}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{query}");
        assert!(location(&r).starts_with("/v2/team/third/blobs/uploads/"));
    }
}

#[tokio::test]
async fn manifests_by_tag_and_digest() {
    let s = TestServer::start().await;
    let (digest, body) = s.push_image(REPO, "v1", "a").await;
    for reference in ["v1", digest.as_str()] {
        let r = s.get(&format!("/v2/{REPO}/manifests/{reference}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), Some(OCI_MANIFEST));
        assert_eq!(header(&r, "docker-content-digest"), Some(digest.as_str()));
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            body.as_slice(),
            "byte for byte"
        );
        let r = s.head(&format!("/v2/{REPO}/manifests/{reference}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header(&r, "content-length"),
            Some(body.len().to_string().as_str())
        );
    }
    // Put by digest verifies the body.
    let r = s
        .put_manifest(REPO, &sha256(b"other"), OCI_MANIFEST, &body)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = s
        .put_manifest(REPO, "sha256:baddigeststring", OCI_MANIFEST, &body)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // ?tag= on a PUT by digest.
    let r = s
        .put_manifest(
            REPO,
            &format!("{digest}?tag=x1&tag=x2"),
            OCI_MANIFEST,
            &body,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let tags: Vec<_> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(tags, ["x1", "x2"]);
    assert_eq!(
        s.get(&format!("/v2/{REPO}/manifests/x2")).await.status(),
        StatusCode::OK
    );

    // Unknown references.
    let r = s.get(&format!("/v2/{REPO}/manifests/nope")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    assert_eq!(
        s.head(&format!("/v2/{REPO}/manifests/.INVALID_MANIFEST_NAME"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = s
        .get(&format!("/v2/{REPO}/manifests/sha256:totallywrong"))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");

    // Delete by tag, then by digest.
    assert_eq!(
        s.delete(&format!("/v2/{REPO}/manifests/v1")).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.get(&format!("/v2/{REPO}/manifests/v1")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/v2/{REPO}/manifests/{digest}"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        s.delete(&format!("/v2/{REPO}/manifests/{digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.get(&format!("/v2/{REPO}/manifests/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/v2/{REPO}/manifests/x1")).await.status(),
        StatusCode::NOT_FOUND,
        "tags go with the manifest"
    );
}

#[tokio::test]
async fn invalid_manifests_are_refused() {
    let s = TestServer::start().await;
    let config = s.push_blob(REPO, b"{}").await;
    let missing = sha256(b"never pushed");
    let m = image_manifest(&config, 2, &[(&missing, 12)], "");
    let r = s.put_manifest(REPO, "t", OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");

    // Non-distributable layers and a missing subject are fine.
    let extra =
        format!(r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{missing}","size":5}}"#);
    let m = String::from_utf8(image_manifest(&config, 2, &[], &extra)).unwrap().replace(
        r#""layers":[]"#,
        &format!(r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"{missing}","size":12,"urls":["https://example.com/l"]}}]"#),
    );
    let r = s.put_manifest(REPO, "t", OCI_MANIFEST, m.as_bytes()).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);

    let both = image_manifest(&config, 2, &[], r#","manifests":[]"#);
    let r = s.put_manifest(REPO, "t", OCI_MANIFEST, &both).await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let plain = image_manifest(&config, 2, &[], "");
    let r = s.put_manifest(REPO, "t", OCI_INDEX, &plain).await;
    assert_eq!(
        error_code(r).await,
        "MANIFEST_INVALID",
        "mediaType disagrees with Content-Type"
    );
    let r = s.put_manifest(REPO, "t", OCI_MANIFEST, b"{not json").await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");

    // An index whose child is absent.
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{missing}","size":3}}]}}"#
    );
    let r = s
        .put_manifest(REPO, "idx", OCI_INDEX, index.as_bytes())
        .await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn manifest_size_limit() {
    let s = TestServer::start_with(|c| c.max_manifest_bytes = 1000).await;
    let config = s.push_blob(REPO, b"{}").await;
    let pad = format!(r#","annotations":{{"pad":"{}"}}"#, "x".repeat(1000));
    let big = image_manifest(&config, 2, &[], &pad);
    let r = s.put_manifest(REPO, "big", OCI_MANIFEST, &big).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
}

#[tokio::test]
async fn tag_listing_pagination_and_case() {
    let s = TestServer::start().await;
    let (digest, body) = s.push_image(REPO, "test0", "t").await;
    for tag in ["test1", "TEST0", "TEST1", "b"] {
        let r = s.put_manifest(REPO, tag, OCI_MANIFEST, &body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let all: serde_json::Value = s
        .get(&format!("/v2/{REPO}/tags/list"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["name"], REPO);
    assert_eq!(
        all["tags"],
        serde_json::json!(["TEST0", "TEST1", "b", "test0", "test1"])
    );
    let r = s.get(&format!("/v2/{REPO}/tags/list?n=2")).await;
    assert_eq!(
        header(&r, "link"),
        Some(format!("</v2/{REPO}/tags/list?n=2&last=TEST1>; rel=\"next\"").as_str())
    );
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["TEST0", "TEST1"]));
    let r = s.get(&format!("/v2/{REPO}/tags/list?n=2&last=test0")).await;
    assert!(header(&r, "link").is_none());
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["test1"]));
    let page: serde_json::Value = s
        .get(&format!("/v2/{REPO}/tags/list?n=0"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["tags"], serde_json::json!([]));
    // A huge n is clamped, not allocated.
    let r = s
        .get(&format!("/v2/{REPO}/tags/list?n=18446744073709551615"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.get("/v2/team/unknown/tags/list").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
    let _ = digest;
}

#[tokio::test]
async fn referrers_and_subject() {
    let s = TestServer::start().await;
    let (subject, _) = s.push_image(REPO, "base", "s").await;
    let empty = s.push_blob(REPO, b"{}").await;
    let extra = |artifact: &str, note: &str| {
        format!(
            r#","artifactType":"{artifact}","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":1}},"annotations":{{"note":"{note}"}}"#
        )
    };
    let sig = String::from_utf8(image_manifest(
        &empty,
        2,
        &[],
        &extra("application/vnd.example.sig", "one"),
    ))
    .unwrap()
    .replace(
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.empty.v1+json",
    );
    let r = s
        .put_manifest(REPO, &sha256(sig.as_bytes()), OCI_MANIFEST, sig.as_bytes())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), Some(subject.as_str()));
    let sbom = image_manifest(
        &empty,
        2,
        &[],
        &extra("application/vnd.example.sbom", "two"),
    );
    let r = s
        .put_manifest(REPO, &sha256(&sbom), OCI_MANIFEST, &sbom)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let r = s.get(&format!("/v2/{REPO}/referrers/{subject}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), Some(OCI_INDEX));
    let index: serde_json::Value = r.json().await.unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries
        .iter()
        .all(|e| e["annotations"]["note"].is_string() && e["artifactType"].is_string()));

    let r = s
        .get(&format!(
            "/v2/{REPO}/referrers/{subject}?artifactType=application/vnd.example.sbom"
        ))
        .await;
    assert_eq!(header(&r, "oci-filters-applied"), Some("artifactType"));
    let index: serde_json::Value = r.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["digest"], sha256(&sbom));

    let r = s
        .get(&format!(
            "/v2/{REPO}/referrers/{}",
            sha256(b"no such subject")
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let index: serde_json::Value = r.json().await.unwrap();
    assert_eq!(index["manifests"], serde_json::json!([]));
    let r = s.get(&format!("/v2/{REPO}/referrers/sha256:short")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Deleting a referrer removes it from the list.
    assert_eq!(
        s.delete(&format!("/v2/{REPO}/manifests/{}", sha256(&sbom)))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let index: serde_json::Value = s
        .get(&format!("/v2/{REPO}/referrers/{subject}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn catalog_pagination() {
    let s = TestServer::start().await;
    for repo in ["a/one", "a/two", "b/three"] {
        s.push_blob(repo, repo.as_bytes()).await;
    }
    let r = s.get("/v2/_catalog?n=2").await;
    assert!(header(&r, "link").unwrap().contains("last=a%2Ftwo"));
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["repositories"], serde_json::json!(["a/one", "a/two"]));
    let page: serde_json::Value = s
        .get("/v2/_catalog?n=2&last=a/two")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["repositories"], serde_json::json!(["b/three"]));
}

#[tokio::test]
async fn names_are_validated_with_a_clear_message() {
    let s = TestServer::start().await;
    let long = "a".repeat(64);
    for path in [
        format!("/v2/{long}/app/tags/list"),
        format!("/v2/team/{long}/tags/list"),
        "/v2/one/two/three/tags/list".to_string(),
        "/v2/Team/app/tags/list".to_string(),
        "/v2/team%2Fapp/x/tags/list".to_string(),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "NAME_INVALID", "{path}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("63")
                || message.contains("two path segments")
                || message.contains("percent"),
            "{message}"
        );
    }
    let r = s
        .req(Method::POST, "/v2/team/app/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
}

#[tokio::test]
async fn graceful_shutdown_flushes_and_data_persists() {
    let s = TestServer::start().await;
    let (digest, _) = s.push_image(REPO, "keep", "p").await;
    let s = s.restart().await;
    let r = s.get(&format!("/v2/{REPO}/manifests/keep")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), Some(digest.as_str()));
    let page: serde_json::Value = s.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(page["repositories"], serde_json::json!([REPO]));
    let _ = s.data_dir();
}
