#!/usr/bin/env bash
# Benchmark 8 (BENCHMARKS.md): the clean `cargo build` time of a tiny crate that defines one
# cached async function, three ways:
#   cache_fn      cacheable's `cache_fn!` macro
#   builder       cacheable's `Cacheable` builder, which `cache_fn!` expands to
#   cached        `cached`'s `#[concurrent_cached]` (the 1.0+ name of `#[io_cached]`) on
#                 its `AsyncRedisCache`
# Each crate starts from an empty target directory and this repository's Cargo.lock, so the
# versions are the ones the bench itself uses. Dependencies are fetched before the clock
# starts: no download is timed. `cargo bench` runs this script; it also runs on its own.
#
# Prints one line per variant: `build-time <variant> <wall seconds> <CPU seconds>`, or
# `build-time <variant> unavailable <first error line>` when the crate does not compile.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/cacheable-build-time.XXXXXX")"
trap 'rm -rf "$work"' EXIT
jobs="${CARGO_BUILD_JOBS:-2}"

common_deps='serde = { version = "1", features = ["derive"] }
tokio = { version = "1", features = ["rt", "macros"] }'

profile='#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    pub id: i64,
    pub name: String,
}'

main_rs='#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = get_user_profile(1);
}'

make_crate() { # name, dependency line, lib body
  local dir="$work/$1"
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<TOML
[package]
name = "tiny-$1"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$2
$common_deps

[workspace]
TOML
  printf '%s\n\n%s\n\n%s\n' "$profile" "$3" "$main_rs" >"$dir/src/main.rs"
  cp "$root/Cargo.lock" "$dir/Cargo.lock"
}

make_crate cache_fn "cacheable = { path = \"$root\" }" 'cacheable::cache_fn! {
    #[cache(key = "user:<<user_id>>:profile", ttl = 600)]
    pub async fn get_user_profile(user_id: i64) -> Profile {
        Profile { id: user_id, name: format!("user {user_id}") }
    }
}'

make_crate builder "cacheable = { path = \"$root\" }" 'pub async fn get_user_profile(user_id: i64) -> Profile {
    cacheable::Cacheable::new("user:<<user_id>>:profile")
        .ttl(600)
        .run_async(cacheable::ctx! { user_id }, || async move {
            Profile { id: user_id, name: format!("user {user_id}") }
        })
        .await
}'

make_crate cached 'cached = { version = "4.1", features = ["redis_tokio", "async"] }' '#[cached::macros::concurrent_cached(
    redis = true,
    ttl_secs = 600,
    map_error = r##"|e| format!("{e:?}")"##
)]
pub async fn get_user_profile(user_id: i64) -> Result<Profile, String> {
    Ok(Profile { id: user_id, name: format!("user {user_id}") })
}'

for variant in cache_fn builder cached; do
  dir="$work/$variant"
  (cd "$dir" && cargo fetch -q >/dev/null 2>&1) || true
  # Wall time, and the CPU time (user + system) of cargo and every rustc it runs: on a
  # machine shared with other builds the CPU time is the steadier figure.
  TIMEFORMAT='%R %U %S'
  if { time (cd "$dir" && CARGO_TARGET_DIR="$dir/target" cargo build -q --offline -j "$jobs" >"$dir/build.log" 2>&1); } 2>"$dir/time.txt"; then
    read -r real user sys <"$dir/time.txt"
    echo "build-time $variant $real $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')"
  else
    reason=$(grep -m1 -E '^error' "$dir/build.log" || tail -n1 "$dir/build.log")
    echo "build-time $variant unavailable $reason"
  fi
done
