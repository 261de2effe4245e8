//! `berth login`, `berth logout`, `berth whoami`: an access token in the client config.

use std::io::BufRead;

use clap::Args;
use serde_json::json;

use super::client::Credentials;
use super::{CliError, Client, ClientConfig, Connection};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The server (default: --server, else the client config's).
    pub server: Option<String>,
    #[arg(short = 'u', long)]
    pub username: String,
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

fn err(m: impl Into<String>) -> CliError {
    CliError::Other(m.into())
}

fn config_path() -> Result<std::path::PathBuf, CliError> {
    ClientConfig::path().ok_or_else(|| err("no home directory: set BERTH_CLIENT_CONFIG"))
}

/// Reads a password: the flag, else a line of standard input.
pub fn password(flag: Option<&str>, stdin: bool) -> Result<String, CliError> {
    if let Some(p) = flag {
        return Ok(p.to_string());
    }
    if !stdin {
        return Err(err(
            "a password is required: --password or --password-stdin",
        ));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| err(format!("reading the password: {e}")))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Exchanges the password for an access token and stores it with the server.
pub fn login(conn: &Connection, args: &LoginArgs) -> Result<String, CliError> {
    let server = args.server.clone().unwrap_or_else(|| conn.server.clone());
    let password = password(args.password.as_deref(), args.password_stdin)?;
    let client = Client::with(
        &server,
        conn.certificate_authority.as_deref(),
        Credentials::Basic {
            user: args.username.clone(),
            password,
        },
    )?;
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let created = client.post(
        "/auth/v1/tokens",
        &json!({"description": format!("berth login {host}").trim_end()}),
    )?;
    let token = created["token"]
        .as_str()
        .ok_or_else(|| err("the server answered no token"))?;
    let path = config_path()?;
    let mut config = ClientConfig::load(&path)?;
    config.server = Some(server.clone());
    config.token = Some(token.to_string());
    if conn.certificate_authority.is_some() {
        config.certificate_authority = conn.certificate_authority.clone();
    }
    config.save(&path)?;
    Ok(format!("Logged into {server:?} as {:?}.\n", args.username))
}

/// Revokes the stored token and forgets it.
pub fn logout(conn: &Connection) -> Result<String, CliError> {
    let path = config_path()?;
    let mut config = ClientConfig::load(&path)?;
    let Some(token) = config.token.take() else {
        return Err(err("not logged in"));
    };
    // `berth_<id>_<secret>`: revoking needs only the id.
    if let Some(id) = token
        .strip_prefix("berth_")
        .and_then(|t| t.split_once('_'))
        .map(|(id, _)| id.to_string())
    {
        let client = Client::new(conn)?;
        if let Err(e) = client.delete(&format!("/auth/v1/tokens/{id}")) {
            eprintln!("warning: the server did not revoke the token: {e}");
        }
    }
    config.save(&path)?;
    Ok(format!("Logged out of {:?}.\n", conn.server))
}

pub fn whoami(conn: &Connection) -> Result<String, CliError> {
    let me = Client::new(conn)?.get("/auth/v1/whoami")?;
    Ok(format!("{}\n", me["name"].as_str().unwrap_or_default()))
}
