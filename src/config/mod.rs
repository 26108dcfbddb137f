//! Configuration: the file format lives in [`file`]; this module turns it into the validated
//! runtime [`Config`] (absolute paths, parsed addresses and names, durations), collecting every
//! problem with the file, the line and the reason.
//!
//! What a reload may change: everything but `server.listen` and `admin.listen`, which need a
//! restart (the sockets are bound once), and `[fleet]` (the link to etcd starts once).

pub(crate) mod admin;
pub(crate) mod dnssec;
pub(crate) mod file;
pub mod fleet;
pub(crate) mod notify;
mod rrl;
mod udp;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;

use crate::health::spec::HealthSpec;
use crate::problem::{Problem, Problems};

/// Longest TTL accepted for a registry's answers.
pub(crate) const MAX_REGISTRY_TTL: Duration = Duration::from_secs(3600);
/// Most replicas per registry (routing keeps them in a 64-bit mask).
pub(crate) use crate::routing::MAX_REPLICAS;
/// Most answers per query for one registry.
pub(crate) const MAX_ANSWERS: u8 = 8;

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The config file this came from.
    pub(crate) path: PathBuf,
    /// DNS listen addresses (UDP and TCP on each).
    pub(crate) listen: Vec<SocketAddr>,
    /// Zone files directory.
    pub(crate) zones_dir: PathBuf,
    /// TCP idle timeout.
    pub(crate) tcp_idle_timeout: Duration,
    /// TCP connection cap.
    pub(crate) tcp_max_connections: usize,
    /// TCP connections per client (IPv4 address, IPv6 /64).
    pub(crate) tcp_max_per_client: usize,
    /// Deadline for reading one whole TCP query once it has begun.
    pub(crate) tcp_message_timeout: Duration,
    /// Deadline for writing one TCP answer.
    pub(crate) tcp_write_timeout: Duration,
    /// How long TCP connections may finish their answer after SIGTERM.
    pub(crate) shutdown_grace: Duration,
    /// Response rate limiting (UDP).
    pub(crate) rrl: RrlConfig,
    /// UDP worker threads per listen address and their pinning.
    pub(crate) udp: UdpConfig,
    /// The admin API settings.
    pub(crate) admin: crate::config::admin::AdminConfig,
    /// Latency table path (absolute).
    pub(crate) latency_table: Option<PathBuf>,
    /// mmdb paths (absolute), in the order given; empty: no geo database. At most one per IP
    /// version is checked when the files are opened (`routing::GeoSet`).
    pub mmdb: Vec<PathBuf>,
    /// Server-wide default region order.
    pub(crate) default_order: Vec<String>,
    /// Regions as configured (name, spec).
    pub(crate) regions: Vec<(String, file::RegionSpec)>,
    /// Server-wide health defaults.
    pub(crate) health: HealthSpec,
    /// Registries of the config file, sorted by key.
    pub(crate) registries: Vec<Registry>,
    /// Replica sets for the catalog's registries, sorted by key.
    pub(crate) templates: Vec<Template>,
    /// The registry catalog, when configured.
    pub(crate) catalog: Option<CatalogFiles>,
    /// The fleet (etcd) settings; None: a single server.
    pub(crate) fleet: Option<fleet::FleetConfig>,
    /// Webhooks events are POSTed to.
    pub(crate) webhooks: Vec<notify::WebhookConfig>,
    /// The zones signed and their keys (`[dnssec]`); None: nothing is signed.
    pub(crate) dnssec: Option<dnssec::DnssecConfig>,
    /// The log format (read again at start by `service::log_format_of`).
    pub(crate) log_format: crate::service::LogFormat,
}

/// `[log]`: `format = "text" | "json"`. Changing it needs a restart.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// `text` (default) or `json`.
    pub(crate) format: Option<crate::service::LogFormat>,
}

impl Config {
    /// The keys that differ between `self` (in service) and `next` but take effect only at a
    /// restart: the sockets, the writer's own files and `[fleet]` (the link starts once).
    /// Everything else a reload applies, `[server.tcp]`, `[server.rrl]` and the admin token
    /// file and allow-list included.
    pub(crate) fn restart_needed(&self, next: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.admin, &next.admin);
        [
            ("server.listen", self.listen != next.listen),
            ("server.udp_workers", self.udp.workers != next.udp.workers),
            ("server.udp_pin", self.udp.pin != next.udp.pin),
            ("admin.listen", a.listen != b.listen),
            ("admin.state_file", a.state_file != b.state_file),
            ("admin.event_history", a.event_history != b.event_history),
            ("fleet", self.fleet != next.fleet),
            ("notify", self.webhooks != next.webhooks),
            ("log.format", self.log_format != next.log_format),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }

    /// Every replica set: the templates, then the config file's registries.
    pub(crate) fn sets(&self) -> impl Iterator<Item = (&Template, bool)> {
        self.templates
            .iter()
            .map(|t| (t, true))
            .chain(self.registries.iter().map(|r| (&r.set, false)))
    }
}

pub(crate) use rrl::RrlConfig;
pub(crate) use udp::{UdpConfig, UdpPin};

/// Where the registry catalog and its journal of runtime changes live.
#[derive(Clone, Debug)]
pub(crate) struct CatalogFiles {
    /// The catalog (CSV, one registry a line).
    pub(crate) file: PathBuf,
    /// The journal of admin changes, applied on top of the catalog at load.
    pub(crate) journal: PathBuf,
}

/// A replica set with its answer and health settings: a `[templates.KEY]` table, or the
/// body of a `[registries.KEY]` table.
#[derive(Debug)]
pub(crate) struct Template {
    /// The table key (`[templates.KEY]`, or the registry's `[registries.KEY]`).
    pub(crate) key: String,
    /// Default answer TTL in seconds.
    pub(crate) ttl: u32,
    /// Default replicas per answer.
    pub(crate) answers: u8,
    /// Default order override.
    pub(crate) default_order: Option<Vec<String>>,
    /// Health settings between the server's and each replica's.
    pub(crate) health: HealthSpec,
    /// Replicas, sorted by key; the position is the replica index.
    pub(crate) replicas: Vec<Replica>,
}

/// A registry of the config file: one global name and its own replica set.
#[derive(Debug)]
pub(crate) struct Registry {
    /// The global name.
    pub(crate) name: Name,
    /// Its replicas and settings (`set.key` is the `[registries.KEY]` key).
    pub(crate) set: Template,
}

/// A replica of a registry in one region.
#[derive(Debug)]
pub(crate) struct Replica {
    /// The table key (`[registries.R.replicas.KEY]`).
    pub(crate) key: String,
    /// Region name.
    pub(crate) region: String,
    /// IPv4 addresses.
    pub(crate) ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub(crate) ipv6: Vec<Ipv6Addr>,
    /// CNAME target instead of addresses.
    pub(crate) cname: Option<Name>,
    /// Replica-level health settings.
    pub(crate) health: HealthSpec,
}

impl Config {
    /// Read and validate a config file. Zone and geo files are checked elsewhere.
    pub(crate) fn load(path: &Path) -> Result<Self, Problems> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Problems(vec![Problem::file(path, format!("cannot read: {e}"))]))?;
        Self::from_toml(&text, path)
    }

    /// Parse and validate config text; `path` names the file in errors and anchors relative
    /// paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, Problems> {
        let spec: file::Spec = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start));
            Problems(vec![Problem::at(path, line, e.message().to_string())])
        })?;
        Self::from_spec(spec, text, path)
    }

    fn from_spec(spec: file::Spec, text: &str, path: &Path) -> Result<Self, Problems> {
        let mut problems = Vec::new();
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let at = |table: &str, key: Option<&str>, reason: String| {
            Problem::at(path, line_of(text, table, key), reason)
        };

        let file::Spec {
            version,
            server,
            admin,
            routing,
            regions,
            health,
            registries,
            templates,
            catalog,
            fleet,
            notify,
            dnssec,
            log,
        } = spec;
        // Under systemd's StateDirectory= the state files the config does not name go there,
        // not beside the config (which the unit keeps read-only).
        let state_dir = state_directory();
        let fleet_default = fleet.as_ref().is_some_and(|f| f.state_file.is_none());
        let mut fleet = fleet.and_then(|f| f.resolve(&base, &mut problems, at));
        if let (Some(dir), Some(f), true) = (&state_dir, fleet.as_mut(), fleet_default) {
            f.state_file = dir.join("steerdns-fleet.json");
        }
        let webhooks = notify.resolve(&base, &mut problems, at);
        let dnssec = dnssec.and_then(|d| d.resolve(&base, &mut problems, at));
        if version != 1 {
            problems.push(at(
                "",
                Some("version"),
                format!("unsupported version {version}; this steerdns reads version 1"),
            ));
        }

        let file::ServerSpec {
            listen,
            zones_dir,
            geo_dir,
            tcp,
            shutdown_grace,
            rrl,
            udp_workers,
            udp_pin,
        } = server;
        let rrl = RrlConfig::from_spec(rrl, &mut problems, |key, reason| {
            at("server.rrl", Some(key), reason)
        });
        let udp = UdpConfig::from_spec(udp_workers, udp_pin, &mut problems, |key, reason| {
            at("server", Some(key), reason)
        });
        if tcp.max_per_client == 0 {
            problems.push(at(
                "server.tcp",
                Some("max_per_client"),
                "max_per_client must be at least 1".into(),
            ));
        }
        for (key, d) in [
            ("message_timeout", tcp.message_timeout),
            ("write_timeout", tcp.write_timeout),
        ] {
            if d.0.is_zero() {
                problems.push(at(
                    "server.tcp",
                    Some(key),
                    format!("{key} must be more than 0s"),
                ));
            }
        }
        let mut addrs = Vec::new();
        for l in &listen {
            match l.parse::<SocketAddr>() {
                Ok(a) => addrs.push(a),
                Err(_) => problems.push(at(
                    "server",
                    Some("listen"),
                    format!("listen address {l:?} is not ADDR:PORT (IPv6 in brackets)"),
                )),
            }
        }
        if tcp.max_connections == 0 {
            problems.push(at(
                "server.tcp",
                Some("max_connections"),
                "max_connections must be at least 1".into(),
            ));
        }
        if tcp.idle_timeout.0.is_zero() {
            problems.push(at(
                "server.tcp",
                Some("idle_timeout"),
                "idle_timeout must be more than 0s".into(),
            ));
        }
        let admin_default = admin.state_file.is_none();
        let admin = match admin.resolve(&base) {
            Ok(mut a) => {
                if let (Some(dir), true) = (&state_dir, admin_default) {
                    a.state_file = dir.join(crate::overrides::DEFAULT_STATE_FILE);
                }
                Some(a)
            }
            Err(reason) => {
                let key = reason
                    .split(':')
                    .next()
                    .and_then(|k| k.strip_prefix("admin."))
                    .map(str::to_owned);
                problems.push(at("admin", key.as_deref(), reason));
                None
            }
        };
        let geo_dir = base.join(geo_dir);
        let file::RoutingSpec {
            latency_table,
            mmdb,
            default_order,
        } = routing;

        let region_names: Vec<String> = regions.keys().cloned().collect();
        let known_region = |r: &str| region_names.iter().any(|n| n == r);
        for r in &default_order {
            if !known_region(r) {
                problems.push(at(
                    "routing",
                    Some("default_order"),
                    format!("default_order names region {r:?}, which has no [regions.{r}] table"),
                ));
            }
        }
        let mmdb: Vec<PathBuf> = match mmdb {
            None => Vec::new(),
            Some(file::Paths(list)) => {
                if list.is_empty() {
                    problems.push(at(
                        "routing",
                        Some("mmdb"),
                        "mmdb = [] names no database; leave the key out to run without one".into(),
                    ));
                }
                let paths: Vec<PathBuf> = list.iter().map(|f| geo_dir.join(f)).collect();
                for (i, p) in paths.iter().enumerate() {
                    if let Some(j) = paths[..i].iter().position(|q| q == p) {
                        problems.push(at(
                            "routing",
                            Some("mmdb"),
                            format!("mmdb names one file twice: {:?} and {:?}", list[j], list[i]),
                        ));
                    }
                }
                paths
            }
        };

        // Registries and templates share their body: one validation makes a `Template`.
        let mut body = |table: &str, key: String, t: file::TemplateSpec| {
            let file::TemplateSpec {
                ttl,
                answers,
                default_order,
                health,
                replicas,
            } = t;
            let b = Body {
                ttl,
                answers,
                default_order: &default_order,
                replicas,
            };
            let (ttl, replicas) = b.validate(table, &key, &known_region, &at, &mut problems);
            Template {
                key,
                ttl,
                answers,
                default_order,
                health,
                replicas,
            }
        };
        let mut regs = Vec::new();
        let mut bad_names = Vec::new();
        for (key, r) in registries {
            let table = format!("registries.{key}");
            let file::RegistrySpec {
                name,
                ttl,
                answers,
                default_order,
                health,
                replicas,
            } = r;
            let set = body(
                &table,
                key,
                file::TemplateSpec {
                    ttl,
                    answers,
                    default_order,
                    health,
                    replicas,
                },
            );
            match Name::from_ascii(&name) {
                Ok(mut n) => {
                    n.set_fqdn(true);
                    regs.push(Registry { name: n, set });
                }
                Err(e) => bad_names.push(at(
                    &table,
                    Some("name"),
                    format!("name {name:?} is not a domain name: {e}"),
                )),
            }
        }
        let temps: Vec<Template> = templates
            .into_iter()
            .map(|(key, t)| body(&format!("templates.{key}"), key, t))
            .collect();
        problems.extend(bad_names);
        // A map, not a scan: configs with 100 000 registries load in linear time.
        let mut seen_names: std::collections::HashMap<&Name, &str> =
            std::collections::HashMap::new();
        for r in &regs {
            if let Some(other) = seen_names.insert(&r.name, &r.set.key) {
                problems.push(at(
                    &format!("registries.{}", r.set.key),
                    Some("name"),
                    format!("global name {} is also used by registry {other}", r.name),
                ));
            }
        }
        let catalog = catalog.map(|c| {
            let file = base.join(&c.file);
            let journal = match (&c.journal, &state_dir) {
                (Some(j), _) => base.join(j),
                (None, Some(dir)) => {
                    let mut name = file.file_name().unwrap_or_default().to_os_string();
                    name.push(".journal");
                    dir.join(name)
                }
                (None, None) => {
                    let mut name = file.clone().into_os_string();
                    name.push(".journal");
                    PathBuf::from(name)
                }
            };
            CatalogFiles { file, journal }
        });
        if catalog.is_some() && temps.is_empty() {
            problems.push(at(
                "catalog",
                None,
                "a catalog needs at least one [templates.NAME] table for its registries".into(),
            ));
        }

        let Some(admin) = admin.filter(|_| problems.is_empty()) else {
            return Err(Problems(problems));
        };
        Ok(Self {
            path: path.to_path_buf(),
            listen: addrs,
            zones_dir: base.join(zones_dir),
            latency_table: latency_table.map(|f| geo_dir.join(f)),
            mmdb,
            tcp_idle_timeout: tcp.idle_timeout.0,
            tcp_max_connections: tcp.max_connections,
            tcp_max_per_client: tcp.max_per_client,
            tcp_message_timeout: tcp.message_timeout.0,
            tcp_write_timeout: tcp.write_timeout.0,
            shutdown_grace: shutdown_grace.0,
            rrl,
            udp,
            admin,
            default_order,
            regions: regions.into_iter().collect(),
            health,
            registries: regs,
            templates: temps,
            catalog,
            fleet,
            webhooks,
            dnssec,
            log_format: log.format.unwrap_or_default(),
        })
    }
}

/// The part a registry and a template share: answers and replicas.
struct Body<'a> {
    ttl: file::Dur,
    answers: u8,
    default_order: &'a Option<Vec<String>>,
    replicas: std::collections::BTreeMap<String, file::ReplicaSpec>,
}

impl Body<'_> {
    /// Check TTL, answers, default order and replicas of `[table]`; returns the TTL in seconds
    /// and the replicas (sorted by key).
    fn validate(
        self,
        table: &str,
        key: &str,
        known_region: &dyn Fn(&str) -> bool,
        at: &dyn Fn(&str, Option<&str>, String) -> Problem,
        problems: &mut Vec<Problem>,
    ) -> (u32, Vec<Replica>) {
        let Body {
            ttl,
            answers,
            default_order,
            replicas,
        } = self;
        if ttl.0 > MAX_REGISTRY_TTL {
            problems.push(at(
                table,
                Some("ttl"),
                format!(
                    "ttl {}s is longer than the maximum of 3600s",
                    ttl.0.as_secs()
                ),
            ));
        }
        if answers == 0 || answers > MAX_ANSWERS {
            problems.push(at(
                table,
                Some("answers"),
                format!("answers must be between 1 and {MAX_ANSWERS}"),
            ));
        }
        if replicas.is_empty() {
            problems.push(at(table, None, format!("registry {key} has no replicas")));
        }
        if replicas.len() > MAX_REPLICAS {
            problems.push(at(
                table,
                None,
                format!("registry {key} has more than {MAX_REPLICAS} replicas"),
            ));
        }
        for r in default_order.iter().flatten() {
            if !known_region(r) {
                problems.push(at(
                    table,
                    Some("default_order"),
                    format!("default_order names region {r:?}, which has no [regions.{r}] table"),
                ));
            }
        }
        let mut reps = Vec::new();
        for (rkey, rep) in replicas {
            let rtable = format!("{table}.replicas.{rkey}");
            let file::ReplicaSpec {
                region,
                ipv4,
                ipv6,
                cname,
                health,
            } = rep;
            let region = region.unwrap_or_else(|| rkey.clone());
            if !known_region(&region) {
                problems.push(at(&rtable, Some("region"), format!("replica {rkey} is in region {region:?}, which has no [regions.{region}] table")));
            }
            let cname = match cname {
                None => None,
                Some(c) => match Name::from_ascii(&c) {
                    Ok(mut n) => {
                        n.set_fqdn(true);
                        Some(n)
                    }
                    Err(e) => {
                        problems.push(at(
                            &rtable,
                            Some("cname"),
                            format!("cname {c:?} is not a domain name: {e}"),
                        ));
                        None
                    }
                },
            };
            if cname.is_some() && !(ipv4.is_empty() && ipv6.is_empty()) {
                problems.push(at(
                    &rtable,
                    Some("cname"),
                    format!("replica {rkey} has both a cname and addresses; choose one"),
                ));
            }
            if cname.is_none() && ipv4.is_empty() && ipv6.is_empty() {
                problems.push(at(
                    &rtable,
                    None,
                    format!("replica {rkey} has neither addresses (ipv4/ipv6) nor a cname"),
                ));
            }
            reps.push(Replica {
                key: rkey,
                region,
                ipv4,
                ipv6,
                cname,
                health,
            });
        }
        (u32::try_from(ttl.0.as_secs()).unwrap_or(u32::MAX), reps)
    }
}

/// Best-effort line of `key` in `[table]` of a config file on disk (for problems found after
/// parsing).
pub(crate) fn line_in_file(path: &Path, table: &str, key: Option<&str>) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    line_of(&text, table, key)
}

/// 1-based line of a byte offset.
fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// Best-effort line of `key` inside `[table]` (or of the table header when `key` is None).
/// Used for errors found after parsing, where serde's spans are gone.
/// systemd's `StateDirectory=` (`$STATE_DIRECTORY`; the first when it lists several), if
/// set and absolute: the default place of the state files.
fn state_directory() -> Option<PathBuf> {
    state_directory_of(std::env::var_os("STATE_DIRECTORY")?.to_str()?)
}

fn state_directory_of(value: &str) -> Option<PathBuf> {
    let p = PathBuf::from(value.split(':').next()?);
    p.is_absolute().then_some(p)
}

fn line_of(text: &str, table: &str, key: Option<&str>) -> Option<usize> {
    let mut in_table = table.is_empty();
    let mut header_line = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_start_matches('[').trim_end_matches(']').trim();
            in_table = name == table;
            if in_table {
                header_line = Some(i + 1);
                if key.is_none() {
                    return header_line;
                }
            }
            continue;
        }
        if in_table
            && let Some(k) = key
            && t.split('=').next().is_some_and(|lhs| lhs.trim() == k)
        {
            return Some(i + 1);
        }
    }
    header_line
}

#[cfg(test)]
mod tests {

    #[test]
    fn state_directory_is_the_first_absolute_entry() {
        assert_eq!(
            state_directory_of("/var/lib/steerdns:/var/lib/other"),
            Some(PathBuf::from("/var/lib/steerdns"))
        );
        assert_eq!(state_directory_of("relative"), None);
        assert_eq!(state_directory_of(""), None);
    }

    use super::*;

    fn load(text: &str) -> Result<Config, Problems> {
        Config::from_toml(text, Path::new("/etc/steerdns/steerdns.toml"))
    }

    const GOOD: &str = r#"
version = 1
[server]
listen = ["127.0.0.1:5300", "[::1]:5300"]
[server.tcp]
idle_timeout = "5s"
[regions.westeurope]
[regions.eastus]
[routing]
default_order = ["westeurope", "eastus"]
latency_table = "latency.csv"
[registries.contoso]
name = "contoso.registry.example"
ttl = "20s"
[registries.contoso.replicas.westeurope]
ipv4 = ["192.0.2.10"]
[registries.contoso.replicas.east]
region = "eastus"
cname = "eastus.contoso.registry.example."
"#;

    #[test]
    fn good_config() {
        let c = load(GOOD).expect("valid");
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.zones_dir, PathBuf::from("/etc/steerdns/zones"));
        assert_eq!(
            c.latency_table,
            Some(PathBuf::from("/etc/steerdns/geo/latency.csv"))
        );
        assert_eq!(c.tcp_idle_timeout, Duration::from_secs(5));
        let r = &c.registries[0];
        assert_eq!(r.name.to_ascii(), "contoso.registry.example.");
        assert_eq!(r.set.ttl, 20);
        assert_eq!(r.set.replicas[0].key, "east");
        assert_eq!(r.set.replicas[0].region, "eastus");
        assert_eq!(r.set.replicas[1].region, "westeurope");
    }

    #[test]
    fn fleet_is_optional_and_its_errors_have_lines() {
        assert!(load(GOOD).expect("valid").fleet.is_none());
        let text = format!(
            "{GOOD}[fleet]\nendpoints = [\"http://127.0.0.1:2379\"]\ninstance = \"ns1\"\nquorum = \"most\"\n"
        );
        let e = load(&text).expect_err("bad quorum").to_string();
        let line = text
            .lines()
            .position(|l| l.starts_with("quorum"))
            .map(|i| i + 1);
        assert!(
            e.contains(&format!("steerdns.toml:{}:", line.unwrap_or(0))),
            "{e}"
        );
        let ok = text.replace("\"most\"", "2");
        let f = load(&ok).expect("valid").fleet.expect("fleet");
        assert_eq!(
            (f.instance.as_str(), f.quorum),
            ("ns1", fleet::Quorum::Count(2))
        );
        let typo = format!("{GOOD}[fleet]\nendpoint = []\ninstance = \"a\"\n");
        let e = load(&typo).expect_err("typo").to_string();
        assert!(e.contains("unknown field `endpoint`"), "{e}");
    }

    #[test]
    fn mmdb_is_one_path_or_a_list() {
        let with =
            |v: &str| GOOD.replace("latency_table = ", &format!("mmdb = {v}\nlatency_table = "));
        assert!(load(GOOD).expect("valid").mmdb.is_empty());
        let c = load(&with("\"GeoLite2-City.mmdb\"")).expect("one path");
        assert_eq!(
            c.mmdb,
            [PathBuf::from("/etc/steerdns/geo/GeoLite2-City.mmdb")]
        );
        let c = load(&with("[\"city-ipv4.mmdb\", \"/srv/geo/city-ipv6.mmdb\"]")).expect("list");
        assert_eq!(
            c.mmdb,
            [
                PathBuf::from("/etc/steerdns/geo/city-ipv4.mmdb"),
                PathBuf::from("/srv/geo/city-ipv6.mmdb")
            ]
        );
        // Empty, repeated, or neither a string nor a list of strings: file, line, reason.
        let e = load(&with("[]")).expect_err("empty");
        assert!(
            e.to_string()
                .contains("steerdns.toml:11: mmdb = [] names no database"),
            "{e}"
        );
        let e = load(&with("[\"a.mmdb\", \"./a.mmdb\"]")).expect_err("twice");
        assert!(
            e.to_string().contains(
                "steerdns.toml:11: mmdb names one file twice: \"a.mmdb\" and \"./a.mmdb\""
            ),
            "{e}"
        );
        let e = load(&with("3")).expect_err("number");
        assert!(e.to_string().contains("a path or a list of paths"), "{e}");
        assert_eq!(e.0[0].line, Some(11), "{e}");
    }

    #[test]
    fn syntax_error_has_line() {
        let e = load("version = 1\n[server]\nlisten = [\"127.0.0.1:53\"\nzones_dir = 3\n")
            .expect_err("bad");
        assert!(e.0[0].line.is_some(), "{e}");
    }

    #[test]
    fn unknown_key_names_it_and_its_line() {
        let e = load("version = 1\n[server]\nlisten = []\nzone_dir = \"x\"\n").expect_err("typo");
        assert_eq!(e.0[0].line, Some(4), "{e}");
        assert!(e.0[0].reason.contains("zone_dir"), "{e}");
    }

    #[test]
    fn semantic_errors_name_file_line_and_reason() {
        let text = GOOD
            .replace("region = \"eastus\"", "region = \"eastuss\"")
            .replace("ttl = \"20s\"", "ttl = \"2h\"");
        let e = load(&text).expect_err("bad");
        let s = e.to_string();
        assert!(
            s.contains("/etc/steerdns/steerdns.toml:14: ttl 7200s"),
            "{s}"
        );
        assert!(
            s.contains("steerdns.toml:18: replica east is in region \"eastuss\""),
            "{s}"
        );
        let e = load("version = 2\n").expect_err("version");
        assert_eq!(e.0[0].line, Some(1));
        let e = load(&GOOD.replace(
            "cname = \"eastus",
            "ipv4 = [\"192.0.2.1\"]\ncname = \"eastus",
        ))
        .expect_err("both");
        assert!(e.to_string().contains("both a cname and addresses"), "{e}");
        let e = load(&GOOD.replace("[\"127.0.0.1:5300\",", "[\"127.0.0.1\",")).expect_err("listen");
        assert!(e.to_string().contains("not ADDR:PORT"), "{e}");
    }

    #[test]
    fn udp_workers_default_to_the_cpus_and_reject_zero_on_its_line() {
        let c = load(GOOD).expect("valid");
        assert_eq!(c.udp.workers, udp::cpus_allowed());
        assert_eq!(c.udp.pin, UdpPin::Off);
        let with = |extra: &str| GOOD.replace("[server.tcp]", &format!("{extra}\n[server.tcp]"));
        let c = load(&with("udp_workers = 3\nudp_pin = [1, 0]")).expect("valid");
        assert_eq!(c.udp.workers, 3);
        assert_eq!(c.udp.pin, UdpPin::Cpus(vec![1, 0]));
        let c = load(&with("udp_pin = true")).expect("valid");
        assert_eq!(c.udp.pin, UdpPin::Allowed);
        let e = load(&with("udp_workers = 0")).expect_err("zero");
        assert!(
            e.to_string()
                .contains("/etc/steerdns/steerdns.toml:5: udp_workers must be at least 1"),
            "{e}"
        );
        let e = load(&with("udp_pin = []")).expect_err("empty list");
        assert_eq!(e.0[0].line, Some(5), "{e}");
        assert!(e.to_string().contains("udp_pin is true, false or"), "{e}");
        assert!(load(&with("udp_pin = \"yes\"")).is_err());
    }
}
