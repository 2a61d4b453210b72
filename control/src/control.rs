//! The control thread: the only writer of rules and blacklist. It receives events
//! from the shards, counts rejects, bans and unbans sources, publishes new snapshots,
//! and writes the log lines to stdout.
//!
//! SKELETON: signatures fixed, loop being written.

use std::sync::Arc;

use crate::event::{Event, EventSender, EVENT_QUEUE};
use crate::snapshot::Shared;

/// Handle of the running control thread.
pub struct ControlThread {
    pub events: EventSender,
    pub join: std::thread::JoinHandle<()>,
}

impl ControlThread {
    /// Start the control thread over `shared` (whose current rules give the blacklist
    /// limits and log switches). It runs until every [`EventSender`] is dropped.
    pub fn spawn(shared: Arc<Shared>) -> std::io::Result<ControlThread> {
        let (tx, rx) = crossbeam_channel::bounded::<Event>(EVENT_QUEUE);
        let join = std::thread::Builder::new().name("portico-control".into()).spawn(move || {
            let _ = shared;
            for _event in rx.iter() {}
        })?;
        Ok(ControlThread { events: EventSender::new(tx), join })
    }
}
