#!/usr/bin/env bash
# Comments say why the code is as it is; history (issues, dates, CI runs, machines) goes in
# commits and BENCHMARKS.md. Lists the comment lines of the crate's Rust files that name one,
# and fails if there is any. (A date written as an example value, in backticks, is allowed.)
set -euo pipefail
cd "$(dirname "$0")/.."
found=$(grep -rn -E '^\s*//.*(\bissues? #?[0-9]+|\bthe [A-Z][a-z]+ issue\b|\(issue\b|\b20[0-9]{2}-[01][0-9]-[0-3][0-9]\b|\bCI (run|failure|machine)|\bEPYC\b|\bXeon\b|\b(this|last|previous) session\b)' \
  --include='*.rs' src tests dev examples fuzz | grep -v -E '`20[0-9]{2}-[01][0-9]-[0-3][0-9]`' || true)
if [ -n "$found" ]; then
  echo "comments that name an issue, a date, a CI run or a machine:" >&2
  echo "$found" >&2
  exit 1
fi
echo "no comment names an issue, a date, a CI run or a machine"
