//! A replica's deep-health endpoint the lab can flip: `GET /health` answers 200 while the
//! replica is healthy and 503 while it is failed, and counts the probes it has seen.
//!
//! Kept as small as the lab needs; steerdns's own `DemoReplica` is the richer simulation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

#[derive(Default)]
struct Shared {
    failed: AtomicBool,
    probes: AtomicU64,
}

/// A running fake replica; the server stops with the runtime it was started on.
#[derive(Clone)]
pub(crate) struct Replica {
    /// The HTTP address it listens on.
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Replica {
    /// Binds `ip:0` and serves on the current tokio runtime.
    pub(crate) async fn start(ip: std::net::Ipv4Addr) -> std::io::Result<Replica> {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/health", get(health))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Replica { addr, shared })
    }

    /// Makes `/health` answer 503 (`true`) or 200 (`false`).
    pub(crate) fn set_failed(&self, failed: bool) {
        self.shared.failed.store(failed, Ordering::SeqCst);
    }

    /// How many health probes have arrived so far.
    pub(crate) fn probes(&self) -> u64 {
        self.shared.probes.load(Ordering::SeqCst)
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    shared.probes.fetch_add(1, Ordering::SeqCst);
    if shared.failed.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"unhealthy\",\"checks\":{\"storage\":\"failed\"}}\n",
        )
    } else {
        (StatusCode::OK, "{\"status\":\"healthy\"}\n")
    }
}
