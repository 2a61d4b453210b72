//! The `sip` scenario: REGISTER transactions per second over TCP, and `target sip`.
//!
//! Load: each of N connections sends a REGISTER (From `sip:USER@DOMAIN`, the routing
//! key portico uses), reads the final response (status line, head, Content-Length
//! body) and either closes and reconnects (`--mode new-connection`: one REGISTER per
//! connection, so every transaction is a routing decision) or sends the next
//! REGISTER on the same connection (`--mode persistent`: portico routes on the first
//! message and relays the rest, so this measures the relay). One transaction in
//! flight per connection. A final response 2xx counts; others are errors by status.
//!
//! Target: answers every request on a persistent TCP connection with `200 OK`,
//! copying Via, From, To, Call-ID and CSeq; `Content-Length: 0`.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::http::MAX_DURATION;
use crate::runtime::{self, sleep_until, Executors};
use crate::stats::{Report, RunInfo, Stats};

/// How connections are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SipMode {
    /// One REGISTER per connection: connect, REGISTER, 200, close.
    NewConnection,
    /// Many REGISTERs per connection, one after the other.
    Persistent,
}

#[derive(Debug, Clone)]
pub struct SipLoad {
    pub connect: SocketAddr,
    /// The From domain (portico's routing key).
    pub domain: String,
    pub connections: usize,
    pub duration: Duration,
    pub mode: SipMode,
    pub timeout: Duration,
    pub executors: Executors,
}

/// A REGISTER with a unique branch and CSeq.
pub fn register(domain: &str, conn: usize, seq: u64) -> Vec<u8> {
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-{conn}-{seq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:user{conn}@{domain}>;tag=t{conn}\r\n\
         To: <sip:user{conn}@{domain}>\r\n\
         Call-ID: bench-{conn}@127.0.0.1\r\n\
         CSeq: {seq} REGISTER\r\n\
         Contact: <sip:user{conn}@127.0.0.1:5099;transport=tcp>\r\n\
         Expires: 3600\r\n\
         User-Agent: portico-bench\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A complete SIP message at the start of `buf`: its total length (head and body)
/// and, for a response, its status. `None`: incomplete.
pub fn message_len(buf: &[u8]) -> Result<Option<(usize, Option<u16>)>, &'static str> {
    let Some(head_end) = memfind(buf, b"\r\n\r\n") else {
        return if buf.len() > 64 * 1024 {
            Err("head too large")
        } else {
            Ok(None)
        };
    };
    let head = buf.get(..head_end).unwrap_or_default();
    let mut body = 0usize;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = line.get(..colon).unwrap_or_default().trim_ascii();
            if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
                body = std::str::from_utf8(line.get(colon + 1..).unwrap_or_default())
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or("bad Content-Length")?;
            }
        }
    }
    let status = if head.starts_with(b"SIP/2.0 ") {
        Some(
            std::str::from_utf8(head.get(8..11).unwrap_or_default())
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or("bad status line")?,
        )
    } else {
        None
    };
    let total = head_end + 4 + body;
    Ok((buf.len() >= total).then_some((total, status)))
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn kind(e: &io::Error, op: &'static str) -> &'static str {
    match e.kind() {
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::ConnectionRefused => "connect refused",
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "reset",
        _ => op,
    }
}

pub fn run(load: SipLoad) -> Result<Report> {
    if load.duration > MAX_DURATION {
        bail!("--duration is capped at {} s", MAX_DURATION.as_secs());
    }
    if load.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let threads = load.executors.threads.clamp(1, load.connections);
    let executors = Executors {
        threads,
        ..load.executors.clone()
    };
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + load.duration;
    let l = load.clone();
    let results = runtime::run_on_executors("bench-sip", &executors, move |t| {
        let l = Rc::new(l.clone());
        async move {
            sleep_until(start).await;
            let stats = Rc::new(RefCell::new(Stats::new()));
            let tasks: Vec<_> = (t..l.connections)
                .step_by(threads)
                .map(|i| glommio::spawn_local(client(l.clone(), i, end, stats.clone())))
                .collect();
            let mut last = start;
            for task in tasks {
                last = last.max(task.await);
            }
            let s = stats.borrow().clone();
            (s, last)
        }
    })?;
    let mut stats = Stats::new();
    let mut last = start;
    for (s, done) in &results {
        stats.merge(s);
        last = last.max(*done);
    }
    let info = RunInfo {
        scenario: "sip",
        mode: match load.mode {
            SipMode::NewConnection => "new-connection",
            SipMode::Persistent => "persistent",
        }
        .to_string(),
        target: format!("REGISTER From *@{} via {}", load.domain, load.connect),
        connections: load.connections,
        threads,
        target_rate: None,
    };
    Ok(Report::new(
        info,
        last.saturating_duration_since(start),
        &stats,
    ))
}

async fn open(load: &SipLoad) -> Result<TcpStream, &'static str> {
    let s = TcpStream::connect_timeout(load.connect, load.timeout)
        .await
        .map_err(|e| kind(&io::Error::from(e), "connect"))?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(load.timeout))
        .and_then(|()| s.set_write_timeout(Some(load.timeout)))
        .map_err(|_| "connect")?;
    Ok(s)
}

/// One transaction on `stream`: send, read the final response. Returns its status.
async fn transaction(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
    stats: &RefCell<Stats>,
) -> Result<u16, &'static str> {
    stream
        .write_all(request)
        .await
        .map_err(|e| kind(&e, "write"))?;
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((len, status)) = message_len(buf)? {
            buf.drain(..len);
            match status {
                Some(s) if s >= 200 => return Ok(s),
                Some(_) => continue, // provisional
                None => return Err("request from the target"),
            }
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| kind(&e, "read"))?;
        if n == 0 {
            return Err("closed");
        }
        stats.borrow_mut().bytes_read += n as u64;
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

async fn client(
    load: Rc<SipLoad>,
    index: usize,
    end: Instant,
    stats: Rc<RefCell<Stats>>,
) -> Instant {
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    let mut seq = 1u64;
    let mut last = Instant::now();
    while Instant::now() < end {
        let began = Instant::now();
        let mut stream = match conn.take() {
            Some(s) => s,
            None => match open(&load).await {
                Ok(s) => {
                    buf.clear();
                    s
                }
                Err(k) => {
                    stats.borrow_mut().record_error(k);
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let request = register(&load.domain, index, seq);
        seq += 1;
        let outcome = transaction(&mut stream, &request, &mut buf, &stats).await;
        last = Instant::now();
        match outcome {
            Ok(s) if (200..300).contains(&s) => {
                stats.borrow_mut().record_ok(last - began);
                if load.mode == SipMode::Persistent {
                    conn = Some(stream);
                } else {
                    // The client ends the connection (as a phone that re-registers).
                    let _ = stream.close().await;
                }
            }
            Ok(s) => stats.borrow_mut().record_error(&format!("status {s}")),
            Err(k) => stats.borrow_mut().record_error(k),
        }
    }
    last
}

/// Run the SIP target until killed.
pub fn run_target(listen: SocketAddr, executors: &Executors) -> Result<()> {
    eprintln!(
        "portico-bench target sip listening on {listen} ({} thread(s))",
        executors.threads.max(1)
    );
    let results = runtime::run_on_executors("target-sip", executors, move |_| async move {
        let listener = TcpListener::bind(listen).map_err(io::Error::from)?;
        crate::target::accept_loop(listener, serve).await
    })?;
    for r in results {
        r?;
    }
    Ok(())
}

/// The 200 OK for a request head: Via, From, To, Call-ID, CSeq copied.
pub fn answer(head: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"SIP/2.0 200 OK\r\n");
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        let copy = [
            &b"via"[..],
            b"v",
            b"from",
            b"f",
            b"to",
            b"t",
            b"call-id",
            b"i",
            b"cseq",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n));
        if copy {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Server: portico-bench\r\nContent-Length: 0\r\n\r\n");
}

async fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(4096);
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        // Skip CRLF keep-alives.
        let lead = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        buf.drain(..lead);
        loop {
            match message_len(&buf) {
                Ok(Some((len, None))) => {
                    answer(buf.get(..len).unwrap_or_default(), &mut out);
                    buf.drain(..len);
                }
                Ok(Some((len, Some(_)))) => {
                    buf.drain(..len); // a response: ignore
                }
                Ok(None) => break,
                Err(_) => return Ok(()),
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_answer_round_trip() {
        let r = register("bench.example", 3, 7);
        let (len, status) = message_len(&r).unwrap().unwrap();
        assert_eq!((len, status), (r.len(), None));
        assert!(message_len(&r[..r.len() - 1]).unwrap().is_none());
        let mut out = Vec::new();
        answer(&r, &mut out);
        let (len, status) = message_len(&out).unwrap().unwrap();
        assert_eq!((len, status), (out.len(), Some(200)));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("CSeq: 7 REGISTER\r\n"));
        assert!(text.contains("From: <sip:user3@bench.example>;tag=t3\r\n"));
        assert!(!text.contains("Contact"));
    }

    #[test]
    fn bodies_are_counted() {
        let m = b"SIP/2.0 180 Ringing\r\nContent-Length: 3\r\n\r\nabcSIP";
        assert_eq!(message_len(m).unwrap(), Some((m.len() - 3, Some(180))));
    }
}
