//! Wiring: build the shared state from a loaded snapshot, serve the sockets the caller bound,
//! and wait for the caller's shutdown signal. The binary and the tests share this code path
//! (`run(snapshot, sockets, shutdown)`), mini-redis style: the caller binds and decides when
//! to stop.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::server::{self, Sockets, TcpLimits, TransportStats};
use crate::state::{Shared, Snapshot};

/// A running server's handles.
#[derive(Clone, Debug)]
pub struct Handles {
    /// The snapshot in service.
    pub shared: Shared,
    /// Transport counters.
    pub stats: Arc<TransportStats>,
}

/// Serve `sockets` from `snapshot` until `shutdown` is cancelled.
pub async fn run(snapshot: Snapshot, sockets: Sockets, shutdown: CancellationToken) -> Handles {
    let limits = TcpLimits {
        idle_timeout: snapshot.config.tcp_idle_timeout,
        max_connections: snapshot.config.tcp_max_connections,
    };
    info!(
        zones = snapshot.zones.len(),
        registries = snapshot.config.registries.len(),
        config = %snapshot.config.path.display(),
        "steerdns starting"
    );
    let handles = Handles {
        shared: Shared::new(snapshot),
        stats: Arc::default(),
    };
    server::serve(
        sockets,
        handles.shared.clone(),
        limits,
        handles.stats.clone(),
        shutdown,
    )
    .await;
    info!("steerdns stopped");
    handles
}

/// Start serving in the background; returns the handles at once (tests use this).
pub fn spawn(
    snapshot: Snapshot,
    sockets: Sockets,
    shutdown: CancellationToken,
) -> (Handles, tokio::task::JoinHandle<()>) {
    let limits = TcpLimits {
        idle_timeout: snapshot.config.tcp_idle_timeout,
        max_connections: snapshot.config.tcp_max_connections,
    };
    let handles = Handles {
        shared: Shared::new(snapshot),
        stats: Arc::default(),
    };
    let h = handles.clone();
    let task = tokio::spawn(async move {
        server::serve(sockets, h.shared, limits, h.stats, shutdown).await;
    });
    (handles, task)
}
