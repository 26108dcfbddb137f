//! Push, not poll: webhooks against real HTTP receivers on 127.0.15.x (an axum server in this
//! process) and the SSE stream over real HTTP, on a server with three demo replicas.
//!
//! - Every event arrives signed; the test recomputes the HMAC and compares.
//! - A 500 is retried: the receiver gets the same event id again and then takes it.
//! - A receiver that hangs holds nothing up: overrides are acknowledged, DNS answers and
//!   probes go on, its queue holds `queue` events and every other one is dropped and counted.
//! - A stream resumed with `Last-Event-ID` gets every event after that id once, in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hickory_proto::rr::RecordType;
use parking_lot::Mutex;
use steerdns::admin::context::{Command, OverrideAction, OverrideCommand};
use steerdns::demo_replica::DemoReplica;
use steerdns::overrides::Target;
use steerdns::state::view::EventView;
use tokio::time::Instant;

use crate::support::*;

const LIMIT: Duration = Duration::from_secs(20);
const SECRET: &str = "s3cret-for-tests";

/// One received POST.
#[derive(Clone, Debug)]
struct Got {
    signature: String,
    event_id: u64,
    body: Bytes,
    answered: u16,
}

#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Got>>,
    /// Answer 500 to the first delivery of each event id.
    fail_first: AtomicBool,
    /// Never answer.
    hang: AtomicBool,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let event_id: u64 = h("x-steerdns-event-id").parse().unwrap_or(0);
    if r.hang.load(Ordering::SeqCst) {
        r.got.lock().push(Got {
            signature: h("x-steerdns-signature"),
            event_id,
            body: body.clone(),
            answered: 0,
        });
        std::future::pending::<()>().await;
    }
    let mut got = r.got.lock();
    let seen = got.iter().any(|g| g.event_id == event_id);
    let status = if r.fail_first.load(Ordering::SeqCst) && !seen {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    got.push(Got {
        signature: h("x-steerdns-signature"),
        event_id,
        body,
        answered: status.as_u16(),
    });
    status
}

/// A receiver on `ip`:0: its URL and its record.
async fn receiver(ip: &str) -> (String, Arc<Receiver>, tokio_util::sync::CancellationToken) {
    let r = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .expect("bind receiver");
    let url = format!("http://{}/hook", l.local_addr().expect("addr"));
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(l, app)
            .with_graceful_shutdown(s.cancelled_owned())
            .await;
    });
    (url, r, stop)
}

/// `t=T,v1=HEX` checked against the body with the shared secret, in constant time.
fn verify(signature: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_owned()),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Some(tag): Option<Vec<u8>> = (0..v1.len())
        .step_by(2)
        .map(|i| {
            v1.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
    else {
        return false;
    };
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    ring::hmac::verify(&key, &msg, &tag).is_ok()
}

async fn replicas() -> Vec<DemoReplica> {
    let mut out = Vec::new();
    for i in 1..=3 {
        let l = tokio::net::TcpListener::bind(format!("127.0.15.{i}:0"))
            .await
            .expect("bind replica");
        out.push(DemoReplica::start(l).expect("replica"));
    }
    out
}

async fn region(s: &TestServer, disable: bool, n: usize) {
    ask(s, |reply| Command::Override {
        command: OverrideCommand {
            action: if disable {
                OverrideAction::Disable
            } else {
                OverrideAction::Enable
            },
            target: Target::Region {
                region: "southeastasia".into(),
            },
            reason: format!("drill {n}"),
            who: "test".into(),
            duration: None,
        },
        reply,
    })
    .await
    .expect("override acknowledged");
}

async fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < LIMIT, "{what}: not in {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_bounded_and_never_block() {
    let reps = replicas().await;
    let (good_url, good, stop_good) = receiver("127.0.15.10").await;
    let (hung_url, hung, stop_hung) = receiver("127.0.15.11").await;
    good.fail_first.store(true, Ordering::SeqCst);
    hung.hang.store(true, Ordering::SeqCst);
    let tables = format!(
        "[[notify.webhook]]\nurl = \"{good_url}\"\nsecret_file = \"hook.secret\"\n\
         events = [\"override\", \"incident\"]\nbackoff = \"50ms\"\nattempts = 3\n\
         [[notify.webhook]]\nurl = \"{hung_url}\"\nsecret_file = \"hook.secret\"\n\
         events = [\"override\"]\nqueue = 4\nattempts = 1\ntimeout = \"60s\"\n"
    );
    let secret = format!("{SECRET}\n");
    let s = lab_server(&reps, &["contoso"], &tables, &[("hook.secret", &secret)]).await;

    // 12 override events (6 disables, 6 enables), each acknowledged although one receiver
    // never answers (its attempt deadline is 60 s, three times the wait here). The hung
    // receiver has the first one before the others are made, so exactly one is in flight.
    const N: usize = 12;
    let acked = |n: usize| {
        let s = &s;
        async move {
            tokio::time::timeout(LIMIT, region(s, n.is_multiple_of(2), n))
                .await
                .expect("an override waited on a webhook");
        }
    };
    acked(0).await;
    wait_until("the hung receiver holds the first event", || {
        hung.got.lock().len() == 1
    })
    .await;
    for n in 1..N {
        acked(n).await;
    }

    // DNS answers and probes go on while the hung receiver holds its connection.
    let hits = reps[0].hits("contoso");
    let q = query("contoso.registry.example.", RecordType::A, None);
    let m = udp(s.addr, &q).await;
    assert!(!m.answers.is_empty(), "answered while a webhook hangs");
    wait_until("probes go on", || reps[0].hits("contoso") >= hits + 3).await;

    // The good receiver: each override delivered after one 500, signed, in order of ids.
    wait_until("all override events delivered", || {
        let got = good.got.lock();
        let delivered: BTreeSet<u64> = got
            .iter()
            .filter(|g| g.answered == 204)
            .filter(|g| g.body.windows(10).any(|w| w == b"\"override\""))
            .map(|g| g.event_id)
            .collect();
        let ids: BTreeSet<u64> = got.iter().map(|g| g.event_id).collect();
        let taken: BTreeSet<u64> = got
            .iter()
            .filter(|g| g.answered == 204)
            .map(|g| g.event_id)
            .collect();
        delivered.len() == N && ids == taken
    })
    .await;
    let got = good.got.lock().clone();
    let mut tries: BTreeMap<u64, Vec<u16>> = BTreeMap::new();
    for g in &got {
        assert!(
            verify(&g.signature, &g.body),
            "bad signature on event {}",
            g.event_id
        );
        let e: EventView = serde_json::from_slice(&g.body).expect("event json");
        assert_eq!(e.id, g.event_id);
        tries.entry(g.event_id).or_default().push(g.answered);
    }
    for (id, t) in &tries {
        assert_eq!(
            t,
            &[500, 204],
            "event {id}: one 500, then retried and taken"
        );
    }
    // A tampered body does not verify.
    let mut bad = got[0].body.to_vec();
    bad[0] ^= 1;
    assert!(!verify(&got[0].signature, &bad));
    // The incident events came too (the disabled region), with the incident attached.
    let incidents: Vec<EventView> = got
        .iter()
        .filter(|g| g.answered == 204)
        .filter_map(|g| serde_json::from_slice::<EventView>(&g.body).ok())
        .filter(|e| e.incident.is_some())
        .collect();
    assert!(!incidents.is_empty(), "incident events pushed");
    let first = incidents[0].incident.as_ref().expect("incident");
    assert_eq!(first.incident.cause.resource, "southeastasia");

    // The hung receiver took one event and hangs on it; its queue holds 4 of the other 11;
    // 7 were dropped.
    assert_eq!(hung.got.lock().len(), 1);
    let admin = s.handles.admin.expect("admin");
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let label = format!("webhook=\"{hung_url}\"");
    assert_eq!(
        metric(&text, "steerdns_webhook_dropped_events_total", &[&label]),
        (N - 4 - 1) as f64,
        "{text}"
    );
    let good_label = format!("webhook=\"{good_url}\"");
    assert!(metric(&text, "steerdns_webhook_retries_total", &[&good_label]) >= N as f64);

    s.stop().await;
    stop_good.cancel();
    stop_hung.cancel();
    for r in reps {
        r.shutdown().await;
    }
}

/// Read SSE events (id, data) off a streaming response until `n` arrived.
async fn read_events(resp: &mut reqwest::Response, buf: &mut String, n: usize) -> Vec<EventView> {
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < n {
        assert!(
            start.elapsed() < LIMIT,
            "stream: {} of {n} events",
            out.len()
        );
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            assert!(!block.contains("event: gap"), "no gap expected: {block}");
            if !data.is_empty() {
                out.push(serde_json::from_str(&data.join("\n")).expect("event json"));
            }
            continue;
        }
        let chunk = tokio::time::timeout(LIMIT, resp.chunk())
            .await
            .expect("a chunk in time")
            .expect("stream open")
            .expect("not ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_from_last_event_id_without_loss() {
    let reps = replicas().await;
    let s = lab_server(&reps, &["contoso"], "", &[]).await;
    let admin = s.handles.admin.expect("admin");
    let url = format!("http://{admin}/v1/events/stream");
    let http = reqwest::Client::new();
    let mut resp = http.get(&url).send().await.expect("stream");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    // Live: four overrides, each an override event (and incident events between them).
    for n in 0..4usize {
        region(&s, n.is_multiple_of(2), n).await;
    }
    let mut buf = String::new();
    let first = read_events(&mut resp, &mut buf, 3).await;
    let last = first.last().expect("events").id;
    drop(resp);
    // Disconnected: more events happen.
    for n in 4..10usize {
        region(&s, n.is_multiple_of(2), n).await;
    }
    // Resume after the last one read.
    let mut resp = http
        .get(&url)
        .header("Last-Event-ID", last.to_string())
        .send()
        .await
        .expect("resume");
    let all: Vec<EventView> = serde_json::from_slice(
        &reqwest::get(format!("http://{admin}/v1/events"))
            .await
            .expect("events")
            .bytes()
            .await
            .expect("body"),
    )
    .expect("json");
    let want: Vec<u64> = all.iter().map(|e| e.id).filter(|id| *id > last).collect();
    let mut buf = String::new();
    let resumed = read_events(&mut resp, &mut buf, want.len()).await;
    let ids: Vec<u64> = resumed.iter().map(|e| e.id).collect();
    assert_eq!(ids, want, "every event after {last}, once, in order");
    let ids: Vec<u64> = first.iter().chain(&resumed).map(|e| e.id).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "no hole across the reconnect: {ids:?}"
    );
    for n in 4..10 {
        let drill = format!("drill {n}");
        assert!(
            resumed.iter().any(|e| e.message.contains(&drill)),
            "{drill} missing after the reconnect"
        );
    }
    s.stop().await;
    for r in reps {
        r.shutdown().await;
    }
}

/// The CLI clients of push and incidents, as an operator runs them: `steerdns watch` prints
/// one line per event (resuming after `--after`), `steerdns incidents` shows the disabled
/// region's incident, `steerdns traffic` its table, `steerdns healthcheck` exits 0 when ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_watches_events_and_shows_incidents_and_traffic() {
    let reps = replicas().await;
    let s = lab_server(&reps, &["contoso"], "", &[]).await;
    let admin = format!("http://{}", s.handles.admin.expect("admin"));
    let cli = |args: &[&str]| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_steerdns"));
        c.args(args).args(["--admin", &admin]).kill_on_drop(true);
        c
    };
    let out = cli(&["healthcheck"]).output().await.expect("healthcheck");
    assert!(out.status.success(), "{out:?}");
    // Follow from the newest event on; the next two are the override and its incident.
    let newest: Vec<EventView> = serde_json::from_slice(
        &reqwest::get(format!("{admin}/v1/events?limit=1"))
            .await
            .expect("events")
            .bytes()
            .await
            .expect("body"),
    )
    .expect("json");
    let last = newest.last().map_or(0, |e| e.id);
    let watch = cli(&["watch", "--after", &last.to_string(), "--count", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("watch");
    region(&s, true, 1).await;
    let out = tokio::time::timeout(LIMIT, watch.wait_with_output())
        .await
        .expect("watch ends after two events")
        .expect("watch");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("override") && lines[0].contains("drill 1"),
        "{text}"
    );
    assert!(
        lines[1].contains("incident") && lines[1].contains("region southeastasia disabled"),
        "{text}"
    );

    let out = cli(&["incidents"]).output().await.expect("incidents");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("region southeastasia disabled"), "{text}");
    assert!(
        text.contains("1 registry rerouted from southeastasia -> "),
        "{text}"
    );
    let out = cli(&["incidents", "1"]).output().await.expect("incident 1");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("contoso\n") && text.contains("# incident 1: 1 registry\n"),
        "{text}"
    );

    let q = query("contoso.registry.example.", RecordType::A, None);
    assert!(!udp(s.addr, &q).await.answers.is_empty());
    let out = cli(&["traffic"]).output().await.expect("traffic");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("CLIENT GROUP"), "{text}");
    assert!(text.contains("answered: westeurope 100.0%"), "{text}");
    // Once a minute closes (the sampler does it at the boundary; here by hand), the heaviest
    // registries are listed with their client groups.
    for _ in 0..200 {
        assert!(!udp(s.addr, &q).await.answers.is_empty());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    s.handles
        .traffic
        .close_minute(now - now % 60, &s.handles.control.commands)
        .await;
    let out = cli(&["traffic"]).output().await.expect("traffic");
    let text = String::from_utf8_lossy(&out.stdout);
    let heavy = text
        .lines()
        .skip_while(|l| !l.starts_with("HEAVIEST REGISTRIES"))
        .nth(1)
        .unwrap_or_default();
    assert!(heavy.starts_with("contoso "), "{text}");
    assert!(heavy.contains("->westeurope "), "{text}");
    s.stop().await;
    for r in reps {
        r.shutdown().await;
    }
}
