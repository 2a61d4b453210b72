//! Built-in targets: minimal, fast servers that play the PBX behind the proxy, so the
//! backend is never the bottleneck and every proxy under test sees the same one.
//!
//! - `http`: HTTP/1.1 keep-alive server answering every request with 200 and a fixed
//!   body (`--body-size` bytes) or `NAME PATH\n`. Handles pipelining (all complete
//!   requests in a read are answered in one write) and Content-Length request
//!   bodies; refuses Transfer-Encoding request bodies (400, close).
//! - `echo`: TCP echo, for tunnel benchmarks.
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
        "portico-bench target http {} listening on {} ({} thread(s))",
        target.name,
        target.listen,
        executors.threads.max(1)
    );
    let results = runtime::run_on_executors("target-http", &executors, move |_| {
        let target = target.clone();
        async move {
            let listener = TcpListener::bind(target.listen).map_err(io::Error::from)?;
            let answer = Rc::new(Answer::new(&target));
            accept_loop(listener, move |stream| {
                http_connection(stream, answer.clone())
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

/// Accept forever (a target runs until killed), one task per connection.
async fn accept_loop<F, Fut>(listener: TcpListener, serve: F) -> io::Result<()>
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
async fn http_connection(mut stream: TcpStream, answer: Rc<Answer>) -> io::Result<()> {
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
            let _ = stream.shutdown(std::net::Shutdown::Write).await;
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
