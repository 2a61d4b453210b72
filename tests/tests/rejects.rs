//! portico's own error answers: a target that is down (502, quickly), a head that does
//! not arrive in time (408) or does not fit (431). After each the connection closes.

use std::io::Write;
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use portico_tests::client::{connect, read_to_close, status_of};
use portico_tests::free_port;
use portico_tests::site::{BoxPorts, Lab, BRANCH_B, HQ};

#[test]
fn target_down_is_502_quickly_over_http_and_https() {
    let mut lab = Lab::new();
    // The master box is down: nothing listens on its ports.
    lab.site.master = BoxPorts {
        tcp: free_port(),
        tls: free_port(),
    };
    let _portico = lab.start();
    for url in [
        lab.http_url(HQ, "/PBX0/APPS/x"),
        lab.https_url(HQ, "/PBX0/APPS/x"),
    ] {
        let started = Instant::now();
        let run = lab.curl().fetch(&url);
        assert_eq!(run.status(), 502, "{url}: {}", run.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{url}: 502 took {:?}",
            started.elapsed()
        );
    }
    // The other boxes still work.
    assert_eq!(
        lab.curl()
            .fetch(&lab.http_url(BRANCH_B, "/PBX0/APPS/x"))
            .status(),
        200
    );
}

#[test]
fn target_closing_at_once_is_502() {
    let mut lab = Lab::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    lab.site.master.tcp = port;
    let _portico = lab.start();
    let started = Instant::now();
    let run = lab.curl().fetch(&lab.http_url(HQ, "/PBX0/APPS/x"));
    assert_eq!(run.status(), 502, "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn incomplete_head_gets_408_after_header_timeout_then_close() {
    let mut lab = Lab::new();
    lab.site.proxy("header_timeout_sec", "1.5");
    let _portico = lab.start();
    let mut stream = connect(lab.http_port());
    let started = Instant::now();
    stream
        .write_all(b"GET /PBX0/APPS/slow HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\n")
        .unwrap();
    let answer = read_to_close(&mut stream);
    let waited = started.elapsed();
    assert_eq!(
        status_of(&answer),
        Some(408),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        waited >= Duration::from_millis(1300) && waited < Duration::from_secs(5),
        "408 and close after {waited:?}, configured 1.5 s"
    );
    assert_eq!(lab.settled_request_count(), 0);
}

#[test]
fn silent_connection_is_closed_after_header_timeout() {
    let mut lab = Lab::new();
    lab.site.proxy("header_timeout_sec", "1");
    let _portico = lab.start();
    let mut stream = connect(lab.http_port());
    let started = Instant::now();
    let _ = read_to_close(&mut stream);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}, configured 1 s"
    );
}

#[test]
fn head_larger_than_default_limit_is_431() {
    let lab = Lab::new();
    let _portico = lab.start();
    let url = lab.http_url(HQ, "/PBX0/APPS/h");
    let fits = format!("X-Padding: {}", "a".repeat(8 * 1024));
    assert_eq!(
        lab.curl().header(&fits).fetch(&url).status(),
        200,
        "8 KiB fits in 16 KiB"
    );
    let too_big = format!("X-Padding: {}", "a".repeat(20 * 1024));
    let run = lab.curl().header(&too_big).fetch(&url);
    assert_eq!(run.status(), 431, "20 KiB header: {}", run.stderr);
    let https = lab
        .curl()
        .header(&too_big)
        .fetch(&lab.https_url(HQ, "/PBX0/APPS/h"));
    assert_eq!(https.status(), 431, "over HTTPS: {}", https.stderr);
    assert_eq!(lab.master.http.paths(), ["/PBX0/APPS/h"]);
    assert_eq!(lab.master.tls.requests().len(), 0);
}

#[test]
fn header_limit_is_configurable() {
    let mut lab = Lab::new();
    lab.site.proxy("header_limit", "4096");
    let _portico = lab.start();
    let url = lab.http_url(HQ, "/PBX0/APPS/h");
    let fits = format!("X-Padding: {}", "a".repeat(2 * 1024));
    assert_eq!(lab.curl().header(&fits).fetch(&url).status(), 200);
    let too_big = format!("X-Padding: {}", "a".repeat(6 * 1024));
    assert_eq!(lab.curl().header(&too_big).fetch(&url).status(), 431);
    assert_eq!(lab.master.http.requests().len(), 1);
}
