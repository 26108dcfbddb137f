//! Health-aware failover against real HTTP deep-health endpoints (demo replicas on
//! 127.0.11.x) and real DNS queries: per-registry health, fail-open, stale verdicts, the
//! mass-failure guard, shadow mode, and hung replicas. The exact thresholds (three failures,
//! two successes, flapping) are counted probe by probe on paused time in `scripted.rs`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::{RData, RecordType};
use steerdns::demo_replica::{DemoReplica, lab_config};
use steerdns::state::HealthMasks;
use steerdns::state::view::{ReplicaState, StatusQuery};
use tokio::time::Instant;

use crate::support::*;

const WEU: &str = "192.0.2.10";
const EUS: &str = "198.51.100.10";
const SEA: &str = "203.0.113.10";
/// A client the latency table puts nearest westeurope, then eastus, then southeastasia.
const CLIENT_WEU: &str = "127.0.1.44";
/// westeurope's bit in a registry's masks (replicas are indexed in key order: eastus,
/// southeastasia, westeurope).
const WEU_BIT: u64 = 1 << 2;
/// Probe interval in these tests.
const INTERVAL_MS: u64 = 200;
/// How long any wait for a condition may take before the test fails.
const LIMIT: Duration = Duration::from_secs(10);

struct Lab {
    server: TestServer,
    replicas: Vec<DemoReplica>,
}

impl Lab {
    /// Three demo replicas (westeurope, eastus, southeastasia) serving `registries`, each
    /// registry with one replica per region; `health` is extra `[health]` settings.
    async fn start(registries: &[&str], health: &str) -> Self {
        let mut replicas = Vec::new();
        for i in 1..=3 {
            let l = tokio::net::TcpListener::bind(format!("127.0.11.{i}:0"))
                .await
                .expect("bind replica");
            replicas.push(DemoReplica::start(l).expect("replica"));
        }
        let cfg = lab_config(
            &repo(),
            "127.0.0.1:0",
            &replicas,
            registries,
            "1s",
            &format!(
                "[health]\ninterval = \"{INTERVAL_MS}ms\"\ntimeout = \"150ms\"\njitter = \"0s\"\n\
                 failure_threshold = 3\nsuccess_threshold = 2\n{health}"
            ),
        );
        let server = TestServer::start(&cfg).await;
        Self { server, replicas }
    }

    async fn answer(&self, registry: &str) -> String {
        let q = query(
            &format!("{registry}.registry.example."),
            RecordType::A,
            None,
        );
        let m = udp_from(
            CLIENT_WEU.parse::<IpAddr>().expect("ip"),
            self.server.addr,
            &q,
        )
        .await;
        match m.answers.first().map(|r| &r.data) {
            Some(RData::A(a)) => a.to_string(),
            other => panic!("{registry}: no A answer: {other:?}"),
        }
    }

    /// Poll the answer every 20 ms until it equals `want`; fail after LIMIT.
    async fn wait_answer(&self, registry: &str, want: &str) -> Duration {
        let start = Instant::now();
        loop {
            if self.answer(registry).await == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < LIMIT,
                "{registry}: answer never became {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn health(&self) -> std::sync::Arc<steerdns::state::Snapshot> {
        self.server.handles.shared.load()
    }

    /// Wait until the health masks satisfy `f`.
    async fn wait_health(&self, what: &str, f: impl Fn(&HealthMasks) -> bool) {
        let start = Instant::now();
        while !f(&self.health().health) {
            assert!(
                start.elapsed() < LIMIT,
                "never: {what}; masks {:?}",
                self.health().health
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn first_round(&self) {
        let mut rx = self.server.handles.control.first_round.clone();
        tokio::time::timeout(LIMIT, rx.wait_for(|done| *done))
            .await
            .expect("first round in time")
            .expect("open");
    }

    /// Wait until the replica has answered `n` more deep-health probes for `registry`.
    async fn wait_hits(&self, replica: usize, registry: &str, from: u64, n: u64) {
        let start = Instant::now();
        while self.replicas[replica].hits(registry) < from + n {
            assert!(
                start.elapsed() < LIMIT,
                "replica {replica} was not probed {n} times"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        self.server.stop().await;
        for r in self.replicas {
            r.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_of_one_registry_reroutes_only_that_registry() {
    let lab = Lab::start(&["contoso", "fabrikam"], "").await;
    lab.first_round().await;
    assert_eq!(lab.answer("fabrikam").await, "192.0.2.11");
    lab.replicas[0].fail("storage", Some("contoso"));
    lab.wait_answer("contoso", EUS).await;
    // Several more rounds later fabrikam is still on the same (shared) replica host.
    let h = lab.replicas[0].hits("fabrikam");
    lab.wait_hits(0, "fabrikam", h, 4).await;
    assert_eq!(lab.answer("fabrikam").await, "192.0.2.11");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_replicas_degraded_fails_open_to_the_best_latency() {
    // The guard is set out of reach so that every replica really degrades.
    let lab = Lab::start(&["contoso"], "mass_failure_min_targets = 1000").await;
    lab.first_round().await;
    for r in &lab.replicas {
        r.fail("auth", Some("contoso"));
    }
    lab.wait_health("contoso fails open", |h| h.profiles[0].fail_open)
        .await;
    assert_eq!(
        lab.answer("contoso").await,
        WEU,
        "answers keep coming, best latency first"
    );
    // One replica recovers: it alone is answered.
    lab.replicas[2].recover(None, None);
    lab.wait_answer("contoso", SEA).await;
    assert!(!lab.health().health.profiles[0].fail_open);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_expire_to_unknown_when_the_prober_stops() {
    let lab = Lab::start(&["contoso"], "").await;
    lab.first_round().await;
    lab.replicas[0].fail("storage", Some("contoso"));
    lab.wait_answer("contoso", EUS).await;
    // The prober dies: no more outcomes. After stale_after (3 intervals) the degraded verdict
    // is unknown again, and unknown is routable.
    lab.server.handles.control.prober_abort.abort();
    let took = lab.wait_answer("contoso", WEU).await;
    assert!(
        took >= Duration::from_millis(INTERVAL_MS),
        "expired only after stale_after, took {took:?}"
    );
    // ... and the expiry is counted (the status view refreshes at least once a second).
    let start = Instant::now();
    loop {
        let text = lab.server.handles.stats.metrics.render();
        if metric(&text, "steerdns_stale_verdicts_total", &[]) >= 1.0 {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "stale verdict not counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_expire_to_unknown_when_the_writer_stops() {
    let lab = Lab::start(&["contoso"], "").await;
    lab.first_round().await;
    lab.replicas[0].fail("storage", Some("contoso"));
    lab.wait_answer("contoso", EUS).await;
    // The writer dies (or hangs): nobody publishes or stamps the health view any more. The
    // answer path sees the view pass its deadline (stale_after) and treats the degraded
    // verdict as unknown, which is routable; the prober keeps probing, to no one.
    lab.server.handles.control.writer_abort.abort();
    let took = lab.wait_answer("contoso", WEU).await;
    assert!(
        took >= Duration::from_millis(INTERVAL_MS),
        "expired only after stale_after, took {took:?}"
    );
    let text = lab.server.handles.stats.metrics.render();
    let stale = metric(&text, "steerdns_dns_stale_health_view_answers_total", &[]);
    assert!(stale >= 1.0, "stale-view answers not counted:\n{text}");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mass_failure_guard_holds_state_when_the_prober_is_blind() {
    let lab = Lab::start(
        &["contoso"],
        "mass_failure_fraction = 0.5\nmass_failure_min_targets = 3",
    )
    .await;
    lab.first_round().await;
    // Every deep endpoint accepts and never answers: 3 of 6 targets time out, a failure on
    // the prober's side (no document), which is what the guard is for.
    for r in &lab.replicas {
        r.set_hang(true);
    }
    lab.wait_health("the guard engages", |h| h.guard_engaged)
        .await;
    // Well past the threshold: nothing was ejected.
    let h = lab.replicas[0].hits("contoso");
    lab.wait_hits(0, "contoso", h, 5).await;
    let snap = lab.health();
    assert_eq!(
        snap.health.profiles[0].routable.bits(),
        0b111,
        "all still routable: {:?}",
        snap.health
    );
    assert!(!snap.health.profiles[0].fail_open, "held, not failed open");
    assert_eq!(lab.answer("contoso").await, WEU);
    for r in &lab.replicas {
        r.set_hang(false);
    }
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_dependency_faults_reroute_and_do_not_engage_the_guard() {
    // 9 deep targets + 3 front doors; 3 failing is 25 %, over this guard's 20 % and minimum 3.
    let lab = Lab::start(
        &["contoso", "fabrikam", "northwind"],
        "mass_failure_fraction = 0.2\nmass_failure_min_targets = 3",
    )
    .await;
    lab.first_round().await;
    // One different failing storage account per region, each seen in a deep-health document
    // that arrives and parses: the replicas are visible, the guard must stay out of it.
    lab.replicas[0].fail("storage", Some("contoso"));
    lab.replicas[1].fail("storage", Some("fabrikam"));
    lab.replicas[2].fail("storage", Some("northwind"));
    lab.wait_answer("contoso", EUS).await;
    // Profiles are the config's registries in key order; replicas eastus, southeastasia,
    // westeurope.
    lab.wait_health("each registry loses exactly its failing replica", |h| {
        h.profiles[0].routable.bits() == 0b011
            && h.profiles[1].routable.bits() == 0b110
            && h.profiles[2].routable.bits() == 0b101
    })
    .await;
    let snap = lab.health();
    assert!(!snap.health.guard_engaged, "{:?}", snap.health);
    let text = lab.server.handles.stats.metrics.render();
    assert!(
        text.lines()
            .any(|l| l == "steerdns_mass_failure_guard_engagements_total 0"),
        "{text}"
    );
    // The others still answer from westeurope for this client.
    assert_eq!(lab.answer("fabrikam").await, "192.0.2.11");
    assert_eq!(lab.answer("northwind").await, "192.0.2.12");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_routes_on_shallow_and_reports_what_deep_would_change() {
    let lab = Lab::start(&["contoso"], "mode = \"shadow\"").await;
    lab.first_round().await;
    lab.replicas[0].fail("storage", Some("contoso"));
    // Deep would drop westeurope; routing (front door / TCP) does not.
    lab.wait_health("deep diverges", |h| {
        h.profiles[0]
            .shadow_deep
            .is_some_and(|d| d.bits() & WEU_BIT == 0)
    })
    .await;
    assert_eq!(
        lab.health().health.profiles[0].routable.bits() & WEU_BIT,
        WEU_BIT
    );
    assert_eq!(lab.answer("contoso").await, WEU);
    // The status API says, per replica, what routing used and what deep health says.
    let v = status(&lab.server, StatusQuery::default())
        .await
        .expect("status");
    let reps = &v.registries[0].replicas;
    let weu = reps.iter().find(|r| r.region == "westeurope").expect("weu");
    let sh = weu.shadow.as_ref().expect("shadow view in shadow mode");
    assert_eq!(
        (weu.state, sh.routed, sh.deep, sh.deep_routable),
        (
            ReplicaState::Healthy,
            ReplicaState::Healthy,
            ReplicaState::Degraded,
            false
        )
    );
    assert!(
        sh.reason.as_deref().is_some_and(|r| r.contains("storage")),
        "{sh:?}"
    );
    for other in reps.iter().filter(|r| r.region != "westeurope") {
        let sh = other.shadow.as_ref().expect("shadow");
        assert_eq!((sh.deep, sh.deep_routable), (ReplicaState::Healthy, true));
    }
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_replica_never_slows_dns_answers() {
    let lab = Lab::start(&["contoso"], "").await;
    lab.first_round().await;
    lab.replicas[0].set_hang(true);
    // While its probes hang (each bounded by the 150 ms timeout) every query is answered at
    // once; it fails over after three timeouts.
    let start = Instant::now();
    let mut answered = 0;
    loop {
        let q = query("contoso.registry.example.", RecordType::A, None);
        let bytes = q.to_vec().expect("enc");
        let sock = tokio::net::UdpSocket::bind("127.0.1.44:0")
            .await
            .expect("bind");
        sock.send_to(&bytes, lab.server.addr).await.expect("send");
        let mut buf = [0u8; 512];
        let got = tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await;
        assert!(
            got.is_ok(),
            "DNS answered within 500 ms while a replica hangs"
        );
        answered += 1;
        let m = hickory_proto::op::Message::from_vec(&buf[..got.expect("ok").expect("recv").0])
            .expect("decode");
        if matches!(m.answers.first().map(|r| &r.data), Some(RData::A(a)) if a.to_string() == EUS) {
            break;
        }
        assert!(start.elapsed() < LIMIT, "failed over");
    }
    assert!(answered > 3);
    let _: SocketAddr = lab.server.addr;
    lab.stop().await;
}
