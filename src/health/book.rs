//! The health book: every key's [`HealthState`], keyed by *(probe target, resource)*, the
//! mass-failure guard and the masks of every health profile. Pure and single-writer: the
//! writer owns it, feeds it outcomes with explicit times, and publishes the masks it computes.
//!
//! # Keys and deduplication
//!
//! [`TargetTable`] resolves every replica's layered [`HealthSpec`] into a deep and a shallow
//! check. Identical checks (same URL, headers, rules, timing and thresholds) get the same
//! [`TargetId`] — a hash of the content — and are probed once however many registries or
//! replicas use them; e.g. all registries on one replica share the shallow TCP target. A
//! replica's verdict is read through a [`HealthKey`] = (target, [`Resource`]):
//! [`Resource::Whole`] is the whole probe result (the one-URL-per-registry case);
//! [`Resource::Deps`] (from `depends_on`) judges only the named dependencies of the target's
//! deep-health document, each such key with its own state — the scalable form: one deep URL
//! per replica serves every registry, and a failing storage account reroutes exactly the
//! registries that depend on it.
//!
//! # Work follows change
//!
//! Registries are not known here, only *profiles* (`global::Profile`: a replica set plus a
//! `depends_on`), each a list of keys per replica; registries with one profile share its
//! masks. A reverse index key → profiles makes [`HealthBook::observe`] cost
//! O(keys of the target + profiles whose keys flipped), whatever the number of registries.
//! [`HealthBook::tick`] (stale verdicts, guard ageing) costs O(keys), and keys are bounded by
//! the distinct (target, resource set) pairs, not by registries.
//!
//! # Routing rules ([`HealthBook::masks`])
//!
//! Per profile and mode, a `routable` bitmask over its replicas (bit i = replica i, at most
//! 64): disabled replicas are never routable (all disabled → 0, the caller answers NODATA);
//! mode `off` → every non-disabled replica; otherwise the check chosen by the mode (`deep` →
//! deep, `shallow` and `shadow` → shallow) decides: `unknown` (never probed, no URL, or a
//! verdict older than `stale_after`) and `healthy` are routable, `degraded` is not; when every
//! non-disabled replica is degraded the registry **fails open** (all non-disabled routable,
//! `fail_open = true`). In `shadow` mode the masks also carry the mask deep would give.
//!
//! # Mass-failure guard
//!
//! When at least `mass_failure_fraction` of all targets, and at least
//! `mass_failure_min_targets`, have a *prober-side* failure within their interval, the book
//! suspects its own network and holds: failures are counted but degrade nothing. Prober-side
//! means no readable answer: connect, timeout, TLS, reset, or a status or body with no
//! deep-health document. A document that arrives and parses proves the prober can see the
//! replica, even when it reports failing dependencies (a large fleet always has a few). The
//! failing targets are kept in a deadline queue, so each outcome costs O(log targets). One
//! error line when the guard engages and one when it releases.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

use super::outcome::{Failure, ProbeOutcome};
use super::plan::TargetPlan;
pub use super::plan::{ReplicaChecks, TargetTable};
use super::spec::{CheckSpec, GuardSettings, HealthMode};
use super::state::{HealthState, Status};

use crate::routing::{MAX_REPLICAS, ReplicaMask};

mod fleet;

pub use super::keys::{
    BookCounters, BookEvent, EventKind, FleetVerdict, HealthKey, KeyDetail, Masks, ProbeTarget,
    ProfileKeys, TargetId,
};
pub(crate) use super::keys::{Resource, judge_deps};
/// How many events the history keeps.
pub(crate) const HISTORY_LEN: usize = 256;

/// An index into the book's keys.
type KeyId = u32;

#[derive(Clone, Debug)]
struct KeySlot {
    key: HealthKey,
    state: HealthState,
    /// The status routing reads (stale → unknown), as of the last observe or tick.
    effective: Status,
    stale_after: std::time::Duration,
    /// Profiles that read this key.
    profiles: Vec<u32>,
    /// Its name in the fleet.
    name: Arc<str>,
    /// The fleet's verdict while some live instance reports it.
    fleet: Option<FleetVerdict>,
}

#[derive(Clone, Debug)]
struct TargetEntry {
    plan: TargetPlan,
    /// `keys[0]` is the `Whole` key; the others are `Deps` keys it feeds.
    keys: Vec<KeyId>,
    /// When its last prober-side failure stops counting for the guard.
    failing_until: Option<Instant>,
    probed: bool,
    /// Its last `failure + success` threshold outcomes, and whether the guard held for each:
    /// a `Deps` key created later (a registry with a new `depends_on`) is judged on them, as
    /// if it had been there, instead of starting `unknown`.
    recent: VecDeque<(ProbeOutcome, bool)>,
}

#[derive(Clone, Debug, Default)]
struct ProfileSlot {
    deep: Vec<Option<KeyId>>,
    shallow: Vec<Option<KeyId>>,
}

/// What [`HealthBook::routed_key`] returns: a key, its check, its routed status and the last
/// outcome it judged (for a `depends_on` key, with the failing dependencies named).
#[derive(Debug)]
pub(crate) struct RoutedKey<'a> {
    pub(crate) key: &'a HealthKey,
    pub(crate) check: &'a Arc<CheckSpec>,
    pub(crate) status: Status,
    pub(crate) last: Option<&'a ProbeOutcome>,
}

/// The single-writer owner of all health state.
#[derive(Debug)]
pub struct HealthBook {
    targets: HashMap<TargetId, TargetEntry>,
    keys: Vec<KeySlot>,
    key_ids: HashMap<HealthKey, KeyId>,
    profiles: Vec<ProfileSlot>,
    guard: GuardSettings,
    guard_engaged: bool,
    /// Deadline queue of prober-side failures: (counts until, target).
    failing: std::collections::BTreeSet<(Instant, TargetId)>,
    unprobed: usize,
    history: VecDeque<BookEvent>,
    counters: BookCounters,
    /// The fleet's verdicts while its view is current (`set_fleet`), by fleet name; routing
    /// reads them instead of the own verdicts. Kept so keys interned later get theirs.
    fleet: Option<Arc<HashMap<Arc<str>, FleetVerdict>>>,
    /// Profiles reading a key that stayed degraded while what fails changed (storage failing,
    /// then cache failing instead): no mask changes, but incidents re-attribute them. Taken
    /// with [`HealthBook::take_recaused`].
    recaused: Vec<u32>,
    /// Profiles reading a key that just failed for the first time but is not degraded yet
    /// (its failure threshold is higher): what they answer may change within a few probes,
    /// so their next answers are signed ahead (`dnssec::warm`). Taken with
    /// [`HealthBook::take_suspects`].
    suspects: Vec<u32>,
}

/// What an outcome blames, as incidents name causes: nothing (it passed), the whole target
/// (empty), or the failing dependencies.
fn blamed(o: Option<&ProbeOutcome>) -> Option<Vec<String>> {
    match &o?.result {
        Ok(_) => None,
        Err(Failure::Dependencies(failing)) => Some(failing.clone()),
        Err(_) => Some(Vec::new()),
    }
}

fn push_bounded(h: &mut VecDeque<BookEvent>, ev: BookEvent) {
    if h.len() == HISTORY_LEN {
        h.pop_front();
    }
    h.push_back(ev);
}

/// Masks read only whether a key is degraded: unknown ↔ healthy changes no mask.
fn routes_differently(a: Status, b: Status) -> bool {
    (a == Status::Degraded) != (b == Status::Degraded)
}

/// Whether a failed outcome is the prober's own blindness rather than the replica's verdict.
pub(crate) fn prober_side(o: &ProbeOutcome) -> bool {
    !o.passed() && o.document.is_none()
}

impl HealthBook {
    /// A book with every target `Unknown` and no profiles.
    pub fn new(targets: &TargetTable) -> Self {
        let mut b = HealthBook {
            targets: HashMap::new(),
            keys: Vec::new(),
            key_ids: HashMap::new(),
            profiles: Vec::new(),
            guard: targets.guard,
            guard_engaged: false,
            failing: Default::default(),
            unprobed: 0,
            history: VecDeque::new(),
            counters: BookCounters::default(),
            fleet: None,
            recaused: Vec::new(),
            suspects: Vec::new(),
        };
        b.replan(targets);
        b
    }

    /// Switches to new targets, keeping the state of every key whose target still exists
    /// (same [`TargetId`]); new targets start `Unknown`. Profiles are cleared: add them again
    /// with [`add_profile`](Self::add_profile).
    pub(crate) fn replan(&mut self, targets: &TargetTable) {
        let mut old: HashMap<HealthKey, KeySlot> = std::mem::take(&mut self.keys)
            .into_iter()
            .map(|k| (k.key.clone(), k))
            .collect();
        let old_targets = std::mem::take(&mut self.targets);
        self.key_ids.clear();
        self.profiles.clear();
        self.guard = targets.guard;
        self.failing.clear();
        self.unprobed = 0;
        let mut ids: Vec<&TargetId> = targets.targets.keys().collect();
        ids.sort();
        for id in ids {
            let plan = &targets.targets[id];
            let prev = old_targets.get(id);
            let entry = TargetEntry {
                plan: plan.clone(),
                keys: Vec::new(),
                failing_until: prev.and_then(|p| p.failing_until),
                probed: prev.is_some_and(|p| p.probed),
                recent: prev.map(|p| p.recent.clone()).unwrap_or_default(),
            };
            if let Some(t) = entry.failing_until {
                self.failing.insert((t, *id));
            }
            if !entry.probed {
                self.unprobed += 1;
            }
            self.targets.insert(*id, entry);
            let whole = HealthKey {
                target: *id,
                resource: Resource::Whole,
            };
            self.intern(whole.clone(), old.remove(&whole));
        }
        // Deps keys that survive keep their state until a profile asks for them again.
        for (k, slot) in old {
            if k.resource != Resource::Whole && self.targets.contains_key(&k.target) {
                self.intern(k, Some(slot));
            }
        }
    }

    fn intern(&mut self, key: HealthKey, prev: Option<KeySlot>) -> KeyId {
        if let Some(id) = self.key_ids.get(&key) {
            return *id;
        }
        let Some(t) = self.targets.get_mut(&key.target) else {
            return KeyId::MAX;
        };
        let id = self.keys.len() as KeyId;
        let mut slot = prev.unwrap_or_else(|| {
            let mut state = HealthState::new();
            let mut effective = Status::Unknown;
            if let Resource::Deps(deps) = &key.resource {
                // Judged on the target's recent outcomes (no transition logged: nothing
                // changed that anybody routed on).
                for (o, hold) in &t.recent {
                    let _ = state.observe_with(&judge_deps(o, deps), t.plan.thresholds, *hold);
                }
                if let Some((last, _)) = t.recent.back() {
                    effective = state.effective(last.at, t.plan.target.timing.stale_after);
                }
            }
            let name = key.fleet_name();
            KeySlot {
                fleet: self.fleet.as_ref().and_then(|v| v.get(&name).cloned()),
                name,
                key: key.clone(),
                state,
                effective,
                stale_after: t.plan.target.timing.stale_after,
                profiles: Vec::new(),
            }
        });
        slot.profiles.clear();
        slot.stale_after = t.plan.target.timing.stale_after;
        t.keys.push(id);
        self.keys.push(slot);
        self.key_ids.insert(key, id);
        id
    }

    /// Adds a profile (its index is the number of profiles added before it) and returns its
    /// index. Keys of targets not in the table stay unknown.
    pub fn add_profile(&mut self, keys: &ProfileKeys) -> u32 {
        let p = self.profiles.len() as u32;
        let mut slot = ProfileSlot::default();
        for (list, out) in [
            (&keys.deep, &mut slot.deep),
            (&keys.shallow, &mut slot.shallow),
        ] {
            for k in list {
                let id = k
                    .as_ref()
                    .map(|k| self.intern(k.clone(), None))
                    .filter(|id| *id != KeyId::MAX);
                if let Some(id) = id {
                    let users = &mut self.keys[id as usize].profiles;
                    if users.last() != Some(&p) {
                        users.push(p);
                    }
                }
                out.push(id);
            }
        }
        self.profiles.push(slot);
        p
    }

    #[cfg(test)]
    /// How many profiles.
    pub(crate) fn profile_count(&self) -> usize {
        self.profiles.len()
    }

    /// Applies one outcome at `now`; returns the profiles whose masks may have changed
    /// (readers of a key whose routed status flipped), sorted and deduplicated. Outcomes for
    /// targets not in the table are counted and ignored.
    pub fn observe(&mut self, target: TargetId, outcome: &ProbeOutcome, now: Instant) -> Vec<u32> {
        let Some(e) = self.targets.get_mut(&target) else {
            self.counters.unknown_target_outcomes += 1;
            return Vec::new();
        };
        if !e.probed {
            e.probed = true;
            self.unprobed -= 1;
        }
        if let Some(t) = e.failing_until.take() {
            self.failing.remove(&(t, target));
        }
        if prober_side(outcome) {
            // Counts for one probe cycle from when it was seen (a timeout arrives a timeout
            // after the probe started), so a target that keeps failing keeps counting.
            let t = e.plan.target.timing;
            let until = now + t.interval + t.timeout + t.jitter;
            e.failing_until = Some(until);
            self.failing.insert((until, target));
        }
        let th = e.plan.thresholds;
        let check = e.plan.target.check.clone();
        let keys = e.keys.clone();
        self.update_guard(now);
        let hold = self.guard_engaged;
        if let Some(e) = self.targets.get_mut(&target) {
            let keep = (th.failure + th.success) as usize;
            if e.recent.len() >= keep {
                e.recent.pop_front();
            }
            e.recent.push_back((outcome.clone(), hold));
        }
        let mut affected = Vec::new();
        for id in keys {
            let slot = &mut self.keys[id as usize];
            let was_degraded = slot.effective == Status::Degraded;
            let blamed_before = if was_degraded {
                blamed(slot.state.last())
            } else {
                None
            };
            let tr = match &slot.key.resource {
                Resource::Whole => slot.state.observe_with(outcome, th, hold),
                Resource::Deps(deps) => {
                    let derived = judge_deps(outcome, deps);
                    slot.state.observe_with(&derived, th, hold)
                }
            };
            let effective = slot.state.effective(now, slot.stale_after);
            if routes_differently(effective, slot.effective) {
                affected.extend_from_slice(&slot.profiles);
            } else if was_degraded && effective == Status::Degraded {
                let now_blamed = blamed(slot.state.last());
                if now_blamed.is_some() && now_blamed != blamed_before {
                    self.recaused.extend_from_slice(&slot.profiles);
                }
            }
            if tr.is_none()
                && effective != Status::Degraded
                && slot.state.consecutive_failures() == 1
            {
                self.suspects.extend_from_slice(&slot.profiles);
            }
            slot.effective = effective;
            if let Some(tr) = tr {
                self.counters.transitions += 1;
                let key = slot.key.clone();
                let deps = match &key.resource {
                    Resource::Whole => String::new(),
                    Resource::Deps(d) => d.join(","),
                };
                match tr.to {
                    Status::Degraded => {
                        tracing::warn!(probe_target = %target, check = %check, depends_on = %deps, reason = %tr.reason, "probe target became degraded")
                    }
                    _ => {
                        tracing::info!(probe_target = %target, check = %check, depends_on = %deps, from = %tr.from, to = %tr.to, reason = %tr.reason, "probe target changed state")
                    }
                }
                push_bounded(
                    &mut self.history,
                    BookEvent {
                        at: tr.at,
                        kind: EventKind::Transition {
                            key,
                            check: check.clone(),
                            transition: tr,
                        },
                    },
                );
            }
        }
        affected.sort_unstable();
        affected.dedup();
        affected
    }

    /// The profiles whose keys stayed degraded with another cause since the last call (see
    /// `recaused`), sorted and deduplicated.
    pub(crate) fn take_recaused(&mut self) -> Vec<u32> {
        let mut r = std::mem::take(&mut self.recaused);
        r.sort_unstable();
        r.dedup();
        r
    }

    /// The profiles of keys that failed for the first time without becoming degraded since
    /// the last call (see `suspects`), sorted and deduplicated.
    pub(crate) fn take_suspects(&mut self) -> Vec<u32> {
        let mut r = std::mem::take(&mut self.suspects);
        r.sort_unstable();
        r.dedup();
        r
    }

    /// Time passes: ages the guard's failures out and expires stale verdicts. Returns the
    /// profiles whose masks may have changed. O(keys), independent of the registry count.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<u32> {
        self.update_guard(now);
        let mut affected = Vec::new();
        for slot in &mut self.keys {
            let effective = slot.state.effective(now, slot.stale_after);
            if routes_differently(effective, slot.effective) {
                affected.extend_from_slice(&slot.profiles);
            }
            slot.effective = effective;
        }
        affected.sort_unstable();
        affected.dedup();
        affected
    }

    fn update_guard(&mut self, now: Instant) {
        while let Some(&(until, id)) = self.failing.first() {
            if until >= now {
                break;
            }
            self.failing.pop_first();
            if let Some(e) = self.targets.get_mut(&id) {
                e.failing_until = None;
            }
        }
        let total = self.targets.len();
        let failing = self.failing.len();
        let g = self.guard;
        let hit = failing >= g.min_targets as usize && failing as f64 >= g.fraction * total as f64;
        if hit && !self.guard_engaged {
            self.guard_engaged = true;
            self.counters.guard_engagements += 1;
            tracing::error!(
                failing,
                total,
                "mass probe failure: suspecting the prober's own network, holding health state"
            );
            push_bounded(
                &mut self.history,
                BookEvent {
                    at: now,
                    kind: EventKind::GuardEngaged { failing, total },
                },
            );
        } else if !hit && self.guard_engaged {
            self.guard_engaged = false;
            tracing::error!(
                failing,
                total,
                "mass probe failure over: health state follows probes again"
            );
            push_bounded(
                &mut self.history,
                BookEvent {
                    at: now,
                    kind: EventKind::GuardReleased,
                },
            );
        }
    }

    /// Whether the mass-failure guard holds.
    pub(crate) fn guard_engaged(&self) -> bool {
        self.guard_engaged
    }

    fn status_of(&self, key: Option<KeyId>) -> Status {
        key.map_or(Status::Unknown, |k| self.routed(&self.keys[k as usize]))
    }

    fn mask(&self, keys: &[Option<KeyId>], disabled: ReplicaMask) -> (ReplicaMask, bool) {
        let mut enabled = ReplicaMask::EMPTY;
        let mut ok = ReplicaMask::EMPTY;
        for (i, k) in keys.iter().enumerate().take(MAX_REPLICAS) {
            if disabled.contains(i) {
                continue;
            }
            enabled.insert(i);
            if self.status_of(*k) != Status::Degraded {
                ok.insert(i);
            }
        }
        if ok.is_empty() && !enabled.is_empty() {
            (enabled, true)
        } else {
            (ok, false)
        }
    }

    /// The masks of profile `p` in `mode` with the replicas of `disabled` disabled.
    pub fn masks(&self, p: u32, mode: HealthMode, disabled: ReplicaMask) -> Masks {
        let Some(prof) = self.profiles.get(p as usize) else {
            return Masks::all(0);
        };
        let n = prof.deep.len().min(MAX_REPLICAS);
        let all = Masks::all(n).enabled;
        let enabled = all & !disabled;
        let (routable, fail_open, shadow_deep) = match mode {
            HealthMode::Off => (enabled, false, None),
            HealthMode::Deep => {
                let (m, f) = self.mask(&prof.deep, disabled);
                (m, f, None)
            }
            HealthMode::Shallow => {
                let (m, f) = self.mask(&prof.shallow, disabled);
                (m, f, None)
            }
            HealthMode::Shadow => {
                let (m, f) = self.mask(&prof.shallow, disabled);
                let (d, _) = self.mask(&prof.deep, disabled);
                (m, f, Some(d))
            }
        };
        Masks {
            routable,
            enabled,
            fail_open,
            shadow_deep,
        }
    }

    /// The status routing reads for replica `i` of profile `p` in `mode` (shallow in shallow
    /// and shadow modes, else deep; the other check when that one is missing), without
    /// copying any detail: for counts and filters over many profiles.
    pub(crate) fn routed_status(&self, p: u32, i: usize, mode: HealthMode) -> Status {
        let Some(prof) = self.profiles.get(p as usize) else {
            return Status::Unknown;
        };
        let deep = prof.deep.get(i).copied().flatten();
        let shallow = prof.shallow.get(i).copied().flatten();
        let key = match mode {
            HealthMode::Shallow | HealthMode::Shadow => shallow.or(deep),
            _ => deep.or(shallow),
        };
        self.status_of(key)
    }

    /// The key routing reads for replica `i` of profile `p` in `mode` (as
    /// [`HealthBook::routed_status`] chooses it): what an incident names as its cause.
    pub(crate) fn routed_key(&self, p: u32, i: usize, mode: HealthMode) -> Option<RoutedKey<'_>> {
        let prof = self.profiles.get(p as usize)?;
        let deep = prof.deep.get(i).copied().flatten();
        let shallow = prof.shallow.get(i).copied().flatten();
        let k = match mode {
            HealthMode::Shallow | HealthMode::Shadow => shallow.or(deep),
            _ => deep.or(shallow),
        }?;
        let slot = &self.keys[k as usize];
        Some(RoutedKey {
            key: &slot.key,
            check: &self.targets.get(&slot.key.target)?.plan.target.check,
            status: self.routed(slot),
            last: slot.state.last(),
        })
    }

    /// The detail of replica `i` of profile `p`: (deep, shallow).
    pub fn replica_detail(
        &self,
        p: u32,
        i: usize,
        now: Instant,
    ) -> (Option<KeyDetail>, Option<KeyDetail>) {
        let Some(prof) = self.profiles.get(p as usize) else {
            return (None, None);
        };
        let d = |k: Option<&Option<KeyId>>| k.copied().flatten().map(|k| self.key_detail(k, now));
        (d(prof.deep.get(i)), d(prof.shallow.get(i)))
    }

    fn key_detail(&self, k: KeyId, now: Instant) -> KeyDetail {
        let slot = &self.keys[k as usize];
        let st = &slot.state;
        KeyDetail {
            key: slot.key.clone(),
            effective: st.effective(now, slot.stale_after),
            stale: st.is_stale(now, slot.stale_after),
            since: st.since(),
            consecutive_successes: st.consecutive_successes(),
            consecutive_failures: st.consecutive_failures(),
            last: st.last().cloned(),
            fleet: slot.fleet.clone().filter(|_| self.fleet.is_some()),
            fleet_current: self.fleet.is_some(),
            routed: self.routed(slot),
        }
    }

    /// Whether every target has been probed at least once (readiness). O(1).
    pub fn first_round_done(&self) -> bool {
        self.unprobed == 0
    }

    /// The last [`HISTORY_LEN`] events, oldest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &BookEvent> {
        self.history.iter()
    }

    /// Counters for metrics.
    pub fn counters(&self) -> BookCounters {
        self.counters
    }

    #[cfg(test)]
    /// How many keys (target, resource) are tracked.
    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::super::outcome::{DeepDoc, Failure, Pass};
    use super::*;

    /// The routable replicas of profile `p` in `mode`, nothing disabled, as bits.
    fn routable(b: &HealthBook, p: u32, mode: HealthMode) -> u64 {
        b.masks(p, mode, ReplicaMask::EMPTY).routable.bits()
    }
    use crate::health::spec::HealthSpec;

    const S: Duration = Duration::from_secs(1);

    fn server(extra: &str) -> HealthSpec {
        let mut s: HealthSpec = toml::from_str(extra).unwrap();
        s.interval.get_or_insert_with(|| "10s".into());
        s.timeout.get_or_insert_with(|| "1s".into());
        s.failure_threshold.get_or_insert(2);
        s.success_threshold.get_or_insert(2);
        s
    }

    fn url(host: &str, path: &str) -> HealthSpec {
        HealthSpec {
            url: Some(format!("http://{host}/{path}")),
            ..Default::default()
        }
    }

    /// Profiles `a` and `b`, three replicas each on hosts 127.0.3.1..3 (shared front doors),
    /// each registry with its own deep URL.
    fn setup(extra: &str) -> (TargetTable, Vec<ProfileKeys>) {
        let mut t = TargetTable::new(&server(extra)).unwrap();
        let mut profiles = Vec::new();
        for reg in ["a", "b"] {
            let mut keys = ProfileKeys::default();
            for i in 1..=3 {
                let c = t
                    .replica(&HealthSpec::default(), &url(&format!("127.0.3.{i}"), reg))
                    .unwrap();
                keys.deep.push(c.deep.map(HealthKey::whole));
                keys.shallow.push(c.shallow.map(HealthKey::whole));
            }
            profiles.push(keys);
        }
        (t, profiles)
    }

    fn book(t: &TargetTable, profiles: &[ProfileKeys]) -> HealthBook {
        let mut b = HealthBook::new(t);
        for p in profiles {
            b.add_profile(p);
        }
        b
    }

    fn outcome(at: Instant, result: Result<Pass, Failure>, doc: Option<DeepDoc>) -> ProbeOutcome {
        ProbeOutcome {
            at,
            latency: S / 100,
            result,
            document: doc.map(Arc::new),
        }
    }

    fn pass(at: Instant) -> ProbeOutcome {
        outcome(at, Ok(Pass { status: Some(200) }), None)
    }

    /// A failure the prober saw nothing behind (a timeout).
    fn blind(at: Instant) -> ProbeOutcome {
        outcome(at, Err(Failure::Timeout), None)
    }

    fn doc(failing: &[&str], all: &[&str]) -> DeepDoc {
        let v = serde_json::json!({
            "checks": all.iter().map(|d| (d.to_string(), serde_json::Value::String(
                if failing.contains(d) { "down" } else { "ok" }.into()))).collect::<serde_json::Map<_, _>>()
        });
        DeepDoc::parse(&v).unwrap()
    }

    /// A 503 with a deep-health document naming `failing`.
    fn deps_fail(at: Instant, failing: &[&str]) -> ProbeOutcome {
        let all = ["storage-1", "storage-2", "auth"];
        let result = if failing.is_empty() {
            Ok(Pass { status: Some(200) })
        } else {
            Err(Failure::Status(503))
        };
        outcome(at, result, Some(doc(failing, &all)))
    }

    fn deep(p: &[ProfileKeys], reg: usize, rep: usize) -> TargetId {
        p[reg].deep[rep].as_ref().unwrap().target
    }

    fn shallow(p: &[ProfileKeys], reg: usize, rep: usize) -> TargetId {
        p[reg].shallow[rep].as_ref().unwrap().target
    }

    /// Feeds `n` outcomes made by `f`, one second apart from `*clock`; the profiles affected.
    fn feed(
        b: &mut HealthBook,
        t: TargetId,
        f: fn(Instant) -> ProbeOutcome,
        n: usize,
        clock: &mut Instant,
    ) -> Vec<u32> {
        let mut affected = Vec::new();
        for _ in 0..n {
            *clock += S;
            affected.extend(b.observe(t, &f(*clock), *clock));
        }
        affected
    }

    fn fail(at: Instant) -> ProbeOutcome {
        outcome(at, Err(Failure::Status(503)), None)
    }

    #[test]
    fn routing_reads_the_fleet_verdict_while_it_is_current() {
        let (t, p) = setup("");
        let mut b = book(&t, &p);
        let mut clock = Instant::now();
        feed(&mut b, deep(&p, 0, 0), fail, 2, &mut clock);
        assert_eq!(routable(&b, 0, HealthMode::Deep), 0b110);
        let mine = HealthKey::whole(deep(&p, 0, 0)).fleet_name();
        assert!(b.own_degraded().contains(&mine) && b.own_degraded().len() == 1);
        // The fleet's view is current and nobody else reports it: the fleet keeps it.
        assert_eq!(b.set_fleet(Some(Arc::new(HashMap::new()))), [0]);
        assert_eq!(routable(&b, 0, HealthMode::Deep), 0b111);
        let (d, _) = b.replica_detail(0, 0, clock);
        let d = d.unwrap();
        assert_eq!(
            (d.effective, d.routed, d.fleet_current),
            (Status::Degraded, Status::Healthy, true)
        );
        // A quorum reports it, and another key this instance sees healthy.
        let other = HealthKey::whole(deep(&p, 0, 1)).fleet_name();
        let verdict = |by: &[&str]| FleetVerdict {
            degraded: by.len() >= 2,
            reported_by: by.iter().map(|s| s.to_string()).collect(),
        };
        let v: HashMap<Arc<str>, FleetVerdict> =
            [(mine, verdict(&["a", "b"])), (other, verdict(&["b", "c"]))].into();
        assert_eq!(b.set_fleet(Some(Arc::new(v))), [0]);
        assert_eq!(routable(&b, 0, HealthMode::Deep), 0b100);
        assert_eq!(routable(&b, 1, HealthMode::Deep), 0b111);
        // The fleet's view is not current: own verdicts again.
        assert_eq!(b.set_fleet(None), [0]);
        assert_eq!(routable(&b, 0, HealthMode::Deep), 0b110);
        assert!(b.replica_detail(0, 0, clock).0.unwrap().fleet.is_none());
    }

    #[test]
    fn identical_targets_are_deduplicated_and_ids_stable() {
        let (t, p) = setup("");
        // 6 distinct deep URLs (3 hosts × 2 registries) + 3 shared front doors.
        assert_eq!(t.probe_targets().len(), 9);
        assert_ne!(deep(&p, 0, 0), deep(&p, 1, 0));
        assert_eq!(shallow(&p, 0, 0), shallow(&p, 1, 0));
        assert_eq!(
            *t.get(shallow(&p, 0, 2)).unwrap().check,
            CheckSpec::Tcp {
                host: "127.0.3.3".into(),
                port: 80
            }
        );
        let (t2, _) = setup("");
        assert_eq!(t.probe_targets(), t2.probe_targets());
    }

    #[test]
    fn degrade_fail_open_and_disable() {
        let (t, p) = setup("mass_failure_min_targets = 100");
        let mut b = book(&t, &p);
        let mut now = Instant::now();
        assert!(!b.first_round_done());
        assert_eq!(
            b.masks(0, HealthMode::Deep, ReplicaMask::EMPTY),
            Masks::all(3)
        );
        // One failure moves nothing; the second degrades replica 1 of profile a only, and
        // says so: profile 0 is the only one affected.
        assert!(feed(&mut b, deep(&p, 0, 1), fail, 1, &mut now).is_empty());
        assert_eq!(feed(&mut b, deep(&p, 0, 1), fail, 1, &mut now), vec![0]);
        assert_eq!(routable(&b, 0, HealthMode::Deep), 0b101);
        assert_eq!(routable(&b, 1, HealthMode::Deep), 0b111);
        assert_eq!(b.counters().transitions, 1);
        // Disabled replicas never route.
        let m = b.masks(0, HealthMode::Deep, ReplicaMask::from_bits(0b001));
        assert_eq!((m.routable.bits(), m.enabled.bits()), (0b100, 0b110));
        // All degraded → fail open over the enabled ones.
        feed(&mut b, deep(&p, 0, 0), fail, 2, &mut now);
        feed(&mut b, deep(&p, 0, 2), fail, 2, &mut now);
        let m = b.masks(0, HealthMode::Deep, ReplicaMask::EMPTY);
        assert_eq!((m.routable.bits(), m.fail_open), (0b111, true));
        let m = b.masks(0, HealthMode::Deep, ReplicaMask::from_bits(0b001));
        assert_eq!((m.routable.bits(), m.fail_open), (0b110, true));
        // Everything disabled → mask 0, not fail-open.
        let m = b.masks(0, HealthMode::Deep, ReplicaMask::from_bits(0b111));
        assert_eq!((m.routable.bits(), m.fail_open), (0, false));
        // Recovery needs two successes.
        feed(&mut b, deep(&p, 0, 2), pass, 1, &mut now);
        assert!(b.masks(0, HealthMode::Deep, ReplicaMask::EMPTY).fail_open);
        feed(&mut b, deep(&p, 0, 2), pass, 1, &mut now);
        let m = b.masks(0, HealthMode::Deep, ReplicaMask::EMPTY);
        assert_eq!((m.routable.bits(), m.fail_open), (0b100, false));
    }

    #[test]
    fn stale_verdicts_count_as_unknown_from_tick() {
        let (t, p) = setup("mass_failure_min_targets = 100");
        let mut b = book(&t, &p);
        let mut now = Instant::now();
        feed(&mut b, deep(&p, 0, 0), fail, 2, &mut now);
        assert_eq!(routable(&b, 0, HealthMode::Deep), 0b110);
        // stale_after defaults to 3 intervals = 30 s after the last outcome.
        assert!(b.tick(now + 30 * S).is_empty());
        assert_eq!(routable(&b, 0, HealthMode::Deep), 0b110);
        assert_eq!(b.tick(now + 31 * S), vec![0]);
        assert_eq!(routable(&b, 0, HealthMode::Deep), 0b111);
        let (d, _) = b.replica_detail(0, 0, now + 31 * S);
        let d = d.unwrap();
        assert!(d.stale);
        assert_eq!(
            d.effective,
            Status::Unknown,
            "a stale degraded verdict routes as unknown"
        );
        assert_eq!(d.consecutive_failures, 2);
    }

    #[test]
    fn modes_switch_without_reprobing() {
        let (t, p) = setup("mass_failure_min_targets = 100");
        let mut b = book(&t, &p);
        let mut now = Instant::now();
        feed(&mut b, deep(&p, 0, 0), fail, 2, &mut now);
        assert_eq!(
            b.masks(0, HealthMode::Shadow, ReplicaMask::EMPTY),
            Masks {
                routable: ReplicaMask::from_bits(0b111),
                enabled: ReplicaMask::from_bits(0b111),
                fail_open: false,
                shadow_deep: Some(ReplicaMask::from_bits(0b110))
            }
        );
        assert_eq!(routable(&b, 0, HealthMode::Deep), 0b110);
        // The front door of 127.0.3.2 is down, for both registries.
        feed(&mut b, shallow(&p, 0, 1), fail, 2, &mut now);
        assert_eq!(routable(&b, 0, HealthMode::Shallow), 0b101);
        assert_eq!(routable(&b, 1, HealthMode::Shallow), 0b101);
        assert_eq!(routable(&b, 1, HealthMode::Deep), 0b111);
        // Off: latency only, disabled still excluded.
        assert_eq!(routable(&b, 0, HealthMode::Off), 0b111);
        assert_eq!(
            b.masks(0, HealthMode::Off, ReplicaMask::from_bits(0b010))
                .routable
                .bits(),
            0b101
        );
    }

    #[test]
    fn the_guard_counts_only_prober_side_failures() {
        // 9 targets, fraction 0.3 → 3 failing targets engage it.
        let (t, p) = setup("mass_failure_fraction = 0.3\nmass_failure_min_targets = 3");
        let mut b = book(&t, &p);
        let mut now = Instant::now();
        // Three failing deep checks whose documents arrive: visible replicas, no guard; each
        // degrades on its own.
        for rep in 0..3 {
            feed(
                &mut b,
                deep(&p, 0, rep),
                |at| deps_fail(at, &["storage-1"]),
                2,
                &mut now,
            );
        }
        assert!(!b.guard_engaged());
        assert!(b.masks(0, HealthMode::Deep, ReplicaMask::EMPTY).fail_open);
        // Three targets timing out: the prober is blind, the guard holds.
        for rep in 0..3 {
            feed(&mut b, deep(&p, 1, rep), blind, 1, &mut now);
        }
        assert!(b.guard_engaged());
        assert_eq!(b.counters().guard_engagements, 1);
        feed(&mut b, deep(&p, 1, 0), blind, 3, &mut now);
        assert_eq!(routable(&b, 1, HealthMode::Deep), 0b111, "held");
        // Failures age out one probe cycle after they were seen: released.
        b.tick(now + 20 * S);
        assert!(!b.guard_engaged());
        let kinds: Vec<bool> = b
            .history()
            .filter_map(|e| match e.kind {
                EventKind::GuardEngaged { .. } => Some(true),
                EventKind::GuardReleased => Some(false),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, vec![true, false]);
    }

    #[test]
    fn depends_on_keys_judge_only_their_dependencies() {
        let mut t = TargetTable::new(&server("mass_failure_min_targets = 100")).unwrap();
        // One deep document per replica serves every profile: storage-1, storage-2.
        let c = t
            .replica(&HealthSpec::default(), &url("127.0.4.1", "health"))
            .unwrap();
        let key = |deps: &[&str]| {
            Some(HealthKey {
                target: c.deep.unwrap(),
                resource: Resource::Deps(deps.iter().map(|d| d.to_string()).collect()),
            })
        };
        let profiles = [
            ProfileKeys {
                deep: vec![key(&["auth", "storage-1"])],
                shallow: vec![None],
            },
            ProfileKeys {
                deep: vec![key(&["auth", "storage-2"])],
                shallow: vec![None],
            },
            ProfileKeys {
                deep: vec![key(&["auth", "storage-1"])],
                shallow: vec![None],
            },
        ];
        let mut b = book(&t, &profiles);
        assert_eq!(b.key_count(), 2 + 2, "whole keys + two resource sets");
        let target = c.deep.unwrap();
        let mut now = Instant::now();
        let mut affected = Vec::new();
        for _ in 0..2 {
            now += S;
            affected.extend(b.observe(target, &deps_fail(now, &["storage-1"]), now));
        }
        // Exactly the profiles on storage-1 (0 and 2) are affected and degraded.
        affected.sort();
        affected.dedup();
        assert_eq!(affected, vec![0, 2]);
        // (A single degraded replica fails open.)
        assert!(b.masks(0, HealthMode::Deep, ReplicaMask::EMPTY).fail_open);
        assert!(b.masks(2, HealthMode::Deep, ReplicaMask::EMPTY).fail_open);
        assert!(!b.masks(1, HealthMode::Deep, ReplicaMask::EMPTY).fail_open);
        let (d, _) = b.replica_detail(0, 0, now);
        assert_eq!(
            d.unwrap().last.unwrap().result,
            Err(Failure::Dependencies(vec!["storage-1".into()]))
        );
        // A missing dependency counts as failing.
        let o = judge_deps(&deps_fail(now, &[]), &["cache".into()]);
        assert_eq!(o.result, Err(Failure::Dependencies(vec!["cache".into()])));
    }

    #[test]
    fn a_new_resource_set_is_judged_on_the_targets_recent_outcomes() {
        let mut t = TargetTable::new(&server("mass_failure_min_targets = 100")).unwrap();
        let a = t
            .replica(&HealthSpec::default(), &url("127.0.4.1", "health"))
            .unwrap()
            .deep
            .unwrap();
        let b = t
            .replica(&HealthSpec::default(), &url("127.0.4.2", "health"))
            .unwrap()
            .deep
            .unwrap();
        let key = |target, deps: &[&str]| {
            Some(HealthKey {
                target,
                resource: Resource::Deps(deps.iter().map(|d| d.to_string()).collect()),
            })
        };
        let mut book = book(&t, &[]);
        let mut now = Instant::now();
        for _ in 0..2 {
            now += S;
            book.observe(a, &deps_fail(now, &["storage-1"]), now);
            book.observe(b, &deps_fail(now, &[]), now);
        }
        // A registry added now on storage-1 alone (a resource set nobody used before) is
        // degraded on replica a at once: two failures, the threshold, were already seen.
        let p = book.add_profile(&ProfileKeys {
            deep: vec![key(a, &["storage-1"]), key(b, &["storage-1"])],
            shallow: vec![None, None],
        });
        assert_eq!(routable(&book, p, HealthMode::Deep), 0b10);
        // On storage-2 it is healthy on both.
        let q = book.add_profile(&ProfileKeys {
            deep: vec![key(a, &["storage-2"]), key(b, &["storage-2"])],
            shallow: vec![None, None],
        });
        assert_eq!(routable(&book, q, HealthMode::Deep), 0b11);
        let (d, _) = book.replica_detail(q, 0, now);
        assert_eq!(d.unwrap().effective, Status::Healthy);
    }

    #[test]
    fn replan_keeps_surviving_state() {
        let (t, p) = setup("mass_failure_min_targets = 100");
        let mut b = book(&t, &p);
        let mut now = Instant::now();
        feed(&mut b, deep(&p, 0, 0), fail, 2, &mut now);
        for id in t.probe_targets().iter().map(|t| t.id).collect::<Vec<_>>() {
            now += S;
            b.observe(id, &fail(now), now);
        }
        assert!(b.first_round_done());
        // The same targets again, profiles re-added: state and first round survive.
        b.replan(&t);
        for x in &p {
            b.add_profile(x);
        }
        assert!(b.first_round_done());
        assert!(
            !b.masks(0, HealthMode::Deep, ReplicaMask::EMPTY)
                .routable
                .contains(0)
        );
        // A table without registry a's targets: their state is dropped.
        let mut t2 = TargetTable::new(&server("mass_failure_min_targets = 100")).unwrap();
        t2.replica(&HealthSpec::default(), &url("127.0.3.9", "x"))
            .unwrap();
        b.replan(&t2);
        assert!(!b.first_round_done());
        assert_eq!(b.profile_count(), 0);
    }
}
