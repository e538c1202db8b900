//! One Redis server: async through one multiplexed connection whose driver lives on the
//! crate's own IO thread (callers send on it from any executor, and it is rebuilt when it
//! breaks), or on a fixed server through a connection of the caller's own tokio runtime when
//! it has one (`local.rs`); sync through a small pool of blocking connections; every round
//! trip bounded by the operation timeout.

use super::{KeyTtl, Store};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::redact::SecretUrl;
use crate::rt::Mode;
use once_cell::sync::Lazy;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, Script};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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
    callers: Option<std::sync::Arc<super::local::CallerConns>>,
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
    Sentinel(std::sync::Arc<super::sentinel::Primary>),
}

/// Fails calls fast while Redis looks down: after `threshold` failed calls in a row
/// (timeouts, refused or dropped connections; not error replies), cache reads and writes
/// fail at once for `cooldown`, then the next calls try again. Invalidations (`delete`,
/// `delete_pattern`) are never held back.
pub(crate) struct Breaker {
    /// What is down, for messages: `redis`, or `cluster node 10.0.0.1:6379`.
    what: String,
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which calls fail fast; 0 when closed.
    open_until: AtomicU64,
    epoch: Instant,
}

impl Breaker {
    pub(crate) fn new(config: &Config, what: impl Into<String>) -> Breaker {
        Breaker {
            what: what.into(),
            threshold: config.breaker_threshold,
            cooldown: config.breaker_cooldown,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn check(&self) -> Result<()> {
        let until = self.open_until.load(Ordering::Relaxed);
        if until == 0 {
            return Ok(());
        }
        let now = self.now_ms();
        if now >= until {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} is taken as down for {} ms more, after {} failed calls in a row",
                self.what,
                until - now,
                self.failures.load(Ordering::Relaxed)
            ),
        ))
    }

    pub(crate) fn record<T>(&self, out: &Result<T>) {
        match out {
            // Writes only when something changes: a shared counter rewritten on every
            // hit would bounce between cores.
            Ok(_) => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                    self.open_until.store(0, Ordering::Relaxed);
                }
            }
            Err(e) if looks_down(e) && self.threshold > 0 => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= self.threshold {
                    let until = self.now_ms() + self.cooldown.as_millis() as u64;
                    self.open_until.store(until, Ordering::Relaxed);
                }
            }
            Err(_) => {}
        }
    }
}

/// A timeout, or a connection refused or lost: signs of a server that is down or stuck,
/// unlike an error reply.
pub(crate) fn looks_down(e: &Error) -> bool {
    e.is_timeout()
        || e.redis_error().is_some_and(|r| {
            r.is_io_error() || r.is_connection_refusal() || r.is_unrecoverable_error()
        })
}

/// A client for one server's URL, with the configuration's TLS certificates; RESP3 when
/// `resp3` (for push messages), RESP2 otherwise.
pub(crate) fn client_for(url: &SecretUrl, config: &Config, resp3: bool) -> Result<redis::Client> {
    // `url` shows masked; only `expose` gives the password, to connect with.
    let invalid =
        |e| Error::with_source(ErrorKind::Config, format!("invalid Redis URL `{url}`"), e);
    let info = url.expose().into_connection_info().map_err(invalid)?;
    // No `CLIENT SETINFO` in the handshake: fewer round trips per connection, and no
    // reads whose failures the handshake ignores (each would wait out a timeout of its own
    // against a frozen server).
    let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
    if resp3 {
        settings = settings.set_protocol(redis::ProtocolVersion::RESP3);
    }
    let info = info.set_redis_settings(settings);
    #[cfg(feature = "tls")]
    {
        let tls = &config.tls;
        if tls.root_cert.is_some() || tls.client_cert_and_key.is_some() {
            let certs = redis::TlsCertificates {
                client_tls: tls.client_cert_and_key.as_ref().map(|(cert, key)| {
                    redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }
                }),
                root_cert: tls.root_cert.clone(),
            };
            return redis::Client::build_with_tls(info, certs).map_err(invalid);
        }
    }
    #[cfg(not(feature = "tls"))]
    let _ = config;
    redis::Client::open(info).map_err(invalid)
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
        let primary = super::sentinel::Primary::new(sentinel, config, client_for)?;
        let what = primary.describe();
        Ok(RedisStore::with_target(
            Target::Sentinel(primary),
            config,
            what,
        ))
    }

    fn with_target(target: Target, config: &Config, what: String) -> RedisStore {
        let callers = match &target {
            Target::Server { client, .. } => Some(super::local::CallerConns::new(
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
        near: &std::sync::Arc<crate::near::NearCache>,
        prefix: String,
        ignore_invalidations: bool,
    ) {
        let servers: crate::near::tracking::Servers = match &self.target {
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
        crate::near::tracking::start(
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
        let out = self.send(mode, req, apart).await;
        self.breaker.record(&out);
        if let Err(e) = &out {
            self.note_failure(e);
        }
        out
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

/// The async connection was lost (the server restarted, or closed it): it is rebuilt, and
/// one retry on the new connection, within the same operation timeout, saves the call.
/// Every command here is safe to repeat.
pub(crate) fn dropped(e: &redis::RedisError) -> bool {
    e.is_unrecoverable_error() || e.is_io_error()
}

/// The async connection and its generation: a caller that saw it fail drops it only if no
/// other caller replaced it meanwhile.
#[derive(Default)]
pub(crate) struct AsyncConn {
    /// The connection, its generation, and the tag of the server it was made for (the
    /// primary's generation on Sentinel, 0 otherwise).
    current: Mutex<Option<(u64, MultiplexedConnection, u64)>>,
    /// Held by the one caller that connects.
    connecting: tokio::sync::Mutex<()>,
    generations: AtomicU64,
}

impl AsyncConn {
    /// The connection, built on first use (and after it broke) on the crate's IO runtime,
    /// which drives it whichever runtime or executor the callers use.
    pub(crate) async fn get(
        &self,
        client: &redis::Client,
        tag: u64,
        connect_timeout: Duration,
    ) -> Result<(u64, MultiplexedConnection)> {
        if let Some(con) = self.current_for(tag) {
            return Ok(con);
        }
        // One caller connects; the others wait for its connection.
        let _connecting = self.connecting.lock().await;
        if let Some(con) = self.current_for(tag) {
            return Ok(con);
        }
        let client = client.clone();
        // No response timeout of redis-rs's own: it would need a timer in the caller's
        // runtime. The caller bounds each request with the crate's own timer instead.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None);
        let connecting = crate::rt::handle().spawn(async move {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
        });
        let con = connecting
            .await
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::Store,
                    "the cacheable IO runtime dropped a connection attempt",
                    e,
                )
            })?
            .map_err(Error::from_redis)?;
        Ok(self.install(con, tag))
    }

    /// The connection, if there is one for the server tagged `tag`.
    pub(crate) fn current_for(&self, tag: u64) -> Option<(u64, MultiplexedConnection)> {
        match &*self.current.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((generation, con, t)) if *t == tag => Some((*generation, con.clone())),
            _ => None,
        }
    }

    fn install(&self, con: MultiplexedConnection, tag: u64) -> (u64, MultiplexedConnection) {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((generation, con.clone(), tag));
        (generation, con)
    }

    pub(crate) fn broken(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|(g, _, _)| *g == generation) {
            *current = None;
        }
    }
}

/// One round trip's worth of work, owned, so that it can run on the crate's IO thread.
enum Request {
    Cmd(Cmd),
    Pipe(redis::Pipeline),
    Script(&'static Script, String, Vec<Vec<u8>>),
    /// `PTTL key` and `GETEX key PX ms` (a sliding read). On a blocking connection it is
    /// written as bytes, not built as a `redis::Pipeline`: a sliding hit then costs what a
    /// plain hit does plus the server's second command (building and encoding the pipeline
    /// would cost as much again).
    Sliding(String, u64),
}

/// RESP for `PTTL key` then `GETEX key PX ms`.
fn sliding_bytes(key: &str, ms: u64) -> Vec<u8> {
    use std::io::Write;
    let ms = ms.to_string();
    let mut out = Vec::with_capacity(64 + 2 * key.len());
    let _ = write!(out, "*2\r\n$4\r\nPTTL\r\n${}\r\n", key.len());
    out.extend_from_slice(key.as_bytes());
    let _ = write!(out, "\r\n*4\r\n$5\r\nGETEX\r\n${}\r\n", key.len());
    out.extend_from_slice(key.as_bytes());
    let _ = write!(out, "\r\n$2\r\nPX\r\n${}\r\n{ms}\r\n", ms.len());
    out
}

fn sliding_pipe(key: &str, ms: u64) -> redis::Pipeline {
    let mut getex = redis::cmd("GETEX");
    getex.arg(key).arg("PX").arg(ms);
    let mut pipe = redis::pipe();
    pipe.add_command(pttl_cmd(key)).add_command(getex);
    pipe
}

impl Request {
    fn query<T: FromRedisValue>(&self, con: &mut redis::Connection) -> redis::RedisResult<T> {
        match self {
            Request::Cmd(cmd) => cmd.query(con),
            Request::Pipe(pipe) => pipe.query(con),
            Request::Script(script, key, args) => {
                let mut call = script.key(key);
                for a in args {
                    call.arg(a.as_slice());
                }
                call.invoke(con)
            }
            Request::Sliding(key, ms) => {
                use redis::ConnectionLike;
                let replies = con.req_packed_commands(&sliding_bytes(key, *ms), 0, 2)?;
                let replies = redis::Value::Array(replies).extract_error()?;
                Ok(T::from_redis_value(replies)?)
            }
        }
    }

    async fn query_async<T: FromRedisValue>(
        &self,
        con: &mut MultiplexedConnection,
    ) -> redis::RedisResult<T> {
        match self {
            Request::Cmd(cmd) => cmd.query_async(con).await,
            Request::Pipe(pipe) => pipe.query_async(con).await,
            Request::Script(script, key, args) => {
                let mut call = script.key(key);
                for a in args {
                    call.arg(a.as_slice());
                }
                call.invoke_async(con).await
            }
            Request::Sliding(key, ms) => sliding_pipe(key, *ms).query_async(con).await,
        }
    }
}

pub(crate) fn get_cmd(key: &str) -> Cmd {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    cmd
}

pub(crate) fn set_cmd(key: &str, value: &[u8], ttl: Duration) -> Cmd {
    let mut cmd = redis::cmd("SET");
    // PX keeps sub-second TTLs; a TTL under 1 ms still lives 1 ms rather than erroring.
    cmd.arg(key).arg(value).arg("PX").arg(ttl_ms(ttl));
    cmd
}

pub(crate) fn unlink_cmd<K: redis::ToRedisArgs>(keys: &[K]) -> Cmd {
    let mut cmd = redis::cmd("UNLINK");
    cmd.arg(keys);
    cmd
}

pub(crate) fn pttl_cmd(key: &str) -> Cmd {
    let mut cmd = redis::cmd("PTTL");
    cmd.arg(key);
    cmd
}

pub(crate) fn to_ttl(ms: i64) -> KeyTtl {
    match ms {
        -2 => KeyTtl::Missing,
        ms if ms < 0 => KeyTtl::Persistent,
        ms => KeyTtl::Expires(Duration::from_millis(ms as u64)),
    }
}

pub(crate) type ScanPage = (u64, Vec<Vec<u8>>);

pub(crate) fn set_nx_cmd(key: &str, value: &[u8], ttl: Duration) -> Cmd {
    let mut cmd = set_cmd(key, value, ttl);
    cmd.arg("NX");
    cmd
}

pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `SET` only while the key holds ARGV[1]: the lease holder's write, which an
/// invalidation during the computation (deleting the lease) turns into a no-op.
pub(crate) static SET_IF: Lazy<Script> = Lazy::new(|| Script::new(SET_IF_LUA));
pub(crate) const SET_IF_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
        redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 \
     end return 0";

/// `PEXPIRE` only while the key holds ARGV[1]: a lease holder keeping its lease alive
/// through a long computation.
pub(crate) static RENEW_IF: Lazy<Script> = Lazy::new(|| Script::new(RENEW_IF_LUA));
pub(crate) const RENEW_IF_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
        return redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
     end return 0";

/// `GET`, and `PEXPIRE` to ARGV[1] ms when the bytes are a value: a sliding read in one
/// round trip that never touches a marker, on any server version (the cluster's sliding
/// read, and one server's before Redis 6.2). Markers start with `\0c` (NUL, then byte
/// 99); a value is JSON text, never NUL first, or another codec's form, `\0` then 0xCB.
pub(crate) static GET_SLIDING: Lazy<Script> = Lazy::new(|| Script::new(GET_SLIDING_LUA));
pub(crate) const GET_SLIDING_LUA: &str = "local v = redis.call('GET', KEYS[1]) \
     if v and (string.byte(v, 1) ~= 0 or string.byte(v, 2) ~= 99) then \
         redis.call('PEXPIRE', KEYS[1], ARGV[1]) \
     end return v";

/// An error reply saying the server does not know the command.
fn unknown_command(e: &Error) -> bool {
    e.redis_error().is_some_and(|r| {
        r.code() == Some("ERR") && r.detail().is_some_and(|d| d.contains("unknown command"))
    })
}

/// `DEL` only while the key holds ARGV[1]: a lease holder giving its lease back.
pub(crate) static DELETE_IF: Lazy<Script> = Lazy::new(|| Script::new(DELETE_IF_LUA));
pub(crate) const DELETE_IF_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
        return redis.call('DEL', KEYS[1]) \
     end return 0";

/// `SET` only while the key holds ARGV[1] with at most ARGV[2] ms to live: an early
/// refresh's write, which an invalidation during the computation (deleting the key, or
/// deleting it and writing it anew) turns into a no-op.
pub(crate) static SET_IF_AGING: Lazy<Script> = Lazy::new(|| Script::new(SET_IF_AGING_LUA));
pub(crate) const SET_IF_AGING_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] \
        and redis.call('PTTL', KEYS[1]) <= tonumber(ARGV[2]) then \
        redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4]) return 1 \
     end return 0";

/// Records ARGV[1] in the tag set KEYS[1] until ARGV[2] (ms since the Unix epoch, on the
/// writer's clock), always with a score other than the one it had (a later expiry it has is
/// kept, plus 1 ms): an invalidation that read the old score then forgets the entry only if
/// nobody recorded the key again meanwhile, even within the same millisecond. Prunes at most
/// 64 entries scored before ARGV[4] (each addition prunes more than it adds, so a set never
/// piles up dead entries, and no call does unbounded work), and stretches the set's TTL to
/// ARGV[3] ms (the entry's life) if it had less: the set never outlives its last live entry
/// by more than that entry's life.
pub(crate) static TAG_ADD: Lazy<Script> = Lazy::new(|| Script::new(TAG_ADD_LUA));
pub(crate) const TAG_ADD_LUA: &str = "local expiry = tonumber(ARGV[2]) \
     local cur = redis.call('ZSCORE', KEYS[1], ARGV[1]) \
     if cur and tonumber(cur) >= expiry then expiry = tonumber(cur) + 1 end \
     redis.call('ZADD', KEYS[1], string.format('%d', expiry), ARGV[1]) \
     local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4], 'LIMIT', 0, 64) \
     if #old > 0 then redis.call('ZREM', KEYS[1], unpack(old)) end \
     if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then \
         redis.call('PEXPIRE', KEYS[1], ARGV[3]) end \
     return 1";

/// The arguments of [`TAG_ADD`] for an entry of `member` that lives `life` from now.
pub(crate) fn tag_add_args(member: &str, life: Duration) -> [Vec<u8>; 4] {
    let now = super::unix_ms();
    let expiry = now.saturating_add(ttl_ms(life));
    let cutoff = now.saturating_sub(ttl_ms(super::TAG_CLOCK_SLACK));
    [
        member.as_bytes().to_vec(),
        expiry.to_string().into_bytes(),
        ttl_ms(life).to_string().into_bytes(),
        cutoff.to_string().into_bytes(),
    ]
}

/// `ZSCAN set cursor COUNT count`: one page of a tag set.
pub(crate) fn tag_page_cmd(set: &str, from: &super::TagCursor, count: usize) -> Cmd {
    let cursor = match from {
        super::TagCursor::Scan(c) => *c,
        super::TagCursor::Start | super::TagCursor::After(_) => 0,
    };
    let mut cmd = redis::cmd("ZSCAN");
    cmd.arg(set).arg(cursor).arg("COUNT").arg(count);
    cmd
}

/// A `ZSCAN` reply as a page, read from `server` (see [`TagPage::server`](super::TagPage)).
pub(crate) fn tag_page_of((cursor, flat): (u64, Vec<String>), server: u64) -> super::TagPage {
    super::TagPage {
        entries: pairs(flat),
        next: (cursor != 0).then_some(super::TagCursor::Scan(cursor)),
        server,
    }
}

/// Removes from the tag set KEYS[1] each member ARGV[i] whose score is still ARGV[i+1] (as
/// numbers: `ZSCAN` and `ZSCORE` need not write a score alike): an entry re-added since (by
/// a computation that began after the listing) stays. The scores are read in one
/// `ZMSCORE` and the members removed in one `ZREM`, 500 at a time (a page is smaller, but
/// `ZSCAN` returns a small set whole, and Lua's `unpack` takes at most ~8,000); before
/// Redis 6.2, one `ZSCORE` per member.
pub(crate) static TAG_FORGET: Lazy<Script> = Lazy::new(|| Script::new(TAG_FORGET_LUA));
pub(crate) const TAG_FORGET_LUA: &str = "local n, gone = #ARGV / 2, 0 \
     for first = 1, n, 500 do \
         local last = math.min(first + 499, n) \
         local members = {} \
         for i = first, last do members[#members + 1] = ARGV[2 * i - 1] end \
         local scores = redis.pcall('ZMSCORE', KEYS[1], unpack(members)) \
         if type(scores) ~= 'table' or scores.err then \
             scores = {} \
             for i, m in ipairs(members) do scores[i] = redis.call('ZSCORE', KEYS[1], m) end \
         end \
         local stale = {} \
         for i, m in ipairs(members) do \
             local cur = scores[i] \
             if cur and tonumber(cur) == tonumber(ARGV[2 * (first + i - 1)]) then \
                 stale[#stale + 1] = m \
             end \
         end \
         if #stale > 0 then redis.call('ZREM', KEYS[1], unpack(stale)) end \
         gone = gone + #stale \
     end \
     return gone";

/// One reply of a pipeline, parsed (an error reply is the error).
fn parse_reply<T: FromRedisValue>(reply: Option<redis::Value>) -> Result<T> {
    let reply = reply.ok_or_else(|| Error::new(ErrorKind::Store, "a pipeline reply is missing"))?;
    let reply = reply.extract_error().map_err(Error::from_redis)?;
    redis::from_redis_value(reply).map_err(|e| Error::from_redis(e.into()))
}

/// Pairs a flat `member, score, member, score…` reply.
pub(crate) fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(m), Some(s)) = (it.next(), it.next()) {
        out.push((m, s));
    }
    out
}

/// The arguments of [`TAG_FORGET`].
pub(crate) fn forget_args(entries: &[(String, String)]) -> Vec<&[u8]> {
    entries
        .iter()
        .flat_map(|(m, s)| [m.as_bytes(), s.as_bytes()])
        .collect()
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
            p.record(super::sentinel::Replay::Keys(
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
            p.record(super::sentinel::Replay::Pattern(pattern.to_owned()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sliding_bytes_are_what_redis_rs_would_send() {
        for key in ["k", "p:user:42:profile", "p:é%3A:[x]", ""] {
            for ms in [1, 999, 86_400_000] {
                assert_eq!(
                    sliding_bytes(key, ms),
                    sliding_pipe(key, ms).get_packed_pipeline(),
                    "{key:?} {ms}"
                );
            }
        }
    }
}
