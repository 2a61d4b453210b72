//! What the caller configures a [`super::TurnServer`] with: realm, relay addresses,
//! peer policy inputs, users and REST secrets, quotas, lifetimes (the `[turn]` section
//! of the configuration, already parsed by the control plane), plus [`IpNet`], the CIDR
//! type `allowed_peers` is written in.
//!
//! Nothing here is derived yet: the server precomputes the long-term keys and USERHASH
//! table of the static users when it is built or reconfigured.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

/// The `[turn]` configuration one shard's server runs with.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// REALM (RFC 8489 §14.9); part of every long-term key.
    pub realm: String,
    /// The IPv4 relayed address (`relay_address`): what XOR-RELAYED-ADDRESS carries and
    /// the IP the caller binds IPv4 relay sockets on. `None`: no IPv4 allocations (440).
    pub relay_v4: Option<Ipv4Addr>,
    /// The IPv6 relayed address, for REQUESTED-ADDRESS-FAMILY IPv6 and dual-stack
    /// allocations (ADDITIONAL-ADDRESS-FAMILY). `None`: no IPv6 allocations.
    pub relay_v6: Option<Ipv6Addr>,
    /// `relay_ports`: the range relay sockets are bound in. The caller's
    /// [`super::RelayIo`] picks ports; the server uses the range for the peer policy (a
    /// peer on one of the box's own addresses is allowed only on a relay port).
    pub relay_ports: PortRange,
    /// `allowed_peers`: a peer must fall inside one of these (after the refusals of
    /// [`super::PeerPolicy`]). Empty refuses every peer: never an open relay.
    pub allowed_peers: Vec<IpNet>,
    /// `allow_loopback_peers`: lets loopback peers through (still subject to
    /// `allowed_peers`). For tests only.
    pub allow_loopback_peers: bool,
    /// The box's own addresses (every listening IP and interface address; the relay
    /// addresses are added implicitly). A peer on one of them is refused unless its port
    /// is inside `relay_ports`.
    pub own_addresses: Vec<IpAddr>,
    /// Static users: name and password (`users = [{ name, password }]`).
    pub users: Vec<(String, String)>,
    /// TURN REST shared secrets, current first; every one is accepted, so a secret can be
    /// rotated by prepending the new one and dropping the old later.
    pub rest_secrets: Vec<Vec<u8>>,
    /// Quotas (per shard).
    pub quotas: Quotas,
    /// Lifetimes and timers.
    pub lifetimes: Lifetimes,
    /// Rate limit of 401 answers and failed authentications per client IP.
    pub auth_rate_limit: AuthRateLimit,
    /// SOFTWARE to put in responses; `None` (the default) sends none (RFC 8489 §16.1.2:
    /// it helps attackers find vulnerable versions).
    pub software: Option<String>,
}

impl fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig")
            .field("realm", &self.realm)
            .field("relay_v4", &self.relay_v4)
            .field("relay_v6", &self.relay_v6)
            .field("relay_ports", &self.relay_ports)
            .field("allowed_peers", &self.allowed_peers)
            .field("allow_loopback_peers", &self.allow_loopback_peers)
            .field("own_addresses", &self.own_addresses)
            .field(
                "users",
                &self
                    .users
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("rest_secrets", &self.rest_secrets.len())
            .field("quotas", &self.quotas)
            .field("lifetimes", &self.lifetimes)
            .field("auth_rate_limit", &self.auth_rate_limit)
            .field("software", &self.software)
            .finish()
    }
}

impl TurnConfig {
    /// A configuration with the defaults below and nothing allowed: no relay address,
    /// no users, no allowed peers.
    pub fn new(realm: impl Into<String>) -> TurnConfig {
        TurnConfig {
            realm: realm.into(),
            relay_v4: None,
            relay_v6: None,
            relay_ports: PortRange::DYNAMIC,
            allowed_peers: Vec::new(),
            allow_loopback_peers: false,
            own_addresses: Vec::new(),
            users: Vec::new(),
            rest_secrets: Vec::new(),
            quotas: Quotas::default(),
            lifetimes: Lifetimes::default(),
            auth_rate_limit: AuthRateLimit::default(),
            software: None,
        }
    }
}

/// An inclusive port range (`relay_ports = "49152-65535"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// 49152–65535: "the server SHOULD only allocate ports from the range 49152 - 65535
    /// (the Dynamic and/or Private Port range)" (RFC 8656 §7.2).
    pub const DYNAMIC: PortRange = PortRange {
        first: 49152,
        last: 65535,
    };

    /// Whether `port` is inside.
    pub const fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

/// Quotas, counted per shard (each shard runs its own server; the caller divides the
/// box-wide figures between shards if it wants box-wide limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Allocations one username may hold (486 Allocation Quota Reached beyond).
    pub allocations_per_user: u32,
    /// Allocations in total (508 Insufficient Capacity beyond).
    pub allocations_total: u32,
    /// Permissions per allocation (508 beyond).
    pub permissions_per_allocation: u32,
    /// Channel bindings per allocation, counting those in their 5-minute
    /// post-expiry hold (508 beyond).
    pub channels_per_allocation: u32,
    /// Relayed bytes per second per allocation, both directions together; `None`: no cap.
    /// The bucket holds one second of traffic; datagrams beyond it are dropped.
    pub bandwidth_bytes_per_sec: Option<u64>,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            allocations_per_user: 64,
            allocations_total: 8192,
            permissions_per_allocation: 32,
            channels_per_allocation: 32,
            bandwidth_bytes_per_sec: None,
        }
    }
}

/// Lifetimes and timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// "the default lifetime of an allocation is 10 minutes" (RFC 8656 §2.2; §7.2
    /// "Lifetime"). Also the floor of a requested lifetime.
    pub allocation_default: Duration,
    /// The maximum allocation lifetime: "The server ... SHOULD NOT exceed ... 3600
    /// seconds (1 hour)" (RFC 8656 §7.2 "maximum allowed lifetime").
    pub allocation_max: Duration,
    /// "The Permission Lifetime MUST be 300 seconds (= 5 minutes)" (RFC 8656 §9).
    pub permission: Duration,
    /// "A channel binding lasts for 10 minutes unless refreshed" (RFC 8656 §12).
    pub channel: Duration,
    /// After a channel binding expires, its channel number and peer address cannot be
    /// bound to anything else for 5 minutes (RFC 8656 §12, the note of §12.2).
    pub channel_reuse_hold: Duration,
    /// How long an EVEN-PORT R-bit reservation waits for its RESERVATION-TOKEN
    /// ("approximately 30 seconds", RFC 8656 §7.2).
    pub reservation: Duration,
    /// How long a NONCE stays valid before 438 (Stale Nonce).
    pub nonce: Duration,
}

impl Default for Lifetimes {
    fn default() -> Lifetimes {
        Lifetimes {
            allocation_default: Duration::from_secs(600),
            allocation_max: Duration::from_secs(3600),
            permission: Duration::from_secs(300),
            channel: Duration::from_secs(600),
            channel_reuse_hold: Duration::from_secs(300),
            reservation: Duration::from_secs(30),
            nonce: Duration::from_secs(600),
        }
    }
}

/// Token bucket on 401 answers per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthRateLimit {
    /// 401s one IP may receive in a burst (a whole office behind one NAT starts its
    /// softphones at 9:00, each with one challenge).
    pub burst: u32,
    /// One more 401 per this interval.
    pub interval: Duration,
    /// IPs tracked at most; beyond, new IPs share one bucket.
    pub table_size: usize,
}

impl Default for AuthRateLimit {
    fn default() -> AuthRateLimit {
        AuthRateLimit {
            burst: 64,
            interval: Duration::from_millis(100),
            table_size: 4096,
        }
    }
}

/// An IP network in CIDR notation (`172.31.31.0/24`, `fd00::/8`, or a bare address for
/// a single host). Host bits are cleared; an IPv4-mapped IPv6 network of prefix 96 or
/// more is stored as the IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not a CIDR network.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    /// The part before `/` is not an IP address.
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    /// The prefix length is not a number up to 32 (IPv4) or 128 (IPv6).
    #[error("{0:?} is not a valid prefix length")]
    BadPrefix(String),
}

impl IpNet {
    /// A network from an address and a prefix length; `None` if the prefix is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > max {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
        };
        Some(IpNet { addr, prefix })
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside. IPv4-mapped IPv6 addresses are compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<IpNet, IpNetError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| IpNetError::BadAddress(addr.to_string()))?;
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(IpNetError::BadPrefix(p.to_string()));
                }
                p.parse::<u8>()
                    .map_err(|_| IpNetError::BadPrefix(p.to_string()))?
            }
        };
        if prefix > max {
            return Err(IpNetError::BadPrefix(prefix.to_string()));
        }
        IpNet::new(addr, prefix).ok_or_else(|| IpNetError::BadPrefix(prefix.to_string()))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_contains() {
        let net: IpNet = "172.31.31.0/24".parse().unwrap();
        assert!(net.contains(ip("172.31.31.0")));
        assert!(net.contains(ip("172.31.31.255")));
        assert!(net.contains(ip("::ffff:172.31.31.7")));
        assert!(!net.contains(ip("172.31.32.1")));
        assert!(!net.contains(ip("::1")));
        let host: IpNet = "10.0.0.1".parse().unwrap();
        assert_eq!(host.prefix(), 32);
        assert!(host.contains(ip("10.0.0.1")));
        assert!(!host.contains(ip("10.0.0.2")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("2001:db8::1")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all6: IpNet = "::/0".parse().unwrap();
        assert!(all6.contains(ip("fe80::1")));
        // Host bits are cleared.
        let n: IpNet = "172.31.31.2/24".parse().unwrap();
        assert_eq!(n.to_string(), "172.31.31.0/24");
        // Mapped networks become IPv4.
        let m: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(m.to_string(), "10.0.0.0/8");
        assert!(m.contains(ip("10.1.2.3")));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0/8",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/0008",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }
}
