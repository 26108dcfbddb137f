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
use crate::dnssec::sign::NXNAME;
use crate::state::Snapshot;
use crate::wire::{ClientSubnet, Query, Rcode};
use crate::zone::{Owner, Zone};

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
                if first.name.is_wildcard() {
                    if let Some(signer) = zone.signer() {
                        let answered = match owner {
                            Owner::Synthesised(n) => n.to_lowercase(),
                            _ => qname.to_lowercase(),
                        };
                        let refs: Vec<&Record> = records[i..j].iter().map(|(r, _)| *r).collect();
                        let ttl = refs.iter().map(|r| r.ttl).min().unwrap_or(0);
                        let sigs = signer.sign(&answered, &refs, ttl, now);
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
        let owner = if std::ptr::eq(last, qname) {
            Owner::Query
        } else {
            Owner::Own
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
            let proof: Vec<Item<'z>> = match (nxdomain, z.nsec_at(last), z.signer()) {
                // RFC 9824 §3.1: the name "exists" with nothing but NSEC, RRSIG and NXNAME.
                (true, _, Some(s)) => {
                    rcode = Rcode::NoError;
                    let made = s.signed_nsec(&at, &[NXNAME], soa.ttl, now);
                    p.made(made, owner)
                }
                (false, Some(nsec), _) => nsec.iter().map(|r| Item::Zone(r, Owner::Own)).collect(),
                (false, None, Some(s)) => {
                    let types = z.synthesised_types(last, &*snap.globals);
                    let made = s.signed_nsec(&at, &types, soa.ttl, now);
                    p.made(made, owner)
                }
                _ => Vec::new(),
            };
            // NSEC records are written with their own (lower-case) owner.
            p.authority.extend(proof.into_iter().map(|it| match it {
                Item::Zone(r, _) => Item::Zone(r, Owner::Own),
                Item::Made(k, _) => Item::Made(k, Owner::Own),
            }));
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
