//! Answers with the DO bit (RFC 3225, RFC 4035 §3.1) from signed zones: each RRset followed
//! by its RRSIGs (made at load), the negative SOA signed, and denial by compact answers
//! (RFC 9824): NODATA carries the NSEC at the name (made at load for the zone's names), and
//! a name that does not exist is answered NOERROR with an NSEC at the query name whose
//! bitmap holds NXNAME, signed when asked. A wildcard's answer is signed for the name it
//! answers, so no proof of the name's absence is needed. Referrals carry the DS and its
//! RRSIGs, or the NSEC at the cut proving there is none (an insecure delegation).

use std::time::SystemTime;

use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Outcome, Response, encode};
use crate::dnssec::sign::{Lookup, NXNAME};
use crate::global::{self, AnswerSet, Registry, ReplicaSet};
use crate::state::Snapshot;
use crate::wire::{ClientSubnet, Query, Rcode};
use crate::zone::{OutsideNames as _, Owner, Zone};

/// A record of the response: from a zone, or made for it (an index into `made`).
#[derive(Clone, Copy)]
enum Item<'z> {
    Zone(&'z Record, Owner<'z>),
    Made(usize, Owner<'z>),
}

/// The records of a response and those made for it.
#[derive(Default)]
struct Parts<'z> {
    made: Vec<Record>,
    answers: Vec<Item<'z>>,
    authority: Vec<Item<'z>>,
    additional: Vec<Item<'z>>,
}

impl<'z> Parts<'z> {
    fn made(&mut self, records: Vec<Record>, owner: Owner<'z>) -> Vec<Item<'z>> {
        records
            .into_iter()
            .map(|r| {
                self.made.push(r);
                Item::Made(self.made.len() - 1, owner)
            })
            .collect()
    }

    /// `records` (RRsets one after the other, as lookups give them), each RRset followed by
    /// its RRSIGs; a wildcard's RRset is signed for `qname`, the name it answers.
    fn signed(
        &mut self,
        snap: &'z Snapshot,
        records: &[(&'z Record, Owner<'z>)],
        qname: &Name,
        now: SystemTime,
    ) -> Vec<Item<'z>> {
        let mut out = Vec::with_capacity(records.len() * 2);
        let mut i = 0;
        while i < records.len() {
            let (first, owner) = records[i];
            let mut j = i + 1;
            while j < records.len()
                && records[j].0.name == first.name
                && records[j].0.record_type() == first.record_type()
            {
                j += 1;
            }
            out.extend(records[i..j].iter().map(|(r, o)| Item::Zone(r, *o)));
            if let Some(zone) = snap.zones.find(&first.name) {
                // A wildcard's records answering another name (a query for `*` itself gets
                // the zone's signatures).
                let answered = first.name.is_wildcard().then(|| match owner {
                    Owner::Synthesised(n) => n.to_lowercase(),
                    _ => qname.to_lowercase(),
                });
                if let Some(answered) = answered.filter(|a| *a != first.name.to_lowercase()) {
                    if let Some(signer) = zone.signer() {
                        // Through the cache: the same wildcard answer for the same name is
                        // not signed again.
                        let rdatas: Vec<Vec<u8>> = records[i..j]
                            .iter()
                            .map(|(r, _)| crate::dnssec::sign::canonical_rdata(r))
                            .collect();
                        let mut refs: Vec<&[u8]> = rdatas.iter().map(Vec::as_slice).collect();
                        let ttl = records[i..j].iter().map(|(r, _)| r.ttl).min().unwrap_or(0);
                        let cached = signer.cached(
                            &crate::dnssec::sign::canonical_wire(&answered),
                            answered.num_labels(),
                            first.record_type(),
                            ttl,
                            &mut refs,
                            now,
                        );
                        let sigs: Vec<Record> = cached
                            .iter()
                            .flat_map(|c| c.rrsigs.iter())
                            .map(|r| {
                                crate::dnssec::sign::opaque(
                                    answered.clone(),
                                    RecordType::RRSIG,
                                    ttl,
                                    r.to_vec(),
                                )
                            })
                            .collect();
                        let items = self.made(sigs, owner);
                        out.extend(items);
                    }
                } else {
                    out.extend(
                        zone.sigs(&first.name, first.record_type())
                            .iter()
                            .map(|s| Item::Zone(s, owner)),
                    );
                }
            }
            i = j;
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        out: &mut Vec<u8>,
        q: &Query<'_>,
        rcode: Rcode,
        authoritative: bool,
        additional_required: bool,
        ecs: Option<(&ClientSubnet, u8)>,
        limit: usize,
    ) -> Outcome {
        let resolve = |it: &Item<'z>| -> (&Record, Owner<'_>) {
            match *it {
                Item::Zone(r, o) => (r, o),
                Item::Made(k, o) => (&self.made[k], o),
            }
        };
        let answers: Vec<(&Record, Owner<'_>)> = self.answers.iter().map(resolve).collect();
        let authority: Vec<&Record> = self.authority.iter().map(|i| resolve(i).0).collect();
        let additional: Vec<&Record> = self.additional.iter().map(|i| resolve(i).0).collect();
        encode(
            out,
            q,
            Response {
                rcode,
                authoritative,
                answers: &answers,
                authority: &authority,
                additional: &additional,
                additional_required,
                ecs,
            },
            limit,
        )
    }
}

/// An authoritative answer (data, NODATA or a name that does not exist), signed.
#[allow(clippy::too_many_arguments)]
pub(super) fn authoritative<'z>(
    snap: &'z Snapshot,
    q: &Query<'_>,
    qname: &'z Name,
    answers: &[(&'z Record, Owner<'z>)],
    soa: Option<&'z Record>,
    nxdomain: bool,
    additionals: &[&'z Record],
    ecs: Option<(&ClientSubnet, u8)>,
    limit: usize,
    out: &mut Vec<u8>,
) -> Outcome {
    let now = SystemTime::now();
    let mut p = Parts::default();
    p.answers = p.signed(snap, answers, qname, now);
    let mut rcode = if nxdomain {
        Rcode::NxDomain
    } else {
        Rcode::NoError
    };
    if let Some(soa) = soa {
        // The name the answer ends at: the query name, or the last CNAME's target.
        let last = match answers.last().map(|(r, _)| &r.data) {
            Some(RData::CNAME(c)) => &c.0,
            _ => qname,
        };
        let zone: Option<&Zone> = snap.zones.find(last);
        p.authority.push(Item::Zone(soa, Owner::Own));
        if let Some(z) = zone {
            p.authority.extend(
                z.negative_soa_sigs()
                    .iter()
                    .map(|s| Item::Zone(s, Owner::Own)),
            );
            let at = last.to_lowercase();
            // A global name at the apex answers A and AAAA beside the zone's data there: its
            // NSEC is made here, not the one made at load.
            let global = snap.globals.outside(last) == Some(crate::zone::Outside::Global);
            let made_at_load = z.nsec_at(last).filter(|_| !global);
            let proof: Vec<Item<'z>> = match (nxdomain, made_at_load, z.signer()) {
                // RFC 9824 §3.1: the name "exists" with nothing but NSEC, RRSIG and NXNAME.
                (true, _, Some(s)) => {
                    // RFC 9824 §4: NXDOMAIN restored for a querier that signals CO.
                    if !q.edns.is_some_and(|e| e.compact_nxdomain()) {
                        rcode = Rcode::NoError;
                    }
                    let made = s.cached_nsec(&at, &[NXNAME], soa.ttl, now);
                    p.made(made, Owner::Own)
                }
                (false, Some(nsec), _) => nsec.iter().map(|r| Item::Zone(r, Owner::Own)).collect(),
                (false, None, Some(s)) => {
                    let types = z.denial_types(last, &*snap.globals);
                    let made = s.cached_nsec(&at, &types, soa.ttl, now);
                    p.made(made, Owner::Own)
                }
                _ => Vec::new(),
            };
            // NSEC records are written with their own (lower-case) owner.
            p.authority.extend(proof);
        }
    }
    let adds: Vec<(&'z Record, Owner<'z>)> = additionals.iter().map(|r| (*r, Owner::Own)).collect();
    p.additional = p.signed(snap, &adds, qname, now);
    p.encode(out, q, rcode, true, false, ecs, limit)
}

/// A referral from a signed zone: the NS RRset (unsigned, RFC 4035 §2.2), the DS and its
/// RRSIGs or the NSEC proving there is no DS, and glue.
pub(super) fn referral<'z>(
    snap: &'z Snapshot,
    q: &Query<'_>,
    ns: &'z [Record],
    glue: &[&'z Record],
    ecs: Option<(&ClientSubnet, u8)>,
    limit: usize,
    out: &mut Vec<u8>,
) -> Outcome {
    let mut p = Parts::default();
    p.authority
        .extend(ns.iter().map(|r| Item::Zone(r, Owner::Own)));
    if let Some(first) = ns.first()
        && let Some(zone) = snap.zones.find(&first.name.base_name())
    {
        let cut = &first.name;
        let ds = zone.records(cut, RecordType::DS);
        if ds.is_empty() {
            if let Some(nsec) = zone.nsec_at(cut) {
                p.authority
                    .extend(nsec.iter().map(|r| Item::Zone(r, Owner::Own)));
            }
        } else {
            p.authority
                .extend(ds.iter().map(|r| Item::Zone(r, Owner::Own)));
            p.authority.extend(
                zone.sigs(cut, RecordType::DS)
                    .iter()
                    .map(|r| Item::Zone(r, Owner::Own)),
            );
        }
    }
    p.additional = glue.iter().map(|r| Item::Zone(r, Owner::Own)).collect();
    p.encode(out, q, Rcode::NoError, false, true, ecs, limit)
}

//------------ steered answers ----------------------------------------------------------------

/// Most RRs of one steered RRset that are signed (answers × addresses per replica).
const MAX_RRSET: usize = 64;

/// The signatures a steered answer adds: computed before anything is written, so the size
/// check (TC) counts them.
pub(super) struct GlobalSigs {
    /// The RRSIGs of the answer RRset, or of the NSEC at the name (NODATA).
    rrset: Option<std::sync::Arc<crate::dnssec::cache::Cached>>,
    /// NODATA: `rrset` signs the NSEC at the name, whose RDATA its key holds after the
    /// owner's `owner_len` octets. (Kept small: the unsigned path carries this struct.)
    nsec: bool,
    owner_len: u8,
    /// CNAME-style replicas: the RRSIGs of the chased records, encoded.
    chased: Vec<u8>,
    chased_count: u16,
    /// The negative TTL (NODATA).
    negative_ttl: u32,
}

impl GlobalSigs {
    /// Octets they add.
    pub(super) fn wire_len(&self) -> usize {
        let nsec = match (&self.rrset, self.nsec) {
            (Some(c), true) => 12 + c.sole_rdata(usize::from(self.owner_len)).len(),
            _ => 0,
        };
        self.rrset.as_ref().map_or(0, |c| c.wire_len()) + nsec + self.chased.len()
    }

    /// Write the answer section's part (after the RRset): its RRSIGs, then the chased
    /// records' RRSIGs. Returns how many records.
    pub(super) fn write_answer(&self, out: &mut Vec<u8>, owner: u16, ttl: u32) -> u16 {
        let mut n = 0;
        if !self.nsec
            && let Some(c) = &self.rrset
        {
            n += c.write(out, owner, ttl);
        }
        out.extend_from_slice(&self.chased);
        n + self.chased_count
    }

    /// Write the authority section's part of NODATA (after the SOA and its RRSIGs): the NSEC
    /// at the name and its RRSIGs. Returns how many records.
    pub(super) fn write_denial(&self, out: &mut Vec<u8>, owner: u16) -> u16 {
        let (true, Some(c)) = (self.nsec, &self.rrset) else {
            return 0;
        };
        let rdata = c.sole_rdata(usize::from(self.owner_len));
        out.extend_from_slice(&(0xc000 | owner).to_be_bytes());
        out.extend_from_slice(&47u16.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&self.negative_ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
        1 + c.write(out, owner, self.negative_ttl)
    }
}

/// The RRs of pre-encoded answer bytes: (owned by a pointer, type, RDATA), each RR's start.
fn rrs(bytes: &[u8]) -> impl Iterator<Item = (bool, u16, &[u8], usize)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at;
        let first = *bytes.get(at)?;
        let pointer = first & 0xc0 == 0xc0;
        if pointer {
            at += 2;
        } else {
            while let Some(&l) = bytes.get(at) {
                at += 1 + usize::from(l);
                if l == 0 {
                    break;
                }
            }
        }
        let head = bytes.get(at..at + 10)?;
        let rtype = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[8], head[9]]));
        let rdata = bytes.get(at + 10..at + 10 + len)?;
        at += 10 + len;
        Some((pointer, rtype, rdata, start))
    })
}

/// Labels of a wire-format name (the root not counted).
fn labels_of(wire: &[u8]) -> u8 {
    let mut n = 0u8;
    let mut at = 0;
    while let Some(&l) = wire.get(at) {
        if l == 0 {
            break;
        }
        n = n.saturating_add(1);
        at += 1 + usize::from(l);
    }
    n
}

/// The signatures of a steered answer: `picked` are the encoded records of the replicas
/// chosen (empty: NODATA), owned by `owner_wire` (canonical wire form), signed by `signer`
/// of the zone (through its cache: a hit allocates nothing for address-style replicas).
#[allow(clippy::too_many_arguments)]
pub(super) fn global_sigs<'e>(
    snap: &Snapshot,
    signer: &crate::dnssec::sign::ZoneSigner,
    owner_wire: &[u8],
    picked: impl Iterator<Item = &'e [u8]>,
    ttl: u32,
    nodata_types: impl FnOnce() -> ([u16; 8], usize),
    negative_ttl: u32,
    (now, lookup): (SystemTime, Lookup),
) -> GlobalSigs {
    let labels = labels_of(owner_wire);
    let mut sigs = GlobalSigs {
        rrset: None,
        nsec: false,
        owner_len: owner_wire.len().min(255) as u8,
        chased: Vec::new(),
        chased_count: 0,
        negative_ttl,
    };
    let mut rdatas: [&[u8]; MAX_RRSET] = [&[]; MAX_RRSET];
    let mut n = 0;
    let mut rtype = 0u16;
    let mut any = false;
    for bytes in picked {
        any = true;
        for (pointer, t, rdata, start) in rrs(bytes) {
            if pointer {
                if n < MAX_RRSET {
                    rdatas[n] = rdata;
                    n += 1;
                }
                rtype = t;
            } else {
                // A record chased from a CNAME-style replica: the zone's own RRSIGs.
                chased_sigs(snap, &bytes[start..], t, &mut sigs);
            }
        }
    }
    if any && n > 0 {
        let mut canon: [[u8; 255]; 1] = [[0; 255]];
        let t = hickory_proto::rr::RecordType::from(rtype);
        if t == hickory_proto::rr::RecordType::CNAME {
            // Names in RDATA are lower-cased in canonical form.
            let l = rdatas[0].len().min(255);
            for (d, s) in canon[0].iter_mut().zip(&rdatas[0][..l]) {
                *d = s.to_ascii_lowercase();
            }
            let mut one: [&[u8]; 1] = [&canon[0][..l]];
            sigs.rrset = signer.cached_for(lookup, owner_wire, labels, t, ttl, &mut one, now);
        } else {
            sigs.rrset =
                signer.cached_for(lookup, owner_wire, labels, t, ttl, &mut rdatas[..n], now);
        }
        return sigs;
    }
    // NODATA: the NSEC at the name listing what it does answer.
    let mut rdata = [0u8; 320];
    let mut len = 0;
    let mut put = |b: &[u8]| {
        if len + b.len() <= rdata.len() {
            rdata[len..len + b.len()].copy_from_slice(b);
            len += b.len();
        }
    };
    put(&[1, 0]);
    put(owner_wire);
    let (mut types, mut n) = nodata_types();
    for t in [
        hickory_proto::rr::RecordType::RRSIG,
        hickory_proto::rr::RecordType::NSEC,
    ] {
        if n < types.len() {
            types[n] = u16::from(t);
            n += 1;
        }
    }
    let mut bitmap = [0u8; 64];
    let len_bitmap = crate::dnssec::sign::type_bitmap_into(&mut types[..n], &mut bitmap);
    put(&bitmap[..len_bitmap]);
    let mut one: [&[u8]; 1] = [&rdata[..len]];
    sigs.rrset = signer.cached_for(
        lookup,
        owner_wire,
        labels,
        hickory_proto::rr::RecordType::NSEC,
        negative_ttl,
        &mut one,
        now,
    );
    sigs.nsec = true;
    sigs
}

/// What a steered name answers (A or CNAME, AAAA): the types the NSEC of its NODATA lists
/// besides RRSIG and NSEC.
pub(super) fn answered_types(set: &ReplicaSet, answers: &AnswerSet) -> ([u16; 8], usize) {
    let mut t = [0u16; 8];
    let mut n = 0;
    for i in 0..set.replicas.len() {
        for qt in [global::qtype::A, global::qtype::AAAA] {
            if let Some(rt) = answers.for_type(i, qt).bytes.get(2..4) {
                let rt = u16::from_be_bytes([rt[0], rt[1]]);
                if n < 6 && !t[..n].contains(&rt) {
                    t[n] = rt;
                    n += 1;
                }
            }
        }
    }
    (t, n)
}

/// Most RRsets pre-signed per registry and query type: a registry answering with `k` of `n`
/// replicas can give C(n, 1) + … + C(n, k) RRsets; past this many the first query signs.
pub(crate) const PRESIGN_VARIANTS: usize = 32;

/// Sign ahead every RRset `reg` can answer A and AAAA with, whichever of its replicas fail
/// next: each set of up to `reg.answers` of its enabled replicas (a CNAME-style replica
/// alone, as the answer path gives it), or the NODATA proof when none has the type. An RRset
/// already cached costs one lookup. Returns how many RRsets were looked at (0: the
/// registry's zone is not signed).
pub(crate) fn presign_registry(snap: &Snapshot, reg: &Registry, now: SystemTime) -> usize {
    let Some(zone) = snap.globals.zones.get(usize::from(reg.zone)) else {
        return 0;
    };
    let (Some(signer), Some((set, answers))) = (zone.signer.0.as_deref(), snap.globals.parts(reg))
    else {
        return 0;
    };
    let (masks, _) = snap.masks(reg);
    let owner = reg.name_wire();
    let k = usize::from(reg.answers.max(1));
    let cname = |i: usize| set.replicas.get(i).is_some_and(|r| r.spec.cname.is_some());
    let mut looked = 0;
    for qtype in [global::qtype::A, global::qtype::AAAA] {
        let sign = |picked: &[usize]| {
            let records = picked
                .iter()
                .map(|&i| answers.for_type(i, qtype).bytes.as_slice());
            global_sigs(
                snap,
                signer,
                owner,
                records,
                answers.ttl,
                || answered_types(set, answers),
                zone.negative_ttl,
                (now, Lookup::Warm),
            );
        };
        let can: Vec<usize> = (masks.enabled & set.mask_for(qtype)).iter().collect();
        if can.is_empty() {
            sign(&[]);
            looked += 1;
            continue;
        }
        let mut done = 0;
        let mut picked = Vec::with_capacity(k);
        for size in 1..=k.min(can.len()) {
            // The combinations of `size` of `can`, as index vectors in lexicographic order.
            let mut idx: Vec<usize> = (0..size).collect();
            loop {
                if done == PRESIGN_VARIANTS {
                    break;
                }
                picked.clear();
                picked.extend(idx.iter().map(|&j| can[j]));
                if size == 1 || !picked.iter().any(|&i| cname(i)) {
                    sign(&picked);
                    done += 1;
                }
                let Some(i) = (0..size).rev().find(|&i| idx[i] < can.len() - size + i) else {
                    break;
                };
                idx[i] += 1;
                for j in i + 1..size {
                    idx[j] = idx[j - 1] + 1;
                }
            }
        }
        looked += done;
    }
    looked
}

/// The zone's RRSIGs of the chased record at the start of `rr` (its owner written in full),
/// encoded into `sigs.chased`.
fn chased_sigs(snap: &Snapshot, rr: &[u8], rtype: u16, sigs: &mut GlobalSigs) {
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
    let Ok(name) = Name::read(&mut BinDecoder::new(rr)) else {
        return;
    };
    let Some(zone) = snap.zones.find(&name) else {
        return;
    };
    let t = RecordType::from(rtype);
    // One RRset's signatures once, however many of its records were chased.
    let start = sigs.chased.len();
    for s in zone.sigs(&name, t) {
        let mut buf = Vec::new();
        let mut enc = BinEncoder::new(&mut buf);
        if crate::zone::emit_record(&mut enc, s, Owner::Own).is_ok() {
            if sigs.chased[..start]
                .windows(buf.len())
                .any(|w| w == buf.as_slice())
            {
                continue;
            }
            sigs.chased.extend_from_slice(&buf);
            sigs.chased_count += 1;
        }
    }
}
