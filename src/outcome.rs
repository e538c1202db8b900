//! What one cached call did: [`Outcome`].

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
