//! Stored forms: each codec and compression reads back what it wrote, or refuses it.

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

#[test]
fn a_retry_time_rides_beside_a_deadline_and_decodes_away() {
    let json = encode(&vec![1u32, 2], Format::default()).unwrap();
    assert_eq!(retry(&json), None);
    let retried = with_retry(&json, 99);
    assert_eq!((retry(&retried), deadline(&retried)), (Some(99), None));
    assert_eq!(decode::<Vec<u32>>(&retried).unwrap(), vec![1, 2]);
    // Each stamp kept when the other is set, and replaced rather than stacked.
    let both = with_deadline(&retried, 1_765_000_000_123);
    assert_eq!(
        (retry(&both), deadline(&both)),
        (Some(99), Some(1_765_000_000_123))
    );
    let again = with_retry(&both, 5);
    assert_eq!(
        (retry(&again), deadline(&again)),
        (Some(5), Some(1_765_000_000_123))
    );
    assert_eq!(again.len(), both.len());
    assert_eq!(decode::<Vec<u32>>(&again).unwrap(), vec![1, 2]);
    assert_eq!(weight(&again), json.len(), "the stamps weigh nothing");
    // A form cut short inside its stamps is refused, not read from the wrong offset.
    assert!(decode::<Vec<u32>>(&again[..MARKER.len() + 9]).is_err());
    #[cfg(feature = "msgpack")]
    {
        let format = Format {
            codec: Codec::MessagePack,
            compress_over: None,
        };
        let packed = encode(&vec![3u32], format).unwrap();
        let retried = with_retry(&with_deadline(&packed, 1), 2);
        assert_eq!(decode::<Vec<u32>>(&retried).unwrap(), vec![3]);
    }
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
