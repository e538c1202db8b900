//! The crate's own IO runtime: one thread running a current-thread tokio runtime, on which
//! every async Redis connection lives and every async timer runs.
//!
//! Callers only ever await [`JoinHandle`](tokio::task::JoinHandle)s and `Notify`s, which
//! any executor can poll: so `run_async` works under any tokio runtime flavour (with or
//! without its IO and time drivers), under another executor, and never depends on which
//! runtime made the first call or whether that runtime is still alive.

use once_cell::sync::Lazy;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

static RUNTIME: Lazy<Handle> = Lazy::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("cacheable-io")
        .build()
        .expect("build the cacheable IO runtime");
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("cacheable-io".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .expect("spawn the cacheable IO thread");
    handle
});

/// The runtime's handle: enter it to build connections that live on it.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn handle() -> &'static Handle {
    &RUNTIME
}

/// Runs `fut` on the crate's runtime; the handle can be awaited from anywhere.
pub(crate) fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    RUNTIME.spawn(fut)
}

/// Sleeps for `d` without needing a timer in the caller's runtime.
pub(crate) async fn sleep(d: Duration) {
    // A handle whose task ended (or was cancelled at shutdown) has slept long enough.
    let _ = spawn(tokio::time::sleep(d)).await;
}

/// `fut`, or `None` once `d` has passed, without needing a timer in the caller's runtime.
pub(crate) fn timeout<F: Future>(d: Duration, fut: F) -> Timeout<F> {
    Timeout {
        fut: Box::pin(fut),
        after: d,
        timer: None,
    }
}

/// The future of [`timeout`].
pub(crate) struct Timeout<F> {
    // Boxed, so that the future needs no pinning of its own: a timeout is a slow path.
    fut: Pin<Box<F>>,
    after: Duration,
    /// Started on the first poll that found `fut` pending.
    timer: Option<JoinHandle<()>>,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(out) = this.fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        let after = this.after;
        let timer = this
            .timer
            .get_or_insert_with(|| spawn(tokio::time::sleep(after)));
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> Drop for Timeout<F> {
    fn drop(&mut self) {
        if let Some(timer) = &self.timer {
            timer.abort();
        }
    }
}
