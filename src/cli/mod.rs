//! The client verbs of `berth`, modelled on `oc`: `get` (spec §7.3), `describe` (§7.1-7.2)
//! and `tag` (§3.7).
//!
//! Every verb talks to a running server over `/apis/image.openshift.io/v1` with a blocking
//! HTTP client. Kubernetes `Status` errors are printed as kubectl does,
//! `Error from server (Reason): message`, and end the process with exit code 1.

pub mod adm;
pub mod client;
pub mod config;
pub mod create;
pub mod delete;
pub mod describe;
pub mod get;
pub mod import;
pub mod jsonpath;
pub mod login;
pub mod manifest;
pub mod printer;
pub mod secret;
pub mod set;
pub mod tag;
pub mod webhook;

use std::fmt;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

pub use client::Client;
pub use config::{ClientConfig, DEFAULT_NAMESPACE, DEFAULT_SERVER};
pub use describe::DescribeArgs;
pub use get::GetArgs;
pub use tag::TagArgs;

/// Where the client verbs connect (global flags; see [`config`] for the defaults' sources).
#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// The berth server to talk to [default: from the client config, else http://127.0.0.1:5000].
    #[arg(long, global = true, env = "BERTH_SERVER")]
    pub server: Option<String>,
    /// The namespace of namespaced resources [default: from the client config, else default].
    #[arg(short = 'n', long, global = true, env = "BERTH_NAMESPACE")]
    pub namespace: Option<String>,
    /// An access token [default: the one `berth login` stored].
    #[arg(long, global = true, env = "BERTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the CA that signed the server's certificate.
    #[arg(long, global = true, env = "BERTH_CERTIFICATE_AUTHORITY")]
    pub certificate_authority: Option<std::path::PathBuf>,
}

impl ConnectionArgs {
    /// Fills what the flags and environment left open from the client config file.
    pub fn resolve(self) -> Result<Connection, CliError> {
        let file = match ClientConfig::path() {
            Some(p) => ClientConfig::load(&p)?,
            None => ClientConfig::default(),
        };
        // A stored token belongs to the server it was issued by.
        let same_server = self.server.is_none() || self.server == file.server;
        Ok(Connection {
            server: self
                .server
                .or(file.server)
                .unwrap_or_else(|| DEFAULT_SERVER.into()),
            namespace: self
                .namespace
                .or(file.namespace)
                .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            token: self.token.or(file.token.filter(|_| same_server)),
            certificate_authority: self.certificate_authority.or(file.certificate_authority),
        })
    }
}

/// `berth apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Files of objects (YAML or JSON, several documents each; `-` reads stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    pub filename: Vec<String>,
}

/// The server and namespace a verb works against.
#[derive(Debug, Clone)]
pub struct Connection {
    pub server: String,
    pub namespace: String,
    pub token: Option<String>,
    pub certificate_authority: Option<std::path::PathBuf>,
}

/// A failed client verb.
#[derive(Debug)]
pub enum CliError {
    /// A Kubernetes `Status` from the server.
    Server { reason: String, message: String },
    /// Anything else: bad arguments, connection failures.
    Other(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Server { reason, message } => {
                write!(f, "Error from server ({reason}): {message}")
            }
            CliError::Other(m) => write!(f, "error: {m}"),
        }
    }
}

impl std::error::Error for CliError {}

/// Prints `result`'s output or error and turns it into the process exit code.
pub fn finish(result: Result<String, CliError>) -> ExitCode {
    use std::io::Write;
    match result {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether a resource name given to a verb means berth.io webhooks.
pub fn is_webhook(resource: &str) -> bool {
    matches!(
        resource.split('.').next().unwrap_or(resource),
        "webhook" | "webhooks"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    ImageStreams,
    ImageStreamTags,
    ImageStreamImages,
    Images,
}

impl Resource {
    pub fn parse(s: &str) -> Result<Resource, CliError> {
        let r = match s.split('.').next().unwrap_or(s) {
            "is" | "imagestream" | "imagestreams" => Resource::ImageStreams,
            "istag" | "imagestreamtag" | "imagestreamtags" => Resource::ImageStreamTags,
            "isimage" | "imagestreamimage" | "imagestreamimages" => Resource::ImageStreamImages,
            "image" | "images" => Resource::Images,
            _ => {
                return Err(CliError::Other(format!(
                    "the server doesn't have a resource type \"{s}\""
                )))
            }
        };
        Ok(r)
    }

    pub fn plural(self) -> &'static str {
        match self {
            Resource::ImageStreams => "imagestreams",
            Resource::ImageStreamTags => "imagestreamtags",
            Resource::ImageStreamImages => "imagestreamimages",
            Resource::Images => "images",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Resource::ImageStreams => "ImageStream",
            Resource::ImageStreamTags => "ImageStreamTag",
            Resource::ImageStreamImages => "ImageStreamImage",
            Resource::Images => "Image",
        }
    }

    pub fn namespaced(self) -> bool {
        self != Resource::Images
    }

    /// The API path of one object or (name `None`) the collection.
    pub fn path(self, namespace: &str, name: Option<&str>) -> String {
        let mut p = if self.namespaced() {
            format!("namespaces/{namespace}/{}", self.plural())
        } else {
            self.plural().to_string()
        };
        if let Some(n) = name {
            p.push('/');
            p.push_str(n);
        }
        p
    }
}

/// JSON as kubectl prints it: four-space indents and a final newline.
pub fn pretty_json(v: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    v.serialize(&mut ser).expect("JSON values serialize");
    let mut s = String::from_utf8(buf).expect("serde_json writes UTF-8");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_and_paths() {
        let is = Resource::parse("is").unwrap();
        assert_eq!(is.path("ns", Some("app")), "namespaces/ns/imagestreams/app");
        let ist = Resource::parse("imagestreamtags.image.openshift.io").unwrap();
        assert_eq!(
            ist.path("ns", Some("app:v1")),
            "namespaces/ns/imagestreamtags/app:v1"
        );
        assert_eq!(
            Resource::parse("images").unwrap().path("ns", None),
            "images"
        );
        assert!(Resource::parse("pods").is_err());
    }

    #[test]
    fn errors_print_like_kubectl() {
        let e = CliError::Server {
            reason: "NotFound".into(),
            message: "imagestreams.image.openshift.io \"x\" not found".into(),
        };
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): imagestreams.image.openshift.io \"x\" not found"
        );
    }
}
