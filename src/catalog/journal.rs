//! The journal of runtime catalog changes: JSON lines appended (and fsynced) by the admin
//! API, replayed over the catalog file at every start and reload. The format and the torn
//! last line rule are in the module doc of [`super::file`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::file::*;
use crate::problem::Problem;

//----------- The journal ----------------------------------------------------------------------

/// A journal line as read. The values stay JSON until [`journal_record`] checks them, so that
/// a value of the wrong type is reported with its field (serde's message does not name it).
/// A missing optional field is `null`; a missing required one is serde's "missing field".
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum RecordIn {
    Put {
        key: Value,
        name: Value,
        template: Value,
        #[serde(default)]
        depends_on: Value,
        #[serde(default)]
        ttl: Value,
        #[serde(default)]
        answers: Value,
        at: Value,
        who: Value,
    },
    Delete {
        key: Value,
        at: Value,
        who: Value,
    },
}

/// A journal line as written (the same shape as [`RecordIn`], borrowed).
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum RecordOut<'a> {
    Put {
        key: &'a str,
        name: String,
        template: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        depends_on: Option<&'a [String]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ttl: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        answers: Option<u8>,
        at: &'a str,
        who: &'a str,
    },
    Delete {
        key: &'a str,
        at: &'a str,
        who: &'a str,
    },
}

/// Why one journal line was not an op.
enum LineError {
    /// Not JSON, or JSON of the wrong shape.
    Json(serde_json::Error),
    /// A record whose fields break the rules.
    Invalid(Vec<String>),
}

impl LineError {
    /// Whether the line is cut short or garbage (what a crash mid-write leaves), as opposed
    /// to complete JSON that says something wrong.
    fn is_torn(&self) -> bool {
        matches!(self, LineError::Json(e) if e.is_eof() || e.is_syntax())
    }

    fn into_reasons(self) -> Vec<String> {
        match self {
            LineError::Json(e) => {
                // serde_json counts lines within the one line it was given: keep the column
                // only. A record of the wrong shape has no position (line 0).
                let text = e.to_string();
                if e.line() == 0 {
                    return vec![format!("invalid record: {text}")];
                }
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let message = text.strip_suffix(&suffix).unwrap_or(&text);
                vec![format!("invalid record: {message} (column {})", e.column())]
            }
            LineError::Invalid(reasons) => reasons,
        }
    }
}

/// Parses a journal (format in the module doc). `path` is only for the problems.
///
/// Returns the ops in order and, when the last line was a torn write and has been skipped, a
/// warning about it; or every problem found (see [`MAX_PROBLEMS`]).
pub(crate) fn parse_journal(
    text: &str,
    path: &Path,
) -> Result<(Vec<JournalOp>, Option<Problem>), Vec<Problem>> {
    let unterminated = !text.ends_with('\n');
    let mut found = Found::default();
    let mut ops = Vec::new();
    let mut torn = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        match journal_record(raw, line) {
            Ok(op) => ops.push(op),
            Err(e) if unterminated && lines.peek().is_none() && e.is_torn() => {
                let reason = e.into_reasons().join("; ");
                torn = Some(Problem::at(
                    path,
                    Some(line),
                    format!(
                        "skipped the torn last line (no final newline; an append cut short): {reason}"
                    ),
                ));
            }
            Err(e) => found.extend(line, e.into_reasons()),
        }
    }
    if found.total == 0 {
        Ok((ops, torn))
    } else {
        Err(found.into_problems(path))
    }
}

/// One journal line (without its newline).
fn journal_record(text: &str, line: usize) -> Result<JournalOp, LineError> {
    let key = |v| json("key", v).and_then(|k: String| identifier("key", &k, Some(MAX_KEY_LEN)));
    // JSON first, the record's shape second: a torn write fails the first step only.
    let value: Value = serde_json::from_str(text).map_err(LineError::Json)?;
    if !value.is_object() {
        return Err(LineError::Invalid(vec![
            "invalid record: not a JSON object".to_owned(),
        ]));
    }
    match RecordIn::deserialize(value).map_err(LineError::Json)? {
        RecordIn::Put {
            key: k,
            name,
            template,
            depends_on,
            ttl,
            answers,
            at,
            who,
        } => {
            let entry = Checked {
                key: key(k),
                name: json("name", name).and_then(|n: String| domain_name(&n)),
                template: json("template", template)
                    .and_then(|t: String| identifier("template", &t, None)),
                depends_on: json("depends_on", depends_on).and_then(|deps: Option<Vec<String>>| {
                    match deps {
                        None => Ok(None),
                        Some(deps) => dependencies(deps.iter().map(String::as_str)),
                    }
                }),
                ttl: json("ttl", ttl).and_then(|t: Option<u64>| t.map(ttl_seconds).transpose()),
                answers: json("answers", answers)
                    .and_then(|a: Option<u64>| a.map(answers_number).transpose()),
            }
            .into_entry(line);
            match (entry, json("at", at), json("who", who)) {
                (Ok(entry), Ok(at), Ok(who)) => Ok(JournalOp::Put { entry, at, who }),
                (entry, at, who) => Err(LineError::Invalid(
                    entry
                        .err()
                        .unwrap_or_default()
                        .into_iter()
                        .chain(at.err())
                        .chain(who.err())
                        .collect(),
                )),
            }
        }
        RecordIn::Delete { key: k, at, who } => match (key(k), json("at", at), json("who", who)) {
            (Ok(key), Ok(at), Ok(who)) => Ok(JournalOp::Delete { key, at, who }),
            (key, at, who) => Err(LineError::Invalid(
                [key.err(), at.err(), who.err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            )),
        },
    }
}

/// One field's JSON value as a `T`, or a reason that names the field.
fn json<T: DeserializeOwned>(field: &str, value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("field {field}: {e}"))
}

/// The journal line for `op`, ending with `\n`. ASCII only; [`parse_journal`] reads it back
/// as the same op (with `line` set to where it lands).
pub(crate) fn journal_line(op: &JournalOp) -> String {
    let record = match op {
        JournalOp::Put { entry, at, who } => RecordOut::Put {
            key: &entry.key,
            name: entry.name.to_ascii(),
            template: &entry.template,
            depends_on: entry.depends_on.as_deref(),
            ttl: entry.ttl,
            answers: entry.answers,
            at,
            who,
        },
        JournalOp::Delete { key, at, who } => RecordOut::Delete { key, at, who },
    };
    let mut out = Vec::with_capacity(192);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    // Cannot fail: serde_json fails only on a failing writer (a Vec never fails) or a map
    // with non-string keys (there are no maps here).
    record
        .serialize(&mut serializer)
        .expect("a journal record serializes");
    out.push(b'\n');
    // AsciiFormatter wrote ASCII, so this never takes the lossy path.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// serde_json's compact output with every non-ASCII character escaped as `\uXXXX` (UTF-16,
/// as JSON wants): a write cut short can then never split a UTF-8 sequence.
struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut units = [0u16; 2];
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if !c.is_ascii() {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// The journal file, open for appending. One writer at a time: nothing here locks the file.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    /// Set when an append failed: the file may end in part of a line, and appending after it
    /// would glue the next line onto it. Opening the journal again repairs the end.
    failed: bool,
}

impl Journal {
    /// Opens the journal at `path`, creating it (and syncing its directory) when missing.
    ///
    /// A last line without a newline is repaired first, so that the next append starts a line
    /// of its own: a torn write (one [`parse_journal`] skips) is cut off, and a complete line
    /// gets its newline. Parse the journal before opening it to hear about a torn write.
    pub(crate) fn open(path: &Path) -> io::Result<Journal> {
        let mut options = OpenOptions::new();
        options.read(true).append(true);
        let mut file = match options.clone().create_new(true).open(path) {
            Ok(file) => {
                // The new directory entry must survive a crash as well as the lines.
                let dir = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                File::open(dir)?.sync_all()?;
                file
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options.open(path)?,
            Err(e) => return Err(e),
        };
        repair_tail(&mut file)?;
        Ok(Journal {
            file,
            failed: false,
        })
    }

    /// Appends the line for `op` and syncs it to disk before returning.
    ///
    /// On an error the op may or may not be on disk, and this journal refuses further appends;
    /// open it again to go on.
    pub(crate) fn append(&mut self, op: &JournalOp) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "an earlier append to the journal failed; open it again",
            ));
        }
        let line = journal_line(op);
        // One write_all of the whole line: with O_APPEND the line lands at the end in one piece
        // unless the system fails part-way, and then only the last line is torn.
        let result = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        self.failed = result.is_err();
        result
    }
}

/// Cuts off a torn last line, or ends a complete last line that lacks its newline.
fn repair_tail(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    // Walk back from the end to just after the last newline.
    let mut start = len;
    let mut chunk = [0u8; 4096];
    while start > 0 {
        let from = start.saturating_sub(chunk.len() as u64);
        let buf = &mut chunk[..(start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(buf)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            start = from + i as u64 + 1;
            break;
        }
        start = from;
    }
    if start == len {
        return Ok(());
    }
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(start))?;
    file.read_to_end(&mut tail)?;
    let torn = match std::str::from_utf8(&tail) {
        Ok(text) => !text.trim().is_empty() && journal_record(text, 0).is_err_and(|e| e.is_torn()),
        // Our lines are ASCII, so this is garbage.
        Err(_) => true,
    };
    if torn {
        file.set_len(start)?;
    } else {
        file.write_all(b"\n")?;
    }
    file.sync_data()
}
