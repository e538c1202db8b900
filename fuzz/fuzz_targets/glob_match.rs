//! The embedded store's glob matcher against a reference: a direct transcription of
//! Redis's `stringmatchlen` (util.c) over a NUL-terminated copy of the pattern, as C reads
//! it, with bytes compared as signed `char`s in ranges.
#![no_main]

use cacheable::__fuzz::glob_matches;
use libfuzzer_sys::fuzz_target;

fn reference(pattern: &[u8], string: &[u8]) -> bool {
    // SCAN skips matching for a lone `*`.
    if pattern == b"*" {
        return true;
    }
    let mut p = pattern.to_vec();
    p.push(0);
    let mut skip = false;
    stringmatchlen(&p, 0, pattern.len() as i64, string, 0, string.len() as i64, &mut skip, 0)
}

#[allow(clippy::too_many_arguments)]
fn stringmatchlen(
    pat: &[u8],
    mut pi: usize,
    mut plen: i64,
    s: &[u8],
    mut si: usize,
    mut slen: i64,
    skip: &mut bool,
    nesting: u32,
) -> bool {
    if nesting > 1000 {
        return false;
    }
    while plen > 0 && slen > 0 {
        match pat[pi] {
            b'*' => {
                while plen > 0 && pat[pi + 1] == b'*' {
                    pi += 1;
                    plen -= 1;
                }
                if plen == 1 {
                    return true;
                }
                while slen > 0 {
                    if stringmatchlen(pat, pi + 1, plen - 1, s, si, slen, skip, nesting + 1) {
                        return true;
                    }
                    if *skip {
                        return false;
                    }
                    si += 1;
                    slen -= 1;
                }
                *skip = true;
                return false;
            }
            b'?' => {
                si += 1;
                slen -= 1;
            }
            b'[' => {
                pi += 1;
                plen -= 1;
                let not = pat[pi] == b'^';
                if not {
                    pi += 1;
                    plen -= 1;
                }
                let mut matched = false;
                loop {
                    if pat[pi] == b'\\' && plen >= 2 {
                        pi += 1;
                        plen -= 1;
                        if pat[pi] == s[si] {
                            matched = true;
                        }
                    } else if pat[pi] == b']' {
                        break;
                    } else if plen == 0 {
                        pi -= 1;
                        plen += 1;
                        break;
                    } else if plen >= 3 && pat[pi + 1] == b'-' {
                        let mut start = pat[pi] as i8;
                        let mut end = pat[pi + 2] as i8;
                        let c = s[si] as i8;
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        pi += 2;
                        plen -= 2;
                        if c >= start && c <= end {
                            matched = true;
                        }
                    } else if pat[pi] == s[si] {
                        matched = true;
                    }
                    pi += 1;
                    plen -= 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                si += 1;
                slen -= 1;
            }
            c => {
                let mut c = c;
                if c == b'\\' && plen >= 2 {
                    pi += 1;
                    plen -= 1;
                    c = pat[pi];
                }
                if c != s[si] {
                    return false;
                }
                si += 1;
                slen -= 1;
            }
        }
        pi += 1;
        plen -= 1;
        if slen == 0 {
            while pat[pi] == b'*' {
                pi += 1;
                plen -= 1;
            }
            break;
        }
    }
    plen == 0 && slen == 0
}

fuzz_target!(|data: &[u8]| {
    // Pattern, then the string, split at the first NUL (the pattern holds none: Redis's
    // C reads would stop there).
    let (pattern, string) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    assert_eq!(
        glob_matches(pattern, string),
        reference(pattern, string),
        "pattern {:?} string {:?}",
        String::from_utf8_lossy(pattern),
        String::from_utf8_lossy(string)
    );
});
