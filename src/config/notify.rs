//! `[[notify.webhook]]`: where events are POSTed, signed.
//!
//! ```toml
//! [[notify.webhook]]
//! url = "https://hooks.example.net/steerdns"
//! secret_file = "webhook.secret"   # relative to the config file; the HMAC-SHA256 key
//! events = ["incident", "override", "mode", "reload", "guard", "fleet", "fail_open"]
//! queue = 1024                     # events waiting; more are dropped and counted
//! timeout = "5s"                   # per attempt
//! attempts = 5                     # 1 + retries, with backoff 1s, 2s, 4s … (at most 60s)
//! backoff = "1s"
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::file::Dur;
use crate::problem::Problem;
use crate::state::view::EventKind;

/// `[notify]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotifySpec {
    /// Webhooks, in order.
    #[serde(default)]
    pub(crate) webhook: Vec<WebhookSpec>,
}

/// One `[[notify.webhook]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookSpec {
    /// `http://` or `https://` URL.
    pub(crate) url: String,
    /// File holding the signing key (its first line), relative to the config file.
    pub(crate) secret_file: String,
    /// Event kinds to send (default: all).
    pub(crate) events: Option<Vec<String>>,
    /// Events waiting to be sent (default 1024); beyond, new events are dropped and counted.
    pub(crate) queue: Option<usize>,
    /// Deadline of one attempt (default 5s).
    pub(crate) timeout: Option<Dur>,
    /// Attempts per event, the first included (default 5).
    pub(crate) attempts: Option<u32>,
    /// First retry delay, doubled per retry up to 60s (default 1s).
    pub(crate) backoff: Option<Dur>,
}

/// A validated webhook.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WebhookConfig {
    /// The URL (its label in metrics and logs).
    pub(crate) url: String,
    /// The HMAC-SHA256 key.
    pub(crate) secret: Arc<[u8]>,
    pub(crate) events: Option<Vec<EventKind>>,
    pub(crate) queue: usize,
    pub(crate) timeout: Duration,
    pub(crate) attempts: u32,
    pub(crate) backoff: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl NotifySpec {
    /// Validate, reading the secret files relative to `dir`. Problems name the key.
    pub(crate) fn resolve(
        self,
        dir: &Path,
        problems: &mut Vec<Problem>,
        at: impl Fn(&str, Option<&str>, String) -> Problem,
    ) -> Vec<WebhookConfig> {
        let mut out = Vec::new();
        for w in self.webhook {
            let before = problems.len();
            let mut bad = |key: &str, reason: String| {
                problems.push(at("notify.webhook", Some(key), reason));
            };
            let url_ok = reqwest::Url::parse(&w.url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !url_ok {
                bad(
                    "url",
                    format!(
                        "notify.webhook.url: {:?} is not an http:// or https:// URL",
                        w.url
                    ),
                );
            }
            let path = dir.join(&w.secret_file);
            let secret = match std::fs::read_to_string(&path) {
                Ok(t) => {
                    let line = t.lines().next().unwrap_or("").trim().to_owned();
                    if line.is_empty() {
                        bad(
                            "secret_file",
                            format!("notify.webhook.secret_file: {} is empty", path.display()),
                        );
                    }
                    line.into_bytes()
                }
                Err(e) => {
                    bad(
                        "secret_file",
                        format!(
                            "notify.webhook.secret_file: cannot read {}: {e}",
                            path.display()
                        ),
                    );
                    Vec::new()
                }
            };
            let events = w.events.map(|names| {
                names
                    .iter()
                    .filter_map(|n| {
                        let k = serde_json::from_value::<EventKind>(serde_json::Value::String(n.clone()));
                        if k.is_err() {
                            bad("events", format!(
                                "notify.webhook.events: {n:?} is not an event kind (incident, override, mode, reload, guard, fleet, fail_open, shadow, transition)"
                            ));
                        }
                        k.ok()
                    })
                    .collect()
            });
            let queue = w.queue.unwrap_or(1024);
            if queue == 0 {
                bad("queue", "notify.webhook.queue must be at least 1".into());
            }
            let attempts = w.attempts.unwrap_or(5);
            if attempts == 0 {
                bad(
                    "attempts",
                    "notify.webhook.attempts must be at least 1".into(),
                );
            }
            let timeout = w.timeout.map_or(Duration::from_secs(5), |d| d.0);
            if timeout.is_zero() {
                bad(
                    "timeout",
                    "notify.webhook.timeout must be more than 0s".into(),
                );
            }
            if problems.len() == before {
                out.push(WebhookConfig {
                    url: w.url,
                    secret: secret.into(),
                    events,
                    queue,
                    timeout,
                    attempts,
                    backoff: w.backoff.map_or(Duration::from_secs(1), |d| d.0),
                });
            }
        }
        out
    }
}
