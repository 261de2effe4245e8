//! A small blocking client of `/apis/image.openshift.io/v1`.

use reqwest::blocking::{Client as Http, RequestBuilder};
use reqwest::Method;
use serde_json::Value;

use super::{CliError, Connection};

pub const API_PREFIX: &str = "/apis/image.openshift.io/v1";

pub struct Client {
    http: Http,
    server: String,
    credentials: Credentials,
}

/// What a request authenticates with.
#[derive(Clone)]
pub enum Credentials {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

impl Client {
    /// A client of the connection's server, with its token.
    pub fn new(conn: &Connection) -> Result<Client, CliError> {
        let credentials = match &conn.token {
            Some(t) => Credentials::Bearer(t.clone()),
            None => Credentials::None,
        };
        Client::with(
            &conn.server,
            conn.certificate_authority.as_deref(),
            credentials,
        )
    }

    /// A client of `server`, trusting `ca` (PEM) besides the system's roots.
    pub fn with(
        server: &str,
        ca: Option<&std::path::Path>,
        credentials: Credentials,
    ) -> Result<Client, CliError> {
        let mut builder = Http::builder();
        if let Some(path) = ca {
            let pem = std::fs::read(path).map_err(|e| {
                CliError::Other(format!(
                    "reading certificate authority {}: {e}",
                    path.display()
                ))
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| CliError::Other(format!("invalid certificate authority: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| CliError::Other(format!("building the HTTP client: {e}")))?;
        Ok(Client {
            http,
            server: server.trim_end_matches('/').to_string(),
            credentials,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// `path` is relative to the image API group version (`namespaces/ns/imagestreams/app`),
    /// or absolute on the server when it starts with `/` (`/api/v1/namespaces/ns/secrets`).
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = if path.starts_with('/') {
            format!("{}{path}", self.server)
        } else {
            format!("{}{API_PREFIX}/{path}", self.server)
        };
        let req = self
            .http
            .request(method, url)
            .header("accept", "application/json");
        match &self.credentials {
            Credentials::None => req,
            Credentials::Bearer(t) => req.bearer_auth(t),
            Credentials::Basic { user, password } => req.basic_auth(user, Some(password)),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        send(self.request(Method::GET, path))
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        send(self.request(Method::PUT, path).json(body))
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        send(self.request(Method::POST, path).json(body))
    }

    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        send(self.request(Method::DELETE, path))
    }

    pub fn patch(&self, path: &str, content_type: &str, body: &Value) -> Result<Value, CliError> {
        send(
            self.request(Method::PATCH, path)
                .header("content-type", content_type)
                .body(body.to_string()),
        )
    }

    /// A GET whose body is read as it arrives (a watch); a failure is read as [`send`] reads it.
    pub fn stream(&self, path: &str) -> Result<reqwest::blocking::Response, CliError> {
        let resp = self
            .request(Method::GET, path)
            .timeout(super::get::WATCH_TIMEOUT)
            .send()
            .map_err(|e| {
                CliError::Other(format!(
                    "unable to connect to the server: {}",
                    describe_error(&e)
                ))
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        failure(resp.status(), &resp.bytes().unwrap_or_default())
    }
}

fn send(req: RequestBuilder) -> Result<Value, CliError> {
    let resp = req.send().map_err(|e| {
        CliError::Other(format!(
            "unable to connect to the server: {}",
            describe_error(&e)
        ))
    })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .map_err(|e| CliError::Other(format!("reading the response: {e}")))?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|_| {
            CliError::Other(format!(
                "the server returned a response that is not JSON (status {status})"
            ))
        });
    }
    failure(status, &body)
}

/// A failed request's error: the server's Status, or its status line and body.
fn failure<T>(status: reqwest::StatusCode, body: &[u8]) -> Result<T, CliError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match json {
        Some(v) if v["kind"] == "Status" => Err(CliError::Server {
            reason: v["reason"].as_str().unwrap_or("Unknown").to_string(),
            message: v["message"].as_str().unwrap_or("").to_string(),
        }),
        _ => Err(CliError::Other(format!(
            "the server responded with status {status}: {}",
            String::from_utf8_lossy(body).trim()
        ))),
    }
}

/// The error and its causes, as one line (reqwest's Display omits "connection refused").
fn describe_error(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
