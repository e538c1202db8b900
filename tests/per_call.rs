//! Per-call control: refresh, bypass, the kill switch, `store_if`, `ttl_from`,
//! sliding expiry and the outcome of a call, sync and async, on every store: the embedded
//! one, one Redis server and a Redis Cluster, each with and without the near cache where
//! it applies. Servers are private to this test binary.

mod support;

use cacheable::{cache_fn, ctx, Cache, Cacheable, Config, KeyTtl, Outcome};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{suite, Backend};

fn runtime() -> tokio::runtime::Runtime {
    support::runtime(4)
}

const WAIT: Duration = Duration::from_secs(10);

suite![
    refresh_while_eight_callers_read_sync,
    refresh_while_eight_callers_read_async,
    an_invalidation_during_a_refresh_keeps_its_value_out,
    refresh_of_a_missing_key_is_a_miss,
    bypass_neither_reads_nor_writes,
    the_kill_switch,
    the_kill_switch_stops_a_write_in_flight,
    store_if_false_leaves_no_key,
    ttl_from_sets_the_keys_ttl,
    sliding_keeps_a_read_key_alive,
    sliding_with_a_stale_window,
    near_hits_are_hits,
    stale_answers_are_stale,
    outcome_unavailable_when_the_key_does_not_render,
    macro_options,
];

support::suite_tests! {
    memory = memory(Without),
    memory_near = memory(With),
    redis = redis(Without),
    redis_near = redis(With),
    cluster = cluster(Without),
}

/// A call that must be served from the cache: its computation fails the test. A near
/// hit (the near cache, or the embedded store's decoded copies) reads as a hit here:
/// `near_hits_are_hits` tells them apart.
fn read(cache: &Cache, id: u32) -> (String, Outcome) {
    let mut outcome = Outcome::Miss;
    let v = Cacheable::new("item:<<id>>")
        .ttl(60)
        .on(cache)
        .outcome(&mut outcome)
        .run(ctx! { id }, || panic!("a reader computed item {id}"));
    (v, hit(outcome))
}

/// `Outcome::NearHit` as `Outcome::Hit`, every other outcome as it is.
fn hit(outcome: Outcome) -> Outcome {
    if outcome == Outcome::NearHit {
        Outcome::Hit
    } else {
        outcome
    }
}

fn seed(cache: &Cache, id: u32, value: &str) {
    let mut outcome = Outcome::Hit;
    let v = Cacheable::new("item:<<id>>")
        .ttl(60)
        .on(cache)
        .outcome(&mut outcome)
        .run(ctx! { id }, || value.to_string());
    assert_eq!((v.as_str(), outcome), (value, Outcome::Miss));
}

/// Reads through `cache` until it serves `want` (another process's near cache learns of a
/// change by a message from Redis, a moment later).
fn eventually_reads(cache: &Cache, id: u32, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (v, outcome) = read(cache, id);
        assert_eq!(outcome, Outcome::Hit);
        if v == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {v:?}, not {want:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn refresh_while_eight_callers_read_sync(b: &Backend) {
    let cache = b.cache("refresh-sync");
    let peer = b.peer(&cache);
    seed(&cache, 1, "old");
    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let c = &cache;
        let refresher = s.spawn(move || {
            let mut outcome = Outcome::Miss;
            let v = Cacheable::new("item:<<id>>")
                .ttl(60)
                .on(c)
                .refresh(true)
                .outcome(&mut outcome)
                .run(ctx! { id = 1 }, || {
                    started_tx.send(()).unwrap();
                    go_rx
                        .recv_timeout(WAIT)
                        .expect("the readers never finished");
                    "new".to_string()
                });
            (v, outcome)
        });
        started.recv_timeout(WAIT).unwrap();
        // Eight callers read while the refresh computes: half through this cache, half
        // through another (another process's, on a shared store).
        let (done_tx, done) = mpsc::channel();
        for i in 0..8 {
            let (c, tx) = (if i % 2 == 0 { &cache } else { &peer }, done_tx.clone());
            s.spawn(move || tx.send(read(c, 1)).unwrap());
        }
        for _ in 0..8 {
            // A reader that waited on the refresh would never answer: the refresh waits
            // for all eight first.
            let got = done
                .recv_timeout(WAIT)
                .expect("a reader waited on the refresh");
            assert_eq!(got, ("old".to_string(), Outcome::Hit));
        }
        go.send(()).unwrap();
        assert_eq!(
            refresher.join().unwrap(),
            ("new".to_string(), Outcome::Refreshed)
        );
    });
    // The refreshing cache serves the new value at once (its near cache dropped the old).
    assert_eq!(read(&cache, 1), ("new".to_string(), Outcome::Hit));
    eventually_reads(&peer, 1, "new");
    let stats = cache.stats();
    assert_eq!((stats.refreshes, stats.errors), (1, 0), "{stats:?}");
    if let KeyTtl::Expires(left) = cache.ttl("item:1").unwrap() {
        assert!(left > Duration::from_secs(55), "{left:?}");
    } else {
        panic!("item:1 has no TTL");
    }
}

fn refresh_while_eight_callers_read_async(b: &Backend) {
    let cache = b.cache("refresh-async");
    let peer = b.peer(&cache);
    seed(&cache, 2, "old");
    runtime().block_on(async {
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
        let c = cache.clone();
        let refresher = tokio::spawn(async move {
            let mut outcome = Outcome::Miss;
            let v = Cacheable::new("item:<<id>>")
                .ttl(60)
                .on(&c)
                .refresh(true)
                .outcome(&mut outcome)
                .run_async(ctx! { id = 2 }, || async {
                    started_tx.send(()).unwrap();
                    tokio::time::timeout(WAIT, go_rx)
                        .await
                        .expect("the readers never finished")
                        .unwrap();
                    "new".to_string()
                })
                .await;
            (v, outcome)
        });
        started.await.unwrap();
        let readers: Vec<_> = (0..8)
            .map(|i| {
                let c = if i % 2 == 0 {
                    cache.clone()
                } else {
                    peer.clone()
                };
                tokio::spawn(async move {
                    let mut outcome = Outcome::Miss;
                    let v = Cacheable::new("item:<<id>>")
                        .ttl(60)
                        .on(&c)
                        .outcome(&mut outcome)
                        .run_async(ctx! { id = 2 }, || async { panic!("a reader computed") })
                        .await;
                    (v, hit(outcome))
                })
            })
            .collect();
        for r in readers {
            let got = tokio::time::timeout(WAIT, r)
                .await
                .expect("a reader waited on the refresh")
                .unwrap();
            assert_eq!(got, ("old".to_string(), Outcome::Hit));
        }
        go.send(()).unwrap();
        assert_eq!(
            refresher.await.unwrap(),
            ("new".to_string(), Outcome::Refreshed)
        );
    });
    assert_eq!(read(&cache, 2), ("new".to_string(), Outcome::Hit));
    eventually_reads(&peer, 2, "new");
}

fn an_invalidation_during_a_refresh_keeps_its_value_out(b: &Backend) {
    let cache = b.cache("refresh-inval");
    let peer = b.peer(&cache);
    seed(&cache, 3, "old");
    let v = Cacheable::new("item:<<id>>")
        .ttl(60)
        .on(&cache)
        .refresh(true)
        .run(ctx! { id = 3 }, || {
            // Another process invalidates while the value is computed from older data.
            assert!(peer.delete("item:3").unwrap());
            "computed before the invalidation".to_string()
        });
    assert_eq!(v, "computed before the invalidation");
    assert_eq!(cache.get::<String>("item:3").unwrap(), None);
    // Async, with an invalidation of a pattern.
    seed(&cache, 4, "old");
    let v = runtime().block_on(
        Cacheable::new("item:<<id>>")
            .ttl(60)
            .on(&cache)
            .refresh(true)
            .run_async(ctx! { id = 4 }, || async {
                assert_eq!(peer.delete_pattern_async("item:*").await.unwrap(), 1);
                "stale".to_string()
            }),
    );
    assert_eq!(v, "stale");
    assert_eq!(cache.get::<String>("item:4").unwrap(), None);
    // The next call computes afresh.
    let mut outcome = Outcome::Hit;
    let v = Cacheable::new("item:<<id>>")
        .on(&cache)
        .outcome(&mut outcome)
        .run(ctx! { id = 4 }, || "fresh".to_string());
    assert_eq!((v.as_str(), outcome), ("fresh", Outcome::Miss));
}

fn refresh_of_a_missing_key_is_a_miss(b: &Backend) {
    let cache = b.cache("refresh-missing");
    let mut outcome = Outcome::Hit;
    let v = Cacheable::new("item:<<id>>")
        .on(&cache)
        .refresh(true)
        .outcome(&mut outcome)
        .run(ctx! { id = 5 }, || "first".to_string());
    assert_eq!((v.as_str(), outcome), ("first", Outcome::Miss));
    assert_eq!(read(&cache, 5), ("first".to_string(), Outcome::Hit));
    assert_eq!(cache.stats().refreshes, 0);
}

fn bypass_neither_reads_nor_writes(b: &Backend) {
    let cache = b.cache("bypass");
    seed(&cache, 1, "cached");
    // Held near first, where there is a near tier (the near cache, or the embedded
    // store's decoded copies): a bypass is not served from it either.
    if b.near || b.url.is_none() {
        support::first_near_hit(&cache, WAIT, || read(&cache, 1));
    }
    let computed = AtomicUsize::new(0);
    let bypass = |id: u32, outcome: &mut Outcome| {
        Cacheable::new("item:<<id>>")
            .on(&cache)
            .bypass(true)
            .outcome(outcome)
            .run(ctx! { id }, || {
                computed.fetch_add(1, Ordering::SeqCst);
                "computed".to_string()
            })
    };
    let mut outcome = Outcome::Miss;
    assert_eq!(bypass(1, &mut outcome), "computed");
    assert_eq!(outcome, Outcome::Bypassed);
    assert_eq!(bypass(2, &mut outcome), "computed");
    // Untouched: the stored value, and no key for the missing one.
    assert_eq!(read(&cache, 1), ("cached".to_string(), Outcome::Hit));
    assert_eq!(cache.get::<String>("item:2").unwrap(), None);
    runtime().block_on(async {
        let mut outcome = Outcome::Miss;
        let v = Cacheable::new("item:<<id>>")
            .on(&cache)
            .bypass(true)
            .outcome(&mut outcome)
            .run_async(ctx! { id = 3 }, || async {
                computed.fetch_add(1, Ordering::SeqCst);
                "computed".to_string()
            })
            .await;
        assert_eq!((v.as_str(), outcome), ("computed", Outcome::Bypassed));
    });
    assert_eq!(cache.get::<String>("item:3").unwrap(), None);
    assert_eq!(computed.load(Ordering::SeqCst), 3);
    let stats = cache.stats();
    assert_eq!((stats.bypasses, stats.sets), (3, 1), "{stats:?}");
}

fn the_kill_switch(b: &Backend) {
    let cache = b.cache("kill");
    let peer = b.peer(&cache);
    seed(&cache, 1, "before");
    // Served from the near cache too, if there is one: switching off must skip it.
    assert_eq!(read(&cache, 1).0, "before");
    cache.disable();
    assert!(!cache.is_enabled());
    let call = |id: u32, v: &str, outcome: &mut Outcome| {
        Cacheable::new("item:<<id>>")
            .on(&cache)
            .outcome(outcome)
            .run(ctx! { id }, || v.to_string())
    };
    let mut outcome = Outcome::Miss;
    // Calls compute, whatever is stored, and write nothing.
    assert_eq!(call(1, "during", &mut outcome), "during");
    assert_eq!(outcome, Outcome::Disabled);
    assert_eq!(call(2, "during", &mut outcome), "during");
    let got: u32 = cache.get_or_set("item:3", || 3, 60).unwrap();
    assert_eq!(got, 3);
    runtime().block_on(async {
        let mut outcome = Outcome::Miss;
        let v = Cacheable::new("item:<<id>>")
            .on(&cache)
            .outcome(&mut outcome)
            .run_async(ctx! { id = 4 }, || async { "during".to_string() })
            .await;
        assert_eq!((v.as_str(), outcome), ("during", Outcome::Disabled));
    });
    assert_eq!(cache.count("*").unwrap(), 1, "only the value from before");
    assert_eq!(
        cache.get::<String>("item:1").unwrap().as_deref(),
        Some("before")
    );
    // The data changes while switched off; its invalidation still deletes. (Through this
    // cache: another process's deletion reaches this one's near cache by a message from
    // Redis, switched off or not, a moment later.)
    assert!(cache.delete("item:1").unwrap());
    assert_eq!(peer.get::<String>("item:1").unwrap(), None);
    cache.enable();
    assert!(cache.is_enabled());
    // No stale value survives switching back on.
    assert_eq!(call(1, "after", &mut outcome), "after");
    assert_eq!(outcome, Outcome::Miss);
    assert_eq!(read(&cache, 1), ("after".to_string(), Outcome::Hit));
    let stats = cache.stats();
    assert_eq!(stats.disabled_calls, 4, "{stats:?}");
}

/// A computation running when the switch goes off does not write its value.
fn the_kill_switch_stops_a_write_in_flight(b: &Backend) {
    let cache = b.cache("kill-inflight");
    let v = Cacheable::new("item:<<id>>")
        .on(&cache)
        .run(ctx! { id = 1 }, || {
            cache.disable();
            "computed".to_string()
        });
    assert_eq!(v, "computed");
    cache.enable();
    assert_eq!(cache.get::<String>("item:1").unwrap(), None);
    assert_eq!(cache.count("*").unwrap(), 0, "the lease was given back");
}

/// The switch through the manager, on the global cache.
#[test]
fn the_global_kill_switch() {
    cacheable::CacheManager::get_or_init(Config::memory).unwrap();
    cacheable::CacheManager::disable().unwrap();
    assert!(!cacheable::CacheManager::is_enabled());
    let mut outcome = Outcome::Miss;
    let _ = Cacheable::new("global:<<id>>")
        .outcome(&mut outcome)
        .run(ctx! { id = 1 }, || 1);
    assert_eq!(outcome, Outcome::Disabled);
    cacheable::CacheManager::enable().unwrap();
    assert!(cacheable::CacheManager::is_enabled());
}

fn store_if_false_leaves_no_key(b: &Backend) {
    let cache = b.cache("store-if");
    let call = |id: u32, found: Vec<u32>, outcome: &mut Outcome| {
        Cacheable::new("search:<<id>>")
            .on(&cache)
            .store_if(|v: &Vec<u32>| !v.is_empty())
            .outcome(outcome)
            .run(ctx! { id }, || found)
    };
    let mut outcome = Outcome::Hit;
    assert_eq!(call(1, vec![], &mut outcome), Vec::<u32>::new());
    assert_eq!(outcome, Outcome::Miss);
    assert_eq!(cache.get::<Vec<u32>>("search:1").unwrap(), None);
    assert_eq!(cache.count("*").unwrap(), 0, "no key, no lease left behind");
    assert_eq!(call(2, vec![7], &mut outcome), vec![7]);
    assert_eq!(call(2, vec![8], &mut outcome), vec![7]);
    assert_eq!(hit(outcome), Outcome::Hit);
    runtime().block_on(async {
        let v = Cacheable::new("search:<<id>>")
            .on(&cache)
            .store_if(|v: &Vec<u32>| !v.is_empty())
            .try_run_async(ctx! { id = 3 }, || async {
                Ok::<_, String>(Vec::<u32>::new())
            })
            .await;
        assert_eq!(v, Ok(vec![]));
    });
    assert_eq!(cache.get::<Vec<u32>>("search:3").unwrap(), None);
    // A predicate for another type than the value's: a fault, nothing stored.
    let v = Cacheable::new("search:<<id>>")
        .on(&cache)
        .store_if(|v: &String| !v.is_empty())
        .outcome(&mut outcome)
        .run(ctx! { id = 4 }, || vec![1u32]);
    assert_eq!((v, outcome), (vec![1], Outcome::Unavailable));
    assert_eq!(cache.get::<Vec<u32>>("search:4").unwrap(), None);
    let stats = cache.stats();
    assert_eq!((stats.declined, stats.errors), (2, 1), "{stats:?}");
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Token {
    value: String,
    expires_in: u64,
}

fn token_ttl(t: &Token) -> Duration {
    Duration::from_secs(t.expires_in)
}

fn left(cache: &Cache, key: &str) -> Duration {
    match cache.ttl(key).unwrap() {
        KeyTtl::Expires(d) => d,
        other => panic!("{key}: {other:?}"),
    }
}

fn ttl_from_sets_the_keys_ttl(b: &Backend) {
    let cache = b.cache("ttl-from");
    let token = |expires_in| Token {
        value: "t".into(),
        expires_in,
    };
    let v = Cacheable::new("token:<<id>>")
        .ttl(3600)
        .ttl_from(token_ttl)
        .on(&cache)
        .run(ctx! { id = 1 }, || token(7));
    assert_eq!(v, token(7));
    // `PTTL` on Redis.
    let d = left(&cache, "token:1");
    assert!(
        d <= Duration::from_secs(7) && d > Duration::from_secs(6),
        "{d:?}"
    );
    runtime().block_on(async {
        let v = Cacheable::new("token:<<id>>")
            .ttl(3600)
            .ttl_from(|t: &Token| Duration::from_millis(t.expires_in * 100))
            .on(&cache)
            .run_async(ctx! { id = 2 }, || async { token(200) })
            .await;
        assert_eq!(v, token(200));
    });
    let d = left(&cache, "token:2");
    assert!(
        d <= Duration::from_secs(20) && d > Duration::from_secs(19),
        "{d:?}"
    );
    // Zero: not stored.
    let mut outcome = Outcome::Hit;
    let v = Cacheable::new("token:<<id>>")
        .ttl_from(token_ttl)
        .on(&cache)
        .outcome(&mut outcome)
        .run(ctx! { id = 3 }, || token(0));
    assert_eq!((v, outcome), (token(0), Outcome::Miss));
    assert_eq!(cache.ttl("token:3").unwrap(), KeyTtl::Missing);
    // A refresh takes its TTL from the new value.
    let v = Cacheable::new("token:<<id>>")
        .ttl_from(token_ttl)
        .refresh(true)
        .on(&cache)
        .run(ctx! { id = 1 }, || token(30));
    assert_eq!(v, token(30));
    let d = left(&cache, "token:1");
    assert!(
        d <= Duration::from_secs(30) && d > Duration::from_secs(29),
        "{d:?}"
    );
    // A refresh whose new value is declined takes the old one out.
    let v = Cacheable::new("token:<<id>>")
        .ttl_from(token_ttl)
        .refresh(true)
        .on(&cache)
        .run(ctx! { id = 1 }, || token(0));
    assert_eq!(v, token(0));
    assert_eq!(cache.ttl("token:1").unwrap(), KeyTtl::Missing);
    assert_eq!(cache.stats().declined, 2);
}

/// Three keys with a TTL of 1 s: one read every 0.5 s through the sync path, one through
/// the async path, one never read. After 3.5 s (past three TTLs) the two read keys are
/// there and were hits all along; the third expired.
fn sliding_keeps_a_read_key_alive(b: &Backend) {
    let cache = b.cache("sliding");
    let computed = AtomicUsize::new(0);
    let sliding = |id: u32| {
        let mut outcome = Outcome::Miss;
        let v = Cacheable::new("session:<<id>>")
            .ttl(Duration::from_secs(1))
            .sliding(true)
            .on(&cache)
            .outcome(&mut outcome)
            .run(ctx! { id }, || {
                computed.fetch_add(1, Ordering::SeqCst);
                id
            });
        (v, outcome)
    };
    for id in 1..=3 {
        assert_eq!(sliding(id), (id, Outcome::Miss));
    }
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..7 {
                std::thread::sleep(Duration::from_millis(500));
                assert_eq!(sliding(1), (1, Outcome::Hit), "at {:?}", started.elapsed());
            }
        });
        s.spawn(|| {
            runtime().block_on(async {
                for _ in 0..7 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let mut outcome = Outcome::Miss;
                    let v = Cacheable::new("session:<<id>>")
                        .ttl(Duration::from_secs(1))
                        .sliding(true)
                        .on(&cache)
                        .outcome(&mut outcome)
                        .run_async(ctx! { id = 2 }, || async {
                            computed.fetch_add(1, Ordering::SeqCst);
                            0
                        })
                        .await;
                    assert_eq!(
                        (v, outcome),
                        (2, Outcome::Hit),
                        "at {:?}",
                        started.elapsed()
                    );
                }
            })
        });
    });
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(computed.load(Ordering::SeqCst), 3);
    // Just read: a full second left, give or take the read's own time.
    assert!(left(&cache, "session:1") > Duration::from_millis(400));
    assert!(left(&cache, "session:2") > Duration::from_millis(400));
    assert_eq!(cache.ttl("session:3").unwrap(), KeyTtl::Missing);
    assert_eq!(cache.stats().sliding_hits, 14);
    // A plain read does not push the expiry.
    std::thread::sleep(Duration::from_millis(300));
    let before = left(&cache, "session:1");
    let plain = Cacheable::new("session:<<id>>")
        .ttl(Duration::from_secs(1))
        .on(&cache)
        .run(ctx! { id = 1 }, || 0);
    assert_eq!(plain, 1);
    assert!(left(&cache, "session:1") <= before);
}

fn outcome_unavailable_when_the_key_does_not_render(b: &Backend) {
    let cache = b.cache("unavailable");
    let mut outcome = Outcome::Hit;
    let v = Cacheable::new("item:<<id>>")
        .on(&cache)
        .outcome(&mut outcome)
        .run(ctx! { other = 1 }, || 5);
    assert_eq!((v, outcome), (5, Outcome::Unavailable));
    runtime().block_on(async {
        let mut outcome = Outcome::Hit;
        let v = Cacheable::new("item:<<id>>")
            .on(&cache)
            .outcome(&mut outcome)
            .run_async(ctx! { other = 1 }, || async { 6 })
            .await;
        assert_eq!((v, outcome), (6, Outcome::Unavailable));
    });
}

// `store_if` takes a `fn(&T) -> bool` for the value's type `T`, here `Vec<u32>`.
#[allow(clippy::ptr_arg)]
fn non_empty(v: &Vec<u32>) -> bool {
    !v.is_empty()
}

cache_fn! {
    #[cache(key = "m:search:<<id>>", cache = cache, store_if = non_empty)]
    fn search(cache: &Cache, id: u32, found: Vec<u32>) -> Vec<u32> {
        found
    }

    #[cache(key = "m:token:<<id>>", ttl = 3600, cache = cache, ttl_from = token_ttl)]
    async fn token(cache: &Cache, id: u32, expires_in: u64) -> Result<Token, String> {
        Ok(Token { value: "t".into(), expires_in })
    }

    #[cache(key = "m:session:<<id>>", ttl = 60, cache = cache, sliding = true)]
    fn session(cache: &Cache, id: u32) -> u32 {
        id
    }
}

fn macro_options(b: &Backend) {
    let cache = b.cache("macro");
    assert_eq!(search(&cache, 1, vec![]), Vec::<u32>::new());
    assert_eq!(cache.get::<Vec<u32>>("m:search:1").unwrap(), None);
    assert_eq!(search(&cache, 2, vec![1]), vec![1]);
    assert_eq!(search(&cache, 2, vec![]), vec![1]);
    let t = runtime().block_on(token(&cache, 1, 9)).unwrap();
    assert_eq!(t.expires_in, 9);
    let d = left(&cache, "m:token:1");
    assert!(
        d <= Duration::from_secs(9) && d > Duration::from_secs(8),
        "{d:?}"
    );
    assert_eq!(session(&cache, 1), 1);
    std::thread::sleep(Duration::from_millis(1100));
    let before = left(&cache, "m:session:1");
    assert_eq!(session(&cache, 1), 1);
    assert!(
        left(&cache, "m:session:1") > before,
        "the hit pushed the expiry"
    );
    assert_eq!(cache.stats().sliding_hits, 1);
}

/// Redis down: the call answers without the cache and says so.
#[cfg(feature = "redis")]
#[test]
fn outcome_unavailable_when_redis_is_down() {
    let mut server = support::RedisServer::start();
    let cache = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("down")
            .connect_timeout(Duration::from_millis(200))
            .op_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    seed(&cache, 1, "cached");
    server.kill();
    let mut outcome = Outcome::Hit;
    let v = Cacheable::new("item:<<id>>")
        .ttl(60)
        .on(&cache)
        .outcome(&mut outcome)
        .run(ctx! { id = 1 }, || "computed".to_string());
    assert_eq!((v.as_str(), outcome), ("computed", Outcome::Unavailable));
    runtime().block_on(async {
        let mut outcome = Outcome::Hit;
        let v = Cacheable::new("item:<<id>>")
            .ttl(60)
            .on(&cache)
            .sliding(true)
            .outcome(&mut outcome)
            .run_async(ctx! { id = 1 }, || async { "computed".to_string() })
            .await;
        assert_eq!((v.as_str(), outcome), ("computed", Outcome::Unavailable));
    });
    assert!(cache.stats().errors >= 2);
}

/// A sliding read that finds another caller's lease leaves the lease's expiry as it was:
/// a dead holder's lease still goes on time (`GETEX` alone would push it to the call's TTL).
#[cfg(feature = "redis")]
#[test]
fn a_sliding_read_leaves_a_lease_expiry_alone() {
    let server = support::RedisServer::start();
    let cache = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("lease")
            .lease_wait(Duration::from_millis(100)),
    )
    .unwrap();
    let mut con = server.client();
    // A lease whose holder died: nobody renews it.
    let _: () = redis::cmd("SET")
        .arg("lease:item:1")
        .arg(b"\0cacheable-lease:dead-holder".as_slice())
        .arg("PX")
        .arg(3000)
        .query(&mut con)
        .unwrap();
    let mut outcome = Outcome::Hit;
    let v = Cacheable::new("item:<<id>>")
        .ttl(3600)
        .sliding(true)
        .on(&cache)
        .outcome(&mut outcome)
        .run(ctx! { id = 1 }, || 7);
    assert_eq!((v, outcome), (7, Outcome::Miss));
    let left: i64 = redis::cmd("PTTL")
        .arg("lease:item:1")
        .query(&mut con)
        .unwrap();
    assert!(left > 0 && left <= 3000, "the lease has {left} ms left");
    let raw: Vec<u8> = redis::cmd("GET")
        .arg("lease:item:1")
        .query(&mut con)
        .unwrap();
    assert_eq!(raw, b"\0cacheable-lease:dead-holder");
}

/// Sliding with a stale-if-error window: a hit within the TTL pushes the expiry to the TTL
/// and the window after it; a value left unread past its TTL is not revived by a sliding
/// read, it is a miss (answered with the stale value when the computation fails).
fn sliding_with_a_stale_window(b: &Backend) {
    let cache = b.cache("slide-window");
    let call = |out: Result<u32, &'static str>| {
        let mut outcome = Outcome::Miss;
        let v = Cacheable::new("pass:<<id>>")
            .ttl(Duration::from_secs(1))
            .stale_if_error(Duration::from_secs(5))
            .sliding(true)
            .on(&cache)
            .outcome(&mut outcome)
            .try_run(ctx! { id = 1 }, || out);
        (v, outcome)
    };
    let left = || match cache.ttl("pass:1").unwrap() {
        KeyTtl::Expires(left) => left,
        other => panic!("{other:?}"),
    };
    assert_eq!(call(Ok(1)), (Ok(1), Outcome::Miss));
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(call(Err("down")), (Ok(1), Outcome::Hit));
        assert!(left() > Duration::from_millis(5500), "pushed: {:?}", left());
    }
    assert_eq!(cache.stats().sliding_hits, 4);
    // Unread for more than the TTL: in its window, not a hit, and no longer pushed.
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(call(Err("down")), (Ok(1), Outcome::Stale));
    assert!(
        left() < Duration::from_millis(5000),
        "not pushed: {:?}",
        left()
    );
    assert_eq!(cache.stats().sliding_hits, 4);
    assert_eq!(call(Ok(2)), (Ok(2), Outcome::Miss));
    assert_eq!(call(Err("down")), (Ok(2), Outcome::Hit));
}

/// A value served from the near cache (or the embedded store's decoded copies) is
/// `Outcome::NearHit`, a hit; without a near cache, a hit is always `Outcome::Hit`.
fn near_hits_are_hits(b: &Backend) {
    let cache = b.cache("near-hit");
    let near = b.near || b.url.is_none();
    seed(&cache, 1, "v");
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let mut outcome = Outcome::Miss;
        let v = Cacheable::new("item:<<id>>")
            .ttl(60)
            .on(&cache)
            .outcome(&mut outcome)
            .run(ctx! { id = 1 }, || "computed".to_string());
        assert_eq!(v, "v");
        assert!(outcome.is_hit(), "{outcome:?}");
        seen.push(outcome);
        if !near && seen.len() == 5 || outcome == Outcome::NearHit {
            break;
        }
        assert!(Instant::now() < deadline, "no near hit in {seen:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let near_hits = cache.stats().near_hits;
    if near {
        assert_eq!(seen.last(), Some(&Outcome::NearHit));
        assert_eq!(Outcome::NearHit.as_str(), "nearhit");
        assert!(near_hits >= 1);
        // Async too. Read until a near hit: the seed's own write sends an invalidation
        // that, late on a loaded machine, may evict the entry once more (as it should).
        loop {
            let mut outcome = Outcome::Miss;
            let v: String = runtime().block_on(
                Cacheable::new("item:<<id>>")
                    .ttl(60)
                    .on(&cache)
                    .outcome(&mut outcome)
                    .run_async(ctx! { id = 1 }, || async { "computed".to_string() }),
            );
            assert_eq!(v, "v");
            assert!(outcome.is_hit(), "{outcome:?}");
            if outcome == Outcome::NearHit {
                break;
            }
            assert!(Instant::now() < deadline, "no async near hit");
            std::thread::sleep(Duration::from_millis(5));
        }
    } else {
        assert!(seen.iter().all(|o| *o == Outcome::Hit), "{seen:?}");
        assert_eq!(near_hits, 0);
    }
}

/// A value past its TTL that answers the call is `Outcome::Stale`: for a failed
/// computation (stale-if-error) and while another caller revalidates it
/// (stale-while-revalidate), whose own outcome is `Outcome::Refreshed`.
fn stale_answers_are_stale(b: &Backend) {
    use std::sync::atomic::AtomicBool;
    let cache = b.cache("stale");
    let quote = |out: Result<u32, &'static str>| {
        let mut outcome = Outcome::Miss;
        let v = Cacheable::new("quote:<<id>>")
            .ttl(Duration::from_millis(300))
            .stale_if_error(Duration::from_secs(5))
            .on(&cache)
            .outcome(&mut outcome)
            .try_run(ctx! { id = 1 }, || out);
        (v, outcome)
    };
    assert_eq!(quote(Ok(1)), (Ok(1), Outcome::Miss));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(quote(Err("down")), (Ok(1), Outcome::Stale));
    assert_eq!(quote(Err("down")), (Ok(1), Outcome::Stale));
    assert_eq!(quote(Ok(2)), (Ok(2), Outcome::Miss));
    let (v, outcome) = quote(Err("down"));
    assert_eq!((v, hit(outcome)), (Ok(2), Outcome::Hit));
    std::thread::sleep(Duration::from_millis(400));
    let mut outcome = Outcome::Miss;
    let v = runtime().block_on(
        Cacheable::new("quote:<<id>>")
            .ttl(Duration::from_millis(300))
            .stale_if_error(Duration::from_secs(5))
            .on(&cache)
            .outcome(&mut outcome)
            .try_run_async(ctx! { id = 1 }, || async { Err::<u32, _>("down") }),
    );
    assert_eq!((v, outcome), (Ok(2), Outcome::Stale));
    assert_eq!(cache.stats().stale_if_error, 3);

    let rate = |v: u32, started: Option<&AtomicBool>| {
        let mut outcome = Outcome::Miss;
        let v = Cacheable::new("rate:<<id>>")
            .ttl(Duration::from_millis(300))
            .stale_while_revalidate(Duration::from_secs(5))
            .on(&cache)
            .outcome(&mut outcome)
            .run(ctx! { id = 1 }, || {
                if let Some(started) = started {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(500));
                }
                v
            });
        (v, outcome)
    };
    assert_eq!(rate(1, None), (1, Outcome::Miss));
    std::thread::sleep(Duration::from_millis(400));
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let refresher = s.spawn(|| rate(2, Some(&started)));
        support::wait_started(&started);
        assert_eq!(rate(99, None), (1, Outcome::Stale));
        let mut outcome = Outcome::Miss;
        let v = runtime().block_on(
            Cacheable::new("rate:<<id>>")
                .ttl(Duration::from_millis(300))
                .stale_while_revalidate(Duration::from_secs(5))
                .on(&cache)
                .outcome(&mut outcome)
                .run_async(ctx! { id = 1 }, || async { 98 }),
        );
        assert_eq!((v, outcome), (1, Outcome::Stale));
        assert_eq!(refresher.join().unwrap(), (2, Outcome::Refreshed));
    });
    assert_eq!(Outcome::Stale.as_str(), "stale");
    assert!(!Outcome::Stale.is_hit());
    let stats = cache.stats();
    assert!(stats.stale_while_revalidate >= 2, "{stats:?}");
    assert_eq!(stats.early_refreshes, 1, "{stats:?}");
}
