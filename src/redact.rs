//! Secrets out of text: how a store URL is shown in `Debug`, error messages and logs.
//!
//! One function, [`url`], masks every password a URL may carry, and [`SecretUrl`] keeps a
//! URL as given (to connect with) beside its masked form (to show).

use std::fmt;

/// What a secret is replaced with.
pub(crate) const MASK: &str = "***";

/// `url` with its passwords replaced by `***`:
///
/// - user information: `redis://alice:pw@host` gives `redis://alice:***@host`,
///   `redis://:pw@host` gives `redis://:***@host`, and a lone `redis://pw@host` (a password
///   to some clients) gives `redis://***@host`. Everything before the last `@` counts as
///   user information, since a password may hold `/ ? # , @` unescaped. A host list keeps
///   its hosts (`redis+cluster://u:p@h1:1,h2:2`, or `u:p@h1:1,u:p@h2:2` with credentials
///   per host).
/// - query parameters named `password`, `pass`, `passwd` or `pwd` (any case): the value, up
///   to the next `&`, is masked (`redis+unix:///run/redis.sock?pass=***`).
/// - a "port" that is not a number (`redis://alice:pw` without `@`, which does not parse)
///   is masked, since it may be a password written without its host.
///
/// Text that is no URL at all goes through the same rules, so that a malformed URL is
/// masked at least as much as a well-formed one would be.
pub(crate) fn url(url: &str) -> String {
    let (head, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let mut out = String::with_capacity(url.len() + MASK.len());
    out.push_str(head);
    let (after_credentials, had_credentials) = match rest.rfind('@') {
        Some(at) => {
            user_information(&rest[..at], &mut out);
            out.push('@');
            (&rest[at + 1..], true)
        }
        None => (rest, false),
    };
    let host_end = after_credentials
        .find(['/', '?', '#'])
        .unwrap_or(after_credentials.len());
    hosts(&after_credentials[..host_end], had_credentials, &mut out);
    parameters(&after_credentials[host_end..], &mut out);
    out
}

/// Masks user information. A list of credentials per host (`u:p@h1:1,u:p`, before the last
/// host) keeps its hosts; from an item that is neither `credentials@host:port` nor the
/// final credentials (a password holding `,` or `@`, say), the rest is masked whole.
fn user_information(info: &str, out: &mut String) {
    if !(info.contains(',') && info.contains('@')) {
        return credentials(info, out);
    }
    let items: Vec<&str> = info.split(',').collect();
    let last = items.len() - 1;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item.rfind('@') {
            Some(at) if i < last && is_host_and_port(&item[at + 1..]) => {
                credentials(&item[..at], out);
                out.push('@');
                out.push_str(&item[at + 1..]);
            }
            None if i == last => credentials(item, out),
            _ => {
                out.push_str(MASK);
                return;
            }
        }
    }
}

/// `host:port`, `[v6]:port`: what a host list holds.
fn is_host_and_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let bracketed = host.starts_with('[') && host.ends_with(']');
    !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && !host.is_empty()
        && (bracketed
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)))
}

/// `user:password` keeps its user; anything else but the empty string is masked whole.
fn credentials(info: &str, out: &mut String) {
    match info.split_once(':') {
        Some((user, _)) => {
            out.push_str(user);
            out.push(':');
            out.push_str(MASK);
        }
        None if info.is_empty() => {}
        None => out.push_str(MASK),
    }
}

/// A host list as written, with a "port" that is not a number masked when it may be a
/// password: not after credentials (`user:pw@host:port` put them before the `@`), and not
/// after an IP address or `localhost`, which are hosts, not user names. A mistyped port
/// then shows as typed (`redis://127.0.0.1:63x9`), while `redis://alice:pw` does not.
fn hosts(list: &str, after_credentials: bool, out: &mut String) {
    for (i, host) in list.split(',').enumerate() {
        if i > 0 {
            out.push(',');
        }
        // The port's colon is the last one after an IPv6 literal's closing bracket.
        let from = host.rfind(']').map_or(0, |b| b + 1);
        match host[from..].rfind(':').map(|c| from + c) {
            Some(c)
                if !host[c + 1..].bytes().all(|b| b.is_ascii_digit())
                    && !after_credentials
                    && !is_plainly_a_host(&host[..c]) =>
            {
                out.push_str(&host[..=c]);
                out.push_str(MASK);
            }
            _ => out.push_str(host),
        }
    }
}

/// An IP address or `localhost`: a host, never a user name.
fn is_plainly_a_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok()
}

/// Path, query and fragment, with secret parameters masked up to the next `&`. A `#` does
/// not end a secret value: a password may hold one.
fn parameters(rest: &str, out: &mut String) {
    let Some(q) = rest.find('?') else {
        out.push_str(rest);
        return;
    };
    out.push_str(&rest[..=q]);
    for (i, pair) in rest[q + 1..].split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
    }
}

fn is_secret_name(name: &str) -> bool {
    ["password", "pass", "passwd", "pwd", "sentinel_password"]
        .iter()
        .any(|secret| name.trim().eq_ignore_ascii_case(secret))
}

/// A URL that may hold a password: used as given, shown masked by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct SecretUrl {
    url: String,
    shown: String,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl SecretUrl {
    pub(crate) fn new(url: &str) -> SecretUrl {
        SecretUrl {
            url: url.to_owned(),
            shown: self::url(url),
        }
    }

    /// The URL as given, password included: only to connect with, never to show.
    pub(crate) fn expose(&self) -> &str {
        &self.url
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.shown, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_the_rest_kept() {
        for (given, shown) in [
            (
                "redis://alice:PASSWORD@host:6379/0",
                "redis://alice:***@host:6379/0",
            ),
            (
                "rediss://alice:PASSWORD@host:6380/1",
                "rediss://alice:***@host:6380/1",
            ),
            ("redis://:PASSWORD@host", "redis://:***@host"),
            ("redis://PASSWORD@host/2", "redis://***@host/2"),
            ("redis://@host", "redis://@host"),
            ("redis://host:6379/0", "redis://host:6379/0"),
            ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
            ("memory://?max_entries=10", "memory://?max_entries=10"),
            (
                "redis+cluster://u:PASSWORD@h1:1,h2:2",
                "redis+cluster://u:***@h1:1,h2:2",
            ),
            (
                "redis+cluster://u:PASSWORD@h1:1,u:PASSWORD@h2:2",
                "redis+cluster://u:***@h1:1,u:***@h2:2",
            ),
            (
                "redis://host/0?protocol=resp3&password=PASSWORD",
                "redis://host/0?protocol=resp3&password=***",
            ),
            (
                "redis://host/0?Password=PASSWORD&protocol=resp3",
                "redis://host/0?Password=***&protocol=resp3",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&pass=PASSWORD",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            (
                "rediss://u:PASSWORD@host/#insecure",
                "rediss://u:***@host/#insecure",
            ),
            // Unescaped `@ / ? # ,` in a password.
            ("redis://u:PA@SS@host/0", "redis://u:***@host/0"),
            ("redis://u:PA/S?S#@host/0", "redis://u:***@host/0"),
            ("redis://u:PA,SS@host/0", "redis://u:***@host/0"),
            (
                "redis://host/0?password=PA#SS",
                "redis://host/0?password=***",
            ),
            // Not URLs, or broken ones.
            ("alice:PASSWORD@host", "alice:***@host"),
            ("redis://alice:PASSWORD", "redis://alice:***"),
            ("redis://alice:PASSWORD/0", "redis://alice:***/0"),
            // A mistyped port is shown where it cannot be a password.
            ("redis://127.0.0.1:63x9/0", "redis://127.0.0.1:63x9/0"),
            ("redis://localhost:abc", "redis://localhost:abc"),
            ("redis://[::1]:63x9", "redis://[::1]:63x9"),
            (
                "redis://u:PASSWORD@host:63x9/0",
                "redis://u:***@host:63x9/0",
            ),
            ("nothing", "nothing"),
            ("", ""),
        ] {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    #[test]
    fn an_ambiguous_host_list_is_masked_rather_than_shown() {
        // Passwords holding `,` and `@`: no part of them may show.
        for given in [
            "redis+cluster://u:PA,SS@WORD@h1:1",
            "redis+cluster://u:PA@SS,WORD@h1:1",
            "redis+cluster://u:PA@SS@WORD@h1:1",
            "redis://u:PA,SS@WORD@h1:1",
            "redis+cluster://u:p@h0:0,u:PA,SS@WORD@h1:1",
        ] {
            let shown = url(given);
            assert!(
                !shown.contains("PA") && !shown.contains("SS") && !shown.contains("WORD"),
                "{given} shows as {shown}"
            );
            assert!(shown.ends_with("@h1:1"), "{shown}");
        }
    }

    #[test]
    fn a_secret_url_shows_masked_and_connects_as_given() {
        let u = SecretUrl::new("redis://alice:PASSWORD@host:6379/0");
        assert_eq!(u.expose(), "redis://alice:PASSWORD@host:6379/0");
        assert_eq!(u.to_string(), "redis://alice:***@host:6379/0");
        assert_eq!(format!("{u:?}"), "\"redis://alice:***@host:6379/0\"");
    }
}
