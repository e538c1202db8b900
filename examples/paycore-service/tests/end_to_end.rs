//! The service end to end: a private PostgreSQL and a private redis-server, the service's
//! binary on a free port, driven over HTTP. The data layer's statement counter at
//! `/metrics` (`paycore_db_queries_total`) proves which reads reached PostgreSQL.

mod pg;
#[path = "../../../tests/support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The service's process, killed on drop.
struct Service {
    child: Child,
    addr: String,
}

impl Service {
    fn start(database_url: &str, cache_url: &str) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_paycore-service"))
            .env("DATABASE_URL", database_url)
            .env("CACHE_URL", cache_url)
            .env("BIND", "127.0.0.1:0")
            .env("SEED_HISTORY", "3000")
            .env("RUST_LOG", "warn")
            .env_remove("CACHE_DISABLED")
            .env_remove("CACHE_PREFIX")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the paycore-service binary");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the service's first line");
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let status = child.wait();
            panic!("the service did not start (printed {line:?}, exit {status:?})");
        };
        Service {
            addr: addr.to_owned(),
            child,
        }
    }

    /// One HTTP/1.1 request on its own connection: the status and the body.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to the service");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the response");
        let raw = String::from_utf8(raw).expect("a UTF-8 response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let chunked = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (status, body)
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    fn send(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, text) = self.request(method, path, Some(&body));
        assert!(
            status == 200 || status == 201,
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap()
    }

    fn metrics(&self) -> String {
        let (status, body) = self.request("GET", "/metrics", None);
        assert_eq!(status, 200);
        body
    }

    /// Statements sent to PostgreSQL so far, summed over the statement names.
    fn queries(&self) -> u64 {
        sum(&self.metrics(), "paycore_db_queries_total{")
    }

    /// `GET path`, and how many statements it sent to PostgreSQL.
    fn get_counted(&self, path: &str) -> (Value, u64) {
        let before = self.queries();
        let value = self.get(path);
        (value, self.queries() - before)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// The sum of the samples whose line starts with `prefix` (a metric name and `{`, or a
/// name with some of its labels), in Prometheus text.
fn sum(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            let value = l.rsplit(' ').next().unwrap();
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("not a sample: {l}")) as u64
        })
        .sum()
}

fn wallet_balance(summary: &Value, wallet_id: &str) -> f64 {
    summary["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == wallet_id)
        .unwrap_or_else(|| panic!("no wallet {wallet_id} in {summary}"))["balance"]
        .as_f64()
        .unwrap()
}

#[test]
fn cached_reads_skip_postgres_and_mutations_show_on_the_next_read() {
    let postgres = pg::PgServer::start();
    let redis = support::RedisServer::start();
    let service = Service::start(&postgres.url(), &format!("{}0", redis.url()));

    // Wallet summary: one query on the miss, none on the hits.
    let summary_path = "/users/7/wallets/summary";
    let (first, queries) = service.get_counted(summary_path);
    assert_eq!(queries, 1, "a miss queries once");
    assert_eq!(first["total_wallets"], 2);
    for _ in 0..5 {
        let (again, queries) = service.get_counted(summary_path);
        assert_eq!(queries, 0, "a cached read does not query PostgreSQL");
        assert_eq!(again, first);
    }
    assert_eq!(
        redis.cli(&["EXISTS", "paycore:wallets:summary:7"]).trim(),
        "1",
        "the summary is in the private redis-server"
    );

    // Funding the wallet invalidates the summary: the very next read queries and sees it.
    let funded = service.send(
        "POST",
        "/users/7/wallets/w-7-ngn/fund",
        json!({ "amount_minor": 500_000 }),
    );
    assert_eq!(funded["amount"], 5000.0);
    let (after, queries) = service.get_counted(summary_path);
    assert_eq!(queries, 1);
    assert_eq!(
        wallet_balance(&after, "w-7-ngn"),
        wallet_balance(&first, "w-7-ngn") + 5000.0
    );
    // Another user's summary was not touched by user 7's mutation.
    service.get("/users/8/wallets/summary");
    let (_, queries) = service.get_counted("/users/8/wallets/summary");
    assert_eq!(queries, 0);

    // Recent transactions: a new transaction is first on the next read.
    let recent_path = "/users/7/transactions?limit=5";
    let (recent, queries) = service.get_counted(recent_path);
    assert_eq!(queries, 1);
    assert_eq!(recent[0]["id"], funded["id"], "the funding is the latest");
    assert_eq!(service.get_counted(recent_path).1, 0);
    let spent = service.send(
        "POST",
        "/users/7/transactions",
        json!({ "wallet_id": "w-7-ngn", "amount_minor": -25_000 }),
    );
    let (recent, queries) = service.get_counted(recent_path);
    assert_eq!(queries, 1);
    assert_eq!(recent[0]["id"], spent["id"]);
    assert_eq!(recent[0]["kind"], "debit");
    // An overdraft is refused, and then nothing is invalidated.
    let (status, _) = service.request(
        "POST",
        "/users/7/transactions",
        Some(&json!({ "wallet_id": "w-7-usd", "amount_minor": -1_000_000_000 })),
    );
    assert_eq!(status, 404);
    assert_eq!(service.get_counted(recent_path).1, 0);

    // Loan products: the filters are hashed into the key; each set is cached on its own.
    let filtered = "/loans/products/NGN?min_amount=500000";
    let (products, queries) = service.get_counted(filtered);
    assert_eq!((products.as_array().unwrap().len(), queries), (2, 1));
    assert_eq!(service.get_counted(filtered).1, 0);
    assert_eq!(service.get_counted("/loans/products/NGN").1, 1);
    assert_eq!(service.get_counted("/loans/products/NGN").1, 0);
    service.send(
        "POST",
        "/loans/products",
        json!({ "name": "Agric input loan", "currency": "NGN", "min_amount": 750_000,
                "max_amount": 5_000_000, "max_tenor_months": 9 }),
    );
    let (products, queries) = service.get_counted(filtered);
    assert_eq!((products.as_array().unwrap().len(), queries), (3, 1));
    assert_eq!(service.get_counted("/loans/products/NGN").1, 1);

    // Exchange rates: an update shows on the next read, and re-prices wallet summaries.
    let (rates, queries) = service.get_counted("/currencies/rates");
    assert_eq!(queries, 1);
    assert_eq!(rates["NGN"]["exchange_rate_usd"], 0.00065);
    assert_eq!(service.get_counted("/currencies/rates").1, 0);
    let before = service.get(summary_path);
    service.send("PUT", "/currencies/rates", json!({ "NGN": 0.001 }));
    let (rates, queries) = service.get_counted("/currencies/rates");
    assert_eq!(
        (rates["NGN"]["exchange_rate_usd"].as_f64(), queries),
        (Some(0.001), 1)
    );
    let (repriced, queries) = service.get_counted(summary_path);
    assert_eq!(queries, 1);
    assert!(
        repriced["total_balance_usd"].as_f64() > before["total_balance_usd"].as_f64(),
        "{before} then {repriced}"
    );

    // FAQs, bill providers and daily statistics: cached after the first read.
    for path in [
        "/support/faqs",
        "/support/faqs/wallets",
        "/bills/providers?category=electricity&country=NG",
        "/bills/providers",
        "/admin/stats/daily/2000-01-01",
    ] {
        let (value, queries) = service.get_counted(path);
        assert_eq!(queries, 1, "{path}: {value}");
        assert_eq!(service.get_counted(path), (value, 0), "{path}");
    }
    let electricity = service.get("/bills/providers?category=electricity&country=NG");
    assert_eq!(electricity.as_array().unwrap().len(), 2);

    // `/metrics` reports the hits by key template, next to the request metrics.
    let metrics = service.metrics();
    let summary_hits = sum(
        &metrics,
        "cacheable_hits_total{template=\"wallets:summary:<<user_id>>\"}",
    );
    let summary_misses = sum(
        &metrics,
        "cacheable_misses_total{template=\"wallets:summary:<<user_id>>\"}",
    );
    // Hits: 5 for user 7, 1 for user 8; misses: user 7 after each of its three
    // invalidations and at first, user 8 once.
    assert_eq!((summary_hits, summary_misses), (6, 5), "{metrics}");
    assert!(
        sum(
            &metrics,
            "cacheable_invalidated_keys_total{template=\"wallets:summary:*\"}"
        ) >= 1,
        "{metrics}"
    );
    assert!(
        metrics
            .contains("cacheable_compute_seconds_bucket{template=\"wallets:summary:<<user_id>>\""),
        "{metrics}"
    );
    let summary_requests = sum(
        &metrics,
        "http_requests_total{method=\"GET\",path=\"/users/{user_id}/wallets/summary\",status=\"200\"}",
    );
    assert_eq!(summary_requests, summary_hits + summary_misses, "{metrics}");
    assert_eq!(
        sum(&metrics, "cacheable_errors_total{"),
        0,
        "no store faults: {metrics}"
    );
}
