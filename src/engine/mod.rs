//! The read-through path shared by every finisher, sync and async: read, single-flight in
//! process, a lease across processes, compute, and a write that lands only while the lease
//! is still there.
//!
//! The core ([`Core::begin`], [`Core::finish`]) is not generic: it works on bytes and is
//! compiled once. A cached function adds only a thin generic shim ([`read_through`],
//! [`read_through_async`]) that decodes, calls the computation and encodes. The core is
//! async code over [`Mode`]: in [`Mode::Blocking`] every step completes when first polled
//! (blocking store calls, `thread::sleep`, a condvar wait), so [`block_on`] drives it with a
//! single poll and no runtime.
//!
//! What callers get when something goes wrong:
//! - a computation that fails (returns `Err`, panics) releases the callers waiting on it,
//!   who answer with that failure when they share failures (`Control::share_failures`), or
//!   else compute at once, side by side and without caching (so do the waiters of a value
//!   that cannot be stored): no caller queues behind more than one failed computation. Across
//!   processes, the holder gives its lease back; a waiter that sees the lease it waited on
//!   vanish tries once to take it over, and computes without caching if another caller did;
//! - a computation that asks for its own key (directly, or through a chain of cached calls
//!   run inside it) is detected and computes at once without caching, logged once a minute;
//! - a sync caller that finds an async caller computing its key computes too rather than
//!   park a thread that the async caller's runtime may need.

mod detach;
mod flight;
mod invalidate;
mod keeper;
mod lease;
mod read;
mod refresh;
mod siblings;
mod write;

pub(crate) use detach::{detachable, Detached};
pub(crate) use read::{near_read, read_through, read_through_async, Prefetched};
pub(crate) use siblings::{Member, Siblings, Target};

use crate::codec;
use crate::codec::CacheValue;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::near::{NearCache, ReadMark};
use crate::outcome::Outcome;
use crate::report::{chain, debug_enabled, debug_line, format_ttl, Throttle};
use crate::request::Call;
use crate::rt::{block_on, Mode};
use crate::stats::Counters;
use crate::store::{failed_marker, is_marker, Backend, Entry, Read, FAILED_TTL, LEASE_PREFIX};
use crate::telemetry;
use flight::{Done, Flights, Leader, Role, SharedValue, StaleServed};
use keeper::{Host, LeaseGuard, LeaseHost, Pending, MAX_HOLD};
use lease::{lease_token, Lead, Lease};
use refresh::Refresh;
use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use write::Computed;

/// How often a rare fault (an unstorable value, a recursion) is logged per key template.
const RARE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A cache's state: its configuration, store, counters, flights and fault logs. A
/// [`Cache`](crate::Cache) is an `Arc` of it.
pub(crate) struct Core {
    pub(crate) config: Config,
    pub(crate) backend: Backend,
    pub(crate) counters: Counters,
    pub(crate) flights: Arc<Flights>,
    /// Decoded values in process memory, kept correct by invalidations.
    pub(crate) near: Option<Arc<NearCache>>,
    /// Faults met on fail-open paths: a line a second per key template and kind.
    faults: Throttle,
    /// Unstorable values and recursions: a line a minute per key template.
    rare: Throttle,
    /// Early refresh: each key template's recent computation time (δ), in this process; at
    /// most [`MAX_DELTAS`] templates (runtime templates may be countless).
    deltas: std::sync::Mutex<std::collections::HashMap<String, Duration>>,
    /// Keys whose refresh lock a caller of this process tried lately, and until when the
    /// others leave it alone: one `SET NX` per refresh and process, not one per hit.
    claims: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    /// The run-time switch ([`Cache::disable`](crate::Cache::disable)): while off, cached
    /// calls compute and neither read nor write.
    pub(crate) enabled: AtomicBool,
    /// The caches of the process on the same store and prefix (this one included), and the
    /// invalidations they could not send yet.
    pub(crate) siblings: Arc<Siblings<Core>>,
}

impl Call<'_> {
    /// The TTL the store is given: the call's TTL and the stale window after it.
    pub(crate) fn store_ttl(&self) -> Duration {
        self.ttl + self.fresh.window()
    }

    /// What a write gives the store: the TTL [`Control::ttl_from`] chose (`Some`) or the
    /// call's, lengthened by a draw in `[0, jitter]` so that keys written together do not
    /// expire together, then the stale window. Drawn once per write: its tag entries and
    /// the value get the same.
    fn store_ttl_for(&self, chosen: Option<Duration>) -> Duration {
        chosen.unwrap_or(self.ttl) + jitter_draw(self.fresh.jitter) + self.fresh.window()
    }

    /// Whether bytes with `left` to live in the store are past the call's TTL by less than
    /// its stale-while-revalidate window.
    fn revalidating(&self, left: Option<Duration>) -> bool {
        let swr = self.fresh.stale_while_revalidate;
        let window = self.fresh.window();
        !swr.is_zero() && left.is_some_and(|l| l <= window && l > window - swr)
    }

    /// Whether bytes with `left` to live in the store are past the call's TTL (they are
    /// only kept for the stale window).
    fn past_ttl(&self, left: Option<Duration>) -> bool {
        let window = self.fresh.window();
        !window.is_zero() && left.is_some_and(|l| l <= window)
    }

    /// Whether this call, having a fail-safe throttle, answers with `bytes` rather than ask
    /// the source: they carry a retry time still to come (a value that a failed computation
    /// put back). A call without a throttle asks at once.
    fn throttled(&self, bytes: &[u8]) -> bool {
        !self.fresh.fail_safe_throttle.is_zero()
            && codec::retry(bytes).is_some_and(|at| at > crate::store::unix_ms())
    }
}

/// A duration in `[0, max]`, at millisecond steps (a TTL's unit in the store): spread,
/// not secret, from std's OS-seeded `RandomState` as the other draws of the crate.
fn jitter_draw(max: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    // Each `RandomState::new()` of a thread has new keys, so each draw differs.
    Duration::from_millis(RandomState::new().hash_one(0u8) % (ms.saturating_add(1)))
}

/// A value past its TTL, kept to answer a failed computation: its bytes and when the
/// store lets it go.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fallback {
    bytes: Vec<u8>,
    until: Instant,
}

impl Call<'_> {
    fn debug(&self, args: std::fmt::Arguments<'_>) {
        debug_line(self.debug, args);
    }
}

/// What one call has seen so far, across the core's steps.
#[derive(Default)]
pub(crate) struct CallState {
    /// Whether the call was counted as a hit or a miss (once a call).
    counted: bool,
    /// Bytes that did not decode: the next read replaces them if they are still there.
    stale: Option<Vec<u8>>,
    /// How many times the call started over.
    restarts: u32,
    /// A value past its TTL, within the stale-if-error window, first seen by this call.
    fallback: Option<Fallback>,
    /// The bytes [`Core::begin`] returned are a stale-while-revalidate answer (a value past
    /// its TTL): the call's outcome is [`Outcome::Stale`], not a hit.
    stale_hit: bool,
    /// The call's first read, made with a batch's: [`Core::begin`] takes it in place of
    /// its first read of the store.
    first_read: Option<Result<Read>>,
}

/// Where the bytes of a hit come from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The store: a hit, counted once decoded.
    Store,
    /// Another caller's computation: the call was already counted as a miss.
    Shared,
}

/// What the caller does next.
pub(crate) enum Begin {
    /// Decode these bytes (and report them with [`Core::undecodable`] if they don't); the
    /// key has this long left in the store, when known.
    Hit(Vec<u8>, Source, Option<Duration>),
    /// Compute, then hand the outcome to [`Core::finish`].
    Lead(Lead),
    /// Compute, and store nothing.
    Alone,
    /// A hit (these bytes) that this caller refreshes early: compute, hand the outcome to
    /// [`Core::finish_refresh`], and answer with the computed value (the hit's, if the
    /// computation fails).
    Refresh(Vec<u8>, Refresh),
    /// The computation this call waited on failed, and the call shares failures
    /// ([`Control::share_failures`]): answer with that failure, computing nothing.
    Failed,
    /// [`Control::refresh`], a forced refresh: a value is stored (these bytes); compute a
    /// new one and put it in their place with [`Core::finish_forced`], with the TTL
    /// `ttl_from` chose, if any.
    Force(Vec<u8>, Option<Duration>),
}

impl Member for Core {
    fn invalidating(&self, target: &str, glob: bool) {
        self.flights.invalidated(target, glob);
    }

    fn changed(&self, target: &str, glob: bool) {
        self.evict(target, glob);
    }

    fn invalidating_keys(&self, keys: &[&str]) {
        self.flights.invalidated_keys(keys);
    }
}

impl LeaseHost for Core {
    fn backend(&self) -> &Backend {
        &self.backend
    }

    fn report(&self, what: &'static str, key: &str, err: &Error) {
        // The keeper's faults share one log line a second per kind, whatever the key.
        self.report_fault(what, "", key, err);
    }
}

impl Core {
    /// A core in its group of siblings (it joins the group).
    pub(crate) fn new(
        config: Config,
        backend: Backend,
        near: Option<Arc<NearCache>>,
        siblings: Arc<Siblings<Core>>,
    ) -> Arc<Core> {
        let core = Arc::new(Core {
            config,
            backend,
            counters: Counters::default(),
            flights: Arc::default(),
            near,
            faults: Throttle::new(Duration::from_secs(1)),
            rare: Throttle::new(RARE_LOG_INTERVAL),
            deltas: Default::default(),
            claims: Default::default(),
            enabled: AtomicBool::new(true),
            siblings,
        });
        core.siblings.add(Arc::downgrade(&core));
        core
    }

    /// Counts a fault met on a fail-open path and logs it, at most one line a second for
    /// each kind of fault on each key template.
    pub(crate) fn report_fault(&self, what: &'static str, template: &str, key: &str, err: &Error) {
        Counters::add(&self.counters.errors, 1);
        telemetry::errors(template, 1);
        if let Some(suppressed) = self.faults.allow(what, template) {
            let more = if suppressed > 0 {
                format!(" ({suppressed} similar faults not logged in the last second)")
            } else {
                String::new()
            };
            log::warn!(target: "cacheable", "{what} failed for {key}, answering without the cache: {}{more}", chain(err));
        }
    }

    /// A fault: an error in strict mode, otherwise counted and logged.
    fn fault(&self, call: &Call<'_>, what: &'static str, e: Error) -> Result<()> {
        call.served.fault();
        if call.strict {
            Counters::add(&self.counters.errors, 1);
            telemetry::errors(call.template, 1);
            Err(e)
        } else {
            self.report_fault(what, call.template, &call.key, &e);
            Ok(())
        }
    }

    fn count(&self, call: &Call<'_>, state: &mut CallState, hit: bool) {
        if !std::mem::replace(&mut state.counted, true) {
            let c = &self.counters;
            Counters::add(if hit { &c.store_hits } else { &c.misses }, 1);
            if hit {
                telemetry::hits(call.template, 1);
            } else {
                telemetry::misses(call.template, 1);
            }
        }
    }

    /// `key` was written or deleted by this process: the near caches of every cache of the
    /// process on this store and prefix drop it now, rather than when Redis's invalidation
    /// arrives.
    pub(crate) fn changed(&self, key: &str, glob: bool) {
        self.siblings.changed(key, glob);
    }

    /// This cache's own near cache drops what `target` names.
    fn evict(&self, target: &str, glob: bool) {
        if let Some(near) = &self.near {
            if glob {
                near.invalidate_pattern(target);
            } else {
                near.invalidate(target);
            }
        }
    }

    /// Whether the run-time switch is on ([`Cache::enable`](crate::Cache::enable)).
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// True when the call computes without the cache: bypassed, the cache switched off, or
    /// held back by a queued invalidation. Counted, logged and recorded as the call's
    /// outcome. Such a call neither reads nor writes: no tag entry, no lease, no early
    /// refresh.
    fn skips(&self, call: &Call<'_>) -> bool {
        let Some(skip) = self.skip_reason(call) else {
            return false;
        };
        let c = &self.counters;
        if skip == Outcome::Unavailable {
            Counters::add(&c.held_back, 1);
            call.debug(format_args!(
                "Computing {} without the cache: an invalidation that names it is queued",
                call.key
            ));
        } else if skip == Outcome::Disabled {
            Counters::add(&c.disabled_calls, 1);
            call.debug(format_args!(
                "Cache disabled: computing {} without reading or writing it",
                call.key
            ));
        } else {
            Counters::add(&c.bypasses, 1);
            call.debug(format_args!(
                "BYPASS for {}: computing without reading or writing the cache",
                call.key
            ));
        }
        call.served.set(skip);
        true
    }

    /// Why the call computes without the cache, if it does (`Disabled`, `Bypassed`, or
    /// `Unavailable` while an invalidation that names it is queued): [`skips`](Self::skips)'
    /// conditions, uncounted.
    fn skip_reason(&self, call: &Call<'_>) -> Option<Outcome> {
        if !self.is_enabled() {
            Some(Outcome::Disabled)
        } else if call.control.bypass {
            Some(Outcome::Bypassed)
        } else if self.held_back(&call.key, &call.fresh.tags) {
            Some(Outcome::Unavailable)
        } else {
            None
        }
    }
}

/// The sizes of the in-process maps, for the memory-bound checks.
impl Core {
    pub(crate) fn internal_sizes(&self) -> Vec<(&'static str, u64)> {
        let mut sizes = vec![
            ("flights", self.flights.in_flight() as u64),
            ("fault log throttle", self.faults.len() as u64),
            ("rare log throttle", self.rare.len() as u64),
            (
                "refresh claims",
                self.claims.lock().unwrap_or_else(|e| e.into_inner()).len() as u64,
            ),
            ("lease keeper (all caches)", keeper::kept()),
            (
                "early refresh timings",
                self.deltas.lock().unwrap_or_else(|e| e.into_inner()).len() as u64,
            ),
            ("queued invalidations", self.siblings.pending.len() as u64),
        ];
        if let Some(near) = &self.near {
            sizes.push(("near cache", near.len()));
        }
        #[allow(irrefutable_let_patterns)] // without the `redis` feature, the only store
        if let crate::store::Backend::Memory(store) = &self.backend {
            sizes.push(("embedded store markers", store.markers() as u64));
        }
        sizes
    }
}

/// `Config::max_value_bytes`: the bound on stored values, on reads and writes.
impl Core {}
