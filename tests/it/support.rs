//! Test support: an in-process server on loopback port 0, and small DNS clients over real UDP
//! and TCP sockets.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use steerdns::admin::context::{AdminError, Command};
use steerdns::app::{self, Handles};
use steerdns::server::Sockets;
use steerdns::state::Snapshot;
use steerdns::state::view::{StatusQuery, StatusView};

/// How long a test waits for any one answer before failing.
pub const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config that serves the repository's demo zones (and whatever `extra` adds).
pub fn demo_config(extra: &str) -> String {
    let zones = repo().join("zones");
    let geo = repo().join("geo");
    format!(
        "version = 1\n[server]\nlisten = [\"127.0.0.1:0\"]\nzones_dir = {zones:?}\ngeo_dir = {geo:?}\n{extra}"
    )
}

/// A steerdns running in this process on 127.0.0.1, port 0 (UDP and TCP on one port).
pub struct TestServer {
    /// The address (UDP and TCP).
    pub addr: SocketAddr,
    /// The server's handles.
    pub handles: Handles,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    /// A failing test drops the server without `stop()`: cancel anyway, so the UDP threads
    /// end and the test runtime can shut down (instead of waiting for them forever).
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestServer {
    /// Start a server from config text (written to a temporary directory).
    pub async fn start(config: &str) -> Self {
        Self::start_on(config, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// Start on a given address.
    pub async fn start_on(config: &str, listen: SocketAddr) -> Self {
        Self::start_with(config, &[], listen).await
    }

    /// Start with more files beside the config (a catalog, say): `(name, contents)`.
    pub async fn start_with(config: &str, files: &[(&str, &str)], listen: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, config, files, listen).await
    }

    /// Start with the admin API too, on 127.0.0.1 port 0 (its address: `handles.admin`).
    pub async fn start_with_admin(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin = "127.0.0.1:0".parse().expect("addr");
        Self::launch(
            dir,
            config,
            &[],
            "127.0.0.1:0".parse().expect("addr"),
            Some(admin),
            1,
        )
        .await
    }

    /// Start with the admin API and more files beside the config (a token file, say).
    pub async fn start_with_admin_files(config: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let any = "127.0.0.1:0".parse().expect("addr");
        Self::launch(dir, config, files, any, Some(any), 1).await
    }

    /// Start in a given directory (a restart keeps its files).
    pub async fn start_in(
        dir: tempfile::TempDir,
        config: &str,
        files: &[(&str, &str)],
        listen: SocketAddr,
    ) -> Self {
        Self::launch(dir, config, files, listen, None, 1).await
    }

    /// Start with `workers` UDP sockets (SO_REUSEPORT, a thread each) on 127.0.0.1 port 0, as
    /// the binary does with `server.udp_workers`.
    pub async fn start_with_workers(config: &str, workers: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = "127.0.0.1:0".parse().expect("addr");
        Self::launch(dir, config, &[], listen, None, workers).await
    }

    async fn launch(
        dir: tempfile::TempDir,
        config: &str,
        files: &[(&str, &str)],
        listen: SocketAddr,
        admin: Option<SocketAddr>,
        udp_workers: usize,
    ) -> Self {
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write file");
        }
        let path = dir.path().join("steerdns.toml");
        std::fs::write(&path, config).expect("write config");
        let snapshot =
            Snapshot::load(&path).unwrap_or_else(|e| panic!("config does not load:\n{e}"));
        let mut sockets = Sockets::bind_workers(&[listen], udp_workers).expect("bind");
        if let Some(a) = admin {
            sockets = sockets.with_admin(a).expect("bind admin");
        }
        let addr = sockets.udp[0].local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let (handles, task) = app::spawn(snapshot, sockets, shutdown.clone()).expect("start");
        Self {
            addr,
            handles,
            shutdown,
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stop and wait for every listener and connection to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().expect("stop is called once");
        tokio::time::timeout(ANSWER_WAIT, task)
            .await
            .expect("server stops in time")
            .expect("server task did not panic");
    }

    /// Path of the temporary directory the config lives in.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Stop, keeping the directory (to start again in it).
    pub async fn stop_keep(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        let task = self.task.take().expect("stop is called once");
        tokio::time::timeout(ANSWER_WAIT, task)
            .await
            .expect("server stops in time")
            .expect("server task did not panic");
        let placeholder = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self._dir, placeholder)
    }
}

/// A query message for `name`/`rtype` with RD set and the given EDNS (None = no OPT).
pub fn query(name: &str, rtype: RecordType, edns: Option<Edns>) -> Message {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    m.edns = edns;
    m
}

/// EDNS version 0 with payload `size`.
pub fn edns(size: u16) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(size);
    e
}

/// EDNS with a Client Subnet option.
pub fn edns_ecs(subnet: &str) -> Edns {
    let mut e = edns(1232);
    e.options_mut().insert(EdnsOption::Subnet(
        subnet.parse::<ClientSubnet>().expect("subnet"),
    ));
    e
}

/// Send raw bytes over UDP and wait for one answer.
pub async fn udp_raw(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    udp_raw_from("127.0.0.1".parse().expect("ip"), server, packet).await
}

/// How long to wait before concluding that a packet was dropped (no answer is expected).
pub const DROP_WAIT: Duration = Duration::from_millis(500);

/// Send raw bytes over UDP; None when nothing came back within `DROP_WAIT`.
pub async fn udp_expect_silence(server: SocketAddr, packet: &[u8]) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    sock.send_to(packet, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    tokio::time::timeout(DROP_WAIT, sock.recv_from(&mut buf))
        .await
        .is_err()
}

/// Send raw bytes over UDP from a chosen loopback source and wait for one answer.
pub async fn udp_raw_from(source: IpAddr, server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .expect("bind client");
    sock.send_to(packet, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(ANSWER_WAIT, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// Query over UDP and decode the answer.
pub async fn udp(server: SocketAddr, msg: &Message) -> Message {
    let bytes = udp_raw(server, &msg.to_vec().expect("encode"))
        .await
        .expect("an answer over UDP");
    Message::from_vec(&bytes).expect("decodable answer")
}

/// Query over UDP from a chosen source address.
pub async fn udp_from(source: IpAddr, server: SocketAddr, msg: &Message) -> Message {
    let bytes = udp_raw_from(source, server, &msg.to_vec().expect("encode"))
        .await
        .expect("an answer over UDP");
    Message::from_vec(&bytes).expect("decodable answer")
}

/// Send several queries on one TCP connection at once (pipelined) and read as many answers.
pub async fn tcp_raw(server: SocketAddr, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let mut out = Vec::new();
    for p in packets {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    stream.write_all(&out).await.expect("write");
    let mut answers = Vec::new();
    for _ in packets {
        answers.push(read_frame(&mut stream).await.expect("an answer over TCP"));
    }
    answers
}

/// Read one length-prefixed DNS message; None on EOF or timeout.
pub async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    tokio::time::timeout(ANSWER_WAIT, stream.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tokio::time::timeout(ANSWER_WAIT, stream.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf)
}

/// Query over TCP and decode the answer.
pub async fn tcp(server: SocketAddr, msg: &Message) -> Message {
    let answers = tcp_raw(server, &[msg.to_vec().expect("encode")]).await;
    Message::from_vec(&answers[0]).expect("decodable answer")
}

/// The answer's ECS option, if any.
pub fn answer_ecs(m: &Message) -> Option<ClientSubnet> {
    m.edns.as_ref().and_then(
        |e| match e.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(cs)) => Some(*cs),
            _ => None,
        },
    )
}

pub async fn ask<T>(
    s: &TestServer,
    make: impl FnOnce(oneshot::Sender<Result<T, AdminError>>) -> Command,
) -> Result<T, AdminError> {
    let (tx, rx) = oneshot::channel();
    s.handles
        .control
        .commands
        .send(make(tx))
        .await
        .expect("writer runs");
    rx.await.expect("writer replies")
}

/// The writer's status view, as `GET /v1/status` would return it.
pub async fn status(s: &TestServer, query: StatusQuery) -> Result<StatusView, AdminError> {
    ask(s, |reply| Command::Status { query, reply }).await
}

/// Run the real `dig` (Debian dnsutils, installed by tests/run.sh) against `server`; its
/// standard output.
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = std::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is installed (tests/run.sh installs dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value after `label` in dig's header lines, e.g. `status` or `ANSWER`.
pub fn field<'a>(out: &'a str, label: &str) -> &'a str {
    let key = format!("{label}: ");
    out.split(&key)
        .nth(1)
        .and_then(|rest| rest.split([',', '\n', ';']).next())
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label} in dig output:\n{out}"))
}

/// The header flags dig prints (`qr aa rd`), as a list.
pub fn flags(out: &str) -> Vec<&str> {
    out.split("flags: ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .map(|f| f.split_whitespace().collect())
        .unwrap_or_else(|| panic!("no flags in dig output:\n{out}"))
}

/// Lines of one dig section (e.g. "AUTHORITY").
pub fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let marker = format!(";; {name} SECTION:");
    out.split(&marker)
        .nth(1)
        .map(|rest| {
            rest.lines()
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

//------------ Geo databases ----------------------------------------------------------------

/// One record of a GeoIP2/GeoLite2-City-shaped database (the nested schema); the parts left
/// `None` are absent from the record, as in a Country database or a network without data.
#[derive(serde::Serialize)]
pub struct CityRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<CityLocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<IsoCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    continent: Option<ContinentCode>,
}

#[derive(serde::Serialize)]
struct CityLocation {
    latitude: f64,
    longitude: f64,
}

#[derive(serde::Serialize)]
struct IsoCode {
    iso_code: &'static str,
}

#[derive(serde::Serialize)]
struct ContinentCode {
    code: &'static str,
}

/// A nested-schema record: coordinates (if any), country ISO code, continent code (if any).
pub fn city(
    point: Option<(f64, f64)>,
    country: &'static str,
    continent: Option<&'static str>,
) -> CityRecord {
    CityRecord {
        location: point.map(|(latitude, longitude)| CityLocation {
            latitude,
            longitude,
        }),
        country: Some(IsoCode { iso_code: country }),
        continent: continent.map(|code| ContinentCode { code }),
    }
}

/// A nested-schema database of `database_type` (e.g. `GeoLite2-City`) holding `rows`
/// (network, record), written with mmdb-writer's defaults (an IPv6 tree with IPv4 in it).
pub fn nested_mmdb(database_type: &str, rows: &[(&str, CityRecord)]) -> Vec<u8> {
    let mut w = mmdb_writer::Writer::new(database_type);
    for (net, rec) in rows {
        w.insert(net.parse::<ipnet::IpNet>().expect("net"), rec)
            .expect("insert");
    }
    w.to_bytes().expect("mmdb")
}

/// Sum of the samples of `name` in a `/metrics` text whose labels contain every `labels`
/// fragment.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Run headless Chromium on `url` with `extra` (`--dump-dom`, `--screenshot=…`); its stdout.
pub async fn chromium(profile: &std::path::Path, extra: &str, url: &str) -> Option<String> {
    const CHROMIUM: &str = "/usr/bin/chromium";
    if !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("STEERDNS_REQUIRE_BROWSER").is_none(),
            "{CHROMIUM} is missing"
        );
        eprintln!("SKIPPED: {CHROMIUM} is missing (apt-get install chromium)");
        return None;
    }
    let out = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--no-proxy-server",
            "--window-size=1280,1100",
            "--hide-scrollbars",
            // The page's fetches finish in virtual time; its 5 s refresh never fires.
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(extra)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `cmd` with `args`: whether it succeeded, and its stdout then stderr.
pub fn run_cmd(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// [`run_cmd`] that must succeed; its output.
pub fn must_cmd(cmd: &str, args: &[&str]) -> String {
    let (ok, text) = run_cmd(cmd, args);
    assert!(ok, "{cmd} {args:?} failed:\n{text}");
    text
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|r| r.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A server with the admin API on `lab_config` for the demo replicas `reps` and
/// `registries` (answer TTL 1 s), probed every 200 ms, plus `tables` and `files`; returned
/// once its first probe round is done.
pub async fn lab_server(
    reps: &[steerdns::demo_replica::DemoReplica],
    registries: &[&str],
    tables: &str,
    files: &[(&str, &str)],
) -> TestServer {
    let config = steerdns::demo_replica::lab_config(
        &repo(),
        "127.0.0.1:0",
        reps,
        registries,
        "1s",
        &format!("[health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\njitter = \"0s\"\n{tables}"),
    );
    let s = TestServer::start_with_admin_files(&config, files).await;
    let mut rx = s.handles.control.first_round.clone();
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|d| *d))
        .await
        .expect("first probe round in time")
        .expect("the writer runs");
    s
}
