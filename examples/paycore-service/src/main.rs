//! The seed's PayCore resources as an axum service over PostgreSQL, cached with `cacheable`.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `DATABASE_URL` | PostgreSQL (`postgres://user@host:port/db`) | required |
//! | `CACHE_URL` | the cache's store (`redis://…`), as `cacheable::Config::from_env` reads it | the embedded store |
//! | `BIND` | address to listen on | `127.0.0.1:8080` |
//! | `CACHE_DISABLED` | `1`: every read queries PostgreSQL (a baseline) | caching on |
//! | `SEED_HISTORY` | past transactions seeded into an empty database | 20000 |
//! | `DB_POOL_SIZE` | PostgreSQL connections | 16 |
//!
//! It creates its tables and seed data on start, prints `listening on http://ADDR` once it
//! accepts connections, and serves Prometheus text at `/metrics`.

mod db;
mod http;
mod paycore;

use cacheable::{CacheManager, Config};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::sync::Arc;
use std::time::Duration;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match env(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v} is not a number")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();

    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ],
        )?
        .install_recorder()?;
    cacheable::describe_metrics();
    metrics::describe_counter!(
        "paycore_db_queries_total",
        "Statements sent to PostgreSQL, by statement name"
    );
    metrics::describe_counter!("http_requests_total", "HTTP requests, by route and status");
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request handling time, by route"
    );
    // Histograms keep their samples until rendered: drain them now and then even when no
    // one scrapes.
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });

    let url =
        env("DATABASE_URL").ok_or("DATABASE_URL is not set (postgres://user@host:port/db)")?;
    let db = db::Db::connect(&url, env_number("DB_POOL_SIZE", 16)?)?;
    db.migrate(env_number("SEED_HISTORY", 20_000i64)?)
        .await
        .map_err(|e| format!("creating the schema: {e}"))?;

    let mut config = Config::from_env()?;
    if env("CACHE_PREFIX").is_none() {
        config = config.prefix("paycore");
    }
    CacheManager::init(config)?;
    let cache_enabled = !matches!(
        env("CACHE_DISABLED")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("1" | "true" | "yes")
    );
    let store = if env("CACHE_URL").is_some() {
        "the store at CACHE_URL"
    } else {
        "the embedded store (CACHE_URL unset)"
    };
    if cache_enabled {
        log::info!("cache: {store}");
    } else {
        log::info!("cache: disabled (CACHE_DISABLED), every read queries PostgreSQL");
    }

    let state = Arc::new(http::AppState {
        db,
        cache_enabled,
        metrics,
    });
    let bind = env("BIND").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
