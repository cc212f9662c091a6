#!/usr/bin/env python3
"""Peer (a): the seed-style Python pipeline, one image at a time.

PIL decode, the model's preprocessing contract (bench/contract.py), one ONNX Runtime run per
image, then SOART3 against every reference in a Python loop with scipy.spatial.distance.minkowski
— how the project's first Python code (models/evaluate.py's cross-check) computed it:

    beta = (x.y + 1e-4) / (x.x + 1e-4);  r = y - beta x
    eta = ln(1 + minkowski(r, 0, eta_p));  gamma = eta - ln(1 + minkowski(r, 0, gamma_p))

score = mean of the k smallest per-reference scores (eta or gamma, as the reference file says);
fail when score > threshold. Writes one JSON line per frame to --out and prints a JSON summary.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
from scipy.spatial.distance import minkowski

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract  # noqa: E402

EPS = 0.0001


def soart3_score(y, refs, kind, k, eta_p, gamma_p):
    zero = np.zeros_like(y)
    scores = []
    for x in refs:
        beta = (np.dot(x, y) + EPS) / (np.dot(x, x) + EPS)
        r = y - beta * x
        eta = math.log(1.0 + minkowski(r, zero, eta_p))
        if kind == "eta":
            scores.append(eta)
        else:
            scores.append(eta - math.log(1.0 + minkowski(r, zero, gamma_p)))
    scores.sort()
    return sum(scores[:k]) / k


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--references", required=True)
    ap.add_argument("--images", required=True, help="list file, one path a line")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.perf_counter()
    sess, meta = contract.session(args.model, args.threads)
    emb, rmeta = contract.read_references(args.references)
    refs = [row.astype(np.float64) for row in emb]
    kind, k, eta_p, gamma_p, threshold = contract.scoring(rmeta)
    name = sess.get_inputs()[0].name
    images = contract.read_list(args.images)
    ready = time.perf_counter()
    with open(args.out, "w") as out:
        for path in images:
            x = contract.preprocess(path, meta)
            y = sess.run(None, {name: x})[0][0].astype(np.float64)
            s = soart3_score(y, refs, kind, k, eta_p, gamma_p)
            verdict = "fail" if s > threshold else "pass"
            out.write(json.dumps({"frame": os.path.basename(path), "verdict": verdict, "score": s}) + "\n")
    done = time.perf_counter()
    secs = done - ready
    print(json.dumps({"frames": len(images), "seconds": secs, "fps": len(images) / secs,
                      "startup_s": ready - t0}))


if __name__ == "__main__":
    main()
