//! The result of one probe: [`ProbeOutcome`] with a [`Failure`] reason when it failed, and the
//! [`DeepDoc`] parsed from a JSON deep-health body.
//!
//! # Deep-health documents
//!
//! When a body is JSON, [`DeepDoc::parse`] keeps its per-dependency results for display and
//! for [`Failure::Dependencies`]. Accepted shapes:
//!
//! - an object with an optional top-level `"status"` and a dependency map under `"checks"`,
//!   `"dependencies"`, `"components"`, `"details"` or `"entries"`, each entry either an object
//!   with a `"status"` (or `"state"`) string/bool or just a string/bool:
//!   `{"status": "healthy", "checks": {"storage": {"status": "healthy"}, "cache": "ok"}}`;
//! - the same keys holding a list `[{"name": "storage", "status": "ok"}, ...]`;
//! - a top-level list `[{"name": "storage", "status": "ok"}, ...]`.
//!
//! A status counts as passing when it is (case-insensitively) `ok`, `healthy`, `up`, `pass`,
//! `passed`, `passing`, `green`, `warn`, `warning`, `true` or `online`; anything else (`down`,
//! `fail`, `unhealthy`, `degraded`, `error`, …) is failing. A top-level `status` that is
//! present and failing fails the probe on its own ([`Failure::DocumentStatus`]), even when the
//! document lists no dependencies; failing dependencies, when there are any, are named instead
//! ([`Failure::Dependencies`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// One probe's result, sent by the prober to the state task.
#[derive(Clone, Debug)]
pub struct ProbeOutcome {
    /// When the probe started.
    pub at: Instant,
    /// How long it took (up to the timeout).
    pub latency: Duration,
    /// Pass, or why it failed.
    pub result: Result<Pass, Failure>,
    /// The deep-health document, when the body was one.
    pub document: Option<Arc<DeepDoc>>,
}

impl ProbeOutcome {
    /// Whether the probe passed.
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }
}

/// A passing probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    /// The HTTP status (None for a TCP connect check).
    pub status: Option<u16>,
}

/// Why a probe failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No complete answer within the timeout.
    Timeout,
    /// The connection could not be made (refused, unreachable, name not resolved).
    Connect(String),
    /// The connection was reset or closed mid-exchange.
    Reset,
    /// TLS handshake or certificate failure.
    Tls(String),
    /// An unexpected HTTP status.
    Status(u16),
    /// A redirect (never followed).
    Redirect {
        /// The 3xx status.
        status: u16,
        /// The `Location` header, if any.
        location: Option<String>,
    },
    /// The body did not match (`body_contains` / `json_field`), with the detail.
    BodyMismatch(String),
    /// The body exceeded the 64 KiB cap.
    BodyTooLarge,
    /// The deep-health document lists failing dependencies.
    Dependencies(Vec<String>),
    /// The deep-health document's top-level `status` is present and not a passing word
    /// (`{"status": "unhealthy"}`), with no failing dependency to name.
    DocumentStatus(String),
    /// Anything else (the detail says what).
    Other(String),
}

impl Failure {
    /// A short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Connect(_) => "connect",
            Failure::Reset => "reset",
            Failure::Tls(_) => "tls",
            Failure::Status(_) => "status",
            Failure::Redirect { .. } => "redirect",
            Failure::BodyMismatch(_) => "body",
            Failure::BodyTooLarge => "body_too_large",
            Failure::Dependencies(_) => "dependencies",
            Failure::DocumentStatus(_) => "document_status",
            Failure::Other(_) => "other",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timeout"),
            Failure::Connect(d) => write!(f, "connect: {d}"),
            Failure::Reset => f.write_str("connection reset"),
            Failure::Tls(d) => write!(f, "tls: {d}"),
            Failure::Status(s) => write!(f, "status {s}"),
            Failure::Redirect {
                status,
                location: Some(l),
            } => write!(f, "redirect {status} to {l}"),
            Failure::Redirect {
                status,
                location: None,
            } => write!(f, "redirect {status}"),
            Failure::BodyMismatch(d) => write!(f, "body mismatch: {d}"),
            Failure::BodyTooLarge => f.write_str("body larger than 64 KiB"),
            Failure::Dependencies(d) => write!(f, "failing dependencies: {}", d.join(", ")),
            Failure::DocumentStatus(s) => write!(f, "deep-health status {s:?}"),
            Failure::Other(d) => f.write_str(d),
        }
    }
}

/// One dependency's result in a deep-health document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepResult {
    /// Dependency name (`storage`, `cache`, ...).
    pub(crate) name: String,
    /// Its status as reported.
    pub(crate) status: String,
    /// Whether that status counts as passing.
    pub(crate) ok: bool,
}

/// A JSON deep-health document, reduced to what is displayed and judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeepDoc {
    /// The top-level status, when present.
    pub status: Option<String>,
    /// Per-dependency results in document order.
    pub dependencies: Vec<DepResult>,
}

const DEP_KEYS: [&str; 5] = ["checks", "dependencies", "components", "details", "entries"];

impl DeepDoc {
    /// Extracts a document from JSON; `None` when it has neither a status nor dependencies.
    pub(crate) fn parse(v: &Value) -> Option<DeepDoc> {
        let (status, deps) = match v {
            Value::Object(m) => {
                let status = m.get("status").and_then(status_text);
                let deps = DEP_KEYS
                    .iter()
                    .find_map(|k| m.get(*k))
                    .map(parse_deps)
                    .unwrap_or_default();
                (status, deps)
            }
            Value::Array(_) => (None, parse_deps(v)),
            _ => return None,
        };
        if status.is_none() && deps.is_empty() {
            return None;
        }
        Some(DeepDoc {
            status,
            dependencies: deps,
        })
    }

    /// Whether the top-level `status` is present and not a passing word: such a document
    /// fails the probe even when it lists no dependencies.
    pub fn status_failing(&self) -> bool {
        self.status.as_deref().is_some_and(|s| !status_ok(s))
    }

    /// Names of failing dependencies.
    pub fn failing(&self) -> Vec<String> {
        self.dependencies
            .iter()
            .filter(|d| !d.ok)
            .map(|d| d.name.clone())
            .collect()
    }
}

/// Whether a reported status string counts as passing.
pub(crate) fn status_ok(s: &str) -> bool {
    const OK: [&str; 11] = [
        "ok", "healthy", "up", "pass", "passed", "passing", "green", "warn", "warning", "true",
        "online",
    ];
    OK.iter().any(|w| w.eq_ignore_ascii_case(s.trim()))
}

fn status_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(m) => m
            .get("status")
            .or_else(|| m.get("state"))
            .and_then(status_text),
        _ => None,
    }
}

fn dep(name: String, v: &Value) -> Option<DepResult> {
    let status = status_text(v)?;
    Some(DepResult {
        ok: status_ok(&status),
        name,
        status,
    })
}

fn parse_deps(v: &Value) -> Vec<DepResult> {
    match v {
        Value::Object(m) => m.iter().filter_map(|(k, v)| dep(k.clone(), v)).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|it| {
                let name = it.get("name").or_else(|| it.get("component"))?.as_str()?;
                dep(name.to_owned(), it)
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_and_display() {
        let cases = [
            (Failure::Timeout, "timeout", "timeout"),
            (
                Failure::Connect("refused".into()),
                "connect",
                "connect: refused",
            ),
            (Failure::Reset, "reset", "connection reset"),
            (Failure::Tls("bad cert".into()), "tls", "tls: bad cert"),
            (Failure::Status(503), "status", "status 503"),
            (
                Failure::Redirect {
                    status: 302,
                    location: Some("/x".into()),
                },
                "redirect",
                "redirect 302 to /x",
            ),
            (
                Failure::Redirect {
                    status: 301,
                    location: None,
                },
                "redirect",
                "redirect 301",
            ),
            (
                Failure::BodyMismatch("no".into()),
                "body",
                "body mismatch: no",
            ),
            (
                Failure::BodyTooLarge,
                "body_too_large",
                "body larger than 64 KiB",
            ),
            (
                Failure::Dependencies(vec!["storage".into(), "auth".into()]),
                "dependencies",
                "failing dependencies: storage, auth",
            ),
            (
                Failure::DocumentStatus("unhealthy".into()),
                "document_status",
                "deep-health status \"unhealthy\"",
            ),
            (Failure::Other("x".into()), "other", "x"),
        ];
        for (f, label, text) in cases {
            assert_eq!(f.label(), label);
            assert_eq!(f.to_string(), text);
        }
    }

    #[test]
    fn doc_shapes() {
        let d = DeepDoc::parse(&json!({
            "status": "unhealthy",
            "checks": {"storage": {"status": "down"}, "cache": "ok", "auth": {"status": "Healthy"}, "db": true}
        }))
        .unwrap();
        assert_eq!(d.status.as_deref(), Some("unhealthy"));
        assert_eq!(d.dependencies.len(), 4);
        assert_eq!(d.failing(), vec!["storage".to_owned()]);

        let d = DeepDoc::parse(&json!({"components": [{"name": "metadata", "status": "FAIL"}, {"name": "cache", "status": "pass"}]})).unwrap();
        assert_eq!(d.status, None);
        assert_eq!(d.failing(), vec!["metadata".to_owned()]);

        let d =
            DeepDoc::parse(&json!([{"name": "a", "status": "UP"}, {"name": "b", "state": "DOWN"}]))
                .unwrap();
        assert_eq!(d.failing(), vec!["b".to_owned()]);

        let d = DeepDoc::parse(&json!({"status": "UP"})).unwrap();
        assert!(d.dependencies.is_empty());
        assert!(d.failing().is_empty());
        assert!(!d.status_failing());

        // A failing top-level status is failing on its own, with or without dependencies.
        let d = DeepDoc::parse(&json!({"status": "unhealthy"})).unwrap();
        assert!(d.dependencies.is_empty());
        assert!(d.status_failing());
        let d = DeepDoc::parse(&json!({"status": false})).unwrap();
        assert!(d.status_failing());
        let d = DeepDoc::parse(&json!({"status": {"state": "DOWN"}})).unwrap();
        assert!(d.status_failing());
        let d = DeepDoc::parse(&json!({"status": "degraded", "checks": {"cache": "ok"}})).unwrap();
        assert!(d.status_failing());
        assert!(d.failing().is_empty());
        // No status at all is not failing (the dependency list decides).
        let d = DeepDoc::parse(&json!({"checks": {"cache": "ok"}})).unwrap();
        assert!(!d.status_failing());

        assert_eq!(DeepDoc::parse(&json!({"hello": 1})), None);
        assert_eq!(DeepDoc::parse(&json!("ok")), None);
        assert_eq!(DeepDoc::parse(&json!([1, 2])), None);
    }

    #[test]
    fn status_words() {
        for w in ["ok", "Healthy", "UP", "pass", "warn", "true", " online "] {
            assert!(status_ok(w), "{w}");
        }
        for w in [
            "down",
            "fail",
            "unhealthy",
            "degraded",
            "error",
            "false",
            "",
        ] {
            assert!(!status_ok(w), "{w}");
        }
    }
}
