#!/usr/bin/env python3
"""int8 variant of the lite0 encoder: ONNX Runtime static quantization (QDQ).

Calibrated on train images only (min-max over N images spread across the
train split); weights per channel, activations per tensor, both int8.
The shipping rule is decided on val: quantize, run evaluate.py --val-only on
the int8 file (its own references and threshold), and ship it only if its val
accuracy is within 0.5 points of the fp32 encoder's.  Size and one-thread
batch-1 latency (interleaved with fp32 runs) are reported either way in
models/report/lite0/int8.json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

import common as C
from evaluate import onnx_meta

INT8_PATH = os.path.join(C.HERE, "elpv-lite0-int8.onnx")


class Reader(CalibrationDataReader):
    def __init__(self, files, meta, bs=8):
        self.batches = []
        for s in range(0, len(files), bs):
            self.batches.append(np.stack([C.preprocess_u8(C.load_gray_u8(C.image_path(f)), meta)
                                          for f in files[s:s + bs]]))
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {"image": self.batches[self.i - 1]}


def latency_pair(a, b, rounds=5, runs=60, warmup=20):
    """Median one-thread batch-1 latency of two models, measured interleaved."""
    def sess(p):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        return ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
    sa, sb = sess(a), sess(b)
    x = np.zeros((1, 1, C.LITE_INPUT, C.LITE_INPUT), np.float32)
    ta, tb = [], []
    for s in (sa, sb):
        for _ in range(warmup):
            s.run(None, {"image": x})
    for _ in range(rounds):
        for s, t in ((sa, ta), (sb, tb)):
            for _ in range(runs):
                t0 = time.perf_counter()
                s.run(None, {"image": x})
                t.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ta)), float(np.median(tb))


def val_only(onnx_path, parity=True):
    # the int8 graph is not expected to match PyTorch to 1e-4: no parity check for it
    extra = [] if parity else ["--ckpt", "none"]
    out = subprocess.run([sys.executable, "evaluate.py", "--kind", "lite0", "--onnx", onnx_path, "--val-only"] + extra,
                         cwd=C.HERE, check=True, capture_output=True, text=True).stdout
    print(out, end="")
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fp32", default=C.LITE_ONNX_PATH)
    ap.add_argument("--out", default=INT8_PATH)
    ap.add_argument("--calibration", type=int, default=128, help="train images used for calibration")
    ap.add_argument("--max-loss", type=float, default=0.005, help="ship if val accuracy drops by at most this")
    ap.add_argument("--activations", choices=["int8", "uint8"], default="uint8")
    ap.add_argument("--calibrate", choices=["minmax", "percentile", "entropy"], default="percentile")
    ap.add_argument("--ops", choices=["conv", "all"], default="conv",
                    help="conv: quantize the convolutions only (the bulk of the work), keep pooling, "
                         "projection and normalisation in float")
    ap.add_argument("--report", default=os.path.join(C.LITE_REPORT_DIR, "int8.json"))
    args = ap.parse_args()

    meta = onnx_meta(args.fp32)
    train = [r["file"] for r in C.read_split() if r["split"] == "train"]
    step = max(1, len(train) // args.calibration)
    calib = train[::step][:args.calibration]
    with tempfile.TemporaryDirectory() as td:
        pre = os.path.join(td, "pre.onnx")
        quant_pre_process(args.fp32, pre, skip_symbolic_shape=True)
        tmp = os.path.join(td, "int8.onnx")
        t = time.time()
        quantize_static(pre, tmp, Reader(calib, meta), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8 if args.activations == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method={"minmax": CalibrationMethod.MinMax,
                                          "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[args.calibrate],
                        op_types_to_quantize=["Conv"] if args.ops == "conv" else None)
        print(f"quantized in {time.time() - t:.0f}s on {len(calib)} train images")
        m = onnx.load(tmp)
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    p = m.metadata_props.add()
    p.key, p.value = "quantization", (f"static QDQ, int8 per-channel weights, {args.activations} activations "
                                      f"({args.calibrate}), ops {args.ops}, {len(calib)} train images")
    m.doc_string = "int8 (static QDQ) of models/elpv-lite0.onnx; see models/README.md"
    onnx.save(m, args.out)

    fp = val_only(args.fp32)
    q = val_only(args.out, parity=False)
    lat_fp, lat_q = latency_pair(args.fp32, args.out)
    loss = fp["val"]["accuracy"] - q["val"]["accuracy"]
    ship = loss <= args.max_loss + 1e-12
    info = {"int8_path": os.path.relpath(args.out, C.ROOT), "int8_bytes": os.path.getsize(args.out),
            "fp32_bytes": os.path.getsize(args.fp32), "calibration_images": len(calib),
            "val_accuracy_fp32": fp["val"]["accuracy"], "val_accuracy_int8": q["val"]["accuracy"],
            "val_auroc_fp32": fp["val"]["auroc"], "val_auroc_int8": q["val"]["auroc"],
            "val_accuracy_loss": loss, "latency_ms_fp32": lat_fp, "latency_ms_int8": lat_q,
            "latency": "median batch-1, 1 intra-op thread, 5 interleaved rounds of 60 runs",
            "ship": ship, "rule": f"ship if val accuracy loss <= {args.max_loss}",
            "settings": {"activations": args.activations, "calibrate": args.calibrate, "ops": args.ops}}
    print(json.dumps(info, indent=2))
    os.makedirs(os.path.dirname(args.report), exist_ok=True)
    with open(args.report, "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    if not ship:
        os.remove(args.out)
        print(f"int8 not shipped (val accuracy loss {loss:.4f} > {args.max_loss}); {args.out} removed")


if __name__ == "__main__":
    main()
