//! Events shards hand to the control thread. A shard never blocks on them: the channel
//! is bounded and a full channel drops the event (counted by the sender).

use std::net::IpAddr;

use crate::log::LogRecord;
use crate::metrics::ShardMetrics;

#[derive(Debug, Clone)]
pub enum Event {
    /// A routing decision refused a request from `source`; counts toward the blacklist.
    Reject { source: IpAddr },
    /// A forwarded or rejected decision to log (sent only when that kind is enabled).
    Log(Box<LogRecord>),
    /// A free-form operational message (start, errors) to log.
    Notice(String),
    /// Shard `shard`'s metrics since it started (cumulative): sent every second and
    /// when the shard drains; the control thread keeps the latest per shard.
    Metrics {
        shard: usize,
        metrics: Box<ShardMetrics>,
    },
}

/// Capacity of the event channel.
pub const EVENT_QUEUE: usize = 65536;

/// A shard's handle for sending events.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: crossbeam_channel::Sender<Event>,
}

impl EventSender {
    pub fn new(tx: crossbeam_channel::Sender<Event>) -> Self {
        EventSender { tx }
    }
    /// Hand `event` over without blocking; false when the queue was full and the event
    /// was dropped.
    pub fn send(&self, event: Event) -> bool {
        self.tx.try_send(event).is_ok()
    }
}
