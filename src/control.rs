//! The single writer: the only task that publishes snapshots after start. It owns the health
//! book, feeds it the prober's outcomes, and on every change of the routable view publishes a
//! new snapshot (`Snapshot { health, ..current }`, every other field an `Arc` shared with the
//! previous one). A timer republishes too, so verdicts of a stuck or dead prober expire to
//! `unknown` (routable) after `stale_after` and the mass-failure guard ages out.
//!
//! ```text
//!  prober ──(TargetId, ProbeOutcome)──► Control::run ──► HealthBook::observe
//!                                          │  tick          │ transitions
//!                                          ▼                ▼
//!                                    HealthBook::publish ──► HealthMasks ──► Shared::publish
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::health::book::{HealthBook, ProbeTarget};
use crate::health::check::Checker;
use crate::health::prober::{ProbeEvent, ProberStats, spawn_prober};
use crate::state::{HealthMasks, Shared, Snapshot};

/// How often the view is re-evaluated without an outcome (stale verdicts, guard ageing).
const TICK: Duration = Duration::from_millis(250);
/// Outcomes buffered between the prober and the writer.
const EVENT_QUEUE: usize = 4096;

/// What the running control task exposes.
#[derive(Debug, Clone)]
pub struct ControlHandles {
    /// The prober's counters (probes, panics, targets).
    pub prober: Arc<ProberStats>,
    /// Set once every probe target has had its first outcome (readiness).
    pub first_round: watch::Receiver<bool>,
}

/// Start the prober and the writer task on the current runtime.
pub fn spawn(shared: Shared, shutdown: CancellationToken) -> std::io::Result<(ControlHandles, JoinHandle<()>)> {
    let snap = shared.load();
    let (targets_tx, targets_rx) = watch::channel(snap.plan.probe_targets());
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let checker = Checker::new().map_err(std::io::Error::other)?;
    let prober = spawn_prober(checker, targets_rx, events_tx, shutdown.clone());
    let (first_tx, first_rx) = watch::channel(snap.plan.probe_targets().is_empty());
    let control = Control {
        book: HealthBook::new(&snap.plan),
        shared,
        _targets: targets_tx,
        events: events_rx,
        first_round: first_tx,
    };
    let prober_handle = prober.handle;
    let task = tokio::spawn(async move {
        control.run(shutdown).await;
        // The prober stops on the same token; wait for it so nothing outlives the server.
        if let Err(e) = prober_handle.await {
            error!(error = %e, "the prober ended abnormally");
        }
    });
    Ok((
        ControlHandles {
            prober: prober.stats,
            first_round: first_rx,
        },
        task,
    ))
}

struct Control {
    book: HealthBook,
    shared: Shared,
    /// Kept so the prober's target list stays open; reloads send new targets here.
    _targets: watch::Sender<Arc<[ProbeTarget]>>,
    events: mpsc::Receiver<ProbeEvent>,
    first_round: watch::Sender<bool>,
}

impl Control {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                event = self.events.recv() => match event {
                    Some((target, outcome)) => {
                        let changed = !self.book.observe(target, &outcome, Instant::now()).is_empty();
                        if !*self.first_round.borrow() && self.book.first_round_done() {
                            info!("first probe round done");
                            let _ = self.first_round.send(true);
                        }
                        if changed {
                            self.publish();
                        }
                    }
                    None => {
                        error!("the prober's outcome channel closed; health verdicts will expire to unknown");
                        // Keep ticking so verdicts expire and answers stay fail-open.
                        self.idle_until_shutdown(&shutdown).await;
                        break;
                    }
                },
                _ = tick.tick() => self.publish(),
            }
        }
    }

    async fn idle_until_shutdown(&mut self, shutdown: &CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.publish(),
            }
        }
    }

    /// Recompute the view; publish a snapshot only when the masks changed.
    fn publish(&mut self) {
        let current = self.shared.load();
        let view = self.book.publish(Instant::now(), &|_, _| false);
        let masks = HealthMasks::from_view(&view, |r| {
            current.globals.registries.get(r).map_or(0, |g| g.candidates.all())
        });
        if masks.routable != current.health.routable || masks.enabled != current.health.enabled {
            let next = Snapshot {
                health: Arc::new(masks),
                ..(*current).clone()
            };
            self.shared.publish(next);
        }
    }
}
