//! The near cache's map: decoded values by key, in shards behind read-write locks, with a
//! per-entry expiry and CLOCK eviction (a "used" bit per entry, set by hits and cleared by
//! the eviction scan).
//!
//! A hit hashes the key once, takes its shard's read lock, checks the expiry and clones
//! the value under the lock: no reference count, no read log, no maintenance. (moka, which
//! this replaces here, records every read for its TinyLFU policy, and at 64 tasks on two
//! cores that bookkeeping cost more than the clone of a 1 KB value.) A near cache holds
//! copies of what Redis holds, so a simpler policy costs little: a miss is one round trip.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

/// At most this many shards; fewer for small bounds, so that each holds a fair number.
const MAX_SHARDS: usize = 64;
/// The fewest entries a shard is made for (when the bound allows more than one shard).
const MIN_PER_SHARD: u64 = 16;

struct Slot {
    key: Box<str>,
    value: Box<dyn Any + Send + Sync>,
    expires: Instant,
    used: AtomicBool,
    /// What it counts against the shard's byte bound: its key and its value's weight.
    weight: usize,
}

/// Keys by their hash (computed once, with the map's random seed), each with the few
/// entries whose keys share it (nearly always one).
type Buckets = HashMap<u64, Bucket, BuildHasherDefault<Prehashed>>;

/// The entries of one hash: nearly always one, held inline (no allocation of its own);
/// a `Vec` only when two keys share a 64-bit hash. Empty is `Many` of nothing.
enum Bucket {
    One(Slot),
    Many(Vec<Slot>),
}

impl Default for Bucket {
    fn default() -> Bucket {
        Bucket::Many(Vec::new())
    }
}

impl Bucket {
    fn slots(&self) -> &[Slot] {
        match self {
            Bucket::One(slot) => std::slice::from_ref(slot),
            Bucket::Many(slots) => slots,
        }
    }

    fn push(&mut self, slot: Slot) {
        match std::mem::take(self) {
            Bucket::Many(slots) if slots.is_empty() => *self = Bucket::One(slot),
            Bucket::Many(mut slots) => {
                slots.push(slot);
                *self = Bucket::Many(slots);
            }
            Bucket::One(first) => *self = Bucket::Many(vec![first, slot]),
        }
    }

    /// Keeps the slots for which `keep` holds; returns how many it dropped and their
    /// weight.
    fn retain(&mut self, mut keep: impl FnMut(&Slot) -> bool) -> (usize, usize) {
        match self {
            Bucket::One(slot) if keep(slot) => (0, 0),
            Bucket::One(slot) => {
                let weight = slot.weight;
                *self = Bucket::default();
                (1, weight)
            }
            Bucket::Many(slots) => {
                let (before, mut freed) = (slots.len(), 0);
                slots.retain(|s| {
                    let kept = keep(s);
                    if !kept {
                        freed += s.weight;
                    }
                    kept
                });
                (before - slots.len(), freed)
            }
        }
    }

    fn swap_remove(&mut self, i: usize) {
        match self {
            Bucket::One(_) => *self = Bucket::default(),
            Bucket::Many(slots) => {
                slots.swap_remove(i);
            }
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Bucket::Many(slots) if slots.is_empty())
    }
}

/// The map's hasher: the key was hashed already, so its hash is used as it is.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached (only `u64`s are hashed); FNV-1a, so that it still hashes.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

#[repr(align(64))]
struct Shard {
    buckets: RwLock<Buckets>,
    /// Its share of the bound.
    cap: usize,
    len: std::sync::atomic::AtomicUsize,
    /// Its share of the byte bound (`usize::MAX` without one).
    byte_cap: usize,
    /// The weights of its entries; changed under the write lock.
    bytes: std::sync::atomic::AtomicUsize,
}

pub(crate) struct Entries {
    shards: Box<[Shard]>,
    /// foldhash, seeded from the OS's randomness (std's `RandomState`, rather than
    /// foldhash's own seed from addresses and the clock), so that which keys collide
    /// depends on a secret. foldhash promises no more than that against crafted keys (it
    /// is not SipHash); a collision costs a longer look-up in one shard, never a wrong value.
    /// For the short keys a hit hashes, it costs a fraction of what SipHash-1-3 does.
    hasher: foldhash::quality::SeedableRandomState,
}

/// A fresh random 64-bit seed from std's OS-seeded `RandomState`.
fn random_seed() -> u64 {
    std::hash::RandomState::new().hash_one(0u8)
}

impl Entries {
    /// A map of at most `max_entries` entries, weighing at most `max_bytes` in all.
    pub(crate) fn new(max_entries: u64, max_bytes: Option<u64>) -> Entries {
        let wanted = (max_entries / MIN_PER_SHARD).clamp(1, MAX_SHARDS as u64) as usize;
        // A power of two, so that a shard is a mask of the hash.
        let n = if wanted.is_power_of_two() {
            wanted
        } else {
            wanted.next_power_of_two() / 2
        };
        let total = usize::try_from(max_entries).unwrap_or(usize::MAX);
        let total_bytes = max_bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX));
        let shards = (0..n)
            .map(|i| Shard {
                buckets: RwLock::new(Buckets::default()),
                cap: total / n + usize::from(i < total % n),
                len: Default::default(),
                byte_cap: total_bytes.map_or(usize::MAX, |b| b / n + usize::from(i < b % n)),
                bytes: Default::default(),
            })
            .collect();
        Entries {
            shards,
            hasher: {
                static SHARED: once_cell::sync::Lazy<foldhash::SharedSeed> =
                    once_cell::sync::Lazy::new(|| foldhash::SharedSeed::from_u64(random_seed()));
                foldhash::quality::SeedableRandomState::with_seed(random_seed(), &SHARED)
            },
        }
    }

    fn locate(&self, key: &str) -> (u64, &Shard) {
        let hash = self.hasher.hash_one(key);
        // The shard from bits the map itself does not use first (it places by the low
        // bits and tags by the top seven).
        let shard = (hash >> 32) as usize & (self.shards.len() - 1);
        (hash, &self.shards[shard])
    }

    /// `found` of the value at `key`, called under its shard's read lock, if one of type `T`
    /// is there and has not expired.
    #[inline(always)]
    pub(crate) fn with<T: 'static, R>(&self, key: &str, found: impl FnOnce(&T) -> R) -> Option<R> {
        let (hash, shard) = self.locate(key);
        let buckets = read(shard);
        let slot = buckets
            .get(&hash)?
            .slots()
            .iter()
            .find(|s| &*s.key == key)?;
        if slot.expires <= Instant::now() {
            return None;
        }
        if !slot.used.load(Relaxed) {
            slot.used.store(true, Relaxed);
        }
        let value = slot.value.downcast_ref::<T>()?;
        Some(found(value))
    }

    /// A clone of the value at `key`, if it holds one of type `T`.
    #[cfg(test)]
    pub(crate) fn get<T: Clone + 'static>(&self, key: &str) -> Option<T> {
        self.with(key, T::clone)
    }

    /// Puts `value` at `key` until `expires`, making room in its shard if it is full. Its
    /// `value_weight` and the key's length count against the byte bound; a value over the
    /// shard's share of it is not kept (and whatever `key` held goes).
    pub(crate) fn insert(
        &self,
        key: &str,
        value: Box<dyn Any + Send + Sync>,
        value_weight: usize,
        expires: Instant,
    ) {
        let (hash, shard) = self.locate(key);
        let mut buckets = write(shard);
        // The older value goes first, whether or not the new one is kept.
        remove_locked(&mut buckets, shard, hash, key);
        let weight = key.len().saturating_add(value_weight);
        if shard.cap == 0 || weight > shard.byte_cap {
            return;
        }
        while shard.len.load(Relaxed) >= shard.cap
            || shard.bytes.load(Relaxed).saturating_add(weight) > shard.byte_cap
        {
            if !evict_one(&mut buckets, shard) {
                break;
            }
        }
        buckets.entry(hash).or_default().push(Slot {
            key: key.into(),
            value,
            expires,
            used: AtomicBool::new(false),
            weight,
        });
        shard.len.fetch_add(1, Relaxed);
        shard.bytes.fetch_add(weight, Relaxed);
    }

    /// Drops `key`.
    pub(crate) fn remove(&self, key: &str) {
        let (hash, shard) = self.locate(key);
        remove_locked(&mut write(shard), shard, hash, key);
    }

    /// Drops every key for which `doomed` holds.
    pub(crate) fn remove_if(&self, doomed: impl Fn(&str) -> bool) {
        for shard in self.shards.iter() {
            let mut buckets = write(shard);
            let (mut removed, mut freed) = (0, 0);
            buckets.retain(|_, bucket| {
                let (count, weight) = bucket.retain(|s| !doomed(&s.key));
                removed += count;
                freed += weight;
                !bucket.is_empty()
            });
            shard.len.fetch_sub(removed, Relaxed);
            shard.bytes.fetch_sub(freed, Relaxed);
        }
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            let mut buckets = write(shard);
            buckets.clear();
            shard.len.store(0, Relaxed);
            shard.bytes.store(0, Relaxed);
        }
    }

    /// The weight of its entries (expired ones not yet dropped included).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.bytes.load(Relaxed)).sum()
    }

    /// How many entries it holds (expired ones not yet dropped included).
    pub(crate) fn len(&self) -> u64 {
        self.shards.iter().map(|s| s.len.load(Relaxed) as u64).sum()
    }
}

/// Drops `key` from its shard, whose write lock the caller holds.
fn remove_locked(buckets: &mut Buckets, shard: &Shard, hash: u64, key: &str) {
    if let Some(bucket) = buckets.get_mut(&hash) {
        let (removed, freed) = bucket.retain(|s| &*s.key != key);
        shard.len.fetch_sub(removed, Relaxed);
        shard.bytes.fetch_sub(freed, Relaxed);
        if bucket.is_empty() {
            buckets.remove(&hash);
        }
    }
}

fn read(shard: &Shard) -> RwLockReadGuard<'_, Buckets> {
    shard.buckets.read().unwrap_or_else(|e| e.into_inner())
}

fn write(shard: &Shard) -> RwLockWriteGuard<'_, Buckets> {
    shard.buckets.write().unwrap_or_else(|e| e.into_inner())
}

/// Drops one entry of a full shard: an expired one, or else the first not used since the
/// scan last passed it (clearing the used bits it passes: a second chance). False when the
/// shard is empty.
fn evict_one(buckets: &mut Buckets, shard: &Shard) -> bool {
    let now = Instant::now();
    let mut victim = None;
    'scan: for _pass in 0..2 {
        for (hash, bucket) in buckets.iter() {
            for (i, slot) in bucket.slots().iter().enumerate() {
                if slot.expires <= now || !slot.used.swap(false, Relaxed) {
                    victim = Some((*hash, i));
                    break 'scan;
                }
            }
        }
    }
    // After two passes every bit was cleared on the first: there is always a victim in a
    // shard that holds anything.
    let Some((hash, i)) = victim else {
        return false;
    };
    let bucket = buckets.get_mut(&hash).expect("the victim's bucket");
    let weight = bucket.slots()[i].weight;
    shard.len.fetch_sub(1, Relaxed);
    shard.bytes.fetch_sub(weight, Relaxed);
    // Counted out before the value is dropped, so that a value whose drop panics leaves
    // the two counts in step.
    bucket.swap_remove(i);
    if bucket.is_empty() {
        buckets.remove(&hash);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn holds_its_bound_and_keeps_what_is_used() {
        for bound in [1u64, 10, 100, 1_000, 10_000] {
            let e = Entries::new(bound, None);
            e.insert("hot", Box::new(0u64), 0, far());
            for i in 0..bound * 3 {
                // Read before each insertion: never the one evicted (but with room for one).
                assert!(e.get::<u64>("hot").is_some() || bound == 1, "{bound}, {i}");
                e.insert(&format!("k{i}"), Box::new(i), 0, far());
                assert!(e.len() <= bound, "{bound}: {}", e.len());
            }
            assert_eq!(e.len(), bound);
        }
    }

    #[test]
    fn replaces_removes_and_clears() {
        let e = Entries::new(100, None);
        e.insert("a:1", Box::new(1u8), 0, far());
        e.insert("a:1", Box::new(2u8), 0, far());
        e.insert("b:1", Box::new(3u8), 0, far());
        assert_eq!(e.len(), 2);
        assert_eq!(e.get::<u8>("a:1"), Some(2));
        assert_eq!(e.get::<u16>("a:1"), None, "another type");
        e.remove_if(|k| k.starts_with("a:"));
        assert_eq!((e.get::<u8>("a:1"), e.len()), (None, 1));
        e.remove("b:1");
        assert_eq!((e.get::<u8>("b:1"), e.len()), (None, 0));
        e.insert("c", Box::new(4u8), 0, far());
        e.clear();
        assert_eq!((e.get::<u8>("c"), e.len()), (None, 0));
    }

    #[test]
    fn a_bucket_holds_keys_that_share_a_hash() {
        // Two keys in one 64-bit hash are too rare to reach through the map: the bucket
        // is driven directly.
        let slot = |key: &str| Slot {
            key: key.into(),
            value: Box::new(key.len()),
            expires: far(),
            used: AtomicBool::new(false),
            weight: 0,
        };
        let keys = |b: &Bucket| {
            b.slots()
                .iter()
                .map(|s| s.key.to_string())
                .collect::<Vec<_>>()
        };
        let mut b = Bucket::default();
        assert!(b.is_empty());
        b.push(slot("a"));
        assert!(matches!(b, Bucket::One(_)));
        b.push(slot("b"));
        b.push(slot("c"));
        assert_eq!(keys(&b), ["a", "b", "c"]);
        assert_eq!(b.retain(|s| &*s.key != "b"), (1, 0));
        b.swap_remove(0);
        assert_eq!(keys(&b), ["c"]);
        assert_eq!(b.retain(|_| false), (1, 0));
        assert!(b.is_empty());
        b.push(slot("d"));
        assert_eq!(b.retain(|_| true), (0, 0));
        b.swap_remove(0);
        assert!(b.is_empty());
    }

    #[test]
    fn holds_its_byte_bound() {
        // One shard (a bound of 16 entries or fewer): 1,000 bytes in all.
        let e = Entries::new(16, Some(1_000));
        for i in 0..50u32 {
            e.insert(&format!("k{i:02}"), Box::new(i), 197, far());
            assert!(e.bytes() <= 1_000, "{i}: {}", e.bytes());
        }
        // Five of 200 bytes (3 of key, 197 stored) fill it.
        assert_eq!((e.len(), e.bytes()), (5, 1_000));
        // A value over the bound is not kept, and the key's older value goes.
        e.insert("k49", Box::new(0u32), 2_000, far());
        assert_eq!((e.get::<u32>("k49"), e.len(), e.bytes()), (None, 4, 800));
        e.clear();
        assert_eq!((e.len(), e.bytes()), (0, 0));
        // A replaced value weighs what the new one does; removals give their weight back.
        e.insert("a", Box::new(1u32), 199, far());
        e.insert("a", Box::new(2u32), 99, far());
        assert_eq!((e.get::<u32>("a"), e.len(), e.bytes()), (Some(2), 1, 100));
        e.insert("b", Box::new(3u32), 199, far());
        assert_eq!((e.len(), e.bytes()), (2, 300));
        e.remove_if(|k| k == "a");
        assert_eq!((e.len(), e.bytes()), (1, 200));
        e.remove("b");
        assert_eq!((e.len(), e.bytes()), (0, 0));
    }

    #[test]
    fn expired_entries_are_not_served_and_go_first() {
        let e = Entries::new(2, None);
        e.insert("old", Box::new(1u8), 0, Instant::now());
        e.insert("used", Box::new(2u8), 0, far());
        assert_eq!(e.get::<u8>("old"), None);
        assert_eq!(e.get::<u8>("used"), Some(2));
        e.insert("new", Box::new(3u8), 0, far());
        assert_eq!(e.get::<u8>("used"), Some(2));
        assert_eq!(e.get::<u8>("new"), Some(3));
        assert_eq!(e.len(), 2);
    }
}
