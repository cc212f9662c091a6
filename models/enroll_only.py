#!/usr/bin/env python3
"""The enroll-only row: what a plant gets on day one with a new part and no defect labels.

The ImageNet-pretrained EfficientNet-Lite0 with NO fine-tuning (embedding =
the pooled 1280-d head, unit norm), exported with the same contract as the
shipped lite0 encoder; references = the good images of the train split;
scoring and threshold exactly as `inspectord enroll` sets them (SOART3 eta,
k = 1, orders (2, 6), threshold = the leave-one-out score quantile for a 1 %
false-reject rate: the ceil(0.99 n)-th smallest); no defective image is seen
before the test split is scored once.  The same rule is applied to the
fine-tuned lite0 encoder for comparison (its training saw defect labels).

Writes models/report/lite0/enroll-only.json.  The pretrained-only ONNX file
stays in models/.cache (third-party weights, repackaged: never committed).
"""
import json
import math
import os

import numpy as np
import onnxruntime as ort
import torch

import common as C
import export as E
import train_lite as T
from evaluate import binary_metrics, embed_ort, onnx_meta

FALSE_REJECT_RATE = 0.01
PRETRAINED_ONNX = os.path.join(C.HERE, ".cache", "elpv-lite0-pretrained.onnx")


def loo_threshold(R, frr=FALSE_REJECT_RATE, eta_p=2, gamma_p=6):
    eta, _ = C.soart3_matrix(R, R, eta_p, gamma_p)
    np.fill_diagonal(eta, np.inf)
    loo = np.sort(eta.min(axis=1))
    keep = math.ceil((1.0 - frr) * len(loo))
    return float(loo[min(max(keep, 1), len(loo)) - 1])


def row(onnx_path, rows):
    meta = onnx_meta(onnx_path)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])

    def emb(rs):
        X = np.stack([C.preprocess_u8(C.load_gray_u8(C.image_path(r["file"])), meta) for r in rs])
        return embed_ort(sess, X)

    refs = [r for r in rows if r["split"] == "train" and r["label"] == "good"]
    test = [r for r in rows if r["split"] == "test"]
    R = emb(refs)
    thr = loo_threshold(R)
    T = emb(test)
    eta, _ = C.soart3_matrix(T, R, 2, 6)
    s, _ = C.knn_score(eta, 1)
    y = np.array([r["label"] == "defective" for r in test])
    m = binary_metrics(y, s > thr, s)
    print(f"{os.path.basename(onnx_path)}: threshold {thr:.5f}  TEST acc {m['accuracy']:.4f} "
          f"AUROC {m['auroc']:.4f} recall {m['recall_defective']:.4f} cm {m['confusion_matrix']['rows_true_cols_pred']}")
    return {"model": os.path.relpath(onnx_path, C.ROOT), "embedding_dim": int(R.shape[1]),
            "references": len(R), "scoring": {"score": "eta", "k": 1, "eta_p": 2, "gamma_p": 6},
            "threshold": thr, "threshold_rule": f"leave-one-out quantile, false-reject rate {FALSE_REJECT_RATE}",
            "test": m}


def main():
    torch.set_num_threads(2)
    # the backbone as the shipped encoder runs it: 300 px in, resized to 224 inside the graph
    res = T.parser().get_default("res")
    model = C.build_lite_encoder(pretrained_only=True, res=res).eval()
    rows = C.read_split()
    x = np.stack([C.lite_preprocess(C.image_path(r["file"])) for r in rows if r["split"] == "train"][:16])
    meta = {"input_width": str(C.LITE_INPUT), "input_height": str(C.LITE_INPUT), "channels": "1",
            "resize_filter": "box", "pixel_scale": repr(C.LITE_PIXEL_SCALE), "mean": repr(C.LITE_MEAN),
            "std": repr(C.LITE_STD), "embedding_dim": str(C.LITE_HEAD_CHANNELS),
            "model_name": "elpv-lite0-pretrained", "model_version": "0", "split_sha256": C.sha256_file(C.SPLIT_CSV),
            "layout": "NCHW", "color": "gray"}
    os.makedirs(os.path.dirname(PRETRAINED_ONNX), exist_ok=True)
    E.export_model(model, x, PRETRAINED_ONNX, meta,
                   "EfficientNet-Lite0, ImageNet weights, not fine-tuned (enroll-only baseline)", max_mb=20)
    out = {"backbone_resolution": res, "pretrained_only": row(PRETRAINED_ONNX, rows)}
    if os.path.exists(C.LITE_ONNX_PATH):
        out["fine_tuned_enroll_rule"] = row(C.LITE_ONNX_PATH, rows)
    os.makedirs(C.LITE_REPORT_DIR, exist_ok=True)
    with open(os.path.join(C.LITE_REPORT_DIR, "enroll-only.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
