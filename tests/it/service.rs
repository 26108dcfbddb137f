//! The built binary as systemd runs it (`Type=notify`, `WatchdogSec=`), without systemd: the
//! test binds the `NOTIFY_SOCKET` datagram socket itself and reads what the server sends.
//! READY=1 comes once the first probe round is done; WATCHDOG=1 keeps coming; SIGHUP gives
//! RELOADING=1 with MONOTONIC_USEC, then READY=1 with the outcome; SIGTERM gives STOPPING=1.
//! The config asks for JSON logs: every line on stderr is one JSON object.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use steerdns::demo_replica::{DemoReplica, lab_config};

use crate::e2e::Binary;
use crate::support::repo;

/// Datagrams received until `want` matches one (bounded); all of them, in order.
fn until(sock: &UnixDatagram, got: &mut Vec<String>, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    loop {
        assert!(Instant::now() < deadline, "never received; got {got:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            got.push(m.clone());
            if want(&m) {
                return m;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ready_watchdog_reload_stopping_and_json_logs() {
    let mut reps = Vec::new();
    for i in 1..=3 {
        let l = tokio::net::TcpListener::bind(format!("127.0.17.{i}:0"))
            .await
            .expect("bind");
        reps.push(DemoReplica::start(l).expect("replica"));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("steerdns.toml");
    std::fs::write(
        &config,
        lab_config(
            &repo(),
            "127.0.0.1:0",
            &reps,
            &["contoso"],
            "1s",
            "[log]\nformat = \"json\"\n[admin]\nstate_file = \"state.json\"\n\
             [health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\njitter = \"0s\"\n",
        ),
    )
    .expect("config");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let notify = path.to_str().expect("utf8").to_owned();
    let (b, got) = tokio::task::block_in_place(|| {
        let b = Binary::serve_env(
            &[],
            &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "200000")],
            &[
                "--config",
                config.to_str().expect("utf8"),
                "--listen",
                "127.0.2.40:0",
                "--admin-listen",
                "127.0.2.40:0",
            ],
        );
        let mut got = Vec::new();
        let ready = until(&sock, &mut got, |m| m.contains("READY=1"));
        assert!(ready.contains("STATUS=serving"), "{ready}");
        // The watchdog: pings every 100 ms (half of WATCHDOG_USEC) while everything lives.
        let before = got.len();
        for _ in 0..3 {
            until(&sock, &mut got, |m| m == "WATCHDOG=1\n");
        }
        assert!(got.len() >= before + 3);
        // SIGHUP: the reload protocol.
        let pid = b.pid().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .expect("kill")
                .success()
        );
        let r = until(&sock, &mut got, |m| m.contains("RELOADING=1"));
        assert!(r.contains("MONOTONIC_USEC="), "{r}");
        let done = until(&sock, &mut got, |m| m.contains("READY=1"));
        assert!(done.contains("STATUS=reloaded"), "{done}");
        (b, got)
    });
    // JSON logs: each line an object with a level, a message and a target. The reader thread
    // may be a line behind the notify socket: wait (bounded) for the reload's line.
    let reloaded = |l: &String| {
        l.contains("\"message\":\"configuration reloaded\"") && l.contains("\"who\":\"SIGHUP\"")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.log().iter().any(reloaded) {
        assert!(Instant::now() < deadline, "no reload line: {:?}", b.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = b.log();
    assert!(log.len() > 5, "{log:?}");
    for line in &log {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["message"].is_string() && v["target"].is_string(),
            "{line}"
        );
        assert_eq!(
            line.matches("\"target\":").count(),
            1,
            "one target key: {line}"
        );
    }
    let mut got = got;
    tokio::task::block_in_place(|| {
        let pid = b.pid().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill")
                .success()
        );
        until(&sock, &mut got, |m| m.contains("STOPPING=1"));
        assert_eq!(b.terminate(), Some(0));
    });
    for r in reps {
        r.shutdown().await;
    }
}
