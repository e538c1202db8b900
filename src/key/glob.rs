//! Redis-compatible glob matching (`stringmatchlen` of Redis's `util.c`), so that the
//! embedded store answers `keys`, `count` and `delete_pattern` exactly as `SCAN MATCH` does.

/// True when `SCAN … MATCH pattern` would return `string`.
pub(crate) fn matches(pattern: &[u8], string: &[u8]) -> bool {
    // SCAN skips matching for a lone `*`; `stringmatchlen` alone would refuse the empty key.
    if pattern == b"*" {
        return true;
    }
    let mut skip_longer = false;
    match_impl(pattern, string, &mut skip_longer, 0)
}

// Redis reads one byte past the pattern's end (its NUL terminator); `at` does the same.
fn at(p: &[u8], i: usize) -> u8 {
    p.get(i).copied().unwrap_or(0)
}

fn match_impl(mut pattern: &[u8], mut string: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    // Redis's guard against abusive patterns: past 1000 nested stars, no match.
    if nesting > 1000 {
        return false;
    }
    while !pattern.is_empty() && !string.is_empty() {
        // Each arm leaves `pattern` at what follows the token it consumed.
        match pattern[0] {
            b'*' => {
                while at(pattern, 1) == b'*' {
                    pattern = &pattern[1..];
                }
                if pattern.len() == 1 {
                    return true;
                }
                while !string.is_empty() {
                    if match_impl(&pattern[1..], string, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    string = &string[1..];
                }
                // No match for the rest of the pattern anywhere in the rest of the string:
                // earlier stars cannot help by matching longer (Redis's CVE-2022-36021 fix).
                *skip_longer = true;
                return false;
            }
            b'?' => {
                string = &string[1..];
                pattern = &pattern[1..];
            }
            b'[' => {
                let mut class = &pattern[1..];
                let not = at(class, 0) == b'^';
                if not {
                    class = &class[1..];
                }
                let c = string[0];
                let mut matched = false;
                let mut i = 0;
                let after = loop {
                    let rem = class.len() - i;
                    if at(class, i) == b'\\' && rem >= 2 {
                        i += 1;
                        if class[i] == c {
                            matched = true;
                        }
                    } else if at(class, i) == b']' {
                        break &class[i + 1..];
                    } else if rem == 0 {
                        // An unclosed class ends the pattern, as in Redis.
                        break &class[i..];
                    } else if rem >= 3 && class[i + 1] == b'-' {
                        // Redis compares as C `char`, signed on the platforms it ships for.
                        let mut start = class[i] as i8;
                        let mut end = class[i + 2] as i8;
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        i += 2;
                        if (start..=end).contains(&(c as i8)) {
                            matched = true;
                        }
                    } else if class[i] == c {
                        matched = true;
                    }
                    i += 1;
                };
                if matched == not {
                    return false;
                }
                string = &string[1..];
                pattern = after;
            }
            first => {
                let literal = if first == b'\\' && pattern.len() >= 2 {
                    pattern = &pattern[1..];
                    pattern[0]
                } else {
                    first
                };
                if literal != string[0] {
                    return false;
                }
                string = &string[1..];
                pattern = &pattern[1..];
            }
        }
        if string.is_empty() {
            while at(pattern, 0) == b'*' {
                pattern = &pattern[1..];
            }
            break;
        }
    }
    pattern.is_empty() && string.is_empty()
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn m(p: &str, s: &str) -> bool {
        matches(p.as_bytes(), s.as_bytes())
    }

    #[test]
    fn stars_and_questions() {
        assert!(m("wallets:42:*", "wallets:42:balance"));
        assert!(!m("wallets:42:*", "wallets:420:balance"));
        assert!(m("*", ""));
        assert!(m("a*", "a"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("**x**", "x"));
    }

    #[test]
    fn deep_star_nesting_stops_where_redis_stops() {
        let key = "a".repeat(1100);
        assert!(
            !m(&"*a".repeat(1100), &key),
            "Redis answers no past 1000 nested stars"
        );
        assert!(m(&"*a".repeat(900), &key));
        // A pathological pattern must neither overflow the stack nor take long.
        assert!(!m(&"*a".repeat(100_000), &"a".repeat(10)));
    }

    #[test]
    fn classes_ranges_and_escapes() {
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("[\\]]", "]"));
    }

    #[test]
    fn class_ranges_compare_signed_bytes_as_redis_does() {
        // The `glob_match` fuzz target's find for a planted unsigned comparison: Redis
        // reads `\xff` as -1, so `[\xff-\x01` (unclosed: it ends the pattern) holds NUL.
        assert!(matches(b"[\xff-\x01", b"\0"));
        assert!(!matches(b"[\x01-\x7f]", b"\xff"));
        assert!(matches(b"[\x80-\x01]", b"\xff"));
        // In UTF-8 text: `\u{e9}` is 0xC3 0xA9, and 0xA9-`b` spans -87..=98, so `a`.
        assert!(m("[\u{e9}-b]", "a"));
        assert!(!m("[\u{e9}-b]", "c"));
    }
}
