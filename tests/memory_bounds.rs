//! The in-process maps stay bounded however many distinct keys are touched: flights end
//! with their computations, the log throttles hold at most 1024 (kind, template) pairs, the
//! lease keeper lets go of every settled lease, the near cache holds its bound, and the
//! embedded store's markers (leases, failure markers) leave with their TTL. The 1,000,000-key
//! run, with resident memory, is `cargo run --release --example memory_bounds`.

mod support;

use cacheable::{ctx, Cache, Cacheable, Config};
use std::time::{Duration, Instant};

fn touch(cache: &Cache, id: u64) {
    let get = Cacheable::new("user:<<id>>:profile").ttl(600).on(cache);
    match id % 100 {
        1 => {
            let out: Result<String, &str> = get.try_run(ctx! { id }, || Err("source down"));
            assert!(out.is_err());
        }
        2 => {
            let v: f64 = Cacheable::new("score:<<id>>")
                .on(cache)
                .run(ctx! { id }, || f64::NAN);
            assert!(v.is_nan());
        }
        _ => assert_eq!(
            get.run(ctx! { id }, || format!("profile {id}")),
            format!("profile {id}")
        ),
    }
}

fn touch_all(cache: &Cache, keys: u64) {
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                let mut id = t;
                while id < keys {
                    touch(cache, id);
                    id += 4;
                }
            });
        }
    });
}

fn size(cache: &Cache, map: &str) -> u64 {
    cacheable::__private::internal_sizes(cache)
        .into_iter()
        .find(|(m, _)| *m == map)
        .unwrap_or_else(|| panic!("no map {map}"))
        .1
}

/// Waits (a liveness bound, not a timing claim) for the lease keeper to let go.
fn keeper_settles(cache: &Cache) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while size(cache, "lease keeper (all caches)") > 0 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            cacheable::__private::internal_sizes(cache)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_embedded_stores_maps_stay_bounded_over_many_distinct_keys() {
    let cache = Cache::new(Config::from_url("memory://?max_entries=1000").unwrap()).unwrap();
    touch_all(&cache, 100_000);
    let stats = cache.stats();
    assert_eq!(stats.misses, 100_000, "{stats:?}");
    assert_eq!(stats.unstorable, 1000, "{stats:?}");
    assert_eq!(size(&cache, "flights"), 0);
    assert!(size(&cache, "fault log throttle") <= 1024);
    assert!(size(&cache, "rare log throttle") <= 1024);
    // 1000 failed computations left markers for a second each: swept as new ones come.
    let markers = size(&cache, "embedded store markers");
    assert!(markers < 1000, "{markers} markers left of 1000 failures");
    keeper_settles(&cache);
}

#[cfg(feature = "redis")]
#[test]
fn the_near_cache_and_flights_stay_bounded_over_many_distinct_keys() {
    let server = support::RedisServer::start();
    let cache = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("mb")
            .near_cache(500),
    )
    .unwrap();
    touch_all(&cache, 20_000);
    // Hits on a few keys, read again and again, so the near cache holds some.
    for _ in 0..5 {
        touch_all(&cache, 300);
    }
    let stats = cache.stats();
    assert!(stats.near_hits > 0, "{stats:?}");
    assert!(size(&cache, "near cache") <= 500);
    assert_eq!(size(&cache, "flights"), 0);
    assert!(size(&cache, "rare log throttle") <= 1024);
    keeper_settles(&cache);
}

/// Early refresh keeps each key template's computation time: 50,000 distinct templates made
/// at run time (`Template::parse` + `with_template`) grew resident memory by 53.7 MB, the map
/// never shrinking. It holds at most 4,096 templates now.
#[test]
fn early_refresh_timings_stay_bounded_over_many_runtime_templates() {
    let cache = Cache::new(Config::memory().early_refresh(1.0)).unwrap();
    for i in 0..10_000u32 {
        let template =
            std::sync::Arc::new(cacheable::Template::parse(&format!("report:{i}:<<id>>")).unwrap());
        Cacheable::with_template(template)
            .on(&cache)
            .run(ctx! { id = 1 }, || i);
    }
    let timings = size(&cache, "early refresh timings");
    assert!(
        timings > 0 && timings <= 4096,
        "{timings} templates remembered"
    );
}
