//! Values on the wire: each codec, with and without compression, round-trips; each reads
//! what the others wrote (a fleet can switch settings without a flush); the default stays
//! plain JSON that `redis-cli GET` shows as it is; and whatever the codec, a cached value
//! equals the computed one or it is not stored.

mod support;

#[cfg(any(feature = "msgpack", feature = "redis"))]
use cacheable::Codec;
use cacheable::{ctx, Cache, Cacheable, Config};
use serde::{Deserialize, Serialize};
use std::cell::Cell;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Transaction {
    id: u64,
    amount_minor: i64,
    currency: String,
    reference: String,
    fee: Option<f64>,
}

/// A list of `n` transactions; 300 make about 30 KB of JSON.
fn transactions(n: u64) -> Vec<Transaction> {
    (0..n)
        .map(|i| Transaction {
            id: 1_000 + i,
            amount_minor: (i as i64 * 7_919) % 1_000_000,
            currency: ["NGN", "KES", "USD"][(i % 3) as usize].to_owned(),
            reference: format!("TRX-{:08x}", i.wrapping_mul(2_654_435_761)),
            fee: (i % 4 != 0).then(|| i as f64 / 8.0),
        })
        .collect()
}

/// A setting: a name, and what it does to a configuration.
type Setting = (&'static str, fn(Config) -> Config);

/// Every setting this build can write with.
fn settings() -> Vec<Setting> {
    #[allow(unused_mut)]
    let mut out: Vec<Setting> = vec![("json", |c| c)];
    #[cfg(feature = "compress")]
    out.push(("json+lz4", |c| c.compress_over(256)));
    #[cfg(feature = "msgpack")]
    out.push(("msgpack", |c| c.codec(Codec::MessagePack)));
    #[cfg(all(feature = "msgpack", feature = "compress"))]
    out.push(("msgpack+lz4", |c| {
        c.codec(Codec::MessagePack).compress_over(256)
    }));
    out
}

/// Reads `key` through `cache`, computing `value` on a miss; how many computations ran.
fn read<T: cacheable::CacheValue>(cache: &Cache, key: &str, value: &T, calls: &Cell<u32>) -> T {
    Cacheable::new("v:<<key>>")
        .on(cache)
        .run(ctx! { key = key.to_owned() }, || {
            calls.set(calls.get() + 1);
            value.clone()
        })
}

#[test]
fn every_setting_round_trips_on_the_embedded_store() {
    for (name, setting) in settings() {
        let cache = Cache::new(setting(Config::memory())).unwrap();
        let calls = Cell::new(0);
        let small = 5u32;
        let large = transactions(300);
        assert_eq!(read(&cache, "small", &small, &calls), 5, "{name}");
        assert_eq!(read(&cache, "large", &large, &calls), large, "{name}");
        assert_eq!(read(&cache, "small", &small, &calls), 5, "{name}");
        assert_eq!(read(&cache, "large", &large, &calls), large, "{name}");
        assert_eq!(calls.get(), 2, "{name}: the second reads are hits");
        // The stored bytes decode too (the manual API reads them, not the decoded copy).
        assert_eq!(cache.get::<u32>("v:small").unwrap(), Some(5), "{name}");
        assert_eq!(
            cache.get::<Vec<Transaction>>("v:large").unwrap(),
            Some(large.clone()),
            "{name}"
        );
        cache.set("manual", &large, 60).unwrap();
        assert_eq!(
            cache.get::<Vec<Transaction>>("manual").unwrap(),
            Some(large),
            "{name}"
        );
        assert_eq!(cache.stats().decode_errors, 0, "{name}");
    }
}

#[test]
fn a_value_that_would_not_read_back_equal_is_never_stored_whatever_the_codec() {
    for (name, setting) in settings() {
        let cache = Cache::new(setting(Config::memory())).unwrap();
        let calls = Cell::new(0);
        // `Some(None)` reads back as `None` in JSON and in MessagePack alike.
        for _ in 0..2 {
            let v = read(&cache, "nested", &Some(None::<u32>), &calls);
            assert_eq!(v, Some(None), "{name}");
        }
        assert_eq!(calls.get(), 2, "{name}: computed each time, never cached");
        // No value at the key (at most the brief marker of a computation that stored none).
        assert_eq!(
            cache.get::<Option<u32>>("v:nested").unwrap(),
            None,
            "{name}"
        );
        assert!(cache.set("k", &Some(None::<u32>), 60).is_err(), "{name}");
    }
}

#[cfg(feature = "msgpack")]
#[test]
fn messagepack_stores_what_json_cannot() {
    let json = Cache::new(Config::memory()).unwrap();
    let mp = Cache::new(Config::memory().codec(Codec::MessagePack)).unwrap();
    let (json_calls, mp_calls) = (Cell::new(0), Cell::new(0));
    for _ in 0..2 {
        assert!(read(&json, "nan", &f64::NAN, &json_calls).is_nan());
        assert!(read(&mp, "nan", &f64::NAN, &mp_calls).is_nan());
    }
    assert_eq!(json_calls.get(), 2, "JSON has no NaN: not cached");
    assert_eq!(mp_calls.get(), 1, "MessagePack keeps it: cached");
    assert!(mp.get::<f64>("v:nan").unwrap().unwrap().is_nan());
}

#[cfg(feature = "redis")]
mod on_redis {
    use super::*;
    use support::RedisServer;

    fn cache(server: &RedisServer, setting: fn(Config) -> Config) -> Cache {
        Cache::new(setting(
            Config::from_url(&server.url()).unwrap().prefix("wire"),
        ))
        .unwrap()
    }

    fn raw(server: &RedisServer, key: &str) -> Vec<u8> {
        let mut c = server.client();
        redis::cmd("GET").arg(key).query(&mut c).unwrap()
    }

    /// A sliding read pushes a MessagePack value's expiry like a JSON one's: its bytes
    /// start with a NUL too (`\0` 0xCB), but they are no lease marker (`\0c…`). On one
    /// server (`PTTL` + `GETEX`) and on the cluster (the script).
    #[cfg(feature = "msgpack")]
    fn sliding_pushes_a_messagepack_value(cache: &Cache) {
        use cacheable::{ctx, Cacheable, KeyTtl, Outcome};
        use std::time::Duration;
        let call = |ttl: u64, sliding: bool| {
            let mut outcome = Outcome::Miss;
            let v = Cacheable::new("slide")
                .ttl(Duration::from_secs(ttl))
                .sliding(sliding)
                .on(cache)
                .outcome(&mut outcome)
                .run(ctx! {}, || 7u32);
            (v, outcome)
        };
        assert_eq!(call(2, false), (7, Outcome::Miss));
        let left = || match cache.ttl("slide").unwrap() {
            KeyTtl::Expires(left) => left,
            other => panic!("{other:?}"),
        };
        assert!(left() <= Duration::from_secs(2), "{:?}", left());
        assert_eq!(call(60, true), (7, Outcome::Hit));
        assert!(left() > Duration::from_secs(50), "pushed: {:?}", left());
        assert_eq!(cache.stats().sliding_hits, 1);
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn sliding_pushes_a_messagepack_value_on_redis() {
        let server = RedisServer::start();
        let cache = cache(&server, |c| c.codec(Codec::MessagePack));
        sliding_pushes_a_messagepack_value(&cache);
        assert_eq!(&raw(&server, "wire:slide")[..2], b"\0\xCB");
    }

    #[cfg(all(feature = "msgpack", feature = "cluster"))]
    #[test]
    fn sliding_pushes_a_messagepack_value_on_the_cluster() {
        let cluster = support::RedisCluster::start();
        let cache = Cache::new(
            Config::from_url(&cluster.url())
                .unwrap()
                .prefix("wire")
                .codec(Codec::MessagePack),
        )
        .unwrap();
        sliding_pushes_a_messagepack_value(&cache);
    }

    #[test]
    fn the_default_stays_plain_json_that_redis_cli_shows() {
        let server = RedisServer::start();
        let cache = cache(&server, |c| c);
        assert_eq!(cache.config().get_codec(), Codec::Json);
        assert_eq!(cache.config().get_compress_over(), None);
        let calls = Cell::new(0);
        read(&cache, "n", &5u32, &calls);
        let large = transactions(300);
        read(&cache, "large", &large, &calls);
        assert_eq!(server.cli(&["GET", "wire:v:n"]).trim(), "5");
        let text = server.cli(&["GET", "wire:v:large"]);
        assert!(
            text.starts_with(r#"[{"id":1000,"amount_minor":0,"#),
            "{text:.80}"
        );
        assert_eq!(
            serde_json::from_str::<Vec<Transaction>>(text.trim()).unwrap(),
            large
        );
        // Compression leaves values under its threshold as they were: a number stays `5`.
        #[cfg(feature = "compress")]
        {
            let compressing = cache_with_prefix(&server, "wire2", |c| c.compress_over(256));
            read(&compressing, "n", &5u32, &calls);
            assert_eq!(server.cli(&["GET", "wire2:v:n"]).trim(), "5");
        }
    }

    #[cfg(feature = "compress")]
    fn cache_with_prefix(
        server: &RedisServer,
        prefix: &str,
        setting: fn(Config) -> Config,
    ) -> Cache {
        Cache::new(setting(
            Config::from_url(&server.url()).unwrap().prefix(prefix),
        ))
        .unwrap()
    }

    #[test]
    fn every_setting_reads_what_every_other_wrote() {
        let server = RedisServer::start();
        let large = transactions(300);
        let plain_len = serde_json::to_vec(&large).unwrap().len();
        for (writer_name, writer_setting) in settings() {
            let writer = cache(&server, writer_setting);
            let calls = Cell::new(0);
            read(&writer, "n", &5u32, &calls);
            read(&writer, "large", &large, &calls);
            assert_eq!(calls.get(), 2);
            let stored = raw(&server, "wire:v:large");
            match writer_name {
                "json" => assert_eq!(stored.len(), plain_len),
                "msgpack" => {
                    assert_eq!(&stored[..3], b"\0\xCB\x01");
                    assert!(stored.len() < plain_len);
                }
                _ => {
                    // Compressed: the marker, the LZ4 bit, and under half the JSON.
                    assert_eq!(&stored[..2], b"\0\xCB", "{writer_name}");
                    assert_eq!(stored[2] & 0x10, 0x10, "{writer_name}");
                    assert!(
                        stored.len() * 2 < plain_len,
                        "{writer_name}: {}",
                        stored.len()
                    );
                }
            }
            for (reader_name, reader_setting) in settings() {
                let reader = cache(&server, reader_setting);
                let never = Cell::new(0);
                let what = format!("{reader_name} reading {writer_name}");
                assert_eq!(read(&reader, "n", &0u32, &never), 5, "{what}");
                assert_eq!(
                    read(&reader, "large", &Vec::<Transaction>::new(), &never),
                    large,
                    "{what}"
                );
                assert_eq!(never.get(), 0, "{what}: hits, nothing recomputed");
                let stats = reader.stats();
                assert_eq!((stats.hits, stats.decode_errors), (2, 0), "{what}");
            }
            // A write of the same key by each setting, read back by the manual API.
            writer.set("manual", &large, 60).unwrap();
            for (reader_name, reader_setting) in settings() {
                let got = cache(&server, reader_setting).get::<Vec<Transaction>>("manual");
                assert_eq!(
                    got.unwrap(),
                    Some(large.clone()),
                    "{reader_name} ← {writer_name}"
                );
            }
            server.cli(&["DEL", "wire:v:n", "wire:v:large", "wire:manual"]);
        }
    }

    #[test]
    fn the_near_cache_keeps_decoded_values_whatever_the_codec() {
        let server = RedisServer::start();
        let large = transactions(300);
        for (name, setting) in settings() {
            let near = cache(&server, |c| c.near_cache(100));
            let near = Cache::new(setting(near.config().clone())).unwrap();
            let calls = Cell::new(0);
            assert_eq!(read(&near, name, &large, &calls), large);
            // Tracking is confirmed asynchronously: read until a hit comes from memory.
            support::first_near_hit(&near, std::time::Duration::from_secs(5), || {
                assert_eq!(read(&near, name, &large, &calls), large, "{name}");
            });
            assert_eq!(calls.get(), 1, "{name}");
            assert_eq!(near.stats().decode_errors, 0, "{name}");
        }
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn a_changed_struct_is_a_counted_miss_never_a_wrong_value() {
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
        struct Before {
            fee: u32,
            amount: u32,
        }
        // A deploy renamed a field of the same type.
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
        struct After {
            charge: u32,
            amount: u32,
        }
        let server = RedisServer::start();
        let old = cache(&server, |c| c.codec(Codec::MessagePack));
        let new = cache(&server, |c| c.codec(Codec::MessagePack));
        let calls = Cell::new(0);
        read(
            &old,
            "t",
            &Before {
                fee: 1,
                amount: 500,
            },
            &calls,
        );
        let fresh = After {
            charge: 2,
            amount: 700,
        };
        assert_eq!(read(&new, "t", &fresh, &calls), fresh);
        assert_eq!(calls.get(), 2, "recomputed, not read into the wrong field");
        let stats = new.stats();
        assert_eq!((stats.misses, stats.decode_errors), (1, 1));
        // And replaced: the next read is a hit of the new shape.
        assert_eq!(
            read(
                &new,
                "t",
                &After {
                    charge: 0,
                    amount: 0
                },
                &calls
            ),
            fresh
        );
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn url_parameters_choose_the_format_and_reach_no_further() {
        let server = RedisServer::start();
        let codec = if cfg!(feature = "msgpack") {
            "msgpack"
        } else {
            "json"
        };
        #[allow(unused_mut)]
        let mut url = format!("{}?codec={codec}", server.url());
        #[cfg(feature = "compress")]
        url.push_str("&compress_over=1024");
        let config = Config::from_url(&url).unwrap().prefix("url");
        #[cfg(feature = "msgpack")]
        assert_eq!(config.get_codec(), Codec::MessagePack);
        #[cfg(feature = "compress")]
        assert_eq!(config.get_compress_over(), Some(1024));
        // The store connects: the parameters were taken out of the URL given to Redis.
        let cache = Cache::new(config).unwrap();
        let calls = Cell::new(0);
        read(&cache, "k", &5u32, &calls);
        read(&cache, "k", &5u32, &calls);
        assert_eq!(calls.get(), 1);
        assert!(!raw(&server, "url:v:k").is_empty());
    }
}

#[test]
fn unknown_or_unbuilt_settings_are_config_errors() {
    for url in [
        "memory://?codec=xml",
        "memory://?compress_over=lots",
        "redis://127.0.0.1:1/?codec=bson",
    ] {
        let err = Config::from_url(url).unwrap_err();
        assert_eq!(err.kind(), cacheable::ErrorKind::Config, "{url}");
    }
    let msgpack = Config::from_url("memory://?codec=msgpack&max_entries=10");
    #[cfg(feature = "msgpack")]
    assert_eq!(msgpack.unwrap().get_codec(), Codec::MessagePack);
    #[cfg(not(feature = "msgpack"))]
    assert!(msgpack
        .unwrap_err()
        .to_string()
        .contains("`msgpack` feature"));
    let compress = Config::from_url("memory://?compress_over=1024");
    #[cfg(feature = "compress")]
    assert_eq!(compress.unwrap().get_compress_over(), Some(1024));
    #[cfg(not(feature = "compress"))]
    assert!(compress
        .unwrap_err()
        .to_string()
        .contains("`compress` feature"));
}

#[test]
fn the_environment_chooses_the_format() {
    use std::process::Command;
    match std::env::var("CACHEABLE_CODEC_CHILD").as_deref() {
        Ok("set") => {
            let config = Config::from_env().unwrap();
            #[cfg(feature = "msgpack")]
            assert_eq!(config.get_codec(), Codec::MessagePack);
            #[cfg(feature = "compress")]
            assert_eq!(config.get_compress_over(), Some(2048));
            let _ = config;
            return;
        }
        Ok("bad") => {
            let err = Config::from_env().unwrap_err();
            assert!(err.to_string().contains("CACHE_CODEC"), "{err}");
            return;
        }
        _ => {}
    }
    let codec = if cfg!(feature = "msgpack") {
        "msgpack"
    } else {
        "json"
    };
    for (mode, codec, over) in [("set", codec, "2048"), ("bad", "yaml", "")] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "the_environment_chooses_the_format",
            "--nocapture",
        ])
        .env("CACHEABLE_CODEC_CHILD", mode)
        .env_remove("CACHE_URL")
        .env("CACHE_CODEC", codec);
        if cfg!(feature = "compress") && !over.is_empty() {
            cmd.env("CACHE_COMPRESS_OVER", over);
        } else {
            cmd.env_remove("CACHE_COMPRESS_OVER");
        }
        support::assert_child_passes(&mut cmd, mode);
    }
}
