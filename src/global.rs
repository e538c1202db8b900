//! [`CacheManager`]: the process-wide cache the builders and `cache_fn!` use unless given
//! another, set up once by `init` or built from the environment on first use.

use crate::cache::Cache;
use crate::codec::CacheValue;
use crate::config::{Config, IntoTtl};
use crate::error::{Error, ErrorKind, Result};
use crate::health::Health;
use crate::stats::Stats;
use crate::store::KeyTtl;
use once_cell::sync::OnceCell;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static GLOBAL: OnceCell<Cache> = OnceCell::new();

/// Calls answered without the global cache because it could not be built.
static UNCACHED_WITHOUT_GLOBAL: AtomicU64 = AtomicU64::new(0);
/// Why the global cache could not be built from the environment, once that was tried.
static FROM_ENV_FAILED: Mutex<Option<Error>> = Mutex::new(None);

/// The process-wide cache that builders use unless given another with `on(&cache)`.
///
/// [`init`](CacheManager::init) it once at start-up. Without `init`, the first use builds
/// it from the environment ([`Config::from_env`]): `CACHE_URL`, or the embedded store when
/// that is unset. Its methods are [`Cache`]'s, on the global cache.
///
/// ```no_run
/// use cacheable::{CacheManager, Config};
///
/// # fn main() -> Result<(), cacheable::Error> {
/// CacheManager::init(Config::from_url("redis://127.0.0.1:6379/1")?.prefix("paycore").default_ttl(300))?;
/// CacheManager::set("user:123:profile", &"Ada", 600)?;
/// let name: Option<String> = CacheManager::get("user:123:profile")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CacheManager {
    _private: (),
}

macro_rules! delegate {
    ($(
        $(#[$doc:meta])*
        fn $name:ident $(<$($g:ident $(: $b:path)?),*>)? ($($arg:ident: $ty:ty),*) -> $ret:ty;
    )*) => {$(
        $(#[$doc])*
        ///
        /// # Errors
        /// As the [`Cache`] method of the same name, or the global cache's configuration error.
        pub fn $name $(<$($g $(: $b)?),*>)? ($($arg: $ty),*) -> $ret {
            Self::cache()?.$name($($arg),*)
        }
    )*};
}

macro_rules! delegate_async {
    ($(
        $(#[$doc:meta])*
        fn $name:ident $(<$($g:ident $(: $b:path)?),*>)? ($($arg:ident: $ty:ty),*) -> $ret:ty;
    )*) => {$(
        $(#[$doc])*
        ///
        /// # Errors
        /// As the [`Cache`] method of the same name, or the global cache's configuration error.
        pub async fn $name $(<$($g $(: $b)?),*>)? ($($arg: $ty),*) -> $ret {
            Self::cache()?.$name($($arg),*).await
        }
    )*};
}

impl CacheManager {
    /// Sets up the global cache. Call it once, before any cached function runs.
    ///
    /// It also replaces a global cache that failed to build from the environment (a bad
    /// `CACHE_URL`): from then on, calls use this configuration.
    ///
    /// Calling it again with an equal configuration does nothing and succeeds, so tests
    /// may each call it; see also [`get_or_init`](Self::get_or_init).
    ///
    /// # Errors
    /// An invalid configuration, or [`ErrorKind::AlreadyInitialized`] when the global cache
    /// was set up already with another configuration (by an earlier `init`, or from the
    /// environment by an earlier use).
    pub fn init(config: Config) -> Result<()> {
        if GLOBAL.get().is_some_and(|c| *c.config() == config) {
            return Ok(());
        }
        let cache = Cache::new(config)?;
        // Under the lock, so that a first use building from the environment cannot slip in
        // between.
        let mut failed = FROM_ENV_FAILED.lock().unwrap_or_else(|e| e.into_inner());
        GLOBAL.set(cache).map_err(|_| {
            Error::new(
                ErrorKind::AlreadyInitialized,
                "the global cache is set up already, with another configuration: call CacheManager::init once, before the first cached call (or CacheManager::get_or_init)",
            )
        })?;
        *failed = None;
        Ok(())
    }

    /// The global cache, set up with `config()` if nothing set it up yet. For tests: every
    /// test can call it first, the first one sets the global cache up and the others use
    /// it, and the environment (a developer's `CACHE_URL`) is never read.
    ///
    /// ```
    /// use cacheable::{CacheManager, Config};
    ///
    /// let cache = CacheManager::get_or_init(|| Config::memory().prefix("test"))?;
    /// let again = CacheManager::get_or_init(|| Config::memory().prefix("other"))?;
    /// assert_eq!(again.config().get_prefix(), "test");
    /// # let _ = cache;
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    ///
    /// # Errors
    /// `config()`'s configuration is invalid (and nothing set the global cache up).
    pub fn get_or_init(config: impl FnOnce() -> Config) -> Result<&'static Cache> {
        if let Some(cache) = GLOBAL.get() {
            return Ok(cache);
        }
        let mut failed = FROM_ENV_FAILED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cache) = GLOBAL.get() {
            return Ok(cache);
        }
        let cache = Cache::new(config())?;
        *failed = None;
        Ok(GLOBAL.get_or_init(|| cache))
    }

    /// A cached call made no use of the global cache, which could not be built.
    pub(crate) fn count_uncached() {
        UNCACHED_WITHOUT_GLOBAL.fetch_add(1, Ordering::Relaxed);
    }

    /// The global cache, built from the environment on first use when `init` was not called.
    ///
    /// # Errors
    /// The environment's configuration error, every time until [`init`](Self::init) is
    /// called: a process whose `CACHE_URL` is wrong does not silently cache in its own
    /// memory.
    pub fn cache() -> Result<&'static Cache> {
        if let Some(cache) = GLOBAL.get() {
            return Ok(cache);
        }
        let mut failed = FROM_ENV_FAILED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cache) = GLOBAL.get() {
            return Ok(cache);
        }
        if let Some(e) = failed.as_ref() {
            return Err(e.clone());
        }
        match Config::from_env().and_then(Cache::new) {
            Ok(cache) => {
                if std::env::var_os("CACHE_URL").is_none() {
                    // The one case that looks like it works and does not: each process
                    // caches alone, and no invalidation reaches the others.
                    log::warn!(target: "cacheable", "CacheManager::init was not called and CACHE_URL is unset: the global cache is this process's own memory (prefix `{}`), so invalidations made by other processes never reach it; call CacheManager::init at startup or set CACHE_URL (CACHE_URL=memory:// chooses this store on purpose and silences this warning)", cache.config().prefix);
                }
                log::info!(target: "cacheable", "global cache built from the environment: {cache:?}");
                Ok(GLOBAL.get_or_init(|| cache))
            }
            Err(e) => {
                log::error!(target: "cacheable", "the global cache could not be built from the environment: {}; cached calls answer without it until CACHE_URL (or another CACHE_ variable) is fixed or CacheManager::init is called", crate::report::chain(&e));
                *failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The global cache's counters. When it cannot be built, all zero but
    /// [`uncached`](Stats::uncached): the calls answered without it meanwhile.
    pub fn stats() -> Stats {
        let without = UNCACHED_WITHOUT_GLOBAL.load(Ordering::Relaxed);
        match Self::cache() {
            Ok(cache) => {
                let mut stats = cache.stats();
                stats.uncached += without;
                stats
            }
            Err(_) => Stats {
                uncached: without,
                ..Stats::default()
            },
        }
    }

    /// [`Cache::health`] of the global cache.
    ///
    /// # Errors
    /// The global cache's configuration error.
    pub fn health() -> Result<Health> {
        Self::cache().map(Cache::health)
    }

    /// [`Cache::health_async`] of the global cache.
    ///
    /// # Errors
    /// The global cache's configuration error.
    pub async fn health_async() -> Result<Health> {
        Ok(Self::cache()?.health_async().await)
    }

    /// [`Cache::disable`] on the global cache: the kill switch.
    ///
    /// # Errors
    /// The global cache's configuration error (then cached calls compute anyway).
    pub fn disable() -> Result<()> {
        Self::cache().map(Cache::disable)
    }

    /// [`Cache::enable`] on the global cache.
    ///
    /// # Errors
    /// The global cache's configuration error.
    pub fn enable() -> Result<()> {
        Self::cache().map(Cache::enable)
    }

    /// [`Cache::is_enabled`] on the global cache (false when it cannot be built).
    pub fn is_enabled() -> bool {
        Self::cache().is_ok_and(Cache::is_enabled)
    }

    delegate! {
        /// [`Cache::get`] on the global cache.
        fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>>;
        /// [`Cache::delete`] on the global cache.
        fn delete(key: &str) -> Result<bool>;
        /// [`Cache::delete_pattern`] on the global cache.
        fn delete_pattern(pattern: &str) -> Result<u64>;
        /// [`Cache::ttl`] on the global cache.
        fn ttl(key: &str) -> Result<KeyTtl>;
        /// [`Cache::keys`] on the global cache.
        fn keys(pattern: &str) -> Result<Vec<String>>;
        /// [`Cache::count`] on the global cache.
        fn count(pattern: &str) -> Result<u64>;
    }

    delegate_async! {
        /// [`Cache::get_async`] on the global cache.
        fn get_async<T: DeserializeOwned>(key: &str) -> Result<Option<T>>;
        /// [`Cache::delete_async`] on the global cache.
        fn delete_async(key: &str) -> Result<bool>;
        /// [`Cache::delete_pattern_async`] on the global cache.
        fn delete_pattern_async(pattern: &str) -> Result<u64>;
        /// [`Cache::ttl_async`] on the global cache.
        fn ttl_async(key: &str) -> Result<KeyTtl>;
        /// [`Cache::keys_async`] on the global cache.
        fn keys_async(pattern: &str) -> Result<Vec<String>>;
        /// [`Cache::count_async`] on the global cache.
        fn count_async(pattern: &str) -> Result<u64>;
    }

    /// [`Cache::set`] on the global cache.
    ///
    /// # Errors
    /// As [`Cache::set`], or the global cache's configuration error.
    pub fn set<T: Serialize + ?Sized>(key: &str, value: &T, ttl: impl IntoTtl) -> Result<()> {
        Self::cache()?.set(key, value, ttl)
    }

    /// [`Cache::set_async`] on the global cache.
    ///
    /// # Errors
    /// As [`Cache::set_async`], or the global cache's configuration error.
    pub async fn set_async<T: Serialize + ?Sized>(
        key: &str,
        value: &T,
        ttl: impl IntoTtl,
    ) -> Result<()> {
        Self::cache()?.set_async(key, value, ttl).await
    }

    /// [`Cache::get_or_set`] on the global cache.
    ///
    /// # Errors
    /// As [`Cache::get_or_set`], or the global cache's configuration error.
    pub fn get_or_set<T, F>(key: &str, compute: F, ttl: impl IntoTtl) -> Result<T>
    where
        T: CacheValue,
        F: FnOnce() -> T,
    {
        Self::cache()?.get_or_set(key, compute, ttl)
    }

    /// [`Cache::get_or_set_async`] on the global cache.
    ///
    /// # Errors
    /// As [`Cache::get_or_set_async`], or the global cache's configuration error.
    pub async fn get_or_set_async<T, F, Fut>(key: &str, compute: F, ttl: impl IntoTtl) -> Result<T>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        Self::cache()?.get_or_set_async(key, compute, ttl).await
    }
}
