//! `cache_fn!`'s freshness options on a private in-memory cache: `tags`,
//! `early_refresh`, `stale_if_error` and `stale_while_revalidate` on `#[cache]`, and
//! `tags` (with or without patterns) on `#[invalidate]`.

use cacheable::{cache_fn, Cache, Config};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::LazyLock;
use std::time::Duration;

static CACHE: LazyLock<Cache> =
    LazyLock::new(|| Cache::new(Config::memory().prefix("mf")).expect("memory cache"));

static QUERIES: AtomicU32 = AtomicU32::new(0);

cache_fn! {
    #[cache(key = "orders:<<user_id>>:<<page>>", ttl = 60, tags = ["user:<<user_id>>"], cache = &CACHE)]
    fn orders(user_id: u64, page: u32) -> String {
        QUERIES.fetch_add(1, SeqCst);
        format!("{user_id}/{page}")
    }

    #[cache(
        key = "rate:<<pair>>",
        ttl = Duration::from_millis(200),
        stale_if_error = Duration::from_secs(5),
        stale_while_revalidate = Duration::from_millis(1),
        early_refresh = 1.0,
        cache = &CACHE
    )]
    fn rate(pair: &str, fail: bool) -> Result<u32, String> {
        if fail {
            Err(format!("{pair}: source down"))
        } else {
            Ok(7)
        }
    }

    #[invalidate(tags = ["user:<<user_id>>"], cache = &CACHE)]
    fn update_user(user_id: u64) -> u64 {
        user_id
    }

    #[invalidate("orders:<<user_id>>:0", tags = ["user:<<other>>"], cache = &CACHE)]
    fn move_orders(user_id: u64, other: u64) {}
}

#[test]
fn tags_from_the_macro() {
    for page in 0..3 {
        orders(1, page);
        orders(2, page);
    }
    assert_eq!(QUERIES.load(SeqCst), 6);
    assert_eq!(update_user(1), 1);
    assert_eq!(CACHE.count("orders:1:*").unwrap(), 0);
    assert_eq!(CACHE.count("orders:2:*").unwrap(), 3);
    orders(1, 0);
    assert_eq!(QUERIES.load(SeqCst), 7);
    move_orders(1, 2);
    assert_eq!(
        CACHE.count("orders:*").unwrap(),
        0,
        "the pattern and the tag both ran"
    );
}

#[test]
fn stale_if_error_from_the_macro() {
    assert_eq!(rate("NGN", false), Ok(7));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rate("NGN", true),
        Ok(7),
        "the stale value answers the failure"
    );
    assert!(CACHE.stats().stale_if_error >= 1);
}
