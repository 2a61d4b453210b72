//! The `idle` scenario: the server's resident memory per idle connection.
//!
//! Reads `VmRSS` of `--pid` (the proxy) from `/proc/PID/status`, opens N connections
//! through it (`--concurrency` connects at a time), sends one keep-alive request on
//! each and reads the 200 (so the proxy has routed it, opened its target leg and holds
//! whatever state a kept-alive connection costs), waits `--settle` seconds, reads
//! `VmRSS` again and reports (after − before) / N. Then closes everything.
//!
//! With `--upgrade` the request is an HTTP Upgrade (`Upgrade: websocket`, to a
//! `target upgrade`) and the answer must be 101: each connection is then an idle
//! relayed tunnel (spliced when both legs are plain TCP).
//!
//! What it measures: user-space memory (heap, buffers, rustls state) as the kernel
//! counts resident pages, so the figure is page-granular and includes allocator
//! slack; kernel socket memory is not in RSS. Run it on a freshly started proxy: a
//! warm allocator may reuse memory freed earlier and show less.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::http::{self, Conn, Plan, TlsClient};
use crate::runtime::{self, Executors};

#[derive(Debug, Clone)]
pub struct IdleLoad {
    pub url: String,
    pub connect: Option<SocketAddr>,
    pub host_header: Option<String>,
    pub pid: u32,
    pub connections: usize,
    pub concurrency: usize,
    /// Ask for an HTTP Upgrade and hold the tunnels (101) instead of keep-alives.
    pub upgrade: bool,
    pub settle: Duration,
    pub timeout: Duration,
    pub executors: Executors,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub scenario: &'static str,
    pub target: String,
    pub pid: u32,
    pub connections_requested: usize,
    pub connections_open: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// (after − before) / open connections, bytes.
    pub rss_per_connection_bytes: f64,
    /// Open connections and VmRSS when half of them were opened (after a settle).
    pub connections_at_mid: usize,
    pub rss_mid_kib: Option<u64>,
    /// VmRSS growth per connection over the second half alone (see [`marginal`]).
    pub rss_marginal_per_connection_bytes: Option<f64>,
    pub error_total: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
}

impl IdleReport {
    pub fn to_table(&self) -> String {
        let mut s = format!(
            "idle -> {} (pid {}): {} of {} connections open and idle\n",
            self.target, self.pid, self.connections_open, self.connections_requested
        );
        s += &format!("  VmRSS before {:>12} KiB\n", self.rss_before_kib);
        s += &format!("  VmRSS after  {:>12} KiB\n", self.rss_after_kib);
        s += &format!(
            "  per conn     {:>12.0} bytes\n",
            self.rss_per_connection_bytes
        );
        if let Some(m) = self.rss_marginal_per_connection_bytes {
            s += &format!("  2nd half     {m:>12.0} bytes per conn\n");
        }
        s += &format!("  errors       {:>12}\n", self.error_total);
        for (kind, n) in &self.errors {
            s += &format!("    {kind:<20} {n:>8}\n");
        }
        s
    }
}

/// VmRSS growth per item over the second half of a run, bytes: from `mid_kib` with
/// `mid_n` items open to `after_kib` with `n`. What one more connection or allocation
/// costs, without what the first ones paid once for the whole process (allocator
/// pages and tables sized on first use, buffers touched once). `None` without a
/// second half.
pub fn marginal(mid_kib: u64, mid_n: usize, after_kib: u64, n: usize) -> Option<f64> {
    (n > mid_n).then(|| (after_kib as f64 - mid_kib as f64) * 1024.0 / (n - mid_n) as f64)
}

/// `VmRSS` of a process, KiB.
pub fn vm_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

pub fn run(load: IdleLoad) -> Result<IdleReport> {
    if load.connections == 0 || load.connections > 100_000 {
        bail!("--connections must be 1..=100000");
    }
    let url = http::parse_url(&load.url)?;
    let addr = match load.connect {
        Some(a) => a,
        None => format!("{}:{}", url.host, url.port)
            .parse()
            .context("give --connect ADDR when the URL's host is a name")?,
    };
    let host = load
        .host_header
        .clone()
        .unwrap_or_else(|| url.authority.clone());
    let tls: Option<TlsClient> = http::tls_for(&url, &host)?;
    let upgrade = if load.upgrade {
        "Connection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    let request: Arc<[u8]> = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portico-bench\r\n{upgrade}\r\n",
        url.path
    )
    .into_bytes()
    .into();
    let want = if load.upgrade { 101..=101 } else { 200..=299 };
    let before = vm_rss_kib(load.pid)?;
    let l = load.clone();
    let executors = Executors {
        threads: 1,
        ..load.executors.clone()
    };
    let mut results = runtime::run_on_executors("bench-idle", &executors, move |_| {
        let (l, tls, request, want) = (l.clone(), tls.clone(), request.clone(), want.clone());
        async move {
            // Generous: opening thousands of connections takes a while.
            let hard_stop = Instant::now() + Duration::from_secs(300);
            let plan = Rc::new(Plan::single(addr, tls, request, l.timeout, hard_stop));
            let mut open: Vec<Conn> = Vec::with_capacity(l.connections);
            let mut errors = std::collections::BTreeMap::<String, u64>::new();
            // Two halves, VmRSS read after each (for the marginal cost).
            let first_half = l.connections / 2;
            let mut mid = None;
            for (half, count) in [first_half, l.connections - first_half]
                .into_iter()
                .enumerate()
            {
                let mut remaining = count;
                while remaining > 0 {
                    let batch = remaining.min(l.concurrency.max(1));
                    remaining -= batch;
                    let tasks: Vec<_> = (0..batch)
                        .map(|_| {
                            let (plan, want) = (plan.clone(), want.clone());
                            glommio::spawn_local(async move {
                                let mut c = Conn::open(&plan).await?;
                                match c.exchange(&plan).await? {
                                    (101, _) if want.contains(&101) => Ok(c),
                                    (s, false) if want.contains(&s) => Ok(c),
                                    (s, true) if want.contains(&s) => Err("server closed"),
                                    _ if want.contains(&101) => Err("status not 101"),
                                    _ => Err("status not 2xx"),
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        match t.await {
                            Ok(c) => open.push(c),
                            Err(k) => *errors.entry(k.to_string()).or_insert(0) += 1,
                        }
                    }
                }
                if half == 0 && count > 0 {
                    glommio::timer::sleep(l.settle).await;
                    mid = vm_rss_kib(l.pid).ok().map(|kib| (open.len(), kib));
                }
            }
            glommio::timer::sleep(l.settle).await;
            let after = vm_rss_kib(l.pid);
            let n = open.len();
            drop(open);
            (n, after.map_err(|e| e.to_string()), errors, mid)
        }
    })?;
    let (n, after, errors, mid) = results.pop().context("no executor result")?;
    let after = after.map_err(anyhow::Error::msg)?;
    Ok(IdleReport {
        scenario: "idle",
        target: format!(
            "{}://{host}{} via {addr}{}",
            if url.tls { "https" } else { "http" },
            url.path,
            if load.upgrade {
                " (upgraded tunnels)"
            } else {
                ""
            }
        ),
        pid: load.pid,
        connections_requested: load.connections,
        connections_open: n,
        rss_before_kib: before,
        rss_after_kib: after,
        rss_per_connection_bytes: if n > 0 {
            (after as f64 - before as f64) * 1024.0 / n as f64
        } else {
            0.0
        },
        connections_at_mid: mid.map_or(0, |(m, _)| m),
        rss_mid_kib: mid.map(|(_, kib)| kib),
        rss_marginal_per_connection_bytes: mid.and_then(|(m, kib)| marginal(kib, m, after, n)),
        error_total: errors.values().sum(),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marginal_cost_is_the_second_half_slope() {
        // 1000 more connections for 1500 KiB more: 1536 bytes each.
        assert_eq!(marginal(10_000, 1000, 11_500, 2000), Some(1536.0));
        // Shrinking is reported as it is (negative), nothing opened after the middle
        // has no slope.
        assert_eq!(marginal(10_000, 10, 9_999, 11), Some(-1024.0));
        assert_eq!(marginal(10_000, 10, 12_000, 10), None);
    }

    #[test]
    fn vm_rss_is_read() {
        let s = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    5120 kB\nRssAnon:\t1 kB\n";
        assert_eq!(parse_vm_rss(s), Some(5120));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(vm_rss_kib(std::process::id()).unwrap() > 0);
    }
}
