#![allow(unreachable_pub)]

//! One integration-test binary (compiled once), with a module per area.

/// In-process server and DNS clients over real sockets.
#[allow(dead_code)] // helpers used by some modules only
mod support;

/// Authoritative DNS semantics over real UDP and TCP (issue: authoritative core, item 5).
mod dns;

/// TCP limits and graceful shutdown.
mod transport;

/// Every example config parses; unknown keys are rejected in every table.
mod config_examples;

/// Performance routing of global names over the wire.
mod routing;

/// The built binary, queried with `dig`.
mod e2e;
