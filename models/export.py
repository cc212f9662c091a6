#!/usr/bin/env python3
"""Export a trained encoder (only the encoder) to ONE self-contained ONNX file.

Two kinds (``--kind``, read from the checkpoint by default):
- ``small``: the from-scratch CNN, input ``image`` float32 [N,1,150,150], output
  ``embedding`` float32 [N,64] -> models/elpv-siamese.onnx
- ``lite0``: the fine-tuned EfficientNet-Lite0, input ``image`` float32
  [N,1,300,300] (gray; the replication to RGB is folded into the stem), output
  ``embedding`` float32 [N,128] -> models/elpv-lite0.onnx

- opset 18, weights embedded (no .onnx.data left behind)
- metadata_props as read by the Rust daemon (see README.md)
- parity check PyTorch vs onnxruntime on real train images (batch 16): max abs diff <= 1e-4
- single-core batch-1 latency (median of 300 runs after 30 warm-up runs)
Writes models/elpv-siamese.onnx and models/report/export.json.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch

import common as C

OPSET = 18
PARITY_TOL = 1e-4


def metadata(ckpt):
    if ckpt.get("kind") == "lite0":
        size, scale, mean, std = C.LITE_INPUT, C.LITE_PIXEL_SCALE, C.LITE_MEAN, C.LITE_STD
        name, version = C.LITE_MODEL_NAME, C.LITE_MODEL_VERSION
    else:
        size, scale, mean, std = C.INPUT_H, C.PIXEL_SCALE, ckpt["mean"], ckpt["std"]
        name, version = C.MODEL_NAME, C.MODEL_VERSION
    return {
        "input_width": str(size),
        "input_height": str(size),
        "channels": str(C.CHANNELS),
        "resize_filter": "box",
        "pixel_scale": repr(scale),
        "mean": repr(mean),
        "std": repr(std),
        "embedding_dim": str(ckpt["embedding_dim"]),
        "model_name": name,
        "model_version": version,
        "split_sha256": C.sha256_file(C.SPLIT_CSV),
        "layout": "NCHW",
        "color": "gray",
    }


def build_model(ckpt):
    """The checkpoint's encoder in eval mode."""
    if ckpt.get("kind") == "lite0":
        model = C.build_lite_encoder(ckpt["embedding_dim"], cut=ckpt["cut"], res=ckpt["res"])
    else:
        model = C.build_encoder(ckpt["embedding_dim"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def preprocess_ckpt(path, ckpt):
    if ckpt.get("kind") == "lite0":
        return C.lite_preprocess(path)
    return C.preprocess(path, ckpt["mean"], ckpt["std"])


def ort_session(path, threads=1):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def parity_images(ckpt, n=16):
    rows = [r for r in C.read_split() if r["split"] == "train"][:n]
    return np.stack([preprocess_ckpt(C.image_path(r["file"]), ckpt) for r in rows])


def measure_latency(path, runs=300, warmup=30):
    sess = ort_session(path, 1)
    shape = sess.get_inputs()[0].shape
    x = np.zeros((1, 1, shape[2], shape[3]), dtype=np.float32)
    for _ in range(warmup):
        sess.run(["embedding"], {"image": x})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(["embedding"], {"image": x})
        ts.append(time.perf_counter() - t)
    ts = np.array(ts) * 1e3
    return {"median_ms": float(np.median(ts)), "p90_ms": float(np.percentile(ts, 90)),
            "min_ms": float(ts.min()), "runs": runs, "warmup": warmup,
            "intra_op_num_threads": 1, "inter_op_num_threads": 1, "batch": 1}


def export_model(model, x, out, meta, doc, max_mb):
    """Exports `model` (eval mode; input (N, 1, H, W) as `x`) to ONE self-contained ONNX
    file with `meta` as metadata_props, checks its structure and its parity with PyTorch on
    `x` (outputs taken before the export: an exporter may alter the module it traces)."""
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    dim = ref.shape[1]
    with tempfile.TemporaryDirectory() as td:
        tmp = os.path.join(td, "encoder.onnx")
        example = (torch.zeros(2, 1, x.shape[2], x.shape[3]),)
        torch.onnx.export(model, example, tmp, input_names=["image"], output_names=["embedding"],
                          opset_version=OPSET, dynamo=True, external_data=True,
                          dynamic_shapes={"x": {0: torch.export.Dim("N")}})
        m = onnx.load(tmp, load_external_data=True)
    # rename the symbolic batch dimension and set metadata
    for vi in list(m.graph.input) + list(m.graph.output):
        vi.type.tensor_type.shape.dim[0].ClearField("dim_value")
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.producer_name = "inspectord models/export.py"
    m.doc_string = doc
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, out, save_as_external_data=False)
    for leftover in (out + ".data", os.path.join(os.path.dirname(out), "encoder.onnx.data")):
        if os.path.exists(leftover):
            os.remove(leftover)

    # structural checks
    m2 = onnx.load(out, load_external_data=False)
    assert [i.name for i in m2.graph.input] == ["image"], m2.graph.input
    assert [o.name for o in m2.graph.output] == ["embedding"], m2.graph.output
    for t in m2.graph.initializer:
        assert not t.external_data, f"initializer {t.name} is external"
    opset = max(o.version for o in m2.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 17, opset
    size = os.path.getsize(out)
    assert size <= max_mb * 1024 * 1024, size

    # parity check: PyTorch vs onnxruntime on real images, batch > 1
    got = ort_session(out, 2).run(["embedding"], {"image": x})[0]
    assert got.shape == (len(x), dim) and got.dtype == np.float32, (got.shape, got.dtype)
    diff = float(np.abs(ref - got).max())
    print(f"parity torch vs onnxruntime (batch {len(x)}): max abs diff {diff:.3e}")
    if not diff <= PARITY_TOL:
        sys.exit(f"export: PARITY FAILURE: max abs diff {diff} > {PARITY_TOL}")
    return {"onnx_bytes": size, "opset": opset, "parity_max_abs_diff": diff, "parity_batch": len(x)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["small", "lite0"], default="small")
    ap.add_argument("--ckpt", default=None, help="default: the kind's checkpoint under models/.cache")
    ap.add_argument("--out", default=None, help="default: models/elpv-siamese.onnx or models/elpv-lite0.onnx")
    ap.add_argument("--report-dir", default=None, help="default: models/report or models/report/lite0")
    args = ap.parse_args()
    lite = args.kind == "lite0"
    args.ckpt = args.ckpt or (C.LITE_CKPT_PATH if lite else C.CKPT_PATH)
    args.out = args.out or (C.LITE_ONNX_PATH if lite else C.ONNX_PATH)
    args.report_dir = args.report_dir or (C.LITE_REPORT_DIR if lite else C.REPORT_DIR)
    torch.set_num_threads(2)

    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    if (ckpt.get("kind") == "lite0") != lite:
        sys.exit(f"export: {args.ckpt} is not a {args.kind} checkpoint")
    model = build_model(ckpt)
    x = parity_images(ckpt)
    doc = ("ELPV Siamese encoder, ImageNet-pretrained EfficientNet-Lite0 fine-tuned with the SOART3 pair loss"
           if lite else "ELPV Siamese encoder (SOART3 pair loss)") + "; see models/README.md"
    info = export_model(model, x, args.out, metadata(ckpt), doc, max_mb=20 if lite else 5)
    size, diff, opset = info["onnx_bytes"], info["parity_max_abs_diff"], info["opset"]

    lat = measure_latency(args.out)
    print(f"latency batch 1, 1 thread: median {lat['median_ms']:.3f} ms (p90 {lat['p90_ms']:.3f})")
    info = {"onnx_path": os.path.relpath(args.out, C.ROOT), "onnx_bytes": size,
            "onnx_sha256": C.sha256_file(args.out), "opset": opset,
            "parity_max_abs_diff": diff, "parity_batch": len(x), "latency": lat,
            "metadata": metadata(ckpt),
            "onnxruntime_version": ort.__version__, "torch_version": torch.__version__}
    os.makedirs(args.report_dir, exist_ok=True)
    with open(os.path.join(args.report_dir, "export.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out} ({size} bytes, sha256 {info['onnx_sha256']})")


if __name__ == "__main__":
    main()
