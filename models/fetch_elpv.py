#!/usr/bin/env python3
"""Fetch the ELPV data set (standard library only; runs with plain ``python3``).

Downloads the PyPI wheel ``elpv-dataset==1.0.0.post1`` with pip (no install),
verifies its SHA-256, and unpacks ``images/*.png`` and ``labels.csv`` into
``<root>/data/elpv/``.  If ``<root>/models/elpv-split.csv`` exists, also writes
``data/elpv/{train,val,test}.txt`` (one ``images/cellNNNN.png`` per line,
sorted by file name).

Idempotent: when all 2,624 images and labels.csv are present, nothing is
downloaded or unpacked again.

The ELPV images are CC BY-NC-SA 4.0 (Buerhop-Lutz, Deitsch et al.); they must
never be committed to this repository (``/data/`` is git-ignored).
"""
import argparse
import csv
import hashlib
import os
import subprocess
import sys
import zipfile

PACKAGE = "elpv-dataset==1.0.0.post1"
WHEEL_NAME = "elpv_dataset-1.0.0.post1-py3-none-any.whl"
WHEEL_SHA256 = "85e31c1126ee9b48e62d3a0232c58f58b2d189b0814a45c13642fa0415af4a4c"
N_IMAGES = 2624
PREFIX = "elpv_dataset/data/"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def complete(out_dir):
    labels = os.path.join(out_dir, "labels.csv")
    img_dir = os.path.join(out_dir, "images")
    if not (os.path.isfile(labels) and os.path.isdir(img_dir)):
        return False
    with open(labels, "r", encoding="utf-8") as f:
        rows = [ln.split() for ln in f if ln.strip()]
    if len(rows) != N_IMAGES:
        return False
    for r in rows:
        p = os.path.join(out_dir, r[0])
        if not os.path.isfile(p) or os.path.getsize(p) == 0:
            return False
    return True


def download(cache_dir):
    wheel = os.path.join(cache_dir, WHEEL_NAME)
    if os.path.isfile(wheel) and sha256_file(wheel) == WHEEL_SHA256:
        return wheel
    os.makedirs(cache_dir, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--only-binary=:all:", PACKAGE, "-d", cache_dir]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    if not os.path.isfile(wheel):
        sys.exit(f"fetch_elpv: expected {wheel} after pip download")
    got = sha256_file(wheel)
    if got != WHEEL_SHA256:
        sys.exit(f"fetch_elpv: SHA-256 mismatch for {wheel}: got {got}, expected {WHEEL_SHA256}")
    return wheel


def unpack(wheel, out_dir):
    got = sha256_file(wheel)
    if got != WHEEL_SHA256:
        sys.exit(f"fetch_elpv: SHA-256 mismatch for {wheel}: got {got}, expected {WHEEL_SHA256}")
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    n = 0
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if not name.startswith(PREFIX):
                continue
            rel = name[len(PREFIX):]
            if rel == "labels.csv" or (rel.startswith("images/") and rel.endswith(".png")
                                       and "/" not in rel[len("images/"):]):
                dest = os.path.join(out_dir, rel)
                tmp = dest + ".tmp"
                with z.open(name) as src, open(tmp, "wb") as dst:
                    dst.write(src.read())
                os.replace(tmp, dest)
                n += rel != "labels.csv"
    if n != N_IMAGES:
        sys.exit(f"fetch_elpv: unpacked {n} images, expected {N_IMAGES}")


def write_lists(root, out_dir):
    split_csv = os.path.join(root, "models", "elpv-split.csv")
    if not os.path.isfile(split_csv):
        return
    parts = {"train": [], "val": [], "test": []}
    with open(split_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            parts[row["split"]].append(row["file"])
    for split, files in parts.items():
        path = os.path.join(out_dir, f"{split}.txt")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for name in sorted(files):
                f.write(f"images/{name}\n")
        print(f"fetch_elpv: wrote {path} ({len(files)} files)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--root", default=default_root, help="repository root (default: parent of models/)")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    out_dir = os.path.join(root, "data", "elpv")
    if complete(out_dir):
        print(f"fetch_elpv: {out_dir} already complete ({N_IMAGES} images)")
    else:
        wheel = download(os.path.join(root, "data", ".cache"))
        unpack(wheel, out_dir)
        if not complete(out_dir):
            sys.exit("fetch_elpv: data set incomplete after unpacking")
        print(f"fetch_elpv: unpacked {N_IMAGES} images + labels.csv into {out_dir}")
    write_lists(root, out_dir)


if __name__ == "__main__":
    main()
