//! Routes, handlers, and the request metrics.

use crate::db::{Db, DbError};
use crate::paycore::{self, LoanFilters, NewLoanProduct};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

pub struct AppState {
    pub db: Db,
    /// `CACHE_DISABLED=1`: every read goes to PostgreSQL (the load run's baseline).
    pub cache_enabled: bool,
    pub metrics: PrometheusHandle,
}

type Shared = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/loans/products/{currency}", get(loan_products))
        .route("/loans/products", post(create_loan_product))
        .route("/users/{user_id}/wallets/summary", get(wallet_summary))
        .route(
            "/users/{user_id}/wallets/{wallet_id}/fund",
            post(fund_wallet),
        )
        .route(
            "/users/{user_id}/transactions",
            get(recent_transactions).post(create_transaction),
        )
        .route(
            "/currencies/rates",
            get(exchange_rates).put(update_exchange_rates),
        )
        .route("/support/faqs", get(all_faqs))
        .route("/support/faqs/{category}", get(faqs_by_category))
        .route("/bills/providers", get(bill_providers))
        .route("/admin/stats/daily/{date}", get(daily_stats))
        .route("/metrics", get(render_metrics))
        .route("/health", get(|| async { "ok" }))
        .route_layer(middleware::from_fn(track))
        .with_state(state)
}

/// `http_requests_total{method,path,status}` and `http_request_duration_seconds{method,path}`,
/// by route template (`/users/{user_id}/wallets/summary`), not by raw path.
async fn track(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("http_request_duration_seconds", "method" => method.clone(), "path" => path.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "method" => method, "path" => path, "status" => status)
        .increment(1);
    response
}

pub struct AppError(StatusCode, String);

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound(m) => AppError(StatusCode::NOT_FOUND, m),
            DbError::Invalid(m) => AppError(StatusCode::UNPROCESSABLE_ENTITY, m),
            DbError::Postgres(m) => {
                log::error!("{m}");
                AppError(StatusCode::INTERNAL_SERVER_ERROR, m)
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

type Reply<T> = Result<Json<T>, AppError>;

async fn loan_products(
    State(s): Shared,
    Path(currency): Path<String>,
    Query(filters): Query<LoanFilters>,
) -> Reply<Vec<paycore::LoanProduct>> {
    Ok(Json(if s.cache_enabled {
        paycore::get_loan_products(&s.db, &currency, &filters).await?
    } else {
        paycore::load_loan_products(&s.db, &currency, &filters).await?
    }))
}

async fn create_loan_product(
    State(s): Shared,
    Json(data): Json<NewLoanProduct>,
) -> Result<(StatusCode, Json<paycore::LoanProduct>), AppError> {
    let product = paycore::create_loan_product(&s.db, &data).await?;
    Ok((StatusCode::CREATED, Json(product)))
}

async fn wallet_summary(
    State(s): Shared,
    Path(user_id): Path<i64>,
) -> Reply<paycore::WalletSummary> {
    Ok(Json(if s.cache_enabled {
        paycore::get_wallet_summary(&s.db, user_id).await?
    } else {
        paycore::load_wallet_summary(&s.db, user_id).await?
    }))
}

#[derive(Deserialize)]
struct Amount {
    /// Minor units (kobo, cents).
    amount_minor: i64,
}

async fn fund_wallet(
    State(s): Shared,
    Path((user_id, wallet_id)): Path<(i64, String)>,
    Json(body): Json<Amount>,
) -> Result<(StatusCode, Json<paycore::Transaction>), AppError> {
    let t = paycore::fund_wallet(&s.db, user_id, &wallet_id, body.amount_minor).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn recent_transactions(
    State(s): Shared,
    Path(user_id): Path<i64>,
    Query(q): Query<Limit>,
) -> Reply<Vec<paycore::Transaction>> {
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    Ok(Json(if s.cache_enabled {
        paycore::get_recent_transactions(&s.db, user_id, limit).await?
    } else {
        paycore::load_recent_transactions(&s.db, user_id, limit).await?
    }))
}

#[derive(Deserialize)]
struct NewTransaction {
    wallet_id: String,
    amount_minor: i64,
}

async fn create_transaction(
    State(s): Shared,
    Path(user_id): Path<i64>,
    Json(body): Json<NewTransaction>,
) -> Result<(StatusCode, Json<paycore::Transaction>), AppError> {
    let t = paycore::create_transaction(&s.db, user_id, &body.wallet_id, body.amount_minor).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

async fn exchange_rates(State(s): Shared) -> Reply<BTreeMap<String, paycore::Rate>> {
    Ok(Json(if s.cache_enabled {
        paycore::get_exchange_rates(&s.db).await?
    } else {
        paycore::load_exchange_rates(&s.db).await?
    }))
}

async fn update_exchange_rates(
    State(s): Shared,
    Json(rates): Json<BTreeMap<String, f64>>,
) -> Reply<Vec<String>> {
    Ok(Json(paycore::update_exchange_rates(&s.db, &rates).await?))
}

async fn all_faqs(State(s): Shared) -> Reply<Vec<paycore::Faq>> {
    Ok(Json(if s.cache_enabled {
        paycore::get_all_faqs(&s.db).await?
    } else {
        paycore::load_faqs(&s.db, None).await?
    }))
}

async fn faqs_by_category(
    State(s): Shared,
    Path(category): Path<String>,
) -> Reply<Vec<paycore::Faq>> {
    Ok(Json(if s.cache_enabled {
        paycore::get_faqs_by_category(&s.db, &category).await?
    } else {
        paycore::load_faqs(&s.db, Some(&category)).await?
    }))
}

#[derive(Deserialize)]
struct ProviderQuery {
    category: Option<String>,
    country: Option<String>,
}

async fn bill_providers(
    State(s): Shared,
    Query(q): Query<ProviderQuery>,
) -> Reply<Vec<paycore::BillProvider>> {
    let (category, country) = (q.category.as_deref(), q.country.as_deref());
    Ok(Json(if s.cache_enabled {
        paycore::get_bill_providers(&s.db, category, country).await?
    } else {
        paycore::load_bill_providers(&s.db, category, country).await?
    }))
}

async fn daily_stats(State(s): Shared, Path(date): Path<String>) -> Reply<paycore::DailyStats> {
    // Checked here so that a malformed date is a 422, not a database error.
    let valid = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !valid {
        return Err(AppError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "date must be YYYY-MM-DD".into(),
        ));
    }
    Ok(Json(if s.cache_enabled {
        paycore::get_daily_stats(&s.db, &date).await?
    } else {
        paycore::load_daily_stats(&s.db, &date).await?
    }))
}

async fn render_metrics(State(s): Shared) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
