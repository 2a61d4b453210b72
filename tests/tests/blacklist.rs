//! The blacklist: more than `suspicious_requests_per_min` rejects from one address
//! within a minute close its new connections at accept (before any TLS work) for
//! `blacklist_expiration_min` minutes; then it is served again.

use std::time::{Duration, Instant};

use portico_tests::site::{Lab, HQ};

/// curl exit codes for a connection closed by the server before a response:
/// 52 empty reply, 56 receive failure (reset), 35 TLS handshake failure.
const CLOSED_AT_ACCEPT: [i32; 3] = [52, 56, 35];

#[test]
fn more_than_n_rejects_blacklist_the_source_until_expiry() {
    let mut lab = Lab::new();
    lab.site
        .proxy("suspicious_requests_per_min", "3")
        .proxy("blacklist_expiration_min", "0.05"); // 3 s
    let _portico = lab.start();
    let allowed = lab.http_url(HQ, "/PBX0/APPS/ok");
    let refused = lab.http_url("unknown.dvl-ckl2.net", "/x");

    // N rejects: not yet more than N.
    for i in 0..3 {
        assert_eq!(lab.curl().fetch(&refused).status(), 421, "reject {i}");
    }
    let run = lab.curl().fetch(&allowed);
    assert_eq!(run.status(), 200, "after exactly N rejects: {}", run.stderr);

    // One more: blacklisted.
    assert_eq!(lab.curl().fetch(&refused).status(), 421);
    let blacklisted_at = Instant::now();
    // The control thread publishes a ban within 50 ms of the reject that caused it.
    std::thread::sleep(Duration::from_millis(100));
    let run = lab.curl().fetch(&allowed);
    assert!(
        CLOSED_AT_ACCEPT.contains(&run.exit),
        "a blacklisted source must be closed at accept; curl exit {} status {:?} {}",
        run.exit,
        run.statuses(),
        run.stderr
    );
    let run = lab.curl().fetch(&lab.https_url(HQ, "/PBX0/APPS/ok"));
    assert!(
        CLOSED_AT_ACCEPT.contains(&run.exit),
        "HTTPS too, before TLS; curl exit {} {}",
        run.exit,
        run.stderr
    );
    assert_eq!(lab.master.http.paths(), ["/PBX0/APPS/ok"]);
    assert_eq!(lab.master.tls.requests().len(), 0);

    // Expiry after 3 s: wait, then poll gently (each attempt is one connection).
    std::thread::sleep(Duration::from_millis(3200));
    let deadline = Instant::now() + Duration::from_secs(8);
    let served_at = loop {
        let run = lab.curl().fetch(&allowed);
        if run.exit == 0 && run.statuses() == [200] {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "still refused {:?} after the blacklist expired",
            blacklisted_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(served_at - blacklisted_at >= Duration::from_millis(2500));
    assert_eq!(lab.master.http.paths(), ["/PBX0/APPS/ok", "/PBX0/APPS/ok"]);
}

#[test]
fn rejects_of_different_kinds_all_count() {
    let mut lab = Lab::new();
    lab.site
        .proxy("suspicious_requests_per_min", "2")
        .proxy("blacklist_expiration_min", "1");
    let _portico = lab.start();
    // A 403, a 400 and a 421: three rejects, more than 2.
    assert_eq!(
        lab.curl().fetch(&lab.http_url(HQ, "/PBX0/CONFIG")).status(),
        403
    );
    let traversal = lab.http_url(HQ, "/../../etc/passwd");
    assert_eq!(lab.curl().path_as_is().fetch(&traversal).status(), 400);
    let unknown = lab.https_url("unknown.dvl-ckl2.net", "/");
    assert_eq!(lab.curl().fetch(&unknown).status(), 421);
    std::thread::sleep(Duration::from_millis(100)); // ban published within 50 ms
    let run = lab.curl().fetch(&lab.http_url(HQ, "/PBX0/APPS/ok"));
    assert!(
        CLOSED_AT_ACCEPT.contains(&run.exit),
        "blacklisted after 3 mixed rejects; curl exit {} {:?}",
        run.exit,
        run.statuses()
    );
    assert_eq!(lab.settled_request_count(), 0);
}

/// DESIGN.md lists what a reject is (no host or rule, malformed request, target refused
/// or closed at once, no decision in time or within the buffer limit). A connection
/// opened and closed without a byte — a TCP health check, or a readiness probe — is
/// none of these, on the plain port and on the TLS port alike.
#[test]
fn connections_closed_without_a_byte_are_not_rejects() {
    let mut lab = Lab::new();
    lab.site
        .proxy("suspicious_requests_per_min", "1")
        .proxy("blacklist_expiration_min", "1");
    let _portico = lab.start();
    for _ in 0..3 {
        for port in [lab.http_port(), lab.https_port()] {
            drop(std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let run = lab.curl().fetch(&lab.http_url(HQ, "/PBX0/APPS/ok"));
    assert_eq!(
        (run.exit, run.statuses()),
        (0, vec![200]),
        "6 empty connections must not blacklist 127.0.0.1: {}",
        run.stderr
    );
}
