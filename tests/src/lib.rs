//! Harness for portico's end-to-end tests (`tests/tests/*.rs`).
//!
//! Every test starts the real `portico` binary on loopback with a config written for
//! it, puts in-process recording targets behind it (standing in for the seed's master
//! PBX, slave PBX and application platform), and drives it with real clients: `curl`,
//! `openssl s_client`, or a raw `TcpStream` where curl refuses to send what a test
//! needs (smuggling attempts, WebSocket tunnels).
//!
//! What lives where:
//! - [`binary`]: finding and building the binary, the [`binary::Portico`] process guard,
//!   running one-shot commands with a time limit.
//! - [`target`]: recording HTTP/1.1 targets, plain and TLS.
//! - [`pki`]: a test CA and certificates made by rcgen, written as PEM files.
//! - [`site`]: the config writer (the seed's reference rules on loopback) and [`site::Lab`],
//!   one test's whole setup.
//! - [`client`]: the curl and openssl wrappers and a minimal raw HTTP/1.1 client.
//!
//! Nothing here is shared between tests: each test owns its ports, its targets, its
//! scratch directory and its portico process, so the tests run in parallel.

pub mod binary;
pub mod client;
pub mod pki;
pub mod site;
pub mod target;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    next_free_ports(1)
}

/// The first of `count` consecutive ports on 127.0.0.1 free for both TCP and UDP.
///
/// Ports come from 10000–20999, outside the kernel's ephemeral range (32768–60999 by
/// default): an outgoing connection of a test running in parallel can then never take
/// a port between this check and portico's bind (it did, with ports from `bind(:0)`).
/// A process-wide counter, started at an offset from the pid, never hands the same
/// port out twice in one test process.
pub fn next_free_ports(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 11_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let start = NEXT.fetch_add(u32::from(count), Ordering::SeqCst) % SPAN;
        if start + u32::from(count) > SPAN {
            continue;
        }
        let first = (FIRST + start) as u16;
        let free = (0..count).all(|i| {
            let port = first + i;
            TcpListener::bind(("127.0.0.1", port)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        });
        if free {
            return first;
        }
    }
    panic!("no free port in 10000-20999 on 127.0.0.1");
}

/// Polls `probe` every 25 ms until it returns `Some`, or `limit` has passed.
pub fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A directory of its own under the system temp dir, removed when dropped — unless the
/// test is panicking, then it is kept (and named on stderr) for a post-mortem.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "portico-e2e-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `contents` to `name` inside the scratch dir and returns the full path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scratch dir kept for inspection: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
pub mod h323;
pub mod ops;
pub mod routed;
pub mod sip;
pub mod slapd;
pub mod turn;
