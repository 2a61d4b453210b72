//! H.323 fixtures (issue 5: H.460.17 over TCP/TLS, routed by gatekeeper id): the
//! committed test vectors (`dataplane/proto/testdata/h323/`, made by pycrate and
//! confirmed by tshark), a recording stream target (plain or TLS) standing in for a
//! PBX's H.323 signalling port, and small client helpers.
//!
//! The target records every byte it receives on each connection; on its first read it
//! answers with a fixed reply (a TPKT frame naming the target, [`reply`]), and then
//! echoes every byte it reads, the first read included. So a client that sends `X`
//! reads back `reply ++ X`: whatever it sends after the first message must come back
//! unchanged, in both directions, through portico.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::binary::workspace_dir;
use crate::pki::{provider, Leaf};
use crate::wait_for;

/// One committed vector: a line of `vectors.tsv` and its `.bin` (one TPKT frame).
#[derive(Clone, Debug)]
pub struct Vector {
    pub name: String,
    /// The Q.931 message type (0x62 FACILITY, 0x05 SETUP).
    pub message_type: u8,
    /// The tunnelled RAS message, lower case (`grq`, `rrq`, ...), if any.
    pub ras: Option<String>,
    /// `gatekeeperIdentifier` as sent.
    pub gatekeeper_id: Option<String>,
    /// The routing key (after the `@`, ASCII lower-cased).
    pub key: Option<String>,
    /// The endpoint's first h323-ID / dialledDigits alias (GRQ and RRQ only).
    pub alias: Option<String>,
    pub bytes: Vec<u8>,
}

impl Vector {
    /// What portico's log line shows after the host: `GRQ gk=… alias=…`.
    pub fn summary(&self) -> String {
        format!(
            "{} gk={} alias={}",
            self.ras.as_deref().unwrap_or("-").to_ascii_uppercase(),
            self.gatekeeper_id.as_deref().unwrap_or_default(),
            self.alias.as_deref().unwrap_or("-")
        )
    }
}

/// `dataplane/proto/testdata/h323/`.
pub fn vector_dir() -> PathBuf {
    workspace_dir().join("dataplane/proto/testdata/h323")
}

/// Every vector of the manifest, in its order; each `.bin` checked to be exactly one
/// TPKT frame (version 3, length = file length).
pub fn vectors() -> Vec<Vector> {
    let dir = vector_dir();
    let manifest = std::fs::read_to_string(dir.join("vectors.tsv"))
        .unwrap_or_else(|e| panic!("read {}/vectors.tsv: {e}", dir.display()));
    let field = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut out = Vec::new();
    for line in manifest.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f.len() >= 6, "short manifest line: {line:?}");
        let message_type = u8::from_str_radix(f[1].trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("message type {:?}: {e}", f[1]));
        let path = dir.join(format!("{}.bin", f[0]));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert!(
            bytes.len() >= 4
                && bytes[0] == 3
                && usize::from(u16::from_be_bytes([bytes[2], bytes[3]])) == bytes.len(),
            "{} is not one whole TPKT frame",
            path.display()
        );
        out.push(Vector {
            name: f[0].to_string(),
            message_type,
            ras: field(f[2]),
            gatekeeper_id: field(f[3]),
            key: field(f[4]),
            alias: field(f[5]),
            bytes,
        });
    }
    out
}

/// The vector named `name` (panics when the manifest has none).
pub fn vector(name: &str) -> Vector {
    vectors()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vector {name} in vectors.tsv"))
}

/// A TPKT frame (RFC 1006) around `payload`.
pub fn tpkt(payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len() + 4).expect("TPKT payload too long");
    let mut out = vec![3, 0];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The fixed reply of target `name`: a TPKT frame `portico-e2e reply from <name>`.
pub fn reply(name: &str) -> Vec<u8> {
    tpkt(format!("portico-e2e reply from {name}").as_bytes())
}

/// A running recording target; it stops accepting when dropped.
pub struct StreamTarget {
    pub name: String,
    pub port: u16,
    /// Bytes received, one entry per accepted connection, in accept order.
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl StreamTarget {
    /// A plain TCP target.
    pub fn plain(name: &str) -> StreamTarget {
        StreamTarget::spawn(name, None)
    }

    /// A TLS target presenting `leaf` (no client certificate asked).
    pub fn tls(name: &str, leaf: &Leaf) -> StreamTarget {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(leaf.chain_der.clone(), leaf.key_der())
            .expect("target certificate");
        StreamTarget::spawn(name, Some(Arc::new(config)))
    }

    fn spawn(name: &str, tls: Option<Arc<rustls::ServerConfig>>) -> StreamTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind H.323 target");
        let port = listener.local_addr().expect("H.323 target addr").port();
        let target = StreamTarget {
            name: name.to_string(),
            port,
            received: Arc::default(),
            connections: Arc::default(),
            stop: Arc::default(),
        };
        let (received, connections, stop) = (
            Arc::clone(&target.received),
            Arc::clone(&target.connections),
            Arc::clone(&target.stop),
        );
        let reply = reply(name);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let index = {
                    let mut all = received.lock().expect("target log");
                    all.push(Vec::new());
                    connections.fetch_add(1, Ordering::SeqCst);
                    all.len() - 1
                };
                let (received, tls, reply) = (Arc::clone(&received), tls.clone(), reply.clone());
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    match tls {
                        None => serve(stream, &received, index, &reply),
                        Some(config) => {
                            let Ok(session) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            let tls = rustls::StreamOwned::new(session, stream);
                            serve(tls, &received, index, &reply);
                        }
                    }
                });
            }
        });
        target
    }

    /// Connections accepted so far (TLS ones counted before the handshake).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The bytes received so far on connection `index` (0-based, accept order).
    pub fn received(&self, index: usize) -> Vec<u8> {
        self.received
            .lock()
            .ok()
            .and_then(|all| all.get(index).cloned())
            .unwrap_or_default()
    }

    /// Waits up to `limit` until connection `index` received at least `len` bytes; what
    /// it received by then.
    pub fn wait_received(&self, index: usize, len: usize, limit: Duration) -> Vec<u8> {
        wait_for(limit, || {
            let got = self.received(index);
            (got.len() >= len).then_some(got)
        })
        .unwrap_or_else(|| self.received(index))
    }
}

impl Drop for StreamTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve<S: Read + Write>(
    mut stream: S,
    received: &Mutex<Vec<Vec<u8>>>,
    index: usize,
    reply: &[u8],
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut first = true;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if let Ok(mut all) = received.lock() {
            if let Some(conn) = all.get_mut(index) {
                conn.extend_from_slice(chunk);
            }
        }
        if first {
            first = false;
            if stream.write_all(reply).is_err() {
                return;
            }
        }
        if stream.write_all(chunk).is_err() || stream.flush().is_err() {
            return;
        }
    }
}

/// A TCP connection to 127.0.0.1:`port` whose reads time out after 200 ms.
pub fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to portico");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    stream
}

/// Reads exactly `len` bytes within `limit` from a stream with a short read timeout;
/// panics (showing what came) when the stream ends or the time is up first.
pub fn read_exactly<S: Read>(stream: &mut S, len: usize, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut all = Vec::with_capacity(len);
    let mut buf = [0u8; 4096];
    while all.len() < len {
        assert!(
            Instant::now() < deadline,
            "only {} of {len} bytes within {limit:?}: {:02x?}",
            all.len(),
            &all[..all.len().min(64)]
        );
        let want = (len - all.len()).min(buf.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) => panic!(
                "stream ended after {} of {len} bytes: {:02x?}",
                all.len(),
                &all[..all.len().min(64)]
            ),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("read failed after {} of {len} bytes: {e}", all.len()),
        }
    }
    all
}

/// `len` bytes of a fixed pattern covering every octet value.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
