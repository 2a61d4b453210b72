//! The blacklist: counting rejects per source address and banning sources that exceed
//! `suspicious_requests_per_min` within a minute, for `blacklist_expiration_min`.
//! [`BlacklistAuthority`] lives on the control thread (the only writer); shards read
//! the immutable [`Blacklist`] from the current snapshot. Time is an argument.
//!
//! SKELETON: types fixed, logic being written.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The immutable view shards check at accept.
#[derive(Debug, Clone, Default)]
pub struct Blacklist {
    banned: ahash::AHashMap<IpAddr, Instant>,
}

impl Blacklist {
    /// Whether `ip` is banned at `now` (an entry past its expiry is not).
    pub fn contains(&self, ip: IpAddr, now: Instant) -> bool {
        let _ = (ip, now);
        false
    }
    pub fn len(&self) -> usize {
        self.banned.len()
    }
    pub fn is_empty(&self) -> bool {
        self.banned.is_empty()
    }
}

/// The writer side: counts rejects and decides bans.
#[derive(Debug)]
pub struct BlacklistAuthority {
    per_min: u32,
    expiration: Duration,
}

/// What recording a reject did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectOutcome {
    /// Counted; the source stays allowed.
    Counted,
    /// This reject put the source on the blacklist.
    Banned,
    /// The source was already banned.
    AlreadyBanned,
}

impl BlacklistAuthority {
    pub fn new(per_min: u32, expiration: Duration) -> Self {
        BlacklistAuthority { per_min, expiration }
    }
    /// Change the limits (reload); counts and bans stay.
    pub fn set_limits(&mut self, per_min: u32, expiration: Duration) {
        self.per_min = per_min;
        self.expiration = expiration;
    }
    pub fn record_reject(&mut self, ip: IpAddr, now: Instant) -> RejectOutcome {
        let _ = (ip, now);
        RejectOutcome::Counted
    }
    /// Drop expired bans and stale counts; true when the banned set changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let _ = now;
        false
    }
    /// The immutable view to publish.
    pub fn view(&self) -> Blacklist {
        Blacklist::default()
    }
}
