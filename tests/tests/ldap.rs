//! LDAP and LDAPS through portico to a real slapd (DESIGN.md "Routing rules"; issue 4),
//! driven by the ldap-utils clients. Two slapd fixtures stand in for the seed's
//! directories: `dc=dvl-ckl2,dc=net` behind host `dvl-ckl2.net`, and
//! `dc=branch-b,dc=dvl-ckl2,dc=net` behind `branch-b.dvl-ckl2.net`; the application
//! platform's LDAP (`apps.dvl-ckl2.net`) is down. Each slapd listens on a plain and a
//! TLS port (the rule's `tcp` and `tls`): ldap:// in goes to the first, ldaps:// to
//! the second.

use std::time::Duration;

use portico_tests::binary::{Finished, Portico};
use portico_tests::free_port;
use portico_tests::routed::{host_block, rule, start, Listen};
use portico_tests::sip::{tls_connect, tls_read_until_end, TlsEnd};
use portico_tests::site::{Lab, APPS, BRANCH_B};
use portico_tests::slapd::{bind_request, bind_result, ldap, Slapd, PASSWORD};

const GUEST: &str = "cn=ldap-guest,dc=dvl-ckl2,dc=net";
const BRANCH_GUEST: &str = "cn=ldap-guest,dc=branch-b,dc=dvl-ckl2,dc=net";

struct LdapLab {
    /// Field order: portico goes before the slapds it talks to.
    portico: Portico,
    hq: Slapd,
    branch: Slapd,
    ldap: u16,
    ldaps: u16,
    lab: Lab,
}

impl LdapLab {
    fn start() -> LdapLab {
        let mut lab = Lab::new();
        lab.site.http = None;
        lab.site.https = None;
        let hq = Slapd::start(&lab.scratch.path().join("slapd-hq"), "dc=dvl-ckl2,dc=net");
        let branch = Slapd::start(
            &lab.scratch.path().join("slapd-branch-b"),
            "dc=branch-b,dc=dvl-ckl2,dc=net",
        );
        lab.site.append(&host_block(
            "dvl-ckl2.net",
            &[rule("ldap", Some(hq.port), Some(hq.tls_port), None)],
        ));
        lab.site.host_line(
            BRANCH_B,
            &rule("ldap", Some(branch.port), Some(branch.tls_port), None),
        );
        // The application platform's directory is down.
        lab.site.host_line(
            APPS,
            &rule("ldap", Some(free_port()), Some(free_port()), None),
        );
        let (ldap_port, ldaps_port) = (free_port(), free_port());
        let portico = start(
            &lab,
            &[
                Listen::new("ldap", ldap_port),
                Listen::new("ldaps", ldaps_port),
            ],
        );
        LdapLab {
            portico,
            hq,
            branch,
            ldap: ldap_port,
            ldaps: ldaps_port,
            lab,
        }
    }

    fn ldap_uri(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap)
    }

    fn ldaps_uri(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps)
    }

    /// Waits for portico's log line `<scheme>://<domain> bind <name> -> 127.0.0.1:<port>(new)`.
    fn assert_forwarded(&self, scheme: &str, domain: &str, name: &str, port: u16) {
        let head = format!("{scheme}://{domain} bind {name} -> 127.0.0.1:{port}(new)");
        let found = self
            .portico
            .wait_log(Duration::from_secs(5), |l| l.ends_with(&head));
        assert!(
            found.is_some(),
            "no log line ending with {head:?}:\n{}",
            self.portico.stdout().join("\n")
        );
    }

    /// Whether portico logged anything forwarded for `name` (after a short wait).
    fn forwarded_any(&self, name: &str) -> bool {
        std::thread::sleep(Duration::from_millis(200));
        let bind = format!("bind {name} -> ");
        self.portico.stdout().iter().any(|l| l.contains(&bind))
    }
}

fn whoami(uri: &str, dn: &str, password: &str) -> Finished {
    ldap("ldapwhoami", uri, &["-D", dn, "-w", password])
}

fn describe(run: &Finished) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        run.code(),
        run.stdout_text(),
        run.stderr
    )
}

#[test]
fn ldapwhoami_and_ldapsearch_bind_through_portico_to_slapd() {
    let lab = LdapLab::start();

    let run = whoami(&lab.ldap_uri(), GUEST, PASSWORD);
    assert_eq!(run.code(), Some(0), "{}", describe(&run));
    assert_eq!(run.stdout_text().trim(), format!("dn:{GUEST}"));
    lab.assert_forwarded("ldap", "dvl-ckl2.net", GUEST, lab.hq.port);

    // Any spacing and case in the DN: routed to the same directory, which normalises
    // the DN and accepts the bind.
    let spaced = "CN=ldap-guest, DC=dvl-ckl2, DC=net";
    let run = whoami(&lab.ldap_uri(), spaced, PASSWORD);
    lab.assert_forwarded("ldap", "dvl-ckl2.net", spaced, lab.hq.port);
    assert_eq!(run.code(), Some(0), "{}", describe(&run));
    assert_eq!(run.stdout_text().trim(), format!("dn:{GUEST}"));

    // A search after the bind, on the same connection through portico.
    let run = ldap(
        "ldapsearch",
        &lab.ldap_uri(),
        &[
            "-LLL",
            "-D",
            GUEST,
            "-w",
            PASSWORD,
            "-b",
            "dc=dvl-ckl2,dc=net",
            "(cn=alice)",
            "telephoneNumber",
        ],
    );
    assert_eq!(run.code(), Some(0), "{}", describe(&run));
    let out = run.stdout_text();
    assert!(
        out.contains("dn: cn=alice,dc=dvl-ckl2,dc=net") && out.contains("telephoneNumber: 4711"),
        "{}",
        describe(&run)
    );

    // A wrong password reaches slapd, which answers 49 itself.
    let run = whoami(&lab.ldap_uri(), GUEST, "wrong");
    assert_eq!(run.code(), Some(49), "{}", describe(&run));
    assert!(
        run.stderr.contains("Invalid credentials (49)"),
        "{}",
        describe(&run)
    );
}

#[test]
fn bind_names_are_routed_by_their_domain() {
    let lab = LdapLab::start();

    // DN of the branch's directory: to the branch slapd, which accepts it.
    let run = whoami(&lab.ldap_uri(), BRANCH_GUEST, PASSWORD);
    assert_eq!(run.code(), Some(0), "{}", describe(&run));
    assert_eq!(run.stdout_text().trim(), format!("dn:{BRANCH_GUEST}"));
    lab.assert_forwarded(
        "ldap",
        "branch-b.dvl-ckl2.net",
        BRANCH_GUEST,
        lab.branch.port,
    );

    // `domain\user` (what innovaphone devices send): routed by the domain. slapd
    // itself does not take such a name as a DN: its answer (34), not portico's 53.
    for (name, domain, port) in [
        (
            r"branch-b.dvl-ckl2.net\ldap-guest",
            "branch-b.dvl-ckl2.net",
            lab.branch.port,
        ),
        (r"dvl-ckl2.net\ldap-guest", "dvl-ckl2.net", lab.hq.port),
        ("ldap-guest@dvl-ckl2.net", "dvl-ckl2.net", lab.hq.port),
    ] {
        let run = whoami(&lab.ldap_uri(), name, PASSWORD);
        lab.assert_forwarded("ldap", domain, name, port);
        assert_eq!(run.code(), Some(34), "{name}: {}", describe(&run));
        assert!(
            run.stderr.contains("Invalid DN syntax (34)"),
            "{name}: {}",
            describe(&run)
        );
    }
}

#[test]
fn unknown_domain_anonymous_bind_and_a_down_directory_are_answered_by_portico() {
    let lab = LdapLab::start();

    let unknown = "cn=x,dc=example,dc=org";
    let run = whoami(&lab.ldap_uri(), unknown, PASSWORD);
    assert_eq!(run.code(), Some(53), "{}", describe(&run));
    assert!(
        run.stderr.contains("Server is unwilling to perform (53)"),
        "{}",
        describe(&run)
    );
    assert!(
        !lab.forwarded_any(unknown),
        "an unknown domain was forwarded"
    );
    let rejected = lab.portico.wait_log(Duration::from_secs(5), |l| {
        l.contains("ldap://example.org") && l.contains("rejected")
    });
    assert!(rejected.is_some(), "{}", lab.portico.stdout().join("\n"));

    // Anonymous bind: no name to route by.
    let run = ldap("ldapwhoami", &lab.ldap_uri(), &[]);
    assert_eq!(run.code(), Some(48), "{}", describe(&run));
    assert!(
        run.stderr.contains("Inappropriate authentication (48)"),
        "{}",
        describe(&run)
    );

    // The application platform's directory is down: 52 from portico.
    let run = whoami(&lab.ldap_uri(), r"apps.dvl-ckl2.net\contacts", "pw");
    assert_eq!(run.code(), Some(52), "{}", describe(&run));
    assert!(
        run.stderr.contains("Server is unavailable (52)"),
        "{}",
        describe(&run)
    );
}

#[test]
fn ldaps_binds_through_portico_to_slapd_over_tls() {
    let lab = LdapLab::start();

    let run = whoami(&lab.ldaps_uri(), GUEST, PASSWORD);
    assert_eq!(run.code(), Some(0), "{}", describe(&run));
    assert_eq!(run.stdout_text().trim(), format!("dn:{GUEST}"));
    // TLS in, TLS out: to slapd's ldaps port.
    lab.assert_forwarded("ldaps", "dvl-ckl2.net", GUEST, lab.hq.tls_port);

    let spaced = "CN=ldap-guest, DC=branch-b, DC=dvl-ckl2, DC=net";
    let run = ldap(
        "ldapsearch",
        &lab.ldaps_uri(),
        &[
            "-LLL",
            "-D",
            spaced,
            "-w",
            PASSWORD,
            "-b",
            "dc=branch-b,dc=dvl-ckl2,dc=net",
            "(cn=alice)",
            "cn",
        ],
    );
    assert_eq!(run.code(), Some(0), "{}", describe(&run));
    assert!(
        run.stdout_text()
            .contains("dn: cn=alice,dc=branch-b,dc=dvl-ckl2,dc=net"),
        "{}",
        describe(&run)
    );
    lab.assert_forwarded(
        "ldaps",
        "branch-b.dvl-ckl2.net",
        spaced,
        lab.branch.tls_port,
    );

    let run = whoami(&lab.ldaps_uri(), "cn=x,dc=example,dc=org", PASSWORD);
    assert_eq!(run.code(), Some(53), "{}", describe(&run));
    let run = ldap("ldapwhoami", &lab.ldaps_uri(), &[]);
    assert_eq!(run.code(), Some(48), "{}", describe(&run));
}

/// RFC 8446 §6.1: portico's own BindResponse on ldaps (53 no such domain, 52 target
/// down) is followed by close_notify, not a bare TCP close.
#[test]
fn ldaps_refusals_end_with_close_notify() {
    use std::io::Write;
    let lab = LdapLab::start();
    for (what, name, code) in [
        ("no host", "cn=x,dc=example,dc=org", 53),
        ("target down", r"apps.dvl-ckl2.net\contacts", 52),
    ] {
        let mut tls = tls_connect(lab.ldaps, &lab.lab.ca, None);
        tls.write_all(&bind_request(1, name, "pw"))
            .expect("send bind");
        let (answer, end) = tls_read_until_end(&mut tls, Duration::from_secs(5));
        assert_eq!(
            bind_result(&answer),
            Some((1, code)),
            "{what}: {answer:02x?}"
        );
        assert_eq!(end, TlsEnd::CloseNotify, "{what}: how the connection ended");
    }
}
