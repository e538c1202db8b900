//! Key and pattern rendering with escaping: the invalidation pattern rendered for one value
//! matches the keys rendered for that value and never a key rendered for another value,
//! under Redis's glob rules (the crate's matcher, which tests/properties.rs holds to the
//! real server's `SCAN MATCH`).
#![no_main]

use cacheable::__fuzz::glob_matches;
use cacheable::{Context, Template};
use libfuzzer_sys::fuzz_target;

fn render(template: &str, value: &serde_json::Value) -> String {
    let ctx = Context::new().with("v", value);
    Template::parse(template).unwrap().render(&ctx).unwrap()
}

fn value(text: &str) -> serde_json::Value {
    // JSON when it parses (numbers, booleans, null, arrays, objects), a string otherwise.
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\u{0}').unwrap_or((&text, ""));
    for (a, b) in [
        (value(a), value(b)),
        (
            serde_json::Value::String(a.to_owned()),
            serde_json::Value::String(b.to_owned()),
        ),
    ] {
        let key_a = render("wallets:<<v>>:balance", &a);
        let key_b = render("wallets:<<v>>:balance", &b);
        for pattern in ["wallets:<<v>>:*", "wallets:<<v>>:balance", "wallets:<<v>>:*e"] {
            let pat_a = render(pattern, &a);
            assert!(
                glob_matches(pat_a.as_bytes(), key_a.as_bytes()),
                "{pat_a:?} misses its own key {key_a:?}"
            );
            if a != b {
                assert_ne!(key_a, key_b, "{a:?} and {b:?} render the same key");
                assert!(
                    !glob_matches(pat_a.as_bytes(), key_b.as_bytes()),
                    "{pat_a:?} (for {a:?}) matches {key_b:?} (for {b:?})"
                );
            }
        }
    }
});
