//! The SHA-1 digest that hashed placeholder values render as.

use super::value::KeyValue;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the lowercase hex SHA-1 of the canonical text of `value` (its canonical JSON
/// when JSON can express it; see `key::value`), cut to `len` digits.
pub(crate) fn hash_into(value: &KeyValue, len: usize, out: &mut String) {
    let mut text = String::with_capacity(128);
    value.write_canonical(&mut text);
    let digest = sha1_smol::Sha1::from(text.as_bytes()).digest().bytes();
    // Hex by table: `Digest`'s `Display` writes 20 `{:02x}`s through the formatter.
    for b in digest.iter().flat_map(|b| [b >> 4, b & 0xf]).take(len) {
        out.push(HEX[usize::from(b)] as char);
    }
}

/// [`hash_into`] a `String` of its own.
#[cfg(test)]
pub(crate) fn hash_value(value: &KeyValue, len: usize) -> String {
    let mut hex = String::with_capacity(len);
    hash_into(value, len, &mut hex);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::value::to_key_value;
    use serde_json::json;

    #[test]
    fn hash_is_sha1_of_canonical_json_cut_to_length() {
        // sha1('{"is_active":true}')
        let full = sha1_smol::Sha1::from(r#"{"is_active":true}"#)
            .digest()
            .to_string();
        let v = to_key_value(&json!({"is_active": true})).unwrap();
        assert_eq!(hash_value(&v, 16), full[..16]);
        assert_eq!(hash_value(&v, 40), full);
        assert_ne!(
            hash_value(&to_key_value(&json!({"a": 1})).unwrap(), 16),
            hash_value(&to_key_value(&json!({"a": 2})).unwrap(), 16)
        );
    }

    #[test]
    fn a_map_hashes_alike_in_any_order_it_was_written() {
        // The `json_hash` fuzz target's find for a planted shortcut (sorting only when the
        // first key is past the last): `a, c, b` must hash as `a, b, c` does.
        struct Written(&'static [(&'static str, i32)]);
        impl serde::Serialize for Written {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
            }
        }
        let h = |w: &Written| hash_value(&to_key_value(w).unwrap(), 40);
        let sorted = h(&Written(&[("a", 1), ("b", 2), ("c", 3)]));
        for order in [
            &[("a", 1), ("c", 3), ("b", 2)],
            &[("b", 2), ("a", 1), ("c", 3)],
            &[("c", 3), ("b", 2), ("a", 1)],
        ] {
            assert_eq!(h(&Written(order)), sorted, "{order:?}");
        }
        let json = to_key_value(&json!({"c": 3, "a": 1, "b": 2})).unwrap();
        assert_eq!(sorted, hash_value(&json, 40));
    }

    #[test]
    fn neighbouring_floats_hash_apart() {
        // Found by the `json_hash` fuzz target: serde_json (without `float_roundtrip`) read
        // 911111115555555555511111118.825 as a float one step from what its own output
        // reads back as. Different floats are different values, and hash apart.
        let a = 9.111111155555555e26_f64;
        let b = f64::from_bits(a.to_bits() + 1);
        let h = |f: f64| hash_value(&to_key_value(&f).unwrap(), 40);
        assert_ne!(h(a), h(b));
        assert_eq!(h(a), h(9.111111155555555e26));
    }

    #[test]
    fn values_json_cannot_express_hash_apart_from_null() {
        let digest = |v: &KeyValue| hash_value(v, 40);
        let null = digest(&to_key_value(&[None::<f64>]).unwrap());
        let nan = digest(&to_key_value(&[f64::NAN]).unwrap());
        let inf = digest(&to_key_value(&[f64::INFINITY]).unwrap());
        let neg_inf = digest(&to_key_value(&[f64::NEG_INFINITY]).unwrap());
        let some_none = digest(&to_key_value(&[Some(None::<i32>)]).unwrap());
        let none = digest(&to_key_value(&[None::<Option<i32>>]).unwrap());
        let all = [&null, &nan, &inf, &neg_inf, &some_none];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(none, null);
        assert_eq!(
            nan,
            sha1_smol::Sha1::from("[NaN]").digest().to_string(),
            "non-JSON values hash their extended canonical text"
        );
    }
}
