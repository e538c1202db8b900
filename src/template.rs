//! Key templates: `user:<<user_id>>:profile`, parsed once and rendered into keys and patterns.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::hash::hash_value;
use once_cell::sync::Lazy;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

/// A parsed key template such as `loans:products:<<currency_code>>:<<filters>>`.
///
/// Placeholders are `<<name>>` or a dotted walk into the argument's serde form,
/// `<<user.id>>` or `<<items.0>>`. Text outside placeholders is kept as written; in an
/// invalidation pattern it may hold Redis glob syntax (`*`, `?`, `[a-z]`).
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
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
        let mut rest = source;
        let mut offset = 0;
        while let Some(open) = rest.find("<<") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find(">>").ok_or_else(|| {
                Error::template(format!(
                    "unclosed `<<` at byte {} in key template `{source}`",
                    offset + open
                ))
            })?;
            let name = &after[..close];
            check_placeholder_name(name, source)?;
            let root = name.find('.').unwrap_or(name.len());
            parts.push(Part::Placeholder {
                path: name.to_owned(),
                root,
            });
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    /// Parses a `'static` template once per process; later calls are a map look-up.
    pub(crate) fn interned(source: &'static str) -> Result<Arc<Template>> {
        type Parsed = HashMap<(usize, usize), Result<Arc<Template>>>;
        static CACHE: Lazy<RwLock<Parsed>> = Lazy::new(Default::default);
        // Keyed by address: a `'static` str never moves or dies, and two equal literals
        // at different addresses only cost one more parse.
        let id = (source.as_ptr() as usize, source.len());
        if let Some(found) = CACHE.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return found.clone();
        }
        let parsed = Template::parse(source).map(Arc::new);
        CACHE
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, parsed.clone());
        parsed
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
        self.parts.iter().any(|p| match p {
            Part::Literal(text) => text.contains(['*', '?', '[', '\\']),
            Part::Placeholder { .. } => false,
        })
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
                        let v = if hashed || matches!(value, Value::Object(_) | Value::Array(_)) {
                            Value::String(out[start..].to_owned())
                        } else {
                            value.clone()
                        };
                        shown.insert(path.clone(), v);
                    }
                }
            }
        }
        Ok(())
    }

    fn lookup<'c>(&self, ctx: &'c Context, path: &str, root: usize) -> Result<&'c Value> {
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
                let next = match value {
                    Value::Object(map) => map.get(segment),
                    Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                    _ => None,
                };
                value = next.ok_or_else(|| {
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

fn check_placeholder_name(name: &str, source: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::template(format!(
            "empty placeholder `<<>>` in key template `{source}`"
        )));
    }
    let is_ident = |s: &str| {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let mut segments = name.split('.');
    let first_ok = segments.next().is_some_and(is_ident);
    let rest_ok =
        segments.all(|s| is_ident(s) || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(Error::template(format!(
            "malformed placeholder `<<{name}>>` in key template `{source}`: expected a name such as `user_id` or a dotted path such as `user.id` or `items.0`"
        )))
    }
}

/// Appends one placeholder value. Objects and arrays are always hashed.
fn render_value(value: &Value, hashed: bool, hash_len: usize, out: &mut String) {
    match value {
        _ if hashed => out.push_str(&hash_value(value, hash_len)),
        Value::Object(_) | Value::Array(_) => out.push_str(&hash_value(value, hash_len)),
        Value::String(s) => escape_into(s, out),
        // `%` never stands unescaped in a rendered string, so `None` cannot collide with
        // any string, `Some("null")` included.
        Value::Null => out.push_str("%null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // In place: a `to_string` here would allocate on every render of an id.
            let _ = write!(out, "{n}");
        }
    }
}

/// Percent-encodes the characters that could forge a key segment (`:`), break the escaping
/// itself (`%`), or act as glob syntax in a pattern (`* ? [ ] \`). The rendered value holds
/// none of them, so it matches only itself in a pattern, and distinct strings stay distinct.
pub(crate) fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '*' => out.push_str("%2A"),
            '?' => out.push_str("%3F"),
            '[' => out.push_str("%5B"),
            ']' => out.push_str("%5D"),
            '\\' => out.push_str("%5C"),
            c => out.push(c),
        }
    }
}

/// Escapes `s` so that, as part of a Redis glob pattern, it matches itself only.
pub(crate) fn glob_escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let digest = hash_value(&json!({"is_active": true}), 16);
        assert_eq!(
            render("p:<<filters>>", &ctx, &[]).unwrap(),
            format!("p:{digest}")
        );
        assert_eq!(
            render("p:<<ids>>", &ctx, &[]).unwrap(),
            format!("p:{}", hash_value(&json!([1, 2]), 16))
        );
        assert_eq!(
            render("p:<<code>>", &ctx, &["code"]).unwrap(),
            format!("p:{}", hash_value(&json!("NGN"), 16))
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
        let none = Context::new().with("v", &None::<String>);
        let null_string = Context::new().with("v", &Some("null"));
        assert_ne!(
            render("k:<<v>>", &none, &[]).unwrap(),
            render("k:<<v>>", &null_string, &[]).unwrap()
        );
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
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn key_templates_refuse_glob_syntax_in_their_literal_text() {
        let err = Template::parse("list[<<id>>]")
            .unwrap()
            .check_key()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("key template `list[<<id>>]` holds glob syntax"),
            "{err}"
        );
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
}

// ---------------------------------------------------------------------------------------
// The template of one `cache_fn!` function, held in a `static` in its body.

pub use self::per_function::StaticTemplate;

mod per_function {
    use super::Template;
    use crate::error::Result;
    use std::sync::{Arc, OnceLock};

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
        template: Result<Arc<Template>>,
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
                let template = Template::parse(self.source).map(Arc::new);
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
        pub(crate) fn as_key(&self) -> Result<Arc<Template>> {
            let parsed = self.parsed();
            parsed.key_check.clone()?;
            parsed.template.clone()
        }

        /// The parsed template, as an invalidation pattern.
        pub(crate) fn as_pattern(&self) -> Result<Arc<Template>> {
            self.parsed().template.clone()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_once_and_checks_as_a_key() {
            static KEY: StaticTemplate = StaticTemplate::new("user:<<id>>:<<tags>>", &["tags"]);
            let a = KEY.as_key().unwrap();
            assert!(Arc::ptr_eq(&a, &KEY.as_key().unwrap()));
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
