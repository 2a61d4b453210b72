//! The TOML configuration (the schema in DESIGN.md is a contract) parsed into a
//! validated [`Config`]. Errors name the file, the line and the field, and say what to
//! write instead.
//!
//! Owns: the file format, its defaults and every check that can be made without
//! touching the network or the certificate files (those are read by `run`/`check`).
//! The rule table built from a [`Config`] lives in [`crate::rules`].
//!
//! Promises: unknown keys are errors (with a "did you mean" hint when a known key is
//! close); every validation error is reported, not only the first; a TOML syntax or
//! type error (which stops the parse) is reported with its line.
//!
//! Extensions to the DESIGN.md schema (all optional):
//!
//! ```toml
//! [proxy]
//! header_timeout_sec = 10      # time to reach a routing decision (int or float > 0)
//! header_limit = 16384         # bytes buffered to reach a routing decision (1024..=1048576)
//! connect_timeout_sec = 5      # time to connect to a target (int or float > 0)
//! idle_timeout_sec = 300       # a relayed connection idle both ways this long is closed
//! pool_max_idle = 64           # idle HTTP target connections kept per target and shard,
//!                              # for the next request of any client (0 = no pooling)
//! pool_idle_timeout_sec = 5    # a pooled target connection unused this long is closed
//! blacklist_expiration_min = 0.05   # fractional minutes are allowed; 0 = never ban
//!
//! [tls]
//! # further chains, chosen by SNI; the `certificate`/`private_key` pair comes first
//! certificates = [ { certificate = "certs/other.pem", private_key = "certs/other.key" } ]
//!
//! [log]
//! stdout = true                # the log lines on standard output (default true)
//! syslog = "udp://192.0.2.10:514"   # or "udp://[2001:db8::1]:514", "udp://loghost" (port 514),
//!                              # "unix:/dev/log", or a socket path "/dev/log"; RFC 5424
//! facility = "local0"          # kern, user, mail, daemon, auth, syslog, lpr, news, uucp,
//!                              # cron, authpriv, ftp, local0 … local7 (default local0)
//! app_name = "portico"         # the APP-NAME of the syslog lines (default portico)
//!
//! [turn]
//! relay_address_v6 = "2001:db8::2"   # the IPv6 relayed address (dual-stack allocations)
//! allocations_per_user = 64    # allocations one user may hold at once, process-wide (486)
//! allocations_total = 8192     # allocations the process holds at once (508)
//! bandwidth_bytes_per_sec = 125000   # per allocation, both ways; default: no cap
//! ```
//!
//! Relative paths in `[tls]` resolve against the directory of the configuration file.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub proxy: ProxyConfig,
    pub tls: TlsConfig,
    pub hosts: Vec<HostConfig>,
    pub turn: Option<TurnConfig>,
    pub metrics: Option<MetricsConfig>,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub ipv4: bool,
    pub ipv6: bool,
    pub log_forwarded: bool,
    pub log_rejected: bool,
    /// `blacklist_expiration_min` (integer or fractional minutes).
    pub blacklist_expiration: Duration,
    pub suspicious_requests_per_min: u32,
    pub public_nat_address: Option<String>,
    pub listen: ListenConfig,
    /// `header_timeout_sec` (default 10): time allowed to reach a routing decision.
    pub header_timeout: Duration,
    /// `header_limit` (default 16384): bytes buffered to reach a routing decision.
    pub header_limit: usize,
    /// `connect_timeout_sec` (default 5): time allowed to connect to a target.
    pub connect_timeout: Duration,
    /// `idle_timeout_sec` (default 300): a relayed connection with no traffic either
    /// way for this long is closed.
    pub idle_timeout: Duration,
    /// `pool_max_idle` (default 64): idle HTTP target connections each shard keeps
    /// per target for the next request of any client; 0 turns pooling off.
    pub pool_max_idle: usize,
    /// `pool_idle_timeout_sec` (default 5): a pooled target connection unused for
    /// this long is closed.
    pub pool_idle_timeout: Duration,
}

/// Listen ports per service; `None` means not listening for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenConfig {
    pub http: Option<u16>,
    pub https: Option<u16>,
    pub ldap: Option<u16>,
    pub ldaps: Option<u16>,
    pub sip: Option<u16>,
    pub sips: Option<u16>,
    pub h323: Option<u16>,
    pub h323_tls: Option<u16>,
    /// Addresses to bind; default from ipv4/ipv6: `0.0.0.0` and/or `::`.
    pub bind: Vec<IpAddr>,
}

/// One certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// `[tls] certificate`/`private_key` first, then each `[[tls.certificates]]`.
    /// Empty: `run` makes a self-signed certificate for the host names.
    pub certificates: Vec<CertPair>,
    pub client_ca: Option<PathBuf>,
    pub target_ca: Option<PathBuf>,
}

/// One `[[host]]` entry, as written (validated).
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub name: String,
    /// Line of the `name = ...` key, for lints.
    pub line: usize,
    pub verify_target: Option<bool>,
    pub http: Vec<HttpRuleConfig>,
    pub ldap: Option<ServiceConfig>,
    pub sip: Option<ServiceConfig>,
    pub h323: Option<ServiceConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRuleConfig {
    pub path: String,
    pub target: IpAddr,
    pub tcp: Option<u16>,
    pub tls: Option<u16>,
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub target: IpAddr,
    pub tcp: Option<u16>,
    pub tls: Option<u16>,
    pub check_certificate: bool,
}

/// `[turn]`: parsed and validated now, served by a later issue.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    pub listen_udp: Option<u16>,
    pub listen_tcp: Option<u16>,
    pub listen_tls: Option<u16>,
    pub realm: String,
    pub relay_address: Option<IpAddr>,
    /// `relay_address_v6` (portico extension): the IPv6 relayed address, for
    /// REQUESTED-ADDRESS-FAMILY IPv6 and dual-stack (ADDITIONAL-ADDRESS-FAMILY)
    /// allocations beside an IPv4 `relay_address`.
    pub relay_address_v6: Option<IpAddr>,
    pub relay_ports: (u16, u16),
    pub allowed_peers: Vec<String>,
    pub allow_loopback_peers: bool,
    pub users: Vec<(String, String)>,
    pub secrets: Vec<String>,
    /// `allocations_per_user` (portico extension, default 64): allocations one user
    /// name may hold at once over the whole process (486 beyond).
    pub allocations_per_user: u32,
    /// `allocations_total` (portico extension, default 8192): allocations the process
    /// holds at once (508 beyond).
    pub allocations_total: u32,
    /// `bandwidth_bytes_per_sec` (portico extension, default none): relayed bytes per
    /// second per allocation, both directions together; datagrams beyond are dropped.
    pub bandwidth_bytes_per_sec: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub listen: std::net::SocketAddr,
}

/// `[log]`: where the log lines go besides (or instead of) stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `stdout` (default true): write the lines to standard output.
    pub stdout: bool,
    /// `syslog`: also send each line to this syslog receiver (RFC 5424).
    pub syslog: Option<SyslogTarget>,
    /// `facility` as its RFC 5424 code (default 16, `local0`).
    pub facility: u8,
    /// `app_name` (default `portico`): 1 to 48 printable ASCII characters, no space.
    pub app_name: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            stdout: true,
            syslog: None,
            facility: 16,
            app_name: "portico".into(),
        }
    }
}

/// Where syslog lines are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// `udp://HOST:PORT` (RFC 5426); `host` is an IP address or a name resolved when
    /// the sink opens (at start and on reload).
    Udp { host: String, port: u16 },
    /// `unix:PATH` or an absolute `PATH`: a local datagram socket such as `/dev/log`.
    Unix(PathBuf),
}

impl std::fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyslogTarget::Udp { host, port } if host.contains(':') => {
                write!(f, "udp://[{host}]:{port}")
            }
            SyslogTarget::Udp { host, port } => write!(f, "udp://{host}:{port}"),
            SyslogTarget::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The syslog facilities by name, with their RFC 5424 codes (section 6.2.1).
pub const FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// A configuration error: where, what, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when the error concerns a place in the file.
    pub line: Option<usize>,
    /// Dotted field path, e.g. `host[2].http[0].path`.
    pub field: String,
    pub message: String,
    /// What to write instead.
    pub hint: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Read and validate the file at `path`.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
            hint: "pass an existing TOML file with --config".into(),
        }]
    })?;
    parse(path, &text)
}

/// Validate `text` as if read from `path` (relative certificate paths resolve against
/// the file's directory).
pub fn parse(path: &Path, text: &str) -> Result<Config, Vec<ConfigError>> {
    let mut cx = Checker::new(path, text);
    let raw: RawRoot = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(vec![cx.toml_error(&e)]),
    };
    let config = cx.validate(raw);
    if cx.errors.is_empty() {
        Ok(config)
    } else {
        // In file order (stable: errors of one line keep the order they were found in).
        cx.errors.sort_by_key(|e| e.line);
        Err(cx.errors)
    }
}

// ---------------------------------------------------------------------------------
// The file as written. Every value keeps its byte span so that validation errors can
// name the line; everything the schema makes optional (or that validation reports
// better than serde would) is an `Option`.

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    proxy: Option<RawProxy>,
    tls: Option<RawTls>,
    #[serde(default)]
    host: Vec<S<RawHost>>,
    turn: Option<S<RawTurn>>,
    metrics: Option<S<RawMetrics>>,
    log: Option<S<RawLog>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    ipv4: Option<S<bool>>,
    ipv6: Option<S<bool>>,
    log_forwarded: Option<bool>,
    log_rejected: Option<bool>,
    blacklist_expiration_min: Option<S<Number>>,
    suspicious_requests_per_min: Option<S<i64>>,
    public_nat_address: Option<S<String>>,
    listen: Option<RawListen>,
    header_timeout_sec: Option<S<Number>>,
    header_limit: Option<S<i64>>,
    connect_timeout_sec: Option<S<Number>>,
    idle_timeout_sec: Option<S<Number>>,
    pool_max_idle: Option<S<i64>>,
    pool_idle_timeout_sec: Option<S<Number>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    http: Option<S<i64>>,
    https: Option<S<i64>>,
    ldap: Option<S<i64>>,
    ldaps: Option<S<i64>>,
    sip: Option<S<i64>>,
    sips: Option<S<i64>>,
    h323: Option<S<i64>>,
    h323_tls: Option<S<i64>>,
    bind: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    certificate: Option<S<String>>,
    private_key: Option<S<String>>,
    certificates: Option<Vec<S<RawCertPair>>>,
    client_ca: Option<S<String>>,
    target_ca: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertPair {
    certificate: Option<S<String>>,
    private_key: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Option<S<String>>,
    verify_target: Option<bool>,
    ldap: Option<S<RawService>>,
    sip: Option<S<RawService>>,
    h323: Option<S<RawService>>,
    http: Option<Vec<S<RawHttpRule>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    target: Option<S<String>>,
    tcp: Option<S<i64>>,
    tls: Option<S<i64>>,
    check_certificate: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpRule {
    path: Option<S<String>>,
    target: Option<S<String>>,
    tcp: Option<S<i64>>,
    tls: Option<S<i64>>,
    default: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTurn {
    listen_udp: Option<S<i64>>,
    listen_tcp: Option<S<i64>>,
    listen_tls: Option<S<i64>>,
    realm: Option<S<String>>,
    relay_address: Option<S<String>>,
    relay_address_v6: Option<S<String>>,
    relay_ports: Option<S<String>>,
    allowed_peers: Option<Vec<S<String>>>,
    allow_loopback_peers: Option<bool>,
    users: Option<Vec<S<RawUser>>>,
    secrets: Option<Vec<S<String>>>,
    allocations_per_user: Option<S<i64>>,
    allocations_total: Option<S<i64>>,
    bandwidth_bytes_per_sec: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Option<S<String>>,
    password: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    stdout: Option<bool>,
    syslog: Option<S<String>>,
    facility: Option<S<String>>,
    app_name: Option<S<String>>,
}

/// An integer or a float (`blacklist_expiration_min = 5` or `= 0.05`).
#[derive(Debug, Clone, Copy)]
struct Number(f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The document as a tree of keys with spans, used only to name the field of a
/// serde error (whose span is known but whose path is not). Unlike `Spanned`, it
/// accepts values and keys the deserializer has no span for (implicit tables such as
/// `proxy` in a lone `[proxy.listen]`, datetimes).
#[derive(Debug)]
struct Located {
    span: Option<Range<usize>>,
    node: Node,
}

#[derive(Debug)]
enum Node {
    Table(Vec<(Key, Located)>),
    Array(Vec<Located>),
    Scalar,
}

#[derive(Debug)]
struct Key {
    name: String,
    span: Option<Range<usize>>,
}

/// The `serde_spanned` protocol: a deserializer that knows a span answers a request
/// for this struct with a map of start, end and value.
const SPANNED_FIELDS: &[&str] = &[
    serde_spanned::__unstable::START_FIELD,
    serde_spanned::__unstable::END_FIELD,
    serde_spanned::__unstable::VALUE_FIELD,
];

impl<'de> Deserialize<'de> for Located {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(serde_spanned::__unstable::NAME, SPANNED_FIELDS, NodeVisitor)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(serde_spanned::__unstable::NAME, SPANNED_FIELDS, KeyVisitor)
    }
}

/// Deserializes the value inside a spanned map without asking for a span again.
struct Unspanned;

impl<'de> serde::de::DeserializeSeed<'de> for Unspanned {
    type Value = Located;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Located, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// Reads the rest of a spanned map after its start field: `(end, value)`.
fn spanned_rest<'de, A: MapAccess<'de>, T>(
    map: &mut A,
    value: impl serde::de::DeserializeSeed<'de, Value = T>,
) -> Result<(usize, T), A::Error> {
    let _end_key = map.next_key::<String>()?;
    let end = map.next_value::<usize>()?;
    let _value_key = map.next_key::<String>()?;
    Ok((end, map.next_value_seed(value)?))
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Located;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any TOML value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Located, E> {
        Ok(Located {
            span: None,
            node: Node::Scalar,
        })
    }
    fn visit_i64<E>(self, _: i64) -> Result<Located, E> {
        Ok(Located {
            span: None,
            node: Node::Scalar,
        })
    }
    fn visit_u64<E>(self, _: u64) -> Result<Located, E> {
        Ok(Located {
            span: None,
            node: Node::Scalar,
        })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Located, E> {
        Ok(Located {
            span: None,
            node: Node::Scalar,
        })
    }
    fn visit_str<E>(self, _: &str) -> Result<Located, E> {
        Ok(Located {
            span: None,
            node: Node::Scalar,
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Located>()? {
            items.push(item);
        }
        Ok(Located {
            span: None,
            node: Node::Array(items),
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Located, A::Error> {
        let Some(first) = map.next_key::<Key>()? else {
            return Ok(Located {
                span: None,
                node: Node::Table(Vec::new()),
            });
        };
        if first.name == serde_spanned::__unstable::START_FIELD {
            let start = map.next_value::<usize>()?;
            let (end, inner) = spanned_rest(&mut map, Unspanned)?;
            return Ok(Located {
                span: Some(start..end),
                node: inner.node,
            });
        }
        let mut entries = vec![(first, map.next_value::<Located>()?)];
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Located>()?;
            entries.push((key, value));
        }
        Ok(Located {
            span: None,
            node: Node::Table(entries),
        })
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, name: &str) -> Result<Key, E> {
        Ok(Key {
            name: name.to_string(),
            span: None,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let _start_key = map.next_key::<String>()?;
        let start = map.next_value::<usize>()?;
        let (end, name) = spanned_rest(&mut map, std::marker::PhantomData::<String>)?;
        Ok(Key {
            name,
            span: Some(start..end),
        })
    }
}

/// The dotted path (`host[2].http[0].path`) of the deepest key or value whose span
/// contains `offset`.
fn locate(at: &Located, offset: usize) -> Option<String> {
    let within = |span: &Option<Range<usize>>| span.as_ref().is_some_and(|s| s.contains(&offset));
    match &at.node {
        Node::Table(entries) => {
            for (key, value) in entries {
                if let Some(sub) = locate(value, offset) {
                    let sep = if sub.starts_with('[') { "" } else { "." };
                    return Some(format!("{}{sep}{sub}", key.name));
                }
                if within(&key.span) || within(&value.span) {
                    return Some(key.name.clone());
                }
            }
            None
        }
        Node::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(sub) = locate(item, offset) {
                    let sep = if sub.starts_with('[') { "" } else { "." };
                    return Some(format!("[{i}]{sep}{sub}"));
                }
                if within(&item.span) {
                    return Some(format!("[{i}]"));
                }
            }
            None
        }
        Node::Scalar => None,
    }
}

// ---------------------------------------------------------------------------------
// Validation.

/// The ports a TCP listener is opened on, with where each was written.
struct TcpPort {
    port: u16,
    field: String,
    span: Range<usize>,
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
    tcp_ports: Vec<TcpPort>,
}

const TARGET_HINT: &str = "write the target's IP address, e.g. target = \"172.31.31.2\"";

impl<'a> Checker<'a> {
    fn new(file: &'a Path, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Checker {
            file,
            text,
            line_starts,
            errors: Vec::new(),
            tcp_ports: Vec::new(),
        }
    }

    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&start| start <= offset)
            .max(1)
    }

    fn error(&mut self, span: Option<&Range<usize>>, field: &str, message: String, hint: String) {
        let line = span.map(|s| self.line(s.start));
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            field: field.to_string(),
            message,
            hint,
        });
    }

    fn at<T>(&mut self, v: &S<T>, field: &str, message: String, hint: impl Into<String>) {
        self.error(Some(&v.span()), field, message, hint.into());
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span();
        let line = span.as_ref().map(|s| self.line(s.start));
        let msg = e.message().trim();
        let tree = toml::from_str::<Located>(self.text).ok();
        let syntax = self.text.parse::<toml::Table>().is_err();
        let field = match (&tree, &span) {
            (Some(tree), Some(span)) => locate(tree, span.start).unwrap_or_default(),
            _ => String::new(),
        };
        let quoted: Vec<&str> = msg.split('`').skip(1).step_by(2).collect();
        let (field, message, hint) = if let Some(rest) = msg.strip_prefix("unknown field `") {
            let unknown = rest.split('`').next().unwrap_or_default();
            let allowed = quoted.get(1..).unwrap_or_default();
            let hint = match closest(unknown, allowed) {
                Some(known) => format!("did you mean `{known}`?"),
                None if allowed.is_empty() => "remove it: no keys are allowed here".to_string(),
                None => format!(
                    "remove it; the keys allowed here are {}",
                    allowed
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            (field, format!("unknown key `{unknown}`"), hint)
        } else if let Some(rest) = msg.strip_prefix("missing field `") {
            let missing = rest.split('`').next().unwrap_or_default();
            let field = if field.is_empty() {
                missing.to_string()
            } else {
                format!("{field}.{missing}")
            };
            let hint = example(&field)
                .map(|e| format!("add {e}"))
                .unwrap_or_default();
            (field, format!("missing key `{missing}`"), hint)
        } else if !syntax {
            let hint = match example(&field) {
                Some(e) => format!("write it like {e}"),
                None => "see examples/dvl-ckl2.toml for the expected shape".to_string(),
            };
            (field, msg.replace('\n', "; "), hint)
        } else {
            let hint = "fix the TOML syntax: strings in double quotes, tables as [name], arrays of tables as [[name]], inline tables as { key = value }".to_string();
            (
                field,
                format!("TOML syntax: {}", msg.replace('\n', "; ")),
                hint,
            )
        };
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            field,
            message,
            hint,
        }
    }

    fn validate(&mut self, raw: RawRoot) -> Config {
        let base = self
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let proxy = self.proxy(raw.proxy.unwrap_or_default());
        let tls = self.tls(raw.tls.unwrap_or_default(), &base);
        let hosts = self.hosts(&raw.host);
        let turn = raw.turn.map(|t| self.turn(&t));
        let metrics = raw
            .metrics
            .and_then(|m| self.metrics(&m, &proxy.listen.bind));
        let log = raw
            .log
            .map(|l| self.log(l.into_inner()))
            .unwrap_or_default();
        self.check_ports_once();
        Config {
            path: self.file.to_path_buf(),
            proxy,
            tls,
            hosts,
            turn,
            metrics,
            log,
        }
    }

    // -- scalars

    fn port(&mut self, v: &Option<S<i64>>, field: &str) -> Option<u16> {
        let v = v.as_ref()?;
        match u16::try_from(*v.get_ref()) {
            Ok(p) if p != 0 => Some(p),
            _ => {
                let name = field.rsplit('.').next().unwrap_or(field);
                self.at(
                    v,
                    field,
                    format!("port {} is out of range 1-65535", v.get_ref()),
                    format!(
                        "write a TCP/UDP port number, e.g. {name} = {}",
                        example_port(name)
                    ),
                );
                None
            }
        }
    }

    /// A port a TCP listener opens: checked for range and remembered for the
    /// "used twice" check.
    fn listen_port(&mut self, v: &Option<S<i64>>, field: &str) -> Option<u16> {
        let port = self.port(v, field)?;
        let span = v.as_ref().map(|s| s.span()).unwrap_or_default();
        self.tcp_ports.push(TcpPort {
            port,
            field: field.to_string(),
            span,
        });
        Some(port)
    }

    /// A duration in `unit` seconds (1 or 60); `None` means the default.
    fn duration(
        &mut self,
        v: &Option<S<Number>>,
        field: &str,
        default: f64,
        unit: f64,
        allow_zero: bool,
    ) -> Duration {
        let Some(v) = v else {
            return Duration::from_secs_f64(default * unit);
        };
        let n = v.get_ref().0;
        let ok = n.is_finite() && (n > 0.0 || (allow_zero && n == 0.0));
        match Duration::try_from_secs_f64(n * unit) {
            Ok(d) if ok && n <= 1e9 => d,
            _ => {
                let name = field.rsplit('.').next().unwrap_or(field);
                let what = if allow_zero {
                    "zero or a positive number"
                } else {
                    "a positive number"
                };
                self.at(
                    v,
                    field,
                    format!("{n} is not {what}"),
                    format!("write e.g. {name} = {default}"),
                );
                Duration::from_secs_f64(default * unit)
            }
        }
    }

    fn ip(&mut self, v: &S<String>, field: &str, hint: &str) -> Option<IpAddr> {
        match v.get_ref().trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                let name = field.rsplit('.').next().unwrap_or(field);
                self.at(
                    v,
                    field,
                    format!("{name} \"{}\" is not an IP address", v.get_ref()),
                    hint,
                );
                None
            }
        }
    }

    fn file_path(&mut self, v: &S<String>, field: &str, base: &Path) -> PathBuf {
        let s = v.get_ref();
        if s.trim().is_empty() {
            let name = field.rsplit('.').next().unwrap_or(field);
            self.at(v, field, "empty path".into(), format!("write the path of a PEM file, e.g. {name} = \"certs/site.pem\", or remove the key"));
        }
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    }

    // -- sections

    fn proxy(&mut self, p: RawProxy) -> ProxyConfig {
        let ipv4 = p.ipv4.as_ref().map(|v| *v.get_ref()).unwrap_or(true);
        let ipv6 = p.ipv6.as_ref().map(|v| *v.get_ref()).unwrap_or(true);
        if !ipv4 && !ipv6 {
            let span = p.ipv6.as_ref().or(p.ipv4.as_ref()).map(|v| v.span());
            self.error(
                span.as_ref(),
                "proxy.ipv6",
                "both ipv4 and ipv6 are false: nothing to listen on".into(),
                "set ipv4 = true, or ipv6 = true".into(),
            );
        }
        let blacklist_expiration = self.duration(
            &p.blacklist_expiration_min,
            "proxy.blacklist_expiration_min",
            5.0,
            60.0,
            true,
        );
        let suspicious_requests_per_min = match &p.suspicious_requests_per_min {
            None => 20,
            Some(v) => u32::try_from(*v.get_ref()).unwrap_or_else(|_| {
                self.at(v, "proxy.suspicious_requests_per_min", format!("{} is not a count of requests", v.get_ref()), "write a whole number, e.g. suspicious_requests_per_min = 20 (0 never blacklists)");
                20
            }),
        };
        if let Some(v) = &p.public_nat_address {
            let s = v.get_ref().trim();
            let ok = match s.parse::<SocketAddr>() {
                Ok(sa) => sa.port() != 0,
                Err(_) => s.parse::<IpAddr>().is_ok(),
            };
            if !ok {
                self.at(v, "proxy.public_nat_address", format!("\"{}\" is not an IP address or IP:port", v.get_ref()), "write the router's public address, e.g. public_nat_address = \"78.54.23.241\" (or \"78.54.23.241:5060\")");
            }
        }
        let header_timeout = self.duration(
            &p.header_timeout_sec,
            "proxy.header_timeout_sec",
            10.0,
            1.0,
            false,
        );
        let header_limit = match &p.header_limit {
            None => 16384,
            Some(v) => match usize::try_from(*v.get_ref()) {
                Ok(n) if (1024..=1_048_576).contains(&n) => n,
                _ => {
                    self.at(
                        v,
                        "proxy.header_limit",
                        format!("{} bytes is outside 1024..=1048576", v.get_ref()),
                        "write e.g. header_limit = 16384",
                    );
                    16384
                }
            },
        };
        let connect_timeout = self.duration(
            &p.connect_timeout_sec,
            "proxy.connect_timeout_sec",
            5.0,
            1.0,
            false,
        );
        let idle_timeout = self.duration(
            &p.idle_timeout_sec,
            "proxy.idle_timeout_sec",
            300.0,
            1.0,
            false,
        );
        let pool_max_idle = match &p.pool_max_idle {
            None => 64,
            Some(v) => match usize::try_from(*v.get_ref()) {
                Ok(n) if n <= 10_000 => n,
                _ => {
                    self.at(
                        v,
                        "proxy.pool_max_idle",
                        format!("{} is outside 0..=10000", v.get_ref()),
                        "write e.g. pool_max_idle = 64 (0 turns pooling off)",
                    );
                    64
                }
            },
        };
        let pool_idle_timeout = self.duration(
            &p.pool_idle_timeout_sec,
            "proxy.pool_idle_timeout_sec",
            5.0,
            1.0,
            false,
        );
        let listen = self.listen(p.listen.unwrap_or_default(), ipv4, ipv6);
        ProxyConfig {
            ipv4,
            ipv6,
            log_forwarded: p.log_forwarded.unwrap_or(false),
            log_rejected: p.log_rejected.unwrap_or(true),
            blacklist_expiration,
            suspicious_requests_per_min,
            public_nat_address: p
                .public_nat_address
                .map(|v| v.into_inner().trim().to_string()),
            listen,
            header_timeout,
            header_limit,
            connect_timeout,
            idle_timeout,
            pool_max_idle,
            pool_idle_timeout,
        }
    }

    fn listen(&mut self, l: RawListen, ipv4: bool, ipv6: bool) -> ListenConfig {
        let mut out = ListenConfig {
            http: self.listen_port(&l.http, "proxy.listen.http"),
            https: self.listen_port(&l.https, "proxy.listen.https"),
            ldap: self.listen_port(&l.ldap, "proxy.listen.ldap"),
            ldaps: self.listen_port(&l.ldaps, "proxy.listen.ldaps"),
            sip: self.listen_port(&l.sip, "proxy.listen.sip"),
            sips: self.listen_port(&l.sips, "proxy.listen.sips"),
            h323: self.listen_port(&l.h323, "proxy.listen.h323"),
            h323_tls: self.listen_port(&l.h323_tls, "proxy.listen.h323_tls"),
            bind: Vec::new(),
        };
        match &l.bind {
            None => {
                if ipv4 {
                    out.bind.push(IpAddr::from([0u8; 4]));
                }
                if ipv6 {
                    out.bind.push(IpAddr::from([0u16; 8]));
                }
            }
            Some(list) if list.get_ref().is_empty() => {
                self.at(
                    list,
                    "proxy.listen.bind",
                    "bind is empty: nothing to listen on".into(),
                    "remove bind to listen on every address, or write e.g. bind = [\"0.0.0.0\"]",
                );
            }
            Some(list) => {
                for (i, v) in list.get_ref().iter().enumerate() {
                    let field = format!("proxy.listen.bind[{i}]");
                    let Some(ip) = self.ip(
                        v,
                        &field,
                        "write an address of this box, e.g. bind = [\"0.0.0.0\", \"::\"]",
                    ) else {
                        continue;
                    };
                    if ip.is_ipv4() && !ipv4 || ip.is_ipv6() && !ipv6 {
                        let (family, key) = if ip.is_ipv4() {
                            ("IPv4", "ipv4")
                        } else {
                            ("IPv6", "ipv6")
                        };
                        self.at(
                            v,
                            &field,
                            format!("{ip} is an {family} address but {key} = false"),
                            format!("remove {ip} from bind, or set {key} = true in [proxy]"),
                        );
                    } else if out.bind.contains(&ip) {
                        self.at(
                            v,
                            &field,
                            format!("{ip} is listed twice"),
                            "list each address once",
                        );
                    } else {
                        out.bind.push(ip);
                    }
                }
            }
        }
        out
    }

    fn tls(&mut self, t: RawTls, base: &Path) -> TlsConfig {
        let mut out = TlsConfig::default();
        match (&t.certificate, &t.private_key) {
            (Some(c), Some(k)) => {
                let certificate = self.file_path(c, "tls.certificate", base);
                let private_key = self.file_path(k, "tls.private_key", base);
                out.certificates.push(CertPair { certificate, private_key });
            }
            (Some(c), None) => self.at(c, "tls.certificate", "certificate without private_key".into(), "add private_key = \"certs/site.key\" (the key of this chain), or remove certificate to use a self-signed one"),
            (None, Some(k)) => self.at(k, "tls.private_key", "private_key without certificate".into(), "add certificate = \"certs/site.pem\" (the chain of this key), or remove private_key"),
            (None, None) => {}
        }
        for (i, pair) in t.certificates.iter().flatten().enumerate() {
            let field = format!("tls.certificates[{i}]");
            match (&pair.get_ref().certificate, &pair.get_ref().private_key) {
                (Some(c), Some(k)) => {
                    let certificate = self.file_path(c, &format!("{field}.certificate"), base);
                    let private_key = self.file_path(k, &format!("{field}.private_key"), base);
                    out.certificates.push(CertPair {
                        certificate,
                        private_key,
                    });
                }
                (c, _) => {
                    let missing = if c.is_none() {
                        "certificate"
                    } else {
                        "private_key"
                    };
                    self.at(pair, &format!("{field}.{missing}"), format!("missing key `{missing}`"), "write both, e.g. { certificate = \"certs/other.pem\", private_key = \"certs/other.key\" }");
                }
            }
        }
        out.client_ca = t
            .client_ca
            .as_ref()
            .map(|v| self.file_path(v, "tls.client_ca", base));
        out.target_ca = t
            .target_ca
            .as_ref()
            .map(|v| self.file_path(v, "tls.target_ca", base));
        out
    }

    fn hosts(&mut self, raw: &[S<RawHost>]) -> Vec<HostConfig> {
        let mut out = Vec::with_capacity(raw.len());
        // lower-cased name -> (index, line)
        let mut seen: ahash::AHashMap<String, (usize, usize)> = ahash::AHashMap::new();
        for (i, h) in raw.iter().enumerate() {
            let prefix = format!("host[{i}]");
            let host = h.get_ref();
            let (name, line) = match &host.name {
                None => {
                    self.at(
                        h,
                        &format!("{prefix}.name"),
                        "host without a name".into(),
                        "add e.g. name = \"hq.dvl-ckl2.net\"",
                    );
                    (String::new(), self.line(h.span().start))
                }
                Some(v) => {
                    let name = v.get_ref().trim().to_string();
                    let line = self.line(v.span().start);
                    let field = format!("{prefix}.name");
                    if let Err(why) = check_host_name(&name) {
                        self.at(v, &field, format!("host name \"{}\" {why}", v.get_ref()), "write a DNS name such as name = \"hq.dvl-ckl2.net\", or a domain with a registration location such as name = \"dvl-ckl2.net/branch-b\"");
                    } else if let Some(&(j, first)) = seen.get(&name.to_ascii_lowercase()) {
                        self.at(v, &field, format!("host name \"{name}\" is used twice: host[{j}] at line {first} and host[{i}] at line {line} (names are case-insensitive)"), "merge the two [[host]] entries into one, or remove one");
                    } else {
                        seen.insert(name.to_ascii_lowercase(), (i, line));
                    }
                    (name, line)
                }
            };
            let ldap = host
                .ldap
                .as_ref()
                .and_then(|s| self.service(s, &format!("{prefix}.ldap")));
            let sip = host
                .sip
                .as_ref()
                .and_then(|s| self.service(s, &format!("{prefix}.sip")));
            let h323 = host
                .h323
                .as_ref()
                .and_then(|s| self.service(s, &format!("{prefix}.h323")));
            let http = self.http_rules(host.http.as_deref().unwrap_or_default(), &prefix);
            out.push(HostConfig {
                name,
                line,
                verify_target: host.verify_target,
                http,
                ldap,
                sip,
                h323,
            });
        }
        out
    }

    /// Target and ports of a rule; `None` (after reporting) when unusable.
    fn target_ports(
        &mut self,
        whole: Range<usize>,
        target: &Option<S<String>>,
        tcp: &Option<S<i64>>,
        tls: &Option<S<i64>>,
        field: &str,
    ) -> Option<(IpAddr, Option<u16>, Option<u16>)> {
        let ip = match target {
            None => {
                self.error(
                    Some(&whole),
                    &format!("{field}.target"),
                    "missing key `target`".into(),
                    TARGET_HINT.into(),
                );
                None
            }
            Some(t) => self.ip(t, &format!("{field}.target"), TARGET_HINT),
        };
        let tcp_port = self.port(tcp, &format!("{field}.tcp"));
        let tls_port = self.port(tls, &format!("{field}.tls"));
        if tcp.is_none() && tls.is_none() {
            self.error(Some(&whole), field, "neither tcp nor tls port: nowhere to forward".into(), "add the target's ports, e.g. tcp = 80, tls = 443 (plain connections go to tcp, TLS ones to tls)".into());
        }
        Some((ip?, tcp_port, tls_port))
    }

    fn service(&mut self, s: &S<RawService>, field: &str) -> Option<ServiceConfig> {
        let r = s.get_ref();
        let (target, tcp, tls) = self.target_ports(s.span(), &r.target, &r.tcp, &r.tls, field)?;
        Some(ServiceConfig {
            target,
            tcp,
            tls,
            check_certificate: r.check_certificate.unwrap_or(false),
        })
    }

    fn http_rules(&mut self, rules: &[S<RawHttpRule>], host: &str) -> Vec<HttpRuleConfig> {
        let mut out = Vec::with_capacity(rules.len());
        // (path, default) -> line of the first rule with it
        let mut seen: Vec<(String, bool, usize)> = Vec::new();
        for (j, r) in rules.iter().enumerate() {
            let field = format!("{host}.http[{j}]");
            let rule = r.get_ref();
            let default = rule.default.as_ref().is_some_and(|d| *d.get_ref());
            let path = match &rule.path {
                None => {
                    self.at(
                        r,
                        &format!("{field}.path"),
                        "missing key `path`".into(),
                        "add e.g. path = \"/PBX0/APPS\" (or path = \"\" for every path)",
                    );
                    None
                }
                Some(p) => {
                    let path = p.get_ref();
                    let pf = format!("{field}.path");
                    let line = self.line(p.span().start);
                    if !path.is_empty() && !path.starts_with('/') {
                        self.at(
                            p,
                            &pf,
                            format!("path \"{path}\" does not start with '/'"),
                            format!("write path = \"/{path}\""),
                        );
                    } else if let Some((_, _, first)) =
                        seen.iter().find(|(sp, sd, _)| sp == path && *sd == default)
                    {
                        self.at(p, &pf, format!("path \"{path}\" is listed twice in this host (first at line {first})"), "keep one rule per path");
                    } else if default && !path.is_empty() {
                        let d = rule
                            .default
                            .as_ref()
                            .map(|d| d.span())
                            .unwrap_or_else(|| p.span());
                        self.error(Some(&d), &format!("{field}.default"), format!("default = true with path \"{path}\""), "default only makes sense with path = \"\": it matches only the empty request path (/)".into());
                    } else {
                        seen.push((path.clone(), default, line));
                    }
                    Some(path.clone())
                }
            };
            let tp = self.target_ports(r.span(), &rule.target, &rule.tcp, &rule.tls, &field);
            if let (Some(path), Some((target, tcp, tls))) = (path, tp) {
                out.push(HttpRuleConfig {
                    path,
                    target,
                    tcp,
                    tls,
                    default,
                });
            }
        }
        out
    }

    fn turn(&mut self, t: &S<RawTurn>) -> TurnConfig {
        let r = t.get_ref();
        let listen_udp = self.port(&r.listen_udp, "turn.listen_udp");
        let listen_tcp = self.listen_port(&r.listen_tcp, "turn.listen_tcp");
        let listen_tls = self.listen_port(&r.listen_tls, "turn.listen_tls");
        let realm = match &r.realm {
            Some(v) if !v.get_ref().trim().is_empty() => v.get_ref().trim().to_string(),
            Some(v) => {
                self.at(
                    v,
                    "turn.realm",
                    "empty realm".into(),
                    "write the domain, e.g. realm = \"dvl-ckl2.net\"",
                );
                String::new()
            }
            None => {
                self.at(
                    t,
                    "turn.realm",
                    "missing key `realm`".into(),
                    "add e.g. realm = \"dvl-ckl2.net\"",
                );
                String::new()
            }
        };
        let relay_address = r.relay_address.as_ref().and_then(|v| {
            self.ip(
                v,
                "turn.relay_address",
                "write the address relayed candidates carry, e.g. relay_address = \"172.31.31.2\"",
            )
        });
        let relay_address_v6 = r.relay_address_v6.as_ref().and_then(|v| {
            let ip = self.ip(
                v,
                "turn.relay_address_v6",
                "write the box's IPv6 address for relayed candidates, e.g. relay_address_v6 = \"2001:db8::2\"",
            )?;
            if !ip.is_ipv6() {
                self.at(
                    v,
                    "turn.relay_address_v6",
                    format!("relay_address_v6 \"{}\" is not an IPv6 address", v.get_ref()),
                    "put the IPv4 relay address in relay_address and the IPv6 one here",
                );
                return None;
            }
            if relay_address.is_some_and(|a: IpAddr| a.is_ipv6()) {
                self.at(
                    v,
                    "turn.relay_address_v6",
                    "relay_address is already an IPv6 address".into(),
                    "write the IPv4 relay address in relay_address, or drop relay_address_v6",
                );
                return None;
            }
            Some(ip)
        });
        let relay_ports = match &r.relay_ports {
            None => (49152, 65535),
            Some(v) => match parse_port_range(v.get_ref()) {
                Ok(range) => range,
                Err(why) => {
                    self.at(
                        v,
                        "turn.relay_ports",
                        format!("relay_ports \"{}\" {why}", v.get_ref()),
                        "write two ports, low first, e.g. relay_ports = \"49152-65535\"",
                    );
                    (49152, 65535)
                }
            },
        };
        let mut allowed_peers = Vec::new();
        for (i, v) in r.allowed_peers.iter().flatten().enumerate() {
            match check_cidr(v.get_ref()) {
                Ok(()) => allowed_peers.push(v.get_ref().trim().to_string()),
                Err(why) => self.at(
                    v,
                    &format!("turn.allowed_peers[{i}]"),
                    format!("\"{}\" {why}", v.get_ref()),
                    "write a network in CIDR form, e.g. allowed_peers = [\"172.31.31.0/24\"]",
                ),
            }
        }
        let mut users = Vec::new();
        for (i, u) in r.users.iter().flatten().enumerate() {
            let field = format!("turn.users[{i}]");
            let user = u.get_ref();
            let name = user
                .name
                .as_ref()
                .map(|v| v.get_ref().clone())
                .unwrap_or_default();
            let password = user
                .password
                .as_ref()
                .map(|v| v.get_ref().clone())
                .unwrap_or_default();
            if name.is_empty() {
                self.at(
                    u,
                    &format!("{field}.name"),
                    "user without a name".into(),
                    "write e.g. { name = \"turn342823\", password = \"ip411\" }",
                );
            } else if password.is_empty() {
                self.at(
                    u,
                    &format!("{field}.password"),
                    "user without a password".into(),
                    "write e.g. { name = \"turn342823\", password = \"ip411\" }",
                );
            } else {
                users.push((name, password));
            }
        }
        let mut secrets = Vec::new();
        for (i, v) in r.secrets.iter().flatten().enumerate() {
            if v.get_ref().is_empty() {
                self.at(
                    v,
                    &format!("turn.secrets[{i}]"),
                    "empty secret".into(),
                    "write a long random string, or remove it",
                );
            } else {
                secrets.push(v.get_ref().clone());
            }
        }
        let allocations_per_user = self.count(
            &r.allocations_per_user,
            "turn.allocations_per_user",
            64,
            1_000_000,
        );
        let allocations_total = self.count(
            &r.allocations_total,
            "turn.allocations_total",
            8192,
            1_000_000,
        );
        let bandwidth_bytes_per_sec = r.bandwidth_bytes_per_sec.as_ref().and_then(|v| {
            match u64::try_from(*v.get_ref()) {
                Ok(n) if n >= 1000 => Some(n),
                _ => {
                    self.at(
                        v,
                        "turn.bandwidth_bytes_per_sec",
                        format!("{} bytes per second is below 1000", v.get_ref()),
                        "write e.g. bandwidth_bytes_per_sec = 125000 (1 Mbit/s), or remove it for no cap",
                    );
                    None
                }
            }
        });
        TurnConfig {
            listen_udp,
            listen_tcp,
            listen_tls,
            realm,
            relay_address,
            relay_address_v6,
            relay_ports,
            allowed_peers,
            allow_loopback_peers: r.allow_loopback_peers.unwrap_or(false),
            users,
            secrets,
            allocations_per_user,
            allocations_total,
            bandwidth_bytes_per_sec,
        }
    }

    /// A count in `1..=max`, `default` when absent.
    fn count(&mut self, v: &Option<S<i64>>, field: &str, default: u32, max: u32) -> u32 {
        let Some(v) = v else {
            return default;
        };
        match u32::try_from(*v.get_ref()) {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                let key = field.rsplit('.').next().unwrap_or(field);
                self.at(
                    v,
                    field,
                    format!("{} is outside 1..={max}", v.get_ref()),
                    format!("write e.g. {key} = {default}"),
                );
                default
            }
        }
    }

    fn metrics(&mut self, m: &S<RawMetrics>, bind: &[IpAddr]) -> Option<MetricsConfig> {
        let hint = "write an address and port, e.g. listen = \"127.0.0.1:9100\"";
        let Some(v) = &m.get_ref().listen else {
            self.at(m, "metrics.listen", "missing key `listen`".into(), hint);
            return None;
        };
        match v.get_ref().trim().parse::<SocketAddr>() {
            Ok(listen) if listen.port() != 0 => {
                // It collides with a proxy listener only where the addresses overlap.
                let overlaps = bind.iter().any(|b| {
                    *b == listen.ip()
                        || (b.is_unspecified() || listen.ip().is_unspecified())
                            && b.is_ipv4() == listen.is_ipv4()
                });
                if overlaps {
                    self.tcp_ports.push(TcpPort {
                        port: listen.port(),
                        field: "metrics.listen".into(),
                        span: v.span(),
                    });
                }
                Some(MetricsConfig { listen })
            }
            _ => {
                self.at(
                    v,
                    "metrics.listen",
                    format!("\"{}\" is not a socket address (IP:port)", v.get_ref()),
                    hint,
                );
                None
            }
        }
    }

    fn log(&mut self, l: RawLog) -> LogConfig {
        let mut out = LogConfig {
            stdout: l.stdout.unwrap_or(true),
            ..LogConfig::default()
        };
        if let Some(v) = &l.syslog {
            match parse_syslog_target(v.get_ref()) {
                Ok(target) => out.syslog = Some(target),
                Err(why) => self.at(
                    v,
                    "log.syslog",
                    format!("syslog \"{}\" {why}", v.get_ref()),
                    "write syslog = \"udp://192.0.2.10:514\" for a remote receiver, or syslog = \"unix:/dev/log\" for the local one",
                ),
            }
        }
        if let Some(v) = &l.facility {
            let name = v.get_ref().trim().to_ascii_lowercase();
            match FACILITIES.iter().find(|(n, _)| *n == name) {
                Some(&(_, code)) => out.facility = code,
                None => {
                    let names: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
                    let hint = match closest(&name, &names) {
                        Some(known) => format!("did you mean facility = \"{known}\"?"),
                        None => format!("write one of {}", names.join(", ")),
                    };
                    self.at(
                        v,
                        "log.facility",
                        format!("unknown syslog facility \"{}\"", v.get_ref()),
                        hint,
                    );
                }
            }
        }
        if let Some(v) = &l.app_name {
            let name = v.get_ref();
            // RFC 5424 section 6: APP-NAME = NILVALUE / 1*48PRINTUSASCII (33..=126).
            if name.is_empty() || name.len() > 48 || !name.bytes().all(|b| (33..=126).contains(&b))
            {
                self.at(
                    v,
                    "log.app_name",
                    format!("app_name \"{name}\" is not 1 to 48 printable ASCII characters without spaces"),
                    "write e.g. app_name = \"portico\"",
                );
            } else {
                out.app_name = name.clone();
            }
        }
        out
    }

    fn check_ports_once(&mut self) {
        let ports = std::mem::take(&mut self.tcp_ports);
        for (i, p) in ports.iter().enumerate() {
            if let Some(first) = ports[..i].iter().find(|q| q.port == p.port) {
                let line = self.line(first.span.start);
                self.error(
                    Some(&p.span),
                    &p.field,
                    format!(
                        "port {} is already used by {} (line {line})",
                        p.port, first.field
                    ),
                    "give each listener its own port".into(),
                );
            }
        }
    }
}

/// Why a `[[host]] name` is not acceptable: a DNS name, optionally followed by one
/// `/registration-location` (H.323 gatekeeper ids, see DESIGN.md "Routing rules").
fn check_host_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    let (domain, location) = match name.split_once('/') {
        Some((d, l)) => (d, Some(l)),
        None => (name, None),
    };
    if domain.len() > 253 {
        return Err("is longer than 253 characters");
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err("has an empty label (a leading, trailing or double dot)");
        }
        if label.len() > 63 {
            return Err("has a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("has characters not allowed in a DNS name (letters, digits, '-', '.')");
        }
    }
    if let Some(location) = location {
        if location.is_empty() {
            return Err("has an empty registration location after '/'");
        }
        if !location
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err("has a registration location with characters other than letters, digits, '-', '_', '.' (or a second '/')");
        }
    }
    Ok(())
}

/// `"udp://HOST[:PORT]"`, `"unix:PATH"` or an absolute `"PATH"`.
fn parse_syslog_target(s: &str) -> Result<SyslogTarget, &'static str> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("udp://") {
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("has a '[' without its ']'")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("has text after the ']'")?),
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err("has no IPv6 address between '[' and ']'");
            }
            (host, port)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => 514,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or("has a port outside 1-65535")?,
        };
        let is_name = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
        if !is_name {
            return Err("has no host (an IP address or a DNS name)");
        }
        return Ok(SyslogTarget::Udp {
            host: host.to_string(),
            port,
        });
    }
    let path = s.strip_prefix("unix:").unwrap_or(s);
    if path.starts_with('/') {
        Ok(SyslogTarget::Unix(PathBuf::from(path)))
    } else if s.contains("://") {
        Err("uses a transport other than udp:// (TCP and TLS syslog are not supported)")
    } else {
        Err("is neither udp://HOST:PORT nor the absolute path of a local socket")
    }
}

/// `"49152-65535"` → `(49152, 65535)`.
fn parse_port_range(s: &str) -> Result<(u16, u16), &'static str> {
    let (lo, hi) = s.split_once('-').ok_or("is not of the form LOW-HIGH")?;
    let port = |p: &str| p.trim().parse::<u16>().ok().filter(|&p| p != 0);
    let (lo, hi) = port(lo).zip(port(hi)).ok_or("has a port outside 1-65535")?;
    if lo > hi {
        return Err("is reversed (low port after high port)");
    }
    Ok((lo, hi))
}

/// `"172.31.31.0/24"` or a single address.
fn check_cidr(s: &str) -> Result<(), &'static str> {
    let (addr, len) = match s.trim().split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s.trim(), None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| "is not an IP network (address/prefix length)")?;
    if let Some(len) = len {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match len.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => return Err("has a prefix length out of range"),
        }
    }
    Ok(())
}

fn example_port(name: &str) -> u16 {
    match name {
        "http" => 90,
        "https" => 453,
        "ldap" => 399,
        "ldaps" => 646,
        "sip" => 5070,
        "sips" => 5071,
        "h323" => 1730,
        "h323_tls" => 1310,
        "tcp" => 80,
        "tls" => 443,
        "listen_tls" => 5349,
        _ => 3478,
    }
}

/// An example line for a field (indices ignored), for hints.
fn example(field: &str) -> Option<String> {
    let mut norm = String::with_capacity(field.len());
    let mut skip = false;
    for c in field.chars() {
        match c {
            '[' => skip = true,
            ']' => skip = false,
            _ if !skip => norm.push(c),
            _ => {}
        }
    }
    let e = match norm.as_str() {
        "proxy" => "[proxy] with ipv4 = true, ipv6 = true, ...",
        "proxy.ipv4" => "ipv4 = true",
        "proxy.ipv6" => "ipv6 = true",
        "proxy.log_forwarded" => "log_forwarded = false",
        "proxy.log_rejected" => "log_rejected = true",
        "proxy.blacklist_expiration_min" => "blacklist_expiration_min = 5",
        "proxy.suspicious_requests_per_min" => "suspicious_requests_per_min = 20",
        "proxy.public_nat_address" => "public_nat_address = \"78.54.23.241\"",
        "proxy.header_timeout_sec" => "header_timeout_sec = 10",
        "proxy.header_limit" => "header_limit = 16384",
        "proxy.connect_timeout_sec" => "connect_timeout_sec = 5",
        "proxy.idle_timeout_sec" => "idle_timeout_sec = 300",
        "proxy.pool_max_idle" => "pool_max_idle = 64",
        "proxy.pool_idle_timeout_sec" => "pool_idle_timeout_sec = 5",
        "proxy.listen" => "[proxy.listen] with http = 90, https = 453, ...",
        "proxy.listen.bind" => "bind = [\"0.0.0.0\", \"::\"]",
        "tls" => "[tls] with certificate = \"certs/site.pem\", private_key = \"certs/site.key\"",
        "tls.certificate" => "certificate = \"certs/site.pem\"",
        "tls.private_key" => "private_key = \"certs/site.key\"",
        "tls.client_ca" => "client_ca = \"certs/trusted-clients.pem\"",
        "tls.target_ca" => "target_ca = \"certs/pbx-ca.pem\"",
        "tls.certificates" => "certificates = [ { certificate = \"certs/other.pem\", private_key = \"certs/other.key\" } ]",
        "tls.certificates.certificate" => "certificate = \"certs/other.pem\"",
        "tls.certificates.private_key" => "private_key = \"certs/other.key\"",
        "host" => "[[host]] entries, each with name = \"hq.dvl-ckl2.net\" and its rules",
        "host.name" => "name = \"hq.dvl-ckl2.net\"",
        "host.verify_target" => "verify_target = false",
        "host.ldap" => "ldap = { target = \"172.31.31.2\", tcp = 389, tls = 636 }",
        "host.sip" => "sip = { target = \"172.31.31.2\", tcp = 5060, tls = 5061, check_certificate = true }",
        "host.h323" => "h323 = { target = \"172.31.31.2\", tcp = 1720, tls = 1300, check_certificate = true }",
        "host.http" => "http = [ { path = \"/PBX0/APPS\", target = \"172.31.31.2\", tcp = 80, tls = 443 } ]",
        "host.http.path" => "path = \"/PBX0/APPS\"",
        "host.http.default" => "default = true",
        "host.ldap.check_certificate" | "host.sip.check_certificate" | "host.h323.check_certificate" => "check_certificate = true",
        "turn" => "[turn] with realm = \"dvl-ckl2.net\", listen_udp = 3478, ...",
        "turn.realm" => "realm = \"dvl-ckl2.net\"",
        "turn.relay_address" => "relay_address = \"172.31.31.2\"",
        "turn.relay_address_v6" => "relay_address_v6 = \"2001:db8::2\"",
        "turn.relay_ports" => "relay_ports = \"49152-65535\"",
        "turn.allowed_peers" => "allowed_peers = [\"172.31.31.0/24\"]",
        "turn.allow_loopback_peers" => "allow_loopback_peers = false",
        "turn.users" => "users = [ { name = \"turn342823\", password = \"ip411\" } ]",
        "turn.users.name" => "name = \"turn342823\"",
        "turn.users.password" => "password = \"ip411\"",
        "turn.secrets" => "secrets = [\"a long random string\"]",
        "turn.allocations_per_user" => "allocations_per_user = 64",
        "turn.allocations_total" => "allocations_total = 8192",
        "turn.bandwidth_bytes_per_sec" => "bandwidth_bytes_per_sec = 125000",
        "metrics" => "[metrics] with listen = \"127.0.0.1:9100\"",
        "metrics.listen" => "listen = \"127.0.0.1:9100\"",
        "log" => "[log] with syslog = \"udp://192.0.2.10:514\", facility = \"local0\"",
        "log.stdout" => "stdout = true",
        "log.syslog" => "syslog = \"udp://192.0.2.10:514\"",
        "log.facility" => "facility = \"local0\"",
        "log.app_name" => "app_name = \"portico\"",
        _ => {
            let last = norm.rsplit('.').next().unwrap_or_default();
            return match last {
                "target" => Some("target = \"172.31.31.2\"".into()),
                "tcp" | "tls" | "http" | "https" | "ldap" | "ldaps" | "sip" | "sips" | "h323" | "h323_tls" | "listen_udp" | "listen_tcp" | "listen_tls" => Some(format!("{last} = {}", example_port(last))),
                _ => None,
            };
        }
    };
    Some(e.to_string())
}

/// The known key closest to `unknown`, if close enough to be a likely typo.
fn closest<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = unknown.to_ascii_lowercase();
    let (best, dist) = known
        .iter()
        .map(|k| (*k, edit_distance(&lower, k)))
        .min_by_key(|&(_, d)| d)?;
    let close = dist <= (unknown.len() / 3).max(2)
        || (lower.len() >= 4 && (best.starts_with(&lower) || lower.starts_with(best)));
    close.then_some(best)
}

/// Levenshtein distance over bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const DVL: &str = include_str!("../../examples/dvl-ckl2.toml");
    const LOOPBACK: &str = include_str!("../../examples/loopback.toml");

    fn ok(text: &str) -> Config {
        match parse(Path::new("/etc/portico/portico.toml"), text) {
            Ok(c) => c,
            Err(errors) => panic!("unexpected errors: {errors:#?}"),
        }
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match parse(Path::new("/etc/portico/portico.toml"), text) {
            Ok(_) => panic!("parsed, expected errors"),
            Err(errors) => errors,
        }
    }

    /// The single error of `text`.
    fn one(text: &str) -> ConfigError {
        let mut errors = errors(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.remove(0)
    }

    const HOST: &str = "[[host]]\nname = \"hq.example.net\"\n";

    #[test]
    fn dvl_ckl2_parses() {
        let c =
            parse(Path::new("examples/dvl-ckl2.toml"), DVL).unwrap_or_else(|e| panic!("{e:#?}"));
        let p = &c.proxy;
        assert!(p.ipv4 && p.ipv6 && !p.log_forwarded && p.log_rejected);
        assert_eq!(p.blacklist_expiration, Duration::from_secs(300));
        assert_eq!(p.suspicious_requests_per_min, 20);
        assert_eq!(p.public_nat_address.as_deref(), Some("78.54.23.241"));
        let l = &p.listen;
        assert_eq!(
            (l.http, l.https, l.ldap, l.ldaps),
            (Some(90), Some(453), Some(399), Some(646))
        );
        assert_eq!(
            (l.sip, l.sips, l.h323, l.h323_tls),
            (Some(5070), Some(5071), Some(1730), Some(1310))
        );
        assert_eq!(
            l.bind,
            vec!["0.0.0.0".parse::<IpAddr>().unwrap(), "::".parse().unwrap()]
        );
        assert_eq!(p.header_timeout, Duration::from_secs(10));
        assert_eq!(p.header_limit, 16384);
        assert_eq!(p.connect_timeout, Duration::from_secs(5));
        assert_eq!(p.idle_timeout, Duration::from_secs(300));
        assert_eq!(p.pool_max_idle, 64);
        assert_eq!(p.pool_idle_timeout, Duration::from_secs(5));
        assert_eq!(
            c.tls.certificates,
            vec![CertPair {
                certificate: "examples/certs/wildcard.dvl-ckl2.net.pem".into(),
                private_key: "examples/certs/wildcard.dvl-ckl2.net.key".into()
            }]
        );
        assert_eq!(
            c.tls.client_ca,
            Some("examples/certs/trusted-clients.pem".into())
        );
        assert_eq!(c.tls.target_ca, None);
        let names: Vec<&str> = c.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "apps.dvl-ckl2.net",
                "branch-b.dvl-ckl2.net",
                "hq.dvl-ckl2.net",
                "dvl-ckl2.net",
                "dvl-ckl2.net/branch-b",
                "dvl-ckl2.net/hq"
            ]
        );
        assert_eq!(c.hosts[0].line, 33);
        assert_eq!(c.hosts[1].http.len(), 6);
        assert_eq!(
            c.hosts[0].http[0],
            HttpRuleConfig {
                path: String::new(),
                target: "172.31.31.12".parse().unwrap(),
                tcp: Some(80),
                tls: Some(443),
                default: false
            }
        );
        let gk = c.hosts[4].h323.as_ref().unwrap();
        assert_eq!(
            (gk.target, gk.tcp, gk.tls, gk.check_certificate),
            ("172.31.31.3".parse().unwrap(), Some(1720), Some(1300), true)
        );
        assert!(c.hosts[3].sip.is_some() && c.hosts[3].ldap.is_some());
        let turn = c.turn.as_ref().unwrap();
        assert_eq!(
            (turn.listen_udp, turn.listen_tcp, turn.listen_tls),
            (Some(3478), Some(3478), None)
        );
        assert_eq!(turn.realm, "dvl-ckl2.net");
        assert_eq!(turn.relay_ports, (49152, 65535));
        assert_eq!(turn.allowed_peers, ["172.31.31.0/24"]);
        assert_eq!(
            turn.users,
            [("turn342823".to_string(), "ip411".to_string())]
        );
        assert_eq!(
            c.metrics.as_ref().unwrap().listen,
            "127.0.0.1:9100".parse().unwrap()
        );
    }

    #[test]
    fn loopback_parses() {
        let c = ok(LOOPBACK);
        assert!(!c.proxy.ipv6 && c.proxy.log_forwarded && c.proxy.log_rejected);
        assert_eq!(c.proxy.listen.bind, vec![IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(
            (
                c.proxy.listen.http,
                c.proxy.listen.https,
                c.proxy.listen.sip
            ),
            (Some(8090), Some(8453), None)
        );
        assert!(c.tls.certificates.is_empty());
        assert_eq!(c.hosts.len(), 3);
        assert!(c.hosts[2].http[1].default);
    }

    #[test]
    fn defaults() {
        let c = ok("");
        assert!(c.proxy.ipv4 && c.proxy.ipv6 && !c.proxy.log_forwarded && c.proxy.log_rejected);
        assert_eq!(c.proxy.blacklist_expiration, Duration::from_secs(300));
        assert_eq!(c.proxy.suspicious_requests_per_min, 20);
        assert_eq!(
            c.proxy.listen,
            ListenConfig {
                bind: vec![IpAddr::from([0u8; 4]), IpAddr::from([0u16; 8])],
                ..ListenConfig::default()
            }
        );
        assert!(c.hosts.is_empty() && c.turn.is_none() && c.metrics.is_none());
        let c = ok("[proxy]\nipv6 = false\n");
        assert_eq!(c.proxy.listen.bind, vec![IpAddr::from([0u8; 4])]);
    }

    #[test]
    fn fractional_and_zero_minutes() {
        let c = ok("[proxy]\nblacklist_expiration_min = 0.05\nheader_timeout_sec = 0.5\n");
        assert_eq!(c.proxy.blacklist_expiration, Duration::from_secs(3));
        assert_eq!(c.proxy.header_timeout, Duration::from_millis(500));
        let c = ok("[proxy]\nblacklist_expiration_min = 0\nsuspicious_requests_per_min = 0\n");
        assert_eq!(c.proxy.blacklist_expiration, Duration::ZERO);
        assert_eq!(c.proxy.suspicious_requests_per_min, 0);
        let e = one("[proxy]\nblacklist_expiration_min = -1\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(2), "proxy.blacklist_expiration_min")
        );
        let e = one("[proxy]\n\nheader_timeout_sec = 0\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(3), "proxy.header_timeout_sec")
        );
        let e = one("[proxy]\nheader_limit = 100\n");
        assert_eq!((e.line, e.field.as_str()), (Some(2), "proxy.header_limit"));
        let e = one("[proxy]\n\npool_max_idle = -1\n");
        assert_eq!((e.line, e.field.as_str()), (Some(3), "proxy.pool_max_idle"));
        assert!(e.hint.contains("pool_max_idle = 64"), "{}", e.hint);
        let e = one("[proxy]\npool_idle_timeout_sec = 0\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(2), "proxy.pool_idle_timeout_sec")
        );
    }

    #[test]
    fn extra_certificates_follow_the_main_pair() {
        let c = ok("[tls]\ncertificate = \"a.pem\"\nprivate_key = \"/abs/a.key\"\ncertificates = [ { certificate = \"b.pem\", private_key = \"b.key\" } ]\ntarget_ca = \"ca.pem\"\n");
        let pairs: Vec<(&Path, &Path)> = c
            .tls
            .certificates
            .iter()
            .map(|p| (p.certificate.as_path(), p.private_key.as_path()))
            .collect();
        assert_eq!(
            pairs,
            [
                (Path::new("/etc/portico/a.pem"), Path::new("/abs/a.key")),
                (
                    Path::new("/etc/portico/b.pem"),
                    Path::new("/etc/portico/b.key")
                )
            ]
        );
        assert_eq!(c.tls.target_ca, Some(PathBuf::from("/etc/portico/ca.pem")));
        // Array-of-tables spelling too.
        let c = ok("[[tls.certificates]]\ncertificate = \"b.pem\"\nprivate_key = \"b.key\"\n");
        assert_eq!(c.tls.certificates.len(), 1);
    }

    #[test]
    fn unknown_key_suggests_the_close_one() {
        let e = one("[proxy]\nipv4 = true\n\n[proxy.listen]\nhttp = 90\nhtps = 453\n");
        assert_eq!((e.line, e.field.as_str()), (Some(6), "proxy.listen.htps"));
        assert!(e.message.contains("unknown key `htps`"), "{e}");
        assert!(e.hint.contains("did you mean `https`?"), "{e}");

        let e = one(&format!(
            "{HOST}http = [ {{ pth = \"/x\", target = \"10.0.0.1\", tcp = 80 }} ]\n"
        ));
        assert_eq!((e.line, e.field.as_str()), (Some(3), "host[0].http[0].pth"));
        assert!(e.hint.contains("`path`"), "{e}");

        let e = one("[proxi]\nipv4 = true\n");
        assert_eq!((e.line, e.field.as_str()), (Some(1), "proxi"));
        assert!(e.hint.contains("did you mean `proxy`?"), "{e}");

        let e = one("[proxy]\nblacklist_expiration = 5\n");
        assert!(e.hint.contains("`blacklist_expiration_min`"), "{e}");

        let e = one("[metrics]\nlisten = \"127.0.0.1:9100\"\nzzz = 1\n");
        assert_eq!((e.line, e.field.as_str()), (Some(3), "metrics.zzz"));
        assert!(e.hint.contains("allowed here are `listen`"), "{e}");
    }

    #[test]
    fn type_errors_carry_a_line() {
        let e = one(&format!("{HOST}http = 80\n"));
        assert_eq!((e.line, e.field.as_str()), (Some(3), "host[0].http"));
        assert!(e.hint.contains("http = [ {"), "{e}");

        let e = one("[proxy]\nipv4 = \"yes\"\n");
        assert_eq!((e.line, e.field.as_str()), (Some(2), "proxy.ipv4"));
        assert!(e.hint.contains("ipv4 = true"), "{e}");

        let e = one(&format!(
            "{HOST}{HOST}ldap = {{ target = \"10.0.0.1\", tcp = \"389\" }}\n"
        ));
        assert_eq!((e.line, e.field.as_str()), (Some(5), "host[1].ldap.tcp"));
    }

    #[test]
    fn errors_under_implicit_tables_and_datetimes_are_located() {
        // `proxy` exists only through the dotted header: no span for its key.
        let e = one("[proxy.listen]\nhttp = 9.5\n");
        assert_eq!((e.line, e.field.as_str()), (Some(2), "proxy.listen.http"));
        assert!(!e.message.contains("syntax"), "{e}");
        let e = one("[proxy.listen]\nhttp = 90\nbnd = []\n");
        assert_eq!((e.line, e.field.as_str()), (Some(3), "proxy.listen.bnd"));
        assert!(e.hint.contains("`bind`"), "{e}");
        let e = one("[proxy]\nipv4 = 1979-05-27\n");
        assert_eq!((e.line, e.field.as_str()), (Some(2), "proxy.ipv4"));
        assert!(!e.message.contains("syntax"), "{e}");
    }

    #[test]
    fn syntax_error_carries_a_line() {
        let e = one("[proxy]\nipv4 = true\n[proxy.listen\nhttp = 90\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.starts_with("TOML syntax"), "{e}");
        let e = one("[proxy.listen]\nhttp = 90\nhttp = 91\n");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn host_name_must_be_a_dns_name() {
        for bad in [
            "",
            "hq example.net",
            "hq..example.net",
            "*.example.net",
            "example.net/a/b",
            "example.net/",
            "hq.example.net:443",
        ] {
            let e = one(&format!("[[host]]\n\nname = \"{bad}\"\n"));
            assert_eq!(
                (e.line, e.field.as_str()),
                (Some(3), "host[0].name"),
                "{bad}: {e}"
            );
            assert!(e.hint.contains("name = \"hq.dvl-ckl2.net\""), "{e}");
        }
        for good in [
            "HQ.Example.net",
            "dvl-ckl2.net/branch-b",
            "localhost",
            "172.31.31.2",
        ] {
            ok(&format!("[[host]]\nname = \"{good}\"\n"));
        }
        let e = one("[[host]]\nverify_target = true\n");
        assert_eq!((e.line, e.field.as_str()), (Some(1), "host[0].name"));
    }

    #[test]
    fn duplicate_host_name_names_both_lines() {
        let e = one("[[host]]\nname = \"hq.example.net\"\n\n[[host]]\nname = \"HQ.example.NET\"\n");
        assert_eq!((e.line, e.field.as_str()), (Some(5), "host[1].name"));
        assert!(
            e.message.contains("line 2") && e.message.contains("line 5"),
            "{e}"
        );
    }

    #[test]
    fn target_must_be_an_ip_address() {
        let e = one(&format!(
            "{HOST}ldap = {{ target = \"pbx.local\", tcp = 389 }}\n"
        ));
        assert_eq!((e.line, e.field.as_str()), (Some(3), "host[0].ldap.target"));
        assert_eq!(e.hint, TARGET_HINT);
        let e = one(&format!(
            "{HOST}http = [\n  {{ path = \"/\", tcp = 80 }},\n]\n"
        ));
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(4), "host[0].http[0].target")
        );
    }

    #[test]
    fn rule_needs_a_port() {
        let e = one(&format!(
            "{HOST}sip = {{ target = \"10.0.0.1\", check_certificate = true }}\n"
        ));
        assert_eq!((e.line, e.field.as_str()), (Some(3), "host[0].sip"));
        assert!(e.hint.contains("tcp = "), "{e}");
        let e = one(&format!("{HOST}http = [\n  {{ path = \"/a\", target = \"10.0.0.1\", tcp = 80 }},\n  {{ path = \"/b\", target = \"10.0.0.1\" }},\n]\n"));
        assert_eq!((e.line, e.field.as_str()), (Some(5), "host[0].http[1]"));
        let e = one(&format!(
            "{HOST}h323 = {{ target = \"10.0.0.1\", tcp = 0 }}\n"
        ));
        assert_eq!((e.line, e.field.as_str()), (Some(3), "host[0].h323.tcp"));
    }

    #[test]
    fn http_path_must_start_with_a_slash() {
        let e = one(&format!(
            "{HOST}http = [\n  {{ path = \"PBX0/APPS\", target = \"10.0.0.1\", tcp = 80 }},\n]\n"
        ));
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(4), "host[0].http[0].path")
        );
        assert!(e.hint.contains("path = \"/PBX0/APPS\""), "{e}");
    }

    #[test]
    fn duplicate_http_path() {
        let e = one(&format!("{HOST}http = [\n  {{ path = \"/a\", target = \"10.0.0.1\", tcp = 80 }},\n  {{ path = \"/a\", target = \"10.0.0.2\", tcp = 80 }},\n]\n"));
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(5), "host[0].http[1].path")
        );
        assert!(e.message.contains("line 4"), "{e}");
        // A default rule and a catch-all may share the empty path.
        ok(&format!("{HOST}http = [\n  {{ path = \"\", target = \"10.0.0.1\", tcp = 80 }},\n  {{ path = \"\", default = true, target = \"10.0.0.2\", tcp = 80 }},\n]\n"));
    }

    #[test]
    fn default_needs_the_empty_path() {
        let e = one(&format!("{HOST}http = [\n  {{ path = \"/a\", default = true, target = \"10.0.0.1\", tcp = 80 }},\n]\n"));
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(4), "host[0].http[0].default")
        );
        assert!(e.hint.contains("path = \"\""), "{e}");
    }

    #[test]
    fn listen_port_used_twice() {
        let e = one("[proxy.listen]\nhttp = 90\nsip = 5070\nsips = 90\n");
        assert_eq!((e.line, e.field.as_str()), (Some(4), "proxy.listen.sips"));
        assert!(e.message.contains("proxy.listen.http (line 2)"), "{e}");
        let e = one("[proxy.listen]\nhttp = 3478\n[turn]\nrealm = \"x\"\nlisten_udp = 3478\nlisten_tcp = 3478\n");
        assert_eq!((e.line, e.field.as_str()), (Some(6), "turn.listen_tcp"));
        let e = one("[proxy.listen]\nhttp = 9100\n[metrics]\nlisten = \"127.0.0.1:9100\"\n");
        assert_eq!((e.line, e.field.as_str()), (Some(4), "metrics.listen"));
        ok("[proxy.listen]\nbind = [\"10.0.0.1\"]\nhttp = 9100\n[metrics]\nlisten = \"127.0.0.1:9100\"\n");
        let e = one("[proxy.listen]\nhttps = 70000\n");
        assert_eq!((e.line, e.field.as_str()), (Some(2), "proxy.listen.https"));
    }

    #[test]
    fn address_families() {
        let e = one("[proxy]\nipv4 = false\nipv6 = false\n");
        assert_eq!((e.line, e.field.as_str()), (Some(3), "proxy.ipv6"));
        let e = one("[proxy]\nipv6 = false\n[proxy.listen]\nbind = [\"0.0.0.0\", \"::\"]\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(4), "proxy.listen.bind[1]")
        );
        assert!(e.hint.contains("ipv6 = true"), "{e}");
        let e = one("[proxy.listen]\nbind = [\"localhost\"]\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(2), "proxy.listen.bind[0]")
        );
        let e = one("[proxy]\npublic_nat_address = \"router.example.net\"\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(2), "proxy.public_nat_address")
        );
        ok("[proxy]\npublic_nat_address = \"78.54.23.241:5060\"\n");
    }

    #[test]
    fn tls_pair_is_complete() {
        let e = one("[tls]\ncertificate = \"a.pem\"\n");
        assert_eq!((e.line, e.field.as_str()), (Some(2), "tls.certificate"));
        assert!(e.hint.contains("private_key = "), "{e}");
        let e = one("[tls]\ncertificates = [\n  { certificate = \"b.pem\" },\n]\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(3), "tls.certificates[0].private_key")
        );
    }

    #[test]
    fn turn_relay_ports_and_peers() {
        let turn = "[turn]\nrealm = \"example.net\"\n";
        for bad in ["49152", "65535-49152", "0-10", "a-b", "1-70000"] {
            let e = one(&format!("{turn}relay_ports = \"{bad}\"\n"));
            assert_eq!(
                (e.line, e.field.as_str()),
                (Some(3), "turn.relay_ports"),
                "{bad}"
            );
        }
        assert_eq!(
            ok(&format!("{turn}relay_ports = \"50000-50010\"\n"))
                .turn
                .unwrap()
                .relay_ports,
            (50000, 50010)
        );
        let e = one(&format!(
            "{turn}allowed_peers = [\"10.0.0.0/8\",\n  \"10.0.0.0/33\"]\n"
        ));
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(4), "turn.allowed_peers[1]")
        );
        let e = one("[turn]\nlisten_udp = 3478\n");
        assert_eq!((e.line, e.field.as_str()), (Some(1), "turn.realm"));
    }

    #[test]
    fn turn_quotas() {
        let turn = "[turn]\nrealm = \"example.net\"\n";
        let t = ok(turn).turn.unwrap();
        assert_eq!(
            (
                t.allocations_per_user,
                t.allocations_total,
                t.bandwidth_bytes_per_sec
            ),
            (64, 8192, None)
        );
        let t = ok(&format!(
            "{turn}allocations_per_user = 2\nallocations_total = 100\nbandwidth_bytes_per_sec = 125000\n"
        ))
        .turn
        .unwrap();
        assert_eq!(
            (
                t.allocations_per_user,
                t.allocations_total,
                t.bandwidth_bytes_per_sec
            ),
            (2, 100, Some(125_000))
        );
        let e = one(&format!("{turn}allocations_per_user = 0\n"));
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(3), "turn.allocations_per_user")
        );
        assert!(e.hint.contains("allocations_per_user = 64"), "{e:?}");
        let e = one(&format!("{turn}allocations_total = -5\n"));
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(3), "turn.allocations_total")
        );
        let e = one(&format!("{turn}bandwidth_bytes_per_sec = 10\n"));
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(3), "turn.bandwidth_bytes_per_sec")
        );
    }

    #[test]
    fn turn_relay_address_v6() {
        let turn = "[turn]\nrealm = \"example.net\"\n";
        let t = ok(&format!(
            "{turn}relay_address = \"172.31.31.2\"\nrelay_address_v6 = \"2001:db8::2\"\n"
        ))
        .turn
        .unwrap();
        assert_eq!(t.relay_address_v6, Some("2001:db8::2".parse().unwrap()));
        let e = one(&format!("{turn}relay_address_v6 = \"10.0.0.1\"\n"));
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(3), "turn.relay_address_v6")
        );
        let e = one(&format!(
            "{turn}relay_address = \"2001:db8::1\"\nrelay_address_v6 = \"2001:db8::2\"\n"
        ));
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(4), "turn.relay_address_v6")
        );
    }

    #[test]
    fn metrics_listen_is_a_socket_address() {
        let e = one("[metrics]\nlisten = \"9100\"\n");
        assert_eq!((e.line, e.field.as_str()), (Some(2), "metrics.listen"));
        assert!(e.hint.contains("127.0.0.1:9100"), "{e}");
    }

    #[test]
    fn all_validation_errors_are_collected() {
        let text = "[proxy.listen]\nhttp = 90\nhttps = 90\n\n[[host]]\nname = \"bad name\"\nhttp = [\n  { path = \"x\", target = \"pbx\", tcp = 80 },\n]\n[metrics]\nlisten = \"x\"\n";
        let errors = errors(text);
        let got: Vec<(Option<usize>, &str)> =
            errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            got,
            [
                (Some(3), "proxy.listen.https"),
                (Some(6), "host[0].name"),
                (Some(8), "host[0].http[0].path"),
                (Some(8), "host[0].http[0].target"),
                (Some(11), "metrics.listen"),
            ]
        );
    }

    #[test]
    fn log_section() {
        let c = ok("");
        assert_eq!(c.log, LogConfig::default());
        assert!(c.log.stdout && c.log.syslog.is_none());
        assert_eq!((c.log.facility, c.log.app_name.as_str()), (16, "portico"));
        let c = ok("[log]\nstdout = false\nsyslog = \"udp://192.0.2.10:5514\"\nfacility = \"Daemon\"\napp_name = \"portico-dmz\"\n");
        assert!(!c.log.stdout);
        assert_eq!(
            c.log.syslog,
            Some(SyslogTarget::Udp {
                host: "192.0.2.10".into(),
                port: 5514
            })
        );
        assert_eq!(
            (c.log.facility, c.log.app_name.as_str()),
            (3, "portico-dmz")
        );
        let target = |s: &str| {
            ok(&format!("[log]\nsyslog = \"{s}\"\n"))
                .log
                .syslog
                .unwrap()
                .to_string()
        };
        assert_eq!(
            target("udp://loghost.example.net"),
            "udp://loghost.example.net:514"
        );
        assert_eq!(
            target("udp://[2001:db8::1]:1514"),
            "udp://[2001:db8::1]:1514"
        );
        assert_eq!(target("udp://[::1]"), "udp://[::1]:514");
        assert_eq!(target("unix:/dev/log"), "unix:/dev/log");
        assert_eq!(
            target("/run/systemd/journal/syslog"),
            "unix:/run/systemd/journal/syslog"
        );
        assert_eq!(ok("[log]\nfacility = \"local7\"\n").log.facility, 23);
    }

    #[test]
    fn log_section_errors() {
        for bad in [
            "udp://",
            "udp://192.0.2.10:0",
            "udp://192.0.2.10:70000",
            "udp://[::1",
            "udp://[pbx]:514",
            "udp://a b:514",
            "tcp://192.0.2.10:514",
            "dev/log",
            "",
        ] {
            let e = one(&format!("[log]\n\nsyslog = \"{bad}\"\n"));
            assert_eq!(
                (e.line, e.field.as_str()),
                (Some(3), "log.syslog"),
                "{bad}: {e}"
            );
            assert!(e.hint.contains("udp://192.0.2.10:514"), "{e}");
        }
        let e = one("[log]\nfacility = \"locl0\"\n");
        assert_eq!((e.line, e.field.as_str()), (Some(2), "log.facility"));
        assert!(
            e.hint.contains("did you mean facility = \"local0\"?"),
            "{e}"
        );
        let e = one("[log]\nfacility = \"console\"\n");
        assert!(e.hint.contains("local7"), "{e}");
        for bad in ["", "por tico", &"x".repeat(49)] {
            let e = one(&format!("[log]\napp_name = \"{bad}\"\n"));
            assert_eq!(
                (e.line, e.field.as_str()),
                (Some(2), "log.app_name"),
                "{bad}"
            );
        }
        let e = one("[log]\nsyslgo = \"unix:/dev/log\"\n");
        assert_eq!((e.line, e.field.as_str()), (Some(2), "log.syslgo"));
        assert!(e.hint.contains("did you mean `syslog`?"), "{e}");
        let e = one("[log]\nstdout = \"yes\"\n");
        assert_eq!((e.line, e.field.as_str()), (Some(2), "log.stdout"));
        assert!(e.hint.contains("stdout = true"), "{e}");
    }

    #[test]
    fn display_names_file_line_field_and_hint() {
        let e = one("[metrics]\nlisten = \"9100\"\n");
        let shown = e.to_string();
        assert!(
            shown.starts_with("/etc/portico/portico.toml:2: metrics.listen: "),
            "{shown}"
        );
        assert!(shown.contains("\n  hint: "), "{shown}");
    }
}
