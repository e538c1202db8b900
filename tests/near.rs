//! The near cache: hits from process memory that send nothing to Redis, kept correct by
//! Redis's invalidation messages whoever changes a key, dropped whole when its tracking
//! connection is lost or the server restarts.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use std::time::{Duration, Instant};
use support::{first_near_hit, RedisServer};

/// The private server's configuration under `prefix`, for the tests to add to.
fn config(server: &RedisServer, prefix: &str) -> Config {
    Config::from_url(&server.url()).unwrap().prefix(prefix)
}

fn near(server: &RedisServer, prefix: &str) -> Cache {
    Cache::new(config(server, prefix).near_cache(10_000)).unwrap()
}

fn plain(server: &RedisServer, prefix: &str) -> Cache {
    Cache::new(config(server, prefix)).unwrap()
}

/// Reads `key` through `cache`: the cached value, or -1 when it had to compute.
fn read(cache: &Cache, id: u32) -> i64 {
    Cacheable::new("v:<<id>>")
        .on(cache)
        .run(ctx! { id }, || -1i64)
}

fn commands(server: &RedisServer) -> u64 {
    let info = server.cli(&["INFO", "stats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Waits until the near cache serves a key without Redis (its tracking is confirmed).
fn until_near_hit(cache: &Cache, id: u32) {
    first_near_hit(cache, WITHIN, || read(cache, id));
}

/// How long a near cache may take to serve its first hit.
const WITHIN: Duration = Duration::from_secs(5);

#[test]
fn near_hits_send_nothing_to_the_server() {
    let server = RedisServer::start();
    // Written before the cache (and its tracking connection) exists: a `SET` after it
    // sends an invalidation that, late on a loaded machine, could evict the entry during
    // the 1,000 reads (as it should) and make one of them a Redis hit.
    server.cli(&["SET", "n1:v:1", "41", "EX", "600"]);
    let cache = near(&server, "n1");
    assert_eq!(read(&cache, 1), 41, "read through Redis");
    until_near_hit(&cache, 1);
    let before = commands(&server);
    let near_before = cache.stats().near_hits;
    for _ in 0..1000 {
        assert_eq!(read(&cache, 1), 41);
    }
    let sent = commands(&server) - before;
    let stats = cache.stats();
    println!("1,000 near hits: {sent} commands reached the server; {stats:?}");
    assert_eq!(stats.near_hits - near_before, 1000);
    // The tracking connection's health check (a PING every 500 ms) and this INFO may land.
    assert!(sent <= 5, "{sent} commands for 1,000 near hits");
}

/// A value cached as `Arc<T>` (serde's `rc` feature) is stored in Redis as `T` is, and the
/// near cache hands out the one `Arc` it holds: a hit costs a reference count, not a copy.
#[test]
fn arc_values_are_shared_by_near_hits_not_copied() {
    use std::sync::Arc;
    let server = RedisServer::start();
    let cache = near(&server, "n9");
    let read = || {
        Cacheable::new("list:<<id>>")
            .on(&cache)
            .run(ctx! { id = 1 }, || Arc::new(vec![String::from("a"); 100]))
    };
    let computed = read();
    assert_eq!(
        server.cli(&["GET", "n9:list:1"]).trim(),
        serde_json::to_string(&*computed).unwrap(),
        "stored as the plain value"
    );
    let held = first_near_hit(&cache, WITHIN, read);
    let again = read();
    assert!(Arc::ptr_eq(&held, &again), "two near hits, two copies");
    assert_eq!(*again, *computed);
}

#[test]
fn async_near_hits_too() {
    let server = RedisServer::start();
    // Before the cache exists, as in `near_hits_send_nothing_to_the_server`.
    server.cli(&["SET", "n2:v:2", "7", "EX", "600"]);
    let cache = near(&server, "n2");
    until_near_hit(&cache, 2);
    let rt = support::current_thread();
    let before = cache.stats().near_hits;
    for _ in 0..100 {
        let id = 2u32;
        let v = rt.block_on(
            Cacheable::new("v:<<id>>")
                .on(&cache)
                .run_async(ctx! { id }, || async { -1i64 }),
        );
        assert_eq!(v, 7);
    }
    assert_eq!(cache.stats().near_hits - before, 100);
}

/// Rounds of: A holds the key near; B (or a raw client) changes it; A is read until it
/// serves the new value. Returns the delays, and how many reads after `bound` still served
/// the old value.
fn changes_reach_a(
    a: &Cache,
    b: &Cache,
    server: &RedisServer,
    rounds: u32,
    bound: Duration,
    distinct_ids: bool,
) -> (Vec<Duration>, u32) {
    let mut raw = server.client();
    let mut delays = Vec::with_capacity(rounds as usize);
    let mut stale = 0;
    for round in 0..rounds {
        let id = if distinct_ids {
            1000 + round
        } else {
            round % 50
        };
        let key = format!("{}:v:{id}", a.config().get_prefix());
        let old = i64::from(round) * 2;
        let new = old + 1;
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(old)
            .arg("EX")
            .arg(600)
            .query(&mut raw)
            .unwrap();
        // A reads it until it holds it near (the first read may race the SET's own
        // invalidation and be held back).
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let before = a.stats().near_hits;
            let seen = read(a, id);
            if seen == old && a.stats().near_hits > before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: A never held {old}"
            );
        }
        // The change: a raw SET, B's key invalidation, or B's pattern invalidation.
        let changed = match round % 3 {
            0 => {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(new)
                    .arg("EX")
                    .arg(600)
                    .query(&mut raw)
                    .unwrap();
                Instant::now()
            }
            1 => {
                Invalidate::new(["v:<<id>>"])
                    .on(b)
                    .now(ctx! { id })
                    .unwrap();
                let at = Instant::now();
                b.set(&format!("v:{id}"), &new, 600).unwrap();
                at
            }
            _ => {
                Invalidate::new(["v:<<id>>*"])
                    .on(b)
                    .now(ctx! { id })
                    .unwrap();
                let at = Instant::now();
                b.set(&format!("v:{id}"), &new, 600).unwrap();
                at
            }
        };
        // The old value is gone from A once the change is made; how long until A sees it.
        loop {
            // When this read began: A served the old value up to here, at the latest.
            let after = changed.elapsed();
            let seen = read(a, id);
            if seen == old {
                if after > bound {
                    stale += 1;
                    break;
                }
                continue;
            }
            delays.push(after);
            break;
        }
    }
    delays.sort();
    (delays, stale)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn another_process_changes_reach_the_near_cache_at_once() {
    let server = RedisServer::start();
    let a = near(&server, "x");
    let b = plain(&server, "x");
    until_near_hit(&a, 0);
    // The invalidation travels on loopback and is applied on the crate's IO thread: well
    // under a millisecond on a quiet machine (the printed p99), more when the two cores are
    // busy with the rest of the test command, which this bound allows for.
    let bound = Duration::from_millis(200);
    let (delays, stale) = changes_reach_a(&a, &b, &server, 10_000, bound, false);
    println!(
        "10,000 changes by another client: A stopped serving the old value after p50 {:?}, p99 {:?}, max {:?}; {stale} stale reads after {bound:?}",
        quantile(&delays, 0.5),
        quantile(&delays, 0.99),
        delays.last().copied().unwrap_or_default()
    );
    assert_eq!(stale, 0);
}

#[test]
fn without_the_invalidation_messages_the_same_test_finds_stale_reads() {
    let server = RedisServer::start();
    let a = Cache::new(cacheable::__private::near_cache_ignores_invalidations(
        config(&server, "y").near_cache(10_000),
    ))
    .unwrap();
    let b = plain(&server, "y");
    until_near_hit(&a, 0);
    // Raw SETs only (B's own invalidations evict nothing of A's either, but the control
    // must show that the messages are what keeps A right).
    let (_, stale) = changes_reach_a(&a, &b, &server, 60, Duration::from_millis(20), true);
    println!("without invalidation messages: {stale} stale reads of 60");
    assert!(
        stale > 0,
        "the control found no stale read: the test cannot fail"
    );
}

#[test]
fn a_killed_tracking_connection_or_a_restart_never_serves_what_was_held() {
    let mut server = RedisServer::start();
    let a = near(&server, "k");
    for id in 0..20 {
        server.cli(&["SET", &format!("k:v:{id}"), "1", "EX", "600"]);
        until_near_hit(&a, id);
    }
    // Kill every client of the server (A's tracking connection included), then change the
    // keys behind A's back.
    server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    for id in 0..20 {
        server.cli(&["SET", &format!("k:v:{id}"), "2", "EX", "600"]);
    }
    for id in 0..20 {
        // 2, or -1 when a killed pooled connection failed the read open.
        let v = read(&a, id);
        assert!(
            v == 2 || v == -1,
            "key {id}: A served {v}, held before the kill"
        );
    }
    for id in 0..20 {
        assert_eq!(
            read(&a, id),
            2,
            "key {id}: the new value, once connections are back"
        );
    }
    // Hold them near again, then restart the server: the keys are gone, then rewritten.
    for id in 0..20 {
        until_near_hit(&a, id);
    }
    server.restart();
    for id in 0..20 {
        server.cli(&["SET", &format!("k:v:{id}"), "3", "EX", "600"]);
    }
    for id in 0..20 {
        let v = read(&a, id);
        assert!(
            v == 3 || v == -1,
            "key {id}: A served {v} after the restart"
        );
    }
    // And the near cache comes back by itself.
    until_near_hit(&a, 0);
}

#[test]
fn flushdb_drops_the_near_cache() {
    let server = RedisServer::start();
    let a = near(&server, "f");
    server.cli(&["SET", "f:v:1", "5", "EX", "600"]);
    until_near_hit(&a, 1);
    server.cli(&["FLUSHDB"]);
    let deadline = Instant::now() + Duration::from_millis(500);
    while read(&a, 1) == 5 {
        assert!(Instant::now() < deadline, "still served after FLUSHDB");
    }
    assert_eq!(read(&a, 1), -1, "computed again: the key is gone");
}

#[test]
fn the_invalidating_process_evicts_its_own_near_cache_before_invalidate_returns() {
    let server = RedisServer::start();
    let a = near(&server, "own");
    server.cli(&["SET", "own:v:1", "5", "EX", "600"]);
    server.cli(&["SET", "own:v:2", "6", "EX", "600"]);
    until_near_hit(&a, 1);
    until_near_hit(&a, 2);
    let id = 1u32;
    Invalidate::new(["v:<<id>>"])
        .on(&a)
        .now(ctx! { id })
        .unwrap();
    assert_eq!(read(&a, 1), -1, "evicted at once by the key");
    Invalidate::new(["v:*"]).on(&a).now(ctx! {}).unwrap();
    assert_eq!(read(&a, 2), -1, "evicted at once by the pattern");
}

#[test]
fn near_entries_never_outlive_the_redis_ttl() {
    let server = RedisServer::start();
    let a = near(&server, "ttl");
    server.cli(&["SET", "ttl:v:1", "5", "PX", "300"]);
    until_near_hit(&a, 1);
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(read(&a, 1), -1, "served after the key expired");
}

#[test]
fn lease_markers_never_enter_the_near_cache() {
    let server = RedisServer::start();
    let a = near(&server, "lease");
    // A computation in progress elsewhere: its lease is in the key.
    let _: () = redis::cmd("SET")
        .arg("lease:v:1")
        .arg(&b"\0cacheable-lease:peer-0"[..])
        .arg("PX")
        .arg(300)
        .query(&mut server.client())
        .unwrap();
    let started = Instant::now();
    let v = read(&a, 1);
    assert_eq!(v, -1, "the lease is no value");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it waited for the lease"
    );
    assert_eq!(a.stats().near_hits, 0);
}

#[test]
fn the_byte_bound_holds_and_a_value_over_it_is_served_from_redis() {
    let server = RedisServer::start();
    // 16 entries make one shard, so the 5,000 bytes are one bound: four of the ~1 KB
    // entries below (1,002 bytes of JSON and a 15-byte key each) fit, a fifth does not.
    let a = Cache::new(
        config(&server, "bytes")
            .near_cache(16)
            .near_cache_max_bytes(5_000),
    )
    .unwrap();
    let text = |id: u32, len: usize| {
        Cacheable::new("t:<<id>>:<<len>>")
            .on(&a)
            .run(ctx! { id, len }, || format!("{id:0len$}"))
    };
    // Tracking confirmed (the first key held). A miss computes and writes (nothing enters
    // the near cache); the next read, a Redis hit, offers each value to it; the third read
    // finds what the bound let it keep.
    first_near_hit(&a, WITHIN, || text(0, 1_000));
    for _ in 0..2 {
        for id in 0..12 {
            assert_eq!(text(id, 1_000), format!("{id:01000}"));
        }
    }
    let before = a.stats().near_hits;
    for id in 0..12 {
        assert_eq!(text(id, 1_000), format!("{id:01000}"));
    }
    let held = a.stats().near_hits - before;
    assert!(
        held <= 4,
        "{held} of 12 ~1 KB entries served near under 5,000 bytes"
    );
    // Still a working near cache under its bound.
    assert_eq!(
        first_near_hit(&a, WITHIN, || text(5, 1_000)),
        format!("{:01000}", 5)
    );
    // A 6,000-byte value is over the whole bound: never kept, always right.
    let before = a.stats().near_hits;
    for _ in 0..5 {
        assert_eq!(text(99, 6_000).len(), 6_000);
    }
    assert_eq!(
        a.stats().near_hits,
        before,
        "a value over the bound was kept"
    );
}

/// A compressible value weighed its compressed bytes: 20,000 bytes of text stored as ~100
/// bytes of LZ4 counted as ~100 against the bound, and a near cache bounded to 5,000 bytes
/// held values taking four times that in memory. It weighs what it decompresses to now.
#[cfg(feature = "compress")]
#[test]
fn the_byte_bound_weighs_what_a_compressed_value_takes_in_memory() {
    let server = RedisServer::start();
    let a = Cache::new(
        config(&server, "lz4bytes")
            .near_cache(16)
            .near_cache_max_bytes(5_000)
            .compress_over(1024),
    )
    .unwrap();
    let text = |id: u32, len: usize| {
        Cacheable::new("t:<<id>>:<<len>>")
            .on(&a)
            .run(ctx! { id, len }, || "a".repeat(len) + &id.to_string())
    };
    first_near_hit(&a, WITHIN, || text(0, 10));
    let before = a.stats().near_hits;
    for _ in 0..5 {
        assert_eq!(text(1, 20_000).len(), 20_001);
    }
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(a.full_key("t:1:20000"))
        .query(&mut server.client())
        .unwrap();
    assert!(
        stored.len() < 1_000,
        "stored compressed: {} bytes",
        stored.len()
    );
    assert_eq!(
        a.stats().near_hits,
        before,
        "a value of 20,000 bytes in memory was kept under a 5,000-byte bound"
    );
}

cacheable::cache_fn! {
    #[cache(key = "balance:<<id>>", ttl = 60, near = false, cache = cache)]
    fn balance(cache: &Cache, id: u32) -> i64 {
        let _ = id;
        -1
    }
}

/// `near(false)` (and `near = false` in `cache_fn!`): the store answers every call, so a
/// write by another process is read at once, even by a near cache that never hears of it.
#[test]
fn a_call_without_the_near_cache_reads_another_process_write_at_once() {
    let server = RedisServer::start();
    // A near cache deaf to Redis's messages: what it holds stays until its TTL.
    let a = Cache::new(cacheable::__private::near_cache_ignores_invalidations(
        config(&server, "own").near_cache(10_000),
    ))
    .unwrap();
    // Written by another process: a plain SET, which no cache of this process sees.
    let set = |key: &str, v: i64| {
        let _: () = redis::cmd("SET")
            .arg(format!("own:{key}"))
            .arg(v.to_string())
            .arg("EX")
            .arg(60)
            .query(&mut server.client())
            .unwrap();
    };
    set("v:1", 1);
    until_near_hit(&a, 1);
    set("v:1", 2);
    assert_eq!(
        read(&a, 1),
        1,
        "the control: the deaf near cache serves its copy"
    );
    let fresh = |cache: &Cache| {
        let mut outcome = cacheable::Outcome::default();
        let v = Cacheable::new("v:<<id>>")
            .on(cache)
            .near(false)
            .outcome(&mut outcome)
            .run(ctx! { id = 1 }, || -1i64);
        (v, outcome)
    };
    assert_eq!(fresh(&a), (2, cacheable::Outcome::Hit));
    // Such calls never fill the near cache either.
    set("v:2", 5);
    let near_hits = a.stats().near_hits;
    for _ in 0..20 {
        let mut outcome = cacheable::Outcome::default();
        Cacheable::new("v:<<id>>")
            .on(&a)
            .near(false)
            .outcome(&mut outcome)
            .run(ctx! { id = 2 }, || -1i64);
        assert_eq!(outcome, cacheable::Outcome::Hit);
    }
    assert_eq!(a.stats().near_hits, near_hits, "{:?}", a.stats());

    // The same through `cache_fn!`, its outcome read with `Outcome::of`.
    set("balance:3", 10);
    for expected in [10, 11, 11] {
        let (v, outcome) = cacheable::Outcome::of(|| balance(&a, 3));
        assert_eq!((v, outcome), (expected, Some(cacheable::Outcome::Hit)));
        set("balance:3", 11);
    }
    // Async too.
    let rt = support::current_thread();
    set("v:4", 4);
    let (v, outcome) = rt.block_on(cacheable::Outcome::of_async(async {
        Cacheable::new("v:<<id>>")
            .on(&a)
            .near(false)
            .run_async(ctx! { id = 4 }, || async { -1i64 })
            .await
    }));
    assert_eq!((v, outcome), (4, Some(cacheable::Outcome::Hit)));
}
