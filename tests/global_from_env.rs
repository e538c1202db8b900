//! Without `init`, the global cache is built from the environment: the embedded store
//! when `CACHE_URL` is unset, and a clear error, never a silent fallback, when it is wrong.

use cacheable::{ctx, CacheManager, Cacheable};
use std::process::Command;

#[test]
fn global_cache_comes_from_the_environment() {
    match std::env::var("CACHEABLE_CHILD").as_deref() {
        Ok("memory") => {
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
        _ => {}
    }
    for (mode, url) in [
        ("memory", None),
        ("bad", Some("ftp://nowhere")),
        ("recover", Some("ftp://nowhere")),
    ] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "global_cache_comes_from_the_environment",
            "--nocapture",
        ])
        .env("CACHEABLE_CHILD", mode)
        .env_remove("CACHE_URL")
        .env_remove("CACHE_PREFIX");
        if let Some(url) = url {
            cmd.env("CACHE_URL", url);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{mode}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
