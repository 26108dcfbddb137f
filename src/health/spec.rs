//! Health-check configuration: the `HealthSpec` table as it appears in the TOML file at three
//! levels (server `[health]`, registry `[registries.NAME.health]`, replica
//! `[registries.NAME.replicas.R.health]`), and [`resolve`], which merges the layers (later ones
//! override earlier ones) into validated runtime [`ProbeSettings`].
//!
//! # Keys and defaults
//!
//! | key | default | levels | meaning |
//! | --- | --- | --- | --- |
//! | `mode` | `"deep"` | server, registry | `deep` routes on the deep check; `shallow` routes on the front-door check; `shadow` routes on shallow and reports what deep would have changed; `off` routes on latency only. Both checks run in every mode so a switch takes effect at once. |
//! | `url` | none | any (normally replica) | deep-health URL, `http` or `https` with a host. **No URL = the replica is not probed; its state stays `unknown`, which is routable.** |
//! | `headers` | `{}` | any | extra request headers, name → value; `Host` allowed (overrides the URL host for HTTP, not for TLS SNI) |
//! | `expect_status` | `["200-299"]` | any | accepted status codes: `"200"` or `"200-299"` |
//! | `body_contains` | none | any | the body must contain this substring |
//! | `json_field` / `json_equals` | none | any | the body must be JSON and the value at this dotted path (`"status"`, `"app.state"`) must equal `json_equals` (strings compare as text, other JSON values by their JSON text, e.g. `"true"`, `"1"`); both or neither |
//! | `timeout` | `"5s"` | any | whole probe: connect + TLS + headers + body; must be shorter than `interval` |
//! | `interval` | `"10s"` | any | time between probes of one target |
//! | `jitter` | `interval / 10` | any | each round starts up to ± this much off its slot; must be < `interval` |
//! | `failure_threshold` | `3` | any | consecutive failures that degrade (≥ 1) |
//! | `success_threshold` | `2` | any | consecutive successes that recover a degraded target (≥ 1) |
//! | `stale_after` | `3 × interval` | any | a verdict older than this (prober stuck) counts as `unknown`; must be > `interval` |
//! | `fresh_connection` | `false` | any | `true`: a new connection per probe (sees firewall / L4 faults keep-alive hides); `false`: keep-alive reuse |
//! | `insecure_skip_verify` | `false` | any | accept any TLS certificate (self-signed test replicas) |
//! | `shallow` | TCP connect to the deep URL's host:port | any | the front-door check: `"tcp://host:port"` or an `http(s)` URL (GET, same status rules) |
//! | `mass_failure_fraction` | `0.5` | server | if at least this fraction of all targets fail within one interval, hold state (suspect the prober's own network) |
//! | `mass_failure_min_targets` | `3` | server | ... and at least this many targets |
//! | `depends_on` | none | any (normally registry) | names of dependencies in the replica's JSON deep-health document that this registry needs (e.g. `["storage-eu-1", "auth"]`). With it, one deep URL per replica can serve every registry: the registry is judged only on those entries (missing = failing), not on the whole document. Without it, the whole probe result counts. |
//!
//! Durations are humantime strings (`"500ms"`, `"10s"`, `"1m"`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

/// One `[health]` table. Every field is optional; [`resolve`] fills defaults.
/// See the module doc for each key's default and meaning.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// `deep` | `shallow` | `shadow` | `off` (default `deep`; server and registry level only).
    pub mode: Option<HealthMode>,
    /// Deep-health URL (http or https). None anywhere = not probed (stays unknown = routable).
    pub url: Option<String>,
    /// Extra request headers (name → value); `Host` allowed. Layers merge key by key.
    pub headers: Option<BTreeMap<String, String>>,
    /// Accepted statuses, `"200"` or `"200-299"` (default `["200-299"]`).
    pub expect_status: Option<Vec<String>>,
    /// Body must contain this substring (default: no body check).
    pub body_contains: Option<String>,
    /// Dotted JSON path whose value must equal `json_equals` (default: none).
    pub json_field: Option<String>,
    /// Expected value at `json_field`.
    pub json_equals: Option<String>,
    /// Probe timeout, connect to last body byte (default `"5s"`, must be < interval).
    pub timeout: Option<String>,
    /// Probe interval (default `"10s"`).
    pub interval: Option<String>,
    /// Per-round jitter (default interval / 10).
    pub jitter: Option<String>,
    /// Consecutive failures that degrade (default 3).
    pub failure_threshold: Option<u32>,
    /// Consecutive successes that recover (default 2).
    pub success_threshold: Option<u32>,
    /// Verdict age after which it counts as unknown (default 3 intervals).
    pub stale_after: Option<String>,
    /// New connection per probe (default false = keep-alive reuse).
    pub fresh_connection: Option<bool>,
    /// Accept invalid TLS certificates (default false).
    pub insecure_skip_verify: Option<bool>,
    /// Front-door check: `tcp://host:port` or an http(s) URL (default: TCP connect to the deep
    /// URL's host:port).
    pub shallow: Option<String>,
    /// Mass-failure guard fraction (default 0.5; server level only).
    pub mass_failure_fraction: Option<f64>,
    /// Mass-failure guard minimum number of failing targets (default 3; server level only).
    pub mass_failure_min_targets: Option<u32>,
    /// Dependencies of the deep document this registry is judged on (default: the whole
    /// probe result).
    pub depends_on: Option<Vec<String>>,
}

/// Which check drives routing for a registry.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum HealthMode {
    /// Route on the deep check (default).
    #[default]
    Deep,
    /// Route on the front-door (shallow) check.
    Shallow,
    /// Route on shallow, evaluate deep and report what it would have changed.
    Shadow,
    /// Latency only: health is ignored (disabled replicas still excluded).
    Off,
}

impl HealthMode {
    /// The lower-case name, as in the config file and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthMode::Deep => "deep",
            HealthMode::Shallow => "shallow",
            HealthMode::Shadow => "shadow",
            HealthMode::Off => "off",
        }
    }
}

impl std::str::FromStr for HealthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "deep" => Ok(HealthMode::Deep),
            "shallow" => Ok(HealthMode::Shallow),
            "shadow" => Ok(HealthMode::Shadow),
            "off" => Ok(HealthMode::Off),
            _ => Err(format!(
                "unknown mode {s:?}; expected deep, shallow, shadow or off"
            )),
        }
    }
}

impl fmt::Display for HealthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a `HealthSpec` appears; some keys are only allowed at some levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpecLevel {
    /// `[health]`
    Server,
    /// `[registries.NAME.health]`
    Registry,
    /// `[registries.NAME.replicas.R.health]`
    Replica,
}

/// A configuration error; the message names the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("health.{key}: {reason}")]
pub struct SpecError {
    /// The offending key (`timeout`, `url`, ...).
    pub(crate) key: &'static str,
    /// Why it was rejected.
    pub(crate) reason: String,
}

fn err(key: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError {
        key,
        reason: reason.into(),
    }
}

/// An inclusive range of accepted HTTP status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// Lowest accepted code.
    pub(crate) lo: u16,
    /// Highest accepted code.
    pub(crate) hi: u16,
}

impl StatusRange {
    /// Parses `"200"` or `"200-299"` (codes 100..=599).
    pub fn parse(s: &str) -> Result<Self, SpecError> {
        let bad = || {
            err(
                "expect_status",
                format!("{s:?} is not a status code or range like \"200-299\""),
            )
        };
        let code = |t: &str| -> Result<u16, SpecError> {
            let c: u16 = t.trim().parse().map_err(|_| bad())?;
            if (100..=599).contains(&c) {
                Ok(c)
            } else {
                Err(bad())
            }
        };
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (code(a)?, code(b)?),
            None => {
                let c = code(s)?;
                (c, c)
            }
        };
        if lo > hi {
            return Err(err("expect_status", format!("{s:?}: range is reversed")));
        }
        Ok(StatusRange { lo, hi })
    }

    /// Whether `code` is inside the range.
    pub(crate) fn contains(&self, code: u16) -> bool {
        (self.lo..=self.hi).contains(&code)
    }
}

/// An HTTP(S) check: GET `url`, judge status, body and JSON.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    /// The URL (http or https, with a host). Redirects are never followed.
    pub url: Url,
    /// Extra headers in name order (validated: token names, no CR/LF in values).
    pub(crate) headers: Vec<(String, String)>,
    /// Accepted statuses.
    pub expect_status: Vec<StatusRange>,
    /// Required body substring.
    pub(crate) body_contains: Option<String>,
    /// Required JSON value: (dotted path, expected text).
    pub(crate) json: Option<(String, String)>,
    /// A new connection per probe.
    pub(crate) fresh_connection: bool,
    /// Accept invalid certificates.
    pub(crate) insecure_skip_verify: bool,
}

/// What one probe does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckSpec {
    /// HTTP(S) GET with status / body / JSON rules.
    Http(HttpCheck),
    /// TCP connect to host:port.
    Tcp {
        /// Host name or address literal.
        host: String,
        /// Port.
        port: u16,
    },
}

impl fmt::Display for CheckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckSpec::Http(h) => write!(f, "GET {}", h.url),
            CheckSpec::Tcp { host, port } => {
                if host.contains(':') {
                    write!(f, "tcp://[{host}]:{port}")
                } else {
                    write!(f, "tcp://{host}:{port}")
                }
            }
        }
    }
}

/// Probe timing of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timing {
    /// Time between probes.
    pub(crate) interval: Duration,
    /// Whole-probe timeout (< interval).
    pub timeout: Duration,
    /// Per-round jitter (< interval).
    pub(crate) jitter: Duration,
    /// Verdict age after which it counts as unknown.
    pub(crate) stale_after: Duration,
}

/// Consecutive-outcome thresholds of the state machine (both ≥ 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Thresholds {
    /// Consecutive failures that degrade.
    pub(crate) failure: u32,
    /// Consecutive successes that recover from degraded.
    pub(crate) success: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            failure: 3,
            success: 2,
        }
    }
}

/// Validated settings of one replica of one registry (the merged layers).
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSettings {
    /// Routing mode.
    pub(crate) mode: HealthMode,
    /// The deep check; `None` when no `url` is configured (not probed, stays unknown).
    pub deep: Option<CheckSpec>,
    /// The shallow (front-door) check; `None` when neither `url` nor `shallow` is set.
    pub(crate) shallow: Option<CheckSpec>,
    /// Deep-document dependencies judged instead of the whole result (sorted, deduplicated).
    pub(crate) depends_on: Option<Vec<String>>,
    /// Probe timing.
    pub(crate) timing: Timing,
    /// State machine thresholds.
    pub(crate) thresholds: Thresholds,
}

/// Server-level mass-failure guard settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GuardSettings {
    /// Fraction of all targets (0 < f ≤ 1).
    pub(crate) fraction: f64,
    /// Minimum number of failing targets.
    pub(crate) min_targets: u32,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            fraction: 0.5,
            min_targets: 3,
        }
    }
}

impl HealthSpec {
    /// Rejects keys that are not allowed at `level` (`mode` only at server and registry level,
    /// `mass_failure_*` only at server level).
    pub(crate) fn check_level(&self, level: SpecLevel) -> Result<(), SpecError> {
        if level == SpecLevel::Replica && self.mode.is_some() {
            return Err(err("mode", "only allowed at server and registry level"));
        }
        if level != SpecLevel::Server {
            if self.mass_failure_fraction.is_some() {
                return Err(err("mass_failure_fraction", "only allowed at server level"));
            }
            if self.mass_failure_min_targets.is_some() {
                return Err(err(
                    "mass_failure_min_targets",
                    "only allowed at server level",
                ));
            }
        }
        Ok(())
    }

    /// The mass-failure guard settings of a server-level spec.
    pub(crate) fn guard(&self) -> Result<GuardSettings, SpecError> {
        let d = GuardSettings::default();
        let fraction = self.mass_failure_fraction.unwrap_or(d.fraction);
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(err("mass_failure_fraction", "must be in (0, 1]"));
        }
        let min_targets = self.mass_failure_min_targets.unwrap_or(d.min_targets);
        if min_targets == 0 {
            return Err(err("mass_failure_min_targets", "must be at least 1"));
        }
        Ok(GuardSettings {
            fraction,
            min_targets,
        })
    }
}

/// Merges `layers` (server, registry, replica: later ones override earlier ones, `headers`
/// merge by name) and validates the result.
pub fn resolve(layers: &[&HealthSpec]) -> Result<ProbeSettings, SpecError> {
    macro_rules! last {
        ($f:ident) => {
            layers.iter().rev().find_map(|l| l.$f.clone())
        };
    }
    let mode = last!(mode).unwrap_or_default();
    let interval = duration("interval", last!(interval))?.unwrap_or(Duration::from_secs(10));
    if interval.is_zero() {
        return Err(err("interval", "must be positive"));
    }
    let timeout = duration("timeout", last!(timeout))?.unwrap_or(Duration::from_secs(5));
    if timeout.is_zero() {
        return Err(err("timeout", "must be positive"));
    }
    if timeout >= interval {
        return Err(err("timeout", "timeout must be shorter than interval"));
    }
    let jitter = duration("jitter", last!(jitter))?.unwrap_or(interval / 10);
    if jitter >= interval {
        return Err(err("jitter", "jitter must be shorter than interval"));
    }
    let stale_after = duration("stale_after", last!(stale_after))?.unwrap_or(interval * 3);
    if stale_after <= interval {
        return Err(err(
            "stale_after",
            "stale_after must be longer than interval",
        ));
    }
    let failure = last!(failure_threshold).unwrap_or(3);
    if failure == 0 {
        return Err(err("failure_threshold", "must be at least 1"));
    }
    let success = last!(success_threshold).unwrap_or(2);
    if success == 0 {
        return Err(err("success_threshold", "must be at least 1"));
    }

    let mut headers = BTreeMap::new();
    for l in layers {
        if let Some(h) = &l.headers {
            headers.extend(h.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    for (k, v) in &headers {
        if k.is_empty() || !k.bytes().all(is_token_byte) {
            return Err(err("headers", format!("{k:?} is not a valid header name")));
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(err(
                "headers",
                format!("value of {k:?} contains CR, LF or NUL"),
            ));
        }
    }
    let headers: Vec<(String, String)> = headers.into_iter().collect();

    let expect_status = match last!(expect_status) {
        None => vec![StatusRange { lo: 200, hi: 299 }],
        Some(v) if v.is_empty() => return Err(err("expect_status", "must not be empty")),
        Some(v) => v
            .iter()
            .map(|s| StatusRange::parse(s))
            .collect::<Result<_, _>>()?,
    };
    let body_contains = last!(body_contains);
    if body_contains.as_deref() == Some("") {
        return Err(err("body_contains", "must not be empty"));
    }
    let json = match (last!(json_field), last!(json_equals)) {
        (None, None) => None,
        (Some(f), Some(e)) => {
            if f.is_empty() || f.split('.').any(str::is_empty) {
                return Err(err(
                    "json_field",
                    format!("{f:?} is not a dotted path like \"status\" or \"app.state\""),
                ));
            }
            Some((f, e))
        }
        (Some(_), None) => return Err(err("json_equals", "json_field needs json_equals")),
        (None, Some(_)) => return Err(err("json_field", "json_equals needs json_field")),
    };
    let fresh_connection = last!(fresh_connection).unwrap_or(false);
    let insecure_skip_verify = last!(insecure_skip_verify).unwrap_or(false);
    let depends_on = match last!(depends_on) {
        None => None,
        Some(v) if v.is_empty() || v.iter().any(|d| d.trim().is_empty()) => {
            return Err(err(
                "depends_on",
                "must list at least one non-empty dependency name",
            ));
        }
        Some(mut v) => {
            v.sort();
            v.dedup();
            Some(v)
        }
    };

    let deep_url = last!(url).map(|u| http_url("url", &u)).transpose()?;
    let deep = deep_url.clone().map(|url| {
        CheckSpec::Http(HttpCheck {
            url,
            headers: headers.clone(),
            expect_status: expect_status.clone(),
            body_contains: body_contains.clone(),
            json: json.clone(),
            fresh_connection,
            insecure_skip_verify,
        })
    });
    let shallow = match last!(shallow) {
        Some(s) if s.starts_with("tcp://") => Some(tcp_target(&s)?),
        Some(s) => {
            let url = http_url("shallow", &s)?;
            // The front door is judged on its status only; deep body rules do not apply.
            // The Host header still matters for virtual hosting, so it is kept.
            Some(CheckSpec::Http(HttpCheck {
                url,
                headers,
                expect_status,
                body_contains: None,
                json: None,
                fresh_connection,
                insecure_skip_verify,
            }))
        }
        None => deep_url.as_ref().and_then(|u| {
            let host = u
                .host_str()?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = u.port_or_known_default()?;
            Some(CheckSpec::Tcp { host, port })
        }),
    };

    Ok(ProbeSettings {
        mode,
        deep,
        shallow,
        timing: Timing {
            interval,
            timeout,
            jitter,
            stale_after,
        },
        thresholds: Thresholds { failure, success },
        depends_on,
    })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn duration(key: &'static str, v: Option<String>) -> Result<Option<Duration>, SpecError> {
    v.map(|s| humantime::parse_duration(&s).map_err(|e| err(key, format!("{s:?}: {e}"))))
        .transpose()
}

fn http_url(key: &'static str, s: &str) -> Result<Url, SpecError> {
    let url = Url::parse(s).map_err(|e| err(key, format!("{s:?}: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(err(key, format!("{s:?}: scheme must be http or https")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err(key, format!("{s:?}: URL has no host")));
    }
    Ok(url)
}

fn tcp_target(s: &str) -> Result<CheckSpec, SpecError> {
    let bad = || err("shallow", format!("{s:?}: expected tcp://host:port"));
    let url = Url::parse(s).map_err(|_| bad())?;
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    let port = url.port().ok_or_else(bad)?;
    if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
        return Err(bad());
    }
    Ok(CheckSpec::Tcp {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> HealthSpec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_without_url_mean_not_probed() {
        let s = resolve(&[&HealthSpec::default()]).unwrap();
        assert_eq!(s.mode, HealthMode::Deep);
        assert!(s.deep.is_none());
        assert!(s.shallow.is_none());
        assert_eq!(s.timing.interval, Duration::from_secs(10));
        assert_eq!(s.timing.timeout, Duration::from_secs(5));
        assert_eq!(s.timing.jitter, Duration::from_secs(1));
        assert_eq!(s.timing.stale_after, Duration::from_secs(30));
        assert_eq!(
            s.thresholds,
            Thresholds {
                failure: 3,
                success: 2
            }
        );
    }

    #[test]
    fn layers_override_and_headers_merge() {
        let server =
            spec("interval = \"20s\"\ntimeout = \"2s\"\nheaders = { A = \"1\", B = \"2\" }");
        let reg = spec("mode = \"shadow\"\nfailure_threshold = 5\nheaders = { B = \"3\" }");
        let rep = spec(
            "url = \"https://we.example:8443/health?registry=c\"\nheaders = { Host = \"c.example\" }",
        );
        let s = resolve(&[&server, &reg, &rep]).unwrap();
        assert_eq!(s.mode, HealthMode::Shadow);
        assert_eq!(s.timing.interval, Duration::from_secs(20));
        assert_eq!(s.timing.timeout, Duration::from_secs(2));
        assert_eq!(s.thresholds.failure, 5);
        let Some(CheckSpec::Http(h)) = &s.deep else {
            panic!()
        };
        assert_eq!(
            h.headers,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "3".into()),
                ("Host".into(), "c.example".into())
            ]
        );
        assert_eq!(h.expect_status, vec![StatusRange { lo: 200, hi: 299 }]);
        assert_eq!(
            s.shallow,
            Some(CheckSpec::Tcp {
                host: "we.example".into(),
                port: 8443
            })
        );
    }

    #[test]
    fn shallow_forms() {
        let rep = spec("url = \"http://127.0.3.1/health\"\nshallow = \"tcp://10.0.0.1:443\"");
        assert_eq!(
            resolve(&[&rep]).unwrap().shallow,
            Some(CheckSpec::Tcp {
                host: "10.0.0.1".into(),
                port: 443
            })
        );
        let rep = spec("url = \"http://[::1]/health\"");
        assert_eq!(
            resolve(&[&rep]).unwrap().shallow,
            Some(CheckSpec::Tcp {
                host: "::1".into(),
                port: 80
            })
        );
        let rep =
            spec("url = \"http://a/health\"\nshallow = \"https://a/\"\nbody_contains = \"x\"");
        let Some(CheckSpec::Http(h)) = resolve(&[&rep]).unwrap().shallow else {
            panic!()
        };
        assert_eq!(h.url.as_str(), "https://a/");
        assert_eq!(h.body_contains, None);
        for bad in ["tcp://a", "tcp://:80", "ftp://a/", "tcp://a:80/x"] {
            let rep = HealthSpec {
                shallow: Some(bad.into()),
                ..Default::default()
            };
            assert_eq!(resolve(&[&rep]).unwrap_err().key, "shallow", "{bad}");
        }
    }

    #[test]
    fn rejections_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "timeout = \"10s\"",
                "timeout",
                "timeout must be shorter than interval",
            ),
            ("timeout = \"0s\"", "timeout", "must be positive"),
            ("interval = \"abc\"", "interval", ""),
            (
                "jitter = \"10s\"",
                "jitter",
                "jitter must be shorter than interval",
            ),
            ("stale_after = \"5s\"", "stale_after", ""),
            (
                "failure_threshold = 0",
                "failure_threshold",
                "must be at least 1",
            ),
            (
                "success_threshold = 0",
                "success_threshold",
                "must be at least 1",
            ),
            ("url = \"ftp://x/\"", "url", "scheme must be http or https"),
            ("url = \"http://:80/x\"", "url", ""),
            ("url = \"not a url\"", "url", ""),
            ("headers = { X = \"a\\r\\nB: c\" }", "headers", "CR"),
            (
                "headers = { \"X Y\" = \"a\" }",
                "headers",
                "not a valid header name",
            ),
            ("expect_status = [\"2xx\"]", "expect_status", ""),
            ("expect_status = [\"299-200\"]", "expect_status", "reversed"),
            ("expect_status = [\"99\"]", "expect_status", ""),
            ("expect_status = []", "expect_status", ""),
            ("json_field = \"status\"", "json_equals", ""),
            ("json_equals = \"ok\"", "json_field", ""),
            (
                "json_field = \"a..b\"\njson_equals = \"x\"",
                "json_field",
                "",
            ),
            ("body_contains = \"\"", "body_contains", ""),
            ("depends_on = []", "depends_on", ""),
            ("depends_on = [\"\"]", "depends_on", ""),
        ];
        for (text, key, reason) in cases {
            let e = resolve(&[&spec(text)]).unwrap_err();
            assert_eq!(e.key, *key, "{text}");
            assert!(e.reason.contains(reason), "{text}: {e}");
            assert!(e.to_string().starts_with(&format!("health.{key}")));
        }
    }

    #[test]
    fn unknown_keys_and_modes_are_rejected() {
        assert!(toml::from_str::<HealthSpec>("intervall = \"1s\"").is_err());
        assert!(toml::from_str::<HealthSpec>("mode = \"loud\"").is_err());
        for m in ["deep", "shallow", "shadow", "off"] {
            let s = spec(&format!("mode = \"{m}\""));
            assert_eq!(s.mode.unwrap().to_string(), m);
        }
    }

    #[test]
    fn levels() {
        let s = spec("mode = \"off\"");
        assert!(s.check_level(SpecLevel::Server).is_ok());
        assert!(s.check_level(SpecLevel::Registry).is_ok());
        assert_eq!(s.check_level(SpecLevel::Replica).unwrap_err().key, "mode");
        let s = spec("mass_failure_fraction = 0.3\nmass_failure_min_targets = 5");
        assert!(s.check_level(SpecLevel::Server).is_ok());
        assert!(s.check_level(SpecLevel::Registry).is_err());
        assert_eq!(
            s.guard().unwrap(),
            GuardSettings {
                fraction: 0.3,
                min_targets: 5
            }
        );
        assert_eq!(
            HealthSpec::default().guard().unwrap(),
            GuardSettings::default()
        );
        assert!(spec("mass_failure_fraction = 0.0").guard().is_err());
        assert!(spec("mass_failure_fraction = 1.5").guard().is_err());
        assert!(spec("mass_failure_min_targets = 0").guard().is_err());
    }

    #[test]
    fn status_ranges() {
        let r = StatusRange::parse("200-204").unwrap();
        assert!(r.contains(200) && r.contains(204) && !r.contains(205));
        assert_eq!(
            StatusRange::parse("503").unwrap(),
            StatusRange { lo: 503, hi: 503 }
        );
        assert!(StatusRange::parse("600").is_err());
        assert!(StatusRange::parse("-").is_err());
    }

    #[test]
    fn json_and_tcp_display() {
        let s =
            spec("url = \"http://h/x\"\njson_field = \"app.status\"\njson_equals = \"healthy\"");
        let Some(CheckSpec::Http(h)) = resolve(&[&s]).unwrap().deep else {
            panic!()
        };
        assert_eq!(h.json, Some(("app.status".into(), "healthy".into())));
        assert_eq!(
            CheckSpec::Tcp {
                host: "::1".into(),
                port: 5
            }
            .to_string(),
            "tcp://[::1]:5"
        );
    }
}
