//! What only Redis Sentinel has: a primary that dies or is demoted, and a replica the
//! Sentinels promote in its place. Each test starts its own private primary, replica and
//! three Sentinels (tests/support); the shared suite (tests/backends.rs) covers the rest.
#![cfg(feature = "sentinel")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::failover::Readers;
use support::RedisSentinel;

const OP_TIMEOUT: Duration = Duration::from_millis(200);

fn config(setup: &RedisSentinel, prefix: &str) -> Config {
    Config::from_url(&setup.url())
        .unwrap()
        .prefix(prefix)
        .op_timeout(OP_TIMEOUT)
        .connect_timeout(OP_TIMEOUT)
        .invalidate_retries(1)
}

/// How many times the data node on `port` ran `command` (lower case), from its stats.
fn calls(setup: &RedisSentinel, port: u16, command: &str) -> u64 {
    let stats = setup.node_cli(port, &["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// The primary is killed (SIGKILL) while sync and async readers run and a writer/reader
/// race goes on: every call answers, none waits much longer than the operation timeout,
/// caching resumes by itself once the Sentinels promote the replica, the race finds no
/// stale value, and after the failover two rounds of reads on new keys make the second
/// all hits.
#[test]
fn a_killed_primary_costs_callers_the_timeout_and_caching_resumes_after_the_failover() {
    let mut setup = RedisSentinel::start();
    let cache = Arc::new(Cache::new(config(&setup, "fo")).unwrap());
    let old = setup.primary_port().unwrap();
    let readers = Readers::new(300, Duration::from_micros(500));
    assert_eq!(readers.warm(&cache), 300);
    std::thread::sleep(Duration::from_millis(100));

    let killed_at = Mutex::new(None::<Instant>);
    // The last sync call after the kill that was a miss: when caching resumed, as callers
    // saw it.
    let last_miss = Mutex::new(None::<Instant>);
    let rt = support::bare_runtime(2);
    std::thread::scope(|s| {
        for t in 0..2u32 {
            let (cache, readers, killed_at, last_miss) = (&cache, &readers, &killed_at, &last_miss);
            s.spawn(move || {
                readers.sync_loop(cache, t, |_, computed| {
                    if computed && killed_at.lock().unwrap().is_some() {
                        *last_miss.lock().unwrap() = Some(Instant::now());
                    }
                })
            });
        }
        for t in 0..2u32 {
            rt.spawn(readers.clone().async_loop((*cache).clone(), 100 + t));
        }
        let race = s.spawn(|| support::failover::race_until(&cache, readers.stop_flag(), 19));

        std::thread::sleep(Duration::from_millis(500));
        *killed_at.lock().unwrap() = Some(Instant::now());
        setup.kill(old);
        let t0 = Instant::now();
        let new = setup
            .wait_failover(old, Duration::from_secs(30))
            .expect("the Sentinels promote the replica");
        let promoted = t0.elapsed();
        println!("killed primary {old}; the Sentinels promoted {new} after {promoted:?}");
        // Readers go on a while after the promotion.
        std::thread::sleep(Duration::from_millis(1500));
        readers.stop();
        let (rounds, stale, skipped) = race.join().unwrap();
        println!("race: {rounds} rounds checked, {stale} stale, {skipped} rounds skipped (invalidation failed while no primary answered)");
        assert!(rounds > 20, "{rounds} rounds");
        assert_eq!(stale, 0, "stale values across the failover");
        let resumed = last_miss
            .lock()
            .unwrap()
            .map(|at| at.duration_since(killed_at.lock().unwrap().unwrap()));
        println!(
            "sync callers' last miss {resumed:?} after the kill ({:?} after the promotion)",
            resumed.map(|r| r.saturating_sub(promoted))
        );
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let (slow_sync, slow_async) = readers.slowest();
    println!(
        "{} calls; slowest sync call {slow_sync:?}, slowest async call {slow_async:?} (op_timeout {OP_TIMEOUT:?})",
        readers.calls()
    );
    // A liveness bound, not a latency claim: against the dead primary a call meets at most
    // a read, a lease and a write, each cut at `op_timeout`, or waits on a leader that does,
    // while the failover itself takes seconds.
    let bound = OP_TIMEOUT * 5 + Duration::from_millis(500);
    assert!(slow_sync < bound, "slowest sync call {slow_sync:?}");
    assert!(slow_async < bound, "slowest async call {slow_async:?}");

    // After the failover: two rounds of reads on new keys; the second is all hits, sync and
    // async.
    let new = setup.primary_port().unwrap();
    let sets_before = calls(&setup, new, "set");
    for round in 1..=2 {
        let computed = AtomicUsize::new(0);
        for id in 1000..1300 {
            assert_eq!(Readers::read(&cache, id, &computed), id * 10);
        }
        let misses = computed.load(Ordering::SeqCst);
        println!("round {round} on new keys after the failover: {misses} misses of 300");
        match round {
            1 => assert_eq!(misses, 300),
            _ => assert_eq!(misses, 0, "the second round is all hits"),
        }
    }
    assert!(
        calls(&setup, new, "set") >= sets_before + 300,
        "the new keys were written to the new primary"
    );
    let rt = support::bare_current_thread();
    let async_misses = rt.block_on(async {
        let computed = Arc::new(AtomicUsize::new(0));
        for round in 0..2 {
            for id in 2000..2100u32 {
                let computed = computed.clone();
                let v = Cacheable::new("item:<<id>>")
                    .on(&cache)
                    .run_async(ctx! { id }, || async move {
                        computed.fetch_add(1, Ordering::SeqCst);
                        id * 10
                    })
                    .await;
                assert_eq!(v, id * 10);
            }
            if round == 0 {
                assert_eq!(computed.swap(0, Ordering::SeqCst), 100);
            }
        }
        computed.load(Ordering::SeqCst)
    });
    assert_eq!(async_misses, 0, "async: the second round is all hits");
}

/// A failover the Sentinels are asked for (`SENTINEL FAILOVER`): the old primary lives on,
/// demoted to a replica. The cache moves to the new primary by itself, sync and async: its
/// writes land there, an invalidation after the switch is honoured, and nothing is read
/// from or written to the demoted server afterwards.
#[test]
fn a_demoted_primary_is_left_for_the_new_one() {
    let started = Instant::now();
    let setup = RedisSentinel::start();
    println!("setup started in {:?}", started.elapsed());
    let cache = Cache::new(config(&setup, "dm")).unwrap();
    let rt = support::bare_current_thread();
    let source = AtomicU64::new(1);
    let read = || {
        Cacheable::new("v:<<id>>")
            .on(&cache)
            .run(ctx! { id = 1 }, || source.load(Ordering::SeqCst))
    };
    let read_async = || {
        rt.block_on(
            Cacheable::new("w:<<id>>")
                .on(&cache)
                .run_async(ctx! { id = 1 }, || async { source.load(Ordering::SeqCst) }),
        )
    };
    assert_eq!((read(), read_async()), (1, 1));
    let old = setup.primary_port().unwrap();
    let replica = setup
        .nodes
        .iter()
        .map(|n| n.port)
        .find(|p| *p != old)
        .unwrap();
    // Let the replica catch up before it is promoted.
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let out = setup.sentinel_cli(
        setup.sentinels[0].port,
        &["SENTINEL", "FAILOVER", &setup.service],
    );
    assert!(out.contains("OK"), "SENTINEL FAILOVER: {out}");
    let new = setup
        .wait_failover(old, Duration::from_secs(20))
        .expect("the Sentinels promote the replica");
    assert_eq!(new, replica);
    println!(
        "SENTINEL FAILOVER: {new} is primary after {:?}",
        t0.elapsed()
    );
    // The source changes and the cache invalidates: the reads that follow compute the new
    // value, then serve it from the new primary.
    source.store(2, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sync_ok = cache.delete("v:1").is_ok();
        let async_ok = rt
            .block_on(
                Invalidate::new(["w:<<id>>"])
                    .on(&cache)
                    .now_async(ctx! { id = 1 }),
            )
            .is_ok();
        if sync_ok && async_ok {
            break;
        }
        assert!(Instant::now() < deadline, "invalidations kept failing");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        (read(), read_async()),
        (2, 2),
        "no stale value after the switch"
    );
    // The invalidations may have gone to the old primary (which still takes writes until
    // the Sentinels get round to demoting it), in the moment before this cache heard of
    // the switch; it sends them again to the new primary as it moves there. Once it has
    // (at once on `+switch-master`; by polling, within a second), the new primary holds
    // no old value: another process reading there computes the new one.
    std::thread::sleep(Duration::from_millis(1500));
    for key in ["dm:v:1", "dm:w:1"] {
        assert_ne!(setup.node_cli(new, &["GET", key]).trim(), "1", "{key}");
    }
    let peer = Cache::new(cache.config().clone()).unwrap();
    let fresh = |template: &'static str| {
        Cacheable::new(template)
            .on(&peer)
            .run(ctx! { id = 1 }, || source.load(Ordering::SeqCst))
    };
    assert_eq!((fresh("v:<<id>>"), fresh("w:<<id>>")), (2, 2));
    assert_eq!((read(), read_async()), (2, 2));
    // The cache writes to the new primary now.
    for key in ["dm:v:1", "dm:w:1"] {
        assert_eq!(setup.node_cli(new, &["GET", key]).trim(), "2", "{key}");
    }
    assert!(setup.node_cli(old, &["ROLE"]).starts_with("master"));
    println!("the switch is followed after {:?}", t0.elapsed());
    // The Sentinels demote the old primary to a replica of the new one (once they see it
    // still reporting the master role, after some seconds).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !setup.node_cli(old, &["ROLE"]).starts_with("slave") {
        assert!(
            Instant::now() < deadline,
            "the old primary was never demoted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("demoted after {:?}", t0.elapsed());
    // Caching goes on on the new primary: every read a hit after its first, no read on
    // the demoted server (it replicates the writes, so only its reads tell), and the
    // values are on the new primary.
    let before = cache.stats();
    let gets_old = calls(&setup, old, "get");
    for _ in 0..20 {
        source.fetch_add(1, Ordering::SeqCst);
        cache.delete("v:1").unwrap();
        rt.block_on(
            Invalidate::new(["w:<<id>>"])
                .on(&cache)
                .now_async(ctx! { id = 1 }),
        )
        .unwrap();
        let now = source.load(Ordering::SeqCst);
        for _ in 0..2 {
            assert_eq!((read(), read_async()), (now, now));
        }
    }
    let after = cache.stats();
    assert_eq!(after.errors, before.errors, "{after:?}");
    assert_eq!(after.hits - before.hits, 40, "{after:?}");
    assert_eq!(
        calls(&setup, old, "get"),
        gets_old,
        "a read went to the demoted server"
    );
    let stored = setup.node_cli(new, &["GET", "dm:v:1"]);
    assert_eq!(stored.trim(), source.load(Ordering::SeqCst).to_string());
}

/// The near cache on Sentinel tracks the current primary: after a failover its tracking
/// connection moves to the new primary (dropping what it held), so another client's change
/// there still evicts the near copy.
#[test]
fn the_near_cache_follows_the_new_primary() {
    let mut setup = RedisSentinel::start();
    let near = Cache::new(config(&setup, "near").near_cache(10_000)).unwrap();
    let read = |id: u32| {
        Cacheable::new("v:<<id>>")
            .on(&near)
            .run(ctx! { id }, || -1i64)
    };
    let old = setup.primary_port().unwrap();
    for id in 0..10u32 {
        setup.node_cli(old, &["SET", &format!("near:v:{id}"), "1", "EX", "600"]);
    }
    let served_near = |id: u32, want: i64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let before = near.stats().near_hits;
            if read(id) == want && near.stats().near_hits > before {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "key {id} never served near as {want}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    for id in 0..10 {
        served_near(id, 1);
    }
    std::thread::sleep(Duration::from_millis(200));
    setup.kill(old);
    let new = setup
        .wait_failover(old, Duration::from_secs(30))
        .expect("the Sentinels promote the replica");
    // Another client changes the keys on the new primary: the near cache sees each change.
    for id in 0..10u32 {
        setup.node_cli(new, &["SET", &format!("near:v:{id}"), "2", "EX", "600"]);
    }
    for id in 0..10 {
        served_near(id, 2);
    }
    // And later changes too, through the new tracking connection.
    setup.node_cli(new, &["SET", "near:v:0", "3", "EX", "600"]);
    let deadline = Instant::now() + Duration::from_secs(2);
    while read(0) != 3 {
        assert!(
            Instant::now() < deadline,
            "the change on the new primary never evicted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The primary freezes (SIGSTOP, as a host that stops answering without closing its
/// connections): calls wait out the operation timeout until the breaker opens, none much
/// longer, sync or async; once the Sentinels promote the replica, caching resumes there.
#[test]
fn a_frozen_primary_costs_callers_about_the_timeout_until_the_replica_takes_over() {
    let setup = RedisSentinel::start();
    let cache = Arc::new(Cache::new(config(&setup, "fz")).unwrap());
    let old = setup.primary_port().unwrap();
    let readers = Readers::new(100, Duration::from_millis(1));
    assert_eq!(readers.warm(&cache), 100);
    std::thread::sleep(Duration::from_millis(100));
    let rt = support::bare_runtime(2);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2u32 {
            let (cache, readers) = (&cache, &readers);
            s.spawn(move || readers.sync_loop(cache, t, |_, _| {}));
        }
        for t in 0..2u32 {
            rt.spawn(readers.clone().async_loop((*cache).clone(), 50 + t));
        }
        std::thread::sleep(Duration::from_millis(300));
        setup.node(old).pause();
        let t0 = Instant::now();
        let new = setup
            .wait_failover(old, Duration::from_secs(30))
            .expect("the Sentinels promote the replica");
        println!(
            "froze primary {old}; the Sentinels promoted {new} after {:?}",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(1500));
        readers.stop();
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let (slow_sync, slow_async) = readers.slowest();
    println!(
        "slowest sync call {slow_sync:?}, slowest async call {slow_async:?} (op_timeout {OP_TIMEOUT:?}) over {:?}",
        started.elapsed()
    );
    // A liveness bound, as in the killed-primary test.
    let bound = OP_TIMEOUT * 5 + Duration::from_millis(500);
    assert!(slow_sync < bound, "slowest sync call {slow_sync:?}");
    assert!(slow_async < bound, "slowest async call {slow_async:?}");
    // Caching resumed on the new primary: two rounds on new keys, the second all hits.
    for round in 0..2 {
        let computed = AtomicUsize::new(0);
        for id in 1000..1100 {
            assert_eq!(Readers::read(&cache, id, &computed), id * 10);
        }
        let misses = computed.load(Ordering::SeqCst);
        assert_eq!(misses, if round == 0 { 100 } else { 0 }, "round {round}");
    }
    setup.node(old).resume();
}

/// After `SENTINEL FAILOVER`, the `+switch-master` announcement stops the near cache at
/// once, not when its tracking's periodic check next sees the new primary (up to half a
/// second later, serving what the old primary held though the new one changed it); it
/// serves again once its tracking runs on the new primary. The 200 ms allowed covers two
/// subscribers hearing one message on a loaded machine, not the periodic check.
#[test]
fn the_near_cache_stops_serving_at_the_switch() {
    let setup = RedisSentinel::start();
    let near = Arc::new(Cache::new(config(&setup, "doubt").near_cache(10_000)).unwrap());
    let old = setup.primary_port().unwrap();
    setup.node_cli(old, &["SET", "doubt:k", "1", "EX", "600"]);
    let read = |cache: &Cache| {
        let mut outcome = cacheable::Outcome::default();
        let v = Cacheable::new("k")
            .outcome(&mut outcome)
            .on(cache)
            .run(ctx! {}, || -1i64);
        (v, outcome)
    };
    support::first_near_hit(&near, Duration::from_secs(10), || read(&near));
    // The test hears the switch as the crate does, from a Sentinel.
    let sentinel = setup.sentinels[0].port;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let client = redis::Client::open(format!("redis://127.0.0.1:{sentinel}/")).unwrap();
        let mut con = client.get_connection().unwrap();
        let mut pubsub = con.as_pubsub();
        pubsub.subscribe("+switch-master").unwrap();
        let _ = tx.send(Instant::now());
        let _ = pubsub.get_message();
        let _ = tx.send(Instant::now());
    });
    rx.recv().unwrap();
    let stop = AtomicBool::new(false);
    // Reads as they happen: when each began, its value, whether from process memory.
    let reads = Mutex::new(Vec::new());
    let switched = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let began = Instant::now();
                let (v, outcome) = read(&near);
                reads.lock().unwrap().push((began, v, outcome));
            }
        });
        setup.sentinel_cli(sentinel, &["SENTINEL", "FAILOVER", "cacheable"]);
        let switched = rx.recv_timeout(Duration::from_secs(30)).expect("a switch");
        let new = setup
            .wait_failover(old, Duration::from_secs(30))
            .expect("the replica promoted");
        setup.node_cli(new, &["SET", "doubt:k", "2", "EX", "600"]);
        // It serves again once its tracking runs on the new primary.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let fresh = reads
                .lock()
                .unwrap()
                .iter()
                .any(|(_, v, o)| *v == 2 && *o == cacheable::Outcome::NearHit);
            if fresh {
                break;
            }
            assert!(Instant::now() < deadline, "never served near again");
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        switched
    });
    let reads = reads.into_inner().unwrap();
    let last_old = reads
        .iter()
        .filter(|(_, v, o)| *v == 1 && *o == cacheable::Outcome::NearHit)
        .map(|(began, _, _)| *began)
        .max();
    println!(
        "the last near hit of the old value began {:?} after the switch was announced",
        last_old.and_then(|b| b.checked_duration_since(switched))
    );
    let late: Vec<_> = reads
        .iter()
        .filter(|(began, v, o)| {
            *began > switched + Duration::from_millis(200)
                && *v == 1
                && *o == cacheable::Outcome::NearHit
        })
        .collect();
    assert!(
        late.is_empty(),
        "{} near hits of the old primary's value began more than 200 ms after the switch (the last {:?} after it)",
        late.len(),
        late.last().map(|(b, _, _)| b.duration_since(switched))
    );
}
