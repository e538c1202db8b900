//! Connections to one server: the client made from a URL, the multiplexed async
//! connection on the crate's IO thread (rebuilt when it breaks), and one request's worth of
//! work, owned, so that it can run there.

use super::scripts::pttl_cmd;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::redact::SecretUrl;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, IntoConnectionInfo, Script};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
pub(super) enum Request {
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
pub(super) fn sliding_bytes(key: &str, ms: u64) -> Vec<u8> {
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

pub(super) fn sliding_pipe(key: &str, ms: u64) -> redis::Pipeline {
    let mut getex = redis::cmd("GETEX");
    getex.arg(key).arg("PX").arg(ms);
    let mut pipe = redis::pipe();
    pipe.add_command(pttl_cmd(key)).add_command(getex);
    pipe
}

impl Request {
    /// The request as one command of a pipeline (a script as its `EVALSHA`), if it is one.
    pub(super) fn command(&self) -> Option<Cmd> {
        match self {
            Request::Cmd(cmd) => Some(cmd.clone()),
            Request::Script(script, key, args) => {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(script.get_hash()).arg(1).arg(key.as_str());
                for a in args {
                    cmd.arg(a.as_slice());
                }
                Some(cmd)
            }
            Request::Pipe(_) | Request::Sliding(..) => None,
        }
    }

    pub(super) fn query<T: FromRedisValue>(
        &self,
        con: &mut redis::Connection,
    ) -> redis::RedisResult<T> {
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

    pub(super) async fn query_async<T: FromRedisValue>(
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
