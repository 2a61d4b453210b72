//! Syslog (issue 3, item 4): with `[log] syslog = "udp://…"` the start notice and
//! the forwarded/rejected lines (and reload and stop) reach a UDP socket the test
//! opened, as RFC 5424 messages.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use portico_tests::ops;
use portico_tests::site::{Lab, HQ};

/// local3 (RFC 5424 section 6.2.1).
const FACILITY: u8 = 19;
const APP: &str = "portico-e2e";

/// One RFC 5424 message: `<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`.
#[derive(Debug)]
struct Message {
    pri: u8,
    version: u8,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    structured_data: String,
    msg: String,
    raw: String,
}

fn parse(raw: &str) -> Message {
    let rest = raw
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("no PRI: {raw:?}"));
    let (pri, rest) = rest
        .split_once('>')
        .unwrap_or_else(|| panic!("no PRI: {raw:?}"));
    let fields: Vec<&str> = rest.splitn(8, ' ').collect();
    assert_eq!(fields.len(), 8, "not RFC 5424 (too few fields): {raw:?}");
    Message {
        pri: pri
            .parse()
            .unwrap_or_else(|_| panic!("PRI {pri:?}: {raw:?}")),
        version: fields[0]
            .parse()
            .unwrap_or_else(|_| panic!("VERSION: {raw:?}")),
        timestamp: fields[1].to_string(),
        hostname: fields[2].to_string(),
        app_name: fields[3].to_string(),
        procid: fields[4].to_string(),
        msgid: fields[5].to_string(),
        structured_data: fields[6].to_string(),
        msg: fields[7].to_string(),
        raw: raw.to_string(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` (RFC 5424 section 6.2.3, in UTC).
fn is_rfc3339_utc(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && ts.ends_with('Z')
        && (b[19] == b'Z' || (b[19] == b'.' && digits(20..b.len() - 1) && b.len() > 21))
}

/// The messages received so far, and a way to wait for more.
struct Receiver {
    socket: UdpSocket,
    got: Vec<Message>,
}

impl Receiver {
    fn open() -> Receiver {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the syslog receiver");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        Receiver {
            socket,
            got: Vec::new(),
        }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().expect("addr").port()
    }

    /// Receives (up to 5 s) until a message for which `wanted` holds arrives.
    fn wait(&mut self, what: &str, wanted: impl Fn(&Message) -> bool) -> &Message {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(i) = self.got.iter().position(&wanted) {
                return &self.got[i];
            }
            assert!(
                Instant::now() < deadline,
                "no syslog message {what}; received:\n{}",
                self.got
                    .iter()
                    .map(|m| m.raw.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.socket.recv(&mut buf) {
                let raw = String::from_utf8(buf[..n].to_vec()).expect("UTF-8 message");
                self.got.push(parse(&raw));
            }
        }
    }
}

/// The fixed parts every message of this portico must have.
fn assert_header(m: &Message, severity: u8, msgid: &str, pid: u32) {
    assert_eq!(
        m.pri,
        FACILITY * 8 + severity,
        "PRI = facility local3 * 8 + severity {severity}: {}",
        m.raw
    );
    assert_eq!(m.version, 1, "{}", m.raw);
    assert!(is_rfc3339_utc(&m.timestamp), "TIMESTAMP: {}", m.raw);
    assert!(
        !m.hostname.is_empty() && m.hostname.bytes().all(|b| (33..=126).contains(&b)),
        "HOSTNAME: {}",
        m.raw
    );
    assert_eq!(m.app_name, APP, "{}", m.raw);
    assert_eq!(
        m.procid,
        pid.to_string(),
        "PROCID is portico's pid: {}",
        m.raw
    );
    assert_eq!(m.msgid, msgid, "{}", m.raw);
    assert_eq!(m.structured_data, "-", "{}", m.raw);
}

#[test]
fn start_forwarded_rejected_reload_and_stop_reach_syslog_as_rfc5424() {
    let mut receiver = Receiver::open();
    let mut lab = Lab::new();
    lab.site.append(&format!(
        "[log]\nsyslog = \"udp://127.0.0.1:{}\"\nfacility = \"local3\"\napp_name = \"{APP}\"\n",
        receiver.port()
    ));
    let mut portico = lab.start();
    let pid = portico.pid();

    let start = receiver.wait("for the start", |m| {
        m.msg.starts_with("PORTICO started with")
    });
    assert_header(start, 6, "notice", pid);
    assert!(
        start
            .msg
            .contains(&format!("http 127.0.0.1:{}", lab.http_port())),
        "{}",
        start.raw
    );

    let run = lab.curl().fetch(&lab.http_url(HQ, "/PBX0/APPS/syslog"));
    assert_eq!(run.statuses(), [200]);
    let forwarded = receiver.wait("for the forwarded request", |m| {
        m.msgid == "forwarded" && m.msg.contains("/PBX0/APPS/syslog")
    });
    assert_header(forwarded, 6, "forwarded", pid);
    let tokens: Vec<&str> = forwarded.msg.split(' ').collect();
    assert_eq!(tokens[0], "REVERSE-PROXY", "{}", forwarded.raw);
    assert!(
        tokens[1].parse::<u64>().is_ok(),
        "connection id: {}",
        forwarded.raw
    );
    assert_eq!(
        tokens[2..].join(" "),
        format!(
            "127.0.0.1 http://{HQ} GET /PBX0/APPS/syslog HTTP/1.1 -> 127.0.0.1:{}(new)",
            lab.master.http.port
        ),
        "{}",
        forwarded.raw
    );

    let run = lab.curl().fetch(&lab.http_url(HQ, "/PBX0/CONFIG"));
    assert_eq!(run.statuses(), [403]);
    let rejected = receiver.wait("for the rejected request", |m| {
        m.msgid == "rejected" && m.msg.contains("/PBX0/CONFIG")
    });
    assert_header(rejected, 5, "rejected", pid);
    assert!(
        rejected.msg.starts_with("REVERSE-PROXY ")
            && rejected.msg.contains(&format!(
                "127.0.0.1 http://{HQ} GET /PBX0/CONFIG HTTP/1.1 rejected"
            )),
        "{}",
        rejected.raw
    );

    // A reload and the stop are told too.
    ops::signal(&portico, "HUP");
    let reload = receiver.wait("for the reload", |m| {
        m.msg.starts_with("PORTICO reload: generation 2")
    });
    assert_header(reload, 6, "notice", pid);
    ops::signal(&portico, "TERM");
    let stopping = receiver.wait("for the stop", |m| m.msg.starts_with("PORTICO stopping"));
    assert_header(stopping, 6, "notice", pid);
    let stopped = portico
        .wait_exit(Duration::from_secs(10))
        .expect("portico stops");
    assert_eq!(stopped.code(), Some(0));
    receiver.wait("for the end", |m| m.msg == "PORTICO stopped");

    // Stdout still has the seed-style lines (stdout defaults to on).
    let log = portico.stdout().join("\n");
    assert!(log.contains("GET /PBX0/APPS/syslog HTTP/1.1 -> "), "{log}");
}

#[test]
fn syslog_only_when_stdout_is_off() {
    let mut receiver = Receiver::open();
    let mut lab = Lab::new();
    lab.site.append(&format!(
        "[log]\nstdout = false\nsyslog = \"udp://127.0.0.1:{}\"\nfacility = \"local3\"\napp_name = \"{APP}\"\n",
        receiver.port()
    ));
    let portico = lab.start();
    let run = lab.curl().fetch(&lab.http_url(HQ, "/PBX0/APPS/quiet"));
    assert_eq!(run.statuses(), [200]);
    let forwarded = receiver.wait("for the forwarded request", |m| {
        m.msgid == "forwarded" && m.msg.contains("/PBX0/APPS/quiet")
    });
    assert_header(forwarded, 6, "forwarded", portico.pid());
    assert!(
        !portico
            .stdout()
            .iter()
            .any(|l| l.contains("REVERSE-PROXY") || l.contains("PORTICO")),
        "stdout = false: no log lines on stdout:\n{}",
        portico.stdout().join("\n")
    );
}
