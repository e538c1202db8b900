//! The stores a [`Cache`](crate::Cache) can sit on: the embedded memory store and Redis.
//!
//! Both implement [`Store`]; [`Backend`] dispatches to the configured one without boxing
//! futures on the hot path.

pub(crate) mod memory;
pub(crate) mod redis;

use crate::config::{Config, StoreConfig};
use crate::error::Result;
use std::future::Future;
use std::time::Duration;

/// How long a key has left to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// There is no such key.
    Missing,
    /// The key exists and never expires (it was written outside this crate).
    Persistent,
    /// The key expires after this long.
    Expires(Duration),
}

/// One store's operations, in blocking and async forms. Keys and patterns are full keys,
/// prefix included; values are JSON bytes.
pub(crate) trait Store: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()>;
    /// Deletes exact keys; returns how many existed.
    fn delete(&self, keys: &[&str]) -> Result<u64>;
    /// Deletes every key matching a Redis glob; returns how many went.
    fn delete_pattern(&self, pattern: &str) -> Result<u64>;
    fn ttl(&self, key: &str) -> Result<KeyTtl>;
    /// Every key matching a Redis glob, each once.
    fn keys(&self, pattern: &str) -> Result<Vec<String>>;
    /// Writes only when the key is absent (`SET NX PX`); true when written.
    fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool>;
    /// Overwrites only while the key still holds `expected`, atomically; true when written.
    fn set_if(&self, key: &str, expected: &[u8], value: &[u8], ttl: Duration) -> Result<bool>;
    /// Deletes only while the key still holds `expected`, atomically; true when deleted.
    fn delete_if(&self, key: &str, expected: &[u8]) -> Result<bool>;

    fn get_async(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    fn set_async(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send;
    fn delete_async(&self, keys: &[&str]) -> impl Future<Output = Result<u64>> + Send;
    fn delete_pattern_async(&self, pattern: &str) -> impl Future<Output = Result<u64>> + Send;
    fn ttl_async(&self, key: &str) -> impl Future<Output = Result<KeyTtl>> + Send;
    fn keys_async(&self, pattern: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn set_nx_async(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn set_if_async(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn delete_if_async(
        &self,
        key: &str,
        expected: &[u8],
    ) -> impl Future<Output = Result<bool>> + Send;
}

pub(crate) enum Backend {
    Memory(memory::MemoryStore),
    // Boxed: a Redis store is large, and one of these lives per `Cache` behind an `Arc`.
    Redis(Box<redis::RedisStore>),
}

impl Backend {
    pub(crate) fn new(config: &Config) -> Result<Backend> {
        Ok(match &config.store {
            StoreConfig::Memory { max_entries } => {
                Backend::Memory(memory::MemoryStore::new(*max_entries))
            }
            StoreConfig::Redis { url } => {
                Backend::Redis(Box::new(redis::RedisStore::new(url, config)?))
            }
        })
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }
}

/// Forwards each `Store` method to the configured store.
macro_rules! dispatch {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Backend {$(
            pub(crate) fn $name(&self $(, $arg: $ty)*) -> $ret {
                match self {
                    Backend::Memory(s) => s.$name($($arg),*),
                    Backend::Redis(s) => s.$name($($arg),*),
                }
            }
        )*}
    };
    ($(async fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Backend {$(
            pub(crate) async fn $name(&self $(, $arg: $ty)*) -> $ret {
                match self {
                    Backend::Memory(s) => s.$name($($arg),*).await,
                    Backend::Redis(s) => s.$name($($arg),*).await,
                }
            }
        )*}
    };
}

dispatch! {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()>;
    fn delete(&self, keys: &[&str]) -> Result<u64>;
    fn delete_pattern(&self, pattern: &str) -> Result<u64>;
    fn ttl(&self, key: &str) -> Result<KeyTtl>;
    fn keys(&self, pattern: &str) -> Result<Vec<String>>;
    fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool>;
    fn set_if(&self, key: &str, expected: &[u8], value: &[u8], ttl: Duration) -> Result<bool>;
    fn delete_if(&self, key: &str, expected: &[u8]) -> Result<bool>;
}

dispatch! {
    async fn get_async(&self, key: &str) -> Result<Option<Vec<u8>>>;
    async fn set_async(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()>;
    async fn delete_async(&self, keys: &[&str]) -> Result<u64>;
    async fn delete_pattern_async(&self, pattern: &str) -> Result<u64>;
    async fn ttl_async(&self, key: &str) -> Result<KeyTtl>;
    async fn keys_async(&self, pattern: &str) -> Result<Vec<String>>;
    async fn set_nx_async(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool>;
    async fn set_if_async(&self, key: &str, expected: &[u8], value: &[u8], ttl: Duration) -> Result<bool>;
    async fn delete_if_async(&self, key: &str, expected: &[u8]) -> Result<bool>;
}
