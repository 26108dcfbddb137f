//! Response rate limiting over real UDP: a spoofed-source flood from one /24 (many
//! 127.0.7.x sources, loopback lets us bind any of them) is limited, with TC slips in the
//! configured ratio, while another /24 keeps full service and TCP from the limited /24 works.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use crate::support::*;

/// Send one query from each of `sources` at once, then collect answers until `wait` passes:
/// (full answers, truncated answers).
async fn burst(server: SocketAddr, sources: &[String], wait: Duration) -> (usize, usize) {
    let q = query("www.registry.example.", RecordType::A, None)
        .to_vec()
        .expect("encode");
    burst_of(server, &q, 1, sources, wait).await
}

/// [`burst`] of query `q`, whose full answer has `records` answer records.
async fn burst_of(
    server: SocketAddr,
    q: &[u8],
    records: usize,
    sources: &[String],
    wait: Duration,
) -> (usize, usize) {
    let mut socks = Vec::new();
    for s in sources {
        let sock = UdpSocket::bind(format!("{s}:0")).await.expect("bind");
        sock.send_to(q, server).await.expect("send");
        socks.push(sock);
    }
    let deadline = tokio::time::Instant::now() + wait;
    let (mut full, mut tc) = (0, 0);
    let mut buf = vec![0u8; 4096];
    for sock in &socks {
        if let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            let m = Message::from_vec(&buf[..n]).expect("decode");
            if m.metadata.truncation {
                assert!(m.answers.is_empty(), "a slip carries no records");
                tc += 1;
            } else {
                assert_eq!(m.answers.len(), records);
                full += 1;
            }
        }
    }
    (full, tc)
}

#[tokio::test]
async fn a_spoofed_flood_from_one_prefix_is_limited_and_others_are_not() {
    let s = TestServer::start(&demo_config(
        "[server.rrl]\nenabled = true\nresponses_per_second = 5\nslip = 2\n",
    ))
    .await;
    let flood: Vec<String> = (1..=101).map(|i| format!("127.0.7.{i}")).collect();
    let (full, tc) = burst(s.addr, &flood, Duration::from_secs(2)).await;
    // The burst (5) plus what refilled while the flood was sent (5/s, well under 2 s).
    assert!((5..=15).contains(&full), "full answers: {full}");
    let limited = 101 - full;
    // Every second limited response slips; the rest are dropped.
    assert!(
        tc.abs_diff(limited / 2) <= 1,
        "tc {tc} of {limited} limited"
    );
    let t = s.handles.stats.metrics.transport();
    let (dropped, slipped) = (
        t.rrl_dropped.load(Ordering::Relaxed),
        t.rrl_slipped.load(Ordering::Relaxed),
    );
    assert_eq!(slipped as usize, tc);
    assert_eq!((dropped + slipped) as usize, limited);

    // Another /24: full service, even right after the flood.
    let other: Vec<String> = (1..=5).map(|i| format!("127.0.8.{i}")).collect();
    assert_eq!(burst(s.addr, &other, ANSWER_WAIT).await, (5, 0));

    // TCP from the limited /24 is never limited.
    let q = query("www.registry.example.", RecordType::A, None)
        .to_vec()
        .expect("encode");
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.7.1:0".parse().expect("addr"))
        .expect("bind");
    let mut stream = sock.connect(s.addr).await.expect("connect");
    for _ in 0..10 {
        let mut f = (q.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(&q);
        tokio::io::AsyncWriteExt::write_all(&mut stream, &f)
            .await
            .expect("write");
        let a = read_frame(&mut stream).await.expect("a TCP answer");
        let m = Message::from_vec(&a).expect("decode");
        assert_eq!(m.answers.len(), 1);
        assert!(!m.metadata.truncation);
    }
    s.stop().await;
}

#[tokio::test]
async fn rate_limiting_is_off_by_default() {
    let s = TestServer::start(&demo_config("")).await;
    let flood: Vec<String> = (1..=50).map(|i| format!("127.0.9.{i}")).collect();
    assert_eq!(burst(s.addr, &flood, ANSWER_WAIT).await, (50, 0));
    s.stop().await;
}

/// Signed answers are larger (an amplification vector): the DO bit changes nothing in the
/// limiting — the same burst passes, every second limited answer slips as an empty TC
/// reply (no RRSIG), the rest are dropped — and full answers carry their RRSIG.
#[tokio::test]
async fn signed_answers_are_limited_the_same() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = steerdns::dnssec::Key::generate(
        "registry.example.",
        steerdns::dnssec::FLAGS_KSK,
        steerdns::dnssec::Algorithm::EcdsaP256Sha256,
    )
    .expect("key");
    std::fs::create_dir(dir.path().join("keys")).expect("keys dir");
    key.write(&dir.path().join("keys")).expect("key files");
    let config = demo_config(
        "[server.rrl]\nenabled = true\nresponses_per_second = 5\nslip = 2\n\
         [dnssec]\nzones = [\"registry.example.\"]\nkey_dir = \"keys\"\n",
    );
    let s = TestServer::start_in(dir, &config, &[], "127.0.0.1:0".parse().expect("addr")).await;
    let mut e = edns(1232);
    e.set_dnssec_ok(true);
    let q = query("www.registry.example.", RecordType::A, Some(e))
        .to_vec()
        .expect("encode");
    let flood: Vec<String> = (1..=101).map(|i| format!("127.0.24.{i}")).collect();
    // A and its RRSIG.
    let (full, tc) = burst_of(s.addr, &q, 2, &flood, Duration::from_secs(2)).await;
    assert!((5..=15).contains(&full), "full answers: {full}");
    let limited = 101 - full;
    assert!(
        tc.abs_diff(limited / 2) <= 1,
        "tc {tc} of {limited} limited"
    );
    let other: Vec<String> = (1..=5).map(|i| format!("127.0.25.{i}")).collect();
    assert_eq!(burst_of(s.addr, &q, 2, &other, ANSWER_WAIT).await, (5, 0));
    s.stop().await;
}
