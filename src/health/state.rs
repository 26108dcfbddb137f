//! The pure health state machine of one probe target: consecutive-outcome counters with
//! hysteresis, no clocks (every time comes in as a parameter).
//!
//! Rules (thresholds from [`Thresholds`]):
//!
//! - `Unknown` (never probed, or only failures below the threshold so far) is routable.
//! - The **first success from `Unknown` makes the target `Healthy` at once.** Unknown is
//!   routable already, so this changes no answer; it only makes status and readiness honest
//!   sooner (Traffic Manager treats its "checking" state the same way).
//! - `Unknown`/`Healthy` → `Degraded` after exactly `failure` consecutive failures; a single
//!   failure below the threshold moves nothing.
//! - `Degraded` → `Healthy` after `success` consecutive successes (hysteresis against flapping).
//! - Each counter resets on the opposite outcome.
//! - While the mass-failure guard holds ([`HealthState::observe_with`] with `hold = true`),
//!   failures are counted but degrade nothing; the next failure after the hold is released
//!   degrades a target whose count already reached the threshold.
//! - [`HealthState::effective`]: a verdict whose last outcome is older than `stale_after`
//!   counts as `Unknown` (the prober is stuck or dead: fail open).

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::outcome::{Failure, ProbeOutcome};
use super::spec::Thresholds;

/// The health of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Not judged yet (or verdict expired): routable.
    Unknown,
    /// Passing: routable.
    Healthy,
    /// Failed `failure_threshold` times in a row: not routable (unless all are).
    Degraded,
}

impl Status {
    /// Lower-case name for logs, metrics and the status API.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `consecutive` failures in a row; the last one's reason.
    Failed {
        /// Failures in a row.
        consecutive: u32,
        /// The last failure (status code, timeout, TLS error, failing dependencies...).
        failure: Failure,
    },
    /// `consecutive` successes in a row.
    Passed {
        /// Successes in a row.
        consecutive: u32,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Failed {
                consecutive,
                failure,
            } => write!(f, "{consecutive} consecutive failures, last: {failure}"),
            Reason::Passed { consecutive } => write!(f, "{consecutive} consecutive successes"),
        }
    }
}

/// A state change, returned by [`HealthState::observe`] only when the state flips.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Previous state.
    pub from: Status,
    /// New state.
    pub to: Status,
    /// The time of the outcome that caused it.
    pub(crate) at: Instant,
    /// Why.
    pub reason: Reason,
}

/// One target's state and counters. Owned by a single writer.
#[derive(Clone, Debug)]
pub(crate) struct HealthState {
    status: Status,
    since: Option<Instant>,
    ok_run: u32,
    fail_run: u32,
    last: Option<ProbeOutcome>,
}

impl Default for HealthState {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthState {
    /// A fresh `Unknown` state.
    pub(crate) fn new() -> Self {
        HealthState {
            status: Status::Unknown,
            since: None,
            ok_run: 0,
            fail_run: 0,
            last: None,
        }
    }

    #[cfg(test)]
    /// The stored state, ignoring staleness.
    pub(crate) fn status(&self) -> Status {
        self.status
    }

    /// When the current state began (the time of the outcome that caused it).
    pub(crate) fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Consecutive successes so far.
    pub(crate) fn consecutive_successes(&self) -> u32 {
        self.ok_run
    }

    /// Consecutive failures so far.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.fail_run
    }

    /// The last outcome seen.
    pub(crate) fn last(&self) -> Option<&ProbeOutcome> {
        self.last.as_ref()
    }

    /// Whether the last outcome is older than `stale_after` at `now` (never probed: false).
    pub(crate) fn is_stale(&self, now: Instant, stale_after: Duration) -> bool {
        self.last
            .as_ref()
            .is_some_and(|o| now.saturating_duration_since(o.at) > stale_after)
    }

    /// The state to route on at `now`: a stale verdict counts as `Unknown`.
    pub(crate) fn effective(&self, now: Instant, stale_after: Duration) -> Status {
        if self.is_stale(now, stale_after) {
            Status::Unknown
        } else {
            self.status
        }
    }

    #[cfg(test)]
    /// Applies one outcome; `Some` only when the state flips.
    pub(crate) fn observe(&mut self, outcome: &ProbeOutcome, th: Thresholds) -> Option<Transition> {
        self.observe_with(outcome, th, false)
    }

    /// Like [`observe`](Self::observe); with `hold`, failures are counted but degrade nothing
    /// (the mass-failure guard).
    pub(crate) fn observe_with(
        &mut self,
        outcome: &ProbeOutcome,
        th: Thresholds,
        hold: bool,
    ) -> Option<Transition> {
        let at = outcome.at;
        self.last = Some(outcome.clone());
        let (to, reason) = match &outcome.result {
            Ok(_) => {
                self.fail_run = 0;
                self.ok_run = self.ok_run.saturating_add(1);
                let to = match self.status {
                    Status::Unknown => Status::Healthy,
                    Status::Degraded if self.ok_run >= th.success => Status::Healthy,
                    s => s,
                };
                (
                    to,
                    Reason::Passed {
                        consecutive: self.ok_run,
                    },
                )
            }
            Err(f) => {
                self.ok_run = 0;
                self.fail_run = self.fail_run.saturating_add(1);
                let to = if !hold && self.status != Status::Degraded && self.fail_run >= th.failure
                {
                    Status::Degraded
                } else {
                    self.status
                };
                (
                    to,
                    Reason::Failed {
                        consecutive: self.fail_run,
                        failure: f.clone(),
                    },
                )
            }
        };
        if self.since.is_none() {
            self.since = Some(at);
        }
        if to == self.status {
            return None;
        }
        let from = self.status;
        self.status = to;
        self.since = Some(at);
        Some(Transition {
            from,
            to,
            at,
            reason,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::outcome::Pass;
    use super::*;

    fn out(at: Instant, ok: bool) -> ProbeOutcome {
        ProbeOutcome {
            at,
            latency: Duration::from_millis(3),
            result: if ok {
                Ok(Pass { status: Some(200) })
            } else {
                Err(Failure::Status(503))
            },
            document: None,
        }
    }

    /// Runs `seq` ('+' pass, '-' fail, 'h' fail while held) and returns the state after each
    /// step as one letter (U/H/D) plus the indexes where a transition was reported.
    fn run(th: Thresholds, seq: &str) -> (String, Vec<usize>) {
        let t0 = Instant::now();
        let mut s = HealthState::new();
        let mut states = String::new();
        let mut flips = Vec::new();
        for (i, c) in seq.chars().enumerate() {
            let o = out(t0 + Duration::from_secs(i as u64), c == '+');
            let tr = s.observe_with(&o, th, c == 'h');
            if let Some(tr) = tr {
                assert_eq!(tr.to, s.status());
                assert_ne!(tr.from, tr.to);
                assert_eq!(s.since(), Some(o.at));
                flips.push(i);
            }
            states.push(match s.status() {
                Status::Unknown => 'U',
                Status::Healthy => 'H',
                Status::Degraded => 'D',
            });
        }
        (states, flips)
    }

    #[test]
    fn sequences() {
        let th = Thresholds {
            failure: 3,
            success: 2,
        };
        let cases: &[(&str, &str, &[usize])] = &[
            ("", "", &[]),
            ("+", "H", &[0]),
            ("-", "U", &[]),
            ("--", "UU", &[]),
            ("---", "UUD", &[2]),
            ("--+", "UUH", &[2]),
            ("+---", "HHHD", &[0, 3]),
            ("+--+--", "HHHHHH", &[0]),
            ("+----", "HHHDD", &[0, 3]),
            ("+---+", "HHHDD", &[0, 3]),
            ("+---++", "HHHDDH", &[0, 3, 5]),
            ("+---+-++", "HHHDDDDH", &[0, 3, 7]),
            ("+---++---", "HHHDDHHHD", &[0, 3, 5, 8]),
            ("+hhhh", "HHHHH", &[0]),
            ("+hhhh-", "HHHHHD", &[0, 5]),
            ("+hh+-", "HHHHH", &[0]),
            ("---hh++", "UUDDDDH", &[2, 6]),
        ];
        for (seq, want, flips) in cases {
            let (got, f) = run(th, seq);
            assert_eq!(&got, want, "seq {seq}");
            assert_eq!(&f, flips, "seq {seq}");
        }
    }

    #[test]
    fn thresholds_of_one() {
        let th = Thresholds {
            failure: 1,
            success: 1,
        };
        assert_eq!(run(th, "+-+-"), ("HDHD".into(), vec![0, 1, 2, 3]));
        assert_eq!(run(th, "-"), ("D".into(), vec![0]));
    }

    #[test]
    fn transition_reason_carries_failure_detail() {
        let th = Thresholds {
            failure: 2,
            success: 2,
        };
        let t0 = Instant::now();
        let mut s = HealthState::new();
        let mut o = out(t0, false);
        o.result = Err(Failure::Dependencies(vec!["storage".into()]));
        assert_eq!(s.observe(&o, th), None);
        assert_eq!(s.consecutive_failures(), 1);
        o.at = t0 + Duration::from_secs(1);
        let tr = s.observe(&o, th).unwrap();
        assert_eq!(tr.from, Status::Unknown);
        assert_eq!(tr.to, Status::Degraded);
        assert_eq!(tr.at, o.at);
        assert_eq!(
            tr.reason.to_string(),
            "2 consecutive failures, last: failing dependencies: storage"
        );
        let tr = s.observe(&out(t0 + Duration::from_secs(2), true), th);
        assert!(tr.is_none());
        assert_eq!(s.consecutive_successes(), 1);
        assert_eq!(s.consecutive_failures(), 0);
        let tr = s
            .observe(&out(t0 + Duration::from_secs(3), true), th)
            .unwrap();
        assert_eq!(tr.reason, Reason::Passed { consecutive: 2 });
    }

    #[test]
    fn staleness() {
        let th = Thresholds::default();
        let t0 = Instant::now();
        let stale = Duration::from_secs(30);
        let mut s = HealthState::new();
        assert_eq!(
            s.effective(t0 + Duration::from_secs(999), stale),
            Status::Unknown
        );
        assert!(!s.is_stale(t0 + Duration::from_secs(999), stale));
        for i in 0..3 {
            s.observe(&out(t0 + Duration::from_secs(i), false), th);
        }
        assert_eq!(
            s.effective(t0 + Duration::from_secs(32), stale),
            Status::Degraded
        );
        assert_eq!(
            s.effective(t0 + Duration::from_secs(33), stale),
            Status::Unknown
        );
        assert_eq!(s.status(), Status::Degraded);
        assert_eq!(s.last().unwrap().at, t0 + Duration::from_secs(2));
    }
}
