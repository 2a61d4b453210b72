//! The `tunnel` scenario: bulk throughput through a relayed connection.
//!
//! Each of N connections connects, optionally asks for an HTTP Upgrade (`--upgrade`:
//! `GET PATH` with `Connection: Upgrade`, `Upgrade: websocket`; the relay starts
//! after the `101`), then writes `--chunk`-byte blocks as fast as the path takes them
//! while a second task reads the echo back. Against an echo target, bytes sent are
//! the client→target direction and bytes received the target→client direction; both
//! are reported as MB/s (10^6 bytes per second) over the measured window.
//!
//! Bounded: the writers stop at the end of the run, then the readers get
//! `--timeout` (at most 5 s) to drain what is in flight; only bytes received before
//! the end of the run count toward the downstream rate.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use serde::Serialize;

use crate::http::MAX_DURATION;
use crate::response;
use crate::runtime::{self, sleep_until, Executors};
use crate::stats::{Latency, Stats};

/// A run, as given on the command line.
#[derive(Debug, Clone)]
pub struct TunnelLoad {
    pub connect: SocketAddr,
    /// `Some((host, path))`: send an HTTP Upgrade request first.
    pub upgrade: Option<(String, String)>,
    pub connections: usize,
    pub chunk: usize,
    pub duration: Duration,
    pub timeout: Duration,
    pub executors: Executors,
}

/// What one executor measured.
#[derive(Debug, Clone, Default)]
struct Counts {
    sent: u64,
    received: u64,
    received_in_window: u64,
    setup: Option<Stats>,
}

/// The report of a tunnel run.
#[derive(Debug, Clone, Serialize)]
pub struct TunnelReport {
    pub scenario: &'static str,
    pub mode: &'static str,
    pub target: String,
    pub connections: usize,
    pub threads: usize,
    pub chunk: usize,
    pub elapsed_s: f64,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    /// Client → target, 10^6 bytes/s.
    pub up_mb_s: f64,
    /// Target → client (the echo), 10^6 bytes/s.
    pub down_mb_s: f64,
    /// Connect (and Upgrade) time, µs.
    pub setup_latency_us: Latency,
    pub error_total: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
}

impl TunnelReport {
    pub fn to_table(&self) -> String {
        let l = &self.setup_latency_us;
        let mut s = format!(
            "tunnel {} -> {}: {} connections on {} thread(s), {} B writes\n",
            self.mode, self.target, self.connections, self.threads, self.chunk
        );
        s += &format!("  elapsed      {:>12.3} s\n", self.elapsed_s);
        s += &format!(
            "  up           {:>12.1} MB/s  ({} bytes sent)\n",
            self.up_mb_s, self.sent_bytes
        );
        s += &format!(
            "  down         {:>12.1} MB/s  ({} bytes echoed)\n",
            self.down_mb_s, self.received_bytes
        );
        s += &format!(
            "  setup µs     p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}\n",
            l.p50, l.p90, l.p99, l.max
        );
        s += &format!("  errors       {:>12}\n", self.error_total);
        for (kind, n) in &self.errors {
            s += &format!("    {kind:<20} {n:>8}\n");
        }
        s
    }
}

pub fn run(load: TunnelLoad) -> Result<TunnelReport> {
    if load.duration > MAX_DURATION {
        bail!("--duration is capped at {} s", MAX_DURATION.as_secs());
    }
    if load.connections == 0 || load.chunk == 0 || load.chunk > 1 << 20 {
        bail!("--connections must be at least 1 and --chunk 1..=1048576");
    }
    let threads = load.executors.threads.clamp(1, load.connections);
    let executors = Executors {
        threads,
        ..load.executors.clone()
    };
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + load.duration;
    let drain = load.timeout.min(Duration::from_secs(5));
    let l = load.clone();
    let results = runtime::run_on_executors("bench-tunnel", &executors, move |t| {
        let l = l.clone();
        async move {
            sleep_until(start).await;
            let counts = Rc::new(CountsCell::default());
            let tasks: Vec<_> = (t..l.connections)
                .step_by(threads)
                .map(|_| glommio::spawn_local(connection(l.clone(), end, drain, counts.clone())))
                .collect();
            for task in tasks {
                task.await;
            }
            counts.take()
        }
    })?;
    let mut total = Counts::default();
    let mut setup = Stats::new();
    for c in &results {
        total.sent += c.sent;
        total.received += c.received;
        total.received_in_window += c.received_in_window;
        if let Some(s) = &c.setup {
            setup.merge(s);
        }
    }
    let secs = load.duration.as_secs_f64();
    Ok(TunnelReport {
        scenario: "tunnel",
        mode: if load.upgrade.is_some() {
            "upgrade"
        } else {
            "plain"
        },
        target: match &load.upgrade {
            Some((host, path)) => format!("http://{host}{path} via {}", load.connect),
            None => load.connect.to_string(),
        },
        connections: load.connections,
        threads,
        chunk: load.chunk,
        elapsed_s: secs,
        sent_bytes: total.sent,
        received_bytes: total.received,
        up_mb_s: total.sent as f64 / secs / 1e6,
        down_mb_s: total.received_in_window as f64 / secs / 1e6,
        setup_latency_us: setup.latency_us(),
        error_total: setup.error_total(),
        errors: setup.errors.clone(),
    })
}

/// Counters shared by the tasks of one executor.
#[derive(Default)]
struct CountsCell {
    sent: Cell<u64>,
    received: Cell<u64>,
    received_in_window: Cell<u64>,
    setup: std::cell::RefCell<Stats>,
}

impl CountsCell {
    fn take(&self) -> Counts {
        Counts {
            sent: self.sent.get(),
            received: self.received.get(),
            received_in_window: self.received_in_window.get(),
            setup: Some(self.setup.borrow().clone()),
        }
    }
}

fn kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::ConnectionRefused => "connect refused",
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "reset",
        _ => "io",
    }
}

/// The Upgrade request.
fn upgrade_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portico-bench\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Connect and, with `--upgrade`, get the 101. Returns the stream and bytes read past
/// the 101 head (already echoed data, if any).
async fn setup(load: &TunnelLoad) -> Result<(TcpStream, usize), &'static str> {
    let mut stream = TcpStream::connect_timeout(load.connect, load.timeout)
        .await
        .map_err(|e| kind(&io::Error::from(e)))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(load.timeout))
        .and_then(|()| stream.set_write_timeout(Some(load.timeout)))
        .map_err(|_| "connect")?;
    let Some((host, path)) = &load.upgrade else {
        return Ok((stream, 0));
    };
    stream
        .write_all(&upgrade_request(host, path))
        .await
        .map_err(|e| kind(&e))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0;
    loop {
        let n = stream
            .read(buf.get_mut(have..).unwrap_or_default())
            .await
            .map_err(|e| kind(&e))?;
        if n == 0 {
            return Err("closed before 101");
        }
        have += n;
        match response::parse_head(buf.get(..have).unwrap_or_default(), false) {
            Ok(Some(h)) if h.status == 101 => return Ok((stream, have - h.len)),
            Ok(Some(h)) if h.status < 200 => return Err("interim response"),
            Ok(Some(_)) => return Err("no 101"),
            Ok(None) if have == buf.len() => return Err("response head too large"),
            Ok(None) => {}
            Err(m) => return Err(m.kind()),
        }
    }
}

async fn connection(load: TunnelLoad, end: Instant, drain: Duration, counts: Rc<CountsCell>) {
    let started = Instant::now();
    let (stream, early) = match setup(&load).await {
        Ok(s) => s,
        Err(k) => {
            counts.setup.borrow_mut().record_error(k);
            return;
        }
    };
    counts.setup.borrow_mut().record_ok(started.elapsed());
    counts.received.set(counts.received.get() + early as u64);
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let chunk = vec![0x5au8; load.chunk];
    let writer_counts = counts.clone();
    let writer = glommio::spawn_local(async move {
        while Instant::now() < end {
            match wr.write(&chunk).await {
                Ok(0) => return Some("closed"),
                Ok(n) => writer_counts.sent.set(writer_counts.sent.get() + n as u64),
                Err(e) => return Some(kind(&e)),
            }
        }
        let _ = wr.close().await;
        None
    });
    let hard_stop = end + drain;
    let mut buf = vec![0u8; 256 * 1024];
    let mut failure = None;
    loop {
        let now = Instant::now();
        if now > hard_stop {
            break;
        }
        match rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                counts.received.set(counts.received.get() + n as u64);
                if Instant::now() <= end {
                    counts
                        .received_in_window
                        .set(counts.received_in_window.get() + n as u64);
                }
            }
            Err(e) => {
                if Instant::now() < end {
                    failure = Some(kind(&e));
                }
                break;
            }
        }
    }
    if let Some(k) = writer.await.or(failure) {
        counts.setup.borrow_mut().record_error(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_request_is_a_complete_head() {
        let r = upgrade_request("h", "/ws");
        assert!(r.starts_with(b"GET /ws HTTP/1.1\r\nHost: h\r\n"));
        assert!(r.ends_with(b"\r\n\r\n"));
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(&r).unwrap().is_complete());
    }
}
