//! The health book: every target's [`HealthState`], keyed by *(probe target, resource)*, the
//! mass-failure guard, the fail-open rules and a bounded history. Pure and single-writer: the
//! state task owns it, feeds it outcomes with explicit times, and publishes the
//! [`HealthView`] it computes.
//!
//! # Keys and deduplication
//!
//! [`PlanBuilder`] resolves every replica's layered [`HealthSpec`] into a deep and a shallow
//! check. Identical checks (same URL, headers, rules, timing and thresholds) get the same
//! [`TargetId`] — a hash of the content — and are probed once however many registries or
//! replicas use them; e.g. all registries on one replica share the shallow TCP target. A
//! replica's verdict is read through a [`HealthKey`] = (target, [`Resource`]):
//! [`Resource::Whole`] is the whole probe result (the one-URL-per-registry case);
//! [`Resource::Deps`] (from `depends_on`) judges only the named dependencies of the target's
//! deep-health document, each such key with its own state and thresholds — the scalable form:
//! one deep URL per replica serves every registry, and a failing storage account reroutes
//! exactly the registries that depend on it.
//!
//! Both checks are probed whatever the mode, so switching a registry's mode (a
//! [`HealthBook::replan`] with the new mode) takes effect at once without re-probing.
//!
//! # Routing rules ([`HealthBook::view`])
//!
//! Per registry, a `routable` bitmask over its replicas (bit i = replica i, at most 64):
//! disabled replicas are never routable (all disabled → 0, the caller answers NODATA); mode
//! `off` → every non-disabled replica; otherwise the check chosen by the mode (`deep` → deep,
//! `shallow` and `shadow` → shallow) decides: `unknown` (never probed, no URL, or a verdict
//! older than `stale_after`) and `healthy` are routable, `degraded` is not; when every
//! non-disabled replica is degraded the registry **fails open** (all non-disabled routable,
//! `fail_open = true`). In `shadow` mode the view also carries the mask deep would give.
//!
//! # Mass-failure guard
//!
//! When at least `mass_failure_fraction` of all targets, and at least
//! `mass_failure_min_targets`, have a failing last outcome within their interval, the book
//! suspects its own network and holds: failures are counted but degrade nothing. It logs one
//! error line when the guard engages and one when it releases, and counts engagements.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::time::Instant;

use super::outcome::ProbeOutcome;
use super::spec::{
    CheckSpec, GuardSettings, HealthMode, HealthSpec, SpecError, SpecLevel, Thresholds, Timing,
    resolve,
};
use super::state::{HealthState, Status, Transition};

/// Most replicas one registry may have (the routable mask is a `u64`).
pub const MAX_REPLICAS: usize = 64;
/// How many events the history keeps.
pub const HISTORY_LEN: usize = 256;

/// A probe target's identity: a hash of its check, timing and thresholds. Stable across
/// reloads, so a target that survives a reload keeps its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId(pub u64);

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Which part of a target's result a key reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// The target's overall verdict (one URL per registry and replica).
    Whole,
    /// Only these dependencies of the target's deep-health document (sorted, deduplicated);
    /// a missing one counts as failing.
    Deps(Arc<[String]>),
}

/// Derives the outcome of the dependencies `deps` from a target's outcome: judged on the
/// deep document when there is one (even if the whole probe failed on its status or on
/// other dependencies); otherwise the target's own failure, or "no deep-health document".
pub fn judge_deps(o: &ProbeOutcome, deps: &[String]) -> ProbeOutcome {
    use super::outcome::{Failure, Pass};
    let result = match (&o.result, &o.document) {
        (Ok(_) | Err(Failure::Status(_) | Failure::Dependencies(_)), Some(doc)) => {
            let failing: Vec<String> = deps
                .iter()
                .filter(|d| !doc.dependencies.iter().any(|r| &r.name == *d && r.ok))
                .cloned()
                .collect();
            if failing.is_empty() {
                Ok(Pass {
                    status: o.result.as_ref().ok().and_then(|p| p.status),
                })
            } else {
                Err(Failure::Dependencies(failing))
            }
        }
        (Ok(_), None) => Err(Failure::BodyMismatch("no deep-health document".into())),
        (Err(f), _) => Err(f.clone()),
    };
    ProbeOutcome {
        result,
        ..o.clone()
    }
}

/// Where a replica's verdict comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HealthKey {
    /// The probe target.
    pub target: TargetId,
    /// The resource within its result.
    pub resource: Resource,
}

/// What the prober needs to probe one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The identity outcomes are reported under.
    pub id: TargetId,
    /// What to check.
    pub check: Arc<CheckSpec>,
    /// Interval, timeout, jitter (and stale_after, used by the book).
    pub timing: Timing,
}

#[derive(Clone, Debug)]
struct TargetPlan {
    target: ProbeTarget,
    thresholds: Thresholds,
}

/// One replica of a registry in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaPlan {
    /// Replica name (the config table key).
    pub name: Arc<str>,
    /// Deep verdict source (None: no URL, stays unknown).
    pub deep: Option<HealthKey>,
    /// Shallow verdict source.
    pub shallow: Option<HealthKey>,
}

/// One registry in the plan; replica indexes match the caller's replica order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryPlan {
    /// Registry name (the config table key).
    pub name: Arc<str>,
    /// Which check routes.
    pub mode: HealthMode,
    /// Its replicas, in the caller's order.
    pub replicas: Vec<ReplicaPlan>,
}

/// Everything the book and the prober need from the configuration.
#[derive(Clone, Debug)]
pub struct HealthPlan {
    targets: Vec<TargetPlan>,
    registries: Vec<RegistryPlan>,
    guard: GuardSettings,
}

impl HealthPlan {
    /// The deduplicated probe targets, for the prober's watch channel.
    pub fn probe_targets(&self) -> Arc<[ProbeTarget]> {
        self.targets.iter().map(|t| t.target.clone()).collect()
    }

    /// The registries, index-aligned with [`HealthView::registries`].
    pub fn registries(&self) -> &[RegistryPlan] {
        &self.registries
    }

    /// Changes a registry's mode (the runtime kill switch); then [`HealthBook::replan`].
    pub fn set_mode(&mut self, registry: usize, mode: HealthMode) {
        if let Some(r) = self.registries.get_mut(registry) {
            r.mode = mode;
        }
    }

    /// The mass-failure guard settings.
    pub fn guard(&self) -> GuardSettings {
        self.guard
    }
}

/// Builds a [`HealthPlan`] from the config's health tables.
#[derive(Debug)]
pub struct PlanBuilder {
    server: HealthSpec,
    guard: GuardSettings,
    targets: HashMap<TargetId, TargetPlan>,
    registries: Vec<RegistryPlan>,
}

impl PlanBuilder {
    /// Starts from the server-level `[health]` table.
    pub fn new(server: &HealthSpec) -> Result<Self, SpecError> {
        server.check_level(SpecLevel::Server)?;
        let guard = server.guard()?;
        resolve(&[server])?;
        Ok(PlanBuilder {
            server: server.clone(),
            guard,
            targets: HashMap::new(),
            registries: Vec::new(),
        })
    }

    /// Adds a registry with its replicas (in the order the caller indexes them); returns the
    /// registry's index.
    pub fn add_registry(
        &mut self,
        name: &str,
        spec: &HealthSpec,
        replicas: &[(&str, &HealthSpec)],
    ) -> Result<usize, SpecError> {
        spec.check_level(SpecLevel::Registry)?;
        if replicas.len() > MAX_REPLICAS {
            return Err(SpecError {
                key: "replicas",
                reason: format!("registry {name} has more than {MAX_REPLICAS} replicas"),
            });
        }
        let mode = resolve(&[&self.server, spec])?.mode;
        let mut planned = Vec::with_capacity(replicas.len());
        for (rname, rspec) in replicas {
            rspec.check_level(SpecLevel::Replica)?;
            let s = resolve(&[&self.server, spec, rspec])?;
            let mut deep = s
                .deep
                .map(|c| self.target(c, s.timing, s.thresholds))
                .transpose()?;
            if let (Some(k), Some(d)) = (deep.as_mut(), s.depends_on) {
                k.resource = Resource::Deps(d.into());
            }
            let shallow = s
                .shallow
                .map(|c| self.target(c, s.timing, s.thresholds))
                .transpose()?;
            planned.push(ReplicaPlan {
                name: Arc::from(*rname),
                deep,
                shallow,
            });
        }
        self.registries.push(RegistryPlan {
            name: Arc::from(name),
            mode,
            replicas: planned,
        });
        Ok(self.registries.len() - 1)
    }

    fn target(
        &mut self,
        check: CheckSpec,
        timing: Timing,
        thresholds: Thresholds,
    ) -> Result<HealthKey, SpecError> {
        let mut h = DefaultHasher::new();
        (&check, &timing, &thresholds).hash(&mut h);
        let id = TargetId(h.finish());
        match self.targets.get(&id) {
            Some(t)
                if *t.target.check != check
                    || t.target.timing != timing
                    || t.thresholds != thresholds =>
            {
                return Err(SpecError {
                    key: "url",
                    reason: format!("internal: probe target id collision for {check}"),
                });
            }
            Some(_) => {}
            None => {
                self.targets.insert(
                    id,
                    TargetPlan {
                        target: ProbeTarget {
                            id,
                            check: Arc::new(check),
                            timing,
                        },
                        thresholds,
                    },
                );
            }
        }
        Ok(HealthKey {
            target: id,
            resource: Resource::Whole,
        })
    }

    /// The finished plan.
    pub fn finish(self) -> HealthPlan {
        let mut targets: Vec<TargetPlan> = self.targets.into_values().collect();
        targets.sort_by_key(|t| t.target.id);
        HealthPlan {
            targets,
            registries: self.registries,
            guard: self.guard,
        }
    }
}

/// One registry's routing verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryView {
    /// The mode in force.
    pub mode: HealthMode,
    /// Bit i set = replica i may be answered.
    pub routable: u64,
    /// Every non-disabled replica was degraded, so all of them are routable.
    pub fail_open: bool,
    /// In shadow mode: the mask (with the same rules) deep would have given.
    pub deep_routable: Option<u64>,
}

/// The routing verdict of every registry, index-aligned with [`HealthPlan::registries`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthView {
    /// Per registry.
    pub registries: Vec<RegistryView>,
}

/// One key's detail for the status API.
#[derive(Clone, Debug)]
pub struct KeyDetail {
    /// The key (target and resource).
    pub key: HealthKey,
    /// What it checks (`GET url` / `tcp://host:port`).
    pub check: Arc<CheckSpec>,
    /// The state routed on (stale → unknown).
    pub effective: Status,
    /// The stored state.
    pub status: Status,
    /// Whether the verdict expired.
    pub stale: bool,
    /// When the stored state began.
    pub since: Option<Instant>,
    /// Consecutive successes.
    pub consecutive_successes: u32,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// The last outcome (time, latency, result, deep document).
    pub last: Option<ProbeOutcome>,
}

/// One replica's detail for the status API.
#[derive(Clone, Debug)]
pub struct ReplicaDetail {
    /// Replica name.
    pub name: Arc<str>,
    /// The registry's mode.
    pub mode: HealthMode,
    /// The deep check's detail (None: no URL).
    pub deep: Option<KeyDetail>,
    /// The shallow check's detail.
    pub shallow: Option<KeyDetail>,
}

/// What happened, for the history.
#[derive(Clone, Debug)]
pub enum EventKind {
    /// A key (target, resource) changed state.
    Transition {
        /// Which key.
        key: HealthKey,
        /// Its check.
        check: Arc<CheckSpec>,
        /// The change.
        transition: Transition,
    },
    /// The mass-failure guard engaged.
    GuardEngaged {
        /// Failing targets.
        failing: usize,
        /// All targets.
        total: usize,
    },
    /// The mass-failure guard released.
    GuardReleased,
    /// A registry started (`on`) or stopped failing open.
    FailOpen {
        /// The registry.
        registry: Arc<str>,
        /// Started or stopped.
        on: bool,
    },
    /// In shadow mode, deep started (`on`) or stopped disagreeing with shallow.
    ShadowDivergence {
        /// The registry.
        registry: Arc<str>,
        /// Started or stopped.
        on: bool,
        /// The mask routed on (shallow).
        routed: u64,
        /// The mask deep would give.
        deep: u64,
    },
}

/// A history entry.
#[derive(Clone, Debug)]
pub struct BookEvent {
    /// When.
    pub at: Instant,
    /// What.
    pub kind: EventKind,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BookCounters {
    /// Target transitions.
    pub transitions: u64,
    /// Times the mass-failure guard engaged.
    pub guard_engagements: u64,
    /// Outcomes for targets not in the plan (stale events after a reload).
    pub unknown_target_outcomes: u64,
}

#[derive(Clone, Debug)]
struct Entry {
    state: HealthState,
    check: Arc<CheckSpec>,
    timing: Timing,
    thresholds: Thresholds,
    last_fail_at: Option<Instant>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Flags {
    fail_open: bool,
    diverged: bool,
}

fn push_bounded(h: &mut VecDeque<BookEvent>, ev: BookEvent) {
    if h.len() == HISTORY_LEN {
        h.pop_front();
    }
    h.push_back(ev);
}

/// The single-writer owner of all health state.
#[derive(Debug)]
pub struct HealthBook {
    plan: HealthPlan,
    entries: HashMap<TargetId, Entry>,
    /// States of non-`Whole` keys, and which of them each target feeds.
    resources: HashMap<HealthKey, HealthState>,
    by_target: HashMap<TargetId, Vec<HealthKey>>,
    guard_engaged: bool,
    flags: HashMap<Arc<str>, Flags>,
    history: VecDeque<BookEvent>,
    counters: BookCounters,
}

impl HealthBook {
    /// A book with every target `Unknown`.
    pub fn new(plan: &HealthPlan) -> Self {
        let mut b = HealthBook {
            plan: plan.clone(),
            entries: HashMap::new(),
            resources: HashMap::new(),
            by_target: HashMap::new(),
            guard_engaged: false,
            flags: HashMap::new(),
            history: VecDeque::new(),
            counters: BookCounters::default(),
        };
        b.replan(plan);
        b
    }

    /// Switches to a new plan, keeping the state of targets that still exist (same
    /// [`TargetId`]); new targets start `Unknown`, removed ones are dropped.
    pub fn replan(&mut self, plan: &HealthPlan) {
        let mut old = std::mem::take(&mut self.entries);
        for t in &plan.targets {
            let e = old.remove(&t.target.id).unwrap_or_else(|| Entry {
                state: HealthState::new(),
                check: t.target.check.clone(),
                timing: t.target.timing,
                thresholds: t.thresholds,
                last_fail_at: None,
            });
            self.entries.insert(t.target.id, e);
        }
        let mut old = std::mem::take(&mut self.resources);
        self.by_target.clear();
        for rep in plan.registries.iter().flat_map(|r| &r.replicas) {
            for k in rep.deep.iter().chain(&rep.shallow) {
                if k.resource == Resource::Whole || self.resources.contains_key(k) {
                    continue;
                }
                let st = old.remove(k).unwrap_or_default();
                self.resources.insert(k.clone(), st);
                self.by_target.entry(k.target).or_default().push(k.clone());
            }
        }
        self.flags
            .retain(|name, _| plan.registries.iter().any(|r| &r.name == name));
        self.plan = plan.clone();
    }

    /// The plan in force.
    pub fn plan(&self) -> &HealthPlan {
        &self.plan
    }

    /// Applies one outcome at `now`; returns the keys that flipped (the target's `Whole` key
    /// and any `depends_on` keys it feeds). Outcomes for targets not in the plan are counted
    /// and ignored.
    pub fn observe(
        &mut self,
        target: TargetId,
        outcome: &ProbeOutcome,
        now: Instant,
    ) -> Vec<(HealthKey, Transition)> {
        let mut out = Vec::new();
        let Some(e) = self.entries.get_mut(&target) else {
            self.counters.unknown_target_outcomes += 1;
            return out;
        };
        e.last_fail_at = if outcome.passed() {
            None
        } else {
            Some(outcome.at)
        };
        self.update_guard(now);
        let hold = self.guard_engaged;
        let Some(e) = self.entries.get_mut(&target) else {
            return out;
        };
        let th = e.thresholds;
        let check = e.check.clone();
        if let Some(tr) = e.state.observe_with(outcome, th, hold) {
            let key = HealthKey {
                target,
                resource: Resource::Whole,
            };
            out.push((key, tr));
        }
        for key in self.by_target.get(&target).into_iter().flatten() {
            let Resource::Deps(deps) = &key.resource else {
                continue;
            };
            let derived = judge_deps(outcome, deps);
            if let Some(st) = self.resources.get_mut(key)
                && let Some(tr) = st.observe_with(&derived, th, hold)
            {
                out.push((key.clone(), tr));
            }
        }
        for (key, tr) in &out {
            self.counters.transitions += 1;
            let deps = match &key.resource {
                Resource::Whole => String::new(),
                Resource::Deps(d) => d.join(","),
            };
            match tr.to {
                Status::Degraded => {
                    tracing::warn!(target = %target, check = %check, depends_on = %deps, reason = %tr.reason, "probe target became degraded")
                }
                _ => {
                    tracing::info!(target = %target, check = %check, depends_on = %deps, from = %tr.from, to = %tr.to, reason = %tr.reason, "probe target changed state")
                }
            }
            push_bounded(
                &mut self.history,
                BookEvent {
                    at: tr.at,
                    kind: EventKind::Transition {
                        key: key.clone(),
                        check: check.clone(),
                        transition: tr.clone(),
                    },
                },
            );
        }
        out
    }

    fn update_guard(&mut self, now: Instant) {
        let total = self.entries.len();
        let failing = self
            .entries
            .values()
            .filter(|e| {
                e.last_fail_at
                    .is_some_and(|t| now.saturating_duration_since(t) <= e.timing.interval)
            })
            .count();
        let g = self.plan.guard;
        let hit = failing >= g.min_targets as usize && failing as f64 >= g.fraction * total as f64;
        if hit && !self.guard_engaged {
            self.guard_engaged = true;
            self.counters.guard_engagements += 1;
            tracing::error!(
                failing,
                total,
                "mass probe failure: suspecting the prober's own network, holding health state"
            );
            self.push(now, EventKind::GuardEngaged { failing, total });
        } else if !hit && self.guard_engaged {
            self.guard_engaged = false;
            tracing::error!(
                failing,
                total,
                "mass probe failure over: health state follows probes again"
            );
            self.push(now, EventKind::GuardReleased);
        }
    }

    /// Whether the mass-failure guard holds.
    pub fn guard_engaged(&self) -> bool {
        self.guard_engaged
    }

    fn push(&mut self, at: Instant, kind: EventKind) {
        push_bounded(&mut self.history, BookEvent { at, kind });
    }

    fn state_of(&self, k: &HealthKey) -> Option<(&HealthState, &Entry)> {
        let e = self.entries.get(&k.target)?;
        match k.resource {
            Resource::Whole => Some((&e.state, e)),
            Resource::Deps(_) => Some((self.resources.get(k)?, e)),
        }
    }

    fn key_status(&self, key: Option<&HealthKey>, now: Instant) -> Status {
        key.and_then(|k| self.state_of(k))
            .map_or(Status::Unknown, |(st, e)| {
                st.effective(now, e.timing.stale_after)
            })
    }

    fn mask(
        &self,
        reg: &RegistryPlan,
        ri: usize,
        now: Instant,
        deep: bool,
        disabled: &impl Fn(usize, usize) -> bool,
    ) -> (u64, bool) {
        let mut enabled = 0u64;
        let mut ok = 0u64;
        for (i, rep) in reg.replicas.iter().enumerate().take(MAX_REPLICAS) {
            if disabled(ri, i) {
                continue;
            }
            let bit = 1u64 << i;
            enabled |= bit;
            let key = if deep {
                rep.deep.as_ref()
            } else {
                rep.shallow.as_ref()
            };
            if self.key_status(key, now) != Status::Degraded {
                ok |= bit;
            }
        }
        if ok == 0 && enabled != 0 {
            (enabled, true)
        } else {
            (ok, false)
        }
    }

    /// The routing verdict at `now`; `disabled(registry, replica)` says which replicas the
    /// operator disabled. Pure: see [`publish`](Self::publish) for the logging variant.
    pub fn view(&self, now: Instant, disabled: &impl Fn(usize, usize) -> bool) -> HealthView {
        let registries = self
            .plan
            .registries
            .iter()
            .enumerate()
            .map(|(ri, reg)| {
                let (routable, fail_open, deep_routable) = match reg.mode {
                    HealthMode::Off => {
                        let all = (0..reg.replicas.len().min(MAX_REPLICAS))
                            .filter(|i| !disabled(ri, *i))
                            .fold(0u64, |m, i| m | 1 << i);
                        (all, false, None)
                    }
                    HealthMode::Deep => {
                        let (m, f) = self.mask(reg, ri, now, true, disabled);
                        (m, f, None)
                    }
                    HealthMode::Shallow => {
                        let (m, f) = self.mask(reg, ri, now, false, disabled);
                        (m, f, None)
                    }
                    HealthMode::Shadow => {
                        let (m, f) = self.mask(reg, ri, now, false, disabled);
                        let (d, _) = self.mask(reg, ri, now, true, disabled);
                        (m, f, Some(d))
                    }
                };
                RegistryView {
                    mode: reg.mode,
                    routable,
                    fail_open,
                    deep_routable,
                }
            })
            .collect();
        HealthView { registries }
    }

    /// [`view`](Self::view), plus: re-evaluates the mass-failure guard at `now`, and logs and
    /// records once when a registry starts or stops failing open and when shadow mode's deep
    /// verdict starts or stops diverging. Call it after a transition, after a reload or an
    /// override change, and on a timer (about once per shortest interval) so stale verdicts
    /// expire.
    pub fn publish(
        &mut self,
        now: Instant,
        disabled: &impl Fn(usize, usize) -> bool,
    ) -> HealthView {
        self.update_guard(now);
        let view = self.view(now, disabled);
        for (reg, rv) in self.plan.registries.clone().iter().zip(&view.registries) {
            let f = self.flags.entry(reg.name.clone()).or_default();
            let was = *f;
            let diverged = rv.deep_routable.is_some_and(|d| d != rv.routable);
            f.fail_open = rv.fail_open;
            f.diverged = diverged;
            if was.fail_open != rv.fail_open {
                if rv.fail_open {
                    tracing::error!(registry = %reg.name, "every enabled replica is degraded: failing open, answering all of them");
                } else {
                    tracing::info!(registry = %reg.name, "no longer failing open");
                }
                self.push(
                    now,
                    EventKind::FailOpen {
                        registry: reg.name.clone(),
                        on: rv.fail_open,
                    },
                );
            }
            if was.diverged != diverged {
                let deep = rv.deep_routable.unwrap_or(rv.routable);
                if diverged {
                    tracing::warn!(registry = %reg.name, routed = rv.routable, deep, "shadow mode: deep checks would change routing");
                } else {
                    tracing::info!(registry = %reg.name, "shadow mode: deep checks agree with routing again");
                }
                self.push(
                    now,
                    EventKind::ShadowDivergence {
                        registry: reg.name.clone(),
                        on: diverged,
                        routed: rv.routable,
                        deep,
                    },
                );
            }
        }
        view
    }

    fn key_detail(&self, key: Option<&HealthKey>, now: Instant) -> Option<KeyDetail> {
        let k = key?;
        let (st, e) = self.state_of(k)?;
        Some(KeyDetail {
            key: k.clone(),
            check: e.check.clone(),
            effective: st.effective(now, e.timing.stale_after),
            status: st.status(),
            stale: st.is_stale(now, e.timing.stale_after),
            since: st.since(),
            consecutive_successes: st.consecutive_successes(),
            consecutive_failures: st.consecutive_failures(),
            last: st.last().cloned(),
        })
    }

    /// Detail of one replica for the status API.
    pub fn replica_detail(
        &self,
        registry: usize,
        replica: usize,
        now: Instant,
    ) -> Option<ReplicaDetail> {
        let reg = self.plan.registries.get(registry)?;
        let rep = reg.replicas.get(replica)?;
        Some(ReplicaDetail {
            name: rep.name.clone(),
            mode: reg.mode,
            deep: self.key_detail(rep.deep.as_ref(), now),
            shallow: self.key_detail(rep.shallow.as_ref(), now),
        })
    }

    /// Whether every target has been probed at least once (readiness).
    pub fn first_round_done(&self) -> bool {
        self.entries.values().all(|e| e.state.last().is_some())
    }

    /// The last [`HISTORY_LEN`] events, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &BookEvent> {
        self.history.iter()
    }

    /// Counters for metrics.
    pub fn counters(&self) -> BookCounters {
        self.counters
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::super::outcome::{Failure, Pass};
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn server(extra: &str) -> HealthSpec {
        let mut s: HealthSpec = toml::from_str(extra).unwrap();
        s.interval.get_or_insert_with(|| "10s".into());
        s.timeout.get_or_insert_with(|| "1s".into());
        s.failure_threshold.get_or_insert(2);
        s.success_threshold.get_or_insert(2);
        s
    }

    fn url(host: &str, reg: &str) -> HealthSpec {
        HealthSpec {
            url: Some(format!("http://{host}/health?registry={reg}")),
            ..Default::default()
        }
    }

    /// Registries `a` and `b`, three replicas each on hosts 127.0.3.1..3 (shared front doors).
    fn plan(server_extra: &str, mode_a: Option<HealthMode>) -> HealthPlan {
        let mut b = PlanBuilder::new(&server(server_extra)).unwrap();
        for (reg, mode) in [("a", mode_a), ("b", None)] {
            let reps: Vec<HealthSpec> =
                (1..=3).map(|i| url(&format!("127.0.3.{i}"), reg)).collect();
            let named: Vec<(&str, &HealthSpec)> =
                ["r1", "r2", "r3"].into_iter().zip(reps.iter()).collect();
            let spec = HealthSpec {
                mode,
                ..Default::default()
            };
            b.add_registry(reg, &spec, &named).unwrap();
        }
        b.finish()
    }

    fn pass(at: Instant) -> ProbeOutcome {
        ProbeOutcome {
            at,
            latency: S / 100,
            result: Ok(Pass { status: Some(200) }),
            document: None,
        }
    }

    fn fail(at: Instant) -> ProbeOutcome {
        ProbeOutcome {
            at,
            latency: S / 100,
            result: Err(Failure::Status(503)),
            document: None,
        }
    }

    fn deep(p: &HealthPlan, reg: usize, rep: usize) -> TargetId {
        p.registries()[reg].replicas[rep]
            .deep
            .as_ref()
            .unwrap()
            .target
    }

    fn shallow(p: &HealthPlan, reg: usize, rep: usize) -> TargetId {
        p.registries()[reg].replicas[rep]
            .shallow
            .as_ref()
            .unwrap()
            .target
    }

    fn none(_: usize, _: usize) -> bool {
        false
    }

    /// Feeds `n` outcomes for `t`, one second apart from `*clock`.
    fn feed(b: &mut HealthBook, t: TargetId, ok: bool, n: usize, clock: &mut Instant) {
        for _ in 0..n {
            *clock += S;
            let o = if ok { pass(*clock) } else { fail(*clock) };
            b.observe(t, &o, *clock);
        }
    }

    #[test]
    fn identical_targets_are_deduplicated() {
        let p = plan("", None);
        // 6 distinct deep URLs (3 hosts × 2 registries) + 3 shared front doors.
        assert_eq!(p.probe_targets().len(), 9);
        assert_ne!(deep(&p, 0, 0), deep(&p, 1, 0));
        assert_eq!(shallow(&p, 0, 0), shallow(&p, 1, 0));
        assert_eq!(
            *p.probe_targets()
                .iter()
                .find(|t| t.id == shallow(&p, 0, 2))
                .unwrap()
                .check,
            CheckSpec::Tcp {
                host: "127.0.3.3".into(),
                port: 80
            }
        );
        // The same plan built again gives the same ids (stable across reloads).
        let q = plan("", None);
        assert_eq!(p.probe_targets(), q.probe_targets());
        // A registry listing the same URL twice probes it once.
        let mut b = PlanBuilder::new(&server("")).unwrap();
        let u = url("127.0.3.9", "x");
        b.add_registry("x", &HealthSpec::default(), &[("r1", &u), ("r2", &u)])
            .unwrap();
        assert_eq!(b.finish().probe_targets().len(), 2);
    }

    #[test]
    fn no_url_is_unknown_and_routable() {
        let mut b = PlanBuilder::new(&server("")).unwrap();
        let none_spec = HealthSpec::default();
        b.add_registry(
            "x",
            &HealthSpec::default(),
            &[("r1", &none_spec), ("r2", &none_spec)],
        )
        .unwrap();
        let p = b.finish();
        assert_eq!(p.probe_targets().len(), 0);
        let book = HealthBook::new(&p);
        let v = book.view(Instant::now(), &none);
        assert_eq!(
            v.registries[0],
            RegistryView {
                mode: HealthMode::Deep,
                routable: 0b11,
                fail_open: false,
                deep_routable: None
            }
        );
        assert!(book.first_round_done());
        let d = book.replica_detail(0, 1, Instant::now()).unwrap();
        assert!(d.deep.is_none() && d.shallow.is_none());
    }

    #[test]
    fn degrade_fail_open_and_disable() {
        let p = plan("mass_failure_min_targets = 100", None);
        let mut book = HealthBook::new(&p);
        let mut now = Instant::now();
        assert!(!book.first_round_done());
        assert_eq!(book.view(now, &none).registries[0].routable, 0b111);

        // One failure moves nothing; the second degrades r2 of registry a only.
        feed(&mut book, deep(&p, 0, 1), false, 1, &mut now);
        assert_eq!(book.view(now, &none).registries[0].routable, 0b111);
        feed(&mut book, deep(&p, 0, 1), false, 1, &mut now);
        let v = book.view(now, &none);
        assert_eq!(v.registries[0].routable, 0b101);
        assert_eq!(v.registries[1].routable, 0b111);
        assert_eq!(book.counters().transitions, 1);

        // Disabled replicas never route.
        let dis = |r: usize, i: usize| r == 0 && i == 0;
        assert_eq!(book.view(now, &dis).registries[0].routable, 0b100);

        // All degraded → fail open over the enabled ones.
        feed(&mut book, deep(&p, 0, 0), false, 2, &mut now);
        feed(&mut book, deep(&p, 0, 2), false, 2, &mut now);
        let v = book.publish(now, &none);
        assert_eq!(
            (v.registries[0].routable, v.registries[0].fail_open),
            (0b111, true)
        );
        let v = book.view(now, &dis);
        assert_eq!(
            (v.registries[0].routable, v.registries[0].fail_open),
            (0b110, true)
        );
        // Everything disabled → mask 0, not fail-open.
        let all = |r: usize, _: usize| r == 0;
        let v = book.view(now, &all);
        assert_eq!(
            (v.registries[0].routable, v.registries[0].fail_open),
            (0, false)
        );
        // Fail-open logged once: a second publish adds no event.
        let n = book.history().count();
        book.publish(now, &none);
        assert_eq!(book.history().count(), n);

        // Recovery needs two successes.
        feed(&mut book, deep(&p, 0, 2), true, 1, &mut now);
        assert!(book.view(now, &none).registries[0].fail_open);
        feed(&mut book, deep(&p, 0, 2), true, 1, &mut now);
        let v = book.publish(now, &none);
        assert_eq!(
            (v.registries[0].routable, v.registries[0].fail_open),
            (0b100, false)
        );
        let opens: Vec<bool> = book
            .history()
            .filter_map(|e| match &e.kind {
                EventKind::FailOpen { on, .. } => Some(*on),
                _ => None,
            })
            .collect();
        assert_eq!(opens, vec![true, false]);
    }

    #[test]
    fn stale_verdicts_count_as_unknown() {
        let p = plan("mass_failure_min_targets = 100", None);
        let mut book = HealthBook::new(&p);
        let mut now = Instant::now();
        feed(&mut book, deep(&p, 0, 0), false, 2, &mut now);
        assert_eq!(book.view(now, &none).registries[0].routable, 0b110);
        // stale_after defaults to 3 intervals = 30 s after the last outcome.
        assert_eq!(book.view(now + 30 * S, &none).registries[0].routable, 0b110);
        assert_eq!(book.view(now + 31 * S, &none).registries[0].routable, 0b111);
        let d = book
            .replica_detail(0, 0, now + 31 * S)
            .unwrap()
            .deep
            .unwrap();
        assert!(d.stale);
        assert_eq!((d.effective, d.status), (Status::Unknown, Status::Degraded));
        assert_eq!(d.consecutive_failures, 2);
        assert_eq!(d.last.unwrap().result, Err(Failure::Status(503)));
    }

    #[test]
    fn modes() {
        // Registry a in shadow: route on shallow, report deep.
        let mut p = plan("mass_failure_min_targets = 100", Some(HealthMode::Shadow));
        let mut book = HealthBook::new(&p);
        let mut now = Instant::now();
        feed(&mut book, deep(&p, 0, 0), false, 2, &mut now);
        let v = book.publish(now, &none);
        assert_eq!(
            v.registries[0],
            RegistryView {
                mode: HealthMode::Shadow,
                routable: 0b111,
                fail_open: false,
                deep_routable: Some(0b110)
            }
        );
        book.publish(now, &none);
        let div: Vec<bool> = book
            .history()
            .filter_map(|e| match &e.kind {
                EventKind::ShadowDivergence { on, .. } => Some(*on),
                _ => None,
            })
            .collect();
        assert_eq!(div, vec![true]);

        // The kill switch: deep routes at once, without re-probing.
        p.set_mode(0, HealthMode::Deep);
        book.replan(&p);
        let v = book.publish(now, &none);
        assert_eq!(
            v.registries[0],
            RegistryView {
                mode: HealthMode::Deep,
                routable: 0b110,
                fail_open: false,
                deep_routable: None
            }
        );
        let div: Vec<bool> = book
            .history()
            .filter_map(|e| match &e.kind {
                EventKind::ShadowDivergence { on, .. } => Some(*on),
                _ => None,
            })
            .collect();
        assert_eq!(div, vec![true, false]);

        // Shallow: the front door of 127.0.3.2 is down for both registries.
        feed(&mut book, shallow(&p, 0, 1), false, 2, &mut now);
        p.set_mode(0, HealthMode::Shallow);
        book.replan(&p);
        assert_eq!(book.view(now, &none).registries[0].routable, 0b101);
        assert_eq!(book.view(now, &none).registries[1].routable, 0b111);
        // Off: latency only, disabled still excluded.
        p.set_mode(0, HealthMode::Off);
        book.replan(&p);
        assert_eq!(book.view(now, &none).registries[0].routable, 0b111);
        assert_eq!(book.view(now, &|_, i| i == 1).registries[0].routable, 0b101);
    }

    #[test]
    fn mass_failure_guard_holds_and_releases() {
        // 9 targets, fraction 0.5 → 5 failing targets engage it.
        let p = plan(
            "mass_failure_fraction = 0.5\nmass_failure_min_targets = 3",
            None,
        );
        let mut book = HealthBook::new(&p);
        let t0 = Instant::now();
        let ids: Vec<TargetId> = p.probe_targets().iter().map(|t| t.id).collect();
        // Everything fails twice (threshold 2), within one interval.
        let mut now = t0;
        for round in 0..2 {
            for (i, id) in ids.iter().enumerate() {
                now = t0 + S * (round * 10 + i as u32) / 2;
                book.observe(*id, &fail(now), now);
            }
        }
        assert!(book.guard_engaged());
        assert_eq!(book.counters().guard_engagements, 1);
        // The guard engaged at the 5th failing target of round 0, before any second failure,
        // so nothing degraded at all.
        assert_eq!(book.counters().transitions, 0);
        assert_eq!(book.view(now, &none).registries[0].routable, 0b111);
        // Recovery: targets pass; once fewer than the fraction fail, the guard releases.
        for id in &ids[..5] {
            now += S;
            book.observe(*id, &pass(now), now);
        }
        assert!(!book.guard_engaged());
        let kinds: Vec<&'static str> = book
            .history()
            .filter_map(|e| match e.kind {
                EventKind::GuardEngaged { .. } => Some("on"),
                EventKind::GuardReleased => Some("off"),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, vec!["on", "off"]);
        assert_eq!(book.counters().guard_engagements, 1);
        // A further failure of a still-failing target now degrades it (count ≥ threshold).
        now += S;
        assert_eq!(book.observe(ids[8], &fail(now), now).len(), 1);
    }

    #[test]
    fn guard_releases_when_failures_age_out() {
        let p = plan("mass_failure_min_targets = 3", None);
        let mut book = HealthBook::new(&p);
        let t0 = Instant::now();
        for (i, t) in p.probe_targets().iter().enumerate() {
            book.observe(t.id, &fail(t0), t0 + S * i as u32 / 10);
        }
        assert!(book.guard_engaged());
        book.publish(t0 + 11 * S, &none);
        assert!(!book.guard_engaged());
    }

    #[test]
    fn replan_keeps_surviving_state() {
        let p = plan("mass_failure_min_targets = 100", None);
        let mut book = HealthBook::new(&p);
        let mut now = Instant::now();
        let kept = deep(&p, 0, 0);
        feed(&mut book, kept, false, 2, &mut now);
        // New config: registry b dropped, a keeps r1 and gets a new r4.
        let mut b = PlanBuilder::new(&server("mass_failure_min_targets = 100")).unwrap();
        let r1 = url("127.0.3.1", "a");
        let r4 = url("127.0.3.4", "a");
        b.add_registry("a", &HealthSpec::default(), &[("r4", &r4), ("r1", &r1)])
            .unwrap();
        let q = b.finish();
        book.replan(&q);
        assert_eq!(deep(&q, 0, 1), kept);
        assert_eq!(
            book.view(now, &none).registries,
            vec![RegistryView {
                mode: HealthMode::Deep,
                routable: 0b01,
                fail_open: false,
                deep_routable: None
            }]
        );
        // Outcomes for targets that left the plan are ignored and counted.
        assert!(book.observe(deep(&p, 1, 0), &fail(now), now).is_empty());
        assert_eq!(book.counters().unknown_target_outcomes, 1);
        // A changed threshold is a different target: fresh state.
        let mut b = PlanBuilder::new(&server(
            "mass_failure_min_targets = 100\nfailure_threshold = 5",
        ))
        .unwrap();
        b.add_registry("a", &HealthSpec::default(), &[("r1", &r1)])
            .unwrap();
        let q = b.finish();
        book.replan(&q);
        assert_ne!(deep(&q, 0, 0), kept);
        assert_eq!(book.view(now, &none).registries[0].routable, 0b1);
    }

    #[test]
    fn history_is_bounded() {
        let p = plan(
            "mass_failure_min_targets = 100\nfailure_threshold = 1\nsuccess_threshold = 1",
            None,
        );
        let mut book = HealthBook::new(&p);
        let mut now = Instant::now();
        let t = deep(&p, 0, 0);
        for _ in 0..300 {
            feed(&mut book, t, false, 1, &mut now);
            feed(&mut book, t, true, 1, &mut now);
        }
        assert_eq!(book.history().count(), HISTORY_LEN);
        assert_eq!(book.counters().transitions, 600);
        assert_eq!(book.history().last().unwrap().at, now);
    }

    #[test]
    fn plan_errors() {
        let mut b = PlanBuilder::new(&server("")).unwrap();
        let s = HealthSpec::default();
        let many: Vec<(&str, &HealthSpec)> = (0..65).map(|_| ("r", &s)).collect();
        assert_eq!(b.add_registry("x", &s, &many).unwrap_err().key, "replicas");
        let bad = HealthSpec {
            mode: Some(HealthMode::Off),
            ..Default::default()
        };
        assert_eq!(
            b.add_registry("x", &s, &[("r", &bad)]).unwrap_err().key,
            "mode"
        );
        let bad = HealthSpec {
            mass_failure_fraction: Some(0.1),
            ..Default::default()
        };
        assert!(b.add_registry("x", &bad, &[]).is_err());
        let bad = HealthSpec {
            timeout: Some("20s".into()),
            ..Default::default()
        };
        assert_eq!(PlanBuilder::new(&bad).unwrap_err().key, "timeout");
        assert!(b.add_registry("x", &s, &[("r", &bad)]).is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod depends_on_tests {
    use std::time::Duration;

    use super::super::outcome::{DeepDoc, DepResult, Failure, Pass};
    use super::*;

    fn doc(failing: &[&str]) -> Arc<DeepDoc> {
        Arc::new(DeepDoc {
            status: None,
            dependencies: ["storage-1", "storage-2", "auth"]
                .iter()
                .map(|n| DepResult {
                    name: (*n).into(),
                    status: if failing.contains(n) { "down" } else { "up" }.into(),
                    ok: !failing.contains(n),
                })
                .collect(),
        })
    }

    fn out(at: Instant, failing: &[&str]) -> ProbeOutcome {
        let d = doc(failing);
        let result = if failing.is_empty() {
            Ok(Pass { status: Some(200) })
        } else {
            Err(Failure::Dependencies(d.failing()))
        };
        ProbeOutcome {
            at,
            latency: Duration::ZERO,
            result,
            document: Some(d),
        }
    }

    #[test]
    fn judging_named_dependencies() {
        let t = Instant::now();
        let deps: Vec<String> = vec!["auth".into(), "storage-1".into()];
        assert!(judge_deps(&out(t, &["storage-2"]), &deps).passed());
        assert_eq!(
            judge_deps(&out(t, &["storage-1"]), &deps).result,
            Err(Failure::Dependencies(vec!["storage-1".into()]))
        );
        let missing: Vec<String> = vec!["cache".into()];
        assert_eq!(
            judge_deps(&out(t, &[]), &missing).result,
            Err(Failure::Dependencies(vec!["cache".into()]))
        );
        let timeout = ProbeOutcome {
            at: t,
            latency: Duration::ZERO,
            result: Err(Failure::Timeout),
            document: None,
        };
        assert_eq!(judge_deps(&timeout, &deps).result, Err(Failure::Timeout));
        let nodoc = ProbeOutcome {
            result: Ok(Pass { status: Some(200) }),
            ..timeout
        };
        assert!(matches!(
            judge_deps(&nodoc, &deps).result,
            Err(Failure::BodyMismatch(_))
        ));
    }

    /// One deep URL per replica; registry `a` depends on storage-1, `b` on storage-2: a
    /// storage-1 fault reroutes only `a`, with one probe target for both.
    #[test]
    fn one_probe_judges_every_registry() {
        let server: HealthSpec = toml::from_str(
            "interval = \"10s\"\ntimeout = \"1s\"\nfailure_threshold = 2\nsuccess_threshold = 1\nmass_failure_min_targets = 100",
        )
        .unwrap();
        let mut b = PlanBuilder::new(&server).unwrap();
        let r1 = HealthSpec {
            url: Some("http://127.0.3.1/health".into()),
            ..Default::default()
        };
        let r2 = HealthSpec {
            url: Some("http://127.0.3.2/health".into()),
            ..Default::default()
        };
        for (name, dep) in [("a", "storage-1"), ("b", "storage-2")] {
            let spec = HealthSpec {
                depends_on: Some(vec![dep.into(), "auth".into()]),
                ..Default::default()
            };
            b.add_registry(name, &spec, &[("r1", &r1), ("r2", &r2)])
                .unwrap();
        }
        let p = b.finish();
        // Two deep targets + two front doors, shared by both registries.
        assert_eq!(p.probe_targets().len(), 4);
        let k = |reg: usize, rep: usize| p.registries()[reg].replicas[rep].deep.clone().unwrap();
        assert_eq!(k(0, 0).target, k(1, 0).target);
        assert_eq!(
            k(0, 0).resource,
            Resource::Deps(vec!["auth".to_owned(), "storage-1".to_owned()].into())
        );
        let t1 = k(0, 0).target;

        let mut book = HealthBook::new(&p);
        let none = |_: usize, _: usize| false;
        let mut now = Instant::now();
        for _ in 0..2 {
            now += Duration::from_secs(1);
            book.observe(t1, &out(now, &["storage-1"]), now);
        }
        let v = book.publish(now, &none);
        assert_eq!(v.registries[0].routable, 0b10);
        assert_eq!(v.registries[1].routable, 0b11);
        let d = book.replica_detail(0, 0, now).unwrap().deep.unwrap();
        assert_eq!(d.status, Status::Degraded);
        assert_eq!(
            d.last.unwrap().result,
            Err(Failure::Dependencies(vec!["storage-1".into()]))
        );
        assert_eq!(
            book.replica_detail(1, 0, now).unwrap().deep.unwrap().status,
            Status::Healthy
        );

        // Recovery (success_threshold 1), and a reload keeps the per-resource state.
        book.replan(&p.clone());
        assert_eq!(book.view(now, &none).registries[0].routable, 0b10);
        now += Duration::from_secs(1);
        let flips = book.observe(t1, &out(now, &[]), now);
        assert_eq!(flips.len(), 2, "{flips:?}"); // the Whole key and registry a's key
        assert_eq!(book.view(now, &none).registries[0].routable, 0b11);
    }
}
