//! What `cache_fn!` expansions call: compile-time key checks, the choice of the arguments
//! that are serialized, and the choice between `run` and `try_run`. Reached only through
//! `$crate::__private`.

use crate::builder::cacheable::Cacheable;
use crate::builder::invalidate::Invalidate;
use crate::codec::CacheValue;
use crate::key::grammar::{self, next_placeholder, sub, Malformed};
use crate::key::Context;
use serde::Serialize;
use std::future::Future;
use std::marker::PhantomData;

// ---------------------------------------------------------------------------------------
// Compile-time checks. They run inside `const _: () = …;` items, which panic with the
// message they return, so a failure is a compile error saying what is wrong: const code
// cannot format, hence the fixed buffer.

/// What a check found: an empty message when all is well.
pub struct Msg {
    buf: [u8; 480],
    len: usize,
    full: bool,
}

impl Msg {
    const fn new() -> Msg {
        Msg {
            buf: [0; 480],
            len: 0,
            full: false,
        }
    }

    /// Appends `s`; when the buffer runs out it stops on a char boundary and ends with `…`.
    const fn push(mut self, s: &str) -> Msg {
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() && !self.full {
            let b = bytes[i];
            let starts_char = b & 0xC0 != 0x80;
            if starts_char && self.len + 4 + 3 > self.buf.len() {
                self.full = true;
                let dots = "…".as_bytes();
                let mut j = 0;
                while j < dots.len() {
                    self.buf[self.len] = dots[j];
                    self.len += 1;
                    j += 1;
                }
                break;
            }
            self.buf[self.len] = b;
            self.len += 1;
            i += 1;
        }
        self
    }

    /// `` `a`, `b` `` or `none`.
    const fn push_list(mut self, names: &[&str]) -> Msg {
        if names.is_empty() {
            return self.push("none");
        }
        let mut i = 0;
        while i < names.len() {
            if i > 0 {
                self = self.push(", ");
            }
            self = self.push("`").push(arg_name(names[i])).push("`");
            i += 1;
        }
        self
    }

    /// True when the check failed.
    pub const fn failed(&self) -> bool {
        self.len > 0
    }

    /// The message.
    pub const fn as_str(&self) -> &str {
        let (text, _) = self.buf.split_at(self.len);
        match core::str::from_utf8(text) {
            Ok(msg) => msg,
            Err(_) => "cache_fn!: invalid key template",
        }
    }
}

const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The name of an argument as the key sees it: `type` for `r#type`.
pub const fn arg_name(ident: &str) -> &str {
    let b = ident.as_bytes();
    if b.len() > 2 && b[0] == b'r' && b[1] == b'#' {
        let (_, rest) = b.split_at(2);
        match core::str::from_utf8(rest) {
            Ok(name) => name,
            Err(_) => ident,
        }
    } else {
        ident
    }
}

const fn is_arg(args: &[&str], name: &str) -> bool {
    let mut i = 0;
    while i < args.len() {
        if bytes_eq(arg_name(args[i]).as_bytes(), name.as_bytes()) {
            return true;
        }
        i += 1;
    }
    false
}

/// Checks that `template` is well formed (the grammar `Template::parse` uses, in
/// `template::grammar`) and that every placeholder's root names an argument.
const fn check_template(
    what: &str,
    function: &str,
    template: &str,
    args: &[&str],
    pattern: bool,
) -> Msg {
    let mut at = 0;
    loop {
        match next_placeholder(template, at) {
            Err(Malformed::BadFollower { placeholder, at }) => {
                let mut msg = Msg::new()
                    .push(what)
                    .push(" `")
                    .push(template)
                    .push("` of `")
                    .push(function)
                    .push("`: placeholder `")
                    .push(sub(template, placeholder.start, placeholder.end))
                    .push("` is followed ");
                msg = if grammar::opens_at(template, at) {
                    msg.push(grammar::FOLLOWED_DIRECTLY)
                } else {
                    msg.push("by `")
                        .push(grammar::char_at(template, at))
                        .push("`, ")
                        .push(grammar::FOLLOW_WHY)
                };
                msg = msg
                    .push(", ")
                    .push(grammar::FOLLOW_CONSEQUENCE)
                    .push(": ")
                    .push(grammar::FOLLOW_RULE);
                if pattern {
                    msg = msg.push(grammar::FOLLOW_RULE_IN_PATTERNS);
                }
                return msg.push(grammar::FOLLOW_RULE_WHY);
            }
            Err(why) => {
                return Msg::new()
                    .push(what)
                    .push(" `")
                    .push(template)
                    .push("` of `")
                    .push(function)
                    .push("` is malformed: ")
                    .push(why.what())
                    .push(" (placeholders are `<<name>>` or `<<name.field>>`, naming an argument)")
            }
            Ok(None) => return Msg::new(),
            Ok(Some(p)) => {
                let root = sub(template, p.start, p.root_end);
                if !is_arg(args, root) {
                    let mut msg = Msg::new()
                        .push(what)
                        .push(" placeholder `")
                        .push(sub(template, p.start, p.end))
                        .push("` names no argument of `")
                        .push(function)
                        .push("`");
                    if bytes_eq(root.as_bytes(), b"self") {
                        msg = msg.push(" (`self` is never part of a key; name an argument)");
                    } else {
                        if p.root_end != p.end {
                            msg = msg.push(" (its root `").push(root).push("` must be one)");
                        }
                        msg = msg.push("; its arguments: ").push_list(args);
                    }
                    return msg;
                }
                at = p.next;
            }
        }
    }
}

const fn template_uses(template: &str, name: &str) -> bool {
    let mut at = 0;
    loop {
        match next_placeholder(template, at) {
            Ok(Some(p)) => {
                if bytes_eq(
                    sub(template, p.start, p.root_end).as_bytes(),
                    name.as_bytes(),
                ) {
                    return true;
                }
                at = p.next;
            }
            _ => return false,
        }
    }
}

/// Checks a `#[cache]` key and its `hash` entries against the function's arguments.
pub const fn check_key(function: &str, key: &str, args: &[&str], hash: &[&str]) -> Msg {
    let msg = check_template("cache key", function, key, args, false);
    if msg.failed() {
        return msg;
    }
    // Placeholder names hold no glob character, so any of them is in the literal text.
    if grammar::has_glob(key) {
        return Msg::new()
            .push("cache key `")
            .push(key)
            .push("` of `")
            .push(function)
            .push("` holds glob syntax (`*`, `?`, `[` or `\\`) outside its placeholders: no invalidation pattern could match it exactly");
    }
    let mut i = 0;
    while i < hash.len() {
        let name = arg_name(hash[i]);
        if !is_arg(args, name) {
            return Msg::new()
                .push("cache `hash` entry `")
                .push(name)
                .push("` names no argument of `")
                .push(function)
                .push("`; its arguments: ")
                .push_list(args);
        }
        if !template_uses(key, name) {
            return Msg::new()
                .push("cache `hash` entry `")
                .push(name)
                .push("` names no placeholder of key `")
                .push(key)
                .push("` of `")
                .push(function)
                .push("`");
        }
        i += 1;
    }
    Msg::new()
}

/// Checks `#[invalidate]` patterns against the function's arguments.
pub const fn check_patterns(function: &str, patterns: &[&str], args: &[&str]) -> Msg {
    let mut i = 0;
    while i < patterns.len() {
        let msg = check_template("invalidation pattern", function, patterns[i], args, true);
        if msg.failed() {
            return msg;
        }
        i += 1;
    }
    Msg::new()
}

/// Checks `#[cache(tags = […])]`: each tag is a key template (no glob syntax, well-formed
/// placeholders) whose placeholders name arguments the key names too, so that the key's
/// context renders them.
pub const fn check_tags(key: &str, tags: &[&str]) -> Msg {
    let mut i = 0;
    while i < tags.len() {
        let tag = tags[i];
        if grammar::has_glob(tag) {
            return Msg::new()
                .push("cache tag `")
                .push(tag)
                .push("` holds glob syntax (`*`, `?`, `[` or `\\`) outside its placeholders: a tag is one exact name");
        }
        let mut at = 0;
        loop {
            match next_placeholder(tag, at) {
                Ok(Some(p)) => {
                    let root = sub(tag, p.start, p.root_end);
                    if !template_uses(key, root) {
                        return Msg::new()
                            .push("cache tag `")
                            .push(tag)
                            .push("`: placeholder `")
                            .push(root)
                            .push("` is not a placeholder of key `")
                            .push(key)
                            .push("`; a tag renders from the arguments the key names");
                    }
                    at = p.next;
                }
                Ok(None) => break,
                Err(_) => {
                    return Msg::new()
                        .push("cache tag `")
                        .push(tag)
                        .push("` is malformed: write placeholders as in keys, `user:<<user_id>>`");
                }
            }
        }
        i += 1;
    }
    Msg::new()
}

/// True when a placeholder of one of `templates` has `arg` as its root: that argument is
/// serialized into the context, the others are not even required to be `Serialize`.
pub const fn uses(templates: &[&str], arg: &'static str) -> bool {
    let name = arg_name(arg);
    let mut i = 0;
    while i < templates.len() {
        if template_uses(templates[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

// ---------------------------------------------------------------------------------------
// Arguments: `USED` comes from `uses`, a constant, so the `Serialize` bound is asked of
// exactly the arguments that a placeholder names, and its absence is a compile error.

/// The arguments a key names (`true`) or does not name (`false`).
pub struct NamedByKey<const USED: bool>;

/// Puts an argument the key names into the context; skips the others.
pub trait SerializeKeyArgument<T: ?Sized> {
    /// Inserts `value` as `name`, or does nothing.
    fn insert(ctx: &mut Context, name: &'static str, value: &T);
}

impl<T: Serialize + ?Sized> SerializeKeyArgument<T> for NamedByKey<true> {
    fn insert(ctx: &mut Context, name: &'static str, value: &T) {
        ctx.insert(name, value);
    }
}

impl<T: ?Sized> SerializeKeyArgument<T> for NamedByKey<false> {
    fn insert(_: &mut Context, _: &'static str, _: &T) {}
}

/// Adds argument `name` to `ctx` when a placeholder names it.
pub fn key_arg<const USED: bool, T: ?Sized>(ctx: &mut Context, name: &'static str, value: &T)
where
    NamedByKey<USED>: SerializeKeyArgument<T>,
{
    <NamedByKey<USED> as SerializeKeyArgument<T>>::insert(ctx, name, value);
}

// ---------------------------------------------------------------------------------------
// Return types: autoref specialization on the concrete return type, so that a `Result`
// reached through any alias takes the `try_*` path and everything else the plain one.

/// The declared return type `T` of a cached or invalidating function.
pub struct Ret<T: ?Sized>(PhantomData<fn() -> PhantomData<T>>);

impl<T: ?Sized> Ret<T> {
    /// The marker.
    pub const fn new() -> Self {
        Ret(PhantomData)
    }
}

impl<T: ?Sized> Default for Ret<T> {
    fn default() -> Self {
        Ret::new()
    }
}

// The call is `(&&Ret::<R>::new()).kind()`: method lookup tries `&Ret` as `Self` first
// (the receiver as it is), then `&&Ret` (autoref), then `Ret` (after one deref).

/// Chosen first: a `Result` whose error converts from [`crate::Error`], so that a failure
/// can be shared with the callers that waited on it.
pub trait SharesFailures {
    /// The `try_*_shared` path.
    fn kind(&self) -> SharedTryPath {
        SharedTryPath
    }
}

impl<T, E: From<crate::Error>> SharesFailures for &Ret<core::result::Result<T, E>> {}

/// Chosen next: any other `Result`.
pub trait ReturnsResult {
    /// The `try_*` path.
    fn kind(&self) -> TryPath {
        TryPath
    }
}

impl<T, E> ReturnsResult for &&Ret<core::result::Result<T, E>> {}

/// Chosen last: any other return type, `Option` included.
pub trait ReturnsValue {
    /// The plain path.
    fn kind(&self) -> PlainPath {
        PlainPath
    }
}

impl<T: ?Sized> ReturnsValue for Ret<T> {}

/// Results whose error converts from [`crate::Error`]: as [`TryPath`], with failures shared
/// ([`Cacheable::try_run_shared`]).
pub struct SharedTryPath;

impl SharedTryPath {
    /// [`Cacheable::try_run_shared`].
    pub fn cache<T, E, F>(self, b: Cacheable<'_>, ctx: Context, f: F) -> Result<T, E>
    where
        T: CacheValue,
        E: From<crate::Error>,
        F: FnOnce() -> Result<T, E>,
    {
        b.try_run_shared(ctx, f)
    }

    /// [`Cacheable::try_run_shared_async`].
    // Not an `async fn`: the builder's future itself, with no state machine of its own.
    pub fn cache_async<'a, T, E, F, Fut>(
        self,
        b: Cacheable<'a>,
        ctx: Context,
        f: F,
    ) -> impl Future<Output = Result<T, E>> + use<'a, T, E, F, Fut>
    where
        T: CacheValue,
        E: From<crate::Error>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        b.try_run_shared_async(ctx, f)
    }

    /// [`Invalidate::try_run`].
    pub fn invalidate<T, E, F>(self, i: Invalidate<'_>, ctx: Context, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E>,
    {
        TryPath.invalidate(i, ctx, f)
    }

    /// [`Invalidate::try_run_async`].
    pub fn invalidate_async<'a, T, E, F, Fut>(
        self,
        i: Invalidate<'a>,
        ctx: Context,
        f: F,
    ) -> impl Future<Output = Result<T, E>> + use<'a, T, E, F, Fut>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        TryPath.invalidate_async(i, ctx, f)
    }
}

/// Results: `Err` is never cached, invalidation only follows `Ok`.
pub struct TryPath;

/// Plain values, `None` included, are cached; invalidation always follows.
pub struct PlainPath;

impl TryPath {
    /// [`Cacheable::try_run`].
    pub fn cache<T, E, F>(self, b: Cacheable<'_>, ctx: Context, f: F) -> Result<T, E>
    where
        T: CacheValue,
        F: FnOnce() -> Result<T, E>,
    {
        b.try_run(ctx, f)
    }

    /// [`Cacheable::try_run_async`].
    // Not an `async fn`: the builder's future itself, with no state machine of its own.
    pub fn cache_async<'a, T, E, F, Fut>(
        self,
        b: Cacheable<'a>,
        ctx: Context,
        f: F,
    ) -> impl Future<Output = Result<T, E>> + use<'a, T, E, F, Fut>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        b.try_run_async(ctx, f)
    }

    /// [`Invalidate::try_run`].
    pub fn invalidate<T, E, F>(self, i: Invalidate<'_>, ctx: Context, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E>,
    {
        i.try_run(ctx, f)
    }

    /// [`Invalidate::try_run_async`].
    // Not an `async fn`: the builder's future itself, with no state machine of its own.
    pub fn invalidate_async<'a, T, E, F, Fut>(
        self,
        i: Invalidate<'a>,
        ctx: Context,
        f: F,
    ) -> impl Future<Output = Result<T, E>> + use<'a, T, E, F, Fut>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        i.try_run_async(ctx, f)
    }
}

impl PlainPath {
    /// [`Cacheable::run`].
    pub fn cache<T, F>(self, b: Cacheable<'_>, ctx: Context, f: F) -> T
    where
        T: CacheValue,
        F: FnOnce() -> T,
    {
        b.run(ctx, f)
    }

    /// [`Cacheable::run_async`].
    // Not an `async fn`: the builder's future itself, with no state machine of its own.
    pub fn cache_async<'a, T, F, Fut>(
        self,
        b: Cacheable<'a>,
        ctx: Context,
        f: F,
    ) -> impl Future<Output = T> + use<'a, T, F, Fut>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        b.run_async(ctx, f)
    }

    /// [`Invalidate::run`].
    pub fn invalidate<T, F>(self, i: Invalidate<'_>, ctx: Context, f: F) -> T
    where
        F: FnOnce() -> T,
    {
        i.run(ctx, f)
    }

    /// [`Invalidate::run_async`].
    // Not an `async fn`: the builder's future itself, with no state machine of its own.
    pub fn invalidate_async<'a, T, F, Fut>(
        self,
        i: Invalidate<'a>,
        ctx: Context,
        f: F,
    ) -> impl Future<Output = T> + use<'a, T, F, Fut>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        i.run_async(ctx, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_finds_roots_of_plain_and_dotted_placeholders() {
        let t = &["u:<<user.id>>:<<code>>", "x:<<r>>"];
        assert!(uses(t, "user"));
        assert!(uses(t, "code"));
        assert!(uses(t, "r#r"));
        assert!(!uses(t, "id"));
        assert!(!uses(t, "db"));
        assert!(!uses(&["loans:products:*"], "db"));
    }

    #[test]
    fn well_formed_templates_pass() {
        assert_eq!(
            check_key("f", "a:<<x>>:<<y.0>>:<<y.z_1>>", &["x", "y"], &["y"]).as_str(),
            ""
        );
        assert!(!check_patterns("f", &["a:*", "b:<<x>>:*"], &["x"]).failed());
        assert!(!check_key("f", "<<type>>", &["r#type"], &["r#type"]).failed());
    }

    fn message(msg: Msg) -> String {
        assert!(msg.failed());
        msg.as_str().to_owned()
    }

    #[test]
    fn messages_name_the_culprit() {
        assert_eq!(
            message(check_key("get", "user:<<usr_id>>", &["db", "user_id"], &[])),
            "cache key placeholder `usr_id` names no argument of `get`; its arguments: `db`, `user_id`"
        );
        assert_eq!(
            message(check_key("get", "u:<<usr.id>>", &["user"], &[])),
            "cache key placeholder `usr.id` names no argument of `get` (its root `usr` must be one); its arguments: `user`"
        );
        assert_eq!(
            message(check_key("get", "u:<<self>>", &[], &[])),
            "cache key placeholder `self` names no argument of `get` (`self` is never part of a key; name an argument)"
        );
        assert_eq!(
            message(check_key("get", "u:<<a>>", &["a", "b"], &["b"])),
            "cache `hash` entry `b` names no placeholder of key `u:<<a>>` of `get`"
        );
        assert_eq!(
            message(check_patterns("upd", &["u:<<id>>:*", "x:<<a b>>"], &["id"])),
            "invalidation pattern `x:<<a b>>` of `upd` is malformed: malformed placeholder (placeholders are `<<name>>` or `<<name.field>>`, naming an argument)"
        );
        for (bad, why) in [
            ("a:<<x", "unclosed `<<`"),
            ("a:<<>>", "empty placeholder `<<>>`"),
            ("a:<<1x>>", "malformed placeholder"),
            ("a:<<x.>>", "malformed placeholder"),
            ("a:<<.x>>", "malformed placeholder"),
            ("a:<<x<<y>>", "malformed placeholder"),
        ] {
            let text = message(check_key("f", bad, &["x"], &[]));
            assert!(text.contains(why), "{bad}: {text}");
        }
    }

    #[test]
    fn a_placeholder_followed_by_a_value_character_is_refused() {
        assert_eq!(
            message(check_key(
                "get_range",
                "range:<<from>>-<<to>>",
                &["from", "to"],
                &[]
            )),
            "cache key `range:<<from>>-<<to>>` of `get_range`: placeholder `from` is followed by \
             `-`, which a value may hold too, so two different values could give one key: a \
             placeholder must end the template or be followed by one of `: / | , ; = # & }`, \
             which values never hold: they are percent-encoded"
        );
        assert_eq!(
            message(check_patterns("upd", &["x:<<a>><<b>>"], &["a", "b"])),
            "invalidation pattern `x:<<a>><<b>>` of `upd`: placeholder `a` is followed directly \
             by another placeholder, so two different values could give one key: a placeholder \
             must end the template or be followed by one of `: / | , ; = # & }` (in an \
             invalidation pattern, also by a glob character `* ? [`), which values never hold: \
             they are percent-encoded"
        );
        let text = message(check_key("f", "k:<<x>>é", &["x"], &[]));
        assert!(text.contains("is followed by `é`"), "{text}");
        // A pattern may widen right after a placeholder; a key may not hold glob syntax.
        assert!(!check_patterns("f", &["range:<<x>>*", "p:<<x>>[0-9]"], &["x"]).failed());
        assert!(message(check_key("f", "range:<<x>>*", &["x"], &[])).contains("holds glob syntax"));
        assert!(!check_key("f", "wallets:{<<x>>}:summary", &["x"], &[]).failed());
        assert!(!check_key("f", "v<<x>>/a|b,c;d=e#f&g", &["x"], &[]).failed());
    }

    #[test]
    fn compile_time_and_run_time_checks_agree() {
        for t in [
            "range:<<from>>-<<to>>",
            "range:<<from>>:<<to>>",
            "a:<<x",
            "a:<<>>",
            "a:<<1x>>",
            "a:<<x.0>>",
            "<<x>><<y>>",
            "v<<x>>:y",
            "k:<<x>>*",
            "k:<<x>>\\*",
            "k:<<x.y>>}",
        ] {
            let compile_time = !check_patterns("f", &[t], &["x", "y", "from", "to"]).failed();
            let run_time = crate::key::Template::parse(t).is_ok();
            assert_eq!(compile_time, run_time, "{t}");
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long: &'static str = "é".repeat(400).leak();
        let text = message(check_key(long, "a:<<x>>", &[], &[]));
        assert!(text.ends_with('…') && text.len() <= 480, "{text}");
    }
}

// ---------------------------------------------------------------------------------------
// Whole-attribute checks for `cache_fn!`: a `#[cache]`'s key, hash entries and literal
// `ttl`, an `#[invalidate]`'s patterns and hash entries. Kept apart from the template
// grammar above, which they call.

pub use self::attribute_checks::{check_cache, check_invalidate};

/// The declared return type of a function, `()` when it declares none: an expansion
/// writes `Out<$($ret)?>`, so it needs no second rule for a missing `-> T`.
pub type Out<T = ()> = T;

mod attribute_checks {
    use super::{arg_name, check_key, check_patterns, is_arg, template_uses, Msg};

    /// Checks a `#[cache]` attribute: its key and `hash` entries (as [`check_key`] does),
    /// and its `ttl` when that is an integer literal (`ttl` is its source text, empty when
    /// the attribute has none): zero or negative seconds would never cache.
    pub const fn check_cache(
        function: &str,
        key: &str,
        args: &[&str],
        hash: &[&str],
        ttl: &str,
    ) -> Msg {
        let msg = check_key(function, key, args, hash);
        if msg.failed() {
            return msg;
        }
        match int_literal(ttl) {
            Some(Sign::Zero) => Msg::new()
                .push("`ttl = ")
                .push(ttl)
                .push("` of `")
                .push(function)
                .push("` never caches: a value that lives 0 seconds is not stored; give a positive number of seconds or a `Duration`"),
            Some(Sign::Negative) => Msg::new()
                .push("`ttl = ")
                .push(ttl)
                .push("` of `")
                .push(function)
                .push("` is negative and would never cache; give a positive number of seconds or a `Duration`"),
            _ => Msg::new(),
        }
    }

    /// Checks an `#[invalidate]` attribute: its patterns (as [`check_patterns`] does), and
    /// that each `hash` entry names an argument and a placeholder of one of the patterns.
    pub const fn check_invalidate(
        function: &str,
        patterns: &[&str],
        args: &[&str],
        hash: &[&str],
    ) -> Msg {
        let msg = check_patterns(function, patterns, args);
        if msg.failed() {
            return msg;
        }
        let mut i = 0;
        while i < hash.len() {
            let name = arg_name(hash[i]);
            if !is_arg(args, name) {
                return Msg::new()
                    .push("invalidation `hash` entry `")
                    .push(name)
                    .push("` names no argument of `")
                    .push(function)
                    .push("`; its arguments: ")
                    .push_list(args);
            }
            let mut used = false;
            let mut j = 0;
            while j < patterns.len() {
                used = used || template_uses(patterns[j], name);
                j += 1;
            }
            if !used {
                return Msg::new()
                    .push("invalidation `hash` entry `")
                    .push(name)
                    .push("` names no placeholder of the patterns of `")
                    .push(function)
                    .push("`");
            }
            i += 1;
        }
        Msg::new()
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Sign {
        Negative,
        Zero,
        Positive,
    }

    /// The sign of an integer literal's source text (`0`, `-5`, `600_u64`, `0x0`), or
    /// `None` when the text is anything else (an expression, a constant, a `Duration`).
    const fn int_literal(text: &str) -> Option<Sign> {
        let b = text.as_bytes();
        let mut i = 0;
        let negative = i < b.len() && b[i] == b'-';
        if negative {
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
        }
        let mut radix = 10;
        if i + 1 < b.len() && b[i] == b'0' {
            match b[i + 1] {
                b'x' => radix = 16,
                b'o' => radix = 8,
                b'b' => radix = 2,
                _ => {}
            }
            if radix != 10 {
                i += 2;
            }
        }
        let (mut digits, mut zero) = (0, true);
        while i < b.len() {
            let c = b[i];
            let digit = match radix {
                16 => c.is_ascii_hexdigit(),
                8 => c >= b'0' && c <= b'7',
                2 => c == b'0' || c == b'1',
                _ => c.is_ascii_digit(),
            };
            if digit {
                digits += 1;
                zero = zero && c == b'0';
            } else if c != b'_' {
                break;
            }
            i += 1;
        }
        if digits == 0 {
            return None;
        }
        // An integer suffix (`u64`, `i32`, `usize`) may follow; nothing else may.
        if i < b.len() {
            if !(b[i] == b'u' || b[i] == b'i') {
                return None;
            }
            i += 1;
            while i < b.len() {
                if !b[i].is_ascii_alphanumeric() {
                    return None;
                }
                i += 1;
            }
        }
        Some(if zero {
            Sign::Zero
        } else if negative {
            Sign::Negative
        } else {
            Sign::Positive
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn integer_literals_are_read_with_their_sign() {
            for (text, sign) in [
                ("0", Some(Sign::Zero)),
                ("000", Some(Sign::Zero)),
                ("0_u64", Some(Sign::Zero)),
                ("0x0", Some(Sign::Zero)),
                ("-0", Some(Sign::Zero)),
                ("-5", Some(Sign::Negative)),
                ("- 5", Some(Sign::Negative)),
                ("600", Some(Sign::Positive)),
                ("1_800u32", Some(Sign::Positive)),
                ("0b10", Some(Sign::Positive)),
                ("", None),
                ("60 * 10", None),
                ("TTL", None),
                ("Duration::from_secs(0)", None),
                ("0.5", None),
            ] {
                assert_eq!(int_literal(text), sign, "{text:?}");
            }
        }

        #[test]
        fn zero_and_negative_ttl_literals_fail() {
            let msg = check_cache("get", "k:<<id>>", &["id"], &[], "0");
            assert_eq!(
                msg.as_str(),
                "`ttl = 0` of `get` never caches: a value that lives 0 seconds is not stored; give a positive number of seconds or a `Duration`"
            );
            assert!(check_cache("get", "k:<<id>>", &["id"], &[], "-1").failed());
            assert!(!check_cache("get", "k:<<id>>", &["id"], &[], "60").failed());
            assert!(!check_cache("get", "k:<<id>>", &["id"], &[], "").failed());
            assert!(!check_cache("get", "k:<<id>>", &["id"], &[], "Duration::ZERO").failed());
        }

        #[test]
        fn invalidation_hash_entries_name_an_argument_and_a_placeholder() {
            let patterns = &["user:<<user_id>>:profile", "wallets:<<user_id>>:*"];
            assert!(!check_invalidate("upd", patterns, &["user_id"], &["user_id"]).failed());
            assert_eq!(
                check_invalidate("upd", patterns, &["user_id", "data"], &["usr_id"]).as_str(),
                "invalidation `hash` entry `usr_id` names no argument of `upd`; its arguments: `user_id`, `data`"
            );
            assert_eq!(
                check_invalidate("upd", patterns, &["user_id", "data"], &["data"]).as_str(),
                "invalidation `hash` entry `data` names no placeholder of the patterns of `upd`"
            );
            assert!(check_invalidate("upd", &["x:<<y>>"], &["user_id"], &[]).failed());
        }
    }
}
