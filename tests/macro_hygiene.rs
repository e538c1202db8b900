//! A caller's own `Result`, `Option`, `Ok`, `Err`, `Some`, `None`, `Box`, `String`, `Vec`
//! and `format!` at module level cannot break a `cache_fn!` expansion: every name it
//! uses comes through `$crate::__private`.
#![allow(dead_code, non_camel_case_types, unused_macros)]
#![no_implicit_prelude]

extern crate cacheable;
extern crate std;
extern crate tokio;

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

struct Result;
struct Option;
struct Ok;
struct Err;
struct Some;
struct None;
struct Box;
struct String;
struct Vec;
struct Context;
struct Cacheable;
struct Invalidate;
struct StaticTemplate;
struct Out;
struct Ret;
mod core {}
mod serde {}
macro_rules! format {
    ($($t:tt)*) => {
        compile_error!("the caller's format! was used")
    };
}
macro_rules! stringify {
    ($($t:tt)*) => {
        compile_error!("the caller's stringify! was used")
    };
}
macro_rules! concat {
    ($($t:tt)*) => {
        compile_error!("the caller's concat! was used")
    };
}

static CALLS: AtomicU32 = AtomicU32::new(0);

fn cache() -> &'static cacheable::Cache {
    static CACHE: std::sync::OnceLock<cacheable::Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| {
        cacheable::Cache::new(cacheable::Config::memory().prefix("h")).expect("memory cache")
    })
}

cacheable::cache_fn! {
    /// Sync, `Result` by its full path.
    #[cache(key = "h:<<id>>:<<tags>>", ttl = 60, hash = [tags], cache = cache())]
    fn load(id: u32, tags: &[&str]) -> std::result::Result<u32, std::string::String> {
        let _ = tags;
        CALLS.fetch_add(1, SeqCst);
        std::result::Result::Ok(id)
    }

    #[cache(key = "h:opt:<<id>>", cache = cache(), debug = false)]
    async fn load_opt(id: u32) -> std::option::Option<u32> {
        CALLS.fetch_add(1, SeqCst);
        std::option::Option::Some(id)
    }

    #[invalidate("h:<<id>>:*", cache = cache())]
    async fn save(id: u32) -> std::result::Result<(), std::io::Error> {
        let _ = id;
        std::result::Result::Ok(())
    }

    #[invalidate("h:opt:*", cache = cache())]
    fn reset() {}
}

static GENERIC_CALLS: AtomicU32 = AtomicU32::new(0);

cacheable::cache_fn! {
    /// Generic, expanded beside the others.
    #[cache(key = "h:gen:<<id>>", hash = [id], cache = cache())]
    async fn load_generic<'a, T: std::clone::Clone + 'a>(
        id: u32,
        extra: &'a T,
    ) -> std::result::Result<u32, std::string::String>
    where
        T: std::fmt::Debug + std::marker::Sync,
    {
        let _ = extra.clone();
        GENERIC_CALLS.fetch_add(1, SeqCst);
        std::result::Result::Ok(id)
    }

    #[invalidate("h:gen:<<id>>", hash = [id], cache = cache())]
    fn forget_generic<T: std::fmt::Display>(id: u32, why: T) {
        let _ = std::string::ToString::to_string(&why);
    }
}

cacheable::cache_fn! {
    /// Generic, read token by token.
    #[cache(key = "h:hrtb:<<id>>", cache = cache())]
    fn load_hrtb<F: for<'b> std::ops::Fn(&'b str) -> usize>(id: u32, f: F) -> usize {
        GENERIC_CALLS.fetch_add(1, SeqCst);
        f("abc") + id as usize
    }

    impl Holder {
        #[cache(key = "h:holder:<<id>>", cache = cache())]
        fn held(&self, id: u32) -> u32 {
            GENERIC_CALLS.fetch_add(1, SeqCst);
            id + self.0
        }
    }
}

struct Holder(u32);

#[::tokio::test]
async fn generic_expansions_ignore_the_callers_names() {
    std::assert_eq!(load_generic(1, &'x').await, std::result::Result::Ok(1));
    std::assert_eq!(load_generic(1, &'y').await, std::result::Result::Ok(1));
    std::assert_eq!(load_hrtb(1, |s: &str| s.len()), 4);
    std::assert_eq!(load_hrtb(1, |_: &str| 0), 4);
    std::assert_eq!(Holder(1).held(1), 2);
    std::assert_eq!(Holder(5).held(1), 2);
    std::assert_eq!(GENERIC_CALLS.load(SeqCst), 3);
    forget_generic(1, 'z');
    std::assert_eq!(load_generic(1, &'x').await, std::result::Result::Ok(1));
    std::assert_eq!(GENERIC_CALLS.load(SeqCst), 4);
}

#[::tokio::test]
async fn expansions_ignore_the_callers_names() {
    std::assert_eq!(load(1, &["a"]), std::result::Result::Ok(1));
    std::assert_eq!(load(1, &["a"]), std::result::Result::Ok(1));
    std::assert_eq!(load_opt(2).await, std::option::Option::Some(2));
    std::assert_eq!(load_opt(2).await, std::option::Option::Some(2));
    std::assert_eq!(CALLS.load(SeqCst), 2);
    save(1).await.unwrap();
    reset();
    std::assert_eq!(load(1, &["a"]), std::result::Result::Ok(1));
    std::assert_eq!(load_opt(2).await, std::option::Option::Some(2));
    std::assert_eq!(CALLS.load(SeqCst), 4);
}
