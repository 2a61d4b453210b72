//! The immutable rule table built from a validated config, and the routing lookups of
//! DESIGN.md "Routing rules".
//!
//! SKELETON: types fixed, lookups being written.

use std::net::{IpAddr, SocketAddr};

use crate::config::Config;

/// Where a service goes: the target address and its plain and TLS ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    pub target: IpAddr,
    pub tcp: Option<u16>,
    pub tls: Option<u16>,
    pub check_certificate: bool,
}

impl ServiceTarget {
    /// The plain TCP address, if a `tcp` port is configured.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.map(|p| SocketAddr::new(self.target, p))
    }
    /// The TLS address, if a `tls` port is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.map(|p| SocketAddr::new(self.target, p))
    }
}

/// One HTTP rule of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    pub path: String,
    pub default: bool,
    pub to: ServiceTarget,
}

/// All rules of one `[[host]]`.
#[derive(Debug, Clone)]
pub struct HostRules {
    /// As configured (original case).
    pub name: String,
    /// Whether TLS connections to this host's targets verify the target certificate.
    pub verify_target: bool,
    /// Sorted longest path first.
    pub http: Vec<HttpRule>,
    pub ldap: Option<ServiceTarget>,
    pub sip: Option<ServiceTarget>,
    pub h323: Option<ServiceTarget>,
}

/// Why an HTTP request found no rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMiss {
    /// No `[[host]]` with that name (answer 421 or 404).
    NoHost,
    /// The host exists but no HTTP rule matches the path (answer 403/404).
    NoRule,
}

/// The immutable rule table. Host names are matched case-insensitively and exactly.
#[derive(Debug, Clone, Default)]
pub struct RuleTable {
    hosts: ahash::AHashMap<String, HostRules>,
}

impl RuleTable {
    pub fn from_config(config: &Config) -> RuleTable {
        let _ = config;
        RuleTable::default()
    }

    /// Look up a host by name (any case).
    pub fn host(&self, name: &str) -> Option<&HostRules> {
        self.hosts.get(&name.to_ascii_lowercase())
    }

    /// Route an HTTP request: `host` lower-case without port, `path` normalised.
    pub fn route_http(&self, host: &str, path: &str) -> Result<(&HostRules, &HttpRule), HttpMiss> {
        let _ = (host, path);
        Err(HttpMiss::NoHost)
    }
}
