//! The control thread: the only writer of rules and blacklist. It receives events
//! from the shards, counts rejects, bans and unbans sources, publishes new snapshots,
//! and writes the log lines to stdout.
//!
//! Owns: the event loop and the [`BlacklistAuthority`]. Reading and reloading the
//! configuration, and the shards, live elsewhere; the blacklist limits are taken from
//! whatever rules snapshot is current, so a reload changes them without a restart.
//!
//! Promises: a ban is published within 50 ms of the reject that caused it
//! (at once when the queue is idle); expired bans are dropped within 250 ms; lines
//! reach stdout whole, in the order the events arrived, flushed whenever the queue
//! runs empty. A failing stdout (closed pipe) drops lines, never stops the thread.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::blacklist::{BlacklistAuthority, RejectOutcome};
use crate::event::{Event, EventSender, EVENT_QUEUE};
use crate::log::{format_line, push_clean, push_timestamp};
use crate::snapshot::Shared;

/// How long the loop waits for an event before doing its periodic work.
const TICK: Duration = Duration::from_millis(250);

/// Longest a new ban waits to be published while events keep arriving.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// Pending output that is written even while events keep arriving.
const FLUSH_AT: usize = 64 * 1024;

/// Handle of the running control thread.
pub struct ControlThread {
    pub events: EventSender,
    pub join: std::thread::JoinHandle<()>,
}

impl ControlThread {
    /// Start the control thread over `shared` (whose current rules give the blacklist
    /// limits and log switches). It runs until every [`EventSender`] is dropped.
    pub fn spawn(shared: Arc<Shared>) -> std::io::Result<ControlThread> {
        let (tx, rx) = crossbeam_channel::bounded::<Event>(EVENT_QUEUE);
        let join = std::thread::Builder::new()
            .name("portico-control".into())
            .spawn(move || run(&rx, shared, &mut Stdout))?;
        Ok(ControlThread {
            events: EventSender::new(tx),
            join,
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
fn run(rx: &Receiver<Event>, shared: Arc<Shared>, out: &mut dyn Write) {
    let start = Instant::now();
    let mut state = ControlState::new(shared, start);
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
            return;
        }
    }
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
}

impl ControlState {
    fn new(shared: Arc<Shared>, now: Instant) -> Self {
        let mut state = ControlState {
            shared,
            authority: BlacklistAuthority::new(0, Duration::ZERO),
            generation: 0,
            per_min: 0,
            expiration: Duration::ZERO,
            dirty: false,
            last_publish: now,
            pending: String::new(),
        };
        state.refresh_limits();
        state
    }

    /// Take the blacklist limits from the current rules when they changed.
    fn refresh_limits(&mut self) {
        let rules = self.shared.rules();
        if rules.generation != self.generation {
            let proxy = &rules.config.proxy;
            self.generation = rules.generation;
            self.per_min = proxy.suspicious_requests_per_min;
            self.expiration = proxy.blacklist_expiration;
            self.authority.set_limits(self.per_min, self.expiration);
        }
    }

    fn handle(&mut self, event: Event, now: Instant, wall: SystemTime) {
        match event {
            Event::Reject { source } => {
                self.refresh_limits();
                if self.authority.record_reject(source, now) == RejectOutcome::Banned {
                    self.dirty = true;
                    self.banned_line(source, wall);
                }
            }
            Event::Log(record) => {
                format_line(&record, &mut self.pending);
                self.pending.push('\n');
            }
            Event::Notice(message) => {
                push_timestamp(wall, &mut self.pending);
                self.pending.push_str(" PORTICO ");
                push_clean(&message, &mut self.pending);
                self.pending.push('\n');
            }
        }
    }

    fn banned_line(&mut self, source: IpAddr, wall: SystemTime) {
        use std::fmt::Write as _;
        push_timestamp(wall, &mut self.pending);
        let e = self.expiration;
        let _ = if e.subsec_nanos() == 0 {
            write!(
                self.pending,
                " REVERSE-PROXY blacklisted {source} for {}s",
                e.as_secs()
            )
        } else {
            write!(
                self.pending,
                " REVERSE-PROXY blacklisted {source} for {:.1}s",
                e.as_secs_f64()
            )
        };
        let _ = writeln!(
            self.pending,
            " after {} rejects in a minute",
            u64::from(self.per_min) + 1
        );
    }

    /// Periodic work: limits after a reload, expired bans and stale counts.
    fn tick(&mut self, now: Instant, _wall: SystemTime) {
        self.refresh_limits();
        if self.authority.expire(now) {
            self.dirty = true;
        }
    }

    /// Publish the blacklist if it changed.
    fn publish(&mut self, now: Instant) {
        if self.dirty {
            self.shared.publish_blacklist(self.authority.view());
            self.dirty = false;
        }
        self.last_publish = now;
    }

    /// Write the pending lines; on error they are dropped (stdout closed: nobody
    /// would read them).
    fn flush(&mut self, out: &mut dyn Write) {
        if !self.pending.is_empty() {
            let _ = out
                .write_all(self.pending.as_bytes())
                .and_then(|()| out.flush());
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
        let mut s = ControlState::new(shared.clone(), t0);
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
        let mut s = ControlState::new(shared.clone(), t0);
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
        let mut s = ControlState::new(shared, Instant::now());
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
        run(&rx, shared.clone(), &mut out);
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].ends_with(" PORTICO hello"));
        assert!(lines[1].ends_with(
            " REVERSE-PROXY blacklisted 192.0.2.9 for 300s after 2 rejects in a minute"
        ));
        assert!(shared.blacklist().contains(ip("192.0.2.9"), Instant::now()));
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
    }
}
