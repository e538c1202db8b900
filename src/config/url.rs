//! Cache URLs: `memory://`, `redis://`, `rediss://`, `redis+cluster://`,
//! `redis+sentinel://`, and the query parameters any of them takes (`codec`,
//! `compress_over`, `max_value_bytes`, `near_cache`…).

use super::*;

impl Config {
    /// A configuration from a URL: `redis://host:port/db`, `rediss://…` (TLS, with the
    /// `tls` feature), `redis+unix:///path`, `redis+cluster://host:port,host:port,…` (a Redis
    /// Cluster, from any of its nodes; `rediss+cluster://` with TLS), `memory://` or
    /// `memory://?max_entries=N`.
    ///
    /// A cluster URL takes one set of credentials for every node
    /// (`redis+cluster://user:password@h1:7000,h2:7000`) or the same set before each node
    /// (`user:password@h1:7000,user:password@h2:7000`), and query parameters that apply to
    /// every node (`?protocol=resp3`). A cluster has one database: a path other than `/` or
    /// `/0` is refused.
    ///
    /// Any URL also takes how values are written: `?codec=msgpack` ([`codec`](Config::codec),
    /// with the `msgpack` feature) and `?compress_over=1024`
    /// (`Config::compress_over`, with the `compress` feature), alone or
    /// beside the store's own parameters (`redis://host:6379/0?codec=msgpack&compress_over=1024`).
    ///
    /// # Errors
    /// A Sentinel URL, `redis+sentinel://[user:password@]h1:26379,h2:26379/SERVICE[/DB]`
    /// (`rediss+sentinel://` with TLS), names the Sentinels, the service they monitor and
    /// the database; its credentials are the data nodes' (the primary's and replicas'
    /// `requirepass`). Sentinels with a password of their own take it as
    /// `?sentinel_password=…` (and `sentinel_username=…`); other query parameters go to the
    /// data nodes. A Sentinel without a port is on 26379. See [`Config::sentinel`].
    ///
    /// # Errors
    /// An unknown scheme, or one this build does not support (`rediss://` without the `tls`
    /// feature, `redis+cluster://` without the `cluster` feature), is a
    /// [`Config`](crate::error::ErrorKind::Config) error; so is a `codec` or `compress_over` this
    /// build does not know.
    pub fn from_url(url: &str) -> Result<Config> {
        let url = url.trim();
        let (url, codec, compress_over) = take_format_params(url)?;
        let mut config = Config::store_from_url(&url)?;
        if let Some(codec) = codec {
            config.format.codec = codec;
        }
        if compress_over.is_some() {
            config.format.compress_over = compress_over;
        }
        Ok(config)
    }

    /// The store part of [`from_url`](Config::from_url), the format parameters taken out.
    fn store_from_url(url: &str) -> Result<Config> {
        // Messages show the URL with its passwords masked.
        let shown = crate::redact::url(url);
        let config = Config::from_url_store(url, &shown)?;
        // `max_value_bytes` applies to every store; redis-rs ignores query parameters it
        // does not know, so the URL is passed on as it is.
        let query = url.split_once('?').map_or("", |(_, q)| q);
        match query
            .split('&')
            .find_map(|p| p.strip_prefix("max_value_bytes="))
        {
            Some(n) => Ok(config.max_value_bytes(n.trim().parse().map_err(|_| {
                Error::config(format!(
                    "cache URL `{shown}`: max_value_bytes must be a number of bytes"
                ))
            })?)),
            None => Ok(config),
        }
    }

    fn from_url_store(url: &str, shown: &str) -> Result<Config> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| match url.split_once(':') {
            // `redis:/host`, `redis:host`: a scheme whose `//` is short.
            Some((scheme, _)) if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+') => Error::config(format!(
                "cache URL `{shown}`: `://` is missing after the scheme `{scheme}` (write `{scheme}://host:port`)"
            )),
            _ => Error::config(format!(
                "cache URL `{shown}` has no scheme: write `redis://host:port`, `memory://` or another scheme ending in `://`"
            )),
        })?;
        #[cfg(feature = "redis")]
        let redis = || {
            redis::Client::open(url).map_err(|e| {
                Error::with_source(
                    crate::error::ErrorKind::Config,
                    format!("invalid Redis URL `{shown}`"),
                    e,
                )
            })?;
            Ok(Config::with_store(StoreConfig::Redis {
                url: SecretUrl::new(url),
            }))
        };
        #[cfg(not(feature = "redis"))]
        let redis = || {
            Err(Error::config(format!(
                "cache URL `{shown}`: this build has no Redis support: enable cacheable's `redis` feature (on by default)"
            )))
        };
        match scheme {
            "memory" => {
                let mut max_entries = DEFAULT_MAX_ENTRIES;
                let query = rest.split_once('?').map_or("", |(_, q)| q);
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    match pair.split_once('=') {
                        // Read by `from_url`, for every store.
                        Some(("max_value_bytes", _)) => {}
                        Some(("max_entries", n)) => {
                            max_entries = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                                Error::config(format!(
                                    "cache URL `{shown}`: max_entries must be a positive integer"
                                ))
                            })?;
                        }
                        // The option's name alone: its value may be a secret.
                        _ => {
                            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                            return Err(Error::config(format!(
                                "cache URL `{shown}`: unknown option `{name}` (known: max_entries, codec, compress_over, max_value_bytes)"
                            )));
                        }
                    }
                }
                Ok(Config::with_store(StoreConfig::Memory { max_entries }))
            }
            "redis" | "redis+unix" | "unix" => redis(),
            "rediss" if cfg!(feature = "tls") => redis(),
            "rediss" => Err(Error::config(format!(
                "cache URL `{shown}`: TLS (`rediss://`) needs cacheable's `tls` feature"
            ))),
            #[cfg(feature = "cluster")]
            "redis+cluster" => Config::cluster(cluster_nodes(url, "redis")?),
            #[cfg(all(feature = "cluster", feature = "tls"))]
            "rediss+cluster" => Config::cluster(cluster_nodes(url, "rediss")?),
            #[cfg(all(feature = "cluster", not(feature = "tls")))]
            "rediss+cluster" => Err(Error::config(format!(
                "cache URL `{shown}`: TLS (`rediss+cluster://`) needs cacheable's `tls` feature"
            ))),
            #[cfg(not(feature = "cluster"))]
            "redis+cluster" | "rediss+cluster" => Err(Error::config(format!(
                "cache URL `{shown}`: this build has no Redis Cluster support: enable cacheable's `cluster` feature (on by default)"
            ))),
            #[cfg(feature = "sentinel")]
            "redis+sentinel" => sentinel_url(url, "redis"),
            #[cfg(all(feature = "sentinel", feature = "tls"))]
            "rediss+sentinel" => sentinel_url(url, "rediss"),
            #[cfg(all(feature = "sentinel", not(feature = "tls")))]
            "rediss+sentinel" => Err(Error::config(format!(
                "cache URL `{shown}`: TLS (`rediss+sentinel://`) needs cacheable's `tls` feature"
            ))),
            #[cfg(not(feature = "sentinel"))]
            "redis+sentinel" | "rediss+sentinel" => Err(Error::config(format!(
                "cache URL `{shown}`: this build has no Redis Sentinel support: enable cacheable's `sentinel` feature (on by default)"
            ))),
            other => Err(Error::config(format!(
                "cache URL `{shown}`: unknown scheme `{}` (known: redis, rediss, redis+unix, redis+cluster, rediss+cluster, redis+sentinel, rediss+sentinel, memory)",
                crate::redact::url(other)
            ))),
        }
    }

    /// A Redis Cluster (or Valkey cluster, or a managed service in cluster mode), found from
    /// any of its nodes: `Config::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])`.
    /// Each node is a `redis://` URL (`rediss://` with the `tls` feature), all with the same
    /// credentials; the client learns the rest of the cluster from them.
    ///
    /// Reads, writes and leases go to the primary that owns the key's slot (MOVED and ASK
    /// redirections are followed). Pattern operations run `SCAN` on every primary at once, or
    /// on the one primary that owns a pattern's hash tag when the tag is literal
    /// (`wallets:{42}:*`), and delete by slot, so no command ever spans slots. Each primary
    /// has its own breaker: a dead one costs its slots' callers the operation timeout, while
    /// the other slots keep their hits; once its replica takes over, caching resumes.
    ///
    /// # Errors
    /// No node, or a node URL that is not a valid `redis://` or `rediss://` URL.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster<I, S>(nodes: I) -> Result<Config>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut urls = Vec::new();
        for node in nodes {
            let node = node.as_ref().trim();
            let shown = crate::redact::url(node);
            let scheme = node.split_once("://").map_or("", |(scheme, _)| scheme);
            match scheme {
                "redis" => {}
                "rediss" if cfg!(feature = "tls") => {}
                "rediss" => {
                    return Err(Error::config(format!(
                        "cluster node `{shown}`: TLS (`rediss://`) needs cacheable's `tls` feature"
                    )))
                }
                _ => {
                    return Err(Error::config(format!(
                        "cluster node `{shown}`: a node is a `redis://host:port` URL"
                    )))
                }
            }
            redis::Client::open(node).map_err(|e| {
                Error::with_source(
                    crate::error::ErrorKind::Config,
                    format!("invalid cluster node URL `{shown}`"),
                    e,
                )
            })?;
            urls.push(SecretUrl::new(node));
        }
        if urls.is_empty() {
            return Err(Error::config("a cluster needs at least one node URL"));
        }
        Ok(Config::with_store(StoreConfig::Cluster { nodes: urls }))
    }

    /// A primary found through Redis Sentinel: `Config::sentinel(["10.0.0.1:26379",
    /// "10.0.0.2:26379", "10.0.0.3:26379"], "mymaster")`. Each Sentinel is `host:port` (`host`
    /// alone is on 26379), or a
    /// `redis://[user:password@]host:port` URL when the Sentinels have a password
    /// (`rediss://` with the `tls` feature: then the data nodes are reached over TLS too).
    /// [`db`](Config::db) chooses the database, [`primary_auth`](Config::primary_auth) the
    /// data nodes' credentials.
    ///
    /// Every call goes to the primary the Sentinels name, once it reports the `master`
    /// role. When it changes (a failover: the Sentinels announce `+switch-master`, or the
    /// old primary stops answering, or answers `READONLY`), the cache asks the Sentinels
    /// again and moves every connection, sync and async, to the new primary, without a
    /// restart; the near cache's tracking follows it and drops what it held. Meanwhile calls
    /// fail open within the operation timeout each, and the breaker applies.
    ///
    /// # Errors
    /// No Sentinel, an empty service name, or a Sentinel that is neither `host:port` nor a
    /// valid `redis://` or `rediss://` URL.
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn sentinel<I, S>(sentinels: I, service: &str) -> Result<Config>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let service = service.trim();
        if service.is_empty() || service.contains(char::is_whitespace) {
            return Err(Error::config(format!(
                "Sentinel service name `{service}`: a name such as `mymaster`, without spaces"
            )));
        }
        let mut urls = Vec::new();
        let mut tls = None;
        for given in sentinels {
            let given = given.as_ref().trim();
            let shown = crate::redact::url(given);
            let url = if given.contains("://") {
                given.to_owned()
            } else if given.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok()
            }) {
                format!("redis://{given}")
            } else {
                // A Sentinel's port, not a data node's.
                format!("redis://{given}:26379")
            };
            let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
            match scheme {
                "redis" => {}
                "rediss" if cfg!(feature = "tls") => {}
                "rediss" => {
                    return Err(Error::config(format!(
                        "Sentinel `{shown}`: TLS (`rediss://`) needs cacheable's `tls` feature"
                    )))
                }
                _ => {
                    return Err(Error::config(format!(
                        "Sentinel `{shown}`: a Sentinel is `host:port` or a `redis://host:port` URL"
                    )))
                }
            }
            if *tls.get_or_insert(scheme == "rediss") != (scheme == "rediss") {
                return Err(Error::config(
                    "Sentinels: every one is `redis://`, or every one is `rediss://`",
                ));
            }
            let info =
                redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|e| {
                    Error::with_source(
                        crate::error::ErrorKind::Config,
                        format!("invalid Sentinel `{shown}`"),
                        e,
                    )
                })?;
            if info.redis_settings().db() != 0 {
                return Err(Error::config(format!(
                    "Sentinel `{shown}`: a Sentinel has no database; `db(n)` chooses the primary's"
                )));
            }
            urls.push(SecretUrl::new(&url));
        }
        if urls.is_empty() {
            return Err(Error::config("Sentinel: at least one Sentinel is needed"));
        }
        let scheme = if tls == Some(true) { "rediss" } else { "redis" };
        Ok(Config::with_store(StoreConfig::Sentinel(SentinelConfig {
            sentinels: urls,
            service: service.to_owned(),
            node: SecretUrl::new(&format!("{scheme}://{PRIMARY_HOST}/0")),
        })))
    }
}

/// The node URLs of a `redis+cluster://` (`scheme` `redis`) or `rediss+cluster://` (`rediss`)
/// URL: `[credentials@]host:port,host:port,…[/0][?query]`, or credentials before each node.
/// Credentials and the query apply to every node.
#[cfg(feature = "cluster")]
pub(super) fn cluster_nodes(url: &str, scheme: &str) -> Result<Vec<String>> {
    let shown = crate::redact::url(url);
    let bad = |why: &str| Error::config(format!("cache URL `{shown}`: {why}"));
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    // Credentials end at the last `@` (a password may hold `/ ? # , @`).
    let (info, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (last_hosts, tail) = after.split_at(end);
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    if !matches!(path, "" | "/" | "/0") {
        return Err(bad(
            "a cluster has one database: the URL takes no path but `/` or `/0`",
        ));
    }
    // (credentials, host:port) for each node.
    let mut nodes: Vec<(Option<&str>, &str)> = Vec::new();
    match info {
        // Credentials before each node: `u:p@h1:1,u:p@h2:2`.
        Some(info) if info.contains(',') && info.contains('@') => {
            let items: Vec<&str> = info.split(',').collect();
            let (last_credentials, heads) = items.split_last().expect("split yields one item");
            for item in heads {
                let (credentials, host) = item
                    .rsplit_once('@')
                    .ok_or_else(|| bad("credentials before some nodes but not others"))?;
                nodes.push((Some(credentials), host));
            }
            for host in last_hosts.split(',') {
                nodes.push((Some(*last_credentials), host));
            }
        }
        info => {
            for host in last_hosts.split(',') {
                nodes.push((info, host));
            }
        }
    }
    if let Some((credentials, _)) = nodes.first() {
        if nodes.iter().any(|(c, _)| c != credentials) {
            return Err(bad("every node of a cluster takes the same credentials"));
        }
    }
    let mut urls = Vec::with_capacity(nodes.len());
    for (credentials, host) in nodes {
        let host = host.trim();
        if host.is_empty() {
            return Err(bad("an empty node in the host list"));
        }
        let mut node = format!("{scheme}://");
        if let Some(c) = credentials {
            node.push_str(c);
            node.push('@');
        }
        node.push_str(host);
        node.push('/');
        if let Some(q) = query {
            node.push('?');
            node.push_str(q);
        }
        urls.push(node);
    }
    Ok(urls)
}

/// `scheme://[credentials@]host` and the rest (`/db?query`) of a Sentinel's node URL.
#[cfg(feature = "sentinel")]
pub(super) fn split_node_path(node: &str) -> (&str, &str) {
    let host = node
        .find(PRIMARY_HOST)
        .expect("a node URL holds the placeholder host");
    node.split_at(host + PRIMARY_HOST.len())
}

/// `s` with every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`) percent-encoded, for
/// user information in a URL.
#[cfg(feature = "sentinel")]
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `redis+sentinel://` (`scheme` `redis`) or `rediss+sentinel://` (`rediss`) URL:
/// `[credentials@]h1:p1,h2:p2/SERVICE[/DB][?query]`. The credentials are the data nodes';
/// `sentinel_username` and `sentinel_password` in the query are the Sentinels'; the rest
/// of the query goes to the data nodes.
#[cfg(feature = "sentinel")]
pub(super) fn sentinel_url(url: &str, scheme: &str) -> Result<Config> {
    let shown = crate::redact::url(url);
    let bad = |why: &str| Error::config(format!("cache URL `{shown}`: {why}"));
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    // Credentials end at the last `@` (a password may hold `/ ? # , @`).
    let (credentials, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (hosts, tail) = after.split_at(end);
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, query),
        None => (tail, ""),
    };
    let mut segments = path.trim_start_matches('/').split('/');
    let service = segments.next().unwrap_or("");
    if service.is_empty() {
        return Err(bad(
            "a Sentinel URL names its service: `redis+sentinel://h1:26379,h2:26379/mymaster/0`",
        ));
    }
    let db: u32 = match segments.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse()
            .map_err(|_| bad("the database after the service is a number"))?,
    };
    if segments.next().is_some_and(|s| !s.is_empty()) {
        return Err(bad("the path is `/SERVICE` or `/SERVICE/DB`"));
    }
    let (mut sentinel_user, mut sentinel_password, mut node_query) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sentinel_username", v)) => sentinel_user = Some(v),
            Some(("sentinel_password", v)) => sentinel_password = Some(v),
            _ => node_query.push(pair),
        }
    }
    let sentinel_credentials = match (sentinel_user, sentinel_password) {
        (None, None) => String::new(),
        (user, password) => format!(
            "{}:{}@",
            user.map(reencode).unwrap_or_default(),
            password.map(reencode).unwrap_or_default()
        ),
    };
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        let host = host.trim();
        if host.is_empty() {
            return Err(bad("an empty Sentinel in the host list"));
        }
        let has_port = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
        let port = if has_port { "" } else { ":26379" };
        sentinels.push(format!("{scheme}://{sentinel_credentials}{host}{port}"));
    }
    let config = Config::sentinel(&sentinels, service).map_err(|e| {
        // The Sentinel's URL may hold the Sentinels' password: say which URL, masked.
        Error::config(format!("cache URL `{shown}`: {}", e))
    })?;
    let mut node = format!("{scheme}://");
    if let Some(c) = credentials {
        node.push_str(c);
        node.push('@');
    }
    node.push_str(PRIMARY_HOST);
    node.push_str(&format!("/{db}"));
    if !node_query.is_empty() {
        node.push('?');
        node.push_str(&node_query.join("&"));
    }
    redis::Client::open(node.as_str()).map_err(|e| {
        Error::with_source(
            crate::error::ErrorKind::Config,
            format!("cache URL `{shown}`: invalid credentials or parameters for the data nodes"),
            e,
        )
    })?;
    let mut config = config;
    if let StoreConfig::Sentinel(s) = &mut config.store {
        s.node = SecretUrl::new(&node);
    }
    Ok(config)
}

/// A query value (percent-encoded, maybe with `+` for a space) as user information.
#[cfg(feature = "sentinel")]
pub(super) fn reencode(v: &str) -> String {
    let mut bytes = Vec::with_capacity(v.len());
    let raw = v.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' if i + 2 < raw.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(raw[i + 1]), hex(raw[i + 2])) {
                    (Some(h), Some(l)) => {
                        bytes.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => bytes.push(b'%'),
                }
            }
            b'+' => bytes.push(b' '),
            b => bytes.push(b),
        }
        i += 1;
    }
    percent_encode(&String::from_utf8_lossy(&bytes))
}

/// Takes `codec` and `compress_over` out of a URL's query (the part after the last `@`, as a
/// password may hold `?`): the URL without them, and their values.
pub(super) fn take_format_params(url: &str) -> Result<(String, Option<Codec>, Option<usize>)> {
    let after_credentials = url.rfind('@').map_or(0, |at| at + 1);
    let Some(q) = url[after_credentials..].find('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let q = after_credentials + q;
    let (base, query) = (&url[..q], &url[q + 1..]);
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let shown = crate::redact::url(url);
    let (mut codec, mut compress_over) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("codec", name)) => {
                codec = Some(
                    Codec::parse(name)
                        .map_err(|e| Error::config(format!("cache URL `{shown}`: {e}")))?,
                );
            }
            Some(("compress_over", n)) => {
                compress_over = Some(
                    compress_over_param(n)
                        .map_err(|e| Error::config(format!("cache URL `{shown}`: {e}")))?,
                );
            }
            _ => kept.push(pair),
        }
    }
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Ok((out, codec, compress_over))
}

/// A `compress_over` setting: a number of bytes, in a build with the `compress` feature.
pub(super) fn compress_over_param(value: &str) -> Result<usize> {
    let bytes: usize = value
        .trim()
        .parse()
        .map_err(|_| Error::config(format!("compress_over `{value}` is not a number of bytes")))?;
    if cfg!(feature = "compress") {
        Ok(bytes)
    } else {
        Err(Error::config(
            "compress_over needs cacheable's `compress` feature",
        ))
    }
}

#[cfg(test)]
mod tests;
