//! The checker and the prober against real servers on 127.0.3.x: a demo replica, a
//! self-signed TLS server and raw TCP servers that misbehave. Each misbehaviour must fail with
//! the right reason within the timeout, and none may stall the prober.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use steerdns::demo_replica::DemoReplica;
use steerdns::health::book::{
    EventKind, HealthBook, HealthKey, ProfileKeys, TargetId, TargetTable,
};
use steerdns::health::check::Checker;
use steerdns::health::outcome::{Failure, ProbeOutcome};
use steerdns::health::prober::{ProbeEvent, spawn_prober};
use steerdns::health::spec::HealthMode;
use steerdns::health::spec::{CheckSpec, HealthSpec, StatusRange, resolve};
use steerdns::health::state::Status;
use steerdns::health::state::Transition;
use steerdns::routing::ReplicaMask;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Clone, Copy)]
enum Misbehave {
    /// Accept and never answer.
    Silent,
    /// Read the request, then reset the connection.
    Reset,
    /// Answer headers only after a second.
    SlowHeaders,
    /// 200 with a chunked body that never ends.
    Endless,
    /// Answer with this raw response.
    Raw(&'static str),
}

async fn raw_server(ip: &str, how: Misbehave) -> std::net::SocketAddr {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(serve(s, how));
        }
    });
    addr
}

async fn serve(mut s: TcpStream, how: Misbehave) {
    let mut buf = [0u8; 4096];
    match how {
        Misbehave::Silent => {
            let _ = s.read(&mut buf).await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Misbehave::Reset => {
            let _ = s.read(&mut buf).await;
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        }
        Misbehave::SlowHeaders => {
            let _ = s.read(&mut buf).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
        Misbehave::Endless => {
            let _ = s.read(&mut buf).await;
            let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
            if s.write_all(head).await.is_err() {
                return;
            }
            let mut chunk = b"1000\r\n".to_vec();
            chunk.extend_from_slice(&[b'x'; 4096]);
            chunk.extend_from_slice(b"\r\n");
            while s.write_all(&chunk).await.is_ok() {}
        }
        Misbehave::Raw(resp) => {
            // Keep-alive: one response per request read, until the client closes.
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || s.write_all(resp.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// A TLS server with a fresh self-signed certificate for `ip`, answering 200.
async fn tls_server(ip: &str) -> std::net::SocketAddr {
    let ck = rcgen::generate_simple_self_signed(vec![ip.to_owned()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn deep_check(toml_text: &str) -> CheckSpec {
    let spec: HealthSpec = toml::from_str(toml_text).unwrap();
    resolve(&[&spec]).unwrap().deep.unwrap()
}

fn http(url: &str) -> CheckSpec {
    deep_check(&format!("url = {url:?}"))
}

async fn probe(c: &Checker, check: &CheckSpec) -> ProbeOutcome {
    let o = c.check(check, TIMEOUT).await;
    assert!(
        o.latency <= TIMEOUT + Duration::from_millis(200),
        "{check}: {:?}",
        o.latency
    );
    o
}

#[tokio::test]
async fn failure_reasons_against_real_servers() {
    let started = Instant::now();
    let c = Checker::new().unwrap();
    let demo = DemoReplica::start(TcpListener::bind("127.0.3.1:0").await.unwrap()).unwrap();

    // Healthy deep document, with its dependencies kept.
    let o = probe(&c, &http(&demo.health_url("contoso"))).await;
    assert_eq!(o.result.as_ref().unwrap().status, Some(200));
    let doc = o.document.unwrap();
    assert_eq!(doc.status.as_deref(), Some("healthy"));
    assert_eq!(doc.dependencies.len(), 4);

    // A failing dependency for one registry: its probe lists it, the other registry passes,
    // the front door (shallow) still passes.
    demo.fail("storage", Some("contoso"));
    let o = probe(&c, &http(&demo.health_url("contoso"))).await;
    assert_eq!(o.result, Err(Failure::Dependencies(vec!["storage".into()])));
    assert!(o.result.unwrap_err().to_string().contains("storage"));
    assert!(
        probe(&c, &http(&demo.health_url("fabrikam")))
            .await
            .passed()
    );
    let tcp = CheckSpec::Tcp {
        host: "127.0.3.1".into(),
        port: demo.addr().port(),
    };
    assert!(probe(&c, &tcp).await.passed());
    assert!(
        probe(&c, &http(&format!("http://{}/", demo.addr())))
            .await
            .passed()
    );
    demo.recover(None, None);

    // Host header override and the prober's User-Agent, seen by the replica.
    let host = deep_check(&format!(
        "url = {:?}\nheaders = {{ Host = \"contoso.registry.example\" }}\njson_field = \"request.host\"\njson_equals = \"contoso.registry.example\"",
        demo.health_url("contoso")
    ));
    assert!(probe(&c, &host).await.passed());
    let ua = deep_check(&format!(
        "url = {:?}\njson_field = \"request.user_agent\"\njson_equals = {:?}",
        demo.health_url("contoso"),
        steerdns::health::check::USER_AGENT
    ));
    assert!(probe(&c, &ua).await.passed());

    // JSON field rule and body substring.
    let json_ok = deep_check(&format!(
        "url = {:?}\njson_field = \"checks.cache.status\"\njson_equals = \"healthy\"",
        demo.health_url("contoso")
    ));
    assert!(probe(&c, &json_ok).await.passed());
    let mismatch = deep_check(&format!(
        "url = \"http://{}/\"\nbody_contains = \"READY\"",
        demo.addr()
    ));
    assert!(matches!(
        probe(&c, &mismatch).await.result,
        Err(Failure::BodyMismatch(_))
    ));

    // Connection refused: bind, read the port, drop.
    let refused = TcpListener::bind("127.0.3.2:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let o = probe(&c, &http(&format!("http://{refused}/health"))).await;
    assert!(
        matches!(o.result, Err(Failure::Connect(ref m)) if m.contains("refused")),
        "{:?}",
        o.result
    );
    let o = probe(
        &c,
        &CheckSpec::Tcp {
            host: "127.0.3.2".into(),
            port: refused.port(),
        },
    )
    .await;
    assert!(
        matches!(o.result, Err(Failure::Connect(_))),
        "{:?}",
        o.result
    );

    let silent = raw_server("127.0.3.3", Misbehave::Silent).await;
    let o = probe(&c, &http(&format!("http://{silent}/health"))).await;
    assert_eq!(o.result, Err(Failure::Timeout));
    assert!(o.latency >= TIMEOUT);

    let reset = raw_server("127.0.3.4", Misbehave::Reset).await;
    let o = probe(&c, &http(&format!("http://{reset}/health"))).await;
    assert_eq!(o.result, Err(Failure::Reset));

    let slow = raw_server("127.0.3.5", Misbehave::SlowHeaders).await;
    assert_eq!(
        probe(&c, &http(&format!("http://{slow}/health")))
            .await
            .result,
        Err(Failure::Timeout)
    );

    let endless = raw_server("127.0.3.6", Misbehave::Endless).await;
    let o = probe(&c, &http(&format!("http://{endless}/health"))).await;
    assert!(
        matches!(o.result, Err(Failure::BodyTooLarge | Failure::Timeout)),
        "{:?}",
        o.result
    );

    let redirect = raw_server(
        "127.0.3.7",
        Misbehave::Raw("HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\nContent-Length: 0\r\n\r\n"),
    )
    .await;
    let o = probe(&c, &http(&format!("http://{redirect}/health"))).await;
    assert_eq!(
        o.result,
        Err(Failure::Redirect {
            status: 302,
            location: Some("http://elsewhere.example/".into())
        })
    );

    let e500 = raw_server(
        "127.0.3.8",
        Misbehave::Raw("HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\noops"),
    )
    .await;
    assert_eq!(
        probe(&c, &http(&format!("http://{e500}/health")))
            .await
            .result,
        Err(Failure::Status(500))
    );
    let mut tolerant = http(&format!("http://{e500}/health"));
    if let CheckSpec::Http(h) = &mut tolerant {
        h.expect_status = vec![StatusRange::parse("500-599").unwrap()];
    }
    assert!(probe(&c, &tolerant).await.passed());

    // TLS: plain HTTP behind an https URL, and an untrusted self-signed certificate.
    let plain = raw_server(
        "127.0.3.9",
        Misbehave::Raw("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    )
    .await;
    let o = probe(&c, &http(&format!("https://{plain}/health"))).await;
    assert!(matches!(o.result, Err(Failure::Tls(_))), "{:?}", o.result);
    let tls = tls_server("127.0.3.10").await;
    let o = probe(&c, &http(&format!("https://{tls}/health"))).await;
    assert!(
        matches!(o.result, Err(Failure::Tls(ref m)) if m.contains("certificate")),
        "{:?}",
        o.result
    );
    let insecure = deep_check(&format!(
        "url = \"https://{tls}/health\"\ninsecure_skip_verify = true"
    ));
    let o = probe(&c, &insecure).await;
    assert!(o.passed(), "{:?}", o.result);

    // Labels of what we saw are the metric labels.
    assert_eq!(Failure::Tls(String::new()).label(), "tls");
    assert!(started.elapsed() < Duration::from_secs(10));
    demo.shutdown().await;
}

/// A 200 whose deep-health document says `{"status":"unhealthy"}` (no dependency list) fails
/// the probe on its status word, keeps the document, and is not a prober-side failure (the
/// replica answered); a passing word on the same shape passes.
#[tokio::test]
async fn a_failing_document_status_fails_a_200() {
    let c = Checker::new().unwrap();
    let sick = raw_server(
        "127.0.3.11",
        Misbehave::Raw(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n{\"status\":\"unhealthy\"}",
        ),
    )
    .await;
    let o = probe(&c, &http(&format!("http://{sick}/health"))).await;
    assert_eq!(o.result, Err(Failure::DocumentStatus("unhealthy".into())));
    assert_eq!(
        o.result.as_ref().unwrap_err().to_string(),
        "deep-health status \"unhealthy\""
    );
    let doc = o.document.as_ref().expect("the document is kept");
    assert_eq!(doc.status.as_deref(), Some("unhealthy"));
    assert!(doc.dependencies.is_empty());

    let fine = raw_server(
        "127.0.3.12",
        Misbehave::Raw(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"UP\"}",
        ),
    )
    .await;
    let o = probe(&c, &http(&format!("http://{fine}/health"))).await;
    assert!(o.passed(), "{:?}", o.result);
}

/// Probe targets and one health profile per registry.
struct Plan {
    table: TargetTable,
    profiles: Vec<ProfileKeys>,
}

impl Plan {
    fn probe_targets(&self) -> Arc<[steerdns::health::book::ProbeTarget]> {
        self.table.probe_targets()
    }

    /// The deep target of replica `i` of registry `r`.
    fn deep(&self, r: usize, i: usize) -> TargetId {
        self.profiles[r].deep[i].clone().unwrap().target
    }

    fn book(&self) -> HealthBook {
        let mut book = HealthBook::new(&self.table);
        for p in &self.profiles {
            book.add_profile(p);
        }
        book
    }
}

/// Build a plan from `server` health settings and registries of replica specs.
fn plan_of(server: &HealthSpec, regs: &[Vec<HealthSpec>]) -> Plan {
    let mut table = TargetTable::new(server).unwrap();
    let mut profiles = Vec::new();
    for specs in regs {
        let mut keys = ProfileKeys::default();
        for spec in specs {
            let c = table.replica(&HealthSpec::default(), spec).unwrap();
            keys.deep.push(c.deep.map(HealthKey::whole));
            keys.shallow.push(c.shallow.map(HealthKey::whole));
        }
        profiles.push(keys);
    }
    Plan { table, profiles }
}

/// A plan of registries, each `(name, replica health URLs)`; interval 200 ms, timeout 100 ms.
fn plan(regs: &[(&str, Vec<String>)]) -> Plan {
    let server: HealthSpec = toml::from_str(
        "interval = \"200ms\"\ntimeout = \"100ms\"\nfailure_threshold = 3\nsuccess_threshold = 2\nmass_failure_min_targets = 100",
    )
    .unwrap();
    let regs: Vec<Vec<HealthSpec>> = regs
        .iter()
        .map(|(_, urls)| {
            urls.iter()
                .map(|u| HealthSpec {
                    url: Some(u.clone()),
                    ..Default::default()
                })
                .collect()
        })
        .collect();
    plan_of(&server, &regs)
}

/// Feed one outcome; the transition it caused, if any.
fn observe(
    book: &mut HealthBook,
    id: TargetId,
    o: &steerdns::health::outcome::ProbeOutcome,
) -> Option<Transition> {
    let before = book.counters().transitions;
    book.observe(id, o, Instant::now());
    if book.counters().transitions == before {
        return None;
    }
    book.history().rev().find_map(|e| match &e.kind {
        EventKind::Transition { transition, .. } => Some(transition.clone()),
        _ => None,
    })
}

struct Running {
    rx: mpsc::Receiver<ProbeEvent>,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
    _targets: watch::Sender<Arc<[steerdns::health::book::ProbeTarget]>>,
}

fn run(plan: &Plan) -> Running {
    let (tx, rx_targets) = watch::channel(plan.probe_targets());
    let (etx, rx) = mpsc::channel(256);
    let stop = CancellationToken::new();
    let p = spawn_prober(Checker::new().unwrap(), rx_targets, etx, stop.clone());
    Running {
        rx,
        stop,
        handle: p.handle,
        _targets: tx,
    }
}

impl Running {
    async fn next(&mut self) -> ProbeEvent {
        tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .unwrap()
            .unwrap()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.handle.await.unwrap();
    }
}

#[tokio::test]
async fn thresholds_through_the_prober_loop() {
    let a = DemoReplica::start(TcpListener::bind("127.0.3.20:0").await.unwrap()).unwrap();
    let b = DemoReplica::start(TcpListener::bind("127.0.3.21:0").await.unwrap()).unwrap();
    let plan = plan(&[(
        "contoso",
        vec![a.health_url("contoso"), b.health_url("contoso")],
    )]);
    let deep_a = plan.deep(0, 0);
    let mut book = plan.book();
    let mut r = run(&plan);

    // Every target passes once: healthy.
    while !book.first_round_done() {
        let (id, o) = r.next().await;
        book.observe(id, &o, Instant::now());
    }
    assert_eq!(
        book.masks(0, HealthMode::Deep, ReplicaMask::EMPTY)
            .routable
            .bits(),
        0b11
    );

    // Storage fails on replica a: degraded after exactly 3 consecutive failures.
    a.fail("storage", Some("contoso"));
    let mut fails = 0;
    let tr = loop {
        let (id, o) = r.next().await;
        if id == deep_a {
            fails = if o.passed() { 0 } else { fails + 1 };
            if let Err(f) = &o.result {
                assert_eq!(*f, Failure::Dependencies(vec!["storage".into()]));
            }
        }
        if let Some(tr) = observe(&mut book, id, &o) {
            assert_eq!(id, deep_a);
            break tr;
        }
    };
    assert_eq!(
        (tr.from, tr.to, fails),
        (Status::Healthy, Status::Degraded, 3)
    );
    assert!(tr.reason.to_string().contains("storage"), "{}", tr.reason);
    let v = book.masks(0, HealthMode::Deep, ReplicaMask::EMPTY);
    assert_eq!((v.routable.bits(), v.fail_open), (0b10, false));

    // Recovery after exactly 2 consecutive successes.
    a.recover(None, None);
    let mut oks = 0;
    let tr = loop {
        let (id, o) = r.next().await;
        if id == deep_a {
            oks = if o.passed() { oks + 1 } else { 0 };
        }
        if let Some(tr) = observe(&mut book, id, &o) {
            break tr;
        }
    };
    assert_eq!((tr.to, oks), (Status::Healthy, 2));
    assert_eq!(
        book.masks(0, HealthMode::Deep, ReplicaMask::EMPTY)
            .routable
            .bits(),
        0b11
    );
    let detail = book.replica_detail(0, 0, Instant::now()).0.unwrap();
    assert_eq!(
        detail.last.unwrap().document.unwrap().failing(),
        Vec::<String>::new()
    );

    r.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_hung_target_does_not_delay_a_healthy_one() {
    // The healthy replica is probed every 100 ms; the hung ones every 400 ms with a 300 ms
    // timeout. A prober that waited on hung probes would show ~300 ms holes in the healthy
    // replica's outcomes.
    let demo = DemoReplica::start(TcpListener::bind("127.0.3.30:0").await.unwrap()).unwrap();
    let hung = raw_server("127.0.3.31", Misbehave::Silent).await;
    let hung_demo = DemoReplica::start(TcpListener::bind("127.0.3.32:0").await.unwrap()).unwrap();
    hung_demo.set_hang(true);
    let fast: HealthSpec = toml::from_str(&format!(
        "url = {:?}\ninterval = \"100ms\"\ntimeout = \"50ms\"",
        demo.health_url("contoso")
    ))
    .unwrap();
    let slow = |url: String| -> HealthSpec {
        toml::from_str(&format!(
            "url = {url:?}\ninterval = \"400ms\"\ntimeout = \"300ms\""
        ))
        .unwrap()
    };
    let (h1, h2) = (
        slow(format!("http://{hung}/health")),
        slow(hung_demo.health_url("contoso")),
    );
    let server: HealthSpec = toml::from_str("mass_failure_min_targets = 100").unwrap();
    let plan = plan_of(&server, &[vec![fast, h1, h2]]);
    let deep = |i: usize| plan.deep(0, i);
    let (good, bad1, bad2) = (deep(0), deep(1), deep(2));
    let mut r = run(&plan);
    let mut good_at: Vec<Instant> = Vec::new();
    let mut bad = 0;
    while bad < 6 {
        let (id, o) = r.next().await;
        if id == good {
            assert!(o.passed());
            good_at.push(o.at);
        } else if id == bad1 || id == bad2 {
            assert_eq!(o.result, Err(Failure::Timeout));
            assert!(o.latency >= Duration::from_millis(300));
            assert!(o.latency < Duration::from_millis(450), "{:?}", o.latency);
            bad += 1;
        }
    }
    // 6 hung timeouts take at least ~1 s, in which the healthy target ran ~10 rounds.
    assert!(good_at.len() >= 7, "{}", good_at.len());
    // Interval 100 ms ± 10 ms jitter per round; generous slack for a shared machine, still
    // well under the 300 ms a hung probe would add.
    for w in good_at.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(60) && gap <= Duration::from_millis(230),
            "{gap:?}"
        );
    }
    r.stop().await;
    hung_demo.shutdown().await;
    demo.shutdown().await;
}

#[tokio::test]
async fn identical_targets_are_probed_once() {
    let demo = DemoReplica::start(TcpListener::bind("127.0.3.40:0").await.unwrap()).unwrap();
    let url = demo.health_url("shared");
    let plan = plan(&[("a", vec![url.clone()]), ("b", vec![url.clone()])]);
    // One deep target and one shallow (front door) target for both registries.
    assert_eq!(plan.probe_targets().len(), 2);
    let deep: TargetId = plan.deep(0, 0);
    assert_eq!(plan.deep(1, 0), deep);
    let mut r = run(&plan);
    let mut n = 0;
    while n < 5 {
        if r.next().await.0 == deep {
            n += 1;
        }
    }
    r.stop().await;
    let hits = demo.hits("shared");
    assert!((5..=6).contains(&hits), "{hits}");
    demo.shutdown().await;
}

/// The real checker, except that the first probe of one target panics.
struct PanicOnce {
    inner: Checker,
    victim: TargetId,
    armed: std::sync::atomic::AtomicBool,
}

impl steerdns::health::prober::Probe for PanicOnce {
    fn probe(
        &self,
        t: &steerdns::health::book::ProbeTarget,
    ) -> impl std::future::Future<Output = ProbeOutcome> + Send {
        let boom =
            t.id == self.victim && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst);
        let fut = self.inner.check(&t.check, t.timing.timeout);
        async move {
            assert!(!boom, "injected probe panic");
            fut.await
        }
    }
}

#[tokio::test]
async fn a_panicking_probe_is_restarted() {
    let demo = DemoReplica::start(TcpListener::bind("127.0.3.50:0").await.unwrap()).unwrap();
    let plan = plan(&[("contoso", vec![demo.health_url("contoso")])]);
    let deep = plan.deep(0, 0);
    let (_tx, rx_targets) = watch::channel(plan.probe_targets());
    let (etx, mut rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let probe = PanicOnce {
        inner: Checker::new().unwrap(),
        victim: deep,
        armed: true.into(),
    };
    let p = spawn_prober(probe, rx_targets, etx, stop.clone());
    let mut n = 0;
    while n < 2 {
        // Generous bound: with RUST_BACKTRACE=1 the injected panic's backtrace is symbolised
        // on this (current-thread) runtime, which takes seconds in a debug build.
        let (id, o) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if id == deep {
            assert!(o.passed());
            n += 1;
        }
    }
    assert_eq!(p.stats.panics.load(std::sync::atomic::Ordering::Relaxed), 1);
    stop.cancel();
    p.handle.await.unwrap();
    demo.shutdown().await;
}

#[tokio::test]
async fn demo_replica_http_controls() {
    let demo = DemoReplica::start(TcpListener::bind("127.0.3.60:0").await.unwrap()).unwrap();
    let base = format!("http://{}", demo.addr());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    let post = |path: &str| client.post(format!("{base}{path}")).send();

    assert_eq!(get("/").await.unwrap().status(), 200);
    assert_eq!(get("/health?registry=contoso").await.unwrap().status(), 200);
    assert_eq!(post("/fail?dep=bogus").await.unwrap().status(), 400);
    assert_eq!(
        post("/fail?dep=cache&registry=contoso")
            .await
            .unwrap()
            .status(),
        200
    );
    let r = get("/health?registry=contoso").await.unwrap();
    assert_eq!(r.status(), 503);
    let doc: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(doc["checks"]["cache"]["status"], "unhealthy");
    assert_eq!(doc["checks"]["storage"]["status"], "healthy");
    assert_eq!(
        get("/health?registry=fabrikam").await.unwrap().status(),
        200
    );
    // The front door stays up while deep health fails.
    assert_eq!(get("/").await.unwrap().status(), 200);
    // A failure for every registry, then recovery of one dependency everywhere.
    post("/fail?dep=auth").await.unwrap();
    assert_eq!(
        get("/health?registry=fabrikam").await.unwrap().status(),
        503
    );
    post("/recover?dep=auth").await.unwrap();
    assert_eq!(
        get("/health?registry=fabrikam").await.unwrap().status(),
        200
    );
    assert_eq!(get("/health?registry=contoso").await.unwrap().status(), 503);
    post("/recover?registry=contoso").await.unwrap();
    assert_eq!(get("/health?registry=contoso").await.unwrap().status(), 200);

    // Slow: the checker times out; hang: same, until recovered.
    let c = Checker::new().unwrap();
    let check = http(&demo.health_url("contoso"));
    post("/slow?ms=500").await.unwrap();
    assert_eq!(
        c.check(&check, Duration::from_millis(100)).await.result,
        Err(Failure::Timeout)
    );
    post("/slow?ms=0").await.unwrap();
    post("/hang").await.unwrap();
    assert_eq!(
        c.check(&check, Duration::from_millis(100)).await.result,
        Err(Failure::Timeout)
    );
    let state: serde_json::Value =
        serde_json::from_slice(&get("/state").await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(state["hang"], true);
    post("/recover").await.unwrap();
    assert!(c.check(&check, Duration::from_millis(500)).await.passed());
    assert!(demo.hits("contoso") >= 7);
    demo.shutdown().await;
}
