//! Leading a computation: the in-process flight's leader takes the key's lease in the
//! store (or waits, with backoff, on another process's holder), so that one computation
//! per key runs across processes.

use super::*;

/// Longest pause between two looks at a leased key.
pub(super) const MAX_LEASE_POLL: Duration = Duration::from_millis(50);

/// What a leading caller holds while it computes: the flight (its followers wait on it) and
/// the lease. Dropped without [`Core::finish`] (a panic, a dropped future), it releases both.
pub(crate) struct Lead {
    pub(super) leader: Leader,
    pub(super) lease: Lease,
    /// Renews the lease while the computation runs; gives it back if dropped.
    pub(super) guard: Option<LeaseGuard>,
    /// The flight's invalidation count when the computation started.
    pub(super) computed_from: u64,
    /// What a failed computation puts back in place of its lease (stale-if-error).
    pub(super) restore: Option<Fallback>,
    /// The bytes the lease was put in place of, when it took them over.
    pub(super) replaced: Option<Vec<u8>>,
    /// The TTL [`Control::ttl_from`] chose for the value, in place of the call's.
    pub(super) ttl: Option<Duration>,
}

pub(super) enum Lease {
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

pub(super) enum Acquired {
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

pub(super) fn lease_token() -> Vec<u8> {
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

impl Core {
    pub(super) async fn lead(
        self: &Arc<Core>,
        mode: Mode,
        call: &Call<'_>,
        mut leader: Leader,
        store_ok: bool,
        stale: Option<Vec<u8>>,
    ) -> Result<Begin> {
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
                Acquired::Found(stored) => {
                    leader.share(SharedValue {
                        stored: stored.as_slice().into(),
                        fresh_as_of: before_acquire,
                        written: false,
                    });
                    return Ok(Begin::Hit(stored, Source::Shared, None));
                }
                Acquired::Failed if call.control.share_failures => {
                    call.debug(format_args!(
                        "Answering {} with the failure of the computation it waited on in another process",
                        call.key
                    ));
                    // This process's followers share it too.
                    leader.fail(None);
                    return Ok(Begin::Failed);
                }
                Acquired::Failed => {
                    call.debug(format_args!(
                        "Computing {} alone: the computation it waited on failed in another process",
                        call.key
                    ));
                    // Releases this process's followers to compute side by side too.
                    leader.fail(None);
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
        Ok(Begin::Lead(Lead {
            leader,
            lease,
            guard,
            computed_from,
            restore: None,
            replaced,
            ttl: None,
        }))
    }

    /// Takes the key's lease, or waits (with backoff, up to `lease_wait`) for its holder's
    /// value. A caller waits behind one holder at most: if the holder it saw goes away, it
    /// tries once to take the lease over, and computes without caching if another caller
    /// got there first.
    pub(super) async fn acquire(
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
                    Entry::Value(stored) if self.oversized(call, &stored) => {
                        // The holder (another process, with another bound or none) wrote
                        // more than this cache serves: take the key over and replace it,
                        // as a caller that read it first would.
                        stale = Some(stored);
                        None
                    }
                    Entry::Value(stored) => return Ok(Acquired::Found(stored)),
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
                call.served.waiting(true);
                mode.sleep(nap).await;
                call.served.waiting(false);
                pause = (pause * 2).min(MAX_LEASE_POLL);
            }
        }
    }
}
