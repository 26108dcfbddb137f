//! The decision for one query of a global name — rank the eligible replicas for the client,
//! fail open when every replica able to answer is degraded, pick the ECS scope — and its
//! explanation. The DNS path and `explain` (CLI and admin API) run the same code.

use std::net::IpAddr;

use hickory_proto::rr::RecordType;

use super::{AnswerSet, Registry, ReplicaSet};
use crate::health::book::Masks;
use crate::routing::{self, Client, Location, Locator, ReplicaMask};
use crate::wire::ClientSubnet;
use crate::zone::ZoneSet;

//------------ Decisions -----------------------------------------------------------------------

/// A registry resolved to everything a decision needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target<'a> {
    /// The record.
    pub(crate) registry: &'a Registry,
    /// Its replica set.
    pub(crate) set: &'a ReplicaSet,
    /// Its prepared answers.
    pub(crate) answers: &'a AnswerSet,
}

/// The replicas a query gets, and why. The DNS path and `steerdns explain` both come here.
#[derive(Debug)]
pub(crate) struct Decision<'a> {
    /// Where the client is.
    pub(crate) location: Location<'a>,
    /// The client the decision was made for.
    pub(crate) client: Client,
    /// Chosen replica indices, best first (`count` of them).
    pub(crate) picks: [routing::ReplicaIndex; routing::MAX_REPLICAS],
    /// How many picks.
    pub(crate) count: usize,
    /// The ECS scope prefix to answer with.
    pub(crate) scope: u8,
    /// The mask of replicas that were eligible (routable and with data for the type).
    pub(crate) eligible: ReplicaMask,
}

/// Decide with the health masks of the registry, failing open when every replica that could
/// answer this type is degraded: then the enabled ones are ranked as if all were healthy
/// (DESIGN: "all replicas degraded"). Returns the decision and whether it failed open. The DNS
/// path and explain both call this.
pub(crate) fn decide_with_health<'a>(
    locator: &'a Locator,
    t: Target<'_>,
    masks: &Masks,
    qtype: u16,
    source: IpAddr,
    ecs: Option<&ClientSubnet>,
) -> (Decision<'a>, bool) {
    let decision = decide(locator, t, masks.routable, qtype, source, ecs);
    if decision.count == 0 {
        let fallback = masks.enabled & t.set.mask_for(qtype);
        if !fallback.is_empty() && fallback != decision.eligible {
            return (decide(locator, t, fallback, qtype, source, ecs), true);
        }
    }
    (decision, false)
}

/// Decide which replicas answer a query. `routable` is the health view's mask for the
/// registry (fail-open already applied). `source` is the packet source; `ecs` the validated
/// Client Subnet option, if any.
pub(crate) fn decide<'a>(
    locator: &'a Locator,
    t: Target<'_>,
    routable: ReplicaMask,
    qtype: u16,
    source: IpAddr,
    ecs: Option<&ClientSubnet>,
) -> Decision<'a> {
    // RFC 7871 §7.1.2: a SOURCE PREFIX-LENGTH of 0 means the client does not want its
    // address used; answer for the resolver, scope 0.
    let (client, opted_out) = match ecs {
        Some(cs) if cs.source_prefix > 0 => (Client::from_subnet(cs.addr, cs.source_prefix), false),
        Some(_) => (Client::from_source(source), true),
        None => (Client::from_source(source), false),
    };
    let location = locator.locate(client);
    let eligible = routable & t.set.mask_for(qtype);
    let mut picks = [0; routing::MAX_REPLICAS];
    let mut count = routing::rank(
        &location,
        &t.set.candidates,
        eligible,
        usize::from(t.registry.answers),
        &mut picks,
    );
    // A name owns one CNAME at most: a CNAME replica answers alone.
    if count > 1
        && let Some(pos) = picks[..count].iter().position(|p| {
            t.set
                .replicas
                .get(usize::from(*p))
                .is_some_and(|r| r.spec.cname.is_some())
        })
    {
        count = if pos == 0 { 1 } else { pos };
    }
    // An answer that is the same for everybody (nothing eligible: NODATA) is not tailored.
    let scope = if opted_out || count == 0 {
        0
    } else {
        location.scope_prefix
    };
    Decision {
        location,
        client,
        picks,
        count,
        scope,
        eligible,
    }
}

//------------ Explain ------------------------------------------------------------------------

/// Why a query for a global name gets its answer: the self-hosted "test DNS answer".
#[derive(Debug, serde::Serialize)]
pub(crate) struct Explained {
    /// The registry (config key).
    pub(crate) registry: String,
    /// The global name.
    pub(crate) name: String,
    /// The query type.
    pub(crate) qtype: String,
    /// The client the decision was made for (ECS subnet or source), as `addr/prefix`.
    pub(crate) client: String,
    /// Which layer decided, the matched network, the label.
    pub(crate) basis: routing::Basis,
    /// The latency-table prefix or mmdb network that decided.
    pub(crate) network: Option<String>,
    /// The metrics label.
    pub(crate) label: Option<String>,
    /// The geo database consulted (when the latency table did not decide): its file, schema,
    /// matched network and the client's coordinates.
    pub(crate) geo: Option<routing::GeoExplanation>,
    /// The ECS scope the answer carries (when the query has ECS).
    pub(crate) scope_prefix: u8,
    /// The answer failed open (every replica able to answer was degraded).
    pub(crate) fail_open: bool,
    /// Every replica in rank order.
    pub(crate) ranking: Vec<ExplainedReplica>,
    /// The answer records, as text.
    pub(crate) answer: Vec<String>,
}

/// One replica in an explanation.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ExplainedReplica {
    /// Config key.
    pub(crate) replica: String,
    /// Region name.
    pub(crate) region: String,
    /// RTT for this client (measured or estimated), if known.
    pub(crate) rtt_ms: Option<u32>,
    /// Great-circle km from the client's coordinates to the region (geo basis), the distance
    /// the RTT estimate comes from.
    pub(crate) distance_km: Option<f64>,
    /// Healthy (or failed open) and with records of this type.
    pub(crate) eligible: bool,
    /// In the answer.
    pub(crate) chosen: bool,
}

/// Explain the answer to `qtype` for a registry, from the same decision code the DNS path
/// runs. The one explain behind the CLI and the admin API.
pub(crate) fn explain(
    locator: &Locator,
    zones: &ZoneSet,
    t: Target<'_>,
    masks: &Masks,
    qtype: u16,
    source: IpAddr,
    ecs: Option<&ClientSubnet>,
) -> Explained {
    let (d, fail_open) = decide_with_health(locator, t, masks, qtype, source, ecs);
    let x = routing::explain(&d.location, &t.set.candidates, d.eligible);
    let chosen = &d.picks[..d.count];
    let name = t.registry.name();
    let mut answer = Vec::new();
    for p in chosen {
        answer.extend(
            t.set
                .describe(usize::from(*p), &name, t.answers.ttl, qtype, zones),
        );
    }
    let replica_key = |i: routing::ReplicaIndex| {
        t.set
            .replicas
            .get(usize::from(i))
            .map_or_else(String::new, |r| r.key.to_string())
    };
    Explained {
        registry: t.registry.key().to_string(),
        name: name.to_ascii(),
        qtype: RecordType::from(qtype).to_string(),
        client: format!("{}/{}", d.client.addr, d.client.source_prefix),
        basis: x.basis,
        network: x.network.map(|n| n.to_string()),
        label: x.label,
        geo: x.geo,
        scope_prefix: d.scope,
        fail_open,
        ranking: x
            .replicas
            .iter()
            .map(|r| ExplainedReplica {
                replica: replica_key(r.replica),
                region: r.region_name.clone(),
                rtt_ms: r.rtt_ms,
                distance_km: r.distance_km,
                eligible: r.routable,
                chosen: chosen.contains(&r.replica),
            })
            .collect(),
        answer,
    }
}
