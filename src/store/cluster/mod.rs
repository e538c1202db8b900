//! A Redis Cluster, through redis-rs's cluster clients and a slot map of the store's own.
//!
//! - Async one-key calls go from the caller straight to the key's primary, on a multiplexed
//!   connection of that node's own whose driver lives on the crate's IO thread (as on one
//!   server: no task per request, any executor); one that meets MOVED, ASK or READONLY is
//!   sent again through redis-rs's async cluster connection (also on the IO thread), which
//!   follows redirections.
//! - Blocking calls use a small pool of redis-rs's blocking cluster connections, with
//!   redis-rs's retries off so that a call is one attempt within the operation timeout;
//!   this store follows one MOVED or ASK itself, and drops pooled connections whose own slot
//!   map went stale.
//! - The slot map (from `CLUSTER SLOTS`, reread in the background after faults and every
//!   half minute) gives what redis-rs does not: a breaker per primary, so a dead primary
//!   costs only its own slots' callers; `SCAN` on every primary at once for pattern
//!   operations, or on the one primary that owns a pattern's literal hash tag; and
//!   deletions grouped by slot, so that no command ever spans two slots.
//!
//! Every operation on one key is one command (or one script) on that key's slot, and every
//! round trip is bounded by the operation timeout.

mod fanout;
mod route;
mod slot;
mod topology;

use fanout::on_io_thread;
use route::{parse, topology_fault, Op};
use slot::{by_slot, slot_route, SlotKeys, SLOTS};
pub(crate) use slot::{pattern_slot, slot};
use topology::{node_url, Addr, Link, Node, Primary, Target, Topology, Way, NONE};

use super::redis::{
    client_for, dropped, get_cmd, looks_down, many_reads, mget_cmd, pttl_cmd, set_cmd, set_nx_cmd,
    to_ttl, ttl_ms, unlink_cmd, AsyncConn, Breaker, ScanPage, DELETE_IF, DELETE_IF_LUA,
    GET_SLIDING, GET_SLIDING_LUA, RENEW_IF, RENEW_IF_LUA, SET_IF, SET_IF_LUA,
};
use super::redis::{
    forget_args, tag_add_args, tag_page_cmd, tag_page_of, SET_IF_AGING, SET_IF_AGING_LUA, TAG_ADD,
    TAG_ADD_LUA, TAG_FORGET, TAG_FORGET_LUA,
};
use super::{KeyTtl, Read, Store, TagCursor, TagPage};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::redact::SecretUrl;
use crate::rt::Mode;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, RedisError, Script, ServerErrorKind, Value};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

type AsyncConnection = redis::cluster_async::ClusterConnection;
type SyncConnection = redis::cluster::ClusterConnection;

pub(crate) struct ClusterStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// For blocking connections: no retries of redis-rs's own (this store follows one
    /// redirection), so one call is one attempt within the timeouts.
    sync_client: ClusterClient,
    /// For the async connection: a few quick retries, all within the caller's timeout.
    async_client: ClusterClient,
    async_con: Mutex<Option<AsyncConnection>>,
    /// Held by the one caller that connects.
    connecting: tokio::sync::Mutex<()>,
    /// Blocking connections, each with the slot map generation it was made in.
    pool: Mutex<Vec<(u64, SyncConnection)>>,
    pool_size: usize,
    op_timeout: Duration,
    scan_count: usize,
    config: Config,
    topology: RwLock<Option<Arc<Topology>>>,
    /// Bumped whenever the slot map changes: blocking connections made before are dropped,
    /// since redis-rs's blocking connection never rereads its own map.
    generation: AtomicU64,
    /// Breakers and connections by node, kept across slot map changes.
    nodes: Mutex<HashMap<Addr, Node>>,
    /// The first seed's URL, as given: node URLs are made from it.
    seed_url: SecretUrl,
    /// For calls made while no slot map is known (or for a slot no primary serves).
    unknown: Arc<Breaker>,
    refreshing: AtomicBool,
    /// A fault asked for the slot map to be read again.
    dirty: AtomicBool,
    /// When the slot map was last read, or tried, in ms since `epoch`.
    last_refresh: AtomicU64,
    /// Invalidations whose deletions no replica acknowledged in time, and when that was
    /// last logged (ms).
    unreplicated: AtomicU64,
    unreplicated_logged: AtomicU64,
    epoch: Instant,
    /// The first seed node's host: the node that answered `CLUSTER SLOTS` when a node's
    /// address comes back empty and the answering node is not known.
    seed_host: String,
}

impl ClusterStore {
    /// Whether calls to some primary (or while no slot map is known) fail fast.
    pub(crate) fn breaker_open(&self) -> bool {
        let inner = &self.inner;
        inner.unknown.check().is_err()
            || inner
                .current()
                .is_some_and(|t| t.primaries.iter().any(|p| p.breaker.check().is_err()))
    }

    pub(crate) fn new(nodes: &[SecretUrl], config: &Config) -> Result<Self> {
        let shown = nodes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let invalid = |e| {
            Error::with_source(
                ErrorKind::Config,
                format!("invalid Redis Cluster nodes `{shown}`"),
                e,
            )
        };
        let urls: Vec<&str> = nodes.iter().map(SecretUrl::expose).collect();
        let seed_host = match urls
            .first()
            .map(|u| redis::IntoConnectionInfo::into_connection_info(*u))
        {
            Some(Ok(info)) => match info.addr() {
                redis::ConnectionAddr::Tcp(host, _) => host.clone(),
                redis::ConnectionAddr::TcpTls { host, .. } => host.clone(),
                _ => "127.0.0.1".to_owned(),
            },
            Some(Err(e)) => return Err(invalid(e)),
            None => return Err(Error::config("a cluster needs at least one node URL")),
        };
        let connect = config.connect_timeout.min(config.op_timeout);
        let builder = || {
            let b = ClusterClientBuilder::new(urls.clone()).connection_timeout(connect);
            #[cfg(feature = "tls")]
            let b = {
                let tls = &config.tls;
                if tls.root_cert.is_some() || tls.client_cert_and_key.is_some() {
                    b.certs(redis::TlsCertificates {
                        client_tls: tls.client_cert_and_key.as_ref().map(|(cert, key)| {
                            redis::ClientTlsConfig {
                                client_cert: cert.clone(),
                                client_key: key.clone(),
                            }
                        }),
                        root_cert: tls.root_cert.clone(),
                    })
                } else {
                    b
                }
            };
            b
        };
        let sync_client = builder()
            .retries(0)
            .response_timeout(config.op_timeout)
            .build()
            .map_err(invalid)?;
        // Each node's requests time out on the IO thread; no overall timeout of redis-rs's
        // own, which would need a timer in the caller's runtime: the caller bounds each
        // request with the crate's own timer instead.
        let async_client = builder()
            .retries(3)
            .min_retry_wait(5)
            .max_retry_wait(50)
            .response_timeout(config.op_timeout)
            .overall_response_timeout(None)
            .build()
            .map_err(invalid)?;
        let epoch = Instant::now();
        Ok(ClusterStore {
            inner: Arc::new(Inner {
                sync_client,
                async_client,
                async_con: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                pool: Mutex::new(Vec::new()),
                pool_size: config.pool_size,
                op_timeout: config.op_timeout,
                scan_count: config.scan_count,
                config: config.clone(),
                topology: RwLock::new(None),
                generation: AtomicU64::new(0),
                nodes: Mutex::new(HashMap::new()),
                seed_url: nodes[0].clone(),
                unknown: Arc::new(Breaker::new(config, "the redis cluster")),
                refreshing: AtomicBool::new(false),
                dirty: AtomicBool::new(false),
                last_refresh: AtomicU64::new(0),
                unreplicated: AtomicU64::new(0),
                unreplicated_logged: AtomicU64::new(0),
                epoch,
                seed_host,
            }),
        })
    }
}

impl ClusterStore {
    /// Keeps `near` correct on a cluster: a tracking connection to every primary (each
    /// tracks the keys it owns), all reconnected when the primaries change; the near cache
    /// is trusted only while every one of them is up.
    pub(crate) fn track(
        &self,
        near: &Arc<dyn super::Tracked>,
        prefix: String,
        ignore_invalidations: bool,
    ) {
        let inner = Arc::downgrade(&self.inner);
        let servers = move || {
            let inner = inner.upgrade()?;
            let Some(topology) = inner.current() else {
                // Nothing read the slot map yet: ask for it, and look again later.
                inner.maybe_refresh();
                return None;
            };
            let clients = topology
                .primaries
                .iter()
                .map(|p| {
                    let url = SecretUrl::new(&node_url(inner.seed_url.expose(), &p.addr));
                    client_for(&url, &inner.config, true)
                })
                .collect::<Result<Vec<_>>>()
                .ok()?;
            Some((inner.generation.load(Ordering::Relaxed), clients))
        };
        super::redis::tracking::start(
            near,
            Box::new(servers),
            prefix,
            (self.inner.op_timeout, self.inner.config.connect_timeout),
            ignore_invalidations,
        );
    }
}

impl Inner {}

impl Store for ClusterStore {
    async fn get(&self, mode: Mode, key: &str) -> Result<Option<Vec<u8>>> {
        let v = self
            .inner
            .run(mode, key, Op::Cmd(get_cmd(key)), true)
            .await?;
        parse(v)
    }

    /// Every primary that owns some of the keys at once, one round trip each; a key whose
    /// slot moved meanwhile is read alone, following redirections.
    async fn get_many(&self, mode: Mode, keys: &[&str], with_ttl: bool) -> Vec<Result<Read>> {
        let owned = keys.iter().map(|&k| k.to_owned()).collect();
        let run = self.inner.clone().get_many_async(owned, with_ttl);
        let reads = match mode {
            Mode::Blocking => on_io_thread(run),
            Mode::Async => run.await,
        };
        let mut out = Vec::with_capacity(keys.len());
        for (key, read) in keys.iter().zip(reads) {
            out.push(match read {
                Some(read) => read,
                None if with_ttl => self.get_with_ttl(mode, key).await,
                None => self.get(mode, key).await.map(|b| (b, None)),
            });
        }
        out
    }

    async fn get_sliding(&self, mode: Mode, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>> {
        let ms = ttl_ms(ttl).to_string();
        let args: &[&[u8]] = &[ms.as_bytes()];
        let op = Op::Script {
            script: &GET_SLIDING,
            lua: GET_SLIDING_LUA,
            key,
            args,
        };
        parse(self.inner.run(mode, key, op, true).await?)
    }

    async fn set(&self, mode: Mode, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let v = self
            .inner
            .run(mode, key, Op::Cmd(set_cmd(key, value, ttl)), true)
            .await?;
        parse(v)
    }

    async fn delete(&self, mode: Mode, keys: &[&str]) -> Result<u64> {
        if keys.len() > 1 || mode == Mode::Async {
            // Many keys (a tag's page, a batch): every primary at once, one round trip each.
            // An async delete of one key goes the same way, on its primary's connection
            // apart, so that its `WAIT` holds up no other call.
            let owned = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
            let run = self.inner.clone().delete_many_async(owned);
            return match mode {
                Mode::Blocking => on_io_thread(run),
                Mode::Async => run.await,
            };
        }
        let mut deleted = 0;
        let owned = keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        for (slot, group) in by_slot(owned) {
            // The `WAIT` on the same connection as the `UNLINK` (it covers that connection's
            // writes); also when the `UNLINK` found nothing, which may be because an earlier
            // attempt deleted the keys: their deletion must reach a replica too.
            let wait = (self.inner.replicas_of(slot) > 0).then(|| self.inner.wait_cmd());
            let unlink = Op::Cmd(unlink_cmd(&group));
            let (v, acked) = match mode {
                // Blocking connections come from a pool: both commands on the one taken.
                Mode::Blocking if wait.is_some() => {
                    let out = self.inner.send_sync_then(slot, &unlink, wait.as_ref());
                    if out.as_ref().is_ok_and(|(_, moved, _)| *moved) {
                        self.inner.mark_dirty();
                    }
                    let (v, _, acked) = out?;
                    (v, Some(acked.unwrap_or(Value::Int(0))))
                }
                // The async path sends one slot's commands on its primary's one connection.
                _ => {
                    let v = self.inner.run_on_slot(mode, slot, unlink, false).await?;
                    let acked = match wait {
                        Some(wait) => Some(
                            self.inner
                                .run_on_slot(mode, slot, Op::Cmd(wait), false)
                                .await?,
                        ),
                        None => None,
                    };
                    (v, acked)
                }
            };
            deleted += parse::<u64>(v)?;
            if let Some(acked) = acked {
                self.inner.replicated(acked, &format_args!("slot {slot}"))?;
            }
        }
        Ok(deleted)
    }

    async fn delete_pattern(&self, mode: Mode, pattern: &str) -> Result<u64> {
        let run = self.inner.clone().delete_pattern_async(pattern.to_owned());
        match mode {
            // All primaries at once, on the IO thread, the caller's thread waiting.
            Mode::Blocking => on_io_thread(run),
            Mode::Async => run.await,
        }
    }

    async fn ping(&self, mode: Mode) -> Result<()> {
        let run = self.inner.clone().ping_all();
        match mode {
            Mode::Blocking => on_io_thread(run),
            Mode::Async => run.await,
        }
    }

    async fn ttl(&self, mode: Mode, key: &str) -> Result<KeyTtl> {
        let v = self
            .inner
            .run(mode, key, Op::Cmd(pttl_cmd(key)), true)
            .await?;
        parse(v).map(to_ttl)
    }

    async fn keys(&self, mode: Mode, pattern: &str) -> Result<Vec<String>> {
        let run = self.inner.clone().keys_async(pattern.to_owned());
        match mode {
            Mode::Blocking => on_io_thread(run),
            Mode::Async => run.await,
        }
    }

    async fn set_nx(&self, mode: Mode, key: &str, value: &[u8], ttl: Duration) -> Result<bool> {
        let v = self
            .inner
            .run(mode, key, Op::Cmd(set_nx_cmd(key, value, ttl)), true)
            .await?;
        Ok(parse::<Option<String>>(v)?.is_some())
    }

    async fn set_if(
        &self,
        mode: Mode,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let ms = ttl_ms(ttl).to_string();
        let args: &[&[u8]] = &[expected, value, ms.as_bytes()];
        let op = Op::Script {
            script: &SET_IF,
            lua: SET_IF_LUA,
            key,
            args,
        };
        parse(self.inner.run(mode, key, op, true).await?)
    }

    async fn delete_if(&self, mode: Mode, key: &str, expected: &[u8]) -> Result<bool> {
        let args: &[&[u8]] = &[expected];
        let op = Op::Script {
            script: &DELETE_IF,
            lua: DELETE_IF_LUA,
            key,
            args,
        };
        parse(self.inner.run(mode, key, op, true).await?)
    }

    async fn renew_if(
        &self,
        mode: Mode,
        key: &str,
        expected: &[u8],
        ttl: Duration,
    ) -> Result<bool> {
        let ms = ttl_ms(ttl).to_string();
        let args: &[&[u8]] = &[expected, ms.as_bytes()];
        let op = Op::Script {
            script: &RENEW_IF,
            lua: RENEW_IF_LUA,
            key,
            args,
        };
        parse(self.inner.run(mode, key, op, true).await?)
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
        let left = ttl_ms(max_left).to_string();
        let ms = ttl_ms(ttl).to_string();
        let args: &[&[u8]] = &[expected, left.as_bytes(), value, ms.as_bytes()];
        let op = Op::Script {
            script: &SET_IF_AGING,
            lua: SET_IF_AGING_LUA,
            key,
            args,
        };
        parse(self.inner.run(mode, key, op, true).await?)
    }

    // A tag set is one key on one slot (its own hash tag, if the tag has one): each tag
    // operation is one script on that slot; the members' deletions go slot by slot.
    async fn tag_add(&self, mode: Mode, set: &str, member: &str, life: Duration) -> Result<()> {
        let args = tag_add_args(member, life);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let op = Op::Script {
            script: &TAG_ADD,
            lua: TAG_ADD_LUA,
            key: set,
            args: &args,
        };
        parse::<i64>(self.inner.run(mode, set, op, true).await?).map(drop)
    }

    async fn tag_page(
        &self,
        mode: Mode,
        set: &str,
        from: TagCursor,
        count: usize,
    ) -> Result<TagPage> {
        // A new slot map may put the set on another node, where the cursor means nothing.
        let server = self.inner.generation.load(Ordering::Acquire);
        let op = Op::Cmd(tag_page_cmd(set, &from, count));
        let reply = parse(self.inner.run(mode, set, op, false).await?)?;
        Ok(tag_page_of(reply, server))
    }

    async fn tag_forget(&self, mode: Mode, set: &str, entries: &[(String, String)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let args = forget_args(entries);
        let op = Op::Script {
            script: &TAG_FORGET,
            lua: TAG_FORGET_LUA,
            key: set,
            args: &args,
        };
        parse::<i64>(self.inner.run(mode, set, op, false).await?).map(drop)
    }
}
