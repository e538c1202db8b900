//! The store contract: what a [`Cache`](crate::Cache) needs of a store, the [`Mode`] its
//! calls run in, and what the bytes at a key can be (a value or a lease marker).
//!
//! The embedded memory store and Redis both implement [`Store`], whose operations are
//! written once and run in either mode: blocking (the future is ready when first polled,
//! and [`block_on`] drives it) or async. [`Backend`] dispatches to the configured store
//! without boxing futures on the hot path.

#[cfg(feature = "cluster")]
pub(crate) mod cluster;
mod entry;
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

use crate::config::{Config, StoreConfig};
use crate::error::Result;
use crate::rt::Mode;
pub(crate) use entry::{failed_marker, is_marker, Entry, FAILED_TTL, LEASE_PREFIX};
use std::future::Future;
use std::time::Duration;

/// What a near cache in front of a store must do when the store's invalidation tracking
/// tells it of changes (`near::NearCache` is the one; the store knows no more of it).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) trait Tracked: Send + Sync {
    /// `key` changed.
    fn invalidate(&self, key: &str);
    /// Everything may have changed (a flush).
    fn flush(&self);
    /// Invalidations can no longer be trusted to arrive: serve nothing until [`trust`].
    ///
    /// [`trust`]: Tracked::trust
    fn distrust(&self);
    /// Invalidations arrive (tracking confirmed).
    fn trust(&self);
    /// Tracking could not start, for this reason.
    fn failed(&self, why: String);
}

/// The bytes at a key and, when asked for and known, how long they have left.
pub(crate) type Read = (Option<Vec<u8>>, Option<Duration>);

/// How long a key has left to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// There is no such key.
    Missing,
    /// The key exists and never expires (it was written outside this crate).
    Persistent,
    /// The key expires after this long.
    Expires(Duration),
}

/// One store's operations. Keys and patterns are full keys, prefix included; values are
/// encoded values (or lease markers).
pub(crate) trait Store: Send + Sync {
    fn get(&self, mode: Mode, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// The bytes at `key` and how long they have left, for the near cache, whose copy must
    /// not outlive them. Stores that can, answer both in one round trip.
    fn get_with_ttl(
        &self,
        mode: Mode,
        key: &str,
    ) -> impl Future<Output = Result<(Option<Vec<u8>>, Option<Duration>)>> + Send {
        async move {
            let bytes = self.get(mode, key).await?;
            if bytes.is_none() {
                return Ok((None, None));
            }
            let left = match self.ttl(mode, key).await? {
                KeyTtl::Expires(d) => Some(d),
                KeyTtl::Missing | KeyTtl::Persistent => None,
            };
            Ok((bytes, left))
        }
    }
    /// What [`get_with_ttl`](Self::get_with_ttl) (with `with_ttl`) or [`get`](Self::get)
    /// reads, for each of `keys`, in their order: a batch's first reads, in one round trip
    /// per server. One `Result` per key: on a cluster, a node's fault fails its keys only.
    fn get_many(
        &self,
        mode: Mode,
        keys: &[&str],
        with_ttl: bool,
    ) -> impl Future<Output = Vec<Result<Read>>> + Send {
        async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(if with_ttl {
                    self.get_with_ttl(mode, key).await
                } else {
                    self.get(mode, key).await.map(|b| (b, None))
                });
            }
            out
        }
    }
    /// The bytes at `key`, and when they are a value (not a lease or failure marker), its
    /// expiry pushed to `ttl` from now, in the same round trip: a sliding read.
    fn get_sliding(
        &self,
        mode: Mode,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    fn set(
        &self,
        mode: Mode,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes exact keys; returns how many existed.
    fn delete(&self, mode: Mode, keys: &[&str]) -> impl Future<Output = Result<u64>> + Send;
    /// Deletes every key matching a Redis glob; returns how many went.
    fn delete_pattern(&self, mode: Mode, pattern: &str)
        -> impl Future<Output = Result<u64>> + Send;
    /// One round trip to every server the store uses (`PING`), whatever the breaker says.
    fn ping(&self, mode: Mode) -> impl Future<Output = Result<()>> + Send;
    fn ttl(&self, mode: Mode, key: &str) -> impl Future<Output = Result<KeyTtl>> + Send;
    /// Every key matching a Redis glob, each once.
    fn keys(&self, mode: Mode, pattern: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Writes only when the key is absent (`SET NX PX`); true when written.
    fn set_nx(
        &self,
        mode: Mode,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Overwrites only while the key still holds `expected`, atomically; true when written.
    fn set_if(
        &self,
        mode: Mode,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Deletes only while the key still holds `expected`, atomically; true when deleted.
    fn delete_if(
        &self,
        mode: Mode,
        key: &str,
        expected: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Resets the key's TTL only while it still holds `expected`; true when it did.
    fn renew_if(
        &self,
        mode: Mode,
        key: &str,
        expected: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Early refresh: overwrites `key` only while it still holds `expected` with at most
    /// `max_left` to live (a key written again since, by a computation after an
    /// invalidation, has more), atomically; true when written.
    fn set_if_aging(
        &self,
        mode: Mode,
        key: &str,
        expected: &[u8],
        max_left: Duration,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;

    // ---- Tags (`Cacheable::tags`): a tag set is a sorted set of full keys scored by the
    // instant (ms) after which the entry may be pruned; the set itself expires with its
    // last entry. Every operation touches the one tag-set key only (slot-safe on a cluster)
    // and costs what one page costs, whatever the set's size.

    /// Records `member` in the tag set `set` for `life` from now (keeping a later expiry it
    /// already has, always with a new score), prunes a bounded number of entries past their
    /// expiry, and extends the set's TTL to cover the entry.
    fn tag_add(
        &self,
        mode: Mode,
        set: &str,
        member: &str,
        life: Duration,
    ) -> impl Future<Output = Result<()>> + Send;
    /// One page of about `count` entries of the tag set with their scores (as the store
    /// writes them, for [`tag_forget`](Self::tag_forget)), and where the next page starts
    /// (`None`: this was the last). An entry present for the whole walk is listed at least
    /// once; one added during it may or may not be.
    fn tag_page(
        &self,
        mode: Mode,
        set: &str,
        from: TagCursor,
        count: usize,
    ) -> impl Future<Output = Result<TagPage>> + Send;
    /// Removes each entry that still has the score it was listed with (one re-added since,
    /// by a new computation, stays); deletes the set when it is left empty.
    fn tag_forget(
        &self,
        mode: Mode,
        set: &str,
        entries: &[(String, String)],
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Where a walk through a tag set stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TagCursor {
    Start,
    /// Redis's `ZSCAN` cursor.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Scan(u64),
    /// The embedded store's: the last member listed (its sets are ordered).
    After(String),
}

/// One page of a tag set: entries (full key, score) and the next page's start.
#[derive(Debug, Default)]
pub(crate) struct TagPage {
    pub entries: Vec<(String, String)>,
    pub next: Option<TagCursor>,
    /// Which server process answered, as far as the store can tell (it changes with a
    /// failover, a new slot map, broken connections): a walk whose pages come from two
    /// starts over, since a cursor of one means nothing to the other.
    pub server: u64,
}

/// How long after its expiry a tag entry is pruned. Entries are scored by the clock of the
/// process that wrote them (no `TIME` in the scripts: it is not in the ACL categories a
/// cache user is given), so processes whose clocks disagree by less than this never prune
/// an entry whose key still lives.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) const TAG_CLOCK_SLACK: Duration = Duration::from_secs(60);

/// Milliseconds since the Unix epoch on this process's clock: the scores of tag entries and
/// the deadlines in stored values.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) enum Backend {
    Memory(memory::MemoryStore),
    // Boxed: a Redis store is large, and one of these lives per `Cache` behind an `Arc`.
    #[cfg(feature = "redis")]
    Redis(Box<redis::RedisStore>),
    #[cfg(feature = "cluster")]
    Cluster(Box<cluster::ClusterStore>),
}

impl Backend {
    pub(crate) fn new(config: &Config) -> Result<Backend> {
        Ok(match &config.store {
            StoreConfig::Memory { max_entries } => {
                Backend::Memory(memory::MemoryStore::new(*max_entries))
            }
            #[cfg(feature = "redis")]
            StoreConfig::Redis { url } => {
                Backend::Redis(Box::new(redis::RedisStore::new(url, config)?))
            }
            #[cfg(feature = "cluster")]
            StoreConfig::Cluster { nodes } => {
                Backend::Cluster(Box::new(cluster::ClusterStore::new(nodes, config)?))
            }
            // The one-server store, on whichever server the Sentinels name the primary.
            #[cfg(feature = "sentinel")]
            StoreConfig::Sentinel(sentinel) => {
                Backend::Redis(Box::new(redis::RedisStore::sentinel(sentinel, config)?))
            }
        })
    }

    /// Keeps `near` correct for this store: on Redis, a tracking connection; the embedded
    /// store needs none (every write goes through this process, which evicts as it writes).
    pub(crate) fn track(&self, near: &std::sync::Arc<dyn Tracked>, prefix: &str, config: &Config) {
        match self {
            Backend::Memory(_) => near.trust(),
            #[cfg(feature = "redis")]
            Backend::Redis(s) => {
                s.track(near, prefix.to_owned(), config.near_ignores_invalidations)
            }
            #[cfg(feature = "cluster")]
            Backend::Cluster(s) => {
                s.track(near, prefix.to_owned(), config.near_ignores_invalidations)
            }
        }
        #[cfg(not(feature = "redis"))]
        let _ = (prefix, config);
    }

    /// What tells this store from another in the process: the server (or the Sentinels'
    /// service, or the cluster's seed nodes) and the database, never a password. `None` for
    /// the embedded store, which no other cache shares.
    pub(crate) fn identity(config: &Config) -> Option<String> {
        #[cfg(feature = "redis")]
        fn addr(url: &crate::redact::SecretUrl) -> String {
            use ::redis::IntoConnectionInfo;
            match url.expose().into_connection_info() {
                Ok(info) => format!("{}/{}", info.addr(), info.redis_settings().db()),
                Err(_) => url.to_string(),
            }
        }
        match &config.store {
            StoreConfig::Memory { .. } => None,
            #[cfg(feature = "redis")]
            StoreConfig::Redis { url } => Some(format!("redis {}", addr(url))),
            #[cfg(feature = "cluster")]
            StoreConfig::Cluster { nodes } => {
                let mut seeds: Vec<String> = nodes.iter().map(addr).collect();
                seeds.sort();
                Some(format!("cluster {}", seeds.join(",")))
            }
            #[cfg(feature = "sentinel")]
            StoreConfig::Sentinel(s) => {
                let mut sentinels: Vec<String> = s.sentinels.iter().map(addr).collect();
                sentinels.sort();
                let db = s.node.expose().rsplit_once('/').map_or("", |(_, db)| db);
                let db = db.split('?').next().unwrap_or_default();
                Some(format!(
                    "sentinel {} {} db {db}",
                    s.service,
                    sentinels.join(",")
                ))
            }
        }
    }

    /// Whether calls fail fast because the store (or, on a cluster, a primary) looked down.
    pub(crate) fn breaker_open(&self) -> bool {
        match self {
            Backend::Memory(_) => false,
            #[cfg(feature = "redis")]
            Backend::Redis(s) => s.breaker_open(),
            #[cfg(feature = "cluster")]
            Backend::Cluster(s) => s.breaker_open(),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            Backend::Redis(s) => s.kind(),
            #[cfg(feature = "cluster")]
            Backend::Cluster(_) => "cluster",
        }
    }
}

/// Forwards each `Store` method to the configured store.
macro_rules! dispatch {
    ($(fn $name:ident(&self, $mode:ident: Mode $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Backend {$(
            pub(crate) async fn $name(&self, $mode: Mode $(, $arg: $ty)*) -> $ret {
                // Async store calls count against the caller's tokio budget: the embedded
                // store, and a store that fails fast, answer without ever pending.
                if $mode == Mode::Async {
                    crate::rt::cooperate().await;
                }
                match self {
                    Backend::Memory(s) => s.$name($mode $(, $arg)*).await,
                    #[cfg(feature = "redis")]
                    Backend::Redis(s) => s.$name($mode $(, $arg)*).await,
                    // Boxed: a cluster command's future is about 5 KB (redis-rs's cluster
                    // routing), and each of these is held inline by every cached call's
                    // future, which a near hit moves several times. One allocation per
                    // cluster command, against a network round trip.
                    #[cfg(feature = "cluster")]
                    Backend::Cluster(s) => Box::pin(s.$name($mode $(, $arg)*)).await,
                }
            }
        )*}
    };
}

dispatch! {
    fn get(&self, mode: Mode, key: &str) -> Result<Option<Vec<u8>>>;
    fn get_with_ttl(&self, mode: Mode, key: &str) -> Result<(Option<Vec<u8>>, Option<Duration>)>;
    fn get_sliding(&self, mode: Mode, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>>;
    fn get_many(&self, mode: Mode, keys: &[&str], with_ttl: bool) -> Vec<Result<Read>>;
    fn set(&self, mode: Mode, key: &str, value: &[u8], ttl: Duration) -> Result<()>;
    fn delete(&self, mode: Mode, keys: &[&str]) -> Result<u64>;
    fn delete_pattern(&self, mode: Mode, pattern: &str) -> Result<u64>;
    fn ping(&self, mode: Mode) -> Result<()>;
    fn ttl(&self, mode: Mode, key: &str) -> Result<KeyTtl>;
    fn keys(&self, mode: Mode, pattern: &str) -> Result<Vec<String>>;
    fn set_nx(&self, mode: Mode, key: &str, value: &[u8], ttl: Duration) -> Result<bool>;
    fn set_if(&self, mode: Mode, key: &str, expected: &[u8], value: &[u8], ttl: Duration) -> Result<bool>;
    fn delete_if(&self, mode: Mode, key: &str, expected: &[u8]) -> Result<bool>;
    fn renew_if(&self, mode: Mode, key: &str, expected: &[u8], ttl: Duration) -> Result<bool>;
    fn set_if_aging(&self, mode: Mode, key: &str, expected: &[u8], max_left: Duration, value: &[u8], ttl: Duration) -> Result<bool>;
    fn tag_add(&self, mode: Mode, set: &str, member: &str, life: Duration) -> Result<()>;
    fn tag_page(&self, mode: Mode, set: &str, from: TagCursor, count: usize) -> Result<TagPage>;
    fn tag_forget(&self, mode: Mode, set: &str, entries: &[(String, String)]) -> Result<()>;
}
