//! Process and address plumbing for the resolver lab: finding the tools, rendering the config
//! templates in `tests/lab/`, starting servers with their output in log files, waiting for them
//! with explicit deadlines, and guards that stop every process by PID and remove every address
//! added to `lo` when dropped — also when a check panics.

use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where the lab's committed files live (`tests/lab/`).
pub(crate) fn lab_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("lab")
}

/// Looks a program up in `PATH`, then in the sbin directories (root's tools live there and a
/// CI `PATH` may lack them).
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether this process runs as root (needed for port 53 and `ip addr add`).
pub(crate) fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Reads `tests/lab/<template>`, replaces every `{{key}}`, and fails if one is left.
pub(crate) fn render(template: &str, vars: &[(&str, String)]) -> String {
    let path = lab_src().join(template);
    let mut text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    for (key, value) in vars {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    if let Some(at) = text.find("{{") {
        let end = text[at..].find("}}").map_or(text.len(), |e| at + e + 2);
        panic!(
            "{template}: placeholder {} was not filled in",
            &text[at..end]
        );
    }
    text
}

/// Fails early, with a clear message, when something already holds `addr:53` (typically a
/// server left over from a lab run that was killed): otherwise the checks would talk to it.
pub(crate) fn ensure_port_free(addr: Ipv4Addr, port: u16) -> Result<(), String> {
    match UdpSocket::bind(SocketAddrV4::new(addr, port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AddrInUse => Err(format!(
            "{addr}:{port}/udp is already in use: a server from an earlier lab run may still \
             be running (see `ss -ulpn | grep {addr}`)"
        )),
        Err(e) => Err(format!(
            "cannot bind {addr}:{port}/udp to check it is free: {e}"
        )),
    }
}

/// One look at a condition [`wait_until`] waits for.
pub(crate) enum Poll<T> {
    /// Met.
    Ready(T),
    /// Not yet; the reason is reported if the deadline passes.
    Pending(String),
    /// Will never be met (e.g. the server exited): stop waiting.
    Fatal(String),
}

/// Polls `probe` every 50 ms until it is ready, fails at once on a fatal result, and fails
/// with the last reason once `timeout` has passed.
pub(crate) fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Poll<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Poll::Ready(v) => return Ok(v),
            Poll::Fatal(e) => return Err(format!("{what}: {e}")),
            Poll::Pending(e) if Instant::now() >= deadline => {
                return Err(format!("{what}: not ready after {timeout:?}: {e}"));
            }
            Poll::Pending(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Returns the last `n` lines of a file, for failure reports.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

//----------- Proc -------------------------------------------------------------------------------

/// A server process started by the lab; dropping it stops it (SIGTERM, then SIGKILL after a
/// grace period) and reaps it. Every server the lab runs is a single process (Knot, Unbound with
/// one thread, named, steerdns), so stopping the PID stops everything. The processes stay in
/// the test's process group, so an interrupted run (Ctrl-C) takes them down too.
pub(crate) struct Proc {
    name: String,
    child: Child,
    /// Where its stdout and stderr go.
    pub(crate) out: PathBuf,
    /// Other log files it writes (its own `logfile:`), shown on failure.
    pub(crate) logs: Vec<PathBuf>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr written to `<dir>/<name>.out`.
    pub(crate) fn spawn(name: &str, dir: &Path, cmd: &mut Command) -> Result<Proc, String> {
        let out = dir.join(format!("{name}.out"));
        let file = fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let err = file
            .try_clone()
            .map_err(|e| format!("{}: {e}", out.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            out,
            logs: Vec::new(),
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `Ok` while the process runs; its exit status and output tail once it has ended.
    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} (pid {}) exited with {status}; its output:\n{}",
                self.name,
                self.pid(),
                self.log_tails(30)
            )),
            Err(e) => Err(format!("{}: cannot query its state: {e}", self.name)),
        }
    }

    /// The last lines of its output and log files.
    pub(crate) fn log_tails(&self, n: usize) -> String {
        let mut text = format!("--- {} ---\n{}", self.out.display(), tail(&self.out, n));
        for log in &self.logs {
            text.push_str(&format!("\n--- {} ---\n{}", log.display(), tail(log, n)));
        }
        text
    }

    /// Stops the process: SIGTERM to its PID, up to 5 s to exit, then SIGKILL to its PID.
    pub(crate) fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "lab: {} (pid {pid}) ignored SIGTERM for 5 s; sending SIGKILL",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

//----------- LoAddr -----------------------------------------------------------------------------

/// An address added to `lo` for the lab (BIND binds only addresses that exist on an
/// interface); dropping it removes the address again.
pub(crate) struct LoAddr {
    ip: String,
    cidr: String,
}

impl LoAddr {
    /// `ip addr add <addr>/32 dev lo`. An address left behind by a killed run is taken over
    /// (and removed at the end like one added now).
    pub(crate) fn add(ip_tool: &Path, addr: Ipv4Addr) -> Result<LoAddr, String> {
        let cidr = format!("{addr}/32");
        let out = Command::new(ip_tool)
            .args(["addr", "add", &cidr, "dev", "lo"])
            .output()
            .map_err(|e| format!("running {}: {e}", ip_tool.display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !stderr.contains("File exists") {
            return Err(format!(
                "ip addr add {cidr} dev lo failed: {}",
                stderr.trim()
            ));
        }
        Ok(LoAddr {
            ip: ip_tool.display().to_string(),
            cidr,
        })
    }
}

impl Drop for LoAddr {
    fn drop(&mut self) {
        let status = Command::new(&self.ip)
            .args(["addr", "del", &self.cidr, "dev", "lo"])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "lab: could not remove {} from lo ({status:?}); remove it by hand",
                self.cidr
            );
        }
    }
}

/// A UDP proxy on `listen`:53 in front of the authoritative at `upstream`:53 that corrupts
/// the signature of every RRSIG covering an A RRset in the answers it relays (the last octet
/// flipped); everything else passes unchanged. Stops when dropped.
pub(crate) struct TamperProxy {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TamperProxy {
    pub(crate) fn start(listen: Ipv4Addr, upstream: Ipv4Addr) -> Result<TamperProxy, String> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let sock = UdpSocket::bind(SocketAddrV4::new(listen, 53))
            .map_err(|e| format!("tamper proxy on {listen}:53: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 65535];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(up) = UdpSocket::bind(SocketAddrV4::new(listen, 0)) else {
                    continue;
                };
                let _ = up.set_read_timeout(Some(Duration::from_secs(2)));
                if up
                    .send_to(&buf[..n], SocketAddrV4::new(upstream, 53))
                    .is_err()
                {
                    continue;
                }
                let mut reply = [0u8; 65535];
                let Ok(m) = up.recv(&mut reply) else { continue };
                let out = corrupt_a_signatures(&reply[..m]).unwrap_or_else(|| reply[..m].to_vec());
                let _ = sock.send_to(&out, from);
            }
        });
        Ok(TamperProxy {
            stop,
            thread: Some(thread),
        })
    }
}

/// The message with the last octet of every RRSIG covering A in its answer section flipped;
/// None when it does not parse or has none.
fn corrupt_a_signatures(reply: &[u8]) -> Option<Vec<u8>> {
    use hickory_proto::rr::{RData, RecordType};
    let mut m = hickory_proto::op::Message::from_vec(reply).ok()?;
    let mut changed = false;
    for r in &mut m.answers {
        if let RData::Unknown { code, rdata } = &mut r.data
            && *code == RecordType::RRSIG
            && rdata.anything.get(..2) == Some(&[0, 1][..])
            && let Some(last) = rdata.anything.last_mut()
        {
            *last ^= 0xff;
            changed = true;
        }
    }
    if changed { m.to_vec().ok() } else { None }
}

impl Drop for TamperProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
