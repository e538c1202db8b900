//! Batch reads (`run_many`, `run_many_async`): one template, many contexts, the values in
//! the contexts' order and the misses computed by one call of the computation, with the
//! guarantees of single calls per key, on every store.

mod support;

use cacheable::{ctx, Cache, Cacheable, Context, Invalidate, Outcome};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use support::{suite, Backend};

suite!(
    order_is_kept_and_the_misses_are_computed_once,
    async_batches_too,
    a_key_another_caller_computes_is_joined,
    an_invalidation_during_the_batch_keeps_its_values_out,
    a_value_that_does_not_decode_is_a_miss_for_its_item_alone,
);

support::suite_tests! {
    memory = memory(Without),
    redis = redis(Both),
    cluster = cluster(Without),
    sentinel = sentinel(Without),
}

fn contexts(ids: &[u32]) -> Vec<Context> {
    ids.iter().map(|id| ctx! { id = *id }).collect()
}

/// How a case calls the batch: `run_many`, or `run_many_async` on a runtime of its own.
#[derive(Clone, Copy, Debug)]
enum Way {
    Sync,
    Async,
}

const WAYS: [Way; 2] = [Way::Sync, Way::Async];

/// A batch of `ids` on `cache` under `template`, made `way`; `compute` gets the ids that
/// missed.
fn batch_of(
    cache: &Cache,
    template: &'static str,
    ids: &[u32],
    way: Way,
    compute: &(dyn Fn(Vec<u32>) -> Vec<String> + Sync),
) -> Vec<String> {
    let builder = Cacheable::new(template).ttl(60).on(cache);
    let wanted = |missing: &[usize]| missing.iter().map(|&i| ids[i]).collect::<Vec<u32>>();
    match way {
        Way::Sync => builder.run_many(contexts(ids), |missing| compute(wanted(missing))),
        Way::Async => {
            support::current_thread().block_on(builder.run_many_async(contexts(ids), |missing| {
                let values = compute(wanted(&missing));
                async move { values }
            }))
        }
    }
}

/// A batch of `ids` on `cache`; records each call of the computation (the ids it got).
#[cfg(feature = "redis")]
fn products(cache: &Cache, ids: &[u32], calls: &Mutex<Vec<Vec<u32>>>) -> Vec<String> {
    products_by(cache, ids, calls, Way::Sync)
}

/// [`products`], made `way`.
fn products_by(cache: &Cache, ids: &[u32], calls: &Mutex<Vec<Vec<u32>>>, way: Way) -> Vec<String> {
    batch_of(cache, "product:<<id>>", ids, way, &|wanted| {
        calls.lock().unwrap().push(wanted.clone());
        wanted.iter().map(|id| format!("product {id}")).collect()
    })
}

fn order_is_kept_and_the_misses_are_computed_once(b: &Backend) {
    for way in WAYS {
        order_is_kept_by(b, way);
    }
}

fn order_is_kept_by(b: &Backend, way: Way) {
    let cache = b.cache(&format!("batch-{way:?}"));
    let calls = Mutex::new(Vec::new());
    let ids: Vec<u32> = (0..40).collect();
    // 36 cached.
    products_by(&cache, &ids[..36], &calls, way);
    assert_eq!(calls.lock().unwrap().len(), 1, "{} {way:?}", b.name);
    calls.lock().unwrap().clear();
    let mut shuffled = ids.clone();
    shuffled.reverse();
    let got = products_by(&cache, &shuffled, &calls, way);
    let expected: Vec<String> = shuffled.iter().map(|id| format!("product {id}")).collect();
    assert_eq!(got, expected, "{}: the contexts' order", b.name);
    let calls = calls.into_inner().unwrap();
    assert_eq!(calls.len(), 1, "{}: one computation: {calls:?}", b.name);
    let mut missed = calls[0].clone();
    missed.sort();
    assert_eq!(
        missed,
        (36..40).collect::<Vec<_>>(),
        "{}: {:?}",
        b.name,
        cache.stats()
    );
    // Every item is stored now: a third batch computes nothing, and each item says so.
    let mut outcomes = Vec::new();
    let got = Cacheable::new("product:<<id>>")
        .ttl(60)
        .on(&cache)
        .outcomes(&mut outcomes)
        .run_many(contexts(&shuffled), |missing| -> Vec<String> {
            panic!("{}: items {missing:?} were computed", b.name)
        });
    assert_eq!(got, expected);
    assert_eq!(outcomes.len(), shuffled.len());
    assert!(
        outcomes.iter().all(|o| o.is_hit()),
        "{}: {outcomes:?}",
        b.name
    );
    // A miss says so too.
    let mut outcomes = Vec::new();
    Cacheable::new("product:<<id>>")
        .ttl(60)
        .on(&cache)
        .outcomes(&mut outcomes)
        .run_many(contexts(&[1, 1000]), |missing| {
            missing.iter().map(|_| "new".to_string()).collect()
        });
    assert!(outcomes[0].is_hit(), "{}: {outcomes:?}", b.name);
    assert_eq!(outcomes[1], Outcome::Miss, "{}", b.name);
}

fn async_batches_too(b: &Backend) {
    let cache = b.cache("batchasync");
    let rt = support::runtime(2);
    let calls = AtomicUsize::new(0);
    let batch = |ids: Vec<u32>| {
        let cache = &cache;
        let calls = &calls;
        async move {
            Cacheable::new("user:<<id>>")
                .on(cache)
                .run_many_async(contexts(&ids), |missing| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let values: Vec<u32> = missing.iter().map(|&i| ids[i] * 10).collect();
                    async move { values }
                })
                .await
        }
    };
    assert_eq!(rt.block_on(batch(vec![1, 2, 3])), [10, 20, 30]);
    assert_eq!(rt.block_on(batch(vec![3, 4, 1])), [30, 40, 10]);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "{}", b.name);
    // Empty and all-hit batches never call the computation.
    assert!(rt.block_on(batch(vec![])).is_empty());
    assert_eq!(rt.block_on(batch(vec![4, 2])), [40, 20]);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "{}", b.name);
}

/// Key 5 is being computed by a single call of this process when the batch starts: the
/// batch joins it (its value, no second computation of 5), and computes the others at once.
fn a_key_another_caller_computes_is_joined(b: &Backend) {
    for way in WAYS {
        joined_by(b, way);
    }
}

fn joined_by(b: &Backend, way: Way) {
    let cache = b.cache(&format!("batchjoin-{way:?}"));
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let single = s.spawn(|| {
            Cacheable::new("product:<<id>>")
                .ttl(60)
                .on(&cache)
                .run(ctx! { id = 5 }, || {
                    started.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(500));
                    "from the single call".to_string()
                })
        });
        support::wait_started(&started);
        let ids = [4u32, 5, 6];
        let calls = Mutex::new(Vec::new());
        let got = products_by(&cache, &ids, &calls, way);
        assert_eq!(
            got,
            ["product 4", "from the single call", "product 6"],
            "{} {way:?}",
            b.name
        );
        let calls = calls.into_inner().unwrap();
        assert_eq!(calls.len(), 1, "{}: {calls:?}", b.name);
        let mut missed = calls[0].clone();
        missed.sort();
        assert_eq!(missed, [4, 6], "{}: 5 was joined", b.name);
        assert_eq!(single.join().unwrap(), "from the single call");
    });
}

/// An invalidation while the batch computes: none of the values computed before it is
/// stored, and the next batch computes them again.
fn an_invalidation_during_the_batch_keeps_its_values_out(b: &Backend) {
    for way in WAYS {
        kept_out_by(b, way);
    }
}

fn kept_out_by(b: &Backend, way: Way) {
    let cache = b.cache(&format!("batchinval-{way:?}"));
    let other = b.peer(&cache);
    let ids = [1u32, 2, 3];
    let computing = AtomicBool::new(false);
    std::thread::scope(|s| {
        let batch = s.spawn(|| {
            batch_of(&cache, "balance:<<id>>", &ids, way, &|wanted| {
                computing.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300));
                wanted.iter().map(|id| (id * 100).to_string()).collect()
            })
        });
        support::wait_started(&computing);
        let deleted = Invalidate::new(["balance:*"])
            .on(&other)
            .now(ctx! {})
            .unwrap();
        let _ = deleted;
        assert_eq!(
            batch.join().unwrap(),
            ["100", "200", "300"],
            "{} {way:?}",
            b.name
        );
    });
    for id in ids {
        assert_eq!(
            cache.get::<String>(&format!("balance:{id}")).unwrap(),
            None,
            "{}: the value computed before the invalidation was stored",
            b.name
        );
    }
}

/// A stored value of another type at one item's key: that item alone is computed, and
/// its key replaced.
fn a_value_that_does_not_decode_is_a_miss_for_its_item_alone(b: &Backend) {
    for way in WAYS {
        let cache = b.cache(&format!("batchdecode-{way:?}"));
        let calls = Mutex::new(Vec::new());
        products_by(&cache, &[1, 3], &calls, way);
        cache.set("product:2", &[7u8, 7], 60).unwrap();
        calls.lock().unwrap().clear();
        let got = products_by(&cache, &[1, 2, 3], &calls, way);
        assert_eq!(
            got,
            ["product 1", "product 2", "product 3"],
            "{} {way:?}",
            b.name
        );
        assert_eq!(calls.into_inner().unwrap(), [vec![2]], "{} {way:?}", b.name);
        assert_eq!(
            cache.get::<String>("product:2").unwrap().as_deref(),
            Some("product 2"),
            "{} {way:?}",
            b.name
        );
    }
}

/// The async batch is `Send` (an axum handler, `tokio::spawn`): spawned on a
/// multi-thread runtime, it answers there. (A future that is not `Send` fails to build.)
#[test]
fn an_async_batch_can_be_spawned() {
    let rt = support::runtime(2);
    let cache = Cache::new(cacheable::Config::memory()).unwrap();
    let spawned = rt.spawn(async move {
        Cacheable::new("user:<<id>>")
            .on(&cache)
            .run_many_async(contexts(&[1, 2]), |missing| async move {
                missing.iter().map(|&i| i as u32 * 10).collect::<Vec<u32>>()
            })
            .await
    });
    assert_eq!(rt.block_on(spawned).unwrap(), [0, 10]);
}

/// Redis down during a batch: every item is answered, the computation called once for all
/// of them, within a few operation timeouts (a liveness bound).
#[cfg(feature = "redis")]
#[test]
fn a_batch_with_redis_down_computes_every_item_once() {
    let mut server = support::RedisServer::start();
    let cache = Cache::new(
        cacheable::Config::from_url(&server.url())
            .unwrap()
            .prefix("down")
            .op_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let calls = Mutex::new(Vec::new());
    let ids: Vec<u32> = (0..20).collect();
    products(&cache, &ids[..10], &calls);
    server.kill();
    calls.lock().unwrap().clear();
    let started = std::time::Instant::now();
    let got = products(&cache, &ids, &calls);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let expected: Vec<String> = ids.iter().map(|id| format!("product {id}")).collect();
    assert_eq!(got, expected);
    let calls = calls.into_inner().unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].len(), 20, "{calls:?}");
    assert!(cache.stats().uncached >= 20, "{:?}", cache.stats());
    // Invalidating the batch's keys now: queued, each key held back until it lands.
    let err = Invalidate::new(["product:<<id>>"])
        .on(&cache)
        .now_many(contexts(&ids))
        .unwrap_err();
    assert!(err.is_queued(), "{err}");
    assert_eq!(
        cache.stats().queued_invalidations,
        20,
        "{:?}",
        cache.stats()
    );
}

/// A batch made each way once `kill` took a server down: every item answered, by one call
/// of the computation that has at least every id never cached, within a liveness bound.
#[cfg(feature = "redis")]
fn every_item_is_answered_with_a_server_down(url: &str, kill: impl FnOnce()) {
    let caches = WAYS.map(|way| {
        let config = cacheable::Config::from_url(url)
            .unwrap()
            .prefix(format!("down-{way:?}"))
            .op_timeout(Duration::from_millis(200));
        Cache::new(config).unwrap()
    });
    let ids: Vec<u32> = (0..20).collect();
    for cache in &caches {
        products(cache, &ids[..10], &Mutex::new(Vec::new()));
    }
    kill();
    for (way, cache) in WAYS.into_iter().zip(&caches) {
        let calls = Mutex::new(Vec::new());
        let started = std::time::Instant::now();
        let got = products_by(cache, &ids, &calls, way);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "{way:?}: {took:?}");
        let expected: Vec<String> = ids.iter().map(|id| format!("product {id}")).collect();
        assert_eq!(got, expected, "{way:?}");
        let calls = calls.into_inner().unwrap();
        assert_eq!(calls.len(), 1, "{way:?}: {calls:?}");
        assert!(
            (10..20).all(|id| calls[0].contains(&id)),
            "{way:?}: {calls:?}"
        );
    }
}

#[cfg(feature = "redis")]
#[test]
fn every_item_is_answered_with_the_server_killed() {
    let mut server = support::RedisServer::start();
    every_item_is_answered_with_a_server_down(&server.url(), || server.kill());
}

#[cfg(feature = "cluster")]
#[test]
fn every_item_is_answered_with_a_cluster_primary_killed() {
    let mut cluster = support::RedisCluster::start();
    let url = cluster.url();
    let primary = cluster.primary_of("down-Sync:product:0");
    every_item_is_answered_with_a_server_down(&url, || cluster.kill(primary));
}

#[cfg(feature = "sentinel")]
#[test]
fn every_item_is_answered_with_the_sentinel_primary_killed() {
    let mut setup = support::RedisSentinel::start();
    let url = setup.url();
    let primary = setup.primary_port().expect("a primary");
    every_item_is_answered_with_a_server_down(&url, || setup.kill(primary));
}

/// How many times the server has run `command`, by `INFO commandstats` (`cli` runs
/// `redis-cli` with the given arguments against it).
#[cfg(feature = "redis")]
fn command_calls(cli: impl Fn(&[&str]) -> String, command: &str) -> u64 {
    let stats = cli(&["INFO", "commandstats"]);
    let line = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .map_or(0, |rest| {
            rest.split(',').next().unwrap().trim().parse().unwrap()
        })
}

/// The calls of each command a batch's reads can be made of, on one server.
#[cfg(feature = "redis")]
fn read_calls(cli: impl Fn(&[&str]) -> String) -> [u64; 3] {
    ["mget", "get", "pttl"].map(|c| command_calls(&cli, c))
}

/// A warm batch of 40 on one server is one `MGET` (with each key's `PTTL` in the same
/// pipeline when the near cache needs the expiry), and no `GET`; a cold one too, before its
/// leases and writes.
#[cfg(feature = "redis")]
#[test]
fn a_batch_reads_one_server_with_one_mget() {
    let server = support::RedisServer::start();
    let cli = |args: &[&str]| server.cli(args);
    let ids: Vec<u32> = (0..40).collect();
    for near in [false, true] {
        let mut config = cacheable::Config::from_url(&server.url())
            .unwrap()
            .prefix(format!("mget-{near}"));
        if near {
            config = config.near_cache(1_000);
        }
        let calls = Mutex::new(Vec::new());
        let before = read_calls(cli);
        products(&Cache::new(config.clone()).unwrap(), &ids, &calls);
        let after = read_calls(cli);
        assert_eq!(after[0] - before[0], 1, "near {near}: a cold batch's MGET");
        // A new cache on the same entries (its near cache empty): every item from the store.
        let reader = Cache::new(config).unwrap();
        let before = read_calls(cli);
        let got = products(&reader, &ids, &calls);
        let after = read_calls(cli);
        assert_eq!(got.len(), 40);
        assert_eq!(
            calls.lock().unwrap().len(),
            1,
            "near {near}: the warm batch computed"
        );
        let expected_pttl = if near { 40 } else { 0 };
        assert_eq!(
            [
                after[0] - before[0],
                after[1] - before[1],
                after[2] - before[2]
            ],
            [1, 0, expected_pttl],
            "near {near}: [MGET, GET, PTTL] of a warm batch"
        );
        // Invalidating the batch's 40 keys: one UNLINK; every item computed again after.
        let unlinks = command_calls(cli, "unlink");
        let deleted = Invalidate::new(["product:<<id>>"])
            .on(&reader)
            .now_many(contexts(&ids))
            .unwrap();
        assert_eq!(deleted, 40, "near {near}");
        assert_eq!(command_calls(cli, "unlink") - unlinks, 1, "near {near}");
        calls.lock().unwrap().clear();
        products(&reader, &ids, &calls);
        assert_eq!(calls.lock().unwrap()[0].len(), 40, "near {near}");
    }
}

/// A cold batch's leases go to the server in one pipeline, and its writes under the
/// leases in another: the server reads a handful of requests from the batch's connections
/// (by `INFO stats`), not one per item, sync and async.
#[cfg(feature = "redis")]
#[test]
fn a_cold_batch_sends_its_leases_and_writes_together() {
    let server = support::RedisServer::start();
    let cli = |args: &[&str]| server.cli(args);
    let reads = || -> u64 {
        let stats = cli(&["INFO", "stats"]);
        stats
            .lines()
            .find_map(|l| l.strip_prefix("total_reads_processed:"))
            .expect("Redis 6 or later reports total_reads_processed")
            .trim()
            .parse()
            .unwrap()
    };
    let cache = Cache::new(
        cacheable::Config::from_url(&server.url())
            .unwrap()
            .prefix("together"),
    )
    .unwrap();
    let calls = Mutex::new(Vec::new());
    // Connections made and scripts loaded first: what follows is the batches' own traffic.
    products(&cache, &[1_000], &calls);
    for (round, way) in WAYS.into_iter().enumerate() {
        let ids: Vec<u32> = (0..40).map(|i| (round as u32 + 1) * 100 + i).collect();
        let [sets, evals] = ["set", "evalsha"].map(|c| command_calls(cli, c));
        let before = reads();
        let got = products_by(&cache, &ids, &calls, way);
        let read = reads() - before;
        assert_eq!(got.len(), 40, "{way:?}");
        // 40 leases and 40 writes, each landed: a write is a compare-and-set script, whose
        // own `SET` the server counts too.
        assert_eq!(
            command_calls(cli, "set") - sets,
            80,
            "{way:?}: leases and writes"
        );
        assert_eq!(command_calls(cli, "evalsha") - evals, 40, "{way:?}: writes");
        // The MGET, the leases, the writes, and the INFO calls' own: one read each (a
        // pipeline the kernel splits may take a few); 80 or more one by one.
        assert!(
            read <= 12,
            "{way:?}: the server read {read} times for the batch"
        );
    }
}

/// On the cluster, a batch reads from each primary that owns some of its keys one `MGET`
/// per slot, all in one pipeline, and nothing from the others: a batch whose keys share a
/// hash tag touches one primary.
#[cfg(feature = "cluster")]
#[test]
fn a_cluster_batch_touches_only_the_primaries_that_own_its_keys() {
    let cluster = support::RedisCluster::start();
    let cache = Cache::new(
        cacheable::Config::from_url(&cluster.url())
            .unwrap()
            .prefix("own"),
    )
    .unwrap();
    let primaries = cluster.primaries();
    assert!(primaries.len() >= 3, "{primaries:?}");
    let snapshot = || -> Vec<[u64; 3]> {
        primaries
            .iter()
            .map(|&p| read_calls(|args: &[&str]| cluster.node(p).cli(args)))
            .collect()
    };
    let keyslot = |key: &str| -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut cluster.node(primaries[0]).client())
            .unwrap()
    };
    let ids: Vec<u32> = (0..40).collect();
    for template in ["shelf:{a}:<<id>>", "item:<<id>>"] {
        let batch = |calls: &AtomicUsize| {
            Cacheable::new(template)
                .on(&cache)
                .run_many(contexts(&ids), |missing| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    missing.iter().map(|&i| ids[i]).collect::<Vec<u32>>()
                })
        };
        let calls = AtomicUsize::new(0);
        batch(&calls);
        let before = snapshot();
        assert_eq!(batch(&calls), ids);
        let after = snapshot();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "{template}: the warm batch computed"
        );
        // Each primary: one MGET per slot of its keys, no GET.
        let mut slots: std::collections::HashMap<u16, std::collections::HashSet<u16>> =
            Default::default();
        for id in &ids {
            let key = format!("own:{}", template.replace("<<id>>", &id.to_string()));
            slots
                .entry(cluster.primary_of(&key))
                .or_default()
                .insert(keyslot(&key));
        }
        let touched: Vec<_> = primaries.iter().filter(|p| slots.contains_key(p)).collect();
        if template.contains('{') {
            assert_eq!(touched.len(), 1, "{template}: {slots:?}");
        } else {
            assert_eq!(touched.len(), primaries.len(), "{template}: {slots:?}");
        }
        for (i, port) in primaries.iter().enumerate() {
            let expected = slots.get(port).map_or(0, |s| s.len() as u64);
            assert_eq!(
                [after[i][0] - before[i][0], after[i][1] - before[i][1]],
                [expected, 0],
                "{template}: [MGET, GET] on primary {port}"
            );
        }
        // Invalidating them: one UNLINK per slot, on the owning primaries only.
        let unlinks = |p: u16| command_calls(|args: &[&str]| cluster.node(p).cli(args), "unlink");
        let before: Vec<u64> = primaries.iter().map(|&p| unlinks(p)).collect();
        let deleted = Invalidate::new([template])
            .on(&cache)
            .now_many(contexts(&ids))
            .unwrap();
        assert_eq!(deleted, 40, "{template}");
        for (i, port) in primaries.iter().enumerate() {
            let expected = slots.get(port).map_or(0, |s| s.len() as u64);
            assert_eq!(
                unlinks(*port) - before[i],
                expected,
                "{template}: UNLINK on {port}"
            );
        }
        assert_eq!(batch(&calls), ids);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "{template}: computed again"
        );
    }
}

/// Sentinel: the batch's reads are one `MGET` on the primary the Sentinels name.
#[cfg(feature = "sentinel")]
#[test]
fn a_sentinel_batch_reads_the_primary_with_one_mget() {
    let setup = support::RedisSentinel::start();
    let cache = Cache::new(
        cacheable::Config::from_url(&setup.url())
            .unwrap()
            .prefix("sentinel-mget"),
    )
    .unwrap();
    let primary = setup.primary_port().expect("a primary");
    let cli = |args: &[&str]| setup.node_cli(primary, args);
    let calls = Mutex::new(Vec::new());
    let ids: Vec<u32> = (0..40).collect();
    products(&cache, &ids, &calls);
    let before = read_calls(cli);
    assert_eq!(products(&cache, &ids, &calls).len(), 40);
    let after = read_calls(cli);
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!([after[0] - before[0], after[1] - before[1]], [1, 0]);
    let unlinks = command_calls(cli, "unlink");
    let invalidate = Invalidate::new(["product:<<id>>"]).on(&cache);
    assert_eq!(invalidate.now_many(contexts(&ids)).unwrap(), 40);
    assert_eq!(command_calls(cli, "unlink") - unlinks, 1);
}
