//! UDP: one blocking thread per socket, batches of datagrams with recvmmsg/sendmmsg, and
//! response rate limiting (`rrl`) on the answers, per thread. Several sockets per address
//! (`server.udp_workers`, SO_REUSEPORT) are several threads, each with its own buffers, rate
//! limiter and metrics shard, optionally pinned to a CPU each.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::mmsg::{BATCH, Batch};
use super::rrl::{self, Class, Limiter, Verdict};
use super::{TransportStats, canonical};
use crate::config::UdpPin;
use crate::dns::{self, Transport};
use crate::metrics::DnsCounters;
use crate::state::Shared;

//------------ Workers ----------------------------------------------------------------------

/// The sockets as threads to start: (socket, its `/live` name, its index among the sockets
/// of its address). The name is `udp ADDR`, or `udp ADDR #K` (K from 1) when the address has
/// several workers.
pub(super) fn workers(
    udp: Vec<tokio::net::UdpSocket>,
) -> Vec<(std::net::UdpSocket, String, usize)> {
    let addrs: Vec<Option<SocketAddr>> = udp.iter().map(|s| s.local_addr().ok()).collect();
    let mut out = Vec::with_capacity(udp.len());
    for (i, socket) in udp.into_iter().enumerate() {
        let same = |a: &Option<SocketAddr>| a.is_some() && *a == addrs[i];
        let k = addrs[..i].iter().filter(|a| same(a)).count();
        let n = addrs.iter().filter(|a| same(a)).count();
        let name = match addrs[i] {
            Some(a) if n > 1 => format!("udp {a} #{}", k + 1),
            Some(a) => format!("udp {a}"),
            None => "udp".to_string(),
        };
        match socket.into_std() {
            Ok(socket) => out.push((socket, name, k)),
            Err(e) => warn!(error = %e, udp = %name, "cannot serve a UDP socket"),
        }
    }
    out
}

/// The CPUs the workers are pinned to (`server.udp_pin`), resolved once at start.
#[derive(Debug)]
pub(super) struct Pinning(Vec<usize>);

impl Pinning {
    /// `Allowed` reads the process's affinity mask now; an unreadable mask pins nothing.
    pub(super) fn new(pin: &UdpPin) -> Self {
        use nix::sched::{CpuSet, sched_getaffinity};
        use nix::unistd::Pid;
        Self(match pin {
            UdpPin::Off => Vec::new(),
            UdpPin::Cpus(cpus) => cpus.clone(),
            UdpPin::Allowed => match sched_getaffinity(Pid::from_raw(0)) {
                Ok(set) => (0..CpuSet::count())
                    .filter(|c| set.is_set(*c).unwrap_or(false))
                    .collect(),
                Err(e) => {
                    warn!(error = %e, "cannot read the CPU affinity; UDP workers not pinned");
                    Vec::new()
                }
            },
        })
    }

    /// The CPU of worker `k` of an address, if pinning.
    pub(super) fn cpu(&self, k: usize) -> Option<usize> {
        (!self.0.is_empty()).then(|| self.0[k % self.0.len()])
    }
}

/// Pin the calling thread to `cpu`; on failure (no such CPU, not allowed) say so and run
/// unpinned.
pub(super) fn pin_to(cpu: usize, worker: &str) {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    match set
        .set(cpu)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set))
    {
        Ok(()) => debug!(udp = %worker, cpu, "pinned"),
        Err(e) => warn!(udp = %worker, cpu, error = %e, "cannot pin the UDP worker; unpinned"),
    }
}

//------------ The batch loop ---------------------------------------------------------------

/// How often limited prefixes are looked at to end their limited period (ns).
const RRL_SWEEP_NS: u64 = 1_000_000_000;

/// How often a blocked UDP receive wakes up to check for shutdown.
const UDP_SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Serve one UDP socket on a blocking thread of its own: receive a batch with one
/// `recvmmsg`, answer each inline, send the answers with one `sendmmsg` (`mmsg`: headers set
/// up once, answers sent to the address their query came from in place). The answer path
/// never waits on anything, so a blocking loop without a reactor round trip per datagram, and
/// one system call per batch each way, is the cheapest way to run it (Knot and NSD do the
/// same). `counters` is this thread's shard: no other thread writes its cache lines.
pub(super) fn serve_udp(
    socket: std::net::UdpSocket,
    shared: Shared,
    stats: Arc<TransportStats>,
    counters: Arc<DnsCounters>,
    shutdown: CancellationToken,
) {
    use std::os::fd::AsRawFd;

    let transport = stats.metrics.transport().clone();
    let epoch = std::time::Instant::now();
    let now_ns = || u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut generation = 0;
    let mut limiter = Limiter::new(&shared.current().config.rrl);
    let mut last_sweep = 0u64;

    if let Err(e) = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(UDP_SHUTDOWN_POLL)))
    {
        warn!(error = %e, "cannot configure the UDP socket");
        return;
    }
    let fd = socket.as_raw_fd();
    let mut batch = Batch::new();
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
    let mut replies: Vec<usize> = Vec::with_capacity(BATCH);

    while !shutdown.is_cancelled() {
        if limiter.enabled() {
            let now = now_ns();
            if now.saturating_sub(last_sweep) >= RRL_SWEEP_NS {
                last_sweep = now;
                limiter.sweep(now);
            }
        }
        // MSG_WAITFORONE: block (up to the read timeout) for the first datagram, then take
        // whatever else is already queued.
        let received = match batch.recv(fd) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                debug!(error = %e, "udp receive error");
                continue;
            }
        };
        replies.clear();
        {
            let snap = shared.current();
            if snap.generation != generation {
                // A reload may change the limits; the table is kept unless its size changed.
                generation = snap.generation;
                limiter.reconfigure(&snap.config.rrl);
            }
            // The clock is read only when the limiter needs it.
            let now = if limiter.enabled() { now_ns() } else { 0 };
            for (i, out) in outs.iter_mut().enumerate().take(received) {
                let (query, src) = batch.datagram(i);
                let Some(src) = src else { continue };
                let client = canonical(src.ip());
                let Some(outcome) =
                    dns::handle(&snap, query, client, Transport::Udp, out, &counters)
                else {
                    continue;
                };
                if limiter.enabled() {
                    match limiter.check(client, Class::of(&outcome), now) {
                        Verdict::Send => {}
                        Verdict::Slip => {
                            rrl::truncate(out);
                            transport.rrl_slipped.fetch_add(1, Ordering::Relaxed);
                        }
                        Verdict::Drop => {
                            transport.rrl_dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                }
                replies.push(i);
            }
        }
        // One bad destination (EPERM, unreachable) must not lose the rest.
        batch.send(
            fd,
            &replies,
            &outs,
            |e| debug!(error = %e, "udp send error"),
        );
    }
}
