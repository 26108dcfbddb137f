//! Global names, prepared at load time so that answering one costs no allocation: each
//! replica's answer records are encoded once (owner written as a pointer to the question), the
//! enclosing zone's negative SOA too, and names are found by their lower-cased wire form.

use std::collections::HashMap;

use hickory_proto::ProtoError;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, rdata};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use std::net::IpAddr;

use crate::config::Registry;
use crate::dns::wire::{ClientSubnet, HEADER_LEN, MAX_NAME_LEN};
use crate::problem::Problem;
use crate::routing::{
    self, Candidate, Candidates, Client, Location, Locator, RegionOrder, Regions,
};
use crate::zone::{Answer, ZoneSet};

/// Pre-encoded resource records: concatenated wire RRs and how many there are.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    /// The RRs, ready to copy after the question.
    pub bytes: Vec<u8>,
    /// How many RRs.
    pub count: u16,
}

/// One replica, ready to answer.
#[derive(Debug)]
pub struct PreparedReplica {
    /// Config key.
    pub key: String,
    /// Region name.
    pub region: String,
    /// Answer to A queries (A records, or CNAME + the target's A records).
    pub a: Encoded,
    /// Answer to AAAA queries.
    pub aaaa: Encoded,
    /// Answer to any other type: the CNAME alone for CNAME replicas, nothing otherwise.
    pub other: Encoded,
    cname: bool,
    /// The answer records as text, per type (A, AAAA, other), for explain.
    text: [Vec<String>; 3],
}

impl PreparedReplica {
    /// The records answered for `qtype`, as zone-file text.
    pub fn describe(&self, qtype: u16) -> &[String] {
        match qtype {
            1 | 255 => &self.text[0],
            28 => &self.text[1],
            _ => &self.text[2],
        }
    }

    /// Answers with a CNAME (the replica's regional name) rather than addresses.
    pub fn is_cname(&self) -> bool {
        self.cname
    }

    /// The records for a query type.
    pub fn for_type(&self, qtype: u16) -> &Encoded {
        match qtype {
            1 | 255 => &self.a,
            28 => &self.aaaa,
            _ => &self.other,
        }
    }
}

/// One registry, ready to answer.
#[derive(Debug)]
pub struct PreparedRegistry {
    /// Config key.
    pub key: String,
    /// The global name.
    pub name: Name,
    /// How many replicas per answer.
    pub answers: u8,
    /// TTL of the answers.
    pub ttl: u32,
    /// Replicas, in config order (the index is the replica index everywhere).
    pub replicas: Vec<PreparedReplica>,
    /// The enclosing zone's SOA for NODATA (owner written in full, TTL per RFC 2308).
    pub negative_soa: Encoded,
    /// Bit i set: replica i has records for A (index 0) / AAAA (1) / other types (2).
    pub family_mask: [u64; 3],
    /// The replicas' regions (and the registry's default order), for ranking.
    pub candidates: Candidates,
}

impl PreparedRegistry {
    /// Which replicas can answer a query type at all.
    pub fn mask_for(&self, qtype: u16) -> u64 {
        match qtype {
            // ANY is answered with the A RRset (RFC 8482 allows one RRset).
            1 | 255 => self.family_mask[0],
            28 => self.family_mask[1],
            _ => self.family_mask[2],
        }
    }
}

/// All global names.
#[derive(Debug, Default)]
pub struct Globals {
    by_name: HashMap<Box<[u8]>, usize>,
    /// Registries, in config order.
    pub registries: Vec<PreparedRegistry>,
}

impl Globals {
    /// Prepare every registry. `config_path` names the file in problems.
    pub fn prepare(
        registries: &[Registry],
        zones: &ZoneSet,
        regions: &Regions,
        config_path: &std::path::Path,
    ) -> Result<Self, Vec<Problem>> {
        let mut out = Self::default();
        let mut problems = Vec::new();
        for reg in registries {
            match prepare_registry(reg, zones, regions) {
                Ok(p) => {
                    out.by_name
                        .insert(wire_lower(&p.name).into_boxed_slice(), out.registries.len());
                    out.registries.push(p);
                }
                Err(e) => problems.push(Problem::file(
                    config_path,
                    format!("registry {}: {e}", reg.key),
                )),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    /// The registry whose global name is this lower-cased wire name.
    pub fn find(&self, lower_wire: &[u8]) -> Option<(usize, &PreparedRegistry)> {
        let i = *self.by_name.get(lower_wire)?;
        Some((i, &self.registries[i]))
    }

    /// The registry with this global name.
    pub fn find_name(&self, name: &Name) -> Option<(usize, &PreparedRegistry)> {
        self.find(&wire_lower(name))
    }

    /// No global names at all (a cheap check before lower-casing the question).
    pub fn is_empty(&self) -> bool {
        self.registries.is_empty()
    }
}

/// Lower-cased wire form of a name.
fn wire_lower(name: &Name) -> Vec<u8> {
    let mut v = Vec::with_capacity(MAX_NAME_LEN);
    for label in name.iter() {
        v.push(label.len() as u8);
        v.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    v.push(0);
    v
}

fn prepare_registry(
    reg: &Registry,
    zones: &ZoneSet,
    regions: &Regions,
) -> Result<PreparedRegistry, String> {
    let mut items = Vec::with_capacity(reg.replicas.len());
    for rep in &reg.replicas {
        let region = regions.id(&rep.region).ok_or_else(|| {
            format!(
                "replica {} is in region {:?}, which is not configured",
                rep.key, rep.region
            )
        })?;
        items.push(Candidate { region });
    }
    let candidates = match &reg.default_order {
        Some(order) => {
            let names: Vec<&str> = order.iter().map(String::as_str).collect();
            let order = RegionOrder::new(regions, &names).map_err(|e| e.to_string())?;
            Candidates::with_order(&items, &order)
        }
        None => Candidates::new(&items),
    }
    .map_err(|e| e.to_string())?;
    let zone = zones
        .find(&reg.name)
        .ok_or_else(|| format!("global name {} is not inside any served zone", reg.name))?;
    let enc_err = |e: ProtoError| format!("cannot encode an answer: {e}");
    let mut negative_soa = Encoded::default();
    encode_rr(&mut negative_soa, zone.negative_soa(), false).map_err(enc_err)?;

    let mut replicas = Vec::with_capacity(reg.replicas.len());
    let mut family_mask = [0u64; 3];
    for (i, rep) in reg.replicas.iter().enumerate() {
        let mut p = PreparedReplica {
            key: rep.key.clone(),
            region: rep.region.clone(),
            a: Encoded::default(),
            aaaa: Encoded::default(),
            other: Encoded::default(),
            cname: rep.cname.is_some(),
            text: Default::default(),
        };
        if let Some(target) = &rep.cname {
            let cname = Record::from_rdata(
                reg.name.clone(),
                reg.ttl,
                RData::CNAME(rdata::CNAME(target.clone())),
            );
            for e in [&mut p.a, &mut p.aaaa, &mut p.other] {
                encode_rr(e, &cname, true).map_err(enc_err)?;
            }
            for t in &mut p.text {
                t.push(cname.to_string());
            }
            // Chase the target inside our zones (its own TTLs), like a static CNAME would be.
            let [text_a, text_aaaa, _] = &mut p.text;
            for (enc, text, rtype) in [
                (&mut p.a, text_a, RecordType::A),
                (&mut p.aaaa, text_aaaa, RecordType::AAAA),
            ] {
                if let Some((_, Answer::Authoritative { answers, .. })) =
                    zones.lookup(target, rtype)
                {
                    for (r, _) in answers {
                        encode_rr(enc, r, false).map_err(enc_err)?;
                        text.push(r.to_string());
                    }
                }
            }
            family_mask[0] |= 1 << i;
            family_mask[1] |= 1 << i;
            family_mask[2] |= 1 << i;
        } else {
            for a in &rep.ipv4 {
                let r = Record::from_rdata(reg.name.clone(), reg.ttl, RData::A((*a).into()));
                encode_rr(&mut p.a, &r, true).map_err(enc_err)?;
                p.text[0].push(r.to_string());
            }
            for a in &rep.ipv6 {
                let r = Record::from_rdata(reg.name.clone(), reg.ttl, RData::AAAA((*a).into()));
                encode_rr(&mut p.aaaa, &r, true).map_err(enc_err)?;
                p.text[1].push(r.to_string());
            }
            if !rep.ipv4.is_empty() {
                family_mask[0] |= 1 << i;
            }
            if !rep.ipv6.is_empty() {
                family_mask[1] |= 1 << i;
            }
        }
        replicas.push(p);
    }
    Ok(PreparedRegistry {
        key: reg.key.clone(),
        name: reg.name.clone(),
        answers: reg.answers,
        ttl: reg.ttl,
        replicas,
        negative_soa,
        family_mask,
        candidates,
    })
}

//------------ Decisions -----------------------------------------------------------------------

/// The replicas a query gets, and why. The DNS path and `steerdns explain` both come here.
#[derive(Debug)]
pub struct Decision<'a> {
    /// Where the client is.
    pub location: Location<'a>,
    /// The client the decision was made for.
    pub client: Client,
    /// Chosen replica indices, best first (`count` of them).
    pub picks: [routing::ReplicaIndex; routing::MAX_REPLICAS],
    /// How many picks.
    pub count: usize,
    /// The ECS scope prefix to answer with.
    pub scope: u8,
    /// The mask of replicas that were eligible (routable and with data for the type).
    pub eligible: u64,
}

/// Decide with the health masks of the registry, failing open when every replica that could
/// answer this type is degraded: then the enabled ones are ranked as if all were healthy
/// (DESIGN: "all replicas degraded"). Returns the decision and whether it failed open. The DNS
/// path and explain both call this.
pub fn decide_with_health<'a>(
    locator: &'a Locator,
    reg: &PreparedRegistry,
    (routable, enabled): (u64, u64),
    qtype: u16,
    source: IpAddr,
    ecs: Option<&ClientSubnet>,
) -> (Decision<'a>, bool) {
    let decision = decide(locator, reg, routable, qtype, source, ecs);
    if decision.count == 0 {
        let fallback = enabled & reg.mask_for(qtype);
        if fallback != 0 && fallback != decision.eligible {
            return (decide(locator, reg, fallback, qtype, source, ecs), true);
        }
    }
    (decision, false)
}

/// Decide which replicas answer a query for registry `reg`. `routable` is the health view's
/// mask for the registry (fail-open already applied). `source` is the packet source; `ecs` the
/// validated Client Subnet option, if any.
pub fn decide<'a>(
    locator: &'a Locator,
    reg: &PreparedRegistry,
    routable: u64,
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
    let eligible = routable & reg.mask_for(qtype);
    let mut picks = [0; routing::MAX_REPLICAS];
    let mut count = routing::rank(
        &location,
        &reg.candidates,
        eligible,
        usize::from(reg.answers),
        &mut picks,
    );
    // A name owns one CNAME at most: a CNAME replica answers alone.
    if count > 1
        && let Some(pos) = picks[..count]
            .iter()
            .position(|p| reg.replicas[usize::from(*p)].is_cname())
    {
        if pos == 0 {
            count = 1;
        } else {
            count = pos;
        }
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

/// Append one RR in wire form. `owner_is_query`: the owner is written as a pointer to the
/// question name (offset 12); otherwise in full. Names in RDATA are never compressed, so the
/// bytes can be copied into any message.
fn encode_rr(out: &mut Encoded, rec: &Record, owner_is_query: bool) -> Result<(), ProtoError> {
    let mut buf = Vec::new();
    {
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_name_encoding(NameEncoding::Uncompressed);
        if owner_is_query {
            enc.emit_u16(0xc000 | HEADER_LEN as u16)?;
        } else {
            rec.name.emit(&mut enc)?;
        }
        enc.emit_u16(rec.record_type().into())?;
        enc.emit_u16(DNSClass::IN.into())?;
        enc.emit_u32(rec.ttl)?;
        let place = enc.place::<u16>()?;
        rec.data.emit(&mut enc)?;
        let len = enc.len_since_place(&place);
        place.replace(&mut enc, len as u16)?;
    }
    out.bytes.extend_from_slice(&buf);
    out.count += 1;
    Ok(())
}

//------------ Explain ------------------------------------------------------------------------

/// Why a query for a global name gets its answer: the self-hosted "test DNS answer".
#[derive(Debug, serde::Serialize)]
pub struct Explained {
    /// The registry (config key).
    pub registry: String,
    /// The global name.
    pub name: String,
    /// The query type.
    pub qtype: String,
    /// The client the decision was made for (ECS subnet or source), as `addr/prefix`.
    pub client: String,
    /// Which layer decided, the matched network, the label.
    pub basis: routing::Basis,
    /// The latency-table prefix or mmdb network that decided.
    pub network: Option<String>,
    /// The metrics label.
    pub label: Option<String>,
    /// The ECS scope the answer carries (when the query has ECS).
    pub scope_prefix: u8,
    /// The answer failed open (every replica able to answer was degraded).
    pub fail_open: bool,
    /// Every replica in rank order.
    pub ranking: Vec<ExplainedReplica>,
    /// The answer records, as text.
    pub answer: Vec<String>,
}

/// One replica in an explanation.
#[derive(Debug, serde::Serialize)]
pub struct ExplainedReplica {
    /// Config key.
    pub replica: String,
    /// Region name.
    pub region: String,
    /// RTT for this client (measured or estimated), if known.
    pub rtt_ms: Option<u32>,
    /// Healthy (or failed open) and with records of this type.
    pub eligible: bool,
    /// In the answer.
    pub chosen: bool,
}

/// Explain the answer to `qtype` for `reg`, from the same decision code the DNS path runs.
pub fn explain(
    locator: &Locator,
    reg: &PreparedRegistry,
    masks: (u64, u64),
    qtype: u16,
    source: IpAddr,
    ecs: Option<&ClientSubnet>,
) -> Explained {
    let (d, fail_open) = decide_with_health(locator, reg, masks, qtype, source, ecs);
    let x = routing::explain(&d.location, &reg.candidates, d.eligible);
    let chosen = &d.picks[..d.count];
    let mut answer = Vec::new();
    for p in chosen {
        answer.extend(
            reg.replicas[usize::from(*p)]
                .describe(qtype)
                .iter()
                .cloned(),
        );
    }
    Explained {
        registry: reg.key.clone(),
        name: reg.name.to_ascii(),
        qtype: hickory_proto::rr::RecordType::from(qtype).to_string(),
        client: format!("{}/{}", d.client.addr, d.client.source_prefix),
        basis: x.basis,
        network: x.network.map(|n| n.to_string()),
        label: x.label,
        scope_prefix: d.scope,
        fail_open,
        ranking: x
            .replicas
            .iter()
            .map(|r| ExplainedReplica {
                replica: reg.replicas[usize::from(r.replica)].key.clone(),
                region: r.region_name.clone(),
                rtt_ms: r.rtt_ms,
                eligible: r.routable,
                chosen: chosen.contains(&r.replica),
            })
            .collect(),
        answer,
    }
}
