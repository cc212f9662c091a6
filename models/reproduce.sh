#!/usr/bin/env bash
# Reproduce both shipped encoders from scratch: venv -> data -> backbone weights ->
# split check -> small encoder (train, export, evaluate) -> lite0 encoder (train,
# export, evaluate, int8, enroll-only row, k-fold spread).  Run from the repository root:
#     bash models/reproduce.sh          (exposed as `make model`)
# Environment knobs: PYTHON (interpreter used to create the venv, default python3),
#                    EPOCHS (small encoder's epochs, default: train.py's default),
#                    ONLY=small|lite0 (one encoder), SKIP_KFOLD=1 (skip the k-fold spread).
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

step "fetch the ImageNet-pretrained EfficientNet-Lite0 weights (models/.cache)"
python3 models/fetch_backbone.py

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
all_start=$(date +%s)
if [ "${ONLY:-small}" = small ]; then
  step "small encoder: train (models/train.py)"
  start=$(date +%s)
  "$PY" train.py ${EPOCHS:+--epochs "$EPOCHS"}
  echo "train wall time: $(( $(date +%s) - start )) s"

  step "small encoder: export (models/export.py)"
  "$PY" export.py --kind small

  step "small encoder: evaluate (models/evaluate.py)"
  "$PY" evaluate.py --kind small
fi

if [ "${ONLY:-lite0}" = lite0 ]; then
  step "lite0 encoder: frozen features + fine-tuning (models/train_lite.py)"
  start=$(date +%s)
  "$PY" train_lite.py
  echo "train wall time: $(( $(date +%s) - start )) s"

  step "lite0 encoder: export (models/export.py)"
  "$PY" export.py --kind lite0

  step "lite0 encoder: evaluate (models/evaluate.py)"
  "$PY" evaluate.py --kind lite0

  step "lite0 encoder: int8 variant, shipped only if val accuracy holds (models/quantize.py)"
  "$PY" quantize.py
  if [ -f elpv-lite0-int8.onnx ]; then
    "$PY" evaluate.py --kind lite0 --onnx elpv-lite0-int8.onnx \
      --refs-out elpv-lite0-int8-references.safetensors --report-dir report/lite0-int8
  fi

  step "enroll-only row: pretrained backbone, no fine-tuning (models/enroll_only.py)"
  "$PY" enroll_only.py

  if [ -z "${SKIP_KFOLD:-}" ]; then
    step "k-fold spread over train+val (models/kfold.py)"
    start=$(date +%s)
    "$PY" kfold.py
    echo "k-fold wall time: $(( $(date +%s) - start )) s"
  fi
fi

step "done in $(( $(date +%s) - all_start )) s"
ls -l ./*.onnx ./*.safetensors report/
