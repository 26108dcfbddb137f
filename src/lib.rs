//! steerdns: an authoritative DNS server that answers a service's global name with the
//! lowest-latency healthy replica for each client.
//!
//! # The two flows
//!
//! ```text
//!  a query:   server (UDP recvmmsg threads · TCP tasks) ─► dns::handle(&Snapshot, packet, source)
//!               wire::parse_query ─► global name? ─► global::decide ─► prepared AnswerSet bytes
//!                                      │ (Globals: sharded name table → Registry → profile masks)   ▲
//!                                      └ else ─► zone lookup (RFC 1034 §4.3.2) ─► encode         │
//!                                          (global names and their ENTs are names of the tree:   │
//!                                           a CNAME chain that reaches one ─────────────────────┘)
//!
//!  a change:  health::prober ─► (TargetId, ProbeOutcome) ─┐
//!             admin API · SIGHUP ─► state::command ───────┼─► state::writer (World: one apply
//!             tick (stale verdicts, guard, expiry) ───────┘    step per event, no I/O but the
//!                                                              override file and the journal)
//!                                                                 │ one whole Snapshot
//!                                                                 ▼
//!                                                   state::Shared::publish (ArcSwap)
//! ```
//!
//! Imports run one way: the cores (`wire`, `zone`, `routing`, `health`, `config`, `catalog`,
//! `global`) import nothing above them; `state` and `dns` sit on the cores; the adapters
//! (`server`, `admin`, `cli`, `app`, `demo_replica`) sit on top, and nothing below them
//! imports them.
//!
//! Visibility is `pub(crate)` by default: what stays `pub` is the seam the binary, the tests
//! and the benches use, so the compiler reports dead code everywhere else.
//!
//! # Modules
//!
//! - `wire`: the DNS message parser and header/OPT writers, RFC text beside each check.
//! - `zone`: zone files loaded into an in-memory tree with RFC 1034 lookup.
//! - `routing`: pure selection of replicas for a client (latency table, City databases in
//!   every common schema, default order) and `ReplicaMask`, the set of replicas every
//!   per-replica verdict is.
//! - `health`: probe settings, outcomes, the state machine, the health book (`book`) and its
//!   vocabulary (`keys`: keys, masks, details), checker, prober.
//! - `config`: the TOML file format (`config::file`, `config::admin`) and the runtime types.
//! - `catalog`: the registry catalog file and its journal of runtime changes.
//! - `global`: global names prepared for answering: replica sets, answer sets, profiles,
//!   the sharded name table, the decision and explain.
//! - `state`: the `Snapshot` every query is answered from, its loading, the catalog index,
//!   the writer and its commands, the status and event views, readiness.
//! - `dns`: the request path, pure and synchronous (`dns::handle`).
//! - `metrics`: counters on the answer path and the OpenMetrics registry.
//! - `overrides`: operator state (overrides and health modes) persisted atomically, and its typed
//!   keys (`RegistryKey`, `ReplicaKey`, `RegionName`).
//! - `problem`: a problem in an input file, with file, line and reason.
//! - `server`: the transports: `server::udp` (recvmmsg threads), `server::rrl` (response rate
//!   limiting per UDP thread), `server::tcp` (deadlines, per-client and global caps with
//!   longest-idle eviction); shutdown bounded by a grace period.
//! - `admin`: the admin HTTP API (maps domain errors to statuses) and its CLI client.
//! - `notify`: webhooks: events POSTed, signed, from a bounded queue per receiver.
//! - `service`: the service manager (systemd notify: ready, watchdog, reload) and the log
//!   format.
//! - `app`: wiring: the writer, the admin API and the transports on sockets the caller bound.
//! - `cli`: the command line; `demo_replica`: simulated replicas for the demo and tests.
//! - `fuzzing` (hidden): the seam of the fuzz targets in `fuzz/` and of the reply-invariant
//!   proptest, wrappers over the crate-private parsers and the one reply check.

pub mod admin;
pub mod app;
mod catalog;
pub mod cli;
pub mod config;
pub mod demo_replica;
pub mod dns;
pub mod dnssec;
mod fleet;
#[doc(hidden)]
pub mod fuzzing;
mod global;
pub mod health;
pub mod metrics;
pub mod notify;
pub mod overrides;
pub mod problem;
pub mod routing;
pub mod server;
pub mod service;
pub mod state;
mod wire;
mod zone;
