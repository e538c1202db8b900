//! The seed README's Example 2, User Wallet Summary: a user's wallets summed up, cached
//! for 2 minutes, and each wallet's balance; creating a transaction invalidates the
//! summary, the wallet's balance and the user's recent transactions.
//!
//! ```text
//! cargo run --example wallet_summary
//! CACHE_URL=redis://127.0.0.1:6379/1 CACHE_DEBUG=1 cargo run --example wallet_summary
//! ```

mod common;

use cacheable::cache_fn;
use common::{DbError, Source, Trace};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletLine {
    pub id: String,
    pub currency: String,
    pub balance: f64,
    pub is_primary: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletSummary {
    pub total_wallets: usize,
    pub total_balance_usd: f64,
    pub wallets: Vec<WalletLine>,
    pub primary_wallet_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transaction {
    pub id: u64,
    pub user_id: i64,
    pub wallet_id: String,
    pub amount: f64,
}

pub struct Wallet {
    id: String,
    user_id: i64,
    currency: String,
    balance: f64,
    is_primary: bool,
    active: bool,
}

pub struct Tables {
    wallets: Vec<Wallet>,
    usd_rates: Vec<(&'static str, f64)>,
    transactions: Vec<Transaction>,
}

pub type Db = Source<Tables>;

cache_fn! {
    /// Short TTL: balances change often.
    #[cache(key = "wallets:summary:<<user_id>>", ttl = 120)]
    pub async fn get_wallet_summary(db: &Db, user_id: i64) -> WalletSummary {
        db.query_async(|t| {
            let rate = |code: &str| t.usd_rates.iter().find(|(c, _)| *c == code).map_or(0.0, |r| r.1);
            let wallets: Vec<&Wallet> =
                t.wallets.iter().filter(|w| w.user_id == user_id && w.active).collect();
            WalletSummary {
                total_wallets: wallets.len(),
                total_balance_usd: wallets.iter().map(|w| w.balance * rate(&w.currency)).sum(),
                wallets: wallets
                    .iter()
                    .map(|w| WalletLine {
                        id: w.id.clone(),
                        currency: w.currency.clone(),
                        balance: w.balance,
                        is_primary: w.is_primary,
                    })
                    .collect(),
                primary_wallet_id: wallets.iter().find(|w| w.is_primary).map(|w| w.id.clone()),
            }
        })
        .await
    }

    /// An unknown wallet is an `Err`, which is never cached.
    #[cache(key = "wallets:<<wallet_id>>:balance", ttl = 120)]
    pub async fn get_wallet_balance(db: &Db, wallet_id: &str) -> Result<f64, DbError> {
        db.query_async(|t| {
            t.wallets
                .iter()
                .find(|w| w.id == wallet_id)
                .map(|w| w.balance)
                .ok_or_else(|| DbError(format!("Wallet {wallet_id} does not exist")))
        })
        .await
    }

    // The seed invalidates `transactions:{{user_id}}:recent`, a key Example 7 never
    // writes (its keys end in `:{{limit}}`); the wildcard deletes what it meant.
    #[invalidate(
        "wallets:summary:<<user_id>>",
        "wallets:<<wallet_id>>:balance",
        "transactions:<<user_id>>:recent:*",
    )]
    pub async fn create_transaction(
        db: &Db,
        user_id: i64,
        wallet_id: &str,
        amount: f64,
    ) -> Result<Transaction, DbError> {
        db.write_async(|t| {
            let wallet = t
                .wallets
                .iter_mut()
                .find(|w| w.id == wallet_id && w.user_id == user_id)
                .ok_or_else(|| DbError(format!("Wallet {wallet_id} does not exist")))?;
            wallet.balance += amount;
            let transaction = Transaction {
                id: t.transactions.len() as u64 + 1,
                user_id,
                wallet_id: wallet_id.to_owned(),
                amount,
            };
            t.transactions.push(transaction.clone());
            Ok(transaction)
        })
        .await
    }
}

fn seed() -> Tables {
    let wallet = |id: &str, user_id, currency: &str, balance, is_primary| Wallet {
        id: id.into(),
        user_id,
        currency: currency.into(),
        balance,
        is_primary,
        active: true,
    };
    Tables {
        wallets: vec![
            wallet("w-ngn-1", 1, "NGN", 150_000.0, true),
            wallet("w-usd-1", 1, "USD", 40.0, false),
            wallet("w-ngn-2", 2, "NGN", 9_000.0, true),
        ],
        usd_rates: vec![("NGN", 0.00065), ("USD", 1.0)],
        transactions: Vec::new(),
    }
}

pub async fn flow() -> Trace {
    let db = Db::new(seed());
    let mut trace = Trace::new("wallet_summary");

    get_wallet_summary(&db, 1).await;
    trace.step("get_wallet_summary(1): miss", db.queries());
    let before = get_wallet_summary(&db, 1).await;
    trace.step("get_wallet_summary(1) again: hit", db.queries());
    get_wallet_balance(&db, "w-ngn-1").await.expect("balance");
    trace.step("get_wallet_balance(w-ngn-1): miss", db.queries());
    get_wallet_balance(&db, "w-ngn-1").await.expect("balance");
    trace.step("get_wallet_balance(w-ngn-1) again: hit", db.queries());
    get_wallet_balance(&db, "w-gone")
        .await
        .expect_err("no such wallet");
    get_wallet_balance(&db, "w-gone")
        .await
        .expect_err("no such wallet");
    trace.step(
        "get_wallet_balance(w-gone) twice: Err, not cached",
        db.queries(),
    );
    get_wallet_summary(&db, 2).await;
    trace.step("get_wallet_summary(2): miss", db.queries());

    create_transaction(&db, 1, "w-ngn-1", 5_000.0)
        .await
        .expect("transaction");
    trace.step("create_transaction(1, w-ngn-1): invalidates", db.queries());
    let after = get_wallet_summary(&db, 1).await;
    trace.step("get_wallet_summary(1): miss", db.queries());
    assert!(after.total_balance_usd > before.total_balance_usd);
    assert_eq!(get_wallet_balance(&db, "w-ngn-1").await, Ok(155_000.0));
    trace.step("get_wallet_balance(w-ngn-1): miss", db.queries());
    get_wallet_summary(&db, 2).await;
    trace.step(
        "get_wallet_summary(2): another user's, still a hit",
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
