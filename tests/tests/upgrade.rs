//! WebSocket upgrade: a `101` from the target turns the connection into a tunnel that
//! carries bytes both ways, over HTTP and over HTTPS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use portico_tests::client::{connect, read_response};
use portico_tests::pki::client_config;
use portico_tests::site::{Lab, HQ};
use portico_tests::target::{greeting, pattern};
use rustls::pki_types::ServerName;

const UPGRADE: &str = "GET /PBX0/APPS/websocket HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\n\
    Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Reads the 101 and the target's greeting line.
fn expect_switch<R: BufRead>(reader: &mut R) {
    let response = read_response(reader).expect("response to the upgrade");
    assert_eq!(response.status, 101);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("greeting through the tunnel");
    assert_eq!(line, greeting("master"), "target to client direction");
}

#[test]
fn websocket_tunnel_over_http_carries_bytes_both_ways() {
    let lab = Lab::new();
    let _portico = lab.start();
    let stream = connect(lab.http_port());
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    writer.write_all(UPGRADE.as_bytes()).unwrap();
    expect_switch(&mut reader);

    writer.write_all(b"ping 1\n").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "ping 1\n", "client to target and back");

    // Bulk both ways at once: a writer thread, while this one reads the echo.
    let bulk = pattern(1_000_000);
    let sent = bulk.clone();
    let mut bulk_writer = writer.try_clone().unwrap();
    let feeder = thread::spawn(move || bulk_writer.write_all(&sent));
    let mut echoed = vec![0u8; bulk.len()];
    reader
        .read_exact(&mut echoed)
        .expect("the echo of the bulk");
    feeder.join().unwrap().expect("bulk written");
    assert!(echoed == bulk, "bytes altered in the tunnel");

    // Half-close: our end of input reaches the target, which closes; that reaches us.
    writer.shutdown(Shutdown::Write).unwrap();
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    let end = reader.read_to_end(&mut rest);
    assert!(end.is_ok(), "tunnel must end with a clean close: {end:?}");
    assert!(rest.is_empty());

    let got = lab.master.http.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].target, "/PBX0/APPS/websocket");
    assert_eq!(got[0].header("upgrade"), Some("websocket"));
}

#[test]
fn websocket_tunnel_over_https_carries_bytes_both_ways() {
    let lab = Lab::new();
    let _portico = lab.start();
    let tcp = connect(lab.https_port());
    let name = ServerName::try_from(HQ).unwrap();
    let session = rustls::ClientConnection::new(client_config(&lab.ca), name).unwrap();
    let mut tls = BufReader::new(rustls::StreamOwned::new(session, tcp));
    tls.get_mut().write_all(UPGRADE.as_bytes()).unwrap();
    tls.get_mut().flush().unwrap();
    expect_switch(&mut tls);

    let bulk = pattern(256 * 1024);
    for chunk in bulk.chunks(16 * 1024) {
        tls.get_mut().write_all(chunk).unwrap();
        tls.get_mut().flush().unwrap();
        let mut echoed = vec![0u8; chunk.len()];
        tls.read_exact(&mut echoed)
            .expect("echo through the TLS tunnel");
        assert!(echoed == chunk, "bytes altered in the TLS tunnel");
    }
    let got = lab.master.tls.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].target, "/PBX0/APPS/websocket");
    assert_eq!(got[0].header("x-forwarded-proto"), Some("https"));
}
