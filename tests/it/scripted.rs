//! Failover on scripted probe outcomes and paused time: the server as it runs (writer,
//! prober, snapshot), probed by a script instead of HTTP, so each test counts probes exactly
//! and no test waits on the real clock. Answers are asked through `dns::handle` on the
//! snapshot in service (no socket round trip that would let paused time run ahead).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};
use parking_lot::Mutex;
use steerdns::dns::{Transport, handle};
use steerdns::health::book::ProbeTarget;
use steerdns::health::outcome::{Failure, Pass, ProbeOutcome};
use steerdns::health::prober::Probe;
use steerdns::health::spec::CheckSpec;
use steerdns::metrics::DnsCounters;
use steerdns::server::Sockets;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::*;

const INTERVAL: Duration = Duration::from_secs(10);

/// Deep-check outcomes by replica host (127.0.13.1 = westeurope, .2 eastus, .3 southeastasia),
/// and how many deep probes each host got.
#[derive(Default)]
struct Script {
    failing: Mutex<HashMap<String, bool>>,
    probes: Mutex<HashMap<String, u32>>,
}

#[derive(Clone, Default)]
struct Scripted(Arc<Script>);

impl Scripted {
    fn fail(&self, host: &str, on: bool) {
        self.0.failing.lock().insert(host.into(), on);
    }

    fn probes(&self, host: &str) -> u32 {
        self.0.probes.lock().get(host).copied().unwrap_or(0)
    }
}

impl Probe for Scripted {
    fn probe(&self, t: &ProbeTarget) -> impl Future<Output = ProbeOutcome> + Send {
        let at = Instant::now();
        let result = match &*t.check {
            CheckSpec::Http(h) => {
                let host = h.url.host_str().unwrap_or("").to_string();
                *self.0.probes.lock().entry(host.clone()).or_default() += 1;
                if self.0.failing.lock().get(&host).copied().unwrap_or(false) {
                    Err(Failure::Status(503))
                } else {
                    Ok(Pass { status: Some(200) })
                }
            }
            CheckSpec::Tcp { .. } => Ok(Pass { status: None }),
        };
        async move {
            ProbeOutcome {
                at,
                latency: Duration::from_millis(1),
                result,
                document: None,
            }
        }
    }
}

fn config() -> String {
    let mut text = demo_config(
        "[routing]\nlatency_table = \"latency.csv\"\n\
         default_order = [\"westeurope\", \"eastus\", \"southeastasia\"]\n\
         [regions.westeurope]\n[regions.eastus]\n[regions.southeastasia]\n\
         [health]\ninterval = \"10s\"\ntimeout = \"1s\"\njitter = \"0s\"\n\
         failure_threshold = 3\nsuccess_threshold = 2\nmass_failure_min_targets = 100\n\
         [registries.contoso]\nname = \"contoso.registry.example.\"\nttl = \"5s\"\n",
    );
    for (i, (region, addr)) in steerdns::demo_replica::LAB_REGIONS.iter().enumerate() {
        text.push_str(&format!(
            "[registries.contoso.replicas.{region}]\nipv4 = [\"{addr}\"]\n\
             health.url = \"http://127.0.13.{}:8080/health\"\n",
            i + 1
        ));
    }
    text
}

struct Running {
    handles: steerdns::app::Handles,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(script: &Scripted) -> Running {
    start_with(script, false).await.0
}

/// Start the scripted server; `signed`: every zone signed by a key made here (the harness
/// that checks replies' signatures comes back with it).
async fn start_with(
    script: &Scripted,
    signed: bool,
) -> (Running, Option<steerdns::fuzzing::SignedHarness>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("steerdns.toml");
    std::fs::write(&path, config()).expect("config");
    let (snapshot, harness) = if signed {
        let h = steerdns::fuzzing::SignedHarness::load(&path).expect("loads signed");
        (h.snapshot(), Some(h))
    } else {
        let snapshot = steerdns::state::Snapshot::load(&path).expect("loads");
        (snapshot, None)
    };
    // No sockets: a UDP socket's blocking thread would stop paused time from advancing, and
    // the answers are asked through dns::handle anyway.
    let sockets = Sockets::bind(&[]).expect("no sockets");
    let shutdown = CancellationToken::new();
    let (handles, task) =
        steerdns::app::spawn_probing(snapshot, sockets, script.clone(), shutdown.clone())
            .expect("start");
    (
        Running {
            handles,
            shutdown,
            task,
            _dir: dir,
        },
        harness,
    )
}

impl Running {
    /// The A answer for a client near westeurope, from the snapshot in service.
    fn answer(&self) -> String {
        let mut q = query("contoso.registry.example.", RecordType::A, None);
        q.metadata.id = 7;
        let packet = q.to_vec().expect("query");
        let mut out = Vec::new();
        let snap = self.handles.shared.load();
        let source: IpAddr = "127.0.1.9".parse().expect("ip");
        handle(
            &snap,
            &packet,
            source,
            Transport::Udp,
            &mut out,
            &DnsCounters::default(),
        )
        .expect("an answer");
        let m = Message::from_vec(&out).expect("reply");
        match m.answers.first().map(|r| &r.data) {
            Some(RData::A(a)) => a.to_string(),
            other => panic!("no A answer: {other:?}"),
        }
    }

    /// The A answer with the DO bit for a client at `source`, as it is on the wire.
    fn signed_reply(&self, source: &str) -> Vec<u8> {
        let mut e = edns(1232);
        e.set_dnssec_ok(true);
        let mut q = query("contoso.registry.example.", RecordType::A, Some(e));
        q.metadata.id = 8;
        let packet = q.to_vec().expect("query");
        let mut out = Vec::new();
        let snap = self.handles.shared.load();
        handle(
            &snap,
            &packet,
            source.parse().expect("ip"),
            Transport::Udp,
            &mut out,
            &DnsCounters::default(),
        )
        .expect("an answer");
        out
    }

    /// The signer of registry.example. in service.
    fn signer(&self) -> std::sync::Arc<steerdns::dnssec::sign::ZoneSigner> {
        self.handles
            .shared
            .load()
            .signer_of("registry.example.")
            .expect("registry.example. is signed")
    }

    /// Wait for the first probe round, then step 100 ms past it: every [`next_round`] then
    /// ends 100 ms after a round of probes (jitter is 0), never on the same instant.
    async fn first_round(&self) {
        let mut first = self.handles.control.first_round.clone();
        first.wait_for(|d| *d).await.expect("first round");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Let paused time run to just after the next probe round.
    async fn next_round(&self) {
        tokio::time::sleep(INTERVAL).await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("server task");
    }
}

#[tokio::test(start_paused = true)]
async fn degrades_after_exactly_three_failures_and_recovers_after_exactly_two_successes() {
    let script = Scripted::default();
    let s = start(&script).await;
    s.first_round().await;
    assert_eq!(script.probes("127.0.13.1"), 1);
    assert_eq!(s.answer(), "192.0.2.10");

    script.fail("127.0.13.1", true);
    // Failures 1 and 2 move nothing.
    for n in 2..=3 {
        s.next_round().await;
        assert_eq!(script.probes("127.0.13.1"), n);
        assert_eq!(s.answer(), "192.0.2.10", "after {} failures", n - 1);
    }
    // The third consecutive failure fails over to the next best (eastus).
    s.next_round().await;
    assert_eq!(script.probes("127.0.13.1"), 4);
    assert_eq!(s.answer(), "198.51.100.10");

    script.fail("127.0.13.1", false);
    s.next_round().await;
    assert_eq!(script.probes("127.0.13.1"), 5);
    assert_eq!(s.answer(), "198.51.100.10", "one success is not enough");
    s.next_round().await;
    assert_eq!(script.probes("127.0.13.1"), 6);
    assert_eq!(s.answer(), "192.0.2.10", "two successes recover");
    // The other replicas were probed once a round, like it.
    assert_eq!(script.probes("127.0.13.2"), 6);
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_flapping_replica_never_fails_over() {
    let script = Scripted::default();
    let s = start(&script).await;
    s.first_round().await;
    // fail, fail, pass, fail, fail, pass, …: never three in a row.
    for round in 0..12 {
        script.fail("127.0.13.1", round % 3 != 2);
        s.next_round().await;
        assert_eq!(s.answer(), "192.0.2.10", "round {round}");
    }
    assert_eq!(script.probes("127.0.13.1"), 13);
    s.stop().await;
}

/// A failover does not wait on signing: the first failure of westeurope's check (two more
/// are needed to fail over) has the answers its clients may move to signed ahead, so the
/// first signed answer after the failover — eastus, never given before — is a cache hit,
/// and its signature verifies.
#[tokio::test(start_paused = true)]
async fn a_failover_finds_its_new_answer_already_signed() {
    let script = Scripted::default();
    let (s, harness) = start_with(&script, true).await;
    let harness = harness.expect("signed");
    s.first_round().await;
    let signer = s.signer();
    let a = |reply: &[u8]| {
        let m = Message::from_vec(reply).expect("reply");
        m.answers
            .iter()
            .find_map(|r| match &r.data {
                RData::A(a) => Some(a.to_string()),
                _ => None,
            })
            .expect("an A answer")
    };
    // A validating resolver near westeurope asks: its answer is signed on first query.
    let reply = s.signed_reply("127.0.1.9");
    assert_eq!(a(&reply), "192.0.2.10");
    harness.check_signatures(&reply).expect("verifies");
    assert_eq!(
        signer.cache().counts(),
        (0, 1),
        "one miss: signed when first asked"
    );
    assert_eq!(signer.signatures_presigned(), 0, "nothing signed ahead yet");

    // westeurope fails once: not degraded, the answer stays, the others are signed ahead.
    script.fail("127.0.13.1", true);
    s.next_round().await;
    assert_eq!(s.answer(), "192.0.2.10");
    // eastus and southeastasia (A), and the NODATA proof for AAAA (no replica has one).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while signer.signatures_presigned() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "pre-signing did not happen: {} signatures",
            signer.signatures_presigned()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(signer.signatures_presigned(), 3, "each RRset once");

    // Two more failures: the failover to eastus. Its first signed answer is a hit.
    s.next_round().await;
    s.next_round().await;
    assert_eq!(s.answer(), "198.51.100.10");
    let (hits, misses) = signer.cache().counts();
    let reply = s.signed_reply("127.0.1.9");
    assert_eq!(a(&reply), "198.51.100.10");
    harness
        .check_signatures(&reply)
        .expect("the pre-signed answer verifies");
    assert_eq!(
        signer.cache().counts(),
        (hits + 1, misses),
        "the new answer was found signed"
    );
    // A client near Singapore gets southeastasia, pre-signed too.
    let reply = s.signed_reply("127.0.3.9");
    assert_eq!(a(&reply), "203.0.113.10");
    harness.check_signatures(&reply).expect("verifies");
    assert_eq!(signer.cache().counts(), (hits + 2, misses));
    s.stop().await;
}
