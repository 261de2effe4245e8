//! `berth adm`: users, service accounts, tokens, role bindings and signing keys, over the
//! server's `/auth/v1` API; garbage collection and `prune images` over `/admin/v1`.

use clap::{Args, Subcommand};
use serde_json::json;

use super::login::password;
use super::{describe, printer, CliError, Client, Connection};

#[derive(Args, Debug)]
pub struct AdmArgs {
    #[command(subcommand)]
    pub command: AdmCommand,
    /// The namespace given with `-n` (or `BERTH_NAMESPACE`), if any: `prune images` then
    /// prunes only that namespace's streams, as oc does.
    #[arg(skip)]
    pub explicit_namespace: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AdmCommand {
    /// Create a user, service account or access token.
    #[command(subcommand)]
    Create(AdmCreate),
    /// Revoke an access token.
    #[command(subcommand)]
    Revoke(AdmRevoke),
    /// Delete a user (and its tokens).
    #[command(subcommand)]
    Delete(AdmDelete),
    /// Role bindings, as `oc adm policy`.
    #[command(subcommand)]
    Policy(AdmPolicy),
    /// Make a new key sign registry tokens (the previous one still verifies).
    RotateSigningKey,
    /// Garbage collection: a pass now, `--full` (recount and orphan sweep), or `status`.
    Gc(GcArgs),
    /// Remove old image-stream history and the images only it used (like `oc adm prune`).
    #[command(subcommand)]
    Prune(AdmPrune),
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// `status`: totals, pending candidates and last runs.
    #[arg(value_parser = ["status"])]
    pub what: Option<String>,
    /// Rebuild reference counts and sweep blob files no record names.
    #[arg(long)]
    pub full: bool,
    /// With --full: report what would be deleted, delete nothing.
    #[arg(long, requires = "full")]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum AdmPrune {
    /// Prune image-stream history, manifests and layers no kept image uses, and Images.
    Images(PruneImagesArgs),
}

#[derive(Args, Debug)]
pub struct PruneImagesArgs {
    /// Keep this many revisions of each tag's history (revision 0 is current).
    #[arg(long, default_value_t = 3)]
    pub keep_tag_revisions: usize,
    /// Keep anything younger than this (e.g. 60m, 2h, 0s).
    #[arg(long, default_value = "60m")]
    pub keep_younger_than: String,
    /// Prune imported images too; `--all=false` prunes only images pushed to this registry.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub all: bool,
    /// Do it; without this, only report what would be pruned.
    #[arg(long)]
    pub confirm: bool,
}

#[derive(Subcommand, Debug)]
pub enum AdmCreate {
    /// A user with a password.
    User {
        name: String,
        #[arg(long, conflicts_with = "password_stdin")]
        password: Option<String>,
        #[arg(long)]
        password_stdin: bool,
        /// cluster-admin, registry-viewer or image-pruner (repeatable).
        #[arg(long = "cluster-role")]
        cluster_roles: Vec<String>,
    },
    /// A service account: no password, authenticates with tokens.
    Serviceaccount { name: String },
    /// An access token for a user or service account; printed once.
    Token {
        user: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime in seconds (default: until revoked).
        #[arg(long)]
        expires_in: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdmRevoke {
    Token { id: String },
}

#[derive(Subcommand, Debug)]
pub enum AdmDelete {
    User { name: String },
}

#[derive(Subcommand, Debug)]
pub enum AdmPolicy {
    /// Bind view, edit or admin in the namespace (-n).
    AddRoleToUser {
        role: String,
        user: String,
    },
    RemoveRoleFromUser {
        role: String,
        user: String,
    },
    /// Bind cluster-admin, registry-viewer or image-pruner.
    AddClusterRoleToUser {
        role: String,
        user: String,
    },
    RemoveClusterRoleFromUser {
        role: String,
        user: String,
    },
}

/// Runs `berth adm ...` and returns what it prints.
pub fn run(conn: &Connection, args: &AdmArgs) -> Result<String, CliError> {
    let client = Client::new(conn)?;
    let ns = &conn.namespace;
    match &args.command {
        AdmCommand::Create(AdmCreate::User {
            name,
            password: flag,
            password_stdin,
            cluster_roles,
        }) => {
            let password = password(flag.as_deref(), *password_stdin)?;
            client.post(
                "/auth/v1/users",
                &json!({"name": name, "password": password, "clusterRoles": cluster_roles}),
            )?;
            Ok(format!("user/{name} created\n"))
        }
        AdmCommand::Create(AdmCreate::Serviceaccount { name }) => {
            client.post("/auth/v1/users", &json!({"name": name}))?;
            Ok(format!("serviceaccount/{name} created\n"))
        }
        AdmCommand::Create(AdmCreate::Token {
            user,
            description,
            expires_in,
        }) => {
            let t = client.post(
                "/auth/v1/tokens",
                &json!({"user": user, "description": description, "expiresInSeconds": expires_in}),
            )?;
            Ok(format!("{}\n", t["token"].as_str().unwrap_or_default()))
        }
        AdmCommand::Revoke(AdmRevoke::Token { id }) => {
            client.delete(&format!("/auth/v1/tokens/{id}"))?;
            Ok(format!("token/{id} revoked\n"))
        }
        AdmCommand::Delete(AdmDelete::User { name }) => {
            client.delete(&format!("/auth/v1/users/{name}"))?;
            Ok(format!("user/{name} deleted\n"))
        }
        AdmCommand::Policy(AdmPolicy::AddRoleToUser { role, user }) => {
            client.put(
                &format!("/auth/v1/namespaces/{ns}/rolebindings/{user}"),
                &json!({"role": role}),
            )?;
            Ok(format!("role/{role} added: {user:?}\n"))
        }
        AdmCommand::Policy(AdmPolicy::RemoveRoleFromUser { role, user }) => {
            client.delete(&format!("/auth/v1/namespaces/{ns}/rolebindings/{user}"))?;
            Ok(format!("role/{role} removed: {user:?}\n"))
        }
        AdmCommand::Policy(AdmPolicy::AddClusterRoleToUser { role, user }) => {
            client.put(
                &format!("/auth/v1/clusterrolebindings/{user}/{role}"),
                &json!({}),
            )?;
            Ok(format!("clusterrole/{role} added: {user:?}\n"))
        }
        AdmCommand::Policy(AdmPolicy::RemoveClusterRoleFromUser { role, user }) => {
            client.delete(&format!("/auth/v1/clusterrolebindings/{user}/{role}"))?;
            Ok(format!("clusterrole/{role} removed: {user:?}\n"))
        }
        AdmCommand::Gc(gc) => gc_verb(&client, gc),
        AdmCommand::Prune(AdmPrune::Images(p)) => {
            let report = client.post(
                "/admin/v1/prune/images",
                &json!({
                    "keepTagRevisions": p.keep_tag_revisions,
                    "keepYoungerThan": p.keep_younger_than,
                    "all": p.all,
                    "namespace": args.explicit_namespace,
                    "confirm": p.confirm,
                }),
            )?;
            Ok(prune_output(&report))
        }
        AdmCommand::RotateSigningKey => {
            let r = client.post("/auth/v1/signingkeys/rotate", &json!({}))?;
            Ok(format!(
                "signing key {} now signs registry tokens\n",
                r["keyId"].as_str().unwrap_or_default()
            ))
        }
    }
}

fn gc_verb(client: &Client, gc: &GcArgs) -> Result<String, CliError> {
    if gc.what.is_some() {
        let s = client.get("/admin/v1/gc")?;
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        let when = |k: &str| match n(k) {
            0 => "never".to_string(),
            t => humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
            )
            .to_string(),
        };
        return Ok(describe::tabwrite(&format!(
            "Grace period:\t{}\nPending candidates:\t{}\nBlobs deleted:\t{}\n\
             Bytes reclaimed:\t{}\nManifests deleted:\t{}\nOrphan files removed:\t{}\n\
             Last run:\t{}\nLast full run:\t{}\n",
            printer::human_duration(std::time::Duration::from_secs(n("delaySeconds"))),
            n("pending"),
            n("blobsDeleted"),
            n("bytesDeleted"),
            n("manifestsDeleted"),
            n("orphansDeleted"),
            when("lastRun"),
            when("lastFullRun"),
        )));
    }
    let r = client.post(
        "/admin/v1/gc",
        &json!({"full": gc.full, "dryRun": gc.dry_run}),
    )?;
    let list = |k: &str| -> Vec<String> {
        r[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = String::new();
    if gc.dry_run {
        out.push_str("Dry run enabled - no modifications will be made.\n\n");
    }
    for (title, key) in [
        ("Deleting manifests ...", "manifestsDeleted"),
        ("Deleting blobs ...", "blobsDeleted"),
        ("Deleting orphan blob files ...", "orphansDeleted"),
    ] {
        let items = list(key);
        if items.is_empty() {
            continue;
        }
        out.push_str(title);
        out.push('\n');
        for i in items {
            out.push_str(&i);
            out.push('\n');
        }
        out.push('\n');
    }
    let verb = if gc.dry_run { "would be" } else { "were" };
    out.push_str(&format!(
        "{} manifests and {} blobs ({} bytes) {verb} deleted; {} candidates wait for their grace period.\n",
        list("manifestsDeleted").len(),
        list("blobsDeleted").len() + list("orphansDeleted").len(),
        r["bytesDeleted"].as_u64().unwrap_or(0),
        r["pending"].as_u64().unwrap_or(0),
    ));
    if let Some(n) = r["countsRepaired"].as_u64().filter(|n| *n > 0) {
        out.push_str(&format!("{n} reference counts {verb} repaired.\n"));
    }
    Ok(out)
}

/// The report as `oc adm prune images` prints it: one table per kind of deletion.
pub fn prune_output(r: &serde_json::Value) -> String {
    let rows = |k: &str, f: &dyn Fn(&serde_json::Value) -> Vec<String>| -> Vec<Vec<String>> {
        r[k].as_array()
            .map(|a| a.iter().map(f).collect())
            .unwrap_or_default()
    };
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let mut out = String::new();
    if r["dryRun"].as_bool().unwrap_or(true) {
        out.push_str(
            "Dry run enabled - no modifications will be made. Add --confirm to remove images\n",
        );
    }
    type Section<'a> = (&'a str, &'a [&'a str], Vec<Vec<String>>);
    let sections: [Section; 4] = [
        (
            "Deleting references from image streams to images ...",
            &["STREAM", "IMAGE", "TAGS"],
            rows("history", &|v| {
                let tags: Vec<String> = v["tags"]
                    .as_array()
                    .map(|t| {
                        t.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                vec![s(v, "stream"), s(v, "image"), tags.join(", ")]
            }),
        ),
        (
            "Deleting registry repository layer links ...",
            &["REPO", "LAYER LINK"],
            rows("layerLinks", &|v| vec![s(v, "repository"), s(v, "digest")]),
        ),
        (
            "Deleting registry repository manifest data ...",
            &["REPO", "IMAGE"],
            rows("manifestLinks", &|v| {
                vec![s(v, "repository"), s(v, "digest")]
            }),
        ),
        (
            "Deleting images from server ...",
            &["IMAGE"],
            rows("images", &|v| {
                vec![v.as_str().unwrap_or_default().to_string()]
            }),
        ),
    ];
    let mut any = false;
    for (title, header, rows) in sections {
        if rows.is_empty() {
            continue;
        }
        any = true;
        out.push('\n');
        out.push_str(title);
        out.push('\n');
        out.push_str(&printer::table(header, &rows));
    }
    if !any {
        out.push_str("\nNo images to prune.\n");
    }
    out
}
