//! What happens around one computation: a failed one must not queue its waiting
//! callers, values come back as computed or are not stored, sync callers never park an
//! async leader, recursion is detected, async calls work from any executor, and caches
//! with nested prefixes stay apart. Each runs on the embedded store and on a private Redis.

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use support::{park_on, RedisServer};

/// The embedded store and a private Redis, each behind a cache with default lease settings.
fn backends(prefix: &str) -> (RedisServer, Vec<(&'static str, Cache)>) {
    let server = RedisServer::start();
    let memory = Cache::new(Config::memory().prefix(prefix)).unwrap();
    #[allow(unused_mut)]
    let mut all = vec![("memory", memory)];
    #[cfg(feature = "redis")]
    all.push((
        "redis",
        Cache::new(Config::from_url(&server.url()).unwrap().prefix(prefix)).unwrap(),
    ));
    (server, all)
}

/// Counts computations running at once, and the most seen together.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    most: AtomicUsize,
    total: AtomicUsize,
}

impl Concurrency {
    fn enter(&self) -> impl Drop + '_ {
        self.total.fetch_add(1, SeqCst);
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(n, SeqCst);
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, SeqCst);
            }
        }
        Leave(&self.now)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct DayStats {
    transactions: u32,
    average: f64,
}

#[derive(Clone, Copy, Debug)]
enum Failure {
    Err,
    Panic,
    Unstorable,
}

const FAIL_AFTER: Duration = Duration::from_millis(200);
const CALLERS: usize = 16;

/// One caller's call of a computation that fails in `how` after `FAIL_AFTER`.
fn failing_call(cache: &Cache, how: Failure, seen: &Concurrency) -> Result<DayStats, String> {
    let compute = || {
        let _running = seen.enter();
        std::thread::sleep(FAIL_AFTER);
        match how {
            Failure::Err => Err("database down".to_string()),
            Failure::Panic => panic!("computation panicked"),
            Failure::Unstorable => Ok(DayStats {
                transactions: 0,
                average: f64::NAN,
            }),
        }
    };
    let call = std::panic::AssertUnwindSafe(|| {
        Cacheable::new("stats:today")
            .on(cache)
            .try_run(ctx! {}, compute)
    });
    std::panic::catch_unwind(call).unwrap_or_else(|_| Err("panicked".into()))
}

#[test]
fn a_failing_computation_does_not_queue_its_waiting_callers() {
    std::panic::set_hook(Box::new(|_| {})); // the panicking case panics 16 times
    let (_server, caches) = backends("fail");
    for (store, cache) in &caches {
        for how in [Failure::Err, Failure::Panic, Failure::Unstorable] {
            let seen = Concurrency::default();
            let barrier = Barrier::new(CALLERS);
            let slowest = std::thread::scope(|s| {
                let callers: Vec<_> = (0..CALLERS)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            let started = Instant::now();
                            let _ = failing_call(cache, how, &seen);
                            started.elapsed()
                        })
                    })
                    .collect();
                callers
                    .into_iter()
                    .map(|c| c.join().unwrap())
                    .max()
                    .unwrap()
            });
            println!(
                "{store} {how:?}: slowest caller {} ms, {} computations, at most {} at once",
                slowest.as_millis(),
                seen.total.load(SeqCst),
                seen.most.load(SeqCst)
            );
            // Queued one after another, the last caller would return after 16 × 200 ms.
            assert!(
                slowest < FAIL_AFTER * 4,
                "{store} {how:?}: the slowest caller took {slowest:?}"
            );
            assert!(
                seen.most.load(SeqCst) > 1,
                "{store} {how:?}: the waiting callers computed one after another"
            );
        }
    }
    let _ = std::panic::take_hook();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_async_computation_does_not_queue_its_waiting_callers() {
    let (_server, caches) = backends("fail_async");
    for (store, cache) in caches {
        let seen = Arc::new(Concurrency::default());
        let started = Instant::now();
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (cache, seen) = (cache.clone(), seen.clone());
                tokio::spawn(async move {
                    Cacheable::new("stats:today")
                        .on(&cache)
                        .try_run_async(ctx! {}, || async {
                            let _running = seen.enter();
                            tokio::time::sleep(FAIL_AFTER).await;
                            Err::<u32, _>("database down")
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_err());
        }
        let slowest = started.elapsed();
        println!(
            "{store}: all callers done in {} ms, at most {} computations at once",
            slowest.as_millis(),
            seen.most.load(SeqCst)
        );
        assert!(slowest < FAIL_AFTER * 4, "{store}: took {slowest:?}");
        assert!(seen.most.load(SeqCst) > 1, "{store}: callers queued");
    }
}

/// Two caches on one server stand for two processes: their flights are apart, their leases
/// shared. The waiters of the second are released when the first's holder fails.
#[test]
#[cfg(feature = "redis")]
fn waiters_in_another_process_are_released_when_the_lease_holder_fails() {
    let server = RedisServer::start();
    let config = || Config::from_url(&server.url()).unwrap().prefix("xp");
    let (a, b) = (Cache::new(config()).unwrap(), Cache::new(config()).unwrap());
    let seen = Concurrency::default();
    let mut con = server.client();
    let slowest = std::thread::scope(|s| {
        let holder = s.spawn(|| failing_call(&a, Failure::Err, &seen));
        // Wait until the holder's lease is in the key, so that B's callers wait on it.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let raw: Option<Vec<u8>> = redis::cmd("GET")
                .arg("xp:stats:today")
                .query(&mut con)
                .unwrap();
            if raw.is_some_and(|v| v.starts_with(b"\0cacheable-lease:")) {
                break;
            }
            assert!(Instant::now() < deadline, "no lease taken");
            std::thread::sleep(Duration::from_millis(2));
        }
        let started = Instant::now();
        let waiters: Vec<_> = (0..8)
            .map(|_| s.spawn(|| failing_call(&b, Failure::Err, &seen)))
            .collect();
        for w in waiters {
            assert!(w.join().unwrap().is_err());
        }
        assert!(holder.join().unwrap().is_err());
        started.elapsed()
    });
    println!(
        "waiters in the other process done {} ms after they started, {} computations, at most {} at once",
        slowest.as_millis(),
        seen.total.load(SeqCst),
        seen.most.load(SeqCst)
    );
    // The holder fails within 200 ms of their start; then they compute once, side by side.
    assert!(slowest < FAIL_AFTER * 3, "took {slowest:?}");
    assert!(
        seen.most.load(SeqCst) > 2,
        "the waiters computed one by one"
    );
}

#[test]
fn values_that_json_would_change_are_returned_but_not_stored() {
    let (_server, caches) = backends("lossy");
    for (store, cache) in &caches {
        let computed = AtomicUsize::new(0);
        let nested = || {
            Cacheable::new("opt").on(cache).run(ctx! {}, || {
                computed.fetch_add(1, SeqCst);
                Some(None::<u32>)
            })
        };
        assert_eq!(nested(), Some(None));
        assert_eq!(nested(), Some(None), "{store}: served back as None");
        assert_eq!(computed.load(SeqCst), 2, "{store}");

        let empty_day = || {
            Cacheable::new("day").on(cache).run(ctx! {}, || {
                computed.fetch_add(1, SeqCst);
                DayStats {
                    transactions: 0,
                    average: f64::NAN,
                }
            })
        };
        for _ in 0..6 {
            assert!(empty_day().average.is_nan());
        }
        let stats = cache.stats();
        println!("{store}: {stats:?}");
        assert_eq!(computed.load(SeqCst), 8, "{store}");
        assert_eq!(stats.sets, 0, "{store}: something was written");
        assert_eq!(
            stats.decode_errors, 0,
            "{store}: a stored value did not read back"
        );
        assert_eq!(stats.unstorable, 8, "{store}");
        assert_eq!(cache.get::<DayStats>("day").unwrap(), None, "{store}");
        // A faithful value is stored as before.
        let fine = Cacheable::new("fine")
            .on(cache)
            .run(ctx! {}, || Some(Some(3u32)));
        assert_eq!(fine, Some(Some(3)));
        assert_eq!(
            cache.get::<Option<Option<u32>>>("fine").unwrap(),
            Some(Some(Some(3)))
        );
    }
}

#[test]
fn an_async_leader_is_not_frozen_by_sync_callers_on_its_runtime() {
    let (_server, caches) = backends("mixed");
    for (store, cache) in caches {
        // Two workers, both taken by sync callers of the key the async task computes.
        let rt = support::runtime(2);
        let leader_took = rt.block_on(async {
            let c = cache.clone();
            let leader = tokio::spawn(async move {
                let started = Instant::now();
                let v = Cacheable::new("mixed")
                    .on(&c)
                    .run_async(ctx! {}, || async {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        1
                    })
                    .await;
                assert_eq!(v, 1);
                started.elapsed()
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let sync_callers: Vec<_> = (0..2)
                .map(|_| {
                    let c = cache.clone();
                    tokio::spawn(async move {
                        Cacheable::new("mixed").on(&c).run(ctx! {}, || {
                            std::thread::sleep(Duration::from_millis(100));
                            1
                        })
                    })
                })
                .collect();
            for s in sync_callers {
                assert_eq!(s.await.unwrap(), 1);
            }
            leader.await.unwrap()
        });
        println!(
            "{store}: the async leader took {} ms",
            leader_took.as_millis()
        );
        assert!(
            leader_took < Duration::from_secs(2),
            "{store}: the async leader took {leader_took:?}"
        );

        // One thread: the async leader and a sync caller joined on it.
        let rt = support::current_thread();
        let started = Instant::now();
        let (a, b) = rt.block_on(async {
            tokio::join!(
                Cacheable::new("joined")
                    .on(&cache)
                    .run_async(ctx! {}, || async {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        2
                    }),
                async { Cacheable::new("joined").on(&cache).run(ctx! {}, || 2) }
            )
        });
        assert_eq!((a, b), (2, 2));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{store}: join took {:?}",
            started.elapsed()
        );
    }
}

fn recursive(cache: &Cache, depth: u32) -> u32 {
    Cacheable::new("rec").on(cache).run(ctx! {}, || {
        if depth < 3 {
            recursive(cache, depth + 1) + 1
        } else {
            0
        }
    })
}

fn ping(cache: &Cache, n: u32) -> u32 {
    Cacheable::new("ping")
        .on(cache)
        .run(ctx! {}, || pong(cache, n) + 1)
}

fn pong(cache: &Cache, n: u32) -> u32 {
    Cacheable::new("pong")
        .on(cache)
        .run(ctx! {}, || if n == 0 { 0 } else { ping(cache, n - 1) })
}

fn recursive_async(
    cache: &Cache,
    depth: u32,
) -> std::pin::Pin<Box<dyn Future<Output = u32> + Send + '_>> {
    Box::pin(async move {
        Cacheable::new("rec_async")
            .on(cache)
            .run_async(ctx! {}, || async move {
                if depth < 3 {
                    recursive_async(cache, depth + 1).await + 1
                } else {
                    0
                }
            })
            .await
    })
}

#[test]
fn a_computation_that_asks_for_its_own_key_computes_at_once() {
    let (_server, caches) = backends("rec");
    for (store, cache) in &caches {
        // Default lease_wait (5 s): before, each level waited twice that for itself.
        let started = Instant::now();
        assert_eq!(recursive(cache, 0), 3, "{store}");
        assert_eq!(ping(cache, 2), 3, "{store}: a cycle of two keys");
        let rt = support::current_thread();
        assert_eq!(rt.block_on(recursive_async(cache, 0)), 3, "{store}");
        let took = started.elapsed();
        println!("{store}: recursions took {} ms", took.as_millis());
        assert!(took < Duration::from_secs(2), "{store}: took {took:?}");
        // The outermost value is cached as usual.
        assert_eq!(cache.get::<u32>("rec").unwrap(), Some(3), "{store}");
    }
}

async fn twice(cache: &Cache, id: u32) -> (u32, u32) {
    let call = || {
        Cacheable::new("exec:<<id>>")
            .on(cache)
            .run_async(ctx! { id }, || async move { id * 2 })
    };
    (call().await, call().await)
}

#[test]
fn async_calls_work_from_any_executor_and_runtime_flavour() {
    let (_server, caches) = backends("exec");
    for (store, cache) in &caches {
        let before = cache.stats();
        let no_io = support::current_thread_without_io();
        assert_eq!(no_io.block_on(twice(cache, 1)), (2, 2), "{store}");
        let no_time = support::current_thread_without_time();
        assert_eq!(no_time.block_on(twice(cache, 2)), (4, 4), "{store}");
        let bare = support::bare_current_thread();
        assert_eq!(bare.block_on(twice(cache, 3)), (6, 6), "{store}");
        assert_eq!(
            park_on(twice(cache, 4)),
            (8, 8),
            "{store}: another executor"
        );
        // An invalidation from another executor too.
        let deleted = park_on(Invalidate::new(["exec:*"]).on(cache).now_async(ctx! {})).unwrap();
        assert_eq!(deleted, 4, "{store}");
        let after = cache.stats();
        assert_eq!(after.errors, before.errors, "{store}: {after:?}");
        assert_eq!(
            after.hits - before.hits,
            4,
            "{store}: every second call is a hit"
        );
    }
}

#[test]
#[cfg(feature = "redis")]
fn async_calls_do_not_depend_on_the_runtime_that_made_the_first_one() {
    let server = RedisServer::start();
    // A call that needed the first runtime would wait out this timeout before failing open.
    let config = Config::from_url(&server.url())
        .unwrap()
        .prefix("first")
        .op_timeout(Duration::from_secs(10));
    let cache = Cache::new(config).unwrap();
    // The first runtime makes the first async call, then stays alive but is never polled.
    let first = support::current_thread();
    assert_eq!(first.block_on(twice(&cache, 1)), (2, 2));
    let other = support::runtime(1);
    for id in 10..15 {
        let started = Instant::now();
        assert_eq!(other.block_on(twice(&cache, id)), (id * 2, id * 2));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "call {id} took {:?}",
            started.elapsed()
        );
    }
    let stats = cache.stats();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.hits, 6, "{stats:?}");
    // Sync calls still work: no breaker was tripped by stalled async calls.
    assert_eq!(Cacheable::new("sync").on(&cache).run(ctx! {}, || 5), 5);
    assert_eq!(cache.get::<u32>("sync").unwrap(), Some(5));
    drop(first);
}

#[test]
#[cfg(feature = "redis")]
fn caches_with_nested_prefixes_never_see_each_others_keys() {
    let server = RedisServer::start();
    let app = Cache::new(Config::from_url(&server.url()).unwrap().prefix("app")).unwrap();
    let v2 = Cache::new(Config::from_url(&server.url()).unwrap().prefix("app:v2")).unwrap();
    app.set("v2:b", &"app's", 60).unwrap();
    v2.set("b", &"v2's", 60).unwrap();
    assert_eq!(app.get::<String>("v2:b").unwrap().as_deref(), Some("app's"));
    assert_eq!(v2.get::<String>("b").unwrap().as_deref(), Some("v2's"));
    assert_eq!(app.keys("*").unwrap(), ["v2:b"]);
    assert_eq!(v2.keys("*").unwrap(), ["b"]);
    assert_eq!(app.delete_pattern("*").unwrap(), 1);
    assert_eq!(v2.get::<String>("b").unwrap().as_deref(), Some("v2's"));
    let raw = server.cli(&["--raw", "KEYS", "*"]);
    assert_eq!(raw.trim(), "app%3Av2:b", "the key as Redis holds it");
    assert_eq!(
        Cache::new(Config::memory().prefix("")).unwrap_err().kind(),
        cacheable::ErrorKind::Config
    );
}
