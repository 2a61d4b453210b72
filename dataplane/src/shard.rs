//! A shard: one glommio executor pinned to one core, with every listener of the
//! config bound on it (SO_REUSEPORT lets the kernel spread connections). A connection
//! lives and dies on the shard that accepted it. Shards share nothing mutable: they
//! read the control plane's snapshots and hand events back over a channel.
//!
//! The supervisor (`runtime`) steers a shard with [`ShardCommand`]s: listeners opened
//! or closed by a reload, and the drain on stop. Closing a listener cancels only its
//! accept loop; established connections and tunnels are tasks of their own and keep
//! running with the routing they were given.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use glommio::net::{TcpListener, TcpStream};
use glommio::Task;
use portico_control::event::{Event, EventSender};
use portico_control::log::{LogRecord, Outcome};
use portico_control::metrics::{Direction, Hist, RejectKind, ShardMetrics};
use portico_control::snapshot::Shared;

use crate::conn::Conn;
use crate::listener::{Endpoint, Service};
use crate::pool::IdlePool;
use crate::tls::TlsSet;

/// What the supervisor asks of a shard.
pub enum ShardCommand {
    /// Start accepting on these sockets (made for this shard).
    Listen(Vec<(Endpoint, RawFd)>),
    /// Stop accepting on these endpoints; their connections go on.
    Unlisten(Vec<Endpoint>),
    /// Stop accepting, let connections finish for up to `grace`, then end the shard.
    Drain { grace: Duration },
}

/// How often a shard hands its metrics to the control thread.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// How often a shard looks for commands. Commands are rare (reload, stop); a short
/// timer keeps the shard free of cross-thread wakeups on the hot path.
const COMMAND_POLL: Duration = Duration::from_millis(50);

/// What every shard is given at start.
pub struct ShardInit {
    pub index: usize,
    pub shards: usize,
    pub shared: Arc<Shared>,
    pub events: EventSender,
    pub tls: Arc<ArcSwap<TlsSet>>,
    pub commands: crossbeam_channel::Receiver<ShardCommand>,
    /// The STUN/TURN server of this shard: its config, the nonce secret, and the
    /// listening sockets made for this shard.
    pub turn: Option<TurnInit>,
}

/// What a shard needs to run its STUN/TURN server.
pub struct TurnInit {
    pub config: portico_proto::turn::TurnConfig,
    pub secret: [u8; 32],
    /// Allocation counts shared by every shard (process-wide quotas).
    pub ledger: std::sync::Arc<portico_proto::turn::QuotaLedger>,
    pub sockets: Vec<(crate::turn::TurnEndpoint, RawFd)>,
}

/// Per-shard state shared by the shard's connections (single-threaded: `Rc`, `Cell`).
pub struct ShardCtx {
    pub index: usize,
    pub shards: usize,
    pub shared: Arc<Shared>,
    pub events: EventSender,
    /// TLS configurations of the current generation; loaded per handshake.
    pub tls: Arc<ArcSwap<TlsSet>>,
    next_conn: Cell<u64>,
    /// This shard's counters and histograms, sent to the control thread every
    /// second (cumulative, so a dropped event loses nothing).
    pub metrics: RefCell<ShardMetrics>,
    /// Client connections open on this shard.
    active: Cell<usize>,
    draining: Cell<bool>,
    drain: event_listener::Event,
    /// Idle HTTP target connections, for the next request of any client on this shard.
    pub target_pool: RefCell<IdlePool<crate::http::PoolKey, Conn>>,
}

impl ShardCtx {
    /// A connection id unique across shards, small and increasing like the seed's.
    pub fn next_conn_id(&self) -> u64 {
        let n = self.next_conn.get();
        self.next_conn.set(n + 1);
        n * self.shards as u64 + self.index as u64 + 1
    }

    fn send(&self, event: Event) {
        if !self.events.send(event) {
            self.metrics.borrow_mut().event_dropped();
        }
    }

    /// A refused request or connection: count it against the source and log it when
    /// `log_rejected` is on.
    pub fn reject(&self, d: &Decision<'_>, kind: RejectKind, reason: &str) {
        self.metrics.borrow_mut().rejected(d.service, kind);
        self.send(Event::Reject { source: d.source });
        if self.shared.peek_rules().config.proxy.log_rejected {
            self.send(Event::Log(Box::new(d.record(Outcome::Rejected {
                reason: reason.to_string(),
            }))));
        }
    }

    /// A forwarded request (to `host`, the rule's configured name): count it, and log
    /// it when `log_forwarded` is on.
    pub fn forwarded(
        &self,
        d: &Decision<'_>,
        host: &str,
        target: SocketAddr,
        new_connection: bool,
    ) {
        self.metrics.borrow_mut().forwarded(d.service, host, target);
        if self.shared.peek_rules().config.proxy.log_forwarded {
            self.send(Event::Log(Box::new(d.record(Outcome::Forwarded {
                target,
                new_connection,
            }))));
        }
    }

    pub fn notice(&self, msg: String) {
        self.send(Event::Notice(msg));
    }

    /// A relayed connection ended: the open-tunnel gauge goes down and the bytes it
    /// moved are counted.
    pub fn tunnel_closed(&self, service: Service, moved: std::io::Result<crate::relay::Moved>) {
        let mut m = self.metrics.borrow_mut();
        m.tunnel_close(service);
        if let Ok(moved) = moved {
            m.bytes(service, Direction::ClientToTarget, moved.a_to_b);
            m.bytes(service, Direction::TargetToClient, moved.b_to_a);
        }
    }

    /// Once a second: close pooled target connections idle too long, and follow the
    /// pool's limits through reloads.
    fn purge_pool(&self) {
        let proxy = &self.shared.peek_rules().config.proxy;
        let mut pool = self.target_pool.borrow_mut();
        pool.set_limits(proxy.pool_max_idle, proxy.pool_idle_timeout);
        pool.purge(Instant::now());
    }

    fn report_metrics(&self) {
        let snapshot = Box::new(self.metrics.borrow().clone());
        self.send(Event::Metrics {
            shard: self.index,
            metrics: snapshot,
        });
    }

    /// Whether the shard is draining: finish the current exchange, accept no more.
    pub fn draining(&self) -> bool {
        self.draining.get()
    }

    /// Resolves when the shard starts draining (for connections idle between
    /// requests, which should close at once then).
    pub async fn drain_started(&self) {
        loop {
            if self.draining.get() {
                return;
            }
            let listener = self.drain.listen();
            if self.draining.get() {
                return;
            }
            listener.await;
        }
    }
}

/// Counts a client connection as active while it lives.
struct ActiveGuard(Rc<ShardCtx>, Service);

impl ActiveGuard {
    fn new(ctx: Rc<ShardCtx>, service: Service) -> ActiveGuard {
        ctx.active.set(ctx.active.get() + 1);
        ctx.metrics.borrow_mut().conn_open(service);
        ActiveGuard(ctx, service)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
        self.0.metrics.borrow_mut().conn_close(self.1);
    }
}

/// Relay `a` (the client) and `b` (the target) both ways in a task of their own,
/// counted as an active connection and an open tunnel of `service`. The caller's task
/// ends right after: a tunnel (which may live for hours, e.g. a registered phone)
/// then holds only its two sockets and the relay's state, not the session that
/// routed it (its buffers, its future).
pub fn spawn_tunnel(ctx: Rc<ShardCtx>, service: Service, a: Conn, b: Conn, idle: Duration) {
    let guard = ActiveGuard::new(ctx, service);
    guard.0.metrics.borrow_mut().tunnel_open(service);
    // One task type per relay, each as large as its own state only.
    match crate::relay::spliceable(&a, &b) {
        Some((fa, fb)) => {
            drop((a, b));
            spawn_relay(guard, crate::relay::splice_tunnel(fa, fb, idle))
        }
        None => spawn_relay(guard, crate::relay::copy_tunnel(a, b, idle)),
    }
}

fn spawn_relay(
    guard: ActiveGuard,
    relay: impl std::future::Future<Output = std::io::Result<crate::relay::Moved>> + 'static,
) {
    let service = guard.1;
    glommio::spawn_local(async move {
        let moved = relay.await;
        guard.0.tunnel_closed(service, moved);
        drop(guard);
    })
    .detach();
}

/// Who asked for what: the fields of a log line besides its outcome.
pub struct Decision<'a> {
    pub service: Service,
    pub conn_id: u64,
    pub source: IpAddr,
    pub scheme: &'static str,
    pub host: &'a str,
    pub summary: &'a str,
}

impl Decision<'_> {
    fn record(&self, outcome: Outcome) -> LogRecord {
        LogRecord {
            time: SystemTime::now(),
            conn_id: self.conn_id,
            source: self.source,
            scheme: self.scheme,
            host: self.host.to_string(),
            summary: self.summary.to_string(),
            outcome,
        }
    }
}

/// Run one shard until it has drained.
pub async fn run(init: ShardInit) {
    let pool = {
        let proxy = &init.shared.peek_rules().config.proxy;
        IdlePool::new(proxy.pool_max_idle, proxy.pool_idle_timeout)
    };
    let ctx = Rc::new(ShardCtx {
        index: init.index,
        shards: init.shards,
        shared: init.shared,
        events: init.events,
        tls: init.tls,
        next_conn: Cell::new(0),
        metrics: RefCell::new(ShardMetrics::new()),
        active: Cell::new(0),
        draining: Cell::new(false),
        drain: event_listener::Event::new(),
        target_pool: RefCell::new(pool),
    });
    let listeners: RefCell<HashMap<Endpoint, Task<()>>> = RefCell::new(HashMap::new());
    let mut turn = init.turn.map(|turn| {
        let shard = crate::turn::TurnShard::new(
            ctx.clone(),
            turn.config,
            turn.secret,
            turn.ledger,
            ctx.index,
        );
        let tasks = shard.start(turn.sockets);
        (shard, tasks)
    });
    let reporter = {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(METRICS_EVERY).await;
                ctx.purge_pool();
                ctx.report_metrics();
            }
        })
    };
    loop {
        let command = match init.commands.try_recv() {
            Ok(c) => c,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                glommio::timer::sleep(COMMAND_POLL).await;
                continue;
            }
            // The supervisor is gone: nothing will ever steer us again; stop.
            Err(crossbeam_channel::TryRecvError::Disconnected) => ShardCommand::Drain {
                grace: Duration::ZERO,
            },
        };
        match command {
            ShardCommand::Listen(list) => {
                for (ep, fd) in list {
                    // SAFETY: `fd` is a listening socket made for this shard by
                    // `listener::bind_reuseport` and handed over to us alone.
                    let listener = unsafe { TcpListener::from_raw_fd(fd) };
                    let task = glommio::spawn_local(accept_loop(ctx.clone(), ep, listener));
                    // A listener replaced under the same endpoint: the old task is
                    // dropped, which cancels it and closes its socket.
                    listeners.borrow_mut().insert(ep, task);
                }
            }
            ShardCommand::Unlisten(list) => {
                for ep in list {
                    listeners.borrow_mut().remove(&ep);
                }
            }
            ShardCommand::Drain { grace } => {
                listeners.borrow_mut().clear();
                // TURN stops at once: its allocations are soft state that clients
                // re-create, and UDP has no connection to drain.
                if let Some((shard, tasks)) = turn.take() {
                    drop(tasks);
                    shard.stop();
                }
                ctx.draining.set(true);
                ctx.drain.notify(usize::MAX);
                ctx.target_pool.borrow_mut().clear();
                let deadline = Instant::now() + grace;
                while ctx.active.get() > 0 && Instant::now() < deadline {
                    glommio::timer::sleep(COMMAND_POLL.min(deadline - Instant::now())).await;
                }
                drop(reporter);
                ctx.report_metrics();
                return;
            }
        }
    }
}

async fn accept_loop(ctx: Rc<ShardCtx>, ep: Endpoint, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                ctx.notice(format!("accept on {} {}: {e}", ep.service.name(), ep.addr));
                glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let source = canonical_ip(peer.ip());
        ctx.metrics.borrow_mut().accepted(ep.service);
        // Blacklisted sources are closed here, before any TLS work.
        if ctx.shared.blacklist().contains(source, Instant::now()) {
            ctx.metrics.borrow_mut().blacklist_hit(ep.service);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let guard = ActiveGuard::new(ctx.clone(), ep.service);
        glommio::spawn_local(async move {
            let peer = SocketAddr::new(source, peer.port());
            serve(guard.0.clone(), ep, stream, peer).await;
            drop(guard);
        })
        .detach();
    }
}

/// IPv4-mapped IPv6 sources are the IPv4 address (for the blacklist and the logs).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Each service's session is one boxed future: a connection's task then holds only a
/// pointer, and the box only the state of its own protocol (an idle HTTP keep-alive
/// does not pay for a TLS handshake's state or a TLS stream held across an await).
async fn serve(ctx: Rc<ShardCtx>, ep: Endpoint, stream: TcpStream, peer: SocketAddr) {
    let conn_id = ctx.next_conn_id();
    let service = ep.service;
    match service {
        Service::Http => {
            let client = Conn::Plain(stream);
            Box::pin(crate::http::serve(
                ctx, service, conn_id, client, peer, "http",
            ))
            .await
        }
        Service::Https => Box::pin(serve_https(ctx, conn_id, stream, peer)).await,
        Service::Sip | Service::Ldap | Service::H323 => {
            let scheme = match service {
                Service::Sip => "sip",
                Service::Ldap => "ldap",
                _ => "h323",
            };
            let client = Conn::Plain(stream);
            Box::pin(crate::routed::serve(
                ctx, service, conn_id, client, peer, scheme, None,
            ))
            .await
        }
        Service::Sips | Service::Ldaps | Service::H323Tls => {
            Box::pin(serve_routed_tls(ctx, service, conn_id, stream, peer)).await
        }
    }
}

async fn serve_https(ctx: Rc<ShardCtx>, conn_id: u64, stream: TcpStream, peer: SocketAddr) {
    let service = Service::Https;
    // The TLS stream lives in its box from here on (no binding kept across the
    // session's awaits).
    let client = match accept_tls(&ctx, service, conn_id, stream, peer, "https", false).await {
        Some(tls) => Conn::TlsServer(Box::new(tls)),
        None => return,
    };
    crate::http::serve(ctx, service, conn_id, client, peer, "https").await
}

async fn serve_routed_tls(
    ctx: Rc<ShardCtx>,
    service: Service,
    conn_id: u64,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let (scheme, client_auth) = match service {
        Service::Sips => ("sips", true),
        Service::Ldaps => ("ldaps", false),
        _ => ("h323s", true),
    };
    let (client, identity) =
        match accept_tls(&ctx, service, conn_id, stream, peer, scheme, client_auth).await {
            Some(tls) => {
                let identity = if client_auth {
                    let set = ctx.tls.load();
                    crate::tls::client_identity(tls.get_ref().1, set.client_trust.as_ref())
                } else {
                    None
                };
                (Conn::TlsServer(Box::new(tls)), identity)
            }
            None => return,
        };
    crate::routed::serve(ctx, service, conn_id, client, peer, scheme, identity).await
}

/// The TLS handshake of a client leg, within the header timeout. `None` when it
/// failed (counted and logged) or the client left without a byte (not counted).
async fn accept_tls(
    ctx: &Rc<ShardCtx>,
    service: Service,
    conn_id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    scheme: &'static str,
    client_auth: bool,
) -> Option<futures_rustls::server::TlsStream<TcpStream>> {
    let timeout = ctx.shared.peek_rules().config.proxy.header_timeout;
    let decision = Decision {
        service,
        conn_id,
        source: peer.ip(),
        scheme,
        host: "",
        summary: "",
    };
    let start = Instant::now();
    let deadline = start + timeout;
    // A connection closed without a byte (a TCP health check, a port scan that gave
    // up) is not a failed handshake: close it quietly, as the plain listeners do.
    let mut first = [0u8; 1];
    match crate::time::until(deadline, stream.peek(&mut first)).await {
        Some(Ok(n)) if n > 0 => {}
        Some(_) => return None,
        None => {
            ctx.reject(&decision, RejectKind::Timeout, "TLS handshake timed out");
            return None;
        }
    }
    let config = {
        let set = ctx.tls.load();
        if client_auth {
            set.client_auth.clone()
        } else {
            set.server.clone()
        }
    };
    let acceptor = futures_rustls::TlsAcceptor::from(config);
    let accepted = crate::time::until(deadline, acceptor.accept(stream)).await;
    let mut m = ctx.metrics.borrow_mut();
    match accepted {
        Some(Ok(tls)) => {
            m.tls_handshake(service);
            m.observe_duration(Hist::TlsHandshake, service, start.elapsed());
            Some(tls)
        }
        Some(Err(e)) => {
            m.tls_handshake_failed(service);
            drop(m);
            ctx.reject(
                &decision,
                RejectKind::TlsHandshake,
                &format!("TLS handshake failed: {e}"),
            );
            None
        }
        None => {
            m.tls_handshake_failed(service);
            drop(m);
            ctx.reject(&decision, RejectKind::Timeout, "TLS handshake timed out");
            None
        }
    }
}
