#!/usr/bin/env python3
"""Honest spread of the lite0 recipe: K-fold over train+val (the test split is never read).

For each fold i: train_lite.py --fold i trains the same recipe on 80 % of the
other folds, picks its checkpoint on the remaining 20 % (inner val), and this
script then chooses the scoring setting and threshold on that inner val
(evaluate.py's grid and rule), with references = the good images of the fold's
training part, and scores fold i once.  Prints and writes
models/report/lite0/kfold.json with each fold's figures and mean +- std.

Embeddings come from the cached frozen features (as recorded, variant 0)
through the trained upper blocks in PyTorch; the main model's ONNX parity
check (export.py, evaluate.py) covers the graph the daemon runs.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

import common as C
import train_lite as T
from evaluate import GRID, best_threshold, binary_metrics, scores_for


def fold_ckpt(i):
    return os.path.join(C.HERE, ".cache", f"lite0-fold{i}.pt")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--train-args", default="", help="extra arguments for train_lite.py (keep the recipe)")
    ap.add_argument("--out", default=os.path.join(C.LITE_REPORT_DIR, "kfold.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)

    rows = C.read_split()
    pool = sorted({r["file"] for r in rows if r["split"] in ("train", "val")})
    label = {r["file"]: r["label"] == "defective" for r in rows}
    results = []
    recipe = vars(T.parser().parse_args(args.train_args.split()))
    recipe = {k: recipe[k] for k in T.RECIPE_KEYS}
    for i in range(args.folds):
        ck_path = fold_ckpt(i)
        if os.path.exists(ck_path):
            old = torch.load(ck_path, map_location="cpu", weights_only=False)
            if {k: old["args"].get(k) for k in T.RECIPE_KEYS} != recipe or old["folds"] != args.folds:
                print(f"fold {i}: {ck_path} was trained with another recipe; training again", flush=True)
                os.remove(ck_path)
        if not os.path.exists(ck_path):
            cmd = [sys.executable, "train_lite.py", "--fold", str(i), "--folds", str(args.folds),
                   "--out", ck_path] + args.train_args.split()
            print("+", " ".join(cmd), flush=True)
            t = time.time()
            subprocess.run(cmd, check=True, cwd=C.HERE)
            print(f"fold {i}: trained in {time.time() - t:.0f}s", flush=True)
        ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        a = ck["args"]
        model = C.build_lite_encoder(ck["embedding_dim"], cut=ck["cut"], res=ck["res"])
        feats = T.cached_features(model, pool, argparse.Namespace(**a))
        model.load_state_dict(ck["state_dict"])
        pos = {f: j for j, f in enumerate(pool)}
        emb = lambda files: T.embed_feats(model, feats[[pos[f] for f in files], 0])  # noqa: E731
        parts = ck["parts"]
        refs = [f for f in parts["train"] if not label[f]]
        R, V, H = emb(refs), emb(parts["val"]), emb(parts["heldout"])
        yv = np.array([label[f] for f in parts["val"]])
        yh = np.array([label[f] for f in parts["heldout"]])
        sel = []
        for setting in GRID:
            s, _ = scores_for(V, R, setting)
            thr, acc = best_threshold(s, yv)
            sel.append((acc, float(roc_auc_score(yv, s)), -len(sel), setting, thr))
        acc_v, auc_v, _, setting, thr = max(sel, key=lambda t: t[:3])
        sh, _ = scores_for(H, R, setting)
        m = binary_metrics(yh, sh > thr, sh)
        res = {"fold": i, "n_train": len(parts["train"]), "n_val": len(parts["val"]),
               "n_heldout": len(parts["heldout"]), "best_epoch": ck["best_epoch"],
               "train_wall_seconds": ck["train_wall_seconds"],
               "setting": {"score": setting[0], "k": setting[1], "eta_p": setting[2][0], "gamma_p": setting[2][1],
                           "threshold": thr},
               "inner_val_accuracy": acc_v, "inner_val_auroc": auc_v,
               "accuracy": m["accuracy"], "auroc": m["auroc"], "recall_defective": m["recall_defective"],
               "precision_defective": m["precision_defective"],
               "confusion": m["confusion_matrix"]["rows_true_cols_pred"]}
        results.append(res)
        print(json.dumps(res), flush=True)

    summary = {}
    for key in ("accuracy", "auroc", "recall_defective", "precision_defective"):
        v = np.array([r[key] for r in results])
        summary[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                        "min": float(v.min()), "max": float(v.max())}
    out = {"folds": args.folds, "pool": "train+val of models/elpv-split.csv (test never read)",
           "stratified_by": "label x type, keyed-hash order", "per_fold": results, "summary": summary}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    for key, s in summary.items():
        print(f"{key}: {s['mean']:.4f} +- {s['std']:.4f} (min {s['min']:.4f}, max {s['max']:.4f})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
