//! `ctx!` and `cache_fn!`, and what their expansions call.

pub(crate) mod support;

/// Builds a [`Context`](crate::Context) from variables and expressions.
///
/// ```
/// use cacheable::ctx;
///
/// let user_id = 42;
/// let filters = std::collections::HashMap::from([("is_active", true)]);
/// let c = ctx! { user_id, filters, code = "NGN" };
/// assert_eq!(c.names().collect::<Vec<_>>(), ["user_id", "filters", "code"]);
/// assert!(ctx! {}.is_empty());
/// ```
///
/// Each value must implement `serde::Serialize`; it is serialized (by reference) when
/// the context is built.
#[macro_export]
macro_rules! ctx {
    () => {
        $crate::__private::Context::new()
    };
    ($($name:ident $(= $value:expr)?),+ $(,)?) => {{
        let mut __cacheable_ctx = $crate::__private::Context::new();
        $(
            __cacheable_ctx.insert(
                $crate::__private::stringify!($name),
                &$crate::__ctx_value!($name $(= $value)?),
            );
        )+
        __cacheable_ctx
    }};
    ($($other:tt)+) => {
        $crate::__ctx_error! { $($other)+ }
    };
}

/// Not public API: finds the `ctx!` entry that is neither `name` nor `name = value`, and
/// says how to write it.
#[doc(hidden)]
#[macro_export]
macro_rules! __ctx_error {
    ($name:ident $(= $value:expr)?, $($rest:tt)*) => {
        $crate::__ctx_error! { $($rest)* }
    };
    ($root:ident . $($rest:tt)*) => {
        $crate::__ctx_error! { @dotted [$root] $($rest)* }
    };
    (@dotted [$($path:tt)*] $field:tt . $($rest:tt)*) => {
        $crate::__ctx_error! { @dotted [$($path)* . $field] $($rest)* }
    };
    (@dotted [$root:ident $($path:tt)*] $field:ident $($rest:tt)*) => {
        $crate::__private::compile_error! {
            $crate::__private::concat!(
                "ctx! takes names, not field accesses: write `",
                $crate::__private::stringify!($field), " = ",
                $crate::__private::stringify!($root$($path)*.$field),
                "` for a `<<", $crate::__private::stringify!($field),
                ">>` placeholder, or `", $crate::__private::stringify!($root),
                "` for a `<<", $crate::__private::stringify!($root$($path)*.$field),
                ">>` placeholder, which walks into its value"
            )
        }
    };
    (@dotted [$root:ident $($path:tt)*] $field:tt $($rest:tt)*) => {
        $crate::__private::compile_error! {
            $crate::__private::concat!(
                "ctx! takes names, not field accesses: write `name = ",
                $crate::__private::stringify!($root$($path)*.$field),
                "` for a `<<name>>` placeholder, or `", $crate::__private::stringify!($root),
                "` for a `<<", $crate::__private::stringify!($root$($path)*.$field),
                ">>` placeholder, which walks into its value"
            )
        }
    };
    ($($other:tt)*) => {
        $crate::__private::compile_error! {
            "ctx! takes `name` or `name = value` entries separated by commas, \
             such as `ctx! { user_id, code = \"NGN\" }`"
        }
    };
}

/// Not public API: the value of one `ctx!` entry.
#[doc(hidden)]
#[macro_export]
macro_rules! __ctx_value {
    ($name:ident) => {
        $name
    };
    ($name:ident = $value:expr) => {
        $value
    };
}

/// Defines functions whose results are cached, or whose success invalidates cached results.
///
/// ```
/// use cacheable::{cache_fn, CacheManager, Config};
/// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
///
/// /// A database handle: not `Serialize`, and it need not be, since no key names it.
/// pub struct Db { queries: AtomicU32 }
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// pub struct Profile { id: i64, name: String }
///
/// #[derive(Debug)]
/// pub struct DbError;
///
/// cache_fn! {
///     /// Doc comments and other attributes are kept.
///     #[cache(key = "user:<<user_id>>:profile", ttl = 600)]
///     pub fn get_user_profile(db: &Db, user_id: i64) -> Result<Profile, DbError> {
///         db.queries.fetch_add(1, SeqCst);
///         Ok(Profile { id: user_id, name: "Ada".into() })
///     }
///
///     #[invalidate("user:<<user_id>>:profile", "wallets:<<user_id>>:*")]
///     pub fn update_user_profile(db: &Db, user_id: i64, name: String) -> Result<(), DbError> {
///         let _ = (db, name);
///         Ok(())
///     }
/// }
///
/// CacheManager::init(Config::memory().prefix("paycore"))?;
/// let db = Db { queries: AtomicU32::new(0) };
/// get_user_profile(&db, 123).unwrap(); // miss: queries
/// get_user_profile(&db, 123).unwrap(); // hit
/// assert_eq!(db.queries.load(SeqCst), 1);
/// assert_eq!(CacheManager::keys("user:*")?, ["user:123:profile"]);
///
/// update_user_profile(&db, 123, "Grace".into()).unwrap(); // Ok: invalidates
/// get_user_profile(&db, 123).unwrap(); // miss again
/// assert_eq!(db.queries.load(SeqCst), 2);
/// # Ok::<(), cacheable::Error>(())
/// ```
///
/// Generic functions work too, such as those written against a repository trait:
///
/// ```
/// use cacheable::{cache_fn, Cache, Config};
/// use std::fmt::{Debug, Display};
/// use std::sync::LazyLock;
///
/// static CACHE: LazyLock<Cache> = LazyLock::new(|| Cache::new(Config::memory()).unwrap());
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// pub struct Item { id: u64 }
///
/// pub trait Repo {
///     type Error;
///     fn item(&self, id: u64) -> Result<Item, Self::Error>;
/// }
///
/// cache_fn! {
///     /// The repository need not be `Serialize`: no key names it.
///     #[cache(key = "item:<<id>>", ttl = 60, cache = &CACHE)]
///     pub async fn load_item<R: Repo + Sync>(repo: &R, id: u64) -> Result<Item, R::Error> {
///         repo.item(id)
///     }
///
///     #[cache(key = "label:<<name>>:<<id>>", cache = &CACHE)]
///     pub fn label<'a, R>(repo: &R, name: &'a str, id: u64, note: impl Display) -> String
///     where
///         R: Repo,
///         R::Error: Debug,
///     {
///         format!("{name}: {:?} ({note})", repo.item(id).map(|item| item.id))
///     }
/// }
///
/// struct Db;
/// impl Repo for Db {
///     type Error = String;
///     fn item(&self, id: u64) -> Result<Item, String> {
///         Ok(Item { id })
///     }
/// }
///
/// assert_eq!(label(&Db, "ada", 7, "first"), "ada: Ok(7) (first)");
/// assert_eq!(label(&Db, "ada", 7, "second"), "ada: Ok(7) (first)"); // `note` is not in the key
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// assert_eq!(rt.block_on(load_item(&Db, 7)).unwrap().id, 7);
/// ```
///
/// # Syntax
///
/// One invocation holds any number of `fn` or `async fn` items, free functions or methods
/// (put the invocation inside the `impl` block, or wrap the `impl` block in it), with any
/// visibility. Each carries exactly one of:
///
/// - `#[cache(key = "…", ttl = N, hash = [a, b], debug = true, cache = &CACHE)]`: only `key`
///   is required, a string literal. `ttl` is seconds or a `Duration` (the cache's default
///   TTL otherwise); an integer literal must be positive, since a value that lives `0`
///   seconds is never cached. `hash` names arguments whose values are hashed even when
///   scalar; `debug` logs the `[Cache Debug]` lines; `cache` is an expression yielding
///   `&Cache`, evaluated on each call (`&self.cache` in a method works), for another cache
///   than the global one.
///   Freshness options, each a builder call of [`Cacheable`](crate::Cacheable):
///   `tags = ["user:<<user_id>>"]` (after `key`; each tag's placeholders must be the key's,
///   checked at compile time), `early_refresh = 1.0`, `stale_if_error = D`,
///   `stale_while_revalidate = D`, `fail_safe_throttle = D` and `jitter = D` (seconds or a
///   `Duration`);
///   `fallback = EXPR` for a function returning `Result` (the `Ok` value answered when it
///   fails with nothing stale to serve, see [`Cacheable::fallback`](crate::Cacheable::fallback);
///   of the `Ok` type exactly, so an integer literal takes its suffix: `fallback = 0u32`);
///   `hard_timeout = D` for an async function whose error converts from
///   [`Error`](crate::Error) (see [`Cacheable::hard_timeout`](crate::Cacheable::hard_timeout)).
///   Per-call controls: `store_if = path::to::fn` (a
///   `fn(&T) -> bool` on the value, `T` being the `Ok` type of a `Result`; the value is
///   stored only when it holds), `ttl_from = path::to::fn` (a `fn(&T) -> Duration`: the
///   TTL from the value, zero for none), `sliding = true` (a hit pushes the expiry to a
///   full TTL again) and `near = false` (the store answers, never the near cache); see
///   [`Cacheable::store_if`](crate::Cacheable::store_if),
///   [`ttl_from`](crate::Cacheable::ttl_from), [`sliding`](crate::Cacheable::sliding) and
///   [`near`](crate::Cacheable::near). A function's [`Outcome`](crate::Outcome): call it
///   inside [`Outcome::of`](crate::Outcome::of).
/// - `#[invalidate("p1", "p2", …, tags = ["t"], hash = [a], debug = true, cache = &CACHE)]`:
///   keys or glob patterns to delete after the function returns, and tags whose keys go
///   too (patterns or tags, at least one). `hash` names arguments hashed as in the
///   `#[cache(hash = …)]` whose keys the patterns name, so that they render the same.
///
/// Other attributes and doc comments stay on the function. Arguments are `name: Type`
/// (`impl Trait` types included), `mut name: Type`, receivers (`&self`, `&mut self`,
/// `self`, `self: Arc<Self>`) or destructuring patterns (`State(pool): State<Pool>`,
/// `(a, b): (u32, u32)`, `_: T`). Functions may be generic: lifetime, type and `const`
/// parameters with bounds, and `where` clauses. `const`, `unsafe` and `extern` functions
/// are not supported. The `cache` expression is evaluated before the body runs and stays
/// borrowed while it does: `&self.cache` in a `&self` method works, as does a field of a
/// reference argument.
///
/// The key holds the arguments that its placeholders name, not the type parameters: two
/// instantiations of a generic function share their keys unless a placeholder tells them
/// apart, so a function generic over its return type wants an argument in its key that
/// differs from one type to the next (or a function per type).
///
/// # Keys and arguments
///
/// Placeholders `<<name>>` and `<<name.field>>` name arguments; receivers and patterns are
/// never part of a key. What is checked when:
///
/// - at compile time: the template's grammar (including what may follow a placeholder),
///   glob syntax in a key, that every placeholder's root (`user` of `<<user.id>>`) and
///   every `hash` entry names an argument, and a literal `ttl` of zero. A failure is an
///   error naming the culprit, such as
///
///   ```text
///   error[E0080]: evaluation panicked: cache key placeholder `usr_id` names no argument of
///                 `get_user_profile`; its arguments: `db`, `user_id`
///   ```
/// - at run time, on every call: the fields of a dotted path (`id` of `<<user.id>>`), which
///   are looked up in the argument's serde form, so a `#[serde(rename)]` counts. A typo
///   there fails open: the body's value is returned, the fault counted in
///   [`Stats::errors`](crate::Stats) and logged (once a second for that template), with a
///   debug line for each call. With [`Config::strict`](crate::Config::strict) (tests,
///   development) it panics with the message instead.
///
/// Only the arguments a placeholder names are serialized, so the others (a pool, an axum
/// `State`, a request, a generic repository) need not implement `Serialize`. An argument a
/// placeholder names must, or compilation fails with ``the trait bound `Pool:
/// serde::Serialize` is not satisfied``. Argument values are read before the body runs, so
/// an invalidation uses the values the function was called with.
///
/// # Results
///
/// The declared return type chooses the builder's finisher. A `Result`, whatever alias
/// spells it (`anyhow::Result<T>`, `std::io::Result<T>`, a crate's own `Result<T>`),
/// goes to [`try_run`](crate::Cacheable::try_run): an `Err` is returned and never cached,
/// and an invalidation happens only after `Ok`. Any other type, `Option` included, is a
/// plain value: `None` is cached, and invalidation always follows. Cached values are
/// `Serialize + DeserializeOwned`. Caching is fail-open: a cache fault is logged and the
/// body's value returned.
///
/// # What it expands to
///
/// Nothing but a call of the builders. The first function above becomes, in outline
/// (the crate's items are reached through `$crate::__private`, so a caller's own
/// `Result`, `Ok` or `format!` cannot interfere):
///
/// ```ignore
/// /// Doc comments and other attributes are kept.
/// pub fn get_user_profile(db: &Db, user_id: i64) -> Result<Profile, DbError> {
///     // Evaluated by the compiler: each placeholder and hash entry names an argument
///     // and a literal `ttl` is positive, or the build fails with the message.
///     const _: () = {
///         let check = check_cache("get_user_profile", "user:<<user_id>>:profile",
///                                 &["db", "user_id"], &[], "600");
///         if check.failed() { panic!("{}", check.as_str()) }
///     };
///     // One per function, as `tracing` has one callsite per event: the template is
///     // parsed and checked on the first call only. Not generic, so it may stand in a
///     // generic function.
///     static __CACHEABLE_TEMPLATE: StaticTemplate =
///         StaticTemplate::new("user:<<user_id>>:profile", &[]);
///     let builder = cacheable(&__CACHEABLE_TEMPLATE)
///         .name("get_user_profile")
///         .ttl(600);
///     let mut ctx = Context::new();
///     // The constant says whether a placeholder names the argument: `user_id` is
///     // serialized; `db` is skipped, and need not be `Serialize`.
///     key_arg::<{ uses(&["user:<<user_id>>:profile"], "db") }, _>(&mut ctx, "db", &db);
///     key_arg::<{ uses(&["user:<<user_id>>:profile"], "user_id") }, _>(
///         &mut ctx, "user_id", &user_id);
///     // Autoref specialization on the declared type: a `Result` picks `try_run`,
///     // any other type `run`.
///     (&&Ret::<Result<Profile, DbError>>::new())
///         .kind()
///         .cache(builder, ctx, move || -> Result<Profile, DbError> { /* body */ })
/// }
/// ```
///
/// An `async fn` awaits `try_run_async`/`run_async` with `move || async move { body }`
/// instead, and `#[invalidate]` calls [`Invalidate`](crate::Invalidate)'s finishers with
/// one `static` array of templates.
///
/// Each function of an invocation expands beside the others, so a block of any size stays
/// far below the recursion limit, as long as every generic parameter and `where` predicate
/// is of the usual forms: lifetimes with lifetime bounds, then type and `const` parameters
/// whose bounds are lifetimes, `?Sized`, or trait paths with lifetime, type and
/// `Name = Type` arguments or `Fn(…) -> Name` sugar, and `where` predicates on a type
/// parameter or its associated type (`R::Error: Debug`). A block holding a function of
/// another form (`where Vec<T>: Clone`, a higher-ranked bound, a trait path's arguments
/// closing the parameter list as in `<T: Into<String>>`) is expanded one function after
/// another instead, which the default recursion limit bounds to about a hundred functions;
/// `<T: Into<String> >` or a `where` clause keeps such a function on the first path. One
/// form fails on both: a bound whose generic argument starts with a keyword, as in
/// `T: AsRef<dyn Any>` or `F: Into<fn(u8)>`, is refused with ``expected identifier, found
/// keyword `dyn` ``; name that type with a `type` alias (`type AnyRef = dyn Any;`).
#[macro_export]
macro_rules! cache_fn {
    // ---- the usual case: a repetition that matches whole functions, so that each one
    // expands beside the others (depth stays flat however many there are). Everything
    // between the name and the body is matched by fragments that cannot begin with `{`,
    // hence no local ambiguity; bounds are spelt out piece by piece, since `path` and `ty`
    // fragments may not be followed by `+` and cannot be emitted as bounds.
    ($(
        $(#[$($attr:tt)*])*
        $vis:vis $(async $async:vis)? fn $name:ident
        $(<
            $($lt:lifetime $(: $($lt_b:lifetime)++)?),* $(,)?
            $($($tp:ident)+ $(:
                $($g1_lt:lifetime)? $(? $g1_q:ident)?
                $($g1_p:ident $(:: $g1_s:ident)*
                    $(< $($g1_al:lifetime),* $(,)? $($g1_ap:path $(= $g1_av:ty)?),* >)?
                    $(($($g1_f:tt)*) $(-> $g1_r:ident $(:: $g1_rs:ident)*)?)?
                )?
                $(+ $($g2_lt:lifetime)? $(? $g2_q:ident)?
                    $($g2_p:ident $(:: $g2_s:ident)*
                        $(< $($g2_al:lifetime),* $(,)? $($g2_ap:path $(= $g2_av:ty)?),* >)?
                        $(($($g2_f:tt)*) $(-> $g2_r:ident $(:: $g2_rs:ident)*)?)?
                    )?
                )*
            )?),* $(,)?
        >)?
        ($($args:tt)*)
        $(-> $ret:ty)?
        $(where $($wt:ident $(:: $wt_s:ident)* :
            $($w1_lt:lifetime)? $(? $w1_q:ident)?
            $($w1_p:ident $(:: $w1_s:ident)*
                $(< $($w1_al:lifetime),* $(,)? $($w1_ap:path $(= $w1_av:ty)?),* >)?
                $(($($w1_f:tt)*) $(-> $w1_r:ident $(:: $w1_rs:ident)*)?)?
            )?
            $(+ $($w2_lt:lifetime)? $(? $w2_q:ident)?
                $($w2_p:ident $(:: $w2_s:ident)*
                    $(< $($w2_al:lifetime),* $(,)? $($w2_ap:path $(= $w2_av:ty)?),* >)?
                    $(($($w2_f:tt)*) $(-> $w2_r:ident $(:: $w2_rs:ident)*)?)?
                )?
            )*
        ),* $(,)?)?
        {$($body:tt)*}
    )*) => {$(
        $crate::__cache_fn! { @attrs
            {
                [$(async $async)?] [$vis] $name
                [$(<
                    $($lt $(: $($lt_b)++)?,)*
                    $($($tp)+ $(:
                        $($g1_lt)? $(? $g1_q)?
                        $($g1_p $(:: $g1_s)*
                            $(< $($g1_al,)* $($g1_ap $(= $g1_av)?,)* >)?
                            $(($($g1_f)*) $(-> $g1_r $(:: $g1_rs)*)?)?
                        )?
                        $(+ $($g2_lt)? $(? $g2_q)?
                            $($g2_p $(:: $g2_s)*
                                $(< $($g2_al,)* $($g2_ap $(= $g2_av)?,)* >)?
                                $(($($g2_f)*) $(-> $g2_r $(:: $g2_rs)*)?)?
                            )?
                        )*
                    )?,)*
                >)?]
                [$($args)*] [$($ret)?]
                [$(where $($wt $(:: $wt_s)* :
                    $($w1_lt)? $(? $w1_q)?
                    $($w1_p $(:: $w1_s)*
                        $(< $($w1_al,)* $($w1_ap $(= $w1_av)?,)* >)?
                        $(($($w1_f)*) $(-> $w1_r $(:: $w1_rs)*)?)?
                    )?
                    $(+ $($w2_lt)? $(? $w2_q)?
                        $($w2_p $(:: $w2_s)*
                            $(< $($w2_al,)* $($w2_ap $(= $w2_av)?,)* >)?
                            $(($($w2_f)*) $(-> $w2_r $(:: $w2_rs)*)?)?
                        )?
                    )*
                ,)*)?]
                {$($body)*}
            }
            {} [] $(#[$($attr)*])*
        }
    )*};
    // ---- anything else: one function (or `impl` block) after another.
    ($($items:tt)*) => {
        $crate::__cache_fn! { @items $($items)* }
    };
}

/// Not public API: the rules behind [`cache_fn!`]. Each `@` rule is one step: split the
/// input into functions, sort each function's attributes, read the options, collect the
/// argument names, emit.
#[doc(hidden)]
#[macro_export]
macro_rules! __cache_fn {
    // ---- one function at a time, for blocks that the first rule of `cache_fn!` does not
    // match: each step emits a function and recurses on the rest, so depth grows by one a
    // function (two or three for a generic one).
    (@items) => {};
    (@items
        $(#[$($attr:tt)*])*
        $vis:vis $(async $async:vis)? fn $name:ident ($($args:tt)*) $(-> $ret:ty)? {$($body:tt)*}
        $($rest:tt)*
    ) => {
        $crate::__cache_fn! { @attrs
            {[$(async $async)?] [$vis] $name [] [$($args)*] [$($ret)?] [] {$($body)*}}
            {} [] $(#[$($attr)*])*
        }
        $crate::__cache_fn! { @items $($rest)* }
    };
    // Generic parameters or a `where` clause of any form: the signature runs up to the
    // first brace group, the body.
    (@items
        $(#[$($attr:tt)*])*
        $vis:vis $(async $async:vis)? fn $name:ident $($sig:tt)*
    ) => {
        $crate::__cache_fn! {
            @peel {[$(#[$($attr)*])*] [$(async $async)?] [$vis] $name} [] $($sig)*
        }
    };
    (@items $(#[$($attr:tt)*])* impl $($rest:tt)*) => {
        $crate::__cache_fn! { @impl [$(#[$($attr)*])*] [] $($rest)* }
    };
    (@items $($other:tt)+) => {
        $crate::__private::compile_error! {
            "cache_fn! expects functions: `#[cache(key = \"…\")]` or `#[invalidate(\"…\")]`, \
             other attributes, then `[pub] [async] fn name[<generics>](arguments) [-> Type] \
             [where …] { … }`, or `impl` blocks of them; const, unsafe and extern functions \
             are not supported"
        }
    };

    // ---- `impl … { functions }`: the same functions, inside the block.
    (@impl [$($attrs:tt)*] [$($head:tt)*] {$($items:tt)*} $($rest:tt)*) => {
        $($attrs)*
        impl $($head)* {
            $crate::cache_fn! { $($items)* }
        }
        $crate::cache_fn! { $($rest)* }
    };
    (@impl $attrs:tt [$($head:tt)*] $t:tt $($rest:tt)*) => {
        $crate::__cache_fn! { @impl $attrs [$($head)* $t] $($rest)* }
    };
    (@impl $attrs:tt $head:tt) => {
        $crate::__private::compile_error! { "cache_fn!: an `impl` block needs a body `{ … }`" }
    };

    // ---- a signature of any form: find the body, eight tokens a step; the rest of the
    // block goes on beside this function.
    (@peel $head:tt [$($sig:tt)*] {$($body:tt)*} $($rest:tt)*) => {
        $crate::__cache_fn! { @sig $head {$($body)*} $($sig)* }
        $crate::__cache_fn! { @items $($rest)* }
    };
    (@peel $head:tt [$($sig:tt)*] $t1:tt {$($body:tt)*} $($rest:tt)*) => {
        $crate::__cache_fn! { @sig $head {$($body)*} $($sig)* $t1 }
        $crate::__cache_fn! { @items $($rest)* }
    };
    (@peel $head:tt [$($sig:tt)*] $t1:tt $t2:tt {$($body:tt)*} $($rest:tt)*) => {
        $crate::__cache_fn! { @sig $head {$($body)*} $($sig)* $t1 $t2 }
        $crate::__cache_fn! { @items $($rest)* }
    };
    (@peel $head:tt [$($sig:tt)*] $t1:tt $t2:tt $t3:tt {$($body:tt)*} $($rest:tt)*) => {
        $crate::__cache_fn! { @sig $head {$($body)*} $($sig)* $t1 $t2 $t3 }
        $crate::__cache_fn! { @items $($rest)* }
    };
    (@peel $head:tt [$($sig:tt)*] $t1:tt $t2:tt $t3:tt $t4:tt {$($body:tt)*} $($rest:tt)*) => {
        $crate::__cache_fn! { @sig $head {$($body)*} $($sig)* $t1 $t2 $t3 $t4 }
        $crate::__cache_fn! { @items $($rest)* }
    };
    (@peel $head:tt [$($sig:tt)*] $t1:tt $t2:tt $t3:tt $t4:tt $t5:tt {$($body:tt)*}
        $($rest:tt)*
    ) => {
        $crate::__cache_fn! { @sig $head {$($body)*} $($sig)* $t1 $t2 $t3 $t4 $t5 }
        $crate::__cache_fn! { @items $($rest)* }
    };
    (@peel $head:tt [$($sig:tt)*] $t1:tt $t2:tt $t3:tt $t4:tt $t5:tt $t6:tt {$($body:tt)*}
        $($rest:tt)*
    ) => {
        $crate::__cache_fn! { @sig $head {$($body)*} $($sig)* $t1 $t2 $t3 $t4 $t5 $t6 }
        $crate::__cache_fn! { @items $($rest)* }
    };
    (@peel $head:tt [$($sig:tt)*] $t1:tt $t2:tt $t3:tt $t4:tt $t5:tt $t6:tt $t7:tt
        {$($body:tt)*} $($rest:tt)*
    ) => {
        $crate::__cache_fn! { @sig $head {$($body)*} $($sig)* $t1 $t2 $t3 $t4 $t5 $t6 $t7 }
        $crate::__cache_fn! { @items $($rest)* }
    };
    (@peel $head:tt [$($sig:tt)*] $t1:tt $t2:tt $t3:tt $t4:tt $t5:tt $t6:tt $t7:tt $t8:tt
        $($rest:tt)*
    ) => {
        $crate::__cache_fn! { @peel $head [$($sig)* $t1 $t2 $t3 $t4 $t5 $t6 $t7 $t8] $($rest)* }
    };
    (@peel {$attrs:tt $kind:tt $vis:tt $name:ident} $($rest:tt)*) => {
        $crate::__private::compile_error! {
            $crate::__private::concat!(
                "cache_fn!: `", $crate::__private::stringify!($name), "` has no body `{ … }`"
            )
        }
    };

    // ---- generic parameters: up to the `>` that closes the first `<`.
    (@sig $head:tt $body:tt < $($rest:tt)*) => {
        $crate::__cache_fn! { @gen $head $body [@] [<] $($rest)* }
    };
    (@sig $head:tt $body:tt $($rest:tt)*) => {
        $crate::__cache_fn! { @split $head $body [] $($rest)* }
    };
    (@gen $head:tt $body:tt [$($d:tt)*] [$($g:tt)*] < $($rest:tt)*) => {
        $crate::__cache_fn! { @gen $head $body [$($d)* @] [$($g)* <] $($rest)* }
    };
    (@gen $head:tt $body:tt [$($d:tt)*] [$($g:tt)*] << $($rest:tt)*) => {
        $crate::__cache_fn! { @gen $head $body [$($d)* @ @] [$($g)* <<] $($rest)* }
    };
    (@gen $head:tt $body:tt [@] [$($g:tt)*] > $($rest:tt)*) => {
        $crate::__cache_fn! { @split $head $body [$($g)* >] $($rest)* }
    };
    (@gen $head:tt $body:tt [@ $($d:tt)+] [$($g:tt)*] > $($rest:tt)*) => {
        $crate::__cache_fn! { @gen $head $body [$($d)+] [$($g)* >] $($rest)* }
    };
    (@gen $head:tt $body:tt [@ @] [$($g:tt)*] >> $($rest:tt)*) => {
        $crate::__cache_fn! { @split $head $body [$($g)* >>] $($rest)* }
    };
    (@gen $head:tt $body:tt [@ @ $($d:tt)+] [$($g:tt)*] >> $($rest:tt)*) => {
        $crate::__cache_fn! { @gen $head $body [$($d)+] [$($g)* >>] $($rest)* }
    };
    (@gen $head:tt $body:tt $d:tt [$($g:tt)*] $t:tt $($rest:tt)*) => {
        $crate::__cache_fn! { @gen $head $body $d [$($g)* $t] $($rest)* }
    };
    (@gen {$attrs:tt $kind:tt $vis:tt $name:ident} $($rest:tt)*) => {
        $crate::__private::compile_error! {
            $crate::__private::concat!(
                "cache_fn!: the generic parameters of `", $crate::__private::stringify!($name),
                "` are not closed"
            )
        }
    };
    (@split {[$($attr:tt)*] $kind:tt [$vis:vis] $name:ident} $body:tt [$($gen:tt)*]
        ($($args:tt)*) $(-> $ret:ty)? $(where $($where:tt)*)?
    ) => {
        $crate::__cache_fn! { @attrs
            {$kind [$vis] $name [$($gen)*] [$($args)*] [$($ret)?] [$(where $($where)*)?] $body}
            {} [] $($attr)*
        }
    };
    (@split {$attrs:tt $kind:tt $vis:tt $name:ident} $($rest:tt)*) => {
        $crate::__private::compile_error! {
            $crate::__private::concat!(
                "cache_fn!: cannot read the signature of `", $crate::__private::stringify!($name),
                "`: expected `fn name[<generics>](arguments) [-> Type] [where …] { … }`"
            )
        }
    };

    // ---- attributes: take out `#[cache(…)]` or `#[invalidate(…)]`, keep the others.
    (@attrs $sig:tt {} [$($kept:tt)*] #[cache ($($opts:tt)*)] $($rest:tt)*) => {
        $crate::__cache_fn! { @attrs $sig {cache ($($opts)*)} [$($kept)*] $($rest)* }
    };
    (@attrs $sig:tt {} [$($kept:tt)*] #[invalidate ($($opts:tt)*)] $($rest:tt)*) => {
        $crate::__cache_fn! { @attrs $sig {invalidate ($($opts)*)} [$($kept)*] $($rest)* }
    };
    (@attrs $sig:tt {} $kept:tt #[cache $($bad:tt)*] $($rest:tt)*) => {
        $crate::__private::compile_error! {
            "write `#[cache(key = \"…\", ttl = N, hash = [a, b], debug = true)]`"
        }
    };
    (@attrs $sig:tt {} $kept:tt #[invalidate $($bad:tt)*] $($rest:tt)*) => {
        $crate::__private::compile_error! { "write `#[invalidate(\"pattern\", …)]`" }
    };
    (@attrs $sig:tt {$($spec:tt)+} $kept:tt #[cache $($x:tt)*] $($rest:tt)*) => {
        $crate::__private::compile_error! {
            "a function takes one `#[cache(…)]` or `#[invalidate(…)]` attribute"
        }
    };
    (@attrs $sig:tt {$($spec:tt)+} $kept:tt #[invalidate $($x:tt)*] $($rest:tt)*) => {
        $crate::__private::compile_error! {
            "a function takes one `#[cache(…)]` or `#[invalidate(…)]` attribute"
        }
    };
    // Doc comments are one attribute a line: keep them eight at a time, so that a long
    // one stays far from the recursion limit.
    (@attrs $sig:tt $spec:tt [$($kept:tt)*]
        #[doc $($d1:tt)*] #[doc $($d2:tt)*] #[doc $($d3:tt)*] #[doc $($d4:tt)*]
        #[doc $($d5:tt)*] #[doc $($d6:tt)*] #[doc $($d7:tt)*] #[doc $($d8:tt)*]
        $($rest:tt)*
    ) => {
        $crate::__cache_fn! { @attrs $sig $spec [$($kept)*
            #[doc $($d1)*] #[doc $($d2)*] #[doc $($d3)*] #[doc $($d4)*]
            #[doc $($d5)*] #[doc $($d6)*] #[doc $($d7)*] #[doc $($d8)*]
        ] $($rest)* }
    };
    (@attrs $sig:tt $spec:tt [$($kept:tt)*] #[$($attr:tt)*] $($rest:tt)*) => {
        $crate::__cache_fn! { @attrs $sig $spec [$($kept)* #[$($attr)*]] $($rest)* }
    };
    (@attrs {$kind:tt [$vis:vis] $name:ident $($sig:tt)*} {} $kept:tt) => {
        $crate::__private::compile_error! {
            $crate::__private::concat!(
                "cache_fn!: `", $crate::__private::stringify!($name),
                "` needs `#[cache(key = \"…\")]` or `#[invalidate(\"pattern\", …)]`"
            )
        }
    };
    (@attrs $sig:tt {cache ($($opts:tt)*)} $kept:tt) => {
        $crate::__cache_fn! { @cache $sig $kept {[] [] [] []} $($opts)* }
    };
    (@attrs $sig:tt {invalidate ($($opts:tt)*)} $kept:tt) => {
        $crate::__cache_fn! { @invalidate $sig $kept {[] [] [] []} $($opts)* }
    };

    // ---- `#[cache(…)]` options; the state is {[key] [hash names] [builder calls] [ttl]}.
    (@cache $sig:tt $kept:tt {[] $h:tt $c:tt $t:tt} key = $key:literal $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {[$key] $h $c $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {[$k:literal] $h:tt $c:tt $t:tt} key = $($rest:tt)*) => {
        $crate::__private::compile_error! { "`#[cache]` takes one `key`" }
    };
    (@cache $sig:tt $kept:tt $st:tt key = $($rest:tt)*) => {
        $crate::__private::compile_error! {
            "`#[cache]`: `key` must be a string literal, such as `key = \"user:<<user_id>>:profile\"`"
        }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] []} ttl = $ttl:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .ttl($ttl)] [$ttl]} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt $st:tt ttl = $($rest:tt)*) => {
        $crate::__private::compile_error! { "`#[cache]` takes one `ttl`" }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} debug = $on:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .debug($on)] $t} $($($rest)*)? }
    };
    // Freshness options: builder calls; tags are checked against the key.
    (@cache $sig:tt $kept:tt {[$k:literal] $h:tt [$($c:tt)*] $t:tt}
        tags = [$($tag:literal),* $(,)?] $(, $($rest:tt)*)?
    ) => {
        $crate::__cache_fn! { @cache $sig $kept {[$k] $h [$($c)* .tags({
            const _: () = {
                let check = $crate::__private::check_tags($k, &[$($tag),*]);
                if check.failed() {
                    $crate::__private::panic!("{}", check.as_str());
                }
            };
            [$($tag),*]
        })] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {[] $h:tt $c:tt $t:tt} tags = $($rest:tt)*) => {
        $crate::__private::compile_error! {
            "`#[cache]`: write `tags = [\"…\"]` after `key`, such as `#[cache(key = \"orders:<<user_id>>\", tags = [\"user:<<user_id>>\"])]`"
        }
    };
    (@cache $sig:tt $kept:tt $st:tt tags = $($rest:tt)*) => {
        $crate::__private::compile_error! {
            "`#[cache]`: `tags` is a list of string literals, such as `tags = [\"user:<<user_id>>\"]`"
        }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} early_refresh = $beta:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .early_refresh($beta)] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} stale_if_error = $d:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .stale_if_error($d)] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} fail_safe_throttle = $d:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .fail_safe_throttle($d)] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} jitter = $d:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .jitter($d)] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} hard_timeout = $d:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .hard_timeout($d)] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} fallback = $v:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .fallback($v)] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} stale_while_revalidate = $d:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .stale_while_revalidate($d)] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} cache = $cache:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .on($cache)] $t} $($($rest)*)? }
    };
    // Per-call controls: plain builder calls, so they add no code of their own.
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} store_if = $f:path $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .store_if($f)] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} ttl_from = $f:path $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .ttl_from($f)] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} sliding = $on:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .sliding($on)] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*] $t:tt} near = $on:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .near($on)] $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt [$($h:ident)*] $c:tt $t:tt}
        hash = [$($name:ident),* $(,)?] $(, $($rest:tt)*)?
    ) => {
        $crate::__cache_fn! { @cache $sig $kept {$k [$($h)* $($name)*] $c $t} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt $st:tt hash = $($rest:tt)*) => {
        $crate::__private::compile_error! {
            "`#[cache]`: `hash` is a list of argument names, such as `hash = [filters]`"
        }
    };
    (@cache $sig:tt $kept:tt $st:tt $option:ident $($rest:tt)*) => {
        $crate::__private::compile_error! {
            $crate::__private::concat!(
                "unknown `#[cache]` option `", $crate::__private::stringify!($option),
                "`; the options are key, ttl, hash, debug, cache, tags, early_refresh, stale_if_error, stale_while_revalidate, fail_safe_throttle, jitter, fallback, hard_timeout, store_if, ttl_from, sliding and near"
            )
        }
    };
    (@cache $sig:tt $kept:tt {[] $h:tt $c:tt $t:tt}) => {
        $crate::__private::compile_error! {
            "`#[cache]` needs a key, such as `#[cache(key = \"user:<<user_id>>:profile\")]`"
        }
    };
    (@cache {$kind:tt $vis:tt $name:ident $gen:tt [$($args:tt)*] $($sig:tt)*} $kept:tt $st:tt) => {
        $crate::__cache_fn! {
            @args {$kind $vis $name $gen [$($args)*] $($sig)*} $kept {cache $st} [] $($args)*
        }
    };
    (@cache $($bad:tt)*) => {
        $crate::__private::compile_error! {
            "`#[cache]` options are `key = \"…\"`, `ttl = N`, `hash = [a, b]`, `debug = bool`, \
             `cache = &Cache`, `store_if = path`, `ttl_from = path`, `sliding = bool` and `near = bool`, \
             separated by commas"
        }
    };

    // ---- `#[invalidate("p1", "p2", …)]`; the state is {[patterns] [hash names] [calls] [tags]}.
    (@invalidate $sig:tt $kept:tt {[$($p:literal)*] $h:tt $c:tt $g:tt} $pattern:literal $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @invalidate $sig $kept {[$($p)* $pattern] $h $c $g} $($($rest)*)? }
    };
    (@invalidate $sig:tt $kept:tt {$p:tt $h:tt [$($c:tt)*] $g:tt} debug = $on:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @invalidate $sig $kept {$p $h [$($c)* .debug($on)] $g} $($($rest)*)? }
    };
    (@invalidate $sig:tt $kept:tt {$p:tt $h:tt [$($c:tt)*] [$($g:literal)*]}
        tags = [$($tag:literal),* $(,)?] $(, $($rest:tt)*)?
    ) => {
        $crate::__cache_fn! { @invalidate $sig $kept {$p $h [$($c)*] [$($g)* $($tag)*]} $($($rest)*)? }
    };
    (@invalidate $sig:tt $kept:tt $st:tt tags = $($rest:tt)*) => {
        $crate::__private::compile_error! {
            "`#[invalidate]`: `tags` is a list of string literals, such as `tags = [\"user:<<user_id>>\"]`"
        }
    };
    (@invalidate $sig:tt $kept:tt {$p:tt $h:tt [$($c:tt)*] $g:tt} cache = $cache:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @invalidate $sig $kept {$p $h [$($c)* .on($cache)] $g} $($($rest)*)? }
    };
    (@invalidate $sig:tt $kept:tt {$p:tt [$($h:ident)*] [$($c:tt)*] $g:tt}
        hash = [$($name:ident),* $(,)?] $(, $($rest:tt)*)?
    ) => {
        $crate::__cache_fn! { @invalidate $sig $kept {$p [$($h)* $($name)*] [$($c)* $(
            .hash($crate::__private::arg_name($crate::__private::stringify!($name)))
        )*] $g} $($($rest)*)? }
    };
    (@invalidate $sig:tt $kept:tt $st:tt hash = $($rest:tt)*) => {
        $crate::__private::compile_error! {
            "`#[invalidate]`: `hash` is a list of argument names, such as `hash = [email]`"
        }
    };
    (@invalidate $sig:tt $kept:tt $st:tt $option:ident $($rest:tt)*) => {
        $crate::__private::compile_error! {
            $crate::__private::concat!(
                "unknown `#[invalidate]` option `", $crate::__private::stringify!($option),
                "`; it takes pattern literals, then `tags = [\"…\"]`, `hash = [a, b]`, `debug = bool` and `cache = &Cache`"
            )
        }
    };
    (@invalidate $sig:tt $kept:tt {[] $h:tt $c:tt []}) => {
        $crate::__private::compile_error! {
            "`#[invalidate]` needs at least one pattern or tag, such as `#[invalidate(\"user:<<user_id>>:*\")]` or `#[invalidate(tags = [\"user:<<user_id>>\"])]`"
        }
    };
    (@invalidate {$kind:tt $vis:tt $name:ident $gen:tt [$($args:tt)*] $($sig:tt)*} $kept:tt
        {[$($p:literal)*] $h:tt $c:tt [$($g:literal)*]}
    ) => {
        $crate::__cache_fn! {
            @args {$kind $vis $name $gen [$($args)*] $($sig)*} $kept {invalidate {[$($p)*] $h $c [$($g)*]}} []
            $($args)*
        }
    };
    (@invalidate $($bad:tt)*) => {
        $crate::__private::compile_error! {
            "`#[invalidate]` takes pattern string literals, then optionally `hash = [a, b]`, \
             `debug = bool` and `cache = &Cache`, separated by commas"
        }
    };

    // ---- arguments: collect the names a placeholder may use; receivers and patterns are
    // never part of a key.
    (@args $sig:tt $kept:tt $spec:tt [$($n:ident)*]) => {
        $crate::__cache_fn! { @emit $sig $kept $spec [$($n)*] }
    };
    (@args $sig:tt $kept:tt $spec:tt $n:tt #[$($attr:tt)*] $($rest:tt)*) => {
        $crate::__cache_fn! { @args $sig $kept $spec $n $($rest)* }
    };
    (@args $sig:tt $kept:tt $spec:tt $n:tt & $($lt:lifetime)? $(mut)? self $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @args $sig $kept $spec $n $($($rest)*)? }
    };
    (@args $sig:tt $kept:tt $spec:tt $n:tt $(mut)? self $(: $t:ty)? $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @args $sig $kept $spec $n $($($rest)*)? }
    };
    (@args $sig:tt $kept:tt $spec:tt [$($n:ident)*] mut $a:ident : $t:ty $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @args $sig $kept $spec [$($n)* $a] $($($rest)*)? }
    };
    (@args $sig:tt $kept:tt $spec:tt [$($n:ident)*] $a:ident : $t:ty $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @args $sig $kept $spec [$($n)* $a] $($($rest)*)? }
    };
    // Destructuring patterns (`State(pool): State<Pool>`, `(a, b): (i32, i32)`, `_: T`).
    (@args $sig:tt $kept:tt $spec:tt $n:tt $($path:ident)::+ $inner:tt : $t:ty $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @args $sig $kept $spec $n $($($rest)*)? }
    };
    (@args $sig:tt $kept:tt $spec:tt $n:tt $(&)? $(mut)? $inner:tt : $t:ty $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @args $sig $kept $spec $n $($($rest)*)? }
    };
    (@args $sig:tt $kept:tt $spec:tt $n:tt $($bad:tt)*) => {
        $crate::__private::compile_error! {
            "cache_fn!: unsupported argument; write `name: Type`, `mut name: Type`, a receiver, \
             or a pattern such as `State(pool): State<Pool>`"
        }
    };

    // ---- the function: the checks as a constant, the template as a static, the context,
    // one builder call. The locals are named here and handed to `@fn`, so that they
    // resolve across the two steps.
    (@emit {$kind:tt $vis:tt $name:ident $($sig:tt)*} [$($kept:tt)*]
        {cache {[$key:literal] [$($h:ident)*] [$($c:tt)*] [$($ttl:expr)?]}} [$($n:ident)*]
    ) => {
        $crate::__cache_fn! {
            @fn {$kind $vis $name $($sig)*} [$($kept)*] [__cacheable_builder __cacheable_ctx] [cache cache_async]
            {
                const _: () = {
                    let check = $crate::__private::check_cache(
                        $crate::__private::stringify!($name),
                        $key,
                        &[$($crate::__private::stringify!($n)),*],
                        &[$($crate::__private::stringify!($h)),*],
                        $crate::__private::stringify!($($ttl)?),
                    );
                    if check.failed() {
                        $crate::__private::panic!("{}", check.as_str());
                    }
                };
                static __CACHEABLE_TEMPLATE: $crate::__private::StaticTemplate =
                    $crate::__private::StaticTemplate::new(
                        $key,
                        &[$($crate::__private::arg_name($crate::__private::stringify!($h))),*],
                    );
                let __cacheable_builder =
                    $crate::__private::cacheable(&__CACHEABLE_TEMPLATE)
                        .name($crate::__private::stringify!($name))
                        $($c)*;
                #[allow(unused_mut)]
                let mut __cacheable_ctx = $crate::__private::Context::new();
                $(
                    $crate::__private::key_arg::<
                        { $crate::__private::uses(&[$key], $crate::__private::stringify!($n)) },
                        _,
                    >(
                        &mut __cacheable_ctx,
                        $crate::__private::arg_name($crate::__private::stringify!($n)),
                        &$n,
                    );
                )*
            }
        }
    };
    (@emit {$kind:tt $vis:tt $name:ident $($sig:tt)*} [$($kept:tt)*]
        {invalidate {[$($p:literal)*] [$($h:ident)*] [$($c:tt)*] [$($g:literal)*]}} [$($n:ident)*]
    ) => {
        $crate::__cache_fn! {
            @fn {$kind $vis $name $($sig)*} [$($kept)*] [__cacheable_builder __cacheable_ctx] [invalidate invalidate_async]
            {
                const __CACHEABLE_PATTERN_TEXT: &[&str] = &[$($p),*];
                // Patterns and tags: the arguments either names go into the context.
                const __CACHEABLE_NAMED_TEXT: &[&str] = &[$($p,)* $($g),*];
                const _: () = {
                    let check = $crate::__private::check_invalidate(
                        $crate::__private::stringify!($name),
                        __CACHEABLE_PATTERN_TEXT,
                        &[$($crate::__private::stringify!($n)),*],
                        &[$($crate::__private::stringify!($h)),*],
                    );
                    if check.failed() {
                        $crate::__private::panic!("{}", check.as_str());
                    }
                };
                const _: () = {
                    let check = $crate::__private::check_patterns(
                        $crate::__private::stringify!($name),
                        &[$($g),*],
                        &[$($crate::__private::stringify!($n)),*],
                    );
                    if check.failed() {
                        $crate::__private::panic!("{}", check.as_str());
                    }
                };
                static __CACHEABLE_PATTERNS: [$crate::__private::StaticTemplate; __CACHEABLE_PATTERN_TEXT.len()] =
                    [$($crate::__private::StaticTemplate::new($p, &[])),*];
                let __cacheable_builder =
                    $crate::__private::invalidate(&__CACHEABLE_PATTERNS, &[$($g),*])
                        .name($crate::__private::stringify!($name))
                        $($c)*;
                #[allow(unused_mut)]
                let mut __cacheable_ctx = $crate::__private::Context::new();
                $(
                    $crate::__private::key_arg::<
                        { $crate::__private::uses(__CACHEABLE_NAMED_TEXT, $crate::__private::stringify!($n)) },
                        _,
                    >(
                        &mut __cacheable_ctx,
                        $crate::__private::arg_name($crate::__private::stringify!($n)),
                        &$n,
                    );
                )*
            }
        }
    };

    (@fn {[] [$vis:vis] $name:ident [$($gen:tt)*] [$($args:tt)*] [$($ret:ty)?] [$($where:tt)*] $body:tt}
        [$($kept:tt)*] [$builder:ident $ctx:ident] [$finish:ident $finish_async:ident]
        {$($prelude:tt)*}
    ) => {
        $($kept)*
        $vis fn $name $($gen)* ($($args)*) $(-> $ret)? $($where)* {
            $($prelude)*
            #[allow(unused_imports)]
            use $crate::__private::{ReturnsResult as _, ReturnsValue as _, SharesFailures as _};
            (&&$crate::__private::Ret::<$crate::__private::Out<$($ret)?>>::new())
                .kind()
                .$finish($builder, $ctx, move || -> $crate::__private::Out<$($ret)?> $body)
        }
    };
    (@fn {[async $a:tt] [$vis:vis] $name:ident [$($gen:tt)*] [$($args:tt)*] [$($ret:ty)?] [$($where:tt)*] $body:tt}
        [$($kept:tt)*] [$builder:ident $ctx:ident] [$finish:ident $finish_async:ident]
        {$($prelude:tt)*}
    ) => {
        $($kept)*
        $vis async fn $name $($gen)* ($($args)*) $(-> $ret)? $($where)* {
            $($prelude)*
            #[allow(unused_imports)]
            use $crate::__private::{ReturnsResult as _, ReturnsValue as _, SharesFailures as _};
            (&&$crate::__private::Ret::<$crate::__private::Out<$($ret)?>>::new())
                .kind()
                .$finish_async($builder, $ctx, move || async move {
                    let __cacheable_out: $crate::__private::Out<$($ret)?> = $body;
                    __cacheable_out
                })
                .await
        }
    };
}
