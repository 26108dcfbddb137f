//! Answers prepared at load time, so that the common static answers — a name the zone files
//! own with the type asked (or NODATA there), and NXDOMAIN — cost one hash probe per label on
//! the lower-cased wire name and a copy, with no `Name`, no `Vec` and no encoder per query.
//!
//! The prepared bytes are the sections after the question, encoded once by the same
//! [`emit_record`] the full lookup uses, for a question that *is* the owner name: a query for
//! that name has the same labels at the same offsets (only the letter case may differ), so
//! every compression pointer into the question stays valid and the answer repeats the
//! client's case, as the full path's answers do. The negative SOA is prepared for a
//! question that is the apex and moved to where the apex lies in the actual question: every
//! compression pointer in it shifts by the same distance.
//!
//! Anything else — CNAME chains, wildcards, delegations, names of two zones, global names
//! and the empty non-terminals above them — is left to [`ZoneSet::lookup`]: [`FastTable::get`]
//! answers `None` whenever it is not sure, never a different answer.

use rustc_hash::FxHashMap as HashMap;

use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;

use super::lookup::{NoOutside, OutsideNames};
use super::{Answer, Owner, ZoneSet, emit_record};
use crate::wire::{HEADER_LEN, MAX_NAME_LEN};

/// The sections of one response after its question, ready to copy.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The answer, authority and additional records, encoded.
    pub(crate) bytes: Box<[u8]>,
    /// Records in the answer, authority and additional sections.
    pub(crate) counts: [u16; 3],
    /// Offsets in `bytes` of the compression pointers to move with the apex (the negative
    /// SOA only; empty for answers prepared for their own name).
    pointers: Box<[u16]>,
}

impl Prepared {
    /// Append the sections to `out`; `shift` is how much further the apex lies in the actual
    /// question than in the one the bytes were prepared for (0 for an answer prepared for
    /// its own name).
    #[inline]
    pub(crate) fn write(&self, out: &mut Vec<u8>, shift: u16) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        for &p in self.pointers.iter() {
            let at = start + usize::from(p);
            if let Some(ptr) = out.get_mut(at..at + 2) {
                let to = u16::from_be_bytes([ptr[0], ptr[1]]).wrapping_add(shift);
                ptr.copy_from_slice(&to.to_be_bytes());
            }
        }
    }
}

/// A prepared answer for a query.
#[derive(Debug)]
pub(crate) struct Fast<'t> {
    /// The sections.
    pub(crate) prepared: &'t Prepared,
    /// What to add to the prepared compression pointers ([`Prepared::write`]).
    pub(crate) shift: u16,
    /// NXDOMAIN (else NOERROR).
    pub(crate) nxdomain: bool,
}

/// A name the zone files own.
#[derive(Debug)]
struct FastNode {
    /// Its zone, an index into `FastTable::zones`.
    zone: u16,
    /// At or below a zone cut, or owned by two zones: always the full lookup.
    slow: bool,
    /// Has a CNAME: other types are chased by the full lookup.
    cname: bool,
    /// Prepared answers by query type (the node's types and ANY).
    answers: Box<[(u16, Prepared)]>,
    /// In a signed zone, the same answers with their RRSIGs, for the DO bit.
    signed: Box<[(u16, Prepared)]>,
    /// In a signed zone, NODATA with the DO bit: the SOA, the NSEC at the name, their RRSIGs.
    signed_nodata: Option<Prepared>,
}

/// A zone's negative answer.
#[derive(Debug)]
struct FastZone {
    /// Length of the apex in wire form.
    apex_len: u16,
    /// The negative SOA in the authority section, prepared for a question that is the apex.
    soa: Prepared,
    /// The zone is signed: DO-bit queries get the signed answers.
    signed: bool,
}

/// Prepared answers for every zone of a [`ZoneSet`].
#[derive(Debug, Default)]
pub(crate) struct FastTable {
    /// Every node of every zone, by lower-cased wire name.
    nodes: HashMap<Box<[u8]>, FastNode>,
    /// Zone apexes by lower-cased wire name: the index into `zones`.
    origins: HashMap<Box<[u8]>, u16>,
    zones: Vec<FastZone>,
}

/// `records` (RRsets one after the other) each followed by the RRSIGs its zone made for it.
fn with_sigs<'z>(set: &'z ZoneSet, records: &[&'z Record]) -> Vec<&'z Record> {
    let mut out = Vec::with_capacity(records.len() * 2);
    let mut i = 0;
    while i < records.len() {
        let first = records[i];
        let mut j = i + 1;
        while j < records.len()
            && records[j].name == first.name
            && records[j].record_type() == first.record_type()
        {
            j += 1;
        }
        out.extend_from_slice(&records[i..j]);
        if let Some(z) = set.find(&first.name) {
            out.extend(z.sigs(&first.name, first.record_type()));
        }
        i = j;
    }
    out
}

/// The lower-cased wire form of `name`.
fn wire(name: &Name) -> Option<Box<[u8]>> {
    let mut buf = [0u8; MAX_NAME_LEN];
    crate::global::wire_lower_into(name, &mut buf).map(Box::from)
}

/// Encode `records` (answer section with `owner`, then `authority`, then `additional`) after
/// a question for `qname` (lower-cased wire form) and type `qtype`; the bytes after the
/// question. None if they do not fit one message.
fn render(
    qname: &[u8],
    qtype: u16,
    answers: &[(&Record, Owner<'_>)],
    authority: &[&Record],
    additional: &[&Record],
) -> Option<Prepared> {
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(qname);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    let start = out.len();
    {
        let mut enc = BinEncoder::with_offset(&mut out, start as u32);
        // The names that follow compress against the question, as `dns::encode` does.
        let end = HEADER_LEN + qname.len() - 1;
        let mut p = HEADER_LEN;
        while p < end {
            enc.store_label_pointer(p, end);
            p += 1 + usize::from(qname[p - HEADER_LEN]);
        }
        for (r, o) in answers {
            emit_record(&mut enc, r, *o).ok()?;
        }
        for r in authority.iter().chain(additional) {
            emit_record(&mut enc, r, Owner::Own).ok()?;
        }
    }
    let counts = [answers.len(), authority.len(), additional.len()].map(|n| n as u16);
    Some(Prepared {
        bytes: out.get(start..)?.into(),
        counts,
        pointers: Box::new([]),
    })
}

/// The offsets of the compression pointers in one encoded SOA record (owner, MNAME, RNAME).
fn soa_pointers(bytes: &[u8]) -> Option<Vec<u16>> {
    let mut found = Vec::new();
    // One name at `at`: its pointer's offset, if it ends in one, and the offset past it.
    let mut name = |mut at: usize| -> Option<usize> {
        loop {
            let len = *bytes.get(at)?;
            if len & 0xc0 == 0xc0 {
                found.push(u16::try_from(at).ok()?);
                return Some(at + 2);
            }
            at += 1 + usize::from(len);
            if len == 0 {
                return Some(at);
            }
        }
    };
    let rdata = name(0)? + 10;
    let rname = name(rdata)?;
    name(rname)?;
    Some(found)
}

impl FastTable {
    /// Prepare the answers of every zone in `set`.
    pub(super) fn build(set: &ZoneSet) -> Self {
        let mut t = Self::default();
        for zone in set.zones() {
            let Some(apex) = wire(zone.origin()) else {
                continue;
            };
            let negative = zone.negative_soa();
            let Some(mut soa) = render(&apex, 6, &[], &[negative], &[]) else {
                continue;
            };
            let Some(pointers) = soa_pointers(&soa.bytes) else {
                continue;
            };
            soa.pointers = pointers.into();
            let index = t.zones.len() as u16;
            t.origins.insert(apex.clone(), index);
            t.zones.push(FastZone {
                apex_len: apex.len() as u16,
                soa,
                signed: zone.signer().is_some(),
            });
            for (name, node) in &zone.nodes {
                let Some(key) = wire(name) else { continue };
                // A name below a cut, or a zone's node that a deeper zone also claims.
                let slow = zone.is_below_cut(name)
                    || (node.cut && name != zone.origin())
                    || set.find(name).is_none_or(|z| z.origin() != zone.origin())
                    || t.nodes.contains_key(&key);
                let mut answers = Vec::new();
                let mut signed = Vec::new();
                let mut signed_nodata = None;
                let signer = zone.signer().is_some();
                if !slow && signer {
                    let mut authority = vec![negative];
                    authority.extend(zone.negative_soa_sigs());
                    if let Some(nsec) = zone.nsec_at(name) {
                        authority.extend(nsec);
                    }
                    signed_nodata = render(&key, 0, &[], &authority, &[]);
                }
                if !slow {
                    let types = node.rrsets.iter().map(|r| r.rtype);
                    for qtype in types.chain(std::iter::once(RecordType::ANY)) {
                        let Some((
                            _,
                            Answer::Authoritative {
                                answers: a,
                                soa: None,
                                nxdomain: false,
                                additionals,
                            },
                        )) = set.lookup(name, qtype, &NoOutside)
                        else {
                            continue;
                        };
                        if a.is_empty() || a.iter().any(|(_, o)| !matches!(o, Owner::Query)) {
                            continue;
                        }
                        let code = u16::from(qtype);
                        if let Some(p) = render(&key, code, &a, &[], &additionals) {
                            answers.push((code, p));
                        }
                        if signer {
                            let recs: Vec<&Record> = a.iter().map(|(r, _)| *r).collect();
                            let with: Vec<(&Record, Owner<'_>)> = with_sigs(set, &recs)
                                .into_iter()
                                .map(|r| (r, Owner::Query))
                                .collect();
                            let adds = with_sigs(set, &additionals);
                            if let Some(p) = render(&key, code, &with, &[], &adds) {
                                signed.push((code, p));
                            }
                        }
                    }
                }
                let fast = FastNode {
                    zone: index,
                    slow,
                    cname: node.rrset(RecordType::CNAME).is_some(),
                    answers: answers.into(),
                    signed: signed.into(),
                    signed_nodata,
                };
                if let Some(other) = t.nodes.get_mut(&key) {
                    other.slow = true;
                } else {
                    t.nodes.insert(key, fast);
                }
            }
        }
        t
    }

    /// The prepared answer to `qname` (lower-cased wire form, as in the question) and
    /// `qtype`, if it is one of the cases prepared here; None: ask [`ZoneSet::lookup`].
    pub(crate) fn get(
        &self,
        qname: &[u8],
        qtype: u16,
        outside: &dyn OutsideNames,
        dnssec_ok: bool,
    ) -> Option<Fast<'_>> {
        let qlen = qname.len() as u16;
        if let Some(node) = self.nodes.get(qname) {
            if node.slow {
                return None;
            }
            if dnssec_ok && self.zones.get(usize::from(node.zone))?.signed {
                // The signed answers: data with its RRSIGs, or NODATA with its proof; a CNAME
                // to chase goes to the full lookup.
                if let Some((_, p)) = node.signed.iter().find(|(t, _)| *t == qtype) {
                    return Some(Fast {
                        prepared: p,
                        shift: 0,
                        nxdomain: false,
                    });
                }
                // (A global name at the apex: its NSEC lists A and AAAA, made when asked.)
                if node.cname
                    || node.answers.iter().any(|(t, _)| *t == qtype)
                    || outside.outside_wire(qname).is_some()
                {
                    return None;
                }
                return node.signed_nodata.as_ref().map(|p| Fast {
                    prepared: p,
                    shift: 0,
                    nxdomain: false,
                });
            }
            if let Some((_, p)) = node.answers.iter().find(|(t, _)| *t == qtype) {
                return Some(Fast {
                    prepared: p,
                    shift: 0,
                    nxdomain: false,
                });
            }
            if node.cname {
                return None;
            }
            // NODATA: the SOA moved to the apex inside this name.
            let zone = self.zones.get(usize::from(node.zone))?;
            return Some(Fast {
                prepared: &zone.soa,
                shift: qlen.checked_sub(zone.apex_len)?,
                nxdomain: false,
            });
        }
        // Not a name of the zone files: find the enclosing zone (the longest apex that is a
        // suffix), then the closest encloser below it.
        let mut starts = [0u8; MAX_NAME_LEN / 2 + 1];
        let mut labels = 0;
        let mut at = 0usize;
        while let Some(&len) = qname.get(at) {
            if len == 0 || len & 0xc0 != 0 {
                break;
            }
            *starts.get_mut(labels)? = at as u8;
            labels += 1;
            at += 1 + usize::from(len);
        }
        let suffix = |i: usize| qname.get(usize::from(starts[i])..);
        let (apex_at, z) = (1..labels).find_map(|i| {
            let zone = self.origins.get(suffix(i)?)?;
            Some((i, *zone))
        })?;
        let zone = self.zones.get(usize::from(z))?;
        if dnssec_ok && zone.signed {
            // A name that does not exist: its proof names it, made when asked.
            return None;
        }
        let mut closest = apex_at;
        for i in (0..apex_at).rev() {
            let name = suffix(i)?;
            match self.nodes.get(name) {
                Some(n) if n.zone == z && !n.slow && i > 0 => closest = i,
                Some(_) => return None,
                // A global name, or an empty non-terminal above one: the full lookup.
                None if outside.outside_wire(name).is_some() => return None,
                None => break,
            }
        }
        // A wildcard at the closest encloser synthesises: the full lookup.
        let encloser = suffix(closest)?;
        let mut buf = [0u8; MAX_NAME_LEN + 2];
        buf[..2].copy_from_slice(b"\x01*");
        buf.get_mut(2..2 + encloser.len())?
            .copy_from_slice(encloser);
        if self.nodes.contains_key(&buf[..2 + encloser.len()]) {
            return None;
        }
        Some(Fast {
            prepared: &zone.soa,
            shift: qlen.checked_sub(zone.apex_len)?,
            nxdomain: true,
        })
    }
}
