//! TCP (RFC 7766): one task per connection, pipelined queries answered in order, and limits
//! no client can get around (RFC 7766 §6.2.3, "servers MAY impose limits"):
//!
//! - an idle timeout between queries, a deadline on each whole query once its first byte
//!   arrived (a client dripping one byte at a time is closed), and a deadline on each write
//!   (a client that never reads is closed, whatever it pipelines);
//! - a cap per client (one IPv4 address, one IPv6 /64): beyond it a new connection from that
//!   client is closed at once;
//! - a global cap: a new connection beyond it closes the longest-idle open one ("servers
//!   … SHOULD close idle connections first", §6.2.3), so a flood of held-open connections
//!   cannot lock well-behaved clients out;
//! - shutdown: a connection between queries closes at once; one answering finishes its
//!   write, until `hard` is cancelled at the end of the grace period.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::{TcpLimits, TransportStats, canonical};
use crate::dns::{self, Transport};
use crate::state::Shared;

//------------ Connections ------------------------------------------------------------------

/// The open connections over all listeners: counts per client and each one's last activity,
/// to choose whom to close at the cap. Locked on accept and on close only, never per query.
#[derive(Debug)]
pub(super) struct Connections {
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    open: HashMap<u64, Arc<Conn>>,
    per_client: HashMap<IpAddr, usize>,
}

/// One open connection as the registry sees it.
#[derive(Debug)]
struct Conn {
    client: IpAddr,
    /// Nanoseconds since `epoch` at the last query received or answer written.
    active: AtomicU64,
    /// Cancelled to close it (evicted at the cap).
    close: CancellationToken,
}

/// Why a new connection was not admitted.
enum Refusal {
    PerClient,
}

/// Held by a connection task; deregisters on drop (by return or by panic).
struct Registration {
    connections: Arc<Connections>,
    id: u64,
    conn: Arc<Conn>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.inner.lock().remove(self.id);
    }
}

impl Inner {
    fn remove(&mut self, id: u64) {
        if let Some(c) = self.open.remove(&id)
            && let Some(n) = self.per_client.get_mut(&c.client)
        {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&c.client);
            }
        }
    }
}

impl Connections {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Admit a connection from `peer`: refuse it at the client's cap; at the global cap,
    /// close the longest-idle connection to make room. Returns the registration and whether
    /// one was evicted.
    fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        limits: &TcpLimits,
    ) -> Result<(Registration, bool), Refusal> {
        let client = client_key(peer);
        let mut inner = self.inner.lock();
        if inner.per_client.get(&client).copied().unwrap_or(0) >= limits.max_per_client {
            return Err(Refusal::PerClient);
        }
        let mut evicted = false;
        if inner.open.len() >= limits.max_connections {
            let idlest = inner
                .open
                .iter()
                .min_by_key(|(_, c)| c.active.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            if let Some(id) = idlest {
                if let Some(c) = inner.open.get(&id) {
                    c.close.cancel();
                }
                inner.remove(id);
                evicted = true;
            }
        }
        inner.next += 1;
        let id = inner.next;
        let conn = Arc::new(Conn {
            client,
            active: AtomicU64::new(self.now_ns()),
            close: CancellationToken::new(),
        });
        inner.open.insert(id, conn.clone());
        *inner.per_client.entry(client).or_insert(0) += 1;
        Ok((
            Registration {
                connections: self.clone(),
                id,
                conn,
            },
            evicted,
        ))
    }

    /// Connections open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().open.len()
    }
}

/// The unit a client's connections are counted in: its IPv4 address, its IPv6 /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

//------------ Accept loop ------------------------------------------------------------------

/// What every connection task shares.
#[derive(Clone)]
pub(super) struct Context {
    pub(super) shared: Shared,
    pub(super) connections: Arc<Connections>,
    pub(super) stats: Arc<TransportStats>,
    pub(super) tracker: TaskTracker,
    /// Stop accepting; connections close between queries.
    pub(super) shutdown: CancellationToken,
    /// The grace period is over: close now, mid-write or not.
    pub(super) hard: CancellationToken,
}

impl Context {
    /// The limits of the configuration in service now.
    fn limits(&self) -> TcpLimits {
        TcpLimits::of(&self.shared.current().config)
    }
}

pub(super) async fn serve_tcp(listener: TcpListener, cx: Context) {
    let mut cap_logged = false;
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = cx.shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    warn!(error = %e, "tcp accept error");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let limits = cx.limits();
        match cx.connections.admit(peer.ip(), &limits) {
            Ok((registration, evicted)) => {
                if evicted {
                    cx.stats
                        .metrics
                        .transport()
                        .tcp_evicted
                        .fetch_add(1, Ordering::Relaxed);
                    if !cap_logged {
                        warn!(
                            max = limits.max_connections,
                            "tcp connection cap reached; closing the longest-idle connections"
                        );
                        cap_logged = true;
                    }
                } else {
                    cap_logged = false;
                }
                let cx2 = cx.clone();
                cx.tracker.spawn(async move {
                    if let Err(e) = serve_connection(stream, peer, &cx2, &registration).await {
                        debug!(error = %e, client = %peer, "tcp connection ended with an error");
                    }
                    drop(registration);
                });
            }
            Err(Refusal::PerClient) => {
                cx.stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
                cx.stats
                    .metrics
                    .tcp_refused()
                    .fetch_add(1, Ordering::Relaxed);
                debug!(client = %peer, max = limits.max_per_client, "per-client tcp cap");
                drop(stream);
            }
        }
    }
}

/// Read a whole query (length and body) into `query`; `None` when the connection is to
/// close (idle, EOF, shutdown, evicted, the message deadline passed).
async fn read_query(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    query: &mut [u8],
    cx: &Context,
    conn: &Conn,
) -> io::Result<Option<usize>> {
    let stop = async {
        tokio::select! {
            _ = cx.shutdown.cancelled() => {}
            _ = conn.close.cancelled() => {}
        }
    };
    let limits = cx.limits();
    let read_all = async {
        let first = match tokio::time::timeout(limits.idle_timeout, read.read_u8()).await {
            Err(_) => return Ok(None),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Ok(r) => r?,
        };
        // From the first byte on, the whole message has one deadline.
        let rest = async {
            let second = read.read_u8().await?;
            let len = usize::from(u16::from_be_bytes([first, second]));
            read.read_exact(&mut query[..len]).await?;
            Ok::<_, io::Error>(len)
        };
        match tokio::time::timeout(limits.message_timeout, rest).await {
            Err(_) => {
                debug!("tcp query not complete within the message timeout");
                Ok(None)
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Ok(r) => r.map(Some),
        }
    };
    tokio::select! {
        biased;
        _ = stop => Ok(None),
        r = read_all => r,
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    cx: &Context,
    registration: &Registration,
) -> io::Result<()> {
    let conn = &registration.conn;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut query = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    let mut frame = Vec::with_capacity(4096);
    let client = canonical(peer.ip());
    loop {
        let Some(len) = read_query(&mut read, &mut query, cx, conn).await? else {
            return Ok(());
        };
        conn.active
            .store(cx.connections.now_ns(), Ordering::Relaxed);
        let answered = {
            let snap = cx.shared.current();
            dns::handle(
                &snap,
                &query[..len],
                client,
                Transport::Tcp,
                &mut out,
                cx.stats.metrics.dns(),
            )
        };
        if answered.is_some() {
            let write_timeout = cx.limits().write_timeout;
            frame.clear();
            frame.extend_from_slice(&(out.len() as u16).to_be_bytes());
            frame.extend_from_slice(&out);
            // The write has its own deadline and ends at the grace period or an eviction:
            // a client that never reads cannot hold the connection, or the shutdown.
            tokio::select! {
                biased;
                _ = cx.hard.cancelled() => return Ok(()),
                _ = conn.close.cancelled() => return Ok(()),
                r = tokio::time::timeout(write_timeout, write.write_all(&frame)) => {
                    match r {
                        Err(_) => {
                            debug!(client = %peer, "tcp answer not taken within the write timeout");
                            return Ok(());
                        }
                        Ok(r) => r?,
                    }
                }
            }
            conn.active
                .store(cx.connections.now_ns(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_client: usize) -> TcpLimits {
        TcpLimits {
            idle_timeout: Duration::from_secs(10),
            max_connections: max,
            max_per_client: per_client,
            message_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(3),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_idle_is_evicted_at_the_cap() {
        let c = Connections::new();
        let l = limits(2, 8);
        let (a, _) = c.admit(ip("192.0.2.1"), &l).ok().expect("a");
        tokio::time::advance(Duration::from_secs(1)).await;
        let (b, _) = c.admit(ip("192.0.2.2"), &l).ok().expect("b");
        tokio::time::advance(Duration::from_secs(1)).await;
        // `a` answers a query now: `b` is the idlest.
        a.conn.active.store(c.now_ns(), Ordering::Relaxed);
        let (_n, evicted) = c.admit(ip("192.0.2.3"), &l).ok().expect("n");
        assert!(evicted);
        assert!(b.conn.close.is_cancelled(), "the idlest is closed");
        assert!(!a.conn.close.is_cancelled());
        assert_eq!(c.len(), 2);
        drop(b);
        assert_eq!(c.len(), 2, "dropping the evicted one removes nothing more");
    }

    #[tokio::test(start_paused = true)]
    async fn per_client_cap_counts_ipv4_addresses_and_ipv6_slash_64s() {
        let c = Connections::new();
        let l = limits(100, 2);
        let _a = c.admit(ip("2001:db8::1"), &l).ok().expect("1");
        let b = c.admit(ip("2001:db8::ffff:2"), &l).ok().expect("2");
        assert!(c.admit(ip("2001:db8::3"), &l).is_err(), "same /64");
        assert!(c.admit(ip("2001:db8:0:1::3"), &l).is_ok(), "next /64");
        let _v = c.admit(ip("192.0.2.1"), &l).ok().expect("v4");
        let _w = c
            .admit(ip("::ffff:192.0.2.1"), &l)
            .ok()
            .expect("mapped: same v4");
        assert!(c.admit(ip("192.0.2.1"), &l).is_err());
        assert!(c.admit(ip("192.0.2.2"), &l).is_ok());
        drop(b);
        assert!(
            c.admit(ip("2001:db8::3"), &l).is_ok(),
            "a closed one frees its slot"
        );
    }
}
