//! The seed README's Example 7, User Transaction History: a user's most recent
//! transactions, cached per user and limit for a minute; recording a transaction
//! invalidates that user's lists, whatever their limit, and wallet summary.
//!
//! ```text
//! cargo run --example transaction_history
//! CACHE_URL=redis://127.0.0.1:6379/1 CACHE_DEBUG=1 cargo run --example transaction_history
//! ```

mod common;

use cacheable::cache_fn;
use common::{DbError, Source, Trace};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionLine {
    pub id: String,
    pub amount: f64,
    pub currency: String,
    pub r#type: String,
    pub status: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct NewTransaction {
    pub amount: f64,
    pub currency: String,
    pub r#type: String,
}

pub struct Tables {
    transactions: Vec<(i64, TransactionLine)>, // (user_id, transaction)
}

pub type Db = Source<Tables>;

cache_fn! {
    #[cache(key = "transactions:<<user_id>>:recent:<<limit>>", ttl = 60)]
    pub async fn get_recent_transactions(db: &Db, user_id: i64, limit: usize) -> Vec<TransactionLine> {
        db.query_async(|t| {
            let mut mine: Vec<&TransactionLine> =
                t.transactions.iter().filter(|(u, _)| *u == user_id).map(|(_, tx)| tx).collect();
            mine.sort_by(|a, b| b.created_at.cmp(&a.created_at));
            mine.into_iter().take(limit).cloned().collect()
        })
        .await
    }

    #[invalidate("transactions:<<user_id>>:recent:*", "wallets:summary:<<user_id>>")]
    pub async fn record_transaction(
        db: &Db,
        user_id: i64,
        transaction_data: NewTransaction,
    ) -> Result<TransactionLine, DbError> {
        if transaction_data.amount == 0.0 {
            return Err(DbError("a transaction moves a non-zero amount".into()));
        }
        db.write_async(|t| {
            let n = t.transactions.len() + 1;
            let line = TransactionLine {
                id: format!("tx-{n}"),
                amount: transaction_data.amount,
                currency: transaction_data.currency,
                r#type: transaction_data.r#type,
                status: "completed".into(),
                created_at: format!("2025-01-15T12:{n:02}:00Z"),
            };
            t.transactions.push((user_id, line.clone()));
            Ok(line)
        })
        .await
    }
}

fn seed() -> Tables {
    let tx = |user_id, n: usize, amount| {
        (
            user_id,
            TransactionLine {
                id: format!("tx-{n}"),
                amount,
                currency: "NGN".into(),
                r#type: "transfer".into(),
                status: "completed".into(),
                created_at: format!("2025-01-15T09:{n:02}:00Z"),
            },
        )
    };
    Tables {
        transactions: (1..=12)
            .map(|n| tx(1 + (n % 2) as i64, n, n as f64 * 100.0))
            .collect(),
    }
}

pub async fn flow() -> Trace {
    let db = Db::new(seed());
    let mut trace = Trace::new("transaction_history");

    get_recent_transactions(&db, 1, 10).await;
    trace.step("get_recent_transactions(1, 10): miss", db.queries());
    get_recent_transactions(&db, 1, 10).await;
    trace.step("get_recent_transactions(1, 10) again: hit", db.queries());
    get_recent_transactions(&db, 1, 5).await;
    trace.step("get_recent_transactions(1, 5): its own key", db.queries());
    get_recent_transactions(&db, 2, 10).await;
    trace.step("get_recent_transactions(2, 10): miss", db.queries());

    let deposit = |amount| NewTransaction {
        amount,
        currency: "NGN".into(),
        r#type: "deposit".into(),
    };
    record_transaction(&db, 1, deposit(0.0))
        .await
        .expect_err("zero amount");
    trace.step(
        "record_transaction(1, 0.0): Err, deletes nothing",
        db.queries(),
    );
    get_recent_transactions(&db, 1, 5).await;
    trace.step("get_recent_transactions(1, 5): still a hit", db.queries());

    let recorded = record_transaction(&db, 1, deposit(2_500.0))
        .await
        .expect("record");
    trace.step(
        "record_transaction(1, 2500): deletes user 1's lists",
        db.queries(),
    );
    let latest = get_recent_transactions(&db, 1, 10).await;
    trace.step("get_recent_transactions(1, 10): miss", db.queries());
    assert_eq!(latest[0], recorded, "the new transaction comes first");
    get_recent_transactions(&db, 1, 5).await;
    trace.step("get_recent_transactions(1, 5): miss", db.queries());
    get_recent_transactions(&db, 2, 10).await;
    trace.step(
        "get_recent_transactions(2, 10): user 2's, still a hit",
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
