#!/usr/bin/env bash
# Load run of examples/paycore-service (BENCHMARKS.md, "The service under load"): starts a
# private PostgreSQL and a private redis-server on free ports in a temporary folder, the
# service in release mode, and drives one endpoint with wrk, once with caching and once
# with CACHE_DISABLED=1 (every read queries PostgreSQL): requests/s, p50, p99, and the
# statements PostgreSQL received per second (the service's paycore_db_queries_total).
# Never touches the servers on 5432 or 6379; everything it starts it stops.
#
#   bash scripts/load.sh                    # or: just load
#   DURATION=20s CONNECTIONS=64 HISTORY=100000 bash scripts/load.sh
#
# The endpoint is GET /admin/stats/daily/{date}, the seed's Example 8: an aggregation over
# one day of HISTORY seeded transactions, which no index serves, so PostgreSQL scans the
# table (its execution time is printed first; it must be 5 ms or more for the comparison
# to mean what BENCHMARKS.md says).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
HISTORY=${HISTORY:-40000}
ENDPOINT_DATE=${ENDPOINT_DATE:-$(date -u -d '-10 days' +%F)}
PATH_UNDER_LOAD="/admin/stats/daily/$ENDPOINT_DATE"

need() {
  command -v "$1" >/dev/null 2>&1 && return
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "$1 is missing: installing $2" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; } || true
  fi
  command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is not installed (Debian: apt-get install $2)" >&2; exit 1; }
}
need wrk wrk
need curl curl
need redis-server redis-server

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pg_bin" ] && command -v initdb >/dev/null 2>&1; then pg_bin=$(dirname "$(command -v initdb)"); fi
if [ -z "$pg_bin" ]; then
  need initdb postgresql
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

tmp=$(mktemp -d /tmp/paycore-load.XXXXXX)
chmod 755 "$tmp"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$tmp"
  as_pg=(runuser -u postgres --)
fi
service_pid=""
redis_pid=""
cleanup() {
  set +e
  if [ -n "$service_pid" ]; then kill "$service_pid" 2>/dev/null; wait "$service_pid" 2>/dev/null; fi
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; fi
  if [ -d "$tmp/data" ]; then "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null 2>&1; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "building the service (release)" >&2
cargo build -q --release -p paycore-service
bin="${CARGO_TARGET_DIR:-target}/release/paycore-service"

pg_port=$(free_port)
"${as_pg[@]}" "$pg_bin/initdb" -D "$tmp/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/data" -l "$tmp/pg.log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $tmp -c max_connections=60 -c shared_buffers=256MB" start >/dev/null
database_url="postgres://postgres@127.0.0.1:$pg_port/postgres"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >/dev/null &
redis_pid=$!

start_service() {
  local port
  port=$(free_port)
  # Emptied here, not by the redirection below, which runs in the background job.
  rm -f "$tmp/service.out"
  DATABASE_URL=$database_url CACHE_URL="redis://127.0.0.1:$redis_port/0" BIND="127.0.0.1:$port" \
    SEED_HISTORY=$HISTORY RUST_LOG=warn "$@" "$bin" >"$tmp/service.out" 2>"$tmp/service.err" &
  service_pid=$!
  for _ in $(seq 600); do
    grep -qs "listening on" "$tmp/service.out" && break
    kill -0 "$service_pid" 2>/dev/null || { cat "$tmp/service.err" >&2; exit 1; }
    sleep 0.1
  done
  grep -qs "listening on" "$tmp/service.out" || { echo "error: the service did not start" >&2; cat "$tmp/service.err" >&2; exit 1; }
  base="http://127.0.0.1:$port"
}

stop_service() {
  kill "$service_pid" 2>/dev/null || true
  wait "$service_pid" 2>/dev/null || true
  service_pid=""
}

queries() {
  curl -fsS "$base/metrics" | awk '/^paycore_db_queries_total\{/ { n += $NF } END { printf "%d", n }'
}

to_ms() { # 1.23ms, 850.00us, 1.02s
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
  }'
}

rows=()
measure() {
  local label=$1
  shift
  start_service "$@"
  curl -fsS "$base$PATH_UNDER_LOAD" >/dev/null # the cached run's one miss; warms PostgreSQL
  local before after
  before=$(queries)
  # A generous timeout: a slow answer counts in the latencies rather than as an error.
  wrk --latency --timeout 30s -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$base$PATH_UNDER_LOAD" >"$tmp/wrk.out"
  after=$(queries)
  stop_service
  cat "$tmp/wrk.out" >&2
  local rps p50 p99 secs errors
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.out")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$tmp/wrk.out")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$tmp/wrk.out")")
  secs=$(awk '/requests in/ { v = $4; sub(/,$/, "", v); sub(/s$/, "", v); print v }' "$tmp/wrk.out")
  errors=$(awk '/Non-2xx|Socket errors/ { print }' "$tmp/wrk.out")
  [ -z "$errors" ] || { echo "error: the load run met errors: $errors" >&2; exit 1; }
  local qps
  qps=$(awk -v q=$((after - before)) -v s="$secs" 'BEGIN { printf "%.1f", q / s }')
  rows+=("| $label | $rps | $p50 | $p99 | $qps | $((after - before)) |")
  eval "${label//[^a-z]/_}_rps=$rps; ${label//[^a-z]/_}_qps=$qps"
}

echo "seeding $HISTORY transactions and measuring the query" >&2
start_service
stop_service
explain=$(psql -X -q -At -h 127.0.0.1 -p "$pg_port" -U postgres postgres -c "
  EXPLAIN (ANALYZE, TIMING OFF)
  SELECT w.currency_code, count(*), coalesce(sum(t.amount_minor), 0)::bigint,
         count(*) FILTER (WHERE t.status = 'failed'), count(DISTINCT t.user_id)
  FROM transactions t JOIN wallets w ON w.id = t.wallet_id
  WHERE (t.created_at AT TIME ZONE 'UTC')::date = '$ENDPOINT_DATE'::date
  GROUP BY w.currency_code" | awk '/Execution Time/ { print $3 }')

measure "cached" 
measure "uncached" env CACHE_DISABLED=1

echo
echo "GET $PATH_UNDER_LOAD: one day's aggregate over $HISTORY transactions, query execution time ${explain} ms alone (EXPLAIN ANALYZE)"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency --timeout 30s, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) after the run"
echo
echo "| endpoint | requests/s | p50 ms | p99 ms | DB queries/s | DB queries in the run |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
awk -v c="$cached_rps" -v u="$uncached_rps" -v cq="$cached_qps" -v uq="$uncached_qps" 'BEGIN {
  printf "\ncached / uncached: %.1fx the requests/s; %.3f%% fewer DB queries per request\n",
    c / u, 100 * (1 - (cq / c) / (uq / u))
}'
