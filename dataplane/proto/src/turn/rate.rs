//! Token buckets on a virtual clock: the bandwidth cap of an allocation and the budget
//! of 401 answers per client IP.
//!
//! Both are GCRA (the "virtual scheduling" form of a token bucket): one theoretical
//! arrival time per bucket, no floating point, no timer. A packet of cost `c` passes
//! when the bucket's debt after it, `tat + c - now`, stays within the tolerance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::config::AuthRateLimit;

/// One bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Gcra {
    tat: Option<Instant>,
}

impl Gcra {
    /// Whether a packet of `cost` passes with a burst `tolerance`; charges it if so.
    pub(crate) fn allow(&mut self, now: Instant, cost: Duration, tolerance: Duration) -> bool {
        if !self.would_allow(now, cost, tolerance) {
            return false;
        }
        let tat = self.tat.map_or(now, |t| t.max(now));
        self.tat = Some(tat.checked_add(cost).unwrap_or(tat));
        true
    }

    /// Whether a packet of `cost` would pass, without charging.
    pub(crate) fn would_allow(&self, now: Instant, cost: Duration, tolerance: Duration) -> bool {
        let tat = self.tat.map_or(now, |t| t.max(now));
        let debt = tat.saturating_duration_since(now).saturating_add(cost);
        debt <= tolerance
    }

    /// Whether the bucket is full again (it carries no information then).
    fn is_idle(&self, now: Instant) -> bool {
        match self.tat {
            None => true,
            Some(t) => t <= now,
        }
    }
}

/// The bandwidth cap of one allocation: `rate` bytes per second, a burst of one
/// second's worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bandwidth {
    bucket: Gcra,
    nanos_per_byte_x1024: u64,
}

const SECOND: Duration = Duration::from_secs(1);

impl Bandwidth {
    pub(crate) fn new(bytes_per_sec: u64) -> Bandwidth {
        // Fixed point (1/1024 ns per byte) so rates above 1 GB/s keep a non-zero cost.
        let nanos_per_byte_x1024 = (1_000_000_000u64 * 1024) / bytes_per_sec.max(1);
        Bandwidth {
            bucket: Gcra::default(),
            nanos_per_byte_x1024,
        }
    }

    /// Charges `bytes`; false (and nothing charged) when over the cap.
    pub(crate) fn allow(&mut self, now: Instant, bytes: usize) -> bool {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let nanos = bytes.saturating_mul(self.nanos_per_byte_x1024) / 1024;
        self.bucket.allow(now, Duration::from_nanos(nanos), SECOND)
    }
}

/// Per-IP budgets of 401 answers, in a bounded table.
#[derive(Debug)]
pub(crate) struct AuthLimiter {
    limit: AuthRateLimit,
    table: HashMap<IpAddr, Gcra>,
    /// The bucket IPs share when the table is full of busy IPs.
    overflow: Gcra,
    last_sweep: Option<Instant>,
}

impl AuthLimiter {
    pub(crate) fn new(limit: AuthRateLimit) -> AuthLimiter {
        AuthLimiter {
            limit,
            table: HashMap::new(),
            overflow: Gcra::default(),
            last_sweep: None,
        }
    }

    pub(crate) fn set_limit(&mut self, limit: AuthRateLimit) {
        self.limit = limit;
    }

    fn tolerance(&self) -> Duration {
        self.limit.interval.saturating_mul(self.limit.burst)
    }

    /// Whether `ip` may still be answered with a 401 (checked before verifying anything,
    /// so a spent budget also stops password guessing).
    pub(crate) fn would_allow(&self, now: Instant, ip: IpAddr) -> bool {
        let (interval, tolerance) = (self.limit.interval, self.tolerance());
        match self.table.get(&ip) {
            Some(bucket) => bucket.would_allow(now, interval, tolerance),
            // A new IP starts with a full bucket, unless the table is full.
            None if self.table.len() < self.limit.table_size => {
                Gcra::default().would_allow(now, interval, tolerance)
            }
            None => self.overflow.would_allow(now, interval, tolerance),
        }
    }

    /// Charges one 401 to `ip`; false when the budget is spent (the 401 is not sent).
    pub(crate) fn charge(&mut self, now: Instant, ip: IpAddr) -> bool {
        let interval = self.limit.interval;
        let tolerance = self.tolerance();
        if !self.table.contains_key(&ip) && self.table.len() >= self.limit.table_size {
            self.sweep(now);
        }
        if let Some(bucket) = self.table.get_mut(&ip) {
            return bucket.allow(now, interval, tolerance);
        }
        if self.table.len() < self.limit.table_size {
            let mut bucket = Gcra::default();
            let ok = bucket.allow(now, interval, tolerance);
            self.table.insert(ip, bucket);
            return ok;
        }
        self.overflow.allow(now, interval, tolerance)
    }

    /// Forgets idle buckets, at most once a second (the sweep is linear in the table).
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SECOND)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.table.retain(|_, b| !b.is_idle(now));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = Gcra::default();
        let cost = Duration::from_millis(100);
        let tol = Duration::from_millis(300);
        assert!(b.allow(t0, cost, tol));
        assert!(b.allow(t0, cost, tol));
        assert!(b.allow(t0, cost, tol));
        assert!(!b.allow(t0, cost, tol));
        assert!(!b.allow(t0 + Duration::from_millis(99), cost, tol));
        assert!(b.allow(t0 + Duration::from_millis(100), cost, tol));
        assert!(b.allow(t0 + Duration::from_secs(10), cost, tol));
    }

    #[test]
    fn bandwidth_cap() {
        let t0 = Instant::now();
        let mut bw = Bandwidth::new(10_000);
        assert!(bw.allow(t0, 6_000));
        assert!(bw.allow(t0, 4_000));
        assert!(!bw.allow(t0, 1));
        assert!(bw.allow(t0 + Duration::from_millis(100), 1_000));
        assert!(!bw.allow(t0 + Duration::from_millis(100), 100));
        // Huge rates and sizes do not overflow.
        let mut fast = Bandwidth::new(u64::MAX);
        assert!(fast.allow(t0, usize::MAX));
    }

    #[test]
    fn limiter_table_is_bounded() {
        let t0 = Instant::now();
        let mut l = AuthLimiter::new(AuthRateLimit {
            burst: 2,
            interval: Duration::from_secs(1),
            table_size: 4,
        });
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        assert!(l.would_allow(t0, ip(1)));
        assert!(l.charge(t0, ip(1)));
        assert!(l.charge(t0, ip(1)));
        assert!(!l.would_allow(t0, ip(1)));
        assert!(!l.charge(t0, ip(1)));
        assert!(l.would_allow(t0, ip(2)));
        for n in 2..=4 {
            assert!(l.charge(t0, ip(n)));
        }
        assert_eq!(l.len(), 4);
        // Full: new IPs share the overflow bucket.
        assert!(l.charge(t0, ip(5)));
        assert!(l.charge(t0, ip(6)));
        assert!(!l.charge(t0, ip(7)));
        assert_eq!(l.len(), 4);
        // Later the idle entries are swept and new IPs get their own bucket again.
        let later = t0 + Duration::from_secs(10);
        assert!(l.charge(later, ip(8)));
        assert_eq!(l.len(), 1);
        assert!(l.would_allow(later, ip(1)));
    }
}
