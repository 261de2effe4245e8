//! `berth tag`: `oc tag` for image-stream sources (spec §3.7).
//!
//! ImageStreamTag sources are frozen to `ImageStreamImage stream@<top image>` unless `--alias`;
//! ImageStreamImage sources are taken as given; DockerImage sources are sent with
//! `generation: 0` so the server treats them as a new import, with their import policy.

use clap::Args;
use serde_json::{json, Value};

use super::{CliError, Client, Connection};

/// `berth tag [--source KIND] SOURCE DEST...` or `berth tag -d DEST...`.
#[derive(Args, Debug)]
pub struct TagArgs {
    /// SOURCE then one or more DEST (`[ns/]stream:tag`); with -d, destinations only.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Delete the given tags.
    #[arg(short = 'd', long = "delete")]
    pub delete: bool,
    /// Make the destination track the source tag instead of freezing its current image.
    #[arg(long)]
    pub alias: bool,
    /// The kind of the source: imagestreamtag|istag|imagestreamimage|isimage|docker|dockerimage.
    #[arg(long = "source")]
    pub source_kind: Option<String>,
    /// Use the source as a reference only (never imported).
    #[arg(long)]
    pub reference: bool,
    /// How pull specs of the tag resolve: source or local.
    #[arg(long = "reference-policy", default_value = "source")]
    pub reference_policy: String,
    /// Re-import a DockerImage source periodically.
    #[arg(long)]
    pub scheduled: bool,
    /// Allow plain HTTP or unverified HTTPS for a DockerImage source.
    #[arg(long)]
    pub insecure: bool,
    /// Legacy (one platform) or PreserveOriginal (the whole manifest list).
    #[arg(long = "import-mode")]
    pub import_mode: Option<String>,
}

/// A `[ns/]stream:tag` or `[ns/]stream@id` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamRef {
    namespace: String,
    stream: String,
    /// The tag or the image id.
    item: String,
}

impl StreamRef {
    fn parse(s: &str, sep: char, default_ns: &str) -> Option<StreamRef> {
        let (ns, rest) = match s.split_once('/') {
            Some((ns, rest)) => (ns, rest),
            None => (default_ns, s),
        };
        let (stream, item) = rest.split_once(sep)?;
        if ns.is_empty() || stream.is_empty() || item.is_empty() || rest.contains('/') {
            return None;
        }
        Some(StreamRef {
            namespace: ns.into(),
            stream: stream.into(),
            item: item.into(),
        })
    }
}

/// The destination's display name: `<ns>/` is prepended for another namespace.
fn display(r: &StreamRef, sep: char, current_ns: &str) -> String {
    if r.namespace == current_ns {
        format!("{}{sep}{}", r.stream, r.item)
    } else {
        format!("{}/{}{sep}{}", r.namespace, r.stream, r.item)
    }
}

fn err(m: impl Into<String>) -> CliError {
    CliError::Other(m.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    Tag,
    Image,
    Docker,
}

fn source_kind(flag: Option<&str>, source: &str) -> Result<SourceKind, CliError> {
    if let Some(k) = flag {
        return match k.to_lowercase().as_str() {
            "imagestreamtag" | "istag" => Ok(SourceKind::Tag),
            "imagestreamimage" | "isimage" => Ok(SourceKind::Image),
            "docker" | "dockerimage" => Ok(SourceKind::Docker),
            _ => Err(err(format!(
                "invalid source {k:?}; valid values are \
                 [imagestreamtag istag imagestreamimage isimage docker dockerimage]"
            ))),
        };
    }
    // A registry host in front (a first component with '.' or ':' or "localhost").
    let registry = source
        .split_once('/')
        .is_some_and(|(h, _)| h.contains(['.', ':']) || h == "localhost");
    Ok(if registry {
        SourceKind::Docker
    } else if source.contains('@') {
        SourceKind::Image
    } else if source.contains(':') {
        SourceKind::Tag
    } else {
        SourceKind::Docker
    })
}

/// `--import-mode`: empty (Legacy), `Legacy` or `PreserveOriginal`, case-sensitive.
pub fn import_mode(flag: Option<&str>) -> Result<&str, CliError> {
    match flag {
        None | Some("") => Ok(""),
        Some(m @ ("Legacy" | "PreserveOriginal")) => Ok(m),
        Some(_) => Err(err(
            "valid ImportMode values are Legacy or PreserveOriginal",
        )),
    }
}

/// `--reference-policy`: `source` or `local`, as the API spells them.
pub fn reference_policy(flag: &str) -> Result<&'static str, CliError> {
    match flag {
        "source" => Ok("Source"),
        "local" => Ok("Local"),
        _ => Err(err("reference policy must be set to 'source' or 'local'")),
    }
}

fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    t.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn parse_dest(d: &str, ns: &str) -> Result<StreamRef, CliError> {
    // A destination without a tag means `latest`, as in oc.
    let with_tag = if d.rsplit('/').next().is_some_and(|s| !s.contains(':')) {
        format!("{d}:latest")
    } else {
        d.to_string()
    };
    StreamRef::parse(&with_tag, ':', ns).ok_or_else(|| {
        err(format!(
            "invalid destination {d:?}: expected [namespace/]stream:tag"
        ))
    })
}

/// Runs `berth tag` and returns what it prints on stdout.
pub fn run(conn: &Connection, args: &TagArgs) -> Result<String, CliError> {
    let ns = conn.namespace.as_str();
    let client = Client::new(conn)?;
    if args.delete {
        if args.alias {
            return Err(err("--alias and --delete may not be both specified"));
        }
        if args.source_kind.is_some() {
            return Err(err("cannot specify a source kind when deleting"));
        }
        if args.scheduled || args.insecure {
            return Err(err(
                "cannot set flags for importing images when deleting a tag",
            ));
        }
        if args.import_mode.is_some() {
            return Err(err("cannot specify an import mode when deleting"));
        }
        let mut out = String::new();
        for d in &args.args {
            let dest = parse_dest(d, ns)?;
            client.delete(&format!(
                "namespaces/{}/imagestreamtags/{}:{}",
                dest.namespace, dest.stream, dest.item
            ))?;
            out.push_str(&format!(
                "Deleted tag {}/{}:{}.\n",
                dest.namespace, dest.stream, dest.item
            ));
        }
        return Ok(out);
    }
    let (source, dests) = match args.args.split_first() {
        Some((s, d)) if !d.is_empty() => (s.as_str(), d),
        _ => {
            return Err(err(
                "you must specify a source and at least one destination",
            ))
        }
    };
    let policy = reference_policy(&args.reference_policy)?;
    let import_mode = import_mode(args.import_mode.as_deref())?;
    let import_flags = args.scheduled || args.insecure;
    if import_flags && args.alias {
        return Err(err(
            "cannot set a container image tag as an alias and also set import flags",
        ));
    }
    let kind = source_kind(args.source_kind.as_deref(), source)?;
    if import_flags && kind != SourceKind::Docker {
        return Err(err("only container images can have importing flags set"));
    }
    let dests = dests
        .iter()
        .map(|d| parse_dest(d, ns))
        .collect::<Result<Vec<_>, _>>()?;
    for d in &dests {
        if !valid_tag(&d.item) {
            return Err(err(format!(
                "invalid tag {:?} format, tags must start with an alphanumeric character \
                 followed by alphanumeric, '.' or '-' characters, and have a maximum of 128 \
                 characters",
                d.item
            )));
        }
    }
    // (from.kind, source reference, message verb)
    let (from_kind, src, tracking) = match kind {
        SourceKind::Docker => (
            "DockerImage",
            (
                StreamRef {
                    namespace: ns.into(),
                    stream: String::new(),
                    item: source.into(),
                },
                ':',
            ),
            false,
        ),
        SourceKind::Image => {
            let r = StreamRef::parse(source, '@', ns)
                .ok_or_else(|| err(format!("invalid image stream image {source:?}")))?;
            ("ImageStreamImage", (r, '@'), false)
        }
        SourceKind::Tag if args.alias => {
            let r = StreamRef::parse(source, ':', ns)
                .ok_or_else(|| err(format!("invalid image stream tag {source:?}")))?;
            if dests
                .iter()
                .any(|d| d.namespace != r.namespace || d.stream != r.stream)
            {
                return Err(err("cannot set alias across different Image Streams"));
            }
            ("ImageStreamTag", (r, ':'), true)
        }
        SourceKind::Tag => {
            let r = StreamRef::parse(source, ':', ns)
                .ok_or_else(|| err(format!("invalid image stream tag {source:?}")))?;
            frozen(&client, r, source)?
        }
    };
    let (src_ref, sep) = src;
    let mut out = String::new();
    for dest in &dests {
        let mut from = json!({
            "kind": from_kind,
            "name": if from_kind == "DockerImage" {
                src_ref.item.clone()
            } else {
                format!("{}{sep}{}", src_ref.stream, src_ref.item)
            },
        });
        if src_ref.namespace != dest.namespace && from_kind != "DockerImage" {
            from["namespace"] = src_ref.namespace.clone().into();
        }
        let name = format!("{}:{}", dest.stream, dest.item);
        let mut tag = json!({
            "name": dest.item,
            "reference": args.reference,
            "importPolicy": {
                "insecure": args.insecure,
                "scheduled": args.scheduled,
                "importMode": import_mode,
            },
            "referencePolicy": {"type": policy},
            "from": from,
        });
        if from_kind == "DockerImage" {
            // Generation 0 marks the source as changed, so the tag is (re-)imported.
            tag["generation"] = 0.into();
        }
        let body = json!({
            "kind": "ImageStreamTag",
            "apiVersion": "image.openshift.io/v1",
            "metadata": {"name": name, "namespace": dest.namespace},
            "tag": tag,
        });
        client.put(
            &format!("namespaces/{}/imagestreamtags/{name}", dest.namespace),
            &body,
        )?;
        let shown_src = if from_kind == "DockerImage" {
            src_ref.item.clone()
        } else {
            display(&src_ref, sep, ns)
        };
        let shown_dest = display(dest, ':', ns);
        let line = if tracking {
            format!("Tag {shown_dest} set up to track {shown_src}.")
        } else if args.scheduled && dest.namespace != ns {
            format!("Tag {shown_dest} set to {shown_src} periodically.")
        } else if args.scheduled {
            format!("Tag {shown_dest} set to import {shown_src} periodically.")
        } else {
            format!("Tag {shown_dest} set to {shown_src}.")
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Without `--alias` oc freezes an ImageStreamTag source at its current image.
fn frozen(
    client: &Client,
    r: StreamRef,
    source: &str,
) -> Result<(&'static str, (StreamRef, char), bool), CliError> {
    let stream: Value = client.get(&format!(
        "namespaces/{}/imagestreams/{}",
        r.namespace, r.stream
    ))?;
    let top = stream["status"]["tags"]
        .as_array()
        .and_then(|tags| tags.iter().find(|t| t["tag"] == r.item.as_str()))
        .and_then(|t| t["items"].get(0));
    let not_pointing = || {
        err(format!(
            "{source:?} is not currently pointing to an image, cannot use it as the source of a tag"
        ))
    };
    let top = top.ok_or_else(not_pointing)?;
    match top["image"].as_str().filter(|i| !i.is_empty()) {
        Some(image) => Ok((
            "ImageStreamImage",
            (
                StreamRef {
                    item: image.to_string(),
                    ..r
                },
                '@',
            ),
            false,
        )),
        None => {
            let reference = top["dockerImageReference"]
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(not_pointing)?;
            Ok((
                "DockerImage",
                (
                    StreamRef {
                        item: reference.to_string(),
                        ..r
                    },
                    ':',
                ),
                false,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_kinds() {
        let k = |s| source_kind(None, s).unwrap();
        assert_eq!(k("app:v1"), SourceKind::Tag);
        assert_eq!(k("other/app:v1"), SourceKind::Tag);
        assert_eq!(k("app@sha256:abc"), SourceKind::Image);
        assert_eq!(k("quay.io/app:v1"), SourceKind::Docker);
        assert_eq!(k("localhost/app:v1"), SourceKind::Docker);
        assert_eq!(k("nginx"), SourceKind::Docker);
        assert_eq!(
            source_kind(Some("isimage"), "x").unwrap(),
            SourceKind::Image
        );
        assert!(source_kind(Some("bogus"), "x")
            .unwrap_err()
            .to_string()
            .contains("invalid source \"bogus\""));
    }

    #[test]
    fn references() {
        let r = StreamRef::parse("other/app:v1", ':', "ns").unwrap();
        assert_eq!((r.namespace.as_str(), r.item.as_str()), ("other", "v1"));
        let r = StreamRef::parse("app@sha256:ab", '@', "ns").unwrap();
        assert_eq!(
            (r.namespace.as_str(), r.stream.as_str(), r.item.as_str()),
            ("ns", "app", "sha256:ab")
        );
        assert!(StreamRef::parse("app", ':', "ns").is_none());
        assert_eq!(parse_dest("app", "ns").unwrap().item, "latest");
        assert_eq!(
            display(&parse_dest("o/app:x", "ns").unwrap(), ':', "ns"),
            "o/app:x"
        );
        assert_eq!(
            display(&parse_dest("app:x", "ns").unwrap(), ':', "ns"),
            "app:x"
        );
    }

    #[test]
    fn tag_names() {
        assert!(valid_tag("v1.0-rc_1"));
        assert!(valid_tag("_x"));
        assert!(!valid_tag(".x"));
        assert!(!valid_tag("-x"));
        assert!(!valid_tag(&"x".repeat(129)));
    }
}
