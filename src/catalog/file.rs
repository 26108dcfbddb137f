//! The registry catalog on disk: the catalog file (CSV, one registry per line, written by hand
//! or generated) and its journal (JSON lines, appended by the admin API), parsed into
//! [`CatalogEntry`]s. Parsing is pure: it takes the text, so the caller decides how to read the
//! file. The only I/O here is [`Journal`], which appends.
//!
//! # The catalog file
//!
//! ```text
//! # comment lines and blank lines are ignored anywhere
//! key,name,template,depends_on,ttl,answers
//! contoso,contoso.registry.example.,eu3,storage-07;auth,5s,1
//! fabrikam,fabrikam.registry.example,eu3,,,
//! ```
//!
//! - A line whose first non-blank character is `#` is a comment. Comments and blank lines are
//!   ignored anywhere, but they count for line numbers.
//! - The first other line must be the header, exactly [`HEADER`] (surrounding whitespace
//!   trimmed). A file without a header is a problem, so an empty or truncated file never
//!   quietly means "no registries".
//! - Every later line is one registry: exactly six comma-separated fields, each trimmed. There
//!   is no quoting, so a field cannot contain a comma.
//!
//! | field | rule | when empty |
//! | --- | --- | --- |
//! | `key` | at most 63 ASCII letters, digits, `-`, `_` and `.`; unique | a problem |
//! | `name` | a domain name (`Name::from_ascii`), made absolute; not the root; at most 255 octets in wire form; unique, ignoring letter case | a problem |
//! | `template` | ASCII letters, digits, `-`, `_` and `.` | a problem |
//! | `depends_on` | `;`-separated dependency names, each trimmed, non-empty and without whitespace; sorted and deduplicated | `None` |
//! | `ttl` | a duration such as `5s` or `1m` (humantime), whole seconds, at most 1h | `None` |
//! | `answers` | an integer from 1 to 8 | `None` |
//!
//! Uniqueness is checked among the lines that are otherwise valid; a duplicate names the line
//! that came first.
//!
//! # The journal
//!
//! One JSON object per line, each line ended by `\n`, written by [`journal_line`]:
//!
//! ```text
//! {"op":"put","key":"k","name":"k.registry.example.","template":"eu3","depends_on":["auth","storage-07"],"ttl":5,"answers":1,"at":"2026-12-01T09:00:00Z","who":"admin"}
//! {"op":"delete","key":"k","at":"2026-12-01T09:05:00Z","who":"admin"}
//! ```
//!
//! - `put` carries one entry under the catalog's rules, except that `depends_on` is a list of
//!   strings (an empty list is `None`) and `ttl` is an integer number of seconds (at most
//!   3600). `depends_on`, `ttl` and `answers` may be missing or `null`. A dependency name may
//!   not contain `,` or `;` either, so that every entry can be written as a catalog line. The
//!   entry's `line` is its line in the journal.
//! - `delete` carries the key only, under the catalog's rules for keys.
//! - `at` and `who` are strings kept as written; they are not interpreted.
//! - Unknown fields, unknown ops, missing fields and values of the wrong JSON type are
//!   problems, the latter naming the field. Blank lines are ignored.
//! - Ops are not checked against each other or against the catalog: a `put` of a known key
//!   replaces it, and whoever replays the journal checks that names stay unique.
//!
//! **Torn writes.** [`Journal::append`] writes one whole line and then syncs it, so a crash can
//! cut short only the last line, and then it has no final newline. A last line without a
//! newline that is not JSON at all (cut short, or garbage such as the NUL bytes a filesystem
//! may leave after a crash) is therefore skipped and reported as a warning, not an error.
//! Every other bad line is an error, including a last line that is complete JSON but breaks a
//! rule: a bad line that a crash cannot explain means the file was damaged or edited, and
//! replaying past it would apply a history that never happened.
//!
//! - [`Journal::open`] cuts such a torn line off before appending, so that the next line does
//!   not glue onto it (and ends a complete last line that lacks its newline).
//! - [`journal_line`] escapes every non-ASCII character, so the journal is pure ASCII and a
//!   torn write never splits a UTF-8 sequence: reading the file as UTF-8 still succeeds.
//!
//! # Problems
//!
//! Parsing does not stop at the first problem. It reports the first [`MAX_PROBLEMS`] in line
//! order, each with its 1-based line and a reason that names the field (`field ttl: invalid
//! duration "5x": ...`), then one "… and N more problems".

use std::path::Path;

use hickory_proto::rr::Name;

use crate::config::{MAX_ANSWERS, MAX_REGISTRY_TTL};
use crate::problem::Problem;

pub(crate) use super::journal::{Journal, parse_journal};

/// The header line of a catalog file.
pub(crate) const HEADER: &str = "key,name,template,depends_on,ttl,answers";
/// Longest registry key.
pub(crate) const MAX_KEY_LEN: usize = 63;
/// Most problems reported one by one; the rest are counted in a final problem.
pub(crate) const MAX_PROBLEMS: usize = 100;

//----------- Entries --------------------------------------------------------------------------

/// One registry as the catalog file or a journal `put` describes it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct CatalogEntry {
    /// The registry's key: ASCII letters, digits, `-`, `_` and `.`, at most 63 characters.
    pub(crate) key: Box<str>,
    /// The global name, absolute, with the letter case as written.
    pub(crate) name: Name,
    /// The template's name: ASCII letters, digits, `-`, `_` and `.`.
    pub(crate) template: Box<str>,
    /// Dependencies, sorted and deduplicated; `None` when there are none.
    pub(crate) depends_on: Option<Vec<String>>,
    /// TTL of the answers in seconds, at most 3600; `None` when not given.
    pub(crate) ttl: Option<u32>,
    /// Most answers per query, 1 to 8; `None` when not given.
    pub(crate) answers: Option<u8>,
    /// 1-based line the entry came from (for a journal entry, the journal's line).
    pub(crate) line: usize,
}

/// One change recorded in the journal.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum JournalOp {
    /// Add the entry, or replace the entry with the same key.
    Put {
        /// The entry.
        entry: CatalogEntry,
        /// When, as written (not interpreted).
        at: String,
        /// Who made the change.
        who: String,
    },
    /// Remove the entry with this key.
    Delete {
        /// The key.
        key: Box<str>,
        /// When, as written (not interpreted).
        at: String,
        /// Who made the change.
        who: String,
    },
}

//----------- The catalog file -----------------------------------------------------------------

/// Parses a catalog file (format in the module doc). `path` is only for the problems.
///
/// Returns the entries in file order, or every problem found (see [`MAX_PROBLEMS`]).
pub(crate) fn parse_catalog(text: &str, path: &Path) -> Result<Vec<CatalogEntry>, Vec<Problem>> {
    // Spreadsheets like to start a CSV file with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut found = Found::default();
    let mut entries = Vec::with_capacity(text.bytes().filter(|&b| b == b'\n').count());
    let mut header_seen = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !header_seen {
            header_seen = true;
            if trimmed != HEADER {
                found.push(
                    Some(line),
                    format!("expected the header {HEADER:?}, found {trimmed:?}"),
                );
            }
            continue;
        }
        match catalog_line(trimmed, line) {
            Ok(entry) => entries.push(entry),
            Err(reasons) => found.extend(line, reasons),
        }
    }
    if !header_seen {
        found.push(None, format!("no header line; expected {HEADER:?}"));
    }
    let found = found.merge(duplicates(&entries));
    if found.total == 0 {
        Ok(entries)
    } else {
        Err(found.into_problems(path))
    }
}

/// One data line (already trimmed).
fn catalog_line(text: &str, line: usize) -> Result<CatalogEntry, Vec<String>> {
    let mut fields = [""; 6];
    let mut count = 0;
    for field in text.split(',') {
        if let Some(slot) = fields.get_mut(count) {
            *slot = field.trim();
        }
        count += 1;
    }
    if count != fields.len() {
        return Err(vec![format!(
            "expected 6 comma-separated fields ({HEADER}), found {count}"
        )]);
    }
    let [key, name, template, depends_on, ttl, answers] = fields;
    Checked {
        key: identifier("key", key, Some(MAX_KEY_LEN)),
        name: domain_name(name),
        template: identifier("template", template, None),
        depends_on: if depends_on.is_empty() {
            Ok(None)
        } else {
            dependencies(depends_on.split(';'))
        },
        ttl: ttl_text(ttl),
        answers: answers_text(answers),
    }
    .into_entry(line)
}

/// One registry from its fields under the catalog's rules (what the admin API's
/// `PUT /v1/registries/KEY` gives): every field that breaks one, with the reason.
pub(crate) fn entry(
    key: &str,
    name: &str,
    template: &str,
    depends_on: Option<&[String]>,
    ttl: Option<&str>,
    answers: Option<u8>,
) -> Result<CatalogEntry, Vec<String>> {
    Checked {
        key: identifier("key", key, Some(MAX_KEY_LEN)),
        name: domain_name(name),
        template: identifier("template", template, None),
        depends_on: match depends_on {
            None => Ok(None),
            Some(d) => dependencies(d.iter().map(String::as_str)),
        },
        ttl: ttl.map_or(Ok(None), ttl_text),
        answers: answers.map_or(Ok(None), |a| answers_number(u64::from(a)).map(Some)),
    }
    .into_entry(0)
}

/// Duplicate keys and names.
///
/// Sorting (hash, index) pairs puts equal fields next to each other, the first line first, and
/// reads memory in order. (A hash set of a million entries costs a cache miss or two per
/// insert: it took over a third of the time of parsing a million lines.)
fn duplicates(entries: &[CatalogEntry]) -> Found {
    let mut hashed = Vec::with_capacity(entries.len());
    let keys = equal_pairs(
        entries,
        &mut hashed,
        |e| fx(0, e.key.as_bytes()),
        |a, b| a.key == b.key,
    );
    // `Name`'s `==` ignores letter case; so does `name_hash`.
    let names = equal_pairs(
        entries,
        &mut hashed,
        |e| name_hash(&e.name),
        |a, b| a.name == b.name,
    );
    // In line order, and on one line the key's problem before the name's.
    let mut pairs: Vec<(usize, bool, usize)> = keys
        .into_iter()
        .map(|(later, first)| (later, false, first))
        .chain(names.into_iter().map(|(later, first)| (later, true, first)))
        .collect();
    pairs.sort_unstable();
    let mut found = Found::default();
    for (later, is_name, first) in pairs {
        let (entry, first) = (&entries[later], &entries[first]);
        let reason = if is_name {
            format!(
                "duplicate name {} (first on line {})",
                entry.name, first.line
            )
        } else {
            format!("duplicate key {} (first on line {})", entry.key, first.line)
        };
        found.push(Some(entry.line), reason);
    }
    found
}

/// The (later, first) indices of entries equal under `eq`, `first` being the earliest such
/// entry. `hash` must agree with `eq`; `hashed` is scratch space.
fn equal_pairs(
    entries: &[CatalogEntry],
    hashed: &mut Vec<(u64, usize)>,
    hash: impl Fn(&CatalogEntry) -> u64,
    eq: impl Fn(&CatalogEntry, &CatalogEntry) -> bool,
) -> Vec<(usize, usize)> {
    hashed.clear();
    hashed.extend(entries.iter().map(hash).zip(0..));
    hashed.sort_unstable();
    let mut pairs = Vec::new();
    // Runs of one hash are nearly always one entry long; within a run, indices ascend.
    for run in hashed
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|run| run.len() > 1)
    {
        for (n, &(_, later)) in run.iter().enumerate().skip(1) {
            let mut earlier = run[..n].iter().map(|&(_, i)| i);
            if let Some(first) = earlier.find(|&i| eq(&entries[i], &entries[later])) {
                pairs.push((later, first));
            }
        }
    }
    pairs
}

/// Adds `bytes` to `hash` with FxHash, rustc's hash function: fast, and not keyed, which is
/// fine for the operator's own file (there is no hash flooding to defend against, and a
/// collision costs only a comparison).
fn fx(hash: u64, bytes: &[u8]) -> u64 {
    bytes.chunks(8).fold(hash, |hash, chunk| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
    })
}

/// The hash of a name's lower-cased wire form.
fn name_hash(name: &Name) -> u64 {
    let mut buf = [0u8; 64];
    name.iter().fold(0, |hash, label| {
        // A label is at most 63 octets, so it fits with its length octet first (as on the wire).
        match buf.get_mut(..=label.len()) {
            Some(wire) => {
                wire[0] = label.len() as u8;
                wire[1..].copy_from_slice(label);
                wire[1..].make_ascii_lowercase();
                fx(hash, wire)
            }
            None => hash,
        }
    })
}

//----------- Field rules (shared by the catalog and the journal) ------------------------------

/// Every field of one entry, checked.
pub(super) struct Checked {
    pub(super) key: Result<Box<str>, String>,
    pub(super) name: Result<Name, String>,
    pub(super) template: Result<Box<str>, String>,
    pub(super) depends_on: Result<Option<Vec<String>>, String>,
    pub(super) ttl: Result<Option<u32>, String>,
    pub(super) answers: Result<Option<u8>, String>,
}

impl Checked {
    /// The entry, or the reason of every field that failed.
    pub(super) fn into_entry(self, line: usize) -> Result<CatalogEntry, Vec<String>> {
        match self {
            Checked {
                key: Ok(key),
                name: Ok(name),
                template: Ok(template),
                depends_on: Ok(depends_on),
                ttl: Ok(ttl),
                answers: Ok(answers),
            } => Ok(CatalogEntry {
                key,
                name,
                template,
                depends_on,
                ttl,
                answers,
                line,
            }),
            Checked {
                key,
                name,
                template,
                depends_on,
                ttl,
                answers,
            } => Err([
                key.err(),
                name.err(),
                template.err(),
                depends_on.err(),
                ttl.err(),
                answers.err(),
            ]
            .into_iter()
            .flatten()
            .collect()),
        }
    }
}

/// `key` and `template`: non-empty ASCII letters, digits, `-`, `_` and `.`.
pub(super) fn identifier(field: &str, s: &str, max_len: Option<usize>) -> Result<Box<str>, String> {
    if s.is_empty() {
        return Err(format!("field {field}: empty"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if let Some(c) = s.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "field {field}: {s:?} has the character {c:?}; only ASCII letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    if let Some(max) = max_len
        && s.len() > max
    {
        return Err(format!(
            "field {field}: {s:?} is {} characters long; at most {max}",
            s.len()
        ));
    }
    Ok(s.into())
}

/// `name`: an absolute domain name other than the root.
pub(super) fn domain_name(s: &str) -> Result<Name, String> {
    if s.is_empty() {
        return Err("field name: empty".to_owned());
    }
    let mut name =
        Name::from_ascii(s).map_err(|e| format!("field name: {s:?} is not a domain name: {e}"))?;
    name.set_fqdn(true);
    if name.is_root() {
        return Err(format!(
            "field name: {s:?} is the root, not a registry name"
        ));
    }
    // `from_ascii` has refused a name longer than 255 octets in wire form already (tested).
    Ok(name)
}

/// `depends_on`: the dependency names, trimmed, sorted and deduplicated.
pub(super) fn dependencies<'a>(
    items: impl Iterator<Item = &'a str>,
) -> Result<Option<Vec<String>>, String> {
    let mut deps = Vec::new();
    for item in items {
        let dep = item.trim();
        if dep.is_empty() {
            return Err("field depends_on: empty dependency name".to_owned());
        }
        // `,` and `;` cannot reach here from the catalog file; refusing them in the journal
        // keeps every journal entry writable as a catalog line.
        if dep.contains(|c: char| c.is_whitespace() || c == ',' || c == ';') {
            return Err(format!(
                "field depends_on: dependency {dep:?} contains whitespace, ',' or ';'"
            ));
        }
        deps.push(dep.to_owned());
    }
    deps.sort_unstable();
    deps.dedup();
    Ok((!deps.is_empty()).then_some(deps))
}

/// `ttl` in the catalog: a duration of whole seconds, at most [`MAX_REGISTRY_TTL`].
pub(super) fn ttl_text(s: &str) -> Result<Option<u32>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let ttl = humantime::parse_duration(s)
        .map_err(|e| format!("field ttl: invalid duration {s:?}: {e}"))?;
    if ttl > MAX_REGISTRY_TTL {
        return Err(format!(
            "field ttl: {s:?} is longer than the maximum of {}",
            humantime::format_duration(MAX_REGISTRY_TTL)
        ));
    }
    if ttl.subsec_nanos() != 0 {
        return Err(format!("field ttl: {s:?} is not a whole number of seconds"));
    }
    ttl_seconds(ttl.as_secs()).map(Some)
}

/// `ttl` in the journal, and the catalog's once parsed: at most [`MAX_REGISTRY_TTL`] seconds.
pub(super) fn ttl_seconds(secs: u64) -> Result<u32, String> {
    let max = MAX_REGISTRY_TTL.as_secs();
    u32::try_from(secs)
        .ok()
        .filter(|&s| u64::from(s) <= max)
        .ok_or_else(|| format!("field ttl: {secs} is longer than the maximum of {max} seconds"))
}

/// `answers` in the catalog.
pub(super) fn answers_text(s: &str) -> Result<Option<u8>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<u64>() {
        Ok(n) => answers_number(n).map(Some),
        Err(_) => Err(format!(
            "field answers: {s:?} is not an integer from 1 to {MAX_ANSWERS}"
        )),
    }
}

/// `answers` in the journal, and the catalog's once parsed: 1 to [`MAX_ANSWERS`].
pub(super) fn answers_number(n: u64) -> Result<u8, String> {
    u8::try_from(n)
        .ok()
        .filter(|a| (1..=MAX_ANSWERS).contains(a))
        .ok_or_else(|| format!("field answers: {n} is not an integer from 1 to {MAX_ANSWERS}"))
}

//----------- Problems -------------------------------------------------------------------------

/// Problems found so far, as (line, reason): the first [`MAX_PROBLEMS`] kept, all counted.
#[derive(Default)]
pub(super) struct Found {
    pub(super) kept: Vec<(Option<usize>, String)>,
    pub(super) total: usize,
}

impl Found {
    pub(super) fn push(&mut self, line: Option<usize>, reason: String) {
        self.total += 1;
        if self.kept.len() < MAX_PROBLEMS {
            self.kept.push((line, reason));
        }
    }

    pub(super) fn extend(&mut self, line: usize, reasons: Vec<String>) {
        for reason in reasons {
            self.push(Some(line), reason);
        }
    }

    /// Both sets, in line order. Each kept its first problems in line order, so the first
    /// [`MAX_PROBLEMS`] of both are among the kept ones.
    pub(super) fn merge(mut self, other: Found) -> Found {
        self.kept.extend(other.kept);
        self.kept.sort_by_key(|(line, _)| *line);
        self.kept.truncate(MAX_PROBLEMS);
        self.total += other.total;
        self
    }

    pub(super) fn into_problems(self, path: &Path) -> Vec<Problem> {
        let more = self.total - self.kept.len();
        let mut problems: Vec<Problem> = self
            .kept
            .into_iter()
            .map(|(line, reason)| Problem::at(path, line, reason))
            .collect();
        if more > 0 {
            problems.push(Problem::file(path, format!("… and {more} more problems")));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::super::journal::journal_line;
    use super::*;

    const PATH: &str = "/etc/steerdns/catalog.csv";

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn entry(key: &str, n: &str, line: usize) -> CatalogEntry {
        CatalogEntry {
            key: key.into(),
            name: name(n),
            template: "eu3".into(),
            depends_on: None,
            ttl: None,
            answers: None,
            line,
        }
    }

    fn catalog(text: &str) -> Result<Vec<CatalogEntry>, Vec<Problem>> {
        parse_catalog(text, Path::new(PATH))
    }

    /// The problems as (line, reason).
    fn problems(text: &str) -> Vec<(Option<usize>, String)> {
        let problems = catalog(text).expect_err("problems");
        assert!(problems.iter().all(|p| p.file == Path::new(PATH)));
        problems.into_iter().map(|p| (p.line, p.reason)).collect()
    }

    fn one_line(data: &str) -> String {
        format!("{HEADER}\n{data}\n")
    }

    #[test]
    fn good_lines() {
        let with = |f: fn(&mut CatalogEntry)| {
            let mut e = entry("contoso", "contoso.registry.example.", 2);
            f(&mut e);
            e
        };
        let cases: &[(&str, CatalogEntry)] = &[
            ("contoso,contoso.registry.example.,eu3,,,", with(|_| {})),
            ("contoso,contoso.registry.example,eu3,,,", with(|_| {})),
            (
                "  contoso , contoso.registry.example. ,eu3 , , , ",
                with(|_| {}),
            ),
            (
                "contoso,contoso.registry.example.,eu3,storage-07;auth;auth; cache ,5s,1",
                with(|e| {
                    e.depends_on = Some(vec!["auth".into(), "cache".into(), "storage-07".into()]);
                    e.ttl = Some(5);
                    e.answers = Some(1);
                }),
            ),
            (
                "contoso,contoso.registry.example.,eu3,,1m,8",
                with(|e| {
                    e.ttl = Some(60);
                    e.answers = Some(8);
                }),
            ),
            (
                "contoso,contoso.registry.example.,eu3,,1h,",
                with(|e| e.ttl = Some(3600)),
            ),
            (
                "contoso,contoso.registry.example.,eu3,,0s,",
                with(|e| e.ttl = Some(0)),
            ),
            (
                "contoso,contoso.registry.example.,eu3,,2000ms,",
                with(|e| e.ttl = Some(2)),
            ),
            (
                "A-z_0.9,contoso.registry.example.,eu3.b_c-D,,,",
                with(|e| {
                    e.key = "A-z_0.9".into();
                    e.template = "eu3.b_c-D".into();
                }),
            ),
        ];
        for (data, want) in cases {
            let got = catalog(&one_line(data)).unwrap_or_else(|p| panic!("{data}: {p:?}"));
            assert_eq!(got, vec![want.clone()], "{data}");
            assert!(got[0].name.is_fqdn(), "{data}");
        }
    }

    #[test]
    fn name_keeps_its_letter_case() {
        let got = catalog(&one_line("c,Contoso.Registry.Example,eu3,,,")).expect("ok");
        assert_eq!(got[0].name.to_ascii(), "Contoso.Registry.Example.");
    }

    #[test]
    fn bad_lines() {
        let long_key = "k".repeat(64);
        let long_name = format!("{}.example.", vec!["a".repeat(63); 4].join("."));
        let cases: &[(&str, &str)] = &[
            (
                "contoso,contoso.registry.example.,eu3,,",
                "expected 6 comma-separated fields (key,name,template,depends_on,ttl,answers), found 5",
            ),
            (
                "contoso,contoso.registry.example.,eu3,,,,",
                "expected 6 comma-separated fields (key,name,template,depends_on,ttl,answers), found 7",
            ),
            (
                "contoso",
                "expected 6 comma-separated fields (key,name,template,depends_on,ttl,answers), found 1",
            ),
            (",contoso.registry.example.,eu3,,,", "field key: empty"),
            (
                "con toso,contoso.registry.example.,eu3,,,",
                r#"field key: "con toso" has the character ' '; only ASCII letters, digits, '-', '_' and '.' are allowed"#,
            ),
            (
                "contosö,contoso.registry.example.,eu3,,,",
                r#"field key: "contosö" has the character 'ö'; only ASCII letters, digits, '-', '_' and '.' are allowed"#,
            ),
            ("contoso,,eu3,,,", "field name: empty"),
            (
                "contoso,.,eu3,,,",
                r#"field name: "." is the root, not a registry name"#,
            ),
            (
                "contoso,a..b,eu3,,,",
                r#"field name: "a..b" is not a domain name: Malformed label: "#,
            ),
            (
                "contoso,contoso.registry.example.,,,,",
                "field template: empty",
            ),
            (
                "contoso,contoso.registry.example.,eu/3,,,",
                r#"field template: "eu/3" has the character '/'; only ASCII letters, digits, '-', '_' and '.' are allowed"#,
            ),
            (
                "contoso,contoso.registry.example.,eu3,auth;;cache,,",
                "field depends_on: empty dependency name",
            ),
            (
                "contoso,contoso.registry.example.,eu3,auth;,,",
                "field depends_on: empty dependency name",
            ),
            (
                "contoso,contoso.registry.example.,eu3,stor age,,",
                r#"field depends_on: dependency "stor age" contains whitespace, ',' or ';'"#,
            ),
            (
                "contoso,contoso.registry.example.,eu3,,5x,",
                r#"field ttl: invalid duration "5x": unknown time unit "x", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)"#,
            ),
            (
                "contoso,contoso.registry.example.,eu3,,5,",
                r#"field ttl: invalid duration "5": time unit needed, for example 5sec or 5ms"#,
            ),
            (
                "contoso,contoso.registry.example.,eu3,,1h1s,",
                r#"field ttl: "1h1s" is longer than the maximum of 1h"#,
            ),
            (
                "contoso,contoso.registry.example.,eu3,,1500ms,",
                r#"field ttl: "1500ms" is not a whole number of seconds"#,
            ),
            (
                "contoso,contoso.registry.example.,eu3,,,0",
                "field answers: 0 is not an integer from 1 to 8",
            ),
            (
                "contoso,contoso.registry.example.,eu3,,,9",
                "field answers: 9 is not an integer from 1 to 8",
            ),
            (
                "contoso,contoso.registry.example.,eu3,,,-1",
                r#"field answers: "-1" is not an integer from 1 to 8"#,
            ),
            (
                "contoso,contoso.registry.example.,eu3,,,two",
                r#"field answers: "two" is not an integer from 1 to 8"#,
            ),
        ];
        for (data, want) in cases {
            let got = problems(&one_line(data));
            assert_eq!(got.len(), 1, "{data}: {got:?}");
            assert_eq!(got[0].0, Some(2), "{data}");
            assert_eq!(got[0].1, *want, "{data}");
        }

        let key = &long_key[1..];
        let got = catalog(&one_line(&format!("{key},c.example.,eu3,,,"))).expect("63 is fine");
        assert_eq!(&*got[0].key, key);
        let got = problems(&one_line(&format!("{long_key},c.example.,eu3,,,")));
        assert_eq!(
            got,
            vec![(
                Some(2),
                format!("field key: {long_key:?} is 64 characters long; at most 63")
            )]
        );
        let got = problems(&one_line(&format!("c,{long_name},eu3,,,")));
        assert_eq!(
            got,
            vec![(
                Some(2),
                format!(
                    "field name: {long_name:?} is not a domain name: decoding error: name label data exceed 255: 257"
                )
            )]
        );
    }

    #[test]
    fn longest_names_fit() {
        // In wire form each label follows its length octet, and the root's zero ends the name:
        // 3 × (1 + 63) + (1 + 61) + 1 = 255 octets.
        let abc = ["a", "b", "c"].map(|l| l.repeat(63)).join(".");
        let n = format!("{abc}.{}.", "d".repeat(61));
        let got = catalog(&one_line(&format!("c,{n},eu3,,,"))).expect("255 octets");
        assert_eq!(got[0].name.to_ascii(), n);
        // One more octet is too many.
        let n = format!("{abc}.{}.", "d".repeat(62));
        assert_eq!(
            problems(&one_line(&format!("c,{n},eu3,,,"))),
            vec![(
                Some(2),
                format!(
                    "field name: {n:?} is not a domain name: decoding error: name label data exceed 255: 256"
                )
            )]
        );
    }

    #[test]
    fn every_bad_field_of_a_line_is_reported() {
        let got = problems(&one_line(",.,,a b,5x,0"));
        let reasons: Vec<&str> = got.iter().map(|(_, r)| r.as_str()).collect();
        assert!(got.iter().all(|(line, _)| *line == Some(2)));
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        assert_eq!(reasons[0], "field key: empty");
        assert!(reasons[1].starts_with("field name: "));
        assert_eq!(reasons[2], "field template: empty");
        assert!(reasons[3].starts_with("field depends_on: "));
        assert!(reasons[4].starts_with("field ttl: "));
        assert!(reasons[5].starts_with("field answers: "));
    }

    #[test]
    fn header() {
        let want = |line, found: &str| {
            vec![(
                line,
                format!("expected the header \"{HEADER}\", found {found:?}"),
            )]
        };
        assert_eq!(
            problems("contoso,contoso.registry.example.,eu3,,,\n"),
            want(Some(1), "contoso,contoso.registry.example.,eu3,,,")
        );
        assert_eq!(
            problems("# catalog\n\nkey,name,template\n"),
            want(Some(3), "key,name,template")
        );
        assert_eq!(
            problems("KEY,NAME,TEMPLATE,DEPENDS_ON,TTL,ANSWERS\n"),
            want(Some(1), "KEY,NAME,TEMPLATE,DEPENDS_ON,TTL,ANSWERS")
        );
        let none = vec![(None, format!("no header line; expected \"{HEADER}\""))];
        assert_eq!(problems(""), none);
        assert_eq!(problems("# only a comment\n\n   \n"), none);

        // The header alone is an empty catalog; whitespace around it and a BOM are fine.
        assert_eq!(catalog(&format!("{HEADER}\n")).expect("ok"), vec![]);
        assert_eq!(catalog(&format!("  {HEADER}\t\r\n")).expect("ok"), vec![]);
        assert_eq!(catalog(&format!("\u{feff}{HEADER}")).expect("ok"), vec![]);
    }

    #[test]
    fn comments_and_blank_lines() {
        let text = "\
# registries of the eu3 stamp
  # indented comment

key,name,template,depends_on,ttl,answers
# contoso first
contoso,contoso.registry.example.,eu3,,,

   \t
fabrikam,fabrikam.registry.example,eu3,,,
# trailing comment";
        assert_eq!(
            catalog(text).expect("ok"),
            vec![
                entry("contoso", "contoso.registry.example.", 6),
                entry("fabrikam", "fabrikam.registry.example.", 9),
            ]
        );
        // CRLF line ends.
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(catalog(&crlf).expect("ok").len(), 2);
    }

    #[test]
    fn duplicate_keys_and_names() {
        let text = "\
key,name,template,depends_on,ttl,answers
contoso,contoso.registry.example.,eu3,,,
fabrikam,fabrikam.registry.example.,eu3,,,
contoso,other.registry.example.,eu3,,,
other,Contoso.REGISTRY.example,eu3,,,
fabrikam,FABRIKAM.registry.example.,eu3,,,
bad,bad.registry.example.,eu3,,x,
contoso,third.registry.example.,eu3,,,
";
        assert_eq!(
            problems(text),
            vec![
                (
                    Some(4),
                    "duplicate key contoso (first on line 2)".to_owned()
                ),
                (
                    Some(5),
                    "duplicate name Contoso.REGISTRY.example. (first on line 2)".to_owned()
                ),
                (
                    Some(6),
                    "duplicate key fabrikam (first on line 3)".to_owned()
                ),
                (
                    Some(6),
                    "duplicate name FABRIKAM.registry.example. (first on line 3)".to_owned()
                ),
                (
                    Some(7),
                    r#"field ttl: invalid duration "x": expected number at 0"#.to_owned()
                ),
                (
                    Some(8),
                    "duplicate key contoso (first on line 2)".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn equal_pairs_within_a_hash_collision() {
        // Every entry in one run of equal hashes: only equal keys pair up, with the earliest.
        let entries: Vec<CatalogEntry> = ["a", "b", "a", "b", "c", "a"]
            .iter()
            .enumerate()
            .map(|(i, k)| entry(k, &format!("n{i}.example."), i))
            .collect();
        let pairs = equal_pairs(&entries, &mut Vec::new(), |_| 7, |a, b| a.key == b.key);
        assert_eq!(pairs, vec![(2, 0), (3, 1), (5, 0)]);
    }

    #[test]
    fn problems_are_capped_in_line_order() {
        // 150 bad lines, and 30 duplicates of line 2 spread among them.
        let mut text = format!("{HEADER}\nfirst,first.example.,eu3,,,\n");
        for i in 0..180 {
            if i % 6 == 0 {
                text.push_str(&format!("first,d{i}.example.,eu3,,,\n"));
            } else {
                text.push_str(&format!("k{i},k{i}.example.,eu3,,,x\n"));
            }
        }
        let got = problems(&text);
        assert_eq!(got.len(), MAX_PROBLEMS + 1);
        let lines: Vec<usize> = got[..MAX_PROBLEMS].iter().filter_map(|p| p.0).collect();
        assert_eq!(lines, (3..3 + MAX_PROBLEMS).collect::<Vec<_>>());
        assert_eq!(got[0].1, "duplicate key first (first on line 2)");
        assert_eq!(
            got[1].1,
            r#"field answers: "x" is not an integer from 1 to 8"#
        );
        assert_eq!(
            got[MAX_PROBLEMS],
            (None, "… and 80 more problems".to_owned())
        );
    }

    // === journal ===

    const JPATH: &str = "/etc/steerdns/catalog.journal";

    fn journal(text: &str) -> Result<(Vec<JournalOp>, Option<Problem>), Vec<Problem>> {
        parse_journal(text, Path::new(JPATH))
    }

    fn journal_problems(text: &str) -> Vec<(Option<usize>, String)> {
        journal(text)
            .expect_err("problems")
            .into_iter()
            .map(|p| (p.line, p.reason))
            .collect()
    }

    const PUT: &str = r#"{"op":"put","key":"k","name":"k.registry.example.","template":"eu3","depends_on":["auth","storage-07"],"ttl":5,"answers":1,"at":"2026-12-01T09:00:00Z","who":"admin"}"#;
    const DELETE: &str = r#"{"op":"delete","key":"k","at":"2026-12-01T09:05:00Z","who":"admin"}"#;

    fn put() -> JournalOp {
        JournalOp::Put {
            entry: CatalogEntry {
                key: "k".into(),
                name: name("k.registry.example."),
                template: "eu3".into(),
                depends_on: Some(vec!["auth".into(), "storage-07".into()]),
                ttl: Some(5),
                answers: Some(1),
                line: 1,
            },
            at: "2026-12-01T09:00:00Z".into(),
            who: "admin".into(),
        }
    }

    fn delete() -> JournalOp {
        JournalOp::Delete {
            key: "k".into(),
            at: "2026-12-01T09:05:00Z".into(),
            who: "admin".into(),
        }
    }

    /// Sets the `line` of a put (deletes carry none).
    fn at_line(mut op: JournalOp, line: usize) -> JournalOp {
        if let JournalOp::Put { entry, .. } = &mut op {
            entry.line = line;
        }
        op
    }

    #[test]
    fn journal_good_lines() {
        let text = format!("{PUT}\n\n{DELETE}\n");
        let (ops, torn) = journal(&text).expect("ok");
        assert_eq!(ops, vec![put(), delete()]);
        assert_eq!(torn, None);

        let minimal = |extra: &str| {
            format!(
                r#"{{"op":"put","key":"k","name":"K.registry.example","template":"eu3",{extra}"at":"t","who":"w"}}"#
            )
        };
        for extra in [
            "",
            r#""depends_on":null,"ttl":null,"answers":null,"#,
            r#""depends_on":[],"#,
        ] {
            let (ops, _) = journal(&minimal(extra)).unwrap_or_else(|p| panic!("{extra}: {p:?}"));
            let JournalOp::Put { entry, at, who } = &ops[0] else {
                panic!("{ops:?}");
            };
            assert_eq!(entry.name.to_ascii(), "K.registry.example.", "{extra}");
            assert_eq!(
                (entry.depends_on.as_ref(), entry.ttl, entry.answers),
                (None, None, None)
            );
            assert_eq!((at.as_str(), who.as_str()), ("t", "w"));
        }
        let (ops, _) = journal(&minimal(r#""depends_on":["b"," a ","b"],"#)).expect("ok");
        let JournalOp::Put { entry, .. } = &ops[0] else {
            panic!("{ops:?}");
        };
        assert_eq!(entry.depends_on, Some(vec!["a".to_owned(), "b".to_owned()]));
    }

    #[test]
    fn journal_bad_lines() {
        let put_with = |fields: &str| {
            format!(
                r#"{{"op":"put","key":"k","name":"k.example.","template":"eu3",{fields}"at":"t","who":"w"}}"#
            )
        };
        let cases: Vec<(String, &str)> = vec![
            (
                put_with(r#""ttl":3601,"#),
                "field ttl: 3601 is longer than the maximum of 3600 seconds",
            ),
            (
                put_with(r#""answers":0,"#),
                "field answers: 0 is not an integer from 1 to 8",
            ),
            (
                put_with(r#""answers":300,"#),
                "field answers: 300 is not an integer from 1 to 8",
            ),
            (
                put_with(r#""depends_on":[""],"#),
                "field depends_on: empty dependency name",
            ),
            (
                put_with(r#""depends_on":["a;b"],"#),
                r#"field depends_on: dependency "a;b" contains whitespace, ',' or ';'"#,
            ),
            (
                put_with(r#""ttl":"5s","#),
                r#"field ttl: invalid type: string "5s", expected u64"#,
            ),
            (
                put_with(r#""ttl":-1,"#),
                "field ttl: invalid value: integer `-1`, expected u64",
            ),
            (
                put_with(r#""depends_on":"auth","#),
                r#"field depends_on: invalid type: string "auth", expected a sequence"#,
            ),
            (
                r#"{"op":"delete","key":"k","at":5,"who":"w"}"#.to_owned(),
                "field at: invalid type: integer `5`, expected a string",
            ),
            (
                put_with(r#""nmae":"x","#),
                "invalid record: unknown field `nmae`, expected one of `key`, `name`, `template`, `depends_on`, `ttl`, `answers`, `at`, `who`",
            ),
            (
                r#"{"op":"put","key":"k","template":"eu3","at":"t","who":"w"}"#.to_owned(),
                "invalid record: missing field `name`",
            ),
            (
                r#"{"op":"upsert","key":"k","at":"t","who":"w"}"#.to_owned(),
                "invalid record: unknown variant `upsert`, expected `put` or `delete`",
            ),
            (
                r#"{"op":"delete","key":"k","name":"k.example.","at":"t","who":"w"}"#.to_owned(),
                "invalid record: unknown field `name`, expected one of `key`, `at`, `who`",
            ),
            (
                r#"{"op":"delete","key":"","at":"t","who":"w"}"#.to_owned(),
                "field key: empty",
            ),
            (
                r#"{"key":"k","at":"t","who":"w"}"#.to_owned(),
                "invalid record: missing field `op`",
            ),
            ("[1,2]".to_owned(), "invalid record: not a JSON object"),
            (
                "not json".to_owned(),
                "invalid record: expected ident (column 2)",
            ),
            (
                format!("{DELETE} x"),
                "invalid record: trailing characters (column 69)",
            ),
        ];
        for (bad, want) in &cases {
            // In the middle of the journal, terminated or not.
            for text in [
                format!("{PUT}\n{bad}\n{DELETE}\n"),
                format!("{PUT}\n{bad}\n{DELETE}"),
            ] {
                assert_eq!(
                    journal_problems(&text),
                    vec![(Some(2), want.to_string())],
                    "{bad}"
                );
            }
        }
        // A put's fields are all checked, as in the catalog.
        let got = journal_problems(
            r#"{"op":"put","key":"a b","name":".","template":"","ttl":7200,"answers":9,"at":"t","who":"w"}"#,
        );
        assert_eq!(got.len(), 5, "{got:?}");
    }

    #[test]
    fn torn_last_line_is_skipped_with_a_warning() {
        let cut = &PUT[..40];
        for torn in [cut, "{", "\0\0\0\0", "garbage"] {
            let text = format!("{PUT}\n{DELETE}\n{torn}");
            let (ops, warning) = journal(&text).unwrap_or_else(|p| panic!("{torn:?}: {p:?}"));
            assert_eq!(ops, vec![put(), delete()], "{torn:?}");
            let warning = warning.expect("warning");
            assert_eq!(warning.line, Some(3));
            assert!(
                warning.reason.starts_with(
                    "skipped the torn last line (no final newline; an append cut short): invalid record: "
                ),
                "{warning}"
            );
        }
        // The same cut line with its newline was not torn by a crash: an error.
        assert_eq!(
            journal_problems(&format!("{PUT}\n{cut}\n")),
            vec![(
                Some(2),
                "invalid record: EOF while parsing a string (column 40)".to_owned()
            )]
        );
        // In the middle: an error.
        assert_eq!(
            journal_problems(&format!("{cut}\n{DELETE}")),
            vec![(
                Some(1),
                "invalid record: EOF while parsing a string (column 40)".to_owned()
            )]
        );
        // A complete last line without its newline is an op.
        let (ops, warning) = journal(&format!("{DELETE}\n{PUT}")).expect("ok");
        assert_eq!((ops, warning), (vec![delete(), at_line(put(), 2)], None));
        // A complete last line that breaks a rule is an error, newline or not.
        assert_eq!(
            journal_problems(r#"{"op":"delete","key":"a b","at":"t","who":"w"}"#),
            vec![(
                Some(1),
                r#"field key: "a b" has the character ' '; only ASCII letters, digits, '-', '_' and '.' are allowed"#
                    .to_owned()
            )]
        );
        assert_eq!(journal("").expect("empty"), (vec![], None));
    }

    #[test]
    fn journal_problems_are_capped() {
        let text = "x\n".repeat(MAX_PROBLEMS + 20);
        let got = journal_problems(&text);
        assert_eq!(got.len(), MAX_PROBLEMS + 1);
        assert_eq!(got[MAX_PROBLEMS - 1].0, Some(MAX_PROBLEMS));
        assert_eq!(
            got[MAX_PROBLEMS],
            (None, "… and 20 more problems".to_owned())
        );
    }

    fn round_trip_ops() -> Vec<JournalOp> {
        let mut bare = entry("fabrikam", "Fabrikam.Registry.Example.", 0);
        bare.template = "us-2".into();
        vec![
            put(),
            JournalOp::Put {
                entry: bare,
                at: "2026-12-01T10:00:00Z".into(),
                who: "Jürgen \"ops\" 🦀\\\n".into(),
            },
            JournalOp::Put {
                entry: CatalogEntry {
                    depends_on: Some(vec!["storage-ü".into()]),
                    ..entry("x", r"odd\.label.example.", 0)
                },
                at: String::new(),
                who: String::new(),
            },
            delete(),
        ]
    }

    /// `ops` with each put's line set to its place in a journal holding them all.
    fn numbered(ops: &[JournalOp]) -> Vec<JournalOp> {
        ops.iter()
            .enumerate()
            .map(|(i, op)| at_line(op.clone(), i + 1))
            .collect()
    }

    fn assert_same(got: &[JournalOp], want: &[JournalOp]) {
        assert_eq!(got, want);
        // `Name` equality ignores letter case; the journal keeps it.
        for (g, w) in got.iter().zip(want) {
            if let (JournalOp::Put { entry: g, .. }, JournalOp::Put { entry: w, .. }) = (g, w) {
                assert!(g.name.eq_case(&w.name), "{} vs {}", g.name, w.name);
            }
        }
    }

    #[test]
    fn journal_round_trip() {
        let ops = round_trip_ops();
        let text: String = ops.iter().map(journal_line).collect();
        assert!(text.is_ascii(), "{text}");
        assert_eq!(text.lines().count(), ops.len());
        assert!(text.ends_with('\n'));
        assert_eq!(journal_line(&put()), format!("{PUT}\n"));
        assert_eq!(journal_line(&delete()), format!("{DELETE}\n"));
        let (got, torn) = journal(&text).expect("round trip");
        assert_eq!(torn, None);
        assert_same(&got, &numbered(&ops));
    }

    #[test]
    fn append_then_parse() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("catalog.journal");
        let ops = round_trip_ops();
        {
            let mut j = Journal::open(&path).expect("create");
            for op in &ops[..2] {
                j.append(op).expect("append");
            }
        }
        {
            let mut j = Journal::open(&path).expect("reopen");
            for op in &ops[2..] {
                j.append(op).expect("append");
            }
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let (got, torn) = parse_journal(&text, &path).expect("parse");
        assert_eq!(torn, None);
        assert_same(&got, &numbered(&ops));
    }

    #[test]
    fn open_repairs_the_last_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j");
        let read = || std::fs::read_to_string(&path).expect("read");

        // A torn write is cut off before the next append.
        std::fs::write(&path, format!("{PUT}\n{}", &DELETE[..30])).expect("write");
        assert!(journal(&read()).expect("ok").1.is_some());
        Journal::open(&path)
            .expect("open")
            .append(&delete())
            .expect("append");
        assert_eq!(read(), format!("{PUT}\n{DELETE}\n"));

        // A complete last line gets its newline.
        std::fs::write(&path, PUT).expect("write");
        Journal::open(&path)
            .expect("open")
            .append(&delete())
            .expect("append");
        assert_eq!(read(), format!("{PUT}\n{DELETE}\n"));

        // A torn write that is the whole file, and one longer than the read-back chunk.
        for torn in [
            "{\"op\":\"pu".to_owned(),
            format!("{{\"who\":\"{}", "x".repeat(10_000)),
        ] {
            std::fs::write(&path, torn).expect("write");
            Journal::open(&path).expect("open");
            assert_eq!(read(), "");
        }

        // Terminated files are left alone.
        std::fs::write(&path, format!("{PUT}\nnot json\n")).expect("write");
        Journal::open(&path).expect("open");
        assert_eq!(read(), format!("{PUT}\nnot json\n"));
    }

    #[test]
    #[ignore = "timing: run with --release -- --ignored --nocapture"]
    fn parse_a_million_lines() {
        const N: usize = 1_000_000;
        let mut text = format!("# generated\n{HEADER}\n");
        for i in 0..N {
            let line = match i % 4 {
                0 => format!("reg-{i},reg-{i}.registry.example.,eu3,,,\n"),
                1 => format!("reg-{i},Reg-{i}.Registry.Example,us-2,storage-07;auth,5s,1\n"),
                2 => format!("reg-{i},reg-{i}.registry.example.,eu3,cache,1m,2\n"),
                _ => format!("reg-{i},reg-{i}.registry.example.,ap-1,,30s,\n"),
            };
            text.push_str(&line);
        }
        let start = std::time::Instant::now();
        let entries = catalog(&text).expect("parses");
        let took = start.elapsed();
        assert_eq!(entries.len(), N);
        println!(
            "parse_catalog: {N} lines ({} MB) in {took:?}",
            text.len() / 1_000_000
        );
    }
}
