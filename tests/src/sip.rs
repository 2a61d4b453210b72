//! SIP fixtures: a recording SIP target (plain or TLS) standing in for a PBX's SIP
//! port, the `sipp` wrapper (scenarios under `tests/sipp/`), a small rustls SIPS client
//! with or without a client certificate, and a client-certificate CA whose leaves can
//! carry SAN URIs and e-mail names (what Check Certificate looks at).
//!
//! The target reads whole SIP messages (head up to the blank line, then
//! `Content-Length`/`l:` bytes of body), records each with the exact bytes of its head,
//! and answers every request except ACK with `SIP/2.0 200 OK` carrying the request's
//! Via/From/To/Call-ID/CSeq header lines as received (compact names kept, a To tag
//! added when missing) and `X-Target: <name>`. Responses it receives are only recorded.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use crate::binary::{run_within, Finished};
use crate::pki::{provider, Ca, Leaf};
use crate::{free_port, wait_for};

/// One SIP message as a target received it.
#[derive(Clone, Debug)]
pub struct SipMessage {
    /// Which connection (1, 2, …) of this target carried it.
    pub conn: usize,
    /// The head exactly as received: start line, header lines, blank line.
    pub head: String,
    pub body: Vec<u8>,
}

impl SipMessage {
    /// The start line (`INVITE sip:… SIP/2.0` or `SIP/2.0 200 OK`).
    pub fn start_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// The method of a request (first word of the start line).
    pub fn method(&self) -> &str {
        self.start_line().split(' ').next().unwrap_or_default()
    }

    /// Header lines (name, value), in order, names as sent.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// Values of the header named `name` or its compact form `compact` (any case).
    pub fn header_values(&self, name: &str, compact: Option<&str>) -> Vec<String> {
        self.headers()
            .into_iter()
            .filter(|(n, _)| {
                n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c))
            })
            .map(|(_, v)| v)
            .collect()
    }

    /// The second line of the head (the first header line).
    pub fn first_header_line(&self) -> &str {
        self.head.lines().nth(1).unwrap_or_default()
    }
}

/// A running SIP target; it stops accepting when dropped.
pub struct SipTarget {
    pub name: String,
    pub port: u16,
    log: Arc<Mutex<Vec<SipMessage>>>,
    connections: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl SipTarget {
    /// A SIP-over-TCP target.
    pub fn plain(name: &str) -> SipTarget {
        SipTarget::spawn(name, None)
    }

    /// A SIP-over-TLS target presenting `leaf` (no client certificate asked).
    pub fn tls(name: &str, leaf: &Leaf) -> SipTarget {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(leaf.chain_der.clone(), leaf.key_der())
            .expect("target certificate");
        SipTarget::spawn(name, Some(Arc::new(config)))
    }

    fn spawn(name: &str, tls: Option<Arc<rustls::ServerConfig>>) -> SipTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind SIP target");
        let port = listener.local_addr().expect("SIP target addr").port();
        let target = SipTarget {
            name: name.to_string(),
            port,
            log: Arc::default(),
            connections: Arc::default(),
            bytes: Arc::default(),
            stop: Arc::default(),
        };
        let (log, connections, bytes, stop) = (
            Arc::clone(&target.log),
            Arc::clone(&target.connections),
            Arc::clone(&target.bytes),
            Arc::clone(&target.stop),
        );
        let name = name.to_string();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn = connections.fetch_add(1, Ordering::SeqCst) + 1;
                let ctx = SipConn {
                    name: name.clone(),
                    conn,
                    log: Arc::clone(&log),
                    bytes: Arc::clone(&bytes),
                };
                let tls = tls.clone();
                thread::spawn(move || {
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

    /// Every message received so far.
    pub fn messages(&self) -> Vec<SipMessage> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The methods of the requests received so far, in order.
    pub fn methods(&self) -> Vec<String> {
        self.messages()
            .iter()
            .map(|m| m.method().to_string())
            .collect()
    }

    /// Connections accepted so far (TLS ones counted before the handshake).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Application bytes read so far (after TLS, for a TLS target).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Waits up to `limit` until `count` messages were received; all of them then.
    pub fn wait_messages(&self, count: usize, limit: Duration) -> Vec<SipMessage> {
        wait_for(limit, || {
            let all = self.messages();
            (all.len() >= count).then_some(all)
        })
        .unwrap_or_else(|| self.messages())
    }
}

impl Drop for SipTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

struct SipConn {
    name: String,
    conn: usize,
    log: Arc<Mutex<Vec<SipMessage>>>,
    bytes: Arc<AtomicUsize>,
}

/// Counts the bytes read through it.
struct Counting<'a, S> {
    inner: S,
    bytes: &'a AtomicUsize,
}

impl<S: Read> Read for Counting<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n, Ordering::SeqCst);
        Ok(n)
    }
}

impl<S: Write> Write for Counting<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl SipConn {
    fn serve<S: Read + Write>(&self, stream: S) {
        let mut reader = BufReader::new(Counting {
            inner: stream,
            bytes: &self.bytes,
        });
        while let Ok(Some(message)) = read_message(&mut reader, self.conn) {
            if let Ok(mut log) = self.log.lock() {
                log.push(message.clone());
            }
            let is_request = !message.start_line().starts_with("SIP/");
            if is_request && message.method() != "ACK" {
                let answer = self.answer(&message);
                let out = reader.get_mut();
                if out.write_all(answer.as_bytes()).is_err() || out.flush().is_err() {
                    return;
                }
            }
        }
    }

    fn answer(&self, request: &SipMessage) -> String {
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for (name, value) in request.headers() {
            let lower = name.to_ascii_lowercase();
            match lower.as_str() {
                "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                    out.push_str(&format!("{name}: {value}\r\n"));
                }
                "to" | "t" if !value.contains(";tag=") => {
                    out.push_str(&format!(
                        "{name}: {value};tag={}-{}\r\n",
                        self.name, self.conn
                    ));
                }
                "to" | "t" => out.push_str(&format!("{name}: {value}\r\n")),
                _ => {}
            }
        }
        out.push_str(&format!(
            "Contact: <sip:{}@127.0.0.1;transport=tcp>\r\nX-Target: {}\r\nContent-Length: 0\r\n\r\n",
            self.name, self.name
        ));
        out
    }
}

/// Reads one SIP message (CRLF keep-alives before it skipped); `None` at a clean end.
pub fn read_message<R: BufRead>(reader: &mut R, conn: usize) -> io::Result<Option<SipMessage>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if head.is_empty() && line.trim_end().is_empty() {
            continue; // keep-alive CRLF between messages
        }
        let end = line.trim_end().is_empty();
        head.push_str(&line);
        if end {
            break;
        }
    }
    let mut message = SipMessage {
        conn,
        head,
        body: Vec::new(),
    };
    let len = message
        .header_values("content-length", Some("l"))
        .first()
        .map(|v| v.parse::<usize>())
        .transpose()
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    message.body = body;
    Ok(Some(message))
}

/// A request head and body: `method request-uri`, the given header lines (`Name: value`
/// without CRLF), Content-Length added for `body`.
pub fn request(method: &str, uri: &str, headers: &[&str], body: &str) -> String {
    let mut out = format!("{method} {uri} SIP/2.0\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

/// A REGISTER (or other `method`) from `from_uri` with the usual mandatory headers.
pub fn simple_request(method: &str, from_uri: &str, call_id: &str) -> String {
    let via = "Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-portico-e2e";
    let from = format!("From: <{from_uri}>;tag=e2e1");
    let to = format!("To: <{from_uri}>");
    let call = format!("Call-ID: {call_id}");
    let cseq = format!("CSeq: 1 {method}");
    let contact = "Contact: <sip:e2e@127.0.0.1:5099;transport=tcp>";
    let mut headers = vec![via, &from, &to, &call, &cseq, contact, "Max-Forwards: 70"];
    let body = if method == "INVITE" {
        headers.push("Content-Type: application/sdp");
        SDP
    } else {
        ""
    };
    request(method, "sip:127.0.0.1", &headers, body)
}

/// A small SDP offer used as INVITE body.
pub const SDP: &str = "v=0\r\no=e2e 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// Sends `request` on a new TCP connection to 127.0.0.1:`port` and reads until the
/// peer closes (or 5 s pass): everything portico answered, and whether it closed.
pub fn exchange_until_close(port: u16, request: &[u8]) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to portico");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    stream.write_all(request).expect("send request");
    read_until_close(&mut stream, Duration::from_secs(5))
}

/// Reads until end of stream or `limit`; (bytes, closed).
pub fn read_until_close<S: Read>(stream: &mut S, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (all, true),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            // A reset after the answer counts as closed.
            Err(_) => return (all, true),
        }
    }
    (all, false)
}

/// A certificate authority for client certificates (Check Certificate), whose leaves
/// can carry SAN URIs and e-mail names.
pub struct ClientCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A client certificate chain and its key.
pub struct ClientCert {
    pub chain_der: Vec<CertificateDer<'static>>,
    key_pkcs8: Vec<u8>,
}

impl ClientCert {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }
}

/// A subject alternative name for [`ClientCa::issue`].
#[derive(Clone, Copy, Debug)]
pub enum San<'a> {
    Dns(&'a str),
    Uri(&'a str),
    Email(&'a str),
}

impl ClientCa {
    pub fn new(common_name: &str) -> ClientCa {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("client CA key");
        let cert = params.self_signed(&key).expect("client CA certificate");
        ClientCa { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A client certificate with subject CN `common_name` and the given SANs.
    pub fn issue(&self, common_name: &str, sans: &[San<'_>]) -> ClientCert {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.subject_alt_names = sans
            .iter()
            .map(|san| {
                let text = |s: &str| s.to_string().try_into().expect("IA5 string");
                match *san {
                    San::Dns(s) => SanType::DnsName(text(s)),
                    San::Uri(s) => SanType::URI(text(s)),
                    San::Email(s) => SanType::Rfc822Name(text(s)),
                }
            })
            .collect();
        let key = KeyPair::generate().expect("client key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("client certificate");
        ClientCert {
            chain_der: vec![cert.der().clone(), self.cert.der().clone()],
            key_pkcs8: key.serialize_der(),
        }
    }
}

/// A TLS connection to portico (sips, ldaps): SNI `dvl-ckl2.net`, portico's certificate
/// verified against `server_ca`, presenting `client` when given; reads time out after
/// 200 ms (`WouldBlock`/`TimedOut`), so callers loop with a deadline.
pub fn tls_connect(
    port: u16,
    server_ca: &Ca,
    client: Option<&ClientCert>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.der()).expect("add CA to root store");
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client {
        Some(cert) => builder
            .with_client_auth_cert(cert.chain_der.clone(), cert.key_der())
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("dvl-ckl2.net").expect("server name");
    let session = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS session");
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to portico over TLS");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let mut tls = rustls::StreamOwned::new(session, stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tls.conn.is_handshaking() {
        match tls.conn.complete_io(&mut tls.sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("TLS handshake with portico: {e}"),
        }
        assert!(Instant::now() < deadline, "TLS handshake timed out");
    }
    tls
}

/// Sends `request` over a SIPS connection and reads the first response message.
pub fn sips_exchange(
    port: u16,
    server_ca: &Ca,
    client: Option<&ClientCert>,
    request: &str,
) -> SipMessage {
    let mut tls = tls_connect(port, server_ca, client);
    tls.write_all(request.as_bytes()).expect("send over sips");
    tls.flush().expect("flush");
    read_response(&mut tls, Duration::from_secs(5))
}

/// Reads one SIP message within `limit` from a stream with a short read timeout.
pub fn read_response<S: Read>(stream: &mut S, limit: Duration) -> SipMessage {
    let deadline = Instant::now() + limit;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") {
            let mut reader = BufReader::new(&all[..]);
            if let Ok(Some(message)) = read_message(&mut reader, 0) {
                return message;
            }
            let _ = end;
        }
        assert!(
            Instant::now() < deadline,
            "no complete SIP response within {limit:?}; got {:?}",
            String::from_utf8_lossy(&all)
        );
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "connection closed before a complete SIP response; got {:?}",
                String::from_utf8_lossy(&all)
            ),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!(
                "reading the SIP response: {e}; got {:?}",
                String::from_utf8_lossy(&all)
            ),
        }
    }
}

/// How a TLS connection ended, seen by the client.
#[derive(Debug, PartialEq, Eq)]
pub enum TlsEnd {
    /// close_notify received, then end of stream.
    CloseNotify,
    /// The stream ended or failed otherwise (e.g. TCP closed without close_notify).
    Error(String),
    /// Still open when the time was up.
    Open,
}

/// Reads a TLS stream (as made by [`tls_connect`]) until it ends or `limit` passes.
pub fn tls_read_until_end<S: Read>(stream: &mut S, limit: Duration) -> (Vec<u8>, TlsEnd) {
    let deadline = Instant::now() + limit;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (all, TlsEnd::CloseNotify),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return (all, TlsEnd::Error(e.to_string())),
        }
    }
    (all, TlsEnd::Open)
}

/// The directory of the sipp scenarios (`tests/sipp/`).
pub fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp")
}

/// One sipp run as UAC: scenario `tests/sipp/<scenario>`, TCP with one socket per call
/// (`-t tn`), to 127.0.0.1:`port`, `calls` calls (`-m`), user `alice` (`[service]`),
/// `[from_domain]` set to `domain`; 20 s global limit (`-timeout_error`, sipp fails
/// when it is reached), 5 s receive timeout per message. Runs in `workdir` (sipp
/// writes its logs there).
pub fn sipp(workdir: &Path, scenario: &str, port: u16, domain: &str, calls: u32) -> Finished {
    let scenario = scenario_dir().join(scenario);
    assert!(scenario.is_file(), "no scenario {}", scenario.display());
    let mut cmd = Command::new("sipp");
    cmd.current_dir(workdir)
        .arg("-sf")
        .arg(&scenario)
        .arg(SocketAddr::from(([127, 0, 0, 1], port)).to_string())
        .args(["-t", "tn", "-i", "127.0.0.1", "-s", "alice"])
        .args(["-key", "from_domain", domain])
        .args(["-m", &calls.to_string(), "-l", "1"])
        .args(["-cp", &free_port().to_string()])
        .args(["-timeout", "20s", "-timeout_error", "-recv_timeout", "5000"])
        .args(["-max_socket", "100", "-nostdin", "-trace_err"]);
    run_within(&mut cmd, b"", Duration::from_secs(30))
}

/// What to print when a sipp run did not go as expected.
pub fn sipp_report(run: &Finished, workdir: &Path) -> String {
    let mut report = format!(
        "sipp exit {:?}\nstdout (tail):\n{}\nstderr:\n{}",
        run.code(),
        tail(&run.stdout_text(), 40),
        run.stderr
    );
    if let Ok(dir) = std::fs::read_dir(workdir) {
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                report.push_str(&format!("\n{}:\n{}", path.display(), tail(&text, 40)));
            }
        }
    }
    report
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
