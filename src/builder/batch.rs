//! The batch form of [`Cacheable`]: one key template, many contexts, the misses computed
//! together by one call of the computation (the N+1 problem: one `WHERE id = ANY($1)`
//! instead of one query per item).
//!
//! The near cache answers first; the other items' first reads go together, one round trip
//! per server (`MGET` on one server or Sentinel's primary; on the cluster one pipeline to
//! each primary that owns some of the keys, one `MGET` per slot; one pass on the embedded
//! store). A sliding item reads on its own, as its read pushes the expiry.
//!
//! Then each item goes through the single-call path, all of them at once: its lease
//! (joined when this process computes the key already, waited for when another process
//! holds it), its write with the lease compare-and-set, its tags and TTL. What the items share is the computation: an item that must compute registers
//! its index and waits; once every item has been answered, registered, or is waiting on
//! another caller's computation, the computation runs once for the registered items and
//! each gets its value. An item whose wait ends without a value (the other caller failed,
//! or `lease_wait` passed) registers then, and a further round computes it.

use super::cacheable::{served, Cacheable};
use super::CallLog;
use crate::codec::CacheValue;
use crate::key::Context;
use crate::outcome::Outcome;
use crate::rt::{in_passes, join_all, park_on, Mode};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// How often the coordinator looks again at items that wait on another caller: their
/// waits end without a wake-up it could hear.
const SETTLE_TICK: Duration = Duration::from_millis(2);

const RUNNING: u8 = 0;
const REQUESTED: u8 = 1;
const DONE: u8 = 2;

/// What the items and the coordinator share.
struct Board<T> {
    states: Vec<AtomicU8>,
    /// Where each registered item waits for its value.
    senders: Mutex<Vec<Option<oneshot::Sender<T>>>>,
    /// Rung on every change of an item's state.
    changed: Notify,
}

impl<T> Board<T> {
    fn set(&self, i: usize, state: u8) {
        self.states[i].store(state, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// Registers item `i` for the next round of the computation; resolves to its value.
    fn request(&self, i: usize) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        self.senders.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(tx);
        self.set(i, REQUESTED);
        rx
    }
}

impl<'a> Cacheable<'a> {
    /// The batch form of [`run`](Self::run): one value per context, in the contexts' order.
    /// `compute` is called once with the indexes (into `items`) of every item that missed,
    /// and returns their values in that order; it is not called when every item hits, and
    /// called again only for items whose wait on another caller's computation ended
    /// without a value (each index in one call).
    ///
    /// Near-cache hits answer first; the other items are read together, in one round trip
    /// per server (a sliding item reads on its own). Every item keeps the guarantees of a
    /// single call: a key this process computes
    /// already is joined, a lease another process holds is waited for (within
    /// `lease_wait`, while the other items are computed at once), writes go with the lease
    /// compare-and-set (an invalidation during the batch keeps every affected value out),
    /// and the builder's TTL, tags, stale windows and controls apply to each key. An item
    /// whose wait on another caller ends without a value is computed in a further call of
    /// `compute`. With the store down, `compute` is called once for every item.
    ///
    /// # Panics
    /// When `compute` returns another number of values than it was given indexes.
    ///
    /// ```
    /// use cacheable::{Cache, Cacheable, Config, Context};
    ///
    /// let cache = Cache::new(Config::memory())?;
    /// let ids = [3u64, 5, 8];
    /// let users = |ids: &[u64]| {
    ///     let contexts = ids.iter().map(|id| Context::new().with("id", id)).collect();
    ///     Cacheable::new("user:<<id>>").on(&cache).run_many(contexts, |missing| {
    ///         // One query for every id that missed: WHERE id = ANY($1).
    ///         missing.iter().map(|&i| format!("user {}", ids[i])).collect()
    ///     })
    /// };
    /// assert_eq!(users(&ids[..2]), ["user 3", "user 5"]);
    /// assert_eq!(users(&ids), ["user 3", "user 5", "user 8"]); // only 8 computed
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    pub fn run_many<T, F>(self, items: Vec<Context>, mut compute: F) -> Vec<T>
    where
        T: CacheValue,
        F: FnMut(&[usize]) -> Vec<T>,
    {
        park_on(self.many(Mode::Blocking, items, |missing: Vec<usize>| {
            std::future::ready(compute(&missing))
        }))
    }

    /// Async twin of [`run_many`](Self::run_many).
    pub async fn run_many_async<T, F, Fut>(self, items: Vec<Context>, compute: F) -> Vec<T>
    where
        T: CacheValue,
        F: FnMut(Vec<usize>) -> Fut,
        Fut: Future<Output = Vec<T>>,
    {
        self.many(Mode::Async, items, compute).await
    }

    /// `mode`: how the items' first reads are made, together; a sync caller's thread may
    /// block on that one round trip (no hop through the IO thread), while the items' own
    /// store calls, side by side, go async.
    async fn many<T, F, Fut>(mut self, mode: Mode, items: Vec<Context>, mut compute: F) -> Vec<T>
    where
        T: CacheValue,
        F: FnMut(Vec<usize>) -> Fut,
        Fut: Future<Output = Vec<T>>,
    {
        let n = items.len();
        let outcomes_slot = self.take_outcomes();
        let board: Board<T> = Board {
            states: (0..n).map(|_| AtomicU8::new(RUNNING)).collect(),
            senders: Mutex::new((0..n).map(|_| None).collect()),
            changed: Notify::new(),
        };
        let plans: Vec<_> = items.iter().map(|ctx| self.plan(ctx)).collect();
        // Answered without a future of their own: the near cache's hits, then the store's,
        // from the other items' first reads, made together (one round trip per server;
        // every item has the builder's one cache).
        let mut answered: Vec<Option<T>> = plans
            .iter()
            .map(|plan| {
                let (cache, call) = plan.as_ref()?;
                let log = CallLog::start();
                let v = cache.near::<T>(call)?;
                log.end(call.template, Some(&call.key), Outcome::NearHit, None);
                Some(v)
            })
            .collect();
        let reading: Vec<usize> = (0..n)
            .filter(|&i| plans[i].is_some() && answered[i].is_none())
            .collect();
        let mut firsts = Vec::new();
        firsts.resize_with(n, || None);
        if let Some((cache, _)) = reading.first().and_then(|&i| plans[i].as_ref()) {
            let calls: Vec<_> = reading
                .iter()
                .filter_map(|&i| plans[i].as_ref().map(|(_, call)| call))
                .collect();
            for (&i, first) in reading.iter().zip(cache.prefetch(mode, &calls).await) {
                firsts[i] = first;
            }
            for &i in &reading {
                let Some((cache, call)) = &plans[i] else {
                    continue;
                };
                let log = CallLog::start();
                answered[i] = cache.first_hit::<T>(call, &mut firsts[i]);
                if answered[i].is_some() {
                    served(cache, call, None, log);
                }
            }
        }
        let open: Vec<usize> = (0..n).filter(|&i| answered[i].is_none()).collect();
        for (i, v) in answered.iter().enumerate() {
            if v.is_some() {
                board.states[i].store(DONE, Ordering::SeqCst);
            }
        }
        let board = &board;
        let plans = &plans;
        // Each other item: the single-call path, its computation a request to the
        // coordinator.
        type Item<'f, T> = Pin<Box<dyn Future<Output = (T, Outcome)> + Send + 'f>>;
        let item_futures: Vec<Item<'_, T>> = open
            .iter()
            .map(|&i| {
                let first = firsts[i].take();
                let item = async move {
                    let log = CallLog::start();
                    let (value, outcome) = match &plans[i] {
                        // No cache or no key: computed with the batch, not stored.
                        None => (board.request(i).await.ok(), Outcome::Unavailable),
                        Some((cache, call)) => {
                            let out = cache
                                .read_async(call, first, None, None, || async move {
                                    board.request(i).await.map_err(|_| ())
                                })
                                .await
                                .expect("fail-open calls report faults rather than return them")
                                .ok();
                            served(cache, call, None, log);
                            (out, call.served.get())
                        }
                    };
                    board.set(i, DONE);
                    let value = value.unwrap_or_else(|| {
                        panic!("cacheable: the batch computation gave item {i} no value")
                    });
                    (value, outcome)
                };
                Box::pin(item) as Item<'_, T>
            })
            .collect();
        let coordinator = async {
            loop {
                // Settled: every item answered, registered, or waiting on another caller.
                let mut requested = Vec::new();
                let mut settled = true;
                let mut all_done = true;
                for (i, state) in board.states.iter().enumerate() {
                    match state.load(Ordering::SeqCst) {
                        DONE => {}
                        REQUESTED => {
                            all_done = false;
                            let has_sender =
                                board.senders.lock().unwrap_or_else(|e| e.into_inner())[i]
                                    .is_some();
                            if has_sender {
                                requested.push(i);
                            }
                        }
                        _ => {
                            all_done = false;
                            let waiting = plans[i]
                                .as_ref()
                                .is_some_and(|(_, c)| c.served.is_waiting());
                            settled &= waiting;
                        }
                    }
                }
                if all_done {
                    return;
                }
                if settled && !requested.is_empty() {
                    let senders: Vec<_> = {
                        let mut all = board.senders.lock().unwrap_or_else(|e| e.into_inner());
                        requested.iter().map(|&i| all[i].take()).collect()
                    };
                    let values = compute(requested.clone()).await;
                    assert_eq!(
                        values.len(),
                        requested.len(),
                        "cacheable: the batch computation returned {} values for {} items",
                        values.len(),
                        requested.len()
                    );
                    for (sender, value) in senders.into_iter().zip(values) {
                        if let Some(sender) = sender {
                            let _ = sender.send(value);
                        }
                    }
                    continue;
                }
                // Woken by a change of state; while items are registered, also after a
                // tick: an item that starts or ends a wait on another caller rings nothing.
                let changed = board.changed.notified();
                if !requested.is_empty() {
                    first_of(changed, crate::rt::sleep(SETTLE_TICK)).await;
                } else {
                    changed.await;
                }
            }
        };
        // The items' store requests of one pass go together (their leases, then their writes).
        let items = in_passes(mode, join_all(item_futures));
        let (computed, ()) = join(items, coordinator).await;
        let mut computed = computed.into_iter();
        let mut outcomes = Vec::with_capacity(n);
        let values = answered
            .into_iter()
            .zip(plans)
            .map(|(answer, plan)| match (answer, plan) {
                (Some(v), Some((_, call))) => {
                    outcomes.push(call.served.get());
                    v
                }
                _ => {
                    let (v, outcome) = computed.next().expect("one result per open item");
                    outcomes.push(outcome);
                    v
                }
            })
            .collect();
        if let Some(slot) = outcomes_slot {
            *slot = outcomes;
        }
        values
    }
}

/// Resolves when either future does.
async fn first_of(a: impl Future<Output = ()>, b: impl Future<Output = ()>) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() || b.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Both futures' outputs, polled side by side.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut out_a, mut out_b) = (None, None);
    std::future::poll_fn(|cx| {
        if out_a.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                out_b = Some(v);
            }
        }
        if out_a.is_some() && out_b.is_some() {
            Poll::Ready((out_a.take().unwrap(), out_b.take().unwrap()))
        } else {
            Poll::Pending
        }
    })
    .await
}
