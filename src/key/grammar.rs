//! The placeholder grammar of key templates, as `const fn`s: the one parser behind both
//! [`Template::parse`](crate::Template::parse) at run time and `cache_fn!`'s compile-time
//! checks, and the one list of the characters that keys treat specially.
//!
//! A leaf: it imports nothing from the crate.
//!
//! - A placeholder is `<<name>>` or a dotted path `<<name.field.0>>`: each segment an
//!   identifier (ASCII letter or `_`, then letters, digits, `_`), or digits after the first.
//! - A placeholder ends the template or is followed by a [separator](SEPARATORS), which no
//!   rendered value holds (in an invalidation pattern, also by one of
//!   [`PATTERN_FOLLOWERS`], to widen the pattern on purpose). So a key splits back into its
//!   values, and two different values never give one key: with `range:<<from>>-<<to>>`,
//!   `("a-b", "c")` and `("a", "b-c")` would.
//! - Text before a placeholder is free (`v<<n>>:x`).

/// The characters that make literal text a Redis glob pattern. A key template may not hold
/// them; inside values they are escaped, so that a value matches only itself.
pub(crate) const GLOB_CHARS: &str = "*?[\\";

/// The characters that may follow a placeholder: rendered values never hold them.
pub(crate) const SEPARATORS: &str = ":/|,;=#&}";

/// The glob characters that may also follow a placeholder in an invalidation pattern.
pub(crate) const PATTERN_FOLLOWERS: &str = "*?[";

/// The follow rule, for error messages: [`FOLLOW_RULE`], then for invalidation patterns
/// [`FOLLOW_RULE_IN_PATTERNS`], then [`FOLLOW_RULE_WHY`].
pub(crate) const FOLLOW_RULE: &str =
    "a placeholder must end the template or be followed by one of `: / | , ; = # & }`";

/// What [`FOLLOW_RULE`] adds for invalidation patterns.
pub(crate) const FOLLOW_RULE_IN_PATTERNS: &str =
    " (in an invalidation pattern, also by a glob character `* ? [`)";

/// Why the characters of [`FOLLOW_RULE`] are safe.
pub(crate) const FOLLOW_RULE_WHY: &str = ", which values never hold: they are percent-encoded";

/// Why another character may not follow a placeholder, for error messages: "followed by
/// `-`, [`FOLLOW_WHY`], [`FOLLOW_CONSEQUENCE`]: [`FOLLOW_RULE`]".
pub(crate) const FOLLOW_WHY: &str = "which a value may hold too";

/// "followed [`FOLLOWED_DIRECTLY`], [`FOLLOW_CONSEQUENCE`]: [`FOLLOW_RULE`]".
pub(crate) const FOLLOWED_DIRECTLY: &str = "directly by another placeholder";

/// See [`FOLLOW_WHY`].
pub(crate) const FOLLOW_CONSEQUENCE: &str = "so two different values could give one key";

const fn contains(set: &str, b: u8) -> bool {
    let set = set.as_bytes();
    let mut i = 0;
    while i < set.len() {
        if set[i] == b {
            return true;
        }
        i += 1;
    }
    false
}

/// True for a byte of [`GLOB_CHARS`].
pub(crate) const fn is_glob_char(b: u8) -> bool {
    contains(GLOB_CHARS, b)
}

/// True for a byte of [`SEPARATORS`].
pub(crate) const fn is_separator(b: u8) -> bool {
    contains(SEPARATORS, b)
}

/// True for a byte that may follow a placeholder in some template (a key template refuses
/// glob characters anywhere in its literal text anyway).
pub(crate) const fn may_follow(b: u8) -> bool {
    is_separator(b) || contains(PATTERN_FOLLOWERS, b)
}

/// True for the bytes percent-encoded inside string values: `%` (the escape itself), the
/// glob characters and `]`, the separators, and `{` `}` (Redis Cluster hash tags). All
/// ASCII, so a UTF-8 string can be escaped byte by byte.
pub(crate) const fn is_escaped(b: u8) -> bool {
    b == b'%' || b == b']' || b == b'{' || is_glob_char(b) || is_separator(b)
}

/// True when `text` holds a glob character. Placeholder names hold none, so for a whole
/// template this looks at its literal text.
pub(crate) const fn has_glob(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if is_glob_char(b[i]) {
            return true;
        }
        i += 1;
    }
    false
}

/// One placeholder of a template, as byte offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placeholder {
    /// Where `<<` starts.
    pub open: usize,
    /// The whole name is `start..end`, its root (the context name) `start..root_end`.
    pub start: usize,
    pub end: usize,
    pub root_end: usize,
    /// Just after `>>`: where scanning goes on.
    pub next: usize,
}

/// Why a template is malformed, with byte offsets into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// `<<` at `open` has no `>>` after it.
    Unclosed { open: usize },
    /// `<<>>` at `open`.
    Empty { open: usize },
    /// The name `start..end` is not a name or a dotted path.
    BadName { start: usize, end: usize },
    /// The placeholder is followed, at byte `at`, by a character that a value may hold.
    BadFollower { placeholder: Placeholder, at: usize },
}

impl Malformed {
    /// A short description, for messages that show the template beside it.
    pub(crate) const fn what(&self) -> &'static str {
        match self {
            Malformed::Unclosed { .. } => "unclosed `<<`",
            Malformed::Empty { .. } => "empty placeholder `<<>>`",
            Malformed::BadName { .. } => "malformed placeholder",
            Malformed::BadFollower { .. } => {
                "a placeholder is followed by a character a value may hold"
            }
        }
    }
}

/// `t[start..end]`; the bounds must fall on char boundaries.
pub(crate) const fn sub(t: &str, start: usize, end: usize) -> &str {
    let (head, _) = t.as_bytes().split_at(end);
    let (_, part) = head.split_at(start);
    match core::str::from_utf8(part) {
        Ok(part) => part,
        Err(_) => "",
    }
}

/// The character that starts at byte `at` of `t`, as a `&str`.
pub(crate) const fn char_at(t: &str, at: usize) -> &str {
    let b = t.as_bytes()[at];
    let len = if b < 0x80 {
        1
    } else if b >= 0xF0 {
        4
    } else if b >= 0xE0 {
        3
    } else {
        2
    };
    let end = if at + len > t.len() {
        t.len()
    } else {
        at + len
    };
    sub(t, at, end)
}

/// True when a second placeholder starts at byte `at` (for the message: "followed directly
/// by another placeholder").
pub(crate) const fn opens_at(t: &str, at: usize) -> bool {
    let b = t.as_bytes();
    at + 1 < b.len() && b[at] == b'<' && b[at + 1] == b'<'
}

/// The next placeholder at or after byte `from` of `t`, or why the template is malformed.
pub(crate) const fn next_placeholder(
    t: &str,
    from: usize,
) -> Result<Option<Placeholder>, Malformed> {
    let b = t.as_bytes();
    let mut i = from;
    while i + 1 < b.len() {
        if b[i] == b'<' && b[i + 1] == b'<' {
            let open = i;
            let start = i + 2;
            let mut j = start;
            while j + 1 < b.len() && !(b[j] == b'>' && b[j + 1] == b'>') {
                j += 1;
            }
            if j + 1 >= b.len() {
                return Err(Malformed::Unclosed { open });
            }
            if j == start {
                return Err(Malformed::Empty { open });
            }
            let bad_name = Malformed::BadName { start, end: j };
            // Each dotted segment is an identifier, or digits after the first.
            let mut root_end = j;
            let mut seg_start = start;
            let mut k = start;
            while k <= j {
                if k == j || b[k] == b'.' {
                    if k == seg_start {
                        return Err(bad_name);
                    }
                    let first = b[seg_start];
                    let is_root = seg_start == start;
                    let mut digits_only = true;
                    let mut m = seg_start;
                    while m < k {
                        if !(b[m].is_ascii_alphanumeric() || b[m] == b'_') {
                            return Err(bad_name);
                        }
                        if !b[m].is_ascii_digit() {
                            digits_only = false;
                        }
                        m += 1;
                    }
                    if !(first.is_ascii_alphabetic() || first == b'_') && (is_root || !digits_only)
                    {
                        return Err(bad_name);
                    }
                    if is_root {
                        root_end = k;
                    }
                    seg_start = k + 1;
                }
                k += 1;
            }
            let placeholder = Placeholder {
                open,
                start,
                end: j,
                root_end,
                next: j + 2,
            };
            if placeholder.next < b.len() && !may_follow(b[placeholder.next]) {
                return Err(Malformed::BadFollower {
                    placeholder,
                    at: placeholder.next,
                });
            }
            return Ok(Some(placeholder));
        }
        i += 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(t: &str) -> Result<Vec<&str>, Malformed> {
        let mut names = Vec::new();
        let mut at = 0;
        while let Some(p) = next_placeholder(t, at)? {
            names.push(&t[p.start..p.end]);
            at = p.next;
        }
        Ok(names)
    }

    #[test]
    fn finds_names_and_roots() {
        assert_eq!(
            all("a:<<x>>:<<y.0>>:<<y.z_1>>").unwrap(),
            ["x", "y.0", "y.z_1"]
        );
        let p = next_placeholder("u:<<user.id>>", 0).unwrap().unwrap();
        assert_eq!(
            (p.open, p.start, p.root_end, p.end, p.next),
            (2, 4, 8, 11, 13)
        );
        assert_eq!(all("no placeholders").unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn a_placeholder_ends_the_template_or_meets_a_separator() {
        for ok in [
            "<<a>>",
            "x:<<a>>",
            "v<<n>>:x",
            "wallets:{<<user_id>>}:summary",
            "a/<<x>>/b|<<y>>|c,<<z>>;<<w>>=<<v>>#<<u>>&",
            "range:<<from>>*",
            "p:<<a>>?",
            "p:<<a>>[0-9]",
        ] {
            assert!(all(ok).is_ok(), "{ok}");
        }
        for (bad, follower) in [
            ("range:<<from>>-<<to>>", "-"),
            ("a<<x>>b", "b"),
            ("<<a>><<b>>", "<"),
            ("k:<<a>>.x", "."),
            ("k:<<a>>_", "_"),
            ("k:<<a>> ", " "),
            ("k:<<a>>é", "é"),
            ("k:<<a>>]", "]"),
            ("k:<<a>>\\*", "\\"),
            ("k:<<a>>%", "%"),
            ("k:<<a>>{", "{"),
            ("k:<<a>>>", ">"),
        ] {
            match all(bad) {
                Err(Malformed::BadFollower { placeholder, at }) => {
                    assert_eq!(placeholder.next, at, "{bad}");
                    assert_eq!(char_at(bad, at), follower, "{bad}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(opens_at("<<a>><<b>>", 5));
        assert!(!opens_at("<<a>>-", 5));
    }

    #[test]
    fn malformed_names() {
        assert_eq!(all("a:<<x"), Err(Malformed::Unclosed { open: 2 }));
        assert_eq!(all("a:<<>>"), Err(Malformed::Empty { open: 2 }));
        for bad in [
            "a:<<1x>>",
            "a:<<x.>>",
            "a:<<.x>>",
            "a:<<x<<y>>",
            "a:<<a b>>",
            "a:<<x.1y>>",
        ] {
            assert!(matches!(all(bad), Err(Malformed::BadName { .. })), "{bad}");
        }
        assert!(all("a:<<x.12>>").is_ok());
        // The `template_parse` fuzz target's find for a planted off-by-one (reading one
        // byte past the end when `>` ends the input): refused, no panic.
        assert_eq!(all("<<{>"), Err(Malformed::Unclosed { open: 0 }));
        assert_eq!(all("a:<<x>"), Err(Malformed::Unclosed { open: 2 }));
    }

    #[test]
    fn character_classes() {
        let escaped: String = (0u8..=127)
            .filter(|b| is_escaped(*b))
            .map(char::from)
            .collect();
        assert_eq!(escaped, "#%&*,/:;=?[\\]{|}");
        for b in 0u8..=255 {
            // Whatever may follow a placeholder never stands unescaped in a value.
            if may_follow(b) {
                assert!(is_escaped(b), "{}", b as char);
            }
        }
        assert!(has_glob("a:*") && has_glob("a[") && has_glob("a\\") && has_glob("?"));
        assert!(!has_glob("user:<<id>>:profile]"));
    }
}
