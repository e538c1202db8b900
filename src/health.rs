//! What a readiness probe needs to know of a cache: [`Cache::health`](crate::Cache::health).

use crate::error::Error;
use std::time::Duration;

/// The state of a cache, from one round trip to its store and what the process knows.
///
/// ```
/// use cacheable::{Cache, Config, NearCacheHealth};
///
/// let cache = Cache::new(Config::memory())?;
/// let health = cache.health();
/// assert!(health.is_ready());
/// assert_eq!(health.pending_invalidations, 0);
/// assert!(matches!(health.near_cache, NearCacheHealth::Serving { .. }));
/// # Ok::<(), cacheable::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Health {
    /// The round trip of a `PING` the store answered within the operation timeout (on a
    /// cluster, the slowest primary's), or why it did not. The embedded store answers at
    /// once. The breaker does not hold the `PING` back.
    pub store: Result<Duration, Error>,
    /// Whether cached calls fail fast because the store looked down
    /// ([`Config::breaker`](crate::Config::breaker)); on a cluster, for some primary.
    pub breaker_open: bool,
    /// Whether the near cache serves.
    pub near_cache: NearCacheHealth,
    /// Invalidations that could not reach the store and wait to be retried: until they
    /// land, no cache of the process on this store and prefix serves what they name.
    pub pending_invalidations: u64,
    /// How long the oldest of them has waited.
    pub oldest_pending: Option<Duration>,
    /// False between [`Cache::disable`](crate::Cache::disable) and `enable`.
    pub enabled: bool,
}

/// The near cache's part of [`Health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NearCacheHealth {
    /// There is none ([`Config::near_cache`](crate::Config::near_cache) not set).
    Off,
    /// It serves: its tracking of invalidations is confirmed (or the store is the embedded
    /// one, whose every write goes through this process). It holds `entries` values.
    Serving {
        /// Values it holds.
        entries: u64,
    },
    /// It serves nothing and every call reads the store: tracking is not running (not yet
    /// confirmed, lost, or refused, as `reason` says when tracking failed to start).
    NotServing {
        /// Why tracking last failed to start, if it did.
        reason: Option<String>,
    },
}

impl Health {
    /// Whether the cache works: its store answered. (A near cache that does not serve, or
    /// queued invalidations, make calls slower or uncached, not wrong.)
    pub fn is_ready(&self) -> bool {
        self.store.is_ok()
    }
}
