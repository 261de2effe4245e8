//! The client verbs of `berth`, modelled on `oc`: `get` (spec §7.3), `describe` (§7.1-7.2)
//! and `tag` (§3.7).
//!
//! Every verb talks to a running server over `/apis/image.openshift.io/v1` with a blocking
//! HTTP client. Kubernetes `Status` errors are printed as kubectl does,
//! `Error from server (Reason): message`, and end the process with exit code 1.

pub mod adm;
pub mod client;
pub mod config;
pub mod describe;
pub mod import;
pub mod jsonpath;
pub mod login;
pub mod printer;
pub mod secret;
pub mod tag;
pub mod webhook;

use std::fmt;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;
use serde_json::{json, Value};

pub use client::Client;
pub use config::{ClientConfig, DEFAULT_NAMESPACE, DEFAULT_SERVER};
pub use describe::DescribeArgs;
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

/// `berth delete TYPE NAME` (webhooks only).
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// webhook
    pub resource: String,
    pub name: String,
}

pub fn delete(conn: &Connection, args: &DeleteArgs) -> Result<String, CliError> {
    if !is_webhook(&args.resource) {
        return Err(CliError::Other(format!(
            "berth delete supports webhooks only, not {:?}",
            args.resource
        )));
    }
    webhook::delete(conn, &args.name)
}

/// `berth get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// is (imagestream), istag (imagestreamtag), isimage (imagestreamimage) or images.
    pub resource: String,
    /// The object's name (`stream`, `stream:tag`, `stream@id` or `sha256:...`); all if omitted.
    pub name: Option<String>,
    /// Output format: json, yaml, name, wide or jsonpath=TEMPLATE.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
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

    fn plural(self) -> &'static str {
        match self {
            Resource::ImageStreams => "imagestreams",
            Resource::ImageStreamTags => "imagestreamtags",
            Resource::ImageStreamImages => "imagestreamimages",
            Resource::Images => "images",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Resource::ImageStreams => "ImageStream",
            Resource::ImageStreamTags => "ImageStreamTag",
            Resource::ImageStreamImages => "ImageStreamImage",
            Resource::Images => "Image",
        }
    }

    fn namespaced(self) -> bool {
        self != Resource::Images
    }

    /// The API path of one object or (name `None`) the collection.
    fn path(self, namespace: &str, name: Option<&str>) -> String {
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

enum Output {
    Table { wide: bool },
    Json,
    Yaml,
    Name,
    JsonPath(jsonpath::Template),
}

impl Output {
    fn parse(o: Option<&str>) -> Result<Output, CliError> {
        Ok(match o {
            None | Some("") => Output::Table { wide: false },
            Some("wide") => Output::Table { wide: true },
            Some("json") => Output::Json,
            Some("yaml") => Output::Yaml,
            Some("name") => Output::Name,
            Some(o) => match o.strip_prefix("jsonpath=") {
                Some(t) => Output::JsonPath(
                    jsonpath::Template::parse(t)
                        .map_err(|e| CliError::Other(format!("error parsing jsonpath {t}, {e}")))?,
                ),
                None => {
                    return Err(CliError::Other(format!(
                        "unable to match a printer suitable for the output format \"{o}\", \
                         allowed formats are: json,jsonpath,name,wide,yaml"
                    )))
                }
            },
        })
    }
}

/// Runs `berth get` and returns what it prints on stdout.
pub fn get(conn: &Connection, args: &GetArgs) -> Result<String, CliError> {
    if is_webhook(&args.resource) {
        return webhook::get(conn, args.name.as_deref(), args.output.as_deref());
    }
    let resource = Resource::parse(&args.resource)?;
    let output = Output::parse(args.output.as_deref())?;
    let client = Client::new(conn)?;
    let ns = &conn.namespace;
    let (objects, single) = match &args.name {
        Some(name) => {
            let mut obj = client.get(&resource.path(ns, Some(name)))?;
            fill_type(&mut obj, resource);
            (vec![obj], true)
        }
        None => {
            if resource == Resource::ImageStreamImages {
                return Err(CliError::Other(
                    "imagestreamimages can only be retrieved by name (stream@id)".into(),
                ));
            }
            let list = client.get(&resource.path(ns, None))?;
            let mut items = match list["items"].as_array() {
                Some(items) => items.clone(),
                None => Vec::new(),
            };
            for item in &mut items {
                fill_type(item, resource);
            }
            (items, false)
        }
    };
    if objects.is_empty() && matches!(output, Output::Table { .. } | Output::Name) {
        if resource.namespaced() {
            eprintln!("No resources found in {ns} namespace.");
        } else {
            eprintln!("No resources found");
        }
        return Ok(String::new());
    }
    // json, yaml and jsonpath see one object, or a v1 List of several, as kubectl does.
    let document = || {
        if single {
            objects[0].clone()
        } else {
            json!({"apiVersion": "v1", "items": objects, "kind": "List",
                   "metadata": {"resourceVersion": ""}})
        }
    };
    Ok(match output {
        Output::Table { wide } => render_table(resource, &objects, wide),
        Output::Json => pretty_json(&document()),
        Output::Yaml => printer::yaml(&document()),
        Output::Name => objects
            .iter()
            .map(|o| {
                format!(
                    "{}.image.openshift.io/{}\n",
                    resource.kind().to_lowercase(),
                    o["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect(),
        Output::JsonPath(t) => t.render(&document()),
    })
}

/// List items come without `kind`/`apiVersion`; kubectl restores them before printing.
fn fill_type(obj: &mut Value, resource: Resource) {
    if let Value::Object(m) = obj {
        m.entry("kind").or_insert_with(|| resource.kind().into());
        m.entry("apiVersion")
            .or_insert_with(|| "image.openshift.io/v1".into());
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

fn render_table(resource: Resource, objects: &[Value], wide: bool) -> String {
    let now = SystemTime::now();
    match resource {
        Resource::ImageStreams => printer::table(
            &["NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"],
            &objects
                .iter()
                .map(|o| printer::stream_row(o, now))
                .collect::<Vec<_>>(),
        ),
        Resource::ImageStreamTags => {
            let mut header = vec!["NAME", "IMAGE REFERENCE", "UPDATED"];
            if wide {
                header.push("IMAGE NAME");
            }
            printer::table(
                &header,
                &objects
                    .iter()
                    .map(|o| printer::istag_row(o, now, wide))
                    .collect::<Vec<_>>(),
            )
        }
        Resource::ImageStreamImages | Resource::Images => printer::table(
            &["NAME", "IMAGE REFERENCE"],
            &objects
                .iter()
                .map(|o| {
                    if resource == Resource::Images {
                        printer::image_row(o)
                    } else {
                        vec![
                            o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                            o["image"]["dockerImageReference"]
                                .as_str()
                                .unwrap_or("")
                                .to_string(),
                        ]
                    }
                })
                .collect::<Vec<_>>(),
        ),
    }
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

    #[test]
    fn output_formats() {
        assert!(Output::parse(Some("xml")).is_err());
        assert!(Output::parse(Some("jsonpath={.a")).is_err());
        assert!(matches!(
            Output::parse(Some("jsonpath={.a}")),
            Ok(Output::JsonPath(_))
        ));
    }
}
