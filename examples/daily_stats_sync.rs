//! The seed README's Example 8, Dashboard Statistics, in blocking code (a report job or
//! a CLI without an async runtime): `daily_stats.rs` with plain `fn`s. The same keys, so
//! the two share cached values.
//!
//! ```text
//! cargo run --example daily_stats_sync
//! CACHE_URL=redis://127.0.0.1:6379/1 CACHE_DEBUG=1 cargo run --example daily_stats_sync
//! ```

mod common;

#[path = "common/daily_stats_data.rs"]
mod data;

use cacheable::cache_fn;
use common::{DbError, Trace};
use data::{aggregate, check_date, seed};
pub use data::{DailyStats, Db};

cache_fn! {
    /// `date` is ISO 8601 (`2025-01-15`); anything else is an `Err`, never cached.
    #[cache(key = "admin:stats:daily:<<date>>", ttl = 600)]
    pub fn get_daily_stats(db: &Db, date: &str) -> Result<DailyStats, DbError> {
        check_date(date)?;
        Ok(db.query(|t| aggregate(t, date)))
    }

    /// Late settlements change that day's figures, and no other day's.
    #[invalidate("admin:stats:daily:<<date>>")]
    pub fn import_settlements(db: &Db, date: &str, amounts: &[f64]) -> Result<usize, DbError> {
        check_date(date)?;
        db.write(|t| {
            for (i, amount) in amounts.iter().enumerate() {
                t.transactions.push((format!("{date}T23:{i:02}:00Z"), *amount));
            }
            Ok(amounts.len())
        })
    }
}

pub fn flow() -> Trace {
    let db = Db::new(seed());
    let mut trace = Trace::new("daily_stats_sync");

    get_daily_stats(&db, "2025-01-15").expect("stats");
    trace.step("get_daily_stats(2025-01-15): miss", db.queries());
    let before = get_daily_stats(&db, "2025-01-15").expect("stats");
    trace.step("get_daily_stats(2025-01-15) again: hit", db.queries());
    assert_eq!(before.transactions.count, 2);
    get_daily_stats(&db, "2025-01-14").expect("stats");
    trace.step("get_daily_stats(2025-01-14): miss", db.queries());
    get_daily_stats(&db, "15/01/2025").expect_err("not ISO");
    trace.step(
        "get_daily_stats(15/01/2025): Err before any query",
        db.queries(),
    );

    import_settlements(&db, "2025-01-15", &[700.0, 300.0]).expect("import");
    trace.step(
        "import_settlements(2025-01-15): invalidates that day",
        db.queries(),
    );
    let after = get_daily_stats(&db, "2025-01-15").expect("stats");
    trace.step("get_daily_stats(2025-01-15): miss", db.queries());
    assert_eq!(
        after.transactions.total_amount,
        before.transactions.total_amount + 1_000.0
    );
    get_daily_stats(&db, "2025-01-14").expect("stats");
    trace.step(
        "get_daily_stats(2025-01-14): another day, still a hit",
        db.queries(),
    );
    trace
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    flow().print();
    Ok(())
}
