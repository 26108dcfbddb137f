//! How fresh the health view in the current snapshot is, as the answer path sees it.
//!
//! The health book expires a verdict to `unknown` when its target has not reported for
//! `stale_after` (the prober is stuck), but that rule runs in the writer. If the writer
//! itself hangs or dies, the last published masks would hold for ever: a replica degraded
//! at that moment would stay out of the answers however long the outage of the control
//! plane lasts. So the writer also stamps a deadline here every time it evaluates the book
//! (each outcome and each tick): *now + the shortest `stale_after` of any probe target*. The
//! answer path compares the clock with that deadline, and past it treats every verdict as
//! `unknown` — routable, the fail-open rule of DESIGN — while operator overrides (the
//! `enabled` mask) still hold.
//!
//! # Cost
//!
//! One `HealthClock` lives for the whole process: [`Shared::publish`](super::Shared::publish)
//! carries it from each snapshot to the next, so a beat is one relaxed store and needs no
//! publish. The answer path reads the clock only when some enabled replica of the registry
//! is not routable (otherwise expiry changes nothing): the healthy steady state costs one
//! mask compare and no clock read.
//!
//! # Rules
//!
//! - Before the first beat, and while there are no probe targets, the view never expires.
//! - A beat moves the deadline to `now + stale_after`, forwards or backwards (a reload that
//!   shortens `stale_after` takes effect at the next beat).
//! - Expired means strictly past the deadline, matching `HealthState::is_stale`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The deadline of the health view; see the module doc.
#[derive(Debug)]
pub(crate) struct HealthClock {
    /// The instant the deadline is counted from.
    base: Instant,
    /// Nanoseconds after `base` past which the view is expired; `u64::MAX`: never.
    valid_until: AtomicU64,
}

impl Default for HealthClock {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthClock {
    /// A clock that never expires until the first beat.
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            valid_until: AtomicU64::new(u64::MAX),
        }
    }

    /// A clock already past its deadline (the fuzzing seam's "writer stopped" state).
    pub(crate) fn expired_long_ago() -> Self {
        let now = Instant::now();
        Self {
            base: now.checked_sub(Duration::from_secs(1)).unwrap_or(now),
            valid_until: AtomicU64::new(0),
        }
    }

    /// The writer evaluated the book at `now`; verdicts expire `stale_after` later (`None`:
    /// nothing is probed, nothing can expire).
    pub(crate) fn beat(&self, now: Instant, stale_after: Option<Duration>) {
        let until = stale_after.map_or(u64::MAX, |s| self.nanos(now).saturating_add(nanos(s)));
        self.valid_until.store(until, Ordering::Relaxed);
    }

    /// Whether the view is past its deadline at `now`.
    #[inline]
    pub(crate) fn expired_at(&self, now: Instant) -> bool {
        let until = self.valid_until.load(Ordering::Relaxed);
        until != u64::MAX && self.nanos(now) > until
    }

    /// Whether the view is past its deadline now.
    #[inline]
    pub(crate) fn expired(&self) -> bool {
        // Read the deadline first: with no probe targets the clock is never read.
        self.valid_until.load(Ordering::Relaxed) != u64::MAX && self.expired_at(Instant::now())
    }

    fn nanos(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.base))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn rules() {
        let c = HealthClock::new();
        let t0 = Instant::now();
        // Before the first beat: never expires.
        assert!(!c.expired_at(t0 + S * 1000));
        // With nothing probed: never expires.
        c.beat(t0, None);
        assert!(!c.expired_at(t0 + S * 1000));
        // Strictly past the deadline.
        c.beat(t0, Some(S * 3));
        assert!(!c.expired_at(t0 + S * 3));
        assert!(c.expired_at(t0 + S * 3 + Duration::from_nanos(1)));
        // A later beat moves it forwards; a shorter stale_after moves it backwards.
        c.beat(t0 + S * 10, Some(S * 3));
        assert!(!c.expired_at(t0 + S * 12));
        c.beat(t0 + S * 10, Some(S));
        assert!(c.expired_at(t0 + S * 12));
        assert!(HealthClock::expired_long_ago().expired());
    }
}
