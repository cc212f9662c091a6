#!/usr/bin/env bash
# Provisions the ONNX Runtime shared library for `ort` (load-dynamic) into third_party/onnxruntime/lib.
# Source: the official PyPI wheel onnxruntime==1.31.1, fetched with pip (no system-wide install),
# checked against a pinned SHA-256; only libonnxruntime.so.* is unpacked, with the wheel's LICENSE
# (MIT) and ThirdPartyNotices.txt into third_party/onnxruntime/ (the Debian package and
# `make install` ship them beside the library). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.31.1
DEST=third_party/onnxruntime/lib
CACHE=third_party/.cache
LIB=libonnxruntime.so.$VERSION
DOCS=third_party/onnxruntime

if [[ -f $DEST/$LIB && -L $DEST/libonnxruntime.so && -f $DOCS/LICENSE && -f $DOCS/ThirdPartyNotices.txt ]]; then
  exit 0
fi

arch=$(uname -m)
case $arch in
  x86_64) platform=manylinux_2_28_x86_64
          sha=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f ;;
  aarch64) platform=manylinux_2_28_aarch64; sha= ;;
  *) echo "fetch-onnxruntime: no onnxruntime wheel for $arch; set ORT_DYLIB_PATH to a libonnxruntime.so >= 1.31" >&2; exit 1 ;;
esac

mkdir -p "$CACHE" "$DEST"
# Pin interpreter and platform so the same wheel (and hash) comes whatever python3 runs pip.
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --implementation cp --abi cp311 --platform "$platform" \
  -d "$CACHE" "onnxruntime==$VERSION"
wheel=$(ls "$CACHE"/onnxruntime-"$VERSION"-cp311-cp311-"$platform".whl)
if [[ -n $sha ]]; then
  echo "$sha  $wheel" | sha256sum --check --quiet - || { echo "fetch-onnxruntime: checksum mismatch for $wheel" >&2; exit 1; }
fi
python3 - "$wheel" "$DEST" "$LIB" "$DOCS" <<'PY'
import sys, zipfile, shutil, os
wheel, dest, lib, docs = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for member, target in [(f"onnxruntime/capi/{lib}", os.path.join(dest, lib)),
                           ("onnxruntime/LICENSE", os.path.join(docs, "LICENSE")),
                           ("onnxruntime/ThirdPartyNotices.txt", os.path.join(docs, "ThirdPartyNotices.txt"))]:
        with z.open(member) as src, open(target + ".part", "wb") as out:
            shutil.copyfileobj(src, out)
        os.replace(target + ".part", target)
PY
ln -sfn "$LIB" "$DEST/libonnxruntime.so"
ln -sfn "$LIB" "$DEST/libonnxruntime.so.1"
echo "fetch-onnxruntime: $DEST/$LIB"
