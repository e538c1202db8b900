//! The seed README's Example 6, Currency Exchange Rates: every active currency's rate,
//! cached for 30 minutes; a rate update invalidates the rates and every wallet summary,
//! since summaries are priced in USD.
//!
//! ```text
//! cargo run --example exchange_rates
//! CACHE_URL=redis://127.0.0.1:6379/1 CACHE_DEBUG=1 cargo run --example exchange_rates
//! ```

mod common;

use cacheable::{cache_fn, CacheManager};
use common::{Source, Trace};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrencyRate {
    pub name: String,
    pub symbol: String,
    pub exchange_rate_usd: f64,
    pub is_crypto: bool,
}

pub struct Currency {
    code: String,
    rate: CurrencyRate,
    is_active: bool,
}

pub struct Tables {
    currencies: Vec<Currency>,
}

pub type Db = Source<Tables>;

cache_fn! {
    /// Keyed by currency code; a `BTreeMap`, so the JSON in Redis is in code order.
    #[cache(key = "currencies:rates:all", ttl = 1800)]
    pub async fn get_all_exchange_rates(db: &Db) -> BTreeMap<String, CurrencyRate> {
        db.query_async(|t| {
            t.currencies
                .iter()
                .filter(|c| c.is_active)
                .map(|c| (c.code.clone(), c.rate.clone()))
                .collect()
        })
        .await
    }

    /// Returns the rates it applied. Not a `Result`: the invalidation always follows.
    #[invalidate("currencies:rates:*", "wallets:summary:*")]
    pub async fn update_exchange_rates(db: &Db, rates: &BTreeMap<&str, f64>) -> Vec<String> {
        db.write_async(|t| {
            let mut applied = Vec::new();
            for (code, rate) in rates {
                if let Some(c) = t.currencies.iter_mut().find(|c| c.code == *code) {
                    c.rate.exchange_rate_usd = *rate;
                    applied.push(c.code.clone());
                }
            }
            applied
        })
        .await
    }
}

fn seed() -> Tables {
    let currency = |code: &str, name: &str, symbol: &str, rate, is_crypto| Currency {
        code: code.into(),
        rate: CurrencyRate {
            name: name.into(),
            symbol: symbol.into(),
            exchange_rate_usd: rate,
            is_crypto,
        },
        is_active: true,
    };
    Tables {
        currencies: vec![
            currency("NGN", "Naira", "₦", 0.00065, false),
            currency("KES", "Shilling", "KSh", 0.0077, false),
            currency("USDT", "Tether", "₮", 1.0, true),
        ],
    }
}

pub async fn flow() -> Trace {
    let db = Db::new(seed());
    let mut trace = Trace::new("exchange_rates");

    get_all_exchange_rates(&db).await;
    trace.step("get_all_exchange_rates: miss", db.queries());
    get_all_exchange_rates(&db).await;
    trace.step("get_all_exchange_rates again: hit", db.queries());

    // Wallet summaries cached by Example 2 go too.
    for user_id in [1, 2] {
        CacheManager::set_async(&format!("wallets:summary:{user_id}"), &"…", 120)
            .await
            .expect("set");
    }
    let rates = BTreeMap::from([("NGN", 0.00062), ("XYZ", 9.0)]);
    let applied = update_exchange_rates(&db, &rates).await;
    assert_eq!(applied, ["NGN"]);
    trace.step("update_exchange_rates(NGN): invalidates", db.queries());
    let summaries = CacheManager::count_async("wallets:summary:*")
        .await
        .expect("count");
    assert_eq!(summaries, 0, "wallet summaries were invalidated too");
    let fresh = get_all_exchange_rates(&db).await;
    trace.step("get_all_exchange_rates: miss", db.queries());
    assert_eq!(
        fresh["NGN"].exchange_rate_usd, 0.00062,
        "the new rate is served"
    );
    get_all_exchange_rates(&db).await;
    trace.step("get_all_exchange_rates again: hit", db.queries());
    trace
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    flow().await.print();
    Ok(())
}
