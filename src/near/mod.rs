//! The near cache: decoded values in process memory, in front of the store, so that a hit
//! costs a clone instead of a round trip and a JSON decode.
//!
//! It is kept correct by invalidations: on Redis, the server tells this process about
//! every change of a key under the cache's prefix (server-assisted client-side caching,
//! `CLIENT TRACKING … BCAST PREFIX`, on a connection of its own: see `tracking.rs`); on the
//! embedded store, every write goes through this process, which evicts as it writes.
//!
//! Three rules keep a value from being served after it changed:
//! - an entry is only inserted while the near cache is trusted (its tracking connection is
//!   up and confirmed), and the whole cache is dropped when trust is lost (the connection
//!   drops or is killed, the server restarts, a `FLUSHDB`);
//! - a value read from the store is inserted only if no invalidation of its key (nor a
//!   flush) arrived between the moment the read was sent and the insertion: a read that
//!   raced a change never inserts its older value (an epoch per bucket of keys);
//! - an entry never outlives the TTL the store gave the key.

mod entries;

use entries::Entries;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Buckets of keys that share an invalidation epoch: a change of one key holds back the
/// insertion of the others in its bucket for the length of one read, no more.
const BUCKETS: usize = 4096;

/// One cache's near tier.
pub(crate) struct NearCache {
    entries: Entries,
    /// Whether entries may be served and inserted: false until tracking is confirmed, and
    /// from the moment it is lost until it is confirmed again.
    trusted: AtomicBool,
    /// Bumped by every flush (and loss of trust).
    flushes: AtomicU64,
    /// Bumped by every invalidation of a key in the bucket.
    buckets: Box<[AtomicU64]>,
    hasher: RandomState,
    /// Why tracking last failed to start, while it is not running (for `health()`).
    failure: std::sync::Mutex<Option<String>>,
}

/// The epochs a read saw before it was sent; its value is inserted only if they held.
#[derive(Clone, Copy)]
pub(crate) struct ReadMark {
    flushes: u64,
    bucket: usize,
    epoch: u64,
}

impl NearCache {
    /// A near cache of at most `max_entries` entries weighing at most `max_bytes` (keys and
    /// each value's weight, see `codec::weight`); `trusted` from the start when nothing but this process can change the
    /// store (the embedded store).
    pub(crate) fn new(max_entries: u64, max_bytes: Option<u64>, trusted: bool) -> NearCache {
        NearCache {
            entries: Entries::new(max_entries, max_bytes),
            trusted: AtomicBool::new(trusted),
            flushes: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            failure: std::sync::Mutex::new(None),
        }
    }

    fn bucket(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % BUCKETS
    }

    /// `found` of the value at `key`, if this tier holds one of type `T`. It runs under
    /// the shard's read lock: keep it short, and never call into the cache from it (a
    /// writer queued behind the lock would block it).
    #[inline(always)]
    pub(crate) fn with<T: 'static, R>(&self, key: &str, found: impl FnOnce(&T) -> R) -> Option<R> {
        if !self.trusted.load(Ordering::Acquire) {
            return None;
        }
        self.entries.with::<T, R>(key, found)
    }

    /// A clone of the value at `key`, if it holds one of type `T`.
    #[cfg(test)]
    pub(crate) fn get<T: Clone + 'static>(&self, key: &str) -> Option<T> {
        self.with(key, T::clone)
    }

    /// Taken before a read is sent to the store.
    pub(crate) fn mark(&self, key: &str) -> ReadMark {
        let bucket = self.bucket(key);
        ReadMark {
            flushes: self.flushes.load(Ordering::Acquire),
            bucket,
            epoch: self.buckets[bucket].load(Ordering::Acquire),
        }
    }

    fn still(&self, mark: ReadMark) -> bool {
        self.trusted.load(Ordering::Acquire)
            && self.flushes.load(Ordering::Acquire) == mark.flushes
            && self.buckets[mark.bucket].load(Ordering::Acquire) == mark.epoch
    }

    /// Inserts a value read from the store (weighing `weight` bytes) after `mark` was
    /// taken, for at most `ttl`, unless an invalidation of its key or a flush came in
    /// between.
    pub(crate) fn insert<T: Send + Sync + 'static>(
        &self,
        mark: ReadMark,
        key: &str,
        value: T,
        weight: usize,
        ttl: Duration,
    ) {
        if ttl.is_zero() || !self.still(mark) {
            return;
        }
        self.entries
            .insert(key, Box::new(value), weight, Instant::now() + ttl);
        // An invalidation between the check above and the insertion bumped the epoch
        // before it evicted: take the entry back out.
        if !self.still(mark) {
            self.entries.remove(key);
        }
    }

    /// `key` changed in the store.
    pub(crate) fn invalidate(&self, key: &str) {
        self.buckets[self.bucket(key)].fetch_add(1, Ordering::AcqRel);
        self.entries.remove(key);
    }

    /// Every key matching the Redis glob `pattern` changed.
    pub(crate) fn invalidate_pattern(&self, pattern: &str) {
        // Bumped first, for every bucket: a read in flight for any key may have raced it.
        self.flushes.fetch_add(1, Ordering::AcqRel);
        self.entries
            .remove_if(|k| crate::key::glob::matches(pattern.as_bytes(), k.as_bytes()));
    }

    /// Everything may have changed (a `FLUSHDB`): drop it all, stay trusted.
    pub(crate) fn flush(&self) {
        self.flushes.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// Invalidations can no longer be trusted to arrive: drop it all and serve nothing
    /// until [`trust`](Self::trust) is called again.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn distrust(&self) {
        self.trusted.store(false, Ordering::Release);
        self.flush();
    }

    /// Invalidations arrive again (tracking confirmed).
    pub(crate) fn trust(&self) {
        // Dropped again: what was read while distrusted was never inserted, but a flush
        // costs nothing here and makes the rule simple.
        self.flush();
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.trusted.store(true, Ordering::Release);
    }

    /// Whether it serves entries now (its tracking is confirmed).
    pub(crate) fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }

    /// Tracking could not start, for this reason.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn failed(&self, why: String) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    /// Why tracking last failed to start, unless it runs now.
    pub(crate) fn failure(&self) -> Option<String> {
        if self.is_trusted() {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many entries it holds.
    pub(crate) fn len(&self) -> u64 {
        self.entries.len()
    }
}

/// What the store's invalidation tracking tells the near cache in front of it.
impl crate::store::Tracked for NearCache {
    fn invalidate(&self, key: &str) {
        NearCache::invalidate(self, key);
    }

    fn flush(&self) {
        NearCache::flush(self);
    }

    fn distrust(&self) {
        NearCache::distrust(self);
    }

    fn trust(&self) {
        NearCache::trust(self);
    }

    fn failed(&self, why: String) {
        NearCache::failed(self, why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn serves_what_was_inserted_as_its_own_type() {
        let near = NearCache::new(100, None, true);
        let t = near.mark("k");
        near.insert(t, "k", vec![1u32, 2], 0, LONG);
        assert_eq!(near.get::<Vec<u32>>("k"), Some(vec![1, 2]));
        assert_eq!(near.get::<String>("k"), None, "another type is a miss");
        assert_eq!(near.get::<Vec<u32>>("other"), None);
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_inserted() {
        let near = NearCache::new(100, None, true);
        let t = near.mark("k");
        near.invalidate("k");
        near.insert(t, "k", 1u8, 0, LONG);
        assert_eq!(near.get::<u8>("k"), None);
        let t = near.mark("k");
        near.invalidate_pattern("x:*");
        near.insert(t, "k", 1u8, 0, LONG);
        assert_eq!(
            near.get::<u8>("k"),
            None,
            "a pattern invalidation holds back all"
        );
        let t = near.mark("k");
        near.insert(t, "k", 2u8, 0, LONG);
        assert_eq!(near.get::<u8>("k"), Some(2));
    }

    #[test]
    fn invalidations_evict_keys_and_patterns() {
        let near = NearCache::new(100, None, true);
        for k in ["w:42:a", "w:42:b", "w:420:a"] {
            let t = near.mark(k);
            near.insert(t, k, 1u8, 0, LONG);
        }
        near.invalidate_pattern("w:42:*");
        assert_eq!(near.get::<u8>("w:42:a"), None);
        assert_eq!(near.get::<u8>("w:42:b"), None);
        assert_eq!(near.get::<u8>("w:420:a"), Some(1));
        near.invalidate("w:420:a");
        assert_eq!(near.get::<u8>("w:420:a"), None);
    }

    #[test]
    fn nothing_is_served_or_inserted_while_distrusted() {
        let near = NearCache::new(100, None, true);
        let t = near.mark("k");
        near.insert(t, "k", 1u8, 0, LONG);
        near.distrust();
        assert_eq!(near.get::<u8>("k"), None);
        let t = near.mark("k");
        near.insert(t, "k", 2u8, 0, LONG);
        near.trust();
        assert_eq!(near.get::<u8>("k"), None, "dropped when trust was lost");
        assert_eq!(near.len(), 0);
    }

    #[test]
    fn entries_never_outlive_their_ttl() {
        let near = NearCache::new(100, None, true);
        let t = near.mark("k");
        near.insert(t, "k", 1u8, 0, Duration::from_millis(30));
        assert_eq!(near.get::<u8>("k"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(near.get::<u8>("k"), None);
    }

    #[test]
    fn the_bound_holds() {
        let near = NearCache::new(10, None, true);
        for i in 0..100 {
            let k = format!("k{i}");
            let t = near.mark(&k);
            near.insert(t, &k, i, 0, LONG);
        }
        assert!(near.len() <= 10, "{}", near.len());
    }
}
