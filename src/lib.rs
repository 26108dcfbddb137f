//! steerdns: an authoritative DNS server that answers a service's global name with the
//! lowest-latency healthy replica for each client.
//!
//! # Layout
//!
//! ```text
//!  UDP/TCP ──► server/   socket loops (no task per query); one Snapshot load per query
//!                │
//!                ▼
//!              dns/      parse the query (header, question, OPT, ECS), decide, encode
//!                │ global name?                       │ else
//!                ▼                                    ▼
//!              routing/ locate(client) + rank()     zone/  static RFC 1035 zones
//!                ▲  latency table (LPM) · mmdb geo · default order
//!                │
//!              state/    one immutable Snapshot behind one ArcSwap, one writer
//!                ▲
//!              health/   prober ──► outcomes ──► pure state machine ──► health view
//! ```
//!
//! - `config`: the TOML file format (`config::file`) and the validated runtime types.
//! - `zone`: zone files loaded into an in-memory tree with RFC 1034 lookup.
//! - `dns`: the wire-level request path, pure and synchronous (`dns::handle`).
//! - `server`: UDP and TCP listeners, TCP limits, graceful shutdown.
//! - `routing`: pure selection of replicas for a client.
//! - `health`: probe outcomes, the health state machine and the prober.
//! - `state`: the `Snapshot` every query is answered from.

pub mod admin;
pub mod app;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo_replica;
pub mod dns;
pub mod global;
pub mod health;
pub mod metrics;
pub mod overrides;
pub mod problem;
pub mod routing;
pub mod server;
pub mod state;
pub mod zone;
