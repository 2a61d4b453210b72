//! A shard: one glommio executor pinned to one core, with every listener of the
//! config bound on it (SO_REUSEPORT lets the kernel spread connections). A connection
//! lives and dies on the shard that accepted it. Shards share nothing mutable: they
//! read the control thread's snapshots and hand events back over a channel.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use glommio::net::{TcpListener, TcpStream};
use portico_control::event::{Event, EventSender};
use portico_control::log::{LogRecord, Outcome};
use portico_control::snapshot::Shared;

use crate::conn::Conn;
use crate::listener::{Endpoint, Service};
use crate::tls::TargetTls;

/// What every shard is given at start.
pub struct ShardInit {
    pub index: usize,
    pub shards: usize,
    pub shared: Arc<Shared>,
    pub events: EventSender,
    pub server_tls: Arc<rustls::ServerConfig>,
    pub target_tls: Arc<TargetTls>,
    pub listeners: Vec<(Endpoint, RawFd)>,
}

/// Per-shard state shared by the shard's connections (single-threaded: `Rc`, `Cell`).
pub struct ShardCtx {
    pub index: usize,
    pub shards: usize,
    pub shared: Arc<Shared>,
    pub events: EventSender,
    pub server_tls: Arc<rustls::ServerConfig>,
    pub target_tls: Arc<TargetTls>,
    next_conn: Cell<u64>,
    /// Events dropped because the control thread's queue was full.
    pub dropped_events: Cell<u64>,
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
            self.dropped_events.set(self.dropped_events.get() + 1);
        }
    }

    /// A refused request or connection: count it against the source and log it when
    /// `log_rejected` is on.
    pub fn reject(&self, d: &Decision<'_>, reason: &str) {
        self.send(Event::Reject { source: d.source });
        if self.shared.rules().config.proxy.log_rejected {
            self.send(Event::Log(Box::new(d.record(Outcome::Rejected {
                reason: reason.to_string(),
            }))));
        }
    }

    /// A forwarded request: log it when `log_forwarded` is on.
    pub fn forwarded(&self, d: &Decision<'_>, target: SocketAddr, new_connection: bool) {
        if self.shared.rules().config.proxy.log_forwarded {
            self.send(Event::Log(Box::new(d.record(Outcome::Forwarded {
                target,
                new_connection,
            }))));
        }
    }

    pub fn notice(&self, msg: String) {
        self.send(Event::Notice(msg));
    }
}

/// Who asked for what: the fields of a log line besides its outcome.
pub struct Decision<'a> {
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

/// Run one shard until its listeners fail.
pub async fn run(init: ShardInit) {
    let ctx = Rc::new(ShardCtx {
        index: init.index,
        shards: init.shards,
        shared: init.shared,
        events: init.events,
        server_tls: init.server_tls,
        target_tls: init.target_tls,
        next_conn: Cell::new(0),
        dropped_events: Cell::new(0),
    });
    let mut tasks = Vec::new();
    for (ep, fd) in init.listeners {
        // SAFETY: `fd` is a listening socket made for this shard by
        // `listener::bind_reuseport` and handed over to us alone.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        tasks.push(glommio::spawn_local(accept_loop(ctx.clone(), ep, listener)));
    }
    for t in tasks {
        t.await;
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
        // Blacklisted sources are closed here, before any TLS work.
        if ctx.shared.blacklist().contains(source, Instant::now()) {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            serve(ctx, ep, stream, SocketAddr::new(source, peer.port())).await
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

async fn serve(ctx: Rc<ShardCtx>, ep: Endpoint, stream: TcpStream, peer: SocketAddr) {
    let conn_id = ctx.next_conn_id();
    match ep.service {
        Service::Http => crate::http::serve(ctx, conn_id, Conn::Plain(stream), peer, "http").await,
        Service::Https => {
            let timeout = ctx.shared.rules().config.proxy.header_timeout;
            let decision = Decision {
                conn_id,
                source: peer.ip(),
                scheme: "https",
                host: "",
                summary: "",
            };
            let acceptor = futures_rustls::TlsAcceptor::from(ctx.server_tls.clone());
            let accepted = crate::time::within(timeout, acceptor.accept(stream)).await;
            match accepted {
                Some(Ok(tls)) => {
                    crate::http::serve(ctx, conn_id, Conn::TlsServer(Box::new(tls)), peer, "https")
                        .await
                }
                Some(Err(e)) => ctx.reject(&decision, &format!("TLS handshake failed: {e}")),
                None => ctx.reject(&decision, "TLS handshake timed out"),
            }
        }
        // Served by later issues; `main` does not bind them yet.
        _ => {}
    }
}
