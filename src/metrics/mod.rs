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

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

mod collect;
mod fleet;
mod hot;
pub mod traffic;

use collect::{HotCollector, Shards};

use hot::ReplicaHub;
pub use hot::{
    BASES, ClientLabels, DecisionBasis, DnsCounters, LabelIndex, QTYPES, RCODES, RegistryKeys,
    ReplicaCounters, TransportCounters,
};

//------------ Names ------------------------------------------------------------------------

/// Counter: DNS responses by `rcode` × `qtype`.
pub(crate) const DNS_QUERIES: &str = "steerdns_dns_queries";
/// DNSSEC signatures made, by zone.
pub(crate) const DNSSEC_SIGNATURES: &str = "steerdns_dnssec_signatures";
/// Lookups in the signature cache of steered answers and denials, by zone and result.
pub(crate) const DNSSEC_CACHE: &str = "steerdns_dnssec_signature_cache_lookups";
/// Signatures made ahead of queries (a failover's next answers), by zone.
pub(crate) const DNSSEC_PRESIGNED: &str = "steerdns_dnssec_presigned_signatures";
/// When the earliest signature of a zone's static data expires.
pub(crate) const DNSSEC_EXPIRY: &str = "steerdns_dnssec_static_signatures_expiry_timestamp_seconds";
/// Counter: queries for a global name by `ecs` = `present` | `absent`.
pub(crate) const DNS_ECS: &str = "steerdns_dns_ecs_queries";
/// Counter: routing decisions by `basis` = `latency_table` | `geo` | `default_order`.
pub(crate) const DNS_DECISIONS: &str = "steerdns_dns_decisions";
/// Counter: answers given while a registry failed open (all replicas degraded).
pub(crate) const DNS_FAIL_OPEN_ANSWERS: &str = "steerdns_dns_fail_open_answers";
pub(crate) const DNS_STALE_VIEW_ANSWERS: &str = "steerdns_dns_stale_health_view_answers";
/// Counter: answers by `registry` × `replica`.
pub(crate) const ANSWERS_BY_REPLICA: &str = "steerdns_answers";
/// Counter: answers by `client` label × `replica` key (only non-zero cells are exported).
pub(crate) const ANSWERS_BY_CLIENT: &str = "steerdns_client_answers";
/// Counter: probe results by `target` × `result` (`ok` or a failure reason label).
pub(crate) const PROBES: &str = "steerdns_probes";
/// Histogram: probe latency in seconds by `target`.
pub(crate) const PROBE_DURATION: &str = "steerdns_probe_duration_seconds";
/// Gauge: 1 for the current `state` of each `registry` × `replica`, 0 for the other states.
pub(crate) const HEALTH_STATE: &str = "steerdns_health_state";
/// Counter: health transitions by `to` state.
pub(crate) const TRANSITIONS: &str = "steerdns_health_transitions";
/// Counter: times a registry started failing open, by `registry`.
pub(crate) const FAIL_OPEN_EVENTS: &str = "steerdns_fail_open_events";
/// Counter: verdicts that expired to unknown because the prober went quiet.
pub(crate) const STALE_VERDICTS: &str = "steerdns_stale_verdicts";
/// Counter: times the mass-failure guard engaged.
pub(crate) const GUARD_ENGAGEMENTS: &str = "steerdns_mass_failure_guard_engagements";
/// Gauge: 1 while the mass-failure guard holds state.
pub(crate) const GUARD_ENGAGED: &str = "steerdns_mass_failure_guard_engaged";
/// Counter: config reloads by `result` = `ok` | `failed`.
pub(crate) const RELOADS: &str = "steerdns_config_reloads";
/// Gauge: the snapshot generation in service.
pub(crate) const CONFIG_GENERATION: &str = "steerdns_config_generation";
/// Gauge: active operator overrides.
pub(crate) const OVERRIDES: &str = "steerdns_overrides";
/// Gauge (with `[fleet]`): 1 while the link to etcd is up and its watch current.
pub(crate) const FLEET_CONNECTED: &str = "steerdns_fleet_connected";
/// Gauge (with `[fleet]`): admin changes applied here and not yet written to etcd.
pub(crate) const FLEET_PENDING: &str = "steerdns_fleet_pending_changes";
/// Gauge (with `[fleet]`): instances with a live lease, as the watch shows them.
pub(crate) const FLEET_LIVE: &str = "steerdns_fleet_live_instances";
/// Counter (with `[fleet]`): changes that lost to a later one by the conflict rule.
pub(crate) const FLEET_LOST: &str = "steerdns_fleet_lost_changes";
/// Gauge: probe tasks that panicked and were restarted since start.
pub(crate) const PROBER_RESTARTS: &str = "steerdns_prober_task_restarts";
/// Counter: responses sent by each UDP worker thread, by `worker` (its `/live` name).
pub(crate) const UDP_WORKER_RESPONSES: &str = "steerdns_udp_worker_responses";
/// Counter: TCP connections refused because the connection cap was reached.
pub(crate) const TCP_REFUSED: &str = "steerdns_tcp_refused_connections";
/// Info: build facts (`version`).
/// Counter: TCP connections closed to make room for a new one at the global cap.
pub(crate) const TCP_EVICTED: &str = "steerdns_tcp_evicted_connections";
/// Counter: UDP responses dropped by response rate limiting.
pub(crate) const RRL_DROPPED: &str = "steerdns_rrl_dropped_responses";
/// Counter: UDP responses sent truncated (slipped) by response rate limiting.
pub(crate) const RRL_SLIPPED: &str = "steerdns_rrl_slipped_responses";
pub(crate) const BUILD: &str = "steerdns_build";
/// Gauge: registries rerouted by open incidents, by the failed replica's `region` and the
/// failing `resource` (a dependency, `*` for a whole probe target, or a disabled region).
pub(crate) const REROUTED: &str = "steerdns_rerouted_registries";
/// Counter: events a webhook took, by `webhook` (URL) and `result` = `delivered` | `given_up`
/// (every attempt failed).
pub(crate) const WEBHOOK_DELIVERIES: &str = "steerdns_webhook_deliveries";
/// Counter: webhook attempts that failed and were retried, by `webhook`.
pub(crate) const WEBHOOK_RETRIES: &str = "steerdns_webhook_retries";
/// Counter: events dropped because a webhook's queue was full, by `webhook`.
pub(crate) const WEBHOOK_DROPPED: &str = "steerdns_webhook_dropped_events";

/// The label value for clients without a known label.
pub(crate) const UNKNOWN_LABEL: &str = "unknown";

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
struct ResourceLabels {
    region: String,
    resource: String,
}

#[derive(Clone, Debug, Eq, Hash, PartialEq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: String,
    result: String,
}

#[derive(Clone, Debug, Eq, Hash, PartialEq, EncodeLabelSet)]
struct WebhookLabel {
    webhook: String,
}

#[derive(Clone, Debug, Eq, Hash, PartialEq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// Health states exported by [`HEALTH_STATE`].
pub(crate) const STATES: [&str; 4] = ["unknown", "healthy", "degraded", "disabled"];

//------------ Metrics ----------------------------------------------------------------------

/// Probe latency buckets: 1 ms .. ~16 s.
fn probe_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Everything exported on `/metrics`. One per process, shared as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The signers of the zones in service, by origin.
    signers: collect::Signers,
    dns: Arc<DnsCounters>,
    udp_shards: Shards,
    hub: Arc<Mutex<ReplicaHub>>,
    tcp_refused: Arc<AtomicU64>,
    transport: Arc<TransportCounters>,
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
    rerouted: Family<ResourceLabels, Gauge>,
    webhook_deliveries: Family<WebhookLabels, Counter>,
    webhook_retries: Family<WebhookLabel, Counter>,
    webhook_dropped: Family<WebhookLabel, Counter>,
    fleet: fleet::FleetGauges,
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
        let udp_shards = Shards::default();
        let hub = Arc::new(Mutex::new(ReplicaHub::default()));
        let tcp_refused = Arc::new(AtomicU64::new(0));
        let transport = Arc::new(TransportCounters::default());
        registry.register_collector(Box::new(HotCollector {
            dns: dns.clone(),
            udp_shards: udp_shards.clone(),
            hub: hub.clone(),
            tcp_refused: tcp_refused.clone(),
            transport: transport.clone(),
        }));
        let signers = collect::Signers::default();
        registry.register_collector(Box::new(collect::DnssecCollector {
            signers: signers.clone(),
        }));
        let mut m = Self {
            signers,
            dns,
            udp_shards,
            hub,
            tcp_refused,
            transport,
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
            rerouted: Family::default(),
            webhook_deliveries: Family::default(),
            webhook_retries: Family::default(),
            webhook_dropped: Family::default(),
            fleet: fleet::FleetGauges::default(),
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
            REROUTED,
            "Registries rerouted by open incidents, by failed region and resource",
            m.rerouted.clone(),
        );
        registry.register(
            WEBHOOK_DELIVERIES,
            "Events a webhook took, by result (delivered or given_up)",
            m.webhook_deliveries.clone(),
        );
        registry.register(
            WEBHOOK_RETRIES,
            "Webhook attempts that failed and were retried",
            m.webhook_retries.clone(),
        );
        registry.register(
            WEBHOOK_DROPPED,
            "Events dropped because a webhook's queue was full",
            m.webhook_dropped.clone(),
        );
        registry.register(
            BUILD,
            "Build facts",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        m.registry = registry;
        m
    }

    /// The hot-path DNS counters of shard 0: TCP, and anything that is not a UDP worker.
    pub fn dns(&self) -> &Arc<DnsCounters> {
        &self.dns
    }

    /// A new shard of DNS counters for the UDP worker thread `worker` (its `/live` name),
    /// numbered after the ones already handed out; scrapes add it into every DNS family and
    /// show its responses as [`UDP_WORKER_RESPONSES`]. Called once per thread, at its start.
    pub(crate) fn udp_shard(&self, worker: &str) -> Arc<DnsCounters> {
        let mut shards = self.udp_shards.lock();
        let c = Arc::new(DnsCounters::for_shard(shards.len() + 1));
        shards.push((worker.to_owned(), c.clone()));
        c
    }

    /// The TCP-refused counter cell; the wiring points the TCP accept loop at it (or copies
    /// `TransportStats::tcp_refused` into it with [`Metrics::set_tcp_refused`]).
    pub(crate) fn tcp_refused(&self) -> &Arc<AtomicU64> {
        &self.tcp_refused
    }

    /// Counters the transports bump (TCP evictions, rate-limited responses).
    pub fn transport(&self) -> &Arc<TransportCounters> {
        &self.transport
    }

    #[cfg(test)]
    /// Set the TCP-refused total (from `server::TransportStats`).
    pub(crate) fn set_tcp_refused(&self, total: u64) {
        self.tcp_refused
            .store(total, std::sync::atomic::Ordering::Relaxed);
    }

    /// Install the replica counters of a new config generation; the previous ones are retired
    /// (see the module doc), so values carry over by (registry key, replica key).
    /// The signers of the zones in service (at start and after each reload), for the
    /// `steerdns_dnssec_*` families.
    pub(crate) fn install_signers(&self, zones: &crate::zone::ZoneSet) {
        let mut signers: Vec<(String, Arc<crate::dnssec::sign::ZoneSigner>)> = zones
            .zones()
            .filter_map(|z| Some((z.origin().to_ascii(), z.signer_arc()?)))
            .collect();
        signers.sort_by(|a, b| a.0.cmp(&b.0));
        *self.signers.lock() = signers;
    }

    pub(crate) fn install_replica_counters(&self, next: Arc<ReplicaCounters>) {
        let mut hub = self.hub.lock();
        if let Some(prev) = hub.current.replace(next) {
            hub.retired.push(prev);
        }
        hub.fold();
    }

    /// Record one probe result for `target` (e.g. `contoso/westeurope` or a shared probe
    /// target's name): `result` is `ok` or the failure's label.
    pub(crate) fn probe(&self, target: &str, result: &str, latency: Duration) {
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
    pub(crate) fn set_health_states<'a>(
        &self,
        states: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) {
        self.health_state.clear();
        for (registry, replica, state) in states {
            self.set_health_state(registry, replica, state);
        }
    }

    /// Set one replica's health-state gauges (`state` one of [`STATES`]), the others kept.
    pub(crate) fn set_health_state(&self, registry: &str, replica: &str, state: &str) {
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

    /// Count a health transition to `to` (`healthy`, `degraded`, `unknown`).
    pub(crate) fn transition(&self, to: &str) {
        self.transitions
            .get_or_create(&ToLabel { to: to.to_owned() })
            .inc();
    }

    /// Count a registry starting to fail open.
    pub(crate) fn fail_open_started(&self, registry: &str) {
        self.fail_open_events
            .get_or_create(&RegistryLabel {
                registry: registry.to_owned(),
            })
            .inc();
    }

    /// Registries rerouted by the open incidents of (`region`, `resource`); 0 removes the series.
    pub(crate) fn set_rerouted(&self, region: &str, resource: &str, n: u64) {
        let labels = ResourceLabels {
            region: region.to_owned(),
            resource: resource.to_owned(),
        };
        if n == 0 {
            self.rerouted.remove(&labels);
        } else {
            self.rerouted
                .get_or_create(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// One webhook event's outcome (`delivered` or `given_up`).
    pub(crate) fn webhook_delivery(&self, webhook: &str, result: &str) {
        self.webhook_deliveries
            .get_or_create(&WebhookLabels {
                webhook: webhook.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// A webhook attempt failed and will be retried.
    pub(crate) fn webhook_retry(&self, webhook: &str) {
        self.webhook_retries
            .get_or_create(&WebhookLabel {
                webhook: webhook.to_owned(),
            })
            .inc();
    }

    /// The drop counter of one webhook (shared with the event log, bumped without a lock).
    pub(crate) fn webhook_dropped(&self, webhook: &str) -> Counter {
        self.webhook_dropped
            .get_or_create(&WebhookLabel {
                webhook: webhook.to_owned(),
            })
            .clone()
    }

    /// Drain the heavy-hitter sketch of the counters in service, largest first.
    pub(crate) fn take_hitters(&self) -> Vec<hot::Hitter> {
        let current = self.hub.lock().current.clone();
        current.map(|c| c.take_hitters()).unwrap_or_default()
    }

    /// Answer totals so far by (registry or set, replica) and by (client label, replica): what
    /// a scrape sums, for the traffic record.
    pub(in crate::metrics) fn answer_totals(&self) -> hot::Totals {
        self.hub.lock().totals()
    }

    /// Count a verdict that expired to unknown.
    pub(crate) fn stale_verdict(&self) {
        self.stale_verdicts.inc();
    }

    /// The mass-failure guard engaged (`true`) or released.
    pub(crate) fn guard(&self, engaged: bool) {
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
    pub(crate) fn set_prober_restarts(&self, n: u64) {
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
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
    fn udp_worker_shards_add_up_and_each_has_its_series() {
        let m = Metrics::new();
        let a = m.udp_shard("udp 127.0.0.1:53 #1");
        let b = m.udp_shard("udp 127.0.0.1:53 #2");
        assert_eq!((m.dns().shard(), a.shard(), b.shard()), (0, 1, 2));
        m.dns().response(0, 1);
        a.response(0, 1);
        a.response(3, 1);
        b.response(0, 1);
        b.ecs(true);
        a.ecs(true);
        let t = m.render();
        let q = "steerdns_dns_queries_total{rcode=\"NOERROR\",qtype=\"A\"}";
        assert_eq!(sample(&t, q), Some("3"), "{t}");
        assert_eq!(
            sample(&t, "steerdns_dns_ecs_queries_total{ecs=\"present\"}"),
            Some("2")
        );
        let w = |n: &str| {
            format!("steerdns_udp_worker_responses_total{{worker=\"udp 127.0.0.1:53 #{n}\"}}")
        };
        assert_eq!(sample(&t, &w("1")), Some("2"), "{t}");
        assert_eq!(sample(&t, &w("2")), Some("1"), "{t}");
    }

    #[test]
    fn replica_counter_shards_are_apart_and_add_up() {
        let m = Metrics::new();
        let rc = Arc::new(ReplicaCounters::sharded(
            &layout(&[("contoso", &["eastus", "westeurope"])]),
            ClientLabels::new(["NL"]),
            3,
        ));
        m.install_replica_counters(rc.clone());
        let nl = rc.labels().index(Some("NL"));
        // Shards 0, 1, 2, and 4 (= 1 modulo 3: an index past the count is still counted).
        for shard in [0, 1, 2, 4] {
            rc.answer(shard, 0, 1, nl);
        }
        let t = m.render();
        let key = "steerdns_answers_total{registry=\"contoso\",replica=\"westeurope\"}";
        assert_eq!(sample(&t, key), Some("4"), "{t}");
        let key = "steerdns_client_answers_total{client=\"NL\",replica=\"westeurope\"}";
        assert_eq!(sample(&t, key), Some("4"), "{t}");
        // Two shards' cells never share a 128-byte line.
        let (a, _) = rc.shard_cells(0);
        let (b, _) = rc.shard_cells(1);
        let end_a = a.as_ptr_range().end as usize;
        assert!(b.as_ptr() as usize - end_a >= 128);
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
        rc.answer(0, 0, 1, nl);
        rc.answer(0, 0, 1, nl);
        rc.answer(0, 1, 0, nl);
        rc.answer(0, 0, 0, LabelIndex(0));
        rc.answer(0, 0, 2, nl); // out of range for registry 0
        rc.answer(0, 7, 0, nl);
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
    fn reloads_without_scrapes_keep_no_retired_counters() {
        let m = Metrics::new();
        for i in 0..50u64 {
            let c = Arc::new(ReplicaCounters::new(
                &layout(&[("contoso", &["westeurope"])]),
                ClientLabels::new(["NL"]),
            ));
            c.answer(0, 0, 0, LabelIndex(0));
            m.install_replica_counters(c);
            // Only the installed set is held (by the hub); nothing is retired for good.
            assert_eq!(m.hub.lock().retired.len(), 0, "after {} reloads", i + 1);
        }
        let want = "steerdns_answers_total{registry=\"contoso\",replica=\"westeurope\"}";
        assert_eq!(sample(&m.render(), want), Some("50"));
    }

    #[test]
    fn replica_counters_survive_reload_by_key() {
        let m = Metrics::new();
        let old = Arc::new(ReplicaCounters::new(
            &layout(&[("contoso", &["eastus", "westeurope"])]),
            ClientLabels::new(["NL"]),
        ));
        m.install_replica_counters(old.clone());
        old.answer(0, 0, 1, LabelIndex(0));
        old.answer(0, 0, 1, LabelIndex(0));
        // New layout: a registry added before contoso, westeurope now index 0.
        let new = Arc::new(ReplicaCounters::new(
            &layout(&[("aaa", &["eastus"]), ("contoso", &["westeurope", "x"])]),
            ClientLabels::new(["NL"]),
        ));
        m.install_replica_counters(new.clone());
        // A query still holding the old snapshot counts once more.
        old.answer(0, 0, 1, LabelIndex(0));
        new.answer(0, 1, 0, LabelIndex(0));
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
