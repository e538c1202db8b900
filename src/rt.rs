//! The crate's own IO runtime: one thread running a current-thread tokio runtime, on which
//! every async Redis connection's driver lives and every async timer fires.
//!
//! Callers only ever await channel replies, `Notify`s and [`Deadline`]s, which any
//! executor can poll: so `run_async` works under any tokio runtime flavour (with or
//! without its IO and time drivers), under another executor, and never depends on which
//! runtime made the first call or whether that runtime is still alive. A request costs no
//! task of its own: the caller hands it to the connection's driver and waits for the reply
//! on a timer it registered here.

use once_cell::sync::Lazy;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::Notify;

struct Runtime {
    handle: Handle,
    timers: Timers,
}

static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("cacheable-io")
        .build()
        .expect("build the cacheable IO runtime");
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("cacheable-io".into())
        .spawn(move || runtime.block_on(fire_timers()))
        .expect("spawn the cacheable IO thread");
    Runtime {
        handle,
        timers: Timers::default(),
    }
});

/// The runtime's handle: enter it, or spawn on it, to build connections that live on it.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn handle() -> &'static Handle {
    &RUNTIME.handle
}

/// Sleeps for `d` without needing a timer in the caller's runtime.
pub(crate) fn sleep(d: Duration) -> Deadline {
    Deadline::after(d)
}

/// One unit of the calling tokio task's budget (tokio's cooperative scheduling), as a
/// channel receive or a socket read takes. An async call that is ready at once (a near hit,
/// the embedded store, a call failing fast while Redis is down) would otherwise never hand
/// its worker back, and a task woken from that worker waits in its LIFO slot, which no
/// other worker steals, until the loop ends (`tests/cooperative.rs` reproduces it; beside
/// a loop of calls failing fast, a follower could wait out a whole failover). Once the
/// budget is spent, the call yields once first. Ready at once outside a tokio runtime;
/// callers use it in async mode only, since a blocking step must never pend.
#[inline]
pub(crate) async fn cooperate() {
    tokio::task::coop::consume_budget().await
}

/// `fut`, or `None` once `d` has passed, without needing a timer in the caller's runtime.
///
/// `fut` comes pinned by the caller (`std::pin::pin!`), so that the caller's future holds
/// it once: taken by value, it would be held twice (as this future's argument and as the
/// pinned local), which doubled the size of every request's future.
pub(crate) async fn timeout<F: Future>(d: Duration, mut fut: Pin<&mut F>) -> Option<F::Output> {
    let mut deadline = Deadline::after(d);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        match Pin::new(&mut deadline).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Every pending deadline, in a slab: registering and dropping one is a short lock, and the
/// timer task on the IO thread sleeps until the earliest of them.
#[derive(Default)]
struct Timers {
    slab: Mutex<Slab>,
    /// The instant the timer task sleeps until, in nanoseconds since `epoch`; `u64::MAX`
    /// when it waits for a first deadline.
    target: AtomicU64,
    wake: Notify,
}

#[derive(Default)]
struct Slab {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
}

struct Entry {
    at: Instant,
    waker: Option<Waker>,
    fired: bool,
}

static EPOCH: Lazy<Instant> = Lazy::new(Instant::now);

fn nanos(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(*EPOCH).as_nanos()).unwrap_or(u64::MAX - 1)
}

/// A point in time to wait for; registered with the IO thread's timer task on its first
/// pending poll, and withdrawn when dropped.
pub(crate) struct Deadline {
    at: Instant,
    slot: Option<usize>,
}

impl Deadline {
    pub(crate) fn after(d: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + d,
            slot: None,
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.at {
            return Poll::Ready(());
        }
        let timers = &RUNTIME.timers;
        let mut slab = timers.slab.lock().unwrap_or_else(|e| e.into_inner());
        match this.slot {
            Some(i) => {
                let entry = slab.entries[i].as_mut().expect("a registered deadline");
                if entry.fired {
                    return Poll::Ready(());
                }
                if !entry
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    entry.waker = Some(cx.waker().clone());
                }
            }
            None => {
                let entry = Entry {
                    at: this.at,
                    waker: Some(cx.waker().clone()),
                    fired: false,
                };
                let i = match slab.free.pop() {
                    Some(i) => {
                        slab.entries[i] = Some(entry);
                        i
                    }
                    None => {
                        slab.entries.push(Some(entry));
                        slab.entries.len() - 1
                    }
                };
                this.slot = Some(i);
                drop(slab);
                // Wake the timer task only when this deadline comes before the one it
                // sleeps until: most deadlines (operation timeouts) come after.
                if nanos(this.at) < timers.target.load(Ordering::Acquire) {
                    timers.wake.notify_one();
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut slab = RUNTIME
                .timers
                .slab
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            slab.entries[i] = None;
            slab.free.push(i);
        }
    }
}

/// The timer task: fires due deadlines, then sleeps until the next one or a new earlier one.
async fn fire_timers() {
    // The first call blocks until `RUNTIME` (whose initializer spawned this thread) is set.
    let timers = &RUNTIME.timers;
    loop {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        {
            let mut slab = timers.slab.lock().unwrap_or_else(|e| e.into_inner());
            for entry in slab.entries.iter_mut().flatten() {
                if entry.fired {
                    continue;
                }
                if entry.at <= now {
                    entry.fired = true;
                    if let Some(w) = entry.waker.take() {
                        w.wake();
                    }
                } else if next.is_none_or(|n| entry.at < n) {
                    next = Some(entry.at);
                }
            }
            timers
                .target
                .store(next.map_or(u64::MAX, nanos), Ordering::Release);
        }
        let mut woken = std::pin::pin!(timers.wake.notified());
        match next {
            Some(at) => {
                let mut sleep = std::pin::pin!(tokio::time::sleep_until(at.into()));
                std::future::poll_fn(|cx| {
                    if sleep.as_mut().poll(cx).is_ready() || woken.as_mut().poll(cx).is_ready() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            }
            None => woken.await,
        }
    }
}

/// Whether store calls block the thread or are awaited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Blocking,
    Async,
}

impl Mode {
    /// Pauses the caller: the thread in blocking mode, the task in async mode (on the
    /// crate's own timer, so any executor can await it).
    pub(crate) async fn sleep(self, d: Duration) {
        match self {
            Mode::Blocking => std::thread::sleep(d),
            Mode::Async => crate::rt::sleep(d).await,
        }
    }
}

/// Drives a [`Mode::Blocking`] future, which is ready when first polled.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        // Not reached: blocking-mode steps never pend. Yield rather than spin hot if one did.
        std::thread::yield_now();
    }
}

/// Polls every future at once; their outputs in order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future is done"))
        .collect()
}

/// Drives a future on this thread, parking it until woken: for a sync caller of the async
/// engine (a batch's items run side by side), whose store calls and timers run on the IO
/// thread and wake it.
pub(crate) fn park_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

thread_local! {
    /// The batch pass this thread is polling, if any: the batch's mode and a number no
    /// other pass has.
    static PASS: std::cell::Cell<Option<(Mode, u64)>> = const { std::cell::Cell::new(None) };
}

static PASSES: AtomicU64 = AtomicU64::new(1);

/// Polls `fut` (a batch's items, side by side) with each poll marked as one pass of the
/// batch, made in `mode`: the store requests the items make in one pass can then go to the
/// server together ([`pass`]), as one pipeline rather than one round trip each.
pub(crate) async fn in_passes<F: Future>(mode: Mode, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    /// Puts back the thread's outer pass when the poll ends, by return or by panic.
    struct Restore(Option<(Mode, u64)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            PASS.with(|p| p.set(self.0));
        }
    }
    std::future::poll_fn(|cx| {
        let pass = PASSES.fetch_add(1, Ordering::Relaxed);
        let _restore = Restore(PASS.with(|p| p.replace(Some((mode, pass)))));
        fut.as_mut().poll(cx)
    })
    .await
}

/// The batch pass being polled on this thread ([`in_passes`]): its mode and number.
#[cfg(feature = "redis")]
pub(crate) fn pass() -> Option<(Mode, u64)> {
    PASS.with(|p| p.get())
}

/// Pending once, having asked to be polled again: what is polled after it in the same
/// pass runs first.
#[cfg(feature = "redis")]
pub(crate) async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
