//! Global names, prepared at load time so that answering one costs no allocation: each
//! replica's answer records are encoded once (owner written as a pointer to the question), the
//! enclosing zone's negative SOA too, and names are found by their lower-cased wire form.

use std::collections::HashMap;

use hickory_proto::ProtoError;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, rdata};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use crate::config::Registry;
use crate::dns::wire::{HEADER_LEN, MAX_NAME_LEN};
use crate::problem::Problem;
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
}

impl PreparedReplica {
    /// The records for a query type.
    pub fn for_type(&self, qtype: u16) -> &Encoded {
        match qtype {
            1 => &self.a,
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
}

impl PreparedRegistry {
    /// Which replicas can answer a query type at all.
    pub fn mask_for(&self, qtype: u16) -> u64 {
        match qtype {
            1 => self.family_mask[0],
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
    pub fn prepare(registries: &[Registry], zones: &ZoneSet, config_path: &std::path::Path) -> Result<Self, Vec<Problem>> {
        let mut out = Self::default();
        let mut problems = Vec::new();
        for reg in registries {
            match prepare_registry(reg, zones) {
                Ok(p) => {
                    out.by_name.insert(wire_lower(&p.name).into_boxed_slice(), out.registries.len());
                    out.registries.push(p);
                }
                Err(e) => problems.push(Problem::file(config_path, format!("registry {}: {e}", reg.key))),
            }
        }
        if problems.is_empty() { Ok(out) } else { Err(problems) }
    }

    /// The registry whose global name is this lower-cased wire name.
    pub fn find(&self, lower_wire: &[u8]) -> Option<(usize, &PreparedRegistry)> {
        let i = *self.by_name.get(lower_wire)?;
        Some((i, &self.registries[i]))
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

fn prepare_registry(reg: &Registry, zones: &ZoneSet) -> Result<PreparedRegistry, String> {
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
        };
        if let Some(target) = &rep.cname {
            let cname = Record::from_rdata(reg.name.clone(), reg.ttl, RData::CNAME(rdata::CNAME(target.clone())));
            for e in [&mut p.a, &mut p.aaaa, &mut p.other] {
                encode_rr(e, &cname, true).map_err(enc_err)?;
            }
            // Chase the target inside our zones (its own TTLs), like a static CNAME would be.
            for (enc, rtype) in [(&mut p.a, RecordType::A), (&mut p.aaaa, RecordType::AAAA)] {
                if let Some((_, Answer::Authoritative { answers, .. })) = zones.lookup(target, rtype) {
                    for (r, _) in answers {
                        encode_rr(enc, r, false).map_err(enc_err)?;
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
            }
            for a in &rep.ipv6 {
                let r = Record::from_rdata(reg.name.clone(), reg.ttl, RData::AAAA((*a).into()));
                encode_rr(&mut p.aaaa, &r, true).map_err(enc_err)?;
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
    })
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
