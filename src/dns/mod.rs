//! The request path: one query in, one response out, synchronously and without I/O.
//!
//! ```text
//!  packet ─► wire::parse_query ─┬─ Reject::Drop ───────────────► (nothing sent)
//!                               ├─ Reject::Error ──────────────► FORMERR / NOTIMP / BADVERS
//!                               └─ Query ─► class/type checks ─┬─ global name ─► global_answer
//!                                                              └─ zones.lookup ─┬─► encode
//!                                         (a CNAME chain to a global name) ─────┴─► global_answer
//! ```
//!
//! Everything an answer depends on comes from the one [`Snapshot`] passed in. The socket loops
//! in `server` call [`handle`] with a reusable output buffer, so a query costs no task and,
//! on the static path, only the allocations of the name lookup.

use std::net::IpAddr;

use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};

use crate::dnssec::sign::Lookup;
use crate::global::{self, Registry, copy_owned_by, wire_lower_into};
use crate::metrics::DnsCounters;
use crate::state::Snapshot;
use crate::wire::{self, ClientSubnet, HEADER_LEN, Query, Rcode, Reject};
use crate::zone::{Answer, Fast, Owner, emit_record};

/// The answer a `CNAME` chain (the zones' records and where its target starts) contributes.
type Chain<'a, 'z> = &'a [(&'z Record, Owner<'z>)];

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
    pub(crate) rcode: Rcode,
    /// The query type (0 when the question could not be parsed).
    pub(crate) qtype: u16,
    /// TC was set.
    pub(crate) truncated: bool,
    /// A referral to a delegated child zone (NOERROR, AA clear, NS in authority); response
    /// rate limiting counts these apart from answers.
    pub(crate) referral: bool,
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
                wire::write_opt(out, rcode.high(), e.reply_flags(), None);
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
                referral: false,
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
        // NXNAME only ever appears in a compact denial's bitmap (RFC 9824 §3.5).
        crate::dnssec::sign::NXNAME => return error(q, Rcode::FormErr, ecs, out),
        _ => {}
    }

    // Global names: an exact match on the lower-cased wire name, no allocation. A global
    // name at a zone apex answers only the address types; the zone answers the rest.
    let mut lower = [0u8; wire::MAX_NAME_LEN];
    let key = wire::lowercase_wire(q.qname_wire(), &mut lower);
    if !snap.globals.is_empty()
        && let Some(reg) = snap.globals.find(key)
        && (!reg.apex
            || matches!(
                q.qtype,
                global::qtype::A | global::qtype::AAAA | global::qtype::ANY
            ))
    {
        return global_answer(snap, q, reg, &[], source, limit, out, counters);
    }
    // With the DO bit and a signed zone, the signed path below.
    let dnssec_ok = snap.zones.signed() && q.edns.is_some_and(|e| e.dnssec_ok);
    // The static answers prepared at load (a name of the zone files, NODATA, NXDOMAIN): a
    // copy, no `Name` and no encoder.
    if let Some(f) = snap.zones.fast(key, q.qtype, &*snap.globals, dnssec_ok)
        && let Some(outcome) = prepared(q, &f, ecs, limit, out)
    {
        return outcome;
    }

    let Ok(qname) = Name::read(&mut BinDecoder::new(q.question)) else {
        return error(q, Rcode::FormErr, ecs, out);
    };
    let qtype = RecordType::from(q.qtype);
    let Some((zone, result)) = snap.zones.lookup(&qname, qtype, &*snap.globals) else {
        // Not in any of our zones: we are not authoritative and do not recurse.
        return error(q, Rcode::Refused, ecs, out);
    };
    if dnssec_ok && zone.signer().is_some() {
        match &result {
            Answer::Authoritative {
                answers,
                soa,
                nxdomain,
                additionals,
            } => {
                return signed::authoritative(
                    snap,
                    q,
                    &qname,
                    answers,
                    *soa,
                    *nxdomain,
                    additionals,
                    ecs,
                    limit,
                    out,
                );
            }
            Answer::Referral { ns, glue } => {
                return signed::referral(snap, q, ns, glue, ecs, limit, out);
            }
            Answer::Global { .. } => {}
        }
    }
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
        Answer::Global { chain, name } => {
            let mut lower = [0u8; wire::MAX_NAME_LEN];
            match wire_lower_into(name, &mut lower).and_then(|w| snap.globals.find(w)) {
                Some(reg) => global_answer(snap, q, reg, &chain, source, limit, out, counters),
                // The lookup found it in this very table: an internal fault, never a panic.
                None => error(q, Rcode::ServFail, ecs, out),
            }
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
/// `chain` is the CNAME chain from the query name that led here (empty when the query name is
/// the global name): its records come first, and the global name's records are then owned by
/// the last CNAME's target. Everything per client — health, overrides, fail-open, the ECS
/// scope — is decided exactly as for a direct query.
#[allow(clippy::too_many_arguments)]
fn global_answer(
    snap: &Snapshot,
    q: &Query<'_>,
    reg: &Registry,
    chain: Chain<'_, '_>,
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
    let (masks, expired) = snap.masks(reg);
    if expired {
        counters.stale_view();
    }
    let (decision, fail_open) =
        global::decide_with_health(&snap.locator, target, &masks, q.qtype, source, ecs.as_ref());
    // Count what was decided and for whom (atomics only: no lock, no allocation).
    counters.decision(decision.location.basis);
    if fail_open || masks.fail_open {
        counters.fail_open();
    }
    let label = snap.counters.labels().index(decision.location.label);
    let shard = counters.shard();
    for p in &decision.picks[..decision.count] {
        snap.counters
            .answer(shard, answers.set as usize, usize::from(*p), label);
        snap.counters
            .answer_registry(shard, reg.id, usize::from(*p), label);
    }
    if decision.count > 0 && counters.sample_due() {
        snap.counters.sample_registry(
            shard,
            reg.id,
            answers.set as usize,
            usize::from(decision.picks[0]),
            label,
        );
    }
    let gzone = snap.globals.zones.get(usize::from(reg.zone));
    let negative_soa = gzone.map(|z| &z.negative_soa);
    // The DO bit and a signed zone: the answer's RRSIGs (cached per distinct RRset), or for
    // NODATA the negative SOA's and the NSEC at the name.
    let signer = gzone
        .and_then(|z| z.signer.0.as_deref())
        .filter(|_| q.edns.is_some_and(|e| e.dnssec_ok));
    let rcode = Rcode::NoError;
    // RFC 7871 §7.2.1: the scope is the one that decided the final answer; the CNAMEs before
    // it are the same for everybody.
    let ecs_echo = ecs.as_ref().map(|cs| (cs, decision.scope));
    let header = |out: &mut Vec<u8>, truncated: bool| {
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
    };
    header(out, false);
    let opt_room = q.edns.map_or(0, |_| wire::opt_len(ecs.as_ref()));
    let mut counts = [1u16, 0, 0, 0];
    // The owner of the global name's records: the question (offset 12), or the name the
    // chain ends in.
    let chain_zones = signer.map(|_| &*snap.zones);
    let owner = if chain.is_empty() {
        Some(HEADER_LEN as u16)
    } else {
        emit_chain(
            out,
            q,
            chain,
            limit.saturating_sub(opt_room),
            &mut counts,
            chain_zones,
        )
    };
    let sigs = signer.map(|s| {
        // The owner in canonical form: the query name, or the chain's last target.
        let mut lower = [0u8; wire::MAX_NAME_LEN];
        let owner_wire: &[u8] = match chain.last().map(|(r, _)| &r.data) {
            // A name always fits in MAX_NAME_LEN octets.
            Some(hickory_proto::rr::RData::CNAME(c)) => {
                wire_lower_into(&c.0, &mut lower).unwrap_or_default()
            }
            _ => wire::lowercase_wire(q.qname_wire(), &mut lower),
        };
        let picked = decision.picks[..decision.count]
            .iter()
            .map(|p| answers.for_type(usize::from(*p), q.qtype).bytes.as_slice());
        signed::global_sigs(
            snap,
            s,
            owner_wire,
            picked,
            answers.ttl,
            || signed::answered_types(set, answers),
            gzone.map_or(0, |z| z.negative_ttl),
            (std::time::SystemTime::now(), Lookup::Query),
        )
    });
    let mut size = out.len() + opt_room;
    for p in &decision.picks[..decision.count] {
        size += answers.for_type(usize::from(*p), q.qtype).bytes.len();
    }
    if decision.count == 0 {
        size += negative_soa.map_or(0, |s| s.bytes.len());
        if sigs.is_some() {
            size += gzone.map_or(0, |z| z.negative_soa_sigs.bytes.len());
        }
    }
    size += sigs.as_ref().map_or(0, signed::GlobalSigs::wire_len);
    let truncated = match owner {
        Some(_) => size > limit,
        None => true,
    };
    if truncated {
        header(out, true);
        counts = [1, 0, 0, 0];
    } else if let Some(owner) = owner {
        if decision.count == 0
            && let Some(soa) = negative_soa
        {
            // NODATA: no replica (left) has records of this type.
            out.extend_from_slice(&soa.bytes);
            counts[2] = soa.count;
            if let (Some(sigs), Some(z)) = (&sigs, gzone) {
                out.extend_from_slice(&z.negative_soa_sigs.bytes);
                counts[2] += z.negative_soa_sigs.count;
                counts[2] += sigs.write_denial(out, owner);
            }
        }
        for p in &decision.picks[..decision.count] {
            let e = answers.for_type(usize::from(*p), q.qtype);
            if chain.is_empty() {
                out.extend_from_slice(&e.bytes);
            } else {
                copy_owned_by(out, &e.bytes, owner);
            }
            counts[1] += e.count;
        }
        if decision.count > 0
            && let Some(sigs) = &sigs
        {
            counts[1] += sigs.write_answer(out, owner, answers.ttl);
        }
    }
    if let Some(e) = &q.edns {
        wire::write_opt(out, 0, e.reply_flags(), ecs_echo);
        counts[3] += 1;
    }
    wire::set_counts(out, counts);
    Outcome {
        rcode,
        qtype: q.qtype,
        truncated,
        referral: false,
    }
}

/// Emit a CNAME chain after the question (names compressed against it), counting the records.
/// Returns the message offset of the last CNAME's target name, to own the records that follow;
/// None when the chain does not fit in `budget` octets.
/// With `signed` (the DO bit, a signed zone), each CNAME is followed by its RRSIGs.
fn emit_chain(
    out: &mut Vec<u8>,
    q: &Query<'_>,
    chain: Chain<'_, '_>,
    budget: usize,
    counts: &mut [u16; 4],
    signed: Option<&crate::zone::ZoneSet>,
) -> Option<u16> {
    let start = out.len();
    let mut last = start;
    {
        let mut enc = BinEncoder::with_offset(out, start as u32);
        enc.set_max_size(budget.min(usize::from(u16::MAX)) as u16);
        store_question_labels(&mut enc, q);
        for (rec, owner) in chain {
            let here = enc.offset();
            emit_record(&mut enc, rec, *owner).ok()?;
            counts[1] += 1;
            let sigs = signed
                .and_then(|z| z.find(&rec.name))
                .map_or(&[][..], |z| z.sigs(&rec.name, rec.record_type()));
            for s in sigs {
                emit_record(&mut enc, s, *owner).ok()?;
                counts[1] += 1;
            }
            last = here;
        }
    }
    // The last record's RDATA: past its owner name and the 10 octets of type, class, TTL and
    // RDLENGTH. Follow a compression pointer there to where the name is written out.
    let mut at = skip_name(out, last)? + 10;
    while let [hi, lo, ..] = out.get(at..)? {
        if hi & 0xc0 != 0xc0 {
            break;
        }
        let to = usize::from(u16::from_be_bytes([hi & 0x3f, *lo]));
        // Pointers go backwards (RFC 1035 §4.1.4: to a prior occurrence).
        if to >= at {
            return None;
        }
        at = to;
    }
    // A pointer has 14 bits; the chain is short (MAX_CNAME_CHAIN), so this always holds.
    u16::try_from(at).ok().filter(|a| *a < 0x4000)
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        if len & 0xc0 == 0xc0 {
            return Some(at + 2);
        }
        at += 1 + usize::from(len);
        if len == 0 {
            return Some(at);
        }
    }
}

/// Let later names compress against the question (the 0x20 case as sent).
fn store_question_labels(enc: &mut BinEncoder<'_>, q: &Query<'_>) {
    let qname_end = HEADER_LEN + q.qname_len - 1;
    let mut p = HEADER_LEN;
    while p < qname_end {
        enc.store_label_pointer(p, qname_end);
        p += 1 + usize::from(q.question[p - HEADER_LEN]);
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
        wire::write_opt(out, rcode.high(), e.reply_flags(), ecs);
    }
    Outcome {
        rcode,
        qtype: q.qtype,
        truncated: false,
        referral: false,
    }
}

/// Answer from sections prepared at load, when they fit in `limit`; None when they do not
/// (the full path then decides what to leave out, or truncates).
fn prepared(
    q: &Query<'_>,
    f: &Fast<'_>,
    ecs: Option<(&ClientSubnet, u8)>,
    limit: usize,
    out: &mut Vec<u8>,
) -> Option<Outcome> {
    let opt_room = q.edns.map_or(0, |_| wire::opt_len(ecs.map(|(cs, _)| cs)));
    if HEADER_LEN + q.question.len() + f.prepared.bytes.len() + opt_room > limit {
        return None;
    }
    let rcode = if f.nxdomain {
        Rcode::NxDomain
    } else {
        Rcode::NoError
    };
    let [an, ns, ar] = f.prepared.counts;
    let opt = u16::from(q.edns.is_some());
    wire::write_header(
        out,
        q.id,
        q.opcode,
        true,
        false,
        q.recursion_desired,
        q.checking_disabled,
        rcode,
        [1, an, ns, ar + opt],
    );
    out.extend_from_slice(q.question);
    f.prepared.write(out, f.shift);
    if let Some(e) = &q.edns {
        wire::write_opt(out, rcode.high(), e.reply_flags(), ecs);
    }
    Some(Outcome {
        rcode,
        qtype: q.qtype,
        truncated: false,
        referral: false,
    })
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
        store_question_labels(&mut enc, q);
        emit_sections(&mut enc, &r, &mut counts)
    };
    if !fitted {
        header(out, true);
        counts = [1, 0, 0, 0];
    }
    if let Some(e) = &q.edns {
        wire::write_opt(out, r.rcode.high(), e.reply_flags(), r.ecs);
        counts[3] += 1;
    }
    wire::set_counts(out, counts);
    Outcome {
        rcode: r.rcode,
        qtype: q.qtype,
        truncated: !fitted,
        referral: !r.authoritative && r.rcode == Rcode::NoError,
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

mod signed;
pub(crate) use signed::presign_registry;

#[cfg(test)]
mod prepared_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! `handle` on bytes, without sockets, for each RFC behaviour the socket tests in
    //! `tests/it/dns.rs` and `tests/it/routing.rs` also check over UDP and TCP: the repository's
    //! demo config and zone, every replica routable.

    use std::net::IpAddr;
    use std::str::FromStr;

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
    use hickory_proto::rr::{Name, RData, RecordType};

    use super::*;

    fn snapshot() -> Snapshot {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        Snapshot::load(&repo.join("steerdns.toml")).unwrap()
    }

    fn query(name: &str, rtype: RecordType, edns: Option<Edns>) -> Vec<u8> {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
        m.edns = edns;
        m.to_vec().unwrap()
    }

    fn edns(subnet: Option<&str>) -> Edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        if let Some(s) = subnet {
            e.options_mut()
                .insert(EdnsOption::Subnet(s.parse::<ClientSubnet>().unwrap()));
        }
        e
    }

    /// Answer `packet` from `source` over `transport`; the parsed reply and the raw bytes.
    fn ask(
        snap: &Snapshot,
        packet: &[u8],
        source: &str,
        transport: Transport,
    ) -> Option<(Message, Vec<u8>)> {
        let mut out = Vec::new();
        let counters = DnsCounters::default();
        handle(
            snap,
            packet,
            source.parse::<IpAddr>().unwrap(),
            transport,
            &mut out,
            &counters,
        )?;
        Some((Message::from_vec(&out).unwrap(), out))
    }

    fn udp(snap: &Snapshot, packet: &[u8]) -> Message {
        ask(snap, packet, "127.0.0.1", Transport::Udp).unwrap().0
    }

    fn a_records(m: &Message) -> Vec<String> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn static_answers_are_authoritative_and_echo_the_case() {
        let snap = snapshot();
        let packet = query("WwW.ReGiStRy.ExAmPlE.", RecordType::A, None);
        let (m, raw) = ask(&snap, &packet, "127.0.0.1", Transport::Udp).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative && !m.metadata.recursion_available);
        assert_eq!(m.metadata.id, 0x4242);
        assert_eq!(a_records(&m), ["192.0.2.80"]);
        // RFC 1035 §7.3 / 0x20: the question comes back byte for byte.
        assert_eq!(raw[12..12 + packet.len() - 12], packet[12..]);
    }

    #[test]
    fn negative_answers_carry_the_negative_soa() {
        let snap = snapshot();
        // RFC 2308 §3: NXDOMAIN and NODATA with the SOA, TTL = min(SOA TTL, MINIMUM).
        for (name, rtype, rcode) in [
            (
                "nope.registry.example.",
                RecordType::A,
                ResponseCode::NXDomain,
            ),
            (
                "www.registry.example.",
                RecordType::MX,
                ResponseCode::NoError,
            ),
            (
                "contoso.registry.example.",
                RecordType::MX,
                ResponseCode::NoError,
            ),
        ] {
            let m = udp(&snap, &query(name, rtype, None));
            assert_eq!(m.metadata.response_code, rcode, "{name}");
            assert!(m.answers.is_empty(), "{name}");
            assert_eq!(m.authorities.len(), 1, "{name}");
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
            assert_eq!(m.authorities[0].ttl, 60, "{name}");
        }
    }

    #[test]
    fn refused_referral_and_rejects() {
        let snap = snapshot();
        // Not our zone: REFUSED, no recursion.
        let m = udp(&snap, &query("www.example.", RecordType::A, None));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        // RFC 1034 §4.3.2: a referral is not authoritative, with NS and glue.
        let m = udp(
            &snap,
            &query("host.child.registry.example.", RecordType::A, None),
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(!m.metadata.authoritative);
        assert!(
            m.authorities
                .iter()
                .all(|r| r.record_type() == RecordType::NS)
        );
        assert!(!m.additionals.is_empty());
        // Zone transfers are not offered.
        let m = udp(&snap, &query("registry.example.", RecordType::AXFR, None));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        // Shorter than a header: nothing to answer.
        assert!(ask(&snap, &[0x42, 0x42, 0, 0], "127.0.0.1", Transport::Udp).is_none());
        // A header promising a question that is not there: FORMERR.
        let mut bad = query("www.registry.example.", RecordType::A, None);
        bad.truncate(15);
        let m = udp(&snap, &bad);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // An unknown opcode: NOTIMP (RFC 1035 §4.1.1).
        let mut op = query("www.registry.example.", RecordType::A, None);
        op[2] = (op[2] & 0x87) | (5 << 3);
        let (m, _) = ask(&snap, &op, "127.0.0.1", Transport::Udp).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        // RFC 6891 §6.1.3: EDNS version 1 gets BADVERS.
        let mut e = edns(None);
        e.set_version(1);
        let m = udp(
            &snap,
            &query("www.registry.example.", RecordType::A, Some(e)),
        );
        // (hickory names 16 BADSIG: the same code point, RFC 6891 §9 calls it BADVERS.)
        assert_eq!(u16::from(m.metadata.response_code), 16);
    }

    #[test]
    fn udp_truncates_what_tcp_answers_in_full() {
        let snap = snapshot();
        let packet = query("big.registry.example.", RecordType::TXT, None);
        let m = udp(&snap, &packet);
        assert!(m.metadata.truncation);
        let (m, raw) = ask(&snap, &packet, "127.0.0.1", Transport::Tcp).unwrap();
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 24);
        assert!(raw.len() > 512);
    }

    #[test]
    fn global_names_route_by_source_and_by_ecs_with_the_scope() {
        let snap = snapshot();
        // The latency table puts 127.0.1.x nearest westeurope, 127.0.2.x nearest eastus.
        let packet = query("contoso.registry.example.", RecordType::A, None);
        let (m, _) = ask(&snap, &packet, "127.0.1.1", Transport::Udp).unwrap();
        assert_eq!(a_records(&m), ["192.0.2.10"]);
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers[0].ttl, 5);
        let (m, _) = ask(&snap, &packet, "127.0.2.1", Transport::Udp).unwrap();
        assert_eq!(a_records(&m), ["198.51.100.10"]);
        // RFC 7871: the client subnet decides, and the scope says for which prefix.
        let packet = query(
            "contoso.registry.example.",
            RecordType::A,
            Some(edns(Some("198.51.100.0/24"))),
        );
        let m = udp(&snap, &packet);
        assert_eq!(a_records(&m), ["198.51.100.10"]);
        let scope = m.edns.as_ref().and_then(|e| {
            e.options().as_ref().iter().find_map(|(_, o)| match o {
                EdnsOption::Subnet(cs) => Some(cs.scope_prefix()),
                _ => None,
            })
        });
        assert_eq!(scope, Some(24));
        // A source prefix of /0: answer for the resolver, scope 0 (RFC 7871 §7.1.2).
        let packet = query(
            "contoso.registry.example.",
            RecordType::A,
            Some(edns(Some("0.0.0.0/0"))),
        );
        let (m, _) = ask(&snap, &packet, "127.0.2.1", Transport::Udp).unwrap();
        assert_eq!(a_records(&m), ["198.51.100.10"]);
        // AAAA from the same replica; the other names' data is their own.
        let (m, _) = ask(
            &snap,
            &query("contoso.registry.example.", RecordType::AAAA, None),
            "127.0.2.1",
            Transport::Udp,
        )
        .unwrap();
        assert!(matches!(&m.answers[0].data, RData::AAAA(a) if a.to_string() == "2001:db8:1::10"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_health_view_past_its_deadline_routes_every_verdict_as_unknown() {
        use crate::routing::ReplicaMask;
        use std::time::Duration;
        use tokio::time::{Instant, advance};
        // westeurope (nearest 127.0.1.x) degraded, as the writer would publish. Replicas are
        // numbered in key order: eastus 0, southeastasia 1, westeurope 2.
        const WEU: ReplicaMask = ReplicaMask::from_bits(0b100);
        const EUS: ReplicaMask = ReplicaMask::from_bits(0b001);
        let mut snap = snapshot();
        let mut health = (*snap.health).clone();
        for m in &mut health.profiles {
            m.routable = m.enabled & !WEU;
        }
        snap.health = std::sync::Arc::new(health);
        let stale_after = Duration::from_secs(6);
        snap.health_clock.beat(Instant::now(), Some(stale_after));
        let packet = query("contoso.registry.example.", RecordType::A, None);
        let counters = DnsCounters::default();
        let answer = |snap: &Snapshot, counters: &DnsCounters| {
            let mut out = Vec::new();
            let client = "127.0.1.1".parse::<IpAddr>().unwrap();
            handle(snap, &packet, client, Transport::Udp, &mut out, counters).unwrap();
            a_records(&Message::from_vec(&out).unwrap())
        };
        // Fresh: the degraded replica is not answered.
        assert_eq!(answer(&snap, &counters), ["198.51.100.10"]);
        advance(stale_after).await;
        assert_eq!(
            answer(&snap, &counters),
            ["198.51.100.10"],
            "not yet strictly past"
        );
        assert_eq!(counters.stale_views(), 0);
        // Nobody stamped the view for longer than stale_after: the verdict is unknown, and
        // unknown is routable — the nearest replica is back, and the answer is counted.
        advance(Duration::from_millis(1)).await;
        assert_eq!(answer(&snap, &counters), ["192.0.2.10"]);
        assert_eq!(counters.stale_views(), 1);
        // Operator overrides still hold on an expired view.
        let mut health = (*snap.health).clone();
        for m in &mut health.profiles {
            m.enabled &= !WEU;
            m.routable = m.enabled & !EUS;
        }
        snap.health = std::sync::Arc::new(health);
        assert_eq!(
            answer(&snap, &counters),
            ["198.51.100.10"],
            "disabled stays out"
        );
        // A new beat makes the view fresh again: the degraded replica is out once more.
        snap.health_clock.beat(Instant::now(), Some(stale_after));
        assert_eq!(answer(&snap, &counters), ["203.0.113.10"]);
    }
}
