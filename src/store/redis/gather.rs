//! A batch's requests to one server, gathered: the commands its items make in one pass of
//! polls (their leases, their writes under the lease) go as one pipeline, sent by the
//! first of them, instead of one round trip each.

use crate::error::Error;
use redis::{Cmd, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::oneshot;

/// One gathered command's reply (a server error inside, as `Value::ServerError`), or the
/// fault that failed the whole pipeline.
pub(super) type Reply = std::result::Result<Value, Error>;

struct Gathering {
    pass: u64,
    id: u64,
    waiting: Vec<(Cmd, oneshot::Sender<Reply>)>,
}

/// The gatherings open on one server: one per batch pass that has made a request to it and
/// not been sent yet.
#[derive(Default)]
pub(super) struct Gathered {
    open: Mutex<Vec<Gathering>>,
    ids: AtomicU64,
}

pub(super) enum Joined<'g> {
    /// The first request of its pass: it sends the others with its own.
    Lead(Leading<'g>),
    /// Sent by the pass's first request; the reply comes here.
    Wait(oneshot::Receiver<Reply>),
}

impl Gathered {
    /// Joins the gathering of `pass`, or opens it. `cmd`: the request as a pipeline's
    /// command, made only when another request sends it.
    pub(super) fn join(&self, pass: u64, cmd: impl FnOnce() -> Cmd) -> Joined<'_> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = open.iter_mut().find(|g| g.pass == pass) {
            let (tx, rx) = oneshot::channel();
            g.waiting.push((cmd(), tx));
            return Joined::Wait(rx);
        }
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        open.push(Gathering {
            pass,
            id,
            waiting: Vec::new(),
        });
        Joined::Lead(Leading { gathered: self, id })
    }
}

/// The first request of a pass, until it takes the others to send them. Dropped before
/// that (its call was cancelled), it closes the gathering: the others, their reply channel
/// closed, go alone.
pub(super) struct Leading<'g> {
    gathered: &'g Gathered,
    id: u64,
}

impl Leading<'_> {
    /// The requests that joined, closing the gathering.
    pub(super) fn take(self) -> Vec<(Cmd, oneshot::Sender<Reply>)> {
        self.close()
    }

    fn close(&self) -> Vec<(Cmd, oneshot::Sender<Reply>)> {
        let mut open = self.gathered.open.lock().unwrap_or_else(|e| e.into_inner());
        match open.iter().position(|g| g.id == self.id) {
            Some(at) => open.swap_remove(at).waiting,
            None => Vec::new(),
        }
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        drop(self.close());
    }
}

/// Whether a gathered script's reply says the server lacks it (sent alone, the usual way
/// loads it).
pub(super) fn no_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}
