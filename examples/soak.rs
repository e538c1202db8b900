//! The soak, and the randomized combination test: calls with every option in any mix, writes
//! and invalidations from two caches of this process and from another process, and faults
//! (kills, restarts, freezes, failovers), against a version oracle that catches any stale
//! read.
//!
//! ```text
//! cargo run --release --example soak -- --minutes 10 [--backend memory|single|cluster|sentinel] [--seed N]
//! cargo run --example soak -- --seconds 20 --backend sentinel
//! ```
//!
//! Each of `KEYS` source records carries a version; a record belongs to a group (its tag
//! when the group is tagged: every read of a tagged group records its key under the group's
//! tag). A writer bumps a record's version, then invalidates it one of many ways: its key, a
//! pattern over its group or its key, its group's tag, a manual delete; through either cache
//! of the process, or through the other process. Once the invalidation returns (done, or
//! queued: then this process serves none of it until it lands) the version is published as
//! invalidated; for the other process's, once it has landed there and a grace period has
//! passed (Redis's tracking message reaches this process's near cache a moment later). A
//! reader notes the invalidated version of its key before its call: a call that returns an
//! older version is a stale read.
//!
//! Each read draws its options: cache A (with the near cache) or B (without), sync or async,
//! the TTL, sliding, `ttl_from` (the record says how long it lives), stale-if-error and
//! stale-while-revalidate windows, early refresh, expiry jitter, a fail-safe throttle, a
//! soft timeout (async, the computation detached), a forced refresh, a bypass, and a
//! computation that fails now and then (a third of the reads sharing the failures of the
//! computations they wait on, some under a hard timeout about twice the query's time); one
//! read in eight is a batch (`run_many`) of 2 to 6 records of one group under those
//! options. Every thread's draws come from the seed, printed
//! first: a failing seed replays the same operations (the interleaving is the machine's).
//!
//! Faults: on one server, SIGKILL and restart, and a 2 s SIGSTOP, each once per period (30 s,
//! or a third of a short run); on the cluster, a primary killed (its replica takes over) and
//! restarted as a replica, and one frozen; on Sentinel, the primary killed (the Sentinels
//! promote the replica) and restarted, and one frozen. The embedded store has none.
//!
//! Prints calls, caller-visible failures, stale reads, latency (p50, p99, max), resident
//! memory and the heap in use; exits non-zero on a stale read or a caller-visible failure,
//! or (runs of 2 minutes or more) when the heap in use at the end is over 110 % of its value
//! after the first minute plus 1 MiB (resident memory, where the allocator does not tell
//! its heap).

#[path = "common/memory.rs"]
mod memory;
#[path = "../tests/support/mod.rs"]
mod support;

use cacheable::{ctx, Cache, Cacheable, Config, Invalidate, Outcome};
use memory::rss_kib;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{RedisCluster, RedisSentinel, RedisServer, Rng};

const KEYS: u64 = 500;
/// Records per group: group `id % GROUPS`; even groups are tagged.
const GROUPS: u64 = 25;
const SYNC_READERS: usize = 4;
const ASYNC_READERS: usize = 4;
const WRITERS: usize = 2;
/// How long a computation takes after it has read its record.
const QUERY_TIME: Duration = Duration::from_millis(1);
/// How long after the other process's invalidation landed this process's near cache may
/// still serve the old value (Redis's tracking message is on its way).
const REMOTE_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone, Serialize, Deserialize)]
struct Record {
    id: u64,
    version: u64,
    /// How long the value lives, for the calls with `ttl_from`.
    life_ms: u64,
    payload: String,
}

fn group(id: u64) -> u64 {
    id % GROUPS
}

fn tagged(g: u64) -> bool {
    g % 2 == 0
}

/// The source of truth: each record's current version; the latest version whose
/// invalidation completed in this process; and the other process's, with when it landed.
struct Source {
    version: Vec<AtomicU64>,
    invalidated: Vec<AtomicU64>,
    remote: Vec<Mutex<(u64, Option<Instant>)>>,
    /// How each record was last invalidated in this process, and when it returned: what a
    /// stale read's report shows.
    last: Vec<Mutex<Option<(String, Instant)>>>,
}

impl Source {
    fn read(&self, id: u64, life_ms: u64) -> Record {
        let version = self.version[id as usize].load(SeqCst);
        Record {
            id,
            version,
            life_ms,
            payload: format!("record {id} at version {version}"),
        }
    }

    /// The oldest version a read of `id` that begins now may return.
    fn floor(&self, id: u64) -> u64 {
        let local = self.invalidated[id as usize].load(SeqCst);
        let (remote, at) = *self.remote[id as usize].lock().unwrap();
        match at {
            Some(at) if at.elapsed() >= REMOTE_GRACE => local.max(remote),
            _ => local,
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
    queued: AtomicU64,
    remote: AtomicU64,
    near_hits: AtomicU64,
    errors_answered: AtomicU64,
}

struct Shared {
    /// With the near cache (when the run asks for it).
    a: Cache,
    /// Without, on the same store and prefix: a sibling of `a`.
    b: Cache,
    source: Source,
    tally: Tally,
    latency: Latency,
    stop: AtomicBool,
    first_stale: Mutex<Option<String>>,
    /// The other process, when the store is shared.
    child: Option<Mutex<Child>>,
}

/// What one read does, drawn from the reader's generator.
#[derive(Clone)]
struct Draw {
    id: u64,
    near: bool,
    ttl: Duration,
    sliding: bool,
    ttl_from: bool,
    life_ms: u64,
    stale_if_error: bool,
    swr: bool,
    early: bool,
    jitter: bool,
    share_failures: bool,
    hard_timeout: bool,
    throttle: bool,
    soft: bool,
    refresh: bool,
    bypass: bool,
    fail: bool,
}

impl Draw {
    fn new(rng: &mut Rng) -> Draw {
        let mut one_in = |n: usize| rng.below(n) == 0;
        let (sliding, ttl_from, stale_if_error, swr, early) =
            (one_in(4), one_in(5), one_in(6), one_in(8), one_in(6));
        let (refresh, bypass, fail, near) = (one_in(60), one_in(60), one_in(25), one_in(2));
        let (jitter, share_failures, hard_timeout) = (one_in(4), one_in(3), one_in(6));
        let (throttle, soft) = (one_in(3), one_in(4));
        let ttl = [1, 3, 60][rng.below(3)];
        Draw {
            id: rng.below(KEYS as usize) as u64,
            near,
            ttl: Duration::from_secs(ttl),
            sliding,
            ttl_from,
            life_ms: [400, 2_000, 60_000][rng.below(3)],
            stale_if_error,
            swr,
            early,
            jitter,
            share_failures,
            hard_timeout,
            throttle,
            soft,
            refresh,
            bypass,
            fail,
        }
    }

    fn builder<'a>(&self, cache: &'a Cache, outcome: &'a mut Outcome) -> Cacheable<'a> {
        let mut b = Cacheable::new("item:<<g>>:<<id>>")
            .ttl(self.ttl)
            .sliding(self.sliding)
            .refresh(self.refresh)
            .bypass(self.bypass)
            .outcome(outcome)
            .on(cache);
        if tagged(group(self.id)) {
            b = b.tags(["group:<<g>>"]);
        }
        if self.ttl_from {
            b = b.ttl_from(|r: &Record| Duration::from_millis(r.life_ms));
        }
        if self.stale_if_error {
            b = b.stale_if_error(2);
        }
        if self.swr {
            b = b.stale_while_revalidate(1);
        }
        if self.early {
            b = b.early_refresh(1.0);
        }
        if self.jitter {
            b = b.jitter(Duration::from_millis(1500));
        }
        if self.throttle {
            // A failure answered with a value past its TTL keeps it answering for this
            // long: it must still never outlive an invalidation.
            b = b.fail_safe_throttle(Duration::from_millis(500));
        }
        if self.hard_timeout {
            // About twice the query: some computations are given up (async, shared).
            b = b.hard_timeout(Duration::from_millis(2));
        }
        b
    }
}

fn cache_of<'a>(shared: &'a Shared, draw: &Draw) -> &'a Cache {
    if draw.near {
        &shared.a
    } else {
        &shared.b
    }
}

/// A read's failure: the source's, or the failure of the computation it waited on.
#[derive(Debug)]
struct Failed;

impl From<cacheable::Error> for Failed {
    fn from(_: cacheable::Error) -> Self {
        Failed
    }
}

fn item(shared: &Shared, draw: &Draw, outcome: &mut Outcome) -> Result<Record, Failed> {
    let (id, g) = (draw.id, group(draw.id));
    let compute = || {
        // A query: the data is read, then the answer takes a while to come back, the
        // window in which an invalidation can race the computation.
        let record = shared.source.read(id, draw.life_ms);
        std::thread::sleep(QUERY_TIME);
        if draw.fail {
            Err(Failed)
        } else {
            Ok(record)
        }
    };
    let builder = draw.builder(cache_of(shared, draw), outcome);
    if draw.share_failures {
        builder.try_run_shared(ctx! { g, id }, compute)
    } else {
        builder.try_run(ctx! { g, id }, compute)
    }
}

/// The async query: the record is read, then the answer takes a while to come back.
async fn query_async(source: &Source, id: u64, life_ms: u64, fail: bool) -> Result<Record, Failed> {
    let record = source.read(id, life_ms);
    tokio::time::sleep(QUERY_TIME).await;
    if fail {
        Err(Failed)
    } else {
        Ok(record)
    }
}

async fn item_async(
    shared: &Arc<Shared>,
    draw: &Draw,
    outcome: &mut Outcome,
) -> Result<Record, Failed> {
    let (id, g) = (draw.id, group(draw.id));
    if draw.soft && !draw.share_failures {
        // A computation that can outlive the call, cut short at a soft timeout about a
        // tenth of the query's time when there is a value to answer with.
        let (owned, life_ms, fail) = (shared.clone(), draw.life_ms, draw.fail);
        return draw
            .builder(cache_of(shared, draw), outcome)
            .soft_timeout(QUERY_TIME / 10)
            .try_run_detached_async(ctx! { g, id }, move || async move {
                query_async(&owned.source, id, life_ms, fail).await
            })
            .await;
    }
    let compute = || query_async(&shared.source, id, draw.life_ms, draw.fail);
    let builder = draw.builder(cache_of(shared, draw), outcome);
    if draw.share_failures {
        builder.try_run_shared_async(ctx! { g, id }, compute).await
    } else {
        builder.try_run_async(ctx! { g, id }, compute).await
    }
}

/// The records of a batch read: `draw`'s record and others of its group (one group, so
/// that the tag rule is the same for every key), some more than once.
fn batch_ids(rng: &mut Rng, draw: &Draw) -> Vec<u64> {
    let g = group(draw.id);
    let mut ids = vec![draw.id];
    for _ in 0..1 + rng.below(5) {
        ids.push(g + GROUPS * rng.below((KEYS / GROUPS) as usize) as u64);
    }
    ids
}

/// A batch read (`run_many`) of `ids` with `draw`'s options; each item's outcome in
/// `outcomes`. Its computation cannot fail (the batch form has no `Err`).
fn batch(shared: &Shared, draw: &Draw, ids: &[u64], outcomes: &mut Vec<Outcome>) -> Vec<Record> {
    let g = group(draw.id);
    let contexts = ids.iter().map(|&id| ctx! { g, id }).collect();
    let mut unused = Outcome::default();
    draw.builder(cache_of(shared, draw), &mut unused)
        .outcomes(outcomes)
        .run_many(contexts, |missing| {
            let records = missing
                .iter()
                .map(|&i| shared.source.read(ids[i], draw.life_ms))
                .collect();
            std::thread::sleep(QUERY_TIME);
            records
        })
}

async fn batch_async(
    shared: &Shared,
    draw: &Draw,
    ids: &[u64],
    outcomes: &mut Vec<Outcome>,
) -> Vec<Record> {
    let g = group(draw.id);
    let contexts = ids.iter().map(|&id| ctx! { g, id }).collect();
    let mut unused = Outcome::default();
    draw.builder(cache_of(shared, draw), &mut unused)
        .outcomes(outcomes)
        .run_many_async(contexts, |missing| {
            let records: Vec<Record> = missing
                .iter()
                .map(|&i| shared.source.read(ids[i], draw.life_ms))
                .collect();
            async move {
                tokio::time::sleep(QUERY_TIME).await;
                records
            }
        })
        .await
}

/// Checks each item of a batch read against the oracle.
fn check_batch(
    shared: &Shared,
    draw: &Draw,
    ids: &[u64],
    floors: &[u64],
    got: Vec<Record>,
    took: Duration,
    outcomes: &[Outcome],
) {
    for (i, record) in got.into_iter().enumerate() {
        let item = Draw {
            id: ids[i],
            ..draw.clone()
        };
        check(shared, &item, floors[i], &Ok(record), took, outcomes[i]);
    }
}

/// Checks one read against the oracle.
fn check(
    shared: &Shared,
    draw: &Draw,
    floor: u64,
    got: &Result<Record, Failed>,
    took: Duration,
    outcome: Outcome,
) {
    let t = &shared.tally;
    t.calls.fetch_add(1, Relaxed);
    shared.latency.record(took);
    if outcome == Outcome::NearHit {
        t.near_hits.fetch_add(1, Relaxed);
    }
    let Ok(got) = got else {
        // The computation failed and no stale value answered: the caller's own error.
        t.errors_answered.fetch_add(1, Relaxed);
        return;
    };
    if got.id != draw.id || got.version < floor {
        t.stale.fetch_add(1, Relaxed);
        let mut first = shared.first_stale.lock().unwrap();
        if first.is_none() {
            let last = shared.source.last[draw.id as usize]
                .lock()
                .unwrap()
                .as_ref()
                .map(|(how, at)| format!("{how}, {:?} ago", at.elapsed()));
            println!(
                "STALE: key {}: version {} < {floor} ({outcome:?}, cache {}, ttl {:?}, sliding {}, ttl_from {}, stale-if-error {}, swr {}, early {}, jitter {}, throttle {}, soft {}, refresh {}, bypass {}); last invalidated: {last:?}",
                draw.id, got.version, if draw.near { "A" } else { "B" }, draw.ttl, draw.sliding, draw.ttl_from, draw.stale_if_error, draw.swr, draw.early, draw.jitter, draw.throttle, draw.soft, draw.refresh, draw.bypass
            );
            *first = Some(format!(
                "key {}: got record {} version {} ({outcome:?}, cache {}, ttl {:?}, sliding {}, ttl_from {}, stale-if-error {}, swr {}, early {}), but version {floor} was invalidated before the read began",
                draw.id, got.id, got.version, if draw.near { "A" } else { "B" }, draw.ttl, draw.sliding, draw.ttl_from, draw.stale_if_error, draw.swr, draw.early
            ));
        }
    }
}

fn sync_reader(shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !shared.stop.load(Relaxed) {
        let draw = Draw::new(&mut rng);
        if rng.below(8) == 0 {
            let ids = batch_ids(&mut rng, &draw);
            let floors: Vec<u64> = ids.iter().map(|&id| shared.source.floor(id)).collect();
            let started = Instant::now();
            let mut outcomes = Vec::new();
            let got = batch(&shared, &draw, &ids, &mut outcomes);
            check_batch(
                &shared,
                &draw,
                &ids,
                &floors,
                got,
                started.elapsed(),
                &outcomes,
            );
            continue;
        }
        let floor = shared.source.floor(draw.id);
        let started = Instant::now();
        let mut outcome = Outcome::default();
        match std::panic::catch_unwind(AssertUnwindSafe(|| item(&shared, &draw, &mut outcome))) {
            Ok(got) => check(&shared, &draw, floor, &got, started.elapsed(), outcome),
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
        let draw = Draw::new(&mut rng);
        if rng.below(8) == 0 {
            let ids = batch_ids(&mut rng, &draw);
            let floors: Vec<u64> = ids.iter().map(|&id| shared.source.floor(id)).collect();
            let started = Instant::now();
            let mut outcomes = Vec::new();
            let got = batch_async(&shared, &draw, &ids, &mut outcomes).await;
            check_batch(
                &shared,
                &draw,
                &ids,
                &floors,
                got,
                started.elapsed(),
                &outcomes,
            );
            continue;
        }
        let floor = shared.source.floor(draw.id);
        let started = Instant::now();
        let mut outcome = Outcome::default();
        let got = item_async(&shared, &draw, &mut outcome).await;
        check(&shared, &draw, floor, &got, started.elapsed(), outcome);
    }
}

/// How a writer invalidates a record.
#[derive(Clone, Copy, Debug)]
enum How {
    Key,
    /// The record's exact key, as a pattern with a glob after its group.
    KeyPattern,
    /// The record's key and another's, by `now_many`.
    Many,
    Group,
    Tag,
    Delete,
    /// Through the other process, as one of the above.
    Remote,
}

/// Invalidates record `id` through `cache`, `how`; returns whether it is done (or queued,
/// which in this process holds as done).
fn invalidate(cache: &Cache, how: How, id: u64) -> Result<(), cacheable::Error> {
    let g = group(id);
    let out = match how {
        How::Key | How::Remote => Invalidate::new(["item:<<g>>:<<id>>"])
            .on(cache)
            .now(ctx! { g, id }),
        How::KeyPattern => Invalidate::new(["item:<<g>>:<<id>>*"])
            .on(cache)
            .now(ctx! { g, id }),
        How::Many => {
            let other = (id + 1) % KEYS;
            let contexts = vec![ctx! { g, id }, ctx! { g = group(other), id = other }];
            Invalidate::new(["item:<<g>>:<<id>>"])
                .on(cache)
                .now_many(contexts)
        }
        How::Group => Invalidate::new(["item:<<g>>:*"]).on(cache).now(ctx! { g }),
        How::Tag => Invalidate::tags(["group:<<g>>"]).on(cache).now(ctx! { g }),
        How::Delete => cache.delete(&format!("item:{g}:{id}")).map(|_| 0),
    };
    match out {
        Ok(_) => Ok(()),
        Err(e) if e.is_queued() => Err(e),
        Err(e) => panic!("an invalidation failed otherwise than by the store: {e:#}"),
    }
}

/// Bumps a record, then invalidates it until done (or queued), then publishes it.
fn writer(shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !shared.stop.load(Relaxed) {
        let id = rng.below(KEYS as usize) as u64;
        let mut how = [
            How::Key,
            How::KeyPattern,
            How::Many,
            How::Group,
            How::Tag,
            How::Delete,
            How::Remote,
        ][rng.below(if shared.child.is_some() { 7 } else { 6 })];
        if matches!(how, How::Tag) && !tagged(group(id)) {
            how = How::Key;
        }
        if matches!(how, How::Group) && rng.below(10) != 0 {
            // A group is 20 keys: most invalidations name one.
            how = How::KeyPattern;
        }
        let cache = if rng.below(2) == 0 {
            &shared.a
        } else {
            &shared.b
        };
        let version = shared.source.version[id as usize].fetch_add(1, SeqCst) + 1;
        if let How::Remote = how {
            let kind = ["key", "tag", "group"][rng.below(3)];
            let kind = if kind == "tag" && !tagged(group(id)) {
                "key"
            } else {
                kind
            };
            let landed = shared
                .child
                .as_ref()
                .unwrap()
                .lock()
                .unwrap()
                .invalidate(kind, id);
            match landed {
                Some(at) => {
                    let mut remote = shared.source.remote[id as usize].lock().unwrap();
                    if remote.0 < version {
                        *remote = (version, Some(at));
                    }
                    shared.tally.remote.fetch_add(1, Relaxed);
                }
                None => return, // the other process is gone: the run is ending
            }
        } else {
            let queued = invalidate(cache, how, id).is_err();
            if queued {
                shared.tally.queued.fetch_add(1, Relaxed);
            }
            let through = if std::ptr::eq(cache, &shared.a) {
                "A"
            } else {
                "B"
            };
            *shared.source.last[id as usize].lock().unwrap() = Some((
                format!(
                    "{how:?} through {through} for version {version}{}",
                    if queued { ", queued" } else { "" }
                ),
                Instant::now(),
            ));
            shared.source.invalidated[id as usize].fetch_max(version, SeqCst);
        }
        shared.tally.invalidations.fetch_add(1, Relaxed);
        std::thread::sleep(Duration::from_millis(rng.below(10) as u64));
    }
}

/// The other process: this program with `--child`, invalidating what it is told on stdin
/// through a cache of its own, and answering once each has landed.
struct Child {
    process: std::process::Child,
    to: std::process::ChildStdin,
    from: std::io::BufReader<std::process::ChildStdout>,
}

impl Child {
    fn spawn(url: &str) -> Child {
        let mut process = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--child", url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the other process");
        let to = process.stdin.take().unwrap();
        let from = std::io::BufReader::new(process.stdout.take().unwrap());
        Child { process, to, from }
    }

    /// Asks for an invalidation; when it landed, or `None` if the child is gone.
    fn invalidate(&mut self, kind: &str, id: u64) -> Option<Instant> {
        writeln!(self.to, "{kind} {id}").ok()?;
        self.to.flush().ok()?;
        let mut line = String::new();
        self.from.read_line(&mut line).ok()?;
        (line.trim() == "landed").then(Instant::now)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// `--child URL`: invalidates each `kind id` line of stdin until it lands, then says so.
fn child(url: &str) {
    let cache = Cache::new(
        Config::from_url(url)
            .unwrap()
            .prefix("soak")
            .op_timeout(Duration::from_millis(250)),
    )
    .unwrap();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let mut parts = line.split(' ');
        let (Some(kind), Some(id)) = (parts.next(), parts.next().and_then(|i| i.parse().ok()))
        else {
            return;
        };
        let how = match kind {
            "tag" => How::Tag,
            "group" => How::Group,
            _ => How::Key,
        };
        // Done, or queued and then landed.
        if invalidate(&cache, how, id).is_err() {
            while cache.stats().pending_invalidations > 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if writeln!(out, "landed").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

enum Servers {
    Memory,
    Single(RedisServer),
    Cluster(RedisCluster),
    Sentinel(RedisSentinel),
}

impl Servers {
    fn url(&self) -> Option<String> {
        match self {
            Servers::Memory => None,
            Servers::Single(s) => Some(s.url()),
            Servers::Cluster(c) => Some(c.url()),
            Servers::Sentinel(s) => Some(s.url()),
        }
    }

    /// The fault due at second `s` of the run (one kill and one freeze per `period`), if any;
    /// returns what it did.
    fn chaos(&mut self, s: u64, period: u64) -> Option<String> {
        let (kill, freeze) = (s % period == 0, s % period == period / 2);
        let round = (s / period) as usize;
        match self {
            Servers::Memory => None,
            Servers::Single(server) if kill => {
                server.restart_in_place();
                Some("killed (SIGKILL) and restarted the server".into())
            }
            Servers::Single(server) if freeze => {
                server.pause();
                std::thread::sleep(Duration::from_secs(2));
                server.resume();
                Some("froze the server (SIGSTOP) for 2 s".into())
            }
            Servers::Cluster(cluster) if kill => {
                let primary = cluster.primaries()[round % 3];
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
            Servers::Cluster(cluster) if freeze => {
                let primary = cluster.primaries()[round % 3];
                let node = cluster.node(primary);
                node.pause();
                std::thread::sleep(Duration::from_secs(2));
                node.resume();
                Some(format!("froze primary {primary} (SIGSTOP) for 2 s"))
            }
            Servers::Sentinel(setup) if kill => {
                let primary = setup.primary_port()?;
                let started = Instant::now();
                setup.kill(primary);
                let new = setup
                    .wait_failover(primary, Duration::from_secs(30))
                    .expect("the Sentinels promote the replica");
                let failover = started.elapsed();
                setup
                    .nodes
                    .iter_mut()
                    .find(|n| n.port == primary)
                    .unwrap()
                    .restart_in_place();
                setup
                    .wait_ready(Duration::from_secs(30))
                    .expect("the old primary rejoins as a replica");
                Some(format!(
                    "killed primary {primary} (SIGKILL): {new} promoted in {:.1} s, {primary} back as its replica after {:.1} s",
                    failover.as_secs_f64(),
                    started.elapsed().as_secs_f64()
                ))
            }
            Servers::Sentinel(setup) if freeze => {
                let primary = setup.primary_port()?;
                setup.node(primary).pause();
                std::thread::sleep(Duration::from_secs(2));
                setup.node(primary).resume();
                Some(format!("froze primary {primary} (SIGSTOP) for 2 s"))
            }
            _ => None,
        }
    }
}

fn main() {
    let mut seconds = 60u64;
    let mut backend = "single".to_owned();
    let mut near = true;
    let mut unchecked = false;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{what} takes a whole number"))
        };
        match arg.as_str() {
            "--child" => return child(&args.next().expect("--child takes the store's URL")),
            "--minutes" => seconds = number("--minutes") * 60,
            "--seconds" => seconds = number("--seconds"),
            "--seed" => seed = number("--seed"),
            // Kept for the older command lines: cache A has the near cache unless --no-near.
            "--near" => near = true,
            "--no-near" => near = false,
            // Turns off the lease compare-and-set: the oracle should then see stale reads
            // (a check of the soak itself, not of the crate).
            "--unchecked-writes" => unchecked = true,
            "--backend" => {
                backend = args.next().unwrap_or_default();
                assert!(
                    ["memory", "single", "cluster", "sentinel"].contains(&backend.as_str()),
                    "--backend takes memory, single, cluster or sentinel, not {backend:?}"
                );
            }
            other => panic!(
                "unknown argument {other}: use --minutes N | --seconds N, --backend memory|single|cluster|sentinel, --seed N, --no-near"
            ),
        }
    }
    println!("soak seed {seed} (--seed {seed} replays each thread's draws)");
    let mut servers = match backend.as_str() {
        "memory" => Servers::Memory,
        "cluster" => Servers::Cluster(RedisCluster::start()),
        "sentinel" => Servers::Sentinel(RedisSentinel::start()),
        _ => Servers::Single(RedisServer::start()),
    };
    let base = match servers.url() {
        Some(url) => Config::from_url(&url).unwrap(),
        None => Config::memory(),
    };
    let mut config = base
        .prefix("soak")
        .op_timeout(Duration::from_millis(250))
        .lease_ttl(Duration::from_millis(500))
        .lease_wait(Duration::from_millis(500));
    if unchecked {
        config = cacheable::__private::unchecked_lease_writes(config);
    }
    let a = Cache::new(if near {
        config.clone().near_cache(10_000)
    } else {
        config.clone()
    })
    .expect("a cache");
    // The embedded store is one per cache: B is A itself there.
    let b = match servers.url() {
        Some(_) => Cache::new(config).expect("a cache"),
        None => a.clone(),
    };
    let child = servers.url().map(|url| Mutex::new(Child::spawn(&url)));
    let shared = Arc::new(Shared {
        a,
        b,
        source: Source {
            version: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
            invalidated: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
            remote: (0..KEYS).map(|_| Mutex::new((0, None))).collect(),
            last: (0..KEYS).map(|_| Mutex::new(None)).collect(),
        },
        tally: Tally::default(),
        latency: Latency::new(),
        stop: AtomicBool::new(false),
        first_stale: Mutex::new(None),
        child,
    });
    println!(
        "soak: {seconds} s on {backend}, cache A {} and cache B without, {} another process, {KEYS} keys in {GROUPS} groups, {SYNC_READERS} sync and {ASYNC_READERS} async readers, {WRITERS} writers",
        if near { "with the near cache" } else { "without the near cache" },
        if shared.child.is_some() { "with" } else { "without" },
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
        let seed = seed.wrapping_add(1 + i as u64);
        threads.push(std::thread::spawn(move || sync_reader(shared, seed)));
    }
    for i in 0..WRITERS {
        let shared = shared.clone();
        let seed = seed.wrapping_add(100 + i as u64);
        threads.push(std::thread::spawn(move || writer(shared, seed)));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..ASYNC_READERS)
        .map(|i| {
            rt.spawn(async_reader(
                shared.clone(),
                seed.wrapping_add(200 + i as u64),
            ))
        })
        .collect();

    let period = 30.min((seconds / 3).max(6));
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
            if let Some(what) = servers.chaos(s, period) {
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
                "[{:>4} s] {} calls in the last 10 s, {} stale, {} failures, resident {} KiB{}, maps {:?}",
                started.elapsed().as_secs(),
                calls - last_calls,
                shared.tally.stale.load(Relaxed),
                shared.tally.failures.load(Relaxed),
                rss_kib(),
                memory::heap_note(),
                cacheable::__private::internal_sizes(&shared.a),
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
    println!(
        "\n== soak result ({:.0} s, seed {seed}, {backend})",
        elapsed.as_secs_f64()
    );
    println!(
        "calls: {calls} ({:.0}/s), {} near hits, {} answered with the computation's error",
        calls as f64 / elapsed.as_secs_f64(),
        t.near_hits.load(Relaxed),
        t.errors_answered.load(Relaxed)
    );
    println!("caller-visible failures: {failures}");
    println!("stale reads: {stale}");
    println!(
        "invalidations: {} ({} through the other process, {} queued while the store was down)",
        t.invalidations.load(Relaxed),
        t.remote.load(Relaxed),
        t.queued.load(Relaxed),
    );
    println!(
        "latency: p50 {:.0} µs, p99 {:.0} µs, max {} µs",
        shared.latency.quantile(0.50),
        shared.latency.quantile(0.99),
        shared.latency.max_us.load(Relaxed)
    );
    println!("stats A: {:?}", shared.a.stats());
    println!("stats B: {:?}", shared.b.stats());
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
        // Judged on the heap in use where the allocator tells it (glibc): resident memory
        // also counts the blocks an allocator keeps after connections are rebuilt on each
        // failover, which a map without a bound would not explain. Elsewhere, on resident
        // memory.
        match (heap_minute, heap_end) {
            (Some(minute), Some(end)) if seconds >= 120 => {
                let allowed = minute + minute / 10 + 1024;
                if end > allowed {
                    println!("FAIL: the heap in use grew from {minute} KiB after the first minute to {end} KiB (allowed {allowed} KiB)");
                    ok = false;
                }
            }
            (None, _) | (_, None) if seconds >= 120 && ratio > 1.10 => {
                println!("FAIL: resident memory grew more than 10 % after the first minute");
                ok = false;
            }
            _ => {}
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
        println!("FAIL (seed {seed})");
        std::process::exit(1);
    }
}
