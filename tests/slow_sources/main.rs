//! Slow and failing sources, one test binary: a fallback value (`fallback`), expiry jitter
//! (`jitter`), one call to a failing source and the hard timeout (`shared_failures`), the
//! fail-safe throttle (`fail_safe`) and the soft timeout (`soft_timeout`). Each module says
//! what it covers.

#[path = "../support/mod.rs"]
mod support;

mod fail_safe;
mod fallback;
mod jitter;
mod shared_failures;
mod soft_timeout;
