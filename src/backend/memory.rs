//! The embedded store: sharded maps with per-entry expiry, a bound on entries, and
//! Redis glob semantics for patterns.

use super::{KeyTtl, Store};
use crate::error::Result;
use crate::glob;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
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
                if let Some((_, victim)) = shard.by_expiry.pop_first() {
                    shard.map.remove(&victim);
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
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        Ok(shard.live(key, Instant::now()).map(|e| e.value.to_vec()))
    }

    fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.put(&mut Self::write(self.shard(key)), key, value, ttl);
        Ok(())
    }

    fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        let mut shard = Self::write(self.shard(key));
        if shard.live(key, Instant::now()).is_some() {
            return Ok(false);
        }
        self.put(&mut shard, key, value, ttl);
        Ok(true)
    }

    fn set_if(&self, key: &str, expected: &[u8], value: &[u8], ttl: Duration) -> Result<bool> {
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

    fn delete_if(&self, key: &str, expected: &[u8]) -> Result<bool> {
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

    fn set_nx_async(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(self.set_nx(key, value, ttl))
    }

    fn set_if_async(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(self.set_if(key, expected, value, ttl))
    }

    fn delete_if_async(
        &self,
        key: &str,
        expected: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(self.delete_if(key, expected))
    }

    fn delete(&self, keys: &[&str]) -> Result<u64> {
        let now = Instant::now();
        let mut n = 0;
        for key in keys {
            if let Some(e) = Self::write(self.shard(key)).remove(key) {
                n += u64::from(e.expires > now);
            }
        }
        Ok(n)
    }

    fn delete_pattern(&self, pattern: &str) -> Result<u64> {
        let mut n = 0;
        self.for_matching(pattern, |shard, key| {
            shard.remove(&key);
            n += 1;
        });
        Ok(n)
    }

    fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let now = Instant::now();
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        Ok(match shard.live(key, now) {
            Some(e) => KeyTtl::Expires(e.expires - now),
            None => KeyTtl::Missing,
        })
    }

    fn keys(&self, pattern: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.for_matching(pattern, |_, key| out.push(key.to_string()));
        Ok(out)
    }

    fn get_async(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        std::future::ready(self.get(key))
    }

    fn set_async(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(self.set(key, value, ttl))
    }

    fn delete_async(&self, keys: &[&str]) -> impl Future<Output = Result<u64>> + Send {
        std::future::ready(self.delete(keys))
    }

    fn delete_pattern_async(&self, pattern: &str) -> impl Future<Output = Result<u64>> + Send {
        std::future::ready(self.delete_pattern(pattern))
    }

    fn ttl_async(&self, key: &str) -> impl Future<Output = Result<KeyTtl>> + Send {
        std::future::ready(self.ttl(key))
    }

    fn keys_async(&self, pattern: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        std::future::ready(self.keys(pattern))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire() {
        let s = MemoryStore::new(10);
        s.set("a", b"1", Duration::from_millis(30)).unwrap();
        assert_eq!(s.get("a").unwrap().as_deref(), Some(&b"1"[..]));
        assert!(matches!(s.ttl("a").unwrap(), KeyTtl::Expires(_)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(s.get("a").unwrap(), None);
        assert_eq!(s.ttl("a").unwrap(), KeyTtl::Missing);
        assert_eq!(s.keys("*").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn entry_count_stays_bounded_and_evicts_closest_to_expiry() {
        let s = MemoryStore::new(SHARDS * 2);
        for i in 0..1000u64 {
            s.set(&format!("k{i}"), b"v", Duration::from_secs(1000 + i))
                .unwrap();
        }
        let total: usize = s.shards.iter().map(|l| l.read().unwrap().map.len()).sum();
        assert!(total <= SHARDS * 2, "{total} entries");
        // The newest key has the longest TTL and must have survived.
        assert!(s.get("k999").unwrap().is_some());
    }

    #[test]
    fn pattern_delete_removes_only_matches() {
        let s = MemoryStore::new(100);
        for k in ["wallets:42:a", "wallets:42:b", "wallets:420:a", "user:42"] {
            s.set(k, b"1", Duration::from_secs(60)).unwrap();
        }
        assert_eq!(s.delete_pattern("wallets:42:*").unwrap(), 2);
        let mut left = s.keys("*").unwrap();
        left.sort();
        assert_eq!(left, ["user:42", "wallets:420:a"]);
    }
}
