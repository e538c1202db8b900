//! The embedded store: values in a bounded [`moka`] cache, lease and failure markers in a
//! small side table that the bound never touches, and Redis glob semantics for patterns.
//!
//! # The bound and what it evicts
//!
//! Values live in a `moka::sync::Cache` whose capacity is `max_entries`: TinyLFU admission
//! with LRU eviction, so a key that is read often or recently stays while a stream of keys
//! written once goes (a new key may be refused admission when the store is full and it has
//! been asked for less often than the entry it would displace). Each entry expires after its
//! own TTL. moka applies its bookkeeping lazily; every write that adds a key runs it before
//! returning, so once writers have returned the store holds at most `max_entries` values.
//! While writers are running, each of them may have one key in the store that the bound has
//! not yet been applied to: the margin under concurrent churn is the number of threads
//! writing new keys at that moment (seen: at most 64 + 8 with 8 threads writing into a
//! bound of 64), and it is gone when they return.
//!
//! # Leases and failure markers
//!
//! A lease marker (a value starting with `LEASE_PREFIX`) is never evicted by the bound:
//! losing one would let a computation's value, read before an invalidation, be stored after
//! it. Nor is the marker a failed computation leaves for a second (`FAILED_PREFIX`), which
//! sends its waiters to compute at once. moka offers no way to pin an entry (a weigher
//! giving markers a weight of 0 does not: a zero-weight entry at the cold end is still
//! picked as a victim), so markers are kept out of the cache, in one small map per stripe.
//! They leave by their TTL, a compare-and-set that replaces them, or a deletion. They are
//! not counted in `max_entries`; there is one per computation in progress or just failed.
//!
//! # Atomicity
//!
//! A key lives in the value cache or in its stripe's marker map, never in both. Every write
//! holds the key's stripe lock (which also guards that stripe's marker map), so that
//! `set_nx`, `set_if`, `delete_if` and `renew_if` are atomic against each other and against
//! deletions, including moves between the two maps; a compare-and-set on a value compares
//! and writes in one call of moka's entry API (`and_compute_with`), which sees an expired
//! entry as absent. A hit is read without any lock of ours; a miss takes the stripe lock to
//! look at the marker map and the cache again, so a read that races a lease being replaced
//! by its value sees one or the other, never neither.

use super::is_marker;
use super::{KeyTtl, Store, TagCursor, TagPage};
use crate::error::Result;
use crate::key::glob;
use crate::rt::Mode;
use moka::ops::compute::{CompResult, Op};
use moka::Expiry;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Stripes of write locks (and marker maps): many more than the cores that could contend.
const STRIPES: usize = 64;

pub(crate) struct MemoryStore {
    values: moka::sync::Cache<String, Arc<Item>>,
    stripes: Box<[Mutex<Stripe>]>,
    hasher: RandomState,
    /// Tag sets: full key → expiry (ms since `epoch`), outside the bound like markers.
    tags: Mutex<TagSets>,
    epoch: Instant,
}

/// The embedded store's tag sets, swept whole every [`TAG_SWEEP_EVERY`] additions so that
/// tags never touched again do not keep their expired entries.
#[derive(Default)]
struct TagSets {
    sets: HashMap<String, TagSet>,
    adds: u64,
}

/// One tag set: each member's expiry (ms since `epoch`), ordered by member, so that a walk
/// can resume after the last member it listed, and by expiry, so that pruning costs what
/// it removes, not the set's size.
#[derive(Default)]
struct TagSet {
    members: BTreeMap<String, u64>,
    by_expiry: BTreeSet<(u64, String)>,
}

impl TagSet {
    fn put(&mut self, member: &str, until: u64) {
        if let Some(old) = self.members.insert(member.to_owned(), until) {
            self.by_expiry.remove(&(old, member.to_owned()));
        }
        self.by_expiry.insert((until, member.to_owned()));
    }

    fn remove(&mut self, member: &str) {
        if let Some(old) = self.members.remove(member) {
            self.by_expiry.remove(&(old, member.to_owned()));
        }
    }

    /// Drops the entries past `now`.
    fn prune(&mut self, now: u64) {
        while let Some((until, member)) = self.by_expiry.first().cloned() {
            if until >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.members.remove(&member);
        }
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

const TAG_SWEEP_EVERY: u64 = 1024;

impl TagSets {
    fn sweep(&mut self, now: u64) {
        self.sets.retain(|_, set| {
            set.prune(now);
            !set.is_empty()
        });
    }
}

impl MemoryStore {
    /// How many markers (leases, failure markers) the stripes hold, expired ones included.
    pub(crate) fn markers(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).markers.len())
            .sum()
    }
}

/// Stored bytes and the instant they expire (moka expires a value at the same instant,
/// through [`PerEntry`]).
struct Item {
    bytes: Box<[u8]>,
    expires: Instant,
}

impl Item {
    fn live(&self, now: Instant) -> bool {
        self.expires > now
    }
}

/// The markers (leases, failure markers) of the keys that hash to one stripe.
#[derive(Default)]
struct Stripe {
    markers: HashMap<Box<str>, Item>,
}

impl Stripe {
    fn marker(&self, key: &str, now: Instant) -> Option<&Item> {
        self.markers.get(key).filter(|m| m.live(now))
    }
}

/// Each value expires at its own instant.
struct PerEntry;

impl Expiry<String, Arc<Item>> for PerEntry {
    fn expire_after_create(&self, _: &String, v: &Arc<Item>, at: Instant) -> Option<Duration> {
        Some(v.expires.saturating_duration_since(at))
    }

    fn expire_after_update(
        &self,
        _: &String,
        v: &Arc<Item>,
        at: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.expires.saturating_duration_since(at))
    }
}

/// What a compare-and-set does when the key holds the expected bytes.
#[derive(Clone, Copy)]
enum Then<'a> {
    /// Writes these bytes, expiring at this instant.
    Write(&'a [u8], Instant),
    Delete,
}

/// The outcome of a write: whether it happened, and whether it added a key to the value
/// cache (which then needs the bound applied).
#[derive(Default)]
struct Wrote {
    done: bool,
    added: bool,
}

impl MemoryStore {
    pub(crate) fn new(max_entries: usize) -> Self {
        MemoryStore {
            values: moka::sync::Cache::builder()
                .max_capacity(max_entries.max(1) as u64)
                .expire_after(PerEntry)
                .build(),
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            tags: Mutex::default(),
            epoch: Instant::now(),
        }
    }

    fn tag_sets(&self) -> MutexGuard<'_, TagSets> {
        self.tags.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self, key: &str) -> MutexGuard<'_, Stripe> {
        Self::locked(&self.stripes[self.stripe_of(key)])
    }

    /// The stripe whose lock guards `key`.
    fn stripe_of(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % STRIPES
    }

    fn locked(stripe: &Mutex<Stripe>) -> MutexGuard<'_, Stripe> {
        // Each step under the lock is one map operation, so a panic elsewhere while it was
        // held leaves the maps consistent: a poisoned lock is taken over.
        stripe.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live bytes at `key` and their expiry, under its stripe lock.
    fn current<R>(
        &self,
        stripe: &Stripe,
        key: &str,
        now: Instant,
        f: impl FnOnce(&Item) -> R,
    ) -> Option<R> {
        if let Some(marker) = stripe.marker(key, now) {
            return Some(f(marker));
        }
        self.values.get(key).filter(|v| v.live(now)).map(|v| f(&v))
    }

    /// Writes `value` at `key` under its stripe lock: into the marker map or the value
    /// cache, and out of the other. True when a key was added to the value cache.
    fn put(&self, stripe: &mut Stripe, key: &str, value: &[u8], expires: Instant) -> bool {
        let stored = Item {
            bytes: value.into(),
            expires,
        };
        if is_marker(value) {
            let now = Instant::now();
            stripe.markers.retain(|_, m| m.live(now));
            stripe.markers.insert(key.into(), stored);
            self.values.invalidate(key);
            false
        } else {
            // A plain insert: every writer of this key holds the stripe lock. In before the
            // lease comes out (a read that misses the cache looks again under the lock, so
            // either order would do).
            let added = !self.values.contains_key(key);
            self.values.insert(key.to_owned(), Arc::new(stored));
            stripe.markers.remove(key);
            added
        }
    }

    /// Applies the bound once a key was added (moka would do it lazily, some writes later).
    fn enforce_bound(&self, wrote: Wrote) -> bool {
        if wrote.added {
            self.values.run_pending_tasks();
        }
        wrote.done
    }

    /// Removes `key` from both maps under its stripe lock; true when it was live.
    fn remove(&self, stripe: &mut Stripe, key: &str, now: Instant) -> bool {
        let marker = stripe.markers.remove(key).is_some_and(|m| m.live(now));
        let value = self.values.remove(key).is_some_and(|v| v.live(now));
        marker || value
    }

    /// Does `then` only while `key` holds `expected`, atomically.
    fn compare_and(&self, key: &str, expected: &[u8], then: Then<'_>) -> Wrote {
        let now = Instant::now();
        let mut stripe = self.lock(key);
        if let Some(marker) = stripe.marker(key, now) {
            if *marker.bytes != *expected {
                return Wrote::default();
            }
            return match then {
                Then::Write(value, expires) => Wrote {
                    done: true,
                    added: self.put(&mut stripe, key, value, expires),
                },
                Then::Delete => {
                    stripe.markers.remove(key);
                    Wrote {
                        done: true,
                        added: false,
                    }
                }
            };
        }
        if is_marker(expected) {
            // The cache holds no markers.
            return Wrote::default();
        }
        // A value: compared and changed in one step of moka's entry API.
        let mut new_marker = None;
        let outcome = self.values.entry_by_ref(key).and_compute_with(|current| {
            let holds =
                current.is_some_and(|e| e.value().live(now) && *e.value().bytes == *expected);
            match then {
                _ if !holds => Op::Nop,
                Then::Write(value, expires) if is_marker(value) => {
                    new_marker = Some(Item {
                        bytes: value.into(),
                        expires,
                    });
                    Op::Remove
                }
                Then::Write(value, expires) => Op::Put(Arc::new(Item {
                    bytes: value.into(),
                    expires,
                })),
                Then::Delete => Op::Remove,
            }
        });
        match outcome {
            CompResult::ReplacedWith(_) => Wrote {
                done: true,
                added: false,
            },
            CompResult::Removed(_) => {
                if let Some(marker) = new_marker {
                    stripe.markers.insert(key.into(), marker);
                }
                Wrote {
                    done: true,
                    added: false,
                }
            }
            _ => Wrote::default(),
        }
    }

    /// Every live key matching `pattern`, each once, markers included.
    fn matching(&self, pattern: &str) -> BTreeSet<String> {
        let now = Instant::now();
        let matches = |k: &str| glob::matches(pattern.as_bytes(), k.as_bytes());
        let mut out: BTreeSet<String> = self
            .values
            .iter()
            .filter(|(k, v)| v.live(now) && matches(k))
            .map(|(k, _)| String::clone(&k))
            .collect();
        for stripe in self.stripes.iter() {
            let mut stripe = Self::locked(stripe);
            stripe.markers.retain(|_, m| m.live(now));
            out.extend(
                stripe
                    .markers
                    .keys()
                    .filter(|k| matches(k))
                    .map(|k| k.to_string()),
            );
        }
        out
    }
}

impl Store for MemoryStore {
    async fn get(&self, _mode: Mode, key: &str) -> Result<Option<Vec<u8>>> {
        // The hot path: a hit takes no lock of ours (moka checks the entry's expiry).
        if let Some(v) = self.values.get(key) {
            return Ok(Some(v.bytes.to_vec()));
        }
        let stripe = self.lock(key);
        if let Some(marker) = stripe.marker(key, Instant::now()) {
            return Ok(Some(marker.bytes.to_vec()));
        }
        // A value written since the first look (replacing a lease) is there now; the look
        // costs no second read in moka's popularity count unless it finds one.
        if !self.values.contains_key(key) {
            return Ok(None);
        }
        Ok(self.values.get(key).map(|v| v.bytes.to_vec()))
    }

    async fn get_sliding(&self, mode: Mode, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>> {
        let bytes = self.get(mode, key).await?;
        if let Some(b) = bytes.as_deref().filter(|b| !is_marker(b)) {
            // Only while the key still holds these bytes: a value written or deleted since
            // the read keeps its own expiry. moka takes the new instant from `PerEntry`.
            self.compare_and(key, b, Then::Write(b, Instant::now() + ttl));
        }
        Ok(bytes)
    }

    async fn set(&self, _mode: Mode, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let added = self.put(&mut self.lock(key), key, value, Instant::now() + ttl);
        self.enforce_bound(Wrote { done: true, added });
        Ok(())
    }

    async fn set_nx(&self, _mode: Mode, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        let now = Instant::now();
        let mut stripe = self.lock(key);
        if stripe.marker(key, now).is_some() || self.values.contains_key(key) {
            return Ok(false);
        }
        let added = self.put(&mut stripe, key, value, now + ttl);
        drop(stripe);
        Ok(self.enforce_bound(Wrote { done: true, added }))
    }

    async fn set_if(
        &self,
        _mode: Mode,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let wrote = self.compare_and(key, expected, Then::Write(value, Instant::now() + ttl));
        Ok(self.enforce_bound(wrote))
    }

    async fn renew_if(
        &self,
        _mode: Mode,
        key: &str,
        expected: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let wrote = self.compare_and(key, expected, Then::Write(expected, Instant::now() + ttl));
        Ok(self.enforce_bound(wrote))
    }

    async fn delete_if(&self, _mode: Mode, key: &str, expected: &[u8]) -> Result<bool> {
        Ok(self.compare_and(key, expected, Then::Delete).done)
    }

    async fn delete(&self, _mode: Mode, keys: &[&str]) -> Result<u64> {
        let now = Instant::now();
        let mut n = 0;
        for key in keys {
            n += u64::from(self.remove(&mut self.lock(key), key, now));
        }
        Ok(n)
    }

    async fn delete_pattern(&self, _mode: Mode, pattern: &str) -> Result<u64> {
        // Every stripe locked for the whole walk, in order (a writer holds one at a time): a
        // write under way cannot move a key from the marker map to the value cache between
        // the walk of one and of the other, which would let a lease holder's value, computed
        // before this invalidation, slip past it.
        let mut stripes: Vec<MutexGuard<'_, Stripe>> =
            self.stripes.iter().map(|s| Self::locked(s)).collect();
        let now = Instant::now();
        let matches = |k: &str| glob::matches(pattern.as_bytes(), k.as_bytes());
        let mut keys: BTreeSet<String> = self
            .values
            .iter()
            .filter(|(k, v)| v.live(now) && matches(k))
            .map(|(k, _)| String::clone(&k))
            .collect();
        for stripe in &mut stripes {
            stripe.markers.retain(|_, m| m.live(now));
            keys.extend(
                stripe
                    .markers
                    .keys()
                    .filter(|k| matches(k))
                    .map(|k| k.to_string()),
            );
        }
        let mut n = 0;
        for key in keys {
            n += u64::from(self.remove(&mut stripes[self.stripe_of(&key)], &key, now));
        }
        Ok(n)
    }

    async fn ping(&self, _mode: Mode) -> Result<()> {
        Ok(())
    }

    async fn ttl(&self, _mode: Mode, key: &str) -> Result<KeyTtl> {
        let now = Instant::now();
        let stripe = self.lock(key);
        Ok(self
            .current(&stripe, key, now, |v| KeyTtl::Expires(v.expires - now))
            .unwrap_or(KeyTtl::Missing))
    }

    async fn keys(&self, _mode: Mode, pattern: &str) -> Result<Vec<String>> {
        Ok(self.matching(pattern).into_iter().collect())
    }

    async fn set_if_aging(
        &self,
        _mode: Mode,
        key: &str,
        expected: &[u8],
        max_left: Duration,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let now = Instant::now();
        let mut stripe = self.lock(key);
        let holds = self
            .current(&stripe, key, now, |v| {
                *v.bytes == *expected && v.expires <= now + max_left
            })
            .unwrap_or(false);
        if !holds {
            return Ok(false);
        }
        let added = self.put(&mut stripe, key, value, now + ttl);
        drop(stripe);
        Ok(self.enforce_bound(Wrote { done: true, added }))
    }

    async fn tag_add(&self, _mode: Mode, set: &str, member: &str, life: Duration) -> Result<()> {
        let now = self.now_ms();
        let until = now.saturating_add(life.as_millis() as u64);
        let mut tags = self.tag_sets();
        tags.adds += 1;
        if tags.adds % TAG_SWEEP_EVERY == 0 {
            tags.sweep(now);
        }
        let entries = tags.sets.entry(set.to_owned()).or_default();
        entries.prune(now);
        // Always a new score (a later one kept, plus 1 ms): an invalidation that read the
        // old one forgets the entry only if nobody recorded the key again meanwhile.
        let until = match entries.members.get(member) {
            Some(e) => until.max(*e + 1),
            None => until,
        };
        entries.put(member, until);
        Ok(())
    }

    async fn tag_page(
        &self,
        _mode: Mode,
        set: &str,
        from: TagCursor,
        count: usize,
    ) -> Result<TagPage> {
        let now = self.now_ms();
        let mut tags = self.tag_sets();
        let Some(entries) = tags.sets.get_mut(set) else {
            return Ok(TagPage::default());
        };
        if from == TagCursor::Start {
            entries.prune(now);
        }
        let after = match &from {
            TagCursor::After(last) => Bound::Excluded(last.clone()),
            TagCursor::Start | TagCursor::Scan(_) => Bound::Unbounded,
        };
        let mut page: Vec<(String, String)> = entries
            .members
            .range((after, Bound::Unbounded))
            .take(count.max(1) + 1)
            .map(|(m, until)| (m.clone(), until.to_string()))
            .collect();
        let next = if page.len() > count.max(1) {
            page.pop();
            page.last().map(|(m, _)| TagCursor::After(m.clone()))
        } else {
            None
        };
        Ok(TagPage {
            entries: page,
            next,
            server: 0,
        })
    }

    async fn tag_forget(&self, _mode: Mode, set: &str, gone: &[(String, String)]) -> Result<()> {
        let mut tags = self.tag_sets();
        if let Some(entries) = tags.sets.get_mut(set) {
            for (m, score) in gone {
                if entries
                    .members
                    .get(m)
                    .is_some_and(|u| u.to_string() == *score)
                {
                    entries.remove(m);
                }
            }
            if entries.is_empty() {
                tags.sets.remove(set);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
