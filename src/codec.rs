//! How values are stored: as JSON text, and only when that text reads back as the value
//! that was computed.
//!
//! JSON cannot tell `Some(None)` from `None`, nor hold a `NaN` or an infinity (serde_json
//! writes them as `null`). A value that would come back different is refused here rather
//! than served wrong later: [`encode`] walks it first and names what JSON would lose.

use crate::error::{Error, ErrorKind};
use serde::de::DeserializeOwned;
use serde::ser::{self, Serialize};
use std::fmt;

/// What a cached value must be: stored as JSON (`Serialize + DeserializeOwned`), and kept
/// decoded in process memory by the near cache and the embedded store, where a hit costs a
/// clone (`Clone + Send + Sync + 'static`). Implemented for every such type.
pub trait CacheValue: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> CacheValue for T {}

/// The JSON text of `value`, or an error when it would not read back equal.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    if let Err(Lossy(why)) = value.serialize(Lossless) {
        return Err(Error::new(
            ErrorKind::Serialize,
            format!(
                "a value of type {} would not read back equal from JSON: {why}",
                std::any::type_name::<T>()
            ),
        ));
    }
    serde_json::to_vec(value).map_err(|e| {
        Error::with_source(ErrorKind::Serialize, "the value could not be serialized", e)
    })
}

/// Like [`encode`], and also proves that the text deserializes back into `T` (a type whose
/// `Deserialize` refuses its own `Serialize` output would otherwise be recomputed and
/// rewritten on every call).
pub(crate) fn encode_checked<T: Serialize + DeserializeOwned>(value: &T) -> Result<Vec<u8>, Error> {
    let bytes = encode(value)?;
    match serde_json::from_slice::<T>(&bytes) {
        Ok(_) => Ok(bytes),
        Err(e) => Err(Error::with_source(
            ErrorKind::Serialize,
            format!(
                "a value of type {} does not deserialize from its own JSON",
                std::any::type_name::<T>()
            ),
            e,
        )),
    }
}

/// The value in `bytes`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
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

/// Walks a value without writing it, failing on what serde_json would not write back
/// faithfully. Its own rules only: what serde_json refuses outright, it refuses later.
struct Lossless;

/// Answers whether a value serializes as JSON `null` (`None`, `()`, a unit struct, or a
/// newtype or `Some` around one), so that a `Some` around it would read back as `None`.
struct NullProbe;

fn null_like<T: Serialize + ?Sized>(value: &T) -> bool {
    value.serialize(NullProbe).unwrap_or(false)
}

fn non_finite(v: f64) -> Result<(), Lossy> {
    if v.is_finite() {
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
        non_finite(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Lossy> {
        non_finite(v)
    }
    fn serialize_none(self) -> Result<(), Lossy> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Lossy> {
        if null_like(value) {
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
        value.serialize(Lossless)
    }
    fn end(self) -> Result<(), Lossy> {
        Ok(())
    }
}

impl ser::SerializeTuple for Lossless {
    type Ok = ();
    type Error = Lossy;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Lossy> {
        value.serialize(Lossless)
    }
    fn end(self) -> Result<(), Lossy> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Lossless {
    type Ok = ();
    type Error = Lossy;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Lossy> {
        value.serialize(Lossless)
    }
    fn end(self) -> Result<(), Lossy> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Lossless {
    type Ok = ();
    type Error = Lossy;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Lossy> {
        value.serialize(Lossless)
    }
    fn end(self) -> Result<(), Lossy> {
        Ok(())
    }
}

impl ser::SerializeMap for Lossless {
    type Ok = ();
    type Error = Lossy;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Lossy> {
        key.serialize(Lossless)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Lossy> {
        value.serialize(Lossless)
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
        value.serialize(Lossless)
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
        value.serialize(Lossless)
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

    // A non-finite float is written as `null` too; `Lossless` refuses it on its own.
    fn serialize_f32(self, v: f32) -> Result<bool, Lossy> {
        Ok(!v.is_finite())
    }
    fn serialize_f64(self, v: f64) -> Result<bool, Lossy> {
        Ok(!v.is_finite())
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
        Ok(true)
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

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Day {
        count: u32,
        average: f64,
    }

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Unit;

    #[test]
    fn faithful_values_encode_as_plain_json() {
        assert_eq!(encode(&5).unwrap(), b"5");
        assert_eq!(encode(&None::<u32>).unwrap(), b"null");
        assert_eq!(encode(&Some(Some(3))).unwrap(), b"3");
        assert_eq!(encode(&vec![Some(1), None]).unwrap(), b"[1,null]");
        assert_eq!(
            encode_checked(&Day {
                count: 2,
                average: 1.5
            })
            .unwrap(),
            br#"{"count":2,"average":1.5}"#
        );
        assert_eq!(encode(&()).unwrap(), b"null");
    }

    #[test]
    fn values_that_would_read_back_different_are_refused() {
        for err in [
            encode(&Some(None::<u32>)).unwrap_err(),
            encode(&Some(())).unwrap_err(),
            encode(&Some(Unit)).unwrap_err(),
            encode(&Some(Some(None::<u8>))).unwrap_err(),
            encode(&f64::NAN).unwrap_err(),
            encode(&Some(f32::INFINITY)).unwrap_err(),
            encode(&Day {
                count: 0,
                average: f64::NAN,
            })
            .unwrap_err(),
            encode(&vec![1.0, f64::NEG_INFINITY]).unwrap_err(),
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
        let err = encode_checked(&Skips { needed: 1 }).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not deserialize from its own JSON"),
            "{err}"
        );
    }
}
