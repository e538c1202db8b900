//! [`Cache`]: one configured cache (its store, its prefix, its near cache and counters), and
//! every manual operation on it.

use crate::codec;
use crate::codec::CacheValue;
use crate::config::{Config, IntoTtl};
pub(crate) use crate::engine::{detachable, Detached};
use crate::engine::{near_read, read_through, read_through_async, Core, Prefetched};
use crate::engine::{Siblings, Target};
use crate::error::{Error, ErrorKind, Result};
use crate::health::{Health, NearCacheHealth};
use crate::key::glob_escape_into;
use crate::near::NearCache;
use crate::request::Call;
use crate::rt::{block_on, Mode};
use crate::stats::{Counters, Stats};
use crate::store::{Backend, Entry, KeyTtl};
use crate::telemetry::{self, MANUAL};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One cache: a store, a key prefix and counters. Cheap to clone (an `Arc`).
///
/// Most code uses the global one through [`CacheManager`](crate::CacheManager) and the builders; build a
/// `Cache` of your own for tests or for a second Redis server, and pass it with
/// [`Cacheable::on`](crate::Cacheable::on).
///
/// On Redis, async calls share one multiplexed connection that lives on the crate's own
/// IO thread, so they work from any runtime or executor, whichever made the first call
/// (on one server, a tokio runtime with an IO driver also drives a connection of its own,
/// which spares its calls the hop to that thread).
/// Blocking calls use a small pool of their own connections and need no runtime. On a
/// Redis Cluster, the same holds with cluster connections: one multiplexed async cluster
/// connection, a pool of blocking ones, and pattern operations on every primary at once.
///
/// Keys given to its methods are relative to the prefix: with prefix `paycore`,
/// `get("user:123:profile")` reads `paycore:user:123:profile`. Patterns are Redis globs,
/// also relative to the prefix. Every method returns the store's faults as errors; the
/// builders' `run` finishers are the fail-open way.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

// ---- What the builders hand a cache (`builder/`): one cached call, or one invalidation.
impl Cache {
    /// The near cache's value for `call`, unless the call must go to the store (counted,
    /// and recorded in `call.served`). Inlined into the builder, so that a near hit's clone
    /// lands where the builder returns it.
    #[inline(always)]
    pub(crate) fn near<T: CacheValue>(&self, call: &Call<'_>) -> Option<T> {
        near_read::<T>(&self.inner.core, call)
    }

    /// The rest of a cached call, blocking: the store, single-flight, the lease, `compute`
    /// and the write; what the call did goes in `call.served`. The outer `Err` only comes
    /// for a strict call.
    /// `failed`: for a call that shares failures, how its error type is made from one.
    pub(crate) fn read<T, E>(
        &self,
        call: &Call<'_>,
        failed: Option<fn(Error) -> E>,
        compute: impl FnOnce() -> Result<T, E>,
    ) -> Result<Result<T, E>>
    where
        T: CacheValue,
    {
        read_through(&self.inner.core, call, failed, compute)
    }

    /// Async twin of [`read`](Self::read): the engine's own future, handed back as it is.
    /// `first`: the call's first read, made with a batch's ([`prefetch`](Self::prefetch));
    /// `detach`: how to make the computation outlive the call, for a finisher whose
    /// computations can ([`detachable`]).
    pub(crate) fn read_async<'c, 'k, T, E, F, Fut>(
        &'c self,
        call: &'c Call<'k>,
        first: Option<Prefetched>,
        failed: Option<fn(Error) -> E>,
        detach: Option<fn(Fut) -> Detached<T, E>>,
        compute: F,
    ) -> impl Future<Output = Result<Result<T, E>>> + use<'c, 'k, T, E, F, Fut>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        read_through_async(&self.inner.core, call, first, failed, detach, compute)
    }

    /// A batch item's value, when its first read is a hit: see [`Core::first_hit`].
    pub(crate) fn first_hit<T: CacheValue>(
        &self,
        call: &Call<'_>,
        first: &mut Option<Prefetched>,
    ) -> Option<T> {
        self.inner.core.first_hit(call, first)
    }

    /// The first reads of a batch's calls, one round trip per server; `None` for a call
    /// that reads on its own (see [`Core::prefetch`]).
    pub(crate) async fn prefetch(
        &self,
        mode: Mode,
        calls: &[&Call<'_>],
    ) -> Vec<Option<Prefetched>> {
        self.inner.core.prefetch(mode, calls).await
    }

    /// Deletes what `target` names (each request tried `retries + 1` times at most) from
    /// the store and from every cache of the process on it: the keys deleted, and the error
    /// if it did not land. One that could not reach the store is queued, and its error says
    /// so ([`Error::is_queued`]); an error that asking again cannot change is returned as
    /// it is.
    pub(crate) async fn invalidate(
        &self,
        mode: Mode,
        target: Target,
        retries: u32,
    ) -> (u64, Result<()>) {
        let core = &self.inner.core;
        let done = core.invalidate(mode, &target, retries).await;
        let targets = std::iter::once(target);
        (
            done.deleted,
            Self::queue_unlanded(core, done.failed, targets),
        )
    }

    /// [`invalidate`](Self::invalidate) of many exact keys, in one deletion; when it could
    /// not reach the store, each key is queued.
    pub(crate) async fn invalidate_keys(
        &self,
        mode: Mode,
        keys: Vec<String>,
        retries: u32,
    ) -> (u64, Result<()>) {
        let core = &self.inner.core;
        let done = core.invalidate_keys(mode, &keys, retries).await;
        let targets = keys.into_iter().map(Target::Key);
        (
            done.deleted,
            Self::queue_unlanded(core, done.failed, targets),
        )
    }

    /// What an invalidation's failure (`None`: it landed) leaves the caller: a failure that
    /// asking again can mend queues its targets, and its error says so; any other is
    /// returned as it is.
    fn queue_unlanded(
        core: &Arc<Core>,
        failed: Option<(Error, u32)>,
        targets: impl Iterator<Item = Target>,
    ) -> Result<()> {
        match failed {
            None => Ok(()),
            Some((e, attempts)) if e.is_store_error() && !e.lasts() => {
                let mut queued = None;
                for target in targets {
                    queued.get_or_insert(core.queue(target, e.clone(), attempts));
                }
                Err(queued.unwrap_or(e))
            }
            Some((e, _)) => Err(e),
        }
    }
}

/// What tag sets' keys start with after the prefix.
pub(crate) const TAG_MARK: &str = "[tag]:";

struct Inner {
    core: Arc<Core>,
    /// The prefix as keys start with it: escaped, then `:`.
    key_prefix: String,
    /// The same, escaped again for a glob pattern.
    pattern_prefix: String,
}

/// The prefix as it stands in keys: `%` and `:` percent-encoded, so that no cache's keys
/// start with another's (`app:v2` is written `app%3Av2`, and `app`'s keys never begin so);
/// `{` and `}` too, so that a prefix never makes a Redis Cluster hash tag: the templates'
/// own tags decide which keys share a slot.
fn encode_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out.push(':');
    out
}

impl Cache {
    /// Builds a cache from its configuration. No connection is made yet: the first
    /// operation connects, so a cache can be built while Redis is still starting.
    ///
    /// # Errors
    /// An invalid configuration (see [`Config`]).
    pub fn new(config: Config) -> Result<Cache> {
        config.validate()?;
        let backend = Backend::new(&config)?;
        let key_prefix = encode_prefix(&config.prefix);
        let mut pattern_prefix = String::with_capacity(key_prefix.len() + 2);
        glob_escape_into(&key_prefix, &mut pattern_prefix);
        // The embedded store keeps its values decoded too, bounded like the store itself.
        let (near_entries, near_bytes) = match &config.store {
            crate::config::StoreConfig::Memory { max_entries } => (Some(*max_entries as u64), None),
            #[allow(unreachable_patterns)]
            _ => (config.near_cache, config.near_cache_bytes),
        };
        let near = near_entries.map(|n| Arc::new(NearCache::new(n, near_bytes, false)));
        if let Some(near) = &near {
            let tracked: Arc<dyn crate::store::Tracked> = near.clone();
            backend.track(&tracked, &key_prefix, &config);
        }
        let all = format!("{pattern_prefix}*");
        let siblings = match Backend::identity(&config) {
            Some(store) => Siblings::join(format!("{store} prefix {key_prefix}"), all),
            None => Siblings::alone(all),
        };
        Ok(Cache {
            inner: Arc::new(Inner {
                core: Core::new(config, backend, near, siblings),
                key_prefix,
                pattern_prefix,
            }),
        })
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.inner.core.config
    }

    /// The counters since it was built.
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.core.counters.snapshot();
        stats.pending_invalidations = self.inner.core.siblings.pending.len() as u64;
        stats
    }

    /// The cache's state for a readiness probe: one `PING` to the store (every primary on
    /// a cluster) within the operation timeout, whatever the breaker says, and what this
    /// process knows (the breaker, the near cache's tracking, queued invalidations).
    ///
    /// Blocks the thread for the round trip: in async code, use
    /// [`health_async`](Self::health_async).
    pub fn health(&self) -> Health {
        block_on(self.health_in(Mode::Blocking))
    }

    /// Async twin of [`health`](Self::health).
    pub async fn health_async(&self) -> Health {
        self.health_in(Mode::Async).await
    }

    async fn health_in(&self, mode: Mode) -> Health {
        let core = &self.inner.core;
        let started = std::time::Instant::now();
        let store = core.backend.ping(mode).await.map(|()| started.elapsed());
        let near_cache = match &core.near {
            None => NearCacheHealth::Off,
            Some(near) if near.is_trusted() => NearCacheHealth::Serving {
                entries: near.len(),
            },
            Some(near) => NearCacheHealth::NotServing {
                reason: near.failure(),
            },
        };
        let health = Health {
            store,
            breaker_open: core.backend.breaker_open(),
            near_cache,
            pending_invalidations: core.siblings.pending.len() as u64,
            oldest_pending: core.siblings.pending.oldest(),
            enabled: core.is_enabled(),
        };
        crate::telemetry::health(&self.config().prefix, &health);
        health
    }

    /// The sizes of the cache's in-process maps, for the crate's own memory-bound checks
    /// (`__private::internal_sizes`).
    pub(crate) fn internal_sizes(&self) -> Vec<(&'static str, u64)> {
        self.inner.core.internal_sizes()
    }

    /// Switches caching off at run time, without a deploy (a kill switch): until
    /// [`enable`](Self::enable), every cached call ([`Cacheable`](crate::Cacheable),
    /// `cache_fn!`, [`get_or_set`](Self::get_or_set)) computes and neither reads nor writes
    /// the store or the near cache; a computation already running when it is switched off
    /// does not write its value either. Invalidations still delete, so no value that went
    /// stale meanwhile survives switching back on. Explicit [`set`](Self::set) and
    /// [`get`](Self::get) calls still go through: they are requests, not caching.
    ///
    /// Counted in [`Stats::disabled_calls`](crate::Stats::disabled_calls); each call
    /// reports [`Outcome::Disabled`](crate::Outcome::Disabled).
    ///
    /// ```
    /// use cacheable::{Cache, Cacheable, Config, Context};
    ///
    /// let cache = Cache::new(Config::memory())?;
    /// cache.disable();
    /// assert!(!cache.is_enabled());
    /// let v = Cacheable::new("answer").on(&cache).run(Context::new(), || 42);
    /// assert_eq!((v, cache.count("*")?), (42, 0));
    /// cache.enable();
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    pub fn disable(&self) {
        self.inner.core.enabled.store(false, Ordering::SeqCst);
        log::warn!(target: "cacheable", "cache {} switched off: cached calls compute without it until enable()", self.config().get_prefix());
    }

    /// Switches caching back on after [`disable`](Self::disable).
    pub fn enable(&self) {
        self.inner.core.enabled.store(true, Ordering::SeqCst);
        log::info!(target: "cacheable", "cache {} switched on", self.config().get_prefix());
    }

    /// False between [`disable`](Self::disable) and [`enable`](Self::enable).
    pub fn is_enabled(&self) -> bool {
        self.inner.core.is_enabled()
    }

    /// The full key of a key relative to the prefix.
    pub fn full_key(&self, key: &str) -> String {
        let mut out = self.key_start(key.len());
        out.push_str(key);
        out
    }

    /// An empty key with the prefix and its `:` written, ready for the rest.
    pub(crate) fn key_start(&self, capacity: usize) -> String {
        self.key_start_in(String::new(), capacity)
    }

    /// Like [`key_start`](Self::key_start), in an empty buffer the caller has.
    pub(crate) fn key_start_in(&self, mut out: String, capacity: usize) -> String {
        out.reserve(self.inner.key_prefix.len() + capacity);
        out.push_str(&self.inner.key_prefix);
        out
    }

    /// Like [`key_start`](Self::key_start), with the prefix escaped for a glob pattern.
    pub(crate) fn pattern_start(&self, capacity: usize) -> String {
        let mut out = String::with_capacity(self.inner.pattern_prefix.len() + capacity);
        out.push_str(&self.inner.pattern_prefix);
        out
    }

    fn full_pattern(&self, pattern: &str) -> String {
        let mut out = self.pattern_start(pattern.len());
        out.push_str(pattern);
        out
    }

    fn relative(&self, mut key: String) -> String {
        if key.starts_with(self.inner.key_prefix.as_str()) {
            key.drain(..self.inner.key_prefix.len());
        }
        key
    }

    /// Counts a fault met on a fail-open path and logs it, at most one line a second for
    /// each kind of fault on each key template.
    pub(crate) fn report(&self, what: &'static str, template: &str, key: &str, err: &Error) {
        self.inner.core.report_fault(what, template, key, err);
    }

    fn counters(&self) -> &Counters {
        &self.inner.core.counters
    }

    fn backend(&self) -> &Backend {
        &self.inner.core.backend
    }

    fn found<T: DeserializeOwned>(&self, key: &str, bytes: Option<Vec<u8>>) -> Result<Option<T>> {
        let c = self.counters();
        match Entry::classify(bytes) {
            // A lease is a computation in progress, not a value; nor is a failure marker.
            Entry::Missing | Entry::Leased(_) | Entry::Failed(_) => {
                Counters::add(&c.misses, 1);
                telemetry::misses(MANUAL, 1);
                Ok(None)
            }
            Entry::Value(bytes) => match codec::decode(&bytes) {
                Ok(v) => {
                    Counters::add(&c.store_hits, 1);
                    telemetry::hits(MANUAL, 1);
                    Ok(Some(v))
                }
                Err(e) => {
                    Counters::add(&c.misses, 1);
                    telemetry::misses(MANUAL, 1);
                    Counters::add(&c.decode_errors, 1);
                    Err(Error::with_source(
                        ErrorKind::Deserialize,
                        format!(
                            "the value at {key} does not deserialize into {}",
                            std::any::type_name::<T>()
                        ),
                        e,
                    ))
                }
            },
        }
    }

    /// A failed computation answered with the call's fallback value.
    pub(crate) fn count_fallback(&self) {
        Counters::add(&self.counters().fallbacks, 1);
    }

    /// A call answered without the cache.
    pub(crate) fn count_uncached(&self) {
        Counters::add(&self.counters().uncached, 1);
    }

    pub(crate) fn count_failed_invalidation(&self) {
        Counters::add(&self.counters().failed_invalidations, 1);
    }

    pub(crate) fn counted_set(&self, raw: Result<()>) -> Result<()> {
        if raw.is_ok() {
            Counters::add(&self.counters().sets, 1);
            telemetry::sets(MANUAL, 1);
        }
        raw
    }

    fn ttl_of(ttl: impl IntoTtl) -> Result<Duration> {
        let ttl = ttl.into_ttl();
        if ttl.is_zero() {
            Err(Error::config("ttl must be positive"))
        } else {
            Ok(ttl)
        }
    }

    fn counted_error<T>(&self, raw: Result<T>) -> Result<T> {
        if let Err(e) = &raw {
            if e.is_store_error() {
                Counters::add(&self.counters().errors, 1);
                telemetry::errors(MANUAL, 1);
            }
        }
        raw
    }

    /// The value at `key`, or `None` when there is none, or while a queued invalidation of
    /// the key (or a pattern over it) has not landed. A key is not known here by its tags:
    /// a queued tag invalidation holds back the cached calls that carry the tag, not this.
    ///
    /// # Errors
    /// A store fault, or a stored value that does not deserialize into `T`
    /// ([`ErrorKind::Deserialize`]).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        block_on(self.get_in(Mode::Blocking, key))
    }

    /// Async twin of [`get`](Self::get).
    pub async fn get_async<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get_in(Mode::Async, key).await
    }

    async fn get_in<T: DeserializeOwned>(&self, mode: Mode, key: &str) -> Result<Option<T>> {
        let key = self.full_key(key);
        let raw = self.counted_error(self.backend().get(mode, &key).await)?;
        if self.inner.core.held_back(&key, &[]) {
            // A queued invalidation names it: what the store holds may be what it deletes.
            Counters::add(&self.counters().held_back, 1);
            return Ok(None);
        }
        self.found(&key, raw)
    }

    /// Stores `value` at `key` for `ttl` (seconds, or a `Duration`), in the cache's codec
    /// (JSON by default: see [`Config::codec`](crate::Config::codec)).
    ///
    /// # Errors
    /// A store fault, a zero TTL, a value that does not serialize, or one over
    /// [`Config::max_value_bytes`] (then the key is deleted rather than left with its older
    /// value).
    pub fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: impl IntoTtl,
    ) -> Result<()> {
        block_on(self.set_in(Mode::Blocking, key, value, ttl.into_ttl()))
    }

    /// Async twin of [`set`](Self::set).
    pub async fn set_async<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: impl IntoTtl,
    ) -> Result<()> {
        self.set_in(Mode::Async, key, value, ttl.into_ttl()).await
    }

    async fn set_in<T: Serialize + ?Sized>(
        &self,
        mode: Mode,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        let ttl = Self::ttl_of(ttl)?;
        let bytes = codec::encode(value, self.inner.core.config.format)?;
        let key = self.full_key(key);
        if let Some(max) = self
            .inner
            .core
            .config
            .max_value_bytes
            .filter(|m| bytes.len() > *m)
        {
            // Not stored: the older value goes too, so that no read serves it in place of
            // the one the caller asked for (or, if the store cannot be reached, its deletion
            // is queued and holds it back); the caller hears why the value was not stored.
            let _ = self.invalidate_now(mode, Target::Key(key.clone())).await;
            return Err(Error::new(
                ErrorKind::Serialize,
                format!(
                    "not stored: the value has {} bytes, over max_value_bytes ({max})",
                    bytes.len()
                ),
            ));
        }
        // Taken before the write is sent: a write supersedes the invalidations of its key
        // queued before it (their late landing would delete what the caller asked for), not
        // one queued while it was under way.
        let mark = self.inner.core.siblings.pending.mark();
        let raw = self.backend().set(mode, &key, &bytes, ttl).await;
        self.inner.core.changed(&key, false);
        if raw.is_ok() {
            self.inner.core.siblings.pending.written(&key, mark);
        }
        self.counted_error(self.counted_set(raw))
    }

    /// Invalidates `target` now, in one attempt per request; a store fault queues it (the
    /// error says so: [`Error::is_queued`]).
    pub(crate) async fn invalidate_now(&self, mode: Mode, target: Target) -> Result<u64> {
        let (deleted, out) = self.invalidate(mode, target, 0).await;
        out.map(|()| {
            telemetry::invalidated(MANUAL, deleted);
            deleted
        })
    }

    /// Where tag sets' keys start: the prefix, then `[tag]:`, which no cache key can begin
    /// with (key templates and values never leave a `[` unescaped).
    pub(crate) fn tag_start(&self, capacity: usize) -> String {
        let mut out = self.key_start(TAG_MARK.len() + capacity);
        out.push_str(TAG_MARK);
        out
    }

    /// Deletes `key`; true when it existed.
    ///
    /// # Errors
    /// A store fault.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let target = Target::Key(self.full_key(key));
        block_on(self.invalidate_now(Mode::Blocking, target)).map(|n| n > 0)
    }

    /// Async twin of [`delete`](Self::delete).
    pub async fn delete_async(&self, key: &str) -> Result<bool> {
        let target = Target::Key(self.full_key(key));
        self.invalidate_now(Mode::Async, target)
            .await
            .map(|n| n > 0)
    }

    /// Deletes every key matching the Redis glob `pattern` (`user:123:*`), by `SCAN` and
    /// `UNLINK` in batches (on a cluster, on every primary at once, or on the one that owns
    /// the pattern's literal hash tag); returns how many went.
    ///
    /// # Errors
    /// A store fault. Keys deleted before it stay deleted.
    pub fn delete_pattern(&self, pattern: &str) -> Result<u64> {
        let target = Target::Pattern(self.full_pattern(pattern));
        block_on(self.invalidate_now(Mode::Blocking, target))
    }

    /// Async twin of [`delete_pattern`](Self::delete_pattern).
    pub async fn delete_pattern_async(&self, pattern: &str) -> Result<u64> {
        let target = Target::Pattern(self.full_pattern(pattern));
        self.invalidate_now(Mode::Async, target).await
    }

    /// The value at `key`, or `compute()`'s value, stored for `ttl`, when there is none.
    ///
    /// Concurrent callers of one key share one computation, within the process and, by a
    /// lease in the key, across processes (see [`Config::leases`]); a value computed while
    /// the key was invalidated is returned but not stored. A stored value that no longer
    /// deserializes into `T` counts as none and is replaced.
    ///
    /// # Errors
    /// A store fault, on the read (then `compute` is not called) or on the write (then the
    /// computed value is lost to the caller, who asked for it to be stored). For a
    /// version that answers whatever the store does, use [`Cacheable::run`](crate::Cacheable::run).
    pub fn get_or_set<T, F>(&self, key: &str, compute: F, ttl: impl IntoTtl) -> Result<T>
    where
        T: CacheValue,
        F: FnOnce() -> T,
    {
        let call = self.strict_call(key, ttl)?;
        if let Some(v) = near_read::<T>(self.core(), &call) {
            return Ok(v);
        }
        let out = read_through(self.core(), &call, None, || {
            Ok::<T, std::convert::Infallible>(compute())
        })?;
        Ok(out.unwrap_or_else(|never| match never {}))
    }

    /// Async twin of [`get_or_set`](Self::get_or_set).
    pub async fn get_or_set_async<T, F, Fut>(
        &self,
        key: &str,
        compute: F,
        ttl: impl IntoTtl,
    ) -> Result<T>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        crate::rt::cooperate().await;
        let call = self.strict_call(key, ttl)?;
        if let Some(v) = near_read::<T>(self.core(), &call) {
            return Ok(v);
        }
        let out = read_through_async(self.core(), &call, None, None, None, || async {
            Ok::<T, std::convert::Infallible>(compute().await)
        })
        .await?;
        Ok(out.unwrap_or_else(|never| match never {}))
    }

    fn strict_call(&self, key: &str, ttl: impl IntoTtl) -> Result<Call<'static>> {
        Ok(Call {
            key: self.full_key(key),
            template: "get_or_set",
            ttl: Self::ttl_of(ttl)?,
            debug: self.config().debug,
            strict: true,
            name: "get_or_set",
            fresh: crate::request::Freshness {
                jitter: self.config().jitter,
                fail_safe_throttle: self.config().fail_safe_throttle,
                ..Default::default()
            },
            control: Default::default(),
            served: Default::default(),
        })
    }

    /// How long `key` has left (Redis's `PTTL`).
    ///
    /// # Errors
    /// A store fault.
    pub fn ttl(&self, key: &str) -> Result<KeyTtl> {
        block_on(self.ttl_in(Mode::Blocking, key))
    }

    /// Async twin of [`ttl`](Self::ttl).
    pub async fn ttl_async(&self, key: &str) -> Result<KeyTtl> {
        self.ttl_in(Mode::Async, key).await
    }

    async fn ttl_in(&self, mode: Mode, key: &str) -> Result<KeyTtl> {
        let raw = self.backend().ttl(mode, &self.full_key(key)).await;
        self.counted_error(raw)
    }

    /// The keys matching the glob `pattern`, relative to the prefix, found by `SCAN`
    /// (never `KEYS`), in no particular order.
    ///
    /// # Errors
    /// A store fault.
    pub fn keys(&self, pattern: &str) -> Result<Vec<String>> {
        block_on(self.keys_in(Mode::Blocking, pattern))
    }

    /// Async twin of [`keys`](Self::keys).
    pub async fn keys_async(&self, pattern: &str) -> Result<Vec<String>> {
        self.keys_in(Mode::Async, pattern).await
    }

    async fn keys_in(&self, mode: Mode, pattern: &str) -> Result<Vec<String>> {
        let raw = self.backend().keys(mode, &self.full_pattern(pattern)).await;
        let found = self.counted_error(raw)?;
        Ok(found.into_iter().map(|k| self.relative(k)).collect())
    }

    /// How many keys match the glob `pattern`.
    ///
    /// # Errors
    /// A store fault.
    pub fn count(&self, pattern: &str) -> Result<u64> {
        self.keys(pattern).map(|k| k.len() as u64)
    }

    /// Async twin of [`count`](Self::count).
    pub async fn count_async(&self, pattern: &str) -> Result<u64> {
        self.keys_async(pattern).await.map(|k| k.len() as u64)
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.backend().kind())
            .field("prefix", &self.config().prefix)
            .finish_non_exhaustive()
    }
}
