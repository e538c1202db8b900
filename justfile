# Recipes for the usual tasks; `just test` is what CI runs.

# Every check and test, starting private redis-servers (installs redis-server if missing).
test:
    bash scripts/test.sh

# The quick start on the embedded store (set CACHE_URL=redis://… for Redis).
quickstart:
    cargo run --example quickstart

# Benchmarks against a private redis-server.
bench:
    cargo bench

# Benchmark 14 alone: codecs and compression (needs the `msgpack` and `compress` features).
bench-codec:
    CACHEABLE_BENCH_ONLY=14 cargo bench --bench compare --features msgpack,compress

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
