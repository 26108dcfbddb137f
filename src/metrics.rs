//! Metrics: names (shared with tests), the lock-free counters the DNS answer path bumps, and
//! the [`Metrics`] registry that renders everything as OpenMetrics text for `GET /metrics`.
//!
//! # Hot path rule
//!
//! The DNS answer path must not lock, hash or allocate to count. It only touches two types:
//!
//! - [`DnsCounters`]: fixed arrays of `AtomicU64` bumped with `Relaxed` (queries by rcode ×
//!   qtype bucket, ECS present/absent, decision basis, fail-open answers).
//! - [`ReplicaCounters`]: answers by (registry, replica) and by (client label × replica key),
//!   laid out at load time so that a bump is index arithmetic into a boxed slice. The client
//!   label comes from [`ClientLabels::index`]: two-letter codes (ISO 3166 countries, continent
//!   codes) by arithmetic, latency-table labels by binary search over a small sorted slice.
//!
//! Both are exported at scrape time by a custom [`Collector`]; nothing on the query path knows
//! about prometheus-client.
//!
//! # Reload
//!
//! A reload builds a new `ReplicaCounters` for the new layout and hands it to
//! [`Metrics::install_replica_counters`]. The previous one is *retired*: it stays in the sum
//! while any snapshot still holds it (queries in flight may still bump it), and is folded into
//! a per-key baseline once `Metrics` holds the last reference. Values are keyed by
//! (registry key, replica key), so counters survive reloads and never go backwards.
//!
//! # Everything else
//!
//! Probe results, probe latency, health states, transitions, fail-open, stale verdicts, the
//! mass-failure guard, reloads, overrides and TCP refusals are ordinary prometheus-client
//! families updated by the state task and the prober (not the answer path).
//!
//! Counter names below are family names; OpenMetrics samples carry a `_total` suffix
//! (`steerdns_dns_queries_total{rcode="NOERROR",qtype="A"} 3`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

//------------ Names ------------------------------------------------------------------------

/// Counter: DNS responses by `rcode` × `qtype`.
pub const DNS_QUERIES: &str = "steerdns_dns_queries";
/// Counter: queries for a global name by `ecs` = `present` | `absent`.
pub const DNS_ECS: &str = "steerdns_dns_ecs_queries";
/// Counter: routing decisions by `basis` = `latency_table` | `geo` | `default_order`.
pub const DNS_DECISIONS: &str = "steerdns_dns_decisions";
/// Counter: answers given while a registry failed open (all replicas degraded).
pub const DNS_FAIL_OPEN_ANSWERS: &str = "steerdns_dns_fail_open_answers";
/// Counter: answers by `registry` × `replica`.
pub const ANSWERS_BY_REPLICA: &str = "steerdns_answers";
/// Counter: answers by `client` label × `replica` key (only non-zero cells are exported).
pub const ANSWERS_BY_CLIENT: &str = "steerdns_client_answers";
/// Counter: probe results by `target` × `result` (`ok` or a failure reason label).
pub const PROBES: &str = "steerdns_probes";
/// Histogram: probe latency in seconds by `target`.
pub const PROBE_DURATION: &str = "steerdns_probe_duration_seconds";
/// Gauge: 1 for the current `state` of each `registry` × `replica`, 0 for the other states.
pub const HEALTH_STATE: &str = "steerdns_health_state";
/// Counter: health transitions by `to` state.
pub const TRANSITIONS: &str = "steerdns_health_transitions";
/// Counter: times a registry started failing open, by `registry`.
pub const FAIL_OPEN_EVENTS: &str = "steerdns_fail_open_events";
/// Counter: verdicts that expired to unknown because the prober went quiet.
pub const STALE_VERDICTS: &str = "steerdns_stale_verdicts";
/// Counter: times the mass-failure guard engaged.
pub const GUARD_ENGAGEMENTS: &str = "steerdns_mass_failure_guard_engagements";
/// Gauge: 1 while the mass-failure guard holds state.
pub const GUARD_ENGAGED: &str = "steerdns_mass_failure_guard_engaged";
/// Counter: config reloads by `result` = `ok` | `failed`.
pub const RELOADS: &str = "steerdns_config_reloads";
/// Gauge: the snapshot generation in service.
pub const CONFIG_GENERATION: &str = "steerdns_config_generation";
/// Gauge: active operator overrides.
pub const OVERRIDES: &str = "steerdns_overrides";
/// Gauge: probe tasks that panicked and were restarted since start.
pub const PROBER_RESTARTS: &str = "steerdns_prober_task_restarts";
/// Counter: TCP connections refused because the connection cap was reached.
pub const TCP_REFUSED: &str = "steerdns_tcp_refused_connections";
/// Info: build facts (`version`).
pub const BUILD: &str = "steerdns_build";

/// The label value for clients without a known label.
pub const UNKNOWN_LABEL: &str = "unknown";

//------------ DnsCounters ------------------------------------------------------------------

/// Response codes counted, in index order; anything else counts as `other`.
pub const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
];
/// Query type buckets, in index order.
pub const QTYPES: [&str; 10] = [
    "A", "AAAA", "CNAME", "SOA", "NS", "MX", "TXT", "SRV", "ANY", "other",
];
/// Decision basis label values, in [`DecisionBasis`] order.
pub const BASES: [&str; 3] = ["latency_table", "geo", "default_order"];

/// Which routing layer decided (mirrors `routing::Basis`; `dns` maps one onto the other).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum DecisionBasis {
    /// A latency-table entry matched.
    LatencyTable = 0,
    /// The mmdb gave coordinates.
    Geo = 1,
    /// The configured default order.
    DefaultOrder = 2,
}

/// Counters the DNS answer path bumps: plain atomics, `Relaxed`, no locks, no allocation.
#[derive(Debug, Default)]
pub struct DnsCounters {
    queries: [[AtomicU64; QTYPES.len()]; RCODES.len()],
    ecs: [AtomicU64; 2],
    basis: [AtomicU64; BASES.len()],
    fail_open: AtomicU64,
}

impl DnsCounters {
    /// Count one response with `rcode` (the full 12-bit extended code, BADVERS = 16) to a
    /// query of type `qtype`.
    #[inline]
    pub fn response(&self, rcode: u16, qtype: u16) {
        let r = rcode_index(rcode);
        let q = qtype_index(qtype);
        // Both indices come from total functions whose ranges are the array lengths.
        if let Some(c) = self.queries.get(r).and_then(|row| row.get(q)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count a query for a global name with (`true`) or without an ECS option.
    #[inline]
    pub fn ecs(&self, present: bool) {
        self.ecs[usize::from(present)].fetch_add(1, Ordering::Relaxed);
    }

    /// Count a routing decision.
    #[inline]
    pub fn decision(&self, basis: DecisionBasis) {
        self.basis[basis as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Count an answer given while failing open.
    #[inline]
    pub fn fail_open(&self) {
        self.fail_open.fetch_add(1, Ordering::Relaxed);
    }

    /// Responses so far with `rcode` × `qtype` (label values from [`RCODES`] / [`QTYPES`]).
    pub fn responses(&self, rcode: &str, qtype: &str) -> u64 {
        let r = RCODES.iter().position(|x| *x == rcode);
        let q = QTYPES.iter().position(|x| *x == qtype);
        match (r, q) {
            (Some(r), Some(q)) => self.queries[r][q].load(Ordering::Relaxed),
            _ => 0,
        }
    }
}

fn rcode_index(rcode: u16) -> usize {
    match rcode {
        0..=5 => usize::from(rcode),
        16 => 6,
        _ => 7,
    }
}

fn qtype_index(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        28 => 1,
        5 => 2,
        6 => 3,
        2 => 4,
        15 => 5,
        16 => 6,
        33 => 7,
        255 => 8,
        _ => 9,
    }
}

//------------ ClientLabels ----------------------------------------------------------------

/// Index of a client label inside a [`ClientLabels`] set; 0 is `unknown`.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct LabelIndex(u16);

/// The bounded set of client labels known at load time: latency-table labels, ISO country
/// and continent codes, plus `unknown` (index 0).
#[derive(Debug)]
pub struct ClientLabels {
    /// Names by index; `names[0]` is `unknown`.
    names: Box<[Box<str>]>,
    /// Two-letter upper-case codes `XY` at `(X-'A')*26 + (Y-'A')`; 0 when not in the set.
    two_letter: Box<[u16; 676]>,
    /// Every other label, sorted, with its index.
    others: Box<[(Box<str>, u16)]>,
}

impl ClientLabels {
    /// A set of the given labels (duplicates and `unknown` are ignored).
    pub fn new<S: AsRef<str>>(labels: impl IntoIterator<Item = S>) -> Self {
        let mut names: Vec<Box<str>> = vec![UNKNOWN_LABEL.into()];
        let mut two_letter = Box::new([0u16; 676]);
        let mut others: Vec<(Box<str>, u16)> = Vec::new();
        for l in labels {
            let l = l.as_ref();
            if l == UNKNOWN_LABEL || names.len() >= usize::from(u16::MAX) {
                continue;
            }
            let idx = names.len() as u16;
            if let Some(slot) = two_letter_slot(l) {
                if two_letter[slot] == 0 {
                    two_letter[slot] = idx;
                    names.push(l.into());
                }
            } else if !others.iter().any(|(o, _)| &**o == l) {
                others.push((l.into(), idx));
                names.push(l.into());
            }
        }
        others.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            names: names.into(),
            two_letter,
            others: others.into(),
        }
    }

    /// Every two-letter code `AA` .. `ZZ`: a superset of ISO 3166-1 alpha-2 and continent
    /// codes, for when the mmdb's codes are not enumerated at load time.
    pub fn all_two_letter_codes() -> impl Iterator<Item = String> {
        (b'A'..=b'Z')
            .flat_map(|a| (b'A'..=b'Z').map(move |b| String::from_utf8_lossy(&[a, b]).into()))
    }

    /// The index of `label` (`routing::Location::label`); `unknown` for None or a label not in
    /// the set. No allocation, no hashing.
    #[inline]
    pub fn index(&self, label: Option<&str>) -> LabelIndex {
        let Some(l) = label else {
            return LabelIndex(0);
        };
        if let Some(slot) = two_letter_slot(l) {
            return LabelIndex(self.two_letter[slot]);
        }
        match self.others.binary_search_by(|(o, _)| (**o).cmp(l)) {
            Ok(i) => LabelIndex(self.others[i].1),
            Err(_) => LabelIndex(0),
        }
    }

    /// Number of labels, `unknown` included.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Never true (`unknown` is always there); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The label's name.
    pub fn name(&self, i: LabelIndex) -> &str {
        self.names
            .get(usize::from(i.0))
            .map_or(UNKNOWN_LABEL, |n| n)
    }
}

fn two_letter_slot(l: &str) -> Option<usize> {
    match l.as_bytes() {
        [a @ b'A'..=b'Z', b @ b'A'..=b'Z'] => {
            Some(usize::from(a - b'A') * 26 + usize::from(b - b'A'))
        }
        _ => None,
    }
}

//------------ ReplicaCounters -------------------------------------------------------------

/// One registry's keys, for laying out [`ReplicaCounters`].
#[derive(Clone, Debug)]
pub struct RegistryKeys {
    /// `[registries.KEY]`.
    pub key: String,
    /// Replica keys in replica-index order.
    pub replicas: Vec<String>,
}

/// Answer counters by (registry, replica) and by (client label × replica key), preallocated
/// for one config generation. Put an `Arc` of it in the snapshot; the answer path calls
/// [`ReplicaCounters::answer`].
#[derive(Debug)]
pub struct ReplicaCounters {
    /// Per registry index: its first slot in `by_replica`.
    offsets: Box<[u32]>,
    /// Per slot: (registry key, replica key).
    slot_keys: Box<[(Arc<str>, Arc<str>)]>,
    /// Per slot: index of its replica key in `replica_keys`.
    slot_column: Box<[u32]>,
    by_replica: Box<[AtomicU64]>,
    /// Distinct replica keys: the columns of `by_client`.
    replica_keys: Box<[Arc<str>]>,
    labels: ClientLabels,
    /// `labels.len()` rows × `replica_keys.len()` columns.
    by_client: Box<[AtomicU64]>,
    /// Registry id → its group in `offsets`, for the registries that get series of their own
    /// (the allow-list); empty for everybody else, so the answer path skips the lookup.
    own: HashMap<u32, u32>,
}

impl ReplicaCounters {
    /// Lay out counters for `registries` (in registry-index order) and `labels`.
    pub fn new(registries: &[RegistryKeys], labels: ClientLabels) -> Self {
        let mut offsets = Vec::with_capacity(registries.len());
        let mut slot_keys = Vec::new();
        let mut slot_column = Vec::new();
        let mut replica_keys: Vec<Arc<str>> = Vec::new();
        let mut column_of: HashMap<&str, u32> = HashMap::new();
        for reg in registries {
            offsets.push(slot_keys.len() as u32);
            let rk: Arc<str> = reg.key.as_str().into();
            for rep in &reg.replicas {
                let col = *column_of.entry(rep.as_str()).or_insert_with(|| {
                    replica_keys.push(rep.as_str().into());
                    (replica_keys.len() - 1) as u32
                });
                slot_keys.push((rk.clone(), replica_keys[col as usize].clone()));
                slot_column.push(col);
            }
        }
        let by_replica = (0..slot_keys.len()).map(|_| AtomicU64::new(0)).collect();
        let by_client = (0..labels.len() * replica_keys.len())
            .map(|_| AtomicU64::new(0))
            .collect();
        Self {
            offsets: offsets.into(),
            slot_keys: slot_keys.into(),
            slot_column: slot_column.into(),
            by_replica,
            replica_keys: replica_keys.into(),
            labels,
            by_client,
            own: HashMap::new(),
        }
    }

    /// Lay out `groups` (replica sets) and, after them, one group for each registry of
    /// `own` (registry id, keys): registries that get their own series (the allow-list).
    pub fn with_registries(
        groups: &[RegistryKeys],
        own: &[(u32, RegistryKeys)],
        labels: ClientLabels,
    ) -> Self {
        let all: Vec<RegistryKeys> = groups
            .iter()
            .cloned()
            .chain(own.iter().map(|(_, k)| k.clone()))
            .collect();
        let mut c = Self::new(&all, labels);
        c.own = own
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, (groups.len() + i) as u32))
            .collect();
        c
    }

    /// Count an answer of an allow-listed registry in its own series (not in the per-client
    /// cells: [`answer`](Self::answer) counted those). Costs nothing without an allow-list.
    #[inline]
    pub fn answer_registry(&self, id: u32, replica: usize) {
        if self.own.is_empty() {
            return;
        }
        let Some(&group) = self.own.get(&id) else {
            return;
        };
        let Some(&off) = self.offsets.get(group as usize) else {
            return;
        };
        let slot = off as usize + replica;
        let end = self
            .offsets
            .get(group as usize + 1)
            .map_or(self.by_replica.len(), |&e| e as usize);
        if slot < end {
            self.by_replica[slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The label set, to turn `routing::Location::label` into a [`LabelIndex`].
    pub fn labels(&self) -> &ClientLabels {
        &self.labels
    }

    /// Count one answer with replica `replica` of registry `registry` (config indices) for a
    /// client labelled `label`. Out-of-range indices are ignored (never panics).
    #[inline]
    pub fn answer(&self, registry: usize, replica: usize, label: LabelIndex) {
        let Some(&off) = self.offsets.get(registry) else {
            return;
        };
        let slot = off as usize + replica;
        let end = self
            .offsets
            .get(registry + 1)
            .map_or(self.by_replica.len(), |&e| e as usize);
        if slot >= end {
            return;
        }
        self.by_replica[slot].fetch_add(1, Ordering::Relaxed);
        let col = self.slot_column[slot] as usize;
        let cell = usize::from(label.0) * self.replica_keys.len() + col;
        if let Some(c) = self.by_client.get(cell) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn add_into(&self, replica: &mut KeyTotals, client: &mut ClientTotals) {
        for (k, v) in self.slot_keys.iter().zip(self.by_replica.iter()) {
            *replica.entry(k.clone()).or_default() += v.load(Ordering::Relaxed);
        }
        let cols = self.replica_keys.len();
        if cols == 0 {
            return;
        }
        for (i, v) in self.by_client.iter().enumerate() {
            let v = v.load(Ordering::Relaxed);
            if v > 0 {
                let label = self.labels.name(LabelIndex((i / cols) as u16));
                let key = (Arc::<str>::from(label), self.replica_keys[i % cols].clone());
                *client.entry(key).or_default() += v;
            }
        }
    }
}

/// Totals by (registry key, replica key) or (client label, replica key).
type KeyTotals = HashMap<(Arc<str>, Arc<str>), u64>;
type ClientTotals = KeyTotals;

/// The current and retired replica counters plus the folded baseline.
#[derive(Debug, Default)]
struct ReplicaHub {
    current: Option<Arc<ReplicaCounters>>,
    retired: Vec<Arc<ReplicaCounters>>,
    baseline_replica: KeyTotals,
    baseline_client: ClientTotals,
}

impl ReplicaHub {
    /// Totals by key: baseline + retired + current. Folds retired counters nobody else holds.
    fn totals(&mut self) -> (KeyTotals, ClientTotals) {
        let mut i = 0;
        while i < self.retired.len() {
            if Arc::strong_count(&self.retired[i]) == 1 {
                let old = self.retired.swap_remove(i);
                old.add_into(&mut self.baseline_replica, &mut self.baseline_client);
            } else {
                i += 1;
            }
        }
        let mut replica = self.baseline_replica.clone();
        let mut client = self.baseline_client.clone();
        for r in &self.retired {
            r.add_into(&mut replica, &mut client);
        }
        if let Some(c) = &self.current {
            c.add_into(&mut replica, &mut client);
        }
        (replica, client)
    }
}

//------------ Label sets -------------------------------------------------------------------

#[derive(Clone, Debug, Eq, Hash, PartialEq, EncodeLabelSet)]
struct ProbeLabels {
    target: String,
    result: String,
}

#[derive(Clone, Debug, Eq, Hash, PartialEq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

#[derive(Clone, Debug, Eq, Hash, PartialEq, EncodeLabelSet)]
struct StateLabels {
    registry: String,
    replica: String,
    state: String,
}

#[derive(Clone, Debug, Eq, Hash, PartialEq, EncodeLabelSet)]
struct ToLabel {
    to: String,
}

#[derive(Clone, Debug, Eq, Hash, PartialEq, EncodeLabelSet)]
struct RegistryLabel {
    registry: String,
}

#[derive(Clone, Debug, Eq, Hash, PartialEq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// Health states exported by [`HEALTH_STATE`].
pub const STATES: [&str; 4] = ["unknown", "healthy", "degraded", "disabled"];

//------------ Metrics ----------------------------------------------------------------------

/// Probe latency buckets: 1 ms .. ~16 s.
fn probe_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Everything exported on `/metrics`. One per process, shared as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    dns: Arc<DnsCounters>,
    hub: Arc<Mutex<ReplicaHub>>,
    tcp_refused: Arc<AtomicU64>,
    probes: Family<ProbeLabels, Counter>,
    probe_duration: Family<TargetLabel, Histogram, fn() -> Histogram>,
    health_state: Family<StateLabels, Gauge>,
    transitions: Family<ToLabel, Counter>,
    fail_open_events: Family<RegistryLabel, Counter>,
    stale_verdicts: Counter,
    guard_engagements: Counter,
    guard_engaged: Gauge,
    reloads: Family<ResultLabel, Counter>,
    config_generation: Gauge,
    overrides: Gauge,
    prober_restarts: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and nothing counted.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let dns = Arc::new(DnsCounters::default());
        let hub = Arc::new(Mutex::new(ReplicaHub::default()));
        let tcp_refused = Arc::new(AtomicU64::new(0));
        registry.register_collector(Box::new(HotCollector {
            dns: dns.clone(),
            hub: hub.clone(),
            tcp_refused: tcp_refused.clone(),
        }));
        let mut m = Self {
            dns,
            hub,
            tcp_refused,
            probes: Family::default(),
            probe_duration: Family::new_with_constructor(probe_histogram),
            health_state: Family::default(),
            transitions: Family::default(),
            fail_open_events: Family::default(),
            stale_verdicts: Counter::default(),
            guard_engagements: Counter::default(),
            guard_engaged: Gauge::default(),
            reloads: Family::default(),
            config_generation: Gauge::default(),
            overrides: Gauge::default(),
            prober_restarts: Gauge::default(),
            // Filled below, once every family is registered.
            registry: Registry::default(),
        };
        registry.register(
            PROBES,
            "Probe results by target and result",
            m.probes.clone(),
        );
        registry.register(
            PROBE_DURATION,
            "Probe latency in seconds by target",
            m.probe_duration.clone(),
        );
        registry.register(
            HEALTH_STATE,
            "1 for the current state of each registry replica",
            m.health_state.clone(),
        );
        registry.register(
            TRANSITIONS,
            "Health transitions by new state",
            m.transitions.clone(),
        );
        registry.register(
            FAIL_OPEN_EVENTS,
            "Times a registry started failing open (all replicas degraded)",
            m.fail_open_events.clone(),
        );
        registry.register(
            STALE_VERDICTS,
            "Verdicts expired to unknown because the prober went quiet",
            m.stale_verdicts.clone(),
        );
        registry.register(
            GUARD_ENGAGEMENTS,
            "Times the mass-failure guard engaged",
            m.guard_engagements.clone(),
        );
        registry.register(
            GUARD_ENGAGED,
            "1 while the mass-failure guard holds health state",
            m.guard_engaged.clone(),
        );
        registry.register(RELOADS, "Config reloads by result", m.reloads.clone());
        registry.register(
            CONFIG_GENERATION,
            "Snapshot generation in service",
            m.config_generation.clone(),
        );
        registry.register(OVERRIDES, "Active operator overrides", m.overrides.clone());
        registry.register(
            PROBER_RESTARTS,
            "Probe tasks that panicked and were restarted since start",
            m.prober_restarts.clone(),
        );
        registry.register(
            BUILD,
            "Build facts",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        m.registry = registry;
        m
    }

    /// The hot-path DNS counters (clone the `Arc` into the socket loops).
    pub fn dns(&self) -> &Arc<DnsCounters> {
        &self.dns
    }

    /// The TCP-refused counter cell; the wiring points the TCP accept loop at it (or copies
    /// `TransportStats::tcp_refused` into it with [`Metrics::set_tcp_refused`]).
    pub fn tcp_refused(&self) -> &Arc<AtomicU64> {
        &self.tcp_refused
    }

    /// Set the TCP-refused total (from `server::TransportStats`).
    pub fn set_tcp_refused(&self, total: u64) {
        self.tcp_refused.store(total, Ordering::Relaxed);
    }

    /// Install the replica counters of a new config generation; the previous ones are retired
    /// (see the module doc), so values carry over by (registry key, replica key).
    pub fn install_replica_counters(&self, next: Arc<ReplicaCounters>) {
        let mut hub = self.hub.lock();
        if let Some(prev) = hub.current.replace(next) {
            hub.retired.push(prev);
        }
    }

    /// Record one probe result for `target` (e.g. `contoso/westeurope` or a shared probe
    /// target's name): `result` is `ok` or the failure's label.
    pub fn probe(&self, target: &str, result: &str, latency: Duration) {
        self.probes
            .get_or_create(&ProbeLabels {
                target: target.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        self.probe_duration
            .get_or_create(&TargetLabel {
                target: target.to_owned(),
            })
            .observe(latency.as_secs_f64());
    }

    /// Replace the health-state gauges: one `(registry, replica, state)` per replica, `state`
    /// one of [`STATES`].
    pub fn set_health_states<'a>(
        &self,
        states: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) {
        self.health_state.clear();
        for (registry, replica, state) in states {
            for s in STATES {
                self.health_state
                    .get_or_create(&StateLabels {
                        registry: registry.to_owned(),
                        replica: replica.to_owned(),
                        state: s.to_owned(),
                    })
                    .set(i64::from(s == state));
            }
        }
    }

    /// Count a health transition to `to` (`healthy`, `degraded`, `unknown`).
    pub fn transition(&self, to: &str) {
        self.transitions
            .get_or_create(&ToLabel { to: to.to_owned() })
            .inc();
    }

    /// Count a registry starting to fail open.
    pub fn fail_open_started(&self, registry: &str) {
        self.fail_open_events
            .get_or_create(&RegistryLabel {
                registry: registry.to_owned(),
            })
            .inc();
    }

    /// Count a verdict that expired to unknown.
    pub fn stale_verdict(&self) {
        self.stale_verdicts.inc();
    }

    /// The mass-failure guard engaged (`true`) or released.
    pub fn guard(&self, engaged: bool) {
        if engaged && self.guard_engaged.get() == 0 {
            self.guard_engagements.inc();
        }
        self.guard_engaged.set(i64::from(engaged));
    }

    /// Count a reload attempt.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "failed" }.to_owned(),
            })
            .inc();
    }

    /// Set the generation in service.
    pub fn set_generation(&self, generation: u64) {
        self.config_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Set how many probe tasks were restarted after a panic.
    pub fn set_prober_restarts(&self, n: u64) {
        self.prober_restarts
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Set the number of active overrides.
    pub fn set_overrides(&self, n: usize) {
        self.overrides.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Everything as OpenMetrics text (`application/openmetrics-text; version=1.0.0`).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Encoding into a String cannot fail on I/O; a formatting error is a bug. Say so
            // in the output rather than serving half a scrape silently.
            out.clear();
            let _ = writeln!(out, "# metrics encoding failed\n# EOF");
        }
        out
    }
}

/// The OpenMetrics content type for `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

//------------ HotCollector -----------------------------------------------------------------

/// Exports the atomics at scrape time.
#[derive(Debug)]
struct HotCollector {
    dns: Arc<DnsCounters>,
    hub: Arc<Mutex<ReplicaHub>>,
    tcp_refused: Arc<AtomicU64>,
}

impl Collector for HotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let d = &self.dns;
        {
            let c = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                DNS_QUERIES,
                "DNS responses by rcode and qtype",
                None,
                c.metric_type(),
            )?;
            for (r, row) in d.queries.iter().enumerate() {
                for (q, cell) in row.iter().enumerate() {
                    let labels = [("rcode", RCODES[r]), ("qtype", QTYPES[q])];
                    let m = fam.encode_family(&labels)?;
                    ConstCounter::new(cell.load(Ordering::Relaxed)).encode(m)?;
                }
            }
        }
        {
            let c = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                DNS_ECS,
                "Global-name queries with and without ECS",
                None,
                c.metric_type(),
            )?;
            for (i, v) in ["absent", "present"].iter().enumerate() {
                let labels = [("ecs", *v)];
                let m = fam.encode_family(&labels)?;
                ConstCounter::new(d.ecs[i].load(Ordering::Relaxed)).encode(m)?;
            }
        }
        {
            let c = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                DNS_DECISIONS,
                "Routing decisions by basis",
                None,
                c.metric_type(),
            )?;
            for (i, v) in BASES.iter().enumerate() {
                let labels = [("basis", *v)];
                let m = fam.encode_family(&labels)?;
                ConstCounter::new(d.basis[i].load(Ordering::Relaxed)).encode(m)?;
            }
        }
        {
            let c = ConstCounter::new(d.fail_open.load(Ordering::Relaxed));
            let m = encoder.encode_descriptor(
                DNS_FAIL_OPEN_ANSWERS,
                "Answers given while failing open",
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        {
            let c = ConstCounter::new(self.tcp_refused.load(Ordering::Relaxed));
            let m = encoder.encode_descriptor(
                TCP_REFUSED,
                "TCP connections refused at the connection cap",
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        let (current_keys, (replica, client)) = {
            let mut hub = self.hub.lock();
            let keys: Vec<(Arc<str>, Arc<str>)> = hub
                .current
                .as_ref()
                .map(|c| c.slot_keys.to_vec())
                .unwrap_or_default();
            (keys, hub.totals())
        };
        {
            let c = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                ANSWERS_BY_REPLICA,
                "Answers by registry and replica",
                None,
                c.metric_type(),
            )?;
            for k in &current_keys {
                let v = replica.get(k).copied().unwrap_or(0);
                let labels = [("registry", &*k.0), ("replica", &*k.1)];
                let m = fam.encode_family(&labels)?;
                ConstCounter::new(v).encode(m)?;
            }
        }
        {
            let c = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                ANSWERS_BY_CLIENT,
                "Answers by client label and replica (non-zero cells only)",
                None,
                c.metric_type(),
            )?;
            let mut cells: Vec<_> = client.into_iter().collect();
            cells.sort();
            for ((label, rep), v) in cells {
                let labels = [("client", &*label), ("replica", &*rep)];
                let m = fam.encode_family(&labels)?;
                ConstCounter::new(v).encode(m)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .map(|l| l[prefix.len()..].trim())
    }

    fn layout(regs: &[(&str, &[&str])]) -> Vec<RegistryKeys> {
        regs.iter()
            .map(|(k, r)| RegistryKeys {
                key: (*k).into(),
                replicas: r.iter().map(|s| (*s).into()).collect(),
            })
            .collect()
    }

    #[test]
    fn dns_counters_render_with_labels() {
        let m = Metrics::new();
        let d = m.dns();
        d.response(0, 1);
        d.response(0, 1);
        d.response(3, 28);
        d.response(16, 6);
        d.response(9, 99);
        d.ecs(true);
        d.ecs(false);
        d.ecs(false);
        d.decision(DecisionBasis::Geo);
        d.fail_open();
        m.set_tcp_refused(4);
        let t = m.render();
        assert_eq!(
            sample(
                &t,
                "steerdns_dns_queries_total{rcode=\"NOERROR\",qtype=\"A\"}"
            ),
            Some("2"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                "steerdns_dns_queries_total{rcode=\"NXDOMAIN\",qtype=\"AAAA\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &t,
                "steerdns_dns_queries_total{rcode=\"BADVERS\",qtype=\"SOA\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &t,
                "steerdns_dns_queries_total{rcode=\"other\",qtype=\"other\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &t,
                "steerdns_dns_queries_total{rcode=\"REFUSED\",qtype=\"MX\"}"
            ),
            Some("0")
        );
        assert_eq!(
            sample(&t, "steerdns_dns_ecs_queries_total{ecs=\"absent\"}"),
            Some("2")
        );
        assert_eq!(
            sample(&t, "steerdns_dns_ecs_queries_total{ecs=\"present\"}"),
            Some("1")
        );
        assert_eq!(
            sample(&t, "steerdns_dns_decisions_total{basis=\"geo\"}"),
            Some("1")
        );
        assert_eq!(
            sample(&t, "steerdns_dns_decisions_total{basis=\"latency_table\"}"),
            Some("0")
        );
        assert_eq!(
            sample(&t, "steerdns_dns_fail_open_answers_total"),
            Some("1")
        );
        assert_eq!(
            sample(&t, "steerdns_tcp_refused_connections_total"),
            Some("4")
        );
        assert!(t.contains("# TYPE steerdns_dns_queries counter"), "{t}");
        assert!(t.ends_with("# EOF\n"), "{t}");
        assert_eq!(d.responses("NOERROR", "A"), 2);
    }

    #[test]
    fn labels_by_arithmetic_and_search() {
        let l = ClientLabels::new(["NL", "US", "ams-pop", "EU", "NL", "unknown", "fra"]);
        assert_eq!(l.len(), 6);
        assert_eq!(l.name(l.index(Some("NL"))), "NL");
        assert_eq!(l.name(l.index(Some("EU"))), "EU");
        assert_eq!(l.name(l.index(Some("ams-pop"))), "ams-pop");
        assert_eq!(l.name(l.index(Some("fra"))), "fra");
        assert_eq!(l.index(Some("DE")), LabelIndex(0));
        assert_eq!(l.index(Some("nl")), LabelIndex(0));
        assert_eq!(l.index(Some("x")), LabelIndex(0));
        assert_eq!(l.index(None), LabelIndex(0));
        let all = ClientLabels::new(ClientLabels::all_two_letter_codes());
        assert_eq!(all.len(), 677);
        assert_eq!(all.name(all.index(Some("ZZ"))), "ZZ");
    }

    #[test]
    fn replica_counters_render_and_ignore_bad_indices() {
        let m = Metrics::new();
        let labels = ClientLabels::new(["NL", "US"]);
        let rc = Arc::new(ReplicaCounters::new(
            &layout(&[
                ("contoso", &["eastus", "westeurope"]),
                ("fabrikam", &["westeurope"]),
            ]),
            labels,
        ));
        m.install_replica_counters(rc.clone());
        let nl = rc.labels().index(Some("NL"));
        rc.answer(0, 1, nl);
        rc.answer(0, 1, nl);
        rc.answer(1, 0, nl);
        rc.answer(0, 0, LabelIndex(0));
        rc.answer(0, 2, nl); // out of range for registry 0
        rc.answer(7, 0, nl);
        let t = m.render();
        assert_eq!(
            sample(
                &t,
                "steerdns_answers_total{registry=\"contoso\",replica=\"westeurope\"}"
            ),
            Some("2"),
            "{t}"
        );
        assert_eq!(
            sample(
                &t,
                "steerdns_answers_total{registry=\"contoso\",replica=\"eastus\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &t,
                "steerdns_answers_total{registry=\"fabrikam\",replica=\"westeurope\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &t,
                "steerdns_client_answers_total{client=\"NL\",replica=\"westeurope\"}"
            ),
            Some("3")
        );
        assert_eq!(
            sample(
                &t,
                "steerdns_client_answers_total{client=\"unknown\",replica=\"eastus\"}"
            ),
            Some("1")
        );
        assert!(
            !t.contains("client=\"US\""),
            "zero cells are not exported: {t}"
        );
    }

    #[test]
    fn replica_counters_survive_reload_by_key() {
        let m = Metrics::new();
        let old = Arc::new(ReplicaCounters::new(
            &layout(&[("contoso", &["eastus", "westeurope"])]),
            ClientLabels::new(["NL"]),
        ));
        m.install_replica_counters(old.clone());
        old.answer(0, 1, LabelIndex(0));
        old.answer(0, 1, LabelIndex(0));
        // New layout: a registry added before contoso, westeurope now index 0.
        let new = Arc::new(ReplicaCounters::new(
            &layout(&[("aaa", &["eastus"]), ("contoso", &["westeurope", "x"])]),
            ClientLabels::new(["NL"]),
        ));
        m.install_replica_counters(new.clone());
        // A query still holding the old snapshot counts once more.
        old.answer(0, 1, LabelIndex(0));
        new.answer(1, 0, LabelIndex(0));
        let want = "steerdns_answers_total{registry=\"contoso\",replica=\"westeurope\"}";
        assert_eq!(sample(&m.render(), want), Some("4"));
        drop(old); // the last snapshot holding it is gone: folded into the baseline
        let t = m.render();
        assert_eq!(sample(&t, want), Some("4"), "{t}");
        assert_eq!(m.hub.lock().retired.len(), 0);
        assert_eq!(
            sample(
                &t,
                "steerdns_answers_total{registry=\"aaa\",replica=\"eastus\"}"
            ),
            Some("0")
        );
        // Removed replica keys are not exported any more.
        assert!(
            !t.contains("registry=\"contoso\",replica=\"eastus\""),
            "{t}"
        );
    }

    #[test]
    fn state_task_metrics_render() {
        let m = Metrics::new();
        m.probe("contoso/westeurope", "ok", Duration::from_millis(3));
        m.probe("contoso/westeurope", "timeout", Duration::from_secs(5));
        m.set_health_states([("contoso", "westeurope", "degraded")]);
        m.transition("degraded");
        m.fail_open_started("contoso");
        m.stale_verdict();
        m.guard(true);
        m.guard(true);
        m.reload(true);
        m.reload(false);
        m.set_generation(7);
        m.set_overrides(2);
        let t = m.render();
        let checks = [
            (
                "steerdns_probes_total{target=\"contoso/westeurope\",result=\"ok\"}",
                "1",
            ),
            (
                "steerdns_probes_total{target=\"contoso/westeurope\",result=\"timeout\"}",
                "1",
            ),
            (
                "steerdns_probe_duration_seconds_count{target=\"contoso/westeurope\"}",
                "2",
            ),
            (
                "steerdns_health_state{registry=\"contoso\",replica=\"westeurope\",state=\"degraded\"}",
                "1",
            ),
            (
                "steerdns_health_state{registry=\"contoso\",replica=\"westeurope\",state=\"healthy\"}",
                "0",
            ),
            ("steerdns_health_transitions_total{to=\"degraded\"}", "1"),
            ("steerdns_fail_open_events_total{registry=\"contoso\"}", "1"),
            ("steerdns_stale_verdicts_total", "1"),
            ("steerdns_mass_failure_guard_engagements_total", "1"),
            ("steerdns_mass_failure_guard_engaged", "1"),
            ("steerdns_config_reloads_total{result=\"ok\"}", "1"),
            ("steerdns_config_reloads_total{result=\"failed\"}", "1"),
            ("steerdns_config_generation", "7"),
            ("steerdns_overrides", "2"),
        ];
        for (k, v) in checks {
            assert_eq!(sample(&t, k), Some(v), "{k} in\n{t}");
        }
        assert!(t.contains("steerdns_build_info{version=\""), "{t}");
        assert!(t.contains("steerdns_probe_duration_seconds_bucket{le=\"0.004\",target=\"contoso/westeurope\"} 1"), "{t}");
    }
}
