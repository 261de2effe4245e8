//! Real kubectl against a real server (issue 16): Debian's kubernetes-client (1.20, unpacked to
//! `.deps/` by scripts/install-deps.sh when another kubectl is installed) and the kubectl on
//! PATH, if newer. get with OpenShift's columns, namespaces, create/apply/edit/explain,
//! patch (merge, json, strategic), delete and watch; and token auth over TLS.
//!
//! kubectl 1.20 validates manifests against the protobuf form of /openapi/v2; newer kubectl
//! validates through the server (OpenAPI v3 declares `fieldValidation`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cli_verbs::{lines_of, wait_for};
use crate::common::TestServer;

/// A kubectl binary and its minor version.
struct Kubectl {
    bin: PathBuf,
    minor: u32,
}

fn kubectls() -> Vec<Kubectl> {
    let private =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/kubernetes-client/usr/bin/kubectl");
    let mut out = Vec::new();
    for bin in [private, PathBuf::from("kubectl")] {
        let Ok(o) = Command::new(&bin)
            .args(["version", "--client", "-o", "json"])
            .output()
        else {
            continue;
        };
        let v: serde_json::Value = match serde_json::from_slice(&o.stdout) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let minor: u32 = v["clientVersion"]["minor"]
            .as_str()
            .unwrap_or("0")
            .trim_end_matches('+')
            .parse()
            .unwrap_or(0);
        if !out.iter().any(|k: &Kubectl| k.minor == minor) {
            out.push(Kubectl { bin, minor });
        }
    }
    assert!(
        !out.is_empty(),
        "no kubectl: run scripts/install-deps.sh (it installs Debian's kubernetes-client)"
    );
    out
}

/// A kubeconfig for `server` in namespace demo, with an optional CA file and token.
fn kubeconfig(dir: &Path, server: &str, ca: Option<&Path>, token: Option<&str>) -> PathBuf {
    let ca = ca
        .map(|p| format!("\n    certificate-authority: {}", p.display()))
        .unwrap_or_default();
    let user = token
        .map(|t| format!("\n    token: {t}"))
        .unwrap_or_else(|| " {}".into());
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: berth\n  cluster:\n    \
             server: {server}{ca}\ncontexts:\n- name: berth\n  context: {{cluster: berth, \
             namespace: demo, user: me}}\ncurrent-context: berth\nusers:\n- name: me\n  user:{user}\n"
        ),
    )
    .unwrap();
    path
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }
}

/// Runs kubectl off the runtime with `config` (and a cache of its own) and `env`.
async fn kubectl(k: &Kubectl, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(&k.bin);
    cmd.args(args)
        .env("KUBECONFIG", config)
        .env("HOME", config.parent().unwrap())
        .env_remove("KUBECTL_EXTERNAL_DIFF");
    for (key, v) in env {
        cmd.env(key, v);
    }
    tokio::task::spawn_blocking(move || {
        let o = cmd.output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn words(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

const STREAM: &str = "apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: web
  labels:
    team: web
spec:
  tags:
  - name: v1
    reference: true
    from:
      kind: DockerImage
      name: quay.io/example/web:1
";

#[tokio::test]
async fn kubectl_reads_and_writes_image_streams() {
    let s = TestServer::start().await;
    let (digest, _) = s.push_image("demo/app", "v1", "a").await;
    let host = s.base.trim_start_matches("http://").to_string();
    for k in kubectls() {
        let dir = tempfile::tempdir().unwrap();
        let config = kubeconfig(dir.path(), &s.base, None, None);
        let run = |args: &'static [&'static str]| kubectl(&k, &config, args, &[]);
        let label = format!("kubectl 1.{}", k.minor);

        // get: the server's Table, OpenShift's columns.
        let out = run(&["get", "is"]).await;
        let lines: Vec<&str> = out.ok().lines().collect();
        assert_eq!(
            words(lines[0]),
            ["NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"],
            "{label}"
        );
        let row = words(lines[1]);
        assert_eq!(
            &row[..3],
            ["app", &format!("{host}/demo/app"), "v1"],
            "{label}"
        );
        let out = run(&["get", "istag", "-o", "wide"]).await;
        let lines: Vec<&str> = out.ok().lines().collect();
        assert_eq!(
            words(lines[0]),
            ["NAME", "IMAGE REFERENCE", "UPDATED", "IMAGE NAME"],
            "{label}"
        );
        assert!(lines[1].ends_with(&digest), "{label}: {}", lines[1]);
        let out = run(&["get", "images"]).await;
        assert_eq!(
            words(out.ok().lines().next().unwrap()),
            ["NAME", "IMAGE REFERENCE"]
        );
        let out = run(&["get", "ns"]).await;
        assert_eq!(out.ok(), "NAME   STATUS\ndemo   Active\n", "{label}");

        // create, apply, edit (EDITOR is a sed command), patch three ways, delete.
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, STREAM).unwrap();
        let file = file.to_str().unwrap();
        let out = kubectl(&k, &config, &["create", "-f", file], &[]).await;
        assert_eq!(
            out.ok(),
            "imagestream.image.openshift.io/web created\n",
            "{label}"
        );
        std::fs::write(file, STREAM.replace("web:1", "web:2")).unwrap();
        let out = kubectl(&k, &config, &["apply", "-f", file], &[]).await;
        assert_eq!(
            out.ok(),
            "imagestream.image.openshift.io/web configured\n",
            "{label}: {}",
            out.stderr
        );
        let edit = &["edit", "is", "web"];
        let out = kubectl(&k, &config, edit, &[("EDITOR", "sed -i s/web:2/web:3/")]).await;
        assert_eq!(
            out.ok(),
            "imagestream.image.openshift.io/web edited\n",
            "{label}"
        );
        let source = || {
            kubectl(
                &k,
                &config,
                &[
                    "get",
                    "is",
                    "web",
                    "-o",
                    "jsonpath={.spec.tags[*].from.name}",
                ],
                &[],
            )
        };
        assert_eq!(source().await.ok(), "quay.io/example/web:3", "{label}");
        let out = run(&[
            "patch",
            "is",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"lookupPolicy":{"local":true}}}"#,
        ])
        .await;
        assert_eq!(out.ok(), "imagestream.image.openshift.io/web patched\n");
        let out = run(&[
            "patch",
            "is",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/tags/0/from/name","value":"quay.io/example/web:4"}]"#,
        ])
        .await;
        assert_eq!(out.ok(), "imagestream.image.openshift.io/web patched\n");
        assert_eq!(source().await.ok(), "quay.io/example/web:4", "{label}");
        // Strategic merge patch (kubectl's default): tags merge by name.
        let out = run(&[
            "patch",
            "is",
            "web",
            "-p",
            r#"{"spec":{"tags":[{"name":"v2","reference":true,"from":{"kind":"DockerImage","name":"quay.io/example/web:5"}}]}}"#,
        ])
        .await;
        assert_eq!(
            out.ok(),
            "imagestream.image.openshift.io/web patched\n",
            "{label}"
        );
        assert_eq!(
            source().await.ok(),
            "quay.io/example/web:4 quay.io/example/web:5",
            "{label}"
        );
        let out = run(&["get", "is", "-l", "team=web", "-o", "name"]).await;
        assert_eq!(out.ok(), "imagestream.image.openshift.io/web\n");

        // explain prints the types' docs; validation refuses unknown fields (1.20 itself,
        // from /openapi/v2; newer kubectl through the server).
        let out = run(&["explain", "is.spec.tags"]).await;
        assert!(
            out.ok()
                .contains("TagReference specifies optional annotations"),
            "{label}: {}",
            out.stdout
        );
        let out = run(&["explain", "is.status.publicDockerImageRepository"]).await;
        assert!(out.ok().contains("public location"), "{}", out.stdout);
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, STREAM.replace("reference: true", "refrence: true")).unwrap();
        let out = kubectl(&k, &config, &["apply", "-f", bad.to_str().unwrap()], &[]).await;
        assert_ne!(out.code, 0);
        let refused = if k.minor < 25 {
            "unknown field \"refrence\""
        } else {
            "strict decoding error: unknown field \"spec.tags[0].refrence\""
        };
        assert!(out.stderr.contains(refused), "{label}: {}", out.stderr);

        // watch: rows as changes arrive.
        let mut child = Command::new(&k.bin)
            .args(["get", "is", "-w"])
            .env("KUBECONFIG", &config)
            .env("HOME", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rx = lines_of(&mut child);
        let seen = wait_for(&rx, |l| l.starts_with("web ")).await;
        assert!(seen[0].starts_with("NAME "), "{seen:?}");
        let fresh = format!("fresh{}", k.minor);
        s.push_image(&format!("demo/{fresh}"), "latest", "b").await;
        let seen = wait_for(&rx, |l| l.starts_with(&format!("{fresh} "))).await;
        assert!(seen.iter().all(|l| !l.starts_with("NAME")), "{seen:?}");
        let _ = child.kill();
        let _ = child.wait();

        let out = run(&["delete", "is", "web"]).await;
        assert_eq!(out.ok(), "imagestream.image.openshift.io \"web\" deleted\n");
        let out = run(&["get", "is", "web"]).await;
        assert!(
            out.stderr
                .contains("imagestreams.image.openshift.io \"web\" not found"),
            "{}",
            out.stderr
        );
    }
}

/// kubectl sends its token only over HTTPS: with TLS, a user's token gets exactly the user's
/// rights; without a token kubectl is anonymous.
#[tokio::test]
async fn kubectl_with_a_token_over_tls() {
    const ADMIN: &str = "admin-password-1";
    let dir = tempfile::tempdir().unwrap();
    // A CA and a server certificate for 127.0.0.1.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let (ca_file, cert, key_file) = (
        dir.path().join("ca.crt"),
        dir.path().join("server.crt"),
        dir.path().join("server.key"),
    );
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let s = TestServer::start_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key_file.clone());
        c.admin_password = Some(ADMIN.into());
    })
    .await;
    let base = s.base.replace("http://", "https://");
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let admin = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        https
            .request(method, format!("{base}{path}"))
            .basic_auth("admin", Some(ADMIN))
            .json(&body)
            .send()
    };
    use serde_json::json;
    let r = admin(
        reqwest::Method::POST,
        "/auth/v1/users",
        json!({"name": "alice", "password": "alice-password-1"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let r = admin(
        reqwest::Method::PUT,
        "/auth/v1/namespaces/demo/rolebindings/alice",
        json!({"role": "edit"}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success());
    for ns in ["demo", "private"] {
        let r = admin(
            reqwest::Method::POST,
            &format!("/apis/image.openshift.io/v1/namespaces/{ns}/imagestreams"),
            json!({"metadata": {"name": format!("in-{ns}")}}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    }
    let token: serde_json::Value = https
        .post(format!("{base}/auth/v1/tokens"))
        .basic_auth("alice", Some("alice-password-1"))
        .json(&json!({"description": "kubectl"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_string();

    for k in kubectls() {
        let with = tempfile::tempdir().unwrap();
        let config = kubeconfig(with.path(), &base, Some(&ca_file), Some(&token));
        let out = kubectl(&k, &config, &["get", "is", "-o", "name"], &[]).await;
        assert_eq!(out.ok(), "imagestream.image.openshift.io/in-demo\n");
        let out = kubectl(&k, &config, &["get", "ns", "-o", "name"], &[]).await;
        assert_eq!(out.ok(), "namespace/demo\n", "only what alice may view");
        let out = kubectl(&k, &config, &["get", "is", "-n", "private"], &[]).await;
        assert!(
            out.stderr.contains("Error from server (Forbidden)"),
            "{}",
            out.stderr
        );
        let out = kubectl(
            &k,
            &config,
            &["delete", "is", "in-private", "-n", "private"],
            &[],
        )
        .await;
        assert!(out.stderr.contains("(Forbidden)"), "{}", out.stderr);
        let out = kubectl(
            &k,
            &config,
            &[
                "patch",
                "is",
                "in-demo",
                "-p",
                r#"{"spec":{"lookupPolicy":{"local":true}}}"#,
            ],
            &[],
        )
        .await;
        assert_eq!(out.ok(), "imagestream.image.openshift.io/in-demo patched\n");

        // A token that is not one is refused (kubectl without any credentials would prompt
        // for a password over HTTPS).
        let other = tempfile::tempdir().unwrap();
        let config = kubeconfig(other.path(), &base, Some(&ca_file), Some("not-a-token"));
        let out = kubectl(&k, &config, &["get", "is"], &[]).await;
        assert_ne!(out.code, 0);
        assert!(
            out.stderr
                .contains("error: You must be logged in to the server"),
            "{}",
            out.stderr
        );
    }
}
