#!/usr/bin/env bash
# Reproduce the ELPV Siamese model from scratch: venv -> data -> split check ->
# train -> export -> evaluate.  Run from the repository root:
#     bash models/reproduce.sh          (exposed as `make model`)
# Environment knobs: PYTHON (interpreter used to create the venv, default python3),
#                    EPOCHS (training epochs, default: train.py's default).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="models/.venv"
SPLIT="models/elpv-split.csv"
SPLIT_SHA256="97aa74534b38e01d17ce5c72651238c45b80f237c21ed467b01c15671d149ff7"

step() { printf '\n==> %s\n' "$*"; }

step "python venv ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r models/requirements.txt
PY="$ROOT/$VENV/bin/python"

step "fetch ELPV (data/elpv)"
python3 models/fetch_elpv.py --root "$ROOT"

step "verify committed split ($SPLIT)"
TMP="$(mktemp)"
trap 'rm -f "$TMP"' EXIT
python3 models/split.py --labels data/elpv/labels.csv --out "$TMP" >/dev/null
if ! cmp -s "$TMP" "$SPLIT"; then
    echo "reproduce: $SPLIT differs from a fresh run of models/split.py" >&2
    exit 1
fi
got="$(sha256sum "$SPLIT" | cut -d' ' -f1)"
if [ "$got" != "$SPLIT_SHA256" ]; then
    echo "reproduce: $SPLIT sha256 $got != expected $SPLIT_SHA256" >&2
    exit 1
fi
echo "split OK (sha256 $got)"

cd models
step "train (models/train.py)"
start=$(date +%s)
"$PY" train.py ${EPOCHS:+--epochs "$EPOCHS"}
echo "train wall time: $(( $(date +%s) - start )) s"

step "export (models/export.py)"
"$PY" export.py

step "evaluate (models/evaluate.py)"
"$PY" evaluate.py

step "done"
ls -l elpv-siamese.onnx elpv-references.safetensors report/
