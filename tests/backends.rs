//! One body of integration tests, run on every store: the embedded one, one Redis server,
//! a Redis Cluster of 3 primaries and 3 replicas, and a primary with one replica behind
//! three Sentinels, each private to this test binary.
//!
//! `suite!` lists the cases once; each backend's test runs all of them, in order, on its
//! store (one server or cluster for the whole suite: a cluster takes seconds and six
//! processes to start), each case under a prefix of its own. A failing case names itself
//! and the backend.

mod support;

use cacheable::{ctx, Cache, Cacheable, Invalidate, KeyTtl};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{park_on, suite, Backend};

fn runtime() -> tokio::runtime::Runtime {
    support::runtime(2)
}

suite![
    get_set_delete,
    null_values_are_served,
    ttl,
    pattern_delete_keys_and_count,
    pattern_metacharacters_in_values_match_themselves,
    hash_tagged_templates,
    get_or_set,
    run_and_run_async,
    try_run_does_not_cache_errors,
    invalidate,
    leases_across_caches,
    an_invalidation_during_a_computation_keeps_its_value_out,
    stampede,
    invalidation_race,
    async_calls_work_from_any_executor,
];

support::suite_tests! {
    memory = memory(Without),
    redis = redis(Without),
    cluster = cluster(Without),
}

#[cfg(feature = "sentinel")]
#[test]
fn sentinel() {
    let setup = support::on_sentinel(support::Near::Without, run_suite);
    // The suite's keys went to the primary (and reached its replica), not elsewhere.
    let primary = setup.primary_port().expect("the Sentinels name a primary");
    let on_primary = setup.node_cli(primary, &["DBSIZE"]);
    assert!(
        on_primary.trim().parse::<u64>().unwrap() > 0,
        "the primary holds the suite's keys: {on_primary}"
    );
}

fn get_set_delete(b: &Backend) {
    let cache = b.cache("gsd");
    assert_eq!(cache.get::<String>("user:1:profile").unwrap(), None);
    cache.set("user:1:profile", "Ada", 60).unwrap();
    assert_eq!(
        cache.get::<String>("user:1:profile").unwrap().as_deref(),
        Some("Ada")
    );
    assert!(cache.delete("user:1:profile").unwrap());
    assert!(!cache.delete("user:1:profile").unwrap());
    assert_eq!(cache.get::<String>("user:1:profile").unwrap(), None);
    runtime().block_on(async {
        cache
            .set_async("user:2:profile", &vec![1, 2], 60)
            .await
            .unwrap();
        assert_eq!(
            cache.get_async::<Vec<i32>>("user:2:profile").await.unwrap(),
            Some(vec![1, 2])
        );
        assert!(cache.delete_async("user:2:profile").await.unwrap());
        assert_eq!(
            cache.get_async::<Vec<i32>>("user:2:profile").await.unwrap(),
            None
        );
    });
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.sets),
        (2, 3, 2),
        "{stats:?}"
    );
}

fn null_values_are_served(b: &Backend) {
    let cache = b.cache("null");
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        let v: Option<i32> = Cacheable::new("maybe:<<id>>")
            .on(&cache)
            .run(ctx! { id = 1 }, || {
                calls.fetch_add(1, Ordering::SeqCst);
                None
            });
        assert_eq!(v, None);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a cached None is a hit");
}

fn ttl(b: &Backend) {
    let cache = b.cache("ttl");
    assert_eq!(cache.ttl("nothing").unwrap(), KeyTtl::Missing);
    cache.set("long", &1, 60).unwrap();
    match cache.ttl("long").unwrap() {
        KeyTtl::Expires(left) => assert!(
            left <= Duration::from_secs(60) && left > Duration::from_secs(55),
            "{left:?}"
        ),
        other => panic!("{other:?}"),
    }
    cache.set("short", &1, Duration::from_millis(200)).unwrap();
    assert!(cache.get::<i32>("short").unwrap().is_some());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cache.get::<i32>("short").unwrap(), None);
    assert_eq!(cache.ttl("short").unwrap(), KeyTtl::Missing);
    runtime().block_on(async {
        assert!(matches!(
            cache.ttl_async("long").await.unwrap(),
            KeyTtl::Expires(_)
        ));
    });
}

fn pattern_delete_keys_and_count(b: &Backend) {
    let cache = b.cache("pat");
    let other = b.cache("pat:other");
    for i in 0..300 {
        cache.set(&format!("user:{i}:profile"), &i, 60).unwrap();
        cache.set(&format!("user:{i}:wallet"), &i, 60).unwrap();
        other.set(&format!("user:{i}:wallet"), &i, 60).unwrap();
    }
    cache.set("order:1", &1, 60).unwrap();
    assert_eq!(cache.count("user:*").unwrap(), 600);
    let mut keys = cache.keys("user:7:*").unwrap();
    keys.sort();
    assert_eq!(keys, ["user:7:profile", "user:7:wallet"]);
    assert_eq!(cache.delete_pattern("user:*:wallet").unwrap(), 300);
    assert_eq!(cache.count("user:*:wallet").unwrap(), 0);
    assert_eq!(cache.count("user:*").unwrap(), 300);
    assert_eq!(cache.count("order:*").unwrap(), 1);
    assert_eq!(
        other.count("user:*").unwrap(),
        300,
        "another prefix is untouched"
    );
    runtime().block_on(async {
        assert_eq!(cache.count_async("user:*").await.unwrap(), 300);
        assert_eq!(cache.keys_async("user:1?:profile").await.unwrap().len(), 10);
        assert_eq!(cache.delete_pattern_async("user:*").await.unwrap(), 300);
        assert_eq!(cache.count_async("*").await.unwrap(), 1);
    });
    assert_eq!(cache.delete_pattern("nothing:*").unwrap(), 0);
    assert_eq!(cache.stats().invalidated, 600);
}

fn pattern_metacharacters_in_values_match_themselves(b: &Backend) {
    let cache = b.cache("meta");
    let save = |name: &str| {
        Cacheable::new("file:<<name>>:meta")
            .on(&cache)
            .run(ctx! { name }, || name.len())
    };
    for name in ["a*", "ab", "a?", "a[b]", "a{b}", "a:b"] {
        save(name);
    }
    assert_eq!(cache.count("file:*").unwrap(), 6);
    let deleted = Invalidate::new(["file:<<name>>:*"])
        .on(&cache)
        .now(ctx! { name = "a*" })
        .unwrap();
    assert_eq!(deleted, 1, "`*` in a value matches itself only");
    assert_eq!(cache.count("file:*").unwrap(), 5);
}

fn hash_tagged_templates(b: &Backend) {
    let cache = b.cache("tags");
    for user_id in [1, 2] {
        for part in ["summary", "history", "limits"] {
            let v = Cacheable::new("wallets:{<<user_id>>}:<<part>>")
                .on(&cache)
                .run(ctx! { user_id, part }, || format!("{user_id}/{part}"));
            assert_eq!(v, format!("{user_id}/{part}"));
        }
    }
    let mut keys = cache.keys("wallets:{1}:*").unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            "wallets:{1}:history",
            "wallets:{1}:limits",
            "wallets:{1}:summary"
        ]
    );
    let deleted = Invalidate::new(["wallets:{<<user_id>>}:*"])
        .on(&cache)
        .now(ctx! { user_id = 1 })
        .unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(cache.count("wallets:*").unwrap(), 3);
    // `{` and `}` in a value are encoded: they never make a tag of their own.
    let v = Cacheable::new("wallets:{<<user_id>>}:summary")
        .on(&cache)
        .run(ctx! { user_id = "}{x" }, || 5);
    assert_eq!(v, 5);
    assert_eq!(
        cache.keys("wallets:{%7D%7Bx}:*").unwrap(),
        ["wallets:{%7D%7Bx}:summary"]
    );
}

fn get_or_set(b: &Backend) {
    let cache = b.cache("gos");
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        let v: u32 = cache
            .get_or_set(
                "report:1",
                || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    7
                },
                60,
            )
            .unwrap();
        assert_eq!(v, 7);
    }
    runtime().block_on(async {
        for _ in 0..3 {
            let v: u32 = cache
                .get_or_set_async(
                    "report:2",
                    || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        8
                    },
                    60,
                )
                .await
                .unwrap();
            assert_eq!(v, 8);
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

fn run_and_run_async(b: &Backend) {
    let cache = b.cache("run");
    let calls = AtomicUsize::new(0);
    let load = |id: u32| {
        Cacheable::new("product:<<id>>")
            .ttl(60)
            .on(&cache)
            .run(ctx! { id }, || {
                calls.fetch_add(1, Ordering::SeqCst);
                id * 10
            })
    };
    for id in 0..50 {
        assert_eq!(load(id), id * 10);
        assert_eq!(load(id), id * 10);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 50);
    runtime().block_on(async {
        for id in 0..50u32 {
            for _ in 0..2 {
                let v = Cacheable::new("product:<<id>>")
                    .on(&cache)
                    .run_async(ctx! { id }, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        0
                    })
                    .await;
                assert_eq!(v, id * 10, "the value the sync path cached");
            }
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 50);
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.errors),
        (150, 50, 0),
        "{stats:?}"
    );
}

fn try_run_does_not_cache_errors(b: &Backend) {
    let cache = b.cache("try");
    let calls = AtomicUsize::new(0);
    let attempt = |fail: bool| {
        Cacheable::new("quote:<<id>>")
            .on(&cache)
            .try_run(ctx! { id = 1 }, || {
                calls.fetch_add(1, Ordering::SeqCst);
                if fail {
                    Err("down")
                } else {
                    Ok(5)
                }
            })
    };
    assert_eq!(attempt(true), Err("down"));
    assert_eq!(attempt(false), Ok(5));
    assert_eq!(attempt(true), Ok(5), "cached after the success");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

fn invalidate(b: &Backend) {
    let cache = b.cache("inv");
    let profile = |user_id: u32| {
        Cacheable::new("user:<<user_id>>:profile")
            .on(&cache)
            .run(ctx! { user_id }, || user_id)
    };
    let wallet = |user_id: u32, currency: &str| {
        Cacheable::new("wallets:<<user_id>>:<<currency>>")
            .on(&cache)
            .run(ctx! { user_id, currency }, || user_id)
    };
    for user_id in 1..=3 {
        profile(user_id);
        wallet(user_id, "NGN");
        wallet(user_id, "USD");
    }
    assert_eq!(cache.count("*").unwrap(), 9);
    let updated = Invalidate::new(["user:<<user_id>>:profile", "wallets:<<user_id>>:*"])
        .on(&cache)
        .try_run(ctx! { user_id = 2 }, || Ok::<_, String>("updated"));
    assert_eq!(updated, Ok("updated"));
    let mut left = cache.keys("*").unwrap();
    left.sort();
    assert_eq!(
        left,
        [
            "user:1:profile",
            "user:3:profile",
            "wallets:1:NGN",
            "wallets:1:USD",
            "wallets:3:NGN",
            "wallets:3:USD"
        ]
    );
    // A failed mutation invalidates nothing.
    let failed = Invalidate::new(["wallets:<<user_id>>:*"])
        .on(&cache)
        .try_run(ctx! { user_id = 1 }, || Err::<(), _>("refused"));
    assert_eq!(failed, Err("refused"));
    assert_eq!(cache.count("wallets:1:*").unwrap(), 2);
    runtime().block_on(async {
        let deleted = Invalidate::new(["wallets:<<user_id>>:*", "user:<<user_id>>:profile"])
            .on(&cache)
            .now_async(ctx! { user_id = 1 })
            .await
            .unwrap();
        assert_eq!(deleted, 3);
    });
    assert_eq!(cache.count("*").unwrap(), 3);
}

/// Two caches on one store (two processes): one computation for both, through the lease.
fn leases_across_caches(b: &Backend) {
    let cache = b.cache("lease");
    let peer = b.peer(&cache);
    let calls = AtomicUsize::new(0);
    let started = AtomicBool::new(false);
    let compute = |cache: &Cache| {
        Cacheable::new("slow:<<id>>")
            .on(cache)
            .run(ctx! { id = 1 }, || {
                calls.fetch_add(1, Ordering::SeqCst);
                started.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300));
                "value".to_string()
            })
    };
    std::thread::scope(|s| {
        let first = s.spawn(|| compute(&cache));
        support::wait_started(&started);
        let second = s.spawn(|| compute(&peer));
        assert_eq!(first.join().unwrap(), "value");
        assert_eq!(second.join().unwrap(), "value");
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the second caller waited");
}

/// The lease holder's write is a compare-and-set: an invalidation while it computes keeps
/// its (possibly stale) value out of the store.
fn an_invalidation_during_a_computation_keeps_its_value_out(b: &Backend) {
    let cache = b.cache("cas");
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            Cacheable::new("balance:<<id>>")
                .on(&cache)
                .run(ctx! { id = 1 }, || {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    100
                })
        });
        support::wait_started(&started);
        Invalidate::new(["balance:<<id>>"])
            .on(&cache)
            .now(ctx! { id = 1 })
            .unwrap();
        assert_eq!(reader.join().unwrap(), 100, "the caller gets its value");
    });
    assert_eq!(
        cache.get::<i32>("balance:1").unwrap(),
        None,
        "the store does not"
    );
}

/// 64 async tasks on one cold key, then 16 threads on another: one computation each.
fn stampede(b: &Backend) {
    let cache = Arc::new(b.cache("stampede"));
    let calls = Arc::new(AtomicUsize::new(0));
    let rt = runtime();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            rt.spawn(async move {
                Cacheable::new("report:<<day>>")
                    .on(&cache)
                    .run_async(ctx! { day = 24 }, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        vec![1, 2, 3]
                    })
                    .await
            })
        })
        .collect();
    rt.block_on(async {
        for t in tasks {
            assert_eq!(t.await.unwrap(), [1, 2, 3]);
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1, "async callers");
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                let v = Cacheable::new("report:<<day>>")
                    .on(&cache)
                    .run(ctx! { day = 25 }, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        vec![4]
                    });
                assert_eq!(v, [4]);
            });
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2, "sync callers");
}

/// Writers update a source and invalidate while readers read through: after each round, a
/// read returns the current source.
fn invalidation_race(b: &Backend) {
    let cache = Arc::new(b.cache("race"));
    let mut race = support::failover::Race::new(&cache, 7);
    let rounds = 300;
    let mut stale = 0;
    for _ in 0..rounds {
        stale += u32::from(
            race.round()
                .expect("the deletion and the invalidation went through"),
        );
    }
    assert_eq!(stale, 0, "stale values in {rounds} rounds");
}

/// The first async call of a cache (which connects) and the next ones, from runtimes
/// without IO or time drivers and from an executor that is not tokio.
fn async_calls_work_from_any_executor(b: &Backend) {
    let twice = |cache: Cache, id: u32| async move {
        let call = || {
            Cacheable::new("exec:<<id>>")
                .on(&cache)
                .run_async(ctx! { id }, || async move { id * 2 })
        };
        (call().await, call().await)
    };
    let first = b.cache("exec1");
    assert_eq!(
        park_on(twice(first.clone(), 9)),
        (18, 18),
        "first call, not tokio"
    );
    let cache = b.cache("exec");
    let bare = support::bare_current_thread();
    assert_eq!(
        bare.block_on(twice(cache.clone(), 1)),
        (2, 2),
        "first call, bare tokio"
    );
    let no_io = support::current_thread_without_io();
    assert_eq!(no_io.block_on(twice(cache.clone(), 2)), (4, 4));
    let no_time = support::current_thread_without_time();
    assert_eq!(no_time.block_on(twice(cache.clone(), 3)), (6, 6));
    assert_eq!(park_on(twice(cache.clone(), 4)), (8, 8));
    let deleted = park_on(Invalidate::new(["exec:*"]).on(&cache).now_async(ctx! {})).unwrap();
    assert_eq!(deleted, 4);
    for c in [first, cache] {
        let stats = c.stats();
        assert_eq!(stats.errors, 0, "{stats:?}");
    }
}
