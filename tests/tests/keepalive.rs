//! Keep-alive: every request on a client connection is routed on its own, so a path
//! no rule allows can not ride in second; target connections are reused per target.

use std::io::{BufReader, Write};

use portico_tests::client::{connect, exchange, read_response, read_to_close, status_of};
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

/// A GET with `Connection: close` on a new client connection, read to the close;
/// returns the status and the body.
fn get_and_close(port: u16, host: &str, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut stream = connect(port);
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader).expect("a response");
    // portico closes after the answer: by then the target connection is pooled.
    let _ = read_to_close(reader.get_mut());
    (response.status, response.text())
}

#[test]
fn target_connections_outlive_their_client_within_the_pool_limits() {
    let mut lab = Lab::new();
    lab.site.proxy("pool_idle_timeout_sec", "1");
    let _portico = lab.start();
    let port = lab.http_port();
    // The client's `Connection: close` concerns its own connection only.
    assert_eq!(
        get_and_close(port, HQ, "/PBX0/APPS/1"),
        (200, "master /PBX0/APPS/1".into())
    );
    assert_eq!(lab.master.http.requests()[0].header("connection"), None);
    // The next client, on another connection, gets the pooled one.
    assert_eq!(get_and_close(port, HQ, "/PBX0/APPS/2").0, 200);
    assert_eq!(
        lab.master.http.connections(),
        1,
        "pooled connection not reused"
    );
    // A request with a body never rides on a pooled connection (it could not be sent
    // again if the target had closed it).
    let post = exchange(
        port,
        b"POST /PBX0/APPS/3 HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\nContent-Length: 2\r\n\
          Connection: close\r\n\r\nab",
    );
    assert_eq!(status_of(&post), Some(200));
    assert_eq!(lab.master.http.connections(), 2);
    // Past `pool_idle_timeout_sec` (and the once-a-second sweep) nothing is reused.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(get_and_close(port, HQ, "/PBX0/APPS/4").0, 200);
    assert_eq!(
        lab.master.http.connections(),
        3,
        "an expired connection was used"
    );
    assert_eq!(
        lab.master.http.paths(),
        [
            "/PBX0/APPS/1",
            "/PBX0/APPS/2",
            "/PBX0/APPS/3",
            "/PBX0/APPS/4"
        ]
    );
}

/// A target that answers one request per connection and then misbehaves as real
/// servers do at their keep-alive timeout: after a path starting `/close-after` it
/// closes at once (no `Connection: close`); otherwise it waits, and closes without an
/// answer when the next request comes.
struct OneShotTarget {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl OneShotTarget {
    fn start() -> OneShotTarget {
        use std::io::BufRead;
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut first_line = String::new();
                    let mut line = String::new();
                    if reader.read_line(&mut first_line).unwrap_or(0) == 0 {
                        return;
                    }
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        assert!(
                            !line.to_ascii_lowercase().starts_with("connection:"),
                            "a hop-by-hop field reached the target: {line}"
                        );
                        line.clear();
                    }
                    let body = format!("conn {n}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = reader.get_mut().write_all(answer.as_bytes());
                    if first_line.contains(" /close-after") {
                        return;
                    }
                    // The next request (or the end): close without a word.
                    let _ = reader.read_line(&mut line);
                });
            }
        });
        OneShotTarget { port, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_pooled_connection_the_target_closed_costs_the_client_nothing() {
    const ODD: &str = "odd.dvl-ckl2.net";
    let target = OneShotTarget::start();
    let mut lab = Lab::new();
    lab.site.append(&format!(
        "[[host]]\nname = \"{ODD}\"\nhttp = [ {{ path = \"\", target = \"127.0.0.1\", tcp = {} }} ]\n",
        target.port
    ));
    let _portico = lab.start();
    let port = lab.http_port();
    assert_eq!(get_and_close(port, ODD, "/a"), (200, "conn 1".into()));
    // The pooled connection looks open; the target closes it without answering the
    // request: portico sends the GET once more, on a new connection.
    assert_eq!(get_and_close(port, ODD, "/b"), (200, "conn 2".into()));
    assert_eq!(target.accepted(), 2);
    // The same, and this time the new connection is closed by the target right
    // after its answer, while it waits in the pool.
    assert_eq!(
        get_and_close(port, ODD, "/close-after"),
        (200, "conn 3".into())
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Found closed when taken from the pool: a new connection at once.
    assert_eq!(get_and_close(port, ODD, "/d"), (200, "conn 4".into()));
    // A POST is never sent again (RFC 9110 §9.2.2), so it never takes a pooled
    // connection: had it taken conn 4's, the target would have closed it unanswered.
    let post = exchange(
        port,
        b"POST /p HTTP/1.1\r\nHost: odd.dvl-ckl2.net\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        status_of(&post),
        Some(200),
        "{}",
        String::from_utf8_lossy(&post)
    );
    assert!(String::from_utf8_lossy(&post).ends_with("conn 5"));
    assert_eq!(target.accepted(), 5);
}

#[test]
fn a_keepalive_client_idle_for_a_second_lends_its_target_connection() {
    let lab = Lab::new();
    let _portico = lab.start();
    let port = lab.http_port();
    let stream = connect(port);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {HQ}\r\n\r\n");
    writer.write_all(get("/PBX0/APPS/1").as_bytes()).unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 200);
    // Idle past a second: the connection's target leg is in the shard's pool, and
    // another client's request rides on it.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(get_and_close(port, HQ, "/PBX0/APPS/2").0, 200);
    assert_eq!(
        lab.master.http.connections(),
        1,
        "the idle client kept its leg"
    );
    // The idle client is still served, on a pooled connection or a new one.
    writer.write_all(get("/PBX0/APPS/3").as_bytes()).unwrap();
    let third = read_response(&mut reader).expect("the kept-alive client is served");
    assert_eq!(third.text(), "master /PBX0/APPS/3");
    assert_eq!(
        lab.master.http.paths(),
        ["/PBX0/APPS/1", "/PBX0/APPS/2", "/PBX0/APPS/3"]
    );
}
