//! The health book's vocabulary: what a verdict is keyed by ([`TargetId`], [`HealthKey`],
//! [`Resource`]), what a profile reads ([`ProfileKeys`]), what routing gets back ([`Masks`]),
//! and what the book reports ([`KeyDetail`], [`BookEvent`], [`BookCounters`]). The book itself,
//! which owns the states and computes the masks, is in [`super::book`].

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use super::outcome::ProbeOutcome;
use super::spec::{CheckSpec, Timing};
use super::state::{Status, Transition};

use crate::routing::ReplicaMask;

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
pub(crate) enum Resource {
    /// The target's overall verdict (one URL per registry and replica).
    Whole,
    /// Only these dependencies of the target's deep-health document (sorted, deduplicated);
    /// a missing one counts as failing.
    Deps(Arc<[String]>),
}

/// Derives the outcome of the dependencies `deps` from a target's outcome: judged on the
/// deep document when there is one (even if the whole probe failed on its status or on
/// other dependencies); otherwise the target's own failure, or "no deep-health document".
pub(crate) fn judge_deps(o: &ProbeOutcome, deps: &[String]) -> ProbeOutcome {
    use super::outcome::{Failure, Pass};
    let result = match (&o.result, &o.document) {
        (
            Ok(_) | Err(Failure::Status(_) | Failure::Dependencies(_) | Failure::DocumentStatus(_)),
            Some(doc),
        ) => {
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
    pub(crate) resource: Resource,
}

impl HealthKey {
    /// The key's name in the fleet (`crate::fleet`): the target id, then `/` and the
    /// dependencies for a `depends_on` key. The same on every instance of one config.
    pub(crate) fn fleet_name(&self) -> Arc<str> {
        match &self.resource {
            Resource::Whole => self.target.to_string().into(),
            Resource::Deps(d) => format!("{}/{}", self.target, d.join(",")).into(),
        }
    }

    /// The whole result of `target`.
    pub fn whole(target: TargetId) -> Self {
        Self {
            target,
            resource: Resource::Whole,
        }
    }
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

/// The keys a profile is judged on, per replica (index = replica index).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileKeys {
    /// Deep verdict source per replica.
    pub deep: Vec<Option<HealthKey>>,
    /// Shallow verdict source per replica.
    pub shallow: Vec<Option<HealthKey>>,
}

/// What routing may answer for one profile (or one registry with an exception).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Masks {
    /// The replicas that may be answered.
    pub routable: ReplicaMask,
    /// The replicas not disabled by an operator.
    pub(crate) enabled: ReplicaMask,
    /// Every enabled replica is degraded: answering as if all were healthy.
    pub fail_open: bool,
    /// Shadow mode: the mask deep health would have given.
    pub shadow_deep: Option<ReplicaMask>,
}

impl Masks {
    /// Every one of `n` replicas routable and enabled.
    pub(crate) fn all(n: usize) -> Self {
        let m = ReplicaMask::first(n);
        Self {
            routable: m,
            enabled: m,
            fail_open: false,
            shadow_deep: None,
        }
    }
}

/// One key's detail for the status API.
#[derive(Clone, Debug)]
pub struct KeyDetail {
    /// The key (target and resource).
    pub(crate) key: HealthKey,
    /// The state routed on (stale → unknown).
    pub(crate) effective: Status,
    /// Whether the verdict expired.
    pub(crate) stale: bool,
    /// When the stored state began.
    pub(crate) since: Option<Instant>,
    /// Consecutive successes.
    pub(crate) consecutive_successes: u32,
    /// Consecutive failures.
    pub(crate) consecutive_failures: u32,
    /// The last outcome (time, latency, result, deep document).
    pub last: Option<ProbeOutcome>,
    /// The fleet's verdict, when the fleet's view is current and some instance reports the
    /// key; `effective` is this instance's own.
    pub(crate) fleet: Option<FleetVerdict>,
    /// Whether routing reads the fleet's verdict (the fleet watch is current).
    pub(crate) fleet_current: bool,
    /// What routing reads: `effective`, or the fleet's verdict while it is current.
    pub(crate) routed: Status,
}

/// The fleet's verdict on one key (`crate::fleet::quorum`).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct FleetVerdict {
    /// Whether a quorum of the live instances reports it degraded.
    pub degraded: bool,
    /// The live instances that report it degraded.
    pub reported_by: Arc<[String]>,
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
        /// Targets with a prober-side failure.
        failing: usize,
        /// All targets.
        total: usize,
    },
    /// The mass-failure guard released.
    GuardReleased,
}

/// A history entry.
#[derive(Clone, Debug)]
pub struct BookEvent {
    /// When.
    pub(crate) at: Instant,
    /// What.
    pub kind: EventKind,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BookCounters {
    /// Key transitions.
    pub transitions: u64,
    /// Times the mass-failure guard engaged.
    pub(crate) guard_engagements: u64,
    /// Outcomes for targets not in the plan (stale events after a reload).
    pub(crate) unknown_target_outcomes: u64,
}
