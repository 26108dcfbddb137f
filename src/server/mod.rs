//! DNS transports: UDP and TCP listeners, bound by the caller, served until shutdown.
//!
//! - `udp`: one blocking thread per socket, reading and answering batches of datagrams with
//!   recvmmsg/sendmmsg (no task per query; the answer path is synchronous).
//!   `server.udp_workers` SO_REUSEPORT sockets per listen address (default: one per CPU the
//!   process may run on), optionally pinned to CPUs; each thread counts into its own metrics
//!   shard, so the threads share no lock and no written cache line. Answers pass through
//!   `rrl` (one table per thread).
//! - `rrl`: response rate limiting per (source prefix, response class), per UDP thread.
//! - `tcp` (RFC 7766): one task per connection, pipelined queries answered in order; idle,
//!   whole-message and write deadlines; per-client and global caps (the global one closes
//!   the longest-idle connection).
//! - Shutdown: the listeners stop accepting and the UDP threads end; a TCP connection
//!   between queries closes at once, one answering finishes its write; after the grace
//!   period every connection is closed, whatever its client does.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

mod mmsg;
mod rrl;
mod tcp;
mod udp;

use crate::metrics::Metrics;
use crate::state::Shared;
use crate::state::readiness::Liveness;

/// Receive buffer asked for UDP sockets: room for bursts from a busy resolver.
const UDP_RECV_BUFFER: usize = 4 << 20;
/// TCP listen backlog.
const TCP_BACKLOG: i32 = 1024;

/// Sockets bound by the caller (the binary binds the configured addresses; tests bind port 0).
#[derive(Debug, Default)]
pub struct Sockets {
    /// UDP sockets.
    pub udp: Vec<UdpSocket>,
    /// TCP listeners.
    pub(crate) tcp: Vec<TcpListener>,
    /// The admin API listener, if it is to be served.
    pub(crate) admin: Option<TcpListener>,
}

impl Sockets {
    /// Bind UDP and TCP on each address. IPv6 sockets are IPv6-only so that IPv4 and IPv6 are
    /// separate sockets (no IPv4-mapped sources). Port 0 picks a free port, the same for UDP
    /// and TCP of one address when possible. One UDP socket per address: see
    /// [`bind_workers`](Self::bind_workers) for more.
    pub fn bind(addrs: &[SocketAddr]) -> io::Result<Self> {
        Self::bind_workers(addrs, 1)
    }

    /// [`bind`](Self::bind) with `udp_workers` UDP sockets per address (`server.udp_workers`),
    /// all bound to the same address and port with SO_REUSEPORT when there are several, so
    /// that the kernel spreads the clients over them by flow hash; each gets a thread of its
    /// own in [`serve`].
    pub fn bind_workers(addrs: &[SocketAddr], udp_workers: usize) -> io::Result<Self> {
        let mut sockets = Self::default();
        let shared = udp_workers > 1;
        for addr in addrs {
            let tcp = bind_tcp(*addr)?;
            // With port 0, reuse the port TCP got for UDP, so one address:port serves both.
            let udp_addr = tcp.local_addr()?;
            let first = bind_udp(udp_addr, shared).or_else(|_| bind_udp(*addr, shared))?;
            let bound = first.local_addr()?;
            sockets.udp.push(first);
            for _ in 1..udp_workers {
                sockets.udp.push(bind_udp(bound, true)?);
            }
            sockets.tcp.push(tcp);
        }
        Ok(sockets)
    }

    /// Also bind the admin API listener (TCP) on `addr`.
    pub fn with_admin(mut self, addr: SocketAddr) -> io::Result<Self> {
        self.admin = Some(bind_tcp(addr)?);
        Ok(self)
    }
}

fn socket_for(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A UDP socket on `addr`; `shared`: with SO_REUSEPORT, one of a group of worker sockets.
fn bind_udp(addr: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    let socket = socket_for(addr, Type::DGRAM, Protocol::UDP)?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    // The kernel caps this at net.core.rmem_max; a failure here is not fatal.
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket_for(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// TCP limits, read from the current snapshot's config at each use (so a reload applies
/// them: the caps to the next accept, the timeouts to each connection's next query).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpLimits {
    /// Close a connection that sends nothing for this long.
    pub(crate) idle_timeout: Duration,
    /// Open connections at most, over all listeners; beyond it the longest-idle is closed.
    pub(crate) max_connections: usize,
    /// Open connections at most per client (IPv4 address, IPv6 /64).
    pub(crate) max_per_client: usize,
    /// Deadline for one whole query once its first byte arrived.
    pub(crate) message_timeout: Duration,
    /// Deadline for writing one answer.
    pub(crate) write_timeout: Duration,
    /// After shutdown, how long connections may finish their answers.
    pub(crate) shutdown_grace: Duration,
}

impl TcpLimits {
    /// The limits `config` sets.
    pub(crate) fn of(config: &crate::config::Config) -> Self {
        Self {
            idle_timeout: config.tcp_idle_timeout,
            max_connections: config.tcp_max_connections,
            max_per_client: config.tcp_max_per_client,
            message_timeout: config.tcp_message_timeout,
            write_timeout: config.tcp_write_timeout,
            shutdown_grace: config.shutdown_grace,
        }
    }
}

/// Counters the transports keep, and the metrics the answer path bumps.
#[derive(Debug)]
pub struct TransportStats {
    /// Metrics (DNS counters used on the answer path).
    pub metrics: Arc<Metrics>,
    /// TCP connections refused because the client's cap was reached.
    pub tcp_refused: AtomicU64,
}

impl TransportStats {
    /// Counters reporting into `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            tcp_refused: AtomicU64::new(0),
        }
    }
}

/// Serve every socket until `shutdown` is cancelled; returns when all listeners and
/// connections have finished, or the grace period after `shutdown` has passed and every
/// connection has been closed. Each UDP thread and TCP listener registers with `liveness`
/// (`udp ADDR`, `tcp ADDR`), so `/live` names one that died.
pub(crate) async fn serve(
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
    shared: Shared,
    stats: Arc<TransportStats>,
    liveness: &Liveness,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let hard = CancellationToken::new();
    let cx = tcp::Context {
        shared: shared.clone(),
        connections: tcp::Connections::new(),
        stats: stats.clone(),
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
        hard: hard.clone(),
    };
    let pin = udp::Pinning::new(&shared.current().config.udp.pin);
    for (socket, name, k) in udp::workers(udp) {
        // The worker first: tools read the address as the rest of the line after `udp=`.
        match socket.local_addr() {
            Ok(addr) => info!(worker = k + 1, udp = %addr, "listening"),
            Err(_) => info!(worker = k + 1, "listening on udp"),
        }
        let (shared, shutdown, stats) = (shared.clone(), shutdown.clone(), stats.clone());
        let alive = liveness.register(&name);
        let cpu = pin.cpu(k);
        let counters = stats.metrics.udp_shard(&name);
        tracker.spawn_blocking(move || {
            // Dropped when the thread ends, by return or by panic.
            let _alive = alive;
            if let Some(cpu) = cpu {
                udp::pin_to(cpu, &name);
            }
            udp::serve_udp(socket, shared, stats, counters, shutdown)
        });
    }
    for listener in tcp {
        if let Ok(addr) = listener.local_addr() {
            info!(tcp = %addr, "listening");
        }
        let name = listener
            .local_addr()
            .map_or_else(|_| "tcp".to_string(), |a| format!("tcp {a}"));
        let alive = liveness.register(&name);
        let accept = tcp::serve_tcp(listener, cx.clone());
        tracker.spawn(async move {
            let _alive = alive;
            accept.await
        });
    }
    tracker.close();
    let grace = async {
        shutdown.cancelled().await;
        // The grace in force when the shutdown came (a reload may have changed it).
        let grace = TcpLimits::of(&shared.current().config).shutdown_grace;
        tokio::time::sleep(grace).await;
        grace
    };
    let grace = tokio::select! {
        () = tracker.wait() => return,
        g = grace => g,
    };
    warn!(
        ?grace,
        "shutdown grace period over; closing the remaining TCP connections"
    );
    hard.cancel();
    tracker.wait().await;
}

/// IPv4-mapped IPv6 addresses are IPv4 clients.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}
