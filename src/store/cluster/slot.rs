//! Hash slots: which of the 16,384 slots a key (or a pattern's literal hash tag) is in, and
//! keys grouped by slot, so that no command ever spans two.

use super::*;

/// How many hash slots a cluster has.
pub(crate) const SLOTS: usize = 16384;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster hashes
/// keys with, one table lookup a byte.
pub(super) const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

pub(crate) fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The part of a key that Redis Cluster hashes: the text between the first `{` and the
/// first `}` after it when that is not empty (the hash tag), else the whole key.
pub(super) fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(len) = rest.iter().position(|&b| b == b'}') {
            if len > 0 {
                return &rest[..len];
            }
        }
    }
    key
}

/// The hash slot of a key, as `CLUSTER KEYSLOT` gives it.
pub(crate) fn slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) & (SLOTS as u16 - 1)
}

/// The one slot that every key matching a Redis glob `pattern` hashes to, when the pattern
/// says: a pattern with no glob at all (one key), or one whose literal start (before its
/// first `*`, `?` or `[`) holds a complete, non-empty hash tag (`wallets:{42}:*`). Every
/// matching key starts with that literal text, so its first `{`, and the first `}` after
/// it, are those of the pattern.
pub(crate) fn pattern_slot(pattern: &str) -> Option<u16> {
    let bytes = pattern.as_bytes();
    // The literal text every matching key starts with (escapes resolved).
    let mut literal = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut complete = true;
    while i < bytes.len() {
        match bytes[i] {
            b'*' | b'?' | b'[' => {
                complete = false;
                break;
            }
            // `\x` is a literal `x`; a trailing `\` is a literal `\`, as Redis reads it.
            b'\\' if i + 1 < bytes.len() => {
                literal.push(bytes[i + 1]);
                i += 2;
            }
            b => {
                literal.push(b);
                i += 1;
            }
        }
    }
    if complete {
        return Some(slot(&literal));
    }
    let open = literal.iter().position(|&b| b == b'{')?;
    let rest = &literal[open + 1..];
    let len = rest.iter().position(|&b| b == b'}')?;
    (len > 0).then(|| crc16(&rest[..len]) & (SLOTS as u16 - 1))
}

/// A hash slot and keys of it.
pub(super) type SlotKeys = (u16, Vec<Vec<u8>>);

/// Keys grouped by hash slot, in the order their slots first appear.
pub(super) fn by_slot(keys: Vec<Vec<u8>>) -> Vec<SlotKeys> {
    let mut groups: Vec<(u16, Vec<Vec<u8>>)> = Vec::new();
    let mut index: HashMap<u16, usize> = HashMap::new();
    for key in keys {
        let s = slot(&key);
        match index.get(&s) {
            Some(&i) => groups[i].1.push(key),
            None => {
                index.insert(s, groups.len());
                groups.push((s, vec![key]));
            }
        }
    }
    groups
}

pub(super) fn slot_route(slot: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        slot,
        SlotAddr::Master,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        // The check value of CRC-16/XMODEM, and the example of the Redis Cluster spec.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_match_cluster_keyslot() {
        // `redis-cli CLUSTER KEYSLOT …` on Redis 7.
        for (key, expected) in [
            ("foo", 12182),
            ("bar", 5061),
            ("hello", 866),
            ("user:123:profile", 8490),
            ("{user1000}.following", 3443),
            ("{user1000}.followers", 3443),
            ("foo{}{bar}", 8363),
            ("foo{{bar}}zap", 4015),
            ("foo{bar}{zap}", 5061),
            ("paycore:wallets:{42}:summary", 8000),
            ("", 0),
        ] {
            assert_eq!(slot(key.as_bytes()), expected, "{key}");
        }
    }

    #[test]
    fn a_pattern_has_a_slot_when_its_literal_start_holds_a_whole_tag() {
        let tag42 = slot(b"{42}");
        assert_eq!(pattern_slot("paycore:wallets:{42}:*"), Some(tag42));
        assert_eq!(pattern_slot("paycore:wallets:{42}:x?[ab]"), Some(tag42));
        assert_eq!(pattern_slot("a:{42}"), Some(tag42));
        // An escaped glob character is literal text.
        assert_eq!(pattern_slot("a\\*:{42}:*"), Some(tag42));
        assert_eq!(pattern_slot("a:\\{42}:*"), Some(tag42));
        // No glob at all: one key, its slot.
        assert_eq!(pattern_slot("user:123:profile"), Some(8490));
        assert_eq!(pattern_slot("a\\*b"), Some(slot(b"a*b")));
        // A glob before the tag closes, or no tag: any slot.
        for any in [
            "wallets:*",
            "*{42}:x",
            "wallets:{4*}:x",
            "wallets:{42:*",
            "wallets:{}:*",
            "wallets:{?}:x",
            "wallets:[{]42}:*",
        ] {
            assert_eq!(pattern_slot(any), None, "{any}");
        }
    }

    #[test]
    fn keys_are_grouped_by_slot() {
        let keys = ["{a}1", "{b}1", "{a}2", "x"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        let groups = by_slot(keys);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].1, [b"{a}1".to_vec(), b"{a}2".to_vec()]);
        for (s, group) in groups {
            assert!(group.iter().all(|k| slot(k) == s));
        }
    }
}
