//! Log records and their one-line rendering in the seed's style:
//! `20201028-191626 REVERSE-PROXY 13 192.168.178.59 https://hq.dvl-ckl2.net GET /PBX0/APPS/x HTTP/1.1 -> 172.31.31.2:443(new)`
//!
//! SKELETON: types fixed, formatting being written.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

/// What happened to a request or connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded to `target`; `new_connection` when a new target connection was opened.
    Forwarded { target: SocketAddr, new_connection: bool },
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
    let _ = (rec, out);
}
