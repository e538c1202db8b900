//! The `metrics` feature: what the counters of [`Stats`](crate::Stats) count, reported
//! through the [`metrics`](https://docs.rs/metrics) facade as well, labelled by key
//! template, with the time computations take.
//!
//! Without the feature, every function here is an empty `#[inline(always)]` one and
//! [`Timer`] is a zero-sized type that reads no clock: the calls compile to nothing.

/// The label of counts that no key template names: the manual operations of a
/// [`Cache`](crate::Cache) (`get`, `set`, `delete`, `delete_pattern`).
pub(crate) const MANUAL: &str = "(manual)";

/// The label of faults met off any call: the lease keeper's renewals and releases.
#[cfg(feature = "metrics")]
const BACKGROUND: &str = "(background)";

/// Counter and histogram names, as the `metrics` feature documents them.
#[cfg(feature = "metrics")]
mod names {
    pub const HITS: &str = "cacheable_hits_total";
    pub const NEAR_HITS: &str = "cacheable_near_hits_total";
    pub const MISSES: &str = "cacheable_misses_total";
    pub const SETS: &str = "cacheable_sets_total";
    pub const ERRORS: &str = "cacheable_errors_total";
    pub const INVALIDATED: &str = "cacheable_invalidated_keys_total";
    pub const LEASE_WAITS: &str = "cacheable_lease_waits_total";
    pub const FALLBACKS: &str = "cacheable_fallbacks_total";
    pub const SHARED_FAILURES: &str = "cacheable_shared_failures_total";
    pub const HARD_TIMEOUTS: &str = "cacheable_hard_timeouts_total";
    pub const SOFT_TIMEOUTS: &str = "cacheable_soft_timeouts_total";
    pub const COMPUTE: &str = "cacheable_compute_seconds";
    pub const STORE_UP: &str = "cacheable_store_up";
    pub const BREAKER_OPEN: &str = "cacheable_breaker_open";
    pub const NEAR_SERVING: &str = "cacheable_near_cache_serving";
    pub const PENDING: &str = "cacheable_pending_invalidations";
    pub const ENABLED: &str = "cacheable_enabled";
}

/// A [`Health`](crate::Health) as gauges, labelled by the cache's prefix: set each time a
/// probe asks for it.
#[cfg(feature = "metrics")]
pub(crate) fn health(prefix: &str, health: &crate::health::Health) {
    let labels = [::metrics::Label::new("prefix", prefix.to_owned())];
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    let serving = matches!(
        health.near_cache,
        crate::health::NearCacheHealth::Serving { .. }
    );
    ::metrics::gauge!(names::STORE_UP, labels.iter()).set(flag(health.store.is_ok()));
    ::metrics::gauge!(names::BREAKER_OPEN, labels.iter()).set(flag(health.breaker_open));
    ::metrics::gauge!(names::NEAR_SERVING, labels.iter()).set(flag(serving));
    ::metrics::gauge!(names::PENDING, labels.iter()).set(health.pending_invalidations as f64);
    ::metrics::gauge!(names::ENABLED, labels.iter()).set(flag(health.enabled));
}

/// Without the `metrics` feature: nothing.
#[cfg(not(feature = "metrics"))]
#[inline(always)]
pub(crate) fn health(_prefix: &str, _health: &crate::health::Health) {}

#[cfg(feature = "metrics")]
fn label(template: &str) -> ::metrics::Label {
    let template = if template.is_empty() {
        BACKGROUND
    } else {
        template
    };
    ::metrics::Label::new("template", template.to_owned())
}

#[cfg(feature = "metrics")]
fn add(name: &'static str, template: &str, n: u64) {
    ::metrics::counter!(name, [label(template)].iter()).increment(n);
}

macro_rules! counters {
    ($($(#[$doc:meta])* $fn:ident => $name:ident;)*) => {$(
        $(#[$doc])*
        #[cfg(feature = "metrics")]
        #[inline]
        pub(crate) fn $fn(template: &str, n: u64) {
            add(names::$name, template, n);
        }

        $(#[$doc])*
        #[cfg(not(feature = "metrics"))]
        #[inline(always)]
        pub(crate) fn $fn(_template: &str, _n: u64) {}
    )*};
}

counters! {
    /// Calls answered by a stored value (near hits included).
    hits => HITS;
    /// Calls answered from the near cache.
    near_hits => NEAR_HITS;
    /// Calls that found no usable value on their first read.
    misses => MISSES;
    /// Values written.
    sets => SETS;
    /// Store faults and template errors.
    errors => ERRORS;
    /// Keys deleted by invalidations and deletions, labelled by the pattern's template.
    invalidated => INVALIDATED;
    /// Calls that waited for another caller's computation: a leader in this process, or a
    /// lease another process holds.
    lease_waits => LEASE_WAITS;
    /// Failed computations answered with the call's fallback value.
    fallbacks => FALLBACKS;
    /// Calls answered with the failure of the computation they waited on.
    shared_failures => SHARED_FAILURES;
    /// Async computations given up at their hard timeout.
    hard_timeouts => HARD_TIMEOUTS;
    /// Calls answered with a stale value at their soft timeout.
    soft_timeouts => SOFT_TIMEOUTS;
}

/// Times one computation; reads no clock without the feature.
pub(crate) struct Timer {
    #[cfg(feature = "metrics")]
    start: std::time::Instant,
}

impl Timer {
    #[inline(always)]
    pub(crate) fn start() -> Timer {
        Timer {
            #[cfg(feature = "metrics")]
            start: std::time::Instant::now(),
        }
    }

    /// Records the time since [`start`](Self::start) in the computation-time histogram.
    #[inline(always)]
    pub(crate) fn observe(self, _template: &str) {
        #[cfg(feature = "metrics")]
        ::metrics::histogram!(names::COMPUTE, [label(_template)].iter())
            .record(self.start.elapsed().as_secs_f64());
    }
}

/// Registers the help text of the crate's metrics with the installed recorder (the
/// `# HELP` lines of a Prometheus exporter). Call it once, after installing the recorder.
///
/// | name | kind | what |
/// | --- | --- | --- |
/// | `cacheable_hits_total` | counter | calls answered by a stored value (near hits included) |
/// | `cacheable_near_hits_total` | counter | calls answered from the near cache in process memory |
/// | `cacheable_misses_total` | counter | calls that found no usable value and computed or waited |
/// | `cacheable_sets_total` | counter | values written |
/// | `cacheable_errors_total` | counter | store faults and template errors |
/// | `cacheable_invalidated_keys_total` | counter | keys deleted, by the invalidation pattern's template |
/// | `cacheable_lease_waits_total` | counter | calls that waited for another caller's computation |
/// | `cacheable_fallbacks_total` | counter | failed computations answered with the call's fallback value |
/// | `cacheable_shared_failures_total` | counter | calls answered with the failure of the computation they waited on |
/// | `cacheable_hard_timeouts_total` | counter | async computations given up at their hard timeout |
/// | `cacheable_soft_timeouts_total` | counter | calls answered with a stale value at their soft timeout, the computation going on |
/// | `cacheable_compute_seconds` | histogram | how long computations (the cached functions' bodies) took |
/// | `cacheable_store_up` | gauge | 1 when the store answered the last [`Cache::health`](crate::Cache::health), else 0 |
/// | `cacheable_breaker_open` | gauge | 1 while calls fail fast because the store looked down |
/// | `cacheable_near_cache_serving` | gauge | 1 while the near cache serves (0: off, or tracking not running) |
/// | `cacheable_pending_invalidations` | gauge | queued invalidations that have not landed |
/// | `cacheable_enabled` | gauge | 0 between `Cache::disable` and `enable` |
///
/// Each has the label `template`: the key template (`loans:products:<<currency_code>>:<<filters>>`),
/// `get_or_set` or `(manual)` for the manual operations, `(background)` for the lease
/// keeper's faults; the gauges have the label `prefix` (the cache's key prefix) and are set
/// each time [`Cache::health`](crate::Cache::health) runs (a readiness probe's period).
/// Requires the `metrics` feature.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe_metrics() {
    use ::metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        names::HITS,
        "Calls answered by a stored value (near hits included)"
    );
    describe_counter!(
        names::NEAR_HITS,
        "Calls answered from the near cache in process memory"
    );
    describe_counter!(
        names::MISSES,
        "Calls that found no usable value on their first read"
    );
    describe_counter!(names::SETS, "Values written");
    describe_counter!(names::ERRORS, "Store faults and template errors");
    describe_counter!(
        names::INVALIDATED,
        "Keys deleted by invalidations, by pattern template"
    );
    describe_counter!(
        names::LEASE_WAITS,
        "Calls that waited for another caller's computation"
    );
    describe_counter!(
        names::FALLBACKS,
        "Failed computations answered with the call's fallback value"
    );
    describe_counter!(
        names::SHARED_FAILURES,
        "Calls answered with the failure of the computation they waited on"
    );
    describe_counter!(
        names::HARD_TIMEOUTS,
        "Async computations given up at their hard timeout"
    );
    describe_histogram!(
        names::COMPUTE,
        Unit::Seconds,
        "Time the cached computations took"
    );
    use ::metrics::describe_gauge;
    describe_gauge!(
        names::STORE_UP,
        "1 when the store answered the last health check"
    );
    describe_gauge!(
        names::BREAKER_OPEN,
        "1 while calls fail fast because the store looked down"
    );
    describe_gauge!(names::NEAR_SERVING, "1 while the near cache serves");
    describe_gauge!(names::PENDING, "Queued invalidations that have not landed");
    describe_gauge!(names::ENABLED, "0 while the cache is switched off");
}
