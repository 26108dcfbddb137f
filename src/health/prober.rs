//! The prober: one task per probe target, each on its own phase, supervised.
//!
//! - Each target is probed every `interval`. Its first probe waits a random offset in
//!   `[0, interval)` so targets spread over the interval, and every round adds a random
//!   `±jitter`, so probes never fire in lockstep.
//! - One task per target: a slow or hung replica delays only its own task, and only up to its
//!   timeout.
//! - The target list comes from a `watch` channel: new ids start, removed ids stop (a changed
//!   check has a new [`TargetId`], so it restarts; an unchanged one keeps running).
//! - A probe task that panics is logged, counted in [`ProberStats::panics`] and restarted one
//!   interval later.
//! - Outcomes go to the state task over a bounded `mpsc`; when the state task is slow, only
//!   the waiting target's next probe is delayed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::book::{ProbeTarget, TargetId};
use super::check::Checker;
use super::outcome::{Failure, ProbeOutcome};

/// Runs one probe of a target. [`Checker`] is the real implementation.
pub trait Probe: Send + Sync + 'static {
    /// Probes `target` once; should finish within `target.timing.timeout` (the prober also
    /// enforces it).
    fn probe(&self, target: &ProbeTarget) -> impl Future<Output = ProbeOutcome> + Send;
}

impl Probe for Checker {
    fn probe(&self, target: &ProbeTarget) -> impl Future<Output = ProbeOutcome> + Send {
        self.check(&target.check, target.timing.timeout)
    }
}

/// Counters of the prober (read them for metrics).
#[derive(Debug, Default)]
pub struct ProberStats {
    /// Probes completed (outcome produced).
    pub(crate) probes: AtomicU64,
    /// Probe tasks that panicked (each restarted).
    pub panics: AtomicU64,
    /// Targets currently running.
    pub(crate) targets: AtomicU64,
}

/// A running prober.
#[derive(Debug)]
pub struct Prober {
    /// The supervisor; ends after `shutdown` is cancelled or the target sender is dropped, once
    /// every probe task has stopped.
    pub handle: JoinHandle<()>,
    /// Its counters.
    pub stats: Arc<ProberStats>,
}

/// An outcome event: which target, what happened.
pub type ProbeEvent = (TargetId, ProbeOutcome);

/// Starts the prober on the current tokio runtime.
pub fn spawn_prober<P: Probe>(
    probe: P,
    targets: watch::Receiver<Arc<[ProbeTarget]>>,
    events: mpsc::Sender<ProbeEvent>,
    shutdown: CancellationToken,
) -> Prober {
    let stats = Arc::new(ProberStats::default());
    let sup = Supervisor {
        probe: Arc::new(probe),
        events,
        stats: stats.clone(),
        set: JoinSet::new(),
        running: HashMap::new(),
        by_task: HashMap::new(),
    };
    let handle = tokio::spawn(sup.run(targets, shutdown));
    Prober { handle, stats }
}

struct Supervisor<P> {
    probe: Arc<P>,
    events: mpsc::Sender<ProbeEvent>,
    stats: Arc<ProberStats>,
    set: JoinSet<()>,
    running: HashMap<TargetId, (AbortHandle, ProbeTarget)>,
    by_task: HashMap<tokio::task::Id, TargetId>,
}

impl<P: Probe> Supervisor<P> {
    async fn run(
        mut self,
        mut targets: watch::Receiver<Arc<[ProbeTarget]>>,
        shutdown: CancellationToken,
    ) {
        let first = targets.borrow_and_update().clone();
        self.sync(&first);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                changed = targets.changed() => {
                    if changed.is_err() {
                        tracing::debug!("probe target list closed, prober stopping");
                        break;
                    }
                    let list = targets.borrow_and_update().clone();
                    self.sync(&list);
                }
                Some(done) = self.set.join_next_with_id() => self.reap(done),
            }
        }
        self.set.shutdown().await;
        self.stats.targets.store(0, Ordering::Relaxed);
    }

    fn sync(&mut self, list: &[ProbeTarget]) {
        let keep: HashMap<TargetId, &ProbeTarget> = list.iter().map(|t| (t.id, t)).collect();
        self.running.retain(|id, (abort, _)| {
            let k = keep.contains_key(id);
            if !k {
                abort.abort();
            }
            k
        });
        for (id, t) in keep {
            if !self.running.contains_key(&id) {
                let delay = random_below(t.timing.interval);
                self.start(t.clone(), delay);
            }
        }
        self.stats
            .targets
            .store(self.running.len() as u64, Ordering::Relaxed);
        tracing::debug!(targets = self.running.len(), "probe targets updated");
    }

    fn start(&mut self, t: ProbeTarget, first_delay: Duration) {
        let abort = self.set.spawn(run_target(
            self.probe.clone(),
            t.clone(),
            self.events.clone(),
            first_delay,
            self.stats.clone(),
        ));
        self.by_task.insert(abort.id(), t.id);
        self.running.insert(t.id, (abort, t));
    }

    fn reap(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let (task, panicked) = match &done {
            Ok((task, ())) => (*task, false),
            Err(e) => (e.id(), e.is_panic()),
        };
        let Some(id) = self.by_task.remove(&task) else {
            return;
        };
        // Only act when the finished task is still the one registered for the target.
        let current = self
            .running
            .get(&id)
            .is_some_and(|(abort, _)| abort.id() == task);
        if !current {
            return;
        }
        if panicked {
            self.stats.panics.fetch_add(1, Ordering::Relaxed);
            let Some((_, t)) = self.running.remove(&id) else {
                return;
            };
            tracing::error!(probe_target = %id, check = %t.check, "probe task panicked; restarting it after one interval");
            let interval = t.timing.interval;
            self.start(t, interval);
        } else {
            // A task ends by itself only when the event receiver is gone.
            self.running.remove(&id);
            if self.events.is_closed() {
                tracing::debug!("probe event receiver closed, prober idle until shutdown");
            }
        }
    }
}

fn random_below(d: Duration) -> Duration {
    if d.is_zero() {
        return d;
    }
    d.mul_f64(rand::rng().random_range(0.0..1.0))
}

/// A random offset in `[-jitter, +jitter]`, applied to `slot` but never before `floor`.
fn jittered(slot: Instant, jitter: Duration, floor: Instant) -> Instant {
    let j = random_below(jitter * 2);
    let at = if j >= jitter {
        slot + (j - jitter)
    } else {
        slot.checked_sub(jitter - j).unwrap_or(slot)
    };
    at.max(floor)
}

async fn run_target<P: Probe>(
    probe: Arc<P>,
    t: ProbeTarget,
    events: mpsc::Sender<ProbeEvent>,
    first_delay: Duration,
    stats: Arc<ProberStats>,
) {
    let mut slot = Instant::now() + first_delay;
    let mut fire = slot;
    // A grace above the timeout, for Probe implementations that overrun it.
    let limit = t.timing.timeout + Duration::from_millis(50);
    loop {
        tokio::time::sleep_until(fire).await;
        let started = Instant::now();
        let outcome = match tokio::time::timeout(limit, probe.probe(&t)).await {
            Ok(o) => o,
            Err(_) => ProbeOutcome {
                at: started,
                latency: started.elapsed(),
                result: Err(Failure::Timeout),
                document: None,
            },
        };
        stats.probes.fetch_add(1, Ordering::Relaxed);
        if events.send((t.id, outcome)).await.is_err() {
            return;
        }
        let now = Instant::now();
        slot += t.timing.interval;
        if slot < now {
            // Fell behind (slow consumer): restart the grid from now.
            slot = now;
        }
        fire = jittered(slot, t.timing.jitter, now);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::health::outcome::Pass;
    use crate::health::spec::{CheckSpec, Timing};
    use std::sync::atomic::AtomicBool;

    /// A probe double that answers instantly, can hang, or panics once.
    struct Scripted {
        panic_once: AtomicBool,
    }

    impl Probe for Scripted {
        fn probe(&self, t: &ProbeTarget) -> impl Future<Output = ProbeOutcome> + Send {
            let panic_now = t.id == TargetId(2) && self.panic_once.swap(false, Ordering::SeqCst);
            let hang = t.id == TargetId(3);
            async move {
                let at = Instant::now();
                if panic_now {
                    panic!("scripted probe panic");
                }
                if hang {
                    std::future::pending::<()>().await;
                }
                ProbeOutcome {
                    at,
                    latency: Duration::ZERO,
                    result: Ok(Pass { status: None }),
                    document: None,
                }
            }
        }
    }

    fn target(id: u64, ms: u64) -> ProbeTarget {
        ProbeTarget {
            id: TargetId(id),
            check: Arc::new(CheckSpec::Tcp {
                host: "127.0.3.1".into(),
                port: id as u16,
            }),
            timing: Timing {
                interval: Duration::from_millis(ms),
                timeout: Duration::from_millis(ms / 2),
                jitter: Duration::from_millis(ms / 10),
                stale_after: Duration::from_millis(ms * 3),
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn schedule_changes_panics_and_hangs() {
        let (tx, rx) = watch::channel::<Arc<[ProbeTarget]>>(Arc::from(vec![
            target(1, 1000),
            target(2, 1000),
            target(3, 1000),
        ]));
        let (etx, mut erx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let p = spawn_prober(
            Scripted {
                panic_once: AtomicBool::new(true),
            },
            rx,
            etx,
            stop.clone(),
        );
        let t0 = Instant::now();
        let mut seen: HashMap<TargetId, Vec<ProbeOutcome>> = HashMap::new();
        while Instant::now() < t0 + Duration::from_secs(10) {
            let (id, o) = erx.recv().await.unwrap();
            seen.entry(id).or_default().push(o);
        }
        // Target 1: about one probe per second, the first within the first interval.
        let one = &seen[&TargetId(1)];
        assert!((9..=11).contains(&one.len()), "{}", one.len());
        assert!(one[0].at < t0 + Duration::from_secs(1));
        for w in one.windows(2) {
            let gap = w[1].at - w[0].at;
            assert!(
                gap >= Duration::from_millis(800) && gap <= Duration::from_millis(1200),
                "{gap:?}"
            );
        }
        // Target 2 panicked once, was counted and restarted.
        assert_eq!(p.stats.panics.load(Ordering::Relaxed), 1);
        assert!(seen[&TargetId(2)].len() >= 7);
        // Target 3 hangs: every outcome is a timeout bounded by timeout + grace.
        let three = &seen[&TargetId(3)];
        assert!(three.len() >= 8);
        assert!(
            three
                .iter()
                .all(|o| o.result == Err(Failure::Timeout)
                    && o.latency <= Duration::from_millis(550))
        );

        // Remove 1 and 3, add 4: 1 and 3 stop, 4 starts.
        tx.send(Arc::from(vec![target(2, 1000), target(4, 1000)]))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await; // let in-flight probes drain
        while erx.try_recv().is_ok() {}
        let t1 = Instant::now();
        let mut ids = std::collections::HashSet::new();
        while Instant::now() < t1 + Duration::from_secs(5) {
            ids.insert(erx.recv().await.unwrap().0);
        }
        assert_eq!(ids, [TargetId(2), TargetId(4)].into_iter().collect());
        assert_eq!(p.stats.targets.load(Ordering::Relaxed), 2);

        stop.cancel();
        p.handle.await.unwrap();
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let slot = Instant::now() + Duration::from_secs(5);
        for _ in 0..1000 {
            let at = jittered(
                slot,
                Duration::from_millis(100),
                slot - Duration::from_secs(1),
            );
            assert!(
                at >= slot - Duration::from_millis(100) && at <= slot + Duration::from_millis(100)
            );
        }
        assert_eq!(
            jittered(
                slot,
                Duration::from_millis(100),
                slot + Duration::from_secs(1)
            ),
            slot + Duration::from_secs(1)
        );
        assert_eq!(jittered(slot, Duration::ZERO, slot), slot);
    }
}
