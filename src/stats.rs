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
    /// Invalidations that still failed after their retries.
    pub failed_invalidations: u64,
    /// Computed values that were returned but not stored, because they would not read
    /// back equal (a `NaN`, `Some(None)`) or did not serialize.
    pub unstorable: u64,
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

#[derive(Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub near_hits: AtomicU64,
    pub misses: AtomicU64,
    pub sets: AtomicU64,
    pub invalidated: AtomicU64,
    pub errors: AtomicU64,
    pub decode_errors: AtomicU64,
    pub failed_invalidations: AtomicU64,
    pub unstorable: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> Stats {
        Stats {
            hits: self.hits.load(Relaxed),
            near_hits: self.near_hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            sets: self.sets.load(Relaxed),
            invalidated: self.invalidated.load(Relaxed),
            errors: self.errors.load(Relaxed),
            decode_errors: self.decode_errors.load(Relaxed),
            failed_invalidations: self.failed_invalidations.load(Relaxed),
            unstorable: self.unstorable.load(Relaxed),
        }
    }
}
