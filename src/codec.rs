//! How values are stored: as JSON text by default, or in another [`Codec`], compressed
//! when large, and only when the stored form reads back as the value that was computed.
//!
//! JSON cannot tell `Some(None)` from `None`, nor hold a `NaN` or an infinity (serde_json
//! writes them as `null`). MessagePack keeps floats as they are but still writes `Some(None)`
//! and `Some(())` as a bare nil, which reads back as `None`. A value that would come back
//! different is refused here rather than served wrong later: [`encode`] walks it first and
//! names what its codec would lose.
//!
//! The stored form describes itself, so that a reader decodes whatever any setting wrote
//! (a fleet can change codec or compression without a flush):
//!
//! - plain JSON text, as it is (the default: `redis-cli GET` shows it, a number stays `5`);
//! - anything else: the two bytes [`MARKER`] (`\0`, `0xCB`), one format byte, then the body.
//!   JSON text never starts with a NUL byte, and the lease and failure markers
//!   (`\0cacheable-…`) have `c` where this has `0xCB`. The format byte's low four bits name
//!   the codec (0 JSON, 1 MessagePack), its bit `0x10` says the body is an LZ4 block with
//!   its decoded length before it (4 bytes, little-endian), its bit `0x20` that a deadline
//!   comes first (8 bytes, little-endian, milliseconds since the Unix epoch: the end of the
//!   life [`Cacheable::ttl_from`](crate::Cacheable::ttl_from) gave the value, which no
//!   sliding read extends); other bits are refused, so a value written by a later format is
//!   a counted miss, never a wrong value.

use crate::error::{Error, ErrorKind};
use serde::de::DeserializeOwned;
use serde::ser::{self, Serialize};
use std::fmt;

/// What a cached value must be: stored by its [`Codec`] (`Serialize + DeserializeOwned`),
/// and kept decoded in process memory by the near cache and the embedded store, where a hit
/// costs a clone (`Clone + Send + Sync + 'static`). Implemented for every such type.
pub trait CacheValue: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> CacheValue for T {}

/// How values are written to the store ([`Config::codec`](crate::Config::codec)). Whatever
/// the setting, every reader decodes what any other wrote: the stored form says which codec
/// (and compression) wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// JSON text (the default): readable with `redis-cli GET`, written by hand if need be.
    #[default]
    Json,
    /// MessagePack through `rmp-serde`, structs as maps of field names (so a field added,
    /// removed or reordered across a deploy is a counted miss or a default, never a value in
    /// the wrong field). Smaller and faster to decode than JSON; keeps `NaN` and infinities.
    #[cfg(feature = "msgpack")]
    #[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
    MessagePack,
}

impl Codec {
    /// The name used by URLs and `CACHE_CODEC`: `json`, `msgpack`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => "msgpack",
        }
    }

    /// The codec named `name` (`json`, `msgpack` or `messagepack`, in any case).
    pub(crate) fn parse(name: &str) -> Result<Codec, Error> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("json") {
            return Ok(Codec::Json);
        }
        if name.eq_ignore_ascii_case("msgpack") || name.eq_ignore_ascii_case("messagepack") {
            #[cfg(feature = "msgpack")]
            return Ok(Codec::MessagePack);
            #[cfg(not(feature = "msgpack"))]
            return Err(Error::config(
                "codec `msgpack` needs cacheable's `msgpack` feature",
            ));
        }
        Err(Error::config(format!(
            "unknown codec `{name}` (known: json, msgpack)"
        )))
    }

    /// The low bits of the format byte.
    fn id(self) -> u8 {
        match self {
            Codec::Json => 0,
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => 1,
        }
    }

    /// What this codec writes in place of a value, when that would not read back equal.
    fn rules(self) -> Rules {
        match self {
            Codec::Json => Rules {
                finite_floats: true,
                unit_struct_is_null: true,
            },
            // rmp-serde writes a unit struct as an empty array, and floats as they are.
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => Rules {
                finite_floats: false,
                unit_struct_is_null: false,
            },
        }
    }
}

/// How a cache writes values: the codec, and the size over which an encoding is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Format {
    pub codec: Codec,
    /// Encodings longer than this many bytes are compressed (`None`: never).
    pub compress_over: Option<usize>,
}

/// Starts every stored value that is not plain JSON text; a format byte follows.
pub(crate) const MARKER: &[u8] = b"\0\xCB";

/// The format byte's bit for an LZ4-compressed body.
const LZ4: u8 = 0x10;

/// The format byte's bit for a deadline before the body.
const DEADLINE: u8 = 0x20;

/// `bytes` (a stored form) carrying `deadline_ms` (ms since the Unix epoch), in place of any
/// deadline they had.
pub(crate) fn with_deadline(bytes: &[u8], deadline_ms: u64) -> Vec<u8> {
    let (format_byte, body) = match bytes.strip_prefix(MARKER) {
        Some([format_byte, rest @ ..]) if format_byte & DEADLINE != 0 && rest.len() >= 8 => {
            (*format_byte, &rest[8..])
        }
        Some([format_byte, rest @ ..]) => (*format_byte | DEADLINE, rest),
        // Plain JSON text (or, never written, a bare marker): JSON behind the marker.
        _ => (Codec::Json.id() | DEADLINE, bytes),
    };
    let mut out = Vec::with_capacity(MARKER.len() + 9 + body.len());
    out.extend_from_slice(MARKER);
    out.push(format_byte);
    out.extend_from_slice(&deadline_ms.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The deadline a stored form carries, if any (see [`with_deadline`]).
pub(crate) fn deadline(bytes: &[u8]) -> Option<u64> {
    match bytes.strip_prefix(MARKER)? {
        [format_byte, rest @ ..] if format_byte & DEADLINE != 0 => {
            Some(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?))
        }
        _ => None,
    }
}

/// About how many bytes the decoded value of a stored form takes in memory: the length of
/// its uncompressed encoding (a compressed one counts what it decompresses to), which a
/// value decoded from it holds about as much of. The near cache weighs its entries by it.
pub(crate) fn weight(bytes: &[u8]) -> usize {
    let Some([format_byte, rest @ ..]) = bytes.strip_prefix(MARKER) else {
        return bytes.len();
    };
    let body = if format_byte & DEADLINE != 0 {
        rest.get(8..).unwrap_or_default()
    } else {
        rest
    };
    if format_byte & LZ4 != 0 {
        if let Some(claimed) = body.get(..4) {
            let claimed = u32::from_le_bytes(claimed.try_into().unwrap_or_default()) as usize;
            // As `decompress` bounds it: a larger claim is corrupt and never decoded.
            return claimed.min(body.len().saturating_mul(255).saturating_add(64));
        }
    }
    body.len()
}

/// The value's stored form under `format`, or an error when it would not read back equal.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, format: Format) -> Result<Vec<u8>, Error> {
    let rules = format.codec.rules();
    if let Err(Lossy(why)) = value.serialize(Lossless(rules)) {
        return Err(Error::new(
            ErrorKind::Serialize,
            format!(
                "a value of type {} would not read back equal from {}: {why}",
                std::any::type_name::<T>(),
                format.codec.name()
            ),
        ));
    }
    let body = match format.codec {
        Codec::Json => serde_json::to_vec(value).map_err(|e| {
            Error::with_source(ErrorKind::Serialize, "the value could not be serialized", e)
        })?,
        #[cfg(feature = "msgpack")]
        Codec::MessagePack => rmp_serde::to_vec_named(value).map_err(|e| {
            Error::with_source(ErrorKind::Serialize, "the value could not be serialized", e)
        })?,
    };
    Ok(frame(body, format))
}

/// The stored form of `body`: plain JSON as it is, anything else behind the marker.
fn frame(body: Vec<u8>, format: Format) -> Vec<u8> {
    let id = format.codec.id();
    #[cfg(feature = "compress")]
    if let Some(over) = format.compress_over {
        if body.len() > over {
            let packed = lz4_flex::block::compress_prepend_size(&body);
            // Kept only when it saves something: random bytes grow under any compressor.
            if packed.len() + MARKER.len() + 1 < body.len() {
                return with_marker(id | LZ4, &packed);
            }
        }
    }
    if id == Codec::Json.id() {
        body
    } else {
        with_marker(id, &body)
    }
}

fn with_marker(format_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MARKER.len() + 1 + body.len());
    out.extend_from_slice(MARKER);
    out.push(format_byte);
    out.extend_from_slice(body);
    out
}

/// Like [`encode`], and also proves that the stored form decodes back into `T` (a type
/// whose `Deserialize` refuses its own `Serialize` output would otherwise be recomputed and
/// rewritten on every call).
pub(crate) fn encode_checked<T: Serialize + DeserializeOwned>(
    value: &T,
    format: Format,
) -> Result<Vec<u8>, Error> {
    let bytes = encode(value, format)?;
    match decode::<T>(&bytes) {
        Ok(_) => Ok(bytes),
        Err(e) => Err(Error::with_source(
            ErrorKind::Serialize,
            format!(
                "a value of type {} does not deserialize from its own {}",
                std::any::type_name::<T>(),
                match format.codec {
                    Codec::Json => "JSON",
                    #[cfg(feature = "msgpack")]
                    Codec::MessagePack => "MessagePack",
                }
            ),
            e,
        )),
    }
}

/// Why stored bytes did not decode: the type changed, or the bytes were written by a
/// setting this build cannot read.
#[derive(Debug)]
pub(crate) struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// The value in `bytes`, whichever codec and compression wrote them.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let Some(rest) = bytes.strip_prefix(MARKER) else {
        return serde_json::from_slice(bytes).map_err(|e| DecodeError(e.to_string()));
    };
    let (&format_byte, body) = rest
        .split_first()
        .ok_or_else(|| DecodeError("a marked value without its format byte".into()))?;
    if format_byte & !(LZ4 | DEADLINE | 0x0F) != 0 {
        return Err(DecodeError(format!(
            "unknown value format 0x{format_byte:02x} (written by a later version?)"
        )));
    }
    let body = if format_byte & DEADLINE != 0 {
        body.get(8..)
            .ok_or_else(|| DecodeError("a value with a deadline too short to hold it".into()))?
    } else {
        body
    };
    let unpacked;
    let body = if format_byte & LZ4 != 0 {
        unpacked = decompress(body)?;
        &unpacked[..]
    } else {
        body
    };
    match format_byte & 0x0F {
        0 => serde_json::from_slice(body).map_err(|e| DecodeError(e.to_string())),
        1 => decode_msgpack(body),
        other => Err(DecodeError(format!(
            "unknown codec {other} (written by a later version?)"
        ))),
    }
}

#[cfg(feature = "compress")]
fn decompress(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    // LZ4 expands at most about 255 times: a larger claimed length is corrupt, and is
    // refused before anything that size is allocated.
    let (claimed, packed) = lz4_flex::block::uncompressed_size(body)
        .map_err(|e| DecodeError(format!("a compressed value: {e}")))?;
    if claimed > packed.len().saturating_mul(255).saturating_add(64) {
        return Err(DecodeError(format!(
            "a compressed value claims {claimed} bytes from {}",
            packed.len()
        )));
    }
    lz4_flex::block::decompress(packed, claimed)
        .map_err(|e| DecodeError(format!("a compressed value: {e}")))
}

#[cfg(not(feature = "compress"))]
fn decompress(_: &[u8]) -> Result<Vec<u8>, DecodeError> {
    Err(DecodeError(
        "the value is compressed: reading it needs cacheable's `compress` feature".into(),
    ))
}

#[cfg(feature = "msgpack")]
fn decode_msgpack<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    rmp_serde::from_slice(body).map_err(|e| DecodeError(e.to_string()))
}

#[cfg(not(feature = "msgpack"))]
fn decode_msgpack<T: DeserializeOwned>(_: &[u8]) -> Result<T, DecodeError> {
    Err(DecodeError(
        "the value is MessagePack: reading it needs cacheable's `msgpack` feature".into(),
    ))
}

/// What a codec cannot write back faithfully.
#[derive(Clone, Copy)]
struct Rules {
    /// NaN and infinities are lost (JSON writes them as `null`).
    finite_floats: bool,
    /// A unit struct is written as `null` (JSON), not as an empty array (MessagePack).
    unit_struct_is_null: bool,
}

/// What JSON would lose.
#[derive(Debug)]
struct Lossy(String);

impl fmt::Display for Lossy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Lossy {}

impl ser::Error for Lossy {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Lossy(msg.to_string())
    }
}

/// Walks a value without writing it, failing on what the codec would not write back
/// faithfully. Its own rules only: what the codec refuses outright, it refuses later.
struct Lossless(Rules);

/// Answers whether a value is written as a null (JSON `null`, MessagePack nil): `None`,
/// `()`, a unit struct in JSON, a non-finite float in JSON, or a newtype or `Some` around
/// one, so that a `Some` around it would read back as `None`.
struct NullProbe(Rules);

fn null_like<T: Serialize + ?Sized>(value: &T, rules: Rules) -> bool {
    value.serialize(NullProbe(rules)).unwrap_or(false)
}

fn non_finite(v: f64, rules: Rules) -> Result<(), Lossy> {
    if v.is_finite() || !rules.finite_floats {
        Ok(())
    } else {
        Err(Lossy(format!(
            "{v} has no JSON form (serde_json writes it as null)"
        )))
    }
}

macro_rules! ok_scalars {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, _: $t) -> Result<(), Lossy> {
            Ok(())
        }
    )*};
}

impl ser::Serializer for Lossless {
    type Ok = ();
    type Error = Lossy;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    ok_scalars!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_char: char,
        serialize_str: &str, serialize_bytes: &[u8]
    );

    fn serialize_f32(self, v: f32) -> Result<(), Lossy> {
        non_finite(f64::from(v), self.0)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Lossy> {
        non_finite(v, self.0)
    }
    fn serialize_none(self) -> Result<(), Lossy> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Lossy> {
        if null_like(value, self.0) {
            return Err(Lossy(
                "a `Some` around a null-like value (`Some(None)`, `Some(())`) reads back as `None`"
                    .into(),
            ));
        }
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Lossy> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Lossy> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Lossy> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Lossy> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Lossy> {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Lossy> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Lossy> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Lossy> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Lossy> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Lossy> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Lossy> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Lossy> {
        Ok(self)
    }
}

impl ser::SerializeSeq for Lossless {
    type Ok = ();
    type Error = Lossy;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Lossy> {
        value.serialize(Lossless(self.0))
    }
    fn end(self) -> Result<(), Lossy> {
        Ok(())
    }
}

impl ser::SerializeTuple for Lossless {
    type Ok = ();
    type Error = Lossy;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Lossy> {
        value.serialize(Lossless(self.0))
    }
    fn end(self) -> Result<(), Lossy> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Lossless {
    type Ok = ();
    type Error = Lossy;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Lossy> {
        value.serialize(Lossless(self.0))
    }
    fn end(self) -> Result<(), Lossy> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Lossless {
    type Ok = ();
    type Error = Lossy;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Lossy> {
        value.serialize(Lossless(self.0))
    }
    fn end(self) -> Result<(), Lossy> {
        Ok(())
    }
}

impl ser::SerializeMap for Lossless {
    type Ok = ();
    type Error = Lossy;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Lossy> {
        key.serialize(Lossless(self.0))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Lossy> {
        value.serialize(Lossless(self.0))
    }
    fn end(self) -> Result<(), Lossy> {
        Ok(())
    }
}

impl ser::SerializeStruct for Lossless {
    type Ok = ();
    type Error = Lossy;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Lossy> {
        value.serialize(Lossless(self.0))
    }
    fn end(self) -> Result<(), Lossy> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Lossless {
    type Ok = ();
    type Error = Lossy;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Lossy> {
        value.serialize(Lossless(self.0))
    }
    fn end(self) -> Result<(), Lossy> {
        Ok(())
    }
}

/// Every compound answers "not null"; the probe stops at the first call.
macro_rules! not_null {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, _: $t) -> Result<bool, Lossy> {
            Ok(false)
        }
    )*};
}

impl ser::Serializer for NullProbe {
    type Ok = bool;
    type Error = Lossy;
    type SerializeSeq = ser::Impossible<bool, Lossy>;
    type SerializeTuple = ser::Impossible<bool, Lossy>;
    type SerializeTupleStruct = ser::Impossible<bool, Lossy>;
    type SerializeTupleVariant = ser::Impossible<bool, Lossy>;
    type SerializeMap = ser::Impossible<bool, Lossy>;
    type SerializeStruct = ser::Impossible<bool, Lossy>;
    type SerializeStructVariant = ser::Impossible<bool, Lossy>;

    not_null!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_char: char,
        serialize_str: &str, serialize_bytes: &[u8]
    );

    // In JSON a non-finite float is written as `null` too; `Lossless` refuses it on its own.
    fn serialize_f32(self, v: f32) -> Result<bool, Lossy> {
        Ok(self.0.finite_floats && !v.is_finite())
    }
    fn serialize_f64(self, v: f64) -> Result<bool, Lossy> {
        Ok(self.0.finite_floats && !v.is_finite())
    }
    fn serialize_none(self) -> Result<bool, Lossy> {
        Ok(true)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<bool, Lossy> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<bool, Lossy> {
        Ok(true)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<bool, Lossy> {
        Ok(self.0.unit_struct_is_null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<bool, Lossy> {
        Ok(false)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<bool, Lossy> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<bool, Lossy> {
        Ok(false)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Lossy> {
        Err(Lossy(String::new()))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Lossy> {
        Err(Lossy(String::new()))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Lossy> {
        Err(Lossy(String::new()))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Lossy> {
        Err(Lossy(String::new()))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Lossy> {
        Err(Lossy(String::new()))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Lossy> {
        Err(Lossy(String::new()))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Lossy> {
        Err(Lossy(String::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_rides_along_any_stored_form_and_decodes_away() {
        let json = encode(&vec![1u32, 2], Format::default()).unwrap();
        assert_eq!(deadline(&json), None);
        let framed = with_deadline(&json, 1_765_000_000_123);
        assert_eq!(deadline(&framed), Some(1_765_000_000_123));
        assert_eq!(decode::<Vec<u32>>(&framed).unwrap(), vec![1, 2]);
        // Replaced, not stacked.
        let again = with_deadline(&framed, 7);
        assert_eq!(deadline(&again), Some(7));
        assert_eq!(again.len(), framed.len());
        assert_eq!(decode::<Vec<u32>>(&again).unwrap(), vec![1, 2]);
        assert_eq!(weight(&framed), json.len(), "the deadline weighs nothing");
    }

    #[cfg(feature = "compress")]
    #[test]
    fn a_compressed_value_weighs_what_it_decompresses_to() {
        let text = "a".repeat(20_000);
        let format = Format {
            codec: Codec::Json,
            compress_over: Some(1024),
        };
        let stored = encode(&text, format).unwrap();
        assert!(stored.len() < 1_000);
        assert_eq!(weight(&stored), serde_json::to_vec(&text).unwrap().len());
        let framed = with_deadline(&stored, 1);
        assert_eq!(weight(&framed), weight(&stored));
        assert_eq!(decode::<String>(&framed).unwrap(), text);
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct Day {
        count: u32,
        average: f64,
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct Unit;

    const JSON: Format = Format {
        codec: Codec::Json,
        compress_over: None,
    };

    /// Every format this build can write.
    fn formats() -> Vec<Format> {
        #[allow(unused_mut)]
        let mut codecs = vec![Codec::Json];
        #[cfg(feature = "msgpack")]
        codecs.push(Codec::MessagePack);
        let mut out = Vec::new();
        for codec in codecs {
            out.push(Format {
                codec,
                compress_over: None,
            });
            #[cfg(feature = "compress")]
            out.push(Format {
                codec,
                compress_over: Some(64),
            });
        }
        out
    }

    fn days(n: u32) -> Vec<Day> {
        (0..n)
            .map(|i| Day {
                count: i,
                average: f64::from(i) / 4.0,
            })
            .collect()
    }

    #[test]
    fn faithful_values_encode_as_plain_json() {
        assert_eq!(encode(&5, JSON).unwrap(), b"5");
        assert_eq!(encode(&None::<u32>, JSON).unwrap(), b"null");
        assert_eq!(encode(&Some(Some(3)), JSON).unwrap(), b"3");
        assert_eq!(encode(&vec![Some(1), None], JSON).unwrap(), b"[1,null]");
        assert_eq!(
            encode_checked(
                &Day {
                    count: 2,
                    average: 1.5
                },
                JSON
            )
            .unwrap(),
            br#"{"count":2,"average":1.5}"#
        );
        assert_eq!(encode(&(), JSON).unwrap(), b"null");
        assert_eq!(Format::default(), JSON, "the default is plain JSON");
    }

    #[test]
    fn values_that_would_read_back_different_are_refused() {
        for err in [
            encode(&Some(None::<u32>), JSON).unwrap_err(),
            encode(&Some(()), JSON).unwrap_err(),
            encode(&Some(Unit), JSON).unwrap_err(),
            encode(&Some(Some(None::<u8>)), JSON).unwrap_err(),
            encode(&f64::NAN, JSON).unwrap_err(),
            encode(&Some(f32::INFINITY), JSON).unwrap_err(),
            encode(
                &Day {
                    count: 0,
                    average: f64::NAN,
                },
                JSON,
            )
            .unwrap_err(),
            encode(&vec![1.0, f64::NEG_INFINITY], JSON).unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::Serialize, "{err}");
        }
    }

    #[test]
    fn a_type_that_does_not_read_its_own_json_is_refused() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Skips {
            #[serde(skip_serializing)]
            #[allow(dead_code)]
            needed: u32,
        }
        for format in formats() {
            let err = encode_checked(&Skips { needed: 1 }, format).unwrap_err();
            assert!(
                err.to_string()
                    .contains("does not deserialize from its own"),
                "{format:?}: {err}"
            );
        }
    }

    #[test]
    fn every_format_round_trips_and_any_reader_decodes_it() {
        // `decode` is the one reader, whatever the cache's own setting: it must decode what
        // each format wrote, small and large, to the value that was written.
        for format in formats() {
            for value in [days(0), days(1), days(300)] {
                let bytes = encode_checked(&value, format).unwrap();
                assert_eq!(decode::<Vec<Day>>(&bytes).unwrap(), value, "{format:?}");
            }
            let bytes = encode_checked(&5u32, format).unwrap();
            assert_eq!(decode::<u32>(&bytes).unwrap(), 5, "{format:?}");
            let text = encode_checked(&"héllo".to_owned(), format).unwrap();
            assert_eq!(decode::<String>(&text).unwrap(), "héllo", "{format:?}");
        }
    }

    #[cfg(feature = "compress")]
    #[test]
    fn only_values_over_the_threshold_that_shrink_are_compressed() {
        let format = Format {
            codec: Codec::Json,
            compress_over: Some(64),
        };
        // Small: plain JSON text, as without compression.
        assert_eq!(encode(&5, format).unwrap(), b"5");
        assert_eq!(
            encode(&days(1), format).unwrap(),
            encode(&days(1), JSON).unwrap()
        );
        // Large: behind the marker, LZ4, and much smaller.
        let plain = encode(&days(300), JSON).unwrap();
        let packed = encode(&days(300), format).unwrap();
        assert_eq!(&packed[..3], b"\0\xCB\x10");
        assert!(
            packed.len() * 3 < plain.len(),
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        // Over the threshold but incompressible: stored as it is.
        let noise: Vec<u32> = (0..200u32)
            .map(|i| i.wrapping_mul(2_654_435_761).rotate_left(i % 32))
            .collect();
        let noise_bytes: Vec<u8> = noise.iter().flat_map(|n| n.to_le_bytes()).collect();
        let text: String = noise_bytes
            .iter()
            .map(|b| char::from(b'!' + b % 90))
            .collect();
        let stored = encode(&text, format).unwrap();
        assert!(stored.len() <= encode(&text, JSON).unwrap().len());
        assert_eq!(decode::<String>(&stored).unwrap(), text);
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn messagepack_keeps_floats_and_refuses_what_it_would_lose() {
        let mp = Format {
            codec: Codec::MessagePack,
            compress_over: None,
        };
        // JSON would lose these; MessagePack keeps them.
        let nan = decode::<f64>(&encode_checked(&f64::NAN, mp).unwrap()).unwrap();
        assert!(nan.is_nan());
        let inf = encode_checked(&Some(f32::INFINITY), mp).unwrap();
        assert_eq!(decode::<Option<f32>>(&inf).unwrap(), Some(f32::INFINITY));
        let unit = encode_checked(&Some(Unit), mp).unwrap();
        assert_eq!(decode::<Option<Unit>>(&unit).unwrap(), Some(Unit));
        // It writes these as a bare nil, which reads back as `None`: refused.
        for err in [
            encode(&Some(None::<u32>), mp).unwrap_err(),
            encode(&Some(()), mp).unwrap_err(),
            encode(&vec![Some(Some(None::<u8>))], mp).unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::Serialize, "{err}");
            assert!(err.to_string().contains("msgpack"), "{err}");
        }
        // Not plain JSON: behind the marker, codec 1.
        assert_eq!(&encode(&5u8, mp).unwrap()[..], b"\0\xCB\x01\x05");
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn messagepack_names_fields_so_a_changed_struct_is_a_miss_not_a_wrong_value() {
        #[derive(serde::Serialize)]
        struct Before {
            fee: u32,
            amount: u32,
        }
        // The same fields, reordered across a deploy: each lands in its own field.
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Reordered {
            amount: u32,
            fee: u32,
        }
        // A field renamed: no value at all, rather than `fee` read as `charge`.
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Renamed {
            charge: u32,
            amount: u32,
        }
        let mp = Format {
            codec: Codec::MessagePack,
            compress_over: None,
        };
        let bytes = encode(
            &Before {
                fee: 1,
                amount: 500,
            },
            mp,
        )
        .unwrap();
        assert_eq!(
            decode::<Reordered>(&bytes).unwrap(),
            Reordered {
                amount: 500,
                fee: 1
            }
        );
        assert!(decode::<Renamed>(&bytes).is_err());
    }

    #[test]
    fn foreign_or_corrupt_marked_bytes_are_errors_not_values() {
        // An unknown format byte (a later version), a marker with nothing after it, an
        // unknown codec: each a decode error, which callers count as a miss.
        for bytes in [&b"\0\xCB\x80x"[..], b"\0\xCB", b"\0\xCB\x07\x05"] {
            assert!(decode::<u32>(bytes).is_err(), "{bytes:?}");
        }
        // An LZ4 length claim far past what LZ4 can expand to: refused before allocating.
        let mut huge = b"\0\xCB\x10".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(b"\x10a");
        assert!(decode::<String>(&huge).is_err());
        // Without the feature, a compressed value is a clear error too.
        // (An LZ4 block of one literal, the JSON `5`.)
        let five = decode::<u32>(b"\0\xCB\x10\x01\0\0\0\x105");
        #[cfg(not(feature = "compress"))]
        assert!(five.unwrap_err().to_string().contains("`compress` feature"));
        #[cfg(feature = "compress")]
        assert_eq!(five.unwrap(), 5);
        #[cfg(not(feature = "msgpack"))]
        assert!(decode::<u8>(b"\0\xCB\x01\x05")
            .unwrap_err()
            .to_string()
            .contains("`msgpack` feature"));
    }
}
