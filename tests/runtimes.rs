//! One cache used from one runtime after another: the async connection follows the caller
//! rather than failing once the runtime that first drove it is gone.
#![cfg(feature = "redis")]

mod support;

use cacheable::{ctx, Cache, Cacheable, Config};
use support::RedisServer;

#[test]
fn a_cache_outlives_the_runtime_that_first_used_it() {
    let server = RedisServer::start();
    let cache = Cache::new(Config::from_url(&server.url()).unwrap().prefix("rt")).unwrap();
    for round in 0..3 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // A write the user asked for: it must not be lost to the previous runtime's
            // dead connection.
            cache
                .set_async(&format!("k{round}"), &round, 60)
                .await
                .unwrap();
            let v: u32 = Cacheable::new("v:<<round>>")
                .on(&cache)
                .run_async(ctx! { round }, || async move { round * 10 })
                .await;
            assert_eq!(v, round * 10);
        });
        drop(runtime);
    }
    assert_eq!(cache.count("*").unwrap(), 6);
    assert_eq!(cache.stats().errors, 0, "{:?}", cache.stats());
}
