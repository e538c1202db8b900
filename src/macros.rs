//! `ctx!`, and (later) `cache_fn!`.

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
        $crate::Context::new()
    };
    ($($name:ident $(= $value:expr)?),+ $(,)?) => {{
        let mut __cacheable_ctx = $crate::Context::new();
        $(
            __cacheable_ctx.insert(
                ::core::stringify!($name),
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
