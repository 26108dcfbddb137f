//! Webhooks: every event of the log (`state::events`), or the kinds a `[[notify.webhook]]`
//! names, POSTed as JSON, signed with HMAC-SHA256.
//!
//! Each webhook has its own task and its own bounded queue, filled by the event log with
//! `try_send`: the writer never waits on a receiver, and a receiver that is slow or hangs
//! only fills its own queue, after which new events for it are dropped and counted
//! (`steerdns_webhook_dropped_events`). An attempt has a deadline (`timeout`); a failure
//! (connect error, timeout, 5xx, 408, 429) is retried after `backoff`, doubling, at most
//! 60 s, up to `attempts` in all; any other 4xx is the receiver refusing the event and is not
//! retried.
//!
//! # The request
//!
//! ```text
//! POST URL
//! Content-Type: application/json
//! X-Steerdns-Event: incident
//! X-Steerdns-Event-Id: 42
//! X-Steerdns-Signature: t=1765070000,v1=HEX
//!
//! {"id":42,"at":"…","kind":"incident","message":"…","incident":{…}}
//! ```
//!
//! `v1` is the lower-case hex HMAC-SHA256, keyed with the secret file's first line, of the
//! timestamp `t` (Unix seconds), a `.`, and the body bytes. A receiver recomputes it, compares
//! in constant time and rejects a `t` too far from its clock (replays). The same event is sent
//! with the same `X-Steerdns-Event-Id` on every retry, so a receiver can drop duplicates.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::notify::WebhookConfig;
use crate::metrics::Metrics;
use crate::state::events::EventLog;
use crate::state::view::EventView;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The `X-Steerdns-Signature` value for `body` at Unix time `t`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// Start one sender per webhook, each with its queue on `log`.
pub(crate) fn spawn(
    webhooks: &[WebhookConfig],
    log: &EventLog,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    if webhooks.is_empty() {
        return Vec::new();
    }
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "webhooks: cannot build an HTTP client; no events will be sent");
            return Vec::new();
        }
    };
    webhooks
        .iter()
        .map(|w| {
            let dropped = metrics.webhook_dropped(&w.url);
            let (rx, _) = log.add_sink(
                w.queue,
                w.events.clone(),
                Box::new(move || {
                    dropped.inc();
                }),
            );
            info!(webhook = %w.url, queue = w.queue, "webhook sender started");
            tokio::spawn(run(
                w.clone(),
                rx,
                client.clone(),
                metrics.clone(),
                shutdown.clone(),
            ))
        })
        .collect()
}

async fn run(
    w: WebhookConfig,
    mut rx: mpsc::Receiver<Arc<EventView>>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => return,
            },
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = deliver(&w, &ev, &client, &metrics) => {}
        }
    }
}

/// Send one event, retrying as configured.
async fn deliver(w: &WebhookConfig, ev: &EventView, client: &reqwest::Client, metrics: &Metrics) {
    let body = match serde_json::to_vec(ev) {
        Ok(b) => b,
        Err(e) => {
            warn!(webhook = %w.url, error = %e, "webhook: cannot encode an event");
            return;
        }
    };
    let kind = serde_json::to_value(ev.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut backoff = w.backoff;
    for attempt in 1..=w.attempts {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sent = client
            .post(&w.url)
            .timeout(w.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Steerdns-Event", &kind)
            .header("X-Steerdns-Event-Id", ev.id.to_string())
            .header("X-Steerdns-Signature", signature(&w.secret, t, &body))
            .body(body.clone())
            .send()
            .await;
        let why = match sent {
            Ok(r) if r.status().is_success() => {
                metrics.webhook_delivery(&w.url, "delivered");
                return;
            }
            Ok(r) => {
                let s = r.status();
                let retry = s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429;
                if !retry {
                    warn!(webhook = %w.url, event = ev.id, status = %s, "webhook refused the event; not retried");
                    metrics.webhook_delivery(&w.url, "given_up");
                    return;
                }
                format!("status {s}")
            }
            Err(e) if e.is_timeout() => format!("no answer within {:?}", w.timeout),
            Err(e) => e.to_string(),
        };
        if attempt == w.attempts {
            warn!(webhook = %w.url, event = ev.id, attempts = w.attempts, reason = %why, "webhook: giving up on an event");
            metrics.webhook_delivery(&w.url, "given_up");
            return;
        }
        metrics.webhook_retry(&w.url);
        tracing::debug!(webhook = %w.url, event = ev.id, attempt, reason = %why, "webhook attempt failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 ("Jefe", "what do ya want for nothing?") through the same MAC
    /// the header uses, and the header's shape.
    #[test]
    fn signature_is_hmac_sha256_of_time_dot_body() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let tag = ring::hmac::sign(&key, b"what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let s = signature(b"Jefe", 12, b"{}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let want = ring::hmac::sign(&key, b"12.{}");
        let want: String = want.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(s, format!("t=12,v1={want}"));
    }
}
