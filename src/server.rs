//! DNS transports: UDP and TCP listeners, bound by the caller, served until shutdown.
//!
//! - UDP: one blocking thread per socket, reading and answering batches of datagrams with
//!   recvmmsg/sendmmsg (no task per query; the answer path is synchronous). One socket per
//!   listen address, so one thread per address for now.
//! - TCP (RFC 7766): one task per connection, queries answered in order as they arrive, so
//!   pipelined queries each get their answer; an idle timeout; a cap on open connections over
//!   all listeners: beyond it a new connection is closed at once and the existing ones keep
//!   working.
//! - Shutdown: the listeners stop accepting; a TCP connection finishes the query it is
//!   answering and closes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::dns::{self, Transport};
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
    /// and TCP of one address when possible.
    pub fn bind(addrs: &[SocketAddr]) -> io::Result<Self> {
        let mut sockets = Self::default();
        for addr in addrs {
            let tcp = bind_tcp(*addr)?;
            // With port 0, reuse the port TCP got for UDP, so one address:port serves both.
            let udp_addr = tcp.local_addr()?;
            let udp = bind_udp(udp_addr).or_else(|_| bind_udp(*addr))?;
            sockets.udp.push(udp);
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

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket_for(addr, Type::DGRAM, Protocol::UDP)?;
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

/// TCP limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpLimits {
    /// Close a connection that sends nothing for this long.
    pub(crate) idle_timeout: Duration,
    /// Open connections at most, over all listeners.
    pub(crate) max_connections: usize,
}

/// Counters the transports keep, and the metrics the answer path bumps.
#[derive(Debug)]
pub struct TransportStats {
    /// Metrics (DNS counters used on the answer path).
    pub metrics: Arc<Metrics>,
    /// TCP connections refused because the cap was reached.
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
/// connections have finished. Each UDP thread and TCP listener registers with `liveness`
/// (`udp ADDR`, `tcp ADDR`), so `/live` names one that died.
pub(crate) async fn serve(
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
    shared: Shared,
    limits: TcpLimits,
    stats: Arc<TransportStats>,
    liveness: &Liveness,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    for socket in udp {
        if let Ok(addr) = socket.local_addr() {
            info!(udp = %addr, "listening");
        }
        match socket.into_std() {
            Ok(socket) => {
                let (shared, shutdown, stats) = (shared.clone(), shutdown.clone(), stats.clone());
                let name = socket
                    .local_addr()
                    .map_or_else(|_| "udp".to_string(), |a| format!("udp {a}"));
                let alive = liveness.register(&name);
                tracker.spawn_blocking(move || {
                    // Dropped when the thread ends, by return or by panic.
                    let _alive = alive;
                    serve_udp(socket, shared, stats, shutdown)
                });
            }
            Err(e) => warn!(error = %e, "cannot serve a UDP socket"),
        }
    }
    for listener in tcp {
        if let Ok(addr) = listener.local_addr() {
            info!(tcp = %addr, "listening");
        }
        let name = listener
            .local_addr()
            .map_or_else(|_| "tcp".to_string(), |a| format!("tcp {a}"));
        let alive = liveness.register(&name);
        let accept = serve_tcp(
            listener,
            shared.clone(),
            limits,
            permits.clone(),
            stats.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        tracker.spawn(async move {
            let _alive = alive;
            accept.await
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// How often a blocked UDP receive wakes up to check for shutdown.
const UDP_SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Datagrams received (and answers sent) per system call.
const UDP_BATCH: usize = 32;
/// Largest query read over UDP; longer datagrams are cut and then fail to parse (FORMERR).
const UDP_QUERY_MAX: usize = 4096;

/// Serve one UDP socket on a blocking thread of its own: receive a batch with one
/// `recvmmsg`, answer each inline, send the answers with one `sendmmsg`. The answer path never
/// waits on anything, so a blocking loop without a reactor round trip per datagram, and one
/// system call per batch each way, is the cheapest way to run it (Knot and NSD do the same).
fn serve_udp(
    socket: std::net::UdpSocket,
    shared: Shared,
    stats: Arc<TransportStats>,
    shutdown: CancellationToken,
) {
    let counters = stats.metrics.dns().clone();
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

    if let Err(e) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(UDP_SHUTDOWN_POLL)))
    {
        warn!(error = %e, "cannot configure the UDP socket");
        return;
    }
    let fd = socket.as_raw_fd();
    // Fixed arrays, so that setting up a batch's I/O vectors allocates nothing.
    let mut bufs: Box<[[u8; UDP_QUERY_MAX]; UDP_BATCH]> = Box::new([[0; UDP_QUERY_MAX]; UDP_BATCH]);
    let mut outs: Vec<Vec<u8>> = (0..UDP_BATCH).map(|_| Vec::with_capacity(1232)).collect();
    let mut received: Vec<(usize, Option<SocketAddr>)> = Vec::with_capacity(UDP_BATCH);
    let mut replies: Vec<usize> = Vec::with_capacity(UDP_BATCH);
    let mut addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(UDP_BATCH);
    let mut rx = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut tx = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);

    while !shutdown.is_cancelled() {
        received.clear();
        {
            let mut iovs: [[IoSliceMut<'_>; 1]; UDP_BATCH] =
                bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
            // MSG_WAITFORONE: block (up to the read timeout) for the first datagram, then take
            // whatever else is already queued.
            match recvmmsg(fd, &mut rx, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(msgs) => received
                    .extend(msgs.map(|m| (m.bytes, m.address.and_then(|a| to_socket_addr(&a))))),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    debug!(error = %e, "udp receive error");
                    continue;
                }
            }
        }
        replies.clear();
        addrs.clear();
        {
            let snap = shared.current();
            for (i, (len, src)) in received.iter().enumerate() {
                let Some(src) = src else { continue };
                if dns::handle(
                    &snap,
                    &bufs[i][..*len],
                    canonical(src.ip()),
                    Transport::Udp,
                    &mut outs[i],
                    &counters,
                )
                .is_some()
                {
                    replies.push(i);
                    addrs.push(Some(SockaddrStorage::from(*src)));
                }
            }
        }
        let mut sent = 0;
        while sent < replies.len() {
            // `addrs[sent..]` bounds how many of these are sent; the rest are empty.
            let slices: [[IoSlice<'_>; 1]; UDP_BATCH] = std::array::from_fn(|k| {
                [IoSlice::new(
                    replies.get(sent + k).map_or(&[][..], |i| &outs[*i]),
                )]
            });
            match sendmmsg(fd, &mut tx, &slices, &addrs[sent..], [], MsgFlags::empty()) {
                Ok(r) => {
                    let n = r.count();
                    if n == 0 {
                        break;
                    }
                    sent += n;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    // One bad destination (EPERM, unreachable) must not lose the rest.
                    debug!(error = %e, "udp send error");
                    sent += 1;
                }
            }
        }
    }
}

fn to_socket_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

async fn serve_tcp(
    listener: TcpListener,
    shared: Shared,
    limits: TcpLimits,
    permits: Arc<Semaphore>,
    stats: Arc<TransportStats>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut cap_logged = false;
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
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
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                cap_logged = false;
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                let stats = stats.clone();
                tracker.spawn(async move {
                    if let Err(e) = serve_connection(
                        stream,
                        peer,
                        shared,
                        &stats,
                        limits.idle_timeout,
                        shutdown,
                    )
                    .await
                    {
                        debug!(error = %e, client = %peer, "tcp connection ended with an error");
                    }
                    drop(permit);
                });
            }
            Err(_) => {
                stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
                stats.metrics.tcp_refused().fetch_add(1, Ordering::Relaxed);
                if !cap_logged {
                    warn!(
                        max = limits.max_connections,
                        "tcp connection cap reached; closing new connections"
                    );
                    cap_logged = true;
                }
                drop(stream);
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Shared,
    stats: &TransportStats,
    idle: Duration,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut query = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    let mut frame = Vec::with_capacity(4096);
    let client = canonical(peer.ip());
    loop {
        let len = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(idle, read.read_u16()) => match r {
                Err(_) => return Ok(()), // idle timeout
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(r) => usize::from(r?),
            },
        };
        let body = &mut query[..len];
        match tokio::time::timeout(idle, read.read_exact(body)).await {
            Err(_) => return Ok(()),
            Ok(r) => {
                r?;
            }
        }
        let answered = {
            let snap = shared.current();
            dns::handle(
                &snap,
                body,
                client,
                Transport::Tcp,
                &mut out,
                stats.metrics.dns(),
            )
        };
        if answered.is_some() {
            frame.clear();
            frame.extend_from_slice(&(out.len() as u16).to_be_bytes());
            frame.extend_from_slice(&out);
            write.write_all(&frame).await?;
        }
    }
}

/// IPv4-mapped IPv6 addresses are IPv4 clients.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}
