"""What both Python peers share and a user would write once: the model's preprocessing contract
(read from the ONNX metadata, exactly as the daemon does), the reference file (safetensors read
with numpy, no extra package), and the image list.

The contract (models/README.md): decode, 8-bit gray as Pillow's convert("L"), float32 x
pixel_scale, box (area) resize to input_width x input_height in float64 rounded once to
float32, (x - mean) / std, NCHW with N = 1.
"""
import json
import os
import struct

import numpy as np
import onnxruntime as ort
from PIL import Image


def session(model_path, threads):
    """An ONNX Runtime session with `threads` intra-op threads (one inter-op thread, as the
    daemon's sessions) and the contract from its metadata."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    return sess, meta


def _box_weights(n_in, n_out):
    w = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
            ov = min(hi, j + 1) - max(lo, j)
            if ov > 0:
                w[i, j] = ov / scale
    return w


def box_resize(a, out_h, out_w):
    h, w = a.shape
    if (h, w) == (out_h, out_w):
        return a.astype(np.float32, copy=True)
    a64 = a.astype(np.float64)
    if h % out_h == 0 and w % out_w == 0:
        fy, fx = h // out_h, w // out_w
        out = a64.reshape(out_h, fy, out_w, fx).sum(axis=(1, 3)) / float(fy * fx)
    else:
        out = _box_weights(h, out_h) @ a64 @ _box_weights(w, out_w).T
    return out.astype(np.float32)


def preprocess(path, meta):
    """One image file -> (1, 1, H, W) float32 tensor per the contract in `meta`."""
    if meta.get("channels", "1") != "1" or meta.get("resize_filter", "box") != "box":
        raise SystemExit("bench: the Python peers implement the gray + box contract only")
    with Image.open(path) as im:
        g = np.asarray(im.convert("L"), dtype=np.uint8)
    a = g.astype(np.float32) * np.float32(float(meta["pixel_scale"]))
    a = box_resize(a, int(meta["input_height"]), int(meta["input_width"]))
    a = (a - np.float32(float(meta["mean"]))) / np.float32(float(meta["std"]))
    return a[None, None].astype(np.float32)


def read_references(path):
    """(embeddings (R, D) float32, metadata dict) of an inspectord reference file."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    t = header["references"]
    if t["dtype"] != "F32":
        raise SystemExit(f"bench: {path}: references are {t['dtype']}, expected F32")
    lo, hi = t["data_offsets"]
    emb = np.frombuffer(blob, dtype="<f4", count=(hi - lo) // 4, offset=8 + n + lo)
    return emb.reshape(t["shape"]), header.get("__metadata__", {})


def scoring(meta):
    """(score kind, k, eta_p, gamma_p, threshold) recorded in a reference file."""
    return (meta["score"], int(meta["k"]), float(meta["eta_p"]), float(meta["gamma_p"]),
            float(meta["threshold"]))


def read_list(path):
    """A list file: one image path a line, relative to the list file's directory."""
    base = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        return [os.path.join(base, line.strip()) for line in f if line.strip()]
