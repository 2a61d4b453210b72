//! Graceful stop (issue 3, item 2): SIGTERM/SIGINT stop accepting, idle connections
//! close, in-flight exchanges and tunnels get up to `--grace` seconds, then exit 0; a
//! second signal exits at once with 1.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use portico_tests::client::{connect, read_response};
use portico_tests::ops::{self, plain_host_block, SlowTarget, Tunnel};
use portico_tests::site::{Lab, HQ};
use portico_tests::wait_for;

const SLOW: &str = "slow.dvl-ckl2.net";

/// A lab with a slow target behind the host `slow.dvl-ckl2.net`.
fn slow_lab() -> (Lab, SlowTarget) {
    let mut lab = Lab::new();
    let slow = SlowTarget::start();
    lab.site.append(&plain_host_block(SLOW, slow.port));
    (lab, slow)
}

/// Starts `GET /x/hold/<millis>` to the slow target through portico in a thread and
/// waits until the target has the request (so it is in flight).
fn hold(lab: &Lab, slow: &SlowTarget, millis: u64) -> thread::JoinHandle<(u16, String)> {
    let before = slow.started();
    let port = lab.http_port();
    let request = thread::spawn(move || {
        let mut stream = connect(port);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
        let sent = stream
            .write_all(format!("GET /x/hold/{millis} HTTP/1.1\r\nHost: {SLOW}\r\n\r\n").as_bytes());
        if sent.is_err() {
            return (0, "send failed".to_string());
        }
        match read_response(&mut BufReader::new(stream)) {
            Ok(r) => (r.status, r.text()),
            Err(e) => (0, format!("no response: {e}")),
        }
    });
    wait_for(Duration::from_secs(5), || {
        (slow.started() > before).then_some(())
    })
    .expect("the held request reached the slow target");
    request
}

#[test]
fn sigterm_drains_an_in_flight_request_and_exits_0() {
    let (lab, slow) = slow_lab();
    let mut portico = lab.start_with(&["--shards", "2", "--grace", "10"]);
    let http = lab.http_port();

    // An idle keep-alive connection, after one exchange.
    let idle = connect(http);
    let mut idle_writer = idle.try_clone().expect("clone");
    let mut idle_reader = BufReader::new(idle);
    idle_writer
        .write_all(format!("GET /PBX0/APPS/idle HTTP/1.1\r\nHost: {HQ}\r\n\r\n").as_bytes())
        .expect("send");
    assert_eq!(read_response(&mut idle_reader).expect("answer").status, 200);

    // A request the target answers after 1 s.
    let in_flight = hold(&lab, &slow, 1000);
    let signalled = Instant::now();
    ops::signal(&portico, "TERM");

    // The idle connection is closed at once.
    idle_reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut rest = Vec::new();
    let end = idle_reader.read_to_end(&mut rest);
    assert!(
        signalled.elapsed() < Duration::from_millis(900),
        "the idle keep-alive connection must close at once, took {:?} ({end:?})",
        signalled.elapsed()
    );
    assert!(rest.is_empty(), "nothing more on the idle connection");

    // No new connections.
    let refused = wait_for(Duration::from_secs(2), || {
        TcpStream::connect(("127.0.0.1", http))
            .is_err()
            .then_some(())
    });
    assert!(refused.is_some(), "portico still accepts while draining");

    // The request in flight completes, then portico exits 0, well before the grace.
    let (status, body) = in_flight.join().expect("request thread");
    assert_eq!(
        (status, body.as_str()),
        (200, "held 1000"),
        "the in-flight request must complete during the drain"
    );
    let status = portico
        .wait_exit(Duration::from_secs(8))
        .expect("portico must exit once drained");
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "a drained stop exits 0: {status}");
    assert!(
        took >= Duration::from_millis(800),
        "exited after {took:?}, before the in-flight request was done"
    );
    assert!(
        took < Duration::from_secs(5),
        "exited after {took:?}: the drain must end when the last exchange does, not at the grace"
    );
    let log = portico.stdout().join("\n");
    assert!(log.contains("PORTICO stopping"), "{log}");
    assert!(log.contains("PORTICO stopped"), "{log}");
}

#[test]
fn a_second_signal_during_a_long_drain_exits_at_once_with_1() {
    let (lab, slow) = slow_lab();
    let mut portico = lab.start_with(&["--shards", "1", "--grace", "30"]);
    let in_flight = hold(&lab, &slow, 8000);

    ops::signal(&portico, "TERM");
    assert!(
        portico.wait_exit(Duration::from_millis(700)).is_none(),
        "portico must wait for the in-flight request"
    );
    let second = Instant::now();
    ops::signal(&portico, "INT");
    let status = portico
        .wait_exit(Duration::from_secs(3))
        .expect("a second signal must stop portico at once");
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "took {:?} after the second signal",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(1), "a forced stop exits 1: {status}");
    let (code, _) = in_flight.join().expect("request thread");
    assert_eq!(code, 0, "the held request was cut off");
    drop(slow);
}

#[test]
fn the_grace_time_bounds_a_drain_held_up_by_a_tunnel() {
    let lab = Lab::new();
    let mut portico = lab.start_with(&["--shards", "1", "--grace", "1"]);
    let mut tunnel = Tunnel::open(lab.http_port(), "master");
    assert_eq!(tunnel.echo("hello").expect("echo"), "hello");

    let signalled = Instant::now();
    ops::signal(&portico, "TERM");
    // The tunnel goes on during the grace.
    assert_eq!(
        tunnel
            .echo("during the grace")
            .expect("echo while draining"),
        "during the grace"
    );
    let status = portico
        .wait_exit(Duration::from_secs(8))
        .expect("portico must exit when the grace is over");
    let took = signalled.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "a stop at the end of the grace exits 0"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "exited {took:?} after SIGTERM with --grace 1"
    );
    // The tunnel is gone with the process.
    tunnel
        .reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let _ = tunnel.writer.write_all(b"anyone?\n");
    let mut rest = Vec::new();
    let _ = tunnel.reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no echo after the exit: {rest:?}");
}

#[test]
fn the_grace_time_bounds_a_drain_held_up_by_a_slow_request() {
    let (lab, slow) = slow_lab();
    let mut portico = lab.start_with(&["--shards", "1", "--grace", "1"]);
    // The target answers after 8 s: longer than the grace.
    let in_flight = hold(&lab, &slow, 8000);

    let signalled = Instant::now();
    ops::signal(&portico, "TERM");
    let status = portico
        .wait_exit(Duration::from_secs(8))
        .expect("portico must exit when the grace is over, the request unfinished");
    let took = signalled.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "a stop at the end of the grace exits 0"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "exited {took:?} after SIGTERM with --grace 1"
    );
    let (code, body) = in_flight.join().expect("request thread");
    assert_eq!(
        code, 0,
        "the request was cut off at the end of the grace: {body}"
    );
}
