"""Shared code for the ELPV Siamese pipeline: paths, split, preprocessing, SOART3, encoder.

The preprocessing contract implemented here is the one the Rust daemon
re-implements (see models/README.md, "Preprocessing contract").
"""
import csv
import hashlib
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA_DIR = os.path.join(ROOT, "data", "elpv")
SPLIT_CSV = os.path.join(HERE, "elpv-split.csv")
CKPT_PATH = os.path.join(HERE, ".cache", "encoder.pt")
ONNX_PATH = os.path.join(HERE, "elpv-siamese.onnx")
REFS_PATH = os.path.join(HERE, "elpv-references.safetensors")
REPORT_DIR = os.path.join(HERE, "report")

INPUT_H = 150
INPUT_W = 150
CHANNELS = 1
PIXEL_SCALE = 0.00392156862745098  # 1/255
EMBEDDING_DIM = 64
MODEL_NAME = "elpv-siamese"
MODEL_VERSION = "1.0.0"
SOART3_EPS = 0.0001


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_split(path=SPLIT_CSV):
    """Rows of the split CSV, sorted by file name (the CSV is already sorted)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return sorted(rows, key=lambda r: r["file"])


# ----------------------------------------------------------------------------
# Preprocessing contract
# ----------------------------------------------------------------------------

def _box_weights(n_in, n_out):
    """Area (box) resampling weights, shape (n_out, n_in): output pixel i covers
    source interval [i*n_in/n_out, (i+1)*n_in/n_out); each source pixel is weighted
    by its overlap with that interval, divided by the interval length."""
    w = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
            ov = min(hi, j + 1) - max(lo, j)
            if ov > 0:
                w[i, j] = ov / scale
    return w


def box_resize(a, out_h=INPUT_H, out_w=INPUT_W):
    """Area-weighted box resize of a float32 (H, W) array.

    Computed in float64 and rounded once to float32.  For integer factors
    (ELPV: 300 -> 150) it uses the block mean directly; each 2x2 block sum of
    float32 values is exact in float64 and /4 is exact, so the result is the
    correctly rounded float32 of the exact block mean, independent of
    summation order."""
    h, w = a.shape
    if h == out_h and w == out_w:
        return a.astype(np.float32, copy=True)
    a64 = a.astype(np.float64)
    if h % out_h == 0 and w % out_w == 0:
        fy, fx = h // out_h, w // out_w
        out = a64.reshape(out_h, fy, out_w, fx).sum(axis=(1, 3)) / float(fy * fx)
    else:
        out = _box_weights(h, out_h) @ a64 @ _box_weights(w, out_w).T
    return out.astype(np.float32)


def load_scaled(path):
    """decode -> 8-bit gray -> float32 * pixel_scale -> box resize; (H, W) float32 in [0, 1]."""
    from PIL import Image
    with Image.open(path) as im:
        g = np.asarray(im.convert("L"), dtype=np.uint8)
    a = g.astype(np.float32) * np.float32(PIXEL_SCALE)
    return box_resize(a)


def normalize(a, mean, std):
    """(a - mean) / std in float32, shape (1, H, W)."""
    a = (a.astype(np.float32) - np.float32(mean)) / np.float32(std)
    return a[None, :, :].astype(np.float32)


def preprocess(path, mean, std):
    return normalize(load_scaled(path), mean, std)


def image_path(name):
    return os.path.join(DATA_DIR, "images", name)


def load_scaled_many(names):
    return np.stack([load_scaled(image_path(n)) for n in names]).astype(np.float32)


# ----------------------------------------------------------------------------
# SOART3 (float64, exact formula; the daemon's metric)
# ----------------------------------------------------------------------------

def pnorm(r, p, axis=-1):
    """(sum |r_i|^p)^(1/p), as scipy.spatial.distance.minkowski(r, 0, p)."""
    return np.power(np.sum(np.power(np.abs(r), p), axis=axis), 1.0 / p)


def soart3(x, y, eta_p=2, gamma_p=6):
    """x: reference (D,), y: frame (D,) -> (beta, eta, gamma) in float64."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    beta = (np.dot(x, y) + SOART3_EPS) / (np.dot(x, x) + SOART3_EPS)
    r = y - beta * x
    eta = np.log(1.0 + pnorm(r, eta_p))
    gamma = eta - np.log(1.0 + pnorm(r, gamma_p))
    return float(beta), float(eta), float(gamma)


def soart3_matrix(Y, X, eta_p=2, gamma_p=6, chunk=64):
    """All-pairs SOART3 for frames Y (N, D) vs references X (R, D).
    Returns (eta, gamma), each (N, R) float64."""
    Y = np.asarray(Y, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    xx = np.einsum("rd,rd->r", X, X)
    eta = np.empty((len(Y), len(X)))
    gamma = np.empty((len(Y), len(X)))
    for s in range(0, len(Y), chunk):
        y = Y[s:s + chunk]
        beta = (y @ X.T + SOART3_EPS) / (xx[None, :] + SOART3_EPS)  # (n, R)
        r = y[:, None, :] - beta[:, :, None] * X[None, :, :]          # (n, R, D)
        e = np.log(1.0 + pnorm(r, eta_p))
        eta[s:s + chunk] = e
        gamma[s:s + chunk] = e - np.log(1.0 + pnorm(r, gamma_p))
    return eta, gamma


def knn_score(S, k):
    """S: (N, R) per-reference scores -> (score (N,), nearest (N,)).
    score = mean of the k smallest; nearest = argmin (first on ties)."""
    nearest = np.argmin(S, axis=1)
    if k == 1:
        score = S[np.arange(len(S)), nearest]
    else:
        part = np.sort(S, axis=1)[:, :k]
        score = part.mean(axis=1)
    return score, nearest


# ----------------------------------------------------------------------------
# Encoder (PyTorch)
# ----------------------------------------------------------------------------

def build_encoder(embedding_dim=EMBEDDING_DIM, dropout=0.0):
    import torch
    from torch import nn

    def block(cin, cout, stride, k=3):
        return nn.Sequential(
            nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    class Encoder(nn.Module):
        """Small VGG-style CNN, 1x150x150 -> embedding_dim, L2-normalised output."""

        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                block(1, 16, 2, k=5),    # 75
                block(16, 32, 2),        # 38
                block(32, 32, 1),
                block(32, 64, 2),        # 19
                block(64, 64, 1),
                block(64, 96, 2),        # 10
                block(96, 96, 1),
            )
            self.drop = nn.Dropout(dropout)  # training only; identity in eval/ONNX
            self.head = nn.Linear(2 * 96, embedding_dim)

        def forward(self, x):
            f = self.features(x)
            pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
            z = self.head(self.drop(pooled))
            # Norm constraint against scale collapse: every embedding has unit L2 norm.
            return z / torch.sqrt((z * z).sum(dim=1, keepdim=True) + 1e-12)

    return Encoder()


# ----------------------------------------------------------------------------
# Accurate encoder: ImageNet-pretrained EfficientNet-Lite0, fine-tuned (Siamese)
# ----------------------------------------------------------------------------
# Architecture: the pinned package efficientnet-lite-pytorch==0.1.0 (Apache-2.0;
# TF "SAME" padding, ReLU6, no squeeze-excitation), loaded with strict=True from
# the weights that models/fetch_backbone.py fetches (never committed).
#
# Contract: 8-bit gray in, 300 x 300 (ELPV's native size: no resampling for ELPV
# cells), normalised as the TF-Lite weights expect, (g - 127) / 128 — in the
# contract's terms pixel_scale = 1, mean = 127, std = 128, which is exact in
# float32.  The gray channel's replication to the three channels the ImageNet
# stem expects is folded into the stem: a 3-channel convolution of a replicated
# gray image equals a 1-channel convolution with the weights summed over the
# input channels, so the graph takes (N, 1, 300, 300).

LITE_WEIGHTS = os.path.join(HERE, ".cache", "efficientnet-lite0-57934424.pth")
LITE_ONNX_PATH = os.path.join(HERE, "elpv-lite0.onnx")
LITE_REFS_PATH = os.path.join(HERE, "elpv-lite0-references.safetensors")
LITE_REPORT_DIR = os.path.join(HERE, "report", "lite0")
LITE_CKPT_PATH = os.path.join(HERE, ".cache", "lite0.pt")
LITE_INPUT = 300
LITE_PIXEL_SCALE = 1.0
LITE_MEAN = 127.0
LITE_STD = 128.0
LITE_MODEL_NAME = "elpv-lite0"
LITE_MODEL_VERSION = "1.0.0"
LITE_HEAD_CHANNELS = 1280


def load_gray_u8(path):
    """decode -> 8-bit gray (Pillow's convert("L")), (H, W) uint8."""
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8)


def lite_preprocess_u8(g):
    """(H, W) uint8 at LITE_INPUT -> (1, H, W) float32, exactly the daemon's
    (g * pixel_scale - mean) / std with pixel_scale 1, mean 127, std 128."""
    assert g.shape == (LITE_INPUT, LITE_INPUT), g.shape
    a = g.astype(np.float32) * np.float32(LITE_PIXEL_SCALE)
    return ((a - np.float32(LITE_MEAN)) / np.float32(LITE_STD))[None].astype(np.float32)


def lite_preprocess(path):
    return lite_preprocess_u8(load_gray_u8(path))


def build_lite_encoder(embedding_dim=128, cut=13, res=LITE_INPUT, weights=LITE_WEIGHTS,
                       pretrained_only=False, drop_connect=0.0):
    """EfficientNet-Lite0 (ImageNet weights, strict load) as a gray-in encoder.

    cut: blocks [0, cut) with the stem form the frozen lower part (`lower`),
    the rest + head conv + global average pool + linear projection the trained
    upper part (`upper`).  res: the resolution the backbone runs at; when it
    differs from LITE_INPUT the graph resizes (bilinear, antialiased) itself.
    pretrained_only: no projection; the embedding is the pooled 1280-d head
    (the "enroll-only" encoder: nothing fine-tuned)."""
    import torch
    from torch import nn
    from torch.nn import functional as F
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=res)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)

    class LiteEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.res = res
            self.cut = cut
            self.drop_connect = drop_connect
            stem = net._conv_stem
            # fold the gray -> RGB replication into the stem (see above)
            w1 = stem.weight.detach().sum(dim=1, keepdim=True)
            conv1 = type(stem)(1, stem.out_channels, kernel_size=stem.kernel_size, stride=stem.stride,
                               image_size=res, bias=False)
            with torch.no_grad():
                conv1.weight.copy_(w1)
            self.stem = conv1
            self.bn0 = net._bn0
            self.blocks = net._blocks
            self.conv_head = net._conv_head
            self.bn1 = net._bn1
            self.act = nn.ReLU6()
            self.pretrained_only = pretrained_only
            if not pretrained_only:
                self.proj = nn.Linear(LITE_HEAD_CHANNELS, embedding_dim)
            self.embedding_dim = LITE_HEAD_CHANNELS if pretrained_only else embedding_dim

        def lower(self, x):
            if x.shape[-1] != self.res or x.shape[-2] != self.res:
                x = F.interpolate(x, size=(self.res, self.res), mode="bilinear", align_corners=False,
                                  antialias=True)
            x = self.act(self.bn0(self.stem(x)))
            for b in self.blocks[:self.cut]:
                x = b(x)
            return x

        def upper(self, f):
            n = len(self.blocks)
            for i in range(self.cut, n):
                rate = self.drop_connect * i / n if self.training and self.drop_connect else None
                f = self.blocks[i](f, drop_connect_rate=rate)
            f = self.act(self.bn1(self.conv_head(f)))
            z = f.mean(dim=(2, 3))
            if not self.pretrained_only:
                z = self.proj(z)
            # unit L2 norm, as the small encoder
            return z / torch.sqrt((z * z).sum(dim=1, keepdim=True) + 1e-12)

        def forward(self, x):
            return self.upper(self.lower(x))

    return LiteEncoder()


# ----------------------------------------------------------------------------
# Line-like drift (training augmentation and the robustness check on val)
# ----------------------------------------------------------------------------

def line_drift(g, gen, max_shift=4.0, max_rot_deg=2.0, lighting=True):
    """Drift of a batch of uint8 gray images g (B, 1, H, W) (torch): a random
    sub-pixel shift of up to max_shift pixels and rotation of up to max_rot_deg
    degrees (bilinear, border padding: what a fixture and a camera ROI give),
    and with `lighting` brightness +-8 %, contrast x[0.8, 1.2], gamma
    [0.8, 1.25]; rounded back to 8 bits, as a camera delivers them."""
    import math
    import torch
    from torch.nn import functional as F
    B, _, H, W = g.shape
    x = g.float() / 255.0
    r = torch.rand(B, 6, generator=gen)
    ang = (r[:, 0] * 2 - 1) * math.radians(max_rot_deg)
    tx = (r[:, 1] * 2 - 1) * max_shift * 2 / W
    ty = (r[:, 2] * 2 - 1) * max_shift * 2 / H
    if max_shift or max_rot_deg:
        cos, sin = torch.cos(ang), torch.sin(ang)
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if lighting:
        gamma = torch.exp((r[:, 3] * 2 - 1) * math.log(1.25))
        x = x.clamp(0, 1) ** gamma[:, None, None, None]
        c = 0.8 + 0.4 * r[:, 4]
        b = (r[:, 5] * 2 - 1) * 0.08
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - m) * c[:, None, None, None] + m + b[:, None, None, None]
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8)


def preprocess_u8(g, meta):
    """8-bit gray (H, W) -> (1, h, w) float32 by the contract in an ONNX file's
    metadata, as the daemon does: * pixel_scale, box resize, (a - mean) / std."""
    a = g.astype(np.float32) * np.float32(float(meta["pixel_scale"]))
    a = box_resize(a, int(meta["input_height"]), int(meta["input_width"]))
    return ((a - np.float32(float(meta["mean"]))) / np.float32(float(meta["std"])))[None].astype(np.float32)
