//! The template of one `cache_fn!` function (or one of its invalidation patterns), held
//! in a `static` in the function's body and parsed on its first call.

use super::template::{Template, TemplateRef};
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
