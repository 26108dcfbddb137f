//! The scrape-time collector of the hot-path counters: sums the DNS counter shards (one per
//! UDP worker plus one for the rest) and the replica counters into OpenMetrics families.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use super::hot::ReplicaHub;
use super::*;

/// The UDP workers' DNS counters, with each worker's name (taken at thread start and at
/// scrapes only, never per query).
pub(super) type Shards = Arc<Mutex<Vec<(String, Arc<DnsCounters>)>>>;

/// Exports the atomics at scrape time.
#[derive(Debug)]
pub(super) struct HotCollector {
    pub(super) dns: Arc<DnsCounters>,
    pub(super) udp_shards: Shards,
    pub(super) hub: Arc<Mutex<ReplicaHub>>,
    pub(super) tcp_refused: Arc<AtomicU64>,
    pub(super) transport: Arc<TransportCounters>,
}

/// The sum over shards of the cell `cell` picks.
fn sum(shards: &[&DnsCounters], cell: impl Fn(&DnsCounters) -> &AtomicU64) -> u64 {
    shards.iter().map(|d| cell(d).load(Ordering::Relaxed)).sum()
}

impl Collector for HotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let workers = self.udp_shards.lock().clone();
        let all: Vec<&DnsCounters> = std::iter::once(&*self.dns)
            .chain(workers.iter().map(|(_, d)| &**d))
            .collect();
        {
            let c = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                DNS_QUERIES,
                "DNS responses by rcode and qtype",
                None,
                c.metric_type(),
            )?;
            for (r, rcode) in RCODES.iter().enumerate() {
                for (q, qtype) in QTYPES.iter().enumerate() {
                    let labels = [("rcode", *rcode), ("qtype", *qtype)];
                    let m = fam.encode_family(&labels)?;
                    ConstCounter::new(sum(&all, |d| &d.queries[r][q])).encode(m)?;
                }
            }
        }
        if !workers.is_empty() {
            let c = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                UDP_WORKER_RESPONSES,
                "Responses sent by each UDP worker thread",
                None,
                c.metric_type(),
            )?;
            for (name, d) in &workers {
                let labels = [("worker", name.as_str())];
                let m = fam.encode_family(&labels)?;
                ConstCounter::new(d.total()).encode(m)?;
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
                ConstCounter::new(sum(&all, |d| &d.ecs[i])).encode(m)?;
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
                ConstCounter::new(sum(&all, |d| &d.basis[i])).encode(m)?;
            }
        }
        {
            let c = ConstCounter::new(sum(&all, |d| &d.fail_open));
            let m = encoder.encode_descriptor(
                DNS_FAIL_OPEN_ANSWERS,
                "Answers given while failing open",
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        {
            let c = ConstCounter::new(sum(&all, |d| &d.stale_view));
            let m = encoder.encode_descriptor(
                DNS_STALE_VIEW_ANSWERS,
                "Answers routed with every verdict unknown because the health view was past its deadline (the writer stopped)",
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
        let t = &self.transport;
        for (name, help, cell) in [
            (
                TCP_EVICTED,
                "TCP connections closed, longest-idle first, to admit a new one at the cap",
                &t.tcp_evicted,
            ),
            (
                RRL_DROPPED,
                "UDP responses dropped by response rate limiting",
                &t.rrl_dropped,
            ),
            (
                RRL_SLIPPED,
                "UDP responses sent truncated (TC) by response rate limiting",
                &t.rrl_slipped,
            ),
        ] {
            let c = ConstCounter::new(cell.load(Ordering::Relaxed));
            let m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(m)?;
        }
        let (current_keys, (replica, client)) = {
            let mut hub = self.hub.lock();
            let keys: Vec<(Arc<str>, Arc<str>)> = hub
                .current
                .as_ref()
                .map(|c| c.slot_keys.to_vec())
                .unwrap_or_default();
            let t = hub.totals();
            (keys, (t.replica, t.client))
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

/// The signers of the zones in service, by origin (replaced at start and at each reload).
pub(super) type Signers = Arc<Mutex<Vec<(String, Arc<crate::dnssec::sign::ZoneSigner>)>>>;

/// Exports each signed zone's signing counters at scrape time.
#[derive(Debug)]
pub(super) struct DnssecCollector {
    pub(super) signers: Signers,
}

impl Collector for DnssecCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::gauge::ConstGauge;
        let signers = self.signers.lock().clone();
        // One counter per zone.
        let mut per_zone = |name: &str,
                            help: &str,
                            value: fn(&crate::dnssec::sign::ZoneSigner) -> u64|
         -> Result<(), std::fmt::Error> {
            let c = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            for (zone, s) in &signers {
                let labels = [("zone", zone.as_str())];
                let m = fam.encode_family(&labels)?;
                ConstCounter::new(value(s)).encode(m)?;
            }
            Ok(())
        };
        per_zone(
            DNSSEC_SIGNATURES,
            "DNSSEC signatures made (static data at load and renewal, steered answers and denials when first asked), by zone",
            |s| s.signatures_made(),
        )?;
        per_zone(
            DNSSEC_PRESIGNED,
            "DNSSEC signatures made ahead of any query for the answers a failover may give (part of steerdns_dnssec_signatures_total), by zone",
            |s| s.signatures_presigned(),
        )?;
        {
            let c = ConstCounter::new(0u64);
            let mut fam = encoder.encode_descriptor(
                DNSSEC_CACHE,
                "Lookups in the signature cache of steered answers and denials, by zone and result (a miss signs)",
                None,
                c.metric_type(),
            )?;
            for (zone, s) in &signers {
                let (hits, misses) = s.cache().counts();
                for (result, n) in [("hit", hits), ("miss", misses)] {
                    let labels = [("zone", zone.as_str()), ("result", result)];
                    let m = fam.encode_family(&labels)?;
                    ConstCounter::new(n).encode(m)?;
                }
            }
        }
        {
            let g = ConstGauge::new(0i64);
            let mut fam = encoder.encode_descriptor(
                DNSSEC_EXPIRY,
                "Unix time when the earliest signature of the zone's static data expires (renewed at half its validity)",
                None,
                g.metric_type(),
            )?;
            for (zone, s) in &signers {
                let labels = [("zone", zone.as_str())];
                let m = fam.encode_family(&labels)?;
                ConstGauge::new(s.static_expiry() as i64).encode(m)?;
            }
        }
        Ok(())
    }
}
