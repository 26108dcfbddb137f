//! The request path: one query in, one response out, synchronously and without I/O.
//!
//! ```text
//!  packet ─► wire::parse_query ─┬─ Reject::Drop ───────────────► (nothing sent)
//!                               ├─ Reject::Error ──────────────► FORMERR / NOTIMP / BADVERS
//!                               └─ Query ─► class/type checks ─► zones.lookup ─► encode
//! ```
//!
//! Everything an answer depends on comes from the one [`Snapshot`] passed in. The socket loops
//! in `server` call [`handle`] with a reusable output buffer, so a query costs no task and,
//! on the static path, only the allocations of the name lookup.

use std::net::IpAddr;

use hickory_proto::ProtoError;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use crate::global::{self, Registry};
use crate::metrics::{DecisionBasis, DnsCounters};
use crate::routing::Basis;
use crate::state::Snapshot;
use crate::wire::{self, ClientSubnet, HEADER_LEN, Query, Rcode, Reject};
use crate::zone::{Answer, Owner};

/// How the query arrived; decides the size limit of the answer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Transport {
    /// UDP: the answer must fit the client's payload size (512 without EDNS), else TC.
    Udp,
    /// TCP: up to 65535 octets.
    Tcp,
}

/// What happened to one query, for counting.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Outcome {
    /// The rcode sent.
    pub rcode: Rcode,
    /// The query type (0 when the question could not be parsed).
    pub qtype: u16,
    /// TC was set.
    pub truncated: bool,
}

/// Answer one DNS message. Returns `None` when nothing must be sent (the response is left in
/// `out` otherwise). `client` is the transport source address, already canonical.
pub fn handle(
    snap: &Snapshot,
    packet: &[u8],
    client: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
    counters: &DnsCounters,
) -> Option<Outcome> {
    let outcome = respond(snap, packet, client, transport, out, counters);
    if let Some(o) = &outcome {
        counters.response(o.rcode as u16, o.qtype);
    }
    outcome
}

fn respond(
    snap: &Snapshot,
    packet: &[u8],
    client: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
    counters: &DnsCounters,
) -> Option<Outcome> {
    match wire::parse_query(packet) {
        Err(Reject::Drop) => None,
        Err(Reject::Error {
            id,
            opcode,
            recursion_desired,
            rcode,
            question_len,
            edns,
        }) => {
            wire::write_header(
                out,
                id,
                opcode,
                false,
                false,
                recursion_desired,
                false,
                rcode,
                [u16::from(question_len > 0), 0, 0, u16::from(edns.is_some())],
            );
            out.extend_from_slice(&packet[HEADER_LEN..HEADER_LEN + question_len]);
            if let Some(e) = edns {
                wire::write_opt(out, rcode.high(), e.dnssec_ok, None);
            }
            let qtype = if question_len >= 4 {
                let t = HEADER_LEN + question_len - 4;
                u16::from_be_bytes([packet[t], packet[t + 1]])
            } else {
                0
            };
            Some(Outcome {
                rcode,
                qtype,
                truncated: false,
            })
        }
        Ok(q) => {
            counters.ecs(q.edns.is_some_and(|e| e.client_subnet.is_some()));
            Some(answer(snap, &q, client, transport, out, counters))
        }
    }
}

fn answer(
    snap: &Snapshot,
    q: &Query<'_>,
    source: IpAddr,
    transport: Transport,
    out: &mut Vec<u8>,
    counters: &DnsCounters,
) -> Outcome {
    let limit = match transport {
        Transport::Udp => q.udp_limit(),
        Transport::Tcp => usize::from(u16::MAX),
    };
    // Static answers do not depend on the client: echo ECS with scope 0 (RFC 7871 §7.2.1).
    let ecs = q.edns.and_then(|e| e.client_subnet);
    let ecs = ecs.as_ref().map(|cs| (cs, 0u8));

    if q.qclass != 1 {
        // Only class IN is served (CHAOS version.bind and friends included).
        return error(q, Rcode::Refused, ecs, out);
    }
    match q.qtype {
        // Zone transfers are not offered.
        251 | 252 => return error(q, Rcode::Refused, ecs, out),
        // MAILB / MAILA: obsolete meta types (RFC 883), not implemented.
        253 | 254 => return error(q, Rcode::NotImp, ecs, out),
        // OPT as a question type makes no sense (RFC 6891 §6.1.1).
        wire::TYPE_OPT => return error(q, Rcode::FormErr, None, out),
        _ => {}
    }

    // Global names: an exact match on the lower-cased wire name, no allocation.
    if !snap.globals.is_empty() {
        let mut lower = [0u8; wire::MAX_NAME_LEN];
        let key = wire::lowercase_wire(q.qname_wire(), &mut lower);
        if let Some(reg) = snap.globals.find(key) {
            return global_answer(snap, q, reg, source, limit, out, counters);
        }
    }

    let Ok(qname) = Name::read(&mut BinDecoder::new(q.question)) else {
        return error(q, Rcode::FormErr, ecs, out);
    };
    let qtype = RecordType::from(q.qtype);
    let Some((_, result)) = snap.zones.lookup(&qname, qtype) else {
        // Not in any of our zones: we are not authoritative and do not recurse.
        return error(q, Rcode::Refused, ecs, out);
    };
    match result {
        Answer::Authoritative {
            answers,
            soa,
            nxdomain,
            additionals,
        } => {
            let rcode = if nxdomain {
                Rcode::NxDomain
            } else {
                Rcode::NoError
            };
            let authority: &[&Record] = match &soa {
                Some(s) => std::slice::from_ref(s),
                None => &[],
            };
            encode(
                out,
                q,
                Response {
                    rcode,
                    authoritative: true,
                    answers: &answers,
                    authority,
                    additional: &additionals,
                    additional_required: false,
                    ecs,
                },
                limit,
            )
        }
        Answer::Referral { ns, glue } => {
            let authority: Vec<&Record> = ns.iter().collect();
            encode(
                out,
                q,
                Response {
                    rcode: Rcode::NoError,
                    // RFC 1034 §4.3.2: a referral is not an authoritative answer.
                    authoritative: false,
                    answers: &[],
                    authority: &authority,
                    additional: &glue,
                    // RFC 9471: in-domain glue that does not fit sets TC.
                    additional_required: true,
                    ecs,
                },
                limit,
            )
        }
    }
}

/// Answer a global name: rank the replicas for the client and copy their prepared records.
fn global_answer(
    snap: &Snapshot,
    q: &Query<'_>,
    reg: &Registry,
    source: IpAddr,
    limit: usize,
    out: &mut Vec<u8>,
    counters: &DnsCounters,
) -> Outcome {
    let ecs = q.edns.and_then(|e| e.client_subnet);
    let Some((set, answers)) = snap.globals.parts(reg) else {
        // A record pointing nowhere is an internal fault, never a panic.
        return error(q, Rcode::ServFail, ecs.as_ref().map(|cs| (cs, 0)), out);
    };
    let target = global::Target {
        registry: reg,
        set,
        answers,
    };
    let masks = snap.health.get(reg);
    let (decision, fail_open) = global::decide_with_health(
        &snap.locator,
        target,
        (masks.routable, masks.enabled),
        q.qtype,
        source,
        ecs.as_ref(),
    );
    // Count what was decided and for whom (atomics only: no lock, no allocation).
    counters.decision(match decision.location.basis {
        Basis::LatencyTable => DecisionBasis::LatencyTable,
        Basis::Geo => DecisionBasis::Geo,
        Basis::DefaultOrder => DecisionBasis::DefaultOrder,
    });
    if fail_open || masks.fail_open {
        counters.fail_open();
    }
    let label = snap.counters.labels().index(decision.location.label);
    for p in &decision.picks[..decision.count] {
        snap.counters
            .answer(answers.set as usize, usize::from(*p), label);
        snap.counters.answer_registry(reg.id, usize::from(*p));
    }
    let negative_soa = snap.globals.negative_soas.get(usize::from(reg.zone));
    let rcode = Rcode::NoError;
    let mut counts = [1u16, 0, 0, 0];
    let mut size = HEADER_LEN + q.question.len();
    for p in &decision.picks[..decision.count] {
        size += answers.for_type(usize::from(*p), q.qtype).bytes.len();
    }
    if decision.count == 0 {
        size += negative_soa.map_or(0, |s| s.bytes.len());
    }
    let ecs_echo = ecs.as_ref().map(|cs| (cs, decision.scope));
    if q.edns.is_some() {
        size += wire::opt_len(ecs.as_ref());
    }
    let truncated = size > limit;
    wire::write_header(
        out,
        q.id,
        q.opcode,
        true,
        truncated,
        q.recursion_desired,
        q.checking_disabled,
        rcode,
        [1, 0, 0, 0],
    );
    out.extend_from_slice(q.question);
    if !truncated {
        if decision.count == 0
            && let Some(soa) = negative_soa
        {
            // NODATA: no replica (left) has records of this type.
            out.extend_from_slice(&soa.bytes);
            counts[2] = soa.count;
        }
        for p in &decision.picks[..decision.count] {
            let e = answers.for_type(usize::from(*p), q.qtype);
            out.extend_from_slice(&e.bytes);
            counts[1] += e.count;
        }
    }
    if let Some(e) = &q.edns {
        wire::write_opt(out, 0, e.dnssec_ok, ecs_echo);
        counts[3] += 1;
    }
    wire::set_counts(out, counts);
    Outcome {
        rcode,
        qtype: q.qtype,
        truncated,
    }
}

/// An error response that echoes the question (and OPT when the query had one).
fn error(
    q: &Query<'_>,
    rcode: Rcode,
    ecs: Option<(&ClientSubnet, u8)>,
    out: &mut Vec<u8>,
) -> Outcome {
    wire::write_header(
        out,
        q.id,
        q.opcode,
        false,
        false,
        q.recursion_desired,
        q.checking_disabled,
        rcode,
        [1, 0, 0, u16::from(q.edns.is_some())],
    );
    out.extend_from_slice(q.question);
    if let Some(e) = &q.edns {
        wire::write_opt(out, rcode.high(), e.dnssec_ok, ecs);
    }
    Outcome {
        rcode,
        qtype: q.qtype,
        truncated: false,
    }
}

/// The sections of a response, borrowed from the zones.
struct Response<'a, 'z> {
    rcode: Rcode,
    authoritative: bool,
    answers: &'a [(&'z Record, Owner<'z>)],
    authority: &'a [&'z Record],
    additional: &'a [&'z Record],
    additional_required: bool,
    ecs: Option<(&'a ClientSubnet, u8)>,
}

/// Encode a response into `out`, within `limit` octets. When the answer or authority section
/// (or required glue) does not fit, the response carries TC and no records, so the client
/// retries over TCP (RFC 2181 §9, RFC 7766 §5). Optional additional records are left out
/// silently when they do not fit.
fn encode(out: &mut Vec<u8>, q: &Query<'_>, r: Response<'_, '_>, limit: usize) -> Outcome {
    let header = |out: &mut Vec<u8>, truncated: bool| {
        wire::write_header(
            out,
            q.id,
            q.opcode,
            r.authoritative,
            truncated,
            q.recursion_desired,
            q.checking_disabled,
            r.rcode,
            [1, 0, 0, 0],
        );
        out.extend_from_slice(q.question);
    };
    header(out, false);
    let opt_room = q.edns.map_or(0, |_| wire::opt_len(r.ecs.map(|(cs, _)| cs)));
    let budget = limit.saturating_sub(opt_room).min(usize::from(u16::MAX));

    let mut counts = [1u16, 0, 0, 0];
    let fitted = {
        let start = out.len();
        let mut enc = BinEncoder::with_offset(out, start as u32);
        enc.set_max_size(budget as u16);
        // Let later names compress against the question (the 0x20 case as sent).
        let qname_end = HEADER_LEN + q.qname_len - 1;
        let mut p = HEADER_LEN;
        while p < qname_end {
            enc.store_label_pointer(p, qname_end);
            p += 1 + usize::from(q.question[p - HEADER_LEN]);
        }
        emit_sections(&mut enc, &r, &mut counts)
    };
    if !fitted {
        header(out, true);
        counts = [1, 0, 0, 0];
    }
    if let Some(e) = &q.edns {
        wire::write_opt(out, r.rcode.high(), e.dnssec_ok, r.ecs);
        counts[3] += 1;
    }
    wire::set_counts(out, counts);
    Outcome {
        rcode: r.rcode,
        qtype: q.qtype,
        truncated: !fitted,
    }
}

/// Emit answer, authority and additional records. Returns false when a required section did
/// not fit (the caller then sends TC).
fn emit_sections(enc: &mut BinEncoder<'_>, r: &Response<'_, '_>, counts: &mut [u16; 4]) -> bool {
    for (rec, owner) in r.answers {
        if emit_record(enc, rec, *owner).is_err() {
            return false;
        }
        counts[1] += 1;
    }
    for rec in r.authority {
        if emit_record(enc, rec, Owner::Own).is_err() {
            return false;
        }
        counts[2] += 1;
    }
    let mark = enc.offset();
    let mut added = 0u16;
    for rec in r.additional {
        if emit_record(enc, rec, Owner::Own).is_err() {
            if r.additional_required {
                return false;
            }
            // Drop the additional section as a whole: no partial RRsets.
            enc.set_offset(mark);
            enc.trim();
            added = 0;
            break;
        }
        added += 1;
    }
    counts[3] += added;
    true
}

/// Emit one record. The owner is written as a pointer to the question when it is the query
/// name, so the answer repeats the client's letter case and costs two octets.
fn emit_record(enc: &mut BinEncoder<'_>, rec: &Record, owner: Owner<'_>) -> Result<(), ProtoError> {
    match owner {
        Owner::Query => enc.emit_u16(0xc000 | HEADER_LEN as u16)?,
        Owner::Own => rec.name.emit(enc)?,
        Owner::Synthesised(name) => name.emit(enc)?,
    }
    enc.emit_u16(rec.record_type().into())?;
    enc.emit_u16(rec.dns_class.into())?;
    enc.emit_u32(rec.ttl)?;
    let place = enc.place::<u16>()?;
    rec.data.emit(enc)?;
    let len = enc.len_since_place(&place);
    place.replace(enc, len as u16)?;
    Ok(())
}
