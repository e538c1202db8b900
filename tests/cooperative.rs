//! An async call that is ready at once (a near hit, the embedded store, a call that fails
//! fast while Redis is down) takes a unit of the tokio task's budget, as a channel receive
//! does: a loop of such calls hands its worker back now and then, and the tasks queued
//! behind it run. Without that, a task woken onto a worker whose running task loops over
//! ready calls waits until the loop ends: the last test here reproduces that shape, in
//! which an async call beside a loop of calls failing fast could wait out a whole failover.

mod support;

use cacheable::{ctx, Cache, Cacheable, Config};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const CALLS: usize = 10_000;

/// Awaits `call` up to [`CALLS`] times in a current-thread runtime's main future, with a
/// task spawned beside it on the same thread; returns how many calls had been made when the
/// task had run, or `None` if it never ran during the loop.
fn calls_before_a_queued_task_runs<F, Fut>(call: F) -> Option<usize>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = support::bare_current_thread();
    rt.block_on(async {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
        for i in 0..CALLS {
            call(i).await;
            if ran.load(Ordering::SeqCst) {
                return Some(i + 1);
            }
        }
        None
    })
}

#[test]
fn a_loop_of_near_hits_lets_the_other_tasks_run() {
    let cache = Cache::new(Config::memory().prefix("coop")).unwrap();
    cache.set("warm", &7u32, 60).unwrap();
    let builder = calls_before_a_queued_task_runs(|_| {
        let cache = &cache;
        async move {
            let v: u32 = Cacheable::new("item:<<id>>")
                .on(cache)
                .run_async(ctx! { id = 1 }, || async { 7 })
                .await;
            assert_eq!(v, 7);
        }
    });
    println!("run_async: the queued task ran after {builder:?} of {CALLS} calls");
    assert!(
        builder.is_some(),
        "the queued task never ran during {CALLS} near hits"
    );
    assert!(cache.stats().near_hits > 0, "{:?}", cache.stats());

    let get_or_set = calls_before_a_queued_task_runs(|_| {
        let cache = &cache;
        async move {
            let v: u32 = cache
                .get_or_set_async("warm", || async { 0 }, 60)
                .await
                .unwrap();
            assert_eq!(v, 7);
        }
    });
    println!("get_or_set_async: the queued task ran after {get_or_set:?} of {CALLS} calls");
    assert!(get_or_set.is_some(), "the queued task never ran");

    let store = calls_before_a_queued_task_runs(|i| {
        let cache = &cache;
        async move {
            cache
                .set_async(&format!("k{}", i % 10), &i, 60)
                .await
                .unwrap();
        }
    });
    println!("set_async: the queued task ran after {store:?} of {CALLS} calls");
    assert!(store.is_some(), "the queued task never ran");
}

/// Redis is down and the breaker open: every call fails fast, computes, and answers
/// without ever pending.
#[cfg(feature = "redis")]
#[test]
fn a_loop_of_calls_failing_fast_lets_the_other_tasks_run() {
    use std::time::Duration;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cache = Cache::new(
        Config::from_url(&format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .prefix("coop")
            .op_timeout(Duration::from_millis(100))
            .connect_timeout(Duration::from_millis(100))
            // Open for the whole test: no probe (which would pend) during the loop.
            .breaker(2, Duration::from_secs(600)),
    )
    .unwrap();
    let read = |id: u32| {
        Cacheable::new("item:<<id>>")
            .on(&cache)
            .run_async(ctx! { id }, move || async move { id * 2 })
    };
    let rt = support::bare_current_thread();
    // The first calls wait on the refused connection; then the breaker opens.
    rt.block_on(async {
        for id in 0..5 {
            assert_eq!(read(id).await, id * 2);
        }
    });
    let errors = cache.stats().errors;
    assert!(errors > 0, "{:?}", cache.stats());
    let ran = calls_before_a_queued_task_runs(|i| {
        let id = i as u32;
        let read = &read;
        async move { assert_eq!(read(id).await, id * 2) }
    });
    println!("Redis down: the queued task ran after {ran:?} of {CALLS} calls");
    assert!(
        ran.is_some(),
        "the queued task never ran during {CALLS} calls that failed fast"
    );
}

/// The shape of that wait, on two workers: task B leads a flight that task A (on the other
/// worker) follows; B's flight ends on B's worker, which puts A in that worker's LIFO slot
/// (no other worker steals from it); then B loops over near hits for a second. A must not
/// wait for B's loop to end.
#[test]
fn a_follower_woken_onto_a_looping_worker_runs_before_the_loop_ends() {
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};
    const LOOP: Duration = Duration::from_secs(1);
    let cache = Arc::new(Cache::new(Config::memory().prefix("coop-lifo")).unwrap());
    cache.set("warm", &7u32, 60).unwrap();
    let rt = support::bare_runtime(2);
    let b_computing = Arc::new(AtomicBool::new(false));
    let a_waiting = Arc::new(AtomicBool::new(false));
    // When A got its value, in µs after B's flight ended (u64::MAX: not yet).
    let a_done_after = Arc::new(AtomicU64::new(u64::MAX));
    let b_ended = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let b = {
        let (cache, b_computing, a_waiting, b_ended) = (
            cache.clone(),
            b_computing.clone(),
            a_waiting.clone(),
            b_ended.clone(),
        );
        rt.spawn(async move {
            let v: u32 = Cacheable::new("lifo:<<id>>")
                .on(&cache)
                .run_async(ctx! { id = 1 }, || async {
                    b_computing.store(true, Ordering::SeqCst);
                    while !a_waiting.load(Ordering::SeqCst) {
                        tokio::task::yield_now().await;
                    }
                    // A joins the flight meanwhile, on the other worker.
                    std::thread::sleep(Duration::from_millis(50));
                    11
                })
                .await;
            assert_eq!(v, 11);
            *b_ended.lock().unwrap() = Some(Instant::now());
            let started = Instant::now();
            let mut hits = 0u64;
            while started.elapsed() < LOOP {
                let v: u32 = cache
                    .get_or_set_async("warm", || async { 0 }, 60)
                    .await
                    .unwrap();
                assert_eq!(v, 7);
                hits += 1;
            }
            hits
        })
    };
    let a = {
        let (cache, b_computing, a_waiting, a_done_after, b_ended) = (
            cache.clone(),
            b_computing.clone(),
            a_waiting.clone(),
            a_done_after.clone(),
            b_ended.clone(),
        );
        rt.spawn(async move {
            while !b_computing.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
            a_waiting.store(true, Ordering::SeqCst);
            let v: u32 = Cacheable::new("lifo:<<id>>")
                .on(&cache)
                .run_async(ctx! { id = 1 }, || async { 12 })
                .await;
            let ended = b_ended.lock().unwrap().expect("B's flight ended first");
            a_done_after.store(ended.elapsed().as_micros() as u64, Ordering::SeqCst);
            v
        })
    };
    let (hits, v) = rt.block_on(async { (b.await.unwrap(), a.await.unwrap()) });
    let waited = Duration::from_micros(a_done_after.load(Ordering::SeqCst));
    println!("A got {v} {waited:?} after B's flight ended; B made {hits} hits in {LOOP:?}");
    assert_eq!(v, 11, "A followed B's flight");
    assert!(
        waited < LOOP / 2,
        "A waited {waited:?} for B's loop of {LOOP:?} to end"
    );
}
