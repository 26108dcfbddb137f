//! `steerdns incidents [ID]`: the open and recent incidents, or one page of the registries
//! an incident reroutes; `steerdns traffic [REGISTRY]`: who is answered where.

use std::fmt::Write as _;

use crate::state::view::{IncidentView, IncidentsView, RegistryPage};

use super::client::{Client, ClientError};

/// List the incidents (no `id`), or page through incident `id`'s registries.
pub(crate) async fn run(
    client: &Client,
    id: Option<u64>,
    after: Option<&str>,
    limit: Option<usize>,
) -> Result<String, ClientError> {
    let Some(id) = id else {
        return Ok(render_incidents(
            &client.get::<IncidentsView>("/v1/incidents").await?,
        ));
    };
    let mut url = reqwest::Url::parse(&format!("http://steerdns/v1/incidents/{id}/registries"))
        .map_err(|e| ClientError::Reply(e.to_string()))?;
    if let Some(a) = after {
        url.query_pairs_mut().append_pair("after", a);
    }
    if let Some(l) = limit {
        url.query_pairs_mut().append_pair("limit", &l.to_string());
    }
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    Ok(render_page(&client.get::<RegistryPage>(&path).await?))
}

/// One incident a line block: what failed, since when, how many moved, where they go now.
pub(crate) fn render_incidents(v: &IncidentsView) -> String {
    let mut out = String::new();
    if v.open.is_empty() {
        out.push_str("no open incidents\n");
    }
    for i in &v.open {
        incident(&mut out, i);
    }
    if !v.recent.is_empty() {
        out.push_str("\nrecently closed:\n");
        for i in &v.recent {
            incident(&mut out, i);
        }
    }
    out
}

fn incident(out: &mut String, i: &IncidentView) {
    let when = match &i.closed_at {
        Some(c) => format!("{} .. {c}", i.opened_at),
        None => format!("since {}", i.opened_at),
    };
    let flaps = if i.flaps > 0 {
        format!(", {} flaps", i.flaps)
    } else {
        String::new()
    };
    let _ = writeln!(out, "#{:<5} {}  ({when}{flaps})", i.id, i.cause.id);
    if i.open {
        let now: Vec<String> = i
            .answered_now
            .iter()
            .map(|n| {
                let what = match (&n.region, n.fail_open) {
                    (Some(r), _) => r.clone(),
                    (None, true) => "FAIL OPEN".to_string(),
                    (None, false) => "nowhere".to_string(),
                };
                format!("{what} {:.0}%", n.share * 100.0)
            })
            .collect();
        let _ = writeln!(
            out,
            "       {} rerouted from {} -> {}{}",
            crate::state::incident_count(i.registries),
            i.cause.region,
            now.join(", "),
            if i.failing_open > 0 {
                format!("; {} failing open", i.failing_open)
            } else {
                String::new()
            }
        );
        if !i.samples.is_empty() {
            let _ = writeln!(
                out,
                "       e.g. {}  (all: steerdns incidents {})",
                i.samples.join(", "),
                i.id
            );
        }
    } else {
        let _ = writeln!(
            out,
            "       at most {} registries rerouted",
            i.peak_registries
        );
    }
}

/// One page of an incident's registries, one key a line.
pub(crate) fn render_page(p: &RegistryPage) -> String {
    let mut out = String::new();
    for k in &p.registries {
        let _ = writeln!(out, "{k}");
    }
    let _ = writeln!(
        out,
        "# incident {}: {}",
        p.incident,
        crate::state::incident_count(p.total)
    );
    if let Some(next) = &p.next {
        let _ = writeln!(
            out,
            "more: steerdns incidents {} --after {next}",
            p.incident
        );
    }
    out
}

/// Minutes shown per series by `steerdns traffic`.
const LAST: usize = 10;

/// One line per (group, replica): the total and the last minutes, newest last.
pub(crate) fn render_traffic(v: &crate::metrics::traffic::TrafficView) -> String {
    let mut out = String::new();
    let first = if v.registry.is_some() {
        "REGISTRY"
    } else {
        "CLIENT GROUP"
    };
    let _ = writeln!(
        out,
        "{first:<20} {:<16} {:>10}  LAST {LAST} MINUTES (newest last)",
        "ANSWERED", "ANSWERS"
    );
    for s in &v.series {
        let tail: Vec<String> = s
            .answers
            .iter()
            .rev()
            .take(LAST)
            .rev()
            .map(u64::to_string)
            .collect();
        let _ = writeln!(
            out,
            "{:<20} {:<16} {:>10}  {}",
            s.group,
            s.replica,
            s.total,
            tail.join(" ")
        );
    }
    if v.series.is_empty() {
        out.push_str("no answers in this span\n");
    }
    let total: u64 = v.by_replica.values().sum();
    let shares: Vec<String> = v
        .by_replica
        .iter()
        .map(|(r, n)| format!("{r} {:.1}%", *n as f64 * 100.0 / total.max(1) as f64))
        .collect();
    let _ = writeln!(out, "answered: {}", shares.join(", "));
    if v.estimated {
        out.push_str("estimated: 1 answer in 16 sampled, minutes it was among the heaviest\n");
    }
    if !v.top_registries.is_empty() && v.registry.is_none() {
        let _ = writeln!(
            out,
            "\n{:<32} {:>10}  BY CLIENT GROUP -> ANSWERED (estimated)",
            "HEAVIEST REGISTRIES", "ANSWERS"
        );
        for t in &v.top_registries {
            let cells: Vec<String> = t
                .cells
                .iter()
                .take(4)
                .map(|c| format!("{}->{} {}", c.group, c.replica, c.answers))
                .collect();
            let more = if t.cells.len() > 4 { ", ..." } else { "" };
            let _ = writeln!(
                out,
                "{:<32} {:>10}  {}{more}",
                t.registry,
                t.answers,
                cells.join(", ")
            );
        }
    }
    out
}
