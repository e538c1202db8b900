//! The global cache's configuration from the environment: `CACHE_URL` and the
//! `CACHE_*` variables beside it.

use super::url::compress_over_param;
use super::*;

impl Config {
    /// The configuration the global manager uses when [`CacheManager::init`](crate::CacheManager::init)
    /// was not called:
    ///
    /// | variable | meaning | when unset or empty |
    /// |---|---|---|
    /// | `CACHE_URL` | the store, as in [`from_url`](Config::from_url) | the embedded store ([`memory`](Config::memory)) |
    /// | `CACHE_PREFIX` | [`prefix`](Config::prefix) | `cache` |
    /// | `CACHE_DEFAULT_TTL` | [`default_ttl`](Config::default_ttl), whole seconds | 300 |
    /// | `CACHE_DEBUG` | [`debug`](Config::debug): `1`, `true`, `yes` or `0`, `false`, `no`, in any case | off |
    /// | `CACHE_STRICT` | [`strict`](Config::strict): the same words | off |
    /// | `CACHE_MAX_VALUE_BYTES` | [`max_value_bytes`](Config::max_value_bytes), bytes; `0` for no bound | no bound |
    /// | `CACHE_CODEC` | [`codec`](Config::codec): `json` or `msgpack` | the URL's `codec`, else `json` |
    /// | `CACHE_COMPRESS_OVER` | `Config::compress_over` (feature `compress`), bytes | the URL's `compress_over`, else off |
    ///
    /// Every other setting has its default.
    ///
    /// # Errors
    /// A malformed variable is an error rather than a silent fallback: a process that
    /// quietly cached in its own memory would miss other processes' invalidations. That
    /// includes a `CACHE_DEBUG` or `CACHE_STRICT` that is none of the six words above
    /// (`on`, `enabled`, `2`).
    pub fn from_env() -> Result<Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut config = match var("CACHE_URL") {
            Some(url) => Config::from_url(&url)?,
            None => Config::memory(),
        };
        if let Some(prefix) = var("CACHE_PREFIX") {
            config = config.prefix(prefix);
        }
        if let Some(ttl) = var("CACHE_DEFAULT_TTL") {
            let secs: u64 = ttl.trim().parse().map_err(|_| {
                Error::config(format!(
                    "CACHE_DEFAULT_TTL `{ttl}` is not a number of seconds"
                ))
            })?;
            if secs == 0 {
                return Err(Error::config(
                    "CACHE_DEFAULT_TTL `0`: the default TTL must be at least 1 second",
                ));
            }
            config = config.default_ttl(secs);
        }
        if let Some(debug) = var("CACHE_DEBUG") {
            config = config.debug(env_bool("CACHE_DEBUG", &debug)?);
        }
        if let Some(strict) = var("CACHE_STRICT") {
            config = config.strict(env_bool("CACHE_STRICT", &strict)?);
        }
        if let Some(codec) = var("CACHE_CODEC") {
            config.format.codec =
                Codec::parse(&codec).map_err(|e| Error::config(format!("CACHE_CODEC: {e}")))?;
        }
        if let Some(over) = var("CACHE_COMPRESS_OVER") {
            config.format.compress_over = Some(
                compress_over_param(&over)
                    .map_err(|e| Error::config(format!("CACHE_COMPRESS_OVER: {e}")))?,
            );
        }
        if let Some(n) = var("CACHE_MAX_VALUE_BYTES") {
            let n: usize = n.trim().parse().map_err(|_| {
                Error::config(format!(
                    "CACHE_MAX_VALUE_BYTES `{n}` is not a number of bytes"
                ))
            })?;
            config = config.max_value_bytes(n);
        }
        Ok(config)
    }
}

/// A boolean environment variable: `1/0`, `true/false`, `yes/no`, in any case; anything
/// else is an error naming the variable and what it accepts.
pub(super) fn env_bool(name: &str, value: &str) -> Result<bool> {
    const ON: [&str; 3] = ["1", "true", "yes"];
    const OFF: [&str; 3] = ["0", "false", "no"];
    let v = value.trim();
    if ON.iter().any(|w| v.eq_ignore_ascii_case(w)) {
        Ok(true)
    } else if OFF.iter().any(|w| v.eq_ignore_ascii_case(w)) {
        Ok(false)
    } else {
        Err(Error::config(format!(
            "{name} `{value}` is not a boolean: use 1, true or yes, or 0, false or no (in any case)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boolean_variables_accept_the_documented_words_only() {
        for on in ["1", "true", "TRUE", "True", "yes", "YES", " yes "] {
            assert!(env_bool("CACHE_DEBUG", on).unwrap(), "{on:?}");
        }
        for off in ["0", "false", "FALSE", "no", "No"] {
            assert!(!env_bool("CACHE_DEBUG", off).unwrap(), "{off:?}");
        }
        for bad in [
            "on",
            "off",
            "2",
            "enabled",
            "y",
            "n",
            "t",
            "-1",
            "yes please",
        ] {
            let err = env_bool("CACHE_DEBUG", bad).unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::Config);
            let text = err.to_string();
            assert!(text.contains("CACHE_DEBUG") && text.contains(bad), "{text}");
            for word in ["1", "true", "yes", "0", "false", "no"] {
                assert!(text.contains(word), "{text} does not name {word}");
            }
        }
    }
}
