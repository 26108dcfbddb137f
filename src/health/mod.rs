//! Health: probe settings ([`spec`]), outcomes ([`outcome`]), the pure state machine
//! ([`state`]), the single-writer health book that turns outcomes into masks per health
//! profile ([`book`]), the HTTP/TCP checker ([`check`]) and the prober loop ([`prober`]).
//!
//! How the pieces are wired (the writer is `state::writer`):
//!
//! ```text
//! config ──► book::TargetTable (deduplicated probe targets) ──► HealthBook::new / replan
//!   global::Profile ──► state::catalog::profile_keys ──► HealthBook::add_profile
//!                              │ targets.probe_targets()
//!                              ▼
//!   watch<Arc<[ProbeTarget]>> ──► prober::spawn_prober ──► mpsc<(TargetId, ProbeOutcome)>
//!                                                               │
//!   writer: book.observe(id, outcome, now) ◄────────────────────┘
//!           → profiles whose keys flipped ──► book.masks(profile, mode, disabled)
//! ```

pub mod book;
pub mod check;
pub(crate) mod keys;
pub mod outcome;
pub(crate) mod plan;
pub mod prober;
pub mod spec;
pub mod state;
