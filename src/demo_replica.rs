//! A simulated registry replica for demos and tests: a deep-health endpoint whose
//! dependencies can be failed and recovered at runtime, and a front door that always answers.
//!
//! HTTP interface:
//!
//! | request | effect |
//! | --- | --- |
//! | `GET /` | front door: always `200 ok` (a shallow check passes even when deep fails) |
//! | `GET /health?registry=NAME` | deep-health JSON `{"status", "registry", "checks": {storage, cache, auth, metadata}, "request": {"host", "user_agent"}}`; `200` when all healthy, `503` when any fails |
//! | `POST /fail?dep=storage[&registry=NAME]` | fail a dependency for one registry, or for all when `registry` is absent |
//! | `POST /recover[?dep=..][&registry=..]` | recover; without parameters: everything, including slow and hang |
//! | `POST /slow?ms=N` | delay every `/health` answer by N ms (`0` = off) |
//! | `POST /hang` | `/health` accepts and never answers (until `/recover`) |
//! | `GET /state` | the simulated state as JSON |
//!
//! The same controls are on [`DemoReplica`] for tests and the `steerdns demo` command.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The regions lab replicas serve, in the order of the `replicas` given to [`lab_config`],
/// with the IPv4 address each region's replica answers with (the demo latency table puts
/// 127.0.1.x clients nearest the first, then the second, then the third).
pub const LAB_REGIONS: [(&str, std::net::Ipv4Addr); 3] = [
    ("westeurope", std::net::Ipv4Addr::new(192, 0, 2, 10)),
    ("eastus", std::net::Ipv4Addr::new(198, 51, 100, 10)),
    ("southeastasia", std::net::Ipv4Addr::new(203, 0, 113, 10)),
];

/// A steerdns config for experiments with demo replicas (tests, benchmarks): the
/// repository's zones and geo data under `repo`, DNS on `listen`, and for each name in
/// `registries` (registry `n`: `NAME.registry.example.`, answer TTL `ttl`) one replica per
/// [`LAB_REGIONS`] entry, probed at the deep-health endpoint of the matching `replicas`
/// entry and answering with the region's address plus `n` in the last octet. `tables` is
/// added as it is (`[health]`, `[admin]`, ...).
pub fn lab_config(
    repo: &std::path::Path,
    listen: &str,
    replicas: &[DemoReplica],
    registries: &[&str],
    ttl: &str,
    tables: &str,
) -> String {
    let mut text = format!(
        "version = 1\n[server]\nlisten = [\"{listen}\"]\nzones_dir = {zones:?}\ngeo_dir = {geo:?}\n\
         [routing]\nlatency_table = \"latency.csv\"\n\
         default_order = [\"westeurope\", \"eastus\", \"southeastasia\"]\n\
         [regions.westeurope]\n[regions.eastus]\n[regions.southeastasia]\n{tables}\n",
        zones = repo.join("zones"),
        geo = repo.join("geo"),
    );
    for (n, reg) in registries.iter().enumerate() {
        text.push_str(&format!(
            "[registries.{reg}]\nname = \"{reg}.registry.example.\"\nttl = \"{ttl}\"\n"
        ));
        for ((region, base), replica) in LAB_REGIONS.iter().zip(replicas) {
            let mut octets = base.octets();
            octets[3] = octets[3].wrapping_add(n as u8);
            text.push_str(&format!(
                "[registries.{reg}.replicas.{region}]\nipv4 = [\"{}\"]\nhealth.url = \"{}\"\n",
                std::net::Ipv4Addr::from(octets),
                replica.health_url(reg)
            ));
        }
    }
    text
}

/// The dependencies every deep-health document reports.
pub(crate) const DEPENDENCIES: [&str; 4] = ["storage", "cache", "auth", "metadata"];

#[derive(Debug, Default)]
struct Sim {
    /// Failing dependencies: key `None` = every registry.
    failing: BTreeMap<Option<String>, BTreeSet<String>>,
    slow: Duration,
    hang: bool,
    hits: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Shared {
    sim: Mutex<Sim>,
    changed: Notify,
    requests: AtomicU64,
    stop: CancellationToken,
}

impl Shared {
    fn failing_for(&self, registry: &str) -> BTreeSet<String> {
        let sim = self.sim.lock();
        let mut out = BTreeSet::new();
        for key in [None, Some(registry.to_owned())] {
            if let Some(s) = sim.failing.get(&key) {
                out.extend(s.iter().cloned());
            }
        }
        out
    }

    fn fail(&self, dep: &str, registry: Option<&str>) {
        self.sim
            .lock()
            .failing
            .entry(registry.map(str::to_owned))
            .or_default()
            .insert(dep.to_owned());
    }

    fn recover(&self, dep: Option<&str>, registry: Option<&str>) {
        {
            let mut sim = self.sim.lock();
            match (dep, registry) {
                (None, None) => {
                    sim.failing.clear();
                    sim.slow = Duration::ZERO;
                    sim.hang = false;
                }
                (Some(d), None) => sim.failing.values_mut().for_each(|s| {
                    s.remove(d);
                }),
                (None, Some(r)) => {
                    sim.failing.remove(&Some(r.to_owned()));
                }
                (Some(d), Some(r)) => {
                    if let Some(s) = sim.failing.get_mut(&Some(r.to_owned())) {
                        s.remove(d);
                    }
                }
            }
            sim.failing.retain(|_, s| !s.is_empty());
        }
        self.changed.notify_waiters();
    }
}

/// A running simulated replica.
#[derive(Debug)]
pub struct DemoReplica {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug, Deserialize)]
struct Params {
    registry: Option<String>,
    dep: Option<String>,
    ms: Option<u64>,
}

impl DemoReplica {
    /// Serves on `listener` until [`shutdown`](Self::shutdown) (or drop of the runtime).
    pub fn start(listener: tokio::net::TcpListener) -> std::io::Result<DemoReplica> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/", get(|| async { "ok\n" }))
            .route("/health", get(health))
            .route("/fail", post(fail))
            .route("/recover", post(recover))
            .route("/slow", post(slow))
            .route("/hang", post(hang))
            .route("/state", get(state))
            .with_state(shared.clone());
        let stop = shared.stop.clone();
        let task = tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "demo replica stopped");
            }
        });
        Ok(DemoReplica { addr, shared, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/health?registry=NAME`.
    pub fn health_url(&self, registry: &str) -> String {
        format!("http://{}/health?registry={registry}", self.addr)
    }

    /// Fails `dep` for `registry` (or for every registry with `None`).
    pub fn fail(&self, dep: &str, registry: Option<&str>) {
        self.shared.fail(dep, registry);
    }

    /// Recovers `dep` (or all dependencies) for `registry` (or everywhere); with both `None`,
    /// also clears slow and hang.
    pub fn recover(&self, dep: Option<&str>, registry: Option<&str>) {
        self.shared.recover(dep, registry);
    }

    /// Makes `/health` hang (accept, never answer) or stop hanging.
    pub fn set_hang(&self, on: bool) {
        self.shared.sim.lock().hang = on;
        self.shared.changed.notify_waiters();
    }

    /// `/health` requests seen for `registry`.
    pub fn hits(&self, registry: &str) -> u64 {
        self.shared
            .sim
            .lock()
            .hits
            .get(registry)
            .copied()
            .unwrap_or(0)
    }

    /// Stops serving (hung requests are released) and waits for the server task.
    pub async fn shutdown(self) {
        self.shared.stop.cancel();
        self.shared.changed.notify_waiters();
        let _ = self.task.await;
    }
}

async fn health(
    State(s): State<Arc<Shared>>,
    Query(p): Query<Params>,
    headers: axum::http::HeaderMap,
) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let registry = p.registry.unwrap_or_default();
    let slow = {
        let mut sim = s.sim.lock();
        *sim.hits.entry(registry.clone()).or_default() += 1;
        sim.slow
    };
    loop {
        let notified = s.changed.notified();
        if !s.sim.lock().hang || s.stop.is_cancelled() {
            break;
        }
        notified.await;
    }
    if !slow.is_zero() {
        tokio::time::sleep(slow).await;
    }
    let failing = s.failing_for(&registry);
    let checks: serde_json::Map<String, serde_json::Value> = DEPENDENCIES
        .iter()
        .map(|d| {
            let st = if failing.contains(*d) {
                "unhealthy"
            } else {
                "healthy"
            };
            ((*d).to_owned(), json!({ "status": st }))
        })
        .collect();
    let ok = failing.iter().all(|d| !DEPENDENCIES.contains(&d.as_str()));
    let body = json!({
        "status": if ok { "healthy" } else { "unhealthy" },
        "registry": registry,
        "checks": checks,
        "request": {
            "host": header(&headers, "host"),
            "user_agent": header(&headers, "user-agent"),
        },
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

fn header(h: &axum::http::HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn fail(State(s): State<Arc<Shared>>, Query(p): Query<Params>) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    match p.dep.as_deref() {
        Some(d) if DEPENDENCIES.contains(&d) => {
            s.fail(d, p.registry.as_deref());
            (StatusCode::OK, "failed\n").into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            format!("dep must be one of {}\n", DEPENDENCIES.join(", ")),
        )
            .into_response(),
    }
}

async fn recover(State(s): State<Arc<Shared>>, Query(p): Query<Params>) -> &'static str {
    s.requests.fetch_add(1, Ordering::Relaxed);
    s.recover(p.dep.as_deref(), p.registry.as_deref());
    "recovered\n"
}

async fn slow(State(s): State<Arc<Shared>>, Query(p): Query<Params>) -> &'static str {
    s.requests.fetch_add(1, Ordering::Relaxed);
    s.sim.lock().slow = Duration::from_millis(p.ms.unwrap_or(0));
    "slow\n"
}

async fn hang(State(s): State<Arc<Shared>>) -> &'static str {
    s.requests.fetch_add(1, Ordering::Relaxed);
    s.sim.lock().hang = true;
    "hanging\n"
}

async fn state(State(s): State<Arc<Shared>>) -> axum::Json<serde_json::Value> {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let sim = s.sim.lock();
    let failing: BTreeMap<String, Vec<&String>> = sim
        .failing
        .iter()
        .map(|(k, v)| (k.clone().unwrap_or_else(|| "*".into()), v.iter().collect()))
        .collect();
    axum::Json(json!({
        "failing": failing,
        "slow_ms": sim.slow.as_millis() as u64,
        "hang": sim.hang,
        "hits": sim.hits,
    }))
}
