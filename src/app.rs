//! Wiring: build the shared state from a loaded snapshot, start the writer task (health
//! book + prober) and serve the sockets the caller bound, until the caller's shutdown token is
//! cancelled. The binary and the tests share this code path (`spawn(snapshot, sockets,
//! shutdown)`), mini-redis style: the caller binds and decides when to stop.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::control::{self, ControlHandles};
use crate::server::{self, Sockets, TcpLimits, TransportStats};
use crate::state::{Shared, Snapshot};

/// A running server's handles.
#[derive(Clone, Debug)]
pub struct Handles {
    /// The snapshot in service.
    pub shared: Shared,
    /// Transport counters.
    pub stats: Arc<TransportStats>,
    /// The writer task's handles (prober counters, readiness).
    pub control: ControlHandles,
}

/// Serve `sockets` from `snapshot` until `shutdown` is cancelled.
pub async fn run(snapshot: Snapshot, sockets: Sockets, shutdown: CancellationToken) -> std::io::Result<()> {
    let (_handles, task) = spawn(snapshot, sockets, shutdown)?;
    if let Err(e) = task.await {
        error!(error = %e, "the server task ended abnormally");
    }
    info!("steerdns stopped");
    Ok(())
}

/// Start serving in the background; returns the handles at once and the task that ends when
/// everything has stopped.
pub fn spawn(
    snapshot: Snapshot,
    sockets: Sockets,
    shutdown: CancellationToken,
) -> std::io::Result<(Handles, tokio::task::JoinHandle<()>)> {
    let limits = TcpLimits {
        idle_timeout: snapshot.config.tcp_idle_timeout,
        max_connections: snapshot.config.tcp_max_connections,
    };
    info!(
        zones = snapshot.zones.len(),
        registries = snapshot.globals.registries.len(),
        probe_targets = snapshot.plan.probe_targets().len(),
        config = %snapshot.config.path.display(),
        "steerdns starting"
    );
    let shared = Shared::new(snapshot);
    let (control, control_task) = control::spawn(shared.clone(), shutdown.clone())?;
    let handles = Handles {
        shared,
        stats: Arc::default(),
        control,
    };
    let h = handles.clone();
    let task = tokio::spawn(async move {
        server::serve(sockets, h.shared, limits, h.stats, shutdown).await;
        if let Err(e) = control_task.await {
            error!(error = %e, "the control task ended abnormally");
        }
    });
    Ok((handles, task))
}
