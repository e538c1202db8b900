//! Key templates: `user:<<user_id>>:profile`, parsed once and rendered into keys and patterns.

use super::context::Context;
use super::grammar::{self, Malformed};
use super::hash::hash_into;
use super::value::{push_f32, push_f64, KeyValue};
use crate::error::{Error, Result};
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
    /// // The text of a number renders as the number: one id, whatever its type.
    /// assert_eq!(t.render(&ctx! { user_id = "7", tab = true })?, "user:7:true");
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
                    crate::error::ErrorKind::Serialize,
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
/// - strings: escaped (see [`escape_into`]); the text of a number or a bool renders as that
///   number or bool (`"42"` → `42`, on purpose: one id, whatever its type), any other text
///   with the shape of a digest (`hash_len` lowercase hex digits) has its first character
///   percent-encoded;
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

/// Appends a string value: escaped. A string that is the text of a number or a bool
/// renders as that number or bool does (`"42"` as `42`): an id reached as a path
/// parameter's `String` and as a `u64` names one key, as in every other language that
/// reads these keys. Any other text that a digest could spell has its first character
/// encoded, so that it never meets a hashed value.
fn render_str(s: &str, hash_len: usize, out: &mut String) {
    if s == "true" || s == "false" {
        out.push_str(s);
    } else if reads_as_number(s) {
        if is_digest_shaped(s, hash_len) {
            out.push_str("%n");
        }
        out.push_str(s);
    } else if is_digest_shaped(s, hash_len) {
        // Starts with an ASCII letter here: a digit-only text reads as a number.
        push_percent(s.as_bytes()[0], out);
        escape_into(&s[1..], out);
    } else {
        escape_into(s, out);
    }
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
mod tests;
