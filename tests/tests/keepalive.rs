//! Keep-alive: every request on a client connection is routed on its own, so a path
//! no rule allows can not ride in second; target connections are reused per target.

use std::io::{BufReader, Write};

use portico_tests::client::{connect, read_response, read_to_close, status_of};
use portico_tests::site::{Lab, APPS, BRANCH_B, HQ};

#[test]
fn forbidden_path_sent_second_on_keepalive_is_403_and_never_reaches_a_target() {
    let lab = Lab::new();
    let _portico = lab.start();
    for https in [false, true] {
        let url = |path: &str| {
            if https {
                lab.https_url(HQ, path)
            } else {
                lab.http_url(HQ, path)
            }
        };
        let (allowed, forbidden) = (url("/PBX0/APPS/first"), url("/PBX0/CONFIG/secret"));
        let run = lab.curl().get(&[&allowed, &forbidden]);
        assert_eq!(run.statuses(), [200, 403], "https={https}: {}", run.stderr);
        assert_eq!(run.replies[0].text(), "master /PBX0/APPS/first");
        assert_eq!(run.replies[0].connects, 1);
        assert_eq!(
            run.replies[1].connects, 0,
            "curl must have reused the connection for the second request"
        );
        // The same with a traversal as the second request.
        let sneaky = url("/PBX0/APPS/../CONFIG/secret");
        let run = lab.curl().path_as_is().get(&[&allowed, &sneaky]);
        assert_eq!(run.statuses(), [200, 403], "https={https}");
        assert_eq!(run.replies[1].connects, 0);
    }
    let first = vec!["/PBX0/APPS/first".to_string(); 2];
    assert_eq!(lab.master.http.paths(), first);
    assert_eq!(lab.master.tls.paths(), first);
    assert_eq!(lab.slave.request_count() + lab.apps.request_count(), 0);
}

#[test]
fn each_request_on_a_connection_is_routed_on_its_own_and_target_connections_are_reused() {
    let lab = Lab::new();
    let _portico = lab.start();
    let stream = connect(lab.http_port());
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let sequence = [
        (HQ, "/PBX0/APPS/1", "master /PBX0/APPS/1"),
        (BRANCH_B, "/PBX0/APPS/2", "slave /PBX0/APPS/2"),
        (APPS, "/3", "apps /3"),
        (HQ, "/PBX0/ADMIN/4", "master /PBX0/ADMIN/4"),
        (BRANCH_B, "/PBX0/session", "slave /PBX0/session"),
    ];
    for (host, path, body) in sequence {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: e2e\r\n\r\n");
        writer.write_all(request.as_bytes()).unwrap();
        let response = read_response(&mut reader).expect("a response on the kept-alive connection");
        assert_eq!(response.status, 200, "{host}{path}");
        assert_eq!(response.text(), body);
    }
    assert_eq!(lab.master.http.paths(), ["/PBX0/APPS/1", "/PBX0/ADMIN/4"]);
    assert_eq!(lab.slave.http.paths(), ["/PBX0/APPS/2", "/PBX0/session"]);
    assert_eq!(lab.apps.http.paths(), ["/3"]);
    // Target connections are reused per (target, port) within a client connection.
    assert_eq!(
        lab.master.http.connections(),
        1,
        "master connection not reused"
    );
    assert_eq!(
        lab.slave.http.connections(),
        1,
        "slave connection not reused"
    );
}

#[test]
fn pipelined_forbidden_request_is_refused_after_the_allowed_one() {
    let lab = Lab::new();
    let _portico = lab.start();
    let mut stream = connect(lab.http_port());
    // Both requests in one write: portico must still route the second on its own.
    stream
        .write_all(
            b"GET /PBX0/APPS/one HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\n\r\n\
              GET /PBX0/CONFIG HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let first = read_response(&mut reader).expect("first response");
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "master /PBX0/APPS/one");
    let second = read_response(&mut reader).expect("second response");
    assert_eq!(second.status, 403);
    // After an error response the connection is closed.
    let rest = read_to_close(reader.get_mut());
    assert!(
        status_of(&rest).is_none(),
        "nothing after the 403: {rest:?}"
    );
    assert_eq!(lab.master.http.paths(), ["/PBX0/APPS/one"]);
}

#[test]
fn second_request_to_unknown_host_on_keepalive_is_421() {
    let lab = Lab::new();
    let _portico = lab.start();
    let stream = connect(lab.http_port());
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer
        .write_all(b"GET /x HTTP/1.1\r\nHost: apps.dvl-ckl2.net\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 200);
    writer
        .write_all(b"GET /x HTTP/1.1\r\nHost: intranet.dvl-ckl2.net\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 421);
    assert_eq!(lab.apps.http.paths(), ["/x"]);
}
