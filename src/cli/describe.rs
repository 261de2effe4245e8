//! `berth describe` (spec §7.1-7.2): oc's describers for image streams, image stream tags,
//! image stream images and images.
//!
//! The formatters take the object as the server's JSON plus the current time, so tests can pin
//! both. Like oc (`tabbedString` in oc's describe helpers), the text is laid out by Go's
//! `text/tabwriter` with minwidth 0, tabwidth 8, padding 1 and tabs as the padding character;
//! [`tabwrite`] reproduces that byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use clap::Args;
use serde_json::Value;

use super::printer::{ago, parse_time};
use super::{CliError, Client, Connection, Resource};

/// What oc prints for an empty value.
const NONE: &str = "<none>";

/// `berth describe`.
#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// is/NAME, istag/NAME:TAG, isimage/NAME@ID or image/ID; or the type and the name as two
    /// arguments (`is NAME`).
    pub resource: String,
    /// The object's name, when the type is given on its own.
    pub name: Option<String>,
}

/// Runs `berth describe` and returns what it prints on stdout.
pub fn run(conn: &Connection, args: &DescribeArgs) -> Result<String, CliError> {
    let webhook = match (args.resource.split_once('/'), &args.name) {
        (Some((kind, name)), None) if super::is_webhook(kind) => Some(name),
        (None, Some(name)) if super::is_webhook(&args.resource) => Some(name.as_str()),
        _ => None,
    };
    if let Some(name) = webhook {
        return super::webhook::describe(conn, name);
    }
    let (resource, name) = target(args)?;
    let client = Client::new(conn)?;
    let object = client.get(&resource.path(&conn.namespace, Some(&name)))?;
    let now = SystemTime::now();
    Ok(match resource {
        Resource::ImageStreams => image_stream(&object, now),
        Resource::ImageStreamTags | Resource::ImageStreamImages => {
            let image = &object["image"];
            image_details(image, text(&image["metadata"]["name"]), now)
        }
        Resource::Images => image_details(&object, "", now),
    })
}

/// The resource and name from `type/name` or `type name`.
fn target(args: &DescribeArgs) -> Result<(Resource, String), CliError> {
    let (kind, name) = match (args.resource.split_once('/'), &args.name) {
        (Some(_), Some(_)) => {
            return Err(CliError::Other(
                "there is no need to specify a resource type as a separate argument when \
                 passing arguments in resource/name form (e.g. 'berth describe is/NAME' \
                 instead of 'berth describe is is/NAME')"
                    .into(),
            ))
        }
        (Some((kind, name)), None) => (kind, name),
        (None, Some(name)) => (args.resource.as_str(), name.as_str()),
        (None, None) => {
            return Err(CliError::Other(
                "you must specify the name of the object to describe, e.g. is/NAME".into(),
            ))
        }
    };
    let resource = Resource::parse(kind)?;
    if name.contains('/') {
        return Err(CliError::Other(
            "arguments in resource/name form may not have more than one slash".into(),
        ));
    }
    if name.is_empty() {
        return Err(CliError::Other(
            "arguments in resource/name form must have a single resource and name".into(),
        ));
    }
    // As oc does: a tag of a stream is `latest` unless named.
    if resource == Resource::ImageStreamTags && !name.contains(':') {
        return Ok((resource, format!("{name}:latest")));
    }
    Ok((resource, name.to_string()))
}

// ---- image streams (§7.1)

/// `oc describe is/NAME`: DescribeImageStream.
pub fn image_stream(is: &Value, now: SystemTime) -> String {
    let mut out = String::new();
    object_meta(&mut out, &is["metadata"], now);
    let public = text(&is["status"]["publicDockerImageRepository"]);
    let repository = if public.is_empty() {
        text(&is["status"]["dockerImageRepository"])
    } else {
        public
    };
    field(&mut out, "Image Repository", repository);
    let local = is["spec"]["lookupPolicy"]["local"]
        .as_bool()
        .unwrap_or(false);
    field(&mut out, "Image Lookup", &format!("local={local}"));
    stream_tags(&mut out, is, now);
    tabwrite(&out)
}

/// oc's formatImageStreamTags: the counts, then one block per tag in priority order.
fn stream_tags(out: &mut String, is: &Value, now: SystemTime) {
    let status_tags = array(&is["status"]["tags"]);
    let spec_tags = array(&is["spec"]["tags"]);
    if status_tags.is_empty() && spec_tags.is_empty() {
        out.push_str("Tags:\t<none>\n");
        return;
    }

    // Distinct images in the history. Like oc, every reference-only entry counts once, together.
    let mut images = BTreeSet::new();
    for item in status_tags.iter().flat_map(|t| array(&t["items"])) {
        let (image, reference) = (text(&item["image"]), text(&item["dockerImageReference"]));
        if !image.is_empty() {
            images.insert(image);
        } else if !reference.is_empty() && !images.contains(reference) {
            images.insert("");
        }
    }

    let mut tags: Vec<String> = status_tags
        .iter()
        .map(|t| text(&t["tag"]).to_string())
        .collect();
    // Aliases (spec tags following another tag of this stream) fold into their target's heading.
    let mut aliases: BTreeSet<&str> = BTreeSet::new();
    let mut aliases_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for spec in spec_tags {
        let name = text(&spec["name"]);
        if let Some((target, true)) = follow_tag_reference(is, name) {
            aliases.insert(name);
            aliases_of.entry(target).or_default().push(name.to_string());
        }
        if status_tag(is, name).is_none() {
            tags.push(name.to_string());
        }
    }
    out.push_str(&format!(
        "Unique Images:\t{}\nTags:\t{}\n\n",
        images.len(),
        tags.len()
    ));

    crate::imagestream::tag_order::prioritize(&mut tags);
    let mut first = true;
    for tag in &tags {
        if aliases.contains(tag.as_str()) {
            continue;
        }
        if !first {
            out.push('\n');
        }
        first = false;
        tag_block(out, is, tag, aliases_of.get_mut(tag), now);
    }
}

fn tag_block(
    out: &mut String,
    is: &Value,
    tag: &str,
    aliases: Option<&mut Vec<String>>,
    now: SystemTime,
) {
    let status = status_tag(is, tag).unwrap_or(&Value::Null);
    let spec = spec_tag(is, tag);
    let from = spec.map(|s| &s["from"]).filter(|f| f.is_object());
    let stream_ns = text(&is["metadata"]["namespace"]);

    match aliases {
        Some(aliases) if !aliases.is_empty() => {
            crate::imagestream::tag_order::prioritize(aliases);
            out.push_str(&format!("{tag} ({})\n", aliases.join(", ")));
        }
        _ => out.push_str(&format!("{tag}\n")),
    }

    let mut insecure = false;
    let mut importing = false;
    match (spec, from) {
        (None, _) => out.push_str("  no spec tag\n"),
        (Some(_), None) => out.push_str("  tag without source image\n"),
        (Some(spec), Some(from)) => {
            let (kind, namespace) = (text(&from["kind"]), text(&from["namespace"]));
            let name = if !namespace.is_empty() && namespace != stream_ns {
                format!("{namespace}/{}", text(&from["name"]))
            } else {
                text(&from["name"]).to_string()
            };
            let reference = flag(&spec["reference"]);
            let scheduled = flag(&spec["importPolicy"]["scheduled"]);
            insecure = flag(&spec["importPolicy"]["insecure"]);
            // §3.2: a DockerImage tag is being imported while its spec generation is ahead of
            // what the importer has observed.
            importing = kind == "DockerImage"
                && !reference
                && spec["generation"]
                    .as_i64()
                    .is_some_and(|g| g > observed_generation(status));
            let line = match (kind, reference, scheduled) {
                ("ImageStreamTag", true, _) => format!("reference to {name}"),
                ("ImageStreamTag", false, true) => format!("updates automatically from {name}"),
                ("DockerImage", true, _) => format!("reference to registry {name}"),
                ("DockerImage", false, true) => {
                    format!("updates automatically from registry {name}")
                }
                ("ImageStreamImage", true, _) => format!("reference to image {name}"),
                ("ImageStreamTag" | "DockerImage" | "ImageStreamImage", _, _) => {
                    format!("tagged from {name}")
                }
                (kind, true, _) => format!("reference to {kind} {name}"),
                (kind, false, _) => format!("updates from {kind} {name}"),
            };
            out.push_str(&format!("  {line}\n"));
        }
    }
    if insecure {
        out.push_str("    will use insecure HTTPS or HTTP connections\n");
    }
    if spec.is_some_and(|s| s["referencePolicy"]["type"] == "Local") {
        out.push_str("    prefer registry pullthrough when referencing this tag\n");
    }
    out.push('\n');

    let annotation = |key: &str| spec.map(|s| text(&s["annotations"][key])).unwrap_or("");
    let list = |v: &str| v.split(',').collect::<Vec<_>>().join(", ");
    let mut extra = false;
    for (key, line) in [
        ("description", annotation("description").to_string()),
        ("tags", format!("Tags: {}", list(annotation("tags")))),
        (
            "supports",
            format!("Supports: {}", list(annotation("supports"))),
        ),
        (
            "sampleRepo",
            format!("Example Repo: {}", annotation("sampleRepo")),
        ),
    ] {
        if !annotation(key).is_empty() {
            out.push_str(&format!("  {line}\n"));
            extra = true;
        }
    }
    if extra {
        out.push('\n');
    }

    if importing {
        out.push_str("  ~ importing latest image ...\n");
    }
    for condition in array(&status["conditions"]) {
        if condition["type"] == "ImportSuccess" && condition["status"] == "False" {
            out.push_str(&format!(
                "  ! error: Import failed ({}): {}\n      {}\n",
                text(&condition["reason"]),
                text(&condition["message"]),
                age(text(&condition["lastTransitionTime"]), now)
            ));
        }
    }

    for (i, item) in array(&status["items"]).iter().enumerate() {
        let reference = text(&item["dockerImageReference"]);
        let marker = if i == 0 { "*" } else { " " };
        out.push_str(&format!("  {marker} {reference}\n"));
        let id = text(&item["image"]);
        // The image ID, unless the reference already names it.
        let by_id = reference.split_once('@').map(|(_, id)| id).unwrap_or("");
        let when = age(text(&item["created"]), now);
        if !id.is_empty() && !reference.is_empty() && by_id != id {
            out.push_str(&format!("      {when}\t{id}\n"));
        } else {
            out.push_str(&format!("      {when}\n"));
        }
    }
}

/// The generation the importer has seen for a tag: the newest item's, or a later one from the
/// first ImportSuccess condition (oc's latestObservedTagGeneration).
fn observed_generation(status: &Value) -> i64 {
    let mut generation = status["items"][0]["generation"]
        .as_i64()
        .unwrap_or(0)
        .max(0);
    if let Some(c) = array(&status["conditions"])
        .iter()
        .find(|c| c["type"] == "ImportSuccess")
    {
        generation = generation.max(c["generation"].as_i64().unwrap_or(0));
    }
    generation
}

/// Follows ImageStreamTag sources within the stream to the tag that ends the chain. `None`
/// for a cycle, a missing spec tag or another stream; the flag is whether any step was taken
/// (oc's FollowTagReference).
fn follow_tag_reference(is: &Value, tag: &str) -> Option<(String, bool)> {
    let stream = text(&is["metadata"]["name"]);
    let stream_ns = text(&is["metadata"]["namespace"]);
    let mut tag = tag.to_string();
    let mut seen = BTreeSet::new();
    let mut multiple = false;
    loop {
        if !seen.insert(tag.clone()) {
            return None;
        }
        let from = &spec_tag(is, &tag)?["from"];
        if !from.is_object() || from["kind"] != "ImageStreamTag" {
            return Some((tag, multiple));
        }
        let namespace = text(&from["namespace"]);
        if !namespace.is_empty() && namespace != stream_ns {
            return None;
        }
        let name = text(&from["name"]);
        tag = match name.split_once(':') {
            Some((other, _)) if other != stream => return None,
            Some((_, "")) => "latest".to_string(),
            Some((_, t)) => t.to_string(),
            None => name.to_string(),
        };
        multiple = true;
    }
}

fn spec_tag<'a>(is: &'a Value, tag: &str) -> Option<&'a Value> {
    // If a v1 array repeats a name, the last entry wins.
    array(&is["spec"]["tags"])
        .iter()
        .rev()
        .find(|t| t["name"] == tag)
}

fn status_tag<'a>(is: &'a Value, tag: &str) -> Option<&'a Value> {
    array(&is["status"]["tags"])
        .iter()
        .rev()
        .find(|t| t["tag"] == tag)
}

// ---- images (§7.2)

/// `oc describe istag/…`, `isimage/…` and `image/…`: DescribeImage. `image_name` heads the
/// output when not empty (oc passes the image's name for istags and isimages).
pub fn image_details(image: &Value, image_name: &str, now: SystemTime) -> String {
    let mut out = String::new();
    let meta = &image["metadata"];
    if !image_name.is_empty() {
        field(&mut out, "Image Name", image_name);
    }
    field(
        &mut out,
        "Docker Image",
        text(&image["dockerImageReference"]),
    );
    field(&mut out, "Name", text(&meta["name"]));
    if let Some(created) = meta["creationTimestamp"].as_str() {
        field(&mut out, "Created", &age(created, now));
    }
    if has_entries(&meta["labels"]) {
        map_field(&mut out, "Labels", &meta["labels"]);
    }
    if has_entries(&meta["annotations"]) {
        annotations(&mut out, &meta["annotations"]);
    }

    // Lists and artifacts have no metadata: every field is then empty.
    let docker = &image["dockerImageMetadata"];
    let size = human_size(docker["Size"].as_f64().unwrap_or(0.0));
    let layers = array(&image["dockerImageLayers"]);
    if layers.is_empty() {
        field(&mut out, "Layer Size", &size);
    } else {
        field(
            &mut out,
            "Image Size",
            &format!("{size} in {} layers", layers.len()),
        );
        let lines: Vec<String> = layers
            .iter()
            .map(|l| {
                let size = human_size(l["size"].as_f64().unwrap_or(0.0));
                format!("{size}\t{}", text(&l["name"]))
            })
            .collect();
        field(&mut out, "Layers", &lines.join("\n"));
    }
    for signature in array(&image["signatures"]) {
        field(&mut out, "Image Signatures", " ");
        field(&mut out, "\tName", text(&signature["metadata"]["name"]));
        field(&mut out, "\tType", text(&signature["type"]));
        match signature["issuedBy"].as_object() {
            None => field(&mut out, "\tStatus", "Unverified"),
            Some(issuer) => {
                field(&mut out, "\tStatus", "Verified");
                field(
                    &mut out,
                    "\tIssued By",
                    issuer.get("commonName").map(text).unwrap_or(""),
                );
            }
        }
    }
    let created = match docker["Created"].as_str() {
        Some(t) => age(t, now),
        None => NONE.to_string(),
    };
    field(&mut out, "Image Created", &created);
    field(&mut out, "Author", text(&docker["Author"]));
    field(&mut out, "Arch", text(&docker["Architecture"]));
    let manifests = array(&image["dockerImageManifests"]);
    if !manifests.is_empty() {
        let lines: Vec<String> = manifests
            .iter()
            .map(|m| {
                format!(
                    "{}/{}\t{}",
                    text(&m["os"]),
                    text(&m["architecture"]),
                    text(&m["digest"])
                )
            })
            .collect();
        field(&mut out, "Manifests", &lines.join("\n"));
    }
    container_config(&mut out, &docker["Config"]);
    tabwrite(&out)
}

/// oc's describeDockerImage over `dockerImageMetadata.Config`.
fn container_config(out: &mut String, config: &Value) {
    let joined = |key: &str| {
        array(&config[key])
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (entrypoint, command) = (joined("Entrypoint"), joined("Cmd"));
    if !entrypoint.is_empty() {
        field(out, "Entrypoint", &entrypoint);
    }
    if !command.is_empty() || entrypoint.is_empty() {
        field(out, "Command", &command);
    }
    field(out, "Working Dir", text(&config["WorkingDir"]));
    field(out, "User", text(&config["User"]));
    let keys = |key: &str| -> Vec<String> {
        let set: BTreeSet<&String> = config[key]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        set.into_iter().cloned().collect()
    };
    field(out, "Exposes Ports", &keys("ExposedPorts").join(", "));
    map_field(out, "Docker Labels", &config["Labels"]);
    for (i, env) in array(&config["Env"]).iter().enumerate() {
        if i == 0 {
            field(out, "Environment", text(env));
        } else {
            out.push_str(&format!("\t{}\n", text(env)));
        }
    }
    for (i, volume) in keys("Volumes").iter().enumerate() {
        if i == 0 {
            field(out, "Volumes", volume);
        } else {
            out.push_str(&format!("\t{volume}\n"));
        }
    }
}

// ---- shared pieces

/// oc's formatMeta: Name, Namespace, Created, Labels, Description and Annotations.
fn object_meta(out: &mut String, meta: &Value, now: SystemTime) {
    field(out, "Name", text(&meta["name"]));
    let namespace = text(&meta["namespace"]);
    if !namespace.is_empty() {
        field(out, "Namespace", namespace);
    }
    if let Some(created) = meta["creationTimestamp"].as_str() {
        field(out, "Created", &age(created, now));
    }
    map_field(out, "Labels", &meta["labels"]);
    annotations(out, &meta["annotations"]);
}

/// The `description` annotation on a line of its own, then the others.
fn annotations(out: &mut String, annotations: &Value) {
    let mut rest = annotations.as_object().cloned().unwrap_or_default();
    if let Some(description) = rest.remove("description") {
        if !text(&description).is_empty() {
            field(out, "Description", text(&description));
        }
    }
    map_field(out, "Annotations", &Value::Object(rest));
}

/// oc's formatString: `Label:\tvalue`, continuation lines of a multi-line value after a tab,
/// `<none>` for an empty value.
fn field(out: &mut String, label: &str, value: &str) {
    let value = if value.is_empty() { NONE } else { value };
    out.push_str(label);
    out.push(':');
    for line in value.split('\n') {
        out.push('\t');
        out.push_str(line);
        out.push('\n');
    }
}

/// oc's formatMapStringString: `key=value` pairs sorted by key, one a line.
fn map_field(out: &mut String, label: &str, map: &Value) {
    let pairs: BTreeMap<&String, &str> = map
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k, text(v))).collect())
        .unwrap_or_default();
    if pairs.is_empty() {
        field(out, label, "");
    }
    for (i, (key, value)) in pairs.into_iter().enumerate() {
        if i == 0 {
            field(out, label, &format!("{key}={value}"));
        } else {
            out.push_str(&format!("\t{key}={value}\n"));
        }
    }
}

/// `<duration> ago` for an RFC 3339 time; `<none>` when it is missing or unreadable.
fn age(timestamp: &str, now: SystemTime) -> String {
    parse_time(timestamp)
        .map(|t| ago(t, now))
        .unwrap_or_else(|| NONE.to_string())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn flag(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn has_entries(v: &Value) -> bool {
    v.as_object().is_some_and(|m| !m.is_empty())
}

/// go-units' HumanSize as the seed shows it: decimal units, four significant digits
/// (`251.2 MB`, `2.898 MB`, `512 B`).
pub fn human_size(bytes: f64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{} {}", format_g4(size), UNITS[unit])
}

/// Go's `%.4g`: four significant digits, trailing zeros dropped, exponent form only for
/// exponents below -4 or from 4 up.
fn format_g4(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return if x.is_nan() { "NaN".into() } else { "0".into() };
    }
    let sci = format!("{:.3e}", x.abs()); // d.ddde<exp>, correctly rounded
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let (nd, dp) = (digits.len() as i32, exp + 1);
    let sign = if x < 0.0 { "-" } else { "" };
    let mut eprec = 4;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if exp < -4 || exp >= eprec {
        let fraction = if nd > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{}{fraction}e{esign}{:02}", &digits[..1], exp.abs());
    }
    let body = if dp <= 0 {
        format!("0.{}{digits}", "0".repeat(-dp as usize))
    } else if dp >= nd {
        format!("{digits}{}", "0".repeat((dp - nd) as usize))
    } else {
        format!("{}.{}", &digits[..dp as usize], &digits[dp as usize..])
    };
    format!("{sign}{body}")
}

// ---- Go's text/tabwriter, padding with tabs

/// Lays `text` out as Go's `tabwriter.NewWriter(w, 0, 8, 1, '\t', 0)` does: tab-terminated
/// cells of consecutive lines form a column; each cell is padded with tabs to the column's
/// widest cell plus one, rounded up to a multiple of 8. A line without a tab ends every column;
/// the text after a line's last tab is not part of any column.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut widths = Vec::new();
    format_block(&lines, 0, lines.len(), &mut widths, &mut out);
    out
}

const TAB_WIDTH: usize = 8;

/// Go's `Writer.format`: finds the column blocks at depth `widths.len()` in `line0..line1`.
fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        // A cell in this column: print the lines before the block, then size the block.
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = 0;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + 1);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(
    lines: &[Vec<&str>],
    line0: usize,
    line1: usize,
    widths: &[usize],
    out: &mut String,
) {
    for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(&width) = widths.get(j) {
                let cell_width = width.div_ceil(TAB_WIDTH) * TAB_WIDTH;
                let padding = cell_width - cell.chars().count();
                out.push_str(&"\t".repeat(padding.div_ceil(TAB_WIDTH)));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    const ID: &str = "sha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25";

    fn now() -> SystemTime {
        parse_time("2017-10-02T17:10:00Z").unwrap()
    }

    /// RFC 3339 for `now() - seconds`.
    fn before(seconds: u64) -> String {
        humantime::format_rfc3339_seconds(now() - Duration::from_secs(seconds)).to_string()
    }

    fn python_stream(created: u64, tags: Value, status: Value) -> Value {
        json!({
            "kind": "ImageStream",
            "metadata": {"name": "python", "namespace": "default",
                "creationTimestamp": before(created),
                "annotations": {"openshift.io/image.dockerRepositoryCheck": "2017-10-02T17:05:11Z"}},
            "spec": {"lookupPolicy": {"local": false}, "tags": tags},
            "status": {"dockerImageRepository": "docker-registry.default.svc:5000/default/python",
                "tags": status}
        })
    }

    fn item(created: u64) -> Value {
        json!({"created": before(created), "image": ID, "generation": 2,
            "dockerImageReference": format!("centos/python-35-centos7@{ID}")})
    }

    /// The seed's first `oc describe is/python`, with `Image Repository:` for the older
    /// `Docker Pull Spec:` (same width, so the same tabs).
    #[test]
    fn seed_stream_with_one_tag() {
        let is = python_stream(
            90,
            json!([{"name": "3.5", "annotations": null, "generation": 2,
                "from": {"kind": "DockerImage", "name": "centos/python-35-centos7"},
                "importPolicy": {}, "referencePolicy": {"type": "Source"}}]),
            json!([{"tag": "3.5", "items": [item(90)]}]),
        );
        let expected = "\
Name:\t\t\tpython
Namespace:\t\tdefault
Created:\t\tAbout a minute ago
Labels:\t\t\t<none>
Annotations:\t\topenshift.io/image.dockerRepositoryCheck=2017-10-02T17:05:11Z
Image Repository:\tdocker-registry.default.svc:5000/default/python
Image Lookup:\t\tlocal=false
Unique Images:\t\t1
Tags:\t\t\t1

3.5
  tagged from centos/python-35-centos7

  * centos/python-35-centos7@sha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25
      About a minute ago
";
        assert_eq!(image_stream(&is, now()), expected);
    }

    /// The seed's `oc describe is/python` after `oc tag python:3.5 python:latest`.
    #[test]
    fn seed_stream_after_tagging_latest() {
        let is = python_stream(
            300,
            json!([
                {"name": "3.5", "generation": 2,
                    "from": {"kind": "DockerImage", "name": "centos/python-35-centos7"},
                    "referencePolicy": {"type": "Source"}},
                {"name": "latest", "generation": 3,
                    "from": {"kind": "ImageStreamImage", "name": format!("python@{ID}")},
                    "referencePolicy": {"type": "Source"}}
            ]),
            json!([
                {"tag": "3.5", "items": [item(300)]},
                {"tag": "latest", "items": [item(70)]}
            ]),
        );
        let expected = "\
Name:\t\t\tpython
Namespace:\t\tdefault
Created:\t\t5 minutes ago
Labels:\t\t\t<none>
Annotations:\t\topenshift.io/image.dockerRepositoryCheck=2017-10-02T17:05:11Z
Image Repository:\tdocker-registry.default.svc:5000/default/python
Image Lookup:\t\tlocal=false
Unique Images:\t\t1
Tags:\t\t\t2

latest
  tagged from python@sha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25

  * centos/python-35-centos7@sha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25
      About a minute ago

3.5
  tagged from centos/python-35-centos7

  * centos/python-35-centos7@sha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25
      5 minutes ago
";
        assert_eq!(image_stream(&is, now()), expected);
    }

    /// The seed's `oc describe istag/python:latest`. The seed predates the per-layer size
    /// lines (`Image Size: … (first layer …, last binary layer …)`); every other line it shows
    /// is reproduced byte for byte.
    #[test]
    fn seed_image_stream_tag() {
        let istag = json!({
            "kind": "ImageStreamTag",
            "metadata": {"name": "python:latest", "namespace": "default"},
            "image": {
                "metadata": {"name": ID, "creationTimestamp": before(150)},
                "dockerImageReference": format!("centos/python-35-centos7@{ID}"),
                "dockerImageMetadata": {
                    "kind": "DockerImage", "apiVersion": "1.0",
                    "Created": before(15 * 86400), "Architecture": "amd64", "Size": 251_200_000,
                    "Config": {"Entrypoint": ["container-entrypoint"],
                        "Cmd": ["/bin/sh", "-c", "$STI_SCRIPTS_PATH/usage"],
                        "WorkingDir": "/opt/app-root/src", "User": "1001",
                        "ExposedPorts": {"8080/tcp": {}}, "Labels": {"build-date": "20170801"}}
                },
                "dockerImageLayers": [
                    {"name": "sha256:a", "size": 2_898_000, "mediaType": "m"},
                    {"name": "sha256:b", "size": 176_042_000, "mediaType": "m"},
                    {"name": "sha256:c", "size": 72_260_000, "mediaType": "m"}
                ]
            }
        });
        let image = &istag["image"];
        let out = image_details(image, text(&image["metadata"]["name"]), now());
        let expected = "\
Image Name:\tsha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25
Docker Image:\tcentos/python-35-centos7@sha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25
Name:\t\tsha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25
Created:\t2 minutes ago
Image Size:\t251.2 MB in 3 layers
Layers:\t\t2.898 MB\tsha256:a
\t\t176 MB\t\tsha256:b
\t\t72.26 MB\tsha256:c
Image Created:\t2 weeks ago
Author:\t\t<none>
Arch:\t\tamd64
Entrypoint:\tcontainer-entrypoint
Command:\t/bin/sh -c $STI_SCRIPTS_PATH/usage
Working Dir:\t/opt/app-root/src
User:\t\t1001
Exposes Ports:\t8080/tcp
Docker Labels:\tbuild-date=20170801
";
        assert_eq!(out, expected);
        let seed = "\
Image Name:\tsha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25
Docker Image:\tcentos/python-35-centos7@sha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25
Name:\t\tsha256:49c18358df82f4577386404991c51a9559f243e0b1bdc366df25
Created:\t2 minutes ago
Image Created:\t2 weeks ago
Author:\t\t<none>
Arch:\t\tamd64
Entrypoint:\tcontainer-entrypoint
Command:\t/bin/sh -c $STI_SCRIPTS_PATH/usage
Working Dir:\t/opt/app-root/src
User:\t\t1001
Exposes Ports:\t8080/tcp
Docker Labels:\tbuild-date=20170801";
        let mut lines = out.lines();
        for line in seed.lines() {
            assert!(
                lines.any(|l| l == line),
                "missing or out of order: {line:?}"
            );
        }
    }

    #[test]
    fn stream_without_tags() {
        let is = json!({"metadata": {"name": "e", "namespace": "ns",
            "labels": {"app": "x", "tier": "web"},
            "annotations": {"description": "An empty stream", "a": "1"}},
            "spec": {"lookupPolicy": {"local": true}},
            "status": {"dockerImageRepository": "h/ns/e", "publicDockerImageRepository": "p/ns/e"}});
        let expected = "\
Name:\t\t\te
Namespace:\t\tns
Labels:\t\t\tapp=x
\t\t\ttier=web
Description:\t\tAn empty stream
Annotations:\t\ta=1
Image Repository:\tp/ns/e
Image Lookup:\t\tlocal=true
Tags:\t\t\t<none>
";
        assert_eq!(image_stream(&is, now()), expected);
    }

    #[test]
    fn tag_sources_aliases_imports_and_history() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let is = json!({
            "metadata": {"name": "app", "namespace": "ns", "creationTimestamp": before(3600)},
            "spec": {"tags": [
                {"name": "1.0", "generation": 1, "reference": true,
                    "from": {"kind": "DockerImage", "name": "quay.io/x/app:1.0"}},
                {"name": "1.1", "generation": 5,
                    "from": {"kind": "DockerImage", "name": "quay.io/x/app:1.1"},
                    "importPolicy": {"scheduled": true, "insecure": true},
                    "referencePolicy": {"type": "Local"},
                    "annotations": {"description": "App 1.1", "tags": "builder,app",
                        "supports": "app:1.1", "sampleRepo": "https://example.com/app.git"}},
                {"name": "edge", "generation": 2,
                    "from": {"kind": "ImageStreamTag", "name": "app:latest"}},
                {"name": "latest", "generation": 2,
                    "from": {"kind": "DockerImage", "name": "quay.io/x/app:latest"},
                    "referencePolicy": {"type": "Source"}},
                {"name": "nosource", "generation": 1},
                {"name": "pinned", "generation": 1, "reference": true,
                    "from": {"kind": "ImageStreamImage", "name": format!("app@{}", d('a'))}},
                {"name": "ref", "generation": 1, "reference": true,
                    "from": {"kind": "ImageStreamTag", "name": "missing"}},
                {"name": "stable", "generation": 2,
                    "from": {"kind": "ImageStreamTag", "name": "edge"}},
                {"name": "v2", "generation": 1,
                    "from": {"kind": "ImageStreamTag", "name": "other:v1", "namespace": "base"}},
                {"name": "v3", "generation": 1,
                    "from": {"kind": "ImageStreamTag", "name": "1.1", "namespace": "ns"}}
            ]},
            "status": {"dockerImageRepository": "h/ns/app", "tags": [
                {"tag": "1.0", "items": [{"created": before(3600),
                    "dockerImageReference": "quay.io/x/app:1.0", "image": "", "generation": 1}]},
                {"tag": "1.1", "items": [{"created": before(600),
                    "dockerImageReference": format!("quay.io/x/app@{}", d('b')),
                    "image": d('b'), "generation": 3}],
                    "conditions": [{"type": "ImportSuccess", "status": "False",
                        "reason": "NotFound", "message": "not found", "generation": 4,
                        "lastTransitionTime": before(120)}]},
                {"tag": "latest", "items": [
                    {"created": before(60), "dockerImageReference": format!("quay.io/x/app@{}", d('a')),
                        "image": d('a'), "generation": 2},
                    {"created": before(86400 * 3), "dockerImageReference": "quay.io/x/app:old",
                        "image": d('c'), "generation": 1}]},
                {"tag": "pushed", "items": [{"created": before(5),
                    "dockerImageReference": format!("h/ns/app@{}", d('a')),
                    "image": d('a'), "generation": 1}]}
            ]}
        });
        let out = image_stream(&is, now());
        let expected = format!(
            "\
Name:\t\t\tapp
Namespace:\t\tns
Created:\t\tAbout an hour ago
Labels:\t\t\t<none>
Annotations:\t\t<none>
Image Repository:\th/ns/app
Image Lookup:\t\tlocal=false
Unique Images:\t\t4
Tags:\t\t\t11

latest (edge, stable)
  tagged from quay.io/x/app:latest

  * quay.io/x/app@{a}
      About a minute ago
    quay.io/x/app:old
      3 days ago\t{c}

1.1 (v3)
  updates automatically from registry quay.io/x/app:1.1
    will use insecure HTTPS or HTTP connections
    prefer registry pullthrough when referencing this tag

  App 1.1
  Tags: builder, app
  Supports: app:1.1
  Example Repo: https://example.com/app.git

  ~ importing latest image ...
  ! error: Import failed (NotFound): not found
      2 minutes ago
  * quay.io/x/app@{b}
      10 minutes ago

1.0
  reference to registry quay.io/x/app:1.0

  * quay.io/x/app:1.0
      About an hour ago

nosource
  tag without source image


pinned
  reference to image app@{a}


pushed
  no spec tag

  * h/ns/app@{a}
      5 seconds ago

ref
  reference to missing


v2
  tagged from base/other:v1

",
            a = d('a'),
            b = d('b'),
            c = d('c')
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn index_images_list_their_manifests() {
        let image = json!({
            "metadata": {"name": "sha256:list", "annotations": {"openshift.io/image.managed": "true"}},
            "dockerImageReference": "h/ns/multi@sha256:list",
            "dockerImageManifests": [
                {"digest": "sha256:amd", "os": "linux", "architecture": "amd64"},
                {"digest": "sha256:arm", "os": "linux", "architecture": "arm64", "variant": "v8"}
            ]
        });
        let expected = "\
Image Name:\tsha256:list
Docker Image:\th/ns/multi@sha256:list
Name:\t\tsha256:list
Annotations:\topenshift.io/image.managed=true
Layer Size:\t0 B
Image Created:\t<none>
Author:\t\t<none>
Arch:\t\t<none>
Manifests:\tlinux/amd64\tsha256:amd
\t\tlinux/arm64\tsha256:arm
Command:\t<none>
Working Dir:\t<none>
User:\t\t<none>
Exposes Ports:\t<none>
Docker Labels:\t<none>
";
        assert_eq!(image_details(&image, "sha256:list", now()), expected);
    }

    #[test]
    fn image_environment_volumes_and_signatures() {
        let image = json!({
            "metadata": {"name": "sha256:x", "labels": {"l": "1"}},
            "dockerImageReference": "r@sha256:x",
            "dockerImageMetadata": {"Size": 1500, "Author": "me",
                "Config": {"Cmd": ["run"], "Env": ["A=1", "B=2"],
                    "Volumes": {"/b": {}, "/a": {}}, "ExposedPorts": {"9090/tcp": {}, "80/tcp": {}}}},
            "dockerImageLayers": [{"name": "sha256:l", "size": 1500}],
            "signatures": [{"metadata": {"name": "sig"}, "type": "atomic"}]
        });
        let expected = "\
Docker Image:\t\tr@sha256:x
Name:\t\t\tsha256:x
Labels:\t\t\tl=1
Image Size:\t\t1.5 kB in 1 layers
Layers:\t\t\t1.5 kB\tsha256:l
Image Signatures:\t 
\t\t\tName:\tsig
\t\t\tType:\tatomic
\t\t\tStatus:\tUnverified
Image Created:\t\t<none>
Author:\t\t\tme
Arch:\t\t\t<none>
Command:\t\trun
Working Dir:\t\t<none>
User:\t\t\t<none>
Exposes Ports:\t\t80/tcp, 9090/tcp
Docker Labels:\t\t<none>
Environment:\t\tA=1
\t\t\tB=2
Volumes:\t\t/a
\t\t\t/b
";
        assert_eq!(image_details(&image, "", now()), expected);
    }

    #[test]
    fn tabwriter_matches_go() {
        // Columns end at a line without tabs; the last cell of a line is never padded.
        assert_eq!(
            tabwrite("a:\tx\nlonger label:\ty\n\nb:\tz\n"),
            "a:\t\tx\nlonger label:\ty\n\nb:\tz\n"
        );
        // A second column sized by its own block; empty leading cells are padded too.
        assert_eq!(
            tabwrite("L:\t1\tx\n\t12345678\ty\nMM:\tz\n"),
            "L:\t1\t\tx\n\t12345678\ty\nMM:\tz\n"
        );
        assert_eq!(tabwrite("no tabs\n"), "no tabs\n");
        assert_eq!(tabwrite(""), "");
    }

    #[test]
    fn human_sizes_like_go_units() {
        for (bytes, s) in [
            (0.0, "0 B"),
            (512.0, "512 B"),
            (999.0, "999 B"),
            (1000.0, "1 kB"),
            (1500.0, "1.5 kB"),
            (100_250.0, "100.2 kB"),
            (999_999.0, "1000 kB"),
            (2_898_000.0, "2.898 MB"),
            (72_264_000.0, "72.26 MB"),
            (251_200_000.0, "251.2 MB"),
            (1e12, "1 TB"),
            (1.2e28, "1.2e+04 YB"),
        ] {
            assert_eq!(human_size(bytes), s, "{bytes}");
        }
    }

    #[test]
    fn arguments() {
        let args = |r: &str, n: Option<&str>| DescribeArgs {
            resource: r.into(),
            name: n.map(Into::into),
        };
        let (r, n) = target(&args("istag/app:v1", None)).unwrap();
        assert_eq!((r, n.as_str()), (Resource::ImageStreamTags, "app:v1"));
        let (r, n) = target(&args("imagestream", Some("app"))).unwrap();
        assert_eq!((r, n.as_str()), (Resource::ImageStreams, "app"));
        let (r, _) = target(&args("imagestreamimage/app@sha256:1", None)).unwrap();
        assert_eq!(r, Resource::ImageStreamImages);
        assert!(target(&args("is/app", Some("x"))).is_err());
        assert!(target(&args("is", None)).is_err());
        assert!(target(&args("is/", None)).is_err());
        assert!(target(&args("is/a/b", None)).is_err());
        assert!(target(&args("pods/x", None)).is_err());
    }
}
