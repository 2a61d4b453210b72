//! The HTTP/HTTPS reverse proxy on one client connection.
//!
//! Every request on a keep-alive connection is parsed, normalised and routed on its
//! own (DESIGN.md "HTTP paths"): a client cannot reach a path no rule allows by
//! sending it second. Target connections are kept per (target, port, TLS name) within
//! the client connection and reused; when the client connection ends they go to the
//! shard's pool ([`crate::pool`]), where a bodyless idempotent request of any client
//! may take one (and is sent again once on a new connection if the target had closed
//! it meanwhile). The target connection persists whatever the client asked of its
//! own: hop-by-hop fields are not forwarded. Bodies are forwarded as they come, framed by
//! Content-Length or chunked encoding; a `101 Switching Protocols` answer to an
//! upgrade request turns the connection into a tunnel ([`crate::relay`]).
//!
//! What the client gets from portico itself: 400 malformed or smuggling attempt, 403
//! no rule for the path, 408 no complete request in time, 421 no such host, 431 head
//! too large, 501 unsupported transfer coding, 502 target refused, failed or answered
//! garbage, 504 target did not answer the connect in time.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use portico_control::rules::HttpMiss;
use portico_proto::http::{
    parse_request, parse_response, write_forward_head, BodyFraming, ChunkedDecoder, ForwardInfo,
    Limits, Method, RequestHead, ResponseHead,
};
use portico_proto::Sniff;

use crate::conn::Conn;
use crate::listener::Service;
use crate::shard::{Decision, ShardCtx};
use crate::time::{until, within};
use portico_control::metrics::{Counter, Direction, Hist, RejectKind};

/// Target connections kept per client connection.
const MAX_TARGETS: usize = 8;
/// A keep-alive client idle this long gives its target connections to the pool.
const SHED_TARGETS_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
const READ_CHUNK: usize = 16 * 1024;
/// Bytes read at a time while a head is buffered (requests and responses).
const HEAD_READ: usize = 4096;
/// Count `n` bytes relayed client → target.
fn up(ctx: &ShardCtx, service: Service, n: usize) {
    ctx.metrics
        .borrow_mut()
        .bytes(service, Direction::ClientToTarget, n as u64);
}

/// Count `n` bytes relayed target → client.
fn down(ctx: &ShardCtx, service: Service, n: usize) {
    ctx.metrics
        .borrow_mut()
        .bytes(service, Direction::TargetToClient, n as u64);
}

/// Why a target gave no answer at all (a reused connection may be retried).
const CLOSED_EARLY: &str = "target closed without answering";
/// Longest request summary put in a log line.
const SUMMARY_MAX: usize = 120;

/// An error answer from portico itself.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    status: u16,
    reason: &'static str,
}

impl Refusal {
    /// The metrics category of this refusal (the log line carries the reason).
    fn kind(&self) -> RejectKind {
        match self.status {
            421 => RejectKind::NoHost,
            403 => RejectKind::NoRule,
            408 => RejectKind::Timeout,
            431 => RejectKind::TooLarge,
            504 => RejectKind::TargetTimeout,
            502 if self.reason == TARGET_REFUSED => RejectKind::TargetRefused,
            502 => RejectKind::TargetError,
            _ if [
                "Content-Length",
                "Transfer-Encoding",
                "folding",
                "absolute-form",
                "Host header",
            ]
            .iter()
            .any(|w| self.reason.contains(w)) =>
            {
                RejectKind::Smuggling
            }
            _ => RejectKind::Malformed,
        }
    }
}

const TARGET_REFUSED: &str = "target refused the connection";

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// What a target connection can serve: its address and, for TLS, the server name it
/// was opened (and, with `verify_target`, verified) for. Connections are reused, by
/// one client or from the shard's pool, only under an equal key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    addr: SocketAddr,
    /// TLS: whether the certificate was verified, and the name.
    tls: Option<(bool, Box<str>)>,
}

impl PoolKey {
    fn new(addr: SocketAddr, tls: bool, verify: bool, name: &str) -> PoolKey {
        PoolKey {
            addr,
            tls: tls.then(|| (verify, name.into())),
        }
    }

    /// `== PoolKey::new(..)` without building one.
    fn is(&self, addr: SocketAddr, tls: bool, verify: bool, name: &str) -> bool {
        self.addr == addr
            && match &self.tls {
                None => !tls,
                Some((v, n)) => tls && *v == verify && **n == *name,
            }
    }
}

struct Target {
    key: PoolKey,
    conn: Conn,
    /// Bytes read from the target and not yet forwarded.
    buf: Vec<u8>,
}

pub struct Session {
    ctx: Rc<ShardCtx>,
    service: Service,
    conn_id: u64,
    peer: SocketAddr,
    scheme: &'static str,
    client: Conn,
    /// Bytes read from the client and not yet consumed.
    buf: Vec<u8>,
    targets: Vec<Target>,
    head_out: Vec<u8>,
    scratch: Vec<u8>,
    client_ip: String,
    /// When the first byte of the current request arrived (routing-decision time).
    request_started: Instant,
}

/// What to do after one exchange.
enum Next {
    KeepAlive,
    Close,
    /// The target at this index switched protocols: relay both ways.
    Tunnel(usize),
}

/// Why reading a request head ended without a head.
enum HeadEnd {
    /// Clean close or idle keep-alive connection: nothing to say.
    Quiet,
    Refuse(Refusal),
}

pub async fn serve(
    ctx: Rc<ShardCtx>,
    service: Service,
    conn_id: u64,
    client: Conn,
    peer: SocketAddr,
    scheme: &'static str,
) {
    let mut s = Session {
        ctx,
        service,
        conn_id,
        peer,
        scheme,
        client,
        buf: Vec::new(),
        targets: Vec::new(),
        head_out: Vec::new(),
        scratch: Vec::new(),
        client_ip: peer.ip().to_string(),
        request_started: Instant::now(),
    };
    let mut first = true;
    loop {
        // Between requests the task waits here, in a small state: the exchange's
        // own (several kB, for the target legs, TLS and bodies) is boxed per request
        // and gone while the connection is idle.
        if !first && s.buf.is_empty() && !s.wait_for_request().await {
            break;
        }
        match Box::pin(s.exchange(first)).await {
            Next::KeepAlive if s.ctx.draining() => break,
            Next::KeepAlive => {
                first = false;
                s.release_idle_buffers();
            }
            Next::Close => break,
            Next::Tunnel(i) => {
                let idle = s.ctx.shared.peek_rules().config.proxy.idle_timeout;
                // Only the target's connection goes on; other target legs go to the
                // pool. The tunnel gets a task of its own, and this session (its
                // buffers, its future) ends here.
                let target = s.targets.swap_remove(i).conn;
                s.pool_targets();
                crate::shard::spawn_tunnel(s.ctx, service, s.client, target, idle);
                return;
            }
        }
    }
    s.pool_targets();
    let _ = s.client.close().await;
}

/// An empty buffer is given back whole (the next head gets a fresh one once bytes
/// are there); one holding pipelined bytes keeps at most a head's worth of room.
fn release(buf: &mut Vec<u8>) {
    if buf.is_empty() {
        *buf = Vec::new();
    } else if buf.capacity() > 2 * HEAD_READ {
        buf.shrink_to(HEAD_READ);
    }
}

impl Session {
    /// The client connection ends or has been idle for [`SHED_TARGETS_AFTER`]: its
    /// target connections, each idle after a complete response, go to the shard's
    /// pool for the next request of any client (closed when pooling is off or the
    /// shard drains).
    fn pool_targets(&mut self) {
        let now = Instant::now();
        for t in std::mem::take(&mut self.targets) {
            self.lend(t, now);
        }
    }

    /// Give one idle target connection to the shard's pool (closed when pooling is
    /// off, the pool is full for its key, or the shard drains).
    fn lend(&self, t: Target, now: Instant) {
        // Bytes past the response would be answered to the wrong request.
        if t.buf.is_empty() && !self.ctx.draining() {
            // What the pool pushes out (a full key) is closed here.
            drop(self.ctx.target_pool.borrow_mut().put(t.key, t.conn, now));
        }
    }

    /// Between requests: give back the body buffer and oversized head buffers, so an
    /// idle keep-alive connection costs little memory.
    fn release_idle_buffers(&mut self) {
        self.scratch = Vec::new();
        self.head_out = Vec::new();
        release(&mut self.buf);
        for t in &mut self.targets {
            release(&mut t.buf);
        }
    }

    /// Idle keep-alive: wait for the next request's first byte, with no buffer.
    /// False when the idle timeout passed or a drain started (close quietly).
    ///
    /// After [`SHED_TARGETS_AFTER`] without a request the target legs go to the
    /// shard's pool: an idle client then holds no target connection (the target's
    /// keep-alive slots serve whoever comes next), and a busy one keeps its own.
    async fn wait_for_request(&mut self) -> bool {
        let idle = self.ctx.shared.peek_rules().config.proxy.idle_timeout;
        if self.targets.is_empty() || idle <= SHED_TARGETS_AFTER {
            return self.wait_readable(idle).await.unwrap_or(false);
        }
        if let Some(ready) = self.wait_readable(SHED_TARGETS_AFTER).await {
            return ready;
        }
        self.pool_targets();
        self.wait_readable(idle - SHED_TARGETS_AFTER)
            .await
            .unwrap_or(false)
    }

    /// Wait up to `dur` for the client's next byte: `Some(true)` readable (or
    /// closed: the read tells), `Some(false)` a drain started, `None` time ran out.
    async fn wait_readable(&mut self, dur: std::time::Duration) -> Option<bool> {
        let ctx = self.ctx.clone();
        // Built in place (no future kept in a local and awaited inside another,
        // which would be stored twice): an idle connection waits in this state.
        futures_lite::future::or(
            async { within(dur, self.client.readable()).await.map(|()| true) },
            async {
                ctx.drain_started().await;
                Some(false)
            },
        )
        .await
    }

    fn source(&self) -> IpAddr {
        self.peer.ip()
    }

    /// Read until a complete request head is buffered; the deadline is the header
    /// timeout from the first byte (or from the start, on the first request).
    async fn read_head(
        &mut self,
        first: bool,
        limits: &Limits,
        header_timeout: std::time::Duration,
        idle_timeout: std::time::Duration,
    ) -> Result<RequestHead, HeadEnd> {
        let mut deadline = first.then(|| Instant::now() + header_timeout);
        // After the first request, `serve` has waited for the next one's first byte
        // (`wait_for_request`): the first read goes straight ahead, without a second
        // readiness check (a syscall per request).
        let mut known_readable = !first;
        loop {
            if !self.buf.is_empty() {
                match parse_request(&self.buf, limits) {
                    Sniff::Done(head) => return Ok(head),
                    Sniff::Reject(r) => {
                        return Err(HeadEnd::Refuse(Refusal {
                            status: r.status,
                            reason: r.reason,
                        }))
                    }
                    Sniff::Incomplete => {}
                }
                if deadline.is_none() {
                    deadline = Some(Instant::now() + header_timeout);
                }
            }
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => idle_timeout,
            };
            // Heads are read straight into `buf` (a small zero-filled tail). Between
            // requests the connection first waits for a byte with no buffer at all,
            // so an idle keep-alive connection holds none.
            let start_len = self.buf.len();
            let read = if start_len == 0 && !std::mem::take(&mut known_readable) {
                // Idle between requests: a drain closes the connection now.
                let ctx = self.ctx.clone();
                let client = &mut self.client;
                match futures_lite::future::or(
                    async { Some(within(wait, client.readable()).await) },
                    async {
                        ctx.drain_started().await;
                        None
                    },
                )
                .await
                {
                    None => return Err(HeadEnd::Quiet),
                    Some(None) => None,
                    Some(Some(())) => {
                        self.buf.resize(HEAD_READ, 0);
                        // Bytes are there (or EOF): this read does not wait long.
                        within(wait, self.client.read(&mut self.buf[..])).await
                    }
                }
            } else {
                self.buf.resize(start_len + HEAD_READ, 0);
                within(wait, self.client.read(&mut self.buf[start_len..])).await
            };
            let got = match &read {
                Some(Ok(n)) => *n,
                _ => 0,
            };
            self.buf.truncate(start_len + got.min(HEAD_READ));
            match read {
                Some(Ok(n)) if n > 0 => {
                    if start_len == 0 {
                        self.request_started = Instant::now();
                    }
                }
                Some(_) => {
                    // EOF or error from the client.
                    return Err(if start_len == 0 {
                        HeadEnd::Quiet
                    } else {
                        HeadEnd::Refuse(Refusal {
                            status: 400,
                            reason: "connection closed mid-request",
                        })
                    });
                }
                None => {
                    if start_len == 0 && !first {
                        return Err(HeadEnd::Quiet);
                    }
                    return Err(HeadEnd::Refuse(Refusal {
                        status: 408,
                        reason: "no complete request within the header timeout",
                    }));
                }
            }
        }
    }

    /// Answer with an error from portico, count the reject, log it.
    async fn refuse(&mut self, r: Refusal, host: &str, summary: &str) -> Next {
        let d = Decision {
            service: self.service,
            conn_id: self.conn_id,
            source: self.source(),
            scheme: self.scheme,
            host,
            summary,
        };
        self.ctx.reject(&d, r.kind(), r.reason);
        let body = format!("{} {}: {}\n", r.status, status_text(r.status), r.reason);
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            r.status,
            status_text(r.status),
            body.len()
        );
        let _ = self.client.write_all(head.as_bytes()).await;
        let _ = self.client.write_all(body.as_bytes()).await;
        let _ = self.client.flush().await;
        Next::Close
    }

    fn summary(&self, head: &RequestHead) -> String {
        let mut s = String::with_capacity(64);
        for &b in self.buf.get(head.method_range.clone()).unwrap_or_default() {
            s.push(b as char);
        }
        s.push(' ');
        s.push_str(&head.path);
        if let Some(q) = head.query.clone().and_then(|q| self.buf.get(q)) {
            s.push('?');
            for &b in q {
                s.push(if b.is_ascii_graphic() { b as char } else { '?' });
            }
        }
        if s.len() > SUMMARY_MAX {
            s.truncate(SUMMARY_MAX);
        }
        s.push_str(if head.version_minor == 0 {
            " HTTP/1.0"
        } else {
            " HTTP/1.1"
        });
        s
    }

    /// One request and its response.
    async fn exchange(&mut self, first: bool) -> Next {
        let rules = self.ctx.shared.rules();
        let proxy = &rules.config.proxy;
        let limits = Limits {
            max_head: proxy.header_limit,
            ..Limits::default()
        };
        let head = match self
            .read_head(first, &limits, proxy.header_timeout, proxy.idle_timeout)
            .await
        {
            Ok(h) => h,
            Err(HeadEnd::Quiet) => return Next::Close,
            Err(HeadEnd::Refuse(r)) => return self.refuse(r, "", "").await,
        };
        let summary = self.summary(&head);
        let tls_leg = self.client.is_tls();

        // Route on the normalised path.
        let (addr, verify, host_name) = match rules.rules.route_http(&head.host, &head.path) {
            Ok((host, rule)) => {
                let addr = if tls_leg {
                    rule.to.tls_addr()
                } else {
                    rule.to.tcp_addr()
                };
                match addr {
                    Some(a) => (a, host.verify_target, host.name.clone()),
                    None => {
                        let reason = if tls_leg {
                            "rule has no tls port"
                        } else {
                            "rule has no tcp port"
                        };
                        return self
                            .refuse(
                                Refusal {
                                    status: 403,
                                    reason,
                                },
                                &head.host,
                                &summary,
                            )
                            .await;
                    }
                }
            }
            Err(HttpMiss::NoHost) => {
                let r = Refusal {
                    status: 421,
                    reason: "no such host",
                };
                return self.refuse(r, &head.host, &summary).await;
            }
            Err(HttpMiss::NoRule) => {
                let r = Refusal {
                    status: 403,
                    reason: "no rule for this path",
                };
                return self.refuse(r, &head.host, &summary).await;
            }
        };
        let connect_timeout = proxy.connect_timeout;
        self.ctx.metrics.borrow_mut().observe_duration(
            Hist::RoutingDecision,
            self.service,
            self.request_started.elapsed(),
        );
        let idle = proxy.idle_timeout;
        drop(rules);

        // The request head as forwarded.
        let info = ForwardInfo {
            client_ip: &self.client_ip,
            proto: self.scheme,
        };
        write_forward_head(&self.buf, &head, &info, &mut self.head_out);
        self.buf.drain(..head.head_len.min(self.buf.len()));
        // The part of a Content-Length body already read goes out with the head.
        let mut body_framing = head.framing;
        if let BodyFraming::Length(n) = head.framing {
            let take = (n.min(self.buf.len() as u64)) as usize;
            self.head_out.extend_from_slice(&self.buf[..take]);
            self.buf.drain(..take);
            body_framing = BodyFraming::Length(n - take as u64);
        }

        // A target connection: reused, or new. A reused one may have been closed by
        // the target meanwhile (its keep-alive timeout), so only a request that can be
        // sent again (idempotent, no body) takes one from the pool, and such a
        // request is sent once more on a new connection if a reused one fails.
        let retryable = head.framing == BodyFraming::None && head.method.is_idempotent();
        let mut attempt = 0;
        let (index, resp) = loop {
            attempt += 1;
            let (index, new) = match self
                .target(
                    addr,
                    tls_leg,
                    verify,
                    &host_name,
                    connect_timeout,
                    retryable && attempt == 1,
                )
                .await
            {
                Ok(x) => x,
                Err(r) => return self.refuse(r, &head.host, &summary).await,
            };
            let may_retry = !new && attempt == 1 && retryable;
            let sent = match self.targets.get_mut(index) {
                Some(t) => t
                    .conn
                    .write_all(&self.head_out)
                    .await
                    .and(t.conn.flush().await),
                None => return Next::Close,
            };
            if sent.is_ok() {
                up(&self.ctx, self.service, self.head_out.len());
            }
            if sent.is_err() {
                self.targets.swap_remove(index);
                if may_retry {
                    continue;
                }
                let r = Refusal {
                    status: 502,
                    reason: "target closed the connection",
                };
                return self.refuse(r, &head.host, &summary).await;
            }
            if head.expect_continue && head.framing != BodyFraming::None {
                let _ = self
                    .client
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await;
                let _ = self.client.flush().await;
            }
            if let Err(r) = self.forward_request_body(index, body_framing, idle).await {
                self.targets.swap_remove(index);
                if let Some(r) = r {
                    return self.refuse(r, &head.host, &summary).await;
                }
                return Next::Close;
            }
            // The response: interim 1xx answers are passed on, then the final one.
            match self.read_response_head(index, head.method, idle).await {
                Ok(resp) => {
                    let d = Decision {
                        service: self.service,
                        conn_id: self.conn_id,
                        source: self.source(),
                        scheme: self.scheme,
                        host: &head.host,
                        summary: &summary,
                    };
                    self.ctx.forwarded(&d, &host_name, addr, new);
                    break (index, resp);
                }
                Err(r) => {
                    self.targets.swap_remove(index);
                    if may_retry && r.reason == CLOSED_EARLY {
                        continue;
                    }
                    return self.refuse(r, &head.host, &summary).await;
                }
            }
        };
        if resp.status == 101 {
            if !head.upgrade {
                self.targets.swap_remove(index);
                let r = Refusal {
                    status: 502,
                    reason: "target switched protocols unasked",
                };
                return self.refuse(r, &head.host, &summary).await;
            }
            if self.flush_upgrade(index, &resp).await.is_err() {
                return Next::Close;
            }
            return Next::Tunnel(index);
        }
        match self.forward_response(index, &resp, idle).await {
            Ok(()) => {}
            Err(()) => {
                self.targets.swap_remove(index);
                return Next::Close;
            }
        }
        let target_keeps = resp.keep_alive && resp.framing != BodyFraming::UntilClose;
        if !target_keeps {
            self.targets.swap_remove(index);
        }
        if head.keep_alive && resp.framing != BodyFraming::UntilClose {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }

    /// Find or open the target connection for (addr, tls, name); returns its index
    /// and whether it is new. This client's own connection comes first; then, with
    /// `pooled`, an idle one from the shard's pool that is still open.
    async fn target(
        &mut self,
        addr: SocketAddr,
        tls: bool,
        verify: bool,
        host_name: &str,
        connect_timeout: std::time::Duration,
        pooled: bool,
    ) -> Result<(usize, bool), Refusal> {
        if let Some(i) = self
            .targets
            .iter()
            .position(|t| t.key.is(addr, tls, verify, host_name))
        {
            return Ok((i, false));
        }
        let key = PoolKey::new(addr, tls, verify, host_name);
        if pooled {
            let now = Instant::now();
            loop {
                let taken = self.ctx.target_pool.borrow_mut().take(&key, now);
                let Some(mut conn) = taken else { break };
                // Closed by the target while pooled, or holding bytes nobody asked
                // for: dropped (closed), and the next one is tried.
                if conn.idle_and_open() {
                    self.ctx
                        .metrics
                        .borrow_mut()
                        .add(Counter::TargetReused, self.service, 1);
                    return Ok((self.add_target(key, conn), false));
                }
            }
        }
        let started = Instant::now();
        let stream = match within(connect_timeout, TcpStream::connect(addr)).await {
            Some(Ok(s)) => s,
            Some(Err(_)) => {
                return Err(Refusal {
                    status: 502,
                    reason: TARGET_REFUSED,
                })
            }
            None => {
                return Err(Refusal {
                    status: 504,
                    reason: "target did not answer in time",
                })
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = if tls {
            let config = self.ctx.tls.load().targets.for_host(verify).clone();
            let name = crate::tls::target_server_name(host_name, addr.ip());
            let connector = futures_rustls::TlsConnector::from(config);
            match within(connect_timeout, connector.connect(name, stream)).await {
                Some(Ok(s)) => Conn::TlsClient(Box::new(s)),
                Some(Err(_)) => {
                    return Err(Refusal {
                        status: 502,
                        reason: "TLS to target failed",
                    })
                }
                None => {
                    return Err(Refusal {
                        status: 504,
                        reason: "TLS to target timed out",
                    })
                }
            }
        } else {
            Conn::Plain(stream)
        };
        self.ctx.metrics.borrow_mut().observe_duration(
            Hist::TargetConnect,
            self.service,
            started.elapsed(),
        );
        Ok((self.add_target(key, conn), true))
    }

    /// Hold `conn` for this client; returns its index. Past [`MAX_TARGETS`] the
    /// oldest goes to the shard's pool.
    fn add_target(&mut self, key: PoolKey, conn: Conn) -> usize {
        if self.targets.len() >= MAX_TARGETS {
            let old = self.targets.remove(0);
            self.lend(old, Instant::now());
        }
        self.targets.push(Target {
            key,
            conn,
            buf: Vec::new(),
        });
        self.targets.len() - 1
    }

    /// Forward the request body from the client to target `index`.
    /// `Err(Some(r))`: answer `r`; `Err(None)`: just close.
    async fn forward_request_body(
        &mut self,
        index: usize,
        framing: BodyFraming,
        idle: std::time::Duration,
    ) -> Result<(), Option<Refusal>> {
        if framing != BodyFraming::None {
            self.scratch.resize(READ_CHUNK, 0);
        }
        let Some(t) = self.targets.get_mut(index) else {
            return Err(None);
        };
        match framing {
            BodyFraming::None | BodyFraming::UntilClose => Ok(()),
            BodyFraming::Length(mut left) => {
                let take = (left.min(self.buf.len() as u64)) as usize;
                if take > 0 {
                    t.conn
                        .write_all(&self.buf[..take])
                        .await
                        .map_err(|_| None)?;
                    up(&self.ctx, self.service, take);
                    self.buf.drain(..take);
                    left -= take as u64;
                }
                while left > 0 {
                    let want = (left.min(READ_CHUNK as u64)) as usize;
                    let n = match within(idle, self.client.read(&mut self.scratch[..want])).await {
                        Some(Ok(n)) if n > 0 => n,
                        _ => return Err(None),
                    };
                    t.conn
                        .write_all(&self.scratch[..n])
                        .await
                        .map_err(|_| None)?;
                    up(&self.ctx, self.service, n);
                    left -= n as u64;
                }
                t.conn.flush().await.map_err(|_| None)
            }
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    if self.buf.is_empty() {
                        match within(idle, self.client.read(&mut self.scratch)).await {
                            Some(Ok(n)) if n > 0 => self
                                .buf
                                .extend_from_slice(&self.scratch[..n.min(READ_CHUNK)]),
                            _ => return Err(None),
                        }
                    }
                    let progress = decoder.feed(&self.buf).map_err(|r| {
                        Some(Refusal {
                            status: r.status,
                            reason: r.reason,
                        })
                    })?;
                    let used = progress.consumed.min(self.buf.len());
                    t.conn
                        .write_all(&self.buf[..used])
                        .await
                        .map_err(|_| None)?;
                    up(&self.ctx, self.service, used);
                    self.buf.drain(..used);
                    if progress.done {
                        return t.conn.flush().await.map_err(|_| None);
                    }
                }
            }
        }
    }

    /// Read the final response head from target `index`, passing interim 1xx
    /// responses (other than 101) to the client.
    async fn read_response_head(
        &mut self,
        index: usize,
        method: Method,
        idle: std::time::Duration,
    ) -> Result<ResponseHead, Refusal> {
        let limits = Limits::default();
        let deadline = Instant::now() + idle;
        let Some(t) = self.targets.get_mut(index) else {
            return Err(Refusal {
                status: 502,
                reason: "target lost",
            });
        };
        loop {
            if !t.buf.is_empty() {
                match parse_response(&t.buf, method, &limits) {
                    Sniff::Done(resp)
                        if (100..200).contains(&resp.status) && resp.status != 101 =>
                    {
                        let n = resp.head_len.min(t.buf.len());
                        let _ = self.client.write_all(&t.buf[..n]).await;
                        let _ = self.client.flush().await;
                        t.buf.drain(..n);
                        continue;
                    }
                    Sniff::Done(resp) => return Ok(resp),
                    Sniff::Reject(_) => {
                        return Err(Refusal {
                            status: 502,
                            reason: "target sent a malformed response",
                        })
                    }
                    Sniff::Incomplete => {}
                }
            }
            let start = t.buf.len();
            t.buf.resize(start + HEAD_READ, 0);
            let read = until(deadline, t.conn.read(&mut t.buf[start..])).await;
            let got = match &read {
                Some(Ok(n)) => *n,
                _ => 0,
            };
            t.buf.truncate(start + got.min(HEAD_READ));
            match read {
                Some(Ok(n)) if n > 0 => {}
                Some(_) => {
                    let reason = if start == 0 {
                        CLOSED_EARLY
                    } else {
                        "target closed mid-response"
                    };
                    return Err(Refusal {
                        status: 502,
                        reason,
                    });
                }
                None => {
                    return Err(Refusal {
                        status: 504,
                        reason: "target did not answer in time",
                    });
                }
            }
        }
    }

    /// Pass the 101 head and any bytes already read past it both ways.
    async fn flush_upgrade(&mut self, index: usize, resp: &ResponseHead) -> std::io::Result<()> {
        let Some(t) = self.targets.get_mut(index) else {
            return Err(std::io::ErrorKind::NotFound.into());
        };
        self.client.write_all(&t.buf).await?;
        let _ = resp;
        t.buf.clear();
        self.client.flush().await?;
        if !self.buf.is_empty() {
            t.conn.write_all(&self.buf).await?;
            t.conn.flush().await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Forward the final response head and its body to the client. The head goes
    /// out together with the part of the body already read (one write for a small
    /// response).
    async fn forward_response(
        &mut self,
        index: usize,
        resp: &ResponseHead,
        idle: std::time::Duration,
    ) -> Result<(), ()> {
        if resp.framing != BodyFraming::None {
            self.scratch.resize(READ_CHUNK, 0);
        }
        let (ctx, service) = (&self.ctx, self.service);
        let Some(t) = self.targets.get_mut(index) else {
            return Err(());
        };
        let head_len = resp.head_len.min(t.buf.len());
        match resp.framing {
            BodyFraming::None => {
                self.client
                    .write_all(&t.buf[..head_len])
                    .await
                    .map_err(|_| ())?;
                down(ctx, service, head_len);
                t.buf.drain(..head_len);
            }
            BodyFraming::Length(mut left) => {
                let take = (left.min((t.buf.len() - head_len) as u64)) as usize;
                self.client
                    .write_all(&t.buf[..head_len + take])
                    .await
                    .map_err(|_| ())?;
                down(ctx, service, head_len + take);
                t.buf.drain(..head_len + take);
                left -= take as u64;
                while left > 0 {
                    let want = (left.min(READ_CHUNK as u64)) as usize;
                    let n = match within(idle, t.conn.read(&mut self.scratch[..want])).await {
                        Some(Ok(n)) if n > 0 => n,
                        _ => return Err(()),
                    };
                    self.client
                        .write_all(&self.scratch[..n])
                        .await
                        .map_err(|_| ())?;
                    down(ctx, service, n);
                    left -= n as u64;
                }
            }
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                let mut pending_head = head_len;
                loop {
                    if t.buf.len() == pending_head {
                        match within(idle, t.conn.read(&mut self.scratch)).await {
                            Some(Ok(n)) if n > 0 => {
                                t.buf.extend_from_slice(&self.scratch[..n.min(READ_CHUNK)])
                            }
                            _ => return Err(()),
                        }
                    }
                    let progress = decoder.feed(&t.buf[pending_head..]).map_err(|_| ())?;
                    let used = pending_head + progress.consumed.min(t.buf.len() - pending_head);
                    self.client
                        .write_all(&t.buf[..used])
                        .await
                        .map_err(|_| ())?;
                    down(ctx, service, used);
                    t.buf.drain(..used);
                    pending_head = 0;
                    if progress.done {
                        break;
                    }
                }
            }
            BodyFraming::UntilClose => {
                self.client.write_all(&t.buf).await.map_err(|_| ())?;
                down(ctx, service, t.buf.len());
                t.buf.clear();
                loop {
                    match within(idle, t.conn.read(&mut self.scratch)).await {
                        Some(Ok(0)) => break,
                        Some(Ok(n)) => {
                            self.client
                                .write_all(&self.scratch[..n])
                                .await
                                .map_err(|_| ())?;
                            down(ctx, service, n);
                        }
                        _ => return Err(()),
                    }
                }
            }
        }
        self.client.flush().await.map_err(|_| ())
    }
}
