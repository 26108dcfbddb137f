//! The `[admin]` table of the config file, and its validated form: `config::file::Spec`
//! holds an [`AdminSpec`], `Config` keeps the [`AdminConfig`] built from it.
//!
//! ```toml
//! [admin]
//! listen = "127.0.0.1:8053"
//! token_file = "admin-tokens"            # relative to the config file
//! allow_read_from = ["10.0.0.0/8"]
//! state_file = "steerdns-state.json"     # relative to the config file
//! event_history = 256
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;

use crate::overrides::DEFAULT_STATE_FILE;

/// Events `/v1/events` keeps by default.
pub(crate) const DEFAULT_EVENT_HISTORY: usize = 256;

/// `[admin]`.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminSpec {
    /// Address of the admin HTTP listener. Default `127.0.0.1:8053`. Changing it needs a
    /// restart.
    pub(crate) listen: Option<String>,
    /// File of bearer tokens that may change things (`NAME:TOKEN` or `TOKEN` per line, `#`
    /// comments), relative to the config file. Default: none, and then changes are accepted
    /// from loopback clients only.
    pub(crate) token_file: Option<String>,
    /// Networks, besides loopback, that may read status, metrics, events and explain.
    /// Default: none.
    #[serde(default)]
    pub(crate) allow_read_from: Vec<IpNet>,
    /// Where operator overrides persist, relative to the config file. Default
    /// `steerdns-state.json`.
    pub(crate) state_file: Option<String>,
    /// How many events `/v1/events` keeps. Default 256.
    pub(crate) event_history: Option<usize>,
    /// Registries (keys) whose answers get series of their own in `/metrics`
    /// (`steerdns_answers{registry=KEY,replica}`); the others count in their replica set's
    /// series only, so a scrape stays small at a million registries. Default: none.
    #[serde(default)]
    pub(crate) metrics_registries: Vec<String>,
}

/// The validated `[admin]` settings.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct AdminConfig {
    /// Listener address.
    pub(crate) listen: SocketAddr,
    /// Token file (absolute), if any.
    pub(crate) token_file: Option<PathBuf>,
    /// Its tokens, read and checked when the config was loaded.
    pub(crate) tokens: Option<Arc<[AdminToken]>>,
    /// Extra read networks.
    pub(crate) allow_read_from: Vec<IpNet>,
    /// State file (absolute).
    pub(crate) state_file: PathBuf,
    /// Event history length.
    pub(crate) event_history: usize,
    /// Registries with series of their own.
    pub(crate) metrics_registries: Vec<String>,
}

impl AdminSpec {
    /// Validate, anchoring relative paths at `config_dir`. Errors name the key.
    pub(crate) fn resolve(&self, config_dir: &Path) -> Result<AdminConfig, String> {
        let listen = self.listen.as_deref().unwrap_or("127.0.0.1:8053");
        let listen = listen
            .parse()
            .map_err(|_| format!("admin.listen: {listen:?} is not ADDR:PORT"))?;
        let event_history = self.event_history.unwrap_or(DEFAULT_EVENT_HISTORY);
        if event_history == 0 {
            return Err("admin.event_history must be at least 1".into());
        }
        let token_file = self.token_file.as_ref().map(|f| config_dir.join(f));
        let tokens = token_file.as_deref().map(read_tokens).transpose()?;
        Ok(AdminConfig {
            listen,
            token_file,
            tokens,
            allow_read_from: self.allow_read_from.iter().map(IpNet::trunc).collect(),
            state_file: config_dir.join(self.state_file.as_deref().unwrap_or(DEFAULT_STATE_FILE)),
            event_history,
            metrics_registries: self.metrics_registries.clone(),
        })
    }
}

/// A token file line: `NAME:TOKEN`, or a bare `TOKEN` (named `token`).
#[derive(Clone, Eq, PartialEq)]
pub(crate) struct AdminToken {
    pub(crate) name: String,
    pub(crate) secret: String,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "Token({})", self.name)
    }
}

/// Read and check a token file. Errors name the file (and the line).
pub(crate) fn read_tokens(path: &Path) -> Result<Arc<[AdminToken]>, String> {
    std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| parse_tokens(&text))
        .map(Arc::from)
        .map_err(|e| format!("token file {}: {e}", path.display()))
}

/// Parse a token file: one `NAME:TOKEN` or `TOKEN` per line, `#` comments; at least one
/// token, each at least 16 characters.
pub(crate) fn parse_tokens(text: &str) -> Result<Vec<AdminToken>, String> {
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, secret) = match line.split_once(':') {
            Some((n, s)) => (n.trim(), s.trim()),
            None => ("token", line),
        };
        if secret.len() < 16 {
            return Err(format!(
                "line {}: token is shorter than 16 characters",
                i + 1
            ));
        }
        if name.is_empty() || secret.chars().any(char::is_whitespace) {
            return Err(format!("line {}: expected NAME:TOKEN or TOKEN", i + 1));
        }
        tokens.push(AdminToken {
            name: name.to_owned(),
            secret: secret.to_owned(),
        });
    }
    if tokens.is_empty() {
        return Err("no tokens in the file".into());
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s: AdminSpec = toml::from_str("").expect("empty");
        let c = s.resolve(Path::new("/etc/steerdns")).expect("ok");
        assert_eq!(c.listen, "127.0.0.1:8053".parse().expect("addr"));
        assert_eq!(
            c.state_file,
            PathBuf::from("/etc/steerdns/steerdns-state.json")
        );
        assert_eq!(c.token_file, None);
        assert_eq!(c.event_history, 256);
    }

    #[test]
    fn full_and_errors() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("tokens"), "ops:0123456789abcdef0123\n").expect("write");
        let s: AdminSpec = toml::from_str(
            "listen = \"[::1]:9000\"\ntoken_file = \"tokens\"\nallow_read_from = [\"10.1.2.3/16\"]\nstate_file = \"/var/lib/steerdns/state.json\"\n",
        )
        .expect("parse");
        let c = s.resolve(dir.path()).expect("ok");
        assert_eq!(c.token_file, Some(dir.path().join("tokens")));
        assert_eq!(c.tokens.as_deref().map(<[_]>::len), Some(1));
        // A token file that does not load is the config's error, naming file and line.
        std::fs::write(dir.path().join("tokens"), "# revoked\nops:short\n").expect("write");
        let e = s.resolve(dir.path()).expect_err("short");
        assert!(e.contains("tokens: line 2: token is shorter"), "{e}");
        assert_eq!(c.allow_read_from[0].to_string(), "10.1.0.0/16");
        assert_eq!(c.state_file, PathBuf::from("/var/lib/steerdns/state.json"));
        let e = toml::from_str::<AdminSpec>("tokenfile = \"x\"").expect_err("typo");
        assert!(e.to_string().contains("unknown field `tokenfile`"), "{e}");
        let e =
            toml::from_str::<AdminSpec>("allow_read_from = [\"10.0.0.0/33\"]").expect_err("cidr");
        assert!(e.to_string().contains("invalid"), "{e}");
        let s: AdminSpec = toml::from_str("listen = \"localhost\"").expect("parse");
        assert!(
            s.resolve(Path::new("/"))
                .expect_err("addr")
                .contains("admin.listen")
        );
    }
}
