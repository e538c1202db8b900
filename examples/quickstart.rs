//! The seed README's Quick Start, in Rust.
//!
//! ```text
//! cargo run --example quickstart                                   # embedded store
//! CACHE_URL=redis://127.0.0.1:6379/1 cargo run --example quickstart  # a Redis server
//! ```

use cacheable::{ctx, CacheManager, Cacheable, Config, Invalidate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile {
    id: i64,
    name: String,
}

static QUERIES: AtomicUsize = AtomicUsize::new(0);

/// Stands in for `User.objects.aget(id=user_id)`.
async fn query_profile(user_id: i64) -> Profile {
    QUERIES.fetch_add(1, Ordering::SeqCst);
    Profile {
        id: user_id,
        name: format!("user {user_id}"),
    }
}

// 1. Basic caching
async fn get_user_profile(user_id: i64) -> Profile {
    Cacheable::new("user:<<user_id>>:profile")
        .ttl(600)
        .debug(true)
        .name("get_user_profile")
        .run_async(ctx! { user_id }, || query_profile(user_id))
        .await
}

// 2. Caching with filters: a map argument is hashed into the key.
fn get_loan_products(
    currency_code: &str,
    filters: &BTreeMap<&str, serde_json::Value>,
) -> Vec<String> {
    Cacheable::new("loans:products:<<currency_code>>:<<filters>>")
        .hash("filters")
        .ttl(1800)
        .debug(true)
        .name("get_loan_products")
        .run(ctx! { currency_code, filters }, || {
            QUERIES.fetch_add(1, Ordering::SeqCst);
            vec![format!("{currency_code} personal loan")]
        })
}

// 3. Invalidation after a successful mutation.
async fn update_user_profile(user_id: i64, name: &str) -> Result<Profile, String> {
    Invalidate::new(["user:<<user_id>>:profile", "wallets:<<user_id>>:*"])
        .debug(true)
        .name("update_user_profile")
        .try_run_async(ctx! { user_id }, || async {
            QUERIES.fetch_add(1, Ordering::SeqCst);
            Ok(Profile {
                id: user_id,
                name: name.to_string(),
            })
        })
        .await
}

/// The example's own key prefix.
const PREFIX: &str = "cacheable-quickstart";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("cacheable=info"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    // CACHE_URL picks the store: a Redis URL, or the embedded store when unset.
    // A prefix of its own: pointed at a Redis that holds other data, the example touches
    // no key but the ones it writes.
    let config = Config::from_env()?.prefix(PREFIX).default_ttl(300);
    let store = if std::env::var("CACHE_URL").is_ok_and(|u| !u.is_empty()) {
        "redis"
    } else {
        "embedded memory"
    };
    CacheManager::init(config)?;
    // Start clean, so that the first call is a miss: the keys of an earlier run, no other.
    for pattern in ["user:*", "loans:products:*", "wallets:*"] {
        CacheManager::delete_pattern(pattern)?;
    }
    println!("== store: {store}\n");

    println!("== 1. basic caching: a miss, then a hit");
    get_user_profile(123).await;
    get_user_profile(123).await;
    println!(
        "source queries so far: {}\n",
        QUERIES.load(Ordering::SeqCst)
    );

    println!("== 2. a hashed filters argument");
    let filters = BTreeMap::from([("is_active", true.into()), ("max_amount", 5000.into())]);
    get_loan_products("NGN", &filters);
    get_loan_products("NGN", &filters);
    println!(
        "source queries so far: {}\n",
        QUERIES.load(Ordering::SeqCst)
    );

    println!("== keys now stored (relative to the prefix `{PREFIX}`)");
    let mut keys = CacheManager::keys("*")?;
    keys.sort();
    for key in &keys {
        println!("  {PREFIX}:{key}");
    }
    println!();

    println!("== 3. invalidation after an update");
    CacheManager::set("wallets:123:balance", &1500, 120)?;
    CacheManager::set("wallets:1234:balance", &99, 120)?; // another user's: must stay
    update_user_profile(123, "Ada").await?;
    println!("wallets left: {:?}", CacheManager::keys("wallets:*")?);
    get_user_profile(123).await; // a miss again
    println!();

    println!("== 4. manual operations");
    let profile = Profile {
        id: 7,
        name: "Grace".into(),
    };
    CacheManager::set("user:7:profile", &profile, 600)?;
    let cached: Option<Profile> = CacheManager::get("user:7:profile")?;
    println!("get -> {cached:?}");
    println!("ttl -> {:?}", CacheManager::ttl("user:7:profile")?);
    let fetched: Profile = CacheManager::get_or_set(
        "user:8:profile",
        || Profile {
            id: 8,
            name: "Linus".into(),
        },
        600,
    )?;
    println!("get_or_set -> {fetched:?}");
    println!("count user:* -> {}", CacheManager::count("user:*")?);
    println!(
        "delete_pattern user:* -> {} keys",
        CacheManager::delete_pattern("user:*")?
    );

    let stats = CacheManager::stats();
    println!(
        "\n== stats: {} hits, {} misses, {} sets, {} keys invalidated, {} errors; {} source queries",
        stats.hits,
        stats.misses,
        stats.sets,
        stats.invalidated,
        stats.errors,
        QUERIES.load(Ordering::SeqCst)
    );
    Ok(())
}
