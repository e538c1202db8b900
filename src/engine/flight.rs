//! In-process single-flight: concurrent callers of one key share one computation.
//!
//! The first caller of a key leads; later ones follow and wait, sync callers on a condvar,
//! async ones on a `Notify`. The leader's guard always ends the flight, on return, on
//! panic, and when its future is dropped, so followers never wait on a leader that is gone.

use crate::rt::Mode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How a flight ended, for its followers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Done {
    /// The leader's value.
    Value(SharedValue),
    /// The computation failed (an `Err`, a panic): the followers compute at once, side by
    /// side, so that none queues behind more than one failed computation; or, when they
    /// share failures, answer with it, or with the value past its TTL that the leader put
    /// back (stale-if-error), given here.
    Failed(Option<super::Fallback>),
    /// The computation's value cannot be shared (it cannot be stored): the followers
    /// compute at once, side by side.
    Unshared,
    /// The leader went away without finishing (its future was dropped): the followers
    /// start over, and one of them leads.
    Vanished,
    /// Not an end: the leader answered with this value at its soft timeout, and its
    /// computation goes on. Only given to followers that take it.
    Stale(StaleServed),
}

/// What a leader answered with at its soft timeout, for its followers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StaleServed {
    pub bytes: Arc<[u8]>,
    /// The lease that took the value's place: a follower answers with the value only if
    /// its own read found that lease (or the value itself), so that an invalidation that
    /// ended before its read began keeps the value from it.
    pub lease: Arc<[u8]>,
    /// The end of the value's stale window: not served after it.
    pub until: std::time::Instant,
}

/// A value a leader hands its followers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SharedValue {
    /// The value's stored form (the cache's codec: JSON text, or another behind its marker).
    pub stored: Arc<[u8]>,
    /// The flight's invalidation count when the value's data was read: a follower that
    /// joined after a later invalidation of the key must not take it.
    pub fresh_as_of: u64,
    /// Written under the lease just now, with the call's TTL.
    pub written: bool,
}

#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

pub(crate) struct Flight {
    /// `done`: `None` while running; `stale`: what the leader answered with at its soft
    /// timeout, if it did.
    state: Mutex<FlightState>,
    cv: Condvar,
    notify: tokio::sync::Notify,
    /// How many invalidations of this key began while the flight was in the air.
    invalidations: AtomicU64,
    /// How the leader waits on the store: a sync follower must not park a thread that an
    /// async leader may need.
    mode: Mode,
}

#[derive(Default)]
struct FlightState {
    done: Option<Done>,
    stale: Option<StaleServed>,
}

impl FlightState {
    /// What a follower waits for: the end, or (when it takes it) a stale value served.
    fn outcome(&self, stale: bool) -> Option<Done> {
        match (&self.done, &self.stale) {
            (Some(done), _) => Some(done.clone()),
            (None, Some(served)) if stale && served.until > std::time::Instant::now() => {
                Some(Done::Stale(served.clone()))
            }
            _ => None,
        }
    }
}

pub(crate) enum Role {
    Lead(Leader),
    Follow(Arc<Flight>),
}

/// Held by the caller that computes; ends the flight when dropped.
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: String,
    flight: Arc<Flight>,
    done: Option<Done>,
}

impl Flights {
    /// Leads the key's flight, or follows the one in the air. `mode` is how the caller
    /// would wait on the store as a leader.
    pub(crate) fn join(self: &Arc<Self>, key: &str, mode: Mode) -> Role {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = map.get(key) {
            return Role::Follow(flight.clone());
        }
        let flight = Arc::new(Flight {
            state: Mutex::default(),
            cv: Condvar::new(),
            notify: tokio::sync::Notify::new(),
            invalidations: AtomicU64::new(0),
            mode,
        });
        map.insert(key.to_owned(), flight.clone());
        Role::Lead(Leader {
            flights: self.clone(),
            key: key.to_owned(),
            flight,
            done: None,
        })
    }

    /// Counts an invalidation against every flight whose key it covers: `glob` for a
    /// pattern, otherwise an exact key.
    pub(crate) fn invalidated(&self, target: &str, glob: bool) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for (key, flight) in map.iter() {
            let covered = if glob {
                crate::key::glob::matches(target.as_bytes(), key.as_bytes())
            } else {
                key == target
            };
            if covered {
                flight.invalidations.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// [`invalidated`](Self::invalidated) for each of `keys` (exact keys), the map locked
    /// once.
    pub(crate) fn invalidated_keys(&self, keys: &[&str]) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return;
        }
        let keys: std::collections::HashSet<&str> = keys.iter().copied().collect();
        for (key, flight) in map.iter() {
            if keys.contains(key.as_str()) {
                flight.invalidations.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// How many keys have a computation in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

impl Leader {
    /// The flight this leader leads.
    pub(crate) fn flight(&self) -> Arc<Flight> {
        self.flight.clone()
    }

    /// Invalidations of the key since the flight began.
    pub(crate) fn invalidations(&self) -> u64 {
        self.flight.invalidations()
    }

    /// The value followers receive when the flight ends.
    pub(crate) fn share(&mut self, value: SharedValue) {
        self.done = Some(Done::Value(value));
    }

    /// The computation failed: followers compute for themselves when the flight ends, or
    /// answer with the failure when they share failures.
    pub(crate) fn fail(&mut self, stale: Option<super::Fallback>) {
        self.done = Some(Done::Failed(stale));
    }

    /// The value cannot be shared: followers compute for themselves.
    pub(crate) fn unshared(&mut self) {
        self.done = Some(Done::Unshared);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        {
            let mut map = self.flights.map.lock().unwrap_or_else(|e| e.into_inner());
            if map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        // Unwinding from the computation's panic is a failure; any other end without an
        // outcome is a leader that went away (a dropped future).
        let done = self.done.take().unwrap_or(if std::thread::panicking() {
            Done::Failed(None)
        } else {
            Done::Vanished
        });
        self.flight.lock().done = Some(done);
        self.flight.cv.notify_all();
        self.flight.notify.notify_waiters();
    }
}

impl Flight {
    /// Invalidations of the key since the flight began.
    pub(crate) fn invalidations(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    /// How the leader waits on the store.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FlightState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The leader answered with `served` at its soft timeout, its computation going on:
    /// the followers that take it may answer with it too.
    pub(crate) fn serve_stale(&self, served: StaleServed) {
        self.lock().stale = Some(served);
        self.cv.notify_all();
        self.notify.notify_waiters();
    }

    /// Blocks until the leader ends the flight (or, when `stale`, serves a stale value),
    /// or `None` after `timeout`.
    pub(crate) fn wait(&self, timeout: Duration, stale: bool) -> Option<Done> {
        let state = self.lock();
        let (state, _) = self
            .cv
            .wait_timeout_while(state, timeout, |s| s.outcome(stale).is_none())
            .unwrap_or_else(|e| e.into_inner());
        state.outcome(stale)
    }

    /// Waits, without blocking the thread, as [`wait`](Self::wait) does. Any executor can
    /// drive it.
    pub(crate) async fn wait_async(&self, timeout: Duration, stale: bool) -> Option<Done> {
        let wait = async {
            loop {
                let mut notified = std::pin::pin!(self.notify.notified());
                // Registered before the check, so an end between the two is not missed.
                notified.as_mut().enable();
                if let Some(shared) = self.lock().outcome(stale) {
                    return shared;
                }
                notified.await;
            }
        };
        crate::rt::timeout(timeout, std::pin::pin!(wait)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    fn value(stored: &[u8]) -> SharedValue {
        SharedValue {
            stored: Arc::from(stored),
            fresh_as_of: 0,
            written: true,
        }
    }

    #[test]
    fn followers_get_the_leaders_value() {
        let flights = Arc::new(Flights::default());
        let Role::Lead(mut leader) = flights.join("k", Mode::Blocking) else {
            panic!("first caller leads")
        };
        let Role::Follow(flight) = flights.join("k", Mode::Blocking) else {
            panic!("second caller follows")
        };
        let waiter = std::thread::spawn(move || flight.wait(LONG, false));
        std::thread::sleep(Duration::from_millis(20));
        leader.share(value(b"42"));
        drop(leader);
        assert_eq!(waiter.join().unwrap(), Some(Done::Value(value(b"42"))));
        assert_eq!(flights.in_flight(), 0);
    }

    #[test]
    fn a_panicking_leader_releases_its_followers() {
        let flights = Arc::new(Flights::default());
        let f = flights.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let leader = std::thread::spawn(move || {
            let Role::Lead(_guard) = f.join("k", Mode::Async) else {
                unreachable!()
            };
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            panic!("computation failed");
        });
        rx.recv().unwrap();
        let Role::Follow(flight) = flights.join("k", Mode::Blocking) else {
            panic!("must follow")
        };
        assert!(leader.join().is_err());
        assert_eq!(
            flight.wait(LONG, false),
            Some(Done::Failed(None)),
            "a panic is a failure"
        );
        assert!(
            matches!(flights.join("k", Mode::Blocking), Role::Lead(_)),
            "a new caller leads again"
        );
    }

    #[test]
    fn followers_stop_waiting_after_the_timeout() {
        let flights = Arc::new(Flights::default());
        let Role::Lead(_leader) = flights.join("k", Mode::Blocking) else {
            panic!()
        };
        let Role::Follow(flight) = flights.join("k", Mode::Blocking) else {
            panic!()
        };
        assert_eq!(flight.wait(Duration::from_millis(20), false), None);
    }

    #[test]
    fn a_stale_value_served_reaches_only_the_followers_that_take_it() {
        let flights = Arc::new(Flights::default());
        let Role::Lead(mut leader) = flights.join("k", Mode::Blocking) else {
            panic!()
        };
        let Role::Follow(flight) = flights.join("k", Mode::Blocking) else {
            panic!()
        };
        let taker = {
            let flight = flight.clone();
            std::thread::spawn(move || flight.wait(LONG, true))
        };
        let waiter = {
            let flight = flight.clone();
            std::thread::spawn(move || flight.wait(LONG, false))
        };
        let served = StaleServed {
            bytes: Arc::from(&b"old"[..]),
            lease: Arc::from(&b"lease"[..]),
            until: std::time::Instant::now() + LONG,
        };
        leader.flight().serve_stale(served.clone());
        assert_eq!(taker.join().unwrap(), Some(Done::Stale(served.clone())));
        // A follower that joins later takes it at once; the others wait for the end.
        assert_eq!(flight.wait(Duration::ZERO, true), Some(Done::Stale(served)));
        // Past the end of its stale window, it is served no more.
        leader.flight().serve_stale(StaleServed {
            bytes: Arc::from(&b"old"[..]),
            lease: Arc::from(&b"lease"[..]),
            until: std::time::Instant::now(),
        });
        assert_eq!(flight.wait(Duration::from_millis(20), true), None);
        leader.share(value(b"new"));
        drop(leader);
        assert_eq!(waiter.join().unwrap(), Some(Done::Value(value(b"new"))));
        assert_eq!(flight.wait(LONG, true), Some(Done::Value(value(b"new"))));
    }

    #[tokio::test]
    async fn a_dropped_leader_future_releases_async_followers() {
        let flights = Arc::new(Flights::default());
        let f = flights.clone();
        let task = tokio::spawn(async move {
            let Role::Lead(_guard) = f.join("k", Mode::Async) else {
                unreachable!()
            };
            std::future::pending::<()>().await;
        });
        while flights.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let Role::Follow(flight) = flights.join("k", Mode::Blocking) else {
            panic!("must follow")
        };
        let waiter = tokio::spawn(async move { flight.wait_async(LONG, false).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        task.abort();
        let shared = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(shared, Some(Done::Vanished), "a dropped leader vanished");
    }
}
