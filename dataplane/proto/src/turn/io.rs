//! The seam between the pure server and the I/O layer: how a client is identified
//! ([`FiveTuple`]) and how relay ports are bound ([`RelayIo`], implemented by the caller).

use std::net::{IpAddr, SocketAddr};

/// The transport between client and server (RFC 8656 §3.1: UDP, TCP or TLS-over-TCP;
/// the relayed side is always UDP here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: one STUN message or ChannelData per datagram.
    Udp,
    /// TCP: a stream framed with [`crate::stun::frame_len`]; ChannelData padded.
    Tcp,
    /// TLS over TCP: as TCP.
    Tls,
}

impl Transport {
    /// Whether ChannelData to the client must be padded to a multiple of 4 bytes
    /// (RFC 8656 §12.5).
    pub const fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// "The 5-tuple (client IP address, client port, server IP address, server port, and
/// transport protocol) ... uniquely identifies the allocation" (RFC 8656 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// The client's address as the server sees it (its server-reflexive address).
    pub client: SocketAddr,
    /// The server's address the client talks to (the listening socket's local address).
    pub server_local: SocketAddr,
    /// The transport.
    pub transport: Transport,
}

impl FiveTuple {
    /// The same 5-tuple with IPv4-mapped IPv6 addresses written as IPv4, so a dual-stack
    /// socket and an IPv4 socket name a client alike.
    pub fn canonical(self) -> FiveTuple {
        FiveTuple {
            client: SocketAddr::new(self.client.ip().to_canonical(), self.client.port()),
            server_local: SocketAddr::new(
                self.server_local.ip().to_canonical(),
                self.server_local.port(),
            ),
            transport: self.transport,
        }
    }
}

/// Which port the server asks for (RFC 8656 §7.2, EVEN-PORT and RESERVATION-TOKEN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRequest {
    /// Any free port in the relay range.
    Any,
    /// An even port; with `reserve_next`, also bind the next-higher port and hold it (its
    /// address comes back in [`BoundRelay::reserved_next`]).
    Even {
        /// The R bit of EVEN-PORT.
        reserve_next: bool,
    },
    /// The port reserved earlier by an `Even { reserve_next: true }` request: the caller
    /// hands over the socket it has been holding at this address.
    Reserved(SocketAddr),
}

/// What [`RelayIo::bind`] bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundRelay {
    /// The relayed transport address: the relay socket's address, put in
    /// XOR-RELAYED-ADDRESS, given back in [`super::ClientAction::ToPeer`] and passed to
    /// [`super::TurnServer::handle_peer`].
    pub addr: SocketAddr,
    /// For `Even { reserve_next: true }`: the next-higher port, bound and held until
    /// the server asks for it with [`PortRequest::Reserved`] or gives it back with
    /// [`RelayIo::release`].
    pub reserved_next: Option<SocketAddr>,
}

/// Why no relay port could be bound (the server answers 508 Insufficient Capacity).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// Every port of the range is taken (or no even pair is free).
    #[error("no free relay port")]
    NoFreePort,
    /// The reserved address is not held (any more).
    #[error("no reservation held at this address")]
    NotReserved,
    /// The operating system refused (file descriptors, address not local, …).
    #[error("the relay socket could not be created")]
    Os,
}

/// Relay sockets, owned by the I/O layer (a glommio shard). The server calls `bind` while
/// answering an Allocate and `release` when an allocation or reservation ends; both run
/// synchronously inside [`super::TurnServer`] calls, so an implementation binds a
/// non-blocking socket (or takes one from a pre-bound pool) and returns at once.
pub trait RelayIo {
    /// Binds a UDP socket on `ip` (the configured relay address of the family) and a
    /// port of the relay range as `request` says.
    fn bind(&mut self, ip: IpAddr, request: PortRequest) -> Result<BoundRelay, BindError>;

    /// Closes the relay socket (or held reservation) at `relay`. Called once per address
    /// [`RelayIo::bind`] returned.
    fn release(&mut self, relay: SocketAddr);
}
