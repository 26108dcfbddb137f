//! The admin HTTP API (axum 0.8) on `[admin] listen`, the status page, and the CLI clients.
//!
//! # Endpoints
//!
//! | method | path | what | who |
//! |---|---|---|---|
//! | `GET` | `/` | self-contained HTML status page; refreshes from `/v1/status` every 2 s | read |
//! | `GET` | `/live` | 200 while the process and every registered background task run; 503 names the dead ones | anyone |
//! | `GET` | `/ready` | 200 once zones are loaded and the first probe round is done (one-way latch) | anyone |
//! | `GET` | `/metrics` | OpenMetrics text | read |
//! | `GET` | `/v1/status` | JSON [`view::StatusView`]: registries, replicas, state, since, counts, last probe, dependencies, override, mode; config generation, zones, version | read |
//! | `GET` | `/v1/explain?name=N&client=IP[&ecs=SUBNET]` | JSON: the routing decision for that query, with reasons | read |
//! | `GET` | `/v1/events` | JSON list of [`view::EventView`], oldest first (bounded) | read |
//! | `POST` | `/v1/reload` | reload config, zones and geo data; JSON [`view::Ack`] or the reason it failed | change |
//! | `PUT` | `/v1/overrides` | disable: body `{"registry","replica"}` or `{"region"}`, `"reason"`, optional `"for": "2h"` | change |
//! | `DELETE` | `/v1/overrides` | enable again: same body (no `for`) | change |
//! | `PUT` | `/v1/mode` | body `{"mode": "deep"\|"shallow"\|"shadow"\|"off", "registry"?}` | change |
//!
//! Errors are JSON `{"error": "reason"}` with 400 (malformed), 401 (no or wrong token), 403
//! (address not allowed), 404 (unknown registry, replica or region), 409 (conflict, e.g.
//! enabling what is not disabled), 500 (the change failed) or 503 (state task gone).
//!
//! # Access ([`access`])
//!
//! Reads: loopback, plus `[admin] allow_read_from`. Changes: a bearer token from
//! `[admin] token_file`, or, without one, loopback clients only. Every refusal is logged on
//! one line with the client, method and endpoint.
//!
//! # Seams ([`context`])
//!
//! The router takes an `Arc<dyn AdminContext>`. [`context::ChannelContext`] wires it to the
//! writer: explain reads the current snapshot; status pages and every change go to the single
//! writer as `state::command::Command`s with a oneshot reply, and its `AdminError`s map to
//! HTTP statuses here.
//!
//! # Wiring (who owns what)
//!
//! ```text
//!  app::spawn ─┬─ AccessPolicy::Live(shared): each request checks the [admin] of the config
//!              │     in service (token file read and checked when the config loads)
//!              ├─ Readiness::new() -> (readiness, latch): the zones are loaded before start;
//!              │     the writer drops the latch when HealthBook::first_round_done()
//!              ├─ Liveness::register("dns" | "state")  guard held by each task
//!              ├─ state::writer::spawn: the writer task (owns Overrides, HealthBook, the
//!              │     catalog index, modes; EventLog pushes, Shared::publish; answers each
//!              │     Command's oneshot, status pages included)
//!              └─ ChannelContext::new(commands, explain_fn, metrics, events)
//!                    └─ router(Admin { .. }) ──► serve(listener, router, shutdown)
//! ```

pub mod access;
mod args;
pub mod client;
pub mod context;
mod incidents;
mod page;
mod stream;
mod watch;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::access::AccessPolicy;
use self::context::{AdminContext, AdminError, ModeCommand, OverrideAction, OverrideCommand};
use crate::overrides::Target;
use crate::state::readiness::{Liveness, Readiness};
use crate::state::view::{ErrorBody, ExplainQuery, ModeRequest, OverrideReply, OverrideRequest};

/// Everything the router needs.
#[derive(Clone)]
pub struct Admin {
    /// The server behind the API.
    pub context: Arc<dyn AdminContext>,
    /// Who may do what.
    pub access: AccessPolicy,
    /// `/ready`.
    pub readiness: Readiness,
    /// `/live`.
    pub liveness: Liveness,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("access", &self.access)
            .field("ready", &self.readiness.is_ready())
            .finish_non_exhaustive()
    }
}

/// Who is making a change (`token:NAME` or the client address), set by the access guard.
#[derive(Clone, Debug)]
struct Caller(String);

/// The admin router. Serve it with [`serve`] (it needs `ConnectInfo<SocketAddr>`).
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/explain", get(explain))
        .route("/v1/events", get(events))
        .route("/v1/events/stream", get(stream::events_stream))
        .route("/v1/incidents", get(incidents))
        .route("/v1/traffic", get(traffic))
        .route("/v1/incidents/{id}/registries", get(incident_registries))
        .route("/v1/reload", post(reload))
        .route("/v1/overrides", put(disable).delete(enable))
        .route("/v1/mode", put(mode))
        .route(
            "/v1/registries/{key}",
            put(put_registry).delete(delete_registry),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(admin.clone(), guard))
        .with_state(admin)
}

/// Serve `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        info!("listening admin={addr}");
    }
    let router = router.layer(axum::Extension(stream::StreamShutdown(shutdown.clone())));
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

//------------ access guard ------------------------------------------------------------------

async fn guard(State(admin): State<Admin>, mut req: Request, next: Next) -> Response {
    let peer: Option<IpAddr> = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let Some(peer) = peer else {
        warn!(%method, endpoint = %path, "admin request refused: no client address");
        return error(StatusCode::FORBIDDEN, "no client address");
    };
    let verdict = if method == Method::GET || method == Method::HEAD {
        if path == "/live" || path == "/ready" {
            Ok(())
        } else {
            admin.access.current().may_read(peer)
        }
    } else {
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        admin.access.current().may_write(peer, auth).map(|who| {
            req.extensions_mut().insert(Caller(who));
        })
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            warn!(client = %peer, %method, endpoint = %path, status = refusal.status,
                "admin request refused: {}", refusal.reason);
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN);
            let mut resp = error(status, refusal.reason);
            if refusal.status == 401 {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}

//------------ handlers ----------------------------------------------------------------------

async fn page() -> Response {
    let mut resp = Html(page::PAGE).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn live(State(admin): State<Admin>) -> Response {
    let dead = admin.liveness.dead();
    if dead.is_empty() {
        (StatusCode::OK, "live\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("dead: {}\n", dead.join(", ")),
        )
            .into_response()
    }
}

async fn ready(State(admin): State<Admin>) -> Response {
    if admin.readiness.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        admin.context.metrics(),
    )
        .into_response()
}

async fn status(
    State(admin): State<Admin>,
    params: Result<Query<crate::state::view::StatusQuery>, QueryRejection>,
) -> Response {
    let query = match params {
        Ok(Query(q)) => q,
        Err(e) => return admin_error(&AdminError::BadRequest(e.body_text())),
    };
    match admin.context.status(query).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => admin_error(&e),
    }
}

async fn traffic(
    State(admin): State<Admin>,
    params: Result<Query<crate::metrics::traffic::TrafficQuery>, QueryRejection>,
) -> Response {
    let query = match params {
        Ok(Query(q)) => q,
        Err(e) => return admin_error(&AdminError::BadRequest(e.body_text())),
    };
    match admin.context.traffic(&query) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => admin_error(&e),
    }
}

async fn incidents(
    State(admin): State<Admin>,
    params: Result<Query<crate::state::view::IncidentQuery>, QueryRejection>,
) -> Response {
    let query = match params {
        Ok(Query(q)) => q,
        Err(e) => return admin_error(&AdminError::BadRequest(e.body_text())),
    };
    match admin.context.incidents(query).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => admin_error(&e),
    }
}

async fn incident_registries(
    State(admin): State<Admin>,
    axum::extract::Path(id): axum::extract::Path<String>,
    params: Result<Query<crate::state::view::IncidentPage>, QueryRejection>,
) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return admin_error(&AdminError::BadRequest(format!(
            "incident id {id:?} is not a number"
        )));
    };
    let query = match params {
        Ok(Query(q)) => q,
        Err(e) => return admin_error(&AdminError::BadRequest(e.body_text())),
    };
    match admin.context.incident_registries(id, query).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => admin_error(&e),
    }
}

async fn put_registry(
    State(admin): State<Admin>,
    caller: Option<axum::Extension<Caller>>,
    axum::extract::Path(key): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let who = caller.map(|c| c.0.0).unwrap_or_default();
    let req: crate::state::view::RegistryRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return admin_error(&AdminError::BadRequest(format!("body: {e}"))),
    };
    match admin.context.put_registry(key, req, who).await {
        Ok(ack) => json(StatusCode::OK, &ack),
        Err(e) => admin_error(&e),
    }
}

async fn delete_registry(
    State(admin): State<Admin>,
    caller: Option<axum::Extension<Caller>>,
    axum::extract::Path(key): axum::extract::Path<String>,
) -> Response {
    let who = caller.map(|c| c.0.0).unwrap_or_default();
    match admin.context.delete_registry(key, who).await {
        Ok(ack) => json(StatusCode::OK, &ack),
        Err(e) => admin_error(&e),
    }
}

/// `GET /v1/events[?limit=N]`.
#[derive(Debug, Default, Deserialize)]
struct EventsParams {
    /// Only the newest N (oldest first still).
    limit: Option<usize>,
}

async fn events(
    State(admin): State<Admin>,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> Response {
    let limit = match params {
        Ok(Query(p)) => p.limit,
        Err(e) => return admin_error(&AdminError::BadRequest(e.body_text())),
    };
    let mut all = admin.context.events();
    if let Some(n) = limit {
        let skip = all.len().saturating_sub(n);
        all.drain(..skip);
    }
    json(StatusCode::OK, &all)
}

/// Raw `/v1/explain` parameters.
#[derive(Debug, Deserialize)]
struct ExplainParams {
    name: Option<String>,
    client: Option<String>,
    ecs: Option<String>,
    #[serde(rename = "type")]
    qtype: Option<String>,
}

async fn explain(
    State(admin): State<Admin>,
    params: Result<Query<ExplainParams>, QueryRejection>,
) -> Response {
    let q = match params {
        Ok(Query(p)) => parse_explain(p),
        Err(e) => Err(AdminError::BadRequest(e.body_text())),
    };
    match q.and_then(|q| admin.context.explain(&q)) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => admin_error(&e),
    }
}

fn parse_explain(p: ExplainParams) -> Result<ExplainQuery, AdminError> {
    let bad = AdminError::BadRequest;
    let name = p
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("name= is required".into()))?;
    let client = p
        .client
        .ok_or_else(|| bad("client= is required (an IP address)".into()))?;
    let client: IpAddr = client
        .parse()
        .map_err(|_| bad(format!("client {client:?} is not an IP address")))?;
    let ecs = match p.ecs.filter(|e| !e.is_empty()) {
        None => None,
        Some(e) => Some(
            e.parse::<ipnet::IpNet>()
                .or_else(|_| e.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| bad(format!("ecs {e:?} is not a subnet such as 203.0.113.0/24")))?,
        ),
    };
    let qtype = match p.qtype.filter(|t| !t.is_empty()) {
        None => 1,
        Some(t) => {
            use std::str::FromStr;
            let rt = hickory_proto::rr::RecordType::from_str(&t.to_ascii_uppercase())
                .map_err(|_| bad(format!("type {t:?} is not a record type")))?;
            u16::from(rt)
        }
    };
    Ok(ExplainQuery {
        name,
        client,
        ecs,
        qtype,
    })
}

async fn reload(State(admin): State<Admin>, caller: Option<axum::Extension<Caller>>) -> Response {
    let who = caller.map(|c| c.0.0).unwrap_or_default();
    match admin.context.reload(who).await {
        Ok(ack) => json(StatusCode::OK, &ack),
        Err(e) => admin_error(&e),
    }
}

async fn disable(
    State(admin): State<Admin>,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Response {
    change_override(admin, caller, body, OverrideAction::Disable).await
}

async fn enable(
    State(admin): State<Admin>,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Response {
    change_override(admin, caller, body, OverrideAction::Enable).await
}

async fn change_override(
    admin: Admin,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
    action: OverrideAction,
) -> Response {
    let who = caller.map(|c| c.0.0).unwrap_or_default();
    let command = match parse_override(&body, action, who) {
        Ok(c) => c,
        Err(e) => return admin_error(&e),
    };
    match admin.context.set_override(command).await {
        Ok(event) => json(
            StatusCode::OK,
            &OverrideReply {
                action: event.action,
                event,
            },
        ),
        Err(e) => admin_error(&e),
    }
}

fn parse_override(
    body: &[u8],
    action: OverrideAction,
    who: String,
) -> Result<OverrideCommand, AdminError> {
    let bad = AdminError::BadRequest;
    let req: OverrideRequest =
        serde_json::from_slice(body).map_err(|e| bad(format!("body: {e}")))?;
    let OverrideRequest {
        registry,
        replica,
        region,
        reason,
        for_,
    } = req;
    let target = match (registry, replica, region) {
        (Some(registry), Some(replica), None) => Target::Replica {
            registry: registry.into(),
            replica: replica.into(),
        },
        (None, None, Some(region)) => Target::Region {
            region: region.into(),
        },
        _ => {
            return Err(bad(
                "give \"registry\" and \"replica\", or \"region\" alone".into(),
            ));
        }
    };
    let duration = match (for_, action) {
        (None, _) => None,
        (Some(_), OverrideAction::Enable) => {
            return Err(bad("\"for\" applies to disabling only".into()));
        }
        (Some(d), OverrideAction::Disable) => {
            let d =
                humantime::parse_duration(d.trim()).map_err(|e| bad(format!("for {d:?}: {e}")))?;
            if d.is_zero() {
                return Err(bad("\"for\" must be longer than 0s".into()));
            }
            Some(d)
        }
    };
    Ok(OverrideCommand {
        action,
        target,
        reason: reason.unwrap_or_default(),
        who,
        duration,
    })
}

async fn mode(
    State(admin): State<Admin>,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Response {
    let who = caller.map(|c| c.0.0).unwrap_or_default();
    let req: ModeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return admin_error(&AdminError::BadRequest(format!("body: {e}"))),
    };
    let command = ModeCommand {
        mode: req.mode,
        registry: req.registry,
        who,
    };
    match admin.context.set_mode(command).await {
        Ok(ack) => json(StatusCode::OK, &ack),
        Err(e) => admin_error(&e),
    }
}

async fn not_found(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("no endpoint {} {}", req.method(), req.uri().path()),
    )
}

//------------ replies -----------------------------------------------------------------------

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(status: StatusCode, reason: &str) -> Response {
    let body = serde_json::to_vec(&ErrorBody {
        error: reason.to_owned(),
    })
    .unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn admin_error(e: &AdminError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_bodies() {
        let c = parse_override(
            br#"{"registry":"contoso","replica":"westeurope","reason":"x","for":"2h"}"#,
            OverrideAction::Disable,
            "127.0.0.1".into(),
        )
        .expect("ok");
        assert_eq!(c.duration, Some(std::time::Duration::from_secs(7200)));
        let c = parse_override(
            br#"{"region":"eastus"}"#,
            OverrideAction::Enable,
            "a".into(),
        )
        .expect("ok");
        assert_eq!(
            c.target,
            Target::Region {
                region: "eastus".into()
            }
        );
        for (body, want) in [
            (&br#"{"registry":"c"}"#[..], "give \"registry\""),
            (
                br#"{"region":"r","registry":"c","replica":"w"}"#,
                "give \"registry\"",
            ),
            (br#"{"region":"r","for":"soon"}"#, "for \"soon\""),
            (br#"{"region":"r","for":"0s"}"#, "longer than 0s"),
            (br#"{"region":"r","bogus":1}"#, "unknown field `bogus`"),
            (b"not json", "body: "),
        ] {
            let e = parse_override(body, OverrideAction::Disable, "a".into()).expect_err("bad");
            assert!(e.to_string().contains(want), "{e} / {want}");
        }
        let e = parse_override(
            br#"{"region":"r","for":"1h"}"#,
            OverrideAction::Enable,
            "a".into(),
        )
        .expect_err("for on enable");
        assert!(e.to_string().contains("disabling only"));
    }

    #[test]
    fn explain_params() {
        let p = |name: Option<&str>, client: Option<&str>, ecs: Option<&str>| ExplainParams {
            name: name.map(Into::into),
            client: client.map(Into::into),
            ecs: ecs.map(Into::into),
            qtype: None,
        };
        let q =
            parse_explain(p(Some("a."), Some("192.0.2.1"), Some("203.0.113.0/24"))).expect("ok");
        assert_eq!(q.ecs, Some("203.0.113.0/24".parse().expect("net")));
        let q = parse_explain(p(Some("a."), Some("::1"), Some("2001:db8::1"))).expect("ok");
        assert_eq!(q.ecs.map(|n| n.prefix_len()), Some(128));
        assert!(parse_explain(p(None, Some("::1"), None)).is_err());
        assert!(parse_explain(p(Some("a."), Some("nope"), None)).is_err());
        assert!(parse_explain(p(Some("a."), None, None)).is_err());
        assert!(parse_explain(p(Some("a."), Some("::1"), Some("x/99"))).is_err());
        assert_eq!(q.qtype, 1, "A by default");
        let mut t = p(Some("a."), Some("::1"), None);
        t.qtype = Some("aaaa".into());
        assert_eq!(parse_explain(t).expect("ok").qtype, 28);
        let mut t = p(Some("a."), Some("::1"), None);
        t.qtype = Some("BOGUS".into());
        assert!(parse_explain(t).is_err());
    }
}
