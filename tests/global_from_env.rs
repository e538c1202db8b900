//! Without `init`, the global cache is built from the environment: the embedded store
//! when `CACHE_URL` is unset, and a clear error, never a silent fallback, when it (or
//! `CACHE_DEBUG`) is wrong.

mod support;

use cacheable::{ctx, CacheManager, Cacheable};
use std::process::Command;

#[test]
fn global_cache_comes_from_the_environment() {
    match std::env::var("CACHEABLE_CHILD").as_deref() {
        Ok(mode @ ("memory" | "memory_url")) => {
            support::logs::capture();
            let calls = std::cell::Cell::new(0);
            for _ in 0..3 {
                let v = Cacheable::new("k:<<id>>").run(ctx! { id = 1 }, || {
                    calls.set(calls.get() + 1);
                    7
                });
                assert_eq!(v, 7);
            }
            assert_eq!(calls.get(), 1, "the embedded store caches");
            assert_eq!(CacheManager::keys("*").unwrap(), ["k:1"]);
            // Forgetting `init` (no CACHE_URL) warns once, with the fix; choosing the
            // embedded store by URL is quiet.
            let warnings: Vec<_> = support::logs::with("CACHE_URL is unset")
                .into_iter()
                .filter(|(level, target, _)| *level == log::Level::Warn && target == "cacheable")
                .collect();
            let expected = if mode == "memory" { 1 } else { 0 };
            assert_eq!(warnings.len(), expected, "{mode}: {warnings:?}");
            if let Some((_, _, text)) = warnings.first() {
                assert!(text.contains("CacheManager::init"), "{text}");
            }
            return;
        }
        Ok("bad") => {
            let err = CacheManager::get::<i32>("k").unwrap_err();
            assert_eq!(err.kind(), cacheable::ErrorKind::Config);
            assert!(err.to_string().contains("ftp://nowhere"), "{err}");
            // Cached functions still answer, uncached.
            let calls = std::cell::Cell::new(0);
            for _ in 0..2 {
                Cacheable::new("k").run(ctx! {}, || calls.set(calls.get() + 1));
            }
            assert_eq!(calls.get(), 2);
            // Counted as answered without the cache, not all zeros.
            assert_eq!(CacheManager::stats().uncached, 2);
            return;
        }
        Ok("recover") => {
            assert!(CacheManager::cache().is_err(), "the environment is wrong");
            // `init` replaces the global cache that failed to build.
            CacheManager::init(cacheable::Config::memory().prefix("fixed")).unwrap();
            let calls = std::cell::Cell::new(0);
            for _ in 0..2 {
                Cacheable::new("k").run(ctx! {}, || calls.set(calls.get() + 1));
            }
            assert_eq!(calls.get(), 1, "cached after init");
            assert_eq!(
                CacheManager::cache().unwrap().config().get_prefix(),
                "fixed"
            );
            return;
        }
        Ok("debug_yes") => {
            let config = format!("{:?}", CacheManager::cache().unwrap().config());
            assert!(config.contains("debug: true"), "{config}");
            return;
        }
        Ok("debug_on") => {
            // `on` is not one of the documented words: an error, not a silent off.
            let err = CacheManager::get::<i32>("k").unwrap_err();
            assert_eq!(err.kind(), cacheable::ErrorKind::Config);
            assert!(err.to_string().contains("CACHE_DEBUG `on`"), "{err}");
            return;
        }
        Ok("ttl_zero") => {
            // Refused where it is read, naming the variable, not later by `Cache::new`.
            let err = cacheable::Config::from_env().unwrap_err();
            assert_eq!(err.kind(), cacheable::ErrorKind::Config);
            assert!(err.to_string().contains("CACHE_DEFAULT_TTL `0`"), "{err}");
            return;
        }
        Ok("debug_bad") => {
            let err = CacheManager::get::<i32>("k").unwrap_err();
            assert_eq!(err.kind(), cacheable::ErrorKind::Config);
            let text = err.to_string();
            assert!(
                text.contains("CACHE_DEBUG") && text.contains("enabled"),
                "{text}"
            );
            return;
        }
        _ => {}
    }
    for (mode, url, debug) in [
        ("memory", None, None),
        ("memory_url", Some("memory://"), None),
        ("bad", Some("ftp://nowhere"), None),
        ("recover", Some("ftp://nowhere"), None),
        ("debug_yes", None, Some("YES")),
        ("debug_on", None, Some("on")),
        ("debug_bad", None, Some("enabled")),
        ("ttl_zero", None, None),
    ] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "global_cache_comes_from_the_environment",
            "--nocapture",
        ])
        .env("CACHEABLE_CHILD", mode)
        .env_remove("CACHE_URL")
        .env_remove("CACHE_PREFIX")
        .env_remove("CACHE_DEFAULT_TTL")
        .env_remove("CACHE_DEBUG");
        if let Some(url) = url {
            cmd.env("CACHE_URL", url);
        }
        if let Some(debug) = debug {
            cmd.env("CACHE_DEBUG", debug);
        }
        if mode == "ttl_zero" {
            cmd.env("CACHE_DEFAULT_TTL", "0");
        }
        support::assert_child_passes(&mut cmd, mode);
    }
}
