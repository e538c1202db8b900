//! The builders: [`Cacheable`](crate::Cacheable) caches one computation under a rendered
//! key, [`Invalidate`](crate::Invalidate) deletes what a mutation makes stale. Each renders
//! its templates and hands the [`Cache`] one description (`request::Call` or
//! `request::Target`); what they share is here.

pub(crate) mod cacheable;
pub(crate) mod invalidate;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::global::CacheManager;
use crate::key::{Context, RenderOptions, TemplateRef};
use crate::report::Throttle;
use once_cell::sync::Lazy;
use std::time::Duration;

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
