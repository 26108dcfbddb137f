//! Wiring: build the shared state from a loaded snapshot, start the writer task (health
//! book, prober, overrides, modes, reloads), the admin API and the DNS transports on the
//! sockets the caller bound, until the caller's shutdown token is cancelled. The binary and
//! the tests share this code path (`spawn(snapshot, sockets, shutdown)`), mini-redis style:
//! the caller binds and decides when to stop.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::admin::access::AccessPolicy;
use crate::admin::context::{AdminError, ChannelContext};
use crate::admin::{self, Admin};
use crate::metrics::Metrics;
use crate::server::{self, Sockets, TransportStats};
use crate::state::readiness::{Liveness, Readiness};
use crate::state::view::ExplainQuery;
use crate::state::writer::{self, ControlHandles};
use crate::state::{Shared, Snapshot};
use crate::wire::ClientSubnet;

/// A running server's handles.
#[derive(Clone, Debug)]
pub struct Handles {
    /// The snapshot in service.
    pub shared: Shared,
    /// Transport counters and the metrics.
    pub stats: Arc<TransportStats>,
    /// The writer task's handles (prober counters, readiness, commands, status, events).
    pub control: ControlHandles,
    /// The admin API's address, when one was bound.
    pub admin: Option<std::net::SocketAddr>,
    /// The background tasks `/live` reports on (the writer, each UDP thread and TCP listener).
    pub liveness: Liveness,
    /// Answers per minute (`/v1/traffic`).
    pub traffic: Arc<crate::metrics::traffic::Traffic>,
}

/// Start serving in the background; returns the handles at once and the task that ends when
/// everything has stopped. Fails when the override state file or the admin token file cannot
/// be read.
pub fn spawn(
    snapshot: Snapshot,
    sockets: Sockets,
    shutdown: CancellationToken,
) -> std::io::Result<(Handles, tokio::task::JoinHandle<()>)> {
    let checker = crate::health::check::Checker::new().map_err(std::io::Error::other)?;
    spawn_probing(snapshot, sockets, checker, shutdown)
}

/// [`spawn`] with another prober: scripted outcomes, for tests that must count probes and
/// run on paused time.
pub fn spawn_probing<P: crate::health::prober::Probe>(
    mut snapshot: Snapshot,
    sockets: Sockets,
    probe: P,
    shutdown: CancellationToken,
) -> std::io::Result<(Handles, tokio::task::JoinHandle<()>)> {
    info!(
        zones = snapshot.zones.len(),
        registries = snapshot.globals.len(),
        probe_targets = snapshot.targets.len(),
        config = %snapshot.config.path.display(),
        "steerdns starting"
    );
    let fleet = snapshot.config.fleet.clone();
    // Webhooks start once; a reload that changes `[notify]` says a restart is needed.
    let snapshot_webhooks = snapshot.config.webhooks.clone();
    let mut metrics = Metrics::new();
    if fleet.is_some() {
        metrics.enable_fleet();
    }
    let metrics = Arc::new(metrics);
    metrics.install_replica_counters(snapshot.counters.clone());
    metrics.install_signers(&snapshot.zones);
    metrics.set_generation(snapshot.generation);
    // Zones are loaded (the snapshot exists); the one latch left is the first probe round.
    let (readiness, latch) = Readiness::new();
    let liveness = Liveness::new();
    let index = snapshot.take_index();
    let shared = Shared::new(snapshot);
    let (control, control_task) = writer::spawn(
        shared.clone(),
        index,
        metrics.clone(),
        (latch, liveness.register("state")),
        probe,
        shutdown.clone(),
    )?;
    // With `[fleet]`, admin changes go through the fleet link, which feeds the writer the
    // same commands and shares them through etcd.
    let (admin_commands, fleet_task) = match fleet {
        Some(cfg) => {
            let (tx, task) = crate::fleet::spawn(
                cfg,
                control.commands.clone(),
                control.own_degraded.clone(),
                metrics.clone(),
                shutdown.clone(),
            )?;
            (tx, Some(task))
        }
        None => (control.commands.clone(), None),
    };
    // Answers per minute, folded from the per-thread answer counters once a minute.
    let traffic = crate::metrics::traffic::Traffic::new(metrics.clone());
    let handles = Handles {
        shared: shared.clone(),
        stats: Arc::new(TransportStats::new(metrics.clone())),
        control: control.clone(),
        admin: sockets.admin.as_ref().and_then(|l| l.local_addr().ok()),
        liveness: liveness.clone(),
        traffic: traffic.clone(),
    };

    // Their queues join the event log before the first probe outcome can reach the writer
    // (outcomes need a network round trip; this is synchronous).
    let webhooks = crate::notify::spawn(&snapshot_webhooks, &control.events, &metrics, &shutdown);

    let sampler = tokio::spawn(crate::metrics::traffic::run_sampler(
        traffic.clone(),
        control.commands.clone(),
        shutdown.clone(),
    ));

    let admin_task = sockets.admin.map(|listener| {
        let explain_from = shared.clone();
        let context = ChannelContext::new(
            admin_commands,
            move |q: &ExplainQuery| explain(&explain_from, q),
            metrics.clone(),
            control.events.clone(),
        )
        .with_traffic(traffic.clone());
        let router = admin::router(Admin {
            context: Arc::new(context),
            access: AccessPolicy::Live(shared.clone()),
            readiness,
            liveness: liveness.clone(),
        });
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = admin::serve(listener, router, shutdown).await {
                error!(error = %e, "the admin API stopped");
            }
        })
    });

    let h = handles.clone();
    let task = tokio::spawn(async move {
        let dns_alive = liveness.register("dns");
        server::serve(
            sockets.udp,
            sockets.tcp,
            h.shared,
            h.stats,
            &liveness,
            shutdown,
        )
        .await;
        drop(dns_alive);
        if let Err(e) = control_task.await {
            error!(error = %e, "the control task ended abnormally");
        }
        if let Some(t) = admin_task
            && let Err(e) = t.await
        {
            error!(error = %e, "the admin task ended abnormally");
        }
        if let Some(t) = fleet_task
            && let Err(e) = t.await
        {
            error!(error = %e, "the fleet link ended abnormally");
        }
        let _ = sampler.await;
        for t in webhooks {
            if let Err(e) = t.await {
                error!(error = %e, "a webhook sender ended abnormally");
            }
        }
    });
    Ok((handles, task))
}

/// `GET /v1/explain`: the live decision, with health, from the same code as DNS.
fn explain(shared: &Shared, q: &ExplainQuery) -> Result<serde_json::Value, AdminError> {
    let snap = shared.load();
    let mut name = hickory_proto::rr::Name::from_ascii(&q.name)
        .map_err(|e| AdminError::BadRequest(format!("{:?} is not a domain name: {e}", q.name)))?;
    name.set_fqdn(true);
    let subnet = q.ecs.map(ClientSubnet::from_net);
    let x = snap
        .explain(&name, q.qtype, q.client, subnet.as_ref())
        .ok_or_else(|| AdminError::NotFound(format!("{name} is not a global name")))?;
    serde_json::to_value(x).map_err(|e| AdminError::Failed(e.to_string()))
}
