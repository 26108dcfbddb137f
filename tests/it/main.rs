#![allow(unreachable_pub)]

//! One integration-test binary (compiled once), with a module per area.

/// In-process server and DNS clients over real sockets.
#[allow(dead_code)] // helpers used by some modules only
mod support;

/// Authoritative DNS semantics over real UDP and TCP (issue: authoritative core, item 5).
mod dns;

/// Response rate limiting over UDP.
mod rrl;
/// TCP limits and graceful shutdown.
mod transport;

/// Every example config parses; unknown keys are rejected in every table.
mod config_examples;

/// Performance routing of global names over the wire.
mod routing;

/// Geo databases in each City schema, one file or an IPv4 + IPv6 pair; explain; check-config.
mod geo;

/// Health-aware failover against real HTTP replicas.
mod failover;

/// Global names in the zone tree: aliases, empty non-terminals, wildcards, the apex.
mod zone_tree;

/// Registries as data: the catalog, runtime changes, consistency during changes, status pages.
mod catalog;

/// Failover on scripted probe outcomes and paused time: exact probe counts.
mod scripted;

/// Operating the running binary: admin API, CLI, overrides, reload, status page.
mod admin_e2e;

/// Three binaries sharing state through a real etcd (skipped when etcd is not installed).
mod fleet;

/// The built binary, queried with `dig`.
pub(crate) mod e2e;

/// The reply invariants of the fuzz targets as a proptest on stable; the fuzz inputs
/// (mmdb, seed corpora) are generated here.
mod fuzzing;

/// Incidents at catalog scale: one fault, one incident with the exact count, paged, closed.
mod incidents;

/// Push: signed webhooks to real HTTP receivers (retried, bounded, never blocking) and the
/// SSE stream resumed from Last-Event-ID.
mod push;

/// Traffic per minute by client group and answered replica, over the admin API.
mod traffic;

/// docs/alerts.yml and docs/grafana-dashboard.json: checked by promtool, on real series.
mod alerts;

/// The binary under a service manager: sd-notify READY, WATCHDOG, reload, STOPPING; JSON logs.
mod service;

/// The Debian package, installed on this machine (root only): the unit's user and capability,
/// READY and the watchdog, dig on port 53, SIGHUP, upgrade, purge.
mod package;

/// The container image FROM scratch, built and run with podman: dig answers from it.
mod container;

/// DNSSEC keys: BIND's file format both ways, DS records equal to dnssec-dsfromkey's.
mod dnssec;
