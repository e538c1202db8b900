//! Where the cache lives and how it behaves.

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

    /// A configuration from a URL: `redis://host:port/db`, `rediss://…` (TLS, with the
    /// `tls` feature), `redis+unix:///path`, `redis+cluster://host:port,host:port,…` (a Redis
    /// Cluster, from any of its nodes; `rediss+cluster://` with TLS), `memory://` or
    /// `memory://?max_entries=N`.
    ///
    /// A cluster URL takes one set of credentials for every node
    /// (`redis+cluster://user:password@h1:7000,h2:7000`) or the same set before each node
    /// (`user:password@h1:7000,user:password@h2:7000`), and query parameters that apply to
    /// every node (`?protocol=resp3`). A cluster has one database: a path other than `/` or
    /// `/0` is refused.
    ///
    /// Any URL also takes how values are written: `?codec=msgpack` ([`codec`](Config::codec),
    /// with the `msgpack` feature) and `?compress_over=1024`
    /// (`Config::compress_over`, with the `compress` feature), alone or
    /// beside the store's own parameters (`redis://host:6379/0?codec=msgpack&compress_over=1024`).
    ///
    /// # Errors
    /// A Sentinel URL, `redis+sentinel://[user:password@]h1:26379,h2:26379/SERVICE[/DB]`
    /// (`rediss+sentinel://` with TLS), names the Sentinels, the service they monitor and
    /// the database; its credentials are the data nodes' (the primary's and replicas'
    /// `requirepass`). Sentinels with a password of their own take it as
    /// `?sentinel_password=…` (and `sentinel_username=…`); other query parameters go to the
    /// data nodes. A Sentinel without a port is on 26379. See [`Config::sentinel`].
    ///
    /// # Errors
    /// An unknown scheme, or one this build does not support (`rediss://` without the `tls`
    /// feature, `redis+cluster://` without the `cluster` feature), is a
    /// [`Config`](crate::ErrorKind::Config) error; so is a `codec` or `compress_over` this
    /// build does not know.
    pub fn from_url(url: &str) -> Result<Config> {
        let url = url.trim();
        let (url, codec, compress_over) = take_format_params(url)?;
        let mut config = Config::store_from_url(&url)?;
        if let Some(codec) = codec {
            config.format.codec = codec;
        }
        if compress_over.is_some() {
            config.format.compress_over = compress_over;
        }
        Ok(config)
    }

    /// The store part of [`from_url`](Config::from_url), the format parameters taken out.
    fn store_from_url(url: &str) -> Result<Config> {
        // Messages show the URL with its passwords masked.
        let shown = crate::redact::url(url);
        let config = Config::from_url_store(url, &shown)?;
        // `max_value_bytes` applies to every store; redis-rs ignores query parameters it
        // does not know, so the URL is passed on as it is.
        let query = url.split_once('?').map_or("", |(_, q)| q);
        match query
            .split('&')
            .find_map(|p| p.strip_prefix("max_value_bytes="))
        {
            Some(n) => Ok(config.max_value_bytes(n.trim().parse().map_err(|_| {
                Error::config(format!(
                    "cache URL `{shown}`: max_value_bytes must be a number of bytes"
                ))
            })?)),
            None => Ok(config),
        }
    }

    fn from_url_store(url: &str, shown: &str) -> Result<Config> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::config(format!("cache URL `{shown}` has no scheme")))?;
        #[cfg(feature = "redis")]
        let redis = || {
            redis::Client::open(url).map_err(|e| {
                Error::with_source(
                    crate::ErrorKind::Config,
                    format!("invalid Redis URL `{shown}`"),
                    e,
                )
            })?;
            Ok(Config::with_store(StoreConfig::Redis {
                url: SecretUrl::new(url),
            }))
        };
        #[cfg(not(feature = "redis"))]
        let redis = || {
            Err(Error::config(format!(
                "cache URL `{shown}`: this build has no Redis support: enable cacheable's `redis` feature (on by default)"
            )))
        };
        match scheme {
            "memory" => {
                let mut max_entries = DEFAULT_MAX_ENTRIES;
                let query = rest.split_once('?').map_or("", |(_, q)| q);
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    match pair.split_once('=') {
                        // Read by `from_url`, for every store.
                        Some(("max_value_bytes", _)) => {}
                        Some(("max_entries", n)) => {
                            max_entries = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                                Error::config(format!(
                                    "cache URL `{shown}`: max_entries must be a positive integer"
                                ))
                            })?;
                        }
                        // The option's name alone: its value may be a secret.
                        _ => {
                            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                            return Err(Error::config(format!(
                                "cache URL `{shown}`: unknown option `{name}` (known: max_entries, codec, compress_over, max_value_bytes)"
                            )));
                        }
                    }
                }
                Ok(Config::with_store(StoreConfig::Memory { max_entries }))
            }
            "redis" | "redis+unix" | "unix" => redis(),
            "rediss" if cfg!(feature = "tls") => redis(),
            "rediss" => Err(Error::config(format!(
                "cache URL `{shown}`: TLS (`rediss://`) needs cacheable's `tls` feature"
            ))),
            #[cfg(feature = "cluster")]
            "redis+cluster" => Config::cluster(cluster_nodes(url, "redis")?),
            #[cfg(all(feature = "cluster", feature = "tls"))]
            "rediss+cluster" => Config::cluster(cluster_nodes(url, "rediss")?),
            #[cfg(all(feature = "cluster", not(feature = "tls")))]
            "rediss+cluster" => Err(Error::config(format!(
                "cache URL `{shown}`: TLS (`rediss+cluster://`) needs cacheable's `tls` feature"
            ))),
            #[cfg(not(feature = "cluster"))]
            "redis+cluster" | "rediss+cluster" => Err(Error::config(format!(
                "cache URL `{shown}`: this build has no Redis Cluster support: enable cacheable's `cluster` feature (on by default)"
            ))),
            #[cfg(feature = "sentinel")]
            "redis+sentinel" => sentinel_url(url, "redis"),
            #[cfg(all(feature = "sentinel", feature = "tls"))]
            "rediss+sentinel" => sentinel_url(url, "rediss"),
            #[cfg(all(feature = "sentinel", not(feature = "tls")))]
            "rediss+sentinel" => Err(Error::config(format!(
                "cache URL `{shown}`: TLS (`rediss+sentinel://`) needs cacheable's `tls` feature"
            ))),
            #[cfg(not(feature = "sentinel"))]
            "redis+sentinel" | "rediss+sentinel" => Err(Error::config(format!(
                "cache URL `{shown}`: this build has no Redis Sentinel support: enable cacheable's `sentinel` feature (on by default)"
            ))),
            other => Err(Error::config(format!(
                "cache URL `{shown}`: unknown scheme `{}` (known: redis, rediss, redis+unix, redis+cluster, rediss+cluster, redis+sentinel, rediss+sentinel, memory)",
                crate::redact::url(other)
            ))),
        }
    }

    /// A Redis Cluster (or Valkey cluster, or a managed service in cluster mode), found from
    /// any of its nodes: `Config::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])`.
    /// Each node is a `redis://` URL (`rediss://` with the `tls` feature), all with the same
    /// credentials; the client learns the rest of the cluster from them.
    ///
    /// Reads, writes and leases go to the primary that owns the key's slot (MOVED and ASK
    /// redirections are followed). Pattern operations run `SCAN` on every primary at once, or
    /// on the one primary that owns a pattern's hash tag when the tag is literal
    /// (`wallets:{42}:*`), and delete by slot, so no command ever spans slots. Each primary
    /// has its own breaker: a dead one costs its slots' callers the operation timeout, while
    /// the other slots keep their hits; once its replica takes over, caching resumes.
    ///
    /// # Errors
    /// No node, or a node URL that is not a valid `redis://` or `rediss://` URL.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster<I, S>(nodes: I) -> Result<Config>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut urls = Vec::new();
        for node in nodes {
            let node = node.as_ref().trim();
            let shown = crate::redact::url(node);
            let scheme = node.split_once("://").map_or("", |(scheme, _)| scheme);
            match scheme {
                "redis" => {}
                "rediss" if cfg!(feature = "tls") => {}
                "rediss" => {
                    return Err(Error::config(format!(
                        "cluster node `{shown}`: TLS (`rediss://`) needs cacheable's `tls` feature"
                    )))
                }
                _ => {
                    return Err(Error::config(format!(
                        "cluster node `{shown}`: a node is a `redis://host:port` URL"
                    )))
                }
            }
            redis::Client::open(node).map_err(|e| {
                Error::with_source(
                    crate::ErrorKind::Config,
                    format!("invalid cluster node URL `{shown}`"),
                    e,
                )
            })?;
            urls.push(SecretUrl::new(node));
        }
        if urls.is_empty() {
            return Err(Error::config("a cluster needs at least one node URL"));
        }
        Ok(Config::with_store(StoreConfig::Cluster { nodes: urls }))
    }

    /// A primary found through Redis Sentinel: `Config::sentinel(["10.0.0.1:26379",
    /// "10.0.0.2:26379", "10.0.0.3:26379"], "mymaster")`. Each Sentinel is `host:port` (`host`
    /// alone is on 26379), or a
    /// `redis://[user:password@]host:port` URL when the Sentinels have a password
    /// (`rediss://` with the `tls` feature: then the data nodes are reached over TLS too).
    /// [`db`](Config::db) chooses the database, [`primary_auth`](Config::primary_auth) the
    /// data nodes' credentials.
    ///
    /// Every call goes to the primary the Sentinels name, once it reports the `master`
    /// role. When it changes (a failover: the Sentinels announce `+switch-master`, or the
    /// old primary stops answering, or answers `READONLY`), the cache asks the Sentinels
    /// again and moves every connection, sync and async, to the new primary, without a
    /// restart; the near cache's tracking follows it and drops what it held. Meanwhile calls
    /// fail open within the operation timeout each, and the breaker applies.
    ///
    /// # Errors
    /// No Sentinel, an empty service name, or a Sentinel that is neither `host:port` nor a
    /// valid `redis://` or `rediss://` URL.
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn sentinel<I, S>(sentinels: I, service: &str) -> Result<Config>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let service = service.trim();
        if service.is_empty() || service.contains(char::is_whitespace) {
            return Err(Error::config(format!(
                "Sentinel service name `{service}`: a name such as `mymaster`, without spaces"
            )));
        }
        let mut urls = Vec::new();
        let mut tls = None;
        for given in sentinels {
            let given = given.as_ref().trim();
            let shown = crate::redact::url(given);
            let url = if given.contains("://") {
                given.to_owned()
            } else if given.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok()
            }) {
                format!("redis://{given}")
            } else {
                // A Sentinel's port, not a data node's.
                format!("redis://{given}:26379")
            };
            let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
            match scheme {
                "redis" => {}
                "rediss" if cfg!(feature = "tls") => {}
                "rediss" => {
                    return Err(Error::config(format!(
                        "Sentinel `{shown}`: TLS (`rediss://`) needs cacheable's `tls` feature"
                    )))
                }
                _ => {
                    return Err(Error::config(format!(
                        "Sentinel `{shown}`: a Sentinel is `host:port` or a `redis://host:port` URL"
                    )))
                }
            }
            if *tls.get_or_insert(scheme == "rediss") != (scheme == "rediss") {
                return Err(Error::config(
                    "Sentinels: every one is `redis://`, or every one is `rediss://`",
                ));
            }
            let info =
                redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|e| {
                    Error::with_source(
                        crate::ErrorKind::Config,
                        format!("invalid Sentinel `{shown}`"),
                        e,
                    )
                })?;
            if info.redis_settings().db() != 0 {
                return Err(Error::config(format!(
                    "Sentinel `{shown}`: a Sentinel has no database; `db(n)` chooses the primary's"
                )));
            }
            urls.push(SecretUrl::new(&url));
        }
        if urls.is_empty() {
            return Err(Error::config("Sentinel: at least one Sentinel is needed"));
        }
        let scheme = if tls == Some(true) { "rediss" } else { "redis" };
        Ok(Config::with_store(StoreConfig::Sentinel(SentinelConfig {
            sentinels: urls,
            service: service.to_owned(),
            node: SecretUrl::new(&format!("{scheme}://{PRIMARY_HOST}/0")),
        })))
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

    /// The configuration the global manager uses when [`CacheManager::init`](crate::CacheManager::init)
    /// was not called:
    ///
    /// | variable | meaning | when unset or empty |
    /// |---|---|---|
    /// | `CACHE_URL` | the store, as in [`from_url`](Config::from_url) | the embedded store ([`memory`](Config::memory)) |
    /// | `CACHE_PREFIX` | [`prefix`](Config::prefix) | `cache` |
    /// | `CACHE_DEFAULT_TTL` | [`default_ttl`](Config::default_ttl), whole seconds | 300 |
    /// | `CACHE_DEBUG` | [`debug`](Config::debug): `1`, `true`, `yes` or `0`, `false`, `no`, in any case | off |
    /// | `CACHE_STRICT` | [`strict`](Config::strict): the same words | off |
    /// | `CACHE_MAX_VALUE_BYTES` | [`max_value_bytes`](Config::max_value_bytes), bytes; `0` for no bound | no bound |
    /// | `CACHE_CODEC` | [`codec`](Config::codec): `json` or `msgpack` | the URL's `codec`, else `json` |
    /// | `CACHE_COMPRESS_OVER` | `Config::compress_over` (feature `compress`), bytes | the URL's `compress_over`, else off |
    ///
    /// Every other setting has its default.
    ///
    /// # Errors
    /// A malformed variable is an error rather than a silent fallback: a process that
    /// quietly cached in its own memory would miss other processes' invalidations. That
    /// includes a `CACHE_DEBUG` or `CACHE_STRICT` that is none of the six words above
    /// (`on`, `enabled`, `2`).
    pub fn from_env() -> Result<Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut config = match var("CACHE_URL") {
            Some(url) => Config::from_url(&url)?,
            None => Config::memory(),
        };
        if let Some(prefix) = var("CACHE_PREFIX") {
            config = config.prefix(prefix);
        }
        if let Some(ttl) = var("CACHE_DEFAULT_TTL") {
            let secs: u64 = ttl.trim().parse().map_err(|_| {
                Error::config(format!(
                    "CACHE_DEFAULT_TTL `{ttl}` is not a number of seconds"
                ))
            })?;
            config = config.default_ttl(secs);
        }
        if let Some(debug) = var("CACHE_DEBUG") {
            config = config.debug(env_bool("CACHE_DEBUG", &debug)?);
        }
        if let Some(strict) = var("CACHE_STRICT") {
            config = config.strict(env_bool("CACHE_STRICT", &strict)?);
        }
        if let Some(codec) = var("CACHE_CODEC") {
            config.format.codec =
                Codec::parse(&codec).map_err(|e| Error::config(format!("CACHE_CODEC: {e}")))?;
        }
        if let Some(over) = var("CACHE_COMPRESS_OVER") {
            config.format.compress_over = Some(
                compress_over_param(&over)
                    .map_err(|e| Error::config(format!("CACHE_COMPRESS_OVER: {e}")))?,
            );
        }
        if let Some(n) = var("CACHE_MAX_VALUE_BYTES") {
            let n: usize = n.trim().parse().map_err(|_| {
                Error::config(format!(
                    "CACHE_MAX_VALUE_BYTES `{n}` is not a number of bytes"
                ))
            })?;
            config = config.max_value_bytes(n);
        }
        Ok(config)
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

/// The node URLs of a `redis+cluster://` (`scheme` `redis`) or `rediss+cluster://` (`rediss`)
/// URL: `[credentials@]host:port,host:port,…[/0][?query]`, or credentials before each node.
/// Credentials and the query apply to every node.
#[cfg(feature = "cluster")]
fn cluster_nodes(url: &str, scheme: &str) -> Result<Vec<String>> {
    let shown = crate::redact::url(url);
    let bad = |why: &str| Error::config(format!("cache URL `{shown}`: {why}"));
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    // Credentials end at the last `@` (a password may hold `/ ? # , @`).
    let (info, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (last_hosts, tail) = after.split_at(end);
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    if !matches!(path, "" | "/" | "/0") {
        return Err(bad(
            "a cluster has one database: the URL takes no path but `/` or `/0`",
        ));
    }
    // (credentials, host:port) for each node.
    let mut nodes: Vec<(Option<&str>, &str)> = Vec::new();
    match info {
        // Credentials before each node: `u:p@h1:1,u:p@h2:2`.
        Some(info) if info.contains(',') && info.contains('@') => {
            let items: Vec<&str> = info.split(',').collect();
            let (last_credentials, heads) = items.split_last().expect("split yields one item");
            for item in heads {
                let (credentials, host) = item
                    .rsplit_once('@')
                    .ok_or_else(|| bad("credentials before some nodes but not others"))?;
                nodes.push((Some(credentials), host));
            }
            for host in last_hosts.split(',') {
                nodes.push((Some(*last_credentials), host));
            }
        }
        info => {
            for host in last_hosts.split(',') {
                nodes.push((info, host));
            }
        }
    }
    if let Some((credentials, _)) = nodes.first() {
        if nodes.iter().any(|(c, _)| c != credentials) {
            return Err(bad("every node of a cluster takes the same credentials"));
        }
    }
    let mut urls = Vec::with_capacity(nodes.len());
    for (credentials, host) in nodes {
        let host = host.trim();
        if host.is_empty() {
            return Err(bad("an empty node in the host list"));
        }
        let mut node = format!("{scheme}://");
        if let Some(c) = credentials {
            node.push_str(c);
            node.push('@');
        }
        node.push_str(host);
        node.push('/');
        if let Some(q) = query {
            node.push('?');
            node.push_str(q);
        }
        urls.push(node);
    }
    Ok(urls)
}

/// `scheme://[credentials@]host` and the rest (`/db?query`) of a Sentinel's node URL.
#[cfg(feature = "sentinel")]
fn split_node_path(node: &str) -> (&str, &str) {
    let host = node
        .find(PRIMARY_HOST)
        .expect("a node URL holds the placeholder host");
    node.split_at(host + PRIMARY_HOST.len())
}

/// `s` with every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) percent-encoded, for
/// user information in a URL.
#[cfg(feature = "sentinel")]
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `redis+sentinel://` (`scheme` `redis`) or `rediss+sentinel://` (`rediss`) URL:
/// `[credentials@]h1:p1,h2:p2/SERVICE[/DB][?query]`. The credentials are the data nodes';
/// `sentinel_username` and `sentinel_password` in the query are the Sentinels'; the rest
/// of the query goes to the data nodes.
#[cfg(feature = "sentinel")]
fn sentinel_url(url: &str, scheme: &str) -> Result<Config> {
    let shown = crate::redact::url(url);
    let bad = |why: &str| Error::config(format!("cache URL `{shown}`: {why}"));
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    // Credentials end at the last `@` (a password may hold `/ ? # , @`).
    let (credentials, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (hosts, tail) = after.split_at(end);
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, query),
        None => (tail, ""),
    };
    let mut segments = path.trim_start_matches('/').split('/');
    let service = segments.next().unwrap_or("");
    if service.is_empty() {
        return Err(bad(
            "a Sentinel URL names its service: `redis+sentinel://h1:26379,h2:26379/mymaster/0`",
        ));
    }
    let db: u32 = match segments.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse()
            .map_err(|_| bad("the database after the service is a number"))?,
    };
    if segments.next().is_some_and(|s| !s.is_empty()) {
        return Err(bad("the path is `/SERVICE` or `/SERVICE/DB`"));
    }
    let (mut sentinel_user, mut sentinel_password, mut node_query) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sentinel_username", v)) => sentinel_user = Some(v),
            Some(("sentinel_password", v)) => sentinel_password = Some(v),
            _ => node_query.push(pair),
        }
    }
    let sentinel_credentials = match (sentinel_user, sentinel_password) {
        (None, None) => String::new(),
        (user, password) => format!(
            "{}:{}@",
            user.map(reencode).unwrap_or_default(),
            password.map(reencode).unwrap_or_default()
        ),
    };
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        let host = host.trim();
        if host.is_empty() {
            return Err(bad("an empty Sentinel in the host list"));
        }
        let has_port = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
        let port = if has_port { "" } else { ":26379" };
        sentinels.push(format!("{scheme}://{sentinel_credentials}{host}{port}"));
    }
    let config = Config::sentinel(&sentinels, service).map_err(|e| {
        // The Sentinel's URL may hold the Sentinels' password: say which URL, masked.
        Error::config(format!("cache URL `{shown}`: {}", e))
    })?;
    let mut node = format!("{scheme}://");
    if let Some(c) = credentials {
        node.push_str(c);
        node.push('@');
    }
    node.push_str(PRIMARY_HOST);
    node.push_str(&format!("/{db}"));
    if !node_query.is_empty() {
        node.push('?');
        node.push_str(&node_query.join("&"));
    }
    redis::Client::open(node.as_str()).map_err(|e| {
        Error::with_source(
            crate::ErrorKind::Config,
            format!("cache URL `{shown}`: invalid credentials or parameters for the data nodes"),
            e,
        )
    })?;
    let mut config = config;
    if let StoreConfig::Sentinel(s) = &mut config.store {
        s.node = SecretUrl::new(&node);
    }
    Ok(config)
}

/// A query value (percent-encoded, maybe with `+` for a space) as user information.
#[cfg(feature = "sentinel")]
fn reencode(v: &str) -> String {
    let mut bytes = Vec::with_capacity(v.len());
    let raw = v.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' if i + 2 < raw.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(raw[i + 1]), hex(raw[i + 2])) {
                    (Some(h), Some(l)) => {
                        bytes.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => bytes.push(b'%'),
                }
            }
            b'+' => bytes.push(b' '),
            b => bytes.push(b),
        }
        i += 1;
    }
    percent_encode(&String::from_utf8_lossy(&bytes))
}

/// Takes `codec` and `compress_over` out of a URL's query (the part after the last `@`, as a
/// password may hold `?`): the URL without them, and their values.
fn take_format_params(url: &str) -> Result<(String, Option<Codec>, Option<usize>)> {
    let after_credentials = url.rfind('@').map_or(0, |at| at + 1);
    let Some(q) = url[after_credentials..].find('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let q = after_credentials + q;
    let (base, query) = (&url[..q], &url[q + 1..]);
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let shown = crate::redact::url(url);
    let (mut codec, mut compress_over) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("codec", name)) => {
                codec = Some(
                    Codec::parse(name)
                        .map_err(|e| Error::config(format!("cache URL `{shown}`: {e}")))?,
                );
            }
            Some(("compress_over", n)) => {
                compress_over = Some(
                    compress_over_param(n)
                        .map_err(|e| Error::config(format!("cache URL `{shown}`: {e}")))?,
                );
            }
            _ => kept.push(pair),
        }
    }
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Ok((out, codec, compress_over))
}

/// A `compress_over` setting: a number of bytes, in a build with the `compress` feature.
fn compress_over_param(value: &str) -> Result<usize> {
    let bytes: usize = value
        .trim()
        .parse()
        .map_err(|_| Error::config(format!("compress_over `{value}` is not a number of bytes")))?;
    if cfg!(feature = "compress") {
        Ok(bytes)
    } else {
        Err(Error::config(
            "compress_over needs cacheable's `compress` feature",
        ))
    }
}

/// A boolean environment variable: `1/0`, `true/false`, `yes/no`, in any case; anything
/// else is an error naming the variable and what it accepts.
fn env_bool(name: &str, value: &str) -> Result<bool> {
    const ON: [&str; 3] = ["1", "true", "yes"];
    const OFF: [&str; 3] = ["0", "false", "no"];
    let v = value.trim();
    if ON.iter().any(|w| v.eq_ignore_ascii_case(w)) {
        Ok(true)
    } else if OFF.iter().any(|w| v.eq_ignore_ascii_case(w)) {
        Ok(false)
    } else {
        Err(Error::config(format!(
            "{name} `{value}` is not a boolean: use 1, true or yes, or 0, false or no (in any case)"
        )))
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
    fn max_value_bytes_comes_from_any_url_query() {
        assert_eq!(Config::memory().max_value_bytes, None);
        assert_eq!(
            Config::from_url("memory://?max_entries=10&max_value_bytes=4096")
                .unwrap()
                .max_value_bytes,
            Some(4096)
        );
        #[cfg(feature = "redis")]
        assert_eq!(
            Config::from_url("redis://127.0.0.1:6379/1?max_value_bytes=10")
                .unwrap()
                .max_value_bytes,
            Some(10)
        );
        assert_eq!(Config::memory().max_value_bytes(0).max_value_bytes, None);
        let err = Config::from_url("memory://?max_value_bytes=lots").unwrap_err();
        assert!(err.to_string().contains("max_value_bytes"), "{err}");
    }

    #[test]
    fn urls_pick_the_store() {
        assert_eq!(
            Config::from_url("memory://?max_entries=10").unwrap().store,
            StoreConfig::Memory { max_entries: 10 }
        );
        #[cfg(feature = "redis")]
        assert!(matches!(
            Config::from_url("redis://127.0.0.1:6379/1").unwrap().store,
            StoreConfig::Redis { .. }
        ));
        #[cfg(not(feature = "redis"))]
        assert!(Config::from_url("redis://127.0.0.1:6379/1")
            .unwrap_err()
            .to_string()
            .contains("`redis` feature"));
        #[cfg(feature = "cluster")]
        assert!(matches!(
            Config::from_url("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap().store,
            StoreConfig::Cluster { ref nodes } if nodes.len() == 2
        ));
        #[cfg(not(feature = "cluster"))]
        assert!(Config::from_url("redis+cluster://a:1")
            .unwrap_err()
            .to_string()
            .contains("`cluster` feature"));
        for bad in [
            "ftp://x",
            "nothing",
            "memory://?size=1",
            "redis+cluster://a:1/3",
            "redis+cluster://",
        ] {
            assert_eq!(
                Config::from_url(bad).unwrap_err().kind(),
                crate::ErrorKind::Config,
                "{bad}"
            );
        }
    }

    #[test]
    fn format_parameters_leave_the_rest_of_the_url_as_it_was() {
        let take = |url: &str| take_format_params(url).unwrap();
        assert_eq!(
            take("redis://:pa?ss@h:1/0?protocol=resp3&codec=json"),
            (
                "redis://:pa?ss@h:1/0?protocol=resp3".to_owned(),
                Some(Codec::Json),
                None
            )
        );
        assert_eq!(
            take("redis://h:1/?codec=json"),
            ("redis://h:1/".to_owned(), Some(Codec::Json), None)
        );
        assert_eq!(
            take("redis://u:p@h:1/2"),
            ("redis://u:p@h:1/2".to_owned(), None, None)
        );
        assert_eq!(
            take("memory://?codec=json&max_entries=5#x"),
            (
                "memory://?max_entries=5#x".to_owned(),
                Some(Codec::Json),
                None
            )
        );
        assert_eq!(Config::memory().format, Format::default());
        assert_eq!(Config::memory().get_codec(), Codec::Json);
        #[cfg(feature = "compress")]
        {
            let (url, _, over) =
                take("redis+cluster://h1:1,h2:2/?compress_over=512&protocol=resp3");
            assert_eq!(
                (url.as_str(), over),
                ("redis+cluster://h1:1,h2:2/?protocol=resp3", Some(512))
            );
        }
        // Errors name the parameter, never the password.
        let err = take_format_params("redis://:hunter2@h:1/?codec=yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("yaml") && !err.contains("hunter2"), "{err}");
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn cluster_urls_give_one_node_url_each_with_the_shared_credentials_and_query() {
        let nodes = |url: &str| match Config::from_url(url).unwrap().store {
            StoreConfig::Cluster { nodes } => nodes
                .iter()
                .map(|n| n.expose().to_owned())
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            nodes("redis+cluster://10.0.0.1:7000,10.0.0.2:7001"),
            ["redis://10.0.0.1:7000/", "redis://10.0.0.2:7001/"]
        );
        assert_eq!(
            nodes("redis+cluster://u:p,w@h1:1,h2:2/?protocol=resp3"),
            [
                "redis://u:p,w@h1:1/?protocol=resp3",
                "redis://u:p,w@h2:2/?protocol=resp3"
            ]
        );
        assert_eq!(
            nodes("redis+cluster://u:p@h1:1,u:p@h2:2,h3:3"),
            [
                "redis://u:p@h1:1/",
                "redis://u:p@h2:2/",
                "redis://u:p@h3:3/"
            ]
        );
        assert_eq!(
            nodes("redis+cluster://:secret@h1:1/0"),
            ["redis://:secret@h1:1/"]
        );
        let refused = |url: &str| Config::from_url(url).unwrap_err().to_string();
        assert!(refused("redis+cluster://u:p@h1:1,v:q@h2:2").contains("same credentials"));
        assert!(refused("redis+cluster://h1:1/2").contains("one database"));
        assert!(refused("redis+cluster://h1:1,,h2:2").contains("empty node"));
        // Masked in the message, and in the configuration's Debug.
        let text = refused("redis+cluster://u:SECRET@h1:1,v:q@h2:2");
        assert!(!text.contains("SECRET"), "{text}");
        let config = Config::cluster(["redis://u:SECRET@h1:1", "redis://u:SECRET@h2:2"]).unwrap();
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("SECRET") && debug.contains("h2:2"),
            "{debug}"
        );
        assert!(Config::cluster(Vec::<String>::new()).is_err());
        assert!(Config::cluster(["memory://"]).is_err());
        #[cfg(not(feature = "tls"))]
        assert!(refused("rediss+cluster://h1:1").contains("`tls` feature"));
    }

    #[cfg(feature = "sentinel")]
    #[test]
    fn sentinel_urls_name_the_sentinels_the_service_the_database_and_two_sets_of_credentials() {
        let parts = |config: Config| match config.store {
            StoreConfig::Sentinel(s) => (
                s.sentinels
                    .iter()
                    .map(|n| n.expose().to_owned())
                    .collect::<Vec<_>>(),
                s.service,
                s.node.expose().to_owned(),
            ),
            other => panic!("{other:?}"),
        };
        let url = |u: &str| parts(Config::from_url(u).unwrap());
        assert_eq!(
            url("redis+sentinel://h1:26379,h2:26380/mymaster/2"),
            (
                vec!["redis://h1:26379".to_owned(), "redis://h2:26380".to_owned()],
                "mymaster".to_owned(),
                format!("redis://{PRIMARY_HOST}/2")
            )
        );
        assert_eq!(
            url("redis+sentinel://:node%2Fpw@h1,h2:1/svc?sentinel_password=s%40p&protocol=resp3"),
            (
                vec![
                    "redis://:s%40p@h1:26379".to_owned(),
                    "redis://:s%40p@h2:1".to_owned()
                ],
                "svc".to_owned(),
                format!("redis://:node%2Fpw@{PRIMARY_HOST}/0?protocol=resp3")
            )
        );
        assert_eq!(
            parts(
                Config::sentinel(["h1:1", "redis://:spw@h2:2"], "svc")
                    .unwrap()
                    .db(3)
                    .primary_auth(Some("app"), "p@ss word")
            ),
            (
                vec!["redis://h1:1".to_owned(), "redis://:spw@h2:2".to_owned()],
                "svc".to_owned(),
                format!("redis://app:p%40ss%20word@{PRIMARY_HOST}/3")
            )
        );
        let refused = |u: &str| Config::from_url(u).unwrap_err().to_string();
        assert!(refused("redis+sentinel://h1:1").contains("names its service"));
        assert!(refused("redis+sentinel://h1:1/").contains("names its service"));
        assert!(refused("redis+sentinel://h1:1/svc/x").contains("a number"));
        assert!(refused("redis+sentinel://h1:1/svc/1/2").contains("/SERVICE/DB"));
        assert!(refused("redis+sentinel://h1:1,,h2:2/svc").contains("empty Sentinel"));
        #[cfg(not(feature = "tls"))]
        assert!(refused("rediss+sentinel://h1:1/svc").contains("`tls` feature"));
        assert_eq!(
            parts(Config::sentinel(["h1", "10.0.0.1:1"], "svc").unwrap()).0,
            ["redis://h1:26379", "redis://10.0.0.1:1"]
        );
        assert!(Config::sentinel(Vec::<String>::new(), "svc").is_err());
        assert!(Config::sentinel(["h:1"], " ").is_err());
        assert!(Config::sentinel(["memory://"], "svc").is_err());
        // Both passwords masked, in Debug and in messages.
        let config = Config::from_url(
            "redis+sentinel://:NODESECRET@h1:1,h2:2/svc/1?sentinel_password=SENTSECRET",
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("NODESECRET")
                && !debug.contains("SENTSECRET")
                && debug.contains("h2:2"),
            "{debug}"
        );
        let text = refused("redis+sentinel://:NODESECRET@h1:1/svc/x?sentinel_password=SENTSECRET");
        assert!(
            !text.contains("NODESECRET") && !text.contains("SENTSECRET"),
            "{text}"
        );
        // Sentinel-only settings on another store are refused, not ignored.
        let misused = Config::memory().db(2).validate().unwrap_err().to_string();
        assert!(misused.contains("`db`"), "{misused}");
        assert!(Config::memory().primary_auth(None, "x").validate().is_err());
    }

    #[test]
    fn boolean_variables_accept_the_documented_words_only() {
        for on in ["1", "true", "TRUE", "True", "yes", "YES", " yes "] {
            assert!(env_bool("CACHE_DEBUG", on).unwrap(), "{on:?}");
        }
        for off in ["0", "false", "FALSE", "no", "No"] {
            assert!(!env_bool("CACHE_DEBUG", off).unwrap(), "{off:?}");
        }
        for bad in [
            "on",
            "off",
            "2",
            "enabled",
            "y",
            "n",
            "t",
            "-1",
            "yes please",
        ] {
            let err = env_bool("CACHE_DEBUG", bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config);
            let text = err.to_string();
            assert!(text.contains("CACHE_DEBUG") && text.contains(bad), "{text}");
            for word in ["1", "true", "yes", "0", "false", "no"] {
                assert!(text.contains(word), "{text} does not name {word}");
            }
        }
    }

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
