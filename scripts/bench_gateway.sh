#!/usr/bin/env bash
# What the gateway costs the daemon (bench/gateway.py): `inspectord replay` frames/s with the
# gateway (nice 10), a real mosquitto broker, a `mosquitto_sub -q 1` subscriber and a headless
# chromium on the operator page attached, vs the same replay with the socket configured and no
# client; interleaved runs, medians, the ratio (target >= 0.97), the gateway's peak and final RSS,
# and every verdict delivered to the subscriber exactly once. A table on stdout, JSON in --out.
#
#   scripts/bench_gateway.sh                 5 runs each of 2,620 frames (655 held-out x 4), a few minutes
#   scripts/bench_gateway.sh --runs 3
#   scripts/bench_gateway.sh --smoke         50 frames, 1 run each: proves it works (CI, < 1 min)
#   scripts/bench_gateway.sh --out FILE      JSON elsewhere than target/bench/gateway.json
#
# Other options go to bench/gateway.py (--workers N, --max-inflight N, --keep, ...; see --help).
# Set-up like scripts/bench.sh: the Debian packages (mosquitto, mosquitto-clients, chromium),
# ONNX Runtime, the ELPV images, the release binary. Exits 1 if a verdict was not delivered
# exactly once or the daemon evicted a client.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/system-deps.sh
bash scripts/fetch-onnxruntime.sh
python3 models/fetch_elpv.py --root . >/dev/null
# A no-op when the release binary is current.
cargo build --release --locked --quiet

exec python3 bench/gateway.py --binary target/release/inspectord "$@"
