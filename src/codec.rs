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
//!   sliding read extends), its bit `0x40` that a retry time comes next (8 bytes likewise:
//!   until then, a value that a failed computation put back is answered with and the source
//!   left alone, the fail-safe throttle); other bits are refused, so a value written by a
//!   later format is a counted miss, never a wrong value.

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

/// The format byte's bit for a retry time before the body, after the deadline if any.
const RETRY: u8 = 0x40;

/// A marked stored form's header: its format byte and the stamps the bits announce.
struct Header {
    format_byte: u8,
    deadline: Option<u64>,
    retry: Option<u64>,
}

impl Header {
    /// The header of `bytes` and the body after it; `None` for plain JSON text (or a marked
    /// form too short for the stamps it announces).
    fn split(bytes: &[u8]) -> Option<(Header, &[u8])> {
        let (&format_byte, mut rest) = bytes.strip_prefix(MARKER)?.split_first()?;
        let mut stamp = |bit: u8| -> Option<Option<u64>> {
            if format_byte & bit == 0 {
                return Some(None);
            }
            let (ms, after) = rest.split_first_chunk::<8>()?;
            rest = after;
            Some(Some(u64::from_le_bytes(*ms)))
        };
        let deadline = stamp(DEADLINE)?;
        let retry = stamp(RETRY)?;
        let header = Header {
            format_byte,
            deadline,
            retry,
        };
        Some((header, rest))
    }

    /// `body` (plain JSON text when `bytes` had no header) with `change` made to the
    /// header of `bytes`.
    fn restamp(bytes: &[u8], change: impl FnOnce(&mut Header)) -> Vec<u8> {
        let (mut header, body) = Header::split(bytes).unwrap_or((
            Header {
                format_byte: Codec::Json.id(),
                deadline: None,
                retry: None,
            },
            bytes,
        ));
        change(&mut header);
        let mut format_byte = header.format_byte & !(DEADLINE | RETRY);
        let mut out = Vec::with_capacity(MARKER.len() + 17 + body.len());
        out.extend_from_slice(MARKER);
        out.push(0);
        for (bit, stamp) in [(DEADLINE, header.deadline), (RETRY, header.retry)] {
            if let Some(ms) = stamp {
                format_byte |= bit;
                out.extend_from_slice(&ms.to_le_bytes());
            }
        }
        out[MARKER.len()] = format_byte;
        out.extend_from_slice(body);
        out
    }
}

/// `bytes` (a stored form) carrying `deadline_ms` (ms since the Unix epoch), in place of any
/// deadline they had.
pub(crate) fn with_deadline(bytes: &[u8], deadline_ms: u64) -> Vec<u8> {
    Header::restamp(bytes, |h| h.deadline = Some(deadline_ms))
}

/// The deadline a stored form carries, if any (see [`with_deadline`]).
pub(crate) fn deadline(bytes: &[u8]) -> Option<u64> {
    Header::split(bytes)?.0.deadline
}

/// `bytes` (a value past its TTL that a failed computation put back) carrying `retry_ms`
/// (ms since the Unix epoch): until then, readers answer with it and leave the source
/// alone (the fail-safe throttle).
pub(crate) fn with_retry(bytes: &[u8], retry_ms: u64) -> Vec<u8> {
    Header::restamp(bytes, |h| h.retry = Some(retry_ms))
}

/// The retry time a stored form carries, if any (see [`with_retry`]).
pub(crate) fn retry(bytes: &[u8]) -> Option<u64> {
    Header::split(bytes)?.0.retry
}

/// About how many bytes the decoded value of a stored form takes in memory: the length of
/// its uncompressed encoding (a compressed one counts what it decompresses to), which a
/// value decoded from it holds about as much of. The near cache weighs its entries by it.
pub(crate) fn weight(bytes: &[u8]) -> usize {
    let Some((Header { format_byte, .. }, body)) = Header::split(bytes) else {
        return bytes.len();
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
    let format_byte = *rest
        .first()
        .ok_or_else(|| DecodeError("a marked value without its format byte".into()))?;
    if format_byte & !(LZ4 | DEADLINE | RETRY | 0x0F) != 0 {
        return Err(DecodeError(format!(
            "unknown value format 0x{format_byte:02x} (written by a later version?)"
        )));
    }
    let (_, body) = Header::split(bytes)
        .ok_or_else(|| DecodeError("a value too short for the stamps it announces".into()))?;
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
mod tests;
