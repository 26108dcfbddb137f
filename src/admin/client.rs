//! The CLI clients of the admin API: `steerdns status`, `events`, `replica disable|enable`,
//! `region disable|enable`, `mode`, `reload`. The binary adds [`AdminCommand`] to the clap
//! command tree (flattening [`AdminArgs`]), calls [`run`] and prints what it returns; an
//! `Err` is printed as `error: {e}` with a non-zero exit.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

pub use super::args::{AdminArgs, DEFAULT_ADMIN};
use crate::state::view::{
    Ack, ErrorBody, EventView, ModeName, ModeRequest, OverrideReply, OverrideRequest, ReplicaState,
    StatusView,
};

/// The admin subcommands.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Show registries and replicas with their state, one page at a time, and the summary.
    Status {
        /// Only this registry.
        #[arg(long)]
        registry: Option<String>,
        /// Only registries with a replica in this state (unknown, healthy, degraded,
        /// disabled).
        #[arg(long)]
        state: Option<ReplicaState>,
        /// Start after this registry key (the `more:` line of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Registries per page (default 100, at most 1000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show recent events (transitions, overrides, mode switches, reloads).
    Events,
    /// Follow the event stream (`/v1/events/stream`): one line per event as it happens;
    /// reconnects and resumes after the last event seen when the connection drops.
    Watch {
        /// Start after this event id (default: only new events).
        #[arg(long)]
        after: Option<u64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Show answers per client group and answered replica over the last hour (or since
    /// `--since`), with the last minutes; with REGISTRY, that registry's answers by replica.
    Traffic {
        /// A registry with series of its own (config file, or `[admin] metrics_registries`).
        registry: Option<String>,
        /// From this time: Unix seconds or RFC 3339.
        #[arg(long)]
        since: Option<String>,
    },
    /// Exit 0 when the server is ready (`GET /ready` = 200: zones loaded, first probe round
    /// done), 1 otherwise: for a container's HEALTHCHECK, where there is no curl.
    Healthcheck,
    /// Show open and recent incidents: what failed, how many registries it moved and where
    /// their clients go now; with an ID, page through that incident's registries.
    Incidents {
        /// An incident's number: list its registries.
        id: Option<u64>,
        /// Start after this registry key (the `more:` line of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Registries per page (default 100, at most 1000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Disable or enable one replica of one registry.
    Replica {
        /// disable | enable.
        #[command(subcommand)]
        action: ReplicaAction,
    },
    /// Disable or enable every replica in a region, across registries.
    Region {
        /// disable | enable.
        #[command(subcommand)]
        action: RegionAction,
    },
    /// Switch the health mode: deep, shallow, shadow or off.
    Mode {
        /// deep | shallow | shadow | off.
        mode: ModeName,
        /// Only this registry (default: server-wide).
        #[arg(long)]
        registry: Option<String>,
    },
    /// Reload config, zones and geo data.
    Reload,
}

/// `replica disable|enable REGISTRY REPLICA`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ReplicaAction {
    /// Stop answering with this replica.
    Disable {
        /// Registry key.
        registry: String,
        /// Replica key.
        replica: String,
        /// Why (shown in status and the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Lapse after this long (`30m`, `2h`).
        #[arg(long = "for")]
        for_: Option<String>,
    },
    /// Answer with this replica again.
    Enable {
        /// Registry key.
        registry: String,
        /// Replica key.
        replica: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `region disable|enable REGION`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum RegionAction {
    /// Stop answering with any replica in this region.
    Disable {
        /// Region name.
        region: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        /// Lapse after this long.
        #[arg(long = "for")]
        for_: Option<String>,
    },
    /// Answer with replicas in this region again.
    Enable {
        /// Region name.
        region: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// A client-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The token file could not be used.
    #[error("token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The admin API could not be reached.
    #[error("cannot reach the admin API at {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server refused or failed the request.
    #[error("{status}: {reason}")]
    Server {
        /// HTTP status.
        status: StatusCode,
        /// The server's reason.
        reason: String,
    },
    /// The server's reply could not be understood.
    #[error("unexpected reply from the admin API: {0}")]
    Reply(String),
    /// `--config` names a file that does not load.
    #[error("{0}")]
    Config(String),
}

/// Run one admin subcommand against `args.admin`; returns the text to print.
pub async fn run(args: &AdminArgs, command: &AdminCommand) -> Result<String, ClientError> {
    let (url, token_file) = args.endpoint()?;
    let client = Client::new(&url, token_file.as_deref())?;
    match command {
        AdminCommand::Status {
            registry,
            state,
            after,
            limit,
        } => {
            let mut url = reqwest::Url::parse("http://steerdns/v1/status")
                .map_err(|e| ClientError::Reply(e.to_string()))?;
            for (k, v) in [
                ("registry", registry.clone()),
                ("state", state.map(|s| s.as_str().to_owned())),
                ("after", after.clone()),
                ("limit", limit.map(|l| l.to_string())),
            ] {
                if let Some(v) = v {
                    url.query_pairs_mut().append_pair(k, &v);
                }
            }
            let path = match url.query() {
                Some(q) => format!("/v1/status?{q}"),
                None => "/v1/status".to_string(),
            };
            Ok(render_status(&client.get::<StatusView>(&path).await?))
        }
        AdminCommand::Watch { after, count } => {
            let mut out = std::io::stdout();
            super::watch::watch(&client, *after, *count, &mut out).await?;
            Ok(String::new())
        }
        AdminCommand::Healthcheck => client.ready().await,
        AdminCommand::Traffic { registry, since } => {
            let mut url = reqwest::Url::parse("http://steerdns/v1/traffic")
                .map_err(|e| ClientError::Reply(e.to_string()))?;
            for (k, v) in [("registry", registry), ("since", since)] {
                if let Some(v) = v {
                    url.query_pairs_mut().append_pair(k, v);
                }
            }
            let path = match url.query() {
                Some(q) => format!("/v1/traffic?{q}"),
                None => "/v1/traffic".to_string(),
            };
            Ok(super::incidents::render_traffic(&client.get(&path).await?))
        }
        AdminCommand::Incidents { id, after, limit } => {
            super::incidents::run(&client, *id, after.as_deref(), *limit).await
        }
        AdminCommand::Events => Ok(render_events(
            &client.get::<Vec<EventView>>("/v1/events").await?,
        )),
        AdminCommand::Reload => {
            let ack: Ack = client.send(Method::POST, "/v1/reload", None).await?;
            Ok(ack_text(&ack))
        }
        AdminCommand::Mode { mode, registry } => {
            let body = ModeRequest {
                mode: *mode,
                registry: registry.clone(),
            };
            let ack: Ack = client
                .send(Method::PUT, "/v1/mode", Some(to_json(&body)?))
                .await?;
            Ok(ack_text(&ack))
        }
        AdminCommand::Replica { action } => {
            let (method, body) = match action {
                ReplicaAction::Disable {
                    registry,
                    replica,
                    reason,
                    for_,
                } => (
                    Method::PUT,
                    OverrideRequest {
                        registry: Some(registry.clone()),
                        replica: Some(replica.clone()),
                        reason: reason.clone(),
                        for_: for_.clone(),
                        ..OverrideRequest::default()
                    },
                ),
                ReplicaAction::Enable {
                    registry,
                    replica,
                    reason,
                } => (
                    Method::DELETE,
                    OverrideRequest {
                        registry: Some(registry.clone()),
                        replica: Some(replica.clone()),
                        reason: reason.clone(),
                        ..OverrideRequest::default()
                    },
                ),
            };
            client.change_override(method, &body).await
        }
        AdminCommand::Region { action } => {
            let (method, body) = match action {
                RegionAction::Disable {
                    region,
                    reason,
                    for_,
                } => (
                    Method::PUT,
                    OverrideRequest {
                        region: Some(region.clone()),
                        reason: reason.clone(),
                        for_: for_.clone(),
                        ..OverrideRequest::default()
                    },
                ),
                RegionAction::Enable { region, reason } => (
                    Method::DELETE,
                    OverrideRequest {
                        region: Some(region.clone()),
                        reason: reason.clone(),
                        ..OverrideRequest::default()
                    },
                ),
            };
            client.change_override(method, &body).await
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(v).map_err(|e| ClientError::Reply(e.to_string()))
}

/// A small admin API client.
#[derive(Debug)]
pub(crate) struct Client {
    pub(super) base: String,
    pub(super) token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8053`), with the token from `token_file`.
    pub(crate) fn new(base: &str, token_file: Option<&Path>) -> Result<Self, ClientError> {
        let token = token_file.map(read_token).transpose()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Connect {
                url: base.to_owned(),
                source: e,
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// `GET path` and decode the JSON reply.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::GET, path, None).await
    }

    /// `GET /ready`: "ready" when 200, else [`ClientError::Server`].
    pub(crate) async fn ready(&self) -> Result<String, ClientError> {
        let url = format!("{}/ready", self.base);
        let r = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(|e| ClientError::Connect {
                url: url.clone(),
                source: e,
            })?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(text)
        } else {
            Err(ClientError::Server {
                status,
                reason: text.trim().to_owned(),
            })
        }
    }

    /// Send a request with an optional JSON body and decode the JSON reply; a non-2xx reply
    /// becomes [`ClientError::Server`] with the server's reason.
    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let resp = req.send().await.map_err(|e| ClientError::Connect {
            url: url.clone(),
            source: e,
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Connect {
            url: url.clone(),
            source: e,
        })?;
        if !status.is_success() {
            let reason = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_owned());
            return Err(ClientError::Server { status, reason });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Reply(format!("{path}: {e}")))
    }

    async fn change_override(
        &self,
        method: Method,
        body: &OverrideRequest,
    ) -> Result<String, ClientError> {
        let reply: OverrideReply = self
            .send(method, "/v1/overrides", Some(to_json(body)?))
            .await?;
        Ok(match &reply.event.fleet {
            Some(f) => format!("{} (fleet: {f})\n", reply.event),
            None => format!("{}\n", reply.event),
        })
    }
}

/// An acknowledgement, with the fleet's word when `[fleet]` is configured.
fn ack_text(ack: &Ack) -> String {
    match &ack.fleet {
        Some(f) => format!("{} (fleet: {f})\n", ack.message),
        None => format!("{}\n", ack.message),
    }
}

fn read_token(path: &Path) -> Result<String, ClientError> {
    let err = |reason: String| ClientError::TokenFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once(':').map_or(l, |(_, t)| t.trim()).to_owned())
        .ok_or_else(|| err("no token in the file".into()))
}

//------------ rendering ---------------------------------------------------------------------

/// The status as a readable table.
pub(crate) fn render_status(st: &StatusView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "steerdns {}  config generation {}  mode {}  {}",
        st.server.version,
        st.server.config_generation,
        st.mode,
        if st.server.ready {
            "ready"
        } else {
            "NOT READY"
        }
    );
    if st.guard_engaged {
        let _ = writeln!(out, "MASS-FAILURE GUARD ENGAGED: health state is held");
    }
    if let Some(f) = &st.fleet {
        let link = if f.connected {
            "connected: routing on the fleet's verdicts"
        } else {
            "NOT CONNECTED to etcd: routing on this instance's own verdicts"
        };
        let _ = writeln!(
            out,
            "fleet instance {}  {link}  live [{}]  quorum {} ({} of {})  not yet shared {}  lost {}",
            f.instance,
            f.live.join(", "),
            f.quorum,
            f.needed,
            f.live.len(),
            f.pending.len(),
            f.lost
        );
    }
    for reg in st.registries.iter().filter(|r| r.fail_open) {
        let _ = writeln!(
            out,
            "registry {} is FAILING OPEN (all replicas degraded)",
            reg.key
        );
    }
    let mut rows: Vec<[String; 9]> = vec![
        [
            "REGISTRY",
            "REPLICA",
            "REGION",
            "STATE",
            "SINCE",
            "OK/FAIL",
            "LAST PROBE",
            "LATENCY",
            "OVERRIDE / FAILING DEPENDENCIES",
        ]
        .map(String::from),
    ];
    for reg in &st.registries {
        for r in &reg.replicas {
            let mut note = String::new();
            if let Some(o) = &r.override_ {
                let _ = write!(note, "disabled ({}) by {}", o.scope, o.who);
                if !o.reason.is_empty() {
                    let _ = write!(note, ": {}", o.reason);
                }
                if let Some(u) = &o.until {
                    let _ = write!(note, " until {u}");
                }
            }
            let failing: Vec<&str> = r
                .dependencies
                .iter()
                .filter(|d| !d.ok)
                .map(|d| d.name.as_str())
                .collect();
            if !failing.is_empty() {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                let _ = write!(note, "failing: {}", failing.join(", "));
            }
            if let Some(fv) = r.fleet.as_ref().filter(|fv| fv.own != fv.fleet) {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                let _ = write!(note, "own view {}, fleet {}", fv.own, fv.fleet);
                if !fv.reported_by.is_empty() {
                    let _ = write!(note, " (reported by {})", fv.reported_by.join(", "));
                }
            }
            if let Some(sh) = r.shadow.as_ref().filter(|sh| sh.deep != sh.routed) {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                let verdict = if sh.deep_routable {
                    "keeps"
                } else {
                    "would drop"
                };
                let _ = write!(note, "shadow: deep {} ({verdict} it)", sh.deep);
                if let Some(why) = &sh.reason {
                    let _ = write!(note, ": {why}");
                }
            }
            let (last, latency) = match &r.last_probe {
                Some(p) if p.reason.is_empty() => {
                    (p.result.clone(), format!("{:.1}ms", p.latency_ms))
                }
                Some(p) => (p.reason.clone(), format!("{:.1}ms", p.latency_ms)),
                None => ("-".into(), "-".into()),
            };
            let state = if r.stale {
                format!("{} (stale)", r.state)
            } else {
                r.state.to_string()
            };
            rows.push([
                reg.key.clone(),
                r.key.clone(),
                r.region.clone(),
                state,
                r.since.clone().unwrap_or_else(|| "-".into()),
                format!("{}/{}", r.consecutive_successes, r.consecutive_failures),
                last,
                latency,
                note,
            ]);
        }
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let sm = &st.summary;
    if sm.registries > 0 {
        let states: Vec<String> = sm.states.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let _ = writeln!(
            out,
            "{} registries ({} failing open); replicas: {}",
            sm.registries,
            sm.fail_open,
            states.join(", ")
        );
    }
    if let Some(next) = &st.next {
        let _ = writeln!(out, "more: steerdns status --after {next}");
    }
    out
}

/// Events, one per line, oldest first.
pub(crate) fn render_events(events: &[EventView]) -> String {
    let mut out = String::new();
    for e in events {
        let kind = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(out, "{}  {kind:<10}  {}", e.at, e.message);
    }
    if events.is_empty() {
        out.push_str("no events\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::view::{OverrideView, RegistryStatus, ReplicaState, ReplicaStatus};

    #[test]
    fn status_table_lines_up() {
        let st = StatusView {
            mode: "deep".into(),
            registries: vec![RegistryStatus {
                key: "contoso".into(),
                replicas: vec![
                    ReplicaStatus {
                        key: "westeurope".into(),
                        region: "westeurope".into(),
                        state: ReplicaState::Disabled,
                        override_: Some(OverrideView {
                            scope: "replica".into(),
                            who: "token:ops".into(),
                            reason: "storage".into(),
                            ..OverrideView::default()
                        }),
                        ..ReplicaStatus::default()
                    },
                    ReplicaStatus {
                        key: "east".into(),
                        region: "eastus".into(),
                        state: ReplicaState::Healthy,
                        ..ReplicaStatus::default()
                    },
                ],
                ..RegistryStatus::default()
            }],
            ..StatusView::default()
        };
        let t = render_status(&st);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].starts_with("REGISTRY  REPLICA     REGION      STATE"),
            "{t}"
        );
        assert!(
            lines[2].contains("disabled (replica) by token:ops: storage"),
            "{t}"
        );
        assert_eq!(lines[1].find("STATE"), lines[3].find("healthy"), "{t}");

        // With [fleet]: the link on its own line, own vs fleet on the replica.
        let mut st = st;
        st.fleet = Some(crate::state::view::FleetStatus {
            instance: "a".into(),
            connected: true,
            live: vec!["a".into(), "b".into(), "c".into()],
            quorum: "majority".into(),
            needed: 2,
            ..Default::default()
        });
        st.registries[0].replicas[1].fleet = Some(crate::state::view::FleetReplicaView {
            own: ReplicaState::Degraded,
            fleet: ReplicaState::Healthy,
            reported_by: vec!["a".into()],
        });
        let t = render_status(&st);
        assert!(
            t.contains("fleet instance a  connected: routing on the fleet's verdicts  live [a, b, c]  quorum majority (2 of 3)"),
            "{t}"
        );
        assert!(
            t.contains("own view degraded, fleet healthy (reported by a)"),
            "{t}"
        );
        assert_eq!(
            ack_text(&Ack {
                message: "mode off for every registry".into(),
                generation: None,
                fleet: Some("local, not yet shared".into()),
            }),
            "mode off for every registry (fleet: local, not yet shared)\n"
        );
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: AdminCommand,
    }

    #[test]
    fn clap_tree_parses() {
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "steerdns",
            "replica",
            "disable",
            "contoso",
            "westeurope",
            "--reason",
            "storage",
            "--for",
            "2h",
            "--admin",
            "http://127.0.0.1:9",
            "--token-file",
            "/t",
        ])
        .expect("parse");
        assert_eq!(cli.admin.admin.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(cli.admin.token_file.as_deref(), Some(Path::new("/t")));
        match cli.command {
            AdminCommand::Replica {
                action:
                    ReplicaAction::Disable {
                        registry,
                        replica,
                        reason,
                        for_,
                    },
            } => {
                assert_eq!(
                    (registry.as_str(), replica.as_str()),
                    ("contoso", "westeurope")
                );
                assert_eq!(
                    (reason.as_deref(), for_.as_deref()),
                    (Some("storage"), Some("2h"))
                );
            }
            other => panic!("{other:?}"),
        }
        let cli =
            Cli::try_parse_from(["steerdns", "mode", "shadow", "--registry", "c"]).expect("mode");
        assert!(matches!(
            cli.command,
            AdminCommand::Mode {
                mode: ModeName::Shadow,
                ..
            }
        ));
        assert_eq!(cli.admin.admin, None);
        let (url, token) = cli.admin.endpoint().expect("no config to read");
        assert_eq!((url.as_str(), token), (DEFAULT_ADMIN, None));
        assert!(Cli::try_parse_from(["steerdns", "mode", "deeper"]).is_err());
        let cli = Cli::try_parse_from(["steerdns", "region", "enable", "eastus"]).expect("region");
        assert!(matches!(
            cli.command,
            AdminCommand::Region {
                action: RegionAction::Enable { .. }
            }
        ));
    }

    #[test]
    fn token_file_first_token() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("t");
        std::fs::write(&p, "# c\nops: abcdefabcdefabcdef\nother\n").expect("w");
        assert_eq!(read_token(&p).expect("t"), "abcdefabcdefabcdef");
        std::fs::write(&p, "# only comments\n").expect("w");
        assert!(read_token(&p).is_err());
    }
}
