//! Real clients: a `curl` wrapper, an `openssl s_client` wrapper, and a minimal raw
//! HTTP/1.1 client over any `Read + Write` stream, for what curl will not send.

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::binary::run_within;

const MARK: &str = "\n@@portico-e2e ";

/// A curl invocation being put together. Every run uses `-sS --max-time 10` and a
/// `-w` marker after each transfer carrying its status code and new-connection count.
#[derive(Clone, Debug)]
pub struct Curl {
    args: Vec<String>,
    stdin: Vec<u8>,
}

/// What one curl run produced.
#[derive(Debug)]
pub struct CurlRun {
    /// curl's exit code (0 ok, 7 refused, 28 timeout, 35 TLS, 52 empty reply, 56 recv).
    pub exit: i32,
    /// One per transfer curl reported (status 0 when no response came).
    pub replies: Vec<Reply>,
    pub stderr: String,
}

/// One transfer: status code, connections curl opened for it, body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub connects: u32,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl CurlRun {
    /// The status codes of all transfers.
    pub fn statuses(&self) -> Vec<u16> {
        self.replies.iter().map(|r| r.status).collect()
    }

    /// The only transfer (panics with curl's stderr if there is not exactly one).
    pub fn reply(&self) -> &Reply {
        assert_eq!(
            self.replies.len(),
            1,
            "expected one transfer; curl exit {}, stderr: {}",
            self.exit,
            self.stderr
        );
        &self.replies[0]
    }

    /// The only transfer's status.
    pub fn status(&self) -> u16 {
        self.reply().status
    }

    /// The only transfer's body as text.
    pub fn text(&self) -> String {
        self.reply().text()
    }
}

impl Default for Curl {
    fn default() -> Self {
        Curl::new()
    }
}

impl Curl {
    pub fn new() -> Curl {
        let write_out = format!("{MARK}%{{http_code}} %{{num_connects}}@@\n");
        Curl {
            args: vec![
                "-sS".into(),
                "--max-time".into(),
                "10".into(),
                "-w".into(),
                write_out,
            ],
            stdin: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Curl {
        self.args.push(arg.into());
        self
    }

    /// `--resolve host:port:127.0.0.1`.
    pub fn resolve(self, host: &str, port: u16) -> Curl {
        self.arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
    }

    pub fn cacert(self, path: &Path) -> Curl {
        self.arg("--cacert").arg(path.display().to_string())
    }

    /// `-k`: do not verify portico's certificate.
    pub fn insecure(self) -> Curl {
        self.arg("-k")
    }

    /// `--path-as-is`: send `..` and `.` segments as written.
    pub fn path_as_is(self) -> Curl {
        self.arg("--path-as-is")
    }

    /// `-H header` (`Host: x` replaces curl's Host).
    pub fn header(self, header: &str) -> Curl {
        self.arg("-H").arg(header.to_string())
    }

    /// POSTs `body` with a Content-Length.
    pub fn body(mut self, body: &[u8]) -> Curl {
        self.stdin = body.to_vec();
        self.arg("--data-binary").arg("@-")
    }

    /// POSTs `body` chunked (`Transfer-Encoding: chunked`).
    pub fn chunked_body(self, body: &[u8]) -> Curl {
        self.header("Transfer-Encoding: chunked").body(body)
    }

    /// Runs curl on `urls` (one connection reused when curl can).
    pub fn get(&self, urls: &[&str]) -> CurlRun {
        let mut cmd = Command::new("curl");
        cmd.args(&self.args).args(urls);
        let done = run_within(&mut cmd, &self.stdin, Duration::from_secs(20));
        CurlRun {
            exit: done.code().unwrap_or(-1),
            replies: parse_write_out(&done.stdout),
            stderr: done.stderr,
        }
    }

    /// Runs curl on one URL.
    pub fn fetch(&self, url: &str) -> CurlRun {
        self.get(&[url])
    }
}

fn parse_write_out(out: &[u8]) -> Vec<Reply> {
    let mark = MARK.as_bytes();
    let mut replies = Vec::new();
    let mut rest = out;
    while let Some(at) = find(rest, mark) {
        let body = rest[..at].to_vec();
        let after = &rest[at + mark.len()..];
        let end = find(after, b"@@\n").unwrap_or(after.len());
        let fields = String::from_utf8_lossy(&after[..end]).into_owned();
        let mut fields = fields.split(' ');
        let status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let connects = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        replies.push(Reply {
            status,
            connects,
            body,
        });
        rest = &after[(end + 3).min(after.len())..];
    }
    replies
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Connects `openssl s_client` to 127.0.0.1:`port` with SNI `servername` and returns
/// the subject line of the certificate the server sent first (` 0 s:...`), or
/// `None` with no certificate; the second value is the whole output, for messages.
pub fn peer_subject(port: u16, servername: &str) -> (Option<String>, String) {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-servername",
        servername,
        "-showcerts",
    ]);
    let done = run_within(&mut cmd, b"", Duration::from_secs(10));
    let out = done.stdout_text();
    let subject = out
        .lines()
        .find(|l| l.trim_start().starts_with("0 s:"))
        .map(|l| l.trim().to_string());
    (subject, format!("{out}\n{}", done.stderr))
}

/// Connects to 127.0.0.1:`port` with 10 s read/write timeouts.
pub fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to portico");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    let _ = stream.set_nodelay(true);
    stream
}

/// Sends `request` on a new connection and reads until portico closes it (or 10 s).
/// Returns everything read; a reset after some bytes keeps those bytes.
pub fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(port);
    let _ = stream.write_all(request);
    read_to_close(&mut stream)
}

/// Reads until end of stream, error or timeout; returns what was read.
pub fn read_to_close(stream: &mut impl Read) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status code of a response starting `HTTP/1.x NNN`.
pub fn status_of(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// A response read by [`read_response`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines, without the status line.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response head and, unless `101`, its Content-Length body (no body without
/// Content-Length: the tests only meet framed or empty responses).
pub fn read_response(reader: &mut impl BufRead) -> io::Result<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let status = status_of(line.as_bytes()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("status line {line:?}"))
    })?;
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
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if status != 101 {
        if let Some(len) = response.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            let mut body = vec![0; len];
            reader.read_exact(&mut body)?;
            response.body = body;
        }
    }
    Ok(response)
}
