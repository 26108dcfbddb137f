//! Static zones: RFC 1035 master files loaded into an in-memory tree, and the RFC 1034 §4.3.2
//! lookup an authoritative server performs on it (delegations, CNAME, wildcards, empty
//! non-terminals, NXDOMAIN versus NODATA).
//!
//! Zone files are parsed with hickory-proto's text parser; everything after that — the tree,
//! the lookup and the checks a zone must pass before it is served — is ours, because the
//! hickory `Catalog` answers delegations with AA set and no glue, uses the SOA TTL instead of
//! min(TTL, MINIMUM) for negative answers (RFC 2308 §3) and scans the whole zone for each
//! negative answer.
//!
//! Here: the model (zone, node, RRset, the set of zones) and the one resource-record emitter;
//! `load` (parsing, the checks, error lines) and `lookup` (RFC 1034 §4.3.2) beside it.

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::ProtoError;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

mod fast;
mod load;
mod lookup;
mod signed;

pub(crate) use fast::Fast;

pub(crate) use lookup::{NoOutside, Outside, OutsideNames};

/// Longest CNAME chain followed inside our zones.
const MAX_CNAME_CHAIN: usize = 8;

//------------ Zone ----------------------------------------------------------------------------

/// One RRset of a node.
#[derive(Clone, Debug)]
pub(crate) struct Rrset {
    /// The type.
    pub(crate) rtype: RecordType,
    /// The records, in file order.
    pub(crate) records: Vec<Record>,
    /// Its RRSIGs, when the zone is signed and the RRset is authoritative data.
    pub(crate) sigs: Vec<Record>,
}

/// A name in the zone: its RRsets (none for an empty non-terminal).
#[derive(Clone, Debug, Default)]
struct Node {
    rrsets: Vec<Rrset>,
    /// Has NS and is not the apex: a zone cut (RFC 1034 §4.2.1).
    cut: bool,
    /// In a signed zone: the compact-denial NSEC at this name and its RRSIGs (RFC 9824),
    /// for NODATA answers and insecure referrals.
    nsec: Vec<Record>,
}

impl Node {
    fn rrset(&self, rtype: RecordType) -> Option<&Rrset> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }
}

/// A loaded, checked zone.
#[derive(Clone, Debug)]
pub(crate) struct Zone {
    origin: Name,
    file: PathBuf,
    nodes: HashMap<Name, Node>,
    /// The SOA record as it is answered for SOA queries.
    soa: Record,
    /// The SOA with TTL = min(SOA TTL, MINIMUM) for the authority section of negative
    /// answers (RFC 2308 §3).
    negative_soa: Record,
    record_count: usize,
    /// Its signer, when `[dnssec]` signs it.
    signer: Option<std::sync::Arc<crate::dnssec::sign::ZoneSigner>>,
    /// RRSIGs of the SOA with the negative SOA's TTL.
    negative_soa_sigs: Vec<Record>,
    /// When it was signed, and the DNSKEY TTL it was signed with.
    signed_at: Option<(std::time::SystemTime, u32)>,
}

impl Zone {
    /// The zone's origin (apex).
    pub(crate) fn origin(&self) -> &Name {
        &self.origin
    }

    /// The file the zone was loaded from.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// The SOA for negative answers (TTL already min(TTL, MINIMUM)).
    pub(crate) fn negative_soa(&self) -> &Record {
        &self.negative_soa
    }

    /// SOA serial.
    pub(crate) fn serial(&self) -> u32 {
        match &self.soa.data {
            RData::SOA(soa) => soa.serial,
            _ => 0,
        }
    }

    /// Number of records in the zone.
    pub(crate) fn record_count(&self) -> usize {
        self.record_count
    }

    /// Whether a name owns records (an empty non-terminal does not).
    pub(crate) fn has_data(&self, name: &Name) -> bool {
        self.nodes.get(name).is_some_and(|n| !n.rrsets.is_empty())
    }

    /// Whether a name owns an RRset of this type.
    pub(crate) fn has_rrset(&self, name: &Name, rtype: RecordType) -> bool {
        self.nodes
            .get(name)
            .is_some_and(|n| n.rrset(rtype).is_some())
    }

    /// Whether `name` lies at or below a zone cut of this zone (so the zone is not
    /// authoritative for it).
    pub(crate) fn is_below_cut(&self, name: &Name) -> bool {
        let origin_labels = self.origin.num_labels();
        let labels = name.num_labels();
        (origin_labels + 1..=labels).any(|n| {
            self.nodes
                .get(&name.trim_to(n.into()))
                .is_some_and(|x| x.cut)
        })
    }
}

//------------ ZoneSet -------------------------------------------------------------------------

/// The outcome of a lookup, borrowing records from the zones.
#[derive(Debug)]
pub(crate) enum Answer<'z> {
    /// Authoritative data (possibly through a CNAME chain). `nxdomain` is set when the chain
    /// ends in a name that does not exist (RFC 6604); `soa` is the negative SOA of the zone
    /// where the chain ended when it ends in no data.
    Authoritative {
        /// Answer records, each with the owner to write (None = the record's own owner;
        /// Some(()) = the query name, for wildcard-synthesised records).
        answers: Vec<(&'z Record, Owner<'z>)>,
        /// Negative SOA for the authority section, when the final name had no data.
        soa: Option<&'z Record>,
        /// The final name does not exist.
        nxdomain: bool,
        /// Additional-section records (A/AAAA for NS, MX and SRV targets in our zones).
        additionals: Vec<&'z Record>,
    },
    /// The query name, or the end of a CNAME chain from it, is a global name: the caller
    /// answers `chain` followed by the global name's per-client records.
    Global {
        /// The CNAME records that led there (empty when the query name itself is global).
        chain: Vec<(&'z Record, Owner<'z>)>,
        /// The global name (as written in the last CNAME's target, or the query name).
        name: &'z Name,
    },
    /// A referral to a delegated child zone: NS in authority, glue in additional, AA unset.
    Referral {
        /// The NS RRset at the cut.
        ns: &'z [Record],
        /// Glue addresses for the NS targets.
        glue: Vec<&'z Record>,
    },
}

/// Which owner name to write for an answer record.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Owner<'z> {
    /// The record's own owner name.
    Own,
    /// A wildcard-synthesised record: written with this owner (RFC 4592 §3.4.2).
    Synthesised(&'z Name),
    /// The query name, exactly as the client sent it.
    Query,
}

/// Emit one record. The owner is written as a pointer to the question when it is the query
/// name, so the answer repeats the client's letter case and costs two octets.
pub(crate) fn emit_record(
    enc: &mut BinEncoder<'_>,
    rec: &Record,
    owner: Owner<'_>,
) -> Result<(), ProtoError> {
    match owner {
        Owner::Query => enc.emit_u16(0xc000 | crate::wire::HEADER_LEN as u16)?,
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

/// Every zone served, keyed by origin, and the answers prepared from them.
#[derive(Debug, Default)]
pub(crate) struct ZoneSet {
    zones: HashMap<Name, Arc<Zone>>,
    fast: fast::FastTable,
    /// Some zone is signed: DO-bit queries take the signed path.
    signed: bool,
}

impl ZoneSet {
    /// Build a set from zones already loaded (tests, the fuzzing seam).
    pub(crate) fn from_zones(zones: impl IntoIterator<Item = Zone>) -> Self {
        let zones = zones
            .into_iter()
            .map(|z| (z.origin().clone(), Arc::new(z)))
            .collect();
        Self::prepared(zones)
    }

    /// The set of `zones`, with its prepared answers.
    fn prepared(zones: HashMap<Name, Arc<Zone>>) -> Self {
        let mut set = Self {
            zones,
            fast: fast::FastTable::default(),
            signed: false,
        };
        set.signed = set.any_signed();
        set.fast = fast::FastTable::build(&set);
        set
    }

    /// The same zones without prepared answers: every query takes the full lookup (tests
    /// compare the two).
    #[cfg(test)]
    pub(crate) fn without_prepared(&self) -> Self {
        Self {
            zones: self.zones.clone(),
            fast: fast::FastTable::default(),
            signed: self.signed,
        }
    }

    /// The answer prepared at load for `qname` (lower-cased wire form) and `qtype`, when it
    /// is a name of the zone files with no CNAME to chase, or NXDOMAIN without a wildcard;
    /// None: ask [`lookup`](Self::lookup), which gives the same answer for these.
    #[inline]
    pub(crate) fn fast(
        &self,
        qname: &[u8],
        qtype: u16,
        outside: &dyn OutsideNames,
        dnssec_ok: bool,
    ) -> Option<Fast<'_>> {
        self.fast.get(qname, qtype, outside, dnssec_ok)
    }

    /// Whether some zone is signed (a load-time flag: one load per query).
    #[inline]
    pub(crate) fn signed(&self) -> bool {
        self.signed
    }

    /// The zones, in no particular order.
    pub(crate) fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values()
    }

    /// Number of zones.
    pub(crate) fn len(&self) -> usize {
        self.zones.len()
    }

    /// The closest enclosing zone of `name` (the most labels in common).
    pub(crate) fn find(&self, name: &Name) -> Option<&Zone> {
        let labels = name.num_labels();
        (0..=labels)
            .rev()
            .find_map(|n| self.zones.get(&name.trim_to(n.into())).map(|z| &**z))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Problem;

    fn zone(text: &str) -> Result<Zone, Vec<Problem>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("example.zone");
        std::fs::write(&path, text).expect("write");
        Zone::load(&path, &Name::from_ascii("example.").expect("name"))
    }

    const BASE: &str = "$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\n@ NS ns2\nns1 A 192.0.2.1\nns2 A 192.0.2.2\n";

    fn n(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    #[test]
    fn parse_error_has_line() {
        let errs = zone(&format!(
            "{BASE}www A 192.0.2.10\nbad A not-an-address\nok A 192.0.2.11\n"
        ))
        .expect_err("must fail");
        assert_eq!(errs[0].line, Some(8), "{errs:?}");
    }

    #[test]
    fn parse_error_in_multiline_record() {
        let text = "$TTL 300\n@ IN SOA ns1 hostmaster (\n 1 3600 600\n 86400 60 )\n@ NS ns1\nns1 A 192.0.2.1\nx MX ten mail\n";
        let errs = zone(text).expect_err("must fail");
        assert_eq!(errs[0].line, Some(7), "{errs:?}");
    }

    #[test]
    fn semantic_errors() {
        let errs = zone("$TTL 300\n@ NS ns1\nns1 A 192.0.2.1\n").expect_err("no soa");
        assert!(errs.iter().any(|e| e.reason.contains("no SOA")), "{errs:?}");
        let errs = zone(&format!("{BASE}www CNAME x\nwww A 192.0.2.3\n")).expect_err("cname+a");
        assert!(
            errs.iter()
                .any(|e| e.reason.contains("CNAME and other data") && e.line == Some(7)),
            "{errs:?}"
        );
        let errs = zone(&format!("{BASE}other.test. A 192.0.2.3\n")).expect_err("out of zone");
        assert!(
            errs.iter().any(|e| e.reason.contains("outside the zone")),
            "{errs:?}"
        );
    }

    #[test]
    fn lookups() {
        let z = zone(&format!(
            "{BASE}www A 192.0.2.10\nalias CNAME www\nloop1 CNAME loop2\nloop2 CNAME loop1\n*.wild A 192.0.2.20\nz.wild A 192.0.2.21\na.b.c A 192.0.2.30\nsub NS ns.sub\nns.sub A 192.0.2.40\nout CNAME www.elsewhere.test.\n"
        ))
        .expect("zone");
        let set = ZoneSet::from_zones([z]);

        let q = n("www.example.");
        let (_, a) = set.lookup(&q, RecordType::A, &NoOutside).expect("in zone");
        assert!(
            matches!(a, Answer::Authoritative { ref answers, nxdomain: false, soa: None, .. } if answers.len() == 1)
        );

        let q = n("alias.example.");
        let (_, a) = set.lookup(&q, RecordType::A, &NoOutside).expect("in zone");
        let Answer::Authoritative { answers, .. } = a else {
            panic!("{a:?}")
        };
        assert_eq!(answers.len(), 2);

        let q = n("loop1.example.");
        let (_, a) = set.lookup(&q, RecordType::A, &NoOutside).expect("in zone");
        let Answer::Authoritative { answers, .. } = a else {
            panic!("{a:?}")
        };
        assert_eq!(answers.len(), 2, "loop stops");

        let q = n("out.example.");
        let (_, a) = set.lookup(&q, RecordType::A, &NoOutside).expect("in zone");
        let Answer::Authoritative { answers, soa, .. } = a else {
            panic!("{a:?}")
        };
        assert_eq!((answers.len(), soa.is_none()), (1, true));

        // RFC 4592 §2.2: the wildcard under the closest encloser covers several labels...
        let q = n("x.y.wild.example.");
        let (_, a) = set.lookup(&q, RecordType::A, &NoOutside).expect("in zone");
        assert!(
            matches!(a, Answer::Authoritative { nxdomain: false, ref answers, .. } if answers.len() == 1),
            "{a:?}"
        );
        // ...but not below an existing name (z.wild), whose closest encloser has no wildcard.
        let q = n("x.z.wild.example.");
        let (_, a) = set.lookup(&q, RecordType::A, &NoOutside).expect("in zone");
        assert!(
            matches!(a, Answer::Authoritative { nxdomain: true, .. }),
            "{a:?}"
        );
        let q = n("x.wild.example.");
        let (_, a) = set.lookup(&q, RecordType::A, &NoOutside).expect("in zone");
        let Answer::Authoritative { answers, .. } = a else {
            panic!("{a:?}")
        };
        assert!(matches!(answers[0].1, Owner::Query));

        // Empty non-terminal: NODATA, not NXDOMAIN.
        let q = n("b.c.example.");
        let (_, a) = set.lookup(&q, RecordType::A, &NoOutside).expect("in zone");
        assert!(matches!(
            a,
            Answer::Authoritative {
                nxdomain: false,
                soa: Some(_),
                ..
            }
        ));
        let q = n("nope.example.");
        let (_, a) = set.lookup(&q, RecordType::A, &NoOutside).expect("in zone");
        let Answer::Authoritative {
            nxdomain: true,
            soa: Some(soa),
            ..
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(soa.ttl, 60, "min(300, MINIMUM 60)");

        for name in ["sub.example.", "host.sub.example.", "ns.sub.example."] {
            let q = n(name);
            let (_, a) = set.lookup(&q, RecordType::A, &NoOutside).expect("in zone");
            let Answer::Referral { ns, glue } = a else {
                panic!("{name}: {a:?}")
            };
            assert_eq!((ns.len(), glue.len()), (1, 1), "{name}");
        }
        let q = n("sub.example.");
        let (_, a) = set.lookup(&q, RecordType::DS, &NoOutside).expect("in zone");
        assert!(
            matches!(a, Answer::Authoritative { soa: Some(_), .. }),
            "DS at the cut is the parent's"
        );

        let q = n("example.");
        let (_, a) = set.lookup(&q, RecordType::NS, &NoOutside).expect("apex");
        let Answer::Authoritative {
            answers,
            additionals,
            ..
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(
            (answers.len(), additionals.len()),
            (2, 2),
            "glue for both NS"
        );

        assert!(
            set.lookup(&n("xexample."), RecordType::A, &NoOutside)
                .is_none()
        );
        assert!(
            set.lookup(&n("example.com."), RecordType::A, &NoOutside)
                .is_none()
        );
    }

    /// Names beside the zone data: global names and empty non-terminals, by name.
    struct Beside(&'static [&'static str], &'static [&'static str]);

    impl OutsideNames for Beside {
        fn outside(&self, name: &Name) -> Option<Outside> {
            let name = name.to_ascii().to_ascii_lowercase();
            if self.0.contains(&name.as_str()) {
                Some(Outside::Global)
            } else if self.1.contains(&name.as_str()) {
                Some(Outside::Ent)
            } else {
                None
            }
        }
        fn outside_wire(&self, wire: &[u8]) -> Option<Outside> {
            use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
            self.outside(&Name::read(&mut BinDecoder::new(wire)).ok()?)
        }
    }

    #[test]
    fn global_names_are_part_of_the_tree() {
        let z = zone(&format!(
            "{BASE}alias CNAME g\nchain CNAME alias\n* A 192.0.2.98\n@ TXT apex\nus TXT zone\n"
        ))
        .expect("zone");
        let set = ZoneSet::from_zones([z]);
        let beside = Beside(
            &["g.example.", "fab.eu.example.", "x.us.example."],
            &["eu.example.", "us.example."],
        );
        let ask = |name: &str, t: RecordType| {
            let q = n(name);
            let (_, a) = set.lookup(&q, t, &beside).expect("in zone");
            format!("{a:?}")
        };
        let global_at = |name: &str, t: RecordType, chain: usize, target: &str| {
            let q = n(name);
            let (_, a) = set.lookup(&q, t, &beside).expect("in zone");
            let Answer::Global { chain: c, name: g } = a else {
                panic!("{name} {t}: {a:?}")
            };
            assert_eq!(
                (c.len(), g.to_ascii()),
                (chain, target.to_string()),
                "{name} {t}"
            );
        };
        let global = |name: &str, t: RecordType, chain: usize| {
            global_at(name, t, chain, "g.example.");
        };
        // A chain that reaches a global name ends there, for every type the alias does not own.
        global("alias.example.", RecordType::A, 1);
        global("chain.example.", RecordType::AAAA, 2);
        global("alias.example.", RecordType::TXT, 1);
        // The alias's own CNAME (and ANY, which it matches) is the answer, as for any alias.
        for t in [RecordType::CNAME, RecordType::ANY] {
            let q = n("alias.example.");
            let (_, a) = set.lookup(&q, t, &beside).expect("in zone");
            assert!(
                matches!(&a, Answer::Authoritative { answers, soa: None, .. } if answers.len() == 1),
                "{t}: {a:?}"
            );
        }
        // The ancestor of a global name is an empty non-terminal: NODATA, not the wildcard.
        let q = n("eu.example.");
        let (_, a) = set.lookup(&q, RecordType::A, &beside).expect("in zone");
        assert!(
            matches!(&a, Answer::Authoritative { answers, soa: Some(_), nxdomain: false, .. } if answers.is_empty()),
            "{a:?}"
        );
        // Below a global name or an ENT, the closest encloser is that name, which has no
        // wildcard child (RFC 4592 §2.2.1): NXDOMAIN.
        for name in ["x.g.example.", "x.eu.example.", "y.x.eu.example."] {
            assert!(
                ask(name, RecordType::A).contains("nxdomain: true"),
                "{name}"
            );
        }
        // Where the zone file has records at an ENT above a global name, they are the answer.
        let q = n("us.example.");
        let (_, a) = set.lookup(&q, RecordType::TXT, &beside).expect("in zone");
        assert!(
            matches!(&a, Answer::Authoritative { answers, .. } if answers.len() == 1 && answers[0].0.record_type() == RecordType::TXT),
            "{a:?}"
        );
        assert!(ask("us.example.", RecordType::A).contains("nxdomain: false, additionals: []"));
        global_at("x.us.example.", RecordType::A, 0, "x.us.example.");
        // Elsewhere the wildcard still synthesises, and the zone's own ENT is still NODATA.
        assert!(ask("other.example.", RecordType::A).contains("192.0.2.98"));
        assert!(ask("b.c.example.", RecordType::A).contains("nxdomain: false"));
        // Without the names beside the zone, the alias ends in the wildcard (today's bug).
        let q = n("alias.example.");
        let (_, a) = set.lookup(&q, RecordType::A, &NoOutside).expect("in zone");
        assert!(format!("{a:?}").contains("192.0.2.98"), "{a:?}");
    }

    #[test]
    fn a_global_name_at_the_apex_owns_only_the_address_types() {
        let z = zone(&format!("{BASE}alias CNAME example.\n@ TXT apex\n")).expect("zone");
        let set = ZoneSet::from_zones([z]);
        let beside = Beside(&["example."], &[]);
        for t in [RecordType::A, RecordType::AAAA] {
            let q = n("alias.example.");
            let (_, a) = set.lookup(&q, t, &beside).expect("in zone");
            assert!(
                matches!(&a, Answer::Global { chain, .. } if chain.len() == 1),
                "{t}: {a:?}"
            );
        }
        // SOA, NS and TXT stay zone data, through the alias too.
        for (name, t) in [
            ("example.", RecordType::SOA),
            ("example.", RecordType::NS),
            ("example.", RecordType::TXT),
            ("alias.example.", RecordType::TXT),
        ] {
            let q = n(name);
            let (_, a) = set.lookup(&q, t, &beside).expect("in zone");
            assert!(
                matches!(&a, Answer::Authoritative { soa: None, .. }),
                "{name} {t}: {a:?}"
            );
        }
        // MX: the apex has none, NODATA.
        let q = n("example.");
        let (_, a) = set.lookup(&q, RecordType::MX, &beside).expect("in zone");
        assert!(matches!(
            &a,
            Answer::Authoritative {
                soa: Some(_),
                nxdomain: false,
                ..
            }
        ));
    }
}
