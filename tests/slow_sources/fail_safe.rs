//! The fail-safe throttle (`Cacheable::fail_safe_throttle`, `Config::fail_safe_throttle`,
//! `cache_fn!`'s `fail_safe_throttle = …`): once a failed computation has been answered with
//! the value past its TTL, readers answer with that value for the throttle, in every cache
//! on the store, and the source is asked again after it. On the embedded store and a
//! private Redis (with and without the near cache), sync and async.

use crate::support;

use cacheable::{cache_fn, ctx, Cache, Cacheable, Outcome};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use support::{suite, Backend};

suite!(
    an_outage_asks_the_source_once_per_throttle,
    without_a_throttle_every_request_asks_the_source,
    an_invalidation_ends_the_throttle,
    a_throttled_value_of_another_type_is_computed_over,
    the_config_default_and_the_macro_option_throttle,
);

support::suite_tests! {
    memory = memory(Without),
    redis = redis(Without),
    redis_near = redis(With),
}

/// The source: failing while `down` is in the future.
struct Source {
    calls: AtomicU32,
    down_until: std::sync::Mutex<Option<Instant>>,
}

impl Source {
    fn new() -> Source {
        Source {
            calls: AtomicU32::new(0),
            down_until: std::sync::Mutex::new(None),
        }
    }

    fn go_down_for(&self, outage: Duration) {
        *self.down_until.lock().unwrap() = Some(Instant::now() + outage);
    }

    fn call(&self, value: u32) -> Result<u32, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match *self.down_until.lock().unwrap() {
            Some(until) if Instant::now() < until => Err("the rates API is down".into()),
            _ => Ok(value),
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A rate with a TTL of 300 ms and a stale window of a minute.
fn rate(cache: &Cache, source: &Source, throttle: Option<Duration>, value: u32) -> (u32, Outcome) {
    let mut outcome = Outcome::Miss;
    let mut builder = Cacheable::new("rate:<<code>>")
        .ttl(Duration::from_millis(300))
        .stale_if_error(60)
        .outcome(&mut outcome);
    if let Some(throttle) = throttle {
        builder = builder.fail_safe_throttle(throttle);
    }
    let got = builder
        .on(cache)
        .try_run(ctx! { code = "NGN" }, || source.call(value))
        .expect("a stale value answers every failure");
    (got, outcome)
}

async fn rate_async(
    cache: &Cache,
    source: &Source,
    throttle: Duration,
    value: u32,
) -> (u32, Outcome) {
    let mut outcome = Outcome::Miss;
    let got = Cacheable::new("rate:<<code>>")
        .ttl(Duration::from_millis(300))
        .stale_if_error(60)
        .fail_safe_throttle(throttle)
        .outcome(&mut outcome)
        .on(cache)
        .try_run_async(ctx! { code = "NGN" }, || async move { source.call(value) })
        .await
        .expect("a stale value answers every failure");
    (got, outcome)
}

/// 100 requests over `span`, alternating between `cache` and `peer` (another process's
/// cache on a shared store); each must answer 1 (the value before the outage) or 2 (after
/// it). The answers' outcomes.
fn requests(span: Duration, mut request: impl FnMut(usize) -> (u32, Outcome)) -> Vec<Outcome> {
    let started = Instant::now();
    (0..100)
        .map(|i| {
            let at = span.mul_f64(i as f64 / 100.0);
            if let Some(wait) = at.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            let (got, outcome) = request(i);
            assert!(got == 1 || got == 2, "request {i}: {got}");
            outcome
        })
        .collect()
}

fn an_outage_asks_the_source_once_per_throttle(b: &Backend) {
    let throttle = Some(Duration::from_secs(1));
    // Sync: 100 requests during a 2-second outage, in two caches on one store.
    let cache = b.cache("throttle");
    let peer = b.peer(&cache);
    let source = Source::new();
    assert_eq!(rate(&cache, &source, throttle, 1).0, 1);
    std::thread::sleep(Duration::from_millis(400)); // past its TTL, in its window
    source.go_down_for(Duration::from_secs(2));
    let before = source.calls();
    let outcomes = requests(Duration::from_secs(2), |i| {
        let on = if i % 2 == 0 { &cache } else { &peer };
        rate(on, &source, throttle, 2)
    });
    let during = source.calls() - before;
    assert!(
        (1..=3).contains(&during),
        "{}: the source was asked {during} times in a 2 s outage with a 1 s throttle",
        b.name
    );
    assert!(
        outcomes.iter().filter(|o| **o == Outcome::Stale).count() >= 90,
        "{}: {outcomes:?}",
        b.name
    );
    // Past the outage and the throttle: asked again, and the new value served.
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(rate(&cache, &source, throttle, 2).0, 2, "{}", b.name);
    assert_eq!(rate(&peer, &source, throttle, 3).0, 2, "{}", b.name);

    // Async: the same, from tasks.
    let cache = b.cache("throttleasync");
    let source = Source::new();
    let rt = support::current_thread();
    let throttle = Duration::from_secs(1);
    assert_eq!(rt.block_on(rate_async(&cache, &source, throttle, 1)).0, 1);
    std::thread::sleep(Duration::from_millis(400));
    source.go_down_for(Duration::from_secs(2));
    let before = source.calls();
    let outcomes = requests(Duration::from_secs(2), |_| {
        rt.block_on(rate_async(&cache, &source, throttle, 2))
    });
    let during = source.calls() - before;
    assert!(
        (1..=3).contains(&during),
        "{} async: asked {during} times",
        b.name
    );
    assert!(outcomes.iter().filter(|o| **o == Outcome::Stale).count() >= 90);
}

/// The control: without a throttle, each request past the TTL asks the failing source
/// (one at a time, through the lease) and answers with the stale value.
fn without_a_throttle_every_request_asks_the_source(b: &Backend) {
    let cache = b.cache("nothrottle");
    let source = Source::new();
    assert_eq!(rate(&cache, &source, None, 1).0, 1);
    std::thread::sleep(Duration::from_millis(400));
    source.go_down_for(Duration::from_secs(60));
    let before = source.calls();
    let outcomes = requests(Duration::from_millis(500), |_| {
        rate(&cache, &source, None, 2)
    });
    assert_eq!(source.calls() - before, 100, "{}", b.name);
    assert!(outcomes.iter().all(|o| *o == Outcome::Stale), "{}", b.name);
}

/// An invalidation deletes the throttled value: the next request asks the source, and a
/// success is served at once.
fn an_invalidation_ends_the_throttle(b: &Backend) {
    let cache = b.cache("throttleinval");
    let source = Source::new();
    let throttle = Some(Duration::from_secs(60));
    assert_eq!(rate(&cache, &source, throttle, 1).0, 1);
    std::thread::sleep(Duration::from_millis(400));
    source.go_down_for(Duration::from_millis(300));
    assert_eq!(rate(&cache, &source, throttle, 2), (1, Outcome::Stale));
    std::thread::sleep(Duration::from_millis(400)); // the source is back
    let asked = source.calls();
    // Within the throttle: the stale value, the source left alone.
    assert_eq!(rate(&cache, &source, throttle, 2), (1, Outcome::Stale));
    assert_eq!(source.calls(), asked, "{}", b.name);
    cacheable::Invalidate::new(["rate:<<code>>"])
        .on(&cache)
        .now(ctx! { code = "NGN" })
        .unwrap();
    assert_eq!(rate(&cache, &source, throttle, 2), (2, Outcome::Miss));
    assert_eq!(source.calls(), asked + 1, "{}", b.name);
}

/// A reader whose type cannot decode the throttled value (a new version of the struct,
/// deployed during an outage) computes its own rather than read the value again and again
/// until the retry time.
fn a_throttled_value_of_another_type_is_computed_over(b: &Backend) {
    let cache = b.cache("throttletype");
    let source = Source::new();
    let throttle = Some(Duration::from_secs(60));
    assert_eq!(rate(&cache, &source, throttle, 1).0, 1);
    std::thread::sleep(Duration::from_millis(400));
    source.go_down_for(Duration::from_millis(100));
    assert_eq!(rate(&cache, &source, throttle, 2), (1, Outcome::Stale));
    let started = Instant::now();
    let got: Result<String, String> = Cacheable::new("rate:<<code>>")
        .ttl(Duration::from_millis(300))
        .stale_if_error(60)
        .fail_safe_throttle(60)
        .on(&cache)
        .try_run(ctx! { code = "NGN" }, || Ok("a new shape".to_string()));
    assert_eq!(got.as_deref(), Ok("a new shape"), "{}", b.name);
    assert!(started.elapsed() < Duration::from_secs(5), "{}", b.name);
}

cache_fn! {
    #[cache(key = "fx:<<code>>", ttl = Duration::from_millis(300), stale_if_error = 60, fail_safe_throttle = 60, cache = cache)]
    fn fx(cache: &Cache, code: &str, source: &Source, value: u32) -> Result<u32, String> {
        let _ = (cache, code);
        source.call(value)
    }
}

/// `Config::fail_safe_throttle` as the default of a builder that sets none, and the
/// `cache_fn!` option.
fn the_config_default_and_the_macro_option_throttle(b: &Backend) {
    let cache = Cache::new(
        b.config()
            .prefix(format!("throttleconfig{}", b.near))
            .fail_safe_throttle(60),
    )
    .unwrap();
    let source = Source::new();
    let read = |value| {
        Cacheable::new("rate:<<code>>")
            .ttl(Duration::from_millis(300))
            .stale_if_error(60)
            .on(&cache)
            .try_run(ctx! { code = "NGN" }, || source.call(value))
            .unwrap()
    };
    throttled_by(&format!("{}: the config's throttle", b.name), &source, read);
    // The builder's own setting wins: zero turns it off.
    let off = Cacheable::new("rate:<<code>>")
        .ttl(Duration::from_millis(300))
        .stale_if_error(60)
        .fail_safe_throttle(0u64)
        .on(&cache)
        .try_run(ctx! { code = "NGN" }, || source.call(2))
        .unwrap();
    assert_eq!(off, 2, "{}", b.name);

    let cache = Cache::new(b.config().prefix(format!("throttlemacro{}", b.near))).unwrap();
    let source = Source::new();
    let fx_on = |value| fx(&cache, "NGN", &source, value).unwrap();
    throttled_by(&format!("{}: the macro's throttle", b.name), &source, fx_on);
}

/// `read` (of the value it is given, by `source`) caches 1; past its TTL, a short outage
/// answers with 1; after the outage, within the throttle, it still answers 1 without
/// asking the source.
fn throttled_by(what: &str, source: &Source, read: impl Fn(u32) -> u32) {
    assert_eq!(read(1), 1, "{what}");
    std::thread::sleep(Duration::from_millis(400));
    source.go_down_for(Duration::from_millis(100));
    assert_eq!(read(2), 1, "{what}");
    std::thread::sleep(Duration::from_millis(200));
    let asked = source.calls();
    assert_eq!(read(2), 1, "{what}: served within the throttle");
    assert_eq!(source.calls(), asked, "{what}");
}
