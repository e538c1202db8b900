#!/usr/bin/env bash
# The project's one test command (README.md, CI): makes sure redis-server is there, then
# checks formatting, lints, docs, and runs every test. Tests start their own redis-server
# on free ports; none touches a server it did not start.
set -euo pipefail
cd "$(dirname "$0")/.."

ensure_redis() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return
  fi
  echo "redis-server is missing: installing it" >&2
  local sudo=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; fi
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null || true
  elif command -v dnf >/dev/null 2>&1; then
    $sudo dnf install -y redis >/dev/null || true
  elif command -v brew >/dev/null 2>&1; then
    brew install redis >/dev/null || true
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "error: redis-server is not installed and could not be installed here." >&2
    echo "       The tests need a real redis-server binary on PATH (they start their own)." >&2
    echo "       Install Redis 6.2 or newer (Debian: apt-get install redis-server) and rerun." >&2
    exit 1
  fi
}

step() { printf '\n== [%4ds] %s\n' "$SECONDS" "$*"; }

ensure_redis
echo "using $(redis-server --version)"
# The TLS test (feature `tls`) makes its certificates with the openssl command.
if ! command -v openssl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y -qq openssl >/dev/null 2>&1 || true
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "comments name no issue, date, CI run or machine"
bash scripts/check-comments.sh

step "cargo clippy -D warnings"
cargo clippy --all-targets --all-features -- -D warnings
# The dev member: the peer benchmark and the compile-failure tests.
cargo clippy -p cacheable-dev --all-targets --features msgpack,compress -- -D warnings

step "cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-features --no-fail-fast
else
  cargo test --all-features --lib --tests --examples --no-fail-fast
fi

step "compile-failure tests of cache_fn! (dev/tests/ui)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p cacheable-dev --no-default-features --no-fail-fast
else
  cargo test -p cacheable-dev --no-default-features --no-fail-fast
fi

step "doctests"
cargo test --all-features --doc

step "without default features: the embedded store alone, no Redis client"
# Every target is linted without the features; the tests run are the unit tests and those
# whose outcome depends on the features (a Redis URL refused, keys and values without the
# client) or that cover the embedded store end to end. The other suites run the same
# embedded-store code in the step above, with every feature on.
cargo clippy --no-default-features --all-targets -- -D warnings
no_default_tests=(--lib --test codec --test keys --test backends --test trust --test quickstart)
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-default-features --no-fail-fast "${no_default_tests[@]}"
else
  cargo test --no-default-features --no-fail-fast "${no_default_tests[@]}"
fi

step "combination soak: every option in any mix, two caches and another process, faults, on each store (examples/soak.rs)"
# Debug build (its dependencies are built for the tests already); the 10-minute runs are
# `just soak` (release). Each run prints its seed first and exits non-zero on a stale read
# or a caller-visible failure.
cargo build -q --all-features --example soak
for run in "memory 5" "single 10" "cluster 10" "sentinel 10"; do
  set -- $run
  cargo run -q --all-features --example soak -- --backend "$1" --seconds "$2" | grep -E "^soak seed|^stale reads|^caller-visible|^invalidations|^PASS|^FAIL|^first stale"
done

step "quickstart example (embedded store)"
# With the tests' features, so that it reuses their build (`cargo run --example quickstart`
# alone builds the default features, as README says).
env -u CACHE_URL RUST_LOG=warn cargo run -q --all-features --example quickstart >/dev/null
echo "quickstart ran"

# The axum + PostgreSQL service (examples/paycore-service, a workspace member of its own so
# that the steps above never build axum or the PostgreSQL driver): its lints, and its
# end-to-end test, which starts a private PostgreSQL (initdb + pg_ctl into a temporary
# folder, on a free port) and a private redis-server; never the servers on 5432 or 6379.
ensure_postgres() {
  if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
    return
  fi
  echo "PostgreSQL (initdb, pg_ctl) is missing: installing it" >&2
  local sudo=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; fi
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null || true
  elif command -v dnf >/dev/null 2>&1; then
    $sudo dnf install -y postgresql-server >/dev/null || true
  elif command -v brew >/dev/null 2>&1; then
    brew install postgresql >/dev/null || true
  fi
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    echo "error: PostgreSQL's initdb and pg_ctl are not installed and could not be installed here." >&2
    echo "       The service's end-to-end test starts its own PostgreSQL from them." >&2
    echo "       Install PostgreSQL 13 or newer (Debian: apt-get install postgresql) and rerun." >&2
    exit 1
  fi
}

step "paycore-service: clippy, and the end-to-end test on a private PostgreSQL and redis-server"
ensure_postgres
cargo clippy -p paycore-service --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p paycore-service --no-fail-fast
else
  cargo test -p paycore-service --no-fail-fast
fi
step "done"
