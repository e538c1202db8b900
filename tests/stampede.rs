//! Stampede protection: concurrent callers of one cold key share one computation, in a
//! process (single-flight) and across processes (a lease in the key).
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::RedisServer;

fn cache_for(url: &str) -> Cache {
    Cache::new(Config::from_url(url).unwrap().prefix("s")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_async_callers_share_one_computation() {
    let server = RedisServer::start();
    let cache = Arc::new(cache_for(&server.url()));
    let computations = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (cache, computations) = (cache.clone(), computations.clone());
            tokio::spawn(async move {
                Cacheable::new("report:<<day>>")
                    .on(&cache)
                    .run_async(ctx! { day = "2026-11-24" }, || async {
                        computations.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        vec![1, 2, 3]
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), [1, 2, 3]);
    }
    assert_eq!(computations.load(Ordering::SeqCst), 1);
    let stats = cache.stats();
    assert_eq!(
        stats.hits + stats.misses,
        200,
        "one count per call: {stats:?}"
    );
}

#[test]
fn concurrent_sync_callers_share_one_computation() {
    let server = RedisServer::start();
    let cache = cache_for(&server.url());
    let computations = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..32 {
            s.spawn(|| {
                let v = Cacheable::new("report:<<day>>")
                    .on(&cache)
                    .run(ctx! { day = 1 }, || {
                        computations.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        "done".to_string()
                    });
                assert_eq!(v, "done");
            });
        }
    });
    assert_eq!(computations.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_shares_one_computation_too() {
    let cache = Arc::new(Cache::new(Config::memory()).unwrap());
    let computations = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, computations) = (cache.clone(), computations.clone());
            tokio::spawn(async move {
                Cacheable::new("k")
                    .on(&cache)
                    .run_async(ctx! {}, || async {
                        computations.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        7
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 7);
    }
    assert_eq!(computations.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_err_is_shared_with_nobody_and_the_next_caller_computes() {
    let server = RedisServer::start();
    let cache = cache_for(&server.url());
    let calls = AtomicUsize::new(0);
    let attempt = |fail: bool| {
        Cacheable::new("k")
            .on(&cache)
            .try_run_async(ctx! {}, move || async move {
                if fail {
                    Err("boom")
                } else {
                    Ok(1)
                }
            })
    };
    calls.fetch_add(1, Ordering::SeqCst);
    assert_eq!(attempt(true).await, Err("boom"));
    // The failed leader gave its lease back: the key holds no lease, only (for a second)
    // the marker that tells other processes' waiters it failed.
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg("s:k")
        .query(&mut server.client())
        .unwrap();
    assert!(
        raw.as_ref()
            .is_none_or(|v| v.starts_with(b"\0cacheable-failed:")),
        "{raw:?}"
    );
    assert_eq!(attempt(false).await, Ok(1));
}

const CHILD_URL: &str = "CACHEABLE_STAMPEDE_URL";
const CHILD_START: &str = "CACHEABLE_STAMPEDE_START_MS";

/// One of the four processes: 50 tasks call the same cold key at the same instant.
fn stampede_child(url: &str, start_ms: u64) {
    let runtime = support::runtime(2);
    runtime.block_on(async {
        let cache = Arc::new(cache_for(url));
        let client = redis::Client::open(url).unwrap();
        let counter = client.get_multiplexed_async_connection().await.unwrap();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(start_ms.saturating_sub(now_ms))).await;
        let started = Instant::now();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, mut counter) = (cache.clone(), counter.clone());
                tokio::spawn(async move {
                    let v: u64 = Cacheable::new("rates:<<code>>")
                        .on(&cache)
                        .run_async(ctx! { code = "NGN" }, || async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let _: u64 = redis::cmd("INCR")
                                .arg("computations")
                                .query_async(&mut counter)
                                .await
                                .unwrap();
                            1550
                        })
                        .await;
                    (v, started.elapsed())
                })
            })
            .collect();
        let mut slowest = Duration::ZERO;
        for t in tasks {
            let (v, waited) = t.await.unwrap();
            assert_eq!(v, 1550);
            slowest = slowest.max(waited);
        }
        println!("CHILD OK 50 callers, slowest {} ms", slowest.as_millis());
    });
}

#[test]
fn four_processes_of_fifty_tasks_compute_a_cold_key_once() {
    if let (Ok(url), Ok(start)) = (std::env::var(CHILD_URL), std::env::var(CHILD_START)) {
        return stampede_child(&url, start.parse().unwrap());
    }
    let server = RedisServer::start();
    // Children start together, 1.5 s from now (time for four processes to come up).
    let start_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 1500;
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "four_processes_of_fifty_tasks_compute_a_cold_key_once",
                    "--nocapture",
                ])
                .env(CHILD_URL, server.url())
                .env(CHILD_START, start_ms.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("CHILD OK 50 callers"),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in stdout.lines().filter(|l| l.starts_with("CHILD OK")) {
            println!("{line}");
        }
    }
    assert_eq!(
        server.cli(&["GET", "computations"]).trim(),
        "1",
        "200 callers in 4 processes, one computation"
    );
    assert_eq!(server.cli(&["GET", "s:rates:NGN"]).trim(), "1550");
}

const HOLDER_URL: &str = "CACHEABLE_LEASE_HOLDER_URL";

#[test]
fn a_killed_lease_holder_delays_the_others_by_at_most_the_lease_time() {
    let lease_ttl = Duration::from_millis(1000);
    let config = |url: &str| {
        Config::from_url(url)
            .unwrap()
            .prefix("s")
            .lease_ttl(lease_ttl)
            .lease_wait(Duration::from_secs(10))
    };
    if let Ok(url) = std::env::var(HOLDER_URL) {
        // The holder: takes the lease, then computes forever until killed.
        let cache = Cache::new(config(&url)).unwrap();
        Cacheable::new("slow").on(&cache).run(ctx! {}, || {
            std::thread::sleep(Duration::from_secs(60));
            0
        });
        unreachable!("killed before the computation ends");
    }
    let server = RedisServer::start();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_lease_holder_delays_the_others_by_at_most_the_lease_time",
            "--nocapture",
        ])
        .env(HOLDER_URL, server.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut con = server.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let raw: Option<Vec<u8>> = redis::cmd("GET").arg("s:slow").query(&mut con).unwrap();
        if raw.is_some_and(|v| v.starts_with(b"\0")) {
            break;
        }
        assert!(Instant::now() < deadline, "the holder never took the lease");
        std::thread::sleep(Duration::from_millis(5));
    }
    let leased_at = Instant::now();
    holder.kill().unwrap();
    holder.wait().unwrap();

    let cache = Cache::new(config(&server.url())).unwrap();
    let computations = AtomicUsize::new(0);
    let waits: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let v = Cacheable::new("slow").on(&cache).run(ctx! {}, || {
                        computations.fetch_add(1, Ordering::SeqCst);
                        42
                    });
                    assert_eq!(v, 42);
                    leased_at.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let slowest = waits.iter().max().unwrap();
    println!(
        "waits after the holder died: slowest {} ms (lease time {} ms)",
        slowest.as_millis(),
        lease_ttl.as_millis()
    );
    // The lease was taken before `leased_at`, so it expires within `lease_ttl` of it; the
    // slack is a liveness bound, for the last poll interval on a loaded machine.
    assert!(
        *slowest <= lease_ttl + Duration::from_secs(1),
        "waited {slowest:?}"
    );
    assert!(
        *slowest >= lease_ttl / 2,
        "callers did not wait for the lease at all: {slowest:?}"
    );
    assert_eq!(
        computations.load(Ordering::SeqCst),
        1,
        "one waiter took over the lease and computed"
    );
}
