//! One allocation's state: its relayed addresses and lifetime (RFC 8656 §2.2, §7), its
//! permissions (§9) and channel bindings (§12), its bandwidth bucket and traffic.
//!
//! Everything time-dependent is stored as an expiry instant and judged against `now`
//! when read, so a lookup between two ticks is exact: a permission that expired 1 ns
//! ago no longer lets a datagram through even if the sweep has not run yet.
//!
//! Permissions and channels live in small vectors searched linearly: the quotas bound
//! them (32 by default), the scan touches a few cache lines, and nothing is allocated on
//! the relay paths.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stun::TransactionId;

use super::event::{RelayAddrs, TrafficStats};
use super::io::FiveTuple;
use super::rate::Bandwidth;

/// "A permission is identified by an IP address ... the port number is ignored"
/// (RFC 8656 §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Permission {
    pub(crate) ip: IpAddr,
    pub(crate) expires: Instant,
}

/// A channel binding (RFC 8656 §12). Active while `expires > now`; then held for the
/// reuse hold (its number and peer cannot be bound to anything else), then gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelBinding {
    pub(crate) number: u16,
    pub(crate) peer: SocketAddr,
    pub(crate) expires: Instant,
}

#[derive(Debug)]
pub(crate) struct Allocation {
    pub(crate) id: u64,
    pub(crate) five: FiveTuple,
    pub(crate) user: Arc<str>,
    pub(crate) relays: RelayAddrs,
    pub(crate) created: Instant,
    pub(crate) expires: Instant,
    /// DONT-FRAGMENT was in the Allocate: ChannelData is sent with DF set.
    pub(crate) dont_fragment: bool,
    pub(crate) permissions: Vec<Permission>,
    pub(crate) channels: Vec<ChannelBinding>,
    pub(crate) bandwidth: Option<Bandwidth>,
    pub(crate) traffic: TrafficStats,
    /// The Allocate that created it and its response, for retransmissions (RFC 8656
    /// §7.2).
    pub(crate) allocate_txid: TransactionId,
    pub(crate) allocate_response: Vec<u8>,
    /// The time of this allocation's live timer entry, if any.
    pub(crate) scheduled: Option<Instant>,
}

impl Allocation {
    pub(crate) fn is_live(&self, now: Instant) -> bool {
        self.expires > now
    }

    pub(crate) fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions
            .iter()
            .any(|p| p.ip == ip && p.expires > now)
    }

    /// The peer of an active channel.
    pub(crate) fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.channels
            .iter()
            .find(|c| c.number == number && c.expires > now)
            .map(|c| c.peer)
    }

    /// The active channel bound to `peer`.
    pub(crate) fn channel_of(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        self.channels
            .iter()
            .find(|c| c.peer == peer && c.expires > now)
            .map(|c| c.number)
    }

    /// Installs or refreshes the permission for `ip`; true if it is new.
    pub(crate) fn install_permission(&mut self, ip: IpAddr, expires: Instant) -> bool {
        if let Some(p) = self.permissions.iter_mut().find(|p| p.ip == ip) {
            p.expires = p.expires.max(expires);
            return false;
        }
        self.permissions.push(Permission { ip, expires });
        true
    }

    /// Removes expired permissions and channels past their reuse hold; returns how many
    /// of each.
    pub(crate) fn sweep(&mut self, now: Instant, hold: Duration) -> (usize, usize) {
        let perms = self.permissions.len();
        self.permissions.retain(|p| p.expires > now);
        let chans = self.channels.len();
        self.channels.retain(|c| release_time(c, hold) > now);
        (perms - self.permissions.len(), chans - self.channels.len())
    }

    /// When something in this allocation next needs the sweep.
    pub(crate) fn next_deadline(&self, hold: Duration) -> Instant {
        let perms = self.permissions.iter().map(|p| p.expires);
        let chans = self.channels.iter().map(|c| release_time(c, hold));
        perms.chain(chans).fold(self.expires, Instant::min)
    }
}

/// When a channel's number and peer become free again.
fn release_time(c: &ChannelBinding, hold: Duration) -> Instant {
    c.expires.checked_add(hold).unwrap_or(c.expires)
}
