//! The flags every subcommand takes (`--config`, `--admin`, `--token-file`) and how the admin
//! clients find the admin API from them.

use std::path::PathBuf;

use super::client::ClientError;

/// The admin API address when neither `--admin` nor `--config` says otherwise.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:8053";

/// Flags every subcommand takes: the config file, and where the admin API is.
#[derive(Clone, Debug, clap::Args)]
pub struct AdminArgs {
    /// The config file (default `steerdns.toml` for serve, demo, check-config and explain).
    /// The admin commands take the admin address and token file from its `[admin]` table,
    /// as `knotc -c`, `unbound-control -c` and `rndc -c` do.
    #[arg(long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Admin API base URL (overrides `--config`'s `[admin] listen`; default
    /// http://127.0.0.1:8053).
    #[arg(long = "admin", global = true)]
    pub admin: Option<String>,
    /// File holding the bearer token (`NAME:TOKEN` or `TOKEN`; the first one is used);
    /// overrides `--config`'s `[admin] token_file`.
    #[arg(long = "token-file", global = true)]
    pub token_file: Option<PathBuf>,
}

impl AdminArgs {
    /// The admin API's base URL and the token file to use: the flags, else the config
    /// file's `[admin]` table (a listener on an unspecified address is reached on loopback),
    /// else the defaults.
    pub fn endpoint(&self) -> Result<(String, Option<PathBuf>), ClientError> {
        let admin = match &self.config {
            None => None,
            Some(path) => Some(
                crate::config::Config::load(path)
                    .map_err(|problems| ClientError::Config(problems.to_string()))?
                    .admin,
            ),
        };
        let url = self.admin.clone().unwrap_or_else(|| match &admin {
            Some(a) => {
                let mut addr = a.listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(if addr.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    });
                }
                format!("http://{addr}")
            }
            None => DEFAULT_ADMIN.to_string(),
        });
        let token_file = self
            .token_file
            .clone()
            .or_else(|| admin.and_then(|a| a.token_file));
        Ok((url, token_file))
    }
}
