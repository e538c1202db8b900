//! Invalidations: what an [`Invalidate`](crate::Invalidate) or a manual delete names goes
//! from the store and from every cache of the process on it, or, when the store cannot be
//! reached, is queued and retried in the background until it lands.
//!
//! Every request is bounded by the operation timeout and retried on its own: a tag of a
//! million keys is read, deleted and forgotten page by page ([`TAG_PAGE`] entries a page),
//! so no Redis command takes more than a page's work and no timeout covers more than one
//! page. A failure part-way leaves what was deleted deleted; the tag is queued and walked
//! again.
//!
//! While an invalidation is queued, no cache of the process on that store and prefix serves
//! what it names, from the near cache or the store, nor writes it: such calls compute
//! without the cache ([`Core::held_back`]). Other processes may serve the old values until it
//! lands; their near caches are then told by Redis, as for any change.

use super::siblings::{Queued, Target};
use super::Core;
use crate::error::{Error, ErrorKind, Result};
use crate::report::chain;
use crate::rt::Mode;
use crate::stats::Counters;
use crate::store::TagCursor;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries of a tag set read, deleted and forgotten per round trip: removing one from a
/// large sorted set costs the server microseconds, and `ZSCAN` may return twice its
/// `COUNT`, so a page of 100 keeps each command to a few milliseconds (BENCHMARKS.md,
/// benchmark 15, measures it).
pub(crate) const TAG_PAGE: usize = 100;

/// The pause before retry `n` (0-based) of one request: 20 ms doubling, at most 1.28 s.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(20 << n.min(6))
}

/// How an invalidation went: the keys it deleted (those of the pages that landed, when it
/// failed part-way), and the error that stopped it with the attempts its last request took.
pub(crate) struct Invalidated {
    pub deleted: u64,
    pub failed: Option<(Error, u32)>,
}

/// Runs `request` until it succeeds, fails otherwise than by a store fault, or has been
/// tried `retries + 1` times; counts its attempts into `attempts`.
async fn attempt<T, F, Fut>(
    mode: Mode,
    retries: u32,
    attempts: &mut u32,
    mut request: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut n = 0;
    loop {
        n += 1;
        *attempts = n;
        match request().await {
            Err(e) if n <= retries && e.is_store_error() => mode.sleep(backoff(n - 1)).await,
            other => return other,
        }
    }
}

impl Core {
    /// Deletes what `target` names from the store (each request tried `retries + 1` times at
    /// most) and from every cache of the process on it; counted in
    /// [`Stats::invalidated`](crate::Stats::invalidated) and, for a store fault, `errors`.
    pub(crate) async fn invalidate(
        &self,
        mode: Mode,
        target: &Target,
        retries: u32,
    ) -> Invalidated {
        let mut attempts = 0;
        let mut deleted = 0;
        let out = match target {
            Target::Key(key) => {
                self.siblings.invalidating(key, false);
                let keys = [key.as_str()];
                let out = attempt(mode, retries, &mut attempts, || {
                    self.backend.delete(mode, &keys)
                })
                .await;
                // Before the invalidation returns, whatever Redis's tracking does.
                self.siblings.changed(key, false);
                out.map(|n| deleted = n)
            }
            Target::Pattern(pattern) => {
                self.siblings.invalidating(pattern, true);
                let out = attempt(mode, retries, &mut attempts, || {
                    self.backend.delete_pattern(mode, pattern)
                })
                .await;
                self.siblings.changed(pattern, true);
                out.map(|n| deleted = n)
            }
            Target::Tag(set) => {
                self.delete_tag(mode, set, retries, &mut attempts, &mut deleted)
                    .await
            }
        };
        Counters::add(&self.counters.invalidated, deleted);
        match out {
            Ok(()) => Invalidated {
                deleted,
                failed: None,
            },
            Err(e) => {
                if e.is_store_error() {
                    Counters::add(&self.counters.errors, 1);
                }
                Invalidated {
                    deleted,
                    failed: Some((e, attempts)),
                }
            }
        }
    }

    /// [`invalidate`](Self::invalidate) of many exact keys at once: one deletion (one round
    /// trip per server, on the cluster to each primary that owns some of them).
    pub(crate) async fn invalidate_keys(
        &self,
        mode: Mode,
        keys: &[String],
        retries: u32,
    ) -> Invalidated {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut attempts = 0;
        self.siblings.invalidating_keys(&keys);
        let out = attempt(mode, retries, &mut attempts, || {
            self.backend.delete(mode, &keys)
        })
        .await;
        // Before the invalidation returns, whatever Redis's tracking does.
        self.siblings.changed_keys(&keys);
        let deleted = *out.as_ref().unwrap_or(&0);
        Counters::add(&self.counters.invalidated, deleted);
        let failed = out.err().map(|e| {
            if e.is_store_error() {
                Counters::add(&self.counters.errors, 1);
            }
            (e, attempts)
        });
        Invalidated { deleted, failed }
    }

    /// Deletes every key recorded in the tag set `set`, a page at a time: the page is read,
    /// the flights of its keys counted as invalidated, the keys deleted, and only then their
    /// entries removed (each only if not re-added meanwhile): a computation that took its
    /// lease after the page was read recorded itself first, and keeps its entry.
    async fn delete_tag(
        &self,
        mode: Mode,
        set: &str,
        retries: u32,
        attempts: &mut u32,
        deleted: &mut u64,
    ) -> Result<()> {
        let mut from = TagCursor::Start;
        let mut server = None;
        loop {
            let page = attempt(mode, retries, attempts, || {
                self.backend.tag_page(mode, set, from.clone(), TAG_PAGE)
            })
            .await?;
            // Another server answered than the walk began on (a failover, a restart): its
            // cursor does not carry over, so the walk starts again there once this page is
            // done (what earlier pages forgot stays forgotten).
            let moved = server.is_some_and(|s| s != page.server);
            server = Some(page.server);
            if !page.entries.is_empty() {
                let keys: Vec<&str> = page.entries.iter().map(|(k, _)| k.as_str()).collect();
                self.siblings.invalidating_keys(&keys);
                let out =
                    attempt(mode, retries, attempts, || self.backend.delete(mode, &keys)).await;
                self.siblings.changed_keys(&keys);
                *deleted += out?;
                attempt(mode, retries, attempts, || {
                    self.backend.tag_forget(mode, set, &page.entries)
                })
                .await?;
            }
            match page.next {
                _ if moved => from = TagCursor::Start,
                Some(next) => from = next,
                None => return Ok(()),
            }
        }
    }

    /// Queues `target`, which could not reach the store (`cause`, after `attempts`), to be
    /// retried in the background; returns the error that tells the caller so.
    pub(crate) fn queue(self: &Arc<Self>, target: Target, cause: Error, attempts: u32) -> Error {
        Counters::add(&self.counters.failed_invalidations, 1);
        Counters::add(&self.counters.queued_invalidations, 1);
        let shown = target.to_string();
        let queued = self.siblings.pending.queue(target);
        let start_worker = match queued {
            Queued::Yes { start_worker } => start_worker,
            Queued::Overflowed {
                start_worker,
                dropped,
            } => {
                log::error!(target: "cacheable", "more than {dropped} invalidations are queued: they are replaced by one invalidation of every key under the prefix, and this process serves nothing from the cache until it lands");
                start_worker
            }
        };
        let tries = if attempts == 1 {
            "1 attempt".to_owned()
        } else {
            format!("{attempts} attempts")
        };
        if let Some(more) = self.faults.allow("invalidation queued", "") {
            let more = if more > 0 {
                format!(" ({more} more queued in the last second)")
            } else {
                String::new()
            };
            log::error!(target: "cacheable", "invalidation of {shown} could not reach the store after {tries}: {}; queued and retried in the background. Until it lands this process serves nothing it names; other processes may serve the old values{more}", chain(&cause));
        }
        if start_worker {
            self.start_worker();
        }
        Error::with_source(
            ErrorKind::Queued,
            format!("invalidation of {shown} queued after {tries}: the store could not be reached; it is retried in the background"),
            cause,
        )
    }

    /// Starts the task that retries this group's queued invalidations until none is left.
    /// It holds this cache (and so its group and its connections) until then: a queued
    /// invalidation outlives the `Cache` that queued it, and a cache built later on the
    /// same store and prefix joins the group and holds its keys back too.
    pub(crate) fn start_worker(self: &Arc<Self>) {
        let core = self.clone();
        crate::rt::handle().spawn(async move { drain(core).await });
    }

    /// Whether a queued invalidation names the call's key or one of its tags: the call is
    /// then answered without the cache (neither read nor written).
    #[inline]
    pub(crate) fn held_back(&self, key: &str, tags: &[String]) -> bool {
        self.siblings.pending.holds_back(key, tags)
    }
}

/// Retries the group's queued invalidations, oldest first, each through the cache that
/// started the worker and then through each other cache of the group (one may reach the
/// store where another cannot: a wrong password, a missing permission), until none is
/// left. One that fails does not hold back the others; after a round in which some failed,
/// it waits (50 ms doubling to 1 s) and starts over, and says once a minute which have
/// waited how long.
async fn drain(core: Arc<Core>) {
    let group = core.siblings.clone();
    let mut pause = Duration::from_millis(50);
    let started = Instant::now();
    let mut landed = 0u64;
    let mut told = Instant::now();
    loop {
        let mut failed = Vec::new();
        for (target, seq) in group.pending.snapshot() {
            let mut last = None;
            let others = group.members();
            let cores =
                std::iter::once(&core).chain(others.iter().filter(|c| !Arc::ptr_eq(c, &core)));
            for c in cores {
                match c.invalidate(Mode::Async, &target, 0).await.failed {
                    None => {
                        last = None;
                        group.pending.landed(&target, seq);
                        landed += 1;
                        break;
                    }
                    Some((e, _)) => last = Some(e),
                }
            }
            if let Some(e) = last {
                failed.push((target, e));
            }
        }
        if failed.is_empty() {
            pause = Duration::from_millis(50);
            if !group.pending.worker_done() {
                log::warn!(target: "cacheable", "{landed} queued invalidations landed, {} ms after the first was queued: the cache serves their keys again", started.elapsed().as_millis());
                return;
            }
            continue;
        }
        if told.elapsed() >= Duration::from_secs(60) {
            told = Instant::now();
            let (target, e) = &failed[0];
            log::error!(target: "cacheable", "{} queued invalidations still cannot land after {} s (the first, of {target}: {}); their keys stay held back in this process", failed.len(), started.elapsed().as_secs(), chain(e));
        }
        crate::rt::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}
