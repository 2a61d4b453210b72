//! The control thread: the only writer of rules and blacklist. It receives events
//! from the shards, counts rejects, bans and unbans sources, publishes new snapshots,
//! keeps the shards' metrics, and writes the log lines to stdout and syslog.
//!
//! Owns: the event loop, the [`BlacklistAuthority`], the log outputs (stdout and the
//! [`SyslogSink`]) and the control side of the [`MetricsStore`]; it starts the scrape
//! server when `[metrics]` is configured. Reading and reloading the configuration, and
//! the shards, live elsewhere; the blacklist limits and the `[log]` outputs are taken
//! from whatever rules snapshot is current, so a reload changes them without a
//! restart (a changed `[metrics] listen` needs one).
//!
//! Promises: a ban is published within 50 ms of the reject that caused it
//! (at once when the queue is idle); expired bans are dropped within 250 ms; lines
//! reach stdout whole, in the order the events arrived, flushed whenever the queue
//! runs empty. A failing stdout (closed pipe) drops lines, never stops the thread;
//! syslog never blocks it (a message the socket does not take is dropped). Dropped
//! lines are counted in the metrics.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::blacklist::{BlacklistAuthority, RejectOutcome};
use crate::config::{ListenConfig, LogConfig};
use crate::event::{Event, EventSender, EVENT_QUEUE};
use crate::log::{format_line, push_clean, push_timestamp, Outcome};
use crate::metrics::{MetricsStore, ReloadOutcome, Service};
use crate::scrape::{spawn_scrape_server, ScrapeServer};
use crate::snapshot::Shared;
use crate::syslog::{Severity, SyslogSink};

/// How long the loop waits for an event before doing its periodic work.
const TICK: Duration = Duration::from_millis(250);

/// Longest a new ban waits to be published while events keep arriving.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// Pending output that is written even while events keep arriving.
const FLUSH_AT: usize = 64 * 1024;

/// How often a syslog destination that could not be opened is tried again.
const SYSLOG_RETRY: Duration = Duration::from_secs(60);

/// Handle of the running control thread.
pub struct ControlThread {
    pub events: EventSender,
    pub join: std::thread::JoinHandle<()>,
    /// The shards' latest metrics and the control thread's own; also where a refused
    /// reload is recorded ([`MetricsStore::record_reload`]).
    pub metrics: Arc<MetricsStore>,
    /// The scrape server, when `[metrics]` is configured.
    pub scrape: Option<ScrapeServer>,
}

impl ControlThread {
    /// Start the control thread over `shared` (whose current rules give the blacklist
    /// limits and log outputs), and the scrape server when the rules have `[metrics]`.
    /// The control thread runs until every [`EventSender`] is dropped; the scrape
    /// server for the life of the process.
    pub fn spawn(shared: Arc<Shared>) -> std::io::Result<ControlThread> {
        let metrics = MetricsStore::new();
        let scrape = match &shared.rules().config.metrics {
            Some(m) => Some(spawn_scrape_server(m.listen, metrics.clone())?),
            None => None,
        };
        let (tx, rx) = crossbeam_channel::bounded::<Event>(EVENT_QUEUE);
        let store = metrics.clone();
        let join = std::thread::Builder::new()
            .name("portico-control".into())
            .spawn(move || run(&rx, shared, store, &mut Stdout))?;
        Ok(ControlThread {
            events: EventSender::new(tx),
            join,
            metrics,
            scrape,
        })
    }
}

/// Process's stdout, locked for each write only: a panic message or another thread's
/// `println!` is never blocked behind the control thread.
struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(buf)?;
        out.flush()
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

/// The event loop; returns when every sender is dropped and the queue is drained.
fn run(rx: &Receiver<Event>, shared: Arc<Shared>, metrics: Arc<MetricsStore>, out: &mut dyn Write) {
    let start = Instant::now();
    let mut state = ControlState::new(shared, metrics, start, SystemTime::now());
    let mut last_tick = start;
    loop {
        let received = rx.recv_timeout(TICK);
        let now = Instant::now();
        let disconnected = match received {
            Ok(event) => {
                state.handle(event, now, SystemTime::now());
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if now.saturating_duration_since(last_tick) >= TICK {
            state.tick(now, SystemTime::now());
            last_tick = now;
        }
        let idle = rx.is_empty();
        if idle || now.saturating_duration_since(state.last_publish) >= PUBLISH_EVERY {
            state.publish(now);
        }
        if idle || state.pending.len() >= FLUSH_AT {
            state.flush(out);
        }
        if disconnected {
            state.sync_metrics();
            return;
        }
    }
}

/// The services a listen section opens, as the metrics name them.
fn listening(listen: &ListenConfig) -> Vec<Service> {
    [
        (listen.http, Service::Http),
        (listen.https, Service::Https),
        (listen.ldap, Service::Ldap),
        (listen.ldaps, Service::Ldaps),
        (listen.sip, Service::Sip),
        (listen.sips, Service::Sips),
        (listen.h323, Service::H323),
        (listen.h323_tls, Service::H323Tls),
    ]
    .into_iter()
    .filter_map(|(port, service)| port.map(|_| service))
    .collect()
}

/// Everything the loop keeps between events; driven by [`run`], or directly by tests
/// with a virtual clock.
struct ControlState {
    shared: Arc<Shared>,
    authority: BlacklistAuthority,
    /// Generation of the rules the limits were taken from.
    generation: u64,
    per_min: u32,
    expiration: Duration,
    /// The banned set changed since the last publish.
    dirty: bool,
    last_publish: Instant,
    /// Lines not yet written, each ending in `\n`.
    pending: String,
    /// The line being emitted (seed style, with its timestamp).
    line: String,
    /// Where lines go, as last configured.
    log: LogConfig,
    /// Open when `log.syslog` is set and could be opened.
    syslog: Option<SyslogSink>,
    /// When to try again to open a syslog destination that failed to open.
    syslog_retry: Option<Instant>,
    /// Syslog lines dropped other than by the open sink (closed sinks, no sink).
    syslog_dropped: u64,
    stdout_dropped: u64,
    blacklist_size: usize,
    metrics: Arc<MetricsStore>,
    /// (blacklist size, stdout drops, syslog drops) as last handed to `metrics`.
    synced: (usize, u64, u64),
}

impl ControlState {
    fn new(
        shared: Arc<Shared>,
        metrics: Arc<MetricsStore>,
        now: Instant,
        wall: SystemTime,
    ) -> Self {
        let mut state = ControlState {
            shared,
            authority: BlacklistAuthority::new(0, Duration::ZERO),
            generation: 0,
            per_min: 0,
            expiration: Duration::ZERO,
            dirty: false,
            last_publish: now,
            pending: String::new(),
            line: String::new(),
            log: LogConfig::default(),
            syslog: None,
            syslog_retry: None,
            syslog_dropped: 0,
            stdout_dropped: 0,
            blacklist_size: 0,
            metrics,
            synced: (0, 0, 0),
        };
        state.refresh_config(now, wall);
        state
    }

    /// Take the blacklist limits and log outputs from the current rules when they
    /// changed; a new generation is an applied (re)load.
    fn refresh_config(&mut self, now: Instant, wall: SystemTime) {
        let rules = self.shared.rules();
        if rules.generation == self.generation {
            return;
        }
        let config = &rules.config;
        let proxy = &config.proxy;
        self.generation = rules.generation;
        self.per_min = proxy.suspicious_requests_per_min;
        self.expiration = proxy.blacklist_expiration;
        self.authority.set_limits(self.per_min, self.expiration);
        let generation = rules.generation;
        let services = listening(&proxy.listen);
        self.metrics.update_control(|c| {
            c.generation = generation;
            c.last_reload = Some((ReloadOutcome::Applied, wall));
            c.listening = services;
        });
        if config.log != self.log {
            self.log = config.log.clone();
            self.close_syslog();
            self.open_syslog(now, wall);
        }
    }

    fn close_syslog(&mut self) {
        if let Some(sink) = self.syslog.take() {
            self.syslog_dropped += sink.dropped();
        }
        self.syslog_retry = None;
    }

    /// Open the configured syslog destination; on failure say so and retry later.
    fn open_syslog(&mut self, now: Instant, wall: SystemTime) {
        match SyslogSink::open(&self.log) {
            None => {}
            Some(Ok(sink)) => {
                self.syslog = Some(sink);
                self.syslog_retry = None;
            }
            Some(Err(e)) => {
                self.syslog_retry = Some(now + SYSLOG_RETRY);
                let target = self.log.syslog.as_ref().map(ToString::to_string);
                self.notice(
                    &format!(
                        "syslog {}: cannot open: {e}; lines are dropped, trying again in {}s",
                        target.unwrap_or_default(),
                        SYSLOG_RETRY.as_secs()
                    ),
                    Severity::Error,
                    wall,
                );
            }
        }
    }

    fn handle(&mut self, event: Event, now: Instant, wall: SystemTime) {
        match event {
            Event::Reject { source } => {
                self.refresh_config(now, wall);
                if self.authority.record_reject(source, now) == RejectOutcome::Banned {
                    self.dirty = true;
                    self.banned_line(source, wall);
                }
            }
            Event::Log(record) => {
                self.line.clear();
                format_line(&record, &mut self.line);
                let (severity, msgid) = match record.outcome {
                    Outcome::Forwarded { .. } => (Severity::Informational, "forwarded"),
                    Outcome::Rejected { .. } => (Severity::Notice, "rejected"),
                };
                self.emit(severity, msgid, record.time);
            }
            Event::Notice(message) => self.notice(&message, Severity::Informational, wall),
            Event::Metrics { shard, metrics } => self.metrics.update_shard(shard, metrics),
        }
    }

    /// A `PORTICO` line.
    fn notice(&mut self, message: &str, severity: Severity, wall: SystemTime) {
        self.line.clear();
        push_timestamp(wall, &mut self.line);
        self.line.push_str(" PORTICO ");
        push_clean(message, &mut self.line);
        self.emit(severity, "notice", wall);
    }

    fn banned_line(&mut self, source: IpAddr, wall: SystemTime) {
        use std::fmt::Write as _;
        self.line.clear();
        push_timestamp(wall, &mut self.line);
        let e = self.expiration;
        let _ = if e.subsec_nanos() == 0 {
            write!(
                self.line,
                " REVERSE-PROXY blacklisted {source} for {}s",
                e.as_secs()
            )
        } else {
            write!(
                self.line,
                " REVERSE-PROXY blacklisted {source} for {:.1}s",
                e.as_secs_f64()
            )
        };
        let _ = write!(
            self.line,
            " after {} rejects in a minute",
            u64::from(self.per_min) + 1
        );
        self.emit(Severity::Warning, "notice", wall);
    }

    /// Hand `self.line` to the outputs: stdout as it is, syslog without the leading
    /// timestamp (the message header carries it).
    fn emit(&mut self, severity: Severity, msgid: &str, time: SystemTime) {
        if self.log.stdout {
            self.pending.push_str(&self.line);
            self.pending.push('\n');
        }
        if self.log.syslog.is_some() {
            let msg = self
                .line
                .split_once(' ')
                .map_or(&*self.line, |(_, rest)| rest);
            match &mut self.syslog {
                Some(sink) => {
                    sink.send(severity, msgid, time, msg);
                }
                None => self.syslog_dropped += 1,
            }
        }
    }

    /// Periodic work: limits after a reload, expired bans and stale counts, a syslog
    /// destination to retry.
    fn tick(&mut self, now: Instant, wall: SystemTime) {
        self.refresh_config(now, wall);
        if self.authority.expire(now) {
            self.dirty = true;
        }
        if self.syslog_retry.is_some_and(|at| now >= at) {
            self.open_syslog(now, wall);
        }
    }

    /// Publish the blacklist if it changed, and the control thread's figures.
    fn publish(&mut self, now: Instant) {
        if self.dirty {
            let view = self.authority.view();
            self.blacklist_size = view.len();
            self.shared.publish_blacklist(view);
            self.dirty = false;
        }
        self.last_publish = now;
        self.sync_metrics();
    }

    /// Hand the figures that changed to the metrics store.
    fn sync_metrics(&mut self) {
        let syslog = self.syslog_dropped + self.syslog.as_ref().map_or(0, SyslogSink::dropped);
        let now = (self.blacklist_size, self.stdout_dropped, syslog);
        if now != self.synced {
            self.synced = now;
            self.metrics.update_control(|c| {
                c.blacklist_size = now.0;
                c.log_dropped_stdout = now.1;
                c.log_dropped_syslog = now.2;
            });
        }
    }

    /// Write the pending lines; on error they are dropped (stdout closed: nobody
    /// would read them) and counted.
    fn flush(&mut self, out: &mut dyn Write) {
        if !self.pending.is_empty() {
            let written = out
                .write_all(self.pending.as_bytes())
                .and_then(|()| out.flush());
            if written.is_err() {
                self.stdout_dropped += self.pending.matches('\n').count() as u64;
            }
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;
    use crate::log::{LogRecord, Outcome};
    use crate::rules::RuleTable;
    use crate::snapshot::RuleSnapshot;

    fn shared(proxy: &str) -> Arc<Shared> {
        let config = parse(Path::new("t.toml"), &format!("[proxy]\n{proxy}\n"))
            .unwrap_or_else(|e| panic!("{e:#?}"));
        Shared::new(Arc::new(config))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// 2020-10-28 19:16:26 UTC.
    fn wall() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_603_912_586)
    }

    #[test]
    fn rejects_ban_publish_and_expire() {
        let shared = shared("suspicious_requests_per_min = 2\nblacklist_expiration_min = 0.05");
        let t0 = Instant::now();
        let mut s = ControlState::new(shared.clone(), MetricsStore::new(), t0, wall());
        let src = ip("192.0.2.7");
        for i in 0..3 {
            s.handle(
                Event::Reject { source: src },
                t0 + Duration::from_millis(i),
                wall(),
            );
        }
        assert!(shared.blacklist().is_empty(), "published only by publish()");
        s.publish(t0);
        assert!(shared
            .blacklist()
            .contains(src, t0 + Duration::from_secs(1)));
        assert_eq!(s.pending, "20201028-191626 REVERSE-PROXY blacklisted 192.0.2.7 for 3s after 3 rejects in a minute\n");

        s.tick(t0 + Duration::from_millis(2_999), wall());
        s.publish(t0);
        assert_eq!(shared.blacklist().len(), 1);
        s.tick(t0 + Duration::from_millis(3_002), wall());
        s.publish(t0);
        assert!(shared.blacklist().is_empty());
    }

    #[test]
    fn reload_changes_limits() {
        let shared = shared("suspicious_requests_per_min = 0");
        let t0 = Instant::now();
        let mut s = ControlState::new(shared.clone(), MetricsStore::new(), t0, wall());
        let src = ip("192.0.2.7");
        for _ in 0..10 {
            s.handle(Event::Reject { source: src }, t0, wall());
        }
        assert!(s.pending.is_empty(), "per_min = 0 never bans");
        let config = parse(
            Path::new("t.toml"),
            "[proxy]\nsuspicious_requests_per_min = 1\nblacklist_expiration_min = 1\n",
        )
        .unwrap();
        let rules = RuleTable::from_config(&config);
        shared.publish_rules(RuleSnapshot {
            generation: 2,
            config: Arc::new(config),
            rules,
        });
        s.handle(Event::Reject { source: src }, t0, wall());
        s.handle(Event::Reject { source: src }, t0, wall());
        assert!(
            s.pending
                .contains("blacklisted 192.0.2.7 for 60s after 2 rejects"),
            "{}",
            s.pending
        );
    }

    #[test]
    fn log_and_notice_lines() {
        let shared = shared("");
        let mut s = ControlState::new(shared, MetricsStore::new(), Instant::now(), wall());
        let record = LogRecord {
            time: wall(),
            conn_id: 13,
            source: ip("192.168.178.59"),
            scheme: "https",
            host: "hq.dvl-ckl2.net".into(),
            summary: "GET /PBX0/APPS/x HTTP/1.1".into(),
            outcome: Outcome::Forwarded {
                target: "172.31.31.2:443".parse().unwrap(),
                new_connection: true,
            },
        };
        s.handle(Event::Log(Box::new(record)), Instant::now(), wall());
        s.handle(
            Event::Notice("listening on 127.0.0.1:8090\nsecond line".into()),
            Instant::now(),
            wall(),
        );
        let mut out = Vec::new();
        s.flush(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "20201028-191626 REVERSE-PROXY 13 192.168.178.59 https://hq.dvl-ckl2.net GET /PBX0/APPS/x HTTP/1.1 -> 172.31.31.2:443(new)\n\
             20201028-191626 PORTICO listening on 127.0.0.1:8090?second line\n"
        );
        assert!(s.pending.is_empty());
    }

    #[test]
    fn run_drains_the_queue_and_returns_when_senders_are_gone() {
        let shared = shared("suspicious_requests_per_min = 1");
        let (tx, rx) = crossbeam_channel::bounded(16);
        let events = EventSender::new(tx);
        assert!(events.send(Event::Notice("hello".into())));
        assert!(events.send(Event::Reject {
            source: ip("::ffff:192.0.2.9")
        }));
        assert!(events.send(Event::Reject {
            source: ip("192.0.2.9")
        }));
        drop(events);
        let mut out = Vec::new();
        run(&rx, shared.clone(), MetricsStore::new(), &mut out);
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].ends_with(" PORTICO hello"));
        assert!(lines[1].ends_with(
            " REVERSE-PROXY blacklisted 192.0.2.9 for 300s after 2 rejects in a minute"
        ));
        assert!(shared.blacklist().contains(ip("192.0.2.9"), Instant::now()));
    }

    fn receiver() -> (std::net::UdpSocket, u16) {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = rx.local_addr().unwrap().port();
        (rx, port)
    }

    fn recv(rx: &std::net::UdpSocket) -> String {
        let mut buf = [0u8; 4096];
        let n = rx.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// The RFC 5424 fields of `line`: (PRI, VERSION, TIMESTAMP, HOSTNAME, APP-NAME,
    /// PROCID, MSGID, STRUCTURED-DATA, MSG).
    fn rfc5424(
        line: &str,
    ) -> (
        u8,
        u8,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    ) {
        let rest = line.strip_prefix('<').unwrap();
        let (pri, rest) = rest.split_once('>').unwrap();
        let f: Vec<&str> = rest.splitn(8, ' ').collect();
        assert_eq!(f.len(), 8, "{line}");
        (
            pri.parse().unwrap(),
            f[0].parse().unwrap(),
            f[1].into(),
            f[2].into(),
            f[3].into(),
            f[4].into(),
            f[5].into(),
            f[6].into(),
            f[7].into(),
        )
    }

    #[test]
    fn lines_go_to_syslog_over_udp() {
        let (rx, port) = receiver();
        let shared = shared(&format!(
            "log_forwarded = true\nsuspicious_requests_per_min = 0\nblacklist_expiration_min = 1\n[log]\nsyslog = \"udp://127.0.0.1:{port}\"\nfacility = \"local3\"\napp_name = \"portico-test\""
        ));
        let store = MetricsStore::new();
        let mut s = ControlState::new(shared, store.clone(), Instant::now(), wall());
        let record = |outcome| LogRecord {
            time: wall(),
            conn_id: 13,
            source: ip("192.168.178.59"),
            scheme: "https",
            host: "hq.dvl-ckl2.net".into(),
            summary: "GET /PBX0/APPS/x HTTP/1.1".into(),
            outcome,
        };
        s.handle(
            Event::Log(Box::new(record(Outcome::Forwarded {
                target: "172.31.31.2:443".parse().unwrap(),
                new_connection: true,
            }))),
            Instant::now(),
            wall(),
        );
        let line = recv(&rx);
        let (pri, version, ts, host, app, procid, msgid, sd, msg) = rfc5424(&line);
        // local3 (19) * 8 + informational (6)
        assert_eq!((pri, version), (158, 1), "{line}");
        assert_eq!(ts, "2020-10-28T19:16:26.000000Z");
        assert!(!host.is_empty() && !host.contains(' '));
        assert_eq!(app, "portico-test");
        assert_eq!(procid, std::process::id().to_string());
        assert_eq!(msgid, "forwarded");
        assert_eq!(sd, "-", "{line}");
        assert_eq!(
            msg,
            "REVERSE-PROXY 13 192.168.178.59 https://hq.dvl-ckl2.net GET /PBX0/APPS/x HTTP/1.1 -> 172.31.31.2:443(new)"
        );

        s.handle(
            Event::Log(Box::new(record(Outcome::Rejected {
                reason: "no rule".into(),
            }))),
            Instant::now(),
            wall(),
        );
        let (pri, _, _, _, _, _, msgid, _, msg) = rfc5424(&recv(&rx));
        assert_eq!((pri, msgid.as_str()), (19 * 8 + 5, "rejected"));
        assert!(msg.ends_with("HTTP/1.1 rejected: no rule"), "{msg}");

        s.handle(Event::Notice("stopping".into()), Instant::now(), wall());
        let (pri, _, _, _, _, _, msgid, _, msg) = rfc5424(&recv(&rx));
        assert_eq!(
            (pri, msgid.as_str(), msg.as_str()),
            (19 * 8 + 6, "notice", "PORTICO stopping")
        );

        // Stdout still gets the seed-style lines.
        let mut out = Vec::new();
        s.flush(&mut out);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(out.ends_with("20201028-191626 PORTICO stopping\n"), "{out}");
        s.sync_metrics();
        assert_eq!(store.control().log_dropped_syslog, 0);
    }

    #[test]
    fn syslog_only_and_drops_are_counted() {
        // A local socket nobody listens on: every line is dropped, none blocks.
        let shared =
            shared("[log]\nstdout = false\nsyslog = \"unix:/nonexistent/portico-test/log\"");
        let store = MetricsStore::new();
        let mut s = ControlState::new(shared, store.clone(), Instant::now(), wall());
        for _ in 0..3 {
            s.handle(Event::Notice("x".into()), Instant::now(), wall());
        }
        assert!(s.pending.is_empty(), "stdout = false");
        s.publish(Instant::now());
        assert_eq!(store.control().log_dropped_syslog, 3);
    }

    #[test]
    fn metrics_events_and_reloads_reach_the_store() {
        use crate::metrics::{Counter, ShardMetrics};
        let shared = shared("[proxy.listen]\nhttp = 8080");
        let store = MetricsStore::new();
        let t0 = Instant::now();
        let mut s = ControlState::new(shared.clone(), store.clone(), t0, wall());
        let c = store.control();
        assert_eq!(c.generation, 1);
        assert_eq!(c.last_reload, Some((ReloadOutcome::Applied, wall())));
        assert_eq!(c.listening, [Service::Http]);

        let mut m = ShardMetrics::new();
        m.accepted(Service::Http);
        s.handle(
            Event::Metrics {
                shard: 1,
                metrics: Box::new(m.clone()),
            },
            t0,
            wall(),
        );
        m.accepted(Service::Http);
        s.handle(
            Event::Metrics {
                shard: 0,
                metrics: Box::new(m),
            },
            t0,
            wall(),
        );
        let snap = store.snapshot();
        assert_eq!(
            (
                snap.shards,
                snap.merged.counter(Counter::Accepted, Service::Http)
            ),
            (2, 3)
        );

        // A refused reload is recorded by the reloader; an applied one is seen here.
        let later = wall() + Duration::from_secs(60);
        store.record_reload(ReloadOutcome::Refused, later);
        s.tick(t0, later);
        assert_eq!(
            store.control().last_reload,
            Some((ReloadOutcome::Refused, later))
        );
        let config = parse(Path::new("t.toml"), "[proxy.listen]\nhttps = 8443\n").unwrap();
        let rules = RuleTable::from_config(&config);
        shared.publish_rules(RuleSnapshot {
            generation: 2,
            config: Arc::new(config),
            rules,
        });
        let later = later + Duration::from_secs(1);
        s.tick(t0, later);
        let c = store.control();
        assert_eq!(c.generation, 2);
        assert_eq!(c.last_reload, Some((ReloadOutcome::Applied, later)));
        assert_eq!(c.listening, [Service::Https]);
    }

    #[test]
    fn blacklist_size_is_published_to_the_store() {
        let shared = shared("suspicious_requests_per_min = 1");
        let store = MetricsStore::new();
        let t0 = Instant::now();
        let mut s = ControlState::new(shared, store.clone(), t0, wall());
        for src in ["192.0.2.1", "192.0.2.2"] {
            for _ in 0..2 {
                s.handle(Event::Reject { source: ip(src) }, t0, wall());
            }
        }
        s.publish(t0);
        assert_eq!(store.control().blacklist_size, 2);
    }

    #[test]
    fn failing_stdout_counts_dropped_lines() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let store = MetricsStore::new();
        let mut s = ControlState::new(shared(""), store.clone(), Instant::now(), wall());
        s.handle(Event::Notice("a".into()), Instant::now(), wall());
        s.handle(Event::Notice("b".into()), Instant::now(), wall());
        s.flush(&mut Closed);
        s.sync_metrics();
        assert_eq!(store.control().log_dropped_stdout, 2);
    }

    #[test]
    fn spawned_thread_exits_when_senders_drop() {
        let control = ControlThread::spawn(shared("")).unwrap();
        let events = control.events.clone();
        assert!(events.send(Event::Reject {
            source: ip("192.0.2.1")
        }));
        drop(events);
        drop(control.events);
        control.join.join().unwrap();
        assert!(control.scrape.is_none());
    }

    #[test]
    fn spawn_starts_the_scrape_server_when_configured() {
        // A port that was free a moment ago (the config refuses port 0).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = parse(
            Path::new("t.toml"),
            &format!("[proxy.listen]\nhttp = 8080\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        )
        .unwrap();
        let control = ControlThread::spawn(Shared::new(Arc::new(config))).unwrap();
        let addr = control.scrape.as_ref().unwrap().local_addr;
        assert_eq!(addr.port(), port);
        let mut m = crate::metrics::ShardMetrics::new();
        m.accepted(Service::Http);
        assert!(control.events.send(Event::Metrics {
            shard: 0,
            metrics: Box::new(m)
        }));
        // The control thread applies the event soon; poll the endpoint for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut body = String::new();
            std::io::Read::read_to_string(&mut s, &mut body).unwrap();
            assert!(body.starts_with("HTTP/1.1 200 "), "{body}");
            if body.contains("portico_connections_accepted_total{service=\"http\"} 1\n") {
                assert!(body.contains("portico_config_generation 1\n"), "{body}");
                break;
            }
            assert!(Instant::now() < deadline, "{body}");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(control.events);
        control.join.join().unwrap();
    }
}
