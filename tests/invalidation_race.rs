//! No stale value after an invalidation: writers update a source and invalidate while
//! readers call the cached function; after each round, a read returns the current source.
//! The same test with the compare-and-set switched off finds stale values, so it can fail.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{RedisServer, Rng};

/// Rounds of each race that must find no stale value: 3,000 in the test command,
/// `CACHEABLE_RACE_ROUNDS` for longer runs (`just races`: 30,000). The controls that must find
/// stale values run 2,000 whatever it says.
fn rounds() -> u64 {
    std::env::var("CACHEABLE_RACE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3_000)
}

struct Outcome {
    rounds: u64,
    stale: u64,
}

/// What the readers and the writer use besides the plain key.
#[derive(Clone, Copy, Default)]
struct Variant {
    /// Readers tag the key `user:<<user_id>>` and the writer invalidates the tag.
    tags: bool,
    /// The writer invalidates through a second cache on the same store (another process).
    peer: bool,
    /// Readers refresh early with a β so large that every hit refreshes (TTL 10 s), and
    /// each round starts with the current value, aged (written with 5 s to live), so that
    /// the writer invalidates during a refresh.
    early: bool,
}

async fn read(
    cache: &Cache,
    source: &AtomicU64,
    computing: &AtomicBool,
    jitter_us: u64,
    variant: Variant,
) -> u64 {
    let mut builder = Cacheable::new("balance:<<user_id>>");
    if variant.tags {
        builder = builder.tags(["user:<<user_id>>"]);
    }
    if variant.early {
        builder = builder.early_refresh(1e9).ttl(10);
    }
    builder
        .on(cache)
        .run_async(ctx! { user_id = 42 }, || async move {
            let seen = source.load(Ordering::SeqCst);
            computing.store(true, Ordering::SeqCst);
            // The computation takes a while after reading its data, as a query does. A
            // thread sleep, because tokio's timer would round every pause up to a whole
            // millisecond and line all the tasks up on the same tick.
            std::thread::sleep(Duration::from_micros(jitter_us));
            seen
        })
        .await
}

async fn race(cache: Cache, rounds: u64, seed: u64) -> Outcome {
    race_variant(cache, rounds, seed, Variant::default()).await
}

async fn race_variant(cache: Cache, rounds: u64, seed: u64, variant: Variant) -> Outcome {
    let invalidator = Arc::new(if variant.peer {
        Cache::new(cache.config().clone()).unwrap()
    } else {
        cache.clone()
    });
    let cache = Arc::new(cache);
    let source = Arc::new(AtomicU64::new(0));
    let computing = Arc::new(AtomicBool::new(false));
    let mut rng = Rng::new(seed);
    let mut stale = 0;
    if variant.early {
        // One computation first, so that the readers know how long one takes (δ).
        cache.delete("balance:42").unwrap();
        read(&cache, &source, &computing, 100, variant).await;
    }
    for _ in 0..rounds {
        // Each round starts cold, so that readers compute while the writer writes.
        if variant.early {
            let current = source.load(Ordering::SeqCst);
            cache
                .set("balance:42", &current, Duration::from_secs(5))
                .unwrap();
        } else {
            cache.delete("balance:42").unwrap();
        }
        computing.store(false, Ordering::SeqCst);
        let writer_delay = rng.below(300) as u64;
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (cache, source, computing) = (cache.clone(), source.clone(), computing.clone());
                let jitter = rng.below(400) as u64;
                tokio::spawn(
                    async move { read(&cache, &source, &computing, jitter, variant).await },
                )
            })
            .collect();
        let writer = {
            let (cache, source, computing) = (cache.clone(), source.clone(), computing.clone());
            let invalidator = invalidator.clone();
            tokio::spawn(async move {
                // Write while a computation runs, whatever the store's round trips cost:
                // wait (up to 5 ms) until a reader has read the source.
                let started = std::time::Instant::now();
                while !computing.load(Ordering::SeqCst)
                    && started.elapsed() < Duration::from_millis(5)
                {
                    tokio::task::yield_now().await;
                }
                std::thread::sleep(Duration::from_micros(writer_delay));
                source.fetch_add(1, Ordering::SeqCst);
                if variant.tags {
                    Invalidate::tags(["user:<<user_id>>"])
                        .on(&invalidator)
                        .now_async(ctx! { user_id = 42 })
                        .await
                        .unwrap();
                } else {
                    Invalidate::new(["balance:<<user_id>>"])
                        .on(&cache)
                        .now_async(ctx! { user_id = 42 })
                        .await
                        .unwrap();
                }
            })
        };
        for r in readers {
            r.await.unwrap();
        }
        writer.await.unwrap();
        let current = source.load(Ordering::SeqCst);
        if read(&cache, &source, &computing, 0, variant).await != current {
            stale += 1;
        }
    }
    Outcome { rounds, stale }
}

fn config(server: &RedisServer) -> Config {
    Config::from_url(&server.url()).unwrap().prefix("race")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_value_survives_an_invalidation_over_many_rounds() {
    let server = RedisServer::start();
    let outcome = race(Cache::new(config(&server)).unwrap(), rounds(), 1).await;
    println!(
        "checked: {} rounds, {} stale",
        outcome.rounds, outcome.stale
    );
    assert_eq!(
        outcome.stale, 0,
        "stale values after {} rounds",
        outcome.rounds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_compare_and_set_stale_values_appear() {
    let server = RedisServer::start();
    let cache = Cache::new(cacheable::__private::unchecked_lease_writes(config(
        &server,
    )))
    .unwrap();
    let outcome = race(cache, 2_000, 1).await;
    println!(
        "unchecked: {} rounds, {} stale",
        outcome.rounds, outcome.stale
    );
    assert!(
        outcome.stale > 0,
        "the race test found no stale value even without the compare-and-set: it cannot fail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_has_no_stale_values_either() {
    let outcome = race(Cache::new(Config::memory()).unwrap(), rounds(), 2).await;
    println!(
        "embedded: {} rounds, {} stale",
        outcome.rounds, outcome.stale
    );
    assert_eq!(outcome.stale, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_value_survives_a_tag_invalidation_from_another_process() {
    let server = RedisServer::start();
    let variant = Variant {
        tags: true,
        peer: true,
        early: false,
    };
    let outcome = race_variant(Cache::new(config(&server)).unwrap(), rounds(), 3, variant).await;
    println!("tags: {} rounds, {} stale", outcome.rounds, outcome.stale);
    assert_eq!(
        outcome.stale, 0,
        "stale values after {} rounds",
        outcome.rounds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidations_without_the_compare_and_set_leave_stale_values() {
    let server = RedisServer::start();
    let cache = Cache::new(cacheable::__private::unchecked_lease_writes(config(
        &server,
    )))
    .unwrap();
    let variant = Variant {
        tags: true,
        peer: true,
        early: false,
    };
    let outcome = race_variant(cache, 2_000, 3, variant).await;
    println!(
        "tags, unchecked: {} rounds, {} stale",
        outcome.rounds, outcome.stale
    );
    assert!(
        outcome.stale > 0,
        "the tag race found no stale value even without the compare-and-set: it cannot fail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_tag_invalidations_leave_no_stale_values() {
    // One embedded store per cache: the invalidator is the readers' own cache here.
    let cache = Cache::new(Config::memory()).unwrap();
    let variant = Variant {
        tags: true,
        peer: false,
        early: false,
    };
    let outcome = race_variant(cache, rounds(), 4, variant).await;
    println!(
        "embedded, tags: {} rounds, {} stale",
        outcome.rounds, outcome.stale
    );
    assert_eq!(outcome.stale, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_value_survives_an_invalidation_with_early_refresh_and_tags() {
    let server = RedisServer::start();
    let variant = Variant {
        tags: true,
        peer: true,
        early: true,
    };
    let cache = Cache::new(config(&server)).unwrap();
    let outcome = race_variant(cache.clone(), rounds(), 5, variant).await;
    let refreshes = cache.stats().early_refreshes;
    println!(
        "early refresh + tags: {} rounds, {} stale, {refreshes} refreshes stored",
        outcome.rounds, outcome.stale
    );
    assert!(
        refreshes > 0,
        "no early refresh ran: the variant tests nothing"
    );
    assert_eq!(
        outcome.stale, 0,
        "stale values after {} rounds",
        outcome.rounds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_early_refresh_leaves_no_stale_values() {
    let variant = Variant {
        tags: false,
        peer: false,
        early: true,
    };
    let cache = Cache::new(Config::memory()).unwrap();
    let outcome = race_variant(cache.clone(), rounds(), 6, variant).await;
    let refreshes = cache.stats().early_refreshes;
    println!(
        "embedded, early refresh: {} rounds, {} stale, {refreshes} refreshes stored",
        outcome.rounds, outcome.stale
    );
    assert!(
        refreshes > 0,
        "no early refresh ran: the variant tests nothing"
    );
    assert_eq!(outcome.stale, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refresh_writes_without_the_check_leave_stale_values() {
    let server = RedisServer::start();
    let variant = Variant {
        tags: false,
        peer: true,
        early: true,
    };
    let cache = Cache::new(cacheable::__private::unchecked_lease_writes(config(
        &server,
    )))
    .unwrap();
    let outcome = race_variant(cache, 2_000, 5, variant).await;
    println!(
        "early refresh, unchecked: {} rounds, {} stale",
        outcome.rounds, outcome.stale
    );
    assert!(
        outcome.stale > 0,
        "the early-refresh race found no stale value even with plain writes: it cannot fail"
    );
}
