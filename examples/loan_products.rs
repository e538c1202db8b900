//! The seed README's Example 1, Loan Products: the active products of a currency, cached
//! per currency and filters (the filters hashed into the key) for 30 minutes, and
//! invalidated when a product is created or updated.
//!
//! ```text
//! cargo run --example loan_products                      # embedded store
//! CACHE_URL=redis://127.0.0.1:6379/1 CACHE_DEBUG=1 cargo run --example loan_products
//! ```

mod common;

use cacheable::cache_fn;
use common::{DbError, Source, Trace};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoanProduct {
    pub id: String,
    pub name: String,
    pub currency: String,
    pub min_amount: u64,
    pub max_tenor_months: u32,
    pub is_active: bool,
}

/// The optional filters; a struct, so the key holds its hash rather than its fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoanFilters {
    pub min_amount: Option<u64>,
    pub max_tenor: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct NewLoanProduct {
    pub name: String,
    pub currency: String,
    pub min_amount: u64,
    pub max_tenor_months: u32,
}

pub struct Tables {
    products: Vec<LoanProduct>,
}

/// The database handle: not `Serialize`, and it need not be, since no key names it.
pub type Db = Source<Tables>;

cache_fn! {
    /// `LoanProduct.objects.filter(currency__code=…, is_active=True)`, then the filters.
    #[cache(key = "loans:products:<<currency_code>>:<<filters>>", hash = [filters], ttl = 1800)]
    pub async fn get_loan_products(
        db: &Db,
        currency_code: &str,
        filters: Option<&LoanFilters>,
    ) -> Vec<LoanProduct> {
        let filters = filters.cloned().unwrap_or_default();
        db.query_async(|t| {
            t.products
                .iter()
                .filter(|p| p.currency == currency_code && p.is_active)
                .filter(|p| filters.min_amount.is_none_or(|min| p.min_amount >= min))
                .filter(|p| filters.max_tenor.is_none_or(|max| p.max_tenor_months <= max))
                .cloned()
                .collect()
        })
        .await
    }

    #[invalidate("loans:products:*")]
    pub async fn create_loan_product(db: &Db, data: NewLoanProduct) -> Result<LoanProduct, DbError> {
        db.write_async(|t| {
            let product = LoanProduct {
                id: format!("lp-{}", t.products.len() + 1),
                name: data.name,
                currency: data.currency,
                min_amount: data.min_amount,
                max_tenor_months: data.max_tenor_months,
                is_active: true,
            };
            t.products.push(product.clone());
            Ok(product)
        })
        .await
    }

    /// An unknown id is an `Err`, and then nothing is invalidated.
    #[invalidate("loans:products:*")]
    pub async fn update_loan_product(
        db: &Db,
        product_id: &str,
        is_active: bool,
    ) -> Result<LoanProduct, DbError> {
        db.write_async(|t| {
            let product = t
                .products
                .iter_mut()
                .find(|p| p.id == product_id)
                .ok_or_else(|| DbError(format!("LoanProduct {product_id} does not exist")))?;
            product.is_active = is_active;
            Ok(product.clone())
        })
        .await
    }
}

fn seed() -> Tables {
    let product =
        |id: &str, name: &str, currency: &str, min_amount, max_tenor_months| LoanProduct {
            id: id.into(),
            name: name.into(),
            currency: currency.into(),
            min_amount,
            max_tenor_months,
            is_active: true,
        };
    Tables {
        products: vec![
            product("lp-1", "Salary advance", "NGN", 50_000, 3),
            product("lp-2", "SME working capital", "NGN", 500_000, 12),
            product("lp-3", "Dollar bridge", "USD", 1_000, 6),
        ],
    }
}

pub async fn flow() -> Trace {
    let db = Db::new(seed());
    let mut trace = Trace::new("loan_products");
    let filters = LoanFilters {
        min_amount: Some(100_000),
        max_tenor: Some(12),
    };

    get_loan_products(&db, "NGN", Some(&filters)).await;
    trace.step("get_loan_products(NGN, filters): miss", db.queries());
    let cached = get_loan_products(&db, "NGN", Some(&filters)).await;
    trace.step("get_loan_products(NGN, filters) again: hit", db.queries());
    assert_eq!(cached.len(), 1);
    get_loan_products(&db, "NGN", None).await;
    trace.step(
        "get_loan_products(NGN, no filters): its own key",
        db.queries(),
    );

    create_loan_product(
        &db,
        NewLoanProduct {
            name: "Asset finance".into(),
            currency: "NGN".into(),
            min_amount: 250_000,
            max_tenor_months: 12,
        },
    )
    .await
    .expect("create");
    trace.step(
        "create_loan_product: deletes loans:products:*",
        db.queries(),
    );
    let fresh = get_loan_products(&db, "NGN", Some(&filters)).await;
    trace.step("get_loan_products(NGN, filters): miss", db.queries());
    assert_eq!(fresh.len(), 2, "the new product is served");
    get_loan_products(&db, "NGN", None).await;
    trace.step("get_loan_products(NGN, no filters): miss", db.queries());

    update_loan_product(&db, "lp-404", false)
        .await
        .expect_err("unknown product");
    trace.step(
        "update_loan_product(lp-404): Err, deletes nothing",
        db.queries(),
    );
    get_loan_products(&db, "NGN", Some(&filters)).await;
    trace.step("get_loan_products(NGN, filters): still a hit", db.queries());

    update_loan_product(&db, "lp-2", false)
        .await
        .expect("update");
    trace.step(
        "update_loan_product(lp-2): deletes loans:products:*",
        db.queries(),
    );
    let fresh = get_loan_products(&db, "NGN", Some(&filters)).await;
    trace.step("get_loan_products(NGN, filters): miss", db.queries());
    assert_eq!(fresh.len(), 1, "the deactivated product is gone");
    trace
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    flow().await.print();
    Ok(())
}
