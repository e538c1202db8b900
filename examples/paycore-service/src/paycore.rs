//! The seed's resources on PostgreSQL: each read is a plain `load_*` query, and a
//! `get_*` that caches it under the seed's key template; the mutations invalidate with
//! `#[invalidate]` once they succeed.
//!
//! The handlers call `get_*`, or `load_*` when the service runs with `CACHE_DISABLED=1`
//! (the load run's baseline).

use crate::db::{Db, DbError};
use cacheable::cache_fn;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoanProduct {
    pub id: i64,
    pub name: String,
    pub currency: String,
    pub min_amount: i64,
    pub max_amount: i64,
    pub max_tenor_months: i32,
}

/// The optional filters of the loan products list; hashed into the key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoanFilters {
    pub min_amount: Option<i64>,
    pub max_tenor: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewLoanProduct {
    pub name: String,
    pub currency: String,
    pub min_amount: i64,
    pub max_amount: i64,
    pub max_tenor_months: i32,
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: i64,
    pub wallet_id: String,
    pub amount: f64,
    pub currency: String,
    pub kind: String,
    pub status: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub name: String,
    pub symbol: String,
    pub exchange_rate_usd: f64,
    pub is_crypto: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Faq {
    pub id: i64,
    pub question: String,
    pub answer: String,
    pub category: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillProvider {
    pub id: i64,
    pub name: String,
    pub category: String,
    pub country: String,
    pub logo_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrencyDay {
    pub currency: String,
    pub count: i64,
    pub volume: f64,
    pub failed: i64,
    pub active_users: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyStats {
    pub date: String,
    pub by_currency: Vec<CurrencyDay>,
}

/// Minor units (kobo, cents) to major.
fn major(minor: i64) -> f64 {
    minor as f64 / 100.0
}

pub async fn load_loan_products(
    db: &Db,
    currency_code: &str,
    filters: &LoanFilters,
) -> Result<Vec<LoanProduct>, DbError> {
    let rows = db
        .query(
            "loan_products",
            "SELECT id, name, currency_code, min_amount, max_amount, max_tenor_months
             FROM loan_products
             WHERE currency_code = $1 AND is_active
               AND ($2::bigint IS NULL OR min_amount >= $2)
               AND ($3::integer IS NULL OR max_tenor_months <= $3)
             ORDER BY id",
            &[&currency_code, &filters.min_amount, &filters.max_tenor],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LoanProduct {
            id: r.get(0),
            name: r.get(1),
            currency: r.get(2),
            min_amount: r.get(3),
            max_amount: r.get(4),
            max_tenor_months: r.get(5),
        })
        .collect())
}

pub async fn load_wallet_summary(db: &Db, user_id: i64) -> Result<WalletSummary, DbError> {
    let rows = db
        .query(
            "wallet_summary",
            "SELECT w.id, w.currency_code, w.balance_minor, w.is_primary, c.exchange_rate_usd
             FROM wallets w JOIN currencies c ON c.code = w.currency_code
             WHERE w.user_id = $1 AND w.status = 'active'
             ORDER BY w.is_primary DESC, w.id",
            &[&user_id],
        )
        .await?;
    let mut total = 0.0;
    let wallets: Vec<WalletLine> = rows
        .iter()
        .map(|r| {
            let balance = major(r.get(2));
            total += balance * r.get::<_, f64>(4);
            WalletLine {
                id: r.get(0),
                currency: r.get(1),
                balance,
                is_primary: r.get(3),
            }
        })
        .collect();
    Ok(WalletSummary {
        total_wallets: wallets.len(),
        total_balance_usd: (total * 100.0).round() / 100.0,
        primary_wallet_id: wallets.iter().find(|w| w.is_primary).map(|w| w.id.clone()),
        wallets,
    })
}

const TRANSACTION_COLUMNS: &str =
    "t.id, t.wallet_id, t.amount_minor, w.currency_code, t.kind, t.status,
    to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

fn transaction(r: &tokio_postgres::Row) -> Transaction {
    Transaction {
        id: r.get(0),
        wallet_id: r.get(1),
        amount: major(r.get(2)),
        currency: r.get(3),
        kind: r.get(4),
        status: r.get(5),
        created_at: r.get(6),
    }
}

pub async fn load_recent_transactions(
    db: &Db,
    user_id: i64,
    limit: i64,
) -> Result<Vec<Transaction>, DbError> {
    let sql = format!(
        "SELECT {TRANSACTION_COLUMNS}
         FROM transactions t JOIN wallets w ON w.id = t.wallet_id
         WHERE t.user_id = $1
         ORDER BY t.created_at DESC, t.id DESC
         LIMIT $2"
    );
    let rows = db
        .query("recent_transactions", &sql, &[&user_id, &limit])
        .await?;
    Ok(rows.iter().map(transaction).collect())
}

pub async fn load_exchange_rates(
    db: &Db,
) -> Result<std::collections::BTreeMap<String, Rate>, DbError> {
    let rows = db
        .query(
            "exchange_rates",
            "SELECT code, name, symbol, exchange_rate_usd, is_crypto FROM currencies WHERE is_active",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Rate {
                    name: r.get(1),
                    symbol: r.get(2),
                    exchange_rate_usd: r.get(3),
                    is_crypto: r.get(4),
                },
            )
        })
        .collect())
}

pub async fn load_faqs(db: &Db, category: Option<&str>) -> Result<Vec<Faq>, DbError> {
    let rows = db
        .query(
            "faqs",
            "SELECT id, question, answer, category FROM faqs
             WHERE is_active AND ($1::text IS NULL OR category = $1)
             ORDER BY category, ord",
            &[&category],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Faq {
            id: r.get(0),
            question: r.get(1),
            answer: r.get(2),
            category: r.get(3),
        })
        .collect())
}

pub async fn load_bill_providers(
    db: &Db,
    category: Option<&str>,
    country_code: Option<&str>,
) -> Result<Vec<BillProvider>, DbError> {
    let rows = db
        .query(
            "bill_providers",
            "SELECT id, name, category, country_code, logo_url FROM bill_providers
             WHERE is_active AND ($1::text IS NULL OR category = $1)
               AND ($2::text IS NULL OR country_code = $2)
             ORDER BY id",
            &[&category, &country_code],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| BillProvider {
            id: r.get(0),
            name: r.get(1),
            category: r.get(2),
            country: r.get(3),
            logo_url: r.get(4),
        })
        .collect())
}

/// The seed's Example 8, an aggregation over a day of transactions: no index serves
/// `created_at::date`, so PostgreSQL scans the table (the load run's expensive query).
pub async fn load_daily_stats(db: &Db, date: &str) -> Result<DailyStats, DbError> {
    let rows = db
        .query(
            "daily_stats",
            "SELECT w.currency_code, count(*), coalesce(sum(t.amount_minor), 0)::bigint,
                    count(*) FILTER (WHERE t.status = 'failed'), count(DISTINCT t.user_id)
             FROM transactions t JOIN wallets w ON w.id = t.wallet_id
             WHERE (t.created_at AT TIME ZONE 'UTC')::date = $1::text::date
             GROUP BY w.currency_code ORDER BY w.currency_code",
            &[&date],
        )
        .await?;
    Ok(DailyStats {
        date: date.to_owned(),
        by_currency: rows
            .iter()
            .map(|r| CurrencyDay {
                currency: r.get(0),
                count: r.get(1),
                volume: major(r.get(2)),
                failed: r.get(3),
                active_users: r.get(4),
            })
            .collect(),
    })
}

cache_fn! {
    #[cache(key = "loans:products:<<currency_code>>:<<filters>>", hash = [filters], ttl = 1800)]
    pub async fn get_loan_products(
        db: &Db,
        currency_code: &str,
        filters: &LoanFilters,
    ) -> Result<Vec<LoanProduct>, DbError> {
        load_loan_products(db, currency_code, filters).await
    }

    #[cache(key = "wallets:summary:<<user_id>>", ttl = 120)]
    pub async fn get_wallet_summary(db: &Db, user_id: i64) -> Result<WalletSummary, DbError> {
        load_wallet_summary(db, user_id).await
    }

    #[cache(key = "transactions:<<user_id>>:recent:<<limit>>", ttl = 60)]
    pub async fn get_recent_transactions(
        db: &Db,
        user_id: i64,
        limit: i64,
    ) -> Result<Vec<Transaction>, DbError> {
        load_recent_transactions(db, user_id, limit).await
    }

    #[cache(key = "currencies:rates:all", ttl = 1800)]
    pub async fn get_exchange_rates(
        db: &Db,
    ) -> Result<std::collections::BTreeMap<String, Rate>, DbError> {
        load_exchange_rates(db).await
    }

    #[cache(key = "support:faqs:<<category>>", ttl = 3600)]
    pub async fn get_faqs_by_category(db: &Db, category: &str) -> Result<Vec<Faq>, DbError> {
        load_faqs(db, Some(category)).await
    }

    #[cache(key = "support:faqs:all", ttl = 3600)]
    pub async fn get_all_faqs(db: &Db) -> Result<Vec<Faq>, DbError> {
        load_faqs(db, None).await
    }

    #[cache(key = "bills:providers:<<category>>:<<country_code>>", ttl = 7200)]
    pub async fn get_bill_providers(
        db: &Db,
        category: Option<&str>,
        country_code: Option<&str>,
    ) -> Result<Vec<BillProvider>, DbError> {
        load_bill_providers(db, category, country_code).await
    }

    #[cache(key = "admin:stats:daily:<<date>>", ttl = 600)]
    pub async fn get_daily_stats(db: &Db, date: &str) -> Result<DailyStats, DbError> {
        load_daily_stats(db, date).await
    }

    #[invalidate("loans:products:*")]
    pub async fn create_loan_product(db: &Db, data: &NewLoanProduct) -> Result<LoanProduct, DbError> {
        let rows = db
            .query(
                "create_loan_product",
                "INSERT INTO loan_products (name, currency_code, min_amount, max_amount, max_tenor_months)
                 VALUES ($1, $2, $3, $4, $5)
                 RETURNING id, name, currency_code, min_amount, max_amount, max_tenor_months",
                &[&data.name, &data.currency, &data.min_amount, &data.max_amount, &data.max_tenor_months],
            )
            .await?;
        let r = rows.first().ok_or_else(|| DbError::Invalid("no product created".into()))?;
        Ok(LoanProduct {
            id: r.get(0),
            name: r.get(1),
            currency: r.get(2),
            min_amount: r.get(3),
            max_amount: r.get(4),
            max_tenor_months: r.get(5),
        })
    }

    /// Funding a wallet is a credit transaction: the balance and the transaction list change.
    #[invalidate("wallets:summary:<<user_id>>", "transactions:<<user_id>>:recent:*")]
    pub async fn fund_wallet(db: &Db, user_id: i64, wallet_id: &str, amount_minor: i64) -> Result<Transaction, DbError> {
        if amount_minor <= 0 {
            return Err(DbError::Invalid("a funding amount must be positive".into()));
        }
        record(db, "fund_wallet", user_id, wallet_id, amount_minor, "credit").await
    }

    /// The seed's `create_transaction`: a debit (negative) or credit, refused when it would
    /// overdraw the wallet.
    #[invalidate("wallets:summary:<<user_id>>", "transactions:<<user_id>>:recent:*")]
    pub async fn create_transaction(
        db: &Db,
        user_id: i64,
        wallet_id: &str,
        amount_minor: i64,
    ) -> Result<Transaction, DbError> {
        let kind = if amount_minor < 0 { "debit" } else { "credit" };
        record(db, "create_transaction", user_id, wallet_id, amount_minor, kind).await
    }

    /// Wallet summaries convert at these rates, so they go too.
    #[invalidate("currencies:rates:*", "wallets:summary:*")]
    pub async fn update_exchange_rates(
        db: &Db,
        rates: &std::collections::BTreeMap<String, f64>,
    ) -> Result<Vec<String>, DbError> {
        let codes: Vec<&str> = rates.keys().map(String::as_str).collect();
        let values: Vec<f64> = rates.values().copied().collect();
        if values.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return Err(DbError::Invalid("rates must be positive numbers".into()));
        }
        let rows = db
            .query(
                "update_exchange_rates",
                "UPDATE currencies c SET exchange_rate_usd = v.rate
                 FROM unnest($1::text[], $2::float8[]) AS v(code, rate)
                 WHERE c.code = v.code RETURNING c.code",
                &[&codes, &values],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// One statement: the balance moves (never below zero) and the transaction is written, or
/// neither.
async fn record(
    db: &Db,
    name: &'static str,
    user_id: i64,
    wallet_id: &str,
    amount_minor: i64,
    kind: &str,
) -> Result<Transaction, DbError> {
    let sql = format!(
        "WITH w AS (
             UPDATE wallets SET balance_minor = balance_minor + $3
             WHERE id = $2 AND user_id = $1 AND status = 'active' AND balance_minor + $3 >= 0
             RETURNING id, user_id, currency_code
         ), t AS (
             INSERT INTO transactions (user_id, wallet_id, amount_minor, kind)
             SELECT user_id, id, $3, $4 FROM w
             RETURNING *
         )
         SELECT {TRANSACTION_COLUMNS} FROM t JOIN w ON w.id = t.wallet_id"
    );
    let rows = db
        .query(name, &sql, &[&user_id, &wallet_id, &amount_minor, &kind])
        .await?;
    rows.first().map(transaction).ok_or_else(|| {
        DbError::NotFound(format!(
            "no active wallet {wallet_id} of user {user_id} that can take {amount_minor}"
        ))
    })
}
