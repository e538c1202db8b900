//! Counters of what a cache did.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a cache's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls answered by a stored value (near hits included).
    pub hits: u64,
    /// Calls answered from the near cache in process memory, with no round trip.
    pub near_hits: u64,
    /// Calls that found no usable value on their first read (none, a lease, or one that no
    /// longer deserializes). A call that then waited for another caller's computation, in
    /// this process or another, is still one miss.
    pub misses: u64,
    /// Values written.
    pub sets: u64,
    /// Keys deleted by deletions and invalidations.
    pub invalidated: u64,
    /// Store faults (unreachable, timed out, error replies) and template errors met by
    /// fail-open calls.
    pub errors: u64,
    /// Stored values that no longer deserialized into the requested type.
    pub decode_errors: u64,
    /// Invalidations that could not be done at once: they still failed after their retries
    /// (a store fault, then [queued](Self::queued_invalidations); or a template that did not
    /// render).
    pub failed_invalidations: u64,
    /// Invalidations that could not reach the store and were queued, to be retried in the
    /// background until they land ([`ErrorKind::Queued`](crate::ErrorKind::Queued)).
    pub queued_invalidations: u64,
    /// Queued invalidations that have not landed yet (a gauge, not a count since start):
    /// while one is, no cache of the process on this store and prefix serves what it names.
    pub pending_invalidations: u64,
    /// Calls answered without the cache because a queued invalidation named their key or
    /// one of their tags.
    pub held_back: u64,
    /// Computed values that were returned but not stored, because they would not read
    /// back equal (a `NaN`, `Some(None)`) or did not serialize.
    pub unstorable: u64,
    /// Computations that failed and were answered with a value past its TTL but within its
    /// [`stale_if_error`](crate::Cacheable::stale_if_error) window.
    pub stale_if_error: u64,
    /// Values written by a refresh that kept the current value readable meanwhile: an
    /// early refresh ([`Cacheable::early_refresh`](crate::Cacheable::early_refresh)) or a
    /// revalidation ([`Cacheable::stale_while_revalidate`](crate::Cacheable::stale_while_revalidate)).
    pub early_refreshes: u64,
    /// Calls answered at once with a value past its TTL while another caller refreshed it
    /// ([`Cacheable::stale_while_revalidate`](crate::Cacheable::stale_while_revalidate)).
    pub stale_while_revalidate: u64,
    /// Forced refreshes: calls that computed a new value in place of a stored one
    /// ([`Cacheable::refresh`](crate::Cacheable::refresh)); early refreshes count in
    /// [`early_refreshes`](Self::early_refreshes).
    pub refreshes: u64,
    /// Calls that skipped the cache ([`Cacheable::bypass`](crate::Cacheable::bypass)).
    pub bypasses: u64,
    /// Calls that computed while the cache was switched off
    /// ([`Cache::disable`](crate::Cache::disable)).
    pub disabled_calls: u64,
    /// Computed values that were returned but not stored because the call said so
    /// ([`Cacheable::store_if`](crate::Cacheable::store_if) false, or a zero TTL from
    /// [`Cacheable::ttl_from`](crate::Cacheable::ttl_from)).
    pub declined: u64,
    /// Hits that pushed the key's expiry to a full TTL again
    /// ([`Cacheable::sliding`](crate::Cacheable::sliding)).
    pub sliding_hits: u64,
    /// Calls answered without the cache ([`Outcome::Unavailable`](crate::Outcome::Unavailable)):
    /// a store fault, a key that did not render, a queued invalidation holding the key
    /// back. [`CacheManager::stats`](crate::CacheManager::stats) also counts the calls made
    /// while the global cache could not be built.
    pub uncached: u64,
    /// Failed computations answered with the value given to
    /// [`Cacheable::fallback`](crate::Cacheable::fallback) (nothing stale to serve).
    pub fallbacks: u64,
    /// Calls answered with the failure of the computation they waited on, in this process
    /// or another, without running their own
    /// ([`Cacheable::try_run_shared`](crate::Cacheable::try_run_shared)).
    pub shared_failures: u64,
    /// Async computations given up at their
    /// [`hard_timeout`](crate::Cacheable::hard_timeout).
    pub hard_timeouts: u64,
    /// Calls answered with a value past its TTL at their
    /// [`soft_timeout`](crate::Cacheable::soft_timeout), their computation left to finish
    /// and write on its own.
    pub soft_timeouts: u64,
}

impl Stats {
    /// `hits / (hits + misses)`, or 0 before any read.
    pub fn hit_rate(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

/// A counter bumped from many threads: its shards sit on cache lines of their own, and each
/// thread writes one shard, so that threads on different cores do not fight over one line
/// on every hit.
#[derive(Default)]
pub(crate) struct Counter {
    shards: [Padded; SHARDS],
}

const SHARDS: usize = 8;

#[derive(Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

fn shard() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SHARD: usize = (NEXT.fetch_add(1, Relaxed) % SHARDS as u64) as usize;
    }
    SHARD.with(|s| *s)
}

impl Counter {
    pub fn add(&self, n: u64) {
        self.shards[shard()].0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    /// Hits answered by the store (Redis or the embedded store). A near hit bumps only
    /// `near_hits`, one atomic add on the hottest path; the snapshot sums the two.
    pub store_hits: Counter,
    pub near_hits: Counter,
    pub misses: Counter,
    pub sets: Counter,
    pub invalidated: Counter,
    pub errors: Counter,
    pub decode_errors: Counter,
    pub failed_invalidations: Counter,
    pub queued_invalidations: Counter,
    pub held_back: Counter,
    pub unstorable: Counter,
    pub stale_if_error: Counter,
    pub early_refreshes: Counter,
    pub stale_while_revalidate: Counter,
    pub refreshes: Counter,
    pub bypasses: Counter,
    pub disabled_calls: Counter,
    pub declined: Counter,
    pub sliding_hits: Counter,
    pub uncached: Counter,
    pub fallbacks: Counter,
    pub shared_failures: Counter,
    pub hard_timeouts: Counter,
    pub soft_timeouts: Counter,
}

impl Counters {
    pub fn add(counter: &Counter, n: u64) {
        counter.add(n);
    }

    pub fn snapshot(&self) -> Stats {
        let near_hits = self.near_hits.get();
        Stats {
            hits: self.store_hits.get() + near_hits,
            near_hits,
            misses: self.misses.get(),
            sets: self.sets.get(),
            invalidated: self.invalidated.get(),
            errors: self.errors.get(),
            decode_errors: self.decode_errors.get(),
            failed_invalidations: self.failed_invalidations.get(),
            queued_invalidations: self.queued_invalidations.get(),
            pending_invalidations: 0,
            held_back: self.held_back.get(),
            unstorable: self.unstorable.get(),
            stale_if_error: self.stale_if_error.get(),
            early_refreshes: self.early_refreshes.get(),
            stale_while_revalidate: self.stale_while_revalidate.get(),
            refreshes: self.refreshes.get(),
            bypasses: self.bypasses.get(),
            disabled_calls: self.disabled_calls.get(),
            declined: self.declined.get(),
            sliding_hits: self.sliding_hits.get(),
            uncached: self.uncached.get(),
            fallbacks: self.fallbacks.get(),
            shared_failures: self.shared_failures.get(),
            hard_timeouts: self.hard_timeouts.get(),
            soft_timeouts: self.soft_timeouts.get(),
        }
    }
}
