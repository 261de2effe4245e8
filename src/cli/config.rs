//! The client configuration file: which server and namespace the verbs use by default.
//!
//! Precedence, highest first: the `--server`/`-n` flags, `BERTH_SERVER`/`BERTH_NAMESPACE`,
//! the file, the built-in defaults. The file lives at `$BERTH_CLIENT_CONFIG`, else
//! `$XDG_CONFIG_HOME/berth/config.toml`, else `~/.config/berth/config.toml`:
//!
//! ```toml
//! server = "https://registry.example.com"
//! namespace = "team-a"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CliError;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:5000";
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub server: Option<String>,
    pub namespace: Option<String>,
    /// The access token `berth login` stored (the file is kept private, mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// PEM file of the CA that signed the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
}

impl ClientConfig {
    /// Where the file is looked for, or `None` when no home directory is known.
    pub fn path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("BERTH_CLIENT_CONFIG").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("berth").join("config.toml"))
    }

    /// Reads the file at `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<ClientConfig, CliError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                CliError::Other(format!("reading client config {}: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
            Err(e) => Err(CliError::Other(format!(
                "reading client config {}: {e}",
                path.display()
            ))),
        }
    }
}

impl ClientConfig {
    /// Writes the file (creating its directory), readable by its owner only: it holds a token.
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let fail = |e: std::io::Error| {
            CliError::Other(format!("writing client config {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let text = toml::to_string(self)
            .map_err(|e| CliError::Other(format!("encoding client config: {e}")))?;
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp).map_err(fail)?;
            f.write_all(text.as_bytes()).map_err(fail)?;
            f.sync_all().map_err(fail)?;
        }
        #[cfg(unix)]
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        assert_eq!(ClientConfig::load(&p).unwrap(), ClientConfig::default());
        std::fs::write(&p, "server = \"http://h:1\"\nnamespace = \"team\"\n").unwrap();
        let c = ClientConfig::load(&p).unwrap();
        assert_eq!(c.server.as_deref(), Some("http://h:1"));
        assert_eq!(c.namespace.as_deref(), Some("team"));
        std::fs::write(&p, "sever = \"typo\"\n").unwrap();
        let e = ClientConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
        let c = ClientConfig {
            token: Some("berth_x_y".into()),
            ..c
        };
        c.save(&p).unwrap();
        assert_eq!(ClientConfig::load(&p).unwrap(), c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
