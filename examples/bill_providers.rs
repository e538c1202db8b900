//! The seed README's Example 5, Bill Providers: providers by optional category and
//! country, cached for two hours, invalidated when a provider changes.
//!
//! ```text
//! cargo run --example bill_providers
//! CACHE_URL=redis://127.0.0.1:6379/1 CACHE_DEBUG=1 cargo run --example bill_providers
//! ```

mod common;

use cacheable::cache_fn;
use common::{DbError, Source, Trace};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillProvider {
    pub id: String,
    pub name: String,
    pub category: String,
    pub country: String,
    pub logo_url: String,
}

pub struct Tables {
    providers: Vec<(bool, BillProvider)>, // (is_active, provider)
}

pub type Db = Source<Tables>;

cache_fn! {
    /// Either filter may be absent; each combination is its own key.
    #[cache(key = "bills:providers:<<category>>:<<country_code>>", ttl = 7200)]
    pub async fn get_bill_providers(
        db: &Db,
        category: Option<&str>,
        country_code: Option<&str>,
    ) -> Vec<BillProvider> {
        db.query_async(|t| {
            t.providers
                .iter()
                .filter(|(is_active, _)| *is_active)
                .map(|(_, p)| p)
                .filter(|p| category.is_none_or(|c| p.category == c))
                .filter(|p| country_code.is_none_or(|c| p.country == c))
                .cloned()
                .collect()
        })
        .await
    }

    #[invalidate("bills:providers:*")]
    pub async fn update_bill_provider(
        db: &Db,
        provider_id: &str,
        is_active: bool,
    ) -> Result<BillProvider, DbError> {
        db.write_async(|t| {
            let (active, provider) = t
                .providers
                .iter_mut()
                .find(|(_, p)| p.id == provider_id)
                .ok_or_else(|| DbError(format!("BillProvider {provider_id} does not exist")))?;
            *active = is_active;
            Ok(provider.clone())
        })
        .await
    }
}

fn seed() -> Tables {
    let provider = |id: &str, name: &str, category: &str, country: &str| {
        (
            true,
            BillProvider {
                id: id.into(),
                name: name.into(),
                category: category.into(),
                country: country.into(),
                logo_url: format!("https://cdn.example.com/logos/{id}.png"),
            },
        )
    };
    Tables {
        providers: vec![
            provider("bp-1", "Ikeja Electric", "electricity", "NG"),
            provider("bp-2", "Eko Electric", "electricity", "NG"),
            provider("bp-3", "DStv", "tv", "NG"),
            provider("bp-4", "KPLC", "electricity", "KE"),
        ],
    }
}

pub async fn flow() -> Trace {
    let db = Db::new(seed());
    let mut trace = Trace::new("bill_providers");

    get_bill_providers(&db, Some("electricity"), Some("NG")).await;
    trace.step("get_bill_providers(electricity, NG): miss", db.queries());
    get_bill_providers(&db, Some("electricity"), Some("NG")).await;
    trace.step(
        "get_bill_providers(electricity, NG) again: hit",
        db.queries(),
    );
    get_bill_providers(&db, None, None).await;
    trace.step("get_bill_providers(any, any): miss", db.queries());
    get_bill_providers(&db, None, None).await;
    trace.step("get_bill_providers(any, any) again: hit", db.queries());

    update_bill_provider(&db, "bp-2", false)
        .await
        .expect("update");
    trace.step(
        "update_bill_provider(bp-2): deletes bills:providers:*",
        db.queries(),
    );
    let fresh = get_bill_providers(&db, Some("electricity"), Some("NG")).await;
    trace.step("get_bill_providers(electricity, NG): miss", db.queries());
    assert_eq!(fresh.len(), 1, "the deactivated provider is gone");
    get_bill_providers(&db, None, None).await;
    trace.step("get_bill_providers(any, any): miss", db.queries());
    trace
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    flow().await.print();
    Ok(())
}
