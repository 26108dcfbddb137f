//! The container image: `packaging/container/Containerfile` built with podman around the
//! static binary tests/run.sh builds (`STEERDNS_STATIC_BIN`), run as its unprivileged user
//! with every capability dropped but NET_BIND_SERVICE, the config and the state as volumes,
//! on the host's network so that it can reach the demo replicas on 127.0.19.x: `dig` gets
//! the global name answered on port 53, the image's HEALTHCHECK command passes, and the
//! state volume is where the server writes.
//!
//! Needs root, podman, runc and the static binary; otherwise it says why and passes, unless
//! `STEERDNS_REQUIRE_CONTAINER=1`, when it fails. (This VM's crun cannot set the default
//! rlimits nor run with hybrid cgroups: runc and explicit `--ulimit`s work.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use steerdns::demo_replica::{DemoReplica, lab_config};

use crate::support::{dig, is_root, must_cmd, repo, run_cmd};

fn run(args: &[&str]) -> (bool, String) {
    run_cmd("podman", args)
}

fn must(args: &[&str]) -> String {
    must_cmd("podman", args)
}

fn static_binary() -> Result<PathBuf, String> {
    let root = is_root();
    if !root {
        return Err("not root".into());
    }
    for tool in ["/usr/bin/podman", "/usr/sbin/runc"] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} is missing"));
        }
    }
    let bin = std::env::var_os("STEERDNS_STATIC_BIN")
        .map(PathBuf::from)
        .ok_or("STEERDNS_STATIC_BIN is not set (tests/run.sh builds the static binary)")?;
    let bin = if bin.is_relative() {
        repo().join(bin)
    } else {
        bin
    };
    if !bin.is_file() {
        return Err(format!("{} is missing", bin.display()));
    }
    Ok(bin)
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = run(&["rm", "-f", "-t", "2", &self.0]);
        let _ = run(&["rmi", "-f", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_unprivileged_and_answers_on_port_53() {
    let bin = match static_binary() {
        Ok(b) => b,
        Err(why) => {
            assert!(
                std::env::var_os("STEERDNS_REQUIRE_CONTAINER").is_none(),
                "the container test cannot run: {why}"
            );
            eprintln!("SKIPPED: the container test: {why}");
            return;
        }
    };
    let mut reps = Vec::new();
    for i in 1..=3 {
        let l = tokio::net::TcpListener::bind(format!("127.0.19.{i}:0"))
            .await
            .expect("bind");
        reps.push(DemoReplica::start(l).expect("replica"));
    }
    // A small build context: the binary, the container files, the zones.
    let ctx = tempfile::tempdir().expect("tmp");
    let copy = |from: &Path, to: &str| {
        let dest = ctx.path().join(to);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, &dest).expect("copy");
    };
    copy(&bin, "steerdns");
    for f in [
        "Containerfile",
        "passwd",
        "group",
        "steerdns.toml",
        "state/README",
    ] {
        copy(
            &repo().join("packaging/container").join(f),
            &format!("packaging/container/{f}"),
        );
    }
    copy(
        &repo().join("zones/registry.example.zone"),
        "zones/registry.example.zone",
    );
    // The CA bundle the prober's TLS client loads (this machine's, as the docs say).
    copy(
        Path::new("/etc/ssl/certs/ca-certificates.crt"),
        "packaging/container/ca-certificates.crt",
    );
    // The operator's config and state, as volumes. On the host network the admin listener
    // takes its own address too (other tests' servers hold 127.0.0.1:8053).
    let etc = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(etc.path().join("zones")).expect("zones");
    std::fs::copy(
        repo().join("zones/registry.example.zone"),
        etc.path().join("zones/registry.example.zone"),
    )
    .expect("zone");
    let config = lab_config(
        Path::new("/etc/steerdns"),
        "127.0.19.5:53",
        &reps,
        &["contoso"],
        "5s",
        "[admin]\nlisten = \"127.0.19.5:8053\"\nstate_file = \"/var/lib/steerdns/steerdns-state.json\"\n\
         [health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\njitter = \"0s\"\n",
    )
    .replace("geo_dir = \"/etc/steerdns/geo\"", "geo_dir = \"/etc/steerdns\"");
    std::fs::write(etc.path().join("steerdns.toml"), &config).expect("config");
    std::fs::copy(
        repo().join("geo/latency.csv"),
        etc.path().join("latency.csv"),
    )
    .expect("geo");
    let state = tempfile::tempdir().expect("tmp");
    std::os::unix::fs::chown(state.path(), Some(53), Some(53)).expect("chown");

    let name = format!("steerdns-test-{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    tokio::task::block_in_place(|| {
        must(&[
            "build",
            "-q",
            // HEALTHCHECK is a Docker-format field; OCI images drop it.
            "--format",
            "docker",
            "-t",
            &name,
            "--build-arg",
            "BINARY=steerdns",
            "-f",
            ctx.path()
                .join("packaging/container/Containerfile")
                .to_str()
                .expect("utf8"),
            ctx.path().to_str().expect("utf8"),
        ]);
        let user = must(&["image", "inspect", "--format", "{{.Config.User}}", &name]);
        assert_eq!(user.trim(), "53:53");
        let hc = must(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.Healthcheck.Test}}",
            &name,
        ]);
        assert!(hc.contains("healthcheck"), "{hc}");
        must(&[
            "--runtime",
            "runc",
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--cap-drop",
            "all",
            "--cap-add",
            "NET_BIND_SERVICE",
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=1024:1024",
            "-v",
            &format!("{}:/etc/steerdns:ro", etc.path().display()),
            "-v",
            &format!("{}:/var/lib/steerdns", state.path().display()),
            &name,
        ]);
        // The image's own health check: GET /ready inside the container.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, out) = run(&[
                "--runtime",
                "runc",
                "exec",
                &name,
                "/usr/sbin/steerdns",
                "--config",
                "/etc/steerdns/steerdns.toml",
                "healthcheck",
            ]);
            if ok {
                assert!(out.contains("ready"), "{out}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never healthy: {out}\n{}",
                run(&["logs", &name]).1
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let answer = dig(
            "127.0.19.5:53".parse().expect("addr"),
            &["+short", "contoso.registry.example.", "A"],
        );
        assert_eq!(answer.trim(), "192.0.2.10", "dig @127.0.19.5 -p 53");
        // The server process: its user, and of all capabilities only the one to bind port 53.
        let top = must(&["top", &name, "user", "capeff"]);
        let row: Vec<&str> = top
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(row, ["steerdns", "NET_BIND_SERVICE"], "{top}");
    });
    // It logged to the container's log (stderr).
    let logs = run(&["logs", &name]).1;
    assert!(logs.contains("first probe round done"), "{logs}");
    for r in reps {
        r.shutdown().await;
    }
}
