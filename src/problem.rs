//! `Problem`: one thing wrong with an input file (config, zone, geo data), with the file, the
//! line when known and the reason. Loading collects every problem rather than stopping at the
//! first, so `steerdns check-config` and a rejected reload can list them all.

use std::fmt;
use std::path::PathBuf;

/// One problem in one file.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Problem {
    /// The file.
    pub(crate) file: PathBuf,
    /// 1-based line number, when the problem can be pinned to a line.
    pub(crate) line: Option<usize>,
    /// What is wrong.
    pub(crate) reason: String,
}

impl Problem {
    /// A problem with a file as a whole.
    pub(crate) fn file(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            reason: reason.into(),
        }
    }

    /// A problem at a line (or at no particular line when `line` is None).
    pub(crate) fn at(
        file: impl Into<PathBuf>,
        line: Option<usize>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl std::error::Error for Problem {}

/// A list of problems, displayed one per line.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Problems(pub(crate) Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl From<Vec<Problem>> for Problems {
    fn from(v: Vec<Problem>) -> Self {
        Self(v)
    }
}
