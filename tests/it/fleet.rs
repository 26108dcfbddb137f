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

//------------ the fleet -----------------------------------------------------------------------

/// Three demo replicas, and steerdns instances a, b, c sharing one etcd prefix.
struct Fleet {
    dir: tempfile::TempDir,
    replicas: Vec<DemoReplica>,
    bins: Vec<Option<Binary>>,
    admins: Vec<SocketAddr>,
    dns: Vec<SocketAddr>,
}

impl Fleet {
    /// `octet`: this case's 127.0.9.x / 127.0.10.x block; `fleet`: extra `[fleet]` keys.
    async fn start(octet: u8, endpoints: &[String], registries: &[&str], fleet: &str) -> Self {
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
        };
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
                     state_file = \"fleet-{name}.json\"\n{fleet}\n"
                ),
            );
            std::fs::write(f.config(name), text).expect("write config");
            let ip = format!("127.0.9.{}", octet + 10 + i as u8);
            let b = f.serve(name, &ip);
            f.admins
                .push(tokio::task::block_in_place(|| b.admin_addr()));
            f.dns.push(b.addr);
            f.bins.push(Some(b));
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
        let config = self.config(name);
        tokio::task::block_in_place(|| {
            Binary::serve(&[
                "--config",
                config.to_str().expect("utf8"),
                "--listen",
                &format!("{ip}:0"),
                "--admin-listen",
                &format!("{ip}:0"),
            ])
        })
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
        let url = format!("http://{}/v1/overrides", self.admins[i]);
        let body = json!({"registry": registry, "replica": replica, "reason": "fleet test"});
        let req = if disable {
            http().put(url)
        } else {
            http().delete(url)
        };
        let r = req
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("override request");
        let code = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
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
    let f = Fleet::start(2, &etcd.endpoints(), &["contoso"], "").await;
    f.wait_answer(&[0, 1, 2], "contoso", WEU).await;

    etcd.nodes[0].kill();
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

    etcd.nodes[0].spawn();
    etcd.wait_healthy().await;
    f.wait_answer(&[1, 2], "contoso", EUS).await;
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
