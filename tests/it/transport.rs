//! TCP limits (idle, whole-message and write deadlines, per-client and global caps) and
//! bounded graceful shutdown, over real sockets on loopback.

use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

fn framed(msg: &Message) -> Vec<u8> {
    let b = msg.to_vec().expect("enc");
    let mut f = (b.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(&b);
    f
}

async fn ask(stream: &mut TcpStream) -> Option<Message> {
    stream
        .write_all(&framed(&query(
            "www.registry.example.",
            RecordType::A,
            None,
        )))
        .await
        .ok()?;
    read_frame(stream)
        .await
        .map(|b| Message::from_vec(&b).expect("decode"))
}

/// Wait until the peer closes: read returns 0 (or an error). Bounded by `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let s = TestServer::start(&demo_config("[server.tcp]\nidle_timeout = \"300ms\"\n")).await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    assert!(ask(&mut c).await.is_some(), "answers first");
    // The server closes the connection after 300 ms of silence; wait for that, bounded.
    assert!(
        closed_within(&mut c, Duration::from_secs(5)).await,
        "closed when idle"
    );
    s.stop().await;
}

/// A client that pipelines queries and never reads: write until the kernel buffers on both
/// sides are full (the server's write then blocks). Returns the bytes written.
async fn fill_until_blocked(stream: &mut TcpStream) -> usize {
    let q = framed(&query("www.registry.example.", RecordType::A, None));
    let mut batch = Vec::new();
    for _ in 0..256 {
        batch.extend_from_slice(&q);
    }
    let mut written = 0;
    // Each write either completes or stalls; a stall of 300 ms means the pipes are full.
    while let Ok(Ok(())) =
        tokio::time::timeout(Duration::from_millis(300), stream.write_all(&batch)).await
    {
        written += batch.len();
        assert!(written < 1 << 30, "the server never stopped reading");
    }
    written
}

/// Wait (bounded) until the server has closed a connection whose client never reads: the
/// client's own (blocked) writes fail once the server's close resets it. Reading would
/// drain the answers and unblock the server, so this only writes.
async fn gone_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let q = framed(&query("www.registry.example.", RecordType::A, None));
    let probe = async {
        loop {
            if stream.write_all(&q).await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(limit, probe).await.is_ok()
}

fn from(ip: &str) -> std::net::SocketAddr {
    format!("{ip}:0").parse().expect("addr")
}

async fn connect_from(ip: &str, server: std::net::SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(from(ip)).expect("bind");
    sock.connect(server).await.expect("connect")
}

#[tokio::test]
async fn the_global_cap_closes_the_longest_idle_connection() {
    let s = TestServer::start(&demo_config("[server.tcp]\nmax_connections = 2\n")).await;
    let mut a = TcpStream::connect(s.addr).await.expect("a");
    let mut b = TcpStream::connect(s.addr).await.expect("b");
    assert!(ask(&mut b).await.is_some());
    assert!(
        ask(&mut a).await.is_some(),
        "a is now the most recently active"
    );

    // A newcomer at the cap is served; the longest-idle (b) is closed for it.
    let mut c = TcpStream::connect(s.addr).await.expect("c");
    assert!(ask(&mut c).await.is_some(), "the newcomer is answered");
    assert!(
        closed_within(&mut b, Duration::from_secs(5)).await,
        "b evicted"
    );
    assert!(ask(&mut a).await.is_some(), "a keeps working");
    let m = s.handles.stats.metrics.transport();
    assert_eq!(m.tcp_evicted.load(std::sync::atomic::Ordering::Relaxed), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_flood_from_one_address_hits_the_per_client_cap() {
    let s = TestServer::start(&demo_config("[server.tcp]\nmax_per_client = 4\n")).await;
    let mut flood = Vec::new();
    for _ in 0..4 {
        let mut c = connect_from("127.0.3.1", s.addr).await;
        assert!(ask(&mut c).await.is_some(), "within the cap: served");
        flood.push(c);
    }
    // The fifth and later from that address are closed at once.
    for _ in 0..20 {
        let mut c = connect_from("127.0.3.1", s.addr).await;
        assert!(closed_within(&mut c, Duration::from_secs(5)).await);
    }
    // Another address is served, and so are the flood's first four.
    let mut good = connect_from("127.0.3.2", s.addr).await;
    assert!(ask(&mut good).await.is_some());
    assert!(ask(&mut flood[0]).await.is_some());
    assert!(
        s.handles
            .stats
            .tcp_refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 20
    );
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_at_the_write_deadline() {
    let s = TestServer::start(&demo_config("[server.tcp]\nwrite_timeout = \"500ms\"\n")).await;
    let mut hog = connect_from("127.0.3.3", s.addr).await;
    let written = fill_until_blocked(&mut hog).await;
    assert!(written > 0);
    // Meanwhile a well-behaved client is answered.
    let mut good = connect_from("127.0.3.4", s.addr).await;
    assert!(ask(&mut good).await.is_some());
    // The server gives up on the hog's blocked write and closes it.
    assert!(
        gone_within(&mut hog, Duration::from_secs(30)).await,
        "hog closed"
    );
    // (A new connection: the first one may have reached the idle timeout by now.)
    let mut good = connect_from("127.0.3.4", s.addr).await;
    assert!(ask(&mut good).await.is_some());
    s.stop().await;
}

#[tokio::test]
async fn a_client_dripping_one_byte_at_a_time_is_closed_at_the_message_deadline() {
    let s = TestServer::start(&demo_config(
        "[server.tcp]\nidle_timeout = \"30s\"\nmessage_timeout = \"500ms\"\n",
    ))
    .await;
    let q = framed(&query("www.registry.example.", RecordType::A, None));
    let drip = connect_from("127.0.3.5", s.addr).await;
    let (mut r, mut w) = drip.into_split();
    // One byte every 100 ms: each gap is far inside the idle timeout, the whole message is
    // not inside the message timeout.
    let dripper = tokio::spawn(async move {
        let mut sent = 0;
        for b in &q {
            if w.write_all(&[*b]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (sent, q.len())
    });
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "closed: {closed:?}"
    );
    let mut good = connect_from("127.0.3.6", s.addr).await;
    assert!(ask(&mut good).await.is_some(), "others are answered");
    dripper.abort();
    s.stop().await;
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_with_a_non_reading_client() {
    let s = TestServer::start(&demo_config(
        "shutdown_grace = \"300ms\"\n[server.tcp]\nwrite_timeout = \"60s\"\n",
    ))
    .await;
    let mut hog = connect_from("127.0.3.7", s.addr).await;
    fill_until_blocked(&mut hog).await;
    let started = std::time::Instant::now();
    // stop() fails the test unless the server ends within ANSWER_WAIT (5 s), far less than
    // the 60 s write timeout: the grace ended the blocked write.
    s.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn shutdown_stops_listeners_and_connections() {
    let s = TestServer::start(&demo_config("")).await;
    let addr = s.addr;
    let mut c = TcpStream::connect(addr).await.expect("connect");
    assert!(ask(&mut c).await.is_some());
    // stop() waits for every listener and connection task to finish (bounded).
    s.stop().await;
    assert!(
        closed_within(&mut c, Duration::from_secs(5)).await,
        "open connection closed"
    );
    assert!(TcpStream::connect(addr).await.is_err(), "listener gone");
    assert!(
        udp_raw(
            addr,
            &query("www.registry.example.", RecordType::A, None)
                .to_vec()
                .expect("e")
        )
        .await
        .is_none()
    );
}

#[tokio::test]
async fn live_names_each_transport_and_the_writer_until_they_end() {
    let s = TestServer::start(&demo_config("")).await;
    let liveness = s.handles.liveness.clone();
    assert!(liveness.dead().is_empty(), "{:?}", liveness.dead());
    let udp = format!("udp {}", s.addr);
    let tcp = format!("tcp {}", s.addr);
    s.stop().await;
    // Every task that ended is named: the UDP thread, the TCP listener, the writer.
    let dead = liveness.dead();
    for name in [udp.as_str(), tcp.as_str(), "state"] {
        assert!(dead.iter().any(|d| d == name), "{name} not in {dead:?}");
    }
}

const OPS: &str = "ops:0123456789abcdef0123";
const OLD: &str = "old:fedcba9876543210fedc";

/// POST /v1/reload with a bearer token: the status and the body.
async fn reload(s: &TestServer, token: &str) -> (u16, String) {
    let admin = s.handles.admin.expect("admin listener");
    let r = reqwest::Client::new()
        .post(format!("http://{admin}/v1/reload"))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin reachable");
    (r.status().as_u16(), r.text().await.expect("body"))
}

fn secret(line: &str) -> &str {
    line.split_once(':').expect("NAME:TOKEN").1
}

#[tokio::test]
async fn a_reload_applies_tcp_limits_and_the_admin_token_file() {
    let config = |per_client: u32| {
        demo_config(&format!(
            "[server.tcp]\nmax_per_client = {per_client}\n[admin]\ntoken_file = \"tokens\"\n"
        ))
    };
    let tokens = format!("{OPS}\n{OLD}\n");
    let s = TestServer::start_with_admin_files(&config(1), &[("tokens", &tokens)]).await;
    let mut first = connect_from("127.0.3.9", s.addr).await;
    assert!(ask(&mut first).await.is_some());
    let mut second = connect_from("127.0.3.9", s.addr).await;
    assert!(
        closed_within(&mut second, Duration::from_secs(5)).await,
        "over the per-client cap of 1"
    );
    assert_eq!(reload(&s, secret(OLD)).await.0, 200, "both tokens work");

    // Revoke `old` and raise the cap, then reload: both apply without a restart.
    std::fs::write(s.dir().join("tokens"), format!("{OPS}\n")).expect("write");
    std::fs::write(s.dir().join("steerdns.toml"), config(2)).expect("write");
    assert_eq!(reload(&s, secret(OPS)).await.0, 200);
    let (status, body) = reload(&s, secret(OLD)).await;
    assert_eq!(status, 401, "the revoked token is refused: {body}");
    let mut second = connect_from("127.0.3.9", s.addr).await;
    assert!(
        ask(&mut second).await.is_some(),
        "the new cap admits a second"
    );
    assert!(ask(&mut first).await.is_some(), "the first is still served");

    // A token file that does not load rejects the reload, naming file and line; the
    // tokens in service keep working.
    std::fs::write(s.dir().join("tokens"), "# rotated\nops:short\n").expect("write");
    let (status, body) = reload(&s, secret(OPS)).await;
    assert_ne!(status, 200, "{body}");
    assert!(
        body.contains("tokens: line 2: token is shorter than 16 characters"),
        "{body}"
    );
    assert_eq!(reload(&s, secret(OLD)).await.0, 401);
    std::fs::write(s.dir().join("tokens"), format!("{OPS}\n")).expect("write");
    let (status, body) = reload(&s, secret(OPS)).await;
    assert_eq!(status, 200, "still the old policy: {body}");
    assert!(
        body.contains("\"reloaded\""),
        "nothing needs a restart: {body}"
    );

    // What a reload cannot apply is named in its answer.
    let moved = config(2).replace("[admin]\n", "[admin]\nevent_history = 9\n");
    std::fs::write(s.dir().join("steerdns.toml"), moved).expect("write");
    let (status, body) = reload(&s, secret(OPS)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("changed but applied only after a restart: admin.event_history"),
        "{body}"
    );
    s.stop().await;
}

/// The responses each UDP worker has sent, from `/metrics` (`steerdns_udp_worker_responses`).
fn worker_responses(s: &TestServer, worker: &str) -> u64 {
    let text = s.handles.stats.metrics.render();
    let key = format!("steerdns_udp_worker_responses_total{{worker=\"{worker}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn two_udp_workers_on_one_address_both_answer() {
    let s = TestServer::start_with_workers(&demo_config(""), 2).await;
    let names = [format!("udp {} #1", s.addr), format!("udp {} #2", s.addr)];
    let packet = query("www.registry.example.", RecordType::A, None)
        .to_vec()
        .expect("encode");
    // The kernel spreads flows over the SO_REUSEPORT group by a hash of the source address
    // and port: a new source port per query until each worker has answered. Each query waits
    // for its answer, so the counters are read after the answering worker counted it. With
    // 200 ports, all landing on one worker has probability 2^-199.
    let mut sent = 0;
    while names.iter().any(|n| worker_responses(&s, n) == 0) {
        assert!(
            sent < 200,
            "one worker never answered after {sent} source ports"
        );
        let answer = udp_raw(s.addr, &packet).await.expect("an answer");
        assert_eq!(Message::from_vec(&answer).expect("decode").answers.len(), 1);
        sent += 1;
    }
    // Every answer was counted by exactly one worker.
    let total: u64 = names.iter().map(|n| worker_responses(&s, n)).sum();
    assert_eq!(total, sent);
    let liveness = s.handles.liveness.clone();
    s.stop().await;
    let dead = liveness.dead();
    for name in &names {
        assert!(dead.iter().any(|d| d == name), "{name} not in {dead:?}");
    }
}
