//! Leases over a computation's life: kept alive while it runs, given back when it is
//! abandoned; followers bounded in time and never handed a value older than an
//! invalidation they came after.

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::RedisServer;

fn config(server: &RedisServer) -> Config {
    Config::from_url(&server.url()).unwrap().prefix("l")
}

#[test]
fn a_computation_longer_than_the_lease_is_still_cached() {
    let server = RedisServer::start();
    let cache = Cache::new(config(&server).lease_ttl(Duration::from_millis(100))).unwrap();
    let calls = AtomicUsize::new(0);
    let slow = || {
        Cacheable::new("report").on(&cache).run(ctx! {}, || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(400));
            "done".to_string()
        })
    };
    assert_eq!(slow(), "done");
    assert_eq!(server.cli(&["GET", "l:report"]).trim(), "\"done\"");
    assert_eq!(slow(), "done");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second call must be a hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_leader_gives_its_lease_back() {
    let server = RedisServer::start();
    let cache = Arc::new(
        Cache::new(
            config(&server)
                .lease_ttl(Duration::from_secs(30))
                .lease_wait(Duration::from_secs(20)),
        )
        .unwrap(),
    );
    // A request times out while the leader computes: its future is dropped.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        Cacheable::new("k").on(&cache).run_async(ctx! {}, || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            1
        }),
    )
    .await;
    assert!(abandoned.is_err());
    let started = Instant::now();
    let v = Cacheable::new("k")
        .on(&cache)
        .run_async(ctx! {}, || async { 2 })
        .await;
    assert_eq!(v, 2);
    // Without the give-back, this call would wait for the 30 s lease.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
}

#[test]
fn a_panicking_leader_gives_its_lease_back() {
    let server = RedisServer::start();
    let cache = Cache::new(
        config(&server)
            .lease_ttl(Duration::from_secs(30))
            .lease_wait(Duration::from_secs(20)),
    )
    .unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Cacheable::new("k")
            .on(&cache)
            .run(ctx! {}, || -> i32 { panic!("query failed") })
    }));
    assert!(panicked.is_err());
    let started = Instant::now();
    assert_eq!(Cacheable::new("k").on(&cache).run(ctx! {}, || 3), 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
}

#[test]
fn a_cached_function_that_calls_itself_on_its_key_does_not_hang() {
    let server = RedisServer::start();
    let cache = Cache::new(config(&server).lease_wait(Duration::from_millis(200))).unwrap();
    fn outer(cache: &Cache, depth: u32) -> u32 {
        Cacheable::new("same").on(cache).run(ctx! {}, || {
            if depth == 0 {
                outer(cache, 1) + 1
            } else {
                10
            }
        })
    }
    let started = Instant::now();
    assert_eq!(outer(&cache, 0), 11);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_arriving_after_an_invalidation_does_not_take_an_older_value() {
    // With the store down there is no lease to prove freshness; in-process followers then
    // take the leader's value only if no invalidation came between its start and their
    // arrival.
    let mut server = RedisServer::start();
    let cache = Arc::new(
        Cache::new(
            config(&server)
                .op_timeout(Duration::from_millis(100))
                .invalidate_retries(0),
        )
        .unwrap(),
    );
    server.kill();
    let source = Arc::new(AtomicU64::new(1));
    let read = |cache: Arc<Cache>, source: Arc<AtomicU64>, pause: u64| async move {
        Cacheable::new("balance")
            .on(&cache)
            .run_async(ctx! {}, || async move {
                let seen = source.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                seen
            })
            .await
    };
    let leader = tokio::spawn(read(cache.clone(), source.clone(), 600));
    tokio::time::sleep(Duration::from_millis(250)).await;
    source.store(2, Ordering::SeqCst);
    assert!(Invalidate::new(["balance"])
        .on(&cache)
        .now_async(ctx! {})
        .await
        .is_err());
    let follower = tokio::spawn(read(cache.clone(), source.clone(), 0));
    assert_eq!(
        leader.await.unwrap(),
        1,
        "the leader's own call began before the update"
    );
    assert_eq!(
        follower.await.unwrap(),
        2,
        "the follower came after the invalidation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_that_arrive_before_an_invalidation_share_the_value() {
    let mut server = RedisServer::start();
    let cache =
        Arc::new(Cache::new(config(&server).op_timeout(Duration::from_millis(100))).unwrap());
    server.kill();
    let computations = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cache, computations) = (cache.clone(), computations.clone());
            tokio::spawn(async move {
                Cacheable::new("k")
                    .on(&cache)
                    .run_async(ctx! {}, || async move {
                        computations.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        5
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 5);
    }
    assert_eq!(
        computations.load(Ordering::SeqCst),
        1,
        "with Redis down, concurrent callers still share one computation"
    );
}
