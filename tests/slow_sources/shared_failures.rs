//! A failing source is not called once per waiting caller: with `try_run_shared` (and the
//! `cache_fn!` functions whose error converts from `cacheable::Error`), the callers that
//! waited on a computation that failed (an `Err` or a panic) answer with that failure, in
//! this process and in another; `try_run` keeps running them side by side. On the
//! embedded store and a private Redis (with and without the near cache), sync and async.

use crate::support;

use cacheable::{cache_fn, ctx, Cache, Cacheable, Error};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use support::{suite, Backend};

suite!(
    a_hundred_sync_callers_of_a_failing_source_make_one_call,
    a_hundred_async_callers_of_a_failing_source_make_one_call,
    a_panic_is_shared_as_a_failure,
    try_run_still_runs_the_waiters_side_by_side,
    a_stale_value_answers_the_waiters,
    a_hard_timeout_gives_up_and_releases_the_waiters,
);

support::suite_tests! {
    memory = memory(Without),
    redis = redis(Both),
}

/// The callers' error type: it converts from the crate's, so failures can be shared.
#[derive(Debug)]
enum SourceError {
    Down,
    Cache(Error),
}

impl From<Error> for SourceError {
    fn from(e: Error) -> Self {
        SourceError::Cache(e)
    }
}

const CALLERS: usize = 100;
const FAILS_AFTER: Duration = Duration::from_millis(200);

/// Runs `CALLERS` threads at once, each calling `call`; their answers and the time the
/// slowest took.
fn at_once<R: Send>(call: impl Fn() -> R + Sync) -> (Vec<R>, Duration) {
    let barrier = Barrier::new(CALLERS);
    let started = Instant::now();
    let answers = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    call()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (answers, started.elapsed())
}

fn a_hundred_sync_callers_of_a_failing_source_make_one_call(b: &Backend) {
    let cache = b.cache("shared-sync");
    let calls = AtomicU32::new(0);
    let (answers, took) = at_once(|| {
        Cacheable::new("quote:<<id>>").on(&cache).try_run_shared(
            ctx! { id = 1 },
            || -> Result<u32, SourceError> {
                calls.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(FAILS_AFTER);
                Err(SourceError::Down)
            },
        )
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{}", b.name);
    let own = answers
        .iter()
        .filter(|a| matches!(a, Err(SourceError::Down)))
        .count();
    let shared = answers
        .iter()
        .filter(|a| matches!(a, Err(SourceError::Cache(e)) if e.is_shared_failure()))
        .count();
    assert_eq!((own, shared), (1, CALLERS - 1), "{}: {answers:?}", b.name);
    assert!(took < Duration::from_secs(5), "{}: {took:?}", b.name);
    assert_eq!(
        cache.stats().shared_failures,
        (CALLERS - 1) as u64,
        "{}",
        b.name
    );
}

fn a_hundred_async_callers_of_a_failing_source_make_one_call(b: &Backend) {
    let cache = b.cache("shared-async");
    let rt = support::runtime(2);
    let calls = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            rt.spawn(async move {
                Cacheable::new("quote:<<id>>")
                    .on(&cache)
                    .try_run_shared_async(ctx! { id = 1 }, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(FAILS_AFTER).await;
                        Err::<u32, _>(SourceError::Down)
                    })
                    .await
            })
        })
        .collect();
    let answers: Vec<_> = tasks.into_iter().map(|t| rt.block_on(t).unwrap()).collect();
    assert!(started.elapsed() < Duration::from_secs(5), "{}", b.name);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{}", b.name);
    let shared = answers
        .iter()
        .filter(|a| matches!(a, Err(SourceError::Cache(e)) if e.is_shared_failure()))
        .count();
    assert_eq!(shared, CALLERS - 1, "{}: {answers:?}", b.name);
}

/// The leader's computation panics: its caller panics, the others answer with the failure.
fn a_panic_is_shared_as_a_failure(b: &Backend) {
    let cache = b.cache("shared-panic");
    let calls = AtomicU32::new(0);
    let (answers, _) = at_once(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Cacheable::new("quote:<<id>>").on(&cache).try_run_shared(
                ctx! { id = 2 },
                || -> Result<u32, SourceError> {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(FAILS_AFTER);
                    panic!("the driver panicked")
                },
            )
        }))
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{}", b.name);
    let panicked = answers.iter().filter(|a| a.is_err()).count();
    let shared = answers
        .iter()
        .filter(|a| matches!(a, Ok(Err(SourceError::Cache(e))) if e.is_shared_failure()))
        .count();
    assert_eq!((panicked, shared), (1, CALLERS - 1), "{}", b.name);
}

/// The control: `try_run` cannot make an error of the shared failure, and its waiters run
/// their own computations.
fn try_run_still_runs_the_waiters_side_by_side(b: &Backend) {
    let cache = b.cache("shared-not");
    let calls = AtomicU32::new(0);
    let (answers, _) = at_once(|| {
        Cacheable::new("quote:<<id>>").on(&cache).try_run(
            ctx! { id = 3 },
            || -> Result<u32, SourceError> {
                calls.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(FAILS_AFTER);
                Err(SourceError::Down)
            },
        )
    });
    assert!(answers.iter().all(|a| matches!(a, Err(SourceError::Down))));
    assert!(calls.load(Ordering::SeqCst) > 1, "{}", b.name);
}

/// With a value past its TTL within a stale-if-error window, the waiters get that value.
fn a_stale_value_answers_the_waiters(b: &Backend) {
    let cache = b.cache("shared-stale");
    let calls = AtomicU32::new(0);
    let call = |fail: bool| {
        Cacheable::new("quote:<<id>>")
            .ttl(Duration::from_millis(300))
            .stale_if_error(60)
            .on(&cache)
            .try_run_shared(ctx! { id = 4 }, || -> Result<u32, SourceError> {
                calls.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(FAILS_AFTER);
                if fail {
                    Err(SourceError::Down)
                } else {
                    Ok(7)
                }
            })
    };
    assert_eq!(call(false).unwrap(), 7);
    std::thread::sleep(Duration::from_millis(500));
    calls.store(0, Ordering::SeqCst);
    let (answers, _) = at_once(|| call(true));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{}", b.name);
    assert!(
        answers.iter().all(|a| matches!(a, Ok(7))),
        "{}: {answers:?}",
        b.name
    );
}

/// An async computation past its hard timeout is given up: its caller gets a timeout error
/// in about the limit, a waiter (here, and in another cache on a shared store) the failure
/// at the same moment; `try_run_async`, which has no error to answer with, ignores it.
fn a_hard_timeout_gives_up_and_releases_the_waiters(b: &Backend) {
    let cache = b.cache("hard");
    let other = b.peer(&cache);
    let rt = support::runtime(2);
    let calls = Arc::new(AtomicU32::new(0));
    let call = |cache: &Cache| {
        let (cache, calls) = (cache.clone(), calls.clone());
        async move {
            Cacheable::new("report:<<id>>")
                .hard_timeout(Duration::from_millis(200))
                .on(&cache)
                .try_run_shared_async(ctx! { id = 1 }, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok::<u32, SourceError>(1)
                })
                .await
        }
    };
    let started = Instant::now();
    let leader = rt.spawn(call(&cache));
    std::thread::sleep(Duration::from_millis(50));
    let here = rt.spawn(call(&cache));
    let there = rt.spawn(call(&other));
    let leader = rt.block_on(leader).unwrap();
    assert!(
        matches!(&leader, Err(SourceError::Cache(e)) if e.is_timeout()),
        "{}: {leader:?}",
        b.name
    );
    for waiter in [rt.block_on(here).unwrap(), rt.block_on(there).unwrap()] {
        assert!(
            matches!(&waiter, Err(SourceError::Cache(e)) if e.is_shared_failure()),
            "{}: {waiter:?}",
            b.name
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{}", b.name);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{}", b.name);
    assert_eq!(cache.stats().hard_timeouts, 1, "{}", b.name);
    // The control: try_run_async runs its computation to the end.
    let slow = rt.block_on(
        Cacheable::new("report:<<id>>")
            .hard_timeout(Duration::from_millis(50))
            .on(&cache)
            .try_run_async(ctx! { id = 2 }, || async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<u32, SourceError>(2)
            }),
    );
    assert!(matches!(slow, Ok(2)), "{}", b.name);
}

/// Another process (a second `Cache` on the same server) waiting on the lease of a
/// computation that fails answers with the failure once it ends, without calling the
/// source.
#[cfg(feature = "redis")]
#[test]
fn a_waiter_in_another_process_shares_the_failure() {
    let server = support::RedisServer::start();
    let config = cacheable::Config::from_url(&server.url())
        .unwrap()
        .prefix("shared-remote");
    let (here, there) = (
        Cache::new(config.clone()).unwrap(),
        Cache::new(config).unwrap(),
    );
    let calls = AtomicU32::new(0);
    let started = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let leader = s.spawn(|| {
            Cacheable::new("quote:<<id>>").on(&here).try_run_shared(
                ctx! { id = 5 },
                || -> Result<u32, SourceError> {
                    calls.fetch_add(1, Ordering::SeqCst);
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(500));
                    Err(SourceError::Down)
                },
            )
        });
        support::wait_started(&started);
        let waited = Instant::now();
        let answer = Cacheable::new("quote:<<id>>").on(&there).try_run_shared(
            ctx! { id = 5 },
            || -> Result<u32, SourceError> {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(1)
            },
        );
        assert!(
            matches!(&answer, Err(SourceError::Cache(e)) if e.is_shared_failure()),
            "{answer:?}"
        );
        assert!(waited.elapsed() < Duration::from_secs(5));
        assert!(matches!(leader.join().unwrap(), Err(SourceError::Down)));
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

cache_fn! {
    #[cache(key = "slow:<<id>>", ttl = 60, hard_timeout = Duration::from_millis(100), cache = cache)]
    async fn slow(cache: &Cache, id: u32) -> Result<u32, SourceError> {
        let _ = (cache, id);
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(1)
    }

    #[cache(key = "price:<<id>>", ttl = 60, cache = cache)]
    fn price(cache: &Cache, calls: &AtomicU32, id: u32) -> Result<u32, SourceError> {
        let _ = (cache, id);
        calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(FAILS_AFTER);
        Err(SourceError::Down)
    }
}

/// `cache_fn!`'s `hard_timeout`, on an async function whose error converts.
#[test]
fn cache_fn_takes_a_hard_timeout() {
    let cache = Cache::new(cacheable::Config::memory()).unwrap();
    let started = Instant::now();
    let out = support::current_thread().block_on(slow(&cache, 1));
    assert!(
        matches!(&out, Err(SourceError::Cache(e)) if e.is_timeout()),
        "{out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// `Config::hard_timeout`: the default of every builder that sets none, and of `cache_fn!`
/// functions; a builder's own setting wins.
#[test]
fn the_config_gives_a_default_hard_timeout() {
    let cache =
        Cache::new(cacheable::Config::memory().hard_timeout(Duration::from_millis(100))).unwrap();
    let rt = support::current_thread();
    let slow = |id: u32, own: Option<Duration>, took: Duration| {
        let mut builder = Cacheable::new("report:<<id>>");
        if let Some(own) = own {
            builder = builder.hard_timeout(own);
        }
        let cache = &cache;
        async move {
            builder
                .on(cache)
                .try_run_shared_async(ctx! { id }, || async {
                    tokio::time::sleep(took).await;
                    Ok::<u32, SourceError>(1)
                })
                .await
        }
    };
    let started = Instant::now();
    let out = rt.block_on(slow(1, None, Duration::from_secs(30)));
    assert!(
        matches!(&out, Err(SourceError::Cache(e)) if e.is_timeout()),
        "{out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "given up at the default"
    );
    // A builder's own limit, longer than the computation: it ends.
    let own = Some(Duration::from_secs(30));
    assert_eq!(
        rt.block_on(slow(2, own, Duration::from_millis(300)))
            .unwrap(),
        1
    );
    assert_eq!(cache.stats().hard_timeouts, 1);
}

/// A `cache_fn!` function whose error converts from `cacheable::Error` shares failures by
/// itself.
#[test]
fn cache_fn_shares_failures_when_its_error_converts() {
    let cache = Cache::new(cacheable::Config::memory()).unwrap();
    let calls = AtomicU32::new(0);
    let (answers, _) = at_once(|| price(&cache, &calls, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        answers
            .iter()
            .filter(|a| matches!(a, Err(SourceError::Cache(e)) if e.is_shared_failure()))
            .count(),
        CALLERS - 1
    );
}
