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
/// # use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
///
/// /// A database handle: not `Serialize`, and it need not be, since no key names it.
/// pub struct Db { queries: AtomicU32 }
///
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
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
/// # Syntax
///
/// One invocation holds any number of `fn` or `async fn` items, free functions or methods
/// inside an `impl` block, with any visibility. Each carries exactly one of:
///
/// - `#[cache(key = "…", ttl = N, hash = [a, b], debug = true, cache = &CACHE)]`: only `key`
///   is required, a string literal. `ttl` is seconds or a `Duration` (the cache's default
///   TTL otherwise); `hash` names arguments whose values are hashed even when scalar;
///   `debug` logs the `[Cache Debug]` lines; `cache` is an expression yielding `&Cache`,
///   evaluated on each call (`&self.cache` in a method works), for another cache than the
///   global one.
/// - `#[invalidate("p1", "p2", …, debug = true, cache = &CACHE)]`: keys or glob patterns to
///   delete after the function returns.
///
/// Other attributes and doc comments stay on the function. Arguments are `name: Type`,
/// `mut name: Type`, receivers (`&self`, `&mut self`, `self`, `self: Arc<Self>`) or
/// destructuring patterns (`State(pool): State<Pool>`, `(a, b): (u32, u32)`, `_: T`);
/// generic, `const`, `unsafe` and `extern` functions and `where` clauses are not
/// supported. The `cache` expression is evaluated before the body runs and stays
/// borrowed while it does: `&self.cache` in a `&self` method works, as does a field of a
/// reference argument.
///
/// # Keys and arguments
///
/// Placeholders `<<name>>` and `<<name.field>>` name arguments; receivers and patterns are
/// never part of a key. Every placeholder and `hash` entry is checked at compile time: one
/// that names no argument is an error naming it, such as
///
/// ```text
/// error[E0080]: evaluation panicked: cache key placeholder `usr_id` names no argument of
///               `get_user_profile`; its arguments: `db`, `user_id`
/// ```
///
/// Only the arguments a placeholder names are serialized, so the others (a pool, an axum
/// `State`, a request) need not implement `Serialize`. An argument a placeholder names
/// must, or compilation fails with ``the trait bound `Pool: serde::Serialize` is not
/// satisfied``. Argument values are read before the body runs, so an invalidation uses
/// the values the function was called with.
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
///     // Evaluated by the compiler: each placeholder and hash entry names an argument,
///     // or the build fails with the message.
///     const _: () = {
///         let check = check_key("get_user_profile", "user:<<user_id>>:profile",
///                               &["db", "user_id"], &[]);
///         if check.failed() { panic!("{}", check.as_str()) }
///     };
///     let builder = Cacheable::new("user:<<user_id>>:profile")
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
///     let path = (&Ret::<Result<Profile, DbError>>::new()).kind();
///     path.cache(builder, ctx, move || -> Result<Profile, DbError> { /* body */ })
/// }
/// ```
///
/// An `async fn` awaits `try_run_async`/`run_async` with `move || async move { body }`
/// instead, and `#[invalidate]` calls [`Invalidate`](crate::Invalidate)'s finishers.
#[macro_export]
macro_rules! cache_fn {
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
    // ---- one function at a time; the rest is a sibling call, so depth does not add up.
    (@items) => {};
    (@items
        $(#[$($attr:tt)*])*
        $vis:vis async fn $name:ident ($($args:tt)*) $(-> $ret:ty)? { $($body:tt)* }
        $($rest:tt)*
    ) => {
        $crate::__cache_fn! { @attrs { async [$vis] $name [$($args)*] [$($ret)?] { $($body)* } } {} []
            $(#[$($attr)*])* }
        $crate::__cache_fn! { @items $($rest)* }
    };
    (@items
        $(#[$($attr:tt)*])*
        $vis:vis fn $name:ident ($($args:tt)*) $(-> $ret:ty)? { $($body:tt)* }
        $($rest:tt)*
    ) => {
        $crate::__cache_fn! { @attrs { sync [$vis] $name [$($args)*] [$($ret)?] { $($body)* } } {} []
            $(#[$($attr)*])* }
        $crate::__cache_fn! { @items $($rest)* }
    };
    (@items $($other:tt)+) => {
        $crate::__private::compile_error! {
            "cache_fn! expects functions: `#[cache(key = \"…\")]` or `#[invalidate(\"…\")]`, \
             other attributes, then `[pub] [async] fn name(arguments) [-> Type] { … }`; \
             generic, const, unsafe and extern functions and `where` clauses are not supported"
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
        $crate::__cache_fn! { @cache $sig $kept {[] [] []} $($opts)* }
    };
    (@attrs $sig:tt {invalidate ($($opts:tt)*)} $kept:tt) => {
        $crate::__cache_fn! { @invalidate $sig $kept {[] []} $($opts)* }
    };

    // ---- `#[cache(…)]` options; the state is {[key] [hash names] [builder calls]}.
    (@cache $sig:tt $kept:tt {[] $h:tt $c:tt} key = $key:literal $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {[$key] $h $c} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {[$k:literal] $h:tt $c:tt} key = $($rest:tt)*) => {
        $crate::__private::compile_error! { "`#[cache]` takes one `key`" }
    };
    (@cache $sig:tt $kept:tt $st:tt key = $($rest:tt)*) => {
        $crate::__private::compile_error! {
            "`#[cache]`: `key` must be a string literal, such as `key = \"user:<<user_id>>:profile\"`"
        }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*]} ttl = $ttl:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .ttl($ttl)]} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*]} debug = $on:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .debug($on)]} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt $h:tt [$($c:tt)*]} cache = $cache:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @cache $sig $kept {$k $h [$($c)* .on($cache)]} $($($rest)*)? }
    };
    (@cache $sig:tt $kept:tt {$k:tt [$($h:ident)*] [$($c:tt)*]}
        hash = [$($name:ident),* $(,)?] $(, $($rest:tt)*)?
    ) => {
        $crate::__cache_fn! { @cache $sig $kept {$k [$($h)* $($name)*] [$($c)* $(
            .hash($crate::__private::arg_name($crate::__private::stringify!($name)))
        )*]} $($($rest)*)? }
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
                "`; the options are key, ttl, hash, debug and cache"
            )
        }
    };
    (@cache $sig:tt $kept:tt {[] $h:tt $c:tt}) => {
        $crate::__private::compile_error! {
            "`#[cache]` needs a key, such as `#[cache(key = \"user:<<user_id>>:profile\")]`"
        }
    };
    (@cache {$kind:tt [$vis:vis] $name:ident [$($args:tt)*] $($sig:tt)*} $kept:tt $st:tt) => {
        $crate::__cache_fn! {
            @args {$kind [$vis] $name [$($args)*] $($sig)*} $kept {cache $st} [] $($args)*
        }
    };
    (@cache $($bad:tt)*) => {
        $crate::__private::compile_error! {
            "`#[cache]` options are `key = \"…\"`, `ttl = N`, `hash = [a, b]`, `debug = bool` \
             and `cache = &Cache`, separated by commas"
        }
    };

    // ---- `#[invalidate("p1", "p2", debug = …, cache = …)]`; the state is {[patterns] [calls]}.
    (@invalidate $sig:tt $kept:tt {[$($p:literal)*] $c:tt} $pattern:literal $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @invalidate $sig $kept {[$($p)* $pattern] $c} $($($rest)*)? }
    };
    (@invalidate $sig:tt $kept:tt {$p:tt [$($c:tt)*]} debug = $on:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @invalidate $sig $kept {$p [$($c)* .debug($on)]} $($($rest)*)? }
    };
    (@invalidate $sig:tt $kept:tt {$p:tt [$($c:tt)*]} cache = $cache:expr $(, $($rest:tt)*)?) => {
        $crate::__cache_fn! { @invalidate $sig $kept {$p [$($c)* .on($cache)]} $($($rest)*)? }
    };
    (@invalidate $sig:tt $kept:tt $st:tt $option:ident $($rest:tt)*) => {
        $crate::__private::compile_error! {
            $crate::__private::concat!(
                "unknown `#[invalidate]` option `", $crate::__private::stringify!($option),
                "`; it takes pattern literals, then `debug = bool` and `cache = &Cache`"
            )
        }
    };
    (@invalidate $sig:tt $kept:tt {[] $c:tt}) => {
        $crate::__private::compile_error! {
            "`#[invalidate]` needs at least one pattern, such as `#[invalidate(\"user:<<user_id>>:*\")]`"
        }
    };
    (@invalidate {$kind:tt [$vis:vis] $name:ident [$($args:tt)*] $($sig:tt)*} $kept:tt
        {[$($p:literal)+] $c:tt}
    ) => {
        $crate::__cache_fn! {
            @args {$kind [$vis] $name [$($args)*] $($sig)*} $kept {invalidate {[$($p),+] $c}} []
            $($args)*
        }
    };
    (@invalidate $($bad:tt)*) => {
        $crate::__private::compile_error! {
            "`#[invalidate]` takes pattern string literals, then optionally `debug = bool` and \
             `cache = &Cache`, separated by commas"
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

    // ---- the function: the checks as a constant, the context, one builder call. The
    // locals are named here and handed to `@fn`, so that they resolve across the two steps.
    (@emit {$kind:tt [$vis:vis] $name:ident [$($args:tt)*] [$($ret:ty)?] $body:tt}
        [$($kept:tt)*] {cache {[$key:literal] [$($h:ident)*] [$($c:tt)*]}} [$($n:ident)*]
    ) => {
        $crate::__cache_fn! {
            @fn $kind [$($kept)*] [$vis] $name [$($args)*] [$($ret)?] $body
            [__cacheable_path __cacheable_builder __cacheable_ctx] [cache cache_async]
            {
                const _: () = {
                    let check = $crate::__private::check_key(
                        $crate::__private::stringify!($name),
                        $key,
                        &[$($crate::__private::stringify!($n)),*],
                        &[$($crate::__private::stringify!($h)),*],
                    );
                    if check.failed() {
                        $crate::__private::panic!("{}", check.as_str());
                    }
                };
                let __cacheable_builder = $crate::__private::Cacheable::new($key)
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
    (@emit {$kind:tt [$vis:vis] $name:ident [$($args:tt)*] [$($ret:ty)?] $body:tt}
        [$($kept:tt)*] {invalidate {$patterns:tt [$($c:tt)*]}} [$($n:ident)*]
    ) => {
        $crate::__cache_fn! {
            @fn $kind [$($kept)*] [$vis] $name [$($args)*] [$($ret)?] $body
            [__cacheable_path __cacheable_builder __cacheable_ctx] [invalidate invalidate_async]
            {
                const _: () = {
                    let check = $crate::__private::check_patterns(
                        $crate::__private::stringify!($name),
                        &$patterns,
                        &[$($crate::__private::stringify!($n)),*],
                    );
                    if check.failed() {
                        $crate::__private::panic!("{}", check.as_str());
                    }
                };
                let __cacheable_builder = $crate::__private::Invalidate::new($patterns)
                    .name($crate::__private::stringify!($name))
                    $($c)*;
                #[allow(unused_mut)]
                let mut __cacheable_ctx = $crate::__private::Context::new();
                $(
                    $crate::__private::key_arg::<
                        { $crate::__private::uses(&$patterns, $crate::__private::stringify!($n)) },
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

    (@fn sync [$($kept:tt)*] [$vis:vis] $name:ident [$($args:tt)*] [$($ret:ty)?] $body:tt
        [$path:ident $builder:ident $ctx:ident] [$finish:ident $finish_async:ident]
        {$($prelude:tt)*}
    ) => {
        $($kept)*
        $vis fn $name($($args)*) $(-> $ret)? {
            $($prelude)*
            #[allow(unused_imports)]
            use $crate::__private::{ReturnsResult as _, ReturnsValue as _};
            let $path = (&$crate::__private::Ret::<$crate::__cache_fn!(@ret $($ret)?)>::new()).kind();
            $path.$finish($builder, $ctx, move || -> $crate::__cache_fn!(@ret $($ret)?) $body)
        }
    };
    (@fn async [$($kept:tt)*] [$vis:vis] $name:ident [$($args:tt)*] [$($ret:ty)?] $body:tt
        [$path:ident $builder:ident $ctx:ident] [$finish:ident $finish_async:ident]
        {$($prelude:tt)*}
    ) => {
        $($kept)*
        $vis async fn $name($($args)*) $(-> $ret)? {
            $($prelude)*
            #[allow(unused_imports)]
            use $crate::__private::{ReturnsResult as _, ReturnsValue as _};
            let $path = (&$crate::__private::Ret::<$crate::__cache_fn!(@ret $($ret)?)>::new()).kind();
            $path
                .$finish_async($builder, $ctx, move || async move {
                    let __cacheable_out: $crate::__cache_fn!(@ret $($ret)?) = $body;
                    __cacheable_out
                })
                .await
        }
    };

    (@ret $ret:ty) => { $ret };
    (@ret) => { () };
}
