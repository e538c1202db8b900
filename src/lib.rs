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
//! - [`Cacheable`] caches one computation (`run`, `run_async`, `try_run`, `try_run_async`).
//! - [`Invalidate`] deletes keys and patterns after a mutation, or [`now`](Invalidate::now).
//! - [`CacheManager`] is the global cache and its manual operations; [`Cache`] is one
//!   configured cache; [`Config`] says where it lives.
//! - [`cache_fn!`] defines functions that cache their results or invalidate others'.
//! - [`ctx!`] names the values that fill a template's `<<placeholders>>`.
//!
//! Keys are `{prefix}:{rendered template}`. Scalars render as text, objects and arrays as
//! the first 16 hex digits of the SHA-1 of their canonical JSON, and `: % * ? [ ] \` inside
//! values are percent-encoded, so that no value can forge a segment or widen a pattern.
#![deny(missing_docs)]

mod backend;
mod cacheable;
mod config;
mod context;
mod engine;
mod error;
mod flight;
mod glob;
mod hash;
mod invalidate;
mod lease;
mod macros;
mod manager;
mod stats;
mod template;

pub use crate::backend::KeyTtl;
pub use crate::cacheable::Cacheable;
pub use crate::config::{Config, IntoTtl, DEFAULT_MAX_ENTRIES};
pub use crate::context::Context;
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::invalidate::Invalidate;
pub use crate::manager::{Cache, CacheManager};
pub use crate::stats::Stats;
pub use crate::template::Template;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Not public API: what the crate's macros expand to. It may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::cacheable::Cacheable;
    pub use crate::context::Context;
    pub use crate::invalidate::Invalidate;
    pub use crate::macros::support::{
        arg_name, check_cache, check_invalidate, check_key, check_patterns, key_arg, uses, Msg,
        NamedByKey, Out, PlainPath, Ret, ReturnsResult, ReturnsValue, SerializeKeyArgument,
        TryPath,
    };
    pub use crate::template::StaticTemplate;
    pub use core::{compile_error, concat, panic, stringify};
}
