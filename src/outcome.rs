//! What one cached call did: [`Outcome`].

/// What happened in one cached call, for an `X-Cache` header, a log field or a metric
/// label: ask for it with [`Cacheable::outcome`](crate::Cacheable::outcome).
///
/// ```
/// use cacheable::Outcome;
///
/// assert_eq!(Outcome::default(), Outcome::Miss);
/// assert_eq!(Outcome::Hit.as_str(), "hit");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum Outcome {
    /// A stored value answered the call.
    Hit = 1,
    /// Nothing usable was stored: the call computed, or waited for another caller's
    /// computation of the key.
    #[default]
    Miss = 2,
    /// [`Cacheable::refresh`](crate::Cacheable::refresh): a value was stored and the call
    /// computed a new one in its place.
    Refreshed = 3,
    /// [`Cacheable::bypass`](crate::Cacheable::bypass): the call computed without reading
    /// or writing the cache.
    Bypassed = 4,
    /// The cache was switched off ([`Cache::disable`](crate::Cache::disable)): the call
    /// computed without reading or writing it.
    Disabled = 5,
    /// The cache failed (a store fault, a key template that did not render, no cache to
    /// use) and the call answered without it.
    Unavailable = 6,
}

impl Outcome {
    /// The lowercase name: `"hit"`, `"miss"`, `"refreshed"`, `"bypassed"`, `"disabled"`,
    /// `"unavailable"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Refreshed => "refreshed",
            Outcome::Bypassed => "bypassed",
            Outcome::Disabled => "disabled",
            Outcome::Unavailable => "unavailable",
        }
    }

    /// True when a stored value answered the call.
    pub const fn is_hit(self) -> bool {
        matches!(self, Outcome::Hit)
    }

    pub(crate) const fn from_u8(n: u8) -> Outcome {
        match n {
            1 => Outcome::Hit,
            3 => Outcome::Refreshed,
            4 => Outcome::Bypassed,
            5 => Outcome::Disabled,
            6 => Outcome::Unavailable,
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
        ] {
            assert_eq!(Outcome::from_u8(o as u8), o);
            assert_eq!(o.to_string(), o.as_str());
            assert_eq!(o.as_str(), format!("{o:?}").to_lowercase());
        }
    }
}
