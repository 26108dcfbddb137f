//! The single writer: the only task that publishes snapshots after start. It owns the health
//! book, the catalog index, the operator overrides and the runtime health modes; it feeds the
//! book the prober's outcomes and executes the admin API's commands one at a time.
//!
//! ```text
//!  prober ──(TargetId, ProbeOutcome)──┐
//!  admin API / SIGHUP ──Command───────┼─► Control::run ──► World (sync apply step)
//!  tick ──────────────────────────────┘                      │ one Snapshot per change
//!                                                            ▼
//!                                                     Shared::publish
//! ```
//!
//! # Work follows change
//!
//! Every step costs what it changes, never the number of registries: an outcome recomputes
//! the masks of the profiles whose keys flipped (registries of one profile share masks), a
//! catalog put or delete copies one shard of the name table, a replica override or a
//! per-registry mode touches one registry's exception, a region override or a server-wide
//! mode recomputes every profile (their number, not the registries'). Only a reload and the
//! status summary walk everything, and the summary walks profiles.
//!
//! # One publish per change
//!
//! Each step computes the whole next snapshot — name table, masks for the new set of
//! profiles and exceptions — before it publishes it with one store, so no query sees a new
//! registry set with old masks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::catalog::file::{CatalogEntry, Journal, JournalOp};
use crate::global::{Globals, Registry, SetKind};
use crate::health::book::{
    EventKind as BookKind, HealthBook, KeyDetail, Masks, Resource, TargetId,
};
use crate::health::check::Checker;
use crate::health::prober::{ProbeEvent, ProberStats, spawn_prober};
use crate::health::spec::HealthMode;
use crate::metrics::Metrics;
use crate::overrides::{AuditEvent, OverrideError, Overrides, Target, format_time, time_plus};
use crate::state::catalog::{CatalogIndex, Entry, profile_keys};
use crate::state::command::{AdminError, Command, ModeCommand, OverrideAction, OverrideCommand};
use crate::state::events::EventLog;
use crate::state::readiness::{Alive, Latch};
use crate::state::view::{
    Ack, DependencyView, EventKind as ViewKind, ModeName, OverrideView, ProbeView, RegistryRequest,
    RegistryStatus, ReplicaStatus, ResourceStatus, STATUS_PAGE, STATUS_PAGE_MAX, ServerFacts,
    StatusQuery, StatusSummary, StatusView, WallClock, ZoneFact,
};
use crate::state::{HealthMasks, Shared, Snapshot};

/// How often time-driven changes are evaluated (stale verdicts, guard ageing, override
/// expiry).
const TICK: Duration = Duration::from_millis(250);
/// Outcomes buffered between the prober and the writer.
const EVENT_QUEUE: usize = 4096;
/// Commands buffered from the admin API.
const COMMAND_QUEUE: usize = 64;

/// What the running control task exposes.
#[derive(Debug, Clone)]
pub struct ControlHandles {
    /// The prober's counters (probes, panics, targets).
    pub prober: Arc<ProberStats>,
    /// Set once every probe target has had its first outcome (readiness).
    pub first_round: watch::Receiver<bool>,
    /// Commands for the writer (the admin API and SIGHUP send here).
    pub commands: mpsc::Sender<Command>,
    /// The event history.
    pub events: EventLog,
    /// Stops the prober (fault injection for tests of the stale-verdict rule: with no
    /// outcomes, verdicts expire to unknown and every replica becomes routable).
    #[doc(hidden)]
    pub prober_abort: tokio::task::AbortHandle,
}

/// Start the prober and the writer task on the current runtime, after publishing the first
/// complete snapshot (overrides and modes applied). Fails when the override state file or
/// the catalog journal cannot be opened (starting without the operator's overrides would
/// silently undo them).
pub fn spawn(
    shared: Shared,
    index: CatalogIndex,
    metrics: Arc<Metrics>,
    (ready, alive): (Latch, Alive),
    shutdown: CancellationToken,
) -> std::io::Result<(ControlHandles, JoinHandle<()>)> {
    let snap = shared.load();
    let overrides = Overrides::load(&snap.config.admin.state_file, SystemTime::now())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let journal = match &snap.config.catalog {
        Some(c) => Some(Journal::open(&c.journal)?),
        None => None,
    };
    let probe_targets = snap.targets.probe_targets();
    let (targets_tx, targets_rx) = watch::channel(probe_targets.clone());
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let checker = Checker::new().map_err(std::io::Error::other)?;
    let prober = spawn_prober(checker, targets_rx, events_tx, shutdown.clone());
    let (first_tx, first_rx) = watch::channel(probe_targets.is_empty());
    let event_log = EventLog::new(snap.config.admin.event_history);
    let mut world = World::new(&snap, index, overrides, event_log.clone(), metrics);
    world.journal = journal;
    shared.publish(world.rebuild(&snap));
    let mut control = Control {
        prober_stats: prober.stats.clone(),
        world,
        shared,
        targets: targets_tx,
        outcomes: events_rx,
        commands: commands_rx,
        first_round: first_tx,
        ready: Some(ready),
        _alive: alive,
    };
    if probe_targets.is_empty() {
        control.ready.take();
    }
    let prober_handle = prober.handle;
    let prober_abort = prober_handle.abort_handle();
    let task = tokio::spawn(async move {
        control.run(shutdown).await;
        // The prober stops on the same token; wait for it so nothing outlives the server.
        match prober_handle.await {
            Ok(()) => {}
            Err(e) if e.is_cancelled() => {}
            Err(e) => error!(error = %e, "the prober ended abnormally"),
        }
    });
    Ok((
        ControlHandles {
            prober: prober.stats,
            first_round: first_rx,
            commands: commands_tx,
            events: event_log,
            prober_abort,
        },
        task,
    ))
}

/// Runtime health modes set through the admin API (the kill switch). They survive reloads;
/// a restart goes back to the configured modes.
#[derive(Debug, Default)]
struct Modes {
    server: Option<HealthMode>,
    registries: HashMap<String, HealthMode>,
}

fn mode_of(m: ModeName) -> HealthMode {
    match m {
        ModeName::Deep => HealthMode::Deep,
        ModeName::Shallow => HealthMode::Shallow,
        ModeName::Shadow => HealthMode::Shadow,
        ModeName::Off => HealthMode::Off,
    }
}

/// The writer's state and its apply steps: each takes the snapshot in service and one event
/// and returns the next snapshot to publish (None: nothing routing reads changed). No I/O but
/// the override state file and the catalog journal, which must be on disk before the change
/// is acknowledged.
struct World {
    book: HealthBook,
    index: CatalogIndex,
    overrides: Overrides,
    modes: Modes,
    events: EventLog,
    metrics: Arc<Metrics>,
    journal: Option<Journal>,
    started_at: String,
    last_book_event: Option<Instant>,
    /// Per probe target: name and stale_after; when it last reported; whether stale now.
    target_names: HashMap<TargetId, (String, Duration)>,
    last_outcome: HashMap<TargetId, Instant>,
    stale: HashSet<TargetId>,
}

impl World {
    fn new(
        snap: &Snapshot,
        index: CatalogIndex,
        overrides: Overrides,
        events: EventLog,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut w = Self {
            book: HealthBook::new(&snap.targets),
            index,
            overrides,
            modes: Modes::default(),
            events,
            metrics,
            journal: None,
            started_at: format_time(SystemTime::now()),
            last_book_event: None,
            target_names: HashMap::new(),
            last_outcome: HashMap::new(),
            stale: HashSet::new(),
        };
        w.replan(snap);
        w
    }

    /// Point the book at a snapshot's targets and profiles (states of surviving keys kept).
    fn replan(&mut self, snap: &Snapshot) {
        self.book.replan(&snap.targets);
        for p in &snap.globals.profiles {
            self.book.add_profile(&profile_keys(&snap.globals, p));
        }
        self.target_names = snap
            .targets
            .probe_targets()
            .iter()
            .map(|t| (t.id, (t.check.to_string(), t.timing.stale_after)))
            .collect();
        let names = &self.target_names;
        self.last_outcome.retain(|t, _| names.contains_key(t));
        self.stale.retain(|t| names.contains_key(t));
    }

    /// The mode a profile routes on (without per-registry switches).
    fn profile_mode(&self, g: &Globals, p: u32) -> HealthMode {
        let set_mode = g
            .profiles
            .get(p as usize)
            .and_then(|p| g.sets.get(p.set as usize))
            .map_or(HealthMode::Deep, |s| s.mode);
        self.modes.server.unwrap_or(set_mode)
    }

    /// Replicas of profile `p`'s set disabled by a region override.
    fn region_disabled(&self, g: &Globals, p: u32, now: SystemTime) -> u64 {
        let Some(set) = g
            .profiles
            .get(p as usize)
            .and_then(|p| g.sets.get(p.set as usize))
        else {
            return 0;
        };
        let regions: Vec<&str> = self
            .overrides
            .active(now)
            .filter_map(|o| match &o.target {
                Target::Region { region } => Some(region.as_str()),
                Target::Replica { .. } => None,
            })
            .collect();
        if regions.is_empty() {
            return 0;
        }
        set.replicas
            .iter()
            .enumerate()
            .take(64)
            .filter(|(_, r)| regions.contains(&&*r.region))
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    fn profile_masks(&self, g: &Globals, p: u32, now: SystemTime) -> Masks {
        self.book
            .masks(p, self.profile_mode(g, p), self.region_disabled(g, p, now))
    }

    /// A registry's own masks when it has a replica override or a mode of its own.
    fn exception(&self, g: &Globals, reg: &Registry, now: SystemTime) -> Option<Masks> {
        let key = reg.key();
        let mode = self.modes.registries.get(key).copied();
        let (set, _) = g.parts(reg)?;
        let replica_disabled = set
            .replicas
            .iter()
            .enumerate()
            .take(64)
            .filter(|(_, r)| {
                matches!(self.overrides.is_disabled(key, &r.key, &r.region, now),
                    Some(o) if matches!(o.target, Target::Replica { .. }))
            })
            .fold(0u64, |m, (i, _)| m | 1 << i);
        if mode.is_none() && replica_disabled == 0 {
            return None;
        }
        let mode = mode.unwrap_or_else(|| self.profile_mode(g, reg.profile));
        let disabled = replica_disabled | self.region_disabled(g, reg.profile, now);
        Some(self.book.masks(reg.profile, mode, disabled))
    }

    /// Registries with an override or a mode of their own.
    fn exception_keys(&self, now: SystemTime) -> Vec<String> {
        let mut keys: Vec<String> = self
            .overrides
            .active(now)
            .filter_map(|o| match &o.target {
                Target::Replica { registry, .. } => Some(registry.clone()),
                Target::Region { .. } => None,
            })
            .chain(self.modes.registries.keys().cloned())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    fn registry(&self, g: &Globals, key: &str) -> Option<Registry> {
        g.find(self.index.name_of(key)?).cloned()
    }

    /// Every mask from scratch: after a reload, a region override, a server-wide mode, an
    /// override expiry. O(profiles + exceptions).
    fn all_masks(&self, g: &Globals) -> HealthMasks {
        let now = SystemTime::now();
        let profiles = (0..g.profiles.len() as u32)
            .map(|p| self.profile_masks(g, p, now))
            .collect();
        let exceptions = self
            .exception_keys(now)
            .iter()
            .filter_map(|k| self.registry(g, k))
            .filter_map(|r| Some((r.id, self.exception(g, &r, now)?)))
            .collect();
        HealthMasks {
            profiles,
            exceptions,
            guard_engaged: self.book.guard_engaged(),
        }
    }

    /// The whole snapshot `snap` with masks computed for its registries.
    fn rebuild(&mut self, snap: &Snapshot) -> Snapshot {
        let health = self.all_masks(&snap.globals);
        self.note_health(&snap.globals, &snap.health, &health);
        Snapshot {
            health: Arc::new(health),
            ..snap.clone()
        }
    }

    /// Masks after `profiles` changed: those recomputed, and the exceptions on them.
    fn updated(&self, snap: &Snapshot, profiles: &[u32]) -> HealthMasks {
        let now = SystemTime::now();
        let g = &snap.globals;
        let mut h = (*snap.health).clone();
        for &p in profiles {
            if let Some(m) = h.profiles.get_mut(p as usize) {
                *m = self.profile_masks(g, p, now);
            }
        }
        if !h.exceptions.is_empty() {
            let touched: HashSet<u32> = profiles.iter().copied().collect();
            for k in self.exception_keys(now) {
                if let Some(r) = self.registry(g, &k)
                    && touched.contains(&r.profile)
                    && let Some(m) = self.exception(g, &r, now)
                {
                    h.exceptions.insert(r.id, m);
                }
            }
        }
        h.guard_engaged = self.book.guard_engaged();
        h
    }

    /// Log and record what changed between two mask sets: fail-open and shadow divergence,
    /// once per profile (naming the registry when the profile has one).
    fn note_health(&self, g: &Globals, old: &HealthMasks, new: &HealthMasks) {
        let members = self.index.members();
        for (p, m) in new.profiles.iter().enumerate() {
            let was = old.profiles.get(p);
            let n = members.get(p).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let name = profile_name(g, p as u32);
            let was_open = was.is_some_and(|w| w.fail_open);
            if was_open != m.fail_open {
                if m.fail_open {
                    self.metrics.fail_open_started(&name);
                    error!(registries = n, profile = %name, "every enabled replica is degraded: failing open, answering all of them");
                } else {
                    info!(registries = n, profile = %name, "no longer failing open");
                }
                let msg = if m.fail_open {
                    "every enabled replica degraded: failing open"
                } else {
                    "no longer failing open"
                };
                self.events.push(
                    SystemTime::now(),
                    ViewKind::FailOpen,
                    Some(&name),
                    None,
                    msg,
                );
            }
            let diverged = |x: &Masks| x.shadow_deep.is_some_and(|d| d != x.routable);
            if was.is_some_and(diverged) != diverged(m) {
                let msg = if diverged(m) {
                    let deep = m.shadow_deep.unwrap_or(m.routable);
                    warn!(profile = %name, routed = m.routable, deep, "shadow mode: deep checks would change routing");
                    format!(
                        "shadow: deep health would change routing (routed mask {:#b}, deep {deep:#b})",
                        m.routable
                    )
                } else {
                    info!(profile = %name, "shadow mode: deep checks agree with routing again");
                    "shadow: deep health agrees with routing again".to_string()
                };
                self.events
                    .push(SystemTime::now(), ViewKind::Shadow, Some(&name), None, msg);
            }
        }
        if old.guard_engaged != new.guard_engaged {
            self.metrics.guard(new.guard_engaged);
        }
        self.update_state_metrics(g, new);
    }

    /// Health-state gauges for the config file's registries (bounded by the config file).
    fn update_state_metrics(&self, g: &Globals, h: &HealthMasks) {
        let now = Instant::now();
        let now_wall = SystemTime::now();
        let mut states = Vec::new();
        for (p, prof) in g.profiles.iter().enumerate() {
            let Some(set) = g.sets.get(prof.set as usize) else {
                continue;
            };
            if set.kind != SetKind::Registry
                || self.index.members().get(p).copied().unwrap_or(0) == 0
            {
                continue;
            }
            let mode = self.profile_mode(g, p as u32);
            for (i, r) in set.replicas.iter().enumerate() {
                let state = match self
                    .overrides
                    .is_disabled(&set.key, &r.key, &r.region, now_wall)
                {
                    Some(_) => "disabled",
                    None => routed_key(&self.book.replica_detail(p as u32, i, now), mode)
                        .map_or("unknown", |k| k.effective.as_str()),
                };
                states.push((set.key.to_string(), r.key.to_string(), state));
            }
        }
        let _ = h;
        self.metrics
            .set_health_states(states.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), *c)));
    }

    //--- events ------------------------------------------------------------------------------

    /// A probe outcome.
    fn outcome(
        &mut self,
        snap: &Snapshot,
        target: TargetId,
        outcome: &crate::health::outcome::ProbeOutcome,
        now: Instant,
    ) -> Option<Snapshot> {
        let name = self
            .target_names
            .get(&target)
            .map_or("unknown", |(n, _)| n.as_str());
        let result = match &outcome.result {
            Ok(_) => "ok",
            Err(f) => f.label(),
        };
        self.metrics.probe(name, result, outcome.latency);
        self.last_outcome.insert(target, now);
        let affected = self.book.observe(target, outcome, now);
        self.forward_book_events();
        self.changed(snap, &affected)
    }

    /// The next snapshot after `affected` profiles (or the guard) changed.
    fn changed(&mut self, snap: &Snapshot, affected: &[u32]) -> Option<Snapshot> {
        if affected.is_empty() && self.book.guard_engaged() == snap.health.guard_engaged {
            return None;
        }
        let health = self.updated(snap, affected);
        if health == *snap.health {
            return None;
        }
        self.note_health(&snap.globals, &snap.health, &health);
        Some(Snapshot {
            health: Arc::new(health),
            ..snap.clone()
        })
    }

    /// Time passes: stale verdicts, guard ageing, override expiry.
    fn tick(&mut self, snap: &Snapshot, now: Instant) -> Option<Snapshot> {
        for (target, at) in &self.last_outcome {
            let stale_after = self
                .target_names
                .get(target)
                .map_or(Duration::MAX, |(_, s)| *s);
            let stale = now.saturating_duration_since(*at) > stale_after;
            if stale && self.stale.insert(*target) {
                self.metrics.stale_verdict();
                let name = self
                    .target_names
                    .get(target)
                    .map_or("unknown", |(n, _)| n.as_str());
                warn!(target = %name, "no probe outcome for stale_after: the verdict expires to unknown");
            } else if !stale {
                self.stale.remove(target);
            }
        }
        let affected = self.book.tick(now);
        self.forward_book_events();
        if self.expire_overrides() {
            return Some(self.rebuild(snap));
        }
        self.changed(snap, &affected)
    }

    fn expire_overrides(&mut self) -> bool {
        let now = SystemTime::now();
        if self.overrides.next_expiry().is_none_or(|t| t > now) {
            return false;
        }
        match self.overrides.prune(now) {
            Ok(expired) => {
                for e in &expired {
                    self.events.push_audit(e);
                }
                self.metrics
                    .set_overrides(self.overrides.active(now).count());
                !expired.is_empty()
            }
            Err(e) => {
                error!(error = %e, "cannot write the override state file after an expiry");
                false
            }
        }
    }

    /// Copy new book history entries (transitions, guard) into the event log and metrics.
    fn forward_book_events(&mut self) {
        let clock = WallClock::now();
        let last = self.last_book_event;
        let fresh: Vec<_> = self
            .book
            .history()
            .filter(|e| last.is_none_or(|l| e.at > l))
            .cloned()
            .collect();
        for e in fresh {
            self.last_book_event = Some(self.last_book_event.map_or(e.at, |n| n.max(e.at)));
            let at = clock.wall(e.at);
            match &e.kind {
                BookKind::Transition {
                    check,
                    transition,
                    key,
                } => {
                    self.metrics.transition(transition.to.as_str());
                    let deps = match &key.resource {
                        Resource::Whole => String::new(),
                        Resource::Deps(d) => format!(" [{}]", d.join(",")),
                    };
                    self.events.push(
                        at,
                        ViewKind::Transition,
                        None,
                        None,
                        format!(
                            "{check}{deps}: {} -> {} ({})",
                            transition.from, transition.to, transition.reason
                        ),
                    );
                }
                BookKind::GuardEngaged { failing, total } => {
                    self.metrics.guard(true);
                    self.events.push(
                        at,
                        ViewKind::Guard,
                        None,
                        None,
                        format!("mass-failure guard engaged: {failing} of {total} targets failing; holding state"),
                    );
                }
                BookKind::GuardReleased => {
                    self.metrics.guard(false);
                    self.events.push(
                        at,
                        ViewKind::Guard,
                        None,
                        None,
                        "mass-failure guard released",
                    );
                }
            }
        }
    }

    /// Disable or enable a replica or a region.
    fn set_override(
        &mut self,
        snap: &Snapshot,
        c: OverrideCommand,
    ) -> Result<(AuditEvent, Snapshot), AdminError> {
        let g = &snap.globals;
        match &c.target {
            Target::Replica { registry, replica } => {
                let reg = self
                    .registry(g, registry)
                    .ok_or_else(|| AdminError::NotFound(format!("no registry {registry}")))?;
                let (set, _) = g
                    .parts(&reg)
                    .ok_or_else(|| AdminError::NotFound(format!("no registry {registry}")))?;
                if !set.replicas.iter().any(|r| &*r.key == replica) {
                    return Err(AdminError::NotFound(format!(
                        "registry {registry} has no replica {replica}"
                    )));
                }
            }
            Target::Region { region } => {
                if !snap.config.regions.iter().any(|(n, _)| n == region) {
                    return Err(AdminError::NotFound(format!("no region {region}")));
                }
            }
        }
        let now = SystemTime::now();
        let result = match c.action {
            OverrideAction::Disable => {
                let until = c.duration.map(|d| time_plus(now, d));
                self.overrides
                    .disable(c.target.clone(), &c.reason, &c.who, until, now)
            }
            OverrideAction::Enable => {
                self.overrides
                    .enable(c.target.clone(), &c.reason, &c.who, now)
            }
        };
        let event = match result {
            Ok(event) => event,
            Err(OverrideError::NotDisabled(t)) => {
                return Err(AdminError::Conflict(format!("{t} is not disabled")));
            }
            Err(e) => return Err(AdminError::Failed(e.to_string())),
        };
        self.events.push_audit(&event);
        self.metrics
            .set_overrides(self.overrides.active(now).count());
        let next = match &c.target {
            // One registry: its exception only.
            Target::Replica { registry, .. } => {
                let mut h = (*snap.health).clone();
                if let Some(reg) = self.registry(g, registry) {
                    match self.exception(g, &reg, now) {
                        Some(m) => h.exceptions.insert(reg.id, m),
                        None => h.exceptions.remove(&reg.id),
                    };
                }
                self.note_health(g, &snap.health, &h);
                Snapshot {
                    health: Arc::new(h),
                    ..snap.clone()
                }
            }
            Target::Region { .. } => self.rebuild(snap),
        };
        Ok((event, next))
    }

    /// Switch the health mode of one registry or of all.
    fn set_mode(&mut self, snap: &Snapshot, c: ModeCommand) -> Result<(Ack, Snapshot), AdminError> {
        let mode = mode_of(c.mode);
        let g = &snap.globals;
        let next = match &c.registry {
            Some(r) => {
                let reg = self
                    .registry(g, r)
                    .ok_or_else(|| AdminError::NotFound(format!("no registry {r}")))?;
                self.modes.registries.insert(r.clone(), mode);
                let mut h = (*snap.health).clone();
                if let Some(m) = self.exception(g, &reg, SystemTime::now()) {
                    h.exceptions.insert(reg.id, m);
                }
                self.note_health(g, &snap.health, &h);
                Snapshot {
                    health: Arc::new(h),
                    ..snap.clone()
                }
            }
            None => {
                // Server-wide: every registry, replacing per-registry switches.
                self.modes.server = Some(mode);
                self.modes.registries.clear();
                self.rebuild(snap)
            }
        };
        let scope = c.registry.as_deref().unwrap_or("every registry");
        warn!(mode = %mode, scope, who = %c.who, "health mode switched");
        self.events.push(
            SystemTime::now(),
            ViewKind::Mode,
            c.registry.as_deref(),
            None,
            format!("mode {mode} for {scope} (by {})", c.who),
        );
        Ok((
            Ack {
                message: format!("mode {mode} for {scope}"),
                generation: Some(snap.generation + 1),
            },
            next,
        ))
    }

    /// Add or change one registry of the catalog.
    fn put_registry(
        &mut self,
        snap: &Snapshot,
        key: String,
        req: RegistryRequest,
        who: &str,
    ) -> Result<(Ack, Snapshot), AdminError> {
        let bad = AdminError::BadRequest;
        if self.journal.is_none() {
            return Err(AdminError::Conflict(
                "no [catalog] is configured: registries of the config file change by reload".into(),
            ));
        }
        let g = &snap.globals;
        if let Some(r) = self.registry(g, &key)
            && g.parts(&r)
                .is_some_and(|(s, _)| s.kind == SetKind::Registry)
        {
            return Err(AdminError::Conflict(format!(
                "registry {key} is defined in the config file; change it there"
            )));
        }
        let line = format!(
            "key,name,template,depends_on,ttl,answers\n{key},{},{},{},{},{}\n",
            req.name,
            req.template,
            req.depends_on.as_deref().unwrap_or_default().join(";"),
            req.ttl.as_deref().unwrap_or(""),
            req.answers.map(|a| a.to_string()).unwrap_or_default(),
        );
        let entry = crate::catalog::file::parse_catalog(&line, std::path::Path::new("request"))
            .map_err(|p| {
                bad(p
                    .iter()
                    .map(|p| p.reason.clone())
                    .collect::<Vec<_>>()
                    .join("; "))
            })?
            .pop()
            .ok_or_else(|| bad("empty request".into()))?;
        let set = g
            .sets
            .iter()
            .position(|s| s.kind == SetKind::Template && *s.key == *entry.template)
            .ok_or_else(|| AdminError::NotFound(format!("no template {}", entry.template)))?
            as u32;
        let mut next = (**g).clone();
        let put = self
            .index
            .put(
                &mut next,
                &snap.zones,
                Entry {
                    key: entry.key.clone(),
                    name: entry.name.clone(),
                    set,
                    depends_on: entry.depends_on.clone(),
                    ttl: entry.ttl,
                    answers: entry.answers,
                },
            )
            .map_err(bad)?;
        let op = JournalOp::Put {
            entry: CatalogEntry { line: 0, ..entry },
            at: format_time(SystemTime::now()),
            who: who.to_string(),
        };
        if let Some(j) = &mut self.journal
            && let Err(e) = j.append(&op)
        {
            // Not on disk: undo, so what is served is what a restart would serve.
            self.index.delete(&mut next, &key);
            return Err(AdminError::Failed(format!(
                "cannot write the catalog journal: {e}"
            )));
        }
        let mut h = (*snap.health).clone();
        if let Some(p) = put.new_profile {
            let keys = profile_keys(&next, &next.profiles[p as usize]);
            self.book.add_profile(&keys);
            h.profiles
                .push(self.profile_masks(&next, p, SystemTime::now()));
        }
        if let Some(old) = &put.replaced {
            h.exceptions.remove(&old.id);
        }
        if let Some(reg) = self.registry(&next, &key)
            && let Some(m) = self.exception(&next, &reg, SystemTime::now())
        {
            h.exceptions.insert(put.id, m);
        }
        info!(registry = %key, who, "registry put");
        Ok(catalog_changed(
            snap,
            next,
            h,
            format!("registry {key} put"),
        ))
    }

    /// Remove one registry of the catalog.
    fn delete_registry(
        &mut self,
        snap: &Snapshot,
        key: &str,
        who: &str,
    ) -> Result<(Ack, Snapshot), AdminError> {
        let g = &snap.globals;
        let reg = self
            .registry(g, key)
            .ok_or_else(|| AdminError::NotFound(format!("no registry {key}")))?;
        if g.parts(&reg)
            .is_some_and(|(s, _)| s.kind == SetKind::Registry)
            || self.journal.is_none()
        {
            return Err(AdminError::Conflict(format!(
                "registry {key} is defined in the config file; change it there"
            )));
        }
        let op = JournalOp::Delete {
            key: key.into(),
            at: format_time(SystemTime::now()),
            who: who.to_string(),
        };
        if let Some(j) = &mut self.journal {
            j.append(&op).map_err(|e| {
                AdminError::Failed(format!("cannot write the catalog journal: {e}"))
            })?;
        }
        let mut next = (**g).clone();
        self.index.delete(&mut next, key);
        let mut h = (*snap.health).clone();
        h.exceptions.remove(&reg.id);
        info!(registry = %key, who, "registry deleted");
        Ok(catalog_changed(
            snap,
            next,
            h,
            format!("registry {key} deleted"),
        ))
    }

    /// Switch to a freshly loaded snapshot: health of surviving keys kept, masks computed for
    /// the new registries before anything is published.
    fn reload(
        &mut self,
        current: &Snapshot,
        next: Snapshot,
        index: CatalogIndex,
    ) -> std::io::Result<Snapshot> {
        if next.config.listen != current.config.listen
            || next.config.admin.listen != current.config.admin.listen
        {
            warn!("listen addresses changed in the config; they take effect at the next restart");
        }
        self.journal = match &next.config.catalog {
            Some(c) => Some(Journal::open(&c.journal)?),
            None => None,
        };
        self.index = index;
        self.replan(&next);
        self.metrics.install_replica_counters(next.counters.clone());
        let empty = HealthMasks::default();
        let health = self.all_masks(&next.globals);
        self.note_health(&next.globals, &empty, &health);
        Ok(Snapshot {
            health: Arc::new(health),
            ..next
        })
    }

    //--- status ------------------------------------------------------------------------------

    fn status(
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
        if let Some(s) = &q.state
            && !crate::metrics::STATES.contains(&s.as_str())
        {
            return Err(AdminError::BadRequest(format!(
                "state must be one of {}",
                crate::metrics::STATES.join(", ")
            )));
        }
        // Per profile: each replica's routed state (cheap filter for `?state=`).
        let profile_states: Vec<Vec<&'static str>> = (0..g.profiles.len() as u32)
            .map(|p| self.replica_states(g, p, None, now, now_wall))
            .collect();
        let mut registries = Vec::new();
        let mut next = None;
        let mut candidates: Box<dyn Iterator<Item = (&str, &[u8])>> = match &q.registry {
            Some(k) => Box::new(self.index.name_of(k).map(|n| (k.as_str(), n)).into_iter()),
            None => Box::new(self.index.keys_after(q.after.as_deref())),
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
            if let Some(want) = &q.state {
                let states = if exceptional {
                    self.replica_states(g, reg.profile, Some(reg), now, now_wall)
                } else {
                    profile_states
                        .get(reg.profile as usize)
                        .cloned()
                        .unwrap_or_default()
                };
                if !states.iter().any(|s| s == want) {
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
            summary: self.summary(snap, &profile_states, now, now_wall),
            next,
        })
    }

    /// Each replica's state for profile `p` (or registry `reg` with its exception).
    fn replica_states(
        &self,
        g: &Globals,
        p: u32,
        reg: Option<&Registry>,
        now: Instant,
        now_wall: SystemTime,
    ) -> Vec<&'static str> {
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
                    "disabled"
                } else {
                    routed_key(&self.book.replica_detail(p, i, now), mode)
                        .map_or("unknown", |k| k.effective.as_str())
                }
            })
            .collect()
    }

    fn registry_status(
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
                        "disabled".to_string()
                    } else {
                        k.map_or("unknown", |k| k.effective.as_str()).to_string()
                    },
                    routable: masks.routable >> i & 1 == 1,
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
    fn summary(
        &self,
        snap: &Snapshot,
        profile_states: &[Vec<&'static str>],
        now: Instant,
        now_wall: SystemTime,
    ) -> StatusSummary {
        let g = &snap.globals;
        let mut s = StatusSummary {
            registries: g.len() as u64,
            ..Default::default()
        };
        let members = self.index.members();
        let mut counts: Vec<i64> = members.iter().map(|m| i64::from(*m)).collect();
        let add =
            |p: u32, states: &[&'static str], n: i64, fail_open: bool, s: &mut StatusSummary| {
                let Some(set) = g
                    .profiles
                    .get(p as usize)
                    .and_then(|pr| g.sets.get(pr.set as usize))
                else {
                    return;
                };
                if fail_open {
                    s.fail_open = (s.fail_open as i64 + n) as u64;
                }
                for (r, st) in set.replicas.iter().zip(states) {
                    let c = s.states.entry((*st).to_string()).or_default();
                    *c = (*c as i64 + n) as u64;
                    let c = s
                        .regions
                        .entry(r.region.to_string())
                        .or_default()
                        .entry((*st).to_string())
                        .or_default();
                    *c = (*c as i64 + n) as u64;
                }
            };
        for (id, m) in &snap.health.exceptions {
            let _ = m;
            if let Some(reg) = self
                .exception_keys(now_wall)
                .iter()
                .filter_map(|k| self.registry(g, k))
                .find(|r| r.id == *id)
            {
                if let Some(c) = counts.get_mut(reg.profile as usize) {
                    *c -= 1;
                }
                let states = self.replica_states(g, reg.profile, Some(&reg), now, now_wall);
                add(
                    reg.profile,
                    &states,
                    1,
                    snap.health.get(&reg).fail_open,
                    &mut s,
                );
            }
        }
        for (p, states) in profile_states.iter().enumerate() {
            let n = counts.get(p).copied().unwrap_or(0);
            if n > 0 {
                let fail_open = snap.health.profiles.get(p).is_some_and(|m| m.fail_open);
                add(p as u32, states, n, fail_open, &mut s);
            }
        }
        // Resources: each deep key read by at least one registry.
        let mut resources: BTreeMap<(String, Vec<String>), (String, u64)> = BTreeMap::new();
        for (p, prof) in g.profiles.iter().enumerate() {
            let n = members.get(p).copied().unwrap_or(0);
            let Some(set) = g.sets.get(prof.set as usize) else {
                continue;
            };
            if n == 0 {
                continue;
            }
            for i in 0..set.replicas.len() {
                if let (Some(d), _) = self.book.replica_detail(p as u32, i, now) {
                    let deps = match &d.key.resource {
                        Resource::Whole => Vec::new(),
                        Resource::Deps(x) => x.to_vec(),
                    };
                    let e = resources
                        .entry((d.check.to_string(), deps))
                        .or_insert((d.effective.as_str().to_string(), 0));
                    e.1 += u64::from(n);
                }
            }
        }
        s.resources = resources
            .into_iter()
            .map(
                |((check, depends_on), (state, registries))| ResourceStatus {
                    check,
                    depends_on,
                    state,
                    registries,
                },
            )
            .collect();
        s
    }
}

/// The reply and the next snapshot after a catalog change: the new name table with the
/// masks computed for it, published together.
fn catalog_changed(
    snap: &Snapshot,
    g: Globals,
    h: HealthMasks,
    message: String,
) -> (Ack, Snapshot) {
    (
        Ack {
            message,
            generation: Some(snap.generation + 1),
        },
        Snapshot {
            globals: Arc::new(g),
            health: Arc::new(h),
            ..snap.clone()
        },
    )
}

/// The key routing reads in `mode`: shallow in shallow and shadow modes, else deep.
fn routed_key(d: &(Option<KeyDetail>, Option<KeyDetail>), mode: HealthMode) -> Option<&KeyDetail> {
    match mode {
        HealthMode::Shallow | HealthMode::Shadow => d.1.as_ref().or(d.0.as_ref()),
        _ => d.0.as_ref().or(d.1.as_ref()),
    }
}

/// A profile's name in logs: its config registry, or its template and `depends_on`.
fn profile_name(g: &Globals, p: u32) -> String {
    let Some(prof) = g.profiles.get(p as usize) else {
        return String::new();
    };
    let Some(set) = g.sets.get(prof.set as usize) else {
        return String::new();
    };
    match (set.kind, &prof.depends_on) {
        (SetKind::Registry, _) => set.key.to_string(),
        (SetKind::Template, Some(d)) => format!("template/{}[{}]", set.key, d.join(",")),
        (SetKind::Template, None) => format!("template/{}", set.key),
    }
}

struct Control {
    prober_stats: Arc<ProberStats>,
    world: World,
    shared: Shared,
    targets: watch::Sender<Arc<[crate::health::book::ProbeTarget]>>,
    outcomes: mpsc::Receiver<ProbeEvent>,
    commands: mpsc::Receiver<Command>,
    first_round: watch::Sender<bool>,
    ready: Option<Latch>,
    /// `/live` reports the writer dead once this drops (the task ended or panicked).
    _alive: Alive,
}

impl Control {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut outcomes_open = true;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(command) = self.commands.recv() => self.command(command).await,
                event = self.outcomes.recv(), if outcomes_open => match event {
                    Some((target, outcome)) => {
                        let snap = self.shared.load();
                        if let Some(next) = self.world.outcome(&snap, target, &outcome, Instant::now()) {
                            self.shared.publish(next);
                        }
                        self.check_first_round();
                    }
                    None => {
                        error!("the prober's outcome channel closed; health verdicts will expire to unknown");
                        outcomes_open = false;
                    }
                },
                _ = tick.tick() => {
                    use std::sync::atomic::Ordering;
                    self.world.metrics.set_prober_restarts(self.prober_stats.panics.load(Ordering::Relaxed));
                    let snap = self.shared.load();
                    if let Some(next) = self.world.tick(&snap, Instant::now()) {
                        self.shared.publish(next);
                    }
                }
            }
        }
    }

    fn check_first_round(&mut self) {
        if !*self.first_round.borrow() && self.world.book.first_round_done() {
            info!("first probe round done");
            let _ = self.first_round.send(true);
            // Ready: zones were loaded before start, and every target has been probed.
            self.ready.take();
        }
    }

    async fn command(&mut self, command: Command) {
        let snap = self.shared.load();
        match command {
            Command::Reload { who, reply } => {
                let r = self.reload(&who).await;
                let _ = reply.send(r);
            }
            Command::Override { command, reply } => {
                let r = self.world.set_override(&snap, command).map(|(e, next)| {
                    self.shared.publish(next);
                    e
                });
                let _ = reply.send(r);
            }
            Command::Mode { command, reply } => {
                let r = self.world.set_mode(&snap, command).map(|(a, next)| {
                    self.shared.publish(next);
                    a
                });
                let _ = reply.send(r);
            }
            Command::PutRegistry {
                key,
                request,
                who,
                reply,
            } => {
                let r = self
                    .world
                    .put_registry(&snap, key, request, &who)
                    .map(|(a, next)| {
                        self.shared.publish(next);
                        a
                    });
                let _ = reply.send(r);
            }
            Command::DeleteRegistry { key, who, reply } => {
                let r = self
                    .world
                    .delete_registry(&snap, &key, &who)
                    .map(|(a, next)| {
                        self.shared.publish(next);
                        a
                    });
                let _ = reply.send(r);
            }
            Command::Status { query, reply } => {
                let _ = reply.send(self.world.status(&snap, &query, self.ready.is_none()));
            }
        }
    }

    async fn reload(&mut self, who: &str) -> Result<Ack, AdminError> {
        let current = self.shared.load();
        let path = current.config.path.clone();
        // Parsing and preparing run off the writer's thread; probes queue meanwhile.
        let loaded = tokio::task::spawn_blocking(move || Snapshot::load_indexed(&path))
            .await
            .map_err(|e| AdminError::Failed(format!("the reload task failed: {e}")))?;
        let w = &mut self.world;
        match loaded {
            Err(problems) => {
                w.metrics.reload(false);
                let text = problems.to_string();
                error!(who, problems = %text.replace('\n', "; "), "reload rejected; still serving the previous configuration");
                w.events.push(
                    SystemTime::now(),
                    ViewKind::Reload,
                    None,
                    None,
                    format!("reload rejected: {text}"),
                );
                Err(AdminError::Failed(text))
            }
            Ok((next, index)) => {
                let current = self.shared.load();
                let next = w.reload(&current, next, index).map_err(|e| {
                    AdminError::Failed(format!("cannot open the catalog journal: {e}"))
                })?;
                let _ = self.targets.send(next.targets.probe_targets());
                self.shared.publish(next);
                let generation = self.shared.load().generation;
                w.metrics.reload(true);
                w.metrics.set_generation(generation);
                info!(who, generation, "configuration reloaded");
                w.events.push(
                    SystemTime::now(),
                    ViewKind::Reload,
                    None,
                    None,
                    format!("configuration reloaded (generation {generation}, by {who})"),
                );
                Ok(Ack {
                    message: "reloaded".into(),
                    generation: Some(generation),
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The apply steps, one event kind at a time, on a real snapshot (the repository's zones)
    //! without sockets, a prober or a runtime: each step's result is the next snapshot.

    use std::path::PathBuf;

    use super::*;
    use crate::config::Config;
    use crate::health::outcome::{Failure, Pass, ProbeOutcome};

    const S: Duration = Duration::from_secs(1);

    /// Config registry `cfg` (own URLs), catalog registries `a0..a{n}` on template `fleet`
    /// judged on `storage` (even) or `cache` (odd).
    fn world(n: usize) -> (World, Snapshot, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut lines = String::from("key,name,template,depends_on,ttl,answers\n");
        for i in 0..n {
            let dep = if i % 2 == 0 { "storage" } else { "cache" };
            lines.push_str(&format!("a{i},a{i}.registry.example.,fleet,{dep},,\n"));
        }
        std::fs::write(dir.path().join("registries.csv"), lines).unwrap();
        let mut text = format!(
            "version = 1\n[server]\nzones_dir = {:?}\n[admin]\nstate_file = \"state.json\"\n\
             [regions.westeurope]\n[regions.eastus]\n\
             [health]\ninterval = \"10s\"\ntimeout = \"1s\"\nfailure_threshold = 2\n\
             mass_failure_min_targets = 100\n\
             [catalog]\nfile = \"registries.csv\"\n[templates.fleet]\n",
            repo.join("zones")
        );
        for (i, r) in ["eastus", "westeurope"].iter().enumerate() {
            text.push_str(&format!(
                "[templates.fleet.replicas.{r}]\nipv4 = [\"192.0.2.{i}\"]\nhealth.url = \"http://127.0.9.{i}/fleet\"\n\
                 [registries.cfg.replicas.{r}]\nipv4 = [\"192.0.2.{i}\"]\nhealth.url = \"http://127.0.9.{i}/cfg\"\n"
            ));
        }
        text.push_str("[registries.cfg]\nname = \"cfg.registry.example.\"\n");
        let path = dir.path().join("steerdns.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::from_toml(&text, &path).unwrap();
        let (snap, index) = Snapshot::from_config_indexed(config).unwrap();
        let overrides = Overrides::load(&dir.path().join("state.json"), SystemTime::now()).unwrap();
        let mut w = World::new(
            &snap,
            index,
            overrides,
            EventLog::new(64),
            Arc::new(Metrics::new()),
        );
        w.journal = Some(Journal::open(&dir.path().join("registries.csv.journal")).unwrap());
        let snap = w.rebuild(&snap);
        (w, snap, dir)
    }

    fn reg(snap: &Snapshot, key: &str) -> Registry {
        snap.globals
            .find_name(
                &hickory_proto::rr::Name::from_ascii(format!("{key}.registry.example.")).unwrap(),
            )
            .unwrap()
            .clone()
    }

    fn masks(snap: &Snapshot, key: &str) -> Masks {
        snap.health.get(&reg(snap, key))
    }

    /// The deep target of replica `i` of `key`.
    fn deep(snap: &Snapshot, key: &str, i: usize) -> TargetId {
        let r = reg(snap, key);
        snap.globals.parts(&r).unwrap().0.replicas[i].deep.unwrap()
    }

    fn failing_doc(at: Instant, failing: &str) -> ProbeOutcome {
        let doc = crate::health::outcome::DeepDoc::parse(&serde_json::json!({
            "checks": {"storage": if failing == "storage" { "down" } else { "ok" }, "cache": "ok"}
        }));
        ProbeOutcome {
            at,
            latency: S / 100,
            result: Err(Failure::Status(503)),
            document: doc.map(Arc::new),
        }
    }

    fn ok(at: Instant) -> ProbeOutcome {
        ProbeOutcome {
            at,
            latency: S / 100,
            result: Ok(Pass { status: Some(200) }),
            document: None,
        }
    }

    fn disable(target: Target) -> OverrideCommand {
        OverrideCommand {
            action: OverrideAction::Disable,
            target,
            reason: "test".into(),
            who: "test".into(),
            duration: None,
        }
    }

    #[test]
    fn an_outcome_changes_exactly_the_profiles_of_its_flipped_keys() {
        let (mut w, snap, _dir) = world(6);
        let now = Instant::now();
        let t = deep(&snap, "a0", 1); // westeurope's shared document
        // One failure moves nothing: no snapshot to publish.
        assert!(
            w.outcome(&snap, t, &failing_doc(now, "storage"), now)
                .is_none()
        );
        let next = w
            .outcome(&snap, t, &failing_doc(now + S, "storage"), now + S)
            .expect("the second failure degrades the storage key");
        for i in 0..6 {
            let want = if i % 2 == 0 { 0b01 } else { 0b11 };
            assert_eq!(masks(&next, &format!("a{i}")).routable, want, "a{i}");
        }
        assert_eq!(masks(&next, "cfg").routable, 0b11);
        // The name table is the same one: only masks changed.
        assert!(Arc::ptr_eq(&next.globals, &snap.globals));
        // A passing probe of an unrelated target changes nothing.
        assert!(
            w.outcome(&next, deep(&next, "cfg", 0), &ok(now + 2 * S), now + 2 * S)
                .is_none()
        );
    }

    #[test]
    fn a_tick_expires_stale_verdicts() {
        let (mut w, snap, _dir) = world(2);
        let now = Instant::now();
        let t = deep(&snap, "a0", 1);
        w.outcome(&snap, t, &failing_doc(now, "storage"), now);
        let snap = w
            .outcome(&snap, t, &failing_doc(now + S, "storage"), now + S)
            .unwrap();
        assert_eq!(masks(&snap, "a0").routable, 0b01);
        assert!(
            w.tick(&snap, now + 20 * S).is_none(),
            "not stale yet (3 × 10 s)"
        );
        let next = w
            .tick(&snap, now + 32 * S)
            .expect("stale: unknown, routable");
        assert_eq!(masks(&next, "a0").routable, 0b11);
    }

    #[test]
    fn overrides_touch_one_registry_or_one_region() {
        let (mut w, snap, _dir) = world(4);
        let (_, next) = w
            .set_override(
                &snap,
                disable(Target::Replica {
                    registry: "a0".into(),
                    replica: "westeurope".into(),
                }),
            )
            .unwrap();
        assert_eq!(masks(&next, "a0").routable, 0b01);
        assert_eq!(
            masks(&next, "a2").routable,
            0b11,
            "same profile, no override"
        );
        assert_eq!(next.health.exceptions.len(), 1);
        assert_eq!(next.health.profiles, snap.health.profiles);
        let (_, next) = w
            .set_override(
                &next,
                disable(Target::Region {
                    region: "eastus".into(),
                }),
            )
            .unwrap();
        assert_eq!(masks(&next, "a0").routable, 0, "both disabled: NODATA");
        for k in ["a1", "a2", "cfg"] {
            assert_eq!(masks(&next, k).routable, 0b10, "{k}");
        }
        let e = w
            .set_override(
                &next,
                disable(Target::Replica {
                    registry: "a0".into(),
                    replica: "nowhere".into(),
                }),
            )
            .unwrap_err();
        assert!(matches!(e, AdminError::NotFound(_)), "{e:?}");
        let mut enable = disable(Target::Region {
            region: "westeurope".into(),
        });
        enable.action = OverrideAction::Enable;
        assert!(matches!(
            w.set_override(&next, enable),
            Err(AdminError::Conflict(_))
        ));
    }

    #[test]
    fn modes_switch_one_registry_or_all() {
        let (mut w, snap, _dir) = world(2);
        let now = Instant::now();
        let t = deep(&snap, "a0", 1);
        w.outcome(&snap, t, &failing_doc(now, "storage"), now);
        let snap = w
            .outcome(&snap, t, &failing_doc(now + S, "storage"), now + S)
            .unwrap();
        let cmd = |registry: Option<&str>, mode| ModeCommand {
            mode,
            registry: registry.map(str::to_owned),
            who: "test".into(),
        };
        let (_, next) = w.set_mode(&snap, cmd(Some("a0"), ModeName::Off)).unwrap();
        assert_eq!(masks(&next, "a0").routable, 0b11, "off: latency only");
        assert_eq!(next.health.profiles, snap.health.profiles, "nobody else");
        let (_, next) = w.set_mode(&next, cmd(None, ModeName::Deep)).unwrap();
        assert_eq!(
            masks(&next, "a0").routable,
            0b01,
            "server-wide replaces per registry"
        );
        assert!(next.health.exceptions.is_empty());
        assert!(matches!(
            w.set_mode(&next, cmd(Some("nope"), ModeName::Off)),
            Err(AdminError::NotFound(_))
        ));
    }

    #[test]
    fn catalog_puts_and_deletes_touch_one_record_and_are_journaled() {
        let (mut w, snap, dir) = world(10);
        let req = |depends_on: &[&str]| RegistryRequest {
            name: "new.registry.example.".into(),
            template: "fleet".into(),
            depends_on: Some(depends_on.iter().map(|d| d.to_string()).collect()),
            ttl: Some("7s".into()),
            answers: None,
        };
        let (_, next) = w
            .put_registry(&snap, "new".into(), req(&["storage"]), "test")
            .unwrap();
        assert_eq!(next.globals.len(), snap.globals.len() + 1);
        // An existing profile (fleet, storage), a new TTL: one new answer set, no new mask.
        assert_eq!(next.health.profiles.len(), snap.health.profiles.len());
        assert_eq!(
            next.globals.answer_sets.len(),
            snap.globals.answer_sets.len() + 1
        );
        assert_eq!(reg(&next, "new").profile, reg(&next, "a0").profile);
        // A new resource set: one new profile, computed before publishing.
        let (_, next2) = w
            .put_registry(&next, "new".into(), req(&["cache", "storage"]), "test")
            .unwrap();
        assert_eq!(next2.health.profiles.len(), next.health.profiles.len() + 1);
        assert_eq!(masks(&next2, "new"), Masks::all(2));
        assert!(matches!(
            w.put_registry(&next2, "cfg".into(), req(&[]), "test"),
            Err(AdminError::Conflict(_))
        ));
        let (_, next3) = w.delete_registry(&next2, "new", "test").unwrap();
        assert_eq!(next3.globals.len(), snap.globals.len());
        assert!(matches!(
            w.delete_registry(&next3, "new", "test"),
            Err(AdminError::NotFound(_))
        ));
        assert!(matches!(
            w.delete_registry(&next3, "cfg", "test"),
            Err(AdminError::Conflict(_))
        ));
        let journal = std::fs::read_to_string(dir.path().join("registries.csv.journal")).unwrap();
        assert_eq!(journal.lines().count(), 3, "{journal}");
    }

    #[test]
    fn a_reload_computes_masks_for_the_new_registry_set_before_it_is_published() {
        let (mut w, snap, dir) = world(4);
        let (_, snap) = w
            .set_override(
                &snap,
                disable(Target::Replica {
                    registry: "a3".into(),
                    replica: "westeurope".into(),
                }),
            )
            .unwrap();
        // Registries inserted in front of a3 (keys and names that sort first).
        let mut lines = String::from("key,name,template,depends_on,ttl,answers\n");
        for k in ["0a", "0b", "a0", "a1", "a2", "a3"] {
            lines.push_str(&format!("{k},{k}.registry.example.,fleet,cache,,\n"));
        }
        std::fs::write(dir.path().join("registries.csv"), lines).unwrap();
        let (loaded, index) = Snapshot::load_indexed(&dir.path().join("steerdns.toml")).unwrap();
        let next = w.reload(&snap, loaded, index).unwrap();
        assert_eq!(next.globals.len(), 7);
        assert_eq!(masks(&next, "a3").routable, 0b01, "still disabled");
        assert_eq!(masks(&next, "0a").routable, 0b11);
    }

    #[test]
    fn status_pages_are_sorted_and_filtered() {
        let (mut w, snap, _dir) = world(30);
        let page = |after: Option<&str>, state: Option<&str>| StatusQuery {
            after: after.map(str::to_owned),
            state: state.map(str::to_owned),
            limit: Some(10),
            ..Default::default()
        };
        let v = w.status(&snap, &page(None, None), true).unwrap();
        assert_eq!(v.registries.len(), 10);
        assert_eq!(v.summary.registries, 31);
        assert_eq!(v.next.as_deref(), Some("a17"), "keys sort as text");
        let now = Instant::now();
        let t = deep(&snap, "a0", 1);
        w.outcome(&snap, t, &failing_doc(now, "storage"), now);
        let snap = w
            .outcome(&snap, t, &failing_doc(now + S, "storage"), now + S)
            .unwrap();
        let v = w
            .status(&snap, &page(None, Some("degraded")), true)
            .unwrap();
        assert!(v.registries.iter().all(|r| {
            let i: usize = r.key[1..].parse().unwrap();
            i.is_multiple_of(2)
        }));
        assert_eq!(v.summary.states.get("degraded"), Some(&15));
        assert_eq!(v.summary.regions["westeurope"]["degraded"], 15);
    }
}
