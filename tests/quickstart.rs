//! The seed README's Quick Start 1 to 4, in Rust, on a private Redis.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate, KeyTtl};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::RedisServer;

fn paycore(server: &RedisServer) -> Cache {
    Cache::new(Config::from_url(&server.url()).unwrap().prefix("paycore")).unwrap()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: i64,
    name: String,
}

/// A stand-in database that counts its queries.
#[derive(Default)]
struct Db {
    queries: AtomicUsize,
}

impl Db {
    async fn profile(&self, id: i64) -> Profile {
        self.queries.fetch_add(1, Ordering::SeqCst);
        Profile {
            id,
            name: format!("user {id}"),
        }
    }

    fn products(
        &self,
        currency: &str,
        filters: &Option<HashMap<String, serde_json::Value>>,
    ) -> Vec<String> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let n = filters.as_ref().map_or(0, |f| f.len());
        vec![format!("{currency} product ({n} filters)")]
    }

    fn count(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

async fn get_user_profile(cache: &Cache, db: &Db, user_id: i64) -> Profile {
    Cacheable::new("user:<<user_id>>:profile")
        .ttl(600)
        .on(cache)
        .run_async(ctx! { user_id }, || db.profile(user_id))
        .await
}

#[tokio::test]
async fn quick_start_1_basic_caching_key_and_json() {
    let server = RedisServer::start();
    let cache = paycore(&server);
    let db = Db::default();

    let first = get_user_profile(&cache, &db, 123).await;
    let second = get_user_profile(&cache, &db, 123).await;
    assert_eq!(first, second);
    assert_eq!(db.count(), 1, "second call must be a hit");

    // The generated key is exactly the seed's, and redis-cli shows JSON.
    assert_eq!(
        server.cli(&["--scan", "--pattern", "*"]).trim(),
        "paycore:user:123:profile"
    );
    let raw = server.cli(&["GET", "paycore:user:123:profile"]);
    let json: serde_json::Value =
        serde_json::from_str(raw.trim()).expect("the stored value is JSON");
    assert_eq!(json, serde_json::json!({"id": 123, "name": "user 123"}));
    let ttl: i64 = server
        .cli(&["TTL", "paycore:user:123:profile"])
        .trim()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&ttl), "TTL {ttl}");

    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.sets), (1, 1, 1));
}

fn get_loan_products(
    cache: &Cache,
    db: &Db,
    currency_code: &str,
    filters: Option<HashMap<String, serde_json::Value>>,
) -> Vec<String> {
    Cacheable::new("loans:products:<<currency_code>>:<<filters>>")
        .hash("filters")
        .ttl(1800)
        .on(cache)
        .run(ctx! { currency_code, filters }, || {
            db.products(currency_code, &filters)
        })
}

#[test]
fn quick_start_2_hashed_filters() {
    let server = RedisServer::start();
    let cache = paycore(&server);
    let db = Db::default();
    let filters = |pairs: &[(&str, serde_json::Value)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<HashMap<_, _>>(),
        )
    };

    let active = filters(&[("is_active", true.into()), ("max_amount", 5000.into())]);
    get_loan_products(&cache, &db, "NGN", active.clone());
    get_loan_products(&cache, &db, "NGN", active);
    assert_eq!(db.count(), 1);

    // Another filter set is another key; no filters is a third.
    get_loan_products(&cache, &db, "NGN", filters(&[("is_active", false.into())]));
    get_loan_products(&cache, &db, "NGN", None);
    assert_eq!(db.count(), 3);

    let mut keys = cache.keys("loans:products:NGN:*").unwrap();
    keys.sort();
    assert_eq!(keys.len(), 3);
    for key in &keys {
        let last = key.rsplit(':').next().unwrap();
        assert!(
            last == "%null"
                || (last.len() == 16
                    && last
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())),
            "{key}"
        );
    }
    // The hash is SHA-1 of the canonical JSON, cut to 16 digits.
    let expected = sha1_smol::Sha1::from(r#"{"is_active":true,"max_amount":5000}"#)
        .digest()
        .to_string();
    assert!(
        keys.contains(&format!("loans:products:NGN:{}", &expected[..16])),
        "{keys:?}"
    );
}

#[test]
fn hashmap_argument_gives_one_key_whatever_its_insertion_order() {
    if let Ok(url) = std::env::var("CACHEABLE_CHILD_URL") {
        return child_process_renders_key(&url);
    }
    let server = RedisServer::start();
    let cache = paycore(&server);
    let db = Db::default();
    let pairs: Vec<(String, serde_json::Value)> = (0..20)
        .map(|i| (format!("field{i}"), serde_json::json!(i)))
        .collect();
    let forward: HashMap<_, _> = pairs.iter().cloned().collect();
    let backward: HashMap<_, _> = pairs.iter().rev().cloned().collect();
    get_loan_products(&cache, &db, "NGN", Some(forward));
    get_loan_products(&cache, &db, "NGN", Some(backward));
    assert_eq!(db.count(), 1);
    assert_eq!(cache.count("*").unwrap(), 1);

    // Another process, with its own hasher seeds, renders the same key: this test runs
    // itself again as a child.
    let key = cache.keys("*").unwrap().pop().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hashmap_argument_gives_one_key_whatever_its_insertion_order",
            "--nocapture",
        ])
        .env("CACHEABLE_CHILD_URL", server.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    assert!(
        stdout.contains(&format!("KEY={key}\n")),
        "child printed: {stdout}"
    );
}

fn child_process_renders_key(url: &str) {
    let cache = Cache::new(Config::from_url(url).unwrap().prefix("paycore")).unwrap();
    let db = Db::default();
    let mut map = HashMap::new();
    for i in (0..20).rev() {
        map.insert(format!("field{i}"), serde_json::json!(i));
    }
    get_loan_products(&cache, &db, "NGN", Some(map));
    assert_eq!(db.count(), 0, "the parent's value must be a hit here");
    println!("KEY={}", cache.keys("*").unwrap().pop().unwrap());
}

#[tokio::test]
async fn quick_start_3_invalidation_deletes_exactly_what_it_names() {
    let server = RedisServer::start();
    let cache = paycore(&server);
    for key in [
        "user:42:profile",
        "user:420:profile",
        "user:4:profile",
        "wallets:42:balance",
        "wallets:42:summary",
        "wallets:420:balance",
        "wallets:4:balance",
        "wallets:summary:42",
    ] {
        cache.set_async(key, &1, 60).await.unwrap();
    }
    let db = Db::default();
    let user_id = 42;
    let updated = Invalidate::new(["user:<<user_id>>:profile", "wallets:<<user_id>>:*"])
        .on(&cache)
        .try_run_async(ctx! { user_id }, || async {
            Ok::<_, String>(db.profile(user_id).await)
        })
        .await
        .unwrap();
    assert_eq!(updated.id, 42);
    let mut left = cache.keys_async("*").await.unwrap();
    left.sort();
    assert_eq!(
        left,
        [
            "user:420:profile",
            "user:4:profile",
            "wallets:420:balance",
            "wallets:4:balance",
            "wallets:summary:42"
        ]
    );
    assert_eq!(cache.stats().invalidated, 3);

    // A failed mutation invalidates nothing.
    let failed: Result<(), String> = Invalidate::new(["user:<<user_id>>:*"])
        .on(&cache)
        .try_run_async(ctx! { user_id = 420 }, || async {
            Err("db down".to_string())
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(cache.count_async("user:420:*").await.unwrap(), 1);

    // `now` says how many keys went.
    let n = Invalidate::new(["user:*", "wallets:*"])
        .on(&cache)
        .now_async(ctx! {})
        .await
        .unwrap();
    assert_eq!(n, 5);
    assert_eq!(cache.count("*").unwrap(), 0);
}

#[test]
fn a_hashed_scalar_is_invalidated_by_a_pattern_that_hashes_it_too() {
    let server = RedisServer::start();
    let cache = paycore(&server);
    let email = "ada@example.com";
    Cacheable::new("user:<<email>>:profile")
        .hash("email")
        .on(&cache)
        .run(ctx! { email }, || 1);
    let key = cache.keys("user:*").unwrap().pop().unwrap();
    assert!(!key.contains("ada"), "{key}");
    // Without `hash`, the pattern renders the email in clear and matches nothing.
    let plain = Invalidate::new(["user:<<email>>:*"])
        .on(&cache)
        .now(ctx! { email })
        .unwrap();
    assert_eq!(plain, 0);
    let hashed = Invalidate::new(["user:<<email>>:*"])
        .hash("email")
        .on(&cache)
        .now(ctx! { email })
        .unwrap();
    assert_eq!(hashed, 1);
    // A hash entry that names no placeholder is reported, not ignored.
    let err = Invalidate::new(["user:<<email>>:*"])
        .hash("mail")
        .on(&cache)
        .now(ctx! { email })
        .unwrap_err();
    assert!(err.to_string().contains("hash entry `mail`"), "{err}");
}

#[test]
fn quick_start_4_manual_operations() {
    let server = RedisServer::start();
    let cache = paycore(&server);
    let profile = Profile {
        id: 123,
        name: "Ada".into(),
    };

    assert_eq!(cache.get::<Profile>("user:123:profile").unwrap(), None);
    cache.set("user:123:profile", &profile, 600).unwrap();
    assert_eq!(
        cache.get::<Profile>("user:123:profile").unwrap(),
        Some(profile.clone())
    );
    assert_eq!(
        server.cli(&["EXISTS", "paycore:user:123:profile"]).trim(),
        "1"
    );
    match cache.ttl("user:123:profile").unwrap() {
        KeyTtl::Expires(left) => assert!(left.as_secs() > 590 && left.as_secs() <= 600, "{left:?}"),
        other => panic!("{other:?}"),
    }
    assert!(cache.delete("user:123:profile").unwrap());
    assert!(!cache.delete("user:123:profile").unwrap());
    assert_eq!(cache.ttl("user:123:profile").unwrap(), KeyTtl::Missing);

    for k in ["user:123:profile", "user:123:settings", "user:1234:profile"] {
        cache.set(k, &profile, 600).unwrap();
    }
    assert_eq!(cache.count("user:123:*").unwrap(), 2);
    assert_eq!(cache.delete_pattern("user:123:*").unwrap(), 2);
    assert_eq!(cache.keys("*").unwrap(), ["user:1234:profile"]);

    let fetches = AtomicUsize::new(0);
    let fetch_user = || {
        fetches.fetch_add(1, Ordering::SeqCst);
        profile.clone()
    };
    let a: Profile = cache
        .get_or_set("user:123:profile", fetch_user, 600)
        .unwrap();
    let b: Profile = cache
        .get_or_set("user:123:profile", fetch_user, 600)
        .unwrap();
    assert_eq!(
        (a, b, fetches.load(Ordering::SeqCst)),
        (profile.clone(), profile, 1)
    );
}

#[tokio::test]
async fn cached_none_is_served() {
    let server = RedisServer::start();
    let cache = paycore(&server);
    let calls = AtomicUsize::new(0);
    let lookup = || {
        Cacheable::new("user:<<id>>:avatar")
            .on(&cache)
            .run_async(ctx! { id = 7 }, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                None::<String>
            })
    };
    assert_eq!(lookup().await, None);
    assert_eq!(lookup().await, None);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the cached None must be a hit"
    );
    assert_eq!(server.cli(&["GET", "paycore:user:7:avatar"]).trim(), "null");
}

#[test]
fn err_is_returned_and_never_cached() {
    let server = RedisServer::start();
    let cache = paycore(&server);
    let calls = AtomicUsize::new(0);
    let attempt = |fail: bool| {
        Cacheable::new("rates:<<code>>")
            .on(&cache)
            .try_run(ctx! { code = "NGN" }, || {
                calls.fetch_add(1, Ordering::SeqCst);
                if fail {
                    Err("upstream down".to_string())
                } else {
                    Ok(1.5f64)
                }
            })
    };
    assert_eq!(attempt(true), Err("upstream down".to_string()));
    // Nothing is stored: the key is empty, or holds for a second the marker that tells
    // waiting callers the computation failed.
    assert_eq!(
        cache.get::<f64>("rates:NGN").unwrap(),
        None,
        "an Err must not be stored"
    );
    let raw = server.cli(&["GET", "paycore:rates:NGN"]);
    assert!(
        raw.trim().is_empty() || raw.starts_with("\x00cacheable-failed:"),
        "{raw:?}"
    );
    assert_eq!(attempt(false), Ok(1.5));
    assert_eq!(attempt(true), Ok(1.5), "the Ok value is served afterwards");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn value_under_an_old_type_is_a_miss_and_is_overwritten() {
    let server = RedisServer::start();
    let cache = paycore(&server);
    // An older release stored a bare name here.
    cache.set("user:5:profile", "Ada", 600).unwrap();
    let db = Db::default();
    let profile = get_user_profile(&cache, &db, 5).await;
    assert_eq!(db.count(), 1, "the old value must not be served");
    assert_eq!(profile.id, 5);
    assert_eq!(
        cache.get::<Profile>("user:5:profile").unwrap(),
        Some(profile)
    );
    assert_eq!(cache.stats().decode_errors, 1);
    get_user_profile(&cache, &db, 5).await;
    assert_eq!(db.count(), 1);
    // The manual read says why rather than pretending the key is empty.
    let err = cache.get::<i64>("user:5:profile").unwrap_err();
    assert_eq!(err.kind(), cacheable::ErrorKind::Deserialize);
}

#[test]
fn keys_are_relative_to_the_prefix_and_other_prefixes_are_untouched() {
    let server = RedisServer::start();
    let a = paycore(&server);
    let b = Cache::new(Config::from_url(&server.url()).unwrap().prefix("other")).unwrap();
    a.set("k:1", &1, 60).unwrap();
    b.set("k:1", &2, 60).unwrap();
    assert_eq!(a.delete_pattern("*").unwrap(), 1);
    assert_eq!(b.get::<i32>("k:1").unwrap(), Some(2));
    // A prefix holding glob syntax matches only itself in patterns.
    let star = Cache::new(Config::from_url(&server.url()).unwrap().prefix("p*")).unwrap();
    let plain = Cache::new(Config::from_url(&server.url()).unwrap().prefix("px")).unwrap();
    star.set("k", &1, 60).unwrap();
    plain.set("k", &1, 60).unwrap();
    assert_eq!(star.delete_pattern("*").unwrap(), 1);
    assert_eq!(plain.count("*").unwrap(), 1);
}
