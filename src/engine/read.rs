//! The read path: the near cache first, then the store; what a read finds decides
//! whether the caller has a hit, leads a computation, follows another's, or computes
//! alone; and the generic shims that decode, compute and encode around the byte-level
//! core (`read_through`, `read_through_async`).

use super::*;

thread_local! {
    /// The keys whose computations are running on this thread's stack: a cached call made
    /// inside a computation that asks for one of them would wait on itself.
    static COMPUTING: RefCell<Vec<(usize, String)>> = const { RefCell::new(Vec::new()) };
}

/// Marks `key` of `core` as being computed on this thread until dropped.
pub(super) struct Computing;

impl Computing {
    pub(super) fn enter(core: &Core, key: &str) -> Computing {
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

pub(super) fn core_id(core: &Core) -> usize {
    core as *const Core as usize
}

pub(super) fn in_computation(core: &Core, key: &str) -> bool {
    let id = core_id(core);
    COMPUTING.with(|c| c.borrow().iter().any(|(c, k)| *c == id && k == key))
}

/// What an early refresh answers: the computed value, or, if the computation failed, the
/// value it refreshed (a hit within its TTL; a stale answer when it was revalidating one
/// past it).
pub(super) fn refreshed<T: CacheValue, E>(
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
                    .set(if past { Outcome::Stale } else { Outcome::Hit });
                Ok(v)
            }
            Err(_) => Err(e),
        },
        ok => ok,
    }
}

/// A failed computation's `Err`, or the value past its TTL the call saw, when it has a
/// stale-if-error window.
pub(super) fn or_stale<T: CacheValue, E>(
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
pub(super) fn answer<T: CacheValue, E>(
    core: &Core,
    call: &Call<'_>,
    state: &CallState,
    begun: &Begin,
    out: Result<T, E>,
) -> Result<T, E> {
    match begun {
        Begin::Refresh(old, refresh) => refreshed(call, refresh, out, old),
        Begin::Force(..) => out,
        Begin::Lead(_) | Begin::Alone | Begin::Hit(..) | Begin::Failed => {
            or_stale(core, call, state, out)
        }
    }
}

/// What a call that shares failures answers when the computation it waited on failed:
/// the value past its TTL it saw, within a stale-if-error window, or that failure, as the
/// caller's error type makes it.
fn shared_failure<T: CacheValue, E>(
    core: &Core,
    call: &Call<'_>,
    state: &CallState,
    failed: fn(Error) -> E,
) -> Result<T, E> {
    Counters::add(&core.counters.shared_failures, 1);
    telemetry::shared_failures(call.template, 1);
    let e = Error::new(
        ErrorKind::ComputationFailed,
        format!(
            "the computation of {} that this call waited on failed",
            call.key
        ),
    );
    or_stale(core, call, state, Err(failed(e)))
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
        || call.control.skip_near
        || call.fresh.early_refresh > 0.0
        || core.skip_reason(call).is_some()
    {
        return None;
    }
    core.near_hit::<T>(call)
}

/// What a value decoded from `bytes` weighs in the near cache: see [`codec::weight`].
pub(super) fn weight<T>(bytes: &[u8]) -> usize {
    codec::weight(bytes) + std::mem::size_of::<T>()
}

/// The computed value, for the call's conditions.
pub(super) fn as_any<T: CacheValue, E>(out: &Result<T, E>) -> Option<&dyn Any> {
    out.as_ref().ok().map(|v| v as &dyn Any)
}

/// The stored form of what a leading or refreshing caller computed, vetted by the call's
/// conditions; `None` for a caller that stores nothing.
pub(super) fn encoded<T: CacheValue, E>(
    core: &Core,
    call: &Call<'_>,
    begun: &mut Begin,
    out: &Result<T, E>,
) -> Option<Computed> {
    let ttl = match begun {
        Begin::Lead(ticket) => &mut ticket.ttl,
        Begin::Force(_, ttl) => ttl,
        Begin::Refresh(_, refresh) => &mut refresh.ttl,
        Begin::Hit(..) | Begin::Alone | Begin::Failed => return None,
    };
    Some(core.outcome(out).vetted(core, call, as_any(out), ttl))
}

/// Read-through, blocking: the cached value, or `compute`'s, stored unless an invalidation
/// ran while it was computed. The outer `Err` only comes in strict mode. Its callers try
/// [`near_read`] first.
pub(crate) fn read_through<T, E>(
    core: &Arc<Core>,
    call: &Call<'_>,
    failed: Option<fn(Error) -> E>,
    compute: impl FnOnce() -> Result<T, E>,
) -> Result<Result<T, E>>
where
    T: CacheValue,
{
    let skip = core.skips(call);
    // Taken before the store is read: a change that comes after holds the value back.
    let near_mark = core.near_mark(call);
    let mut state = CallState::default();
    let mut begun = loop {
        if skip {
            break Begin::Alone;
        }
        match block_on(core.begin(Mode::Blocking, call, &mut state))? {
            Begin::Hit(bytes, source, left) => match codec::decode::<T>(&bytes) {
                Ok(v) => {
                    core.decoded_hit(call, &mut state, source, near_mark, left, &v, &bytes);
                    return Ok(Ok(v));
                }
                Err(e) => core.undecodable(call, &mut state, bytes, &e, std::any::type_name::<T>()),
            },
            Begin::Failed => match failed {
                Some(failed) => return Ok(shared_failure(core, call, &state, failed)),
                None => break Begin::Alone,
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
    call.served.computed(started.elapsed());
    if !skip {
        core.learn(call, started.elapsed());
    }
    let outcome = encoded(core, call, &mut begun, &out);
    let out = answer(core, call, &state, &begun, out);
    block_on(core.settle(Mode::Blocking, call, begun, outcome))?;
    Ok(out)
}

/// Async twin of [`read_through`]. Any executor can drive it: store calls and timers run
/// on the crate's own runtime. `first`: the call's first read of the store, made already
/// with a batch's ([`Core::prefetch`]).
pub(crate) async fn read_through_async<T, E, F, Fut>(
    core: &Arc<Core>,
    call: &Call<'_>,
    first: Option<Prefetched>,
    failed: Option<fn(Error) -> E>,
    detach: Option<fn(Fut) -> Detached<T, E>>,
    compute: F,
) -> Result<Result<T, E>>
where
    T: CacheValue,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    match open(core, call, first, failed).await? {
        Opened::Answered(out) => Ok(out),
        Opened::Compute(computes) => computes.run(core, call, failed, detach, compute).await,
    }
}

/// What a call found before computing: its answer, or what it computes as.
pub(super) enum Opened<T, E> {
    Answered(Result<T, E>),
    Compute(Box<Computes>),
}

/// A call about to compute: as `begun` says, with what its reads saw.
pub(super) struct Computes {
    pub(super) state: CallState,
    pub(super) begun: Begin,
    /// The call skips the cache: nothing learnt of the computation.
    skip: bool,
}

/// The async read-through's first part: reads and decides (a hit, a failure shared, or a
/// computation to run).
async fn open<T: CacheValue, E>(
    core: &Arc<Core>,
    call: &Call<'_>,
    first: Option<Prefetched>,
    failed: Option<fn(Error) -> E>,
) -> Result<Opened<T, E>> {
    let skip = core.skips(call);
    let mut state = CallState::default();
    // Taken before the store is read: a change that comes after holds the value back.
    let near_mark = match first {
        Some(first) => {
            state.first_read = Some(first.read);
            first.mark
        }
        None => core.near_mark(call),
    };
    let begun = loop {
        if skip {
            break Begin::Alone;
        }
        match core.begin(Mode::Async, call, &mut state).await? {
            Begin::Hit(bytes, source, left) => match codec::decode::<T>(&bytes) {
                Ok(v) => {
                    core.decoded_hit(call, &mut state, source, near_mark, left, &v, &bytes);
                    return Ok(Opened::Answered(Ok(v)));
                }
                Err(e) => core.undecodable(call, &mut state, bytes, &e, std::any::type_name::<T>()),
            },
            Begin::Failed => match failed {
                Some(failed) => {
                    return Ok(Opened::Answered(shared_failure(core, call, &state, failed)))
                }
                None => break Begin::Alone,
            },
            begun => break core.computes(call, &mut state, begun),
        }
    };
    Ok(Opened::Compute(Box::new(Computes { state, begun, skip })))
}

impl Computes {
    /// The async read-through's second part: computes, answers, and writes as `begun`
    /// says; detached past the call's soft timeout when `detach` allows it.
    pub(super) async fn run<T, E, F, Fut>(
        self: Box<Self>,
        core: &Arc<Core>,
        call: &Call<'_>,
        failed: Option<fn(Error) -> E>,
        detach: Option<fn(Fut) -> Detached<T, E>>,
        compute: F,
    ) -> Result<Result<T, E>>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let (Some(plan), Some(detach)) = (self.soft_plan(call, detach.is_some()), detach) {
            let waiting = self.detach(core, failed, plan, detach(compute()));
            return Box::pin(waiting.answer(core, call)).await;
        }
        let Computes {
            state,
            mut begun,
            skip,
        } = *self;
        let started = Instant::now();
        // Polled with the key marked as being computed, for the length of each poll, so
        // that a cached call awaited inside it sees the mark. A `poll_fn` here rather than
        // an `async fn` of its own: one state machine fewer for each cached function to
        // compile.
        let mut fut = std::pin::pin!(compute());
        let timer = telemetry::Timer::start();
        let computing = std::future::poll_fn(|cx| {
            let _computing = Computing::enter(core, &call.key);
            fut.as_mut().poll(cx)
        });
        let out = match (call.control.hard_timeout, failed) {
            // Given up at the limit: dropped (cancelled), and a failure to its waiters.
            (Some(limit), Some(failed)) => {
                match crate::rt::timeout(limit, std::pin::pin!(computing)).await {
                    Some(out) => out,
                    None => {
                        Counters::add(&core.counters.hard_timeouts, 1);
                        telemetry::hard_timeouts(call.template, 1);
                        Err(failed(Error::new(
                            ErrorKind::ComputationTimeout,
                            format!(
                                "the computation of {} ran past its hard timeout of {} ms: given up",
                                call.key,
                                limit.as_millis()
                            ),
                        )))
                    }
                }
            }
            _ => computing.await,
        };
        timer.observe(call.template);
        call.served.computed(started.elapsed());
        if !skip {
            core.learn(call, started.elapsed());
        }
        let outcome = encoded(core, call, &mut begun, &out);
        let out = answer(core, call, &state, &begun, out);
        // Boxed: a miss's write, kept off the future that every hit builds and moves.
        Box::pin(core.settle(Mode::Async, call, begun, outcome)).await?;
        Ok(out)
    }
}

/// A call's first read of the store, made with a batch's other reads, and the near cache's
/// mark taken before it.
pub(crate) struct Prefetched {
    mark: Option<ReadMark>,
    read: Result<Read>,
}

impl Core {
    /// The near cache's mark for the call's key, to be taken before the store is read.
    fn near_mark(&self, call: &Call<'_>) -> Option<ReadMark> {
        (!call.control.skip_near)
            .then(|| self.near.as_ref().map(|n| n.mark(&call.key)))
            .flatten()
    }

    /// Whether the call's read asks how long the key has left: for the near cache (whose
    /// copy must not outlive it), stale windows and early refresh.
    fn reads_ttl(&self, call: &Call<'_>) -> bool {
        self.near.is_some() || !call.fresh.window().is_zero() || call.fresh.early_refresh > 0.0
    }

    /// The first reads of many calls at once, as [`begin`](Self::begin) would make them
    /// one by one, in one [`get_many`](Backend::get_many): one round trip per server. `None`
    /// for a call that reads otherwise: a sliding read (which pushes the expiry as it
    /// reads) and a call that skips the cache.
    pub(crate) async fn prefetch(
        &self,
        mode: Mode,
        calls: &[&Call<'_>],
    ) -> Vec<Option<Prefetched>> {
        // `Some(mark)` for a call read here, decided once per call.
        let marks: Vec<_> = calls
            .iter()
            .map(|call| {
                let reads = !call.control.sliding && self.skip_reason(call).is_none();
                reads.then(|| self.near_mark(call))
            })
            .collect();
        let keys: Vec<&str> = calls
            .iter()
            .zip(&marks)
            .filter(|(_, mark)| mark.is_some())
            .map(|(call, _)| call.key.as_str())
            .collect();
        let with_ttl = calls.first().is_some_and(|call| self.reads_ttl(call));
        let mut fetched = self
            .backend
            .get_many(mode, &keys, with_ttl)
            .await
            .into_iter();
        marks
            .into_iter()
            .map(|mark| {
                let mark = mark?;
                let read = fetched.next()?;
                Some(Prefetched { mark, read })
            })
            .collect()
    }

    /// The value of a batch item whose first read found it within its TTL, decoded,
    /// counted and kept in the near cache as [`read_through_async`] would on that read;
    /// `None` (and `first` left as it is) for any other case, which the single-call path
    /// takes over: a marker, a value to refresh or past its TTL, one that does not decode,
    /// a call computing its own key. No future and no store call for the batch's hits.
    pub(crate) fn first_hit<T: CacheValue>(
        &self,
        call: &Call<'_>,
        first: &mut Option<Prefetched>,
    ) -> Option<T> {
        if call.control.refresh || call.fresh.early_refresh > 0.0 || in_computation(self, &call.key)
        {
            return None;
        }
        let Some(Prefetched {
            mark,
            read: Ok((Some(bytes), left)),
        }) = first.as_ref()
        else {
            return None;
        };
        let oversized = self
            .config
            .max_value_bytes
            .is_some_and(|max| bytes.len() > max);
        if oversized || is_marker(bytes) || call.revalidating(*left) || call.past_ttl(*left) {
            return None;
        }
        let v = codec::decode::<T>(bytes).ok()?;
        let left = left.map(|l| l.saturating_sub(call.fresh.window()));
        let mut state = CallState::default();
        self.decoded_hit(call, &mut state, Source::Store, *mark, left, &v, bytes);
        *first = None;
        Some(v)
    }

    /// A hit the caller decoded: counted as [`hit`](Self::hit) says, and kept in the near
    /// cache (under `mark`, taken before the read) for the time its value has left, when
    /// known.
    #[allow(clippy::too_many_arguments)]
    fn decoded_hit<T: CacheValue>(
        &self,
        call: &Call<'_>,
        state: &mut CallState,
        source: Source,
        mark: Option<ReadMark>,
        left: Option<Duration>,
        v: &T,
        bytes: &[u8],
    ) {
        self.hit(call, state, source);
        if let (Some(near), Some(mark), Some(left)) = (&self.near, mark, left) {
            near.insert(mark, &call.key, v.clone(), weight::<T>(bytes), left);
        }
    }

    /// The decoded value the near cache holds for the call's key, counted.
    ///
    /// Counted, marked as the call's outcome and cloned under the shard's read lock (the
    /// clone last, so that it lands where the caller returns it; a `Clone` that panics has
    /// been counted). A call that writes a debug line or records metrics (a logger's or a
    /// recorder's code) clones, lets the lock go, and then does those.
    #[inline(always)]
    pub(super) fn near_hit<T: CacheValue>(&self, call: &Call<'_>) -> Option<T> {
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
    pub(super) fn near_hit_told<T: CacheValue>(
        &self,
        near: &NearCache,
        call: &Call<'_>,
    ) -> Option<T> {
        let v = near.with::<T, T>(&call.key, T::clone)?;
        self.mark_near_hit(call);
        telemetry::hits(call.template, 1);
        telemetry::near_hits(call.template, 1);
        call.debug(format_args!("NEAR HIT for {}", call.key));
        Some(v)
    }

    /// A near hit, counted and recorded as the call's outcome.
    #[inline(always)]
    pub(super) fn mark_near_hit(&self, call: &Call<'_>) {
        Counters::add(&self.counters.near_hits, 1);
        call.served.set(Outcome::NearHit);
    }

    /// Stale-if-error: the value past its TTL that this call saw, decoded, to answer its
    /// failed computation with (counted and logged); `None` when there is none.
    pub(super) fn stale_answer<T: CacheValue>(
        &self,
        call: &Call<'_>,
        state: &CallState,
    ) -> Option<T> {
        let old = state.fallback.as_ref()?;
        if old.until <= Instant::now() {
            return None;
        }
        let v = codec::decode::<T>(&old.bytes).ok()?;
        Counters::add(&self.counters.stale_if_error, 1);
        call.served.set(Outcome::Stale);
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
                call.served.set(Outcome::Stale);
                return;
            }
            call.served.set(Outcome::Hit);
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
    pub(crate) fn computes(&self, call: &Call<'_>, state: &mut CallState, begun: Begin) -> Begin {
        if let Begin::Refresh(..) = begun {
            self.count(call, state, true);
            call.served.set(Outcome::Refreshed);
        }
        begun
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
    pub(crate) async fn begin(
        self: &Arc<Core>,
        mode: Mode,
        call: &Call<'_>,
        state: &mut CallState,
    ) -> Result<Begin> {
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
            } else if let Some(read) = state.first_read.take() {
                Some(read)
            } else if self.reads_ttl(call) {
                Some(self.backend.get_with_ttl(mode, &call.key).await)
            } else {
                Some(self.backend.get(mode, &call.key).await.map(|b| (b, None)))
            };
            // The lease the read found, if any.
            let mut seen_lease = None;
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
                        call.served.set(Outcome::Refreshed);
                        call.debug(format_args!("REFRESH for {}", call.key));
                        return Ok(Begin::Force(b, None));
                    }
                    Entry::Value(b)
                        if call.past_ttl(left)
                            && call.throttled(&b)
                            && stale.as_ref() != Some(&b) =>
                    {
                        // Put back by a failed computation a moment ago, with a fail-safe
                        // throttle: answered with as it is until its retry time, the source
                        // left alone.
                        Counters::add(&self.counters.stale_if_error, 1);
                        call.debug(format_args!(
                            "STALE HIT for {} (the source failed: asked again after the fail-safe throttle)",
                            call.key
                        ));
                        state.stale_hit = true;
                        return Ok(Begin::Hit(b, Source::Store, None));
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
                    Entry::Leased(lease) => {
                        seen_lease = Some(lease);
                        true
                    }
                    Entry::Missing => true,
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
                    // With a soft timeout, the value the leader answers with at its own.
                    let takes_stale = call.control.soft_timeout.is_some();
                    call.served.waiting(true);
                    let mut done = match mode {
                        Mode::Blocking => flight.wait(wait, takes_stale),
                        Mode::Async => flight.wait_async(wait, takes_stale).await,
                    };
                    if let Some(Done::Stale(served)) = &done {
                        // Only for a caller whose own read found the lease that took the
                        // value's place, or the value itself, and no invalidation since the
                        // lease: otherwise an invalidation may have ended before this call
                        // began, and the call waits for the computation.
                        let seen = seen_lease.as_deref() == Some(&served.lease[..])
                            || state
                                .fallback
                                .as_ref()
                                .is_some_and(|f| f.bytes[..] == served.bytes[..]);
                        if !seen || flight.invalidations() != 0 {
                            done = match mode {
                                Mode::Blocking => flight.wait(wait, false),
                                Mode::Async => flight.wait_async(wait, false).await,
                            };
                        }
                    }
                    call.served.waiting(false);
                    match done {
                        Some(Done::Stale(served)) => {
                            self.soft_timed_out(
                                call,
                                "the value the computation it waits on replaces",
                            );
                            state.stale_hit = true;
                            return Ok(Begin::Hit(served.bytes.to_vec(), Source::Store, None));
                        }
                        Some(Done::Value(v)) if joined <= v.fresh_as_of => {
                            // Written just now with this call's TTL, if written at all.
                            let left = v.written.then_some(call.ttl);
                            return Ok(Begin::Hit(v.stored.to_vec(), Source::Shared, left));
                        }
                        // What the leader computed may predate an invalidation that this
                        // caller came after, or the leader went away: start over.
                        Some(Done::Value(_) | Done::Vanished) => state.restarts += 1,
                        Some(Done::Failed(stale)) if call.control.share_failures => {
                            // The value the leader put back, unless an invalidation came
                            // since this caller joined.
                            if state.fallback.is_none() && flight.invalidations() == joined {
                                state.fallback = stale;
                            }
                            call.debug(format_args!(
                                "Answering {} with the failure of the computation it waited on",
                                call.key
                            ));
                            return Ok(Begin::Failed);
                        }
                        Some(Done::Failed(_) | Done::Unshared) => {
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
                    call.served.set(Outcome::Miss);
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
    pub(super) async fn slide(
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
}
