//! Log records and their one-line rendering in the seed's style:
//! `20201028-191626 REVERSE-PROXY 13 192.168.178.59 https://hq.dvl-ckl2.net GET /PBX0/APPS/x HTTP/1.1 -> 172.31.31.2:443(new)`
//!
//! Owns: the record a shard hands over and its rendering. Writing the lines (stdout)
//! is the control thread's job ([`crate::control`]). Times are UTC, computed here
//! without a date crate. Text that came from the network (host, request summary) has
//! its control characters replaced by `?`, so one record is always one line.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// What happened to a request or connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded to `target`; `new_connection` when a new target connection was opened.
    Forwarded {
        target: SocketAddr,
        new_connection: bool,
    },
    /// Refused; `reason` says why ("no rule", "no host", "malformed request", ...).
    Rejected { reason: String },
}

/// One forwarded or rejected routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub time: SystemTime,
    pub conn_id: u64,
    pub source: IpAddr,
    /// "http", "https", "sip", "sips", "ldap", "ldaps", "h323", "h323s".
    pub scheme: &'static str,
    /// Routing key (HTTP host, SIP/LDAP domain, gatekeeper id); may be empty.
    pub host: String,
    /// Request summary, e.g. `GET /PBX0/APPS/x HTTP/1.1`; may be empty.
    pub summary: String,
    pub outcome: Outcome,
}

/// Render `rec` as one line (no newline) into `out` (appended).
pub fn format_line(rec: &LogRecord, out: &mut String) {
    push_timestamp(rec.time, out);
    let source = match rec.source {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(rec.source, IpAddr::V4),
        IpAddr::V4(_) => rec.source,
    };
    // Writing into a String cannot fail.
    let _ = write!(out, " REVERSE-PROXY {} {source} ", rec.conn_id);
    push_clean(rec.scheme, out);
    out.push_str("://");
    if rec.host.is_empty() {
        out.push('-');
    } else {
        push_clean(&rec.host, out);
    }
    if !rec.summary.is_empty() {
        out.push(' ');
        push_clean(&rec.summary, out);
    }
    match &rec.outcome {
        Outcome::Forwarded {
            target,
            new_connection,
        } => {
            let _ = write!(out, " -> {target}");
            if *new_connection {
                out.push_str("(new)");
            }
        }
        Outcome::Rejected { reason } => {
            out.push_str(" rejected: ");
            push_clean(reason, out);
        }
    }
}

/// Append `time` as `YYYYMMDD-HHMMSS` in UTC (times before 1970 print as the epoch).
pub(crate) fn push_timestamp(time: SystemTime, out: &mut String) {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms", civil_from_days;
/// unsigned because the input is never before the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01, so leap days end a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Append `s` with control characters replaced by `?`.
pub(crate) fn push_clean(s: &str, out: &mut String) {
    if !s.chars().any(char::is_control) {
        out.push_str(s);
        return;
    }
    out.extend(s.chars().map(|c| if c.is_control() { '?' } else { c }));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 2020-10-28 19:16:26 UTC, the seed's example time.
    fn seed_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_603_912_586)
    }

    fn record(outcome: Outcome) -> LogRecord {
        LogRecord {
            time: seed_time(),
            conn_id: 13,
            source: "192.168.178.59".parse().unwrap(),
            scheme: "https",
            host: "hq.dvl-ckl2.net".into(),
            summary: "GET /PBX0/APPS/x HTTP/1.1".into(),
            outcome,
        }
    }

    fn line(rec: &LogRecord) -> String {
        let mut out = String::new();
        format_line(rec, &mut out);
        out
    }

    #[test]
    fn seed_example_line() {
        let rec = record(Outcome::Forwarded {
            target: "172.31.31.2:443".parse().unwrap(),
            new_connection: true,
        });
        assert_eq!(line(&rec), "20201028-191626 REVERSE-PROXY 13 192.168.178.59 https://hq.dvl-ckl2.net GET /PBX0/APPS/x HTTP/1.1 -> 172.31.31.2:443(new)");
    }

    #[test]
    fn reused_connection_has_no_new() {
        let rec = record(Outcome::Forwarded {
            target: "172.31.31.2:443".parse().unwrap(),
            new_connection: false,
        });
        assert!(line(&rec).ends_with("HTTP/1.1 -> 172.31.31.2:443"));
    }

    #[test]
    fn rejected_lines() {
        let mut rec = record(Outcome::Rejected {
            reason: "no rule".into(),
        });
        assert_eq!(line(&rec), "20201028-191626 REVERSE-PROXY 13 192.168.178.59 https://hq.dvl-ckl2.net GET /PBX0/APPS/x HTTP/1.1 rejected: no rule");
        rec.host.clear();
        rec.summary.clear();
        rec.scheme = "sips";
        rec.source = "::ffff:10.0.0.1".parse().unwrap();
        rec.outcome = Outcome::Rejected {
            reason: "malformed request".into(),
        };
        assert_eq!(
            line(&rec),
            "20201028-191626 REVERSE-PROXY 13 10.0.0.1 sips://- rejected: malformed request"
        );
    }

    #[test]
    fn network_text_stays_on_one_line() {
        let mut rec = record(Outcome::Rejected {
            reason: "no host".into(),
        });
        rec.host = "evil\r\n20201028-000000 REVERSE-PROXY forged".into();
        rec.source = "2001:db8::1".parse().unwrap();
        let l = line(&rec);
        assert!(!l.contains('\n') && !l.contains('\r'), "{l}");
        assert!(l.contains(" 2001:db8::1 https://evil??20201028"), "{l}");
    }

    #[test]
    fn calendar() {
        let ts = |secs: u64| {
            let mut s = String::new();
            push_timestamp(UNIX_EPOCH + Duration::from_secs(secs), &mut s);
            s
        };
        assert_eq!(ts(0), "19700101-000000");
        assert_eq!(ts(951_782_400), "20000229-000000"); // leap day of a /400 year
        assert_eq!(ts(951_868_799), "20000229-235959");
        assert_eq!(ts(951_868_800), "20000301-000000");
        assert_eq!(ts(1_709_164_800), "20240229-000000");
        assert_eq!(ts(4_102_444_800), "21000101-000000");
        assert_eq!(ts(4_107_456_000), "21000228-000000");
        assert_eq!(ts(4_107_542_400), "21000301-000000"); // 2100 is not a leap year
        assert_eq!(ts(253_402_300_799), "99991231-235959");
        let mut s = String::new();
        push_timestamp(UNIX_EPOCH - Duration::from_secs(5), &mut s);
        assert_eq!(s, "19700101-000000");
        // Every day for 1000 years round-trips through the month lengths.
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        for days in 0..365_243 {
            assert_eq!(civil_from_days(days), (y, m, d));
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ][(m - 1) as usize];
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
