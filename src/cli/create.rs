//! `berth create`: `-f FILE` (any object berth serves), or `imagestream`, `imagestreamtag`
//! and `secret` from flags, printed and refused as `oc create` does.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::secret::SecretKind;
use super::tag::reference_policy;
use super::{manifest, CliError, Client, Connection};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CreateArgs {
    /// Files of objects to create (YAML or JSON, several documents each; `-` reads stdin).
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    #[command(subcommand)]
    pub what: Option<CreateWhat>,
}

#[derive(Subcommand, Debug)]
pub enum CreateWhat {
    /// Create a secret.
    #[command(subcommand)]
    Secret(SecretKind),
    /// Create a webhook subscription (needs admin in the namespace).
    Webhook(super::webhook::CreateWebhookArgs),
    /// Create an empty image stream.
    #[command(visible_alias = "is")]
    Imagestream(CreateStreamArgs),
    /// Create a tag in an image stream (and the stream, if it does not exist).
    #[command(visible_alias = "istag")]
    Imagestreamtag(CreateTagArgs),
}

#[derive(Args, Debug)]
pub struct CreateStreamArgs {
    pub name: String,
    /// Let pods in the namespace refer to the stream's tags by their short names.
    #[arg(long = "lookup-local")]
    pub lookup_local: bool,
}

#[derive(Args, Debug)]
pub struct CreateTagArgs {
    /// STREAM:TAG.
    pub name: String,
    /// A registry pull spec to import the tag from.
    #[arg(long = "from-image")]
    pub from_image: Option<String>,
    /// Another tag (`[ns/]stream:tag`, or `:tag` of this stream) or image (`stream@id`).
    #[arg(long)]
    pub from: Option<String>,
    /// Use the source as a reference only (never imported).
    #[arg(long)]
    pub reference: bool,
    /// How pull specs of the tag resolve: source or local.
    #[arg(long = "reference-policy", default_value = "source")]
    pub reference_policy: String,
    /// Re-import the image periodically.
    #[arg(long)]
    pub scheduled: bool,
    /// Allow plain HTTP or unverified HTTPS to the source registry.
    #[arg(long)]
    pub insecure: bool,
    /// KEY=VALUE annotations of the tag (repeatable).
    #[arg(short = 'A', long = "annotation")]
    pub annotations: Vec<String>,
}

fn err(m: impl Into<String>) -> CliError {
    CliError::Other(m.into())
}

/// Runs `berth create ...` and returns what it prints.
pub fn run(conn: &Connection, args: &CreateArgs) -> Result<String, CliError> {
    match &args.what {
        None => manifest::create(conn, &args.filename),
        Some(CreateWhat::Secret(kind)) => super::secret::run(conn, kind),
        Some(CreateWhat::Webhook(a)) => super::webhook::create(conn, a),
        Some(CreateWhat::Imagestream(a)) => {
            let body = json!({
                "kind": "ImageStream",
                "apiVersion": "image.openshift.io/v1",
                "metadata": {"name": a.name, "namespace": conn.namespace},
                "spec": {"lookupPolicy": {"local": a.lookup_local}},
            });
            Client::new(conn)?.post(
                &format!("namespaces/{}/imagestreams", conn.namespace),
                &body,
            )?;
            Ok(format!(
                "imagestream.image.openshift.io/{} created\n",
                a.name
            ))
        }
        Some(CreateWhat::Imagestreamtag(a)) => {
            let body = imagestreamtag(a, &conn.namespace)?;
            Client::new(conn)?.post(
                &format!("namespaces/{}/imagestreamtags", conn.namespace),
                &body,
            )?;
            Ok(format!(
                "imagestreamtag.image.openshift.io/{} created\n",
                a.name
            ))
        }
    }
}

/// The ImageStreamTag `oc create imagestreamtag` posts.
fn imagestreamtag(a: &CreateTagArgs, ns: &str) -> Result<Value, CliError> {
    let Some((stream, tag)) = a
        .name
        .split_once(':')
        .filter(|(s, t)| !s.is_empty() && !t.is_empty() && !t.contains(':'))
    else {
        return Err(err(format!(
            "\"{}\" must be of the form <stream_name>:<tag>",
            a.name
        )));
    };
    let mut annotations = Map::new();
    for kv in &a.annotations {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                annotations.insert(k.to_string(), Value::String(v.to_string()));
            }
            _ => {
                return Err(err(format!(
                    "annotations must be of the form key=value, but is \"{kv}\""
                )))
            }
        }
    }
    let from = match (&a.from_image, &a.from) {
        (Some(_), Some(_)) => return Err(err("--from and --from-image may not be used together")),
        (Some(image), None) => Some(json!({"kind": "DockerImage", "name": image})),
        (None, Some(from)) => Some(tag_source(from, stream)?),
        (None, None) => None,
    };
    let mut tag = json!({
        "name": tag,
        "reference": a.reference,
        "referencePolicy": {"type": reference_policy(&a.reference_policy)?},
        "importPolicy": {"scheduled": a.scheduled, "insecure": a.insecure},
    });
    if let Some(from) = from {
        tag["from"] = from;
    }
    let mut metadata = json!({"name": a.name, "namespace": ns});
    if !annotations.is_empty() {
        // oc sets both (the server requires them equal).
        tag["annotations"] = Value::Object(annotations.clone());
        metadata["annotations"] = Value::Object(annotations);
    }
    Ok(json!({
        "kind": "ImageStreamTag",
        "apiVersion": "image.openshift.io/v1",
        "metadata": metadata,
        "tag": tag,
    }))
}

/// `--from`: `[ns/]stream:tag`, `:tag` (this stream) or `[ns/]stream@id`; never a registry.
fn tag_source(from: &str, stream: &str) -> Result<Value, CliError> {
    if let Some(tag) = from.strip_prefix(':') {
        return Ok(json!({"kind": "ImageStreamTag", "name": format!("{stream}:{tag}")}));
    }
    let parts: Vec<&str> = from.split('/').collect();
    let (namespace, name) = match parts.as_slice() {
        [name] => ("", *name),
        [ns, name] if !ns.contains('.') && !ns.contains(':') && *ns != "localhost" => (*ns, *name),
        _ => return Err(err("Invalid --from, registry may not be specified")),
    };
    let kind = if name.contains('@') {
        "ImageStreamImage"
    } else {
        "ImageStreamTag"
    };
    let name = if kind == "ImageStreamTag" && !name.contains(':') {
        format!("{name}:latest")
    } else {
        name.to_string()
    };
    let mut v = json!({"kind": kind, "name": name});
    if !namespace.is_empty() {
        v["namespace"] = namespace.into();
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str) -> CreateTagArgs {
        CreateTagArgs {
            name: name.into(),
            from_image: None,
            from: None,
            reference: false,
            reference_policy: "source".into(),
            scheduled: false,
            insecure: false,
            annotations: vec![],
        }
    }

    #[test]
    fn refusals_as_oc() {
        let e = imagestreamtag(&args("tag-c"), "ns").unwrap_err();
        assert!(e
            .to_string()
            .contains("must be of the form <stream_name>:<tag>"));
        let mut a = args("s:1");
        a.annotations = vec!["foo".into()];
        assert_eq!(
            imagestreamtag(&a, "ns").unwrap_err().to_string(),
            "error: annotations must be of the form key=value, but is \"foo\""
        );
        let mut a = args("s:2");
        a.from = Some("mysql".into());
        a.from_image = Some("mysql:latest".into());
        assert_eq!(
            imagestreamtag(&a, "ns").unwrap_err().to_string(),
            "error: --from and --from-image may not be used together"
        );
        assert!(tag_source("quay.io/x/y:1", "s").is_err());
    }

    #[test]
    fn sources() {
        assert_eq!(
            tag_source("wildfly:12.0", "s").unwrap(),
            json!({"kind": "ImageStreamTag", "name": "wildfly:12.0"})
        );
        assert_eq!(
            tag_source(":2", "s").unwrap(),
            json!({"kind": "ImageStreamTag", "name": "s:2"})
        );
        assert_eq!(
            tag_source("other/base@sha256:ab", "s").unwrap(),
            json!({"kind": "ImageStreamImage", "name": "base@sha256:ab", "namespace": "other"})
        );
    }
}
