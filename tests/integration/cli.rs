//! The client verbs (`berth get`, `berth tag`) run as the real binary against a test server.

use std::process::Command;

use crate::common::TestServer;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `berth --server <base> -n ns <args>` off the async runtime.
async fn berth(server: &TestServer, args: &[&str]) -> Run {
    let base = server.base.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["--server", &base, "-n", "ns"])
            .args(&args)
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_NAMESPACE")
            .output()
            .expect("berth runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    })
    .await
    .unwrap()
}

fn ok(r: &Run) -> &str {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    &r.stdout
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
    let r = berth(&server, &["tag", "quay.io/x/y:1", "app:v2"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not supported yet"), "{}", r.stderr);
}
