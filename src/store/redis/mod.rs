//! One Redis server: async through one multiplexed connection whose driver lives on the
//! crate's own IO thread (callers send on it from any executor, and it is rebuilt when it
//! breaks), or on a fixed server through a connection of the caller's own tokio runtime when
//! it has one (`local.rs`); sync through a small pool of blocking connections; every round
//! trip bounded by the operation timeout.

mod breaker;
mod conn;
mod gather;
pub(crate) mod local;
mod scripts;
#[cfg(feature = "sentinel")]
pub(crate) mod sentinel;
pub(crate) mod tracking;

use super::{KeyTtl, Read, Store};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::redact::SecretUrl;
use crate::rt::Mode;
#[cfg(any(feature = "cluster", feature = "sentinel"))]
pub(crate) use breaker::looks_down;
pub(crate) use breaker::Breaker;
use conn::Request;
pub(crate) use conn::{client_for, dropped, AsyncConn};
use redis::aio::MultiplexedConnection;
use redis::{Cmd, FromRedisValue, Script};
pub(crate) use scripts::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct RedisStore {
    target: Target,
    async_con: AsyncConn,
    /// A connection of its own for the invalidations that wait for a replica (`WAIT`):
    /// Redis answers nothing else on a connection while it waits, and every async call
    /// shares `async_con`.
    apart: AsyncConn,
    /// On a fixed server, the connections that tokio callers' own runtimes drive, which
    /// save an async request the hops to the IO thread and back.
    callers: Option<std::sync::Arc<local::CallerConns>>,
    /// Idle blocking connections, each with the generation of the primary it was made for
    /// (always 0 on a fixed server).
    pool: Mutex<Vec<(u64, redis::Connection)>>,
    pool_size: usize,
    op_timeout: Duration,
    connect_timeout: Duration,
    scan_count: usize,
    breaker: Breaker,
    /// Set when the server answered `GETEX` with an error (Redis before 6.2): sliding
    /// reads use the `GET_SLIDING` script from then on.
    no_getex: std::sync::atomic::AtomicBool,
    /// Bumped whenever connections to the server are found broken (a restart, a failover):
    /// what a walk through a tag set checks, since a `ZSCAN` cursor means nothing to
    /// another server process.
    breaks: AtomicU64,
    /// The longest a marker lives between renewals: a bound for putting one's expiry back.
    lease_ttl: Duration,
    /// The requests of batch passes, sent one pipeline per pass.
    gathered: gather::Gathered,
}

/// Which server the store talks to.
// One per store, and the store is boxed: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Target {
    /// One server, at a fixed address; its clients for data (RESP2) and tracking (RESP3).
    Server {
        client: redis::Client,
        tracking: redis::Client,
    },
    /// The primary that Redis Sentinel names, followed through failovers.
    #[cfg(feature = "sentinel")]
    Sentinel(std::sync::Arc<sentinel::SentinelPrimary>),
}

impl RedisStore {
    pub(crate) fn new(url: &SecretUrl, config: &Config) -> Result<Self> {
        let target = Target::Server {
            client: client_for(url, config, false)?,
            // The near cache's tracking connection speaks RESP3, for its invalidation pushes.
            tracking: client_for(url, config, true)?,
        };
        Ok(RedisStore::with_target(target, config, "redis".to_owned()))
    }

    /// The primary that the Sentinels of `sentinel` name, followed through failovers.
    #[cfg(feature = "sentinel")]
    pub(crate) fn sentinel(
        sentinel: &crate::config::SentinelConfig,
        config: &Config,
    ) -> Result<Self> {
        let primary = sentinel::SentinelPrimary::new(sentinel, config, client_for)?;
        let what = primary.describe();
        Ok(RedisStore::with_target(
            Target::Sentinel(primary),
            config,
            what,
        ))
    }

    fn with_target(target: Target, config: &Config, what: String) -> RedisStore {
        let callers = match &target {
            Target::Server { client, .. } => Some(local::CallerConns::new(
                client.clone(),
                config.connect_timeout,
            )),
            #[cfg(feature = "sentinel")]
            Target::Sentinel(_) => None,
        };
        RedisStore {
            target,
            async_con: AsyncConn::default(),
            apart: AsyncConn::default(),
            callers,
            pool: Mutex::new(Vec::new()),
            pool_size: config.pool_size,
            op_timeout: config.op_timeout,
            connect_timeout: config.connect_timeout,
            scan_count: config.scan_count,
            breaker: Breaker::new(config, what),
            no_getex: std::sync::atomic::AtomicBool::new(false),
            breaks: AtomicU64::new(0),
            lease_ttl: config.lease_ttl.max(super::FAILED_TTL),
            gathered: gather::Gathered::default(),
        }
    }

    /// Whether calls fail fast because the server looked down.
    pub(crate) fn breaker_open(&self) -> bool {
        self.breaker.check().is_err()
    }

    /// `redis`, or `sentinel` when the server is the primary that Sentinel names.
    pub(crate) fn kind(&self) -> &'static str {
        match self.target {
            Target::Server { .. } => "redis",
            #[cfg(feature = "sentinel")]
            Target::Sentinel(_) => "sentinel",
        }
    }

    /// The generation of the server that connections are made for: 0 on a fixed server,
    /// the primary's on Sentinel (where a connection of another generation is dropped).
    fn generation(&self) -> u64 {
        match &self.target {
            Target::Server { .. } => 0,
            #[cfg(feature = "sentinel")]
            Target::Sentinel(p) => p.generation(),
        }
    }

    /// Whether connections must wait for the Sentinels' answer before they are used.
    fn must_resolve(&self) -> bool {
        match &self.target {
            Target::Server { .. } => false,
            #[cfg(feature = "sentinel")]
            Target::Sentinel(p) => p.is_suspect(),
        }
    }

    /// The client to make a blocking connection with, and its generation.
    fn blocking_client(&self) -> Result<(u64, redis::Client)> {
        match &self.target {
            Target::Server { client, .. } => Ok((0, client.clone())),
            #[cfg(feature = "sentinel")]
            Target::Sentinel(p) => {
                let resolved = p.resolve_blocking(self.op_timeout)?;
                Ok((resolved.generation, resolved.client.clone()))
            }
        }
    }

    /// On Sentinel, a failed call may mean a failover: a timeout, a lost or refused
    /// connection, or a `READONLY` reply (the server was demoted) makes the store ask the
    /// Sentinels before its next connection.
    #[cfg_attr(not(feature = "sentinel"), allow(unused_variables))]
    fn note_failure(&self, e: &Error) {
        #[cfg(feature = "sentinel")]
        if let Target::Sentinel(p) = &self.target {
            let readonly = e
                .redis_error()
                .is_some_and(|r| r.code() == Some("READONLY"));
            if readonly || looks_down(e) {
                p.suspect();
            }
        }
    }

    /// Keeps `near` correct: invalidations of every key under `prefix`, from a tracking
    /// connection of its own.
    pub(crate) fn track(
        &self,
        near: &std::sync::Arc<dyn super::Tracked>,
        prefix: String,
        ignore_invalidations: bool,
    ) {
        let servers: tracking::Servers = match &self.target {
            Target::Server { tracking, .. } => {
                let client = tracking.clone();
                Box::new(move || Some((0, vec![client.clone()])))
            }
            // The primary's tracking connection; a new primary (a new generation) reconnects
            // it, and the near cache drops everything it held meanwhile.
            // While the primary is in doubt, none: the near cache serves nothing until the
            // Sentinels' answer is in and tracking runs there. The epoch changes with the
            // primary and with every doubt, which drops a connection made before it.
            #[cfg(feature = "sentinel")]
            Target::Sentinel(p) => {
                let doubted = std::sync::Arc::downgrade(near);
                p.on_doubt(Box::new(move || {
                    if let Some(near) = doubted.upgrade() {
                        near.distrust();
                    }
                }));
                let primary = std::sync::Arc::downgrade(p);
                Box::new(move || {
                    let p = primary.upgrade()?;
                    if p.is_suspect() {
                        return None;
                    }
                    match p.current() {
                        Some(r) => {
                            Some(((r.generation << 32) ^ p.doubts(), vec![r.tracking.clone()]))
                        }
                        // Nothing asked the Sentinels yet: ask, and look again later.
                        None => {
                            p.suspect();
                            None
                        }
                    }
                })
            }
        };
        tracking::start(
            near,
            servers,
            prefix,
            (self.op_timeout, self.connect_timeout),
            ignore_invalidations,
        );
    }

    /// Runs `f` on a pooled blocking connection. A connection that saw an error is dropped,
    /// and so is the rest of the pool when the error says the server went away: those
    /// connections are dead too, and keeping them would fail the next calls one by one.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let pooled = if self.must_resolve() {
            None
        } else {
            let generation = self.generation();
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            // Connections to a primary that is no longer the one go (on one server, every
            // connection has generation 0).
            loop {
                match pool.pop() {
                    Some((g, _)) if g != generation => continue,
                    found => break found,
                }
            }
        };
        let (generation, mut con, fresh) = match pooled {
            Some((generation, con)) => (generation, con, false),
            None => {
                // Connecting counts against the operation timeout: the command gets what
                // the connection left of it, so one call never waits longer than that.
                let started = Instant::now();
                let (generation, client) = self.blocking_client()?;
                let con = client
                    .get_connection_with_timeout(
                        self.connect_timeout
                            .min(self.op_timeout.saturating_sub(started.elapsed()))
                            .max(Duration::from_millis(1)),
                    )
                    .map_err(Error::from_redis)?;
                let left = self
                    .op_timeout
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_millis(1));
                con.set_read_timeout(Some(left))
                    .map_err(Error::from_redis)?;
                con.set_write_timeout(Some(left))
                    .map_err(Error::from_redis)?;
                (generation, con, true)
            }
        };
        match f(&mut con) {
            Ok(v) => {
                let reusable = !fresh
                    || (con.set_read_timeout(Some(self.op_timeout)).is_ok()
                        && con.set_write_timeout(Some(self.op_timeout)).is_ok());
                let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
                if reusable && pool.len() < self.pool_size && generation == self.generation() {
                    pool.push((generation, con));
                }
                Ok(v)
            }
            Err(e) => {
                if e.is_io_error() || e.is_unrecoverable_error() || e.is_timeout() {
                    self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    self.breaks.fetch_add(1, Ordering::Relaxed);
                }
                Err(Error::from_redis(e))
            }
        }
    }

    async fn connection(&self, which: &AsyncConn) -> Result<(u64, MultiplexedConnection)> {
        // Connecting, and asking the Sentinels, are boxed: each request's future holds this
        // one inline, and every cached call's future holds a request's.
        match &self.target {
            Target::Server { client, .. } => match which.current_for(0) {
                Some(con) => Ok(con),
                None => Box::pin(which.get(client, 0, self.connect_timeout)).await,
            },
            #[cfg(feature = "sentinel")]
            Target::Sentinel(p) => {
                if !p.is_suspect() {
                    if let Some(con) = which.current_for(p.generation()) {
                        return Ok(con);
                    }
                }
                Box::pin(async {
                    let resolved = p.resolve().await?;
                    which
                        .get(&resolved.client, resolved.generation, self.connect_timeout)
                        .await
                })
                .await
            }
        }
    }

    /// Sends one request in `mode`: blocking on a pooled connection, or on the async
    /// connection (on the crate's IO thread) with one retry if that connection was dropped.
    /// Either way it takes at most the operation timeout.
    async fn run<T: FromRedisValue + Send + 'static>(&self, mode: Mode, req: Request) -> Result<T> {
        self.run_on(mode, req, false).await
    }

    /// [`run`](Self::run), on the connection kept apart for waiting invalidations when
    /// `apart` (async calls; a blocking call has a pooled connection to itself anyway).
    async fn run_on<T: FromRedisValue + Send + 'static>(
        &self,
        mode: Mode,
        req: Request,
        apart: bool,
    ) -> Result<T> {
        let req = match crate::rt::pass().filter(|_| mode == Mode::Async && !apart) {
            Some((batch, pass)) => match self.gathered(batch, pass, req).await {
                Ok(out) => return out,
                Err(req) => req,
            },
            None => req,
        };
        self.sent(mode, req, apart).await
    }

    /// [`send`](Self::send), its outcome recorded by the breaker.
    async fn sent<T: FromRedisValue + Send + 'static>(
        &self,
        mode: Mode,
        req: Request,
        apart: bool,
    ) -> Result<T> {
        let out = self.send(mode, req, apart).await;
        self.breaker.record(&out);
        if let Err(e) = &out {
            self.note_failure(e);
        }
        out
    }

    /// A request made in a batch's pass (`pass`, of a batch made in `batch` mode): the
    /// first such request to this server waits for the pass to end, then sends every
    /// request of the pass as one pipeline (on the caller's thread for a sync batch); the
    /// others wait for its reply. `Err(req)`: to be sent alone, as it is not one command,
    /// or its script must be loaded first, or the request that would have sent it went
    /// away.
    async fn gathered<T: FromRedisValue + Send + 'static>(
        &self,
        batch: Mode,
        pass: u64,
        req: Request,
    ) -> std::result::Result<Result<T>, Request> {
        let Some(own) = req.command() else {
            return Err(req);
        };
        let reply = |v: redis::Value| match v.extract_error() {
            Err(e) if gather::no_script(&e) => None,
            Err(e) => {
                // A reply such as `READONLY` says what it would have said sent alone.
                let e = Error::from_redis(e);
                self.note_failure(&e);
                Some(Err(e))
            }
            Ok(v) => Some(T::from_redis_value(v).map_err(|e| Error::from_redis(e.into()))),
        };
        let mut own = Some(own);
        let leading = match self.gathered.join(pass, || own.take().expect("made once")) {
            gather::Joined::Wait(rx) => {
                return match rx.await {
                    Ok(Ok(v)) => reply(v).ok_or(req),
                    Ok(Err(fault)) => Ok(Err(fault)),
                    Err(_) => Err(req),
                };
            }
            gather::Joined::Lead(leading) => leading,
        };
        crate::rt::yield_once().await;
        let others = leading.take();
        if others.is_empty() {
            return Ok(self.sent(batch, req, false).await);
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .add_command(own.expect("kept by the request that sends"));
        let (cmds, replies): (Vec<Cmd>, Vec<_>) = others.into_iter().unzip();
        for cmd in cmds {
            pipe.add_command(cmd);
        }
        match self
            .sent::<Vec<redis::Value>>(batch, Request::Pipe(pipe), false)
            .await
        {
            Ok(values) => {
                let mut values = values.into_iter();
                let mine = values.next();
                for (tx, v) in replies.into_iter().zip(values) {
                    let _ = tx.send(Ok(v));
                }
                mine.and_then(reply).ok_or(req)
            }
            Err(fault) => {
                for tx in replies {
                    let _ = tx.send(Err(fault.clone()));
                }
                Ok(Err(fault))
            }
        }
    }

    async fn send<T: FromRedisValue + Send + 'static>(
        &self,
        mode: Mode,
        req: Request,
        apart: bool,
    ) -> Result<T> {
        let which = if apart { &self.apart } else { &self.async_con };
        match mode {
            Mode::Blocking => self.with_conn(|con| req.query(con)),
            Mode::Async => {
                let local = self
                    .callers
                    .as_ref()
                    .filter(|_| !apart)
                    .and_then(|c| c.for_caller().map(|l| (c, l)));
                let tried_local = local.as_ref().map(|(c, l)| (*c, l.id));
                let attempts = async {
                    if let Some((callers, mut local)) = local {
                        match req.query_async(&mut local.con).await {
                            // The runtime shut down (and its driver with it), or the server
                            // closed the connection: the IO thread's connection retries.
                            Err(e) if dropped(&e) => callers.forget(local.id),
                            other => return other.map_err(Error::from_redis),
                        }
                    }
                    let (generation, mut con) = self.connection(which).await?;
                    match req.query_async(&mut con).await {
                        Err(e) if dropped(&e) => {
                            which.broken(generation);
                            self.breaks.fetch_add(1, Ordering::Relaxed);
                            // On Sentinel, a lost connection may be a failover (the
                            // Sentinels close a demoted primary's connections): the retry
                            // connects to whichever server they name now.
                            self.note_failure(&Error::from_redis(e));
                            let (_, mut con) = self.connection(which).await?;
                            req.query_async(&mut con).await.map_err(Error::from_redis)
                        }
                        other => other.map_err(Error::from_redis),
                    }
                };
                match crate::rt::timeout(self.op_timeout, std::pin::pin!(attempts)).await {
                    Some(result) => result,
                    None => {
                        if let Some((callers, id)) = tried_local {
                            callers.shun(id);
                        }
                        Err(Error::timeout("redis request", self.op_timeout))
                    }
                }
            }
        }
    }

    /// [`get_many`](Store::get_many)'s round trip, whose fault fails every key.
    async fn read_many(&self, mode: Mode, keys: &[&str], with_ttl: bool) -> Result<Vec<Read>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.breaker.check()?;
        let mut pipe = redis::pipe();
        pipe.add_command(mget_cmd(keys.iter().copied()));
        if with_ttl {
            for key in keys {
                pipe.add_command(pttl_cmd(key));
            }
        }
        let mut replies: Vec<redis::Value> = self.run(mode, Request::Pipe(pipe)).await?;
        let ttls = replies.split_off(1);
        let values = replies.pop().unwrap_or(redis::Value::Nil);
        many_reads(values, ttls, keys.len()).map_err(|e| Error::from_redis(e.into()))
    }

    async fn cmd<T: FromRedisValue + Send + 'static>(&self, mode: Mode, cmd: Cmd) -> Result<T> {
        self.run(mode, Request::Cmd(cmd)).await
    }

    async fn script<T: FromRedisValue + Send + 'static>(
        &self,
        mode: Mode,
        script: &'static Script,
        key: &str,
        args: &[&[u8]],
    ) -> Result<T> {
        let args = args.iter().map(|a| a.to_vec()).collect();
        self.run(mode, Request::Script(script, key.to_owned(), args))
            .await
    }

    /// `WAIT 1 t` after an invalidation's deletions, on Sentinel while the primary has a
    /// replica: a failover promotes a replica, and Redis replicates asynchronously, so a
    /// primary killed just after acknowledging an `UNLINK` could take it along. `t` is half
    /// the operation timeout (1 ms to 1 s). `None` on a fixed server, and while the
    /// Sentinels know no replica of the primary (there is nothing to fail over to).
    fn wait_cmd(&self) -> Option<Cmd> {
        match &self.target {
            Target::Server { .. } => None,
            #[cfg(feature = "sentinel")]
            Target::Sentinel(p) => (p.replicas() > 0).then(|| {
                let ms = (self.op_timeout / 2)
                    .clamp(Duration::from_millis(1), Duration::from_secs(1))
                    .as_millis() as u64;
                let mut cmd = redis::cmd("WAIT");
                cmd.arg(1).arg(ms);
                cmd
            }),
        }
    }

    /// The reply of a [`wait_cmd`](Self::wait_cmd): when no replica acknowledged the
    /// deletions in time (a replica frozen, resyncing or gone), they stand on the primary,
    /// so the invalidation is not failed; the case is counted and logged (a line a second
    /// at most), and a failover before the replica catches up is covered by the replay of
    /// recent invalidations to the new primary.
    fn replicated(&self, acked: i64) {
        #[cfg(feature = "sentinel")]
        if let (Target::Sentinel(p), true) = (&self.target, acked <= 0) {
            p.unreplicated(self.op_timeout / 2);
        }
        #[cfg(not(feature = "sentinel"))]
        let _ = acked;
    }

    fn scan_cmd(&self, cursor: u64, pattern: &str) -> Cmd {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(self.scan_count);
        cmd
    }
}

impl Store for RedisStore {
    async fn get(&self, mode: Mode, key: &str) -> Result<Option<Vec<u8>>> {
        self.breaker.check()?;
        self.cmd(mode, get_cmd(key)).await
    }

    async fn get_with_ttl(
        &self,
        mode: Mode,
        key: &str,
    ) -> Result<(Option<Vec<u8>>, Option<Duration>)> {
        self.breaker.check()?;
        let mut pipe = redis::pipe();
        pipe.add_command(get_cmd(key)).add_command(pttl_cmd(key));
        let (bytes, ms): (Option<Vec<u8>>, i64) = self.run(mode, Request::Pipe(pipe)).await?;
        let left = match to_ttl(ms) {
            KeyTtl::Expires(d) => Some(d),
            KeyTtl::Missing | KeyTtl::Persistent => None,
        };
        Ok((bytes, left))
    }

    /// One `MGET` of every key, with a `PTTL` of each in the same pipeline when asked:
    /// one round trip, whatever the number of keys.
    async fn get_many(&self, mode: Mode, keys: &[&str], with_ttl: bool) -> Vec<Result<Read>> {
        match self.read_many(mode, keys, with_ttl).await {
            Ok(reads) => reads.into_iter().map(Ok).collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// `PTTL` and `GETEX … PX` in one pipeline: one round trip of two native commands. When
    /// the bytes turn out to be a marker (another caller's lease, or a failure marker),
    /// `GETEX` pushed its expiry too: it is put back to what `PTTL` saw, by a
    /// compare-and-set, so a dead holder's lease still goes when it would have. On a server
    /// without `GETEX` (before 6.2), the `GET_SLIDING` script, which never touches a marker.
    async fn get_sliding(&self, mode: Mode, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>> {
        use std::sync::atomic::Ordering::Relaxed;
        self.breaker.check()?;
        if !self.no_getex.load(Relaxed) {
            let request = Request::Sliding(key.to_owned(), ttl_ms(ttl));
            match self.run::<(i64, Option<Vec<u8>>)>(mode, request).await {
                Ok((ms, Some(bytes))) if super::is_marker(&bytes) => {
                    // What `PTTL` saw, unless the key changed in between (a value's TTL, or
                    // none): a marker never has more than `lease_ttl` left.
                    let left = u64::try_from(ms)
                        .map(Duration::from_millis)
                        .unwrap_or(self.lease_ttl)
                        .min(self.lease_ttl);
                    self.renew_if(mode, key, &bytes, left).await?;
                    return Ok(Some(bytes));
                }
                Ok((_, bytes)) => return Ok(bytes),
                Err(e) if unknown_command(&e) => {
                    log::info!(target: "cacheable", "the Redis server has no GETEX (before 6.2): sliding reads use a script");
                    self.no_getex.store(true, Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let ms = ttl_ms(ttl).to_string();
        self.script(mode, &GET_SLIDING, key, &[ms.as_bytes()]).await
    }

    async fn set(&self, mode: Mode, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.breaker.check()?;
        self.cmd(mode, set_cmd(key, value, ttl)).await
    }

    async fn delete(&self, mode: Mode, keys: &[&str]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        #[cfg(feature = "sentinel")]
        if let Target::Sentinel(p) = &self.target {
            p.record(sentinel::Replay::Keys(
                keys.iter().map(|k| (*k).to_owned()).collect(),
            ));
        }
        match self.wait_cmd() {
            // Also when the `UNLINK` finds nothing: an earlier attempt may have deleted the
            // keys, and their deletion must reach a replica too.
            Some(wait) => {
                let mut pipe = redis::pipe();
                pipe.add_command(unlink_cmd(keys)).add_command(wait);
                let (n, acked): (u64, i64) = self.run_on(mode, Request::Pipe(pipe), true).await?;
                self.replicated(acked);
                Ok(n)
            }
            None => self.cmd(mode, unlink_cmd(keys)).await,
        }
    }

    async fn delete_pattern(&self, mode: Mode, pattern: &str) -> Result<u64> {
        #[cfg(feature = "sentinel")]
        if let Target::Sentinel(p) = &self.target {
            p.record(sentinel::Replay::Pattern(pattern.to_owned()));
        }
        let mut deleted = 0u64;
        let mut waited = false;
        let (mut cursor, mut keys): ScanPage = self.cmd(mode, self.scan_cmd(0, pattern)).await?;
        loop {
            if keys.is_empty() {
                if cursor == 0 {
                    break;
                }
                (cursor, keys) = self.cmd(mode, self.scan_cmd(cursor, pattern)).await?;
                continue;
            }
            // Each page's `UNLINK` with its `WAIT` (when there are replicas to wait for) on
            // one connection, and the next page's `SCAN`: one round trip a page.
            let mut pipe = redis::pipe();
            pipe.add_command(unlink_cmd(&keys));
            let wait = self.wait_cmd();
            let waits = wait.is_some();
            waited |= waits;
            if let Some(wait) = wait {
                pipe.add_command(wait);
            }
            let last = cursor == 0;
            if !last {
                pipe.add_command(self.scan_cmd(cursor, pattern));
            }
            let mut replies: Vec<redis::Value> =
                self.run_on(mode, Request::Pipe(pipe), waits).await?;
            let page = if last { None } else { replies.pop() };
            let acked = if waits { replies.pop() } else { None };
            deleted += parse_reply::<u64>(replies.pop())?;
            if let Some(acked) = acked {
                self.replicated(parse_reply(Some(acked))?);
            }
            match page {
                Some(page) => (cursor, keys) = parse_reply(Some(page))?,
                None => break,
            }
        }
        // Nothing found, perhaps because an earlier attempt deleted it: that must reach a
        // replica too.
        if let (false, Some(wait)) = (waited, self.wait_cmd()) {
            let acked: i64 = self.run_on(mode, Request::Cmd(wait), true).await?;
            self.replicated(acked);
        }
        Ok(deleted)
    }

    async fn ping(&self, mode: Mode) -> Result<()> {
        self.cmd(mode, redis::cmd("PING")).await
    }

    async fn ttl(&self, mode: Mode, key: &str) -> Result<KeyTtl> {
        self.breaker.check()?;
        self.cmd(mode, pttl_cmd(key)).await.map(to_ttl)
    }

    async fn keys(&self, mode: Mode, pattern: &str) -> Result<Vec<String>> {
        self.breaker.check()?;
        let (mut cursor, mut found) = (0u64, HashSet::new());
        loop {
            let (next, keys): ScanPage = self.cmd(mode, self.scan_cmd(cursor, pattern)).await?;
            found.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(found
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect())
    }

    async fn set_nx(&self, mode: Mode, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        self.breaker.check()?;
        let written: Option<String> = self.cmd(mode, set_nx_cmd(key, value, ttl)).await?;
        Ok(written.is_some())
    }

    async fn set_if(
        &self,
        mode: Mode,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        self.breaker.check()?;
        let ms = ttl_ms(ttl).to_string();
        self.script(mode, &SET_IF, key, &[expected, value, ms.as_bytes()])
            .await
    }

    async fn delete_if(&self, mode: Mode, key: &str, expected: &[u8]) -> Result<bool> {
        // Lease give-backs wait out an open breaker too (the keeper retries them): only
        // invalidations, by `delete` and `delete_pattern`, always go through.
        self.breaker.check()?;
        self.script(mode, &DELETE_IF, key, &[expected]).await
    }

    async fn renew_if(
        &self,
        mode: Mode,
        key: &str,
        expected: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        // Renewals wait out an open breaker: the keeper must not queue behind a frozen server.
        self.breaker.check()?;
        let ms = ttl_ms(ttl).to_string();
        self.script(mode, &RENEW_IF, key, &[expected, ms.as_bytes()])
            .await
    }

    async fn set_if_aging(
        &self,
        mode: Mode,
        key: &str,
        expected: &[u8],
        max_left: Duration,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        self.breaker.check()?;
        let left = ttl_ms(max_left).to_string();
        let ms = ttl_ms(ttl).to_string();
        let args: &[&[u8]] = &[expected, left.as_bytes(), value, ms.as_bytes()];
        self.script(mode, &SET_IF_AGING, key, args).await
    }

    async fn tag_add(&self, mode: Mode, set: &str, member: &str, life: Duration) -> Result<()> {
        self.breaker.check()?;
        let args = tag_add_args(member, life);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let _: i64 = self.script(mode, &TAG_ADD, set, &args).await?;
        Ok(())
    }

    async fn tag_page(
        &self,
        mode: Mode,
        set: &str,
        from: super::TagCursor,
        count: usize,
    ) -> Result<super::TagPage> {
        // An invalidation: never held back by the breaker.
        let server = (self.generation() << 32) ^ self.breaks.load(Ordering::Relaxed);
        let reply = self.cmd(mode, tag_page_cmd(set, &from, count)).await?;
        Ok(tag_page_of(reply, server))
    }

    async fn tag_forget(&self, mode: Mode, set: &str, entries: &[(String, String)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .script(mode, &TAG_FORGET, set, &forget_args(entries))
            .await?;
        Ok(())
    }
}
