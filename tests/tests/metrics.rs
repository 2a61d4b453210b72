//! `GET /metrics` (issue 3, item 3), read with a real Prometheus text parser
//! (prometheus-parse): the counters move by exactly what the test sent.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::thread;
use std::time::{Duration, Instant};

use portico_tests::client::{connect, exchange, read_response, status_of};
use portico_tests::ops::{self, Tunnel};
use portico_tests::site::{Lab, APPS, HQ};
use portico_tests::{free_port, wait_for};
use prometheus_parse::{Scrape, Value};

/// A parsed scrape, and the text it came from.
struct Metrics {
    scrape: Scrape,
    text: String,
}

impl Metrics {
    fn parse(text: String) -> Metrics {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("prometheus-parse reads the exposition");
        Metrics { scrape, text }
    }

    fn fetch(port: u16) -> Metrics {
        Metrics::parse(ops::scrape(port))
    }

    /// The sample `name` whose labels are exactly `labels`.
    fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<&prometheus_parse::Sample> {
        self.scrape.samples.iter().find(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The value of a counter, gauge or untyped sample; a histogram's count.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.sample(name, labels).map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(f64::NAN, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
    }

    /// Every series of `name` (labels rendered sorted) with its value.
    fn series(&self, name: &str) -> BTreeMap<String, f64> {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                    Some((s.labels.to_string(), v))
                }
                _ => None,
            })
            .collect()
    }
}

/// What one check expects: a series and how much it moves (or where it ends).
enum Want {
    /// Moves by exactly this much.
    Delta(f64),
    /// Moves by at least this much.
    AtLeast(f64),
    /// Ends at this value.
    Equals(f64),
}

struct Check {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    want: Want,
}

fn check(name: &'static str, labels: &[(&'static str, &str)], want: Want) -> Check {
    Check {
        name,
        labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        want,
    }
}

/// The checks that fail on `now` against `base` (a missing series counts as 0).
fn mismatches(base: &Metrics, now: &Metrics, checks: &[Check]) -> Vec<String> {
    let mut out = Vec::new();
    for c in checks {
        let labels: Vec<(&str, &str)> = c.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let before = base.value(c.name, &labels).unwrap_or(0.0);
        let after = now.value(c.name, &labels).unwrap_or(0.0);
        let ok = match c.want {
            Want::Delta(d) => after - before == d,
            Want::AtLeast(d) => after - before >= d,
            Want::Equals(v) => after == v,
        };
        if !ok {
            let want = match c.want {
                Want::Delta(d) => format!("+{d}"),
                Want::AtLeast(d) => format!(">= +{d}"),
                Want::Equals(v) => format!("= {v}"),
            };
            out.push(format!(
                "{}{labels:?}: {before} -> {after}, wanted {want}",
                c.name
            ));
        }
    }
    out
}

/// Scrapes until every check holds (shards report every second: up to 6 s), then
/// once more a report period later, so that nothing moves past what was expected.
fn expect(port: u16, base: &Metrics, checks: &[Check]) -> Metrics {
    let mut last = Vec::new();
    let held = wait_for(Duration::from_secs(6), || {
        let now = Metrics::fetch(port);
        last = mismatches(base, &now, checks);
        last.is_empty().then_some(())
    });
    let now = Metrics::fetch(port);
    assert!(
        held.is_some(),
        "the metrics did not reach what the test sent:\n{}\n---- last scrape ----\n{}",
        last.join("\n"),
        now.text
    );
    thread::sleep(Duration::from_millis(1300));
    let now = Metrics::fetch(port);
    let moved = mismatches(base, &now, checks);
    assert!(
        moved.is_empty(),
        "the metrics moved past what the test sent:\n{}\n---- scrape ----\n{}",
        moved.join("\n"),
        now.text
    );
    now
}

/// Waits until two scrapes a report period apart are the same and every shard has
/// reported: the state before the test's traffic.
fn settled(port: u16, shards: f64) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut previous = ops::wait_scrape(port);
    loop {
        thread::sleep(Duration::from_millis(1100));
        let now = ops::scrape(port);
        let m = Metrics::parse(now.clone());
        if now == previous && m.value("portico_shards_reporting", &[]) == Some(shards) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics did not settle:\n{now}"
        );
        previous = now;
    }
}

#[test]
fn metrics_count_exactly_what_was_sent() {
    let mut lab = Lab::new();
    let port = free_port();
    lab.site
        .append(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let _portico = lab.start_with(&["--shards", "2"]);

    // The endpoint itself.
    let reply = ops::scrape_path(port, "/metrics").expect("the scrape endpoint answers");
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .content_type
            .starts_with("application/openmetrics-text")
            || reply.content_type.starts_with("text/plain"),
        "content type {:?}",
        reply.content_type
    );
    assert!(
        reply.body.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF"
    );
    let other = ops::scrape_path(port, "/other").expect("answer");
    assert_eq!(other.status, 404);

    let base = settled(port, 2.0);
    for name in [
        "portico_connections_accepted_total",
        "portico_forwarded_total",
        "portico_rejected_total",
        "portico_relayed_bytes_total",
        "portico_active_connections",
        "portico_active_tunnels",
        "portico_tls_handshakes_total",
        "portico_blacklist_hits_total",
        "portico_config_generation",
        "portico_config_last_reload_successful",
        "portico_blacklist_size",
    ] {
        assert!(
            base.scrape.samples.iter().any(|s| s.metric == name),
            "no {name} in the scrape:\n{}",
            base.text
        );
    }
    for name in [
        "portico_routing_decision_seconds",
        "portico_target_connect_seconds",
        "portico_tls_handshake_seconds",
    ] {
        assert!(
            base.scrape
                .samples
                .iter()
                .any(|s| s.metric == name && matches!(s.value, Value::Histogram(_))),
            "no histogram {name} in the scrape:\n{}",
            base.text
        );
    }

    // Five forwarded requests over plain HTTP, one connection each.
    let curl = lab.curl();
    for i in 0..5 {
        let run = curl.fetch(&lab.http_url(HQ, &format!("/PBX0/APPS/m{i}")));
        assert_eq!(run.statuses(), [200], "{}", run.stderr);
    }
    // Three over HTTPS on one keep-alive connection.
    let urls: Vec<String> = (0..3)
        .map(|i| lab.https_url(APPS, &format!("/a{i}")))
        .collect();
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let run = curl.get(&refs);
    assert_eq!(run.statuses(), [200, 200, 200], "{}", run.stderr);
    assert!(
        run.replies.iter().skip(1).all(|r| r.connects == 0),
        "curl must reuse its connection"
    );
    // Rejects: two without a rule, one without a host, one smuggling attempt.
    for _ in 0..2 {
        let run = curl.fetch(&lab.http_url(HQ, "/PBX0/CONFIG"));
        assert_eq!(run.statuses(), [403]);
    }
    let run = curl.fetch(&lab.http_url("unknown.dvl-ckl2.net", "/x"));
    assert_eq!(run.statuses(), [421]);
    let smuggled = exchange(
        lab.http_port(),
        b"POST /PBX0/APPS/s HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(status_of(&smuggled), Some(400));
    // Bytes: 100 kB up, 200 kB down.
    let upload = vec![b'u'; 100_000];
    let run = lab
        .curl()
        .body(&upload)
        .fetch(&lab.http_url(HQ, "/PBX0/APPS/upload"));
    assert_eq!(run.statuses(), [200]);
    let run = curl.fetch(&lab.http_url(HQ, "/PBX0/APPS/big/200000"));
    assert_eq!(run.statuses(), [200]);
    assert_eq!(run.reply().body.len(), 200_000);

    let master = format!("127.0.0.1:{}", lab.master.http.port);
    let apps_tls = format!("127.0.0.1:{}", lab.apps.tls.port);
    let checks = [
        check(
            "portico_connections_accepted_total",
            &[("service", "http")],
            Want::Delta(11.0),
        ),
        check(
            "portico_connections_accepted_total",
            &[("service", "https")],
            Want::Delta(1.0),
        ),
        check(
            "portico_forwarded_total",
            &[("service", "http")],
            Want::Delta(7.0),
        ),
        check(
            "portico_forwarded_total",
            &[("service", "https")],
            Want::Delta(3.0),
        ),
        check(
            "portico_forwarded_by_target_total",
            &[("service", "http"), ("host", HQ), ("target", &master)],
            Want::Delta(7.0),
        ),
        check(
            "portico_forwarded_by_target_total",
            &[("service", "https"), ("host", APPS), ("target", &apps_tls)],
            Want::Delta(3.0),
        ),
        check(
            "portico_rejected_total",
            &[("service", "http"), ("reason", "no_rule")],
            Want::Delta(2.0),
        ),
        check(
            "portico_rejected_total",
            &[("service", "http"), ("reason", "no_host")],
            Want::Delta(1.0),
        ),
        check(
            "portico_rejected_total",
            &[("service", "http"), ("reason", "smuggling")],
            Want::Delta(1.0),
        ),
        check(
            "portico_tls_handshakes_total",
            &[("service", "https")],
            Want::Delta(1.0),
        ),
        check(
            "portico_relayed_bytes_total",
            &[("service", "http"), ("direction", "client_to_target")],
            Want::AtLeast(100_000.0),
        ),
        check(
            "portico_relayed_bytes_total",
            &[("service", "http"), ("direction", "target_to_client")],
            Want::AtLeast(200_000.0),
        ),
        check(
            "portico_relayed_bytes_total",
            &[("service", "https"), ("direction", "target_to_client")],
            Want::AtLeast(3.0 * "apps /a0".len() as f64),
        ),
        check(
            "portico_routing_decision_seconds",
            &[("service", "http")],
            Want::Delta(7.0),
        ),
        check(
            "portico_routing_decision_seconds",
            &[("service", "https")],
            Want::Delta(3.0),
        ),
        // The seven plain requests went on new target connections or on pooled
        // ones (how many of each depends on when curl's closed connections were
        // noticed); the sum is checked below.
        check(
            "portico_target_connect_seconds",
            &[("service", "http")],
            Want::AtLeast(1.0),
        ),
        check(
            "portico_target_connect_seconds",
            &[("service", "https")],
            Want::Delta(1.0),
        ),
        check(
            "portico_tls_handshake_seconds",
            &[("service", "https")],
            Want::Delta(1.0),
        ),
        check(
            "portico_active_connections",
            &[("service", "http")],
            Want::Equals(0.0),
        ),
        check(
            "portico_active_connections",
            &[("service", "https")],
            Want::Equals(0.0),
        ),
        check("portico_blacklist_size", &[], Want::Equals(0.0)),
        check("portico_config_generation", &[], Want::Equals(1.0)),
        check(
            "portico_config_last_reload_successful",
            &[],
            Want::Equals(1.0),
        ),
    ];
    let after = expect(port, &base, &checks);

    // Every plain request had a target connection: opened for it, or from the pool.
    let delta = |name: &str| {
        let labels = [("service", "http")];
        after.value(name, &labels).unwrap_or(0.0) - base.value(name, &labels).unwrap_or(0.0)
    };
    assert_eq!(
        delta("portico_target_connect_seconds") + delta("portico_target_connections_reused_total"),
        7.0,
        "{}",
        after.text
    );
    // The upload (a body) never rides on a pooled connection, and the five GETs one
    // after the other find the first one's connection at least once.
    assert!(
        delta("portico_target_connections_reused_total") >= 1.0,
        "{}",
        after.text
    );

    // Nothing else moved: the rejects by every reason add up to the four sent, and no
    // source was turned away at accept.
    let rejected = |m: &Metrics| m.series("portico_rejected_total").values().sum::<f64>();
    assert_eq!(
        rejected(&after) - rejected(&base),
        4.0,
        "rejects other than the ones sent:\n{}",
        after.text
    );
    let hits = |m: &Metrics| {
        m.series("portico_blacklist_hits_total")
            .values()
            .sum::<f64>()
    };
    assert_eq!(hits(&after), hits(&base));
    // The histograms' _sum and _count agree with the buckets.
    let count = after
        .value(
            "portico_routing_decision_seconds_count",
            &[("service", "http")],
        )
        .expect("_count of the routing-decision histogram");
    assert_eq!(
        Some(count),
        after.value("portico_routing_decision_seconds", &[("service", "http")]),
        "the +Inf bucket is the count"
    );
    let sum = after
        .value(
            "portico_routing_decision_seconds_sum",
            &[("service", "http")],
        )
        .expect("_sum");
    assert!(
        sum > 0.0 && sum < 7.0 * 10.0,
        "routing decisions take between 0 and 10 s: sum {sum}"
    );
}

#[test]
fn active_connections_and_tunnels_are_gauges() {
    let mut lab = Lab::new();
    let port = free_port();
    lab.site
        .append(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let _portico = lab.start_with(&["--shards", "2"]);
    let base = settled(port, 2.0);
    let gauge = |service: &'static str, want: f64| {
        vec![
            check(
                "portico_active_connections",
                &[("service", service)],
                Want::Equals(want),
            ),
            check(
                "portico_active_tunnels",
                &[("service", service)],
                Want::Equals(0.0),
            ),
        ]
    };

    // One keep-alive connection after an exchange.
    let stream = connect(lab.http_port());
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    writer
        .write_all(format!("GET /PBX0/APPS/g HTTP/1.1\r\nHost: {HQ}\r\n\r\n").as_bytes())
        .expect("send");
    assert_eq!(read_response(&mut reader).expect("answer").status, 200);
    expect(port, &base, &gauge("http", 1.0));

    // Plus a tunnel.
    let mut tunnel = Tunnel::open(lab.http_port(), "master");
    assert_eq!(tunnel.echo("x").expect("echo"), "x");
    let mut with_tunnel = gauge("http", 2.0);
    with_tunnel[1] = check(
        "portico_active_tunnels",
        &[("service", "http")],
        Want::Equals(1.0),
    );
    expect(port, &base, &with_tunnel);

    // Both closed: back to zero.
    drop(tunnel);
    drop(writer);
    drop(reader);
    expect(port, &base, &gauge("http", 0.0));
}
