//! portico's control plane: everything that is decided once and read many times.
//!
//! Owns: the configuration model and its validation ([`config`]), the immutable
//! [`rules::RuleTable`] built from it, the blacklist authority ([`blacklist`]), the
//! snapshots published to the shards ([`snapshot`]), the events shards send back
//! ([`event`]), the seed-style log lines ([`log`]) and their syslog sink ([`syslog`]),
//! the shards' and the control thread's metrics ([`metrics`]) and the scrape endpoint
//! that shows them ([`scrape`]). The control thread
//! ([`control::ControlThread`]) is the only writer of rules and blacklist; shards load
//! an immutable snapshot once per routing decision. No glommio here, no sockets on the
//! hot path.

pub mod blacklist;
pub mod config;
pub mod control;
pub mod event;
pub mod lint;
pub mod log;
pub mod metrics;
pub mod plan;
pub mod rules;
pub mod scrape;
pub mod snapshot;
pub mod syslog;
