//! `portico plan`: what the rest of the site needs so that portico is reachable, as the
//! seed's tables ("Port forwardings on your internet router", "DNS settings") — the
//! router's port forwardings, the official and the internal DNS records for every host
//! name, and the DNS names the certificate must carry.
//!
//! Owns: deriving the [`Plan`] from a validated [`Config`] and rendering it, as a
//! readable table ([`render_table`]) or as BIND zone-file fragments ([`render_zone`]).
//! Pure: no I/O, nothing printed.
//!
//! Decisions:
//! - The router forwards each service's *standard* port (HTTP 80, HTTPS 443, LDAP 389,
//!   LDAPS 636, SIP 5060, SIPS 5061, H.323 1720, H.323 TLS 1300) to portico's listen
//!   port: clients always use standard ports, portico listens on non-standard ones when
//!   it shares the box with a PBX (the seed's "Port conflicts"). TURN is forwarded
//!   3478 → `listen_udp`/`listen_tcp` (3478 when unset), TURN TLS 5349 → `listen_tls`.
//! - The forwarding destination is the box: the first specific (not wildcard, not
//!   loopback) bind address, IPv4 first; else the `box_ip` given; else `[turn]
//!   relay_address` (the TURN server runs in portico, so that is this box); else the
//!   placeholder [`UNKNOWN_BOX`].
//! - Official DNS: every host name that is a DNS name (`domain/location` names are H.323
//!   routing keys, not DNS names; IP literals and single labels are skipped) gets an A
//!   (AAAA) record to the public address: `public_ip`, else `[proxy]
//!   public_nat_address` (the router's public address). Without either, CNAMEs to
//!   `router.<domain>` — the seed's preferred form — and a note that the router name
//!   needs an A record (or a CNAME to the DynDNS name).
//! - Internal DNS: every DNS host name gets an A (AAAA) record to its private target:
//!   the HTTP target (the most used one when the HTTP rules disagree), else LDAP, else
//!   SIP, else H.323; a host whose rules point at several targets gets a note.
//! - Certificate: every DNS host name; suggested: a wildcard `*.parent` for each parent
//!   domain with two or more host names below it (the seed recommends a wildcard
//!   certificate), plus the names no suggested wildcard covers (a wildcard covers one
//!   label: not the parent itself).

use std::net::IpAddr;

use serde::Serialize;

use crate::config::{Config, HostConfig};

/// The destination written when the box's private address is not known.
pub const UNKNOWN_BOX: &str = "<portico address>";

/// Everything `portico plan` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The router's port forwardings, in the seed's order (TURN first).
    pub forwardings: Vec<Forwarding>,
    /// The box address the forwardings point at (or [`UNKNOWN_BOX`]).
    pub box_address: String,
    /// The domain the host names share (for the router name), when there is one.
    pub domain: Option<String>,
    /// Records for the official (public) DNS.
    pub official: Vec<DnsRecord>,
    /// Records for the internal DNS of the private network.
    pub internal: Vec<DnsRecord>,
    /// The DNS names the certificate must carry (lower case, configuration order).
    pub certificate_names: Vec<String>,
    /// A shorter set of names that covers them: wildcards plus the names left over.
    pub suggested_certificate_names: Vec<String>,
    /// What the reader must know or still do.
    pub notes: Vec<String>,
}

/// One port forwarding on the internet router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forwarding {
    /// "TURN", "HTTP", "HTTPS", "LDAP", "LDAPS", "SIP", "SIPS", "H.323 TCP", "H.323 TLS",
    /// "TURN TLS".
    pub service: &'static str,
    /// "TCP" or "UDP".
    pub protocol: &'static str,
    /// The port clients use (the standard port).
    pub public_port: u16,
    /// The box's address, or [`UNKNOWN_BOX`].
    pub destination: String,
    /// The port portico listens on.
    pub destination_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "CNAME")]
    Cname,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
        }
    }

    fn for_ip(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            RecordType::A
        } else {
            RecordType::Aaaa
        }
    }
}

/// One DNS record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    /// Fully qualified, lower case, without the trailing dot.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// An address, or a name (CNAME, without the trailing dot).
    pub value: String,
    /// What the name is used for, e.g. "HTTP, LDAP".
    pub remark: String,
}

/// Whether a `[[host]] name` is a DNS name (one that DNS records and certificates are
/// about): not a `domain/registration-location` H.323 key, not an IP literal, and with
/// at least two labels.
pub fn is_dns_name(name: &str) -> bool {
    !name.contains('/') && name.parse::<IpAddr>().is_err() && name.contains('.')
}

/// Whether the certificate name `pattern` (a DNS name, or `*.` and a DNS name) covers
/// the host name `name`, case-insensitively. A wildcard stands for exactly one label:
/// `*.dvl-ckl2.net` covers `hq.dvl-ckl2.net`, not `dvl-ckl2.net` nor `a.b.dvl-ckl2.net`.
pub fn name_covers(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .strip_suffix(parent)
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => pattern == name,
    }
}

/// The standard port of each proxy service, with the names used in tables.
/// (service, config key, standard port)
const SERVICES: [(&str, &str, u16); 8] = [
    ("HTTP", "http", 80),
    ("HTTPS", "https", 443),
    ("LDAP", "ldap", 389),
    ("LDAPS", "ldaps", 636),
    ("SIP", "sip", 5060),
    ("SIPS", "sips", 5061),
    ("H.323 TCP", "h323", 1720),
    ("H.323 TLS", "h323_tls", 1300),
];

/// The standard port of a `[proxy.listen]` key (`"http"` → 80).
pub fn standard_port(key: &str) -> Option<u16> {
    SERVICES
        .iter()
        .find(|(_, k, _)| *k == key)
        .map(|&(_, _, p)| p)
}

/// The listen port configured for a `[proxy.listen]` key.
pub(crate) fn listen_port(config: &Config, key: &str) -> Option<u16> {
    let l = &config.proxy.listen;
    match key {
        "http" => l.http,
        "https" => l.https,
        "ldap" => l.ldap,
        "ldaps" => l.ldaps,
        "sip" => l.sip,
        "sips" => l.sips,
        "h323" => l.h323,
        "h323_tls" => l.h323_tls,
        _ => None,
    }
}

/// Work out the plan. `public_ip` is the router's public address (`--public-ip`);
/// `box_ip` the private address of the box portico runs on, when known.
pub fn plan(config: &Config, public_ip: Option<IpAddr>, box_ip: Option<IpAddr>) -> Plan {
    let mut notes = Vec::new();
    let box_address = box_address(config, box_ip, &mut notes);
    let forwardings = forwardings(config, &box_address);

    // The DNS host names, once each (names are case-insensitive), in config order.
    let mut hosts: Vec<(String, &HostConfig)> = Vec::new();
    for h in &config.hosts {
        let name = h.name.trim_end_matches('.').to_ascii_lowercase();
        if is_dns_name(&name) && !hosts.iter().any(|(n, _)| *n == name) {
            hosts.push((name, h));
        }
    }
    let skipped: Vec<&str> = config
        .hosts
        .iter()
        .filter(|h| !is_dns_name(&h.name))
        .map(|h| h.name.as_str())
        .collect();
    if !skipped.is_empty() {
        notes.push(format!(
            "not DNS names, so no records for them: {} (a name with '/' is an H.323 gatekeeper id's domain/location; clients connect to one of the DNS names)",
            skipped.join(", ")
        ));
    }
    let names: Vec<String> = hosts.iter().map(|(n, _)| n.clone()).collect();
    let domain = common_domain(&names);

    // Official DNS.
    let public = public_ip.map(|ip| (ip, false)).or_else(|| {
        config
            .proxy
            .public_nat_address
            .as_deref()
            .and_then(parse_ip_or_socket)
            .map(|ip| (ip, true))
    });
    let mut official = Vec::new();
    match public {
        Some((ip, from_config)) => {
            if from_config && !hosts.is_empty() {
                notes.push(format!("the router's public address {ip} is taken from [proxy] public_nat_address; pass --public-ip to use another"));
            }
            for (name, h) in &hosts {
                official.push(DnsRecord {
                    name: name.clone(),
                    kind: RecordType::for_ip(ip),
                    value: ip.to_string(),
                    remark: services(h),
                });
            }
        }
        None if !hosts.is_empty() => {
            let router = format!("router.{}", domain.as_deref().unwrap_or("example.net"));
            for (name, h) in &hosts {
                official.push(DnsRecord {
                    name: name.clone(),
                    kind: RecordType::Cname,
                    value: router.clone(),
                    remark: services(h),
                });
            }
            notes.push(format!("the official DNS also needs an A record for {router} with the router's public address (or a CNAME to your DynDNS name); pass --public-ip to write A records to it directly instead of CNAMEs"));
        }
        None => {}
    }
    let routing_only: Vec<&str> = hosts
        .iter()
        .filter(|(_, h)| h.http.is_empty())
        .map(|(n, _)| n.as_str())
        .collect();
    if !routing_only.is_empty() {
        let (verb, these) = if routing_only.len() == 1 {
            ("serves", "this name")
        } else {
            ("serve", "these names")
        };
        notes.push(format!(
            "{} {verb} only SIP/H.323/LDAP: a routing key (SIP domain, gatekeeper id, LDAP bind domain) more than a name clients connect to; its records are needed only if clients also connect by {these} (leave an existing record of a domain apex, e.g. a web site, alone)",
            routing_only.join(", ")
        ));
    }

    // Internal DNS.
    let mut internal = Vec::new();
    for (name, h) in &hosts {
        let targets = host_targets(h);
        let Some(&(_, target)) = targets.first() else {
            notes.push(format!("{name} has no rules: no internal record"));
            continue;
        };
        let mut others: Vec<String> = Vec::new();
        for (service, ip) in &targets[1..] {
            if *ip != target && !others.iter().any(|o| o.ends_with(&format!(" {ip}"))) {
                others.push(format!("{service} → {ip}"));
            }
        }
        if !others.is_empty() {
            notes.push(format!(
                "{name} has rules to several targets ({} first; also {}): its internal record points at {target}; consider one host name per box",
                targets[0].0,
                others.join(", ")
            ));
        }
        internal.push(DnsRecord {
            name: name.clone(),
            kind: RecordType::for_ip(target),
            value: target.to_string(),
            remark: services(h),
        });
    }
    if !internal.is_empty() {
        notes.push("the internal DNS must be used by every telephony device and by every PC running myApps (hand it out by DHCP); names it does not know it forwards to the official DNS".to_string());
    }

    let suggested_certificate_names = suggest_certificate(&names);
    Plan {
        forwardings,
        box_address,
        domain,
        official,
        internal,
        certificate_names: names,
        suggested_certificate_names,
        notes,
    }
}

fn parse_ip_or_socket(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|sa| sa.ip()))
}

fn box_address(config: &Config, box_ip: Option<IpAddr>, notes: &mut Vec<String>) -> String {
    let bind = &config.proxy.listen.bind;
    let mut specific: Vec<IpAddr> = bind
        .iter()
        .copied()
        .filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
        .collect();
    specific.sort_by_key(|ip| ip.is_ipv6()); // IPv4 first: routers forward IPv4
    if let Some(&ip) = specific.first() {
        if let Some(given) = box_ip.filter(|given| *given != ip) {
            notes.push(format!("portico listens on {ip} ([proxy.listen] bind), not on the box address {given} given: the forwardings point at {ip}"));
        }
        return ip.to_string();
    }
    if !bind.is_empty() && bind.iter().all(|ip| ip.is_loopback()) {
        notes.push(format!("portico listens only on loopback ([proxy.listen] bind = {bind:?}): the router cannot forward to it; bind it to the box's private address or to 0.0.0.0"));
    }
    if let Some(ip) = box_ip {
        return ip.to_string();
    }
    if let Some(ip) = config.turn.as_ref().and_then(|t| t.relay_address) {
        notes.push(format!(
            "the box address {ip} is taken from [turn] relay_address"
        ));
        return ip.to_string();
    }
    notes.push(format!("the box's private address is not known: replace {UNKNOWN_BOX} by it (or give it, or bind portico to it in [proxy.listen] bind)"));
    UNKNOWN_BOX.to_string()
}

fn forwardings(config: &Config, destination: &str) -> Vec<Forwarding> {
    let mut out = Vec::new();
    let row = |service, protocol, public_port, destination_port| Forwarding {
        service,
        protocol,
        public_port,
        destination: destination.to_string(),
        destination_port,
    };
    if let Some(turn) = &config.turn {
        out.push(row("TURN", "UDP", 3478, turn.listen_udp.unwrap_or(3478)));
        out.push(row("TURN", "TCP", 3478, turn.listen_tcp.unwrap_or(3478)));
    }
    for (service, key, standard) in SERVICES {
        if let Some(port) = listen_port(config, key) {
            out.push(row(service, "TCP", standard, port));
        }
    }
    if let Some(port) = config.turn.as_ref().and_then(|t| t.listen_tls) {
        out.push(row("TURN TLS", "TCP", 5349, port));
    }
    out
}

/// The host's targets, in the order of preference for its internal DNS record: the
/// HTTP targets (most used first), then LDAP, SIP, H.323.
fn host_targets(h: &HostConfig) -> Vec<(&'static str, IpAddr)> {
    let mut http: Vec<(IpAddr, usize)> = Vec::new();
    for r in &h.http {
        match http.iter_mut().find(|(ip, _)| *ip == r.target) {
            Some((_, n)) => *n += 1,
            None => http.push((r.target, 1)),
        }
    }
    http.sort_by_key(|&(_, n)| std::cmp::Reverse(n)); // stable: ties keep rule order
    let mut out: Vec<(&'static str, IpAddr)> =
        http.into_iter().map(|(ip, _)| ("HTTP", ip)).collect();
    out.extend(h.ldap.as_ref().map(|s| ("LDAP", s.target)));
    out.extend(h.sip.as_ref().map(|s| ("SIP", s.target)));
    out.extend(h.h323.as_ref().map(|s| ("H.323", s.target)));
    out
}

/// "HTTP, LDAP, SIP, H.323": what a host serves.
fn services(h: &HostConfig) -> String {
    let mut s = Vec::new();
    if !h.http.is_empty() {
        s.push("HTTP");
    }
    if h.ldap.is_some() {
        s.push("LDAP");
    }
    if h.sip.is_some() {
        s.push("SIP");
    }
    if h.h323.is_some() {
        s.push("H.323");
    }
    s.join(", ")
}

/// The parent of a DNS name if it still has two labels (`hq.example.net` →
/// `example.net`; `example.net` → none).
fn parent(name: &str) -> Option<&str> {
    name.split_once('.')
        .map(|(_, p)| p)
        .filter(|p| p.contains('.'))
}

/// The domain most host names belong to: each name counts for its parent, a name
/// without one (an apex such as `example.net`) for itself.
fn common_domain(names: &[String]) -> Option<String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for name in names {
        let d = parent(name).unwrap_or(name);
        match counts.iter_mut().find(|(c, _)| *c == d) {
            Some((_, n)) => *n += 1,
            None => counts.push((d, 1)),
        }
    }
    // max_by_key returns the last maximum: reverse so that ties go to the first.
    counts
        .iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(d, _)| d.to_string())
}

fn suggest_certificate(names: &[String]) -> Vec<String> {
    let mut wildcards: Vec<String> = Vec::new();
    for name in names {
        if let Some(p) = parent(name) {
            let w = format!("*.{p}");
            let siblings = names.iter().filter(|n| parent(n) == Some(p)).count();
            if siblings >= 2 && !wildcards.contains(&w) {
                wildcards.push(w);
            }
        }
    }
    let mut out = wildcards.clone();
    for name in names {
        if !wildcards.iter().any(|w| name_covers(w, name)) {
            out.push(name.clone());
        }
    }
    out
}

/// Render a table with a header row; columns padded to the widest cell.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut l = String::from("  ");
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            l.push_str(cell);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The plan as readable tables, in the seed's layout.
pub fn render_table(plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str("Port forwardings on your internet router\n");
    if plan.forwardings.is_empty() {
        out.push_str("  none: no listener and no [turn] configured\n");
    } else {
        let rows: Vec<Vec<String>> = plan
            .forwardings
            .iter()
            .map(|f| {
                vec![
                    f.service.to_string(),
                    f.protocol.to_string(),
                    f.public_port.to_string(),
                    f.destination.clone(),
                    f.destination_port.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "Service",
                "Protocol",
                "Port",
                "Destination address",
                "Destination port",
            ],
            &rows,
        );
    }
    for (title, records) in [
        ("DNS names in the official DNS", &plan.official),
        ("DNS names in the internal DNS", &plan.internal),
    ] {
        out.push('\n');
        out.push_str(title);
        out.push('\n');
        if records.is_empty() {
            out.push_str("  none: no host name is a DNS name\n");
            continue;
        }
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                vec![
                    r.kind.as_str().to_string(),
                    r.name.clone(),
                    r.value.clone(),
                    r.remark.clone(),
                ]
            })
            .collect();
        table(&mut out, &["Type", "Name", "Value", "Used for"], &rows);
    }
    out.push_str("\nCertificate\n");
    if plan.certificate_names.is_empty() {
        out.push_str("  no host name is a DNS name\n");
    } else {
        out.push_str(&format!(
            "  must carry: {}\n",
            plan.certificate_names.join(", ")
        ));
        if plan.suggested_certificate_names != plan.certificate_names {
            out.push_str(&format!(
                "  suggested: a wildcard certificate with {}\n",
                plan.suggested_certificate_names.join(", ")
            ));
        }
    }
    if !plan.notes.is_empty() {
        out.push_str("\nNotes\n");
        for n in &plan.notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out
}

/// The DNS records as BIND zone-file fragments: one for the official zone, one for the
/// internal zone. Names are absolute (trailing dot); no TTL (the zone's default
/// applies).
pub fn render_zone(plan: &Plan) -> String {
    let mut out = String::new();
    let width = plan
        .official
        .iter()
        .chain(&plan.internal)
        .map(|r| r.name.len() + 1)
        .max()
        .unwrap_or(0)
        .max(8);
    let record = |out: &mut String, r: &DnsRecord| {
        let value = match r.kind {
            RecordType::Cname => format!("{}.", r.value),
            _ => r.value.clone(),
        };
        let name = format!("{}.", r.name);
        out.push_str(&format!(
            "{name:<width$}  IN  {:<5}  {value:<15}  ; {}\n",
            r.kind.as_str(),
            r.remark
        ));
    };
    out.push_str("; official DNS (public): the names resolve to the internet router, which forwards to portico\n");
    if plan.official.iter().any(|r| r.kind == RecordType::Cname) {
        let router = plan
            .official
            .first()
            .map(|r| r.value.clone())
            .unwrap_or_default();
        out.push_str(&format!("; required, with your router's public address (or a CNAME to your DynDNS name):\n; {router}.  IN  A  <public address of the router>\n"));
    }
    for r in &plan.official {
        record(&mut out, r);
    }
    out.push_str("\n; internal DNS (private network): the names resolve to the targets directly\n");
    for r in &plan.internal {
        record(&mut out, r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    const DVL: &str = include_str!("../../examples/dvl-ckl2.toml");

    fn dvl() -> Config {
        parse(Path::new("examples/dvl-ckl2.toml"), DVL).unwrap_or_else(|e| panic!("{e:#?}"))
    }

    fn ok(text: &str) -> Config {
        parse(Path::new("/etc/portico/portico.toml"), text).unwrap_or_else(|e| panic!("{e:#?}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn record(plan_records: &[DnsRecord], name: &str) -> (RecordType, String) {
        let r = plan_records
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no record for {name}: {plan_records:#?}"));
        (r.kind, r.value.clone())
    }

    #[test]
    fn seed_port_forwardings() {
        let p = plan(&dvl(), Some(ip("78.54.23.241")), Some(ip("172.31.31.2")));
        let got: Vec<(&str, &str, u16, &str, u16)> = p
            .forwardings
            .iter()
            .map(|f| {
                (
                    f.service,
                    f.protocol,
                    f.public_port,
                    f.destination.as_str(),
                    f.destination_port,
                )
            })
            .collect();
        let b = "172.31.31.2";
        // The seed's table "Port forwardings on your internet router", row by row.
        assert_eq!(
            got,
            [
                ("TURN", "UDP", 3478, b, 3478),
                ("TURN", "TCP", 3478, b, 3478),
                ("HTTP", "TCP", 80, b, 90),
                ("HTTPS", "TCP", 443, b, 453),
                ("LDAP", "TCP", 389, b, 399),
                ("LDAPS", "TCP", 636, b, 646),
                ("SIP", "TCP", 5060, b, 5070),
                ("SIPS", "TCP", 5061, b, 5071),
                ("H.323 TCP", "TCP", 1720, b, 1730),
                ("H.323 TLS", "TCP", 1300, b, 1310),
            ]
        );
        // Without the box address, [turn] relay_address (the same box) is used.
        let p = plan(&dvl(), None, None);
        assert!(p.forwardings.iter().all(|f| f.destination == b));
    }

    #[test]
    fn seed_dns_tables() {
        let p = plan(&dvl(), Some(ip("78.54.23.241")), Some(ip("172.31.31.2")));
        // "DNS names in the official DNS" (the A-record variant).
        for name in [
            "hq.dvl-ckl2.net",
            "apps.dvl-ckl2.net",
            "branch-b.dvl-ckl2.net",
        ] {
            assert_eq!(
                record(&p.official, name),
                (RecordType::A, "78.54.23.241".to_string())
            );
        }
        // "DNS names in the internal DNS".
        for (name, target) in [
            ("hq.dvl-ckl2.net", "172.31.31.2"),
            ("apps.dvl-ckl2.net", "172.31.31.12"),
            ("branch-b.dvl-ckl2.net", "172.31.31.3"),
        ] {
            assert_eq!(
                record(&p.internal, name),
                (RecordType::A, target.to_string())
            );
        }
        // The reference's SIP/H.323/LDAP host dvl-ckl2.net is a DNS name too (to the
        // master PBX); the domain/location names are not.
        assert_eq!(
            record(&p.internal, "dvl-ckl2.net"),
            (RecordType::A, "172.31.31.2".to_string())
        );
        assert_eq!(p.official.len(), 4);
        assert_eq!(p.internal.len(), 4);
        assert!(p
            .official
            .iter()
            .chain(&p.internal)
            .all(|r| !r.name.contains('/')));
        assert_eq!(p.domain.as_deref(), Some("dvl-ckl2.net"));
        assert_eq!(
            p.certificate_names,
            [
                "apps.dvl-ckl2.net",
                "branch-b.dvl-ckl2.net",
                "hq.dvl-ckl2.net",
                "dvl-ckl2.net"
            ]
        );
        // The seed: "the reverse proxy needs a so-called wildcard certificate".
        assert_eq!(
            p.suggested_certificate_names,
            ["*.dvl-ckl2.net", "dvl-ckl2.net"]
        );
    }

    #[test]
    fn public_address_falls_back_to_public_nat_address_then_cname() {
        let p = plan(&dvl(), None, None);
        assert_eq!(
            record(&p.official, "hq.dvl-ckl2.net"),
            (RecordType::A, "78.54.23.241".to_string())
        );
        assert!(p.notes.iter().any(|n| n.contains("public_nat_address")));

        let text = DVL.replace("public_nat_address = \"78.54.23.241\"\n", "");
        let c = parse(Path::new("examples/dvl-ckl2.toml"), &text).unwrap();
        let p = plan(&c, None, None);
        assert_eq!(
            record(&p.official, "hq.dvl-ckl2.net"),
            (RecordType::Cname, "router.dvl-ckl2.net".to_string())
        );
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("A record for router.dvl-ckl2.net")));
        let zone = render_zone(&p);
        assert!(
            zone.contains("hq.dvl-ckl2.net.        IN  CNAME  router.dvl-ckl2.net."),
            "{zone}"
        );
        assert!(
            zone.contains("; router.dvl-ckl2.net.  IN  A  <public address"),
            "{zone}"
        );
    }

    #[test]
    fn box_address_choice() {
        let text = "[proxy.listen]\nbind = [\"::1\", \"10.0.0.5\"]\nhttps = 453\n";
        let p = plan(&ok(text), None, Some(ip("10.0.0.9")));
        assert_eq!(p.forwardings[0].destination, "10.0.0.5");
        assert!(p.notes.iter().any(|n| n.contains("10.0.0.9")));
        let p = plan(
            &ok("[proxy.listen]\nhttps = 453\n"),
            None,
            Some(ip("10.0.0.9")),
        );
        assert_eq!(p.forwardings[0].destination, "10.0.0.9");
        let p = plan(&ok("[proxy.listen]\nhttps = 453\n"), None, None);
        assert_eq!(p.forwardings[0].destination, UNKNOWN_BOX);
        assert_eq!(p.box_address, UNKNOWN_BOX);
        let p = plan(
            &ok("[proxy]\nipv6 = false\n[proxy.listen]\nbind = [\"127.0.0.1\"]\nhttps = 8453\n"),
            None,
            None,
        );
        assert!(p.notes.iter().any(|n| n.contains("only on loopback")));
        // TURN defaults and TURN TLS.
        let p = plan(
            &ok("[turn]\nrealm = \"example.net\"\nlisten_tls = 5349\n"),
            None,
            Some(ip("10.0.0.9")),
        );
        let got: Vec<(&str, &str, u16, u16)> = p
            .forwardings
            .iter()
            .map(|f| (f.service, f.protocol, f.public_port, f.destination_port))
            .collect();
        assert_eq!(
            got,
            [
                ("TURN", "UDP", 3478, 3478),
                ("TURN", "TCP", 3478, 3478),
                ("TURN TLS", "TCP", 5349, 5349)
            ]
        );
    }

    #[test]
    fn internal_record_prefers_http_then_ldap_and_notes_ambiguity() {
        let text = "[[host]]\nname = \"pbx.example.net\"\nsip = { target = \"10.0.0.3\", tcp = 5060, tls = 5061 }\nldap = { target = \"10.0.0.2\", tcp = 389 }\nhttp = [\n  { path = \"/a\", target = \"10.0.0.1\", tcp = 80 },\n  { path = \"/b\", target = \"10.0.0.4\", tcp = 80 },\n  { path = \"/c\", target = \"10.0.0.4\", tcp = 80 },\n]\n[[host]]\nname = \"dir.example.net\"\nldap = { target = \"fd00::2\", tcp = 389 }\nsip = { target = \"fd00::2\", tcp = 5060 }\n";
        let p = plan(&ok(text), Some(ip("203.0.113.7")), None);
        assert_eq!(
            record(&p.internal, "pbx.example.net"),
            (RecordType::A, "10.0.0.4".to_string())
        );
        assert_eq!(
            record(&p.internal, "dir.example.net"),
            (RecordType::Aaaa, "fd00::2".to_string())
        );
        let note = p
            .notes
            .iter()
            .find(|n| n.starts_with("pbx.example.net has rules to several targets"))
            .expect("ambiguity note");
        assert!(
            note.contains("10.0.0.1") && note.contains("10.0.0.2") && note.contains("10.0.0.3"),
            "{note}"
        );
        assert!(!p.notes.iter().any(|n| n.starts_with("dir.example.net has")));
        assert_eq!(
            p.suggested_certificate_names,
            ["*.example.net"],
            "two names under example.net"
        );
    }

    #[test]
    fn name_covers_is_wildcard_aware() {
        assert!(name_covers("*.dvl-ckl2.net", "hq.dvl-ckl2.net"));
        assert!(name_covers("*.DVL-ckl2.net", "HQ.dvl-ckl2.net."));
        assert!(!name_covers("*.dvl-ckl2.net", "dvl-ckl2.net"));
        assert!(!name_covers("*.dvl-ckl2.net", "a.b.dvl-ckl2.net"));
        assert!(!name_covers("*.dvl-ckl2.net", "xdvl-ckl2.net"));
        assert!(name_covers("dvl-ckl2.net", "DVL-ckl2.net"));
        assert!(!name_covers("hq.dvl-ckl2.net", "apps.dvl-ckl2.net"));
        assert!(is_dns_name("hq.dvl-ckl2.net") && is_dns_name("dvl-ckl2.net"));
        assert!(!is_dns_name("dvl-ckl2.net/branch-b"));
        assert!(!is_dns_name("172.31.31.2") && !is_dns_name("localhost"));
    }

    #[test]
    fn renderers_show_the_seed_tables() {
        let p = plan(&dvl(), Some(ip("78.54.23.241")), Some(ip("172.31.31.2")));
        let t = render_table(&p);
        assert!(
            t.starts_with("Port forwardings on your internet router\n"),
            "{t}"
        );
        assert!(
            t.contains("  H.323 TLS  TCP       1300  172.31.31.2          1310\n"),
            "{t}"
        );
        assert!(
            t.contains("  A     apps.dvl-ckl2.net      172.31.31.12  HTTP, LDAP\n"),
            "{t}"
        );
        assert!(
            t.contains("  suggested: a wildcard certificate with *.dvl-ckl2.net, dvl-ckl2.net\n"),
            "{t}"
        );
        let z = render_zone(&p);
        assert!(
            z.contains("hq.dvl-ckl2.net.        IN  A      78.54.23.241     ; HTTP, LDAP\n"),
            "{z}"
        );
        assert!(
            z.contains("branch-b.dvl-ckl2.net.  IN  A      172.31.31.3      ; HTTP, LDAP\n"),
            "{z}"
        );
        // Official first, then internal.
        let official = z.find("; official DNS").unwrap();
        let internal = z.find("; internal DNS").unwrap();
        assert!(official < internal);
        assert!(z[..internal].contains("78.54.23.241") && !z[..internal].contains("172.31.31.3"));
    }
}
