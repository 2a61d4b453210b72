//! The immutable rule table built from a validated config, and the routing lookups of
//! DESIGN.md "Routing rules".
//!
//! Owns: host lookup (case-insensitive, exact: no implicit wildcard), the HTTP path
//! match of the seed ("More details on RP conditions"), and the domain lookup of the
//! LDAP, SIP and H.323 routing keys. The keys themselves are sniffed elsewhere
//! (`portico-proto`); the table is built once per (re)load and never changes.
//!
//! Promises: lookups do not allocate for names up to 256 bytes.

use std::net::{IpAddr, SocketAddr};

use crate::config::{Config, ServiceConfig};

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

impl From<&ServiceConfig> for ServiceTarget {
    fn from(s: &ServiceConfig) -> Self {
        ServiceTarget {
            target: s.target,
            tcp: s.tcp,
            tls: s.tls,
            check_certificate: s.check_certificate,
        }
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

/// The services routed by a domain key (see [`RuleTable::route_domain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Domain of the BindRequest user.
    Ldap,
    /// Domain of the `From:` URI of REGISTER/INVITE.
    Sip,
    /// Gatekeeper id without the physical location.
    H323,
}

/// Names up to this length are lower-cased on the stack for lookup.
const STACK_NAME: usize = 256;

/// Whether `rule` allows the (normalised) request `path` (seed, "More details on RP
/// conditions", HTTP):
/// - "one of the defined URLs must match the initial part of the requested URL (head
///   match)";
/// - "if the matching defined URL ends with a slash (/), the remainder of the
///   requested URL (the unmatched part) must not contain a slash";
/// - "an entry with an empty path matches any path"; with the Default check-mark it
///   "only matches if an empty path is present in the request" (`/`).
fn rule_matches(rule: &HttpRule, path: &str) -> bool {
    let Some(rest) = path.strip_prefix(rule.path.as_str()) else {
        return false;
    };
    if rule.default {
        return path.is_empty() || path == "/";
    }
    !(rule.path.ends_with('/') && rest.as_bytes().contains(&b'/'))
}

/// The immutable rule table. Host names are matched case-insensitively and exactly.
#[derive(Debug, Clone, Default)]
pub struct RuleTable {
    hosts: ahash::AHashMap<String, HostRules>,
}

impl RuleTable {
    pub fn from_config(config: &Config) -> RuleTable {
        let default_verify = config.tls.target_ca.is_some();
        let mut hosts = ahash::AHashMap::with_capacity(config.hosts.len());
        for h in &config.hosts {
            let mut http: Vec<HttpRule> = h
                .http
                .iter()
                .map(|r| HttpRule {
                    path: r.path.clone(),
                    default: r.default,
                    to: ServiceTarget {
                        target: r.target,
                        tcp: r.tcp,
                        tls: r.tls,
                        check_certificate: false,
                    },
                })
                .collect();
            // Longest path first, so the first match is the longest; at equal length a
            // `default` rule (which matches less) goes before the catch-all.
            http.sort_by(|a, b| {
                b.path
                    .len()
                    .cmp(&a.path.len())
                    .then(b.default.cmp(&a.default))
            });
            let rules = HostRules {
                name: h.name.clone(),
                verify_target: h.verify_target.unwrap_or(default_verify),
                http,
                ldap: h.ldap.as_ref().map(ServiceTarget::from),
                sip: h.sip.as_ref().map(ServiceTarget::from),
                h323: h.h323.as_ref().map(ServiceTarget::from),
            };
            // A validated config has no duplicate names; if one slips through, the
            // first entry wins, as a reader of the file would expect.
            hosts.entry(h.name.to_ascii_lowercase()).or_insert(rules);
        }
        RuleTable { hosts }
    }

    /// Look up a host by name (any case).
    pub fn host(&self, name: &str) -> Option<&HostRules> {
        if !name.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.hosts.get(name);
        }
        let mut buf = [0u8; STACK_NAME];
        match buf.get_mut(..name.len()) {
            Some(lower) => {
                lower.copy_from_slice(name.as_bytes());
                lower.make_ascii_lowercase();
                // ASCII lower-casing of valid UTF-8 is valid UTF-8, so this never fails.
                self.hosts.get(std::str::from_utf8(lower).ok()?)
            }
            None => self.hosts.get(&name.to_ascii_lowercase()),
        }
    }

    /// Route an HTTP request: `host` lower-case without port, `path` normalised.
    pub fn route_http(&self, host: &str, path: &str) -> Result<(&HostRules, &HttpRule), HttpMiss> {
        let rules = self.host(host).ok_or(HttpMiss::NoHost)?;
        // Sorted longest first: the first match is the longest one that matches, so a
        // longer head match that fails the trailing-slash test falls back to a
        // shorter rule.
        let rule = rules
            .http
            .iter()
            .find(|r| rule_matches(r, path))
            .ok_or(HttpMiss::NoRule)?;
        Ok((rules, rule))
    }

    /// Route an LDAP, SIP or H.323 request by its domain key (exact, any case).
    pub fn route_domain(
        &self,
        service: Service,
        key: &str,
    ) -> Option<(&HostRules, &ServiceTarget)> {
        let rules = self.host(key)?;
        let target = match service {
            Service::Ldap => rules.ldap.as_ref(),
            Service::Sip => rules.sip.as_ref(),
            Service::H323 => rules.h323.as_ref(),
        }?;
        Some((rules, target))
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;

    fn table(text: &str) -> RuleTable {
        RuleTable::from_config(
            &parse(Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e:#?}")),
        )
    }

    fn dvl() -> RuleTable {
        table(include_str!("../../examples/dvl-ckl2.toml"))
    }

    /// A table with one host `h` and one HTTP rule per `(path, default, target)`.
    fn http(rules: &[(&str, bool, u8)]) -> RuleTable {
        let mut text = String::from("[[host]]\nname = \"h\"\nhttp = [\n");
        for (path, default, last) in rules {
            text.push_str(&format!("  {{ path = \"{path}\", default = {default}, target = \"10.0.0.{last}\", tcp = 80 }},\n"));
        }
        text.push_str("]\n");
        table(&text)
    }

    /// Last octet of the target a path routes to on host `h`, or the miss.
    fn to(t: &RuleTable, path: &str) -> Result<u8, HttpMiss> {
        t.route_http("h", path).map(|(_, r)| match r.to.target {
            IpAddr::V4(v4) => v4.octets()[3],
            IpAddr::V6(_) => 0,
        })
    }

    fn http_target(
        t: &RuleTable,
        host: &str,
        path: &str,
    ) -> Result<(SocketAddr, SocketAddr), HttpMiss> {
        t.route_http(host, path)
            .map(|(_, r)| (r.to.tcp_addr().unwrap(), r.to.tls_addr().unwrap()))
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dvl_ckl2_http() {
        let t = dvl();
        assert_eq!(t.len(), 6);
        let hq = (sa("172.31.31.2:80"), sa("172.31.31.2:443"));
        for path in [
            "/PBX0/APPS/x",
            "/PBX0/APPS",
            "/PBX0/APPCLIENT/appclient.htm",
            "/PBX0/session",
            "/PBX0/user.soap",
            "/PBX0/ADMIN/x",
            "/OAUTH2/oauth2_login?x",
        ] {
            assert_eq!(http_target(&t, "hq.dvl-ckl2.net", path), Ok(hq), "{path}");
        }
        for path in ["/", "", "/PBX0", "/PBX0/APP", "/pbx0/apps/x", "/OAUTH2/"] {
            assert_eq!(
                http_target(&t, "hq.dvl-ckl2.net", path),
                Err(HttpMiss::NoRule),
                "{path}"
            );
        }
        let branch = (sa("172.31.31.3:80"), sa("172.31.31.3:443"));
        assert_eq!(
            http_target(&t, "branch-b.dvl-ckl2.net", "/PBX0/APPS/x"),
            Ok(branch)
        );
        let apps = (sa("172.31.31.12:80"), sa("172.31.31.12:443"));
        for path in ["/", "", "/anything/at/all"] {
            assert_eq!(http_target(&t, "apps.dvl-ckl2.net", path), Ok(apps));
        }
        // Hosts without HTTP rules exist, but route no HTTP.
        assert_eq!(http_target(&t, "dvl-ckl2.net", "/"), Err(HttpMiss::NoRule));
        assert_eq!(
            http_target(&t, "www.dvl-ckl2.net", "/"),
            Err(HttpMiss::NoHost)
        );
        assert_eq!(
            http_target(&t, "dvl-ckl2.net.evil.com", "/"),
            Err(HttpMiss::NoHost)
        );
        let (host, rule) = t.route_http("hq.dvl-ckl2.net", "/PBX0/APPS/x").unwrap();
        assert_eq!(host.name, "hq.dvl-ckl2.net");
        assert!(!host.verify_target && !rule.to.check_certificate);
    }

    #[test]
    fn dvl_ckl2_domains() {
        let t = dvl();
        let target = |service, key| t.route_domain(service, key).map(|(_, s)| s.clone());
        let st = |ip: &str, tcp, tls, check_certificate| {
            Some(ServiceTarget {
                target: ip.parse().unwrap(),
                tcp: Some(tcp),
                tls: Some(tls),
                check_certificate,
            })
        };
        assert_eq!(
            target(Service::Ldap, "apps.dvl-ckl2.net"),
            st("172.31.31.12", 389, 636, false)
        );
        assert_eq!(
            target(Service::Ldap, "branch-b.dvl-ckl2.net"),
            st("172.31.31.3", 389, 636, false)
        );
        assert_eq!(
            target(Service::Ldap, "hq.dvl-ckl2.net"),
            st("172.31.31.2", 389, 636, false)
        );
        assert_eq!(
            target(Service::Ldap, "dvl-ckl2.net"),
            st("172.31.31.2", 389, 636, false)
        );
        assert_eq!(target(Service::Ldap, "dvl-ckl2.net/branch-b"), None);
        assert_eq!(
            target(Service::H323, "dvl-ckl2.net"),
            st("172.31.31.2", 1720, 1300, true)
        );
        assert_eq!(
            target(Service::H323, "DVL-CKL2.NET/Branch-B"),
            st("172.31.31.3", 1720, 1300, true)
        );
        assert_eq!(
            target(Service::H323, "dvl-ckl2.net/hq"),
            st("172.31.31.2", 1720, 1300, true)
        );
        assert_eq!(target(Service::H323, "dvl-ckl2.net/nowhere"), None);
        assert_eq!(target(Service::H323, "hq.dvl-ckl2.net"), None);
        assert_eq!(
            target(Service::Sip, "dvl-ckl2.net"),
            st("172.31.31.2", 5060, 5061, true)
        );
        assert_eq!(
            target(Service::Sip, "dvl-ckl2.net/branch-b"),
            st("172.31.31.3", 5060, 5061, true)
        );
        assert_eq!(target(Service::Sip, "apps.dvl-ckl2.net"), None);
    }

    #[test]
    fn seed_examples_all_match_somepath() {
        for path in ["/somepath", "/some", "/", ""] {
            assert_eq!(
                to(&http(&[(path, false, 1)]), "/somepath"),
                Ok(1),
                "{path:?}"
            );
        }
        assert_eq!(
            to(&http(&[("/somepath/", false, 1)]), "/somepath"),
            Err(HttpMiss::NoRule)
        );
        assert_eq!(
            to(&http(&[("/Some", false, 1)]), "/somepath"),
            Err(HttpMiss::NoRule),
            "paths are case-sensitive"
        );
    }

    #[test]
    fn trailing_slash_allows_no_further_slash() {
        let t = http(&[("/dir/", false, 1)]);
        assert_eq!(to(&t, "/dir/file.htm"), Ok(1));
        assert_eq!(to(&t, "/dir/"), Ok(1));
        assert_eq!(to(&t, "/dir/sub/file.htm"), Err(HttpMiss::NoRule));
        assert_eq!(to(&t, "/dir"), Err(HttpMiss::NoRule));
        // The longest head match fails the slash test: a shorter rule still applies.
        let t = http(&[("/dir/", false, 1), ("/d", false, 2)]);
        assert_eq!(to(&t, "/dir/file.htm"), Ok(1));
        assert_eq!(to(&t, "/dir/sub/file.htm"), Ok(2));
        let t = http(&[("/", false, 1)]);
        assert_eq!(to(&t, "/index.htm"), Ok(1));
        assert_eq!(to(&t, "/a/b"), Err(HttpMiss::NoRule));
    }

    #[test]
    fn default_matches_only_the_empty_path() {
        let t = http(&[("", true, 1)]);
        assert_eq!(to(&t, "/"), Ok(1));
        assert_eq!(to(&t, ""), Ok(1));
        assert_eq!(to(&t, "/x"), Err(HttpMiss::NoRule));
        let t = http(&[("", false, 2), ("", true, 1), ("/app", false, 3)]);
        assert_eq!(to(&t, "/"), Ok(1));
        assert_eq!(to(&t, "/x"), Ok(2));
        assert_eq!(to(&t, "/app/x"), Ok(3));
    }

    #[test]
    fn longest_wins() {
        let t = http(&[
            ("/a", false, 1),
            ("/a/b/c", false, 3),
            ("/a/b", false, 2),
            ("", false, 9),
        ]);
        assert_eq!(to(&t, "/a/b/c/d"), Ok(3));
        assert_eq!(to(&t, "/a/b/x"), Ok(2));
        assert_eq!(to(&t, "/a/x"), Ok(1));
        assert_eq!(to(&t, "/b"), Ok(9));
        let paths: Vec<&str> = t
            .host("h")
            .unwrap()
            .http
            .iter()
            .map(|r| r.path.as_str())
            .collect();
        assert_eq!(paths, ["/a/b/c", "/a/b", "/a", ""]);
    }

    #[test]
    fn host_names_are_case_insensitive_and_exact() {
        let t = dvl();
        for name in ["hq.dvl-ckl2.net", "HQ.DVL-CKL2.NET", "Hq.Dvl-Ckl2.Net"] {
            assert_eq!(
                t.host(name).map(|h| h.name.as_str()),
                Some("hq.dvl-ckl2.net"),
                "{name}"
            );
        }
        for name in [
            "hq.dvl-ckl2.net.",
            "hq.dvl-ckl2",
            "x.hq.dvl-ckl2.net",
            "",
            "hq.dvl-ckl2.net:453",
        ] {
            assert!(t.host(name).is_none(), "{name}");
        }
        // Longer than the stack buffer: falls back to allocating, same answer.
        let long = format!("{}.EXAMPLE.net", "a".repeat(300));
        let t = table(&format!(
            "[[host]]\nname = \"{}.example.net\"\n",
            "a".repeat(60)
        ));
        assert!(t.host(&long).is_none());
        assert!(t.host(&format!("{}.EXAMPLE.NET", "A".repeat(60))).is_some());
        assert!(t.host("\u{c4}.example.net").is_none());
    }

    #[test]
    fn no_host_versus_no_rule() {
        let t = http(&[("/a", false, 1)]);
        assert_eq!(t.route_http("other", "/a").err(), Some(HttpMiss::NoHost));
        assert_eq!(to(&t, "/b"), Err(HttpMiss::NoRule));
    }

    #[test]
    fn verify_target_follows_target_ca_unless_overridden() {
        let hosts = "[[host]]\nname = \"a\"\n[[host]]\nname = \"b\"\nverify_target = false\n[[host]]\nname = \"c\"\nverify_target = true\n";
        let verify = |t: &RuleTable| ["a", "b", "c"].map(|n| t.host(n).unwrap().verify_target);
        assert_eq!(verify(&table(hosts)), [false, false, true]);
        assert_eq!(
            verify(&table(&format!("[tls]\ntarget_ca = \"ca.pem\"\n{hosts}"))),
            [true, false, true]
        );
    }
}
