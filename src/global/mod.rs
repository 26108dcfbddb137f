//! Global names, prepared at load time so that answering one costs no allocation and a
//! million of them fit in little memory.
//!
//! # Shared, not copied
//!
//! ```text
//!  Registry (≈ 100 B: name, key, ids) ──profile──► Profile (set, depends_on) ──► ReplicaSet
//!           └──────────answer_set──► AnswerSet (set, ttl): each replica's RRs, pre-encoded
//! ```
//!
//! - A [`ReplicaSet`] is a template's (or one config-file registry's) replicas: regions,
//!   addresses, probe targets, ranking candidates. Registries of one template share it.
//! - An [`AnswerSet`] holds each replica's answer records for one TTL, encoded once with the
//!   owner written as a pointer to the question (offset 12), so the same bytes answer every
//!   registry of the set.
//! - A [`Profile`] is what health is judged on: the set plus the registry's `depends_on`.
//!   Registries with the same profile have the same health masks, computed once.
//! - [`Registry`] records live in [`Globals`], a hash table split into [`SHARDS`] shards behind
//!   `Arc`s, found by their lower-cased wire name: adding or removing one registry copies one
//!   shard (about 1/1024 of the table), never the whole table.
//! - The empty non-terminals above global names ([`ents`]) are kept beside the name table, in
//!   step with it, so the zone lookup sees the global names as part of the zone tree
//!   ([`tree`]).

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use hickory_proto::ProtoError;
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata};
use hickory_proto::serialize::binary::{BinEncoder, NameEncoding};
use rustc_hash::FxBuildHasher;

use crate::config::Replica;
use crate::health::book::TargetId;
use crate::health::spec::HealthMode;
use crate::routing::ReplicaMask;
use crate::routing::{Candidate, Candidates, RegionOrder, Regions};
use crate::wire::MAX_NAME_LEN;
use crate::zone::{Answer, NoOutside, Owner, ZoneSet, emit_record};

mod decide;
mod ents;
mod tree;

pub(crate) use decide::{Explained, Target, decide_with_health, explain};
pub(crate) use tree::{copy_owned_by, wire_lower_into};

/// How many shards the name table has.
pub(crate) const SHARDS: usize = 1024;

/// Record types with their own prepared answer (everything else shares `OTHER`).
pub(crate) mod qtype {
    /// A.
    pub(crate) const A: u16 = 1;
    /// AAAA.
    pub(crate) const AAAA: u16 = 28;
    /// ANY (answered with the A RRset, RFC 8482).
    pub(crate) const ANY: u16 = 255;
}

/// Which prepared answer a query type reads: 0 A (and ANY), 1 AAAA, 2 any other type.
fn slot(qtype: u16) -> usize {
    match qtype {
        qtype::A | qtype::ANY => 0,
        qtype::AAAA => 1,
        _ => 2,
    }
}

/// Pre-encoded resource records: concatenated wire RRs and how many there are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Encoded {
    /// The RRs, ready to copy after the question.
    pub(crate) bytes: Vec<u8>,
    /// How many RRs.
    pub(crate) count: u16,
}

//------------ ReplicaSet ---------------------------------------------------------------------

/// One replica of a set.
#[derive(Debug)]
pub(crate) struct SetReplica {
    /// Config key.
    pub(crate) key: Arc<str>,
    /// Region name.
    pub(crate) region: Arc<str>,
    /// The deep check's probe target (None: no URL, stays unknown).
    pub(crate) deep: Option<TargetId>,
    /// The shallow (front door) check's probe target.
    pub(crate) shallow: Option<TargetId>,
    /// `depends_on` from the health settings (a registry's own `depends_on` replaces it).
    pub(crate) depends_on: Option<Deps>,
    /// What it answers.
    pub(crate) spec: Replica,
}

/// Sorted, deduplicated dependency names a registry is judged on.
pub(crate) type Deps = Arc<[String]>;

/// Where a set came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SetKind {
    /// A `[templates.NAME]` table: shared by catalog registries.
    Template,
    /// A `[registries.NAME]` table of the config file: its own set.
    Registry,
}

/// Replicas shared by the registries of a template.
#[derive(Debug)]
pub(crate) struct ReplicaSet {
    /// The template name (or the config registry key).
    pub(crate) key: Arc<str>,
    /// Template or config registry.
    pub(crate) kind: SetKind,
    /// The replicas, sorted by key (the index is the replica index everywhere).
    pub(crate) replicas: Vec<SetReplica>,
    /// The replicas' regions (and default order), for ranking.
    pub(crate) candidates: Candidates,
    /// The replicas with records for A (index 0) / AAAA (1) / other types (2).
    pub(crate) family_mask: [ReplicaMask; 3],
    /// The configured health mode.
    pub(crate) mode: HealthMode,
    /// Default TTL of its registries.
    pub(crate) ttl: u32,
    /// Default answers per query of its registries.
    pub(crate) answers: u8,
}

impl ReplicaSet {
    /// Build a set from validated replicas with their resolved probe targets.
    pub(crate) fn new(
        key: &str,
        kind: SetKind,
        replicas: Vec<SetReplica>,
        default_order: Option<&[String]>,
        regions: &Regions,
        (mode, ttl, answers): (HealthMode, u32, u8),
    ) -> Result<Self, String> {
        let mut items = Vec::with_capacity(replicas.len());
        let mut family_mask = [ReplicaMask::EMPTY; 3];
        for (i, rep) in replicas.iter().enumerate() {
            let region = regions.id(&rep.region).ok_or_else(|| {
                format!(
                    "replica {} is in region {:?}, which is not configured",
                    rep.key, rep.region
                )
            })?;
            items.push(Candidate { region });
            let bit = ReplicaMask::single(i);
            if rep.spec.cname.is_some() {
                family_mask = family_mask.map(|m| m | bit);
            } else {
                if !rep.spec.ipv4.is_empty() {
                    family_mask[0] |= bit;
                }
                if !rep.spec.ipv6.is_empty() {
                    family_mask[1] |= bit;
                }
            }
        }
        let candidates = match default_order {
            Some(order) => {
                let names: Vec<&str> = order.iter().map(String::as_str).collect();
                let order = RegionOrder::new(regions, &names).map_err(|e| e.to_string())?;
                Candidates::with_order(&items, &order)
            }
            None => Candidates::new(&items),
        }
        .map_err(|e| e.to_string())?;
        Ok(Self {
            key: key.into(),
            kind,
            replicas,
            candidates,
            family_mask,
            mode,
            ttl,
            answers,
        })
    }

    /// Which replicas can answer a query type at all.
    pub(crate) fn mask_for(&self, qtype: u16) -> ReplicaMask {
        self.family_mask[slot(qtype)]
    }

    /// The answer records of replica `i` for `qtype` with owner `name`, as zone-file text.
    pub(crate) fn describe(
        &self,
        i: usize,
        name: &Name,
        ttl: u32,
        qtype: u16,
        zones: &ZoneSet,
    ) -> Vec<String> {
        let Some(rep) = self.replicas.get(i) else {
            return Vec::new();
        };
        replica_records(&rep.spec, name, ttl, zones)
            .map(|r| r[slot(qtype)].iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }
}

/// The records each query type gets from a replica: [A, AAAA, other].
fn replica_records(
    rep: &Replica,
    name: &Name,
    ttl: u32,
    zones: &ZoneSet,
) -> Result<[Vec<Record>; 3], ProtoError> {
    let mut out: [Vec<Record>; 3] = Default::default();
    if let Some(target) = &rep.cname {
        let cname = Record::from_rdata(
            name.clone(),
            ttl,
            RData::CNAME(rdata::CNAME(target.clone())),
        );
        for o in &mut out {
            o.push(cname.clone());
        }
        // Chase the target inside our zones (its own TTLs), like a static CNAME would be.
        for (o, rtype) in [(0, RecordType::A), (1, RecordType::AAAA)] {
            // (Zone data only: the answer set is shared by every client, so it cannot hold a
            // global name's per-client records.)
            if let Some((_, Answer::Authoritative { answers, .. })) =
                zones.lookup(target, rtype, &NoOutside)
            {
                out[o].extend(answers.into_iter().map(|(r, _)| r.clone()));
            }
        }
    } else {
        out[0].extend(
            rep.ipv4
                .iter()
                .map(|a| Record::from_rdata(name.clone(), ttl, RData::A((*a).into()))),
        );
        out[1].extend(
            rep.ipv6
                .iter()
                .map(|a| Record::from_rdata(name.clone(), ttl, RData::AAAA((*a).into()))),
        );
    }
    Ok(out)
}

//------------ AnswerSet ----------------------------------------------------------------------

/// Each replica's answer records of one set at one TTL, encoded once.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AnswerSet {
    /// The set (index in [`Globals::sets`]).
    pub(crate) set: u32,
    /// The TTL of the owner's records.
    pub(crate) ttl: u32,
    /// Per replica: [A, AAAA, other].
    pub(crate) replicas: Vec<[Encoded; 3]>,
}

impl AnswerSet {
    /// Encode set `index`'s answers at `ttl`.
    pub(crate) fn new(
        index: u32,
        set: &ReplicaSet,
        ttl: u32,
        zones: &ZoneSet,
    ) -> Result<Self, String> {
        let enc_err = |e: ProtoError| format!("cannot encode an answer: {e}");
        let mut replicas = Vec::with_capacity(set.replicas.len());
        for rep in &set.replicas {
            // The owner is written as a pointer to the question, so any name serves here.
            let records = replica_records(&rep.spec, &Name::root(), ttl, zones).map_err(enc_err)?;
            let mut enc: [Encoded; 3] = Default::default();
            for (e, recs) in enc.iter_mut().zip(&records) {
                for (n, r) in recs.iter().enumerate() {
                    // The replica's own records (its addresses, or its CNAME, which comes
                    // first) are owned by the question; chased records keep their owners.
                    let owner_is_query = rep.spec.cname.is_none() || n == 0;
                    encode_rr(e, r, owner_is_query).map_err(enc_err)?;
                }
            }
            replicas.push(enc);
        }
        Ok(Self {
            set: index,
            ttl,
            replicas,
        })
    }

    /// The records of replica `i` for a query type.
    pub(crate) fn for_type(&self, i: usize, qtype: u16) -> &Encoded {
        static EMPTY: Encoded = Encoded {
            bytes: Vec::new(),
            count: 0,
        };
        self.replicas.get(i).map_or(&EMPTY, |r| &r[slot(qtype)])
    }
}

/// Append one RR in wire form. `owner_is_query`: the owner is written as a pointer to the
/// question name (offset 12); otherwise in full. Names in RDATA are never compressed, so the
/// bytes can be copied into any message.
pub(crate) fn encode_rr(
    out: &mut Encoded,
    rec: &Record,
    owner_is_query: bool,
) -> Result<(), ProtoError> {
    let mut buf = Vec::new();
    {
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_name_encoding(NameEncoding::Uncompressed);
        let owner = if owner_is_query {
            Owner::Query
        } else {
            Owner::Own
        };
        emit_record(&mut enc, rec, owner)?;
    }
    out.bytes.extend_from_slice(&buf);
    out.count += 1;
    Ok(())
}

//------------ Profile and Registry -----------------------------------------------------------

/// What a registry's health is judged on. Registries with equal profiles share health masks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Profile {
    /// The replica set.
    pub(crate) set: u32,
    /// The registry's own `depends_on` (None: each replica's from the health settings).
    pub(crate) depends_on: Option<Deps>,
}

/// One registry, as the answer path finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Registry {
    /// The lower-cased wire name followed by the key.
    bytes: Box<[u8]>,
    name_len: u8,
    /// Replicas per answer.
    pub(crate) answers: u8,
    /// Index of the enclosing zone in [`Globals::zones`].
    pub(crate) zone: u16,
    /// The global name is its zone's apex: only A, AAAA and ANY are answered per client;
    /// every other type comes from the zone file.
    pub(crate) apex: bool,
    /// Stable id (exceptions in the health masks, per-registry counters).
    pub(crate) id: u32,
    /// Index in [`Globals::profiles`].
    pub(crate) profile: u32,
    /// Index in [`Globals::answer_sets`].
    pub(crate) answer_set: u32,
}

impl Registry {
    /// A record for `name` (absolute) and `key`.
    pub(crate) fn new(key: &str, name: &Name, ids: RegistryIds) -> Self {
        let wire = wire_lower(name);
        let mut bytes = Vec::with_capacity(wire.len() + key.len());
        bytes.extend_from_slice(&wire);
        bytes.extend_from_slice(key.as_bytes());
        Self {
            name_len: wire.len() as u8, // ≤ 255: a Name's wire form is
            bytes: bytes.into_boxed_slice(),
            answers: ids.answers,
            zone: ids.zone,
            apex: ids.apex,
            id: ids.id,
            profile: ids.profile,
            answer_set: ids.answer_set,
        }
    }

    /// The lower-cased wire name.
    pub(crate) fn name_wire(&self) -> &[u8] {
        &self.bytes[..usize::from(self.name_len)]
    }

    /// The registry's key.
    pub(crate) fn key(&self) -> &str {
        std::str::from_utf8(&self.bytes[usize::from(self.name_len)..]).unwrap_or("")
    }

    /// The global name.
    pub(crate) fn name(&self) -> Name {
        use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
        Name::read(&mut BinDecoder::new(self.name_wire())).unwrap_or_else(|_| Name::root())
    }
}

/// The ids a [`Registry`] record carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RegistryIds {
    /// Stable id.
    pub(crate) id: u32,
    /// Profile index.
    pub(crate) profile: u32,
    /// Answer set index.
    pub(crate) answer_set: u32,
    /// Zone index.
    pub(crate) zone: u16,
    /// The name is the zone's apex.
    pub(crate) apex: bool,
    /// Replicas per answer.
    pub(crate) answers: u8,
}

type Shard = HashTable<Registry>;

/// What a global name needs of its zone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GlobalZone {
    /// The negative SOA (owner in full, TTL per RFC 2308), for NODATA.
    pub(crate) negative_soa: Encoded,
    /// Labels of the apex (where the empty non-terminals above a global name end).
    pub(crate) apex_labels: u8,
    /// The negative SOA's TTL: the TTL of denials (RFC 9077).
    pub(crate) negative_ttl: u32,
    /// The negative SOA's RRSIGs (owner in full), when the zone is signed.
    pub(crate) negative_soa_sigs: Encoded,
    /// The zone's signer, when it is signed.
    pub(crate) signer: SignerRef,
}

/// A zone's signer, compared by identity.
#[derive(Clone, Debug, Default)]
pub(crate) struct SignerRef(pub(crate) Option<Arc<crate::dnssec::sign::ZoneSigner>>);

impl PartialEq for SignerRef {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for SignerRef {}

/// All global names: the sharded name table and the data its records point into.
#[derive(Clone, Debug)]
pub(crate) struct Globals {
    shards: Box<[Arc<Shard>]>,
    len: usize,
    /// The empty non-terminals above the global names, in step with the name table.
    ents: ents::Ents,
    /// Replica sets (templates, config registries).
    pub(crate) sets: Arc<[ReplicaSet]>,
    /// Prepared answers by (set, ttl).
    pub(crate) answer_sets: Vec<Arc<AnswerSet>>,
    /// Health profiles by (set, depends_on).
    pub(crate) profiles: Vec<Arc<Profile>>,
    /// Per zone (the registries' `zone` index).
    pub(crate) zones: Arc<[GlobalZone]>,
}

impl Default for Globals {
    fn default() -> Self {
        Self::new(Arc::from(Vec::new()), Arc::from(Vec::new()))
    }
}

pub(super) fn hash(name_wire: &[u8]) -> u64 {
    FxBuildHasher.hash_one(name_wire)
}

/// The shard of a hash: the top bits of the hash mixed once more (Fibonacci hashing), so
/// that the entries of one shard do not share the bits the shard's own table reads for its
/// buckets (low bits) and control bytes (top 7 bits).
pub(super) fn shard_of(h: u64) -> usize {
    (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize % SHARDS
}

impl Globals {
    /// No registries yet, over these sets and zones.
    pub(crate) fn new(sets: Arc<[ReplicaSet]>, zones: Arc<[GlobalZone]>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::new(Shard::new())).collect(),
            len: 0,
            ents: ents::Ents::default(),
            sets,
            answer_sets: Vec::new(),
            profiles: Vec::new(),
            zones,
        }
    }

    /// The registry whose global name is this lower-cased wire name.
    #[inline]
    pub(crate) fn find(&self, lower_wire: &[u8]) -> Option<&Registry> {
        let h = hash(lower_wire);
        self.shards[shard_of(h)].find(h, |r| r.name_wire() == lower_wire)
    }

    /// The registry with this global name.
    pub(crate) fn find_name(&self, name: &Name) -> Option<&Registry> {
        self.find(&wire_lower(name))
    }

    /// Insert or replace the record for its name; returns the one it replaced. The empty
    /// non-terminals above a new name (up to its zone apex) are counted. Copies one shard
    /// when a snapshot still shares it (and one per ancestor whose count changes).
    pub(crate) fn insert(&mut self, reg: Registry) -> Option<Registry> {
        let h = hash(reg.name_wire());
        let shard = Arc::make_mut(&mut self.shards[shard_of(h)]);
        match shard.find_mut(h, |r| r.name_wire() == reg.name_wire()) {
            // Same name, so the same ancestors: the empty non-terminals stay as they are.
            Some(slot) => Some(std::mem::replace(slot, reg)),
            None => {
                let apex_labels = self
                    .zones
                    .get(usize::from(reg.zone))
                    .map_or(u8::MAX, |z| z.apex_labels);
                self.ents.add(reg.name_wire(), apex_labels);
                shard.insert_unique(h, reg, |r| hash(r.name_wire()));
                self.len += 1;
                None
            }
        }
    }

    /// Remove the record of this lower-cased wire name.
    pub(crate) fn remove(&mut self, lower_wire: &[u8]) -> Option<Registry> {
        let h = hash(lower_wire);
        let shard = Arc::make_mut(&mut self.shards[shard_of(h)]);
        let entry = shard.find_entry(h, |r| r.name_wire() == lower_wire).ok()?;
        let (r, _) = entry.remove();
        self.len -= 1;
        let apex_labels = self
            .zones
            .get(usize::from(r.zone))
            .map_or(u8::MAX, |z| z.apex_labels);
        self.ents.remove(r.name_wire(), apex_labels);
        Some(r)
    }

    /// Whether this lower-cased wire name is an empty non-terminal above a global name.
    pub(crate) fn is_ent(&self, lower_wire: &[u8]) -> bool {
        self.ents.contains(lower_wire)
    }

    /// How many empty non-terminals the global names make.
    pub(crate) fn ent_count(&self) -> usize {
        self.ents.len()
    }

    /// How many registries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// No global names at all (a cheap check before lower-casing the question).
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every registry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Registry> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// The set, answers and profile a record points at.
    pub(crate) fn parts(&self, reg: &Registry) -> Option<(&ReplicaSet, &AnswerSet)> {
        let answers = self.answer_sets.get(reg.answer_set as usize)?;
        let set = self.sets.get(answers.set as usize)?;
        Some((set, answers))
    }
}

/// Lower-cased wire form of a name.
pub(crate) fn wire_lower(name: &Name) -> Vec<u8> {
    let mut v = Vec::with_capacity(MAX_NAME_LEN);
    for label in name.iter() {
        v.push(label.len() as u8);
        v.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    v.push(0);
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn ids(id: u32) -> RegistryIds {
        RegistryIds {
            id,
            profile: 0,
            answer_set: 0,
            zone: 0,
            apex: false,
            answers: 1,
        }
    }

    #[test]
    fn records_keep_key_and_name() {
        let r = Registry::new("contoso", &name("Contoso.Registry.Example."), ids(7));
        assert_eq!(r.key(), "contoso");
        assert_eq!(r.name().to_ascii(), "contoso.registry.example.");
        assert_eq!(
            r.name_wire(),
            &wire_lower(&name("contoso.registry.example."))[..]
        );
        assert!(
            std::mem::size_of::<Registry>() <= 40,
            "{}",
            std::mem::size_of::<Registry>()
        );
    }

    #[test]
    fn insert_find_remove_and_share_shards() {
        let mut g = Globals::default();
        for i in 0..5000u32 {
            assert!(
                g.insert(Registry::new(
                    &format!("r{i}"),
                    &name(&format!("r{i}.example.")),
                    ids(i)
                ))
                .is_none()
            );
        }
        assert_eq!(g.len(), 5000);
        let before = g.clone();
        // Replacing one record copies one shard; the rest stay shared with the old table.
        let replaced = g
            .insert(Registry::new("r7", &name("r7.example."), ids(99)))
            .unwrap();
        assert_eq!(replaced.id, 7);
        let shared = g
            .shards
            .iter()
            .zip(before.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, SHARDS - 1);
        assert_eq!(g.find(&wire_lower(&name("R7.EXAMPLE."))).unwrap().id, 99);
        assert_eq!(
            before.find(&wire_lower(&name("r7.example."))).unwrap().id,
            7
        );
        assert_eq!(
            g.remove(&wire_lower(&name("r7.example."))).unwrap().key(),
            "r7"
        );
        assert!(g.find(&wire_lower(&name("r7.example."))).is_none());
        assert_eq!(g.len(), 4999);
        assert_eq!(g.iter().count(), 4999);
    }
}
