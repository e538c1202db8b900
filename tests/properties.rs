//! Generated values against the real server's `SCAN MATCH`: escaping never widens a
//! pattern, rendering is injective, and the embedded store matches globs as Redis does.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use std::collections::{BTreeSet, HashSet};
use support::{RedisServer, Rng};

const NASTY: &[char] = &[
    '*', '?', '[', ']', '\\', ':', '%', '^', '-', 'a', 'b', '1', 'é', ' ',
];

fn redis_cache(server: &RedisServer, prefix: &str) -> Cache {
    Cache::new(Config::from_url(&server.url()).unwrap().prefix(prefix)).unwrap()
}

#[test]
fn no_placeholder_value_widens_an_invalidation_pattern() {
    let server = RedisServer::start();
    let cache = redis_cache(&server, "paycore");
    let mut rng = Rng::new(0xC0FFEE);
    let mut checked = 0;
    for _round in 0..60 {
        let values: BTreeSet<String> = (0..40).map(|_| rng.string(NASTY, 6)).collect();
        for v in &values {
            Cacheable::new("wallets:<<user_id>>:balance")
                .on(&cache)
                .run(ctx! { user_id = v }, || 1);
            Cacheable::new("wallets:<<user_id>>:summary")
                .on(&cache)
                .run(ctx! { user_id = v }, || 2);
        }
        assert_eq!(cache.count("*").unwrap(), 2 * values.len() as u64);
        let mut left = values.len() as u64;
        for v in &values {
            let deleted = Invalidate::new(["wallets:<<user_id>>:*"])
                .on(&cache)
                .now(ctx! { user_id = v })
                .unwrap();
            assert_eq!(
                deleted, 2,
                "value {v:?} deleted {deleted} keys, expected its own 2"
            );
            left -= 1;
            assert_eq!(cache.count("*").unwrap(), 2 * left, "after {v:?}");
            checked += 1;
        }
    }
    println!("{checked} generated values, each invalidation deleted exactly its own 2 keys");
    assert!(checked >= 2000, "{checked} values checked");
}

#[test]
fn different_contexts_render_different_keys() {
    let server = RedisServer::start();
    let cache = redis_cache(&server, "p");
    let mut rng = Rng::new(42);
    // Single placeholder: distinct strings, plus None against Some("null").
    let mut values: HashSet<Option<String>> =
        (0..3000).map(|_| Some(rng.string(NASTY, 8))).collect();
    values.insert(None);
    values.insert(Some("null".into()));
    values.insert(Some("%null".into()));
    for v in &values {
        Cacheable::new("k:<<v>>").on(&cache).run(ctx! { v }, || 0);
    }
    assert_eq!(cache.count("k:*").unwrap(), values.len() as u64);

    // Two placeholders: a `:` inside one value cannot move the segment boundary.
    let mut pairs: HashSet<(String, String)> = (0..2000)
        .map(|_| (rng.string(NASTY, 4), rng.string(NASTY, 4)))
        .collect();
    pairs.insert(("x:y".into(), "z".into()));
    pairs.insert(("x".into(), "y:z".into()));
    for (a, b) in &pairs {
        Cacheable::new("two:<<a>>:<<b>>")
            .on(&cache)
            .run(ctx! { a, b }, || 0);
    }
    assert_eq!(cache.count("two:*").unwrap(), pairs.len() as u64);
    println!(
        "{} single values and {} pairs, all keys distinct",
        values.len(),
        pairs.len()
    );
}

#[test]
fn embedded_store_matches_globs_as_redis_scan_match_does() {
    let server = RedisServer::start();
    let redis = redis_cache(&server, "p");
    let memory = Cache::new(Config::memory().prefix("p")).unwrap();
    let mut rng = Rng::new(7);
    let key_chars = &['a', 'b', 'c', ':', '*', '?', '[', ']', '\\', '-', '^', 'é'];
    let pattern_chars = &[
        'a', 'b', 'c', ':', '*', '?', '[', ']', '\\', '-', '^', 'é', '*', '*', 'a',
    ];
    let mut pairs = 0;
    let mut matched = 0;
    for _round in 0..12 {
        let keys: BTreeSet<String> = (0..150)
            .map(|_| rng.string(key_chars, 6))
            .filter(|k| !k.is_empty())
            .collect();
        redis.delete_pattern("*").unwrap();
        memory.delete_pattern("*").unwrap();
        for k in &keys {
            redis.set(k, &1, 600).unwrap();
            memory.set(k, &1, 600).unwrap();
        }
        for _ in 0..60 {
            let pattern = rng.string(pattern_chars, 7);
            if pattern.is_empty() {
                continue;
            }
            let from_redis: BTreeSet<String> = redis.keys(&pattern).unwrap().into_iter().collect();
            let from_memory: BTreeSet<String> =
                memory.keys(&pattern).unwrap().into_iter().collect();
            assert_eq!(from_memory, from_redis, "pattern {pattern:?}");
            pairs += keys.len();
            matched += from_redis.len();
        }
    }
    // A class range over bytes past ASCII: Redis compares them as signed chars, so
    // `[é-b]` (0xC3, then 0xA9-`b`, that is -87..=98) holds `a` and not `c`.
    redis.delete_pattern("*").unwrap();
    memory.delete_pattern("*").unwrap();
    for k in ["a", "c"] {
        redis.set(k, &1, 600).unwrap();
        memory.set(k, &1, 600).unwrap();
    }
    assert_eq!(redis.keys("[é-b]").unwrap(), ["a"]);
    assert_eq!(memory.keys("[é-b]").unwrap(), ["a"]);
    println!("{pairs} (key, pattern) pairs agree, {matched} of them matches");
    assert!(pairs >= 10_000, "{pairs} pairs");
    assert!(
        matched > 100,
        "only {matched} matches: the generator is too narrow to mean much"
    );
}
