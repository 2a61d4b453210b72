//! The syslog sink: the log lines as RFC 5424 messages, sent over UDP (RFC 5426) or to
//! a local datagram socket such as `/dev/log`.
//!
//! Owns: the message format and the socket. Which lines are sent, and when, is the
//! control thread's business ([`crate::control`]); the `[log]` section is parsed in
//! [`crate::config`].
//!
//! Promises: sending never blocks. Each socket is non-blocking; a message the socket
//! does not take at once (`WouldBlock`, no receiver, no route) is counted as dropped
//! and forgotten: nothing is queued. A message is one datagram of at most
//! [`MAX_UDP_MESSAGE`] (UDP) or [`MAX_LOCAL_MESSAGE`] (local) bytes, truncated at a
//! character boundary.
//!
//! Format (RFC 5424 section 6):
//!
//! ```text
//! SYSLOG-MSG = HEADER SP STRUCTURED-DATA [SP MSG]
//! HEADER     = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID
//! PRI        = "<" PRIVAL ">"            ; PRIVAL = Facility * 8 + Severity
//! ```
//!
//! written as `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`, with the
//! timestamp in UTC to the microsecond (`2020-10-28T19:16:26.000000Z`), no structured
//! data, and MSG in UTF-8 without a BOM (the MSG-ANY form).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{LogConfig, SyslogTarget};
use crate::log::push_timestamp;

/// Largest message sent over UDP: RFC 5426 section 3.2 says receivers SHOULD take
/// 2048 octets.
pub const MAX_UDP_MESSAGE: usize = 2048;
/// Largest message sent to a local socket.
pub const MAX_LOCAL_MESSAGE: usize = 8192;

/// RFC 5424 section 6.2.1, table 2 (the ones portico uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Informational = 6,
}

/// Where the messages go.
#[derive(Debug)]
enum Transport {
    Udp { socket: UdpSocket, dest: SocketAddr },
    Local { socket: UnixDatagram, path: PathBuf },
}

/// An open syslog destination and the fixed parts of its messages.
#[derive(Debug)]
pub struct SyslogSink {
    transport: Transport,
    target: SyslogTarget,
    facility: u8,
    app_name: String,
    hostname: String,
    procid: u32,
    /// Messages not taken by the socket.
    dropped: u64,
    sent: u64,
    /// Reused for every message.
    buf: String,
}

impl SyslogSink {
    /// Open the destination of `config` (`None` when it has no `syslog`). A UDP host
    /// name is resolved here, once; a local socket path need not exist yet.
    pub fn open(config: &LogConfig) -> Option<io::Result<SyslogSink>> {
        let target = config.syslog.as_ref()?;
        Some(Self::open_target(target, config.facility, &config.app_name))
    }

    fn open_target(target: &SyslogTarget, facility: u8, app_name: &str) -> io::Result<SyslogSink> {
        let transport = match target {
            SyslogTarget::Udp { host, port } => {
                let dest = (host.as_str(), *port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "the host name has no address")
                    })?;
                let local: SocketAddr = if dest.is_ipv4() {
                    ([0u8; 4], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let socket = UdpSocket::bind(local)?;
                socket.set_nonblocking(true)?;
                Transport::Udp { socket, dest }
            }
            SyslogTarget::Unix(path) => {
                let socket = UnixDatagram::unbound()?;
                socket.set_nonblocking(true)?;
                Transport::Local {
                    socket,
                    path: path.clone(),
                }
            }
        };
        Ok(SyslogSink {
            transport,
            target: target.clone(),
            facility: facility.min(23),
            app_name: app_name.to_string(),
            hostname: local_hostname(),
            procid: std::process::id(),
            dropped: 0,
            sent: 0,
            buf: String::with_capacity(512),
        })
    }

    /// Where the messages go, as configured.
    pub fn target(&self) -> &SyslogTarget {
        &self.target
    }

    /// Send one message; false (and counted as dropped) when the socket did not take
    /// it at once.
    pub fn send(&mut self, severity: Severity, msgid: &str, time: SystemTime, msg: &str) -> bool {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        format_message(
            &mut buf,
            &Header {
                facility: self.facility,
                severity,
                time,
                hostname: &self.hostname,
                app_name: &self.app_name,
                procid: self.procid,
                msgid,
            },
            msg,
        );
        let (result, limit) = match &self.transport {
            Transport::Udp { socket, dest } => {
                let bytes = truncated(&buf, MAX_UDP_MESSAGE);
                (socket.send_to(bytes, dest), bytes.len())
            }
            Transport::Local { socket, path } => {
                let bytes = truncated(&buf, MAX_LOCAL_MESSAGE);
                (socket.send_to(bytes, path), bytes.len())
            }
        };
        self.buf = buf;
        let ok = matches!(result, Ok(n) if n == limit);
        if ok {
            self.sent += 1;
        } else {
            self.dropped += 1;
        }
        ok
    }

    /// Messages dropped since the sink was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Messages sent since the sink was opened.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

/// The fixed fields of one message.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub facility: u8,
    pub severity: Severity,
    pub time: SystemTime,
    pub hostname: &'a str,
    pub app_name: &'a str,
    pub procid: u32,
    pub msgid: &'a str,
}

/// Append the RFC 5424 message for `h` and `msg` to `out`. Control characters in
/// `msg` become `?` (one message, one line); header fields are expected valid
/// (PRINTUSASCII) and NILVALUE (`-`) is written for an empty one.
pub fn format_message(out: &mut String, h: &Header<'_>, msg: &str) {
    use std::fmt::Write as _;
    let prival = u16::from(h.facility.min(23)) * 8 + h.severity as u16;
    let _ = write!(out, "<{prival}>1 ");
    push_rfc3339(h.time, out);
    for field in [h.hostname, h.app_name] {
        out.push(' ');
        out.push_str(if field.is_empty() { "-" } else { field });
    }
    let _ = write!(out, " {} ", h.procid);
    out.push_str(if h.msgid.is_empty() { "-" } else { h.msgid });
    out.push_str(" -");
    if !msg.is_empty() {
        out.push(' ');
        out.extend(msg.chars().map(|c| if c.is_control() { '?' } else { c }));
    }
}

/// Append `time` as an RFC 3339 UTC timestamp with microseconds
/// (`2020-10-28T19:16:26.000000Z`), the FULL-DATE "T" FULL-TIME of RFC 5424
/// section 6.2.3; NILVALUE for a time that has no four-digit year.
pub fn push_rfc3339(time: SystemTime, out: &mut String) {
    use std::fmt::Write as _;
    // The calendar arithmetic lives in `log`: `YYYYMMDD-HHMMSS`, rearranged here.
    let mut compact = String::with_capacity(16);
    push_timestamp(time, &mut compact);
    let d = compact.as_bytes();
    if d.len() != 15 || d[8] != b'-' {
        out.push('-');
        return;
    }
    let micros = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    let _ = write!(
        out,
        "{}-{}-{}T{}:{}:{}.{micros:06}Z",
        &compact[0..4],
        &compact[4..6],
        &compact[6..8],
        &compact[9..11],
        &compact[11..13],
        &compact[13..15],
    );
}

/// This machine's name for HOSTNAME (RFC 5424 section 6.2.4: 1 to 255 PRINTUSASCII),
/// or NILVALUE.
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| (33..=126).contains(&b)))
        .unwrap_or_else(|| "-".to_string())
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncated(s: &str, max: usize) -> &[u8] {
    if s.len() <= max {
        return s.as_bytes();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2020-10-28 19:16:26.25 UTC.
    fn seed_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_603_912_586_250)
    }

    #[test]
    fn rfc5424_line() {
        let mut out = String::new();
        format_message(
            &mut out,
            &Header {
                facility: 16,
                severity: Severity::Informational,
                time: seed_time(),
                hostname: "dmz-box",
                app_name: "portico",
                procid: 4711,
                msgid: "forwarded",
            },
            "REVERSE-PROXY 13 192.168.178.59 https://hq.dvl-ckl2.net GET /x HTTP/1.1 -> 172.31.31.2:443(new)",
        );
        assert_eq!(
            out,
            "<134>1 2020-10-28T19:16:26.250000Z dmz-box portico 4711 forwarded - REVERSE-PROXY 13 192.168.178.59 https://hq.dvl-ckl2.net GET /x HTTP/1.1 -> 172.31.31.2:443(new)"
        );
        out.clear();
        format_message(
            &mut out,
            &Header {
                facility: 3,
                severity: Severity::Warning,
                time: UNIX_EPOCH,
                hostname: "",
                app_name: "p",
                procid: 1,
                msgid: "",
            },
            "a\nb",
        );
        assert_eq!(out, "<28>1 1970-01-01T00:00:00.000000Z - p 1 - - a?b");
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        let s = "aé"; // 'é' is two bytes
        assert_eq!(truncated(s, 2), b"a");
        assert_eq!(truncated(s, 3), s.as_bytes());
        assert_eq!(truncated("abc", 10), b"abc");
    }

    #[test]
    fn udp_sink_delivers_and_counts() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = rx.local_addr().unwrap().port();
        let config = LogConfig {
            syslog: Some(SyslogTarget::Udp {
                host: "127.0.0.1".into(),
                port,
            }),
            ..LogConfig::default()
        };
        let mut sink = SyslogSink::open(&config).unwrap().unwrap();
        let long = "x".repeat(5000);
        assert!(sink.send(Severity::Notice, "rejected", seed_time(), &long));
        let mut buf = [0u8; 8192];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(n, MAX_UDP_MESSAGE);
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            text.starts_with("<133>1 2020-10-28T19:16:26.250000Z "),
            "{text}"
        );
        assert_eq!(sink.sent(), 1);
        assert_eq!(sink.dropped(), 0);
    }

    #[test]
    fn a_missing_local_socket_drops_without_blocking() {
        let config = LogConfig {
            syslog: Some(SyslogTarget::Unix("/nonexistent/portico-test/log".into())),
            ..LogConfig::default()
        };
        let mut sink = SyslogSink::open(&config).unwrap().unwrap();
        assert!(!sink.send(Severity::Informational, "notice", UNIX_EPOCH, "x"));
        assert_eq!(sink.dropped(), 1);
    }

    #[test]
    fn local_socket_receives() {
        let dir = std::env::temp_dir().join(format!("portico-syslog-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let config = LogConfig {
            syslog: Some(SyslogTarget::Unix(path.clone())),
            facility: 23,
            app_name: "pt".into(),
            ..LogConfig::default()
        };
        let mut sink = SyslogSink::open(&config).unwrap().unwrap();
        assert!(sink.send(Severity::Error, "notice", UNIX_EPOCH, "hello"));
        let mut buf = [0u8; 1024];
        let n = rx.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            text.starts_with("<187>1 1970-01-01T00:00:00.000000Z "),
            "{text}"
        );
        assert!(
            text.ends_with(&format!(" pt {} notice - hello", std::process::id())),
            "{text}"
        );
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
    }
}
