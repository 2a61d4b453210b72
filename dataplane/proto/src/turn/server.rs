//! [`TurnServer`]: one shard's STUN/TURN server as a state machine (RFC 8489, RFC 8656).
//! See the module documentation of [`super`] for the calling convention.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::hmac;

use crate::stun::{
    classify, verify_fingerprint, AddressFamily, Attribute, AttributeError, AttributeType,
    ChannelData, Class, EmitError, ErrorCode, Message, MessageType, MessageWriter, Method,
    NonceCodec, PacketKind, TransactionId, UnknownAttributeList, CHANNEL_MAX, CHANNEL_MIN,
    TRANSPORT_UDP,
};

use super::allocation::{Allocation, ChannelBinding};
use super::auth::{Authenticated, Credentials, MacKind, Rejection, ADVERTISED, FEATURES};
use super::config::TurnConfig;
use super::event::{
    AuthFailure, DropReason, EndReason, QuotaKind, RelayAddrs, TrafficStats, TurnCounters,
    TurnEvent,
};
use super::io::{BoundRelay, FiveTuple, PortRequest, RelayIo};
use super::ledger::QuotaLedger;
use super::policy::{normalise, PeerPolicy, PeerRefusal, PortCheck};
use super::rate::{AuthLimiter, Bandwidth};

/// Events queued between two drains at most; beyond, they are counted as lost.
const MAX_QUEUED_EVENTS: usize = 4096;

/// Ties the monotonic clock the caller passes to UNIX time, which nonces and TURN REST
/// usernames are written in: `unix = unix_secs + (now - instant)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockAnchor {
    /// A monotonic instant…
    pub instant: Instant,
    /// …and the UNIX time (seconds) at that instant.
    pub unix_secs: u64,
}

/// What to do with a packet from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// `out` holds a STUN response: send it to the client on the same 5-tuple.
    Reply,
    /// Send `packet[payload]` as one UDP datagram from the relay socket `relay` to
    /// `peer` (from ChannelData or a Send indication; nothing copied).
    ToPeer {
        /// The relayed address (as [`super::RelayIo::bind`] returned it).
        relay: SocketAddr,
        /// The peer.
        peer: SocketAddr,
        /// The application data inside the packet.
        payload: Range<usize>,
        /// Set the DF bit (DONT-FRAGMENT, RFC 8656 §7.2 step 4, §11.2, §14; best effort).
        dont_fragment: bool,
    },
    /// Nothing to send; the reason is counted in [`TurnCounters::dropped`].
    Drop(DropReason),
}

/// What to do with a datagram that arrived on a relay socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAction {
    /// Send ChannelData to the client: `header`, then the datagram's payload, then
    /// `padding` zero bytes (non-zero only on TCP/TLS, RFC 8656 §12.5).
    ToClientChannel {
        /// The client.
        five: FiveTuple,
        /// The channel number.
        channel: u16,
        /// The 4-byte ChannelData header (channel number, length).
        header: [u8; 4],
        /// Zero bytes to append on a stream (0–3).
        padding: usize,
    },
    /// `out` holds a Data indication: send it to the client.
    ToClient {
        /// The client.
        five: FiveTuple,
    },
    /// Nothing to send; the reason is counted in [`TurnCounters::dropped`].
    Drop(DropReason),
}

/// A pending EVEN-PORT reservation (RFC 8656 §7.2, R bit).
#[derive(Debug, Clone, Copy)]
struct Reservation {
    relay: SocketAddr,
    expires: Instant,
}

/// How the response to the current request is finished.
#[derive(Clone, Copy)]
struct Reply<'a> {
    method: Method,
    txid: TransactionId,
    fingerprint: bool,
    auth: Option<&'a Authenticated>,
}

/// Every attribute an Allocate may carry, decoded.
struct AllocateRequest {
    dont_fragment: bool,
    even_port: Option<bool>,
    requested_family: Option<AddressFamily>,
    additional_family: Option<AddressFamily>,
    token: Option<[u8; 8]>,
    lifetime: Option<u32>,
}

/// One shard's STUN/TURN server.
pub struct TurnServer {
    config: TurnConfig,
    policy: PeerPolicy,
    credentials: Credentials,
    nonces: NonceCodec,
    token_key: hmac::Key,
    token_counter: u64,
    txid_state: u64,
    anchor: ClockAnchor,
    slots: Vec<Option<Allocation>>,
    free: Vec<usize>,
    by_five: HashMap<FiveTuple, usize>,
    by_relay: HashMap<SocketAddr, usize>,
    per_user: HashMap<Arc<str>, u32>,
    /// Allocation counts of the whole process (see [`TurnServer::share_quotas`]).
    ledger: Arc<QuotaLedger>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    reservations: HashMap<[u8; 8], Reservation>,
    reservation_queue: VecDeque<(Instant, [u8; 8])>,
    limiter: AuthLimiter,
    counters: TurnCounters,
    events: Vec<TurnEvent>,
    next_id: u64,
}

impl std::fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer")
            .field("config", &self.config)
            .field("allocations", &self.by_five.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl TurnServer {
    /// A server for one shard. `secret` keys the nonces and RESERVATION-TOKENs: draw it
    /// at random once and give every shard the same one (a nonce is bound to the client
    /// address, so any shard can check it).
    pub fn new(config: TurnConfig, secret: [u8; 32], anchor: ClockAnchor) -> TurnServer {
        let token_key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        let seed = hmac::sign(&token_key, b"portico turn txid seed");
        let mut seed_bytes = [0u8; 8];
        seed_bytes
            .iter_mut()
            .zip(seed.as_ref())
            .for_each(|(d, s)| *d = *s);
        TurnServer {
            policy: PeerPolicy::new(&config),
            credentials: Credentials::new(&config.realm, &config.users, &config.rest_secrets),
            limiter: AuthLimiter::new(config.auth_rate_limit),
            config,
            nonces: NonceCodec::new(secret),
            token_key,
            token_counter: 0,
            txid_state: u64::from_be_bytes(seed_bytes),
            anchor,
            slots: Vec::new(),
            free: Vec::new(),
            by_five: HashMap::new(),
            by_relay: HashMap::new(),
            per_user: HashMap::new(),
            ledger: QuotaLedger::new(),
            timers: BinaryHeap::new(),
            reservations: HashMap::new(),
            reservation_queue: VecDeque::new(),
            counters: TurnCounters::default(),
            events: Vec::new(),
            next_id: 1,
        }
    }

    /// Count allocations in `ledger`, shared with the other shards' servers, so the
    /// per-user and total quotas hold process-wide. Call before the first
    /// allocation (allocations made before are not in the ledger).
    pub fn share_quotas(&mut self, ledger: Arc<QuotaLedger>) {
        self.ledger = ledger;
    }

    /// The configuration in force.
    pub fn config(&self) -> &TurnConfig {
        &self.config
    }

    /// The counters (read them whenever; they only grow, except the `*_active` gauges).
    pub fn counters(&self) -> &TurnCounters {
        &self.counters
    }

    /// Count packets the I/O layer dropped after the core handed them on (a full send
    /// buffer): one set of counters for everything the server drops.
    pub fn count_io_drops(&mut self, reason: DropReason, packets: u64) {
        if let Some(c) = self.counters.dropped.get_mut(reason.index()) {
            *c += packets;
        }
    }

    /// Allocations now.
    pub fn allocation_count(&self) -> usize {
        self.by_five.len()
    }

    /// Moves the queued events into `into` (call after every batch of packets).
    pub fn take_events(&mut self, into: &mut Vec<TurnEvent>) {
        into.append(&mut self.events);
    }

    /// Applies a new configuration (a reload): users, secrets, policy, quotas, lifetimes
    /// and rate limits change for what comes next; live allocations keep their relayed
    /// addresses and lifetimes, but permissions and channels whose peer the new policy
    /// refuses are removed at once ([`TurnEvent::PeerRevoked`]).
    pub fn reconfigure(&mut self, config: TurnConfig) {
        self.policy = PeerPolicy::new(&config);
        self.credentials = Credentials::new(&config.realm, &config.users, &config.rest_secrets);
        self.limiter.set_limit(config.auth_rate_limit);
        self.config = config;
        let mut revoked = Vec::new();
        for alloc in self.slots.iter_mut().flatten() {
            let policy = &self.policy;
            let id = alloc.id;
            alloc.permissions.retain(|p| {
                match policy.check(SocketAddr::new(p.ip, 0), PortCheck::IpOnly) {
                    Ok(_) => true,
                    Err(reason) => {
                        revoked.push((id, SocketAddr::new(p.ip, 0), reason, false));
                        false
                    }
                }
            });
            alloc
                .channels
                .retain(|c| match policy.check(c.peer, PortCheck::WithPort) {
                    Ok(_) => true,
                    Err(reason) => {
                        revoked.push((id, c.peer, reason, true));
                        false
                    }
                });
        }
        for (id, peer, reason, channel) in revoked {
            if channel {
                self.counters.channels_active = self.counters.channels_active.saturating_sub(1);
            } else {
                self.counters.permissions_active =
                    self.counters.permissions_active.saturating_sub(1);
            }
            self.event(TurnEvent::PeerRevoked { id, peer, reason });
        }
    }

    fn unix_secs(&self, now: Instant) -> u64 {
        self.anchor
            .unix_secs
            .saturating_add(now.saturating_duration_since(self.anchor.instant).as_secs())
    }

    fn event(&mut self, event: TurnEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.counters.events_lost += 1;
        } else {
            self.events.push(event);
        }
    }

    fn slot(&self, slot: usize) -> Option<&Allocation> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, slot: usize) -> Option<&mut Allocation> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// The allocation on `five`, if live; an expired one the tick has not reached yet is
    /// ended here, so a new Allocate on the same 5-tuple is not refused with 437.
    fn live_slot(
        &mut self,
        five: &FiveTuple,
        now: Instant,
        io: &mut (impl RelayIo + ?Sized),
    ) -> Option<usize> {
        let slot = *self.by_five.get(five)?;
        if self.slot(slot)?.is_live(now) {
            return Some(slot);
        }
        self.end_allocation(slot, EndReason::Expired, now, io);
        None
    }

    // ----------------------------------------------------------------------------------
    // Packets from clients
    // ----------------------------------------------------------------------------------

    /// Handles one STUN message or ChannelData message from a client: a UDP datagram, or
    /// one frame of a TCP/TLS stream cut with [`crate::stun::frame_len`]. `out` is
    /// overwritten when the answer is [`ClientAction::Reply`].
    pub fn handle_client(
        &mut self,
        now: Instant,
        five: FiveTuple,
        packet: &[u8],
        io: &mut (impl RelayIo + ?Sized),
        out: &mut Vec<u8>,
    ) -> ClientAction {
        let five = five.canonical();
        let action = match packet.first().map(|b| classify(*b)) {
            Some(PacketKind::ChannelData) => self.channel_data(now, &five, packet),
            Some(PacketKind::Stun) => self.stun_message(now, &five, packet, io, out),
            _ => ClientAction::Drop(DropReason::Malformed),
        };
        if let ClientAction::Drop(reason) = action {
            self.counters.count_drop(reason);
        }
        action
    }

    /// "If the ChannelData message is received on a channel that is not bound to any
    /// peer, then the message is silently discarded" (RFC 8656 §12.6). "On the server,
    /// the receipt of a ChannelData message MUST NOT refresh either the channel binding
    /// or the permission towards the peer."
    fn channel_data(&mut self, now: Instant, five: &FiveTuple, packet: &[u8]) -> ClientAction {
        let Ok(frame) = ChannelData::new_checked(packet) else {
            return ClientAction::Drop(DropReason::Malformed);
        };
        let Some(&slot) = self.by_five.get(five) else {
            return ClientAction::Drop(DropReason::NoAllocation);
        };
        let Some(alloc) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return ClientAction::Drop(DropReason::NoAllocation);
        };
        if !alloc.is_live(now) {
            return ClientAction::Drop(DropReason::NoAllocation);
        }
        let Some(peer) = alloc.channel_peer(frame.channel(), now) else {
            return ClientAction::Drop(DropReason::ChannelNotBound);
        };
        let Some(relay) = alloc.relays.for_peer(&peer) else {
            return ClientAction::Drop(DropReason::FamilyMismatch);
        };
        let len = usize::from(frame.length());
        if let Some(bw) = alloc.bandwidth.as_mut() {
            if !bw.allow(now, len) {
                alloc.traffic.dropped_bandwidth += 1;
                return ClientAction::Drop(DropReason::Bandwidth);
            }
        }
        let bytes = u64::try_from(len).unwrap_or(u64::MAX);
        alloc.traffic.to_peer_packets += 1;
        alloc.traffic.to_peer_bytes += bytes;
        let dont_fragment = alloc.dont_fragment;
        self.counters.to_peer_packets += 1;
        self.counters.to_peer_bytes += bytes;
        ClientAction::ToPeer {
            relay,
            peer,
            payload: 4..4 + len,
            dont_fragment,
        }
    }

    fn stun_message(
        &mut self,
        now: Instant,
        five: &FiveTuple,
        packet: &[u8],
        io: &mut (impl RelayIo + ?Sized),
        out: &mut Vec<u8>,
    ) -> ClientAction {
        let Ok(msg) = Message::new_checked(packet) else {
            return ClientAction::Drop(DropReason::Malformed);
        };
        // "If the FINGERPRINT extension is used, the check ... fails [then] the message
        // ... MUST be discarded" (RFC 8489 §7.3, §14.7).
        let fingerprint = msg.attribute(AttributeType::FINGERPRINT).is_some();
        if fingerprint && !verify_fingerprint(&msg) {
            return ClientAction::Drop(DropReason::BadFingerprint);
        }
        match msg.class() {
            Class::Request => self.request(now, five, &msg, fingerprint, io, out),
            Class::Indication if msg.method() == Method::SEND => {
                self.send_indication(now, five, &msg)
            }
            // Binding indications are keepalives (RFC 8489 §6.3.2: no response); Data
            // indications and responses have no business arriving from a client.
            _ => ClientAction::Drop(DropReason::Unexpected),
        }
    }

    fn request(
        &mut self,
        now: Instant,
        five: &FiveTuple,
        msg: &Message<&[u8]>,
        fingerprint: bool,
        io: &mut (impl RelayIo + ?Sized),
        out: &mut Vec<u8>,
    ) -> ClientAction {
        let method = msg.method();
        let mut reply = Reply {
            method,
            txid: msg.transaction_id(),
            fingerprint,
            auth: None,
        };
        if method == Method::BINDING {
            return self.binding(five, msg, reply, out);
        }
        if !matches!(
            method,
            Method::ALLOCATE | Method::REFRESH | Method::CREATE_PERMISSION | Method::CHANNEL_BIND
        ) {
            return self.error(out, reply, ErrorCode::BAD_REQUEST);
        }
        let existing = self.live_slot(five, now, io);
        // A retransmitted Allocate is answered before authentication: its nonce may have
        // gone stale since the first copy, and a 438 would send the client into a new
        // Allocate that meets 437. "the server ... MUST respond with the same response"
        // (RFC 8656 §7.2, the note on retransmissions).
        if method == Method::ALLOCATE {
            if let Some(alloc) = existing.and_then(|s| self.slot(s)) {
                if alloc.allocate_txid == reply.txid {
                    out.clear();
                    out.extend_from_slice(&alloc.allocate_response);
                    self.counters.allocate_retransmits += 1;
                    return ClientAction::Reply;
                }
            }
        }
        // The 401 budget is checked before any key is tried, so a spent budget stops
        // password guessing too. Clients that already hold an allocation are exempt: they
        // proved their credentials, and an office NAT must not lock them out.
        let client_ip = five.client.ip();
        if existing.is_none() && !self.limiter.would_allow(now, client_ip) {
            self.counters.count_auth(AuthFailure::RateLimited);
            return ClientAction::Drop(DropReason::RateLimited);
        }
        let unix = self.unix_secs(now);
        let auth = match self.credentials.authenticate(
            msg,
            five.client,
            unix,
            &self.nonces,
            self.config.lifetimes.nonce.as_secs(),
        ) {
            Ok(auth) => auth,
            Err(rejection) => return self.reject(now, five, reply, rejection, out),
        };
        reply.auth = Some(&auth);
        // "Once the authentication checks are done, the STUN agent MUST check for unknown
        // attributes" (RFC 8489 §6.3); 420 with UNKNOWN-ATTRIBUTES (§6.3.1.1).
        let unknown = msg.unknown_comprehension_required();
        if !unknown.is_empty() {
            return self.error_with(out, reply, ErrorCode::UNKNOWN_ATTRIBUTE, |w| {
                w.add(&Attribute::UnknownAttributes(UnknownAttributeList::Types(
                    unknown.as_slice(),
                )))
            });
        }
        if method == Method::ALLOCATE {
            return self.allocate(now, five, msg, reply, &auth, existing, io, out);
        }
        // RFC 8656 §5: the other requests need the allocation of this 5-tuple ("437
        // (Allocation Mismatch)") made by the same user ("the server MUST ... 441 (Wrong
        // Credentials)" when the USERNAME differs).
        let Some(slot) = existing else {
            return self.error(out, reply, ErrorCode::ALLOCATION_MISMATCH);
        };
        if self.slot(slot).is_some_and(|a| a.user != auth.user) {
            self.counters.count_auth(AuthFailure::WrongCredentials);
            self.event(TurnEvent::AuthFailed {
                client: five.client,
                reason: AuthFailure::WrongCredentials,
            });
            // The key is the one this request proved, so the answer is protected with it.
            return self.error(out, reply, ErrorCode::WRONG_CREDENTIALS);
        }
        match method {
            Method::REFRESH => self.refresh(now, slot, msg, reply, io, out),
            Method::CREATE_PERMISSION => self.create_permission(now, five, slot, msg, reply, out),
            _ => self.channel_bind(now, five, slot, msg, reply, out),
        }
    }

    /// Binding (RFC 8489 §6.3.1): "the server MUST add an XOR-MAPPED-ADDRESS attribute",
    /// over any transport, without authentication.
    fn binding(
        &mut self,
        five: &FiveTuple,
        msg: &Message<&[u8]>,
        reply: Reply<'_>,
        out: &mut Vec<u8>,
    ) -> ClientAction {
        self.counters.binding_requests += 1;
        let unknown = msg.unknown_comprehension_required();
        if !unknown.is_empty() {
            return self.error_with(out, reply, ErrorCode::UNKNOWN_ATTRIBUTE, |w| {
                w.add(&Attribute::UnknownAttributes(UnknownAttributeList::Types(
                    unknown.as_slice(),
                )))
            });
        }
        let mapped = five.client;
        self.respond(out, reply, Class::SuccessResponse, |w| {
            w.add(&Attribute::XorMappedAddress(mapped))
        })
    }

    /// Answers a failed authentication. 401s are charged to the client IP's budget and
    /// dropped once it is spent: STUN has no "slow down" code (a 5xx would make the
    /// client give up, and 401 bodies are larger than the requests that trigger them, a
    /// reflection gain RFC 8489 §16.1 warns against), while an unanswered request is
    /// retransmitted by the client (RFC 8489 §6.2.1), which is the back-off wanted.
    fn reject(
        &mut self,
        now: Instant,
        five: &FiveTuple,
        reply: Reply<'_>,
        rejection: Rejection,
        out: &mut Vec<u8>,
    ) -> ClientAction {
        if rejection.code.code == 401 && !self.limiter.charge(now, five.client.ip()) {
            self.counters.count_auth(AuthFailure::RateLimited);
            return ClientAction::Drop(DropReason::RateLimited);
        }
        self.counters.count_auth(rejection.reason);
        if rejection.reason != AuthFailure::Challenge {
            self.event(TurnEvent::AuthFailed {
                client: five.client,
                reason: rejection.reason,
            });
        }
        if !rejection.challenge {
            return self.error(out, reply, rejection.code);
        }
        // 401 and 438 carry REALM, a fresh NONCE with the security-feature cookie, and
        // PASSWORD-ALGORITHMS (RFC 8489 §9.2.4).
        let nonce = self
            .nonces
            .issue(self.unix_secs(now), five.client, FEATURES);
        let realm = self.credentials.realm().to_string();
        self.error_with(out, reply, rejection.code, |w| {
            w.add(&Attribute::Realm(&realm))?;
            w.add(&Attribute::Nonce(&nonce))?;
            w.add(&Attribute::PasswordAlgorithms(ADVERTISED))
        })
    }

    // ----------------------------------------------------------------------------------
    // Allocate (RFC 8656 §7.2)
    // ----------------------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn allocate(
        &mut self,
        now: Instant,
        five: &FiveTuple,
        msg: &Message<&[u8]>,
        reply: Reply<'_>,
        auth: &Authenticated,
        existing: Option<usize>,
        io: &mut (impl RelayIo + ?Sized),
        out: &mut Vec<u8>,
    ) -> ClientAction {
        // 2. "the server checks if the 5-tuple is currently in use by an existing
        // allocation. If yes, the server rejects the request with a 437 (Allocation
        // Mismatch) error." (The retransmission case was answered before.)
        if existing.is_some() {
            return self.error(out, reply, ErrorCode::ALLOCATION_MISMATCH);
        }
        // 3. "If the REQUESTED-TRANSPORT attribute is not included or is malformed, the
        // server rejects the request with a 400 (Bad Request) error. Otherwise, if the
        // attribute is included but specifies a protocol that is not supported by the
        // server, the server rejects the request with a 442 (Unsupported Transport
        // Protocol) error."
        match msg.decode(AttributeType::REQUESTED_TRANSPORT) {
            Some(Ok(Attribute::RequestedTransport(TRANSPORT_UDP))) => {}
            Some(Ok(Attribute::RequestedTransport(_))) => {
                return self.error(out, reply, ErrorCode::UNSUPPORTED_TRANSPORT_PROTOCOL)
            }
            _ => return self.error(out, reply, ErrorCode::BAD_REQUEST),
        }
        let req = match decode_allocate(msg) {
            Ok(req) => req,
            Err(code) => return self.error(out, reply, code),
        };
        // 5. "If yes [RESERVATION-TOKEN], and the request also contains an EVEN-PORT or
        // REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY attribute, the server
        // rejects the request with a 400 (Bad Request) error."
        if req.token.is_some()
            && (req.even_port.is_some()
                || req.requested_family.is_some()
                || req.additional_family.is_some())
        {
            return self.error(out, reply, ErrorCode::BAD_REQUEST);
        }
        // 6. "The server checks if the request contains both REQUESTED-ADDRESS-FAMILY and
        // ADDITIONAL-ADDRESS-FAMILY attributes. If yes, then the server rejects the
        // request with a 400 (Bad Request) error." ADDITIONAL-ADDRESS-FAMILY may only ask
        // for IPv6 (RFC 8656 §18.11), else 400 too.
        if req.requested_family.is_some() && req.additional_family.is_some()
            || req.additional_family == Some(AddressFamily::V4)
        {
            return self.error(out, reply, ErrorCode::BAD_REQUEST);
        }
        // 8. (first half) "EVEN-PORT attribute with the R bit set to 1 ... and the
        // request also contains an ADDITIONAL-ADDRESS-FAMILY attribute, the server rejects
        // the request with a 400 (Bad Request) error."
        if req.even_port == Some(true) && req.additional_family.is_some() {
            return self.error(out, reply, ErrorCode::BAD_REQUEST);
        }
        // 5. (second half) "it checks to see if the token is valid ... If the token is not
        // valid for some reason, the server rejects the request with a 508 (Insufficient
        // Capacity) error."
        let reserved = match req.token {
            Some(token) => match self.reservations.get(&token) {
                Some(r) if r.expires > now => Some(r.relay),
                _ => {
                    self.quota_hit(five, QuotaKind::RelayPorts);
                    return self.error(out, reply, ErrorCode::INSUFFICIENT_CAPACITY);
                }
            },
            None => None,
        };
        // 7. "If the server does not support the address family requested by the client in
        // REQUESTED-ADDRESS-FAMILY ... 440 (Address Family not Supported) ... If the
        // REQUESTED-ADDRESS-FAMILY attribute is absent and the server does not support the
        // IPv4 address family, ... 440".
        let family = match reserved {
            Some(addr) => AddressFamily::of(&addr.ip()),
            None => req.requested_family.unwrap_or(AddressFamily::V4),
        };
        let Some(primary_ip) = self.relay_ip(family) else {
            return self.error(out, reply, ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED);
        };
        // "At any point, the server MAY choose to reject the request with a 486
        // (Allocation Quota Reached) error if it feels the client is trying to exceed
        // some locally defined allocation quota." (RFC 8656 §7.2); capacity is 508.
        let quotas = self.config.quotas;
        if self.per_user.get(&auth.user).copied().unwrap_or(0) >= quotas.allocations_per_user {
            self.quota_hit(five, QuotaKind::AllocationsPerUser);
            return self.error(out, reply, ErrorCode::ALLOCATION_QUOTA_REACHED);
        }
        if self.by_five.len() >= usize::try_from(quotas.allocations_total).unwrap_or(usize::MAX) {
            self.quota_hit(five, QuotaKind::AllocationsTotal);
            return self.error(out, reply, ErrorCode::INSUFFICIENT_CAPACITY);
        }
        // The same quotas over every shard of the process.
        if let Some(kind) = self.ledger.exceeded(&auth.user, &quotas) {
            self.quota_hit(five, kind);
            let code = match kind {
                QuotaKind::AllocationsPerUser => ErrorCode::ALLOCATION_QUOTA_REACHED,
                _ => ErrorCode::INSUFFICIENT_CAPACITY,
            };
            return self.error(out, reply, code);
        }
        if req.even_port == Some(true)
            && self.reservations.len()
                >= usize::try_from(quotas.allocations_total).unwrap_or(usize::MAX)
        {
            self.quota_hit(five, QuotaKind::RelayPorts);
            return self.error(out, reply, ErrorCode::INSUFFICIENT_CAPACITY);
        }

        // 8. (second half) "the server checks if it can satisfy the request (i.e., can
        // allocate a relayed transport address as described below). If the server cannot
        // satisfy the request, then the server rejects the request with a 508
        // (Insufficient Capacity) error."
        let request = match (reserved, req.even_port) {
            (Some(addr), _) => PortRequest::Reserved(addr),
            (None, Some(reserve_next)) => PortRequest::Even { reserve_next },
            (None, None) => PortRequest::Any,
        };
        let primary = match io.bind(primary_ip, request) {
            Ok(bound) if !self.by_relay.contains_key(&normalise(bound.addr)) => bound,
            _ => {
                self.quota_hit(five, QuotaKind::RelayPorts);
                return self.error(out, reply, ErrorCode::INSUFFICIENT_CAPACITY);
            }
        };
        if let Some(token) = req.token {
            self.reservations.remove(&token);
        }
        let mut new_token = None;
        if req.even_port == Some(true) {
            let Some(next) = primary.reserved_next else {
                io.release(primary.addr);
                self.quota_hit(five, QuotaKind::RelayPorts);
                return self.error(out, reply, ErrorCode::INSUFFICIENT_CAPACITY);
            };
            let token = self.new_token();
            let expires = add(now, self.config.lifetimes.reservation);
            self.reservations.insert(
                token,
                Reservation {
                    relay: next,
                    expires,
                },
            );
            self.reservation_queue.push_back((expires, token));
            new_token = Some(token);
        }
        let mut relays = RelayAddrs::default();
        set_relay(&mut relays, primary.addr);
        // Dual stack: "If the server can allocate ... only for one family", the success
        // response carries ADDRESS-ERROR-CODE for the other (RFC 8656 §7.2, §18.12).
        let mut address_error = None;
        if req.additional_family == Some(AddressFamily::V6) {
            match self.relay_ip(AddressFamily::V6) {
                None => {
                    address_error = Some(ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED);
                }
                Some(ip) => {
                    let request = match req.even_port {
                        Some(_) => PortRequest::Even {
                            reserve_next: false,
                        },
                        None => PortRequest::Any,
                    };
                    match io.bind(ip, request) {
                        Ok(BoundRelay { addr, .. })
                            if !self.by_relay.contains_key(&normalise(addr)) =>
                        {
                            set_relay(&mut relays, addr);
                        }
                        _ => {
                            self.quota_hit(five, QuotaKind::RelayPorts);
                            address_error = Some(ErrorCode::INSUFFICIENT_CAPACITY);
                        }
                    }
                }
            }
        }
        let lifetime = desired_lifetime(
            req.lifetime,
            self.config.lifetimes.allocation_default,
            self.config.lifetimes.allocation_max,
        )
        .unwrap_or(self.config.lifetimes.allocation_default);
        let lifetime_secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
        let mapped = five.client;
        let action = self.respond(out, reply, Class::SuccessResponse, |w| {
            for relay in relays.iter() {
                w.add(&Attribute::XorRelayedAddress(relay))?;
            }
            w.add(&Attribute::Lifetime(lifetime_secs))?;
            if let Some(token) = new_token {
                w.add(&Attribute::ReservationToken(token))?;
            }
            w.add(&Attribute::XorMappedAddress(mapped))?;
            if let Some(error) = address_error {
                w.add(&Attribute::AddressErrorCode {
                    family: AddressFamily::V6,
                    error,
                })?;
            }
            Ok(())
        });
        if action != ClientAction::Reply {
            for relay in relays.iter() {
                io.release(relay);
            }
            return action;
        }

        let id = self.next_id;
        self.next_id += 1;
        let alloc = Allocation {
            id,
            five: *five,
            user: auth.user.clone(),
            relays,
            created: now,
            expires: add(now, lifetime),
            dont_fragment: req.dont_fragment,
            permissions: Vec::new(),
            channels: Vec::new(),
            bandwidth: quotas.bandwidth_bytes_per_sec.map(Bandwidth::new),
            traffic: TrafficStats::default(),
            allocate_txid: reply.txid,
            allocate_response: out.clone(),
            scheduled: None,
        };
        let expires = alloc.expires;
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = Some(alloc);
                }
                slot
            }
            None => {
                self.slots.push(Some(alloc));
                self.slots.len() - 1
            }
        };
        self.by_five.insert(*five, slot);
        for relay in relays.iter() {
            self.by_relay.insert(normalise(relay), slot);
        }
        *self.per_user.entry(auth.user.clone()).or_insert(0) += 1;
        self.ledger.take(&auth.user);
        self.counters.allocations_active += 1;
        self.counters.allocations_created += 1;
        self.schedule(slot, expires);
        self.event(TurnEvent::AllocationCreated {
            id,
            user: auth.user.clone(),
            five: *five,
            relays,
            lifetime,
        });
        ClientAction::Reply
    }

    fn relay_ip(&self, family: AddressFamily) -> Option<IpAddr> {
        match family {
            AddressFamily::V4 => self.config.relay_v4.map(IpAddr::V4),
            AddressFamily::V6 => self.config.relay_v6.map(IpAddr::V6),
        }
    }

    /// A RESERVATION-TOKEN nobody can guess: HMAC of a counter under the server secret.
    fn new_token(&mut self) -> [u8; 8] {
        loop {
            self.token_counter += 1;
            let mut ctx = hmac::Context::with_key(&self.token_key);
            ctx.update(b"portico turn reservation token");
            ctx.update(&self.token_counter.to_be_bytes());
            let tag = ctx.sign();
            let mut token = [0u8; 8];
            token
                .iter_mut()
                .zip(tag.as_ref())
                .for_each(|(t, s)| *t = *s);
            // A collision among at most a few thousand live 64-bit tokens is
            // astronomically unlikely; the loop only makes it impossible.
            if !self.reservations.contains_key(&token) {
                return token;
            }
        }
    }

    fn quota_hit(&mut self, five: &FiveTuple, quota: QuotaKind) {
        self.counters.count_quota(quota);
        self.event(TurnEvent::QuotaHit {
            client: five.client,
            quota,
        });
    }

    // ----------------------------------------------------------------------------------
    // Refresh (RFC 8656 §8.2)
    // ----------------------------------------------------------------------------------

    fn refresh(
        &mut self,
        now: Instant,
        slot: usize,
        msg: &Message<&[u8]>,
        reply: Reply<'_>,
        io: &mut (impl RelayIo + ?Sized),
        out: &mut Vec<u8>,
    ) -> ClientAction {
        let Some(relays) = self.slot(slot).map(|a| a.relays) else {
            return self.error(out, reply, ErrorCode::ALLOCATION_MISMATCH);
        };
        // "If the server receives a Refresh Request with a REQUESTED-ADDRESS-FAMILY
        // attribute and the attribute value does not match the address family of the
        // allocation, the server MUST reply with a 443 (Peer Address Family Mismatch)
        // Refresh error response."
        match msg.decode(AttributeType::REQUESTED_ADDRESS_FAMILY) {
            None => {}
            Some(Ok(Attribute::RequestedAddressFamily(f))) => {
                let has = match f {
                    AddressFamily::V4 => relays.v4.is_some(),
                    AddressFamily::V6 => relays.v6.is_some(),
                };
                if !has {
                    return self.error(out, reply, ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH);
                }
            }
            Some(Err(AttributeError::UnknownAddressFamily(_))) => {
                return self.error(out, reply, ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH)
            }
            Some(_) => return self.error(out, reply, ErrorCode::BAD_REQUEST),
        }
        let requested = match msg.decode(AttributeType::LIFETIME) {
            None => None,
            Some(Ok(Attribute::Lifetime(s))) => Some(s),
            Some(_) => return self.error(out, reply, ErrorCode::BAD_REQUEST),
        };
        let lifetimes = self.config.lifetimes;
        match desired_lifetime(
            requested,
            lifetimes.allocation_default,
            lifetimes.allocation_max,
        ) {
            // "If the 'desired lifetime' is zero, then the request succeeds and the
            // allocation is deleted."
            None => {
                self.end_allocation(slot, EndReason::Deleted, now, io);
                self.respond(out, reply, Class::SuccessResponse, |w| {
                    w.add(&Attribute::Lifetime(0))
                })
            }
            // "If the 'desired lifetime' is non-zero, then the request succeeds and the
            // allocation's time-to-expiry is set to the 'desired lifetime'."
            Some(lifetime) => {
                let expires = add(now, lifetime);
                let Some(alloc) = self.slot_mut(slot) else {
                    return self.error(out, reply, ErrorCode::ALLOCATION_MISMATCH);
                };
                alloc.expires = expires;
                let id = alloc.id;
                self.schedule(slot, expires);
                self.event(TurnEvent::AllocationRefreshed { id, lifetime });
                let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
                self.respond(out, reply, Class::SuccessResponse, |w| {
                    w.add(&Attribute::Lifetime(secs))
                })
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // CreatePermission (RFC 8656 §10.2) and ChannelBind (§12.2)
    // ----------------------------------------------------------------------------------

    fn create_permission(
        &mut self,
        now: Instant,
        five: &FiveTuple,
        slot: usize,
        msg: &Message<&[u8]>,
        reply: Reply<'_>,
        out: &mut Vec<u8>,
    ) -> ClientAction {
        let Some(relays) = self.slot(slot).map(|a| a.relays) else {
            return self.error(out, reply, ErrorCode::ALLOCATION_MISMATCH);
        };
        // "The CreatePermission request MUST contain at least one XOR-PEER-ADDRESS
        // attribute and MAY contain multiple such attributes. If no such attribute exists,
        // or if any of these attributes are invalid, then a 400 (Bad Request) error is
        // returned." At most MAX_ATTRIBUTES of them.
        let txid = msg.transaction_id();
        let mut peers: Vec<IpAddr> = Vec::new();
        for raw in msg
            .attributes()
            .filter(|a| a.attribute_type() == AttributeType::XOR_PEER_ADDRESS)
        {
            let Ok(Attribute::XorPeerAddress(peer)) = Attribute::parse(&raw, &txid) else {
                return self.error(out, reply, ErrorCode::BAD_REQUEST);
            };
            // "If an XOR-PEER-ADDRESS attribute contains an address of an address family
            // that is not the same as that of a relayed transport address for the
            // allocation, the server MUST generate an error response with the 443 (Peer
            // Address Family Mismatch) response code."
            let peer = normalise(peer);
            if relays.for_peer(&peer).is_none() {
                return self.error(out, reply, ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH);
            }
            // "The server MAY impose restrictions on the IP address allowed in the
            // XOR-PEER-ADDRESS attribute; if a value is not allowed, the server rejects the
            // request with a 403 (Forbidden) error."
            if let Err(reason) = self.policy.check(peer, PortCheck::IpOnly) {
                self.peer_refused(five, peer, reason);
                return self.error(out, reply, ErrorCode::FORBIDDEN);
            }
            if !peers.contains(&peer.ip()) {
                peers.push(peer.ip());
            }
        }
        if peers.is_empty() {
            return self.error(out, reply, ErrorCode::BAD_REQUEST);
        }
        // "If the request is valid, but the server is unable to satisfy the request due to
        // some capacity limit or similar, then a 508 (Insufficient Capacity) error is
        // returned." Nothing is installed then.
        self.sweep_allocation(slot, now);
        let quota =
            usize::try_from(self.config.quotas.permissions_per_allocation).unwrap_or(usize::MAX);
        let Some(alloc) = self.slot(slot) else {
            return self.error(out, reply, ErrorCode::ALLOCATION_MISMATCH);
        };
        let new = peers
            .iter()
            .filter(|ip| !alloc.permissions.iter().any(|p| p.ip == **ip))
            .count();
        if alloc.permissions.len() + new > quota {
            self.quota_hit(five, QuotaKind::Permissions);
            return self.error(out, reply, ErrorCode::INSUFFICIENT_CAPACITY);
        }
        let expires = add(now, self.config.lifetimes.permission);
        let mut installed: u64 = 0;
        if let Some(alloc) = self.slot_mut(slot) {
            for ip in &peers {
                if alloc.install_permission(*ip, expires) {
                    installed += 1;
                }
            }
        }
        self.counters.permissions_active += installed;
        self.schedule(slot, expires);
        self.respond(out, reply, Class::SuccessResponse, |_| Ok(()))
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        five: &FiveTuple,
        slot: usize,
        msg: &Message<&[u8]>,
        reply: Reply<'_>,
        out: &mut Vec<u8>,
    ) -> ClientAction {
        let Some(relays) = self.slot(slot).map(|a| a.relays) else {
            return self.error(out, reply, ErrorCode::ALLOCATION_MISMATCH);
        };
        // "The request contains both a CHANNEL-NUMBER and an XOR-PEER-ADDRESS attribute;
        // the channel number is in the range 0x4000 through 0x4FFF (inclusive)" — else
        // (widened to RFC 5766's 0x4000 through 0x7FFF for its clients: see CHANNEL_MAX)
        // 400 (Bad Request).
        let (Some(Ok(Attribute::ChannelNumber(number))), Some(Ok(Attribute::XorPeerAddress(peer)))) = (
            msg.decode(AttributeType::CHANNEL_NUMBER),
            msg.decode(AttributeType::XOR_PEER_ADDRESS),
        ) else {
            return self.error(out, reply, ErrorCode::BAD_REQUEST);
        };
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&number) {
            return self.error(out, reply, ErrorCode::BAD_REQUEST);
        }
        let peer = normalise(peer);
        if relays.for_peer(&peer).is_none() {
            return self.error(out, reply, ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH);
        }
        // "The server MAY impose restrictions on the IP address and port values allowed in
        // the XOR-PEER-ADDRESS attribute; if a value is not allowed, the server rejects the
        // request with a 403 (Forbidden) error." The port is checked: ChannelData goes to
        // exactly this address.
        if let Err(reason) = self.policy.check(peer, PortCheck::WithPort) {
            self.peer_refused(five, peer, reason);
            return self.error(out, reply, ErrorCode::FORBIDDEN);
        }
        self.sweep_allocation(slot, now);
        let quotas = self.config.quotas;
        let lifetimes = self.config.lifetimes;
        let Some(alloc) = self.slot(slot) else {
            return self.error(out, reply, ErrorCode::ALLOCATION_MISMATCH);
        };
        // "The channel number is not currently bound to a different transport address
        // (same transport address is OK); the transport address is not currently bound to
        // a different channel number." Bindings in their 5-minute hold after expiry count
        // as bound (RFC 8656 §12: the number and address cannot be rebound to anything else
        // until then; rebinding the same pair revives the binding).
        let by_number = alloc.channels.iter().position(|c| c.number == number);
        let by_peer = alloc.channels.iter().position(|c| c.peer == peer);
        match (by_number, by_peer) {
            (Some(a), Some(b)) if a == b => {}
            (None, None) => {}
            _ => return self.error(out, reply, ErrorCode::BAD_REQUEST),
        }
        let channel_quota = usize::try_from(quotas.channels_per_allocation).unwrap_or(usize::MAX);
        if by_number.is_none() && alloc.channels.len() >= channel_quota {
            self.quota_hit(five, QuotaKind::Channels);
            return self.error(out, reply, ErrorCode::INSUFFICIENT_CAPACITY);
        }
        // "The server also installs or refreshes a permission for the IP address in the
        // XOR-PEER-ADDRESS attribute" — which counts against the permission quota.
        let permission_quota =
            usize::try_from(quotas.permissions_per_allocation).unwrap_or(usize::MAX);
        let new_permission = !alloc.permissions.iter().any(|p| p.ip == peer.ip());
        if new_permission && alloc.permissions.len() >= permission_quota {
            self.quota_hit(five, QuotaKind::Permissions);
            return self.error(out, reply, ErrorCode::INSUFFICIENT_CAPACITY);
        }
        let channel_expires = add(now, lifetimes.channel);
        let permission_expires = add(now, lifetimes.permission);
        let mut new_channel = false;
        if let Some(alloc) = self.slot_mut(slot) {
            match by_number.and_then(|i| alloc.channels.get_mut(i)) {
                Some(binding) => binding.expires = channel_expires,
                None => {
                    alloc.channels.push(ChannelBinding {
                        number,
                        peer,
                        expires: channel_expires,
                    });
                    new_channel = true;
                }
            }
            alloc.install_permission(peer.ip(), permission_expires);
        }
        self.counters.channels_active += u64::from(new_channel);
        self.counters.permissions_active += u64::from(new_permission);
        self.schedule(slot, permission_expires.min(channel_expires));
        self.respond(out, reply, Class::SuccessResponse, |_| Ok(()))
    }

    fn peer_refused(&mut self, five: &FiveTuple, peer: SocketAddr, reason: PeerRefusal) {
        self.counters.count_refusal(reason);
        self.event(TurnEvent::PeerRefused {
            client: five.client,
            peer,
            reason,
        });
    }

    // ----------------------------------------------------------------------------------
    // Send indication (RFC 8656 §11.2)
    // ----------------------------------------------------------------------------------

    /// "When the server receives a Send indication, it processes as per Section 5 plus
    /// the specific rules mentioned here. The message is first checked for validity. The
    /// Send indication MUST contain both an XOR-PEER-ADDRESS attribute and a DATA
    /// attribute. If one of these attributes is missing or invalid, then the message is
    /// discarded. ... the server also checks that there is a permission installed for the
    /// IP address contained in the XOR-PEER-ADDRESS attribute. If no such permission
    /// exists, the message is discarded." Indications are not authenticated (RFC 8656
    /// §5), and nothing answers them.
    fn send_indication(
        &mut self,
        now: Instant,
        five: &FiveTuple,
        msg: &Message<&[u8]>,
    ) -> ClientAction {
        // "If the indication contains unknown comprehension-required attributes, the
        // indication is discarded" (RFC 8489 §6.3.2).
        if !msg.unknown_comprehension_required().is_empty() {
            return ClientAction::Drop(DropReason::UnknownAttribute);
        }
        let Some(Ok(Attribute::XorPeerAddress(peer))) = msg.decode(AttributeType::XOR_PEER_ADDRESS)
        else {
            return ClientAction::Drop(DropReason::Malformed);
        };
        let Some(data) = msg.attribute(AttributeType::DATA) else {
            return ClientAction::Drop(DropReason::Malformed);
        };
        let start = data.offset() + 4;
        let payload = start..start + data.value().len();
        let dont_fragment = msg.attribute(AttributeType::DONT_FRAGMENT).is_some();
        let Some(&slot) = self.by_five.get(five) else {
            return ClientAction::Drop(DropReason::NoAllocation);
        };
        let peer = match self.policy.check(peer, PortCheck::WithPort) {
            Ok(peer) => peer,
            Err(reason) => {
                self.counters.count_refusal(reason);
                return ClientAction::Drop(DropReason::PeerRefused);
            }
        };
        let Some(alloc) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return ClientAction::Drop(DropReason::NoAllocation);
        };
        if !alloc.is_live(now) {
            return ClientAction::Drop(DropReason::NoAllocation);
        }
        let Some(relay) = alloc.relays.for_peer(&peer) else {
            return ClientAction::Drop(DropReason::FamilyMismatch);
        };
        if !alloc.has_permission(peer.ip(), now) {
            return ClientAction::Drop(DropReason::NoPermission);
        }
        let len = payload.len();
        if let Some(bw) = alloc.bandwidth.as_mut() {
            if !bw.allow(now, len) {
                alloc.traffic.dropped_bandwidth += 1;
                return ClientAction::Drop(DropReason::Bandwidth);
            }
        }
        let bytes = u64::try_from(len).unwrap_or(u64::MAX);
        alloc.traffic.to_peer_packets += 1;
        alloc.traffic.to_peer_bytes += bytes;
        self.counters.to_peer_packets += 1;
        self.counters.to_peer_bytes += bytes;
        ClientAction::ToPeer {
            relay,
            peer,
            payload,
            dont_fragment,
        }
    }

    // ----------------------------------------------------------------------------------
    // Datagrams from peers (RFC 8656 §11.3 Data indication, §12.7 ChannelData)
    // ----------------------------------------------------------------------------------

    /// Handles a datagram `payload` from `peer` that arrived on the relay socket `relay`.
    /// `out` is overwritten when the answer is [`PeerAction::ToClient`].
    ///
    /// "When the server receives a UDP datagram at a currently allocated relayed transport
    /// address, the server looks up the allocation associated with the relayed transport
    /// address. The server then checks to see whether the set of permissions for the
    /// allocation allow the relaying of the UDP datagram" (RFC 8656 §11.3); if so, and a
    /// channel is bound to the peer's transport address, the data goes in a ChannelData
    /// message (§12.7), otherwise in a Data indication with XOR-PEER-ADDRESS and DATA
    /// (§11.3).
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> PeerAction {
        let action = self.peer_datagram(now, normalise(relay), normalise(peer), payload, out);
        if let PeerAction::Drop(reason) = action {
            self.counters.count_drop(reason);
        }
        action
    }

    fn peer_datagram(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> PeerAction {
        let Some(&slot) = self.by_relay.get(&relay) else {
            return PeerAction::Drop(DropReason::NoAllocation);
        };
        let Some(alloc) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return PeerAction::Drop(DropReason::NoAllocation);
        };
        if !alloc.is_live(now) {
            return PeerAction::Drop(DropReason::NoAllocation);
        }
        if !alloc.has_permission(peer.ip(), now) {
            return PeerAction::Drop(DropReason::NoPermission);
        }
        let Ok(len16) = u16::try_from(payload.len()) else {
            return PeerAction::Drop(DropReason::TooLarge);
        };
        if let Some(bw) = alloc.bandwidth.as_mut() {
            if !bw.allow(now, payload.len()) {
                alloc.traffic.dropped_bandwidth += 1;
                return PeerAction::Drop(DropReason::Bandwidth);
            }
        }
        let five = alloc.five;
        let action = match alloc.channel_of(peer, now) {
            Some(channel) => {
                let [c0, c1] = channel.to_be_bytes();
                let [l0, l1] = len16.to_be_bytes();
                let padding = if five.transport.is_stream() {
                    (4 - payload.len() % 4) % 4
                } else {
                    0
                };
                PeerAction::ToClientChannel {
                    five,
                    channel,
                    header: [c0, c1, l0, l1],
                    padding,
                }
            }
            None => {
                let txid = next_txid(&mut self.txid_state);
                let mut w = MessageWriter::new(
                    out,
                    MessageType::new(Method::DATA, Class::Indication),
                    txid,
                );
                if w.add(&Attribute::XorPeerAddress(peer)).is_err()
                    || w.add(&Attribute::Data(payload)).is_err()
                {
                    return PeerAction::Drop(DropReason::TooLarge);
                }
                PeerAction::ToClient { five }
            }
        };
        let bytes = u64::from(len16);
        alloc.traffic.to_client_packets += 1;
        alloc.traffic.to_client_bytes += bytes;
        self.counters.to_client_packets += 1;
        self.counters.to_client_bytes += bytes;
        action
    }

    // ----------------------------------------------------------------------------------
    // Timers and endings
    // ----------------------------------------------------------------------------------

    /// When [`TurnServer::on_tick`] next has work; `None` when nothing is pending. May be
    /// early (a timer of something since refreshed), never late.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((t, _, _))| *t);
        let reservation = self.reservation_queue.front().map(|(t, _)| *t);
        match (timer, reservation) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires what is due at `now`: allocations (their relay ports are released through
    /// `io`), permissions, channel bindings past their reuse hold, and unclaimed port
    /// reservations. Appends the queued events to `events`.
    pub fn on_tick(
        &mut self,
        now: Instant,
        io: &mut (impl RelayIo + ?Sized),
        events: &mut Vec<TurnEvent>,
    ) {
        while let Some(&Reverse((at, slot, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let current = match self.slot(slot) {
                Some(a) => a.id == id && a.scheduled == Some(at),
                None => false,
            };
            if !current {
                continue;
            }
            if let Some(alloc) = self.slot_mut(slot) {
                alloc.scheduled = None;
            }
            if self.slot(slot).is_some_and(|a| !a.is_live(now)) {
                self.end_allocation(slot, EndReason::Expired, now, io);
                continue;
            }
            self.sweep_allocation(slot, now);
            let hold = self.config.lifetimes.channel_reuse_hold;
            if let Some(next) = self.slot(slot).map(|a| a.next_deadline(hold)) {
                self.schedule(slot, next);
            }
        }
        while let Some(&(at, token)) = self.reservation_queue.front() {
            if at > now {
                break;
            }
            self.reservation_queue.pop_front();
            if let Some(r) = self.reservations.get(&token) {
                if r.expires <= now {
                    let relay = r.relay;
                    self.reservations.remove(&token);
                    io.release(relay);
                }
            }
        }
        // Entries of refreshed timers stay in the heap until they surface; rebuild it when
        // they outnumber the live ones, so its size stays proportional to the allocations.
        if self.timers.len() > 2 * self.by_five.len() + 64 {
            self.timers = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(slot, a)| {
                    let a = a.as_ref()?;
                    Some(Reverse((a.scheduled?, slot, a.id)))
                })
                .collect();
        }
        self.take_events(events);
    }

    /// The TCP or TLS connection of `five` closed: its allocation, if any, ends (its
    /// 5-tuple can never be used again).
    pub fn client_closed(
        &mut self,
        now: Instant,
        five: FiveTuple,
        io: &mut (impl RelayIo + ?Sized),
    ) {
        let five = five.canonical();
        if let Some(&slot) = self.by_five.get(&five) {
            self.end_allocation(slot, EndReason::ConnectionClosed, now, io);
        }
    }

    /// Makes sure the allocation's timer fires at `at` or earlier.
    fn schedule(&mut self, slot: usize, at: Instant) {
        let Some(alloc) = self.slot_mut(slot) else {
            return;
        };
        if alloc.scheduled.is_some_and(|s| s <= at) {
            return;
        }
        alloc.scheduled = Some(at);
        let id = alloc.id;
        self.timers.push(Reverse((at, slot, id)));
    }

    fn sweep_allocation(&mut self, slot: usize, now: Instant) {
        let hold = self.config.lifetimes.channel_reuse_hold;
        let Some(alloc) = self.slot_mut(slot) else {
            return;
        };
        let (perms, chans) = alloc.sweep(now, hold);
        let perms = u64::try_from(perms).unwrap_or(0);
        let chans = u64::try_from(chans).unwrap_or(0);
        self.counters.permissions_active = self.counters.permissions_active.saturating_sub(perms);
        self.counters.channels_active = self.counters.channels_active.saturating_sub(chans);
    }

    fn end_allocation(
        &mut self,
        slot: usize,
        reason: EndReason,
        now: Instant,
        io: &mut (impl RelayIo + ?Sized),
    ) {
        let Some(alloc) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.free.push(slot);
        self.by_five.remove(&alloc.five);
        for relay in alloc.relays.iter() {
            self.by_relay.remove(&normalise(relay));
            io.release(relay);
        }
        if let Some(count) = self.per_user.get_mut(&alloc.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_user.remove(&alloc.user);
            }
            self.ledger.give_back(&alloc.user);
        }
        let c = &mut self.counters;
        c.allocations_active = c.allocations_active.saturating_sub(1);
        c.permissions_active = c
            .permissions_active
            .saturating_sub(u64::try_from(alloc.permissions.len()).unwrap_or(0));
        c.channels_active = c
            .channels_active
            .saturating_sub(u64::try_from(alloc.channels.len()).unwrap_or(0));
        match reason {
            EndReason::Deleted => c.allocations_deleted += 1,
            EndReason::Expired => c.allocations_expired += 1,
            EndReason::ConnectionClosed => c.allocations_closed += 1,
        }
        self.event(TurnEvent::AllocationEnded {
            id: alloc.id,
            user: alloc.user,
            five: alloc.five,
            relays: alloc.relays,
            reason,
            duration: now.saturating_duration_since(alloc.created),
            traffic: alloc.traffic,
        });
    }

    // ----------------------------------------------------------------------------------
    // Writing responses
    // ----------------------------------------------------------------------------------

    /// Writes a response: the attributes `attrs` adds, SOFTWARE if configured, then the
    /// MESSAGE-INTEGRITY of the request's kind when it was authenticated (RFC 8489
    /// §9.2.4), then FINGERPRINT when the request had one.
    fn respond(
        &self,
        out: &mut Vec<u8>,
        reply: Reply<'_>,
        class: Class,
        attrs: impl FnOnce(&mut MessageWriter<'_>) -> Result<(), EmitError>,
    ) -> ClientAction {
        let mut w = MessageWriter::new(out, MessageType::new(reply.method, class), reply.txid);
        let written = (|| {
            attrs(&mut w)?;
            if let Some(software) = self.config.software.as_deref() {
                w.add(&Attribute::Software(software))?;
            }
            if let Some(auth) = reply.auth {
                match auth.mac {
                    MacKind::Sha1 => w.add_message_integrity(auth.key.as_bytes())?,
                    MacKind::Sha256 => w.add_message_integrity_sha256(auth.key.as_bytes())?,
                }
            }
            if reply.fingerprint {
                w.add_fingerprint()?;
            }
            Ok::<(), EmitError>(())
        })();
        match written {
            Ok(()) => ClientAction::Reply,
            Err(_) => ClientAction::Drop(DropReason::TooLarge),
        }
    }

    fn error(
        &mut self,
        out: &mut Vec<u8>,
        reply: Reply<'_>,
        code: ErrorCode<'static>,
    ) -> ClientAction {
        self.error_with(out, reply, code, |_| Ok(()))
    }

    fn error_with(
        &mut self,
        out: &mut Vec<u8>,
        reply: Reply<'_>,
        code: ErrorCode<'static>,
        attrs: impl FnOnce(&mut MessageWriter<'_>) -> Result<(), EmitError>,
    ) -> ClientAction {
        self.counters.error_responses += 1;
        self.respond(out, reply, Class::ErrorResponse, |w| {
            w.add(&Attribute::ErrorCode(code))?;
            attrs(w)
        })
    }
}

/// Decodes the optional attributes of an Allocate; a malformed one is 400, except an
/// unknown family in REQUESTED-ADDRESS-FAMILY, which is 440 (RFC 8656 §7.2 step 7).
fn decode_allocate(msg: &Message<&[u8]>) -> Result<AllocateRequest, ErrorCode<'static>> {
    let bad = ErrorCode::BAD_REQUEST;
    // 4. "The request may contain a DONT-FRAGMENT attribute. If it does, but the server
    // does not support sending UDP datagrams with the DF bit set to 1 ..., then the server
    // treats the DONT-FRAGMENT attribute in the Allocate request as an unknown
    // comprehension-required attribute." We support it (the I/O layer sets DF).
    let dont_fragment = match msg.decode(AttributeType::DONT_FRAGMENT) {
        None => false,
        Some(Ok(_)) => true,
        Some(Err(_)) => return Err(bad),
    };
    let even_port = match msg.decode(AttributeType::EVEN_PORT) {
        None => None,
        Some(Ok(Attribute::EvenPort { reserve_next })) => Some(reserve_next),
        Some(_) => return Err(bad),
    };
    let requested_family = match msg.decode(AttributeType::REQUESTED_ADDRESS_FAMILY) {
        None => None,
        Some(Ok(Attribute::RequestedAddressFamily(f))) => Some(f),
        Some(Err(AttributeError::UnknownAddressFamily(_))) => {
            return Err(ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED)
        }
        Some(_) => return Err(bad),
    };
    let additional_family = match msg.decode(AttributeType::ADDITIONAL_ADDRESS_FAMILY) {
        None => None,
        Some(Ok(Attribute::AdditionalAddressFamily(f))) => Some(f),
        Some(_) => return Err(bad),
    };
    let token = match msg.decode(AttributeType::RESERVATION_TOKEN) {
        None => None,
        Some(Ok(Attribute::ReservationToken(t))) => Some(t),
        Some(_) => return Err(bad),
    };
    let lifetime = match msg.decode(AttributeType::LIFETIME) {
        None => None,
        Some(Ok(Attribute::Lifetime(s))) => Some(s),
        Some(_) => return Err(bad),
    };
    Ok(AllocateRequest {
        dont_fragment,
        even_port,
        requested_family,
        additional_family,
        token,
        lifetime,
    })
}

/// The "desired lifetime" of RFC 8656 §7.2 and §8.2: zero asks for deletion (`None`);
/// otherwise "the minimum of the client's requested lifetime and the server's maximum
/// allowed lifetime. If this computed value is greater than the default lifetime, then
/// the 'desired lifetime' is the computed value. Otherwise, the 'desired lifetime' is the
/// default lifetime." Without LIFETIME, the default.
fn desired_lifetime(requested: Option<u32>, default: Duration, max: Duration) -> Option<Duration> {
    match requested {
        None => Some(default),
        Some(0) => None,
        Some(secs) => Some(Duration::from_secs(u64::from(secs)).min(max).max(default)),
    }
}

fn set_relay(relays: &mut RelayAddrs, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(_) => relays.v4 = Some(addr),
        SocketAddr::V6(_) => relays.v6 = Some(addr),
    }
}

/// `now + d`, saturating at `now` on the (unreachable for our lifetimes) overflow.
fn add(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// A Data indication's transaction ID: "the transaction ID ... MUST be uniformly and
/// randomly chosen" is for requests, whose responses must match; for indications it only
/// needs to differ (RFC 8489 §6), so a SplitMix64 stream seeded from the secret does.
fn next_txid(state: &mut u64) -> TransactionId {
    let mut id = [0u8; 12];
    let a = splitmix64(state).to_be_bytes();
    let b = splitmix64(state).to_be_bytes();
    id.iter_mut()
        .zip(a.iter().chain(b.iter()))
        .for_each(|(d, s)| *d = *s);
    TransactionId::new(id)
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
