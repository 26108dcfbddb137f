//! The lookup an authoritative server performs (RFC 1034 §4.3.2 steps 2–6, without
//! recursion): delegations, CNAME chains, wildcards, empty non-terminals, NXDOMAIN versus
//! NODATA, and the additional section.
//!
//! The zone tree is more than the zone files: the global names (answered per client by the
//! caller) and the empty non-terminals above them exist too ([`OutsideNames`]). The lookup
//! treats them as existing names, so a CNAME chain ends at a global name instead of in
//! NXDOMAIN, an ancestor of a global name is NODATA (RFC 8020: NXDOMAIN would deny the
//! global name below it), and a wildcard never synthesises at or below them (RFC 4592 §2.2:
//! they are closer enclosers than the wildcard's parent).

use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Answer, MAX_CNAME_CHAIN, Node, Owner, Zone, ZoneSet};

/// What a name without data in the zone files can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outside {
    /// A global name: the caller answers it per client.
    Global,
    /// An empty non-terminal above a global name.
    Ent,
}

/// Names that exist beside the zone data. Asked only where the zone data has no answer of
/// its own (a name missing from the zone, an empty non-terminal of the zone, the apex for
/// address queries), so the positive static path never pays for it.
pub(crate) trait OutsideNames {
    /// What `name` is, if anything.
    fn outside(&self, name: &Name) -> Option<Outside>;
    /// [`outside`](Self::outside) for a name in lower-cased wire form.
    fn outside_wire(&self, wire: &[u8]) -> Option<Outside>;
}

/// Only the zone data.
pub(crate) struct NoOutside;

impl OutsideNames for NoOutside {
    fn outside(&self, _: &Name) -> Option<Outside> {
        None
    }
    fn outside_wire(&self, _: &[u8]) -> Option<Outside> {
        None
    }
}

impl ZoneSet {
    /// Resolve `qname`/`qtype` in our zones (RFC 1034 §4.3.2 steps 2–6, without recursion),
    /// with `outside` naming what exists beside the zone data. `None` when no zone encloses
    /// the name (the caller answers REFUSED).
    pub(crate) fn lookup<'z>(
        &'z self,
        qname: &'z Name,
        qtype: RecordType,
        outside: &dyn OutsideNames,
    ) -> Option<(&'z Zone, Answer<'z>)> {
        let first_zone = self.find(qname)?;
        let mut answers: Vec<(&'z Record, Owner<'z>)> = Vec::new();
        let mut additionals: Vec<&'z Record> = Vec::new();
        let mut name: &'z Name = qname;
        let mut zone = first_zone;
        let mut owner_is_query = true;

        for _ in 0..=MAX_CNAME_CHAIN {
            let step = zone.step(name, qtype, outside);
            match step {
                Step::Global => {
                    return Some((
                        first_zone,
                        Answer::Global {
                            chain: answers,
                            name,
                        },
                    ));
                }
                Step::Referral { ns, glue } => {
                    if answers.is_empty() {
                        return Some((first_zone, Answer::Referral { ns, glue }));
                    }
                    // A CNAME chain that leads into a delegation: what we have is the answer.
                    break;
                }
                Step::Data { records, owner } => {
                    let owner = if owner_is_query {
                        owner.or_query()
                    } else {
                        owner
                    };
                    answers.extend(records.iter().map(|r| (r, owner)));
                    zone.additional_for(records, self, &mut additionals);
                    break;
                }
                Step::Cname { record, owner } => {
                    let owner = if owner_is_query {
                        owner.or_query()
                    } else {
                        owner
                    };
                    answers.push((record, owner));
                    if qtype == RecordType::CNAME {
                        break;
                    }
                    let RData::CNAME(target) = &record.data else {
                        break;
                    };
                    // Loop protection: stop if the target was already answered.
                    if answers.iter().any(|(r, _)| r.name == target.0) {
                        break;
                    }
                    match self.find(&target.0) {
                        Some(next) => {
                            zone = next;
                            name = &target.0;
                            owner_is_query = false;
                        }
                        // Target outside our zones: the resolver continues from here.
                        None => break,
                    }
                }
                Step::NoData => {
                    return Some((
                        first_zone,
                        Answer::Authoritative {
                            answers,
                            soa: Some(zone.negative_soa()),
                            nxdomain: false,
                            additionals,
                        },
                    ));
                }
                Step::NxDomain => {
                    return Some((
                        first_zone,
                        Answer::Authoritative {
                            answers,
                            soa: Some(zone.negative_soa()),
                            nxdomain: true,
                            additionals,
                        },
                    ));
                }
            }
        }
        Some((
            first_zone,
            Answer::Authoritative {
                answers,
                soa: None,
                nxdomain: false,
                additionals,
            },
        ))
    }
}

impl Owner<'_> {
    fn or_query(self) -> Self {
        match self {
            // In the first step the owner is the query name, synthesised or not.
            Owner::Own | Owner::Synthesised(_) => Owner::Query,
            Owner::Query => Owner::Query,
        }
    }
}

enum Step<'z> {
    /// The name is a global name.
    Global,
    Referral {
        ns: &'z [Record],
        glue: Vec<&'z Record>,
    },
    Data {
        records: &'z [Record],
        owner: Owner<'z>,
    },
    Cname {
        record: &'z Record,
        owner: Owner<'z>,
    },
    NoData,
    NxDomain,
}

impl Zone {
    /// One lookup step for a name inside this zone.
    fn step<'z>(
        &'z self,
        name: &'z Name,
        qtype: RecordType,
        outside: &dyn OutsideNames,
    ) -> Step<'z> {
        let origin_labels = usize::from(self.origin.num_labels());
        let labels = usize::from(name.num_labels());

        // Walk down from the apex looking for a zone cut (RFC 1034 §4.3.2 step 3b), and find
        // the closest encloser on the way. Below the last zone node, global names and the
        // empty non-terminals above them still exist (never below a cut: a registry's name
        // is refused there).
        let mut closest = origin_labels;
        let mut in_zone = true;
        for n in origin_labels + 1..=labels {
            let ancestor = name.trim_to(n);
            let node = if in_zone {
                self.nodes.get(&ancestor)
            } else {
                None
            };
            let Some(node) = node else {
                // Zone nodes have every ancestor as a node, so none lies deeper.
                in_zone = false;
                if outside.outside(&ancestor).is_none() {
                    break;
                }
                closest = n;
                continue;
            };
            closest = n;
            // DS lives in the parent zone (RFC 4035 §3.1.4.1): a DS query at the cut is
            // answered here, from the parent side.
            if node.cut && !(n == labels && qtype == RecordType::DS) {
                // Borrow the NS RRset from self.nodes (the key must outlive the function).
                if let Some((_, node)) = self.nodes.get_key_value(&ancestor)
                    && let Some(ns) = node.rrset(RecordType::NS)
                {
                    let mut glue = Vec::new();
                    self.glue_for(&ns.records, &mut glue);
                    return Step::Referral {
                        ns: &ns.records,
                        glue,
                    };
                }
            }
        }

        if closest == labels {
            let node = self.nodes.get(name).filter(|n| !n.rrsets.is_empty());
            // A global name owns no zone data, except at the apex, where it answers only the
            // address types and the apex keeps its SOA, NS and the rest.
            let address = matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY);
            if (node.is_none() || (labels == origin_labels && address))
                && outside.outside(name) == Some(Outside::Global)
            {
                return Step::Global;
            }
            return match node {
                Some(node) => Self::from_node(node, qtype, Owner::Own),
                // An empty non-terminal, of the zone or above a global name.
                None => Step::NoData,
            };
        }

        // The name does not exist. RFC 4592: a wildcard child of the closest encloser
        // synthesises the answer, unless the name is below an existing name in between
        // (closest encloser rule: only the immediate `*` under the closest encloser counts).
        let encloser = name.trim_to(closest);
        if let Ok(wildcard) = encloser.prepend_label("*")
            && let Some((_, node)) = self.nodes.get_key_value(&wildcard)
        {
            return Self::from_node(node, qtype, Owner::Synthesised(name));
        }
        Step::NxDomain
    }

    fn from_node<'z>(node: &'z Node, qtype: RecordType, owner: Owner<'z>) -> Step<'z> {
        if qtype == RecordType::ANY {
            // RFC 8482 §4.1: answer ANY with one RRset (the CNAME if there is one, else the
            // first address, else whatever comes first), not the whole node.
            let pick = [RecordType::CNAME, RecordType::A, RecordType::AAAA]
                .iter()
                .find_map(|t| node.rrset(*t))
                .or_else(|| node.rrsets.first());
            return match pick {
                Some(r) => Step::Data {
                    records: &r.records,
                    owner,
                },
                None => Step::NoData,
            };
        }
        if let Some(r) = node.rrset(qtype) {
            return Step::Data {
                records: &r.records,
                owner,
            };
        }
        if let Some(c) = node.rrset(RecordType::CNAME)
            && let Some(record) = c.records.first()
        {
            return Step::Cname { record, owner };
        }
        Step::NoData
    }

    /// Glue for a referral: A/AAAA of NS targets that lie inside this zone (at or below the
    /// cut, or elsewhere in the zone).
    fn glue_for<'z>(&'z self, ns: &'z [Record], out: &mut Vec<&'z Record>) {
        for r in ns {
            if let RData::NS(target) = &r.data {
                self.addresses_of(&target.0, out);
            }
        }
    }

    fn addresses_of<'z>(&'z self, target: &Name, out: &mut Vec<&'z Record>) {
        if let Some(node) = self.nodes.get(target) {
            for t in [RecordType::A, RecordType::AAAA] {
                if let Some(r) = node.rrset(t) {
                    out.extend(r.records.iter());
                }
            }
        }
    }

    /// Additional-section processing (RFC 1035 §3.3.9, §3.3.11; RFC 2782): addresses of NS,
    /// MX and SRV targets that are in our zones and not delegated away.
    fn additional_for<'z>(
        &'z self,
        records: &'z [Record],
        set: &'z ZoneSet,
        out: &mut Vec<&'z Record>,
    ) {
        for r in records {
            let target = match &r.data {
                RData::NS(ns) => &ns.0,
                RData::MX(mx) => &mx.exchange,
                RData::SRV(srv) => &srv.target,
                _ => continue,
            };
            if let Some(zone) = set.find(target) {
                // NS targets below a cut are glue and still useful; MX/SRV targets below a cut
                // are not ours to answer.
                if matches!(&r.data, RData::NS(_)) || !zone.is_below_cut(target) {
                    zone.addresses_of(target, out);
                }
            }
        }
    }
}
