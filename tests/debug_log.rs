//! Debug mode prints the seed's lines, exactly, and only the placeholders that make the key.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use support::RedisServer;

/// The crate's info-level lines since the last call (debug mode's level).
fn take_lines() -> Vec<String> {
    support::logs::take_cacheable(log::Level::Info)
}

#[test]
fn debug_lines_match_the_seed() {
    support::logs::capture();
    let server = RedisServer::start();
    let cache = Cache::new(Config::from_url(&server.url()).unwrap().prefix("paycore")).unwrap();

    let user_id = 123;
    let secret = "hunter2"; // in the context, not in the key: must not be logged
    let get = || {
        Cacheable::new("user:<<user_id>>:profile")
            .ttl(600)
            .debug(true)
            .name("get_user_profile")
            .on(&cache)
            .run(ctx! { user_id, secret }, || "profile".to_string())
    };
    get();
    assert_eq!(
        take_lines(),
        [
            "[Cache Debug] Function: get_user_profile",
            "[Cache Debug] Key Template: user:<<user_id>>:profile",
            "[Cache Debug] Resolved Key: paycore:user:123:profile",
            "[Cache Debug] Context: {\"user_id\":123}",
            "[Cache Debug] MISS for paycore:user:123:profile",
            "[Cache Debug] Cached result for paycore:user:123:profile (TTL: 600s)",
        ]
    );
    get();
    assert_eq!(
        take_lines().last().unwrap(),
        "[Cache Debug] HIT for paycore:user:123:profile"
    );

    // Hashed values appear hashed.
    let filters = serde_json::json!({"is_active": true});
    Cacheable::new("loans:products:<<currency_code>>:<<filters>>")
        .hash("filters")
        .debug(true)
        .on(&cache)
        .run(ctx! { currency_code = "NGN", filters }, || 1);
    let digest = &sha1_smol::Sha1::from(r#"{"is_active":true}"#)
        .digest()
        .to_string()[..16];
    let lines = take_lines();
    assert!(
        lines.contains(&format!(
            "[Cache Debug] Context: {{\"currency_code\":\"NGN\",\"filters\":\"{digest}\"}}"
        )),
        "{lines:?}"
    );

    Invalidate::new(["user:<<user_id>>:profile", "wallets:<<user_id>>:*"])
        .debug(true)
        .name("update_user_profile")
        .on(&cache)
        .run(ctx! { user_id }, || ());
    assert_eq!(
        take_lines(),
        [
            "[Cache Debug] Invalidating pattern: paycore:user:123:profile",
            "[Cache Debug] Deleted 1 keys for pattern: paycore:user:123:profile",
            "[Cache Debug] Invalidating pattern: paycore:wallets:123:*",
            "[Cache Debug] Deleted 0 keys for pattern: paycore:wallets:123:*",
            "[Cache Debug] Total deleted: 1 keys for function: update_user_profile",
        ]
    );

    // Without debug, nothing at info level.
    Cacheable::new("quiet:<<user_id>>")
        .on(&cache)
        .run(ctx! { user_id }, || 1);
    assert!(take_lines().is_empty());

    // A near hit says so, and is counted as one. (The near cache takes a value read back
    // from Redis once tracking is confirmed: read until a hit comes from it.)
    let near = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("paycore")
            .near_cache(100),
    )
    .unwrap();
    let read = || {
        Cacheable::new("user:<<user_id>>:profile")
            .debug(true)
            .on(&near)
            .run(ctx! { user_id }, || "computed".to_string())
    };
    support::first_near_hit(&near, std::time::Duration::from_secs(5), read);
    take_lines();
    assert_eq!(read(), "computed");
    assert_eq!(near.stats().near_hits, 2);
    assert_eq!(
        take_lines(),
        [
            "[Cache Debug] Function: user:<<user_id>>:profile",
            "[Cache Debug] Key Template: user:<<user_id>>:profile",
            "[Cache Debug] Resolved Key: paycore:user:123:profile",
            "[Cache Debug] Context: {\"user_id\":123}",
            "[Cache Debug] NEAR HIT for paycore:user:123:profile",
        ]
    );
}
