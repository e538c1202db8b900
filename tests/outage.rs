//! Fail-open behaviour: with the private server killed or frozen, cached functions keep
//! answering from the closure within the operation timeout, count the faults, and cache
//! again once the server is back, on the same `Cache`.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::RedisServer;

const OP_TIMEOUT: Duration = Duration::from_millis(200);
/// Generous slack over the timeout: this checks that calls do not hang, not how fast they are.
const BOUND: Duration = Duration::from_millis(200 + 400);

fn cache_for(server: &RedisServer) -> Cache {
    Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("t")
            .op_timeout(OP_TIMEOUT)
            .connect_timeout(OP_TIMEOUT)
            .invalidate_retries(1),
    )
    .unwrap()
}

fn sync_call(cache: &Cache, calls: &AtomicUsize, id: u32) -> u32 {
    Cacheable::new("item:<<id>>")
        .on(cache)
        .run(ctx! { id }, || {
            calls.fetch_add(1, Ordering::SeqCst);
            id * 10
        })
}

async fn async_call(cache: &Cache, calls: &AtomicUsize, id: u32) -> u32 {
    Cacheable::new("item:<<id>>")
        .on(cache)
        .run_async(ctx! { id }, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            id * 10
        })
        .await
}

#[test]
fn sync_run_survives_a_killed_server_and_resumes_after_restart() {
    let mut server = RedisServer::start();
    let cache = cache_for(&server);
    let calls = AtomicUsize::new(0);
    assert_eq!(sync_call(&cache, &calls, 1), 10);
    assert_eq!(sync_call(&cache, &calls, 1), 10);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    server.kill();
    let errors_before = cache.stats().errors;
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        assert_eq!(sync_call(&cache, &calls, 1), 10);
        slowest = slowest.max(started.elapsed());
        assert!(
            started.elapsed() < BOUND,
            "call {i} took {:?}",
            started.elapsed()
        );
    }
    println!("server killed: slowest sync call {slowest:?} (timeout {OP_TIMEOUT:?})");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        21,
        "every call computed while the server was down"
    );
    assert!(
        cache.stats().errors >= errors_before + 20,
        "{:?}",
        cache.stats()
    );
    // Invalidation while down is reported, not silent.
    assert!(Invalidate::new(["item:*"]).on(&cache).now(ctx! {}).is_err());
    assert!(cache.stats().failed_invalidations >= 1);

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = calls.load(Ordering::SeqCst);
        sync_call(&cache, &calls, 2);
        if calls.load(Ordering::SeqCst) == before {
            // A hit on a server that restarted empty: a value was stored since.
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caching did not resume after the restart"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.cli(&["GET", "t:item:2"]).trim(), "20");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_run_survives_a_killed_server_and_resumes_after_restart() {
    let mut server = RedisServer::start();
    let cache = cache_for(&server);
    let calls = AtomicUsize::new(0);
    assert_eq!(async_call(&cache, &calls, 1).await, 10);
    assert_eq!(async_call(&cache, &calls, 1).await, 10);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    server.kill();
    let errors_before = cache.stats().errors;
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        assert_eq!(async_call(&cache, &calls, 1).await, 10);
        slowest = slowest.max(started.elapsed());
        assert!(
            started.elapsed() < BOUND,
            "call {i} took {:?}",
            started.elapsed()
        );
    }
    println!("server killed: slowest async call {slowest:?} (timeout {OP_TIMEOUT:?})");
    assert_eq!(calls.load(Ordering::SeqCst), 21);
    assert!(
        cache.stats().errors >= errors_before + 20,
        "{:?}",
        cache.stats()
    );

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = calls.load(Ordering::SeqCst);
        async_call(&cache, &calls, 2).await;
        if calls.load(Ordering::SeqCst) == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "caching did not resume after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.cli(&["GET", "t:item:2"]).trim(), "20");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_costs_at_most_the_operation_timeout() {
    let server = RedisServer::start();
    let cache = cache_for(&server);
    let calls = AtomicUsize::new(0);
    async_call(&cache, &calls, 1).await;
    sync_call(&cache, &calls, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    server.pause();
    let (mut slowest_async, mut slowest_sync) = (Duration::ZERO, Duration::ZERO);
    for i in 0..5 {
        let started = Instant::now();
        assert_eq!(async_call(&cache, &calls, 1).await, 10);
        let took = started.elapsed();
        assert!(took < BOUND, "async call {i} took {took:?}");
        slowest_async = slowest_async.max(took);

        let started = Instant::now();
        assert_eq!(
            tokio::task::block_in_place(|| sync_call(&cache, &calls, 1)),
            10
        );
        let took = started.elapsed();
        assert!(took < BOUND, "sync call {i} took {took:?}");
        slowest_sync = slowest_sync.max(took);
    }
    println!(
        "server frozen: slowest async call {slowest_async:?}, slowest sync call {slowest_sync:?} (timeout {OP_TIMEOUT:?})"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 11);
    assert!(cache.stats().errors >= 10, "{:?}", cache.stats());
    server.resume();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = calls.load(Ordering::SeqCst);
        async_call(&cache, &calls, 1).await;
        if calls.load(Ordering::SeqCst) == before {
            break; // a hit again
        }
        assert!(
            Instant::now() < deadline,
            "caching did not resume after the thaw"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn after_a_few_timeouts_calls_fail_fast_until_the_cooldown_ends() {
    let server = RedisServer::start();
    let cache = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("t")
            .op_timeout(OP_TIMEOUT)
            .breaker(2, Duration::from_millis(800))
            .invalidate_retries(0),
    )
    .unwrap();
    let calls = AtomicUsize::new(0);
    sync_call(&cache, &calls, 1);
    cache.set("other", &1, 60).unwrap();
    server.pause();
    // Two calls wait out the timeout; then the breaker opens.
    for _ in 0..2 {
        sync_call(&cache, &calls, 1);
    }
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(sync_call(&cache, &calls, 1), 10);
    }
    let fast = started.elapsed();
    println!("breaker open: 50 calls took {fast:?} (timeout {OP_TIMEOUT:?} each otherwise)");
    assert!(fast < OP_TIMEOUT, "calls did not fail fast: {fast:?}");
    let err = cache.get::<i32>("other").unwrap_err();
    assert!(err.to_string().contains("taken as down"), "{err}");

    // The server is back, the breaker still open: an invalidation is attempted anyway.
    server.resume();
    assert_eq!(
        Invalidate::new(["other"]).on(&cache).now(ctx! {}).unwrap(),
        1
    );
    // And after the cooldown, caching resumes.
    std::thread::sleep(Duration::from_millis(800));
    let before = calls.load(Ordering::SeqCst);
    sync_call(&cache, &calls, 3);
    sync_call(&cache, &calls, 3);
    assert_eq!(calls.load(Ordering::SeqCst), before + 1);
}
