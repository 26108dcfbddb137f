//! The status page in a real browser: headless Chromium loads `GET /` from the admin router
//! (served over HTTP on 127.0.7.20), runs the page's script against `/v1/status` and
//! `/v1/events`, and we assert the rendered DOM (`--dump-dom`) and save a screenshot under
//! `tests/artifacts/`.
//!
//! Needs `/usr/bin/chromium` (Debian package `chromium`). Without it the test says so on
//! stderr and passes, unless `STEERDNS_REQUIRE_BROWSER=1`, when it fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use steerdns::admin::access::{Access, AccessPolicy};
use steerdns::admin::context::{AdminContext, AdminError, ModeCommand, OverrideCommand, Reply};
use steerdns::admin::{self, Admin};
use steerdns::overrides::AuditEvent;
use steerdns::state::readiness::{Liveness, Readiness};
use steerdns::state::view::{
    Ack, DependencyView, EventKind, EventView, ExplainQuery, OverrideView, ProbeView,
    RegistryRequest, RegistryStatus, ReplicaState, ReplicaStatus, ServerFacts, ShadowView,
    StatusQuery, StatusView, ZoneFact,
};
use tokio_util::sync::CancellationToken;

const CHROMIUM: &str = "/usr/bin/chromium";

/// A read-only context with one of everything the page shows.
struct Showcase;

fn replica(key: &str, region: &str, state: &str) -> ReplicaStatus {
    ReplicaStatus {
        key: key.into(),
        region: region.into(),
        state: state.parse().expect("a state"),
        routable: state != "disabled" && state != "degraded",
        since: Some("2026-11-27T06:00:00Z".into()),
        consecutive_successes: 5,
        last_probe: Some(ProbeView {
            at: "2026-11-27T06:59:58Z".into(),
            latency_ms: 12.5,
            result: "ok".into(),
            reason: String::new(),
        }),
        ..ReplicaStatus::default()
    }
}

impl Showcase {
    fn view(&self) -> StatusView {
        let mut degraded = replica("westeurope", "westeurope", "degraded");
        degraded.consecutive_successes = 0;
        degraded.consecutive_failures = 4;
        degraded.last_probe = Some(ProbeView {
            at: "2026-11-27T06:59:58Z".into(),
            latency_ms: 48.0,
            result: "dependencies".into(),
            reason: "failing dependencies: storage".into(),
        });
        degraded.dependencies = vec![
            DependencyView {
                name: "storage".into(),
                status: "unhealthy".into(),
                ok: false,
            },
            DependencyView {
                name: "cache".into(),
                status: "healthy".into(),
                ok: true,
            },
        ];
        let mut disabled = replica("eastus", "eastus", "disabled");
        disabled.override_ = Some(OverrideView {
            scope: "region".into(),
            who: "token:ops".into(),
            reason: "network maintenance".into(),
            created_at: "2026-11-27T06:30:00Z".into(),
            until: Some("2026-11-27T08:30:00Z".into()),
        });
        let mut unknown = replica("southeastasia", "southeastasia", "unknown");
        unknown.last_probe = None;
        unknown.since = None;
        StatusView {
            server: ServerFacts {
                version: "0.1.0".into(),
                config_generation: 3,
                config_path: "/etc/steerdns/steerdns.toml".into(),
                started_at: "2026-11-27T06:00:00Z".into(),
                ready: true,
                zones: vec![ZoneFact {
                    origin: "registry.example.".into(),
                    serial: 2026112701,
                    file: "zones/registry.example.zone".into(),
                }],
            },
            mode: "deep".into(),
            guard_engaged: false,
            registries: vec![
                RegistryStatus {
                    key: "contoso".into(),
                    name: "contoso.registry.example.".into(),
                    mode: "deep".into(),
                    fail_open: false,
                    replicas: vec![
                        degraded,
                        disabled,
                        replica("southcentralus", "southcentralus", "healthy"),
                        unknown,
                    ],
                },
                RegistryStatus {
                    key: "fabrikam".into(),
                    name: "fabrikam.registry.example.".into(),
                    mode: "shadow".into(),
                    fail_open: true,
                    replicas: vec![
                        replica("westeurope", "westeurope", "degraded"),
                        ReplicaStatus {
                            shadow: Some(ShadowView {
                                routed: ReplicaState::Healthy,
                                deep: ReplicaState::Degraded,
                                deep_routable: false,
                                reason: Some("dependencies failing: storage".into()),
                            }),
                            ..replica("eastus", "eastus", "healthy")
                        },
                    ],
                },
            ],
            ..StatusView::default()
        }
    }
}

impl AdminContext for Showcase {
    fn status(&self, _: StatusQuery) -> Reply<StatusView> {
        let v = self.view();
        Box::pin(async move { Ok(v) })
    }

    fn put_registry(&self, _: String, _: RegistryRequest, _: String) -> Reply<Ack> {
        Box::pin(async { Err(AdminError::Conflict("read-only showcase".into())) })
    }

    fn delete_registry(&self, _: String, _: String) -> Reply<Ack> {
        Box::pin(async { Err(AdminError::Conflict("read-only showcase".into())) })
    }

    fn metrics(&self) -> String {
        "# EOF\n".into()
    }

    fn explain(&self, _: &ExplainQuery) -> Result<serde_json::Value, AdminError> {
        Err(AdminError::NotFound("no explain here".into()))
    }

    fn events(&self) -> Vec<EventView> {
        vec![
            EventView {
                id: 1,
                incident: None,
                at: "2026-11-27T06:30:00Z".into(),
                kind: EventKind::Override,
                registry: None,
                replica: Some("eastus".into()),
                message: "disabled region eastus by token:ops: network maintenance".into(),
            },
            EventView {
                id: 2,
                incident: None,
                at: "2026-11-27T06:59:40Z".into(),
                kind: EventKind::Transition,
                registry: Some("contoso".into()),
                replica: Some("westeurope".into()),
                message: "contoso/westeurope healthy -> degraded: <script>alert(1)</script>".into(),
            },
        ]
    }

    fn reload(&self, _: String) -> Reply<Ack> {
        Box::pin(async { Err(AdminError::Unavailable("read-only".into())) })
    }

    fn set_override(&self, _: OverrideCommand) -> Reply<AuditEvent> {
        Box::pin(async { Err(AdminError::Unavailable("read-only".into())) })
    }

    fn set_mode(&self, _: ModeCommand) -> Reply<Ack> {
        Box::pin(async { Err(AdminError::Unavailable("read-only".into())) })
    }
}

async fn start() -> (SocketAddr, CancellationToken) {
    let router = admin::router(Admin {
        context: Arc::new(Showcase),
        access: AccessPolicy::Fixed(Arc::new(Access::default())),
        readiness: Readiness::new().0,
        liveness: Liveness::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.7.20:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(admin::serve(listener, router, shutdown.clone()));
    (addr, shutdown)
}

async fn chromium(profile: &Path, extra: &[&str], url: &str) -> String {
    let mut args = vec![
        "--headless".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-background-networking".into(),
        "--no-first-run".into(),
        "--no-proxy-server".into(),
        format!("--user-data-dir={}", profile.display()),
        "--window-size=1200,800".into(),
        // Let the page's fetches finish before dumping or shooting (virtual time, no sleeps).
        "--virtual-time-budget=3000".into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.push(url.to_owned());
    let out = tokio::process::Command::new(CHROMIUM)
        .args(&args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_chromium() {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("STEERDNS_REQUIRE_BROWSER").is_none(),
            "{CHROMIUM} is missing (apt-get install chromium)"
        );
        eprintln!("SKIPPED: {CHROMIUM} is missing (apt-get install chromium)");
        return;
    }
    let (addr, shutdown) = start().await;
    let url = format!("http://{addr}/");
    let profile = tempfile::tempdir().expect("profile");

    let dom = chromium(profile.path(), &["--dump-dom"], &url).await;
    // The table was built by the script from /v1/status.
    for want in [
        "<span class=\"state degraded\">degraded</span>",
        "<span class=\"state disabled\">disabled</span>",
        "<span class=\"state healthy\">healthy</span>",
        "<span class=\"state unknown\">unknown</span>",
        "storage (unhealthy)",
        "region disabled by token:ops: network maintenance",
        "until 2026-11-27T08:30:00Z",
        "failing dependencies: storage",
        "48.0 ms",
        "Registry fabrikam is failing open",
        "shadow: deep degraded (would drop it): dependencies failing: storage",
        "config generation 3",
        "registry.example.",
        "2026112701",
    ] {
        assert!(dom.contains(want), "rendered page lacks {want:?}:\n{dom}");
    }
    // Events newest first, and text is escaped, never interpreted.
    let t = dom
        .find("healthy -&gt; degraded")
        .expect("transition event");
    let o = dom
        .find("disabled region eastus by token:ops")
        .expect("override event");
    assert!(t < o, "newest event first");
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("\">Cannot reach the admin API"), "{dom}");

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("admin-status-page.png");
    let _ = std::fs::remove_file(&shot);
    let flag = format!("--screenshot={}", shot.display());
    chromium(profile.path(), &[&flag], &url).await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    shutdown.cancel();
}
