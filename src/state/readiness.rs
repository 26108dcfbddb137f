//! `/ready` and `/live` primitives.
//!
//! [`Readiness`] is linkerd's one-way latch: it is ready once every [`Latch`] has been
//! dropped, and once ready it never goes back. The wiring (`app`) holds one latch until the zones are
//! loaded and one until the first probe round is done.
//!
//! [`Liveness`] tracks background tasks: each holds an [`Alive`] guard; when a task ends (by
//! panic or by return) its guard drops and `/live` fails, naming it.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// Ready once every [`Latch`] is dropped.
#[derive(Clone, Debug)]
pub struct Readiness(Weak<()>);

/// Holds [`Readiness`] back while alive. Clone it to wait for several things.
#[derive(Clone, Debug)]
pub struct Latch(#[allow(dead_code)] Arc<()>);

impl Readiness {
    /// A readiness and its first latch.
    pub fn new() -> (Readiness, Latch) {
        let latch = Arc::new(());
        (Readiness(Arc::downgrade(&latch)), Latch(latch))
    }

    /// Whether every latch has been released. Once true, always true.
    pub fn is_ready(&self) -> bool {
        self.0.strong_count() == 0
    }
}

impl Latch {
    /// Release this latch (same as dropping it).
    pub fn release(self) {}
}

/// The set of background tasks `/live` reports on.
#[derive(Clone, Debug, Default)]
pub struct Liveness(Arc<Mutex<Vec<Task>>>);

/// A registered task: its name and a handle that dies with it.
type Task = (String, Weak<()>);

/// Held by a background task for as long as it runs.
#[derive(Debug)]
#[must_use = "the task is reported dead as soon as the guard drops"]
pub struct Alive(#[allow(dead_code)] Arc<()>);

impl Liveness {
    /// A new, empty set (live).
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a task named `name`; move the guard into the task.
    pub fn register(&self, name: &str) -> Alive {
        let a = Arc::new(());
        self.0.lock().push((name.to_owned(), Arc::downgrade(&a)));
        Alive(a)
    }

    /// Names of registered tasks that have ended.
    pub fn dead(&self) -> Vec<String> {
        self.0
            .lock()
            .iter()
            .filter(|(_, w)| w.strong_count() == 0)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latch_is_one_way() {
        let (r, latch) = Readiness::new();
        let second = latch.clone();
        assert!(!r.is_ready());
        latch.release();
        assert!(!r.is_ready());
        drop(second);
        assert!(r.is_ready());
    }

    #[test]
    fn liveness_names_dead_tasks() {
        let l = Liveness::new();
        let a = l.register("prober");
        let b = l.register("state");
        assert!(l.dead().is_empty());
        drop(b);
        assert_eq!(l.dead(), vec!["state".to_owned()]);
        drop(a);
        assert_eq!(l.dead().len(), 2);
    }
}
