//! The [`Invalidate`] builder: delete the keys and patterns a mutation makes stale.

use super::{no_cache, render_tag, resolve};
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::key::Context;
use crate::key::{RenderOptions, StaticTemplate, Template, TemplateRef};
use crate::report::{chain, debug_line};
use crate::request as siblings;
use crate::rt::{block_on, Mode};
use crate::telemetry;
use std::future::Future;
use std::sync::Arc;

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
    /// Where to write what the invalidation did ([`outcome`](Self::outcome)).
    outcome: Option<&'a mut Invalidation>,
}

/// One rendered pattern, or the error that kept it from rendering.
struct Target {
    text: String,
    glob: bool,
}

/// What one deletion of an invalidation covers.
enum Unit<'t> {
    /// Exact keys of one template (its text, when it parsed).
    Keys(Option<&'t str>, Vec<String>),
    /// A pattern or a tag (shown as such), of its template.
    One(Option<&'t str>, &'static str, siblings::Target),
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
            outcome: None,
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
            outcome: None,
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

    /// Strict mode's panic on a pattern or tag that does not render, raised here so that
    /// it points at the caller's line (`#[track_caller]` does not cross the async body,
    /// which panics too, for the async finishers).
    #[track_caller]
    fn strict_check(&self, ctx: &Context) {
        let Ok(cache) = resolve(self.cache) else {
            return;
        };
        if !cache.config().strict {
            return;
        }
        let tags = self
            .tags
            .iter()
            .map(|tag| render_tag(cache, tag, ctx).map(drop));
        let patterns = self.targets(cache, ctx).into_iter().map(|t| t.map(drop));
        if let Some(Err(e)) = patterns.chain(tags).find(Result::is_err) {
            panic!("cacheable (strict mode): {}", chain(&e));
        }
    }

    /// Counts a failure that nothing will retry (a template that does not render) and logs
    /// it.
    fn failed(cache: &Cache, what: &str, e: Error) -> Error {
        cache.count_failed_invalidation();
        log::error!(target: "cacheable", "invalidation of {what} failed; stale values may be served until their TTL ends: {}", chain(&e));
        e
    }

    /// Invalidates now; returns how many keys went.
    ///
    /// # Errors
    /// - [`ErrorKind::Queued`](crate::ErrorKind::Queued) ([`Error::is_queued`]) when a
    ///   pattern, key or tag could not reach the store within its retries: it was queued and
    ///   is retried in the background until it lands; until then this process serves none of
    ///   what it names, and other processes may serve the old values.
    /// - A template that does not render: nothing is queued for it.
    ///
    /// Either way the other patterns, keys and tags are still invalidated.
    #[track_caller]
    pub fn now(&self, ctx: Context) -> Result<u64> {
        self.strict_check(&ctx);
        block_on(self.invalidate(Mode::Blocking, std::slice::from_ref(&ctx))).into_result()
    }

    /// Async twin of [`now`](Self::now).
    ///
    /// # Errors
    /// As [`now`](Self::now).
    pub async fn now_async(&self, ctx: Context) -> Result<u64> {
        self.invalidate(Mode::Async, std::slice::from_ref(&ctx))
            .await
            .into_result()
    }

    /// [`now`](Self::now) for many contexts at once, such as the items of a batch read:
    /// every pattern and tag rendered for each context, each target once; the exact keys of
    /// one template go in one deletion, one round trip per server (on the cluster, to each
    /// primary that owns some of them, at once). Returns how many keys went.
    ///
    /// ```
    /// use cacheable::{ctx, Cache, Config, Invalidate};
    ///
    /// let cache = Cache::new(Config::memory())?;
    /// for id in 1..=3 {
    ///     cache.set(&format!("product:{id}"), &id, 60)?;
    /// }
    /// let ids = [1, 3];
    /// let contexts = ids.iter().map(|id| ctx! { id = *id }).collect();
    /// assert_eq!(Invalidate::new(["product:<<id>>"]).on(&cache).now_many(contexts)?, 2);
    /// assert_eq!(cache.get::<i32>("product:2")?, Some(2));
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`now`](Self::now).
    #[track_caller]
    pub fn now_many(&self, contexts: Vec<Context>) -> Result<u64> {
        for ctx in &contexts {
            self.strict_check(ctx);
        }
        block_on(self.invalidate(Mode::Blocking, &contexts)).into_result()
    }

    /// Async twin of [`now_many`](Self::now_many).
    ///
    /// # Errors
    /// As [`now`](Self::now).
    pub async fn now_many_async(&self, contexts: Vec<Context>) -> Result<u64> {
        self.invalidate(Mode::Async, &contexts).await.into_result()
    }

    /// Where to write what the invalidation did, for the finishers that return the
    /// mutation's value ([`run`](Self::run), [`try_run`](Self::try_run) and their async
    /// twins): done, queued (the store could not be reached), failed, or not run (the
    /// mutation returned `Err`).
    ///
    /// ```
    /// use cacheable::{ctx, Cache, Config, Invalidate, Invalidation};
    ///
    /// let cache = Cache::new(Config::memory())?;
    /// cache.set("user:7:profile", &"old", 60)?;
    /// let mut done = Invalidation::default();
    /// let saved: Result<u32, String> = Invalidate::new(["user:<<user_id>>:profile"])
    ///     .on(&cache)
    ///     .outcome(&mut done)
    ///     .try_run(ctx! { user_id = 7 }, || Ok(1));
    /// assert_eq!(saved, Ok(1));
    /// assert!(matches!(done, Invalidation::Done(1)));
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    pub fn outcome(mut self, slot: &'a mut Invalidation) -> Self {
        self.outcome = Some(slot);
        self
    }

    async fn invalidate(&self, mode: Mode, contexts: &[Context]) -> Invalidation {
        let cache = match resolve(self.cache) {
            Ok(cache) => cache,
            Err(e) => {
                no_cache(&e);
                return Invalidation::Failed {
                    deleted: 0,
                    error: e,
                };
            }
        };
        let debug = self.debug_on(cache);
        let mut total = 0;
        let (mut queued, mut failed) = (None, None);
        // Once a store fault outlives the retries, the store is most likely down: the other
        // targets get one attempt each rather than a full round of retries (they are queued
        // just the same).
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
                failed.get_or_insert(Self::failed(cache, "the patterns", e));
            }
        }
        // Every target each context renders, each once; the exact keys of one template
        // gathered into one deletion (one round trip per server), each template's own so
        // that its count of deleted keys stays its own.
        let mut units: Vec<Unit<'_>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for ctx in contexts {
            let patterns = self.patterns.iter().zip(self.targets(cache, ctx));
            let tags = self.tags.iter().map(|tag| {
                let set = render_tag(cache, tag, ctx).map(|set| Target {
                    text: set,
                    glob: false,
                });
                (tag, set)
            });
            let first_tag = self.patterns.len();
            for (i, (template, target)) in patterns.chain(tags).enumerate() {
                let is_tag = i >= first_tag;
                let target = match target {
                    Ok(t) => t,
                    Err(e) if cache.config().strict => {
                        panic!("cacheable (strict mode): {}", chain(&e));
                    }
                    Err(e) => {
                        let what = if is_tag { "a tag" } else { "a pattern" };
                        failed.get_or_insert(Self::failed(cache, what, e));
                        continue;
                    }
                };
                if !seen.insert((is_tag, target.glob, target.text.clone())) {
                    continue;
                }
                let template = template.as_ref().ok().map(|t| t.as_str());
                let (shown, target) = match (is_tag, target.glob) {
                    (true, _) => ("tag", siblings::Target::Tag(target.text)),
                    (false, true) => ("pattern", siblings::Target::Pattern(target.text)),
                    (false, false) => {
                        let same = units.iter_mut().find_map(|u| match u {
                            Unit::Keys(t, keys) if *t == template => Some(keys),
                            _ => None,
                        });
                        match same {
                            Some(keys) => keys.push(target.text),
                            None => units.push(Unit::Keys(template, vec![target.text])),
                        }
                        continue;
                    }
                };
                units.push(Unit::One(template, shown, target));
            }
        }
        for unit in units {
            let (template, shown, text, (deleted, out)) = match unit {
                Unit::Keys(template, mut keys) if keys.len() == 1 => {
                    let key = keys.pop().unwrap_or_default();
                    debug_line(debug, format_args!("Invalidating pattern: {key}"));
                    let target = siblings::Target::Key(key.clone());
                    let done = cache.invalidate(mode, target, retries).await;
                    (template, "pattern", key, done)
                }
                Unit::Keys(template, keys) => {
                    let text = format!("{} keys ({}, …)", keys.len(), keys[0]);
                    debug_line(debug, format_args!("Invalidating {text}"));
                    let done = cache.invalidate_keys(mode, keys, retries).await;
                    (template, "keys", text, done)
                }
                Unit::One(template, shown, target) => {
                    let text = match &target {
                        siblings::Target::Key(t)
                        | siblings::Target::Pattern(t)
                        | siblings::Target::Tag(t) => t.clone(),
                    };
                    debug_line(debug, format_args!("Invalidating {shown}: {text}"));
                    let done = cache.invalidate(mode, target, retries).await;
                    (template, shown, text, done)
                }
            };
            total += deleted;
            if let Some(template) = template {
                telemetry::invalidated(template, deleted);
            }
            match out {
                Ok(()) => debug_line(
                    debug,
                    format_args!("Deleted {deleted} keys for {shown}: {text}"),
                ),
                Err(e) if e.is_queued() => {
                    retries = 0;
                    queued.get_or_insert(e);
                }
                Err(e) => {
                    failed.get_or_insert(Self::failed(cache, &text, e));
                }
            }
        }
        debug_line(
            debug,
            format_args!(
                "Total deleted: {total} keys for function: {}",
                self.function_name()
            ),
        );
        match (failed, queued) {
            (Some(error), _) => Invalidation::Failed {
                deleted: total,
                error,
            },
            (None, Some(error)) => Invalidation::Queued {
                deleted: total,
                error,
            },
            (None, None) => Invalidation::Done(total),
        }
    }

    /// Writes what the invalidation did where [`outcome`](Self::outcome) asked.
    fn report(&mut self, done: Invalidation) {
        if let Some(slot) = self.outcome.take() {
            *slot = done;
        }
    }

    /// Runs `mutation`, then invalidates. A failed invalidation is logged and counted (and,
    /// when the store could not be reached, queued); the mutation's value is returned
    /// either way: see [`outcome`](Self::outcome) for what the invalidation did.
    #[track_caller]
    pub fn run<T, F: FnOnce() -> T>(mut self, ctx: Context, mutation: F) -> T {
        let out = mutation();
        self.strict_check(&ctx);
        let done = block_on(self.invalidate(Mode::Blocking, std::slice::from_ref(&ctx)));
        self.report(done);
        out
    }

    /// Runs `mutation` and invalidates only when it returns `Ok`.
    #[track_caller]
    pub fn try_run<T, E, F: FnOnce() -> Result<T, E>>(
        mut self,
        ctx: Context,
        mutation: F,
    ) -> Result<T, E> {
        let out = mutation()?;
        self.strict_check(&ctx);
        let done = block_on(self.invalidate(Mode::Blocking, std::slice::from_ref(&ctx)));
        self.report(done);
        Ok(out)
    }

    /// Async twin of [`run`](Self::run).
    pub async fn run_async<T, F, Fut>(mut self, ctx: Context, mutation: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let out = mutation().await;
        let done = self
            .invalidate(Mode::Async, std::slice::from_ref(&ctx))
            .await;
        self.report(done);
        out
    }

    /// Async twin of [`try_run`](Self::try_run).
    pub async fn try_run_async<T, E, F, Fut>(mut self, ctx: Context, mutation: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let out = mutation().await?;
        let done = self
            .invalidate(Mode::Async, std::slice::from_ref(&ctx))
            .await;
        self.report(done);
        Ok(out)
    }
}

/// What an [`Invalidate`] did ([`Invalidate::outcome`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Invalidation {
    /// Nothing was invalidated: the mutation returned `Err`, or nothing ran yet.
    #[default]
    NotRun,
    /// Every pattern, key and tag was invalidated; this many keys went.
    Done(u64),
    /// At least one could not reach the store and was queued
    /// ([`ErrorKind::Queued`](crate::ErrorKind::Queued)): it lands by itself, and until then
    /// this process serves nothing it names. `deleted` keys went meanwhile.
    Queued {
        /// Keys deleted by the others (and the pages of a tag that landed).
        deleted: u64,
        /// The first queued one's error.
        error: Error,
    },
    /// At least one failed and was not queued (a template that did not render).
    Failed {
        /// Keys deleted by the others.
        deleted: u64,
        /// The first failure.
        error: Error,
    },
}

impl Invalidation {
    /// The keys deleted, whatever else happened.
    pub fn deleted(&self) -> u64 {
        match self {
            Invalidation::NotRun => 0,
            Invalidation::Done(n) => *n,
            Invalidation::Queued { deleted, .. } | Invalidation::Failed { deleted, .. } => *deleted,
        }
    }

    fn into_result(self) -> Result<u64> {
        match self {
            Invalidation::NotRun => Ok(0),
            Invalidation::Done(n) => Ok(n),
            Invalidation::Queued { error, .. } | Invalidation::Failed { error, .. } => Err(error),
        }
    }
}

// ---- `cache_fn!`: one static array of templates per function, parsed on its first call.
impl Invalidate<'_> {
    /// The builder of an `#[invalidate]` function (`__private::invalidate`), for its static
    /// patterns and tags. Its `hash` names, added after, were checked at compile time.
    pub(crate) fn from_static(patterns: &'static [StaticTemplate], tags: &[&'static str]) -> Self {
        Invalidate {
            patterns: patterns.iter().map(StaticTemplate::as_pattern).collect(),
            hash: Vec::new(),
            debug: None,
            name: None,
            cache: None,
            checked: true,
            tags: tags.iter().map(|t| Template::interned(t)).collect(),
            outcome: None,
        }
    }
}
