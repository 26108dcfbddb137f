//! `GET /v1/status`: one page of registries by key, filtered by state, and a summary over all
//! of them computed from the profiles and their member counts (O(profiles), not registries).

use std::collections::BTreeMap;
use std::time::SystemTime;

use tokio::time::Instant;

use crate::global::{Globals, Registry};
use crate::health::book::{KeyDetail, Masks, Resource};
use crate::health::spec::HealthMode;
use crate::health::state::Status;
use crate::state::Snapshot;
use crate::state::command::AdminError;
use crate::state::view::{
    DependencyView, FleetReplicaView, OverrideView, ProbeView, RegistryStatus, ReplicaState,
    ReplicaStatus, ResourceStatus, STATUS_PAGE, STATUS_PAGE_MAX, ServerFacts, ShadowView,
    StatusQuery, StatusSummary, StatusView, WallClock, ZoneFact,
};

use super::apply::World;

impl World {
    //--- status ------------------------------------------------------------------------------

    pub(super) fn status(
        &self,
        snap: &Snapshot,
        q: &StatusQuery,
        ready: bool,
    ) -> Result<StatusView, AdminError> {
        let g = &snap.globals;
        let now = Instant::now();
        let clock = WallClock::now();
        let now_wall = SystemTime::now();
        let mut zones: Vec<ZoneFact> = snap
            .zones
            .zones()
            .map(|z| ZoneFact {
                origin: z.origin().to_ascii(),
                serial: z.serial(),
                file: z.file().display().to_string(),
            })
            .collect();
        zones.sort_by(|a, b| a.origin.cmp(&b.origin));
        let limit = q.limit.unwrap_or(STATUS_PAGE).clamp(1, STATUS_PAGE_MAX);
        // Per profile: each replica's routed state (cheap filter for `?state=`).
        let profile_states: Vec<Vec<ReplicaState>> = (0..g.profiles.len() as u32)
            .map(|p| self.replica_states(g, p, None, now_wall))
            .collect();
        let mut registries = Vec::new();
        let mut next = None;
        let mut candidates: Box<dyn Iterator<Item = (&str, &[u8])>> = match (&q.registry, &q.prefix)
        {
            (Some(k), _) => Box::new(self.index.name_of(k).map(|n| (k.as_str(), n)).into_iter()),
            (None, Some(prefix)) => {
                // Keys sort as text: the matches are one run, from the prefix on.
                let start = match q.after.as_deref() {
                    Some(a) if a >= prefix.as_str() => Some(a),
                    _ => None,
                };
                let from: Box<dyn Iterator<Item = (&str, &[u8])>> = if start.is_some() {
                    Box::new(self.index.keys_after(start))
                } else {
                    Box::new(self.index.keys_from(prefix))
                };
                let prefix = prefix.clone();
                Box::new(from.take_while(move |(k, _)| k.starts_with(prefix.as_str())))
            }
            (None, None) => match q.state {
                // By state alone: the registries of the profiles in that state, from the
                // (profile, key) index, plus the exceptions (overridden registries, checked
                // one by one below): O(profiles × page), never a walk of the registries.
                Some(want) => {
                    let matching = profile_states
                        .iter()
                        .enumerate()
                        .filter(|(_, st)| st.contains(&want))
                        .map(|(p, _)| p as u32);
                    let after = q.after.as_deref();
                    let exceptions = snap.health.exceptions.len();
                    let (mut keys, _) =
                        self.index
                            .keys_of_profiles(matching, after, limit + 1 + exceptions);
                    keys.extend(
                        snap.health
                            .exceptions
                            .keys()
                            .filter_map(|id| self.index.key_of_id(*id))
                            .filter(|k| after.is_none_or(|a| *k > a)),
                    );
                    keys.sort_unstable();
                    keys.dedup();
                    Box::new(
                        keys.into_iter()
                            .filter_map(|k| self.index.name_of(k).map(|n| (k, n))),
                    )
                }
                None => Box::new(self.index.keys_after(q.after.as_deref())),
            },
        };
        if q.registry.is_some()
            && self
                .index
                .name_of(q.registry.as_deref().unwrap_or(""))
                .is_none()
        {
            return Err(AdminError::NotFound(format!(
                "no registry {}",
                q.registry.as_deref().unwrap_or("")
            )));
        }
        for (key, wire) in candidates.by_ref() {
            let Some(reg) = g.find(wire) else { continue };
            let exceptional = snap.health.exceptions.contains_key(&reg.id);
            if let Some(want) = q.state {
                let states = if exceptional {
                    self.replica_states(g, reg.profile, Some(reg), now_wall)
                } else {
                    profile_states
                        .get(reg.profile as usize)
                        .cloned()
                        .unwrap_or_default()
                };
                if !states.contains(&want) {
                    continue;
                }
            }
            if registries.len() == limit {
                next = registries.last().map(|r: &RegistryStatus| r.key.clone());
                break;
            }
            registries.push(self.registry_status(snap, key, reg, now, now_wall, &clock));
        }
        Ok(StatusView {
            server: ServerFacts {
                version: env!("CARGO_PKG_VERSION").to_string(),
                config_generation: snap.generation,
                config_path: snap.config.path.display().to_string(),
                started_at: self.started_at.clone(),
                ready,
                zones,
            },
            mode: self.modes.server.map_or_else(
                || {
                    crate::health::spec::resolve(&[&snap.config.health])
                        .map(|s| s.mode.to_string())
                        .unwrap_or_default()
                },
                |m| m.to_string(),
            ),
            guard_engaged: snap.health.guard_engaged,
            registries,
            summary: self.summary(snap, &profile_states, now_wall),
            next,
            fleet: self.fleet_status.clone(),
        })
    }

    /// Each replica's state for profile `p` (or registry `reg` with its exception).
    pub(super) fn replica_states(
        &self,
        g: &Globals,
        p: u32,
        reg: Option<&Registry>,
        now_wall: SystemTime,
    ) -> Vec<ReplicaState> {
        let Some(set) = g
            .profiles
            .get(p as usize)
            .and_then(|pr| g.sets.get(pr.set as usize))
        else {
            return Vec::new();
        };
        let mode = reg
            .and_then(|r| self.modes.registries.get(r.key()).copied())
            .unwrap_or_else(|| self.profile_mode(g, p));
        set.replicas
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let key = reg.map_or("", |r| r.key());
                let over = self.overrides.is_disabled(key, &r.key, &r.region, now_wall);
                if over.is_some() {
                    ReplicaState::Disabled
                } else {
                    self.book.routed_status(p, i, mode).into()
                }
            })
            .collect()
    }

    pub(super) fn registry_status(
        &self,
        snap: &Snapshot,
        key: &str,
        reg: &Registry,
        now: Instant,
        now_wall: SystemTime,
        clock: &WallClock,
    ) -> RegistryStatus {
        let g = &snap.globals;
        let masks = snap.health.get(reg);
        let mode = self
            .modes
            .registries
            .get(key)
            .copied()
            .unwrap_or_else(|| self.profile_mode(g, reg.profile));
        let mut replicas = Vec::new();
        if let Some((set, _)) = g.parts(reg) {
            for (i, rep) in set.replicas.iter().enumerate() {
                let detail = self.book.replica_detail(reg.profile, i, now);
                let over = self
                    .overrides
                    .is_disabled(key, &rep.key, &rep.region, now_wall);
                let k = routed_key(&detail, mode);
                let deep = detail.0.as_ref();
                // Only the dependencies this registry is judged on (all without depends_on).
                let dependencies = deep
                    .and_then(|d| {
                        d.last
                            .as_ref()
                            .and_then(|o| o.document.clone())
                            .map(|doc| (d, doc))
                    })
                    .map(|(d, doc)| {
                        doc.dependencies
                            .iter()
                            .filter(|x| match &d.key.resource {
                                Resource::Whole => true,
                                Resource::Deps(names) => names.contains(&x.name),
                            })
                            .map(|x| DependencyView {
                                name: x.name.clone(),
                                status: x.status.clone(),
                                ok: x.ok,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                replicas.push(ReplicaStatus {
                    key: rep.key.to_string(),
                    region: rep.region.to_string(),
                    state: if over.is_some() {
                        ReplicaState::Disabled
                    } else {
                        k.map_or(ReplicaState::Unknown, |k| k.routed.into())
                    },
                    routable: masks.routable.contains(i),
                    shadow: (mode == HealthMode::Shadow)
                        .then(|| shadow_view(&detail, over.is_some(), &masks, i)),
                    since: k.and_then(|k| k.since).map(|t| clock.format(t)),
                    consecutive_successes: k.map_or(0, |k| k.consecutive_successes),
                    consecutive_failures: k.map_or(0, |k| k.consecutive_failures),
                    stale: k.is_some_and(|k| k.stale),
                    last_probe: k.and_then(|k| k.last.as_ref()).map(|o| ProbeView {
                        at: clock.format(o.at),
                        latency_ms: o.latency.as_secs_f64() * 1000.0,
                        result: match &o.result {
                            Ok(_) => "ok".to_string(),
                            Err(f) => f.label().to_string(),
                        },
                        reason: match &o.result {
                            Ok(_) => String::new(),
                            Err(f) => f.to_string(),
                        },
                    }),
                    dependencies,
                    override_: over.map(OverrideView::from),
                    fleet: k.filter(|k| k.fleet_current).map(|k| FleetReplicaView {
                        own: k.effective.into(),
                        fleet: k.routed.into(),
                        reported_by: k
                            .fleet
                            .as_ref()
                            .map(|v| v.reported_by.to_vec())
                            .unwrap_or_default(),
                    }),
                });
            }
        }
        RegistryStatus {
            key: key.to_string(),
            name: reg.name().to_ascii(),
            mode: mode.to_string(),
            fail_open: masks.fail_open,
            replicas,
        }
    }

    /// Counts over every registry, from the profiles and their member counts (exceptions
    /// counted apart). O(profiles × replicas + exceptions).
    pub(super) fn summary(
        &self,
        snap: &Snapshot,
        profile_states: &[Vec<ReplicaState>],
        now_wall: SystemTime,
    ) -> StatusSummary {
        let g = &snap.globals;
        let mut s = StatusSummary {
            registries: g.len() as u64,
            ..Default::default()
        };
        let members = self.index.members();
        let mut counts: Vec<u64> = members.iter().map(|m| u64::from(*m)).collect();
        // `n` registries of profile `p` with these replica states.
        let mut add = |p: u32, states: &[ReplicaState], n: u64, fail_open: bool| {
            let Some(set) = g
                .profiles
                .get(p as usize)
                .and_then(|pr| g.sets.get(pr.set as usize))
            else {
                return;
            };
            if fail_open {
                s.fail_open += n;
            }
            for (r, st) in set.replicas.iter().zip(states) {
                *s.states.entry(*st).or_default() += n;
                *s.regions
                    .entry(r.region.to_string())
                    .or_default()
                    .entry(*st)
                    .or_default() += n;
            }
        };
        // Registries with an exception count on their own, not in their profile's number.
        for reg in self
            .exception_keys(now_wall)
            .iter()
            .filter_map(|k| self.registry(g, k))
            .filter(|r| snap.health.exceptions.contains_key(&r.id))
        {
            if let Some(c) = counts.get_mut(reg.profile as usize) {
                *c = c.saturating_sub(1);
            }
            let states = self.replica_states(g, reg.profile, Some(&reg), now_wall);
            add(reg.profile, &states, 1, snap.health.get(&reg).fail_open);
        }
        for (p, states) in profile_states.iter().enumerate() {
            let n = counts.get(p).copied().unwrap_or(0);
            if n > 0 {
                let fail_open = snap.health.profiles.get(p).is_some_and(|m| m.fail_open);
                add(p as u32, states, n, fail_open);
            }
        }
        // Resources: (region, dependency) over every deep key read by some registry.
        let mut resources: BTreeMap<(String, String), ResourceStatus> = BTreeMap::new();
        for (p, prof) in g.profiles.iter().enumerate() {
            let n = u64::from(members.get(p).copied().unwrap_or(0));
            let Some(set) = g.sets.get(prof.set as usize) else {
                continue;
            };
            if n == 0 {
                continue;
            }
            for (i, rep) in set.replicas.iter().enumerate() {
                let Some(k) = self.book.routed_key(p as u32, i, HealthMode::Deep) else {
                    continue;
                };
                let failing = failing_deps(&k);
                let names: Vec<&str> = match &k.key.resource {
                    Resource::Whole => vec!["*"],
                    Resource::Deps(x) => x.iter().map(String::as_str).collect(),
                };
                for name in names {
                    let e = resources
                        .entry((rep.region.to_string(), name.to_owned()))
                        .or_insert_with(|| ResourceStatus {
                            region: rep.region.to_string(),
                            resource: name.to_owned(),
                            state: ReplicaState::Healthy,
                            ..ResourceStatus::default()
                        });
                    e.registries += n;
                    let fails = k.status == Status::Degraded
                        && failing.is_none_or(|f| f.iter().any(|d| d == name));
                    if fails {
                        e.failing += n;
                        e.state = ReplicaState::Degraded;
                    } else if k.status == Status::Unknown && e.state == ReplicaState::Healthy {
                        e.state = ReplicaState::Unknown;
                    }
                }
            }
        }
        let mut resources: Vec<ResourceStatus> = resources.into_values().collect();
        resources.sort_by(|a, b| {
            b.failing
                .cmp(&a.failing)
                .then(a.region.cmp(&b.region))
                .then(a.resource.cmp(&b.resource))
        });
        s.resources = resources;
        s
    }
}

/// The dependencies a key's last outcome names failing (None: it names none, so a degraded
/// key fails on all it judges).
fn failing_deps<'a>(k: &crate::health::book::RoutedKey<'a>) -> Option<&'a [String]> {
    match k.last.map(|o| &o.result) {
        Some(Err(crate::health::outcome::Failure::Dependencies(f))) if !f.is_empty() => Some(f),
        _ => None,
    }
}

/// The key routing reads in `mode`: shallow in shallow and shadow modes, else deep.
pub(super) fn routed_key(
    d: &(Option<KeyDetail>, Option<KeyDetail>),
    mode: HealthMode,
) -> Option<&KeyDetail> {
    match mode {
        HealthMode::Shallow | HealthMode::Shadow => d.1.as_ref().or(d.0.as_ref()),
        _ => d.0.as_ref().or(d.1.as_ref()),
    }
}

/// Shadow mode: the shallow verdict routing used beside the deep one (see [`ShadowView`]).
fn shadow_view(
    d: &(Option<KeyDetail>, Option<KeyDetail>),
    disabled: bool,
    masks: &Masks,
    i: usize,
) -> ShadowView {
    let state = |k: Option<&KeyDetail>| {
        if disabled {
            ReplicaState::Disabled
        } else {
            k.map_or(ReplicaState::Unknown, |k| k.routed.into())
        }
    };
    let deep = d.0.as_ref();
    ShadowView {
        routed: state(d.1.as_ref().or(deep)),
        deep: state(deep),
        deep_routable: masks.shadow_deep.is_some_and(|m| m.contains(i)),
        reason: deep
            .and_then(|k| k.last.as_ref())
            .and_then(|o| o.result.as_ref().err())
            .map(ToString::to_string),
    }
}
