//! The `h323` scenario: first-message routing decisions per second for H.323 call
//! signalling over TCP, or over TLS with `--tls`, from the committed H.225.0 vectors.
//!
//! Load: each of N connections in turn connects (with `--tls`: a full handshake, no
//! resumption, no certificate check), sends one committed first message, reads the
//! same bytes back and closes. The messages are the TPKT frames of
//! `dataplane/proto/testdata/h323/` (encoded by pycrate, confirmed by Wireshark),
//! embedded at build time as data: the load generator does not use the code under
//! test. Behind portico the target is `portico-bench target echo`: portico routes
//! the connection by the gatekeeper id in the frame, replays the frame to the target
//! and relays the echo, so a complete and equal echo means the decision was made and
//! acted on. Run against the echo target itself, the same load gives the ceiling of
//! generator and target (the "direct" column).
//!
//! Latency is from the start of the connect (max rate) or from the scheduled send time
//! (`--rate`, coordinated-omission corrected as in [`crate::pacing`]) to the last byte
//! of the echo. Errors by kind: `connect refused`, `connect timeout`, `tls handshake`,
//! `closed` (the connection ended before the whole echo: portico refused the message
//! or could not reach the target), `mismatch` (other bytes came back), `timeout`,
//! `reset`. `--mode persistent` routes the first message of each connection and sends
//! the following ones on the same connection: that measures portico's relay, not its
//! decisions.
//!
//! Vectors (`--vectors`): `seed`, the default, is every vector whose routing key is one
//! of the H.323 hosts of the seed's reference site ([`SEED_KEYS`]; GRQ, RRQ, URQ, ARQ,
//! LRQ, DRQ and BRQ tunnelled in a FACILITY, 100 to 300 bytes); otherwise a
//! comma-separated list of vector names and `seed`. Vectors without a gatekeeper id are
//! not accepted: portico refuses them, so they measure no routing decision. Connection
//! `i` sends vectors `i`, `i + 1`, … of the list in turn, so all are sent equally often.
//!
//! A portico configuration for the `seed` vectors: an `h323` listener (and `h323_tls`
//! for `--tls`), and a `[[host]]` per key of [`SEED_KEYS`] with
//! `h323 = { target = "127.0.0.1", tcp = ECHO_PORT }`; `perf-scripts/compare.sh`
//! writes one.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::http::{TlsClient, MAX_DURATION};
use crate::pacing::Schedule;
use crate::runtime::{self, sleep_until, Executors};
use crate::stats::{Report, RunInfo, Stats};
use crate::tls::{self, Stream};

/// One committed first message.
#[derive(Debug)]
pub struct Vector {
    /// The file name without `.bin`, as in `vectors.tsv`.
    pub name: &'static str,
    /// The routing key portico takes from its gatekeeper id (`vectors.tsv`'s `key`);
    /// `None`: no gatekeeper id, portico refuses the connection.
    pub key: Option<&'static str>,
    /// One TPKT frame.
    pub bytes: &'static [u8],
}

macro_rules! vector {
    ($name:literal, $key:expr) => {
        Vector {
            name: $name,
            key: $key,
            bytes: include_bytes!(concat!(
                "../../dataplane/proto/testdata/h323/",
                $name,
                ".bin"
            )),
        }
    };
}

/// Every committed vector, in `vectors.tsv` order.
pub const VECTORS: [Vector; 18] = [
    vector!("grq_domain", Some("dvl-ckl2.net")),
    vector!("grq_no_gkid", None),
    vector!("grq_loc_branch_crv2", Some("dvl-ckl2.net/branch-b")),
    vector!("rrq_hq", Some("dvl-ckl2.net/hq")),
    vector!("rrq_loc_branch_crv2", Some("dvl-ckl2.net/branch-b")),
    vector!(
        "rrq_long_id",
        Some("dvl-ckl2.net/registration-location-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
    ),
    vector!("rrq_non_ascii", Some("dvl-ckl2.net/東京-zürich")),
    vector!("rrq_no_gkid", None),
    vector!("rrq_alias_kinds", Some("d")),
    vector!("rrq_facility_body", Some("dvl-ckl2.net/branch-b")),
    vector!("rrq_other_features_first", Some("dvl-ckl2.net")),
    vector!("urq_gkid_ext", Some("dvl-ckl2.net/branch-b")),
    vector!("arq_gkid_ext", Some("dvl-ckl2.net/hq")),
    vector!("lrq_gkid_ext", Some("dvl-ckl2.net")),
    vector!("drq_gkid_ext", Some("dvl-ckl2.net")),
    vector!("brq_gkid_ext", Some("dvl-ckl2.net")),
    vector!("setup_no_ras", None),
    vector!("facility_no_ras", None),
];

/// The routing keys of the seed's H.323 hosts (`examples/dvl-ckl2.toml`): the hosts a
/// portico configuration needs for the `seed` vectors.
pub const SEED_KEYS: [&str; 3] = ["dvl-ckl2.net", "dvl-ckl2.net/hq", "dvl-ckl2.net/branch-b"];

/// TPKT header length (RFC 1006 §6): version, reserved, 16-bit length.
const TPKT_HEADER: usize = 4;

/// Pause after a failed connect before the next try (max rate), so a dead listener
/// is not hammered in a tight loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// Check that `bytes` is exactly one TPKT frame around a Q.931 message: version 3
/// (RFC 1006 §6), a length field equal to the whole length, and the Q.931 protocol
/// discriminator 0x08 first in the payload (Q.931 §4.2).
pub fn check_frame(bytes: &[u8]) -> Result<(), String> {
    let Some(&[version, _reserved, hi, lo, discriminator]) = bytes.get(..TPKT_HEADER + 1) else {
        return Err(format!("{} bytes: shorter than a TPKT header", bytes.len()));
    };
    if version != 3 {
        return Err(format!("TPKT version {version}, not 3"));
    }
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len != bytes.len() {
        return Err(format!(
            "TPKT length field {len}, but the frame has {} bytes",
            bytes.len()
        ));
    }
    if discriminator != 0x08 {
        return Err(format!(
            "Q.931 protocol discriminator {discriminator:#04x}, not 0x08"
        ));
    }
    Ok(())
}

/// The vectors named by `spec`: comma-separated vector names and `seed`.
pub fn select(spec: &str) -> Result<Vec<&'static Vector>> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "seed" {
            out.extend(
                VECTORS
                    .iter()
                    .filter(|v| v.key.is_some_and(|k| SEED_KEYS.contains(&k))),
            );
            continue;
        }
        let Some(v) = VECTORS.iter().find(|v| v.name == item) else {
            let names: Vec<_> = VECTORS.iter().map(|v| v.name).collect();
            bail!(
                "no vector {item:?}; the vectors are `seed` and {}",
                names.join(", ")
            );
        };
        if v.key.is_none() {
            bail!("vector {item:?} has no gatekeeper id: portico refuses it, so it measures no routing decision");
        }
        out.push(v);
    }
    if out.is_empty() {
        bail!("--vectors names no vector");
    }
    for v in &out {
        if let Err(e) = check_frame(v.bytes) {
            bail!("vector {} is not one TPKT frame: {e}", v.name);
        }
    }
    Ok(out)
}

/// The vector connection `index` sends as its `nth` message.
pub fn pick<'a>(vectors: &[&'a Vector], index: usize, nth: usize) -> Option<&'a Vector> {
    if vectors.is_empty() {
        return None;
    }
    vectors
        .get((index % vectors.len() + nth % vectors.len()) % vectors.len())
        .copied()
}

/// What the vectors are, for the report: names (or a count), keys and sizes.
pub fn describe(vectors: &[&Vector]) -> String {
    let mut keys: Vec<&str> = vectors.iter().filter_map(|v| v.key).collect();
    keys.sort_unstable();
    keys.dedup();
    let min = vectors.iter().map(|v| v.bytes.len()).min().unwrap_or(0);
    let max = vectors.iter().map(|v| v.bytes.len()).max().unwrap_or(0);
    let size = if min == max {
        format!("{min} B")
    } else {
        format!("{min}-{max} B")
    };
    let what = match vectors {
        [one] => one.name.to_string(),
        _ => format!("{} vectors", vectors.len()),
    };
    format!("{what} ({size}, gatekeeper keys {})", keys.join(" "))
}

/// How connections are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum H323Mode {
    /// One first message per connection: connect, send, read the echo, close.
    NewConnection,
    /// The first message of a connection is routed; the following ones are relayed.
    Persistent,
}

impl H323Mode {
    fn name(self) -> &'static str {
        match self {
            H323Mode::NewConnection => "new-connection",
            H323Mode::Persistent => "persistent",
        }
    }
}

/// A run, as given on the command line.
#[derive(Debug, Clone)]
pub struct H323Load {
    pub connect: SocketAddr,
    pub vectors: Vec<&'static Vector>,
    /// Speak TLS, with this SNI name.
    pub tls: Option<String>,
    pub connections: usize,
    pub duration: Duration,
    /// Total decisions/s on a fixed schedule; max rate when `None`.
    pub rate: Option<f64>,
    pub mode: H323Mode,
    pub timeout: Duration,
    pub executors: Executors,
}

/// The TLS client settings: those of the HTTPS load (no verification, no
/// resumption) without ALPN, which an H.323 endpoint does not send.
fn tls_client(sni: &str) -> Result<TlsClient> {
    let mut config = (*tls::client_config()?).clone();
    config.alpn_protocols.clear();
    Ok((std::sync::Arc::new(config), tls::server_name(sni)?))
}

/// Everything a connection task needs; shared by the tasks of one executor.
struct Plan {
    connect: SocketAddr,
    tls: Option<TlsClient>,
    vectors: Vec<&'static Vector>,
    mode: H323Mode,
    connections: usize,
    rate: Option<f64>,
    timeout: Duration,
    start: Instant,
    end: Instant,
    /// No read is started after this; echoes still missing count as timeouts.
    hard_stop: Instant,
}

/// Run the load and report it.
pub fn run(load: H323Load) -> Result<Report> {
    if load.duration > MAX_DURATION {
        bail!("--duration is capped at {} s", MAX_DURATION.as_secs());
    }
    if load.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if let Some(r) = load.rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("--rate must be a positive number");
        }
    }
    if load.vectors.is_empty() {
        bail!("no vectors to send");
    }
    let tls = load.tls.as_deref().map(tls_client).transpose()?;
    let threads = load.executors.threads.clamp(1, load.connections);
    let executors = Executors {
        threads,
        ..load.executors.clone()
    };
    // Let the executors start before the clock does.
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + load.duration;
    let grace = load.timeout.min(Duration::from_secs(5));
    let l = load.clone();
    let results = runtime::run_on_executors("bench-h323", &executors, move |t| {
        let plan = Rc::new(Plan {
            connect: l.connect,
            tls: tls.clone(),
            vectors: l.vectors.clone(),
            mode: l.mode,
            connections: l.connections,
            rate: l.rate,
            timeout: l.timeout,
            start,
            end,
            hard_stop: end + grace,
        });
        async move {
            sleep_until(plan.start).await;
            let stats = Rc::new(RefCell::new(Stats::new()));
            let tasks: Vec<_> = (t..plan.connections)
                .step_by(threads)
                .map(|i| glommio::spawn_local(connection(plan.clone(), i, stats.clone())))
                .collect();
            let mut last = plan.start;
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
        scenario: if load.tls.is_some() {
            "h323-tls"
        } else {
            "h323"
        },
        mode: load.mode.name().to_string(),
        target: format!("{} via {}", describe(&load.vectors), load.connect),
        connections: load.connections,
        threads,
        target_rate: load.rate,
    };
    Ok(Report::new(
        info,
        last.saturating_duration_since(start),
        &stats,
    ))
}

/// One client connection's loop, until the end of the run. Returns when it finished.
async fn connection(plan: Rc<Plan>, index: usize, stats: Rc<RefCell<Stats>>) -> Instant {
    let schedule = plan
        .rate
        .map(|r| Schedule::for_connection(plan.start, r, plan.connections, index));
    let mut kept: Option<Stream> = None;
    let mut echo: Vec<u8> = Vec::with_capacity(1024);
    let mut slot = 0u64;
    let mut nth = 0usize;
    let mut last = Instant::now();
    while Instant::now() < plan.end {
        // When this message is due; latency is measured from here.
        let due = match schedule {
            Some(s) => {
                let due = s.due(slot);
                if due >= plan.end {
                    break;
                }
                slot += 1;
                sleep_until(due).await;
                due
            }
            None => Instant::now(),
        };
        let Some(vector) = pick(&plan.vectors, index, nth) else {
            break;
        };
        nth = nth.wrapping_add(1);
        let outcome = match plan.mode {
            H323Mode::NewConnection => decision(&plan, vector.bytes, &mut echo, &stats).await,
            H323Mode::Persistent => {
                relayed(&plan, &mut kept, vector.bytes, &mut echo, &stats).await
            }
        };
        last = Instant::now();
        match outcome {
            Ok(done) => stats
                .borrow_mut()
                .record_ok(done.saturating_duration_since(due)),
            Err(kind) => {
                stats.borrow_mut().record_error(kind);
                if kind.starts_with("connect") && schedule.is_none() {
                    sleep_until(Instant::now().min(plan.end) + CONNECT_BACKOFF).await;
                }
            }
        }
    }
    if let Some(s) = schedule {
        let missed = s.slots_before(plan.end).saturating_sub(slot);
        stats.borrow_mut().unsent += missed;
    }
    if let Some(mut s) = kept {
        let _ = s.close().await;
    }
    last
}

/// The error kind of a failed I/O operation.
fn io_kind(e: &io::Error, op: &'static str) -> &'static str {
    match e.kind() {
        io::ErrorKind::TimedOut => match op {
            "connect" => "connect timeout",
            _ => "timeout",
        },
        io::ErrorKind::ConnectionRefused => "connect refused",
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => "reset",
        _ => op,
    }
}

/// Connect (and make the TLS handshake), every read and write bounded by the timeout.
async fn open(plan: &Plan) -> Result<Stream, &'static str> {
    let s = TcpStream::connect_timeout(plan.connect, plan.timeout)
        .await
        .map_err(|e| io_kind(&io::Error::from(e), "connect"))?;
    s.set_nodelay(true).map_err(|_| "connect")?;
    s.set_read_timeout(Some(plan.timeout))
        .and_then(|()| s.set_write_timeout(Some(plan.timeout)))
        .map_err(|_| "connect")?;
    match &plan.tls {
        None => Ok(Stream::Plain(s)),
        Some((config, name)) => futures_rustls::TlsConnector::from(config.clone())
            .connect(name.clone(), s)
            .await
            .map(|t| Stream::Client(Box::new(t)))
            .map_err(|e| io_kind(&e, "tls handshake")),
    }
}

/// Send `message` and read it back whole; `echo` is scratch space.
async fn exchange(
    plan: &Plan,
    stream: &mut Stream,
    message: &[u8],
    echo: &mut Vec<u8>,
    stats: &RefCell<Stats>,
) -> Result<(), &'static str> {
    stream
        .write_all(message)
        .await
        .map_err(|e| io_kind(&e, "write"))?;
    stream.flush().await.map_err(|e| io_kind(&e, "write"))?;
    echo.clear();
    echo.resize(message.len(), 0);
    let mut got = 0;
    while got < message.len() {
        if Instant::now() > plan.hard_stop {
            return Err("timeout");
        }
        let space = echo.get_mut(got..).unwrap_or_default();
        let n = stream.read(space).await.map_err(|e| io_kind(&e, "read"))?;
        if n == 0 {
            return Err("closed");
        }
        stats.borrow_mut().bytes_read += n as u64;
        got += n;
    }
    if echo.as_slice() != message {
        return Err("mismatch");
    }
    Ok(())
}

/// One routing decision on a new connection. Returns when the echo was complete.
async fn decision(
    plan: &Plan,
    message: &[u8],
    echo: &mut Vec<u8>,
    stats: &RefCell<Stats>,
) -> Result<Instant, &'static str> {
    let mut stream = open(plan).await?;
    exchange(plan, &mut stream, message, echo, stats).await?;
    let done = Instant::now();
    // The client ends the connection (FIN, or close_notify then FIN over TLS).
    let _ = stream.close().await;
    Ok(done)
}

/// One message on the kept connection (opened, and routed, by the first).
async fn relayed(
    plan: &Plan,
    kept: &mut Option<Stream>,
    message: &[u8],
    echo: &mut Vec<u8>,
    stats: &RefCell<Stats>,
) -> Result<Instant, &'static str> {
    let mut stream = match kept.take() {
        Some(s) => s,
        None => open(plan).await?,
    };
    exchange(plan, &mut stream, message, echo, stats).await?;
    let done = Instant::now();
    *kept = Some(stream);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `vectors.tsv`: name, message_type, ras, gatekeeper_id, key, alias, description.
    const MANIFEST: &str = include_str!("../../dataplane/proto/testdata/h323/vectors.tsv");

    #[test]
    fn vectors_match_the_manifest() {
        let rows: Vec<(&str, Option<&str>)> = MANIFEST
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                assert_eq!(f.len(), 7, "manifest line {l:?}");
                (f[0], Some(f[4]).filter(|k| !k.is_empty()))
            })
            .collect();
        let ours: Vec<(&str, Option<&str>)> = VECTORS.iter().map(|v| (v.name, v.key)).collect();
        assert_eq!(ours, rows);
    }

    #[test]
    fn every_vector_is_one_tpkt_frame() {
        for v in &VECTORS {
            assert_eq!(check_frame(v.bytes), Ok(()), "{}", v.name);
        }
        assert!(check_frame(b"\x03\x00\x00").is_err());
        assert!(check_frame(b"\x02\x00\x00\x07\x08\x00\x62").is_err());
        assert!(check_frame(b"\x03\x00\x00\x08\x08\x00\x62").is_err());
        assert!(check_frame(b"\x03\x00\x00\x07\x09\x00\x62").is_err());
        assert_eq!(check_frame(b"\x03\x00\x00\x07\x08\x00\x62"), Ok(()));
    }

    #[test]
    fn seed_is_every_vector_routed_by_a_seed_host() {
        let seed = select("seed").unwrap();
        let names: Vec<&str> = seed.iter().map(|v| v.name).collect();
        assert_eq!(
            names,
            [
                "grq_domain",
                "grq_loc_branch_crv2",
                "rrq_hq",
                "rrq_loc_branch_crv2",
                "rrq_facility_body",
                "rrq_other_features_first",
                "urq_gkid_ext",
                "arq_gkid_ext",
                "lrq_gkid_ext",
                "drq_gkid_ext",
                "brq_gkid_ext",
            ]
        );
        assert_eq!(
            describe(&seed),
            "11 vectors (100-300 B, gatekeeper keys dvl-ckl2.net dvl-ckl2.net/branch-b dvl-ckl2.net/hq)"
        );
    }

    #[test]
    fn names_select_and_rejects_are_refused() {
        let v = select(" rrq_hq , grq_domain,").unwrap();
        assert_eq!(
            v.iter().map(|v| v.name).collect::<Vec<_>>(),
            ["rrq_hq", "grq_domain"]
        );
        assert_eq!(select("seed,rrq_long_id").unwrap().len(), 12);
        assert_eq!(
            describe(&select("rrq_alias_kinds").unwrap()),
            "rrq_alias_kinds (643 B, gatekeeper keys d)"
        );
        for bad in ["", ",", "setup_no_ras", "grq_no_gkid", "nosuch"] {
            assert!(select(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn connections_cycle_through_the_vectors() {
        let v = select("grq_domain,rrq_hq,urq_gkid_ext").unwrap();
        let seq = |index| -> Vec<&str> {
            (0..4)
                .map(|nth| pick(&v, index, nth).unwrap().name)
                .collect()
        };
        assert_eq!(
            seq(0),
            ["grq_domain", "rrq_hq", "urq_gkid_ext", "grq_domain"]
        );
        assert_eq!(seq(4), ["rrq_hq", "urq_gkid_ext", "grq_domain", "rrq_hq"]);
        assert!(pick(&v, usize::MAX, usize::MAX).is_some());
        assert!(pick(&[], 0, 0).is_none());
    }
}
