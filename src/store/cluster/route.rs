//! One command to the primary of its key's slot: straight on that node's own connection,
//! or through redis-rs's cluster connection, which follows `MOVED` and `ASK`; blocking
//! calls through a pool of blocking cluster connections. Every round trip is bounded by
//! the operation timeout.

use super::*;

/// One command on one key's slot, or a compare-and-set script on it.
pub(super) enum Op<'a> {
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
    pub(super) fn script_cmd(&self, cached: bool) -> Cmd {
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
pub(super) fn redirected(e: &Error) -> bool {
    e.redis_error().is_some_and(|r| {
        matches!(
            r.kind(),
            redis::ErrorKind::Server(
                ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::ReadOnly
            )
        )
    })
}

pub(super) fn no_script(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript)
}

/// A sign that the slot map may have changed: a node down or unreachable, a redirection, or
/// the cluster refusing commands while it fails over.
pub(super) fn topology_fault(e: &Error) -> bool {
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

pub(super) fn parse<T: FromRedisValue>(v: Value) -> Result<T> {
    redis::from_redis_value(v).map_err(|e| Error::from_redis(e.into()))
}

impl Inner {
    pub(super) async fn bounded<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        match crate::rt::timeout(self.op_timeout, std::pin::pin!(fut)).await {
            Some(out) => out,
            None => Err(Error::timeout("redis cluster request", self.op_timeout)),
        }
    }

    /// The async cluster connection, built on first use on the crate's IO runtime, which
    /// drives it (and its connections to every node) whatever runtime the callers use.
    pub(super) async fn connection(&self) -> Result<AsyncConnection> {
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
    pub(super) fn with_sync<T>(
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
    pub(super) fn send_sync(&self, slot: u16, op: &Op<'_>) -> Result<(Value, bool)> {
        self.send_sync_then(slot, op, None)
            .map(|(v, moved, _)| (v, moved))
    }

    /// [`send_sync`](Self::send_sync), then `then` on the same connection and node when the
    /// op succeeded, with its reply (or its error, as `None`).
    pub(super) fn send_sync_then(
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
    pub(super) async fn send_async(
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
    pub(super) async fn send_direct(
        &self,
        link: &Link,
        client: &redis::Client,
        op: &Op<'_>,
    ) -> Result<Value> {
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
    pub(super) async fn run(
        self: &Arc<Self>,
        mode: Mode,
        key: &str,
        op: Op<'_>,
        guarded: bool,
    ) -> Result<Value> {
        let slot = slot(key.as_bytes());
        self.run_on_slot(mode, slot, op, guarded).await
    }

    pub(super) async fn run_on_slot(
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
}
