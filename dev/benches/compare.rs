//! `cargo bench -p cacheable-dev`: cacheable against bare redis-rs, `cached` and `moka`, on a private
//! `redis-server` that this bench starts on a free port (never the shared one on 6379).
//!
//! Variants of one measurement run in alternating rounds (A B, B A, A B, …) in the same
//! process, so that every ratio is against a baseline measured minutes, not days, apart
//! and on the same load. Prints one Markdown table and writes it, with the machine and the
//! command, to `target/bench/report.md`, and a plot of the hit latency distributions of
//! benchmarks 1 and 2 to `target/bench/hit-latency.svg`. BENCHMARKS.md is copied from them.
//!
//! Environment: `CACHEABLE_BENCH_BUILD=0` skips benchmark 8 (clean builds, ~3 minutes);
//! `CACHEABLE_BENCH_QUICK=1` runs a tenth of the rounds, for trying the harness;
//! `CACHEABLE_BENCH_ONLY=1,4` runs only the benchmarks named (for profiling one);
//! `CACHEABLE_BENCH_ONLY=11` the sliding-expiry hit against a plain hit.
//! Benchmark 14 (codecs and compression) needs `--features msgpack,compress`.
//! Benchmark 9 (with the `cluster` feature, on by default) starts a private Redis Cluster of
//! 3 primaries and 3 replicas too.
//! Benchmark 18 (`cluster` too) puts a cluster of 3 primaries and one server behind TCP
//! proxies that hold each chunk 1 ms each way, to measure fan-out where the round trip, not
//! the servers' CPU, is the cost.

#[path = "../../tests/support/mod.rs"]
mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate, Template};
use cached::macros::concurrent_cached;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::RedisServer;

/// The ~1 KB value every hit benchmark reads.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Profile {
    id: i64,
    name: String,
    email: String,
    country: String,
    currency: String,
    verified: bool,
    balance_minor: i64,
    created_at: String,
    tags: Vec<String>,
    bio: String,
}

/// The "database": what a miss computes.
fn source(id: i64) -> Profile {
    Profile {
        id,
        name: format!("User Number {id}"),
        email: format!("user.{id}@example.com"),
        country: "NG".into(),
        currency: "NGN".into(),
        verified: id % 2 == 0,
        balance_minor: id * 12_345,
        created_at: "2024-05-01T12:00:00Z".into(),
        tags: (0..8).map(|i| format!("segment-{i}")).collect(),
        bio: "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(13),
    }
}

const TEMPLATE: &str = "user:<<user_id>>:profile";
const PREFIX: &str = "bench";
/// Hot keys the hit benchmarks cycle through.
const HOT_KEYS: i64 = 256;
const TTL_SECS: u64 = 3600;

fn bare_key(user_id: i64) -> String {
    format!("{PREFIX}:user:{user_id}:profile")
}

// ---------------------------------------------------------------- the variants

async fn crate_hit_async(cache: &Cache, user_id: i64) -> Profile {
    Cacheable::new(TEMPLATE)
        .ttl(TTL_SECS)
        .on(cache)
        .run_async(ctx! { user_id }, || async move { source(user_id) })
        .await
}

/// The same profile cached as an `Arc` (under a key of its own): a near hit clones the
/// `Arc`, not the profile.
async fn crate_hit_shared(cache: &Cache, user_id: i64) -> std::sync::Arc<Profile> {
    Cacheable::new("user:<<user_id>>:profile:shared")
        .ttl(TTL_SECS)
        .on(cache)
        .run_async(ctx! { user_id }, || async move {
            std::sync::Arc::new(source(user_id))
        })
        .await
}

fn crate_hit_sync(cache: &Cache, user_id: i64) -> Profile {
    Cacheable::new(TEMPLATE)
        .ttl(TTL_SECS)
        .on(cache)
        .run(ctx! { user_id }, || source(user_id))
}

async fn bare_hit_async<C: redis::aio::ConnectionLike>(con: &mut C, user_id: i64) -> Profile {
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(bare_key(user_id))
        .query_async(con)
        .await
        .expect("bare GET");
    serde_json::from_slice(&bytes).expect("bare decode")
}

fn bare_hit_sync(con: &mut redis::Connection, user_id: i64) -> Profile {
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(bare_key(user_id))
        .query(con)
        .expect("bare GET");
    serde_json::from_slice(&bytes).expect("bare decode")
}

/// Where `cached`'s stores connect; set before their first use.
static REDIS_URL: OnceLock<String> = OnceLock::new();

#[concurrent_cached(
    ty = "cached::AsyncRedisCache<i64, Profile>",
    create = r##"{
        cached::AsyncRedisCache::builder("bench_hits")
            .connection_string(REDIS_URL.get().expect("url set"))
            .ttl(Duration::from_secs(TTL_SECS))
            .build()
            .await
            .expect("AsyncRedisCache")
    }"##,
    map_error = r##"|e| format!("{e:?}")"##
)]
async fn cached_hit(user_id: i64) -> Result<Profile, String> {
    Ok(source(user_id))
}

/// `cached_hit` again, with a store of its own: `cached`'s store keeps the connection of
/// the runtime it was built on, and benchmark 14 runs on another runtime than benchmark 3.
#[cfg(all(feature = "msgpack", feature = "compress"))]
#[concurrent_cached(
    ty = "cached::AsyncRedisCache<i64, Profile>",
    create = r##"{
        cached::AsyncRedisCache::builder("bench_hits14")
            .connection_string(REDIS_URL.get().expect("url set"))
            .ttl(Duration::from_secs(TTL_SECS))
            .build()
            .await
            .expect("AsyncRedisCache")
    }"##,
    map_error = r##"|e| format!("{e:?}")"##
)]
async fn cached_hit14(user_id: i64) -> Result<Profile, String> {
    Ok(source(user_id))
}

/// `cached`'s best setting for hits: its client-side cache (redis-rs `cache-aio`, RESP3).
#[concurrent_cached(
    ty = "cached::AsyncRedisCache<i64, Profile>",
    create = r##"{
        cached::AsyncRedisCache::builder("bench_csc")
            .connection_string(&format!("{}?protocol=resp3", REDIS_URL.get().expect("url set")))
            .ttl(Duration::from_secs(TTL_SECS))
            .client_side_caching(true)
            .build()
            .await
            .expect("AsyncRedisCache with client-side caching")
    }"##,
    map_error = r##"|e| format!("{e:?}")"##
)]
async fn cached_csc_hit(user_id: i64) -> Result<Profile, String> {
    let mut p = source(user_id);
    if CSC_CHANGED.load(Ordering::Relaxed) {
        p.name = "recomputed".into();
    }
    Ok(p)
}

/// Set once the source behind `cached_csc_hit` changed (benchmark 9c).
static CSC_CHANGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Source computations in the stampede benchmark, per library.
static CRATE_COMPUTED: AtomicU64 = AtomicU64::new(0);
static CACHED_COMPUTED: AtomicU64 = AtomicU64::new(0);
/// How long the stampede's source takes: long enough that every caller arrives during it.
const SLOW_SOURCE: Duration = Duration::from_millis(50);

#[concurrent_cached(
    ty = "cached::AsyncRedisCache<i64, Profile>",
    create = r##"{
        cached::AsyncRedisCache::builder("bench_stampede")
            .connection_string(REDIS_URL.get().expect("url set"))
            .ttl(Duration::from_secs(TTL_SECS))
            .build()
            .await
            .expect("AsyncRedisCache")
    }"##,
    map_error = r##"|e| format!("{e:?}")"##
)]
async fn cached_slow(user_id: i64) -> Result<Profile, String> {
    CACHED_COMPUTED.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(SLOW_SOURCE).await;
    Ok(source(user_id))
}

async fn crate_slow(cache: &Cache, user_id: i64) -> Profile {
    Cacheable::new("stampede:<<user_id>>")
        .ttl(TTL_SECS)
        .on(cache)
        .run_async(ctx! { user_id }, || async move {
            CRATE_COMPUTED.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(SLOW_SOURCE).await;
            source(user_id)
        })
        .await
}

// ---------------------------------------------------------------- statistics

/// Per-op latencies in nanoseconds.
#[derive(Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_nanos() as u64);
    }

    fn sorted(&self) -> Vec<u64> {
        let mut v = self.0.clone();
        v.sort_unstable();
        v
    }

    fn quantile(&self, q: f64) -> f64 {
        quantile(&self.sorted(), q)
    }
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn us(ns: f64) -> String {
    format!("{:.1} µs", ns / 1000.0)
}

fn per_sec(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else {
        format!("{:.0} k/s", v / 1e3)
    }
}

/// The order of two variants in round `r`: A B, then B A, and so on.
fn order(r: usize) -> [usize; 2] {
    if r % 2 == 0 {
        [0, 1]
    } else {
        [1, 0]
    }
}

// ---------------------------------------------------------------- the report

struct Row {
    id: &'static str,
    what: String,
    ours: String,
    baseline: String,
    ratio: String,
    target: &'static str,
    verdict: String,
}

fn verdict(ratio: f64, target: &str) -> String {
    let met = if let Some(max) = target.strip_prefix("≤ ") {
        ratio <= max.parse::<f64>().unwrap_or(f64::INFINITY)
    } else if let Some(min) = target.strip_prefix("≥ ") {
        ratio >= min.parse::<f64>().unwrap_or(0.0)
    } else {
        return "report".into();
    };
    if met { "met" } else { "**missed**" }.into()
}

struct Bench {
    rounds: usize,
    quick: bool,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Bench {
    fn row(
        &mut self,
        id: &'static str,
        what: impl Into<String>,
        ours: String,
        baseline: String,
        ratio: f64,
        target: &'static str,
    ) {
        let row = Row {
            id,
            what: what.into(),
            ours,
            baseline,
            // Three decimals for small ratios (1 computation against 1,000).
            ratio: if ratio < 0.1 {
                format!("{ratio:.3}")
            } else {
                format!("{ratio:.2}")
            },
            target,
            verdict: verdict(ratio, target),
        };
        eprintln!(
            "  [{}] {}: {} vs {} → {} ({})",
            row.id, row.what, row.ours, row.baseline, row.ratio, row.verdict
        );
        self.rows.push(row);
    }

    fn rounds(&self, n: usize) -> usize {
        if self.quick {
            n.div_ceil(10).max(2)
        } else {
            n
        }
    }
}

// ---------------------------------------------------------------- 1 and 2: sequential hits

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

const SEQ_OPS_PER_ROUND: usize = 1000;

/// Benchmark 1: `run_async` hits vs bare `GET` + decode on a `ConnectionManager`, the
/// connection type the crate's async path uses.
fn seq_async(b: &mut Bench, server: &RedisServer, cache: &Cache) -> [Samples; 2] {
    let rt = current_thread();
    let rounds = b.rounds(b.rounds);
    let samples = rt.block_on(async {
        let client = redis::Client::open(server.url()).unwrap();
        let mut bare = redis::aio::ConnectionManager::new(client).await.unwrap();
        let mut samples = [Samples::default(), Samples::default()];
        for id in 0..HOT_KEYS {
            // Warm both: the crate's first call misses and writes the key the bare GET reads.
            assert_eq!(crate_hit_async(cache, id).await, source(id));
            assert_eq!(bare_hit_async(&mut bare, id).await, source(id));
        }
        let mut id = 0;
        for r in 0..rounds {
            for v in order(r) {
                for _ in 0..SEQ_OPS_PER_ROUND {
                    id = (id + 1) % HOT_KEYS;
                    let t = Instant::now();
                    let p = match v {
                        0 => crate_hit_async(cache, id).await,
                        _ => bare_hit_async(&mut bare, id).await,
                    };
                    samples[v].push(t.elapsed());
                    black_box(p);
                }
            }
        }
        samples
    });
    let (m0, m1) = (samples[0].quantile(0.5), samples[1].quantile(0.5));
    let (p0, p1) = (samples[0].quantile(0.99), samples[1].quantile(0.99));
    b.row(
        "1",
        "Sequential hit, async (`run_async`), median",
        us(m0),
        format!("{} bare `GET` + `serde_json` (ConnectionManager)", us(m1)),
        m0 / m1,
        "≤ 1.10",
    );
    b.row("1", "… p99", us(p0), us(p1), p0 / p1, "report");
    samples
}

/// Benchmark 2: `run` hits vs bare blocking `GET` + decode on a `redis::Connection`.
fn seq_sync(b: &mut Bench, server: &RedisServer, cache: &Cache) -> [Samples; 2] {
    let mut bare = server.client();
    let mut samples = [Samples::default(), Samples::default()];
    for id in 0..HOT_KEYS {
        assert_eq!(crate_hit_sync(cache, id), source(id));
        assert_eq!(bare_hit_sync(&mut bare, id), source(id));
    }
    let mut id = 0;
    for r in 0..b.rounds(b.rounds) {
        for v in order(r) {
            for _ in 0..SEQ_OPS_PER_ROUND {
                id = (id + 1) % HOT_KEYS;
                let t = Instant::now();
                let p = match v {
                    0 => crate_hit_sync(cache, id),
                    _ => bare_hit_sync(&mut bare, id),
                };
                samples[v].push(t.elapsed());
                black_box(p);
            }
        }
    }
    let (m0, m1) = (samples[0].quantile(0.5), samples[1].quantile(0.5));
    let (p0, p1) = (samples[0].quantile(0.99), samples[1].quantile(0.99));
    b.row(
        "2",
        "Sequential hit, sync (`run`), median",
        us(m0),
        format!("{} bare blocking `GET` + `serde_json`", us(m1)),
        m0 / m1,
        "≤ 1.10",
    );
    b.row("2", "… p99", us(p0), us(p1), p0 / p1, "report");
    samples
}

// ---------------------------------------------------------------- 3: concurrent hits

const TASKS: usize = 64;
const CONC_OPS_PER_TASK: usize = 100;

/// Benchmark 3: 64 tasks on a 2-worker runtime, each doing hits; throughput per round.
fn concurrent(b: &mut Bench, server: &RedisServer, cache: &Cache) {
    let rt = multi_thread();
    let rounds = b.rounds(b.rounds);
    let [ours, bare, theirs] = rt.block_on(async {
        let client = redis::Client::open(server.url()).unwrap();
        let bare = client.get_multiplexed_async_connection().await.unwrap();
        for id in 0..HOT_KEYS {
            assert_eq!(crate_hit_async(cache, id).await, source(id));
            assert_eq!(cached_hit(id).await.unwrap(), source(id));
        }
        let mut tput: [Vec<f64>; 3] = Default::default();
        for r in 0..rounds {
            // Rotate which variant goes first.
            for k in 0..3 {
                let v = (r + k) % 3;
                let start = Instant::now();
                let mut handles = Vec::with_capacity(TASKS);
                for task in 0..TASKS {
                    let (cache, mut bare) = (cache.clone(), bare.clone());
                    handles.push(tokio::spawn(async move {
                        for n in 0..CONC_OPS_PER_TASK {
                            let id = ((task * CONC_OPS_PER_TASK + n) as i64) % HOT_KEYS;
                            let p = match v {
                                0 => crate_hit_async(&cache, id).await,
                                1 => bare_hit_async(&mut bare, id).await,
                                _ => cached_hit(id).await.unwrap(),
                            };
                            black_box(p);
                        }
                    }));
                }
                for h in handles {
                    h.await.unwrap();
                }
                let ops = (TASKS * CONC_OPS_PER_TASK) as f64;
                tput[v].push(ops / start.elapsed().as_secs_f64());
            }
        }
        tput
    });
    let (mut ours, mut bare, mut theirs) = (ours, bare, theirs);
    let (o, ba, t) = (median(&mut ours), median(&mut bare), median(&mut theirs));
    // Where a hit's client CPU goes: the stored form and its decoding.
    let mut con = server.client();
    let theirs_key = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("*bench_hits*")
        .arg("COUNT")
        .arg(100_000)
        .query::<(u64, Vec<String>)>(&mut con)
        .ok()
        .and_then(|(_, keys)| keys.into_iter().next());
    let theirs_len: Option<u64> =
        theirs_key.and_then(|k| redis::cmd("STRLEN").arg(k).query(&mut con).ok());
    let json = serde_json::to_vec(&source(1)).unwrap();
    let start = Instant::now();
    for _ in 0..10_000 {
        black_box(serde_json::from_slice::<Profile>(black_box(&json)).unwrap());
    }
    let decode_ns = start.elapsed().as_nanos() as f64 / 10_000.0;
    b.notes.push(format!(
        "Benchmark 3: a hit stores {} bytes of JSON here and {} bytes of MessagePack (`rmp_serde`, \
         fields by position) in `cached`; decoding the JSON alone takes {decode_ns:.0} ns per hit \
         on this machine, at {:.1} µs of CPU per hit on 2 cores shared with redis-server.",
        json.len(),
        theirs_len.map_or("?".into(), |n| n.to_string()),
        2e6 / ba,
    ));
    b.row(
        "3",
        "Concurrent hits, 64 tasks, throughput vs bare",
        per_sec(o),
        format!("{} bare multiplexed `GET` + `serde_json`", per_sec(ba)),
        o / ba,
        "≥ 0.90",
    );
    b.row(
        "3",
        "Concurrent hits, 64 tasks, throughput vs `cached`",
        per_sec(o),
        format!(
            "{} `cached` 4.1 `AsyncRedisCache` + `#[concurrent_cached]`",
            per_sec(t)
        ),
        o / t,
        "≥ 1.0",
    );
}

// ---------------------------------------------------------------- 4: key rendering

const RENDER_OPS: usize = 10_000;

/// Benchmark 4: a template with a hashed map argument vs `format!` of the same key.
fn rendering(b: &mut Bench) {
    let template = Template::parse("loans:products:<<currency_code>>:<<filters>>").unwrap();
    let currency_code = "NGN";
    let filters: HashMap<String, bool> = [
        ("is_active", true),
        ("is_featured", false),
        ("allows_topup", true),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let key = template.render(&ctx! { currency_code, filters }).unwrap();
    let digest = key.rsplit(':').next().unwrap().to_string();
    assert_eq!(key, format!("loans:products:{currency_code}:{digest}"));

    let ctx_prebuilt = ctx! { currency_code, filters };
    let mut ns: [Vec<f64>; 3] = Default::default();
    for r in 0..b.rounds(b.rounds) {
        for k in 0..3 {
            let v = (r + k) % 3;
            let start = Instant::now();
            for _ in 0..RENDER_OPS {
                let s = match v {
                    // What a call pays: the context (the map serialized) and the render.
                    0 => template.render(&ctx! { currency_code, filters }).unwrap(),
                    1 => template.render(black_box(&ctx_prebuilt)).unwrap(),
                    _ => format!("loans:products:{}:{}", black_box(currency_code), digest),
                };
                black_box(s);
            }
            ns[v].push(start.elapsed().as_nanos() as f64 / RENDER_OPS as f64);
        }
    }
    let [mut full, mut render, mut fmt] = ns;
    let (full, render, fmt) = (median(&mut full), median(&mut render), median(&mut fmt));
    b.row(
        "4",
        "Key rendering, hashed map argument (`ctx!` + render)",
        format!("{full:.0} ns"),
        format!("{fmt:.0} ns `format!` of the same key string"),
        full / fmt,
        "report",
    );
    b.row(
        "4",
        "… render alone (context built once)",
        format!("{render:.0} ns"),
        format!("{fmt:.0} ns"),
        render / fmt,
        "report",
    );
}

// ---------------------------------------------------------------- 5: stampede

const STAMPEDE_CALLERS: usize = 1000;

/// Benchmark 5: 1,000 concurrent callers of one cold key; how often the source runs.
fn stampede(b: &mut Bench, cache: &Cache) {
    let rt = multi_thread();
    let trials = 3;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_ms, mut theirs_ms) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for trial in 0..trials {
            for v in order(trial) {
                let id = 1_000_000 + trial as i64;
                let before = match v {
                    0 => CRATE_COMPUTED.load(Ordering::Relaxed),
                    _ => CACHED_COMPUTED.load(Ordering::Relaxed),
                };
                let start = Instant::now();
                let handles: Vec<_> = (0..STAMPEDE_CALLERS)
                    .map(|_| {
                        let cache = cache.clone();
                        tokio::spawn(async move {
                            match v {
                                0 => crate_slow(&cache, id).await,
                                _ => cached_slow(id).await.unwrap(),
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    assert_eq!(h.await.unwrap(), source(id));
                }
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                match v {
                    0 => {
                        ours.push((CRATE_COMPUTED.load(Ordering::Relaxed) - before) as f64);
                        ours_ms.push(ms);
                    }
                    _ => {
                        theirs.push((CACHED_COMPUTED.load(Ordering::Relaxed) - before) as f64);
                        theirs_ms.push(ms);
                    }
                }
            }
        }
    });
    let (o, t) = (median(&mut ours), median(&mut theirs));
    let (oms, tms) = (median(&mut ours_ms), median(&mut theirs_ms));
    b.row(
        "5",
        "Cold-key stampede, 1,000 callers: source computations",
        format!("{o:.0} (all answered in {oms:.0} ms)"),
        format!("{t:.0} `cached` (all answered in {tms:.0} ms)"),
        o / t,
        "report",
    );
}

// ---------------------------------------------------------------- 6: pattern invalidation

const INV_TOTAL: u64 = 1_000_000;
const INV_MATCHING: u64 = 10_000;
const INV_USER: i64 = 7;
/// `SCAN … COUNT` for both variants (the crate's default).
const SCAN_COUNT: usize = 1000;

/// Writes `inv:wallets:<user>:<n>` keys server-side, a slice at a time.
const FILL_LUA: &str = r#"
local first, last, user = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i = first, last do
  local u = user
  if u == "" then u = tostring(100 + i % 100) end
  redis.call('SET', 'inv:wallets:' .. u .. ':' .. i, 'x')
end
return last - first + 1
"#;

/// The baseline: the same SCAN MATCH / UNLINK loop, run inside the server.
const SCAN_UNLINK_LUA: &str = r#"
local cursor, deleted = "0", 0
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', ARGV[2])
  cursor = page[1]
  if #page[2] > 0 then deleted = deleted + redis.call('UNLINK', unpack(page[2])) end
until cursor == "0"
return deleted
"#;

/// Benchmark 6: 10,000 matching keys among 1,000,000.
fn invalidation(b: &mut Bench, server: &RedisServer) {
    let mut con = server.client();
    let fill = redis::Script::new(FILL_LUA);
    let scan_unlink = redis::Script::new(SCAN_UNLINK_LUA);
    // Exactly the 1,000,000 keys below, nothing left from the other benchmarks.
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    let filled = Instant::now();
    let others = INV_TOTAL - INV_MATCHING;
    let mut first = 0;
    while first < others {
        let last = (first + 100_000).min(others) - 1;
        let _: u64 = fill.arg(first).arg(last).arg("").invoke(&mut con).unwrap();
        first = last + 1;
    }
    let refill = |con: &mut redis::Connection| {
        let n: u64 = fill
            .arg(0)
            .arg(INV_MATCHING - 1)
            .arg(INV_USER)
            .invoke(con)
            .unwrap();
        assert_eq!(n, INV_MATCHING);
    };
    refill(&mut con);
    let size: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    eprintln!(
        "  [6] {size} keys written in {:.1} s",
        filled.elapsed().as_secs_f64()
    );

    let cache = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("inv")
            .scan_count(SCAN_COUNT)
            .op_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    let scan_count = SCAN_COUNT;
    let invalidate = Invalidate::new(["wallets:<<user_id>>:*"]).on(&cache);
    let pattern = format!("inv:wallets:{INV_USER}:*");
    let mut ms: [Vec<f64>; 2] = Default::default();
    for r in 0..b.rounds(6) {
        for v in order(r) {
            let start = Instant::now();
            let deleted = match v {
                0 => invalidate.now(ctx! { user_id = INV_USER }).unwrap(),
                _ => scan_unlink
                    .arg(&pattern)
                    .arg(scan_count)
                    .invoke::<u64>(&mut con)
                    .unwrap(),
            };
            ms[v].push(start.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(deleted, INV_MATCHING, "variant {v} deleted {deleted}");
            refill(&mut con);
        }
    }
    let [mut o, mut t] = ms;
    let (o, t) = (median(&mut o), median(&mut t));
    b.row(
        "6",
        "Pattern invalidation, 10,000 of 1,000,000 keys",
        format!("{o:.0} ms"),
        format!("{t:.0} ms server-side Lua `SCAN`/`UNLINK` loop (COUNT {scan_count})"),
        o / t,
        "≤ 1.5",
    );
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
}

// ---------------------------------------------------------------- 12: early refresh

const HOT_TASKS: usize = 64;
const HOT_COMPUTE: Duration = Duration::from_millis(50);

/// What one hot-key run saw: every call's latency (ns, sorted), computations, and calls
/// that took longer than half a computation (they waited on one).
struct HotRun {
    ns: Vec<u64>,
    computations: u64,
    waited: usize,
}

/// 64 tasks read one key for `secs` seconds; the computation takes 50 ms.
fn hot_run(cache: &Cache, ttl: Duration, beta: f64, secs: u64, id: u64) -> HotRun {
    let computed = std::sync::Arc::new(AtomicU64::new(0));
    let rt = multi_thread();
    let ns = rt.block_on(async {
        // Warm: the first computation (δ is learnt from it).
        let until = Instant::now() + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..HOT_TASKS)
            .map(|_| {
                let (cache, computed) = (cache.clone(), computed.clone());
                tokio::spawn(async move {
                    let mut ns = Vec::with_capacity(100_000);
                    while Instant::now() < until {
                        let t = Instant::now();
                        let v = Cacheable::new("hot:<<id>>")
                            .ttl(ttl)
                            .early_refresh(beta)
                            .on(&cache)
                            .run_async(ctx! { id }, || async {
                                tokio::time::sleep(HOT_COMPUTE).await;
                                computed.fetch_add(1, Ordering::Relaxed)
                            })
                            .await;
                        black_box(v);
                        ns.push(t.elapsed().as_nanos() as u64);
                    }
                    ns
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let mut ns = ns;
    ns.sort_unstable();
    let waited = ns
        .iter()
        .filter(|&&n| n >= HOT_COMPUTE.as_nanos() as u64 / 2)
        .count();
    HotRun {
        ns,
        computations: computed.load(Ordering::Relaxed),
        waited,
    }
}

/// Benchmark 12: one hot key, TTL 1 s, a 50 ms computation, 64 tasks reading it for
/// `CACHEABLE_BENCH_HOT_SECS` seconds (20 by default) per variant: early refresh off, on
/// (β = 1 and β = 0.25), and, as the baseline, plain hits on a key that does not expire in
/// the run.
fn early_refresh(b: &mut Bench, server: &RedisServer) {
    let secs: u64 = std::env::var("CACHEABLE_BENCH_HOT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if b.quick { 3 } else { 20 });
    let cache = Cache::new(Config::from_url(&server.url()).unwrap().prefix("hot")).unwrap();
    let ttl = Duration::from_secs(1);
    let plain = hot_run(&cache, Duration::from_secs(3600), 0.0, secs, 1);
    let off = hot_run(&cache, ttl, 0.0, secs, 2);
    let before = cache.stats().early_refreshes;
    let on = hot_run(&cache, ttl, 1.0, secs, 3);
    let refreshes = cache.stats().early_refreshes - before;
    let before = cache.stats().early_refreshes;
    let low = hot_run(&cache, ttl, 0.25, secs, 4);
    let low_refreshes = cache.stats().early_refreshes - before;
    let q = |r: &HotRun, q: f64| quantile(&r.ns, q);
    let max = |r: &HotRun| *r.ns.last().unwrap_or(&0) as f64;
    let ttls = secs as f64 / ttl.as_secs_f64();
    let describe = |r: &HotRun| {
        format!(
            "p99 {}, p99.9 {}, max {}; {} computations in {secs} s ({:.2} per TTL); {} calls of {} waited ≥ 25 ms",
            us(q(r, 0.99)),
            us(q(r, 0.999)),
            us(max(r)),
            r.computations,
            r.computations as f64 / ttls,
            r.waited,
            r.ns.len()
        )
    };
    eprintln!("  [12] plain hits: {}", describe(&plain));
    b.row(
        "12",
        format!("Hot key (TTL 1 s, 50 ms computation, 64 tasks, {secs} s): early refresh on (β = 1), p99 against plain hits' p99"),
        format!("{} ({refreshes} refreshes stored)", describe(&on)),
        format!("plain hits: p99 {}, max {}", us(q(&plain, 0.99)), us(max(&plain))),
        q(&on, 0.99) / q(&plain, 0.99),
        "≤ 1.5",
    );
    b.row(
        "12",
        format!("Hot key (TTL 1 s, 50 ms computation, 64 tasks, {secs} s): early refresh on (β = 0.25), p99 against plain hits' p99"),
        format!("{} ({low_refreshes} refreshes stored)", describe(&low)),
        format!("plain hits: p99 {}, max {}", us(q(&plain, 0.99)), us(max(&plain))),
        q(&low, 0.99) / q(&plain, 0.99),
        "≤ 1.5",
    );
    b.row(
        "12",
        format!("Hot key (TTL 1 s, 50 ms computation, 64 tasks, {secs} s): early refresh off, p99 against plain hits' p99"),
        describe(&off),
        format!("plain hits: p99 {}, max {}", us(q(&plain, 0.99)), us(max(&plain))),
        q(&off, 0.99) / q(&plain, 0.99),
        "report",
    );
    b.row(
        "12",
        "… max latency, early refresh on against off",
        us(max(&on)),
        us(max(&off)),
        max(&on) / max(&off),
        "report",
    );
}

// ---------------------------------------------------------------- 13: tags against a pattern

const TAG_KEYS: u64 = 1_000;

/// Benchmark 13: invalidating 1,000 tagged keys among 1,000,000 and 10,000,000 stored
/// keys, by tag (`Invalidate::tags`) against the same keys by a `SCAN` pattern
/// (`Invalidate::new`), both through the crate. `CACHEABLE_BENCH_TAGS_10M=0` skips the 10 M
/// store (about 1 GB of Redis memory and a minute of filling).
fn tags_vs_scan(b: &mut Bench, server: &RedisServer) {
    let mut con = server.client();
    let fill = redis::Script::new(FILL_LUA);
    let cache = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix("tagb")
            .scan_count(SCAN_COUNT)
            .op_timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let tag_user = 42;
    let write_tagged = || {
        for n in 0..TAG_KEYS {
            Cacheable::new("orders:<<user_id>>:<<n>>")
                .tags(["user:<<user_id>>"])
                .ttl(3600)
                .on(&cache)
                .run(ctx! { user_id = tag_user, n }, || n);
        }
    };
    let by_tag = Invalidate::tags(["user:<<user_id>>"]).on(&cache);
    let by_pattern = Invalidate::new(["orders:<<user_id>>:*"]).on(&cache);
    let mut sizes = vec![1_000_000u64];
    if std::env::var("CACHEABLE_BENCH_TAGS_10M").as_deref() != Ok("0") {
        sizes.push(10_000_000);
    }
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    let mut stored = 0u64;
    for total in sizes {
        let filled = Instant::now();
        let others = total - TAG_KEYS;
        while stored < others {
            let last = (stored + 100_000).min(others) - 1;
            let _: u64 = fill.arg(stored).arg(last).arg("").invoke(&mut con).unwrap();
            stored = last + 1;
        }
        write_tagged();
        let size: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
        eprintln!(
            "  [13] {size} keys (with the tag set) in {:.1} s",
            filled.elapsed().as_secs_f64()
        );
        let rounds = if total > 1_000_000 {
            b.rounds(6)
        } else {
            b.rounds(10)
        };
        let mut ms: [Vec<f64>; 2] = Default::default();
        for r in 0..rounds {
            for v in order(r) {
                let start = Instant::now();
                let deleted = match v {
                    0 => by_tag.now(ctx! { user_id = tag_user }).unwrap(),
                    _ => by_pattern.now(ctx! { user_id = tag_user }).unwrap(),
                };
                ms[v].push(start.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(deleted, TAG_KEYS, "variant {v} deleted {deleted}");
                write_tagged();
            }
        }
        let [mut o, mut t] = ms;
        let (o, t) = (median(&mut o), median(&mut t));
        let millions = total / 1_000_000;
        b.row(
            "13",
            format!("Invalidate 1,000 tagged keys among {millions} M: by tag vs by `SCAN` pattern"),
            format!("{o:.1} ms `Invalidate::tags`"),
            format!("{t:.0} ms `Invalidate::new` pattern (SCAN COUNT {SCAN_COUNT})"),
            o / t,
            if total > 1_000_000 {
                "≤ 0.01"
            } else {
                "report"
            },
        );
    }
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
}

// ------------------------------------------------- 15: a tag of 1,000,000 keys, whole

/// Writes values `{prefix}:item:1:{first..=last}` and records each in the tag set KEYS[1]
/// with score ARGV[3] (the crate's own layout), inside the server.
const TAG_FILL_LUA: &str = r#"
local first, last, expiry, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
for i = first, last do
  local key = prefix .. ':item:1:' .. i
  redis.call('SET', key, i, 'EX', 3600)
  redis.call('ZADD', KEYS[1], expiry, key)
end
return last - first + 1
"#;

/// The slowest command `SLOWLOG` kept (it keeps those over 1 ms), in µs, and its name.
fn slowest_logged(con: &mut redis::Connection) -> (i64, String) {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query(con).unwrap();
    let mut slowest = (0, "none over 1 ms".to_string());
    for entry in entries {
        let redis::Value::Array(fields) = entry else {
            continue;
        };
        let us: i64 = redis::from_redis_value(fields[2].clone()).unwrap();
        let args: Vec<String> = redis::from_redis_value(fields[3].clone()).unwrap_or_default();
        let name = args.first().cloned().unwrap_or_default().to_uppercase();
        // The bench's own `SLOWLOG` and `CONFIG` calls are not the crate's.
        if us > slowest.0 && name != "SLOWLOG" && name != "CONFIG" {
            slowest = (us, name);
        }
    }
    slowest
}

/// Benchmark 15: `Invalidate::tags` on a tag of 1,000,000 keys on one server: all deleted,
/// the count returned, the time taken, and the slowest Redis command meanwhile (`SLOWLOG`,
/// which keeps every command over 1 ms here).
fn huge_tag(b: &mut Bench, server: &RedisServer) {
    const N: u64 = 1_000_000;
    let mut con = server.client();
    let cache = Cache::new(Config::from_url(&server.url()).unwrap().prefix("huge")).unwrap();
    let set = cache.full_key("[tag]:shelf:1");
    let fill = redis::Script::new(TAG_FILL_LUA);
    let rounds = if b.quick { 1 } else { 3 };
    let mut times = Vec::new();
    let mut slowest = (0i64, String::new());
    for _ in 0..rounds {
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 3_600_000;
        let mut first = 0;
        while first < N {
            let last = (first + 100_000).min(N) - 1;
            let _: u64 = fill
                .key(&set)
                .arg(first)
                .arg(last)
                .arg(expiry)
                .arg("huge")
                .invoke(&mut con)
                .unwrap();
            first = last + 1;
        }
        for (k, v) in [
            ("slowlog-log-slower-than", "1000"),
            ("slowlog-max-len", "100000"),
        ] {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(k)
                .arg(v)
                .query(&mut con)
                .unwrap();
        }
        let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut con).unwrap();
        let started = Instant::now();
        let deleted = Invalidate::tags(["shelf:<<shelf>>"])
            .on(&cache)
            .now(ctx! { shelf = 1 })
            .unwrap();
        times.push(started.elapsed().as_secs_f64());
        assert_eq!(deleted, N, "the tag's every key, counted");
        let left: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
        assert_eq!(left, 0, "nothing left, the tag set included");
        let s = slowest_logged(&mut con);
        if s.0 > slowest.0 {
            slowest = s;
        }
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg("10000")
            .query(&mut con)
            .unwrap();
    }
    let t = median(&mut times);
    let slowest_ms = slowest.0 as f64 / 1000.0;
    b.row(
        "15",
        "`Invalidate::tags` on a tag of 1,000,000 keys (one server): all deleted and counted; the slowest Redis command meanwhile against one operation timeout",
        format!(
            "slowest {slowest_ms:.1} ms ({}); whole tag in {t:.1} s ({:.0} k keys/s)",
            slowest.1,
            N as f64 / t / 1000.0
        ),
        "`op_timeout` 250 ms".into(),
        slowest_ms / 250.0,
        "≤ 0.02",
    );
}

// ---------------------------------------------------------------- 9: Redis Cluster

/// CRC16/XMODEM of a key's hash tag or whole key: its cluster slot, to send each fill
/// command to the primary that owns it.
#[cfg(feature = "cluster")]
fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc = 0u16;
    for &b in hashed {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc & 0x3FFF
}

/// Writes `keys` to the cluster's primaries, each on its owner, in pipelines.
#[cfg(feature = "cluster")]
fn cluster_fill(cluster: &support::RedisCluster, keys: impl Iterator<Item = String>) {
    cluster_fill_on(&cluster.primaries(), |port| port, keys);
}

/// [`cluster_fill`] on the primaries listening on `ports`, which the cluster announces as
/// the ports `direct` maps back to theirs (the same, unless they announce a proxy's).
#[cfg(feature = "cluster")]
fn cluster_fill_on(ports: &[u16], direct: impl Fn(u16) -> u16, keys: impl Iterator<Item = String>) {
    let mut owner = vec![0u16; 16384];
    let mut cons: HashMap<u16, redis::Connection> = HashMap::new();
    for &port in ports {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let ranges: Vec<Vec<redis::Value>> =
            redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).unwrap();
        for range in ranges {
            let first: u16 = redis::from_redis_value(range[0].clone()).unwrap();
            let last: u16 = redis::from_redis_value(range[1].clone()).unwrap();
            let primary: Vec<redis::Value> = redis::from_redis_value(range[2].clone()).unwrap();
            let p: u16 = redis::from_redis_value(primary[1].clone()).unwrap();
            for s in first..=last {
                owner[usize::from(s)] = direct(p);
            }
        }
        cons.insert(port, con);
    }
    let mut pipes: HashMap<u16, (redis::Pipeline, usize)> = HashMap::new();
    for key in keys {
        let port = owner[usize::from(key_slot(key.as_bytes()))];
        let (pipe, n) = pipes.entry(port).or_insert_with(|| (redis::pipe(), 0));
        pipe.cmd("SET").arg(&key).arg("x").ignore();
        *n += 1;
        if *n == 10_000 {
            let _: () = pipe.query(cons.get_mut(&port).unwrap()).unwrap();
            *pipe = redis::pipe();
            *n = 0;
        }
    }
    for (port, (pipe, n)) in pipes {
        if n > 0 {
            let _: () = pipe.query(cons.get_mut(&port).unwrap()).unwrap();
        }
    }
}

/// Benchmark 9: the same workloads on a private cluster of 3 primaries (and 3 replicas) and
/// on the one server: 64-task hits, a pattern invalidation of 10,000 of 1,000,000 keys, and
/// a hash-tagged pattern against an untagged one.
#[cfg(feature = "cluster")]
fn cluster(b: &mut Bench, server: &RedisServer, single: &Cache) {
    let started = Instant::now();
    let cluster = support::RedisCluster::start();
    eprintln!(
        "  [9] cluster of 3 primaries and 3 replicas up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let clustered = Cache::new(Config::from_url(&cluster.url()).unwrap().prefix(PREFIX)).unwrap();

    // 64-task hits, the two caches in alternating rounds.
    let rt = multi_thread();
    let rounds = b.rounds(b.rounds);
    let [mut on_cluster, mut on_server] = rt.block_on(async {
        for id in 0..HOT_KEYS {
            assert_eq!(crate_hit_async(&clustered, id).await, source(id));
            assert_eq!(crate_hit_async(single, id).await, source(id));
        }
        let mut tput: [Vec<f64>; 2] = Default::default();
        for r in 0..rounds {
            for v in order(r) {
                let cache = if v == 0 { &clustered } else { single };
                let start = Instant::now();
                let handles: Vec<_> = (0..TASKS)
                    .map(|task| {
                        let cache = cache.clone();
                        tokio::spawn(async move {
                            for n in 0..CONC_OPS_PER_TASK {
                                let id = ((task * CONC_OPS_PER_TASK + n) as i64) % HOT_KEYS;
                                black_box(crate_hit_async(&cache, id).await);
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.await.unwrap();
                }
                tput[v].push((TASKS * CONC_OPS_PER_TASK) as f64 / start.elapsed().as_secs_f64());
            }
        }
        tput
    });
    let (c, s) = (median(&mut on_cluster), median(&mut on_server));
    b.row(
        "9",
        "Concurrent hits, 64 tasks, cluster (3 primaries) vs one server",
        per_sec(c),
        format!("{} on one server", per_sec(s)),
        c / s,
        "report",
    );
    let errors = clustered.stats().errors;
    assert_eq!(errors, 0, "cluster hit errors");

    // 1,000,000 keys on each store: 990,000 others, 10,000 of user 7 untagged
    // (`wallets:7:…`, spread over the primaries) and, on the cluster, 10,000 tagged
    // (`wallets:{8}:…`, all on one primary) among them.
    let filled = Instant::now();
    let others = INV_TOTAL - INV_MATCHING;
    let other_keys = || (0..others).map(|i| format!("inv:wallets:{}:{i}", 100 + i % 100));
    let untagged = || (0..INV_MATCHING).map(|i| format!("inv:wallets:{INV_USER}:{i}"));
    let tagged = || (0..INV_MATCHING).map(|i| format!("inv:wallets:{{8}}:{i}"));
    cluster_fill(&cluster, other_keys().chain(untagged()));
    eprintln!(
        "  [9] {} keys written to the cluster in {:.1} s",
        INV_TOTAL,
        filled.elapsed().as_secs_f64()
    );
    let mut con = server.client();
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    let fill = redis::Script::new(FILL_LUA);
    let mut first = 0;
    while first < others {
        let last = (first + 100_000).min(others) - 1;
        let _: u64 = fill.arg(first).arg(last).arg("").invoke(&mut con).unwrap();
        first = last + 1;
    }
    let refill_server = |con: &mut redis::Connection| {
        let n: u64 = fill
            .arg(0)
            .arg(INV_MATCHING - 1)
            .arg(INV_USER)
            .invoke(con)
            .unwrap();
        assert_eq!(n, INV_MATCHING);
    };
    refill_server(&mut con);
    let config = |url: &str| {
        Config::from_url(url)
            .unwrap()
            .prefix("inv")
            .scan_count(SCAN_COUNT)
            .op_timeout(Duration::from_secs(5))
    };
    let on_server = Cache::new(config(&server.url())).unwrap();
    let on_cluster = Cache::new(config(&cluster.url())).unwrap();
    let untagged_pattern = |cache| Invalidate::new(["wallets:<<user_id>>:*"]).on(cache);
    let (cluster_untagged, server_untagged) =
        (untagged_pattern(&on_cluster), untagged_pattern(&on_server));
    let mut ms: [Vec<f64>; 2] = Default::default();
    for r in 0..b.rounds(6) {
        for v in order(r) {
            let invalidate = if v == 0 {
                &cluster_untagged
            } else {
                &server_untagged
            };
            let start = Instant::now();
            let deleted = invalidate.now(ctx! { user_id = INV_USER }).unwrap();
            ms[v].push(start.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(deleted, INV_MATCHING, "variant {v}");
            if v == 0 {
                cluster_fill(&cluster, untagged());
            } else {
                refill_server(&mut con);
            }
        }
    }
    let [mut c, mut s] = ms;
    let (c, s) = (median(&mut c), median(&mut s));
    b.row(
        "9",
        "Pattern invalidation, 10,000 of 1,000,000 keys, cluster (3 primaries) vs one server",
        format!("{c:.0} ms"),
        format!("{s:.0} ms on one server"),
        c / s,
        "≤ 0.5",
    );
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();

    // Tagged against untagged, on the cluster: 10,000 keys of one tag among 1,000,000.
    cluster_fill(&cluster, tagged());
    let cluster_tagged = Invalidate::new(["wallets:{<<user_id>>}:*"]).on(&on_cluster);
    let mut ms: [Vec<f64>; 2] = Default::default();
    for r in 0..b.rounds(6) {
        for v in order(r) {
            let start = Instant::now();
            let deleted = if v == 0 {
                cluster_tagged.now(ctx! { user_id = 8 })
            } else {
                cluster_untagged.now(ctx! { user_id = INV_USER })
            }
            .unwrap();
            ms[v].push(start.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(deleted, INV_MATCHING, "variant {v}");
            if v == 0 {
                cluster_fill(&cluster, tagged());
            } else {
                cluster_fill(&cluster, untagged());
            }
        }
    }
    let [mut t, mut u] = ms;
    let (t, u) = (median(&mut t), median(&mut u));
    b.notes.push(format!(
        "Benchmark 9: the cluster's six `redis-server`s, the one server and the bench share this \
         machine's 2 cores, so the three primaries' `SCAN`s, each bound by its server's CPU, \
         cannot all run at once: the untagged pattern invalidation ({c:.0} ms against the \
         cluster in its row, {u:.0} ms in the tagged row) is near one server's ({s:.0} ms) rather \
         than a third of it. One primary alone, a third of the keys, takes {t:.0} ms (the tagged \
         row, {:.2}x one server): about what the untagged invalidation would take with each \
         primary on cores of its own.",
        t / s
    ));
    b.row(
        "9",
        "Pattern invalidation on the cluster, hash-tagged (`wallets:{8}:*`, one primary) vs untagged (all three)",
        format!("{t:.0} ms"),
        format!("{u:.0} ms untagged"),
        t / u,
        "report",
    );
}

// ---------------------------------------------------------------- 7: embedded store

const MEM_OPS: usize = 20_000;

/// Benchmark 7: hits on the embedded store vs `moka::sync::Cache`, one thread.
fn embedded(b: &mut Bench) {
    let cache = Cache::new(Config::memory().prefix(PREFIX)).unwrap();
    let moka: moka::sync::Cache<i64, Profile> = moka::sync::Cache::new(100_000);
    for id in 0..HOT_KEYS {
        assert_eq!(crate_hit_sync(&cache, id), source(id));
        assert_eq!(moka.get_with(id, || source(id)), source(id));
    }
    let mut rate: [Vec<f64>; 2] = Default::default();
    for r in 0..b.rounds(b.rounds) {
        for v in order(r) {
            let start = Instant::now();
            for n in 0..MEM_OPS {
                let id = n as i64 % HOT_KEYS;
                let p = match v {
                    0 => crate_hit_sync(&cache, id),
                    _ => moka.get_with(id, || source(id)),
                };
                black_box(p);
            }
            rate[v].push(MEM_OPS as f64 / start.elapsed().as_secs_f64());
        }
    }
    let [mut o, mut t] = rate;
    let (o, t) = (median(&mut o), median(&mut t));
    b.row(
        "7",
        "Embedded store hits, 1 thread (`run` on `Config::memory()`)",
        per_sec(o),
        format!("{} `moka::sync::Cache::get_with`", per_sec(t)),
        o / t,
        "report",
    );
}

// ---------------------------------------------------------------- 10: the near cache

const NEAR_OPS: usize = 20_000;

/// Benchmark 10: hits from the near cache against hits from Redis, one at a time and by 64
/// tasks (against `cached`'s client-side cache); and what each serves after its
/// connections are killed and the key is overwritten behind its back.
fn near(b: &mut Bench, server: &RedisServer, cache: &Cache) {
    let near = Cache::new(
        Config::from_url(&server.url())
            .unwrap()
            .prefix(PREFIX)
            .near_cache(100_000),
    )
    .unwrap();
    // Warm: every hot key read through Redis once, then held near.
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in 0..HOT_KEYS {
        assert_eq!(crate_hit_sync(cache, id), source(id));
        loop {
            let before = near.stats().near_hits;
            assert_eq!(crate_hit_sync(&near, id), source(id));
            if near.stats().near_hits > before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the near cache never served a hit"
            );
        }
    }
    // 10a: sequential, sync `run`.
    let mut samples = [Samples::default(), Samples::default()];
    let seq_ops = if b.quick { 200 } else { 2_000 };
    for r in 0..b.rounds(b.rounds) {
        for v in order(r) {
            for n in 0..seq_ops {
                let id = n as i64 % HOT_KEYS;
                let t = Instant::now();
                let p = match v {
                    0 => crate_hit_sync(&near, id),
                    _ => crate_hit_sync(cache, id),
                };
                samples[v].push(t.elapsed());
                black_box(p);
            }
        }
    }
    let (m0, m1) = (samples[0].quantile(0.5), samples[1].quantile(0.5));
    b.row(
        "10",
        "Near hit vs Redis hit, 1 KB value, sync `run`, median",
        format!("{:.2} µs", m0 / 1000.0),
        format!("{} (`run` without the near cache)", us(m1)),
        m0 / m1,
        "≤ 0.02",
    );
    b.row(
        "10",
        "… near hit, absolute (target ≤ 1 µs)",
        format!("{:.2} µs", m0 / 1000.0),
        "1.00 µs".into(),
        m0 / 1000.0,
        "≤ 1.0",
    );
    // 10b: 64 tasks, `run_async`, against `cached`'s client-side cache; and the same with
    // the value cached as `Arc<Profile>`, which a near hit hands out by a reference count
    // instead of a deep clone of 15 allocations (`cached` decodes on every hit whatever the
    // type, so its one row is its best). And, as the ceiling of any cache that hands out
    // owned copies, a bare clone of the value from a table, with no cache at all. Four-way
    // rotations.
    let rt = multi_thread();
    let rounds = b.rounds(b.rounds);
    let table: std::sync::Arc<Vec<Profile>> =
        std::sync::Arc::new((0..HOT_KEYS).map(source).collect());
    let [mut ours, mut shared, mut theirs, mut bare] = rt.block_on(async {
        for id in 0..HOT_KEYS {
            assert_eq!(cached_csc_hit(id).await.unwrap(), source(id));
            assert_eq!(cached_csc_hit(id).await.unwrap(), source(id));
            assert_eq!(*crate_hit_shared(&near, id).await, source(id));
            assert_eq!(*crate_hit_shared(&near, id).await, source(id));
        }
        let mut tput: [Vec<f64>; 4] = Default::default();
        for r in 0..rounds {
            for k in 0..4 {
                let v = (r + k) % 4;
                let start = Instant::now();
                let mut handles = Vec::with_capacity(TASKS);
                for task in 0..TASKS {
                    let near = near.clone();
                    let table = table.clone();
                    handles.push(tokio::spawn(async move {
                        for n in 0..NEAR_OPS / TASKS * 4 {
                            let id = ((task * 1000 + n) as i64) % HOT_KEYS;
                            match v {
                                0 => {
                                    black_box(crate_hit_async(&near, id).await);
                                }
                                1 => {
                                    black_box(crate_hit_shared(&near, id).await);
                                }
                                2 => {
                                    black_box(cached_csc_hit(id).await.unwrap());
                                }
                                _ => {
                                    black_box(table[id as usize].clone());
                                }
                            }
                        }
                    }));
                }
                for h in handles {
                    h.await.unwrap();
                }
                tput[v].push((NEAR_OPS / TASKS * 4 * TASKS) as f64 / start.elapsed().as_secs_f64());
            }
        }
        tput
    });
    let (o, a, t, c) = (
        median(&mut ours),
        median(&mut shared),
        median(&mut theirs),
        median(&mut bare),
    );
    b.row(
        "10",
        "Near hits, 64 tasks, throughput vs `cached`'s client-side cache",
        per_sec(o),
        format!(
            "{} `cached` 4.1 `AsyncRedisCache` with `client_side_caching(true)` (RESP3)",
            per_sec(t)
        ),
        o / t,
        "≥ 5.0",
    );
    b.row(
        "10",
        "… no cache: a bare `Profile::clone` from a table (the ceiling for owned copies)",
        per_sec(c),
        format!("{} `cached`, the same rounds", per_sec(t)),
        c / t,
        "report",
    );
    b.row(
        "10",
        "… the same, values cached as `Arc<Profile>`",
        per_sec(a),
        format!("{} `cached`, the same rounds", per_sec(t)),
        a / t,
        "≥ 5.0",
    );
    // 10c: kill every connection, overwrite a held key behind the caches' backs, read.
    let id = 7;
    let stale = rt.block_on(async {
        assert_eq!(crate_hit_async(&near, id).await, source(id));
        assert_eq!(cached_csc_hit(id).await.unwrap(), source(id));
        server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        let mut changed = source(id);
        changed.name = "overwritten".into();
        let json = serde_json::to_string(&changed).unwrap();
        server.cli(&["SET", &bare_key(id), &json, "EX", "3600"]);
        let theirs_key = redis::cmd("SCAN")
            .arg(0)
            .arg("MATCH")
            .arg("*bench_csc*7*")
            .arg("COUNT")
            .arg(100_000)
            .query::<(u64, Vec<String>)>(&mut server.client())
            .ok()
            .and_then(|(_, keys)| keys.into_iter().next());
        // `cached`'s value goes, and its source changes: only a client-side copy can still
        // serve the old value.
        CSC_CHANGED.store(true, Ordering::Relaxed);
        if let Some(k) = &theirs_key {
            server.cli(&["DEL", k]);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ours_old = crate_hit_async(&near, id).await.name == source(id).name;
        let theirs_old =
            theirs_key.is_some() && cached_csc_hit(id).await.map(|p| p.name) == Ok(source(id).name);
        (ours_old, theirs_old)
    });
    b.notes.push(format!(
        "Benchmark 10c: after `CLIENT KILL TYPE normal` and an overwrite of a held key by another client, the near cache served {} and `cached`'s client-side cache served {}.",
        if stale.0 { "the old value" } else { "the new value" },
        if stale.1 { "the old value" } else { "the new value (or its key was not found)" },
    ));
}

// ---------------------------------------------------------------- 14: codecs and compression

/// One transaction of the 100 KB list that benchmark 14b caches.
#[cfg(all(feature = "msgpack", feature = "compress"))]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Transaction {
    id: u64,
    wallet_id: u64,
    amount_minor: i64,
    currency: String,
    kind: String,
    status: String,
    counterparty: String,
    reference: String,
    created_at: String,
    fee_minor: i64,
}

/// A wallet's transactions, about `target_bytes` of JSON: the ids, amounts and references
/// vary (xorshift), the rest repeats as in real statements.
#[cfg(all(feature = "msgpack", feature = "compress"))]
fn transactions(target_bytes: usize) -> Vec<Transaction> {
    let kinds = ["deposit", "withdrawal", "transfer", "fee", "refund"];
    let statuses = ["completed", "pending", "failed"];
    let currencies = ["NGN", "KES", "GHS", "USD"];
    let mut out = Vec::new();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut json_len = 1;
    while json_len < target_bytes {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let t = Transaction {
            id: 1_000_000 + out.len() as u64,
            wallet_id: 42,
            amount_minor: (seed % 10_000_000) as i64,
            currency: currencies[(seed % 4) as usize].into(),
            kind: kinds[(seed % 5) as usize].into(),
            status: statuses[(seed % 3) as usize].into(),
            counterparty: format!("ACC{:010}", seed % 10_000_000_000),
            reference: format!("TRX-{seed:016x}"),
            created_at: format!(
                "2026-11-{:02}T{:02}:{:02}:{:02}Z",
                1 + seed % 28,
                seed % 24,
                seed % 60,
                (seed >> 8) % 60
            ),
            fee_minor: (seed % 500) as i64,
        };
        json_len += serde_json::to_vec(&t).unwrap().len() + 1;
        out.push(t);
    }
    out
}

/// Benchmark 14: values on the wire. 14a: 64-task hits with MessagePack against `cached`
/// (benchmark 3's setup, with JSON as a third variant); 14b: a 100 KB value, bytes stored
/// and sync hit latency, each codec with and without LZ4.
#[cfg(all(feature = "msgpack", feature = "compress"))]
fn codecs(b: &mut Bench, server: &RedisServer, json: &Cache) {
    use cacheable::Codec;
    let with = |prefix: &str, f: fn(Config) -> Config| {
        Cache::new(f(Config::from_url(&server.url()).unwrap().prefix(prefix))).unwrap()
    };
    let mp = with("bench_mp", |c| c.codec(Codec::MessagePack));
    // 14a: the same loop as benchmark 3, three variants in rotation.
    let rt = multi_thread();
    let rounds = b.rounds(b.rounds);
    let [mut ours, mut ours_json, mut theirs] = rt.block_on(async {
        for id in 0..HOT_KEYS {
            assert_eq!(crate_hit_async(&mp, id).await, source(id));
            assert_eq!(crate_hit_async(json, id).await, source(id));
            assert_eq!(cached_hit14(id).await.unwrap(), source(id));
        }
        let mut tput: [Vec<f64>; 3] = Default::default();
        for r in 0..rounds {
            for k in 0..3 {
                let v = (r + k) % 3;
                let start = Instant::now();
                let mut handles = Vec::with_capacity(TASKS);
                for task in 0..TASKS {
                    let (mp, json) = (mp.clone(), json.clone());
                    handles.push(tokio::spawn(async move {
                        for n in 0..CONC_OPS_PER_TASK {
                            let id = ((task * CONC_OPS_PER_TASK + n) as i64) % HOT_KEYS;
                            let p = match v {
                                0 => crate_hit_async(&mp, id).await,
                                1 => crate_hit_async(&json, id).await,
                                _ => cached_hit14(id).await.unwrap(),
                            };
                            black_box(p);
                        }
                    }));
                }
                for h in handles {
                    h.await.unwrap();
                }
                tput[v].push((TASKS * CONC_OPS_PER_TASK) as f64 / start.elapsed().as_secs_f64());
            }
        }
        tput
    });
    let (o, oj, t) = (
        median(&mut ours),
        median(&mut ours_json),
        median(&mut theirs),
    );
    let strlen = |key: &str| -> u64 {
        redis::cmd("STRLEN")
            .arg(key)
            .query(&mut server.client())
            .unwrap()
    };
    let (mp_len, json_len) = (strlen("bench_mp:user:1:profile"), strlen(&bare_key(1)));
    b.row(
        "14",
        "Concurrent hits, 64 tasks, MessagePack, throughput vs `cached`",
        per_sec(o),
        format!(
            "{} `cached` 4.1 `AsyncRedisCache` + `#[concurrent_cached]`",
            per_sec(t)
        ),
        o / t,
        "≥ 1.0",
    );
    b.row(
        "14",
        "… MessagePack vs JSON, this crate",
        per_sec(o),
        format!("{} JSON (the default)", per_sec(oj)),
        o / oj,
        "report",
    );
    let st = mp.stats();
    b.notes.push(format!(
        "Benchmark 14a: the MessagePack cache counted {} hits, {} misses, {} decode errors.",
        st.hits, st.misses, st.decode_errors
    ));
    // 14a': the decoding alone, one thread, no network: `Cache::get` on the embedded store
    // reads the stored bytes and decodes them each time.
    let mem_json = Cache::new(Config::memory()).unwrap();
    let mem_mp = Cache::new(Config::memory().codec(Codec::MessagePack)).unwrap();
    for c in [&mem_json, &mem_mp] {
        c.set("p", &source(1), 3600).unwrap();
    }
    let mut decode: [Vec<f64>; 2] = Default::default();
    let gets = if b.quick { 1_000 } else { 10_000 };
    for r in 0..b.rounds(b.rounds) {
        for v in order(r) {
            let c = if v == 0 { &mem_mp } else { &mem_json };
            let t = Instant::now();
            for _ in 0..gets {
                black_box(c.get::<Profile>("p").unwrap().unwrap());
            }
            decode[v].push(t.elapsed().as_nanos() as f64 / gets as f64);
        }
    }
    let (dm, dj) = (median(&mut decode[0]), median(&mut decode[1]));
    b.row(
        "14",
        "… 1 KB value read and decoded (`Cache::get`, embedded store, 1 thread): MessagePack vs JSON",
        format!("{dm:.0} ns"),
        format!("{dj:.0} ns JSON"),
        dm / dj,
        "report",
    );
    // 14b: a 100 KB list, sequential sync hits, four settings in rotation.
    let list = transactions(100 * 1024);
    let settings: [(&str, Cache); 4] = [
        ("JSON", json.clone()),
        ("JSON + LZ4", with("bench_jz", |c| c.compress_over(1024))),
        ("MessagePack", mp.clone()),
        (
            "MessagePack + LZ4",
            with("bench_mz", |c| {
                c.codec(Codec::MessagePack).compress_over(1024)
            }),
        ),
    ];
    let big_hit = |cache: &Cache| -> Vec<Transaction> {
        Cacheable::new("statement:<<wallet>>")
            .ttl(TTL_SECS)
            .on(cache)
            .run(ctx! { wallet = 42 }, || list.clone())
    };
    let mut bytes = [0u64; 4];
    for (i, (_, cache)) in settings.iter().enumerate() {
        assert_eq!(big_hit(cache), list);
        bytes[i] = strlen(&cache.full_key("statement:42"));
    }
    let mut samples: [Samples; 4] = Default::default();
    let ops = if b.quick { 20 } else { 100 };
    for r in 0..b.rounds(b.rounds) {
        for k in 0..4 {
            let v = (r + k) % 4;
            for _ in 0..ops {
                let t = Instant::now();
                let got = big_hit(&settings[v].1);
                samples[v].push(t.elapsed());
                black_box(got);
            }
        }
    }
    let m: Vec<f64> = samples.iter().map(|s| s.quantile(0.5)).collect();
    let p99: Vec<f64> = samples.iter().map(|s| s.quantile(0.99)).collect();
    let kb = |n: u64| format!("{:.1} KB", n as f64 / 1024.0);
    b.row(
        "14",
        format!(
            "100 KB value ({} transactions), bytes stored: JSON + LZ4 (ratio: how many times fewer)",
            list.len()
        ),
        kb(bytes[1]),
        format!("{} plain JSON", kb(bytes[0])),
        bytes[0] as f64 / bytes[1] as f64,
        "≥ 3.0",
    );
    b.row(
        "14",
        "… hit latency, sync `run`, median: JSON + LZ4 vs JSON",
        us(m[1]),
        us(m[0]),
        m[1] / m[0],
        "≤ 1.2",
    );
    b.row(
        "14",
        "… p99",
        us(p99[1]),
        us(p99[0]),
        p99[1] / p99[0],
        "report",
    );
    b.row(
        "14",
        "… bytes stored: MessagePack + LZ4 vs plain JSON (ratio: how many times fewer)",
        kb(bytes[3]),
        format!("{} (MessagePack alone: {})", kb(bytes[0]), kb(bytes[2])),
        bytes[0] as f64 / bytes[3] as f64,
        "report",
    );
    b.row(
        "14",
        "… hit latency, median: MessagePack + LZ4 vs JSON",
        us(m[3]),
        format!("{} (MessagePack alone: {})", us(m[0]), us(m[2])),
        m[3] / m[0],
        "report",
    );
    b.notes.push(format!(
        "Benchmark 14: the 1 KB profile is {json_len} bytes as JSON and {mp_len} as MessagePack \
         (`rmp_serde::to_vec_named`, fields by name, behind a 3-byte marker); `cached` stores it \
         by position. 14b's hit medians: JSON {}, JSON + LZ4 {}, MessagePack {}, MessagePack + LZ4 {}; \
         stored: {} B, {} B, {} B, {} B.",
        us(m[0]),
        us(m[1]),
        us(m[2]),
        us(m[3]),
        bytes[0],
        bytes[1],
        bytes[2],
        bytes[3],
    ));
}

// ---------------------------------------------------------------- 11: sliding expiry

fn crate_sliding_hit_sync(cache: &Cache, user_id: i64) -> Profile {
    Cacheable::new(TEMPLATE)
        .ttl(TTL_SECS)
        .sliding(true)
        .on(cache)
        .run(ctx! { user_id }, || source(user_id))
}

async fn crate_sliding_hit_async(cache: &Cache, user_id: i64) -> Profile {
    Cacheable::new(TEMPLATE)
        .ttl(TTL_SECS)
        .sliding(true)
        .on(cache)
        .run_async(ctx! { user_id }, || async move { source(user_id) })
        .await
}

/// Benchmark 11: a sliding hit (`PTTL` + `GETEX … PX` in one round trip) against a plain hit
/// (`GET`), same keys, same cache, sync and async, in interleaved rounds; and the server's
/// own floor: a bare `GETEX … PX` against a bare `GET` on a blocking connection.
fn sliding(b: &mut Bench, server: &RedisServer, cache: &Cache) {
    for id in 0..HOT_KEYS {
        // Benchmark 10 overwrites a key behind the cache's back: a forced refresh puts the
        // source's value back first.
        let fresh = Cacheable::new(TEMPLATE)
            .ttl(TTL_SECS)
            .refresh(true)
            .on(cache)
            .run(ctx! { user_id = id }, || source(id));
        assert_eq!(fresh, source(id));
        assert_eq!(crate_hit_sync(cache, id), source(id));
    }
    let before = cache.stats().sliding_hits;
    let ops = if b.quick { 200 } else { SEQ_OPS_PER_ROUND };
    let mut samples = [Samples::default(), Samples::default()];
    for r in 0..b.rounds(b.rounds) {
        for v in order(r) {
            for n in 0..ops {
                let id = n as i64 % HOT_KEYS;
                let t = Instant::now();
                let p = match v {
                    0 => crate_sliding_hit_sync(cache, id),
                    _ => crate_hit_sync(cache, id),
                };
                samples[v].push(t.elapsed());
                black_box(p);
            }
        }
    }
    let (m0, m1) = (samples[0].quantile(0.5), samples[1].quantile(0.5));
    b.row(
        "11",
        "Sliding hit vs plain hit, Redis, 1 KB value, sync `run`, median",
        us(m0),
        format!("{} (`run` without `sliding`)", us(m1)),
        m0 / m1,
        "≤ 1.05",
    );
    let rt = current_thread();
    let rounds = b.rounds(b.rounds);
    let samples = rt.block_on(async {
        let mut samples = [Samples::default(), Samples::default()];
        for r in 0..rounds {
            for v in order(r) {
                for n in 0..ops {
                    let id = n as i64 % HOT_KEYS;
                    let t = Instant::now();
                    let p = match v {
                        0 => crate_sliding_hit_async(cache, id).await,
                        _ => crate_hit_async(cache, id).await,
                    };
                    samples[v].push(t.elapsed());
                    black_box(p);
                }
            }
        }
        samples
    });
    let (m0, m1) = (samples[0].quantile(0.5), samples[1].quantile(0.5));
    b.row(
        "11",
        "Sliding hit vs plain hit, Redis, 1 KB value, `run_async`, median",
        us(m0),
        format!("{} (`run_async` without `sliding`)", us(m1)),
        m0 / m1,
        "≤ 1.05",
    );
    let slid = cache.stats().sliding_hits - before;
    assert_eq!(
        slid as usize,
        2 * ops * rounds,
        "every sliding call was a sliding hit"
    );
    let mut con = server.client();
    let ttl_ms = TTL_SECS * 1000;
    let mut samples = [Samples::default(), Samples::default()];
    for r in 0..rounds {
        for v in order(r) {
            for n in 0..ops {
                let key = bare_key(n as i64 % HOT_KEYS);
                let t = Instant::now();
                let bytes: Option<Vec<u8>> = match v {
                    0 => redis::cmd("GETEX")
                        .arg(&key)
                        .arg("PX")
                        .arg(ttl_ms)
                        .query(&mut con),
                    _ => redis::cmd("GET").arg(&key).query(&mut con),
                }
                .expect("bare read");
                samples[v].push(t.elapsed());
                assert!(bytes.is_some());
            }
        }
    }
    let (m0, m1) = (samples[0].quantile(0.5), samples[1].quantile(0.5));
    b.row(
        "11",
        "… the server's floor: bare `GETEX … PX` vs bare `GET`, blocking, median",
        us(m0),
        us(m1),
        m0 / m1,
        "report",
    );
}

// ---------------------------------------------------------------- 16: batch reads

const BATCH_TEMPLATE: &str = "batch:<<id>>";
const BATCH_SIZE: i64 = 100;
/// Of each batch, the items already cached; the others are new ids.
const BATCH_CACHED: i64 = 90;
const BATCHES_PER_ROUND: usize = 20;

/// The next ids never asked for before, for the misses of one batch.
fn fresh_ids(n: i64) -> Vec<i64> {
    static NEXT: AtomicU64 = AtomicU64::new(10_000_000);
    let first = NEXT.fetch_add(n as u64, Ordering::Relaxed) as i64;
    (first..first + n).collect()
}

/// 90 cached ids and 10 new ones, spread through the batch.
fn mixed_ids() -> Vec<i64> {
    let mut fresh = fresh_ids(BATCH_SIZE - BATCH_CACHED).into_iter();
    (0..BATCH_SIZE)
        .map(|i| {
            if i % 10 == 9 {
                fresh.next().unwrap()
            } else {
                i
            }
        })
        .collect()
}

/// One `run_many` of `ids`; counts the computation's calls.
fn crate_batch(cache: &Cache, ids: &[i64], computations: &AtomicU64) -> Vec<Profile> {
    let contexts = ids.iter().map(|id| ctx! { id = *id }).collect();
    Cacheable::new(BATCH_TEMPLATE)
        .ttl(TTL_SECS)
        .on(cache)
        .run_many(contexts, |missing| {
            computations.fetch_add(1, Ordering::Relaxed);
            missing.iter().map(|&i| source(ids[i])).collect()
        })
}

/// The same ids by one `run` each, one after another; counts the computations.
fn crate_singles(cache: &Cache, ids: &[i64], computations: &AtomicU64) -> Vec<Profile> {
    ids.iter()
        .map(|&id| {
            Cacheable::new(BATCH_TEMPLATE)
                .ttl(TTL_SECS)
                .on(cache)
                .run(ctx! { id }, || {
                    computations.fetch_add(1, Ordering::Relaxed);
                    source(id)
                })
        })
        .collect()
}

/// A bare `MGET` of the same keys and `serde_json` of the values found.
fn bare_mget(con: &mut redis::Connection, ids: &[i64]) -> Vec<Option<Profile>> {
    let keys: Vec<String> = ids
        .iter()
        .map(|id| format!("{PREFIX}:batch:{id}"))
        .collect();
    let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query(con).unwrap();
    values
        .into_iter()
        .map(|v| v.map(|b| serde_json::from_slice(&b).unwrap()))
        .collect()
}

/// Benchmark 16: a batch of 100 ids, 90 of them cached, against the same 100 ids by single
/// calls and against a bare `MGET` + decode; 100 cold ids (computations); the batch on the
/// cluster against one server.
fn batch_reads(b: &mut Bench, server: &RedisServer, cache: &Cache) {
    let computations = AtomicU64::new(0);
    let warm: Vec<i64> = (0..BATCH_SIZE).collect();
    crate_batch(cache, &warm, &computations);
    let mut bare = server.client();
    let rounds = b.rounds(b.rounds);
    let mut times: [Vec<f64>; 3] = Default::default();
    for r in 0..rounds {
        let variants = if r % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for v in variants {
            let mut total = Duration::ZERO;
            for _ in 0..BATCHES_PER_ROUND {
                let ids = mixed_ids();
                let t = Instant::now();
                match v {
                    0 => assert_eq!(crate_batch(cache, &ids, &computations).len(), 100),
                    1 => assert_eq!(crate_singles(cache, &ids, &computations).len(), 100),
                    _ => {
                        let found = bare_mget(&mut bare, &ids);
                        assert_eq!(found.iter().flatten().count(), BATCH_CACHED as usize);
                    }
                }
                total += t.elapsed();
            }
            times[v].push(total.as_secs_f64() * 1e9 / BATCHES_PER_ROUND as f64);
        }
    }
    // The read path alone: every item cached, against the bare MGET of the same keys.
    let mut warm_times: [Vec<f64>; 2] = Default::default();
    for r in 0..rounds {
        for v in order(r) {
            let t = Instant::now();
            for _ in 0..BATCHES_PER_ROUND {
                if v == 0 {
                    black_box(crate_batch(cache, &warm, &computations));
                } else {
                    black_box(bare_mget(&mut bare, &warm));
                }
            }
            warm_times[v].push(t.elapsed().as_secs_f64() * 1e9 / BATCHES_PER_ROUND as f64);
        }
    }
    let [batch, singles, mget] = times.map(|mut t| median(&mut t));
    let [warm_batch, warm_mget] = warm_times.map(|mut t| median(&mut t));
    b.row(
        "16",
        "Batch of 100 ids, 90 cached (`run_many`), vs 100 single `run` calls",
        us(batch),
        format!("{} for 100 `run`", us(singles)),
        batch / singles,
        "≤ 0.05",
    );
    b.row(
        "16",
        "… vs a bare `MGET` of the 100 keys + `serde_json` of the 90 found",
        us(batch),
        format!("{} bare `MGET` + decode", us(mget)),
        batch / mget,
        "≤ 1.3",
    );

    // One miss by a single call: its read, lease, computation and compare-and-set write,
    // against a bare `GET` (nil) and `SET` of the same value.
    let mut miss_times: [Vec<f64>; 2] = Default::default();
    for r in 0..rounds {
        for v in order(r) {
            let ids = fresh_ids(BATCHES_PER_ROUND as i64);
            let t = Instant::now();
            for &id in &ids {
                if v == 0 {
                    black_box(crate_singles(cache, &[id], &computations));
                } else {
                    let key = format!("{PREFIX}:bare-batch:{id}");
                    let found: Option<Vec<u8>> =
                        redis::cmd("GET").arg(&key).query(&mut bare).unwrap();
                    assert!(found.is_none());
                    let value = serde_json::to_vec(&source(id)).unwrap();
                    let () = redis::cmd("SET")
                        .arg(&key)
                        .arg(value)
                        .arg("EX")
                        .arg(TTL_SECS)
                        .query(&mut bare)
                        .unwrap();
                }
            }
            miss_times[v].push(t.elapsed().as_secs_f64() * 1e9 / BATCHES_PER_ROUND as f64);
        }
    }
    let [miss, bare_miss] = miss_times.map(|mut t| median(&mut t));
    b.row(
        "16",
        "One miss, sync `run` (read, lease, compute, compare-and-set write)",
        us(miss),
        format!("{} bare `GET` + `SET`", us(bare_miss)),
        miss / bare_miss,
        "report",
    );
    b.row(
        "16",
        "… 100 ids, all cached, vs a bare `MGET` + `serde_json` of the 100",
        us(warm_batch),
        format!("{} bare `MGET` + decode", us(warm_mget)),
        warm_batch / warm_mget,
        "≤ 1.3",
    );

    // 100 cold ids: how often the source is asked.
    let (before_batch, ids) = (computations.load(Ordering::Relaxed), fresh_ids(BATCH_SIZE));
    crate_batch(cache, &ids, &computations);
    let by_batch = computations.load(Ordering::Relaxed) - before_batch;
    let before_singles = computations.load(Ordering::Relaxed);
    crate_singles(cache, &fresh_ids(BATCH_SIZE), &computations);
    let by_singles = computations.load(Ordering::Relaxed) - before_singles;
    b.row(
        "16",
        "100 cold ids: computations (queries to the source)",
        format!("{by_batch} (`run_many`)"),
        format!("{by_singles} (100 `run`)"),
        by_batch as f64 / by_singles as f64,
        "≤ 0.01",
    );

    #[cfg(feature = "cluster")]
    {
        let cluster = support::RedisCluster::start();
        let clustered =
            Cache::new(Config::from_url(&cluster.url()).unwrap().prefix(PREFIX)).unwrap();
        crate_batch(&clustered, &warm, &computations);
        let mut times: [Vec<f64>; 2] = Default::default();
        for r in 0..rounds {
            for v in order(r) {
                let on = if v == 0 { &clustered } else { cache };
                let t = Instant::now();
                for _ in 0..BATCHES_PER_ROUND {
                    assert_eq!(crate_batch(on, &mixed_ids(), &computations).len(), 100);
                }
                times[v].push(t.elapsed().as_secs_f64() * 1e9 / BATCHES_PER_ROUND as f64);
            }
        }
        let [on_cluster, on_server] = times.map(|mut t| median(&mut t));
        b.row(
            "16",
            "… the same batch on a cluster (3 primaries) vs one server",
            us(on_cluster),
            format!("{} on one server", us(on_server)),
            on_cluster / on_server,
            "report",
        );
        assert_eq!(clustered.stats().errors, 0, "cluster batch errors");
    }
    assert_eq!(cache.stats().errors, 0, "batch errors");
}

// ---------------------------------------------------------------- 8: build time

/// Benchmark 8: runs `scripts/bench-build-time.sh` and reads its `build-time` lines.
fn build_time(b: &mut Bench) {
    if std::env::var("CACHEABLE_BENCH_BUILD").as_deref() == Ok("0") {
        b.notes
            .push("Benchmark 8 was skipped (CACHEABLE_BENCH_BUILD=0).".into());
        return;
    }
    let script = repo_root().join("scripts/bench-build-time.sh");
    eprintln!("  [8] clean builds of three tiny crates (a few minutes)…");
    let out = Command::new("bash")
        .arg(&script)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run scripts/bench-build-time.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    // Variant -> (wall seconds, CPU seconds), or why it did not build.
    let mut secs: HashMap<&str, Result<(f64, f64), String>> = HashMap::new();
    for line in text.lines() {
        let mut words = line.splitn(3, ' ');
        if let (Some("build-time"), Some(variant), Some(rest)) =
            (words.next(), words.next(), words.next())
        {
            let figures = rest
                .split_once(' ')
                .and_then(|(w, c)| Some((w.parse::<f64>().ok()?, c.parse::<f64>().ok()?)));
            secs.insert(
                variant,
                figures.ok_or_else(|| rest.trim_start_matches("unavailable ").to_string()),
            );
        }
    }
    let cached = match secs.get("cached") {
        Some(Ok(s)) => *s,
        other => {
            b.notes.push(format!(
                "Benchmark 8: the `cached` crate did not build: {other:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            return;
        }
    };
    for (variant, what) in [
        (
            "cache_fn",
            "Clean build, tiny crate with one `cache_fn!` function",
        ),
        (
            "builder",
            "Clean build, tiny crate with one `Cacheable` builder function",
        ),
    ] {
        match secs.get(variant) {
            Some(Ok((wall, cpu))) => b.row(
                "8",
                what,
                format!("{cpu:.1} s CPU ({wall:.1} s wall)"),
                format!(
                    "{:.1} s CPU ({:.1} s wall) `#[concurrent_cached]` (ex-`#[io_cached]`)",
                    cached.1, cached.0
                ),
                cpu / cached.1,
                "report",
            ),
            other => {
                let why = match other {
                    Some(Err(e)) => e.clone(),
                    _ => "no result".into(),
                };
                b.rows.push(Row {
                    id: "8",
                    what: what.into(),
                    ours: "n/a".into(),
                    baseline: format!("{:.1} s CPU `#[concurrent_cached]`", cached.1),
                    ratio: "n/a".into(),
                    target: "report",
                    verdict: format!("not measured: `{}`", why.replace('`', "'")),
                });
            }
        }
    }
}

// ---------------------------------------------------------------- the plot

/// Cumulative distributions of per-op hit latency, one panel per benchmark.
fn plot(panels: &[(&str, [(&str, &Samples); 2])]) -> String {
    let (pw, ph, ml, mt, mb, gap) = (420.0, 260.0, 60.0, 40.0, 50.0, 40.0);
    let width = ml + panels.len() as f64 * (pw + gap) + 20.0;
    let height = mt + ph + mb + 30.0;
    let colors = ["#d62728", "#1f77b4"];
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    for (i, (title, series)) in panels.iter().enumerate() {
        let x0 = ml + i as f64 * (pw + gap);
        let sorted: Vec<Vec<u64>> = series.iter().map(|(_, s)| s.sorted()).collect();
        let lo = sorted
            .iter()
            .map(|s| quantile(s, 0.001))
            .fold(f64::INFINITY, f64::min);
        let hi = sorted
            .iter()
            .map(|s| quantile(s, 0.995))
            .fold(0.0, f64::max);
        let (lo, hi) = (
            (lo / 1000.0).floor(),
            (hi / 1000.0).ceil().max(lo / 1000.0 + 1.0),
        );
        let sx = |ns: f64| x0 + ((ns / 1000.0 - lo) / (hi - lo)).clamp(0.0, 1.0) * pw;
        let sy = |q: f64| mt + (1.0 - q) * ph;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{title}</text>"#,
            x0 + pw / 2.0,
            mt - 15.0
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{x0}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
        );
        for k in 0..=5 {
            let q = k as f64 / 5.0;
            let y = sy(q);
            let _ = writeln!(
                svg,
                r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{:.0}%</text>"##,
                x0 + pw,
                x0 - 5.0,
                y + 4.0,
                q * 100.0
            );
            let us = lo + (hi - lo) * q;
            let x = x0 + q * pw;
            let _ = writeln!(
                svg,
                r##"<line x1="{x}" y1="{mt}" x2="{x}" y2="{}" stroke="#eee"/><text x="{x}" y="{}" text-anchor="middle">{us:.0}</text>"##,
                mt + ph,
                mt + ph + 16.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">latency per hit (µs); y: share of hits at most that slow</text>"#,
            x0 + pw / 2.0,
            mt + ph + 36.0
        );
        for (j, ((name, _), s)) in series.iter().zip(&sorted).enumerate() {
            let mut points = String::new();
            for k in 0..=400 {
                let q = k as f64 / 400.0;
                let v = quantile(s, q);
                if v / 1000.0 > hi {
                    break;
                }
                let _ = write!(points, "{:.1},{:.1} ", sx(v), sy(q));
            }
            let _ = writeln!(
                svg,
                r#"<polyline points="{points}" fill="none" stroke="{}" stroke-width="2"/>"#,
                colors[j]
            );
            let ly = mt + 20.0 + j as f64 * 18.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{name}: median {}, p99 {}</text>"#,
                x0 + pw - 250.0,
                x0 + pw - 230.0,
                colors[j],
                x0 + pw - 225.0,
                ly + 4.0,
                us_short(quantile(s, 0.5)),
                us_short(quantile(s, 0.99)),
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn us_short(ns: f64) -> String {
    format!("{:.1} µs", ns / 1000.0)
}

// ---------------------------------------------------------------- the machine

/// Today's date (UTC) as YYYY-MM-DD, without a date crate.
fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn machine(server: &RedisServer) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut server.client())
        .unwrap_or_default();
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), Redis {version} (private `redis-server` on 127.0.0.1, started by the bench), {rustc}, load average at start {load}"
    )
}

/// The repository's root: this bench lives in its `dev/` workspace member.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("bench")
}

// ---------------------------------------------------------------- main

// ---------------------------------------------------------------- 17: a slow source

/// Requests per second of benchmark 17's open-loop load, and how long it runs per variant.
const SLOW_RATE: u64 = 1_000;

/// One variant of benchmark 17: for `secs` seconds, a request every millisecond, each a
/// task of its own (so that a slow answer never delays the next request), to a hot key with
/// a TTL of 500 ms and a stale-if-error window, whose source takes 2 s every 10th
/// computation (`slow`; otherwise it answers at once). Returns each request's latency (ns)
/// from its start, sorted: from when its tick fired (the timer's own lateness, up to a
/// millisecond, is left out; a slow answer still delays no other request).
fn slow_source_latencies(
    cache: &Cache,
    key: &'static str,
    soft: Option<Duration>,
    slow: bool,
    secs: u64,
) -> Vec<u64> {
    let rt = multi_thread();
    let computations = std::sync::Arc::new(AtomicU64::new(0));
    let latencies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    rt.block_on(async {
        let started = tokio::time::Instant::now();
        let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / SLOW_RATE));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = Vec::new();
        while started.elapsed() < Duration::from_secs(secs) {
            ticks.tick().await;
            let scheduled = std::time::Instant::now();
            let (cache, computations, latencies) =
                (cache.clone(), computations.clone(), latencies.clone());
            tasks.push(tokio::spawn(async move {
                let mut builder = Cacheable::new(key)
                    .ttl(Duration::from_millis(500))
                    .stale_if_error(3_600);
                if let Some(soft) = soft {
                    builder = builder.soft_timeout(soft);
                }
                let v: Profile = builder
                    .on(&cache)
                    .run_detached_async(ctx! { id = 1 }, move || async move {
                        let n = computations.fetch_add(1, Ordering::Relaxed);
                        if slow && n % 10 == 9 {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        source(1)
                    })
                    .await;
                black_box(v);
                let took = scheduled.elapsed().as_nanos() as u64;
                latencies.lock().unwrap().push(took);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let mut v = std::mem::take(&mut *latencies.lock().unwrap());
    v.sort_unstable();
    v
}

/// Benchmark 17: the p99 latency of a hot key whose source takes 2 s every 10th
/// computation, with and without a 10 ms soft timeout, against the p99 of the same load on
/// a key whose source is never slow (hits, and a computation every 500 ms).
fn slow_source(b: &mut Bench) {
    let cache = Cache::new(
        Config::from_url(REDIS_URL.get().unwrap())
            .unwrap()
            .prefix(format!("{PREFIX}-slow")),
    )
    .unwrap();
    let secs = if b.quick { 6 } else { 20 };
    let soft = Some(Duration::from_millis(10));
    let fast = slow_source_latencies(&cache, "fast:<<id>>", soft, false, secs);
    let with = slow_source_latencies(&cache, "softened:<<id>>", soft, true, secs);
    let without = slow_source_latencies(&cache, "stalled:<<id>>", None, true, secs);
    let ms = |ns: f64| format!("{:.2} ms", ns / 1e6);
    let p99 = |v: &[u64]| quantile(v, 0.99);
    b.row(
        "17",
        "p99 of a hot key whose source takes 2 s every 10th computation, 10 ms soft timeout, vs the p99 of one whose source is never slow",
        ms(p99(&with)),
        format!("{} never slow", ms(p99(&fast))),
        p99(&with) / p99(&fast),
        "≤ 1.5",
    );
    b.row(
        "17",
        "… the same without the soft timeout",
        ms(p99(&without)),
        format!("{} never slow", ms(p99(&fast))),
        p99(&without) / p99(&fast),
        "report",
    );
    let line = |name: &str, v: &[u64]| {
        format!(
            "{name}: {} requests, p50 {}, p99 {}, p99.9 {}, max {}",
            v.len(),
            ms(quantile(v, 0.5)),
            ms(quantile(v, 0.99)),
            ms(quantile(v, 0.999)),
            ms(quantile(v, 1.0))
        )
    };
    b.notes.push(format!(
        "Benchmark 17 ({SLOW_RATE} requests/s for {secs} s per variant, open loop, each from when its tick fired; TTL 500 ms, stale-if-error 1 h, `run_detached_async`): {}; {}; {}.",
        line("never slow", &fast),
        line("slow, 10 ms soft timeout", &with),
        line("slow, no soft timeout", &without)
    ));
}

// ---------------------------------------------------------------- 18: fan-out behind a link

/// What the link in front of each server adds, each way.
#[cfg(feature = "cluster")]
const LINK_DELAY: Duration = Duration::from_millis(1);

/// TCP proxies that hold every chunk [`LINK_DELAY`] in each direction, as a network
/// between the client and its servers would; on a runtime of their own.
#[cfg(feature = "cluster")]
struct Links {
    rt: tokio::runtime::Runtime,
}

#[cfg(feature = "cluster")]
impl Links {
    fn new() -> Links {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        Links { rt }
    }

    /// A proxy on a free port in front of `127.0.0.1:upstream`; its port.
    fn add(&self, upstream: u16) -> u16 {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        self.rt.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    tokio::spawn(delayed(from_client, to_server));
                    tokio::spawn(delayed(from_server, to_client));
                });
            }
        });
        port
    }
}

/// Copies `from` to `to`, each chunk [`LINK_DELAY`] after it was read, in order.
#[cfg(feature = "cluster")]
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        let at = tokio::time::Instant::now() + LINK_DELAY;
        if tx.send((at, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// A cluster of 3 primaries whose nodes announce a proxy's port ([`Links`]) for clients;
/// each node's own port, and its proxy's.
#[cfg(feature = "cluster")]
fn cluster_behind(links: &Links) -> (Vec<RedisServer>, HashMap<u16, u16>) {
    let mut nodes = Vec::new();
    let mut proxies = HashMap::new();
    while nodes.len() < 3 {
        let port = support::free_port();
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
            continue;
        }
        let proxy = links.add(port);
        let (announce, bus) = (proxy.to_string(), (port + 10_000).to_string());
        let announced = [
            "--cluster-announce-port",
            &announce,
            "--cluster-announce-bus-port",
            &bus,
        ];
        let args = [&support::CLUSTER_NODE_ARGS[..], &announced[..]].concat();
        if let Some(node) = RedisServer::try_start_with(port, &args) {
            proxies.insert(port, proxy);
            nodes.push(node);
        }
    }
    support::create_cluster(&nodes, 0).unwrap();
    let started = Instant::now();
    while !nodes
        .iter()
        .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "cluster not ok"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (nodes, proxies)
}

/// Benchmark 18: pattern invalidation of 10,000 of 1,000,000 keys and a batch read of 100
/// cached keys, on a cluster of 3 primaries against one server, every server behind a link
/// that adds [`LINK_DELAY`] each way: the round trip, not the servers' CPU, is what the
/// cluster's concurrent fan-out saves.
#[cfg(feature = "cluster")]
fn fan_out(b: &mut Bench) {
    let links = Links::new();
    let server = RedisServer::start();
    let server_link = links.add(server.port);
    let (nodes, proxies) = cluster_behind(&links);
    let node_ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let direct_of: HashMap<u16, u16> = proxies.iter().map(|(&d, &p)| (p, d)).collect();
    let direct = |announced: u16| direct_of.get(&announced).copied().unwrap_or(announced);
    let cluster_url = format!(
        "redis+cluster://{}",
        proxies
            .values()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let server_url = format!("redis://127.0.0.1:{server_link}/");
    // The link's round trip, by `PING`: through it and not.
    let ping = |url: &str| {
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut took: Vec<f64> = (0..50)
            .map(|_| {
                let start = Instant::now();
                let _: String = redis::cmd("PING").query(&mut con).unwrap();
                start.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        median(&mut took)
    };
    let (linked, bare) = (ping(&server_url), ping(&server.url()));

    // 1,000,000 keys on each store, 10,000 of them user 7's, written past the links.
    let others = INV_TOTAL - INV_MATCHING;
    let other_keys = || (0..others).map(|i| format!("inv:wallets:{}:{i}", 100 + i % 100));
    let matching = || (0..INV_MATCHING).map(|i| format!("inv:wallets:{INV_USER}:{i}"));
    cluster_fill_on(&node_ports, direct, other_keys().chain(matching()));
    let mut con = server.client();
    let fill = redis::Script::new(FILL_LUA);
    let mut first = 0;
    while first < others {
        let last = (first + 100_000).min(others) - 1;
        let _: u64 = fill.arg(first).arg(last).arg("").invoke(&mut con).unwrap();
        first = last + 1;
    }
    let refill = |con: &mut redis::Connection, cluster: bool| {
        if cluster {
            cluster_fill_on(&node_ports, direct, matching());
        } else {
            let n: u64 = fill
                .arg(0)
                .arg(INV_MATCHING - 1)
                .arg(INV_USER)
                .invoke(con)
                .unwrap();
            assert_eq!(n, INV_MATCHING);
        }
    };
    refill(&mut con, false);
    let config = |url: &str, prefix: &str| {
        Config::from_url(url)
            .unwrap()
            .prefix(prefix)
            .scan_count(SCAN_COUNT)
            .op_timeout(Duration::from_secs(5))
    };
    let caches = [
        Cache::new(config(&cluster_url, "inv")).unwrap(),
        Cache::new(config(&server_url, "inv")).unwrap(),
    ];
    let mut ms: [Vec<f64>; 2] = Default::default();
    for r in 0..b.rounds(6) {
        for v in order(r) {
            let start = Instant::now();
            let deleted = Invalidate::new(["wallets:<<user_id>>:*"])
                .on(&caches[v])
                .now(ctx! { user_id = INV_USER })
                .unwrap();
            ms[v].push(start.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(deleted, INV_MATCHING, "variant {v} deleted {deleted}");
            refill(&mut con, v == 0);
        }
    }
    let [mut c, mut s] = ms;
    let (c, s) = (median(&mut c), median(&mut s));
    b.row(
        "18",
        "Pattern invalidation, 10,000 of 1,000,000 keys, behind a 1 ms link: cluster (3 primaries) vs one server",
        format!("{c:.0} ms"),
        format!("{s:.0} ms on one server"),
        c / s,
        "≤ 0.5",
    );

    // A batch of 100 cached keys, read on each.
    let caches = [
        Cache::new(config(&cluster_url, PREFIX)).unwrap(),
        Cache::new(config(&server_url, PREFIX)).unwrap(),
    ];
    let computations = AtomicU64::new(0);
    let ids: Vec<i64> = (0..BATCH_SIZE).collect();
    for cache in &caches {
        crate_batch(cache, &ids, &computations);
    }
    let warm = computations.load(Ordering::Relaxed);
    let mut us_: [Vec<f64>; 2] = Default::default();
    for r in 0..b.rounds(b.rounds) {
        for v in order(r) {
            let start = Instant::now();
            for _ in 0..BATCHES_PER_ROUND {
                black_box(crate_batch(&caches[v], &ids, &computations));
            }
            us_[v].push(start.elapsed().as_secs_f64() * 1e6 / BATCHES_PER_ROUND as f64);
        }
    }
    assert_eq!(
        computations.load(Ordering::Relaxed),
        warm,
        "a cached batch computed"
    );
    let [mut c, mut s] = us_;
    let (c, s) = (median(&mut c), median(&mut s));
    b.row(
        "18",
        "Batch read of 100 cached keys (`run_many`), behind a 1 ms link: cluster (3 primaries) vs one server",
        format!("{c:.0} µs"),
        format!("{s:.0} µs on one server"),
        c / s,
        "≤ 1.2",
    );
    b.notes.push(format!(
        "Benchmark 18: every server behind a proxy that holds each chunk {} ms each way (the cluster's nodes announce their proxy's port); a `PING` took {:.0} µs through it and {:.0} µs without (medians of 50).",
        LINK_DELAY.as_millis(),
        linked,
        bare
    ));
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and expects a
    // quick run, which this harness does not have: it only runs under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("compare: run with `cargo bench` (skipped)");
        return;
    }
    let started = Instant::now();
    let quick = std::env::var("CACHEABLE_BENCH_QUICK").as_deref() == Ok("1");
    let mut b = Bench {
        rounds: 30,
        quick,
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let server = RedisServer::start();
    REDIS_URL.set(server.url()).unwrap();
    let machine = machine(&server);
    eprintln!("compare: {machine}");
    let size = serde_json::to_vec(&source(1)).unwrap().len();
    eprintln!("compare: the cached value is {size} bytes of JSON");

    let cache = Cache::new(Config::from_url(&server.url()).unwrap().prefix(PREFIX)).unwrap();
    let only = std::env::var("CACHEABLE_BENCH_ONLY").unwrap_or_default();
    let wanted = |n: &str| only.is_empty() || only.split(',').any(|o| o.trim() == n);
    let [mut async_samples, mut sync_samples]: [[Samples; 2]; 2] = Default::default();
    if wanted("1") {
        async_samples = seq_async(&mut b, &server, &cache);
    }
    if wanted("2") {
        sync_samples = seq_sync(&mut b, &server, &cache);
    }
    if wanted("3") {
        concurrent(&mut b, &server, &cache);
    }
    if wanted("4") {
        rendering(&mut b);
    }
    if wanted("5") {
        stampede(&mut b, &cache);
    }
    let stats = cache.stats();
    if wanted("6") {
        invalidation(&mut b, &server);
    }
    if wanted("7") {
        embedded(&mut b);
    }
    if wanted("10") {
        near(&mut b, &server, &cache);
    }
    if wanted("11") {
        sliding(&mut b, &server, &cache);
    }
    if wanted("14") {
        #[cfg(all(feature = "msgpack", feature = "compress"))]
        codecs(&mut b, &server, &cache);
        #[cfg(not(all(feature = "msgpack", feature = "compress")))]
        b.notes.push(
            "Benchmark 14 needs the `msgpack` and `compress` features: \
             `cargo bench -p cacheable-dev --bench compare --features msgpack,compress`."
                .into(),
        );
    }
    if wanted("8") {
        build_time(&mut b);
    }
    if wanted("12") {
        early_refresh(&mut b, &server);
    }
    if wanted("13") {
        tags_vs_scan(&mut b, &server);
    }
    if wanted("15") {
        huge_tag(&mut b, &server);
    }
    if wanted("16") {
        batch_reads(&mut b, &server, &cache);
    }
    if wanted("17") {
        slow_source(&mut b);
    }
    #[cfg(feature = "cluster")]
    if wanted("18") {
        fan_out(&mut b);
    }
    #[cfg(feature = "cluster")]
    if wanted("9") {
        cluster(&mut b, &server, &cache);
    }

    let mut table = String::new();
    table.push_str("| # | measurement | cacheable | baseline | ratio | target | result |\n");
    table.push_str("|---|---|---|---|---|---|---|\n");
    for r in &b.rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.id, r.what, r.ours, r.baseline, r.ratio, r.target, r.verdict
        );
    }
    let mut report = format!(
        "Measured {} on {machine}.\nValue: {size} bytes of JSON. Ratios are cacheable / baseline, \
         medians of interleaved rounds in one run. Reproduce: `cargo bench -p cacheable-dev --bench compare`.\n\n{table}",
        today()
    );
    let _ = writeln!(
        report,
        "\nCache counters after benchmarks 1–5: {} hits, {} misses, {} errors.",
        stats.hits, stats.misses, stats.errors
    );
    for note in &b.notes {
        let _ = writeln!(report, "\n{note}");
    }
    let _ = writeln!(
        report,
        "\nWhole bench: {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    println!("\n{report}");

    let dir = out_dir();
    std::fs::create_dir_all(&dir).expect("create target/bench");
    std::fs::write(dir.join("report.md"), &report).expect("write report.md");
    if async_samples[0].0.is_empty() || sync_samples[0].0.is_empty() {
        return;
    }
    let svg = plot(&[
        (
            "1. Sequential hit, async",
            [
                ("cacheable run_async", &async_samples[0]),
                ("bare GET + decode", &async_samples[1]),
            ],
        ),
        (
            "2. Sequential hit, sync",
            [
                ("cacheable run", &sync_samples[0]),
                ("bare GET + decode", &sync_samples[1]),
            ],
        ),
    ]);
    std::fs::write(dir.join("hit-latency.svg"), svg).expect("write hit-latency.svg");
    eprintln!(
        "compare: wrote {}/report.md and hit-latency.svg",
        dir.display()
    );
}
