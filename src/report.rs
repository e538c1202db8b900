//! What the crate says in logs: the seed's `[Cache Debug]` lines, and faults, throttled per
//! key template and kind of fault so that a storm logs a line a second while each distinct
//! problem still shows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One `[Cache Debug]` line, a step of a call: at info level when debugging is on for the
/// call (`debug(true)`, `CACHE_DEBUG`), otherwise at trace level. `RUST_LOG=cacheable=debug`
/// shows one line per call instead (see `builder::CallLog`).
pub(crate) fn debug_line(loud: bool, args: std::fmt::Arguments<'_>) {
    if loud {
        log::info!(target: "cacheable", "[Cache Debug] {args}");
    } else {
        log::trace!(target: "cacheable", "[Cache Debug] {args}");
    }
}

/// True when a debug line would be written at all: lets callers skip building it.
pub(crate) fn debug_enabled(loud: bool) -> bool {
    loud || log::log_enabled!(target: "cacheable", log::Level::Trace)
}

/// A TTL as the debug lines show it: `600s`, or `1500ms` when it is not whole seconds.
pub(crate) fn format_ttl(ttl: Duration) -> String {
    if ttl.subsec_nanos() == 0 {
        format!("{}s", ttl.as_secs())
    } else {
        format!("{}ms", ttl.as_millis())
    }
}

/// The text of an error and its causes, each once: `a: b: c`.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        // A cause whose text its parent already printed adds nothing.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// How many distinct (kind, template) pairs are tracked before the table starts afresh.
const MAX_TRACKED: usize = 1024;

/// When a (kind, template) pair was last logged, and how many lines were held back since.
type Seen = HashMap<(&'static str, String), (Instant, u64)>;

/// Lets one line through per interval for each kind of fault on each key template, and
/// counts the ones it holds back.
pub(crate) struct Throttle {
    interval: Duration,
    seen: Mutex<Seen>,
}

impl Throttle {
    pub(crate) fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed)` when a line about `kind` on `template` may be logged now, with
    /// how many were held back since the last one.
    pub(crate) fn allow(&self, kind: &'static str, template: &str) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some((last, held)) = seen.get_mut(&(kind, template.to_owned())) {
            if now.duration_since(*last) < self.interval {
                *held += 1;
                return None;
            }
            let suppressed = *held;
            *last = now;
            *held = 0;
            return Some(suppressed);
        }
        if seen.len() >= MAX_TRACKED {
            seen.clear();
        }
        seen.insert((kind, template.to_owned()), (now, 0));
        Some(0)
    }
}

impl Throttle {
    /// How many (kind, template) pairs it tracks: at most `MAX_TRACKED`.
    pub(crate) fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_line_through_per_kind_and_template() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.allow("cache read", "a:<<x>>"), Some(0));
        for _ in 0..5 {
            assert_eq!(t.allow("cache read", "a:<<x>>"), None);
        }
        // Another template, or another kind of fault, is a problem of its own.
        assert_eq!(t.allow("cache read", "b:<<x>>"), Some(0));
        assert_eq!(t.allow("cache key", "a:<<x>>"), Some(0));
        let t = Throttle::new(Duration::ZERO);
        assert_eq!(t.allow("k", "t"), Some(0));
        assert_eq!(t.allow("k", "t"), Some(0));
    }

    #[test]
    fn chains_print_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("redis error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(chain(&Outer(io)), "redis error: refused");
    }
}
