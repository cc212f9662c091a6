#!/usr/bin/env python3
"""Evaluate an exported encoder exactly as the daemon will use it.

``--kind small`` (models/elpv-siamese.onnx, report in models/report/) or
``--kind lite0`` (models/elpv-lite0.onnx, report in models/report/lite0/).

1. Embeddings come from onnxruntime, preprocessing by the contract read back
   from the ONNX metadata (pixel scale, box resize, mean, std).
2. References = good images of the ``train`` split, sorted by file name.
3. Scoring setting (eta/gamma, k in {1,3,5}, p orders (2,6)/(1,4)) and the
   threshold are chosen on ``val`` only (max accuracy; ties -> higher val
   AUROC, then the earlier setting in the grid).
4. Robustness: val accuracy at that threshold when the val images drift as on
   a line (shift, rotation, lighting, all three; fixed seed).
5. Only then the held-out ``test`` part is scored once.

Writes models/elpv-references.safetensors, models/report/metrics.json,
models/report/heldout-predictions.csv and PNG plots under models/report/.
"""
import argparse
import csv
import datetime as dt
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import save_file
from scipy.spatial.distance import minkowski
from sklearn.metrics import confusion_matrix, roc_auc_score

import common as C
import export as E

REPORT_DIR = C.REPORT_DIR
REFS_PATH = C.REFS_PATH

GRID = [(score, k, p) for p in [(2, 6), (1, 4)] for score in ["eta", "gamma"] for k in [1, 3, 5]]
THRESHOLD_METHOD = "max-accuracy on val split (midpoint between adjacent val scores)"


def onnx_meta(path):
    m = onnx.load(path, load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def embed_ort(sess, X, bs=64):
    return np.concatenate([sess.run(["embedding"], {"image": X[s:s + bs]})[0] for s in range(0, len(X), bs)])


def best_threshold(s, y):
    """Threshold maximising accuracy of (s > t) == y; candidates are midpoints of
    adjacent distinct scores (plus both ends). First maximum wins."""
    u = np.unique(s)
    cand = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2.0, [u[-1] + 1.0]])
    order = np.argsort(s)
    ss, yy = s[order], y[order]
    # accuracy for each candidate via cumulative counts
    n_def = yy.sum()
    accs = []
    for t in cand:
        i = np.searchsorted(ss, t, side="right")        # predicted good: ss[:i]
        good_correct = i - yy[:i].sum()
        def_correct = n_def - yy[:i].sum()
        accs.append((good_correct + def_correct) / len(s))
    j = int(np.argmax(accs))
    return float(cand[j]), float(accs[j])


def binary_metrics(y, pred, score):
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[False, True]).ravel()
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    out = {"n": int(len(y)), "n_defective": int(y.sum()), "n_good": int((~y).sum()),
           "accuracy": float((pred == y).mean()), "precision_defective": float(prec),
           "recall_defective": float(rec), "f1_defective": float(f1),
           "auroc": float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else None,
           "confusion_matrix": {"labels": ["good", "defective"], "rows_true_cols_pred": [[int(tn), int(fp)], [int(fn), int(tp)]],
                                "tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}}
    return out


PERTURBATIONS = [  # name, max shift (px), max rotation (degrees), lighting
    ("shift +-4 px", 4.0, 0.0, False),
    ("rotation +-2 deg", 0.0, 2.0, False),
    ("lighting", 0.0, 0.0, True),
    ("shift + rotation + lighting", 4.0, 2.0, True),
]


def robustness(sess, rows, y, R, setting, thr, meta, seed=7):
    """Val accuracy/AUROC at the chosen threshold under each line-like perturbation."""
    import torch
    out = []
    G = np.stack([C.load_gray_u8(C.image_path(r["file"])) for r in rows])[:, None]
    for name, shift, rot, light in PERTURBATIONS:
        gen = torch.Generator().manual_seed(seed)
        Gp = C.line_drift(torch.from_numpy(G), gen, shift, rot, light).numpy()
        X = np.stack([C.preprocess_u8(g[0], meta) for g in Gp])
        s, _ = scores_for(embed_ort(sess, X), R, setting)
        pred = s > thr
        out.append({"perturbation": name, "max_shift_px": shift, "max_rotation_deg": rot, "lighting": light,
                    "val_accuracy": float((pred == y).mean()), "val_auroc": float(roc_auc_score(y, s)),
                    "val_recall_defective": float(pred[y].mean())})
        print(f"  val under {name}: acc {out[-1]['val_accuracy']:.4f} AUROC {out[-1]['val_auroc']:.4f}")
    return out


def scores_for(Y, R, setting):
    score, k, (pe, pg) = setting
    eta, gamma = C.soart3_matrix(Y, R, pe, pg)
    return C.knn_score(eta if score == "eta" else gamma, k)


def plots(test_s, test_y, emb_all, y_all, cm, setting, thr):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(REPORT_DIR, exist_ok=True)
    name = f"{setting[0]} (k={setting[1]}, p={setting[2][0]},{setting[2][1]})"

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(test_s.min(), test_s.max(), 50)
    ax.hist(test_s[~test_y], bins=bins, alpha=0.6, label="good", color="tab:green")
    ax.hist(test_s[test_y], bins=bins, alpha=0.6, label="defective", color="tab:red")
    ax.axvline(thr, color="k", ls="--", label=f"threshold {thr:.4f}")
    ax.set_xlabel(f"SOART3 score {name}")
    ax.set_ylabel("test images")
    ax.set_title("ELPV held-out test: score histogram")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(REPORT_DIR, "score-histogram.png"), dpi=110)
    plt.close(fig)

    from sklearn.decomposition import PCA
    P = PCA(n_components=2, random_state=0).fit_transform(emb_all)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(P[~y_all, 0], P[~y_all, 1], s=5, alpha=0.5, c="tab:green", label="good")
    ax.scatter(P[y_all, 0], P[y_all, 1], s=5, alpha=0.5, c="tab:red", label="defective")
    ax.set_title("PCA of embeddings (test split)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(REPORT_DIR, "embeddings-pca.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4, 3.6))
    M = np.array(cm["rows_true_cols_pred"])
    ax.imshow(M, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(M[i, j]), ha="center", va="center", color="white" if M[i, j] > M.max() / 2 else "black")
    ax.set_xticks([0, 1], ["good", "defective"])
    ax.set_yticks([0, 1], ["good", "defective"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("held-out test confusion matrix")
    fig.tight_layout()
    fig.savefig(os.path.join(REPORT_DIR, "confusion-matrix.png"), dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["small", "lite0"], default="small")
    ap.add_argument("--onnx", default=None)
    ap.add_argument("--ckpt", default=None, help="for the torch-vs-onnxruntime parity check")
    ap.add_argument("--refs-out", default=None)
    ap.add_argument("--report-dir", default=None)
    ap.add_argument("--val-only", action="store_true",
                    help="candidate comparison: choose the setting on val, print val figures, write nothing, never read test")
    args = ap.parse_args()
    lite = args.kind == "lite0"
    args.onnx = args.onnx or (C.LITE_ONNX_PATH if lite else C.ONNX_PATH)
    args.ckpt = args.ckpt or (C.LITE_CKPT_PATH if lite else C.CKPT_PATH)
    args.refs_out = args.refs_out or (C.LITE_REFS_PATH if lite else C.REFS_PATH)
    args.report_dir = args.report_dir or (C.LITE_REPORT_DIR if lite else C.REPORT_DIR)
    global REPORT_DIR, REFS_PATH
    REPORT_DIR, REFS_PATH = args.report_dir, args.refs_out

    meta = onnx_meta(args.onnx)
    split_sha = C.sha256_file(C.SPLIT_CSV)
    if meta["split_sha256"] != split_sha:
        sys.exit(f"evaluate: split_sha256 in ONNX metadata {meta['split_sha256']} != {split_sha}")
    dim = int(meta["embedding_dim"])
    sess = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])

    rows = C.read_split()
    parts = {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test")}
    ref_rows = [r for r in parts["train"] if r["label"] == "good"]  # sorted by file name

    def embed_rows(rs):
        X = np.stack([C.preprocess_u8(C.load_gray_u8(C.image_path(r["file"])), meta) for r in rs])
        return X, embed_ort(sess, X)

    Xref, R = embed_rows(ref_rows)
    Xval, V = embed_rows(parts["val"])
    assert R.dtype == np.float32 and R.shape[1] == dim

    # parity check PyTorch vs onnxruntime on real val images (batch 32)
    parity = None
    if os.path.exists(args.ckpt):
        import torch
        torch.set_num_threads(2)
        ck = torch.load(args.ckpt, map_location="cpu", weights_only=False)
        model = E.build_model(ck)
        with torch.no_grad():
            pt = model(torch.from_numpy(Xval[:32])).numpy()
        parity = float(np.abs(pt - V[:32]).max())
        print(f"parity torch vs onnxruntime (val batch 32): max abs diff {parity:.3e}")
        if not parity <= 1e-4:
            sys.exit(f"evaluate: PARITY FAILURE {parity} > 1e-4")

    # SOART3 implementation cross-check against scipy's minkowski
    for i in range(5):
        x, y = R[i * 7].astype(np.float64), V[i * 11].astype(np.float64)
        for pe, pg in [(2, 6), (1, 4)]:
            beta = (x @ y + C.SOART3_EPS) / (x @ x + C.SOART3_EPS)
            r = y - beta * x
            e_ref = np.log(1 + minkowski(r, np.zeros_like(r), pe))
            g_ref = e_ref - np.log(1 + minkowski(r, np.zeros_like(r), pg))
            e, g = C.soart3_matrix(y[None], x[None], pe, pg)
            assert abs(e[0, 0] - e_ref) <= 1e-12 and abs(g[0, 0] - g_ref) <= 1e-12, (e, e_ref, g, g_ref)

    # ---- choose scoring setting + threshold on val only ----
    yval = np.array([r["label"] == "defective" for r in parts["val"]])
    selection = []
    for setting in GRID:
        s, _ = scores_for(V, R, setting)
        thr, acc = best_threshold(s, yval)
        selection.append({"score": setting[0], "k": setting[1], "eta_p": setting[2][0], "gamma_p": setting[2][1],
                          "threshold": thr, "val_accuracy": acc, "val_auroc": float(roc_auc_score(yval, s))})
    best_i = max(range(len(GRID)), key=lambda i: (selection[i]["val_accuracy"], selection[i]["val_auroc"], -i))
    setting = GRID[best_i]
    thr = selection[best_i]["threshold"]
    score_name, k, (eta_p, gamma_p) = setting
    print(f"chosen on val: score={score_name} k={k} p=({eta_p},{gamma_p}) threshold={thr!r} "
          f"val acc={selection[best_i]['val_accuracy']:.4f} val AUROC={selection[best_i]['val_auroc']:.4f}")
    sv, _ = scores_for(V, R, setting)
    val_metrics = binary_metrics(yval, sv > thr, sv)
    robust = robustness(sess, parts["val"], yval, R, setting, thr, meta)
    if args.val_only:
        print(json.dumps({"val": {k_: val_metrics[k_] for k_ in ("accuracy", "auroc", "f1_defective")},
                          "val_robustness": [(d["perturbation"], round(d["val_accuracy"], 4)) for d in robust],
                          "val_confusion": val_metrics["confusion_matrix"]["rows_true_cols_pred"],
                          "grid": [(d["score"], d["k"], d["eta_p"], d["gamma_p"], round(d["val_accuracy"], 4),
                                    round(d["val_auroc"], 4)) for d in selection]}))
        return

    # ---- reference file ----
    model_sha = C.sha256_file(args.onnx)
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    now = dt.datetime.fromtimestamp(int(sde), dt.timezone.utc) if sde else dt.datetime.now(dt.timezone.utc)
    ref_meta = {
        "format": "inspectord-references", "format_version": "1", "model_sha256": model_sha,
        "embedding_dim": str(dim), "count": str(len(R)), "threshold": repr(thr), "score": score_name,
        "k": str(k), "eta_p": str(eta_p), "gamma_p": str(gamma_p), "threshold_method": THRESHOLD_METHOD,
        "created_by": "models/evaluate.py", "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "elpv train split, good images", "model_name": meta["model_name"],
    }
    save_file({"references": np.ascontiguousarray(R, dtype=np.float32)}, REFS_PATH, metadata=ref_meta)
    refs_sha = C.sha256_file(REFS_PATH)

    # ---- held-out test: touched only here, once ----
    Xte, T = embed_rows(parts["test"])
    yte = np.array([r["label"] == "defective" for r in parts["test"]])
    st, nearest = scores_for(T, R, setting)
    pred = st > thr
    test_metrics = binary_metrics(yte, pred, st)
    by_type = {}
    for typ in ("mono", "poly"):
        msk = np.array([r["type"] == typ for r in parts["test"]])
        by_type[typ] = binary_metrics(yte[msk], pred[msk], st[msk])

    by_probability = {}  # reporting only: accuracy per annotated defect probability
    for prob in sorted({r["defect_probability"] for r in parts["test"]}, key=float):
        msk = np.array([r["defect_probability"] == prob for r in parts["test"]])
        by_probability[prob] = {"n": int(msk.sum()), "label": "defective" if float(prob) >= 0.5 else "good",
                                "accuracy": float((pred[msk] == yte[msk]).mean())}

    os.makedirs(REPORT_DIR, exist_ok=True)
    with open(os.path.join(REPORT_DIR, "heldout-predictions.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "label", "type", "score", "nearest_ref", "prediction"])
        for r, s_, n_, p_ in zip(parts["test"], st, nearest, pred):
            w.writerow([r["file"], r["label"], r["type"], repr(float(s_)), int(n_), "defective" if p_ else "good"])

    plots(st, yte, T, yte, test_metrics["confusion_matrix"], setting, thr)

    export_info = {}
    ep = os.path.join(REPORT_DIR, "export.json")
    if os.path.exists(ep):
        with open(ep) as f:
            export_info = json.load(f)
    train_info = {}
    if os.path.exists(args.ckpt):
        train_info = {k_: ck[k_] for k_ in ("best_epoch", "best_val_auroc", "epochs", "train_wall_seconds",
                                            "n_params", "loss", "args") if k_ in ck}
        train_info["log"] = ck.get("log")
    metrics = {
        "model": {"path": os.path.relpath(args.onnx, C.ROOT), "sha256": model_sha,
                  "bytes": os.path.getsize(args.onnx), "metadata": meta},
        "references": {"path": os.path.relpath(REFS_PATH, C.ROOT), "sha256": refs_sha,
                       "reference_set_id": refs_sha[:16], "count": len(R), "metadata": ref_meta},
        "scoring": {"score": score_name, "k": k, "eta_p": eta_p, "gamma_p": gamma_p, "threshold": thr,
                    "threshold_repr": repr(thr), "threshold_method": THRESHOLD_METHOD,
                    "rule": "defective if score > threshold",
                    "nearest_ref": "0-based row index into the references tensor (argmin of per-reference score)"},
        "selection_on_val": selection,
        "val": val_metrics,
        "val_robustness": robust,
        "test": test_metrics,
        "test_by_type": by_type,
        "test_by_defect_probability": by_probability,
        "split_counts": {s: len(v) for s, v in parts.items()},
        "split_sha256": split_sha,
        "parity_max_abs_diff_eval": parity,
        "export": export_info,
        "training": train_info,
        "anchors_deitsch_2019": {"cnn_accuracy": 0.8842, "svm_accuracy": 0.8244},
    }
    with open(os.path.join(REPORT_DIR, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    tm = test_metrics
    print(f"TEST: acc {tm['accuracy']:.4f} prec {tm['precision_defective']:.4f} rec {tm['recall_defective']:.4f} "
          f"F1 {tm['f1_defective']:.4f} AUROC {tm['auroc']:.4f} cm {tm['confusion_matrix']['rows_true_cols_pred']}")
    for typ, m in by_type.items():
        print(f"  {typ}: acc {m['accuracy']:.4f} F1 {m['f1_defective']:.4f} AUROC {m['auroc']:.4f}")
    for prob, m in by_probability.items():
        print(f"  p={prob}: n={m['n']} acc {m['accuracy']:.4f}")
    print(f"references: {REFS_PATH} ({len(R)} x {dim}), reference_set_id {refs_sha[:16]}")


if __name__ == "__main__":
    main()
