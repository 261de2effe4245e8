//! `berth create secret`: registry credentials for imports and pull-through, as kubectl creates
//! them (`docker-registry` with `--docker-*` flags, or `generic --from-file --type`).

use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::{CliError, Client, Connection};
use crate::secrets::{docker_config_json, DOCKER_CONFIG_JSON, DOCKER_CONFIG_JSON_KEY};

#[derive(Subcommand, Debug)]
pub enum SecretKind {
    /// A kubernetes.io/dockerconfigjson secret for one registry.
    DockerRegistry(DockerRegistryArgs),
    /// A secret from files (`--from-file=KEY=PATH`) of any `--type`.
    Generic(GenericArgs),
}

#[derive(Args, Debug)]
pub struct DockerRegistryArgs {
    pub name: String,
    /// The registry, host[:port] as imports name it (a scheme's default port, 443 or 80 for an
    /// insecure import, may be written or left out on either side). (Not
    /// `--server`: that flag names the berth server every verb talks to.)
    #[arg(long = "docker-server")]
    pub docker_server: Option<String>,
    #[arg(long = "docker-username", visible_alias = "username")]
    pub docker_username: Option<String>,
    #[arg(long = "docker-password", visible_alias = "password")]
    pub docker_password: Option<String>,
    #[arg(long = "docker-email", default_value = "")]
    pub docker_email: String,
    /// `.dockerconfigjson=PATH`: an existing docker config file instead of the flags.
    #[arg(long = "from-file")]
    pub from_file: Option<String>,
}

#[derive(Args, Debug)]
pub struct GenericArgs {
    pub name: String,
    /// `KEY=PATH` (or `PATH`, keyed by its file name); repeatable.
    #[arg(long = "from-file")]
    pub from_file: Vec<String>,
    #[arg(long = "type", default_value = "Opaque")]
    pub kind: String,
}

fn err(m: impl Into<String>) -> CliError {
    CliError::Other(m.into())
}

fn read_file(spec: &str) -> Result<(String, Vec<u8>), CliError> {
    let (key, path) = match spec.split_once('=') {
        Some((k, p)) => (k.to_string(), p),
        None => (
            std::path::Path::new(spec)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| spec.to_string()),
            spec,
        ),
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("error reading {path}: {e}")))?;
    Ok((key, bytes))
}

/// Runs `berth create secret ...` and returns what it prints.
pub fn run(conn: &Connection, kind: &SecretKind) -> Result<String, CliError> {
    let engine = base64::engine::general_purpose::STANDARD;
    let (name, kind, data) = match kind {
        SecretKind::DockerRegistry(a) => {
            let config = match (&a.from_file, &a.docker_server) {
                (Some(spec), _) => {
                    let (key, bytes) = read_file(spec)?;
                    if key != DOCKER_CONFIG_JSON_KEY {
                        return Err(err(format!(
                            "--from-file must name the key {DOCKER_CONFIG_JSON_KEY}"
                        )));
                    }
                    bytes
                }
                (None, Some(server)) => {
                    let (Some(user), Some(password)) = (&a.docker_username, &a.docker_password)
                    else {
                        return Err(err("--docker-username and --docker-password are required"));
                    };
                    docker_config_json(server, user, password, &a.docker_email).into_bytes()
                }
                (None, None) => {
                    return Err(err("either --from-file or --docker-server is required"))
                }
            };
            let mut data = Map::new();
            data.insert(
                DOCKER_CONFIG_JSON_KEY.into(),
                Value::String(engine.encode(config)),
            );
            (&a.name, DOCKER_CONFIG_JSON.to_string(), data)
        }
        SecretKind::Generic(a) => {
            let mut data = Map::new();
            for spec in &a.from_file {
                let (key, bytes) = read_file(spec)?;
                data.insert(key, Value::String(engine.encode(bytes)));
            }
            (&a.name, a.kind.clone(), data)
        }
    };
    let body = json!({
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": conn.namespace},
        "type": kind,
        "data": data,
    });
    Client::new(conn)?.post(
        &format!("/api/v1/namespaces/{}/secrets", conn.namespace),
        &body,
    )?;
    Ok(format!("secret/{name} created\n"))
}
