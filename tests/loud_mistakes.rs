//! Mistakes that compile must be loud, and logs follow Rust conventions: strict mode
//! panics on a key that cannot be rendered, each distinct fault logs at least once, every
//! call has debug-level lines, and the global cache says which store it uses.

mod support;

use cacheable::{ctx, Cache, CacheManager, Cacheable, Config, Invalidate};
use serde::Serialize;
use std::process::Command;

fn capture() {
    support::logs::capture();
}

/// The records whose text holds `needle`: (level, target, text).
fn logged(needle: &str) -> Vec<(log::Level, String, String)> {
    support::logs::with(needle)
}

#[derive(Serialize)]
struct Query {
    tenant: String,
}

#[test]
fn strict_mode_panics_on_a_key_that_cannot_be_rendered() {
    let strict = Cache::new(Config::memory().prefix("strict").strict(true)).unwrap();
    let q = Query {
        tenant: "acme".into(),
    };
    // A typo in a field path: the field is looked up at run time.
    let typo = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Cacheable::new("report:<<q.tenat>>")
            .on(&strict)
            .run(ctx! { q }, || 1)
    }))
    .unwrap_err();
    let text = typo.downcast_ref::<String>().unwrap();
    assert!(
        text.contains("strict mode") && text.contains("has no field `tenat`"),
        "{text}"
    );
    let q = Query {
        tenant: "acme".into(),
    };
    let missing = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Invalidate::new(["report:<<tenant>>"])
            .on(&strict)
            .run(ctx! { q }, || ())
    }));
    assert!(missing.is_err(), "a pattern without its value panics too");
    // Each panic points at the caller's line, not into the crate.
    let at = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = at.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(location) = info.location() {
            seen.lock().unwrap().push(location.file().to_owned());
        }
    }));
    let calls: [Box<dyn Fn()>; 3] = [
        Box::new(|| {
            let q = Query { tenant: "a".into() };
            Cacheable::new("report:<<q.tenat>>")
                .on(&strict)
                .run(ctx! { q }, || 1);
        }),
        Box::new(|| {
            let _ = Invalidate::new(["report:<<tenant>>"])
                .on(&strict)
                .now(ctx! {});
        }),
        Box::new(|| {
            Invalidate::new(["report:<<tenant>>"])
                .on(&strict)
                .run(ctx! {}, || ());
        }),
    ];
    for call in &calls {
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).is_err());
    }
    std::panic::set_hook(previous);
    let files = at.lock().unwrap().clone();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(
        files.iter().all(|f| f.ends_with("loud_mistakes.rs")),
        "the panics point at {files:?}"
    );
    // The right path works, and without strict mode the typo fails open.
    let q = Query {
        tenant: "acme".into(),
    };
    assert_eq!(
        Cacheable::new("report:<<q.tenant>>")
            .on(&strict)
            .run(ctx! { q }, || 2),
        2
    );
    let lenient = Cache::new(Config::memory().prefix("lenient")).unwrap();
    let q = Query {
        tenant: "acme".into(),
    };
    assert_eq!(
        Cacheable::new("report:<<q.tenat>>")
            .on(&lenient)
            .run(ctx! { q }, || 3),
        3
    );
    assert_eq!(lenient.stats().errors, 1);
}

#[test]
fn each_template_and_kind_of_fault_logs_at_least_once() {
    capture();
    let cache = Cache::new(Config::memory().prefix("faults")).unwrap();
    // Two templates that cannot render, five calls each, within a second.
    for _ in 0..5 {
        Cacheable::new("first:<<missing_one>>")
            .on(&cache)
            .run(ctx! {}, || 1);
        Cacheable::new("second:<<missing_two>>")
            .on(&cache)
            .run(ctx! {}, || 1);
    }
    let first = logged("first:<<missing_one>>");
    let second = logged("second:<<missing_two>>");
    let warnings = |r: &[(log::Level, String, String)]| {
        r.iter()
            .filter(|(level, _, text)| *level == log::Level::Warn && text.contains("failed"))
            .count()
    };
    assert_eq!(warnings(&first), 1, "{first:?}");
    assert_eq!(warnings(&second), 1, "{second:?}");
    assert_eq!(cache.stats().errors, 10);
    // A key that did not render has its own step line too (trace level), and the call's
    // one debug line says it answered without the cache.
    assert!(
        first
            .iter()
            .any(|(level, _, text)| *level == log::Level::Trace && text.contains("did not render")),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .any(|(level, _, text)| *level == log::Level::Debug && text.starts_with("unavailable")),
        "{first:?}"
    );
}

#[test]
fn every_call_has_one_debug_line_and_debug_true_raises_its_steps() {
    capture();
    let cache = Cache::new(Config::memory().prefix("lines")).unwrap();
    let user_id = 41;
    for _ in 0..2 {
        Cacheable::new("quiet:<<user_id>>")
            .on(&cache)
            .run(ctx! { user_id }, || 1);
    }
    let quiet = logged("lines:quiet:41");
    let debug: Vec<_> = quiet
        .iter()
        .filter(|(level, target, _)| *level == log::Level::Debug && target == "cacheable")
        .map(|(_, _, text)| text.as_str())
        .collect();
    // One line a call: outcome, key, template, time (and the computation's when it ran).
    assert_eq!(debug.len(), 2, "{quiet:#?}");
    assert!(
        debug[0].starts_with("miss lines:quiet:41 (quiet:<<user_id>>) in ")
            && debug[0].contains("computed in"),
        "{debug:?}"
    );
    assert!(
        debug[1].starts_with("hit lines:quiet:41 (quiet:<<user_id>>) in "),
        "{debug:?}"
    );
    // The seed's step-by-step lines are at trace level unless debugging is on.
    assert!(quiet
        .iter()
        .any(|(level, _, text)| *level == log::Level::Trace
            && text == "[Cache Debug] MISS for lines:quiet:41"));
    assert!(quiet
        .iter()
        .all(|(level, _, _)| *level >= log::Level::Debug));
    Cacheable::new("loud:<<user_id>>")
        .on(&cache)
        .debug(true)
        .run(ctx! { user_id }, || 1);
    let loud = logged("lines:loud:41");
    assert!(
        loud.iter()
            .any(|(level, _, text)| *level == log::Level::Info
                && text == "[Cache Debug] Resolved Key: lines:loud:41"),
        "{loud:?}"
    );
    // Invalidate names its template when no function name is given.
    Invalidate::new(["quiet:<<user_id>>"])
        .on(&cache)
        .debug(true)
        .now(ctx! { user_id })
        .unwrap();
    assert!(
        !logged("Total deleted: 1 keys for function: quiet:<<user_id>>").is_empty(),
        "{:?}",
        logged("Total deleted")
    );
}

#[test]
fn the_global_cache_logs_which_store_it_uses() {
    if std::env::var("CACHEABLE_NEWCOMER_CHILD").is_ok() {
        capture();
        CacheManager::cache().unwrap();
        let built = logged("global cache built from the environment");
        assert!(
            built
                .iter()
                .any(|(level, _, text)| *level == log::Level::Info
                    && text.contains("memory")
                    && text.contains("\"from_env\"")),
            "{built:?}"
        );
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_global_cache_logs_which_store_it_uses",
            "--nocapture",
        ])
        .env("CACHEABLE_NEWCOMER_CHILD", "1")
        .env_remove("CACHE_URL")
        .env("CACHE_PREFIX", "from_env")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn init_with_an_equal_configuration_succeeds() {
    let config = || Config::memory().prefix("same");
    CacheManager::init(config()).unwrap();
    CacheManager::init(config()).unwrap();
    let err = CacheManager::init(Config::memory().prefix("other")).unwrap_err();
    assert_eq!(err.kind(), cacheable::ErrorKind::AlreadyInitialized);
    assert_eq!(
        CacheManager::get_or_init(|| Config::memory().prefix("ignored"))
            .unwrap()
            .config()
            .get_prefix(),
        "same"
    );
}

/// An invalidation of several patterns that cannot reach the store says so in one line,
/// with its attempts (one or more), however many patterns it queued.
#[cfg(feature = "redis")]
#[test]
fn an_invalidation_that_cannot_reach_the_store_logs_one_line() {
    capture();
    let url = format!("redis://127.0.0.1:{}/", support::free_port());
    let cache = Cache::new(
        Config::from_url(&url)
            .unwrap()
            .prefix("oneline")
            .op_timeout(std::time::Duration::from_millis(100)),
    )
    .unwrap();
    let _ = support::logs::take_cacheable(log::Level::Error);
    let err = Invalidate::new(["a:<<id>>", "b:<<id>>:*", "c:<<id>>"])
        .on(&cache)
        .now(ctx! { id = 1 })
        .unwrap_err();
    assert!(err.is_queued(), "{err:#}");
    let errors = support::logs::take_cacheable(log::Level::Error);
    let warnings = support::logs::take_cacheable(log::Level::Warn);
    assert_eq!(
        errors.len() + warnings.len(),
        1,
        "{errors:#?} {warnings:#?}"
    );
    let line = errors.first().or(warnings.first()).unwrap();
    assert!(!line.contains(" 0 attempts"), "{line}");
    assert!(line.contains("attempt"), "{line}");
}
