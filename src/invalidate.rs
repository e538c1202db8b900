//! The [`Invalidate`] builder: delete the keys and patterns a mutation makes stale.

use crate::backend::{block_on, Mode};
use crate::cacheable::{no_cache, render_tag, resolve};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::manager::Cache;
use crate::report::{chain, debug_line};
use crate::telemetry;
use crate::template::{RenderOptions, StaticTemplate, Template, TemplateRef};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Deletes what a set of templates names: an exact key (`user:<<user_id>>:profile`) or
/// every key matching a Redis glob (`wallets:<<user_id>>:*`), by `SCAN` and `UNLINK`.
///
/// Placeholder values are escaped, so a value holding `*` deletes only its own keys.
/// A failed invalidation is retried ([`Config::invalidate_retries`](crate::Config::invalidate_retries)),
/// then logged at error level and counted in [`Stats::failed_invalidations`](crate::Stats);
/// [`now`](Self::now) also returns it as an error.
///
/// ```
/// use cacheable::{ctx, Cache, Config, Invalidate};
///
/// let cache = Cache::new(Config::memory().prefix("paycore"))?;
/// cache.set("wallets:42:balance", &10, 60)?;
/// cache.set("wallets:420:balance", &99, 60)?;
/// let user_id = 42;
/// let deleted = Invalidate::new(["wallets:<<user_id>>:*"]).on(&cache).now(ctx! { user_id })?;
/// assert_eq!(deleted, 1);
/// assert_eq!(cache.get::<i32>("wallets:420:balance")?, Some(99));
/// # Ok::<(), cacheable::Error>(())
/// ```
#[must_use = "an Invalidate does nothing until run or now is called"]
#[derive(Debug)]
pub struct Invalidate<'a> {
    patterns: Vec<Result<TemplateRef>>,
    hash: Vec<&'a str>,
    debug: Option<bool>,
    name: Option<&'a str>,
    cache: Option<&'a Cache>,
    /// True when the hash names were checked against the patterns at compile time
    /// (`cache_fn!`), so that a call need not check them again.
    checked: bool,
    /// Tag templates whose keys go too ([`tags`](Self::tags)).
    tags: Vec<Result<TemplateRef>>,
}

/// One rendered pattern, or the error that kept it from rendering.
struct Target {
    text: String,
    glob: bool,
}

impl<'a> Invalidate<'a> {
    /// Invalidates these templates; each is parsed once per process.
    ///
    /// The templates must be `'static`, such as string literals; for templates built at run
    /// time, see [`with_templates`](Self::with_templates).
    pub fn new(patterns: impl IntoIterator<Item = &'static str>) -> Self {
        Invalidate {
            patterns: patterns.into_iter().map(Template::interned).collect(),
            hash: Vec::new(),
            debug: None,
            name: None,
            cache: None,
            checked: false,
            tags: Vec::new(),
        }
    }

    /// Invalidates every key recorded under these tags by
    /// [`Cacheable::tags`](crate::Cacheable::tags) (`"user:<<user_id>>"`), rendered from
    /// the context given to [`now`](Self::now) or a `run` finisher. The cost follows the
    /// keys tagged, not the keys stored: the tag set is read, its keys deleted, its entries
    /// removed. Tag values are escaped as when the keys were tagged, so a value holding `*`
    /// deletes only its own tag's keys.
    ///
    /// ```
    /// use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
    ///
    /// let cache = Cache::new(Config::memory().prefix("paycore"))?;
    /// let user_id = 42;
    /// for page in 1..=3 {
    ///     Cacheable::new("orders:<<page>>:<<user_id>>")
    ///         .tags(["user:<<user_id>>"])
    ///         .on(&cache)
    ///         .run(ctx! { page, user_id }, || format!("page {page}"));
    /// }
    /// let deleted = Invalidate::tags(["user:<<user_id>>"]).on(&cache).now(ctx! { user_id })?;
    /// assert_eq!(deleted, 3);
    /// assert_eq!(cache.count("orders:*")?, 0);
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    pub fn tags(tags: impl IntoIterator<Item = &'static str>) -> Self {
        let mut builder = Self::new([]);
        builder.tags = tags.into_iter().map(Template::interned).collect();
        builder
    }

    /// Invalidates templates parsed at run time.
    pub fn with_templates(patterns: impl IntoIterator<Item = Arc<Template>>) -> Self {
        Invalidate {
            patterns: patterns
                .into_iter()
                .map(|t| Ok(TemplateRef::Shared(t)))
                .collect(),
            hash: Vec::new(),
            debug: None,
            name: None,
            cache: None,
            checked: false,
            tags: Vec::new(),
        }
    }

    /// Hashes the value of placeholder `name` even when it is a scalar, as the
    /// [`Cacheable::hash`](crate::Cacheable::hash) that wrote the keys did: without it, a
    /// hashed key and its pattern would not render alike.
    pub fn hash(mut self, name: &'a str) -> Self {
        self.hash.push(name);
        self
    }

    /// Logs each pattern and how many keys it deleted.
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

    fn targets(&self, cache: &Cache, ctx: &Context) -> Vec<Result<Target>> {
        let opts = RenderOptions {
            hash: &self.hash,
            hash_len: cache.config().hash_len,
        };
        self.patterns
            .iter()
            .map(|template| {
                let template = template.as_ref().map_err(Clone::clone)?;
                let glob = template.is_glob();
                let mut text = if glob {
                    cache.pattern_start(template.as_str().len())
                } else {
                    cache.key_start(template.as_str().len())
                };
                template.render_into(ctx, &opts, &mut text, None)?;
                Ok(Target { text, glob })
            })
            .collect()
    }

    fn debug_on(&self, cache: &Cache) -> bool {
        self.debug.unwrap_or(cache.config().debug)
    }

    fn function_name(&self) -> &str {
        match (self.name, self.patterns.first()) {
            (Some(name), _) => name,
            (None, Some(Ok(first))) => first.as_str(),
            (None, _) => "<unnamed>",
        }
    }

    fn finish(&self, debug: bool, total: u64, failures: Vec<Error>) -> Result<u64> {
        debug_line(
            debug,
            format_args!(
                "Total deleted: {total} keys for function: {}",
                self.function_name()
            ),
        );
        match failures.into_iter().next() {
            None => Ok(total),
            Some(first) => Err(first),
        }
    }

    fn failed(cache: &Cache, target: &str, attempts: u32, e: Error) -> Error {
        cache.count_failed_invalidation();
        log::error!(target: "cacheable", "invalidation of {target} failed after {attempts} attempts; stale values may be served until their TTL ends: {}", chain(&e));
        e
    }

    fn backoff(attempt: u32) -> Duration {
        Duration::from_millis(20 << attempt.min(6))
    }

    /// Invalidates now; returns how many keys went.
    ///
    /// # Errors
    /// The first failure (a pattern that does not render, a store fault that outlived the
    /// retries); the other patterns are still invalidated.
    pub fn now(&self, ctx: Context) -> Result<u64> {
        block_on(self.invalidate(Mode::Blocking, &ctx))
    }

    /// Async twin of [`now`](Self::now).
    ///
    /// # Errors
    /// As [`now`](Self::now).
    pub async fn now_async(&self, ctx: Context) -> Result<u64> {
        self.invalidate(Mode::Async, &ctx).await
    }

    async fn invalidate(&self, mode: Mode, ctx: &Context) -> Result<u64> {
        let cache = resolve(self.cache).inspect_err(no_cache)?;
        let debug = self.debug_on(cache);
        let (mut total, mut failures) = (0, Vec::new());
        // Once a store fault outlives the retries, the store is most likely down: the other
        // patterns get one attempt each rather than a full round of retries.
        let mut retries = cache.config().invalidate_retries;
        for name in self.hash.iter().filter(|_| !self.checked) {
            let known = self
                .patterns
                .iter()
                .flatten()
                .any(|t| t.check_hash_names(&[name]).is_ok());
            if !known {
                let e = Error::template(format!(
                    "hash entry `{name}` names no placeholder of the invalidation patterns"
                ));
                failures.push(Self::failed(cache, "the patterns", 0, e));
            }
        }
        // `targets` renders the patterns in order, one each: zipped, for the metrics' label.
        for (template, target) in self.patterns.iter().zip(self.targets(cache, ctx)) {
            let target = match target {
                Ok(t) => t,
                Err(e) if cache.config().strict => {
                    panic!("cacheable (strict mode): {}", chain(&e));
                }
                Err(e) => {
                    failures.push(Self::failed(cache, "a pattern", 0, e));
                    continue;
                }
            };
            debug_line(debug, format_args!("Invalidating pattern: {}", target.text));
            let mut attempt = 0;
            let result = loop {
                match cache.delete_full(mode, &target.text, target.glob).await {
                    Err(e) if attempt < retries && e.is_store_error() => {
                        mode.sleep(Self::backoff(attempt)).await;
                        attempt += 1;
                    }
                    other => break other,
                }
            };
            match result {
                Ok(n) => {
                    total += n;
                    if let Ok(template) = template {
                        telemetry::invalidated(template.as_str(), n);
                    }
                    debug_line(
                        debug,
                        format_args!("Deleted {n} keys for pattern: {}", target.text),
                    );
                }
                Err(e) => {
                    if e.is_store_error() {
                        retries = 0;
                    }
                    failures.push(Self::failed(cache, &target.text, attempt + 1, e));
                }
            }
        }
        for tag in &self.tags {
            let set = match render_tag(cache, tag, ctx) {
                Ok(set) => set,
                Err(e) if cache.config().strict => {
                    panic!("cacheable (strict mode): {}", chain(&e));
                }
                Err(e) => {
                    failures.push(Self::failed(cache, "a tag", 0, e));
                    continue;
                }
            };
            debug_line(debug, format_args!("Invalidating tag: {set}"));
            let mut attempt = 0;
            let result = loop {
                match cache.delete_tag(mode, &set).await {
                    Err(e) if attempt < retries && e.is_store_error() => {
                        mode.sleep(Self::backoff(attempt)).await;
                        attempt += 1;
                    }
                    other => break other,
                }
            };
            match result {
                Ok(n) => {
                    total += n;
                    if let Ok(template) = tag {
                        telemetry::invalidated(template.as_str(), n);
                    }
                    debug_line(debug, format_args!("Deleted {n} keys for tag: {set}"));
                }
                Err(e) => {
                    if e.is_store_error() {
                        retries = 0;
                    }
                    failures.push(Self::failed(cache, &set, attempt + 1, e));
                }
            }
        }
        self.finish(debug, total, failures)
    }

    /// Runs `mutation`, then invalidates. A failed invalidation is logged and counted; the
    /// mutation's value is returned either way.
    pub fn run<T, F: FnOnce() -> T>(self, ctx: Context, mutation: F) -> T {
        let out = mutation();
        let _ = self.now(ctx);
        out
    }

    /// Runs `mutation` and invalidates only when it returns `Ok`.
    pub fn try_run<T, E, F: FnOnce() -> Result<T, E>>(
        self,
        ctx: Context,
        mutation: F,
    ) -> Result<T, E> {
        let out = mutation()?;
        let _ = self.now(ctx);
        Ok(out)
    }

    /// Async twin of [`run`](Self::run).
    pub async fn run_async<T, F, Fut>(self, ctx: Context, mutation: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let out = mutation().await;
        let _ = self.now_async(ctx).await;
        out
    }

    /// Async twin of [`try_run`](Self::try_run).
    pub async fn try_run_async<T, E, F, Fut>(self, ctx: Context, mutation: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let out = mutation().await?;
        let _ = self.now_async(ctx).await;
        Ok(out)
    }
}

// ---- `cache_fn!`: one static array of templates per function, parsed on its first call.
impl Invalidate<'_> {
    /// Not public API: the tags of an `#[invalidate(tags = […])]` function.
    #[doc(hidden)]
    pub fn __tags(mut self, tags: &[&'static str]) -> Self {
        self.tags.extend(tags.iter().map(|t| Template::interned(t)));
        self
    }

    /// Not public API: the builder of an `#[invalidate]` function, for its static
    /// patterns. Its `hash` names, added after, were checked at compile time.
    #[doc(hidden)]
    pub fn __from_static(patterns: &'static [StaticTemplate]) -> Self {
        Invalidate {
            patterns: patterns.iter().map(StaticTemplate::as_pattern).collect(),
            hash: Vec::new(),
            debug: None,
            name: None,
            cache: None,
            checked: true,
            tags: Vec::new(),
        }
    }
}
