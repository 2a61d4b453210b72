//! `portico check` lints (issue 3, item 5) and `portico plan` (item 6), on the seed's
//! reference and on configurations with each of the seed's mistakes.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portico_tests::binary::{check, workspace_dir, Finished};
use portico_tests::ops::portico_cmd;
use portico_tests::pki::Ca;
use portico_tests::Scratch;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the config"));
    text[..at].matches('\n').count() + 1
}

/// Everything `check` said, stdout then stderr.
fn said(done: &Finished) -> String {
    format!("{}{}", done.stdout_text(), done.stderr)
}

/// (year, month, day) of the day `days` after 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// A self-signed certificate for `names` valid until `days` days from now, written as
/// `<stem>.pem` and `<stem>.key` into `dir`.
fn certificate(dir: &Path, stem: &str, names: &[&str], days: u64) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("names");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0]);
    params.distinguished_name = dn;
    let until = SystemTime::now() + Duration::from_secs(days * 86_400);
    let epoch_days = until
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 86_400;
    let (y, m, d) = civil_from_days(epoch_days as i64);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let (py, pm, pd) = civil_from_days(epoch_days as i64 - days as i64 - 2);
    params.not_before = rcgen::date_time_ymd(py, pm, pd);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).expect("write certificate");
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).expect("write key");
}

/// A configuration with one of each of the seed's mistakes that are warnings.
const WARNINGS: &str = r#"[proxy]
ipv6 = false
log_rejected = false
blacklist_expiration_min = 0
suspicious_requests_per_min = 20

[proxy.listen]
http = 80
https = 453
sip = 5070
sips = 5071
bind = ["127.0.0.1"]

[tls]
certificate = "expiring.pem"
private_key = "expiring.key"
client_ca = "clients.pem"
target_ca = "clients.pem"

[[host]]
name = "hq.dvl-ckl2.net"
http = [
  { path = "/PBX0/APPS", target = "127.0.0.1", tcp = 80, tls = 443 },
  { path = "/PBX0/ADMIN", target = "127.0.0.1", tcp = 80, tls = 443 },
  { path = "/PBX0/OTHER", target = "127.0.0.3", tcp = 80, tls = 443 },
]

[[host]]
name = "dvl-ckl2.net"
sip = { target = "127.0.0.1", tcp = 5060, tls = 5061 }

[[host]]
name = "dvl-ckl2.net/branch-b"
sip = { target = "127.0.0.1", tcp = 5060, check_certificate = true }
h323 = { target = "127.0.0.1", tls = 1300, check_certificate = true }

[turn]
listen_udp = 3478
listen_tcp = 3478
realm = "dvl-ckl2.net"
relay_address = "172.31.31.2"
relay_ports = "49152-65535"
allowed_peers = ["172.31.31.0/24", "127.0.0.0/8"]
users = [ { name = "turn", password = "turn.dvl-ckl2.net" } ]
"#;

/// A certificate that does not cover a host with HTTP rules (an error), and TURN
/// without allowed_peers.
const ERRORS: &str = r#"[proxy]
ipv6 = false

[proxy.listen]
http = 90
https = 453
bind = ["127.0.0.1"]

[tls]
certificate = "other.pem"
private_key = "other.key"
target_ca = "clients.pem"

[[host]]
name = "hq.dvl-ckl2.net"
http = [
  { path = "/PBX0/APPS", target = "172.31.31.2", tcp = 80, tls = 443 },
]

[turn]
listen_udp = 3478
realm = "dvl-ckl2.net"
relay_address = "172.31.31.2"
users = [ { name = "turn342823", password = "ip411" } ]
"#;

/// A JSON finding with `field`, as (severity, line).
fn json_finding(doc: &serde_json::Value, field: &str) -> Option<(String, Option<u64>)> {
    doc["findings"]
        .as_array()?
        .iter()
        .find(|f| f["field"] == field)
        .map(|f| {
            (
                f["severity"].as_str().unwrap_or_default().to_string(),
                f["line"].as_u64(),
            )
        })
}

fn check_json(config: &Path) -> (Option<i32>, serde_json::Value) {
    let done = portico_cmd(&[
        "check",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap_or_else(|e| {
        panic!(
            "check --format json must print JSON ({e}):\n{}",
            done.stdout_text()
        )
    });
    (done.code(), doc)
}

#[test]
fn check_on_the_seed_reference_prints_no_error() {
    let example = workspace_dir().join("examples/dvl-ckl2.toml");
    let done = check(&example);
    let text = said(&done);
    assert_eq!(done.code(), Some(0), "{text}");
    assert!(
        !text.contains("error:"),
        "no error on the reference:\n{text}"
    );
    assert!(text.contains("ok ("), "{text}");

    let (code, doc) = check_json(&example);
    assert_eq!(code, Some(0));
    assert_eq!(doc["errors"], 0, "{doc}");
}

#[test]
fn check_lints_each_of_the_seeds_mistakes() {
    let scratch = Scratch::new();
    certificate(
        scratch.path(),
        "expiring",
        &["*.dvl-ckl2.net", "dvl-ckl2.net"],
        10,
    );
    scratch.write("clients.pem", Ca::new("clients").pem());
    let config = scratch.write("lints.toml", WARNINGS);
    let done = check(&config);
    let text = said(&done);
    assert_eq!(done.code(), Some(0), "warnings alone exit 0:\n{text}");
    assert!(!text.contains(": error:"), "{text}");

    // (field, a piece of the line it must name, what the message says)
    let expected: [(&str, &str, &str); 10] = [
        ("proxy.log_rejected", "log_rejected = false", "log_rejected"),
        (
            "proxy.blacklist_expiration_min",
            "blacklist_expiration_min = 0",
            "blacklist",
        ),
        ("proxy.listen.http", "http = 80", "standard port 80"),
        (
            "tls.certificate",
            "certificate = \"expiring.pem\"",
            "expires on",
        ),
        ("host[0].http[2].target", "/PBX0/OTHER", "127.0.0.3"),
        (
            "host[1].sip.check_certificate",
            "sip = { target = \"127.0.0.1\", tcp = 5060, tls = 5061 }",
            "without check_certificate",
        ),
        (
            "host[2].sip.tls",
            "tcp = 5060, check_certificate",
            "no tls port",
        ),
        (
            "host[2].h323.tcp",
            "tls = 1300, check_certificate",
            "no tcp port",
        ),
        ("turn.users[0]", "name = \"turn\"", "turn"),
        ("turn.allowed_peers[1]", "127.0.0.0/8", "loopback"),
    ];
    let (code, doc) = check_json(&config);
    assert_eq!(code, Some(0));
    assert_eq!(doc["errors"], 0, "{doc}");
    for (field, piece, words) in expected {
        let line = line_of(WARNINGS, piece);
        let head = format!("lints.toml:{line}: warning: {field}: ");
        let found = text
            .lines()
            .find(|l| l.contains(&head))
            .unwrap_or_else(|| panic!("no lint {head:?} in:\n{text}"));
        assert!(found.contains(words), "{found}");
        assert_eq!(
            json_finding(&doc, field),
            Some(("warning".to_string(), Some(line as u64))),
            "{field} in the JSON: {doc}"
        );
    }
    // Every lint comes with what to do.
    let warnings = text.lines().filter(|l| l.contains(": warning: ")).count();
    let hints = text
        .lines()
        .filter(|l| l.trim_start().starts_with("hint: "))
        .count();
    assert_eq!(warnings, hints, "one hint per warning:\n{text}");
    assert_eq!(doc["warnings"], warnings as u64, "{doc}");
}

#[test]
fn check_fails_on_a_certificate_that_does_not_cover_a_host() {
    let scratch = Scratch::new();
    certificate(scratch.path(), "other", &["*.example.org"], 365);
    scratch.write("clients.pem", Ca::new("clients").pem());
    let config = scratch.write("errors.toml", ERRORS);
    let done = check(&config);
    let text = said(&done);
    assert_eq!(done.code(), Some(1), "an error exits 1:\n{text}");
    let name_line = line_of(ERRORS, "name = \"hq.dvl-ckl2.net\"");
    let header_line = name_line - 1;
    let error = text
        .lines()
        .find(|l| l.contains(": error: host[0].name: "))
        .unwrap_or_else(|| panic!("no certificate-coverage error:\n{text}"));
    assert!(
        error.contains(&format!("errors.toml:{name_line}:"))
            || error.contains(&format!("errors.toml:{header_line}:")),
        "the error names the host's line: {error}"
    );
    assert!(error.contains("does not cover hq.dvl-ckl2.net"), "{error}");
    assert!(
        done.stderr.contains("error: host[0].name"),
        "errors go to stderr:\n{}",
        done.stderr
    );
    let peers = text
        .lines()
        .find(|l| l.contains(": warning: turn.allowed_peers: "))
        .unwrap_or_else(|| panic!("no allowed_peers lint:\n{text}"));
    assert!(peers.contains("open relay"), "{peers}");

    let (code, doc) = check_json(&config);
    assert_eq!(code, Some(1));
    assert_eq!(doc["errors"], 1, "{doc}");
    let (severity, line) = json_finding(&doc, "host[0].name").expect("host[0].name in the JSON");
    assert_eq!(severity, "error");
    assert!(
        line == Some(name_line as u64) || line == Some(header_line as u64),
        "{doc}"
    );
    assert_eq!(
        json_finding(&doc, "turn.allowed_peers").map(|f| f.0),
        Some("warning".to_string())
    );
}

/// The rows of the block of `text` that follows the line `title`, up to a blank line,
/// each as its whitespace-separated words joined by one space (header row included).
fn section(text: &str, title: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| l.trim() != title);
    assert!(lines.next().is_some(), "no section {title:?} in:\n{text}");
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn plan_prints_the_seeds_port_forwardings_and_dns_tables() {
    let example = workspace_dir().join("examples/dvl-ckl2.toml");
    let example = example.to_str().expect("utf-8 path");
    let done = portico_cmd(&["plan", "--config", example, "--public-ip", "78.54.23.241"]);
    let text = done.stdout_text();
    assert_eq!(done.code(), Some(0), "{text}{}", done.stderr);

    // The seed's "Port forwardings on your internet router".
    let forwardings = section(&text, "Port forwardings on your internet router");
    for row in [
        "TURN UDP 3478 172.31.31.2 3478",
        "TURN TCP 3478 172.31.31.2 3478",
        "HTTP TCP 80 172.31.31.2 90",
        "HTTPS TCP 443 172.31.31.2 453",
        "LDAP TCP 389 172.31.31.2 399",
        "LDAPS TCP 636 172.31.31.2 646",
        "SIP TCP 5060 172.31.31.2 5070",
        "SIPS TCP 5061 172.31.31.2 5071",
        "H.323 TCP TCP 1720 172.31.31.2 1730",
        "H.323 TLS TCP 1300 172.31.31.2 1310",
    ] {
        assert!(
            forwardings.iter().any(|r| r == row),
            "no forwarding {row:?} in:\n{}",
            forwardings.join("\n")
        );
    }
    assert_eq!(forwardings.len(), 11, "header and ten forwardings:\n{text}");

    // The seed's "DNS settings": official names to the router, internal to the boxes.
    let official = section(&text, "DNS names in the official DNS");
    let internal = section(&text, "DNS names in the internal DNS");
    for (name, public, private) in [
        ("hq.dvl-ckl2.net", "78.54.23.241", "172.31.31.2"),
        ("apps.dvl-ckl2.net", "78.54.23.241", "172.31.31.12"),
        ("branch-b.dvl-ckl2.net", "78.54.23.241", "172.31.31.3"),
    ] {
        let row = format!("A {name} {public} ");
        assert!(
            official.iter().any(|r| r.starts_with(&row)),
            "no official {row:?} in:\n{}",
            official.join("\n")
        );
        let row = format!("A {name} {private} ");
        assert!(
            internal.iter().any(|r| r.starts_with(&row)),
            "no internal {row:?} in:\n{}",
            internal.join("\n")
        );
    }
    let certificate = section(&text, "Certificate").join("\n");
    for name in [
        "hq.dvl-ckl2.net",
        "apps.dvl-ckl2.net",
        "branch-b.dvl-ckl2.net",
    ] {
        assert!(certificate.contains(name), "{certificate}");
    }

    // The same as BIND zone-file fragments.
    let done = portico_cmd(&[
        "plan",
        "--config",
        example,
        "--public-ip",
        "78.54.23.241",
        "--format",
        "zone",
    ]);
    let zone = done.stdout_text();
    assert_eq!(done.code(), Some(0), "{zone}{}", done.stderr);
    let records: Vec<Vec<&str>> = zone
        .lines()
        .map(|l| l.split(';').next().unwrap_or_default())
        .map(|l| l.split_whitespace().collect::<Vec<&str>>())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |name: &str, addr: &str| {
        records
            .iter()
            .position(|r| r[..] == [name, "IN", "A", addr])
    };
    for (name, private) in [
        ("hq.dvl-ckl2.net.", "172.31.31.2"),
        ("apps.dvl-ckl2.net.", "172.31.31.12"),
        ("branch-b.dvl-ckl2.net.", "172.31.31.3"),
    ] {
        let public = has(name, "78.54.23.241")
            .unwrap_or_else(|| panic!("no official record for {name} in:\n{zone}"));
        let internal = has(name, private)
            .unwrap_or_else(|| panic!("no internal record {name} {private} in:\n{zone}"));
        assert!(
            public < internal,
            "official records come first, internal after:\n{zone}"
        );
    }
    assert!(
        records
            .iter()
            .all(|r| r.len() == 4 && r[1] == "IN" && r[2] == "A"),
        "every zone line is a record or a comment:\n{zone}"
    );
}
