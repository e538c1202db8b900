//! Cache function results in Redis behind key templates, with wildcard invalidation,
//! for sync and async code.
//!
//! ```
//! use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
//!
//! let cache = Cache::new(Config::memory().prefix("paycore"))?;
//! let user_id = 123;
//! let load = || Cacheable::new("user:<<user_id>>:profile")
//!     .ttl(600)
//!     .on(&cache)
//!     .run(ctx! { user_id }, || format!("profile of {user_id}"));
//! assert_eq!(load(), "profile of 123"); // miss: computed and stored
//! assert_eq!(load(), "profile of 123"); // hit
//! assert_eq!(cache.keys("user:*")?, ["user:123:profile"]);
//!
//! Invalidate::new(["user:<<user_id>>:*"]).on(&cache).now(ctx! { user_id })?;
//! assert_eq!(cache.count("user:*")?, 0);
//! # Ok::<(), cacheable::Error>(())
//! ```
//!
//! - [`Cacheable`] caches one computation (`run`, `run_async`, `try_run`, `try_run_async`),
//!   with per-call control (`refresh`, `bypass`, `store_if`, `ttl_from`, `sliding`) and
//!   the [`Outcome`] of the call.
//! - [`Invalidate`] deletes keys and patterns after a mutation, or [`now`](Invalidate::now).
//! - [`CacheManager`] is the global cache and its manual operations; [`Cache`] is one
//!   configured cache; [`Config`] says where it lives.
//! - [`cache_fn!`] defines functions that cache their results or invalidate others'.
//! - [`ctx!`] names the values that fill a template's `<<placeholders>>`.
//!
//! Keys are `{prefix}:{rendered template}`, and rendering is injective: two different
//! values never give one key.
//!
//! - A placeholder ends the template or is followed by one of `: / | , ; = # & }` (in an
//!   invalidation pattern, also by `* ? [`): `range:<<from>>:<<to>>`, not
//!   `range:<<from>>-<<to>>`, which [`Template::parse`] and [`cache_fn!`] refuse.
//! - Inside string values, `% : * ? [ ] \ { } / | , ; = # &` are percent-encoded (`%3A`),
//!   so no value can forge a segment or a hash tag, or widen a pattern; the rest (`- _ . @`,
//!   letters, digits, non-ASCII) stays readable: `user:42:profile`.
//! - Numbers and bools render as serde_json writes them (`42`, `1.5`, `true`), and so does
//!   a string that is exactly their text: `"42"` and `42` are one key, on purpose (one id,
//!   whatever its type). Another string shaped like a digest has its first character
//!   encoded.
//!   `None` is `%null`, `Some(None)` `%some%null`, NaN and ±inf `%nan`, `%inf`, `%-inf`.
//! - Objects and arrays render as the first 16 hex digits of the SHA-1 of their canonical
//!   JSON (keys sorted; `NaN`, `Infinity`, `some(…)` for what JSON cannot say); a
//!   `HashSet` is sorted first, so equal sets give one key.
//!
//! # How it is built
//!
//! Each layer imports only the ones below it (no import cycle, no path back up through the
//! crate root), and the crate holds no `unsafe`.
//!
//! - **Builders**, `builder/`: [`Cacheable`] and [`Invalidate`] render their templates and
//!   hand a [`Cache`] one description from `request.rs` (a `Call`, or an invalidation's
//!   `Target`); they never reach the engine. `macros.rs` and `macros/support.rs`:
//!   [`cache_fn!`] and [`ctx!`], whose expansions are calls of the builders through
//!   `$crate::__private`, and the `const fn` checks they run at compile time (the one place
//!   over 800 lines: a `macro_rules!` parser and its checks are one concept each).
//! - **Caches**: `cache.rs`, [`Cache`] (its prefix, its manual operations, `health`, and
//!   the narrow entry the builders use); `global.rs`, [`CacheManager`].
//! - **Engine**, `engine/`: the read-through on bytes, one non-generic core behind thin
//!   generic shims, each step in its file: `read.rs` (near cache, store, what the read
//!   decides), `lease.rs` (leading a computation, the lease across processes), `write.rs`
//!   (the write under the lease, tags), `refresh.rs` (early refresh,
//!   stale-while-revalidate), `flight.rs` (single-flight in process), `keeper.rs` (the
//!   thread that renews and gives back leases), `invalidate.rs` (invalidations, tags page by
//!   page, and the queue of those that could not land), `siblings.rs` (the caches of the
//!   process on one store and prefix, which every change reaches).
//! - **Near cache**, `near/`: decoded values in process memory (`entries.rs`, its map);
//!   the store tells it of changes through `store::Tracked`.
//! - **Stores**, `store/`: the `Store` contract and `entry.rs` (what the bytes at a key
//!   can be, and the one classifier); `memory.rs`, the embedded store; `redis/`, one server
//!   (`conn.rs`, `breaker.rs`, `scripts.rs` with every command and Lua script, `sentinel.rs`
//!   finding and following a primary, `tracking.rs` the near cache's invalidation
//!   messages, `local.rs` connections of the callers' own runtimes); `cluster/` (`slot.rs`,
//!   `topology.rs` the slot map, `route.rs` one command to its primary, `fanout.rs` every
//!   primary at once).
//! - **Leaves**: `config/` (the settings, `url.rs`, `env.rs`), `key/` (grammar, template,
//!   values, digests, Redis's glob matcher), `request.rs`, `codec.rs` (values as JSON by
//!   default, or MessagePack, LZ4-compressed over a size, each form saying which it is;
//!   refused when they would not read back equal), `health.rs`, `outcome.rs`, `error.rs`,
//!   `redact.rs` (passwords masked out of the URLs shown), `stats.rs`, `telemetry.rs` (the
//!   `metrics` feature), `report.rs` (debug lines and throttled fault logs) and `rt.rs` (the
//!   crate's own IO thread, timers, and the blocking or async `Mode` of a call).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod codec;
mod config;
mod engine;
mod error;

mod health;
mod key;

mod cache;
mod global;
mod macros;
mod near;
mod outcome;
mod redact;
mod report;
mod request;
mod rt;

mod stats;
mod store;
mod telemetry;

pub use crate::builder::cacheable::Cacheable;
pub use crate::builder::invalidate::{Invalidate, Invalidation};
pub use crate::cache::Cache;
pub use crate::codec::{CacheValue, Codec};
pub use crate::config::{Config, IntoTtl, DEFAULT_MAX_ENTRIES};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::global::CacheManager;
pub use crate::health::{Health, NearCacheHealth};
pub use crate::key::Context;
pub use crate::key::Template;
pub use crate::outcome::{Outcome, OutcomeOf};
pub use crate::stats::Stats;
pub use crate::store::KeyTtl;
#[cfg(feature = "metrics")]
pub use crate::telemetry::describe_metrics;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/api.md")]
struct ApiDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/development.md")]
struct DevelopmentDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/faults.md")]
struct FaultsDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/freshness.md")]
struct FreshnessDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/keys.md")]
struct KeysDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/near-cache.md")]
struct NearCacheDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/operations.md")]
struct OperationsDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/service.md")]
struct ServiceDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/stores.md")]
struct StoresDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/values.md")]
struct ValuesDoctests;

/// Not public API: the crate's parsers and matchers, for its fuzz targets (`fuzz/`). It may
/// change in any release.
#[doc(hidden)]
pub mod __fuzz {
    /// True when Redis's `SCAN … MATCH pattern` would return `string`, as the embedded
    /// store answers it.
    pub fn glob_matches(pattern: &[u8], string: &[u8]) -> bool {
        crate::key::glob::matches(pattern, string)
    }

    /// The digest a hashed placeholder renders `value` as, `len` hex digits; `None` when
    /// the value cannot be a key argument.
    pub fn hash_of<T: serde::Serialize + ?Sized>(value: &T, len: usize) -> Option<String> {
        let value = crate::key::value::to_key_value(value).ok()?;
        let mut out = String::new();
        crate::key::hash::hash_into(&value, len, &mut out);
        Some(out)
    }
}

/// Not public API: what the crate's macros expand to, and the switches and probes of the
/// crate's own tests. It may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::builder::cacheable::Cacheable;
    pub use crate::builder::invalidate::Invalidate;
    pub use crate::codec::CacheValue;
    pub use crate::key::Context;
    pub use crate::key::StaticTemplate;
    pub use crate::macros::support::{
        arg_name, check_cache, check_invalidate, check_key, check_patterns, check_tags, key_arg,
        uses, Msg, NamedByKey, Out, PlainPath, Ret, ReturnsResult, ReturnsValue,
        SerializeKeyArgument, SharedTryPath, SharesFailures, TryPath,
    };
    pub use core::{compile_error, concat, panic, stringify};

    /// The builder of a `cache_fn!` function, for its static template.
    pub fn cacheable(template: &'static StaticTemplate) -> Cacheable<'static> {
        Cacheable::from_static(template)
    }

    /// The builder of an `#[invalidate]` function, for its static patterns and tags.
    pub fn invalidate(
        patterns: &'static [StaticTemplate],
        tags: &[&'static str],
    ) -> Invalidate<'static> {
        Invalidate::from_static(patterns, tags)
    }

    /// The sizes of a cache's in-process maps (flights, log throttles, the lease keeper, the
    /// near cache, queued invalidations…), for the memory-bound checks.
    pub fn internal_sizes(cache: &crate::Cache) -> Vec<(&'static str, u64)> {
        cache.internal_sizes()
    }

    /// Makes lease holders (and early refreshes) write with a plain `SET`, so that tests can
    /// show the stale values that the compare-and-set prevents.
    pub fn unchecked_lease_writes(config: crate::Config) -> crate::Config {
        config.with_unchecked_lease_writes()
    }

    /// Makes the near cache ignore Redis's invalidation messages, so that tests can show the
    /// stale values that they prevent.
    pub fn near_cache_ignores_invalidations(config: crate::Config) -> crate::Config {
        config.with_near_ignoring_invalidations()
    }
}
