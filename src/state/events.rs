//! The bounded event history behind `GET /v1/events`: transitions, overrides, mode switches,
//! reloads. The state task pushes; the admin router reads. Not on the DNS path.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::view::{EventKind, EventView};
use crate::overrides::{AuditEvent, format_time};

/// Default number of events kept.
pub(crate) use crate::config::admin::DEFAULT_EVENT_HISTORY as DEFAULT_CAPACITY;

/// A cheap-clone handle to a bounded ring of events (oldest dropped first).
#[derive(Clone, Debug)]
pub struct EventLog {
    // A plain mutex: pushes and reads are rare (per event / per admin request) and short.
    inner: Arc<Mutex<VecDeque<EventView>>>,
    capacity: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl EventLog {
    /// A log keeping the last `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    /// Append an event. It is not logged here: whoever caused it (the health book, the writer
    /// task, the override store) logs it once, where it happens.
    pub fn push(
        &self,
        at: SystemTime,
        kind: EventKind,
        registry: Option<&str>,
        replica: Option<&str>,
        message: impl Into<String>,
    ) {
        let e = EventView {
            at: format_time(at),
            kind,
            registry: registry.map(str::to_owned),
            replica: replica.map(str::to_owned),
            message: message.into(),
        };
        self.push_view(e);
    }

    /// Append an override audit event (already logged by `overrides`).
    pub fn push_audit(&self, e: &AuditEvent) {
        self.push_view(EventView::from(e));
    }

    fn push_view(&self, e: EventView) {
        let mut q = self.inner.lock();
        if q.len() == self.capacity {
            q.pop_front();
        }
        q.push_back(e);
    }

    /// The events, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<EventView> {
        self.inner.lock().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn bounded_oldest_first() {
        let log = EventLog::new(2);
        for i in 0..3u64 {
            log.push(
                UNIX_EPOCH + Duration::from_secs(i),
                EventKind::Reload,
                None,
                None,
                format!("reload {i}"),
            );
        }
        let v = log.snapshot();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].message, "reload 1");
        assert_eq!(v[1].at, "1970-01-01T00:00:02Z");
    }
}
