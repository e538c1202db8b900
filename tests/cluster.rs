//! What only a Redis Cluster has: keys spread over primaries, hash tags, redirections
//! while a slot moves, and a primary that dies and is replaced by its replica. Each test
//! starts its own private cluster of 3 primaries and 3 replicas (tests/support).
#![cfg(feature = "cluster")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Context, Invalidate};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::failover::Readers;
use support::RedisCluster;

fn cache_on(cluster: &RedisCluster, prefix: &str) -> Cache {
    Cache::new(Config::from_url(&cluster.url()).unwrap().prefix(prefix)).unwrap()
}

/// `SCAN` calls each primary has served so far.
fn scans(cluster: &RedisCluster) -> HashMap<u16, u64> {
    cluster
        .primaries()
        .into_iter()
        .map(|port| {
            let stats = cluster.node(port).cli(&["INFO", "commandstats"]);
            let calls = stats
                .lines()
                .find_map(|l| l.strip_prefix("cmdstat_scan:calls="))
                .and_then(|rest| rest.split(',').next())
                .map_or(0, |n| n.parse().unwrap());
            (port, calls)
        })
        .collect()
}

#[test]
fn a_pattern_deletes_its_keys_on_every_primary_and_nothing_else() {
    let cluster = RedisCluster::start();
    let cache = cache_on(&cluster, "spread");
    let neighbour = cache_on(&cluster, "spread2");
    for id in 0..600 {
        cache.set(&format!("user:{id}:profile"), &id, 60).unwrap();
        cache.set(&format!("order:{id}"), &id, 60).unwrap();
        neighbour
            .set(&format!("user:{id}:profile"), &id, 60)
            .unwrap();
    }
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3);
    for &port in &primaries {
        let here = cluster.keys_on(port, "spread:user:*").len();
        println!("primary {port}: {here} of the 600 user keys");
        assert!(here > 100, "primary {port} holds {here} user keys");
    }
    let before = scans(&cluster);
    assert_eq!(cache.delete_pattern("user:*").unwrap(), 600);
    let after = scans(&cluster);
    for &port in &primaries {
        assert!(after[&port] > before[&port], "primary {port} was scanned");
        assert!(cluster.keys_on(port, "spread:user:*").is_empty());
    }
    let left: usize = primaries
        .iter()
        .map(|&p| cluster.keys_on(p, "spread:order:*").len())
        .sum();
    assert_eq!(left, 600, "other keys of the cache stay");
    let theirs: usize = primaries
        .iter()
        .map(|&p| cluster.keys_on(p, "spread2:*").len())
        .sum();
    assert_eq!(theirs, 600, "another cache's keys stay");
    assert_eq!(cache.count("*").unwrap(), 600);
}

#[test]
fn hash_tagged_keys_share_a_node_and_a_tagged_pattern_scans_only_it() {
    let cluster = RedisCluster::start();
    let cache = cache_on(&cluster, "paycore");
    let summary = |user_id: u32, part: &str| {
        Cacheable::new("wallets:{<<user_id>>}:<<part>>")
            .on(&cache)
            .run(ctx! { user_id, part }, || format!("{user_id}:{part}"))
    };
    let parts = ["summary", "history", "limits", "cards", "loans"];
    for user_id in 0..30 {
        for part in parts {
            summary(user_id, part);
        }
    }
    // Every key of user 42's kind lives on one node: the one `{42}` hashes to.
    let home = cluster.primary_of("paycore:wallets:{7}:summary");
    let mut on_home = cluster.keys_on(home, "paycore:wallets:{7}:*");
    on_home.sort();
    assert_eq!(on_home.len(), parts.len(), "{on_home:?}");
    for part in parts {
        assert_eq!(
            cluster.primary_of(&format!("paycore:wallets:{{7}}:{part}")),
            home
        );
    }
    // The users' keys are spread over the primaries all the same.
    let users_per_primary: Vec<usize> = cluster
        .primaries()
        .iter()
        .map(|&p| cluster.keys_on(p, "paycore:wallets:*").len() / parts.len())
        .collect();
    assert!(
        users_per_primary.iter().all(|&n| n > 0),
        "{users_per_primary:?}"
    );

    let before = scans(&cluster);
    let deleted = Invalidate::new(["wallets:{<<user_id>>}:*"])
        .on(&cache)
        .now(ctx! { user_id = 7 })
        .unwrap();
    assert_eq!(deleted, parts.len() as u64);
    let after = scans(&cluster);
    for (port, calls) in &after {
        if *port == home {
            assert!(*calls > before[port], "the tag's primary was scanned");
        } else {
            assert_eq!(*calls, before[port], "primary {port} was not scanned");
        }
    }
    assert!(cluster.keys_on(home, "paycore:wallets:{7}:*").is_empty());
    assert_eq!(cache.count("wallets:*").unwrap(), 29 * parts.len() as u64);
}

/// Moves the slot of `key` from its primary to another, through the ASK phase
/// (`MIGRATING`/`IMPORTING`, the key already moved) and then the MOVED phase, calling `check`
/// in each.
fn move_slot(cluster: &RedisCluster, key: &str, mut check: impl FnMut(&str)) {
    let source = cluster.primary_of(key);
    let target = *cluster.primaries().iter().find(|&&p| p != source).unwrap();
    let id = |port: u16| {
        cluster
            .node(port)
            .cli(&["CLUSTER", "MYID"])
            .trim()
            .to_owned()
    };
    let (source_id, target_id) = (id(source), id(target));
    let slot = cluster
        .node(source)
        .cli(&["CLUSTER", "KEYSLOT", key])
        .trim()
        .to_owned();
    let ok = |port: u16, args: &[&str]| {
        let out = cluster.node(port).cli(args);
        assert!(out.trim() == "OK", "{args:?} on {port}: {out}");
    };
    ok(
        target,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id],
    );
    ok(
        source,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id],
    );
    let target_port = target.to_string();
    ok(
        source,
        &[
            "MIGRATE",
            "127.0.0.1",
            &target_port,
            "",
            "0",
            "5000",
            "KEYS",
            key,
        ],
    );
    check("ASK");
    for port in cluster.primaries() {
        ok(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id]);
    }
    assert_eq!(cluster.primary_of(key), target);
    check("MOVED");
}

#[test]
fn ask_and_moved_redirections_are_followed_by_sync_and_async_calls() {
    let cluster = RedisCluster::start();
    let cache = cache_on(&cluster, "moving");
    let rt = support::bare_current_thread();
    let computed = AtomicUsize::new(0);
    let sync_read = || {
        Cacheable::new("item:<<id>>")
            .on(&cache)
            .run(ctx! { id = 1 }, || {
                computed.fetch_add(1, Ordering::SeqCst);
                "one".to_string()
            })
    };
    let async_read = || {
        rt.block_on(
            Cacheable::new("item:<<id>>")
                .on(&cache)
                .run_async(ctx! { id = 1 }, || async {
                    computed.fetch_add(1, Ordering::SeqCst);
                    "one".to_string()
                }),
        )
    };
    // Both paths connected and warm, with the slot where it was.
    assert_eq!(sync_read(), "one");
    assert_eq!(async_read(), "one");
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    let mut expected = 1;
    move_slot(&cluster, "moving:item:1", |phase| {
        for _ in 0..3 {
            assert_eq!(sync_read(), "one", "{phase}");
            assert_eq!(async_read(), "one", "{phase}");
        }
        assert_eq!(
            computed.load(Ordering::SeqCst),
            expected,
            "{phase}: every read found the value"
        );
        assert!(matches!(
            cache.ttl("item:1").unwrap(),
            cacheable::KeyTtl::Expires(_)
        ));
        // A fresh computation on the slot: the lease (SET NX), the compare-and-set script,
        // then hits on both paths.
        assert!(cache.delete("item:1").unwrap(), "{phase}");
        assert_eq!(sync_read(), "one");
        assert_eq!(async_read(), "one");
        expected += 1;
        assert_eq!(computed.load(Ordering::SeqCst), expected, "{phase}");
        assert!(
            rt.block_on(cache.delete_async("item:1")).unwrap(),
            "{phase}"
        );
        assert_eq!(async_read(), "one");
        assert_eq!(sync_read(), "one");
        expected += 1;
        assert_eq!(computed.load(Ordering::SeqCst), expected, "{phase}");
    });
    let stats = cache.stats();
    assert_eq!(stats.errors, 0, "{stats:?}");
}

const OP_TIMEOUT: Duration = Duration::from_millis(200);

/// A primary is killed (SIGKILL) while sync and async readers run, and its replica takes
/// over: every call answers, none waits much longer than the operation timeout, the other
/// primaries' keys keep their hits until the cluster itself stops answering, caching
/// resumes after the failover, and a writer/reader race run throughout finds no stale value.
#[test]
fn a_killed_primary_costs_its_callers_the_timeout_and_caching_resumes_after_failover() {
    let mut cluster = RedisCluster::start();
    let config = Config::from_url(&cluster.url())
        .unwrap()
        .prefix("fo")
        .op_timeout(OP_TIMEOUT)
        .connect_timeout(OP_TIMEOUT)
        .invalidate_retries(1);
    let cache = Arc::new(Cache::new(config).unwrap());
    let victim = cluster.primary_of("fo:balance:42");
    let readers = Readers::new(300, Duration::from_micros(500));
    let on_victim: Vec<bool> = (0..readers.keys)
        .map(|id| cluster.primary_of(&format!("fo:item:{id}")) == victim)
        .collect();
    assert_eq!(readers.warm(&cache), 300);
    // Let the replicas catch up with the warm values.
    std::thread::sleep(Duration::from_millis(100));

    let killed = AtomicBool::new(false);
    // Hits and calls on other primaries' keys after the kill, before the cluster noticed.
    let others = (AtomicU64::new(0), AtomicU64::new(0));
    let noticed = AtomicBool::new(false);
    let rt = support::bare_runtime(2);
    std::thread::scope(|s| {
        for t in 0..2u32 {
            let (cache, readers) = (&cache, &readers);
            let (killed, noticed, others, on_victim) = (&killed, &noticed, &others, &on_victim);
            s.spawn(move || {
                readers.sync_loop(cache, t, |id, computed| {
                    if killed.load(Ordering::SeqCst)
                        && !noticed.load(Ordering::SeqCst)
                        && !on_victim[id as usize]
                    {
                        others.1.fetch_add(1, Ordering::Relaxed);
                        if !computed {
                            others.0.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            });
        }
        for t in 0..2u32 {
            rt.spawn(readers.clone().async_loop((*cache).clone(), 100 + t));
        }
        // The writer/reader race on a key of the victim, throughout.
        let race = s.spawn(|| support::failover::race_until(&cache, readers.stop_flag(), 11));

        std::thread::sleep(Duration::from_millis(500));
        killed.store(true, Ordering::SeqCst);
        cluster.kill(victim);
        println!("killed primary {victim}");
        // The cluster notices (cluster_state:fail somewhere), then fails over.
        let t0 = Instant::now();
        let live: Vec<u16> = cluster
            .nodes
            .iter()
            .filter(|n| n.port != victim)
            .map(|n| n.port)
            .collect();
        while t0.elapsed() < Duration::from_secs(15) {
            if live.iter().any(|&p| {
                cluster
                    .node(p)
                    .cli(&["CLUSTER", "INFO"])
                    .contains("cluster_state:fail")
            }) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        noticed.store(true, Ordering::SeqCst);
        println!("cluster noticed after {:?}", t0.elapsed());
        cluster
            .wait_ready(Duration::from_secs(20))
            .expect("the replica takes over");
        println!("failed over after {:?}", t0.elapsed());
        assert!(!cluster.primaries().contains(&victim));
        // Readers go on a little after the failover.
        std::thread::sleep(Duration::from_millis(500));
        readers.stop();
        let (rounds, stale, skipped) = race.join().unwrap();
        println!("race: {rounds} rounds checked, {stale} stale, {skipped} rounds skipped (invalidation failed while the primary was down)");
        assert!(rounds > 50, "{rounds} rounds");
        assert_eq!(stale, 0, "stale values across the failover");
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let (slow_sync, slow_async) = readers.slowest();
    let (hits, other_calls) = (
        others.0.load(Ordering::SeqCst),
        others.1.load(Ordering::SeqCst),
    );
    println!(
        "{} calls; slowest sync call {slow_sync:?}, slowest async call {slow_async:?} (op_timeout {OP_TIMEOUT:?}); \
         other primaries' keys before the cluster noticed: {hits} hits of {other_calls} calls",
        readers.calls()
    );
    // A liveness bound, not a latency claim (the printed figures are the measurement): a
    // sync caller may have to open a cluster connection, which connects to every node, the
    // dead one included, while the racing invalidations hold pooled ones for their `WAIT`.
    let bound = OP_TIMEOUT * 5 + Duration::from_millis(500);
    assert!(slow_sync < bound, "slowest sync call {slow_sync:?}");
    assert!(slow_async < bound, "slowest async call {slow_async:?}");
    assert!(other_calls > 0);
    assert!(
        hits * 100 >= other_calls * 95,
        "other primaries' keys kept their hits: {hits} of {other_calls}"
    );

    // After the failover: rounds over every key until one is all hits.
    let mut rounds_to_all_hits = None;
    for round in 1..=5 {
        let computed = AtomicUsize::new(0);
        for id in 0..readers.keys {
            assert_eq!(Readers::read(&cache, id, &computed), id * 10);
        }
        let misses = computed.load(Ordering::SeqCst);
        println!(
            "round {round} after the failover: {misses} misses of {}",
            readers.keys
        );
        if misses == 0 {
            rounds_to_all_hits = Some(round);
            break;
        }
    }
    assert!(
        rounds_to_all_hits.is_some_and(|r| r <= 2),
        "rounds until all hits: {rounds_to_all_hits:?}"
    );
}

/// A primary frozen (SIGSTOP, as a stuck host): calls on its keys take the operation timeout
/// until its breaker opens, then fail fast; calls on the other primaries' keys are hits and
/// wait for nothing; once it thaws, its keys are cached again.
#[test]
fn a_frozen_primary_costs_its_own_callers_the_timeout_and_no_one_else_anything() {
    let cluster = RedisCluster::start();
    let cache = Cache::new(
        Config::from_url(&cluster.url())
            .unwrap()
            .prefix("fz")
            .op_timeout(OP_TIMEOUT)
            .connect_timeout(OP_TIMEOUT),
    )
    .unwrap();
    let victim = cluster.primary_of("fz:item:1");
    let on_victim: Vec<bool> = (0..60)
        .map(|id| cluster.primary_of(&format!("fz:item:{id}")) == victim)
        .collect();
    let computed = AtomicUsize::new(0);
    let read = |id: u32| {
        Cacheable::new("item:<<id>>")
            .on(&cache)
            .run(ctx! { id }, || {
                computed.fetch_add(1, Ordering::SeqCst);
                id
            })
    };
    let rt = support::bare_current_thread();
    let read_async = |id: u32| {
        rt.block_on(
            Cacheable::new("item:<<id>>")
                .on(&cache)
                .run_async(ctx! { id }, || async move { id }),
        )
    };
    for id in 0..60 {
        assert_eq!(read(id), id);
        assert_eq!(read_async(id), id);
    }
    cluster.node(victim).pause();
    let (mut slowest_victim, mut slowest_other) = (Duration::ZERO, Duration::ZERO);
    let before = computed.load(Ordering::SeqCst);
    let mut other_misses = 0;
    for _ in 0..3 {
        for id in 0..60u32 {
            let was = computed.load(Ordering::SeqCst);
            let started = Instant::now();
            assert_eq!(read(id), id);
            let sync_took = started.elapsed();
            let started = Instant::now();
            assert_eq!(read_async(id), id);
            let took = sync_took.max(started.elapsed());
            if on_victim[id as usize] {
                slowest_victim = slowest_victim.max(took);
            } else {
                slowest_other = slowest_other.max(took);
                other_misses += usize::from(computed.load(Ordering::SeqCst) != was);
            }
        }
    }
    println!(
        "frozen primary: slowest call on its keys {slowest_victim:?}, on the others' {slowest_other:?}, \
         {} computations while frozen, {other_misses} of them for other primaries' keys",
        computed.load(Ordering::SeqCst) - before
    );
    cluster.node(victim).resume();
    // Liveness bounds; what shows that no one else waited is that every call on another
    // primary's key was a hit (a call that had waited out the timeout computes).
    let bound = OP_TIMEOUT * 5 + Duration::from_millis(500);
    assert!(slowest_victim < bound, "{slowest_victim:?}");
    assert!(slowest_other < bound, "{slowest_other:?}");
    assert_eq!(other_misses, 0, "other primaries' keys were all hits");
    // Thawed: after the breaker's cooldown, the victim's keys are cached and hit again.
    std::thread::sleep(Duration::from_millis(1100));
    for id in 0..60 {
        read(id);
    }
    let again = computed.load(Ordering::SeqCst);
    for id in 0..60 {
        assert_eq!(read(id), id);
    }
    assert_eq!(
        computed.load(Ordering::SeqCst),
        again,
        "all hits after the thaw"
    );
}

/// The near cache on a cluster: one tracking connection per primary, so a change of a key
/// on any primary, by any client, evicts it; hits send nothing to any node.
#[test]
fn the_near_cache_tracks_every_primary() {
    let cluster = RedisCluster::start();
    // Keys on every primary, written before the cache tracks them: a write after it sends
    // an invalidation that, late on a loaded machine, could evict a key during the counted
    // reads below (as it should).
    let mut owners = HashMap::new();
    for id in 0..30u32 {
        let key = format!("near:v:{id}");
        let port = cluster.primary_of(&key);
        cluster.node(port).cli(&["SET", &key, "1", "EX", "600"]);
        owners.entry(port).or_insert_with(Vec::new).push(id);
    }
    assert_eq!(owners.len(), 3, "keys on all three primaries");
    let near = Cache::new(
        Config::from_url(&cluster.url())
            .unwrap()
            .prefix("near")
            .near_cache(10_000),
    )
    .unwrap();
    let read = |id: u32| {
        Cacheable::new("v:<<id>>")
            .on(&near)
            .run(ctx! { id }, || -1i64)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in 0..30u32 {
        loop {
            let before = near.stats().near_hits;
            assert_eq!(read(id), 1);
            if near.stats().near_hits > before {
                break;
            }
            assert!(Instant::now() < deadline, "key {id} never served near");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let hits = near.stats().near_hits;
    for _ in 0..10 {
        for id in 0..30u32 {
            assert_eq!(read(id), 1);
        }
    }
    assert_eq!(near.stats().near_hits - hits, 300, "all near hits");
    // Another client changes one key on each primary; each change reaches the near cache.
    for (port, ids) in &owners {
        let key = format!("near:v:{}", ids[0]);
        cluster.node(*port).cli(&["SET", &key, "2", "EX", "600"]);
    }
    for ids in owners.values() {
        let deadline = Instant::now() + Duration::from_secs(2);
        while read(ids[0]) != 2 {
            assert!(Instant::now() < deadline, "key {} still old", ids[0]);
        }
    }
}

/// The replica port of the primary on `primary` (from `INFO replication` on the primary).
fn replica_of(cluster: &RedisCluster, primary: u16) -> u16 {
    let info = cluster.node(primary).cli(&["INFO", "replication"]);
    info.lines()
        .find_map(|l| l.strip_prefix("slave0:"))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("port=")))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no replica of {primary}: {info}"))
}

/// Redis replicates asynchronously: a primary that dies just after acknowledging an
/// invalidation's `UNLINK` can take it along, and its replica, promoted, serves the deleted
/// value again (the 10-minute soak saw it). An invalidation on the cluster waits (`WAIT 1`,
/// half the operation timeout) until a replica has its deletions; when none acknowledges
/// them in time (here a frozen replica) it returns after that wait, its deletions standing
/// on the primary, and logs it. Without the `WAIT` it would not wait.
#[test]
fn an_invalidation_waits_for_a_replica_to_have_it() {
    let cluster = RedisCluster::start();
    let cache = Cache::new(
        Config::from_url(&cluster.url())
            .unwrap()
            .prefix("wt")
            .op_timeout(OP_TIMEOUT),
    )
    .unwrap();
    let read = |v: u32| {
        Cacheable::new("bal:<<id>>")
            .on(&cache)
            .run(ctx! { id = 1 }, || v)
    };
    let invalidate = || {
        Invalidate::new(["bal:<<id>>"])
            .on(&cache)
            .now(ctx! { id = 1 })
    };
    let pattern = || Invalidate::new(["bal:*"]).on(&cache).now(Context::new());
    assert_eq!(read(1), 1);
    let t = Instant::now();
    assert_eq!(invalidate().unwrap(), 1);
    let healthy = t.elapsed();
    let replica = cluster.node(replica_of(&cluster, cluster.primary_of("wt:bal:1")));
    for (what, run) in [
        ("key", &invalidate as &dyn Fn() -> _),
        ("pattern", &pattern),
    ] {
        assert_eq!(read(2), 2);
        replica.pause();
        let t = Instant::now();
        let out = run();
        let took = t.elapsed();
        replica.resume();
        assert_eq!(out.unwrap(), 1, "{what}: the deletion stands");
        assert!(
            took >= OP_TIMEOUT / 2,
            "{what}: it waited for a replica ({took:?}; {healthy:?} with the replica up)"
        );
        assert_eq!(cache.get::<u32>("bal:1").unwrap(), None, "{what}");
    }
    println!("with the replica up, the invalidation took {healthy:?}");
}
