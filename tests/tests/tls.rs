//! TLS: verification of targets against `[tls] target_ca` (and the per-host
//! `verify_target` override), certificate choice by SNI, and the self-signed
//! certificate portico makes when none is configured.

use portico_tests::client::peer_subject;
use portico_tests::pki::Ca;
use portico_tests::site::{toml_string, Lab, APPS, BRANCH_B, HQ};
use portico_tests::target::Target;

#[test]
fn target_ca_accepts_a_target_it_signed_and_refuses_a_self_signed_one() {
    let mut lab = Lab::new();
    let pbx_ca = Ca::new("PBX CA");
    let pbx_ca_pem = lab.scratch.write("pbx-ca.pem", pbx_ca.pem());
    // The master PBX gets a certificate from the PBX CA; slave and apps keep
    // their self-signed ones.
    let signed = pbx_ca.issue("master pbx", &["127.0.0.1", "localhost", HQ]);
    lab.master.tls = Target::tls("master", &signed);
    lab.site.master.tls = lab.master.tls.port;
    lab.site.tls_path("target_ca", &pbx_ca_pem);
    // apps.dvl-ckl2.net opts out of verification.
    lab.site.host_line(APPS, "verify_target = false");
    let _portico = lab.start();

    let run = lab.curl().fetch(&lab.https_url(HQ, "/PBX0/APPS/v"));
    assert_eq!(run.status(), 200, "CA-signed target: {}", run.stderr);
    assert_eq!(run.text(), "master /PBX0/APPS/v");

    let run = lab.curl().fetch(&lab.https_url(BRANCH_B, "/PBX0/APPS/v"));
    assert_eq!(run.status(), 502, "self-signed target with target_ca set");
    assert_eq!(
        lab.slave.tls.requests().len(),
        0,
        "no request over an unverified TLS"
    );

    let run = lab.curl().fetch(&lab.https_url(APPS, "/v"));
    assert_eq!(
        run.status(),
        200,
        "verify_target = false overrides target_ca"
    );
    assert_eq!(run.text(), "apps /v");

    // Plain HTTP is unaffected.
    let run = lab.curl().fetch(&lab.http_url(BRANCH_B, "/PBX0/APPS/v"));
    assert_eq!(run.status(), 200);
}

#[test]
fn without_target_ca_self_signed_targets_are_accepted() {
    let lab = Lab::new();
    let _portico = lab.start();
    for (host, path, body) in [
        (HQ, "/PBX0/APPS/s", "master /PBX0/APPS/s"),
        (BRANCH_B, "/PBX0/APPS/s", "slave /PBX0/APPS/s"),
        (APPS, "/s", "apps /s"),
    ] {
        let run = lab.curl().fetch(&lab.https_url(host, path));
        assert_eq!(run.status(), 200, "{host}: {}", run.stderr);
        assert_eq!(run.text(), body);
    }
}

#[test]
fn certificate_is_chosen_by_sni_with_wildcards() {
    let mut lab = Lab::new();
    let other = lab.ca.issue(
        "portico example certs",
        &["pbx.example.org", "*.branch.example.net"],
    );
    let (cert, key) = other.write(lab.scratch.path(), "other");
    lab.site.tls(
        "certificates",
        &format!(
            "[{{ certificate = {}, private_key = {} }}]",
            toml_string(&cert.display().to_string()),
            toml_string(&key.display().to_string())
        ),
    );
    let _portico = lab.start();
    let port = lab.https_port();
    let main = "portico wildcard dvl-ckl2.net";
    let extra = "portico example certs";
    for (sni, expected, unexpected) in [
        (HQ, main, extra),
        ("dvl-ckl2.net", main, extra),
        ("anything.dvl-ckl2.net", main, extra),
        ("pbx.example.org", extra, main),
        ("x.branch.example.net", extra, main),
    ] {
        let (subject, output) = peer_subject(port, sni);
        let subject = subject.unwrap_or_else(|| panic!("no certificate for SNI {sni}:\n{output}"));
        assert!(subject.contains(expected), "SNI {sni}: got {subject}");
        assert!(!subject.contains(unexpected), "SNI {sni}: got {subject}");
    }
    // curl verifies the extra certificate for its name (and gets 421: no such host).
    let url = format!("https://pbx.example.org:{port}/");
    let run = lab.curl().resolve("pbx.example.org", port).fetch(&url);
    assert_eq!(
        run.exit, 0,
        "certificate for pbx.example.org: {}",
        run.stderr
    );
    assert_eq!(run.status(), 421);
}

#[test]
fn self_signed_certificate_is_made_when_none_is_configured() {
    let mut lab = Lab::new();
    lab.site.remove_tls("certificate").remove_tls("private_key");
    let _portico = lab.start();
    let url = lab.https_url(HQ, "/PBX0/APPS/self");
    let run = lab.curl().insecure().fetch(&url);
    assert_eq!(run.status(), 200, "{}", run.stderr);
    assert_eq!(run.text(), "master /PBX0/APPS/self");
    // It is not the test CA's certificate: verification against that CA fails.
    let run = lab.curl().fetch(&url);
    assert_eq!(
        run.exit, 60,
        "curl must refuse to verify it: {}",
        run.stderr
    );
    let (subject, output) = peer_subject(lab.https_port(), HQ);
    assert!(
        subject.is_some(),
        "a certificate must be presented:\n{output}"
    );
}

#[test]
fn ca_signed_portico_certificate_verifies_for_every_seed_name() {
    let lab = Lab::new();
    let _portico = lab.start();
    // No -k: curl checks the chain to the test CA and the name.
    for (host, path) in [
        (HQ, "/PBX0/session"),
        (BRANCH_B, "/PBX0/session"),
        (APPS, "/"),
    ] {
        let run = lab.curl().fetch(&lab.https_url(host, path));
        assert_eq!(run.exit, 0, "{host}: {}", run.stderr);
        assert_eq!(run.status(), 200);
    }
}
