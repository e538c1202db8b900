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

use crate::backend::{block_on, failed_marker, Backend, Mode, Stored, FAILED_TTL, LEASE_PREFIX};
use crate::codec;
use crate::codec::CacheValue;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::flight::{Done, Flights, Leader, Role, SharedValue};
use crate::lease::{Host, LeaseGuard, LeaseHost, Pending};
use crate::near::NearCache;
use crate::outcome::Outcome as Served;
use crate::report::{chain, debug_line, format_ttl, Throttle};
use crate::stats::Counters;
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
    /// The run-time switch ([`Cache::disable`](crate::Cache::disable)): while off, cached
    /// calls compute and neither read nor write.
    pub(crate) enabled: AtomicBool,
}

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
    /// The per-call controls (refresh, bypass, conditions, sliding expiry).
    pub control: Control<'a>,
    /// What the call did, filled in as it goes.
    pub served: ServedCell,
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
    /// [`Control::refresh`]: a value is stored (these bytes); compute a new one and put it in
    /// their place with [`Core::finish_refresh`], with the TTL `ttl_from` chose, if any.
    Refresh(Vec<u8>, Option<Duration>),
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
    pub(crate) fn of<T: CacheValue, E>(out: &Result<T, E>) -> Outcome {
        match out {
            Ok(v) => match codec::encode_checked(v) {
                Ok(bytes) => Outcome::Value(bytes),
                Err(e) => Outcome::Unstorable(e),
            },
            Err(_) => Outcome::Failed,
        }
    }

    /// [`Outcome::of`], then the call's conditions on the value: declined, or stored with
    /// the TTL that [`Control::ttl_from`] chose. Not generic: the value comes as `&dyn Any`.
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
    pub(crate) fn new(config: Config, backend: Backend, near: Option<Arc<NearCache>>) -> Core {
        Core {
            config,
            backend,
            counters: Counters::default(),
            flights: Flights::default(),
            near,
            faults: Throttle::new(Duration::from_secs(1)),
            rare: Throttle::new(RARE_LOG_INTERVAL),
            enabled: AtomicBool::new(true),
        }
    }

    /// Counts a fault met on a fail-open path and logs it, at most one line a second for
    /// each kind of fault on each key template.
    pub(crate) fn report_fault(&self, what: &'static str, template: &str, key: &str, err: &Error) {
        Counters::add(&self.counters.errors, 1);
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
            Err(e)
        } else {
            self.report_fault(what, call.template, &call.key, &e);
            Ok(())
        }
    }

    fn count(&self, state: &mut CallState, hit: bool) {
        if !std::mem::replace(&mut state.counted, true) {
            let c = &self.counters;
            Counters::add(if hit { &c.hits } else { &c.misses }, 1);
        }
    }

    /// The decoded value the near cache holds for the call's key, counted.
    fn near_hit<T: CacheValue>(&self, call: &Call<'_>) -> Option<T> {
        let v = self.near.as_ref()?.get::<T>(&call.key)?;
        let c = &self.counters;
        Counters::add(&c.hits, 1);
        Counters::add(&c.near_hits, 1);
        call.debug(format_args!("NEAR HIT for {}", call.key));
        call.served.set(Served::Hit);
        Some(v)
    }

    /// `key` was written or deleted by this process: the near cache drops it now, rather
    /// than when Redis's invalidation arrives.
    pub(crate) fn changed(&self, key: &str, glob: bool) {
        if let Some(near) = &self.near {
            if glob {
                near.invalidate_pattern(key);
            } else {
                near.invalidate(key);
            }
        }
    }

    /// The caller decoded a hit.
    pub(crate) fn hit(&self, call: &Call<'_>, state: &mut CallState, source: Source) {
        if source == Source::Store {
            self.count(state, true);
            call.served.set(Served::Hit);
            if call.control.sliding {
                Counters::add(&self.counters.sliding_hits, 1);
                call.debug(format_args!(
                    "HIT for {} (expiry pushed to {} from now)",
                    call.key,
                    format_ttl(call.ttl)
                ));
                return;
            }
            call.debug(format_args!("HIT for {}", call.key));
        }
    }

    /// The caller could not decode these bytes (the stored type changed): they count as a
    /// miss, and the next [`begin`](Self::begin) replaces them.
    pub(crate) fn undecodable(
        &self,
        call: &Call<'_>,
        state: &mut CallState,
        bytes: Vec<u8>,
        err: &serde_json::Error,
        type_name: &str,
    ) {
        Counters::add(&self.counters.decode_errors, 1);
        self.count(state, false);
        log::warn!(target: "cacheable", "the value at {} does not deserialize into {type_name} ({err}); recomputing and replacing it", call.key);
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
            self.count(state, false);
            return Ok(Begin::Alone);
        }
        loop {
            if state.restarts > 3 {
                // A value that keeps changing under this caller, or leaders that keep
                // vanishing: stop chasing it.
                return Ok(Begin::Alone);
            }
            let stale = state.stale.take();
            let read = if call.control.sliding {
                // Pushed to a full TTL just now, if a value.
                let read = self.backend.get_sliding(mode, &call.key, call.ttl).await;
                read.map(|b| (b, Some(call.ttl)))
            } else if self.near.is_some() {
                self.backend.get_with_ttl(mode, &call.key).await
            } else {
                self.backend.get(mode, &call.key).await.map(|b| (b, None))
            };
            let store_ok = match read {
                Ok((raw, left)) => match Stored::classify(raw) {
                    Stored::Value(b) if call.control.refresh && stale.as_ref() != Some(&b) => {
                        Counters::add(&self.counters.refreshes, 1);
                        call.served.set(Served::Refreshed);
                        call.debug(format_args!("REFRESH for {}", call.key));
                        return Ok(Begin::Refresh(b, None));
                    }
                    Stored::Value(b) if stale.as_ref() != Some(&b) => {
                        return Ok(Begin::Hit(b, Source::Store, left))
                    }
                    Stored::Value(b) => {
                        // The bytes that did not decode: taken over below, as a lease.
                        state.stale = Some(b);
                        true
                    }
                    // A failed computation's marker is taken over like a stale value.
                    Stored::Failed(marker) => {
                        state.stale = Some(marker);
                        true
                    }
                    Stored::Missing | Stored::Leased(_) => true,
                },
                Err(e) => {
                    self.fault(call, "cache read", e)?;
                    false
                }
            };
            self.count(state, false);
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
                    return self.lead(mode, call, leader, store_ok, stale).await;
                }
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
        let lease = if !store_ok {
            Lease::Unavailable
        } else if self.config.leases {
            match self.acquire(mode, call, stale).await? {
                Acquired::Lease(lease) => lease,
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
            ttl,
        } = ticket;
        let ttl = ttl.unwrap_or(call.ttl);
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
                let released = match &lease {
                    Lease::Held(token) => {
                        let marker = failed_marker(token);
                        self.backend
                            .set_if(mode, &call.key, token, &marker, FAILED_TTL)
                            .await
                    }
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
        };
        // Followers may take a value written under the lease whatever happened meanwhile
        // (the compare-and-set proved no invalidation ran); any other value, only if no
        // invalidation came between the start of the computation and their arrival.
        let unverified = |json: Vec<u8>| SharedValue {
            json: json.into(),
            fresh_as_of: computed_from,
            written: false,
        };
        let checked = !self.config.unchecked_lease_writes;
        let written = match &lease {
            Lease::Held(token) if checked => {
                self.backend
                    .set_if(mode, &call.key, token, &json, ttl)
                    .await
            }
            Lease::Held(_) | Lease::Off => self
                .backend
                .set(mode, &call.key, &json, ttl)
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
                call.debug(format_args!(
                    "Cached result for {} (TTL: {})",
                    call.key,
                    format_ttl(ttl)
                ));
                // Followers put a verified value in their near cache for the call's TTL:
                // not for one `ttl_from` chose, which they do not know.
                let verified = matches!(lease, Lease::Held(_)) && checked && ttl == call.ttl;
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

    /// Ends a call that computed: stores a leader's or a refresh's value (see
    /// [`finish`](Self::finish), [`finish_refresh`](Self::finish_refresh)). One
    /// non-generic step for every cached function, whatever it began as.
    pub(crate) async fn settle(
        &self,
        mode: Mode,
        call: &Call<'_>,
        begun: Begin<'_>,
        outcome: Option<Outcome>,
    ) -> Result<()> {
        match (begun, outcome) {
            (Begin::Lead(ticket), Some(outcome)) => self.finish(mode, call, ticket, outcome).await,
            (Begin::Refresh(old, ttl), Some(outcome)) => {
                self.finish_refresh(mode, call, &old, outcome, ttl).await
            }
            _ => Ok(()),
        }
    }

    /// Whether the run-time switch is on ([`Cache::enable`](crate::Cache::enable)).
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// True when the call computes without the cache: bypassed, or the cache is switched
    /// off. Counted, logged and recorded as the call's outcome.
    fn skips(&self, call: &Call<'_>) -> bool {
        let c = &self.counters;
        if !self.is_enabled() {
            Counters::add(&c.disabled_calls, 1);
            call.served.set(Served::Disabled);
            call.debug(format_args!(
                "Cache disabled: computing {} without reading or writing it",
                call.key
            ));
            true
        } else if call.control.bypass {
            Counters::add(&c.bypasses, 1);
            call.served.set(Served::Bypassed);
            call.debug(format_args!(
                "BYPASS for {}: computing without reading or writing the cache",
                call.key
            ));
            true
        } else {
            false
        }
    }

    /// Puts a refreshed value in place of the `old` bytes, only while the key still holds
    /// them: an invalidation during the computation deletes them, and the write does not
    /// land (as a lease would have made it). A value declined by the call's conditions
    /// takes the old one out the same way; a failed computation leaves it.
    pub(crate) async fn finish_refresh(
        &self,
        mode: Mode,
        call: &Call<'_>,
        old: &[u8],
        outcome: Outcome,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let ttl = ttl.unwrap_or(call.ttl);
        let written = match outcome {
            Outcome::Value(json) if self.is_enabled() => {
                self.backend.set_if(mode, &call.key, old, &json, ttl).await
            }
            Outcome::Declined(_) => {
                match self.backend.delete_if(mode, &call.key, old).await {
                    Ok(deleted) => {
                        if deleted {
                            self.changed(&call.key, false);
                            call.debug(format_args!(
                                "Deleted {}: its refreshed value is not to be stored",
                                call.key
                            ));
                        }
                    }
                    Err(e) => self.fault(call, "cache write", e)?,
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
        match written {
            Ok(true) => {
                self.changed(&call.key, false);
                Counters::add(&self.counters.sets, 1);
                call.debug(format_args!(
                    "Refreshed {} (TTL: {})",
                    call.key,
                    format_ttl(ttl)
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
            let taken = match stale.take() {
                Some(old) => {
                    backend
                        .set_if(mode, &call.key, &old, &token, config.lease_ttl)
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
                Ok(true) => return Ok(Acquired::Lease(Lease::Held(token))),
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
                Ok(raw) => match Stored::classify(raw) {
                    Stored::Value(json) => return Ok(Acquired::Found(json)),
                    Stored::Failed(_) if seen.is_some() => return Ok(Acquired::Failed),
                    Stored::Failed(marker) => {
                        // A failure from before this caller came: take the key over.
                        stale = Some(marker);
                        None
                    }
                    Stored::Missing => {
                        // The holder it waited on gave up, failed or died.
                        taking_over = seen.is_some();
                        None
                    }
                    // A retried `SET NX` whose first attempt went through finds its own lease.
                    Stored::Leased(holder) if holder == token => {
                        return Ok(Acquired::Lease(Lease::Held(token)))
                    }
                    Stored::Leased(holder) => match &seen {
                        Some((h, _)) if *h != holder => {
                            call.debug(format_args!(
                                "Computing {} without caching: the computation it waited on went away and another caller took over",
                                call.key
                            ));
                            return Ok(Acquired::Lease(Lease::Uncached));
                        }
                        Some((_, at)) => Some(*at + config.lease_ttl),
                        None => {
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

/// The near cache's value for the call, unless the call must go to the store: a refresh
/// reads the stored bytes it will replace, and a sliding read pushes the expiry kept there
/// (a near hit makes no round trip, so it could not).
fn near_read<T: CacheValue>(core: &Core, call: &Call<'_>) -> Option<T> {
    if call.control.refresh || call.control.sliding {
        return None;
    }
    core.near_hit::<T>(call)
}

/// The computed value, for the call's conditions.
fn as_any<T: CacheValue, E>(out: &Result<T, E>) -> Option<&dyn Any> {
    out.as_ref().ok().map(|v| v as &dyn Any)
}

/// Read-through, blocking: the cached value, or `compute`'s, stored unless an invalidation
/// ran while it was computed. The outer `Err` only comes in strict mode.
pub(crate) fn read_through<T, E>(
    core: &Arc<Core>,
    call: &Call<'_>,
    compute: impl FnOnce() -> Result<T, E>,
) -> Result<Result<T, E>>
where
    T: CacheValue,
{
    let skip = core.skips(call);
    if !skip {
        if let Some(v) = near_read::<T>(core, call) {
            return Ok(Ok(v));
        }
    }
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
                        near.insert(ticket, &call.key, v.clone(), left);
                    }
                    return Ok(Ok(v));
                }
                Err(e) => core.undecodable(call, &mut state, bytes, &e, std::any::type_name::<T>()),
            },
            begun => break begun,
        }
    };
    let out = {
        let _computing = Computing::enter(core, &call.key);
        compute()
    };
    let outcome = encoded(core, call, &mut begun, &out);
    block_on(core.settle(Mode::Blocking, call, begun, outcome))?;
    Ok(out)
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
        Begin::Refresh(_, ttl) => ttl,
        Begin::Hit(..) | Begin::Alone => return None,
    };
    Some(Outcome::of(out).vetted(core, call, as_any(out), ttl))
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
    if !skip {
        if let Some(v) = near_read::<T>(core, call) {
            return Ok(Ok(v));
        }
    }
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
                        near.insert(ticket, &call.key, v.clone(), left);
                    }
                    return Ok(Ok(v));
                }
                Err(e) => core.undecodable(call, &mut state, bytes, &e, std::any::type_name::<T>()),
            },
            begun => break begun,
        }
    };
    // Polled with the key marked as being computed, for the length of each poll, so that a
    // cached call awaited inside it sees the mark. A `poll_fn` here rather than an `async
    // fn` of its own: one state machine fewer for each cached function to compile.
    let mut fut = std::pin::pin!(compute());
    let out = std::future::poll_fn(|cx| {
        let _computing = Computing::enter(core, &call.key);
        fut.as_mut().poll(cx)
    })
    .await;
    let outcome = encoded(core, call, &mut begun, &out);
    core.settle(Mode::Async, call, begun, outcome).await?;
    Ok(out)
}
