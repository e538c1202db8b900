//! Every real-world example's flow against a private redis-server, through the global
//! cache as the examples use it: the first call queries the source, the next is served
//! from Redis, and after the mutation the source is queried again.
//!
//! The global cache lives for the process, so one test runs every flow in turn on one
//! server, emptying it between flows. A failing flow does not hide the others: all run,
//! and the test reports each one that went wrong.
#![cfg(feature = "redis")]
// Each example brings its own copy of `examples/common`, as it does when built alone.
#![allow(clippy::duplicate_mod)]

mod support;

// Each example is included whole; its `main` goes unused here.
#[allow(dead_code)]
#[path = "../examples/bill_providers.rs"]
mod bill_providers;
#[allow(dead_code)]
#[path = "../examples/daily_stats.rs"]
mod daily_stats;
#[allow(dead_code)]
#[path = "../examples/daily_stats_sync.rs"]
mod daily_stats_sync;
#[allow(dead_code)]
#[path = "../examples/exchange_rates.rs"]
mod exchange_rates;
#[allow(dead_code)]
#[path = "../examples/faqs.rs"]
mod faqs;
#[allow(dead_code)]
#[path = "../examples/investment_products.rs"]
mod investment_products;
#[allow(dead_code)]
#[path = "../examples/loan_products.rs"]
mod loan_products;
#[allow(dead_code)]
#[path = "../examples/transaction_history.rs"]
mod transaction_history;
#[allow(dead_code)]
#[path = "../examples/wallet_summary.rs"]
mod wallet_summary;

use cacheable::{CacheManager, Config};
use support::RedisServer;

/// Compares a flow's source-query count after each step with `expected`.
fn check(failures: &mut Vec<String>, example: &str, steps: Vec<(String, u32)>, expected: &[u32]) {
    let got: Vec<u32> = steps.iter().map(|(_, n)| *n).collect();
    if got != expected {
        let mut report = format!("{example}: source queries after each step");
        for (i, (label, n)) in steps.iter().enumerate() {
            let want = expected.get(i).map_or("-".to_string(), u32::to_string);
            report.push_str(&format!("\n  {label:<55} got {n:>2}, expected {want}"));
        }
        failures.push(report);
    }
}

#[tokio::test]
async fn every_example_queries_once_then_hits_until_its_mutation() {
    let server = RedisServer::start();
    CacheManager::init(Config::from_url(&server.url()).unwrap().prefix("paycore")).unwrap();
    let mut failures = Vec::new();
    let mut run = |example: &str, steps: Vec<(String, u32)>, expected: &[u32]| {
        check(&mut failures, example, steps, expected);
        // The values went to this server; the next flow starts on an empty one, as
        // each example starts clean.
        let stored: u64 = server.cli(&["DBSIZE"]).trim().parse().unwrap();
        if stored == 0 {
            failures.push(format!("{example}: nothing was stored in Redis"));
        }
        assert_eq!(server.cli(&["FLUSHALL"]).trim(), "OK");
    };

    // Each list is the source's query count after each step of the flow; the labels,
    // printed on failure, say which step is a miss and which a hit.
    run(
        "loan_products",
        loan_products::flow().await.queries(),
        &[1, 1, 2, 2, 3, 4, 4, 4, 4, 5],
    );
    run(
        "wallet_summary",
        wallet_summary::flow().await.queries(),
        &[1, 1, 2, 2, 4, 5, 5, 6, 7, 7],
    );
    run(
        "investment_products",
        investment_products::flow().await.queries(),
        &[1, 1, 2, 2, 2, 3, 4],
    );
    run(
        "faqs",
        faqs::flow().await.queries(),
        &[1, 1, 2, 2, 2, 2, 2, 3, 4],
    );
    run(
        "bill_providers",
        bill_providers::flow().await.queries(),
        &[1, 1, 2, 2, 2, 3, 4],
    );
    run(
        "exchange_rates",
        exchange_rates::flow().await.queries(),
        &[1, 1, 1, 2, 2],
    );
    run(
        "transaction_history",
        transaction_history::flow().await.queries(),
        &[1, 1, 2, 3, 3, 3, 3, 4, 5, 5],
    );
    run(
        "daily_stats",
        daily_stats::flow().await.queries(),
        &[1, 1, 2, 2, 2, 3, 3],
    );
    // The blocking twin, called from this async test as a blocking job would be.
    run(
        "daily_stats_sync",
        daily_stats_sync::flow().queries(),
        &[1, 1, 2, 2, 2, 3, 3],
    );

    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
