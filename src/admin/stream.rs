//! `GET /v1/events/stream`: the event log as Server-Sent Events.
//!
//! Each event is sent as `id: N`, `event: KIND` (`incident`, `override`, `transition`, …) and
//! `data:` the event's JSON (as in `/v1/events`). A client that reconnects with
//! `Last-Event-ID: N` (browsers' `EventSource` do it themselves; `?after=N` does the same for
//! tools) first gets every kept event after N, then the live ones, with no hole and no
//! repeat. When events after N are no longer kept, or the client falls behind the live
//! channel, it gets `event: gap` with `missed=COUNT` (and, when behind, the stream ends with
//! `retry: 200` so that it resumes from the ring). A comment line every 15 s keeps proxies
//! from closing an idle stream. The stream ends when the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Admin, AdminError, admin_error};
use crate::state::view::EventView;

/// Set on the router by `serve`: ends open streams at shutdown (graceful shutdown waits for
/// every response to finish).
#[derive(Clone, Debug)]
pub(super) struct StreamShutdown(pub(super) CancellationToken);

#[derive(Debug, Default, Deserialize)]
pub(super) struct StreamParams {
    after: Option<u64>,
}

fn last_event_id(h: &HeaderMap) -> Option<u64> {
    h.get("last-event-id")?.to_str().ok()?.trim().parse().ok()
}

fn to_event(e: &EventView) -> Event {
    let kind = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "event".into());
    let data = serde_json::to_string(e).unwrap_or_default();
    Event::default().id(e.id.to_string()).event(kind).data(data)
}

fn gap(missed: u64) -> Event {
    Event::default()
        .event("gap")
        .data(format!("missed={missed}"))
}

pub(super) async fn events_stream(
    State(admin): State<Admin>,
    shutdown: Option<axum::Extension<StreamShutdown>>,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let after = match params {
        Ok(Query(p)) => last_event_id(&headers).or(p.after),
        Err(e) => return admin_error(&AdminError::BadRequest(e.body_text())),
    };
    let Some(sub) = admin.context.subscribe(after) else {
        return admin_error(&AdminError::Unavailable("no event log here".into()));
    };
    let stop = shutdown.map_or_else(CancellationToken::new, |s| s.0.0);
    let last = sub.backlog.last().map(|e| e.id).or(after).unwrap_or(0);
    let mut first: Vec<Result<Event, Infallible>> = Vec::with_capacity(sub.backlog.len() + 1);
    if sub.missed > 0 {
        first.push(Ok(gap(sub.missed)));
    }
    first.extend(sub.backlog.iter().map(|e| Ok(to_event(e))));
    let live = stream::unfold(
        (sub.live, last, false, stop),
        |(mut rx, last, done, stop)| async move {
            if done {
                return None;
            }
            loop {
                let got = tokio::select! {
                    _ = stop.cancelled() => return None,
                    got = rx.recv() => got,
                };
                match got {
                    Ok(e) if e.id <= last => continue,
                    Ok(e) => {
                        let id = e.id;
                        return Some((Ok(to_event(&e)), (rx, id, false, stop)));
                    }
                    Err(RecvError::Lagged(n)) => {
                        let ev = gap(n).retry(Duration::from_millis(200));
                        return Some((Ok(ev), (rx, last, true, stop)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    Sse::new(stream::iter(first).chain(live))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
