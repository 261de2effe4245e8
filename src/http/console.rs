//! The web console: a static single-page app embedded in the binary, served at `/` and
//! `/console/...`.
//!
//! The assets are files, never templates: nothing a user stored reaches them on the server, so
//! there is nothing to escape here. The app reads everything through the public APIs (/apis,
//! /v2, /auth) with the user's own token, so it can do nothing the CLI could not; the headers
//! below keep a page that shows registry data from running anything but these files.
//! Pages are addressed by the URL fragment (`/console/#/ns/...`), so the server needs to know
//! no app routes and any other path under `/console/` is simply unknown (404).

use http::{header, Method, StatusCode};

use super::endpoint::ParseError;
use super::response::{self as resp, Response};

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Index,
    Script,
    Style,
    Icon,
}

impl Asset {
    /// The asset's name under `/console/` (`Index` is also `/` and `/console/`).
    const NAMED: [(&'static str, Asset); 4] = [
        ("index.html", Asset::Index),
        ("app.js", Asset::Script),
        ("app.css", Asset::Style),
        ("favicon.svg", Asset::Icon),
    ];

    fn content(self) -> (&'static str, &'static [u8]) {
        match self {
            Asset::Index => (
                "text/html; charset=utf-8",
                include_bytes!("console/index.html"),
            ),
            Asset::Script => (
                "text/javascript; charset=utf-8",
                include_bytes!("console/app.js"),
            ),
            Asset::Style => ("text/css; charset=utf-8", include_bytes!("console/app.css")),
            Asset::Icon => ("image/svg+xml", include_bytes!("console/favicon.svg")),
        }
    }
}

/// Whether `path` belongs to the console (so no other parser sees it).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with("/console/")
}

/// The asset a console path names. Names are matched exactly, never decoded or joined to a
/// directory, so `..`, `%2e` or a trailing slash cannot reach anything else.
pub fn parse(method: &Method, path: &str) -> Result<Asset, ParseError> {
    let asset = match path {
        "/" | "/console" | "/console/" => Asset::Index,
        _ => {
            let name = path.strip_prefix("/console/").ok_or(ParseError::NotFound)?;
            Asset::NAMED
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, a)| *a)
                .ok_or(ParseError::NotFound)?
        }
    };
    if method == Method::GET || method == Method::HEAD {
        Ok(asset)
    } else {
        Err(ParseError::MethodNotAllowed)
    }
}

/// Only the console's own files may run or style the page; no framing (clickjacking of the
/// rollback and delete buttons); API calls only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Serves an asset (headers only for HEAD).
pub fn serve(asset: Asset, head: bool) -> Response {
    let (content_type, bytes) = asset.content();
    let mut r = if head {
        let mut r = resp::status(StatusCode::OK);
        resp::set(&mut r, header::CONTENT_TYPE, content_type);
        resp::set(&mut r, header::CONTENT_LENGTH, &bytes.len().to_string());
        r
    } else {
        resp::with_content_type(StatusCode::OK, content_type, bytes.to_vec())
    };
    resp::set(
        &mut r,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    resp::set(&mut r, header::X_FRAME_OPTIONS, "DENY");
    resp::set(&mut r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    resp::set(&mut r, header::REFERRER_POLICY, "no-referrer");
    // The files change with the binary: revalidate rather than run a stale app on a new server.
    resp::set(&mut r, header::CACHE_CONTROL, "no-cache");
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let get = |p| parse(&Method::GET, p);
        assert_eq!(get("/"), Ok(Asset::Index));
        assert_eq!(get("/console"), Ok(Asset::Index));
        assert_eq!(get("/console/"), Ok(Asset::Index));
        assert_eq!(get("/console/app.js"), Ok(Asset::Script));
        assert_eq!(parse(&Method::HEAD, "/console/app.css"), Ok(Asset::Style));
        for unknown in [
            "/console/nope.js",
            "/console/../Cargo.toml",
            "/console/%2e%2e/Cargo.toml",
            "/console/app.js/",
            "/console//app.js",
            "/console/index.html/../app.js",
        ] {
            assert_eq!(get(unknown), Err(ParseError::NotFound), "{unknown}");
        }
        assert_eq!(
            parse(&Method::POST, "/console/app.js"),
            Err(ParseError::MethodNotAllowed)
        );
        assert_eq!(parse(&Method::PUT, "/"), Err(ParseError::MethodNotAllowed));
        assert!(!is_console_path("/v2/"));
        assert!(!is_console_path("/consoles"));
    }
}
