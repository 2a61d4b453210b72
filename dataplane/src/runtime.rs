//! Starting and steering portico: the supervisor.
//!
//! The supervisor runs on the main thread. It builds the TLS configurations, probes
//! and binds the listening sockets, starts the control thread and one pinned glommio
//! executor per shard, and then waits for operators: SIGHUP or `portico reload` (over
//! the control socket) reload the configuration; SIGTERM or SIGINT drain and stop; a
//! second stop signal exits at once.
//!
//! A reload re-reads and validates the file and refuses it whole, with the same
//! errors as `portico check`, when anything is wrong (config, certificates, a port
//! that cannot be bound); the running configuration then stays. Otherwise it binds
//! the added listeners on every shard, publishes the new rules and TLS set, and
//! closes the removed listeners. Connections already routed keep their routing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use arc_swap::ArcSwap;
use crossbeam_channel::{select, Receiver, Sender};
use glommio::{LocalExecutorBuilder, Placement};
use portico_control::config::Config;
use portico_control::control::ControlThread;
use portico_control::event::{Event, EventSender};
use portico_control::metrics::{MetricsStore, ReloadOutcome};
use portico_control::rules::RuleTable;
use portico_control::snapshot::{RuleSnapshot, Shared};

use crate::listener::{self, Endpoint, Service};
use crate::shard::{self, ShardCommand, ShardInit};
use crate::tls::TlsSet;

/// glommio's registered I/O memory per shard. portico does no DMA file I/O, and the
/// locked-memory limit (`ulimit -l`, often 8 MiB) must hold every shard's share.
const IO_MEMORY: usize = 256 * 1024;

/// How `portico run` was asked to run.
pub struct RunOptions {
    /// Number of shards; default one per CPU.
    pub shards: Option<usize>,
    /// How long a stop waits for established connections.
    pub grace: Duration,
    /// Where to accept `portico reload`; none by default.
    pub control_socket: Option<PathBuf>,
}

/// The services this build serves; the others in the config are announced and not
/// bound.
fn served(_service: Service) -> bool {
    true
}

/// The endpoints to serve, and the names of configured services this build skips.
fn plan_endpoints(config: &Config) -> Result<(Vec<Endpoint>, Vec<&'static str>)> {
    let mut endpoints = Vec::new();
    let mut skipped = Vec::new();
    for ep in listener::endpoints(&config.proxy.listen) {
        if served(ep.service) {
            endpoints.push(ep);
        } else if !skipped.contains(&ep.service.name()) {
            skipped.push(ep.service.name());
        }
    }
    if endpoints.is_empty() {
        return Err(anyhow!(
            "{}: nothing to serve: set a port in [proxy.listen]",
            config.path.display()
        ));
    }
    Ok((endpoints, skipped))
}

/// One SO_REUSEPORT socket per shard for each endpoint (probed first). On error
/// every socket made so far is closed.
fn bind_all(
    endpoints: &[Endpoint],
    shards: usize,
) -> Result<Vec<Vec<(Endpoint, std::os::fd::RawFd)>>> {
    let mut per_shard: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
    let close_all = |per_shard: &Vec<Vec<(Endpoint, std::os::fd::RawFd)>>| {
        for (_, fd) in per_shard.iter().flatten() {
            // SAFETY: closing sockets we made and never handed out.
            unsafe { libc::close(*fd) };
        }
    };
    for ep in endpoints {
        if let Err(e) = listener::probe(ep) {
            close_all(&per_shard);
            return Err(e);
        }
        for list in per_shard.iter_mut() {
            match listener::bind_reuseport(ep) {
                Ok(fd) => list.push((*ep, fd)),
                Err(e) => {
                    close_all(&per_shard);
                    return Err(e);
                }
            }
        }
    }
    Ok(per_shard)
}

/// What the supervisor waits on.
enum Wake {
    Signal(i32),
    Reload(Sender<String>),
    ShardsDone,
}

struct Supervisor {
    config: Arc<Config>,
    generation: u64,
    endpoints: Vec<Endpoint>,
    shared: Arc<Shared>,
    tls: Arc<ArcSwap<TlsSet>>,
    shard_commands: Vec<Sender<ShardCommand>>,
    events: EventSender,
    metrics: Arc<MetricsStore>,
}

impl Supervisor {
    fn notice(&self, msg: String) {
        self.events.send(Event::Notice(msg));
    }

    /// Re-read the file and apply it, or refuse it whole. Returns the reply for
    /// `portico reload`: first line `ok ...` or `error ...`.
    fn reload(&mut self) -> String {
        match self.try_reload() {
            Ok(summary) => {
                self.notice(format!("reload: {summary}"));
                format!("ok {summary}\n")
            }
            Err(errors) => {
                self.metrics
                    .record_reload(ReloadOutcome::Refused, std::time::SystemTime::now());
                self.notice(format!(
                    "reload refused, generation {} stays: {}",
                    self.generation,
                    errors.replace('\n', " | ")
                ));
                format!(
                    "error reload refused, generation {} stays\n{errors}\n",
                    self.generation
                )
            }
        }
    }

    fn try_reload(&mut self) -> Result<String, String> {
        let config = portico_control::config::load(&self.config.path).map_err(|errors| {
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let (endpoints, _) = plan_endpoints(&config).map_err(|e| e.to_string())?;
        let tls = TlsSet::from_config(&config).map_err(|e| format!("{e:#}"))?;
        let added: Vec<Endpoint> = endpoints
            .iter()
            .filter(|e| !self.endpoints.contains(e))
            .copied()
            .collect();
        let removed: Vec<Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| !endpoints.contains(e))
            .copied()
            .collect();
        let sockets = bind_all(&added, self.shard_commands.len()).map_err(|e| format!("{e:#}"))?;

        // Apply: rules and TLS first, so the new listeners route by the new rules.
        self.generation += 1;
        let config = Arc::new(config);
        let rules = RuleTable::from_config(&config);
        self.shared.publish_rules(RuleSnapshot {
            generation: self.generation,
            config: config.clone(),
            rules,
        });
        self.tls.store(Arc::new(tls));
        for (commands, list) in self.shard_commands.iter().zip(sockets) {
            if !list.is_empty() {
                let _ = commands.send(ShardCommand::Listen(list));
            }
            if !removed.is_empty() {
                let _ = commands.send(ShardCommand::Unlisten(removed.clone()));
            }
        }
        let describe = |list: &[Endpoint]| {
            list.iter()
                .map(|e| format!("{} {}", e.service.name(), e.addr))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut summary = format!(
            "generation {} from {}",
            self.generation,
            config.path.display()
        );
        if !added.is_empty() {
            summary.push_str(&format!("; now listening on {}", describe(&added)));
        }
        if !removed.is_empty() {
            summary.push_str(&format!("; stopped listening on {}", describe(&removed)));
        }
        self.config = config;
        self.endpoints = endpoints;
        Ok(summary)
    }
}

/// Serve `portico reload` on a unix socket: one line in (`reload`), the result out.
fn spawn_control_socket(path: &Path, wake: Sender<Wake>) -> Result<()> {
    // A socket file left by a previous run is replaced; a live one is refused.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(anyhow!(
            "control socket {} is in use by another portico",
            path.display()
        ));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot open control socket {}", path.display()))?;
    std::thread::Builder::new()
        .name("portico-ctl".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                let mut reader = BufReader::new((&stream).take(256));
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let reply = match line.trim() {
                    "reload" => {
                        let (tx, rx) = crossbeam_channel::bounded(1);
                        if wake.send(Wake::Reload(tx)).is_err() {
                            return;
                        }
                        rx.recv_timeout(Duration::from_secs(30))
                            .unwrap_or_else(|_| "error no answer\n".into())
                    }
                    other => format!("error unknown command {other:?}; say `reload`\n"),
                };
                let mut stream = &stream;
                let _ = stream.write_all(reply.as_bytes());
            }
        })?;
    Ok(())
}

/// Ask a running portico to reload over its control socket; returns its answer.
pub fn request_reload(path: &Path) -> Result<String> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "cannot reach portico at {} (is it running with --control-socket?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(35)))?;
    stream.write_all(b"reload\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// Run portico until it is stopped.
pub fn run(config: Config, options: RunOptions) -> Result<()> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let shards = options.shards.unwrap_or(cpus).max(1);
    let config = Arc::new(config);

    let tls_set = TlsSet::from_config(&config)?;
    let self_signed_note = tls_set.self_signed_note.clone();
    let tls = Arc::new(ArcSwap::from_pointee(tls_set));
    let (endpoints, skipped) = plan_endpoints(&config)?;
    let turn_endpoints = crate::turn::endpoints(&config);
    for ep in &turn_endpoints {
        crate::turn::probe(ep)?;
    }
    let sockets = bind_all(&endpoints, shards)?;
    let turn_config = crate::turn::turn_config(&config);
    let turn_secret = crate::turn::nonce_secret();
    let turn_ledger = portico_proto::turn::QuotaLedger::new();

    let (wake_tx, wake_rx) = crossbeam_channel::unbounded::<Wake>();
    if let Some(path) = &options.control_socket {
        spawn_control_socket(path, wake_tx.clone())?;
    }
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("cannot install signal handlers")?;
    {
        let wake = wake_tx.clone();
        std::thread::Builder::new()
            .name("portico-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if wake.send(Wake::Signal(sig)).is_err() {
                        return;
                    }
                }
            })?;
    }

    let shared = Shared::new(config.clone());
    let control =
        ControlThread::spawn(shared.clone()).context("cannot start the control thread")?;
    let events = control.events.clone();
    if let Some(note) = self_signed_note {
        events.send(Event::Notice(note));
    }
    for name in &skipped {
        events.send(Event::Notice(format!(
            "{name}: listener configured but not served by this build; not listening"
        )));
    }
    let mut listening: Vec<String> = endpoints
        .iter()
        .map(|e| format!("{} {}", e.service.name(), e.addr))
        .collect();
    listening.extend(
        turn_endpoints
            .iter()
            .map(|e| format!("turn-{:?} {}", e.transport, e.addr).to_lowercase()),
    );
    events.send(Event::Notice(format!(
        "started with {shards} shard(s), listening on {}",
        listening.join(", ")
    )));

    let mut handles = Vec::new();
    let mut shard_commands = Vec::new();
    for (index, listeners) in sockets.into_iter().enumerate() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let _ = tx.send(ShardCommand::Listen(listeners));
        shard_commands.push(tx);
        let placement = if shards <= cpus {
            Placement::Fixed(index)
        } else {
            Placement::Unbound
        };
        let turn = match &turn_config {
            Some(config) => {
                let mut turn_sockets = Vec::new();
                for ep in &turn_endpoints {
                    turn_sockets.push((*ep, crate::turn::bind_endpoint(ep, shards)?));
                }
                Some(shard::TurnInit {
                    config: config.clone(),
                    secret: turn_secret,
                    ledger: turn_ledger.clone(),
                    sockets: turn_sockets,
                })
            }
            None => None,
        };
        let init = ShardInit {
            index,
            shards,
            shared: shared.clone(),
            events: events.clone(),
            tls: tls.clone(),
            commands: rx,
            turn,
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("portico-shard-{index}"))
            .io_memory(IO_MEMORY)
            .spawn(move || shard::run(init))
            .map_err(|e| anyhow!("cannot start shard {index}: {e}"))?;
        handles.push(handle);
    }
    // Tell the supervisor when every shard has ended.
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    std::thread::Builder::new()
        .name("portico-join".into())
        .spawn(move || {
            for h in handles {
                let _ = h.join();
            }
            let _ = done_tx.send(());
        })?;

    let mut supervisor = Supervisor {
        generation: 1,
        config,
        endpoints,
        shared,
        tls,
        shard_commands,
        events: events.clone(),
        metrics: control.metrics.clone(),
    };
    supervise(&mut supervisor, &wake_rx, &done_rx, options.grace);
    if let Some(path) = &options.control_socket {
        let _ = std::fs::remove_file(path);
    }
    events.send(Event::Notice("stopped".into()));
    drop(events);
    drop(supervisor);
    drop(control.events);
    // The control thread ends when the last event sender is gone; a task leaked by
    // an executor that ended could keep one, so wait a little, not forever.
    let waited = std::time::Instant::now();
    while !control.join.is_finished() && waited.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn supervise(s: &mut Supervisor, wake: &Receiver<Wake>, done: &Receiver<()>, grace: Duration) {
    let mut stopping = false;
    loop {
        let event = select! {
            recv(wake) -> w => match w { Ok(w) => w, Err(_) => return },
            recv(done) -> _ => Wake::ShardsDone,
        };
        match event {
            Wake::ShardsDone => return,
            Wake::Signal(signal_hook::consts::SIGHUP) if !stopping => {
                s.reload();
            }
            Wake::Reload(reply) if !stopping => {
                let _ = reply.send(s.reload());
            }
            Wake::Reload(reply) => {
                let _ = reply.send("error stopping\n".into());
            }
            Wake::Signal(signal_hook::consts::SIGHUP) => {}
            Wake::Signal(_) if stopping => {
                // A second stop signal: stop at once.
                s.notice("second stop signal: exiting now".into());
                std::thread::sleep(Duration::from_millis(50));
                std::process::exit(1);
            }
            Wake::Signal(_) => {
                stopping = true;
                s.notice(format!(
                    "stopping: no new connections; draining for up to {}s",
                    grace.as_secs_f64()
                ));
                for commands in &s.shard_commands {
                    let _ = commands.send(ShardCommand::Drain { grace });
                }
            }
        }
    }
}
