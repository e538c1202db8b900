//! Where the cache lives and how it behaves.

mod env;
mod url;

#[cfg(feature = "sentinel")]
use url::{percent_encode, split_node_path};

use crate::codec::{Codec, Format};
use crate::error::{Error, Result};
#[cfg(feature = "redis")]
use crate::redact::SecretUrl;
use std::time::Duration;

/// Which store a [`Cache`](crate::Cache) talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreConfig {
    /// The embedded in-process store, bounded to `max_entries`.
    Memory { max_entries: usize },
    /// One Redis server (`redis://`, `redis+unix://`, `unix://`). The URL shows masked.
    #[cfg(feature = "redis")]
    Redis { url: SecretUrl },
    /// A Redis Cluster: its seed nodes, each a `redis://` (or `rediss://`) URL, shown masked.
    #[cfg(feature = "cluster")]
    Cluster { nodes: Vec<SecretUrl> },
    /// A primary found through Redis Sentinel, shown masked.
    #[cfg(feature = "sentinel")]
    Sentinel(SentinelConfig),
}

/// Where the Sentinels are and how to reach the primary they name.
#[cfg(feature = "sentinel")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentinelConfig {
    /// Each Sentinel as a `redis://` (or `rediss://`) URL, with the Sentinels' own
    /// credentials if they have any.
    pub(crate) sentinels: Vec<SecretUrl>,
    /// The name the Sentinels monitor the primary under (`sentinel monitor NAME …`).
    pub(crate) service: String,
    /// The URL of the primary with the placeholder host [`PRIMARY_HOST`]: scheme, the data
    /// nodes' credentials, database and query, which the primary's address completes.
    pub(crate) node: SecretUrl,
}

/// The host in [`SentinelConfig::node`] that the address the Sentinels name replaces.
#[cfg(feature = "sentinel")]
pub(crate) const PRIMARY_HOST: &str = "sentinel-primary:0";

/// The configuration of a [`Cache`](crate::Cache): store, key prefix, default TTL,
/// timeouts, hash length and debug logging.
///
/// ```
/// use cacheable::Config;
/// use std::time::Duration;
///
/// let config = Config::from_url("redis://127.0.0.1:6379/1")?
///     .prefix("paycore")
///     .default_ttl(300)
///     .op_timeout(Duration::from_millis(100));
/// # Ok::<(), cacheable::Error>(())
/// ```
#[derive(Clone, PartialEq)]
#[must_use]
pub struct Config {
    pub(crate) store: StoreConfig,
    pub(crate) prefix: String,
    pub(crate) default_ttl: Duration,
    pub(crate) op_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) hash_len: usize,
    pub(crate) debug: bool,
    pub(crate) strict: bool,
    pub(crate) near_cache: Option<u64>,
    pub(crate) near_cache_bytes: Option<u64>,
    pub(crate) near_ignores_invalidations: bool,
    pub(crate) invalidate_retries: u32,
    pub(crate) scan_count: usize,
    pub(crate) pool_size: usize,
    pub(crate) leases: bool,
    pub(crate) lease_ttl: Duration,
    pub(crate) lease_wait: Duration,
    pub(crate) unchecked_lease_writes: bool,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    /// Encoded values larger than this are served but not stored; `None`: no bound.
    pub(crate) max_value_bytes: Option<usize>,
    /// How values are written: codec and compression.
    pub(crate) format: Format,
    /// The default early-refresh β of builders that set none; 0 is off.
    pub(crate) early_refresh: f64,
    /// The default expiry jitter of builders that set none; zero is off.
    pub(crate) jitter: Duration,
    /// The default fail-safe throttle of builders that set none; zero is off.
    pub(crate) fail_safe_throttle: Duration,
    /// The default hard timeout of builders that set none.
    pub(crate) hard_timeout: Option<Duration>,
    /// The default soft timeout of builders that set none.
    pub(crate) soft_timeout: Option<Duration>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Tls,
    /// A Sentinel-only setting (`db`, `primary_auth`) given to another store: `validate`
    /// refuses it rather than ignore it.
    pub(crate) sentinel_only: Option<&'static str>,
}

/// Certificates for `rediss://`, PEM-encoded. Without a root, the system's roots are used.
#[cfg(feature = "tls")]
#[derive(Clone, Default, PartialEq)]
pub(crate) struct Tls {
    pub root_cert: Option<Vec<u8>>,
    pub client_cert_and_key: Option<(Vec<u8>, Vec<u8>)>,
}

#[cfg(feature = "tls")]
impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("Tls")
            .field("root_cert", &self.root_cert.is_some())
            .field("client_cert", &self.client_cert_and_key.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Config");
        d.field("store", &self.store)
            .field("prefix", &self.prefix)
            .field("default_ttl", &self.default_ttl)
            .field("op_timeout", &self.op_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("hash_len", &self.hash_len)
            .field("debug", &self.debug)
            .field("strict", &self.strict)
            .field("near_cache", &self.near_cache)
            .field("near_cache_bytes", &self.near_cache_bytes)
            .field("invalidate_retries", &self.invalidate_retries)
            .field("scan_count", &self.scan_count)
            .field("pool_size", &self.pool_size)
            .field("leases", &self.leases)
            .field("lease_ttl", &self.lease_ttl)
            .field("lease_wait", &self.lease_wait)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("codec", &self.format.codec)
            .field("compress_over", &self.format.compress_over)
            .field("early_refresh", &self.early_refresh)
            .field("jitter", &self.jitter)
            .field("fail_safe_throttle", &self.fail_safe_throttle)
            .field("hard_timeout", &self.hard_timeout)
            .field("soft_timeout", &self.soft_timeout)
            .field("max_value_bytes", &self.max_value_bytes);
        // A switch for the crate's own tests: shown only when someone turned it on.
        if self.unchecked_lease_writes {
            d.field("unchecked_lease_writes", &true);
        }
        if self.near_ignores_invalidations {
            d.field("near_cache_ignores_invalidations", &true);
        }
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls);
        d.finish()
    }
}

/// An early-refresh β as used: finite and non-negative, else 0 (off).
pub(crate) fn sane_beta(beta: f64) -> f64 {
    if beta.is_finite() && beta > 0.0 {
        beta
    } else {
        0.0
    }
}

/// The key prefix of a cache whose configuration sets none.
const DEFAULT_PREFIX: &str = "cache";

/// The default bound on entries in the embedded store.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

impl Config {
    fn with_store(store: StoreConfig) -> Config {
        Config {
            store,
            prefix: DEFAULT_PREFIX.to_owned(),
            default_ttl: Duration::from_secs(300),
            op_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(1),
            hash_len: 16,
            debug: false,
            strict: false,
            near_cache: None,
            near_cache_bytes: None,
            near_ignores_invalidations: false,
            invalidate_retries: 3,
            scan_count: 1000,
            pool_size: 16,
            leases: true,
            lease_ttl: Duration::from_secs(5),
            lease_wait: Duration::from_secs(5),
            unchecked_lease_writes: false,
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(1),
            max_value_bytes: None,
            format: Format::default(),
            early_refresh: 0.0,
            jitter: Duration::ZERO,
            fail_safe_throttle: Duration::ZERO,
            hard_timeout: None,
            soft_timeout: None,
            #[cfg(feature = "tls")]
            tls: Tls::default(),
            sentinel_only: None,
        }
    }

    /// The embedded in-memory store, bounded to 100,000 entries
    /// ([`DEFAULT_MAX_ENTRIES`]; `memory://?max_entries=N` sets another bound).
    ///
    /// It holds at most its bound once writes have returned (while they run, at most one
    /// more entry per thread writing), keeps the entries read often or lately (TinyLFU
    /// admission, LRU eviction, by `moka`: when it is full, a new entry asked for less often
    /// than the one it would displace is not kept), expires each entry at its own TTL, and
    /// never evicts a lease (a computation in progress) nor the marker of a failed one, which
    /// the bound does not count.
    pub fn memory() -> Config {
        Config::with_store(StoreConfig::Memory {
            max_entries: DEFAULT_MAX_ENTRIES,
        })
    }

    /// The database on a Sentinel-managed primary (0 by default). Only for
    /// [`Config::sentinel`]: a `redis://` URL names its database in its path, and
    /// `Cache::new` refuses this setting on another store.
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn db(mut self, db: u32) -> Config {
        match &mut self.store {
            StoreConfig::Sentinel(s) => {
                let (head, _) = split_node_path(s.node.expose());
                s.node = SecretUrl::new(&format!("{head}/{db}"));
            }
            _ => self.sentinel_only = Some("db"),
        }
        self
    }

    /// The data nodes' credentials on a Sentinel-managed primary (their `requirepass`, or an
    /// ACL user's): `None` as the user for `AUTH password`. Never shown: `Debug`, errors
    /// and logs mask the password. Only for [`Config::sentinel`]; the Sentinels' own
    /// credentials go in their URLs.
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn primary_auth(mut self, username: Option<&str>, password: &str) -> Config {
        match &mut self.store {
            StoreConfig::Sentinel(s) => {
                let (head, path) = split_node_path(s.node.expose());
                let scheme = head.split_once("://").map_or("redis", |(scheme, _)| scheme);
                let user = username.map(percent_encode).unwrap_or_default();
                s.node = SecretUrl::new(&format!(
                    "{scheme}://{user}:{}@{PRIMARY_HOST}{path}",
                    percent_encode(password)
                ));
            }
            _ => self.sentinel_only = Some("primary_auth"),
        }
        self
    }

    /// The prefix of every key, joined with `:` (`paycore` gives `paycore:user:123:profile`);
    /// `cache` by default. Caches with different prefixes never see, list or delete each
    /// other's keys, even when one prefix starts with the other: `%` and `:` inside a
    /// prefix are percent-encoded in keys (`app:v2` gives `app%3Av2:user:123:profile`), so
    /// `app`'s keys never start with `app:v2`'s. So are `{` and `}`: a prefix never forms a
    /// Redis Cluster hash tag (`{app}` would put the whole cache in one slot, on one node, and
    /// silence the templates' own tags); the templates' tags alone choose which keys share a
    /// slot. It must not be empty: a cache without a
    /// prefix would share its keys with every other.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Config {
        self.prefix = prefix.into();
        self
    }

    /// The TTL of entries whose builder sets none; 300 seconds by default.
    pub fn default_ttl(mut self, ttl: impl IntoTtl) -> Config {
        self.default_ttl = ttl.into_ttl();
        self
    }

    /// How long one store operation may take before it counts as failed; 250 ms by
    /// default. Cached functions then answer from the function itself.
    pub fn op_timeout(mut self, timeout: Duration) -> Config {
        self.op_timeout = timeout.min(MAX_TTL);
        self
    }

    /// How long opening a connection may take; 1 second by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Config {
        self.connect_timeout = timeout.min(MAX_TTL);
        self
    }

    /// How many hex digits of SHA-1 a hashed value renders as, 8 to 40; 16 by default.
    /// Fewer digits mean shorter keys and likelier collisions: with 16 (64 bits), two of a
    /// million distinct values of one argument collide with odds of about 3 in 100 million.
    pub fn hash_len(mut self, digits: usize) -> Config {
        self.hash_len = digits;
        self
    }

    /// Debug logging for every cached function and invalidation on this cache.
    pub fn debug(mut self, on: bool) -> Config {
        self.debug = on;
        self
    }

    /// Strict mode, for tests and development (off by default): a key that cannot be
    /// rendered (a placeholder without a value, a dotted path to a field that is not there,
    /// a value that does not serialize) panics with its message instead of being logged,
    /// counted and answered around. Store faults stay fail-open either way.
    pub fn strict(mut self, on: bool) -> Config {
        self.strict = on;
        self
    }

    /// A near cache of at most `max_entries` decoded values in this process, in front of
    /// Redis (off by default): a hit costs a clone, no round trip and no JSON decode. Redis
    /// keeps it correct: a connection of its own tracks every key under the prefix
    /// (`CLIENT TRACKING … BCAST`, Redis 6+), and any change of a key, by any process or
    /// client (a write, a deletion, an expiry, an eviction, a flush), evicts it here; a
    /// lost tracking connection drops every entry, and the near cache is bypassed until
    /// tracking is back. An entry never outlives the key's TTL in Redis. The embedded store
    /// always keeps its values decoded this way; this setting does not change it.
    ///
    /// When full, it drops an expired entry or one not read since its last eviction scan
    /// (CLOCK, per shard of the map), and never holds more than `max_entries`.
    pub fn near_cache(mut self, max_entries: u64) -> Config {
        self.near_cache = Some(max_entries.max(1));
        self
    }

    /// A bound on the near cache's size besides its number of entries (none by default):
    /// it holds at most `max_bytes`, each entry weighing its key, the size of its value's
    /// type, and the length of the value's encoding before any compression (a compressed
    /// value weighs what it decompresses to). The decoded value's heap size is not known to
    /// the crate; its uncompressed encoding is of the same order for most values (a
    /// `String` or a `Vec<u8>` holds about its JSON's length). When full, it drops entries as
    /// [`near_cache`](Config::near_cache) does; a value larger than a shard's share of the
    /// bound (the bound over up to 64 shards, by the entry bound) is served from Redis and
    /// not kept. Only with `near_cache`; the embedded store's bound is its `max_entries`.
    pub fn near_cache_max_bytes(mut self, max_bytes: u64) -> Config {
        self.near_cache_bytes = Some(max_bytes);
        self
    }

    /// How values are written to the store: [`Codec::Json`] by default (readable with
    /// `redis-cli GET`), or `Codec::MessagePack` with the `msgpack` feature (fewer bytes,
    /// faster hits). Every reader decodes what any codec wrote, so a fleet can switch without
    /// a flush; the near cache and the embedded store keep decoded values either way. A value
    /// that the codec would not read back equal (`Some(None)`; in JSON also `NaN`) is not
    /// stored, whatever the codec.
    pub fn codec(mut self, codec: Codec) -> Config {
        self.format.codec = codec;
        self
    }

    /// Compresses (LZ4) each value whose encoding is longer than `bytes` (off by default;
    /// 1024 is a fair start). Shorter values are stored as they are (with JSON, plain text: a
    /// number stays `5`), and so is a value that compression would not shrink. Every reader
    /// decodes compressed and plain values alike, so the threshold can change without a flush.
    #[cfg(feature = "compress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "compress")))]
    pub fn compress_over(mut self, bytes: usize) -> Config {
        self.format.compress_over = Some(bytes);
        self
    }

    /// The codec values are written with.
    pub fn get_codec(&self) -> Codec {
        self.format.codec
    }

    /// The size over which values are compressed, if they are.
    pub fn get_compress_over(&self) -> Option<usize> {
        self.format.compress_over
    }

    /// How many times a failed invalidation is retried before it is reported; 3 by default.
    pub fn invalidate_retries(mut self, retries: u32) -> Config {
        self.invalidate_retries = retries;
        self
    }

    /// The `COUNT` hint of each `SCAN` step in pattern operations; 1000 by default.
    pub fn scan_count(mut self, count: usize) -> Config {
        self.scan_count = count.max(1);
        self
    }

    /// How many idle blocking connections the sync path keeps; 16 by default.
    pub fn pool_size(mut self, size: usize) -> Config {
        self.pool_size = size;
        self
    }

    /// Whether a miss takes a lease on its key (on by default).
    ///
    /// With leases, the first caller to miss a key, across every process sharing the store,
    /// writes a lease marker into the key itself (`SET NX PX`) and computes; other callers
    /// wait for its value instead of computing it again. The holder's value is written only
    /// while its lease is still in the key, so an invalidation during the computation (which
    /// deletes the lease) keeps a value read before it out of the cache. Without leases,
    /// concurrent callers are still coalesced within the process, but each process computes,
    /// and a write can land after an invalidation that raced it.
    pub fn leases(mut self, on: bool) -> Config {
        self.leases = on;
        self
    }

    /// How long a lease lives unless renewed (5 seconds by default): the longest that a
    /// holder which died mid-computation keeps others waiting. While the holder's
    /// computation runs, a background thread renews its lease every third of this, so a
    /// computation may take longer and still be stored, up to 12 lease times (1 minute by
    /// default): a computation that hangs does not hold its key for ever.
    pub fn lease_ttl(mut self, ttl: Duration) -> Config {
        self.lease_ttl = ttl.min(MAX_TTL);
        self
    }

    /// The early-refresh β of every [`Cacheable`](crate::Cacheable) that sets none (see
    /// [`Cacheable::early_refresh`](crate::Cacheable::early_refresh)); 0, the default,
    /// turns it off. Negative, NaN or infinite values count as 0.
    pub fn early_refresh(mut self, beta: f64) -> Config {
        self.early_refresh = sane_beta(beta);
        self
    }

    /// The expiry jitter of every [`Cacheable`](crate::Cacheable) that sets none (see
    /// [`Cacheable::jitter`](crate::Cacheable::jitter)); zero, the default, turns it off.
    pub fn jitter(mut self, max: impl IntoTtl) -> Config {
        self.jitter = max.into_ttl().min(MAX_TTL);
        self
    }

    /// The fail-safe throttle of every [`Cacheable`](crate::Cacheable) that sets none (see
    /// [`Cacheable::fail_safe_throttle`](crate::Cacheable::fail_safe_throttle)); zero, the
    /// default, turns it off.
    pub fn fail_safe_throttle(mut self, throttle: impl IntoTtl) -> Config {
        self.fail_safe_throttle = throttle.into_ttl().min(MAX_TTL);
        self
    }

    /// The hard timeout of every [`Cacheable`](crate::Cacheable) that sets none (see
    /// [`Cacheable::hard_timeout`](crate::Cacheable::hard_timeout)); none by default.
    pub fn hard_timeout(mut self, limit: impl IntoTtl) -> Config {
        self.hard_timeout = Some(limit.into_ttl().min(MAX_TTL));
        self
    }

    /// The soft timeout of every [`Cacheable`](crate::Cacheable) that sets none (see
    /// [`Cacheable::soft_timeout`](crate::Cacheable::soft_timeout)); none by default.
    pub fn soft_timeout(mut self, limit: impl IntoTtl) -> Config {
        self.soft_timeout = Some(limit.into_ttl().min(MAX_TTL));
        self
    }

    /// How long a caller waits for another's computation, in this process or another
    /// (5 seconds by default), before computing the value itself, without caching it.
    /// Waiting on another process polls the key with backoff from 2 ms to 50 ms.
    pub fn lease_wait(mut self, wait: Duration) -> Config {
        self.lease_wait = wait.min(MAX_TTL);
        self
    }

    /// When Redis counts as down: after `failures` failed calls in a row (timeouts, refused
    /// or dropped connections), cache reads and writes fail at once for `cooldown` instead
    /// of each waiting out the operation timeout; then calls try Redis again. 3 failures and
    /// 1 second by default; 0 failures turns it off. Deletions and invalidations are always
    /// attempted. Fail-open calls answer from their closure meanwhile, as for any fault.
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Config {
        self.breaker_threshold = failures;
        self.breaker_cooldown = cooldown.min(MAX_TTL);
        self
    }

    /// The largest value stored, in bytes of its stored form (no bound by default; `0` sets
    /// none; `?max_value_bytes=N` in the URL, `CACHE_MAX_VALUE_BYTES` in the environment).
    /// A computed value larger than this is returned to its caller but not stored, counted in
    /// [`Stats::unstorable`](crate::Stats::unstorable) and logged (a line a minute per
    /// template); a stored value larger than this (written by another process or an older
    /// version) is not served: the call computes, counts an error, and replaces it. It keeps
    /// one outsized result from filling Redis's memory or stalling its other clients.
    pub fn max_value_bytes(mut self, bytes: usize) -> Config {
        self.max_value_bytes = (bytes > 0).then_some(bytes);
        self
    }

    /// Trusts this CA (PEM) for `rediss://` instead of the system's roots.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Config {
        self.tls.root_cert = Some(pem.into());
        self
    }

    /// Presents this client certificate and key (PEM) to a `rediss://` server that asks
    /// for one (`tls-auth-clients yes`).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Config {
        self.tls.client_cert_and_key = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// See `__private::unchecked_lease_writes`.
    pub(crate) fn with_unchecked_lease_writes(mut self) -> Config {
        self.unchecked_lease_writes = true;
        self
    }

    /// See `__private::near_cache_ignores_invalidations`.
    pub(crate) fn with_near_ignoring_invalidations(mut self) -> Config {
        self.near_ignores_invalidations = true;
        self
    }

    /// The key prefix.
    pub fn get_prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.prefix.is_empty() {
            return Err(Error::config(
                "the key prefix must not be empty: its keys would mix with every other cache's",
            ));
        }
        if !(8..=40).contains(&self.hash_len) {
            return Err(Error::config(format!(
                "hash_len {} is outside 8..=40",
                self.hash_len
            )));
        }
        if self.default_ttl.is_zero() {
            return Err(Error::config("default_ttl must be positive"));
        }
        #[cfg(feature = "tls")]
        if self.tls.root_cert.is_some() || self.tls.client_cert_and_key.is_some() {
            let tls_url = match &self.store {
                StoreConfig::Redis { url } => url.expose().starts_with("rediss://"),
                #[cfg(feature = "cluster")]
                StoreConfig::Cluster { nodes } => {
                    nodes.iter().all(|n| n.expose().starts_with("rediss://"))
                }
                #[cfg(feature = "sentinel")]
                StoreConfig::Sentinel(s) => s.node.expose().starts_with("rediss://"),
                StoreConfig::Memory { .. } => false,
            };
            if !tls_url {
                return Err(Error::config(
                    "TLS certificates were given, but the cache URL is not a `rediss://` one",
                ));
            }
        }
        if let Some(setting) = self.sentinel_only {
            return Err(Error::config(format!(
                "`{setting}` applies to a Sentinel configuration only (`Config::sentinel`, `redis+sentinel://`); a `redis://` URL carries its database and password itself"
            )));
        }
        if self.lease_ttl.is_zero() {
            return Err(Error::config("lease_ttl must be positive"));
        }
        if self.op_timeout.is_zero() {
            return Err(Error::config("op_timeout must be positive"));
        }
        Ok(())
    }
}

/// The longest TTL kept: longer ones are cut to it (100 years), so that expiry arithmetic
/// cannot overflow and Redis accepts every `PX`.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A time to live: whole seconds as an integer, or a [`Duration`].
pub trait IntoTtl {
    /// The TTL as a duration, at most 100 years. Negative seconds become zero, which the
    /// cache rejects.
    fn into_ttl(self) -> Duration;
}

impl IntoTtl for Duration {
    fn into_ttl(self) -> Duration {
        self.min(MAX_TTL)
    }
}

macro_rules! ttl_from_int {
    ($($t:ty),*) => {$(
        impl IntoTtl for $t {
            #[allow(clippy::cast_sign_loss, unused_comparisons)]
            fn into_ttl(self) -> Duration {
                Duration::from_secs(if self < 0 { 0 } else { self as u64 }).min(MAX_TTL)
            }
        }
    )*};
}
ttl_from_int!(i32, i64, u32, u64, usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_ttls_are_cut_to_a_hundred_years() {
        assert_eq!(Duration::MAX.into_ttl(), MAX_TTL);
        assert_eq!(u64::MAX.into_ttl(), MAX_TTL);
        assert_eq!((-5i32).into_ttl(), Duration::ZERO);
        assert_eq!(600.into_ttl(), Duration::from_secs(600));
    }

    #[test]
    fn validation_rejects_out_of_range_settings() {
        assert!(Config::memory().hash_len(7).validate().is_err());
        assert!(Config::memory().hash_len(8).validate().is_ok());
        assert!(Config::memory().default_ttl(0).validate().is_err());
        assert!(Config::memory().validate().is_ok());
        #[cfg(feature = "tls")]
        {
            let plain = Config::from_url("redis://127.0.0.1/")
                .unwrap()
                .tls_root_cert("x");
            assert!(plain
                .validate()
                .unwrap_err()
                .to_string()
                .contains("rediss://"));
            let tls = Config::from_url("rediss://127.0.0.1/")
                .unwrap()
                .tls_root_cert("x");
            assert!(tls.validate().is_ok());
        }
    }
}
