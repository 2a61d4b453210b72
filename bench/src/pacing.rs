//! Fixed-rate schedules for open-loop load (coordinated-omission corrected).
//!
//! Each connection sends on its own fixed schedule: slot `k` is due at
//! `start + offset + k * interval`. When a response comes back late, the next request
//! is sent at once, but its latency is still measured from the slot's due time, so a
//! stall shows up in the percentiles as the clients that would have waited for it
//! (the correction wrk2 makes). Slots that fall before the end of the run but are
//! never sent are counted as `unsent`. Pure: time is an argument.

use std::time::{Duration, Instant};

/// One connection's send schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    first: Instant,
    interval: Duration,
}

impl Schedule {
    /// The schedule of connection `index` of `connections` sharing `total_rate`
    /// requests/s: each sends at `total_rate / connections`, and their first slots
    /// are spread evenly over one interval so the load is smooth, not in bursts.
    pub fn for_connection(
        start: Instant,
        total_rate: f64,
        connections: usize,
        index: usize,
    ) -> Schedule {
        let connections = connections.max(1);
        let per_conn = (total_rate / connections as f64).max(f64::MIN_POSITIVE);
        // Capped so an absurdly low rate cannot overflow Duration.
        let interval = Duration::from_secs_f64((1.0 / per_conn).min(1e6));
        let offset = interval.mul_f64((index % connections) as f64 / connections as f64);
        Schedule {
            first: start + offset,
            interval,
        }
    }

    /// When slot `k` is due.
    pub fn due(&self, k: u64) -> Instant {
        let k = u32::try_from(k).unwrap_or(u32::MAX);
        // Past any run's end (runs are capped at 600 s), so "never" in practice.
        const FAR: Duration = Duration::from_secs(10 * 365 * 86_400);
        self.first
            .checked_add(self.interval.saturating_mul(k).min(FAR))
            .unwrap_or(self.first)
    }

    /// How many slots are due strictly before `end`.
    pub fn slots_before(&self, end: Instant) -> u64 {
        if end <= self.first {
            return 0;
        }
        let span = end.duration_since(self.first).as_nanos();
        let step = self.interval.as_nanos().max(1);
        // Slot k is due at first + k*step < end  <=>  k < span/step; count = ceil.
        u64::try_from(span.div_ceil(step)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_rate() {
        let t0 = Instant::now();
        // 1000 req/s over 10 connections: 100/s each, every 10 ms.
        let s = Schedule::for_connection(t0, 1000.0, 10, 0);
        assert_eq!(s.due(1) - s.due(0), Duration::from_millis(10));
        assert_eq!(s.due(0), t0);
        assert_eq!(s.due(3), t0 + Duration::from_millis(30));
        // In one second: slots 0..=99 are before t0 + 1 s.
        assert_eq!(s.slots_before(t0 + Duration::from_secs(1)), 100);
        assert_eq!(s.slots_before(t0), 0);
    }

    #[test]
    fn connections_are_staggered_and_add_up() {
        let t0 = Instant::now();
        let conns = 7;
        let end = t0 + Duration::from_secs(2);
        let mut total = 0;
        let mut firsts = Vec::new();
        for i in 0..conns {
            let s = Schedule::for_connection(t0, 700.0, conns, i);
            firsts.push(s.due(0));
            total += s.slots_before(end);
        }
        // 700 req/s for 2 s.
        assert!((1399..=1401).contains(&total), "total {total}");
        // Distinct, increasing first slots within one interval.
        assert!(firsts.windows(2).all(|w| w[0] < w[1]));
        assert!(*firsts.last().unwrap_or(&t0) < t0 + Duration::from_millis(70));
    }

    #[test]
    fn tiny_rates_do_not_overflow() {
        let t0 = Instant::now();
        let s = Schedule::for_connection(t0, 0.0, 1, 0);
        assert_eq!(s.slots_before(t0 + Duration::from_secs(600)), 1);
        let _ = s.due(u64::MAX);
    }
}
