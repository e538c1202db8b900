//! The [`Cacheable`] builder: cache one computation's result under a rendered key.

use super::{no_cache, render_tag, resolve, CallLog};
use crate::cache::Cache;
use crate::codec::CacheValue;
use crate::config::IntoTtl;
use crate::error::{Error, Result};
use crate::key::Context;
use crate::key::{RenderOptions, StaticTemplate, Template, TemplateRef};
use crate::outcome::Outcome;
use crate::report::{debug_enabled, debug_line};
use crate::request::{key_buffer, Call, Control, Freshness, StoreIf, TtlFrom};
use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Caches the value of a closure under a key rendered from a template and a [`Context`].
///
/// The finishers are fail-open: whatever the cache does (Redis down or slow, a malformed
/// template, a value that no longer deserializes), the closure's value is returned; the
/// fault is logged (at most a line a second for each key template and kind of fault) and
/// counted in [`Stats::errors`](crate::Stats).
///
/// ```
/// use cacheable::{ctx, Cache, Cacheable, Config};
///
/// let cache = Cache::new(Config::memory().prefix("paycore"))?;
/// let user_id = 123;
/// let profile: String = Cacheable::new("user:<<user_id>>:profile")
///     .ttl(600)
///     .on(&cache)
///     .run(ctx! { user_id }, || "Ada".to_string());
/// assert_eq!(profile, "Ada");
/// assert_eq!(cache.get::<String>("user:123:profile")?.as_deref(), Some("Ada"));
/// # Ok::<(), cacheable::Error>(())
/// ```
///
/// # Concurrent callers, failures and recursion
///
/// Concurrent callers of one key share one computation: in a process, the first caller
/// computes and the others wait for its value; across processes, by a lease in the key
/// (see [`Config::leases`](crate::Config::leases)). A value is stored only if it reads
/// back equal from JSON: `Some(None)` or a `NaN` is returned but not stored (counted in
/// [`Stats::unstorable`](crate::Stats::unstorable)).
///
/// When the computation fails (returns `Err`, or panics), the callers that waited on it are
/// released at once: with [`try_run_shared`](Self::try_run_shared) they answer with that
/// failure; otherwise each computes for itself, side by side and without caching. No
/// caller ever queues behind more than one failed computation. Waiters in other processes
/// are released too: the holder leaves a failure marker in place of its lease for a second
/// (`GET` shows a value starting with `\0cacheable-failed:`; it counts as no value). A
/// value that cannot be stored is no failure: its lease goes, and the waiters compute.
///
/// A computation that asks for its own key, directly or through a chain of cached calls
/// made inside it (on the same thread, or awaited inside its future), would wait on
/// itself: it is detected, and the inner call computes at once without caching (logged
/// once a minute per key template). A sync call that finds an async caller computing its
/// key computes too rather than park a thread that the async caller's runtime may need.
#[must_use = "a Cacheable does nothing until one of its run methods is called"]
#[derive(Debug)]
pub struct Cacheable<'a> {
    template: Result<TemplateRef>,
    hash: Vec<&'a str>,
    ttl: Option<Duration>,
    debug: Option<bool>,
    name: Option<&'a str>,
    cache: Option<&'a Cache>,
    /// True when the template and the hash names were checked once and for all
    /// (`cache_fn!`'s static templates), so that a call need not check them again.
    checked: bool,
    /// Freshness options: tags, early refresh, stale values.
    fresh: FreshOptions,
    /// The per-call controls: [`refresh`](Self::refresh), [`bypass`](Self::bypass),
    /// [`store_if`](Self::store_if), [`ttl_from`](Self::ttl_from),
    /// [`sliding`](Self::sliding) and where to put the [`Outcome`].
    per_call: PerCall<'a>,
}

/// The per-call controls a builder was given.
#[derive(Default)]
struct PerCall<'a> {
    refresh: bool,
    bypass: bool,
    sliding: bool,
    skip_near: bool,
    hard_timeout: Option<Duration>,
    soft_timeout: Option<Duration>,
    store_if: Option<Box<StoreIf<'a>>>,
    ttl_from: Option<Box<TtlFrom<'a>>>,
    outcome: Option<&'a mut Outcome>,
    /// The batch forms' outcomes, one per item.
    outcomes: Option<&'a mut Vec<Outcome>>,
    /// What a fallible finisher answers when the computation fails and nothing stale is
    /// there ([`Cacheable::fallback`]).
    fallback: Option<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for PerCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerCall")
            .field("refresh", &self.refresh)
            .field("bypass", &self.bypass)
            .field("sliding", &self.sliding)
            .field("skip_near", &self.skip_near)
            .field("store_if", &self.store_if.is_some())
            .field("ttl_from", &self.ttl_from.is_some())
            .field("outcome", &self.outcome)
            .field("outcomes", &self.outcomes.is_some())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl PerCall<'_> {
    /// The controls, the timeouts the builder did not set taken from `config`.
    fn control(&self, config: &crate::config::Config) -> Control<'_> {
        Control {
            refresh: self.refresh,
            bypass: self.bypass,
            sliding: self.sliding,
            skip_near: self.skip_near,
            share_failures: false,
            hard_timeout: self.hard_timeout.or(config.hard_timeout),
            soft_timeout: self.soft_timeout.or(config.soft_timeout),
            store_if: self.store_if.as_deref(),
            ttl_from: self.ttl_from.as_deref(),
        }
    }
}

/// The builder's freshness options, grouped.
#[derive(Debug, Default)]
struct FreshOptions {
    tags: Vec<Result<TemplateRef>>,
    stale_if_error: Option<Duration>,
    early_refresh: Option<f64>,
    stale_while_revalidate: Option<Duration>,
    jitter: Option<Duration>,
    fail_safe_throttle: Option<Duration>,
}

impl<'a> Cacheable<'a> {
    /// A builder for `template`, parsed once per process however often this runs.
    ///
    /// The template must be `'static`, such as a string literal. A template built at run
    /// time (a `String`, a `format!`) gives ``borrowed value does not live long enough``:
    /// parse it with [`Template::parse`] and pass it to
    /// [`with_template`](Self::with_template) instead.
    pub fn new(template: &'static str) -> Self {
        Self::from_parsed(Template::interned(template))
    }

    /// A builder for a template parsed at run time (see [`Template::parse`]).
    pub fn with_template(template: Arc<Template>) -> Self {
        Self::from_parsed(Ok(TemplateRef::Shared(template)))
    }

    fn from_parsed(template: Result<TemplateRef>) -> Self {
        Cacheable {
            template,
            hash: Vec::new(),
            ttl: None,
            debug: None,
            name: None,
            cache: None,
            checked: false,
            fresh: FreshOptions::default(),
            per_call: PerCall::default(),
        }
    }

    /// Hashes the value of placeholder `name` even when it is a scalar. Objects and arrays
    /// are hashed anyway. May be called for several names.
    pub fn hash(mut self, name: &'a str) -> Self {
        self.hash.push(name);
        self
    }

    /// How long the value lives: whole seconds, or a `Duration`. The cache's default TTL
    /// otherwise.
    pub fn ttl(mut self, ttl: impl IntoTtl) -> Self {
        self.ttl = Some(ttl.into_ttl());
        self
    }

    /// Logs each step at info level, target `cacheable`, as `[Cache Debug] …` lines
    /// (without it they are logged at trace level; debug level has one line per call).
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = Some(on);
        self
    }

    /// The function name that debug lines show.
    pub fn name(mut self, name: &'a str) -> Self {
        self.name = Some(name);
        self
    }

    /// Uses `cache` rather than the global one.
    pub fn on(mut self, cache: &'a Cache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Records the key under each of these tags, rendered from the same context as the key
    /// (`"user:<<user_id>>"`), so that [`Invalidate::tags`](crate::Invalidate::tags) deletes
    /// it with every other key of the tag, at a cost that follows the keys tagged rather
    /// than the keys stored. Tag values are escaped like key values (a `*` in a value is
    /// `%2A` and matches only itself); scalars are never hashed in a tag.
    ///
    /// The key is recorded before its computation takes the lease, so that an invalidation
    /// of the tag that begins during the computation keeps its value out of the store. A
    /// tag set is a Redis sorted set at `{prefix}:[tag]:{rendered tag}` scored by when each
    /// entry may go (the value's TTL plus the longest a computation may hold its lease);
    /// expired entries are pruned on every addition and invalidation, and the set expires
    /// with its last entry. On a cluster, the set's slot is the tag's own: give the tag the
    /// keys' hash tag (`"{user:<<id>>}"`) to keep it on their node.
    ///
    /// A tag that does not render makes the call compute without the cache, like a key.
    pub fn tags(mut self, tags: impl IntoIterator<Item = &'static str>) -> Self {
        self.fresh
            .tags
            .extend(tags.into_iter().map(Template::interned));
        self
    }

    /// Keeps each value `window` past its TTL, to answer a computation that fails: when
    /// `try_run`'s closure returns `Err` and the value it would replace is no older than
    /// TTL + `window`, the caller gets that value instead of the `Err` (logged at most once
    /// a second per template, counted in [`Stats::stale_if_error`](crate::Stats)). The
    /// value also goes back into the store for the rest of its window (unless an
    /// invalidation came during the computation), so other callers waiting on the failed
    /// computation get it too rather than call the failing source.
    ///
    /// Values stay plain JSON: the store keeps them for TTL + `window` (what `PTTL` and
    /// [`Cache::ttl`](crate::Cache::ttl) show), and a value is fresh while it has more than
    /// `window` left. Past its TTL it is a miss like any other: one caller computes. An
    /// invalidation deletes it at once, window or not.
    pub fn stale_if_error(mut self, window: impl IntoTtl) -> Self {
        self.fresh.stale_if_error = Some(window.into_ttl());
        self
    }

    /// Keeps each value `window` past its TTL and, in that window, answers at once with it
    /// while one caller refreshes it: the first caller to find the value past its TTL takes
    /// the key's refresh lock (`{prefix}:[refresh]:{key}`, across all processes), computes
    /// and answers with the new value; every other caller gets the stale value at once
    /// (counted in [`Stats::stale_while_revalidate`](crate::Stats)) until the new one is
    /// written. This holds for every finisher, sync and async: the refreshing caller is
    /// the one that waits (no task is spawned behind a caller). A failed refresh answers
    /// with the stale value; the next caller tries again.
    ///
    /// Values stay plain JSON: the store keeps them for TTL + `window` (with
    /// [`stale_if_error`](Self::stale_if_error), the longer of the two windows), and a value
    /// is fresh while its `PTTL` exceeds the window. The refresh is written only while the
    /// key still holds the stale value: an invalidation during it keeps it out, and an
    /// invalidation ends the window at once. Past TTL + `window`, a call is a plain miss.
    pub fn stale_while_revalidate(mut self, window: impl IntoTtl) -> Self {
        self.fresh.stale_while_revalidate = Some(window.into_ttl());
        self
    }

    /// Fail-safe throttle: once a failed computation has been answered with the value past
    /// its TTL ([`stale_if_error`](Self::stale_if_error)), the calls with a throttle, in
    /// every process, answer with that value ([`Outcome::Stale`](crate::Outcome::Stale)) for
    /// `throttle` and leave the source alone; the first call after it asks the source
    /// again (a call without a throttle asks at once). A
    /// failing source is then asked about once per `throttle` however many callers there
    /// are, instead of once per request.
    ///
    /// The value put back carries the time (in its stored form), so that readers
    /// elsewhere see it; it is still kept no longer than its stale window, and an
    /// invalidation ends the throttle with the value. Off by default (the next reader asks
    /// the source at once), or [`Config::fail_safe_throttle`](crate::Config::fail_safe_throttle);
    /// `fail_safe_throttle = D` in `cache_fn!`. Without a stale value there is nothing to
    /// serve: the failure marker that releases waiters lives one second.
    ///
    /// ```
    /// use cacheable::{Cache, Cacheable, Config};
    ///
    /// let cache = Cache::new(Config::memory())?;
    /// let rates = Cacheable::new("rates:<<currency>>")
    ///     .ttl(60)
    ///     .stale_if_error(3600)
    ///     .fail_safe_throttle(30);
    /// # let _ = (rates, cache);
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    pub fn fail_safe_throttle(mut self, throttle: impl IntoTtl) -> Self {
        self.fresh.fail_safe_throttle = Some(throttle.into_ttl());
        self
    }

    /// Refreshes a hot value before it expires, so that no caller waits on its expiry
    /// (XFetch, Vattani, Chierichetti and Lowenstein, PVLDB 8(8), 2015): a hit refreshes
    /// when `δ·(5/4 + β·(−ln u)) + 10 ms` reaches the time left before the TTL, `δ` being
    /// the template's recent computation time in this process and `u` uniform in (0, 1],
    /// drawn once per stored value and process. `β = 1` is the paper's choice; larger
    /// refreshes earlier, 0 turns it off (the default, or
    /// [`Config::early_refresh`](crate::Config::early_refresh)).
    ///
    /// Two departures from the paper, whose draw is per read: with a draw per read the
    /// refresh comes the earlier the more a key is read (about `δ·β·ln n` before the
    /// expiry with n reads in `δ·β`; a hot key read 200,000 times a second refreshed 0.45 s
    /// before a 1 s TTL ran out), while one draw per value keeps it `δ·β` early on average
    /// at any traffic (`δ·β·ln p` with p processes). And the `5/4·δ + 10 ms` makes the
    /// refresh land before the value expires, so that its readers do not wait. Callers of
    /// one process that are drawn while another of its callers holds the refresh lock do
    /// not ask the store again.
    ///
    /// The caller drawn takes a refresh lock (`{prefix}:[refresh]:{key}`, a side key with
    /// a lease time's TTL), computes and answers with the new value: one caller across all
    /// processes waits for a refresh, while everyone else keeps reading the current value,
    /// which stays in place, plain JSON. The new value is written only while the key still
    /// holds the value it refreshed, not written again since (its `PTTL` tells): an
    /// invalidation during the refresh keeps it out. A failed refresh answers with the
    /// current value. The expiry comes from a `PTTL` in the same round trip as the `GET`;
    /// `δ` is learnt from this process's computations of the template (a process that has
    /// computed none does not refresh early). Calls with early refresh read the store every
    /// time: they skip the near cache ([`Config::near_cache`](crate::Config::near_cache),
    /// and the embedded store's decoded copies).
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.fresh.early_refresh = Some(crate::config::sane_beta(beta));
        self
    }

    /// Expiry jitter: each write's TTL is lengthened by a random extra in `[0, max]`
    /// (whole milliseconds, drawn per write), so that keys written together (a deploy, a
    /// warm-up loop) do not expire together and send their callers to the source at once.
    /// The tag entries of the key cover the lengthened TTL; a stale window starts after
    /// it. Off by default, or [`Config::jitter`](crate::Config::jitter).
    ///
    /// ```
    /// use cacheable::{ctx, Cache, Cacheable, Config, KeyTtl};
    /// use std::time::Duration;
    ///
    /// let cache = Cache::new(Config::memory())?;
    /// let rate = Cacheable::new("rate:<<code>>")
    ///     .ttl(60)
    ///     .jitter(10)
    ///     .on(&cache)
    ///     .run(ctx! { code = "NGN" }, || 1_530.0);
    /// assert_eq!(rate, 1_530.0);
    /// let KeyTtl::Expires(left) = cache.ttl("rate:NGN")? else { panic!() };
    /// assert!(left > Duration::from_secs(55) && left <= Duration::from_secs(70));
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    pub fn jitter(mut self, max: impl IntoTtl) -> Self {
        self.fresh.jitter = Some(max.into_ttl());
        self
    }

    /// A limit on how long an async computation runs: past it, the computation's future is
    /// dropped (cancelled, its lease given back as for a failure) and the call answers with
    /// `E::from(e)`, `e` an [`Error`] for which [`is_timeout`](Error::is_timeout) holds (kind
    /// [`ComputationTimeout`](crate::ErrorKind::ComputationTimeout)), whether or not a stale
    /// value exists; the callers that waited on it, here and in other processes, are
    /// released at once with that failure. Counted in
    /// [`Stats::hard_timeouts`](crate::Stats::hard_timeouts).
    ///
    /// It applies to [`try_run_shared_async`](Self::try_run_shared_async) (and async
    /// `cache_fn!` functions whose error converts from [`Error`]), the finisher that can
    /// make its caller's error. A sync closure cannot be stopped once it runs, and
    /// [`try_run_async`](Self::try_run_async) has no error to answer with: they ignore it.
    /// `hard_timeout = D` in `cache_fn!`.
    ///
    /// ```
    /// use cacheable::{ctx, Cache, Cacheable, Config, Error};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = Cache::new(Config::memory())?;
    /// let slow: Result<u32, Error> = Cacheable::new("report:<<id>>")
    ///     .hard_timeout(Duration::from_millis(50))
    ///     .on(&cache)
    ///     .try_run_shared_async(ctx! { id = 1 }, || async {
    ///         tokio::time::sleep(Duration::from_secs(10)).await;
    ///         Ok(1)
    ///     })
    ///     .await;
    /// assert!(slow.unwrap_err().is_timeout());
    /// # Ok::<(), cacheable::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn hard_timeout(mut self, limit: impl IntoTtl) -> Self {
        self.per_call.hard_timeout = Some(limit.into_ttl());
        self
    }

    /// Soft timeout: a caller that computes a key while it has a value to answer with (past
    /// its TTL within a [`stale_if_error`](Self::stale_if_error) or
    /// [`stale_while_revalidate`](Self::stale_while_revalidate) window, or one an
    /// [early refresh](Self::early_refresh) replaces) waits for the computation only this
    /// long, then answers with that value ([`Outcome::Stale`](crate::Outcome::Stale) past
    /// its TTL). The computation goes on as a task of the caller's tokio runtime, and its
    /// value is written when it ends, under the key's lease as in the call: an
    /// invalidation meanwhile keeps it out. Counted in
    /// [`Stats::soft_timeouts`](crate::Stats::soft_timeouts).
    ///
    /// A computation can only outlive its call when it is a `Send + 'static` future: it
    /// applies to [`run_detached_async`](Self::run_detached_async) and
    /// [`try_run_detached_async`](Self::try_run_detached_async), awaited under a tokio
    /// runtime, on a call without [`store_if`](Self::store_if) or
    /// [`ttl_from`](Self::ttl_from) (closures the call only borrows). Everywhere else (the
    /// sync finishers, whose closure runs on the caller's thread, the other async ones,
    /// another executor) the caller waits for its computation, as without it. The task
    /// runs as the runtime does: on a current-thread runtime, only while it is driven.
    ///
    /// The callers of this process that wait on such a computation and have a soft timeout
    /// of their own (sync ones too) answer with the same value once it is answered with,
    /// when their own read found the lease that took its place or the value itself; the
    /// others, and callers in other processes (which see only the lease), wait for the
    /// computation. `stale_while_revalidate` answers those at once. Off by default, or
    /// [`Config::soft_timeout`](crate::Config::soft_timeout).
    ///
    /// ```
    /// use cacheable::{ctx, Cache, Cacheable, Config};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = Cache::new(Config::memory())?;
    /// let report = |version: u32| {
    ///     Cacheable::new("report:<<id>>")
    ///         .ttl(Duration::from_millis(50))
    ///         .stale_while_revalidate(600)
    ///         .soft_timeout(Duration::from_millis(100))
    ///         .on(&cache)
    ///         .run_detached_async(ctx! { id = 1 }, move || async move {
    ///             if version > 1 {
    ///                 tokio::time::sleep(Duration::from_secs(2)).await; // a slow source
    ///             }
    ///             version
    ///         })
    /// };
    /// assert_eq!(report(1).await, 1);
    /// tokio::time::sleep(Duration::from_millis(60)).await; // past its TTL
    /// assert_eq!(report(2).await, 1); // after 100 ms: the value it had
    /// # Ok::<(), cacheable::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn soft_timeout(mut self, limit: impl IntoTtl) -> Self {
        self.per_call.soft_timeout = Some(limit.into_ttl());
        self
    }

    /// A value to answer with when the computation fails (`Err`, for the fallible finishers
    /// [`try_run`](Self::try_run) and [`try_run_async`](Self::try_run_async)) and nothing
    /// stale is there to answer with ([`stale_if_error`](Self::stale_if_error) comes
    /// first): served, never stored, so the next call asks the source again. Of the
    /// computation's value type; one of another type is not used (logged). Counted in
    /// [`Stats::fallbacks`](crate::Stats::fallbacks). The other finishers have no failure
    /// to answer and ignore it.
    ///
    /// ```
    /// use cacheable::{ctx, Cache, Cacheable, Config};
    ///
    /// let cache = Cache::new(Config::memory())?;
    /// let rates: Result<Vec<f64>, String> = Cacheable::new("rates:<<code>>")
    ///     .fallback(Vec::<f64>::new())
    ///     .on(&cache)
    ///     .try_run(ctx! { code = "NGN" }, || Err("the rates API is down".to_string()));
    /// assert_eq!(rates, Ok(vec![]));
    /// assert_eq!(cache.stats().fallbacks, 1);
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    pub fn fallback<T: CacheValue>(mut self, value: T) -> Self {
        self.per_call.fallback = Some(Box::new(value));
        self
    }

    /// Computes and stores a new value even when one is stored: for an admin endpoint that
    /// forces a refresh, or a webhook that knows the data changed.
    ///
    /// Other callers keep being served the stored value while the computation runs (they
    /// never wait on it); then the new value takes its place, only while the key still
    /// holds the value this call read: an invalidation during the computation deletes that
    /// value, and the refreshed one is not written (the guarantee a lease gives a miss).
    /// When nothing is stored, the call is an ordinary miss. The near cache is not read,
    /// and drops its copy when the new value is written. The compare-and-set is on the
    /// bytes: if, during the computation, the key is invalidated and filled again by
    /// another caller with the very same bytes, the refreshed value lands anyway.
    ///
    /// Counted in [`Stats::refreshes`](crate::Stats::refreshes); reports
    /// [`Outcome::Refreshed`].
    pub fn refresh(mut self, on: bool) -> Self {
        self.per_call.refresh = on;
        self
    }

    /// Computes without reading or writing the cache (nor the near cache): a request that
    /// must see the source, such as one with `Cache-Control: no-cache`.
    ///
    /// Counted in [`Stats::bypasses`](crate::Stats::bypasses); reports
    /// [`Outcome::Bypassed`]. See also the cache-wide switch,
    /// [`Cache::disable`](crate::Cache::disable).
    pub fn bypass(mut self, on: bool) -> Self {
        self.per_call.bypass = on;
        self
    }

    /// Stores the computed value only when `keep` holds for it; it is returned either way
    /// (and shared with the callers that waited on it). For "don't cache empty results":
    ///
    /// ```
    /// use cacheable::{Cache, Cacheable, Config, Context};
    ///
    /// let cache = Cache::new(Config::memory())?;
    /// let found: Vec<u32> = Cacheable::new("search:nothing")
    ///     .store_if(|v: &Vec<u32>| !v.is_empty())
    ///     .on(&cache)
    ///     .run(Context::new(), Vec::new);
    /// assert!(found.is_empty());
    /// assert_eq!(cache.count("*")?, 0);
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    ///
    /// The closure names the value's type (`|v: &Vec<u32>|`): the builder learns it only
    /// from the finisher. A closure for another type than the finisher's value is a fault:
    /// the value is returned and not stored, the fault counted in
    /// [`Stats::errors`](crate::Stats::errors) and logged. A declined value is counted in
    /// [`Stats::declined`](crate::Stats::declined).
    pub fn store_if<T, F>(mut self, keep: F) -> Self
    where
        T: CacheValue,
        F: Fn(&T) -> bool + Send + Sync + 'a,
    {
        // A closure that captures nothing (a `fn` item, as `cache_fn!` passes) boxes without
        // allocating.
        self.per_call.store_if = Some(Box::new(move |v: &dyn Any| {
            v.downcast_ref::<T>().map(&keep)
        }));
        self
    }

    /// The value's TTL, chosen from the value itself (an access token that expires in
    /// `expires_in` seconds); a zero duration stores nothing. It replaces
    /// [`ttl`](Self::ttl) for the write (a [`sliding`](Self::sliding) read still pushes
    /// the expiry to [`ttl`](Self::ttl)). The closure names the value's type, as for
    /// [`store_if`](Self::store_if), with the same fault for another type.
    ///
    /// ```
    /// use cacheable::{Cache, Cacheable, Config, Context, KeyTtl};
    /// use std::time::Duration;
    ///
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct Token { value: String, expires_in: u64 }
    ///
    /// let cache = Cache::new(Config::memory())?;
    /// let token = Cacheable::new("token")
    ///     .ttl_from(|t: &Token| Duration::from_secs(t.expires_in.saturating_sub(30)))
    ///     .on(&cache)
    ///     .run(Context::new(), || Token { value: "abc".into(), expires_in: 90 });
    /// let KeyTtl::Expires(left) = cache.ttl("token")? else { panic!() };
    /// assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(50));
    /// # let _ = token.value;
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    pub fn ttl_from<T, F>(mut self, ttl: F) -> Self
    where
        T: CacheValue,
        F: Fn(&T) -> Duration + Send + Sync + 'a,
    {
        self.per_call.ttl_from = Some(Box::new(move |v: &dyn Any| v.downcast_ref::<T>().map(&ttl)));
        self
    }

    /// `near(false)`: this call neither reads from nor fills the near cache
    /// ([`Config::near_cache`](crate::Config::near_cache)); the store answers it. For data a
    /// caller must read as another process just wrote it (a balance after a payment): the
    /// near cache's copy may lag another process's write or invalidation by the tracking
    /// message's delay (see docs/near-cache.md). On by default.
    pub fn near(mut self, on: bool) -> Self {
        self.per_call.skip_near = !on;
        self
    }

    /// Sliding expiry: a hit pushes the key's expiry to a full [`ttl`](Self::ttl) from
    /// now, in the same round trip as the read, so that a key read often stays and one
    /// left alone expires (a signed-in user's state, a hot lookup table).
    ///
    /// On one Redis server (6.2 or later) the read is `PTTL` and `GETEX … PX` in one
    /// pipeline; when the bytes are another caller's lease rather than a value, its expiry
    /// is put back to what `PTTL` saw, so a dead holder's lease still goes on time. Before
    /// 6.2 (the server answers `GETEX` with an error, once), and on the cluster, it is one
    /// script (`GET`, then `PEXPIRE` only for a value). On the embedded store the entry's
    /// expiry is reset under its lock. A sliding call does not read the near cache,
    /// whose hits make no round trip and so could not push the stored expiry.
    ///
    /// With a stale window ([`stale_if_error`](Self::stale_if_error),
    /// [`stale_while_revalidate`](Self::stale_while_revalidate)) the read is the `GET` and
    /// `PTTL` those make, and a hit within its TTL is pushed to the TTL and the window
    /// after it by a compare-and-set `PEXPIRE`, a second round trip: a value left unread
    /// past its TTL is stale and stays so (it is not brought back by a read). An
    /// [early refresh](Self::early_refresh) never fires on a sliding read.
    ///
    /// Counted in [`Stats::sliding_hits`](crate::Stats::sliding_hits).
    pub fn sliding(mut self, on: bool) -> Self {
        self.per_call.sliding = on;
        self
    }

    /// Where to write what the call did, once it returns: a hit, a miss, a refresh, and
    /// so on (see [`Outcome`]); for an `X-Cache` header or a log field.
    ///
    /// ```
    /// use cacheable::{Cache, Cacheable, Config, Context, Outcome};
    ///
    /// let cache = Cache::new(Config::memory())?;
    /// let mut outcome = Outcome::default();
    /// let _ = Cacheable::new("k").on(&cache).outcome(&mut outcome).run(Context::new(), || 1);
    /// assert_eq!(outcome, Outcome::Miss);
    /// let _ = Cacheable::new("k").on(&cache).outcome(&mut outcome).run(Context::new(), || 1);
    /// assert_eq!(outcome.as_str(), "hit");
    /// // Then from the embedded store's decoded copies: a near hit, a hit all the same.
    /// let _ = Cacheable::new("k").on(&cache).outcome(&mut outcome).run(Context::new(), || 1);
    /// assert_eq!((outcome, outcome.is_hit()), (Outcome::NearHit, true));
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    pub fn outcome(mut self, outcome: &'a mut Outcome) -> Self {
        self.per_call.outcome = Some(outcome);
        self
    }

    /// For the batch forms ([`run_many`](Self::run_many)): where to write each item's
    /// [`Outcome`], in the contexts' order (the vector is replaced).
    pub fn outcomes(mut self, outcomes: &'a mut Vec<Outcome>) -> Self {
        self.per_call.outcomes = Some(outcomes);
        self
    }

    /// Where the batch forms write their outcomes, taken once.
    pub(super) fn take_outcomes(&mut self) -> Option<&'a mut Vec<Outcome>> {
        self.per_call.outcomes.take()
    }

    /// The cache and the call, or `None` (reported) when there is no cache or no key.
    #[track_caller]
    pub(super) fn plan(&self, ctx: &Context) -> Option<(&'a Cache, Call<'_>)> {
        let cache = match resolve(self.cache) {
            Ok(cache) => cache,
            Err(e) => {
                no_cache(&e);
                crate::global::CacheManager::count_uncached();
                return None;
            }
        };
        let debug = self.debug.unwrap_or(cache.config().debug);
        match self
            .render(cache, ctx, debug)
            .and_then(|(key, ttl)| Ok((key, ttl, self.freshness(cache, ctx)?)))
        {
            Ok((key, ttl, fresh)) => {
                let name = self.name.unwrap_or("<unnamed>");
                Some((
                    cache,
                    Call {
                        key,
                        template: self.template_str(),
                        ttl,
                        debug,
                        strict: false,
                        name,
                        fresh,
                        control: self.per_call.control(cache.config()),
                        served: Default::default(),
                    },
                ))
            }
            Err(e) => {
                debug_line(
                    debug,
                    format_args!(
                        "Key template {} did not render, computing without the cache: {}",
                        self.template_str(),
                        crate::report::chain(&e)
                    ),
                );
                if cache.config().strict {
                    panic!("cacheable (strict mode): {}", crate::report::chain(&e));
                }
                cache.report("cache key", self.template_str(), self.template_str(), &e);
                cache.count_uncached();
                None
            }
        }
    }

    /// The call's freshness options, its tags rendered into tag-set keys.
    fn freshness(&self, cache: &Cache, ctx: &Context) -> Result<Freshness> {
        let mut fresh = Freshness {
            stale_if_error: self.fresh.stale_if_error.unwrap_or_default(),
            stale_while_revalidate: self.fresh.stale_while_revalidate.unwrap_or_default(),
            early_refresh: self
                .fresh
                .early_refresh
                .unwrap_or(cache.config().early_refresh),
            jitter: self.fresh.jitter.unwrap_or(cache.config().jitter),
            fail_safe_throttle: self
                .fresh
                .fail_safe_throttle
                .unwrap_or(cache.config().fail_safe_throttle),
            ..Freshness::default()
        };
        for tag in &self.fresh.tags {
            if !self.checked {
                self.check_tag(tag)?;
            }
            fresh.tags.push(render_tag(cache, tag, ctx)?);
        }
        Ok(fresh)
    }

    /// The rule `cache_fn!` checks at compile time: a tag's placeholders are the key's, so
    /// that a key sits in the same tags whichever call wrote it.
    fn check_tag(&self, tag: &Result<TemplateRef>) -> Result<()> {
        let (Ok(key), Ok(tag)) = (&self.template, tag) else {
            return Ok(());
        };
        let root = |path: &str| path.split('.').next().unwrap_or(path).to_owned();
        for name in tag.placeholders().map(root) {
            if !key.placeholders().any(|p| root(p) == name) {
                return Err(Error::template(format!(
                    "cache tag `{tag}`: placeholder `{name}` is not a placeholder of key `{key}`; a tag renders from the values the key names"
                )));
            }
        }
        Ok(())
    }

    fn template_str(&self) -> &str {
        self.template
            .as_ref()
            .map_or("<malformed template>", |t| t.as_str())
    }

    fn render(&self, cache: &Cache, ctx: &Context, debug: bool) -> Result<(String, Duration)> {
        let template = self.template.as_ref().map_err(Clone::clone)?;
        let ttl = self.ttl.unwrap_or(cache.config().default_ttl);
        if ttl.is_zero() {
            return Err(Error::config(format!(
                "ttl of key template `{template}` must be positive"
            )));
        }
        if !self.checked {
            template.check_key()?;
            template.check_hash_names(&self.hash)?;
        }
        let opts = RenderOptions {
            hash: &self.hash,
            hash_len: cache.config().hash_len,
        };
        let mut key = cache.key_start_in(key_buffer(), template.as_str().len() + 16);
        let mut shown = debug_enabled(debug).then(serde_json::Map::new);
        template.render_into(ctx, &opts, &mut key, shown.as_mut())?;
        if let Some(shown) = shown {
            debug_line(
                debug,
                format_args!("Function: {}", self.name.unwrap_or(template.as_str())),
            );
            debug_line(debug, format_args!("Key Template: {template}"));
            debug_line(debug, format_args!("Resolved Key: {key}"));
            debug_line(
                debug,
                format_args!("Context: {}", serde_json::Value::Object(shown)),
            );
        }
        Ok((key, ttl))
    }

    /// Runs `compute` on a miss and caches its value; returns the cached value on a hit.
    ///
    /// Store calls block the thread: in async code, use [`run_async`](Self::run_async).
    ///
    /// Concurrent callers of one key share one computation (see [`Config::leases`](crate::Config::leases)).
    #[track_caller]
    pub fn run<T, F>(self, ctx: Context, compute: F) -> T
    where
        T: CacheValue,
        F: FnOnce() -> T,
    {
        infallible(self.try_run(ctx, || Ok::<T, Infallible>(compute())))
    }

    /// Like [`run`](Self::run) for a fallible computation: an `Err` is returned and never
    /// cached.
    ///
    /// When the computation a caller waits on (another caller's, in this process or
    /// another) fails, the caller runs its own, side by side with the others that waited:
    /// `try_run` cannot make an `E` of that failure. [`try_run_shared`](Self::try_run_shared)
    /// can, for an error type that converts from [`Error`].
    #[inline]
    #[track_caller]
    pub fn try_run<T, E, F>(self, ctx: Context, compute: F) -> Result<T, E>
    where
        T: CacheValue,
        F: FnOnce() -> Result<T, E>,
    {
        self.try_run_sharing(ctx, None, compute)
    }

    /// [`try_run`](Self::try_run), except that a failing source is not called once per
    /// waiting caller: when the computation a caller waited on fails (in this process, or
    /// in another through the marker its lease leaves), the caller answers with
    /// `E::from(e)`, `e` an [`Error`] of kind
    /// [`ComputationFailed`](crate::ErrorKind::ComputationFailed)
    /// ([`Error::is_shared_failure`]), or with the value past its TTL it saw within a
    /// [`stale_if_error`](Self::stale_if_error) window, or with its
    /// [`fallback`](Self::fallback); it never runs its own computation. 100 callers of a
    /// source that fails make one call to it, not 100. Counted in
    /// [`Stats::shared_failures`](crate::Stats::shared_failures). The caller whose
    /// computation failed gets its own `Err` (or panic) as it is.
    ///
    /// `cache_fn!` functions whose error type converts from [`Error`] (`anyhow::Error`,
    /// `Box<dyn std::error::Error + Send + Sync>`, an enum with a `#[from]` variant) take
    /// this path by themselves.
    ///
    /// ```
    /// use cacheable::{ctx, Cache, Cacheable, Config};
    ///
    /// let cache = Cache::new(Config::memory())?;
    /// let rate: Result<f64, anyhow_like::Error> = Cacheable::new("rate:<<code>>")
    ///     .on(&cache)
    ///     .try_run_shared(ctx! { code = "NGN" }, || Ok(1_530.0));
    /// assert_eq!(rate.unwrap(), 1_530.0);
    /// # mod anyhow_like {
    /// #     #[derive(Debug)]
    /// #     pub struct Error(pub String);
    /// #     impl From<cacheable::Error> for Error {
    /// #         fn from(e: cacheable::Error) -> Self { Error(e.to_string()) }
    /// #     }
    /// # }
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    #[inline]
    #[track_caller]
    pub fn try_run_shared<T, E, F>(self, ctx: Context, compute: F) -> Result<T, E>
    where
        T: CacheValue,
        E: From<Error>,
        F: FnOnce() -> Result<T, E>,
    {
        self.try_run_sharing(ctx, Some(E::from), compute)
    }

    /// [`try_run`](Self::try_run) and [`try_run_shared`](Self::try_run_shared): `failed`
    /// makes the error of a failure shared with the computation the call waited on.
    #[inline]
    #[track_caller]
    fn try_run_sharing<T, E, F>(
        mut self,
        ctx: Context,
        failed: Option<fn(Error) -> E>,
        compute: F,
    ) -> Result<T, E>
    where
        T: CacheValue,
        F: FnOnce() -> Result<T, E>,
    {
        #[cfg(feature = "tracing")]
        let span = super::call_span(self.template_str());
        #[cfg(feature = "tracing")]
        let _entered = span.enter();
        let log = CallLog::start();
        let slot = self.per_call.outcome.take();
        let fallback = self.per_call.fallback.take();
        let Some((cache, mut call)) = self.plan(&ctx) else {
            let out = compute();
            // After the computation: a cached call inside it ended first.
            report(slot, Outcome::Unavailable);
            log.end(self.template_str(), None, Outcome::Unavailable, None);
            return fall_back(out, fallback, None, self.template_str());
        };
        if let Some(v) = cache.near::<T>(&call) {
            report(slot, Outcome::NearHit);
            log.end(call.template, Some(&call.key), Outcome::NearHit, None);
            return Ok(v);
        }
        call.control.share_failures = failed.is_some();
        let out = cache
            .read(&call, failed, compute)
            .expect("fail-open calls report faults rather than return them");
        served(cache, &call, slot, log);
        fall_back(out, fallback, Some(cache), call.template)
    }

    /// Async twin of [`run`](Self::run).
    ///
    /// Any executor can drive it (a tokio runtime of any flavour, with or without its IO
    /// and time drivers, or another executor): store calls and timers run on the crate's
    /// own IO thread, and the caller awaits their handles. On one Redis server, a tokio
    /// runtime with an IO driver sends on a connection of its own instead, once its first
    /// call has started it.
    ///
    /// Under tokio, each call takes a unit of the task's cooperative budget, as a channel
    /// receive does: a loop of calls that answer at once (near hits, the embedded store,
    /// calls failing fast while Redis is down) yields now and then, so the tasks queued
    /// behind it on the same worker still run.
    ///
    /// A plain `fn` returning the future, rather than an `async fn`: its arguments are
    /// then held once, not twice, in a future that a near hit builds and moves.
    pub fn run_async<T, F, Fut>(
        self,
        ctx: Context,
        compute: F,
    ) -> impl Future<Output = T> + use<'a, T, F, Fut>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.drive_async(
            ctx,
            None,
            None,
            move || async move { Ok::<T, Infallible>(compute().await) },
            infallible,
        )
    }

    /// Async twin of [`try_run`](Self::try_run).
    pub fn try_run_async<T, E, F, Fut>(
        self,
        ctx: Context,
        compute: F,
    ) -> impl Future<Output = Result<T, E>> + use<'a, T, E, F, Fut>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.try_run_async_sharing(ctx, None, compute)
    }

    /// Async twin of [`try_run_shared`](Self::try_run_shared).
    pub fn try_run_shared_async<T, E, F, Fut>(
        self,
        ctx: Context,
        compute: F,
    ) -> impl Future<Output = Result<T, E>> + use<'a, T, E, F, Fut>
    where
        T: CacheValue,
        E: From<Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.try_run_async_sharing(ctx, Some(E::from), compute)
    }

    /// The async fallible finishers: `failed` as in [`try_run_sharing`](Self::try_run_sharing).
    fn try_run_async_sharing<T, E, F, Fut>(
        self,
        ctx: Context,
        failed: Option<fn(Error) -> E>,
        compute: F,
    ) -> impl Future<Output = Result<T, E>> + use<'a, T, E, F, Fut>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.drive_async(ctx, failed, None, compute, std::convert::identity)
    }

    /// [`run_async`](Self::run_async) for a computation that can outlive the call (a
    /// `Send + 'static` future), so that the call's
    /// [`soft_timeout`](Self::soft_timeout) can answer without it.
    pub fn run_detached_async<T, F, Fut>(
        self,
        ctx: Context,
        compute: F,
    ) -> impl Future<Output = T> + use<'a, T, F, Fut>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        self.drive_async(
            ctx,
            None,
            Some(crate::cache::detachable),
            move || {
                let fut = compute();
                async move { Ok::<T, Infallible>(fut.await) }
            },
            infallible,
        )
    }

    /// [`try_run_async`](Self::try_run_async) for a computation that can outlive the call
    /// (a `Send + 'static` future), so that the call's
    /// [`soft_timeout`](Self::soft_timeout) can answer without it.
    pub fn try_run_detached_async<T, E, F, Fut>(
        self,
        ctx: Context,
        compute: F,
    ) -> impl Future<Output = Result<T, E>> + use<'a, T, E, F, Fut>
    where
        T: CacheValue,
        E: Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.drive_async(
            ctx,
            None,
            Some(crate::cache::detachable),
            compute,
            std::convert::identity,
        )
    }

    /// The one async call path: an `async move` block, whose captures are not copied
    /// again into locals as an `async fn`'s arguments are.
    // Not an `async fn` on purpose (see above): clippy's suggestion would double the captures.
    #[allow(clippy::manual_async_fn)]
    fn drive_async<T, E, F, Fut, R>(
        mut self,
        ctx: Context,
        failed: Option<fn(Error) -> E>,
        detach: Option<fn(Fut) -> crate::cache::Detached<T, E>>,
        compute: F,
        finish: fn(Result<T, E>) -> R,
    ) -> impl Future<Output = R> + use<'a, T, E, F, Fut, R>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        #[cfg(feature = "tracing")]
        let span = super::call_span(self.template_str());
        let call = async move {
            // A near hit is ready at once: it counts against the task's budget as a store
            // call does (`rt::cooperate`).
            crate::rt::cooperate().await;
            let log = CallLog::start();
            let slot = self.per_call.outcome.take();
            let fallback = self.per_call.fallback.take();
            let Some((cache, mut call)) = self.plan(&ctx) else {
                let out = compute().await;
                report(slot, Outcome::Unavailable);
                log.end(self.template_str(), None, Outcome::Unavailable, None);
                return finish(fall_back(out, fallback, None, self.template_str()));
            };
            if let Some(v) = cache.near::<T>(&call) {
                report(slot, Outcome::NearHit);
                log.end(call.template, Some(&call.key), Outcome::NearHit, None);
                return finish(Ok(v));
            }
            call.control.share_failures = failed.is_some();
            let out = cache
                .read_async(&call, None, failed, detach, compute)
                .await
                .expect("fail-open calls report faults rather than return them");
            served(cache, &call, slot, log);
            finish(fall_back(out, fallback, Some(cache), call.template))
        };
        #[cfg(feature = "tracing")]
        let call = tracing::Instrument::instrument(call, span);
        call
    }
}

/// The value of a computation that cannot fail.
fn infallible<T>(out: Result<T, Infallible>) -> T {
    match out {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// Ends a call that went to the store: counts it when answered without the cache, writes
/// its outcome where the caller asked, and logs its line.
pub(super) fn served(cache: &Cache, call: &Call<'_>, slot: Option<&mut Outcome>, log: CallLog) {
    let outcome = call.served.get();
    if outcome == Outcome::Unavailable {
        cache.count_uncached();
    }
    report(slot, outcome);
    log.end(
        call.template,
        Some(&call.key),
        outcome,
        call.served.computation(),
    );
}

/// A fallible call's answer: its computation's, or, when that failed and the call has a
/// fallback value of its type, that value (counted, and logged at debug level).
fn fall_back<T: CacheValue, E>(
    out: Result<T, E>,
    fallback: Option<Box<dyn Any + Send + Sync>>,
    cache: Option<&Cache>,
    template: &str,
) -> Result<T, E> {
    let Some(fallback) = fallback.filter(|_| out.is_err()) else {
        return out;
    };
    match fallback.downcast::<T>() {
        Ok(v) => {
            if let Some(cache) = cache {
                cache.count_fallback();
            }
            crate::telemetry::fallbacks(template, 1);
            log::debug!(target: "cacheable", "the computation of {template} failed: answering with its fallback value");
            Ok(*v)
        }
        Err(_) => {
            log::warn!(target: "cacheable", "the fallback value given to {template} is not a {}: not used", std::any::type_name::<T>());
            out
        }
    }
}

/// Writes a call's outcome where the caller asked for it.
fn report(slot: Option<&mut Outcome>, outcome: Outcome) {
    crate::outcome::note(outcome);
    if let Some(slot) = slot {
        *slot = outcome;
    }
}

// ---- `cache_fn!`: one static template per function, checked on its first call only.
impl Cacheable<'_> {
    /// The builder of a `cache_fn!` function (`__private::cacheable`), for its static
    /// template and the `hash` names given with it. The template was checked with those
    /// names once and for all, so a `.hash(…)` added later would go unchecked.
    pub(crate) fn from_static(template: &'static StaticTemplate) -> Self {
        let mut builder = Self::from_parsed(template.as_key());
        builder.hash = template.hash_names().to_vec();
        builder.checked = true;
        builder
    }
}
