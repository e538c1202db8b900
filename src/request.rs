//! What a builder hands a [`Cache`](crate::Cache): one cached call ([`Call`]: the rendered
//! key, the settings in force, the per-call controls, and a cell for what the call did), or
//! one invalidation's target ([`Target`]). Plain data: the builders build them, the cache
//! runs them through its engine.

use crate::outcome::Outcome;
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

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
    /// Neither read from nor kept in the near cache: the store answers (read-your-writes
    /// across processes, for data such as balances).
    pub skip_near: bool,
    /// When the computation this call waited on fails (in this process or another), the
    /// call answers with that failure rather than run its own computation.
    pub share_failures: bool,
    /// How long an async computation may run before it is given up, its caller answered
    /// with a timeout error (only where the call can make its error type: a call that
    /// shares failures).
    pub hard_timeout: Option<Duration>,
    /// How long a caller that leads a computation with a stale value to answer with waits
    /// for it before answering with that value, the computation going on.
    pub soft_timeout: Option<Duration>,
    pub store_if: Option<&'a StoreIf<'a>>,
    pub ttl_from: Option<&'a TtlFrom<'a>>,
}

/// What a call did ([`crate::Outcome`]), written by the core as it goes: an atomic so that
/// a `&Call` held across an await stays `Sync`. A fault met on a fail-open path makes the
/// call [`Computed::Unavailable`](crate::Outcome::Unavailable) whatever else it did.
#[derive(Default)]
pub(crate) struct ServedCell {
    outcome: AtomicU8,
    faulted: AtomicBool,
    /// How long the computation ran, in microseconds plus one (0: it did not run here).
    computed: AtomicU64,
    /// Whether the call is waiting on another caller's computation (a leader of this
    /// process, or a lease another process holds): a batch computes its other items
    /// meanwhile rather than wait with it.
    waiting: AtomicBool,
}

impl ServedCell {
    pub(crate) fn set(&self, outcome: Outcome) {
        self.outcome.store(outcome as u8, Ordering::Relaxed);
    }

    /// The call's computation ran for `took`.
    pub(crate) fn computed(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX - 1);
        self.computed.store(micros + 1, Ordering::Relaxed);
    }

    /// The call starts or stops waiting on another caller's computation.
    pub(crate) fn waiting(&self, on: bool) {
        self.waiting.store(on, Ordering::Relaxed);
    }

    /// Whether the call waits on another caller's computation now.
    pub(crate) fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// How long the call's computation ran, if it ran.
    pub(crate) fn computation(&self) -> Option<Duration> {
        match self.computed.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_micros(n - 1)),
        }
    }

    pub(crate) fn fault(&self) {
        self.faulted.store(true, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Outcome {
        if self.faulted.load(Ordering::Relaxed) {
            Outcome::Unavailable
        } else {
            Outcome::from_u8(self.outcome.load(Ordering::Relaxed))
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
    /// The most a write's TTL is lengthened by, drawn per write (zero: never).
    pub jitter: Duration,
    /// After a failed computation put back a value past its TTL, how long readers answer
    /// with it before one asks the source again (zero: at once).
    pub fail_safe_throttle: Duration,
}

impl Freshness {
    /// How long past the TTL values are kept in the store: the logical deadline is the
    /// physical expiry (`PTTL`) less this window, so values stay plain JSON.
    pub(crate) fn window(&self) -> Duration {
        self.stale_if_error.max(self.stale_while_revalidate)
    }
}

/// What an invalidation names, as full keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Key(String),
    /// A Redis glob.
    Pattern(String),
    /// A tag set's key: every key recorded in it.
    Tag(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Key(k) => write!(f, "key {k}"),
            Target::Pattern(p) => write!(f, "pattern {p}"),
            Target::Tag(t) => write!(f, "tag {t}"),
        }
    }
}
