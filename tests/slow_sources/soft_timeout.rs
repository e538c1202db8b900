//! The soft timeout (`Cacheable::soft_timeout`, `Config::soft_timeout`): a caller that
//! computes a key with a value to answer with waits only so long, answers with that value,
//! and the computation goes on and writes under its lease. On the embedded store and a
//! private Redis (with and without the near cache).

use crate::support;

use cacheable::{ctx, Cache, Cacheable, Invalidate, Outcome};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{suite, Backend};

suite!(
    a_slow_computation_answers_the_stale_value_and_writes_when_it_ends,
    an_invalidation_during_the_detached_computation_keeps_its_value_out,
    the_callers_waiting_on_a_cut_short_computation_answer_with_its_value,
    only_a_detachable_computation_with_a_value_to_answer_with_is_cut_short,
);

support::suite_tests! {
    memory = memory(Without),
    redis = redis(Without),
    redis_near = redis(With),
}

/// How long the slow source takes; the soft timeout is a small part of it.
const SLOW: Duration = Duration::from_secs(2);
const SOFT: Duration = Duration::from_millis(100);

/// The source: each call returns the next version, slowly when `slow`; counts its calls
/// and the ones that ended.
#[derive(Default)]
struct Source {
    started: AtomicU32,
    ended: AtomicU32,
}

impl Source {
    fn ended(&self) -> u32 {
        self.ended.load(Ordering::SeqCst)
    }

    /// A computation of the next version, that can outlive its call.
    fn version(
        self: &Arc<Self>,
        slow: bool,
    ) -> impl std::future::Future<Output = Result<u32, String>> + Send + 'static {
        let source = self.clone();
        async move {
            let version = source.started.fetch_add(1, Ordering::SeqCst) + 1;
            if slow {
                tokio::time::sleep(SLOW).await;
            }
            source.ended.fetch_add(1, Ordering::SeqCst);
            Ok(version)
        }
    }
}

/// A report with a TTL of 300 ms and `window` (stale-if-error, or stale-while-revalidate
/// when `swr`), the soft timeout, computed by a detachable future.
async fn report(cache: &Cache, source: &Arc<Source>, swr: bool, slow: bool) -> (u32, Outcome) {
    let mut outcome = Outcome::Miss;
    let mut builder = Cacheable::new("report:<<id>>")
        .ttl(Duration::from_millis(300))
        .soft_timeout(SOFT)
        .outcome(&mut outcome);
    builder = if swr {
        builder.stale_while_revalidate(60)
    } else {
        builder.stale_if_error(60)
    };
    let got = builder
        .on(cache)
        .try_run_detached_async(ctx! { id = 1 }, || source.version(slow))
        .await
        .unwrap();
    (got, outcome)
}

/// Waits (up to 10 s) until `done` holds.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn a_slow_computation_answers_the_stale_value_and_writes_when_it_ends(b: &Backend) {
    let rt = support::runtime(2);
    for swr in [false, true] {
        let cache = b.cache(&format!("soft{swr}"));
        let peer = b.peer(&cache);
        let source = Arc::new(Source::default());
        assert_eq!(rt.block_on(report(&cache, &source, swr, false)).0, 1);
        std::thread::sleep(Duration::from_millis(400)); // past its TTL, in its window
        let started = Instant::now();
        let (got, outcome) = rt.block_on(report(&cache, &source, swr, true));
        let took = started.elapsed();
        assert_eq!((got, outcome), (1, Outcome::Stale), "{} swr {swr}", b.name);
        assert!(
            took < SLOW / 2,
            "{} swr {swr}: answered after {took:?}, the computation takes {SLOW:?}",
            b.name
        );
        assert_eq!(
            source.ended(),
            1,
            "{}: the slow computation goes on",
            b.name
        );
        // When it ends, its value is written and served, here and in another cache.
        eventually("the detached computation ended", || source.ended() == 2);
        eventually("its value was written", || {
            cache.get::<u32>("report:1").unwrap() == Some(2)
        });
        let (got, outcome) = rt.block_on(report(&peer, &source, swr, true));
        assert_eq!(got, 2, "{} swr {swr}", b.name);
        assert!(
            matches!(outcome, Outcome::Hit | Outcome::NearHit),
            "{} swr {swr}: {outcome:?}",
            b.name
        );
        assert_eq!(source.started.load(Ordering::SeqCst), 2, "{}", b.name);
        assert_eq!(cache.stats().soft_timeouts, 1, "{} swr {swr}", b.name);
    }
}

fn an_invalidation_during_the_detached_computation_keeps_its_value_out(b: &Backend) {
    let rt = support::runtime(2);
    for swr in [false, true] {
        let cache = b.cache(&format!("softinval{swr}"));
        let source = Arc::new(Source::default());
        assert_eq!(rt.block_on(report(&cache, &source, swr, false)).0, 1);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            rt.block_on(report(&cache, &source, swr, true)),
            (1, Outcome::Stale),
            "{}",
            b.name
        );
        Invalidate::new(["report:<<id>>"])
            .on(&cache)
            .now(ctx! { id = 1 })
            .unwrap();
        // A caller after the invalidation gets neither the value it removed nor the one
        // computed from data read before it: it waits for the computation in the air, then
        // computes (version 3).
        let (got, _) = rt.block_on(report(&cache, &source, swr, false));
        assert_eq!(got, 3, "{} swr {swr}: after the invalidation", b.name);
        eventually("the detached computation ended", || source.ended() == 3);
        // Give its write the time to land, were it to.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            cache.get::<u32>("report:1").unwrap(),
            Some(3),
            "{} swr {swr}: a value computed across the invalidation was written",
            b.name
        );
    }
}

/// 20 callers of a key being computed slowly, with a soft timeout: the one that computes
/// answers with the value past its TTL at its soft timeout, and so do the 19 that wait on
/// it, at once; the source is asked once.
fn the_callers_waiting_on_a_cut_short_computation_answer_with_its_value(b: &Backend) {
    let rt = support::runtime(2);
    let cache = b.cache("softfollow");
    let source = Arc::new(Source::default());
    assert_eq!(rt.block_on(report(&cache, &source, false, false)).0, 1);
    std::thread::sleep(Duration::from_millis(400));
    let started = Instant::now();
    let answers = rt.block_on(async {
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let (cache, source) = (cache.clone(), source.clone());
                tokio::spawn(async move { report(&cache, &source, false, true).await })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap());
        }
        answers
    });
    let took = started.elapsed();
    assert!(
        answers.iter().all(|a| *a == (1, Outcome::Stale)),
        "{}: {answers:?}",
        b.name
    );
    assert!(
        took < SLOW / 2,
        "{}: the 20 answered after {took:?}",
        b.name
    );
    assert_eq!(source.started.load(Ordering::SeqCst), 2, "{}", b.name);
    eventually("its value was written", || {
        cache.get::<u32>("report:1").unwrap() == Some(2)
    });
}

/// The controls: `try_run_async` (a future that need not be `'static`) and a key with
/// nothing to answer with wait for their computation.
fn only_a_detachable_computation_with_a_value_to_answer_with_is_cut_short(b: &Backend) {
    let rt = support::runtime(2);
    let cache = b.cache("softcontrol");
    let source = Arc::new(Source::default());
    // Nothing cached yet: the caller waits for the slow computation.
    let started = Instant::now();
    assert_eq!(rt.block_on(report(&cache, &source, false, true)).0, 1);
    assert!(started.elapsed() >= SLOW, "{}", b.name);
    std::thread::sleep(Duration::from_millis(400));
    // Past its TTL, but computed by a borrowed future: waited for.
    let calls = AtomicU32::new(0);
    let started = Instant::now();
    let got = rt.block_on(
        Cacheable::new("report:<<id>>")
            .ttl(Duration::from_millis(300))
            .stale_if_error(60)
            .soft_timeout(SOFT)
            .on(&cache)
            .try_run_async(ctx! { id = 1 }, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(600)).await;
                Ok::<u32, String>(7)
            }),
    );
    assert_eq!(got, Ok(7), "{}", b.name);
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{}",
        b.name
    );
    assert_eq!(cache.stats().soft_timeouts, 0, "{}", b.name);
    // `Config::soft_timeout`, the default of a builder that sets none.
    let cache = Cache::new(
        b.config()
            .prefix(format!("softconfig{}", b.near))
            .soft_timeout(SOFT),
    )
    .unwrap();
    let source = Arc::new(Source::default());
    let read = |slow| {
        let source = &source;
        Cacheable::new("report:<<id>>")
            .ttl(Duration::from_millis(300))
            .stale_if_error(60)
            .on(&cache)
            .try_run_detached_async(ctx! { id = 1 }, move || source.version(slow))
    };
    assert_eq!(rt.block_on(read(false)), Ok(1));
    std::thread::sleep(Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(rt.block_on(read(true)), Ok(1), "{}", b.name);
    assert!(started.elapsed() < SLOW / 2, "{}", b.name);
    eventually("its value was written", || {
        cache.get::<u32>("report:1").unwrap() == Some(2)
    });
}
