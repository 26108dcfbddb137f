//! End to end: the built `steerdns` binary on the repository's default config, queried with
//! the real `dig` (Debian package dnsutils, installed by tests/run.sh) for every behaviour of
//! the authoritative core.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{field, flags, repo, section};

/// The binary, killed by PID when dropped (so a failing check leaves nothing running).
pub struct Binary {
    child: Child,
    /// The DNS address it bound (UDP and TCP).
    pub addr: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Binary {
    /// The admin API address it logged (`listening admin=ADDR`), waiting for it (bounded).
    pub fn admin_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(a) = self.log().iter().find_map(|l| {
                l.split("listening admin=").nth(1).map(|a| {
                    let end = a.find(['"', ' ']).unwrap_or(a.len());
                    a[..end].trim().to_string()
                })
            }) {
                return a.parse().expect("admin address");
            }
            assert!(
                Instant::now() < deadline,
                "no admin listener logged: {:?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Binary {
    /// Start `steerdns serve` with `args`, wait for its "listening udp=ADDR" log line.
    pub fn serve(args: &[&str]) -> Self {
        Self::serve_via(&[], args)
    }

    /// [`serve`](Self::serve) through a wrapper that execs it (e.g. `ip netns exec NS`), so
    /// the PID is still the server's.
    pub fn serve_via(wrapper: &[&str], args: &[&str]) -> Self {
        Self::serve_env(wrapper, &[], args)
    }

    /// [`serve_via`](Self::serve_via) with more environment variables.
    pub fn serve_env(wrapper: &[&str], env: &[(&str, &str)], args: &[&str]) -> Self {
        let bin = env!("CARGO_BIN_EXE_steerdns");
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .arg("serve")
            .args(args)
            .current_dir(repo())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start steerdns");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            // Ready once both the UDP and the TCP listener are logged.
            let mut udp = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log2.lock() {
                    l.push(line.clone());
                }
                // Text (`udp=ADDR`) or JSON (`"udp":"ADDR"`) lines.
                let field = |line: &str, text: &str, json: &str| {
                    let rest = line
                        .split(text)
                        .nth(1)
                        .or_else(|| line.split(json).nth(1))?;
                    let end = rest.find(['"', ' ']).unwrap_or(rest.len());
                    Some(rest[..end].trim().to_string())
                };
                if let Some(addr) = field(&line, "udp=", "\"udp\":\"") {
                    udp = Some(addr);
                }
                if field(&line, "tcp=", "\"tcp\":\"").is_some()
                    && let Some(addr) = udp.take()
                {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("address"),
            Err(_) => {
                // Never leave the process behind when the test fails here.
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "steerdns did not log its bound addresses: {:?}",
                    log.lock().map(|l| l.clone())
                );
            }
        };
        Self { child, addr, log }
    }

    /// Send SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What it logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Run dig against it.
    pub fn dig(&self, args: &[&str]) -> String {
        crate::support::dig(self.addr, args)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dig_sees_an_rfc_correct_authoritative_server() {
    let b = Binary::serve(&["--config", "steerdns.toml", "--listen", "127.0.2.1:0"]);
    assert!(
        b.log()
            .iter()
            .any(|l| l.contains("listening") && l.contains("tcp=127.0.2.1:")),
        "{:?}",
        b.log()
    );

    // SOA and NS at the apex, authoritative, no recursion offered, RD copied.
    let out = b.dig(&["registry.example", "SOA"]);
    assert_eq!(field(&out, "status"), "NOERROR", "{out}");
    assert_eq!(field(&out, "ANSWER"), "1");
    assert!(
        flags(&out).contains(&"aa") && flags(&out).contains(&"rd") && !flags(&out).contains(&"ra"),
        "{out}"
    );
    let out = b.dig(&["+norec", "registry.example", "NS"]);
    assert_eq!(field(&out, "ANSWER"), "2", "{out}");
    assert!(!flags(&out).contains(&"rd"), "RD copied as clear: {out}");

    // NXDOMAIN and NODATA with the SOA at TTL min(3600, 60).
    for (args, status) in [
        (["nope.registry.example", "A"], "NXDOMAIN"),
        (["www.registry.example", "MX"], "NOERROR"),
    ] {
        let out = b.dig(&args);
        assert_eq!(field(&out, "status"), status, "{out}");
        assert_eq!(field(&out, "ANSWER"), "0");
        let auth = section(&out, "AUTHORITY");
        assert_eq!(auth.len(), 1, "{out}");
        let cols: Vec<&str> = auth[0].split_whitespace().collect();
        assert_eq!((cols[1], cols[3]), ("60", "SOA"), "{out}");
    }

    // Outside our zones, look-alikes included: REFUSED.
    for name in ["xregistry.example", "example", "registry.example.org"] {
        let out = b.dig(&[name, "A"]);
        assert_eq!(field(&out, "status"), "REFUSED", "{name}: {out}");
        assert!(!flags(&out).contains(&"aa"));
    }

    // ANY: one RRset.
    let out = b.dig(&["www.registry.example", "ANY"]);
    assert_eq!(field(&out, "ANSWER"), "1", "{out}");

    // EDNS: our payload size; BADVERS for version 1; no OPT without EDNS; unknown options
    // ignored and not echoed.
    let out = b.dig(&["www.registry.example", "A"]);
    assert!(out.contains("udp: 1232"), "{out}");
    let out = b.dig(&["+edns=1", "+noednsneg", "www.registry.example", "A"]);
    assert_eq!(field(&out, "status"), "BADVERS", "{out}");
    assert!(out.contains("EDNS: version: 0"), "{out}");
    let out = b.dig(&["+noedns", "www.registry.example", "A"]);
    assert!(!out.contains("OPT PSEUDOSECTION"), "{out}");
    assert_eq!(field(&out, "ANSWER"), "1");
    let out = b.dig(&["+ednsopt=65001:c0ffee", "www.registry.example", "A"]);
    assert_eq!(field(&out, "status"), "NOERROR", "{out}");
    let opt = out
        .split("OPT PSEUDOSECTION")
        .nth(1)
        .and_then(|r| r.split("QUESTION SECTION").next())
        .unwrap_or("");
    assert!(
        opt.contains("udp: 1232") && !opt.contains("65001"),
        "unknown option not echoed: {out}"
    );

    // Truncation over UDP, the whole answer over TCP.
    let out = b.dig(&["+bufsize=1232", "+ignore", "big.registry.example", "TXT"]);
    assert!(flags(&out).contains(&"tc"), "{out}");
    assert_eq!(field(&out, "ANSWER"), "0");
    let out = b.dig(&["+tcp", "big.registry.example", "TXT"]);
    assert_eq!(field(&out, "ANSWER"), "24", "{out}");
    assert!(!flags(&out).contains(&"tc"));
    // dig without +ignore retries over TCP by itself and gets everything.
    let out = b.dig(&["big.registry.example", "TXT"]);
    assert_eq!(field(&out, "ANSWER"), "24", "{out}");

    // Several queries on one TCP connection.
    let out = b.dig(&[
        "+tcp",
        "+keepopen",
        "www.registry.example",
        "A",
        "mail.registry.example",
        "A",
        "nope.registry.example",
        "A",
    ]);
    assert_eq!(out.matches("status: NOERROR").count(), 2, "{out}");
    assert_eq!(out.matches("status: NXDOMAIN").count(), 1, "{out}");

    // 0x20: the question comes back in the case it was asked.
    let out = b.dig(&["WwW.ReGiStRy.ExAmPlE", "A"]);
    assert!(out.contains(";WwW.ReGiStRy.ExAmPlE.\t"), "{out}");
    assert!(
        section(&out, "ANSWER")[0].starts_with("WwW.ReGiStRy.ExAmPlE."),
        "{out}"
    );

    // Unknown opcodes: NOTIMP.
    for opcode in ["2", "3", "15"] {
        let out = b.dig(&[&format!("+opcode={opcode}"), "www.registry.example", "A"]);
        assert_eq!(field(&out, "status"), "NOTIMP", "opcode {opcode}: {out}");
        assert!(
            out.contains("OPT PSEUDOSECTION") && !out.contains("retry with '+noedns'"),
            "OPT answered: {out}"
        );
    }

    // A delegation: referral, no AA, NS in authority, glue in additional.
    let out = b.dig(&["host.child.registry.example", "A"]);
    assert_eq!(field(&out, "status"), "NOERROR", "{out}");
    assert!(!flags(&out).contains(&"aa"), "{out}");
    assert_eq!(section(&out, "AUTHORITY").len(), 1, "{out}");
    assert!(
        section(&out, "AUTHORITY")[0].contains("NS\tns.child.registry.example."),
        "{out}"
    );
    assert_eq!(section(&out, "ADDITIONAL").len(), 2, "{out}");

    // Malformed packets: garbage is FORMERR'd or dropped, and the server keeps answering.
    let sock = std::net::UdpSocket::bind("127.0.2.2:0").expect("bind");
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..(i % 40))
            .map(|j| (i.wrapping_mul(31).wrapping_add(j * 7)) as u8)
            .collect();
        let _ = sock.send_to(&junk, b.addr);
    }
    let out = b.dig(&["www.registry.example", "A"]);
    assert_eq!(field(&out, "status"), "NOERROR", "still serving: {out}");

    // SIGTERM: a graceful exit with status 0.
    assert_eq!(b.terminate(), Some(0));
}

#[test]
fn check_config_reports_problems_with_file_line_and_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).expect("mkdir");
    std::fs::write(
        zones.join("bad.example.zone"),
        "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\nwww A 300.1.1.1\n",
    )
    .expect("zone");
    let cfg = dir.path().join("steerdns.toml");
    std::fs::write(&cfg, "version = 1\n[server]\nlisten = [\"127.0.0.1:0\"]\n").expect("cfg");
    let run = |cfg: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_steerdns"))
            .args(["check-config", "--config"])
            .arg(cfg)
            .output()
            .expect("run")
    };
    let out = run(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("bad.example.zone:5:"),
        "file and line: {stderr}"
    );

    std::fs::write(
        &cfg,
        "version = 1\n[server]\nlisten = [\"127.0.0.1:0\"]\nbogus = 1\n",
    )
    .expect("cfg");
    let out = run(&cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr.contains("steerdns.toml:4:") && stderr.contains("bogus"),
        "{stderr}"
    );

    // The repository's default config is valid and summarised.
    let out = run(&repo().join("steerdns.toml"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("registry.example.") && stdout.contains("contoso.registry.example."),
        "{stdout}"
    );

    // Usage errors exit 2; --version works.
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .arg("--bogus")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .arg("--version")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// SIGTERM with a client that pipelines queries and never reads: the binary exits within
/// the configured grace (plus start-up slack), not held by the blocked write.
#[test]
fn sigterm_with_a_non_reading_client_exits_within_the_grace() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::support::demo_config(
        "shutdown_grace = \"1s\"\n[server.tcp]\nwrite_timeout = \"60s\"\n[admin]\nlisten = \"127.0.2.9:0\"\n",
    );
    let path = dir.path().join("steerdns.toml");
    std::fs::write(&path, config).expect("write config");
    let b = Binary::serve(&[
        "--config",
        path.to_str().expect("utf-8 path"),
        "--listen",
        "127.0.2.9:0",
    ]);
    let mut hog = std::net::TcpStream::connect(b.addr).expect("connect");
    hog.set_write_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let q = crate::support::query(
        "www.registry.example.",
        hickory_proto::rr::RecordType::A,
        None,
    )
    .to_vec()
    .expect("encode");
    let mut frame = (q.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&q);
    let batch: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 256)
        .collect();
    // Pipeline until our writes stall: the server's write to us is blocked by then.
    let mut written = 0usize;
    while hog.write_all(&batch).is_ok() {
        written += batch.len();
        assert!(written < 1 << 30, "the server never stopped reading");
    }
    let started = Instant::now();
    let code = b.terminate();
    assert_eq!(code, Some(0), "exited cleanly after SIGTERM");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exit took {:?}",
        started.elapsed()
    );
    drop(hog);
}
