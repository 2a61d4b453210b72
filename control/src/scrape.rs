//! The scrape endpoint: the merged metrics in the OpenMetrics text format (which
//! Prometheus reads), served on `[metrics] listen` by a thread of its own.
//!
//! Owns: the metric names, labels and histogram buckets, and the small blocking HTTP
//! server. What is counted lives in [`crate::metrics`]; the shards never see this.
//!
//! Promises: names start with `portico_`, counters end in `_total`, units are in the
//! names (`_seconds`, `_bytes`), times are in seconds. A per-service series is shown
//! when its service is listened on or its value is not zero, so the series a site uses
//! exist from the start. The server answers `GET /metrics` (and `HEAD`) with 200,
//! other paths with 404 and other methods with 405; it reads at most
//! [`MAX_REQUEST`] bytes of a request head within [`READ_TIMEOUT`], serves one
//! connection at a time, and never stops on a client's error.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use portico_proto::turn::TurnCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::{
    Counter, Direction, Gauge, Hist, LogSink, MetricsSnapshot, MetricsStore, RejectKind,
    ReloadOutcome, Service, Total,
};

/// The media type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the histogram buckets, in microseconds (exported in seconds:
/// 50 µs … 10 s, then `+Inf`).
pub const BUCKETS_MICROS: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Longest request head read.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Longest wait for a request head (and for a slow reader of the answer).
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The exposition of `snapshot` (ending in `# EOF`).
pub fn encode(snapshot: MetricsSnapshot) -> String {
    let mut registry = Registry::with_prefix("portico");
    registry.register_collector(Box::new(Exposition(snapshot)));
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail, nor can our collector.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct Exposition(MetricsSnapshot);

/// A label value with `\`, `"` and newlines escaped (the text format's rules; the
/// encoder writes values as given).
fn escaped(s: &str) -> Cow<'_, str> {
    if !s.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

impl Exposition {
    /// Whether a per-service series is shown.
    fn show(&self, service: Service, nonzero: bool) -> bool {
        nonzero || self.0.control.listening.contains(&service)
    }
}

impl Collector for Exposition {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0.merged;
        let c = &self.0.control;

        for counter in Counter::ALL {
            let tls_only = matches!(
                counter,
                Counter::TlsHandshakes | Counter::TlsHandshakeFailures
            );
            let mut e = enc.encode_descriptor(
                counter.metric_name(),
                counter.help(),
                None,
                MetricType::Counter,
            )?;
            for s in Service::ALL {
                let v = m.counter(counter, s);
                if self.show(s, v != 0) && (v != 0 || !tls_only || is_tls(s)) {
                    let labels = [("service", s.name())];
                    ConstCounter::new(v).encode(e.encode_family(&labels)?)?;
                }
            }
        }

        {
            let mut e = enc.encode_descriptor(
                "rejected",
                "Requests or connections refused, by service and reason.",
                None,
                MetricType::Counter,
            )?;
            for s in Service::ALL {
                for kind in RejectKind::ALL {
                    let v = m.rejects(s, kind);
                    let tls_only = kind == RejectKind::TlsHandshake;
                    if self.show(s, v != 0) && (v != 0 || !tls_only || is_tls(s)) {
                        let labels = [("service", s.name()), ("reason", kind.name())];
                        ConstCounter::new(v).encode(e.encode_family(&labels)?)?;
                    }
                }
            }
        }

        {
            let mut e = enc.encode_descriptor(
                "forwarded_by_target",
                "Routing decisions that forwarded, by service, configured host and target.",
                None,
                MetricType::Counter,
            )?;
            for (host, s, target, v) in m.forwarded_by_target() {
                let target = target.to_string();
                let labels = [
                    ("service", Cow::Borrowed(s.name())),
                    ("host", escaped(host)),
                    ("target", Cow::Owned(target)),
                ];
                ConstCounter::new(v).encode(e.encode_family(&labels)?)?;
            }
        }

        {
            let mut e = enc.encode_descriptor(
                "relayed",
                "Bytes relayed, by service and direction.",
                Some(&Unit::Bytes),
                MetricType::Counter,
            )?;
            for s in Service::ALL {
                for d in Direction::ALL {
                    let v = m.relayed(s, d);
                    if self.show(s, v != 0) {
                        let labels = [("service", s.name()), ("direction", d.name())];
                        ConstCounter::new(v).encode(e.encode_family(&labels)?)?;
                    }
                }
            }
        }

        for gauge in Gauge::ALL {
            let mut e =
                enc.encode_descriptor(gauge.metric_name(), gauge.help(), None, MetricType::Gauge)?;
            for s in Service::ALL {
                let v = m.gauge(gauge, s);
                if self.show(s, v != 0) {
                    let labels = [("service", s.name())];
                    ConstGauge::new(v).encode(e.encode_family(&labels)?)?;
                }
            }
        }

        for hist in Hist::ALL {
            let tls_only = hist == Hist::TlsHandshake;
            let mut e = enc.encode_descriptor(
                hist.metric_name(),
                hist.help(),
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for s in Service::ALL {
                let timing = m.timing(hist, s);
                let shown = match timing {
                    Some(_) => true,
                    None => self.show(s, false) && (!tls_only || is_tls(s)),
                };
                if !shown {
                    continue;
                }
                let (sum, count, cumulative) = match timing {
                    Some(t) => (t.sum_micros(), t.count(), t.cumulative(&BUCKETS_MICROS)),
                    None => (0, 0, vec![0; BUCKETS_MICROS.len()]),
                };
                // The encoder takes per-bucket counts and accumulates them itself.
                let mut buckets = Vec::with_capacity(BUCKETS_MICROS.len() + 1);
                let mut below = 0;
                for (&bound, &cum) in BUCKETS_MICROS.iter().zip(&cumulative) {
                    buckets.push((seconds(bound), cum.saturating_sub(below)));
                    below = cum;
                }
                buckets.push((f64::MAX, count.saturating_sub(below)));
                let labels = [("service", s.name())];
                e.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    seconds(sum),
                    count,
                    &buckets,
                    None,
                )?;
            }
        }

        encode_turn(&m.turn, &mut enc)?;

        for total in Total::ALL {
            let e = enc.encode_descriptor(
                total.metric_name(),
                total.help(),
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(m.get_total(total)).encode(e)?;
        }

        {
            let mut e = enc.encode_descriptor(
                "log_lines_dropped",
                "Log lines dropped by a sink (stdout failing, syslog not taking them).",
                None,
                MetricType::Counter,
            )?;
            for sink in LogSink::ALL {
                let labels = [("sink", sink.name())];
                ConstCounter::new(c.log_dropped(sink)).encode(e.encode_family(&labels)?)?;
            }
        }

        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 5] = [
            (
                "config_generation",
                "Generation of the configuration in force (1 at start, +1 per applied reload).",
                None,
                Some(c.generation as f64),
            ),
            (
                "config_last_reload_successful",
                "1 when the last load or reload of the configuration was applied, 0 when it was refused.",
                None,
                c.last_reload
                    .map(|(o, _)| if o == ReloadOutcome::Applied { 1.0 } else { 0.0 }),
            ),
            (
                "config_last_reload_timestamp",
                "When the configuration was last loaded or a reload refused (Unix time).",
                Some(Unit::Seconds),
                c.last_reload.map(|(_, at)| {
                    at.duration_since(UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64())
                }),
            ),
            (
                "blacklist_size",
                "Source addresses blacklisted now.",
                None,
                Some(c.blacklist_size as f64),
            ),
            (
                "shards_reporting",
                "Shards whose metrics this scrape includes.",
                None,
                Some(self.0.shards as f64),
            ),
        ];
        for (name, help, unit, value) in &gauges {
            if let Some(v) = value {
                let e = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
                // Integral values print as integers.
                if v.fract() == 0.0 && v.abs() < 9e15 {
                    ConstGauge::new(*v as i64).encode(e)?;
                } else {
                    ConstGauge::new(*v).encode(e)?;
                }
            }
        }
        Ok(())
    }
}

/// A counter family with one label: name, help, label name, values.
type LabelledCounter = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, u64)>,
);

/// The STUN/TURN server's counters (`portico_turn_*`).
fn encode_turn(t: &TurnCounters, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let counters: [(&str, &str, u64); 9] = [
        (
            "turn_binding_requests",
            "STUN Binding requests answered.",
            t.binding_requests,
        ),
        (
            "turn_allocations_created",
            "TURN allocations created.",
            t.allocations_created,
        ),
        (
            "turn_allocations_deleted",
            "TURN allocations ended by Refresh with LIFETIME 0.",
            t.allocations_deleted,
        ),
        (
            "turn_allocations_expired",
            "TURN allocations that expired.",
            t.allocations_expired,
        ),
        (
            "turn_allocations_closed",
            "TURN allocations ended by their TCP/TLS connection closing.",
            t.allocations_closed,
        ),
        (
            "turn_allocate_retransmits",
            "Retransmitted Allocate requests answered from the cached response.",
            t.allocate_retransmits,
        ),
        (
            "turn_error_responses",
            "STUN/TURN error responses sent.",
            t.error_responses,
        ),
        (
            "turn_events_lost",
            "TURN log events lost because the queue was not drained in time.",
            t.events_lost,
        ),
        (
            "turn_relayed_packets_to_peer",
            "Datagrams relayed client to peer.",
            t.to_peer_packets,
        ),
    ];
    for (name, help, v) in counters {
        let e = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(v).encode(e)?;
    }
    {
        let mut e = enc.encode_descriptor(
            "turn_relayed",
            "Application bytes relayed by TURN, by direction.",
            Some(&Unit::Bytes),
            MetricType::Counter,
        )?;
        for (dir, v) in [
            ("to_peer", t.to_peer_bytes),
            ("to_client", t.to_client_bytes),
        ] {
            ConstCounter::new(v).encode(e.encode_family(&[("direction", dir)])?)?;
        }
    }
    {
        let e = enc.encode_descriptor(
            "turn_relayed_packets_to_client",
            "Datagrams relayed peer to client.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(t.to_client_packets).encode(e)?;
    }
    let labelled: [LabelledCounter; 4] = [
        (
            "turn_auth_failures",
            "STUN/TURN authentication failures, by reason (challenges included).",
            "reason",
            portico_proto::turn::AuthFailure::ALL
                .iter()
                .map(|r| (r.as_str(), t.auth_failures[r.index()]))
                .collect(),
        ),
        (
            "turn_peers_refused",
            "Peers refused by the peer policy, by reason.",
            "reason",
            portico_proto::turn::PeerRefusal::ALL
                .iter()
                .map(|r| (r.as_str(), t.peers_refused[r.index()]))
                .collect(),
        ),
        (
            "turn_quota_hits",
            "Requests refused by a quota, by quota.",
            "quota",
            portico_proto::turn::QuotaKind::ALL
                .iter()
                .map(|r| (r.as_str(), t.quota_hits[r.index()]))
                .collect(),
        ),
        (
            "turn_dropped",
            "Packets dropped by the TURN server, by reason.",
            "reason",
            portico_proto::turn::DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), t.dropped[r.index()]))
                .collect(),
        ),
    ];
    for (name, help, label, values) in labelled {
        let mut e = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (value, n) in values {
            ConstCounter::new(n).encode(e.encode_family(&[(label, value)])?)?;
        }
    }
    let gauges: [(&str, &str, u64); 3] = [
        (
            "turn_allocations_active",
            "TURN allocations now.",
            t.allocations_active,
        ),
        (
            "turn_permissions_active",
            "TURN permissions now.",
            t.permissions_active,
        ),
        (
            "turn_channels_active",
            "TURN channel bindings now.",
            t.channels_active,
        ),
    ];
    for (name, help, v) in gauges {
        let e = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(v as i64).encode(e)?;
    }
    Ok(())
}

fn is_tls(s: Service) -> bool {
    matches!(
        s,
        Service::Https | Service::Ldaps | Service::Sips | Service::H323Tls
    )
}

/// The running scrape server.
#[derive(Debug)]
pub struct ScrapeServer {
    /// The address it listens on (the port is the real one when 0 was asked for).
    pub local_addr: SocketAddr,
    pub join: JoinHandle<()>,
}

/// Listen on `addr` and serve `GET /metrics` from `store` on a thread of its own
/// (`portico-metrics`), for the life of the process.
pub fn spawn_scrape_server(addr: SocketAddr, store: Arc<MetricsStore>) -> io::Result<ScrapeServer> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("metrics: cannot listen on {addr}: {e}")))?;
    let local_addr = listener.local_addr()?;
    let join = std::thread::Builder::new()
        .name("portico-metrics".into())
        .spawn(move || serve(&listener, &store))?;
    Ok(ScrapeServer { local_addr, join })
}

fn serve(listener: &TcpListener, store: &MetricsStore) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                // A client's failure ends its own connection only.
                let _ = answer(stream, store);
            }
            Err(_) => {
                // EMFILE and the like: wait rather than spin.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics { head_only: bool },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Route a request by its request line (RFC 9112 section 3:
/// `request-line = method SP request-target SP HTTP-version`).
fn route(head: &[u8]) -> Route {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Route::BadRequest;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path != "/metrics" {
        return Route::NotFound;
    }
    match method {
        "GET" => Route::Metrics { head_only: false },
        "HEAD" => Route::Metrics { head_only: true },
        _ => Route::MethodNotAllowed,
    }
}

/// Read one request head (bounded in size and time) and answer it.
fn answer(mut stream: TcpStream, store: &MetricsStore) -> io::Result<()> {
    // The whole head within READ_TIMEOUT, however slowly it trickles in.
    let deadline = Instant::now() + READ_TIMEOUT;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() >= MAX_REQUEST {
            break false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let room = (MAX_REQUEST - head.len()).min(buf.len());
        match stream.read(&mut buf[..room]) {
            Ok(0) => return Ok(()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e),
        }
    };
    let route = if complete {
        route(&head)
    } else {
        Route::BadRequest
    };
    let (status, content_type, body, head_only) = match route {
        Route::Metrics { head_only } => {
            ("200 OK", CONTENT_TYPE, encode(store.snapshot()), head_only)
        }
        Route::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n".to_string(),
            false,
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "use GET /metrics\n".to_string(),
            false,
        ),
        Route::BadRequest => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n".to_string(),
            false,
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    if !head_only {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::SystemTime;

    use prometheus_parse::{Scrape, Value};

    use super::*;
    use crate::metrics::{ControlMetrics, ShardMetrics};

    /// Samples by name and sorted `k=v` labels (prometheus-parse does not pair an
    /// OpenMetrics counter's `_total` samples with its TYPE line, so values are
    /// compared whatever their parsed type).
    fn parse(text: &str) -> (HashMap<(String, String), Value>, Scrape) {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let mut map = HashMap::new();
        for s in &scrape.samples {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let key = (s.metric.clone(), labels.join(","));
            assert!(
                map.insert(key.clone(), s.value.clone()).is_none(),
                "{key:?} twice"
            );
        }
        (map, scrape)
    }

    fn value(map: &HashMap<(String, String), Value>, name: &str, labels: &str) -> f64 {
        match map.get(&(name.to_string(), labels.to_string())) {
            Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
            other => panic!("{name}{{{labels}}}: {other:?}"),
        }
    }

    fn two_shards() -> MetricsSnapshot {
        let hq = "hq.example.net";
        let t443: SocketAddr = "172.31.31.2:443".parse().unwrap();
        let t80: SocketAddr = "172.31.31.2:80".parse().unwrap();
        let mut a = ShardMetrics::new();
        let mut b = ShardMetrics::new();
        for _ in 0..3 {
            a.accepted(Service::Https);
        }
        b.accepted(Service::Https);
        b.accepted(Service::Http);
        a.forwarded(Service::Https, hq, t443);
        b.forwarded(Service::Https, hq, t443);
        b.forwarded(Service::Http, "quote\"d", t80);
        a.rejected(Service::Https, RejectKind::NoRule);
        b.rejected(Service::Https, RejectKind::NoRule);
        b.rejected(Service::Http, RejectKind::Smuggling);
        a.bytes(Service::Https, Direction::ClientToTarget, 1000);
        b.bytes(Service::Https, Direction::ClientToTarget, 234);
        b.bytes(Service::Https, Direction::TargetToClient, 99_999);
        a.conn_open(Service::Https);
        a.conn_open(Service::Https);
        b.conn_open(Service::Https);
        b.conn_close(Service::Https);
        b.tunnel_open(Service::Http);
        a.tls_handshake(Service::Https);
        a.tls_handshake_failed(Service::Https);
        b.tls_handshake(Service::Https);
        a.blacklist_hit(Service::Http);
        b.event_dropped();
        b.event_dropped();
        // 300 µs and 700 µs on one shard, 20 ms on the other; 2 µs routing.
        a.observe(Hist::TargetConnect, Service::Https, 300);
        a.observe(Hist::TargetConnect, Service::Https, 700);
        b.observe(Hist::TargetConnect, Service::Https, 20_000);
        b.observe(Hist::RoutingDecision, Service::Http, 2);

        let store = MetricsStore::new();
        store.update_shard(0, Box::new(a));
        store.update_shard(1, Box::new(b));
        store.set_control(ControlMetrics {
            generation: 3,
            last_reload: Some((
                ReloadOutcome::Refused,
                UNIX_EPOCH + Duration::from_secs(1_603_912_586),
            )),
            blacklist_size: 2,
            log_dropped_stdout: 0,
            log_dropped_syslog: 5,
            listening: vec![Service::Http, Service::Https],
        });
        store.snapshot()
    }

    #[test]
    fn exposition_parses_with_exact_values() {
        let text = encode(two_shards());
        assert!(text.ends_with("# EOF\n"), "{text}");
        let (map, scrape) = parse(&text);
        let v = |name: &str, labels: &str| value(&map, name, labels);

        assert_eq!(
            v("portico_connections_accepted_total", "service=https"),
            4.0
        );
        assert_eq!(v("portico_connections_accepted_total", "service=http"), 1.0);
        assert_eq!(v("portico_forwarded_total", "service=https"), 2.0);
        assert_eq!(v("portico_forwarded_total", "service=http"), 1.0);
        assert_eq!(
            v(
                "portico_forwarded_by_target_total",
                "host=hq.example.net,service=https,target=172.31.31.2:443"
            ),
            2.0
        );
        assert_eq!(
            v("portico_rejected_total", "reason=no_rule,service=https"),
            2.0
        );
        assert_eq!(
            v("portico_rejected_total", "reason=smuggling,service=http"),
            1.0
        );
        assert_eq!(
            v("portico_rejected_total", "reason=timeout,service=http"),
            0.0
        );
        assert_eq!(
            v(
                "portico_relayed_bytes_total",
                "direction=client_to_target,service=https"
            ),
            1234.0
        );
        assert_eq!(
            v(
                "portico_relayed_bytes_total",
                "direction=target_to_client,service=https"
            ),
            99_999.0
        );
        assert_eq!(v("portico_active_connections", "service=https"), 2.0);
        assert_eq!(v("portico_active_tunnels", "service=http"), 1.0);
        assert_eq!(v("portico_tls_handshakes_total", "service=https"), 2.0);
        assert_eq!(
            v("portico_tls_handshake_failures_total", "service=https"),
            1.0
        );
        assert_eq!(v("portico_blacklist_hits_total", "service=http"), 1.0);
        assert_eq!(v("portico_events_dropped_total", ""), 2.0);
        assert_eq!(v("portico_forwarded_untracked_total", ""), 0.0);
        assert_eq!(v("portico_log_lines_dropped_total", "sink=syslog"), 5.0);
        assert_eq!(v("portico_log_lines_dropped_total", "sink=stdout"), 0.0);
        assert_eq!(v("portico_config_generation", ""), 3.0);
        assert_eq!(v("portico_config_last_reload_successful", ""), 0.0);
        assert_eq!(
            v("portico_config_last_reload_timestamp_seconds", ""),
            1_603_912_586.0
        );
        assert_eq!(v("portico_blacklist_size", ""), 2.0);
        assert_eq!(v("portico_shards_reporting", ""), 2.0);

        // Services not listened on and never seen have no series; TLS series only
        // for TLS services.
        assert!(!text.contains("service=\"sip\""), "{text}");
        assert!(!text.contains("portico_tls_handshakes_total{service=\"http\"}"));
        assert!(!text.contains("reason=\"tls_handshake\",service=\"http\""));
        // A label value with a quote is escaped.
        assert!(text.contains("host=\"quote\\\"d\""), "{text}");

        // Histograms, in seconds.
        assert_eq!(
            v("portico_target_connect_seconds_sum", "service=https"),
            0.021
        );
        assert_eq!(
            v("portico_target_connect_seconds_count", "service=https"),
            3.0
        );
        let hist = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "portico_target_connect_seconds"
                    && s.labels.get("service") == Some("https")
            })
            .unwrap_or_else(|| panic!("{text}"));
        let Value::Histogram(buckets) = &hist.value else {
            panic!("{:?}", hist.value)
        };
        let at = |le: f64| {
            buckets
                .iter()
                .find(|b| b.less_than == le)
                .unwrap_or_else(|| panic!("le={le}: {buckets:?}"))
                .count
        };
        assert_eq!(buckets.len(), BUCKETS_MICROS.len() + 1);
        assert_eq!(at(0.00025), 0.0);
        assert_eq!(at(0.0005), 1.0);
        assert_eq!(at(0.001), 2.0);
        assert_eq!(at(0.01), 2.0);
        assert_eq!(at(0.025), 3.0);
        assert_eq!(at(10.0), 3.0);
        assert_eq!(at(f64::INFINITY), 3.0);
        assert_eq!(
            v("portico_routing_decision_seconds_count", "service=http"),
            1.0
        );
        assert_eq!(
            v("portico_routing_decision_seconds_sum", "service=http"),
            0.000002
        );
        // Listened-on services have empty histograms from the start.
        assert_eq!(
            v("portico_routing_decision_seconds_count", "service=https"),
            0.0
        );
        assert_eq!(
            v("portico_tls_handshake_seconds_count", "service=https"),
            0.0
        );
        assert!(!text.contains("portico_tls_handshake_seconds_count{service=\"http\"}"));
        assert!(text.contains("# TYPE portico_target_connect_seconds histogram"));
        assert!(text.contains("# UNIT portico_relayed_bytes bytes"));
    }

    #[test]
    fn an_empty_store_still_encodes() {
        let text = encode(MetricsStore::new().snapshot());
        let (map, _) = parse(&text);
        assert_eq!(value(&map, "portico_shards_reporting", ""), 0.0);
        assert!(!text.contains("portico_config_last_reload_successful"));
        let _ = SystemTime::now();
    }

    #[test]
    fn request_routing() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Route::Metrics { head_only: false }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head_only: true }
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET  /metrics HTTP/1.1\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe\r\n\r\n"), Route::BadRequest);
    }

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn server_answers_over_tcp() {
        let store = MetricsStore::new();
        let mut m = ShardMetrics::new();
        for _ in 0..7 {
            m.accepted(Service::Http);
        }
        store.update_shard(0, Box::new(m));
        let server = spawn_scrape_server("127.0.0.1:0".parse().unwrap(), store.clone()).unwrap();
        let addr = server.local_addr;

        let answer = get(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains(&format!("Content-Type: {CONTENT_TYPE}")),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        let (map, _) = parse(body);
        assert_eq!(
            value(&map, "portico_connections_accepted_total", "service=http"),
            7.0
        );

        // The next scrape sees the next report.
        let mut m = ShardMetrics::new();
        for _ in 0..9 {
            m.accepted(Service::Http);
        }
        store.update_shard(0, Box::new(m));
        let answer = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        let (map, _) = parse(answer.split_once("\r\n\r\n").unwrap().1);
        assert_eq!(
            value(&map, "portico_connections_accepted_total", "service=http"),
            9.0
        );

        let answer = get(addr, b"GET /other HTTP/1.1\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
        let answer = get(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
        let answer = get(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("\r\n\r\n"),
            "{answer}"
        );

        // An oversized head is refused after MAX_REQUEST bytes.
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST + 100, b'a');
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&big);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");

        // A client that connects and says nothing does not stop the server for long
        // (it is cut off after READ_TIMEOUT); one that hangs up is harmless.
        drop(TcpStream::connect(addr).unwrap());
        let answer = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    }
}
