//! The writer's side of incidents: per changed profile, which cause takes which replica away
//! and where that replica's clients are answered now, handed to the pure core
//! (`state::incidents`); the batch's openings, updates and closings go to the log, the event
//! history and the `steerdns_rerouted_registries` gauge. Also the views of
//! `GET /v1/incidents` and `GET /v1/incidents/ID/registries`.
//!
//! Cost: O(changed profiles × replicas) per writer step, plus O(incidents touched); never a
//! walk of the registries (member counts come from the catalog index).

use std::sync::Arc;
use std::time::SystemTime;

use tracing::{info, warn};

use crate::global::Globals;
use crate::health::book::Resource;
use crate::health::outcome::Failure;
use crate::health::spec::HealthMode;
use crate::health::state::Status;
use crate::overrides::Target;
use crate::overrides::format_time;
use crate::routing::{Locator, distance_km};
use crate::state::HealthMasks;
use crate::state::command::AdminError;
use crate::state::incidents::{Cause, CauseKind, Change, Incident, Now, Part, REGISTRY};
use crate::state::view::{
    CauseView, IncidentEvent, IncidentPage, IncidentQuery, IncidentView, IncidentsView, NowView,
    RegistryPage,
};

use super::apply::World;

/// Sample registry keys shown with an incident.
const SAMPLES: usize = 5;
/// Closed incidents listed by default.
const RECENT: usize = 20;

impl World {
    /// Re-attribute the profiles in `changed` (None: all, after a rebuild or reload) to
    /// causes, then report the batch.
    pub(super) fn note_incidents(
        &mut self,
        g: &Globals,
        new: &HealthMasks,
        changed: Option<&[u32]>,
    ) {
        let now = SystemTime::now();
        let all: Vec<u32>;
        let changed = match changed {
            Some(c) => c,
            None => {
                self.incidents.clear_profiles();
                all = (0..new.profiles.len() as u32).collect();
                &all
            }
        };
        for &p in changed {
            let parts = self.profile_parts(g, new, p, now);
            self.incidents.set_profile(p, parts, now);
        }
        self.override_parts(g, new, now);
        self.report_incidents(now);
    }

    /// Replica overrides of single registries: each registry's part in the incident of its
    /// override. O(active overrides), which operators bound, not registries.
    fn override_parts(&mut self, g: &Globals, new: &HealthMasks, now: SystemTime) {
        let mut parts: std::collections::BTreeMap<u32, Vec<(usize, Cause, Part)>> =
            Default::default();
        for o in self.overrides.active(now) {
            let Target::Replica { registry, replica } = &o.target else {
                continue;
            };
            let Some(reg) = self.registry(g, registry) else {
                continue;
            };
            let Some((set, _)) = g.parts(&reg) else {
                continue;
            };
            let Some(i) = set.replicas.iter().position(|r| *r.key == **replica) else {
                continue;
            };
            let rep = &set.replicas[i];
            let now_at = destination(&self.locator, set, &new.get(&reg), &rep.region);
            let who = if o.reason.is_empty() {
                format!("by {}", o.who)
            } else {
                format!("by {}: {}", o.who, o.reason)
            };
            parts.entry(REGISTRY | reg.id).or_default().push((
                i,
                Cause {
                    id: format!("{registry}/{replica} disabled").into(),
                    kind: CauseKind::ReplicaDisabled,
                    region: rep.region.clone(),
                    resource: format!("{registry}/{replica}").into(),
                    check: format!("operator override {who}").into(),
                },
                Part {
                    registries: 1,
                    now: now_at,
                },
            ));
        }
        let gone: Vec<u32> = self
            .override_contributors
            .iter()
            .copied()
            .filter(|c| !parts.contains_key(c))
            .collect();
        for c in gone {
            self.incidents.set_profile(c, Vec::new(), now);
        }
        self.override_contributors = parts.keys().copied().collect();
        for (c, p) in parts {
            self.incidents.set_profile(c, p, now);
        }
    }

    /// Report what the last batch opened, changed or closed.
    pub(super) fn report_incidents(&mut self, now: SystemTime) {
        for (change, inc) in self.incidents.finish(now) {
            let t = &inc.totals;
            let c = &inc.cause;
            let moved = describe_now(t);
            match change {
                Change::Opened => {
                    warn!(incident = inc.id, cause = %c.id, region = %c.region, registries = t.registries,
                        failing_open = t.failing_open(), now = %moved, "incident opened");
                }
                Change::Updated => {
                    info!(incident = inc.id, cause = %c.id, registries = t.registries,
                        failing_open = t.failing_open(), now = %moved, "incident updated");
                }
                Change::Closed => {
                    info!(incident = inc.id, cause = %c.id, peak = inc.peak, "incident closed");
                }
            }
            let message = match change {
                Change::Opened if inc.flaps > 0 => format!(
                    "incident {} reopened ({} flaps): {}: {} rerouted ({moved})",
                    inc.id,
                    inc.flaps,
                    c.id,
                    count(t.registries)
                ),
                Change::Opened => format!(
                    "incident {} opened: {}: {} rerouted ({moved})",
                    inc.id,
                    c.id,
                    count(t.registries)
                ),
                Change::Updated => format!(
                    "incident {} updated: {}: {} rerouted ({moved})",
                    inc.id,
                    c.id,
                    count(t.registries)
                ),
                Change::Closed => format!(
                    "incident {} closed: {} mended (at most {} rerouted)",
                    inc.id,
                    c.id,
                    count(inc.peak)
                ),
            };
            let view = self.incident_view(&inc);
            self.events.push_incident(
                now,
                message,
                IncidentEvent {
                    change,
                    incident: view,
                },
            );
            let key = (c.region.clone(), c.resource.clone());
            let sum = self.rerouted.entry(key.clone()).or_default();
            // The gauge sums the open incidents of one (region, resource).
            let before = self.reported_rerouted.insert(inc.id, t.registries);
            *sum = *sum - before.unwrap_or(0) + t.registries;
            if change == Change::Closed {
                self.reported_rerouted.remove(&inc.id);
            }
            let value = *sum;
            if value == 0 {
                self.rerouted.remove(&key);
            }
            self.metrics.set_rerouted(&key.0, &key.1, value);
        }
    }

    /// Profile `p`'s parts: for each replica taken away, its cause(s) and where its clients
    /// go now. Empty when nothing is taken away or the profile has no registries.
    fn profile_parts(
        &self,
        g: &Globals,
        new: &HealthMasks,
        p: u32,
        now: SystemTime,
    ) -> Vec<(usize, Cause, Part)> {
        let members = self.index.members().get(p as usize).copied().unwrap_or(0);
        let (Some(m), Some(set)) = (
            new.profiles.get(p as usize),
            g.profiles
                .get(p as usize)
                .and_then(|prof| g.sets.get(prof.set as usize)),
        ) else {
            return Vec::new();
        };
        if members == 0 {
            return Vec::new();
        }
        let mode = self.profile_mode(g, p);
        if mode == HealthMode::Off && m.enabled == m.routable {
            return Vec::new();
        }
        let disabled = self.region_disabled(g, p, now);
        let mut parts = Vec::new();
        for (i, rep) in set.replicas.iter().enumerate() {
            let causes = if disabled.contains(i) {
                vec![Cause {
                    id: format!("region {} disabled", rep.region).into(),
                    kind: CauseKind::RegionDisabled,
                    region: rep.region.clone(),
                    resource: rep.region.clone(),
                    check: "operator override".into(),
                }]
            } else if mode == HealthMode::Off {
                continue;
            } else {
                match self.book.routed_key(p, i, mode) {
                    Some(k) if k.status == Status::Degraded => {
                        let causes = key_causes(&k, &rep.region);
                        if causes.is_empty() {
                            // The last outcome passes while the key still counts its way back
                            // to healthy: the cause it had.
                            self.incidents.causes_of(p, i)
                        } else {
                            causes
                        }
                    }
                    _ => continue,
                }
            };
            let dest = destination(&self.locator, set, m, &rep.region);
            for cause in causes {
                parts.push((
                    i,
                    cause,
                    Part {
                        registries: members,
                        now: dest.clone(),
                    },
                ));
            }
        }
        parts
    }

    //--- views ---------------------------------------------------------------------------------

    /// `GET /v1/incidents`: the open incidents and the most recent closed ones (of one
    /// registry, with `?registry=`).
    pub(super) fn incidents_view(
        &self,
        g: &Globals,
        q: &IncidentQuery,
    ) -> Result<IncidentsView, AdminError> {
        let recent = q.recent.unwrap_or(RECENT);
        let profile = match &q.registry {
            None => None,
            Some(k) => Some(
                self.registry(g, k)
                    .ok_or_else(|| AdminError::NotFound(format!("no registry {k}")))?
                    .profile,
            ),
        };
        let mine = |i: &&Incident| profile.is_none_or(|p| i.ever.contains(&p));
        Ok(IncidentsView {
            open: self
                .incidents
                .open()
                .into_iter()
                .filter(mine)
                .map(|i| self.incident_view(i))
                .collect(),
            recent: self
                .incidents
                .closed()
                .filter(mine)
                .take(recent)
                .map(|i| self.incident_view(i))
                .collect(),
        })
    }

    pub(super) fn incident_view(&self, i: &Incident) -> IncidentView {
        let t = &i.totals;
        let total = t.registries.max(1) as f64;
        let (samples, _) = self.incident_keys(i, None, SAMPLES);
        IncidentView {
            id: i.id,
            open: i.closed.is_none(),
            cause: CauseView {
                id: i.cause.id.to_string(),
                kind: i.cause.kind,
                region: i.cause.region.to_string(),
                resource: i.cause.resource.to_string(),
                check: i.cause.check.to_string(),
            },
            opened_at: format_time(i.opened),
            updated_at: format_time(i.updated),
            closed_at: i.closed.map(format_time),
            flaps: i.flaps,
            registries: t.registries,
            peak_registries: i.peak,
            profiles: i.profiles.keys().filter(|c| **c < REGISTRY).count(),
            failing_open: t.failing_open(),
            answered_now: t
                .now
                .iter()
                .map(|(now, n)| NowView {
                    region: match now {
                        Now::Region(r) => Some(r.to_string()),
                        _ => None,
                    },
                    fail_open: *now == Now::FailOpen,
                    registries: *n,
                    share: (*n as f64 / total * 1000.0).round() / 1000.0,
                })
                .collect(),
            samples: samples.into_iter().map(str::to_owned).collect(),
        }
    }

    /// `GET /v1/incidents/ID/registries`: one page of the registries an open incident
    /// reroutes, by key.
    pub(super) fn incident_registries(
        &self,
        id: u64,
        q: &IncidentPage,
    ) -> Result<RegistryPage, AdminError> {
        let inc = self
            .incidents
            .get(id)
            .ok_or_else(|| AdminError::NotFound(format!("no incident {id}")))?;
        let limit = q
            .limit
            .unwrap_or(crate::state::view::STATUS_PAGE)
            .clamp(1, crate::state::view::STATUS_PAGE_MAX);
        let (keys, more) = self.incident_keys(inc, q.after.as_deref(), limit);
        let next = if more {
            keys.last().map(|k| k.to_string())
        } else {
            None
        };
        Ok(RegistryPage {
            incident: id,
            total: inc.totals.registries,
            registries: keys.into_iter().map(str::to_owned).collect(),
            next,
        })
    }
}

impl World {
    /// The keys of an incident's registries after `after`, in order: its profiles' from the
    /// catalog index, and the single registries of replica overrides.
    fn incident_keys<'a>(
        &'a self,
        i: &Incident,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<&'a str>, bool) {
        let profiles = i.profiles.keys().copied().filter(|c| *c < REGISTRY);
        let (mut keys, _) = self.index.keys_of_profiles(profiles, after, limit + 1);
        keys.extend(
            i.profiles
                .keys()
                .filter(|c| **c >= REGISTRY)
                .filter_map(|c| self.index.key_of_id(c - REGISTRY))
                .filter(|k| after.is_none_or(|a| *k > a)),
        );
        keys.sort_unstable();
        keys.dedup();
        let more = keys.len() > limit;
        keys.truncate(limit);
        (keys, more)
    }
}

/// The causes a degraded key names: the failing dependencies it is judged on, or the whole
/// target when its last outcome is a failure with no dependency named. Empty when the last
/// outcome passes (the key is on its way back).
fn key_causes(k: &crate::health::book::RoutedKey<'_>, region: &Arc<str>) -> Vec<Cause> {
    let check = k.check.to_string();
    let whole = |check: &str| Cause {
        id: format!("{check} [*]").into(),
        kind: CauseKind::Target,
        region: region.clone(),
        resource: "*".into(),
        check: check.into(),
    };
    let Some(last) = k.last else {
        return vec![whole(&check)];
    };
    match &last.result {
        Ok(_) => Vec::new(),
        Err(Failure::Dependencies(failing)) if !failing.is_empty() => {
            let judged: Option<&[String]> = match &k.key.resource {
                Resource::Whole => None,
                Resource::Deps(d) => Some(d),
            };
            failing
                .iter()
                .filter(|f| judged.is_none_or(|d| d.contains(f)))
                .map(|dep| Cause {
                    id: format!("{check} [{dep}]").into(),
                    kind: CauseKind::Dependency,
                    region: region.clone(),
                    resource: dep.as_str().into(),
                    check: check.as_str().into(),
                })
                .collect()
        }
        Err(_) => vec![whole(&check)],
    }
}

/// Where the clients of the replica in region `from` are answered with masks `m`: all
/// enabled replicas when failing open, else the nearest routable one (or nowhere).
fn destination(
    locator: &Locator,
    set: &crate::global::ReplicaSet,
    m: &crate::health::book::Masks,
    from: &str,
) -> Now {
    if m.fail_open {
        return Now::FailOpen;
    }
    nearest(
        locator,
        from,
        set.replicas
            .iter()
            .enumerate()
            .filter(|(j, _)| m.routable.contains(*j))
            .map(|(_, r)| &r.region),
    )
}

/// The routable replica nearest to `from` (by the regions' coordinates, as clients near the
/// failed replica would rank them); `Nowhere` when none is routable.
fn nearest<'a>(locator: &Locator, from: &str, routable: impl Iterator<Item = &'a Arc<str>>) -> Now {
    let regions = locator.regions();
    let origin = regions.id(from).and_then(|id| regions.get(id));
    let mut best: Option<(f64, &Arc<str>)> = None;
    for r in routable {
        let d = match (origin, regions.id(r).and_then(|id| regions.get(id))) {
            (Some(_), Some(_)) if **r == *from => 0.0,
            (Some(o), Some(to)) => distance_km(o.latitude, o.longitude, to),
            _ => f64::MAX,
        };
        if best.is_none_or(|(b, _)| d < b) {
            best = Some((d, r));
        }
    }
    best.map_or(Now::Nowhere, |(_, r)| Now::Region(r.clone()))
}

/// `1 registry`, `60000 registries`.
pub(crate) fn count(n: u64) -> String {
    if n == 1 {
        "1 registry".to_string()
    } else {
        format!("{n} registries")
    }
}

/// `eastus 60%, fail open 40%`.
fn describe_now(t: &crate::state::incidents::Totals) -> String {
    let total = t.registries.max(1) as f64;
    t.now
        .iter()
        .map(|(now, n)| {
            let what = match now {
                Now::Region(r) => r.to_string(),
                Now::FailOpen => "fail open".to_string(),
                Now::Nowhere => "nowhere".to_string(),
            };
            format!("{what} {:.0}%", *n as f64 / total * 100.0)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
