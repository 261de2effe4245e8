//! `berth adm`: users, service accounts, tokens, role bindings and signing keys, over the
//! server's `/auth/v1` API.

use clap::{Args, Subcommand};
use serde_json::json;

use super::login::password;
use super::{CliError, Client, Connection};

#[derive(Args, Debug)]
pub struct AdmArgs {
    #[command(subcommand)]
    pub command: AdmCommand,
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
        AdmCommand::RotateSigningKey => {
            let r = client.post("/auth/v1/signingkeys/rotate", &json!({}))?;
            Ok(format!(
                "signing key {} now signs registry tokens\n",
                r["keyId"].as_str().unwrap_or_default()
            ))
        }
    }
}
