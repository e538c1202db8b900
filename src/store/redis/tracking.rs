//! The tracking connection of a near cache on Redis: a RESP3 connection of its own, on the
//! crate's IO thread, with `CLIENT TRACKING ON BCAST PREFIX <prefix>`, so that Redis sends
//! an invalidation for every change of a key under the cache's prefix, whoever makes it
//! (a write, a deletion, an expiry, an eviction, a flush), and this process evicts it.
//!
//! BCAST rather than the default mode: the default mode tracks the keys each connection
//! read, so every data connection (the async one and each pooled blocking one, after each
//! reconnection) would need `CLIENT TRACKING … REDIRECT <id>` and the server would keep a
//! table of keys per client. BCAST needs nothing of the data connections and no memory on
//! the server; it sends an invalidation for each change under the prefix, which is what a
//! cache's prefix holds anyway.
//!
//! Invalidations are applied as they are parsed, on the IO thread. The near cache is
//! trusted only while the connection is up and its tracking confirmed: a dropped or killed
//! connection, a server restart, or a `PING` that fails (every 500 ms) drops every entry,
//! and the connection is rebuilt.

use crate::store::Tracked;
use redis::{PushInfo, PushKind, Value};
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the tracking connection is checked, and so the longest a connection that
/// went silent (a network partition) can go unnoticed.
const HEALTH_CHECK: Duration = Duration::from_millis(500);

/// Where to track: the generation of the server set and a RESP3 client for each server
/// (one for one server; each primary of a cluster), or `None` while unknown. A new
/// generation (a cluster's primaries changed) reconnects every tracking connection.
pub(crate) type Servers = Box<dyn Fn() -> Option<(u64, Vec<redis::Client>)> + Send + Sync>;

/// Starts tracking on the crate's IO thread. It ends when the near cache is dropped.
pub(crate) fn start(
    near: &Arc<dyn Tracked>,
    servers: Servers,
    prefix: String,
    (op_timeout, connect_timeout): (Duration, Duration),
    ignore_invalidations: bool,
) {
    let near = Arc::downgrade(near);
    let timeouts = (op_timeout, connect_timeout);
    crate::rt::handle().spawn(track(near, servers, prefix, timeouts, ignore_invalidations));
}

fn apply(near: &dyn Tracked, info: &PushInfo, ignore_invalidations: bool) {
    match info.kind {
        PushKind::Invalidate if ignore_invalidations => {}
        PushKind::Invalidate => match info.data.first() {
            Some(Value::Array(keys)) => {
                for key in keys {
                    match key {
                        Value::BulkString(k) => match std::str::from_utf8(k) {
                            Ok(k) => near.invalidate(k),
                            // Not a key this cache wrote; drop everything rather than guess.
                            Err(_) => near.flush(),
                        },
                        _ => near.flush(),
                    }
                }
            }
            // A flush (`FLUSHDB`, `FLUSHALL`): every key changed.
            _ => near.flush(),
        },
        PushKind::Disconnection => near.distrust(),
        _ => {}
    }
}

/// Opens one tracking connection to `client`.
async fn connect(
    client: &redis::Client,
    near: &Weak<dyn Tracked>,
    lost: &Arc<tokio::sync::Notify>,
    prefix: &str,
    (op_timeout, connect_timeout): (Duration, Duration),
    ignore_invalidations: bool,
) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
    let sender = {
        let (near, lost) = (near.clone(), lost.clone());
        move |info: PushInfo| -> Result<(), ()> {
            let Some(near) = near.upgrade() else {
                return Err(());
            };
            apply(&*near, &info, ignore_invalidations);
            if info.kind == PushKind::Disconnection {
                lost.notify_one();
            }
            Ok(())
        }
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(op_timeout))
        .set_push_sender(sender);
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(prefix)
        .query_async::<()>(&mut con)
        .await?;
    Ok(con)
}

async fn track(
    near: Weak<dyn Tracked>,
    servers: Servers,
    prefix: String,
    timeouts: (Duration, Duration),
    ignore_invalidations: bool,
) {
    let mut pause = Duration::from_millis(20);
    // When a refusal was last logged.
    let mut warned: Option<std::time::Instant> = None;
    loop {
        let lost = Arc::new(tokio::sync::Notify::new());
        let tracked = match servers() {
            None => None,
            Some((generation, clients)) => {
                let mut cons = Vec::with_capacity(clients.len());
                for client in &clients {
                    let con = connect(
                        client,
                        &near,
                        &lost,
                        &prefix,
                        timeouts,
                        ignore_invalidations,
                    )
                    .await;
                    match con {
                        Ok(con) => cons.push(con),
                        Err(e) => {
                            if let Some(n) = near.upgrade() {
                                n.failed(e.to_string());
                            }
                            if refused(&e) {
                                // It will not work by retrying: say so, and retry seldom.
                                if warned.is_none_or(|at| at.elapsed() >= REFUSED_WARN_EVERY) {
                                    warned = Some(std::time::Instant::now());
                                    log::warn!(target: "cacheable", "near cache of prefix `{prefix}`: Redis refused to track invalidations ({e}), so the near cache serves nothing and every call reads Redis. Grant the cache's Redis user `+client|tracking` (docs/stores.md, Least privilege), use Redis 6 or later, or turn the near cache off (Config::near_cache, `near_cache=` in the URL). Retrying every {} s", REFUSED_RETRY.as_secs());
                                }
                                pause = REFUSED_RETRY;
                            } else {
                                // Back from a refusal's long pause to the usual backoff.
                                pause = pause.min(Duration::from_secs(1));
                                log::debug!(target: "cacheable", "near cache: a tracking connection failed, retrying in {} ms: {e}", pause.as_millis());
                            }
                            cons.clear();
                            break;
                        }
                    }
                }
                (!cons.is_empty()).then_some((generation, cons))
            }
        };
        if let Some((generation, mut cons)) = tracked {
            let Some(n) = near.upgrade() else { return };
            n.trust();
            // The servers changed while connecting (a Sentinel primary came into doubt, and
            // its doubt distrusted the near cache before this trust): not trusted after all.
            if servers().is_none_or(|(g, _)| g != generation) {
                n.distrust();
                continue;
            }
            drop(n);
            pause = Duration::from_millis(20);
            'healthy: loop {
                let mut notified = std::pin::pin!(lost.notified());
                let mut check = std::pin::pin!(tokio::time::sleep(HEALTH_CHECK));
                let gone = std::future::poll_fn(|cx| {
                    if notified.as_mut().poll(cx).is_ready() {
                        std::task::Poll::Ready(true)
                    } else if check.as_mut().poll(cx).is_ready() {
                        std::task::Poll::Ready(false)
                    } else {
                        std::task::Poll::Pending
                    }
                })
                .await;
                if gone || near.strong_count() == 0 {
                    break;
                }
                // The servers changed (a cluster's failover or resharding): track the new set.
                if servers().is_none_or(|(g, _)| g != generation) {
                    break;
                }
                for con in &mut cons {
                    if redis::cmd("PING").query_async::<()>(con).await.is_err() {
                        break 'healthy;
                    }
                }
            }
        }
        match near.upgrade() {
            Some(n) => n.distrust(),
            None => return,
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1).max(pause));
    }
}

/// How often a refused tracking connection is tried again, and logged at most.
const REFUSED_RETRY: Duration = Duration::from_secs(30);
const REFUSED_WARN_EVERY: Duration = Duration::from_secs(600);

/// A refusal that retrying will not mend: a permission the user lacks, a command the server
/// does not know (`CLIENT TRACKING` and `HELLO` before Redis 6, or renamed away).
fn refused(e: &redis::RedisError) -> bool {
    e.code() == Some("NOPERM")
        || e.detail().is_some_and(|d| {
            let d = d.to_ascii_lowercase();
            d.contains("unknown command") || d.contains("unknown subcommand")
        })
        || matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
}
