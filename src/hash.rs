//! Canonical JSON and the SHA-1 digest that hashed placeholder values render as.

use serde_json::Value;

/// Writes `value` as JSON with object keys sorted, whatever order the map kept,
/// so that a `HashMap` hashes the same in every process.
pub(crate) fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_json_string(s, out),
        // Numbers, booleans and null have one JSON form each.
        other => out.push_str(&other.to_string()),
    }
}

fn write_json_string(s: &str, out: &mut String) {
    // serde_json's string escaping is canonical already.
    out.push_str(&Value::String(s.to_owned()).to_string());
}

/// Lowercase hex SHA-1 of the canonical JSON of `value`, cut to `len` digits.
pub(crate) fn hash_value(value: &Value, len: usize) -> String {
    let mut json = String::with_capacity(64);
    canonical_json(value, &mut json);
    let mut hex = sha1_smol::Sha1::from(json.as_bytes()).digest().to_string();
    hex.truncate(len);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_keys_are_sorted_at_every_depth() {
        let mut out = String::new();
        canonical_json(
            &json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 3}], "c": null}}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":{"c":null,"z":[1,{"x":3,"y":2}]},"b":1}"#);
    }

    #[test]
    fn hash_is_sha1_of_canonical_json_cut_to_length() {
        // sha1('{"is_active":true}')
        let full = sha1_smol::Sha1::from(r#"{"is_active":true}"#)
            .digest()
            .to_string();
        assert_eq!(hash_value(&json!({"is_active": true}), 16), full[..16]);
        assert_eq!(hash_value(&json!({"is_active": true}), 40), full);
        assert_ne!(
            hash_value(&json!({"a": 1}), 16),
            hash_value(&json!({"a": 2}), 16)
        );
    }
}
