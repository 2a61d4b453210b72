//! Built-in targets: minimal, fast servers that play the PBX behind the proxy, so the
//! backend is never the bottleneck and every proxy under test sees the same one.
//!
//! - `http`: HTTP/1.1 keep-alive server answering every request with 200 and a fixed
//!   body (`--body-size` bytes) or `NAME PATH\n`. Handles pipelining (all complete
//!   requests in a read are answered in one write) and Content-Length request
//!   bodies; refuses Transfer-Encoding request bodies (400, close).
//!   With `--tls-cert/--tls-key` it speaks HTTPS (rustls, ring): the TLS target
//!   behind a proxy's HTTPS listener.
//! - `echo`: TCP echo, for tunnel benchmarks.
//! - `upgrade`: answers the first request head with `101 Switching Protocols`, then
//!   echoes every byte (the far end of an HTTP Upgrade / WebSocket tunnel).
//! - `sip` and `ldap` live in [`crate::sip`] and [`crate::ldap`].
//!
//! One glommio executor per `--threads`, each with its own SO_REUSEPORT listener
//! (glommio's `TcpListener::bind` sets it), so the kernel spreads connections. The
//! servers run until killed; each connection is closed after [`IDLE_TIMEOUT`] without
//! input.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Result;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::runtime::{self, Executors};
use crate::tls::Stream;

/// A connection with no input for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Per-connection read buffer; a request head must fit in it.
const READ_BUFFER: usize = 16 * 1024;

/// Most header fields accepted in one request head.
const MAX_HEADERS: usize = 64;

/// Flush the pending responses once they exceed this many bytes.
const WRITE_CHUNK: usize = 64 * 1024;

/// The HTTP target's configuration.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub listen: SocketAddr,
    pub name: String,
    pub executors: Executors,
    /// Fixed body size; `None` answers `NAME PATH\n`.
    pub body_size: Option<usize>,
    /// Serve HTTPS with this configuration.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// What a request gets back.
enum Answer {
    /// The same pre-built response (head and body) for every request.
    Fixed {
        keep_alive: Rc<[u8]>,
        close: Rc<[u8]>,
    },
    /// `NAME PATH\n`, built per request.
    Echo { name: String },
}

impl Answer {
    fn new(target: &HttpTarget) -> Answer {
        match target.body_size {
            Some(n) => {
                let body = body_of(n);
                Answer::Fixed {
                    keep_alive: response(&body, false).into(),
                    close: response(&body, true).into(),
                }
            }
            None => Answer::Echo {
                name: target.name.clone(),
            },
        }
    }

    fn write(&self, path: &[u8], close: bool, out: &mut Vec<u8>) {
        match self {
            Answer::Fixed {
                keep_alive,
                close: c,
            } => {
                out.extend_from_slice(if close { c } else { keep_alive });
            }
            Answer::Echo { name } => {
                let len = name.len() + 1 + path.len() + 1;
                out.extend_from_slice(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ",
                );
                out.extend_from_slice(len.to_string().as_bytes());
                out.extend_from_slice(if close {
                    b"\r\nConnection: close\r\n\r\n".as_slice()
                } else {
                    b"\r\n\r\n".as_slice()
                });
                out.extend_from_slice(name.as_bytes());
                out.push(b' ');
                out.extend_from_slice(path);
                out.push(b'\n');
            }
        }
    }
}

/// A body of `n` printable bytes ending in a newline.
fn body_of(n: usize) -> Vec<u8> {
    let mut body: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
    if let Some(last) = body.last_mut() {
        *last = b'\n';
    }
    body
}

fn response(body: &[u8], close: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Run the HTTP target until killed.
pub fn run_http(target: HttpTarget) -> Result<()> {
    let executors = target.executors.clone();
    eprintln!(
        "portico-bench target http{} {} listening on {} ({} thread(s))",
        if target.tls.is_some() { " (TLS)" } else { "" },
        target.name,
        target.listen,
        executors.threads.max(1)
    );
    let results = runtime::run_on_executors("target-http", &executors, move |_| {
        let target = target.clone();
        async move {
            let listener = TcpListener::bind(target.listen).map_err(io::Error::from)?;
            let answer = Rc::new(Answer::new(&target));
            let acceptor = target.tls.clone().map(futures_rustls::TlsAcceptor::from);
            accept_loop(listener, move |stream| {
                let (answer, acceptor) = (answer.clone(), acceptor.clone());
                async move {
                    let stream = match acceptor {
                        None => Stream::Plain(stream),
                        Some(a) => Stream::Server(Box::new(a.accept(stream).await?)),
                    };
                    http_connection(stream, answer).await
                }
            })
            .await
        }
    })?;
    for r in results {
        r?;
    }
    Ok(())
}

/// Run the echo target until killed.
pub fn run_echo(listen: SocketAddr, executors: &Executors) -> Result<()> {
    eprintln!(
        "portico-bench target echo listening on {listen} ({} thread(s))",
        executors.threads.max(1)
    );
    let results = runtime::run_on_executors("target-echo", executors, move |_| async move {
        let listener = TcpListener::bind(listen).map_err(io::Error::from)?;
        accept_loop(listener, echo_connection).await
    })?;
    for r in results {
        r?;
    }
    Ok(())
}

/// Run the upgrade target until killed.
pub fn run_upgrade(listen: SocketAddr, executors: &Executors) -> Result<()> {
    eprintln!(
        "portico-bench target upgrade listening on {listen} ({} thread(s))",
        executors.threads.max(1)
    );
    let results = runtime::run_on_executors("target-upgrade", executors, move |_| async move {
        let listener = TcpListener::bind(listen).map_err(io::Error::from)?;
        accept_loop(listener, upgrade_connection).await
    })?;
    for r in results {
        r?;
    }
    Ok(())
}

/// The 101 answer to an upgrade request head: the request's `Upgrade` token echoed,
/// and `Sec-WebSocket-Accept` (RFC 6455 §4.2.2) when it sent a `Sec-WebSocket-Key`
/// (HAProxy checks it).
fn switching(head: &[u8]) -> Vec<u8> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let _ = req.parse(head);
    let mut upgrade: &[u8] = b"websocket";
    let mut key: Option<&[u8]> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = h.value;
        } else if h.name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(h.value.trim_ascii());
        }
    }
    let mut out = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ".to_vec();
    out.extend_from_slice(upgrade);
    out.extend_from_slice(b"\r\n");
    if let Some(key) = key {
        out.extend_from_slice(b"Sec-WebSocket-Accept: ");
        out.extend_from_slice(websocket_accept(key).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// base64(SHA-1(key ++ GUID)).
fn websocket_accept(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64(ctx.finish().as_ref())
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Read one request head, answer 101, then echo (bytes after the head first).
async fn upgrade_connection(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024].into_boxed_slice();
    let mut end = 0;
    let head_len = loop {
        let n = stream.read(buf.get_mut(end..).unwrap_or_default()).await?;
        if n == 0 {
            return Ok(());
        }
        end += n;
        match parse_request(buf.get(..end).unwrap_or_default()) {
            Parsed::Request(req) => break req.head_len,
            Parsed::Partial if end < buf.len() => {}
            _ => {
                stream.write_all(BAD_REQUEST).await?;
                return Ok(());
            }
        }
    };
    stream
        .write_all(&switching(buf.get(..head_len).unwrap_or_default()))
        .await?;
    if end > head_len {
        stream
            .write_all(buf.get(head_len..end).unwrap_or_default())
            .await?;
    }
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(buf.get(..n).unwrap_or_default()).await?;
    }
}

/// Accept forever (a target runs until killed), one task per connection.
pub(crate) async fn accept_loop<F, Fut>(listener: TcpListener, serve: F) -> io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = io::Result<()>> + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                eprintln!("accept: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if stream.set_nodelay(true).is_err()
            || stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
            || stream.set_write_timeout(Some(IDLE_TIMEOUT)).is_err()
        {
            continue;
        }
        glommio::spawn_local(serve(stream)).detach();
    }
}

/// Serve HTTP/1.1 requests on one connection until the client closes, asks to close,
/// sends something malformed, or stays idle too long.
async fn http_connection(mut stream: Stream, answer: Rc<Answer>) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUFFER].into_boxed_slice();
    let (mut start, mut end) = (0usize, 0usize);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    // Request body bytes still to skip.
    let mut skip: u64 = 0;
    loop {
        let n = stream.read(buf.get_mut(end..).unwrap_or_default()).await?;
        if n == 0 {
            return Ok(());
        }
        end += n;
        let mut close = false;
        // Answer every complete request in the buffer (pipelining).
        loop {
            if skip > 0 {
                let n = usize::try_from(skip).unwrap_or(usize::MAX).min(end - start);
                skip -= n as u64;
                start += n;
                if skip > 0 {
                    break;
                }
            }
            let pending = buf.get(start..end).unwrap_or_default();
            if pending.is_empty() {
                break;
            }
            match parse_request(pending) {
                Parsed::Partial => {
                    if start == 0 && end == buf.len() {
                        out.extend_from_slice(TOO_LARGE);
                        close = true;
                    }
                    break;
                }
                Parsed::Bad => {
                    out.extend_from_slice(BAD_REQUEST);
                    close = true;
                    break;
                }
                Parsed::Request(req) => {
                    let path = pending.get(req.path.clone()).unwrap_or_default();
                    answer.write(path, req.close, &mut out);
                    start += req.head_len;
                    skip = req.body_len;
                    if req.close {
                        close = true;
                        break;
                    }
                    if out.len() >= WRITE_CHUNK {
                        stream.write_all(&out).await?;
                        out.clear();
                    }
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close {
            // Half-close and let the client close; dropping closes the socket.
            match &stream {
                Stream::Plain(s) => {
                    let _ = s.shutdown(std::net::Shutdown::Write).await;
                }
                _ => {
                    let _ = stream.close().await;
                }
            }
            return Ok(());
        }
        // Keep the unconsumed tail at the front of the buffer.
        if start == end {
            start = 0;
            end = 0;
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
    }
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    head_len: usize,
    /// The request target (range into the parsed bytes).
    path: std::ops::Range<usize>,
    body_len: u64,
    close: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Partial,
    Bad,
    Request(Request),
}

/// Parse one request head at the start of `buf` (RFC 9112 §3, §6.3).
fn parse_request(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Bad,
    };
    let Some(path) = req.path else {
        return Parsed::Bad;
    };
    // httparse hands out subslices of `buf`: their offset is the distance between
    // the pointers.
    let path_start = (path.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    let path = path_start..path_start + path.len();
    if buf.get(path.clone()).is_none() {
        return Parsed::Bad;
    }
    let mut close = req.version == Some(0);
    let mut body_len: Option<u64> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            else {
                return Parsed::Bad;
            };
            if body_len.is_some_and(|l| l != n) {
                return Parsed::Bad;
            }
            body_len = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Bad;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        }
    }
    Parsed::Request(Request {
        head_len,
        path,
        body_len: body_len.unwrap_or(0),
        close,
    })
}

/// Echo every byte back until the client closes or stays idle too long.
async fn echo_connection(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024].into_boxed_slice();
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(buf.get(..n).unwrap_or_default()).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_bodies() {
        let r = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET";
        let Parsed::Request(req) = parse_request(r) else {
            panic!("not parsed")
        };
        assert_eq!(&r[req.path.clone()], b"/x");
        assert_eq!(req.body_len, 3);
        assert!(!req.close);
        assert_eq!(&r[req.head_len..], b"abcGET");
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Parsed::Partial
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Parsed::Bad
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Parsed::Bad
        );
        let Parsed::Request(req) = parse_request(b"GET / HTTP/1.0\r\n\r\n") else {
            panic!("not parsed")
        };
        assert!(req.close);
        let Parsed::Request(req) = parse_request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        else {
            panic!("not parsed")
        };
        assert!(req.close);
    }

    #[test]
    fn websocket_accept_matches_rfc6455() {
        // RFC 6455 §1.3.
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        let r = switching(b"GET / HTTP/1.1\r\nUpgrade: x-echo\r\nConnection: upgrade\r\n\r\n");
        assert_eq!(
            r,
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-echo\r\n\r\n"
        );
    }

    #[test]
    fn answers() {
        let mut out = Vec::new();
        Answer::Echo { name: "t1".into() }.write(b"/p", false, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nt1 /p\n"
        );
        let fixed = response(&body_of(4), true);
        assert!(fixed.ends_with(b"Content-Length: 4\r\nConnection: close\r\n\r\nabc\n"));
    }
}
