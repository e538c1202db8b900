//! Freshness under load, on every store: the embedded one, one Redis server and
//! a Redis Cluster (3 primaries, 3 replicas), each private to this test binary.
//!
//! Tags: keys recorded under a rendered tag and deleted by it; tag values escaped like key
//! values; tag sets under the prefix, with a TTL, pruned of expired entries; an
//! invalidation by tag during a computation (from another cache, as another process would)
//! keeps the value out.
//!
//! Stale-if-error: a failed computation answered by the value past its TTL, within the
//! window only, never after an invalidation; values stay plain JSON with the window in
//! their `PTTL`.
//!
//! Early refresh: a hot key read continuously never expires (one miss, then refreshes);
//! during a refresh other callers read the current value without waiting, and an
//! invalidation during it keeps the refreshed value out.
//!
//! Stale-while-revalidate: past the TTL, one caller refreshes while the others get the
//! stale value at once; the window ends with its length and with an invalidation.

mod support;

use cacheable::{ctx, Cache, Cacheable, Invalidate, KeyTtl};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::{suite, Backend};

suite![
    tags_delete_their_keys_and_only_theirs,
    a_star_in_a_tag_value_matches_only_itself,
    a_key_with_two_tags_goes_with_either,
    tag_sets_live_under_the_prefix_with_a_ttl_and_are_pruned,
    a_tag_invalidation_during_a_computation_keeps_its_value_out,
    a_tag_that_does_not_render_computes_without_caching,
    async_tags,
    stale_if_error_answers_a_failed_computation,
    stale_if_error_ends_with_its_window_and_with_invalidations,
    early_refresh_keeps_a_hot_key_from_expiring,
    an_early_refresh_lets_others_read_and_yields_to_invalidations,
    stale_while_revalidate_answers_at_once_while_one_caller_refreshes,
    config_early_refresh_is_the_default_and_a_builder_overrides_it,
];

support::suite_tests! {
    memory = memory(Without),
    redis = redis(Without),
    cluster = cluster(Without),
}

/// `cmdstat_<name>` calls so far on a server.
#[cfg(feature = "redis")]
fn command_calls(server: &support::RedisServer, name: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.client())
        .unwrap();
    let prefix = format!("cmdstat_{name}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// While one caller refreshes a key early, the other callers of the process read the
/// current value without asking the store for the refresh lock again: one `SET NX` per
/// refresh and process, not one per hit (which put a round trip on most hits near the
/// expiry of a hot key).
#[cfg(feature = "redis")]
#[test]
fn a_process_asks_for_a_refresh_lock_once_per_refresh() {
    let server = support::RedisServer::start();
    let config = cacheable::Config::from_url(&server.url()).unwrap();
    let cache = Cache::new(config.prefix("claim")).unwrap();
    let computed = AtomicUsize::new(0);
    let read = |slow: bool| {
        Cacheable::new("q:<<id>>")
            .ttl(10)
            .early_refresh(1e9)
            .on(&cache)
            .run(ctx! { id = 1 }, || {
                let n = computed.fetch_add(1, Ordering::SeqCst) + 1;
                std::thread::sleep(Duration::from_millis(if slow { 500 } else { 20 }));
                n
            })
    };
    assert_eq!(read(false), 1, "a miss computes; δ is learnt");
    std::thread::sleep(Duration::from_millis(150));
    let before = command_calls(&server, "set");
    let hits = std::thread::scope(|s| {
        let refresher = s.spawn(|| read(true));
        while computed.load(Ordering::SeqCst) < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let readers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..40)
                        .map(|_| {
                            let v = read(false);
                            std::thread::sleep(Duration::from_millis(5));
                            v
                        })
                        .filter(|v| *v == 1)
                        .count()
                })
            })
            .collect();
        let hits: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert_eq!(refresher.join().unwrap(), 2);
        hits
    });
    let locks = command_calls(&server, "set") - before;
    assert!(
        hits >= 8,
        "the readers read the current value meanwhile: {hits}"
    );
    // The refresher's lock, and at most a lock per refresh that came after it (the readers
    // go on reading once the refreshed value is in).
    assert!(
        locks <= cache.stats().early_refreshes + 1,
        "{locks} SET commands for {} early refreshes and {hits} hits during the first",
        cache.stats().early_refreshes
    );
}

fn orders(cache: &Cache, user_id: &str, page: u32, computed: &AtomicUsize) -> String {
    Cacheable::new("orders:<<user_id>>:<<page>>")
        .tags(["user:<<user_id>>"])
        .ttl(60)
        .on(cache)
        .run(ctx! { user_id, page }, || {
            computed.fetch_add(1, Ordering::SeqCst);
            format!("{user_id}/{page}")
        })
}

fn tags_delete_their_keys_and_only_theirs(b: &Backend) {
    let cache = b.cache("tags");
    let computed = AtomicUsize::new(0);
    for page in 0..3 {
        orders(&cache, "ada", page, &computed);
        orders(&cache, "bob", page, &computed);
    }
    // An untagged key matching the same pattern stays: tags follow what was tagged.
    cache.set("orders:ada:summary", "kept", 60).unwrap();
    assert_eq!(computed.load(Ordering::SeqCst), 6);
    assert_eq!(cache.count("orders:ada:*").unwrap(), 4);
    let deleted = Invalidate::tags(["user:<<user_id>>"])
        .on(&cache)
        .now(ctx! { user_id = "ada" })
        .unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(
        cache.keys("orders:ada:*").unwrap(),
        ["orders:ada:summary"],
        "the untagged key stays"
    );
    assert_eq!(
        cache.count("orders:bob:*").unwrap(),
        3,
        "other tags' keys stay"
    );
    // The next read computes again; the other user's are still hits.
    orders(&cache, "ada", 0, &computed);
    orders(&cache, "bob", 0, &computed);
    assert_eq!(computed.load(Ordering::SeqCst), 7);
    // Invalidated again: only the key tagged since.
    let again = Invalidate::tags(["user:<<user_id>>"])
        .on(&cache)
        .now(ctx! { user_id = "ada" })
        .unwrap();
    assert_eq!(again, 1);
    assert_eq!(
        Invalidate::tags(["user:<<user_id>>"])
            .on(&cache)
            .now(ctx! { user_id = "ada" })
            .unwrap(),
        0
    );
    let stats = cache.stats();
    assert!(stats.invalidated >= 4, "{stats:?}");
}

fn a_star_in_a_tag_value_matches_only_itself(b: &Backend) {
    let cache = b.cache("tagesc");
    let computed = AtomicUsize::new(0);
    for user in ["*", "a", "ab", "[a]", "?"] {
        orders(&cache, user, 1, &computed);
    }
    assert_eq!(cache.count("orders:*").unwrap(), 5);
    for (user, left) in [("*", 4), ("?", 3), ("[a]", 2)] {
        let n = Invalidate::tags(["user:<<user_id>>"])
            .on(&cache)
            .now(ctx! { user_id = user })
            .unwrap();
        assert_eq!(n, 1, "tag user:{user}");
        assert_eq!(cache.count("orders:*").unwrap(), left, "after user:{user}");
    }
    let mut keys = cache.keys("orders:*").unwrap();
    keys.sort();
    assert_eq!(keys, ["orders:a:1", "orders:ab:1"]);
}

fn a_key_with_two_tags_goes_with_either(b: &Backend) {
    let cache = b.cache("tag2");
    let load = |user_id: u64, product: &str| {
        Cacheable::new("quote:<<user_id>>:<<product>>")
            .tags(["user:<<user_id>>", "product:<<product>>"])
            .on(&cache)
            .run(ctx! { user_id, product }, || format!("{user_id}-{product}"))
    };
    load(1, "loan");
    load(2, "loan");
    load(1, "card");
    assert_eq!(
        Invalidate::tags(["product:<<product>>"])
            .on(&cache)
            .now(ctx! { product = "loan" })
            .unwrap(),
        2
    );
    assert_eq!(cache.keys("quote:*").unwrap(), ["quote:1:card"]);
    load(1, "loan");
    assert_eq!(
        Invalidate::tags(["user:<<user_id>>"])
            .on(&cache)
            .now(ctx! { user_id = 1 })
            .unwrap(),
        2
    );
    assert_eq!(cache.count("quote:*").unwrap(), 0);
}

fn tag_sets_live_under_the_prefix_with_a_ttl_and_are_pruned(b: &Backend) {
    // An entry lives lease_wait + 12 lease times + the TTL: 0.1 + 1.2 + 0.3 s here.
    let cache = Cache::new(
        b.config()
            .prefix("tagttl")
            .lease_ttl(Duration::from_millis(100))
            .lease_wait(Duration::from_millis(100)),
    )
    .unwrap();
    let load = |id: u64| {
        Cacheable::new("item:<<shelf>>:<<id>>")
            .tags(["shelf:<<shelf>>"])
            .ttl(Duration::from_millis(300))
            .on(&cache)
            .run(ctx! { id, shelf = 9 }, || id)
    };
    for id in 0..5 {
        load(id);
    }
    let Some(zcard) = &b.zcard else {
        // The embedded store keeps tag sets beside its values (its unit tests prune them).
        return;
    };
    let set = cache.full_key("[tag]:shelf:9");
    assert_eq!(zcard(&set), 5);
    match cache.ttl("[tag]:shelf:9").unwrap() {
        KeyTtl::Expires(left) => assert!(
            left <= Duration::from_millis(1600) && left > Duration::from_millis(1000),
            "{left:?}"
        ),
        other => panic!("the tag set has no TTL: {other:?}"),
    }
    // Every key the crate wrote has a TTL, the tag set included.
    for key in cache.keys("*").unwrap() {
        assert!(
            matches!(cache.ttl(&key).unwrap(), KeyTtl::Expires(_)),
            "{key} has no TTL"
        );
    }
    // Past the entries' life the values are gone, and the set with them (its TTL covers its
    // longest entry, no more); an addition starts it again. (Entries of a set that lives on
    // are pruned a minute, the clock slack, past their expiry: `tests/trust.rs`.)
    std::thread::sleep(Duration::from_millis(1700));
    assert_eq!(cache.count("item:*").unwrap(), 0, "the values expired");
    load(100);
    assert_eq!(zcard(&set), 1);
    // And the set goes with its last entry.
    std::thread::sleep(Duration::from_millis(1700));
    assert_eq!(zcard(&set), 0);
    assert_eq!(cache.ttl("[tag]:shelf:9").unwrap(), KeyTtl::Missing);
}

fn a_tag_invalidation_during_a_computation_keeps_its_value_out(b: &Backend) {
    let cache = b.cache("tagcas");
    let other = b.peer(&cache);
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            Cacheable::new("balance:<<id>>")
                .tags(["user:<<id>>"])
                .on(&cache)
                .run(ctx! { id = 1 }, || {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(300));
                    100
                })
        });
        support::wait_started(&started);
        // From another cache: no shared flight, only the store's lease and tag set.
        let n = Invalidate::tags(["user:<<id>>"])
            .on(&other)
            .now(ctx! { id = 1 })
            .unwrap();
        assert_eq!(n, 1, "the lease was found under the tag and deleted");
        assert_eq!(reader.join().unwrap(), 100, "the caller gets its value");
    });
    assert_eq!(
        cache.get::<i32>("balance:1").unwrap(),
        None,
        "the store does not"
    );
}

fn a_tag_that_does_not_render_computes_without_caching(b: &Backend) {
    let cache = b.cache("tagbad");
    let computed = AtomicUsize::new(0);
    for _ in 0..2 {
        let v = Cacheable::new("thing:<<id>>")
            .tags(["owner:<<owner>>"])
            .on(&cache)
            .run(ctx! { id = 1 }, || computed.fetch_add(1, Ordering::SeqCst));
        assert_eq!(v, computed.load(Ordering::SeqCst) - 1);
    }
    assert_eq!(computed.load(Ordering::SeqCst), 2, "never cached");
    assert_eq!(cache.count("*").unwrap(), 0);
    assert!(cache.stats().errors >= 2);
    let err = Invalidate::tags(["owner:<<owner>>"])
        .on(&cache)
        .now(ctx! { id = 1 })
        .unwrap_err();
    assert_eq!(err.kind(), cacheable::ErrorKind::Template, "{err}");
}

fn async_tags(b: &Backend) {
    let cache = b.cache("tagasync");
    let rt = support::runtime(2);
    rt.block_on(async {
        for id in 0..10u64 {
            let v = Cacheable::new("doc:<<team>>:<<id>>")
                .tags(["team:<<team>>"])
                .on(&cache)
                .run_async(ctx! { id, team = id % 2 }, || async move { id * 10 })
                .await;
            assert_eq!(v, id * 10);
        }
        let n = Invalidate::tags(["team:<<team>>"])
            .on(&cache)
            .now_async(ctx! { team = 0 })
            .await
            .unwrap();
        assert_eq!(n, 5);
        let mut left = cache.keys_async("doc:*").await.unwrap();
        left.sort();
        assert_eq!(
            left,
            ["doc:1:1", "doc:1:3", "doc:1:5", "doc:1:7", "doc:1:9"]
        );
    });
}

fn quote(
    cache: &Cache,
    window: Option<Duration>,
    out: Result<u32, &'static str>,
) -> Result<u32, &'static str> {
    let mut builder = Cacheable::new("quote:<<id>>")
        .ttl(Duration::from_millis(300))
        .on(cache);
    if let Some(window) = window {
        builder = builder.stale_if_error(window);
    }
    builder.try_run(ctx! { id = 1 }, || out)
}

fn stale_if_error_answers_a_failed_computation(b: &Backend) {
    let cache = b.cache("sie");
    let window = Some(Duration::from_secs(5));
    assert_eq!(quote(&cache, window, Ok(1)), Ok(1));
    match cache.ttl("quote:1").unwrap() {
        KeyTtl::Expires(left) => assert!(
            left > Duration::from_millis(4000) && left <= Duration::from_millis(5300),
            "stored for TTL + window: {left:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        cache.get::<u32>("quote:1").unwrap(),
        Some(1),
        "plain JSON at the key"
    );
    // Fresh: a hit, the closure's error is never seen.
    assert_eq!(quote(&cache, window, Err("down")), Ok(1));
    assert_eq!(cache.stats().stale_if_error, 0);
    std::thread::sleep(Duration::from_millis(400));
    // Past the TTL: a miss; the computation fails and the stale value answers.
    assert_eq!(quote(&cache, window, Err("down")), Ok(1));
    assert_eq!(cache.stats().stale_if_error, 1);
    assert_eq!(
        cache.get::<u32>("quote:1").unwrap(),
        Some(1),
        "the stale value is back in the store for the rest of its window"
    );
    assert_eq!(quote(&cache, window, Err("down")), Ok(1));
    assert_eq!(cache.stats().stale_if_error, 2);
    // A computation that succeeds replaces it, fresh for a full TTL.
    assert_eq!(quote(&cache, window, Ok(2)), Ok(2));
    assert_eq!(quote(&cache, window, Err("down")), Ok(2));
    assert_eq!(cache.stats().stale_if_error, 2, "that was a hit");
    // Async: the same.
    std::thread::sleep(Duration::from_millis(400));
    let rt = support::current_thread();
    let got = rt.block_on(
        Cacheable::new("quote:<<id>>")
            .ttl(Duration::from_millis(300))
            .stale_if_error(Duration::from_secs(5))
            .on(&cache)
            .try_run_async(ctx! { id = 1 }, || async { Err::<u32, _>("down") }),
    );
    assert_eq!(got, Ok(2));
    assert_eq!(cache.stats().stale_if_error, 3);
}

fn stale_if_error_ends_with_its_window_and_with_invalidations(b: &Backend) {
    let cache = b.cache("sie2");
    // Without the option, an error is an error.
    assert_eq!(quote(&cache, None, Ok(1)), Ok(1));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(quote(&cache, None, Err("down")), Err("down"));
    // Past TTL + window: gone.
    let window = Some(Duration::from_millis(200));
    assert_eq!(quote(&cache, window, Ok(1)), Ok(1));
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(quote(&cache, window, Err("down")), Err("down"));
    // An invalidation removes the stale value at once: an error after it is an error.
    let window = Some(Duration::from_secs(5));
    assert_eq!(quote(&cache, window, Ok(1)), Ok(1));
    std::thread::sleep(Duration::from_millis(400));
    Invalidate::new(["quote:<<id>>"])
        .on(&cache)
        .now(ctx! { id = 1 })
        .unwrap();
    assert_eq!(quote(&cache, window, Err("down")), Err("down"));
    assert_eq!(cache.stats().stale_if_error, 0);
    // And one that comes while the failing computation runs keeps the stale value from
    // coming back (from another cache, as another process would).
    assert_eq!(quote(&cache, window, Ok(1)), Ok(1));
    std::thread::sleep(Duration::from_millis(400));
    let other = b.peer(&cache);
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let failing = s.spawn(|| {
            Cacheable::new("quote:<<id>>")
                .ttl(Duration::from_millis(300))
                .stale_if_error(Duration::from_secs(5))
                .on(&cache)
                .try_run(ctx! { id = 1 }, || {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(300));
                    Err::<u32, _>("down")
                })
        });
        support::wait_started(&started);
        Invalidate::new(["quote:<<id>>"])
            .on(&other)
            .now(ctx! { id = 1 })
            .unwrap();
        // The caller began before the invalidation: it may get the stale value.
        assert_eq!(failing.join().unwrap(), Ok(1));
    });
    assert_eq!(
        cache.get::<u32>("quote:1").unwrap(),
        None,
        "the stale value did not come back after the invalidation"
    );
}

fn early_refresh_keeps_a_hot_key_from_expiring(b: &Backend) {
    let cache = b.cache("early");
    let computed = AtomicUsize::new(0);
    let read = || {
        Cacheable::new("hot:<<id>>")
            .ttl(Duration::from_millis(600))
            .early_refresh(10.0)
            .on(&cache)
            .run(ctx! { id = 1 }, || {
                std::thread::sleep(Duration::from_millis(30));
                computed.fetch_add(1, Ordering::SeqCst) + 1
            })
    };
    assert_eq!(read(), 1);
    let stop = AtomicBool::new(false);
    let highest = std::thread::scope(|s| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut highest = 0;
                    while !stop.load(Ordering::SeqCst) {
                        highest = highest.max(read());
                    }
                    highest
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(2500));
        stop.store(true, Ordering::SeqCst);
        readers
            .into_iter()
            .map(|r| r.join().unwrap())
            .max()
            .unwrap()
    });
    let stats = cache.stats();
    // 2.5 s of a 0.6 s TTL: at least 3 refreshes, and the key never expired under the
    // readers: the only miss was the first call.
    assert!(stats.early_refreshes >= 3, "{stats:?}");
    assert_eq!(
        stats.misses, 1,
        "the key expired under its readers: {stats:?}"
    );
    assert!(highest >= 4, "readers saw the refreshed values: {highest}");
    // A refresh drawn by a caller that read the value just before another refresh replaced
    // it computes but is not stored (the value changed): rare, never the rule.
    let computations = computed.load(Ordering::SeqCst) as u64;
    assert!(
        computations > stats.early_refreshes && computations <= 2 * (1 + stats.early_refreshes),
        "{computations} computations, {stats:?}"
    );
}

fn an_early_refresh_lets_others_read_and_yields_to_invalidations(b: &Backend) {
    let cache = b.cache("early2");
    let other = b.peer(&cache);
    // A β so large that every hit past the first 100 ms refreshes.
    let read = |v: u32, slow: Option<&AtomicBool>| {
        Cacheable::new("q:<<id>>")
            .ttl(10)
            .early_refresh(1e9)
            .on(&cache)
            .run(ctx! { id = 1 }, || {
                if let Some(started) = slow {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(400));
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
                v
            })
    };
    assert_eq!(read(1, None), 1, "a miss computes; δ is learnt");
    std::thread::sleep(Duration::from_millis(150));
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let refresher = s.spawn(|| read(2, Some(&started)));
        support::wait_started(&started);
        // Another caller draws a refresh too, finds the lock taken, and reads the current
        // value at once: its closure never runs.
        // Had it waited for the refresher, it would read the refreshed 2.
        assert_eq!(read(99, None), 1);
        assert_eq!(
            refresher.join().unwrap(),
            2,
            "the refresher answers its value"
        );
    });
    assert_eq!(cache.get::<u32>("q:1").unwrap(), Some(2), "and stores it");
    assert!(cache.stats().early_refreshes >= 1);
    // An invalidation (from another cache) during a refresh keeps its value out.
    std::thread::sleep(Duration::from_millis(150));
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let refresher = s.spawn(|| read(3, Some(&started)));
        support::wait_started(&started);
        Invalidate::new(["q:<<id>>"])
            .on(&other)
            .now(ctx! { id = 1 })
            .unwrap();
        assert_eq!(refresher.join().unwrap(), 3);
    });
    assert_eq!(
        cache.get::<u32>("q:1").unwrap(),
        None,
        "the refresh that raced the invalidation was not stored"
    );
    // Nor one that raced an invalidation followed by a new computation.
    assert_eq!(read(4, None), 4);
    std::thread::sleep(Duration::from_millis(150));
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let refresher = s.spawn(|| read(5, Some(&started)));
        support::wait_started(&started);
        Invalidate::new(["q:<<id>>"])
            .on(&other)
            .now(ctx! { id = 1 })
            .unwrap();
        // The same bytes written again after the invalidation, as a new computation would.
        other.set("q:1", &4, 10).unwrap();
        assert_eq!(refresher.join().unwrap(), 5);
    });
    assert_eq!(
        cache.get::<u32>("q:1").unwrap(),
        Some(4),
        "the value written after the invalidation stays"
    );
}

fn stale_while_revalidate_answers_at_once_while_one_caller_refreshes(b: &Backend) {
    let cache = b.cache("swr");
    let other = b.peer(&cache);
    let runs = AtomicUsize::new(0);
    let read = |v: u32, slow: Option<&AtomicBool>| {
        Cacheable::new("rate:<<id>>")
            .ttl(Duration::from_millis(300))
            .stale_while_revalidate(Duration::from_secs(2))
            .on(&cache)
            .run(ctx! { id = 1 }, || {
                runs.fetch_add(1, Ordering::SeqCst);
                if let Some(started) = slow {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(400));
                }
                v
            })
    };
    assert_eq!(read(1, None), 1);
    match cache.ttl("rate:1").unwrap() {
        KeyTtl::Expires(left) => assert!(left > Duration::from_millis(2000), "{left:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(read(9, None), 1, "fresh: a hit");
    std::thread::sleep(Duration::from_millis(400));
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let refresher = s.spawn(|| read(2, Some(&started)));
        support::wait_started(&started);
        // Had they waited for the refresher, they would read the refreshed 2.
        for _ in 0..5 {
            assert_eq!(read(99, None), 1, "the stale value, at once");
        }
        assert_eq!(
            refresher.join().unwrap(),
            2,
            "the refresher answers its value"
        );
    });
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "one refresh ran; the others waited on none"
    );
    let stats = cache.stats();
    assert!(stats.stale_while_revalidate >= 5, "{stats:?}");
    assert!(stats.early_refreshes >= 1, "{stats:?}");
    assert_eq!(read(99, None), 2, "the refreshed value is fresh");
    // An invalidation during a revalidation keeps its value out, and ends the window.
    std::thread::sleep(Duration::from_millis(400));
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let refresher = s.spawn(|| read(3, Some(&started)));
        support::wait_started(&started);
        Invalidate::new(["rate:<<id>>"])
            .on(&other)
            .now(ctx! { id = 1 })
            .unwrap();
        assert_eq!(refresher.join().unwrap(), 3);
    });
    assert_eq!(cache.get::<u32>("rate:1").unwrap(), None, "not stored");
    assert_eq!(read(4, None), 4, "a plain miss after the invalidation");
    // Past TTL + window: a plain miss too.
    std::thread::sleep(Duration::from_millis(2400));
    assert_eq!(read(5, None), 5);
}

fn config_early_refresh_is_the_default_and_a_builder_overrides_it(b: &Backend) {
    let cache = Cache::new(b.config().prefix("earlycfg").early_refresh(1e9)).unwrap();
    let read = |id: u32, beta: Option<f64>| {
        let mut builder = Cacheable::new("c:<<id>>").ttl(60).on(&cache);
        if let Some(beta) = beta {
            builder = builder.early_refresh(beta);
        }
        builder.run(ctx! { id }, || {
            std::thread::sleep(Duration::from_millis(20));
            id
        })
    };
    read(1, None);
    read(2, Some(0.0));
    std::thread::sleep(Duration::from_millis(50));
    read(1, None);
    assert_eq!(cache.stats().early_refreshes, 1, "the config's β refreshes");
    read(2, Some(0.0));
    assert_eq!(
        cache.stats().early_refreshes,
        1,
        "β = 0 on the builder turns it off"
    );
}
