//! The lease keeper: one background thread per process that keeps the leases of running
//! computations alive and gives back those whose computation was abandoned.
//!
//! A lease expires after `lease_ttl` so that a holder which dies cannot block a key for
//! long. A computation that outlives its lease would then lose its write, however long
//! `lease_ttl` is; so while the holder is alive, the keeper renews the lease every third of
//! its TTL, with a compare-and-set that stops as soon as the key holds something else (an
//! invalidation deleted it). A holder that panics or whose future is dropped has its lease
//! deleted at once rather than left to expire.

use crate::engine::{block_on, Mode};
use crate::manager::Cache;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

enum Msg {
    Hold(u64, Held),
    /// The computation ended; `give_back` when the lease should be deleted.
    Done {
        id: u64,
        give_back: bool,
    },
}

struct Held {
    cache: Cache,
    key: String,
    token: Vec<u8>,
    ttl: Duration,
    renew_at: Instant,
}

static KEEPER: Lazy<Mutex<Sender<Msg>>> = Lazy::new(|| {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("cacheable-leases".into())
        .spawn(move || keep(rx))
        .expect("spawn the cacheable lease keeper thread");
    Mutex::new(tx)
});

fn send(msg: Msg) {
    // The keeper only stops when the process does; a failed send then loses nothing.
    let _ = KEEPER.lock().unwrap_or_else(|e| e.into_inner()).send(msg);
}

/// A held lease, registered with the keeper. Dropped without [`finish`](Self::finish), it
/// gives the lease back.
pub(crate) struct LeaseGuard {
    id: u64,
    finished: bool,
}

impl LeaseGuard {
    pub(crate) fn hold(cache: &Cache, key: &str, token: &[u8], ttl: Duration) -> LeaseGuard {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let id = IDS.fetch_add(1, Ordering::Relaxed);
        send(Msg::Hold(
            id,
            Held {
                cache: cache.clone(),
                key: key.to_owned(),
                token: token.to_vec(),
                ttl,
                renew_at: Instant::now() + ttl / 3,
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
            give_back: false,
        });
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.finished {
            send(Msg::Done {
                id: self.id,
                give_back: true,
            });
        }
    }
}

fn keep(rx: Receiver<Msg>) {
    let mut held: HashMap<u64, Held> = HashMap::new();
    loop {
        let next = held.values().map(|h| h.renew_at).min();
        let wait = next.map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(wait) {
            Ok(Msg::Hold(id, h)) => {
                held.insert(id, h);
            }
            Ok(Msg::Done { id, give_back }) => {
                if let Some(h) = held.remove(&id) {
                    if give_back {
                        let backend = &h.cache.inner.backend;
                        if let Err(e) =
                            block_on(backend.delete_if(Mode::Blocking, &h.key, &h.token))
                        {
                            h.cache.report("lease release", &h.key, &e);
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        held.retain(|_, h| {
            if h.renew_at > now {
                return true;
            }
            match block_on(
                h.cache
                    .inner
                    .backend
                    .renew_if(Mode::Blocking, &h.key, &h.token, h.ttl),
            ) {
                Ok(true) => {
                    h.renew_at = now + h.ttl / 3;
                    true
                }
                // The key holds something else now: an invalidation took the lease.
                Ok(false) => false,
                Err(e) => {
                    h.cache.report("lease renewal", &h.key, &e);
                    h.renew_at = now + h.ttl / 6;
                    true
                }
            }
        });
    }
}
