//! `berth get`: `oc get` for the image resources. Tables as oc prints them (spec §7.3), or
//! `-o json|yaml|name|wide|jsonpath=…|custom-columns=…`; `TYPE/NAME`, `-A`, `-l` and `-w`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, SystemTime};

use clap::Args;
use serde_json::{json, Value};

use super::{jsonpath, printer, CliError, Client, Connection, Resource};

/// `berth get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// is (imagestream), istag (imagestreamtag), isimage (imagestreamimage) or images; or
    /// TYPE/NAME.
    pub resource: String,
    /// Object names (`stream`, `stream:tag`, `stream@id` or `sha256:...`); all if omitted.
    pub names: Vec<String>,
    /// Output format: json, yaml, name, wide, jsonpath=TEMPLATE or custom-columns=SPEC.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// List the objects of every namespace the caller may view.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Only objects whose labels match (`app=web,tier!=db`, `app in (a,b)`, `!app`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// After the list, print each change as it arrives (until interrupted).
    #[arg(short = 'w', long)]
    pub watch: bool,
}

enum Output {
    Table { wide: bool },
    Json,
    Yaml,
    Name,
    JsonPath(jsonpath::Template),
    CustomColumns(Vec<(String, jsonpath::Template)>),
}

impl Output {
    fn parse(o: Option<&str>) -> Result<Output, CliError> {
        Ok(match o {
            None | Some("") => Output::Table { wide: false },
            Some("wide") => Output::Table { wide: true },
            Some("json") => Output::Json,
            Some("yaml") => Output::Yaml,
            Some("name") => Output::Name,
            Some(o) => {
                if let Some(t) = o.strip_prefix("jsonpath=") {
                    Output::JsonPath(
                        jsonpath::Template::parse(t).map_err(|e| {
                            CliError::Other(format!("error parsing jsonpath {t}, {e}"))
                        })?,
                    )
                } else if let Some(spec) = o.strip_prefix("custom-columns=") {
                    Output::CustomColumns(custom_columns(spec)?)
                } else {
                    return Err(CliError::Other(format!(
                        "unable to match a printer suitable for the output format \"{o}\", \
                         allowed formats are: custom-columns,json,jsonpath,name,wide,yaml"
                    )));
                }
            }
        })
    }
}

/// `HEADER:.json.path,...` as kubectl's custom-columns reads it.
fn custom_columns(spec: &str) -> Result<Vec<(String, jsonpath::Template)>, CliError> {
    if spec.is_empty() {
        return Err(CliError::Other(
            "custom-columns format specified but no custom columns given".into(),
        ));
    }
    spec.split(',')
        .map(|column| {
            let Some((header, path)) = column.split_once(':') else {
                return Err(CliError::Other(format!(
                    "unexpected custom-columns spec: {column}, expected <header>:<json-path-expr>"
                )));
            };
            // kubectl accepts `.a.b`, `{.a.b}` and `a.b`.
            let path = path.trim_start_matches('{').trim_end_matches('}');
            let path = if path.starts_with('.') || path.starts_with('$') || path.starts_with('@') {
                path.to_string()
            } else {
                format!(".{path}")
            };
            let template = jsonpath::Template::parse(&format!("{{{path}}}"))
                .map_err(|e| CliError::Other(format!("error parsing jsonpath {path}, {e}")))?;
            Ok((header.to_string(), template))
        })
        .collect()
}

/// The type and names from `TYPE NAME...` or `TYPE/NAME`.
fn targets(args: &GetArgs) -> Result<(Resource, Vec<String>), CliError> {
    match args.resource.split_once('/') {
        Some(_) if !args.names.is_empty() => Err(CliError::Other(
            "there is no need to specify a resource type as a separate argument when passing \
             arguments in resource/name form (e.g. 'berth get resource/<resource_name>' \
             instead of 'berth get resource resource/<resource_name>')"
                .into(),
        )),
        Some((kind, name)) => {
            if name.is_empty() || name.contains('/') {
                return Err(CliError::Other(
                    "arguments in resource/name form must have a single resource and name".into(),
                ));
            }
            Ok((Resource::parse(kind)?, vec![name.to_string()]))
        }
        None => Ok((Resource::parse(&args.resource)?, args.names.clone())),
    }
}

/// Runs `berth get` and returns what it prints on stdout (a watch prints as it goes).
pub fn run(conn: &Connection, args: &GetArgs) -> Result<String, CliError> {
    let webhook_name = match args.resource.split_once('/') {
        Some((kind, name)) if super::is_webhook(kind) => Some(Some(name)),
        None if super::is_webhook(&args.resource) => Some(args.names.first().map(String::as_str)),
        _ => None,
    };
    if let Some(name) = webhook_name {
        return super::webhook::get(conn, name, args.output.as_deref());
    }
    let (resource, names) = targets(args)?;
    let output = Output::parse(args.output.as_deref())?;
    if !names.is_empty() && (args.selector.is_some() || args.all_namespaces) {
        return Err(CliError::Other(if args.all_namespaces {
            "a resource cannot be retrieved by name across all namespaces".into()
        } else {
            "selectors and the all flag cannot be used when passing resource/name arguments".into()
        }));
    }
    let client = Client::new(conn)?;
    let ns = &conn.namespace;
    let all = args.all_namespaces && resource.namespaced();
    let (objects, single, rv) = if names.is_empty() {
        if resource == Resource::ImageStreamImages {
            return Err(CliError::Other(
                "imagestreamimages can only be retrieved by name (stream@id)".into(),
            ));
        }
        let list = client.get(&list_path(resource, (!all).then_some(ns), args, false, ""))?;
        let mut items = list["items"].as_array().cloned().unwrap_or_default();
        for item in &mut items {
            fill_type(item, resource);
        }
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (items, false, rv)
    } else {
        let mut objects = Vec::new();
        for name in &names {
            let mut obj = client.get(&resource.path(ns, Some(name)))?;
            fill_type(&mut obj, resource);
            objects.push(obj);
        }
        (objects, names.len() == 1, String::new())
    };
    let empty = objects.is_empty();
    if empty && matches!(output, Output::Table { .. } | Output::Name) {
        if !resource.namespaced() || all {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {ns} namespace.");
        }
    }
    let out = if empty && !single && matches!(output, Output::Table { .. } | Output::Name) {
        String::new()
    } else {
        render(resource, &objects, single, &output, all, true)
    };
    if !args.watch {
        return Ok(out);
    }
    print_now(&out)?;
    watch(
        &client,
        resource,
        ns,
        all,
        args,
        &output,
        &objects,
        &rv,
        !out.is_empty(),
    )?;
    Ok(String::new())
}

/// The collection's path, with the selector (and for a watch, where it starts).
fn list_path(
    resource: Resource,
    ns: Option<&str>,
    args: &GetArgs,
    watch: bool,
    rv: &str,
) -> String {
    let mut path = match ns {
        Some(ns) => resource.path(ns, None),
        None => resource.plural().to_string(),
    };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(s) = &args.selector {
        query.append_pair("labelSelector", s);
    }
    if watch {
        query.append_pair("watch", "true");
        if !rv.is_empty() {
            query.append_pair("resourceVersion", rv);
        }
    }
    let query = query.finish();
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    path
}

fn print_now(s: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| CliError::Other(format!("writing the output: {e}")))
}

/// `-w`: follows the list with the changes after it. Image stream tags have no watch of
/// their own (as in OpenShift): their streams are watched, and a tag is printed when its
/// current image changes.
#[allow(clippy::too_many_arguments)]
fn watch(
    client: &Client,
    resource: Resource,
    ns: &str,
    all: bool,
    args: &GetArgs,
    output: &Output,
    listed: &[Value],
    rv: &str,
    mut header_printed: bool,
) -> Result<(), CliError> {
    let watched = match resource {
        Resource::ImageStreams | Resource::Images => resource,
        Resource::ImageStreamTags => Resource::ImageStreams,
        Resource::ImageStreamImages => {
            return Err(CliError::Other(
                "watch is only supported on individual resources and resource collections, \
                 not on imagestreamimages"
                    .into(),
            ))
        }
    };
    // For istags: the image each tag shows now, so only changes print.
    let mut tops: BTreeMap<String, String> = listed
        .iter()
        .map(|t| {
            (
                istag_key(t),
                text(&t["image"]["metadata"]["name"]).to_string(),
            )
        })
        .collect();
    let ns = (!all).then_some(ns);
    let response = client.stream(&list_path(watched, ns, args, true, rv))?;
    for line in std::io::BufReader::new(response).lines() {
        let line = line.map_err(|e| CliError::Other(format!("reading the watch: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(&line)
            .map_err(|e| CliError::Other(format!("an invalid watch event: {e}")))?;
        let kind = text(&event["type"]);
        let mut object = event["object"].clone();
        match kind {
            "ERROR" => {
                return Err(CliError::Server {
                    reason: text(&object["reason"]).to_string(),
                    message: text(&object["message"]).to_string(),
                })
            }
            "BOOKMARK" => continue,
            _ => {}
        }
        fill_type(&mut object, watched);
        let objects = if resource == Resource::ImageStreamTags {
            let mut changed = Vec::new();
            for t in istags_of(&object) {
                let image = text(&t["image"]["metadata"]["name"]).to_string();
                if tops.insert(istag_key(&t), image.clone()).as_deref() != Some(&image) {
                    changed.push(t);
                }
            }
            changed
        } else {
            vec![object]
        };
        if objects.is_empty() {
            continue;
        }
        let out = render(resource, &objects, false, output, all, !header_printed);
        header_printed = true;
        print_now(&out)?;
    }
    Ok(())
}

fn istag_key(t: &Value) -> String {
    format!(
        "{}/{}",
        text(&t["metadata"]["namespace"]),
        text(&t["metadata"]["name"])
    )
}

/// The image stream tags a stream's status shows, as an istag list presents them.
fn istags_of(stream: &Value) -> Vec<Value> {
    let name = text(&stream["metadata"]["name"]);
    let ns = text(&stream["metadata"]["namespace"]);
    stream["status"]["tags"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| {
            let top = t["items"].get(0)?;
            Some(json!({
                "kind": "ImageStreamTag",
                "apiVersion": "image.openshift.io/v1",
                "metadata": {"name": format!("{name}:{}", text(&t["tag"])), "namespace": ns,
                             "creationTimestamp": top["created"]},
                "image": {"metadata": {"name": top["image"]},
                          "dockerImageReference": top["dockerImageReference"]},
            }))
        })
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// List items come without `kind`/`apiVersion`; kubectl restores them before printing.
fn fill_type(obj: &mut Value, resource: Resource) {
    if let Value::Object(m) = obj {
        m.entry("kind").or_insert_with(|| resource.kind().into());
        m.entry("apiVersion")
            .or_insert_with(|| "image.openshift.io/v1".into());
    }
}

/// `objects` in `output`; json, yaml and jsonpath see one object, or a v1 List of several, as
/// kubectl does. `header`: whether a table starts with its header line.
fn render(
    resource: Resource,
    objects: &[Value],
    single: bool,
    output: &Output,
    namespaces: bool,
    header: bool,
) -> String {
    let document = || {
        if single {
            objects[0].clone()
        } else {
            json!({"apiVersion": "v1", "items": objects, "kind": "List",
                   "metadata": {"resourceVersion": ""}})
        }
    };
    match output {
        Output::Table { wide } => {
            let (mut head, mut rows) = table(resource, objects, *wide);
            if namespaces {
                head.insert(0, "NAMESPACE".into());
                for (row, o) in rows.iter_mut().zip(objects) {
                    row.insert(0, text(&o["metadata"]["namespace"]).to_string());
                }
            }
            lay_out(&head, &rows, header)
        }
        Output::CustomColumns(columns) => {
            let head: Vec<String> = columns.iter().map(|c| c.0.clone()).collect();
            let rows: Vec<Vec<String>> = objects
                .iter()
                .map(|o| {
                    columns
                        .iter()
                        .map(|(_, t)| {
                            let values = t.values(o);
                            if values.is_empty() {
                                "<none>".to_string()
                            } else {
                                values.join(",")
                            }
                        })
                        .collect()
                })
                .collect();
            lay_out(&head, &rows, header)
        }
        Output::Json => super::pretty_json(&document()),
        Output::Yaml => printer::yaml(&document()),
        Output::Name => objects
            .iter()
            .map(|o| {
                format!(
                    "{}.image.openshift.io/{}\n",
                    resource.kind().to_lowercase(),
                    text(&o["metadata"]["name"])
                )
            })
            .collect(),
        Output::JsonPath(t) => t.render(&document()),
    }
}

fn lay_out(head: &[String], rows: &[Vec<String>], header: bool) -> String {
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let out = printer::table(&head, rows);
    if header {
        out
    } else {
        out.split_once('\n').map(|x| x.1).unwrap_or("").to_string()
    }
}

/// oc's columns for `resource` (the same the server's Table format serves).
pub fn table(resource: Resource, objects: &[Value], wide: bool) -> (Vec<String>, Vec<Vec<String>>) {
    let now = SystemTime::now();
    let names = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match resource {
        Resource::ImageStreams => (
            names(&["NAME", "IMAGE REPOSITORY", "TAGS", "UPDATED"]),
            objects
                .iter()
                .map(|o| printer::stream_row(o, now))
                .collect(),
        ),
        Resource::ImageStreamTags => {
            let mut header = names(&["NAME", "IMAGE REFERENCE", "UPDATED"]);
            if wide {
                header.push("IMAGE NAME".into());
            }
            (
                header,
                objects
                    .iter()
                    .map(|o| printer::istag_row(o, now, wide))
                    .collect(),
            )
        }
        Resource::ImageStreamImages | Resource::Images => (
            names(&["NAME", "IMAGE REFERENCE"]),
            objects
                .iter()
                .map(|o| {
                    if resource == Resource::Images {
                        printer::image_row(o)
                    } else {
                        vec![
                            text(&o["metadata"]["name"]).to_string(),
                            text(&o["image"]["dockerImageReference"]).to_string(),
                        ]
                    }
                })
                .collect(),
        ),
    }
}

/// How long a watch may stay open (the server ends it earlier).
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats() {
        assert!(Output::parse(Some("xml")).is_err());
        assert!(Output::parse(Some("jsonpath={.a")).is_err());
        assert!(matches!(
            Output::parse(Some("jsonpath={.a}")),
            Ok(Output::JsonPath(_))
        ));
        assert!(Output::parse(Some("custom-columns=")).is_err());
        assert!(Output::parse(Some("custom-columns=NAME")).is_err());
    }

    #[test]
    fn custom_columns_join_and_default() {
        let Output::CustomColumns(c) = Output::parse(Some(
            "custom-columns=NAME:.metadata.name,TAGS:.status.tags[*].tag,REPO:status.publicDockerImageRepository",
        ))
        .unwrap() else {
            panic!("custom columns")
        };
        let o = json!({"metadata": {"name": "app"},
            "status": {"tags": [{"tag": "a"}, {"tag": "b"}]}});
        let out = render(
            Resource::ImageStreams,
            &[o],
            false,
            &Output::CustomColumns(c),
            false,
            true,
        );
        assert_eq!(out, "NAME   TAGS   REPO\napp    a,b    <none>\n");
    }

    #[test]
    fn type_slash_name() {
        let args = |r: &str, names: &[&str]| GetArgs {
            resource: r.into(),
            names: names.iter().map(|s| s.to_string()).collect(),
            output: None,
            all_namespaces: false,
            selector: None,
            watch: false,
        };
        let (r, n) = targets(&args("istag/app:v1", &[])).unwrap();
        assert_eq!(
            (r, n),
            (Resource::ImageStreamTags, vec!["app:v1".to_string()])
        );
        assert!(targets(&args("is/app", &["x"])).is_err());
        assert!(targets(&args("is/", &[])).is_err());
    }
}
