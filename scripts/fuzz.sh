#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time (FUZZ_SECONDS each, default 30) on stable
# Rust (libFuzzer without a sanitizer), starting from the committed corpus in fuzz/corpus/.
# Prints, per target, the executions, executions per second and the corpus size; a crash fails
# the script and leaves its input in fuzz/artifacts/<target>/ (turn it into a regression test).
#     bash scripts/fuzz.sh                    FUZZ_SECONDS=600 bash scripts/fuzz.sh image
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
if [[ $(cargo fuzz --version 2>/dev/null) != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

seconds=${FUZZ_SECONDS:-30}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(config references image command http_request)
cd fuzz

for t in "${targets[@]}"; do
  cargo fuzz build --sanitizer none "$t" >/dev/null
  log=$(mktemp)
  # New inputs go to a scratch corpus: the committed one is only read.
  scratch=$(mktemp -d)
  if ! cargo fuzz run --sanitizer none "$t" "$scratch" "corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: target $t FAILED (input in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  corpus=$(ls "$scratch" | wc -l)
  echo "fuzz: $t: $runs executions in ${seconds} s ($(( runs / seconds ))/s), $corpus new corpus entries, no crash"
  rm -rf "$scratch" "$log"
done
