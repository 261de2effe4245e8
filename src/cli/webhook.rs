//! `berth create|get|describe|delete webhook`: webhook subscriptions (berth.io/v1).

use clap::Args;
use serde_json::{json, Value};

use super::{CliError, Client, Connection};
use crate::webhooks::signing;

#[derive(Args, Debug)]
pub struct CreateWebhookArgs {
    pub name: String,
    /// Where events are POSTed (http or https).
    #[arg(long)]
    pub url: String,
    /// Event types (comma-separated or repeated); all when omitted: imagestreamtag.updated,
    /// imagestreamtag.deleted, image.import.failed, manifest.pushed, manifest.deleted.
    #[arg(long, value_delimiter = ',')]
    pub events: Vec<String>,
    /// STREAM or STREAM:TAG to follow (repeatable); every stream when omitted.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// A file holding the signing secret (`whsec_<base64>`). Without it a secret is generated
    /// and printed once: the server never shows it again.
    #[arg(long = "secret-from-file")]
    pub secret_from_file: Option<std::path::PathBuf>,
    /// CloudEvents (default) or Distribution (Docker Distribution's notification envelope).
    #[arg(long, default_value = "CloudEvents")]
    pub format: String,
}

fn path(ns: &str, name: Option<&str>) -> String {
    let base = format!("/apis/berth.io/v1/namespaces/{ns}/webhooks");
    match name {
        Some(n) => format!("{base}/{n}"),
        None => base,
    }
}

fn format_name(s: &str) -> Result<&'static str, CliError> {
    match s.to_ascii_lowercase().as_str() {
        "cloudevents" => Ok("CloudEvents"),
        "distribution" => Ok("Distribution"),
        _ => Err(CliError::Other(format!(
            "--format must be CloudEvents or Distribution, not {s:?}"
        ))),
    }
}

pub fn create(conn: &Connection, a: &CreateWebhookArgs) -> Result<String, CliError> {
    let (secret, generated) = match &a.secret_from_file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::Other(format!("error reading {}: {e}", p.display())))?;
            (text.trim().to_string(), false)
        }
        None => (signing::generate(), true),
    };
    let body = json!({
        "kind": "Webhook",
        "apiVersion": "berth.io/v1",
        "metadata": {"name": a.name},
        "spec": {
            "url": a.url,
            "events": a.events,
            "tags": a.tags,
            "format": format_name(&a.format)?,
            "secret": secret,
        },
    });
    Client::new(conn)?.post(&path(&conn.namespace, None), &body)?;
    let mut out = format!("webhook/{} created\n", a.name);
    if generated {
        out.push_str(&format!(
            "signing secret (shown once; receivers verify with it): {secret}\n"
        ));
    }
    Ok(out)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn list_or_all(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a.iter().map(s).collect::<Vec<_>>().join(","),
        _ => "<all>".into(),
    }
}

/// `berth get webhooks [NAME]`: a table, or the objects as JSON with `-o json`.
pub fn get(
    conn: &Connection,
    name: Option<&str>,
    output: Option<&str>,
) -> Result<String, CliError> {
    let client = Client::new(conn)?;
    let items = match name {
        Some(n) => vec![client.get(&path(&conn.namespace, Some(n)))?],
        None => client.get(&path(&conn.namespace, None))?["items"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    };
    match output {
        Some("json") => {
            let v = if name.is_some() {
                items[0].clone()
            } else {
                json!({"kind": "WebhookList", "apiVersion": "berth.io/v1", "items": items})
            };
            return Ok(format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
        }
        Some("name") => {
            return Ok(items
                .iter()
                .map(|i| format!("webhook.berth.io/{}\n", s(&i["metadata"]["name"])))
                .collect())
        }
        None | Some("") => {}
        Some(o) => {
            return Err(CliError::Other(format!(
                "unable to match a printer suitable for the output format \"{o}\", allowed \
                 formats are: json,name"
            )))
        }
    }
    if items.is_empty() {
        eprintln!("No resources found in {} namespace.", conn.namespace);
        return Ok(String::new());
    }
    let rows: Vec<[String; 6]> = items
        .iter()
        .map(|i| {
            let st = &i["status"];
            [
                s(&i["metadata"]["name"]).to_string(),
                s(&i["spec"]["url"]).to_string(),
                list_or_all(&i["spec"]["events"]),
                s(&st["phase"]).to_string(),
                st["pending"].as_u64().unwrap_or(0).to_string(),
                st["droppedEvents"].as_u64().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    Ok(table(
        ["NAME", "URL", "EVENTS", "PHASE", "PENDING", "DROPPED"],
        &rows,
    ))
}

fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        l.push('\n');
        l
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// `berth describe webhook NAME`: the subscription and how its delivery is going.
pub fn describe(conn: &Connection, name: &str) -> Result<String, CliError> {
    let w = Client::new(conn)?.get(&path(&conn.namespace, Some(name)))?;
    let (spec, st) = (&w["spec"], &w["status"]);
    let n = |v: &Value| v.as_u64().unwrap_or(0).to_string();
    let opt = |v: &Value| match v.as_str() {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => "<none>".into(),
    };
    let last_error = match st.get("lastError") {
        Some(e) if e.is_object() => {
            let code = e["statusCode"]
                .as_u64()
                .map(|c| format!("HTTP {c}: "))
                .unwrap_or_default();
            format!("{} ({code}{})", s(&e["time"]), s(&e["message"]))
        }
        _ => "<none>".into(),
    };
    let rows = [
        ("Name:", s(&w["metadata"]["name"]).to_string()),
        ("Namespace:", s(&w["metadata"]["namespace"]).to_string()),
        ("Created:", opt(&w["metadata"]["creationTimestamp"])),
        ("URL:", s(&spec["url"]).to_string()),
        ("Format:", opt(&spec["format"])),
        ("Events:", list_or_all(&spec["events"])),
        ("Tags:", list_or_all(&spec["tags"])),
        ("Signing Secrets:", n(&st["signingSecrets"])),
        ("Phase:", opt(&st["phase"])),
        ("Pending:", n(&st["pending"])),
        ("Delivered:", n(&st["delivered"])),
        ("Dropped:", n(&st["droppedEvents"])),
        ("Last Dropped:", opt(&st["lastDroppedTime"])),
        ("Last Success:", opt(&st["lastSuccessTime"])),
        ("Last Error:", last_error),
        ("Consecutive Failures:", n(&st["consecutiveFailures"])),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    Ok(rows
        .iter()
        .map(|(k, v)| format!("{k:<width$}\t{v}\n"))
        .collect())
}

pub fn delete(conn: &Connection, name: &str) -> Result<String, CliError> {
    Client::new(conn)?.delete(&path(&conn.namespace, Some(name)))?;
    Ok(format!("webhook.berth.io \"{name}\" deleted\n"))
}
