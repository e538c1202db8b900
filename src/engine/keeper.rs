//! The lease keeper: one background thread per process that keeps the leases of running
//! computations alive and gives back leases that nobody holds any more.
//!
//! A lease expires after `lease_ttl` so that a holder which dies cannot block a key for
//! long. A computation that outlives its lease would then lose its write, however long
//! `lease_ttl` is; so while the holder is alive, the keeper renews the lease every third of
//! its TTL, with a compare-and-set that stops as soon as the key holds something else (an
//! invalidation deleted it), and for at most [`MAX_HOLD`] lease times, so that a computation
//! that hangs does not hold its key for ever. A holder that panics or whose future is
//! dropped has its lease deleted at once rather than left to expire; so has a lease whose
//! `SET NX` failed or was abandoned in flight, since it may still land after the caller gave
//! up on it.

use crate::error::Error;
use crate::rt::{block_on, Mode};
use crate::store::{failed_marker, Backend, FAILED_TTL};
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the keeper needs of a cache: its store, and where to report a fault.
pub(crate) trait LeaseHost: Send + Sync {
    fn backend(&self) -> &Backend;
    fn report(&self, what: &'static str, key: &str, err: &Error);
}

/// A cache, as the keeper holds it.
pub(crate) type Host = Arc<dyn LeaseHost>;

/// How many lease times a computation may hold its lease, renewals included.
pub(crate) const MAX_HOLD: u32 = 12;

/// How often a lease that nobody holds is looked for again, until it would have expired.
const GIVE_BACK_RETRY: Duration = Duration::from_millis(200);

enum Msg {
    Track(u64, Tracked),
    /// The computation ended; what becomes of its lease.
    Done {
        id: u64,
        end: End,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// The holder settled the lease itself.
    Settled,
    /// The holder went away (a dropped future): delete the lease.
    GiveBack,
    /// The computation panicked: leave the failure marker, so waiters compute at once.
    Failed,
}

struct Tracked {
    cache: Host,
    key: String,
    token: Vec<u8>,
    ttl: Duration,
    due: Instant,
    job: Job,
}

enum Job {
    /// A running computation's lease: renew it.
    Renew { since: Instant },
    /// A lease nobody holds: delete it (or mark it failed) once it appears, until it would
    /// have expired.
    GiveBack { until: Instant, failed: bool },
}

/// The keeper's messages, in the order they were sent, and when it wakes next.
///
/// Most messages need nothing done before the keeper's next wake-up (a lease taken, whose
/// first renewal is a third of its TTL away; a computation that settled its own lease):
/// they wait here, and the keeper reads them when it wakes. Only a message that needs work
/// sooner (a lease to give back, a renewal due before that wake-up) wakes it, so that a
/// miss does not cost two thread wake-ups.
struct Keeper {
    inbox: Vec<Msg>,
    /// When the keeper wakes next; `None` while it waits for a message.
    wakes: Option<Instant>,
    /// Rings the keeper.
    ring: Sender<()>,
}

static KEEPER: Lazy<Mutex<Keeper>> = Lazy::new(|| {
    let (ring, rung) = mpsc::channel();
    std::thread::Builder::new()
        .name("cacheable-leases".into())
        .spawn(move || keep(rung))
        .expect("spawn the cacheable lease keeper thread");
    Mutex::new(Keeper {
        inbox: Vec::new(),
        wakes: None,
        ring,
    })
});

/// How many messages wake the keeper, whatever their due times.
const INBOX_READ_AT: usize = 256;

fn keeper() -> std::sync::MutexGuard<'static, Keeper> {
    KEEPER.lock().unwrap_or_else(|e| e.into_inner())
}

fn send(msg: Msg) {
    let mut keeper = keeper();
    let urgent = match &msg {
        Msg::Track(_, t) => keeper.wakes.is_none_or(|at| t.due < at),
        Msg::Done { end, .. } => *end != End::Settled,
    };
    keeper.inbox.push(msg);
    // A full inbox is read at once: it holds a copy of each key waiting there.
    if urgent || keeper.inbox.len() >= INBOX_READ_AT {
        // The keeper only stops when the process does; a failed send then loses nothing.
        let _ = keeper.ring.send(());
    }
}

/// How many leases the keeper tracked after its last step (renewals and give-backs).
static KEPT: AtomicU64 = AtomicU64::new(0);

/// How many leases the keeper tracks, as of its last step.
pub(crate) fn kept() -> u64 {
    KEPT.load(Ordering::Relaxed)
}

fn next_id() -> u64 {
    static IDS: AtomicU64 = AtomicU64::new(0);
    IDS.fetch_add(1, Ordering::Relaxed)
}

/// A held lease, registered with the keeper. Dropped without [`finish`](Self::finish), it
/// gives the lease back.
pub(crate) struct LeaseGuard {
    id: u64,
    finished: bool,
}

impl LeaseGuard {
    pub(crate) fn hold(cache: &Host, key: &str, token: &[u8], ttl: Duration) -> LeaseGuard {
        let id = next_id();
        let now = Instant::now();
        send(Msg::Track(
            id,
            Tracked {
                cache: cache.clone(),
                key: key.to_owned(),
                token: token.to_vec(),
                ttl,
                due: now + ttl / 3,
                job: Job::Renew { since: now },
            },
        ));
        LeaseGuard {
            id,
            finished: false,
        }
    }

    /// The holder wrote or released the lease itself: stop renewing it.
    pub(crate) fn finish(mut self) {
        self.finished = true;
        send(Msg::Done {
            id: self.id,
            end: End::Settled,
        });
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.finished {
            let end = if std::thread::panicking() {
                End::Failed
            } else {
                End::GiveBack
            };
            send(Msg::Done { id: self.id, end });
        }
    }
}

/// A lease being asked for. Unless [`settle`](Self::settle)d (the store said whether it
/// was taken), it is given back when dropped: the request failed or was abandoned, and may
/// still land later, with nobody to release it.
pub(crate) struct Pending<'a> {
    cache: &'a Host,
    key: &'a str,
    token: &'a [u8],
    ttl: Duration,
    first_look: Duration,
    settled: bool,
}

impl<'a> Pending<'a> {
    pub(crate) fn new(
        cache: &'a Host,
        key: &'a str,
        token: &'a [u8],
        ttl: Duration,
        first_look: Duration,
    ) -> Self {
        Pending {
            cache,
            key,
            token,
            ttl,
            first_look,
            settled: false,
        }
    }

    pub(crate) fn settle(mut self) {
        self.settled = true;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let now = Instant::now();
        send(Msg::Track(
            next_id(),
            Tracked {
                cache: self.cache.clone(),
                key: self.key.to_owned(),
                token: self.token.to_vec(),
                ttl: self.ttl,
                due: now + self.first_look,
                job: Job::GiveBack {
                    until: now + self.ttl,
                    failed: false,
                },
            },
        ));
    }
}

fn keep(rung: Receiver<()>) {
    let mut tracked: HashMap<u64, Tracked> = HashMap::new();
    loop {
        // The messages sent since the last look, then the next wake-up, set under the
        // inbox's lock so that a sender compares its due time with the one in force.
        let wait = loop {
            let messages = {
                let mut keeper = keeper();
                if keeper.inbox.is_empty() {
                    let next = tracked.values().map(|t| t.due).min();
                    keeper.wakes = next;
                    break next.map_or(Duration::from_secs(3600), |at| {
                        at.saturating_duration_since(Instant::now())
                    });
                }
                std::mem::take(&mut keeper.inbox)
            };
            for msg in messages {
                apply(&mut tracked, msg);
            }
        };
        match rung.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        for msg in std::mem::take(&mut keeper().inbox) {
            apply(&mut tracked, msg);
        }
        KEPT.store(tracked.len() as u64, Ordering::Relaxed);
        // Renewals first: a lease about to expire matters more than one to clean up. Then
        // give-backs, for at most a sweep's budget, so that a slow store cannot hold the
        // renewals of every other cache back for long.
        let started = Instant::now();
        for renew in [true, false] {
            tracked.retain(|_, t| {
                let now = Instant::now();
                if t.due > now || matches!(t.job, Job::Renew { .. }) != renew {
                    return true;
                }
                if !renew && now.duration_since(started) > SWEEP_BUDGET {
                    return true;
                }
                step(t)
            });
        }
    }
}

/// Records one message in what the keeper tracks.
fn apply(tracked: &mut HashMap<u64, Tracked>, msg: Msg) {
    match msg {
        Msg::Track(id, t) => {
            tracked.insert(id, t);
        }
        Msg::Done { id, end } => {
            if let Some(mut t) = tracked.remove(&id) {
                if end != End::Settled {
                    t.job = Job::GiveBack {
                        until: Instant::now() + t.ttl,
                        failed: end == End::Failed,
                    };
                    t.due = Instant::now();
                    tracked.insert(id, t);
                }
            }
        }
    }
}

/// How long one sweep may spend on give-backs before it looks at renewals again.
const SWEEP_BUDGET: Duration = Duration::from_millis(100);

/// Does a tracked lease's due work; false when there is nothing more to do for it.
fn step(t: &mut Tracked) -> bool {
    let backend = t.cache.backend();
    match t.job {
        Job::Renew { since } => {
            if since.elapsed() >= t.ttl.saturating_mul(MAX_HOLD) {
                log::warn!(target: "cacheable", "the computation of {} has held its lease for {MAX_HOLD} lease times: no more renewals, so other callers may take over", t.key);
                return false;
            }
            let renewed = block_on(backend.renew_if(Mode::Blocking, &t.key, &t.token, t.ttl));
            let now = Instant::now();
            match renewed {
                Ok(true) => {
                    t.due = now + t.ttl / 3;
                    true
                }
                // The key holds something else now: an invalidation took the lease.
                Ok(false) => false,
                Err(e) => {
                    t.cache.report("lease renewal", &t.key, &e);
                    t.due = now + t.ttl / 6;
                    true
                }
            }
        }
        Job::GiveBack { until, failed } => {
            let released = if failed {
                let marker = failed_marker(&t.token);
                block_on(backend.set_if(Mode::Blocking, &t.key, &t.token, &marker, FAILED_TTL))
            } else {
                block_on(backend.delete_if(Mode::Blocking, &t.key, &t.token))
            };
            match released {
                Ok(true) => return false,
                Ok(false) => {}
                // An open breaker: nothing was sent, try again later.
                Err(e) if e.kind() == crate::error::ErrorKind::Unavailable => {}
                Err(e) => t.cache.report("lease release", &t.key, &e),
            }
            let now = Instant::now();
            t.due = now + GIVE_BACK_RETRY;
            now < until
        }
    }
}
