//! In-process single-flight: concurrent callers of one key share one computation.
//!
//! The first caller of a key leads; later ones follow and wait, sync callers on a condvar,
//! async ones on a `Notify`. The leader's guard always ends the flight, on return, on
//! panic, and when its future is dropped, so followers never wait on a leader that is gone;
//! they then start over (and one of them leads).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What a finished flight hands its followers: a value, or nothing (the leader failed,
/// vanished, or computed a value that must not be shared).
pub(crate) type Shared = Option<SharedValue>;

/// A value a leader hands its followers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SharedValue {
    pub json: Arc<[u8]>,
    /// The flight's invalidation count when the value's data was read: a follower that
    /// joined after a later invalidation of the key must not take it. `None` when the
    /// lease's compare-and-set proved that no invalidation ran while it was computed.
    pub fresh_as_of: Option<u64>,
}

#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

#[derive(Default)]
pub(crate) struct Flight {
    /// `None` while running.
    done: Mutex<Option<Shared>>,
    cv: Condvar,
    notify: tokio::sync::Notify,
    /// How many invalidations of this key began while the flight was in the air.
    invalidations: AtomicU64,
}

pub(crate) enum Role<'a> {
    Lead(Leader<'a>),
    Follow(Arc<Flight>),
}

/// Held by the caller that computes; ends the flight when dropped.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    flight: Arc<Flight>,
    shared: Shared,
}

impl Flights {
    pub(crate) fn join(&self, key: &str) -> Role<'_> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = map.get(key) {
            return Role::Follow(flight.clone());
        }
        let flight = Arc::new(Flight::default());
        map.insert(key.to_owned(), flight.clone());
        Role::Lead(Leader {
            flights: self,
            key: key.to_owned(),
            flight,
            shared: None,
        })
    }

    /// Counts an invalidation against every flight whose key it covers: `glob` for a
    /// pattern, otherwise an exact key.
    pub(crate) fn invalidated(&self, target: &str, glob: bool) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for (key, flight) in map.iter() {
            let covered = if glob {
                crate::glob::matches(target.as_bytes(), key.as_bytes())
            } else {
                key == target
            };
            if covered {
                flight.invalidations.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

impl Leader<'_> {
    /// Invalidations of the key since the flight began.
    pub(crate) fn invalidations(&self) -> u64 {
        self.flight.invalidations()
    }

    /// The value followers receive when the flight ends.
    pub(crate) fn share(&mut self, value: SharedValue) {
        self.shared = Some(value);
    }
}

impl Drop for Leader<'_> {
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
        *self.flight.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.shared.take());
        self.flight.cv.notify_all();
        self.flight.notify.notify_waiters();
    }
}

impl Flight {
    /// Invalidations of the key since the flight began.
    pub(crate) fn invalidations(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    fn finished(&self) -> Option<Shared> {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Blocks until the leader ends the flight, or `None` after `timeout`.
    pub(crate) fn wait(&self, timeout: Duration) -> Option<Shared> {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let (done, _) = self
            .cv
            .wait_timeout_while(done, timeout, |d| d.is_none())
            .unwrap_or_else(|e| e.into_inner());
        done.clone()
    }

    /// Waits, without blocking the thread, until the leader ends the flight, or `None`
    /// after `timeout`.
    pub(crate) async fn wait_async(&self, timeout: Duration) -> Option<Shared> {
        let wait = async {
            loop {
                let mut notified = std::pin::pin!(self.notify.notified());
                // Registered before the check, so an end between the two is not missed.
                notified.as_mut().enable();
                if let Some(shared) = self.finished() {
                    return shared;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    fn value(json: &[u8]) -> SharedValue {
        SharedValue {
            json: Arc::from(json),
            fresh_as_of: None,
        }
    }

    #[test]
    fn followers_get_the_leaders_value() {
        let flights = Flights::default();
        let Role::Lead(mut leader) = flights.join("k") else {
            panic!("first caller leads")
        };
        let Role::Follow(flight) = flights.join("k") else {
            panic!("second caller follows")
        };
        let waiter = std::thread::spawn(move || flight.wait(LONG));
        std::thread::sleep(Duration::from_millis(20));
        leader.share(value(b"42"));
        drop(leader);
        assert_eq!(waiter.join().unwrap(), Some(Some(value(b"42"))));
        assert_eq!(flights.in_flight(), 0);
    }

    #[test]
    fn a_panicking_leader_releases_its_followers() {
        let flights = Arc::new(Flights::default());
        let f = flights.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let leader = std::thread::spawn(move || {
            let Role::Lead(_guard) = f.join("k") else {
                unreachable!()
            };
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            panic!("computation failed");
        });
        rx.recv().unwrap();
        let Role::Follow(flight) = flights.join("k") else {
            panic!("must follow")
        };
        assert!(leader.join().is_err());
        assert_eq!(flight.wait(LONG), Some(None));
        assert!(
            matches!(flights.join("k"), Role::Lead(_)),
            "a new caller leads again"
        );
    }

    #[test]
    fn followers_stop_waiting_after_the_timeout() {
        let flights = Flights::default();
        let Role::Lead(_leader) = flights.join("k") else {
            panic!()
        };
        let Role::Follow(flight) = flights.join("k") else {
            panic!()
        };
        assert_eq!(flight.wait(Duration::from_millis(20)), None);
    }

    #[tokio::test]
    async fn a_dropped_leader_future_releases_async_followers() {
        let flights = Arc::new(Flights::default());
        let f = flights.clone();
        let task = tokio::spawn(async move {
            let Role::Lead(_guard) = f.join("k") else {
                unreachable!()
            };
            std::future::pending::<()>().await;
        });
        while flights.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let Role::Follow(flight) = flights.join("k") else {
            panic!("must follow")
        };
        let waiter = tokio::spawn(async move { flight.wait_async(LONG).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        task.abort();
        let shared = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(shared, Some(None));
    }
}
