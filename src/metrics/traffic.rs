//! Traffic per minute for the last 24 hours: answers by (client group × answered replica),
//! and by (registry × answered replica) for the registries that have series of their own
//! (config-file registries and `[admin] metrics_registries`).
//!
//! The answer path gains nothing: it already bumps per-thread cells by (client label ×
//! replica key) and by (registry, replica) ([`ReplicaCounters`](super::ReplicaCounters)).
//! Once a minute a sampler folds the shards into totals (the same sum a scrape makes, bounded
//! by labels × replica keys and by replica sets, never by registries) and keeps the
//! difference from the previous minute. The client group is the client's label: its
//! latency-table region, or its mmdb country or continent code; the answered replica is the
//! replica key (the region name in templates).
//!
//! The heaviest registries: one answer in 16 samples (registry, client label, answered
//! replica) into a per-thread sketch of fixed size (see `ReplicaCounters::sample_registry`);
//! each minute the sketch is drained, the ids resolved to keys by the writer, and the top
//! [`TOP`] registries kept with estimated counts by (client group × answered replica), so a
//! heavy registry has the same series as an allow-listed one, estimated, for the minutes it
//! was among the heaviest.
//!
//! Memory: at most [`MINUTES`] minutes of the non-zero cells and [`TOP`] registries (each
//! with at most the cells the sketch held: 1 024 per answering thread), group and replica
//! names interned.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::Metrics;
use super::hot::{KeyTotals, RegistryClientTotals, Totals};

/// Minutes kept: 24 hours.
pub const MINUTES: usize = 24 * 60;
/// Heavy hitters kept per minute.
pub const TOP: usize = 20;

/// One minute's non-zero cells: (row name, replica name, answers), names interned.
#[derive(Debug, Default)]
struct Minute {
    /// Unix seconds of its start.
    start: u64,
    client: Vec<(u32, u32, u64)>,
    registry: Vec<(u32, u32, u64)>,
    /// Allow-listed registries by client group: (registry, group, replica, answers).
    registry_client: Vec<(u32, u32, u32, u64)>,
    /// The heaviest registries of the minute. Their keys are not interned: the interned
    /// names are labels, replica keys and allow-listed registries, a bounded set; heavy
    /// hitters change over a day and would make it grow with the registries seen.
    top: Vec<TopMinute>,
}

/// One heavy registry in one minute.
#[derive(Debug)]
struct TopMinute {
    key: Arc<str>,
    answers: u64,
    /// (group, replica, estimated answers), names interned.
    cells: Vec<(u32, u32, u64)>,
}

/// A heavy registry of a closed minute, as the sampler hands it over: its key, estimated
/// answers, and those by (client group, answered replica).
#[derive(Clone, Debug)]
pub struct Heavy {
    pub key: String,
    pub answers: u64,
    pub cells: Vec<(Arc<str>, Arc<str>, u64)>,
}

#[derive(Debug, Default)]
struct Store {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
    /// Totals at the last sample.
    last: Option<Totals>,
    minutes: VecDeque<Minute>,
}

impl Store {
    fn id(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&i) = self.ids.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.clone());
        self.ids.insert(name.clone(), i);
        i
    }

    fn delta(&mut self, now: &KeyTotals, before: Option<&KeyTotals>) -> Vec<(u32, u32, u64)> {
        let mut out = Vec::new();
        for (k, v) in now {
            let d = v.saturating_sub(before.and_then(|b| b.get(k).copied()).unwrap_or(0));
            if d > 0 {
                out.push((self.id(&k.0), self.id(&k.1), d));
            }
        }
        out.sort_unstable();
        out
    }

    fn delta3(
        &mut self,
        now: &RegistryClientTotals,
        before: Option<&RegistryClientTotals>,
    ) -> Vec<(u32, u32, u32, u64)> {
        let mut out = Vec::new();
        for (k, v) in now {
            let d = v.saturating_sub(before.and_then(|b| b.get(k).copied()).unwrap_or(0));
            if d > 0 {
                out.push((self.id(&k.0), self.id(&k.1), self.id(&k.2), d));
            }
        }
        out.sort_unstable();
        out
    }

    /// A minute from the totals `now` and the ones before it.
    fn minute(&mut self, start: u64, now: &Totals, before: Option<&Totals>) -> Minute {
        Minute {
            start,
            client: self.delta(&now.client, before.map(|b| &b.client)),
            registry: self.delta(&now.replica, before.map(|b| &b.replica)),
            registry_client: self.delta3(&now.registry_client, before.map(|b| &b.registry_client)),
            top: Vec::new(),
        }
    }
}

/// `GET /v1/traffic` query.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct TrafficQuery {
    /// Only this registry (it must have series of its own).
    #[serde(default)]
    pub registry: Option<String>,
    /// From this time on: Unix seconds, or RFC 3339 (default: the last 60 minutes).
    #[serde(default)]
    pub since: Option<String>,
    /// `replica`: one series per answered replica (groups summed, as `*`), for charts.
    #[serde(default)]
    pub by: Option<String>,
}

/// One series: answers per minute for one (group or registry, answered replica).
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct TrafficSeries {
    /// The client group (or, with `?registry=`, the registry).
    pub group: String,
    /// The answered replica (its key: the region, in templates).
    pub replica: String,
    /// Answers in each minute of `minutes`.
    pub answers: Vec<u64>,
    /// Their sum.
    pub total: u64,
}

/// `GET /v1/traffic`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
pub struct TrafficView {
    /// The registry asked for, if any.
    #[serde(default)]
    pub registry: Option<String>,
    /// Start of each minute (Unix seconds), oldest first; the last one is the minute in
    /// progress (counted up to now).
    pub minutes: Vec<u64>,
    /// Non-empty series, by group then replica.
    pub series: Vec<TrafficSeries>,
    /// Answers per answered replica over the whole span.
    pub by_replica: BTreeMap<String, u64>,
    /// Answers per client group over the whole span.
    pub by_group: BTreeMap<String, u64>,
    /// The heaviest registries over the closed minutes of the span, estimated from the
    /// sampled sketch (±1/16 of the answers plus what other registries of the same bucket
    /// took), largest first.
    pub top_registries: Vec<TopRegistry>,
    /// True when `series` are estimates: `?registry=` named a registry without series of
    /// its own that was among the heaviest in some minute (the other minutes show 0).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

/// One heavy hitter.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct TopRegistry {
    /// Its key.
    pub registry: String,
    /// Estimated answers.
    pub answers: u64,
    /// Estimated answers by (client group × answered replica), largest first.
    #[serde(default)]
    pub cells: Vec<TrafficCell>,
}

/// Answers for one (client group, answered replica).
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct TrafficCell {
    pub group: String,
    pub replica: String,
    pub answers: u64,
}

/// The per-minute traffic record; one per process, beside [`Metrics`].
#[derive(Debug)]
pub struct Traffic {
    metrics: Arc<Metrics>,
    store: Mutex<Store>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Traffic {
    /// A record of `metrics`' answer counters, starting now.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        let t = Arc::new(Self {
            metrics,
            store: Mutex::new(Store::default()),
        });
        t.sample(None, Vec::new());
        t
    }

    /// Close the minute that started at `start` (None: just take the baseline), with its
    /// heaviest registries `top`.
    pub fn sample(&self, start: Option<u64>, top: Vec<Heavy>) {
        let totals = self.metrics.answer_totals();
        let mut s = self.store.lock();
        let last = s.last.take();
        if let Some(start) = start {
            let mut m = s.minute(start, &totals, last.as_ref());
            m.top = top
                .into_iter()
                .take(TOP)
                .map(|h| TopMinute {
                    key: Arc::from(h.key),
                    answers: h.answers,
                    cells: h
                        .cells
                        .iter()
                        .map(|(g, r, n)| (s.id(g), s.id(r), *n))
                        .collect(),
                })
                .collect();
            if s.minutes.len() == MINUTES {
                s.minutes.pop_front();
            }
            s.minutes.push_back(m);
        }
        s.last = Some(totals);
    }

    /// Close the minute that started at `start`: drain the heavy-hitter sketch, have the
    /// writer (`commands`) name its registries, and record the minute.
    pub async fn close_minute(
        &self,
        start: u64,
        commands: &tokio::sync::mpsc::Sender<crate::state::command::Command>,
    ) {
        let hitters: Vec<_> = self.metrics.take_hitters().into_iter().take(TOP).collect();
        let mut top = Vec::with_capacity(hitters.len());
        if !hitters.is_empty() {
            let (reply, keys) = tokio::sync::oneshot::channel();
            let ids = hitters.iter().map(|h| h.id).collect();
            let asked = commands
                .send(crate::state::command::Command::RegistryKeys { ids, reply })
                .await;
            if asked.is_ok()
                && let Ok(keys) = keys.await
            {
                top = keys
                    .into_iter()
                    .zip(hitters)
                    .filter_map(|(k, h)| {
                        Some(Heavy {
                            key: k?,
                            answers: h.answers,
                            cells: h.cells,
                        })
                    })
                    .collect();
            }
        }
        self.sample(Some(start), top);
    }

    /// The minutes from `q.since` (default: the last hour) to now, the minute in progress
    /// last. Errors say what is wrong with the query.
    pub fn view(&self, q: &TrafficQuery, now: SystemTime) -> Result<TrafficView, String> {
        let now_s = unix(now);
        let since = match &q.since {
            None => now_s.saturating_sub(3600),
            Some(t) => match t.parse::<u64>() {
                Ok(s) => s,
                Err(_) => humantime::parse_rfc3339_weak(t)
                    .map(unix)
                    .map_err(|_| format!("since: {t:?} is neither Unix seconds nor RFC 3339"))?,
            },
        };
        let totals = self.metrics.answer_totals();
        let mut s = self.store.lock();
        // The minute in progress: the difference from the last sample.
        let current_start = now_s - now_s % 60;
        let last = s.last.clone().unwrap_or_default();
        let partial = s.minute(current_start, &totals, Some(&last));
        // A registry without series of its own shows its estimates from the minutes it was
        // among the heaviest.
        let mut heavy: Option<&str> = None;
        let registry_id = match &q.registry {
            None => None,
            Some(r) => {
                let name: Arc<str> = r.as_str().into();
                let known = totals.replica.keys().any(|(k, _)| **k == **r);
                if !known {
                    let was_heavy = s
                        .minutes
                        .iter()
                        .filter(|m| m.start + 60 > since)
                        .any(|m| m.top.iter().any(|t| *t.key == **r));
                    if !was_heavy {
                        return Err(format!(
                            "registry {r} has no series of its own and was not among the {TOP} heaviest in this span: add it to [admin] metrics_registries"
                        ));
                    }
                    heavy = Some(r.as_str());
                }
                Some(s.id(&name))
            }
        };
        let by_replica = match q.by.as_deref() {
            None | Some("group") => false,
            Some("replica") => true,
            Some(other) => return Err(format!("by: {other:?} is not group or replica")),
        };
        let all = s.id(&Arc::from("*"));
        let minutes: Vec<&Minute> = s
            .minutes
            .iter()
            .filter(|m| m.start + 60 > since)
            .chain(std::iter::once(&partial))
            .collect();
        // A registry with client groups (the allow-list) shows them; one without (a config
        // file's registry) shows its replicas under the group `*`.
        let grouped = registry_id.is_some_and(|r| {
            minutes
                .iter()
                .any(|m| m.registry_client.iter().any(|c| c.0 == r))
        });
        let mut series: BTreeMap<(u32, u32), Vec<u64>> = BTreeMap::new();
        for (i, m) in minutes.iter().enumerate() {
            let cells: Vec<(u32, u32, u64)> = match registry_id {
                Some(_) if heavy.is_some() => m
                    .top
                    .iter()
                    .filter(|t| Some(&*t.key) == heavy)
                    .flat_map(|t| t.cells.iter().copied())
                    .collect(),
                Some(r) if grouped => m
                    .registry_client
                    .iter()
                    .filter(|c| c.0 == r)
                    .map(|c| (c.1, c.2, c.3))
                    .collect(),
                Some(r) => m
                    .registry
                    .iter()
                    .filter(|c| c.0 == r)
                    .map(|c| (all, c.1, c.2))
                    .collect(),
                None => m.client.clone(),
            };
            for (row, col, n) in cells {
                let row = if by_replica { all } else { row };
                series
                    .entry((row, col))
                    .or_insert_with(|| vec![0; minutes.len()])[i] += n;
            }
        }
        let mut view = TrafficView {
            registry: q.registry.clone(),
            minutes: minutes.iter().map(|m| m.start).collect(),
            estimated: heavy.is_some(),
            ..TrafficView::default()
        };
        /// A heavy registry over the span: answers, and those by (group, replica).
        type Summed = (u64, BTreeMap<(u32, u32), u64>);
        let mut top: BTreeMap<&str, Summed> = BTreeMap::new();
        for m in &minutes {
            for t in &m.top {
                let e = top.entry(&*t.key).or_default();
                e.0 += t.answers;
                for &(g, r, n) in &t.cells {
                    *e.1.entry((g, r)).or_default() += n;
                }
            }
        }
        let mut top: Vec<_> = top.into_iter().collect();
        top.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
        view.top_registries = top
            .into_iter()
            .take(TOP)
            .map(|(k, (answers, cells))| {
                let mut cells: Vec<TrafficCell> = cells
                    .into_iter()
                    .map(|((g, r), answers)| TrafficCell {
                        group: s.names[g as usize].to_string(),
                        replica: s.names[r as usize].to_string(),
                        answers,
                    })
                    .collect();
                cells.sort_by_key(|c| std::cmp::Reverse(c.answers));
                TopRegistry {
                    registry: k.to_string(),
                    answers,
                    cells,
                }
            })
            .collect();
        for ((row, col), answers) in series {
            let total: u64 = answers.iter().sum();
            let group = s.names[row as usize].to_string();
            let replica = s.names[col as usize].to_string();
            *view.by_replica.entry(replica.clone()).or_default() += total;
            *view.by_group.entry(group.clone()).or_default() += total;
            view.series.push(TrafficSeries {
                group,
                replica,
                answers,
                total,
            });
        }
        Ok(view)
    }
}

/// Close a minute of `traffic` at every minute boundary until `shutdown`.
pub async fn run_sampler(
    traffic: Arc<Traffic>,
    commands: tokio::sync::mpsc::Sender<crate::state::command::Command>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let now = unix(SystemTime::now());
        let next = now - now % 60 + 60;
        let wait = Duration::from_secs(next - now);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        traffic.close_minute(next - 60, &commands).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::{ClientLabels, RegistryKeys, ReplicaCounters};

    /// Answers bumped between samples land in the minute they were counted in; the minute in
    /// progress shows what was counted since the last sample; old minutes fall out of `since`.
    #[test]
    fn minutes_hold_the_differences_between_samples() {
        let m = Arc::new(Metrics::new());
        let c = Arc::new(ReplicaCounters::new(
            &[RegistryKeys {
                key: "contoso".into(),
                replicas: vec!["westeurope".into(), "eastus".into()],
            }],
            ClientLabels::new(["demo-ams", "demo-nyc"]),
        ));
        m.install_replica_counters(c.clone());
        let ams = c.labels().index(Some("demo-ams"));
        let nyc = c.labels().index(Some("demo-nyc"));
        let t = Traffic::new(m);
        for _ in 0..3 {
            c.answer(0, 0, 0, ams);
        }
        let heavy = |k: &str, cells: &[(&str, &str, u64)]| Heavy {
            key: k.into(),
            answers: cells.iter().map(|c| c.2).sum(),
            cells: cells
                .iter()
                .map(|&(g, r, n)| (Arc::from(g), Arc::from(r), n))
                .collect(),
        };
        t.sample(
            Some(600),
            vec![heavy("contoso", &[("demo-ams", "westeurope", 48)])],
        );
        c.answer(0, 0, 1, nyc);
        c.answer(0, 0, 1, ams);
        t.sample(
            Some(660),
            vec![
                heavy("contoso", &[("demo-nyc", "eastus", 16)]),
                heavy(
                    "fabrikam",
                    &[("demo-ams", "westeurope", 16), ("demo-nyc", "eastus", 16)],
                ),
            ],
        );
        c.answer(0, 0, 0, ams);
        let now = UNIX_EPOCH + Duration::from_secs(725);
        let q = TrafficQuery {
            since: Some("0".into()),
            ..Default::default()
        };
        let v = t.view(&q, now).unwrap();
        assert_eq!(v.minutes, [600, 660, 720]);
        let cell = |g: &str, r: &str| {
            v.series
                .iter()
                .find(|s| s.group == g && s.replica == r)
                .map(|s| s.answers.clone())
        };
        assert_eq!(cell("demo-ams", "westeurope"), Some(vec![3, 0, 1]));
        assert_eq!(cell("demo-ams", "eastus"), Some(vec![0, 1, 0]));
        assert_eq!(cell("demo-nyc", "eastus"), Some(vec![0, 1, 0]));
        assert_eq!(v.by_group["demo-ams"], 5);
        let top: Vec<(&str, u64)> = v
            .top_registries
            .iter()
            .map(|t| (t.registry.as_str(), t.answers))
            .collect();
        assert_eq!(top, [("contoso", 64), ("fabrikam", 32)]);
        let cells: Vec<(&str, &str, u64)> = v.top_registries[0]
            .cells
            .iter()
            .map(|c| (c.group.as_str(), c.replica.as_str(), c.answers))
            .collect();
        assert_eq!(
            cells,
            [("demo-ams", "westeurope", 48), ("demo-nyc", "eastus", 16)]
        );
        // A heavy registry without series of its own: its estimated series by group and
        // replica, 0 in the minutes it was not among the heaviest.
        let q = TrafficQuery {
            registry: Some("fabrikam".into()),
            since: Some("0".into()),
            by: None,
        };
        let v = t.view(&q, now).unwrap();
        assert!(v.estimated);
        let series: Vec<(&str, &str, &[u64])> = v
            .series
            .iter()
            .map(|s| (s.group.as_str(), s.replica.as_str(), s.answers.as_slice()))
            .collect();
        assert_eq!(
            series,
            [
                ("demo-ams", "westeurope", &[0, 16, 0][..]),
                ("demo-nyc", "eastus", &[0, 16, 0][..])
            ]
        );
        // Out of the span it was heavy in: an error that says so.
        let q = TrafficQuery {
            registry: Some("fabrikam".into()),
            since: Some("720".into()),
            by: None,
        };
        assert!(t.view(&q, now).unwrap_err().contains("heaviest"));
        // Per registry: its own series, by replica.
        let q = TrafficQuery {
            registry: Some("contoso".into()),
            since: Some("660".into()),
            by: None,
        };
        let v = t.view(&q, now).unwrap();
        assert_eq!(v.minutes, [660, 720]);
        assert_eq!(v.by_replica["eastus"], 2);
        assert_eq!(v.by_replica["westeurope"], 1);
        let q = TrafficQuery {
            by: Some("replica".into()),
            since: Some("0".into()),
            ..Default::default()
        };
        let v = t.view(&q, now).unwrap();
        assert_eq!(v.series.len(), 2, "{v:?}");
        assert!(v.series.iter().all(|s| s.group == "*"));
        assert_eq!(v.by_replica["westeurope"], 4);
        let q = TrafficQuery {
            registry: Some("x".into()),
            ..Default::default()
        };
        assert!(t.view(&q, now).is_err());
        let bad = TrafficQuery {
            since: Some("soon".into()),
            ..Default::default()
        };
        assert!(t.view(&bad, now).unwrap_err().contains("since"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod allow_list_tests {
    use super::*;
    use crate::metrics::{ClientLabels, RegistryKeys, ReplicaCounters};

    /// An allow-listed registry's answers are kept by client group and replica; a registry
    /// with series of its own but no groups (a config file's) shows its replicas under `*`.
    #[test]
    fn allow_listed_registries_have_client_groups() {
        let m = Arc::new(Metrics::new());
        let keys = |k: &str| RegistryKeys {
            key: k.into(),
            replicas: vec!["westeurope".into(), "eastus".into()],
        };
        let c = Arc::new(ReplicaCounters::with_registries(
            &[keys("template/fleet"), keys("contoso")],
            &[(42, keys("alpha"))],
            ClientLabels::new(["NL", "US"]),
            2,
        ));
        m.install_replica_counters(c.clone());
        let nl = c.labels().index(Some("NL"));
        let us = c.labels().index(Some("US"));
        let t = Traffic::new(m);
        for (shard, label, replica) in [(0, nl, 0), (1, nl, 0), (0, us, 1), (1, nl, 1)] {
            c.answer(shard, 0, replica, label);
            c.answer_registry(shard, 42, replica, label);
        }
        c.answer(0, 1, 0, us);
        c.answer_registry(0, 7, 0, us); // not allow-listed: nothing
        let now = UNIX_EPOCH + Duration::from_secs(90);
        let q = |r: &str| TrafficQuery {
            registry: Some(r.into()),
            since: Some("0".into()),
            by: None,
        };
        let v = t.view(&q("alpha"), now).unwrap();
        let cell = |v: &TrafficView, g: &str, r: &str| {
            v.series
                .iter()
                .find(|s| s.group == g && s.replica == r)
                .map_or(0, |s| s.total)
        };
        assert_eq!(cell(&v, "NL", "westeurope"), 2);
        assert_eq!(cell(&v, "NL", "eastus"), 1);
        assert_eq!(cell(&v, "US", "eastus"), 1);
        assert_eq!(v.by_group["NL"], 3);
        let v = t.view(&q("contoso"), now).unwrap();
        assert_eq!(cell(&v, "*", "westeurope"), 1, "{v:?}");
    }
}
