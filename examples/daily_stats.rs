//! The seed README's Example 8, Dashboard Statistics: a day's transaction and sign-up
//! aggregates, expensive to compute, cached for 10 minutes. The seed shows no mutation;
//! here importing a day's late settlements invalidates that day's statistics only.
//! `daily_stats_sync.rs` is the same without async.
//!
//! ```text
//! cargo run --example daily_stats
//! CACHE_URL=redis://127.0.0.1:6379/1 CACHE_DEBUG=1 cargo run --example daily_stats
//! ```

mod common;

use cacheable::cache_fn;
use common::{DbError, Source, Trace};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyStats {
    pub date: String,
    pub transactions: TransactionStats,
    pub users: UserStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionStats {
    pub total_amount: f64,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserStats {
    pub new_users: usize,
}

pub struct Tables {
    /// (created_at, amount)
    transactions: Vec<(String, f64)>,
    /// date_joined
    users: Vec<String>,
}

pub type Db = Source<Tables>;

fn aggregate(t: &Tables, date: &str) -> DailyStats {
    let on_day = |at: &String| at.starts_with(date);
    let day: Vec<f64> = t
        .transactions
        .iter()
        .filter(|(at, _)| on_day(at))
        .map(|(_, a)| *a)
        .collect();
    DailyStats {
        date: date.to_owned(),
        transactions: TransactionStats {
            total_amount: day.iter().sum(),
            count: day.len(),
        },
        users: UserStats {
            new_users: t.users.iter().filter(|at| on_day(at)).count(),
        },
    }
}

cache_fn! {
    /// `date` is ISO 8601 (`2025-01-15`); anything else is an `Err`, never cached.
    #[cache(key = "admin:stats:daily:<<date>>", ttl = 600)]
    pub async fn get_daily_stats(db: &Db, date: &str) -> Result<DailyStats, DbError> {
        check_date(date)?;
        Ok(db.query_async(|t| aggregate(t, date)).await)
    }

    /// Late settlements change that day's figures, and no other day's.
    #[invalidate("admin:stats:daily:<<date>>")]
    pub async fn import_settlements(db: &Db, date: &str, amounts: &[f64]) -> Result<usize, DbError> {
        check_date(date)?;
        db.write_async(|t| {
            for (i, amount) in amounts.iter().enumerate() {
                t.transactions.push((format!("{date}T23:{i:02}:00Z"), *amount));
            }
            Ok(amounts.len())
        })
        .await
    }
}

fn check_date(date: &str) -> Result<(), DbError> {
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
    {
        Ok(())
    } else {
        Err(DbError(format!("`{date}` is not an ISO date (YYYY-MM-DD)")))
    }
}

fn seed() -> Tables {
    Tables {
        transactions: vec![
            ("2025-01-14T10:00:00Z".into(), 1_000.0),
            ("2025-01-15T09:30:00Z".into(), 2_500.0),
            ("2025-01-15T17:45:00Z".into(), 4_000.0),
        ],
        users: vec!["2025-01-15T08:00:00Z".into(), "2025-01-16T08:00:00Z".into()],
    }
}

pub async fn flow() -> Trace {
    let db = Db::new(seed());
    let mut trace = Trace::new("daily_stats");

    get_daily_stats(&db, "2025-01-15").await.expect("stats");
    trace.step("get_daily_stats(2025-01-15): miss", db.queries());
    let before = get_daily_stats(&db, "2025-01-15").await.expect("stats");
    trace.step("get_daily_stats(2025-01-15) again: hit", db.queries());
    assert_eq!(before.transactions.count, 2);
    get_daily_stats(&db, "2025-01-14").await.expect("stats");
    trace.step("get_daily_stats(2025-01-14): miss", db.queries());
    get_daily_stats(&db, "15/01/2025")
        .await
        .expect_err("not ISO");
    trace.step(
        "get_daily_stats(15/01/2025): Err before any query",
        db.queries(),
    );

    import_settlements(&db, "2025-01-15", &[700.0, 300.0])
        .await
        .expect("import");
    trace.step(
        "import_settlements(2025-01-15): invalidates that day",
        db.queries(),
    );
    let after = get_daily_stats(&db, "2025-01-15").await.expect("stats");
    trace.step("get_daily_stats(2025-01-15): miss", db.queries());
    assert_eq!(
        after.transactions.total_amount,
        before.transactions.total_amount + 1_000.0
    );
    get_daily_stats(&db, "2025-01-14").await.expect("stats");
    trace.step(
        "get_daily_stats(2025-01-14): another day, still a hit",
        db.queries(),
    );
    trace
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    flow().await.print();
    Ok(())
}
