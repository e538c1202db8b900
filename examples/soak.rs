//! A soak: readers, writers and invalidations against a private Redis that is killed,
//! restarted and frozen under them, with a version oracle that catches any stale read.
//!
//! ```text
//! cargo run --release --example soak -- --minutes 10 [--backend single|cluster] [--near]
//! cargo run --release --example soak -- --seconds 60
//! ```
//!
//! Each of `KEYS` source records carries a version. A writer bumps a record's version, then
//! invalidates its cache key (or, one time in a hundred, every key by pattern), retrying until the
//! invalidation succeeds, and only then publishes the version as invalidated. A reader
//! notes the invalidated version of its key before its call: a call that returns an older
//! version is a stale read. Cached calls never see an error (they fail open); a call that
//! panics is a caller-visible failure.
//!
//! Meanwhile, on one server: SIGKILL and restart every 30 s, SIGSTOP for 2 s at 15 s past
//! each. On the cluster (3 primaries, 3 replicas): a primary killed every 30 s (its replica
//! takes over), restarted as a replica once the cluster is whole again, and a primary
//! frozen for 2 s at 15 s past each.
//!
//! Prints calls, caller-visible failures, stale reads, latency (p50, p99, max), and
//! resident memory at start, after the first minute and at the end; exits non-zero on a
//! stale read or a caller-visible failure, or (runs of 2 minutes or more) when resident
//! memory at the end is over 110 % of its value after the first minute.

#[path = "common/memory.rs"]
mod memory;
#[path = "../tests/support/mod.rs"]
mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate};
use memory::rss_kib;
use serde::{Deserialize, Serialize};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{RedisCluster, RedisServer, Rng};

const KEYS: u64 = 500;
const SYNC_READERS: usize = 4;
const ASYNC_READERS: usize = 4;
const WRITERS: usize = 2;
/// How long a computation takes after it has read its record.
const QUERY_TIME: Duration = Duration::from_millis(1);

#[derive(Clone, Serialize, Deserialize)]
struct Record {
    id: u64,
    version: u64,
    payload: String,
}

/// The source of truth: each record's current version, and the latest version whose
/// invalidation has completed.
struct Source {
    version: Vec<AtomicU64>,
    invalidated: Vec<AtomicU64>,
}

impl Source {
    fn read(&self, id: u64) -> Record {
        let version = self.version[id as usize].load(SeqCst);
        Record {
            id,
            version,
            payload: format!("record {id} at version {version}"),
        }
    }
}

/// Latency in log-spaced buckets (8 per doubling, from 1 µs): bounded memory for any run
/// length, percentiles within 9 %.
struct Latency {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
}

const BUCKETS: usize = 8 * 40;

impl Latency {
    fn new() -> Latency {
        Latency {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }

    fn record(&self, d: Duration) {
        let us = d.as_micros().max(1) as u64;
        self.max_us.fetch_max(us, Relaxed);
        let i = ((us as f64).log2() * 8.0) as usize;
        self.buckets[i.min(BUCKETS - 1)].fetch_add(1, Relaxed);
    }

    /// The upper bound of the bucket holding quantile `q`, in microseconds.
    fn quantile(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        let target = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target.max(1) {
                return 2f64.powf((i + 1) as f64 / 8.0);
            }
        }
        0.0
    }
}

#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    failures: AtomicU64,
    stale: AtomicU64,
    invalidations: AtomicU64,
    invalidation_retries: AtomicU64,
}

struct Shared {
    cache: Cache,
    source: Source,
    tally: Tally,
    latency: Latency,
    stop: AtomicBool,
    first_stale: Mutex<Option<String>>,
}

fn item(shared: &Shared, id: u64) -> Record {
    Cacheable::new("item:<<id>>")
        .ttl(60)
        .on(&shared.cache)
        .run(ctx! { id }, || {
            // A query: the data is read, then the answer takes a while to come back, the
            // window in which an invalidation can race the computation.
            let record = shared.source.read(id);
            std::thread::sleep(QUERY_TIME);
            record
        })
}

async fn item_async(shared: &Shared, id: u64) -> Record {
    Cacheable::new("item:<<id>>")
        .ttl(60)
        .on(&shared.cache)
        .run_async(ctx! { id }, || async {
            let record = shared.source.read(id);
            tokio::time::sleep(QUERY_TIME).await;
            record
        })
        .await
}

/// Checks one read against the oracle.
fn check(shared: &Shared, id: u64, floor: u64, got: &Record, took: Duration) {
    shared.tally.calls.fetch_add(1, Relaxed);
    shared.latency.record(took);
    if got.id != id || got.version < floor {
        shared.tally.stale.fetch_add(1, Relaxed);
        let mut first = shared.first_stale.lock().unwrap();
        if first.is_none() {
            *first = Some(format!(
                "key {id}: got record {} version {}, but version {floor} was invalidated before the read began",
                got.id, got.version
            ));
        }
    }
}

fn sync_reader(shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !shared.stop.load(Relaxed) {
        let id = rng.below(KEYS as usize) as u64;
        let floor = shared.source.invalidated[id as usize].load(SeqCst);
        let started = Instant::now();
        match std::panic::catch_unwind(AssertUnwindSafe(|| item(&shared, id))) {
            Ok(got) => check(&shared, id, floor, &got, started.elapsed()),
            Err(_) => {
                shared.tally.calls.fetch_add(1, Relaxed);
                shared.tally.failures.fetch_add(1, Relaxed);
            }
        }
    }
}

async fn async_reader(shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !shared.stop.load(Relaxed) {
        let id = rng.below(KEYS as usize) as u64;
        let floor = shared.source.invalidated[id as usize].load(SeqCst);
        let started = Instant::now();
        let got = item_async(&shared, id).await;
        check(&shared, id, floor, &got, started.elapsed());
    }
}

/// Bumps a record, then invalidates until the invalidation succeeds, then publishes it.
fn writer(shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed);
    let one = Invalidate::new(["item:<<id>>"]).on(&shared.cache);
    let all = Invalidate::new(["item:*"]).on(&shared.cache);
    while !shared.stop.load(Relaxed) {
        let by_pattern = rng.below(100) == 0;
        let id = rng.below(KEYS as usize) as u64;
        let version = shared.source.version[id as usize].fetch_add(1, SeqCst) + 1;
        loop {
            let done = if by_pattern {
                all.now(ctx! {})
            } else {
                one.now(ctx! { id })
            };
            if done.is_ok() {
                break;
            }
            shared.tally.invalidation_retries.fetch_add(1, Relaxed);
            std::thread::sleep(Duration::from_millis(20));
        }
        shared.tally.invalidations.fetch_add(1, Relaxed);
        shared.source.invalidated[id as usize].fetch_max(version, SeqCst);
        std::thread::sleep(Duration::from_millis(rng.below(10) as u64));
    }
}

enum Servers {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Servers {
    fn url(&self) -> String {
        match self {
            Servers::Single(s) => s.url(),
            Servers::Cluster(c) => c.url(),
        }
    }

    /// The fault due at second `s` of the run, if any; returns what it did.
    fn chaos(&mut self, s: u64) -> Option<String> {
        match self {
            Servers::Single(server) if s % 30 == 0 => {
                server.restart_in_place();
                Some("killed (SIGKILL) and restarted the server".into())
            }
            Servers::Single(server) if s % 30 == 15 => {
                server.pause();
                std::thread::sleep(Duration::from_secs(2));
                server.resume();
                Some("froze the server (SIGSTOP) for 2 s".into())
            }
            Servers::Cluster(cluster) if s % 30 == 0 => {
                let primary = cluster.primaries()[(s / 30) as usize % 3];
                let started = Instant::now();
                cluster.kill(primary);
                cluster
                    .wait_ready(Duration::from_secs(30))
                    .expect("a replica takes over");
                let failover = started.elapsed();
                cluster
                    .nodes
                    .iter_mut()
                    .find(|n| n.port == primary)
                    .unwrap()
                    .restart_in_place();
                cluster
                    .wait_ready(Duration::from_secs(30))
                    .expect("the killed primary rejoins as a replica");
                Some(format!(
                    "killed primary {primary} (SIGKILL): failed over in {:.1} s, back as a replica after {:.1} s",
                    failover.as_secs_f64(),
                    started.elapsed().as_secs_f64()
                ))
            }
            Servers::Cluster(cluster) if s % 30 == 15 => {
                let primary = cluster.primaries()[(s / 30) as usize % 3];
                let node = cluster.node(primary);
                node.pause();
                std::thread::sleep(Duration::from_secs(2));
                node.resume();
                Some(format!("froze primary {primary} (SIGSTOP) for 2 s"))
            }
            _ => None,
        }
    }
}

fn main() {
    let mut seconds = 60u64;
    let mut cluster = false;
    let mut near = false;
    let mut unchecked = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{what} takes a whole number"))
        };
        match arg.as_str() {
            "--minutes" => seconds = number("--minutes") * 60,
            "--seconds" => seconds = number("--seconds"),
            "--near" => near = true,
            // Turns off the lease compare-and-set: the oracle should then see stale reads
            // (a check of the soak itself, not of the crate).
            "--unchecked-writes" => unchecked = true,
            "--backend" => match args.next().as_deref() {
                Some("single") => cluster = false,
                Some("cluster") => cluster = true,
                other => panic!("--backend takes single or cluster, not {other:?}"),
            },
            other => panic!(
                "unknown argument {other}: use --minutes N | --seconds N, --backend single|cluster, --near"
            ),
        }
    }
    let mut servers = if cluster {
        Servers::Cluster(RedisCluster::start())
    } else {
        Servers::Single(RedisServer::start())
    };
    let mut config = Config::from_url(&servers.url())
        .unwrap()
        .prefix("soak")
        .op_timeout(Duration::from_millis(250));
    if near {
        config = config.near_cache(10_000);
    }
    if unchecked {
        config = config.unchecked_lease_writes_for_tests(true);
    }
    let shared = Arc::new(Shared {
        cache: Cache::new(config).expect("a cache"),
        source: Source {
            version: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
            invalidated: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
        },
        tally: Tally::default(),
        latency: Latency::new(),
        stop: AtomicBool::new(false),
        first_stale: Mutex::new(None),
    });
    println!(
        "soak: {seconds} s on {} ({}), {KEYS} keys, {SYNC_READERS} sync and {ASYNC_READERS} async readers, {WRITERS} writers",
        if cluster { "a 3-primary cluster" } else { "one server" },
        if near { "near cache on" } else { "near cache off" },
    );
    let rss_start = rss_kib();
    let heap_start = memory::heap_in_use_kib();
    println!(
        "resident memory at start: {} KiB{}",
        rss_start,
        memory::heap_note()
    );

    let mut threads = Vec::new();
    for i in 0..SYNC_READERS {
        let shared = shared.clone();
        threads.push(std::thread::spawn(move || {
            sync_reader(shared, 1 + i as u64)
        }));
    }
    for i in 0..WRITERS {
        let shared = shared.clone();
        threads.push(std::thread::spawn(move || writer(shared, 100 + i as u64)));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..ASYNC_READERS)
        .map(|i| rt.spawn(async_reader(shared.clone(), 200 + i as u64)))
        .collect();

    let started = Instant::now();
    let mut rss_minute = None;
    let mut rss_half = None;
    let mut heap_minute = None;
    let mut last_calls = 0;
    for s in 1..=seconds {
        let due = started + Duration::from_secs(s);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if s < seconds {
            if let Some(what) = servers.chaos(s) {
                println!("[{:>4} s] {what}", started.elapsed().as_secs());
            }
        }
        if s == 60 {
            rss_minute = Some(rss_kib());
            heap_minute = memory::heap_in_use_kib();
            println!(
                "resident memory after the first minute: {} KiB{}",
                rss_minute.unwrap(),
                memory::heap_note()
            );
        }
        if s == seconds / 2 && s > 60 {
            rss_half = Some(rss_kib());
        }
        if s % 10 == 0 {
            let calls = shared.tally.calls.load(Relaxed);
            println!(
                "[{:>4} s] {} calls in the last 10 s, {} stale, {} failures, resident {} KiB{}, maps {:?}, stats {:?}",
                started.elapsed().as_secs(),
                calls - last_calls,
                shared.tally.stale.load(Relaxed),
                shared.tally.failures.load(Relaxed),
                rss_kib(),
                memory::heap_note(),
                shared.cache.internal_sizes_for_tests(),
                shared.cache.stats()
            );
            last_calls = calls;
        }
    }
    shared.stop.store(true, Relaxed);
    for t in threads {
        if t.join().is_err() {
            shared.tally.failures.fetch_add(1, Relaxed);
        }
    }
    for t in tasks {
        if rt.block_on(t).is_err() {
            shared.tally.failures.fetch_add(1, Relaxed);
        }
    }
    let rss_end = rss_kib();
    let heap_end = memory::heap_in_use_kib();
    let elapsed = started.elapsed();
    let t = &shared.tally;
    let (calls, failures, stale) = (
        t.calls.load(Relaxed),
        t.failures.load(Relaxed),
        t.stale.load(Relaxed),
    );
    println!("\n== soak result ({:.0} s)", elapsed.as_secs_f64());
    println!(
        "calls: {calls} ({:.0}/s)",
        calls as f64 / elapsed.as_secs_f64()
    );
    println!("caller-visible failures: {failures}");
    println!("stale reads: {stale}");
    println!(
        "invalidations: {} ({} retries while the store was down)",
        t.invalidations.load(Relaxed),
        t.invalidation_retries.load(Relaxed)
    );
    println!(
        "latency: p50 {:.0} µs, p99 {:.0} µs, max {} µs",
        shared.latency.quantile(0.50),
        shared.latency.quantile(0.99),
        shared.latency.max_us.load(Relaxed)
    );
    println!("stats: {:?}", shared.cache.stats());
    let minute = rss_minute.map_or("n/a (run under a minute)".to_string(), |m| {
        format!("{m} KiB")
    });
    println!("resident memory: start {rss_start} KiB, after 1 min {minute}, end {rss_end} KiB");
    if let (Some(start), Some(end)) = (heap_start, heap_end) {
        let minute = heap_minute.map_or("n/a".to_string(), |m| format!("{m} KiB"));
        println!("heap in use: start {start} KiB, after 1 min {minute}, end {end} KiB");
    }
    let mut ok = failures == 0 && stale == 0;
    if let Some(first) = shared.first_stale.lock().unwrap().as_ref() {
        println!("first stale read: {first}");
    }
    if let Some(m) = rss_minute {
        let ratio = rss_end as f64 / m as f64;
        println!("end / after 1 min: {:.3}", ratio);
        // Reported, not judged: a leak grows in the second half as in the first, where
        // an allocator's retained blocks level off after the first failovers.
        if let Some(half) = rss_half {
            println!(
                "end / half-way ({} s): {:.3}",
                seconds / 2,
                rss_end as f64 / half as f64
            );
        }
        if seconds >= 120 && ratio > 1.10 {
            println!("FAIL: resident memory grew more than 10 % after the first minute");
            ok = false;
        }
    }
    if calls == 0 {
        println!("FAIL: no call completed");
        ok = false;
    }
    drop(servers);
    if ok {
        println!("PASS");
    } else {
        println!("FAIL");
        std::process::exit(1);
    }
}
