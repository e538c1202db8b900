#!/usr/bin/env bash
# Compile cost per cached function, `cacheable`'s `cache_fn!` against `cached`'s
# `#[concurrent_cached]`, measured side by side on generated crates.
#
# Usage: scripts/bench-compile.sh [REPO]
#   REPO   the `cacheable` checkout to measure (default: the repository this script is in);
#          e.g. `scripts/bench-compile.sh /work/some-old-checkout` measures an older version
#          with this same script. Its Cargo.lock is the one every generated crate starts from.
#          A copy of it is measured, taken when the script starts.
# Environment:
#   RUNS=5              timed runs of each measurement (the median is reported)
#   CARGO_BUILD_JOBS=2  cargo's `-j`
#   SIZES="10 200"      the two crate sizes (the per-function figures are their difference)
#   CACHE_FN_GROUP=1    functions per `cache_fn!` invocation (1: one invocation each)
#   KEEP_WORK=1         keep the temporary directory (crates, logs, expansions) for a look
#
# Four library crates are generated in a temporary directory: `cacheable` and `cached`, each
# with N = 10 and N = 200 cached functions. Functions alternate async (even i) and sync
# (odd i); each is `f{i}(id: u64, q: &Query) -> Result<Item, String>` keyed on the integer
# argument and a field of the struct argument:
#   cacheable   `#[cache(key = "f{i}:<<id>>:<<q.tenant>>", ttl = 600)]` inside `cache_fn!`,
#               with `cacheable = { path = REPO }`; only the public macro syntax is used.
#   cached      `#[concurrent_cached(redis = true, key = "String", convert = …)]`, the key
#               `format!("f{i}:{id}:{}", q.tenant)`: on an async function it builds an
#               `AsyncRedisCache`, on a sync one a (blocking, r2d2-pooled) `RedisCache`, so
#               `cached` 4.1 covers both halves with the same attribute. Features
#               `redis_tokio` and `async` (`redis_tokio` includes `redis_store`, the sync
#               store), as in the `compare` bench.
# The crates are libraries: their non-generic `pub fn`s and the state machines of their
# `pub async fn`s are code-generated in the crate itself, with every generic they use.
#
# Measurements, all with `-j $CARGO_BUILD_JOBS` and the dev profile, dependencies built
# before any clock starts (and `cargo fetch` before that: no download is timed):
#   touch        `touch src/lib.rs`, then the timed `cargo build`, incremental: the
#                edit-compile loop.
#   full         `cargo clean -p <crate>`, then the timed `CARGO_INCREMENTAL=0 cargo build`:
#                the crate recompiled from nothing, as in CI and release builds (deps stay).
#   expanded     lines of `RUSTC_BOOTSTRAP=1 cargo rustc -- -Zunpretty=expanded`.
#   llvm-ir      `cargo llvm-lines` total (installed from crates.io if missing).
# Wall time is the figure; CPU time (user + system of cargo and every rustc it runs) is
# printed beside it, since it moves less with other builds on a shared machine. The timed
# runs of the four crates interleave, so a slow spell of the machine hits all of them.
# Timing is done here (`time`), not with hyperfine, to interleave and to get CPU time.
# Incremental and non-incremental builds use two target directories, so that neither
# invalidates the other's build of the path dependency.
#
# Per-function figures are (N=200 − N=10) / 190: the crate's fixed costs (loading its deps'
# metadata, writing the rlib, the `Query`/`Item` derives) cancel out.
set -euo pipefail
started=$(date -u '+%Y-%m-%d %H:%M UTC')
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "${1:-$here}" && pwd)"
runs="${RUNS:-5}"
jobs="${CARGO_BUILD_JOBS:-2}"
group="${CACHE_FN_GROUP:-1}"
read -r -a sizes <<<"${SIZES:-10 200}"
variants=(cacheable cached)
work="$(mktemp -d "${TMPDIR:-/tmp}/cacheable-bench-compile.XXXXXX")"
if [[ "${KEEP_WORK:-}" == 1 ]]; then
  echo "work directory kept: $work" >&2
else
  trap 'rm -rf "$work"' EXIT
fi
[[ -f "$root/Cargo.lock" ]] || { echo "no Cargo.lock in $root" >&2; exit 1; }

# The measured sources are a copy taken now (without target/ and .git), so that commits or
# edits landing in REPO during the run neither mix versions nor trigger a timed rebuild of
# the dependency. Uncommitted changes in REPO are part of the copy.
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
dirty=""
[[ -n "$(git -C "$root" status --porcelain 2>/dev/null || true)" ]] && dirty=" (with uncommitted changes)"
repo="$work/cacheable"
mkdir -p "$repo"
tar -C "$root" --exclude=./target --exclude=./.git -cf - . | tar -C "$repo" -xf -

if ! cargo llvm-lines --version >/dev/null 2>&1; then
  echo "installing cargo-llvm-lines from crates.io" >&2
  cargo install cargo-llvm-lines --locked -q
fi

# ---- crates ----------------------------------------------------------------------------

types='use serde::{Deserialize, Serialize};

/// The struct argument; its `tenant` field is part of every key.
#[derive(Serialize)]
pub struct Query {
    pub tenant: String,
    pub page: u32,
}

/// The cached value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Item {
    pub id: u64,
    pub tenant: String,
    pub n: u64,
}'

body() { # i: the function body, the same in both variants
  echo "        Ok(Item { id, tenant: q.tenant.clone(), n: id.wrapping_mul($1) + u64::from(q.page) })"
}
asyncness() { (($1 % 2 == 0)) && echo "async " || true; }

gen_cacheable() { # n
  local i
  echo "$types"
  for ((i = 0; i < $1; i++)); do
    ((i % group == 0)) && printf '\ncacheable::cache_fn! {\n'
    cat <<RS
    #[cache(key = "f$i:<<id>>:<<q.tenant>>", ttl = 600)]
    pub $(asyncness "$i")fn f$i(id: u64, q: &Query) -> Result<Item, String> {
$(body "$i")
    }
RS
    ((i % group == group - 1 || i == $1 - 1)) && echo '}'
  done
}

gen_cached() { # n
  local i
  echo "$types"
  for ((i = 0; i < $1; i++)); do
    cat <<RS

#[cached::macros::concurrent_cached(
    redis = true,
    ttl_secs = 600,
    key = "String",
    convert = r#"{ format!("f$i:{}:{}", id, q.tenant) }"#,
    map_error = r##"|e| format!("{e:?}")"##
)]
pub $(asyncness "$i")fn f$i(id: u64, q: &Query) -> Result<Item, String> {
$(body "$i")
}
RS
  done
}

make_crate() { # variant, n
  local name="bench-$1-$2" dep
  local dir="$work/$name"
  case $1 in
    cacheable) dep="cacheable = { path = \"$repo\" }" ;;
    cached) dep='cached = { version = "4.1", features = ["redis_tokio", "async"] }' ;;
  esac
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<TOML
[package]
name = "$name"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$dep
serde = { version = "1", features = ["derive"] }

[workspace]
TOML
  "gen_$1" "$2" >"$dir/src/lib.rs"
  cp "$repo/Cargo.lock" "$dir/Cargo.lock"
}

crates=()
for v in "${variants[@]}"; do
  for n in "${sizes[@]}"; do
    make_crate "$v" "$n"
    crates+=("bench-$v-$n")
  done
done

# ---- helpers ---------------------------------------------------------------------------

inc_target="$work/target-incremental"
full_target="$work/target-full"

cargo_in() { # crate, target dir, subcommand, args…: cargo in the crate's directory, offline
  local crate=$1 target=$2 sub=$3
  shift 3
  (cd "$work/$crate" && CARGO_TARGET_DIR="$target" cargo "$sub" --offline -j "$jobs" "$@")
}

build_or_die() { # crate, target dir, environment (VAR=value…)
  local log="$work/$1.build.log"
  if ! (cd "$work/$1" && env "${@:3}" CARGO_TARGET_DIR="$2" cargo build --offline -j "$jobs") \
    >"$log" 2>&1; then
    echo "error: $1 does not build:" >&2
    grep -m5 -A8 -E '^error' "$log" >&2 || tail -n 30 "$log" >&2
    exit 1
  fi
}

timed() { # file, command…: runs it, appends "wall cpu" (seconds) to file; fails if it fails
  local file=$1 t real user sys
  shift
  TIMEFORMAT='%3R %3U %3S'
  t=$({ time "$@" >>"$work/timed.log" 2>&1; } 2>&1) || {
    echo "error: $* failed, see below" >&2
    tail -n 30 "$work/timed.log" >&2
    exit 1
  }
  read -r real user sys <<<"$t"
  awk -v r="$real" -v u="$user" -v s="$sys" 'BEGIN { printf "%s %.3f\n", r, u + s }' >>"$file"
}

# The preparations (touch, clean -p) run before the clock starts.
touch_src() { touch "$work/$1/src/lib.rs"; }
inc_build() { cargo_in "$1" "$inc_target" build; }
clean_crate() { (cd "$work/$1" && CARGO_TARGET_DIR="$full_target" cargo clean -q -p "$1"); }
full_build() { (export CARGO_INCREMENTAL=0 && cargo_in "$1" "$full_target" build); }

median() { # file, column: the median of that column
  sort -g -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c }
    END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ---- dependencies, then the clock ------------------------------------------------------

echo "fetching and building dependencies (not timed)…" >&2
for c in "${crates[@]}"; do
  (cd "$work/$c" && cargo fetch -q)
  build_or_die "$c" "$inc_target"
  build_or_die "$c" "$full_target" CARGO_INCREMENTAL=0
  touch_src "$c" # a first touch-rebuild, so that each timed one finds the same state
  inc_build "$c" >>"$work/timed.log" 2>&1
done

echo "timing: $runs runs of each measurement, -j $jobs…" >&2
for ((r = 1; r <= runs; r++)); do
  for c in "${crates[@]}"; do
    touch_src "$c"
    timed "$work/$c.touch" inc_build "$c"
    clean_crate "$c"
    timed "$work/$c.full" full_build "$c"
  done
done

echo "counting LLVM IR and expanded lines…" >&2
# Both in the incremental target directory, whose build of the path dependency matches what
# `cargo llvm-lines` asks for (it unsets CARGO_INCREMENTAL). All IR counts come first:
# RUSTC_BOOTSTRAP reruns the build scripts that watch it (proc-macro2), so the expansions,
# which need it, come last rather than alternating with builds that do not set it.
for c in "${crates[@]}"; do
  cargo_in "$c" "$inc_target" llvm-lines --lib >"$work/$c.llvm-lines" 2>"$work/$c.llvm.log" ||
    { cat "$work/$c.llvm.log" >&2; exit 1; }
  awk '/\(TOTAL\)/ { print $1; exit }' "$work/$c.llvm-lines" >"$work/$c.llvm"
  [[ -s "$work/$c.llvm" ]] || { echo "no (TOTAL) line from cargo llvm-lines for $c" >&2; exit 1; }
done
for c in "${crates[@]}"; do
  RUSTC_BOOTSTRAP=1 cargo_in "$c" "$inc_target" rustc -q --lib -- -Zunpretty=expanded \
    >"$work/$c.expanded.rs" 2>"$work/$c.expand.log" ||
    { cat "$work/$c.expand.log" >&2; exit 1; }
  wc -l <"$work/$c.expanded.rs" >"$work/$c.expanded"
done

# ---- report ----------------------------------------------------------------------------

value() { # crate, measurement: one number (seconds for times, lines otherwise)
  case $2 in
    touch-wall) median "$work/$1.touch" 1 ;;
    touch-cpu) median "$work/$1.touch" 2 ;;
    full-wall) median "$work/$1.full" 1 ;;
    full-cpu) median "$work/$1.full" 2 ;;
    expanded) cat "$work/$1.expanded" ;;
    llvm) cat "$work/$1.llvm" ;;
  esac
}

measures=(touch-wall touch-cpu full-wall full-cpu expanded llvm)
labels=("touch-and-rebuild, wall ms" "touch-and-rebuild, CPU ms" "full recompile, wall ms"
  "full recompile, CPU ms" "expanded lines" "LLVM IR lines")

echo
echo "# bench-compile: compile cost per cached function, cacheable vs cached"
echo "date:      $started to $(date -u '+%H:%M UTC')"
echo "rustc:     $(rustc --version)"
echo "cacheable: $root @ $rev$dirty"
echo "cached:    $(awk '/^name = "cached"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$repo/Cargo.lock") (redis_tokio, async)"
echo "machine:   $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); -j $jobs; median of $runs runs"
echo
echo "Per crate (times in s: wall/CPU):"
printf '  %-22s %15s %15s %10s %10s\n' crate touch full expanded llvm-ir
for c in "${crates[@]}"; do
  printf '  %-22s %7.3f/%-7.3f %7.3f/%-7.3f %10d %10d\n' "$c" \
    "$(value "$c" touch-wall)" "$(value "$c" touch-cpu)" \
    "$(value "$c" full-wall)" "$(value "$c" full-cpu)" \
    "$(value "$c" expanded)" "$(value "$c" llvm)"
done
echo
span=$((sizes[1] - sizes[0]))
echo "Per function, (N=${sizes[1]} − N=${sizes[0]}) / $span:"
printf '  %-28s %10s %10s %8s\n' "" cacheable cached ratio
for k in "${!measures[@]}"; do
  m=${measures[k]}
  scale=1
  [[ $m == *-wall || $m == *-cpu ]] && scale=1000
  per=()
  for v in "${variants[@]}"; do
    per+=("$(awk -v a="$(value "bench-$v-${sizes[0]}" "$m")" -v b="$(value "bench-$v-${sizes[1]}" "$m")" \
      -v s="$scale" -v d="$span" 'BEGIN { printf "%.2f", (b - a) * s / d }')")
  done
  printf '  %-28s %10s %10s %8s\n' "${labels[k]}" "${per[0]}" "${per[1]}" \
    "$(awk -v a="${per[0]}" -v b="${per[1]}" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }')"
done
