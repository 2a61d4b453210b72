//! Metrics: what a shard counts, how the control thread keeps and merges it, and the
//! control thread's own figures.
//!
//! Owns: [`ShardMetrics`], the plain (single-threaded, no atomics) counters, gauges and
//! hdrhistogram timings one shard keeps; [`MetricsStore`], where the control thread
//! keeps the latest copy from every shard plus its own [`ControlMetrics`]. Encoding
//! them for Prometheus and serving `GET /metrics` live in [`crate::scrape`].
//!
//! The mechanism: a shard owns one `ShardMetrics`, updates it in place on its hot path
//! and, every second (and when it drains), sends a clone to the control thread as
//! [`crate::event::Event::Metrics`]. Values are cumulative since the shard started, so
//! a clone lost to a full queue loses nothing: the next one carries it. A scrape adds
//! the shards' latest copies together (counters and gauges are summed, histograms
//! added).
//!
//! Promises: updating a `ShardMetrics` never allocates, except the first time a
//! (histogram, service) pair is observed (its buckets) and the first time a (host,
//! service, target) triple is forwarded to (its table entry); counters saturate rather
//! than wrap or panic.
//!
//! Adding metrics (a later protocol): a per-service counter, gauge or timing is one
//! variant of [`Counter`], [`Gauge`] or [`Hist`] with its name and help text (merging
//! and encoding follow from the tables); a shard-wide counter is a variant of
//! [`Total`]; a new service is a variant of [`Service`]. Anything with labels of its own
//! is a field of `ShardMetrics`, a line in [`ShardMetrics::merge`] and a block in
//! `scrape.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use portico_proto::turn::TurnCounters;

/// Add `b`'s TURN counters into `a` (every field is a count or a gauge summed over
/// shards).
fn merge_turn(a: &mut TurnCounters, b: &TurnCounters) {
    fn add(x: &mut u64, y: u64) {
        *x = x.saturating_add(y);
    }
    fn add_all(a: &mut [u64], b: &[u64]) {
        for (x, y) in a.iter_mut().zip(b) {
            *x = x.saturating_add(*y);
        }
    }
    add(&mut a.binding_requests, b.binding_requests);
    add(&mut a.allocations_active, b.allocations_active);
    add(&mut a.allocations_created, b.allocations_created);
    add(&mut a.allocations_deleted, b.allocations_deleted);
    add(&mut a.allocations_expired, b.allocations_expired);
    add(&mut a.allocations_closed, b.allocations_closed);
    add(&mut a.allocate_retransmits, b.allocate_retransmits);
    add(&mut a.permissions_active, b.permissions_active);
    add(&mut a.channels_active, b.channels_active);
    add(&mut a.to_peer_packets, b.to_peer_packets);
    add(&mut a.to_peer_bytes, b.to_peer_bytes);
    add(&mut a.to_client_packets, b.to_client_packets);
    add(&mut a.to_client_bytes, b.to_client_bytes);
    add(&mut a.error_responses, b.error_responses);
    add_all(&mut a.auth_failures, &b.auth_failures);
    add_all(&mut a.peers_refused, &b.peers_refused);
    add_all(&mut a.quota_hits, &b.quota_hits);
    add_all(&mut a.dropped, &b.dropped);
    add(&mut a.events_lost, b.events_lost);
}

/// The services a connection is accepted for (the listener it came in on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Http,
    Https,
    Ldap,
    Ldaps,
    Sip,
    Sips,
    H323,
    H323Tls,
}

impl Service {
    pub const ALL: [Service; 8] = [
        Service::Http,
        Service::Https,
        Service::Ldap,
        Service::Ldaps,
        Service::Sip,
        Service::Sips,
        Service::H323,
        Service::H323Tls,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The `service` label value (the `[proxy.listen]` key).
    pub fn name(self) -> &'static str {
        match self {
            Service::Http => "http",
            Service::Https => "https",
            Service::Ldap => "ldap",
            Service::Ldaps => "ldaps",
            Service::Sip => "sip",
            Service::Sips => "sips",
            Service::H323 => "h323",
            Service::H323Tls => "h323_tls",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a request or connection was refused: a small fixed set, so the label stays
/// bounded whatever the peer sends (the log line carries the details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// The routing key names no configured host.
    NoHost,
    /// The host has no rule for this request.
    NoRule,
    /// The request could not be parsed.
    Malformed,
    /// Request smuggling: conflicting or doubled framing headers.
    Smuggling,
    /// No routing decision within the buffer limit.
    TooLarge,
    /// No routing decision in time.
    Timeout,
    /// The target refused the connection (or closed it at once).
    TargetRefused,
    /// The target did not answer the connection attempt in time.
    TargetTimeout,
    /// Any other failure on the target side (TLS to the target, reset, ...).
    TargetError,
    /// The client's TLS handshake failed.
    TlsHandshake,
    /// The source is blacklisted (closed at accept).
    Blacklisted,
}

impl RejectKind {
    pub const ALL: [RejectKind; 11] = [
        RejectKind::NoHost,
        RejectKind::NoRule,
        RejectKind::Malformed,
        RejectKind::Smuggling,
        RejectKind::TooLarge,
        RejectKind::Timeout,
        RejectKind::TargetRefused,
        RejectKind::TargetTimeout,
        RejectKind::TargetError,
        RejectKind::TlsHandshake,
        RejectKind::Blacklisted,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The `reason` label value.
    pub fn name(self) -> &'static str {
        match self {
            RejectKind::NoHost => "no_host",
            RejectKind::NoRule => "no_rule",
            RejectKind::Malformed => "malformed",
            RejectKind::Smuggling => "smuggling",
            RejectKind::TooLarge => "too_large",
            RejectKind::Timeout => "timeout",
            RejectKind::TargetRefused => "target_refused",
            RejectKind::TargetTimeout => "target_timeout",
            RejectKind::TargetError => "target_error",
            RejectKind::TlsHandshake => "tls_handshake",
            RejectKind::Blacklisted => "blacklisted",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which way relayed bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    ClientToTarget,
    TargetToClient,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::ClientToTarget, Direction::TargetToClient];

    /// The `direction` label value.
    pub fn name(self) -> &'static str {
        match self {
            Direction::ClientToTarget => "client_to_target",
            Direction::TargetToClient => "target_to_client",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Per-service counters (exported with a `service` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Connections accepted (including those closed at once for the blacklist).
    Accepted,
    /// Routing decisions that forwarded: HTTP requests, or connections of the
    /// protocols routed once per connection (SIP, LDAP, H.323).
    Forwarded,
    /// Client TLS handshakes completed.
    TlsHandshakes,
    /// Client TLS handshakes that failed.
    TlsHandshakeFailures,
    /// Connections closed at accept because the source is blacklisted.
    BlacklistHits,
    /// SIP connections whose first request was neither REGISTER nor INVITE (still
    /// routed by its From domain).
    OtherFirstRequest,
    /// HTTP requests sent on an idle target connection taken from the shard's pool
    /// (opened for an earlier client connection).
    TargetReused,
}

impl Counter {
    pub const ALL: [Counter; 7] = [
        Counter::Accepted,
        Counter::Forwarded,
        Counter::TlsHandshakes,
        Counter::TlsHandshakeFailures,
        Counter::BlacklistHits,
        Counter::OtherFirstRequest,
        Counter::TargetReused,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// Metric name after `portico_`, without the `_total` the encoder appends.
    pub fn metric_name(self) -> &'static str {
        match self {
            Counter::Accepted => "connections_accepted",
            Counter::Forwarded => "forwarded",
            Counter::TlsHandshakes => "tls_handshakes",
            Counter::TlsHandshakeFailures => "tls_handshake_failures",
            Counter::BlacklistHits => "blacklist_hits",
            Counter::OtherFirstRequest => "sip_other_first_requests",
            Counter::TargetReused => "target_connections_reused",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Counter::Accepted => "Client connections accepted, by service.",
            Counter::Forwarded => "Routing decisions that forwarded (HTTP requests; connections for the other services), by service.",
            Counter::TlsHandshakes => "Client TLS handshakes completed, by service.",
            Counter::TlsHandshakeFailures => "Client TLS handshakes that failed, by service.",
            Counter::BlacklistHits => "Connections closed at accept because the source is blacklisted, by service.",
            Counter::OtherFirstRequest => "SIP connections whose first request was neither REGISTER nor INVITE (routed by From all the same), by service.",
            Counter::TargetReused => "HTTP requests sent on an idle target connection from the shard's pool (opened for an earlier client connection), by service.",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Per-service gauges (exported with a `service` label). A shard's value goes up and
/// down by one as things open and close; the merged value is the sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gauge {
    /// Client connections open.
    ActiveConnections,
    /// Connections relayed as opaque tunnels (upgraded HTTP, routed SIP/LDAP/H.323).
    ActiveTunnels,
}

impl Gauge {
    pub const ALL: [Gauge; 2] = [Gauge::ActiveConnections, Gauge::ActiveTunnels];
    pub const COUNT: usize = Self::ALL.len();

    /// Metric name after `portico_`.
    pub fn metric_name(self) -> &'static str {
        match self {
            Gauge::ActiveConnections => "active_connections",
            Gauge::ActiveTunnels => "active_tunnels",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Gauge::ActiveConnections => "Client connections open, by service.",
            Gauge::ActiveTunnels => {
                "Connections relayed as tunnels (upgraded or routed once), by service."
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Per-service timings (exported as histograms in seconds with a `service` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hist {
    /// From the connection (or request) start to the routing decision.
    RoutingDecision,
    /// Opening the connection to the target (TCP, and TLS when the target leg is TLS).
    TargetConnect,
    /// The client's TLS handshake.
    TlsHandshake,
}

impl Hist {
    pub const ALL: [Hist; 3] = [
        Hist::RoutingDecision,
        Hist::TargetConnect,
        Hist::TlsHandshake,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// Metric name after `portico_`, without the `_seconds` unit suffix.
    pub fn metric_name(self) -> &'static str {
        match self {
            Hist::RoutingDecision => "routing_decision",
            Hist::TargetConnect => "target_connect",
            Hist::TlsHandshake => "tls_handshake",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Hist::RoutingDecision => "Time to reach a routing decision, by service.",
            Hist::TargetConnect => "Time to connect to the target, by service.",
            Hist::TlsHandshake => "Time of the client TLS handshake, by service.",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Shard-wide counters without a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Total {
    /// Events not handed to the control thread because its queue was full.
    EventsDropped,
    /// Forwarded decisions not broken down by host and target because that table
    /// reached [`MAX_TARGET_ENTRIES`].
    UntrackedTargets,
}

impl Total {
    pub const ALL: [Total; 2] = [Total::EventsDropped, Total::UntrackedTargets];
    pub const COUNT: usize = Self::ALL.len();

    /// Metric name after `portico_`, without the `_total` the encoder appends.
    pub fn metric_name(self) -> &'static str {
        match self {
            Total::EventsDropped => "events_dropped",
            Total::UntrackedTargets => "forwarded_untracked",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Total::EventsDropped => {
                "Events a shard dropped because the control thread's queue was full."
            }
            Total::UntrackedTargets => {
                "Forwarded decisions not counted by host and target because that table was full."
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Distinct (host, service, target) entries a shard counts; further new ones are only
/// counted in [`Total::UntrackedTargets`]. Hosts come from the configuration, so this
/// is reached only by a very large site.
pub const MAX_TARGET_ENTRIES: usize = 4096;

/// Smallest and largest time a [`Timing`] tells apart, in microseconds (1 µs..60 s);
/// longer times are recorded as 60 s.
pub const TIMING_MIN_MICROS: u64 = 1;
pub const TIMING_MAX_MICROS: u64 = 60_000_000;
/// Significant decimal digits of a [`Timing`]: values are kept within 1%.
pub const TIMING_SIGFIG: u8 = 2;

/// One latency distribution: an hdrhistogram in microseconds and the exact sum.
#[derive(Debug, Clone)]
pub struct Timing {
    hist: Histogram<u64>,
    sum_micros: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing::new()
    }
}

impl Timing {
    pub fn new() -> Self {
        // The bounds are constants hdrhistogram accepts (low >= 1, high >= 2 * low,
        // sigfig <= 5): creation cannot fail.
        let hist = Histogram::new_with_bounds(TIMING_MIN_MICROS, TIMING_MAX_MICROS, TIMING_SIGFIG)
            .expect("constant histogram bounds are valid");
        Timing {
            hist,
            sum_micros: 0,
        }
    }

    /// Record one value (clamped to [`TIMING_MAX_MICROS`]).
    pub fn record(&mut self, micros: u64) {
        let micros = micros.min(TIMING_MAX_MICROS);
        self.hist.saturating_record(micros);
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Exact sum of the recorded values (after clamping), in microseconds.
    pub fn sum_micros(&self) -> u64 {
        self.sum_micros
    }

    /// The distribution itself, for quantiles.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// Cumulative counts at each of `bounds` (microseconds, ascending): entry `i` is
    /// the number of values at most `bounds[i]`, within the histogram's precision (a
    /// value counts at a bound when the lowest value it is equivalent to does).
    pub fn cumulative(&self, bounds: &[u64]) -> Vec<u64> {
        let mut out = vec![0u64; bounds.len()];
        for v in self.hist.iter_recorded() {
            let low = self.hist.lowest_equivalent(v.value_iterated_to());
            let first = bounds.partition_point(|&b| b < low);
            if let Some(slot) = out.get_mut(first) {
                *slot = slot.saturating_add(v.count_at_value());
            }
        }
        let mut running = 0u64;
        for slot in &mut out {
            running = running.saturating_add(*slot);
            *slot = running;
        }
        out
    }

    fn merge(&mut self, other: &Timing) {
        // Same bounds on both sides (every Timing is made by `new`), so adding cannot
        // fail; if it ever did, the scrape would show fewer values, not stop.
        let _ = self.hist.add(&other.hist);
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }
}

type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// What one shard counted since it started. Single-threaded: plain fields, updated in
/// place; cloned once a second to be sent to the control thread.
#[derive(Debug, Clone, Default)]
pub struct ShardMetrics {
    counters: [[u64; Service::COUNT]; Counter::COUNT],
    gauges: [[i64; Service::COUNT]; Gauge::COUNT],
    rejected: [[u64; RejectKind::COUNT]; Service::COUNT],
    bytes: [[u64; 2]; Service::COUNT],
    totals: [u64; Total::COUNT],
    /// Made on the first observation of each pair.
    timings: [[Option<Box<Timing>>; Service::COUNT]; Hist::COUNT],
    /// Forwarded decisions by host, then (service, target): a lookup by `&str` does
    /// not allocate; a host has few targets, so the inner list is scanned.
    by_target: Map<Box<str>, Vec<(Service, SocketAddr, u64)>>,
    by_target_entries: usize,
    /// The shard's STUN/TURN server counters (its gauges are the `*_active` fields),
    /// replaced whole by the shard from the server's own counters.
    pub turn: TurnCounters,
}

impl ShardMetrics {
    pub fn new() -> Self {
        ShardMetrics::default()
    }

    // -- updates (shard hot path)

    /// Add `n` to a per-service counter.
    pub fn add(&mut self, counter: Counter, service: Service, n: u64) {
        let slot = &mut self.counters[counter.index()][service.index()];
        *slot = slot.saturating_add(n);
    }

    /// A connection accepted on a `service` listener.
    pub fn accepted(&mut self, service: Service) {
        self.add(Counter::Accepted, service, 1);
    }

    /// A request or connection refused for `kind`.
    pub fn rejected(&mut self, service: Service, kind: RejectKind) {
        let slot = &mut self.rejected[service.index()][kind.index()];
        *slot = slot.saturating_add(1);
    }

    /// A routing decision forwarded to `target` for the configured host `host`. Pass
    /// the host name of the matching rule (bounded by the configuration), never text
    /// taken from the request.
    pub fn forwarded(&mut self, service: Service, host: &str, target: SocketAddr) {
        self.add(Counter::Forwarded, service, 1);
        if let Some(entries) = self.by_target.get_mut(host) {
            if let Some(e) = entries.iter_mut().find(|e| e.0 == service && e.1 == target) {
                e.2 = e.2.saturating_add(1);
                return;
            }
        }
        if self.by_target_entries >= MAX_TARGET_ENTRIES {
            self.total(Total::UntrackedTargets, 1);
            return;
        }
        self.by_target_entries += 1;
        self.by_target
            .entry(host.into())
            .or_default()
            .push((service, target, 1));
    }

    /// `n` bytes relayed in `direction`.
    pub fn bytes(&mut self, service: Service, direction: Direction, n: u64) {
        let slot = &mut self.bytes[service.index()][direction.index()];
        *slot = slot.saturating_add(n);
    }

    /// Move a per-service gauge by `delta`.
    pub fn gauge_add(&mut self, gauge: Gauge, service: Service, delta: i64) {
        let slot = &mut self.gauges[gauge.index()][service.index()];
        *slot = slot.saturating_add(delta);
    }

    /// A client connection opened (call [`Self::conn_close`] when it ends).
    pub fn conn_open(&mut self, service: Service) {
        self.gauge_add(Gauge::ActiveConnections, service, 1);
    }

    pub fn conn_close(&mut self, service: Service) {
        self.gauge_add(Gauge::ActiveConnections, service, -1);
    }

    /// A connection became a tunnel (call [`Self::tunnel_close`] when it ends).
    pub fn tunnel_open(&mut self, service: Service) {
        self.gauge_add(Gauge::ActiveTunnels, service, 1);
    }

    pub fn tunnel_close(&mut self, service: Service) {
        self.gauge_add(Gauge::ActiveTunnels, service, -1);
    }

    /// A client TLS handshake completed.
    pub fn tls_handshake(&mut self, service: Service) {
        self.add(Counter::TlsHandshakes, service, 1);
    }

    /// A client TLS handshake failed.
    pub fn tls_handshake_failed(&mut self, service: Service) {
        self.add(Counter::TlsHandshakeFailures, service, 1);
    }

    /// A connection closed at accept because its source is blacklisted; also counted
    /// as a reject for [`RejectKind::Blacklisted`] (call this, not both).
    pub fn blacklist_hit(&mut self, service: Service) {
        self.add(Counter::BlacklistHits, service, 1);
        self.rejected(service, RejectKind::Blacklisted);
    }

    /// An event dropped because the control thread's queue was full.
    pub fn event_dropped(&mut self) {
        self.total(Total::EventsDropped, 1);
    }

    /// Add `n` to a shard-wide counter.
    pub fn total(&mut self, total: Total, n: u64) {
        let slot = &mut self.totals[total.index()];
        *slot = slot.saturating_add(n);
    }

    /// Record a time in microseconds.
    pub fn observe(&mut self, hist: Hist, service: Service, micros: u64) {
        self.timings[hist.index()][service.index()]
            .get_or_insert_with(Box::default)
            .record(micros);
    }

    /// Record a time.
    pub fn observe_duration(&mut self, hist: Hist, service: Service, d: Duration) {
        self.observe(
            hist,
            service,
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
        );
    }

    // -- merging (control side)

    /// Add `other` into `self`: counters and gauges are summed, timings added.
    pub fn merge(&mut self, other: &ShardMetrics) {
        fn add_all<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (x, y) in a.iter_mut().zip(b) {
                *x = x.saturating_add(*y);
            }
        }
        merge_turn(&mut self.turn, &other.turn);
        for (a, b) in self.counters.iter_mut().zip(&other.counters) {
            add_all(a, b);
        }
        for (a, b) in self.gauges.iter_mut().zip(&other.gauges) {
            for (x, y) in a.iter_mut().zip(b) {
                *x = x.saturating_add(*y);
            }
        }
        for (a, b) in self.rejected.iter_mut().zip(&other.rejected) {
            add_all(a, b);
        }
        for (a, b) in self.bytes.iter_mut().zip(&other.bytes) {
            add_all(a, b);
        }
        add_all(&mut self.totals, &other.totals);
        for (a, b) in self.timings.iter_mut().zip(&other.timings) {
            for (x, y) in a.iter_mut().zip(b) {
                if let Some(y) = y {
                    match x {
                        Some(x) => x.merge(y),
                        None => *x = Some(y.clone()),
                    }
                }
            }
        }
        // Merged tables are not capped: each shard's is.
        for (host, theirs) in &other.by_target {
            let ours = self.by_target.entry(host.clone()).or_default();
            for &(service, target, n) in theirs {
                match ours.iter_mut().find(|e| e.0 == service && e.1 == target) {
                    Some(e) => e.2 = e.2.saturating_add(n),
                    None => {
                        ours.push((service, target, n));
                        self.by_target_entries += 1;
                    }
                }
            }
        }
    }

    // -- reading

    pub fn counter(&self, counter: Counter, service: Service) -> u64 {
        self.counters[counter.index()][service.index()]
    }

    pub fn gauge(&self, gauge: Gauge, service: Service) -> i64 {
        self.gauges[gauge.index()][service.index()]
    }

    pub fn rejects(&self, service: Service, kind: RejectKind) -> u64 {
        self.rejected[service.index()][kind.index()]
    }

    pub fn relayed(&self, service: Service, direction: Direction) -> u64 {
        self.bytes[service.index()][direction.index()]
    }

    pub fn get_total(&self, total: Total) -> u64 {
        self.totals[total.index()]
    }

    /// The timing of a pair, if anything was observed for it.
    pub fn timing(&self, hist: Hist, service: Service) -> Option<&Timing> {
        self.timings[hist.index()][service.index()].as_deref()
    }

    /// Every (host, service, target, count), sorted by host, service and target.
    pub fn forwarded_by_target(&self) -> Vec<(&str, Service, SocketAddr, u64)> {
        let mut out: Vec<(&str, Service, SocketAddr, u64)> = self
            .by_target
            .iter()
            .flat_map(|(host, v)| v.iter().map(move |&(s, t, n)| (&**host, s, t, n)))
            .collect();
        out.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        out
    }
}

/// How the last (re)load of the configuration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration was validated and published.
    Applied,
    /// The new configuration was refused; the running one stays.
    Refused,
}

/// Which log output dropped lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSink {
    Stdout,
    Syslog,
}

impl LogSink {
    pub const ALL: [LogSink; 2] = [LogSink::Stdout, LogSink::Syslog];

    /// The `sink` label value.
    pub fn name(self) -> &'static str {
        match self {
            LogSink::Stdout => "stdout",
            LogSink::Syslog => "syslog",
        }
    }
}

/// The control thread's own figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlMetrics {
    /// Generation of the rules in force.
    pub generation: u64,
    /// Outcome and wall time of the last load or reload (the first load counts).
    pub last_reload: Option<(ReloadOutcome, SystemTime)>,
    /// Sources banned now.
    pub blacklist_size: usize,
    /// Log lines dropped: stdout failing, or syslog not taking them.
    pub log_dropped_stdout: u64,
    pub log_dropped_syslog: u64,
    /// The services the configuration listens for: their series are shown even
    /// while zero.
    pub listening: Vec<Service>,
}

impl ControlMetrics {
    pub fn log_dropped(&self, sink: LogSink) -> u64 {
        match sink {
            LogSink::Stdout => self.log_dropped_stdout,
            LogSink::Syslog => self.log_dropped_syslog,
        }
    }
}

/// The most shards the store keeps; reports from a higher index are ignored.
pub const MAX_SHARDS: usize = 4096;

/// Where the control thread keeps the latest metrics of every shard and its own, and
/// where the scrape server reads them. Shared between those two threads only (never
/// touched by the shards), so a mutex held for a pointer swap is enough.
#[derive(Debug, Default)]
pub struct MetricsStore {
    inner: Mutex<StoreInner>,
}

#[derive(Debug, Default)]
struct StoreInner {
    shards: Vec<Option<Arc<ShardMetrics>>>,
    control: ControlMetrics,
}

/// Everything a scrape shows: the shards merged, and the control thread's figures.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub merged: ShardMetrics,
    pub control: ControlMetrics,
    /// Shards that have reported at least once.
    pub shards: usize,
}

impl MetricsStore {
    pub fn new() -> Arc<MetricsStore> {
        Arc::new(MetricsStore::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreInner> {
        // The data stays consistent whatever panicked while holding the lock: every
        // update is a single assignment.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keep `metrics` as shard `shard`'s latest.
    pub fn update_shard(&self, shard: usize, metrics: Box<ShardMetrics>) {
        if shard >= MAX_SHARDS {
            return;
        }
        let metrics = Arc::from(metrics);
        let mut inner = self.lock();
        if inner.shards.len() <= shard {
            inner.shards.resize(shard + 1, None);
        }
        inner.shards[shard] = Some(metrics);
    }

    /// The control thread's figures as last set.
    pub fn control(&self) -> ControlMetrics {
        self.lock().control.clone()
    }

    /// Replace the control thread's figures.
    pub fn set_control(&self, control: ControlMetrics) {
        self.lock().control = control;
    }

    /// Change some of the control thread's figures in place.
    pub fn update_control(&self, f: impl FnOnce(&mut ControlMetrics)) {
        f(&mut self.lock().control);
    }

    /// Record a refused reload (an applied one is seen by the control thread through
    /// the new generation). Whoever reloads calls this.
    pub fn record_reload(&self, outcome: ReloadOutcome, at: SystemTime) {
        self.lock().control.last_reload = Some((outcome, at));
    }

    /// Merge the shards' latest reports (outside the lock).
    pub fn snapshot(&self) -> MetricsSnapshot {
        let (shards, control) = {
            let inner = self.lock();
            let shards: Vec<Arc<ShardMetrics>> = inner.shards.iter().flatten().cloned().collect();
            (shards, inner.control.clone())
        };
        let mut merged = ShardMetrics::new();
        for s in &shards {
            merged.merge(s);
        }
        MetricsSnapshot {
            merged,
            control,
            shards: shards.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn updates_and_reads() {
        let mut m = ShardMetrics::new();
        m.accepted(Service::Https);
        m.accepted(Service::Https);
        m.rejected(Service::Http, RejectKind::NoRule);
        m.bytes(Service::Https, Direction::ClientToTarget, 100);
        m.bytes(Service::Https, Direction::TargetToClient, 5000);
        m.conn_open(Service::Https);
        m.conn_open(Service::Https);
        m.conn_close(Service::Https);
        m.tunnel_open(Service::Http);
        m.tls_handshake(Service::Https);
        m.tls_handshake_failed(Service::Https);
        m.blacklist_hit(Service::Http);
        m.event_dropped();
        m.observe(Hist::TargetConnect, Service::Https, 300);
        m.observe_duration(
            Hist::TargetConnect,
            Service::Https,
            Duration::from_millis(2),
        );
        assert_eq!(m.counter(Counter::Accepted, Service::Https), 2);
        assert_eq!(m.counter(Counter::Accepted, Service::Http), 0);
        assert_eq!(m.rejects(Service::Http, RejectKind::NoRule), 1);
        assert_eq!(m.relayed(Service::Https, Direction::TargetToClient), 5000);
        assert_eq!(m.gauge(Gauge::ActiveConnections, Service::Https), 1);
        assert_eq!(m.gauge(Gauge::ActiveTunnels, Service::Http), 1);
        assert_eq!(m.counter(Counter::TlsHandshakeFailures, Service::Https), 1);
        assert_eq!(m.counter(Counter::BlacklistHits, Service::Http), 1);
        assert_eq!(m.get_total(Total::EventsDropped), 1);
        let t = m.timing(Hist::TargetConnect, Service::Https).unwrap();
        assert_eq!((t.count(), t.sum_micros()), (2, 2300));
        assert!(m.timing(Hist::TlsHandshake, Service::Https).is_none());
    }

    #[test]
    fn forwarded_by_host_and_target() {
        let mut m = ShardMetrics::new();
        let a = addr("172.31.31.2:443");
        let b = addr("172.31.31.3:443");
        m.forwarded(Service::Https, "hq.example.net", a);
        m.forwarded(Service::Https, "hq.example.net", a);
        m.forwarded(Service::Https, "hq.example.net", b);
        m.forwarded(Service::Http, "hq.example.net", a);
        m.forwarded(Service::Https, "apps.example.net", a);
        assert_eq!(m.counter(Counter::Forwarded, Service::Https), 4);
        assert_eq!(
            m.forwarded_by_target(),
            [
                ("apps.example.net", Service::Https, a, 1),
                ("hq.example.net", Service::Http, a, 1),
                ("hq.example.net", Service::Https, a, 2),
                ("hq.example.net", Service::Https, b, 1),
            ]
        );
    }

    #[test]
    fn the_target_table_is_capped() {
        let mut m = ShardMetrics::new();
        for i in 0..MAX_TARGET_ENTRIES + 10 {
            let port = u16::try_from(i % 60000 + 1).unwrap();
            let target = SocketAddr::from(([10, 0, 0, u8::try_from(i / 60000).unwrap()], port));
            m.forwarded(Service::Http, "h", target);
        }
        m.forwarded(Service::Http, "h", addr("10.0.0.0:1"));
        assert_eq!(m.forwarded_by_target().len(), MAX_TARGET_ENTRIES);
        assert_eq!(m.get_total(Total::UntrackedTargets), 10);
        assert_eq!(
            m.counter(Counter::Forwarded, Service::Http),
            MAX_TARGET_ENTRIES as u64 + 11
        );
    }

    #[test]
    fn timing_clamps_and_buckets() {
        let mut t = Timing::new();
        for v in [0, 40, 50, 120, 1000, 1001, 90_000_000] {
            t.record(v);
        }
        assert_eq!(t.count(), 7);
        assert_eq!(t.sum_micros(), 40 + 50 + 120 + 1000 + 1001 + 60_000_000);
        // 1001 is within 1% of 1000 and may count at the 1000 bound.
        let c = t.cumulative(&[50, 100, 1000, 10_000, 60_000_000]);
        assert_eq!(c[0], 3);
        assert_eq!(c[1], 3);
        assert!(c[2] == 5 || c[2] == 6, "{c:?}");
        assert_eq!(&c[3..], [6, 7]);
    }

    #[test]
    fn merge_sums_everything() {
        let mut a = ShardMetrics::new();
        let mut b = ShardMetrics::new();
        a.accepted(Service::Sip);
        b.accepted(Service::Sip);
        b.accepted(Service::Sip);
        a.conn_open(Service::Sip);
        b.conn_open(Service::Sip);
        b.conn_open(Service::Sip);
        a.rejected(Service::Sip, RejectKind::Malformed);
        b.bytes(Service::Sip, Direction::ClientToTarget, 7);
        a.observe(Hist::RoutingDecision, Service::Sip, 100);
        b.observe(Hist::RoutingDecision, Service::Sip, 200);
        b.observe(Hist::TlsHandshake, Service::Sips, 3000);
        let t = addr("10.0.0.1:5060");
        a.forwarded(Service::Sip, "example.net", t);
        b.forwarded(Service::Sip, "example.net", t);
        b.forwarded(Service::Sip, "other.net", t);
        b.event_dropped();

        let mut m = ShardMetrics::new();
        m.merge(&a);
        m.merge(&b);
        assert_eq!(m.counter(Counter::Accepted, Service::Sip), 3);
        assert_eq!(m.gauge(Gauge::ActiveConnections, Service::Sip), 3);
        assert_eq!(m.rejects(Service::Sip, RejectKind::Malformed), 1);
        assert_eq!(m.relayed(Service::Sip, Direction::ClientToTarget), 7);
        let r = m.timing(Hist::RoutingDecision, Service::Sip).unwrap();
        assert_eq!((r.count(), r.sum_micros()), (2, 300));
        assert_eq!(
            m.timing(Hist::TlsHandshake, Service::Sips).unwrap().count(),
            1
        );
        assert_eq!(
            m.forwarded_by_target(),
            [
                ("example.net", Service::Sip, t, 2),
                ("other.net", Service::Sip, t, 1)
            ]
        );
        assert_eq!(m.get_total(Total::EventsDropped), 1);
        // The inputs are untouched.
        assert_eq!(a.counter(Counter::Accepted, Service::Sip), 1);
    }

    #[test]
    fn store_keeps_the_latest_per_shard() {
        let store = MetricsStore::new();
        let mut m = ShardMetrics::new();
        m.accepted(Service::Http);
        store.update_shard(1, Box::new(m.clone()));
        m.accepted(Service::Http);
        store.update_shard(1, Box::new(m.clone()));
        store.update_shard(0, Box::new(m.clone()));
        store.update_shard(MAX_SHARDS, Box::new(m));
        let snap = store.snapshot();
        assert_eq!(snap.shards, 2);
        assert_eq!(snap.merged.counter(Counter::Accepted, Service::Http), 4);
        store.record_reload(ReloadOutcome::Refused, SystemTime::UNIX_EPOCH);
        assert_eq!(
            store.snapshot().control.last_reload,
            Some((ReloadOutcome::Refused, SystemTime::UNIX_EPOCH))
        );
    }

    #[test]
    fn names_are_distinct_label_values() {
        let services: std::collections::HashSet<_> =
            Service::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(services.len(), Service::COUNT);
        let kinds: std::collections::HashSet<_> =
            RejectKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(kinds.len(), RejectKind::COUNT);
        for (i, s) in Service::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        for (i, k) in RejectKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        for (i, h) in Hist::ALL.iter().enumerate() {
            assert_eq!(h.index(), i);
        }
        for (i, g) in Gauge::ALL.iter().enumerate() {
            assert_eq!(g.index(), i);
        }
        for (i, t) in Total::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
        for (i, d) in Direction::ALL.iter().enumerate() {
            assert_eq!(d.index(), i);
        }
    }
}
