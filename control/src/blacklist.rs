//! The blacklist: counting rejects per source address and banning sources that exceed
//! `suspicious_requests_per_min` within a minute, for `blacklist_expiration_min`.
//! [`BlacklistAuthority`] lives on the control thread (the only writer); shards read
//! the immutable [`Blacklist`] from the current snapshot. Time is an argument.
//!
//! Promises: a source with more than `per_min` rejects within any sliding 60 s window
//! is banned (so with 20, the 21st reject in a minute bans); `per_min == 0` or a zero
//! expiration never bans. Memory is bounded: at most 100 000 sources, each
//! with at most `per_min + 1` timestamps; when full, the source least recently seen
//! is forgotten. IPv4-mapped IPv6 addresses count as their IPv4 address.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The window rejects are counted in.
const WINDOW: Duration = Duration::from_secs(60);

/// Most sources tracked (counting or banned) at once.
const MAX_TRACKED: usize = 100_000;

/// `::ffff:a.b.c.d` is `a.b.c.d`: a dual-stack listener must not give a source two
/// counters.
fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The immutable view shards check at accept.
#[derive(Debug, Clone, Default)]
pub struct Blacklist {
    /// Banned source → end of the ban.
    banned: ahash::AHashMap<IpAddr, Instant>,
}

impl Blacklist {
    /// Whether `ip` is banned at `now` (an entry past its expiry is not).
    pub fn contains(&self, ip: IpAddr, now: Instant) -> bool {
        if self.banned.is_empty() {
            return false;
        }
        self.banned
            .get(&normalise(ip))
            .is_some_and(|&until| now < until)
    }
    pub fn len(&self) -> usize {
        self.banned.len()
    }
    pub fn is_empty(&self) -> bool {
        self.banned.is_empty()
    }
}

/// What the authority knows about one source.
#[derive(Debug)]
struct Source {
    /// Stamp of this source's latest entry in `BlacklistAuthority::order`.
    stamp: u64,
    /// Rejects within the window, oldest first (at most `per_min + 1`).
    rejects: VecDeque<Instant>,
    /// End of the ban, if banned.
    banned_until: Option<Instant>,
}

/// The writer side: counts rejects and decides bans.
#[derive(Debug)]
pub struct BlacklistAuthority {
    per_min: u32,
    expiration: Duration,
    sources: ahash::AHashMap<IpAddr, Source>,
    /// Sources in the order they were last seen, oldest first; an entry whose stamp
    /// differs from the source's is stale (the source was seen again later).
    order: VecDeque<(IpAddr, u64)>,
    next_stamp: u64,
    cap: usize,
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
        Self::with_cap(per_min, expiration, MAX_TRACKED)
    }

    fn with_cap(per_min: u32, expiration: Duration, cap: usize) -> Self {
        BlacklistAuthority {
            per_min,
            expiration,
            sources: ahash::AHashMap::new(),
            order: VecDeque::new(),
            next_stamp: 0,
            cap: cap.max(1),
        }
    }

    /// Change the limits (reload); counts and bans stay.
    pub fn set_limits(&mut self, per_min: u32, expiration: Duration) {
        self.per_min = per_min;
        self.expiration = expiration;
    }

    pub fn record_reject(&mut self, ip: IpAddr, now: Instant) -> RejectOutcome {
        if self.per_min == 0 || self.expiration.is_zero() {
            return RejectOutcome::Counted;
        }
        let ip = normalise(ip);
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if !self.sources.contains_key(&ip) {
            while self.sources.len() >= self.cap {
                self.evict_oldest();
            }
        }
        let source = self.sources.entry(ip).or_insert_with(|| Source {
            stamp,
            rejects: VecDeque::new(),
            banned_until: None,
        });
        source.stamp = stamp;
        let outcome = Self::count(source, now, self.per_min, self.expiration);
        self.order.push_back((ip, stamp));
        if self.order.len() > 2 * self.cap {
            let sources = &self.sources;
            self.order
                .retain(|(ip, stamp)| sources.get(ip).is_some_and(|s| s.stamp == *stamp));
        }
        outcome
    }

    fn count(
        source: &mut Source,
        now: Instant,
        per_min: u32,
        expiration: Duration,
    ) -> RejectOutcome {
        match source.banned_until {
            Some(until) if now < until => return RejectOutcome::AlreadyBanned,
            Some(_) => source.banned_until = None,
            None => {}
        }
        while source
            .rejects
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= WINDOW)
        {
            source.rejects.pop_front();
        }
        source.rejects.push_back(now);
        if source.rejects.len() > per_min as usize {
            source.rejects = VecDeque::new();
            // A config-sized expiration fits; saturate rather than panic if not.
            source.banned_until = Some(
                now.checked_add(expiration)
                    .unwrap_or(now + Duration::from_secs(u64::from(u32::MAX))),
            );
            return RejectOutcome::Banned;
        }
        RejectOutcome::Counted
    }

    /// Forget the source seen least recently.
    fn evict_oldest(&mut self) {
        while let Some((ip, stamp)) = self.order.pop_front() {
            if self.sources.get(&ip).is_some_and(|s| s.stamp == stamp) {
                self.sources.remove(&ip);
                return;
            }
        }
        // `order` holds a current entry for every source, so this is unreachable;
        // clear rather than loop if that invariant ever breaks.
        self.sources.clear();
    }

    /// Drop expired bans and stale counts; true when the banned set changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let mut changed = false;
        self.sources.retain(|_, s| {
            if s.banned_until.is_some_and(|until| now >= until) {
                s.banned_until = None;
                changed = true;
            }
            while s
                .rejects
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) >= WINDOW)
            {
                s.rejects.pop_front();
            }
            s.banned_until.is_some() || !s.rejects.is_empty()
        });
        let sources = &self.sources;
        self.order
            .retain(|(ip, stamp)| sources.get(ip).is_some_and(|s| s.stamp == *stamp));
        changed
    }

    /// The immutable view to publish.
    pub fn view(&self) -> Blacklist {
        let banned = self
            .sources
            .iter()
            .filter_map(|(ip, s)| s.banned_until.map(|until| (*ip, until)))
            .collect();
        Blacklist { banned }
    }

    /// Number of sources tracked (counting or banned).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A virtual clock: `t(ms)` is `ms` milliseconds after a fixed origin.
    struct Clock(Instant);
    impl Clock {
        fn new() -> Self {
            Clock(Instant::now())
        }
        fn t(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    const MIN5: Duration = Duration::from_secs(300);

    #[test]
    fn bans_after_more_than_per_min() {
        let c = Clock::new();
        let mut a = BlacklistAuthority::new(20, MIN5);
        let src = ip("192.0.2.1");
        for i in 0..20 {
            assert_eq!(
                a.record_reject(src, c.t(i * 1000)),
                RejectOutcome::Counted,
                "reject {}",
                i + 1
            );
        }
        assert!(!a.view().contains(src, c.t(20_000)));
        assert_eq!(a.record_reject(src, c.t(20_000)), RejectOutcome::Banned);
        let view = a.view();
        assert!(view.contains(src, c.t(20_000)));
        assert!(!view.contains(ip("192.0.2.2"), c.t(20_000)));
        assert_eq!(
            a.record_reject(src, c.t(21_000)),
            RejectOutcome::AlreadyBanned
        );
    }

    #[test]
    fn window_slides() {
        let c = Clock::new();
        let mut a = BlacklistAuthority::new(3, MIN5);
        let src = ip("192.0.2.1");
        // 3 rejects at 0, 10, 20 s; the 4th at 60 s: the first has left the window.
        for ms in [0, 10_000, 20_000, 60_000] {
            assert_eq!(
                a.record_reject(src, c.t(ms)),
                RejectOutcome::Counted,
                "{ms}"
            );
        }
        // Window now holds 10, 20, 60 s: one more before 70 s bans.
        assert_eq!(a.record_reject(src, c.t(69_999)), RejectOutcome::Banned);
        // A steady trickle of one reject every 20 s never bans.
        let other = ip("192.0.2.2");
        for i in 0..100 {
            assert_eq!(
                a.record_reject(other, c.t(i * 20_000)),
                RejectOutcome::Counted
            );
        }
    }

    #[test]
    fn ban_expires() {
        let c = Clock::new();
        let mut a = BlacklistAuthority::new(1, Duration::from_secs(3));
        let src = ip("192.0.2.1");
        a.record_reject(src, c.t(0));
        assert_eq!(a.record_reject(src, c.t(100)), RejectOutcome::Banned);
        let view = a.view();
        assert!(view.contains(src, c.t(3_099)));
        assert!(
            !view.contains(src, c.t(3_100)),
            "the view checks expiry itself"
        );
        assert!(!a.expire(c.t(3_099)));
        assert!(a.expire(c.t(3_100)));
        assert!(a.view().is_empty());
        assert_eq!(a.tracked(), 0);
        // Counting starts afresh.
        assert_eq!(a.record_reject(src, c.t(3_200)), RejectOutcome::Counted);
        assert_eq!(a.record_reject(src, c.t(3_300)), RejectOutcome::Banned);
        // A reject after the ban ended but before expire() ran counts anew.
        assert_eq!(a.record_reject(src, c.t(6_400)), RejectOutcome::Counted);
    }

    #[test]
    fn expire_drops_stale_counts() {
        let c = Clock::new();
        let mut a = BlacklistAuthority::new(5, MIN5);
        a.record_reject(ip("192.0.2.1"), c.t(0));
        a.record_reject(ip("192.0.2.2"), c.t(30_000));
        assert!(!a.expire(c.t(60_000)));
        assert_eq!(a.tracked(), 1);
        assert!(!a.expire(c.t(90_000)));
        assert_eq!(a.tracked(), 0);
    }

    #[test]
    fn zero_limits_never_ban() {
        let c = Clock::new();
        for (per_min, exp) in [(0, MIN5), (5, Duration::ZERO)] {
            let mut a = BlacklistAuthority::new(per_min, exp);
            for i in 0..100 {
                assert_eq!(
                    a.record_reject(ip("192.0.2.1"), c.t(i)),
                    RejectOutcome::Counted
                );
            }
            assert!(a.view().is_empty());
            assert_eq!(a.tracked(), 0);
        }
    }

    #[test]
    fn ipv4_mapped_is_ipv4() {
        let c = Clock::new();
        let mut a = BlacklistAuthority::new(1, MIN5);
        a.record_reject(ip("::ffff:192.0.2.1"), c.t(0));
        assert_eq!(
            a.record_reject(ip("192.0.2.1"), c.t(1)),
            RejectOutcome::Banned
        );
        let view = a.view();
        assert!(view.contains(ip("192.0.2.1"), c.t(2)));
        assert!(view.contains(ip("::ffff:192.0.2.1"), c.t(2)));
        assert!(!view.contains(ip("::192.0.2.1"), c.t(2)));
    }

    #[test]
    fn cap_forgets_the_least_recently_seen() {
        let c = Clock::new();
        let mut a = BlacklistAuthority::with_cap(2, MIN5, 3);
        let (x, y, z, w) = (
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("10.0.0.3"),
            ip("10.0.0.4"),
        );
        a.record_reject(x, c.t(0));
        a.record_reject(y, c.t(1));
        a.record_reject(z, c.t(2));
        a.record_reject(x, c.t(3)); // x seen again: y is now the oldest
        a.record_reject(w, c.t(4)); // full: y is forgotten
        assert_eq!(a.tracked(), 3);
        assert_eq!(
            a.record_reject(x, c.t(5)),
            RejectOutcome::Banned,
            "x kept its count"
        );
        // y starts from zero again (it had one reject).
        assert_eq!(a.record_reject(y, c.t(6)), RejectOutcome::Counted);
        assert_eq!(a.record_reject(y, c.t(7)), RejectOutcome::Counted);
        // Lots of churn keeps both maps bounded.
        for i in 0..10_000u32 {
            a.record_reject(
                IpAddr::from((0x0a00_0000 + i).to_be_bytes()),
                c.t(10 + u64::from(i)),
            );
            assert!(a.tracked() <= 3 && a.order.len() <= 2 * 3 + 1);
        }
    }

    #[test]
    fn per_source_timestamps_stay_bounded() {
        let c = Clock::new();
        let mut a = BlacklistAuthority::new(20, MIN5);
        let src = ip("192.0.2.1");
        for i in 0..1000 {
            a.record_reject(src, c.t(i));
            assert!(a.sources.get(&src).is_some_and(|s| s.rejects.len() <= 21));
        }
    }

    #[test]
    fn limits_change_on_reload() {
        let c = Clock::new();
        let mut a = BlacklistAuthority::new(20, MIN5);
        let src = ip("192.0.2.1");
        for i in 0..5 {
            a.record_reject(src, c.t(i));
        }
        a.set_limits(5, MIN5);
        assert_eq!(a.record_reject(src, c.t(10)), RejectOutcome::Banned);
    }
}
