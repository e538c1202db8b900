//! In-process single-flight: concurrent callers of one key share one computation.
//!
//! The first caller of a key leads; later ones follow and wait, sync callers on a condvar,
//! async ones on a `Notify`. The leader's guard always ends the flight, on return, on
//! panic, and when its future is dropped, so followers never wait on a leader that is gone;
//! they then start over (and one of them leads).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// What a finished flight hands its followers: the value's JSON, or nothing (the leader
/// failed, vanished, or computed a value that must not be shared).
pub(crate) type Shared = Option<Arc<[u8]>>;

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

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

impl Leader<'_> {
    /// The value followers receive when the flight ends.
    pub(crate) fn share(&mut self, json: Arc<[u8]>) {
        self.shared = Some(json);
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
    fn finished(&self) -> Option<Shared> {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Blocks until the leader ends the flight.
    pub(crate) fn wait(&self) -> Shared {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(shared) = done.as_ref() {
                return shared.clone();
            }
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits, without blocking the thread, until the leader ends the flight.
    pub(crate) async fn wait_async(&self) -> Shared {
        loop {
            let mut notified = std::pin::pin!(self.notify.notified());
            // Registered before the check, so an end between the two is not missed.
            notified.as_mut().enable();
            if let Some(shared) = self.finished() {
                return shared;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn followers_get_the_leaders_value() {
        let flights = Flights::default();
        let Role::Lead(mut leader) = flights.join("k") else {
            panic!("first caller leads")
        };
        let Role::Follow(flight) = flights.join("k") else {
            panic!("second caller follows")
        };
        let waiter = std::thread::spawn(move || flight.wait());
        std::thread::sleep(Duration::from_millis(20));
        leader.share(Arc::from(&b"42"[..]));
        drop(leader);
        assert_eq!(waiter.join().unwrap().as_deref(), Some(&b"42"[..]));
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
        assert_eq!(flight.wait(), None);
        assert!(
            matches!(flights.join("k"), Role::Lead(_)),
            "a new caller leads again"
        );
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
        let waiter = tokio::spawn(async move { flight.wait_async().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        task.abort();
        let shared = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(shared, None);
    }
}
