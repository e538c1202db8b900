//! Pattern deletes that span many `SCAN` pages, sync and async: each page's `UNLINK` is
//! pipelined with the next page's `SCAN`, and every matching key still goes, and only those.
#![cfg(feature = "redis")]

mod support;

use cacheable::{Cache, Config};
use support::RedisServer;

/// 2,000 keys, 500 of them matching, walked 10 slots a page.
fn filled(server: &RedisServer) -> Cache {
    let mut con = server.client();
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        let user = if i % 4 == 0 { 7 } else { 70 + i % 3 };
        pipe.cmd("SET")
            .arg(format!("p:wallets:{user}:{i}"))
            .arg(i)
            .ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("p")
            .scan_count(10),
    )
    .unwrap()
}

fn remaining(server: &RedisServer) -> (u64, u64) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("p:wallets:*")
        .query(&mut server.client())
        .unwrap();
    let matching = keys
        .iter()
        .filter(|k| k.starts_with("p:wallets:7:"))
        .count();
    (matching as u64, (keys.len() - matching) as u64)
}

#[test]
fn a_many_page_delete_removes_every_match_and_nothing_else() {
    let server = RedisServer::start();
    let cache = filled(&server);
    assert_eq!(cache.delete_pattern("wallets:7:*").unwrap(), 500);
    assert_eq!(remaining(&server), (0, 1500));
    assert_eq!(cache.delete_pattern("wallets:7:*").unwrap(), 0);
}

#[tokio::test]
async fn a_many_page_async_delete_removes_every_match_and_nothing_else() {
    let server = RedisServer::start();
    let cache = filled(&server);
    assert_eq!(
        cache.delete_pattern_async("wallets:7:*").await.unwrap(),
        500
    );
    assert_eq!(remaining(&server), (0, 1500));
    assert_eq!(cache.delete_pattern_async("wallets:7:*").await.unwrap(), 0);
}
