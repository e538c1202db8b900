//! The seed README's Example 3, Investment Products: active products by currency and an
//! optional type, cached for an hour, invalidated when a product is updated.
//!
//! ```text
//! cargo run --example investment_products
//! CACHE_URL=redis://127.0.0.1:6379/1 CACHE_DEBUG=1 cargo run --example investment_products
//! ```

mod common;

use cacheable::cache_fn;
use common::{DbError, Source, Trace};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvestmentProduct {
    pub id: String,
    pub name: String,
    pub currency: String,
    pub product_type: String,
    pub annual_rate: f64,
    pub is_active: bool,
}

pub struct Tables {
    products: Vec<InvestmentProduct>,
}

pub type Db = Source<Tables>;

cache_fn! {
    /// A `None` type renders as its own key segment, distinct from every type name.
    #[cache(key = "investments:products:<<currency_code>>:<<product_type>>", ttl = 3600)]
    pub async fn get_investment_products(
        db: &Db,
        currency_code: &str,
        product_type: Option<&str>,
    ) -> Vec<InvestmentProduct> {
        db.query_async(|t| {
            t.products
                .iter()
                .filter(|p| p.currency == currency_code && p.is_active)
                .filter(|p| product_type.is_none_or(|ty| p.product_type == ty))
                .cloned()
                .collect()
        })
        .await
    }

    #[invalidate("investments:products:*")]
    pub async fn update_investment_product(
        db: &Db,
        product_id: &str,
        annual_rate: f64,
    ) -> Result<InvestmentProduct, DbError> {
        db.write_async(|t| {
            let product = t
                .products
                .iter_mut()
                .find(|p| p.id == product_id)
                .ok_or_else(|| DbError(format!("InvestmentProduct {product_id} does not exist")))?;
            product.annual_rate = annual_rate;
            Ok(product.clone())
        })
        .await
    }
}

fn seed() -> Tables {
    let product =
        |id: &str, name: &str, currency: &str, product_type: &str, annual_rate| InvestmentProduct {
            id: id.into(),
            name: name.into(),
            currency: currency.into(),
            product_type: product_type.into(),
            annual_rate,
            is_active: true,
        };
    Tables {
        products: vec![
            product("ip-1", "Treasury bills", "NGN", "fixed_income", 0.18),
            product("ip-2", "Dollar notes", "USD", "fixed_income", 0.07),
            product("ip-3", "Index fund", "USD", "equity", 0.11),
        ],
    }
}

pub async fn flow() -> Trace {
    let db = Db::new(seed());
    let mut trace = Trace::new("investment_products");

    get_investment_products(&db, "USD", Some("fixed_income")).await;
    trace.step(
        "get_investment_products(USD, fixed_income): miss",
        db.queries(),
    );
    get_investment_products(&db, "USD", Some("fixed_income")).await;
    trace.step(
        "get_investment_products(USD, fixed_income): hit",
        db.queries(),
    );
    let all = get_investment_products(&db, "USD", None).await;
    trace.step("get_investment_products(USD, any type): miss", db.queries());
    assert_eq!(all.len(), 2);
    get_investment_products(&db, "USD", None).await;
    trace.step("get_investment_products(USD, any type): hit", db.queries());

    update_investment_product(&db, "ip-2", 0.075)
        .await
        .expect("update");
    trace.step("update_investment_product(ip-2): invalidates", db.queries());
    let fresh = get_investment_products(&db, "USD", Some("fixed_income")).await;
    trace.step(
        "get_investment_products(USD, fixed_income): miss",
        db.queries(),
    );
    assert_eq!(fresh[0].annual_rate, 0.075, "the new rate is served");
    get_investment_products(&db, "USD", None).await;
    trace.step("get_investment_products(USD, any type): miss", db.queries());
    trace
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    flow().await.print();
    Ok(())
}
