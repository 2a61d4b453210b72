//! Message framing: smuggling attempts are refused (RFC 9112 §3.2, §5.2, §6.3) before
//! any byte reaches a target; bodies (Content-Length and chunked) and large responses
//! cross portico intact.

use std::io::{BufReader, Write};
use std::time::{Duration, Instant};

use portico_tests::client::{connect, exchange, read_response, status_of};
use portico_tests::site::{Lab, HQ};
use portico_tests::target::pattern;

fn assert_rejected_400(lab: &Lab, what: &str, request: &str) {
    let started = Instant::now();
    let answer = exchange(lab.http_port(), request.as_bytes());
    assert_eq!(
        status_of(&answer),
        Some(400),
        "{what}: got {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{what}: the connection must be closed after the 400"
    );
}

#[test]
fn smuggling_attempts_are_400_and_reach_no_target() {
    let lab = Lab::new();
    let _portico = lab.start();
    let cases = [
        (
            "Content-Length with Transfer-Encoding",
            "POST /PBX0/APPS/x HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\nContent-Length: 5\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding before Content-Length",
            "POST /PBX0/APPS/x HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\nTransfer-Encoding: chunked\r\n\
             Content-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "duplicate differing Content-Length",
            "POST /PBX0/APPS/x HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\nContent-Length: 5\r\n\
             Content-Length: 6\r\n\r\nhello!",
        ),
        (
            "obs-fold",
            "GET /PBX0/APPS/x HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\nX-Folded: a\r\n  b\r\n\r\n",
        ),
        (
            "absolute-form naming another host than Host",
            "GET http://branch-b.dvl-ckl2.net/PBX0/APPS/x HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\n\r\n",
        ),
        (
            "two Host headers",
            "GET /PBX0/APPS/x HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\nHost: branch-b.dvl-ckl2.net\r\n\r\n",
        ),
        ("garbage request line", "HELLO\r\n\r\n"),
    ];
    for (what, request) in cases {
        assert_rejected_400(&lab, what, request);
    }
    assert_eq!(
        lab.settled_request_count(),
        0,
        "a smuggling attempt reached a target"
    );
}

#[test]
fn absolute_form_with_matching_host_is_routed() {
    let lab = Lab::new();
    let _portico = lab.start();
    let answer = exchange(
        lab.http_port(),
        b"GET http://hq.dvl-ckl2.net/PBX0/APPS/abs HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        status_of(&answer),
        Some(200),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let paths = lab.master.http.paths();
    assert_eq!(paths.len(), 1);
    assert!(
        paths[0].ends_with("/PBX0/APPS/abs"),
        "forwarded {:?}",
        paths[0]
    );
}

#[test]
fn chunked_request_body_is_forwarded_intact() {
    let lab = Lab::new();
    let _portico = lab.start();
    let body = pattern(300_000);
    for url in [
        lab.http_url(HQ, "/PBX0/APPS/upload"),
        lab.https_url(HQ, "/PBX0/APPS/upload"),
    ] {
        let run = lab.curl().chunked_body(&body).fetch(&url);
        assert_eq!(run.status(), 200, "{url}: {}", run.stderr);
    }
    for request in [
        &lab.master.http.requests()[0],
        &lab.master.tls.requests()[0],
    ] {
        assert_eq!(request.method, "POST");
        assert_eq!(request.body.len(), body.len());
        assert!(request.body == body, "chunked body altered on the way");
    }
}

#[test]
fn content_length_request_body_is_forwarded_intact() {
    let lab = Lab::new();
    let _portico = lab.start();
    let body = pattern(2_000_000);
    let run = lab
        .curl()
        .body(&body)
        .fetch(&lab.http_url(HQ, "/PBX0/user.soap"));
    assert_eq!(run.status(), 200, "{}", run.stderr);
    let got = &lab.master.http.requests()[0];
    assert_eq!(got.header("content-length"), Some("2000000"));
    assert!(got.body == body, "body altered on the way");
}

#[test]
fn request_lookalike_inside_a_body_stays_body() {
    let lab = Lab::new();
    let _portico = lab.start();
    let inner = "GET /PBX0/CONFIG HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\n\r\n";
    let request = format!(
        "POST /PBX0/APPS/post HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\nContent-Length: {}\r\n\r\n{inner}\
         GET /PBX0/APPS/after HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\n\r\n",
        inner.len()
    );
    let mut stream = connect(lab.http_port());
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_response(&mut reader).unwrap().status, 200);
    let after = read_response(&mut reader).unwrap();
    assert_eq!(after.status, 200);
    assert_eq!(after.text(), "master /PBX0/APPS/after");
    let got = lab.master.http.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, inner.as_bytes());
    assert_eq!(got[1].target, "/PBX0/APPS/after");
}

#[test]
fn chunked_body_then_next_request_on_same_connection() {
    let lab = Lab::new();
    let _portico = lab.start();
    let mut stream = connect(lab.http_port());
    stream
        .write_all(
            b"POST /PBX0/APPS/c HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n\
              GET /PBX0/CONFIG HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let first = read_response(&mut reader).unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-body-length"), Some("12"));
    assert_eq!(read_response(&mut reader).unwrap().status, 403);
    let got = lab.master.http.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"hello, world");
}

#[test]
fn large_response_crosses_intact_over_http_and_https() {
    let lab = Lab::new();
    let _portico = lab.start();
    let expected = pattern(5_000_000);
    for url in [
        lab.http_url(HQ, "/PBX0/APPS/big/5000000"),
        lab.https_url(HQ, "/PBX0/APPS/big/5000000"),
    ] {
        let run = lab.curl().fetch(&url);
        assert_eq!(run.status(), 200, "{url}: {}", run.stderr);
        let body = &run.reply().body;
        assert_eq!(body.len(), expected.len(), "{url}");
        assert!(*body == expected, "{url}: body altered on the way");
    }
}
