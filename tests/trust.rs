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

#[test]
fn memory() {
    run_suite(&Backend::new("memory", None));
}

#[cfg(feature = "redis")]
#[test]
fn redis() {
    let server = support::RedisServer::start();
    run_suite(&Backend::new("redis", Some(server.url())));
    run_suite(&Backend::new("redis + near", Some(server.url())).near());
}

#[cfg(feature = "cluster")]
#[test]
fn cluster() {
    let cluster = support::RedisCluster::start();
    run_suite(&Backend::new("cluster", Some(cluster.url())));
    run_suite(&Backend::new("cluster + near", Some(cluster.url())).near());
}

#[cfg(feature = "sentinel")]
#[test]
fn sentinel() {
    let setup = support::RedisSentinel::start();
    run_suite(&Backend::new("sentinel", Some(setup.url())));
    run_suite(&Backend::new("sentinel + near", Some(setup.url())).near());
}

/// The configuration of a case's cache: a prefix of its own on each backend (the suites
/// with and without the near cache share their servers).
fn config(b: &Backend, prefix: &str) -> cacheable::Config {
    let near = if b.near { "-near" } else { "" };
    b.config().prefix(format!("{prefix}{near}"))
}

/// A tag entry's life was fixed when the value was written (lease wait + 12 lease times +
/// TTL: 2.3 s here); sliding reads kept the key for 3.5 s and the tag forgot it.
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

/// The index used the call's TTL (1 s), the write the value's (60 s).
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

/// A sliding read pushed a token's expiry to the call's TTL (10 s), past the 1 s its
/// `ttl_from` gave it.
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

/// `cache_fn!` refuses `tags = ["user:<<user_id>>"]` on a key without `user_id`; the builder
/// took it, so one key could sit in several tags depending on the call.
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
