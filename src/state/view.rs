//! The JSON shapes of the admin API (`/v1/status`, `/v1/events`, request bodies, replies).
//! Plain data: the writer (`state::writer`) fills [`StatusView`] from the snapshot, the health book and the
//! overrides; the CLI client deserializes the same types.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::health::state::Status;
use crate::overrides::{AuditAction, AuditEvent, format_time};

//------------ ReplicaState ---------------------------------------------------------------------

/// What routing sees of a replica: its health verdict, or `disabled` by an operator override.
/// Serialised lowercase (`"healthy"`); the metrics' `state` label uses the same words.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    /// No verdict yet, or the verdict expired; routable.
    #[default]
    Unknown,
    /// Passing; routable.
    Healthy,
    /// Failing; not routable (unless every replica is, and the registry fails open).
    Degraded,
    /// Disabled by an operator override; never routable.
    Disabled,
}

impl ReplicaState {
    /// Every state, in the order above.
    pub const ALL: [Self; 4] = [Self::Unknown, Self::Healthy, Self::Degraded, Self::Disabled];

    /// The word used in the API, the CLI and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Disabled => "disabled",
        }
    }
}

impl std::str::FromStr for ReplicaState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a state: unknown, healthy, degraded or disabled"))
    }
}

impl From<Status> for ReplicaState {
    fn from(s: Status) -> Self {
        match s {
            Status::Unknown => Self::Unknown,
            Status::Healthy => Self::Healthy,
            Status::Degraded => Self::Degraded,
        }
    }
}

impl std::fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

//------------ Status ------------------------------------------------------------------------

/// `GET /v1/status`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct StatusView {
    /// Server facts.
    pub server: ServerFacts,
    /// The server-wide health mode (`deep`, `shallow`, `shadow`, `off`).
    pub mode: String,
    /// Whether the mass-failure guard is holding state.
    #[serde(default)]
    pub guard_engaged: bool,
    /// One page of registries, by key (all of them up to `limit`; see [`StatusQuery`]).
    pub registries: Vec<RegistryStatus>,
    /// Counts over every registry (not only the page).
    #[serde(default)]
    pub summary: StatusSummary,
    /// The key to pass as `after` for the next page; None on the last page.
    #[serde(default)]
    pub next: Option<String>,
    /// The fleet link, when `[fleet]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// `fleet` in `GET /v1/status`: this instance's link to the fleet's etcd.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct FleetStatus {
    /// This instance's id.
    pub instance: String,
    /// Whether the link to etcd is up and its watch current (routing then reads the fleet's
    /// verdicts; otherwise this instance's own).
    pub connected: bool,
    /// Instances with a live lease, as the watch last showed them.
    pub live: Vec<String>,
    /// The quorum rule and how many reports it needs among the live instances.
    pub quorum: String,
    /// Reports needed for a fleet verdict degraded.
    pub needed: usize,
    /// Changes made here and applied locally, not yet written to etcd (etcd keys).
    pub pending: Vec<String>,
    /// Changes that lost to a later one by the conflict rule, since start.
    pub lost: u64,
    /// Since when (RFC 3339) the link is in its current state.
    #[serde(default)]
    pub since: Option<String>,
}

/// `fleet` on a replica in `GET /v1/status`: the fleet's verdict beside this instance's own.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct FleetReplicaView {
    /// What this instance's own probes say.
    pub own: ReplicaState,
    /// What the fleet says (degraded by a quorum of live instances, else healthy or own
    /// unknown).
    pub fleet: ReplicaState,
    /// The live instances that report it degraded.
    pub reported_by: Vec<String>,
}

/// `GET /v1/status` parameters: `?registry=KEY`, `?state=degraded` (registries with a replica
/// in that state), `?after=KEY` and `?limit=N` (default 100, at most 1000) for pages.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// Only this registry.
    #[serde(default)]
    pub registry: Option<String>,
    /// Only registries with a replica in this state.
    #[serde(default)]
    pub state: Option<ReplicaState>,
    /// Start after this key.
    #[serde(default)]
    pub after: Option<String>,
    /// Only keys that start with this (search; O(page), whatever the registry count).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Default page size of `GET /v1/status`.
pub(crate) const STATUS_PAGE: usize = 100;
/// Largest page of `GET /v1/status`.
pub(crate) const STATUS_PAGE_MAX: usize = 1000;

/// Counts over all registries.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct StatusSummary {
    /// Registries served.
    pub registries: u64,
    /// Registries failing open.
    pub(crate) fail_open: u64,
    /// Registry replicas by state.
    pub states: std::collections::BTreeMap<ReplicaState, u64>,
    /// Registry replicas by region, then state.
    pub regions: std::collections::BTreeMap<String, std::collections::BTreeMap<ReplicaState, u64>>,
    /// Resources by region: one line per (region, dependency name), or `*` for replicas
    /// judged on their whole probe result; bounded by regions × dependency names, not by
    /// registries or their dependency sets. Failing ones first.
    pub resources: Vec<ResourceStatus>,
}

/// One resource at one region: a dependency named by the deep-health documents of the
/// replicas there (`*`: the whole probe result).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct ResourceStatus {
    /// The replicas' region.
    pub region: String,
    /// The dependency (`*`: the whole probe result).
    pub resource: String,
    /// `degraded` when some replica there is degraded because this resource fails;
    /// `healthy` when every key judging it passes; else `unknown`.
    pub state: ReplicaState,
    /// Registries judged on it there.
    pub registries: u64,
    /// Of those, registries whose replica there is degraded because it fails.
    pub failing: u64,
}

/// Body of `PUT /v1/registries/KEY`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryRequest {
    /// The global name.
    pub name: String,
    /// A `[templates.NAME]` of the config.
    pub template: String,
    /// Dependencies it is judged on (absent: the template's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    /// Answer TTL, e.g. `"5s"` (absent: the template's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Replicas per answer (absent: the template's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<u8>,
}

/// Facts about the running server.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct ServerFacts {
    /// Build version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Snapshot generation in service.
    pub config_generation: u64,
    /// The config file.
    pub config_path: String,
    /// When the process started (RFC 3339).
    pub started_at: String,
    /// Whether `/ready` answers 200.
    pub ready: bool,
    /// Served zones.
    pub zones: Vec<ZoneFact>,
}

/// One served zone.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct ZoneFact {
    /// Zone origin.
    pub origin: String,
    /// SOA serial.
    pub serial: u32,
    /// Zone file.
    pub file: String,
}

/// One registry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct RegistryStatus {
    /// `[registries.KEY]`.
    pub key: String,
    /// The global name.
    pub name: String,
    /// This registry's effective health mode.
    pub mode: String,
    /// Whether it is failing open (every replica degraded: answering as if all were healthy).
    #[serde(default)]
    pub fail_open: bool,
    /// Replicas, in config order.
    pub replicas: Vec<ReplicaStatus>,
}

/// One replica of one registry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct ReplicaStatus {
    /// `[registries.R.replicas.KEY]`.
    pub key: String,
    /// Region.
    pub region: String,
    /// What routing sees.
    pub state: ReplicaState,
    /// Whether routing may answer with it now.
    pub routable: bool,
    /// In shadow mode: what deep health says, beside the shallow verdict routing used.
    #[serde(default)]
    pub shadow: Option<ShadowView>,
    /// Since when the health state holds (RFC 3339), if known.
    #[serde(default)]
    pub since: Option<String>,
    /// Consecutive passing probes.
    #[serde(default)]
    pub consecutive_successes: u32,
    /// Consecutive failing probes.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Whether the verdict expired because the prober went quiet.
    #[serde(default)]
    pub stale: bool,
    /// The last probe, if any.
    #[serde(default)]
    pub last_probe: Option<ProbeView>,
    /// The last deep-health document's dependency results.
    #[serde(default)]
    pub dependencies: Vec<DependencyView>,
    /// The operator override disabling it, if any.
    #[serde(default, rename = "override")]
    pub override_: Option<OverrideView>,
    /// The fleet's verdict and this instance's own, while the fleet's view is current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetReplicaView>,
}

/// Shadow mode, for one replica: routing follows the shallow check while deep checks run
/// beside it, so an operator trialling deep checks sees which replicas they would take out.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct ShadowView {
    /// The verdict routing used (the shallow check; `disabled` under an override).
    pub routed: ReplicaState,
    /// What the deep check says.
    pub deep: ReplicaState,
    /// Whether deep health would route to it (the whole registry judged on deep checks,
    /// fail-open included).
    pub deep_routable: bool,
    /// Why deep health disagrees: the deep probe's failure, when it failed.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The last probe of a replica.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct ProbeView {
    /// When (RFC 3339).
    pub at: String,
    /// Round trip in milliseconds.
    pub latency_ms: f64,
    /// `ok` or a failure label (`timeout`, `status`, `dependencies`, ...).
    pub result: String,
    /// The failure in words (empty when ok).
    #[serde(default)]
    pub reason: String,
}

/// One dependency from a deep-health document.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct DependencyView {
    /// Dependency name (`storage`, `cache`, ...).
    pub name: String,
    /// Its status as reported.
    pub status: String,
    /// Whether it counts as passing.
    pub ok: bool,
}

/// An override as shown in the status.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct OverrideView {
    /// `replica` or `region`.
    pub scope: String,
    /// Who set it.
    pub who: String,
    /// Why.
    pub reason: String,
    /// When (RFC 3339).
    pub created_at: String,
    /// Expiry (RFC 3339), if any.
    #[serde(default)]
    pub until: Option<String>,
}

impl From<&crate::overrides::Override> for OverrideView {
    fn from(o: &crate::overrides::Override) -> Self {
        Self {
            scope: match o.target {
                crate::overrides::Target::Replica { .. } => "replica".into(),
                crate::overrides::Target::Region { .. } => "region".into(),
            },
            who: o.who.clone(),
            reason: o.reason.clone(),
            created_at: format_time(o.created_at),
            until: o.until.map(format_time),
        }
    }
}

//------------ Events ------------------------------------------------------------------------

/// What kind of event.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The mass-failure guard engaged or released.
    Guard,
    /// A registry started or stopped failing open.
    FailOpen,
    /// A health mode switch.
    Mode,
    /// An operator override change (or expiry).
    Override,
    /// A config reload (ok or failed).
    Reload,
    /// Shadow mode: deep started or stopped disagreeing with shallow.
    Shadow,
    /// A health transition.
    Transition,
    /// An incident opened, changed or closed.
    Incident,
    /// The fleet's link to etcd was lost or is back.
    Fleet,
}

/// One entry of `GET /v1/events`, of the SSE stream and of a webhook's POST.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct EventView {
    /// Its number: increases by one per event for the life of the process (the SSE `id`,
    /// resumed from with `Last-Event-ID`). 0 until the log numbers it.
    #[serde(default)]
    pub id: u64,
    /// When (RFC 3339).
    pub at: String,
    /// What kind.
    pub kind: EventKind,
    /// The registry concerned, if one.
    #[serde(default)]
    pub registry: Option<String>,
    /// The replica (or region) concerned, if one.
    #[serde(default)]
    pub replica: Option<String>,
    /// What happened, in words.
    pub message: String,
    /// For `incident` events: opened, updated or closed, and the incident as it is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Box<IncidentEvent>>,
}

/// The incident part of an `incident` event.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct IncidentEvent {
    /// What happened to it.
    pub change: crate::state::incidents::Change,
    /// The incident.
    #[serde(flatten)]
    pub incident: IncidentView,
}

impl From<&AuditEvent> for EventView {
    fn from(e: &AuditEvent) -> Self {
        let (registry, replica) = match &e.target {
            crate::overrides::Target::Replica { registry, replica } => {
                (Some(registry.to_string()), Some(replica.to_string()))
            }
            crate::overrides::Target::Region { region } => (None, Some(region.to_string())),
        };
        Self {
            id: 0,
            at: format_time(e.at),
            kind: EventKind::Override,
            registry,
            replica,
            message: e.to_string(),
            incident: None,
        }
    }
}

//------------ Requests and replies ----------------------------------------------------------

/// `GET /v1/explain` parameters, parsed.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ExplainQuery {
    /// The name asked for.
    pub name: String,
    /// The packet source (the resolver).
    pub client: IpAddr,
    /// The ECS subnet, if the query carried one.
    pub ecs: Option<IpNet>,
    /// The query type (`type=AAAA`; default A).
    pub(crate) qtype: u16,
}

/// Body of `PUT /v1/overrides` (disable) and `DELETE /v1/overrides` (enable): either
/// `registry` + `replica`, or `region`.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideRequest {
    /// Registry key (with `replica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) registry: Option<String>,
    /// Replica key (with `registry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) replica: Option<String>,
    /// Region (alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) region: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// How long a disable lasts (`"30m"`, `"2h"`); absent: until enabled.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub(crate) for_: Option<String>,
}

/// Body of `PUT /v1/mode`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModeRequest {
    /// `deep`, `shallow`, `shadow` or `off`.
    pub(crate) mode: ModeName,
    /// One registry; absent: server-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) registry: Option<String>,
}

/// A health mode, as the admin API and CLI name it: the one `health::spec::HealthMode`.
pub use crate::health::spec::HealthMode as ModeName;

/// Reply to `POST /v1/reload` and `PUT /v1/mode`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Ack {
    /// What was done, in words.
    pub message: String,
    /// The snapshot generation now in service, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// With `[fleet]`: `shared` (written to etcd) or `local, not yet shared` (applied here,
    /// written to etcd when it is reachable again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
}

/// Reply to the override endpoints.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub(crate) struct OverrideReply {
    /// `disabled`, `enabled`.
    pub(crate) action: AuditAction,
    /// The audit record.
    pub(crate) event: AuditEvent,
}

/// The body of every error reply: `{"error": "..."}`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub(crate) struct ErrorBody {
    /// The reason, for people.
    pub(crate) error: String,
}

//------------ WallClock ---------------------------------------------------------------------

/// Turns the health book's monotonic instants (`tokio::time::Instant`) into wall-clock RFC
/// 3339 strings for [`StatusView`] and [`EventView`], anchored at one (instant, wall time)
/// pair read together when the view is built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallClock {
    mono: tokio::time::Instant,
    wall: std::time::SystemTime,
}

impl WallClock {
    /// Anchored now.
    pub(crate) fn now() -> Self {
        Self::new(tokio::time::Instant::now(), std::time::SystemTime::now())
    }

    /// Anchored at a given pair (tests).
    pub(crate) fn new(mono: tokio::time::Instant, wall: std::time::SystemTime) -> Self {
        Self { mono, wall }
    }

    /// The wall time of `t`.
    pub(crate) fn wall(&self, t: tokio::time::Instant) -> std::time::SystemTime {
        if t <= self.mono {
            self.wall
                .checked_sub(self.mono - t)
                .unwrap_or(std::time::UNIX_EPOCH)
        } else {
            crate::overrides::time_plus(self.wall, t - self.mono)
        }
    }

    /// `t` as RFC 3339.
    pub(crate) fn format(&self, t: tokio::time::Instant) -> String {
        format_time(self.wall(t))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn replica_states_are_the_metrics_state_labels() {
        assert_eq!(
            ReplicaState::ALL.map(ReplicaState::as_str),
            crate::metrics::STATES
        );
        for s in ReplicaState::ALL {
            assert_eq!(s.as_str().parse::<ReplicaState>(), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap_or_default(),
                format!("\"{s}\"")
            );
        }
        let err = "sad".parse::<ReplicaState>().err().unwrap_or_default();
        assert!(err.contains("sad") && err.contains("disabled"), "{err}");
    }

    #[test]
    fn wall_clock_maps_instants() {
        let mono = tokio::time::Instant::now();
        let c = WallClock::new(mono, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        assert_eq!(c.format(mono), "2027-01-15T08:00:00Z");
        assert_eq!(
            c.format(mono + Duration::from_secs(61)),
            "2027-01-15T08:01:01Z"
        );
        if let Some(earlier) = mono.checked_sub(Duration::from_secs(60)) {
            assert_eq!(c.format(earlier), "2027-01-15T07:59:00Z");
        }
    }

    #[test]
    fn status_json_shape() {
        let v = serde_json::to_value(ReplicaStatus {
            override_: Some(OverrideView::default()),
            ..ReplicaStatus::default()
        })
        .expect("json");
        assert!(v.get("override").is_some(), "{v}");
        let m: ModeRequest =
            serde_json::from_str(r#"{"mode":"shadow","registry":"c"}"#).expect("mode");
        assert_eq!(m.mode, ModeName::Shadow);
        assert_eq!("off".parse::<ModeName>(), Ok(ModeName::Off));
        assert!("of".parse::<ModeName>().is_err());
    }
}

//------------ Incidents ---------------------------------------------------------------------

/// `GET /v1/incidents` query.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct IncidentQuery {
    /// How many closed incidents to list (default 20; at most 256 are kept).
    #[serde(default)]
    pub recent: Option<usize>,
    /// Only incidents that rerouted this registry (its failover timeline).
    #[serde(default)]
    pub registry: Option<String>,
}

/// `GET /v1/incidents`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct IncidentsView {
    /// Open incidents, newest first.
    pub open: Vec<IncidentView>,
    /// Closed incidents, most recently closed first.
    pub recent: Vec<IncidentView>,
}

/// What an incident blames.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct CauseView {
    /// Identity: `GET http://…/health [storage-17]`, or `region eastus disabled`.
    pub id: String,
    /// `dependency`, `target` or `region_disabled`.
    pub kind: crate::state::incidents::CauseKind,
    /// The failed replica's region.
    pub region: String,
    /// The dependency, `*` for a whole target, or the disabled region.
    pub resource: String,
    /// The probe target, or `operator override`.
    pub check: String,
}

/// Where the clients of the failed replica are answered now.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct NowView {
    /// The region of the nearest routable replica (None: failing open, or nowhere).
    pub region: Option<String>,
    /// Every enabled replica is degraded: answered with all of them.
    #[serde(default)]
    pub fail_open: bool,
    /// Registries.
    pub registries: u64,
    /// Share of the incident's registries (0..1).
    pub share: f64,
}

/// One incident.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct IncidentView {
    /// Its number (page through its registries at `/v1/incidents/ID/registries`).
    pub id: u64,
    /// Still open.
    pub open: bool,
    /// What failed.
    pub cause: CauseView,
    /// When it opened (RFC 3339).
    pub opened_at: String,
    /// When its count or destinations last changed.
    pub updated_at: String,
    /// When it closed.
    #[serde(default)]
    pub closed_at: Option<String>,
    /// Times it reopened within the flap window.
    pub flaps: u32,
    /// Registries rerouted now (exact).
    pub registries: u64,
    /// The most registries it rerouted at once.
    pub peak_registries: u64,
    /// Health profiles (template × depends_on) those registries share (single registries of
    /// replica overrides not counted).
    pub profiles: usize,
    /// Registries with nowhere healthy to go (failing open).
    pub failing_open: u64,
    /// Where the failed replica's clients are answered now.
    pub answered_now: Vec<NowView>,
    /// A few of its registries' keys.
    pub samples: Vec<String>,
}

/// `GET /v1/incidents/ID/registries` query.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct IncidentPage {
    /// The last key of the previous page.
    #[serde(default)]
    pub after: Option<String>,
    /// Page size (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `GET /v1/incidents/ID/registries`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct RegistryPage {
    /// The incident.
    pub incident: u64,
    /// Registries it reroutes now.
    pub total: u64,
    /// Keys, in order.
    pub registries: Vec<String>,
    /// Pass as `after` for the next page (None: last page).
    #[serde(default)]
    pub next: Option<String>,
}
