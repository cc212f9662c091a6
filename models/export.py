#!/usr/bin/env python3
"""Export the trained encoder (only the encoder) to ONE self-contained ONNX file.

- input ``image`` float32 [N,1,150,150] (N dynamic), output ``embedding`` float32 [N,64]
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


def metadata(mean, std):
    return {
        "input_width": str(C.INPUT_W),
        "input_height": str(C.INPUT_H),
        "channels": str(C.CHANNELS),
        "resize_filter": "box",
        "pixel_scale": repr(C.PIXEL_SCALE),
        "mean": repr(mean),
        "std": repr(std),
        "embedding_dim": str(C.EMBEDDING_DIM),
        "model_name": C.MODEL_NAME,
        "model_version": C.MODEL_VERSION,
        "split_sha256": C.sha256_file(C.SPLIT_CSV),
        "layout": "NCHW",
        "color": "gray",
    }


def ort_session(path, threads=1):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def parity_images(ckpt, n=16):
    rows = [r for r in C.read_split() if r["split"] == "train"][:n]
    return np.stack([C.preprocess(C.image_path(r["file"]), ckpt["mean"], ckpt["std"]) for r in rows])


def measure_latency(path, runs=300, warmup=30):
    sess = ort_session(path, 1)
    x = np.zeros((1, 1, C.INPUT_H, C.INPUT_W), dtype=np.float32)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=C.CKPT_PATH)
    ap.add_argument("--out", default=C.ONNX_PATH)
    ap.add_argument("--report-dir", default=C.REPORT_DIR)
    args = ap.parse_args()
    torch.set_num_threads(2)

    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    model = C.build_encoder(ckpt["embedding_dim"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()

    with tempfile.TemporaryDirectory() as td:
        tmp = os.path.join(td, "encoder.onnx")
        example = (torch.zeros(2, 1, C.INPUT_H, C.INPUT_W),)
        torch.onnx.export(model, example, tmp, input_names=["image"], output_names=["embedding"],
                          opset_version=OPSET, dynamo=True, external_data=True,
                          dynamic_shapes={"x": {0: torch.export.Dim("N")}})
        m = onnx.load(tmp, load_external_data=True)
    # rename the symbolic batch dimension and set metadata
    for vi in list(m.graph.input) + list(m.graph.output):
        vi.type.tensor_type.shape.dim[0].ClearField("dim_value")
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    del m.metadata_props[:]
    for k, v in metadata(ckpt["mean"], ckpt["std"]).items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.producer_name = "inspectord models/export.py"
    m.doc_string = "ELPV Siamese encoder (SOART3 pair loss); see models/README.md"
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, args.out, save_as_external_data=False)
    for leftover in (args.out + ".data", os.path.join(os.path.dirname(args.out), "encoder.onnx.data")):
        if os.path.exists(leftover):
            os.remove(leftover)

    # structural checks
    m2 = onnx.load(args.out, load_external_data=False)
    assert [i.name for i in m2.graph.input] == ["image"], m2.graph.input
    assert [o.name for o in m2.graph.output] == ["embedding"], m2.graph.output
    for t in m2.graph.initializer:
        assert not t.external_data, f"initializer {t.name} is external"
    opset = max(o.version for o in m2.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 17, opset
    size = os.path.getsize(args.out)
    assert size <= 5 * 1024 * 1024, size

    # parity check: PyTorch vs onnxruntime on real images, batch > 1
    x = parity_images(ckpt)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = ort_session(args.out, 2).run(["embedding"], {"image": x})[0]
    assert got.shape == (len(x), C.EMBEDDING_DIM) and got.dtype == np.float32, (got.shape, got.dtype)
    diff = float(np.abs(ref - got).max())
    print(f"parity torch vs onnxruntime (batch {len(x)}): max abs diff {diff:.3e}")
    if not diff <= PARITY_TOL:
        sys.exit(f"export: PARITY FAILURE: max abs diff {diff} > {PARITY_TOL}")

    lat = measure_latency(args.out)
    print(f"latency batch 1, 1 thread: median {lat['median_ms']:.3f} ms (p90 {lat['p90_ms']:.3f})")
    info = {"onnx_path": os.path.relpath(args.out, C.ROOT), "onnx_bytes": size,
            "onnx_sha256": C.sha256_file(args.out), "opset": opset,
            "parity_max_abs_diff": diff, "parity_batch": len(x), "latency": lat,
            "metadata": metadata(ckpt["mean"], ckpt["std"]),
            "onnxruntime_version": ort.__version__, "torch_version": torch.__version__}
    os.makedirs(args.report_dir, exist_ok=True)
    with open(os.path.join(args.report_dir, "export.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out} ({size} bytes, sha256 {info['onnx_sha256']})")


if __name__ == "__main__":
    main()
