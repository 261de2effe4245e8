//! Tenant isolation (issue 11) over real HTTP: registry tokens stay on /v2, deleted users leave
//! nothing behind, anonymous callers get no cross-namespace lists, the token realm ignores the
//! `Host` header, failed logins are throttled, and stream labels are validated.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use crate::auth::{as_admin, bind, create_user, push_as_admin, start, ADMIN_PASSWORD, PASSWORD};
use crate::common::{error_code, header, issued_token, TestServer};

const API: &str = "/apis/image.openshift.io/v1";
const NO_REGISTRY_TOKENS: &str =
    "registry tokens are not accepted here: use a password or an access token";

fn bearer(req: RequestBuilder, token: &str) -> RequestBuilder {
    req.header("authorization", format!("Bearer {token}"))
}

/// A registry token for `user` (Basic with [`PASSWORD`]) scoped to `scope`.
async fn registry_token(s: &TestServer, user: &str, scope: &str) -> String {
    issued_token(s, user, PASSWORD, scope).await
}

/// An access token of `user`'s own, created with its password.
pub async fn access_token(s: &TestServer, user: &str, password: &str) -> String {
    let r = s
        .req(Method::POST, "/auth/v1/tokens")
        .basic_auth(user, Some(password))
        .json(&json!({"description": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

async fn message(r: reqwest::Response) -> String {
    let v: Value = r.json().await.unwrap();
    v["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn registry_tokens_authorize_v2_only() {
    let s = start(|_| {}).await;
    create_user(&s, "dev", &[]).await;
    bind(&s, "a", "dev", "edit").await;
    push_as_admin(&s, "a/x", "v1", "x").await;
    let jwt = registry_token(&s, "dev", "repository:a/x:pull").await;

    let r = bearer(s.req(Method::GET, "/v2/a/x/manifests/v1"), &jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the token pulls what it names");

    // No permanent token minted from a short-lived one, and nothing else on /auth/v1 either.
    for (method, path) in [
        (Method::POST, "/auth/v1/tokens"),
        (Method::GET, "/auth/v1/tokens"),
        (Method::GET, "/auth/v1/whoami"),
    ] {
        let r = bearer(s.req(method.clone(), path), &jwt)
            .json(&json!({"description": "forever"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(message(r).await, NO_REGISTRY_TOKENS, "{method} {path}");
    }
    // Nor renewed at the token endpoint, as a bearer or as a refresh token.
    let r = bearer(
        s.req(
            Method::GET,
            "/auth/token?service=berth&scope=repository:a/x:pull",
        ),
        &jwt,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(message(r).await, NO_REGISTRY_TOKENS);
    let r = s
        .req(Method::POST, "/auth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={jwt}&service=berth&scope=repository:a/x:pull"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Passwords and access tokens still work there.
    let token = access_token(&s, "dev", PASSWORD).await;
    let r = bearer(s.req(Method::GET, "/auth/v1/whoami"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = bearer(
        s.req(
            Method::GET,
            "/auth/token?service=berth&scope=repository:a/x:pull",
        ),
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn deleting_a_user_or_service_account_leaves_no_rights_behind() {
    let s = start(|_| {}).await;
    push_as_admin(&s, "b/app", "v1", "b").await;
    create_user(&s, "eve", &["registry-viewer"]).await;
    bind(&s, "b", "eve", "admin").await;
    bind(&s, "c", "eve", "view").await;
    let old_token = access_token(&s, "eve", PASSWORD).await;
    let r = as_admin(&s, Method::POST, "/auth/v1/users", json!({"name": "bot"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    bind(&s, "b", "bot", "edit").await;
    let r = as_admin(&s, Method::POST, "/auth/v1/tokens", json!({"user": "bot"})).await;
    let bot_token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = bearer(s.req(Method::GET, "/v2/b/app/manifests/v1"), &old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "eve may pull from b");

    for name in ["eve", "bot"] {
        let r = as_admin(
            &s,
            Method::DELETE,
            &format!("/auth/v1/users/{name}"),
            json!({}),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = as_admin(
        &s,
        Method::GET,
        "/auth/v1/namespaces/b/rolebindings",
        json!({}),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["items"], json!([]));
    let r = as_admin(&s, Method::GET, "/auth/v1/tokens", json!({})).await;
    let tokens: Value = r.json().await.unwrap();
    assert!(
        tokens["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["user"] != "eve" && t["user"] != "bot"),
        "{tokens}"
    );

    // A new eve starts with nothing.
    create_user(&s, "eve", &[]).await;
    let r = s
        .req(Method::GET, "/auth/v1/whoami")
        .basic_auth("eve", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["clusterRoles"], json!([]));
    assert_eq!(me["namespaces"], json!({}));
    let r = s
        .req(Method::GET, &format!("{API}/namespaces/b/imagestreams"))
        .basic_auth("eve", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .req(Method::GET, "/v2/b/app/manifests/v1")
        .basic_auth("eve", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The old tokens are gone, on both APIs.
    for token in [&old_token, &bot_token] {
        let r = bearer(s.req(Method::GET, "/v2/b/app/manifests/v1"), token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = bearer(s.req(Method::GET, "/auth/v1/whoami"), token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // Bindings and tokens for a user that does not exist are refused.
    let r = as_admin(
        &s,
        Method::PUT,
        "/auth/v1/namespaces/b/rolebindings/bot",
        json!({"role": "edit"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = as_admin(&s, Method::POST, "/auth/v1/tokens", json!({"user": "bot"})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cluster_wide_lists_need_credentials() {
    let s = start(|c| c.anonymous_pull_namespaces = vec!["public".into()]).await;
    push_as_admin(&s, "public/app", "v1", "pub").await;
    push_as_admin(&s, "a/app", "v1", "a").await;
    create_user(&s, "viewer", &[]).await;
    bind(&s, "a", "viewer", "view").await;
    for path in [
        format!("{API}/imagestreams"),
        format!("{API}/imagestreamtags"),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let status: Value = r.json().await.unwrap();
        assert_eq!(status["reason"], "Unauthorized", "{path}");
        let r = s
            .req(Method::GET, &path)
            .basic_auth("viewer", Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let list: Value = r.json().await.unwrap();
        let namespaces: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(namespaces, ["a"], "{path}");
    }
    // A namespace anyone may pull from is still listed for anonymous callers.
    let r = s
        .get(&format!("{API}/namespaces/public/imagestreams"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_token_realm_is_the_public_host_whatever_the_client_says() {
    let s = start(|c| c.public_host = Some("registry.example.com:5000".into())).await;
    for host in [None, Some("evil.example.net"), Some("evil.example.net:80")] {
        let mut req = s.req(Method::GET, "/v2/a/app/manifests/v1");
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&r, "www-authenticate").unwrap(),
            "Bearer realm=\"http://registry.example.com:5000/auth/token\",service=\"berth\",\
             scope=\"repository:a/app:pull\"",
            "Host: {host:?}"
        );
    }
}

/// GET `/v2/` with Basic credentials.
async fn v2_login(s: &TestServer, user: &str, password: &str) -> reqwest::Response {
    s.req(Method::GET, "/v2/")
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
}

fn retry_after(r: &reqwest::Response) -> u64 {
    header(r, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds")
}

#[tokio::test]
async fn failed_logins_are_throttled_per_user_and_per_source() {
    let s = start(|c| {
        c.login_failures_per_user_per_minute = 3;
        c.login_failures_per_source_per_minute = 5;
    })
    .await;
    create_user(&s, "alice", &[]).await;
    create_user(&s, "bob", &[]).await;
    bind(&s, "a", "bob", "view").await;
    // Successful logins spend nothing.
    for _ in 0..10 {
        assert_eq!(v2_login(&s, "bob", PASSWORD).await.status(), StatusCode::OK);
    }

    for _ in 0..3 {
        let r = v2_login(&s, "alice", "wrong-password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // alice's budget is spent: even her right password is refused, on every API.
    let r = v2_login(&s, "alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs = retry_after(&r);
    assert!((1..=60).contains(&secs), "{secs}");
    assert_eq!(error_code(r).await, "TOOMANYREQUESTS");
    let r = s
        .req(Method::GET, &format!("{API}/namespaces/a/imagestreams"))
        .basic_auth("alice", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    retry_after(&r);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "TooManyRequests");
    assert!(status["details"]["retryAfterSeconds"].as_u64().unwrap() >= 1);
    let r = s
        .req(Method::GET, "/auth/v1/whoami")
        .basic_auth("alice", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    retry_after(&r);
    assert_eq!(
        r.json::<Value>().await.unwrap()["reason"],
        "TooManyRequests"
    );
    let r = s
        .req(Method::GET, "/auth/token?service=berth")
        .basic_auth("alice", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = s
        .req(Method::POST, "/auth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&username=alice&password={PASSWORD}&service=berth"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    retry_after(&r);

    // The source has spent 3 of 5: bob still logs in from it.
    assert_eq!(v2_login(&s, "bob", PASSWORD).await.status(), StatusCode::OK);
    // Unknown names spend budget like known ones.
    for _ in 0..2 {
        let r = v2_login(&s, "nobody", "wrong-password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = v2_login(&s, "bob", PASSWORD).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the source is spent"
    );
    retry_after(&r);
    // Every password login from the source waits now, the admin's too.
    let r = s
        .req(Method::GET, "/v2/")
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn access_tokens_are_not_throttled() {
    let s = start(|c| {
        c.login_failures_per_user_per_minute = 1;
        c.login_failures_per_source_per_minute = 1;
    })
    .await;
    let token = {
        let r = as_admin(&s, Method::POST, "/auth/v1/tokens", json!({})).await;
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let r = v2_login(&s, "admin", "wrong-password").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        v2_login(&s, "admin", ADMIN_PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let r = bearer(s.req(Method::GET, "/v2/"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        v2_login(&s, "admin", &token).await.status(),
        StatusCode::OK,
        "an access token as the Basic password"
    );
}

#[tokio::test]
async fn stream_labels_are_kubernetes_labels() {
    let s = TestServer::start().await;
    let create = |labels: Value| {
        s.req(Method::POST, &format!("{API}/namespaces/a/imagestreams"))
            .json(&json!({"metadata": {"name": "app", "labels": labels}}))
            .send()
    };
    let r = create(json!({"-bad": "v", "ok": "not ok"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["reason"], "Invalid");
    let causes = status["details"]["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 2, "{status}");
    assert!(causes.iter().all(|c| c["field"] == "metadata.labels"));
    assert!(
        causes[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid value: \"-bad\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
        "{status}"
    );
    assert!(causes[1]["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid value: \"not ok\": a valid label must be an empty string"));
    let r = create(json!({"example.com/tier": "front-end", "app": ""}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let stream: Value = r.json().await.unwrap();

    // Updates, by PUT or by merge patch, are checked too.
    let mut bad = stream.clone();
    bad["metadata"]["labels"]["x/y/z"] = "v".into();
    let r = s
        .req(Method::PUT, &format!("{API}/namespaces/a/imagestreams/app"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = s
        .req(
            Method::PATCH,
            &format!("{API}/namespaces/a/imagestreams/app"),
        )
        .header("content-type", "application/merge-patch+json")
        .body(json!({"metadata": {"labels": {"k": "v".repeat(64)}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(message(r)
        .await
        .contains("must be no more than 63 characters"));
    let r = s
        .req(
            Method::PATCH,
            &format!("{API}/namespaces/a/imagestreams/app"),
        )
        .header("content-type", "application/merge-patch+json")
        .body(json!({"metadata": {"labels": {"k": "v"}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
