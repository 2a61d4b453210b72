//! Immutable snapshots published by the control thread and read lock-free by the
//! shards (arc-swap). Rules change on reload; the blacklist changes when a source is
//! banned or a ban expires, so the two are published separately.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::blacklist::Blacklist;
use crate::config::Config;
use crate::rules::RuleTable;

/// One generation of the configuration as the shards use it.
#[derive(Debug)]
pub struct RuleSnapshot {
    /// Increases by one with every successful (re)load.
    pub generation: u64,
    pub config: Arc<Config>,
    pub rules: RuleTable,
}

/// What the control thread publishes and the shards read.
#[derive(Debug)]
pub struct Shared {
    rules: ArcSwap<RuleSnapshot>,
    blacklist: ArcSwap<Blacklist>,
}

impl Shared {
    pub fn new(config: Arc<Config>) -> Arc<Shared> {
        let rules = RuleTable::from_config(&config);
        Arc::new(Shared {
            rules: ArcSwap::from_pointee(RuleSnapshot {
                generation: 1,
                config,
                rules,
            }),
            blacklist: ArcSwap::from_pointee(Blacklist::default()),
        })
    }

    /// The current rules; load once per routing decision and keep the `Arc`.
    pub fn rules(&self) -> Arc<RuleSnapshot> {
        self.rules.load_full()
    }

    /// The current rules for a quick look that is not held across an await (a log
    /// switch, a timeout): no reference count is taken.
    pub fn peek_rules(&self) -> arc_swap::Guard<Arc<RuleSnapshot>> {
        self.rules.load()
    }

    /// The current blacklist, for the check at accept.
    pub fn blacklist(&self) -> arc_swap::Guard<Arc<Blacklist>> {
        self.blacklist.load()
    }

    /// Control thread only.
    pub fn publish_rules(&self, snapshot: RuleSnapshot) {
        self.rules.store(Arc::new(snapshot));
    }

    /// Control thread only.
    pub fn publish_blacklist(&self, blacklist: Blacklist) {
        self.blacklist.store(Arc::new(blacklist));
    }
}
