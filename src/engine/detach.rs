//! The soft timeout: a caller that leads a computation with a value to answer with (past
//! its TTL within a stale window, or one an early refresh replaces) waits for it only so
//! long, then answers with that value; the computation goes on as a task of the caller's
//! runtime and writes under its lease when it ends, as it would have in the call.
//!
//! Only a computation that can outlive the call is detached: a future that is `Send +
//! 'static`, which the finisher boxes ([`detachable`]), awaited under a tokio runtime (whose
//! task it becomes), on a call without `store_if` or `ttl_from` (closures the call only
//! borrows). Any other waits for its computation, as without a soft timeout.

use super::read::Computes;
use super::*;
use crate::request::{Control, Freshness, ServedCell};
use std::pin::Pin;
use tokio::sync::oneshot;

/// What a detached computation's task sends back: the call's answer, its outcome, and how
/// long the computation took.
type Finished<T, E> = (Result<Result<T, E>>, Outcome, Option<Duration>);

/// Everything a detached computation needs, owned by its task.
pub(crate) struct DetachedRun<E> {
    core: Arc<Core>,
    call: OwnedCall,
    computes: Box<Computes>,
    failed: Option<fn(Error) -> E>,
}

/// A computation that can outlive its call: spawned with what it needs, it sends back what
/// the call would have answered.
pub(crate) struct Detached<T, E> {
    #[allow(clippy::type_complexity)]
    spawn: Box<dyn FnOnce(&Handle, DetachedRun<E>) -> oneshot::Receiver<Finished<T, E>> + Send>,
}

type Handle = tokio::runtime::Handle;

/// `fut`, made detachable: what the finishers that take `Send + 'static` computations hand
/// the read-through, as a `fn` pointer (the others hand `None`).
pub(crate) fn detachable<T, E, Fut>(fut: Fut) -> Detached<T, E>
where
    T: CacheValue,
    E: Send + 'static,
    Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
{
    Detached {
        spawn: Box::new(move |handle: &Handle, run: DetachedRun<E>| {
            let (tx, rx) = oneshot::channel();
            let fut: Pin<Box<dyn Future<Output = std::result::Result<T, E>> + Send>> =
                Box::pin(fut);
            handle.spawn(async move {
                let DetachedRun {
                    core,
                    call,
                    computes,
                    failed,
                } = run;
                let call = call.call();
                let out = computes.run(&core, &call, failed, None, || fut).await;
                let _ = tx.send((out, call.served.get(), call.served.computation()));
            });
            rx
        }),
    }
}

/// A call's description, owned: for a task that outlives the builder that made it.
struct OwnedCall {
    key: String,
    template: String,
    ttl: Duration,
    debug: bool,
    strict: bool,
    name: String,
    fresh: Freshness,
    control: Control<'static>,
}

impl OwnedCall {
    /// `call`'s description; `None` when it holds closures it only borrows (`store_if`,
    /// `ttl_from`).
    fn of(call: &Call<'_>) -> Option<OwnedCall> {
        let c = &call.control;
        if c.store_if.is_some() || c.ttl_from.is_some() {
            return None;
        }
        Some(OwnedCall {
            key: call.key.clone(),
            template: call.template.to_owned(),
            ttl: call.ttl,
            debug: call.debug,
            strict: call.strict,
            name: call.name.to_owned(),
            fresh: call.fresh.clone(),
            control: Control {
                refresh: c.refresh,
                bypass: c.bypass,
                sliding: c.sliding,
                skip_near: c.skip_near,
                share_failures: c.share_failures,
                hard_timeout: c.hard_timeout,
                soft_timeout: None,
                store_if: None,
                ttl_from: None,
            },
        })
    }

    fn call(&self) -> Call<'_> {
        Call {
            key: self.key.clone(),
            template: &self.template,
            ttl: self.ttl,
            debug: self.debug,
            strict: self.strict,
            name: &self.name,
            fresh: self.fresh.clone(),
            control: self.control,
            served: ServedCell::default(),
        }
    }
}

impl Computes {
    /// The bytes this call answers with at its soft timeout, and whether they are past
    /// their TTL; `None` when there are none (nothing stale, a forced refresh, or a
    /// computation alone).
    fn soft_answer(&self, call: &Call<'_>) -> Option<(Vec<u8>, bool)> {
        match &self.begun {
            Begin::Lead(_) => self
                .state
                .fallback
                .as_ref()
                .filter(|f| f.until > Instant::now())
                .map(|f| (f.bytes.clone(), true)),
            Begin::Refresh(old, refresh) => Some((old.clone(), call.past_ttl(Some(refresh.left)))),
            Begin::Force(..) | Begin::Alone | Begin::Hit(..) | Begin::Failed => None,
        }
    }

    /// How the call would be cut short: when it has a soft timeout, a value to answer
    /// with, a computation that can outlive it (`detachable`) and a runtime to run it on;
    /// `None` otherwise, to compute in the call.
    pub(super) fn soft_plan(&self, call: &Call<'_>, detachable: bool) -> Option<SoftPlan> {
        let soft = call.control.soft_timeout.filter(|_| detachable)?;
        let (bytes, past) = self.soft_answer(call)?;
        let owned = OwnedCall::of(call)?;
        let handle = Handle::try_current().ok()?;
        Some(SoftPlan {
            soft,
            bytes,
            past,
            owned,
            handle,
        })
    }

    /// Starts the computation (`fut`, made detachable) as a task, as `plan` says: the call
    /// waits on it up to its soft timeout.
    pub(super) fn detach<T: CacheValue, E>(
        self: Box<Self>,
        core: &Arc<Core>,
        failed: Option<fn(Error) -> E>,
        plan: SoftPlan,
        fut: Detached<T, E>,
    ) -> SoftWait<T, E> {
        // Its followers may take the value too, when the lease took it over in place (no
        // invalidation came between the read and the lease; the flight counts any after).
        let flight = match &self.begun {
            Begin::Lead(ticket) => match (&ticket.lease, &ticket.restore) {
                (Lease::Held(lease), Some(restore)) => {
                    Some((ticket.leader.flight(), lease.clone(), restore.until))
                }
                _ => None,
            },
            _ => None,
        };
        let SoftPlan {
            soft,
            bytes,
            past,
            owned,
            handle,
        } = plan;
        let run = DetachedRun {
            core: core.clone(),
            call: owned,
            computes: self,
            failed,
        };
        let rx = (fut.spawn)(&handle, run);
        SoftWait {
            soft,
            rx,
            bytes,
            past,
            flight,
        }
    }
}

/// What [`Computes::soft_plan`] found.
pub(super) struct SoftPlan {
    soft: Duration,
    bytes: Vec<u8>,
    past: bool,
    owned: OwnedCall,
    handle: Handle,
}

/// A call waiting on its detached computation, up to its soft timeout.
pub(super) struct SoftWait<T, E> {
    soft: Duration,
    rx: oneshot::Receiver<Finished<T, E>>,
    /// What the call answers with at the soft timeout, and whether it is past its TTL.
    bytes: Vec<u8>,
    past: bool,
    /// Told of the answer, for the followers that take it: the flight, the lease that
    /// took the value's place, and the end of its stale window.
    flight: Option<(Arc<super::flight::Flight>, Vec<u8>, Instant)>,
}

impl<T: CacheValue, E> SoftWait<T, E> {
    /// The computation's answer if it comes within the soft timeout; the value the call
    /// had otherwise (counted), the computation going on.
    pub(super) async fn answer(
        self,
        core: &Core,
        call: &Call<'_>,
    ) -> Result<std::result::Result<T, E>> {
        let SoftWait {
            soft,
            mut rx,
            bytes,
            past,
            flight,
        } = self;
        let finished = match crate::rt::timeout(soft, Pin::new(&mut rx)).await {
            Some(finished) => finished,
            None => match codec::decode::<T>(&bytes) {
                Ok(v) => {
                    if let Some((flight, lease, until)) = flight {
                        flight.serve_stale(StaleServed {
                            bytes: bytes.into(),
                            lease: lease.into(),
                            until,
                        });
                    }
                    core.soft_timed_out(call, "the value it had, the computation going on");
                    call.served
                        .set(if past { Outcome::Stale } else { Outcome::Hit });
                    return Ok(Ok(v));
                }
                // Bytes that do not decode answer nothing: the computation's answer, then.
                Err(_) => rx.await,
            },
        };
        match finished {
            Ok((out, outcome, took)) => {
                call.served.set(outcome);
                if let Some(took) = took {
                    call.served.computed(took);
                }
                out
            }
            // The task ended without an answer: the computation panicked (the runtime
            // caught it), or the runtime shut down.
            Err(_) => panic!(
                "cacheable: the computation of {} panicked or its runtime shut down",
                call.key
            ),
        }
    }
}

impl Core {
    /// A call answered at its soft timeout with `what`: counted and logged.
    pub(super) fn soft_timed_out(&self, call: &Call<'_>, what: &str) {
        Counters::add(&self.counters.soft_timeouts, 1);
        telemetry::soft_timeouts(call.template, 1);
        call.debug(format_args!(
            "SOFT TIMEOUT for {}: answering with {what}",
            call.key
        ));
    }
}
