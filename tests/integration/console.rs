//! The web console's routes over real HTTP (issue 19): the embedded files and their headers,
//! GET/HEAD only, unknown names 404 whatever the path spells, and /v2 and /apis unchanged
//! next to them. The app itself is driven in a browser by tests/clients/test_console.py.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::common::TestServer;

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header on {}", r.url()))
}

fn assert_hardened(r: &reqwest::Response) {
    let csp = header(r, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "CSP {csp:?} lacks {directive:?}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(r, "x-frame-options"), "DENY");
    assert_eq!(header(r, "x-content-type-options"), "nosniff");
    assert_eq!(header(r, "referrer-policy"), "no-referrer");
}

#[tokio::test]
async fn assets_are_served_with_strict_headers() {
    let s = TestServer::start().await;
    for (path, content_type, needle) in [
        ("/", "text/html", "/console/app.js"),
        ("/console", "text/html", "/console/app.css"),
        ("/console/", "text/html", "<main"),
        ("/console/index.html", "text/html", "<main"),
        ("/console/app.js", "text/javascript", "textContent"),
        ("/console/app.css", "text/css", "@media"),
        ("/console/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            header(&r, "content-type").starts_with(content_type),
            "{path}: {:?}",
            header(&r, "content-type")
        );
        assert_hardened(&r);
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{path} lacks {needle:?}");
    }
    // The page runs no inline script or style (the CSP would block them anyway).
    let html = s.get("/").await.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "{html}"
    );
    let js = s.get("/console/app.js").await.text().await.unwrap();
    assert!(
        !js.contains(".innerHTML") && !js.contains("eval("),
        "data reaches the page as text only"
    );

    let head = s.head("/console/app.js").await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_hardened(&head);
    let len: usize = header(&head, "content-length").parse().unwrap();
    assert_eq!(len, js.len());
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn only_get_and_head_and_only_known_names() {
    let s = TestServer::start().await;
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        for path in ["/", "/console/", "/console/app.js"] {
            let r = s.req(method.clone(), path).send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
        }
    }
    for path in [
        "/console/nope.js",
        "/console/app.js/",
        "/console/APP.JS",
        "/console/app.js.map",
        "/console/assets/app.js",
        "/consoles",
        "/index.html",
    ] {
        assert_eq!(s.get(path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// Sends one request line exactly as written (reqwest would normalise `..`) and returns the
/// status code.
async fn raw_status(s: &TestServer, target: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test]
async fn no_path_traversal() {
    let s = TestServer::start().await;
    // Files next to the assets in the source tree, and outside it: none is reachable.
    for target in [
        "/console/../Cargo.toml",
        "/console/../../Cargo.toml",
        "/console/..%2f..%2fCargo.toml",
        "/console/%2e%2e/%2e%2e/Cargo.toml",
        "/console/./app.js",
        "/console//app.js",
        "/console/app.js%00",
        "/console/..\\..\\Cargo.toml",
        "/console/console.rs",
        "/console/../console.rs",
        "/console/screenshot-history.png",
        "/console/%61pp.js",
    ] {
        let code = raw_status(&s, target).await;
        assert!(code == 404 || code == 400, "{target}: {code}");
    }
    assert_eq!(raw_status(&s, "/console/app.js").await, 200);
}

#[tokio::test]
async fn registry_and_api_are_unchanged_beside_the_console() {
    let s = TestServer::start().await;
    let (digest, _) = s.push_image("team/app", "v1", "console").await;
    let r = s.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("content-security-policy").is_none());
    let r = s.get("/v2/team/app/tags/list").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["tags"],
        serde_json::json!(["v1"])
    );
    let r = s.get("/apis/image.openshift.io/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .get("/apis/image.openshift.io/v1/namespaces/team/imagestreams/app")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let is: serde_json::Value = r.json().await.unwrap();
    assert_eq!(is["status"]["tags"][0]["items"][0]["image"], digest);
    // Unknown paths outside the console keep their OCI 404.
    let r = s.get("/nothing-here").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn assets_need_no_credentials_and_scripts_get_no_basic_challenge() {
    let s = crate::auth::start(|_| {}).await;
    let r = s.get("/").await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the login page itself is public"
    );
    assert_hardened(&r);
    assert_eq!(s.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);

    // A failed login from the console's script gets no Basic challenge (the browser would put
    // up its own password dialog); other clients still get one.
    let from_script = s
        .req(Method::POST, "/auth/v1/tokens")
        .basic_auth("admin", Some("wrong"))
        .header("X-Requested-With", "berth-console")
        .json(&serde_json::json!({"description": "console"}))
        .send()
        .await
        .unwrap();
    assert_eq!(from_script.status(), StatusCode::UNAUTHORIZED);
    assert!(from_script.headers().get("www-authenticate").is_none());
    let plain = s.req(Method::GET, "/auth/v1/whoami").send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&plain, "www-authenticate"), "Basic realm=\"berth\"");
}
