//! Loading: a zone file parsed with hickory's text parser and checked before it is served,
//! every problem with its file and line (hickory's parser gives none: `locate_parse_error`
//! finds it).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, RrKey};
use hickory_proto::serialize::txt::Parser;

use super::{Node, Rrset, Zone, ZoneSet};
use crate::problem::Problem;

impl Zone {
    /// Parse and check a zone file. `default_origin` is used unless the file sets `$ORIGIN`.
    pub(crate) fn load(path: &Path, default_origin: &Name) -> Result<Self, Vec<Problem>> {
        let err = |line: Option<usize>, reason: String| Problem {
            file: path.to_path_buf(),
            line,
            reason,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![err(None, format!("cannot read: {e}"))])?;
        Self::parse(path, &text, default_origin)
    }

    /// Parse and check zone file text; `path` names it in problems (nothing is read from it).
    pub(crate) fn parse(
        path: &Path,
        text: &str,
        default_origin: &Name,
    ) -> Result<Self, Vec<Problem>> {
        let err = |line: Option<usize>, reason: String| Problem {
            file: path.to_path_buf(),
            line,
            reason,
        };
        let (origin, records) =
            match Parser::new(text, Some(path.to_path_buf()), Some(default_origin.clone())).parse()
            {
                Ok(parsed) => parsed,
                Err(e) => {
                    let line = locate_parse_error(text, path, default_origin);
                    return Err(vec![err(line, e.to_string())]);
                }
            };
        Self::build(path, text, origin, records)
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

        let mut nodes: HashMap<Name, Node> = HashMap::default();
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
                sigs: Vec::new(),
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
                signer: None,
                negative_soa_sigs: Vec::new(),
                signed_at: None,
            }),
            _ => Err(vec![Problem {
                file: path.to_path_buf(),
                line: None,
                reason: "the apex SOA record is malformed".into(),
            }]),
        }
    }
}

impl ZoneSet {
    /// Load every `*.zone` file in `dir`, signing the zones `dnssec` names (a problem in
    /// `[dnssec]` is one of the config file `config`). The origin is the file's `$ORIGIN`,
    /// or its name without `.zone`. Returns every problem found, across all files.
    pub(crate) fn load_dir(
        dir: &Path,
        dnssec: Option<&crate::config::dnssec::DnssecConfig>,
        config: &Path,
    ) -> Result<Self, Vec<Problem>> {
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
        if !problems.is_empty() {
            return Err(problems);
        }
        if let Some(d) = dnssec {
            set.sign(d, config, std::time::SystemTime::now())?;
        }
        Ok(Self::prepared(set.zones))
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
