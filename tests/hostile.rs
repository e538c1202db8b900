//! Hostile and overloaded servers: a server out of memory (`maxmemory` + `noeviction`), a
//! read-only replica, a key someone else wrote as a list or a hash, bytes that are not JSON,
//! and values far larger than expected. Each call fails open (returns the computed value),
//! is counted, logs at most a line a second per template and kind, and never panics.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::RedisServer;

use support::logs;

fn capture_logs() {
    logs::capture();
}

/// The captured warnings that mention `needle` (each test uses its own prefix, so tests
/// that share a process do not count each other's lines).
fn lines_with(needle: &str) -> Vec<String> {
    logs::cacheable(log::Level::Warn, needle)
}

/// The most lines a second-per-kind throttle lets through in `elapsed`, for `kinds` kinds.
fn allowed(elapsed: Duration, kinds: usize) -> usize {
    (elapsed.as_secs() as usize + 1) * kinds
}

fn cache_on(url: &str, prefix: &str) -> Cache {
    Cache::new(
        Config::from_url(url)
            .unwrap()
            .prefix(prefix)
            .op_timeout(Duration::from_millis(500))
            // Error replies never open the breaker; keep it out of the way regardless.
            .breaker(0, Duration::from_secs(1)),
    )
    .unwrap()
}

fn item(cache: &Cache, calls: &AtomicUsize, id: u32) -> u32 {
    Cacheable::new("item:<<id>>")
        .on(cache)
        .run(ctx! { id }, || {
            calls.fetch_add(1, Ordering::SeqCst);
            id * 10
        })
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn out_of_memory_replies_fail_open_counted_and_throttled() {
    capture_logs();
    let server = RedisServer::start_with(&["--maxmemory-policy", "noeviction"]);
    // Fill the server past its bound: from now on every write gets `-OOM`.
    let mut con = server.client();
    let filler = vec![b'x'; 3 << 20];
    redis::cmd("SET")
        .arg("filler")
        .arg(filler)
        .query::<()>(&mut con)
        .unwrap();
    server.cli(&["CONFIG", "SET", "maxmemory", "1mb"]);
    let oom = redis::cmd("SET")
        .arg("probe")
        .arg(1)
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(oom.to_string().contains("OOM"), "{oom}");

    let cache = cache_on(&server.url(), "oom");
    let calls = AtomicUsize::new(0);
    let started = Instant::now();
    for i in 0..200 {
        assert_eq!(item(&cache, &calls, i % 5), (i % 5) * 10);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    for i in 0..50u32 {
        let v = rt.block_on(
            Cacheable::new("item:<<id>>")
                .on(&cache)
                .run_async(ctx! { id = i }, || async move { i * 10 }),
        );
        assert_eq!(v, i * 10);
    }
    let elapsed = started.elapsed();
    assert_eq!(calls.load(Ordering::SeqCst), 200, "nothing was cached");
    let stats = cache.stats();
    assert!(
        stats.errors >= 250,
        "every call's failed write counted: {stats:?}"
    );
    assert_eq!(stats.sets, 0, "{stats:?}");
    let lines = lines_with("oom:item:");
    assert!(!lines.is_empty(), "the fault is logged");
    assert!(lines.iter().any(|l| l.contains("OOM")), "{lines:?}");
    assert!(
        lines.len() <= allowed(elapsed, 3),
        "{} lines in {elapsed:?}: {lines:#?}",
        lines.len()
    );
    // Invalidation is the user's request: its failure is returned, not hidden.
    drop(con);
}

#[test]
fn a_read_only_replica_serves_reads_and_fails_writes_open() {
    capture_logs();
    let primary = RedisServer::start();
    let port = primary.port.to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    wait_until("the replica to sync", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    // A value written on the primary is a hit on the replica.
    let writer = cache_on(&primary.url(), "ro");
    let calls = AtomicUsize::new(0);
    assert_eq!(item(&writer, &calls, 1), 10);
    wait_until("the value to replicate", || {
        replica.cli(&["EXISTS", "ro:item:1"]).trim() == "1"
    });

    let cache = cache_on(&replica.url(), "ro");
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(item(&cache, &calls, 1), 10);
    assert_eq!(calls.load(Ordering::SeqCst), before, "a hit on the replica");
    assert_eq!(cache.stats().hits, 1);

    // A miss cannot take its lease nor write: `-READONLY`, answered from the closure.
    let started = Instant::now();
    for _ in 0..100 {
        assert_eq!(item(&cache, &calls, 2), 20);
    }
    let elapsed = started.elapsed();
    assert_eq!(calls.load(Ordering::SeqCst), before + 100);
    let stats = cache.stats();
    assert!(stats.errors >= 100, "{stats:?}");
    assert_eq!(stats.sets, 0, "{stats:?}");
    let lines = lines_with("ro:item:2");
    assert!(
        lines.iter().any(|l| l.contains("read only replica")),
        "{lines:?}"
    );
    assert!(lines.len() <= allowed(elapsed, 3), "{lines:#?}");
}

#[test]
fn a_key_someone_wrote_as_a_list_or_a_hash_fails_open() {
    capture_logs();
    let server = RedisServer::start();
    server.cli(&["RPUSH", "wt:item:1", "a", "b"]);
    server.cli(&["HSET", "wt:item:2", "field", "value"]);
    let cache = cache_on(&server.url(), "wt");
    let calls = AtomicUsize::new(0);
    let started = Instant::now();
    for _ in 0..100 {
        assert_eq!(item(&cache, &calls, 1), 10);
        assert_eq!(item(&cache, &calls, 2), 20);
    }
    let elapsed = started.elapsed();
    assert_eq!(calls.load(Ordering::SeqCst), 200);
    let stats = cache.stats();
    assert!(stats.errors >= 200, "{stats:?}");
    assert_eq!(stats.sets, 0, "{stats:?}");
    // The other writer's keys are left as they were.
    assert_eq!(server.cli(&["TYPE", "wt:item:1"]).trim(), "list");
    assert_eq!(server.cli(&["TYPE", "wt:item:2"]).trim(), "hash");
    let lines = lines_with("wt:item:");
    assert!(lines.iter().any(|l| l.contains("WRONGTYPE")), "{lines:?}");
    // Two keys of one template: still a line a second per kind.
    assert!(lines.len() <= allowed(elapsed, 3), "{lines:#?}");
}

#[test]
fn bytes_that_are_not_json_are_recomputed_replaced_and_logged_once_a_second() {
    capture_logs();
    let server = RedisServer::start();
    let cache = cache_on(&server.url(), "nj");
    let calls = AtomicUsize::new(0);
    let started = Instant::now();
    for i in 0..100 {
        // Another writer keeps putting foreign bytes at the key.
        server.cli(&["SET", "nj:item:1", "\u{1}not json{"]);
        assert_eq!(item(&cache, &calls, 1), 10, "round {i}");
        // Replaced by the computed value.
        assert_eq!(server.cli(&["GET", "nj:item:1"]).trim(), "10");
    }
    let elapsed = started.elapsed();
    assert_eq!(calls.load(Ordering::SeqCst), 100);
    let stats = cache.stats();
    assert_eq!(stats.decode_errors, 100, "{stats:?}");
    assert_eq!(stats.sets, 100, "{stats:?}");
    let lines = lines_with("nj:item:1");
    assert!(!lines.is_empty());
    assert!(
        lines.len() <= allowed(elapsed, 1),
        "{} lines in {elapsed:?}",
        lines.len()
    );
    // Left alone, the replaced value is a hit.
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(item(&cache, &calls, 1), 10);
    assert_eq!(calls.load(Ordering::SeqCst), before);
}

#[test]
fn a_value_far_larger_than_expected_is_not_served_nor_stored() {
    capture_logs();
    let server = RedisServer::start();
    let cache = Cache::new(
        Config::from_url(&format!("{}?max_value_bytes=1024", server.url()))
            .unwrap()
            .prefix("big")
            .op_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let calls = AtomicUsize::new(0);
    let list = |n: usize| {
        Cacheable::new("list:<<n>>").on(&cache).run(ctx! { n }, || {
            calls.fetch_add(1, Ordering::SeqCst);
            vec![7u32; n]
        })
    };

    // Someone else wrote 4 MB of valid JSON where a small list lives: not served, counted,
    // recomputed and replaced.
    let huge = format!("[{}1]", "1,".repeat(2 << 20));
    let mut con = server.client();
    redis::cmd("SET")
        .arg("big:list:3")
        .arg(&huge)
        .query::<()>(&mut con)
        .unwrap();
    let errors = cache.stats().errors;
    assert_eq!(list(3), vec![7, 7, 7]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().errors, errors + 1);
    let stored: String = redis::cmd("GET").arg("big:list:3").query(&mut con).unwrap();
    assert_eq!(stored, "[7,7,7]");
    assert!(lines_with("big:list:3")
        .iter()
        .any(|l| l.contains("max_value_bytes")));

    // A computed value over the bound: returned every time, never stored, counted.
    for round in 1..=5 {
        assert_eq!(list(1000).len(), 1000);
        assert_eq!(calls.load(Ordering::SeqCst), 1 + round);
    }
    // At most the short-lived marker of a computation that stored nothing.
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg("big:list:1000")
        .query(&mut con)
        .unwrap();
    assert!(raw.as_ref().is_none_or(|r| r.len() < 100), "{raw:?}");
    assert_eq!(cache.get::<Vec<u32>>("list:1000").unwrap(), None);
    let stats = cache.stats();
    assert_eq!(stats.unstorable, 5, "{stats:?}");
    assert_eq!(stats.sets, 1, "{stats:?}");
    // Logged once a minute per template.
    let lines = lines_with("big:list:1000");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("max_value_bytes (1024)"), "{}", lines[0]);

    // An explicit set over the bound is an error, and the older value does not linger.
    cache.set("note", &"short", 60).unwrap();
    let err = cache.set("note", &"y".repeat(5000), 60).unwrap_err();
    assert_eq!(err.kind(), cacheable::ErrorKind::Serialize, "{err}");
    assert_eq!(cache.get::<String>("note").unwrap(), None);

    // Without a bound, a large value is stored as usual.
    let open = cache_on(&server.url(), "open");
    let big = Cacheable::new("blob")
        .on(&open)
        .run(ctx! {}, || "z".repeat(3 << 20));
    assert_eq!(big.len(), 3 << 20);
    assert_eq!(open.stats().sets, 1);
}

#[test]
fn a_caller_waiting_on_another_process_does_not_take_its_oversized_value() {
    let server = RedisServer::start();
    // Two processes sharing keys: one with no bound on values, one with a bound of 1 KiB.
    let unbounded = cache_on(&server.url(), "wait");
    let bounded = Cache::new(
        Config::from_url(&format!("{}?max_value_bytes=1024", server.url()))
            .unwrap()
            .prefix("wait")
            .op_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let holder = std::thread::spawn(move || {
        Cacheable::new("report").on(&unbounded).run(ctx! {}, || {
            std::thread::sleep(Duration::from_millis(300));
            "x".repeat(5000)
        })
    });
    std::thread::sleep(Duration::from_millis(50));
    // The bounded cache finds the lease, waits for its holder, then finds 5,000 bytes:
    // over its bound, so not served; it computes and replaces them.
    let errors = bounded.stats().errors;
    let mine = Cacheable::new("report")
        .on(&bounded)
        .run(ctx! {}, || "small".to_string());
    assert!(mine == "small", "served the holder's {} bytes", mine.len());
    assert_eq!(holder.join().unwrap().len(), 5000);
    assert_eq!(bounded.stats().errors, errors + 1, "{:?}", bounded.stats());
    let stored: String = redis::cmd("GET")
        .arg("wait:report")
        .query(&mut server.client())
        .unwrap();
    assert_eq!(stored, "\"small\"");
}
