//! Starting portico from a validated config: the TLS configurations, the control
//! thread, the listening sockets (probed first), and one pinned glommio executor per
//! shard.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use glommio::{LocalExecutorBuilder, Placement};
use portico_control::config::Config;
use portico_control::control::ControlThread;
use portico_control::event::Event;
use portico_control::snapshot::Shared;

use crate::listener::{self, Service};
use crate::shard::{self, ShardInit};

/// glommio's registered I/O memory per shard. portico does no DMA file I/O, and the
/// locked-memory limit (`ulimit -l`, often 8 MiB) must hold every shard's share.
const IO_MEMORY: usize = 256 * 1024;

/// The services this build serves; the others in the config are announced and not
/// bound.
fn served(service: Service) -> bool {
    matches!(service, Service::Http | Service::Https)
}

/// Run portico until the shards end. `shards` defaults to the number of CPUs.
pub fn run(config: Config, shards: Option<usize>) -> Result<()> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let shards = shards.unwrap_or(cpus).max(1);
    let config = Arc::new(config);

    let server_tls = crate::tls::server_config(&config)?;
    let target_tls = Arc::new(crate::tls::target_config(&config)?);

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
            "{}: nothing to serve: set http and/or https in [proxy.listen]",
            config.path.display()
        ));
    }
    for ep in &endpoints {
        listener::probe(ep)?;
    }
    let mut per_shard: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
    for ep in &endpoints {
        for list in per_shard.iter_mut() {
            list.push((*ep, listener::bind_reuseport(ep)?));
        }
    }

    let shared = Shared::new(config.clone());
    let control =
        ControlThread::spawn(shared.clone()).context("cannot start the control thread")?;
    let events = control.events.clone();
    if let Some(note) = &server_tls.self_signed_note {
        events.send(Event::Notice(note.clone()));
    }
    for name in &skipped {
        events.send(Event::Notice(format!(
            "{name}: listener configured but not served by this build; not listening"
        )));
    }
    let listening: Vec<String> = endpoints
        .iter()
        .map(|e| format!("{} {}", e.service.name(), e.addr))
        .collect();
    events.send(Event::Notice(format!(
        "started with {shards} shard(s), listening on {}",
        if listening.is_empty() {
            "nothing".to_string()
        } else {
            listening.join(", ")
        }
    )));

    let mut handles = Vec::new();
    for (index, listeners) in per_shard.into_iter().enumerate() {
        let placement = if shards <= cpus {
            Placement::Fixed(index)
        } else {
            Placement::Unbound
        };
        let init = ShardInit {
            index,
            shards,
            shared: shared.clone(),
            events: events.clone(),
            server_tls: server_tls.config.clone(),
            target_tls: target_tls.clone(),
            listeners,
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("portico-shard-{index}"))
            .io_memory(IO_MEMORY)
            .spawn(move || shard::run(init))
            .map_err(|e| anyhow!("cannot start shard {index}: {e}"))?;
        handles.push(handle);
    }
    drop(events);
    drop(control.events);
    for h in handles {
        h.join().map_err(|e| anyhow!("shard failed: {e}"))?;
    }
    let _ = control.join.join();
    Ok(())
}
