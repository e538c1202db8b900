//! Work on many primaries at once: patterns (`SCAN` on every primary, or on the one that
//! owns a pattern's literal hash tag), many keys (each primary's share in one pipeline),
//! `PING`; and the `WAIT` after an invalidation's deletions, on a connection kept apart.

use super::*;
use crate::rt::join_all;

/// Runs `fut` on the crate's IO thread and blocks the calling thread until it is done.
pub(super) fn on_io_thread<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    crate::rt::handle().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .expect("the cacheable IO thread dropped a cluster operation")
}

impl Inner {
    /// The primaries a pattern's keys can be on: the one owning its slot when the pattern
    /// has one, else all of them.
    pub(super) async fn targets(self: &Arc<Self>, pattern: &str) -> Result<Vec<Target>> {
        let topology = self.topology(Mode::Async).await?;
        Ok(
            match pattern_slot(pattern).and_then(|slot| topology.primary(slot)) {
                Some(p) => vec![p.target()],
                None => topology.primaries.iter().map(Primary::target).collect(),
            },
        )
    }

    /// `WAIT 1 t`: the deletions sent before it on the connection reached a replica, so
    /// that a failover (which promotes a replica) does not bring the deleted values back.
    /// Redis replicates asynchronously: without it, a primary killed just after
    /// acknowledging an invalidation's `UNLINK` could lose it (the 10-minute soak saw 2
    /// stale reads in 20 failovers). `t` is half the operation timeout (1 ms to 1 s).
    pub(super) fn wait_cmd(&self) -> Cmd {
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
    pub(super) fn replicated(
        self: &Arc<Self>,
        reply: Value,
        node: &dyn std::fmt::Display,
    ) -> Result<()> {
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
    pub(super) fn replicas_of(&self, slot: u16) -> usize {
        self.current()
            .and_then(|t| t.primary(slot).map(|p| p.replicas))
            .unwrap_or(0)
    }

    pub(super) fn scan_cmd(&self, cursor: u64, pattern: &str) -> Cmd {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(self.scan_count);
        cmd
    }

    /// A way to one primary: its own connection, or the cluster connection routed to it.
    pub(super) async fn way(&self, target: &Target, apart: bool) -> Result<Way> {
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
    pub(super) async fn node_round_trip(
        &self,
        way: &mut Way,
        pipe: redis::Pipeline,
    ) -> Result<Vec<Value>> {
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
    pub(super) async fn scan_page(
        &self,
        way: &mut Way,
        cursor: u64,
        pattern: &str,
    ) -> Result<ScanPage> {
        let mut pipe = redis::pipe();
        pipe.add_command(self.scan_cmd(cursor, pattern));
        let page = self.node_round_trip(way, pipe).await?.pop();
        let page = page.ok_or_else(|| Error::new(ErrorKind::Store, "SCAN got no reply"))?;
        parse(page.extract_error().map_err(Error::from_redis)?)
    }

    /// Every key matching `pattern` on one primary.
    pub(super) async fn keys_on(&self, target: &Target, pattern: &str) -> Result<Vec<Vec<u8>>> {
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
    pub(super) async fn delete_on(self: &Arc<Self>, target: &Target, pattern: &str) -> Result<u64> {
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
    pub(super) async fn unlink_matching(&self, way: &mut Way, pattern: &str) -> Result<u64> {
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
    pub(super) async fn delete_many_async(self: Arc<Self>, keys: Vec<Vec<u8>>) -> Result<u64> {
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
            let target = topology.primaries[i].target();
            let this = &self;
            async move {
                let out = this.unlink_on(&target, groups).await;
                target.breaker.record(&out);
                out
            }
        });
        let mut outs = join_all(runs.collect()).await;
        for (slot, group) in unowned {
            outs.push(self.unlink_slot(slot, &group).await);
        }
        self.total_deleted(outs)
    }

    /// The reads of [`get_many`](Store::get_many) from every primary that owns some of
    /// the keys, all at once: to each, one pipeline of one `MGET` per slot (never a
    /// multi-key command across slots) and, when asked, each key's `PTTL`. `None` for a key
    /// whose slot moved meanwhile or has no primary: the caller reads it alone, following
    /// redirections.
    pub(super) async fn get_many_async(
        self: Arc<Self>,
        keys: Vec<String>,
        with_ttl: bool,
    ) -> Vec<Option<Result<Read>>> {
        let mut out: Vec<Option<Result<Read>>> = keys.iter().map(|_| None).collect();
        let topology = match self.topology(Mode::Async).await {
            Ok(t) => t,
            Err(e) => return keys.iter().map(|_| Some(Err(e.clone()))).collect(),
        };
        // Primary → its slots → the indexes of their keys, in the keys' order.
        let mut by_node: HashMap<usize, Vec<(u16, Vec<usize>)>> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            let s = slot(key.as_bytes());
            let owner = topology.owner[usize::from(s)];
            if owner == NONE {
                continue;
            }
            let slots = by_node.entry(usize::from(owner)).or_default();
            match slots.iter_mut().find(|(other, _)| *other == s) {
                Some((_, group)) => group.push(i),
                None => slots.push((s, vec![i])),
            }
        }
        let runs = by_node.into_iter().map(|(owner, groups)| {
            let target = topology.primaries[owner].target();
            let (this, keys) = (&self, &keys);
            async move {
                let read = this.read_on(&target, &groups, keys, with_ttl).await;
                target.breaker.record(&read);
                (groups, read)
            }
        });
        for (groups, read) in join_all(runs.collect()).await {
            match read {
                Ok(reads) => {
                    for ((_, group), reads) in groups.into_iter().zip(reads) {
                        let Some(reads) = reads else { continue };
                        for (i, read) in group.into_iter().zip(reads) {
                            out[i] = Some(Ok(read));
                        }
                    }
                }
                Err(e) => {
                    if topology_fault(&e) {
                        self.mark_dirty();
                    }
                    for i in groups.into_iter().flat_map(|(_, group)| group) {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out
    }

    /// One primary's part of [`get_many_async`](Self::get_many_async): one round trip, one
    /// `Vec` of reads per slot (`None` for a slot that answered with an error, such as one
    /// that moved away).
    async fn read_on(
        &self,
        target: &Target,
        groups: &[(u16, Vec<usize>)],
        keys: &[String],
        with_ttl: bool,
    ) -> Result<Vec<Option<Vec<Read>>>> {
        target.breaker.check()?;
        let mut way = self.way(target, false).await?;
        let mut pipe = redis::pipe();
        for (_, group) in groups {
            pipe.add_command(mget_cmd(group.iter().map(|&i| keys[i].as_str())));
            if with_ttl {
                for &i in group {
                    pipe.add_command(pttl_cmd(&keys[i]));
                }
            }
        }
        let mut replies = self.node_round_trip(&mut way, pipe).await?.into_iter();
        let mut reads = Vec::with_capacity(groups.len());
        for (_, group) in groups {
            let values = replies.next();
            let ttls: Vec<Value> = replies
                .by_ref()
                .take(if with_ttl { group.len() } else { 0 })
                .collect();
            let answered = values.and_then(|v| v.extract_error().ok()).and_then(|v| {
                let ttls = ttls.into_iter().map(|t| t.extract_error().ok());
                many_reads(v, ttls.collect::<Option<_>>()?, group.len()).ok()
            });
            reads.push(answered);
        }
        Ok(reads)
    }

    /// One primary's part of [`delete_many_async`](Self::delete_many_async): one round trip.
    pub(super) async fn unlink_on(
        self: &Arc<Self>,
        target: &Target,
        groups: Vec<SlotKeys>,
    ) -> Result<u64> {
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
    pub(super) async fn unlink_slot(&self, slot: u16, group: &[Vec<u8>]) -> Result<u64> {
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
    pub(super) async fn ping_all(self: Arc<Self>) -> Result<()> {
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

    pub(super) async fn delete_pattern_async(self: Arc<Self>, pattern: String) -> Result<u64> {
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
        let outs = join_all(runs.collect()).await;
        self.total_deleted(outs)
    }

    /// The keys the primaries' deletions removed in all, or the last error; an error that
    /// says the slot map is wrong marks it for a refresh.
    fn total_deleted(self: &Arc<Self>, outs: Vec<Result<u64>>) -> Result<u64> {
        let mut deleted = 0;
        let mut failed = None;
        for out in outs {
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

    pub(super) async fn keys_async(self: Arc<Self>, pattern: String) -> Result<Vec<String>> {
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
