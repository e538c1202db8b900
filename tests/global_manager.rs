//! The global manager: `init` once, then the builders and `CacheManager`'s manual
//! operations use it. One test per binary, since the global lives for the process.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, CacheManager, Cacheable, Config, ErrorKind, Invalidate};
use support::RedisServer;

#[tokio::test]
async fn builders_and_manual_operations_share_the_global_cache() {
    let server = RedisServer::start();
    CacheManager::init(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("paycore")
            .default_ttl(300),
    )
    .unwrap();
    let again = CacheManager::init(Config::memory()).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyInitialized);

    let user_id = 123;
    let profile: String = Cacheable::new("user:<<user_id>>:profile")
        .try_run_async(ctx! { user_id }, || async {
            Ok::<_, std::io::Error>("Ada".to_string())
        })
        .await
        .unwrap();
    assert_eq!(profile, "Ada");
    assert_eq!(
        CacheManager::get::<String>("user:123:profile")
            .unwrap()
            .as_deref(),
        Some("Ada")
    );
    assert_eq!(
        CacheManager::get_async::<String>("user:123:profile")
            .await
            .unwrap()
            .as_deref(),
        Some("Ada")
    );
    let ttl: i64 = server
        .cli(&["TTL", "paycore:user:123:profile"])
        .trim()
        .parse()
        .unwrap();
    assert!((290..=300).contains(&ttl), "the default TTL applies: {ttl}");

    CacheManager::set("wallets:123:balance", &10, 60).unwrap();
    CacheManager::set_async("wallets:123:summary", &"s", 60)
        .await
        .unwrap();
    assert_eq!(CacheManager::count("wallets:123:*").unwrap(), 2);
    let updated = Invalidate::new(["user:<<user_id>>:profile", "wallets:<<user_id>>:*"])
        .run_async(ctx! { user_id }, || async { "updated" })
        .await;
    assert_eq!(updated, "updated");
    assert_eq!(CacheManager::count_async("*").await.unwrap(), 0);

    let v: i32 = CacheManager::get_or_set_async("n", || async { 5 }, 60)
        .await
        .unwrap();
    assert_eq!(v, 5);
    assert_eq!(CacheManager::delete_pattern("n*").unwrap(), 1);
    let stats = CacheManager::stats();
    assert_eq!(stats.invalidated, 4);
    assert!(stats.sets >= 4, "{stats:?}");
}
