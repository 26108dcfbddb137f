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

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::apply::World;
use crate::catalog::file::Journal;
use crate::health::prober::{Probe, ProbeEvent, ProberStats, spawn_prober};
use crate::metrics::Metrics;
use crate::overrides::Overrides;
use crate::state::catalog::CatalogIndex;
use crate::state::command::{AdminError, Command};
use crate::state::events::EventLog;
use crate::state::readiness::{Alive, Latch};
use crate::state::view::{Ack, EventKind as ViewKind};
use crate::state::{Shared, Snapshot};

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
    /// Set once every probe target has had its first outcome (readiness).
    pub first_round: watch::Receiver<bool>,
    /// Commands for the writer (the admin API and SIGHUP send here).
    pub commands: mpsc::Sender<Command>,
    /// The event history.
    pub(crate) events: EventLog,
    /// The health keys this instance itself judges degraded, by fleet name: what the fleet
    /// link publishes as this instance's exceptions. Updated on every flip.
    pub(crate) own_degraded: watch::Receiver<Arc<BTreeSet<Arc<str>>>>,
    /// Stops the prober (fault injection for tests of the stale-verdict rule: with no
    /// outcomes, verdicts expire to unknown and every replica becomes routable).
    #[doc(hidden)]
    pub prober_abort: tokio::task::AbortHandle,
    /// Stops the writer itself (fault injection for tests of the health view's deadline:
    /// with nobody stamping it, the answer path treats every verdict as unknown).
    #[doc(hidden)]
    pub writer_abort: tokio::task::AbortHandle,
}

/// Start the prober and the writer task on the current runtime, after publishing the first
/// complete snapshot (overrides and modes applied). Fails when the override state file or
/// the catalog journal cannot be opened (starting without the operator's overrides would
/// silently undo them). `probe` probes the targets (the HTTP/TCP `Checker` in service;
/// scripted outcomes in tests).
pub(crate) fn spawn<P: Probe>(
    shared: Shared,
    index: CatalogIndex,
    metrics: Arc<Metrics>,
    (ready, alive): (Latch, Alive),
    probe: P,
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
    let prober = spawn_prober(probe, targets_rx, events_tx, shutdown.clone());
    let (first_tx, first_rx) = watch::channel(probe_targets.is_empty());
    let event_log = EventLog::new(snap.config.admin.event_history);
    let mut world = World::new(&snap, index, overrides, event_log.clone(), metrics);
    world.journal = journal;
    shared.publish(world.rebuild(&snap));
    let (own_tx, own_rx) = watch::channel(Arc::new(world.book.own_degraded()));
    let warmer = match crate::dnssec::warm::Warmer::spawn(shared.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            error!(error = %e, "cannot start the pre-signing thread; the first signed answer after a failover is signed when asked");
            None
        }
    };
    let mut control = Control {
        warmer,
        own_degraded: own_tx,
        transitions: 0,
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
    let writer_abort = task.abort_handle();
    Ok((
        ControlHandles {
            first_round: first_rx,
            commands: commands_tx,
            events: event_log,
            own_degraded: own_rx,
            prober_abort,
            writer_abort,
        },
        task,
    ))
}

struct Control {
    /// Signs ahead the answers a failover may give (`dnssec::warm`).
    warmer: Option<crate::dnssec::warm::Warmer>,
    own_degraded: watch::Sender<Arc<BTreeSet<Arc<str>>>>,
    /// The book's transition count when `own_degraded` was last computed.
    transitions: u64,
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
                        let now = Instant::now();
                        if let Some(next) = self.world.outcome(&snap, target, &outcome, now) {
                            self.publish(next);
                        }
                        // A key failed once and may flip within a few probes: sign its
                        // registries' next answers now.
                        let suspects = self.world.book.take_suspects();
                        if let Some(w) = &self.warmer {
                            w.profiles(&suspects);
                        }
                        self.beat(now);
                        self.check_first_round();
                        self.note_own_degraded(false);
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
                    let now = Instant::now();
                    let next = self.world.tick(&snap, now);
                    let changed = next.is_some();
                    if let Some(next) = next {
                        self.publish(next);
                    }
                    self.beat(now);
                    self.note_own_degraded(changed);
                }
            }
        }
    }

    /// Publish `next`; when its masks differ from those in service, the registries they
    /// changed get their answers signed ahead (right after: the change itself never waits).
    /// O(profiles) to compare, whatever the number of registries.
    fn publish(&mut self, next: Snapshot) {
        if let Some(w) = &self.warmer {
            let current = self.shared.current();
            let (a, b) = (&current.health, &next.health);
            if !Arc::ptr_eq(a, b) {
                if a.guard_engaged != b.guard_engaged
                    || a.exceptions != b.exceptions
                    || a.profiles.len() != b.profiles.len()
                {
                    w.all();
                } else {
                    let changed: Vec<u32> = (0..a.profiles.len())
                        .filter(|&p| a.profiles[p] != b.profiles[p])
                        .map(|p| p as u32)
                        .collect();
                    w.profiles(&changed);
                }
            }
        }
        self.shared.publish(next);
    }

    /// Recompute this instance's own degraded keys after a transition (or a tick that
    /// changed something: a verdict may have gone stale); O(keys), at flips only.
    fn note_own_degraded(&mut self, force: bool) {
        let t = self.world.book.counters().transitions;
        if t == self.transitions && !force {
            return;
        }
        self.transitions = t;
        let own = self.world.book.own_degraded();
        if **self.own_degraded.borrow() != own {
            let _ = self.own_degraded.send(Arc::new(own));
        }
    }

    /// The book was evaluated at `now`: the published health view is good for the shortest
    /// `stale_after` from here (see `state::freshness`).
    fn beat(&self, now: Instant) {
        self.shared
            .current()
            .health_clock
            .beat(now, self.world.stale_after_min);
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
        // A reload holds no reference to the snapshot it replaces (see `trim`).
        let command = match command {
            Command::Reload { who, reply } => {
                let r = self.reload(&who).await;
                let _ = reply.send(r);
                return;
            }
            other => other,
        };
        let snap = self.shared.load();
        match command {
            Command::Reload { .. } => {}
            Command::Override { command, reply } => {
                let r = self.world.set_override(&snap, command).map(|(e, next)| {
                    self.publish(next);
                    e
                });
                let _ = reply.send(r);
            }
            Command::Mode { command, reply } => {
                let r = self.world.set_mode(&snap, command).map(|(a, next)| {
                    self.publish(next);
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
                        self.publish(next);
                        a
                    });
                let _ = reply.send(r);
            }
            Command::DeleteRegistry { key, who, reply } => {
                let r = self
                    .world
                    .delete_registry(&snap, &key, &who)
                    .map(|(a, next)| {
                        self.publish(next);
                        a
                    });
                let _ = reply.send(r);
            }
            Command::Status { query, reply } => {
                let _ = reply.send(self.world.status(&snap, &query, self.ready.is_none()));
            }
            Command::RegistryKeys { ids, reply } => {
                let keys = ids
                    .iter()
                    .map(|id| self.world.index.key_of_id(*id).map(str::to_owned))
                    .collect();
                let _ = reply.send(keys);
            }
            Command::Incidents { query, reply } => {
                let _ = reply.send(self.world.incidents_view(&snap.globals, &query));
            }
            Command::IncidentRegistries { id, query, reply } => {
                let _ = reply.send(self.world.incident_registries(id, &query));
            }
            Command::FleetVerdicts { verdicts } => {
                let affected = self.world.book.set_fleet(verdicts);
                if let Some(next) = self.world.changed(&snap, &affected) {
                    self.publish(next);
                }
            }
            Command::FleetStatus { status } => {
                let was = self.world.fleet_status.as_ref().map(|s| s.connected);
                if was.is_some_and(|c| c != status.connected) {
                    let message = if status.connected {
                        format!("fleet link back: connected to etcd as {}", status.instance)
                    } else {
                        format!(
                            "fleet link lost: routing on this instance's own verdicts; {} changes pending",
                            status.pending.len()
                        )
                    };
                    self.world
                        .events
                        .push(SystemTime::now(), ViewKind::Fleet, None, None, message);
                }
                self.world.fleet_status = Some(status);
            }
        }
    }

    async fn reload(&mut self, who: &str) -> Result<Ack, AdminError> {
        // No reference to the snapshot in service is kept across the load: the last one must
        // be the one `trim::release` drops.
        let (path, signers) = {
            let current = self.shared.current();
            (current.config.path.clone(), current.signers())
        };
        // Parsing and preparing run off the writer's thread; probes queue meanwhile. The
        // signatures cached for steered answers carry over when the keys did not change.
        let task = tokio::task::spawn_blocking(move || {
            Snapshot::load_indexed(&path).inspect(|(next, _)| {
                let adopted = next.adopt_signatures(&signers);
                if adopted > 0 {
                    tracing::debug!(adopted, "cached signatures kept across the reload");
                }
            })
        });
        tokio::pin!(task);
        // A large reload takes seconds; the writer is alive meanwhile, so it keeps the
        // health view's deadline moving (the verdicts it holds are the last ones judged).
        let loaded = loop {
            tokio::select! {
                r = &mut task => break r,
                _ = tokio::time::sleep(TICK) => self.beat(Instant::now()),
            }
        }
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
                let restart = current.config.restart_needed(&next.config);
                if !restart.is_empty() {
                    warn!(who, keys = %restart.join(", "), "reload: these changes take effect only after a restart");
                }
                let next = w.reload(&current, next, index).map_err(|e| {
                    AdminError::Failed(format!("cannot open the catalog journal: {e}"))
                })?;
                let _ = self.targets.send(next.targets.probe_targets());
                self.shared.publish(next);
                // The old registry set goes off this thread, and its pages back to the OS.
                super::trim::release(current);
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
                let message = if restart.is_empty() {
                    "reloaded".to_string()
                } else {
                    format!(
                        "reloaded; changed but applied only after a restart: {}",
                        restart.join(", ")
                    )
                };
                Ok(Ack {
                    message,
                    generation: Some(generation),
                    fleet: None,
                })
            }
        }
    }
}
