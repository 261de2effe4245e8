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
    /// Fetch and show what would be imported without creating or changing the stream.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

fn err(m: impl Into<String>) -> CliError {
    CliError::Other(m.into())
}

/// Runs `berth import-image` and returns what it prints.
pub fn run(conn: &Connection, args: &ImportImageArgs) -> Result<String, CliError> {
    let ns = conn.namespace.as_str();
    let client = Client::new(conn)?;
    if args.name.contains('@') {
        return Err(err("to import images by ID, use the 'tag' command"));
    }
    let (stream, tag) = match args.name.split_once(':') {
        Some(_) if args.all => {
            return Err(err(format!(
                "cannot specify a tag {:?} as well as --all",
                args.name
            )))
        }
        Some((s, t)) => (s, t.to_string()),
        None => (args.name.as_str(), "latest".to_string()),
    };
    let import_mode = import_mode(args.import_mode.as_deref())?;
    let policy = reference_policy(&args.reference_policy)?;
    let existing = match client.get(&format!("namespaces/{ns}/imagestreams/{stream}")) {
        Ok(s) => Some(s),
        Err(CliError::Server { reason, .. }) if reason == "NotFound" => None,
        Err(e) => return Err(e),
    };
    let (tag, from, current) = match &existing {
        None if !args.confirm => {
            return Err(err(format!(
                "no image stream named \"{stream}\" exists, pass --confirm to create and import"
            )))
        }
        // oc takes the target itself as the source when --from is not given.
        None => (
            tag,
            args.from.clone().unwrap_or_else(|| args.name.clone()),
            None,
        ),
        Some(is) if args.all => {
            let from = match &args.from {
                Some(f) => f.clone(),
                None => text(&is["spec"]["dockerImageRepository"]).to_string(),
            };
            if from.is_empty() {
                return Err(err(
                    "image stream does not have tags pointing to external container images",
                ));
            }
            (tag, from, None)
        }
        Some(is) => {
            let (tag, from, current) = source_of_tag(is, &tag, args.from.as_deref())?;
            (tag, from, current)
        }
    };
    // Flags not given keep the tag's current policy.
    let keep = |key: &str| {
        current
            .as_ref()
            .and_then(|t: &Value| t["importPolicy"][key].as_bool())
    };
    let import_policy = json!({
        "insecure": args.insecure.or_else(|| keep("insecure")).unwrap_or(false),
        "scheduled": args.scheduled.or_else(|| keep("scheduled")).unwrap_or(false),
        "importMode": import_mode,
    });
    let mut spec = json!({"import": !args.dry_run});
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
    let (out, errors) = render(&result, stream, args.all, args.dry_run)?;
    for e in errors {
        eprintln!("{e}");
    }
    Ok(out)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The spec tag named `tag`, if the stream has one.
fn spec_tag<'a>(is: &'a Value, tag: &str) -> Option<&'a Value> {
    is["spec"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == tag)
}

/// Where to import `tag` from, as oc decides it: a tag tracking another tag of the stream is
/// followed to the tag it ends at; only a DockerImage source is re-imported, and `--from` may
/// not change an existing tag's source (that is the 'tag' command's job). A tag the stream
/// does not have yet is created from `--from` (or, for `latest`, the stream's repository).
/// Returns the tag to import into, its source and its current spec.
fn source_of_tag(
    is: &Value,
    tag: &str,
    from: Option<&str>,
) -> Result<(String, String, Option<Value>), CliError> {
    let name = text(&is["metadata"]["name"]);
    let namespace = text(&is["metadata"]["namespace"]);
    let mut current = tag.to_string();
    let mut seen = std::collections::HashSet::new();
    let mut multiple = false;
    let terminal = loop {
        if !seen.insert(current.clone()) {
            return Err(err(format!(
                "tag {tag:?} on the image stream is a reference to same tag"
            )));
        }
        let Some(t) = spec_tag(is, &current) else {
            break None;
        };
        if t["from"]["kind"] != "ImageStreamTag" {
            break Some(t);
        }
        let source_ns = text(&t["from"]["namespace"]);
        if !source_ns.is_empty() && source_ns != namespace {
            return Err(err(format!(
                "tag {tag:?} points to an imagestreamtag from another ImageStream"
            )));
        }
        let source = text(&t["from"]["name"]);
        current = match source.split_once(':') {
            Some((s, _)) if s != name => {
                return Err(err(format!(
                    "tag {tag:?} points to an imagestreamtag from another ImageStream"
                )))
            }
            Some((_, t)) if !t.is_empty() && !t.contains(':') => t.to_string(),
            Some(_) => {
                return Err(err(format!(
                    "tag {tag:?} points to an invalid imagestreamtag"
                )))
            }
            None => source.to_string(),
        };
        multiple = true;
    };
    let Some(existing) = terminal else {
        let from = match from {
            Some(f) => f.to_string(),
            None if tag == "latest" => text(&is["spec"]["dockerImageRepository"]).to_string(),
            None => String::new(),
        };
        if from.is_empty() {
            return Err(err(format!(
                "the tag {tag:?} does not exist on the image stream - choose an existing tag to \
                 import or use the 'tag' command to create a new tag"
            )));
        }
        return Ok((tag.to_string(), from, None));
    };
    let kind = text(&existing["from"]["kind"]);
    let source = text(&existing["from"]["name"]);
    if !kind.is_empty() && kind != "DockerImage" {
        return Err(err(format!(
            "tag {tag:?} points to existing {kind} {source:?}, it cannot be re-imported"
        )));
    }
    if kind.is_empty() {
        return Err(err(format!(
            "tag {tag:?} already exists - you must use the 'tag' command if you want to change \
             the source to {:?}",
            from.unwrap_or("")
        )));
    }
    if let Some(f) = from.filter(|f| *f != source) {
        return Err(err(if multiple {
            format!(
                "the tag {tag:?} points to the tag {current:?} which points to {source:?} - use \
                 the 'tag' command if you want to change the source to {f:?}"
            )
        } else {
            format!(
                "the tag {tag:?} points to {source:?} - use the 'tag' command if you want to \
                 change the source to {f:?}"
            )
        }));
    }
    Ok((current, source.to_string(), Some(existing.clone())))
}

/// A pull spec without its tag or digest.
fn repository_of(from: &str) -> String {
    let without_digest = from.split('@').next().unwrap_or(from);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_string(),
        _ => without_digest.to_string(),
    }
}

/// oc's output: `<stream> imported` (`with errors` when a tag failed, `(dry run)` when
/// nothing was saved), the stream, then each imported image; each failed tag is an
/// `error: tag X failed: ...` line for stderr (the second value), not a failed command.
fn render(
    result: &Value,
    stream_name: &str,
    all: bool,
    dry_run: bool,
) -> Result<(String, Vec<String>), CliError> {
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
    let failed = |s: &&&Value| s["image"].is_null() || s["status"]["status"] == "Failure";
    let errors: Vec<String> = statuses
        .iter()
        .filter(failed)
        .map(|s| {
            format!(
                "error: {}tag {} failed: {}",
                if all { "repository " } else { "" },
                text(&s["tag"]),
                s["status"]["message"].as_str().unwrap_or("import failed")
            )
        })
        .collect();
    let mut message =
        if errors.is_empty() && result["status"]["repository"]["status"]["status"] != "Failure" {
            "imported".to_string()
        } else {
            "imported with errors".to_string()
        };
    if dry_run {
        message.push_str(" (dry run)");
    }
    let stream = &result["status"]["import"];
    let now = SystemTime::now();
    let mut out = format!("imagestream.image.openshift.io/{stream_name} {message}\n\n");
    if stream.is_object() {
        out.push_str(&image_stream(stream, now));
    }
    for s in statuses.iter().filter(|s| !failed(s)) {
        let name = format!("{stream_name}:{}", text(&s["tag"]));
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&image_details(&s["image"], &name, now));
    }
    let additional = result["status"]["repository"]["additionalTags"]
        .as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>())
        .unwrap_or_default();
    if !additional.is_empty() {
        out.push_str(&format!(
            "\ninfo: The remote repository contained {} additional tags which were not \
             imported: {}\n",
            additional.len(),
            additional.join(", ")
        ));
    }
    Ok((out, errors))
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
