//! One cache used from one runtime after another: the async connection follows the caller
//! rather than failing once the runtime that first drove it is gone; a runtime with an IO
//! driver sends on a connection of its own.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{park_on, RedisServer};

#[test]
fn a_cache_outlives_the_runtime_that_first_used_it() {
    let server = RedisServer::start();
    let cache = Cache::new(Config::from_url(&server.url()).unwrap().prefix("rt")).unwrap();
    for round in 0..3 {
        let runtime = support::current_thread();
        runtime.block_on(async {
            // A write the user asked for: it must not be lost to the previous runtime's
            // dead connection.
            cache
                .set_async(&format!("k{round}"), &round, 60)
                .await
                .unwrap();
            let v: u32 = Cacheable::new("v:<<round>>")
                .on(&cache)
                .run_async(ctx! { round }, || async move { round * 10 })
                .await;
            assert_eq!(v, round * 10);
        });
        drop(runtime);
    }
    assert_eq!(cache.count("*").unwrap(), 6);
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
}

/// The server's connections, by id, without the one `redis-cli` asks on.
fn client_ids(server: &RedisServer) -> Vec<u64> {
    server
        .cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .filter_map(|l| l.strip_prefix("id=")?.split(' ').next()?.parse().ok())
        .collect()
}

/// Waits until the server has `n` connections (besides `redis-cli`'s), and returns them.
fn wait_for_clients(server: &RedisServer, n: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ids = client_ids(server);
        if ids.len() == n || Instant::now() > deadline {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn hits(cache: &Cache, n: u32) {
    for i in 0..n {
        let v: u32 = Cacheable::new("own:<<i>>")
            .on(cache)
            .run_async(ctx! { i }, || async move { i + 1 })
            .await;
        assert_eq!(v, i + 1);
    }
}

/// A current-thread runtime with an IO driver whose calls (through `cache`, on `server`,
/// where the IO thread's connection is the only one) started its own connection: its first
/// call goes through the IO thread, its later ones use its own once it is up.
fn runtime_with_its_own_connection(server: &RedisServer, cache: &Cache) -> tokio::runtime::Runtime {
    let runtime = support::current_thread();
    runtime.block_on(async {
        hits(cache, 5).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let both = wait_for_clients(server, 2);
    assert_eq!(
        both.len(),
        2,
        "the IO thread's connection and the runtime's: {both:?}"
    );
    runtime
}

#[test]
fn a_runtime_with_an_io_driver_sends_on_a_connection_of_its_own() {
    let server = RedisServer::start();
    let cache = Cache::new(Config::from_url(&server.url()).unwrap().prefix("own")).unwrap();
    let panics = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&panics);
    std::panic::set_hook(Box::new(move |info| {
        counted.fetch_add(1, Ordering::SeqCst);
        eprintln!("{info}");
    }));

    // A runtime without an IO driver: its calls go through the crate's IO thread, and no
    // connection of its own is started.
    let no_io = support::current_thread_without_io();
    no_io.block_on(async {
        hits(&cache, 5).await;
        // Time for a connection of its own to come up, if one were (wrongly) started.
        tokio::time::sleep(Duration::from_millis(200)).await;
        hits(&cache, 5).await;
    });
    let io_thread = client_ids(&server);
    assert_eq!(io_thread.len(), 1, "{io_thread:?}");
    // Finding out that it has no IO driver panicked inside tokio, caught and kept out of
    // the panic hook.
    assert_eq!(panics.load(Ordering::SeqCst), 0);

    // A runtime with one: its own connection comes up beside the IO thread's.
    let runtime = runtime_with_its_own_connection(&server, &cache);
    // Kill the IO thread's connection: the runtime's calls do not need it, so it is not
    // made again.
    server.cli(&["CLIENT", "KILL", "ID", &io_thread[0].to_string()]);
    let before = cache.stats();
    runtime.block_on(hits(&cache, 5));
    let after = cache.stats();
    assert_eq!(after.hits - before.hits, 5, "{after:?}");
    assert_eq!(after.errors, before.errors, "{after:?}");
    let left = client_ids(&server);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left.contains(&io_thread[0]));
    // The runtime's connection goes with the runtime.
    drop(runtime);
    assert_eq!(wait_for_clients(&server, 0), Vec::<u64>::new());

    // Other panics still reach the hook.
    let _ = std::panic::catch_unwind(|| panic!("a panic of the program's own"));
    assert_eq!(panics.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
}

#[test]
fn a_runtime_that_does_not_drive_its_connection_costs_one_timeout_then_uses_the_io_thread() {
    let server = RedisServer::start();
    let op_timeout = Duration::from_millis(200);
    let cache = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("blocked")
            .op_timeout(op_timeout),
    )
    .unwrap();
    let runtime = runtime_with_its_own_connection(&server, &cache);
    // A task that blocks its runtime's only thread on a cached future (another executor):
    // the runtime cannot drive its own connection meanwhile. The first call waits out the
    // operation timeout and fails open; the next ones go through the crate's IO thread.
    let took: Vec<Duration> = runtime.block_on(async {
        (0..5u32)
            .map(|i| {
                let started = Instant::now();
                let v: u32 = park_on(
                    Cacheable::new("own:<<i>>")
                        .on(&cache)
                        .run_async(ctx! { i }, || async move { i + 1 }),
                );
                assert_eq!(v, i + 1);
                started.elapsed()
            })
            .collect()
    });
    println!("calls took {took:?}");
    assert!(took[0] >= op_timeout, "{took:?}");
    // A liveness bound, not a latency one; that the later calls met no timeout is in the
    // error count below.
    assert!(
        took[0] < op_timeout * 5 + Duration::from_millis(500),
        "{took:?}"
    );
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.errors), (4, 1), "{stats:?}");
}
