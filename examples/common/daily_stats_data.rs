//! The data behind Example 8, shared by `daily_stats.rs` and its blocking twin
//! `daily_stats_sync.rs`: the stand-in tables, the aggregation and the date check.

use super::common::{DbError, Source};
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
    pub transactions: Vec<(String, f64)>,
    /// date_joined
    pub users: Vec<String>,
}

pub type Db = Source<Tables>;

pub fn aggregate(t: &Tables, date: &str) -> DailyStats {
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

pub fn check_date(date: &str) -> Result<(), DbError> {
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

pub fn seed() -> Tables {
    Tables {
        transactions: vec![
            ("2025-01-14T10:00:00Z".into(), 1_000.0),
            ("2025-01-15T09:30:00Z".into(), 2_500.0),
            ("2025-01-15T17:45:00Z".into(), 4_000.0),
        ],
        users: vec!["2025-01-15T08:00:00Z".into(), "2025-01-16T08:00:00Z".into()],
    }
}
