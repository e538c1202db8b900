//! The value tree that placeholders render from, built by a `serde::Serializer` of its own,
//! and its canonical text (what a hashed value is the digest of).
//!
//! `serde_json::Value` would not do: it turns NaN and ±inf into `null`, forgets `Some` in
//! `Some(None)`, refuses maps whose keys are not strings, and keeps a `HashSet` in its
//! iteration order. This tree keeps what tells two values apart:
//!
//! - `None`, `()` and unit structs are [`KeyValue::Null`]; `Some(x)` is `x` itself, unless
//!   `x` is null-like (`None`, `()`, a unit struct, or such a `Some`): then it is
//!   [`KeyValue::Some`], so that `Some(None)` differs from `None`.
//! - Numbers keep their kind (`f32` is written as serde_json writes an `f32`: `0.1`), and
//!   non-finite floats stay what they are.
//! - Enums take serde_json's externally tagged form: `"Unit"`, `{"Newtype": …}`,
//!   `{"Tuple": […]}`, `{"Struct": {…}}`.
//! - Maps are sorted by key, whatever order they were written in. String keys, and number
//!   and bool keys (as serde_json turns them into strings), are [`MapKey::Str`]; any other
//!   key is kept as a value.
//! - A std or `hashbrown` `HashSet` is sorted by the canonical text of its elements. It is
//!   recognized by its type name wherever the serializer learns the type (the value given
//!   to [`Context`](crate::Context), a field, an element, a map value, `Some`, a newtype),
//!   behind `&`, `Box`, `Arc` and `Rc`. A set written by a hand-made `Serialize` impl
//!   through `collect_seq` is not recognized (its type never reaches the serializer).
//!
//! The canonical text is JSON with object keys sorted and serde_json's string escaping, so
//! that a value JSON can express hashes as its canonical JSON (and a client in another
//! language can compute its key). What JSON cannot say is written with tokens JSON never
//! holds: `NaN`, `Infinity`, `-Infinity`, `some(…)`, and a non-string map key unquoted
//! (`{[1,2]:"x"}`).

use serde::ser::{self, Serialize};
use std::cmp::Ordering;
use std::fmt::{self, Write as _};

/// A serialized placeholder value.
#[derive(Debug, Clone)]
pub(crate) enum KeyValue {
    /// `None`, `()`, a unit struct.
    Null,
    /// `Some(x)` where `x` is null-like; any other `Some(x)` is `x` itself.
    Some(Box<KeyValue>),
    Bool(bool),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    F32(f32),
    Str(String),
    Seq(Vec<KeyValue>),
    /// Sorted by key (see [`MapKey`]'s order).
    Map(Vec<(MapKey, KeyValue)>),
}

/// A map key.
#[derive(Debug, Clone)]
pub(crate) enum MapKey {
    /// A string key, or a number or bool key as serde_json writes it as a string.
    Str(String),
    /// Any other key (an option, a sequence, a non-finite float …), kept as a value.
    Other(KeyValue),
}

impl KeyValue {
    /// True for the values that `Some` must not be transparent around.
    pub(crate) fn is_null_like(&self) -> bool {
        matches!(self, KeyValue::Null | KeyValue::Some(_))
    }

    /// The field or element that a dotted placeholder's `segment` names.
    pub(crate) fn get(&self, segment: &str) -> Option<&KeyValue> {
        match self {
            KeyValue::Map(entries) => entries.iter().find_map(|(k, v)| match k {
                MapKey::Str(k) if k == segment => Some(v),
                _ => None,
            }),
            KeyValue::Seq(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
    }

    /// Appends the canonical text (see the module docs).
    pub(crate) fn write_canonical(&self, out: &mut String) {
        match self {
            KeyValue::Null => out.push_str("null"),
            KeyValue::Some(inner) => {
                out.push_str("some(");
                inner.write_canonical(out);
                out.push(')');
            }
            KeyValue::Str(s) => write_json_string(s, out),
            KeyValue::Seq(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_canonical(out);
                }
                out.push(']');
            }
            KeyValue::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match k {
                        MapKey::Str(k) => write_json_string(k, out),
                        MapKey::Other(k) => k.write_canonical(out),
                    }
                    out.push(':');
                    v.write_canonical(out);
                }
                out.push('}');
            }
            scalar => {
                if !scalar.write_scalar(out) {
                    out.push_str(match scalar {
                        KeyValue::F64(f) => non_finite_token(f.is_nan(), *f > 0.0),
                        KeyValue::F32(f) => non_finite_token(f.is_nan(), *f > 0.0),
                        _ => unreachable!("write_scalar writes every other scalar"),
                    });
                }
            }
        }
    }

    /// The canonical text, as a `String`.
    pub(crate) fn canonical(&self) -> String {
        let mut out = String::new();
        self.write_canonical(&mut out);
        out
    }

    /// Appends a bool or finite number as serde_json writes it, and returns true; returns
    /// false (writing nothing) for anything else.
    pub(crate) fn write_scalar(&self, out: &mut String) -> bool {
        fn push_u64(mut n: u64, out: &mut String) {
            let mut digits = [0u8; 20];
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            out.reserve(digits.len() - i);
            for &d in &digits[i..] {
                out.push(char::from(d));
            }
        }
        // In place: a `to_string` here would allocate on every render of an id.
        match self {
            KeyValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            // Ids are the common case: written digit by digit, without the formatter.
            KeyValue::I64(n) => {
                if *n < 0 {
                    out.push('-');
                }
                push_u64(n.unsigned_abs(), out);
            }
            KeyValue::U64(n) => push_u64(*n, out),
            KeyValue::I128(n) => {
                let _ = write!(out, "{n}");
            }
            KeyValue::U128(n) => {
                let _ = write!(out, "{n}");
            }
            KeyValue::F64(f) if f.is_finite() => push_f64(*f, out),
            KeyValue::F32(f) if f.is_finite() => push_f32(*f, out),
            _ => return false,
        }
        true
    }

    /// The value as JSON, for debug lines. What JSON cannot hold (non-finite floats,
    /// `Some(None)`, integers past 64 bits, non-string keys) shows as its canonical text
    /// in a string.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            KeyValue::Null => Value::Null,
            KeyValue::Bool(b) => Value::Bool(*b),
            KeyValue::I64(n) => Value::from(*n),
            KeyValue::U64(n) => Value::from(*n),
            KeyValue::Str(s) => Value::String(s.clone()),
            KeyValue::Seq(items) => Value::Array(items.iter().map(KeyValue::to_json).collect()),
            KeyValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let k = match k {
                            MapKey::Str(k) => k.clone(),
                            MapKey::Other(k) => k.canonical(),
                        };
                        (k, v.to_json())
                    })
                    .collect(),
            ),
            KeyValue::I128(n) => {
                i64::try_from(*n).map_or_else(|_| Value::String(n.to_string()), Value::from)
            }
            KeyValue::U128(n) => {
                u64::try_from(*n).map_or_else(|_| Value::String(n.to_string()), Value::from)
            }
            KeyValue::F64(f) if f.is_finite() => Value::from(*f),
            // Through its text: `Value::from(0.1f32)` would show 0.10000000149011612.
            KeyValue::F32(f) if f.is_finite() => {
                let mut text = String::new();
                push_f32(*f, &mut text);
                text.parse::<serde_json::Number>()
                    .map_or(Value::String(text), Value::Number)
            }
            other => Value::String(other.canonical()),
        }
    }
}

/// The canonical token of a non-finite float.
fn non_finite_token(nan: bool, positive: bool) -> &'static str {
    match (nan, positive) {
        (true, _) => "NaN",
        (false, true) => "Infinity",
        (false, false) => "-Infinity",
    }
}

/// Appends a finite `f64` exactly as serde_json writes it (`1.5`, `1e+300`, `1.0`).
pub(crate) fn push_f64(f: f64, out: &mut String) {
    let mut buf = [0u8; 40];
    let len = {
        let mut w: &mut [u8] = &mut buf;
        let _ = serde_json::ser::Formatter::write_f64(
            &mut serde_json::ser::CompactFormatter,
            &mut w,
            f,
        );
        40 - w.len()
    };
    out.push_str(std::str::from_utf8(&buf[..len]).unwrap_or_default());
}

/// Appends a finite `f32` exactly as serde_json writes it (`0.1`, not `0.10000000149011612`).
pub(crate) fn push_f32(f: f32, out: &mut String) {
    let mut buf = [0u8; 40];
    let len = {
        let mut w: &mut [u8] = &mut buf;
        let _ = serde_json::ser::Formatter::write_f32(
            &mut serde_json::ser::CompactFormatter,
            &mut w,
            f,
        );
        40 - w.len()
    };
    out.push_str(std::str::from_utf8(&buf[..len]).unwrap_or_default());
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

// ---------------------------------------------------------------------------------------
// Unordered collections, recognized by type name.

/// The type-name prefixes of the sets whose iteration order is not canonical.
const UNORDERED: &[&str] = &[
    "std::collections::hash::set::HashSet<",
    "hashbrown::set::HashSet<",
];

/// Wrappers that serialize as what they hold.
const TRANSPARENT: &[&str] = &[
    "alloc::boxed::Box<",
    "alloc::sync::Arc<",
    "alloc::rc::Rc<",
    "std::boxed::Box<",
    "std::sync::Arc<",
    "std::rc::Rc<",
];

/// True when a value of type `name` (a `std::any::type_name`) is a set to be sorted.
fn is_unordered(name: &str) -> bool {
    // Cheap first: this runs for every field, element, key and value. The name of a set,
    // bare or wrapped, ends with its closing `>`; those of scalars and strings do not.
    if !name.ends_with('>') {
        return false;
    }
    let mut rest = name;
    loop {
        let before = rest.len();
        rest = rest.trim_start_matches('&');
        rest = rest.strip_prefix("mut ").unwrap_or(rest);
        for wrapper in TRANSPARENT {
            if let Some(inner) = rest.strip_prefix(wrapper) {
                rest = inner;
            }
        }
        if rest.len() == before {
            break;
        }
    }
    UNORDERED.iter().any(|set| rest.starts_with(set))
}

// ---------------------------------------------------------------------------------------
// The serializer.

/// Serializes `value` into the tree; the error is the one its `Serialize` impl raised.
pub(crate) fn to_key_value<T: Serialize + ?Sized>(value: &T) -> Result<KeyValue, String> {
    value_of(value).map_err(|e| e.0)
}

fn value_of<T: Serialize + ?Sized>(value: &T) -> Result<KeyValue, Error> {
    value.serialize(Serializer {
        unordered: is_unordered(std::any::type_name::<T>()),
    })
}

#[derive(Debug)]
pub(crate) struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// `unordered`: the value being serialized is a set whose order is to be made canonical.
struct Serializer {
    unordered: bool,
}

fn tagged(variant: &'static str, value: KeyValue) -> KeyValue {
    KeyValue::Map(vec![(MapKey::Str(variant.to_owned()), value)])
}

impl ser::Serializer for Serializer {
    type Ok = KeyValue;
    type Error = Error;
    type SerializeSeq = SeqSerializer;
    type SerializeTuple = SeqSerializer;
    type SerializeTupleStruct = SeqSerializer;
    type SerializeTupleVariant = SeqSerializer;
    type SerializeMap = MapSerializer;
    type SerializeStruct = MapSerializer;
    type SerializeStructVariant = MapSerializer;

    fn serialize_bool(self, v: bool) -> Result<KeyValue, Error> {
        Ok(KeyValue::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<KeyValue, Error> {
        Ok(KeyValue::I64(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<KeyValue, Error> {
        Ok(KeyValue::I64(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<KeyValue, Error> {
        Ok(KeyValue::I64(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<KeyValue, Error> {
        Ok(KeyValue::I64(v))
    }
    fn serialize_i128(self, v: i128) -> Result<KeyValue, Error> {
        Ok(KeyValue::I128(v))
    }
    fn serialize_u8(self, v: u8) -> Result<KeyValue, Error> {
        Ok(KeyValue::U64(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<KeyValue, Error> {
        Ok(KeyValue::U64(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<KeyValue, Error> {
        Ok(KeyValue::U64(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<KeyValue, Error> {
        Ok(KeyValue::U64(v))
    }
    fn serialize_u128(self, v: u128) -> Result<KeyValue, Error> {
        Ok(KeyValue::U128(v))
    }
    fn serialize_f32(self, v: f32) -> Result<KeyValue, Error> {
        Ok(KeyValue::F32(v))
    }
    fn serialize_f64(self, v: f64) -> Result<KeyValue, Error> {
        Ok(KeyValue::F64(v))
    }
    fn serialize_char(self, v: char) -> Result<KeyValue, Error> {
        Ok(KeyValue::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<KeyValue, Error> {
        Ok(KeyValue::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<KeyValue, Error> {
        // As serde_json: an array of numbers.
        Ok(KeyValue::Seq(
            v.iter().map(|b| KeyValue::U64((*b).into())).collect(),
        ))
    }
    fn serialize_none(self) -> Result<KeyValue, Error> {
        Ok(KeyValue::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<KeyValue, Error> {
        let inner = value_of(value)?;
        Ok(if inner.is_null_like() {
            KeyValue::Some(Box::new(inner))
        } else {
            inner
        })
    }
    fn serialize_unit(self) -> Result<KeyValue, Error> {
        Ok(KeyValue::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<KeyValue, Error> {
        Ok(KeyValue::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<KeyValue, Error> {
        Ok(KeyValue::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<KeyValue, Error> {
        value_of(value)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<KeyValue, Error> {
        Ok(tagged(variant, value_of(value)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSerializer, Error> {
        Ok(SeqSerializer {
            items: Vec::with_capacity(len.unwrap_or(0)),
            unordered: self.unordered,
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSerializer, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqSerializer, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqSerializer, Error> {
        Ok(SeqSerializer {
            items: Vec::with_capacity(len),
            unordered: false,
            variant: Some(variant),
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapSerializer, Error> {
        Ok(MapSerializer {
            entries: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapSerializer, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapSerializer, Error> {
        Ok(MapSerializer {
            entries: Vec::with_capacity(len),
            key: None,
            variant: Some(variant),
        })
    }
}

pub(crate) struct SeqSerializer {
    items: Vec<KeyValue>,
    unordered: bool,
    variant: Option<&'static str>,
}

impl SeqSerializer {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.items.push(value_of(value)?);
        Ok(())
    }

    fn finish(mut self) -> KeyValue {
        if self.unordered {
            self.items.sort_by_cached_key(KeyValue::canonical);
        }
        let seq = KeyValue::Seq(self.items);
        match self.variant {
            Some(variant) => tagged(variant, seq),
            None => seq,
        }
    }
}

impl ser::SerializeSeq for SeqSerializer {
    type Ok = KeyValue;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<KeyValue, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for SeqSerializer {
    type Ok = KeyValue;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<KeyValue, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for SeqSerializer {
    type Ok = KeyValue;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<KeyValue, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleVariant for SeqSerializer {
    type Ok = KeyValue;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<KeyValue, Error> {
        Ok(self.finish())
    }
}

pub(crate) struct MapSerializer {
    entries: Vec<(MapKey, KeyValue)>,
    key: Option<MapKey>,
    variant: Option<&'static str>,
}

/// A serialized key as a map key: strings, bools and finite numbers as serde_json turns them
/// into strings; anything else kept as a value.
fn map_key(key: KeyValue) -> MapKey {
    match key {
        KeyValue::Str(s) => MapKey::Str(s),
        other => {
            let mut text = String::new();
            if other.write_scalar(&mut text) {
                MapKey::Str(text)
            } else {
                MapKey::Other(other)
            }
        }
    }
}

fn cmp_keys(a: &MapKey, b: &MapKey) -> Ordering {
    match (a, b) {
        (MapKey::Str(a), MapKey::Str(b)) => a.cmp(b),
        (MapKey::Str(_), MapKey::Other(_)) => Ordering::Less,
        (MapKey::Other(_), MapKey::Str(_)) => Ordering::Greater,
        (MapKey::Other(a), MapKey::Other(b)) => a.canonical().cmp(&b.canonical()),
    }
}

impl MapSerializer {
    fn finish(mut self) -> KeyValue {
        // Sorted whatever order the map was written in. Equal keys (possible only with
        // keys of several kinds, `1` and `"1"`) are all kept, ordered by value.
        self.entries.sort_unstable_by(|(ka, va), (kb, vb)| {
            cmp_keys(ka, kb).then_with(|| va.canonical().cmp(&vb.canonical()))
        });
        let map = KeyValue::Map(self.entries);
        match self.variant {
            Some(variant) => tagged(variant, map),
            None => map,
        }
    }
}

impl ser::SerializeMap for MapSerializer {
    type Ok = KeyValue;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(map_key(value_of(key)?));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Error("a map value was serialized before its key".into()))?;
        self.entries.push((key, value_of(value)?));
        Ok(())
    }
    fn end(self) -> Result<KeyValue, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeStruct for MapSerializer {
    type Ok = KeyValue;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.entries
            .push((MapKey::Str(key.to_owned()), value_of(value)?));
        Ok(())
    }
    fn end(self) -> Result<KeyValue, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeStructVariant for MapSerializer {
    type Ok = KeyValue;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<KeyValue, Error> {
        Ok(self.finish())
    }
}

#[cfg(test)]
mod tests;
