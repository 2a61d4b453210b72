//! The `http` and `https` scenarios: HTTP/1.1 GET load against a URL, through a proxy
//! or direct. With an `https://` URL every connection is TLS ([`crate::tls`]: no
//! certificate verification, no resumption), so new-connection mode is one full TLS
//! handshake per request.
//!
//! Owns: building the request, the per-connection loops (keep-alive: one connection
//! reused for every request; new-connection: connect, one request with
//! `Connection: close`, wait for the server to close), max-rate or fixed-rate pacing
//! ([`crate::pacing`]), and turning outcomes into [`Stats`]. Response framing lives in
//! [`crate::response`]; executors and deadlines in [`crate::runtime`].
//!
//! Promises: one request in flight per connection (no pipelining); latency is from
//! the send (max-rate) or from the scheduled send time (fixed rate) to the last byte
//! of the response, and in new-connection mode includes the connect; only 2xx
//! responses count as requests, anything else is an error counted by kind. Every
//! loop ends by the run's deadline plus at most two request timeouts.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::pacing::Schedule;
use crate::response::{self, Body};
use crate::runtime::{self, sleep_until, Executors};
use crate::stats::{Report, RunInfo, Stats};
use crate::tls::{self, Stream};

/// Hard cap on a run's duration.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// Read buffer per connection; a response head must fit in it.
const READ_BUFFER: usize = 64 * 1024;

/// Pause after a failed connect before the next try (max-rate mode), so a dead
/// target is not hammered in a tight loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// After a `Connection: close` response, how long to wait for the server's FIN (so
/// the server, not the client, closes first, as in real traffic).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How each connection is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Reuse each connection for every request.
    Keepalive,
    /// Open a connection per request, sending `Connection: close`.
    NewConnection,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Keepalive => "keepalive",
            Mode::NewConnection => "new-connection",
        }
    }
}

/// A run, as given on the command line.
#[derive(Debug, Clone)]
pub struct HttpLoad {
    pub url: String,
    pub connect: Option<SocketAddr>,
    pub host_header: Option<String>,
    pub headers: Vec<String>,
    pub connections: usize,
    pub duration: Duration,
    pub rate: Option<f64>,
    pub mode: Mode,
    pub timeout: Duration,
    pub executors: Executors,
}

/// The parts of an `http://` URL the load needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host[:port]` as written: the default Host header.
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `https://`.
    pub tls: bool,
}

/// Parse `http[s]://host[:port][/path[?query]]` (IPv6 literals in brackets).
pub fn parse_url(url: &str) -> Result<Url> {
    let (rest, tls) = match (url.get(..7), url.get(..8)) {
        (Some(scheme), _) if scheme.eq_ignore_ascii_case("http://") => (&url[7..], false),
        (_, Some(scheme)) if scheme.eq_ignore_ascii_case("https://") => (&url[8..], true),
        _ => bail!("only http:// and https:// URLs are supported: {url:?}"),
    };
    let default_port = if tls { 443 } else { 80 };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if authority.is_empty() || authority.contains('@') {
        bail!("bad authority in {url:?}");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').context("unterminated IPv6 literal")?;
        match after.strip_prefix(':') {
            Some(p) => (h, p.parse().with_context(|| format!("bad port {p:?}"))?),
            None if after.is_empty() => (h, default_port),
            None => bail!("bad authority {authority:?}"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().with_context(|| format!("bad port {p:?}"))?),
            None => (authority, default_port),
        }
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        bail!("the path must not contain spaces or control characters");
    }
    Ok(Url {
        authority: authority.to_string(),
        host: host.to_string(),
        port,
        path,
        tls,
    })
}

/// The request bytes sent on every exchange.
fn build_request(path: &str, host: &str, headers: &[String], mode: Mode) -> Result<Vec<u8>> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portico-bench\r\n");
    for h in headers {
        if !h.contains(':') || h.contains(['\r', '\n']) {
            bail!("bad header {h:?}: want \"Name: value\"");
        }
        req.push_str(h);
        req.push_str("\r\n");
    }
    if mode == Mode::NewConnection {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    Ok(req.into_bytes())
}

/// TLS client settings of a run: the configuration and the SNI name.
pub type TlsClient = (Arc<ClientConfig>, ServerName<'static>);

/// Everything a connection task needs; shared by the tasks of one executor.
pub(crate) struct Plan {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<TlsClient>,
    request: Arc<[u8]>,
    mode: Mode,
    connections: usize,
    rate: Option<f64>,
    pub(crate) timeout: Duration,
    start: Instant,
    end: Instant,
    /// No read is started after this; responses still missing count as timeouts.
    pub(crate) hard_stop: Instant,
}

impl Plan {
    /// A plan for single exchanges outside a timed run (the `idle` scenario).
    pub(crate) fn single(
        addr: SocketAddr,
        tls: Option<TlsClient>,
        request: Arc<[u8]>,
        timeout: Duration,
        hard_stop: Instant,
    ) -> Plan {
        let now = Instant::now();
        Plan {
            addr,
            tls,
            request,
            mode: Mode::Keepalive,
            connections: 1,
            rate: None,
            timeout,
            start: now,
            end: now,
            hard_stop,
        }
    }
}

/// The TLS settings for a URL (`None` for `http://`); SNI is the Host header's host.
pub fn tls_for(url: &Url, host_header: &str) -> Result<Option<TlsClient>> {
    if !url.tls {
        return Ok(None);
    }
    let sni_host = match host_header.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host_header.rsplit_once(':').map_or(host_header, |(h, _)| h),
    };
    Ok(Some((tls::client_config()?, tls::server_name(sni_host)?)))
}

/// Run the load and report it.
pub fn run(load: HttpLoad) -> Result<Report> {
    if load.duration > MAX_DURATION {
        bail!("--duration is capped at {} s", MAX_DURATION.as_secs());
    }
    if load.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if let Some(r) = load.rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("--rate must be a positive number");
        }
    }
    let url = parse_url(&load.url)?;
    let addr = match load.connect {
        Some(a) => a,
        None => (url.host.as_str(), url.port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", url.host))?
            .next()
            .with_context(|| format!("{} has no address", url.host))?,
    };
    let host = load
        .host_header
        .clone()
        .unwrap_or_else(|| url.authority.clone());
    let request: Arc<[u8]> = build_request(&url.path, &host, &load.headers, load.mode)?.into();
    let tls = tls_for(&url, &host)?;
    let threads = load.executors.threads.clamp(1, load.connections);
    let executors = Executors {
        threads,
        ..load.executors.clone()
    };

    // Let the executors start before the clock does.
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + load.duration;
    let grace = load.timeout.min(Duration::from_secs(5));
    let (mode, connections, rate, timeout) = (load.mode, load.connections, load.rate, load.timeout);
    let results = runtime::run_on_executors("bench-http", &executors, move |t| {
        let request = request.clone();
        let tls = tls.clone();
        async move {
            let plan = Rc::new(Plan {
                addr,
                tls,
                request,
                mode,
                connections,
                rate,
                timeout,
                start,
                end,
                hard_stop: end + grace,
            });
            run_thread(plan, t, threads).await
        }
    })?;

    let mut stats = Stats::new();
    let mut last = start;
    for (s, done) in &results {
        stats.merge(s);
        last = last.max(*done);
    }
    let info = RunInfo {
        scenario: if url.tls { "https" } else { "http" },
        mode: load.mode.name().to_string(),
        target: format!(
            "{}://{host}{} via {addr}",
            if url.tls { "https" } else { "http" },
            url.path
        ),
        connections: load.connections,
        threads,
        target_rate: load.rate,
    };
    Ok(Report::new(
        info,
        last.saturating_duration_since(start),
        &stats,
    ))
}

/// One executor's share: connections `t`, `t + threads`, … Returns its stats and when
/// its last connection finished.
async fn run_thread(plan: Rc<Plan>, t: usize, threads: usize) -> (Stats, Instant) {
    let stats = Rc::new(RefCell::new(Stats::new()));
    sleep_until(plan.start).await;
    let tasks: Vec<_> = (t..plan.connections)
        .step_by(threads)
        .map(|index| glommio::spawn_local(connection(plan.clone(), index, stats.clone())))
        .collect();
    let mut last = plan.start;
    for task in tasks {
        last = last.max(task.await);
    }
    let stats = stats.borrow().clone();
    (stats, last)
}

/// One client connection's loop, until the end of the run. Returns when it finished.
async fn connection(plan: Rc<Plan>, index: usize, stats: Rc<RefCell<Stats>>) -> Instant {
    let schedule = plan
        .rate
        .map(|r| Schedule::for_connection(plan.start, r, plan.connections, index));
    let mut conn: Option<Conn> = None;
    let mut slot = 0u64;
    let mut last = Instant::now();
    while Instant::now() < plan.end {
        // When this request is due; latency is measured from here.
        let due = match schedule {
            Some(s) => {
                let due = s.due(slot);
                if due >= plan.end {
                    break;
                }
                slot += 1;
                sleep_until(due).await;
                due
            }
            None => Instant::now(),
        };
        let outcome = match plan.mode {
            Mode::Keepalive => keepalive_exchange(&plan, &mut conn).await,
            Mode::NewConnection => new_connection_exchange(&plan).await,
        };
        last = Instant::now();
        if record(&mut stats.borrow_mut(), outcome, due) == Next::BackOff && schedule.is_none() {
            sleep_until(Instant::now().min(plan.end) + CONNECT_BACKOFF).await;
        }
    }
    if let Some(s) = schedule {
        let missed = s.slots_before(plan.end).saturating_sub(slot);
        stats.borrow_mut().unsent += missed;
    }
    // The client ends a keep-alive connection: close at once.
    drop(conn);
    last
}

/// What a connection does after an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Continue,
    /// The connect failed: pause before trying again.
    BackOff,
}

/// Count one exchange that was due at `due`.
fn record(st: &mut Stats, outcome: Exchange, due: Instant) -> Next {
    match outcome {
        Exchange::Ok {
            status,
            bytes,
            done,
        } => {
            st.bytes_read += bytes;
            if (200..300).contains(&status) {
                st.record_ok(done.saturating_duration_since(due));
            } else {
                st.record_error(&format!("status {status}"));
            }
            Next::Continue
        }
        Exchange::Failed { kind, bytes } => {
            st.bytes_read += bytes;
            st.record_error(kind);
            if kind.starts_with("connect") {
                Next::BackOff
            } else {
                Next::Continue
            }
        }
    }
}

/// How one request went.
enum Exchange {
    /// A complete response with this status, read completely at `done`.
    Ok {
        status: u16,
        bytes: u64,
        done: Instant,
    },
    /// No complete response; the connection is gone.
    Failed { kind: &'static str, bytes: u64 },
}

async fn keepalive_exchange(plan: &Plan, slot: &mut Option<Conn>) -> Exchange {
    let mut conn = match slot.take() {
        Some(c) => c,
        None => match Conn::open(plan).await {
            Ok(c) => c,
            Err(kind) => return Exchange::Failed { kind, bytes: 0 },
        },
    };
    match conn.exchange(plan).await {
        Ok((status, close)) => {
            let done = Instant::now();
            let bytes = conn.take_bytes();
            if close {
                conn.await_close().await;
            } else {
                *slot = Some(conn);
            }
            Exchange::Ok {
                status,
                bytes,
                done,
            }
        }
        Err(kind) => Exchange::Failed {
            kind,
            bytes: conn.take_bytes(),
        },
    }
}

async fn new_connection_exchange(plan: &Plan) -> Exchange {
    let mut conn = match Conn::open(plan).await {
        Ok(c) => c,
        Err(kind) => return Exchange::Failed { kind, bytes: 0 },
    };
    match conn.exchange(plan).await {
        Ok((status, _)) => {
            let done = Instant::now();
            let bytes = conn.take_bytes();
            conn.await_close().await;
            Exchange::Ok {
                status,
                bytes,
                done,
            }
        }
        Err(kind) => Exchange::Failed {
            kind,
            bytes: conn.take_bytes(),
        },
    }
}

/// A client connection with its read buffer.
pub(crate) struct Conn {
    stream: Stream,
    buf: Box<[u8]>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes read since the last `take_bytes`.
    bytes: u64,
}

/// The error kind of a failed I/O operation.
fn io_kind(e: &io::Error, op: &'static str) -> &'static str {
    match e.kind() {
        io::ErrorKind::TimedOut => match op {
            "connect" => "connect timeout",
            _ => "timeout",
        },
        io::ErrorKind::ConnectionRefused => "connect refused",
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => "reset",
        _ => op,
    }
}

impl Conn {
    pub(crate) async fn open(plan: &Plan) -> Result<Conn, &'static str> {
        let stream = TcpStream::connect_timeout(plan.addr, plan.timeout)
            .await
            .map_err(|e| io_kind(&io::Error::from(e), "connect"))?;
        stream.set_nodelay(true).map_err(|_| "connect")?;
        // Every read and write is bounded; a stalled peer shows up as "timeout".
        stream
            .set_read_timeout(Some(plan.timeout))
            .and_then(|()| stream.set_write_timeout(Some(plan.timeout)))
            .map_err(|_| "connect")?;
        let stream = match &plan.tls {
            None => Stream::Plain(stream),
            Some((config, name)) => {
                let connector = futures_rustls::TlsConnector::from(config.clone());
                match connector.connect(name.clone(), stream).await {
                    Ok(s) => Stream::Client(Box::new(s)),
                    Err(e) => return Err(io_kind(&e, "tls handshake")),
                }
            }
        };
        Ok(Conn {
            stream,
            buf: vec![0u8; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            bytes: 0,
        })
    }

    fn take_bytes(&mut self) -> u64 {
        std::mem::take(&mut self.bytes)
    }

    /// Read more bytes into the buffer (compacting it first if the tail is full).
    /// `Ok(0)` is end of stream.
    async fn fill(&mut self, plan: &Plan) -> Result<usize, &'static str> {
        if Instant::now() > plan.hard_stop {
            return Err("timeout");
        }
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let space = self.buf.get_mut(self.end..).ok_or("read")?;
        if space.is_empty() {
            return Err("response head too large");
        }
        let n = self
            .stream
            .read(space)
            .await
            .map_err(|e| io_kind(&e, "read"))?;
        self.end += n;
        self.bytes += n as u64;
        Ok(n)
    }

    /// Send the request and read one whole response: its status and whether the
    /// server closes the connection after it.
    pub(crate) async fn exchange(&mut self, plan: &Plan) -> Result<(u16, bool), &'static str> {
        self.stream
            .write_all(&plan.request)
            .await
            .map_err(|e| io_kind(&e, "write"))?;
        loop {
            let pending = self.buf.get(self.start..self.end).unwrap_or_default();
            let head = match response::parse_head(pending, false) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    if self.fill(plan).await? == 0 {
                        return Err("closed");
                    }
                    continue;
                }
                Err(m) => return Err(m.kind()),
            };
            self.start += head.len;
            let mut body = head.body;
            loop {
                let pending = self.buf.get(self.start..self.end).unwrap_or_default();
                self.start += body.consume(pending).map_err(|m| m.kind())?;
                if body == Body::Done {
                    break;
                }
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                if self.fill(plan).await? == 0 {
                    if body == Body::UntilClose {
                        break;
                    }
                    return Err("closed");
                }
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            }
            // An interim response (100 Continue and the like) precedes the real one.
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            return Ok((head.status, head.close || body == Body::UntilClose));
        }
    }

    /// The server closes after this response: wait (briefly) for its FIN, then drop.
    async fn await_close(mut self) {
        let wait_until = Instant::now() + CLOSE_WAIT;
        if let Stream::Plain(s) = &self.stream {
            let _ = s.set_read_timeout(Some(CLOSE_WAIT));
        } else if let Stream::Client(s) = &self.stream {
            let _ = s.get_ref().0.set_read_timeout(Some(CLOSE_WAIT));
        }
        let mut scratch = [0u8; 512];
        while Instant::now() < wait_until {
            match self.stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://hq.example:8090/PBX0/APPS/x?y=1").unwrap();
        assert_eq!(u.authority, "hq.example:8090");
        assert_eq!(u.host, "hq.example");
        assert_eq!(u.port, 8090);
        assert_eq!(u.path, "/PBX0/APPS/x?y=1");
        let u = parse_url("HTTP://127.0.0.1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = parse_url("http://[::1]:81?q").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 81, "/?q")
        );
        let u = parse_url("https://x/").unwrap();
        assert_eq!((u.port, u.tls), (443, true));
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http://x:y/").is_err());
        assert!(parse_url("http:///").is_err());
        assert!(parse_url("http://x/a b").is_err());
    }

    #[test]
    fn requests() {
        let r = build_request("/a", "h:1", &["X-A: 1".into()], Mode::NewConnection).unwrap();
        assert_eq!(
            r,
            b"GET /a HTTP/1.1\r\nHost: h:1\r\nUser-Agent: portico-bench\r\nX-A: 1\r\nConnection: close\r\n\r\n"
        );
        assert!(build_request("/", "h", &["nocolon".into()], Mode::Keepalive).is_err());
        assert!(build_request("/", "h", &["X: a\r\nY: b".into()], Mode::Keepalive).is_err());
    }
}
