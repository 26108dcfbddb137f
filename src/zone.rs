//! Static zones: RFC 1035 master files loaded into an in-memory tree, and the RFC 1034 §4.3.2
//! lookup an authoritative server performs on it (delegations, CNAME, wildcards, empty
//! non-terminals, NXDOMAIN versus NODATA).
//!
//! Zone files are parsed with hickory-proto's text parser; everything after that — the tree,
//! the lookup and the checks a zone must pass before it is served — is ours, because the
//! hickory `Catalog` answers delegations with AA set and no glue, uses the SOA TTL instead of
//! min(TTL, MINIMUM) for negative answers (RFC 2308 §3) and scans the whole zone for each
//! negative answer.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::ProtoError;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, RrKey};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_proto::serialize::txt::Parser;

use crate::problem::Problem;

/// Longest CNAME chain followed inside our zones.
const MAX_CNAME_CHAIN: usize = 8;

//------------ Zone ----------------------------------------------------------------------------

/// One RRset of a node.
#[derive(Debug)]
pub struct Rrset {
    /// The type.
    pub rtype: RecordType,
    /// The records, in file order.
    pub records: Vec<Record>,
}

/// A name in the zone: its RRsets (none for an empty non-terminal).
#[derive(Debug, Default)]
struct Node {
    rrsets: Vec<Rrset>,
    /// Has NS and is not the apex: a zone cut (RFC 1034 §4.2.1).
    cut: bool,
}

impl Node {
    fn rrset(&self, rtype: RecordType) -> Option<&Rrset> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }
}

/// A loaded, checked zone.
#[derive(Debug)]
pub struct Zone {
    origin: Name,
    file: PathBuf,
    nodes: HashMap<Name, Node>,
    /// The SOA record as it is answered for SOA queries.
    soa: Record,
    /// The SOA with TTL = min(SOA TTL, MINIMUM) for the authority section of negative
    /// answers (RFC 2308 §3).
    negative_soa: Record,
    record_count: usize,
}

impl Zone {
    /// The zone's origin (apex).
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The file the zone was loaded from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The SOA for negative answers (TTL already min(TTL, MINIMUM)).
    pub fn negative_soa(&self) -> &Record {
        &self.negative_soa
    }

    /// SOA serial.
    pub fn serial(&self) -> u32 {
        match &self.soa.data {
            RData::SOA(soa) => soa.serial,
            _ => 0,
        }
    }

    /// Number of records in the zone.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// Whether a name owns records (an empty non-terminal does not).
    pub fn has_data(&self, name: &Name) -> bool {
        self.nodes.get(name).is_some_and(|n| !n.rrsets.is_empty())
    }

    /// The RRset of the given type at a name, if any.
    pub fn rrset(&self, name: &Name, rtype: RecordType) -> Option<&Rrset> {
        self.nodes.get(name).and_then(|n| n.rrset(rtype))
    }

    /// Whether `name` lies at or below a zone cut of this zone (so the zone is not
    /// authoritative for it).
    pub fn is_below_cut(&self, name: &Name) -> bool {
        let origin_labels = self.origin.num_labels();
        let labels = name.num_labels();
        (origin_labels + 1..=labels).any(|n| {
            self.nodes
                .get(&name.trim_to(n.into()))
                .is_some_and(|x| x.cut)
        })
    }

    /// Parse and check a zone file. `default_origin` is used unless the file sets `$ORIGIN`.
    pub fn load(path: &Path, default_origin: &Name) -> Result<Self, Vec<Problem>> {
        let err = |line: Option<usize>, reason: String| Problem {
            file: path.to_path_buf(),
            line,
            reason,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![err(None, format!("cannot read: {e}"))])?;
        let (origin, records) = match Parser::new(
            text.as_str(),
            Some(path.to_path_buf()),
            Some(default_origin.clone()),
        )
        .parse()
        {
            Ok(parsed) => parsed,
            Err(e) => {
                let line = locate_parse_error(&text, path, default_origin);
                return Err(vec![err(line, e.to_string())]);
            }
        };
        Self::build(path, &text, origin, records)
    }

    fn build(
        path: &Path,
        text: &str,
        origin: Name,
        records: BTreeMap<RrKey, hickory_proto::rr::RecordSet>,
    ) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let err = |name: &Name, reason: String| Problem {
            file: path.to_path_buf(),
            line: line_of_owner(text, name, &origin),
            reason,
        };

        let mut nodes: HashMap<Name, Node> = HashMap::new();
        let mut record_count = 0;
        for (key, set) in records {
            let name = Name::from(key.name.clone());
            if !origin.zone_of(&name) {
                problems.push(err(&name, format!("{name} is outside the zone {origin}")));
                continue;
            }
            if set.dns_class() != DNSClass::IN {
                problems.push(err(
                    &name,
                    format!("{name} {}: only class IN is served", set.record_type()),
                ));
                continue;
            }
            let recs: Vec<Record> = set.records_without_rrsigs().cloned().collect();
            record_count += recs.len();
            nodes.entry(name).or_default().rrsets.push(Rrset {
                rtype: key.record_type,
                records: recs,
            });
        }

        // The apex must carry exactly one SOA and at least one NS.
        let apex = nodes.get(&origin);
        let soa = apex
            .and_then(|n| n.rrset(RecordType::SOA))
            .map(|r| r.records.as_slice());
        let (soa, negative_soa) = match soa {
            Some([soa]) => match &soa.data {
                RData::SOA(data) => {
                    let mut negative = soa.clone();
                    negative.ttl = soa.ttl.min(data.minimum);
                    (Some(soa.clone()), Some(negative))
                }
                _ => (None, None),
            },
            Some(_) => {
                problems.push(err(&origin, "more than one SOA record at the apex".into()));
                (None, None)
            }
            None => {
                problems.push(err(&origin, format!("no SOA record at the apex {origin}")));
                (None, None)
            }
        };
        if apex.and_then(|n| n.rrset(RecordType::NS)).is_none() {
            problems.push(err(&origin, format!("no NS records at the apex {origin}")));
        }

        // RFC 1034 §3.6.2 / RFC 2181 §10.1: a CNAME owner has no other data; no CNAME at apex.
        for (name, node) in &nodes {
            if node.rrset(RecordType::CNAME).is_some() {
                if node.rrsets.len() > 1 {
                    problems.push(err(name, format!("{name} has a CNAME and other data")));
                }
                if *name == origin {
                    problems.push(err(name, "CNAME at the zone apex".into()));
                }
                if node
                    .rrset(RecordType::CNAME)
                    .is_some_and(|r| r.records.len() > 1)
                {
                    problems.push(err(name, format!("{name} has more than one CNAME")));
                }
            }
            if node.rrset(RecordType::SOA).is_some() && *name != origin {
                problems.push(err(
                    name,
                    format!("SOA record at {name}, which is not the apex"),
                ));
            }
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(problems);
        }

        // Mark zone cuts and add empty non-terminals for every ancestor up to the apex.
        let names: Vec<Name> = nodes.keys().cloned().collect();
        for name in names {
            if name != origin
                && let Some(node) = nodes.get_mut(&name)
            {
                node.cut = node.rrset(RecordType::NS).is_some();
            }
            let mut parent = name.base_name();
            while origin.zone_of(&parent) && parent != name {
                nodes.entry(parent.clone()).or_default();
                if parent == origin {
                    break;
                }
                parent = parent.base_name();
            }
        }

        match (soa, negative_soa) {
            (Some(soa), Some(negative_soa)) => Ok(Self {
                origin,
                file: path.to_path_buf(),
                nodes,
                soa,
                negative_soa,
                record_count,
            }),
            _ => Err(vec![Problem {
                file: path.to_path_buf(),
                line: None,
                reason: "the apex SOA record is malformed".into(),
            }]),
        }
    }
}

//------------ ZoneSet -------------------------------------------------------------------------

/// The outcome of a lookup, borrowing records from the zones.
#[derive(Debug)]
pub enum Answer<'z> {
    /// Authoritative data (possibly through a CNAME chain). `rcode_nx` is set when the chain
    /// ends in a name that does not exist (RFC 6604), `nodata` when it ends in a name without
    /// the type; `soa` is then the negative SOA of the zone where the chain ended.
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
pub enum Owner<'z> {
    /// The record's own owner name.
    Own,
    /// A wildcard-synthesised record: written with this owner (RFC 4592 §3.4.2).
    Synthesised(&'z Name),
    /// The query name, exactly as the client sent it.
    Query,
}

/// Emit one record. The owner is written as a pointer to the question when it is the query
/// name, so the answer repeats the client's letter case and costs two octets.
pub fn emit_record(
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

/// Every zone served, keyed by origin.
#[derive(Debug, Default)]
pub struct ZoneSet {
    zones: HashMap<Name, Arc<Zone>>,
}

impl ZoneSet {
    /// Load every `*.zone` file in `dir`. The origin is the file's `$ORIGIN`, or its name
    /// without `.zone`. Returns every problem found, across all files.
    pub fn load_dir(dir: &Path) -> Result<Self, Vec<Problem>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![Problem {
                file: dir.to_path_buf(),
                line: None,
                reason: format!("cannot read the zones directory: {e}"),
            }]
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "zone") && p.is_file())
            .collect();
        files.sort();
        let mut set = Self::default();
        let mut problems = Vec::new();
        for file in files {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let default_origin = match Name::from_ascii(format!("{}.", stem.trim_end_matches('.')))
            {
                Ok(n) => n,
                Err(e) => {
                    problems.push(Problem {
                        file: file.clone(),
                        line: None,
                        reason: format!("the file name is not a domain name: {e}"),
                    });
                    continue;
                }
            };
            match Zone::load(&file, &default_origin) {
                Ok(zone) => {
                    if let Some(other) = set.zones.get(zone.origin()) {
                        problems.push(Problem {
                            file: file.clone(),
                            line: None,
                            reason: format!(
                                "zone {} is also loaded from {}",
                                zone.origin(),
                                other.file().display()
                            ),
                        });
                    } else {
                        set.zones.insert(zone.origin().clone(), Arc::new(zone));
                    }
                }
                Err(mut errs) => problems.append(&mut errs),
            }
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(problems)
        }
    }

    /// Build a set from zones already loaded (tests, reload).
    pub fn from_zones(zones: impl IntoIterator<Item = Zone>) -> Self {
        Self {
            zones: zones
                .into_iter()
                .map(|z| (z.origin().clone(), Arc::new(z)))
                .collect(),
        }
    }

    /// The zones, in no particular order.
    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values()
    }

    /// Number of zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// No zones at all.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The closest enclosing zone of `name` (the most labels in common).
    pub fn find(&self, name: &Name) -> Option<&Zone> {
        let labels = name.num_labels();
        (0..=labels)
            .rev()
            .find_map(|n| self.zones.get(&name.trim_to(n.into())).map(|z| &**z))
    }

    /// Resolve `qname`/`qtype` in our zones (RFC 1034 §4.3.2 steps 2–6, without recursion).
    /// `None` when no zone encloses the name (the caller answers REFUSED).
    pub fn lookup<'z>(
        &'z self,
        qname: &'z Name,
        qtype: RecordType,
    ) -> Option<(&'z Zone, Answer<'z>)> {
        let first_zone = self.find(qname)?;
        let mut answers: Vec<(&'z Record, Owner<'z>)> = Vec::new();
        let mut additionals: Vec<&'z Record> = Vec::new();
        let mut name: &'z Name = qname;
        let mut zone = first_zone;
        let mut owner_is_query = true;

        for _ in 0..=MAX_CNAME_CHAIN {
            let step = zone.step(name, qtype);
            match step {
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
    fn step<'z>(&'z self, name: &'z Name, qtype: RecordType) -> Step<'z> {
        let origin_labels = usize::from(self.origin.num_labels());
        let labels = usize::from(name.num_labels());

        // Walk down from the apex looking for a zone cut (RFC 1034 §4.3.2 step 3b), and find
        // the closest encloser on the way.
        let mut closest = origin_labels;
        for n in origin_labels + 1..=labels {
            let ancestor = name.trim_to(n);
            let Some(node) = self.nodes.get(&ancestor) else {
                break;
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
            let Some(node) = self.nodes.get(name) else {
                return Step::NxDomain;
            };
            return Self::from_node(node, qtype, Owner::Own);
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

//------------ Error lines ---------------------------------------------------------------------

/// hickory's zone parser reports no line numbers. Find the line of the first record that
/// makes the parse fail: parse growing prefixes of the file, cut only where parentheses are
/// balanced and no quoted string is open, and binary-search the first failing cut.
fn locate_parse_error(text: &str, path: &Path, origin: &Name) -> Option<usize> {
    let cuts = record_boundaries(text);
    let fails = |end: usize| {
        let prefix = &text[..end];
        Parser::new(prefix, Some(path.to_path_buf()), Some(origin.clone()))
            .parse()
            .is_err()
    };
    // Find the smallest i such that the prefix ending at cuts[i] fails.
    let (mut lo, mut hi) = (0usize, cuts.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(cuts[mid].1) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    cuts.get(lo).map(|(start_line, _)| *start_line)
}

/// (first line of the record, byte offset just past the record) for each logical record.
fn record_boundaries(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut depth, mut in_quote, mut in_comment, mut escaped) = (0i32, false, false, false);
    let mut line = 1usize;
    let mut record_start_line = 1usize;
    let mut record_has_content = false;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            in_comment = false;
            if depth <= 0 && !in_quote {
                if record_has_content {
                    out.push((record_start_line, i + 1));
                }
                record_has_content = false;
                record_start_line = line + 1;
            }
            line += 1;
            continue;
        }
        if in_comment {
            continue;
        }
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => in_quote = !in_quote,
            ';' if !in_quote => in_comment = true,
            '(' if !in_quote => depth += 1,
            ')' if !in_quote => depth -= 1,
            _ => {}
        }
        if !c.is_whitespace() && !in_comment {
            record_has_content = true;
        }
    }
    if record_has_content {
        out.push((record_start_line, text.len()));
    }
    out
}

/// Best-effort line of the first record owned by `name`, for semantic errors.
fn line_of_owner(text: &str, name: &Name, origin: &Name) -> Option<usize> {
    let full = name.to_ascii().to_ascii_lowercase();
    let relative = if name == origin {
        "@".to_string()
    } else {
        full.trim_end_matches(&format!(".{}", origin.to_ascii().to_ascii_lowercase()))
            .to_string()
    };
    text.lines()
        .position(|l| {
            let first = l
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            !l.starts_with([' ', '\t'])
                && (first == full || first == relative || first == full.trim_end_matches('.'))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (_, a) = set.lookup(&q, RecordType::A).expect("in zone");
        assert!(
            matches!(a, Answer::Authoritative { ref answers, nxdomain: false, soa: None, .. } if answers.len() == 1)
        );

        let q = n("alias.example.");
        let (_, a) = set.lookup(&q, RecordType::A).expect("in zone");
        let Answer::Authoritative { answers, .. } = a else {
            panic!("{a:?}")
        };
        assert_eq!(answers.len(), 2);

        let q = n("loop1.example.");
        let (_, a) = set.lookup(&q, RecordType::A).expect("in zone");
        let Answer::Authoritative { answers, .. } = a else {
            panic!("{a:?}")
        };
        assert_eq!(answers.len(), 2, "loop stops");

        let q = n("out.example.");
        let (_, a) = set.lookup(&q, RecordType::A).expect("in zone");
        let Answer::Authoritative { answers, soa, .. } = a else {
            panic!("{a:?}")
        };
        assert_eq!((answers.len(), soa.is_none()), (1, true));

        // RFC 4592 §2.2: the wildcard under the closest encloser covers several labels...
        let q = n("x.y.wild.example.");
        let (_, a) = set.lookup(&q, RecordType::A).expect("in zone");
        assert!(
            matches!(a, Answer::Authoritative { nxdomain: false, ref answers, .. } if answers.len() == 1),
            "{a:?}"
        );
        // ...but not below an existing name (z.wild), whose closest encloser has no wildcard.
        let q = n("x.z.wild.example.");
        let (_, a) = set.lookup(&q, RecordType::A).expect("in zone");
        assert!(
            matches!(a, Answer::Authoritative { nxdomain: true, .. }),
            "{a:?}"
        );
        let q = n("x.wild.example.");
        let (_, a) = set.lookup(&q, RecordType::A).expect("in zone");
        let Answer::Authoritative { answers, .. } = a else {
            panic!("{a:?}")
        };
        assert!(matches!(answers[0].1, Owner::Query));

        // Empty non-terminal: NODATA, not NXDOMAIN.
        let q = n("b.c.example.");
        let (_, a) = set.lookup(&q, RecordType::A).expect("in zone");
        assert!(matches!(
            a,
            Answer::Authoritative {
                nxdomain: false,
                soa: Some(_),
                ..
            }
        ));
        let q = n("nope.example.");
        let (_, a) = set.lookup(&q, RecordType::A).expect("in zone");
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
            let (_, a) = set.lookup(&q, RecordType::A).expect("in zone");
            let Answer::Referral { ns, glue } = a else {
                panic!("{name}: {a:?}")
            };
            assert_eq!((ns.len(), glue.len()), (1, 1), "{name}");
        }
        let q = n("sub.example.");
        let (_, a) = set.lookup(&q, RecordType::DS).expect("in zone");
        assert!(
            matches!(a, Answer::Authoritative { soa: Some(_), .. }),
            "DS at the cut is the parent's"
        );

        let q = n("example.");
        let (_, a) = set.lookup(&q, RecordType::NS).expect("apex");
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

        assert!(set.lookup(&n("xexample."), RecordType::A).is_none());
        assert!(set.lookup(&n("example.com."), RecordType::A).is_none());
    }
}
