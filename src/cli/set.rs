//! `berth set image-lookup`: `oc set image-lookup` for image streams (spec.lookupPolicy.local).

use clap::{Args, Subcommand};
use serde_json::json;

use super::{printer, CliError, Client, Connection};

#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(subcommand)]
    pub what: SetWhat,
}

#[derive(Subcommand, Debug)]
pub enum SetWhat {
    /// Let pods of the namespace use a stream's tags by short name (or stop it); without
    /// names, list the streams and their setting.
    ImageLookup(ImageLookupArgs),
}

#[derive(Args, Debug)]
pub struct ImageLookupArgs {
    /// Image streams (`NAME` or `is/NAME`).
    pub names: Vec<String>,
    /// Every image stream of the namespace.
    #[arg(long)]
    pub all: bool,
    /// Turn lookup on (true) or off (false).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub enabled: bool,
}

/// Runs `berth set ...` and returns what it prints.
pub fn run(conn: &Connection, args: &SetArgs) -> Result<String, CliError> {
    let SetWhat::ImageLookup(a) = &args.what;
    let client = Client::new(conn)?;
    let collection = format!("namespaces/{}/imagestreams", conn.namespace);
    let mut names = Vec::new();
    for n in &a.names {
        let name = match n.split_once('/') {
            Some((kind, name))
                if super::Resource::parse(kind)? == super::Resource::ImageStreams =>
            {
                name
            }
            Some((kind, _)) => {
                return Err(CliError::Other(format!(
                    "image-lookup is only supported on image streams, not on {kind}"
                )))
            }
            None => n.as_str(),
        };
        names.push(name.to_string());
    }
    if a.all || names.is_empty() {
        let list = client.get(&collection)?;
        let streams = list["items"].as_array().cloned().unwrap_or_default();
        if names.is_empty() && !a.all {
            // No names: the table of what is set.
            let rows: Vec<Vec<String>> = streams
                .iter()
                .map(|s| {
                    vec![
                        s["metadata"]["name"].as_str().unwrap_or("").to_string(),
                        s["spec"]["lookupPolicy"]["local"]
                            .as_bool()
                            .unwrap_or(false)
                            .to_string(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                eprintln!("No resources found in {} namespace.", conn.namespace);
                return Ok(String::new());
            }
            return Ok(printer::table(&["NAME", "LOCAL"], &rows));
        }
        names.extend(
            streams
                .iter()
                .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_string)),
        );
    }
    let patch = json!({"spec": {"lookupPolicy": {"local": a.enabled}}});
    let mut out = String::new();
    for name in names {
        client.patch(
            &format!("{collection}/{name}"),
            "application/merge-patch+json",
            &patch,
        )?;
        out.push_str(&format!(
            "imagestream.image.openshift.io/{name} image lookup updated\n"
        ));
    }
    Ok(out)
}
