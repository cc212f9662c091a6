#!/usr/bin/env python3
"""Accuracy and scoring time vs the number of references kept by `inspectord enroll
--max-references N` (greedy k-center coreset, issue 13), on the ELPV held-out test split.

Stdlib only. From the repository root, with the ELPV images fetched (python3
models/fetch_elpv.py --root .):

    python3 scripts/coreset_table.py            # builds the release binary and the example
    python3 scripts/coreset_table.py --no-build # uses target/release/ as it is

For the fast encoder (models/elpv-siamese.onnx) it enrolls the good images of the train split
(the images the shipped references were made from, models/README.md) with the daemon's
`enroll`, with the shipped set's scoring (score, k, orders read from its metadata) and the
default 1 % false-reject target, once with every image and once per N; replays the test split
against each set and against the shipped set with `replay --labels models/elpv-split.csv`;
times the scoring per frame with `examples/score_time.rs` (frames = the 1,082 enrolled
embeddings); prints the Markdown table of models/README.md ("Coreset enrollment").
Outputs under target/coreset-table/.
"""

import argparse
import csv
import json
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models/elpv-siamese.onnx"
SHIPPED = ROOT / "models/elpv-references.safetensors"
SPLIT = ROOT / "models/elpv-split.csv"
TEST_LIST = ROOT / "data/elpv/test.txt"
IMAGES = ROOT / "data/elpv/images"


def metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]


def toml_str(p):
    return json.dumps(str(p))


def config(path, source, references, scoring=None, workers=2):
    text = (
        f"[source]\nkind = \"replay\"\npath = {toml_str(source)}\n\n"
        f"[model]\npath = {toml_str(MODEL)}\n\n"
        f"[references]\npath = {toml_str(references)}\n\n"
        f"[runtime]\nworkers = {workers}\n"
    )
    if scoring:
        text += "\n[scoring]\n" + "".join(f"{k} = {v}\n" for k, v in scoring.items())
    path.write_text(text)
    return path


def run(cmd):
    started = time.monotonic()
    done = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{done.stderr}")
    return done, time.monotonic() - started


RATES = re.compile(
    r"^\s*all: n=(\d+)\s+accuracy ([\d.]+)\s+precision ([\d.]+)\s+recall ([\d.]+)\s+F1 ([\d.]+)\s+"
    r"\(tp (\d+) fp (\d+) tn (\d+) fn (\d+)\)",
    re.M,
)


def replay(binary, work, name, references):
    cfg = config(work / f"replay-{name}.toml", TEST_LIST, references)
    done, _ = run([binary, "replay", "--config", cfg, "--labels", SPLIT])
    m = RATES.search(done.stderr)
    if not m:
        sys.exit(f"no `all:` line in the replay summary:\n{done.stderr}")
    n, acc, prec, rec, _f1, tp, fp, tn, fn = m.groups()
    return {
        "n": int(n), "accuracy": float(acc), "precision": float(prec), "recall": float(rec),
        "tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="512,256,128,64", help="N values (comma-separated)")
    ap.add_argument("--no-build", action="store_true", help="use target/release/ as it is")
    ap.add_argument("--out", type=Path, default=ROOT / "target/coreset-table")
    ap.add_argument("--reuse", action="store_true",
                    help="keep reference sets already enrolled in --out (no enroll wall time)")
    ap.add_argument("--binary", type=Path, default=ROOT / "target/release/inspectord",
                    help="the inspectord to enroll and replay with (accuracy does not depend "
                         "on the build profile; the scoring time is always the release example's)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    if not args.no_build:
        run(["cargo", "build", "--release", "--locked", "--bin", "inspectord",
             "--example", "score_time"])
    binary = args.binary
    timer = ROOT / "target/release/examples/score_time"
    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)

    with open(SPLIT, newline="") as f:
        good = sorted(r["file"] for r in csv.DictReader(f)
                      if r["split"] == "train" and r["label"] == "good")
    good_list = work / "train-good.txt"
    good_list.write_text("".join(f"{IMAGES / g}\n" for g in good))

    shipped = metadata(SHIPPED)
    scoring = {"score": json.dumps(shipped["score"]), "k": shipped["k"],
               "eta_p": float(shipped["eta_p"]), "gamma_p": float(shipped["gamma_p"])}
    enroll_cfg = config(work / "enroll.toml", good_list, SHIPPED, scoring)

    rows = [("shipped (`evaluate.py`: threshold chosen on val)", SHIPPED, None)]
    for n in [None] + sizes:
        name = "all" if n is None else str(n)
        out = work / f"refs-{name}.safetensors"
        cmd = [binary, "enroll", "--config", enroll_cfg, "--images", good_list, "--out", out]
        if n is not None:
            cmd += ["--max-references", n]
        secs = None
        if not (args.reuse and out.exists()):
            _, secs = run(cmd)
        label = "`enroll`, all" if n is None else f"`enroll --max-references {n}`"
        rows.append((label, out, secs))

    micros = {}
    if timer.exists():
        timed, _ = run([timer, work / "refs-all.safetensors"] + [r[1] for r in rows])
        for line in timed.stdout.splitlines():
            path, _count, us = line.split("\t")
            micros[path] = float(us)

    print(f"enrolled: {len(good)} good train images; scoring {shipped['score']}, k = "
          f"{shipped['k']}, orders ({shipped['eta_p']}, {shipped['gamma_p']}); "
          f"test split: {TEST_LIST.relative_to(ROOT)}\n")
    print("| reference set | references | threshold | accuracy | precision | recall "
          "| false rejects (good test cells) | scoring per frame | enroll wall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    results = []
    for label, path, secs in rows:
        md = metadata(path)
        r = replay(binary, work, path.stem, path)
        frr = r["fp"] / (r["fp"] + r["tn"])
        us = f"{micros[str(path)]:.0f} µs" if str(path) in micros else "—"
        results.append({"set": label, "file": str(path), "metadata": md, **r,
                        "false_reject_rate": frr, "scoring_us": micros.get(str(path)),
                        "enroll_s": secs})
        print(f"| {label} | {md['count']} | {float(md['threshold']):.4f} | {r['accuracy']:.4f} "
              f"| {r['precision']:.4f} | {r['recall']:.4f} | {r['fp']} / {r['fp'] + r['tn']} "
              f"({frr:.3f}) | {us} | "
              f"{'—' if secs is None else f'{secs:.0f} s'} |")
    (work / "table.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
