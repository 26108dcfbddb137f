//! Crash safety of the override state file: a child process (this test binary, re-run with an
//! environment variable) disables replicas one after another and prints `ack N` after each
//! acknowledged write; the parent `kill -9`s it mid-stream and checks that the file still
//! loads and holds every acknowledged override.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use steerdns::overrides::{Overrides, Target};

const CHILD_ENV: &str = "STEERDNS_TEST_OVERRIDES_CHILD";

/// The child side: runs only when the parent set [`CHILD_ENV`]; otherwise passes at once.
#[test]
fn child_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let path = PathBuf::from(path);
    let mut o = Overrides::load(&path, SystemTime::now()).expect("child load");
    for i in 0u64.. {
        o.disable(
            Target::Replica {
                registry: "contoso".into(),
                replica: format!("r{i}").into(),
            },
            // Some bulk so each write takes a while and a kill often lands inside one.
            &"x".repeat(2000),
            "child",
            None,
            SystemTime::now(),
        )
        .expect("child write");
        println!("ack {i}");
    }
}

fn run_and_kill(path: &Path, kill_after: u64) -> u64 {
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new(exe)
        .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut last = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(n) = line.strip_prefix("ack ") {
            let n: u64 = n.trim().parse().expect("ack number");
            last = Some(n);
            if n >= kill_after {
                // Child::kill sends SIGKILL on Unix: no destructors, no flushing.
                child.kill().expect("kill -9");
                break;
            }
        }
    }
    child.wait().expect("wait");
    last.expect("at least one ack")
}

#[test]
fn acknowledged_writes_survive_kill_9_and_the_file_is_never_torn() {
    for (round, kill_after) in [0u64, 3, 17, 40, 75].into_iter().enumerate() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("steerdns-state.json");
        let acked = run_and_kill(&path, kill_after);
        let o = Overrides::load(&path, SystemTime::now())
            .unwrap_or_else(|e| panic!("round {round}: state file torn after kill -9: {e}"));
        for i in 0..=acked {
            assert!(
                o.is_disabled("contoso", &format!("r{i}"), "any", SystemTime::now())
                    .is_some(),
                "round {round}: acknowledged override r{i} lost (acked up to {acked})"
            );
        }
        // At most one unacknowledged write may have landed (the one in flight).
        let n = o.active(SystemTime::now()).count() as u64;
        assert!(
            n == acked + 1 || n == acked + 2,
            "round {round}: {n} entries, acked {acked}"
        );
        // A leftover temp file does not disturb the next writer.
        let mut o = o;
        o.disable(
            Target::Region {
                region: "eastus".into(),
            },
            "after crash",
            "test",
            None,
            SystemTime::now(),
        )
        .expect("write after crash");
        Overrides::load(&path, SystemTime::now()).expect("reload after crash write");
    }
}
