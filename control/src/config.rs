//! The TOML configuration (the schema in DESIGN.md is a contract) parsed into a
//! validated [`Config`]. Errors name the file, the line and the field, and say what to
//! write instead.
//!
//! SKELETON: types fixed, parsing being written.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    pub relay_ports: (u16, u16),
    pub allowed_peers: Vec<String>,
    pub allow_loopback_peers: bool,
    pub users: Vec<(String, String)>,
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub listen: std::net::SocketAddr,
}

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
        match self.line {
            Some(line) => write!(f, "{}:{}: {}: {}", self.file.display(), line, self.field, self.message)?,
            None => write!(f, "{}: {}: {}", self.file.display(), self.field, self.message)?,
        }
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
    let _ = (path, text);
    Err(vec![])
}
