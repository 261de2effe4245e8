//! Image streams: the push path's ImageStreamMapping and the image.openshift.io/v1 API.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

const API: &str = "/apis/image.openshift.io/v1";

async fn send_json(s: &TestServer, method: Method, path: &str, body: &Value) -> reqwest::Response {
    s.req(method, path).json(body).send().await.unwrap()
}

#[tokio::test]
async fn pushes_build_tag_history_newest_first() {
    let s = TestServer::start().await;
    let (a, _) = s.push_image("team/app", "latest", "a").await;
    let (b, _) = s.push_image("team/app", "latest", "b").await;
    let is = stream(&s, "team", "app").await;
    assert_eq!(history(&is, "latest"), [b.clone(), a.clone()]);
    assert_eq!(is["metadata"]["generation"], 1);
    let host = s.base.trim_start_matches("http://");
    assert_eq!(
        is["status"]["dockerImageRepository"],
        format!("{host}/team/app")
    );
    let top = &is["status"]["tags"][0]["items"][0];
    assert_eq!(top["dockerImageReference"], format!("{host}/team/app@{b}"));

    // The first image again goes on top; the same digest twice in a row adds nothing.
    s.push_image("team/app", "latest", "a").await;
    s.push_image("team/app", "latest", "a").await;
    let is = stream(&s, "team", "app").await;
    assert_eq!(history(&is, "latest"), [a.clone(), b, a.clone()]);

    // A pull by tag answers the top of the history.
    let r = s.get("/v2/team/app/manifests/latest").await;
    assert_eq!(header(&r, "docker-content-digest"), Some(a.as_str()));

    // The Image is immutable and describes the image.
    let image: Value = s
        .get(&format!("{API}/images/{a}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        image["metadata"]["annotations"]["openshift.io/image.managed"],
        "true"
    );
    assert_eq!(image["dockerImageMetadata"]["Architecture"], "amd64");
    assert_eq!(image["dockerImageLayers"].as_array().unwrap().len(), 1);
    assert_eq!(image["dockerImageManifestMediaType"], OCI_MANIFEST);
}

#[tokio::test]
async fn push_by_digest_creates_the_image_but_no_history() {
    let s = TestServer::start().await;
    let (d, body) = s.push_image("team/app", "v1", "x").await;
    let (other, other_body) = s.push_image("team/tmp", "t", "y").await;
    let _ = other_body;
    let r = s.put_manifest("team/app", &d, OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let is = stream(&s, "team", "app").await;
    assert_eq!(is["status"]["tags"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.get(&format!("{API}/images/{other}")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_mapping_moves_a_tag_like_a_push() {
    let s = TestServer::start().await;
    let (a, _) = s.push_image("team/app", "latest", "a").await;
    let (b, _) = s.push_image("team/app", "latest", "b").await;
    let image: Value = s
        .get(&format!("{API}/images/{a}"))
        .await
        .json()
        .await
        .unwrap();
    let ism = json!({"kind": "ImageStreamMapping", "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": "app", "namespace": "team"}, "image": image, "tag": "latest"});
    let r = send_json(
        &s,
        Method::POST,
        &format!("{API}/namespaces/team/imagestreammappings"),
        &ism,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["status"], "Success");
    let is = stream(&s, "team", "app").await;
    assert_eq!(history(&is, "latest"), [a.clone(), b, a.clone()]);
    let r = s.get("/v2/team/app/manifests/latest").await;
    assert_eq!(header(&r, "docker-content-digest"), Some(a.as_str()));

    // A mapping never creates a stream.
    let mut missing = ism.clone();
    missing["metadata"]["name"] = json!("nope");
    let r = send_json(
        &s,
        Method::POST,
        &format!("{API}/namespaces/team/imagestreammappings"),
        &missing,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(
        status["message"],
        "imagestreammappings.image.openshift.io \"nope\" not found"
    );
    assert_eq!(status["details"]["kind"], "imagestreammappings");
    assert_eq!(status["details"]["name"], "nope");
}

/// The seed's ImageStreamMapping, posted verbatim (its layers have no mediaType, its Image is
/// named only by its reference), is accepted; one without a reference is 422 (issue 16).
#[tokio::test]
async fn the_seed_mapping_is_accepted_verbatim() {
    let s = TestServer::start().await;
    let yaml = include_str!("fixtures/seed-imagestreammapping.yaml");
    let ism: Value = serde_yaml_ng::from_str(yaml).unwrap();
    let mappings = format!("{API}/namespaces/test/imagestreammappings");
    let r = send_json(
        &s,
        Method::POST,
        &format!("{API}/namespaces/test/imagestreams"),
        &json!({"metadata": {"name": "origin-ruby-sample"}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send_json(&s, Method::POST, &mappings, &ism).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let digest = "sha256:47463d94eb5c049b2d23b03a9530bf944f8f967a0fe79147dd6b9135bf7dd13d";
    let is = stream(&s, "test", "origin-ruby-sample").await;
    assert_eq!(history(&is, "latest"), [digest]);
    let image: Value = s
        .get(&format!("{API}/images/{digest}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        image["dockerImageLayers"][1]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(image["dockerImageMetadata"]["Config"]["User"], "1001");

    let mut without = ism.clone();
    without["image"]
        .as_object_mut()
        .unwrap()
        .remove("dockerImageReference");
    without["image"]["metadata"] = json!({"name": digest});
    let r = send_json(&s, Method::POST, &mappings, &without).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let status: Value = r.json().await.unwrap();
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "image.dockerImageReference"
    );
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("image.dockerImageReference: Required value"),
        "{status}"
    );
}

#[tokio::test]
async fn watch_sees_a_push_within_a_second() {
    let s = TestServer::start().await;
    s.push_image("team/app", "latest", "a").await;
    let list: Value = s
        .get(&format!("{API}/namespaces/team/imagestreams"))
        .await
        .json()
        .await
        .unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watch = s
        .get(&format!(
            "{API}/namespaces/team/imagestreams?watch=true&resourceVersion={rv}"
        ))
        .await;
    assert_eq!(watch.status(), StatusCode::OK);
    let pushed = tokio::spawn({
        let base = s.base.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = base;
        }
    });
    s.push_image("team/app", "latest", "b").await;
    pushed.await.unwrap();
    let mut buf = Vec::new();
    let event: Value = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            let chunk = watch.chunk().await.unwrap().expect("watch stream open");
            buf.extend_from_slice(&chunk);
            if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                return serde_json::from_slice(&buf[..pos]).unwrap();
            }
        }
    })
    .await
    .expect("event within a second");
    assert_eq!(event["type"], "MODIFIED");
    assert_eq!(event["object"]["metadata"]["name"], "app");
    assert_eq!(event["object"]["kind"], "ImageStream");
}

#[tokio::test]
async fn updates_need_a_current_resource_version() {
    let s = TestServer::start().await;
    let create = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": "web"}});
    let r = send_json(
        &s,
        Method::POST,
        &format!("{API}/namespaces/team/imagestreams"),
        &create,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["metadata"]["generation"], 1);
    let r = send_json(
        &s,
        Method::POST,
        &format!("{API}/namespaces/team/imagestreams"),
        &create,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let mut update = created.clone();
    update["metadata"]["labels"] = json!({"app": "web"});
    update["metadata"]["resourceVersion"] = json!("");
    let r = send_json(
        &s,
        Method::PUT,
        &format!("{API}/namespaces/team/imagestreams/web"),
        &update,
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    update["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let r = send_json(
        &s,
        Method::PUT,
        &format!("{API}/namespaces/team/imagestreams/web"),
        &update,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The same (now stale) version again.
    let r = send_json(
        &s,
        Method::PUT,
        &format!("{API}/namespaces/team/imagestreams/web"),
        &update,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["reason"], "Conflict");

    let list: Value = s
        .get(&format!(
            "{API}/namespaces/team/imagestreams?labelSelector=app%3Dweb"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let list: Value = s
        .get(&format!(
            "{API}/imagestreams?fieldSelector=metadata.name%3Dother"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    assert_eq!(
        s.delete(&format!("{API}/namespaces/team/imagestreams/web"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        s.get(&format!("{API}/namespaces/team/imagestreams/web"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn long_names_are_refused_by_registry_and_api() {
    let s = TestServer::start().await;
    let long = "a".repeat(64);
    let r = s
        .req(Method::POST, &format!("/v2/team/{long}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "NAME_INVALID");
    let create = json!({"metadata": {"name": long}});
    let r = send_json(
        &s,
        Method::POST,
        &format!("{API}/namespaces/team/imagestreams"),
        &create,
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["reason"], "Invalid");
    assert!(
        status["message"].as_str().unwrap().contains("63"),
        "{status}"
    );
    let r = s
        .get(&format!("{API}/namespaces/{long}/imagestreams"))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn istags_and_isimages() {
    let s = TestServer::start().await;
    let (a, _) = s.push_image("team/app", "v1", "a").await;
    let istag: Value = s
        .get(&format!("{API}/namespaces/team/imagestreamtags/app:v1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(istag["kind"], "ImageStreamTag");
    assert_eq!(
        istag["tag"],
        Value::Null,
        "a pushed tag exists only in status"
    );
    assert_eq!(istag["image"]["metadata"]["name"], a);
    assert_eq!(
        s.get(&format!("{API}/namespaces/team/imagestreamtags/app:nope"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = s
        .get(&format!(
            "{API}/namespaces/team/imagestreamtags/nostream:v1"
        ))
        .await;
    let status: Value = r.json().await.unwrap();
    assert_eq!(
        status["message"],
        "imagestreamtags.image.openshift.io \"nostream\" not found"
    );
    assert_eq!(
        s.get(&format!("{API}/namespaces/team/imagestreamtags/app"))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );

    let prefix = &a["sha256:".len().."sha256:".len() + 12];
    let isimage: Value = s
        .get(&format!(
            "{API}/namespaces/team/imagestreamimages/app@{prefix}"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(isimage["image"]["metadata"]["name"], a);

    // Another stream's tag is a valid source, as in OpenShift: its current image is taken
    // when the tag is processed (pullable from this stream), and not followed afterwards.
    let (b, _) = s.push_image("team/base", "1.0", "b").await;
    let body = json!({"metadata": {"name": "app:base"}, "tag": {"name": "base", "from": {"kind": "ImageStreamTag", "name": "base:1.0"}}});
    let r = send_json(
        &s,
        Method::PUT,
        &format!("{API}/namespaces/team/imagestreamtags/app:base"),
        &body,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let r = s.get("/v2/team/app/manifests/base").await;
    assert_eq!(header(&r, "docker-content-digest"), Some(b.as_str()));
    let is = stream(&s, "team", "app").await;
    assert_eq!(history(&is, "base"), [b.as_str()]);
    let (b2, _) = s.push_image("team/base", "1.0", "b2").await;
    let is = stream(&s, "team", "app").await;
    assert_eq!(
        history(&is, "base"),
        [b.as_str()],
        "not {b2}: other streams are not followed"
    );
    // A source in a namespace the caller may not view is refused; without auth every
    // namespace is viewable, so the refusal is covered in isolation.rs.

    // ... but its image can be tagged in by id: pullable from this stream afterwards.
    let body = json!({"metadata": {"name": "app:base"}, "tag": {"name": "base", "from": {"kind": "ImageStreamImage", "name": format!("base@{b}")}}});
    let r = send_json(
        &s,
        Method::PUT,
        &format!("{API}/namespaces/team/imagestreamtags/app:base"),
        &body,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let r = s.get("/v2/team/app/manifests/base").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), Some(b.as_str()));
    let m: Value = r.json().await.unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/v2/team/app/blobs/{layer}")).await.status(),
        StatusCode::OK
    );
    let tags: Value = s.get("/v2/team/app/tags/list").await.json().await.unwrap();
    assert_eq!(tags["tags"], json!(["base", "v1"]));
    let list: Value = s
        .get(&format!("{API}/namespaces/team/imagestreamtags"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);

    // DELETE on the registry removes the istag; on the API too.
    assert_eq!(
        s.delete("/v2/team/app/manifests/base").await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.get(&format!("{API}/namespaces/team/imagestreamtags/app:base"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.delete(&format!("{API}/namespaces/team/imagestreamtags/app:v1"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        s.get("/v2/team/app/manifests/v1").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn deleting_a_manifest_removes_it_from_history() {
    let s = TestServer::start().await;
    let (a, _) = s.push_image("team/app", "latest", "a").await;
    let (b, _) = s.push_image("team/app", "latest", "b").await;
    s.push_image("team/app", "old", "a").await;
    assert_eq!(
        s.delete(&format!("/v2/team/app/manifests/{b}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let is = stream(&s, "team", "app").await;
    assert_eq!(history(&is, "latest"), std::slice::from_ref(&a));
    let r = s.get("/v2/team/app/manifests/latest").await;
    assert_eq!(header(&r, "docker-content-digest"), Some(a.as_str()));
    assert_eq!(
        s.delete(&format!("/v2/team/app/manifests/{a}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let is = stream(&s, "team", "app").await;
    assert!(
        is["status"]["tags"].as_array().is_none_or(|t| t.is_empty()),
        "{is}"
    );
    let tags: Value = s.get("/v2/team/app/tags/list").await.json().await.unwrap();
    assert_eq!(tags["tags"], json!([]));
}

#[tokio::test]
async fn index_images_list_their_platforms() {
    let s = TestServer::start().await;
    let (amd, amd_body) = s
        .push_image("team/multi", &sha256_placeholder(), "amd")
        .await;
    let _ = amd_body;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{amd}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
    );
    let r = s
        .put_manifest("team/multi", "latest", OCI_INDEX, index.as_bytes())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let istag: Value = s
        .get(&format!(
            "{API}/namespaces/team/imagestreamtags/multi:latest"
        ))
        .await
        .json()
        .await
        .unwrap();
    let manifests = istag["image"]["dockerImageManifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["architecture"], "amd64");
    assert_eq!(manifests[0]["os"], "linux");
}

/// A tag for the child push (children are normally pushed by digest; a tag works as well).
fn sha256_placeholder() -> String {
    "child".to_string()
}

#[tokio::test]
async fn discovery_documents() {
    let s = TestServer::start().await;
    let v1: Value = s.get(API).await.json().await.unwrap();
    assert_eq!(v1["groupVersion"], "image.openshift.io/v1");
    let names: Vec<&str> = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for want in [
        "imagestreams",
        "imagestreamtags",
        "imagestreamimages",
        "imagestreammappings",
        "images",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert_eq!(s.get("/apis").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn merge_patch_changes_the_spec_and_bumps_generation() {
    let s = TestServer::start().await;
    s.push_image("team/app", "v1", "a").await;
    let r = s
        .req(
            Method::PATCH,
            &format!("{API}/namespaces/team/imagestreams/app"),
        )
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"metadata":{"labels":{"tier":"web"}},"spec":{"lookupPolicy":{"local":true}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let is = stream(&s, "team", "app").await;
    assert_eq!(is["metadata"]["labels"]["tier"], "web");
    assert_eq!(is["spec"]["lookupPolicy"]["local"], true);
    assert_eq!(is["metadata"]["generation"], 2);
    assert_eq!(history(&is, "v1").len(), 1, "status is kept");
    // Strategic merge patch (kubectl's default): spec tags merge by name.
    let smp = |body: &'static str| {
        s.req(
            Method::PATCH,
            &format!("{API}/namespaces/team/imagestreams/app"),
        )
        .header("content-type", "application/strategic-merge-patch+json")
        .body(body)
        .send()
    };
    let r = smp(r#"{"spec":{"tags":[{"name":"ext","reference":true,
        "from":{"kind":"DockerImage","name":"quay.io/x/y:1"}}]}}"#)
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let names = |is: &Value| -> Vec<String> {
        is["spec"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let r = smp(r#"{"spec":{"tags":[{"name":"ext2","reference":true,
        "from":{"kind":"DockerImage","name":"quay.io/x/y:2"}}]}}"#)
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        names(&stream(&s, "team", "app").await),
        ["ext", "ext2"],
        "merged by name"
    );
    let r = smp(r#"{"spec":{"tags":[{"name":"ext","$patch":"delete"}]}}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(names(&stream(&s, "team", "app").await), ["ext2"]);
    let r = smp(r#"{"spec":{"tags":[{"from":{}}]}}"#).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// `--public-host` fills status.publicDockerImageRepository; references and
/// status.dockerImageRepository name the internal host (issue 16).
#[tokio::test]
async fn public_and_internal_repositories() {
    let s = TestServer::start_with(|c| {
        c.public_host = Some("registry.example.com".into());
        c.internal_host = Some("image-registry.svc:5000".into());
    })
    .await;
    let (digest, _) = s.push_image("team/app", "v1", "x").await;
    let is = stream(&s, "team", "app").await;
    assert_eq!(
        is["status"]["dockerImageRepository"],
        "image-registry.svc:5000/team/app"
    );
    assert_eq!(
        is["status"]["publicDockerImageRepository"],
        "registry.example.com/team/app"
    );
    assert_eq!(
        is["status"]["tags"][0]["items"][0]["dockerImageReference"],
        format!("image-registry.svc:5000/team/app@{digest}")
    );
    let list: Value = s
        .get(&format!("{API}/namespaces/team/imagestreams"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["items"][0]["status"]["publicDockerImageRepository"],
        "registry.example.com/team/app"
    );
    // berth get is shows the public repository, as oc does.
    let r = crate::common::berth_in(&s, "team", &["get", "is"]).await;
    assert!(
        crate::common::ok(&r).contains("registry.example.com/team/app"),
        "{}",
        r.stdout
    );

    // Without a public host there is no public repository.
    let plain = TestServer::start().await;
    plain.push_image("team/app", "v1", "x").await;
    let is = stream(&plain, "team", "app").await;
    assert!(
        is["status"].get("publicDockerImageRepository").is_none(),
        "{is}"
    );
}
