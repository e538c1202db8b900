//! Key templates: `user:<<user_id>>:profile`, parsed once and rendered into keys and patterns.

pub(crate) mod grammar;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::hash::hash_into;
use crate::keyvalue::{push_f32, push_f64, KeyValue};
use grammar::Malformed;
use once_cell::sync::Lazy;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

/// A parsed key template such as `loans:products:<<currency_code>>:<<filters>>`.
///
/// Placeholders are `<<name>>` or a dotted walk into the argument's serde form,
/// `<<user.id>>` or `<<items.0>>`. A placeholder ends the template or is followed by one
/// of `: / | , ; = # & }` (in an invalidation pattern, also by `* ? [`): values never
/// render with these, so a key splits back into its values and no two different values
/// give one key. Text before a placeholder is free, and text outside placeholders is kept
/// as written; in an invalidation pattern it may hold Redis glob syntax (`*`, `?`,
/// `[a-z]`).
///
/// ```
/// use cacheable::Template;
///
/// assert!(Template::parse("wallets:{<<user_id>>}:summary").is_ok());
/// // `-` may stand inside a value: ("a-b", "c") and ("a", "b-c") would give one key.
/// let err = Template::parse("range:<<from>>-<<to>>").unwrap_err();
/// assert!(err.to_string().starts_with(
///     "placeholder `<<from>>` of key template `range:<<from>>-<<to>>` is followed by `-`"
/// ));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    /// Whether the literal text holds glob syntax: worked out once, asked on every call.
    glob: bool,
}

#[derive(Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `path` is the whole dotted name; `root` is its first segment, the context name.
    Placeholder {
        path: String,
        root: usize,
    },
}

/// A template a builder uses: one kept for the process's life (a `'static` template, parsed
/// once), borrowed so that no reference count is touched per call, or one parsed at run
/// time and shared.
#[derive(Clone, Debug)]
pub(crate) enum TemplateRef {
    Static(&'static Template),
    Shared(Arc<Template>),
}

impl fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::ops::Deref for TemplateRef {
    type Target = Template;

    fn deref(&self) -> &Template {
        match self {
            TemplateRef::Static(t) => t,
            TemplateRef::Shared(t) => t,
        }
    }
}

/// How placeholder values are turned into key text.
pub(crate) struct RenderOptions<'a> {
    /// Names (root names or whole dotted paths) whose values are hashed even when scalar.
    pub hash: &'a [&'a str],
    pub hash_len: usize,
}

impl Template {
    /// Parses a template, or says which part of it is malformed.
    pub fn parse(source: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut at = 0;
        // The grammar is `grammar::next_placeholder`, the one `cache_fn!` checks at compile
        // time.
        while let Some(p) =
            grammar::next_placeholder(source, at).map_err(|e| malformed(source, e))?
        {
            if p.open > at {
                parts.push(Part::Literal(source[at..p.open].to_owned()));
            }
            parts.push(Part::Placeholder {
                path: source[p.start..p.end].to_owned(),
                root: p.root_end - p.start,
            });
            at = p.next;
        }
        if at < source.len() {
            parts.push(Part::Literal(source[at..].to_owned()));
        }
        let glob = parts.iter().any(|p| match p {
            Part::Literal(text) => grammar::has_glob(text),
            Part::Placeholder { .. } => false,
        });
        Ok(Template {
            source: source.to_owned(),
            parts,
            glob,
        })
    }

    /// Parses a `'static` template once per process; later calls are a map look-up.
    pub(crate) fn interned(source: &'static str) -> Result<TemplateRef> {
        type Parsed = HashMap<(usize, usize), Result<&'static Template>, BuildAddrHasher>;
        static CACHE: Lazy<RwLock<Parsed>> = Lazy::new(Default::default);
        thread_local! {
            // Each thread's own copy of the look-ups it made: no lock, no shared counter
            // touched on the hot path.
            static LOCAL: std::cell::RefCell<Parsed> = std::cell::RefCell::new(Parsed::default());
            // The thread's last look-up found here: a function called in a loop finds its
            // template without hashing.
            static LAST: std::cell::Cell<Option<(usize, usize, &'static Template)>> =
                const { std::cell::Cell::new(None) };
        }
        // Keyed by address: a `'static` str never moves or dies, and two equal literals
        // at different addresses only cost one more parse.
        let id = (source.as_ptr() as usize, source.len());
        if let Some((ptr, len, template)) = LAST.with(std::cell::Cell::get) {
            if (ptr, len) == id {
                return Ok(TemplateRef::Static(template));
            }
        }
        if let Some(found) = LOCAL.with(|l| l.borrow().get(&id).cloned()) {
            if let Ok(template) = found {
                LAST.with(|last| last.set(Some((id.0, id.1, template))));
            }
            return found.map(TemplateRef::Static);
        }
        let found = CACHE
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        let parsed = found.unwrap_or_else(|| {
            // Parsed once per process and kept for its life, as the `'static` text is:
            // builders then borrow it and never touch a reference count.
            let parsed = Template::parse(source).map(|t| &*Box::leak(Box::new(t)));
            CACHE
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id)
                .or_insert(parsed)
                .clone()
        });
        LOCAL.with(|l| l.borrow_mut().insert(id, parsed.clone()));
        parsed.map(TemplateRef::Static)
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The whole names of its placeholders (`user.id` for `<<user.id>>`), in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder { path, .. } => Some(path.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// True when the text outside placeholders holds glob syntax, so that as an
    /// invalidation pattern it may match more than one key.
    pub fn is_glob(&self) -> bool {
        self.glob
    }

    /// Checks that the template can name a key: glob syntax in its literal text would make
    /// the key impossible to match exactly in an invalidation.
    pub(crate) fn check_key(&self) -> Result<()> {
        if self.is_glob() {
            return Err(Error::template(format!(
                "key template `{}` holds glob syntax (`*`, `?`, `[` or `\\`) outside its placeholders: no invalidation pattern could match its keys exactly",
                self.source
            )));
        }
        Ok(())
    }

    /// Checks that every `hash` entry names one of the placeholders.
    pub(crate) fn check_hash_names(&self, hash: &[&str]) -> Result<()> {
        for name in hash {
            let known = self.parts.iter().any(|p| match p {
                Part::Placeholder { path, root } => path == name || &path[..*root] == *name,
                Part::Literal(_) => false,
            });
            if !known {
                return Err(Error::template(format!(
                    "hash entry `{name}` names no placeholder of key template `{}`",
                    self.source
                )));
            }
        }
        Ok(())
    }

    /// Renders the template from `ctx`: the key without the cache's prefix, as the
    /// builders would write it with the default configuration (objects and arrays hashed
    /// to 16 hex digits, values escaped).
    ///
    /// ```
    /// use cacheable::{ctx, Template};
    ///
    /// let t = Template::parse("user:<<user_id>>:<<tab>>")?;
    /// assert_eq!(t.render(&ctx! { user_id = 7, tab = "a:b" })?, "user:7:a%3Ab");
    /// // A string that reads as a number or a bool keeps apart from it.
    /// assert_eq!(t.render(&ctx! { user_id = "7", tab = true })?, "user:%37:true");
    /// assert_eq!(t.render(&ctx! { user_id = None::<i64>, tab = Some(None::<bool>) })?, "user:%null:%some%null");
    /// # Ok::<(), cacheable::Error>(())
    /// ```
    ///
    /// # Errors
    /// A placeholder with no value in `ctx`, or a dotted path that does not resolve.
    pub fn render(&self, ctx: &Context) -> Result<String> {
        let opts = RenderOptions {
            hash: &[],
            // `Config`'s default `hash_len`.
            hash_len: 16,
        };
        let mut out = String::with_capacity(self.source.len() + 16);
        self.render_into(ctx, &opts, &mut out, None)?;
        Ok(out)
    }

    /// Appends the rendered template to `out`. Values are escaped (see [`escape_into`]), so the
    /// result is both the key and, for a template with glob syntax, a pattern whose values
    /// match only themselves. With `shown`, each placeholder's rendered value is recorded too.
    pub(crate) fn render_into(
        &self,
        ctx: &Context,
        opts: &RenderOptions<'_>,
        out: &mut String,
        mut shown: Option<&mut serde_json::Map<String, Value>>,
    ) -> Result<()> {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Placeholder { path, root } => {
                    let value = self.lookup(ctx, path, *root)?;
                    let hashed = opts
                        .hash
                        .iter()
                        .any(|h| *h == path.as_str() || *h == &path[..*root]);
                    let start = out.len();
                    render_value(value, hashed, opts.hash_len, out);
                    if let Some(shown) = shown.as_deref_mut() {
                        let v = if hashed || matches!(value, KeyValue::Map(_) | KeyValue::Seq(_)) {
                            Value::String(out[start..].to_owned())
                        } else {
                            value.to_json()
                        };
                        shown.insert(path.clone(), v);
                    }
                }
            }
        }
        Ok(())
    }

    fn lookup<'c>(&self, ctx: &'c Context, path: &str, root: usize) -> Result<&'c KeyValue> {
        let root_name = &path[..root];
        let mut value = match ctx.get(root_name) {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Err(Error::new(
                    crate::ErrorKind::Serialize,
                    format!(
                        "placeholder `<<{path}>>` of key template `{}`: `{root_name}` could not be serialized: {e}",
                        self.source
                    ),
                ))
            }
            None => {
                let known: Vec<&str> = ctx.names().collect();
                return Err(Error::template(format!(
                    "placeholder `<<{path}>>` of key template `{}` has no value: the context holds {known:?}",
                    self.source
                )));
            }
        };
        if root < path.len() {
            let mut walked = root_name.to_owned();
            for segment in path[root + 1..].split('.') {
                value = value.get(segment).ok_or_else(|| {
                    Error::template(format!(
                        "placeholder `<<{path}>>` of key template `{}`: `{walked}` has no field `{segment}`",
                        self.source
                    ))
                })?;
                walked.push('.');
                walked.push_str(segment);
            }
        }
        Ok(value)
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The run-time wording of a grammar error.
fn malformed(source: &str, e: Malformed) -> Error {
    Error::template(match e {
        Malformed::Unclosed { open } => {
            format!("unclosed `<<` at byte {open} in key template `{source}`")
        }
        Malformed::Empty { .. } => format!("empty placeholder `<<>>` in key template `{source}`"),
        Malformed::BadName { start, end } => format!(
            "malformed placeholder `<<{}>>` in key template `{source}`: expected a name such as `user_id` or a dotted path such as `user.id` or `items.0`",
            &source[start..end]
        ),
        Malformed::BadFollower { placeholder, at } => {
            let followed = if grammar::opens_at(source, at) {
                grammar::FOLLOWED_DIRECTLY.to_owned()
            } else {
                format!(
                    "by `{}`, {}",
                    grammar::char_at(source, at),
                    grammar::FOLLOW_WHY
                )
            };
            format!(
                "placeholder `<<{}>>` of key template `{source}` is followed {followed}, {}: {}{}{}",
                &source[placeholder.start..placeholder.end],
                grammar::FOLLOW_CONSEQUENCE,
                grammar::FOLLOW_RULE,
                grammar::FOLLOW_RULE_IN_PATTERNS,
                grammar::FOLLOW_RULE_WHY,
            )
        }
    })
}

/// Appends one placeholder value. Objects and arrays are always hashed.
///
/// What each kind renders as, and why no two differ only in appearance:
/// - strings: escaped (see [`escape_into`]), with their first character percent-encoded
///   too when the whole text reads as a number or a bool (`"42"` → `%342`) or has the
///   shape of a digest (`hash_len` lowercase hex digits);
/// - numbers and bools: as serde_json writes them (`42`, `1.5`, `1e+300`, `true`), but an
///   integer of exactly `hash_len` digits, which a digest could spell, gets `%n` before it;
/// - `None`, `()`: `%null`; NaN, ±inf: `%nan`, `%inf`, `%-inf`; `Some(x)` with a
///   null-like `x`: `%some` then `x` (`Some(None)` → `%some%null`): a string's rendering
///   never holds an unescaped `%`, and an escape is `%` and two uppercase hex digits;
/// - objects, arrays and hashed values: `hash_len` lowercase hex digits of SHA-1.
fn render_value(value: &KeyValue, hashed: bool, hash_len: usize, out: &mut String) {
    match value {
        _ if hashed => hash_into(value, hash_len, out),
        KeyValue::Map(_) | KeyValue::Seq(_) => hash_into(value, hash_len, out),
        KeyValue::Str(s) => render_str(s, hash_len, out),
        KeyValue::Null => out.push_str("%null"),
        KeyValue::Some(inner) => {
            out.push_str("%some");
            render_value(inner, false, hash_len, out);
        }
        scalar => {
            let start = out.len();
            if scalar.write_scalar(out) {
                // An integer of exactly `hash_len` digits reads as a digest that happens to
                // hold no letter: mark it, so that it never meets an object's digest.
                if is_digest_shaped(&out[start..], hash_len) {
                    out.insert_str(start, "%n");
                }
            } else {
                let nan = matches!(scalar, KeyValue::F64(f) if f.is_nan())
                    || matches!(scalar, KeyValue::F32(f) if f.is_nan());
                let negative = matches!(scalar, KeyValue::F64(f) if *f < 0.0)
                    || matches!(scalar, KeyValue::F32(f) if *f < 0.0);
                out.push_str(match (nan, negative) {
                    (true, _) => "%nan",
                    (false, false) => "%inf",
                    (false, true) => "%-inf",
                });
            }
        }
    }
}

/// Appends a string value: escaped, and with its first character encoded as well when the
/// text could be mistaken for a number, a bool or a digest.
fn render_str(s: &str, hash_len: usize, out: &mut String) {
    if reads_as_scalar_or_digest(s, hash_len) {
        // Every such text starts with an ASCII digit, letter or `-`.
        push_percent(s.as_bytes()[0], out);
        escape_into(&s[1..], out);
    } else {
        escape_into(s, out);
    }
}

/// True when some number, bool or digest renders as `s`.
fn reads_as_scalar_or_digest(s: &str, hash_len: usize) -> bool {
    s == "true" || s == "false" || is_digest_shaped(s, hash_len) || reads_as_number(s)
}

/// `hash_len` lowercase hex digits: what a hashed value renders as.
fn is_digest_shaped(s: &str, hash_len: usize) -> bool {
    s.len() == hash_len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True when `s` is exactly what serde_json writes for some integer or finite float
/// (`42`, `-7`, `1.5`, `1e+300`, `0.1` of an `f32`); `007`, `+1`, `1.50`, `-0` are not.
fn reads_as_number(s: &str) -> bool {
    let bytes = s.as_bytes();
    if !bytes
        .first()
        .is_some_and(|b| b.is_ascii_digit() || *b == b'-')
        || !bytes
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'-' | b'.' | b'e' | b'E' | b'+'))
    {
        return false;
    }
    let mut text = String::with_capacity(s.len() + 2);
    if bytes.iter().all(|b| b.is_ascii_digit() || *b == b'-') {
        // Integers: serde_json writes them in decimal, with no `+`, no leading zero, no
        // `-0`. (A float's text always holds `.` or `e`.)
        let n = match (s.parse::<i128>(), s.parse::<u128>()) {
            (Ok(n), _) => KeyValue::I128(n),
            (_, Ok(n)) => KeyValue::U128(n),
            _ => return false,
        };
        n.write_scalar(&mut text);
        return text == s;
    }
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            push_f64(f, &mut text);
            if text == s {
                return true;
            }
        }
    }
    if let Ok(f) = s.parse::<f32>() {
        if f.is_finite() {
            text.clear();
            push_f32(f, &mut text);
            return text == s;
        }
    }
    false
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_percent(b: u8, out: &mut String) {
    out.push('%');
    out.push(HEX_UPPER[usize::from(b >> 4)] as char);
    out.push(HEX_UPPER[usize::from(b & 0xf)] as char);
}

/// The bytes [`escape_into`] encodes, as a table.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = grammar::is_escaped(b as u8);
        b += 1;
    }
    table
};

/// Percent-encodes (`%XX`, uppercase hex) the characters of `s` that could forge a key
/// segment or a cluster hash tag, break the escaping itself, or act as glob syntax in a
/// pattern: `% : * ? [ ] \ { } / | , ; = # &`. Everything else (letters, digits,
/// `- _ . @ +`, space, non-ASCII) is kept, so UUIDs, dates and emails stay readable. The
/// result holds none of the characters that may follow a placeholder, matches only itself
/// in a pattern, and distinct strings stay distinct.
pub(crate) fn escape_into(s: &str, out: &mut String) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if ESCAPED[usize::from(b)] {
            out.push_str(&s[start..i]);
            push_percent(b, out);
            start = i + 1;
        }
    }
    out.push_str(&s[start..]);
}

/// Escapes `s` so that, as part of a Redis glob pattern, it matches itself only.
pub(crate) fn glob_escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        if c.is_ascii() && grammar::is_glob_char(c as u8) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Hashes the `(address, length)` of an interned template with one multiply-rotate per
/// word (FxHash's), where SipHash took a fifth of a cached call's look-up: the keys are
/// addresses chosen by the compiler, not by a caller, so flooding is not a concern.
#[derive(Default, Clone, Copy)]
struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type BuildAddrHasher = std::hash::BuildHasherDefault<AddrHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_value;
    use crate::keyvalue::to_key_value;
    use serde_json::json;
    use std::collections::{BTreeSet, HashSet};

    fn digest<T: serde::Serialize + ?Sized>(value: &T, len: usize) -> String {
        hash_value(&to_key_value(value).unwrap(), len)
    }

    fn render(template: &str, ctx: &Context, hash: &[&str]) -> Result<String> {
        let t = Template::parse(template)?;
        t.check_hash_names(hash)?;
        let mut out = String::new();
        t.render_into(ctx, &RenderOptions { hash, hash_len: 16 }, &mut out, None)?;
        Ok(out)
    }

    #[test]
    fn renders_scalars_as_text() {
        let ctx = Context::new()
            .with("user_id", &123)
            .with("code", "NGN")
            .with("on", &true);
        assert_eq!(
            render("user:<<user_id>>:<<code>>:<<on>>", &ctx, &[]).unwrap(),
            "user:123:NGN:true"
        );
    }

    #[test]
    fn hashes_objects_arrays_and_named_scalars() {
        let ctx = Context::new()
            .with("filters", &json!({"is_active": true}))
            .with("ids", &[1, 2])
            .with("code", "NGN");
        // sha1('{"is_active":true}'), sha1('[1,2]'), sha1('"NGN"'): canonical JSON.
        let sha1 = |text: &str| sha1_smol::Sha1::from(text).digest().to_string()[..16].to_owned();
        assert_eq!(
            render("p:<<filters>>", &ctx, &[]).unwrap(),
            format!("p:{}", sha1(r#"{"is_active":true}"#))
        );
        assert_eq!(
            render("p:<<ids>>", &ctx, &[]).unwrap(),
            format!("p:{}", sha1("[1,2]"))
        );
        assert_eq!(
            render("p:<<code>>", &ctx, &["code"]).unwrap(),
            format!("p:{}", sha1(r#""NGN""#))
        );
    }

    #[test]
    fn dotted_placeholders_walk_into_the_value() {
        let ctx = Context::new().with("user", &json!({"id": 7, "tags": ["a", "b"]}));
        assert_eq!(
            render("u:<<user.id>>:<<user.tags.1>>", &ctx, &[]).unwrap(),
            "u:7:b"
        );
        let err = render("u:<<user.idx>>", &ctx, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "placeholder `<<user.idx>>` of key template `u:<<user.idx>>`: `user` has no field `idx`"
        );
    }

    #[test]
    fn escaping_keeps_values_inside_their_segment() {
        let ctx = Context::new().with("v", "a:b*%?[x]\\");
        assert_eq!(
            render("k:<<v>>", &ctx, &[]).unwrap(),
            "k:a%3Ab%2A%25%3F%5Bx%5D%5C"
        );
        let ctx = Context::new().with("v", "{a}/b|c,d;e=f#g&h");
        assert_eq!(
            render("k:<<v>>", &ctx, &[]).unwrap(),
            "k:%7Ba%7D%2Fb%7Cc%2Cd%3Be%3Df%23g%26h"
        );
        let none = Context::new().with("v", &None::<String>);
        let null_string = Context::new().with("v", &Some("null"));
        assert_ne!(
            render("k:<<v>>", &none, &[]).unwrap(),
            render("k:<<v>>", &null_string, &[]).unwrap()
        );
        // The `pattern_escape` fuzz target's find for a planted escape that tested each
        // char's low byte: U+035D ends in 0x5D, the byte of `]`, and must stay itself.
        let bracket = render("wallets:<<v>>:balance", &Context::new().with("v", "]"), &[]);
        let combining = Context::new().with("v", "\u{35d}");
        let combining = render("wallets:<<v>>:balance", &combining, &[]);
        assert_eq!(bracket.unwrap(), "wallets:%5D:balance");
        assert_eq!(combining.unwrap(), "wallets:\u{35d}:balance");
    }

    #[test]
    fn unclosed_placeholder_names_template_and_position() {
        let err = Template::parse("user:<<user_id:profile").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Template);
        assert_eq!(
            err.to_string(),
            "unclosed `<<` at byte 5 in key template `user:<<user_id:profile`"
        );
    }

    #[test]
    fn empty_and_malformed_names_are_errors() {
        assert_eq!(
            Template::parse("a:<<>>").unwrap_err().to_string(),
            "empty placeholder `<<>>` in key template `a:<<>>`"
        );
        for bad in [
            "a:<<user id>>",
            "a:<<1abc>>",
            "a:<<user.>>",
            "a:<<.id>>",
            "a:<<a<<b>>",
        ] {
            let err = Template::parse(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("malformed placeholder `<<")
                    && err.to_string().contains(bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn unknown_placeholder_names_culprit_and_context() {
        let ctx = Context::new().with("user_id", &1);
        let err = render("user:<<usr_id>>", &ctx, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "placeholder `<<usr_id>>` of key template `user:<<usr_id>>` has no value: the context holds [\"user_id\"]"
        );
    }

    #[test]
    fn unknown_hash_entry_is_an_error() {
        let err = render(
            "user:<<user_id>>",
            &Context::new().with("user_id", &1),
            &["filters"],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "hash entry `filters` names no placeholder of key template `user:<<user_id>>`"
        );
    }

    #[test]
    fn interned_templates_are_parsed_once() {
        static T: &str = "x:<<a>>";
        let a = Template::interned(T).unwrap();
        let b = Template::interned(T).unwrap();
        assert!(std::ptr::eq(&*a, &*b));
    }

    #[test]
    fn key_templates_refuse_glob_syntax_in_their_literal_text() {
        let err = Template::parse("list[0]:<<id>>")
            .unwrap()
            .check_key()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("key template `list[0]:<<id>>` holds glob syntax"),
            "{err}"
        );
        // Glob characters may follow a placeholder in a pattern, never in a key.
        assert!(Template::parse("r:<<a>>*").unwrap().check_key().is_err());
        assert!(Template::parse("user:<<id>>:profile")
            .unwrap()
            .check_key()
            .is_ok());
    }

    #[test]
    fn glob_detection_looks_at_literal_text_only() {
        assert!(Template::parse("wallets:<<id>>:*").unwrap().is_glob());
        assert!(!Template::parse("user:<<id>>:profile").unwrap().is_glob());
    }

    fn key(template: &str, name: &'static str, value: &(impl serde::Serialize + ?Sized)) -> String {
        render(template, &Context::new().with(name, value), &[]).unwrap()
    }

    #[test]
    fn readable_values_stay_as_they_are() {
        for (value, shown) in [
            ("NGN", "NGN"),
            ("007", "007"),
            ("2024-01-01", "2024-01-01"),
            ("ada.lovelace+x@example.com", "ada.lovelace+x@example.com"),
            (
                "3f2b8c1e-9d4a-4e6b-8f0a-1c2d3e4f5a6b",
                "3f2b8c1e-9d4a-4e6b-8f0a-1c2d3e4f5a6b",
            ),
            ("naïve café_1 x", "naïve café_1 x"),
            ("1.50", "1.50"),
            ("+1", "+1"),
            ("-0", "-0"),
            ("1E5", "1E5"),
            ("True", "True"),
            ("null", "null"),
            ("NaN", "NaN"),
            ("", ""),
        ] {
            assert_eq!(
                key("u:<<v>>", "v", value),
                format!("u:{shown}"),
                "{value:?}"
            );
        }
        assert_eq!(key("user:<<v>>:profile", "v", &42), "user:42:profile");
    }

    #[test]
    fn scalars_render_as_serde_json_writes_them() {
        assert_eq!(key("k:<<v>>", "v", &-7), "k:-7");
        assert_eq!(key("k:<<v>>", "v", &u64::MAX), "k:18446744073709551615");
        assert_eq!(key("k:<<v>>", "v", &i128::MIN), format!("k:{}", i128::MIN));
        assert_eq!(key("k:<<v>>", "v", &1.5), "k:1.5");
        assert_eq!(key("k:<<v>>", "v", &1.0), "k:1.0");
        // serde_json 1.0.154 writes `1e+300` (`1e300` with older versions): whatever it
        // writes.
        let big = serde_json::to_string(&1e300).unwrap();
        assert!(big == "1e+300" || big == "1e300", "{big}");
        assert_eq!(key("k:<<v>>", "v", &1e300), format!("k:{big}"));
        assert_eq!(key("k:<<v>>", "v", &0.1f32), "k:0.1");
        assert_eq!(key("k:<<v>>", "v", &false), "k:false");
        assert_eq!(key("k:<<v>>", "v", &'x'), "k:x");
        for v in [0.1, -2.5e-7, 1e21, 123456.0, f64::MAX, f64::MIN_POSITIVE] {
            assert_eq!(
                key("k:<<v>>", "v", &v),
                format!("k:{}", serde_json::to_string(&v).unwrap())
            );
        }
    }

    #[test]
    fn strings_that_read_as_scalars_or_digests_keep_apart_from_them() {
        assert_eq!(key("k:<<v>>", "v", "42"), "k:%342");
        assert_eq!(key("k:<<v>>", "v", "-7"), "k:%2D7");
        assert_eq!(key("k:<<v>>", "v", "1.5"), "k:%31.5");
        let big = serde_json::to_string(&1e300).unwrap();
        assert_eq!(key("k:<<v>>", "v", &big), format!("k:%3{big}"));
        assert_eq!(key("k:<<v>>", "v", "1e-7"), "k:%31e-7");
        assert_eq!(key("k:<<v>>", "v", "true"), "k:%74rue");
        assert_eq!(key("k:<<v>>", "v", "false"), "k:%66alse");
        assert_eq!(key("k:<<v>>", "v", "0.1"), "k:%30.1");
        // Digest-shaped: 16 lowercase hex digits, as a hashed object renders.
        assert_eq!(
            key("k:<<v>>", "v", "deadbeefdeadbeef"),
            "k:%64eadbeefdeadbeef"
        );
        assert_eq!(key("k:<<v>>", "v", "deadbeefdeadbee"), "k:deadbeefdeadbee");
        // An integer of 16 digits could equal a digest made of digits only: it is marked,
        // and the string with those digits renders apart from both.
        let int = |n: u64| {
            let mut out = String::new();
            let ctx = Context::new().with("v", &n);
            let opts = RenderOptions {
                hash: &[],
                hash_len: 16,
            };
            Template::parse("k:<<v>>")
                .unwrap()
                .render_into(&ctx, &opts, &mut out, None)
                .unwrap();
            out
        };
        assert_eq!(int(1234567890123456), "k:%n1234567890123456");
        assert_eq!(int(123456789012345), "k:123456789012345");
        assert_eq!(
            key("k:<<v>>", "v", "1234567890123456"),
            "k:%31234567890123456"
        );
        assert_eq!(
            key("k:<<v>>", "v", "DEADBEEFDEADBEEF"),
            "k:DEADBEEFDEADBEEF"
        );
        // The digest shape follows `hash_len`.
        let ctx = Context::new().with("v", "deadbeef");
        let mut out = String::new();
        Template::parse("k:<<v>>")
            .unwrap()
            .render_into(
                &ctx,
                &RenderOptions {
                    hash: &[],
                    hash_len: 8,
                },
                &mut out,
                None,
            )
            .unwrap();
        assert_eq!(out, "k:%64eadbeef");

        // Every integer and float text is recognized: a string of it never meets it.
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let f = f64::from_bits(rng);
            let g = f32::from_bits(rng as u32);
            for (number, string) in [
                (
                    key("k:<<v>>", "v", &f),
                    key("k:<<v>>", "v", &serde_json::to_string(&f).unwrap()),
                ),
                (
                    key("k:<<v>>", "v", &g),
                    key("k:<<v>>", "v", &serde_json::to_string(&g).unwrap()),
                ),
                (
                    key("k:<<v>>", "v", &(rng as i64)),
                    key("k:<<v>>", "v", &(rng as i64).to_string()),
                ),
            ] {
                assert_ne!(number, string);
                assert!(
                    string.starts_with("k:%") || number.starts_with("k:%"),
                    "{string}"
                );
            }
        }
    }

    #[test]
    fn non_finite_floats_and_options_render_apart() {
        let keys: Vec<String> = vec![
            key("k:<<v>>", "v", &f64::NAN),
            key("k:<<v>>", "v", &f64::INFINITY),
            key("k:<<v>>", "v", &f64::NEG_INFINITY),
            key("k:<<v>>", "v", &None::<f64>),
            key("k:<<v>>", "v", &Some(None::<i32>)),
            key("k:<<v>>", "v", &Some(Some(None::<i32>))),
            key("k:<<v>>", "v", "%null"),
            key("k:<<v>>", "v", "nan"),
            key("k:<<v>>", "v", "inf"),
        ];
        assert_eq!(
            keys,
            [
                "k:%nan",
                "k:%inf",
                "k:%-inf",
                "k:%null",
                "k:%some%null",
                "k:%some%some%null",
                "k:%25null",
                "k:nan",
                "k:inf",
            ]
        );
        assert_eq!(key("k:<<v>>", "v", &f32::NAN), "k:%nan");
        assert_eq!(key("k:<<v>>", "v", &f32::NEG_INFINITY), "k:%-inf");
        // `Some` is transparent around anything else; `()` is null.
        assert_eq!(key("k:<<v>>", "v", &Some(Some(5))), "k:5");
        assert_eq!(key("k:<<v>>", "v", &()), "k:%null");
        assert_eq!(key("k:<<v>>", "v", &Some(())), "k:%some%null");
    }

    #[test]
    fn dynamic_values_keep_strings_apart_from_scalars() {
        #[derive(serde::Serialize)]
        #[serde(untagged)]
        enum Id {
            Num(i64),
            Text(String),
            Flag(bool),
        }
        let pairs = [
            (
                key("k:<<v>>", "v", &json!(1)),
                key("k:<<v>>", "v", &json!("1")),
            ),
            (
                key("k:<<v>>", "v", &json!(true)),
                key("k:<<v>>", "v", &json!("true")),
            ),
            (
                key("k:<<v>>", "v", &json!(null)),
                key("k:<<v>>", "v", &json!("null")),
            ),
            (
                key("k:<<v>>", "v", &Id::Num(1)),
                key("k:<<v>>", "v", &Id::Text("1".into())),
            ),
            (
                key("k:<<v>>", "v", &Id::Flag(true)),
                key("k:<<v>>", "v", &Id::Text("true".into())),
            ),
        ];
        for (a, b) in pairs {
            assert_ne!(a, b);
        }
        assert_eq!(key("k:<<v>>", "v", &Id::Num(1)), "k:1");
    }

    #[test]
    fn equal_sets_render_one_key() {
        let a: HashSet<String> = (0..50).map(|i| format!("tag{i}")).collect();
        let mut b: HashSet<String> = HashSet::new();
        for i in (0..50).rev() {
            b.insert(format!("tag{i}"));
        }
        assert_ne!(
            a.iter().collect::<Vec<_>>(),
            b.iter().collect::<Vec<_>>(),
            "the test needs two iteration orders"
        );
        let sorted: BTreeSet<&String> = a.iter().collect();
        let mut by_text: Vec<&String> = sorted.into_iter().collect();
        by_text.sort_by_key(|s| serde_json::to_string(s).unwrap());
        let expected = format!("k:{}", digest(&by_text, 16));
        assert_eq!(key("k:<<v>>", "v", &a), expected);
        assert_eq!(key("k:<<v>>", "v", &b), expected);
        assert_eq!(key("k:<<v>>", "v", &&b), expected);
        assert_eq!(key("k:<<v>>", "v", &Box::new(b.clone())), expected);
        assert_eq!(
            key("k:<<v>>", "v", &Some(vec![Box::new(b.clone())])),
            format!("k:{}", digest(&[&by_text], 16))
        );
    }

    #[test]
    fn placeholders_followed_by_a_value_character_are_refused() {
        let err = Template::parse("range:<<from>>-<<to>>").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Template);
        assert_eq!(
            err.to_string(),
            "placeholder `<<from>>` of key template `range:<<from>>-<<to>>` is followed by `-`, \
             which a value may hold too, so two different values could give one key: a \
             placeholder must end the template or be followed by one of `: / | , ; = # & }` \
             (in an invalidation pattern, also by a glob character `* ? [`), which values \
             never hold: they are percent-encoded"
        );
        let err = Template::parse("x:<<a>><<b>>").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("placeholder `<<a>>` of key template `x:<<a>><<b>>` is followed directly by another placeholder, so two"),
            "{err}"
        );
        for bad in ["a<<x>>b", "k:<<a>>.json", "k:<<a>>_v2", "k:<<a>>]"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        for good in [
            "range:<<from>>:<<to>>",
            "v<<n>>:x",
            "wallets:{<<user_id>>}:summary",
            "r:<<a>>*",
        ] {
            assert!(Template::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn debug_context_shows_values_as_json() {
        let ctx = Context::new()
            .with("id", &7)
            .with("code", "42")
            .with("nan", &f64::NAN)
            .with("none", &Some(None::<i32>))
            .with("f", &json!({"a": 1}));
        let mut shown = serde_json::Map::new();
        let mut out = String::new();
        Template::parse("<<id>>:<<code>>:<<nan>>:<<none>>:<<f>>")
            .unwrap()
            .render_into(
                &ctx,
                &RenderOptions {
                    hash: &["code"],
                    hash_len: 16,
                },
                &mut out,
                Some(&mut shown),
            )
            .unwrap();
        assert_eq!(
            serde_json::Value::Object(shown).to_string(),
            format!(
                r#"{{"code":"{}","f":"{}","id":7,"nan":"NaN","none":"some(null)"}}"#,
                digest("42", 16),
                digest(&json!({"a": 1}), 16)
            )
        );
    }
}

// ---------------------------------------------------------------------------------------
// The template of one `cache_fn!` function, held in a `static` in its body.

pub use self::per_function::StaticTemplate;

mod per_function {
    use super::Template;
    use super::TemplateRef;
    use crate::error::Result;
    use std::sync::OnceLock;

    /// Not public API: the key template (or one invalidation pattern) of a `cache_fn!`
    /// function, in a `static` inside the function, as `tracing` keeps one callsite per
    /// event. It is parsed and checked on the first call, never again; the `static`
    /// names no generic parameter, so it may stand in a generic function.
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct StaticTemplate {
        source: &'static str,
        hash: &'static [&'static str],
        parsed: OnceLock<Parsed>,
    }

    #[derive(Debug)]
    struct Parsed {
        template: Result<Template>,
        /// As a key: glob syntax refused, `hash` names checked against the placeholders.
        key_check: Result<()>,
        glob: bool,
    }

    impl StaticTemplate {
        /// `source` with the `hash` names of its `#[cache]` attribute (none for a pattern).
        pub const fn new(source: &'static str, hash: &'static [&'static str]) -> Self {
            StaticTemplate {
                source,
                hash,
                parsed: OnceLock::new(),
            }
        }

        /// The template as written.
        pub fn as_str(&self) -> &'static str {
            self.source
        }

        /// The `hash` names given to [`new`](Self::new).
        pub fn hash_names(&self) -> &'static [&'static str] {
            self.hash
        }

        /// True when the literal text holds glob syntax, so that as a pattern it may match
        /// several keys (see [`Template::is_glob`]); false for a malformed template.
        pub fn is_glob(&self) -> bool {
            self.parsed().glob
        }

        fn parsed(&self) -> &Parsed {
            self.parsed.get_or_init(|| {
                let template = Template::parse(self.source);
                let (key_check, glob) = match &template {
                    Ok(t) => (
                        t.check_key().and_then(|()| t.check_hash_names(self.hash)),
                        t.is_glob(),
                    ),
                    Err(e) => (Err(e.clone()), false),
                };
                Parsed {
                    template,
                    key_check,
                    glob,
                }
            })
        }

        /// The parsed template, checked as a key: well formed, no glob syntax, every
        /// `hash` name a placeholder.
        pub(crate) fn as_key(&'static self) -> Result<TemplateRef> {
            let parsed = self.parsed();
            parsed.key_check.clone()?;
            self.as_pattern()
        }

        /// The parsed template, as an invalidation pattern.
        pub(crate) fn as_pattern(&'static self) -> Result<TemplateRef> {
            match &self.parsed().template {
                Ok(t) => Ok(TemplateRef::Static(t)),
                Err(e) => Err(e.clone()),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_once_and_checks_as_a_key() {
            static KEY: StaticTemplate = StaticTemplate::new("user:<<id>>:<<tags>>", &["tags"]);
            let (TemplateRef::Static(a), TemplateRef::Static(b)) =
                (KEY.as_key().unwrap(), KEY.as_key().unwrap())
            else {
                panic!("a static template is borrowed")
            };
            assert!(std::ptr::eq(a, b));
            assert!(!KEY.is_glob());
            assert_eq!(KEY.hash_names(), ["tags"]);

            static GLOB: StaticTemplate = StaticTemplate::new("user:<<id>>:*", &[]);
            assert!(GLOB.is_glob());
            assert!(GLOB.as_pattern().is_ok());
            assert!(GLOB.as_key().is_err(), "a key refuses glob syntax");

            static HASH: StaticTemplate = StaticTemplate::new("user:<<id>>", &["tags"]);
            assert!(HASH.as_key().unwrap_err().to_string().contains("`tags`"));

            static BAD: StaticTemplate = StaticTemplate::new("user:<<id", &[]);
            assert!(BAD.as_pattern().is_err() && BAD.as_key().is_err() && !BAD.is_glob());
        }
    }
}
