//! The `metrics` feature: what a cache does shows up in the installed `metrics` recorder,
//! labelled by key template, and agrees with `Stats`. On the embedded store: what is
//! checked is the reporting, not a store.
#![cfg(feature = "metrics")]

#[cfg(feature = "redis")]
mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

/// Counts and histogram samples by `(name, template label)`.
#[derive(Default)]
struct Capture {
    counters: Mutex<HashMap<(String, String), Arc<Count>>>,
    histograms: Mutex<HashMap<(String, String), Arc<Samples>>>,
    /// Gauges by `(name, prefix label)`, each the bits of its `f64`.
    gauges: Mutex<HashMap<(String, String), Arc<Level>>>,
}

#[derive(Default)]
struct Level(AtomicU64);

impl GaugeFn for Level {
    fn increment(&self, v: f64) {
        self.set(f64::from_bits(self.0.load(Ordering::SeqCst)) + v);
    }
    fn decrement(&self, v: f64) {
        self.set(f64::from_bits(self.0.load(Ordering::SeqCst)) - v);
    }
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Count(AtomicU64);

impl CounterFn for Count {
    fn increment(&self, n: u64) {
        self.0.fetch_add(n, Ordering::SeqCst);
    }
    fn absolute(&self, n: u64) {
        self.0.store(n, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, v: f64) {
        self.0.lock().unwrap().push(v);
    }
}

fn id(key: &Key) -> (String, String) {
    let template = key
        .labels()
        .find(|l| l.key() == "template")
        .map(|l| l.value().to_owned())
        .unwrap_or_default();
    (key.name().to_owned(), template)
}

struct Shared(&'static Capture);

impl Recorder for Shared {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let c = self
            .0
            .counters
            .lock()
            .unwrap()
            .entry(id(key))
            .or_default()
            .clone();
        Counter::from_arc(c)
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let prefix = key
            .labels()
            .find(|l| l.key() == "prefix")
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        let g = self
            .0
            .gauges
            .lock()
            .unwrap()
            .entry((key.name().to_owned(), prefix))
            .or_default()
            .clone();
        Gauge::from_arc(g)
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let h = self
            .0
            .histograms
            .lock()
            .unwrap()
            .entry(id(key))
            .or_default()
            .clone();
        Histogram::from_arc(h)
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::default());
        metrics::set_global_recorder(Shared(capture)).expect("the only recorder");
        cacheable::describe_metrics();
        capture
    })
}

fn count(name: &str, template: &str) -> u64 {
    capture()
        .counters
        .lock()
        .unwrap()
        .get(&(name.to_owned(), template.to_owned()))
        .map_or(0, |c| c.0.load(Ordering::SeqCst))
}

fn gauge(name: &str, prefix: &str) -> Option<f64> {
    capture()
        .gauges
        .lock()
        .unwrap()
        .get(&(name.to_owned(), prefix.to_owned()))
        .map(|g| f64::from_bits(g.0.load(Ordering::SeqCst)))
}

fn samples(name: &str, template: &str) -> Vec<f64> {
    capture()
        .histograms
        .lock()
        .unwrap()
        .get(&(name.to_owned(), template.to_owned()))
        .map_or_else(Vec::new, |h| h.0.lock().unwrap().clone())
}

#[test]
fn reads_invalidations_and_computations_are_reported_by_template() {
    capture();
    let cache = Cache::new(Config::memory().prefix("metrics")).unwrap();
    const PROFILE: &str = "user:<<user_id>>:profile";
    let load = |user_id: u32| {
        Cacheable::new(PROFILE)
            .ttl(60)
            .on(&cache)
            .run(ctx! { user_id }, || {
                std::thread::sleep(Duration::from_millis(20));
                format!("profile {user_id}")
            })
    };
    load(1); // miss
    load(1); // hit
    load(1); // hit
    load(2); // miss

    assert_eq!(count("cacheable_misses_total", PROFILE), 2);
    assert_eq!(count("cacheable_hits_total", PROFILE), 2);
    assert_eq!(count("cacheable_sets_total", PROFILE), 2);
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses),
        (2, 2),
        "metrics agree with Stats"
    );
    let times = samples("cacheable_compute_seconds", PROFILE);
    assert_eq!(times.len(), 2, "one sample per computation: {times:?}");
    assert!(times.iter().all(|t| *t >= 0.02), "{times:?}");

    let user_id = 1;
    let deleted = Invalidate::new(["user:<<user_id>>:*"])
        .on(&cache)
        .now(ctx! { user_id })
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(
        count("cacheable_invalidated_keys_total", "user:<<user_id>>:*"),
        1
    );

    cache.set("loose", &1, 60).unwrap();
    assert_eq!(cache.get::<i32>("loose").unwrap(), Some(1));
    assert_eq!(cache.delete_pattern("*").unwrap(), 2);
    assert_eq!(count("cacheable_hits_total", "(manual)"), 1);
    assert_eq!(count("cacheable_sets_total", "(manual)"), 1);
    assert_eq!(count("cacheable_invalidated_keys_total", "(manual)"), 2);
    assert_eq!(count("cacheable_errors_total", PROFILE), 0);

    // A second caller of a key being computed waits for it: one lease wait, one miss, and
    // the computation runs once.
    const SLOW: &str = "slow:<<n>>";
    let (started, wait_for_start) = mpsc::channel();
    let computations = AtomicU64::new(0);
    let slow = |signal: Option<mpsc::Sender<()>>| {
        let n = 7;
        Cacheable::new(SLOW).ttl(60).on(&cache).run(ctx! { n }, || {
            computations.fetch_add(1, Ordering::SeqCst);
            if let Some(s) = signal {
                s.send(()).unwrap();
            }
            std::thread::sleep(Duration::from_millis(300));
            n * 6
        })
    };
    std::thread::scope(|s| {
        let leader = s.spawn(|| slow(Some(started)));
        wait_for_start.recv().unwrap();
        assert_eq!(slow(None), 42);
        assert_eq!(leader.join().unwrap(), 42);
    });
    assert_eq!(computations.load(Ordering::SeqCst), 1);
    assert_eq!(count("cacheable_lease_waits_total", SLOW), 1);
    assert_eq!(count("cacheable_misses_total", SLOW), 2);
    assert_eq!(samples("cacheable_compute_seconds", SLOW).len(), 1);
}

/// A fallback answer, a shared failure and a hard timeout are counted by template.
#[test]
fn slow_and_failing_sources_are_counted() {
    capture();
    let cache = Cache::new(Config::memory().prefix("metrics-slow")).unwrap();
    const RATES: &str = "rates:<<code>>";
    let rates: Result<u32, String> = Cacheable::new(RATES)
        .fallback(0u32)
        .on(&cache)
        .try_run(ctx! { code = "NGN" }, || Err("down".to_string()));
    assert_eq!(rates.unwrap(), 0);
    assert_eq!(count("cacheable_fallbacks_total", RATES), 1);

    const REPORT: &str = "report:<<id>>";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let call = |cache: Cache| async move {
        Cacheable::new(REPORT)
            .hard_timeout(Duration::from_millis(100))
            .on(&cache)
            .try_run_shared_async(ctx! { id = 1 }, || async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<u32, cacheable::Error>(1)
            })
            .await
    };
    let leader = rt.spawn(call(cache.clone()));
    std::thread::sleep(Duration::from_millis(30));
    let waiter = rt.spawn(call(cache.clone()));
    assert!(rt.block_on(leader).unwrap().unwrap_err().is_timeout());
    assert!(rt
        .block_on(waiter)
        .unwrap()
        .unwrap_err()
        .is_shared_failure());
    assert_eq!(count("cacheable_hard_timeouts_total", REPORT), 1);
    assert_eq!(count("cacheable_shared_failures_total", REPORT), 1);
}

/// `health()` for a readiness probe, with Redis up, frozen, back and killed: each time
/// within the operation timeout, and the same state as gauges; calls answered without the
/// cache meanwhile are counted in `Stats::uncached`.
#[cfg(feature = "redis")]
#[test]
fn health_follows_the_store_and_shows_as_gauges() {
    capture();
    let mut server = support::RedisServer::start();
    let op_timeout = Duration::from_millis(300);
    let cache = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("probe")
            .op_timeout(op_timeout)
            .near_cache(1_000),
    )
    .unwrap();
    let within = |what: &str| {
        let started = std::time::Instant::now();
        let health = cache.health();
        // A liveness bound: the probe never hangs on a store that does not answer.
        assert!(
            started.elapsed() < op_timeout * 10,
            "{what}: {:?}",
            started.elapsed()
        );
        health
    };
    let up = within("up");
    assert!(up.is_ready() && up.enabled && !up.breaker_open, "{up:?}");
    assert_eq!(gauge("cacheable_store_up", "probe"), Some(1.0));
    assert_eq!(gauge("cacheable_enabled", "probe"), Some(1.0));
    assert_eq!(gauge("cacheable_pending_invalidations", "probe"), Some(0.0));

    server.pause();
    let frozen = within("frozen");
    assert!(!frozen.is_ready(), "{frozen:?}");
    assert_eq!(gauge("cacheable_store_up", "probe"), Some(0.0));
    let before = cache.stats().uncached;
    assert_eq!(
        Cacheable::new("k:<<id>>")
            .on(&cache)
            .run(ctx! { id = 1 }, || 5),
        5
    );
    assert_eq!(cache.stats().uncached, before + 1, "{:?}", cache.stats());
    // An invalidation that cannot land is pending, and shows.
    let err = Invalidate::new(["k:<<id>>"])
        .on(&cache)
        .now(ctx! { id = 1 })
        .unwrap_err();
    assert!(err.is_queued(), "{err:#}");
    let pending = within("frozen, one queued");
    assert!(pending.pending_invalidations >= 1, "{pending:?}");
    assert!(gauge("cacheable_pending_invalidations", "probe").unwrap() >= 1.0);

    server.resume();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let back = within("resumed");
        if back.is_ready() && back.pending_invalidations == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never healthy again: {back:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gauge("cacheable_store_up", "probe"), Some(1.0));
    assert_eq!(gauge("cacheable_pending_invalidations", "probe"), Some(0.0));

    server.kill();
    let down = within("killed");
    assert!(!down.is_ready(), "{down:?}");
    assert_eq!(gauge("cacheable_store_up", "probe"), Some(0.0));
    cache.disable();
    within("disabled");
    assert_eq!(gauge("cacheable_enabled", "probe"), Some(0.0));
}
