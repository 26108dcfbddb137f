//! `steerdns watch`: follow `/v1/events/stream` and print one line per event, as
//! `steerdns events` prints them. When the connection drops it reconnects after a second and
//! resumes with `Last-Event-ID`, as a browser's `EventSource` does, so no kept event is lost;
//! a `gap` (events no longer kept) is printed as such.

use std::io::Write;
use std::time::Duration;

use super::client::{Client, ClientError, render_events};
use crate::state::view::EventView;

/// One parsed SSE event: its `event:` name and `data:` lines.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Frame {
    pub(crate) event: String,
    pub(crate) data: String,
}

/// Take every complete event (ending with a blank line) off the front of `buf`.
pub(crate) fn frames(buf: &mut String) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let mut f = Frame::default();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                f.event = v.trim_start().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !f.data.is_empty() {
                    f.data.push('\n');
                }
                f.data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if !f.data.is_empty() {
            out.push(f);
        }
    }
    out
}

/// Follow the stream from after `after`, writing lines to `out`, until `count` events (or
/// forever). Fails when the admin API cannot be reached at all.
pub(crate) async fn watch(
    client: &Client,
    after: Option<u64>,
    count: Option<u64>,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| ClientError::Reply(e.to_string()))?;
    let url = format!("{}/v1/events/stream", client.base);
    let mut last = after;
    let mut seen = 0u64;
    let mut connected_once = false;
    loop {
        let mut req = http.get(&url).header("accept", "text/event-stream");
        if let Some(t) = &client.token {
            req = req.bearer_auth(t);
        }
        if let Some(l) = last {
            req = req.header("last-event-id", l.to_string());
        }
        let mut resp = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                return Err(ClientError::Server {
                    status: r.status(),
                    reason: r.text().await.unwrap_or_default(),
                });
            }
            Err(e) if !connected_once => {
                return Err(ClientError::Connect {
                    url: url.clone(),
                    source: e,
                });
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        connected_once = true;
        let mut buf = String::new();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) | Err(_) => break,
            };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            for f in frames(&mut buf) {
                if f.event == "gap" {
                    let _ = writeln!(out, "# {} (events no longer kept)", f.data);
                    continue;
                }
                let Ok(e) = serde_json::from_str::<EventView>(&f.data) else {
                    continue;
                };
                last = Some(e.id);
                let _ = write!(out, "{}", render_events(std::slice::from_ref(&e)));
                let _ = out.flush();
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_on_blank_lines_and_keep_partial_ones() {
        let mut buf = String::from(
            ":keep-alive\n\nid: 3\nevent: incident\ndata: {\"a\":1}\n\nid: 4\nevent: gap\ndata: missed=2\n\nid: 5\nda",
        );
        let f = frames(&mut buf);
        assert_eq!(
            f,
            vec![
                Frame {
                    event: "incident".into(),
                    data: "{\"a\":1}".into()
                },
                Frame {
                    event: "gap".into(),
                    data: "missed=2".into()
                },
            ]
        );
        assert_eq!(buf, "id: 5\nda");
    }
}
