//! Every feature under a Redis user limited to the cache's prefix and without `@dangerous`
//! commands, on one server, Sentinel and a cluster, with the ACL lines README.md gives; and
//! what the crate says when a permission is missing.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate, NearCacheHealth, Outcome};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// README.md's ACL rule for one server, for the prefix `app`.
const ONE_SERVER: &str = "~app:* +@read +@write +@scripting +@connection -@dangerous";
/// What a cluster adds: the slot map and the replica census.
#[cfg(feature = "cluster")]
const CLUSTER_EXTRA: &[&str] = &["+cluster|slots", "+cluster|nodes"];

/// `ACL SETUSER cache on >pw` with `rules` on a server, through `cli`.
fn grant(cli: impl Fn(&[&str]) -> String, rules: &[&str]) {
    let mut args = vec!["ACL", "SETUSER", "cache", "reset", "on", ">pw"];
    args.extend(rules);
    let out = cli(&args);
    assert_eq!(out.trim(), "OK", "ACL SETUSER {rules:?}: {out}");
}

fn rules(extra: &[&'static str]) -> Vec<&'static str> {
    let mut all: Vec<&str> = ONE_SERVER.split(' ').collect();
    all.extend(extra);
    all
}

/// The commands a server refused the `cache` user, from `ACL LOG`.
fn refusals(cli: impl Fn(&[&str]) -> String) -> String {
    let log = cli(&["ACL", "LOG"]);
    log.lines()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0].trim() == "object")
        .map(|w| w[1].trim().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each feature once, through a cache whose URL logs in as `cache`: none may fail.
fn workload(url: &str) {
    let cache = Cache::new(
        Config::from_url(url)
            .unwrap()
            .prefix("app")
            .near_cache(1000)
            .lease_ttl(Duration::from_millis(500)),
    )
    .unwrap();
    let n = AtomicU64::new(0);
    let next = || n.fetch_add(1, Ordering::SeqCst) + 1;
    let mut outcome = Outcome::default();
    // Plain, then its near hit.
    let plain = |o: &mut Outcome| {
        Cacheable::new("plain:<<id>>")
            .outcome(o)
            .on(&cache)
            .run(ctx! { id = 1 }, next)
    };
    let first = plain(&mut outcome);
    support::first_near_hit(&cache, Duration::from_secs(10), || {
        assert_eq!(plain(&mut Outcome::default()), first)
    });
    // Tags, sliding, sliding with tags, a stale window, early refresh, a forced refresh, a
    // bypass, `ttl_from`.
    for _ in 0..2 {
        Cacheable::new("tagged:<<user>>:<<id>>")
            .tags(["user:<<user>>"])
            .on(&cache)
            .run(ctx! { user = 7, id = 1 }, next);
        Cacheable::new("slide:<<id>>")
            .sliding(true)
            .on(&cache)
            .run(ctx! { id = 1 }, next);
        Cacheable::new("slidetag:<<user>>")
            .sliding(true)
            .tags(["user:<<user>>"])
            .on(&cache)
            .run(ctx! { user = 7 }, next);
        Cacheable::new("stale:<<id>>")
            .stale_if_error(60)
            .stale_while_revalidate(60)
            .on(&cache)
            .run(ctx! { id = 1 }, next);
        Cacheable::new("early:<<id>>")
            .early_refresh(1.0)
            .on(&cache)
            .run(ctx! { id = 1 }, next);
        Cacheable::new("token:<<id>>")
            .ttl_from(|_: &u64| Duration::from_secs(30))
            .sliding(true)
            .on(&cache)
            .run(ctx! { id = 1 }, next);
    }
    Cacheable::new("early:<<id>>")
        .refresh(true)
        .on(&cache)
        .run(ctx! { id = 1 }, next);
    Cacheable::new("early:<<id>>")
        .bypass(true)
        .on(&cache)
        .run(ctx! { id = 1 }, next);
    // Manual operations.
    cache.set("manual:1", &1, 60).unwrap();
    assert_eq!(cache.get::<i32>("manual:1").unwrap(), Some(1));
    assert!(matches!(
        cache.ttl("manual:1").unwrap(),
        cacheable::KeyTtl::Expires(_)
    ));
    assert_eq!(
        cache.get_or_set("manual:2", || 2, 60).unwrap(),
        2,
        "get_or_set"
    );
    assert!(cache.count("manual:*").unwrap() >= 2);
    assert!(cache.delete("manual:1").unwrap());
    // Invalidations: a key, a pattern, a tag.
    Invalidate::new(["plain:<<id>>"])
        .on(&cache)
        .now(ctx! { id = 1 })
        .unwrap();
    assert_eq!(
        Invalidate::new(["slide:*"])
            .on(&cache)
            .now(ctx! {})
            .unwrap(),
        1
    );
    assert_eq!(
        Invalidate::tags(["user:<<user>>"])
            .on(&cache)
            .now(ctx! { user = 7 })
            .unwrap(),
        2
    );
    let health = cache.health();
    assert!(health.is_ready(), "{health:?}");
    assert!(
        matches!(health.near_cache, NearCacheHealth::Serving { .. }),
        "{health:?}"
    );
    let stats = cache.stats();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.failed_invalidations, 0, "{stats:?}");
    assert!(stats.near_hits > 0, "{stats:?}");
}

#[cfg(feature = "redis")]
#[test]
fn one_server_needs_nothing_beyond_its_acl_line() {
    let server = support::RedisServer::start();
    grant(|a| server.cli(a), &rules(&[]));
    workload(&format!("redis://cache:pw@127.0.0.1:{}/", server.port));
    assert_eq!(refusals(|a| server.cli(a)), "", "commands refused");
}

#[cfg(feature = "cluster")]
#[test]
fn a_cluster_needs_its_slot_map_besides() {
    let cluster = support::RedisCluster::start();
    for node in &cluster.nodes {
        grant(|a| node.cli(a), &rules(CLUSTER_EXTRA));
    }
    let url = cluster.url().replacen("://", "://cache:pw@", 1);
    workload(&url);
    for node in &cluster.nodes {
        assert_eq!(
            refusals(|a| node.cli(a)),
            "",
            "commands refused on {}",
            node.port
        );
    }
}

/// The data nodes need nothing beyond one server's line: the primary is checked with `WAIT
/// 0 0` (a replica refuses it), not `ROLE`, which is `@dangerous`.
#[cfg(feature = "sentinel")]
#[test]
fn sentinel_data_nodes_need_nothing_beyond_one_servers_line() {
    let setup = support::RedisSentinel::start();
    for node in &setup.nodes {
        grant(|a| node.cli(a), &rules(&[]));
    }
    // The Sentinels' own user: the primary's address, its replicas, the switch messages.
    let setup = &setup;
    let sentinel = |port: u16| move |a: &[&str]| setup.sentinel_cli(port, a);
    for s in &setup.sentinels {
        grant(sentinel(s.port), &SENTINEL.split(' ').collect::<Vec<_>>());
    }
    let url = setup.url().replacen("://", "://cache:pw@", 1);
    let sep = if url.contains('?') { '&' } else { '?' };
    workload(&format!(
        "{url}{sep}sentinel_username=cache&sentinel_password=pw"
    ));
    for node in &setup.nodes {
        assert_eq!(
            refusals(|a| node.cli(a)),
            "",
            "commands refused on {}",
            node.port
        );
    }
    for s in &setup.sentinels {
        assert_eq!(
            refusals(sentinel(s.port)),
            "",
            "refused on Sentinel {}",
            s.port
        );
    }
}

/// README.md's ACL rule for the Sentinels themselves.
#[cfg(feature = "sentinel")]
const SENTINEL: &str =
    "-@all +sentinel|get-master-addr-by-name +sentinel|replicas +subscribe +ping +hello &+switch-master";

/// Without `CLIENT TRACKING` the near cache can never serve: it said nothing (0 near hits,
/// 0 errors, retries logged at debug level). Now a warning names the cause and the fix, and
/// `health()` shows the near cache not serving, with the reason.
#[cfg(feature = "redis")]
#[test]
fn a_near_cache_that_cannot_track_says_why() {
    support::logs::capture();
    let server = support::RedisServer::start();
    grant(|a| server.cli(a), &rules(&["-client|tracking"]));
    let cache = Cache::new(
        Config::from_url(&format!("redis://cache:pw@127.0.0.1:{}/", server.port))
            .unwrap()
            .prefix("app")
            .near_cache(100),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let warning = loop {
        let found = support::logs::lines()
            .into_iter()
            .find(|l| l.starts_with("WARN") && l.contains("near cache"));
        if let Some(line) = found {
            break line;
        }
        assert!(Instant::now() < deadline, "no warning about the near cache");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(warning.starts_with("WARN"), "{warning}");
    assert!(warning.contains("+client|tracking"), "{warning}");
    for _ in 0..20 {
        Cacheable::new("k").on(&cache).run(ctx! {}, || 1);
    }
    assert_eq!(cache.stats().near_hits, 0);
    let health = cache.health();
    assert!(health.is_ready(), "the store works: {health:?}");
    match &health.near_cache {
        NearCacheHealth::NotServing { reason: Some(why) } => {
            assert!(
                why.contains("NOPERM") || why.contains("permission"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Logged once, not once a retry.
    std::thread::sleep(Duration::from_millis(300));
    let count = support::logs::lines()
        .iter()
        .filter(|l| l.starts_with("WARN") && l.contains("near cache"))
        .count();
    assert_eq!(count, 1);
}

/// A permission error names the command and what to grant, on the manual path that
/// returns it.
#[cfg(feature = "redis")]
#[test]
fn a_missing_permission_names_the_command_and_the_grant() {
    let server = support::RedisServer::start();
    grant(|a| server.cli(a), &rules(&["-get"]));
    let cache = Cache::new(
        Config::from_url(&format!("redis://cache:pw@127.0.0.1:{}/", server.port))
            .unwrap()
            .prefix("app"),
    )
    .unwrap();
    let err = cache.get::<i32>("k").unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("`get`"), "{text}");
    assert!(text.contains("ACL SETUSER <user> +get"), "{text}");
}

/// On Sentinel, an invalidation waits for a replica to acknowledge its deletions (`WAIT`),
/// as on a cluster: without it a primary killed just after acknowledging a delete could
/// take it along to the grave, and the promoted replica serve the old value.
#[cfg(feature = "sentinel")]
#[test]
fn a_sentinel_invalidation_waits_for_a_replica() {
    let setup = support::RedisSentinel::start();
    let primary = setup.primary_port().unwrap();
    let waits = || -> u64 {
        let info = setup.node_cli(primary, &["INFO", "commandstats"]);
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    let cache = Cache::new(Config::from_url(&setup.url()).unwrap().prefix("w")).unwrap();
    cache.set("k", &1, 60).unwrap();
    let before = waits();
    assert_eq!(Invalidate::new(["k"]).on(&cache).now(ctx! {}).unwrap(), 1);
    Invalidate::new(["k*"]).on(&cache).now(ctx! {}).unwrap();
    assert!(waits() >= before + 2, "no WAIT after the deletions");
}
