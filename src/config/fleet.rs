//! The `[fleet]` table of the config file, and its validated form: several steerdns instances
//! that share operator state and health exceptions through etcd (see `crate::fleet` and
//! `docs/fleet.md`). Without the table, steerdns is a single server and needs no etcd.
//!
//! ```toml
//! [fleet]
//! endpoints = ["https://etcd1:2379", "https://etcd2:2379", "https://etcd3:2379"]
//! cluster = "registry-dns"         # key prefix in etcd; instances of one fleet share it
//! instance = "ns1-westeurope"      # this instance's id, unique in the fleet
//! quorum = "majority"              # majority | any | all | a number of instances
//! timeout = "500ms"                # an etcd call slower than this counts as unreachable
//! lease_ttl = "10s"                # this instance's lease (its health exceptions, its liveness)
//! retry = "1s"                     # how often an unreachable etcd is tried again
//! state_file = "steerdns-fleet.json"   # local record of what was seen and not yet shared
//! username = "steerdns"
//! password_file = "etcd-password"  # relative to the config file
//! [fleet.tls]
//! ca = "etcd-ca.pem"
//! cert = "steerdns.pem"
//! key = "steerdns-key.pem"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::file::Dur;
use crate::problem::Problem;

/// `[fleet]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FleetSpec {
    /// etcd client URLs (`http://HOST:PORT`, `https://HOST:PORT` with `[fleet.tls]`).
    pub(crate) endpoints: Vec<String>,
    /// Key prefix of this fleet in etcd. Default `steerdns`.
    #[serde(default = "default_cluster")]
    pub(crate) cluster: String,
    /// This instance's id: letters, digits, `.`, `_`, `-`; unique in the fleet.
    pub(crate) instance: String,
    /// How many live instances must report a key degraded for the fleet to route around it:
    /// `"majority"` (default), `"any"`, `"all"`, or a number.
    #[serde(default)]
    pub(crate) quorum: Option<QuorumSpec>,
    /// Deadline of each etcd call; beyond it etcd counts as unreachable and an admin change
    /// is acknowledged as local. Default `500ms`.
    #[serde(default)]
    pub(crate) timeout: Option<Dur>,
    /// TTL of this instance's lease, whole seconds, at least 2s. Default `10s`.
    #[serde(default)]
    pub(crate) lease_ttl: Option<Dur>,
    /// How often an unreachable etcd is tried again. Default `1s`.
    #[serde(default)]
    pub(crate) retry: Option<Dur>,
    /// The fleet's local file (change stamps seen, changes not yet shared), relative to the
    /// config file. Default `steerdns-fleet.json`.
    pub(crate) state_file: Option<String>,
    /// etcd user (role-based access). Needs `password` or `password_file`.
    pub(crate) username: Option<String>,
    /// etcd password, inline.
    pub(crate) password: Option<String>,
    /// etcd password, first line of this file (relative to the config file).
    pub(crate) password_file: Option<String>,
    /// TLS towards etcd.
    pub(crate) tls: Option<TlsSpec>,
}

/// `[fleet.tls]`: files relative to the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSpec {
    /// CA certificate(s) that sign the etcd servers' certificates (PEM).
    pub(crate) ca: Option<String>,
    /// Client certificate (PEM), with `key`.
    pub(crate) cert: Option<String>,
    /// Client private key (PEM), with `cert`.
    pub(crate) key: Option<String>,
}

/// `quorum = "majority"` or `quorum = 2`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum QuorumSpec {
    /// A number of instances.
    Count(i64),
    /// A word.
    Word(String),
}

fn default_cluster() -> String {
    "steerdns".into()
}

/// How many of the live instances make a fleet verdict degraded.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Quorum {
    /// More than half of the live instances.
    #[default]
    Majority,
    /// One instance.
    Any,
    /// Every live instance.
    All,
    /// This many instances (capped at the live count, so a fleet shrunk below it still
    /// fails over when every survivor agrees).
    Count(u32),
}

impl Quorum {
    /// Reports needed among `live` instances (at least 1).
    pub fn needed(self, live: usize) -> usize {
        let n = match self {
            Quorum::Majority => live / 2 + 1,
            Quorum::Any => 1,
            Quorum::All => live,
            Quorum::Count(c) => (c as usize).min(live),
        };
        n.max(1)
    }
}

impl std::fmt::Display for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quorum::Majority => f.write_str("majority"),
            Quorum::Any => f.write_str("any"),
            Quorum::All => f.write_str("all"),
            Quorum::Count(n) => write!(f, "{n}"),
        }
    }
}

/// TLS material, read at load.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct FleetTls {
    /// CA PEM.
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// The validated `[fleet]` settings.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct FleetConfig {
    /// etcd endpoints.
    pub endpoints: Vec<String>,
    /// Key prefix.
    pub cluster: String,
    /// This instance.
    pub instance: String,
    /// Quorum rule.
    pub quorum: Quorum,
    /// etcd call deadline.
    pub timeout: Duration,
    /// Lease TTL (whole seconds).
    pub lease_ttl: Duration,
    /// Reconnect interval.
    pub retry: Duration,
    /// Local fleet file (absolute).
    pub state_file: PathBuf,
    /// User and password.
    pub auth: Option<(String, String)>,
    /// TLS, when configured.
    pub tls: Option<FleetTls>,
}

/// Whether `s` is a usable id or prefix: non-empty, at most 64 bytes of `[A-Za-z0-9._-]`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl FleetSpec {
    /// Validate, reading the password and TLS files relative to `dir`. Each problem names
    /// its key through `at(table, key, reason)`.
    pub(crate) fn resolve(
        self,
        dir: &Path,
        problems: &mut Vec<Problem>,
        at: impl Fn(&str, Option<&str>, String) -> Problem,
    ) -> Option<FleetConfig> {
        let before = problems.len();
        let mut bad = |key: &str, reason: String| problems.push(at("fleet", Some(key), reason));
        if self.endpoints.is_empty() {
            bad(
                "endpoints",
                "fleet.endpoints needs at least one etcd URL".into(),
            );
        }
        for e in &self.endpoints {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            match rest {
                Some(hp)
                    if hp
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
                {
                    if e.starts_with("https://") != self.tls.is_some() {
                        bad(
                            "endpoints",
                            format!(
                                "fleet.endpoints: {e:?} — https:// endpoints need [fleet.tls], and [fleet.tls] needs https:// endpoints"
                            ),
                        );
                    }
                }
                _ => bad(
                    "endpoints",
                    format!("fleet.endpoints: {e:?} is not http://HOST:PORT or https://HOST:PORT"),
                ),
            }
        }
        if !is_name(&self.cluster) {
            bad(
                "cluster",
                format!(
                    "fleet.cluster {:?} must be 1-64 letters, digits, '.', '_' or '-'",
                    self.cluster
                ),
            );
        }
        if !is_name(&self.instance) {
            bad(
                "instance",
                format!(
                    "fleet.instance {:?} must be 1-64 letters, digits, '.', '_' or '-'",
                    self.instance
                ),
            );
        }
        let quorum = match self.quorum {
            None => Quorum::Majority,
            Some(QuorumSpec::Word(w)) => match w.as_str() {
                "majority" => Quorum::Majority,
                "any" => Quorum::Any,
                "all" => Quorum::All,
                _ => match w.parse::<u32>() {
                    Ok(n) if n >= 1 => Quorum::Count(n),
                    _ => {
                        bad(
                            "quorum",
                            format!(
                                "fleet.quorum {w:?} is not majority, any, all or a number of at least 1"
                            ),
                        );
                        Quorum::Majority
                    }
                },
            },
            Some(QuorumSpec::Count(n)) => match u32::try_from(n) {
                Ok(n) if n >= 1 => Quorum::Count(n),
                _ => {
                    bad("quorum", format!("fleet.quorum {n} must be at least 1"));
                    Quorum::Majority
                }
            },
        };
        let timeout = self.timeout.map_or(Duration::from_millis(500), |d| d.0);
        let lease_ttl = self.lease_ttl.map_or(Duration::from_secs(10), |d| d.0);
        let retry = self.retry.map_or(Duration::from_secs(1), |d| d.0);
        if timeout.is_zero() {
            bad("timeout", "fleet.timeout must be more than 0".into());
        }
        if lease_ttl < Duration::from_secs(2) || lease_ttl.subsec_nanos() != 0 {
            bad(
                "lease_ttl",
                format!(
                    "fleet.lease_ttl {lease_ttl:?} must be whole seconds, at least 2s (etcd's shortest lease)"
                ),
            );
        } else if timeout * 2 > lease_ttl {
            bad(
                "timeout",
                format!(
                    "fleet.timeout {timeout:?} must be at most half of lease_ttl {lease_ttl:?}, or keep-alives miss the lease"
                ),
            );
        }
        if retry.is_zero() {
            bad("retry", "fleet.retry must be more than 0".into());
        }
        let password = match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                bad(
                    "password_file",
                    "fleet: give password or password_file, not both".into(),
                );
                None
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(f)) => match std::fs::read_to_string(dir.join(f)) {
                Ok(t) => Some(t.lines().next().unwrap_or_default().to_string()),
                Err(e) => {
                    bad(
                        "password_file",
                        format!("fleet.password_file {f:?}: cannot read: {e}"),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        let auth = match (self.username, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            (Some(_), None) => {
                bad(
                    "username",
                    "fleet.username needs password or password_file".into(),
                );
                None
            }
            (None, Some(_)) => {
                bad("username", "fleet: a password needs fleet.username".into());
                None
            }
        };
        let tls = self.tls.map(|t| {
            let mut read = |key: &str, f: Option<String>| {
                let f = f?;
                match std::fs::read(dir.join(&f)) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        problems.push(at(
                            "fleet.tls",
                            Some(key),
                            format!("fleet.tls.{key} {f:?}: cannot read: {e}"),
                        ));
                        None
                    }
                }
            };
            let (has_cert, has_key) = (t.cert.is_some(), t.key.is_some());
            let ca = read("ca", t.ca);
            let cert = read("cert", t.cert);
            let key = read("key", t.key);
            if has_cert != has_key {
                problems.push(at(
                    "fleet.tls",
                    Some(if has_cert { "cert" } else { "key" }),
                    "fleet.tls: cert and key go together".into(),
                ));
            }
            FleetTls {
                ca,
                identity: cert.zip(key),
            }
        });
        (problems.len() == before).then(|| FleetConfig {
            endpoints: self.endpoints,
            cluster: self.cluster,
            instance: self.instance,
            quorum,
            timeout,
            lease_ttl,
            retry,
            state_file: dir.join(self.state_file.as_deref().unwrap_or("steerdns-fleet.json")),
            auth,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<FleetConfig, Vec<String>> {
        let spec: FleetSpec = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut problems = Vec::new();
        let dir = Path::new("/nonexistent-steerdns");
        spec.resolve(dir, &mut problems, |table, key, reason| {
            Problem::at(
                Path::new("t.toml"),
                None,
                format!("{table}.{}: {reason}", key.unwrap_or_default()),
            )
        })
        .ok_or_else(|| problems.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn defaults() {
        let c = resolve("endpoints = [\"http://127.0.0.1:2379\"]\ninstance = \"a\"").expect("ok");
        assert_eq!(c.cluster, "steerdns");
        assert_eq!(c.quorum, Quorum::Majority);
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.lease_ttl, Duration::from_secs(10));
        assert_eq!(
            c.state_file,
            PathBuf::from("/nonexistent-steerdns/steerdns-fleet.json")
        );
        assert_eq!((c.auth, c.tls), (None, None));
    }

    #[test]
    fn quorum_forms() {
        let q = |v: &str| {
            resolve(&format!(
                "endpoints = [\"http://e:1\"]\ninstance = \"a\"\nquorum = {v}"
            ))
            .map(|c| c.quorum)
        };
        assert_eq!(q("\"any\""), Ok(Quorum::Any));
        assert_eq!(q("\"all\""), Ok(Quorum::All));
        assert_eq!(q("2"), Ok(Quorum::Count(2)));
        assert_eq!(q("\"3\""), Ok(Quorum::Count(3)));
        assert!(q("0").is_err());
        assert!(q("\"most\"").expect_err("word")[0].contains("majority, any, all"));
        assert_eq!(Quorum::Majority.needed(3), 2);
        assert_eq!(Quorum::Majority.needed(2), 2);
        assert_eq!(Quorum::Majority.needed(1), 1);
        assert_eq!(Quorum::Any.needed(3), 1);
        assert_eq!(Quorum::All.needed(3), 3);
        assert_eq!(Quorum::All.needed(0), 1);
        assert_eq!(Quorum::Count(3).needed(2), 2);
    }

    #[test]
    fn errors_name_the_key() {
        let e = resolve("endpoints = []\ninstance = \"a/b\"\ncluster = \"\"").expect_err("bad");
        assert!(e.iter().any(|p| p.contains("fleet.endpoints")), "{e:?}");
        assert!(
            e.iter().any(|p| p.contains("fleet.instance \"a/b\"")),
            "{e:?}"
        );
        assert!(e.iter().any(|p| p.contains("fleet.cluster")), "{e:?}");
        let e = resolve("endpoints = [\"etcd:2379\"]\ninstance = \"a\"\nlease_ttl = \"1500ms\"\nusername = \"u\"")
            .expect_err("bad");
        assert!(
            e.iter().any(|p| p.contains("is not http://HOST:PORT")),
            "{e:?}"
        );
        assert!(e.iter().any(|p| p.contains("lease_ttl")), "{e:?}");
        assert!(e.iter().any(|p| p.contains("needs password")), "{e:?}");
        let e = resolve("endpoints = [\"https://e:1\"]\ninstance = \"a\"").expect_err("tls");
        assert!(e[0].contains("need [fleet.tls]"), "{e:?}");
        let e = resolve("endpoints = [\"https://e:1\"]\ninstance = \"a\"\n[tls]\nca = \"ca.pem\"\ncert = \"c.pem\"")
            .expect_err("files");
        assert!(
            e.iter()
                .any(|p| p.contains("fleet.tls.ca \"ca.pem\": cannot read")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|p| p.contains("cert and key go together")),
            "{e:?}"
        );
        let e = toml::from_str::<FleetSpec>("endpoints = []\ninstance = \"a\"\nlease = \"2s\"")
            .expect_err("typo");
        assert!(e.to_string().contains("unknown field `lease`"), "{e}");
        let e =
            toml::from_str::<FleetSpec>("endpoints = []\ninstance = \"a\"\n[tls]\ncafile = \"x\"")
                .expect_err("typo");
        assert!(e.to_string().contains("unknown field `cafile`"), "{e}");
    }
}
