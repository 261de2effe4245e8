//! `berth delete`: image streams, tags, images and secrets by name (`TYPE NAME...` or
//! `TYPE/NAME`), or the objects of files (`-f`), printed as kubectl prints them.

use clap::Args;

use super::manifest::{self, Kind};
use super::{CliError, Client, Connection};

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// is|istag|image|secret, or TYPE/NAME.
    pub resource: Option<String>,
    /// The objects' names (`stream`, `stream:tag`, `sha256:...`, a secret's name).
    pub names: Vec<String>,
    /// Files of the objects to delete (YAML or JSON, several documents each).
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    /// Treat an object that does not exist as deleted.
    #[arg(long = "ignore-not-found")]
    pub ignore_not_found: bool,
}

fn err(m: impl Into<String>) -> CliError {
    CliError::Other(m.into())
}

/// Runs `berth delete` and returns what it prints.
pub fn run(conn: &Connection, args: &DeleteArgs) -> Result<String, CliError> {
    if let Some(resource) = &args.resource {
        let webhooks: Option<Vec<String>> = match resource.split_once('/') {
            Some((kind, name)) if super::is_webhook(kind) => Some(vec![name.to_string()]),
            None if super::is_webhook(resource) => Some(args.names.clone()),
            _ => None,
        };
        if let Some(names) = webhooks {
            let mut out = String::new();
            for name in names {
                out.push_str(&super::webhook::delete(conn, &name)?);
            }
            return Ok(out);
        }
    }
    let targets: Vec<(Kind, String, String)> =
        match (&args.resource, args.filename.is_empty()) {
            (Some(_), false) => return Err(err(
                "when paths, URLs, or stdin is provided as input, you may not specify resources \
                 as arguments as well",
            )),
            (None, false) => manifest::read(&args.filename, conn)?
                .into_iter()
                .map(|o| (o.kind, o.namespace, o.name))
                .collect(),
            (None, true) => {
                return Err(err(
                    "You must provide one or more resources by argument or filename.",
                ))
            }
            (Some(resource), true) => {
                let (kind, names) =
                    match resource.split_once('/') {
                        Some(_) if !args.names.is_empty() => return Err(err(
                            "there is no need to specify a resource type as a separate argument \
                         when passing arguments in resource/name form",
                        )),
                        Some((kind, name)) if !name.is_empty() => {
                            (Kind::of_argument(kind)?, vec![name.to_string()])
                        }
                        Some(_) => return Err(err(
                            "arguments in resource/name form must have a single resource and name",
                        )),
                        None if args.names.is_empty() => {
                            return Err(err(format!(
                        "resource(s) were provided, but no name was specified: berth delete \
                         {resource} NAME"
                    )))
                        }
                        None => (Kind::of_argument(resource)?, args.names.clone()),
                    };
                names
                    .into_iter()
                    .map(|n| (kind, conn.namespace.clone(), n))
                    .collect()
            }
        };
    let client = Client::new(conn)?;
    let mut out = String::new();
    for (kind, ns, name) in targets {
        match client.delete(&kind.object(&ns, &name)) {
            Ok(_) => out.push_str(&format!("{} \"{name}\" deleted\n", kind.qualified())),
            Err(CliError::Server { reason, .. })
                if reason == "NotFound" && args.ignore_not_found => {}
            Err(e) => {
                // What was deleted before the failure is reported too, as kubectl does.
                print!("{out}");
                return Err(e);
            }
        }
    }
    Ok(out)
}
