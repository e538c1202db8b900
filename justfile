# Recipes for the usual tasks; `just test` is what CI runs.

# Every check and test, starting private redis-servers (installs redis-server if missing).
test:
    bash scripts/test.sh

# The quick start on the embedded store (set CACHE_URL=redis://… for Redis).
quickstart:
    cargo run --example quickstart

# Benchmarks against a private redis-server, every section (14 needs `msgpack` and
# `compress`; CACHEABLE_BENCH_ONLY=1,4 runs only those named, CACHEABLE_BENCH_TAGS_10M=0
# skips the 10 M-key store of 13).
bench:
    cargo bench -p cacheable-dev --features msgpack,compress

# Benchmark 14 alone: codecs and compression (needs the `msgpack` and `compress` features).
bench-codec:
    CACHEABLE_BENCH_ONLY=14 cargo bench -p cacheable-dev --bench compare --features msgpack,compress

# Compile cost per cached function against `cached` (generated crates of 10 and 200
# functions: touch-and-rebuild, full recompile, expanded and LLVM IR lines); REPO defaults
# to this checkout.
bench-compile *REPO:
    bash scripts/bench-compile.sh {{REPO}}

fmt:
    cargo fmt --all

lint:
    cargo clippy --all-targets --all-features -- -D warnings

doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features --open

# The axum + PostgreSQL service on the machine's servers (PostgreSQL on 5432, database
# `test`; Redis on 6379): http://127.0.0.1:8080, metrics at /metrics.
service:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test CACHE_URL=redis://127.0.0.1:6379/0 cargo run --release -p paycore-service

# Load run of the service: cached vs CACHE_DISABLED=1 with wrk, on a private PostgreSQL
# and redis-server (BENCHMARKS.md, "The service under load"; about 2 minutes after the build).
load:
    bash scripts/load.sh

# The 10-minute combination soaks (examples/soak.rs): one server, a cluster and Sentinel,
# each with a cache with the near cache and one without, and another process; each kills,
# restarts and freezes its own private servers. SEED=N replays a run's draws.
soak SEED="":
    for b in single cluster sentinel; do cargo run --release --example soak -- --minutes 10 --backend $b {{ if SEED != "" { "--seed " + SEED } else { "" } }} || exit 1; done

# The invalidation races at 30,000 rounds each (the test command runs 3,000).
races:
    CACHEABLE_RACE_ROUNDS=30000 cargo nextest run --release --test invalidation_race

# Memory bounds: 1,000,000 distinct keys on the embedded store and on Redis with the near
# cache (examples/memory_bounds.rs).
memory-bounds:
    cargo run --release --example memory_bounds

# Each fuzz target for MINUTES (default 10) minutes: `cargo install cargo-fuzz` first; the
# targets build with the nightly toolchain (`rustup toolchain install nightly`).
fuzz MINUTES="10":
    cd fuzz && for t in template_parse pattern_escape json_hash glob_match; do cargo +nightly fuzz run $t -- -max_total_time=$(({{MINUTES}} * 60)) || exit 1; done
