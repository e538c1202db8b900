//! What the real-world examples share: a stand-in data source that counts its queries,
//! start-up (logging, the global cache from the environment), and the trace a flow
//! prints and the tests check.
//!
//! Each example includes this module with `mod common;`; `tests/examples_flow.rs`
//! includes each example as a module and calls its `flow`.
#![allow(dead_code)]

use cacheable::{CacheManager, Config, Stats};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::Mutex;

/// Stands in for the database: tables of type `T` behind a lock, and a count of the
/// queries made, so that a run shows which calls reached the source.
pub struct Source<T> {
    tables: Mutex<T>,
    queries: AtomicU32,
}

/// A query or write that failed (a Django `DoesNotExist`, a constraint).
#[derive(Debug, Clone, PartialEq)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

impl<T> Source<T> {
    pub fn new(tables: T) -> Self {
        Source {
            tables: Mutex::new(tables),
            queries: AtomicU32::new(0),
        }
    }

    /// A read: counted.
    pub fn query<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        self.queries.fetch_add(1, SeqCst);
        read(&self.tables.lock().unwrap())
    }

    /// A read awaited as an async driver would be: counted.
    pub async fn query_async<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        tokio::task::yield_now().await;
        self.query(read)
    }

    /// A write: not counted as a query.
    pub fn write<R>(&self, change: impl FnOnce(&mut T) -> R) -> R {
        change(&mut self.tables.lock().unwrap())
    }

    /// An awaited write: not counted as a query.
    pub async fn write_async<R>(&self, change: impl FnOnce(&mut T) -> R) -> R {
        tokio::task::yield_now().await;
        self.write(change)
    }

    /// Queries made so far.
    pub fn queries(&self) -> u32 {
        self.queries.load(SeqCst)
    }
}

/// Start-up shared by the examples: log lines on stderr (`CACHE_DEBUG=1` adds the
/// `[Cache Debug]` lines), and the global cache from the environment: `CACHE_URL`
/// (a Redis URL), or the embedded store when it is unset.
pub fn init() -> Result<(), Box<dyn std::error::Error>> {
    let _ = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("cacheable=info"),
    )
    .format_timestamp(None)
    .format_target(false)
    .try_init();
    CacheManager::init(Config::from_env()?.prefix("paycore"))?;
    // Start clean, so that the first call is a miss even on a Redis that kept keys
    // from an earlier run.
    CacheManager::delete_pattern("*")?;
    let store = match std::env::var("CACHE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => "the embedded store".to_owned(),
    };
    println!("cache: {store}, prefix `paycore`");
    Ok(())
}

/// What a flow did, step by step: the source queries made so far and the global
/// cache's hits and misses since the flow began.
pub struct Trace {
    pub example: &'static str,
    pub steps: Vec<Step>,
    start: Stats,
}

pub struct Step {
    pub label: String,
    pub queries: u32,
    pub hits: u64,
    pub misses: u64,
}

impl Trace {
    pub fn new(example: &'static str) -> Trace {
        Trace {
            example,
            steps: Vec::new(),
            start: CacheManager::stats(),
        }
    }

    /// Records a step after it ran, with the source's query count at that point.
    pub fn step(&mut self, label: impl Into<String>, queries: u32) {
        let now = CacheManager::stats();
        self.steps.push(Step {
            label: label.into(),
            queries,
            hits: now.hits - self.start.hits,
            misses: now.misses - self.start.misses,
        });
    }

    /// `(label, queries so far)` for each step, as the tests compare them.
    pub fn queries(&self) -> Vec<(String, u32)> {
        self.steps
            .iter()
            .map(|s| (s.label.clone(), s.queries))
            .collect()
    }

    pub fn print(&self) {
        println!("\n== {}", self.example);
        println!(
            "{:<56} {:>14} {:>10} {:>8}",
            "step", "source queries", "cache hits", "misses"
        );
        for s in &self.steps {
            println!(
                "{:<56} {:>14} {:>10} {:>8}",
                s.label, s.queries, s.hits, s.misses
            );
        }
    }
}
