//! The builders: [`Cacheable`](crate::Cacheable) caches one computation under a rendered
//! key, [`Invalidate`](crate::Invalidate) deletes what a mutation makes stale. Each renders
//! its templates and hands the [`Cache`] one description (`request::Call` or
//! `request::Target`); what they share is here.

pub(crate) mod batch;
pub(crate) mod cacheable;
pub(crate) mod invalidate;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::global::CacheManager;
use crate::key::{Context, RenderOptions, TemplateRef};
use crate::outcome::Outcome;
use crate::report::Throttle;
use once_cell::sync::Lazy;
use std::time::{Duration, Instant};

static NO_CACHE: Lazy<Throttle> = Lazy::new(|| Throttle::new(Duration::from_secs(1)));

/// The cache a builder uses: its own, or the global one.
pub(crate) fn resolve(on: Option<&Cache>) -> Result<&Cache> {
    match on {
        Some(cache) => Ok(cache),
        None => CacheManager::cache(),
    }
}

/// The full key of the tag set a tag template names in `ctx`: rendered like a key (no
/// glob syntax, values escaped), never hashing scalars.
pub(crate) fn render_tag(
    cache: &Cache,
    tag: &Result<TemplateRef>,
    ctx: &Context,
) -> Result<String> {
    let tag = tag.as_ref().map_err(Clone::clone)?;
    tag.check_key()?;
    let opts = RenderOptions {
        hash: &[],
        hash_len: cache.config().hash_len,
    };
    let mut set = cache.tag_start(tag.as_str().len() + 16);
    tag.render_into(ctx, &opts, &mut set, None)?;
    Ok(set)
}

/// Logs that there is no cache to use, at most a line a second.
pub(crate) fn no_cache(e: &Error) {
    if NO_CACHE.allow("no cache", "").is_some() {
        log::error!(target: "cacheable", "no cache, answering without it: {}", crate::report::chain(e));
    }
}

/// One call as logs and traces show it: when it ends, one line at debug level (outcome, key,
/// template, time, and the computation's time if it ran) and, with the `tracing` feature,
/// the same as fields of the call's span. Reads no clock when neither would show it.
pub(crate) struct CallLog {
    started: Option<Instant>,
}

impl CallLog {
    #[inline]
    pub(crate) fn start() -> CallLog {
        let on = log::log_enabled!(target: "cacheable", log::Level::Debug) || tracing_on();
        CallLog {
            started: on.then(Instant::now),
        }
    }

    #[inline]
    pub(crate) fn end(
        self,
        template: &str,
        key: Option<&str>,
        outcome: Outcome,
        computation: Option<Duration>,
    ) {
        if let Some(started) = self.started {
            ended(started.elapsed(), template, key, outcome, computation);
        }
    }
}

#[cold]
fn ended(
    took: Duration,
    template: &str,
    key: Option<&str>,
    outcome: Outcome,
    computation: Option<Duration>,
) {
    let key = key.unwrap_or("(no key)");
    match computation {
        Some(c) => {
            log::debug!(target: "cacheable", "{outcome} {key} ({template}) in {took:?}, computed in {c:?}")
        }
        None => log::debug!(target: "cacheable", "{outcome} {key} ({template}) in {took:?}"),
    }
    #[cfg(feature = "tracing")]
    {
        let span = tracing::Span::current();
        span.record("outcome", outcome.as_str());
        span.record("key", key);
        span.record("elapsed_us", took.as_micros() as u64);
        if let Some(c) = computation {
            span.record("computation_us", c.as_micros() as u64);
        }
    }
}

/// Whether the call's span is recorded by a `tracing` subscriber.
#[inline]
fn tracing_on() -> bool {
    #[cfg(feature = "tracing")]
    return !tracing::Span::current().is_disabled();
    #[cfg(not(feature = "tracing"))]
    false
}

/// The span of one call (feature `tracing`), a child of the caller's current span: the
/// template now, the outcome, key and times when the call ends.
#[cfg(feature = "tracing")]
pub(crate) fn call_span(template: &str) -> tracing::Span {
    tracing::debug_span!(
        target: "cacheable",
        "cacheable",
        template,
        outcome = tracing::field::Empty,
        key = tracing::field::Empty,
        elapsed_us = tracing::field::Empty,
        computation_us = tracing::field::Empty,
    )
}
