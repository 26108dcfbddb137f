//! Failover benchmark (not a test): how long after a replica's deep health starts failing
//! does the DNS answer move, and how long until a caching client sees the new answer.
//!
//! `cargo bench --bench failover`
//!
//! Setup, all in this process and on loopback: steerdns on 127.0.12.1 (UDP), three demo
//! replicas (real HTTP deep-health endpoints) on 127.0.12.2-4 for westeurope, eastus and
//! southeastasia; `[health] interval = "1s"`, `timeout = "500ms"`, default jitter
//! (`interval / 10` = ±100 ms per round), `failure_threshold = 3`, `success_threshold = 2`;
//! registry TTL 5 s. The client queries from 127.0.1.44, which the repository's latency table
//! places nearest westeurope, then eastus.
//!
//! Per trial: wait for a westeurope answer, sleep a random 0-1000 ms, fail westeurope's
//! `storage` dependency (t0), poll the answer every 50 ms until it moves to eastus
//! (detection = first moved answer - t0). Time-to-new-answer is reported three ways:
//!
//! - `det+TTL`: detection + TTL, the bound for a client that cached the old answer just
//!   before the change;
//! - `worst`: measured; a cache filled by the last poll that still saw the old answer
//!   re-queries when that answer's TTL runs out;
//! - `cache`: measured; one cache that runs for the whole benchmark and re-queries only when
//!   its cached TTL expires (its phase against the change is arbitrary, so it shows a typical
//!   client rather than the worst).
//!
//! The replica's probe arrivals are watched as well, so each detection splits into the wait
//! for the first failed probe (`1st probe`), the two further intervals (`1st->3rd`), and the
//! publish and poll lag after the third (`3rd->ans`). Then westeurope recovers and the trial
//! waits for the answer to come back (`recovery`, two successes).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use parking_lot::Mutex;
use rand::Rng;
use steerdns::app;
use steerdns::demo_replica::{DemoReplica, lab_config};
use steerdns::server::Sockets;
use steerdns::state::Snapshot;
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

const REGISTRY: &str = "contoso";
const QNAME: &str = "contoso.registry.example.";
const WEU: &str = "192.0.2.10";
const EUS: &str = "198.51.100.10";
/// A client the latency table puts nearest westeurope, then eastus.
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 44);
const SERVER: Ipv4Addr = Ipv4Addr::new(127, 0, 12, 1);

const INTERVAL: Duration = Duration::from_secs(1);
/// The default jitter (`interval / 10`), stated here for the expected range.
const JITTER: Duration = Duration::from_millis(100);
const FAILURE_THRESHOLD: u32 = 3;
const SUCCESS_THRESHOLD: u32 = 2;
const TTL: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);
const TRIALS: usize = 20;
/// The most any one wait may take before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(15);
/// How long one DNS query may take before it counts as lost (and is asked again).
const QUERY_WAIT: Duration = Duration::from_millis(500);

/// Queries that got no answer within `QUERY_WAIT`.
static LOST: AtomicU64 = AtomicU64::new(0);

/// Cancels the server on drop, so an early error return does not leave its UDP thread
/// running (the runtime would wait for it forever before printing the error).
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// One DNS answer as a client sees it.
#[derive(Clone, Debug)]
struct Answer {
    /// When the answer arrived.
    at: Instant,
    /// The first A record.
    addr: String,
    /// Its TTL.
    ttl: Duration,
}

/// Query `QNAME`/A from `CLIENT` over real UDP.
async fn ask(server: SocketAddr) -> Result<Answer> {
    let mut q = Message::new(rand::rng().random(), MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(QNAME)?, RecordType::A));
    let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(CLIENT), 0)).await?;
    sock.send_to(&q.to_vec()?, server).await?;
    let mut buf = [0u8; 1500];
    let Ok(got) = tokio::time::timeout(QUERY_WAIT, sock.recv_from(&mut buf)).await else {
        LOST.fetch_add(1, Ordering::Relaxed);
        bail!("no DNS answer within {QUERY_WAIT:?}");
    };
    let (n, _) = got?;
    let at = Instant::now();
    let m = Message::from_vec(&buf[..n])?;
    match m.answers.first() {
        Some(r) => match &r.data {
            RData::A(a) => Ok(Answer {
                at,
                addr: a.to_string(),
                ttl: Duration::from_secs(u64::from(r.ttl)),
            }),
            other => bail!("not an A record: {other:?}"),
        },
        None => bail!("empty answer: {m:?}"),
    }
}

/// Poll every `POLL` until the answer is `want`; returns that answer and the last one
/// before it (None when the first poll already matched).
async fn wait_for(server: SocketAddr, want: &str) -> Result<(Answer, Option<Answer>)> {
    let start = Instant::now();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        tick.tick().await;
        if start.elapsed() > LIMIT {
            bail!("the answer never became {want} within {LIMIT:?}");
        }
        let Ok(a) = ask(server).await else {
            // Lost (counted in LOST): poll again.
            continue;
        };
        if a.addr == want {
            return Ok((a, last));
        }
        last = Some(a);
    }
}

/// Wait until `f` holds, checking every 5 ms.
async fn wait_until(what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > LIMIT {
            bail!("never: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// The measurements of one trial.
struct Trial {
    /// Wait for the first failed probe, first to third failed probe, third probe to the moved
    /// answer (None when fewer than three probes were seen after t0).
    split: Option<(Duration, Duration, Duration)>,
    detection: Duration,
    worst: Duration,
    cache: Duration,
    recovery: Duration,
}

/// A summary row: its label and the measurement it summarises.
type Row = (&'static str, fn(&Trial) -> Option<Duration>);

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// Min, median and max of a non-empty list (the median of an even count is the mean of the middle two).
fn summary(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let n = v.len();
    let median = if n.is_multiple_of(2) {
        (v[n / 2 - 1] + v[n / 2]) / 2
    } else {
        v[n / 2]
    };
    (v[0], median, v[n - 1])
}

#[tokio::main]
async fn main() -> Result<()> {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench targets without it,
    // and a three-minute benchmark is no test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("failover benchmark: run it with `cargo bench --bench failover`");
        return Ok(());
    }
    let began = Instant::now();
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));

    // Three replicas, one per region.
    let mut replicas = Vec::new();
    for i in 2..=4 {
        let l = tokio::net::TcpListener::bind((Ipv4Addr::new(127, 0, 12, i), 0)).await?;
        replicas.push(DemoReplica::start(l)?);
    }
    let config = lab_config(
        &repo,
        &format!("{SERVER}:0"),
        &replicas,
        &[REGISTRY],
        &format!("{}s", TTL.as_secs()),
        &format!(
            "[health]\ninterval = \"{}s\"\ntimeout = \"500ms\"\n\
             failure_threshold = {FAILURE_THRESHOLD}\nsuccess_threshold = {SUCCESS_THRESHOLD}\n",
            INTERVAL.as_secs()
        ),
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("steerdns.toml");
    std::fs::write(&path, &config)?;
    let snapshot = Snapshot::load(&path).map_err(|e| anyhow!("config does not load:\n{e}"))?;
    let sockets = Sockets::bind(&[SocketAddr::new(IpAddr::V4(SERVER), 0)])?;
    let server = sockets.udp[0].local_addr()?;
    let shutdown = CancellationToken::new();
    let (handles, task) = app::spawn(snapshot, sockets, shutdown.clone())?;
    let _stop = StopOnDrop(shutdown.clone());

    println!("steerdns failover benchmark: `cargo bench --bench failover`");
    println!(
        "interval {}s, timeout 500ms, jitter ±{}ms (default interval/10), failure_threshold {FAILURE_THRESHOLD}, \
         success_threshold {SUCCESS_THRESHOLD}, TTL {}s, poll every {}ms, {TRIALS} trials",
        INTERVAL.as_secs(),
        JITTER.as_millis(),
        TTL.as_secs(),
        POLL.as_millis()
    );
    println!(
        "server {server}, client {CLIENT}, westeurope replica {}",
        replicas[0].addr()
    );

    // The long-running cache: re-queries only when its cached answer's TTL runs out.
    let fetches: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let cache = {
        let fetches = fetches.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let ttl = match ask(server).await {
                    Ok(a) => {
                        let ttl = a.ttl;
                        fetches.lock().push(a);
                        ttl
                    }
                    Err(_) => Duration::from_millis(100),
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(ttl) => {}
                }
            }
        })
    };

    let mut first_round = handles.control.first_round.clone();
    tokio::time::timeout(LIMIT, first_round.wait_for(|done| *done))
        .await
        .context("first probe round in time")??;

    println!();
    println!(
        "{:>5} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>9}",
        "trial",
        "1st probe",
        "1st->3rd",
        "3rd->ans",
        "detection",
        "det+TTL",
        "worst",
        "cache",
        "recovery"
    );
    let mut trials = Vec::new();
    let mut notes = Vec::new();
    for n in 1..=TRIALS {
        wait_for(server, WEU).await?;
        // Record every probe arrival at westeurope from here until the answer moves.
        let hits0 = replicas[0].hits(REGISTRY);
        let seen = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let stop_watch = CancellationToken::new();
        let watch = {
            let seen = seen.clone();
            let stop = stop_watch.clone();
            let replica = &replicas[0];
            async move {
                let mut last = hits0;
                while !stop.is_cancelled() {
                    let h = replica.hits(REGISTRY);
                    if h > last {
                        let now = Instant::now();
                        for _ in last..h {
                            seen.lock().push(now);
                        }
                        last = h;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        };
        let inject_and_poll = async {
            let pause = Duration::from_millis(rand::rng().random_range(0..1000));
            tokio::time::sleep(pause).await;
            let t0 = Instant::now();
            replicas[0].fail("storage", Some(REGISTRY));
            let r = wait_for(server, EUS).await;
            stop_watch.cancel();
            r.map(|(moved, last_old)| (t0, moved, last_old))
        };
        let (polled, ()) = tokio::join!(inject_and_poll, watch);
        let (t0, moved, last_old) = polled?;
        let detection = moved.at - t0;
        let arrivals = seen.lock().clone();
        let (before, after): (Vec<Instant>, Vec<Instant>) =
            arrivals.into_iter().partition(|a| *a <= t0);
        let split = if after.len() >= FAILURE_THRESHOLD as usize {
            let third = after[FAILURE_THRESHOLD as usize - 1];
            Some((
                after[0] - t0,
                third - after[0],
                moved.at.saturating_duration_since(third),
            ))
        } else {
            // Fewer failed probes than the threshold seen after t0: say how close the
            // previous probe came to t0 (a probe counted just before t0 that read the failed
            // state just after it is still a failed probe).
            let prev = before.last().map(|p| t0 - *p);
            notes.push(format!(
                "trial {n}: only {} probe(s) arrived after t0 before the answer moved; the one \
                 before arrived {} before t0",
                after.len(),
                prev.map_or("(none seen)".to_owned(), |d| format!(
                    "{} ms",
                    d.as_millis()
                ))
            ));
            None
        };

        // Worst cache: filled by the last poll that still saw westeurope.
        let last_old = last_old.context("the first poll after the failure already moved")?;
        tokio::time::sleep_until(last_old.at + last_old.ttl).await;
        let requery = match ask(server).await {
            Ok(a) => a,
            Err(_) => ask(server).await?,
        };
        if requery.addr != EUS {
            bail!("the worst-case cache re-query saw {}", requery.addr);
        }
        let worst = requery.at - t0;

        // The long-running cache: its first fetch after the change.
        let since = last_old.at;
        let mut cache_at = None;
        wait_until("the cache sees the new answer", || {
            cache_at = fetches
                .lock()
                .iter()
                .find(|a| a.at > since && a.addr == EUS)
                .map(|a| a.at);
            cache_at.is_some()
        })
        .await?;
        let cache = cache_at.context("cache fetch")? - t0;

        let r0 = Instant::now();
        replicas[0].recover(None, None);
        let (back, _) = wait_for(server, WEU).await?;
        let recovery = back.at - r0;

        let t = Trial {
            split,
            detection,
            worst,
            cache,
            recovery,
        };
        println!(
            "{n:>5} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>9}",
            t.split.map_or("-".to_owned(), |s| secs(s.0)),
            t.split.map_or("-".to_owned(), |s| secs(s.1)),
            t.split.map_or("-".to_owned(), |s| secs(s.2)),
            secs(t.detection),
            secs(t.detection + TTL),
            secs(t.worst),
            secs(t.cache),
            secs(t.recovery)
        );
        trials.push(t);
    }

    println!();
    println!(
        "(seconds)            {:>9} {:>9} {:>9}",
        "min", "median", "max"
    );
    let rows: [Row; 8] = [
        ("detection", |t| Some(t.detection)),
        ("  1st failed probe", |t| t.split.map(|s| s.0)),
        ("  1st -> 3rd probe", |t| t.split.map(|s| s.1)),
        ("  3rd probe -> ans", |t| t.split.map(|s| s.2)),
        ("new answer det+TTL", |t| Some(t.detection + TTL)),
        ("new answer worst", |t| Some(t.worst)),
        ("new answer cache", |t| Some(t.cache)),
        ("recovery", |t| Some(t.recovery)),
    ];
    for (label, f) in rows {
        let v: Vec<Duration> = trials.iter().filter_map(f).collect();
        if v.is_empty() {
            continue;
        }
        let (lo, mid, hi) = summary(v);
        println!(
            "{label:<20} {:>9} {:>9} {:>9}",
            secs(lo),
            secs(mid),
            secs(hi)
        );
    }
    for note in &notes {
        println!("note: {note}");
    }
    let lo = 2 * INTERVAL - 2 * JITTER;
    let hi = 3 * INTERVAL + 4 * JITTER;
    println!();
    println!(
        "expected detection: (2, 3] intervals = (2.000, 3.000] s typical; with ±{}ms jitter per \
         round the hard bounds are ({}, {}] s, plus probe, publish and {}ms poll lag",
        JITTER.as_millis(),
        secs(lo),
        secs(hi),
        POLL.as_millis()
    );
    println!(
        "DNS queries without an answer within {QUERY_WAIT:?} (asked again): {}",
        LOST.load(Ordering::Relaxed)
    );
    println!("total run time {:.1} s", began.elapsed().as_secs_f64());

    shutdown.cancel();
    cache.await?;
    tokio::time::timeout(LIMIT, task)
        .await
        .context("server stops in time")??;
    for r in replicas {
        r.shutdown().await;
    }
    drop(dir);
    Ok(())
}
