//! `berth import-image`: `oc import-image`, an ImageStreamImport of one tag (or with `--all`
//! every tag of the source repository), printed as oc prints it: the stream, then the image.

use std::time::SystemTime;

use clap::Args;
use serde_json::{json, Value};

use super::describe::{image_details, image_stream};
use super::tag::{import_mode, reference_policy};
use super::{CliError, Client, Connection};

#[derive(Args, Debug)]
pub struct ImportImageArgs {
    /// The image stream, or stream:tag (the tag defaults to `latest`, or with --all is ignored).
    pub name: String,
    /// The image to import (a pull spec); defaults to the tag's current DockerImage source.
    #[arg(long)]
    pub from: Option<String>,
    /// Create the image stream (or the tag) if it does not exist.
    #[arg(long)]
    pub confirm: bool,
    /// Import every tag of the source repository (at most 50; the server lists the rest).
    #[arg(long)]
    pub all: bool,
    /// Legacy (one platform) or PreserveOriginal (the whole manifest list).
    #[arg(long = "import-mode")]
    pub import_mode: Option<String>,
    /// How pull specs of the tag resolve: source or local.
    #[arg(long = "reference-policy", default_value = "source")]
    pub reference_policy: String,
    /// Re-import the tag periodically.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub scheduled: Option<bool>,
    /// Allow plain HTTP or unverified HTTPS to the source registry.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub insecure: Option<bool>,
}

fn err(m: impl Into<String>) -> CliError {
    CliError::Other(m.into())
}

/// Runs `berth import-image` and returns what it prints.
pub fn run(conn: &Connection, args: &ImportImageArgs) -> Result<String, CliError> {
    let ns = conn.namespace.as_str();
    let client = Client::new(conn)?;
    let (stream, tag) = match args.name.split_once(':') {
        Some((s, t)) => (s, t),
        None => (args.name.as_str(), "latest"),
    };
    let import_mode = import_mode(args.import_mode.as_deref())?;
    let policy = reference_policy(&args.reference_policy)?;
    let existing = match client.get(&format!("namespaces/{ns}/imagestreams/{stream}")) {
        Ok(s) => Some(s),
        Err(CliError::Server { reason, .. }) if reason == "NotFound" => None,
        Err(e) => return Err(e),
    };
    let current = existing.as_ref().and_then(|s| {
        s["spec"]["tags"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == tag)
            .cloned()
    });
    let from = match (&args.from, &current) {
        (Some(f), _) => f.clone(),
        (None, Some(t)) if t["from"]["kind"] == "DockerImage" => {
            t["from"]["name"].as_str().unwrap_or_default().to_string()
        }
        (None, _) if existing.is_none() => {
            return Err(err(format!(
                "image stream \"{stream}\" does not exist; pass --from=IMAGE --confirm to \
                 create it and import"
            )))
        }
        (None, _) => {
            return Err(err(format!(
                "the tag \"{tag}\" does not exist on the image stream - choose an existing tag \
                 to import or use the 'tag' command to create a new tag"
            )))
        }
    };
    if !args.confirm && (existing.is_none() || current.is_none()) {
        return Err(err(format!(
            "the tag \"{tag}\" does not exist on the image stream \"{stream}\"; pass --confirm \
             to create it"
        )));
    }
    // Flags not given keep the tag's current policy.
    let keep = |key: &str| {
        current
            .as_ref()
            .and_then(|t| t["importPolicy"][key].as_bool())
    };
    let import_policy = json!({
        "insecure": args.insecure.or_else(|| keep("insecure")).unwrap_or(false),
        "scheduled": args.scheduled.or_else(|| keep("scheduled")).unwrap_or(false),
        "importMode": import_mode,
    });
    let mut spec = json!({"import": true});
    if args.all {
        spec["repository"] = json!({
            "from": {"kind": "DockerImage", "name": repository_of(&from)},
            "importPolicy": import_policy,
            "referencePolicy": {"type": policy},
        });
    } else {
        spec["images"] = json!([{
            "from": {"kind": "DockerImage", "name": from},
            "to": {"name": tag},
            "importPolicy": import_policy,
            "referencePolicy": {"type": policy},
        }]);
    }
    let body = json!({
        "kind": "ImageStreamImport",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": stream, "namespace": ns},
        "spec": spec,
    });
    let result = client.post(&format!("namespaces/{ns}/imagestreamimports"), &body)?;
    render(&result, args.all)
}

/// A pull spec without its tag or digest.
fn repository_of(from: &str) -> String {
    let without_digest = from.split('@').next().unwrap_or(from);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_string(),
        _ => without_digest.to_string(),
    }
}

/// oc's output: failures first (as errors), then the stream and each imported image.
fn render(result: &Value, all: bool) -> Result<String, CliError> {
    let statuses: Vec<&Value> = if all {
        result["status"]["repository"]["images"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    } else {
        result["status"]["images"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    };
    let repository_failure = all
        .then(|| &result["status"]["repository"]["status"])
        .filter(|s| s["status"] == "Failure" && s["reason"] != "ImportFailed");
    if let Some(s) = repository_failure {
        return Err(err(s["message"].as_str().unwrap_or("the import failed")));
    }
    let failures: Vec<String> = statuses
        .iter()
        .filter(|s| s["status"]["status"] != "Success")
        .map(|s| {
            format!(
                "tag {}: {}",
                s["tag"].as_str().unwrap_or(""),
                s["status"]["message"].as_str().unwrap_or("import failed")
            )
        })
        .collect();
    if statuses.len() == failures.len() && !failures.is_empty() {
        return Err(err(format!("import failed: {}", failures.join("; "))));
    }
    let stream = &result["status"]["import"];
    let now = SystemTime::now();
    let mut out = format!(
        "imagestream.image.openshift.io/{} imported\n\n",
        stream["metadata"]["name"].as_str().unwrap_or("")
    );
    if !failures.is_empty() {
        for f in &failures {
            out.push_str(&format!("error: {f}\n"));
        }
        out.push('\n');
    }
    out.push_str(&image_stream(stream, now));
    for s in statuses
        .iter()
        .filter(|s| s["status"]["status"] == "Success")
    {
        let image = &s["image"];
        let name = format!(
            "{}:{}",
            stream["metadata"]["name"].as_str().unwrap_or(""),
            s["tag"].as_str().unwrap_or("")
        );
        out.push('\n');
        out.push_str(&image_details(image, &name, now));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_without_tag_or_digest() {
        assert_eq!(repository_of("quay.io/a/b:1"), "quay.io/a/b");
        assert_eq!(repository_of("127.0.0.1:5000/a/b"), "127.0.0.1:5000/a/b");
        assert_eq!(repository_of("127.0.0.1:5000/a/b:v2"), "127.0.0.1:5000/a/b");
        assert_eq!(repository_of("r/a@sha256:00"), "r/a");
    }
}
