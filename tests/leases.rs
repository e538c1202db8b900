//! Leases over a computation's life: kept alive while it runs, given back when it is
//! abandoned; followers bounded in time and never handed a value older than an
//! invalidation they came after.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
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

fn raw_set_lease(server: &RedisServer, key: &str, ms: u64) {
    let mut con = server.client();
    let mut v = b"\0cacheable-lease:deadpeer".to_vec();
    v.extend_from_slice(b"-0");
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(v)
        .arg("PX")
        .arg(ms)
        .query(&mut con)
        .unwrap();
}

/// A peer died holding the lease (250 ms left). The in-process leader waits it out and
/// computes (150 ms): 400 ms in all, more than lease_wait (300 ms). Followers give up at
/// 300 ms counted from their join and all compute.
#[test]
fn followers_do_not_give_up_while_their_leader_waits_out_a_peer_lease() {
    let server = RedisServer::start();
    let cache = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("p")
            .lease_wait(Duration::from_millis(300)),
    )
    .unwrap();
    raw_set_lease(&server, "p:k", 250);
    let computed = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (cache, computed) = (cache.clone(), computed.clone());
            std::thread::spawn(move || {
                cache
                    .get_or_set(
                        "k",
                        || {
                            computed.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(150));
                            7u32
                        },
                        60,
                    )
                    .unwrap()
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    println!("computations: {}", computed.load(Ordering::SeqCst));
    assert_eq!(
        computed.load(Ordering::SeqCst),
        1,
        "followers gave up and computed too"
    );
}

/// Redis unreachable: the leader shares an unverified value. An invalidation of an
/// UNRELATED key during the computation makes later followers reject it and compute again.
#[test]
fn an_invalidation_of_another_key_does_not_turn_followers_away() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = Cache::new(
        Config::from_url(&format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .prefix("p")
            .invalidate_retries(0),
    )
    .unwrap();
    let computed = Arc::new(AtomicU32::new(0));
    let call = |cache: Cache, computed: Arc<AtomicU32>| {
        std::thread::spawn(move || {
            let id = 1;
            Cacheable::new("k:<<id>>").on(&cache).run(ctx! { id }, || {
                computed.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300));
                7u32
            })
        })
    };
    let leader = call(cache.clone(), computed.clone());
    std::thread::sleep(Duration::from_millis(50));
    let other = 99;
    let _ = Invalidate::new(["unrelated:<<other>>"])
        .on(&cache)
        .now(ctx! { other });
    std::thread::sleep(Duration::from_millis(50));
    let followers: Vec<_> = (0..4)
        .map(|_| call(cache.clone(), computed.clone()))
        .collect();
    leader.join().unwrap();
    for f in followers {
        f.join().unwrap();
    }
    println!("computations: {}", computed.load(Ordering::SeqCst));
    assert_eq!(
        computed.load(Ordering::SeqCst),
        1,
        "an unrelated invalidation turned followers away"
    );
}

/// A SET NX that times out client-side but runs later leaves a lease nobody holds.
#[test]
fn a_lease_request_that_lands_after_its_timeout_is_given_back() {
    let server = RedisServer::start();
    let config = Config::from_url(&server.url())
        .unwrap()
        .prefix("p")
        .op_timeout(Duration::from_millis(100))
        .breaker(0, Duration::from_secs(1));
    let cache = Cache::new(config).unwrap();
    let rt = support::runtime(2);
    rt.block_on(async {
        cache.set_async("warm", &1, 60).await.unwrap();
        server.cli(&["CLIENT", "PAUSE", "300", "WRITE"]);
        let id = 1;
        let v = Cacheable::new("k:<<id>>")
            .on(&cache)
            .run_async(ctx! { id }, || async move { 3u32 })
            .await;
        assert_eq!(v, 3);
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut con = server.client();
    let raw: Option<Vec<u8>> = redis::cmd("GET").arg("p:k:1").query(&mut con).unwrap();
    let pttl: i64 = redis::cmd("PTTL").arg("p:k:1").query(&mut con).unwrap();
    println!(
        "key after: {:?} pttl {pttl}",
        raw.as_ref()
            .map(|r| String::from_utf8_lossy(r).into_owned())
    );
    // A caller now waits out the orphan lease.
    let started = Instant::now();
    let cache2 = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("p")
            .lease_wait(Duration::from_secs(10)),
    )
    .unwrap();
    let v: u32 = cache2.get_or_set("k:1", || 4u32, 60).unwrap();
    println!("next caller waited {:?} (value {v})", started.elapsed());
    assert!(raw.is_none(), "orphan lease left behind");
}

/// The breaker opens (a timeout elsewhere) while a leader computes; Redis is fine again
/// by the write, but the write fails fast and the lease is not given back.
#[test]
fn a_lease_whose_write_failed_is_given_back() {
    let server = RedisServer::start();
    let cache = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("p")
            .op_timeout(Duration::from_millis(100))
            .breaker(1, Duration::from_secs(1)),
    )
    .unwrap();
    let _: Option<u32> = cache.get("warm").unwrap();
    let c2 = cache.clone();
    let id = 1;
    let v = Cacheable::new("k:<<id>>").on(&cache).run(ctx! { id }, || {
        server.cli(&["CLIENT", "PAUSE", "200", "ALL"]);
        let _ = c2.get::<u32>("other"); // times out: breaker opens
        std::thread::sleep(Duration::from_millis(300));
        5u32
    });
    assert_eq!(v, 5);
    // The write failed fast on the open breaker; the keeper thread gives the lease back
    // once the breaker lets it (1 s), well before the lease's own 5 s would run out.
    let mut con = server.client();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let raw: Option<Vec<u8>> = redis::cmd("GET").arg("p:k:1").query(&mut con).unwrap();
        if !raw.is_some_and(|r| r.starts_with(b"\0")) {
            break;
        }
        assert!(Instant::now() < deadline, "lease left behind");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_frozen_server_does_not_starve_the_lease_renewals_of_another_cache() {
    // Many leaders on server A lose their writes while A is frozen: their leases are to be
    // given back. Meanwhile a long computation on server B needs its lease renewed by the
    // same keeper thread, every 200 ms.
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let cache_a = Cache::new(config(&a).op_timeout(Duration::from_millis(250))).unwrap();
    let cache_b = Cache::new(config(&b).lease_ttl(Duration::from_millis(600))).unwrap();
    let long = {
        let cache_b = cache_b.clone();
        std::thread::spawn(move || {
            Cacheable::new("report").on(&cache_b).run(ctx! {}, || {
                std::thread::sleep(Duration::from_millis(2500));
                "done".to_string()
            })
        })
    };
    let leaders: Vec<_> = (0..20)
        .map(|i| {
            let cache_a = cache_a.clone();
            std::thread::spawn(move || {
                Cacheable::new("k:<<i>>").on(&cache_a).run(ctx! { i }, || {
                    std::thread::sleep(Duration::from_millis(300));
                    i
                })
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    a.pause();
    for (i, l) in leaders.into_iter().enumerate() {
        assert_eq!(l.join().unwrap(), i as i32);
    }
    assert_eq!(long.join().unwrap(), "done");
    a.resume();
    assert_eq!(
        b.cli(&["GET", "l:report"]).trim(),
        "\"done\"",
        "the long computation lost its lease while the keeper was stuck on server A"
    );
}
