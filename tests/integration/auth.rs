//! Access control over real HTTP: a role × operation matrix on both APIs, the Docker token
//! flow (scopes narrowed, never widened; expired, tampered and wrong-audience tokens refused),
//! access tokens, reserved namespaces, path tricks, and the start-up rules.

use std::time::Duration;

use base64::Engine;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use crate::common::TestServer;

const API: &str = "/apis/image.openshift.io/v1";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const PASSWORD: &str = "user-password-1";

#[derive(Clone, Copy, Debug)]
enum Who {
    Anonymous,
    Outsider,
    Viewer,
    Editor,
    NsAdmin,
    RegistryViewer,
    Pruner,
    Admin,
}

impl Who {
    fn name(self) -> Option<&'static str> {
        match self {
            Who::Anonymous => None,
            Who::Outsider => Some("outsider"),
            Who::Viewer => Some("viewer"),
            Who::Editor => Some("editor"),
            Who::NsAdmin => Some("nsadmin"),
            Who::RegistryViewer => Some("rviewer"),
            Who::Pruner => Some("pruner"),
            Who::Admin => Some("admin"),
        }
    }

    fn sign(self, req: RequestBuilder) -> RequestBuilder {
        match self {
            Who::Anonymous => req,
            Who::Admin => req.basic_auth("admin", Some(ADMIN_PASSWORD)),
            other => req.basic_auth(other.name().unwrap(), Some(PASSWORD)),
        }
    }
}

pub async fn start(tweak: impl FnOnce(&mut berth::config::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.admin_password = Some(ADMIN_PASSWORD.into());
        tweak(c);
    })
    .await
}

pub async fn as_admin(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Value,
) -> reqwest::Response {
    s.req(method, path)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn create_user(s: &TestServer, name: &str, cluster_roles: &[&str]) {
    let r = as_admin(
        s,
        Method::POST,
        "/auth/v1/users",
        json!({"name": name, "password": PASSWORD, "clusterRoles": cluster_roles}),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
}

pub async fn bind(s: &TestServer, ns: &str, user: &str, role: &str) {
    let r = as_admin(
        s,
        Method::PUT,
        &format!("/auth/v1/namespaces/{ns}/rolebindings/{user}"),
        json!({"role": role}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

/// Pushes an image (layer `layer of <seed>`) with the admin's credentials.
pub async fn push_as_admin(s: &TestServer, repo: &str, tag: &str, seed: &str) -> String {
    s.push_image_as(Some(("admin", ADMIN_PASSWORD)), repo, tag, seed)
        .await
        .0
}

/// A server with one user per role: viewer/editor/nsadmin in namespace `a`.
async fn populated() -> (TestServer, String, String) {
    // The matrix's dry-run import names 127.0.0.1:9 (never the internet).
    let s = start(crate::common::allow_loopback_imports).await;
    for (name, roles) in [
        ("outsider", &[][..]),
        ("viewer", &[]),
        ("editor", &[]),
        ("nsadmin", &[]),
        ("rviewer", &["registry-viewer"]),
        ("pruner", &["image-pruner"]),
    ] {
        create_user(&s, name, roles).await;
    }
    bind(&s, "a", "viewer", "view").await;
    bind(&s, "a", "editor", "edit").await;
    bind(&s, "a", "nsadmin", "admin").await;
    let in_a = push_as_admin(&s, "a/app", "v1", "in-a").await;
    let in_b = push_as_admin(&s, "b/app", "v1", "in-b").await;
    (s, in_a, in_b)
}

/// (operation, method, path, body, expected status per caller of the matrix)
type Case = (&'static str, Method, String, Option<Value>, [u16; 8]);

#[tokio::test]
async fn role_operation_matrix() {
    let (s, in_a, in_b) = populated().await;
    use Who::*;
    let everyone = [
        Anonymous,
        Outsider,
        Viewer,
        Editor,
        NsAdmin,
        RegistryViewer,
        Pruner,
        Admin,
    ];
    // (operation, method, path, body, expected status per `everyone`)
    let cases: Vec<Case> = vec![
        (
            "pull",
            Method::GET,
            "/v2/a/app/manifests/v1".into(),
            None,
            [401, 403, 200, 200, 200, 403, 403, 200],
        ),
        (
            "pull by digest",
            Method::GET,
            format!("/v2/a/app/manifests/{in_a}"),
            None,
            [401, 403, 200, 200, 200, 403, 403, 200],
        ),
        (
            "pull a digest of another namespace",
            Method::GET,
            format!("/v2/a/app/manifests/{in_b}"),
            None,
            [401, 403, 404, 404, 404, 403, 403, 404],
        ),
        (
            "push",
            Method::POST,
            "/v2/a/app/blobs/uploads/".into(),
            None,
            [401, 403, 403, 202, 202, 403, 403, 202],
        ),
        (
            "push a new stream",
            Method::POST,
            "/v2/a/fresh/blobs/uploads/".into(),
            None,
            [401, 403, 403, 202, 202, 403, 403, 202],
        ),
        (
            "delete a tag",
            Method::DELETE,
            "/v2/a/app/manifests/missing".into(),
            None,
            [401, 403, 403, 404, 404, 403, 403, 404],
        ),
        (
            "delete by digest (prune)",
            Method::DELETE,
            format!("/v2/a/app/manifests/{}", crate::common::sha256(b"none")),
            None,
            [401, 403, 403, 403, 403, 403, 404, 404],
        ),
        (
            "tag",
            Method::PUT,
            format!("{API}/namespaces/a/imagestreamtags/app:copy"),
            Some(
                json!({"metadata": {"name": "app:copy"}, "tag": {"name": "copy",
                "from": {"kind": "ImageStreamImage", "name": format!("app@{in_a}")}}}),
            ),
            [401, 403, 403, 200, 200, 403, 403, 200],
        ),
        (
            "import (dry run)",
            Method::POST,
            format!("{API}/namespaces/a/imagestreamimports"),
            Some(
                json!({"metadata": {"name": "app"}, "spec": {"import": false, "images": [
                {"from": {"kind": "DockerImage", "name": "127.0.0.1:9/x/y:1"}}]}}),
            ),
            [401, 403, 403, 201, 201, 403, 403, 201],
        ),
        (
            "get a stream",
            Method::GET,
            format!("{API}/namespaces/a/imagestreams/app"),
            None,
            [401, 403, 200, 200, 200, 403, 403, 200],
        ),
        (
            "list images",
            Method::GET,
            format!("{API}/images"),
            None,
            [401, 403, 403, 403, 403, 200, 200, 200],
        ),
        (
            "watch a namespace",
            Method::GET,
            format!("{API}/namespaces/a/imagestreams?watch=true&timeoutSeconds=1"),
            None,
            [401, 403, 200, 200, 200, 403, 403, 200],
        ),
        (
            "watch every namespace",
            Method::GET,
            format!("{API}/imagestreams?watch=true&timeoutSeconds=1"),
            None,
            [401, 403, 403, 403, 403, 200, 403, 200],
        ),
        (
            "secrets",
            Method::GET,
            "/api/v1/namespaces/a/secrets".into(),
            None,
            [401, 403, 403, 403, 200, 403, 403, 200],
        ),
        (
            "role bindings",
            Method::GET,
            "/auth/v1/namespaces/a/rolebindings".into(),
            None,
            [401, 403, 403, 403, 200, 403, 403, 200],
        ),
        (
            "users",
            Method::GET,
            "/auth/v1/users".into(),
            None,
            [401, 403, 403, 403, 403, 403, 403, 200],
        ),
    ];
    let mut failures = Vec::new();
    for (op, method, path, body, expected) in &cases {
        for (who, want) in everyone.iter().zip(expected) {
            let mut req = who.sign(s.req(method.clone(), path));
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = req.send().await.unwrap();
            let got = r.status().as_u16();
            if got != *want {
                failures.push(format!("{op} as {who:?}: {got}, expected {want}"));
            }
            if got == 401 && path.starts_with("/v2/") {
                let challenge = r
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap().to_string());
                if !challenge.as_deref().is_some_and(|c| {
                    c.starts_with("Bearer realm=\"") && c.contains("service=\"berth\"")
                }) {
                    failures.push(format!("{op} as {who:?}: challenge {challenge:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Catalog and cross-namespace lists show only what the caller may view.
    for (who, expected) in [
        (Viewer, json!(["a/app"])),
        (Outsider, json!([])),
        (RegistryViewer, json!(["a/app", "b/app"])),
        (Admin, json!(["a/app", "b/app"])),
    ] {
        let r = who
            .sign(s.req(Method::GET, "/v2/_catalog"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{who:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["repositories"], expected, "{who:?}");
    }
    let r = Viewer
        .sign(s.req(Method::GET, &format!("{API}/imagestreams")))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a"]);

    // A mount from a namespace the caller may not read becomes an ordinary upload.
    let layer = crate::common::sha256(b"layer of in-b");
    let r = Editor
        .sign(s.req(
            Method::POST,
            &format!("/v2/a/mounted/blobs/uploads/?mount={layer}&from=b/app"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "no mount without read access to b"
    );
    let r = Admin
        .sign(s.req(
            Method::POST,
            &format!("/v2/a/mounted/blobs/uploads/?mount={layer}&from=b/app"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Wrong password: 401, never 403.
    let r = s
        .req(Method::GET, "/v2/a/app/manifests/v1")
        .basic_auth("viewer", Some("nope-nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn paths_are_not_a_way_around_authorization() {
    let (s, _, in_b) = populated().await;
    for path in [
        "/v2/a/../b/app/manifests/v1".to_string(),
        "/v2/a/%2e%2e/b/app/manifests/v1".into(),
        "/v2/b%2fapp/manifests/v1".into(),
        "/v2/B/app/manifests/v1".into(),
        "/v2/b/App/manifests/v1".into(),
        "/v2/b/app/manifests/v1/".into(),
        "/v2//b/app/manifests/v1".into(),
        format!("/v2/a/app/manifests/{in_b}"),
        format!(
            "/v2/a/app/blobs/{}",
            crate::common::sha256(b"layer of in-b")
        ),
        format!("{API}/namespaces/b/imagestreams/app"),
        format!("{API}/namespaces/b/imagestreams/app/"),
        format!("{API}/namespaces/B/imagestreams/app"),
        format!("{API}/namespaces/a/../b/imagestreams/app"),
    ] {
        let r = Who::Viewer
            .sign(s.req(Method::GET, &path))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_client_error(),
            "{path}: {} {}",
            r.status(),
            r.text().await.unwrap()
        );
        let body = s
            .client
            .get(s.url(&path))
            .basic_auth("viewer", Some(PASSWORD))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !body.contains("layer of in-b") && !body.contains("\"seed\""),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn reserved_namespaces_need_cluster_admin() {
    let s = start(|_| {}).await;
    create_user(&s, "editor", &[]).await;
    bind(&s, "default", "editor", "admin").await;
    let r = Who::Editor
        .sign(s.req(Method::POST, "/v2/default/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = Who::Editor
        .sign(s.req(
            Method::POST,
            &format!("{API}/namespaces/openshift/imagestreams"),
        ))
        .json(&json!({"metadata": {"name": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let status: Value = r.json().await.unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("reserved namespace"),
        "{status}"
    );
    let r = Who::Admin
        .sign(s.req(Method::POST, "/v2/default/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // Reading there is still governed by the binding.
    let r = Who::Editor
        .sign(s.req(
            Method::GET,
            &format!("{API}/namespaces/default/imagestreams"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn registry_token(s: &TestServer, who: Who, query: &str) -> (StatusCode, Value) {
    let r = who
        .sign(s.req(Method::GET, &format!("/auth/token?{query}")))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn bearer(req: RequestBuilder, token: &str) -> RequestBuilder {
    req.header("authorization", format!("Bearer {token}"))
}

#[tokio::test]
async fn docker_token_flow() {
    let (s, _, _) = populated().await;

    // The challenge names the realm, the service and the scope.
    let r = s.get("/v2/a/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"{}/auth/token\",service=\"berth\",scope=\"repository:a/app:pull\"",
            s.base
        )
    );

    // An editor asking for more than it has gets only what it has.
    let (status, t) = registry_token(
        &s,
        Who::Editor,
        "service=berth&scope=repository:a/app:pull,push,delete&scope=repository:b/app:pull",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(t["scope"], "repository:a/app:pull,push,delete");
    let token = t["token"].as_str().unwrap().to_string();
    assert_eq!(t["access_token"], token.as_str());
    let r = bearer(s.req(Method::POST, "/v2/a/app/blobs/uploads/"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The token does not reach b (and the user has no role there: DENIED).
    let r = bearer(s.req(Method::GET, "/v2/b/app/manifests/v1"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A pull-only token for a push is challenged again, for the wider scope.
    let (_, t) = registry_token(&s, Who::Editor, "service=berth&scope=repository:a/app:pull").await;
    let pull_only = t["token"].as_str().unwrap().to_string();
    let r = bearer(s.req(Method::POST, "/v2/a/app/blobs/uploads/"), &pull_only)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("scope=\"repository:a/app:pull,push\""));
    // Registry tokens are for /v2 only.
    let r = bearer(
        s.req(Method::GET, &format!("{API}/namespaces/a/imagestreams")),
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Anonymous callers get a token with nothing in it.
    let (status, t) = registry_token(
        &s,
        Who::Anonymous,
        "service=berth&scope=repository:a/app:pull",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(t["scope"], "");
    // Wrong credentials get no token at all.
    let r = s
        .req(Method::GET, "/auth/token?service=berth")
        .basic_auth("editor", Some("wrong-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Tampered: change the claims, keep the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
    claims["access"][0]["name"] = "b/app".into();
    parts[1] = engine.encode(serde_json::to_vec(&claims).unwrap());
    let tampered = parts.join(".");
    let r = bearer(s.req(Method::GET, "/v2/b/app/manifests/v1"), &tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Wrong audience: a token minted for another service.
    let (_, t) = registry_token(
        &s,
        Who::Editor,
        "service=elsewhere&scope=repository:a/app:pull",
    )
    .await;
    let r = bearer(
        s.req(Method::GET, "/v2/a/app/manifests/v1"),
        t["token"].as_str().unwrap(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // POST with the password grant, as some clients do.
    let r = s
        .req(Method::POST, "/auth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=password&username=viewer&password={PASSWORD}&service=berth&scope=repository:a/app:pull"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    let r = bearer(
        s.req(Method::GET, "/v2/a/app/manifests/v1"),
        t["access_token"].as_str().unwrap(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Rotation: tokens signed with the previous key still verify; the one before does not.
    let r = as_admin(&s, Method::POST, "/auth/v1/signingkeys/rotate", json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = bearer(s.req(Method::POST, "/v2/a/app/blobs/uploads/"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "the previous key still verifies"
    );
    as_admin(&s, Method::POST, "/auth/v1/signingkeys/rotate", json!({})).await;
    let r = bearer(s.req(Method::POST, "/v2/a/app/blobs/uploads/"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "two rotations retire a key"
    );
}

#[tokio::test]
async fn expired_registry_tokens_are_refused() {
    let s = start(|c| c.token_ttl_secs = 1).await;
    let (_, t) = registry_token(
        &s,
        Who::Admin,
        "service=berth&scope=repository:a/app:pull,push",
    )
    .await;
    let token = t["token"].as_str().unwrap().to_string();
    let r = bearer(s.req(Method::POST, "/v2/a/app/blobs/uploads/"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = bearer(s.req(Method::POST, "/v2/a/app/blobs/uploads/"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn access_tokens_service_accounts_and_revocation() {
    let (s, _, _) = populated().await;
    // A service account: no password, a long-lived token, a role in `a`.
    let r = as_admin(
        &s,
        Method::POST,
        "/auth/v1/users",
        json!({"name": "ci-bot"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    bind(&s, "a", "ci-bot", "edit").await;
    let r = as_admin(
        &s,
        Method::POST,
        "/auth/v1/tokens",
        json!({"user": "ci-bot", "description": "ci"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = r.json().await.unwrap();
    let token = t["token"].as_str().unwrap().to_string();
    let id = t["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("berth_"));

    // Works on /apis and /v2 as a bearer token, and as a Basic password (docker login).
    let r = bearer(
        s.req(Method::GET, &format!("{API}/namespaces/a/imagestreams")),
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = bearer(s.req(Method::POST, "/v2/a/app/blobs/uploads/"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .req(Method::GET, "/v2/a/app/manifests/v1")
        .basic_auth("ci-bot", Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = bearer(
        s.req(Method::GET, &format!("{API}/namespaces/b/imagestreams")),
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["reason"], "Forbidden");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("User \"ci-bot\" cannot get resource \"imagestreams\""),
        "{status}"
    );

    // A user manages its own tokens only.
    let r = Who::Viewer
        .sign(s.req(Method::POST, "/auth/v1/tokens"))
        .json(&json!({"user": "ci-bot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = Who::Viewer
        .sign(s.req(Method::DELETE, &format!("/auth/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = Who::Viewer
        .sign(s.req(Method::GET, "/auth/v1/whoami"))
        .send()
        .await
        .unwrap();
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["name"], "viewer");
    assert_eq!(me["namespaces"]["a"], "view");

    // Revoked: refused at once.
    let r = as_admin(
        &s,
        Method::DELETE,
        &format!("/auth/v1/tokens/{id}"),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = bearer(
        s.req(Method::GET, &format!("{API}/namespaces/a/imagestreams")),
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Secrets never show their values, even to their admin.
    let r = Who::NsAdmin
        .sign(s.req(Method::POST, "/api/v1/namespaces/a/secrets"))
        .json(&json!({"metadata": {"name": "s"}, "type": "Opaque", "stringData": {"k": "very-secret"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(!r.text().await.unwrap().contains("dmVyeS1zZWNyZXQ"));
}

#[tokio::test]
async fn start_up_rules() {
    // No auth on a non-loopback address: refused unless explicitly allowed.
    let dir = tempfile::tempdir().unwrap();
    let config = berth::config::Config {
        listen: "0.0.0.0:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let err = berth::Server::bind(config.clone())
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("refusing to listen on 0.0.0.0:0 without authentication"),
        "{err}"
    );
    let ok = berth::Server::bind(berth::config::Config {
        insecure_no_auth: true,
        ..config.clone()
    })
    .await;
    assert!(ok.is_ok());
    drop(ok);
    // Auth on without any user: refused, with the way out named.
    let dir = tempfile::tempdir().unwrap();
    let config = berth::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        auth: true,
        ..Default::default()
    };
    let err = berth::Server::bind(config).await.err().expect("refused");
    assert!(err.to_string().contains("BERTH_ADMIN_PASSWORD"), "{err}");
}

#[tokio::test]
async fn anonymous_pull_per_namespace() {
    let s = start(|c| c.anonymous_pull_namespaces = vec!["public".into()]).await;
    push_as_admin(&s, "public/app", "v1", "pub").await;
    push_as_admin(&s, "private/app", "v1", "priv").await;
    // Clients without credentials follow the challenge and get an anonymous pull token.
    let (_, t) = registry_token(
        &s,
        Who::Anonymous,
        "service=berth&scope=repository:public/app:pull,push",
    )
    .await;
    assert_eq!(t["scope"], "repository:public/app:pull");
    let token = t["token"].as_str().unwrap();
    let r = bearer(s.req(Method::GET, "/v2/public/app/manifests/v1"), token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.get("/v2/public/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK, "no token needed at all");
    let r = s.get("/v2/private/app/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .req(Method::POST, "/v2/public/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Runs the berth binary with a private client config: (exit code, stdout, stderr).
async fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let r = crate::common::run_berth(args, &[("BERTH_CLIENT_CONFIG", config.as_os_str())]).await;
    (r.code, r.stdout, r.stderr)
}

#[tokio::test]
async fn cli_login_adm_and_token_use() {
    let s = start(|_| {}).await;
    push_as_admin(&s, "team/app", "v1", "cli").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth").join("config.toml");
    let server = s.base.as_str();

    // Not logged in: the API says who is missing.
    let (code, _, err) = cli(&config, &["--server", server, "get", "is", "-n", "team"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Unauthorized"), "{err}");

    let (code, out, err) = cli(
        &config,
        &["login", server, "-u", "admin", "-p", "wrong-password"],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("Unauthorized"), "{err}");
    let (code, out, err) = cli(
        &config,
        &["login", server, "-u", "admin", "-p", ADMIN_PASSWORD],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("Logged into {server:?} as \"admin\".\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is private");
    }
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("token = \"berth_"), "{text}");
    assert!(!text.contains(ADMIN_PASSWORD));

    // Every verb uses the stored server and token.
    let (code, out, _) = cli(&config, &["whoami"]).await;
    assert_eq!((code, out.as_str()), (0, "admin\n"));
    let (code, out, err) = cli(&config, &["get", "is", "-n", "team", "-o", "name"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "imagestream.image.openshift.io/app\n");

    // adm: a user, a role, a service account with a token.
    let (code, out, err) = cli(
        &config,
        &["adm", "create", "user", "alice", "--password", PASSWORD],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "user/alice created\n"), "{err}");
    let (code, out, _) = cli(
        &config,
        &[
            "adm",
            "policy",
            "add-role-to-user",
            "view",
            "alice",
            "-n",
            "team",
        ],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "role/view added: \"alice\"\n"));
    let (code, out, _) = cli(&config, &["adm", "create", "serviceaccount", "builder"]).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "serviceaccount/builder created\n")
    );
    cli(
        &config,
        &[
            "adm",
            "policy",
            "add-role-to-user",
            "edit",
            "builder",
            "-n",
            "team",
        ],
    )
    .await;
    let (code, token, _) = cli(
        &config,
        &["adm", "create", "token", "builder", "--description", "ci"],
    )
    .await;
    assert_eq!(code, 0);
    let token = token.trim().to_string();
    assert!(token.starts_with("berth_"));
    let r = s
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // --token overrides the stored one; alice may view but not tag.
    let alice_config = dir.path().join("alice.toml");
    let (code, _, err) = cli(
        &alice_config,
        &["login", server, "-u", "alice", "-p", PASSWORD],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&alice_config, &["tag", "app:v1", "app:v2", "-n", "team"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    let (code, _, err) = cli(
        &alice_config,
        &["--token", &token, "tag", "app:v1", "app:v2", "-n", "team"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = cli(
        &alice_config,
        &["adm", "create", "user", "mallory", "--password", PASSWORD],
    )
    .await;
    assert_eq!(code, 1, "{out}");

    // logout revokes the token on the server.
    let stored = std::fs::read_to_string(&config).unwrap();
    let admin_token = stored
        .split('"')
        .find(|p| p.starts_with("berth_"))
        .unwrap()
        .to_string();
    let (code, _, _) = cli(&config, &["logout"]).await;
    assert_eq!(code, 0);
    let r = s
        .req(Method::GET, "/auth/v1/whoami")
        .header("authorization", format!("Bearer {admin_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (code, _, _) = cli(&config, &["whoami"]).await;
    assert_eq!(code, 1);
}
