//! The breaker: after a run of failed calls (timeouts, refused or dropped connections),
//! calls fail at once for a cool-down instead of each waiting out the timeout.

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Fails calls fast while Redis looks down: after `threshold` failed calls in a row
/// (timeouts, refused or dropped connections; not error replies), cache reads and writes
/// fail at once for `cooldown`, then the next calls try again. Invalidations (`delete`,
/// `delete_pattern`) are never held back.
pub(crate) struct Breaker {
    /// What is down, for messages: `redis`, or `cluster node 10.0.0.1:6379`.
    what: String,
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which calls fail fast; 0 when closed.
    open_until: AtomicU64,
    epoch: Instant,
}

impl Breaker {
    pub(crate) fn new(config: &Config, what: impl Into<String>) -> Breaker {
        Breaker {
            what: what.into(),
            threshold: config.breaker_threshold,
            cooldown: config.breaker_cooldown,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn check(&self) -> Result<()> {
        let until = self.open_until.load(Ordering::Relaxed);
        if until == 0 {
            return Ok(());
        }
        let now = self.now_ms();
        if now >= until {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} is taken as down for {} ms more, after {} failed calls in a row",
                self.what,
                until - now,
                self.failures.load(Ordering::Relaxed)
            ),
        ))
    }

    pub(crate) fn record<T>(&self, out: &Result<T>) {
        match out {
            // Writes only when something changes: a shared counter rewritten on every
            // hit would bounce between cores.
            Ok(_) => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                    self.open_until.store(0, Ordering::Relaxed);
                }
            }
            Err(e) if looks_down(e) && self.threshold > 0 => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= self.threshold {
                    let until = self.now_ms() + self.cooldown.as_millis() as u64;
                    self.open_until.store(until, Ordering::Relaxed);
                }
            }
            Err(_) => {}
        }
    }
}

/// A timeout, or a connection refused or lost: signs of a server that is down or stuck,
/// unlike an error reply.
pub(crate) fn looks_down(e: &Error) -> bool {
    e.is_timeout()
        || e.redis_error().is_some_and(|r| {
            r.is_io_error() || r.is_connection_refusal() || r.is_unrecoverable_error()
        })
}
