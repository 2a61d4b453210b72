//! What the server reports to the I/O layer for metrics and logs: [`TurnEvent`]s for the
//! rare things worth a log line (allocations starting and ending, authentication
//! failures, refused peers, quota hits), and [`TurnCounters`] for everything counted
//! per packet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::io::FiveTuple;
use super::policy::PeerRefusal;

/// The relayed transport addresses of an allocation (two for a dual-stack one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayAddrs {
    /// The IPv4 relayed address.
    pub v4: Option<SocketAddr>,
    /// The IPv6 relayed address.
    pub v6: Option<SocketAddr>,
}

impl RelayAddrs {
    /// The addresses present.
    pub fn iter(&self) -> impl Iterator<Item = SocketAddr> {
        self.v4.into_iter().chain(self.v6)
    }

    /// The relayed address of `peer`'s family.
    pub fn for_peer(&self, peer: &SocketAddr) -> Option<SocketAddr> {
        match peer {
            SocketAddr::V4(_) => self.v4,
            SocketAddr::V6(_) => self.v6,
        }
    }
}

/// Bytes and packets relayed by one allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficStats {
    /// Datagrams sent to peers (from ChannelData and Send indications).
    pub to_peer_packets: u64,
    /// Application bytes sent to peers.
    pub to_peer_bytes: u64,
    /// Datagrams from peers relayed to the client.
    pub to_client_packets: u64,
    /// Application bytes from peers relayed to the client.
    pub to_client_bytes: u64,
    /// Datagrams dropped by the bandwidth cap (both directions).
    pub dropped_bandwidth: u64,
}

/// How an allocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// A Refresh with LIFETIME 0.
    Deleted,
    /// Its lifetime ran out.
    Expired,
    /// The TCP/TLS connection it lived on closed ([`super::TurnServer::client_closed`]).
    ConnectionClosed,
}

/// Why authentication failed (each answered with the code in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    /// No MESSAGE-INTEGRITY(-SHA256): the normal first request, challenged [401].
    Challenge,
    /// MESSAGE-INTEGRITY present but USERNAME/USERHASH, REALM or NONCE missing, or the
    /// REALM is not ours [400 / 401].
    MissingAttributes,
    /// A NONCE this server did not issue to this client [401].
    InvalidNonce,
    /// PASSWORD-ALGORITHMS / PASSWORD-ALGORITHM not as advertised [400].
    PasswordAlgorithms,
    /// Neither a static user nor a REST username a secret signs [401].
    UnknownUser,
    /// A REST username whose timestamp has passed [401].
    RestExpired,
    /// The MESSAGE-INTEGRITY(-SHA256) does not verify [401].
    BadIntegrity,
    /// A valid request with an expired NONCE [438].
    StaleNonce,
    /// A request on an allocation with another user's credentials [441].
    WrongCredentials,
    /// The client IP's 401 budget is spent: the request was dropped unanswered.
    RateLimited,
}

impl AuthFailure {
    /// Every reason, in counter order.
    pub const ALL: [AuthFailure; 10] = [
        AuthFailure::Challenge,
        AuthFailure::MissingAttributes,
        AuthFailure::InvalidNonce,
        AuthFailure::PasswordAlgorithms,
        AuthFailure::UnknownUser,
        AuthFailure::RestExpired,
        AuthFailure::BadIntegrity,
        AuthFailure::StaleNonce,
        AuthFailure::WrongCredentials,
        AuthFailure::RateLimited,
    ];

    /// The position in [`AuthFailure::ALL`].
    pub const fn index(self) -> usize {
        match self {
            AuthFailure::Challenge => 0,
            AuthFailure::MissingAttributes => 1,
            AuthFailure::InvalidNonce => 2,
            AuthFailure::PasswordAlgorithms => 3,
            AuthFailure::UnknownUser => 4,
            AuthFailure::RestExpired => 5,
            AuthFailure::BadIntegrity => 6,
            AuthFailure::StaleNonce => 7,
            AuthFailure::WrongCredentials => 8,
            AuthFailure::RateLimited => 9,
        }
    }

    /// A short name for metrics labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Challenge => "challenge",
            AuthFailure::MissingAttributes => "missing_attributes",
            AuthFailure::InvalidNonce => "invalid_nonce",
            AuthFailure::PasswordAlgorithms => "password_algorithms",
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::RestExpired => "rest_expired",
            AuthFailure::BadIntegrity => "bad_integrity",
            AuthFailure::StaleNonce => "stale_nonce",
            AuthFailure::WrongCredentials => "wrong_credentials",
            AuthFailure::RateLimited => "rate_limited",
        }
    }
}

/// Which quota a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Allocations per user [486].
    AllocationsPerUser,
    /// Allocations in total on the shard [508].
    AllocationsTotal,
    /// Permissions per allocation [508].
    Permissions,
    /// Channels per allocation [508].
    Channels,
    /// No relay port could be bound, or too many reservations are held [508].
    RelayPorts,
}

impl QuotaKind {
    /// Every kind, in counter order.
    pub const ALL: [QuotaKind; 5] = [
        QuotaKind::AllocationsPerUser,
        QuotaKind::AllocationsTotal,
        QuotaKind::Permissions,
        QuotaKind::Channels,
        QuotaKind::RelayPorts,
    ];

    /// The position in [`QuotaKind::ALL`].
    pub const fn index(self) -> usize {
        match self {
            QuotaKind::AllocationsPerUser => 0,
            QuotaKind::AllocationsTotal => 1,
            QuotaKind::Permissions => 2,
            QuotaKind::Channels => 3,
            QuotaKind::RelayPorts => 4,
        }
    }

    /// A short name for metrics labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            QuotaKind::AllocationsPerUser => "allocations_per_user",
            QuotaKind::AllocationsTotal => "allocations_total",
            QuotaKind::Permissions => "permissions",
            QuotaKind::Channels => "channels",
            QuotaKind::RelayPorts => "relay_ports",
        }
    }
}

/// Why a packet got no answer and was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Neither a well-formed STUN message nor ChannelData.
    Malformed,
    /// A FINGERPRINT that does not match (RFC 8489 §7.3: not STUN).
    BadFingerprint,
    /// A response or an indication the server does not take (Binding indications are
    /// keepalives and land here too).
    Unexpected,
    /// An indication with an unknown comprehension-required attribute (RFC 8489
    /// §6.3.2: discarded).
    UnknownAttribute,
    /// No allocation on this 5-tuple (or relayed address), or it has expired.
    NoAllocation,
    /// ChannelData on a channel that is not bound (RFC 8656 §12.6).
    ChannelNotBound,
    /// No permission for the peer's IP (RFC 8656 §11.2 Send, §11.3 peer datagrams).
    NoPermission,
    /// The peer is refused by the policy (Send indication).
    PeerRefused,
    /// The allocation has no relayed address of the peer's family.
    FamilyMismatch,
    /// The allocation's bandwidth cap.
    Bandwidth,
    /// The client IP's 401 budget is spent.
    RateLimited,
    /// The answer could not be written (a peer datagram too large for a Data indication).
    TooLarge,
    /// The kernel did not take the datagram (the socket's send buffer is full, or the
    /// send failed): counted by the I/O layer, which never waits on one slow socket.
    SendFailed,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 13] = [
        DropReason::Malformed,
        DropReason::BadFingerprint,
        DropReason::Unexpected,
        DropReason::UnknownAttribute,
        DropReason::NoAllocation,
        DropReason::ChannelNotBound,
        DropReason::NoPermission,
        DropReason::PeerRefused,
        DropReason::FamilyMismatch,
        DropReason::Bandwidth,
        DropReason::RateLimited,
        DropReason::TooLarge,
        DropReason::SendFailed,
    ];

    /// The position in [`DropReason::ALL`].
    pub const fn index(self) -> usize {
        match self {
            DropReason::Malformed => 0,
            DropReason::BadFingerprint => 1,
            DropReason::Unexpected => 2,
            DropReason::UnknownAttribute => 3,
            DropReason::NoAllocation => 4,
            DropReason::ChannelNotBound => 5,
            DropReason::NoPermission => 6,
            DropReason::PeerRefused => 7,
            DropReason::FamilyMismatch => 8,
            DropReason::Bandwidth => 9,
            DropReason::RateLimited => 10,
            DropReason::TooLarge => 11,
            DropReason::SendFailed => 12,
        }
    }

    /// A short name for metrics labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadFingerprint => "bad_fingerprint",
            DropReason::Unexpected => "unexpected",
            DropReason::UnknownAttribute => "unknown_attribute",
            DropReason::NoAllocation => "no_allocation",
            DropReason::ChannelNotBound => "channel_not_bound",
            DropReason::NoPermission => "no_permission",
            DropReason::PeerRefused => "peer_refused",
            DropReason::FamilyMismatch => "family_mismatch",
            DropReason::Bandwidth => "bandwidth",
            DropReason::RateLimited => "rate_limited",
            DropReason::TooLarge => "too_large",
            DropReason::SendFailed => "send_failed",
        }
    }
}

/// Something worth a log line or a metric, in the order it happened. Per-packet
/// outcomes are only counted (in [`TurnCounters`]), never reported here.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// An Allocate succeeded.
    AllocationCreated {
        /// A number unique for this server, for joining log lines.
        id: u64,
        /// The username (a static user or a TURN REST `expiry:user`).
        user: Arc<str>,
        /// The client.
        five: FiveTuple,
        /// The relayed addresses.
        relays: RelayAddrs,
        /// The granted lifetime.
        lifetime: Duration,
    },
    /// A Refresh with a non-zero lifetime succeeded.
    AllocationRefreshed {
        /// The allocation.
        id: u64,
        /// The new lifetime.
        lifetime: Duration,
    },
    /// An allocation ended; its relay ports have been released.
    AllocationEnded {
        /// The allocation.
        id: u64,
        /// The username.
        user: Arc<str>,
        /// The client.
        five: FiveTuple,
        /// The relayed addresses.
        relays: RelayAddrs,
        /// Why.
        reason: EndReason,
        /// How long it lived.
        duration: Duration,
        /// What it relayed.
        traffic: TrafficStats,
    },
    /// A request failed authentication (challenges, [`AuthFailure::Challenge`], are
    /// counted but not reported).
    AuthFailed {
        /// The client.
        client: SocketAddr,
        /// Why.
        reason: AuthFailure,
    },
    /// A CreatePermission or ChannelBind named a refused peer (403).
    PeerRefused {
        /// The client.
        client: SocketAddr,
        /// The peer as the client sent it.
        peer: SocketAddr,
        /// Why.
        reason: PeerRefusal,
    },
    /// A request hit a quota (486 or 508).
    QuotaHit {
        /// The client.
        client: SocketAddr,
        /// Which quota.
        quota: QuotaKind,
    },
    /// A reconfiguration removed a permission or channel whose peer the new policy
    /// refuses.
    PeerRevoked {
        /// The allocation.
        id: u64,
        /// The peer's IP (permission) or address (channel).
        peer: SocketAddr,
        /// Why.
        reason: PeerRefusal,
    },
}

/// Counters for metrics, read by the caller whenever it likes
/// ([`super::TurnServer::counters`]). Gauges are the `*_active` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnCounters {
    /// Binding requests answered.
    pub binding_requests: u64,
    /// Allocations now.
    pub allocations_active: u64,
    /// Allocations created.
    pub allocations_created: u64,
    /// Allocations ended by Refresh LIFETIME 0.
    pub allocations_deleted: u64,
    /// Allocations that expired.
    pub allocations_expired: u64,
    /// Allocations ended by their connection closing.
    pub allocations_closed: u64,
    /// Retransmitted Allocates answered from the cached response.
    pub allocate_retransmits: u64,
    /// Permissions now (over all allocations).
    pub permissions_active: u64,
    /// Channel bindings now, including those held after expiry.
    pub channels_active: u64,
    /// Datagrams relayed client → peer.
    pub to_peer_packets: u64,
    /// Bytes relayed client → peer.
    pub to_peer_bytes: u64,
    /// Datagrams relayed peer → client.
    pub to_client_packets: u64,
    /// Bytes relayed peer → client.
    pub to_client_bytes: u64,
    /// Error responses sent (all codes).
    pub error_responses: u64,
    /// Authentication failures by [`AuthFailure::index`].
    pub auth_failures: [u64; AuthFailure::ALL.len()],
    /// Refused peers by [`PeerRefusal::index`] (requests and Send indications).
    pub peers_refused: [u64; PeerRefusal::ALL.len()],
    /// Quota hits by [`QuotaKind::index`].
    pub quota_hits: [u64; QuotaKind::ALL.len()],
    /// Dropped packets by [`DropReason::index`].
    pub dropped: [u64; DropReason::ALL.len()],
    /// Events not queued because the caller did not drain the queue.
    pub events_lost: u64,
}

impl TurnCounters {
    /// Authentication failures for one reason.
    pub fn auth_failure(&self, reason: AuthFailure) -> u64 {
        self.auth_failures.get(reason.index()).copied().unwrap_or(0)
    }

    /// Refused peers for one reason.
    pub fn peer_refused(&self, reason: PeerRefusal) -> u64 {
        self.peers_refused.get(reason.index()).copied().unwrap_or(0)
    }

    /// Quota hits of one kind.
    pub fn quota_hit(&self, quota: QuotaKind) -> u64 {
        self.quota_hits.get(quota.index()).copied().unwrap_or(0)
    }

    /// Drops for one reason.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.index()).copied().unwrap_or(0)
    }

    pub(crate) fn count_auth(&mut self, reason: AuthFailure) {
        if let Some(c) = self.auth_failures.get_mut(reason.index()) {
            *c += 1;
        }
    }

    pub(crate) fn count_refusal(&mut self, reason: PeerRefusal) {
        if let Some(c) = self.peers_refused.get_mut(reason.index()) {
            *c += 1;
        }
    }

    pub(crate) fn count_quota(&mut self, quota: QuotaKind) {
        if let Some(c) = self.quota_hits.get_mut(quota.index()) {
            *c += 1;
        }
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        if let Some(c) = self.dropped.get_mut(reason.index()) {
            *c += 1;
        }
    }
}
