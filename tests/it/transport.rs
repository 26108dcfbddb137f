//! TCP limits (idle timeout, connection cap) and graceful shutdown, over real sockets.

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

#[tokio::test]
async fn connection_cap_closes_new_connections_and_keeps_old_ones() {
    let s = TestServer::start(&demo_config("[server.tcp]\nmax_connections = 2\n")).await;
    let mut a = TcpStream::connect(s.addr).await.expect("a");
    let mut b = TcpStream::connect(s.addr).await.expect("b");
    assert!(ask(&mut a).await.is_some());
    assert!(ask(&mut b).await.is_some());

    // The third connection is accepted by the kernel and closed by the server at once.
    let mut c = TcpStream::connect(s.addr).await.expect("c");
    assert!(
        closed_within(&mut c, Duration::from_secs(5)).await,
        "over the cap: closed"
    );
    assert!(
        ask(&mut a).await.is_some(),
        "existing connections keep working"
    );
    assert!(ask(&mut b).await.is_some());
    assert!(
        s.handles
            .stats
            .tcp_refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );

    // Closing one frees a slot. The server notices the close asynchronously: retry until a
    // new connection is served, bounded.
    drop(a);
    let mut served = false;
    for _ in 0..50 {
        let mut d = TcpStream::connect(s.addr).await.expect("d");
        if ask(&mut d).await.is_some() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "a freed slot is usable again");
    s.stop().await;
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
