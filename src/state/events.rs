//! The one event log: transitions, incidents, overrides, mode switches, reloads, the guard,
//! the fleet link. The writer pushes; `GET /v1/events`, the SSE stream
//! (`GET /v1/events/stream`) and the webhook senders read. Not on the DNS path.
//!
//! Every event gets the next number (`id`). The last `capacity` events stay in a ring for
//! `/v1/events` and for a stream resuming from `Last-Event-ID`; live readers follow a
//! broadcast channel of the same capacity, and one that falls behind learns how many it
//! missed (it only ever loses its own place). Sinks (the webhooks) each have a bounded queue
//! of their own: a push that finds one full drops the event for that sink and counts it.
//! Nothing here waits: a push is a short lock, a broadcast send and a `try_send` per sink,
//! so a hung reader can never hold up the writer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc};

use super::view::{EventKind, EventView, IncidentEvent};
use crate::overrides::{AuditEvent, format_time};

/// Default number of events kept.
pub(crate) use crate::config::admin::DEFAULT_EVENT_HISTORY as DEFAULT_CAPACITY;

/// Called once per event a full sink drops.
pub type OnDrop = Box<dyn Fn() + Send + Sync>;

/// One sink: its queue, which kinds it takes (None: all) and what it dropped.
struct Sink {
    tx: mpsc::Sender<Arc<EventView>>,
    kinds: Option<Vec<EventKind>>,
    dropped: Arc<AtomicU64>,
    on_drop: OnDrop,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("kinds", &self.kinds)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<EventView>>,
    next_id: u64,
    sinks: Vec<Sink>,
}

/// A cheap-clone handle to the numbered, bounded event log.
#[derive(Clone, Debug)]
pub struct EventLog {
    // A plain mutex: pushes and reads are rare (per event / per admin request) and short.
    inner: Arc<Mutex<Ring>>,
    live: broadcast::Sender<Arc<EventView>>,
    capacity: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

/// What a stream reader gets: the kept events after its `Last-Event-ID`, whether events
/// between that id and the oldest kept one were lost, and the live channel (subscribed
/// before the backlog was read, so nothing falls between them).
#[derive(Debug)]
pub struct Subscription {
    /// Kept events with an id above the one asked for, oldest first.
    pub backlog: Vec<Arc<EventView>>,
    /// Events after the asked id that are no longer kept (0: none lost).
    pub missed: u64,
    /// New events as they are pushed.
    pub live: broadcast::Receiver<Arc<EventView>>,
}

impl EventLog {
    /// A log keeping the last `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(capacity);
        Self {
            inner: Arc::new(Mutex::new(Ring {
                events: VecDeque::with_capacity(capacity),
                next_id: 1,
                sinks: Vec::new(),
            })),
            live,
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
        self.push_view(EventView {
            id: 0,
            at: format_time(at),
            kind,
            registry: registry.map(str::to_owned),
            replica: replica.map(str::to_owned),
            message: message.into(),
            incident: None,
        });
    }

    /// Append an incident event (its view attached).
    pub(crate) fn push_incident(&self, at: SystemTime, message: String, incident: IncidentEvent) {
        self.push_view(EventView {
            id: 0,
            at: format_time(at),
            kind: EventKind::Incident,
            registry: None,
            replica: Some(incident.incident.cause.region.clone()),
            message,
            incident: Some(Box::new(incident)),
        });
    }

    /// Append an override audit event (already logged by `overrides`).
    pub fn push_audit(&self, e: &AuditEvent) {
        self.push_view(EventView::from(e));
    }

    fn push_view(&self, mut e: EventView) {
        let mut ring = self.inner.lock();
        e.id = ring.next_id;
        ring.next_id += 1;
        let e = Arc::new(e);
        if ring.events.len() == self.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(e.clone());
        for s in &ring.sinks {
            if s.kinds.as_ref().is_some_and(|k| !k.contains(&e.kind)) {
                continue;
            }
            match s.tx.try_send(e.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    (s.on_drop)();
                }
                // The sink's task is gone (shutdown): nothing to count.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        ring.sinks.retain(|s| !s.tx.is_closed());
        // Sent under the lock, so live order is id order; no receiver is not an error.
        let _ = self.live.send(e);
    }

    /// The kept events, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<EventView> {
        self.inner
            .lock()
            .events
            .iter()
            .map(|e| (**e).clone())
            .collect()
    }

    /// Follow the log from just after event `after` (None: from now on).
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let ring = self.inner.lock();
        let live = self.live.subscribe();
        let Some(after) = after else {
            return Subscription {
                backlog: Vec::new(),
                missed: 0,
                live,
            };
        };
        let backlog: Vec<Arc<EventView>> = ring
            .events
            .iter()
            .filter(|e| e.id > after)
            .cloned()
            .collect();
        let oldest = ring.events.front().map_or(ring.next_id, |e| e.id);
        Subscription {
            backlog,
            missed: oldest.saturating_sub(after.saturating_add(1)),
            live,
        }
    }

    /// A sink with its own queue of `capacity` events of `kinds` (None: all): the events
    /// pushed from now on, and the count of those dropped because the queue was full
    /// (`on_drop` is called for each, too).
    pub fn add_sink(
        &self,
        capacity: usize,
        kinds: Option<Vec<EventKind>>,
        on_drop: OnDrop,
    ) -> (mpsc::Receiver<Arc<EventView>>, Arc<AtomicU64>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        self.inner.lock().sinks.push(Sink {
            tx,
            kinds,
            dropped: dropped.clone(),
            on_drop,
        });
        (rx, dropped)
    }

    /// The id the next event will get.
    pub fn next_id(&self) -> u64 {
        self.inner.lock().next_id
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn push(log: &EventLog, i: u64) {
        log.push(
            UNIX_EPOCH + Duration::from_secs(i),
            EventKind::Reload,
            None,
            None,
            format!("reload {i}"),
        );
    }

    #[test]
    fn bounded_oldest_first_and_numbered() {
        let log = EventLog::new(2);
        for i in 0..3u64 {
            push(&log, i);
        }
        let v = log.snapshot();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].message, "reload 1");
        assert_eq!((v[0].id, v[1].id), (2, 3));
        assert_eq!(v[1].at, "1970-01-01T00:00:02Z");
    }

    #[test]
    fn a_subscription_resumes_after_an_id_and_says_what_it_lost() {
        let log = EventLog::new(3);
        for i in 0..5u64 {
            push(&log, i);
        }
        // Kept: 3, 4, 5.
        let s = log.subscribe(Some(3));
        assert_eq!(s.backlog.iter().map(|e| e.id).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(s.missed, 0);
        let s = log.subscribe(Some(0));
        assert_eq!(s.backlog.len(), 3);
        assert_eq!(s.missed, 2, "1 and 2 are gone");
        let mut s = log.subscribe(Some(5));
        assert!(s.backlog.is_empty());
        push(&log, 5);
        assert_eq!(s.live.try_recv().unwrap().id, 6);
    }

    #[test]
    fn a_full_sink_drops_and_counts_and_never_blocks() {
        let log = EventLog::new(8);
        let (mut rx, dropped) = log.add_sink(2, None, Box::new(|| {}));
        let (mut only, _) = log.add_sink(8, Some(vec![EventKind::Guard]), Box::new(|| {}));
        for i in 0..5u64 {
            push(&log, i);
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
        assert_eq!(rx.try_recv().unwrap().id, 1);
        assert_eq!(rx.try_recv().unwrap().id, 2);
        assert!(rx.try_recv().is_err());
        assert!(only.try_recv().is_err(), "reloads are not for this sink");
        drop(rx);
        push(&log, 9);
        assert_eq!(
            log.inner.lock().sinks.len(),
            1,
            "a closed sink is forgotten"
        );
    }
}
