//! Memory bounds: touches 1,000,000 distinct keys, each with a computation and then a hit
//! (one in a thousand failing, one in a thousand unstorable), on the embedded store and on a private
//! Redis with the near cache, and shows that the in-process maps (flights, log throttles,
//! the lease keeper, the near cache, the embedded store's markers) stay bounded and that
//! resident memory levels off once the bounded stores are full.
//!
//! ```text
//! cargo run --release --example memory_bounds -- [--keys N] [--backend memory|redis]
//! ```
//!
//! Exits non-zero if a map is over its bound, or if resident memory grew more than 10 %
//! between half the keys and all of them.

#[path = "common/memory.rs"]
mod memory;
#[path = "../tests/support/mod.rs"]
mod support;

use cacheable::{ctx, Cache, Cacheable, Config};
use memory::rss_kib;
use std::time::{Duration, Instant};
use support::RedisServer;

const THREADS: u64 = 4;
const NEAR_ENTRIES: u64 = 10_000;
const MEMORY_ENTRIES: usize = 100_000;

fn touch(cache: &Cache, id: u64) {
    let get = Cacheable::new("user:<<id>>:profile").ttl(600).on(cache);
    match id % 1000 {
        // A failed computation: nothing stored, a failure marker for a second.
        1 => {
            let out: Result<String, &str> = get.try_run(ctx! { id }, || Err("source down"));
            assert!(out.is_err());
        }
        // An unstorable value (NaN has no JSON form): returned, not stored.
        2 => {
            let v: f64 = Cacheable::new("score:<<id>>")
                .on(cache)
                .run(ctx! { id }, || f64::NAN);
            assert!(v.is_nan());
        }
        _ => {
            // A miss that computes, then a hit (which the near cache keeps).
            for _ in 0..2 {
                let v = Cacheable::new("user:<<id>>:profile")
                    .ttl(600)
                    .on(cache)
                    .run(ctx! { id }, || format!("profile of user {id}"));
                assert_eq!(v.len(), 16 + id.to_string().len());
            }
        }
    }
}

/// Touches `keys` distinct keys from `THREADS` threads; prints resident memory as it goes.
/// Returns resident memory at half and at the end, in KiB.
fn run(name: &str, cache: &Cache, keys: u64) -> (u64, u64) {
    let before = rss_kib();
    println!("\n== {name}: {keys} distinct keys, {THREADS} threads");
    println!(
        "resident memory before: {before} KiB{}",
        memory::heap_note()
    );
    let started = Instant::now();
    let mut half = 0;
    for (from, to, label) in [(0, keys / 2, "half"), (keys / 2, keys, "all")] {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                s.spawn(move || {
                    let mut id = from + t;
                    while id < to {
                        touch(cache, id);
                        id += THREADS;
                    }
                });
            }
        });
        let rss = rss_kib();
        if label == "half" {
            half = rss;
        }
        println!(
            "after {label} the keys ({:.1} s): resident memory {rss} KiB ({:+} KiB){}",
            started.elapsed().as_secs_f64(),
            rss as i64 - before as i64,
            memory::heap_note()
        );
    }
    // The lease keeper's give-backs settle within a lease time at most.
    std::thread::sleep(Duration::from_millis(1500));
    (half, rss_kib())
}

fn check(name: &str, cache: &Cache, (half, end): (u64, u64), bounds: &[(&str, u64)]) -> bool {
    let mut ok = true;
    println!("stats: {:?}", cache.stats());
    for (map, size) in cacheable::__private::internal_sizes(cache) {
        let bound = bounds
            .iter()
            .find(|(m, _)| *m == map)
            .map_or(0, |(_, b)| *b);
        let verdict = if size <= bound { "ok" } else { "OVER" };
        println!("{name}: {map}: {size} (bound {bound}) {verdict}");
        ok &= size <= bound;
    }
    let growth = end as f64 / half as f64;
    println!("{name}: resident memory at the end / at half the keys: {growth:.3}");
    if growth > 1.10 {
        println!("{name}: resident memory grew more than 10 % over the second half");
        ok = false;
    }
    ok
}

fn main() {
    let mut keys = 1_000_000u64;
    let mut backends = vec!["memory", "redis"];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keys" => {
                keys = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--keys takes a number")
            }
            "--backend" => {
                let b = args.next().expect("--backend takes memory or redis");
                backends.retain(|x| *x == b);
                assert!(!backends.is_empty(), "--backend takes memory or redis");
            }
            other => panic!("unknown argument {other}: use --keys N, --backend memory|redis"),
        }
    }
    let mut ok = true;
    // Failure markers live a second; the embedded store sweeps a stripe's expired markers
    // whenever it adds one, so at most a second's worth of failures remain, plus the
    // stripes' leftovers: a generous bound.
    let markers_bound = 64 * 64;
    let throttle_bound = 1024;
    for backend in backends {
        match backend {
            "memory" => {
                let cache = Cache::new(
                    Config::from_url(&format!("memory://?max_entries={MEMORY_ENTRIES}")).unwrap(),
                )
                .unwrap();
                let rss = run("embedded store", &cache, keys);
                ok &= check(
                    "embedded store",
                    &cache,
                    rss,
                    &[
                        ("flights", 0),
                        ("fault log throttle", throttle_bound),
                        ("rare log throttle", throttle_bound),
                        ("lease keeper (all caches)", 0),
                        // The embedded store keeps its values decoded, in the near cache's
                        // structure, bounded by `max_entries`.
                        ("near cache", MEMORY_ENTRIES as u64),
                        ("embedded store markers", markers_bound),
                    ],
                );
            }
            _ => {
                let server = RedisServer::start();
                let cache = Cache::new(
                    Config::from_url(&server.url())
                        .unwrap()
                        .near_cache(NEAR_ENTRIES),
                )
                .unwrap();
                let rss = run("redis with the near cache", &cache, keys);
                ok &= check(
                    "redis with the near cache",
                    &cache,
                    rss,
                    &[
                        ("flights", 0),
                        ("fault log throttle", throttle_bound),
                        ("rare log throttle", throttle_bound),
                        ("lease keeper (all caches)", 0),
                        ("near cache", NEAR_ENTRIES),
                    ],
                );
            }
        }
    }
    if ok {
        println!("PASS");
    } else {
        println!("FAIL");
        std::process::exit(1);
    }
}
