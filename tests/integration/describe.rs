//! `berth describe` (spec §7.1-7.2) run as the real binary against a test server, compared
//! with golden files under `tests/integration/golden/`. The host:port, digests and ages are
//! normalised first; `BLESS=1 cargo test --test integration describe` rewrites the files.

use std::path::PathBuf;

use reqwest::StatusCode;

use crate::common::{image_manifest, ok, sha256, Run, TestServer, OCI_INDEX, OCI_MANIFEST};

/// Runs `berth --server <base> -n ns <args>`.
async fn berth(server: &TestServer, args: &[&str]) -> Run {
    crate::common::berth_in(server, "ns", args).await
}

/// An image config with everything `describe` shows.
const CONFIG: &str = r#"{"architecture":"amd64","os":"linux","created":"2024-03-01T12:00:00Z","author":"berth tests","config":{"User":"1001","ExposedPorts":{"9090/tcp":{},"8080/tcp":{}},"Env":["PATH=/usr/local/bin:/usr/bin:/bin","APP_MODE=production"],"Entrypoint":["/usr/bin/app"],"Cmd":["serve","--port","8080"],"WorkingDir":"/srv/app","Labels":{"org.opencontainers.image.version":"1.0","org.opencontainers.image.title":"app"},"Volumes":{"/data":{}}},"rootfs":{"type":"layers","diff_ids":[]}}"#;

/// Pushes `config` and `layers` and a manifest under `reference` (a tag, or `None` for by
/// digest); returns the manifest's digest and size.
async fn push(
    s: &TestServer,
    repo: &str,
    reference: Option<&str>,
    config: &str,
    layers: &[&[u8]],
) -> (String, usize) {
    let config_digest = s.push_blob(repo, config.as_bytes()).await;
    let mut descriptors = Vec::new();
    for layer in layers {
        descriptors.push((s.push_blob(repo, layer).await, layer.len()));
    }
    let descriptors: Vec<(&str, usize)> =
        descriptors.iter().map(|(d, n)| (d.as_str(), *n)).collect();
    let manifest = image_manifest(&config_digest, config.len(), &descriptors, "");
    let digest = sha256(&manifest);
    let r = s
        .put_manifest(repo, reference.unwrap_or(&digest), OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    (digest, manifest.len())
}

#[tokio::test]
async fn describe_stream_tag_and_image() {
    let s = TestServer::start().await;
    let big = vec![b'x'; 1500];
    let (digest, _) = push(&s, "ns/app", Some("v1"), CONFIG, &[&big, b"small layer"]).await;
    ok(&berth(&s, &["tag", "app:v1", "app:latest"]).await);
    ok(&berth(&s, &["tag", "--alias", "app:latest", "app:stable"]).await);

    let r = berth(&s, &["describe", "is/app"]).await;
    golden("describe_is_app.txt", &normalize(ok(&r), &s));
    // The type and the name as two words, and the long resource name, describe the same.
    let r2 = berth(&s, &["describe", "imagestream", "app"]).await;
    assert_eq!(normalize(ok(&r2), &s), normalize(&r.stdout, &s));

    let r = berth(&s, &["describe", "istag/app:latest"]).await;
    golden("describe_istag_app_latest.txt", &normalize(ok(&r), &s));
    // The same image by ID: the same description.
    let isimage = format!("isimage/app@{digest}");
    let r2 = berth(&s, &["describe", &isimage]).await;
    assert_eq!(normalize(ok(&r2), &s), normalize(&r.stdout, &s));

    // Missing objects: the server's Status, as `berth get` prints it.
    let r = berth(&s, &["describe", "is/missing"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        "Error from server (NotFound): imagestreams.image.openshift.io \"missing\" not found\n"
    );
    let r = berth(&s, &["describe", "istag/app:nope"]).await;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("Error from server (NotFound): "),
        "{}",
        r.stderr
    );
    let r = berth(&s, &["describe", "pods/x"]).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "error: the server doesn't have a resource type \"pods\"\n"
    );
}

#[tokio::test]
async fn describe_multi_arch_index() {
    let s = TestServer::start().await;
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","created":"2024-03-01T12:00:00Z","config":{{"Cmd":["/bin/sh"]}}}}"#
        );
        let layer = format!("{arch} root filesystem");
        let (digest, size) = push(&s, "ns/multi", None, &config, &[layer.as_bytes()]).await;
        children.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":{size},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        children.join(",")
    );
    let r = s
        .put_manifest("ns/multi", "latest", OCI_INDEX, index.as_bytes())
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );

    let r = berth(&s, &["describe", "istag/multi:latest"]).await;
    golden("describe_istag_multi_latest.txt", &normalize(ok(&r), &s));
    let r = berth(&s, &["describe", "is/multi"]).await;
    golden("describe_is_multi.txt", &normalize(ok(&r), &s));
}

/// Replaces what varies between runs: the server's host:port (`HOST`), digests
/// (`sha256:<digest-N>`, numbered in order of appearance) and ages (`<age> ago`).
pub(crate) fn normalize(out: &str, s: &TestServer) -> String {
    let out = out.replace(s.base.trim_start_matches("http://"), "HOST");
    let mut digests: Vec<&str> = Vec::new();
    let mut result = String::new();
    let mut rest = out.as_str();
    while let Some(i) = rest.find("sha256:") {
        let (before, after) = rest.split_at(i + "sha256:".len());
        result.push_str(before);
        let hex = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex == 64 {
            let digest = &after[..64];
            let n = match digests.iter().position(|d| *d == digest) {
                Some(n) => n,
                None => {
                    digests.push(digest);
                    digests.len() - 1
                }
            };
            result.push_str(&format!("<digest-{}>", n + 1));
            rest = &after[64..];
        } else {
            rest = after;
        }
    }
    result.push_str(rest);
    result
        .split('\n')
        .map(normalize_age)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `…\tAbout a minute ago` and `      5 seconds ago\t…` become `<age> ago`.
fn normalize_age(line: &str) -> String {
    let Some(end) = line.find(" ago") else {
        return line.to_string();
    };
    let start = line[..end]
        .rfind('\t')
        .map(|t| t + 1)
        .unwrap_or_else(|| line.len() - line.trim_start().len());
    let phrase = &line[start..end];
    let known = ["Less than a second", "About a minute", "About an hour"].contains(&phrase)
        || phrase.split_once(' ').is_some_and(|(n, unit)| {
            n.parse::<u64>().is_ok()
                && [
                    "second", "seconds", "minutes", "hours", "days", "weeks", "months", "years",
                ]
                .contains(&unit)
        });
    assert!(known, "not a relative age: {phrase:?} in {line:?}");
    format!("{}<age> ago{}", &line[..start], &line[end + " ago".len()..])
}

/// Compares with (or, with `BLESS=1`, writes) `tests/integration/golden/<name>`.
pub(crate) fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/integration/golden")
        .join(name);
    if std::env::var("BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (BLESS=1 cargo test --test integration describe writes it)",
            path.display()
        )
    });
    assert!(
        actual == expected,
        "{name} differs from the golden file (BLESS=1 regenerates it)\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}
