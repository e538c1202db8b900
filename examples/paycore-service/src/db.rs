//! The data layer: a pool of PostgreSQL connections, a counter of the statements sent (the
//! `paycore_db_queries_total` metric, labelled by statement name), and the schema and seed
//! data the service creates itself.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::fmt;
use std::str::FromStr;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// A failed query, a lost connection, or a row that is not there.
#[derive(Debug)]
pub enum DbError {
    NotFound(String),
    Invalid(String),
    Postgres(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::NotFound(m) | DbError::Invalid(m) | DbError::Postgres(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DbError {}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Postgres(format!("database: {e}"))
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::Postgres(format!("database pool: {e}"))
    }
}

/// The pool; each statement it sends is counted in `paycore_db_queries_total`.
pub struct Db {
    pool: Pool,
}

impl Db {
    /// A pool of up to `size` connections to `url` (`postgres://user@host:port/db`, or the
    /// key=value form). Connects lazily; [`migrate`](Self::migrate) makes the first.
    pub fn connect(url: &str, size: usize) -> Result<Db, Box<dyn std::error::Error>> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| format!("DATABASE_URL is not a PostgreSQL URL: {e}"))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager).max_size(size).build()?;
        Ok(Db { pool })
    }

    fn count(&self, name: &'static str) {
        metrics::counter!("paycore_db_queries_total", "query" => name).increment(1);
    }

    /// Runs one statement, counted under `name`. Each mutation is one statement (a CTE
    /// where it changes two tables), so it is atomic without a transaction block.
    pub async fn query(
        &self,
        name: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(sql).await?;
        self.count(name);
        Ok(client.query(&statement, params).await?)
    }

    /// Creates the tables and, on an empty database, the seed data: currencies, loan
    /// products, wallets, FAQs, bill providers, and `history` past transactions spread over
    /// the 30 days before today (what the daily statistics aggregate).
    pub async fn migrate(&self, history: i64) -> Result<(), DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Two instances starting together: one creates, the other finds it done.
        tx.execute("SELECT pg_advisory_xact_lock(7412)", &[])
            .await?;
        tx.batch_execute(SCHEMA).await?;
        let seeded: i64 = tx
            .query_one("SELECT count(*) FROM currencies", &[])
            .await?
            .get(0);
        if seeded == 0 {
            tx.batch_execute(SEED).await?;
            tx.execute(SEED_HISTORY, &[&history]).await?;
            tx.batch_execute("ANALYZE").await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS currencies (
    code text PRIMARY KEY,
    name text NOT NULL,
    symbol text NOT NULL,
    exchange_rate_usd double precision NOT NULL,
    is_crypto boolean NOT NULL DEFAULT false,
    is_active boolean NOT NULL DEFAULT true
);
CREATE TABLE IF NOT EXISTS loan_products (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    currency_code text NOT NULL REFERENCES currencies(code),
    min_amount bigint NOT NULL,
    max_amount bigint NOT NULL,
    max_tenor_months integer NOT NULL,
    is_active boolean NOT NULL DEFAULT true
);
CREATE TABLE IF NOT EXISTS wallets (
    id text PRIMARY KEY,
    user_id bigint NOT NULL,
    currency_code text NOT NULL REFERENCES currencies(code),
    balance_minor bigint NOT NULL DEFAULT 0,
    is_primary boolean NOT NULL DEFAULT false,
    status text NOT NULL DEFAULT 'active'
);
CREATE INDEX IF NOT EXISTS wallets_user ON wallets(user_id);
CREATE TABLE IF NOT EXISTS transactions (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    wallet_id text NOT NULL REFERENCES wallets(id),
    amount_minor bigint NOT NULL,
    kind text NOT NULL,
    status text NOT NULL DEFAULT 'completed',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS transactions_user_recent ON transactions(user_id, created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS faqs (
    id bigserial PRIMARY KEY,
    category text NOT NULL,
    question text NOT NULL,
    answer text NOT NULL,
    ord integer NOT NULL,
    is_active boolean NOT NULL DEFAULT true
);
CREATE TABLE IF NOT EXISTS bill_providers (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    category text NOT NULL,
    country_code text NOT NULL,
    logo_url text NOT NULL,
    is_active boolean NOT NULL DEFAULT true
);
";

const SEED: &str = "
INSERT INTO currencies (code, name, symbol, exchange_rate_usd, is_crypto) VALUES
    ('NGN', 'Naira', '₦', 0.00065, false),
    ('USD', 'US Dollar', '$', 1.0, false),
    ('KES', 'Kenyan Shilling', 'KSh', 0.0077, false),
    ('USDT', 'Tether', '₮', 1.0, true);
INSERT INTO loan_products (name, currency_code, min_amount, max_amount, max_tenor_months) VALUES
    ('Salary advance', 'NGN', 50000, 500000, 3),
    ('SME working capital', 'NGN', 500000, 20000000, 12),
    ('Asset finance', 'NGN', 1000000, 50000000, 24),
    ('Dollar bridge', 'USD', 1000, 50000, 6),
    ('School fees', 'KES', 10000, 300000, 9);
INSERT INTO wallets (id, user_id, currency_code, balance_minor, is_primary)
    SELECT 'w-' || u || '-ngn', u, 'NGN', 15000000 + u * 100, true FROM generate_series(1, 200) u;
INSERT INTO wallets (id, user_id, currency_code, balance_minor, is_primary)
    SELECT 'w-' || u || '-usd', u, 'USD', 4000 + u, false FROM generate_series(1, 200) u;
INSERT INTO faqs (category, question, answer, ord) VALUES
    ('wallets', 'How do I fund my wallet?', 'By bank transfer to your wallet account number.', 1),
    ('wallets', 'Is there a daily limit?', 'Tier 1 accounts can receive up to ₦50,000 a day.', 2),
    ('loans', 'How fast is a salary advance paid?', 'Within minutes of approval.', 1),
    ('cards', 'Can I freeze my card?', 'Yes, from the card screen.', 1);
INSERT INTO bill_providers (name, category, country_code, logo_url) VALUES
    ('Ikeja Electric', 'electricity', 'NG', 'https://cdn.example/ie.png'),
    ('Eko Electric', 'electricity', 'NG', 'https://cdn.example/ekedc.png'),
    ('DStv', 'tv', 'NG', 'https://cdn.example/dstv.png'),
    ('Kenya Power', 'electricity', 'KE', 'https://cdn.example/kplc.png'),
    ('Safaricom Home', 'internet', 'KE', 'https://cdn.example/saf.png');
";

/// Past transactions over the 30 days before today, `$1` of them.
const SEED_HISTORY: &str = "
INSERT INTO transactions (user_id, wallet_id, amount_minor, kind, status, created_at)
    SELECT u, 'w-' || u || '-ngn', (i * 7919) % 500000 + 100,
           CASE WHEN i % 3 = 0 THEN 'debit' ELSE 'credit' END,
           CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'completed' END,
           date_trunc('day', now()) - interval '30 days' + (i % 30) * interval '1 day' + (i % 86400) * interval '1 second'
    FROM generate_series(1, $1::bigint) i, LATERAL (SELECT (i % 200) + 1 AS u) users
";
