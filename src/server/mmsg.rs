//! One batch of UDP datagrams in, one batch of answers out: `recvmmsg` and `sendmmsg` over
//! message headers that are set up once per worker thread and then only patched.
//!
//! A safe wrapper (nix's `MultiHeaders`) rebuilds every header, I/O vector and address of the
//! whole batch on each call and copies each source address out and back in. At a low query
//! rate every call carries one datagram, so that setup was paid per query: about 1 800
//! instructions, as many as answering the query (callgrind, `benches/instructions-process.sh`
//! with `RATE`). Here a receive resets only the name lengths of the slots the previous batch
//! used, and an answer is sent to the very `sockaddr` its query came from, in place.
//!
//! This is the one module of the server with `unsafe` code: the two system calls, and reading
//! a `sockaddr_storage` the kernel filled as the `sockaddr_in`/`sockaddr_in6` its family says
//! it is. Every pointer handed to the kernel points into the one heap allocation of a
//! [`Batch`], which never moves while it lives.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::ptr;

/// Datagrams received (and answers sent) per system call.
pub(super) const BATCH: usize = 32;
/// Largest query read over UDP; longer datagrams are cut and then fail to parse (FORMERR).
pub(super) const QUERY_MAX: usize = 4096;

const NAME_LEN: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// The buffers and message headers of one worker. Only ever used behind its `Box`, so the
/// pointers inside the headers stay valid.
pub(super) struct Batch {
    bufs: [[u8; QUERY_MAX]; BATCH],
    names: [libc::sockaddr_storage; BATCH],
    rx_iov: [libc::iovec; BATCH],
    rx: [libc::mmsghdr; BATCH],
    tx_iov: [libc::iovec; BATCH],
    tx: [libc::mmsghdr; BATCH],
    /// Datagrams in the last receive.
    received: usize,
}

impl Batch {
    /// A batch with its receive headers pointing at its own buffers and address slots.
    pub(super) fn new() -> Box<Self> {
        // Zeroed on the heap: the buffers are 128 KiB, too much to build on a stack first.
        let layout = std::alloc::Layout::new::<Self>();
        // SAFETY: the layout is that of Self, which is not zero-sized.
        let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Self>();
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `p` is a fresh allocation of Self's layout from the global allocator, and
        // every field is plain old data (integers, arrays of them, raw pointers) for which
        // all-zero bytes are a valid value (null pointers, zero lengths).
        let mut b: Box<Self> = unsafe { Box::from_raw(p) };
        for i in 0..BATCH {
            b.rx_iov[i] = libc::iovec {
                iov_base: b.bufs[i].as_mut_ptr().cast(),
                iov_len: QUERY_MAX,
            };
            let iov = ptr::addr_of_mut!(b.rx_iov[i]);
            let name = ptr::addr_of_mut!(b.names[i]);
            let h = &mut b.rx[i].msg_hdr;
            h.msg_name = name.cast();
            h.msg_namelen = NAME_LEN;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
        }
        b
    }

    /// Block until at least one datagram is queued (or the socket's read timeout passes), then
    /// take every queued one up to [`BATCH`] (MSG_WAITFORONE). Returns how many.
    pub(super) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // The kernel shortened the name lengths of the slots it filled last time.
        for h in &mut self.rx[..self.received] {
            h.msg_hdr.msg_namelen = NAME_LEN;
        }
        self.received = 0;
        // SAFETY: `rx` holds BATCH headers whose name, I/O vector and buffer pointers point
        // into `self` (set in `new`, never changed), with their true lengths; the kernel
        // writes at most those lengths and each header's `msg_len`.
        // The system call itself, not glibc's wrapper: that one brackets it with thread
        // cancellation bookkeeping (about 50 instructions a call, paid per query at a low
        // rate), and nothing here uses thread cancellation.
        let n = unsafe {
            libc::syscall(
                libc::SYS_recvmmsg,
                fd,
                self.rx.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                ptr::null_mut::<libc::timespec>(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // `n` <= BATCH: recvmmsg fills at most vlen headers.
        self.received = (n as usize).min(BATCH);
        Ok(self.received)
    }

    /// Datagram `i` of the last receive (i < the count `recv` returned) and where it came
    /// from (None for a family other than IPv4 and IPv6).
    pub(super) fn datagram(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let len = (self.rx[i].msg_len as usize).min(QUERY_MAX);
        (&self.bufs[i][..len], self.source(i))
    }

    fn source(&self, i: usize) -> Option<SocketAddr> {
        let name = &self.names[i];
        let len = self.rx[i].msg_hdr.msg_namelen as usize;
        match libc::c_int::from(name.ss_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the kernel wrote a sockaddr_in here (its family says so, and its
                // length is whole); sockaddr_storage is larger and at least as aligned.
                let a: libc::sockaddr_in = unsafe { ptr::read(ptr::from_ref(name).cast()) };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for a sockaddr_in6.
                let a: libc::sockaddr_in6 = unsafe { ptr::read(ptr::from_ref(name).cast()) };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(a.sin6_port)))
            }
            _ => None,
        }
    }

    /// For each slot `i` in `to`, send `answers[i]` back to the source of datagram `i` of the
    /// last receive, all in as few `sendmmsg` calls as the kernel takes. A slot the last
    /// receive did not fill has no source and is skipped. A destination the kernel refuses
    /// (EPERM, unreachable) costs only its own answer; `on_error` hears of each such error.
    pub(super) fn send(
        &mut self,
        fd: RawFd,
        to: &[usize],
        answers: &[Vec<u8>],
        mut on_error: impl FnMut(io::Error),
    ) {
        // Only a slot of this batch has a source to answer to.
        let mut m = 0;
        for &i in to.iter().filter(|&&i| i < self.received).take(BATCH) {
            let Some(answer) = answers.get(i) else {
                continue;
            };
            let k = m;
            m += 1;
            self.tx_iov[k] = libc::iovec {
                // The kernel only reads through this pointer (sendmmsg).
                iov_base: answer.as_ptr().cast_mut().cast(),
                iov_len: answer.len(),
            };
            let iov = ptr::addr_of_mut!(self.tx_iov[k]);
            let name = ptr::addr_of_mut!(self.names[i]);
            let h = &mut self.tx[k].msg_hdr;
            h.msg_name = name.cast();
            h.msg_namelen = self.rx[i].msg_hdr.msg_namelen;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < m {
            // SAFETY: headers `sent..m` were set above: their names point into `self.names`
            // with the lengths the kernel gave, their I/O vectors into `answers`, which the
            // borrow keeps alive and unchanged for the call.
            // (The system call, as for the receive.)
            let r = unsafe {
                libc::syscall(
                    libc::SYS_sendmmsg,
                    fd,
                    self.tx[sent..].as_mut_ptr(),
                    (m - sent) as libc::c_uint,
                    0 as libc::c_int,
                )
            };
            match r {
                0 => break,
                r if r > 0 => sent += r as usize,
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        // The first unsent answer is the one refused; skip it.
                        on_error(e);
                        sent += 1;
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::*;

    /// A socket on an IPv4 loopback port of its own.
    fn bound() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").expect("loopback")
    }

    /// Send `data` from `from` to `to` (queued on `to` before this returns, on loopback).
    fn send(from: &UdpSocket, data: &[u8], to: &UdpSocket) {
        from.send_to(data, to.local_addr().expect("loopback"))
            .expect("loopback");
    }

    #[test]
    fn a_batch_answers_each_datagram_to_its_own_source_over_both_families() {
        let (server, a, b) = (bound(), bound(), bound());
        let server6 = UdpSocket::bind("[::1]:0").ok();
        send(&a, b"from a", &server);
        send(&b, b"from b, longer", &server);
        let mut batch = Batch::new();
        let mut got = Vec::new();
        // Both datagrams are queued on loopback before the first receive returns; a second
        // receive takes any that were not (MSG_WAITFORONE returns what is there).
        while got.len() < 2 {
            let n = batch.recv(server.as_raw_fd()).expect("loopback");
            let mut answers = vec![Vec::new(); BATCH];
            let mut to = Vec::new();
            for (i, answer) in answers.iter_mut().enumerate().take(n) {
                let (data, src) = batch.datagram(i);
                got.push((data.to_vec(), src.expect("loopback")));
                *answer = [b"re: ".as_slice(), data].concat();
                to.push(i);
            }
            batch.send(server.as_raw_fd(), &to, &answers, |e| panic!("{e}"));
        }
        got.sort();
        assert_eq!(
            got[0],
            (b"from a".to_vec(), a.local_addr().expect("loopback"))
        );
        assert_eq!(
            got[1],
            (
                b"from b, longer".to_vec(),
                b.local_addr().expect("loopback")
            )
        );
        let mut buf = [0u8; 64];
        let (n, from) = a.recv_from(&mut buf).expect("loopback");
        assert_eq!(
            (&buf[..n], from),
            (&b"re: from a"[..], server.local_addr().expect("loopback"))
        );
        let (n, _) = b.recv_from(&mut buf).expect("loopback");
        assert_eq!(&buf[..n], b"re: from b, longer");

        // The name lengths the kernel shortened to a sockaddr_in are restored, so an IPv6
        // source (a longer sockaddr) is read whole by the same batch.
        if let Some(server6) = server6 {
            let c = UdpSocket::bind("[::1]:0").expect("loopback");
            c.send_to(b"v6", server6.local_addr().expect("loopback"))
                .expect("loopback");
            let n = batch.recv(server6.as_raw_fd()).expect("loopback");
            assert_eq!(n, 1);
            assert_eq!(
                batch.datagram(0),
                (&b"v6"[..], Some(c.local_addr().expect("loopback")))
            );
        }
    }

    #[test]
    fn a_refused_destination_costs_only_its_own_answer() {
        let (server, a, b) = (bound(), bound(), bound());
        send(&a, b"1", &server);
        send(&b, b"2", &server);
        let mut batch = Batch::new();
        // Loopback queues a datagram on the receiving socket before send_to returns.
        assert_eq!(batch.recv(server.as_raw_fd()).expect("loopback"), 2);
        // An answer larger than any UDP datagram is refused (EMSGSIZE) first; the other
        // still goes out.
        let source_of = |batch: &Batch, i| batch.datagram(i).1.expect("loopback");
        let first_is_a = source_of(&batch, 0) == a.local_addr().expect("loopback");
        let mut answers = vec![Vec::new(); BATCH];
        answers[0] = vec![0u8; 70_000];
        answers[1] = b"ok".to_vec();
        let mut errors = Vec::new();
        batch.send(server.as_raw_fd(), &[0, 1], &answers, |e| errors.push(e));
        assert_eq!(errors.len(), 1, "{errors:?}");
        let second = if first_is_a { &b } else { &a };
        let mut buf = [0u8; 8];
        let (len, _) = second.recv_from(&mut buf).expect("loopback");
        assert_eq!(&buf[..len], b"ok");

        // Slots this batch did not receive into have no source: nothing is sent for them.
        batch.send(server.as_raw_fd(), &[2, BATCH + 1], &answers, |e| {
            errors.push(e)
        });
        assert_eq!(errors.len(), 1, "{errors:?}");
        for client in [&a, &b] {
            client.set_nonblocking(true).expect("loopback");
            let e = client.recv_from(&mut buf).expect_err("nothing was sent");
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
    }
}
