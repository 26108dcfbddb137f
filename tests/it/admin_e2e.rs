//! Operating the running binary: every admin endpoint and CLI command, metrics after a
//! failover, overrides across `kill -9`, reload (POST, SIGHUP, rejected) under a steady query
//! load, and the status page in headless Chromium. Replicas are demo replicas on 127.0.13.x;
//! the binary serves DNS and admin on 127.0.2.x.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use steerdns::demo_replica::{DemoReplica, lab_config};

use crate::e2e::Binary;
use crate::support::{metric, repo};

const WEU: &str = "192.0.2.10";
const EUS: &str = "198.51.100.10";
const CLIENT_WEU: &str = "127.0.1.45";
const LIMIT: Duration = Duration::from_secs(15);

/// Three demo replicas and a config for them in a temporary directory.
struct Setup {
    dir: tempfile::TempDir,
    replicas: Vec<DemoReplica>,
}

impl Setup {
    async fn new(octet: u8) -> Self {
        let mut replicas = Vec::new();
        for i in 0..3u8 {
            let l = tokio::net::TcpListener::bind(format!("127.0.13.{}:0", octet + i))
                .await
                .expect("bind");
            replicas.push(DemoReplica::start(l).expect("replica"));
        }
        let s = Self {
            dir: tempfile::tempdir().expect("tmp"),
            replicas,
        };
        s.write_config("1s");
        s
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("steerdns.toml")
    }

    fn write_config(&self, ttl: &str) {
        let text = lab_config(
            &repo(),
            "127.0.0.1:0",
            &self.replicas,
            &["contoso"],
            ttl,
            "[admin]\nstate_file = \"state.json\"\n\
             [health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\njitter = \"0s\"\n",
        );
        std::fs::write(self.config(), text).expect("write config");
    }

    /// SIGTERM the binary (it must exit 0), then stop the replicas.
    async fn finish(self, b: Binary) {
        tokio::task::block_in_place(|| assert_eq!(b.terminate(), Some(0)));
        for r in self.replicas {
            r.shutdown().await;
        }
    }

    fn start(&self, octet: u8) -> Binary {
        Binary::serve(&[
            "--config",
            self.config().to_str().expect("utf8"),
            "--listen",
            &format!("127.0.2.{octet}:0"),
            "--admin-listen",
            &format!("127.0.2.{octet}:0"),
        ])
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Run the CLI against an admin address; (exit code, stdout, stderr).
fn cli(admin: SocketAddr, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(args)
        .args(["--admin", &format!("http://{admin}")])
        .output()
        .expect("run cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn answer(b: &Binary, client: &str) -> (String, u32) {
    let out = b.dig(&[
        "-b",
        client,
        "+noall",
        "+answer",
        "contoso.registry.example",
        "A",
    ]);
    let line = out
        .lines()
        .find(|l| l.contains("\tA\t") || l.contains(" A "))
        .unwrap_or_else(|| panic!("no answer: {out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    (cols[4].to_string(), cols[1].parse().expect("ttl"))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < LIMIT, "never: {what}");
        std::thread::sleep(Duration::from_millis(30));
    }
}

async fn get(url: String) -> (u16, String) {
    let r = http().get(url).send().await.expect("get");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_and_cli_command_against_the_binary() {
    let setup = Setup::new(1).await;
    let b = tokio::task::block_in_place(|| setup.start(11));
    let admin = tokio::task::block_in_place(|| b.admin_addr());
    let base = format!("http://{admin}");

    // /live at once; /ready after the first probe round.
    assert_eq!(get(format!("{base}/live")).await.0, 200);
    let start = Instant::now();
    while get(format!("{base}/ready")).await.0 != 200 {
        assert!(start.elapsed() < LIMIT, "ready");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::task::block_in_place(|| {
        assert_eq!(answer(&b, CLIENT_WEU).0, WEU);
        let (code, out, _) = cli(admin, &["status"]);
        assert_eq!(code, 0);
        assert!(
            out.contains("contoso") && out.contains("westeurope") && out.contains("healthy"),
            "{out}"
        );
    });

    // A deep-health failure: the answer moves; metrics, status and events say so.
    let m0 = get(format!("{base}/metrics")).await.1;
    setup.replicas[0].fail("storage", Some("contoso"));
    tokio::task::block_in_place(|| wait_for("failover", || answer(&b, CLIENT_WEU).0 == EUS));
    let m1 = get(format!("{base}/metrics")).await.1;
    assert!(
        metric(
            &m1,
            "steerdns_health_transitions_total",
            &["to=\"degraded\""]
        ) > metric(
            &m0,
            "steerdns_health_transitions_total",
            &["to=\"degraded\""]
        ),
        "transition counted:\n{m1}"
    );
    assert!(
        metric(&m1, "steerdns_answers_total", &["replica=\"eastus\""]) >= 1.0,
        "answers by replica:\n{m1}"
    );
    assert!(
        metric(
            &m1,
            "steerdns_dns_queries_total",
            &["rcode=\"NOERROR\"", "qtype=\"A\""]
        ) >= 2.0
    );
    assert!(
        metric(&m1, "steerdns_dns_decisions_total", &["latency_table"]) >= 2.0,
        "{m1}"
    );
    assert!(
        metric(&m1, "steerdns_probes_total", &["dependencies"]) >= 3.0,
        "{m1}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&get(format!("{base}/v1/status")).await.1).expect("json");
    let weu = status["registries"][0]["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .find(|r| r["key"] == "westeurope")
        .expect("weu")
        .clone();
    assert_eq!(weu["state"], "degraded", "{status}");
    assert!(
        weu["dependencies"]
            .as_array()
            .expect("deps")
            .iter()
            .any(|d| d["name"] == "storage" && d["ok"] == false)
    );

    // The status page in headless Chromium while the replica is degraded.
    status_page_in_chromium(&base).await;

    setup.replicas[0].recover(None, None);
    tokio::task::block_in_place(|| {
        wait_for("recovery", || answer(&b, CLIENT_WEU).0 == WEU);

        // Overrides: disable, see it in DNS, status and events; enable again.
        let (code, out, err) = cli(
            admin,
            &[
                "replica",
                "disable",
                "contoso",
                "westeurope",
                "--reason",
                "maintenance",
                "--for",
                "1h",
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(
            answer(&b, CLIENT_WEU).0,
            EUS,
            "disabled replica not answered"
        );
        let (_, out, _) = cli(admin, &["status"]);
        assert!(
            out.contains("disabled") && out.contains("maintenance"),
            "{out}"
        );
        let (code, _, err) = cli(admin, &["replica", "enable", "contoso", "nosuch"]);
        assert_ne!(code, 0);
        assert!(err.contains("404") || err.contains("no replica"), "{err}");
        let (code, _, _) = cli(admin, &["replica", "enable", "contoso", "westeurope"]);
        assert_eq!(code, 0);
        assert_eq!(answer(&b, CLIENT_WEU).0, WEU);
        let (code, _, _) = cli(
            admin,
            &[
                "region",
                "disable",
                "westeurope",
                "--reason",
                "region drill",
            ],
        );
        assert_eq!(code, 0);
        assert_eq!(answer(&b, CLIENT_WEU).0, EUS);
        let (code, _, _) = cli(admin, &["region", "enable", "westeurope"]);
        assert_eq!(code, 0);
        assert_eq!(answer(&b, CLIENT_WEU).0, WEU);

        // The kill switch: with health off a deep failure moves nothing.
        let (code, _, _) = cli(admin, &["mode", "off"]);
        assert_eq!(code, 0);
        setup.replicas[0].fail("storage", Some("contoso"));
        let h = setup.replicas[0].hits("contoso");
        wait_for("probes go on in mode off", || {
            setup.replicas[0].hits("contoso") >= h + 4
        });
        assert_eq!(
            answer(&b, CLIENT_WEU).0,
            WEU,
            "mode off routes on latency only"
        );
        let (code, _, _) = cli(admin, &["mode", "deep", "--registry", "contoso"]);
        assert_eq!(code, 0);
        // Both checks were probed all along: the switch acts at once, no re-probing.
        wait_for("deep again", || answer(&b, CLIENT_WEU).0 == EUS);
        setup.replicas[0].recover(None, None);
        wait_for("recovered", || answer(&b, CLIENT_WEU).0 == WEU);

        let (code, out, _) = cli(admin, &["events"]);
        assert_eq!(code, 0);
        for kind in ["transition", "override", "mode"] {
            assert!(out.contains(kind), "events lack {kind}: {out}");
        }
    });

    // Explain over the API agrees with DNS.
    let x: serde_json::Value = serde_json::from_str(
        &get(format!(
            "{base}/v1/explain?name=contoso.registry.example&client={CLIENT_WEU}"
        ))
        .await
        .1,
    )
    .expect("json");
    assert!(
        x["answer"][0].as_str().expect("answer").ends_with(WEU),
        "{x}"
    );
    assert_eq!(x["basis"], "latency_table");

    // Reload: accepted (CLI), rejected with file, line and reason (old config keeps serving),
    // and on SIGHUP.
    tokio::task::block_in_place(|| {
        let (code, out, _) = cli(admin, &["reload"]);
        assert_eq!((code, out.trim()), (0, "reloaded"));
        let good = std::fs::read_to_string(setup.config()).expect("read");
        std::fs::write(
            setup.config(),
            good.replace("[health]", "[health]\nintervall = \"1s\""),
        )
        .expect("write");
        let (code, _, err) = cli(admin, &["reload"]);
        assert_ne!(code, 0);
        assert!(
            err.contains("steerdns.toml:") && err.contains("intervall"),
            "{err}"
        );
        assert_eq!(
            answer(&b, CLIENT_WEU),
            (WEU.to_string(), 1),
            "the old config keeps serving"
        );
        setup.write_config("7s");
        Command::new("kill")
            .args(["-HUP", &b.pid().to_string()])
            .status()
            .expect("kill");
        wait_for("SIGHUP reload", || answer(&b, CLIENT_WEU).1 == 7);
    });
    let m2 = get(format!("{base}/metrics")).await.1;
    assert!(
        metric(&m2, "steerdns_config_reloads_total", &["result=\"failed\""]) >= 1.0,
        "{m2}"
    );
    assert!(
        metric(&m2, "steerdns_config_reloads_total", &["result=\"ok\""]) >= 2.0,
        "{m2}"
    );

    // The page itself is self-contained HTML.
    let (code, page) = get(format!("{base}/")).await;
    assert_eq!(code, 200);
    assert!(
        page.contains("<html") && !page.contains("src=\"http"),
        "self-contained"
    );
    setup.finish(b).await;
}

async fn status_page_in_chromium(base: &str) {
    let profile = tempfile::tempdir().expect("profile");
    let url = format!("{base}/");
    let Some(dom) = crate::support::chromium(profile.path(), "--dump-dom", &url).await else {
        return;
    };
    assert!(
        dom.contains("<span class=\"state degraded\">degraded</span>"),
        "degraded shown:\n{dom}"
    );
    assert!(dom.contains("storage"), "failing dependency shown:\n{dom}");
    let artifacts = repo().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts");
    let shot = artifacts.join("status-page-live.png");
    let flag = format!("--screenshot={}", shot.display());
    crate::support::chromium(profile.path(), &flag, &url)
        .await
        .expect("chromium");
    assert!(std::fs::read(&shot).expect("png").starts_with(b"\x89PNG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_survive_kill_9() {
    let setup = Setup::new(4).await;
    let b = tokio::task::block_in_place(|| {
        let b = setup.start(12);
        let admin = b.admin_addr();
        let (code, out, err) = cli(
            admin,
            &[
                "replica",
                "disable",
                "contoso",
                "westeurope",
                "--reason",
                "incident 42",
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        // Acknowledged: kill -9 at once, no chance to flush anything else.
        b.kill9();
        let b = setup.start(12);
        let admin = b.admin_addr();
        assert_eq!(
            answer(&b, CLIENT_WEU).0,
            EUS,
            "the override is in force after the restart"
        );
        let (_, out, _) = cli(admin, &["status"]);
        assert!(out.contains("incident 42"), "{out}");
        b
    });
    setup.finish(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_and_misanswers_nothing() {
    let setup = Setup::new(7).await;
    let b = tokio::task::block_in_place(|| setup.start(13));
    let admin = tokio::task::block_in_place(|| b.admin_addr());
    let dns = b.addr;
    // A bounded load: 4 clients x 600 queries, each must be answered with the right replica.
    let load: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let sock = tokio::net::UdpSocket::bind(
                    CLIENT_WEU
                        .parse::<IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 0))
                        .expect("ip"),
                )
                .await
                .expect("bind");
                let q = crate::support::query(
                    "contoso.registry.example.",
                    hickory_proto::rr::RecordType::A,
                    None,
                )
                .to_vec()
                .expect("enc");
                let mut buf = [0u8; 512];
                for i in 0..600u32 {
                    sock.send_to(&q, dns).await.expect("send");
                    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
                        .await
                        .unwrap_or_else(|_| panic!("query {i} unanswered during reloads"))
                        .expect("recv");
                    let m = hickory_proto::op::Message::from_vec(&buf[..n]).expect("decode");
                    let a = m
                        .answers
                        .first()
                        .map(|r| r.data.to_string())
                        .unwrap_or_default();
                    assert_eq!(a, WEU, "query {i} mis-answered");
                }
            })
        })
        .collect();
    for _ in 0..8 {
        let (code, out, err) = tokio::task::block_in_place(|| cli(admin, &["reload"]));
        assert_eq!(code, 0, "{out}{err}");
    }
    for l in load {
        l.await.expect("load task");
    }
    setup.finish(b).await;
}

/// Run the CLI with exactly `args`; (exit code, stdout, stderr).
fn cli_bare(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(args)
        .output()
        .expect("run cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_finds_the_admin_address_and_token_in_the_config_file() {
    use crate::support::{TestServer, demo_config};
    let token = "ops:0123456789abcdef0123";
    let config = demo_config("[admin]\ntoken_file = \"tokens\"\n");
    let s = TestServer::start_with_admin_files(&config, &[("tokens", token)]).await;
    let admin = s.handles.admin.expect("admin listener");
    // The file an operator would point the CLI at: the served config, with the listener
    // the server really bound (port 0 in the test).
    let path = s.dir().join("steerdns.toml");
    let with_listen = config.replace("[admin]\n", &format!("[admin]\nlisten = \"{admin}\"\n"));
    std::fs::write(&path, &with_listen).expect("write");
    let path = path.to_str().expect("utf8");

    // A change needs the token: `--config` supplies the address and the token file.
    let (code, out, err) = tokio::task::block_in_place(|| cli_bare(&["reload", "--config", path]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("reloaded"), "{out}");
    // Before the subcommand works too, and reads go to the same address.
    let (code, out, err) = tokio::task::block_in_place(|| cli_bare(&["--config", path, "status"]));
    assert_eq!(code, 0, "{out}{err}");
    // Without it the CLI has no token: 401, so the token really came from the file.
    let (code, _, err) = tokio::task::block_in_place(|| {
        cli_bare(&["reload", "--admin", &format!("http://{admin}")])
    });
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
    // `--admin` overrides the file's address.
    let (code, _, err) = tokio::task::block_in_place(|| {
        cli_bare(&["reload", "--config", path, "--admin", "http://127.0.7.11:1"])
    });
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot reach the admin API at http://127.0.7.11:1"),
        "{err}"
    );
    // A config that does not load is an error naming it.
    std::fs::write(
        s.dir().join("broken.toml"),
        "version = 1\n[admin]\nlisten = 7\n",
    )
    .expect("w");
    let broken = s.dir().join("broken.toml");
    let (code, _, err) = tokio::task::block_in_place(|| {
        cli_bare(&["status", "--config", broken.to_str().expect("utf8")])
    });
    assert_ne!(code, 0);
    assert!(err.contains("broken.toml"), "{err}");
    s.stop().await;
}
