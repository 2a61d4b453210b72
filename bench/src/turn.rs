//! The `turn` scenario: datagrams relayed per second through a TURN server (RFC 8656),
//! with loss, reordering, duplicates and round-trip time; and `target turn-peer`, the
//! UDP echo peer behind the relay.
//!
//! Setup, per allocation: its own UDP socket (connected to the server; bound to one
//! of `--sources` addresses if given), Allocate with long-term credentials (the 401
//! gives REALM and NONCE; then USERNAME, REALM, NONCE, MESSAGE-INTEGRITY and
//! FINGERPRINT; a 438 renews the nonce; an executor's later allocations start with the
//! nonce its first one learnt, see [`NonceCache`]), REQUESTED-TRANSPORT UDP;
//! CreatePermission for the peer and, unless `--send-indications`, ChannelBind
//! (channel 0x4000 + allocation number). At most [`SETUP_CONCURRENCY`] setups run at
//! a time per executor; a failed setup is an error counted by step and STUN code
//! (`allocate 401`, `channel-bind timeout`, …) and that allocation sits out. Every
//! executor waits for the others before the clock starts, so setup is not in the
//! rate (its latency is reported on its own).
//!
//! Load: each datagram carries a payload of `--size` bytes — sequence number, send
//! timestamp, allocation number and a tag, then filler — in ChannelData (or a Send
//! indication). The peer echoes it to the relayed address and the server hands it
//! back (ChannelData or Data indication). Max rate: each allocation keeps `--window`
//! datagrams outstanding beyond the highest one received, sending as they come back
//! (if nothing comes back for [`REFILL_AFTER`], what is outstanding is written off);
//! the RTT is from the actual send. Fixed rate: each allocation has its own schedule
//! ([`crate::pacing`]), one pacing task per executor sends what falls due, and the
//! timestamp is the slot's due time, so a generator that falls behind shows up in the
//! RTT (coordinated omission corrected as for HTTP). After the run, up to `--drain`
//! seconds for what is still in flight; then each allocation is deleted (Refresh with
//! LIFETIME 0) so the server frees its relay port.
//!
//! Counted per allocation by [`SeqTracker`]: received (unique), reordered (a sequence
//! number below the highest already seen), duplicates; lost = sent − received. RTT goes
//! into the histogram for every unique arrival. Anything that is not one of this
//! allocation's datagrams is an error (`foreign datagram`).
//!
//! Hot path: one pre-built frame and one receive buffer per allocation, stamped in
//! place; no allocation per datagram.
//!
//! `--idle`: set up the allocations, hold them `--settle` seconds, read the server's
//! VmRSS (`--pid`), delete them: memory per allocation, as `idle` does for
//! connections. A server may cap allocations per user (`--users`) and 401 challenges
//! per client IP (`--source 127.0.0.2 --sources N` spreads the clients over loopback
//! addresses).

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use glommio::net::UdpSocket;
use glommio::sync::Semaphore;
use glommio::GlommioError;
use serde::Serialize;

use crate::http::MAX_DURATION;
use crate::idle::vm_rss_kib;
use crate::pacing::Schedule;
use crate::runtime::{self, sleep_until, Executors};
use crate::stats::{Latency, RunInfo, Stats};
use crate::stun::{self, attr, method, Builder, Class, Message, TransactionId};

/// Allocation setups (or deletions) in flight at a time per executor.
const SETUP_CONCURRENCY: u64 = 64;

/// STUN transaction attempts (the first send and its retransmissions).
const ATTEMPTS: u32 = 3;

/// Max rate: with nothing received for this long, write off what is outstanding and
/// refill the window. Also how often a receiver checks the clock.
const REFILL_AFTER: Duration = Duration::from_millis(100);

/// Smallest payload: sequence (8), timestamp (8), allocation (4), tag (4).
pub const PAYLOAD_MIN: usize = 24;
/// Largest payload accepted.
pub const PAYLOAD_MAX: usize = 16 * 1024;

/// Marks a payload as ours.
const TAG: [u8; 4] = *b"PBT1";

/// Socket buffers asked for on the client and peer sockets (the kernel caps them at
/// net.core.rmem_max / wmem_max).
const SOCKET_BUFFER: usize = 4 << 20;

/// First channel number (RFC 8656 §12).
const CHANNEL_BASE: u16 = 0x4000;

/// A run, as given on the command line.
#[derive(Debug, Clone)]
pub struct TurnLoad {
    pub server: SocketAddr,
    pub peer: SocketAddr,
    pub user: String,
    /// More than 1: allocation `i` uses user name `{user}{i % users}` (a server may
    /// cap allocations per user).
    pub users: usize,
    pub password: String,
    /// Bind the client sockets to `sources` consecutive addresses from this one
    /// (allocation `i` to the `i % sources`-th); any address when `None`.
    pub source: Option<IpAddr>,
    pub sources: usize,
    /// Use this realm instead of the one the server's 401 names.
    pub realm: Option<String>,
    pub allocations: usize,
    /// Payload bytes per datagram.
    pub size: usize,
    /// Total datagrams/s on a fixed schedule; max rate when `None`.
    pub rate: Option<f64>,
    /// Max rate: datagrams outstanding per allocation.
    pub window: usize,
    pub duration: Duration,
    /// After the run, how long to wait for datagrams still in flight.
    pub drain: Duration,
    /// Wait for each STUN response try.
    pub timeout: Duration,
    /// Send indications and Data indications instead of channels.
    pub send_indications: bool,
    /// No datagrams: hold the allocations for `settle`, then delete them.
    pub idle: bool,
    /// Read this process's VmRSS before setup and after it (+ `settle`).
    pub pid: Option<u32>,
    pub settle: Duration,
    pub executors: Executors,
}

impl TurnLoad {
    fn user_for(&self, index: usize) -> String {
        if self.users > 1 {
            format!("{}{}", self.user, index % self.users)
        } else {
            self.user.clone()
        }
    }

    /// The local address of allocation `index`'s socket.
    fn bind_for(&self, index: usize) -> SocketAddr {
        let k = (index % self.sources.max(1)) as u32;
        match self.source {
            Some(IpAddr::V4(a)) => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(k))), 0)
            }
            Some(IpAddr::V6(a)) => SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(u128::from(k)))),
                0,
            ),
            None => unspecified(&self.server),
        }
    }

    fn mode(&self) -> &'static str {
        if self.send_indications {
            "send-indication"
        } else {
            "channel-data"
        }
    }
}

/// Where a payload's fields sit.
mod payload {
    use std::ops::Range;
    pub const SEQ: Range<usize> = 0..8;
    pub const TIME: Range<usize> = 8..16;
    pub const ALLOCATION: Range<usize> = 16..20;
    pub const TAG: Range<usize> = 20..24;
}

/// Fill a payload template: tag, allocation number, filler. `payload` is at least
/// [`PAYLOAD_MIN`] bytes.
pub fn init_payload(payload: &mut [u8], allocation: u32) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0x5a;
    }
    if let Some(a) = payload.get_mut(payload::ALLOCATION) {
        a.copy_from_slice(&allocation.to_be_bytes());
    }
    if let Some(t) = payload.get_mut(payload::TAG) {
        t.copy_from_slice(&TAG);
    }
}

/// Write the sequence number and the timestamp (ns since the start of the run).
pub fn stamp(payload: &mut [u8], seq: u64, time_ns: u64) {
    if let Some(s) = payload.get_mut(payload::SEQ) {
        s.copy_from_slice(&seq.to_be_bytes());
    }
    if let Some(t) = payload.get_mut(payload::TIME) {
        t.copy_from_slice(&time_ns.to_be_bytes());
    }
}

/// Read back (sequence, timestamp) if the payload is one of allocation
/// `allocation`'s, of `size` bytes.
pub fn read_stamp(payload: &[u8], allocation: u32, size: usize) -> Option<(u64, u64)> {
    if payload.len() != size
        || payload.get(payload::TAG)? != TAG
        || payload.get(payload::ALLOCATION)? != allocation.to_be_bytes()
    {
        return None;
    }
    let seq = u64::from_be_bytes(payload.get(payload::SEQ)?.try_into().ok()?);
    let time = u64::from_be_bytes(payload.get(payload::TIME)?.try_into().ok()?);
    Some((seq, time))
}

/// How a datagram arrived, by its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Above every sequence number seen so far.
    InOrder,
    /// Below the highest seen, and not seen before.
    Reordered,
    /// Seen before.
    Duplicate,
}

/// Sequence numbers seen remembered in a ring: the last [`SeqTracker::SPAN`] below the
/// highest. An arrival older than that counts as reordered and new (a duplicate that
/// late cannot be told apart). Pure, fixed size: nothing allocated per datagram.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// Highest sequence number seen + 1 (0: none yet).
    next: u64,
    ring: [u64; Self::WORDS],
    /// Unique datagrams received.
    pub received: u64,
    pub reordered: u64,
    pub duplicates: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker::new()
    }
}

impl SeqTracker {
    const WORDS: usize = 64;
    pub const SPAN: u64 = Self::WORDS as u64 * 64;

    pub fn new() -> SeqTracker {
        SeqTracker {
            next: 0,
            ring: [0; Self::WORDS],
            received: 0,
            reordered: 0,
            duplicates: 0,
        }
    }

    fn slot(seq: u64) -> (usize, u64) {
        let bit = seq % Self::SPAN;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    fn test(&self, seq: u64) -> bool {
        let (w, m) = Self::slot(seq);
        self.ring.get(w).is_some_and(|x| x & m != 0)
    }

    fn set(&mut self, seq: u64, on: bool) {
        let (w, m) = Self::slot(seq);
        if let Some(x) = self.ring.get_mut(w) {
            if on {
                *x |= m;
            } else {
                *x &= !m;
            }
        }
    }

    /// Record the arrival of `seq`.
    pub fn arrive(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            // The ring now covers up to `seq`: forget what the slots of next..seq held
            // (sequence numbers SPAN older).
            if seq - self.next >= Self::SPAN {
                self.ring = [0; Self::WORDS];
            } else {
                for s in self.next..seq {
                    self.set(s, false);
                }
            }
            self.set(seq, true);
            self.next = seq + 1;
            self.received += 1;
            return Arrival::InOrder;
        }
        if self.next - seq > Self::SPAN {
            self.received += 1;
            self.reordered += 1;
            return Arrival::Reordered;
        }
        if self.test(seq) {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.set(seq, true);
        self.received += 1;
        self.reordered += 1;
        Arrival::Reordered
    }

    /// The sequence number after the highest seen (0 before any).
    pub fn expected(&self) -> u64 {
        self.next
    }

    /// Datagrams sent and never received.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.received)
    }
}

/// What one executor counted.
#[derive(Debug, Clone, Default)]
struct Counts {
    allocations_ok: usize,
    sent: u64,
    unsent: u64,
    received: u64,
    received_in_window: u64,
    lost: u64,
    reordered: u64,
    duplicates: u64,
}

impl Counts {
    fn merge(&mut self, o: &Counts) {
        self.allocations_ok += o.allocations_ok;
        self.sent += o.sent;
        self.unsent += o.unsent;
        self.received += o.received;
        self.received_in_window += o.received_in_window;
        self.lost += o.lost;
        self.reordered += o.reordered;
        self.duplicates += o.duplicates;
    }
}

/// The report of a turn run.
#[derive(Debug, Clone, Serialize)]
pub struct TurnReport {
    #[serde(flatten)]
    pub info: RunInfo,
    /// Payload bytes per datagram.
    pub size: usize,
    /// Max rate: datagrams outstanding per allocation.
    pub window: Option<usize>,
    pub idle: bool,
    pub allocations_ok: usize,
    /// Allocate + CreatePermission (+ ChannelBind) per allocation, µs.
    pub setup_latency_us: Latency,
    /// The sending window, s.
    pub elapsed_s: f64,
    pub sent: u64,
    /// Unique datagrams echoed back (including during the drain).
    pub received: u64,
    pub lost: u64,
    /// lost / sent, %.
    pub loss_pct: f64,
    pub reordered: u64,
    pub duplicates: u64,
    /// Datagrams echoed back within the window, per second: the relayed rate (each
    /// crossed the server twice).
    pub rate: f64,
    /// Datagrams sent per second.
    pub sent_rate: f64,
    /// Round-trip time client → server → peer → server → client.
    pub latency_us: Latency,
    /// Fixed rate: schedule slots before the end that were never sent.
    pub unsent: u64,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// (after − before) / allocations set up, bytes.
    pub rss_per_allocation_bytes: Option<f64>,
    /// Allocations set up and VmRSS when half of them were (one thread, after a
    /// settle).
    pub allocations_at_mid: usize,
    pub rss_mid_kib: Option<u64>,
    /// VmRSS growth per allocation over the second half alone
    /// ([`crate::idle::marginal`]).
    pub rss_marginal_per_allocation_bytes: Option<f64>,
    pub error_total: u64,
    pub errors: BTreeMap<String, u64>,
}

impl TurnReport {
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let i = &self.info;
        let rate = match (i.target_rate, self.window) {
            _ if self.idle => "none (idle)".to_string(),
            (Some(r), _) => format!("fixed {r:.0} datagrams/s (RTT from scheduled send)"),
            (None, Some(w)) => format!("max (window {w} per allocation)"),
            (None, None) => "max".to_string(),
        };
        let _ = writeln!(
            s,
            "turn {} -> {}: {} allocations ({} set up) on {} thread(s), {} B payloads, rate {}",
            i.mode, i.target, i.connections, self.allocations_ok, i.threads, self.size, rate
        );
        let l = &self.setup_latency_us;
        let _ = writeln!(
            s,
            "  setup µs     p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            l.p50, l.p90, l.p99, l.max
        );
        if !self.idle {
            let _ = writeln!(s, "  elapsed      {:>12.3} s", self.elapsed_s);
            let _ = writeln!(
                s,
                "  sent         {:>12} datagrams ({:.1}/s)",
                self.sent, self.sent_rate
            );
            let _ = writeln!(s, "  received     {:>12} datagrams", self.received);
            let _ = writeln!(s, "  rate         {:>12.1} datagrams/s relayed", self.rate);
            let _ = writeln!(
                s,
                "  lost         {:>12} ({:.3} %)   reordered {}   duplicates {}",
                self.lost, self.loss_pct, self.reordered, self.duplicates
            );
            let l = &self.latency_us;
            let _ = writeln!(
                s,
                "  RTT µs       p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (mean {:.1})",
                l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean
            );
            if i.target_rate.is_some() {
                let _ = writeln!(
                    s,
                    "  unsent       {:>12} (slots missed: behind schedule)",
                    self.unsent
                );
            }
        }
        if let (Some(b), Some(a)) = (self.rss_before_kib, self.rss_after_kib) {
            let _ = writeln!(s, "  VmRSS before {b:>12} KiB");
            let _ = writeln!(s, "  VmRSS after  {a:>12} KiB");
            let _ = writeln!(
                s,
                "  per alloc.   {:>12.0} bytes",
                self.rss_per_allocation_bytes.unwrap_or(0.0)
            );
            if let Some(m) = self.rss_marginal_per_allocation_bytes {
                let _ = writeln!(s, "  2nd half     {m:>12.0} bytes per allocation");
            }
        }
        let _ = writeln!(s, "  errors       {:>12}", self.error_total);
        for (kind, n) in &self.errors {
            let _ = writeln!(s, "    {kind:<28} {n:>8}");
        }
        s
    }
}

/// A UDP socket for glommio, made with socket2 (big buffers; no SO_REUSEPORT unless
/// asked: two client sockets must never share an ephemeral port).
/// A glommio UDP socket over [`std_udp_socket`].
fn udp_socket(
    bind: SocketAddr,
    connect: Option<SocketAddr>,
    reuse_port: bool,
) -> io::Result<UdpSocket> {
    let fd = std_udp_socket(bind, connect, reuse_port)?.into_raw_fd();
    // SAFETY: `fd` is an open UDP socket that nothing else owns: `into_raw_fd` gave
    // up ownership, which passes to the glommio socket.
    Ok(unsafe { UdpSocket::from_raw_fd(fd) })
}

/// A UDP socket with large buffers, bound (with SO_REUSEPORT if asked) and, if
/// `connect` is given, connected.
fn std_udp_socket(
    bind: SocketAddr,
    connect: Option<SocketAddr>,
    reuse_port: bool,
) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if bind.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&bind.into())?;
    if let Some(c) = connect {
        s.connect(&c.into())?;
    }
    Ok(s.into())
}

fn unspecified(like: &SocketAddr) -> SocketAddr {
    match like {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

fn is_timeout(e: &GlommioError<()>) -> bool {
    match e {
        GlommioError::TimedOut(_) => true,
        GlommioError::IoError(e) => e.kind() == io::ErrorKind::TimedOut,
        _ => false,
    }
}

fn io_kind(e: &GlommioError<()>, op: &'static str) -> &'static str {
    let kind = match e {
        GlommioError::IoError(e) => e.kind(),
        _ => io::ErrorKind::Other,
    };
    match (op, kind) {
        ("send", io::ErrorKind::ConnectionRefused) => "send refused",
        ("recv", io::ErrorKind::ConnectionRefused) => "recv refused",
        ("send", _) => "send",
        _ => "recv",
    }
}

/// One allocation: its socket and credentials.
struct Session {
    index: usize,
    sock: UdpSocket,
    channel: u16,
    user: String,
    password: String,
    realm: Option<String>,
    /// REALM, NONCE and key once the server has asked for them.
    auth: RefCell<Option<Auth>>,
    /// The realm and nonce last seen by this executor's allocations.
    cache: NonceCache,
}

/// The realm and nonce an executor's allocations share: a client may reuse a nonce
/// for later requests to the same server (RFC 8489 §9.2.3), so only the first
/// allocation is challenged with a 401 and the others start authenticated (a server
/// that wants a nonce per 5-tuple answers 438 with one). Besides saving a round trip,
/// this keeps the load under a server's budget of 401s per client IP.
type NonceCache = Rc<RefCell<Option<(String, Vec<u8>)>>>;

#[derive(Debug, Clone)]
struct Auth {
    realm: String,
    nonce: Vec<u8>,
    key: [u8; 16],
}

fn new_tid() -> TransactionId {
    use ring::rand::SecureRandom;
    let mut tid = [0u8; 12];
    if ring::rand::SystemRandom::new().fill(&mut tid).is_err() {
        // Unique enough for a benchmark if the system RNG ever failed.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            ^ u128::from(std::process::id());
        tid.copy_from_slice(n.to_be_bytes().get(..12).unwrap_or(&[0; 12]));
    }
    tid
}

/// Send `req` and wait for the response with its transaction ID (other datagrams are
/// skipped), retransmitting up to [`ATTEMPTS`] times. Returns the response length.
async fn transact(
    sock: &UdpSocket,
    req: &[u8],
    tid: &TransactionId,
    timeout: Duration,
    buf: &mut [u8],
) -> Result<usize, &'static str> {
    for _ in 0..ATTEMPTS {
        sock.send(req).await.map_err(|e| io_kind(&e, "send"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = sock.set_read_timeout(Some(left));
            match sock.recv(buf).await {
                Ok(n) => {
                    let Some(m) = buf.get(..n).and_then(|b| Message::parse(b).ok()) else {
                        continue;
                    };
                    let fingerprint_ok = match m.attrs().last() {
                        Some(a) if a.t == attr::FINGERPRINT => m.check_fingerprint(),
                        _ => true,
                    };
                    if &m.tid == tid
                        && fingerprint_ok
                        && matches!(m.class, Class::Success | Class::Error)
                    {
                        return Ok(n);
                    }
                }
                Err(e) if is_timeout(&e) => break,
                Err(e) => return Err(io_kind(&e, "recv")),
            }
        }
    }
    Err("timeout")
}

impl Session {
    /// One request, authenticated once the server has asked (401) and renewed on a
    /// stale nonce (438). `add` appends the method's attributes. Returns the success
    /// response's length in `buf`, or the error kind (`allocate 401`, …).
    async fn request(
        &self,
        method: u16,
        what: &str,
        add: &dyn Fn(&mut Builder),
        timeout: Duration,
        buf: &mut [u8],
        stats: &RefCell<Stats>,
    ) -> Result<usize, String> {
        let mut challenged = false;
        for _ in 0..3 {
            let tid = new_tid();
            let mut b = Builder::new(method, Class::Request, tid);
            add(&mut b);
            b.attr(attr::SOFTWARE, b"portico-bench");
            let auth = self.auth.borrow().clone();
            if let Some(a) = &auth {
                b.attr(attr::USERNAME, self.user.as_bytes());
                b.attr(attr::REALM, a.realm.as_bytes());
                b.attr(attr::NONCE, &a.nonce);
                b.integrity(&a.key);
            }
            b.fingerprint();
            let req = b.finish();
            let n = transact(&self.sock, &req, &tid, timeout, buf)
                .await
                .map_err(|k| format!("{what} {k}"))?;
            let m = Message::parse(buf.get(..n).unwrap_or_default())
                .map_err(|_| format!("{what} bad response"))?;
            if m.class == Class::Success {
                if let Some(a) = &auth {
                    if !m.check_integrity(&a.key) {
                        stats
                            .borrow_mut()
                            .record_error(&format!("{what} response integrity"));
                    }
                }
                return Ok(n);
            }
            let code = m.error_code().map_or(0, |(c, _)| c);
            // A 401 is worth one more try: the first request, or one that used a nonce
            // from the cache. A second 401 means wrong credentials.
            let renew = match code {
                401 => !std::mem::replace(&mut challenged, true),
                438 => true,
                _ => false,
            };
            let nonce = m.get(attr::NONCE);
            let realm = self.realm.clone().or_else(|| {
                m.get(attr::REALM)
                    .and_then(|r| String::from_utf8(r.to_vec()).ok())
            });
            match (renew, nonce, realm) {
                (true, Some(nonce), Some(realm)) => {
                    let key = stun::long_term_key(&self.user, &realm, &self.password);
                    *self.cache.borrow_mut() = Some((realm.clone(), nonce.to_vec()));
                    *self.auth.borrow_mut() = Some(Auth {
                        realm,
                        nonce: nonce.to_vec(),
                        key,
                    });
                }
                _ => return Err(format!("{what} {code}")),
            }
        }
        Err(format!("{what} nonce loop"))
    }
}

/// Set up allocation `index`: socket, Allocate, CreatePermission, ChannelBind. An
/// Allocate refused with 437 (Allocation Mismatch) on a fresh socket means the server
/// still holds state for that 5-tuple (a port reused soon after an earlier run; coturn
/// keeps it a while after the allocation is deleted): tried again from a new port.
async fn setup(
    load: Rc<TurnLoad>,
    index: usize,
    gate: Rc<Semaphore>,
    cache: NonceCache,
    stats: Rc<RefCell<Stats>>,
    setup_stats: Rc<RefCell<Stats>>,
) -> Option<Session> {
    let _permit = gate.acquire_permit(1).await.ok()?;
    let began = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        match setup_once(&load, index, &cache, &stats).await {
            Ok(s) => {
                setup_stats.borrow_mut().record_ok(began.elapsed());
                return Some(s);
            }
            Err(k) if k == "allocate 437" && tries < 3 => {}
            Err(k) => {
                stats.borrow_mut().record_error(&k);
                return None;
            }
        }
    }
}

async fn setup_once(
    load: &TurnLoad,
    index: usize,
    cache: &NonceCache,
    stats: &RefCell<Stats>,
) -> Result<Session, String> {
    let sock = udp_socket(load.bind_for(index), Some(load.server), false)
        .map_err(|_| "socket".to_string())?;
    let user = load.user_for(index);
    let auth = cache.borrow().clone().map(|(realm, nonce)| Auth {
        key: stun::long_term_key(&user, &realm, &load.password),
        realm,
        nonce,
    });
    let s = Session {
        index,
        sock,
        channel: CHANNEL_BASE + (index % 0x4000) as u16,
        user,
        password: load.password.clone(),
        realm: load.realm.clone(),
        auth: RefCell::new(auth),
        cache: cache.clone(),
    };
    let mut buf = vec![0u8; 2048];
    let t = load.timeout;
    let peer = load.peer;
    let channel = s.channel;
    let n = s
        .request(
            method::ALLOCATE,
            "allocate",
            &|b| {
                b.attr(attr::REQUESTED_TRANSPORT, &stun::TRANSPORT_UDP);
            },
            t,
            &mut buf,
            stats,
        )
        .await?;
    let relayed = Message::parse(buf.get(..n).unwrap_or_default())
        .ok()
        .and_then(|m| m.xor_address(attr::XOR_RELAYED_ADDRESS));
    let steps = async {
        if relayed.is_none() {
            return Err("allocate: no XOR-RELAYED-ADDRESS".to_string());
        }
        s.request(
            method::CREATE_PERMISSION,
            "create-permission",
            &|b| {
                b.xor_address(attr::XOR_PEER_ADDRESS, peer);
            },
            t,
            &mut buf,
            stats,
        )
        .await?;
        if !load.send_indications {
            s.request(
                method::CHANNEL_BIND,
                "channel-bind",
                &|b| {
                    b.u32_attr(attr::CHANNEL_NUMBER, u32::from(channel) << 16);
                    b.xor_address(attr::XOR_PEER_ADDRESS, peer);
                },
                t,
                &mut buf,
                stats,
            )
            .await?;
        }
        Ok(())
    };
    let outcome = steps.await;
    match outcome {
        Ok(()) => Ok(s),
        Err(k) => {
            // Free the allocation made before the failing step.
            let _ = deallocate(&s, load, stats).await;
            Err(k)
        }
    }
}

/// Refresh with LIFETIME 0: the server deletes the allocation and frees its port.
async fn deallocate(s: &Session, load: &TurnLoad, stats: &RefCell<Stats>) -> Result<(), String> {
    let mut buf = vec![0u8; 2048];
    s.request(
        method::REFRESH,
        "refresh",
        &|b| {
            b.u32_attr(attr::LIFETIME, 0);
        },
        load.timeout,
        &mut buf,
        stats,
    )
    .await
    .map(|_| ())
}

/// Shared by the executors: how many are set up, and the start they agree on.
#[derive(Default)]
struct Rendezvous {
    ready: AtomicUsize,
    allocations_ok: AtomicUsize,
    start: OnceLock<Instant>,
}

/// Everything a data task needs; shared by the tasks of one executor.
struct Plan {
    load: TurnLoad,
    start: Instant,
    end: Instant,
    /// No receive is waited for after this.
    hard_stop: Instant,
    /// Allocations set up over all executors (the fixed rate is shared by them).
    allocations_ok: usize,
}

/// The datagram an allocation sends, built once; `payload` is where its payload
/// starts.
struct Frame {
    bytes: Vec<u8>,
    payload: usize,
    /// Send indications: where the transaction ID is (varied per datagram).
    tid: Option<usize>,
}

impl Frame {
    fn new(load: &TurnLoad, s: &Session) -> Frame {
        let mut payload = vec![0u8; load.size];
        init_payload(&mut payload, s.index as u32);
        if load.send_indications {
            let mut b = Builder::new(method::SEND, Class::Indication, new_tid());
            b.xor_address(attr::XOR_PEER_ADDRESS, load.peer);
            let at = b.attr(attr::DATA, &payload);
            Frame {
                bytes: b.finish(),
                payload: at,
                tid: Some(8),
            }
        } else {
            let mut bytes = vec![0u8; stun::CHANNEL_HEADER_LEN + load.size];
            stun::channel_header(s.channel, load.size, &mut bytes);
            if let Some(p) = bytes.get_mut(stun::CHANNEL_HEADER_LEN..) {
                p.copy_from_slice(&payload);
            }
            Frame {
                bytes,
                payload: stun::CHANNEL_HEADER_LEN,
                tid: None,
            }
        }
    }

    fn stamp(&mut self, size: usize, seq: u64, time_ns: u64) {
        if let Some(p) = self.bytes.get_mut(self.payload..self.payload + size) {
            stamp(p, seq, time_ns);
        }
        if let Some(t) = self.tid.and_then(|at| self.bytes.get_mut(at..at + 8)) {
            t.copy_from_slice(&seq.to_be_bytes());
        }
    }
}

/// The payload of a datagram from the server: ChannelData on `channel`, or a Data
/// indication's DATA.
fn payload_of(dgram: &[u8], channel: u16) -> Option<&[u8]> {
    if let Some((ch, p)) = stun::parse_channel_data(dgram) {
        return (ch == channel).then_some(p);
    }
    let m = Message::parse(dgram).ok()?;
    if m.method == method::DATA && m.class == Class::Indication {
        m.get(attr::DATA)
    } else {
        None
    }
}

fn ns_since(start: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX)
}

/// One allocation's receiving side: what it has counted so far.
struct Receiver {
    buf: Vec<u8>,
    tracker: SeqTracker,
    received_in_window: u64,
}

impl Receiver {
    fn new(size: usize) -> Receiver {
        Receiver {
            buf: vec![0u8; size + 256],
            tracker: SeqTracker::new(),
            received_in_window: 0,
        }
    }

    /// Handle one datagram of `n` bytes in `buf`; true if it was a new one of ours.
    fn on_datagram(&mut self, n: usize, s: &Session, plan: &Plan, stats: &RefCell<Stats>) -> bool {
        let now = Instant::now();
        let stamp = self
            .buf
            .get(..n)
            .and_then(|d| payload_of(d, s.channel))
            .and_then(|p| read_stamp(p, s.index as u32, plan.load.size));
        let Some((seq, time_ns)) = stamp else {
            stats.borrow_mut().record_error("foreign datagram");
            return false;
        };
        match self.tracker.arrive(seq) {
            Arrival::Duplicate => false,
            Arrival::InOrder | Arrival::Reordered => {
                let sent_at = plan.start + Duration::from_nanos(time_ns);
                stats
                    .borrow_mut()
                    .record_ok(now.saturating_duration_since(sent_at));
                if now <= plan.end {
                    self.received_in_window += 1;
                }
                true
            }
        }
    }

    fn add_to(&self, counts: &mut Counts, sent: u64) {
        counts.sent += sent;
        counts.received += self.tracker.received;
        counts.received_in_window += self.received_in_window;
        counts.lost += self.tracker.lost(sent);
        counts.reordered += self.tracker.reordered;
        counts.duplicates += self.tracker.duplicates;
    }
}

/// Max rate: keep `window` datagrams outstanding on allocation `s`.
async fn max_rate(
    s: Rc<Session>,
    plan: Rc<Plan>,
    stats: Rc<RefCell<Stats>>,
    counts: Rc<RefCell<Counts>>,
) {
    let size = plan.load.size;
    let mut frame = Frame::new(&plan.load, &s);
    let mut rx = Receiver::new(size);
    let mut seq = 0u64;
    // Sequence numbers below this are no longer waited for (written off after a
    // silence of REFILL_AFTER).
    let mut floor = 0u64;
    let window = plan.load.window as u64;
    let _ = s.sock.set_read_timeout(Some(REFILL_AFTER));
    loop {
        let now = Instant::now();
        if now < plan.end {
            // Outstanding: what was sent after the highest datagram received (one
            // missing below it is taken as lost, loopback does not reorder; if it
            // still comes, it counts as received and reordered).
            while seq - floor.max(rx.tracker.expected()).min(seq) < window {
                frame.stamp(size, seq, ns_since(plan.start, Instant::now()));
                match s.sock.send(&frame.bytes).await {
                    Ok(_) => seq += 1,
                    Err(e) => {
                        stats.borrow_mut().record_error(io_kind(&e, "send"));
                        glommio::timer::sleep(Duration::from_millis(1)).await;
                        break;
                    }
                }
            }
        } else if rx.tracker.received >= seq || now >= plan.hard_stop {
            break;
        }
        match s.sock.recv(&mut rx.buf).await {
            Ok(n) => {
                rx.on_datagram(n, &s, &plan, &stats);
            }
            // Nothing for a while: what is outstanding is lost (or very late).
            Err(e) if is_timeout(&e) => floor = seq,
            Err(e) => {
                stats.borrow_mut().record_error(io_kind(&e, "recv"));
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    rx.add_to(&mut counts.borrow_mut(), seq);
}

/// One allocation's sending side at a fixed rate.
struct Lane {
    s: Rc<Session>,
    frame: Frame,
    schedule: Schedule,
    /// The next slot of the schedule.
    slot: u64,
    /// Datagrams sent (the next sequence number), shared with its receiver.
    sent: Rc<Cell<u64>>,
}

/// Sends in a row after which the pacer lets the receivers run.
const PACER_BURST: u32 = 32;

/// Fixed rate: one pacing task for all of this executor's allocations sends each
/// allocation's datagrams on its own schedule ([`Schedule`]), earliest due first
/// (a heap), so one wake-up sends everything that has fallen due and the executor
/// runs one timer rather than one per allocation; one task per allocation receives.
async fn fixed_rate(
    sessions: &[Rc<Session>],
    plan: Rc<Plan>,
    rate: f64,
    stats: Rc<RefCell<Stats>>,
    counts: Rc<RefCell<Counts>>,
) {
    let sending = Rc::new(Cell::new(true));
    let mut lanes = Vec::with_capacity(sessions.len());
    let mut receivers = Vec::with_capacity(sessions.len());
    for s in sessions {
        let sent = Rc::new(Cell::new(0u64));
        receivers.push(glommio::spawn_local(receive(
            s.clone(),
            plan.clone(),
            stats.clone(),
            sent.clone(),
            sending.clone(),
        )));
        lanes.push(Lane {
            s: s.clone(),
            frame: Frame::new(&plan.load, s),
            schedule: Schedule::for_connection(
                plan.start,
                rate,
                plan.allocations_ok.max(1),
                s.index,
            ),
            slot: 0,
            sent,
        });
    }
    let size = plan.load.size;
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = lanes
        .iter()
        .enumerate()
        .map(|(i, l)| Reverse((l.schedule.due(0), i)))
        .collect();
    let mut burst = 0u32;
    while let Some(Reverse((due, i))) = heap.pop() {
        if due >= plan.end {
            continue; // this allocation is done
        }
        if due > Instant::now() {
            sleep_until(due).await;
            burst = 0;
        } else if burst >= PACER_BURST {
            futures_lite::future::yield_now().await;
            burst = 0;
        }
        burst += 1;
        let Some(lane) = lanes.get_mut(i) else {
            continue;
        };
        lane.slot += 1;
        // Timestamped with the due time: lateness here counts in the RTT.
        let seq = lane.sent.get();
        lane.frame.stamp(size, seq, ns_since(plan.start, due));
        match lane.s.sock.send(&lane.frame.bytes).await {
            Ok(_) => lane.sent.set(seq + 1),
            Err(e) => stats.borrow_mut().record_error(io_kind(&e, "send")),
        }
        heap.push(Reverse((lane.schedule.due(lane.slot), i)));
    }
    sending.set(false);
    for (lane, receiver) in lanes.iter().zip(receivers) {
        let rx = receiver.await;
        let sent = lane.sent.get();
        let mut c = counts.borrow_mut();
        rx.add_to(&mut c, sent);
        c.unsent += lane.schedule.slots_before(plan.end).saturating_sub(sent);
    }
}

/// Fixed rate: allocation `s`'s receiving side, until everything sent has come back
/// (once sending is over) or the drain ends.
async fn receive(
    s: Rc<Session>,
    plan: Rc<Plan>,
    stats: Rc<RefCell<Stats>>,
    sent: Rc<Cell<u64>>,
    sending: Rc<Cell<bool>>,
) -> Receiver {
    let mut rx = Receiver::new(plan.load.size);
    let _ = s.sock.set_read_timeout(Some(REFILL_AFTER));
    loop {
        if Instant::now() >= plan.hard_stop || (!sending.get() && rx.tracker.received >= sent.get())
        {
            break;
        }
        match s.sock.recv(&mut rx.buf).await {
            Ok(n) => {
                rx.on_datagram(n, &s, &plan, &stats);
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                stats.borrow_mut().record_error(io_kind(&e, "recv"));
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    rx
}

/// What one executor hands back.
struct ExecutorResult {
    stats: Stats,
    setup: Stats,
    counts: Counts,
    rss_after: Option<Result<u64, String>>,
    /// Allocations set up and VmRSS at the middle of the setup (one thread only).
    rss_mid: Option<(usize, u64)>,
}

async fn run_executor(
    load: TurnLoad,
    t: usize,
    threads: usize,
    rendezvous: Arc<Rendezvous>,
) -> ExecutorResult {
    let load = Rc::new(load);
    let stats = Rc::new(RefCell::new(Stats::new()));
    let setup_stats = Rc::new(RefCell::new(Stats::new()));
    let gate = Rc::new(Semaphore::new(SETUP_CONCURRENCY));
    let cache = NonceCache::default();
    let spawn = |i: usize| {
        glommio::spawn_local(setup(
            load.clone(),
            i,
            gate.clone(),
            cache.clone(),
            stats.clone(),
            setup_stats.clone(),
        ))
    };
    // The first allocation alone (it learns the realm and nonce), then the rest.
    let mut mine = (t..load.allocations).step_by(threads);
    let mut sessions = Vec::new();
    if let Some(first) = mine.next() {
        sessions.extend(spawn(first).await.map(Rc::new));
    }
    // In two halves, VmRSS read between them (one thread, with --pid).
    let rest: Vec<usize> = mine.collect();
    let first_half = rest.len().div_ceil(2);
    let mut rss_mid = None;
    for (half, chunk) in [&rest[..first_half], &rest[first_half..]]
        .into_iter()
        .enumerate()
    {
        let tasks: Vec<_> = chunk.iter().map(|&i| spawn(i)).collect();
        for task in tasks {
            if let Some(s) = task.await {
                sessions.push(Rc::new(s));
            }
        }
        if let (0, 1, Some(pid)) = (half, threads, load.pid) {
            glommio::timer::sleep(load.settle).await;
            rss_mid = vm_rss_kib(pid).ok().map(|kib| (sessions.len(), kib));
        }
    }
    // Wait for every executor's setup; then the first one through fixes the start.
    rendezvous
        .allocations_ok
        .fetch_add(sessions.len(), Ordering::SeqCst);
    rendezvous.ready.fetch_add(1, Ordering::SeqCst);
    while rendezvous.ready.load(Ordering::SeqCst) < threads {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let hold = if load.idle || load.pid.is_some() {
        load.settle
    } else {
        Duration::from_millis(20)
    };
    let start = *rendezvous.start.get_or_init(|| Instant::now() + hold);
    let end = if load.idle {
        start
    } else {
        start + load.duration
    };
    sleep_until(start).await;
    let rss_after = match (t, load.pid) {
        (0, Some(pid)) => Some(vm_rss_kib(pid).map_err(|e| e.to_string())),
        _ => None,
    };
    let counts = Rc::new(RefCell::new(Counts {
        allocations_ok: sessions.len(),
        ..Counts::default()
    }));
    if !load.idle {
        let plan = Rc::new(Plan {
            load: (*load).clone(),
            start,
            end,
            hard_stop: end + load.drain,
            allocations_ok: rendezvous.allocations_ok.load(Ordering::SeqCst),
        });
        match load.rate {
            Some(r) => fixed_rate(&sessions, plan, r, stats.clone(), counts.clone()).await,
            None => {
                let tasks: Vec<_> = sessions
                    .iter()
                    .map(|s| {
                        let (s, plan, stats, counts) =
                            (s.clone(), plan.clone(), stats.clone(), counts.clone());
                        glommio::spawn_local(max_rate(s, plan, stats, counts))
                    })
                    .collect();
                for task in tasks {
                    task.await;
                }
            }
        }
    }
    // Delete the allocations (the data tasks have dropped their handles).
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|s| {
            let (load, gate, stats) = (load.clone(), gate.clone(), stats.clone());
            glommio::spawn_local(async move {
                let _permit = gate.acquire_permit(1).await;
                if let Err(k) = deallocate(&s, &load, &stats).await {
                    stats.borrow_mut().record_error(&k);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
    let stats = stats.borrow().clone();
    let setup = setup_stats.borrow().clone();
    let counts = counts.borrow().clone();
    ExecutorResult {
        stats,
        setup,
        counts,
        rss_after,
        rss_mid,
    }
}

/// Run the load and report it.
pub fn run(load: TurnLoad) -> Result<TurnReport> {
    if load.duration > MAX_DURATION {
        bail!("--duration is capped at {} s", MAX_DURATION.as_secs());
    }
    if load.allocations == 0 || load.allocations > 16_384 {
        bail!("--allocations must be 1..=16384");
    }
    if !(PAYLOAD_MIN..=PAYLOAD_MAX).contains(&load.size) {
        bail!("--size must be {PAYLOAD_MIN}..={PAYLOAD_MAX} bytes");
    }
    if load.window == 0 {
        bail!("--window must be at least 1");
    }
    if let Some(r) = load.rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("--rate must be a positive number");
        }
    }
    let threads = load.executors.threads.clamp(1, load.allocations);
    let executors = Executors {
        threads,
        ..load.executors.clone()
    };
    let rss_before = load.pid.map(vm_rss_kib).transpose()?;
    let rendezvous = Arc::new(Rendezvous::default());
    let l = load.clone();
    let r = rendezvous.clone();
    let results = runtime::run_on_executors("bench-turn", &executors, move |t| {
        run_executor(l.clone(), t, threads, r.clone())
    })?;
    let mut stats = Stats::new();
    let mut setup = Stats::new();
    let mut counts = Counts::default();
    let mut rss_after = None;
    let rss_mid = results.iter().find_map(|r| r.rss_mid);
    for r in &results {
        stats.merge(&r.stats);
        setup.merge(&r.setup);
        counts.merge(&r.counts);
        if let Some(a) = &r.rss_after {
            rss_after = Some(a.clone().map_err(anyhow::Error::msg)?);
        }
    }
    let elapsed_s = if load.idle {
        0.0
    } else {
        load.duration.as_secs_f64()
    };
    let per_s = |n: u64| {
        if elapsed_s > 0.0 {
            n as f64 / elapsed_s
        } else {
            0.0
        }
    };
    let info = RunInfo {
        scenario: "turn",
        mode: load.mode().to_string(),
        target: format!("{} (peer {})", load.server, load.peer),
        connections: load.allocations,
        threads,
        target_rate: load.rate,
    };
    let latency_us = stats.latency_us();
    Ok(TurnReport {
        info,
        size: load.size,
        window: load.rate.is_none().then_some(load.window),
        idle: load.idle,
        allocations_ok: counts.allocations_ok,
        setup_latency_us: setup.latency_us(),
        elapsed_s,
        sent: counts.sent,
        received: counts.received,
        lost: counts.lost,
        loss_pct: if counts.sent > 0 {
            counts.lost as f64 * 100.0 / counts.sent as f64
        } else {
            0.0
        },
        reordered: counts.reordered,
        duplicates: counts.duplicates,
        rate: per_s(counts.received_in_window),
        sent_rate: per_s(counts.sent),
        latency_us,
        unsent: counts.unsent,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_per_allocation_bytes: match (rss_before, rss_after) {
            (Some(b), Some(a)) if counts.allocations_ok > 0 => {
                Some((a as f64 - b as f64) * 1024.0 / counts.allocations_ok as f64)
            }
            _ => None,
        },
        allocations_at_mid: rss_mid.map_or(0, |(m, _)| m),
        rss_mid_kib: rss_mid.map(|(_, kib)| kib),
        rss_marginal_per_allocation_bytes: match (rss_mid, rss_after) {
            (Some((m, mid)), Some(a)) => crate::idle::marginal(mid, m, a, counts.allocations_ok),
            _ => None,
        },
        error_total: stats.error_total(),
        errors: stats.errors.clone(),
    })
}

/// Run the TURN echo peer until killed: every datagram goes back to its sender (the
/// relayed address), unchanged. One thread per `--threads`, pinned like the
/// executors, each with its own SO_REUSEPORT socket (the kernel spreads the senders
/// over them). Plain blocking threads rather than glommio: `recvmmsg` takes every
/// datagram waiting (up to [`PEER_BATCH`]) in one system call and `sendmmsg` returns
/// them in one, so the peer costs the CPU it shares with the load generator as little
/// as possible.
pub fn run_peer(listen: SocketAddr, executors: &Executors) -> Result<()> {
    let threads = executors.threads.max(1);
    eprintln!("portico-bench target turn-peer (UDP echo) on {listen} ({threads} thread(s))");
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let cpu = executors
            .cpus
            .as_deref()
            .filter(|l| !l.is_empty())
            .and_then(|l| l.get(i % l.len()).copied());
        let sock = std_udp_socket(listen, None, true)?;
        handles.push(
            std::thread::Builder::new()
                .name(format!("turn-peer-{i}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    echo_batches(&sock)
                })?,
        );
    }
    for h in handles {
        match h.join() {
            Ok(r) => r?,
            Err(_) => bail!("a turn-peer thread panicked"),
        }
    }
    Ok(())
}

/// Datagrams taken and returned per system call by the peer.
pub const PEER_BATCH: usize = 64;

/// Largest datagram the peer echoes whole.
const PEER_DATAGRAM: usize = 64 * 1024;

/// Pin the calling thread to `cpu` (best effort: a failure leaves it unbound).
fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data (all zeroes is the empty set); CPU_SET only
    // writes inside it (it ignores CPUs beyond its size); sched_setaffinity(0, …)
    // reads the set for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "turn-peer: cannot pin to CPU {cpu}: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Receive up to [`PEER_BATCH`] datagrams, send each back to where it came from;
/// forever.
fn echo_batches(sock: &std::net::UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let mut bufs = vec![0u8; PEER_BATCH * PEER_DATAGRAM];
    // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C data; all zeroes is a
    // valid value of each (null pointers are filled in below before any use).
    let mut addrs: Vec<libc::sockaddr_storage> = (0..PEER_BATCH)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    let mut iovs: Vec<libc::iovec> = (0..PEER_BATCH)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = (0..PEER_BATCH)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (i, iov) in iovs.iter_mut().enumerate() {
        iov.iov_base = bufs
            .get_mut(i * PEER_DATAGRAM..)
            .map_or(std::ptr::null_mut(), |b| b.as_mut_ptr().cast());
    }
    let storage_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    loop {
        // The headers' pointers are set afresh before each call (none of the vectors
        // moves; this just keeps every pointer derived from a live borrow).
        for ((hdr, iov), addr) in hdrs.iter_mut().zip(&mut iovs).zip(&mut addrs) {
            iov.iov_len = PEER_DATAGRAM;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = storage_len;
            hdr.msg_len = 0;
        }
        // SAFETY: `hdrs` holds PEER_BATCH headers, each pointing to its own iovec
        // (one PEER_DATAGRAM-byte slice of `bufs`) and sockaddr_storage, all alive and
        // not otherwise borrowed for the call. MSG_WAITFORONE blocks for the first
        // datagram only.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                PEER_BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("turn-peer: recvmmsg: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        let n = n as usize;
        // Send each back with the length it came with, to the address it came from
        // (msg_namelen as recvmmsg set it).
        for (hdr, iov) in hdrs.iter_mut().zip(&mut iovs).take(n) {
            iov.iov_len = (hdr.msg_len as usize).min(PEER_DATAGRAM);
            hdr.msg_hdr.msg_iov = iov;
        }
        let mut done = 0usize;
        while done < n {
            let rest = hdrs.get_mut(done..n).unwrap_or_default();
            // SAFETY: as above; `rest` is a live slice of initialised headers whose
            // iovecs now cover the received bytes.
            let m = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
            if m <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // This datagram cannot go (an ICMP error pending, buffers full): drop
                // it, the client counts it as lost; go on with the rest.
                done += 1;
                continue;
            }
            done += m as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_arrivals() {
        let mut t = SeqTracker::new();
        for s in 0..10_000 {
            assert_eq!(t.arrive(s), Arrival::InOrder);
        }
        assert_eq!((t.received, t.reordered, t.duplicates), (10_000, 0, 0));
        assert_eq!(t.lost(10_000), 0);
    }

    #[test]
    fn loss_reorder_and_duplicates() {
        let mut t = SeqTracker::new();
        // 0 1 3 2 5 5 1 ... 4 never comes; 7 sent but lost too.
        let arrivals = [0, 1, 3, 2, 5, 5, 1, 6];
        let got: Vec<Arrival> = arrivals.iter().map(|&s| t.arrive(s)).collect();
        use Arrival::*;
        assert_eq!(
            got,
            [InOrder, InOrder, InOrder, Reordered, InOrder, Duplicate, Duplicate, InOrder]
        );
        assert_eq!(t.received, 6); // 0 1 2 3 5 6
        assert_eq!(t.reordered, 1);
        assert_eq!(t.duplicates, 2);
        assert_eq!(t.lost(8), 2); // 4 and 7
        assert_eq!(t.lost(3), 0); // never negative
    }

    #[test]
    fn ring_forgets_only_what_is_out_of_span() {
        let span = SeqTracker::SPAN;
        let mut t = SeqTracker::new();
        t.arrive(0);
        // A jump of exactly the span and beyond clears stale bits.
        assert_eq!(t.arrive(span), Arrival::InOrder);
        // 0 is now more than... exactly `span` below next-1: still in the ring? next
        // is span + 1, so 0 is span + 1 below next: out of the ring, counted as new.
        assert_eq!(t.arrive(0), Arrival::Reordered);
        // 1 is inside the ring and was never seen.
        assert_eq!(t.arrive(1), Arrival::Reordered);
        assert_eq!(t.arrive(1), Arrival::Duplicate);
        // A jump far ahead: everything before is forgotten, nothing is a false
        // duplicate.
        assert_eq!(t.arrive(10 * span + 5), Arrival::InOrder);
        assert_eq!(t.arrive(10 * span + 5 - span + 1), Arrival::Reordered);
        assert_eq!(t.arrive(10 * span + 4), Arrival::Reordered);
        assert_eq!(t.arrive(10 * span + 4), Arrival::Duplicate);
        // Slot reuse after sliding by one: seq s and s + span share a slot; s + span
        // arriving must not look like a duplicate of s.
        let mut t = SeqTracker::new();
        for s in 0..span {
            t.arrive(s);
        }
        assert_eq!(t.arrive(span), Arrival::InOrder);
        assert_eq!(t.arrive(span + 2), Arrival::InOrder);
        assert_eq!(t.arrive(span + 1), Arrival::Reordered);
        assert_eq!(t.received, span + 3);
        assert_eq!(t.duplicates, 0);
    }

    #[test]
    fn payload_stamps_round_trip() {
        let mut p = vec![0u8; 172];
        init_payload(&mut p, 7);
        stamp(&mut p, 123_456_789, 987_654_321);
        assert_eq!(read_stamp(&p, 7, 172), Some((123_456_789, 987_654_321)));
        // Another allocation's, a wrong size, a mangled tag: not ours.
        assert_eq!(read_stamp(&p, 8, 172), None);
        assert_eq!(read_stamp(&p[..171], 7, 172), None);
        p[21] ^= 1;
        assert_eq!(read_stamp(&p, 7, 172), None);
    }

    #[test]
    fn frames_carry_the_payload_back() {
        let load = TurnLoad {
            server: "127.0.0.1:3478".parse().unwrap(),
            peer: "127.0.0.1:9".parse().unwrap(),
            user: "u".into(),
            users: 1,
            password: "p".into(),
            source: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
            sources: 3,
            realm: None,
            allocations: 1,
            size: 30,
            rate: None,
            window: 1,
            duration: Duration::from_secs(1),
            drain: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            send_indications: false,
            idle: false,
            pid: None,
            settle: Duration::from_secs(1),
            executors: Executors::default(),
        };
        // ChannelData: what the server would send back is the same frame.
        let channel = 0x4003;
        let mut bytes = vec![0u8; 4 + 30];
        stun::channel_header(channel, 30, &mut bytes);
        let mut payload = vec![0u8; 30];
        init_payload(&mut payload, 3);
        stamp(&mut payload, 5, 6);
        bytes[4..].copy_from_slice(&payload);
        let p = payload_of(&bytes, channel).unwrap();
        assert_eq!(read_stamp(p, 3, 30), Some((5, 6)));
        assert!(payload_of(&bytes, channel + 1).is_none());
        // A Data indication with the same payload (padded: 30 is not a multiple of 4).
        let mut b = Builder::new(method::DATA, Class::Indication, [9; 12]);
        b.xor_address(attr::XOR_PEER_ADDRESS, load.peer);
        b.attr(attr::DATA, &payload);
        let ind = b.finish();
        let p = payload_of(&ind, channel).unwrap();
        assert_eq!(read_stamp(p, 3, 30), Some((5, 6)));
        // A Send indication built the way the load builds it parses back.
        let mut b = Builder::new(method::SEND, Class::Indication, [0; 12]);
        b.xor_address(attr::XOR_PEER_ADDRESS, load.peer);
        let at = b.attr(attr::DATA, &payload);
        let send = b.finish();
        let m = Message::parse(&send).unwrap();
        assert_eq!(m.get(attr::DATA), send.get(at..at + 30));
        assert_eq!(m.xor_address(attr::XOR_PEER_ADDRESS), Some(load.peer));
        assert_eq!(load.mode(), "channel-data");
        assert_eq!(load.bind_for(0), "127.0.0.2:0".parse().unwrap());
        assert_eq!(load.bind_for(4), "127.0.0.3:0".parse().unwrap());
        assert_eq!(load.user_for(4), "u");
    }
}
