//! portico-bench: the load generator for portico, and the minimal targets behind it.
//!
//! Scenarios (`http`, later `https`, `tunnel`, `sip`, `ldap`, `h323`, `turn`, `idle`)
//! each run their load on glommio executors and print a human table or, with
//! `--json`, one JSON object. `target …` runs a built-in backend until killed.
//!
//! Layout: [`http`] the HTTP load, [`response`] client-side response framing,
//! [`pacing`] fixed-rate schedules, [`stats`] histograms and reports, [`target`] the
//! built-in servers, [`runtime`] executors, placement and deadlines.

mod http;
mod pacing;
mod response;
mod runtime;
mod stats;
mod target;

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
}

/// Seconds from the command line as a Duration, checked.
fn seconds(name: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("--{name} must be a positive number of seconds"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Http(a) => {
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
                placement,
            } => target::run_http(target::HttpTarget {
                listen,
                name,
                executors: placement.executors()?,
                body_size,
            })?,
            TargetCommand::Echo { listen, placement } => {
                target::run_echo(listen, &placement.executors()?)?
            }
        },
    }
    Ok(())
}
