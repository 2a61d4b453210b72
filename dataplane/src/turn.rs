//! The STUN/TURN server's I/O on a shard: sockets, framing, timers. The protocol is
//! `portico_proto::turn::TurnServer` (sans-I/O); this module feeds it packets and
//! carries out what it answers.
//!
//! Per shard: the UDP listeners (`listen_udp` on every bind address, SO_REUSEPORT, so
//! the kernel keeps a client's 5-tuple on one shard), the TCP and TLS listeners
//! (`listen_tcp`, `listen_tls`; stream framing with `stun::frame_len`), one UDP relay
//! socket per relayed address of the allocations that live on this shard (bound in
//! `relay_ports`, never shared, so a peer's datagrams arrive on the shard that owns
//! the allocation), and a timer task for expiries. No locks and no cross-shard
//! traffic per packet (the allocation quotas are counted process-wide in a
//! `QuotaLedger`, touched once per Allocate and once per allocation end).
//!
//! UDP is batched: each listener's task waits for readiness (an io_uring poll, no
//! buffer); the relay sockets are all in one epoll set per shard, whose readiness is
//! one io_uring poll and one task (an allocation then costs its socket and a map
//! entry, no task and no pending poll of its own). A ready socket is drained with
//! nonblocking `recvmmsg` (32 datagrams a call)
//! into the shard's one set of slots, hands each datagram to the core and sends the
//! answers with one `sendmmsg` per run of the same outgoing socket
//! ([`crate::udp_batch`]). A peer datagram lands four bytes into its slot so the
//! ChannelData header is written in front of it in place: no copy on either path.
//! A send the kernel refuses is dropped and counted (`send_failed`), never waited for.
//! UDP GSO is not used: it needs runs of equal-sized datagrams to one destination,
//! and relayed media goes to many clients at a few packets each per batch.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, UdpSocket};
use glommio::Task;
use portico_control::config::Config;
use portico_proto::stun::frame_len;
use portico_proto::turn::{
    BindError, BoundRelay, ClientAction, ClockAnchor, DropReason, FiveTuple, IpNet, PeerAction,
    PortRange, PortRequest, RelayIo, Transport, TurnConfig, TurnEvent, TurnServer,
};
use portico_proto::Sniff;

use crate::conn::Conn;
use crate::shard::ShardCtx;
use crate::udp_batch::{Batch, BATCH};

/// A TURN listening endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TurnEndpoint {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// The TURN endpoints `[turn]` asks for, on every bind address of `[proxy.listen]`.
pub fn endpoints(config: &Config) -> Vec<TurnEndpoint> {
    let Some(turn) = &config.turn else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ip in &config.proxy.listen.bind {
        for (transport, port) in [
            (Transport::Udp, turn.listen_udp),
            (Transport::Tcp, turn.listen_tcp),
            (Transport::Tls, turn.listen_tls),
        ] {
            if let Some(port) = port {
                out.push(TurnEndpoint {
                    transport,
                    addr: SocketAddr::new(*ip, port),
                });
            }
        }
    }
    out
}

/// The addresses of this machine's interfaces (refused as peers, but for relay ports).
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs;
    // every node and its `ifa_addr` are read only while the list is alive, and the
    // address is read as the type its family says.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut node = head;
        while !node.is_null() {
            let addr = (*node).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            node = (*node).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

/// The protocol core's configuration from `[turn]`; `None` without `[turn]`.
pub fn turn_config(config: &Config) -> Option<TurnConfig> {
    let t = config.turn.as_ref()?;
    let mut c = TurnConfig::new(t.realm.clone());
    for address in [t.relay_address, t.relay_address_v6].into_iter().flatten() {
        match address {
            IpAddr::V4(v4) => c.relay_v4 = Some(v4),
            IpAddr::V6(v6) => c.relay_v6 = Some(v6),
        }
    }
    c.relay_ports = PortRange {
        first: t.relay_ports.0,
        last: t.relay_ports.1,
    };
    // `config` validated the syntax; anything unparsable is left out (refusing more).
    c.allowed_peers = t
        .allowed_peers
        .iter()
        .filter_map(|p| p.parse::<IpNet>().ok())
        .collect();
    c.allow_loopback_peers = t.allow_loopback_peers;
    let mut own = interface_addresses();
    own.extend(
        config
            .proxy
            .listen
            .bind
            .iter()
            .filter(|ip| !ip.is_unspecified()),
    );
    own.sort();
    own.dedup();
    c.own_addresses = own;
    c.users = t.users.clone();
    c.quotas.allocations_per_user = t.allocations_per_user;
    c.quotas.allocations_total = t.allocations_total;
    c.quotas.bandwidth_bytes_per_sec = t.bandwidth_bytes_per_sec;
    c.rest_secrets = t.secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
    Some(c)
}

/// A relay socket (nonblocking, in the shard's epoll set while it lives).
struct RelaySocket {
    socket: std::net::UdpSocket,
    dont_fragment: bool,
}

/// The shard's relay sockets: the [`RelayIo`] the protocol core binds through.
struct Relays {
    range: PortRange,
    next: u32,
    sockets: HashMap<SocketAddr, RelaySocket>,
    /// The relayed address of each socket, by descriptor (what epoll reports).
    by_fd: HashMap<RawFd, SocketAddr>,
    /// The epoll set of the relay sockets; `None` if the kernel refused one (then
    /// no allocation can be made on this shard).
    epoll: Option<OwnedFd>,
    /// Ports held for EVEN-PORT reservations (bound, not received on).
    held: HashMap<SocketAddr, std::net::UdpSocket>,
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let s = socket2::Socket::new(
        domain,
        socket2::Type::DGRAM.cloexec(),
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Room for a burst of one allocation's media while the shard is busy elsewhere
    // (a limit, not an allocation: the kernel charges only what is queued; it caps
    // the request at net.core.rmem_max / wmem_max).
    let _ = s.set_recv_buffer_size(RELAY_SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(RELAY_SOCKET_BUFFER);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Socket buffer sizes asked for: a relay socket, a UDP listener (every client of
/// the shard arrives on it, so a burst there is the sum of theirs).
const RELAY_SOCKET_BUFFER: usize = 512 * 1024;
const LISTENER_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

impl Relays {
    /// Try the ports of the range from a rotating start, at most 256 of them.
    fn bind_port(
        &mut self,
        ip: IpAddr,
        even: bool,
    ) -> Result<(std::net::UdpSocket, Option<std::net::UdpSocket>), BindError> {
        let span = u32::from(self.range.last.saturating_sub(self.range.first)) + 1;
        for _ in 0..span.min(256) {
            let mut port = u32::from(self.range.first) + self.next % span;
            self.next = self.next.wrapping_add(if even { 2 } else { 1 });
            if even && port % 2 == 1 {
                port += 1;
            }
            if port > u32::from(self.range.last) {
                continue;
            }
            let addr = SocketAddr::new(ip, port as u16);
            let Ok(first) = bind_udp(addr) else { continue };
            if !even {
                return Ok((first, None));
            }
            if port < u32::from(self.range.last) {
                if let Ok(second) = bind_udp(SocketAddr::new(ip, port as u16 + 1)) {
                    return Ok((first, Some(second)));
                }
            }
        }
        Err(BindError::NoFreePort)
    }

    fn activate(&mut self, socket: std::net::UdpSocket) -> Result<SocketAddr, BindError> {
        let addr = socket.local_addr().map_err(|_| BindError::Os)?;
        socket.set_nonblocking(true).map_err(|_| BindError::Os)?;
        let epoll = self.epoll.as_ref().ok_or(BindError::Os)?;
        let fd = socket.as_raw_fd();
        // Level-triggered: a socket left with datagrams (a batch's worth taken per
        // round) is reported again.
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: both descriptors are open; `event` is a valid epoll_event.
        let r = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if r < 0 {
            return Err(BindError::Os);
        }
        self.by_fd.insert(fd, addr);
        self.sockets.insert(
            addr,
            RelaySocket {
                socket,
                dont_fragment: false,
            },
        );
        Ok(addr)
    }
}

impl RelayIo for Relays {
    fn bind(&mut self, ip: IpAddr, request: PortRequest) -> Result<BoundRelay, BindError> {
        match request {
            PortRequest::Any => {
                let (socket, _) = self.bind_port(ip, false)?;
                Ok(BoundRelay {
                    addr: self.activate(socket)?,
                    reserved_next: None,
                })
            }
            PortRequest::Even { reserve_next } => {
                let (socket, next) = self.bind_port(ip, true)?;
                let addr = self.activate(socket)?;
                let reserved_next = match (reserve_next, next) {
                    (true, Some(next)) => {
                        let next_addr = next.local_addr().map_err(|_| BindError::Os)?;
                        self.held.insert(next_addr, next);
                        Some(next_addr)
                    }
                    _ => None,
                };
                Ok(BoundRelay {
                    addr,
                    reserved_next,
                })
            }
            PortRequest::Reserved(at) => {
                let socket = self.held.remove(&at).ok_or(BindError::NotReserved)?;
                Ok(BoundRelay {
                    addr: self.activate(socket)?,
                    reserved_next: None,
                })
            }
        }
    }

    fn release(&mut self, relay: SocketAddr) {
        if let Some(rs) = self.sockets.remove(&relay) {
            let fd = rs.socket.as_raw_fd();
            self.by_fd.remove(&fd);
            if let Some(epoll) = &self.epoll {
                // SAFETY: both descriptors are open; DEL ignores the event argument.
                unsafe {
                    libc::epoll_ctl(
                        epoll.as_raw_fd(),
                        libc::EPOLL_CTL_DEL,
                        fd,
                        std::ptr::null_mut(),
                    );
                }
            }
        }
        self.held.remove(&relay);
    }
}

/// Where a TCP/TLS client's outgoing frames go (its writer task drains it).
type StreamSink = Rc<glommio::channels::local_channel::LocalSender<Vec<u8>>>;

/// The TURN side of one shard.
pub struct TurnShard {
    ctx: Rc<ShardCtx>,
    server: RefCell<TurnServer>,
    relays: RefCell<Relays>,
    out: RefCell<Vec<u8>>,
    udp: RefCell<HashMap<SocketAddr, Rc<UdpSocket>>>,
    streams: RefCell<HashMap<FiveTuple, StreamSink>>,
    /// The shard's recvmmsg/sendmmsg buffers, shared by its UDP sockets in turn.
    batch: RefCell<Batch>,
    generation: std::cell::Cell<u64>,
}

/// The largest STUN/TURN frame on a stream.
const DATAGRAM: usize = 65536;

impl TurnShard {
    pub fn new(
        ctx: Rc<ShardCtx>,
        config: TurnConfig,
        secret: [u8; 32],
        ledger: std::sync::Arc<portico_proto::turn::QuotaLedger>,
        shard_index: usize,
    ) -> Rc<TurnShard> {
        let anchor = ClockAnchor {
            instant: Instant::now(),
            unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let range = config.relay_ports;
        let generation = ctx.shared.rules().generation;
        Rc::new(TurnShard {
            ctx,
            server: RefCell::new({
                let mut server = TurnServer::new(config, secret, anchor);
                server.share_quotas(ledger);
                server
            }),
            relays: RefCell::new(Relays {
                range,
                // Shards start at different places in the range, so they rarely race
                // for the same port.
                next: (shard_index as u32).wrapping_mul(7919),
                sockets: HashMap::new(),
                by_fd: HashMap::new(),
                epoll: epoll_set(),
                held: HashMap::new(),
            }),
            out: RefCell::new(Vec::with_capacity(1500)),
            udp: RefCell::new(HashMap::new()),
            streams: RefCell::new(HashMap::new()),
            batch: RefCell::new(Batch::new()),
            generation: std::cell::Cell::new(generation),
        })
    }

    /// Close every relay socket and client queue (the shard is stopping).
    pub fn stop(&self) {
        let mut relays = self.relays.borrow_mut();
        relays.sockets.clear();
        relays.by_fd.clear();
        relays.held.clear();
        self.streams.borrow_mut().clear();
        self.udp.borrow_mut().clear();
    }

    /// Start serving the listening sockets made for this shard.
    pub fn start(self: &Rc<Self>, sockets: Vec<(TurnEndpoint, RawFd)>) -> Vec<Task<()>> {
        let mut tasks = Vec::new();
        for (ep, fd) in sockets {
            match ep.transport {
                Transport::Udp => {
                    // SAFETY: a UDP socket made for this shard and handed to us alone.
                    let socket = Rc::new(unsafe { UdpSocket::from_raw_fd(fd) });
                    let local = socket.local_addr().unwrap_or(ep.addr);
                    self.udp.borrow_mut().insert(local, socket.clone());
                    tasks.push(glommio::spawn_local(udp_loop(self.clone(), socket, local)));
                }
                Transport::Tcp | Transport::Tls => {
                    // SAFETY: a listening TCP socket made for this shard alone.
                    let listener = unsafe { TcpListener::from_raw_fd(fd) };
                    tasks.push(glommio::spawn_local(stream_accept_loop(
                        self.clone(),
                        listener,
                        ep,
                    )));
                }
            }
        }
        tasks.push(glommio::spawn_local(relay_poll_loop(self.clone())));
        tasks.push(glommio::spawn_local(timer_loop(self.clone())));
        tasks
    }

    /// Carry out what the core answered to a client packet.
    async fn client_action(&self, action: ClientAction, five: FiveTuple, packet: &[u8]) {
        match action {
            ClientAction::Reply => {
                let reply = std::mem::take(&mut *self.out.borrow_mut());
                self.send_to_client(five, &reply).await;
                *self.out.borrow_mut() = reply;
            }
            ClientAction::ToPeer {
                relay,
                peer,
                payload,
                dont_fragment,
            } => {
                let mut relays = self.relays.borrow_mut();
                let Some(rs) = relays.sockets.get_mut(&relay) else {
                    return;
                };
                if dont_fragment && !rs.dont_fragment {
                    set_dont_fragment(rs.socket.as_raw_fd(), relay.is_ipv6());
                    rs.dont_fragment = true;
                }
                // Nonblocking, as on the batched path: refused means dropped.
                let sent = packet
                    .get(payload)
                    .map(|data| rs.socket.send_to(data, peer));
                drop(relays);
                if let Some(Err(_)) = sent {
                    self.server
                        .borrow_mut()
                        .count_io_drops(DropReason::SendFailed, 1);
                }
            }
            ClientAction::Drop(_) => {}
        }
    }

    async fn send_to_client(&self, five: FiveTuple, bytes: &[u8]) {
        match five.transport {
            Transport::Udp => {
                let socket = self.udp.borrow().get(&five.server_local).cloned();
                if let Some(socket) = socket {
                    let _ = socket.send_to(bytes, five.client).await;
                }
            }
            Transport::Tcp | Transport::Tls => self.send_to_stream(five, bytes),
        }
    }

    /// Receive a batch of client datagrams on the UDP listener `fd`, hand each to the
    /// core and send what it answers (replies on the listener, relayed data from the
    /// relay sockets), one `sendmmsg` per socket run. Returns the datagrams received.
    fn client_batch(&self, fd: RawFd, local: SocketAddr) -> std::io::Result<usize> {
        // Held only inside this synchronous step; a task run from inside it (glommio
        // runs a spawned task at once) finds it taken and comes back when readable.
        let Ok(mut batch) = self.batch.try_borrow_mut() else {
            return Ok(0);
        };
        let n = batch.recv(fd, 0)?;
        if n == 0 {
            return Ok(0);
        }
        let now = Instant::now();
        for i in 0..n {
            let Some(datagram) = batch.received(i) else {
                break;
            };
            let five = FiveTuple {
                client: datagram.from,
                server_local: local,
                transport: Transport::Udp,
            };
            let action = self.handle_client(now, five, batch.payload(i));
            match action {
                ClientAction::Reply => {
                    let out = self.out.borrow();
                    batch.queue_copy(fd, datagram.from, &out);
                }
                ClientAction::ToPeer {
                    relay,
                    peer,
                    payload,
                    dont_fragment,
                } => {
                    let mut relays = self.relays.borrow_mut();
                    let Some(rs) = relays.sockets.get_mut(&relay) else {
                        continue;
                    };
                    if dont_fragment && !rs.dont_fragment {
                        set_dont_fragment(rs.socket.as_raw_fd(), relay.is_ipv6());
                        rs.dont_fragment = true;
                    }
                    batch.queue_slot(rs.socket.as_raw_fd(), peer, i, payload);
                }
                ClientAction::Drop(_) => {}
            }
        }
        self.flush(&mut batch);
        Ok(n)
    }

    /// Receive a batch of peer datagrams on the relay socket `fd` (each 4 bytes into
    /// its slot, so a ChannelData header is written in front of it in place) and send
    /// them on to their clients. Returns the datagrams received.
    fn peer_batch(&self, fd: RawFd, relay: SocketAddr) -> std::io::Result<usize> {
        // Held only inside this synchronous step; a task run from inside it (glommio
        // runs a spawned task at once) finds it taken and comes back when readable.
        let Ok(mut batch) = self.batch.try_borrow_mut() else {
            return Ok(0);
        };
        let n = batch.recv(fd, 4)?;
        if n == 0 {
            return Ok(0);
        }
        let now = Instant::now();
        for i in 0..n {
            let Some(datagram) = batch.received(i) else {
                break;
            };
            let action = {
                let mut server = self.server.borrow_mut();
                let mut out = self.out.borrow_mut();
                server.handle_peer(now, relay, datagram.from, batch.payload(i), &mut out)
            };
            match action {
                PeerAction::ToClientChannel {
                    five,
                    header,
                    padding,
                    ..
                } => {
                    let end = 4 + datagram.len + padding.min(3);
                    let slot = batch.slot_mut(i);
                    slot[..4].copy_from_slice(&header);
                    slot[4 + datagram.len..end].fill(0);
                    match self.client_socket(five) {
                        Some(out_fd) => batch.queue_slot(out_fd, five.client, i, 0..end),
                        None => self.send_to_stream(five, &batch.slot_mut(i)[..end]),
                    }
                }
                PeerAction::ToClient { five } => {
                    let out = self.out.borrow();
                    match self.client_socket(five) {
                        Some(out_fd) => batch.queue_copy(out_fd, five.client, &out),
                        None => self.send_to_stream(five, &out),
                    }
                }
                PeerAction::Drop(_) => {}
            }
        }
        self.flush(&mut batch);
        Ok(n)
    }

    /// Send what the batch queued; count what the kernel did not take.
    fn flush(&self, batch: &mut Batch) {
        let dropped = batch.flush();
        if dropped > 0 {
            self.server
                .borrow_mut()
                .count_io_drops(DropReason::SendFailed, dropped);
        }
    }

    /// The UDP listener a UDP client is served on (None for TCP/TLS clients).
    fn client_socket(&self, five: FiveTuple) -> Option<RawFd> {
        if five.transport != Transport::Udp {
            return None;
        }
        self.udp
            .borrow()
            .get(&five.server_local)
            .map(|s| s.as_raw_fd())
    }

    /// Queue a frame for a TCP/TLS client (a full queue drops it: media is
    /// loss-tolerant, memory is not).
    fn send_to_stream(&self, five: FiveTuple, bytes: &[u8]) {
        let sink = self.streams.borrow().get(&five).cloned();
        if let Some(sink) = sink {
            if sink.try_send(bytes.to_vec()).is_err() {
                self.server
                    .borrow_mut()
                    .count_io_drops(DropReason::SendFailed, 1);
            }
        }
    }

    fn handle_client(&self, now: Instant, five: FiveTuple, packet: &[u8]) -> ClientAction {
        let mut server = self.server.borrow_mut();
        let mut relays = self.relays.borrow_mut();
        let mut out = self.out.borrow_mut();
        server.handle_client(now, five, packet, &mut *relays, &mut out)
    }

    /// Pick up a reloaded `[turn]`: users, secrets, policy, quotas. Live
    /// allocations keep their relayed addresses.
    fn follow_reload(&self) {
        let rules = self.ctx.shared.rules();
        if rules.generation == self.generation.get() {
            return;
        }
        self.generation.set(rules.generation);
        if let Some(config) = turn_config(&rules.config) {
            self.server.borrow_mut().reconfigure(config);
        }
    }

    fn log_events(&self, events: &mut Vec<TurnEvent>) {
        for event in events.drain(..) {
            let line = match event {
                TurnEvent::AllocationCreated { id, user, five, relays, lifetime } => format!(
                    "turn: allocation {id} created: user {user}, client {} ({:?}), relay {}, lifetime {}s",
                    five.client,
                    five.transport,
                    relays.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                    lifetime.as_secs()
                ),
                TurnEvent::AllocationEnded { id, user, five, relays, reason, duration, traffic } => format!(
                    "turn: allocation {id} ended ({reason:?}): user {user}, client {}, relay {}, {}s, to peers {} bytes, to client {} bytes",
                    five.client,
                    relays.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
                    duration.as_secs(),
                    traffic.to_peer_bytes,
                    traffic.to_client_bytes
                ),
                TurnEvent::PeerRefused { client, peer, reason } => {
                    format!("turn: client {client}: peer {peer} refused ({reason:?})")
                }
                TurnEvent::QuotaHit { client, quota } => format!("turn: client {client}: quota {quota:?} reached"),
                _ => continue,
            };
            self.ctx.notice(line);
        }
    }
}

fn set_dont_fragment(fd: RawFd, v6: bool) {
    let (level, name, value) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    };
    // SAFETY: setsockopt with a pointer to a live int and its size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        );
    }
}

/// A UDP listener: wait until a datagram is queued (an io_uring poll with no buffer,
/// a glommio patch, dataplane/vendor/glommio/PORTICO-PATCH.md), then drain the
/// socket a batch at a time, forever.
async fn udp_loop(shard: Rc<TurnShard>, socket: Rc<UdpSocket>, local: SocketAddr) {
    let fd = socket.as_raw_fd();
    loop {
        if socket.readable().await.is_err() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
            continue;
        }
        loop {
            match shard.client_batch(fd, local) {
                Ok(n) if n == BATCH => glommio::yield_if_needed().await,
                Ok(_) => break,
                Err(_) => {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    break;
                }
            }
        }
    }
}

/// Ready relay sockets reported at once by one `epoll_wait`.
const EPOLL_EVENTS: usize = 64;

fn epoll_set() -> Option<OwnedFd> {
    // SAFETY: no memory is passed; a nonnegative result is a new descriptor we own.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    // SAFETY: as above.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The shard's relay sockets: wait until the epoll set has a ready socket (one
/// io_uring poll on the set), then take one batch from each ready socket per round
/// until none is ready. A socket with more than a batch queued is reported again in
/// the next round, so one busy peer cannot starve the others.
async fn relay_poll_loop(shard: Rc<TurnShard>) {
    let Some(epfd) = shard.relays.borrow().epoll.as_ref().map(|e| e.as_raw_fd()) else {
        return;
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS];
    loop {
        if glommio::net::wait_readable(epfd).await.is_err() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
            continue;
        }
        loop {
            // SAFETY: `events` has room for EPOLL_EVENTS entries; timeout 0: no wait.
            let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), EPOLL_EVENTS as i32, 0) };
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            let mut received = 0;
            for event in events.get(..n).unwrap_or_default() {
                let fd = event.u64 as RawFd;
                let relay = shard.relays.borrow().by_fd.get(&fd).copied();
                if let Some(relay) = relay {
                    // An error (e.g. a queued ICMP error) is reported once by the
                    // receive and cleared; the socket goes on.
                    received += shard.peer_batch(fd, relay).unwrap_or(0);
                }
            }
            if received == 0 {
                // Ready with nothing to take: back to the poll, no spinning.
                break;
            }
            glommio::yield_if_needed().await;
        }
    }
}

async fn stream_accept_loop(shard: Rc<TurnShard>, listener: TcpListener, ep: TurnEndpoint) {
    loop {
        let Ok(stream) = listener.accept().await else {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
            continue;
        };
        if shard
            .ctx
            .shared
            .blacklist()
            .contains(crate::shard::canonical_ip(peer.ip()), Instant::now())
        {
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let five = FiveTuple {
                client: peer,
                server_local: local,
                transport: ep.transport,
            };
            let conn = if ep.transport == Transport::Tls {
                let config = shard.ctx.tls.load().server.clone();
                let timeout = shard.ctx.shared.rules().config.proxy.header_timeout;
                match crate::time::within(
                    timeout,
                    futures_rustls::TlsAcceptor::from(config).accept(stream),
                )
                .await
                {
                    Some(Ok(tls)) => Conn::TlsServer(Box::new(tls)),
                    _ => return,
                }
            } else {
                Conn::Plain(stream)
            };
            stream_session(shard, conn, five).await;
        })
        .detach();
    }
}

/// One TURN client over TCP or TLS: frames in, replies and relayed data out through
/// a bounded queue drained by a writer task.
async fn stream_session(shard: Rc<TurnShard>, conn: Conn, five: FiveTuple) {
    let (mut reader, mut writer) = futures_lite::io::split(conn);
    let (tx, rx) = glommio::channels::local_channel::new_bounded::<Vec<u8>>(256);
    let tx = Rc::new(tx);
    shard.streams.borrow_mut().insert(five, tx.clone());
    let writer_task = glommio::spawn_local(async move {
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
    });
    let idle = shard.ctx.shared.rules().config.proxy.idle_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; DATAGRAM];
    'session: loop {
        // Every complete frame buffered so far.
        loop {
            match frame_len(&buf) {
                Sniff::Done(len) => {
                    let frame = buf.get(..len).unwrap_or_default();
                    let action = shard.handle_client(Instant::now(), five, frame);
                    shard.client_action(action, five, frame).await;
                    buf.drain(..len.min(buf.len()));
                }
                Sniff::Incomplete => break,
                Sniff::Reject(_) => break 'session,
            }
        }
        match crate::time::within(idle, reader.read(&mut chunk)).await {
            Some(Ok(n)) if n > 0 => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            _ => break,
        }
    }
    shard.streams.borrow_mut().remove(&five);
    {
        let mut server = shard.server.borrow_mut();
        let mut relays = shard.relays.borrow_mut();
        server.client_closed(Instant::now(), five, &mut *relays);
    }
    drop(tx);
    let _ = writer_task.await;
}

async fn timer_loop(shard: Rc<TurnShard>) {
    let mut events = Vec::new();
    loop {
        let next = shard.server.borrow().next_deadline();
        let now = Instant::now();
        let wait = next
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(250));
        glommio::timer::sleep(wait.min(Duration::from_millis(250))).await;
        shard.follow_reload();
        {
            let mut server = shard.server.borrow_mut();
            let mut relays = shard.relays.borrow_mut();
            server.on_tick(Instant::now(), &mut *relays, &mut events);
            server.take_events(&mut events);
        }
        shard.log_events(&mut events);
        let counters = shard.server.borrow().counters().clone();
        shard.ctx.metrics.borrow_mut().turn = counters;
    }
}

/// A random secret for the stateless nonces (shared by the shards of this process).
pub fn nonce_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret);
    secret
}

/// Steer a SO_REUSEPORT group by the client's IP address instead of the kernel's
/// 4-tuple hash (a classic BPF program: load the last 32 bits of the source address,
/// modulo the number of shards). Every flow of one client — its RTP and RTCP
/// allocations, a TCP connection beside them — then meets the same shard, so an
/// EVEN-PORT reservation made on one allocation is found by the next (Seastar's
/// port-based steering is the same idea). Best effort: without it the kernel's hash
/// still keeps each 5-tuple on one shard.
fn steer_by_client_ip(fd: RawFd, v6: bool, shards: usize) {
    if shards < 2 {
        return;
    }
    // The source address is 12 bytes into an IPv4 header, 8 into an IPv6 one
    // (whose last word is 12 bytes further).
    let offset = libc::SKF_NET_OFF + if v6 { 8 + 12 } else { 12 };
    let mut program = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: offset as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: shards as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: the program outlives the call (the kernel copies it); sizes are exact.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as u32,
        );
    }
}

/// An unbound socket for `ep`: its family and type, IPv6-only for IPv6, and
/// SO_REUSEADDR for TCP only (on a UDP socket it would let another process bind the
/// same port; TCP needs it for TIME_WAIT after a restart).
fn endpoint_socket(ep: &TurnEndpoint) -> std::io::Result<socket2::Socket> {
    let domain = if ep.addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let ty = if ep.transport == Transport::Udp {
        socket2::Type::DGRAM
    } else {
        socket2::Type::STREAM
    };
    let s = socket2::Socket::new(domain, ty.cloexec(), None)?;
    if ep.addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if ep.transport != Transport::Udp {
        s.set_reuse_address(true)?;
    }
    Ok(s)
}

/// Make the per-shard sockets for the TURN endpoints (probed first, like the
/// proxy's): UDP and TCP with SO_REUSEPORT, steered by client IP.
pub fn bind_endpoint(ep: &TurnEndpoint, shards: usize) -> anyhow::Result<RawFd> {
    let s = endpoint_socket(ep)?;
    s.set_reuse_port(true)?;
    s.bind(&ep.addr.into()).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for TURN {:?} on {}: {e}",
            ep.transport,
            ep.addr
        )
    })?;
    if ep.transport != Transport::Udp {
        s.set_nodelay(true)?;
        s.listen(1024)?;
    } else {
        s.set_nonblocking(true)?;
        // Datagrams that arrive while the shard is busy wait here instead of being
        // dropped (capped by net.core.rmem_max / wmem_max).
        let _ = s.set_recv_buffer_size(LISTENER_SOCKET_BUFFER);
        let _ = s.set_send_buffer_size(LISTENER_SOCKET_BUFFER);
    }
    let fd = std::os::fd::IntoRawFd::into_raw_fd(s);
    steer_by_client_ip(fd, ep.addr.is_ipv6(), shards);
    Ok(fd)
}

/// Fail unless the endpoint is free (a plain bind without SO_REUSEPORT).
pub fn probe(ep: &TurnEndpoint) -> anyhow::Result<()> {
    let s = endpoint_socket(ep)?;
    s.bind(&ep.addr.into()).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for TURN {:?} on {}: {e} (is another process using the port?)",
            ep.transport,
            ep.addr
        )
    })?;
    Ok(())
}
