//! The single writer: the only task that publishes snapshots after start. It owns the health
//! book, the operator overrides and the runtime health modes; it feeds the book the prober's
//! outcomes, executes the admin API's commands (reload, override, mode) one at a time, and on
//! every change of what routing may answer publishes a new snapshot
//! (`Snapshot { health, ..current }`, every other field an `Arc` shared with the previous one).
//! A timer re-evaluates too, so verdicts of a stuck or dead prober expire to `unknown`
//! (routable) after `stale_after`, the mass-failure guard ages out, and overrides expire.
//!
//! ```text
//!  prober ──(TargetId, ProbeOutcome)──┐
//!  admin API / SIGHUP ──Command───────┼─► Control::run ──► HealthBook · Overrides · modes
//!  tick ──────────────────────────────┘          │
//!                                                 ▼
//!                 HealthMasks ──► Shared::publish      StatusView ──► /v1/status
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::context::{AdminError, Command, ModeCommand, OverrideAction, OverrideCommand};
use crate::admin::events::EventLog;
use crate::admin::readiness::Latch;
use crate::admin::view::{
    Ack, DependencyView, EventKind as ViewKind, ModeName, OverrideView, ProbeView, RegistryStatus,
    ReplicaStatus, ServerFacts, StatusView, WallClock, ZoneFact,
};
use crate::health::book::{
    EventKind as BookKind, HealthBook, HealthPlan, KeyDetail, ProbeTarget, TargetId,
};
use crate::health::check::Checker;
use crate::health::prober::{ProbeEvent, ProberStats, spawn_prober};
use crate::health::spec::HealthMode;
use crate::metrics::Metrics;
use crate::overrides::{AuditEvent, OverrideError, Overrides, Target, format_time, time_plus};
use crate::state::{HealthMasks, Shared, Snapshot};

/// How often the view is re-evaluated without an outcome (stale verdicts, guard ageing,
/// override expiry).
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
    /// The status view, rebuilt by the writer when something changed (at once for
    /// transitions, commands and routing changes; for mere probe outcomes only when somebody
    /// reads the status: a status nobody reads costs nothing, however many registries).
    pub status: Arc<ArcSwap<StatusView>>,
    /// Set this when reading `status`, so that probe details refresh.
    pub status_wanted: Arc<std::sync::atomic::AtomicBool>,
    /// The event history.
    pub events: EventLog,
    /// Stops the prober (fault injection for tests of the stale-verdict rule: with no
    /// outcomes, verdicts expire to unknown and every replica becomes routable).
    #[doc(hidden)]
    pub prober_abort: tokio::task::AbortHandle,
}

/// Start the prober and the writer task on the current runtime. Fails when the override state
/// file cannot be read (starting without the operator's overrides would silently undo them).
pub fn spawn(
    shared: Shared,
    metrics: Arc<Metrics>,
    ready: Latch,
    shutdown: CancellationToken,
) -> std::io::Result<(ControlHandles, JoinHandle<()>)> {
    let snap = shared.load();
    let overrides = Overrides::load(&snap.config.admin.state_file, SystemTime::now())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let (targets_tx, targets_rx) = watch::channel(snap.plan.probe_targets());
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let checker = Checker::new().map_err(std::io::Error::other)?;
    let prober = spawn_prober(checker, targets_rx, events_tx, shutdown.clone());
    let (first_tx, first_rx) = watch::channel(snap.plan.probe_targets().is_empty());
    let event_log = EventLog::new(snap.config.admin.event_history);
    let status = Arc::new(ArcSwap::from_pointee(StatusView::default()));
    let status_wanted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut control = Control {
        prober_stats: prober.stats.clone(),
        book: HealthBook::new(&snap.plan),
        target_names: target_names(&snap.plan.probe_targets()),
        base_plan: (*snap.plan).clone(),
        shared,
        targets: targets_tx,
        outcomes: events_rx,
        commands: commands_rx,
        first_round: first_tx,
        ready: Some(ready),
        overrides,
        modes: Modes::default(),
        events: event_log.clone(),
        metrics,
        status: status.clone(),
        started_at: format_time(SystemTime::now()),
        last_book_event: None,
        dirty: true,
        outcomes_pending: false,
        status_wanted: status_wanted.clone(),
        last_outcome: HashMap::new(),
        stale: Default::default(),
    };
    control.apply_modes_and_publish();
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
            status,
            status_wanted,
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

struct Control {
    prober_stats: Arc<ProberStats>,
    book: HealthBook,
    target_names: HashMap<TargetId, (String, Duration)>,
    /// The plan as configured (modes from the config); runtime modes are applied on top.
    base_plan: HealthPlan,
    shared: Shared,
    targets: watch::Sender<Arc<[ProbeTarget]>>,
    outcomes: mpsc::Receiver<ProbeEvent>,
    commands: mpsc::Receiver<Command>,
    first_round: watch::Sender<bool>,
    ready: Option<Latch>,
    overrides: Overrides,
    modes: Modes,
    events: EventLog,
    metrics: Arc<Metrics>,
    status: Arc<ArcSwap<StatusView>>,
    started_at: String,
    last_book_event: Option<Instant>,
    /// The status view needs rebuilding.
    dirty: bool,
    /// Probe outcomes arrived since the last status rebuild (last-probe times and latencies
    /// changed): rebuilt on the next tick if somebody asked for the status meanwhile.
    outcomes_pending: bool,
    /// Set by the admin API's status reads; cleared when the view is rebuilt.
    status_wanted: Arc<std::sync::atomic::AtomicBool>,
    /// When each probe target last produced an outcome, and its stale_after (for the
    /// stale-verdict metric and log, in O(targets) per tick).
    last_outcome: HashMap<TargetId, (Instant, Duration)>,
    /// Targets whose verdict is stale right now.
    stale: std::collections::HashSet<TargetId>,
}

/// Per probe target: its name for metrics and logs, and its stale_after.
fn target_names(targets: &[ProbeTarget]) -> HashMap<TargetId, (String, Duration)> {
    targets
        .iter()
        .map(|t| (t.id, (t.check.to_string(), t.timing.stale_after)))
        .collect()
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
                    Some((target, outcome)) => self.outcome(target, &outcome),
                    None => {
                        error!("the prober's outcome channel closed; health verdicts will expire to unknown");
                        outcomes_open = false;
                    }
                },
                _ = tick.tick() => self.tick(),
            }
        }
    }

    /// Periodic work, all of it proportional to the number of probe targets (or nothing when
    /// there is none), never to the number of registries unless something changed.
    fn tick(&mut self) {
        use std::sync::atomic::Ordering;
        self.metrics
            .set_prober_restarts(self.prober_stats.panics.load(Ordering::Relaxed));
        self.expire_overrides();
        let now = Instant::now();
        let mut changed_staleness = false;
        for (target, (at, stale_after)) in &self.last_outcome {
            let stale = now.saturating_duration_since(*at) > *stale_after;
            if stale && self.stale.insert(*target) {
                self.metrics.stale_verdict();
                let name = self
                    .target_names
                    .get(target)
                    .map_or("unknown", |(n, _)| n.as_str());
                warn!(target = %name, "no probe outcome for stale_after: the verdict expires to unknown");
                changed_staleness = true;
            } else if !stale && self.stale.remove(target) {
                changed_staleness = true;
            }
        }
        if changed_staleness {
            self.dirty = true;
        }
        if self.outcomes_pending && self.status_wanted.swap(false, Ordering::Relaxed) {
            self.dirty = true;
        }
        // Verdicts and the guard only age when there is something to age.
        if !self.last_outcome.is_empty() || self.dirty {
            self.publish();
        }
    }

    fn outcome(&mut self, target: TargetId, outcome: &crate::health::outcome::ProbeOutcome) {
        let (name, stale_after) = self
            .target_names
            .get(&target)
            .map_or(("unknown", Duration::from_secs(30)), |(n, s)| {
                (n.as_str(), *s)
            });
        let result = match &outcome.result {
            Ok(_) => "ok",
            Err(f) => f.label(),
        };
        self.metrics.probe(name, result, outcome.latency);
        let now = Instant::now();
        self.last_outcome.insert(target, (now, stale_after));
        let transitions = self.book.observe(target, outcome, now);
        for (_, t) in &transitions {
            self.metrics.transition(t.to.as_str());
        }
        self.outcomes_pending = true;
        if !transitions.is_empty() {
            self.dirty = true;
        }
        if !*self.first_round.borrow() && self.book.first_round_done() {
            info!("first probe round done");
            let _ = self.first_round.send(true);
            // Ready: zones were loaded before start, and every target has been probed.
            self.ready.take();
        }
        if !transitions.is_empty() {
            self.publish();
        }
    }

    /// Recompute the view; publish a snapshot when the masks changed; refresh the status view
    /// when anything changed.
    fn publish(&mut self) {
        let current = self.shared.load();
        let now_wall = SystemTime::now();
        let disabled = self.overrides.disabled_masks(
            current.config.registries.iter().map(|r| {
                (
                    r.key.as_str(),
                    r.replicas
                        .iter()
                        .map(|p| (p.key.as_str(), p.region.as_str())),
                )
            }),
            now_wall,
        );
        let view = self.book.publish(Instant::now(), &|r, i| {
            disabled.get(r).is_some_and(|m| m >> i & 1 == 1)
        });
        self.forward_book_events();
        let masks = HealthMasks::from_view(
            &view,
            |r| {
                let all = current
                    .globals
                    .registries
                    .get(r)
                    .map_or(0, |g| g.candidates.all());
                all & !disabled.get(r).copied().unwrap_or(0)
            },
            self.book.guard_engaged(),
        );
        if masks != *current.health {
            self.dirty = true;
            self.shared.publish(Snapshot {
                health: Arc::new(masks),
                ..(*current).clone()
            });
        }
        if self.dirty {
            self.dirty = false;
            self.outcomes_pending = false;
            self.rebuild_status();
        }
    }

    /// Copy new book history entries (transitions, guard, fail-open, shadow) into the event log
    /// and the metrics.
    fn forward_book_events(&mut self) {
        let clock = WallClock::now();
        let mut newest = self.last_book_event;
        let fresh: Vec<_> = self
            .book
            .history()
            .filter(|e| self.last_book_event.is_none_or(|last| e.at > last))
            .cloned()
            .collect();
        if !fresh.is_empty() {
            self.dirty = true;
        }
        for e in fresh {
            newest = Some(newest.map_or(e.at, |n| n.max(e.at)));
            let at = clock.wall(e.at);
            match &e.kind {
                BookKind::Transition {
                    check, transition, ..
                } => {
                    self.events.push(
                        at,
                        ViewKind::Transition,
                        None,
                        None,
                        format!(
                            "{check}: {} -> {} ({})",
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
                BookKind::FailOpen { registry, on } => {
                    if *on {
                        self.metrics.fail_open_started(registry);
                    }
                    let msg = if *on {
                        "every enabled replica degraded: failing open"
                    } else {
                        "no longer failing open"
                    };
                    self.events
                        .push(at, ViewKind::FailOpen, Some(registry), None, msg);
                }
                BookKind::ShadowDivergence {
                    registry,
                    on,
                    routed,
                    deep,
                } => {
                    let msg = if *on {
                        format!(
                            "shadow: deep health would change routing (routed mask {routed:#b}, deep {deep:#b})"
                        )
                    } else {
                        "shadow: deep health agrees with routing again".to_string()
                    };
                    self.events
                        .push(at, ViewKind::Shadow, Some(registry), None, msg);
                }
            }
        }
        self.last_book_event = newest;
    }

    fn expire_overrides(&mut self) {
        let now = SystemTime::now();
        if self.overrides.next_expiry().is_some_and(|t| t <= now) {
            match self.overrides.prune(now) {
                Ok(expired) => {
                    for e in &expired {
                        self.events.push_audit(e);
                    }
                    self.metrics
                        .set_overrides(self.overrides.active(now).count());
                    self.dirty = true;
                }
                Err(e) => {
                    error!(error = %e, "cannot write the override state file after an expiry")
                }
            }
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Reload { who, reply } => {
                let r = self.reload(&who).await;
                let _ = reply.send(r);
            }
            Command::Override { command, reply } => {
                let r = self.set_override(command);
                let _ = reply.send(r);
            }
            Command::Mode { command, reply } => {
                let r = self.set_mode(command);
                let _ = reply.send(r);
            }
        }
        self.dirty = true;
        self.publish();
    }

    fn set_override(&mut self, c: OverrideCommand) -> Result<AuditEvent, AdminError> {
        let snap = self.shared.load();
        match &c.target {
            Target::Replica { registry, replica } => {
                let reg = snap
                    .config
                    .registries
                    .iter()
                    .find(|r| r.key == *registry)
                    .ok_or_else(|| AdminError::NotFound(format!("no registry {registry}")))?;
                if !reg.replicas.iter().any(|r| r.key == *replica) {
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
        match result {
            Ok(event) => {
                self.events.push_audit(&event);
                self.metrics
                    .set_overrides(self.overrides.active(now).count());
                Ok(event)
            }
            Err(OverrideError::NotDisabled(t)) => {
                Err(AdminError::Conflict(format!("{t} is not disabled")))
            }
            Err(e) => Err(AdminError::Failed(e.to_string())),
        }
    }

    fn set_mode(&mut self, c: ModeCommand) -> Result<Ack, AdminError> {
        let mode = match c.mode {
            ModeName::Deep => HealthMode::Deep,
            ModeName::Shallow => HealthMode::Shallow,
            ModeName::Shadow => HealthMode::Shadow,
            ModeName::Off => HealthMode::Off,
        };
        match &c.registry {
            Some(r) => {
                if !self.base_plan.registries().iter().any(|p| &*p.name == r) {
                    return Err(AdminError::NotFound(format!("no registry {r}")));
                }
                self.modes.registries.insert(r.clone(), mode);
            }
            None => {
                // Server-wide: every registry, replacing per-registry switches.
                self.modes.server = Some(mode);
                self.modes.registries.clear();
            }
        }
        let scope = c.registry.as_deref().unwrap_or("every registry");
        warn!(mode = %mode, scope, who = %c.who, "health mode switched");
        self.events.push(
            SystemTime::now(),
            ViewKind::Mode,
            c.registry.as_deref(),
            None,
            format!("mode {mode} for {scope} (by {})", c.who),
        );
        self.apply_modes_and_publish();
        Ok(Ack {
            message: format!("mode {mode} for {scope}"),
            generation: Some(self.shared.load().generation),
        })
    }

    /// Put the runtime modes on top of the configured plan and publish it. Both checks are
    /// always probed, so a switch takes effect at once, without re-probing.
    fn apply_modes_and_publish(&mut self) {
        let mut plan = self.base_plan.clone();
        let names: Vec<Arc<str>> = plan.registries().iter().map(|r| r.name.clone()).collect();
        for (i, name) in names.iter().enumerate() {
            if let Some(m) = self
                .modes
                .registries
                .get(&**name)
                .copied()
                .or(self.modes.server)
            {
                plan.set_mode(i, m);
            }
        }
        self.book.replan(&plan);
        let current = self.shared.load();
        if *current.plan.registries() != *plan.registries() {
            self.shared.publish(Snapshot {
                plan: Arc::new(plan),
                ..(*current).clone()
            });
        }
        self.dirty = true;
        self.publish();
    }

    async fn reload(&mut self, who: &str) -> Result<Ack, AdminError> {
        let current = self.shared.load();
        let path = current.config.path.clone();
        let loaded = tokio::task::spawn_blocking(move || Snapshot::load(&path))
            .await
            .map_err(|e| AdminError::Failed(format!("the reload task failed: {e}")))?;
        match loaded {
            Err(problems) => {
                self.metrics.reload(false);
                let text = problems.to_string();
                error!(who, problems = %text.replace('\n', "; "), "reload rejected; still serving the previous configuration");
                self.events.push(
                    SystemTime::now(),
                    ViewKind::Reload,
                    None,
                    None,
                    format!("reload rejected: {text}"),
                );
                Err(AdminError::Failed(text))
            }
            Ok(next) => {
                if next.config.listen != current.config.listen
                    || next.config.admin.listen != current.config.admin.listen
                {
                    warn!(
                        "listen addresses changed in the config; they take effect at the next restart"
                    );
                }
                // Health carries over for every probe target that still exists (the book keys
                // state by target, and target ids are stable hashes of the check).
                self.base_plan = (*next.plan).clone();
                self.target_names = target_names(&next.plan.probe_targets());
                let names = &self.target_names;
                self.last_outcome.retain(|t, _| names.contains_key(t));
                self.stale.retain(|t| names.contains_key(t));
                let _ = self.targets.send(next.plan.probe_targets());
                self.metrics.install_replica_counters(next.counters.clone());
                let health = current.health.clone();
                self.shared.publish(Snapshot { health, ..next });
                self.apply_modes_and_publish();
                let generation = self.shared.load().generation;
                self.metrics.reload(true);
                self.metrics.set_generation(generation);
                info!(who, generation, "configuration reloaded");
                self.events.push(
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

    fn rebuild_status(&self) {
        let snap = self.shared.load();
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
        let mut registries = Vec::new();
        for (ri, reg) in snap.config.registries.iter().enumerate() {
            let (routable, _) = snap.health.get(ri);
            let mode = snap
                .plan
                .registries()
                .get(ri)
                .map(|p| p.mode)
                .unwrap_or_default();
            let mut replicas = Vec::new();
            for (i, rep) in reg.replicas.iter().enumerate() {
                let detail = self.book.replica_detail(ri, i, now);
                let over = self
                    .overrides
                    .is_disabled(&reg.key, &rep.key, &rep.region, now_wall);
                // Show the check routing is judged on (shallow in shallow and shadow modes).
                let key: Option<&KeyDetail> = detail.as_ref().and_then(|d| match mode {
                    HealthMode::Shallow | HealthMode::Shadow => {
                        d.shallow.as_ref().or(d.deep.as_ref())
                    }
                    _ => d.deep.as_ref().or(d.shallow.as_ref()),
                });
                let deep_doc = detail
                    .as_ref()
                    .and_then(|d| d.deep.as_ref())
                    .and_then(|k| k.last.as_ref())
                    .and_then(|o| o.document.clone());
                let state = if over.is_some() {
                    "disabled".to_string()
                } else {
                    key.map_or("unknown".to_string(), |k| k.effective.as_str().to_string())
                };
                replicas.push(ReplicaStatus {
                    key: rep.key.clone(),
                    region: rep.region.clone(),
                    state,
                    routable: routable >> i & 1 == 1,
                    since: key.and_then(|k| k.since).map(|t| clock.format(t)),
                    consecutive_successes: key.map_or(0, |k| k.consecutive_successes),
                    consecutive_failures: key.map_or(0, |k| k.consecutive_failures),
                    stale: key.is_some_and(|k| k.stale),
                    last_probe: key.and_then(|k| k.last.as_ref()).map(|o| ProbeView {
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
                    dependencies: deep_doc
                        .map(|d| {
                            d.dependencies
                                .iter()
                                .map(|x| DependencyView {
                                    name: x.name.clone(),
                                    status: x.status.clone(),
                                    ok: x.ok,
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    override_: over.map(OverrideView::from),
                });
            }
            registries.push(RegistryStatus {
                key: reg.key.clone(),
                name: reg.name.to_ascii(),
                mode: mode.to_string(),
                fail_open: snap.health.fail_open.get(ri).copied().unwrap_or(false),
                replicas,
            });
        }
        let states: Vec<(String, String, String)> = registries
            .iter()
            .flat_map(|r| {
                r.replicas
                    .iter()
                    .map(move |p| (r.key.clone(), p.key.clone(), p.state.clone()))
            })
            .collect();
        self.metrics.set_health_states(
            states
                .iter()
                .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())),
        );
        let server_mode = self.modes.server.map_or_else(
            || {
                crate::health::spec::resolve(&[&snap.config.health])
                    .map(|s| s.mode.to_string())
                    .unwrap_or_default()
            },
            |m| m.to_string(),
        );
        self.status.store(Arc::new(StatusView {
            server: ServerFacts {
                version: env!("CARGO_PKG_VERSION").to_string(),
                config_generation: snap.generation,
                config_path: snap.config.path.display().to_string(),
                started_at: self.started_at.clone(),
                ready: self.ready.is_none(),
                zones,
            },
            mode: server_mode,
            guard_engaged: snap.health.guard_engaged,
            registries,
        }));
    }
}
