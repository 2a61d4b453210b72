//! Which peers an allocation may talk to: the rule that keeps the relay from becoming
//! an open door into the private network.
//!
//! "The server MAY impose restrictions on the IP address and port values allowed in the
//! XOR-PEER-ADDRESS attribute; if a value is not allowed, the server rejects the request
//! with a 403 (Forbidden) error" (RFC 8656 §10.2, §12.2), and RFC 8656 §21.3 (and
//! §21.5.1) asks servers not to relay to addresses an attacker could not reach
//! directly. The order here:
//!
//! 1. normalise: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address;
//! 2. refuse whatever `allowed_peers` says: unspecified (`0.0.0.0/8`, `::`), loopback
//!    (unless `allow_loopback_peers`), multicast, link-local, the IPv4 limited broadcast,
//!    and the box's own addresses on any port outside the relay range;
//! 3. require membership of `allowed_peers` (empty: refuse everything).
//!
//! CreatePermission carries no meaningful port ("The port portion of each attribute is
//! ignored", RFC 8656 §10.2), so it is checked with [`PortCheck::IpOnly`], which skips the
//! own-address rule; every datagram the client sends (Send indication, and ChannelBind,
//! which fixes the port for the channel's ChannelData) is checked with the port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::config::{IpNet, PortRange, TurnConfig};

/// Why a peer is refused (403 on requests, a silent drop on Send indications).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRefusal {
    /// `0.0.0.0/8` or `::` (Linux delivers `0.0.0.0` to the local host).
    Unspecified,
    /// `127.0.0.0/8` or `::1`, and `allow_loopback_peers` is off.
    Loopback,
    /// Multicast.
    Multicast,
    /// Link-local (`169.254.0.0/16`, `fe80::/10`).
    LinkLocal,
    /// `255.255.255.255`.
    Broadcast,
    /// One of the box's own addresses, on a port outside the relay range.
    OwnAddress,
    /// Outside every `allowed_peers` network.
    NotAllowed,
}

impl PeerRefusal {
    /// Every reason, in counter order.
    pub const ALL: [PeerRefusal; 7] = [
        PeerRefusal::Unspecified,
        PeerRefusal::Loopback,
        PeerRefusal::Multicast,
        PeerRefusal::LinkLocal,
        PeerRefusal::Broadcast,
        PeerRefusal::OwnAddress,
        PeerRefusal::NotAllowed,
    ];

    /// The position in [`PeerRefusal::ALL`].
    pub const fn index(self) -> usize {
        match self {
            PeerRefusal::Unspecified => 0,
            PeerRefusal::Loopback => 1,
            PeerRefusal::Multicast => 2,
            PeerRefusal::LinkLocal => 3,
            PeerRefusal::Broadcast => 4,
            PeerRefusal::OwnAddress => 5,
            PeerRefusal::NotAllowed => 6,
        }
    }

    /// A short name for metrics labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            PeerRefusal::Unspecified => "unspecified",
            PeerRefusal::Loopback => "loopback",
            PeerRefusal::Multicast => "multicast",
            PeerRefusal::LinkLocal => "link_local",
            PeerRefusal::Broadcast => "broadcast",
            PeerRefusal::OwnAddress => "own_address",
            PeerRefusal::NotAllowed => "not_allowed",
        }
    }
}

/// Whether a check knows the peer's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortCheck {
    /// CreatePermission: the IP alone; the own-address rule waits for the datagrams.
    IpOnly,
    /// A transport address a datagram will be sent to.
    WithPort,
}

/// The peer policy, built from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    allowed: Vec<IpNet>,
    allow_loopback: bool,
    own: Vec<IpAddr>,
    relay_ports: PortRange,
}

/// An IPv4-mapped IPv6 address as the IPv4 address, anything else unchanged.
pub fn normalise(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl PeerPolicy {
    /// The policy of `config`; its relay addresses count as own addresses.
    pub fn new(config: &TurnConfig) -> PeerPolicy {
        let mut own: Vec<IpAddr> = config
            .own_addresses
            .iter()
            .map(|ip| ip.to_canonical())
            .collect();
        own.extend(config.relay_v4.map(IpAddr::V4));
        own.extend(config.relay_v6.map(IpAddr::V6));
        own.sort_unstable();
        own.dedup();
        PeerPolicy {
            allowed: config.allowed_peers.clone(),
            allow_loopback: config.allow_loopback_peers,
            own,
            relay_ports: config.relay_ports,
        }
    }

    /// Checks a peer; answers the normalised address or why it is refused.
    pub fn check(&self, peer: SocketAddr, port: PortCheck) -> Result<SocketAddr, PeerRefusal> {
        let peer = normalise(peer);
        let ip = peer.ip();
        if let Some(refusal) = special(ip) {
            if !(refusal == PeerRefusal::Loopback && self.allow_loopback) {
                return Err(refusal);
            }
        }
        // With allow_loopback_peers the whole loopback is open (the test setups run the
        // box and the peers on 127.0.0.1), so the own-address rule skips it.
        let loopback_allowed = self.allow_loopback && ip.is_loopback();
        if port == PortCheck::WithPort
            && !loopback_allowed
            && self.own.contains(&ip)
            && !self.relay_ports.contains(peer.port())
        {
            return Err(PeerRefusal::OwnAddress);
        }
        if !self.allowed.iter().any(|net| net.contains(ip)) {
            return Err(PeerRefusal::NotAllowed);
        }
        Ok(peer)
    }
}

/// The classes refused whatever `allowed_peers` says (for a normalised address).
fn special(ip: IpAddr) -> Option<PeerRefusal> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if a == 0 {
                Some(PeerRefusal::Unspecified)
            } else if v4.is_loopback() {
                Some(PeerRefusal::Loopback)
            } else if v4.is_multicast() {
                Some(PeerRefusal::Multicast)
            } else if a == 169 && b == 254 {
                Some(PeerRefusal::LinkLocal)
            } else if v4 == Ipv4Addr::BROADCAST {
                Some(PeerRefusal::Broadcast)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_unspecified() {
                Some(PeerRefusal::Unspecified)
            } else if v6.is_loopback() {
                Some(PeerRefusal::Loopback)
            } else if v6.is_multicast() {
                Some(PeerRefusal::Multicast)
            } else if first & 0xFFC0 == 0xFE80 {
                Some(PeerRefusal::LinkLocal)
            } else {
                None
            }
        }
    }
}
