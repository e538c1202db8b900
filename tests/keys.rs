//! Keys never collide: every collision a key scheme could make (a value that looks like a
//! separator, a glob or another type), on the embedded store and on a private Redis, plus
//! generated `serde_json::Value`s whose invalidation patterns must delete exactly their own
//! keys under the real server's `SCAN MATCH`.

mod support;

use cacheable::{
    cache_fn, ctx, Cache, Cacheable, Config, Context, ErrorKind, Invalidate, Template,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use support::{RedisServer, Rng};

/// The embedded store and a cache on `server`, both under prefix `t`.
fn caches(server: &RedisServer) -> Vec<(&'static str, Cache)> {
    #[allow(unused_mut)]
    let mut all = vec![("memory", Cache::new(Config::memory().prefix("t")).unwrap())];
    #[cfg(feature = "redis")]
    all.push((
        "redis",
        Cache::new(Config::from_url(&server.url()).unwrap().prefix("t")).unwrap(),
    ));
    #[cfg(not(feature = "redis"))]
    let _ = server;
    all
}

/// Caches `index` under `template` for each context, then checks that there is one key per
/// context and that each context is served its own value back.
fn assert_one_key_each(cache: &Cache, store: &str, template: &'static str, ctxs: &[Context]) {
    let prefix = &template[..template.find(':').unwrap() + 1];
    for (i, ctx) in ctxs.iter().enumerate() {
        let got = Cacheable::new(template).on(cache).run(ctx.clone(), || i);
        assert_eq!(got, i, "{store}: context {i} was served another's value");
    }
    let keys = cache.keys(&format!("{prefix}*")).unwrap();
    assert_eq!(keys.len(), ctxs.len(), "{store}: keys {keys:?}");
    for (i, ctx) in ctxs.iter().enumerate() {
        let got = Cacheable::new(template)
            .on(cache)
            .run(ctx.clone(), || usize::MAX);
        assert_eq!(got, i, "{store}: context {i} missed or got another's value");
    }
}

fn each<T: Serialize>(values: &[T]) -> Vec<Context> {
    values.iter().map(|v| Context::new().with("v", v)).collect()
}

#[test]
fn non_finite_floats_and_none_give_distinct_keys() {
    let server = RedisServer::start();
    for (store, cache) in caches(&server) {
        let values = [
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            None,
            Some(0.0),
        ];
        assert_one_key_each(&cache, store, "f:<<v>>", &each(&values));
        let mut keys = cache.keys("f:*").unwrap();
        keys.sort();
        assert_eq!(
            keys,
            ["f:%-inf", "f:%inf", "f:%nan", "f:%null", "f:0.0"],
            "{store}"
        );
        // Inside a hashed value too: [NaN] and [null] are different arrays.
        let arrays = [vec![Some(f64::NAN)], vec![None], vec![Some(f64::INFINITY)]];
        assert_one_key_each(&cache, store, "a:<<v>>", &each(&arrays));
    }
}

#[test]
fn some_none_and_none_give_distinct_keys() {
    let server = RedisServer::start();
    for (store, cache) in caches(&server) {
        let values: [Option<Option<i32>>; 3] = [None, Some(None), Some(Some(0))];
        assert_one_key_each(&cache, store, "o:<<v>>", &each(&values));
        // Invalidating `Some(None)` leaves `None` alone.
        let deleted = Invalidate::new(["o:<<v>>"])
            .on(&cache)
            .now(ctx! { v = Some(None::<i32>) })
            .unwrap();
        assert_eq!(deleted, 1, "{store}");
        let left = Cacheable::new("o:<<v>>")
            .on(&cache)
            .run(ctx! { v = None::<Option<i32>> }, || usize::MAX);
        assert_eq!(left, 0, "{store}: the key of None went too");
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Loose {
    Number(f64),
    Int(i64),
    Flag(bool),
    Text(String),
    Nothing(Option<()>),
}

#[test]
fn a_number_and_its_text_name_one_key_and_other_strings_never_meet_scalars() {
    let server = RedisServer::start();
    for (store, cache) in caches(&server) {
        // An id reached as a `String` (a path parameter) and as a number (a database id)
        // names one key, on purpose: cached by one, invalidated by the other.
        for (text, scalar) in [
            (json!("42"), json!(42)),
            (json!("-7"), json!(-7)),
            (json!("1.5"), json!(1.5)),
            (json!("1.0"), json!(1.0)),
            (json!("true"), json!(true)),
            (json!("false"), json!(false)),
        ] {
            let key = |v: &Value| {
                Template::parse("w:<<v>>")
                    .unwrap()
                    .render(&ctx! { v })
                    .unwrap()
            };
            assert_eq!(key(&text), key(&scalar), "{store}");
            assert_eq!(key(&scalar), format!("w:{scalar}"), "{store}");
            let computed = Cacheable::new("w:<<v>>")
                .on(&cache)
                .run(ctx! { v = text.clone() }, || 1);
            assert_eq!(computed, 1);
            let deleted = Invalidate::new(["w:<<v>>"])
                .on(&cache)
                .now(ctx! { v = scalar.clone() })
                .unwrap();
            assert_eq!(
                deleted, 1,
                "{store}: {scalar} invalidates what {text} cached"
            );
            // And the other way round, by pattern.
            Cacheable::new("w:<<v>>")
                .on(&cache)
                .run(ctx! { v = scalar.clone() }, || 2);
            let deleted = Invalidate::new(["w:<<v>>*"])
                .on(&cache)
                .now(ctx! { v = text.clone() })
                .unwrap();
            assert_eq!(
                deleted, 1,
                "{store}: {text} invalidates what {scalar} cached"
            );
        }
        // Texts that are not exactly what a scalar renders as stay apart from it.
        let values = [
            json!(1),
            json!("01"),
            json!("+1"),
            json!("1.50"),
            json!("True"),
            json!(null),
            json!("null"),
            json!("%null"),
            json!(-7),
            json!("-07"),
        ];
        assert_one_key_each(&cache, store, "j:<<v>>", &each(&values));
        let values = [
            Loose::Int(1),
            Loose::Text("one".into()),
            Loose::Flag(true),
            Loose::Text("yes".into()),
            Loose::Number(2.5),
            Loose::Text("2.50".into()),
            Loose::Nothing(None),
            Loose::Text("null".into()),
            Loose::Text("%null".into()),
        ];
        assert_one_key_each(&cache, store, "u:<<v>>", &each(&values));
        // A string shaped like a digest never meets the hashed object of that digest.
        let object = json!({"id": 1});
        let digest = Template::parse("d:<<v>>")
            .unwrap()
            .render(&ctx! { v = object })
            .unwrap()["d:".len()..]
            .to_owned();
        assert_one_key_each(&cache, store, "d:<<v>>", &each(&[object, json!(digest)]));
    }
}

#[test]
fn a_template_whose_values_could_run_together_is_refused() {
    let err = Template::parse("range:<<from>>-<<to>>").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Template);
    assert!(err.to_string().contains("is followed by `-`"), "{err}");

    let server = RedisServer::start();
    for (store, cache) in caches(&server) {
        // Fail-open: the closure's value comes back, nothing is stored, the fault is counted.
        let errors = cache.stats().errors;
        for (from, to) in [("a-b", "c"), ("a", "b-c")] {
            let got = Cacheable::new("range:<<from>>-<<to>>")
                .on(&cache)
                .run(ctx! { from, to }, || format!("{from}|{to}"));
            assert_eq!(got, format!("{from}|{to}"), "{store}");
        }
        assert_eq!(cache.count("*").unwrap(), 0, "{store}");
        assert_eq!(cache.stats().errors, errors + 2, "{store}");

        // With a separator values cannot hold, the two pairs (and others) stay apart.
        let pairs = [
            ("a:b", "c"),
            ("a", "b:c"),
            ("a-b", "c"),
            ("a", "b-c"),
            ("a%3Ab", "c"),
            ("", "a:b:c"),
        ];
        let ctxs: Vec<Context> = pairs.iter().map(|(from, to)| ctx! { from, to }).collect();
        assert_one_key_each(&cache, store, "range:<<from>>:<<to>>", &ctxs);
    }
}

/// A set built by inserting `0..n` in a shuffled order, so that each call's set iterates
/// in an order of its own (each `HashSet` also has a hasher of its own).
fn tag_set(n: u32, rng: &mut Rng) -> HashSet<String> {
    let mut order: Vec<u32> = (0..n).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order.into_iter().map(|i| format!("tag-{i}")).collect()
}

#[test]
fn equal_hash_sets_give_one_key_and_an_equal_set_invalidates_it() {
    let server = RedisServer::start();
    let mut rng = Rng::new(5);
    for (store, cache) in caches(&server) {
        let computed = AtomicU32::new(0);
        let load = |tags: HashSet<String>| {
            Cacheable::new("posts:<<tags>>:page")
                .on(&cache)
                .run(ctx! { tags }, || computed.fetch_add(1, SeqCst))
        };
        let sets: Vec<HashSet<String>> = (0..3).map(|_| tag_set(30, &mut rng)).collect();
        assert!(
            sets.windows(2).any(|w| w[0].iter().ne(w[1].iter())),
            "the test needs sets that iterate in different orders"
        );
        for set in sets {
            assert_eq!(load(set), 0, "{store}: an equal set missed");
        }
        assert_eq!(computed.load(SeqCst), 1, "{store}");
        assert_eq!(cache.count("posts:*").unwrap(), 1, "{store}");

        // A different set is another key.
        let mut other = tag_set(30, &mut rng);
        other.remove("tag-0");
        assert_eq!(load(other), 1, "{store}");

        // An equal set, built in yet another order, names the key: exact and by pattern.
        let deleted = Invalidate::new(["posts:<<tags>>:page"])
            .on(&cache)
            .now(ctx! { tags = tag_set(30, &mut rng) })
            .unwrap();
        assert_eq!(deleted, 1, "{store}");
        assert_eq!(
            load(tag_set(30, &mut rng)),
            2,
            "{store}: recomputed after invalidation"
        );
        let deleted = Invalidate::new(["posts:<<tags>>:*"])
            .on(&cache)
            .now(ctx! { tags = tag_set(30, &mut rng) })
            .unwrap();
        assert_eq!(deleted, 1, "{store}");
        assert_eq!(
            cache.count("posts:*").unwrap(),
            1,
            "{store}: only the other set's key is left"
        );
    }
}

/// The same through `cache_fn!`, whose arguments reach the context by reference and as
/// fields of a struct.
#[derive(Serialize)]
struct Query {
    tags: HashSet<String>,
    by_owner: HashMap<String, HashSet<u32>>,
}

cache_fn! {
    #[cache(key = "feed:<<tags>>:<<query>>", cache = cache)]
    fn feed(cache: &Cache, calls: &AtomicU32, tags: &HashSet<String>, query: &Query) -> u32 {
        let _ = (tags, query);
        calls.fetch_add(1, SeqCst)
    }

    #[invalidate("feed:<<tags>>:*", cache = cache)]
    fn forget_feed(cache: &Cache, tags: &HashSet<String>) {
        let _ = tags;
    }
}

#[test]
fn cache_fn_hash_set_arguments_give_one_key() {
    let server = RedisServer::start();
    let mut rng = Rng::new(11);
    for (store, cache) in caches(&server) {
        let calls = AtomicU32::new(0);
        for _ in 0..3 {
            let tags = tag_set(20, &mut rng);
            let query = Query {
                tags: tag_set(20, &mut rng),
                by_owner: [("ada".to_string(), (0..20).collect())].into(),
            };
            assert_eq!(feed(&cache, &calls, &tags, &query), 0, "{store}");
        }
        assert_eq!(calls.load(SeqCst), 1, "{store}");
        assert_eq!(cache.count("feed:*").unwrap(), 1, "{store}");
        forget_feed(&cache, &tag_set(20, &mut rng));
        assert_eq!(cache.count("feed:*").unwrap(), 0, "{store}");
    }
}

// ---------------------------------------------------------------------------------------
// Generated values.

/// Characters that have a meaning somewhere: separators, glob syntax, the escape itself,
/// digits and hex letters (number and digest look-alikes), and some that stay as they are.
const NASTY: &[char] = &[
    ':', '/', '|', ',', ';', '=', '#', '&', '{', '}', '*', '?', '[', ']', '\\', '%', '0', '1', '7',
    '9', 'a', 'e', 'f', 'E', '.', '-', '+', ' ', 'é', 'n', 'u', 'l', 't', 'r',
];

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    let kinds = if depth == 0 { 9 } else { 11 };
    match rng.below(kinds) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 1),
        2 => json!(rng.next_u64() as i64 >> rng.below(64)),
        3 => json!(rng.below(1000) as i64 - 500),
        4 => {
            let f = [0.5, 0.1, 1.0, -2.5e-7, 1e300, 123.456, -0.0, 1e16][rng.below(8)];
            json!(f * (rng.below(3) + 1) as f64)
        }
        // Strings that read as what other values render as.
        5 => {
            let looks = [
                "1",
                "-7",
                "1.5",
                "1.0",
                "true",
                "false",
                "null",
                "%null",
                "%nan",
                "%inf",
                "%-inf",
                "%some%null",
                "%31",
                "1e+300",
                "0123456789abcdef",
                "deadbeefdeadbeef",
                "",
                "%",
                "%%",
                "%25",
            ];
            json!(looks[rng.below(looks.len())])
        }
        6 => {
            // Exactly 16 lowercase hex digits: the shape of a digest.
            let hex: String = (0..16)
                .map(|_| char::from(b"0123456789abcdef"[rng.below(16)]))
                .collect();
            json!(hex)
        }
        7 => json!(rng.next_u64().to_string()),
        8 => json!(rng.string(NASTY, 6)),
        9 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(4))
                .map(|_| (rng.string(NASTY, 3), random_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// The value a key names: a top-level string that is exactly the text of a number or a
/// bool is that number or bool.
fn one_id(v: &Value) -> Value {
    if let Value::String(s) = v {
        if let Ok(scalar @ (Value::Number(_) | Value::Bool(_))) = serde_json::from_str::<Value>(s) {
            if scalar.to_string().as_str() == s.as_str() {
                return scalar;
            }
        }
    }
    v.clone()
}

#[test]
fn generated_values_give_distinct_keys_and_their_patterns_delete_exactly_their_own() {
    let server = RedisServer::start();
    let mut rng = Rng::new(0x5EED);
    let mut values: BTreeMap<String, Value> = BTreeMap::new();
    while values.len() < 1200 {
        let v = random_value(&mut rng, 2);
        // serde_json's `Map` is sorted: its text is one per value. A string that is the
        // text of a number or a bool is that value, on purpose (one id, whatever its type).
        values.insert(one_id(&v).to_string(), v);
    }
    let values: Vec<Value> = values.into_values().collect();

    // One key per value, and none shared: say which two collide if any do.
    let template = Template::parse("x:<<v>>:a").unwrap();
    let mut seen: HashMap<String, &Value> = HashMap::new();
    for v in &values {
        let key = template.render(&ctx! { v }).unwrap();
        if let Some(other) = seen.insert(key.clone(), v) {
            panic!("{v} and {other} both render as {key}");
        }
    }

    for (store, cache) in caches(&server) {
        for (i, v) in values.iter().enumerate() {
            for template in ["x:<<v>>:a", "x:<<v>>:b"] {
                Cacheable::new(template).on(&cache).run(ctx! { v }, || i);
            }
        }
        assert_eq!(
            cache.count("x:*").unwrap(),
            2 * values.len() as u64,
            "{store}"
        );
        let mut left = 2 * values.len() as u64;
        for (i, v) in values.iter().enumerate() {
            // Still its own value, not another's.
            let got = Cacheable::new("x:<<v>>:a")
                .on(&cache)
                .run(ctx! { v }, || usize::MAX);
            assert_eq!(got, i, "{store}: {v}");
            let deleted = Invalidate::new(["x:<<v>>:*"])
                .on(&cache)
                .now(ctx! { v })
                .unwrap();
            assert_eq!(
                deleted, 2,
                "{store}: the pattern of {v} deleted {deleted} keys"
            );
            left -= 2;
            assert_eq!(cache.count("x:*").unwrap(), left, "{store}: after {v}");
        }
    }
    println!(
        "{} generated values: distinct keys, exact invalidations",
        values.len()
    );
}
