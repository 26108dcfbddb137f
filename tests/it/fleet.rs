//! The fleet against the real thing: a real etcd (Debian's `etcd-server`; one node, or a
//! three-node cluster for the leader test) on 127.0.9.x with its own temporary data dir,
//! three steerdns binaries on 127.0.9.x with `[fleet]`, demo replicas on 127.0.10.x, queried
//! with real UDP DNS. Every process is killed by PID when its guard drops, so a failing
//! check leaves nothing behind.
//!
//! Skipped (with a message) only when `etcd` is not installed and `STEERDNS_REQUIRE_ETCD` is
//! unset; `tests/run.sh` sets it, so CI really runs them. The cases run one at a time (they
//! time propagation on a shared machine) with 2 s leases and explicit waits on conditions.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::{RData, RecordType};
use serde_json::{Value, json};
use steerdns::demo_replica::{DemoReplica, lab_config};

use crate::e2e::Binary;
use crate::support::{query, repo, udp_from};

const WEU: &str = "192.0.2.10";
const EUS: &str = "198.51.100.10";
/// A client the latency table puts next to westeurope.
const CLIENT: &str = "127.0.1.45";
/// Bound on every wait for a condition (a failing case fails within it).
const LIMIT: Duration = Duration::from_secs(20);
const INSTANCES: [&str; 3] = ["a", "b", "c"];
/// Each instance's catalog at start: empty (registries are added through the admin API).
const CATALOG: &str = "key,name,template,depends_on,ttl,answers\n";

/// One case at a time: they start a dozen processes each and time propagation.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The serial lock, or None (skip) when etcd is not installed and not required.
async fn etcd_or_skip() -> Option<tokio::sync::MutexGuard<'static, ()>> {
    let installed = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        assert!(
            std::env::var_os("STEERDNS_REQUIRE_ETCD").is_none(),
            "STEERDNS_REQUIRE_ETCD is set but etcd is not installed (apt-get install etcd-server)"
        );
        eprintln!(
            "SKIPPED: etcd is not installed (apt-get install etcd-server); fleet tests not run"
        );
        return None;
    }
    Some(SERIAL.lock().await)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// Poll `f` every 20 ms until it is true; panics with `what` after [`LIMIT`].
async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < LIMIT, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

//------------ etcd ----------------------------------------------------------------------------

/// One etcd member, killed by PID on drop; its data dir lives as long as the cluster's.
struct EtcdNode {
    child: Option<Child>,
    args: Vec<String>,
    client: String,
    log: PathBuf,
}

impl EtcdNode {
    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).expect("etcd log");
        let child = Command::new("etcd")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for EtcdNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of `n` members on 127.0.9.`base`.. (client port 2379, peer 2380).
struct Etcd {
    nodes: Vec<EtcdNode>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    async fn start(base: u8, n: u8) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let ip = |i: u8| format!("127.0.9.{}", base + i);
        let cluster: Vec<String> = (0..n)
            .map(|i| format!("e{i}=http://{}:2380", ip(i)))
            .collect();
        let nodes = (0..n)
            .map(|i| {
                let client = format!("http://{}:2379", ip(i));
                let data = dir.path().join(format!("e{i}"));
                let args = [
                    "--name",
                    &format!("e{i}"),
                    "--data-dir",
                    data.to_str().expect("utf8"),
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                    "--listen-peer-urls",
                    &format!("http://{}:2380", ip(i)),
                    "--initial-advertise-peer-urls",
                    &format!("http://{}:2380", ip(i)),
                    "--initial-cluster",
                    &cluster.join(","),
                    "--initial-cluster-token",
                    &format!("steerdns-test-{base}"),
                    "--initial-cluster-state",
                    "new",
                    "--heartbeat-interval",
                    "50",
                    "--election-timeout",
                    "500",
                ]
                .map(String::from)
                .to_vec();
                EtcdNode {
                    child: None,
                    args,
                    client,
                    log: dir.path().join(format!("e{i}.log")),
                }
            })
            .collect();
        let mut e = Etcd { nodes, _dir: dir };
        for node in &mut e.nodes {
            node.spawn();
        }
        e.wait_healthy().await;
        e
    }

    fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client.clone()).collect()
    }

    /// Until every running member says `/health` true (a leader is elected).
    async fn wait_healthy(&self) {
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let url = format!("{}/health", n.client);
            wait_until(
                &format!("etcd {} healthy ({})", n.client, n.log.display()),
                || {
                    let url = url.clone();
                    async move {
                        match http().get(url).send().await {
                            Ok(r) => r.text().await.is_ok_and(|t| t.contains("true")),
                            Err(_) => false,
                        }
                    }
                },
            )
            .await;
        }
    }
}

//------------ network namespaces --------------------------------------------------------------

/// A helper process, killed by PID on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(args[0])
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {args:?}: {e}")),
    )
}

/// A network namespace with only its loopback, deleted on drop (after the processes in it,
/// which the test drops first). What an instance in it reaches is what is bridged in:
/// `socat` from an address on the namespace's loopback, over a Unix socket (not
/// namespaced), to the same address on the host's, and back for its own listeners.
struct Netns {
    name: String,
}

impl Netns {
    fn new(name: &str) -> Self {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(
            ok(&["netns", "add", name]),
            "ip netns add {name} (needs root)"
        );
        let ns = Netns { name: name.into() };
        assert!(ok(&[
            "netns", "exec", name, "ip", "link", "set", "lo", "up"
        ]));
        ns
    }

    /// From inside to the host: connections to `addr` in the namespace reach `addr` outside.
    fn bridge_out(&self, addr: &str, sock: &std::path::Path) -> [Proc; 2] {
        let (ip, port) = addr.rsplit_once(':').expect("ip:port");
        let sock = sock.to_str().expect("utf8");
        let host = spawn(&[
            "socat",
            &format!("UNIX-LISTEN:{sock},fork"),
            &format!("TCP:{addr}"),
        ]);
        wait_for_file(sock);
        let inner = spawn(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "socat",
            &format!("TCP-LISTEN:{port},bind={ip},fork,reuseaddr"),
            &format!("UNIX-CONNECT:{sock}"),
        ]);
        [host, inner]
    }

    /// From the host to inside: connections to `addr` outside reach `addr` in the namespace.
    fn bridge_in(&self, addr: &str, sock: &std::path::Path) -> [Proc; 2] {
        let (ip, port) = addr.rsplit_once(':').expect("ip:port");
        let sock = sock.to_str().expect("utf8");
        let inner = spawn(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "socat",
            &format!("UNIX-LISTEN:{sock},fork"),
            &format!("TCP:{addr}"),
        ]);
        wait_for_file(sock);
        let host = spawn(&[
            "socat",
            &format!("TCP-LISTEN:{port},bind={ip},fork,reuseaddr"),
            &format!("UNIX-CONNECT:{sock}"),
        ]);
        [inner, host]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn wait_for_file(path: &str) {
    let start = Instant::now();
    while !std::path::Path::new(path).exists() {
        assert!(start.elapsed() < LIMIT, "socat never made {path}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

//------------ the fleet -----------------------------------------------------------------------

/// Three demo replicas, and steerdns instances a, b, c sharing one etcd prefix.
struct Fleet {
    dir: tempfile::TempDir,
    replicas: Vec<DemoReplica>,
    bins: Vec<Option<Binary>>,
    admins: Vec<SocketAddr>,
    dns: Vec<SocketAddr>,
    /// Bridges into instance a's network namespace, when it has one.
    bridges: Vec<Proc>,
}

impl Fleet {
    /// `octet`: this case's 127.0.9.x / 127.0.10.x block; `fleet`: extra `[fleet]` keys.
    async fn start(octet: u8, endpoints: &[String], registries: &[&str], fleet: &str) -> Self {
        Self::start_in(octet, endpoints, registries, fleet, None).await
    }

    /// [`start`](Self::start) with instance a in network namespace `ns`, which reaches etcd
    /// and the replicas eastus and southeastasia through bridges, and not westeurope.
    async fn start_in(
        octet: u8,
        endpoints: &[String],
        registries: &[&str],
        fleet: &str,
        ns: Option<&Netns>,
    ) -> Self {
        let mut replicas = Vec::new();
        for i in 0..3u8 {
            let l = tokio::net::TcpListener::bind(format!("127.0.10.{}:0", octet + i))
                .await
                .expect("bind");
            replicas.push(DemoReplica::start(l).expect("replica"));
        }
        let dir = tempfile::tempdir().expect("tmp");
        let mut f = Fleet {
            dir,
            replicas,
            bins: Vec::new(),
            admins: Vec::new(),
            dns: Vec::new(),
            bridges: Vec::new(),
        };
        if let Some(ns) = ns {
            let mut targets: Vec<String> = endpoints
                .iter()
                .map(|e| e.trim_start_matches("http://").to_string())
                .collect();
            targets.extend(f.replicas[1..].iter().map(|r| r.addr().to_string()));
            for (n, t) in targets.iter().enumerate() {
                let sock = f.dir.path().join(format!("out-{n}.sock"));
                f.bridges.extend(ns.bridge_out(t, &sock));
            }
        }
        let mut template = String::from("[templates.shared]\nttl = \"1s\"\n");
        for ((region, addr), r) in steerdns::demo_replica::LAB_REGIONS.iter().zip(&f.replicas) {
            template.push_str(&format!(
                "[templates.shared.replicas.{region}]\nipv4 = [\"{addr}\"]\nhealth.url = \"{}\"\n",
                r.health_url("shared")
            ));
        }
        for (i, name) in INSTANCES.iter().enumerate() {
            let text = lab_config(
                &repo(),
                "127.0.0.1:0",
                &f.replicas,
                registries,
                "1s",
                &format!(
                    "[admin]\nstate_file = \"state-{name}.json\"\n\
                     [health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\njitter = \"0s\"\n\
                     [fleet]\nendpoints = {endpoints:?}\ncluster = \"t{octet}\"\ninstance = \"{name}\"\n\
                     lease_ttl = \"2s\"\ntimeout = \"250ms\"\nretry = \"200ms\"\n\
                     state_file = \"fleet-{name}.json\"\n{fleet}\n\
                     [catalog]\nfile = \"registries-{name}.csv\"\n{template}"
                ),
            );
            std::fs::write(f.config(name), text).expect("write config");
            std::fs::write(f.dir.path().join(format!("registries-{name}.csv")), CATALOG)
                .expect("write catalog");
            let ip = format!("127.0.9.{}", octet + 10 + i as u8);
            match ns.filter(|_| i == 0) {
                Some(ns) => {
                    // Fixed ports inside the namespace, bridged to the same address outside.
                    let (dns, admin) = (format!("{ip}:5353"), format!("{ip}:8053"));
                    let b = f.serve_with(&["ip", "netns", "exec", &ns.name], name, &dns, &admin);
                    let sock = f.dir.path().join("admin.sock");
                    f.bridges.extend(ns.bridge_in(&admin, &sock));
                    let sock = f.dir.path().join("dns.sock");
                    f.bridges.extend(ns.bridge_in(&dns, &sock));
                    f.admins.push(admin.parse().expect("addr"));
                    f.dns.push(dns.parse().expect("addr"));
                    f.bins.push(Some(b));
                }
                None => {
                    let b = f.serve(name, &ip);
                    f.admins
                        .push(tokio::task::block_in_place(|| b.admin_addr()));
                    f.dns.push(b.addr);
                    f.bins.push(Some(b));
                }
            }
        }
        for i in 0..3 {
            f.wait_connected(i, 3).await;
        }
        f
    }

    fn config(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("steerdns-{name}.toml"))
    }

    fn serve(&self, name: &str, ip: &str) -> Binary {
        self.serve_with(&[], name, &format!("{ip}:0"), &format!("{ip}:0"))
    }

    fn serve_with(&self, wrapper: &[&str], name: &str, dns: &str, admin: &str) -> Binary {
        let config = self.config(name);
        let args = [
            "--config",
            config.to_str().expect("utf8"),
            "--listen",
            dns,
            "--admin-listen",
            admin,
        ];
        tokio::task::block_in_place(|| Binary::serve_via(wrapper, &args))
    }

    /// Stop instance `i` (SIGTERM) and start it again on the same address.
    async fn restart(&mut self, i: usize) {
        if let Some(b) = self.bins[i].take() {
            tokio::task::block_in_place(|| assert_eq!(b.terminate(), Some(0)));
        }
        let ip = self.dns[i].ip().to_string();
        let b = self.serve(INSTANCES[i], &ip);
        self.admins[i] = tokio::task::block_in_place(|| b.admin_addr());
        self.dns[i] = b.addr;
        self.bins[i] = Some(b);
    }

    /// `method` `path` on instance `i`'s admin API with a JSON body: (status, reply).
    async fn send(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let url = format!("http://{}{path}", self.admins[i]);
        let r = http()
            .request(method, url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("admin request");
        let code = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn status(&self, i: usize) -> Value {
        let url = format!("http://{}/v1/status", self.admins[i]);
        match http().get(url).send().await {
            Ok(r) => r
                .text()
                .await
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// Until instance `i` is ready, connected to etcd and sees `live` instances.
    async fn wait_connected(&self, i: usize, live: usize) {
        let start = Instant::now();
        loop {
            let s = self.status(i).await;
            if s["server"]["ready"] == true
                && s["fleet"]["connected"] == true
                && s["fleet"]["live"].as_array().map(Vec::len) == Some(live)
            {
                return;
            }
            if start.elapsed() > LIMIT {
                let log = self.bins[i].as_ref().map(Binary::log).unwrap_or_default();
                panic!(
                    "instance {} never connected with {live} live: fleet {}, ready {}\n{}",
                    INSTANCES[i],
                    s["fleet"],
                    s["server"]["ready"],
                    log.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The A record instance `i` answers for contoso to the westeurope client.
    async fn answer(&self, i: usize, registry: &str) -> String {
        let client: IpAddr = CLIENT.parse().expect("ip");
        let q = query(
            &format!("{registry}.registry.example."),
            RecordType::A,
            None,
        );
        let m = udp_from(client, self.dns[i], &q).await;
        match m.answers.first().map(|r| &r.data) {
            Some(RData::A(a)) => a.to_string(),
            other => format!("{other:?}"),
        }
    }

    /// Until every running instance answers `ip` for `registry`; how long that took.
    async fn wait_answer(&self, which: &[usize], registry: &str, ip: &str) -> Duration {
        wait_until(
            &format!("{which:?} answer {ip} for {registry}"),
            || async move {
                for &i in which {
                    if self.answer(i, registry).await != ip {
                        return false;
                    }
                }
                true
            },
        )
        .await
    }

    /// `PUT` (disable) or `DELETE` (enable) an override through instance `i`: (status, reply).
    async fn set_override(
        &self,
        i: usize,
        disable: bool,
        registry: &str,
        replica: &str,
    ) -> (u16, Value) {
        let body = json!({"registry": registry, "replica": replica, "reason": "fleet test"});
        let method = if disable {
            reqwest::Method::PUT
        } else {
            reqwest::Method::DELETE
        };
        self.send(i, method, "/v1/overrides", body).await
    }

    /// SIGKILL instance `i`.
    fn kill(&mut self, i: usize) {
        if let Some(b) = self.bins[i].take() {
            b.kill9();
        }
    }

    async fn finish(mut self) {
        for i in 0..3 {
            if let Some(b) = self.bins[i].take() {
                tokio::task::block_in_place(|| assert_eq!(b.terminate(), Some(0)));
            }
        }
        for r in self.replicas {
            r.shutdown().await;
        }
    }
}

fn fleet_word(reply: &Value) -> &str {
    reply["event"]["fleet"].as_str().unwrap_or("")
}

fn replica<'a>(status: &'a Value, registry: &str, replica: &str) -> &'a Value {
    let regs = status["registries"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    regs.iter()
        .find(|r| r["key"] == registry)
        .and_then(|r| r["replicas"].as_array())
        .and_then(|reps| reps.iter().find(|x| x["key"] == replica))
        .unwrap_or(&Value::Null)
}

//------------ cases ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_through_one_instance_is_answered_by_the_others_within_a_second() {
    let Some(_serial) = etcd_or_skip().await else {
        return;
    };
    let etcd = Etcd::start(1, 1).await;
    let f = Fleet::start(1, &etcd.endpoints(), &["contoso"], "").await;
    f.wait_answer(&[0, 1, 2], "contoso", WEU).await;

    let (code, reply) = f.set_override(0, true, "contoso", "westeurope").await;
    assert_eq!((code, fleet_word(&reply)), (200, "shared"), "{reply}");
    let took = f.wait_answer(&[1, 2], "contoso", EUS).await;
    assert!(
        took < Duration::from_secs(1),
        "B and C answered after {took:?}"
    );
    // A's own answer moved at once; B's status shows who set it.
    assert_eq!(f.answer(0, "contoso").await, EUS);
    let s = f.status(1).await;
    assert_eq!(
        replica(&s, "contoso", "westeurope")["state"],
        "disabled",
        "{s}"
    );

    // Enabled again through C: everyone is back within a second.
    let (code, reply) = f.set_override(2, false, "contoso", "westeurope").await;
    assert_eq!((code, fleet_word(&reply)), (200, "shared"), "{reply}");
    let took = f.wait_answer(&[0, 1], "contoso", WEU).await;
    assert!(
        took < Duration::from_secs(1),
        "A and B answered after {took:?}"
    );
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_gone_a_local_override_works_at_once_and_is_shared_when_it_returns() {
    let Some(_serial) = etcd_or_skip().await else {
        return;
    };
    let mut etcd = Etcd::start(2, 1).await;
    let mut f = Fleet::start(2, &etcd.endpoints(), &["contoso", "fabrikam"], "").await;
    f.wait_answer(&[0, 1, 2], "contoso", WEU).await;
    // A shared override B keeps in its state file (fabrikam's replicas are numbered .11).
    let (code, reply) = f.set_override(2, true, "fabrikam", "westeurope").await;
    assert_eq!((code, fleet_word(&reply)), (200, "shared"), "{reply}");
    f.wait_answer(&[0, 1], "fabrikam", "198.51.100.11").await;

    etcd.nodes[0].kill();
    // B restarts while etcd is gone: it starts from the last state it saw.
    f.restart(1).await;
    f.wait_answer(&[1], "fabrikam", "198.51.100.11").await;
    for i in 0..3 {
        let f = &f;
        wait_until("the link notices etcd is gone", || async move {
            f.status(i).await["fleet"]["connected"] == false
        })
        .await;
    }
    // Everyone keeps answering, on its own verdicts.
    f.wait_answer(&[0, 1, 2], "contoso", WEU).await;

    let start = Instant::now();
    let (code, reply) = f.set_override(0, true, "contoso", "westeurope").await;
    let took = start.elapsed();
    assert_eq!(
        (code, fleet_word(&reply)),
        (200, "local, not yet shared"),
        "{reply}"
    );
    assert!(
        took < Duration::from_millis(500),
        "the local override took {took:?}"
    );
    assert_eq!(f.answer(0, "contoso").await, EUS, "applied on A at once");
    let s = f.status(0).await;
    assert_eq!(
        s["fleet"]["pending"],
        json!(["ops/override/replica/contoso/westeurope"]),
        "{s}"
    );
    let metrics = http()
        .get(format!("http://{}/metrics", f.admins[0]))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("steerdns_fleet_pending_changes 1"),
        "{metrics}"
    );
    assert!(metrics.contains("steerdns_fleet_connected 0"), "{metrics}");
    // B and C do not have it while etcd is gone.
    assert_eq!(f.answer(1, "contoso").await, WEU);
    assert_eq!(f.answer(2, "contoso").await, WEU);
    // A conflict: the kill switch set on A, then otherwise on B, both while etcd is gone.
    let (code, reply) = f
        .send(0, reqwest::Method::PUT, "/v1/mode", json!({"mode": "off"}))
        .await;
    assert_eq!(
        (code, reply["fleet"].as_str()),
        (200, Some("local, not yet shared")),
        "{reply}"
    );
    let (code, reply) = f
        .send(
            1,
            reqwest::Method::PUT,
            "/v1/mode",
            json!({"mode": "shallow"}),
        )
        .await;
    assert_eq!(
        (code, reply["fleet"].as_str()),
        (200, Some("local, not yet shared")),
        "{reply}"
    );

    etcd.nodes[0].spawn();
    etcd.wait_healthy().await;
    f.wait_answer(&[1, 2], "contoso", EUS).await;
    // The later change (B's) wins everywhere, and the loss is counted once.
    wait_until("B's mode everywhere", || async {
        let mut modes = Vec::new();
        for i in 0..3 {
            modes.push(f.status(i).await["mode"].clone());
        }
        modes == [json!("shallow"), json!("shallow"), json!("shallow")]
    })
    .await;
    let mut lost = 0;
    for i in 0..3 {
        lost += f.status(i).await["fleet"]["lost"].as_u64().unwrap_or(0);
    }
    assert_eq!(
        lost, 1,
        "the change that lost is counted once, where it was settled"
    );
    wait_until("A's pending change shared", || async {
        let s = f.status(0).await;
        s["fleet"]["connected"] == true && s["fleet"]["pending"] == json!([])
    })
    .await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_really_down_fails_over_everywhere_and_a_killed_instance_stops_voting() {
    let Some(_serial) = etcd_or_skip().await else {
        return;
    };
    let etcd = Etcd::start(3, 1).await;
    // quorum = any: one live report fails a key over, so a dead instance's report would
    // keep it failed over until its lease expires.
    let mut f = Fleet::start(3, &etcd.endpoints(), &["contoso"], "quorum = \"any\"").await;
    f.wait_answer(&[0, 1, 2], "contoso", WEU).await;

    f.replicas[0].fail("storage", Some("contoso"));
    // failure_threshold (3) × interval (200 ms) + 1 s.
    let took = f.wait_answer(&[0, 1, 2], "contoso", EUS).await;
    assert!(took < Duration::from_millis(1600), "failover took {took:?}");
    wait_until("every instance reports it", || async {
        let s = f.status(0).await;
        let v = &replica(&s, "contoso", "westeurope")["fleet"];
        v["reported_by"] == json!(["a", "b", "c"])
            && v["own"] == "degraded"
            && v["fleet"] == "degraded"
    })
    .await;

    // C dies with its report in etcd; the replica recovers. A and B withdraw their reports;
    // C's goes only with its lease, and only then does the fleet route back.
    f.kill(2);
    f.replicas[0].recover(None, None);
    f.wait_answer(&[0, 1], "contoso", WEU).await;
    let s = f.status(0).await;
    assert_eq!(
        s["fleet"]["live"],
        json!(["a", "b"]),
        "C's lease expired first: {s}"
    );
    assert!(
        replica(&s, "contoso", "westeurope")["fleet"]["reported_by"] == json!([]),
        "{s}"
    );
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_leader_killed_loses_no_acknowledged_override() {
    let Some(_serial) = etcd_or_skip().await else {
        return;
    };
    let etcd = Etcd::start(4, 3).await;
    let registries = ["r0", "r1", "r2", "r3", "r4", "r5"];
    let f = Fleet::start(4, &etcd.endpoints(), &registries, "").await;
    let leader = leader(&etcd).await;

    // Overrides through A, with the leader killed after the second.
    let mut etcd = etcd;
    let mut acked = Vec::new();
    for (n, r) in registries.iter().enumerate() {
        if n == 2 {
            etcd.nodes[leader].kill();
        }
        let (code, reply) = f.set_override(0, true, r, "westeurope").await;
        assert_eq!(code, 200, "{reply}");
        acked.push((r.to_string(), fleet_word(&reply).to_string()));
    }
    eprintln!("acknowledged around the leader kill: {acked:?}");
    // Every acknowledged override (shared, or local and shared later) reaches B and C
    // (registry n's replicas are numbered .10 + n).
    for (n, (r, _)) in acked.iter().enumerate() {
        f.wait_answer(&[1, 2], r, &format!("198.51.100.{}", 10 + n))
            .await;
    }
    // And each is in etcd, on the surviving members.
    let survivors: Vec<String> = etcd
        .nodes
        .iter()
        .filter(|n| n.child.is_some())
        .map(|n| n.client.clone())
        .collect();
    let mut client = etcd_client::Client::connect(&survivors, None)
        .await
        .expect("connect");
    for (r, word) in &acked {
        let key = format!("t4/ops/override/replica/{r}/westeurope");
        let got = client.get(key.as_str(), None).await.expect("get");
        let v: Value =
            serde_json::from_slice(got.kvs().first().map(|kv| kv.value()).unwrap_or(b"null"))
                .expect("record");
        assert_eq!(
            v["change"]["disable"]["reason"], "fleet test",
            "{r} ({word}): {v}"
        );
    }
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_off_from_one_replica_keeps_it_by_quorum_while_its_own_view_says_degraded()
{
    let Some(_serial) = etcd_or_skip().await else {
        return;
    };
    let ns = Netns::new("sdns-fleet-5");
    let mut etcd = Etcd::start(5, 1).await;
    let f = Fleet::start_in(5, &etcd.endpoints(), &["contoso"], "", Some(&ns)).await;

    // A cannot reach westeurope at all (nothing bridges it into A's namespace): its own
    // view says degraded, it reports so, and the fleet (1 of 3) keeps it.
    wait_until("A's own view degraded, the fleet's healthy", || async {
        let s = f.status(0).await;
        let r = replica(&s, "contoso", "westeurope");
        r["fleet"]["own"] == "degraded"
            && r["fleet"]["fleet"] == "healthy"
            && r["fleet"]["reported_by"] == json!(["a"])
            && r["routable"] == true
    })
    .await;
    f.wait_answer(&[1, 2], "contoso", WEU).await;
    assert_eq!(
        tcp_answer(f.dns[0]).await,
        WEU,
        "A answers on the fleet's verdict"
    );
    let s = f.status(1).await;
    let r = replica(&s, "contoso", "westeurope");
    assert_eq!(
        (&r["fleet"]["own"], &r["fleet"]["reported_by"]),
        (&json!("healthy"), &json!(["a"])),
        "{s}"
    );

    // Without etcd, A routes on its own verdicts and fails westeurope over; B and C do not.
    etcd.nodes[0].kill();
    wait_until("A on its own verdicts", || async {
        tcp_answer(f.dns[0]).await == EUS
    })
    .await;
    f.wait_answer(&[1, 2], "contoso", WEU).await;
    f.finish().await;
}

/// Instance a's answer for contoso over TCP (its namespace is bridged for TCP only).
async fn tcp_answer(dns: SocketAddr) -> String {
    let q = query("contoso.registry.example.", RecordType::A, None);
    let m = crate::support::tcp(dns, &q).await;
    match m.answers.first().map(|r| &r.data) {
        Some(RData::A(a)) => a.to_string(),
        other => format!("{other:?}"),
    }
}

/// The index of the etcd member that leads.
async fn leader(etcd: &Etcd) -> usize {
    for (i, n) in etcd.nodes.iter().enumerate() {
        let mut c = etcd_client::Client::connect([n.client.as_str()], None)
            .await
            .expect("connect");
        let s = c.status().await.expect("status");
        if s.leader() == s.header().map_or(0, |h| h.member_id()) {
            return i;
        }
    }
    panic!("no etcd leader");
}
