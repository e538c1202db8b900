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
    /// A value could not be serialized to JSON.
    Serialize,
    /// A stored value could not be deserialized into the requested type.
    Deserialize,
}

/// The error of the cache's own operations.
///
/// Cheap to clone; [`kind`](Error::kind) says what kind of fault it is and
/// [`source`](std::error::Error::source) gives the underlying error, if any.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Arc::new(Inner {
                kind,
                message: message.into(),
                source: None,
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

    /// True when the store did not answer in time.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }

    /// True when the fault is in reaching the store (down, refused, timed out, or taken as
    /// down).
    pub fn is_store_error(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::Store | ErrorKind::Timeout | ErrorKind::Unavailable
        )
    }
}

impl Error {
    /// True when the request certainly never reached the store: refused before sending
    /// (an open breaker) or by the connection itself.
    pub(crate) fn never_sent(&self) -> bool {
        self.inner.kind == ErrorKind::Unavailable
            || std::error::Error::source(self)
                .and_then(|s| s.downcast_ref::<redis::RedisError>())
                .is_some_and(redis::RedisError::is_connection_refusal)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)?;
        if let Some(source) = &self.inner.source {
            write!(f, ": {source}")?;
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
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        if e.is_timeout() {
            Error::with_source(ErrorKind::Timeout, "redis did not answer in time", e)
        } else {
            Error::with_source(ErrorKind::Store, "redis error", e)
        }
    }
}
