//! Argument values as trees: faithful, canonical, and shown as the debug lines show them.

use super::*;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};

fn canonical<T: Serialize + ?Sized>(value: &T) -> String {
    to_key_value(value).unwrap().canonical()
}

#[test]
fn object_keys_are_sorted_at_every_depth() {
    assert_eq!(
        canonical(&json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": null}})),
        r#"{"a":{"c":null,"z":[1,{"x":3,"y":2}]},"b":1}"#
    );
    let map: HashMap<String, i32> = (0..100).map(|i| (format!("k{i}"), i)).collect();
    let sorted: BTreeMap<&String, &i32> = map.iter().collect();
    assert_eq!(canonical(&map), serde_json::to_string(&sorted).unwrap());
}

#[test]
fn json_values_are_written_as_serde_json_writes_them() {
    let all_bytes: String = (0u8..=0x7f).map(char::from).collect();
    for v in [
        json!(all_bytes),
        json!("naïve \u{2028} \u{1F600} \"q\" \\"),
        json!(""),
        json!(-12),
        json!(u64::MAX),
        json!(1.5e300),
        json!(0.1),
        json!(true),
        json!(null),
        json!([1, "a", [null, {"k": [1.5, false]}]]),
    ] {
        // serde_json's `Map` is a `BTreeMap` here: its text is sorted already.
        assert_eq!(canonical(&v), v.to_string());
    }
}

#[test]
fn rust_types_take_serde_jsons_form() {
    #[derive(serde::Serialize)]
    struct User {
        name: &'static str,
        id: u32,
        tags: Vec<char>,
    }
    #[derive(serde::Serialize)]
    struct Unit;
    #[derive(serde::Serialize)]
    struct Meters(f64);
    #[derive(serde::Serialize)]
    enum Shape {
        Dot,
        Circle(u8),
        Rect(u8, u8),
        Poly { sides: u8 },
    }
    let user = User {
        name: "Ada",
        id: 7,
        tags: vec!['x'],
    };
    assert_eq!(
        canonical(&user),
        serde_json::to_string(&json!(user)).unwrap()
    );
    for v in [
        Shape::Dot,
        Shape::Circle(1),
        Shape::Rect(1, 2),
        Shape::Poly { sides: 5 },
    ] {
        assert_eq!(canonical(&v), serde_json::to_string(&v).unwrap());
    }
    assert_eq!(canonical(&Unit), "null");
    assert_eq!(canonical(&Meters(2.0)), "2.0");
    assert_eq!(canonical(&(1, "a")), r#"[1,"a"]"#);
    assert_eq!(canonical(&serde_bytes_like()), "[1,2]");
    assert_eq!(canonical(&0.1f32), "0.1");
    assert_eq!(canonical(&i128::MAX), i128::MAX.to_string());
}

/// A `Serialize` that calls `serialize_bytes`.
fn serde_bytes_like() -> impl Serialize {
    struct Bytes;
    impl Serialize for Bytes {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&[1, 2])
        }
    }
    Bytes
}

#[test]
fn what_json_loses_is_kept() {
    assert_eq!(
        canonical(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
        "[NaN,Infinity,-Infinity]"
    );
    assert_eq!(canonical(&[f32::NAN]), "[NaN]");
    assert_eq!(canonical(&Some(None::<i32>)), "some(null)");
    assert_eq!(canonical(&Some(Some(None::<i32>))), "some(some(null))");
    assert_eq!(canonical(&Some(())), "some(null)");
    assert_eq!(canonical(&Some(Some(3))), "3");
    assert_eq!(canonical(&None::<Option<i32>>), "null");
}

#[test]
fn map_keys_of_any_type() {
    let numbers: HashMap<i32, &str> = [(10, "a"), (9, "b")].into();
    // As serde_json: number keys become strings, sorted as strings.
    assert_eq!(canonical(&numbers), r#"{"10":"a","9":"b"}"#);
    assert_eq!(
        canonical(&numbers),
        serde_json::to_string(&json!(numbers)).unwrap()
    );
    let bools: HashMap<bool, i32> = [(true, 1), (false, 0)].into();
    assert_eq!(canonical(&bools), r#"{"false":0,"true":1}"#);
    // Keys JSON cannot hold are written unquoted, apart from any string key.
    let pairs: HashMap<(i32, i32), &str> = [((1, 2), "x"), ((0, 5), "y")].into();
    assert_eq!(canonical(&pairs), r#"{[0,5]:"y",[1,2]:"x"}"#);
    let strings: HashMap<&str, &str> = [("[0,5]", "y"), ("[1,2]", "x")].into();
    assert_ne!(canonical(&pairs), canonical(&strings));
    let options: BTreeMap<Option<i32>, i32> = [(None, 1), (Some(2), 2)].into();
    assert_eq!(canonical(&options), r#"{"2":2,null:1}"#);
}

#[test]
fn hash_sets_are_sorted_wherever_their_type_is_known() {
    #[derive(serde::Serialize)]
    struct Filter {
        ids: HashSet<u32>,
        nested: Vec<HashSet<&'static str>>,
        by_name: HashMap<&'static str, HashSet<u32>>,
        maybe: Option<HashSet<u32>>,
    }
    #[derive(serde::Serialize)]
    struct Tags(HashSet<u32>);
    let make = |rev: bool| {
        let mut order: Vec<u32> = (0..40).collect();
        if rev {
            order.reverse();
        }
        let set: HashSet<u32> = order.iter().copied().collect();
        let mut strs = HashSet::new();
        for i in &order {
            strs.insert(["a", "b", "c", "d", "e", "f", "g", "h"][*i as usize % 8]);
        }
        Filter {
            ids: set.clone(),
            nested: vec![strs],
            by_name: [("k", set.clone())].into(),
            maybe: Some(set),
        }
    };
    let (a, b) = (make(false), make(true));
    assert_eq!(canonical(&a), canonical(&b));
    let text = canonical(&a);
    assert!(
        text.contains(r#"["a","b","c","d","e","f","g","h"]"#),
        "{text}"
    );
    // Sorted by canonical text: `10` before `9`.
    assert!(text.contains("[0,1,10,11,"), "{text}");
    assert_eq!(
        canonical(&Tags(a.ids.clone())),
        canonical(&Tags(b.ids.clone()))
    );
    assert_eq!(canonical(&&&a.ids), canonical(&b.ids));
}

#[test]
fn unordered_types_are_recognized_by_name() {
    for name in [
        "std::collections::hash::set::HashSet<i32>",
        "std::collections::hash::set::HashSet<alloc::string::String, foldhash::fast::RandomState>",
        "hashbrown::set::HashSet<u8, foldhash::fast::RandomState>",
        "&std::collections::hash::set::HashSet<i32>",
        "&&mut std::collections::hash::set::HashSet<i32>",
        "alloc::boxed::Box<std::collections::hash::set::HashSet<i32>>",
        "&alloc::sync::Arc<alloc::rc::Rc<hashbrown::set::HashSet<i32>>>",
    ] {
        assert!(is_unordered(name), "{name}");
    }
    for name in [
        "alloc::vec::Vec<std::collections::hash::set::HashSet<i32>>",
        "alloc::collections::btree::set::BTreeSet<i32>",
        "std::collections::hash::map::HashMap<i32, i32>",
        "core::option::Option<std::collections::hash::set::HashSet<i32>>",
        "my::HashSet<i32>",
    ] {
        assert!(!is_unordered(name), "{name}");
    }
    assert!(is_unordered(std::any::type_name::<HashSet<String>>()));
    assert!(is_unordered(std::any::type_name::<&Box<HashSet<String>>>()));
}

/// Sets are told from sequences by their type's name, which std does not promise to keep:
/// if a toolchain named them otherwise, equal sets would render different keys. This
/// holds every set type recognised, with the hashers and wrappers they come with, to the
/// names recognised; it fails before any key changes.
#[test]
fn every_recognised_set_type_is_named_as_recognised() {
    use std::any::type_name;
    use std::collections::hash_map::RandomState;
    use std::collections::BTreeSet;
    type Build = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
    let sets = [
        type_name::<HashSet<u8>>(),
        type_name::<HashSet<String>>(),
        type_name::<HashSet<(u8, String)>>(),
        type_name::<HashSet<u64, RandomState>>(),
        type_name::<HashSet<u64, Build>>(),
        type_name::<HashSet<HashSet<u8>>>(),
        type_name::<hashbrown::HashSet<u8>>(),
        type_name::<hashbrown::HashSet<String, RandomState>>(),
        type_name::<&HashSet<u8>>(),
        type_name::<std::sync::Arc<HashSet<u8>>>(),
        type_name::<Box<hashbrown::HashSet<u8>>>(),
        type_name::<std::rc::Rc<&HashSet<u8>>>(),
    ];
    for name in sets {
        assert!(
            is_unordered(name),
            "{name} is no longer recognised as a set"
        );
    }
    for name in [
        type_name::<Vec<u8>>(),
        type_name::<BTreeSet<u8>>(),
        type_name::<[u8; 3]>(),
        type_name::<Option<HashSet<u8>>>(),
        type_name::<Vec<HashSet<u8>>>(),
    ] {
        assert!(!is_unordered(name), "{name} taken for a set");
    }
}

#[test]
fn a_failing_serialize_is_an_error() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("no serde form"))
        }
    }
    assert_eq!(to_key_value(&[Fails]).unwrap_err(), "no serde form");
}

#[test]
fn to_json_shows_scalars_as_json() {
    let shown = |v: &dyn erased::Dyn| v.json();
    assert_eq!(shown(&7), json!(7));
    assert_eq!(shown(&"a"), json!("a"));
    assert_eq!(shown(&0.1f32), json!(0.1));
    assert_eq!(shown(&f64::NAN), json!("NaN"));
    assert_eq!(shown(&Some(None::<i32>)), json!("some(null)"));
    assert_eq!(shown(&u128::MAX), json!(u128::MAX.to_string()));
}

mod erased {
    pub trait Dyn {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Dyn for T {
        fn json(&self) -> serde_json::Value {
            super::to_key_value(self).unwrap().to_json()
        }
    }
}
