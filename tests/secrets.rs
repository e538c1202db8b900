//! Passwords in cache URLs never leave the process as text: not in `Debug` of a config or a
//! cache, not in any error's `Display`, `Debug` or source chain, not in any log record. And
//! error chains print each cause once.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, CacheManager, Cacheable, Config, Invalidate};
use std::process::Command;
use std::time::Duration;
use support::RedisServer;

const SECRET: &str = "PASSWORD";

fn capture_logs() {
    support::logs::capture();
}

/// Every record so far, as `LEVEL target text`.
fn records() -> Vec<String> {
    support::logs::lines()
}

/// Every text an error gives: `Display` (plain and `{:#}`), `Debug` (plain and pretty), and
/// the same for each error down its source chain.
fn texts(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    let mut link = Some(err);
    while let Some(e) = link {
        out.extend([
            format!("{e}"),
            format!("{e:#}"),
            format!("{e:?}"),
            format!("{e:#?}"),
        ]);
        link = e.source();
    }
    out
}

fn assert_clean(what: &str, texts: impl IntoIterator<Item = String>) {
    for text in texts {
        assert!(!text.contains(SECRET), "{what} shows the password: {text}");
    }
}

/// The URLs each test uses, with the password in every place a URL can hold one.
fn urls(port: u16) -> Vec<String> {
    vec![
        format!("redis://alice:{SECRET}@127.0.0.1:{port}/0"),
        format!("redis://:{SECRET}@127.0.0.1:{port}/0"),
        format!("redis://127.0.0.1:{port}/0?password={SECRET}"),
        format!("rediss://alice:{SECRET}@127.0.0.1:{port}/0"),
        format!("redis+unix:///tmp/cacheable-none.sock?pass={SECRET}"),
    ]
}

#[test]
fn a_refused_connection_shows_no_password_anywhere() {
    capture_logs();
    let port = support::free_port();
    for url in urls(port) {
        let config = match Config::from_url(&url) {
            Ok(config) => config,
            // `rediss://` without the `tls` feature.
            Err(e) => {
                assert_clean(&url, texts(&e));
                continue;
            }
        };
        let shown = format!("{config:?}");
        assert_clean("Config's Debug", [shown.clone()]);
        assert!(shown.contains(":***@") || shown.contains("=***"), "{shown}");
        let cache = Cache::new(
            config
                .connect_timeout(Duration::from_millis(200))
                .op_timeout(Duration::from_millis(200)),
        )
        .unwrap();
        assert_clean("Cache's Debug", [format!("{cache:?}")]);

        // Fail-open: the function answers, the fault is logged.
        let v = Cacheable::new("k:<<id>>")
            .on(&cache)
            .run(ctx! { id = 1 }, || 5);
        assert_eq!(v, 5);
        // Manual operations return the fault.
        let err = cache.get::<i32>("k:1").unwrap_err();
        assert!(err.is_store_error(), "{err:#}");
        assert_clean(&url, texts(&err));
        let err = cache.set("k:1", &1, 60).unwrap_err();
        assert_clean(&url, texts(&err));
        // A failed invalidation is retried, then logged at error level and returned.
        let err = Invalidate::new(["k:*"])
            .on(&cache)
            .now(ctx! {})
            .unwrap_err();
        assert_clean(&url, texts(&err));
    }
    let logged = records();
    assert!(
        logged.iter().any(|r| r.starts_with("WARN")),
        "the fail-open call logged nothing: {logged:?}"
    );
    assert!(
        logged.iter().any(|r| r.starts_with("ERROR")),
        "the failed invalidation logged nothing: {logged:?}"
    );
    assert_clean("a log record", logged);
}

#[test]
fn a_malformed_url_shows_no_password() {
    capture_logs();
    for url in [
        format!("redis://alice:{SECRET}@127.0.0.1:notaport/0"),
        format!("redis://alice:{SECRET}@127.0.0.1:6379/notadb"),
        format!("redis://alice:{SECRET}"),
        format!("alice:{SECRET}@127.0.0.1:6379"),
        format!("ftp://alice:{SECRET}@127.0.0.1"),
        format!("redis+cluster://alice:{SECRET}@127.0.0.1:1,127.0.0.1:notaport"),
        format!("redis+cluster://alice:{SECRET}@127.0.0.1:1,127.0.0.1:2/3"),
        format!("redis+cluster://alice:{SECRET}@127.0.0.1:1,bob:{SECRET}@127.0.0.1:2"),
        format!(
            "redis+sentinel://alice:{SECRET}@127.0.0.1:1/svc/notadb?sentinel_password={SECRET}"
        ),
        format!("redis+sentinel://:{SECRET}@127.0.0.1:1?sentinel_password={SECRET}"),
        format!("redis+sentinel://:{SECRET}@127.0.0.1:1,,127.0.0.1:2/svc"),
        format!("redis+sentinel://:{SECRET}@127.0.0.1:1/svc/0/extra?sentinel_password={SECRET}"),
        format!("memory://?password={SECRET}"),
        format!("redis://alice:{SECRET}@0.0.0.0:6379/0"),
    ] {
        let err = Config::from_url(&url).unwrap_err();
        assert_eq!(err.kind(), cacheable::ErrorKind::Config, "{url}");
        assert_clean(&url, texts(&err));
    }
    assert_clean("a log record", records());
}

/// A cluster none of whose nodes answers: its errors and logs name the nodes, never the
/// password.
#[cfg(feature = "cluster")]
#[test]
fn an_unreachable_cluster_shows_no_password() {
    capture_logs();
    let url = format!(
        "redis+cluster://alice:{SECRET}@127.0.0.1:{},127.0.0.1:{}",
        support::free_port(),
        support::free_port()
    );
    unreachable_hides_the_secret("cluster", &url);
    assert_clean("a log record", records());
}

/// A cache on `url`, whose servers do not answer: its `Debug`, and the errors of a get, an
/// invalidation and an async get, show no password; a call computes its value.
fn unreachable_hides_the_secret(what: &str, url: &str) {
    let config = Config::from_url(url)
        .unwrap()
        .op_timeout(Duration::from_millis(200));
    assert!(!format!("{config:?}").contains(SECRET));
    let cache = Cache::new(config).unwrap();
    assert!(!format!("{cache:?}").contains(SECRET));
    let err = cache.get::<i32>("k").unwrap_err();
    assert!(format!("{err:#}").contains("127.0.0.1:"), "{err:#}");
    assert_clean(&format!("a {what} get"), texts(&err));
    assert_eq!(Cacheable::new("k").on(&cache).run(ctx! {}, || 5), 5);
    let err = Invalidate::new(["k*"]).on(&cache).now(ctx! {}).unwrap_err();
    assert_clean(&format!("a {what} invalidation"), texts(&err));
    let rt = support::bare_current_thread();
    let err = rt.block_on(cache.get_async::<i32>("k")).unwrap_err();
    assert_clean(&format!("an async {what} get"), texts(&err));
}

/// Sentinels none of which answers, with a password for them and one for the data nodes:
/// errors and logs name the Sentinels, never either password.
#[cfg(feature = "sentinel")]
#[test]
fn an_unreachable_sentinel_setup_shows_no_password() {
    capture_logs();
    let url = format!(
        "redis+sentinel://alice:{SECRET}@127.0.0.1:{},127.0.0.1:{}/svc/2?sentinel_password={SECRET}",
        support::free_port(),
        support::free_port()
    );
    unreachable_hides_the_secret("Sentinel", &url);
    let config = Config::sentinel(
        [format!(
            "redis://:{SECRET}@127.0.0.1:{}",
            support::free_port()
        )],
        "svc",
    )
    .unwrap()
    .primary_auth(Some("alice"), SECRET);
    assert!(!format!("{config:?}").contains(SECRET));
    let cache = Cache::new(config.op_timeout(Duration::from_millis(200))).unwrap();
    assert_clean("a Sentinel get", texts(&cache.get::<i32>("k").unwrap_err()));
    assert_clean("a log record", records());
}

/// Sentinels with a password and data nodes with another: the right pair works, a wrong
/// one of either fails, and no error, `Debug` or log record shows any of them.
#[cfg(feature = "sentinel")]
#[test]
fn sentinel_and_data_node_passwords_work_and_show_nowhere() {
    capture_logs();
    let (node_pw, sentinel_pw) = ("NODE-PW-SECRET", "SENTINEL-PW-SECRET");
    let setup = support::RedisSentinel::start_with_passwords(Some(node_pw), Some(sentinel_pw));
    let hosts: Vec<String> = setup
        .sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let url = |node: &str, sentinel: &str| {
        format!(
            "redis+sentinel://:{node}@{}/{}/3?sentinel_password={sentinel}",
            hosts.join(","),
            setup.service
        )
    };
    let clean = |what: &str, texts: Vec<String>| {
        for text in texts {
            for pw in [SECRET, node_pw, sentinel_pw] {
                assert!(!text.contains(pw), "{what} shows a password: {text}");
            }
        }
    };
    let cache = Cache::new(
        Config::from_url(&url(node_pw, sentinel_pw))
            .unwrap()
            .prefix("pw")
            .debug(true),
    )
    .unwrap();
    clean("Cache's Debug", vec![format!("{cache:?}")]);
    assert_eq!(Cacheable::new("k").on(&cache).run(ctx! {}, || 4), 4);
    assert_eq!(cache.get::<i32>("k").unwrap(), Some(4));
    let primary = setup.primary_port().unwrap();
    assert_eq!(
        setup.node_cli(primary, &["-n", "3", "GET", "pw:k"]).trim(),
        "4"
    );
    // The same through Config::sentinel, with the Sentinels' password in their URLs.
    let sentinels: Vec<String> = hosts
        .iter()
        .map(|h| format!("redis://:{sentinel_pw}@{h}"))
        .collect();
    let built = Cache::new(
        Config::sentinel(&sentinels, &setup.service)
            .unwrap()
            .db(3)
            .primary_auth(None, node_pw)
            .prefix("pw"),
    )
    .unwrap();
    assert_eq!(built.get::<i32>("k").unwrap(), Some(4));
    clean("Cache's Debug", vec![format!("{built:?}")]);
    for (node, sentinel) in [(SECRET, sentinel_pw), (node_pw, SECRET)] {
        let wrong = Cache::new(
            Config::from_url(&url(node, sentinel))
                .unwrap()
                .prefix("pw")
                .op_timeout(Duration::from_millis(300)),
        )
        .unwrap();
        let err = wrong.get::<i32>("k").unwrap_err();
        clean("a refused AUTH", texts(&err));
        assert_eq!(Cacheable::new("k").on(&wrong).run(ctx! {}, || 3), 3);
        let err = Invalidate::new(["k*"]).on(&wrong).now(ctx! {}).unwrap_err();
        clean("a refused AUTH", texts(&err));
    }
    clean("a log record", records());
}

#[test]
fn a_wrong_password_and_a_right_one_show_neither() {
    capture_logs();
    let server = RedisServer::start();
    let right = "RIGHT-PASSWORD-SECRET";
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(right)
        .query(&mut server.client())
        .unwrap();
    // The server refuses the wrong password: its reply must not echo it. (A prefix of its
    // own: its invalidation, queued since it cannot land, would hold back the right cache's
    // keys until that cache landed it.)
    let wrong = Cache::new(
        Config::from_url(&format!(
            "redis://default:{SECRET}@127.0.0.1:{}/0",
            server.port
        ))
        .unwrap()
        .prefix("wrong"),
    )
    .unwrap();
    let err = wrong.get::<i32>("k").unwrap_err();
    assert_clean("a refused AUTH", texts(&err));
    assert_eq!(Cacheable::new("k").on(&wrong).run(ctx! {}, || 3), 3);
    let err = Invalidate::new(["k*"]).on(&wrong).now(ctx! {}).unwrap_err();
    assert_clean("a refused AUTH", texts(&err));

    // The right one works, and shows no more than the wrong one.
    let config = Config::from_url(&format!(
        "redis://default:{right}@127.0.0.1:{}/0",
        server.port
    ))
    .unwrap()
    .debug(true);
    assert!(!format!("{config:?}").contains(right));
    let cache = Cache::new(config).unwrap();
    assert!(!format!("{cache:?}").contains(right));
    assert_eq!(Cacheable::new("k").on(&cache).run(ctx! {}, || 4), 4);
    assert_eq!(cache.get::<i32>("k").unwrap(), Some(4));
    let logged = records();
    assert_clean("a log record", logged.clone());
    assert!(logged.iter().all(|r| !r.contains(right)), "{logged:?}");
}

#[test]
fn the_global_cache_from_a_bad_environment_shows_no_password() {
    if std::env::var("CACHEABLE_SECRETS_CHILD").is_ok() {
        capture_logs();
        let err = CacheManager::get::<i32>("k").unwrap_err();
        assert_clean("the global cache's error", texts(&err));
        assert_eq!(Cacheable::new("k").run(ctx! {}, || 1), 1);
        let logged = records();
        assert!(
            logged.iter().any(|r| r.starts_with("ERROR")),
            "nothing logged: {logged:?}"
        );
        assert_clean("a log record", logged);
        return;
    }
    for url in [
        format!("redis+cluster://alice:{SECRET}@127.0.0.1:1,127.0.0.1:notaport"),
        format!("redis://alice:{SECRET}@127.0.0.1:notaport/0"),
    ] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "the_global_cache_from_a_bad_environment_shows_no_password",
                "--nocapture",
            ])
            .env("CACHEABLE_SECRETS_CHILD", "1")
            .env("CACHE_URL", &url)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{url}: {stdout}{stderr}");
        assert_clean("the child's output", [stdout.into(), stderr.into()]);
    }
}

#[test]
fn error_chains_print_each_cause_once() {
    let url = format!("redis://127.0.0.1:{}/0", support::free_port());
    let cache = Cache::new(Config::from_url(&url).unwrap()).unwrap();
    let err = cache.get::<i32>("k").unwrap_err();
    let mut chain: Vec<String> = Vec::new();
    let mut link: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = link {
        chain.push(e.to_string());
        link = e.source();
    }
    assert!(chain.len() >= 2, "no cause under {err:?}");
    // No link repeats the text of the causes below it.
    for (i, text) in chain.iter().enumerate() {
        for below in &chain[i + 1..] {
            assert!(!text.contains(below.as_str()), "{text:?} repeats {below:?}");
        }
    }
    // What a chain printer (anyhow's `{:#}`) shows, and `{:#}` itself: each cause once.
    let printed = chain.join(": ");
    assert_eq!(format!("{err:#}"), printed);
    let cause = &chain[1];
    assert_eq!(printed.matches(cause.as_str()).count(), 1, "{printed}");
    assert_eq!(err.to_string(), chain[0]);
}
