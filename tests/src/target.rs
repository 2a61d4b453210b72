//! Recording targets: small HTTP/1.1 servers (plain or TLS) standing in for a PBX or
//! the application platform behind portico. They run on std::net and threads.
//!
//! A target records every request it gets (request line, headers, de-chunked body,
//! and which of its connections carried it) and answers `200` with the body
//! `<name> <request-target>`, framed by Content-Length, keeping the connection alive.
//! Response headers: `X-Target` (its name), `X-Conn` (connection number, from 1),
//! `X-Body-Length` (length of the request body it read).
//!
//! Special requests:
//! - a request-target ending in `/big/<N>` is answered with the N bytes of [`pattern`];
//! - `Upgrade: websocket` is answered `101 Switching Protocols`, then the target sends
//!   [`greeting`] and echoes every byte it reads until the peer closes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::pki::{provider, Leaf};

/// One request as the target received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Which connection (1, 2, …) of this target carried the request.
    pub conn: usize,
    pub method: String,
    /// The request-target exactly as received (what portico forwarded).
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A running recording target; it stops accepting when dropped.
pub struct Target {
    pub name: String,
    pub port: u16,
    log: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

/// The greeting a target sends right after `101 Switching Protocols`.
pub fn greeting(name: &str) -> String {
    format!("hello from {name}\n")
}

/// The deterministic body of `/big/<len>`.
pub fn pattern(len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..len)
        .map(|i| ALPHABET[(i * 7 + i / 4093) % ALPHABET.len()])
        .collect()
}

impl Target {
    /// A plain HTTP target.
    pub fn http(name: &str) -> Target {
        Target::spawn(name, None)
    }

    /// An HTTPS target presenting `leaf`.
    pub fn tls(name: &str, leaf: &Leaf) -> Target {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(leaf.chain_der.clone(), leaf.key_der())
            .expect("target certificate");
        Target::spawn(name, Some(Arc::new(config)))
    }

    fn spawn(name: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind target");
        let port = listener.local_addr().expect("target addr").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let target = Target {
            name: name.to_string(),
            port,
            log: Arc::clone(&log),
            connections: Arc::clone(&connections),
            stop: Arc::clone(&stop),
        };
        let name = name.to_string();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn = connections.fetch_add(1, Ordering::SeqCst) + 1;
                let ctx = Conn {
                    name: name.clone(),
                    conn,
                    log: Arc::clone(&log),
                };
                let tls = tls.clone();
                thread::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    match tls {
                        None => ctx.serve(stream),
                        Some(config) => {
                            let Ok(session) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            ctx.serve(rustls::StreamOwned::new(session, stream));
                        }
                    }
                });
            }
        });
        target
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The request-targets received so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.target).collect()
    }

    /// How many connections were accepted so far (TLS handshakes included, failed or not).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

struct Conn {
    name: String,
    conn: usize,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Conn {
    fn serve<S: Read + Write>(&self, stream: S) {
        let mut reader = BufReader::new(stream);
        loop {
            let request = match self.read_request(&mut reader) {
                Ok(Some(request)) => request,
                Ok(None) | Err(_) => return,
            };
            if let Ok(mut log) = self.log.lock() {
                log.push(request.clone());
            }
            let upgrade = request
                .header("upgrade")
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            if upgrade {
                let _ = self.tunnel(&mut reader);
                return;
            }
            let close = request
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            if self.respond(reader.get_mut(), &request, close).is_err() || close {
                return;
            }
        }
    }

    fn read_request<R: BufRead>(&self, reader: &mut R) -> io::Result<Option<Recorded>> {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let version = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let mut request = Recorded {
            conn: self.conn,
            method,
            target,
            version,
            headers,
            body: Vec::new(),
        };
        let chunked = request
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            request.body = read_chunked(reader)?;
        } else if let Some(len) = request.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            let mut body = vec![0; len];
            reader.read_exact(&mut body)?;
            request.body = body;
        }
        Ok(Some(request))
    }

    fn respond<W: Write>(&self, out: &mut W, request: &Recorded, close: bool) -> io::Result<()> {
        let body = match request.target.rsplit_once("/big/") {
            Some((_, len)) if len.parse::<usize>().is_ok() => pattern(len.parse().unwrap_or(0)),
            _ => format!("{} {}", self.name, request.target).into_bytes(),
        };
        let mut head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Target: {}\r\nX-Conn: {}\r\nX-Body-Length: {}\r\n",
            body.len(),
            self.name,
            self.conn,
            request.body.len()
        );
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        out.write_all(&body)?;
        out.flush()
    }

    fn tunnel<S: Read + Write>(&self, reader: &mut BufReader<S>) -> io::Result<()> {
        let head =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        reader.get_mut().write_all(head.as_bytes())?;
        reader
            .get_mut()
            .write_all(greeting(&self.name).as_bytes())?;
        reader.get_mut().flush()?;
        let mut buf = [0u8; 16 * 1024];
        loop {
            // Reads what the BufReader already holds first, then the stream.
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            reader.get_mut().write_all(&buf[..n])?;
            reader.get_mut().flush()?;
        }
    }
}

/// Reads a chunked body (RFC 9112 §7.1), trailers skipped.
fn read_chunked<R: BufRead>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let size = line.trim_end().split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        if size == 0 {
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer)? == 0 || trailer.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}
