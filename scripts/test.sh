#!/usr/bin/env bash
# The test command (README; .ci/run calls it). Does all its own set-up on a fresh Debian machine:
# system packages, the ONNX Runtime library, the ELPV images; then format, lint and test; then the
# systemd units (verify, exposure <= 1.0) and the Debian package (built with cargo-deb, checked).
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
