#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 120 s each; FUZZ_SECONDS overrides) on
# the stable toolchain (no sanitizer: the protocol crate forbids unsafe code). Fails on any
# crash. New corpus entries go to a scratch directory; the committed corpus is only read.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-120}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
for target in delivery_verify sync_request note_open; do
  scratch=$(mktemp -d)
  echo "fuzz: $target for ${seconds}s"
  log="$scratch.log"
  if ! cargo fuzz run --sanitizer none "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $target FAILED (crash or build error; see above, artifacts in fuzz/artifacts/$target)"
    exit 1
  fi
  grep -E "^Done|stat::number_of_executed_units" "$log" || true
  rm -rf "$scratch" "$log"
done
echo "fuzz: no crashes"
