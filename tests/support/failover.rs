//! What the outage and failover tests run while a server dies: a writer/reader race that
//! checks every round for a stale value, and readers that keep calling and record the
//! slowest call.

use super::Rng;
use cacheable::{ctx, Cache, Cacheable, Invalidate};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

/// A writer/reader race on `balance:42`: in each round three readers read through while
/// the writer bumps the source and invalidates; then a read must return the current source.
pub struct Race {
    cache: Arc<Cache>,
    source: Arc<AtomicU64>,
    rng: Rng,
    rt: tokio::runtime::Runtime,
}

impl Race {
    pub fn new(cache: &Arc<Cache>, seed: u64) -> Race {
        Race {
            cache: cache.clone(),
            source: Arc::new(AtomicU64::new(0)),
            rng: Rng::new(seed),
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap(),
        }
    }

    async fn read(cache: Arc<Cache>, source: Arc<AtomicU64>, jitter_us: u64) -> u64 {
        Cacheable::new("balance:<<user_id>>")
            .on(&cache)
            .run_async(ctx! { user_id = 42 }, || async move {
                let seen = source.load(Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(jitter_us));
                seen
            })
            .await
    }

    /// One round: `Some(stale)`, or `None` when a deletion failed (the key's server is
    /// down), so the round proves nothing.
    pub fn round(&mut self) -> Option<bool> {
        let (cache, source) = (&self.cache, &self.source);
        cache.delete("balance:42").ok()?;
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let jitter = self.rng.below(400) as u64;
                self.rt
                    .spawn(Self::read(cache.clone(), source.clone(), jitter))
            })
            .collect();
        let writer = {
            let (cache, source) = (cache.clone(), source.clone());
            let delay = self.rng.below(300) as u64;
            self.rt.spawn(async move {
                std::thread::sleep(Duration::from_micros(delay));
                source.fetch_add(1, Ordering::SeqCst);
                Invalidate::new(["balance:<<user_id>>"])
                    .on(&cache)
                    .now_async(ctx! { user_id = 42 })
                    .await
                    .is_ok()
            })
        };
        let invalidated = self.rt.block_on(async {
            for r in readers {
                r.await.unwrap();
            }
            writer.await.unwrap()
        });
        let current = source.load(Ordering::SeqCst);
        let seen = self
            .rt
            .block_on(Self::read(cache.clone(), source.clone(), 0));
        invalidated.then_some(seen != current)
    }
}

impl Drop for Race {
    fn drop(&mut self) {
        // A reader still waiting on a dead server must not hold the test up.
        let rt = std::mem::replace(
            &mut self.rt,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        rt.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Race rounds until `stop`. Returns (rounds counted, stale values among them, rounds
/// skipped because a deletion or the invalidation failed).
pub fn race_until(cache: &Arc<Cache>, stop: &AtomicBool, seed: u64) -> (u64, u64, u64) {
    let mut race = Race::new(cache, seed);
    let (mut rounds, mut stale, mut skipped) = (0, 0, 0);
    while !stop.load(Ordering::SeqCst) {
        match race.round() {
            Some(was_stale) => {
                rounds += 1;
                stale += u64::from(was_stale);
            }
            None => {
                skipped += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    (rounds, stale, skipped)
}

/// Readers of `item:<<id>>` (whose value is `id * 10`) over the first `keys` ids, that
/// call until stopped and keep the slowest sync and the slowest async call.
pub struct Readers {
    pub keys: u32,
    pub pause: Duration,
    stop: AtomicBool,
    calls: AtomicU64,
    slowest: Mutex<(Duration, Duration)>,
}

impl Readers {
    pub fn new(keys: u32, pause: Duration) -> Arc<Readers> {
        Arc::new(Readers {
            keys,
            pause,
            stop: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            slowest: Mutex::new((Duration::ZERO, Duration::ZERO)),
        })
    }

    /// One sync read, counting a computation in `computed`.
    pub fn read(cache: &Cache, id: u32, computed: &AtomicUsize) -> u32 {
        Cacheable::new("item:<<id>>")
            .on(cache)
            .run(ctx! { id }, || {
                computed.fetch_add(1, Ordering::SeqCst);
                id * 10
            })
    }

    /// Reads every key once; returns how many were computed.
    pub fn warm(&self, cache: &Cache) -> usize {
        let computed = AtomicUsize::new(0);
        for id in 0..self.keys {
            assert_eq!(Self::read(cache, id, &computed), id * 10);
        }
        computed.load(Ordering::SeqCst)
    }

    /// A sync reader from key `start` in steps of 7; `seen(id, computed)` after each call.
    pub fn sync_loop(&self, cache: &Cache, start: u32, mut seen: impl FnMut(u32, bool)) {
        let computed = AtomicUsize::new(0);
        let mut i = start;
        while !self.stopped() {
            let id = i % self.keys;
            i = i.wrapping_add(7);
            let before = computed.load(Ordering::SeqCst);
            let started = Instant::now();
            assert_eq!(
                Self::read(cache, id, &computed),
                id * 10,
                "every call answers"
            );
            self.record(started.elapsed(), |s| &mut s.0);
            seen(id, computed.load(Ordering::SeqCst) != before);
            std::thread::sleep(self.pause);
        }
    }

    /// An async reader from key `start` in steps of 11. Its pause blocks the worker, as
    /// careless callers do: while calls fail fast, only the calls' own yields
    /// (tests/cooperative.rs) let another task, woken onto this worker by this one's
    /// flight, run.
    pub async fn async_loop(self: Arc<Self>, cache: Cache, start: u32) {
        let mut i = start;
        while !self.stopped() {
            let id = i % self.keys;
            i = i.wrapping_add(11);
            let started = Instant::now();
            let v = Cacheable::new("item:<<id>>")
                .on(&cache)
                .run_async(ctx! { id }, || async move { id * 10 })
                .await;
            assert_eq!(v, id * 10, "every call answers");
            self.record(started.elapsed(), |s| &mut s.1);
            std::thread::sleep(self.pause);
        }
    }

    fn record(&self, took: Duration, which: impl Fn(&mut (Duration, Duration)) -> &mut Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut slowest = self.slowest.lock().unwrap();
        let slot = which(&mut slowest);
        *slot = (*slot).max(took);
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The flag the readers stop on, for a race that runs beside them.
    pub fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// (slowest sync call, slowest async call).
    pub fn slowest(&self) -> (Duration, Duration) {
        *self.slowest.lock().unwrap()
    }
}
