use std::fmt;
use std::sync::Arc;

/// The result type of the cache's own operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, broadly. New kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A key template is malformed, or a placeholder has no value in the context.
    Template,
    /// The configuration is invalid (bad URL, unsupported scheme, zero TTL…).
    Config,
    /// The global manager was initialised twice.
    AlreadyInitialized,
    /// The store could not be reached or answered with an error.
    Store,
    /// The store did not answer within the operation timeout.
    Timeout,
    /// The store is taken as down after failed calls in a row (see
    /// [`Config::breaker`](crate::Config::breaker)): the call was not sent.
    Unavailable,
    /// A value could not be serialized in the cache's codec.
    Serialize,
    /// A stored value could not be deserialized into the requested type.
    Deserialize,
    /// An invalidation could not reach the store (down, frozen, held back by the breaker, or
    /// refused by a permission the user lacks) and was queued: it is retried in the
    /// background until it lands, and until then no cache of this process on that store and
    /// prefix serves what it names. Other processes may serve the old values meanwhile. Its
    /// source is the store's error. (An error reply that asking again cannot change, such as
    /// `WRONGTYPE`, fails the invalidation instead.)
    Queued,
    /// The computation this call waited on, in this process or another, failed, and the
    /// call answers with that failure rather than run the computation again
    /// ([`Cacheable::try_run_shared`](crate::Cacheable::try_run_shared)).
    ComputationFailed,
    /// The computation ran past the call's
    /// [`hard_timeout`](crate::Cacheable::hard_timeout) and was given up.
    ComputationTimeout,
}

/// The error of the cache's own operations.
///
/// Cheap to clone; [`kind`](Error::kind) says what kind of fault it is and
/// [`source`](std::error::Error::source) gives the underlying error, if any.
///
/// `Display` shows this error's own message, and its cause only through `source()`, so that
/// chain printers (anyhow's `{:#}`, `Report`) show each cause once. The alternate form,
/// `{:#}`, shows the whole chain on one line, `message: cause: cause's cause`.
///
/// A cause that only wraps another and shows the same text is left out of the chain, so
/// that its text does not show twice: a `redis::RedisError` for a refused or dropped
/// connection displays its I/O error and returns it as its own source, so the chain of
/// such a fault is `redis error: Connection refused (os error 111)`, whose cause is that
/// I/O error (as redis-rs holds it) rather than the `RedisError`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use cacheable::{Cache, Config};
///
/// let cache = Cache::new(Config::from_url("redis://alice:secret@127.0.0.1:1/0")?)?;
/// let err = cache.get::<i32>("k").unwrap_err();
/// let cause = std::error::Error::source(&err).expect("the refused connection");
/// assert_eq!(format!("{err:#}"), format!("{err}: {cause}"));
/// // URLs in messages never show a password.
/// assert!(!format!("{err:#} {err:?}").contains("secret"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// `source` shows its own cause's text and nothing else: the chain goes straight to
    /// that cause.
    source_is_wrapper: bool,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Arc::new(Inner {
                kind,
                message: message.into(),
                source: None,
                source_is_wrapper: false,
            }),
        }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            inner: Arc::new(Inner {
                kind,
                message: message.into(),
                source_is_wrapper: source
                    .source()
                    .is_some_and(|cause| cause.to_string() == source.to_string()),
                source: Some(Box::new(source)),
            }),
        }
    }

    pub(crate) fn template(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Template, message)
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    #[cfg(feature = "redis")]
    pub(crate) fn timeout(what: &str, after: std::time::Duration) -> Self {
        Error::new(
            ErrorKind::Timeout,
            format!("{what} timed out after {} ms", after.as_millis()),
        )
    }

    /// The kind of fault.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// True when the store did not answer in time, or the computation ran past its
    /// [`hard_timeout`](crate::Cacheable::hard_timeout).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Timeout | ErrorKind::ComputationTimeout
        )
    }

    /// True when the fault is in reaching the store (down, refused, timed out, or taken as
    /// down), an invalidation queued because of one included.
    pub fn is_store_error(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Store | ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Queued
        )
    }

    /// True for an invalidation that could not reach the store and was queued
    /// ([`ErrorKind::Queued`]): it will land by itself; this process already serves none
    /// of what it names.
    pub fn is_queued(&self) -> bool {
        self.inner.kind == ErrorKind::Queued
    }

    /// True when the call answered with the failure of the computation it waited on
    /// ([`ErrorKind::ComputationFailed`]), without running its own.
    pub fn is_shared_failure(&self) -> bool {
        self.inner.kind == ErrorKind::ComputationFailed
    }
}

impl Error {
    /// True when the request certainly never reached the store: refused before sending
    /// (an open breaker) or by the connection itself.
    pub(crate) fn never_sent(&self) -> bool {
        #[cfg(feature = "redis")]
        let refused = self
            .redis_error()
            .is_some_and(redis::RedisError::is_connection_refusal);
        #[cfg(not(feature = "redis"))]
        let refused = false;
        self.inner.kind == ErrorKind::Unavailable || refused
    }

    /// The Redis error underneath, if any (even when the chain skips it as a wrapper).
    /// An error reply that asking again will not change: the key holds another type
    /// (`WRONGTYPE`), or a script failed. Such an invalidation is failed, not queued.
    pub(crate) fn lasts(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.redis_error().is_some_and(|r| {
            r.code() == Some("WRONGTYPE")
                || r.detail().is_some_and(|d| {
                    d.contains("Error running script") || d.contains("user_script")
                })
        });
        #[cfg(not(feature = "redis"))]
        false
    }

    #[cfg(feature = "redis")]
    pub(crate) fn redis_error(&self) -> Option<&redis::RedisError> {
        self.inner.source.as_deref()?.downcast_ref()
    }

    /// A Redis client error as the crate reports it. Not a `From` impl: that would put the
    /// `redis` crate's types, and its major version, in this crate's public API.
    #[cfg(feature = "redis")]
    pub(crate) fn from_redis(e: redis::RedisError) -> Self {
        if e.is_timeout() {
            Error::with_source(ErrorKind::Timeout, "redis did not answer in time", e)
        } else if e.code() == Some("NOPERM") {
            let message = no_permission(e.detail().unwrap_or_default());
            Error::with_source(ErrorKind::Store, message, e)
        } else {
            Error::with_source(ErrorKind::Store, "redis error", e)
        }
    }
}

/// What a `NOPERM` reply means and what to grant: the command it names, or the keys.
#[cfg(feature = "redis")]
fn no_permission(detail: &str) -> String {
    const LINE: &str =
        "cacheable's docs/stores.md (Least privilege) gives the ACL line for each topology";
    let named = detail.split('\'').nth(1).filter(|c| !c.is_empty());
    match named {
        Some(command) if detail.contains("command") => format!(
            "the Redis user may not run `{command}`: grant it (`ACL SETUSER <user> +{command}`); {LINE}"
        ),
        _ if detail.contains("key") => format!(
            "the Redis user may not touch a key under this cache's prefix: grant `~<prefix>:*`; {LINE}"
        ),
        _ => format!("the Redis user lacks a permission: {LINE}"),
    }
}

impl fmt::Display for Error {
    /// The message alone; with `{:#}`, the message and every cause after it, each once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)?;
        if f.alternate() {
            let mut cause = std::error::Error::source(self);
            while let Some(e) = cause {
                write!(f, ": {e}")?;
                cause = e.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("message", &self.inner.message)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source = self.inner.source.as_deref()?;
        if self.inner.source_is_wrapper {
            source.source()
        } else {
            Some(source)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis fault as a refused connection gives one: a `RedisError` around an
    /// `io::Error`, both displaying the same text.
    #[cfg(feature = "redis")]
    fn refused() -> Error {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        Error::from_redis(redis::RedisError::from(io))
    }

    #[test]
    #[cfg(feature = "redis")]
    fn display_is_the_message_and_the_chain_shows_each_cause_once() {
        let e = refused();
        assert_eq!(e.to_string(), "redis error");
        let cause = std::error::Error::source(&e).expect("a cause");
        assert_eq!(cause.to_string(), "refused");
        assert!(cause.downcast_ref::<redis::RedisError>().is_none());
        assert!(cause.source().is_none());
        assert_eq!(format!("{e:#}"), "redis error: refused");
        // The crate's log lines print the same text.
        assert_eq!(crate::report::chain(&e), format!("{e:#}"));
        // The Redis error stays within reach of the crate.
        assert!(e.redis_error().is_some_and(redis::RedisError::is_io_error));
    }

    #[test]
    #[cfg(feature = "redis")]
    fn a_permission_error_names_the_command_and_the_grant() {
        let e = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm),
            "NOPERM",
            "User app has no permissions to run the 'time' command".to_string(),
        ));
        let e = Error::from_redis(e);
        let text = format!("{e:#}");
        assert!(text.contains("may not run `time`"), "{text}");
        assert!(text.contains("ACL SETUSER <user> +time"), "{text}");
    }

    #[test]
    fn a_cause_with_text_of_its_own_stays_in_the_chain() {
        let json = serde_json::from_str::<i32>("x").unwrap_err();
        let text = json.to_string();
        let e = Error::with_source(ErrorKind::Deserialize, "bad value", json);
        assert_eq!(e.to_string(), "bad value");
        assert_eq!(format!("{e:#}"), format!("bad value: {text}"));
        assert_eq!(crate::report::chain(&e), format!("{e:#}"));
    }
}
