//! Expiry jitter: keys written together get TTLs spread over `[ttl, ttl + jitter]`, so
//! they do not expire together; per call, in `cache_fn!`, and as a `Config` default (for
//! `get_or_set` too), on the embedded store and a private Redis.

use crate::support;

use cacheable::{cache_fn, ctx, Cache, Cacheable, KeyTtl};
use std::time::{Duration, Instant};
use support::{suite, Backend};

suite!(
    keys_written_in_one_loop_expire_spread_over_the_jitter,
    the_config_default_applies_where_a_call_sets_none,
);

support::suite_tests! {
    memory = memory(Without),
    redis = redis(Without),
}

fn left(cache: &Cache, key: &str) -> Duration {
    match cache.ttl(key).unwrap() {
        KeyTtl::Expires(d) => d,
        other => panic!("{key}: {other:?}"),
    }
}

/// 10,000 keys written in one loop, TTL 60 s and jitter 10 s: every `PTTL` in
/// [~59 s, 70 s], and each second of the ten holds its share (a tenth, give or take).
fn keys_written_in_one_loop_expire_spread_over_the_jitter(b: &Backend) {
    const KEYS: u32 = 10_000;
    let cache = b.cache("jitter");
    let written: Vec<Instant> = (0..KEYS)
        .map(|id| {
            Cacheable::new("rate:<<id>>")
                .ttl(60)
                .jitter(10)
                .on(&cache)
                .run(ctx! { id }, || id);
            Instant::now()
        })
        .collect();
    let mut per_second = [0u32; 11];
    for id in 0..KEYS {
        // What the key had when written: what it has now, plus the time since.
        let left = left(&cache, &format!("rate:{id}")) + written[id as usize].elapsed();
        assert!(
            left > Duration::from_secs(59) && left <= Duration::from_millis(70_100),
            "{}: rate:{id} has {left:?}",
            b.name
        );
        let extra = left.as_secs_f64() - 60.0;
        per_second[extra.clamp(0.0, 10.0) as usize] += 1;
    }
    for (second, &n) in per_second[1..9].iter().enumerate() {
        assert!(
            (700..1300).contains(&n),
            "{}: {n} keys expire in second {} of the jitter: {per_second:?}",
            b.name,
            second + 1
        );
    }
    // Without jitter, one loop's keys expire within the loop's own time of each other.
    for id in 0..100u32 {
        Cacheable::new("plain:<<id>>")
            .ttl(60)
            .on(&cache)
            .run(ctx! { id }, || id);
    }
    let lefts: Vec<Duration> = (0..100)
        .map(|id| left(&cache, &format!("plain:{id}")))
        .collect();
    let spread = *lefts.iter().max().unwrap() - *lefts.iter().min().unwrap();
    assert!(spread < Duration::from_secs(5), "{}: {spread:?}", b.name);
}

/// `Config::jitter` for a builder that sets none and for `get_or_set`; a call's own
/// `jitter(0)` turns it off.
fn the_config_default_applies_where_a_call_sets_none(b: &Backend) {
    let cache = Cache::new(
        b.config()
            .prefix("jitterdefault")
            .jitter(Duration::from_secs(20)),
    )
    .unwrap();
    let mut lefts = Vec::new();
    for id in 0..200u32 {
        Cacheable::new("d:<<id>>")
            .ttl(10)
            .on(&cache)
            .run(ctx! { id }, || id);
        lefts.push(left(&cache, &format!("d:{id}")));
    }
    assert!(
        lefts.iter().any(|l| *l > Duration::from_secs(20)),
        "{}: {lefts:?}",
        b.name
    );
    assert!(
        lefts.iter().all(|l| *l <= Duration::from_secs(30)),
        "{}",
        b.name
    );
    let mut manual = Vec::new();
    for id in 0..200u32 {
        let key = format!("m:{id}");
        cache.get_or_set(&key, || id, 10).unwrap();
        manual.push(left(&cache, &key));
    }
    assert!(
        manual.iter().any(|l| *l > Duration::from_secs(20)),
        "{}",
        b.name
    );
    for id in 0..50u32 {
        Cacheable::new("off:<<id>>")
            .ttl(10)
            .jitter(0)
            .on(&cache)
            .run(ctx! { id }, || id);
        assert!(left(&cache, &format!("off:{id}")) <= Duration::from_secs(10));
    }
}

cache_fn! {
    #[cache(key = "fx:<<code>>", ttl = 60, jitter = 10, cache = cache)]
    fn fx(cache: &Cache, code: &str) -> u32 {
        let _ = (cache, code);
        1_530
    }
}

/// The `cache_fn!` option.
#[test]
fn cache_fn_takes_a_jitter() {
    let cache = Cache::new(cacheable::Config::memory()).unwrap();
    let codes: Vec<String> = (0..200).map(|i| format!("C{i}")).collect();
    let lefts: Vec<Duration> = codes
        .iter()
        .map(|code| {
            assert_eq!(fx(&cache, code), 1_530);
            left(&cache, &format!("fx:{code}"))
        })
        .collect();
    assert!(lefts.iter().all(|l| *l <= Duration::from_secs(70)));
    assert!(
        lefts.iter().any(|l| *l > Duration::from_secs(62)),
        "{lefts:?}"
    );
}
