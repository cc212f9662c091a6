#!/usr/bin/env bash
# The demo command (README): replays the ELPV held-out split through the shipped model.
# Verdicts stream on stdout as JSON Lines (and on /tmp/inspectord/verdicts.sock); the summary
# with the confusion matrix follows on stderr. Does all its own set-up on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Set-up output goes to stderr: stdout carries only the verdicts (JSON Lines).
{
  bash scripts/system-deps.sh
  bash scripts/fetch-onnxruntime.sh
  python3 models/fetch_elpv.py --root .
  cargo build --release --locked
} >&2

exec ./target/release/inspectord replay --config config/inspectord.toml --labels models/elpv-split.csv "$@"
