#!/usr/bin/env bash
# The test command (README; .ci/run calls it). Does all its own set-up on a fresh Debian machine:
# system packages, the ONNX Runtime library, the ELPV images; then format, lint and test; then the
# systemd units (verify, exposure <= 1.0) and the Debian package (built with cargo-deb, checked);
# then a short soak of the release binary, the benchmark suite at smoke sizes and a bounded run of
# every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/system-deps.sh
bash scripts/fetch-onnxruntime.sh
python3 models/fetch_elpv.py --root .

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --no-fail-fast
bash scripts/check-units.sh
bash scripts/package.sh
# The short soak (scripts/soak.py; the full one is 200,000 frames): the release binary package.sh
# built, a steady client that must see every verdict once and in order, a churning and a stalled
# client around it, RSS/fd/thread drift.
python3 scripts/soak.py --frames 20000 --binary target/release/inspectord
# The benchmark suite at smoke sizes (docs/BENCHMARKS.md), so it cannot rot: every row runs, and
# the Python peers' verdicts must equal the daemon's. Its figures mean nothing on a busy CI machine.
bash scripts/bench.sh --smoke
# The gateway's benchmark at smoke size: the daemon with the gateway, a broker, a subscriber and
# the page in chromium attached, every verdict delivered exactly once (docs/GATEWAY.md).
bash scripts/bench_gateway.sh --smoke
# Each fuzz target for a bounded time from the committed corpus (scripts/fuzz.sh; longer by hand).
FUZZ_SECONDS=20 bash scripts/fuzz.sh
