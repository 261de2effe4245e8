//! The verbs of issue 16, run as the real binary against a test server: delete, create
//! (imagestream, imagestreamtag, -f), apply -f, set image-lookup, get TYPE/NAME, -A, -l, -w,
//! -o custom-columns, describe istag/NAME; and what a user without the right gets from each.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::common::{berth_in, ok, Run, TestServer};
use crate::isolation::{send, start, user};

async fn berth(server: &TestServer, args: &[&str]) -> Run {
    berth_in(server, "ns", args).await
}

/// The error a failed run printed (asserting it failed).
fn failed(r: &Run) -> &str {
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    &r.stderr
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn create_get_set_describe_delete() {
    let s = TestServer::start().await;
    let r = berth(&s, &["create", "imagestream", "app"]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io/app created\n");
    let r = berth(&s, &["create", "is", "app"]).await;
    assert_eq!(
        failed(&r),
        "Error from server (AlreadyExists): imagestreams.image.openshift.io \"app\" already \
         exists\n"
    );
    let (latest, _) = s.push_image("ns/app", "latest", "a").await;
    let (v1, _) = s.push_image("ns/app", "v1", "b").await;

    // create imagestreamtag: from a tag, from a registry (a reference: never imported).
    let r = berth(
        &s,
        &["create", "imagestreamtag", "app:prod", "--from=app:v1"],
    )
    .await;
    assert_eq!(
        ok(&r),
        "imagestreamtag.image.openshift.io/app:prod created\n"
    );
    let r = berth(
        &s,
        &[
            "get",
            "istag/app:prod",
            "-o",
            "jsonpath={.image.metadata.name}",
        ],
    )
    .await;
    assert_eq!(ok(&r), v1);
    let r = berth(
        &s,
        &[
            "create",
            "istag",
            "app:ext",
            "--from-image=quay.io/x/y:1",
            "--reference",
            "-A",
            "owner=me",
        ],
    )
    .await;
    assert_eq!(
        ok(&r),
        "imagestreamtag.image.openshift.io/app:ext created\n"
    );
    let r = berth(
        &s,
        &[
            "get",
            "is",
            "app",
            "-o",
            "jsonpath={.spec.tags[?(@.name==\"ext\")].annotations.owner}",
        ],
    )
    .await;
    assert_eq!(ok(&r), "me");
    let r = berth(&s, &["create", "istag", "app:prod", "--from=app:v1"]).await;
    assert_eq!(
        failed(&r),
        "Error from server (AlreadyExists): imagestreamtags.image.openshift.io \"app:prod\" \
         already exists\n"
    );
    let r = berth(&s, &["create", "istag", "tag-c", "--from-image=x/y:1"]).await;
    assert_eq!(
        failed(&r),
        "error: \"tag-c\" must be of the form <stream_name>:<tag>\n"
    );
    let r = berth(&s, &["create", "istag", "c:1", "--from=quay.io/x/y:1"]).await;
    assert_eq!(
        failed(&r),
        "error: Invalid --from, registry may not be specified\n"
    );

    // get TYPE/NAME and several names.
    let r = berth(&s, &["get", "is/app", "-o", "name"]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io/app\n");
    let r = berth(&s, &["get", "istag", "app:v1", "app:prod", "-o", "name"]).await;
    assert_eq!(
        ok(&r),
        "imagestreamtag.image.openshift.io/app:v1\nimagestreamtag.image.openshift.io/app:prod\n"
    );
    let r = berth(&s, &["get", "is/app", "other"]).await;
    assert!(
        failed(&r).contains("no need to specify a resource type"),
        "{}",
        r.stderr
    );

    // custom columns: several values joined by commas, a missing one is <none>.
    let r = berth(
        &s,
        &[
            "get",
            "is",
            "-o",
            "custom-columns=NAME:.metadata.name,LOOKUP:.spec.lookupPolicy.local,\
             SPEC:.spec.tags[*].name,PUBLIC:.status.publicDockerImageRepository",
        ],
    )
    .await;
    assert_eq!(
        ok(&r),
        "NAME   LOOKUP   SPEC       PUBLIC\napp    false    ext,prod   <none>\n"
    );

    // set image-lookup, and its listing.
    let r = berth(&s, &["set", "image-lookup", "app"]).await;
    assert_eq!(
        ok(&r),
        "imagestream.image.openshift.io/app image lookup updated\n"
    );
    let r = berth(&s, &["set", "image-lookup"]).await;
    assert_eq!(ok(&r), "NAME   LOCAL\napp    true\n");
    let r = berth(&s, &["set", "image-lookup", "is/app", "--enabled=false"]).await;
    assert_eq!(
        ok(&r),
        "imagestream.image.openshift.io/app image lookup updated\n"
    );
    let r = berth(
        &s,
        &[
            "get",
            "is",
            "app",
            "-o",
            "jsonpath={.spec.lookupPolicy.local}",
        ],
    )
    .await;
    assert_eq!(ok(&r), "false");
    let r = berth(&s, &["set", "image-lookup", "nope"]).await;
    assert!(failed(&r).contains("NotFound"), "{}", r.stderr);

    // describe istag/NAME is NAME:latest.
    let bare = berth(&s, &["describe", "istag/app"]).await;
    let latest_out = berth(&s, &["describe", "istag/app:latest"]).await;
    assert!(ok(&bare).contains(&latest), "{}", bare.stdout);
    let strip_ages = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains(" ago"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip_ages(&bare.stdout), strip_ages(ok(&latest_out)));

    // -l and -A.
    let labels = tempfile::tempdir().unwrap();
    let file = write(
        &labels,
        "web.yaml",
        "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: web\n  \
         labels:\n    team: web\n",
    );
    ok(&berth(&s, &["create", "-f", &file]).await);
    ok(&berth_in(&s, "other", &["create", "imagestream", "far"]).await);
    let r = berth(&s, &["get", "is", "-l", "team=web", "-o", "name"]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io/web\n");
    let r = berth(&s, &["get", "is", "-l", "team!=web", "-o", "name"]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io/app\n");
    let r = berth(
        &s,
        &[
            "get",
            "is",
            "-A",
            "-o",
            "custom-columns=NS:.metadata.namespace,N:.metadata.name",
        ],
    )
    .await;
    let rows: Vec<&str> = ok(&r).lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{}", r.stdout);
    let r = berth(&s, &["get", "is", "-A"]).await;
    let lines: Vec<&str> = ok(&r).lines().collect();
    assert!(lines[0].starts_with("NAMESPACE   NAME "), "{}", r.stdout);
    assert!(
        lines.iter().any(|l| l.starts_with("other       far ")),
        "{}",
        r.stdout
    );
    let r = berth(&s, &["get", "is", "app", "-A"]).await;
    assert_eq!(
        failed(&r),
        "error: a resource cannot be retrieved by name across all namespaces\n"
    );

    // delete: each kind, as kubectl prints it; a missing object; --ignore-not-found.
    let r = berth(
        &s,
        &[
            "create",
            "secret",
            "docker-registry",
            "pull",
            "--docker-server=r.example.com",
            "--docker-username=u",
            "--docker-password=p",
        ],
    )
    .await;
    ok(&r);
    let r = berth(&s, &["delete", "istag", "app:prod", "app:ext"]).await;
    assert_eq!(
        ok(&r),
        "imagestreamtag.image.openshift.io \"app:prod\" deleted\n\
         imagestreamtag.image.openshift.io \"app:ext\" deleted\n"
    );
    let r = berth(&s, &["delete", "secret/pull"]).await;
    assert_eq!(ok(&r), "secret \"pull\" deleted\n");
    let r = berth(&s, &["delete", "is", "app"]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io \"app\" deleted\n");
    let r = berth(&s, &["delete", "image", &v1]).await;
    assert_eq!(
        ok(&r),
        format!("image.image.openshift.io \"{v1}\" deleted\n")
    );
    let r = berth(&s, &["delete", "is", "app"]).await;
    assert_eq!(
        failed(&r),
        "Error from server (NotFound): imagestreams.image.openshift.io \"app\" not found\n"
    );
    let r = berth(&s, &["delete", "is", "app", "--ignore-not-found"]).await;
    assert_eq!(ok(&r), "");
    let r = berth(&s, &["delete", "is"]).await;
    assert!(failed(&r).contains("no name was specified"), "{}", r.stderr);
    let r = berth(&s, &["delete", "-f", &file]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io \"web\" deleted\n");
}

#[tokio::test]
async fn apply_and_create_from_files() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let stream = |tags: &str| {
        format!(
            "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: web\n  \
             labels:\n    team: web\nspec:\n  tags:\n{tags}"
        )
    };
    let tag = |name: &str| {
        format!(
            "  - name: {name}\n    reference: true\n    from:\n      kind: DockerImage\n      \
             name: quay.io/example/web:{name}\n"
        )
    };
    // Two documents in one YAML file, one JSON file.
    let yaml = write(
        &dir,
        "all.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: pull\ntype: Opaque\n\
             stringData:\n  token: abc\n",
            stream(&tag("v1"))
        ),
    );
    let json = write(
        &dir,
        "db.json",
        r#"{"apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
            "metadata": {"name": "db"}, "spec": {"lookupPolicy": {"local": true}}}"#,
    );
    let r = berth(&s, &["create", "-f", &yaml, "-f", &json]).await;
    assert_eq!(
        ok(&r),
        "imagestream.image.openshift.io/web created\nsecret/pull created\n\
         imagestream.image.openshift.io/db created\n"
    );
    let r = berth(&s, &["create", "-f", &json]).await;
    assert!(failed(&r).contains("AlreadyExists"), "{}", r.stderr);

    // apply: the first records what it applied; the same file again changes nothing.
    let web = write(&dir, "web.yaml", &stream(&tag("v1")));
    let r = berth(&s, &["apply", "-f", &web]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io/web configured\n");
    let r = berth(&s, &["apply", "-f", &web]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io/web unchanged\n");
    // A tag added by the CLI survives an apply; a tag the file drops goes.
    ok(&berth(
        &s,
        &["tag", "--reference", "quay.io/example/web:cli", "web:cli"],
    )
    .await);
    let web = write(&dir, "web.yaml", &stream(&tag("v2")));
    let r = berth(&s, &["apply", "-f", &web]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io/web configured\n");
    let r = berth(
        &s,
        &["get", "is", "web", "-o", "jsonpath={.spec.tags[*].name}"],
    )
    .await;
    assert_eq!(ok(&r), "cli v2");
    // A new object is created; a secret that exists is not compared (its values are
    // write-only).
    let new = write(
        &dir,
        "new.yaml",
        &stream(&tag("v1")).replace("name: web\n", "name: new\n"),
    );
    let r = berth(&s, &["apply", "-f", &new]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io/new created\n");
    let r = berth(&s, &["apply", "-f", &yaml]).await;
    assert!(
        failed(&r).contains("secret \"pull\" exists"),
        "{}",
        r.stderr
    );
    // Kinds berth does not serve, and documents that are not objects.
    let pod = write(
        &dir,
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n",
    );
    let r = berth(&s, &["apply", "-f", &pod]).await;
    assert!(
        failed(&r).contains("resource mapping not found for kind \"Pod\""),
        "{}",
        r.stderr
    );
    let bad = write(&dir, "bad.yaml", "kind: [\n");
    let r = berth(&s, &["create", "-f", &bad]).await;
    assert!(
        failed(&r).starts_with("error: error parsing "),
        "{}",
        r.stderr
    );
}

/// Reads the child's stdout lines on a thread.
pub fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (off the runtime) for a line that satisfies `want`; returns the lines read.
pub async fn wait_for(rx: &mpsc::Receiver<String>, want: impl Fn(&str) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match rx.try_recv() {
            Ok(line) => {
                let done = want(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(mpsc::TryRecvError::Empty) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("no such line ({e:?}); read: {seen:?}"),
        }
    }
}

fn spawn(s: &TestServer, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--server", &s.base, "-n", "ns"])
        .args(args)
        .env("BERTH_CLIENT_CONFIG", "/nonexistent/berth-test/config.toml")
        .env_remove("BERTH_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn watch_prints_rows_as_changes_arrive() {
    let s = TestServer::start().await;
    s.push_image("ns/app", "v1", "a").await;
    let mut streams = spawn(&s, &["get", "is", "-w"]);
    let mut tags = spawn(&s, &["get", "istag", "--watch"]);
    let (is_rx, tag_rx) = (lines_of(&mut streams), lines_of(&mut tags));
    let seen = wait_for(&is_rx, |l| l.starts_with("app ")).await;
    assert!(seen[0].starts_with("NAME "), "{seen:?}");
    wait_for(&tag_rx, |l| l.starts_with("app:v1 ")).await;

    s.push_image("ns/app", "v2", "b").await;
    s.push_image("ns/web", "latest", "c").await;
    let seen = wait_for(&is_rx, |l| l.starts_with("web ")).await;
    assert!(
        seen.iter()
            .any(|l| l.starts_with("app ") && l.contains("v2")),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|l| !l.starts_with("NAME")),
        "one header: {seen:?}"
    );
    let seen = wait_for(&tag_rx, |l| l.starts_with("web:latest ")).await;
    // Only the tags whose image changed: v2 once, v1 not again.
    assert!(seen.iter().any(|l| l.starts_with("app:v2 ")), "{seen:?}");
    assert!(seen.iter().all(|l| !l.starts_with("app:v1 ")), "{seen:?}");
    for mut child in [streams, tags] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

async fn as_token(s: &TestServer, token: &str, ns: &str, args: &[&str]) -> Run {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    berth_in(s, ns, &all).await
}

/// A user without the right gets the server's refusal from every verb, and `-A` lists only
/// what the user may view.
#[tokio::test]
async fn verbs_refuse_what_the_user_may_not_do() {
    let s = start().await;
    user(&s, "eve", &[("a", "view")]).await;
    for ns in ["a", "b"] {
        let (status, _) = send(
            &s,
            "admin",
            Method::POST,
            &format!("/apis/image.openshift.io/v1/namespaces/{ns}/imagestreams"),
            Some(serde_json::json!({"metadata": {"name": format!("in-{ns}")}})),
        )
        .await;
        assert!(status.is_success());
    }
    let (_, token) = send(
        &s,
        "eve",
        Method::POST,
        "/auth/v1/tokens",
        Some(serde_json::json!({"description": "cli"})),
    )
    .await;
    let token = token["token"].as_str().unwrap().to_string();
    // -A: only namespace a.
    let r = as_token(&s, &token, "a", &["get", "is", "-A", "-o", "name"]).await;
    assert_eq!(ok(&r), "imagestream.image.openshift.io/in-a\n");
    // A viewer of a may not write there; nobody but the admin may touch b.
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "b.yaml",
        "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: in-b\n  \
         namespace: b\n",
    );
    let missing = write(
        &dir,
        "nothing.yaml",
        "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: nothing\n  \
         namespace: b\n",
    );
    for (ns, args) in [
        ("a", vec!["delete", "is", "in-a"]),
        ("a", vec!["create", "imagestream", "x"]),
        (
            "a",
            vec![
                "create",
                "istag",
                "in-a:t",
                "--from-image=r.example.com/x:1",
            ],
        ),
        ("a", vec!["set", "image-lookup", "in-a"]),
        ("b", vec!["delete", "is", "in-b"]),
        ("b", vec!["get", "is"]),
        ("b", vec!["get", "is", "-w"]),
        ("b", vec!["set", "image-lookup", "in-b"]),
        ("a", vec!["create", "-f", &file]),
        ("a", vec!["apply", "-f", &file]),
        ("a", vec!["delete", "-f", &file]),
    ] {
        let r = as_token(&s, &token, ns, &args).await;
        assert!(
            failed(&r).starts_with("Error from server (Forbidden): "),
            "{args:?}: {}",
            r.stderr
        );
    }
    // Whether the object in b exists or not, the refusal reads the same.
    let one = as_token(&s, &token, "a", &["apply", "-f", &file]).await;
    let other = as_token(&s, &token, "a", &["apply", "-f", &missing]).await;
    assert_eq!(
        failed(&one).replace("in-b", "X"),
        failed(&other).replace("nothing", "X")
    );
    let (status, is) = send(
        &s,
        "admin",
        Method::GET,
        "/apis/image.openshift.io/v1/namespaces/b/imagestreams/in-b",
        None,
    )
    .await;
    assert!(status.is_success());
    assert_eq!(is["spec"]["lookupPolicy"]["local"], Value::Bool(false));
}
