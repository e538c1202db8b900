//! The read-through path shared by every finisher, sync and async: read, single-flight in
//! process, a lease across processes, compute, and a write that lands only while the lease
//! is still there.
//!
//! It is written once, as async code over [`Mode`]. In [`Mode::Blocking`] every step
//! completes when first polled (blocking store calls, `thread::sleep`, a condvar wait), so
//! [`block_on`] drives it with a single poll and no runtime.

use crate::error::{Error, Result};
use crate::flight::{Leader, Role, SharedValue};
use crate::lease::{LeaseGuard, Pending};
use crate::manager::Cache;
use crate::stats::Counters;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Marks a key held by a lease. JSON text never starts with a NUL byte, so no cached value
/// can be mistaken for a lease, nor a lease for a value.
pub(crate) const LEASE_PREFIX: &[u8] = b"\0cacheable-lease:";

/// Longest pause between two looks at a leased key.
const MAX_LEASE_POLL: Duration = Duration::from_millis(50);

/// Whether store calls block the thread or are awaited.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Blocking,
    Async,
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

impl Mode {
    pub(crate) async fn sleep(self, d: Duration) {
        match self {
            Mode::Blocking => std::thread::sleep(d),
            Mode::Async => tokio::time::sleep(d).await,
        }
    }
}

/// One read-through call: the full key and the settings in force.
pub(crate) struct Call<'a> {
    pub key: String,
    pub ttl: Duration,
    pub debug: bool,
    /// Store faults are returned as errors (manual `get_or_set`) rather than reported and
    /// answered around (the builders' fail-open finishers).
    pub strict: bool,
    pub name: &'a str,
}

impl Call<'_> {
    fn debug(&self, args: std::fmt::Arguments<'_>) {
        if self.debug {
            crate::cacheable::debug_line(args);
        }
    }
}

/// What the store holds at a key.
enum Read<T> {
    Hit(T, Vec<u8>),
    Missing,
    /// Another caller's computation is under way; the lease marker it holds.
    Leased(Vec<u8>),
    /// A value that no longer deserializes: replaced like a missing one.
    Stale(Vec<u8>),
}

enum Lease<T> {
    /// This caller holds the lease with this marker.
    Held(Vec<u8>),
    /// A value appeared while waiting.
    Found(T, Vec<u8>),
    /// Leases are off: compute and write plainly.
    Off,
    /// The store failed (reported): compute, share, write nothing.
    Unavailable,
    /// Another holder outlasted `lease_wait`: compute without caching.
    TimedOut,
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

impl Cache {
    fn classify<T: DeserializeOwned>(
        &self,
        key: &str,
        raw: Option<Vec<u8>>,
        count: bool,
    ) -> Read<T> {
        let c = &self.inner.counters;
        let read = match raw {
            None => Read::Missing,
            Some(b) if b.starts_with(LEASE_PREFIX) => Read::Leased(b),
            Some(b) => match serde_json::from_slice(&b) {
                Ok(v) => Read::Hit(v, b),
                Err(e) => {
                    Counters::add(&c.decode_errors, 1);
                    log::warn!(target: "cacheable", "the value at {key} does not deserialize into {} ({e}); recomputing and replacing it", std::any::type_name::<T>());
                    Read::Stale(b)
                }
            },
        };
        if count {
            Counters::add(
                if matches!(read, Read::Hit(..)) {
                    &c.hits
                } else {
                    &c.misses
                },
                1,
            );
        }
        read
    }

    /// A fault: an error in strict mode, otherwise counted and logged.
    fn fault(&self, call: &Call<'_>, what: &str, e: Error) -> Result<()> {
        if call.strict {
            Counters::add(&self.inner.counters.errors, 1);
            Err(e)
        } else {
            self.report(what, &call.key, &e);
            Ok(())
        }
    }

    /// Read-through: the cached value, or `compute`'s, stored unless an invalidation ran
    /// while it was computed. The outer `Err` only comes in strict mode.
    pub(crate) async fn fetch<T, E, F, Fut>(
        &self,
        mode: Mode,
        call: &Call<'_>,
        compute: F,
    ) -> Result<Result<T, E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut compute = Some(compute);
        let mut first_read = true;
        loop {
            // Counted once a call: a follower that starts over is still one miss.
            let count = std::mem::replace(&mut first_read, false);
            let (store_ok, stale) = match self.inner.backend.get(mode, &call.key).await {
                Ok(raw) => match self.classify::<T>(&call.key, raw, count) {
                    Read::Hit(v, _) => {
                        call.debug(format_args!("HIT for {}", call.key));
                        return Ok(Ok(v));
                    }
                    Read::Stale(old) => (true, Some(old)),
                    Read::Missing | Read::Leased(_) => (true, None),
                },
                Err(e) => {
                    self.fault(call, "cache read", e)?;
                    (false, None)
                }
            };
            match self.inner.flights.join(&call.key) {
                Role::Follow(flight) => {
                    let joined = flight.invalidations();
                    // The leader may first wait up to `lease_wait` for another process's
                    // lease, then compute: followers allow for both before giving up.
                    let wait = self.inner.config.lease_wait.saturating_mul(2);
                    let shared = match mode {
                        Mode::Blocking => flight.wait(wait),
                        Mode::Async => flight.wait_async(wait).await,
                    };
                    let Some(shared) = shared else {
                        // Bounded like a lease wait: a leader stuck this long (or a cached
                        // function that calls itself with the same key) costs twice
                        // `lease_wait`, then this caller computes without caching.
                        log::warn!(target: "cacheable", "{} stayed in flight for {} ms: computing without caching", call.key, wait.as_millis());
                        let compute = compute.take().expect("a caller computes at most once");
                        return Ok(compute().await);
                    };
                    let fresh = shared
                        .as_ref()
                        .filter(|v| v.fresh_as_of.is_none_or(|read| joined <= read));
                    if let Some(v) = fresh.and_then(|v| serde_json::from_slice(&v.json).ok()) {
                        return Ok(Ok(v));
                    }
                    // The leader failed or vanished, or what it computed may predate an
                    // invalidation that this caller came after. Start over.
                }
                Role::Lead(mut leader) => {
                    call.debug(format_args!("MISS for {}", call.key));
                    let compute = compute.take().expect("a caller leads at most once");
                    return self
                        .lead(mode, call, &mut leader, store_ok, stale, compute)
                        .await;
                }
            }
        }
    }

    async fn lead<T, E, F, Fut>(
        &self,
        mode: Mode,
        call: &Call<'_>,
        leader: &mut Leader<'_>,
        store_ok: bool,
        stale: Option<Vec<u8>>,
        compute: F,
    ) -> Result<Result<T, E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let config = &self.inner.config;
        let backend = &self.inner.backend;
        let before_acquire = leader.invalidations();
        let lease = if !store_ok {
            Lease::Unavailable
        } else if config.leases {
            self.acquire(mode, call, stale).await?
        } else {
            Lease::Off
        };
        if let Lease::Found(v, json) = lease {
            leader.share(SharedValue {
                json: json.into(),
                fresh_as_of: Some(before_acquire),
            });
            return Ok(Ok(v));
        }
        // Kept alive while the computation runs, given back if it panics or is dropped.
        let guard = match &lease {
            Lease::Held(token) => Some(LeaseGuard::hold(self, &call.key, token, config.lease_ttl)),
            _ => None,
        };
        let computed_from = leader.invalidations();
        let out = compute().await;
        let json = match &out {
            Ok(v) => match serde_json::to_vec(v) {
                Ok(json) => Some(json),
                Err(e) => {
                    let e = Error::with_source(
                        crate::ErrorKind::Serialize,
                        "the computed value could not be serialized",
                        e,
                    );
                    self.report("cache write", &call.key, &e);
                    None
                }
            },
            Err(_) => None,
        };
        // Followers may take a value written under the lease whatever happened meanwhile
        // (the compare-and-set proved no invalidation ran); any other value, only if no
        // invalidation came between the start of the computation and their arrival.
        let unverified = |json: Vec<u8>| SharedValue {
            json: json.into(),
            fresh_as_of: Some(computed_from),
        };
        let Some(json) = json else {
            // Nothing to store: give the lease back now, so waiters need not sit out its TTL.
            let released = match &lease {
                Lease::Held(token) => backend.delete_if(mode, &call.key, token).await,
                _ => Ok(false),
            };
            match (guard, released) {
                (Some(guard), Ok(_)) => guard.finish(),
                // Dropped unfinished: the keeper gives the lease back, retrying.
                (_, Err(e)) => self.report("lease release", &call.key, &e),
                (None, Ok(_)) => {}
            }
            return Ok(out);
        };
        let written = match &lease {
            Lease::Held(token) if !config.unchecked_lease_writes => {
                backend
                    .set_if(mode, &call.key, token, &json, call.ttl)
                    .await
            }
            Lease::Held(_) | Lease::Off => backend
                .set(mode, &call.key, &json, call.ttl)
                .await
                .map(|()| true),
            Lease::Unavailable | Lease::TimedOut | Lease::Found(..) => {
                leader.share(unverified(json));
                return Ok(out);
            }
        };
        // The lease is the holder's to hand back unless the write settled it: after a failed
        // write, dropping the guard has the keeper delete it (deletions pass an open breaker).
        if let (Some(guard), Ok(_)) = (guard, &written) {
            guard.finish();
        }
        match written {
            Ok(true) => {
                Counters::add(&self.inner.counters.sets, 1);
                call.debug(format_args!(
                    "Cached result for {} (TTL: {})",
                    call.key,
                    crate::cacheable::format_ttl(call.ttl)
                ));
                let verified = matches!(lease, Lease::Held(_)) && !config.unchecked_lease_writes;
                leader.share(if verified {
                    SharedValue {
                        json: json.into(),
                        fresh_as_of: None,
                    }
                } else {
                    unverified(json)
                });
            }
            Ok(false) => {
                // The lease is gone: an invalidation ran during the computation, so the value
                // may be stale. The caller gets it (its call began before the invalidation);
                // the store and the followers do not.
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
        Ok(out)
    }

    /// Takes the key's lease, or waits (with backoff, up to `lease_wait`) for its holder's
    /// value.
    async fn acquire<T: DeserializeOwned>(
        &self,
        mode: Mode,
        call: &Call<'_>,
        mut stale: Option<Vec<u8>>,
    ) -> Result<Lease<T>> {
        let config = &self.inner.config;
        let backend = &self.inner.backend;
        let token = lease_token();
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        // The other holder's lease, and when this caller first saw it: it expires at the
        // latest `lease_ttl` later, and a poll is due then, so that a holder that died costs
        // the lease time and not a poll interval more.
        let mut seen: Option<(Vec<u8>, Instant)> = None;
        loop {
            // A request that fails or is dropped in flight may still land: the keeper then
            // looks for the lease and gives it back.
            let pending =
                Pending::new(self, &call.key, &token, config.lease_ttl, config.op_timeout);
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
                Ok(true) => return Ok(Lease::Held(token)),
                Ok(false) => {}
                Err(e) => {
                    self.fault(call, "cache lease", e)?;
                    return Ok(Lease::Unavailable);
                }
            }
            let expiry = match backend.get(mode, &call.key).await {
                Ok(raw) => match self.classify::<T>(&call.key, raw, false) {
                    Read::Hit(v, json) => return Ok(Lease::Found(v, json)),
                    Read::Stale(old) => {
                        stale = Some(old);
                        None
                    }
                    Read::Missing => None,
                    // A retried `SET NX` whose first attempt went through finds its own lease.
                    Read::Leased(holder) if holder == token => return Ok(Lease::Held(token)),
                    Read::Leased(holder) => {
                        if seen.as_ref().is_none_or(|(h, _)| *h != holder) {
                            seen = Some((holder, Instant::now()));
                        }
                        seen.as_ref().map(|(_, at)| *at + config.lease_ttl)
                    }
                },
                Err(e) => {
                    self.fault(call, "cache read", e)?;
                    return Ok(Lease::Unavailable);
                }
            };
            let waited = started.elapsed();
            if waited >= config.lease_wait {
                log::warn!(target: "cacheable", "{} stayed leased for {} ms: computing without caching", call.key, waited.as_millis());
                return Ok(Lease::TimedOut);
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
