//! The Debian package as installed: `packaging/build-deb.sh` packages the test build of the
//! binary, lintian finds no error, `dpkg -i` installs it on this machine, and the installed
//! binary runs as the unit runs it — user `steerdns`, only `CAP_NET_BIND_SERVICE` (ambient,
//! and the whole bounding set), no new privileges — with a `NOTIFY_SOCKET` the test reads:
//! READY=1, watchdog pings, `dig @127.0.0.1 -p 53` answered, SIGHUP reloads. As that user it
//! can write its state directory and nothing under /etc/steerdns. The unit passes
//! `systemd-analyze verify` and scores at most 2.0 in `systemd-analyze security`. A second
//! `dpkg -i` (an upgrade) keeps the edited config and the state; `dpkg --purge` removes both.
//!
//! Runs only as root with dpkg, setpriv, lintian and systemd-analyze, and only when no
//! steerdns package is installed already (it would not touch an operator's); otherwise it
//! says why and passes, unless `STEERDNS_REQUIRE_PACKAGE=1`, when it fails.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use steerdns::demo_replica::{DemoReplica, lab_config};

use crate::support::{dig, is_root, must_cmd, repo, run_cmd};

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    run_cmd(cmd, args)
}

fn must(cmd: &str, args: &[&str]) -> String {
    must_cmd(cmd, args)
}

/// Why this machine cannot run the test, if it cannot.
fn unable() -> Option<String> {
    let root = is_root();
    if !root {
        return Some("not root".into());
    }
    for tool in [
        "/usr/bin/dpkg",
        "/usr/bin/setpriv",
        "/usr/bin/lintian",
        "/usr/bin/systemd-analyze",
    ] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} is missing"));
        }
    }
    let (installed, _) = run("dpkg-query", &["-W", "-f=${Status}", "steerdns"]);
    if installed
        && run("dpkg-query", &["-W", "-f=${Status}", "steerdns"])
            .1
            .contains("installed")
    {
        return Some("a steerdns package is installed already; not touching it".into());
    }
    None
}

/// The installed binary as the unit starts it.
fn as_unit(args: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=steerdns",
        "--regid=steerdns",
        "--init-groups",
        "--inh-caps=-all,+net_bind_service",
        "--ambient-caps=-all,+net_bind_service",
        "--bounding-set=-all,+net_bind_service",
        "--no-new-privs",
        "--",
    ])
    .args(args);
    c
}

fn recv_until(sock: &UnixDatagram, want: &str, got: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    loop {
        assert!(Instant::now() < deadline, "no {want:?}; got {got:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            got.push(m.clone());
            if m.contains(want) {
                return m;
            }
        }
    }
}

struct Purge;

impl Drop for Purge {
    /// Whatever happens, the package leaves the machine.
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "steerdns"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_installs_runs_as_its_unit_upgrades_and_purges() {
    if let Some(why) = unable() {
        assert!(
            std::env::var_os("STEERDNS_REQUIRE_PACKAGE").is_none(),
            "the package test cannot run: {why}"
        );
        eprintln!("SKIPPED: the package test: {why}");
        return;
    }
    let mut reps = Vec::new();
    for i in 1..=3 {
        let l = tokio::net::TcpListener::bind(format!("127.0.18.{i}:0"))
            .await
            .expect("bind");
        reps.push(DemoReplica::start(l).expect("replica"));
    }
    let out = tempfile::tempdir().expect("tmp");
    tokio::task::block_in_place(|| {
        let deb = must(
            "bash",
            &[
                repo()
                    .join("packaging/build-deb.sh")
                    .to_str()
                    .expect("utf8"),
                "--binary",
                env!("CARGO_BIN_EXE_steerdns"),
                "--out",
                out.path().to_str().expect("utf8"),
            ],
        );
        let deb = deb.lines().last().expect("the .deb path").trim().to_owned();
        let lint = run("lintian", &["--tag-display-limit", "0", "-E", &deb]).1;
        let errors: Vec<&str> = lint.lines().filter(|l| l.starts_with("E:")).collect();
        assert!(errors.is_empty(), "lintian errors:\n{lint}");

        let _purge = Purge;
        must("dpkg", &["-i", &deb]);
        let passwd = must("getent", &["passwd", "steerdns"]);
        assert!(passwd.contains("/var/lib/steerdns"), "{passwd}");
        let owner = must("stat", &["-c", "%U %a", "/var/lib/steerdns"]);
        assert_eq!(owner.trim(), "steerdns 750");
        for f in [
            "/usr/sbin/steerdns",
            "/etc/steerdns/steerdns.toml",
            "/etc/steerdns/zones/registry.example.zone",
            "/usr/lib/systemd/system/steerdns.service",
            "/usr/share/man/man8/steerdns.8.gz",
        ] {
            assert!(Path::new(f).exists(), "{f} not installed");
        }
        let conffiles = must("dpkg-query", &["-W", "-f=${Conffiles}", "steerdns"]);
        assert!(
            conffiles.contains("/etc/steerdns/steerdns.toml"),
            "{conffiles}"
        );
        // The packaged example config is valid as shipped.
        must(
            "/usr/sbin/steerdns",
            &["--config", "/etc/steerdns/steerdns.toml", "check-config"],
        );

        // The unit: verified, and its exposure scored.
        let (ok, text) = run(
            "systemd-analyze",
            &["verify", "/usr/lib/systemd/system/steerdns.service"],
        );
        assert!(
            ok && !text.contains("Unknown key") && !text.contains("Unknown section"),
            "systemd-analyze verify:\n{text}"
        );
        let (ok, text) = run(
            "systemd-analyze",
            &[
                "security",
                "--offline=yes",
                "--threshold=20",
                "/usr/lib/systemd/system/steerdns.service",
            ],
        );
        assert!(ok, "systemd-analyze security above 2.0:\n{text}");

        // The operator's config: port 53 on 127.0.0.1, the demo replicas.
        let config = lab_config(
            Path::new("/nonexistent"),
            "127.0.0.1:53",
            &reps,
            &["contoso"],
            "5s",
            "[admin]\nlisten = \"127.0.0.1:18053\"\n\
             [health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\njitter = \"0s\"\n",
        )
        .replace(
            "zones_dir = \"/nonexistent/zones\"",
            "zones_dir = \"/etc/steerdns/zones\"",
        )
        .replace(
            "geo_dir = \"/nonexistent/geo\"",
            &format!("geo_dir = {:?}", repo().join("geo")),
        );
        std::fs::write("/etc/steerdns/steerdns.toml", &config).expect("write config");
        let check = as_unit(&[
            "/usr/sbin/steerdns",
            "--config",
            "/etc/steerdns/steerdns.toml",
            "check-config",
        ])
        .output()
        .expect("check-config");
        assert!(
            check.status.success(),
            "ExecStartPre as the unit's user: {}",
            String::from_utf8_lossy(&check.stderr)
        );

        // NOTIFY_SOCKET where the service user may send to it.
        let sockdir = tempfile::tempdir().expect("tmp");
        must("chmod", &["0777", sockdir.path().to_str().expect("utf8")]);
        let path = sockdir.path().join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind");
        must("chmod", &["0777", path.to_str().expect("utf8")]);
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let server = Server(
            as_unit(&[
                "/usr/sbin/steerdns",
                "--config",
                "/etc/steerdns/steerdns.toml",
                "serve",
            ])
            .env("NOTIFY_SOCKET", &path)
            // What StateDirectory= sets: the state files the config does not name go there.
            .env("STATE_DIRECTORY", "/var/lib/steerdns")
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the installed binary"),
        );
        let mut got = Vec::new();
        let ready = recv_until(&sock, "READY=1", &mut got);
        assert!(ready.contains("STATUS=serving"), "{ready}");
        recv_until(&sock, "WATCHDOG=1", &mut got);
        recv_until(&sock, "WATCHDOG=1", &mut got);
        let status = must("cat", &[&format!("/proc/{}/status", server.0.id())]);
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        // CAP_NET_BIND_SERVICE is bit 10: 0x400, and nothing else, anywhere.
        assert_eq!(field("CapEff:"), "0000000000000400", "{status}");
        assert_eq!(field("CapBnd:"), "0000000000000400", "{status}");
        assert_eq!(field("NoNewPrivs:"), "1");
        let uid = must("id", &["-u", "steerdns"]);
        assert!(field("Uid:").starts_with(uid.trim()), "{status}");

        let answer = dig(
            "127.0.0.1:53".parse().expect("addr"),
            &["+short", "contoso.registry.example.", "A"],
        );
        assert_eq!(answer.trim(), "192.0.2.10", "dig @127.0.0.1 -p 53");

        // An acknowledged override is in the state directory (the config names no file).
        let put = tokio::runtime::Handle::current().block_on(async {
            reqwest::Client::new()
                .put("http://127.0.0.1:18053/v1/overrides")
                .header("content-type", "application/json")
                .body(r#"{"region":"eastus","reason":"package test"}"#)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        assert_eq!(put.ok(), Some(200), "override through the admin API");
        let state = must(
            "stat",
            &["-c", "%U", "/var/lib/steerdns/steerdns-state.json"],
        );
        assert_eq!(state.trim(), "steerdns");

        must("kill", &["-HUP", &server.0.id().to_string()]);
        recv_until(&sock, "RELOADING=1", &mut got);
        let done = recv_until(&sock, "READY=1", &mut got);
        assert!(done.contains("STATUS=reloaded"), "{done}");

        // As that user: the state directory is writable, the config is not.
        let touch = |p: &str| as_unit(&["touch", p]).status().expect("touch").success();
        assert!(touch("/var/lib/steerdns/keep-me"));
        assert!(
            !touch("/etc/steerdns/not-mine"),
            "the service could write /etc/steerdns"
        );
        assert!(!touch("/usr/sbin/not-mine"));

        must("kill", &["-TERM", &server.0.id().to_string()]);
        recv_until(&sock, "STOPPING=1", &mut got);
        drop(server);

        // An upgrade (the same package again) keeps the edited config and the state.
        must("dpkg", &["-i", "--force-confold", &deb]);
        let kept = std::fs::read_to_string("/etc/steerdns/steerdns.toml").expect("config");
        assert_eq!(kept, config, "the operator's config survives an upgrade");
        assert!(
            Path::new("/var/lib/steerdns/keep-me").exists(),
            "state survives"
        );

        must("dpkg", &["--purge", "steerdns"]);
        for gone in ["/var/lib/steerdns", "/etc/steerdns", "/usr/sbin/steerdns"] {
            assert!(!Path::new(gone).exists(), "{gone} left after purge");
        }
    });
    for r in reps {
        r.shutdown().await;
    }
}
