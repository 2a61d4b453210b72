//! STUN/TURN fixtures: a `[turn]` config on loopback ([`TurnSite`]), coturn's client
//! tools (`turnutils_stunclient`, `turnutils_uclient`, `turnutils_peer` from the Debian
//! package `coturn`; its `turnserver` is never started), their output parsed
//! ([`UclientReport`]), and a UDP echo socket standing in for a media peer
//! ([`UdpEcho`]).
//!
//! Everything is on 127.0.0.1: portico's listeners, its relay sockets, the peers. Each
//! test picks its own listen ports (free for UDP and TCP alike), its own relay port
//! range (per-test constants below 32768, out of the kernel's ephemeral range), and
//! its own peers, so the tests run in parallel. Every command has a time limit.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::binary::{run_within, workspace_dir, Finished, Portico, Ready};
use crate::site::toml_string;
use crate::{free_port, wait_for, Scratch};

/// The realm of the seed.
pub const REALM: &str = "dvl-ckl2.net";
/// The static TURN user of the seed.
pub const USER: &str = "turn342823";
/// Its password.
pub const PASSWORD: &str = "ip411";
/// The TURN REST shared secret the tests configure.
pub const SECRET: &str = "northwind";

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A port on 127.0.0.1 free for both UDP and TCP (`listen_udp` = `listen_tcp`).
pub fn free_udp_tcp_port() -> u16 {
    crate::next_free_ports(1)
}

/// A UDP port `q` on 127.0.0.1 with `q + 1` free too (`turnutils_peer -p q` binds both).
pub fn free_udp_pair() -> u16 {
    crate::next_free_ports(2)
}

/// One test's `[turn]` config and the ports it listens on.
#[derive(Clone, Debug)]
pub struct TurnSite {
    /// `listen_udp` and `listen_tcp`.
    pub port: u16,
    /// `listen_tls`, when set.
    pub tls_port: Option<u16>,
    /// The proxy's HTTP listener (portico needs at least one proxy listener).
    pub http_port: u16,
    /// `[metrics] listen` port.
    pub metrics_port: u16,
    /// `relay_ports`, inclusive.
    pub relay_ports: (u16, u16),
    /// `allowed_peers`.
    pub allowed_peers: Vec<String>,
    pub allow_loopback_peers: bool,
    /// `[tls] certificate` and `private_key`; portico makes a self-signed one without.
    pub certificate: Option<(PathBuf, PathBuf)>,
}

impl TurnSite {
    /// Loopback listeners on fresh ports, relay ports `relay_first..relay_first+199`,
    /// peers allowed on 127.0.0.0/8 (and its IPv4-mapped form), loopback peers allowed.
    pub fn new(relay_first: u16) -> TurnSite {
        TurnSite {
            port: free_udp_tcp_port(),
            tls_port: None,
            http_port: free_port(),
            metrics_port: free_port(),
            relay_ports: (relay_first, relay_first + 199),
            allowed_peers: vec!["127.0.0.0/8".into(), "::ffff:0:0/96".into()],
            allow_loopback_peers: true,
            certificate: None,
        }
    }

    /// Also listens for TURN over TLS, on a fresh port.
    pub fn with_tls(mut self) -> TurnSite {
        self.tls_port = Some(free_port());
        self
    }

    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# Written by portico-tests: STUN/TURN on loopback.\n\n\
             [proxy]\nipv4 = true\nipv6 = false\n\n[proxy.listen]\n\
             bind = [\"127.0.0.1\"]\n",
        );
        out.push_str(&format!("http = {}\n", self.http_port));
        if let Some((cert, key)) = &self.certificate {
            out.push_str(&format!(
                "\n[tls]\ncertificate = {}\nprivate_key = {}\n",
                toml_string(&cert.display().to_string()),
                toml_string(&key.display().to_string())
            ));
        }
        out.push_str(&format!(
            "\n[turn]\nlisten_udp = {port}\nlisten_tcp = {port}\n",
            port = self.port
        ));
        if let Some(tls) = self.tls_port {
            out.push_str(&format!("listen_tls = {tls}\n"));
        }
        let peers: Vec<String> = self.allowed_peers.iter().map(|p| toml_string(p)).collect();
        out.push_str(&format!(
            "realm = \"{REALM}\"\nrelay_address = \"127.0.0.1\"\nrelay_ports = \"{}-{}\"\n\
             allowed_peers = [{}]\nallow_loopback_peers = {}\n\
             users = [ {{ name = \"{USER}\", password = \"{PASSWORD}\" }} ]\n\
             secrets = [\"{SECRET}\"]\n\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
            self.relay_ports.0,
            self.relay_ports.1,
            peers.join(", "),
            self.allow_loopback_peers,
            self.metrics_port
        ));
        out
    }

    /// Writes the config into `scratch` and starts portico with two shards (so the
    /// SO_REUSEPORT steering is in play), waiting for the HTTP, TURN TCP and (when set)
    /// TURN TLS listeners.
    pub fn start(&self, scratch: &Scratch) -> Portico {
        let config = scratch.write("portico.toml", self.to_toml());
        let mut ready = vec![Ready::Tcp(self.http_port), Ready::Tcp(self.port)];
        ready.extend(self.tls_port.map(Ready::Tls));
        let portico = Portico::start(&config, &["--shards", "2"], &ready);
        // The UDP listener is bound with the TCP one; wait for the start line anyway.
        portico
            .wait_log(Duration::from_secs(5), |l| {
                l.contains("turn-udp 127.0.0.1:")
            })
            .expect("portico logs that it listens for TURN over UDP");
        portico
    }
}

/// `turnutils_peer -p <port> -L 127.0.0.1`: the echoing peer of `turnutils_uclient`
/// (it listens on `port` and `port + 1`). Killed when dropped.
pub struct TurnPeer {
    pub port: u16,
    child: Child,
}

impl TurnPeer {
    pub fn start() -> TurnPeer {
        let port = free_udp_pair();
        let child = Command::new("turnutils_peer")
            .args(["-p", &port.to_string(), "-L", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn turnutils_peer (Debian package `coturn`): {e}"));
        let mut peer = TurnPeer { port, child };
        // Bound once the port can no longer be bound here.
        let bound = wait_for(Duration::from_secs(5), || {
            UdpSocket::bind((LOOPBACK, port)).is_err().then_some(())
        });
        if bound.is_none() {
            let _ = peer.child.kill();
            panic!("turnutils_peer did not bind 127.0.0.1:{port} within 5 s");
        }
        if let Ok(Some(status)) = peer.child.try_wait() {
            panic!("turnutils_peer exited at once: {status}");
        }
        peer
    }
}

impl Drop for TurnPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `turnutils_stunclient -p <port> 127.0.0.1`, with a 15 s limit.
pub fn stunclient(port: u16) -> Finished {
    let mut cmd = Command::new("turnutils_stunclient");
    cmd.args(["-p", &port.to_string(), "127.0.0.1"]);
    run_within(&mut cmd, b"", Duration::from_secs(15))
}

/// `turnutils_uclient -v <args> 127.0.0.1` (the server is always 127.0.0.1), with a
/// time limit.
pub fn uclient(args: &[&str], limit: Duration) -> Finished {
    let mut cmd = Command::new("turnutils_uclient");
    cmd.arg("-v").args(args).arg("127.0.0.1");
    run_within(&mut cmd, b"", limit)
}

/// What `turnutils_uclient -v` printed, picked apart.
#[derive(Clone, Debug, Default)]
pub struct UclientReport {
    /// `Total lost packets N (P%)`: N and P.
    pub lost: Option<(u64, f64)>,
    /// The final `tot_send_msgs=S, tot_recv_msgs=R`.
    pub totals: Option<(u64, u64)>,
    /// `msz=K` of the progress lines: how many sessions send (uclient makes the
    /// client count even when it also opens RTCP allocations, i.e. without `-c`).
    pub sessions: Option<u64>,
    /// Every `Received relay addr: ip:port`, in order.
    pub relays: Vec<SocketAddr>,
    /// Every `clnet_allocate: rtv=N` (the RESERVATION-TOKEN received, 0 without one),
    /// paired with the relay address printed just before it.
    pub reservations: Vec<(SocketAddr, u64)>,
    /// `channel bind sent` lines.
    pub channel_binds: usize,
    /// `create perm sent` lines.
    pub create_perms: usize,
    /// `tls_connect: client session connected with cipher C, method=M`: (C, M).
    pub tls_sessions: Vec<(String, String)>,
    /// The whole output, for messages.
    pub text: String,
}

impl UclientReport {
    pub fn parse(text: &str) -> UclientReport {
        let mut report = UclientReport {
            text: text.to_string(),
            ..UclientReport::default()
        };
        for line in text.lines() {
            if let Some(rest) = after(line, "Total lost packets ") {
                let mut words = rest.split_whitespace();
                let n = words.next().and_then(|w| w.parse().ok());
                let pct = words
                    .next()
                    .and_then(|w| w.strip_prefix('('))
                    .and_then(|w| w.strip_suffix("%),").or_else(|| w.strip_suffix("%)")))
                    .and_then(|w| w.parse().ok());
                if let (Some(n), Some(pct)) = (n, pct) {
                    report.lost = Some((n, pct));
                }
            } else if let Some(rest) = after(line, "start_mclient: tot_send_msgs=") {
                let mut parts = rest.split(", tot_recv_msgs=");
                let sent = parts.next().and_then(|w| w.trim().parse().ok());
                let recv = parts.next().and_then(|w| w.trim().parse().ok());
                if let (Some(s), Some(r)) = (sent, recv) {
                    report.totals = Some((s, r));
                }
            } else if let Some(rest) = after(line, "start_mclient: msz=") {
                let k = rest.split(',').next().and_then(|w| w.trim().parse().ok());
                report.sessions = report.sessions.or(k);
            } else if let Some(rest) = after(line, "Received relay addr: ") {
                if let Ok(addr) = rest.trim().parse() {
                    report.relays.push(addr);
                }
            } else if let Some(rest) = after(line, "clnet_allocate: rtv=") {
                if let (Some(&relay), Ok(rtv)) = (report.relays.last(), rest.trim().parse()) {
                    report.reservations.push((relay, rtv));
                }
            } else if line.contains("channel bind sent") {
                report.channel_binds += 1;
            } else if line.contains("create perm sent") {
                report.create_perms += 1;
            } else if let Some(rest) = after(line, "client session connected with cipher ") {
                if let Some((cipher, method)) = rest.split_once(", method=") {
                    report
                        .tls_sessions
                        .push((cipher.trim().to_string(), method.trim().to_string()));
                }
            }
        }
        report
    }
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// What a [`UdpEcho`] received: (source, payload) of each datagram.
type Seen = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// A UDP socket on 127.0.0.1 that sends every datagram back to its source, recording
/// (source, payload) of each. Stops when dropped.
pub struct UdpEcho {
    pub addr: SocketAddr,
    seen: Seen,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl UdpEcho {
    pub fn start() -> UdpEcho {
        let socket = UdpSocket::bind((LOOPBACK, 0)).expect("bind the UDP echo socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set_read_timeout");
        let addr = socket.local_addr().expect("local_addr");
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop2.load(Ordering::Relaxed) {
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let _ = socket.send_to(&buf[..n], from);
                        if let Ok(mut all) = seen2.lock() {
                            all.push((from, buf[..n].to_vec()));
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
        });
        UdpEcho {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Every datagram received so far: (source, payload).
    pub fn seen(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The second, independent TURN client: `tests/turn/aioice_relay.py` (PyPI `aioice`).
pub fn aioice_script() -> PathBuf {
    workspace_dir()
        .join("tests")
        .join("turn")
        .join("aioice_relay.py")
}

/// Runs `python3 <script> <args>` with a time limit.
pub fn python(script: &Path, args: &[&str], limit: Duration) -> Finished {
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(args);
    run_within(&mut cmd, b"", limit)
}
