//! The slot map: which primary owns each slot, read from `CLUSTER SLOTS` (and the replicas
//! each primary has, from `CLUSTER NODES`), reread in the background after faults and
//! every half minute; each node's breaker and connections, kept across maps.

use super::*;

/// A node's address as the cluster gives it (`CLUSTER SLOTS`), as redis-rs keys its
/// connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Addr {
    pub(super) host: String,
    pub(super) port: u16,
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Addr {
    pub(super) fn route(&self) -> RoutingInfo {
        RoutingInfo::SingleNode(self.single())
    }

    pub(super) fn single(&self) -> SingleNodeRoutingInfo {
        SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// `host:port` as a MOVED or ASK error names it.
    pub(super) fn parse(s: &str) -> Option<Addr> {
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
pub(super) struct Primary {
    pub(super) addr: Addr,
    pub(super) breaker: Arc<Breaker>,
    pub(super) link: Arc<Link>,
    /// How many replicas the cluster listed for it (failed ones are not listed).
    pub(super) replicas: usize,
}

/// A node's own multiplexed connection: the async fast path for one-key commands, sent
/// from the caller as on one server (no hop through redis-rs's cluster task). A redirection
/// it meets is followed through the cluster connection.
pub(super) struct Link {
    /// `None` when no URL could be made for the node (it is then reached through the
    /// cluster connection only).
    pub(super) client: Option<redis::Client>,
    pub(super) con: AsyncConn,
    /// A connection of its own for the invalidations that wait for a replica (`WAIT`):
    /// Redis answers nothing else on a connection while it waits, and the node's async
    /// calls share `con`.
    pub(super) apart: AsyncConn,
}

impl Link {
    pub(super) fn conn(&self, apart: bool) -> &AsyncConn {
        if apart {
            &self.apart
        } else {
            &self.con
        }
    }
}

/// A node's breaker and connection.
pub(super) type Node = (Arc<Breaker>, Arc<Link>);

/// A primary a pattern operation runs on.
pub(super) struct Target {
    pub(super) addr: Addr,
    pub(super) breaker: Arc<Breaker>,
    pub(super) link: Arc<Link>,
    pub(super) replicas: usize,
}

impl Primary {
    /// This primary, for an operation on many keys or a pattern.
    pub(super) fn target(&self) -> Target {
        Target {
            addr: self.addr.clone(),
            breaker: self.breaker.clone(),
            link: self.link.clone(),
            replicas: self.replicas,
        }
    }
}

/// A way to one primary for a pattern operation.
pub(super) enum Way {
    /// Its own connection (the one apart, when true), with the generation to report it
    /// broken.
    Direct(Arc<Link>, bool, u64, redis::aio::MultiplexedConnection),
    /// The cluster connection, routed to its address.
    Routed(AsyncConnection, Addr),
}

/// The URL of the node at `addr`: the seed URL with its host and port replaced, so that
/// credentials, TLS and parameters stay.
pub(super) fn node_url(seed: &str, addr: &Addr) -> String {
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
pub(super) struct Topology {
    /// Slot → index into `primaries`; `NONE` for a slot no primary serves.
    pub(super) owner: Vec<u16>,
    pub(super) primaries: Vec<Primary>,
    /// Every node the cluster listed, primaries first: where to ask for the next topology.
    pub(super) nodes: Vec<Addr>,
}

pub(super) const NONE: u16 = u16::MAX;

impl Topology {
    pub(super) fn primary(&self, slot: u16) -> Option<&Primary> {
        match self.owner[usize::from(slot)] {
            NONE => None,
            i => Some(&self.primaries[usize::from(i)]),
        }
    }

    /// The same primaries for the same slots.
    pub(super) fn same_as(&self, other: &Topology) -> bool {
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
pub(super) fn parse_slots(
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
pub(super) fn replica_census(value: Value, default_host: &str) -> Option<HashMap<Addr, usize>> {
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

pub(super) fn nodes_cmd() -> Cmd {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    cmd
}

pub(super) fn slots_cmd() -> Cmd {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SLOTS");
    cmd
}

/// How often the slot map is read again at most while faults ask for it.
pub(super) const REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// How often it is read again anyway (a resharding that raised no fault here).
pub(super) const REFRESH_ANYWAY: Duration = Duration::from_secs(30);

impl Inner {
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub(super) fn current(&self) -> Option<Arc<Topology>> {
        self.topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn node(&self, addr: &Addr) -> Node {
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
    pub(super) fn install(
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
    pub(super) async fn topology(self: &Arc<Self>, mode: Mode) -> Result<Arc<Topology>> {
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

    pub(super) fn seed_host(&self) -> String {
        self.seed_host.clone()
    }

    pub(super) fn mark_dirty(self: &Arc<Self>) {
        self.dirty.store(true, Ordering::Relaxed);
        self.maybe_refresh();
    }

    /// Rereads the slot map in the background, on the IO thread, when a fault asked for it
    /// (at most every 100 ms) or when it is half a minute old.
    pub(super) fn maybe_refresh(self: &Arc<Self>) {
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
    pub(super) async fn refresh(self: &Arc<Self>) -> Result<()> {
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
