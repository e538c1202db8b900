//! Redis Sentinel: which server is the primary, and following it through failovers.
//!
//! [`SentinelPrimary`] asks the Sentinels (`SENTINEL GET-MASTER-ADDR-BY-NAME`), checks that the
//! server they name reports the `master` role, and hands the one-server store
//! (`RedisStore`, which builds on this module) a client for it with a generation number. The
//! store tags every connection it makes with that generation and drops the ones of an
//! older generation, so that once a new primary is installed, no request goes to the old
//! one (which, demoted, would serve reads it no longer receives the invalidations for).
//!
//! The primary is looked up again when:
//! - a Sentinel announces `+switch-master` for the service (a RESP3 subscription on the
//!   crate's IO thread, to whichever Sentinel answers);
//! - a call saw a sign of a failover (a timeout, a refused or lost connection, a `READONLY`
//!   reply): the store calls [`SentinelPrimary::suspect`], and its next connection waits for a
//!   fresh answer (bounded by the operation timeout);
//! - every second, in case both of the above missed it (a subscription that was down at
//!   the moment of the switch).
//!
//! The crate asks the Sentinels itself rather than through redis-rs's `sentinel` module:
//! that module's look-ups have no timeout of their own and run on the caller's runtime,
//! where this crate bounds every step by its own timeouts and runs its connections on its
//! IO thread; the protocol is two commands.

use crate::config::{Config, SentinelConfig, PRIMARY_HOST};
use crate::error::{Error, ErrorKind, Result};
use crate::redact::SecretUrl;
use redis::{AsyncConnectionConfig, PushKind, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How often the primary's address is checked with the Sentinels when nothing announced
/// a change.
const POLL: Duration = Duration::from_secs(1);

/// After a look-up failed, callers get its error rather than start another for this long.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// How long an invalidation is remembered, to be sent again to a new primary: longer than
/// the Sentinels take to notice a dead primary and promote a replica (30 s with their
/// default `down-after-milliseconds`, plus the election).
const REPLAY_WINDOW: Duration = Duration::from_secs(60);

/// At most this many invalidations are remembered; older ones are forgotten first (and the
/// count of forgotten ones is logged at the next switch).
const REPLAY_MAX: usize = 10_000;

/// An invalidation to send again to a new primary.
pub(crate) enum Replay {
    Keys(Vec<String>),
    Pattern(String),
}

/// The invalidations of the last [`REPLAY_WINDOW`], oldest first, numbered.
#[derive(Default)]
struct Recent {
    entries: std::collections::VecDeque<(Instant, u64, Replay)>,
    next: u64,
    /// Invalidations forgotten to keep the bound since the last switch.
    dropped: u64,
}

/// The primary as last resolved.
pub(crate) struct Resolved {
    pub(crate) generation: u64,
    pub(crate) addr: (String, u16),
    /// RESP2, for the data connections.
    pub(crate) client: redis::Client,
    /// RESP3, for the near cache's tracking connection.
    pub(crate) tracking: redis::Client,
}

/// Makes a client for a server's URL with the configuration's TLS settings, RESP3 when
/// asked: the one-server store's, handed down so that this module needs nothing of it.
pub(crate) type ClientFor = fn(&SecretUrl, &Config, bool) -> Result<redis::Client>;

pub(crate) struct SentinelPrimary {
    service: String,
    client_for: ClientFor,
    /// Each Sentinel's client (RESP2) and its URL for messages.
    sentinels: Vec<(redis::Client, SecretUrl)>,
    /// RESP3 clients of the Sentinels, for the `+switch-master` subscription.
    subscribers: Vec<redis::Client>,
    node: SecretUrl,
    config: Config,
    current: Mutex<Option<Arc<Resolved>>>,
    /// The generation of `current`, readable without the lock; 0 before the first.
    generation: AtomicU64,
    /// Set when a call saw a sign that the primary changed: the next connection asks first.
    suspect: AtomicBool,
    /// Held by the one look-up under way; holds the connection to the Sentinel that
    /// answered last, reused by the next look-up.
    resolving: tokio::sync::Mutex<Option<(usize, redis::aio::MultiplexedConnection)>>,
    /// When the last look-up failed, and why (shown masked).
    failed: Mutex<Option<(Instant, String)>>,
    /// This process's recent invalidations: Redis replicates asynchronously, so one the old
    /// primary acknowledged just before it died, or one sent to it between the promotion
    /// and this process's switch, may be missing on the new primary; they are sent again
    /// there before any call reads from it.
    recent: Mutex<Recent>,
    /// How many replicas the Sentinels list for the primary and take as up, as last asked
    /// (`usize::MAX` before the first answer): invalidations wait for one while any is.
    replicas: AtomicUsize,
    /// Invalidations whose deletions no replica acknowledged in time, and when that was
    /// last logged (ms since `epoch`).
    unreplicated: AtomicU64,
    unreplicated_logged: AtomicU64,
    epoch: Instant,
    /// Bumped each time the primary comes into doubt (see [`doubt`](SentinelPrimary::doubt)).
    doubts: AtomicU64,
    /// Called on each doubt: the near caches on this primary stop serving at once.
    on_doubt: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl SentinelPrimary {
    pub(crate) fn new(
        sentinel: &SentinelConfig,
        config: &Config,
        client_for: ClientFor,
    ) -> Result<Arc<SentinelPrimary>> {
        let mut sentinels = Vec::new();
        let mut subscribers = Vec::new();
        for url in &sentinel.sentinels {
            sentinels.push((client_for(url, config, false)?, url.clone()));
            subscribers.push(client_for(url, config, true)?);
        }
        let primary = Arc::new(SentinelPrimary {
            service: sentinel.service.clone(),
            client_for,
            sentinels,
            subscribers,
            node: sentinel.node.clone(),
            config: config.clone(),
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            suspect: AtomicBool::new(false),
            resolving: tokio::sync::Mutex::new(None),
            failed: Mutex::new(None),
            recent: Mutex::new(Recent::default()),
            replicas: AtomicUsize::new(usize::MAX),
            unreplicated: AtomicU64::new(0),
            unreplicated_logged: AtomicU64::new(0),
            epoch: Instant::now(),
            doubts: AtomicU64::new(0),
            on_doubt: Mutex::new(Vec::new()),
        });
        crate::rt::handle().spawn(watch(Arc::downgrade(&primary)));
        Ok(primary)
    }

    /// Remembers an invalidation (before it is sent), to send it again to a new primary.
    pub(crate) fn record(&self, replay: Replay) {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        while recent
            .entries
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) > REPLAY_WINDOW)
        {
            recent.entries.pop_front();
        }
        if recent.entries.len() >= REPLAY_MAX {
            recent.entries.pop_front();
            recent.dropped += 1;
        }
        let seq = recent.next;
        recent.next += 1;
        recent.entries.push_back((now, seq, replay));
    }

    /// Sends again, on `con` (the new primary), the remembered invalidations numbered
    /// `from` or later; returns the number after the last one sent.
    async fn replay(&self, con: &mut redis::aio::MultiplexedConnection, from: u64) -> Result<u64> {
        let (batch, next, dropped) = {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let batch: Vec<Replay> = recent
                .entries
                .iter()
                .filter(|(at, seq, _)| *seq >= from && at.elapsed() <= REPLAY_WINDOW)
                .map(|(_, _, r)| match r {
                    Replay::Keys(keys) => Replay::Keys(keys.clone()),
                    Replay::Pattern(p) => Replay::Pattern(p.clone()),
                })
                .collect();
            (batch, recent.next, std::mem::take(&mut recent.dropped))
        };
        if dropped > 0 {
            log::warn!(target: "cacheable", "{}: {dropped} invalidations were more than the {REPLAY_MAX} kept to send again to a new primary; the oldest of them are not sent again", self.describe());
        }
        let mut keys: Vec<&str> = Vec::new();
        let mut patterns = std::collections::HashSet::new();
        for r in &batch {
            match r {
                Replay::Keys(k) => keys.extend(k.iter().map(String::as_str)),
                // Each pattern once, however often it was invalidated.
                Replay::Pattern(pattern) if !patterns.insert(pattern.as_str()) => {}
                Replay::Pattern(pattern) => {
                    let mut cursor = 0u64;
                    loop {
                        let (next, found): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(self.config.scan_count)
                            .query_async(con)
                            .await
                            .map_err(Error::from_redis)?;
                        if !found.is_empty() {
                            redis::cmd("UNLINK")
                                .arg(&found)
                                .query_async::<u64>(con)
                                .await
                                .map_err(Error::from_redis)?;
                        }
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                }
            }
        }
        keys.sort_unstable();
        keys.dedup();
        for chunk in keys.chunks(500) {
            redis::cmd("UNLINK")
                .arg(chunk)
                .query_async::<u64>(con)
                .await
                .map_err(Error::from_redis)?;
        }
        if !batch.is_empty() {
            log::info!(target: "cacheable", "{}: sent {} recent invalidations again to the new primary", self.describe(), batch.len());
        }
        Ok(next)
    }

    /// How many replicas of the primary the Sentinels take as up (as last asked).
    pub(crate) fn replicas(&self) -> usize {
        self.replicas.load(Ordering::Relaxed)
    }

    /// No replica acknowledged an invalidation's deletions within `waited`: counted, and
    /// logged at most once a second.
    pub(crate) fn unreplicated(&self, waited: Duration) {
        let count = self.unreplicated.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.epoch.elapsed().as_millis() as u64 + 1000;
        let last = self.unreplicated_logged.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .unreplicated_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(target: "cacheable", "{}: no replica acknowledged an invalidation's deletions within {} ms (WAIT); they stand on the primary, and a failover now sends them again to the new one ({count} such invalidations so far)", self.describe(), waited.as_millis());
        }
    }

    /// What is down, for the breaker's messages.
    pub(crate) fn describe(&self) -> String {
        format!("the redis primary of Sentinel service `{}`", self.service)
    }

    /// The generation of the primary in use; 0 before the first look-up.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a call saw a sign of a failover since the last look-up.
    pub(crate) fn is_suspect(&self) -> bool {
        self.suspect.load(Ordering::Relaxed)
    }

    pub(crate) fn current(&self) -> Option<Arc<Resolved>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Calls `f` each time the primary comes into doubt.
    pub(crate) fn on_doubt(&self, f: Box<dyn Fn() + Send + Sync>) {
        self.on_doubt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(f);
    }

    /// How many times the primary came into doubt: a tracking connection made before the
    /// last doubt is not to be trusted.
    pub(crate) fn doubts(&self) -> u64 {
        self.doubts.load(Ordering::Acquire)
    }

    /// The primary may have changed (a `+switch-master`, a failed or refused call, a
    /// `READONLY` reply, a new address from the Sentinels): the near caches stop serving now,
    /// before anything else, and resume once their tracking runs on whichever server the
    /// Sentinels name (the count goes up first, so a tracking connection confirmed meanwhile
    /// sees it and is not trusted).
    fn doubt(&self) {
        self.doubts.fetch_add(1, Ordering::AcqRel);
        for f in self
            .on_doubt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            f();
        }
    }

    /// A call saw a sign that the primary may have changed: look again, now in the
    /// background, and before the next connection.
    pub(crate) fn suspect(self: &Arc<Self>) {
        self.doubt();
        if !self.suspect.swap(true, Ordering::Relaxed) {
            let primary = self.clone();
            crate::rt::handle().spawn(async move {
                let _ = primary.refresh().await;
            });
        }
    }

    /// The primary to connect to: the current one, or a fresh answer when there is none
    /// yet or a call suspected a change. Runs the look-up on the IO thread.
    pub(crate) async fn resolve(self: &Arc<Self>) -> Result<Arc<Resolved>> {
        if !self.is_suspect() {
            if let Some(current) = self.current() {
                return Ok(current);
            }
        }
        self.recent_failure()?;
        let primary = self.clone();
        crate::rt::handle()
            .spawn(async move { primary.refresh().await })
            .await
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::Store,
                    "the cacheable IO runtime dropped a Sentinel look-up",
                    e,
                )
            })?
    }

    /// [`resolve`](SentinelPrimary::resolve) for a blocking caller, waiting at most `wait`.
    pub(crate) fn resolve_blocking(self: &Arc<Self>, wait: Duration) -> Result<Arc<Resolved>> {
        if !self.is_suspect() {
            if let Some(current) = self.current() {
                return Ok(current);
            }
        }
        self.recent_failure()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let primary = self.clone();
        crate::rt::handle().spawn(async move {
            let _ = tx.send(primary.refresh().await);
        });
        match rx.recv_timeout(wait) {
            Ok(out) => out,
            Err(_) => Err(Error::timeout("Sentinel look-up of the primary", wait)),
        }
    }

    /// The last look-up's error, if it failed a moment ago: callers do not queue up
    /// look-ups while the Sentinels have no answer.
    fn recent_failure(&self) -> Result<()> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        match &*failed {
            Some((at, why)) if at.elapsed() < RETRY_AFTER => Err(Error::new(
                ErrorKind::Unavailable,
                format!("{} is unknown for now: {why}", self.describe()),
            )),
            _ => Ok(()),
        }
    }

    /// Asks the Sentinels which server is the primary and installs it if it changed (or
    /// checks it still is the primary, after a suspicion). One at a time.
    async fn refresh(self: Arc<Self>) -> Result<Arc<Resolved>> {
        let out = self.refresh_inner().await;
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        match &out {
            Ok(_) => *failed = None,
            Err(e) => *failed = Some((Instant::now(), e.to_string())),
        }
        out
    }

    async fn refresh_inner(&self) -> Result<Arc<Resolved>> {
        let mut sentinel = self.resolving.lock().await;
        let suspect = self.suspect.swap(false, Ordering::Relaxed);
        let addr = match self.ask(&mut sentinel).await {
            Ok(addr) => addr,
            Err(e) => {
                if suspect {
                    self.suspect.store(true, Ordering::Relaxed);
                }
                return Err(e);
            }
        };
        if let Some((_, con)) = sentinel.as_mut() {
            self.count_replicas(con).await;
        }
        let current = self.current();
        if let Some(current) = &current {
            if current.addr == addr && !suspect {
                return Ok(current.clone());
            }
        }
        let url = SecretUrl::new(&node_url(self.node.expose(), &addr));
        let client = (self.client_for)(&url, &self.config, false)?;
        let mut con = match self.check_role(&client, &url).await {
            Ok(con) => con,
            Err(e) => {
                // Look again before the next connection: the Sentinels may be mid-failover.
                self.suspect.store(true, Ordering::Relaxed);
                return Err(e);
            }
        };
        if let Some(current) = current.as_ref() {
            if current.addr == addr {
                return Ok(current.clone());
            }
        }
        // A new primary: before any call reads from it, the invalidations it may have
        // missed. (Not for the first primary: there is no other it could have missed.)
        let replayed = if current.is_some() {
            match self.replay(&mut con, 0).await {
                Ok(next) => Some(next),
                Err(e) => {
                    self.suspect.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let resolved = Arc::new(Resolved {
            generation: self.generation() + 1,
            addr,
            client,
            tracking: (self.client_for)(&url, &self.config, true)?,
        });
        if current.is_some() {
            // A new primary seen by a look-up (the periodic one, perhaps): the old one's
            // tracking no longer tells its near caches anything.
            self.doubt();
        }
        let previous = {
            let mut slot = self.current.lock().unwrap_or_else(|e| e.into_inner());
            let previous = slot.replace(resolved.clone());
            self.generation
                .store(resolved.generation, Ordering::Release);
            previous
        };
        // Invalidations that callers sent to the old primary while the first replay ran.
        if let Some(next) = replayed {
            if let Err(e) = self.replay(&mut con, next).await {
                log::warn!(target: "cacheable", "{}: invalidations sent to the old primary during the switch could not be sent again to the new one: {e:#}", self.describe());
            }
        }
        match previous {
            Some(previous) => log::warn!(
                target: "cacheable",
                "{}: the primary is now {}:{} (was {}:{}); connections move to it",
                self.describe(), resolved.addr.0, resolved.addr.1, previous.addr.0, previous.addr.1
            ),
            None => log::info!(
                target: "cacheable",
                "{}: the primary is {}:{}",
                self.describe(), resolved.addr.0, resolved.addr.1
            ),
        }
        Ok(resolved)
    }

    fn connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(
                self.config.connect_timeout.min(self.config.op_timeout),
            ))
            .set_response_timeout(Some(self.config.op_timeout))
    }

    /// The primary's address from the first Sentinel that knows it, starting with the one
    /// that answered last.
    async fn ask(
        &self,
        kept: &mut Option<(usize, redis::aio::MultiplexedConnection)>,
    ) -> Result<(String, u16)> {
        let start = kept.as_ref().map_or(0, |(i, _)| *i);
        let mut errors = Vec::new();
        for step in 0..self.sentinels.len() {
            let i = (start + step) % self.sentinels.len();
            let (client, url) = &self.sentinels[i];
            let mut con = match kept.take() {
                Some((j, con)) if j == i => con,
                _ => match client
                    .get_multiplexed_async_connection_with_config(&self.connection_config())
                    .await
                {
                    Ok(con) => con,
                    Err(e) => {
                        errors.push(format!("{url}: {e}"));
                        continue;
                    }
                },
            };
            let reply: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(&self.service)
                .query_async(&mut con)
                .await;
            match reply {
                Ok(Some(addr)) => {
                    *kept = Some((i, con));
                    return Ok(addr);
                }
                Ok(None) => {
                    *kept = Some((i, con));
                    errors.push(format!("{url}: monitors no service `{}`", self.service));
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "no Sentinel named the primary of `{}`: {}",
                self.service,
                errors.join("; ")
            ),
        ))
    }

    /// Asks the Sentinel on `con` how many replicas of the primary it takes as up (`SENTINEL
    /// REPLICAS`, flags without `s_down`, `o_down` or `disconnected`). A Sentinel that does
    /// not answer leaves the count as it was (before any answer: taken as some, so that
    /// invalidations wait for a replica).
    async fn count_replicas(&self, con: &mut redis::aio::MultiplexedConnection) {
        let reply: redis::RedisResult<Vec<std::collections::HashMap<String, String>>> =
            redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(&self.service)
                .query_async(con)
                .await;
        if let Ok(replicas) = reply {
            let up = replicas
                .iter()
                .filter(|r| {
                    r.get("flags").is_some_and(|f| {
                        !f.split(',')
                            .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
                    })
                })
                .count();
            self.replicas.store(up, Ordering::Relaxed);
        }
    }

    /// A connection to the server at `client`, unless it is not a primary.
    async fn check_role(
        &self,
        client: &redis::Client,
        url: &SecretUrl,
    ) -> Result<redis::aio::MultiplexedConnection> {
        let mut con = client
            .get_multiplexed_async_connection_with_config(&self.connection_config())
            .await
            .map_err(Error::from_redis)?;
        // `WAIT 0 0` answers at once on a primary and is refused by a replica ("WAIT cannot
        // be used with replica instances"); unlike `ROLE` or `INFO`, it is in `@connection`,
        // so a user without `@dangerous` commands may run it.
        let reply: redis::RedisResult<i64> =
            redis::cmd("WAIT").arg(0).arg(0).query_async(&mut con).await;
        let replica = match reply {
            Ok(_) => false,
            // "…replica instances" (Redis 5 and later), "…slave instances" before.
            Err(e)
                if e.detail()
                    .is_some_and(|d| d.contains("replica") || d.contains("slave")) =>
            {
                true
            }
            Err(e) => return Err(Error::from_redis(e)),
        };
        if !replica {
            Ok(con)
        } else {
            Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{}: the Sentinels name {url}, which is not a primary (yet): a failover is under way",
                    self.describe()
                ),
            ))
        }
    }

    /// Subscribes to `+switch-master` on the first Sentinel that accepts; `changed` is
    /// notified on each announcement for this service, and on the connection's loss.
    async fn subscribe(
        &self,
        changed: &Arc<tokio::sync::Notify>,
        lost: &Arc<AtomicBool>,
    ) -> Option<redis::aio::MultiplexedConnection> {
        for client in &self.subscribers {
            let sender = {
                let (changed, lost) = (changed.clone(), lost.clone());
                let service = self.service.clone();
                move |info: redis::PushInfo| -> std::result::Result<(), ()> {
                    match info.kind {
                        // [channel, "SERVICE old-ip old-port new-ip new-port"]
                        PushKind::Message => {
                            let ours = matches!(info.data.get(1), Some(Value::BulkString(b))
                                if b.split(|c| *c == b' ').next() == Some(service.as_bytes()));
                            if ours {
                                changed.notify_one();
                            }
                        }
                        PushKind::Disconnection => {
                            lost.store(true, Ordering::Relaxed);
                            changed.notify_one();
                        }
                        _ => {}
                    }
                    Ok(())
                }
            };
            let config = self.connection_config().set_push_sender(sender);
            let Ok(mut con) = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            else {
                continue;
            };
            if con.subscribe("+switch-master").await.is_ok() {
                return Some(con);
            }
        }
        None
    }
}

/// Follows the primary for as long as the store lives: on each `+switch-master` for the
/// service, and every [`POLL`], asks the Sentinels again.
async fn watch(primary: Weak<SentinelPrimary>) {
    loop {
        let changed = Arc::new(tokio::sync::Notify::new());
        let lost = Arc::new(AtomicBool::new(false));
        let subscription = match primary.upgrade() {
            Some(p) => p.subscribe(&changed, &lost).await,
            None => return,
        };
        if subscription.is_none() {
            log::debug!(target: "cacheable", "Sentinel: no Sentinel took the +switch-master subscription; polling every {} ms", POLL.as_millis());
        }
        loop {
            let announced = tokio::time::timeout(POLL, changed.notified()).await.is_ok();
            let Some(p) = primary.upgrade() else { return };
            if announced && !lost.load(Ordering::Relaxed) {
                p.doubt();
                p.suspect.store(true, Ordering::Relaxed);
            }
            if p.current().is_some() || announced {
                let _ = p.clone().refresh().await;
            }
            if lost.load(Ordering::Relaxed) || subscription.is_none() {
                break;
            }
        }
    }
}

/// The node URL `template` with the placeholder host replaced by `addr`.
fn node_url(template: &str, (host, port): &(String, u16)) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    template.replacen(PRIMARY_HOST, &format!("{host}:{port}"), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_keep_credentials_database_and_query() {
        let template = format!("redis://u:p%40w@{PRIMARY_HOST}/3?protocol=resp3");
        assert_eq!(
            node_url(&template, &("10.0.0.2".into(), 6380)),
            "redis://u:p%40w@10.0.0.2:6380/3?protocol=resp3"
        );
        assert_eq!(
            node_url(&format!("rediss://{PRIMARY_HOST}/0"), &("::1".into(), 6379)),
            "rediss://[::1]:6379/0"
        );
    }
}
