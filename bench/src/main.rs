//! portico-bench: the load generator for portico, and the minimal targets behind it.
//!
//! Scenarios (`http`, `https`, `tunnel`, `sip`, `ldap`, `h323`, `turn`, `idle`) each
//! run their load on glommio executors, bounded in time, and print a human table or,
//! with `--json`, one JSON object.
//! `target …` runs a built-in backend until killed.
//!
//! Layout: [`http`] the HTTP/HTTPS load, [`tunnel`] bulk relay throughput, [`sip`]
//! and [`ldap`] their loads and targets, [`h323`] first-message routing from the
//! committed H.225.0 vectors, [`turn`] TURN relay load and the UDP echo peer (with
//! [`stun`], its own client-side STUN codec), [`idle`] memory per idle connection,
//! [`response`] client-side response framing, [`pacing`] fixed-rate schedules,
//! [`stats`] histograms and reports, [`target`] the HTTP/echo/upgrade servers,
//! [`tls`] rustls client and server settings, [`runtime`] executors, placement and
//! deadlines.

mod h323;
mod http;
mod idle;
mod ldap;
mod pacing;
mod response;
mod runtime;
mod sip;
mod stats;
mod stun;
mod target;
mod tls;
mod tunnel;
mod turn;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "portico-bench",
    version,
    about = "Load generator and benchmark targets for portico"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the load runs.
#[derive(Args, Debug, Clone)]
struct Placement {
    /// Executor threads (one glommio executor each).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// CPUs to pin the executors to, round robin (e.g. `1` or `0-3,6`); unbound when
    /// absent.
    #[arg(long, value_name = "LIST")]
    cpu: Option<String>,
    /// Microseconds each executor busy-polls before sleeping (saves wake-ups, costs
    /// CPU).
    #[arg(long, value_name = "MICROS", default_value_t = 0)]
    spin_us: u64,
}

impl Placement {
    fn executors(&self) -> Result<runtime::Executors> {
        Ok(runtime::Executors {
            threads: self.threads.max(1),
            cpus: self
                .cpu
                .as_deref()
                .map(runtime::parse_cpu_list)
                .transpose()?,
            spin: Duration::from_micros(self.spin_us),
        })
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// HTTP/1.1 GET load against a URL.
    Http(HttpArgs),
    /// HTTPS load: `--mode new-connection` is one full TLS handshake per request (no
    /// resumption), `keepalive` many requests per TLS connection.
    Https(HttpArgs),
    /// Bulk throughput through a relayed connection to an echo (or upgrade) target.
    Tunnel(TunnelArgs),
    /// SIP REGISTER transactions over TCP.
    Sip(SipArgs),
    /// LDAP bind + search, a new connection per bind.
    Ldap(LdapArgs),
    /// H.323 first messages (the committed H.225.0 vectors), a new connection per
    /// routing decision; against portico with `target echo` behind it.
    H323(H323Args),
    /// RSS growth of a server process per idle kept-alive connection.
    Idle(IdleArgs),
    /// TURN relay load: allocations with channels, fixed-size datagrams to an echo
    /// peer (`target turn-peer`) at a fixed or max rate; loss, reordering, RTT.
    Turn(TurnArgs),
    /// Run a built-in target until killed.
    Target {
        #[command(subcommand)]
        target: TargetCommand,
    },
}

#[derive(Args, Debug)]
struct HttpArgs {
    /// `http://HOST[:PORT]/path`; HOST[:PORT] is the Host header unless
    /// `--host-header` is given.
    #[arg(long)]
    url: String,
    /// Connect here instead of resolving the URL's host (like curl --resolve).
    #[arg(long, value_name = "ADDR")]
    connect: Option<SocketAddr>,
    /// Host header to send.
    #[arg(long, value_name = "H")]
    host_header: Option<String>,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    headers: Vec<String>,
    /// Concurrent connections (one request in flight on each).
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Seconds to run (at most 600).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Total requests/s on a fixed schedule (latency from the scheduled send time);
    /// max-rate when absent.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, value_enum, default_value = "keepalive")]
    mode: http::Mode,
    /// Seconds allowed for a connect, and for each read or write.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    placement: Placement,
}

#[derive(Args, Debug)]
struct TunnelArgs {
    /// Address to connect to.
    #[arg(long)]
    connect: SocketAddr,
    /// Send an HTTP Upgrade request with this Host header first (the relay starts at
    /// the 101); a plain connection when absent.
    #[arg(long, value_name = "HOST")]
    upgrade_host: Option<String>,
    /// Path of the Upgrade request.
    #[arg(long, default_value = "/ws")]
    upgrade_path: String,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Bytes per write.
    #[arg(long, default_value_t = 65536)]
    chunk: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    placement: Placement,
}

#[derive(Args, Debug)]
struct SipArgs {
    #[arg(long)]
    connect: SocketAddr,
    /// From domain (the proxy's routing key).
    #[arg(long, default_value = "bench.example")]
    domain: String,
    #[arg(long, default_value_t = 50)]
    connections: usize,
    #[arg(long, value_enum, default_value = "new-connection")]
    mode: sip::SipMode,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    placement: Placement,
}

#[derive(Args, Debug)]
struct LdapArgs {
    #[arg(long)]
    connect: SocketAddr,
    /// Bind domain (`DOMAIN\userN`: the proxy's routing key).
    #[arg(long, default_value = "bench.example")]
    domain: String,
    #[arg(long, default_value_t = 50)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    placement: Placement,
}

#[derive(Args, Debug)]
struct H323Args {
    /// portico's `h323` listener (`h323_tls` with --tls), or the echo target itself.
    #[arg(long)]
    connect: SocketAddr,
    /// Comma-separated vector names, or `seed`: every vector routed by one of the
    /// seed's H.323 hosts (dvl-ckl2.net, dvl-ckl2.net/hq, dvl-ckl2.net/branch-b).
    #[arg(long, default_value = "seed")]
    vectors: String,
    /// Speak TLS: one full handshake per new connection (no resumption, no
    /// certificate check).
    #[arg(long)]
    tls: bool,
    /// SNI name sent with --tls.
    #[arg(long, default_value = "dvl-ckl2.net")]
    sni: String,
    #[arg(long, default_value_t = 50)]
    connections: usize,
    #[arg(long, value_enum, default_value = "new-connection")]
    mode: h323::H323Mode,
    /// Total messages/s on a fixed schedule (latency from the scheduled send time);
    /// max rate when absent.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    placement: Placement,
}

#[derive(Args, Debug)]
struct IdleArgs {
    /// `http://` or `https://` URL requested once on each connection.
    #[arg(long)]
    url: String,
    #[arg(long, value_name = "ADDR")]
    connect: Option<SocketAddr>,
    #[arg(long, value_name = "H")]
    host_header: Option<String>,
    /// The server process whose VmRSS is read.
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Connections opened at a time.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Send an HTTP Upgrade (websocket) instead and hold the relayed tunnels (the
    /// target must be `target upgrade`).
    #[arg(long)]
    upgrade: bool,
    /// Seconds to wait after the last connection before reading VmRSS again.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    placement: Placement,
}

#[derive(Args, Debug)]
struct TurnArgs {
    /// The TURN server (UDP).
    #[arg(long, default_value = "127.0.0.1:3478")]
    server: SocketAddr,
    /// The echo peer (`target turn-peer`), as the server reaches it.
    #[arg(long)]
    peer: SocketAddr,
    /// Long-term credential user name.
    #[arg(long)]
    user: String,
    /// Spread the allocations over N user names, `USER0` … `USER{N-1}` (all with
    /// --password), for servers that cap allocations per user.
    #[arg(long, default_value_t = 1)]
    users: usize,
    #[arg(long)]
    password: String,
    /// Bind the client sockets to this address (and the next ones with --sources);
    /// any address when absent.
    #[arg(long, value_name = "IP")]
    source: Option<std::net::IpAddr>,
    /// Spread the allocations over N consecutive source addresses from --source
    /// (e.g. `--source 127.0.0.2 --sources 16`: a server may limit 401 challenges
    /// per client IP).
    #[arg(long, default_value_t = 1, requires = "source")]
    sources: usize,
    /// Realm for the key; the one the server's 401 names when absent.
    #[arg(long)]
    realm: Option<String>,
    #[arg(long, default_value_t = 50)]
    allocations: usize,
    /// Payload bytes per datagram (172: a 20 ms G.711 RTP packet with its header).
    #[arg(long, default_value_t = 172)]
    size: usize,
    /// Total datagrams/s on a fixed schedule (RTT from the scheduled send time); max
    /// rate when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Max rate: datagrams outstanding per allocation.
    #[arg(long, default_value_t = 8)]
    window: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds to wait for datagrams still in flight after the run.
    #[arg(long, default_value_t = 1.0)]
    drain: f64,
    /// Seconds to wait for each STUN response (3 tries).
    #[arg(long, default_value_t = 1.0)]
    timeout: f64,
    /// Send indications / Data indications instead of channels (no ChannelBind).
    #[arg(long)]
    send_indications: bool,
    /// Send nothing: set up the allocations, hold them --settle seconds, delete them
    /// (with --pid: the server's memory per allocation).
    #[arg(long)]
    idle: bool,
    /// Server process whose VmRSS is read before setup and after it (+ --settle).
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds to hold after setup before reading VmRSS (with --pid or --idle).
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    placement: Placement,
}

#[derive(Subcommand, Debug)]
enum TargetCommand {
    /// HTTP/1.1 keep-alive server answering every request with 200.
    Http {
        #[arg(long)]
        listen: SocketAddr,
        /// Name in the default body (`NAME PATH\n`).
        #[arg(long, default_value = "target")]
        name: String,
        /// Answer with a fixed body of this many bytes instead of `NAME PATH\n`.
        #[arg(long, value_name = "BYTES")]
        body_size: Option<usize>,
        /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// Private key (PEM) for --tls-cert.
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        #[command(flatten)]
        placement: Placement,
    },
    /// Answers the first request with 101 Switching Protocols, then echoes.
    Upgrade {
        #[arg(long)]
        listen: SocketAddr,
        #[command(flatten)]
        placement: Placement,
    },
    /// SIP over TCP: 200 OK to every request (Via/From/To/Call-ID/CSeq copied).
    Sip {
        #[arg(long)]
        listen: SocketAddr,
        #[command(flatten)]
        placement: Placement,
    },
    /// LDAP: BindResponse success, SearchResultDone success, close on unbind.
    Ldap {
        #[arg(long)]
        listen: SocketAddr,
        #[command(flatten)]
        placement: Placement,
    },
    /// TCP echo server.
    Echo {
        #[arg(long)]
        listen: SocketAddr,
        #[command(flatten)]
        placement: Placement,
    },
    /// UDP echo peer for `turn`: every datagram back to its sender (the relayed
    /// address).
    TurnPeer {
        #[arg(long)]
        listen: SocketAddr,
        #[command(flatten)]
        placement: Placement,
    },
}

/// Seconds from the command line as a Duration, checked.
fn seconds(name: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("--{name} must be a positive number of seconds"))
}

/// Print a report as a table or one JSON object.
fn print<R: serde::Serialize>(
    json: bool,
    report: &R,
    table: impl FnOnce(&R) -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", table(report));
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Https(a) if !a.url.to_ascii_lowercase().starts_with("https://") => {
            anyhow::bail!("https wants an https:// URL");
        }
        Command::Tunnel(a) => {
            let load = tunnel::TunnelLoad {
                connect: a.connect,
                upgrade: a.upgrade_host.map(|h| (h, a.upgrade_path)),
                connections: a.connections,
                chunk: a.chunk,
                duration: seconds("duration", a.duration)?,
                timeout: seconds("timeout", a.timeout)?,
                executors: a.placement.executors()?,
            };
            print(a.json, &tunnel::run(load)?, tunnel::TunnelReport::to_table)?;
        }
        Command::Sip(a) => {
            let load = sip::SipLoad {
                connect: a.connect,
                domain: a.domain,
                connections: a.connections,
                duration: seconds("duration", a.duration)?,
                mode: a.mode,
                timeout: seconds("timeout", a.timeout)?,
                executors: a.placement.executors()?,
            };
            print(a.json, &sip::run(load)?, stats::Report::to_table)?;
        }
        Command::Ldap(a) => {
            let load = ldap::LdapLoad {
                connect: a.connect,
                domain: a.domain,
                connections: a.connections,
                duration: seconds("duration", a.duration)?,
                timeout: seconds("timeout", a.timeout)?,
                executors: a.placement.executors()?,
            };
            print(a.json, &ldap::run(load)?, stats::Report::to_table)?;
        }
        Command::H323(a) => {
            let load = h323::H323Load {
                connect: a.connect,
                vectors: h323::select(&a.vectors)?,
                tls: a.tls.then_some(a.sni),
                connections: a.connections,
                duration: seconds("duration", a.duration)?,
                rate: a.rate,
                mode: a.mode,
                timeout: seconds("timeout", a.timeout)?,
                executors: a.placement.executors()?,
            };
            print(a.json, &h323::run(load)?, stats::Report::to_table)?;
        }
        Command::Idle(a) => {
            let load = idle::IdleLoad {
                url: a.url,
                connect: a.connect,
                host_header: a.host_header,
                pid: a.pid,
                connections: a.connections,
                concurrency: a.concurrency,
                upgrade: a.upgrade,
                settle: seconds("settle", a.settle)?,
                timeout: seconds("timeout", a.timeout)?,
                executors: a.placement.executors()?,
            };
            print(a.json, &idle::run(load)?, idle::IdleReport::to_table)?;
        }
        Command::Turn(a) => {
            let load = turn::TurnLoad {
                server: a.server,
                peer: a.peer,
                user: a.user,
                users: a.users,
                password: a.password,
                source: a.source,
                sources: a.sources,
                realm: a.realm,
                allocations: a.allocations,
                size: a.size,
                rate: a.rate,
                window: a.window,
                duration: seconds("duration", a.duration)?,
                drain: seconds("drain", a.drain)?,
                timeout: seconds("timeout", a.timeout)?,
                send_indications: a.send_indications,
                idle: a.idle,
                pid: a.pid,
                settle: seconds("settle", a.settle)?,
                executors: a.placement.executors()?,
            };
            print(a.json, &turn::run(load)?, turn::TurnReport::to_table)?;
        }
        Command::Http(a) | Command::Https(a) => {
            let load = http::HttpLoad {
                url: a.url,
                connect: a.connect,
                host_header: a.host_header,
                headers: a.headers,
                connections: a.connections,
                duration: seconds("duration", a.duration)?,
                rate: a.rate,
                mode: a.mode,
                timeout: seconds("timeout", a.timeout)?,
                executors: a.placement.executors()?,
            };
            let report = http::run(load)?;
            if a.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.to_table());
            }
        }
        Command::Target { target } => match target {
            TargetCommand::Http {
                listen,
                name,
                body_size,
                tls_cert,
                tls_key,
                placement,
            } => target::run_http(target::HttpTarget {
                listen,
                name,
                executors: placement.executors()?,
                body_size,
                tls: match (tls_cert, tls_key) {
                    (Some(c), Some(k)) => Some(tls::server_config(&c, &k)?),
                    _ => None,
                },
            })?,
            TargetCommand::Upgrade { listen, placement } => {
                target::run_upgrade(listen, &placement.executors()?)?
            }
            TargetCommand::Sip { listen, placement } => {
                sip::run_target(listen, &placement.executors()?)?
            }
            TargetCommand::Ldap { listen, placement } => {
                ldap::run_target(listen, &placement.executors()?)?
            }
            TargetCommand::Echo { listen, placement } => {
                target::run_echo(listen, &placement.executors()?)?
            }
            TargetCommand::TurnPeer { listen, placement } => {
                turn::run_peer(listen, &placement.executors()?)?
            }
        },
    }
    Ok(())
}
