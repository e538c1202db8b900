//! Canonical JSON and the SHA-1 digest that hashed placeholder values render as.

use serde_json::Value;
use std::fmt::Write as _;

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
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
        // A number has one JSON form; written in place, without a `String` of its own.
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `s` as a JSON string exactly as serde_json does (its escaping is canonical):
/// `"` and `\` escaped, `\b \f \n \r \t` for those controls, `\u00xx` for the others.
fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Lowercase hex SHA-1 of the canonical JSON of `value`, cut to `len` digits.
pub(crate) fn hash_value(value: &Value, len: usize) -> String {
    let mut json = String::with_capacity(128);
    canonical_json(value, &mut json);
    let digest = sha1_smol::Sha1::from(json.as_bytes()).digest().bytes();
    // Hex by table: `Digest`'s `Display` writes 20 `{:02x}`s through the formatter.
    let mut hex = String::with_capacity(len);
    for b in digest.iter().flat_map(|b| [b >> 4, b & 0xf]).take(len) {
        hex.push(HEX[usize::from(b)] as char);
    }
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
    fn strings_and_scalars_are_written_as_serde_json_writes_them() {
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
        ] {
            let mut out = String::new();
            canonical_json(&v, &mut out);
            assert_eq!(out, v.to_string());
        }
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
