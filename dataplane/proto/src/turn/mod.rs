//! The STUN/TURN server as a sans-I/O state machine (RFC 8489, RFC 8656): one
//! [`TurnServer`] per shard, single-threaded, no locks, no clock reads, no sockets.
//!
//! What this module owns: Binding answers; the long-term credential mechanism (static
//! users and TURN REST usernames together, MESSAGE-INTEGRITY and
//! MESSAGE-INTEGRITY-SHA256, USERHASH, stateless nonces, a per-IP budget of 401s);
//! allocations, permissions and channel bindings with their exact timers; EVEN-PORT
//! reservations; dual-stack allocations; the peer policy ([`PeerPolicy`]); quotas and the
//! bandwidth cap; and everything counted or logged about them ([`TurnCounters`],
//! [`TurnEvent`]).
//!
//! What lives elsewhere: the wire format is [`crate::stun`] (messages, attributes,
//! integrity, nonces, ChannelData, stream framing). Sockets, stream framing, timers and
//! the DF bit belong to the I/O layer (the glommio shards of `portico-dataplane`), which
//! also implements [`RelayIo`] to bind relay ports. Which users, secrets and networks
//! exist is the control plane's ([`TurnConfig`], built from `[turn]`).
//!
//! Promises: nothing reachable from network bytes panics; memory is bounded by the
//! quotas (allocations, permissions and channels per allocation, reservations, the 401
//! table, the event queue); the ChannelData paths (client → peer and peer → client on a
//! bound channel) allocate nothing and copy nothing; a Data indication is written into
//! the caller's reused buffer.
//!
//! # Calling convention (for the I/O layer)
//!
//! Time is an argument: `now: Instant` from the shard's clock on every call;
//! [`ClockAnchor`] ties it to UNIX time once, for nonces and REST expiry.
//!
//! ```text
//! let mut turn = TurnServer::new(config, secret, ClockAnchor { instant, unix_secs });
//! let mut out = Vec::with_capacity(1500);      // reused for every answer
//!
//! // a datagram on the UDP listener (or one frame cut by stun::frame_len on TCP/TLS):
//! match turn.handle_client(now, five, &buf[..n], &mut relays, &mut out) {
//!     ClientAction::Reply => send(five, &out),
//!     ClientAction::ToPeer { relay, peer, payload, dont_fragment } =>
//!         relay_socket(relay).send_to(&buf[payload], peer /* DF if dont_fragment */),
//!     ClientAction::Drop(_) => {}               // already counted
//! }
//!
//! // a datagram on a relay socket:
//! match turn.handle_peer(now, relay_addr, peer, &buf[..n], &mut out) {
//!     PeerAction::ToClientChannel { five, header, padding, .. } =>
//!         send_vectored(five, &[&header, &buf[..n], &[0; 3][..padding]]),
//!     PeerAction::ToClient { five } => send(five, &out),   // a Data indication
//!     PeerAction::Drop(_) => {}
//! }
//!
//! // timers: sleep until turn.next_deadline(), then
//! turn.on_tick(now, &mut relays, &mut events);   // expiries; releases relay ports
//! // after every batch of packets:
//! turn.take_events(&mut events);                 // log lines, per-event metrics
//! // a TCP/TLS connection closed:
//! turn.client_closed(now, five, &mut relays);
//! // a reload:
//! turn.reconfigure(new_config);
//! // metrics: turn.counters()
//! ```
//!
//! `relays` is the caller's [`RelayIo`]: `bind` opens a UDP socket on the given relay
//! IP and a port of `relay_ports` (even, with the next one held, for EVEN-PORT; or
//! hands over a held one for RESERVATION-TOKEN) and returns its address, which is the
//! key in every later [`ClientAction::ToPeer`] and [`TurnServer::handle_peer`] call;
//! `release` closes it. A TCP/TLS client's allocation lives on the shard of its
//! connection; a UDP client's on the shard the kernel's SO_REUSEPORT hash picked, so a
//! 5-tuple always meets its allocation.
//!
//! # Decisions
//!
//! - A retransmitted Allocate (same 5-tuple and transaction ID) is answered from the
//!   cached response before authentication, so a nonce that went stale in between does
//!   not turn a retransmission into 438 and then 437.
//! - 401s are budgeted per client IP (a GCRA token bucket, 64 burst, 10 per second by
//!   default, in a bounded table). Beyond the budget, requests from 5-tuples without an
//!   allocation are dropped unanswered before any key is tried: STUN has no "slow down"
//!   code, a dropped request is retransmitted by the client, and the attacker learns
//!   nothing from a guess.
//! - A permission's IP is checked without the port; every datagram to a peer (Send) and
//!   every channel (whose port is fixed) is checked with it, so the box's own addresses
//!   are reachable only on relay ports (client-to-client through two allocations).
//! - USERHASH names static users only (a REST username cannot be looked up by its hash).
//! - Refresh acts on the whole allocation, dual-stack or not.
//! - Quotas are per shard.
//!
//! Not supported: TURN over DTLS, TCP relaying (RFC 6062), ALTERNATE-SERVER redirection,
//! ICMP relaying (the I/O layer would have to read the error queue), the 438 "MAY include
//! MESSAGE-INTEGRITY" option.

mod allocation;
mod auth;
mod config;
mod event;
mod io;
mod ledger;
mod policy;
mod rate;
mod server;

#[cfg(test)]
mod tests;

pub use config::{AuthRateLimit, IpNet, IpNetError, Lifetimes, PortRange, Quotas, TurnConfig};
pub use event::{
    AuthFailure, DropReason, EndReason, QuotaKind, RelayAddrs, TrafficStats, TurnCounters,
    TurnEvent,
};
pub use io::{BindError, BoundRelay, FiveTuple, PortRequest, RelayIo, Transport};
pub use ledger::QuotaLedger;
pub use policy::{normalise, PeerPolicy, PeerRefusal, PortCheck};
pub use server::{ClientAction, ClockAnchor, PeerAction, TurnServer};
