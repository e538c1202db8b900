//! What one cached call did: [`Outcome`].

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    /// The outcome of the last cached call that ended on this thread, for [`Outcome::of`].
    static LAST: Cell<Option<Outcome>> = const { Cell::new(None) };
}

/// A cached call ended with `outcome` on this thread.
#[inline]
pub(crate) fn note(outcome: Outcome) {
    LAST.with(|last| last.set(Some(outcome)));
}

/// What happened in one cached call, for an `X-Cache` header, a log field or a metric
/// label: ask for it with [`Cacheable::outcome`](crate::Cacheable::outcome).
///
/// ```
/// use cacheable::Outcome;
///
/// assert_eq!(Outcome::default(), Outcome::Miss);
/// assert_eq!(Outcome::Hit.as_str(), "hit");
/// assert!(Outcome::NearHit.is_hit() && !Outcome::Stale.is_hit());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum Outcome {
    /// A value in the store answered the call.
    Hit = 1,
    /// Nothing usable was stored: the call computed, or waited for another caller's
    /// computation of the key.
    #[default]
    Miss = 2,
    /// A value was stored and the call computed a new one in its place: a forced refresh
    /// ([`Cacheable::refresh`](crate::Cacheable::refresh)), or the one caller that
    /// refreshes a value early ([`Cacheable::early_refresh`](crate::Cacheable::early_refresh))
    /// or past its TTL ([`Cacheable::stale_while_revalidate`](crate::Cacheable::stale_while_revalidate)).
    Refreshed = 3,
    /// [`Cacheable::bypass`](crate::Cacheable::bypass): the call computed without reading
    /// or writing the cache.
    Bypassed = 4,
    /// The cache was switched off ([`Cache::disable`](crate::Cache::disable)): the call
    /// computed without reading or writing it.
    Disabled = 5,
    /// The cache failed (a store fault, a key template that did not render, no cache to
    /// use), or a queued invalidation names the key or one of its tags, and the call
    /// answered without it.
    Unavailable = 6,
    /// A value past its TTL answered the call: kept for a stale-while-revalidate window
    /// while another caller refreshes it
    /// ([`Cacheable::stale_while_revalidate`](crate::Cacheable::stale_while_revalidate)),
    /// or for a stale-if-error window when the computation failed
    /// ([`Cacheable::stale_if_error`](crate::Cacheable::stale_if_error)).
    Stale = 7,
    /// The process's near cache answered the call, without a round trip to the store
    /// ([`Config::near_cache`](crate::Config::near_cache)). A hit, as [`is_hit`](Self::is_hit) says.
    NearHit = 8,
}

impl Outcome {
    /// The lowercase name: `"hit"`, `"miss"`, `"refreshed"`, `"bypassed"`, `"disabled"`,
    /// `"unavailable"`, `"stale"`, `"nearhit"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Refreshed => "refreshed",
            Outcome::Bypassed => "bypassed",
            Outcome::Disabled => "disabled",
            Outcome::Unavailable => "unavailable",
            Outcome::Stale => "stale",
            Outcome::NearHit => "nearhit",
        }
    }

    /// True when a cached value within its TTL answered the call: [`Hit`](Self::Hit) or
    /// [`NearHit`](Self::NearHit) (not [`Stale`](Self::Stale)).
    pub const fn is_hit(self) -> bool {
        matches!(self, Outcome::Hit | Outcome::NearHit)
    }

    /// Runs `call` and returns its value with the outcome of the last cached call it made
    /// (`None` if it made none): how a [`cache_fn!`](crate::cache_fn) function, which
    /// returns only its value, reports its outcome for an `X-Cache` header.
    ///
    /// ```
    /// use cacheable::{cache_fn, CacheManager, Config, Outcome};
    ///
    /// CacheManager::init(Config::memory())?;
    /// cache_fn! {
    ///     #[cache(key = "price:<<sku>>")]
    ///     fn price(sku: u32) -> u64 { u64::from(sku) * 100 }
    /// }
    /// assert_eq!(Outcome::of(|| price(7)), (700, Some(Outcome::Miss)));
    /// assert_eq!(Outcome::of(|| price(7)), (700, Some(Outcome::Hit)));
    /// assert_eq!(Outcome::of(|| 1 + 1), (2, None));
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    pub fn of<T>(call: impl FnOnce() -> T) -> (T, Option<Outcome>) {
        let outer = LAST.with(|last| last.replace(None));
        let value = call();
        // An enclosing `of` sees this call's outcome as the last one too.
        let seen = LAST.with(|last| {
            let seen = last.get();
            last.set(seen.or(outer));
            seen
        });
        (value, seen)
    }

    /// Async twin of [`of`](Self::of): awaits `call` and returns its value with the outcome
    /// of the last cached call it made while it was polled.
    pub fn of_async<F: Future>(call: F) -> OutcomeOf<F> {
        OutcomeOf {
            call: Box::pin(call),
            seen: None,
        }
    }

    pub(crate) const fn from_u8(n: u8) -> Outcome {
        match n {
            1 => Outcome::Hit,
            3 => Outcome::Refreshed,
            4 => Outcome::Bypassed,
            5 => Outcome::Disabled,
            6 => Outcome::Unavailable,
            7 => Outcome::Stale,
            8 => Outcome::NearHit,
            _ => Outcome::Miss,
        }
    }
}

/// The future of [`Outcome::of_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct OutcomeOf<F: Future> {
    call: Pin<Box<F>>,
    seen: Option<Outcome>,
}

impl<F: Future> std::fmt::Debug for OutcomeOf<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeOf")
            .field("seen", &self.seen)
            .finish()
    }
}

impl<F: Future> Future for OutcomeOf<F> {
    type Output = (F::Output, Option<Outcome>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Only what ends during this future's own polls counts: other tasks run on the
        // thread between them.
        let outer = LAST.with(|last| last.replace(None));
        let polled = self.call.as_mut().poll(cx);
        let seen = LAST.with(|last| {
            let seen = last.get();
            last.set(seen.or(outer));
            seen
        });
        if seen.is_some() {
            self.seen = seen;
        }
        polled.map(|value| (value, self.seen))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn names_round_trip() {
        for o in [
            Outcome::Hit,
            Outcome::Miss,
            Outcome::Refreshed,
            Outcome::Bypassed,
            Outcome::Disabled,
            Outcome::Unavailable,
            Outcome::Stale,
            Outcome::NearHit,
        ] {
            assert_eq!(Outcome::from_u8(o as u8), o);
            assert_eq!(o.to_string(), o.as_str());
            assert_eq!(o.as_str(), format!("{o:?}").to_lowercase());
        }
    }
}
