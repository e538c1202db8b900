//! The canonical JSON hash: equal values give equal hashes, whatever form they arrive in
//! (compact or pretty text, object keys in any order, a `HashMap` or a `serde_json::Map`).
//! Its first run found that a float re-parsed by serde_json (without `float_roundtrip`) can
//! come back as a neighbouring float: the target now compares only values that are equal,
//! and `hash::tests::neighbouring_floats_hash_apart` keeps the case.
#![no_main]

use cacheable::__fuzz::hash_of;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::collections::HashMap;

/// The same value with every object's keys inserted in reverse order.
fn reversed(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map.iter().rev() {
                out.insert(k.clone(), reversed(v));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(hash) = hash_of(&value, 40) else {
        return;
    };
    assert_eq!(hash.len(), 40);
    let pretty: Value = serde_json::from_str(&serde_json::to_string_pretty(&value).unwrap()).unwrap();
    // serde_json's default float parsing is not exact: a re-parsed float may be another
    // (neighbouring) number, which must hash differently. Equal values hash equal.
    if pretty == value {
        assert_eq!(hash_of(&pretty, 40).as_ref(), Some(&hash), "pretty {value}");
    }
    assert_eq!(hash_of(&reversed(&value), 40).as_ref(), Some(&hash), "reversed {value}");
    if let Value::Object(map) = &value {
        let hashed: HashMap<&String, &Value> = map.iter().collect();
        assert_eq!(hash_of(&hashed, 40).as_ref(), Some(&hash), "as a HashMap {value}");
    }
    // A shorter digest is a prefix of the full one.
    assert_eq!(hash_of(&value, 8).unwrap(), hash[..8]);
});
