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
//! - a computation that fails (returns `Err`, panics, or computes a value that cannot be
//!   stored) releases the callers waiting on it, who then compute at once, side by side and
//!   without caching: no caller queues behind more than one failed computation. Across
//!   processes, the holder gives its lease back; a waiter that sees the lease it waited on
//!   vanish tries once to take it over, and computes without caching if another caller did;
//! - a computation that asks for its own key (directly, or through a chain of cached calls
//!   run inside it) is detected and computes at once without caching, logged once a minute;
//! - a sync caller that finds an async caller computing its key computes too rather than
//!   park a thread that the async caller's runtime may need.

mod invalidate;

use crate::codec;
use crate::codec::CacheValue;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::flight::{Done, Flights, Leader, Role, SharedValue};
use crate::lease::{Host, LeaseGuard, LeaseHost, Pending, MAX_HOLD};
use crate::near::NearCache;
use crate::outcome::Outcome as Served;
use crate::report::{chain, debug_enabled, debug_line, format_ttl, Throttle};
use crate::rt::{block_on, Mode};
use crate::siblings::{Member, Siblings};
use crate::stats::Counters;
use crate::store::{failed_marker, Backend, Entry, FAILED_TTL, LEASE_PREFIX};
use crate::telemetry;
use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest pause between two looks at a leased key.
const MAX_LEASE_POLL: Duration = Duration::from_millis(50);

/// How often a rare fault (an unstorable value, a recursion) is logged per key template.
const RARE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A cache's state: its configuration, store, counters, flights and fault logs. A
/// [`Cache`](crate::Cache) is an `Arc` of it.
pub(crate) struct Core {
    pub(crate) config: Config,
    pub(crate) backend: Backend,
    pub(crate) counters: Counters,
    pub(crate) flights: Flights,
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

/// Most key templates whose computation time early refresh remembers; past it, one is
/// forgotten for each new one (it is learnt again on its next computation).
const MAX_DELTAS: usize = 4096;

/// One read-through call: the full key and the settings in force.
pub(crate) struct Call<'a> {
    pub key: String,
    /// The key template, for fault logs.
    pub template: &'a str,
    pub ttl: Duration,
    /// The seed's debug lines at info level rather than debug.
    pub debug: bool,
    /// Store faults are returned as errors (manual `get_or_set`) rather than reported and
    /// answered around (the builders' fail-open finishers).
    pub strict: bool,
    pub name: &'a str,
    /// Tags, early refresh, stale values: what the builder asked for.
    pub fresh: Freshness,
    /// The per-call controls (refresh, bypass, conditions, sliding expiry).
    pub control: Control<'a>,
    /// What the call did, filled in as it goes.
    pub served: ServedCell,
}

thread_local! {
    /// The key buffer of this thread's last finished call, kept for its next one: a hit
    /// from process memory then allocates nothing for its key.
    static SPARE_KEY: std::cell::Cell<Option<String>> = const { std::cell::Cell::new(None) };
}

/// An empty `String` for a call's key: the thread's spare, or a new one.
pub(crate) fn key_buffer() -> String {
    let mut key = SPARE_KEY
        .try_with(std::cell::Cell::take)
        .ok()
        .flatten()
        .unwrap_or_default();
    key.clear();
    key
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        // Short keys only: a rare long one is not kept for the thread's life.
        if self.key.capacity() <= 256 {
            let key = std::mem::take(&mut self.key);
            let _ = SPARE_KEY.try_with(|spare| spare.set(Some(key)));
        }
    }
}

/// Whether a computed value is stored (`Some(false)`: not stored), given as `&dyn Any` so
/// that the core stays one copy for every value type; `None` when the value is not of the
/// type the predicate takes.
pub(crate) type StoreIf<'a> = dyn Fn(&dyn Any) -> Option<bool> + Send + Sync + 'a;

/// The TTL for a computed value (zero: not stored); `None` as for [`StoreIf`].
pub(crate) type TtlFrom<'a> = dyn Fn(&dyn Any) -> Option<Duration> + Send + Sync + 'a;

/// A call's per-call controls: plain data and `dyn` callbacks, so that no option adds
/// generic code to a call site.
#[derive(Default, Clone, Copy)]
pub(crate) struct Control<'a> {
    /// Compute and store even when a value is stored; readers keep the old one meanwhile.
    pub refresh: bool,
    /// Compute without reading or writing.
    pub bypass: bool,
    /// A hit pushes the key's expiry to the call's TTL again, in the same round trip.
    pub sliding: bool,
    pub store_if: Option<&'a StoreIf<'a>>,
    pub ttl_from: Option<&'a TtlFrom<'a>>,
}

/// What a call did ([`crate::Outcome`]), written by the core as it goes: an atomic so that
/// a `&Call` held across an await stays `Sync`. A fault met on a fail-open path makes the
/// call [`Served::Unavailable`] whatever else it did.
#[derive(Default)]
pub(crate) struct ServedCell {
    outcome: AtomicU8,
    faulted: AtomicBool,
}

impl ServedCell {
    pub(crate) fn set(&self, outcome: Served) {
        self.outcome.store(outcome as u8, Ordering::Relaxed);
    }

    pub(crate) fn fault(&self) {
        self.faulted.store(true, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Served {
        if self.faulted.load(Ordering::Relaxed) {
            Served::Unavailable
        } else {
            Served::from_u8(self.outcome.load(Ordering::Relaxed))
        }
    }
}

/// A call's freshness options, grouped so that calls without them carry one empty field.
#[derive(Debug, Default, Clone)]
pub(crate) struct Freshness {
    /// The full keys of the tag sets the key is recorded in before it is leased or written.
    pub tags: Vec<String>,
    /// How long past its TTL a value is kept to answer a failed computation.
    pub stale_if_error: Duration,
    /// How long past its TTL a value is still served at once while one caller refreshes it.
    pub stale_while_revalidate: Duration,
    /// XFetch's β: a hit recomputes early with probability growing as the expiry nears
    /// (0: off).
    pub early_refresh: f64,
}

impl Freshness {
    /// How long past the TTL values are kept in the store: the logical deadline is the
    /// physical expiry (`PTTL`) less this window, so values stay plain JSON.
    pub(crate) fn window(&self) -> Duration {
        self.stale_if_error.max(self.stale_while_revalidate)
    }
}

impl Call<'_> {
    /// The TTL the store is given: the call's TTL and the stale window after it.
    pub(crate) fn store_ttl(&self) -> Duration {
        self.ttl + self.fresh.window()
    }

    /// [`store_ttl`](Self::store_ttl) for a value whose TTL [`Control::ttl_from`] chose
    /// (`Some`): that TTL in place of the call's, the stale window after it.
    fn store_ttl_for(&self, chosen: Option<Duration>) -> Duration {
        chosen.unwrap_or(self.ttl) + self.fresh.window()
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
}

/// A value past its TTL, kept to answer a failed computation: its bytes and when the
/// store lets it go.
#[derive(Clone)]
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
    /// its TTL): the call's outcome is [`Served::Stale`], not a hit.
    stale_hit: bool,
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
pub(crate) enum Begin<'c> {
    /// Decode these bytes (and report them with [`Core::undecodable`] if they don't); the
    /// key has this long left in the store, when known.
    Hit(Vec<u8>, Source, Option<Duration>),
    /// Compute, then hand the outcome to [`Core::finish`].
    Lead(Ticket<'c>),
    /// Compute, and store nothing.
    Alone,
    /// A hit (these bytes) that this caller refreshes early: compute, hand the outcome to
    /// [`Core::finish_refresh`], and answer with the computed value (the hit's, if the
    /// computation fails).
    Refresh(Vec<u8>, Refresh),
    /// [`Control::refresh`], a forced refresh: a value is stored (these bytes); compute a
    /// new one and put it in their place with [`Core::finish_forced`], with the TTL
    /// `ttl_from` chose, if any.
    Force(Vec<u8>, Option<Duration>),
}

/// An early refresh in progress: the store-wide lock that elects one refresher per key
/// (a side key, so the current value stays readable), and what the write checks.
pub(crate) struct Refresh {
    lock: String,
    token: Vec<u8>,
    /// The value's time to live in the store when read, and when it was read.
    left: Duration,
    read_at: Instant,
    /// The TTL [`Control::ttl_from`] chose for the new value, in place of the call's.
    ttl: Option<Duration>,
}

/// Rounding allowed between the `PTTL` an early refresh read and the one its write finds
/// (the server's millisecond clock). The server's time between the two is longer than the
/// caller's between the read's reply and the write's sending, so a key left alone always
/// passes; a key written again after an invalidation has a `PTTL` near the full TTL, and
/// fails as long as the value refreshed was older than twice this.
const AGING_SLACK: Duration = Duration::from_millis(5);

/// How long a refresh claim outlives a refresh, or a lock found held elsewhere, for a
/// template whose computation time this process has not seen.
const DEFAULT_DELTA: Duration = Duration::from_millis(50);

/// Added to an early refresh's lead over the expiry: see [`Core::early`].
const REFRESH_SLACK: Duration = Duration::from_millis(10);

/// Most keys a cache remembers refresh claims for (see [`Core::claim_refresh`]); past it,
/// expired claims are dropped, and if all are live a caller goes to the store unclaimed.
const MAX_CLAIMS: usize = 4096;

/// The uniform draw in (0, 1] of early refresh for the value of `key` that expires at
/// `expires_ms` (milliseconds on this process's clock): the same for every read of that
/// value in this process (its expiry, read with jitter, rounded to 256 ms), independent
/// between values and between processes (a per-process random hash key).
fn version_draw(key: &str, expires_ms: u64) -> f64 {
    use std::hash::{BuildHasher, RandomState};
    static SEED: once_cell::sync::Lazy<RandomState> = once_cell::sync::Lazy::new(RandomState::new);
    let bits = SEED.hash_one((key, expires_ms >> 8)) >> 11;
    (bits as f64 + 1.0) / (1u64 << 53) as f64
}

/// Milliseconds since this process first asked: the clock of [`version_draw`].
fn process_ms() -> u64 {
    static EPOCH: once_cell::sync::Lazy<Instant> = once_cell::sync::Lazy::new(Instant::now);
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What a leading caller holds while it computes: the flight (its followers wait on it) and
/// the lease. Dropped without [`Core::finish`] (a panic, a dropped future), it releases both.
pub(crate) struct Ticket<'c> {
    leader: Leader<'c>,
    lease: Lease,
    /// Renews the lease while the computation runs; gives it back if dropped.
    guard: Option<LeaseGuard>,
    /// The flight's invalidation count when the computation started.
    computed_from: u64,
    /// What a failed computation puts back in place of its lease (stale-if-error).
    restore: Option<Fallback>,
    /// The bytes the lease was put in place of, when it took them over.
    replaced: Option<Vec<u8>>,
    /// The TTL [`Control::ttl_from`] chose for the value, in place of the call's.
    ttl: Option<Duration>,
}

/// The outcome of a computation, as the core sees it.
pub(crate) enum Outcome {
    /// The value's stored form.
    Value(Vec<u8>),
    /// The computation returned an error: nothing to store or share.
    Failed,
    /// A value that cannot be stored (it would not read back equal).
    Unstorable(Error),
    /// A value the call chose not to store ([`Control::store_if`], [`Control::ttl_from`]):
    /// returned and shared, never written.
    Declined(Vec<u8>),
}

impl Outcome {
    pub(crate) fn of<T: CacheValue, E>(out: &Result<T, E>, format: codec::Format) -> Outcome {
        match out {
            Ok(v) => match codec::encode_checked(v, format) {
                Ok(bytes) => Outcome::Value(bytes),
                Err(e) => Outcome::Unstorable(e),
            },
            Err(_) => Outcome::Failed,
        }
    }

    /// The call's conditions on the value: declined, or stored with the TTL that
    /// [`Control::ttl_from`] chose. Not generic: the value comes as `&dyn Any`.
    fn vetted(
        self,
        core: &Core,
        call: &Call<'_>,
        value: Option<&dyn Any>,
        ttl: &mut Option<Duration>,
    ) -> Outcome {
        let c = &call.control;
        if c.store_if.is_none() && c.ttl_from.is_none() {
            return self;
        }
        let (Outcome::Value(bytes), Some(value)) = (&self, value) else {
            return self;
        };
        let keep = c.store_if.map(|f| f(value));
        let chosen = c.ttl_from.map(|f| f(value));
        if keep == Some(None) || chosen == Some(None) {
            let e = Error::config(format!(
                "the store_if or ttl_from callback of {} takes another type than the value's",
                call.name
            ));
            core.report_fault("cache option", call.template, &call.key, &e);
            call.served.fault();
            return Outcome::Declined(bytes.clone());
        }
        if keep == Some(Some(false)) {
            call.debug(format_args!("Not caching {}: store_if said no", call.key));
            Counters::add(&core.counters.declined, 1);
            return Outcome::Declined(bytes.clone());
        }
        if let Some(Some(d)) = chosen {
            if d.is_zero() {
                call.debug(format_args!(
                    "Not caching {}: ttl_from chose a zero TTL",
                    call.key
                ));
                Counters::add(&core.counters.declined, 1);
                return Outcome::Declined(bytes.clone());
            }
            *ttl = Some(d);
            // The value carries the end of its life, so that no sliding read extends it.
            let deadline = crate::store::unix_ms()
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            return Outcome::Value(codec::with_deadline(bytes, deadline));
        }
        self
    }
}

enum Lease {
    /// This caller holds the lease with this marker.
    Held(Vec<u8>),
    /// Leases are off: compute and write plainly.
    Off,
    /// The store failed (reported): compute, share, write nothing.
    Unavailable,
    /// Another caller's computation outlasted `lease_wait`, or the holder this caller
    /// waited on went away and another took over: compute, share, write nothing.
    Uncached,
}

enum Acquired {
    Lease(Lease),
    /// This caller holds the lease with this marker, put in place of these bytes (a value
    /// past its TTL, undecodable bytes, a failure marker) by a compare-and-set: nothing
    /// changed the key between the read of those bytes and the lease.
    Replaced(Vec<u8>, Vec<u8>),
    /// A value appeared while waiting.
    Found(Vec<u8>),
    /// The computation this caller waited on failed: compute alone.
    Failed,
}

fn lease_token() -> Vec<u8> {
    use std::hash::{BuildHasher, RandomState};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // `RandomState` is seeded from OS randomness once per process: with a counter, tokens
    // are unique across processes and hosts.
    static PROCESS: once_cell::sync::Lazy<u64> =
        once_cell::sync::Lazy::new(|| RandomState::new().hash_one(std::process::id()));
    let mut token = LEASE_PREFIX.to_vec();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    token.extend_from_slice(format!("{:016x}-{n:x}", *PROCESS).as_bytes());
    token
}

thread_local! {
    /// The keys whose computations are running on this thread's stack: a cached call made
    /// inside a computation that asks for one of them would wait on itself.
    static COMPUTING: RefCell<Vec<(usize, String)>> = const { RefCell::new(Vec::new()) };
}

/// Marks `key` of `core` as being computed on this thread until dropped.
struct Computing;

impl Computing {
    fn enter(core: &Core, key: &str) -> Computing {
        COMPUTING.with(|c| c.borrow_mut().push((core_id(core), key.to_owned())));
        Computing
    }
}

impl Drop for Computing {
    fn drop(&mut self) {
        COMPUTING.with(|c| {
            c.borrow_mut().pop();
        });
    }
}

fn core_id(core: &Core) -> usize {
    core as *const Core as usize
}

fn in_computation(core: &Core, key: &str) -> bool {
    let id = core_id(core);
    COMPUTING.with(|c| c.borrow().iter().any(|(c, k)| *c == id && k == key))
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
            flights: Flights::default(),
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

    /// The decoded value the near cache holds for the call's key, counted.
    ///
    /// Counted, marked as the call's outcome and cloned under the shard's read lock (the
    /// clone last, so that it lands where the caller returns it; a `Clone` that panics has
    /// been counted). A call that writes a debug line or records metrics (a logger's or a
    /// recorder's code) clones, lets the lock go, and then does those.
    #[inline(always)]
    fn near_hit<T: CacheValue>(&self, call: &Call<'_>) -> Option<T> {
        let near = self.near.as_ref()?;
        if cfg!(feature = "metrics") || debug_enabled(call.debug) {
            return self.near_hit_told(near, call);
        }
        near.with::<T, T>(&call.key, |v| {
            self.mark_near_hit(call);
            v.clone()
        })
    }

    /// [`near_hit`](Self::near_hit), with its debug line and metrics written after the
    /// shard's lock is let go.
    #[inline(never)]
    fn near_hit_told<T: CacheValue>(&self, near: &NearCache, call: &Call<'_>) -> Option<T> {
        let v = near.with::<T, T>(&call.key, T::clone)?;
        self.mark_near_hit(call);
        telemetry::hits(call.template, 1);
        telemetry::near_hits(call.template, 1);
        call.debug(format_args!("NEAR HIT for {}", call.key));
        Some(v)
    }

    /// A near hit, counted and recorded as the call's outcome.
    #[inline(always)]
    fn mark_near_hit(&self, call: &Call<'_>) {
        Counters::add(&self.counters.near_hits, 1);
        call.served.set(Served::NearHit);
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

    /// Stale-if-error: the value past its TTL that this call saw, decoded, to answer its
    /// failed computation with (counted and logged); `None` when there is none.
    fn stale_answer<T: CacheValue>(&self, call: &Call<'_>, state: &CallState) -> Option<T> {
        let old = state.fallback.as_ref()?;
        if old.until <= Instant::now() {
            return None;
        }
        let v = codec::decode::<T>(&old.bytes).ok()?;
        Counters::add(&self.counters.stale_if_error, 1);
        call.served.set(Served::Stale);
        if self.faults.allow("stale if error", call.template).is_some() {
            log::warn!(target: "cacheable", "the computation of {} in {} failed: answering with the value past its TTL (stale-if-error)", call.key, call.name);
        }
        Some(v)
    }

    /// The caller decoded a hit.
    pub(crate) fn hit(&self, call: &Call<'_>, state: &mut CallState, source: Source) {
        if source == Source::Store {
            self.count(call, state, true);
            if state.stale_hit {
                // Counted and logged by `begin` as a stale-while-revalidate answer.
                call.served.set(Served::Stale);
                return;
            }
            call.served.set(Served::Hit);
            if call.control.sliding {
                Counters::add(&self.counters.sliding_hits, 1);
                call.debug(format_args!(
                    "HIT for {} (expiry pushed to {} from now)",
                    call.key,
                    format_ttl(call.store_ttl())
                ));
                return;
            }
            call.debug(format_args!("HIT for {}", call.key));
        }
    }

    /// The call is about to compute, as `begun` says: an early refresh counts as a hit on
    /// the value it refreshes, and the call's outcome says it refreshed.
    pub(crate) fn computes<'c>(
        &self,
        call: &Call<'_>,
        state: &mut CallState,
        begun: Begin<'c>,
    ) -> Begin<'c> {
        if let Begin::Refresh(..) = begun {
            self.count(call, state, true);
            call.served.set(Served::Refreshed);
        }
        begun
    }

    /// A computation's outcome, its value encoded in the cache's format.
    pub(crate) fn outcome<T: CacheValue, E>(&self, out: &Result<T, E>) -> Outcome {
        // `Config::max_value_bytes`: a value over the bound is unstorable on every path.
        self.bounded(Outcome::of(out, self.config.format))
    }

    /// The caller could not decode these bytes (the stored type changed): they count as a
    /// miss, and the next [`begin`](Self::begin) replaces them.
    pub(crate) fn undecodable(
        &self,
        call: &Call<'_>,
        state: &mut CallState,
        bytes: Vec<u8>,
        err: &codec::DecodeError,
        type_name: &str,
    ) {
        Counters::add(&self.counters.decode_errors, 1);
        self.count(call, state, false);
        // Throttled like store faults: a writer that keeps putting foreign bytes at a key
        // logs a line a second per template, not one per call.
        if self.faults.allow("decode", call.template).is_some() {
            log::warn!(target: "cacheable", "the value at {} does not deserialize into {type_name} ({err}); recomputing and replacing it", call.key);
        }
        state.stale = Some(bytes);
    }

    /// Reads the key and decides: a hit to decode, a computation to lead, or one to run
    /// alone. The `Err` only comes in strict mode.
    pub(crate) async fn begin<'c>(
        self: &'c Arc<Core>,
        mode: Mode,
        call: &Call<'_>,
        state: &mut CallState,
    ) -> Result<Begin<'c>> {
        if in_computation(self, &call.key) {
            if self.rare.allow("recursion", call.template).is_some() {
                log::warn!(target: "cacheable", "{} asks for its own key {} while computing it (directly or through other cached calls): computing it again without caching", call.name, call.key);
            }
            self.count(call, state, false);
            return Ok(Begin::Alone);
        }
        loop {
            if state.restarts > 3 {
                // A value that keeps changing under this caller, or leaders that keep
                // vanishing: stop chasing it.
                return Ok(Begin::Alone);
            }
            let stale = state.stale.take();
            state.stale_hit = false;
            let windows = !call.fresh.window().is_zero();
            // A sliding read pushes the key's expiry: its tag entries are pushed first, so
            // that they outlive it (a store that failed there keeps the expiry where it is).
            let covered = !call.control.sliding || self.index(mode, call, call.store_ttl()).await?;
            let read = if !covered {
                None
            } else if call.control.sliding && !windows {
                // Pushed to a full TTL just now, if a value. (With a stale window, the
                // expiry is read and a fresh value's pushed after, below.)
                let read = self.backend.get_sliding(mode, &call.key, call.ttl).await;
                Some(read.map(|b| (b, Some(call.ttl))))
            } else if self.near.is_some() || windows || call.fresh.early_refresh > 0.0 {
                Some(self.backend.get_with_ttl(mode, &call.key).await)
            } else {
                Some(self.backend.get(mode, &call.key).await.map(|b| (b, None)))
            };
            let store_ok = match read {
                // The tag entries could not be pushed (reported): computed without the cache.
                None => false,
                Some(Ok((raw, left))) => match Entry::classify(raw) {
                    Entry::Value(b) if self.oversized(call, &b) => {
                        // Not served: computed again, and replaced like a stale value.
                        state.stale = Some(b);
                        true
                    }
                    Entry::Value(b) if call.control.refresh && stale.as_ref() != Some(&b) => {
                        // A forced refresh, whatever the value's age: it replaces these
                        // bytes (a value past its TTL too).
                        Counters::add(&self.counters.refreshes, 1);
                        call.served.set(Served::Refreshed);
                        call.debug(format_args!("REFRESH for {}", call.key));
                        return Ok(Begin::Force(b, None));
                    }
                    Entry::Value(b) if call.revalidating(left) && stale.as_ref() != Some(&b) => {
                        // Stale-while-revalidate: one caller refreshes (it computes), every
                        // other caller gets the stale value at once.
                        let left = left.unwrap_or_default();
                        if let Some(refresh) = self.take_refresh(mode, call, left).await {
                            return Ok(Begin::Refresh(b, refresh));
                        }
                        Counters::add(&self.counters.stale_while_revalidate, 1);
                        call.debug(format_args!("STALE HIT for {} (revalidating)", call.key));
                        state.stale_hit = true;
                        return Ok(Begin::Hit(b, Source::Store, None));
                    }
                    Entry::Value(b) if call.past_ttl(left) && stale.as_ref() != Some(&b) => {
                        // Past its TTL, kept for the stale window: a miss whose lease takes
                        // the value over, and the answer if the computation fails.
                        if state.fallback.is_none() {
                            state.fallback = Some(Fallback {
                                bytes: b.clone(),
                                until: Instant::now() + left.unwrap_or_default(),
                            });
                        }
                        state.stale = Some(b);
                        true
                    }
                    Entry::Value(b) if stale.as_ref() != Some(&b) => {
                        if let Some(refresh) = self.early(mode, call, left).await {
                            return Ok(Begin::Refresh(b, refresh));
                        }
                        let mut left = left.map(|l| l.saturating_sub(call.fresh.window()));
                        if call.control.sliding {
                            left = self.slide(mode, call, &b, !windows).await?.or(left);
                        }
                        return Ok(Begin::Hit(b, Source::Store, left));
                    }
                    Entry::Value(b) => {
                        // The bytes that did not decode: taken over below, as a lease.
                        state.stale = Some(b);
                        true
                    }
                    // A failed computation's marker is taken over like a stale value.
                    Entry::Failed(marker) => {
                        state.stale = Some(marker);
                        true
                    }
                    Entry::Missing | Entry::Leased(_) => true,
                },
                Some(Err(e)) => {
                    self.fault(call, "cache read", e)?;
                    false
                }
            };
            self.count(call, state, false);
            match self.flights.join(&call.key, mode) {
                Role::Follow(flight) => {
                    if mode == Mode::Blocking && flight.mode() == Mode::Async {
                        // This thread may be one the async leader needs to make progress
                        // (a runtime worker): never park it on that leader.
                        call.debug(format_args!(
                            "Computing {} alone: an async caller is computing it and a sync caller must not wait on it",
                            call.key
                        ));
                        return Ok(Begin::Alone);
                    }
                    telemetry::lease_waits(call.template, 1);
                    let joined = flight.invalidations();
                    // The leader may first wait up to `lease_wait` for another process's
                    // lease, then compute: followers allow for both before giving up.
                    let wait = self.config.lease_wait.saturating_mul(2);
                    let done = match mode {
                        Mode::Blocking => flight.wait(wait),
                        Mode::Async => flight.wait_async(wait).await,
                    };
                    match done {
                        Some(Done::Value(v)) if joined <= v.fresh_as_of => {
                            // Written just now with this call's TTL, if written at all.
                            let left = v.written.then_some(call.ttl);
                            return Ok(Begin::Hit(v.json.to_vec(), Source::Shared, left));
                        }
                        // What the leader computed may predate an invalidation that this
                        // caller came after, or the leader went away: start over.
                        Some(Done::Value(_) | Done::Vanished) => state.restarts += 1,
                        Some(Done::Failed) => {
                            call.debug(format_args!(
                                "Computing {} alone: the computation it waited on failed",
                                call.key
                            ));
                            return Ok(Begin::Alone);
                        }
                        None => {
                            log::warn!(target: "cacheable", "{} stayed in flight for {} ms: computing without caching", call.key, wait.as_millis());
                            return Ok(Begin::Alone);
                        }
                    }
                }
                Role::Lead(leader) => {
                    call.served.set(Served::Miss);
                    call.debug(format_args!("MISS for {}", call.key));
                    let stale = state.stale.take();
                    // Boxed, as the write after a computation is: a miss's paths stay off
                    // the future that every hit builds and moves.
                    let begun = Box::pin(self.lead(mode, call, leader, store_ok, stale)).await?;
                    return Ok(match begun {
                        Begin::Lead(mut ticket) => {
                            // Only a lease that took the place of that very value may give
                            // it back: a key that went meanwhile (an invalidation) stays
                            // without it.
                            ticket.restore = state
                                .fallback
                                .clone()
                                .filter(|f| ticket.replaced.as_ref() == Some(&f.bytes));
                            Begin::Lead(ticket)
                        }
                        other => other,
                    });
                }
            }
        }
    }

    /// Sliding expiry of a value read within its TTL: its expiry goes back to the call's TTL
    /// and the stale window after it, never past the life [`Control::ttl_from`] gave the
    /// value (the deadline its stored form carries). Without a window the read's `GETEX`
    /// pushed it already (`pushed`), and only a value with a nearer deadline is pulled back;
    /// with one, the read was a `GET` and `PTTL` (`GETEX` cannot tell a value within its TTL
    /// from one kept for its window), and this pushes it. Both by a compare-and-set
    /// `PEXPIRE`, only while the key still holds these bytes. The time the value has left
    /// within its TTL once slid, when known.
    async fn slide(
        &self,
        mode: Mode,
        call: &Call<'_>,
        bytes: &[u8],
        pushed: bool,
    ) -> Result<Option<Duration>> {
        let capped = codec::deadline(bytes).is_some();
        let (physical, fresh) = match codec::deadline(bytes) {
            Some(deadline) => {
                let left = Duration::from_millis(deadline.saturating_sub(crate::store::unix_ms()));
                if left >= call.ttl {
                    (call.store_ttl(), call.ttl)
                } else {
                    (left + call.fresh.window(), left)
                }
            }
            None => (call.store_ttl(), call.ttl),
        };
        if pushed && physical >= call.store_ttl() {
            return Ok(Some(call.ttl));
        }
        let physical = physical.max(Duration::from_millis(1));
        match self
            .backend
            .renew_if(mode, &call.key, bytes, physical)
            .await
        {
            Ok(true) => Ok(Some(fresh)),
            // Changed since the read: its expiry is whatever the new bytes were given; a value
            // with a deadline is kept here no longer than its own life.
            Ok(false) => Ok(capped.then_some(fresh)),
            // The store failed between the read's push and the pull back to the deadline:
            // the key may live past it in the store, up to the call's TTL (the fault is
            // counted and logged), but the value read is never kept here past its deadline.
            Err(e) => {
                self.fault(call, "cache read", e)?;
                Ok(capped.then_some(fresh))
            }
        }
    }

    async fn lead<'c>(
        self: &'c Arc<Core>,
        mode: Mode,
        call: &Call<'_>,
        mut leader: Leader<'c>,
        store_ok: bool,
        stale: Option<Vec<u8>>,
    ) -> Result<Begin<'c>> {
        let before_acquire = leader.invalidations();
        // The bytes the lease took the place of, if it did.
        let mut replaced = None;
        let store_ok = store_ok && self.index(mode, call, call.store_ttl()).await?;
        let lease = if !store_ok {
            Lease::Unavailable
        } else if self.config.leases {
            match self.acquire(mode, call, stale).await? {
                Acquired::Lease(lease) => lease,
                Acquired::Replaced(token, old) => {
                    replaced = Some(old);
                    Lease::Held(token)
                }
                Acquired::Found(json) => {
                    leader.share(SharedValue {
                        json: json.as_slice().into(),
                        fresh_as_of: before_acquire,
                        written: false,
                    });
                    return Ok(Begin::Hit(json, Source::Shared, None));
                }
                Acquired::Failed => {
                    call.debug(format_args!(
                        "Computing {} alone: the computation it waited on failed in another process",
                        call.key
                    ));
                    // Releases this process's followers to compute side by side too.
                    leader.fail();
                    return Ok(Begin::Alone);
                }
            }
        } else {
            Lease::Off
        };
        // Kept alive while the computation runs, given back if it panics or is dropped.
        let guard = match &lease {
            Lease::Held(token) => {
                let host: Host = self.clone();
                Some(LeaseGuard::hold(
                    &host,
                    &call.key,
                    token,
                    self.config.lease_ttl,
                ))
            }
            _ => None,
        };
        let computed_from = leader.invalidations();
        Ok(Begin::Lead(Ticket {
            leader,
            lease,
            guard,
            computed_from,
            restore: None,
            replaced,
            ttl: None,
        }))
    }

    /// Stores a leader's value (unless an invalidation ran while it was computed) and hands
    /// it to the followers; or, for a failed computation, gives the lease back and releases
    /// the followers. The `Err` only comes in strict mode.
    pub(crate) async fn finish(
        &self,
        mode: Mode,
        call: &Call<'_>,
        ticket: Ticket<'_>,
        outcome: Outcome,
    ) -> Result<()> {
        let Ticket {
            mut leader,
            lease,
            guard,
            computed_from,
            restore,
            ttl,
            ..
        } = ticket;
        let outcome = self.bounded(outcome);
        let store_ttl = call.store_ttl_for(ttl);
        let json = match outcome {
            Outcome::Value(json) if self.is_enabled() => json,
            // Shared with this process's followers, never written; the lease goes back now.
            Outcome::Value(json) | Outcome::Declined(json) => {
                leader.share(SharedValue {
                    json: json.into(),
                    fresh_as_of: computed_from,
                    written: false,
                });
                let released = match &lease {
                    Lease::Held(token) => self.backend.delete_if(mode, &call.key, token).await,
                    _ => Ok(false),
                };
                match (guard, released) {
                    (Some(guard), Ok(_)) => guard.finish(),
                    // Dropped unfinished: the keeper gives the lease back, retrying.
                    (_, Err(e)) => self.report_fault("lease release", call.template, &call.key, &e),
                    (None, Ok(_)) => {}
                }
                return Ok(());
            }
            Outcome::Failed | Outcome::Unstorable(_) => {
                if let Outcome::Unstorable(e) = &outcome {
                    Counters::add(&self.counters.unstorable, 1);
                    if self.rare.allow("unstorable", call.template).is_some() {
                        log::warn!(target: "cacheable", "not caching the value computed for {} in {}: {}", call.key, call.name, chain(e));
                    }
                }
                leader.fail();
                // Leave a failure marker in place of the lease, so that waiters elsewhere
                // compute at once instead of sitting out its TTL or queueing for it.
                let released = match (&lease, restore) {
                    // Stale-if-error: the value the lease took over goes back for what is
                    // left of its window, unless an invalidation took the lease meanwhile.
                    (Lease::Held(token), Some(old))
                        if matches!(outcome, Outcome::Failed)
                            && old.until > Instant::now() + Duration::from_millis(1) =>
                    {
                        let left = old.until - Instant::now();
                        self.backend
                            .set_if(mode, &call.key, token, &old.bytes, left)
                            .await
                    }
                    (Lease::Held(token), _) => {
                        let marker = failed_marker(token);
                        self.backend
                            .set_if(mode, &call.key, token, &marker, FAILED_TTL)
                            .await
                    }
                    (_, _) => Ok(false),
                };
                match (guard, released) {
                    (Some(guard), Ok(_)) => guard.finish(),
                    // Dropped unfinished: the keeper gives the lease back, retrying.
                    (_, Err(e)) => self.report_fault("lease release", call.template, &call.key, &e),
                    (None, Ok(_)) => {}
                }
                return Ok(());
            }
        };
        // Followers may take a value written under the lease whatever happened meanwhile
        // (the compare-and-set proved no invalidation ran); any other value, only if no
        // invalidation came between the start of the computation and their arrival.
        let unverified = |json: Vec<u8>| SharedValue {
            json: json.into(),
            fresh_as_of: computed_from,
            written: false,
        };
        // Not written while an invalidation that names the key is queued (the lease it could
        // not delete would not stop the write), nor before the key is recorded in its tags
        // again: a tag invalidation that listed the entry recorded before the lease, and
        // deleted the key before the lease was taken, forgets that entry after; recorded anew
        // (a new score), the entry outlives the forgetting, and covers a TTL that `ttl_from`
        // chose longer than the call's.
        if matches!(lease, Lease::Held(_) | Lease::Off) {
            let covered = if self.held_back(&call.key, &call.fresh.tags) {
                Ok(false)
            } else {
                self.index(mode, call, store_ttl).await
            };
            if !matches!(covered, Ok(true)) {
                leader.share(unverified(json));
                // Dropped unfinished: the keeper gives the lease back.
                drop(guard);
                return covered.map(drop);
            }
        }
        let checked = !self.config.unchecked_lease_writes;
        let written = match &lease {
            Lease::Held(token) if checked => {
                self.backend
                    .set_if(mode, &call.key, token, &json, store_ttl)
                    .await
            }
            Lease::Held(_) | Lease::Off => self
                .backend
                .set(mode, &call.key, &json, store_ttl)
                .await
                .map(|()| true),
            Lease::Unavailable | Lease::Uncached => {
                leader.share(unverified(json));
                return Ok(());
            }
        };
        // The lease is the holder's to hand back unless the write settled it: after a failed
        // write, dropping the guard has the keeper delete it (deletions pass an open breaker).
        if let (Some(guard), Ok(_)) = (guard, &written) {
            guard.finish();
        }
        if written.is_ok() {
            self.changed(&call.key, false);
        }
        match written {
            Ok(true) => {
                Counters::add(&self.counters.sets, 1);
                telemetry::sets(call.template, 1);
                call.debug(format_args!(
                    "Cached result for {} (TTL: {})",
                    call.key,
                    format_ttl(ttl.unwrap_or(call.ttl))
                ));
                // Followers put a verified value in their near cache for the call's TTL:
                // not for one `ttl_from` chose, which they do not know.
                let verified = matches!(lease, Lease::Held(_)) && checked && ttl.is_none();
                // Even a value the compare-and-set let in is only as fresh as the data it was
                // computed from: an invalidation that began meanwhile (counted, its deletion
                // still to come) turns away the followers that arrived after it.
                leader.share(SharedValue {
                    json: json.into(),
                    fresh_as_of: computed_from,
                    written: verified,
                });
            }
            Ok(false) => {
                // The lease is gone: an invalidation ran during the computation, so the value
                // may be stale. The caller gets it (its call began before the invalidation);
                // the store and the followers do not: they start over.
                call.debug(format_args!(
                    "Not cached: {} was invalidated during the computation in {}",
                    call.key, call.name
                ));
            }
            Err(e) => {
                self.fault(call, "cache write", e)?;
                leader.share(unverified(json));
            }
        }
        Ok(())
    }

    /// A computation of the call's template took `took`: kept as its δ (a moving average,
    /// so one slow outlier does not set it alone).
    pub(crate) fn learn(&self, call: &Call<'_>, took: Duration) {
        if call.fresh.early_refresh <= 0.0 {
            return;
        }
        let mut deltas = self.deltas.lock().unwrap_or_else(|e| e.into_inner());
        match deltas.get_mut(call.template) {
            Some(d) => *d = (*d * 7 + took) / 8,
            None => {
                if deltas.len() >= MAX_DELTAS {
                    // Any one: a template forgotten is learnt again on its next computation.
                    if let Some(gone) = deltas.keys().next().cloned() {
                        deltas.remove(&gone);
                    }
                }
                deltas.insert(call.template.to_owned(), took);
            }
        }
    }

    /// XFetch on a hit with `left` to live in the store: refresh now when
    /// `δ·(5/4 + β·(−ln u)) + 10 ms ≥` the time left before the TTL, `δ` the template's recent
    /// computation time in this process (no refresh before one was seen), `u` uniform in
    /// (0, 1] and drawn once per value and process ([`version_draw`]).
    ///
    /// Two departures from the paper's `δ·β·(−ln u)` with a draw per read. A draw per read
    /// makes the refresh come earlier the more a key is read (the earliest of n draws comes
    /// about `δ·β·ln n` before the expiry: at 200,000 hits a second, β = 1 and δ = 50 ms,
    /// 460 ms before a 1 s TTL ran out, 1.85 computations per TTL); one draw per value makes
    /// it `δ·β` on average whatever the traffic, and `δ·β·ln p` with p processes. And the
    /// refresh starts at least `5/4·δ + 10 ms` before the expiry, so that it lands before
    /// the value expires (a value that expired under its readers would make them wait), with
    /// room for the lock's and the write's round trips and a busy machine's scheduling.
    ///
    /// The caller drawn takes the key's refresh lock (`SET NX` on a side key, for a lease
    /// time), so one caller across all processes refreshes while everyone else keeps
    /// reading the current value.
    async fn early(&self, mode: Mode, call: &Call<'_>, left: Option<Duration>) -> Option<Refresh> {
        let beta = call.fresh.early_refresh;
        // A sliding read pushes the expiry the draw would race: nothing to refresh early.
        if beta <= 0.0 || call.control.sliding {
            return None;
        }
        let left = left?;
        let fresh_left = left.checked_sub(call.fresh.window())?;
        // A value written just now is never refreshed: the write's age check below must
        // tell it from one written again after an invalidation.
        if left + AGING_SLACK * 2 >= call.store_ttl() {
            return None;
        }
        let delta = self.delta(call)?;
        let expires_ms =
            process_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
        let draw = -version_draw(&call.key, expires_ms).ln();
        let gap = delta.as_secs_f64() * (1.25 + beta * draw) + REFRESH_SLACK.as_secs_f64();
        if gap < fresh_left.as_secs_f64() {
            return None;
        }
        self.take_refresh(mode, call, left).await
    }

    /// Whether this caller may try the refresh lock of `key`: not while another caller of
    /// this process holds it or lately found it held elsewhere. A claim lasts a lease time,
    /// cut by [`finish_refresh`](Self::finish_refresh) to the template's δ (50 ms if none
    /// was seen) after the write; one that found the lock held elsewhere lasts δ, after
    /// which the lock is worth another look.
    fn claim_refresh(&self, call: &Call<'_>) -> bool {
        let now = Instant::now();
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = claims.get(&call.key) {
            if *until > now {
                return false;
            }
        }
        if claims.len() >= MAX_CLAIMS && !claims.contains_key(&call.key) {
            claims.retain(|_, until| *until > now);
            if claims.len() >= MAX_CLAIMS {
                return true;
            }
        }
        claims.insert(call.key.clone(), now + self.config.lease_ttl);
        true
    }

    /// The claim of `key` ends at `until` (`None`: now).
    fn end_claim(&self, key: &str, until: Option<Instant>) {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        match until {
            Some(until) => {
                if let Some(u) = claims.get_mut(key) {
                    *u = until;
                }
            }
            None => {
                claims.remove(key);
            }
        }
    }

    /// Takes the key's refresh lock (`SET NX` on a side key, for a lease time), so that one
    /// caller across all processes refreshes while everyone else keeps reading the current
    /// value; `left` is the value's time to live in the store as read.
    async fn take_refresh(&self, mode: Mode, call: &Call<'_>, left: Duration) -> Option<Refresh> {
        let (prefix, rest) = call.key.split_once(':')?;
        if !self.claim_refresh(call) {
            return None;
        }
        let lock = format!("{prefix}:[refresh]:{rest}");
        let token = lease_token();
        match self
            .backend
            .set_nx(mode, &lock, &token, self.config.lease_ttl)
            .await
        {
            Ok(true) => {
                call.debug(format_args!("REFRESH of {}", call.key));
                Some(Refresh {
                    lock,
                    token,
                    left,
                    read_at: Instant::now(),
                    ttl: None,
                })
            }
            Ok(false) => {
                let hold = self.delta(call).unwrap_or(DEFAULT_DELTA);
                self.end_claim(
                    &call.key,
                    Some(Instant::now() + hold.min(self.config.lease_ttl)),
                );
                None
            }
            Err(e) => {
                self.end_claim(&call.key, None);
                let _ = self.fault(call, "cache refresh lock", e);
                None
            }
        }
    }

    /// Writes an early refresh's value, only while the key still holds the bytes it
    /// refreshed and has not been written since (its `PTTL` no longer than it would be):
    /// an invalidation during the computation deletes the key, so the write does not land,
    /// as a lease holder's would not. A value declined by the call's conditions takes the
    /// old one out (as a [forced refresh](Self::finish_forced) does); nothing is written
    /// while the cache is switched off. Then gives the refresh lock back.
    pub(crate) async fn finish_refresh(
        &self,
        mode: Mode,
        call: &Call<'_>,
        refresh: Refresh,
        old: &[u8],
        outcome: &Outcome,
    ) {
        let store_ttl = call.store_ttl_for(refresh.ttl);
        match outcome {
            Outcome::Declined(_) => {
                if let Err(e) = self.delete_declined(mode, call, old).await {
                    call.served.fault();
                    self.report_fault("cache write", call.template, &call.key, &e);
                }
            }
            Outcome::Value(json) if self.is_enabled() => {
                self.write_refresh(mode, call, &refresh, old, json, store_ttl)
                    .await
            }
            // Not written (`max_value_bytes`, or a value JSON would change): the old value
            // stays until its TTL.
            Outcome::Unstorable(_) => Counters::add(&self.counters.unstorable, 1),
            _ => {}
        }
        if let Err(e) = self
            .backend
            .delete_if(mode, &refresh.lock, &refresh.token)
            .await
        {
            self.report_fault("cache refresh lock", call.template, &refresh.lock, &e);
        }
        // Held a moment more: a caller that read the old value just before the write would
        // otherwise draw, lock and compute a refresh whose write is refused (the value
        // changed); it reads the old value it has instead.
        let hold = self.delta(call).unwrap_or(DEFAULT_DELTA);
        self.end_claim(
            &call.key,
            Some(Instant::now() + hold.min(self.config.lease_ttl)),
        );
    }

    /// The template's δ in this process, if one was learnt.
    fn delta(&self, call: &Call<'_>) -> Option<Duration> {
        self.deltas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(call.template)
            .copied()
    }

    /// An early refresh's write: see [`finish_refresh`](Self::finish_refresh).
    async fn write_refresh(
        &self,
        mode: Mode,
        call: &Call<'_>,
        refresh: &Refresh,
        old: &[u8],
        json: &[u8],
        store_ttl: Duration,
    ) {
        {
            // The tag entries first, as before a lease: they outlive the new value. Nothing
            // while an invalidation that names the key is queued.
            if self.held_back(&call.key, &call.fresh.tags) {
                return;
            }
            if let Ok(true) = self.index(mode, call, store_ttl).await {
                let max_left = refresh.left.saturating_sub(refresh.read_at.elapsed()) + AGING_SLACK;
                let written = if self.config.unchecked_lease_writes {
                    // The tests' negative control: a plain write.
                    self.backend
                        .set(mode, &call.key, json, store_ttl)
                        .await
                        .map(|()| true)
                } else {
                    self.backend
                        .set_if_aging(mode, &call.key, old, max_left, json, store_ttl)
                        .await
                };
                match written {
                    Ok(true) => {
                        Counters::add(&self.counters.sets, 1);
                        Counters::add(&self.counters.early_refreshes, 1);
                        telemetry::sets(call.template, 1);
                        self.changed(&call.key, false);
                    }
                    Ok(false) => call.debug(format_args!(
                        "Early refresh of {} not stored: the key changed or was invalidated meanwhile",
                        call.key
                    )),
                    Err(e) => {
                        call.served.fault();
                        self.report_fault("cache refresh", call.template, &call.key, &e)
                    }
                }
            }
        }
    }

    /// A refresh's new value is not to be stored ([`Outcome::Declined`]): the `old` bytes it
    /// was to replace go too, only while the key still holds them. The store's error, for
    /// the caller to handle.
    async fn delete_declined(&self, mode: Mode, call: &Call<'_>, old: &[u8]) -> Result<()> {
        if self.backend.delete_if(mode, &call.key, old).await? {
            self.changed(&call.key, false);
            call.debug(format_args!(
                "Deleted {}: its refreshed value is not to be stored",
                call.key
            ));
        }
        Ok(())
    }

    /// Ends a call that computed: stores a leader's or a refresh's value (see
    /// [`finish`](Self::finish), [`finish_refresh`](Self::finish_refresh),
    /// [`finish_forced`](Self::finish_forced)). One non-generic step for every cached
    /// function, whatever it began as.
    pub(crate) async fn settle(
        &self,
        mode: Mode,
        call: &Call<'_>,
        begun: Begin<'_>,
        outcome: Option<Outcome>,
    ) -> Result<()> {
        match (begun, outcome) {
            (Begin::Lead(ticket), Some(outcome)) => self.finish(mode, call, ticket, outcome).await,
            (Begin::Force(old, ttl), Some(outcome)) => {
                self.finish_forced(mode, call, &old, outcome, ttl).await
            }
            (Begin::Refresh(old, refresh), Some(outcome)) => {
                self.finish_refresh(mode, call, refresh, &old, &outcome)
                    .await;
                Ok(())
            }
            _ => Ok(()),
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
        let Some(skip) = self.skip(call) else {
            return false;
        };
        let c = &self.counters;
        if skip == Served::Unavailable {
            Counters::add(&c.held_back, 1);
            call.debug(format_args!(
                "Computing {} without the cache: an invalidation that names it is queued",
                call.key
            ));
        } else if skip == Served::Disabled {
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
    fn skip(&self, call: &Call<'_>) -> Option<Served> {
        if !self.is_enabled() {
            Some(Served::Disabled)
        } else if call.control.bypass {
            Some(Served::Bypassed)
        } else if self.held_back(&call.key, &call.fresh.tags) {
            Some(Served::Unavailable)
        } else {
            None
        }
    }

    /// A forced refresh ([`Control::refresh`]): puts the new value in place of the `old`
    /// bytes, only while the key still holds them: an invalidation during the computation
    /// deletes them, and the write does not land (as a lease would have made it). A value
    /// declined by the call's conditions takes the old one out the same way; a failed
    /// computation leaves it. Unlike an [early refresh](Self::finish_refresh), it takes
    /// no lock: every forced call computes, and the last write wins.
    pub(crate) async fn finish_forced(
        &self,
        mode: Mode,
        call: &Call<'_>,
        old: &[u8],
        outcome: Outcome,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let store_ttl = call.store_ttl_for(ttl);
        let json = match outcome {
            Outcome::Value(json) if self.is_enabled() => json,
            Outcome::Declined(_) => {
                if let Err(e) = self.delete_declined(mode, call, old).await {
                    self.fault(call, "cache write", e)?;
                }
                return Ok(());
            }
            Outcome::Unstorable(e) => {
                Counters::add(&self.counters.unstorable, 1);
                if self.rare.allow("unstorable", call.template).is_some() {
                    log::warn!(target: "cacheable", "not caching the value computed for {} in {}: {}", call.key, call.name, chain(&e));
                }
                return Ok(());
            }
            Outcome::Value(_) | Outcome::Failed => return Ok(()),
        };
        // Not while an invalidation that names the key is queued. The tag entries first, as
        // before a lease: they outlive the new value. A store that failed here (reported)
        // keeps the value out: a tag would not find it.
        if self.held_back(&call.key, &call.fresh.tags) || !self.index(mode, call, store_ttl).await?
        {
            return Ok(());
        }
        match self
            .backend
            .set_if(mode, &call.key, old, &json, store_ttl)
            .await
        {
            Ok(true) => {
                self.changed(&call.key, false);
                Counters::add(&self.counters.sets, 1);
                telemetry::sets(call.template, 1);
                call.debug(format_args!(
                    "Refreshed {} (TTL: {})",
                    call.key,
                    format_ttl(ttl.unwrap_or(call.ttl))
                ));
            }
            Ok(false) => call.debug(format_args!(
                "Not cached: {} changed or was invalidated during the refresh in {}",
                call.key, call.name
            )),
            Err(e) => self.fault(call, "cache write", e)?,
        }
        Ok(())
    }

    /// Records the key in its tag sets for a value that lives `store_ttl` in the store:
    /// before the lease is asked for, so that a tag invalidation that begins once the lease
    /// is held finds the key and deletes the lease with it (the holder's compare-and-set
    /// then fails, as after a key invalidation); again right before the value is written
    /// (see [`finish`](Self::finish)), and before a sliding read pushes the key's expiry. An entry lives as long as the value can: the lease wait, the longest a
    /// lease is held, then `store_ttl` (an entry already there with a later expiry keeps
    /// it). False (reported) when the store failed: the value must then not be written, nor
    /// its expiry pushed, since a tag invalidation would not find it.
    async fn index(&self, mode: Mode, call: &Call<'_>, store_ttl: Duration) -> Result<bool> {
        if call.fresh.tags.is_empty() {
            return Ok(true);
        }
        let c = &self.config;
        let life = c.lease_wait + c.lease_ttl.saturating_mul(MAX_HOLD) + store_ttl;
        for set in &call.fresh.tags {
            if let Err(e) = self.backend.tag_add(mode, set, &call.key, life).await {
                self.fault(call, "cache tag", e)?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Takes the key's lease, or waits (with backoff, up to `lease_wait`) for its holder's
    /// value. A caller waits behind one holder at most: if the holder it saw goes away, it
    /// tries once to take the lease over, and computes without caching if another caller
    /// got there first.
    async fn acquire(
        self: &Arc<Core>,
        mode: Mode,
        call: &Call<'_>,
        mut stale: Option<Vec<u8>>,
    ) -> Result<Acquired> {
        let config = &self.config;
        let backend = &self.backend;
        let host: Host = self.clone();
        let token = lease_token();
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        // The holder this caller waits on, and when it first saw it: the lease expires at
        // the latest `lease_ttl` later, and a poll is due then, so that a holder that died
        // costs the lease time and not a poll interval more.
        let mut seen: Option<(Vec<u8>, Instant)> = None;
        let mut taking_over = false;
        loop {
            // A request that fails or is dropped in flight may still land: the keeper then
            // looks for the lease and gives it back.
            let pending = Pending::new(
                &host,
                &call.key,
                &token,
                config.lease_ttl,
                config.op_timeout,
            );
            let old = stale.take();
            let taken = match &old {
                Some(old) => {
                    backend
                        .set_if(mode, &call.key, old, &token, config.lease_ttl)
                        .await
                }
                None => {
                    backend
                        .set_nx(mode, &call.key, &token, config.lease_ttl)
                        .await
                }
            };
            match &taken {
                Ok(_) => pending.settle(),
                Err(e) if e.never_sent() => pending.settle(),
                Err(_) => drop(pending),
            }
            match taken {
                Ok(true) => {
                    return Ok(match old {
                        Some(old) => Acquired::Replaced(token, old),
                        None => Acquired::Lease(Lease::Held(token)),
                    })
                }
                Ok(false) if taking_over => {
                    call.debug(format_args!(
                        "Computing {} without caching: the computation it waited on went away and another caller took over",
                        call.key
                    ));
                    return Ok(Acquired::Lease(Lease::Uncached));
                }
                Ok(false) => {}
                Err(e) => {
                    self.fault(call, "cache lease", e)?;
                    return Ok(Acquired::Lease(Lease::Unavailable));
                }
            }
            let expiry = match backend.get(mode, &call.key).await {
                Ok(raw) => match Entry::classify(raw) {
                    Entry::Value(json) if self.oversized(call, &json) => {
                        // The holder (another process, with another bound or none) wrote
                        // more than this cache serves: take the key over and replace it,
                        // as a caller that read it first would.
                        stale = Some(json);
                        None
                    }
                    Entry::Value(json) => return Ok(Acquired::Found(json)),
                    Entry::Failed(_) if seen.is_some() => return Ok(Acquired::Failed),
                    Entry::Failed(marker) => {
                        // A failure from before this caller came: take the key over.
                        stale = Some(marker);
                        None
                    }
                    Entry::Missing => {
                        // The holder it waited on gave up, failed or died.
                        taking_over = seen.is_some();
                        None
                    }
                    // A retried `SET NX` whose first attempt went through finds its own lease.
                    Entry::Leased(holder) if holder == token => {
                        return Ok(Acquired::Lease(Lease::Held(token)))
                    }
                    Entry::Leased(holder) => match &seen {
                        Some((h, _)) if *h != holder => {
                            call.debug(format_args!(
                                "Computing {} without caching: the computation it waited on went away and another caller took over",
                                call.key
                            ));
                            return Ok(Acquired::Lease(Lease::Uncached));
                        }
                        Some((_, at)) => Some(*at + config.lease_ttl),
                        None => {
                            telemetry::lease_waits(call.template, 1);
                            let now = Instant::now();
                            seen = Some((holder, now));
                            Some(now + config.lease_ttl)
                        }
                    },
                },
                Err(e) => {
                    self.fault(call, "cache read", e)?;
                    return Ok(Acquired::Lease(Lease::Unavailable));
                }
            };
            let waited = started.elapsed();
            if waited >= config.lease_wait {
                log::warn!(target: "cacheable", "{} stayed leased for {} ms: computing without caching", call.key, waited.as_millis());
                return Ok(Acquired::Lease(Lease::Uncached));
            }
            if let Some(expiry) = expiry {
                let mut nap = pause.min(config.lease_wait - waited);
                let until_expiry = expiry.saturating_duration_since(Instant::now());
                if !until_expiry.is_zero() {
                    // A millisecond past it: Redis expires keys at millisecond precision.
                    nap = nap.min(until_expiry + Duration::from_millis(1));
                }
                mode.sleep(nap).await;
                pause = (pause * 2).min(MAX_LEASE_POLL);
            }
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
            ("lease keeper (all caches)", crate::lease::kept()),
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
impl Core {
    /// A stored value over the bound: counted as an error and logged (a line a second per
    /// template), so that the caller computes and replaces it.
    fn oversized(&self, call: &Call<'_>, bytes: &[u8]) -> bool {
        match self.config.max_value_bytes {
            Some(max) if bytes.len() > max => {
                let e = Error::new(
                    ErrorKind::Deserialize,
                    format!(
                        "the stored value has {} bytes, over max_value_bytes ({max})",
                        bytes.len()
                    ),
                );
                self.report_fault("oversized value", call.template, &call.key, &e);
                true
            }
            _ => false,
        }
    }

    /// A computed value whose stored form is over the bound is not stored: the caller still
    /// gets it, and it is counted and logged as unstorable.
    fn bounded(&self, outcome: Outcome) -> Outcome {
        match (outcome, self.config.max_value_bytes) {
            (Outcome::Value(bytes), Some(max)) if bytes.len() > max => {
                Outcome::Unstorable(Error::new(
                    ErrorKind::Serialize,
                    format!(
                        "its stored form has {} bytes, over max_value_bytes ({max})",
                        bytes.len()
                    ),
                ))
            }
            (outcome, _) => outcome,
        }
    }
}

/// What an early refresh answers: the computed value, or, if the computation failed, the
/// value it refreshed (a hit within its TTL; a stale answer when it was revalidating one
/// past it).
fn refreshed<T: CacheValue, E>(
    call: &Call<'_>,
    refresh: &Refresh,
    out: Result<T, E>,
    old: &[u8],
) -> Result<T, E> {
    match out {
        Err(e) => match codec::decode::<T>(old) {
            Ok(v) => {
                let past = call.past_ttl(Some(refresh.left));
                call.served
                    .set(if past { Served::Stale } else { Served::Hit });
                Ok(v)
            }
            Err(_) => Err(e),
        },
        ok => ok,
    }
}

/// A failed computation's `Err`, or the value past its TTL the call saw, when it has a
/// stale-if-error window.
fn or_stale<T: CacheValue, E>(
    core: &Core,
    call: &Call<'_>,
    state: &CallState,
    out: Result<T, E>,
) -> Result<T, E> {
    match out {
        Err(e) => core.stale_answer(call, state).ok_or(e),
        ok => ok,
    }
}

/// What a call that computed answers with: see [`refreshed`] and [`or_stale`]; a forced
/// refresh answers with what it computed, `Err` included.
fn answer<T: CacheValue, E>(
    core: &Core,
    call: &Call<'_>,
    state: &CallState,
    begun: &Begin<'_>,
    out: Result<T, E>,
) -> Result<T, E> {
    match begun {
        Begin::Refresh(old, refresh) => refreshed(call, refresh, out, old),
        Begin::Force(..) => out,
        Begin::Lead(_) | Begin::Alone | Begin::Hit(..) => or_stale(core, call, state, out),
    }
}

/// The near cache's value for the call, unless the call must go to the store: a forced
/// refresh reads the stored bytes it will replace, a sliding read pushes the expiry kept
/// there (a near hit makes no round trip, so it could not), and early refresh draws on
/// every read of the store, where the expiry is. Nor for a call that skips the cache
/// ([`Core::skips`] counts it, in [`read_through`]).
///
/// Every read-through's first step, taken by its callers rather than by [`read_through`]
/// itself, and inlined into them: the value is then cloned near where the caller returns
/// it, not copied out through each layer (three copies of the value fewer per hit).
#[inline(always)]
pub(crate) fn near_read<T: CacheValue>(core: &Core, call: &Call<'_>) -> Option<T> {
    if call.control.refresh
        || call.control.sliding
        || call.fresh.early_refresh > 0.0
        || core.skip(call).is_some()
    {
        return None;
    }
    core.near_hit::<T>(call)
}

/// What a value decoded from `bytes` weighs in the near cache: see [`codec::weight`].
fn weight<T>(bytes: &[u8]) -> usize {
    codec::weight(bytes) + std::mem::size_of::<T>()
}

/// The computed value, for the call's conditions.
fn as_any<T: CacheValue, E>(out: &Result<T, E>) -> Option<&dyn Any> {
    out.as_ref().ok().map(|v| v as &dyn Any)
}

/// The stored form of what a leading or refreshing caller computed, vetted by the call's
/// conditions; `None` for a caller that stores nothing.
fn encoded<T: CacheValue, E>(
    core: &Core,
    call: &Call<'_>,
    begun: &mut Begin<'_>,
    out: &Result<T, E>,
) -> Option<Outcome> {
    let ttl = match begun {
        Begin::Lead(ticket) => &mut ticket.ttl,
        Begin::Force(_, ttl) => ttl,
        Begin::Refresh(_, refresh) => &mut refresh.ttl,
        Begin::Hit(..) | Begin::Alone => return None,
    };
    Some(core.outcome(out).vetted(core, call, as_any(out), ttl))
}

/// Read-through, blocking: the cached value, or `compute`'s, stored unless an invalidation
/// ran while it was computed. The outer `Err` only comes in strict mode. Its callers try
/// [`near_read`] first.
pub(crate) fn read_through<T, E>(
    core: &Arc<Core>,
    call: &Call<'_>,
    compute: impl FnOnce() -> Result<T, E>,
) -> Result<Result<T, E>>
where
    T: CacheValue,
{
    let skip = core.skips(call);
    // Taken before the store is read: a change that comes after holds the value back.
    let near_ticket = core.near.as_ref().map(|n| n.ticket(&call.key));
    let mut state = CallState::default();
    let mut begun = loop {
        if skip {
            break Begin::Alone;
        }
        match block_on(core.begin(Mode::Blocking, call, &mut state))? {
            Begin::Hit(bytes, source, left) => match codec::decode::<T>(&bytes) {
                Ok(v) => {
                    core.hit(call, &mut state, source);
                    if let (Some(near), Some(ticket), Some(left)) = (&core.near, near_ticket, left)
                    {
                        near.insert(ticket, &call.key, v.clone(), weight::<T>(&bytes), left);
                    }
                    return Ok(Ok(v));
                }
                Err(e) => core.undecodable(call, &mut state, bytes, &e, std::any::type_name::<T>()),
            },
            begun => break core.computes(call, &mut state, begun),
        }
    };
    let started = Instant::now();
    let out = {
        let _computing = Computing::enter(core, &call.key);
        let timer = telemetry::Timer::start();
        let out = compute();
        timer.observe(call.template);
        out
    };
    if !skip {
        core.learn(call, started.elapsed());
    }
    let outcome = encoded(core, call, &mut begun, &out);
    let out = answer(core, call, &state, &begun, out);
    block_on(core.settle(Mode::Blocking, call, begun, outcome))?;
    Ok(out)
}

/// Async twin of [`read_through`]. Any executor can drive it: store calls and timers run
/// on the crate's own runtime.
pub(crate) async fn read_through_async<T, E, F, Fut>(
    core: &Arc<Core>,
    call: &Call<'_>,
    compute: F,
) -> Result<Result<T, E>>
where
    T: CacheValue,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let skip = core.skips(call);
    // Taken before the store is read: a change that comes after holds the value back.
    let near_ticket = core.near.as_ref().map(|n| n.ticket(&call.key));
    let mut state = CallState::default();
    let mut begun = loop {
        if skip {
            break Begin::Alone;
        }
        match core.begin(Mode::Async, call, &mut state).await? {
            Begin::Hit(bytes, source, left) => match codec::decode::<T>(&bytes) {
                Ok(v) => {
                    core.hit(call, &mut state, source);
                    if let (Some(near), Some(ticket), Some(left)) = (&core.near, near_ticket, left)
                    {
                        near.insert(ticket, &call.key, v.clone(), weight::<T>(&bytes), left);
                    }
                    return Ok(Ok(v));
                }
                Err(e) => core.undecodable(call, &mut state, bytes, &e, std::any::type_name::<T>()),
            },
            begun => break core.computes(call, &mut state, begun),
        }
    };
    let started = Instant::now();
    // Polled with the key marked as being computed, for the length of each poll, so that a
    // cached call awaited inside it sees the mark. A `poll_fn` here rather than an `async
    // fn` of its own: one state machine fewer for each cached function to compile.
    let mut fut = std::pin::pin!(compute());
    let timer = telemetry::Timer::start();
    let out = std::future::poll_fn(|cx| {
        let _computing = Computing::enter(core, &call.key);
        fut.as_mut().poll(cx)
    })
    .await;
    timer.observe(call.template);
    if !skip {
        core.learn(call, started.elapsed());
    }
    let outcome = encoded(core, call, &mut begun, &out);
    let out = answer(core, call, &state, &begun, out);
    // Boxed: a miss's write, kept off the future that every hit builds and moves.
    Box::pin(core.settle(Mode::Async, call, begun, outcome)).await?;
    Ok(out)
}
