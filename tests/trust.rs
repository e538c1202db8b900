//! Invalidation that nothing undoes, on every store (the embedded one, one server, a
//! cluster, Sentinel), with and without the near cache: one option against another.
//!
//! - a key kept alive by sliding reads stays in its tag;
//! - a value whose TTL `ttl_from` chose, longer than the call's, stays in its tag;
//! - a slide never extends a value past the life `ttl_from` gave it;
//! - another `Cache` of the process on the same store and prefix serves nothing that an
//!   invalidation on the first named, from the moment it returns;
//! - the builder refuses a tag placeholder that its key does not have, as `cache_fn!` does.

mod support;

use cacheable::{ctx, Cache, Cacheable, Invalidate, Outcome};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{suite, Backend};

suite![
    a_sliding_key_stays_in_its_tag,
    a_ttl_from_longer_than_the_ttl_stays_in_its_tag,
    a_slide_never_outlives_the_life_ttl_from_gave,
    another_cache_of_the_process_serves_nothing_invalidated,
    a_tag_placeholder_the_key_lacks_is_refused,
];

support::suite_tests! {
    memory = memory(Without),
    redis = redis(Both),
    cluster = cluster(Both),
    sentinel = sentinel(Both),
}

/// The configuration of a case's cache: a prefix of its own on each backend (the suites
/// with and without the near cache share their servers).
fn config(b: &Backend, prefix: &str) -> cacheable::Config {
    let near = if b.near { "-near" } else { "" };
    b.config().prefix(format!("{prefix}{near}"))
}

/// Sliding reads keep a key (TTL 1 s) for 3.5 s, longer than the tag entry its write made
/// (lease wait + 12 lease times + TTL: 2.3 s here): the reads push the entry too, so the tag
/// still reaches the key.
fn a_sliding_key_stays_in_its_tag(b: &Backend) {
    let cache = Cache::new(
        config(b, "slidetag")
            .lease_ttl(Duration::from_millis(100))
            .lease_wait(Duration::from_millis(100)),
    )
    .unwrap();
    let computed = AtomicU64::new(0);
    let read = || {
        Cacheable::new("session:<<id>>")
            .ttl(1)
            .sliding(true)
            .tags(["user:<<id>>"])
            .on(&cache)
            .run(ctx! { id = 7 }, || {
                computed.fetch_add(1, Ordering::SeqCst) + 1
            })
    };
    assert_eq!(read(), 1);
    let until = Instant::now() + Duration::from_millis(3500);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(read(), 1, "{}: the sliding reads keep the value", b.name);
    }
    let deleted = Invalidate::tags(["user:<<id>>"])
        .on(&cache)
        .now(ctx! { id = 7 })
        .unwrap();
    assert_eq!(deleted, 1, "{}: the tag still names the key", b.name);
    assert_eq!(read(), 2, "{}: the invalidated value is not served", b.name);
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Token {
    value: u64,
    expires_in: u64,
}

/// A value whose `ttl_from` life (60 s) is longer than the call's TTL (1 s) is recorded in
/// its tag for the longer life.
fn a_ttl_from_longer_than_the_ttl_stays_in_its_tag(b: &Backend) {
    let cache = Cache::new(
        config(b, "ttlfromtag")
            .lease_ttl(Duration::from_millis(100))
            .lease_wait(Duration::from_millis(100)),
    )
    .unwrap();
    let computed = AtomicU64::new(0);
    let read = || {
        Cacheable::new("token:<<id>>")
            .ttl(1)
            .ttl_from(|t: &Token| Duration::from_secs(t.expires_in))
            .tags(["client:<<id>>"])
            .on(&cache)
            .run(ctx! { id = 3 }, || Token {
                value: computed.fetch_add(1, Ordering::SeqCst) + 1,
                expires_in: 60,
            })
            .value
    };
    assert_eq!(read(), 1);
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(read(), 1, "{}: the value lives its 60 s", b.name);
    let deleted = Invalidate::tags(["client:<<id>>"])
        .on(&cache)
        .now(ctx! { id = 3 })
        .unwrap();
    assert_eq!(deleted, 1, "{}: the tag still names the key", b.name);
    assert_eq!(read(), 2, "{}: the invalidated token is not served", b.name);
}

/// Sliding reads (TTL 10 s) of a token whose `ttl_from` gives it 1 s never keep it past
/// that second.
fn a_slide_never_outlives_the_life_ttl_from_gave(b: &Backend) {
    let cache = Cache::new(config(b, "slidecap")).unwrap();
    let computed = AtomicU64::new(0);
    let read = || {
        Cacheable::new("token:<<id>>")
            .ttl(10)
            .sliding(true)
            .ttl_from(|t: &Token| Duration::from_millis(t.expires_in))
            .on(&cache)
            .run(ctx! { id = 1 }, || Token {
                value: computed.fetch_add(1, Ordering::SeqCst) + 1,
                expires_in: 1000,
            })
            .value
    };
    let started = Instant::now();
    assert_eq!(read(), 1);
    // Slid again and again within the token's life: each read is a hit.
    while started.elapsed() < Duration::from_millis(600) {
        assert_eq!(read(), 1, "{}", b.name);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Past it, the token is gone however often it was read.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        read(),
        2,
        "{}: the slide kept the token past its life",
        b.name
    );
}

/// Two caches on one store and prefix, as a global one and one built for a handler: once
/// `Invalidate` returns on one, the other serves the new value (its near cache evicted by
/// then, not when Redis's tracking message comes).
fn another_cache_of_the_process_serves_nothing_invalidated(b: &Backend) {
    let first = Cache::new(config(b, "siblings")).unwrap();
    let second = b.peer(&first);
    let version = AtomicU64::new(0);
    let read = |cache: &Cache| {
        Cacheable::new("balance:<<id>>")
            .ttl(60)
            .on(cache)
            .run(ctx! { id = 1 }, || version.load(Ordering::SeqCst))
    };
    let rounds = if b.url.is_some() { 300 } else { 30 };
    for round in 0..rounds {
        let now = version.load(Ordering::SeqCst);
        // Both warm (the second from its near cache from the second read on).
        assert_eq!(read(&first), now);
        assert_eq!(read(&second), now);
        assert_eq!(read(&second), now);
        version.fetch_add(1, Ordering::SeqCst);
        Invalidate::new(["balance:<<id>>"])
            .on(&first)
            .now(ctx! { id = 1 })
            .unwrap();
        assert_eq!(
            read(&second),
            now + 1,
            "{}: round {round}: the other cache served the invalidated value",
            b.name
        );
    }
}

/// `cache_fn!` refuses `tags = ["user:<<user_id>>"]` on a key without `user_id`, and so does
/// the builder: otherwise one key could sit in several tags depending on the call.
fn a_tag_placeholder_the_key_lacks_is_refused(b: &Backend) {
    let cache = Cache::new(config(b, "tagrule")).unwrap();
    let errors = cache.stats().errors;
    let mut outcome = Outcome::default();
    let v = Cacheable::new("page:<<page>>")
        .tags(["user:<<user_id>>"])
        .outcome(&mut outcome)
        .on(&cache)
        .run(ctx! { page = 1, user_id = 2 }, || 5);
    assert_eq!(v, 5, "the computation answers");
    assert_eq!(outcome, Outcome::Unavailable, "{}", b.name);
    assert_eq!(
        cache.count("page:*").unwrap(),
        0,
        "{}: nothing stored",
        b.name
    );
    assert_eq!(cache.stats().errors, errors + 1, "{}: counted", b.name);
}

/// `SLOWLOG`'s slowest command since the last `SLOWLOG RESET`, in microseconds.
#[cfg(feature = "redis")]
fn slowest_us(con: &mut redis::Connection) -> (i64, String) {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1000)
        .query(con)
        .unwrap();
    let mut slowest = (0, String::new());
    for entry in entries {
        let redis::Value::Array(fields) = entry else {
            continue;
        };
        let us: i64 = redis::from_redis_value(fields[2].clone()).unwrap();
        if us > slowest.0 {
            let args: Vec<String> = redis::from_redis_value(fields[3].clone()).unwrap_or_default();
            slowest = (us, args.into_iter().take(2).collect::<Vec<_>>().join(" "));
        }
    }
    slowest
}

/// A tag of 100,000 keys goes page by page: every key goes, the count is the count deleted,
/// and no Redis command takes long (a liveness bound here; BENCHMARKS.md has the figures
/// for 1,000,000). Read and forgotten whole, under one operation timeout, such a tag times
/// out, or lands and reports nothing deleted.
#[cfg(feature = "redis")]
#[test]
fn a_tag_of_100_000_keys_goes_whole_page_by_page() {
    const N: usize = 100_000;
    // Every command over 1 ms is logged, however many.
    let server = support::RedisServer::start_with(&[
        "--slowlog-log-slower-than",
        "1000",
        "--slowlog-max-len",
        "100000",
    ]);
    let cache = Cache::new(
        cacheable::Config::from_url(&server.url())
            .unwrap()
            .prefix("big"),
    )
    .unwrap();
    // Written behind the crate's back, as its own writes lay them out: the values, and the
    // tag set scored by expiry (ms since the epoch).
    let mut con = server.client();
    let set = cache.full_key("[tag]:shelf:1");
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 3_600_000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(10_000) {
        let mut pipe = redis::pipe();
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(&set);
        for i in chunk {
            let key = cache.full_key(&format!("item:1:{i}"));
            pipe.cmd("SET")
                .arg(&key)
                .arg(*i)
                .arg("EX")
                .arg(3600)
                .ignore();
            zadd.arg(expiry).arg(key);
        }
        pipe.add_command(zadd).ignore();
        let () = pipe.query(&mut con).unwrap();
    }
    let () = redis::cmd("SLOWLOG").arg("RESET").query(&mut con).unwrap();
    let started = Instant::now();
    let deleted = Invalidate::tags(["shelf:<<shelf>>"])
        .on(&cache)
        .now(ctx! { shelf = 1 })
        .unwrap();
    let took = started.elapsed();
    let (slowest, command) = slowest_us(&mut con);
    assert_eq!(deleted, N as u64, "the count is the count deleted");
    let left: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(left, 0, "every key and the set went");
    println!("{N} keys in {took:?}; slowest Redis command {slowest} µs ({command})");
    assert!(
        slowest < 100_000,
        "one command took {slowest} µs ({command}): the tag must go in pages"
    );
}

/// A tag whose keys sit on every primary of a cluster: deleted node by node, all of them.
#[cfg(feature = "cluster")]
#[test]
fn a_tag_over_every_primary_goes_whole() {
    let cluster = support::RedisCluster::start();
    let cache = Cache::new(
        cacheable::Config::from_url(&cluster.url())
            .unwrap()
            .prefix("spread"),
    )
    .unwrap();
    let n = 3000u64;
    for i in 0..n {
        Cacheable::new("item:<<shelf>>:<<i>>")
            .tags(["shelf:<<shelf>>"])
            .on(&cache)
            .run(ctx! { shelf = 2, i }, || i);
    }
    let on_each: Vec<usize> = cluster
        .primaries()
        .iter()
        .map(|p| cluster.keys_on(*p, "spread:item:*").len())
        .collect();
    assert!(on_each.iter().all(|&k| k > 0), "{on_each:?}");
    let deleted = Invalidate::tags(["shelf:<<shelf>>"])
        .on(&cache)
        .now(ctx! { shelf = 2 })
        .unwrap();
    assert_eq!(deleted, n);
    assert_eq!(cache.count("item:*").unwrap(), 0);
}

/// An invalidation that cannot reach Redis (frozen) is queued: `now` and `outcome` say so,
/// this process serves nothing it names meanwhile (near cache, store, a second cache of the
/// process), and it lands once Redis answers again, so the old value is not served after.
#[cfg(feature = "redis")]
#[test]
fn an_invalidation_that_cannot_land_is_queued_and_held_back_until_it_does() {
    let server = support::RedisServer::start();
    let config = cacheable::Config::from_url(&server.url())
        .unwrap()
        .prefix("queued")
        .near_cache(1000)
        .op_timeout(Duration::from_millis(200));
    let cache = Cache::new(config.clone()).unwrap();
    let other = Cache::new(config).unwrap();
    let version = AtomicU64::new(1);
    let read = |cache: &Cache, outcome: &mut Outcome| {
        Cacheable::new("wallet:<<id>>")
            .ttl(600)
            .tags(["user:<<id>>"])
            .outcome(outcome)
            .on(cache)
            .run(ctx! { id = 9 }, || version.load(Ordering::SeqCst))
    };
    let mut outcome = Outcome::default();
    assert_eq!(read(&cache, &mut outcome), 1);
    support::first_near_hit(&cache, Duration::from_secs(5), || {
        read(&cache, &mut Outcome::default())
    });
    assert_eq!(read(&other, &mut outcome), 1);

    server.pause();
    version.store(2, Ordering::SeqCst);
    let mut done = cacheable::Invalidation::default();
    let saved: Result<u8, ()> = Invalidate::new(["wallet:<<id>>"])
        .on(&cache)
        .outcome(&mut done)
        .try_run(ctx! { id = 9 }, || Ok(7));
    assert_eq!(saved, Ok(7), "the mutation's value comes back");
    let cacheable::Invalidation::Queued { error, .. } = &done else {
        panic!("the caller is told the invalidation was queued: {done:?}");
    };
    assert!(error.is_queued(), "{error:#}");
    let err = Invalidate::tags(["user:<<id>>"])
        .on(&other)
        .now(ctx! { id = 9 })
        .unwrap_err();
    assert!(err.is_queued(), "{err:#}");
    assert!(cache.stats().pending_invalidations >= 1);
    // Held back in this process, from every tier and both caches, though the near caches
    // still hold version 1 and Redis will, once thawed.
    for c in [&cache, &other] {
        assert_eq!(read(c, &mut outcome), 2);
        assert_eq!(outcome, Outcome::Unavailable);
    }
    server.resume();
    for c in [&cache, &other] {
        assert_eq!(read(c, &mut outcome), 2, "held back until it lands");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.stats().pending_invalidations > 0 {
        assert!(
            Instant::now() < deadline,
            "the queued invalidation never landed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut con = server.client();
    let left: Option<String> = redis::cmd("GET")
        .arg(cache.full_key("wallet:9"))
        .query(&mut con)
        .unwrap();
    // Gone, or replaced by the current version: a read after the invalidation landed (the
    // reads just above may come after it on a slow machine) computes and stores 2.
    assert!(
        left.is_none() || left.as_deref() == Some("2"),
        "it landed: the old value is gone from Redis ({left:?})"
    );
    for c in [&cache, &other] {
        assert_eq!(read(c, &mut outcome), 2);
    }
    assert!(cache.stats().held_back >= 2, "{:?}", cache.stats());
    assert_eq!(cache.stats().queued_invalidations, 1);
}

/// A manual delete that cannot land is queued too (here the user may not `UNLINK`, so it
/// lands only once it may), its key is held back meanwhile though Redis still holds it, and
/// a later write of the key supersedes it: its late landing must not delete the new value.
#[cfg(feature = "redis")]
#[test]
fn a_queued_delete_holds_back_its_key_and_a_later_write_supersedes_it() {
    let server = support::RedisServer::start();
    server.cli(&[
        "ACL", "SETUSER", "app", "on", ">pw", "~qdel:*", "+@all", "-unlink",
    ]);
    let cache = Cache::new(
        cacheable::Config::from_url(&format!("redis://app:pw@127.0.0.1:{}/", server.port))
            .unwrap()
            .prefix("qdel"),
    )
    .unwrap();
    cache.set("a", &1, 600).unwrap();
    cache.set("b", &1, 600).unwrap();
    let err = cache.delete("a").unwrap_err();
    assert!(err.is_queued(), "{err:#}");
    assert!(cache.delete("b").unwrap_err().is_queued());
    assert_eq!(cache.stats().pending_invalidations, 2);
    assert_eq!(
        cache.get::<i32>("a").unwrap(),
        None,
        "held back, though Redis holds it"
    );
    cache.set("b", &2, 600).unwrap();
    assert_eq!(
        cache.stats().pending_invalidations,
        1,
        "the write superseded b's"
    );
    assert_eq!(cache.get::<i32>("b").unwrap(), Some(2));
    server.cli(&["ACL", "SETUSER", "app", "+unlink"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.stats().pending_invalidations > 0 {
        assert!(Instant::now() < deadline, "never landed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let a = server.cli(&["EXISTS", "qdel:a"]);
    assert_eq!(a.trim(), "0", "it landed");
    assert_eq!(
        cache.get::<i32>("b").unwrap(),
        Some(2),
        "the later write stays"
    );
}

/// A computation records its key in its tags, then asks for the lease; while it waits for
/// another holder's lease, a tag invalidation lists the entry, deletes the key (the other
/// lease with it) and forgets the entry. The computation then takes the lease and writes
/// its value: unless it records the key again before the write, the key is in no tag, and
/// the next invalidation of the tag misses it.
#[cfg(feature = "redis")]
#[test]
fn a_value_written_after_its_tag_was_walked_stays_in_the_tag() {
    let server = support::RedisServer::start();
    let cache = Cache::new(
        cacheable::Config::from_url(&server.url())
            .unwrap()
            .prefix("walked")
            .lease_wait(Duration::from_secs(5)),
    )
    .unwrap();
    let mut con = server.client();
    let key = cache.full_key("order:1");
    let set = cache.full_key("[tag]:user:1");
    // Another process's computation holds the key.
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(b"\0cacheable-lease:someone-else".as_slice())
        .arg("PX")
        .arg(5000)
        .query(&mut con)
        .unwrap();
    let version = AtomicU64::new(1);
    let read = || {
        Cacheable::new("order:<<user>>")
            .tags(["user:<<user>>"])
            .on(&cache)
            .run(ctx! { user = 1 }, || version.load(Ordering::SeqCst))
    };
    std::thread::scope(|s| {
        let waiting = s.spawn(read);
        // It recorded itself, and waits for the lease.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(&set)
                .arg(&key)
                .query(&mut con)
                .unwrap();
            if score.is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "never recorded");
            std::thread::sleep(Duration::from_millis(5));
        }
        let deleted = Invalidate::tags(["user:<<user>>"])
            .on(&cache)
            .now(ctx! { user = 1 })
            .unwrap();
        assert_eq!(deleted, 1, "the other holder's lease went");
        assert_eq!(waiting.join().unwrap(), 1);
    });
    // The value it wrote is in the tag: a change and its invalidation reach it.
    version.store(2, Ordering::SeqCst);
    let deleted = Invalidate::tags(["user:<<user>>"])
        .on(&cache)
        .now(ctx! { user = 1 })
        .unwrap();
    assert_eq!(deleted, 1, "the value written after the walk is in its tag");
    assert_eq!(read(), 2);
}

/// A call reads a value past its TTL (kept for its stale-if-error window) and waits on
/// another computation of the key; an invalidation deletes the key; the call then takes a
/// fresh lease and its computation fails. It must not put the value it read back in the
/// store: only a lease that took the place of that very value gives it back.
#[cfg(feature = "redis")]
#[test]
fn a_failed_computation_never_restores_a_value_invalidated_meanwhile() {
    let server = support::RedisServer::start();
    let cache = Cache::new(
        cacheable::Config::from_url(&server.url())
            .unwrap()
            .prefix("restore"),
    )
    .unwrap();
    let mut con = server.client();
    let key = cache.full_key("rate:1");
    let old = serde_json::to_vec(&1u64).unwrap();
    let (go, gate) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    std::thread::scope(|s| {
        // A leader of the key in this process, whose computation waits for the test.
        let leader = s.spawn(|| {
            Cacheable::new("rate:<<id>>")
                .ttl(1)
                .on(&cache)
                .run(ctx! { id = 1 }, || {
                    gate.lock().unwrap().recv().unwrap();
                    7u64
                })
        });
        // Its lease is in place: the key becomes a value past its TTL (10 s to live, within
        // a 60 s window), as if written long ago.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
            if v.is_some_and(|v| v.starts_with(b"\0cacheable-lease:")) {
                break;
            }
            assert!(Instant::now() < deadline, "the leader never took its lease");
            std::thread::sleep(Duration::from_millis(2));
        }
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(&old)
            .arg("PX")
            .arg(10_000)
            .query(&mut con)
            .unwrap();
        // A caller reads it (the value past its TTL, kept to answer a failure) and waits on
        // the leader of this process.
        let follower = s.spawn(|| {
            Cacheable::new("rate:<<id>>")
                .ttl(1)
                .stale_if_error(60)
                .on(&cache)
                .try_run(ctx! { id = 1 }, || Err::<u64, &str>("the source failed"))
        });
        std::thread::sleep(Duration::from_millis(200));
        // The key is invalidated; the leader's write then fails, and the follower starts
        // over: it takes a fresh lease and its computation fails.
        Invalidate::new(["rate:<<id>>"])
            .on(&cache)
            .now(ctx! { id = 1 })
            .unwrap();
        go.send(()).unwrap();
        assert_eq!(leader.join().unwrap(), 7);
        // It may answer with what it read (its call began before the invalidation).
        let _ = follower.join().unwrap();
    });
    let stored: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
    assert_ne!(
        stored.as_deref(),
        Some(old.as_slice()),
        "the invalidated value was put back"
    );
}

/// A queued invalidation that cannot land (the user may not `ZSCAN`, so the tag cannot be
/// walked) holds up no invalidation queued after it: each is retried on its own.
#[cfg(feature = "redis")]
#[test]
fn one_queued_invalidation_that_cannot_land_holds_up_no_other() {
    let server = support::RedisServer::start();
    server.cli(&[
        "ACL", "SETUSER", "app", "on", ">pw", "~stuck:*", "+@all", "-zscan",
    ]);
    let cache = Cache::new(
        cacheable::Config::from_url(&format!("redis://app:pw@127.0.0.1:{}/", server.port))
            .unwrap()
            .prefix("stuck")
            .op_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let err = Invalidate::tags(["user:<<id>>"])
        .on(&cache)
        .now(ctx! { id = 1 })
        .unwrap_err();
    assert!(err.is_queued(), "{err:#}");
    cache.set("k", &1, 600).unwrap();
    server.pause();
    assert!(cache.delete("k").unwrap_err().is_queued());
    server.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.stats().pending_invalidations > 1 {
        assert!(Instant::now() < deadline, "the key's delete never landed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.cli(&["EXISTS", "stuck:k"]).trim(), "0");
    assert_eq!(
        cache.health().pending_invalidations,
        1,
        "the tag still waits"
    );
}

/// A `Cache` built for a request and dropped after its invalidation was queued does not take
/// the queue along: it outlives the cache that queued it, and a later cache on the same
/// store and prefix holds the key back until it lands.
#[cfg(feature = "redis")]
#[test]
fn a_queued_invalidation_outlives_the_cache_that_queued_it() {
    let server = support::RedisServer::start();
    let config = cacheable::Config::from_url(&server.url())
        .unwrap()
        .prefix("outlive")
        .op_timeout(Duration::from_millis(200));
    let first = Cache::new(config.clone()).unwrap();
    first.set("k", &1, 600).unwrap();
    server.pause();
    assert!(first.delete("k").unwrap_err().is_queued());
    drop(first);
    server.resume();
    let later = Cache::new(config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Held back while queued, gone once it landed: never the old value.
        assert_eq!(later.get::<i32>("k").unwrap(), None);
        if later.stats().pending_invalidations == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never landed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        server.cli(&["EXISTS", "outlive:k"]).trim(),
        "0",
        "it landed"
    );
}
