//! Connections driven by the callers' own tokio runtimes, for a fixed Redis server.
//!
//! Every async request can go through the connection on the crate's IO thread, from any
//! executor; but on a tokio runtime that has its IO driver, that costs two thread hops a
//! round trip (the request to the IO thread, the reply back), a sizeable share of a
//! loopback round trip. So a runtime that can drive a connection gets one of its own, keyed
//! by the runtime's id:
//! - the first async request on a runtime checks that it has an IO driver and starts the
//!   connection in a task on it, and goes through the IO thread meanwhile;
//! - a runtime without an IO driver, or that let a request time out (it may be blocked, as
//!   when a task blocks its thread on a future), goes through the IO thread, the latter
//!   for [`SHUNNED`];
//! - a connection that fails (the runtime shut down and took its driver, the server went
//!   away) is forgotten, and its request retried through the IO thread;
//! - under load (from [`BUSY`] requests in flight on these connections), requests go
//!   through the IO thread, whose one connection batches them.
//!
//! The request's timeout stays the crate's own timer, so a runtime without a time driver
//! needs none.

use crate::rt;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};
use tokio::runtime::{Handle, Id};

/// How many runtimes' connections are kept; the oldest goes first.
const MAX_RUNTIMES: usize = 32;
/// How long a runtime that let a request time out goes through the IO thread.
pub(crate) const SHUNNED: Duration = Duration::from_secs(30);
/// How long a connection attempt may stay unfinished (its runtime may have stopped
/// polling it) before another is started.
const RETRY_CONNECT: Duration = Duration::from_secs(10);

enum State {
    Connecting(Instant),
    Ready(MultiplexedConnection),
    /// No IO driver (`None`: for good), or shunned until then.
    Skip(Option<Instant>),
}

/// From this many requests in flight on callers' connections, more go through the IO
/// thread: under load its connection batches the requests of every worker into fewer
/// writes and reads (at 64 tasks on 2 cores: 0.98–1.02× a bare connection's throughput,
/// against 0.87–0.93× with every request on the runtime's own), while one at a time, the
/// runtime's own saves the hop.
const BUSY: usize = 4;

/// One store's connections on its callers' runtimes.
pub(crate) struct CallerConns {
    client: redis::Client,
    connect_timeout: Duration,
    runtimes: Mutex<Vec<(Id, State)>>,
    in_flight: AtomicUsize,
}

/// A request's use of its runtime's connection, counted while it lasts.
pub(crate) struct Local<'a> {
    conns: &'a CallerConns,
    pub(crate) id: Id,
    pub(crate) con: MultiplexedConnection,
}

impl Drop for Local<'_> {
    fn drop(&mut self) {
        self.conns.in_flight.fetch_sub(1, Relaxed);
    }
}

impl CallerConns {
    pub(crate) fn new(client: redis::Client, connect_timeout: Duration) -> Arc<CallerConns> {
        Arc::new(CallerConns {
            client,
            connect_timeout,
            runtimes: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// The connection of the caller's runtime, if it has one ready and few requests are in
    /// flight on such connections; otherwise `None`, and the first time, a connection is
    /// started on the runtime when it can drive one.
    pub(crate) fn for_caller(self: &Arc<Self>) -> Option<Local<'_>> {
        if self.in_flight.load(Relaxed) >= BUSY {
            return None;
        }
        let handle = Handle::try_current().ok()?;
        let id = handle.id();
        let now = Instant::now();
        let mut runtimes = self.runtimes.lock().unwrap_or_else(|e| e.into_inner());
        match runtimes.iter_mut().find(|(i, _)| *i == id) {
            Some((_, State::Ready(con))) => {
                self.in_flight.fetch_add(1, Relaxed);
                return Some(Local {
                    conns: self,
                    id,
                    con: con.clone(),
                });
            }
            Some((_, State::Skip(None))) => return None,
            Some((_, State::Skip(Some(until)))) if now < *until => return None,
            Some((_, State::Connecting(since))) if now < *since + RETRY_CONNECT => return None,
            Some((_, state)) => *state = State::Connecting(now),
            None => {
                if runtimes.len() >= MAX_RUNTIMES {
                    runtimes.remove(0);
                }
                if !has_io_driver() {
                    runtimes.push((id, State::Skip(None)));
                    return None;
                }
                runtimes.push((id, State::Connecting(now)));
            }
        }
        drop(runtimes);
        let this = Arc::clone(self);
        handle.spawn(async move {
            // No timer of redis-rs's own (the runtime may have no time driver): the crate's.
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(None)
                .set_response_timeout(None);
            let connecting = this
                .client
                .get_multiplexed_async_connection_with_config(&config);
            let state = match rt::timeout(this.connect_timeout, std::pin::pin!(connecting)).await {
                Some(Ok(con)) => State::Ready(con),
                _ => State::Skip(Some(Instant::now() + RETRY_CONNECT)),
            };
            this.set(id, state);
        });
        None
    }

    fn set(&self, id: Id, state: State) {
        let mut runtimes = self.runtimes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = runtimes.iter_mut().find(|(i, _)| *i == id) {
            *s = state;
        }
    }

    /// The runtime's connection failed: make another on its next request.
    pub(crate) fn forget(&self, id: Id) {
        let mut runtimes = self.runtimes.lock().unwrap_or_else(|e| e.into_inner());
        runtimes.retain(|(i, _)| *i != id);
    }

    /// A request on the runtime's connection timed out: the runtime may not be driving it.
    pub(crate) fn shun(&self, id: Id) {
        self.set(id, State::Skip(Some(Instant::now() + SHUNNED)));
    }
}

thread_local! {
    static PROBING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the runtime entered on this thread has an IO driver. Tokio has no way to ask
/// but to register a socket, which panics without one: the panic is caught, and kept out
/// of the panic hook's output. Without unwinding, the answer is no.
fn has_io_driver() -> bool {
    if !cfg!(panic = "unwind") {
        return false;
    }
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !PROBING.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let Ok(socket) = std::net::UdpSocket::bind(("127.0.0.1", 0)) else {
        return false;
    };
    if socket.set_nonblocking(true).is_err() {
        return false;
    }
    PROBING.with(|p| p.set(true));
    let registered = std::panic::catch_unwind(move || tokio::net::UdpSocket::from_std(socket));
    PROBING.with(|p| p.set(false));
    matches!(registered, Ok(Ok(_)))
}
