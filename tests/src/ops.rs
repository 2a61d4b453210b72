//! Operating a running portico: signals, `portico reload`, the `/metrics` scrape, and
//! a slow target whose answers take their time (for downloads in progress during a
//! reload and for requests in flight during a stop).
//!
//! What the tests read back here is raw: the scrape is the exposition text as served
//! (parsing it is the test's business, with a real Prometheus parser), the reload
//! answer is the command's exit code and output.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::binary::{portico_bin, run_within, Finished, Portico};
use crate::target::pattern;

/// Sends signal `name` (`HUP`, `TERM`, `INT`) to the process `pid` with kill(1).
pub fn signal_pid(pid: u32, name: &str) {
    let mut cmd = Command::new("kill");
    cmd.args(["-s", name, &pid.to_string()]);
    let done = run_within(&mut cmd, b"", Duration::from_secs(5));
    assert_eq!(
        done.code(),
        Some(0),
        "kill -s {name} {pid} failed: {}",
        done.stderr
    );
}

/// Sends signal `name` to a running portico.
pub fn signal(portico: &Portico, name: &str) {
    signal_pid(portico.pid(), name);
}

/// `portico reload --control-socket <socket>`, with a 20 s limit.
pub fn reload(socket: &Path) -> Finished {
    let mut cmd = Command::new(portico_bin());
    cmd.arg("reload").arg("--control-socket").arg(socket);
    run_within(&mut cmd, b"", Duration::from_secs(20))
}

/// `portico <args>` (e.g. `plan --config F`), with a 20 s limit.
pub fn portico_cmd(args: &[&str]) -> Finished {
    let mut cmd = Command::new(portico_bin());
    cmd.args(args);
    run_within(&mut cmd, b"", Duration::from_secs(20))
}

/// One answer of the scrape endpoint.
#[derive(Debug)]
pub struct ScrapeReply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// `GET <path>` on the scrape endpoint at 127.0.0.1:`port`; `None` when nothing
/// answers (not listening yet).
pub fn scrape_path(port: u16, path: &str) -> Option<ScrapeReply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut reader = BufReader::new(stream);
    let response = crate::client::read_response(&mut reader).ok()?;
    let mut body = response.body.clone();
    if response.header("content-length").is_none() {
        // Unframed: the body runs to the close.
        let _ = reader.read_to_end(&mut body);
    }
    Some(ScrapeReply {
        status: response.status,
        content_type: response
            .header("content-type")
            .unwrap_or_default()
            .to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The exposition text of `GET /metrics` (panics unless the answer is 200).
pub fn scrape(port: u16) -> String {
    let reply = scrape_path(port, "/metrics")
        .unwrap_or_else(|| panic!("no answer from the metrics endpoint on 127.0.0.1:{port}"));
    assert_eq!(reply.status, 200, "GET /metrics: {}", reply.body);
    reply.body
}

/// Waits up to 10 s for the metrics endpoint to answer, then returns its text.
pub fn wait_scrape(port: u16) -> String {
    let reply = crate::wait_for(Duration::from_secs(10), || {
        scrape_path(port, "/metrics").filter(|r| r.status == 200)
    })
    .unwrap_or_else(|| panic!("the metrics endpoint on 127.0.0.1:{port} did not answer"));
    reply.body
}

/// A plain HTTP/1.1 target that takes its time. It answers:
/// - `…/slow/<len>/<millis>`: `200` with the `len` bytes of [`pattern`], framed by
///   Content-Length, the head at once and the body trickled in 20 pieces over `millis`;
/// - `…/hold/<millis>`: `200` with the body `held <millis>`, after waiting `millis`;
/// - anything else: `200` with `slow <request-target>` at once.
///
/// Keep-alive; every wait ends early when the target is dropped.
pub struct SlowTarget {
    pub port: u16,
    /// Requests whose head was read (counted before the answer starts).
    started: Arc<AtomicUsize>,
    /// Answers completely written.
    finished: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl SlowTarget {
    pub fn start() -> SlowTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind slow target");
        let port = listener.local_addr().expect("slow target addr").port();
        let target = SlowTarget {
            port,
            started: Arc::new(AtomicUsize::new(0)),
            finished: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (started, finished, stop) = (
            target.started.clone(),
            target.finished.clone(),
            target.stop.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (started, finished, stop) = (started.clone(), finished.clone(), stop.clone());
                thread::spawn(move || serve_slow(stream, &started, &finished, &stop));
            }
        });
        target
    }

    /// Requests whose head was read so far.
    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// Answers completely written so far.
    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }
}

impl Drop for SlowTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Sleeps `total` in small steps; false when `stop` was raised meanwhile.
fn patient_sleep(total: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + total;
    while Instant::now() < deadline {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        thread::sleep((deadline - Instant::now()).min(Duration::from_millis(20)));
    }
    true
}

fn serve_slow(stream: TcpStream, started: &AtomicUsize, finished: &AtomicUsize, stop: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        // The request head (a body, if any, is skipped by its Content-Length).
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        let mut body_len = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    body_len = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut skip = vec![0u8; body_len];
        if reader.read_exact(&mut skip).is_err() {
            return;
        }
        started.fetch_add(1, Ordering::SeqCst);
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let ok = answer(&mut out, &path, stop).is_ok();
        if !ok {
            return;
        }
        finished.fetch_add(1, Ordering::SeqCst);
    }
}

fn answer(out: &mut TcpStream, path: &str, stop: &AtomicBool) -> std::io::Result<()> {
    let parts: Vec<&str> = path.rsplit('/').collect();
    // parts[0] is the last segment.
    let head = |len: usize| {
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\nX-Target: slow\r\n\r\n")
    };
    let number = |i: usize| parts.get(i).and_then(|s| s.parse::<u64>().ok());
    if parts.get(2) == Some(&"slow") {
        if let (Some(len), Some(millis)) = (number(1), number(0)) {
            let body = pattern(len as usize);
            out.write_all(head(body.len()).as_bytes())?;
            out.flush()?;
            let pieces = 20;
            let step = Duration::from_millis(millis) / pieces as u32;
            let size = body.len().div_ceil(pieces).max(1);
            for piece in body.chunks(size) {
                if !patient_sleep(step, stop) {
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
                out.write_all(piece)?;
                out.flush()?;
            }
            return Ok(());
        }
    }
    if parts.get(1) == Some(&"hold") {
        if let Some(millis) = number(0) {
            if !patient_sleep(Duration::from_millis(millis), stop) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let body = format!("held {millis}");
            out.write_all(head(body.len()).as_bytes())?;
            out.write_all(body.as_bytes())?;
            return out.flush();
        }
    }
    let body = format!("slow {path}");
    out.write_all(head(body.len()).as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

/// An `[[host]]` block named `name` whose every path goes to 127.0.0.1:`port` (plain
/// HTTP only).
pub fn plain_host_block(name: &str, port: u16) -> String {
    format!(
        "\n[[host]]\nname = \"{name}\"\nhttp = [\n  {{ path = \"\", target = \"127.0.0.1\", tcp = {port} }},\n]\n"
    )
}

/// An `[[host]]` block named `name` with one rule `path` to 127.0.0.1 on the `tcp`
/// and `tls` ports given.
pub fn host_block(name: &str, path: &str, tcp: u16, tls: u16) -> String {
    format!(
        "\n[[host]]\nname = \"{name}\"\nhttp = [\n  {{ path = \"{path}\", target = \"127.0.0.1\", tcp = {tcp}, tls = {tls} }},\n]\n"
    )
}

/// The upgrade request of the WebSocket tests (to the master PBX's `/PBX0/APPS`).
pub const UPGRADE: &str = "GET /PBX0/APPS/websocket HTTP/1.1\r\nHost: hq.dvl-ckl2.net\r\n\
    Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A WebSocket tunnel through portico's plain HTTP listener to a recording target,
/// which echoes every byte after its greeting.
pub struct Tunnel {
    pub writer: TcpStream,
    pub reader: BufReader<TcpStream>,
}

impl Tunnel {
    /// Connects to 127.0.0.1:`port`, sends [`UPGRADE`], and reads the `101` and the
    /// greeting of `target_name` (panics when either is missing).
    pub fn open(port: u16, target_name: &str) -> Tunnel {
        let stream = crate::client::connect(port);
        let mut writer = stream.try_clone().expect("clone the tunnel stream");
        let mut reader = BufReader::new(stream);
        writer
            .write_all(UPGRADE.as_bytes())
            .expect("send the upgrade request");
        let response = crate::client::read_response(&mut reader).expect("answer to the upgrade");
        assert_eq!(response.status, 101, "the upgrade must be switched");
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("the greeting through the tunnel");
        assert_eq!(line, crate::target::greeting(target_name));
        Tunnel { writer, reader }
    }

    /// Sends `line` (a newline is added) and reads the echoed line back.
    pub fn echo(&mut self, line: &str) -> std::io::Result<String> {
        self.writer.write_all(format!("{line}\n").as_bytes())?;
        let mut back = String::new();
        self.reader.read_line(&mut back)?;
        Ok(back.trim_end_matches('\n').to_string())
    }
}
