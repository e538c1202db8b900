//! The seed README's Example 4, Support FAQs: FAQs by category and all FAQs, cached for
//! an hour, invalidated when an FAQ is created or updated.
//!
//! ```text
//! cargo run --example faqs
//! CACHE_URL=redis://127.0.0.1:6379/1 CACHE_DEBUG=1 cargo run --example faqs
//! ```

mod common;

use cacheable::cache_fn;
use common::{DbError, Source, Trace};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Faq {
    pub id: String,
    pub question: String,
    pub answer: String,
    pub category: String,
}

#[derive(Debug, Clone)]
pub struct FaqInput {
    pub question: String,
    pub answer: String,
    pub category: String,
}

pub struct Tables {
    faqs: Vec<(u32, bool, Faq)>, // (order, is_active, faq)
}

pub type Db = Source<Tables>;

fn active(t: &Tables, category: Option<&str>) -> Vec<Faq> {
    let mut rows: Vec<&(u32, bool, Faq)> = t
        .faqs
        .iter()
        .filter(|(_, is_active, f)| *is_active && category.is_none_or(|c| f.category == c))
        .collect();
    rows.sort_by(|a, b| (&a.2.category, a.0).cmp(&(&b.2.category, b.0)));
    rows.into_iter().map(|(_, _, f)| f.clone()).collect()
}

cache_fn! {
    // As in the seed, a category named `all` would share `get_all_faqs`'s key; name
    // the two keys apart in an application that allows such a category.
    #[cache(key = "support:faqs:<<category>>", ttl = 3600)]
    pub async fn get_faqs_by_category(db: &Db, category: &str) -> Vec<Faq> {
        db.query_async(|t| active(t, Some(category))).await
    }

    #[cache(key = "support:faqs:all", ttl = 3600)]
    pub async fn get_all_faqs(db: &Db) -> Vec<Faq> {
        db.query_async(|t| active(t, None)).await
    }

    /// Creates an FAQ without an id, updates the one with it; an unknown id is an `Err`.
    #[invalidate("support:faqs:*")]
    pub async fn create_or_update_faq(
        db: &Db,
        faq_id: Option<&str>,
        data: FaqInput,
    ) -> Result<Faq, DbError> {
        db.write_async(|t| {
            let faq = match faq_id {
                Some(id) => {
                    let (_, _, faq) = t
                        .faqs
                        .iter_mut()
                        .find(|(_, _, f)| f.id == id)
                        .ok_or_else(|| DbError(format!("FAQ {id} does not exist")))?;
                    faq.question = data.question;
                    faq.answer = data.answer;
                    faq.category = data.category;
                    faq.clone()
                }
                None => {
                    let faq = Faq {
                        id: format!("faq-{}", t.faqs.len() + 1),
                        question: data.question,
                        answer: data.answer,
                        category: data.category,
                    };
                    t.faqs.push((t.faqs.len() as u32 + 1, true, faq.clone()));
                    faq
                }
            };
            Ok(faq)
        })
        .await
    }
}

fn seed() -> Tables {
    let faq = |id: &str, category: &str, question: &str| Faq {
        id: id.into(),
        question: question.into(),
        answer: format!("See the help centre about: {question}"),
        category: category.into(),
    };
    Tables {
        faqs: vec![
            (1, true, faq("faq-1", "cards", "How do I freeze my card?")),
            (2, true, faq("faq-2", "cards", "Where is my card?")),
            (1, true, faq("faq-3", "loans", "How is interest charged?")),
        ],
    }
}

pub async fn flow() -> Trace {
    let db = Db::new(seed());
    let mut trace = Trace::new("faqs");

    get_faqs_by_category(&db, "cards").await;
    trace.step("get_faqs_by_category(cards): miss", db.queries());
    get_faqs_by_category(&db, "cards").await;
    trace.step("get_faqs_by_category(cards) again: hit", db.queries());
    get_all_faqs(&db).await;
    trace.step("get_all_faqs: miss", db.queries());
    get_all_faqs(&db).await;
    trace.step("get_all_faqs again: hit", db.queries());

    let question = FaqInput {
        question: "Can I have two cards?".into(),
        answer: "Yes, one virtual and one physical.".into(),
        category: "cards".into(),
    };
    create_or_update_faq(&db, Some("faq-404"), question.clone())
        .await
        .expect_err("unknown FAQ");
    trace.step(
        "create_or_update_faq(faq-404): Err, deletes nothing",
        db.queries(),
    );
    get_all_faqs(&db).await;
    trace.step("get_all_faqs: still a hit", db.queries());

    create_or_update_faq(&db, None, question)
        .await
        .expect("create");
    trace.step(
        "create_or_update_faq(new): deletes support:faqs:*",
        db.queries(),
    );
    let cards = get_faqs_by_category(&db, "cards").await;
    trace.step("get_faqs_by_category(cards): miss", db.queries());
    assert_eq!(cards.len(), 3, "the new FAQ is served");
    get_all_faqs(&db).await;
    trace.step("get_all_faqs: miss", db.queries());
    trace
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init()?;
    flow().await.print();
    Ok(())
}
