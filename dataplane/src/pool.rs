//! A shard's idle target connections, kept for the next request of any client.
//!
//! When a client connection ends, the target connections it holds that are idle and
//! reusable (a complete response read, keep-alive) are put here instead of being
//! closed; a request that needs a target connection takes the most recently used one
//! for its key. Each key holds at most `per_key` connections and none longer than
//! `idle`: the oldest goes first when the key is full, and a sweep closes expired
//! ones (HAProxy's `pool-max-conn` and `pool-purge-delay`).
//!
//! The pool is plain data, single-threaded (one per shard), generic over the key and
//! the connection so that its rules are tested without sockets. Whether a pooled
//! connection is still open is the caller's check when it takes one.

use std::collections::VecDeque;
use std::hash::Hash;
use std::time::{Duration, Instant};

use ahash::AHashMap;

pub struct IdlePool<K, C> {
    per_key: usize,
    idle: Duration,
    /// Per key, oldest first.
    entries: AHashMap<K, VecDeque<(Instant, C)>>,
    len: usize,
}

impl<K: Hash + Eq + Clone, C> IdlePool<K, C> {
    /// `per_key` 0 keeps nothing (pooling off).
    pub fn new(per_key: usize, idle: Duration) -> IdlePool<K, C> {
        IdlePool {
            per_key,
            idle,
            entries: AHashMap::new(),
            len: 0,
        }
    }

    /// Follow a reload: new bounds apply to what is kept from now on; what no longer
    /// fits goes at the next [`IdlePool::purge`].
    pub fn set_limits(&mut self, per_key: usize, idle: Duration) {
        self.per_key = per_key;
        self.idle = idle;
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keep `conn` under `key`, idle since `now`. Returns what was pushed out to make
    /// room (the key's oldest), or `conn` itself when pooling is off: the caller
    /// closes it.
    pub fn put(&mut self, key: K, conn: C, now: Instant) -> Option<C> {
        if self.per_key == 0 {
            return Some(conn);
        }
        let list = self.entries.entry(key).or_default();
        list.push_back((now, conn));
        self.len += 1;
        if list.len() > self.per_key {
            self.len -= 1;
            return list.pop_front().map(|(_, c)| c);
        }
        None
    }

    /// The most recently kept connection for `key` that has not been idle too long.
    /// Expired ones met on the way are dropped.
    pub fn take(&mut self, key: &K, now: Instant) -> Option<C> {
        let list = self.entries.get_mut(key)?;
        let found = loop {
            match list.pop_back() {
                Some((since, conn)) => {
                    self.len -= 1;
                    if now.saturating_duration_since(since) < self.idle {
                        break Some(conn);
                    }
                    // Older ones behind it are expired too.
                    self.len -= list.len();
                    list.clear();
                }
                None => break None,
            }
        };
        if list.is_empty() {
            self.entries.remove(key);
        }
        found
    }

    /// Drop every connection idle for `idle` or longer and those past `per_key`;
    /// returns how many went.
    pub fn purge(&mut self, now: Instant) -> usize {
        let before = self.len;
        let (idle, per_key) = (self.idle, self.per_key);
        self.entries.retain(|_, list| {
            while list
                .front()
                .is_some_and(|(since, _)| now.saturating_duration_since(*since) >= idle)
                || list.len() > per_key
            {
                list.pop_front();
            }
            !list.is_empty()
        });
        self.len = self.entries.values().map(VecDeque::len).sum();
        before - self.len
    }

    /// Drop everything (a drain).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn takes_the_most_recent_for_its_key() {
        let t0 = Instant::now();
        let mut p = IdlePool::new(4, Duration::from_secs(5));
        assert_eq!(p.put("a", 1, t0), None);
        assert_eq!(p.put("a", 2, at(t0, 10)), None);
        assert_eq!(p.put("b", 3, at(t0, 20)), None);
        assert_eq!(p.len(), 3);
        assert_eq!(p.take(&"a", at(t0, 30)), Some(2));
        assert_eq!(p.take(&"a", at(t0, 30)), Some(1));
        assert_eq!(p.take(&"a", at(t0, 30)), None);
        assert_eq!(p.take(&"c", at(t0, 30)), None);
        assert_eq!(p.len(), 1);
        assert_eq!(p.take(&"b", at(t0, 30)), Some(3));
        assert!(p.is_empty());
    }

    #[test]
    fn a_full_key_pushes_out_its_oldest() {
        let t0 = Instant::now();
        let mut p = IdlePool::new(2, Duration::from_secs(5));
        assert_eq!(p.put("a", 1, t0), None);
        assert_eq!(p.put("a", 2, t0), None);
        assert_eq!(p.put("b", 9, t0), None);
        assert_eq!(p.put("a", 3, t0), Some(1));
        assert_eq!(p.len(), 3);
        assert_eq!(p.take(&"a", t0), Some(3));
        assert_eq!(p.take(&"a", t0), Some(2));
    }

    #[test]
    fn expired_connections_are_never_handed_out() {
        let t0 = Instant::now();
        let mut p = IdlePool::new(8, Duration::from_secs(5));
        p.put("a", 1, t0);
        p.put("a", 2, at(t0, 1000));
        p.put("a", 3, at(t0, 4000));
        // At 5.5 s: 3 is 1.5 s idle, 2 is 4.5 s, 1 is 5.5 s.
        assert_eq!(p.take(&"a", at(t0, 5500)), Some(3));
        assert_eq!(p.take(&"a", at(t0, 5500)), Some(2));
        assert_eq!(p.take(&"a", at(t0, 5500)), None);
        assert!(p.is_empty());
        // The newest expired: everything behind it goes too.
        p.put("b", 1, t0);
        p.put("b", 2, at(t0, 100));
        assert_eq!(p.take(&"b", at(t0, 6000)), None);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn purge_closes_the_expired_and_the_surplus() {
        let t0 = Instant::now();
        let mut p = IdlePool::new(8, Duration::from_secs(5));
        p.put("a", 1, t0);
        p.put("a", 2, at(t0, 3000));
        p.put("b", 3, at(t0, 100));
        assert_eq!(p.purge(at(t0, 4000)), 0);
        assert_eq!(p.purge(at(t0, 5200)), 2);
        assert_eq!(p.len(), 1);
        // A reload that shrinks the pool takes effect at the next purge.
        p.put("a", 4, at(t0, 5300));
        p.put("a", 5, at(t0, 5400));
        p.set_limits(1, Duration::from_secs(5));
        assert_eq!(p.purge(at(t0, 5500)), 2);
        assert_eq!(p.take(&"a", at(t0, 5500)), Some(5));
        p.put("c", 6, at(t0, 5500));
        p.clear();
        assert!(p.is_empty());
    }

    #[test]
    fn pooling_off_gives_the_connection_back() {
        let t0 = Instant::now();
        let mut p = IdlePool::new(0, Duration::from_secs(5));
        assert_eq!(p.put("a", 1, t0), Some(1));
        assert!(p.is_empty());
        assert_eq!(p.take(&"a", t0), None);
    }
}
