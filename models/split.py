#!/usr/bin/env python3
"""Make the fixed, stratified ELPV split (standard library only).

Strata: label (good: p < 0.5, defective: p >= 0.5) x type (mono, poly).
Per stratum: 25 % held-out ``test``; of the remaining 75 %, 20 % ``val`` and
the rest ``train``.  Counts are ``round()``-ed per stratum.

The order inside a stratum is a keyed hash (SHA-256 of ``"<seed>:<file>"``),
not a PRNG, so the result is identical on every platform and Python version.
Output is sorted by file name, '\\n' line endings, so re-running produces a
byte-identical ``models/elpv-split.csv``.
"""
import argparse
import hashlib
import os

SEED = "inspectord-elpv-split-v1"
TEST_FRACTION = 0.25
VAL_FRACTION_OF_TRAIN = 0.20
HEADER = "file,label,type,defect_probability,split"


def read_labels(path):
    rows = []
    with open(path, "r", encoding="utf-8") as f:
        for ln in f:
            parts = ln.split()
            if not parts:
                continue
            rel, prob, typ = parts
            name = os.path.basename(rel)
            p = float(prob)
            rows.append({
                "file": name,
                "label": "defective" if p >= 0.5 else "good",
                "type": typ,
                "defect_probability": prob,  # verbatim text from labels.csv
            })
    return rows


def make_split(rows, seed=SEED):
    strata = {}
    for r in rows:
        strata.setdefault((r["label"], r["type"]), []).append(r)
    for key in sorted(strata):
        members = sorted(strata[key],
                         key=lambda r: hashlib.sha256(f"{seed}:{r['file']}".encode()).hexdigest())
        n_test = round(len(members) * TEST_FRACTION)
        rest = members[n_test:]
        n_val = round(len(rest) * VAL_FRACTION_OF_TRAIN)
        for r in members[:n_test]:
            r["split"] = "test"
        for r in rest[:n_val]:
            r["split"] = "val"
        for r in rest[n_val:]:
            r["split"] = "train"
    return sorted(rows, key=lambda r: r["file"])


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description="write the stratified ELPV split CSV")
    ap.add_argument("--labels", default=os.path.join(root, "data", "elpv", "labels.csv"))
    ap.add_argument("--out", default=os.path.join(here, "elpv-split.csv"))
    args = ap.parse_args()
    rows = make_split(read_labels(args.labels))
    lines = [HEADER] + [",".join([r["file"], r["label"], r["type"], r["defect_probability"], r["split"]])
                        for r in rows]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    with open(args.out, "wb") as f:
        f.write(data)
    counts = {}
    for r in rows:
        k = (r["split"], r["label"], r["type"])
        counts[k] = counts.get(k, 0) + 1
    print(f"split: wrote {args.out} ({len(rows)} rows, sha256 {hashlib.sha256(data).hexdigest()})")
    for k in sorted(counts):
        print("  ", *k, counts[k])


if __name__ == "__main__":
    main()
