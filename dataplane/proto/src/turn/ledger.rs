//! Allocation counts shared by the shards of one process, so that the per-user and
//! total allocation quotas hold for the whole server rather than for each shard.
//!
//! Each shard's [`super::TurnServer`] keeps its own exact counts (for its own
//! allocations); the ledger is consulted once per Allocate and updated once when an
//! allocation is made or ends, never per packet. The check and the count are two
//! steps, so shards deciding at the same instant can pass a quota by at most one
//! allocation each (the shard count minus one in all), for as long as those
//! allocations live; a 486/508 is otherwise exact process-wide.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::config::Quotas;
use super::event::QuotaKind;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct QuotaLedger {
    total: AtomicU64,
    per_user: Mutex<HashMap<Arc<str>, u32>>,
}

impl QuotaLedger {
    /// An empty ledger, to give to every shard's server.
    pub fn new() -> Arc<QuotaLedger> {
        Arc::new(QuotaLedger::default())
    }

    fn users(&self) -> MutexGuard<'_, HashMap<Arc<str>, u32>> {
        // A shard that panicked while holding the lock left a consistent map (every
        // update is one insert or one decrement): keep using it.
        self.per_user.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The quota one more allocation for `user` would exceed, if any.
    pub fn exceeded(&self, user: &str, quotas: &Quotas) -> Option<QuotaKind> {
        if self.users().get(user).copied().unwrap_or(0) >= quotas.allocations_per_user {
            return Some(QuotaKind::AllocationsPerUser);
        }
        if self.total.load(Ordering::Relaxed) >= u64::from(quotas.allocations_total) {
            return Some(QuotaKind::AllocationsTotal);
        }
        None
    }

    /// Count an allocation made for `user`.
    pub fn take(&self, user: &Arc<str>) {
        *self.users().entry(user.clone()).or_insert(0) += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an allocation of `user` that ended.
    pub fn give_back(&self, user: &str) {
        let mut users = self.users();
        if let Some(count) = users.get_mut(user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                users.remove(user);
            }
            // Only what was taken is given back: the total cannot wrap.
            let _ = self
                .total
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1));
        }
    }

    /// Allocations counted now.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Allocations counted now for `user`.
    pub fn of_user(&self, user: &str) -> u32 {
        self.users().get(user).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(per_user: u32, total: u32) -> Quotas {
        Quotas {
            allocations_per_user: per_user,
            allocations_total: total,
            ..Quotas::default()
        }
    }

    #[test]
    fn counts_per_user_and_in_total() {
        let l = QuotaLedger::new();
        let alice: Arc<str> = Arc::from("alice");
        let bob: Arc<str> = Arc::from("bob");
        let q = quotas(2, 3);
        assert_eq!(l.exceeded("alice", &q), None);
        l.take(&alice);
        l.take(&alice);
        assert_eq!(l.exceeded("alice", &q), Some(QuotaKind::AllocationsPerUser));
        assert_eq!(l.exceeded("bob", &q), None);
        l.take(&bob);
        assert_eq!(l.exceeded("bob", &q), Some(QuotaKind::AllocationsTotal));
        l.give_back("alice");
        assert_eq!((l.total(), l.of_user("alice")), (2, 1));
        assert_eq!(l.exceeded("alice", &q), None);
        // Giving back what was never taken changes nothing.
        l.give_back("carol");
        l.give_back("bob");
        l.give_back("bob");
        assert_eq!((l.total(), l.of_user("bob")), (1, 0));
    }

    #[test]
    fn shared_between_threads() {
        let l = QuotaLedger::new();
        let user: Arc<str> = Arc::from("u");
        std::thread::scope(|s| {
            for _ in 0..4 {
                let (l, user) = (l.clone(), user.clone());
                s.spawn(move || {
                    for _ in 0..1000 {
                        l.take(&user);
                    }
                    for _ in 0..500 {
                        l.give_back(&user);
                    }
                });
            }
        });
        assert_eq!((l.total(), l.of_user("u")), (2000, 2000));
    }
}
