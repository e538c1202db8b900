//! A fallback value (`Cacheable::fallback`, `cache_fn!`'s `fallback = …`): answered, not
//! stored, when a fallible computation fails with nothing stale to serve; a stale value
//! within its window comes first. On the embedded store and a private Redis (with and
//! without the near cache), sync and async.

use crate::support;

use cacheable::{cache_fn, ctx, Cache, Cacheable};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use support::{suite, Backend};

suite!(
    a_failed_computation_answers_the_fallback_and_stores_nothing,
    a_stale_value_comes_before_the_fallback,
    a_fallback_of_another_type_is_not_used,
);

support::suite_tests! {
    memory = memory(Without),
    redis = redis(Both),
}

fn rates(cache: &Cache, calls: &AtomicU32, fail: bool) -> Result<Vec<u32>, String> {
    Cacheable::new("rates:<<code>>")
        .ttl(60)
        .tags(["rates"])
        .fallback(Vec::<u32>::new())
        .on(cache)
        .try_run(ctx! { code = "NGN" }, || {
            calls.fetch_add(1, Ordering::SeqCst);
            if fail {
                Err("the rates API is down".to_string())
            } else {
                Ok(vec![1_530])
            }
        })
}

async fn rates_async(cache: &Cache, calls: &AtomicU32, fail: bool) -> Result<Vec<u32>, String> {
    Cacheable::new("rates:<<code>>")
        .ttl(60)
        .tags(["rates"])
        .fallback(Vec::<u32>::new())
        .on(cache)
        .try_run_async(ctx! { code = "NGN" }, || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if fail {
                Err("the rates API is down".to_string())
            } else {
                Ok(vec![1_530])
            }
        })
        .await
}

fn a_failed_computation_answers_the_fallback_and_stores_nothing(b: &Backend) {
    let cache = b.cache("fallback");
    let calls = AtomicU32::new(0);
    assert_eq!(rates(&cache, &calls, true), Ok(vec![]), "{}", b.name);
    assert_eq!(
        cache.get::<Vec<u32>>("rates:NGN").unwrap(),
        None,
        "{}",
        b.name
    );
    // Asked again: the fallback was not stored.
    assert_eq!(rates(&cache, &calls, false), Ok(vec![1_530]), "{}", b.name);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "{}", b.name);
    assert_eq!(cache.stats().fallbacks, 1, "{}", b.name);
    // Async, on another key's worth of state: the same.
    let cache = b.cache("fallbackasync");
    let rt = support::current_thread();
    let calls = AtomicU32::new(0);
    assert_eq!(rt.block_on(rates_async(&cache, &calls, true)), Ok(vec![]));
    assert_eq!(
        rt.block_on(rates_async(&cache, &calls, false)),
        Ok(vec![1_530])
    );
    assert_eq!(
        rt.block_on(rates_async(&cache, &calls, true)),
        Ok(vec![1_530])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "{}", b.name);
    assert_eq!(cache.stats().fallbacks, 1, "{}", b.name);
}

/// With stale-if-error and a value past its TTL, the failure answers that value.
fn a_stale_value_comes_before_the_fallback(b: &Backend) {
    let cache = b.cache("fallbackstale");
    let call = |fail: bool| {
        Cacheable::new("fx:<<code>>")
            .ttl(Duration::from_millis(300))
            .stale_if_error(30)
            .fallback(0u32)
            .on(&cache)
            .try_run(ctx! { code = "NGN" }, || {
                if fail {
                    Err("down")
                } else {
                    Ok(1_530u32)
                }
            })
    };
    assert_eq!(call(false), Ok(1_530));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(call(true), Ok(1_530), "{}: the stale value", b.name);
    assert_eq!(cache.stats().fallbacks, 0, "{}", b.name);
}

fn a_fallback_of_another_type_is_not_used(b: &Backend) {
    let cache = b.cache("fallbacktype");
    let out: Result<u32, &str> = Cacheable::new("n:<<id>>")
        .fallback("zero".to_string())
        .on(&cache)
        .try_run(ctx! { id = 1 }, || Err("down"));
    assert_eq!(out, Err("down"), "{}", b.name);
    assert_eq!(cache.stats().fallbacks, 0, "{}", b.name);
}

cache_fn! {
    #[cache(key = "score:<<id>>", ttl = 60, fallback = 0u32, cache = cache)]
    fn score(cache: &Cache, id: u32) -> Result<u32, String> {
        let _ = cache;
        if id == 0 { Err("no such user".into()) } else { Ok(id * 10) }
    }
}

#[test]
fn cache_fn_takes_a_fallback() {
    let cache = Cache::new(cacheable::Config::memory()).unwrap();
    assert_eq!(score(&cache, 0), Ok(0));
    assert_eq!(score(&cache, 2), Ok(20));
    assert_eq!(cache.stats().fallbacks, 1);
}
