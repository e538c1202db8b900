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

use super::redis::{
    client_for, dropped, get_cmd, looks_down, pttl_cmd, set_cmd, set_nx_cmd, to_ttl, ttl_ms,
    unlink_cmd, AsyncConn, Breaker, ScanPage, DELETE_IF, DELETE_IF_LUA, GET_SLIDING,
    GET_SLIDING_LUA, RENEW_IF, RENEW_IF_LUA, SET_IF, SET_IF_LUA,
};
use super::redis::{
    forget_args, tag_add_args, tag_page_cmd, tag_page_of, SET_IF_AGING, SET_IF_AGING_LUA, TAG_ADD,
    TAG_ADD_LUA, TAG_FORGET, TAG_FORGET_LUA,
};
use super::{KeyTtl, Store, TagCursor, TagPage};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::redact::SecretUrl;
use crate::rt::Mode;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, RedisError, Script, ServerErrorKind, Value};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};

type AsyncConnection = redis::cluster_async::ClusterConnection;
type SyncConnection = redis::cluster::ClusterConnection;

/// How many hash slots a cluster has.
pub(crate) const SLOTS: usize = 16384;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster hashes
/// keys with, one table lookup a byte.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

pub(crate) fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The part of a key that Redis Cluster hashes: the text between the first `{` and the
/// first `}` after it when that is not empty (the hash tag), else the whole key.
fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(len) = rest.iter().position(|&b| b == b'}') {
            if len > 0 {
                return &rest[..len];
            }
        }
    }
    key
}

/// The hash slot of a key, as `CLUSTER KEYSLOT` gives it.
pub(crate) fn slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) & (SLOTS as u16 - 1)
}

/// The one slot that every key matching a Redis glob `pattern` hashes to, when the pattern
/// says: a pattern with no glob at all (one key), or one whose literal start (before its
/// first `*`, `?` or `[`) holds a complete, non-empty hash tag (`wallets:{42}:*`). Every
/// matching key starts with that literal text, so its first `{`, and the first `}` after
/// it, are those of the pattern.
pub(crate) fn pattern_slot(pattern: &str) -> Option<u16> {
    let bytes = pattern.as_bytes();
    // The literal text every matching key starts with (escapes resolved).
    let mut literal = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut complete = true;
    while i < bytes.len() {
        match bytes[i] {
            b'*' | b'?' | b'[' => {
                complete = false;
                break;
            }
            // `\x` is a literal `x`; a trailing `\` is a literal `\`, as Redis reads it.
            b'\\' if i + 1 < bytes.len() => {
                literal.push(bytes[i + 1]);
                i += 2;
            }
            b => {
                literal.push(b);
                i += 1;
            }
        }
    }
    if complete {
        return Some(slot(&literal));
    }
    let open = literal.iter().position(|&b| b == b'{')?;
    let rest = &literal[open + 1..];
    let len = rest.iter().position(|&b| b == b'}')?;
    (len > 0).then(|| crc16(&rest[..len]) & (SLOTS as u16 - 1))
}

/// A node's address as the cluster gives it (`CLUSTER SLOTS`), as redis-rs keys its
/// connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Addr {
    host: String,
    port: u16,
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Addr {
    fn route(&self) -> RoutingInfo {
        RoutingInfo::SingleNode(self.single())
    }

    fn single(&self) -> SingleNodeRoutingInfo {
        SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// `host:port` as a MOVED or ASK error names it.
    fn parse(s: &str) -> Option<Addr> {
        let (host, port) = s.rsplit_once(':')?;
        Some(Addr {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: port.parse().ok()?,
        })
    }
}

/// A primary and its breaker.
struct Primary {
    addr: Addr,
    breaker: Arc<Breaker>,
    link: Arc<Link>,
    /// How many replicas the cluster listed for it (failed ones are not listed).
    replicas: usize,
}

/// A node's own multiplexed connection: the async fast path for one-key commands, sent
/// from the caller as on one server (no hop through redis-rs's cluster task). A redirection
/// it meets is followed through the cluster connection.
struct Link {
    /// `None` when no URL could be made for the node (it is then reached through the
    /// cluster connection only).
    client: Option<redis::Client>,
    con: AsyncConn,
    /// A connection of its own for the invalidations that wait for a replica (`WAIT`):
    /// Redis answers nothing else on a connection while it waits, and the node's async
    /// calls share `con`.
    apart: AsyncConn,
}

impl Link {
    fn conn(&self, apart: bool) -> &AsyncConn {
        if apart {
            &self.apart
        } else {
            &self.con
        }
    }
}

/// A node's breaker and connection.
type Node = (Arc<Breaker>, Arc<Link>);

/// A primary a pattern operation runs on.
struct Target {
    addr: Addr,
    breaker: Arc<Breaker>,
    link: Arc<Link>,
    replicas: usize,
}

/// A way to one primary for a pattern operation.
enum Way {
    /// Its own connection (the one apart, when true), with the generation to report it
    /// broken.
    Direct(Arc<Link>, bool, u64, redis::aio::MultiplexedConnection),
    /// The cluster connection, routed to its address.
    Routed(AsyncConnection, Addr),
}

/// The URL of the node at `addr`: the seed URL with its host and port replaced, so that
/// credentials, TLS and parameters stay.
fn node_url(seed: &str, addr: &Addr) -> String {
    let (scheme, rest) = seed.split_once("://").unwrap_or(("redis", seed));
    let host_start = rest.rfind('@').map_or(0, |at| at + 1);
    let after = &rest[host_start..];
    let host_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let host = if addr.host.contains(':') {
        format!("[{}]", addr.host)
    } else {
        addr.host.clone()
    };
    format!(
        "{scheme}://{}{host}:{}{}",
        &rest[..host_start],
        addr.port,
        &after[host_end..]
    )
}

/// Which primary owns each slot, as last read from the cluster.
struct Topology {
    /// Slot → index into `primaries`; `NONE` for a slot no primary serves.
    owner: Vec<u16>,
    primaries: Vec<Primary>,
    /// Every node the cluster listed, primaries first: where to ask for the next topology.
    nodes: Vec<Addr>,
}

const NONE: u16 = u16::MAX;

impl Topology {
    fn primary(&self, slot: u16) -> Option<&Primary> {
        match self.owner[usize::from(slot)] {
            NONE => None,
            i => Some(&self.primaries[usize::from(i)]),
        }
    }

    /// The same primaries for the same slots.
    fn same_as(&self, other: &Topology) -> bool {
        self.primaries.len() == other.primaries.len()
            && self.owner.iter().zip(&other.owner).all(|(&a, &b)| {
                a == b
                    && (a == NONE
                        || self.primaries[usize::from(a)].addr
                            == other.primaries[usize::from(b)].addr)
            })
    }
}

/// The `CLUSTER SLOTS` reply: `[[start, end, [ip, port, id, …], replica…], …]`. A node with
/// an empty address is the one that answered (`default_host`).
fn parse_slots(
    value: Value,
    default_host: &str,
) -> std::result::Result<Vec<(u16, u16, Vec<Addr>)>, String> {
    let Value::Array(ranges) = value else {
        return Err(format!("CLUSTER SLOTS replied {value:?}"));
    };
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(items) = range else {
            return Err("a CLUSTER SLOTS entry is not an array".into());
        };
        let mut items = items.into_iter();
        let bound = |v: Option<Value>| -> std::result::Result<u16, String> {
            match v {
                Some(Value::Int(n)) if (0..SLOTS as i64).contains(&n) => Ok(n as u16),
                other => Err(format!("a CLUSTER SLOTS bound is {other:?}")),
            }
        };
        let start = bound(items.next())?;
        let end = bound(items.next())?;
        let mut nodes = Vec::new();
        for node in items {
            let Value::Array(fields) = node else { continue };
            let mut fields = fields.into_iter();
            let host = match fields.next() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                Some(Value::SimpleString(s)) => s,
                _ => continue,
            };
            let port = match fields.next() {
                Some(Value::Int(p)) if (1..=65535).contains(&p) => p as u16,
                _ => continue,
            };
            let host = if host.is_empty() || host == "?" {
                default_host.to_owned()
            } else {
                host
            };
            nodes.push(Addr { host, port });
        }
        if nodes.is_empty() {
            return Err(format!("no node serves slots {start}-{end}"));
        }
        out.push((start, end, nodes));
    }
    Ok(out)
}

/// How many live replicas each primary has, from a `CLUSTER NODES` reply (`None` if it
/// is not one). `CLUSTER SLOTS` does not tell: it leaves out a replica whose replication
/// offset its node has not heard of yet, as in a cluster that has had no write.
fn replica_census(value: Value, default_host: &str) -> Option<HashMap<Addr, usize>> {
    let text = match value {
        Value::BulkString(b) => String::from_utf8(b).ok()?,
        Value::VerbatimString { text, .. } => text,
        Value::SimpleString(s) => s,
        _ => return None,
    };
    let mut primaries: HashMap<&str, Addr> = HashMap::new();
    let mut replicas: Vec<&str> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 8 {
            continue;
        }
        let flags = f[2];
        if ["fail", "handshake", "noaddr"]
            .iter()
            .any(|bad| flags.contains(bad))
        {
            continue;
        }
        if flags.contains("master") {
            let hostport = f[1].split(['@', ',']).next().unwrap_or("");
            let Some(mut addr) = Addr::parse(hostport) else {
                continue;
            };
            if addr.host.is_empty() {
                addr.host = default_host.to_owned();
            }
            primaries.insert(f[0], addr);
        } else if flags.contains("slave") || flags.contains("replica") {
            replicas.push(f[3]);
        }
    }
    let mut census: HashMap<Addr, usize> = primaries.values().map(|a| (a.clone(), 0)).collect();
    for master in replicas {
        if let Some(addr) = primaries.get(master) {
            *census.entry(addr.clone()).or_default() += 1;
        }
    }
    Some(census)
}

fn nodes_cmd() -> Cmd {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    cmd
}

fn slots_cmd() -> Cmd {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SLOTS");
    cmd
}

/// One command on one key's slot, or a compare-and-set script on it.
enum Op<'a> {
    Cmd(Cmd),
    Script {
        script: &'static Script,
        lua: &'static str,
        key: &'a str,
        args: &'a [&'a [u8]],
    },
}

impl Op<'_> {
    /// `EVALSHA` (`cached`) or `EVAL` of a script op.
    fn script_cmd(&self, cached: bool) -> Cmd {
        let Op::Script {
            script,
            lua,
            key,
            args,
        } = self
        else {
            unreachable!("script_cmd of a command");
        };
        let mut cmd = if cached {
            let mut c = redis::cmd("EVALSHA");
            c.arg(script.get_hash());
            c
        } else {
            let mut c = redis::cmd("EVAL");
            c.arg(*lua);
            c
        };
        cmd.arg(1).arg(*key);
        for a in args.iter() {
            cmd.arg(*a);
        }
        cmd
    }
}

/// The key's slot is served elsewhere now (a resharding), or by a node demoted to replica
/// (a failover).
fn redirected(e: &Error) -> bool {
    e.redis_error().is_some_and(|r| {
        matches!(
            r.kind(),
            redis::ErrorKind::Server(
                ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::ReadOnly
            )
        )
    })
}

fn no_script(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript)
}

/// A sign that the slot map may have changed: a node down or unreachable, a redirection, or
/// the cluster refusing commands while it fails over.
fn topology_fault(e: &Error) -> bool {
    looks_down(e)
        || e.kind() == ErrorKind::Unavailable
        || e.redis_error().is_some_and(|r| {
            r.is_cluster_error()
                || matches!(
                    r.kind(),
                    redis::ErrorKind::Server(
                        ServerErrorKind::ClusterDown
                            | ServerErrorKind::MasterDown
                            | ServerErrorKind::ReadOnly
                            | ServerErrorKind::TryAgain
                    ) | redis::ErrorKind::ClusterConnectionNotFound
                )
        })
}

/// How often the slot map is read again at most while faults ask for it.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// How often it is read again anyway (a resharding that raised no fault here).
const REFRESH_ANYWAY: Duration = Duration::from_secs(30);

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

/// Runs `fut` on the crate's IO thread and blocks the calling thread until it is done.
fn on_io_thread<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    crate::rt::handle().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .expect("the cacheable IO thread dropped a cluster operation")
}

/// Polls every future at once; their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future is done"))
        .collect()
}

fn parse<T: FromRedisValue>(v: Value) -> Result<T> {
    redis::from_redis_value(v).map_err(|e| Error::from_redis(e.into()))
}

/// A hash slot and keys of it.
type SlotKeys = (u16, Vec<Vec<u8>>);

/// Keys grouped by hash slot, in the order their slots first appear.
fn by_slot(keys: Vec<Vec<u8>>) -> Vec<SlotKeys> {
    let mut groups: Vec<(u16, Vec<Vec<u8>>)> = Vec::new();
    let mut index: HashMap<u16, usize> = HashMap::new();
    for key in keys {
        let s = slot(&key);
        match index.get(&s) {
            Some(&i) => groups[i].1.push(key),
            None => {
                index.insert(s, groups.len());
                groups.push((s, vec![key]));
            }
        }
    }
    groups
}

fn slot_route(slot: u16) -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        slot,
        SlotAddr::Master,
    )))
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn current(&self) -> Option<Arc<Topology>> {
        self.topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn node(&self, addr: &Addr) -> Node {
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr.clone())
            .or_insert_with(|| {
                let breaker = Breaker::new(&self.config, format!("redis cluster node {addr}"));
                let url = SecretUrl::new(&node_url(self.seed_url.expose(), addr));
                let client = match client_for(&url, &self.config, false) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        log::warn!(target: "cacheable", "redis cluster node {addr}: {e:#}; reaching it through the cluster connection only");
                        None
                    }
                };
                let link = Link {
                    client,
                    con: AsyncConn::default(),
                    apart: AsyncConn::default(),
                };
                (Arc::new(breaker), Arc::new(link))
            })
            .clone()
    }

    /// Builds a slot map from a `CLUSTER SLOTS` reply and puts it in place.
    fn install(
        &self,
        value: Value,
        census: Option<Value>,
        default_host: &str,
    ) -> Result<Arc<Topology>> {
        let census = census.and_then(|v| replica_census(v, default_host));

        let ranges = parse_slots(value, default_host)
            .map_err(|why| Error::new(ErrorKind::Store, format!("redis cluster: {why}")))?;
        let mut owner = vec![NONE; SLOTS];
        let mut primaries: Vec<Primary> = Vec::new();
        let mut replicas: Vec<Addr> = Vec::new();
        for (start, end, nodes) in ranges {
            let primary = &nodes[0];
            let i = match primaries.iter().position(|p| p.addr == *primary) {
                Some(i) => i,
                None => {
                    let (breaker, link) = self.node(primary);
                    primaries.push(Primary {
                        addr: primary.clone(),
                        breaker,
                        link,
                        replicas: 0,
                    });
                    primaries.len() - 1
                }
            };
            let listed = match &census {
                // A primary the census names differently (announced hostnames): what
                // `CLUSTER SLOTS` listed.
                Some(census) => census.get(primary).copied().unwrap_or(nodes.len() - 1),
                None => nodes.len() - 1,
            };
            primaries[i].replicas = primaries[i].replicas.max(listed);
            for s in start..=end {
                owner[usize::from(s)] = i as u16;
            }
            for r in &nodes[1..] {
                if !replicas.contains(r) {
                    replicas.push(r.clone());
                }
            }
        }
        let mut nodes: Vec<Addr> = primaries.iter().map(|p| p.addr.clone()).collect();
        for r in replicas {
            if !nodes.contains(&r) {
                nodes.push(r);
            }
        }
        let topology = Arc::new(Topology {
            owner,
            primaries,
            nodes,
        });
        let mut current = self.topology.write().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|old| !old.same_as(&topology)) {
            self.generation.fetch_add(1, Ordering::Relaxed);
            log::info!(target: "cacheable", "redis cluster slot map changed: {} primaries", topology.primaries.len());
        }
        *current = Some(topology.clone());
        Ok(topology)
    }

    /// The slot map; read at once, in the caller's mode, when none is known yet.
    async fn topology(self: &Arc<Self>, mode: Mode) -> Result<Arc<Topology>> {
        if let Some(t) = self.current() {
            self.maybe_refresh();
            return Ok(t);
        }
        self.unknown.check()?;
        self.last_refresh.store(self.now_ms(), Ordering::Relaxed);
        let read = match mode {
            Mode::Blocking => self.with_sync(|con, _| {
                let any = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
                let slots = con.route_command(&slots_cmd(), any.clone())?;
                Ok((slots, con.route_command(&nodes_cmd(), any).ok()))
            }),
            Mode::Async => {
                let attempt = async {
                    let mut con = self.connection().await?;
                    let any = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
                    let slots = con
                        .route_command(slots_cmd(), any.clone())
                        .await
                        .and_then(Value::extract_error)
                        .map_err(Error::from_redis)?;
                    Ok((slots, con.route_command(nodes_cmd(), any).await.ok()))
                };
                self.bounded(attempt).await
            }
        };
        let out = read.and_then(|(v, census)| self.install(v, census, &self.seed_host()));
        self.unknown.record(&out);
        out
    }

    fn seed_host(&self) -> String {
        self.seed_host.clone()
    }

    fn mark_dirty(self: &Arc<Self>) {
        self.dirty.store(true, Ordering::Relaxed);
        self.maybe_refresh();
    }

    /// Rereads the slot map in the background, on the IO thread, when a fault asked for it
    /// (at most every 100 ms) or when it is half a minute old.
    fn maybe_refresh(self: &Arc<Self>) {
        let since = self
            .now_ms()
            .saturating_sub(self.last_refresh.load(Ordering::Relaxed));
        let due = if self.dirty.load(Ordering::Relaxed) {
            since >= REFRESH_INTERVAL.as_millis() as u64
        } else {
            since >= REFRESH_ANYWAY.as_millis() as u64
        };
        if !due || self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.last_refresh.store(self.now_ms(), Ordering::Relaxed);
        self.dirty.store(false, Ordering::Relaxed);
        let this = self.clone();
        crate::rt::handle().spawn(async move {
            if let Err(e) = this.refresh().await {
                log::debug!(target: "cacheable", "redis cluster slot map not reread: {e}");
                this.dirty.store(true, Ordering::Relaxed);
            }
            this.last_refresh.store(this.now_ms(), Ordering::Relaxed);
            this.refreshing.store(false, Ordering::Release);
        });
    }

    /// Asks the known nodes, primaries whose breaker is closed first, for the slot map.
    async fn refresh(self: &Arc<Self>) -> Result<()> {
        let mut con = self.bounded(self.connection()).await?;
        let mut candidates: Vec<Addr> = Vec::new();
        if let Some(t) = self.current() {
            // Primaries taken as down last, after replicas and the other primaries.
            let down: Vec<&Addr> = t
                .primaries
                .iter()
                .filter(|p| p.breaker.check().is_err())
                .map(|p| &p.addr)
                .collect();
            candidates.extend(t.nodes.iter().filter(|a| !down.contains(a)).cloned());
            candidates.extend(down.into_iter().cloned());
        }
        let mut last = None;
        for addr in &candidates {
            let ask = con.route_command(slots_cmd(), addr.route());
            let asked = crate::rt::timeout(self.op_timeout, std::pin::pin!(ask)).await;
            match asked {
                Some(Ok(v)) => match v.extract_error() {
                    Ok(v) => {
                        let census = con.route_command(nodes_cmd(), addr.route());
                        let census =
                            crate::rt::timeout(self.op_timeout, std::pin::pin!(census)).await;
                        return self
                            .install(v, census.and_then(|c| c.ok()), &addr.host)
                            .map(drop);
                    }
                    Err(e) => last = Some(Error::from_redis(e)),
                },
                Some(Err(e)) => last = Some(Error::from_redis(e)),
                None => last = Some(Error::timeout("CLUSTER SLOTS", self.op_timeout)),
            }
        }
        // No known node answered (or none is known): let redis-rs pick one.
        let any = con.route_command(
            slots_cmd(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        );
        let answered = crate::rt::timeout(self.op_timeout, std::pin::pin!(any)).await;
        match answered {
            Some(Ok(v)) => {
                let v = v.extract_error().map_err(Error::from_redis)?;
                self.install(v, None, &self.seed_host()).map(drop)
            }
            Some(Err(e)) => Err(Error::from_redis(e)),
            None => Err(last.unwrap_or_else(|| Error::timeout("CLUSTER SLOTS", self.op_timeout))),
        }
    }

    async fn bounded<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        match crate::rt::timeout(self.op_timeout, std::pin::pin!(fut)).await {
            Some(out) => out,
            None => Err(Error::timeout("redis cluster request", self.op_timeout)),
        }
    }

    /// The async cluster connection, built on first use on the crate's IO runtime, which
    /// drives it (and its connections to every node) whatever runtime the callers use.
    async fn connection(&self) -> Result<AsyncConnection> {
        if let Some(con) = self
            .async_con
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(con);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(con) = self
            .async_con
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(con);
        }
        let client = self.async_client.clone();
        let connecting =
            crate::rt::handle().spawn(async move { client.get_async_connection().await });
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
        *self.async_con.lock().unwrap_or_else(|e| e.into_inner()) = Some(con.clone());
        Ok(con)
    }

    /// Runs `f` on a pooled blocking cluster connection. One that lost a connection to a
    /// node, or met a MOVED, is dropped (its node may be gone, and its own slot map with it),
    /// and so are those made before the slot map last changed.
    fn with_sync<T>(
        &self,
        f: impl FnOnce(&mut SyncConnection, &mut bool) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let generation = self.generation.load(Ordering::Relaxed);
        let pooled = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.retain(|(g, _)| *g == generation);
            pool.pop()
        };
        let mut con = match pooled {
            Some((_, con)) => con,
            None => {
                let con = self
                    .sync_client
                    .get_connection()
                    .map_err(Error::from_redis)?;
                con.set_write_timeout(Some(self.op_timeout))
                    .map_err(Error::from_redis)?;
                con
            }
        };
        let mut keep = true;
        let out = f(&mut con, &mut keep);
        // A timeout leaves the connection usable (redis-rs skips the late reply); making a
        // new one would connect to every node, a frozen one included.
        let reusable = keep
            && match &out {
                Ok(_) => true,
                Err(e) => {
                    e.kind() == redis::ErrorKind::Server(ServerErrorKind::ResponseError)
                        || no_script(e)
                        || e.is_timeout()
                }
            };
        if reusable && generation == self.generation.load(Ordering::Relaxed) {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < self.pool_size {
                pool.push((generation, con));
            }
        }
        out.map_err(Error::from_redis)
    }

    /// One op on `slot`, blocking, following one MOVED or ASK; true when it was MOVED.
    fn send_sync(&self, slot: u16, op: &Op<'_>) -> Result<(Value, bool)> {
        self.send_sync_then(slot, op, None)
            .map(|(v, moved, _)| (v, moved))
    }

    /// [`send_sync`](Self::send_sync), then `then` on the same connection and node when the
    /// op succeeded, with its reply (or its error, as `None`).
    fn send_sync_then(
        &self,
        slot: u16,
        op: &Op<'_>,
        then: Option<&Cmd>,
    ) -> Result<(Value, bool, Option<Value>)> {
        let follow = |con: &mut SyncConnection, route: RoutingInfo| {
            then.and_then(|cmd| {
                con.route_command(cmd, route)
                    .and_then(Value::extract_error)
                    .ok()
            })
        };
        self.with_sync(|con, keep| {
            let first = match op {
                Op::Cmd(cmd) => con.route_command(cmd, slot_route(slot)),
                Op::Script { .. } => {
                    match con.route_command(&op.script_cmd(true), slot_route(slot)) {
                        Err(e) if no_script(&e) => {
                            con.route_command(&op.script_cmd(false), slot_route(slot))
                        }
                        other => other,
                    }
                }
            };
            let e = match first {
                Err(e) => e,
                Ok(v) => return Ok((v, false, follow(con, slot_route(slot)))),
            };
            let ask = e.kind() == redis::ErrorKind::Server(ServerErrorKind::Ask);
            let Some(to) = e.redirect_node().and_then(|(node, _)| Addr::parse(node)) else {
                return Err(e);
            };
            if ask {
                con.route_command(&redis::cmd("ASKING"), to.route())?;
            }
            // The connection's own slot map is stale after a MOVED: it leaves the pool.
            *keep = ask;
            let again = match op {
                Op::Cmd(cmd) => con.route_command(cmd, to.route()),
                // EVAL, not EVALSHA: the node asked may not have the script yet.
                Op::Script { .. } => con.route_command(&op.script_cmd(false), to.route()),
            };
            again.map(|v| (v, !ask, follow(con, to.route())))
        })
    }

    /// One op on `slot`, async: on its primary's own connection, or (when that meets a
    /// redirection, or there is none) on the cluster connection, which follows redirections.
    async fn send_async(
        self: &Arc<Self>,
        slot: u16,
        primary: Option<&Primary>,
        op: Op<'_>,
    ) -> Result<Value> {
        self.bounded(async {
            if let Some(Primary { link, .. }) = primary {
                if let Some(client) = &link.client {
                    match self.send_direct(link, client, &op).await {
                        Err(e) if redirected(&e) => self.mark_dirty(),
                        other => return other,
                    }
                }
            }
            let mut con = self.connection().await?;
            let out = match &op {
                Op::Cmd(_) => {
                    let Op::Cmd(cmd) = op else { unreachable!() };
                    con.route_command(cmd, slot_route(slot)).await
                }
                Op::Script { .. } => {
                    match con
                        .route_command(op.script_cmd(true), slot_route(slot))
                        .await
                        .and_then(Value::extract_error)
                    {
                        Err(e) if no_script(&e) => {
                            con.route_command(op.script_cmd(false), slot_route(slot))
                                .await
                        }
                        other => other,
                    }
                }
            };
            out.and_then(Value::extract_error)
                .map_err(Error::from_redis)
        })
        .await
    }

    /// One op on a primary's own multiplexed connection (built on the IO runtime).
    async fn send_direct(&self, link: &Link, client: &redis::Client, op: &Op<'_>) -> Result<Value> {
        let (generation, mut con) = link.con.get(client, 0, self.config.connect_timeout).await?;
        let out = match op {
            Op::Cmd(cmd) => cmd.query_async::<Value>(&mut con).await,
            Op::Script { .. } => match op.script_cmd(true).query_async::<Value>(&mut con).await {
                Err(e) if no_script(&e) => op.script_cmd(false).query_async(&mut con).await,
                other => other,
            },
        };
        let out = out.and_then(Value::extract_error);
        if let Err(e) = &out {
            if dropped(e) {
                link.con.broken(generation);
            }
        }
        out.map_err(Error::from_redis)
    }

    /// One op on `key`'s slot: refused at once while the slot's primary is taken as down
    /// (`guarded`; invalidations always go), counted on its breaker.
    async fn run(
        self: &Arc<Self>,
        mode: Mode,
        key: &str,
        op: Op<'_>,
        guarded: bool,
    ) -> Result<Value> {
        let slot = slot(key.as_bytes());
        self.run_on_slot(mode, slot, op, guarded).await
    }

    async fn run_on_slot(
        self: &Arc<Self>,
        mode: Mode,
        slot: u16,
        op: Op<'_>,
        guarded: bool,
    ) -> Result<Value> {
        let topology = self.topology(mode).await;
        let primary = match &topology {
            Ok(t) => t.primary(slot),
            Err(_) if !guarded => None,
            Err(e) => return Err(e.clone()),
        };
        let breaker = primary.map_or(&self.unknown, |p| &p.breaker);
        if guarded {
            if let Err(e) = breaker.check() {
                self.mark_dirty();
                return Err(e);
            }
        }
        let out = match mode {
            Mode::Blocking => self.send_sync(slot, &op).map(|(v, moved)| {
                if moved {
                    self.mark_dirty();
                }
                v
            }),
            Mode::Async => self.send_async(slot, primary, op).await,
        };
        breaker.record(&out);
        if let Err(e) = &out {
            if topology_fault(e) {
                self.mark_dirty();
            }
        }
        out
    }

    /// The primaries a pattern's keys can be on: the one owning its slot when the pattern
    /// has one, else all of them.
    async fn targets(self: &Arc<Self>, pattern: &str) -> Result<Vec<Target>> {
        let topology = self.topology(Mode::Async).await?;
        let target = |p: &Primary| Target {
            addr: p.addr.clone(),
            breaker: p.breaker.clone(),
            link: p.link.clone(),
            replicas: p.replicas,
        };
        Ok(
            match pattern_slot(pattern).and_then(|slot| topology.primary(slot)) {
                Some(p) => vec![target(p)],
                None => topology.primaries.iter().map(target).collect(),
            },
        )
    }

    /// `WAIT 1 t`: the deletions sent before it on the connection reached a replica, so
    /// that a failover (which promotes a replica) does not bring the deleted values back.
    /// Redis replicates asynchronously: without it, a primary killed just after
    /// acknowledging an invalidation's `UNLINK` could lose it (the 10-minute soak saw 2
    /// stale reads in 20 failovers). `t` is half the operation timeout (1 ms to 1 s).
    fn wait_cmd(&self) -> Cmd {
        let ms = (self.op_timeout / 2)
            .clamp(Duration::from_millis(1), Duration::from_secs(1))
            .as_millis();
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(1).arg(ms as u64);
        cmd
    }

    /// The reply of [`wait_cmd`](Self::wait_cmd) on `node`. When no replica acknowledged
    /// the deletions in time (a replica frozen, resyncing, or gone; a slot migrating), the
    /// deletions stand on the primary, so the invalidation is not failed: the case is
    /// counted and logged (a line a second at most), and the slot map read again.
    fn replicated(self: &Arc<Self>, reply: Value, node: &dyn std::fmt::Display) -> Result<()> {
        if parse::<i64>(reply.extract_error().map_err(Error::from_redis)?)? > 0 {
            return Ok(());
        }
        self.mark_dirty();
        let count = self.unreplicated.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.now_ms();
        let last = self.unreplicated_logged.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .unreplicated_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(target: "cacheable", "redis cluster: no replica of {node} acknowledged an invalidation's deletions within {} ms (WAIT); they stand on the primary, but a failover now could bring the deleted values back ({count} such invalidations so far)", (self.op_timeout / 2).as_millis());
        }
        Ok(())
    }

    /// The replicas listed for the primary of `slot`, as last read.
    fn replicas_of(&self, slot: u16) -> usize {
        self.current()
            .and_then(|t| t.primary(slot).map(|p| p.replicas))
            .unwrap_or(0)
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

    /// A way to one primary: its own connection, or the cluster connection routed to it.
    async fn way(&self, target: &Target, apart: bool) -> Result<Way> {
        if let Some(client) = &target.link.client {
            let conn = target.link.conn(apart);
            let direct = conn.get(client, 0, self.config.connect_timeout);
            if let Ok((generation, con)) = self.bounded(direct).await {
                return Ok(Way::Direct(target.link.clone(), apart, generation, con));
            }
        }
        let con = self.bounded(self.connection()).await?;
        Ok(Way::Routed(con, target.addr.clone()))
    }

    /// One round trip to a primary: the commands of `pipe`, each reply (error replies
    /// included) in order.
    async fn node_round_trip(&self, way: &mut Way, pipe: redis::Pipeline) -> Result<Vec<Value>> {
        use redis::aio::ConnectionLike;
        let count = pipe.len();
        self.bounded(async {
            match way {
                Way::Direct(link, apart, generation, con) => {
                    let out = con.req_packed_commands(&pipe, 0, count).await;
                    if let Err(e) = &out {
                        if dropped(e) {
                            link.conn(*apart).broken(*generation);
                        }
                    }
                    out
                }
                Way::Routed(con, addr) => con.route_pipeline(pipe, 0, count, addr.single()).await,
            }
            .map_err(Error::from_redis)
        })
        .await
    }

    /// One `SCAN` page from a primary.
    async fn scan_page(&self, way: &mut Way, cursor: u64, pattern: &str) -> Result<ScanPage> {
        let mut pipe = redis::pipe();
        pipe.add_command(self.scan_cmd(cursor, pattern));
        let page = self.node_round_trip(way, pipe).await?.pop();
        let page = page.ok_or_else(|| Error::new(ErrorKind::Store, "SCAN got no reply"))?;
        parse(page.extract_error().map_err(Error::from_redis)?)
    }

    /// Every key matching `pattern` on one primary.
    async fn keys_on(&self, target: &Target, pattern: &str) -> Result<Vec<Vec<u8>>> {
        let mut way = self.way(target, false).await?;
        let mut found = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan_page(&mut way, cursor, pattern).await?;
            found.extend(keys);
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Deletes every key matching `pattern` on one primary: each page's keys by `UNLINK`s
    /// of one slot each, sent with the next page's `SCAN` in one pipeline.
    async fn delete_on(self: &Arc<Self>, target: &Target, pattern: &str) -> Result<u64> {
        let mut way = self.way(target, target.replicas > 0).await?;
        let deleted = self.unlink_matching(&mut way, pattern).await?;
        if target.replicas > 0 {
            let mut pipe = redis::pipe();
            pipe.add_command(self.wait_cmd());
            let acked = self.node_round_trip(&mut way, pipe).await?.pop();
            self.replicated(acked.unwrap_or(Value::Nil), &target.addr)?;
        }
        Ok(deleted)
    }

    /// The pages of [`delete_on`](Self::delete_on), on one way to a primary.
    async fn unlink_matching(&self, way: &mut Way, pattern: &str) -> Result<u64> {
        let mut deleted = 0u64;
        let (mut cursor, mut keys) = self.scan_page(way, 0, pattern).await?;
        loop {
            if keys.is_empty() {
                if cursor == 0 {
                    return Ok(deleted);
                }
                (cursor, keys) = self.scan_page(way, cursor, pattern).await?;
                continue;
            }
            let groups = by_slot(std::mem::take(&mut keys));
            let mut pipe = redis::pipe();
            for (_, group) in &groups {
                pipe.add_command(unlink_cmd(group));
            }
            if cursor != 0 {
                pipe.add_command(self.scan_cmd(cursor, pattern));
            }
            let mut replies = self.node_round_trip(way, pipe).await?;
            let page = if cursor != 0 { replies.pop() } else { None };
            for ((slot, group), reply) in groups.into_iter().zip(replies) {
                match reply.extract_error() {
                    Ok(n) => deleted += parse::<u64>(n)?,
                    // The slot moved away meanwhile: delete by slot, following redirections.
                    Err(_) => deleted += self.unlink_slot(slot, &group).await?,
                }
            }
            match page {
                Some(page) => {
                    (cursor, keys) = parse(page.extract_error().map_err(Error::from_redis)?)?
                }
                None => return Ok(deleted),
            }
        }
    }

    /// Deletes `keys` from every primary that owns some of them, all at once: to each, one
    /// pipeline of one `UNLINK` per slot (never a multi-key command across slots), then its
    /// `WAIT`. A slot that moved meanwhile is deleted by slot, following redirections.
    async fn delete_many_async(self: Arc<Self>, keys: Vec<Vec<u8>>) -> Result<u64> {
        let topology = self.topology(Mode::Async).await?;
        let mut by_node: HashMap<usize, Vec<SlotKeys>> = HashMap::new();
        let mut unowned = Vec::new();
        for (slot, group) in by_slot(keys) {
            match topology.owner[usize::from(slot)] {
                NONE => unowned.push((slot, group)),
                i => by_node
                    .entry(usize::from(i))
                    .or_default()
                    .push((slot, group)),
            }
        }
        let runs = by_node.into_iter().map(|(i, groups)| {
            let p = &topology.primaries[i];
            let target = Target {
                addr: p.addr.clone(),
                breaker: p.breaker.clone(),
                link: p.link.clone(),
                replicas: p.replicas,
            };
            let this = &self;
            async move {
                let out = this.unlink_on(&target, groups).await;
                target.breaker.record(&out);
                out
            }
        });
        let mut deleted = 0;
        let mut failed = None;
        for out in join_all(runs.collect()).await {
            match out {
                Ok(n) => deleted += n,
                Err(e) => failed = Some(e),
            }
        }
        for (slot, group) in unowned {
            match self.unlink_slot(slot, &group).await {
                Ok(n) => deleted += n,
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => {
                if topology_fault(&e) {
                    self.mark_dirty();
                }
                Err(e)
            }
            None => Ok(deleted),
        }
    }

    /// One primary's part of [`delete_many_async`](Self::delete_many_async): one round trip.
    async fn unlink_on(self: &Arc<Self>, target: &Target, groups: Vec<SlotKeys>) -> Result<u64> {
        let wait = target.replicas > 0;
        let mut way = self.way(target, wait).await?;
        let mut pipe = redis::pipe();
        for (_, group) in &groups {
            pipe.add_command(unlink_cmd(group));
        }
        if wait {
            pipe.add_command(self.wait_cmd());
        }
        let mut replies = self.node_round_trip(&mut way, pipe).await?;
        let acked = if wait { replies.pop() } else { None };
        if replies.len() != groups.len() {
            return Err(Error::new(
                ErrorKind::Store,
                format!(
                    "redis cluster node {} answered {} of {} deletions",
                    target.addr,
                    replies.len(),
                    groups.len()
                ),
            ));
        }
        let mut deleted = 0;
        for ((slot, group), reply) in groups.into_iter().zip(replies) {
            deleted += match reply.extract_error() {
                Ok(n) => parse::<u64>(n)?,
                // The slot moved away meanwhile: delete by slot, following redirections.
                Err(_) => self.unlink_slot(slot, &group).await?,
            };
        }
        if let Some(acked) = acked {
            self.replicated(acked, &target.addr)?;
        }
        Ok(deleted)
    }

    /// `UNLINK` of one slot's keys through the cluster connection, which follows
    /// redirections.
    async fn unlink_slot(&self, slot: u16, group: &[Vec<u8>]) -> Result<u64> {
        let n = self
            .bounded(async {
                let mut con = self.connection().await?;
                con.route_command(unlink_cmd(group), slot_route(slot))
                    .await
                    .and_then(Value::extract_error)
                    .map_err(Error::from_redis)
            })
            .await?;
        parse::<u64>(n)
    }

    /// `PING` on every primary at once.
    async fn ping_all(self: Arc<Self>) -> Result<()> {
        let targets = self.targets("*").await?;
        let runs = targets.iter().map(|target| {
            let this = &self;
            async move {
                let mut way = this.way(target, false).await?;
                let mut pipe = redis::pipe();
                pipe.add_command(redis::cmd("PING"));
                let reply = this.node_round_trip(&mut way, pipe).await?.pop();
                reply
                    .unwrap_or(Value::Nil)
                    .extract_error()
                    .map(drop)
                    .map_err(Error::from_redis)
            }
        });
        join_all(runs.collect()).await.into_iter().collect()
    }

    async fn delete_pattern_async(self: Arc<Self>, pattern: String) -> Result<u64> {
        let targets = self.targets(&pattern).await?;
        let runs = targets.iter().map(|target| {
            let pattern = &pattern;
            let this = &self;
            async move {
                let out = this.delete_on(target, pattern).await;
                target.breaker.record(&out);
                out
            }
        });
        let mut deleted = 0;
        let mut failed = None;
        for out in join_all(runs.collect()).await {
            match out {
                Ok(n) => deleted += n,
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => {
                if topology_fault(&e) {
                    self.mark_dirty();
                }
                Err(e)
            }
            None => Ok(deleted),
        }
    }

    async fn keys_async(self: Arc<Self>, pattern: String) -> Result<Vec<String>> {
        let targets = self.targets(&pattern).await?;
        for target in &targets {
            target.breaker.check()?;
        }
        let runs = targets.iter().map(|target| {
            let pattern = &pattern;
            let this = &self;
            async move {
                let out = this.keys_on(target, pattern).await;
                target.breaker.record(&out);
                out
            }
        });
        let mut found = HashSet::new();
        for out in join_all(runs.collect()).await {
            match out {
                Ok(keys) => found.extend(keys),
                Err(e) => {
                    if topology_fault(&e) {
                        self.mark_dirty();
                    }
                    return Err(e);
                }
            }
        }
        Ok(found
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect())
    }
}

impl Store for ClusterStore {
    async fn get(&self, mode: Mode, key: &str) -> Result<Option<Vec<u8>>> {
        let v = self
            .inner
            .run(mode, key, Op::Cmd(get_cmd(key)), true)
            .await?;
        parse(v)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_census_counts_live_replicas_per_primary() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :30001@31001 myself,master - 0 0 1 connected 0-5460
";
        let census = replica_census(Value::BulkString(nodes.into()), "10.0.0.9").unwrap();
        let at = |host: &str, port| {
            census[&Addr {
                host: host.into(),
                port,
            }]
        };
        assert_eq!(
            at("10.0.0.9", 30001),
            1,
            "the answering node's empty host is the default"
        );
        assert_eq!(at("127.0.0.1", 30002), 0, "a failed replica does not count");
        assert_eq!(at("127.0.0.1", 30003), 1);
        assert_eq!(census.len(), 3);
        assert!(replica_census(Value::Int(1), "h").is_none());
    }

    #[test]
    fn crc16_is_xmodem() {
        // The check value of CRC-16/XMODEM, and the example of the Redis Cluster spec.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_match_cluster_keyslot() {
        // `redis-cli CLUSTER KEYSLOT …` on Redis 7.
        for (key, expected) in [
            ("foo", 12182),
            ("bar", 5061),
            ("hello", 866),
            ("user:123:profile", 8490),
            ("{user1000}.following", 3443),
            ("{user1000}.followers", 3443),
            ("foo{}{bar}", 8363),
            ("foo{{bar}}zap", 4015),
            ("foo{bar}{zap}", 5061),
            ("paycore:wallets:{42}:summary", 8000),
            ("", 0),
        ] {
            assert_eq!(slot(key.as_bytes()), expected, "{key}");
        }
    }

    #[test]
    fn a_pattern_has_a_slot_when_its_literal_start_holds_a_whole_tag() {
        let tag42 = slot(b"{42}");
        assert_eq!(pattern_slot("paycore:wallets:{42}:*"), Some(tag42));
        assert_eq!(pattern_slot("paycore:wallets:{42}:x?[ab]"), Some(tag42));
        assert_eq!(pattern_slot("a:{42}"), Some(tag42));
        // An escaped glob character is literal text.
        assert_eq!(pattern_slot("a\\*:{42}:*"), Some(tag42));
        assert_eq!(pattern_slot("a:\\{42}:*"), Some(tag42));
        // No glob at all: one key, its slot.
        assert_eq!(pattern_slot("user:123:profile"), Some(8490));
        assert_eq!(pattern_slot("a\\*b"), Some(slot(b"a*b")));
        // A glob before the tag closes, or no tag: any slot.
        for any in [
            "wallets:*",
            "*{42}:x",
            "wallets:{4*}:x",
            "wallets:{42:*",
            "wallets:{}:*",
            "wallets:{?}:x",
            "wallets:[{]42}:*",
        ] {
            assert_eq!(pattern_slot(any), None, "{any}");
        }
    }

    #[test]
    fn keys_are_grouped_by_slot() {
        let keys = ["{a}1", "{b}1", "{a}2", "x"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        let groups = by_slot(keys);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].1, [b"{a}1".to_vec(), b"{a}2".to_vec()]);
        for (s, group) in groups {
            assert!(group.iter().all(|k| slot(k) == s));
        }
    }

    #[test]
    fn node_urls_keep_the_seed_credentials_and_parameters() {
        let addr = |host: &str, port| Addr {
            host: host.into(),
            port,
        };
        assert_eq!(
            node_url(
                "redis://u:p@w@seed:7000/?protocol=resp3",
                &addr("10.0.0.2", 7001)
            ),
            "redis://u:p@w@10.0.0.2:7001/?protocol=resp3"
        );
        assert_eq!(
            node_url("rediss://seed:7000", &addr("::1", 7002)),
            "rediss://[::1]:7002"
        );
        assert_eq!(
            node_url("redis://:pw@[::1]:7000/", &addr("h", 1)),
            "redis://:pw@h:1/"
        );
    }

    #[test]
    fn cluster_slots_replies_parse() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(8191),
                node("10.0.0.1", 7000),
                node("10.0.0.2", 7001),
            ]),
            Value::Array(vec![Value::Int(8192), Value::Int(16383), node("", 7002)]),
        ]);
        let ranges = parse_slots(reply, "seed").unwrap();
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges[0].1, 8191);
        assert_eq!(ranges[0].2[0].to_string(), "10.0.0.1:7000");
        assert_eq!(ranges[0].2[1].to_string(), "10.0.0.2:7001");
        assert_eq!(ranges[1].2[0].to_string(), "seed:7002");
        assert!(parse_slots(Value::Nil, "x").is_err());
    }
}
