//! What the bytes at a key can be: a cached value (plain JSON text, or another codec's form
//! behind `codec::MARKER`, `\0` then `0xCB`), a lease marker (`\0cacheable-lease:…`), or
//! the marker a failed computation leaves (`\0cacheable-failed:…`); and the one place
//! that tells them apart ([`Entry::classify`]). JSON text never starts with a NUL byte, and
//! the markers have `c` where the codec's frame has `0xCB`, so none can be taken for
//! another. (The sliding-read script tells a marker from a value by the same two bytes.)

use std::time::Duration;

/// Marks a key held by a lease. JSON text never starts with a NUL byte, and the other
/// codecs' values start with `\0` and `0xCB` (`codec::MARKER`), not `\0c`, so no cached
/// value can be mistaken for a lease, nor a lease for a value.
pub(crate) const LEASE_PREFIX: &[u8] = b"\0cacheable-lease:";

/// Marks a key whose lease holder's computation failed, for a moment: the callers that
/// waited on it compute at once rather than queue for the lease one after another. To
/// readers it is no value.
pub(crate) const FAILED_PREFIX: &[u8] = b"\0cacheable-failed:";

/// What the bytes at a key are. The one place that tells a value from a marker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Missing,
    /// Another caller's computation is under way; its lease marker.
    Leased(Vec<u8>),
    /// The lease holder's computation failed; the marker it left.
    Failed(Vec<u8>),
    /// A cached value's bytes: JSON text, or another codec's or compressed form behind
    /// `codec::MARKER` (the codec tells them apart, not this).
    Value(Vec<u8>),
}

impl Entry {
    pub(crate) fn classify(raw: Option<Vec<u8>>) -> Entry {
        match raw {
            None => Entry::Missing,
            Some(b) if is_lease(&b) => Entry::Leased(b),
            Some(b) if b.starts_with(FAILED_PREFIX) => Entry::Failed(b),
            Some(b) => Entry::Value(b),
        }
    }
}

/// How long the marker of a failed computation stays: long enough for every waiter to see
/// it (waiters look at least every 50 ms), short enough not to matter otherwise.
pub(crate) const FAILED_TTL: Duration = Duration::from_secs(1);

/// The marker a lease holder whose computation failed leaves in place of `lease`.
pub(crate) fn failed_marker(lease: &[u8]) -> Vec<u8> {
    let mut marker = FAILED_PREFIX.to_vec();
    marker.extend_from_slice(lease.strip_prefix(LEASE_PREFIX).unwrap_or(lease));
    marker
}

/// True for a lease marker.
pub(crate) fn is_lease(bytes: &[u8]) -> bool {
    bytes.starts_with(LEASE_PREFIX)
}

/// True for a lease or a failure marker: bytes that are no value.
pub(crate) fn is_marker(bytes: &[u8]) -> bool {
    is_lease(bytes) || bytes.starts_with(FAILED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::MARKER;

    #[test]
    fn the_codec_marker_is_neither_json_nor_a_lease_or_failure_marker() {
        assert!(!LEASE_PREFIX.starts_with(MARKER) && !FAILED_PREFIX.starts_with(MARKER));
        assert!(!MARKER.starts_with(LEASE_PREFIX) && !MARKER.starts_with(FAILED_PREFIX));
        assert!(serde_json::from_slice::<serde_json::Value>(MARKER).is_err());
        let mut marked = MARKER.to_vec();
        marked.extend_from_slice(b"\x11x");
        assert_eq!(Entry::classify(Some(marked.clone())), Entry::Value(marked));
        let lease = b"\0cacheable-lease:1".to_vec();
        assert_eq!(Entry::classify(Some(lease.clone())), Entry::Leased(lease));
        assert_eq!(Entry::classify(None), Entry::Missing);
    }
}
