//! Batched UDP I/O for the TURN data path: `recvmmsg(2)` in, `sendmmsg(2)` out, on
//! nonblocking sockets, driven by the shard's readiness wait (see `turn.rs`).
//!
//! One [`Batch`] per shard serves every UDP socket of that shard in turn: a receive,
//! the protocol core's decisions and the send are one synchronous step, so the
//! buffers are never held across an await. The receive slots are large enough for
//! any UDP payload (plus room in front for a ChannelData header), but only the bytes
//! the kernel writes are ever touched, so the resident cost is what traffic needs.
//!
//! Sends name their source by position (a receive slot, or the copy arena for
//! answers the core wrote elsewhere) and are turned into `mmsghdr`s only at
//! [`Batch::flush`], so nothing points into a buffer that may still move. A send the
//! kernel does not take (a full socket buffer) is dropped and counted — never waited
//! for: one slow peer must not hold up the other allocations of the shard.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;
use std::os::fd::RawFd;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 32;

/// Bytes per receive slot: the largest UDP payload, 4 bytes of room in front (a
/// ChannelData header) and 4 behind (padding).
pub const SLOT: usize = 65536 + 8;

/// Where the bytes of a queued send are.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `slots[index * SLOT ..][range]`.
    Slot {
        index: usize,
        start: usize,
        end: usize,
    },
    /// `arena[start..end]`.
    Arena { start: usize, end: usize },
}

#[derive(Debug, Clone, Copy)]
struct Send {
    fd: RawFd,
    to: SocketAddr,
    source: Source,
}

/// What one received datagram is: its sender and where its bytes are in the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub from: SocketAddr,
    pub len: usize,
}

/// Receive slots, the send queue and the kernel-facing headers for both.
pub struct Batch {
    slots: Vec<u8>,
    received: Vec<Received>,
    /// Where this batch's datagrams start inside their slots.
    offset: usize,
    sends: Vec<Send>,
    arena: Vec<u8>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        // SAFETY: all-zero bytes are valid values of these plain C structs.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zero_name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Batch {
            // Zeroed memory from the allocator: pages are only made resident when
            // the kernel writes a datagram into them.
            slots: vec![0u8; BATCH * SLOT],
            received: Vec::with_capacity(BATCH),
            offset: 0,
            sends: Vec::with_capacity(BATCH * 2),
            arena: Vec::with_capacity(4096),
            hdrs: vec![zero_hdr; BATCH],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            names: vec![zero_name; BATCH],
        }
    }

    /// Receive up to [`BATCH`] datagrams from `fd` without waiting, each placed
    /// `offset` bytes into its slot (at most 8). Returns how many (0: none queued).
    /// Datagrams of any size fit; what was there before is forgotten.
    pub fn recv(&mut self, fd: RawFd, offset: usize) -> io::Result<usize> {
        let offset = offset.min(SLOT - 65536);
        self.received.clear();
        self.offset = offset;
        let base = self.slots.as_mut_ptr();
        for i in 0..BATCH {
            let iov = &mut self.iovs[i];
            // SAFETY: i * SLOT + offset + 65536 <= BATCH * SLOT, inside `slots`.
            iov.iov_base = unsafe { base.add(i * SLOT + offset) }.cast();
            iov.iov_len = 65536;
            let hdr = &mut self.hdrs[i];
            hdr.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = std::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        // SAFETY: every header points at its own name and iovec, which point into
        // buffers owned by `self` and alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        for i in 0..n as usize {
            let hdr = &self.hdrs[i];
            // A sender of another family than the socket cannot happen; skip it.
            if let Some(from) = from_storage(&self.names[i], hdr.msg_hdr.msg_namelen) {
                self.received.push(Received {
                    from,
                    len: (hdr.msg_len as usize).min(65536),
                });
            } else {
                self.received.push(Received {
                    from: SocketAddr::from(([0, 0, 0, 0], 0)),
                    len: 0,
                });
            }
        }
        Ok(n as usize)
    }

    /// The datagrams of the last [`Batch::recv`].
    pub fn received(&self, i: usize) -> Option<Received> {
        self.received.get(i).copied()
    }

    /// The payload of received datagram `i`.
    pub fn payload(&self, i: usize) -> &[u8] {
        match self.received.get(i) {
            Some(r) => {
                let start = i * SLOT + self.offset;
                self.slots.get(start..start + r.len).unwrap_or_default()
            }
            None => &[],
        }
    }

    /// Slot `i` whole (the payload starts at the offset given to [`Batch::recv`]).
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let start = i.min(BATCH - 1) * SLOT;
        &mut self.slots[start..start + SLOT]
    }

    /// Queue `slot[range]` of received datagram `i` to `to` from `fd`.
    pub fn queue_slot(&mut self, fd: RawFd, to: SocketAddr, i: usize, range: Range<usize>) {
        if i >= BATCH || range.start > range.end || range.end > SLOT {
            return;
        }
        self.sends.push(Send {
            fd,
            to,
            source: Source::Slot {
                index: i,
                start: range.start,
                end: range.end,
            },
        });
    }

    /// Queue a copy of `bytes` to `to` from `fd`.
    pub fn queue_copy(&mut self, fd: RawFd, to: SocketAddr, bytes: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        self.sends.push(Send {
            fd,
            to,
            source: Source::Arena {
                start,
                end: self.arena.len(),
            },
        });
    }

    /// Sends queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.sends.len()
    }

    /// Send everything queued, one `sendmmsg` per run of sends on the same socket
    /// (order kept within a socket). Returns the datagrams the kernel did not take.
    pub fn flush(&mut self) -> u64 {
        let mut dropped = 0;
        let mut at = 0;
        while at < self.sends.len() {
            let fd = self.sends[at].fd;
            let mut run = 0;
            while at + run < self.sends.len() && self.sends[at + run].fd == fd && run < BATCH {
                let send = self.sends[at + run];
                let (ptr, len) = match send.source {
                    Source::Slot { index, start, end } => {
                        // SAFETY: queue_slot checked index < BATCH and end <= SLOT.
                        (
                            unsafe { self.slots.as_mut_ptr().add(index * SLOT + start) },
                            end - start,
                        )
                    }
                    Source::Arena { start, end } => {
                        // SAFETY: start..end was pushed into the arena, which only grows
                        // until the end of this flush.
                        (unsafe { self.arena.as_mut_ptr().add(start) }, end - start)
                    }
                };
                self.iovs[run] = libc::iovec {
                    iov_base: ptr.cast(),
                    iov_len: len,
                };
                let namelen = to_storage(send.to, &mut self.names[run]);
                let hdr = &mut self.hdrs[run];
                hdr.msg_hdr.msg_name = (&mut self.names[run] as *mut libc::sockaddr_storage).cast();
                hdr.msg_hdr.msg_namelen = namelen;
                hdr.msg_hdr.msg_iov = &mut self.iovs[run];
                hdr.msg_hdr.msg_iovlen = 1;
                hdr.msg_hdr.msg_control = std::ptr::null_mut();
                hdr.msg_hdr.msg_controllen = 0;
                hdr.msg_hdr.msg_flags = 0;
                hdr.msg_len = 0;
                run += 1;
            }
            dropped += send_run(fd, &mut self.hdrs[..run]);
            at += run;
        }
        self.sends.clear();
        self.arena.clear();
        dropped
    }
}

/// `sendmmsg` the headers; a message the kernel refuses is skipped (counted), the
/// rest still go. A full buffer (EAGAIN) drops what is left of the run.
fn send_run(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> u64 {
    let mut dropped = 0;
    let mut at = 0;
    while at < hdrs.len() {
        let rest = &mut hdrs[at..];
        // SAFETY: the headers point at names and iovecs built by `flush` into
        // buffers that outlive the call.
        let n = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as u32, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    dropped += rest.len() as u64;
                    break;
                }
                // This message failed (EMSGSIZE with DF set, a refused route, …):
                // skip it.
                _ => {
                    dropped += 1;
                    at += 1;
                }
            }
        } else {
            at += n as usize;
        }
    }
    dropped
}

fn from_storage(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_storage(addr: SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let sin =
                unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            sin.sin_zero = [0; 8];
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in6.
            let sin6 =
                unsafe { &mut *(s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn pair(v6: bool) -> (UdpSocket, UdpSocket) {
        let ip = if v6 { "[::1]:0" } else { "127.0.0.1:0" };
        let a = UdpSocket::bind(ip).expect("bind");
        let b = UdpSocket::bind(ip).expect("bind");
        a.set_nonblocking(true).expect("nonblocking");
        b.set_nonblocking(true).expect("nonblocking");
        (a, b)
    }

    #[test]
    fn nothing_queued_is_zero_not_an_error() {
        let (a, _) = pair(false);
        let mut batch = Batch::new();
        assert_eq!(batch.recv(a.as_raw_fd(), 0).expect("recv"), 0);
        assert_eq!(batch.received(0), None);
        assert_eq!(batch.flush(), 0);
    }

    #[test]
    fn receives_many_at_once_with_senders_and_offset() {
        for v6 in [false, true] {
            let (a, b) = pair(v6);
            for i in 0..40u8 {
                b.send_to(&[i; 7], a.local_addr().expect("addr"))
                    .expect("send");
            }
            let mut batch = Batch::new();
            let n = batch.recv(a.as_raw_fd(), 4).expect("recv");
            assert_eq!(n, BATCH);
            for i in 0..n {
                let r = batch.received(i).expect("datagram");
                assert_eq!(r.from, b.local_addr().expect("addr"));
                assert_eq!(r.len, 7);
                assert_eq!(batch.payload(i), &[i as u8; 7]);
                // The payload sits 4 bytes into the slot.
                assert_eq!(&batch.slot_mut(i)[4..11], &[i as u8; 7]);
            }
            assert_eq!(batch.recv(a.as_raw_fd(), 0).expect("recv"), 8);
            assert_eq!(batch.payload(7), &[39u8; 7]);
        }
    }

    #[test]
    fn a_full_size_datagram_fits_a_slot() {
        let (a, b) = pair(false);
        let big = vec![0xA5u8; 65507];
        b.send_to(&big, a.local_addr().expect("addr"))
            .expect("send");
        let mut batch = Batch::new();
        assert_eq!(batch.recv(a.as_raw_fd(), 4).expect("recv"), 1);
        assert_eq!(batch.payload(0), &big[..]);
    }

    #[test]
    fn sends_slots_and_copies_in_order_per_socket() {
        let (a, b) = pair(false);
        let (c, d) = pair(true);
        let to_b = b.local_addr().expect("addr");
        let to_d = d.local_addr().expect("addr");
        // Something to forward from a slot.
        b.send_to(b"xxhello", a.local_addr().expect("addr"))
            .expect("send");
        let mut batch = Batch::new();
        assert_eq!(batch.recv(a.as_raw_fd(), 0).expect("recv"), 1);
        batch.slot_mut(0)[..2].copy_from_slice(b"HI");
        batch.queue_slot(a.as_raw_fd(), to_b, 0, 0..7);
        batch.queue_copy(a.as_raw_fd(), to_b, b"second");
        batch.queue_copy(c.as_raw_fd(), to_d, b"over v6");
        batch.queue_slot(a.as_raw_fd(), to_b, 0, 2..7);
        assert_eq!(batch.queued(), 4);
        assert_eq!(batch.flush(), 0);
        assert_eq!(batch.queued(), 0);
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..3 {
            let (n, from) = b.recv_from(&mut buf).expect("recv");
            assert_eq!(from, a.local_addr().expect("addr"));
            got.push(buf[..n].to_vec());
        }
        assert_eq!(
            got,
            [b"HIhello".to_vec(), b"second".to_vec(), b"hello".to_vec()]
        );
        let (n, from) = d.recv_from(&mut buf).expect("recv");
        assert_eq!(
            (&buf[..n], from),
            (&b"over v6"[..], c.local_addr().expect("addr"))
        );
    }

    #[test]
    fn a_refused_send_is_counted_and_the_rest_still_go() {
        let (a, b) = pair(false);
        let to_b = b.local_addr().expect("addr");
        let mut batch = Batch::new();
        batch.queue_copy(a.as_raw_fd(), to_b, b"one");
        // An IPv6 destination from an IPv4 socket: EAFNOSUPPORT/EINVAL for this one.
        batch.queue_copy(a.as_raw_fd(), "[::1]:9".parse().expect("addr"), b"bad");
        batch.queue_copy(a.as_raw_fd(), to_b, b"two");
        assert_eq!(batch.flush(), 1);
        let mut buf = [0u8; 16];
        let (n, _) = b.recv_from(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"one");
        let (n, _) = b.recv_from(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"two");
    }
}
