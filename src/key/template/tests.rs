//! The template's parsing and rendering.

use super::*;
use crate::key::hash::hash_value;
use crate::key::value::to_key_value;
use serde_json::json;
use std::collections::{BTreeSet, HashSet};

fn digest<T: serde::Serialize + ?Sized>(value: &T, len: usize) -> String {
    hash_value(&to_key_value(value).unwrap(), len)
}

fn render(template: &str, ctx: &Context, hash: &[&str]) -> Result<String> {
    let t = Template::parse(template)?;
    t.check_hash_names(hash)?;
    let mut out = String::new();
    t.render_into(ctx, &RenderOptions { hash, hash_len: 16 }, &mut out, None)?;
    Ok(out)
}

#[test]
fn renders_scalars_as_text() {
    let ctx = Context::new()
        .with("user_id", &123)
        .with("code", "NGN")
        .with("on", &true);
    assert_eq!(
        render("user:<<user_id>>:<<code>>:<<on>>", &ctx, &[]).unwrap(),
        "user:123:NGN:true"
    );
}

#[test]
fn hashes_objects_arrays_and_named_scalars() {
    let ctx = Context::new()
        .with("filters", &json!({"is_active": true}))
        .with("ids", &[1, 2])
        .with("code", "NGN");
    // sha1('{"is_active":true}'), sha1('[1,2]'), sha1('"NGN"'): canonical JSON.
    let sha1 = |text: &str| sha1_smol::Sha1::from(text).digest().to_string()[..16].to_owned();
    assert_eq!(
        render("p:<<filters>>", &ctx, &[]).unwrap(),
        format!("p:{}", sha1(r#"{"is_active":true}"#))
    );
    assert_eq!(
        render("p:<<ids>>", &ctx, &[]).unwrap(),
        format!("p:{}", sha1("[1,2]"))
    );
    assert_eq!(
        render("p:<<code>>", &ctx, &["code"]).unwrap(),
        format!("p:{}", sha1(r#""NGN""#))
    );
}

#[test]
fn dotted_placeholders_walk_into_the_value() {
    let ctx = Context::new().with("user", &json!({"id": 7, "tags": ["a", "b"]}));
    assert_eq!(
        render("u:<<user.id>>:<<user.tags.1>>", &ctx, &[]).unwrap(),
        "u:7:b"
    );
    let err = render("u:<<user.idx>>", &ctx, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "placeholder `<<user.idx>>` of key template `u:<<user.idx>>`: `user` has no field `idx`"
    );
}

#[test]
fn escaping_keeps_values_inside_their_segment() {
    let ctx = Context::new().with("v", "a:b*%?[x]\\");
    assert_eq!(
        render("k:<<v>>", &ctx, &[]).unwrap(),
        "k:a%3Ab%2A%25%3F%5Bx%5D%5C"
    );
    let ctx = Context::new().with("v", "{a}/b|c,d;e=f#g&h");
    assert_eq!(
        render("k:<<v>>", &ctx, &[]).unwrap(),
        "k:%7Ba%7D%2Fb%7Cc%2Cd%3Be%3Df%23g%26h"
    );
    let none = Context::new().with("v", &None::<String>);
    let null_string = Context::new().with("v", &Some("null"));
    assert_ne!(
        render("k:<<v>>", &none, &[]).unwrap(),
        render("k:<<v>>", &null_string, &[]).unwrap()
    );
    // The `pattern_escape` fuzz target's find for a planted escape that tested each
    // char's low byte: U+035D ends in 0x5D, the byte of `]`, and must stay itself.
    let bracket = render("wallets:<<v>>:balance", &Context::new().with("v", "]"), &[]);
    let combining = Context::new().with("v", "\u{35d}");
    let combining = render("wallets:<<v>>:balance", &combining, &[]);
    assert_eq!(bracket.unwrap(), "wallets:%5D:balance");
    assert_eq!(combining.unwrap(), "wallets:\u{35d}:balance");
}

#[test]
fn unclosed_placeholder_names_template_and_position() {
    let err = Template::parse("user:<<user_id:profile").unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::Template);
    assert_eq!(
        err.to_string(),
        "unclosed `<<` at byte 5 in key template `user:<<user_id:profile`"
    );
}

#[test]
fn empty_and_malformed_names_are_errors() {
    assert_eq!(
        Template::parse("a:<<>>").unwrap_err().to_string(),
        "empty placeholder `<<>>` in key template `a:<<>>`"
    );
    for bad in [
        "a:<<user id>>",
        "a:<<1abc>>",
        "a:<<user.>>",
        "a:<<.id>>",
        "a:<<a<<b>>",
    ] {
        let err = Template::parse(bad).unwrap_err();
        assert!(
            err.to_string().starts_with("malformed placeholder `<<")
                && err.to_string().contains(bad),
            "{bad}: {err}"
        );
    }
}

#[test]
fn unknown_placeholder_names_culprit_and_context() {
    let ctx = Context::new().with("user_id", &1);
    let err = render("user:<<usr_id>>", &ctx, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "placeholder `<<usr_id>>` of key template `user:<<usr_id>>` has no value: the context holds [\"user_id\"]"
    );
}

#[test]
fn unknown_hash_entry_is_an_error() {
    let err = render(
        "user:<<user_id>>",
        &Context::new().with("user_id", &1),
        &["filters"],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hash entry `filters` names no placeholder of key template `user:<<user_id>>`"
    );
}

#[test]
fn interned_templates_are_parsed_once() {
    static T: &str = "x:<<a>>";
    let a = Template::interned(T).unwrap();
    let b = Template::interned(T).unwrap();
    assert!(std::ptr::eq(&*a, &*b));
}

#[test]
fn key_templates_refuse_glob_syntax_in_their_literal_text() {
    let err = Template::parse("list[0]:<<id>>")
        .unwrap()
        .check_key()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("key template `list[0]:<<id>>` holds glob syntax"),
        "{err}"
    );
    // Glob characters may follow a placeholder in a pattern, never in a key.
    assert!(Template::parse("r:<<a>>*").unwrap().check_key().is_err());
    assert!(Template::parse("user:<<id>>:profile")
        .unwrap()
        .check_key()
        .is_ok());
}

#[test]
fn glob_detection_looks_at_literal_text_only() {
    assert!(Template::parse("wallets:<<id>>:*").unwrap().is_glob());
    assert!(!Template::parse("user:<<id>>:profile").unwrap().is_glob());
}

fn key(template: &str, name: &'static str, value: &(impl serde::Serialize + ?Sized)) -> String {
    render(template, &Context::new().with(name, value), &[]).unwrap()
}

#[test]
fn readable_values_stay_as_they_are() {
    for (value, shown) in [
        ("NGN", "NGN"),
        ("007", "007"),
        ("2024-01-01", "2024-01-01"),
        ("ada.lovelace+x@example.com", "ada.lovelace+x@example.com"),
        (
            "3f2b8c1e-9d4a-4e6b-8f0a-1c2d3e4f5a6b",
            "3f2b8c1e-9d4a-4e6b-8f0a-1c2d3e4f5a6b",
        ),
        ("naïve café_1 x", "naïve café_1 x"),
        ("1.50", "1.50"),
        ("+1", "+1"),
        ("-0", "-0"),
        ("1E5", "1E5"),
        ("True", "True"),
        ("null", "null"),
        ("NaN", "NaN"),
        ("", ""),
    ] {
        assert_eq!(
            key("u:<<v>>", "v", value),
            format!("u:{shown}"),
            "{value:?}"
        );
    }
    assert_eq!(key("user:<<v>>:profile", "v", &42), "user:42:profile");
}

#[test]
fn scalars_render_as_serde_json_writes_them() {
    assert_eq!(key("k:<<v>>", "v", &-7), "k:-7");
    assert_eq!(key("k:<<v>>", "v", &u64::MAX), "k:18446744073709551615");
    assert_eq!(key("k:<<v>>", "v", &i128::MIN), format!("k:{}", i128::MIN));
    assert_eq!(key("k:<<v>>", "v", &1.5), "k:1.5");
    assert_eq!(key("k:<<v>>", "v", &1.0), "k:1.0");
    // serde_json 1.0.154 writes `1e+300` (`1e300` with older versions): whatever it
    // writes.
    let big = serde_json::to_string(&1e300).unwrap();
    assert!(big == "1e+300" || big == "1e300", "{big}");
    assert_eq!(key("k:<<v>>", "v", &1e300), format!("k:{big}"));
    assert_eq!(key("k:<<v>>", "v", &0.1f32), "k:0.1");
    assert_eq!(key("k:<<v>>", "v", &false), "k:false");
    assert_eq!(key("k:<<v>>", "v", &'x'), "k:x");
    for v in [0.1, -2.5e-7, 1e21, 123456.0, f64::MAX, f64::MIN_POSITIVE] {
        assert_eq!(
            key("k:<<v>>", "v", &v),
            format!("k:{}", serde_json::to_string(&v).unwrap())
        );
    }
}

#[test]
fn the_text_of_a_scalar_renders_as_the_scalar_and_digests_keep_apart() {
    // One id, whatever its type: the text of a number or a bool is that number or bool.
    assert_eq!(key("k:<<v>>", "v", "42"), "k:42");
    assert_eq!(key("k:<<v>>", "v", "-7"), "k:-7");
    assert_eq!(key("k:<<v>>", "v", "1.5"), "k:1.5");
    let big = serde_json::to_string(&1e300).unwrap();
    assert_eq!(key("k:<<v>>", "v", &big), format!("k:{big}"));
    assert_eq!(key("k:<<v>>", "v", "true"), "k:true");
    assert_eq!(key("k:<<v>>", "v", "false"), "k:false");
    assert_eq!(key("k:<<v>>", "v", "0.1"), "k:0.1");
    // Text a number would not render as stays text.
    assert_eq!(key("k:<<v>>", "v", "007"), "k:007");
    assert_eq!(key("k:<<v>>", "v", "+1"), "k:+1");
    assert_eq!(key("k:<<v>>", "v", "1.50"), "k:1.50");
    // Digest-shaped: 16 lowercase hex digits, as a hashed object renders.
    assert_eq!(
        key("k:<<v>>", "v", "deadbeefdeadbeef"),
        "k:%64eadbeefdeadbeef"
    );
    assert_eq!(key("k:<<v>>", "v", "deadbeefdeadbee"), "k:deadbeefdeadbee");
    // An integer of 16 digits could equal a digest made of digits only: it is marked,
    // and the string with those digits renders as the integer.
    let int = |n: u64| {
        let mut out = String::new();
        let ctx = Context::new().with("v", &n);
        let opts = RenderOptions {
            hash: &[],
            hash_len: 16,
        };
        Template::parse("k:<<v>>")
            .unwrap()
            .render_into(&ctx, &opts, &mut out, None)
            .unwrap();
        out
    };
    assert_eq!(int(1234567890123456), "k:%n1234567890123456");
    assert_eq!(int(123456789012345), "k:123456789012345");
    assert_eq!(
        key("k:<<v>>", "v", "1234567890123456"),
        "k:%n1234567890123456"
    );
    assert_eq!(
        key("k:<<v>>", "v", "DEADBEEFDEADBEEF"),
        "k:DEADBEEFDEADBEEF"
    );
    // The digest shape follows `hash_len`.
    let ctx = Context::new().with("v", "deadbeef");
    let mut out = String::new();
    Template::parse("k:<<v>>")
        .unwrap()
        .render_into(
            &ctx,
            &RenderOptions {
                hash: &[],
                hash_len: 8,
            },
            &mut out,
            None,
        )
        .unwrap();
    assert_eq!(out, "k:%64eadbeef");

    // Every integer and float text is recognized: a string of it names the number's key.
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    for _ in 0..20_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let f = f64::from_bits(rng);
        let g = f32::from_bits(rng as u32);
        if !f.is_finite() || !g.is_finite() {
            // serde_json writes `null` for these; they render as `%nan`, `%inf`.
            continue;
        }
        for (number, string) in [
            (
                key("k:<<v>>", "v", &f),
                key("k:<<v>>", "v", &serde_json::to_string(&f).unwrap()),
            ),
            (
                key("k:<<v>>", "v", &g),
                key("k:<<v>>", "v", &serde_json::to_string(&g).unwrap()),
            ),
            (
                key("k:<<v>>", "v", &(rng as i64)),
                key("k:<<v>>", "v", &(rng as i64).to_string()),
            ),
        ] {
            assert_eq!(number, string);
        }
    }
}

#[test]
fn non_finite_floats_and_options_render_apart() {
    let keys: Vec<String> = vec![
        key("k:<<v>>", "v", &f64::NAN),
        key("k:<<v>>", "v", &f64::INFINITY),
        key("k:<<v>>", "v", &f64::NEG_INFINITY),
        key("k:<<v>>", "v", &None::<f64>),
        key("k:<<v>>", "v", &Some(None::<i32>)),
        key("k:<<v>>", "v", &Some(Some(None::<i32>))),
        key("k:<<v>>", "v", "%null"),
        key("k:<<v>>", "v", "nan"),
        key("k:<<v>>", "v", "inf"),
    ];
    assert_eq!(
        keys,
        [
            "k:%nan",
            "k:%inf",
            "k:%-inf",
            "k:%null",
            "k:%some%null",
            "k:%some%some%null",
            "k:%25null",
            "k:nan",
            "k:inf",
        ]
    );
    assert_eq!(key("k:<<v>>", "v", &f32::NAN), "k:%nan");
    assert_eq!(key("k:<<v>>", "v", &f32::NEG_INFINITY), "k:%-inf");
    // `Some` is transparent around anything else; `()` is null.
    assert_eq!(key("k:<<v>>", "v", &Some(Some(5))), "k:5");
    assert_eq!(key("k:<<v>>", "v", &()), "k:%null");
    assert_eq!(key("k:<<v>>", "v", &Some(())), "k:%some%null");
}

#[test]
fn dynamic_values_name_one_key_for_an_id_and_its_text() {
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Id {
        Num(i64),
        Text(String),
        Flag(bool),
    }
    // One id, whatever its type: `1` and `"1"`, `true` and `"true"`.
    for (a, b) in [
        (
            key("k:<<v>>", "v", &json!(1)),
            key("k:<<v>>", "v", &json!("1")),
        ),
        (
            key("k:<<v>>", "v", &json!(true)),
            key("k:<<v>>", "v", &json!("true")),
        ),
        (
            key("k:<<v>>", "v", &Id::Num(1)),
            key("k:<<v>>", "v", &Id::Text("1".into())),
        ),
        (
            key("k:<<v>>", "v", &Id::Flag(true)),
            key("k:<<v>>", "v", &Id::Text("true".into())),
        ),
    ] {
        assert_eq!(a, b);
    }
    // Null is not the text `null`.
    assert_ne!(
        key("k:<<v>>", "v", &json!(null)),
        key("k:<<v>>", "v", &json!("null"))
    );
    assert_eq!(key("k:<<v>>", "v", &Id::Num(1)), "k:1");
}

#[test]
fn equal_sets_render_one_key() {
    let a: HashSet<String> = (0..50).map(|i| format!("tag{i}")).collect();
    let mut b: HashSet<String> = HashSet::new();
    for i in (0..50).rev() {
        b.insert(format!("tag{i}"));
    }
    assert_ne!(
        a.iter().collect::<Vec<_>>(),
        b.iter().collect::<Vec<_>>(),
        "the test needs two iteration orders"
    );
    let sorted: BTreeSet<&String> = a.iter().collect();
    let mut by_text: Vec<&String> = sorted.into_iter().collect();
    by_text.sort_by_key(|s| serde_json::to_string(s).unwrap());
    let expected = format!("k:{}", digest(&by_text, 16));
    assert_eq!(key("k:<<v>>", "v", &a), expected);
    assert_eq!(key("k:<<v>>", "v", &b), expected);
    assert_eq!(key("k:<<v>>", "v", &&b), expected);
    assert_eq!(key("k:<<v>>", "v", &Box::new(b.clone())), expected);
    assert_eq!(
        key("k:<<v>>", "v", &Some(vec![Box::new(b.clone())])),
        format!("k:{}", digest(&[&by_text], 16))
    );
}

#[test]
fn placeholders_followed_by_a_value_character_are_refused() {
    let err = Template::parse("range:<<from>>-<<to>>").unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::Template);
    assert_eq!(
        err.to_string(),
        "placeholder `<<from>>` of key template `range:<<from>>-<<to>>` is followed by `-`, \
         which a value may hold too, so two different values could give one key: a \
         placeholder must end the template or be followed by one of `: / | , ; = # & }` \
         (in an invalidation pattern, also by a glob character `* ? [`), which values \
         never hold: they are percent-encoded"
    );
    let err = Template::parse("x:<<a>><<b>>").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("placeholder `<<a>>` of key template `x:<<a>><<b>>` is followed directly by another placeholder, so two"),
        "{err}"
    );
    for bad in ["a<<x>>b", "k:<<a>>.json", "k:<<a>>_v2", "k:<<a>>]"] {
        assert!(Template::parse(bad).is_err(), "{bad}");
    }
    for good in [
        "range:<<from>>:<<to>>",
        "v<<n>>:x",
        "wallets:{<<user_id>>}:summary",
        "r:<<a>>*",
    ] {
        assert!(Template::parse(good).is_ok(), "{good}");
    }
}

#[test]
fn debug_context_shows_values_as_json() {
    let ctx = Context::new()
        .with("id", &7)
        .with("code", "42")
        .with("nan", &f64::NAN)
        .with("none", &Some(None::<i32>))
        .with("f", &json!({"a": 1}));
    let mut shown = serde_json::Map::new();
    let mut out = String::new();
    Template::parse("<<id>>:<<code>>:<<nan>>:<<none>>:<<f>>")
        .unwrap()
        .render_into(
            &ctx,
            &RenderOptions {
                hash: &["code"],
                hash_len: 16,
            },
            &mut out,
            Some(&mut shown),
        )
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(shown).to_string(),
        format!(
            r#"{{"code":"{}","f":"{}","id":7,"nan":"NaN","none":"some(null)"}}"#,
            digest("42", 16),
            digest(&json!({"a": 1}), 16)
        )
    );
}
