//! What a load run measured: a latency histogram, counters, and errors by kind, kept
//! per executor thread and merged at the end; and the report printed from them (a
//! human table, or one JSON object with the same fields).
//!
//! Latencies are recorded in nanoseconds (hdrhistogram, 3 significant digits, 1 ns to
//! 10 min) and reported in microseconds. Only successful exchanges are recorded;
//! every failure is counted under its kind (`connect`, `timeout`, `status 503`, …).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histogram holds (larger values saturate at it): the hard cap
/// on a run's duration.
const MAX_LATENCY: Duration = Duration::from_secs(600);

/// Measurements of one executor thread (or of a whole run, after [`Stats::merge`]).
#[derive(Debug, Clone)]
pub struct Stats {
    latency_ns: Histogram<u64>,
    /// Successful exchanges (2xx responses read completely).
    pub ok: u64,
    /// Response bytes read (heads and bodies, successful or not).
    pub bytes_read: u64,
    /// Rate mode: schedule slots that fell before the end of the run but were never
    /// sent because the connection was still behind.
    pub unsent: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 *
        // low, sigfig <= 5); creation cannot fail.
        #[allow(clippy::expect_used)]
        let latency_ns = Histogram::new_with_bounds(1, MAX_LATENCY.as_nanos() as u64, 3)
            .expect("constant histogram bounds are valid");
        Stats {
            latency_ns,
            ok: 0,
            bytes_read: 0,
            unsent: 0,
            errors: BTreeMap::new(),
        }
    }

    /// One successful exchange that took `latency`.
    pub fn record_ok(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.latency_ns.saturating_record(ns);
        self.ok += 1;
    }

    /// One failure of the given kind.
    pub fn record_error(&mut self, kind: &str) {
        match self.errors.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(kind.to_string(), 1);
            }
        }
    }

    /// Total failures of every kind.
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Fold `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        // Both histograms have the same bounds, so adding never fails; if it did, the
        // saturating path below keeps every count anyway.
        if self.latency_ns.add(&other.latency_ns).is_err() {
            for v in other.latency_ns.iter_recorded() {
                self.latency_ns
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.ok += other.ok;
        self.bytes_read += other.bytes_read;
        self.unsent += other.unsent;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_insert(0) += n;
        }
    }

    /// Latency percentiles in microseconds.
    pub fn latency_us(&self) -> Latency {
        let h = &self.latency_ns;
        let at = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        Latency {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p99_9: at(0.999),
            max: if h.is_empty() {
                0.0
            } else {
                h.max() as f64 / 1000.0
            },
            mean: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        }
    }
}

/// Latency summary, microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

/// What was run: the part of a report that does not come from measurements.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub scenario: &'static str,
    pub mode: String,
    pub target: String,
    pub connections: usize,
    pub threads: usize,
    /// Requested total rate (requests/s), or `None` for max-rate.
    pub target_rate: Option<f64>,
}

/// The result of one run, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub info: RunInfo,
    /// Wall time from the start of the load to the end of the last connection.
    pub elapsed_s: f64,
    /// Successful exchanges.
    pub requests: u64,
    /// `requests / elapsed_s`.
    pub rate: f64,
    pub latency_us: Latency,
    pub bytes_read: u64,
    pub unsent: u64,
    pub error_total: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    pub fn new(info: RunInfo, elapsed: Duration, stats: &Stats) -> Report {
        let elapsed_s = elapsed.as_secs_f64();
        Report {
            info,
            elapsed_s,
            requests: stats.ok,
            rate: if elapsed_s > 0.0 {
                stats.ok as f64 / elapsed_s
            } else {
                0.0
            },
            latency_us: stats.latency_us(),
            bytes_read: stats.bytes_read,
            unsent: stats.unsent,
            error_total: stats.error_total(),
            errors: stats.errors.clone(),
        }
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let i = &self.info;
        let rate = match i.target_rate {
            Some(r) => format!("fixed {r:.0} req/s (latency from scheduled send)"),
            None => "max".to_string(),
        };
        let _ = writeln!(
            s,
            "{} {} -> {}: {} connections on {} thread(s), rate {}",
            i.scenario, i.mode, i.target, i.connections, i.threads, rate
        );
        let _ = writeln!(s, "  elapsed      {:>12.3} s", self.elapsed_s);
        let _ = writeln!(s, "  requests     {:>12}", self.requests);
        let _ = writeln!(s, "  rate         {:>12.1} req/s", self.rate);
        let l = &self.latency_us;
        let _ = writeln!(
            s,
            "  latency µs   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (mean {:.1})",
            l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean
        );
        let _ = writeln!(s, "  read         {:>12} bytes", self.bytes_read);
        if i.target_rate.is_some() {
            let _ = writeln!(
                s,
                "  unsent       {:>12} (slots missed: behind schedule)",
                self.unsent
            );
        }
        let _ = writeln!(s, "  errors       {:>12}", self.error_total);
        for (kind, n) in &self.errors {
            let _ = writeln!(s, "    {kind:<20} {n:>8}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_latencies_and_errors() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        for us in 1..=100u64 {
            a.record_ok(Duration::from_micros(us));
        }
        for us in 101..=200u64 {
            b.record_ok(Duration::from_micros(us));
        }
        a.record_error("timeout");
        b.record_error("timeout");
        b.record_error("status 503");
        a.bytes_read = 10;
        b.bytes_read = 5;
        a.merge(&b);
        assert_eq!(a.ok, 200);
        assert_eq!(a.bytes_read, 15);
        assert_eq!(a.errors.get("timeout"), Some(&2));
        assert_eq!(a.errors.get("status 503"), Some(&1));
        assert_eq!(a.error_total(), 3);
        let l = a.latency_us();
        // 3 significant digits: within 0.1 %.
        assert!((l.p50 - 100.0).abs() < 0.2, "p50 {}", l.p50);
        assert!((l.max - 200.0).abs() < 0.3, "max {}", l.max);
    }

    #[test]
    fn empty_stats_report_zeroes() {
        let s = Stats::new();
        let l = s.latency_us();
        assert_eq!(l.p99, 0.0);
        assert_eq!(l.max, 0.0);
        let info = RunInfo {
            scenario: "http",
            mode: "keepalive".into(),
            target: "x".into(),
            connections: 1,
            threads: 1,
            target_rate: None,
        };
        let r = Report::new(info, Duration::ZERO, &s);
        assert_eq!(r.rate, 0.0);
        assert!(serde_json::to_string(&r).is_ok());
    }

    #[test]
    fn huge_latency_saturates() {
        let mut s = Stats::new();
        s.record_ok(Duration::from_secs(10_000));
        assert_eq!(s.ok, 1);
        assert!(s.latency_us().max >= 599_000_000.0);
    }
}
