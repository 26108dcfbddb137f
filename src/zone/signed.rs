//! Signed zones: every authoritative RRset signed at load (and reload), the key RRsets at
//! the apex, and per name the compact-denial NSEC (RFC 9824) that NODATA answers and
//! insecure referrals carry. NXDOMAIN proofs name the query name and are signed when asked
//! (`crate::dns`), so nothing here lists the names of the zone and nothing can be walked.
//!
//! Cost: one signature per RRset and per name (NSEC) per key at load; ECDSA P-256 with ring
//! is tens of µs each, so a static zone of thousands of names signs in well under a second.

use std::sync::Arc;
use std::time::SystemTime;

use hickory_proto::rr::{Name, Record, RecordType};

use super::lookup::{Outside, OutsideNames};
use super::{Zone, ZoneSet};
use crate::config::dnssec::DnssecConfig;
use crate::dnssec::sign::ZoneSigner;
use crate::problem::Problem;

impl Zone {
    /// Sign the zone with `signer` at `now`: publish DNSKEY, CDNSKEY and CDS at the apex
    /// (replacing any in the file), sign every RRset the zone is authoritative for (not the
    /// NS at a cut, not glue; the DS at a cut is the parent's and is signed), and make each
    /// name's NSEC.
    pub(crate) fn sign(&mut self, signer: Arc<ZoneSigner>, dnskey_ttl: u32, now: SystemTime) {
        let origin = self.origin.clone();
        let negative_ttl = self.negative_soa.ttl;
        if let Some(apex) = self.nodes.get_mut(&origin) {
            apex.rrsets.retain(|r| {
                !matches!(
                    r.rtype,
                    RecordType::DNSKEY | RecordType::CDNSKEY | RecordType::CDS
                )
            });
            for (rtype, records) in signer.key_rrsets(dnskey_ttl) {
                apex.rrsets.push(super::Rrset {
                    rtype,
                    records,
                    sigs: Vec::new(),
                });
            }
        }
        let names: Vec<Name> = self.nodes.keys().cloned().collect();
        for name in names {
            let below = self.is_strictly_below_cut(&name);
            let Some(node) = self.nodes.get_mut(&name) else {
                continue;
            };
            if below {
                continue;
            }
            let mut types: Vec<u16> = Vec::with_capacity(node.rrsets.len());
            for rrset in &mut node.rrsets {
                types.push(u16::from(rrset.rtype));
                // At a cut only the DS is ours (RFC 4035 §2.2).
                if node.cut && rrset.rtype != RecordType::DS {
                    continue;
                }
                let refs: Vec<&Record> = rrset.records.iter().collect();
                let ttl = refs.iter().map(|r| r.ttl).min().unwrap_or(0);
                rrset.sigs = signer.sign(&name, &refs, ttl, now);
            }
            if node.cut {
                types
                    .retain(|t| *t == u16::from(RecordType::NS) || *t == u16::from(RecordType::DS));
            }
            node.nsec = signer.signed_nsec(&name, &types, negative_ttl, now);
        }
        let soa_sigs = self.sigs(&origin, RecordType::SOA).to_vec();
        self.negative_soa_sigs = soa_sigs
            .into_iter()
            .map(|mut r| {
                r.ttl = negative_ttl;
                r
            })
            .collect();
        signer.note_signed(now);
        self.signer = Some(signer);
        self.signed_at = Some((now, dnskey_ttl));
    }

    /// Whether its signatures are due to be made again at `now`: half of the shortest
    /// validity (validity less jitter) is gone, so a served signature always has days left.
    pub(crate) fn sign_due(&self, now: SystemTime) -> bool {
        match (&self.signer, self.signed_at) {
            (Some(s), Some((at, _))) => {
                let t = s.timing();
                now.duration_since(at)
                    .is_ok_and(|gone| gone >= t.validity.saturating_sub(t.jitter) / 2)
            }
            _ => false,
        }
    }

    /// Whether `name` lies strictly below a zone cut (glue or occluded data).
    fn is_strictly_below_cut(&self, name: &Name) -> bool {
        let origin_labels = self.origin.num_labels();
        let labels = name.num_labels();
        (origin_labels + 1..labels).any(|n| {
            self.nodes
                .get(&name.trim_to(n.into()))
                .is_some_and(|x| x.cut)
        })
    }

    /// The static part of the zone as a signed zone file, for offline verifiers
    /// (`dnssec-verify`, `ldns-verify-zone`): every RRset with the RRSIGs it is served with,
    /// the key RRsets, glue (unsigned), and an NSEC chain over the names with data, made
    /// and signed for the dump at `now`. The chain is the dump's own: steerdns serves
    /// compact denial (one NSEC per query name), which has no chain to verify; the dump's
    /// chain lets the verifiers check that every RRset is signed and nothing is missing.
    /// Global names' per-client answers are not static and are not in it. None when the
    /// zone is not signed.
    pub(crate) fn dump_signed(&self, now: SystemTime) -> Option<String> {
        let signer = self.signer.as_deref()?;
        let ttl = self.negative_soa.ttl;
        let mut names: Vec<&Name> = self.nodes.keys().collect();
        // hickory orders names canonically (RFC 4034 §6.1): labels from the right, case
        // folded.
        names.sort();
        let chain: Vec<&Name> = names
            .iter()
            .copied()
            .filter(|n| {
                !self.is_strictly_below_cut(n)
                    && self.nodes.get(*n).is_some_and(|x| !x.rrsets.is_empty())
            })
            .collect();
        let mut out = format!(
            "; {} signed by steerdns: the static part, with an NSEC chain made for this dump\n",
            self.origin
        );
        let mut at = 0;
        for name in names {
            let Some(node) = self.nodes.get(name) else {
                continue;
            };
            for rrset in &node.rrsets {
                for r in rrset.records.iter().chain(&rrset.sigs) {
                    zone_file_line(&mut out, r);
                }
            }
            if chain.get(at) == Some(&name) {
                at += 1;
                let next = chain.get(at).or(chain.first()).copied().unwrap_or(name);
                let mut types: Vec<u16> = node
                    .rrsets
                    .iter()
                    .map(|r| u16::from(r.rtype))
                    .filter(|t| {
                        !node.cut
                            || *t == u16::from(RecordType::NS)
                            || *t == u16::from(RecordType::DS)
                    })
                    .collect();
                types.push(u16::from(RecordType::RRSIG));
                types.push(u16::from(RecordType::NSEC));
                let mut rdata = crate::dnssec::sign::canonical_wire(next);
                rdata.extend_from_slice(&crate::dnssec::sign::type_bitmap(&types));
                let nsec = crate::dnssec::sign::opaque(name.clone(), RecordType::NSEC, ttl, rdata);
                let sigs = signer.sign(name, &[&nsec], ttl, now);
                for r in std::iter::once(&nsec).chain(&sigs) {
                    zone_file_line(&mut out, r);
                }
            }
        }
        Some(out)
    }

    /// The zone's signer, when it is signed.
    pub(crate) fn signer(&self) -> Option<&ZoneSigner> {
        self.signer.as_deref()
    }

    /// The zone's signer, shared.
    pub(crate) fn signer_arc(&self) -> Option<Arc<ZoneSigner>> {
        self.signer.clone()
    }

    /// The RRSIGs of the RRset `name`/`rtype` (empty when unsigned or absent).
    pub(crate) fn sigs(&self, name: &Name, rtype: RecordType) -> &[Record] {
        self.nodes
            .get(name)
            .and_then(|n| n.rrset(rtype))
            .map_or(&[], |r| r.sigs.as_slice())
    }

    /// The records of the RRset `name`/`rtype` (empty when absent).
    pub(crate) fn records(&self, name: &Name, rtype: RecordType) -> &[Record] {
        self.nodes
            .get(name)
            .and_then(|n| n.rrset(rtype))
            .map_or(&[], |r| r.records.as_slice())
    }

    /// The NSEC at `name` and its RRSIGs, when the zone is signed and owns the name.
    pub(crate) fn nsec_at(&self, name: &Name) -> Option<&[Record]> {
        self.nodes
            .get(name)
            .map(|n| n.nsec.as_slice())
            .filter(|n| !n.is_empty())
    }

    /// The RRSIGs of the negative SOA (its TTL).
    pub(crate) fn negative_soa_sigs(&self) -> &[Record] {
        &self.negative_soa_sigs
    }

    /// The types an NSEC at `name` lists: the node's own, plus A and AAAA when it is also
    /// a global name (at the apex); without a node, those of the wildcard that synthesises
    /// it, A and AAAA at a global name, else none (an empty non-terminal). A bitmap that left
    /// out a type the name answers would let a resolver that caches NSEC aggressively
    /// (RFC 8198) deny it.
    pub(crate) fn denial_types(&self, name: &Name, outside: &dyn OutsideNames) -> Vec<u16> {
        let mut types: Vec<u16> = self
            .nodes
            .get(name)
            .map(|n| n.rrsets.iter().map(|r| u16::from(r.rtype)).collect())
            .unwrap_or_default();
        if outside.outside(name) == Some(Outside::Global) {
            types.extend([u16::from(RecordType::A), u16::from(RecordType::AAAA)]);
            return types;
        }
        if !types.is_empty() {
            return types;
        }
        let origin_labels = self.origin.num_labels();
        let mut n = name.num_labels();
        while n > origin_labels {
            n -= 1;
            let encloser = name.trim_to(n.into());
            let exists = self.nodes.contains_key(&encloser) || outside.outside(&encloser).is_some();
            if exists {
                if let Ok(w) = encloser.prepend_label("*")
                    && let Some(node) = self.nodes.get(&w)
                {
                    return node.rrsets.iter().map(|r| u16::from(r.rtype)).collect();
                }
                break;
            }
        }
        Vec::new()
    }
}

/// One record in zone-file syntax: the usual text for the simple types, RFC 3597's generic
/// form (`\# length hex`, the RDATA as signed) for every other, so that any verifier reads
/// back exactly the signed octets.
fn zone_file_line(out: &mut String, r: &Record) {
    use std::fmt::Write as _;
    let simple = matches!(
        r.record_type(),
        RecordType::A
            | RecordType::AAAA
            | RecordType::NS
            | RecordType::CNAME
            | RecordType::SOA
            | RecordType::MX
            | RecordType::PTR
    ) && !matches!(r.data, hickory_proto::rr::RData::Unknown { .. });
    if simple {
        let _ = writeln!(
            out,
            "{} {} IN {} {}",
            r.name,
            r.ttl,
            r.record_type(),
            r.data
        );
        return;
    }
    let rdata = crate::dnssec::sign::canonical_rdata(r);
    let _ = write!(
        out,
        "{} {} IN TYPE{} \\# {} ",
        r.name,
        r.ttl,
        u16::from(r.record_type()),
        rdata.len()
    );
    for b in &rdata {
        let _ = write!(out, "{b:02x}");
    }
    out.push('\n');
}

impl ZoneSet {
    /// Sign the zones `dnssec` names (before the prepared answers are built). A zone it
    /// names that no zone file serves is a problem of the config file `config`.
    pub(crate) fn sign(
        &mut self,
        dnssec: &DnssecConfig,
        config: &std::path::Path,
        now: SystemTime,
    ) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        for zk in &dnssec.zones {
            let Some(zone) = self.zones.get_mut(&zk.zone) else {
                problems.push(Problem::at(
                    config,
                    crate::config::line_in_file(config, "dnssec", Some("zones")),
                    format!("dnssec.zones names {}, which no zone file serves", zk.zone),
                ));
                continue;
            };
            let signer =
                match ZoneSigner::new(&zk.zone, &zk.keys, dnssec.timing, dnssec.signature_cache) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        problems.push(Problem::at(
                            &dnssec.key_dir,
                            None,
                            format!("{}: {e}", zk.zone),
                        ));
                        continue;
                    }
                };
            match Arc::get_mut(zone) {
                Some(z) => z.sign(signer, dnssec.dnskey_ttl, now),
                None => problems.push(Problem::file(config, "a zone is shared while being signed")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Whether some zone's signatures are due to be made again at `now`.
    pub(crate) fn sign_due(&self, now: SystemTime) -> bool {
        self.signed && self.zones.values().any(|z| z.sign_due(now))
    }

    /// The same zones, those due signed again at `now` with the keys they had, and the
    /// answers prepared again. The zones keep their order (the global names' zone indices
    /// follow it).
    pub(crate) fn resigned(&self, now: SystemTime) -> ZoneSet {
        let mut zones = self.zones.clone();
        for z in zones.values_mut() {
            if !z.sign_due(now) {
                continue;
            }
            let (Some(signer), Some((_, ttl))) = (z.signer.clone(), z.signed_at) else {
                continue;
            };
            let mut fresh = (**z).clone();
            fresh.sign(signer, ttl, now);
            *z = Arc::new(fresh);
        }
        Self::prepared(zones)
    }

    /// Whether some zone is signed.
    pub(crate) fn any_signed(&self) -> bool {
        self.zones.values().any(|z| z.signer.is_some())
    }
}
