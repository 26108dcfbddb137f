//! The admin router over real HTTP on 127.0.7.x, wired through the real `ChannelContext` to a
//! fake state task that owns real `Overrides` (a state file in a temp dir), a real `EventLog`
//! and real `Metrics`: every endpoint, access control (token required, loopback only, refused
//! and logged), override persistence and expiry, the CLI client functions, and the status page.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request};
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{Value, json};
use steerdns::admin::access::{Access, AccessPolicy};
use steerdns::admin::client::{
    self, AdminArgs, AdminCommand, ClientError, RegionAction, ReplicaAction,
};
use steerdns::admin::context::{AdminError, ChannelContext, Command, OverrideAction};
use steerdns::admin::{self, Admin};
use steerdns::metrics::Metrics;
use steerdns::overrides::{AuditAction, OverrideError, Overrides, Target, time_plus};
use steerdns::state::events::EventLog;
use steerdns::state::readiness::{Latch, Liveness, Readiness};
use steerdns::state::view::{
    Ack, EventKind, ModeName, OverrideView, RegistryStatus, ReplicaState, ReplicaStatus,
    ServerFacts, StatusView, ZoneFact,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

//------------ fake state task --------------------------------------------------------------

/// registry -> [(replica, region)]
fn registries() -> BTreeMap<&'static str, Vec<(&'static str, &'static str)>> {
    BTreeMap::from([
        (
            "contoso",
            vec![("eastus", "eastus"), ("westeurope", "westeurope")],
        ),
        ("fabrikam", vec![("westeurope", "westeurope")]),
    ])
}

struct Fake {
    overrides: Overrides,
    mode: String,
    registry_modes: BTreeMap<String, String>,
    generation: u64,
    fail_reload: bool,
    /// The fake wall clock: tests advance it to exercise expiry.
    now: SystemTime,
}

type SharedFake = Arc<Mutex<Fake>>;

fn status_of(fake: &Fake, ready: bool) -> StatusView {
    let registries = registries()
        .into_iter()
        .map(|(key, reps)| RegistryStatus {
            key: key.into(),
            name: format!("{key}.registry.example."),
            mode: fake
                .registry_modes
                .get(key)
                .cloned()
                .unwrap_or_else(|| fake.mode.clone()),
            fail_open: false,
            replicas: reps
                .into_iter()
                .map(|(rep, region)| {
                    let o = fake.overrides.is_disabled(key, rep, region, fake.now);
                    ReplicaStatus {
                        key: rep.into(),
                        region: region.into(),
                        state: if o.is_some() {
                            ReplicaState::Disabled
                        } else {
                            ReplicaState::Healthy
                        },
                        routable: o.is_none(),
                        override_: o.map(OverrideView::from),
                        ..ReplicaStatus::default()
                    }
                })
                .collect(),
        })
        .collect();
    StatusView {
        server: ServerFacts {
            version: env!("CARGO_PKG_VERSION").into(),
            config_generation: fake.generation,
            config_path: "/etc/steerdns/steerdns.toml".into(),
            started_at: "2026-11-27T06:00:00Z".into(),
            ready,
            zones: vec![ZoneFact {
                origin: "registry.example.".into(),
                serial: 2026112701,
                file: "zones/registry.example.zone".into(),
            }],
        },
        mode: fake.mode.clone(),
        guard_engaged: false,
        registries,
        ..StatusView::default()
    }
}

/// `steerdns status` without options (the first page).
fn status_command() -> AdminCommand {
    AdminCommand::Status {
        registry: None,
        state: None,
        after: None,
        limit: None,
    }
}

fn known(target: &Target) -> bool {
    let regs = registries();
    match target {
        Target::Replica { registry, replica } => regs
            .get(registry.as_str())
            .is_some_and(|r| r.iter().any(|(k, _)| k == replica)),
        Target::Region { region } => regs.values().flatten().any(|(_, r)| r == region),
    }
}

async fn state_task(
    mut rx: mpsc::Receiver<Command>,
    fake: SharedFake,
    events: EventLog,
    metrics: Arc<Metrics>,
    readiness: Readiness,
) {
    while let Some(cmd) = rx.recv().await {
        let mut f = fake.lock();
        let now = f.now;
        match cmd {
            Command::Reload { who, reply } => {
                let r = if f.fail_reload {
                    metrics.reload(false);
                    events.push(now, EventKind::Reload, None, None, "reload failed");
                    Err(AdminError::Failed(
                        "/etc/steerdns/steerdns.toml:3: unknown field `zone_dir`".into(),
                    ))
                } else {
                    f.generation += 1;
                    metrics.reload(true);
                    metrics.set_generation(f.generation);
                    events.push(
                        now,
                        EventKind::Reload,
                        None,
                        None,
                        format!("reloaded by {who}"),
                    );
                    Ok(Ack {
                        message: format!("reloaded: generation {}", f.generation),
                        generation: Some(f.generation),
                        fleet: None,
                    })
                };
                let _ = reply.send(r);
            }
            Command::Status { reply, .. } => {
                let _ = reply.send(Ok(status_of(&f, readiness.is_ready())));
            }
            // Only the fleet link sends these.
            Command::FleetVerdicts { .. } | Command::FleetStatus { .. } => {}
            Command::Incidents { reply, .. } => {
                let _ = reply.send(Ok(Default::default()));
            }
            Command::RegistryKeys { ids, reply } => {
                let _ = reply.send(vec![None; ids.len()]);
            }
            Command::IncidentRegistries { id, reply, .. } => {
                let _ = reply.send(Err(AdminError::NotFound(format!("no incident {id}"))));
            }
            Command::PutRegistry { reply, .. } | Command::DeleteRegistry { reply, .. } => {
                let _ = reply.send(Err(AdminError::Conflict("the fake has no catalog".into())));
            }
            Command::Override { command, reply } => {
                let r = if !known(&command.target) {
                    Err(AdminError::NotFound(format!("no {}", command.target)))
                } else {
                    let res = match command.action {
                        OverrideAction::Disable => f.overrides.disable(
                            command.target,
                            &command.reason,
                            &command.who,
                            command.duration.map(|d| time_plus(now, d)),
                            now,
                        ),
                        OverrideAction::Enable => {
                            f.overrides
                                .enable(command.target, &command.reason, &command.who, now)
                        }
                    };
                    res.map_err(|e| match e {
                        OverrideError::NotDisabled(_) => AdminError::Conflict(e.to_string()),
                        e => AdminError::Failed(e.to_string()),
                    })
                };
                if let Ok(e) = &r {
                    events.push_audit(e);
                    metrics.set_overrides(f.overrides.active(now).count());
                }
                let _ = reply.send(r);
            }
            Command::Mode { command, reply } => {
                let r = match &command.registry {
                    Some(reg) if !registries().contains_key(reg.as_str()) => {
                        Err(AdminError::NotFound(format!("no registry {reg}")))
                    }
                    Some(reg) => {
                        f.registry_modes
                            .insert(reg.clone(), command.mode.as_str().into());
                        Ok(format!("mode {} for {reg}", command.mode.as_str()))
                    }
                    None => {
                        f.mode = command.mode.as_str().into();
                        Ok(format!("mode {} server-wide", command.mode.as_str()))
                    }
                };
                let r = r.map(|message| {
                    events.push(
                        now,
                        EventKind::Mode,
                        command.registry.as_deref(),
                        None,
                        &message,
                    );
                    Ack {
                        message,
                        generation: None,
                        fleet: None,
                    }
                });
                let _ = reply.send(r);
            }
        }
    }
}

//------------ harness ----------------------------------------------------------------------

struct Server {
    addr: SocketAddr,
    /// Bound to the server's own 127.0.7.x address as source, so "who" is predictable.
    http: reqwest::Client,
    base: String,
    fake: SharedFake,
    state_file: PathBuf,
    liveness: Liveness,
    latch: Option<Latch>,
    metrics: Arc<Metrics>,
    token_file: PathBuf,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Start the router on 127.0.7.`host`:0. `tokens`: write a token file and require it.
/// `allow`: extra read CIDRs. Requests may carry `x-test-peer: IP` to pose as another client
/// (a test-only layer outside the router rewrites `ConnectInfo`, since every real client here
/// is loopback).
async fn start(host: u8, tokens: bool, allow: &[&str]) -> Server {
    let dir = tempfile::tempdir().expect("tmp");
    let state_file = dir.path().join("steerdns-state.json");
    let token_file = dir.path().join("admin-tokens");
    std::fs::write(&token_file, format!("# tokens\nops:{TOKEN}\n")).expect("tokens");
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let fake = Arc::new(Mutex::new(Fake {
        overrides: Overrides::load(&state_file, now).expect("load"),
        mode: "deep".into(),
        registry_modes: BTreeMap::new(),
        generation: 1,
        fail_reload: false,
        now,
    }));
    let events = EventLog::new(16);
    let metrics = Arc::new(Metrics::new());
    let (tx, rx) = mpsc::channel(8);
    let (readiness, latch) = Readiness::new();
    tokio::spawn(state_task(
        rx,
        fake.clone(),
        events.clone(),
        metrics.clone(),
        readiness.clone(),
    ));
    let liveness = Liveness::new();
    let ctx = ChannelContext::new(
        tx,
        |q| {
            if q.name != "contoso.registry.example." {
                return Err(AdminError::NotFound(format!(
                    "{} is not a global name",
                    q.name
                )));
            }
            Ok(json!({
                "name": q.name,
                "client": q.client.to_string(),
                "ecs": q.ecs.map(|n| n.to_string()),
                "basis": "default_order",
                "replicas": ["westeurope", "eastus"],
            }))
        },
        metrics.clone(),
        events,
    );
    let access = Access::load(
        tokens.then_some(token_file.as_path()),
        allow.iter().map(|s| s.parse().expect("cidr")).collect(),
    )
    .expect("access");
    let router = admin::router(Admin {
        context: Arc::new(ctx),
        access: AccessPolicy::Fixed(Arc::new(access)),
        readiness,
        liveness: liveness.clone(),
    })
    .layer(axum::middleware::map_request(
        |mut req: Request| async move {
            let fake_peer = req
                .headers()
                .get("x-test-peer")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse::<std::net::IpAddr>().ok());
            if let Some(ip) = fake_peer {
                req.extensions_mut()
                    .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
            }
            req
        },
    ));
    let listener = tokio::net::TcpListener::bind(("127.0.7.".to_owned() + &host.to_string(), 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(admin::serve(listener, router, shutdown.clone()));
    Server {
        addr,
        http: reqwest::Client::builder()
            .no_proxy()
            .local_address(addr.ip())
            .build()
            .expect("client"),
        base: format!("http://{addr}"),
        fake,
        state_file,
        liveness,
        latch: Some(latch),
        metrics,
        token_file,
        _dir: dir,
        shutdown,
    }
}

async fn call(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut req = s.http.request(method, format!("{}{path}", s.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("send");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

async fn get(s: &Server, path: &str) -> (StatusCode, String) {
    call(s, reqwest::Method::GET, path, None, &[]).await
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).expect("json error body");
    v["error"].as_str().expect("error field").to_owned()
}

/// The log lines of this whole test binary. One global subscriber: thread-local subscribers
/// (`set_default`) in tests running in parallel race with tracing's callsite interest cache
/// and lose events now and then. Tests pick their own lines by client address.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

fn logs() -> &'static Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let me = logs.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || me.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        // Another test may have installed it first; either way, this buffer is the one.
        let _ = tracing::subscriber::set_global_default(sub);
        logs
    })
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

//------------ endpoints --------------------------------------------------------------------

#[tokio::test]
async fn live_and_ready() {
    let mut s = start(1, false, &[]).await;
    let (st, body) = get(&s, "/live").await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "live\n"));
    let prober = s.liveness.register("prober");
    let state = s.liveness.register("state");
    assert_eq!(get(&s, "/live").await.0, StatusCode::OK);
    drop(state);
    let (st, body) = get(&s, "/live").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "dead: state\n");
    drop(prober);

    let (st, body) = get(&s, "/ready").await;
    assert_eq!(
        (st, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    );
    let v: StatusView = serde_json::from_str(&get(&s, "/v1/status").await.1).expect("status");
    assert!(!v.server.ready);
    s.latch.take().expect("latch").release();
    assert_eq!(get(&s, "/ready").await, (StatusCode::OK, "ready\n".into()));
}

#[tokio::test]
async fn metrics_endpoint() {
    let s = start(2, false, &[]).await;
    s.metrics.dns().response(0, 1);
    let resp = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = resp.text().await.expect("text");
    assert!(
        text.contains("steerdns_dns_queries_total{rcode=\"NOERROR\",qtype=\"A\"} 1"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn status_explain_events_unknown() {
    let s = start(3, false, &[]).await;
    let (st, body) = get(&s, "/v1/status").await;
    assert_eq!(st, StatusCode::OK);
    let v: StatusView = serde_json::from_str(&body).expect("status");
    assert_eq!(v.server.config_generation, 1);
    assert_eq!(v.server.zones[0].serial, 2026112701);
    assert_eq!(v.registries.len(), 2);
    assert_eq!(v.registries[0].replicas[1].key, "westeurope");
    assert_eq!(v.registries[0].replicas[1].state, ReplicaState::Healthy);
    // A state that does not exist is a 400 naming the states that do.
    let (st, body) = get(&s, "/v1/status?state=sad").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("sad") && body.contains("degraded") && body.contains("disabled"),
        "{body}"
    );

    let (st, body) = get(
        &s,
        "/v1/explain?name=contoso.registry.example.&client=192.0.2.1&ecs=203.0.113.0/24",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["client"], "192.0.2.1");
    assert_eq!(v["ecs"], "203.0.113.0/24");
    let (st, body) = get(&s, "/v1/explain?name=contoso.registry.example.").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body), "client= is required (an IP address)");
    let (st, body) = get(&s, "/v1/explain?name=nope.example.&client=::1").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&body), "nope.example. is not a global name");

    let (st, body) = get(&s, "/v1/events").await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "[]"));

    let (st, body) = get(&s, "/v1/nothing").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&body), "no endpoint GET /v1/nothing");
    let (st, _) = call(&s, reqwest::Method::GET, "/v1/reload", None, &[]).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn reload_ok_and_failed() {
    let s = start(4, false, &[]).await;
    let (st, body) = call(&s, reqwest::Method::POST, "/v1/reload", None, &[]).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let ack: Ack = serde_json::from_str(&body).expect("ack");
    assert_eq!(ack.generation, Some(2));
    s.fake.lock().fail_reload = true;
    let (st, body) = call(&s, reqwest::Method::POST, "/v1/reload", None, &[]).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        error_of(&body).contains("unknown field `zone_dir`"),
        "{body}"
    );
    let events: Vec<Value> = serde_json::from_str(&get(&s, "/v1/events").await.1).expect("ev");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["kind"], "reload");
    assert_eq!(events[0]["message"], "reloaded by 127.0.7.4");
    let m = get(&s, "/metrics").await.1;
    assert!(
        m.contains("steerdns_config_reloads_total{result=\"failed\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn overrides_persist_show_and_expire() {
    let s = start(5, false, &[]).await;
    let put = reqwest::Method::PUT;
    let del = reqwest::Method::DELETE;
    let (st, body) = call(
        &s,
        put.clone(),
        "/v1/overrides",
        Some(json!({"registry": "contoso", "replica": "westeurope", "reason": "storage incident"})),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["action"], "disabled");
    assert_eq!(v["event"]["who"], "127.0.7.5");

    // Visible in status, persisted in the state file, in the events.
    let st_view: StatusView = serde_json::from_str(&get(&s, "/v1/status").await.1).expect("s");
    let r = &st_view.registries[0].replicas[1];
    assert_eq!(r.state, ReplicaState::Disabled);
    let o = r.override_.as_ref().expect("override");
    assert_eq!(
        (o.who.as_str(), o.reason.as_str()),
        ("127.0.7.5", "storage incident")
    );
    let now = s.fake.lock().now;
    let reloaded = Overrides::load(&s.state_file, now).expect("reload state file");
    assert!(
        reloaded
            .is_disabled("contoso", "westeurope", "westeurope", now)
            .is_some()
    );
    let events: Vec<Value> = serde_json::from_str(&get(&s, "/v1/events").await.1).expect("ev");
    assert_eq!(events[0]["kind"], "override");
    assert_eq!(
        events[0]["message"],
        "disabled replica contoso/westeurope by 127.0.7.5: storage incident"
    );

    // Region disable with an expiry; expiry ignores it at once, prune drops it from the file.
    let (st, body) = call(
        &s,
        put.clone(),
        "/v1/overrides",
        Some(json!({"region": "eastus", "reason": "maintenance", "for": "30m"})),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: StatusView = serde_json::from_str(&get(&s, "/v1/status").await.1).expect("s");
    let east = &v.registries[0].replicas[0];
    assert_eq!(east.state, ReplicaState::Disabled);
    assert_eq!(
        east.override_
            .as_ref()
            .and_then(|o| o.until.clone())
            .as_deref(),
        Some("2027-01-15T08:30:00Z")
    );
    {
        let mut f = s.fake.lock();
        f.now += Duration::from_secs(1800);
    }
    let v: StatusView = serde_json::from_str(&get(&s, "/v1/status").await.1).expect("s");
    assert_eq!(
        v.registries[0].replicas[0].state,
        ReplicaState::Healthy,
        "expired at its until"
    );
    let pruned = {
        let mut f = s.fake.lock();
        let now = f.now;
        f.overrides.prune(now).expect("prune")
    };
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0].action, AuditAction::Expired);
    let text = std::fs::read_to_string(&s.state_file).expect("state");
    assert!(!text.contains("maintenance"), "{text}");

    // Enable; enabling again is a conflict; unknown targets are 404; bad bodies 400.
    let body = Some(json!({"registry": "contoso", "replica": "westeurope"}));
    let (st, _) = call(&s, del.clone(), "/v1/overrides", body.clone(), &[]).await;
    assert_eq!(st, StatusCode::OK);
    let (st, b) = call(&s, del.clone(), "/v1/overrides", body, &[]).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(error_of(&b), "replica contoso/westeurope is not disabled");
    let (st, b) = call(
        &s,
        put.clone(),
        "/v1/overrides",
        Some(json!({"registry": "contoso", "replica": "mars"})),
        &[],
    )
    .await;
    assert_eq!(
        (st, error_of(&b).as_str()),
        (StatusCode::NOT_FOUND, "no replica contoso/mars")
    );
    let (st, b) = call(
        &s,
        put,
        "/v1/overrides",
        Some(json!({"registry": "contoso"})),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(error_of(&b).contains("give \"registry\" and \"replica\""));
    let m = get(&s, "/metrics").await.1;
    assert!(m.contains("steerdns_overrides 0"), "{m}");
}

#[tokio::test]
async fn mode_switch() {
    let s = start(6, false, &[]).await;
    let put = reqwest::Method::PUT;
    let (st, body) = call(
        &s,
        put.clone(),
        "/v1/mode",
        Some(json!({"mode": "shadow"})),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, _) = call(
        &s,
        put.clone(),
        "/v1/mode",
        Some(json!({"mode": "off", "registry": "fabrikam"})),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let v: StatusView = serde_json::from_str(&get(&s, "/v1/status").await.1).expect("s");
    assert_eq!(v.mode, "shadow");
    assert_eq!(v.registries[1].mode, "off");
    let (st, b) = call(
        &s,
        put.clone(),
        "/v1/mode",
        Some(json!({"mode": "deeper"})),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(error_of(&b).contains("unknown variant `deeper`"), "{b}");
    let (st, _) = call(
        &s,
        put,
        "/v1/mode",
        Some(json!({"mode": "deep", "registry": "nope"})),
        &[],
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

//------------ access control ---------------------------------------------------------------

#[tokio::test]
async fn token_required_when_configured_and_refusals_logged() {
    let logs = logs();
    let s = start(7, true, &[]).await;
    let body = Some(json!({"region": "westeurope", "reason": "drill"}));
    let put = reqwest::Method::PUT;

    let (st, b) = call(&s, put.clone(), "/v1/overrides", body.clone(), &[]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&b), "changes need Authorization: Bearer <token>");
    let wrong = format!("Bearer {}", TOKEN.replace('0', "1"));
    let (st, b) = call(
        &s,
        put.clone(),
        "/v1/overrides",
        body.clone(),
        &[("authorization", &wrong)],
    )
    .await;
    assert_eq!(
        (st, error_of(&b).as_str()),
        (StatusCode::UNAUTHORIZED, "invalid token")
    );
    let (st, _) = call(&s, reqwest::Method::POST, "/v1/reload", None, &[]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let good = format!("Bearer {TOKEN}");
    // A valid token works from any client address.
    let (st, b) = call(
        &s,
        put,
        "/v1/overrides",
        body,
        &[("authorization", &good), ("x-test-peer", "198.51.100.7")],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let v: Value = serde_json::from_str(&b).expect("json");
    assert_eq!(v["event"]["who"], "token:ops");

    let text = logs.text();
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("admin request refused") && l.contains("client=127.0.7.7"))
        .collect();
    assert_eq!(refused.len(), 3, "{text}");
    assert!(refused[0].contains("client=127.0.7.7"), "{}", refused[0]);
    assert!(refused[0].contains("method=PUT"), "{}", refused[0]);
    assert!(
        refused[0].contains("endpoint=/v1/overrides"),
        "{}",
        refused[0]
    );
    assert!(refused[1].contains("invalid token"), "{}", refused[1]);
    assert!(refused[2].contains("endpoint=/v1/reload"), "{}", refused[2]);
    assert!(!text.contains(TOKEN), "the token must never be logged");
    assert!(
        text.contains("disabled region westeurope by token:ops: drill"),
        "audit line: {text}"
    );
}

#[tokio::test]
async fn without_token_changes_are_loopback_only_and_reads_follow_allow_list() {
    let logs = logs();
    let s = start(8, false, &["10.20.0.0/16"]).await;
    let body = Some(json!({"region": "westeurope"}));
    let far = [("x-test-peer", "10.20.1.1")];
    let (st, b) = call(
        &s,
        reqwest::Method::PUT,
        "/v1/overrides",
        body.clone(),
        &far,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        error_of(&b),
        "changes are allowed from loopback only (no [admin] token_file)"
    );
    let (st, _) = call(&s, reqwest::Method::PUT, "/v1/overrides", body, &[]).await;
    assert_eq!(st, StatusCode::OK, "loopback may change without a token");

    // Reads: allowed network yes, others no; /live and /ready for everyone.
    for path in ["/v1/status", "/metrics", "/v1/events", "/"] {
        let (st, _) = call(&s, reqwest::Method::GET, path, None, &far).await;
        assert_eq!(st, StatusCode::OK, "{path} from an allowed network");
        let (st, b) = call(
            &s,
            reqwest::Method::GET,
            path,
            None,
            &[("x-test-peer", "192.0.2.9")],
        )
        .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path} from elsewhere");
        assert_eq!(
            error_of(&b),
            "reads are allowed from loopback and [admin] allow_read_from only"
        );
    }
    let (st, _) = call(
        &s,
        reqwest::Method::GET,
        "/live",
        None,
        &[("x-test-peer", "192.0.2.9")],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(
        &s,
        reqwest::Method::GET,
        "/ready",
        None,
        &[("x-test-peer", "2001:db8::9")],
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "answered, not refused");
    let text = logs.text();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("admin request refused")
                && (l.contains("client=10.20.1.1") || l.contains("client=192.0.2.9")))
            .count(),
        5,
        "{text}"
    );
    assert!(text.contains("client=192.0.2.9"), "{text}");
}

//------------ status page ------------------------------------------------------------------

#[tokio::test]
async fn status_page_is_self_contained_html() {
    let s = start(9, false, &[]).await;
    let resp = s
        .http
        .get(format!("{}/", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/html")
    );
    let html = resp.text().await.expect("text");
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<style>") && html.contains("<script>"));
    assert!(html.contains("\"/v1/status?limit=\""));
    assert!(html.contains("setInterval(refresh, 5000)"));
    // The SVG namespace is a name, not a fetch.
    let html = html.replace("\"http://www.w3.org/2000/svg\"", "");
    for external in ["src=", "href=", "http://", "https://", "@import"] {
        assert!(
            !html.contains(external),
            "page references an external asset: {external}"
        );
    }
}

//------------ CLI client functions ---------------------------------------------------------

#[tokio::test]
async fn cli_clients_against_the_router() {
    let s = start(10, true, &[]).await;
    let args = AdminArgs {
        config: None,
        admin: Some(s.base.clone()),
        token_file: Some(s.token_file.clone()),
    };
    let out = client::run(
        &args,
        &AdminCommand::Replica {
            action: ReplicaAction::Disable {
                registry: "contoso".into(),
                replica: "westeurope".into(),
                reason: Some("storage incident".into()),
                for_: Some("2h".into()),
            },
        },
    )
    .await
    .expect("disable");
    assert_eq!(
        out,
        "disabled replica contoso/westeurope by token:ops: storage incident (until 2027-01-15T10:00:00Z)\n"
    );
    let out = client::run(&args, &status_command()).await.expect("status");
    let line = out
        .lines()
        .find(|l| l.starts_with("contoso   westeurope"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("disabled"), "{line}");
    assert!(
        line.contains("by token:ops: storage incident until 2027-01-15T10:00:00Z"),
        "{line}"
    );
    assert!(out.starts_with("steerdns "), "{out}");

    let out = client::run(
        &args,
        &AdminCommand::Region {
            action: RegionAction::Disable {
                region: "eastus".into(),
                reason: None,
                for_: None,
            },
        },
    )
    .await
    .expect("region");
    assert_eq!(out, "disabled region eastus by token:ops\n");
    client::run(
        &args,
        &AdminCommand::Region {
            action: RegionAction::Enable {
                region: "eastus".into(),
                reason: Some("done".into()),
            },
        },
    )
    .await
    .expect("region enable");
    let out = client::run(
        &args,
        &AdminCommand::Mode {
            mode: ModeName::Shallow,
            registry: Some("contoso".into()),
        },
    )
    .await
    .expect("mode");
    assert_eq!(out, "mode shallow for contoso\n");
    let out = client::run(&args, &AdminCommand::Reload)
        .await
        .expect("reload");
    assert_eq!(out, "reloaded: generation 2\n");
    let out = client::run(&args, &AdminCommand::Events)
        .await
        .expect("events");
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(
        out.lines()
            .nth(1)
            .expect("2nd")
            .contains("override    disabled region eastus"),
        "{out}"
    );

    // Server errors come back with their reason.
    let err = client::run(
        &args,
        &AdminCommand::Replica {
            action: ReplicaAction::Enable {
                registry: "fabrikam".into(),
                replica: "westeurope".into(),
                reason: None,
            },
        },
    )
    .await
    .expect_err("not disabled");
    assert_eq!(
        err.to_string(),
        "409 Conflict: replica fabrikam/westeurope is not disabled"
    );
    let no_token = AdminArgs {
        config: None,
        admin: Some(s.base.clone()),
        token_file: None,
    };
    let err = client::run(&no_token, &AdminCommand::Reload)
        .await
        .expect_err("401");
    match err {
        ClientError::Server { status, reason } => {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(reason, "changes need Authorization: Bearer <token>");
        }
        other => panic!("{other}"),
    }
    // Reads need no token.
    client::run(&no_token, &status_command())
        .await
        .expect("status without token");
    // Nothing listening: a connect error naming the URL.
    let gone = AdminArgs {
        config: None,
        admin: Some("http://127.0.7.11:1".into()),
        token_file: None,
    };
    let err = client::run(&gone, &status_command())
        .await
        .expect_err("down");
    assert!(
        err.to_string()
            .starts_with("cannot reach the admin API at http://127.0.7.11:1/v1/status"),
        "{err}"
    );
    let _ = s.addr;
}
