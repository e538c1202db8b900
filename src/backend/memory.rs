//! The embedded store: sharded maps with per-entry expiry, a bound on entries, and
//! Redis glob semantics for patterns.

use super::{KeyTtl, Store};
use super::{Mode, LEASE_PREFIX};
use crate::error::Result;
use crate::glob;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

pub(crate) struct MemoryStore {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    max_per_shard: usize,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Arc<str>, Entry>,
    /// Entries ordered by expiry, to purge the expired and, when full, evict the one
    /// closest to expiry (Redis's `volatile-ttl`).
    by_expiry: BTreeSet<(Instant, Arc<str>)>,
}

struct Entry {
    value: Box<[u8]>,
    expires: Instant,
}

impl Shard {
    fn live(&self, key: &str, now: Instant) -> Option<&Entry> {
        self.map.get(key).filter(|e| e.expires > now)
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let (k, entry) = self.map.remove_entry(key)?;
        self.by_expiry.remove(&(entry.expires, k));
        Some(entry)
    }

    fn purge_expired(&mut self, now: Instant) {
        while let Some((at, _)) = self.by_expiry.first() {
            if *at > now {
                break;
            }
            let (_, key) = self.by_expiry.pop_first().expect("checked non-empty");
            self.map.remove(&key);
        }
    }
}

impl MemoryStore {
    pub(crate) fn new(max_entries: usize) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            max_per_shard: max_entries.div_ceil(SHARDS).max(1),
        }
    }

    /// Writes an entry into its (locked) shard, evicting to stay within the bound.
    fn put(&self, shard: &mut Shard, key: &str, value: &[u8], ttl: Duration) {
        let now = Instant::now();
        let expires = now + ttl;
        shard.remove(key);
        if shard.map.len() >= self.max_per_shard {
            shard.purge_expired(now);
            if shard.map.len() >= self.max_per_shard {
                // The entry closest to expiry goes, but not a lease among the first few:
                // evicting a computation's lease would keep its value from being stored.
                let victim = shard
                    .by_expiry
                    .iter()
                    .take(8)
                    .find(|(_, k)| !shard.map[k].value.starts_with(LEASE_PREFIX))
                    .or_else(|| shard.by_expiry.first())
                    .map(|(_, k)| k.clone());
                if let Some(victim) = victim {
                    shard.remove(&victim);
                }
            }
        }
        let key: Arc<str> = Arc::from(key);
        shard.by_expiry.insert((expires, key.clone()));
        shard.map.insert(
            key,
            Entry {
                value: value.into(),
                expires,
            },
        );
    }

    fn shard(&self, key: &str) -> &RwLock<Shard> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    fn write(lock: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
        lock.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Visits every live key matching `pattern`, shard by shard under its write lock.
    fn for_matching(&self, pattern: &str, mut f: impl FnMut(&mut Shard, Arc<str>)) {
        let now = Instant::now();
        for lock in self.shards.iter() {
            let mut shard = Self::write(lock);
            shard.purge_expired(now);
            let found: Vec<Arc<str>> = shard
                .map
                .keys()
                .filter(|k| glob::matches(pattern.as_bytes(), k.as_bytes()))
                .cloned()
                .collect();
            for key in found {
                f(&mut shard, key);
            }
        }
    }
}

impl Store for MemoryStore {
    async fn get(&self, _mode: Mode, key: &str) -> Result<Option<Vec<u8>>> {
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        Ok(shard.live(key, Instant::now()).map(|e| e.value.to_vec()))
    }

    async fn set(&self, _mode: Mode, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.put(&mut Self::write(self.shard(key)), key, value, ttl);
        Ok(())
    }

    async fn set_nx(&self, _mode: Mode, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        let mut shard = Self::write(self.shard(key));
        if shard.live(key, Instant::now()).is_some() {
            return Ok(false);
        }
        self.put(&mut shard, key, value, ttl);
        Ok(true)
    }

    async fn set_if(
        &self,
        _mode: Mode,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let mut shard = Self::write(self.shard(key));
        if shard
            .live(key, Instant::now())
            .is_none_or(|e| *e.value != *expected)
        {
            return Ok(false);
        }
        self.put(&mut shard, key, value, ttl);
        Ok(true)
    }

    async fn renew_if(
        &self,
        _mode: Mode,
        key: &str,
        expected: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let mut shard = Self::write(self.shard(key));
        let Some(value) = shard
            .live(key, Instant::now())
            .filter(|e| *e.value == *expected)
            .map(|e| e.value.clone())
        else {
            return Ok(false);
        };
        self.put(&mut shard, key, &value, ttl);
        Ok(true)
    }

    async fn delete_if(&self, _mode: Mode, key: &str, expected: &[u8]) -> Result<bool> {
        let mut shard = Self::write(self.shard(key));
        if shard
            .live(key, Instant::now())
            .is_none_or(|e| *e.value != *expected)
        {
            return Ok(false);
        }
        shard.remove(key);
        Ok(true)
    }

    async fn delete(&self, _mode: Mode, keys: &[&str]) -> Result<u64> {
        let now = Instant::now();
        let mut n = 0;
        for key in keys {
            if let Some(e) = Self::write(self.shard(key)).remove(key) {
                n += u64::from(e.expires > now);
            }
        }
        Ok(n)
    }

    async fn delete_pattern(&self, _mode: Mode, pattern: &str) -> Result<u64> {
        let mut n = 0;
        self.for_matching(pattern, |shard, key| {
            shard.remove(&key);
            n += 1;
        });
        Ok(n)
    }

    async fn ttl(&self, _mode: Mode, key: &str) -> Result<KeyTtl> {
        let now = Instant::now();
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        Ok(match shard.live(key, now) {
            Some(e) => KeyTtl::Expires(e.expires - now),
            None => KeyTtl::Missing,
        })
    }

    async fn keys(&self, _mode: Mode, pattern: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.for_matching(pattern, |_, key| out.push(key.to_string()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::block_on;

    #[test]
    fn entries_expire() {
        let s = MemoryStore::new(10);
        block_on(s.set(Mode::Blocking, "a", b"1", Duration::from_millis(30))).unwrap();
        assert_eq!(
            block_on(s.get(Mode::Blocking, "a")).unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert!(matches!(
            block_on(s.ttl(Mode::Blocking, "a")).unwrap(),
            KeyTtl::Expires(_)
        ));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(block_on(s.get(Mode::Blocking, "a")).unwrap(), None);
        assert_eq!(
            block_on(s.ttl(Mode::Blocking, "a")).unwrap(),
            KeyTtl::Missing
        );
        assert_eq!(
            block_on(s.keys(Mode::Blocking, "*")).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn entry_count_stays_bounded_and_evicts_closest_to_expiry() {
        let s = MemoryStore::new(SHARDS * 2);
        for i in 0..1000u64 {
            block_on(s.set(
                Mode::Blocking,
                &format!("k{i}"),
                b"v",
                Duration::from_secs(1000 + i),
            ))
            .unwrap();
        }
        let total: usize = s.shards.iter().map(|l| l.read().unwrap().map.len()).sum();
        assert!(total <= SHARDS * 2, "{total} entries");
        // The newest key has the longest TTL and must have survived.
        assert!(block_on(s.get(Mode::Blocking, "k999")).unwrap().is_some());
    }

    #[test]
    fn eviction_spares_leases() {
        let s = MemoryStore::new(SHARDS * 16);
        let lease = [LEASE_PREFIX, b"x"].concat();
        // A few short-lived leases, then many long-lived values: the store fills up and
        // evicts, and the leases (closest to expiry) must not be what goes.
        for i in 0..4 {
            block_on(s.set_nx(
                Mode::Blocking,
                &format!("lease{i}"),
                &lease,
                Duration::from_secs(1),
            ))
            .unwrap();
        }
        let leases_before = block_on(s.keys(Mode::Blocking, "lease*")).unwrap().len();
        assert_eq!(leases_before, 4);
        for i in 0..1000 {
            block_on(s.set(
                Mode::Blocking,
                &format!("v{i}"),
                b"1",
                Duration::from_secs(3600),
            ))
            .unwrap();
        }
        assert_eq!(
            block_on(s.keys(Mode::Blocking, "lease*")).unwrap().len(),
            leases_before,
            "leases were evicted"
        );
    }

    #[test]
    fn pattern_delete_removes_only_matches() {
        let s = MemoryStore::new(100);
        for k in ["wallets:42:a", "wallets:42:b", "wallets:420:a", "user:42"] {
            block_on(s.set(Mode::Blocking, k, b"1", Duration::from_secs(60))).unwrap();
        }
        assert_eq!(
            block_on(s.delete_pattern(Mode::Blocking, "wallets:42:*")).unwrap(),
            2
        );
        let mut left = block_on(s.keys(Mode::Blocking, "*")).unwrap();
        left.sort();
        assert_eq!(left, ["user:42", "wallets:420:a"]);
    }
}
