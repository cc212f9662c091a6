#!/usr/bin/env python3
"""Peer (b): the best plain Python a user would write, one image at a time.

The same PIL decode, preprocessing contract (bench/contract.py) and one ONNX Runtime run per
image as peer (a), but SOART3 vectorised over all references with numpy (float64, the squared
norms of the references computed once), the k smallest by np.partition. Same output as
bench/seed_style.py.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract  # noqa: E402

EPS = 0.0001


def pnorm(r, p):
    if p == 1:
        return np.abs(r).sum(axis=1)
    if p == 2:
        return np.sqrt(np.einsum("ij,ij->i", r, r))
    return np.power(np.power(np.abs(r), p).sum(axis=1), 1.0 / p)


def soart3_scores(y, R, xx, kind, eta_p, gamma_p):
    beta = (R @ y + EPS) / (xx + EPS)
    r = y[None, :] - beta[:, None] * R
    eta = np.log1p(pnorm(r, eta_p))
    return eta if kind == "eta" else eta - np.log1p(pnorm(r, gamma_p))


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
    R = np.ascontiguousarray(emb, dtype=np.float64)
    xx = np.einsum("ij,ij->i", R, R)
    kind, k, eta_p, gamma_p, threshold = contract.scoring(rmeta)
    name = sess.get_inputs()[0].name
    images = contract.read_list(args.images)
    ready = time.perf_counter()
    with open(args.out, "w") as out:
        for path in images:
            x = contract.preprocess(path, meta)
            y = sess.run(None, {name: x})[0][0].astype(np.float64)
            s = soart3_scores(y, R, xx, kind, eta_p, gamma_p)
            score = float(np.partition(s, k - 1)[:k].mean()) if k < len(s) else float(s.mean())
            verdict = "fail" if score > threshold else "pass"
            out.write(json.dumps({"frame": os.path.basename(path), "verdict": verdict, "score": score}) + "\n")
    done = time.perf_counter()
    secs = done - ready
    print(json.dumps({"frames": len(images), "seconds": secs, "fps": len(images) / secs,
                      "startup_s": ready - t0}))


if __name__ == "__main__":
    main()
