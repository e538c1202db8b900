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
