//! The client verbs (`berth get`, `berth tag`) run as the real binary against a test server.

use crate::common::{ok, Run, TestServer};

/// Runs `berth --server <base> -n ns <args>`.
async fn berth(server: &TestServer, args: &[&str]) -> Run {
    crate::common::berth_in(server, "ns", args).await
}

#[tokio::test]
async fn get_tag_and_delete() {
    let server = TestServer::start().await;
    let (digest, _) = server.push_image("ns/app", "v1", "cli").await;
    let host = server.base.trim_start_matches("http://").to_string();

    // get is: the §7.3 table.
    let r = berth(&server, &["get", "is"]).await;
    let lines: Vec<&str> = ok(&r).lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(header, ["NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..3], ["app", &format!("{host}/ns/app"), "v1"]);
    assert!(lines[1].ends_with(" ago"), "{}", lines[1]);

    let r = berth(&server, &["get", "is", "app", "-o", "name"]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io/app\n");

    // get istag with jsonpath; the seed example prints nothing for a single-arch image.
    let r = berth(
        &server,
        &[
            "get",
            "istag",
            "app:v1",
            "-o",
            "jsonpath={.image.metadata.name}",
        ],
    )
    .await;
    assert_eq!(ok(&r), digest);
    let r = berth(
        &server,
        &[
            "get",
            "istag",
            "app:v1",
            "-o",
            "jsonpath={range .image.dockerImageManifests[*]}{.os}/{.architecture}{'\\n'}{end}",
        ],
    )
    .await;
    assert_eq!(ok(&r), "");

    let r = berth(&server, &["get", "istag"]).await;
    let lines: Vec<&str> = ok(&r).lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", r.stdout);
    assert!(lines[0].contains("IMAGE REFERENCE"));
    assert!(lines[1].starts_with("app:v1 "), "{}", r.stdout);
    assert!(lines[1].contains(&format!("{host}/ns/app@{digest}")));

    let r = berth(&server, &["get", "images", "-o", "name"]).await;
    assert_eq!(ok(&r), format!("image.image.openshift.io/{digest}\n"));

    // tag freezes the source at its current image.
    let r = berth(&server, &["tag", "app:v1", "app:prod"]).await;
    assert_eq!(ok(&r), format!("Tag app:prod set to app@{digest}.\n"));
    let r = berth(&server, &["get", "istag", "app:prod", "-o", "json"]).await;
    let ist: serde_json::Value = serde_json::from_str(ok(&r)).unwrap();
    assert_eq!(ist["image"]["metadata"]["name"], digest.as_str());
    assert_eq!(ist["tag"]["from"]["kind"], "ImageStreamImage");
    assert_eq!(ist["tag"]["from"]["name"], format!("app@{digest}").as_str());

    let r = berth(&server, &["get", "is", "app", "-o", "yaml"]).await;
    assert!(ok(&r).contains("  name: app\n"), "{}", r.stdout);
    assert!(r.stdout.contains("    tag: prod\n"), "{}", r.stdout);

    // --alias keeps an ImageStreamTag source.
    let r = berth(&server, &["tag", "--alias", "app:v1", "app:edge"]).await;
    assert_eq!(ok(&r), "Tag app:edge set up to track app:v1.\n");
    let r = berth(
        &server,
        &[
            "get",
            "istag",
            "app:edge",
            "-o",
            "jsonpath={.tag.from.kind}",
        ],
    )
    .await;
    assert_eq!(ok(&r), "ImageStreamTag");

    // -d deletes; the tag is then gone.
    let r = berth(&server, &["tag", "-d", "app:prod"]).await;
    assert_eq!(ok(&r), "Deleted tag ns/app:prod.\n");
    let r = berth(&server, &["get", "istag", "app:prod"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("Error from server (NotFound): "),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn errors_and_empty_lists() {
    let server = TestServer::start().await;
    let r = berth(&server, &["get", "is"]).await;
    assert_eq!(ok(&r), "");
    assert_eq!(r.stderr, "No resources found in ns namespace.\n");

    let r = berth(&server, &["get", "is", "missing"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "Error from server (NotFound): imagestreams.image.openshift.io \"missing\" not found\n"
    );

    let r = berth(&server, &["tag", "missing:v1", "missing:v2"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("Error from server (NotFound)"),
        "{}",
        r.stderr
    );

    server.push_image("ns/app", "v1", "cli-errors").await;
    let r = berth(&server, &["tag", "app:nope", "app:v2"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "error: \"app:nope\" is not currently pointing to an image, cannot use it as the source of a tag\n"
    );
    let r = berth(&server, &["tag", "--alias", "app:v1", "other:v1"]).await;
    assert_eq!(
        r.stderr,
        "error: cannot set alias across different Image Streams\n"
    );
    // The refusals of spec §3.7, each before anything is sent.
    for (args, message) in [
        (
            &["tag", "--import-mode=legacy", "quay.io/x/y:1", "app:v2"][..],
            "valid ImportMode values are Legacy or PreserveOriginal",
        ),
        (
            &["tag", "--scheduled", "app:v1", "app:v2"][..],
            "only container images can have importing flags set",
        ),
        (
            &["tag", "--alias", "--insecure", "app:v1", "app:v2"][..],
            "cannot set a container image tag as an alias and also set import flags",
        ),
        (
            &["tag", "-d", "--scheduled", "app:v1"][..],
            "cannot set flags for importing images when deleting a tag",
        ),
        (
            &["tag", "-d", "--import-mode=Legacy", "app:v1"][..],
            "cannot specify an import mode when deleting",
        ),
        (
            &["tag", "--reference-policy=remote", "app:v1", "app:v2"][..],
            "reference policy must be set to 'source' or 'local'",
        ),
        (
            &["tag", "app:v1", "app:-bad"][..],
            "invalid tag \"-bad\" format",
        ),
    ] {
        let r = berth(&server, args).await;
        assert_eq!(r.code, 1, "{args:?}");
        assert!(
            r.stderr.starts_with(&format!("error: {message}")),
            "{args:?}: {}",
            r.stderr
        );
    }
    let r = berth(
        &server,
        &["get", "is", "app", "-o", "jsonpath={.spec.tags}"],
    )
    .await;
    assert_eq!(ok(&r), "", "nothing was tagged by a refused command");
}

/// Reads a tag's spec or status entry out of a stream fetched with `berth get -o json`.
async fn stream_json(server: &TestServer, name: &str) -> serde_json::Value {
    let r = berth(server, &["get", "is", name, "-o", "json"]).await;
    serde_json::from_str(ok(&r)).unwrap()
}

fn entry<'a>(stream: &'a serde_json::Value, part: &str, tag: &str) -> &'a serde_json::Value {
    let key = if part == "spec" { "name" } else { "tag" };
    stream[part]["tags"]
        .as_array()
        .and_then(|tags| tags.iter().find(|t| t[key] == tag))
        .unwrap_or(&serde_json::Value::Null)
}

/// The examples of the seed's "Working with image streams" section, in order.
#[tokio::test]
async fn seed_tagging_workflows() {
    let server = TestServer::start().await;
    let (first, _) = server.push_image("ns/python", "3.5", "py35").await;

    // oc tag python:3.5 python:latest: two tags on one image.
    let r = berth(&server, &["tag", "python:3.5", "python:latest"]).await;
    assert_eq!(
        ok(&r),
        format!("Tag python:latest set to python@{first}.\n")
    );
    let s = stream_json(&server, "python").await;
    assert_eq!(
        entry(&s, "status", "latest")["items"][0]["image"],
        first.as_str()
    );

    // oc tag <external> python:3.6: stored with its import policy; the import is pending.
    // (A loopback address, so that no test ever reaches out to the internet.)
    let external = "127.0.0.1:9/library/python:3.6.0";
    let r = berth(
        &server,
        &[
            "tag",
            "--scheduled",
            "--insecure",
            "--import-mode=PreserveOriginal",
            external,
            "python:3.6",
        ],
    )
    .await;
    assert_eq!(
        ok(&r),
        format!("Tag python:3.6 set to import {external} periodically.\n")
    );
    let s = stream_json(&server, "python").await;
    let spec = entry(&s, "spec", "3.6");
    assert_eq!(spec["from"]["kind"], "DockerImage");
    assert_eq!(spec["from"]["name"], external);
    assert_eq!(
        spec["importPolicy"],
        serde_json::json!({"insecure": true, "scheduled": true, "importMode": "PreserveOriginal"})
    );
    assert!(spec["generation"].as_i64().unwrap() > 1, "{spec}");
    // The import runs in the background; its source here is unreachable, so the tag gets
    // no history (at most a failure condition).
    assert!(
        entry(&s, "status", "3.6")["items"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "no history before an import succeeds"
    );

    // oc tag python:3.6 python:latest moves latest (3.6 gets an image by a push here).
    let (second, _) = server.push_image("ns/python", "3.6", "py36").await;
    let r = berth(&server, &["tag", "python:3.6", "python:latest"]).await;
    assert_eq!(
        ok(&r),
        format!("Tag python:latest set to python@{second}.\n")
    );
    let pulled = server.head("/v2/ns/python/manifests/latest").await;
    assert_eq!(
        crate::common::header(&pulled, "docker-content-digest"),
        Some(second.as_str())
    );

    // oc tag -d python:3.6
    let r = berth(&server, &["tag", "-d", "python:3.6"]).await;
    assert_eq!(ok(&r), "Deleted tag ns/python:3.6.\n");
    let s = stream_json(&server, "python").await;
    assert!(entry(&s, "spec", "3.6").is_null());
    assert!(entry(&s, "status", "3.6").is_null());

    // An alias follows every new push of its source.
    let r = berth(&server, &["tag", "--alias", "python:3.5", "python:stable"]).await;
    assert_eq!(ok(&r), "Tag python:stable set up to track python:3.5.\n");
    let (third, _) = server.push_image("ns/python", "3.5", "py35-patch").await;
    let s = stream_json(&server, "python").await;
    let stable = &entry(&s, "status", "stable")["items"];
    assert_eq!(stable[0]["image"], third.as_str());
    assert_eq!(stable[1]["image"], first.as_str());

    // Rollback by id: the old image becomes latest's new top item; pulls follow at once.
    let r = berth(
        &server,
        &["tag", &format!("python@{first}"), "python:latest"],
    )
    .await;
    assert_eq!(
        ok(&r),
        format!("Tag python:latest set to python@{first}.\n")
    );
    let s = stream_json(&server, "python").await;
    let latest = &entry(&s, "status", "latest")["items"];
    let images: Vec<&str> = latest
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, [first.as_str(), second.as_str(), first.as_str()]);
    let pulled = server.head("/v2/ns/python/manifests/latest").await;
    assert_eq!(
        crate::common::header(&pulled, "docker-content-digest"),
        Some(first.as_str())
    );
}

/// The server and namespace come from the client config file when no flag or variable says.
#[tokio::test]
async fn client_config_file_supplies_server_and_namespace() {
    let server = TestServer::start().await;
    server.push_image("team/app", "v1", "config-file").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("server = \"{}\"\nnamespace = \"team\"\n", server.base),
    )
    .unwrap();
    let r = crate::common::run_berth(
        &["get", "is", "-o", "name"],
        &[("BERTH_CLIENT_CONFIG", config.as_os_str())],
    )
    .await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io/app\n");
}
