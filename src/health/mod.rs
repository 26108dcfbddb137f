//! Health: probe settings ([`spec`]), outcomes ([`outcome`]), the pure state machine
//! ([`state`]), the single-writer health book that turns outcomes into a routable view
//! ([`book`]), the HTTP/TCP checker ([`check`]) and the prober loop ([`prober`]).
//!
//! How the pieces are wired (the state task is the lead's):
//!
//! ```text
//! config ──► book::PlanBuilder ──► HealthPlan ──► HealthBook::new / replan
//!                                      │ plan.probe_targets()
//!                                      ▼
//!   watch<Arc<[ProbeTarget]>> ──► prober::spawn_prober ──► mpsc<(TargetId, ProbeOutcome)>
//!                                                               │
//!   state task: book.observe(id, outcome, now) ◄───────────────┘
//!               book.publish(now, disabled) ──► HealthView (routable bitmask per registry)
//! ```

pub mod book;
pub mod check;
pub mod outcome;
pub mod prober;
pub mod spec;
pub mod state;
