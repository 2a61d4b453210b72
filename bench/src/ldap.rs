//! The `ldap` scenario: bind + search per second, a new connection per bind; and
//! `target ldap`.
//!
//! Load: each of N connections in turn connects, sends a simple BindRequest
//! (`DOMAIN\userN`: portico routes on the bind domain), reads the BindResponse,
//! sends a base-object SearchRequest, reads up to its SearchResultDone, sends an
//! UnbindRequest and closes. One bind + search is one counted operation; its latency
//! includes the connect. A result code other than success is an error.
//!
//! Target: answers BindRequest with BindResponse(success), SearchRequest with
//! SearchResultDone(success) (no entries), closes on UnbindRequest; anything else
//! closes the connection. A minimal BER reader: definite lengths only.

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

const BIND_REQUEST: u8 = 0x60;
const BIND_RESPONSE: u8 = 0x61;
const UNBIND_REQUEST: u8 = 0x42;
const SEARCH_REQUEST: u8 = 0x63;
const SEARCH_DONE: u8 = 0x65;
const SEARCH_ENTRY: u8 = 0x64;

/// Append a BER tag-length-value (definite length, short or long form).
fn tlv(tag: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let len = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | len.len() as u8);
        out.extend_from_slice(len);
    }
    out.extend_from_slice(value);
}

/// An LDAPMessage with a one-byte-or-more messageID and the given protocolOp bytes.
fn message(id: u32, op: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(op.len() + 8);
    let id_bytes = id.to_be_bytes();
    let skip = id_bytes.iter().take_while(|&&b| b == 0).count().min(3);
    let mut int = id_bytes.get(skip..).unwrap_or_default().to_vec();
    if int.first().is_some_and(|&b| b & 0x80 != 0) {
        int.insert(0, 0);
    }
    tlv(0x02, &int, &mut body);
    body.extend_from_slice(op);
    let mut out = Vec::with_capacity(body.len() + 6);
    tlv(0x30, &body, &mut out);
    out
}

pub fn bind_request(id: u32, name: &str, password: &str) -> Vec<u8> {
    let mut v = Vec::new();
    tlv(0x02, &[3], &mut v);
    tlv(0x04, name.as_bytes(), &mut v);
    tlv(0x80, password.as_bytes(), &mut v);
    let mut op = Vec::new();
    tlv(BIND_REQUEST, &v, &mut op);
    message(id, &op)
}

pub fn search_request(id: u32) -> Vec<u8> {
    let mut v = Vec::new();
    tlv(0x04, b"", &mut v); // baseObject
    tlv(0x0a, &[0], &mut v); // scope baseObject
    tlv(0x0a, &[0], &mut v); // derefAliases never
    tlv(0x02, &[0], &mut v); // sizeLimit
    tlv(0x02, &[0], &mut v); // timeLimit
    tlv(0x01, &[0], &mut v); // typesOnly FALSE
    tlv(0x87, b"objectClass", &mut v); // present
    tlv(0x30, &[], &mut v); // attributes
    let mut op = Vec::new();
    tlv(SEARCH_REQUEST, &v, &mut op);
    message(id, &op)
}

pub fn unbind_request(id: u32) -> Vec<u8> {
    message(id, &[UNBIND_REQUEST, 0])
}

/// An LDAPResult-shaped response (BindResponse, SearchResultDone) with `code`.
pub fn result(id: u32, tag: u8, code: u8) -> Vec<u8> {
    let mut v = Vec::new();
    tlv(0x0a, &[code], &mut v);
    tlv(0x04, b"", &mut v);
    tlv(0x04, b"", &mut v);
    let mut op = Vec::new();
    tlv(tag, &v, &mut op);
    message(id, &op)
}

/// A parsed message header.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Whole message length.
    pub len: usize,
    pub id: u32,
    /// The protocolOp tag.
    pub op: u8,
    /// For a result: its resultCode.
    pub code: Option<u8>,
}

/// Read a definite length at `buf[at..]`: (length, octets used). `None`: incomplete.
fn length(buf: &[u8], at: usize) -> Result<Option<(usize, usize)>, &'static str> {
    let Some(&first) = buf.get(at) else {
        return Ok(None);
    };
    if first < 0x80 {
        return Ok(Some((first as usize, 1)));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return Err("bad BER length");
    }
    let Some(bytes) = buf.get(at + 1..at + 1 + n) else {
        return Ok(None);
    };
    let v = bytes.iter().fold(0usize, |a, &b| (a << 8) | b as usize);
    Ok(Some((v, 1 + n)))
}

/// The first complete LDAPMessage in `buf`.
pub fn parse(buf: &[u8]) -> Result<Option<Parsed>, &'static str> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    if tag != 0x30 {
        return Err("not an LDAPMessage");
    }
    let Some((len, used)) = length(buf, 1)? else {
        return Ok(None);
    };
    if len > 1 << 20 {
        return Err("message too large");
    }
    let total = 1 + used + len;
    let Some(msg) = buf.get(..total) else {
        return Ok(None);
    };
    let mut at = 1 + used;
    if msg.get(at) != Some(&0x02) {
        return Err("no messageID");
    }
    let (idlen, u) = length(msg, at + 1)?.ok_or("bad messageID")?;
    let idb = msg
        .get(at + 1 + u..at + 1 + u + idlen)
        .ok_or("bad messageID")?;
    if idlen == 0 || idlen > 4 {
        return Err("bad messageID");
    }
    let id = idb.iter().fold(0u32, |a, &b| (a << 8) | b as u32);
    at += 1 + u + idlen;
    let op = *msg.get(at).ok_or("no protocolOp")?;
    let code = if matches!(op, BIND_RESPONSE | SEARCH_DONE) {
        let (_, u) = length(msg, at + 1)?.ok_or("bad result")?;
        let r = at + 1 + u;
        match msg.get(r..r + 3) {
            Some(&[0x0a, 0x01, c]) => Some(c),
            _ => return Err("bad resultCode"),
        }
    } else {
        None
    };
    Ok(Some(Parsed {
        len: total,
        id,
        op,
        code,
    }))
}

#[derive(Debug, Clone)]
pub struct LdapLoad {
    pub connect: SocketAddr,
    pub domain: String,
    pub connections: usize,
    pub duration: Duration,
    pub timeout: Duration,
    pub executors: Executors,
}

fn kind(e: &io::Error, op: &'static str) -> &'static str {
    match e.kind() {
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::ConnectionRefused => "connect refused",
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "reset",
        _ => op,
    }
}

pub fn run(load: LdapLoad) -> Result<Report> {
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
    let results = runtime::run_on_executors("bench-ldap", &executors, move |t| {
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
        scenario: "ldap",
        mode: "bind+search, new connection".to_string(),
        target: format!("bind {}\\user* via {}", load.domain, load.connect),
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

/// Read one message from `stream` (buffered in `buf`).
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    stats: &RefCell<Stats>,
) -> Result<Parsed, &'static str> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(p) = parse(buf)? {
            buf.drain(..p.len);
            return Ok(p);
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

/// Read messages until one with `op` (skipping search entries).
async fn expect(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    stats: &RefCell<Stats>,
    op: u8,
) -> Result<(), &'static str> {
    loop {
        let m = read_message(stream, buf, stats).await?;
        if m.op == SEARCH_ENTRY || m.op == 0x73 {
            continue;
        }
        if m.op != op {
            return Err("unexpected response");
        }
        return match m.code {
            Some(0) => Ok(()),
            _ => Err("result not success"),
        };
    }
}

async fn operation(l: &LdapLoad, index: usize, stats: &RefCell<Stats>) -> Result<(), &'static str> {
    let mut s = TcpStream::connect_timeout(l.connect, l.timeout)
        .await
        .map_err(|e| kind(&io::Error::from(e), "connect"))?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(l.timeout))
        .and_then(|()| s.set_write_timeout(Some(l.timeout)))
        .map_err(|_| "connect")?;
    let mut buf = Vec::with_capacity(256);
    let name = format!("{}\\user{index}", l.domain);
    s.write_all(&bind_request(1, &name, "secret"))
        .await
        .map_err(|e| kind(&e, "write"))?;
    expect(&mut s, &mut buf, stats, BIND_RESPONSE).await?;
    s.write_all(&search_request(2))
        .await
        .map_err(|e| kind(&e, "write"))?;
    expect(&mut s, &mut buf, stats, SEARCH_DONE).await?;
    let _ = s.write_all(&unbind_request(3)).await;
    let _ = s.close().await;
    Ok(())
}

async fn client(
    load: Rc<LdapLoad>,
    index: usize,
    end: Instant,
    stats: Rc<RefCell<Stats>>,
) -> Instant {
    let mut last = Instant::now();
    while Instant::now() < end {
        let began = Instant::now();
        let outcome = operation(&load, index, &stats).await;
        last = Instant::now();
        match outcome {
            Ok(()) => stats.borrow_mut().record_ok(last - began),
            Err(k) => {
                stats.borrow_mut().record_error(k);
                if k.starts_with("connect") {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    last
}

/// Run the LDAP target until killed.
pub fn run_target(listen: SocketAddr, executors: &Executors) -> Result<()> {
    eprintln!(
        "portico-bench target ldap listening on {listen} ({} thread(s))",
        executors.threads.max(1)
    );
    let results = runtime::run_on_executors("target-ldap", executors, move |_| async move {
        let listener = TcpListener::bind(listen).map_err(io::Error::from)?;
        crate::target::accept_loop(listener, serve).await
    })?;
    for r in results {
        r?;
    }
    Ok(())
}

async fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 8 * 1024];
    let mut out = Vec::with_capacity(256);
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        loop {
            match parse(&buf) {
                Ok(Some(m)) => {
                    buf.drain(..m.len);
                    match m.op {
                        BIND_REQUEST => out.extend_from_slice(&result(m.id, BIND_RESPONSE, 0)),
                        SEARCH_REQUEST => out.extend_from_slice(&result(m.id, SEARCH_DONE, 0)),
                        _ => {
                            if !out.is_empty() {
                                stream.write_all(&out).await?;
                            }
                            return Ok(()); // unbind or anything else: close
                        }
                    }
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
    fn messages_parse_back() {
        let b = bind_request(1, "bench.example\\user1", "secret");
        assert_eq!(
            parse(&b).unwrap(),
            Some(Parsed {
                len: b.len(),
                id: 1,
                op: BIND_REQUEST,
                code: None
            })
        );
        assert_eq!(parse(&b[..b.len() - 1]).unwrap(), None);
        let r = result(300, SEARCH_DONE, 0);
        let p = parse(&r).unwrap().unwrap();
        assert_eq!((p.id, p.op, p.code), (300, SEARCH_DONE, Some(0)));
        let s = search_request(2);
        assert_eq!(parse(&s).unwrap().unwrap().op, SEARCH_REQUEST);
        let long = bind_request(200, &"x".repeat(300), "pw");
        assert_eq!(parse(&long).unwrap().unwrap().len, long.len());
        assert_eq!(parse(&long).unwrap().unwrap().id, 200);
    }
}
