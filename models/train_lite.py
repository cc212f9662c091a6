#!/usr/bin/env python3
"""Fine-tune the ImageNet-pretrained EfficientNet-Lite0 as a Siamese SOART3 encoder.

Recipe (every choice made on val; the held-out ``test`` part is never read here):
- the stem and blocks [0, cut) are frozen; their outputs are computed once per
  image under V variants (the 8 flips/rotations, each once as recorded and once
  with line-like drift: a few pixels of shift, a degree or two of rotation,
  brightness/contrast/gamma, rounded back to 8 bits) and cached;
- blocks [cut, 16), the head convolution and a linear projection to the
  embedding are trained with the project's SOART3 pair loss (train.py's
  ``siamese_loss``) plus an auxiliary good/defective logit on the embedding
  (BCE; training only, not exported);
- batch norm statistics stay the ImageNet ones (eval mode): 1,575 images are
  too few to re-estimate them, the affine parameters are trained;
- the checkpoint with the best val AUROC (nearest good train reference,
  SOART3 eta) is kept.

Modes: the main split (train -> val), or ``--fold i --folds K``: K-fold over
train+val, fold i held out (evaluated by evaluate_lite.py --fold), an inner
20 % of the rest as val, the remaining 80 % trained on.
"""
import argparse
import hashlib
import json
import os
import time

import numpy as np
import torch
from torch.nn import functional as F

import common as C
from train import nearest_eta_metrics, seed_everything, siamese_loss

CACHE_DIR = os.path.join(C.HERE, ".cache")


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------

def _hkey(s, salt):
    return hashlib.sha256(f"{salt}:{s}".encode()).hexdigest()


def fold_parts(rows, fold, folds):
    """K-fold over train+val, stratified by label x type, keyed-hash order.
    Returns (train_rows, val_rows, heldout_rows)."""
    pool = [r for r in rows if r["split"] in ("train", "val")]
    strata = {}
    for r in pool:
        strata.setdefault((r["label"], r["type"]), []).append(r)
    train, val, held = [], [], []
    for key in sorted(strata):
        rs = sorted(strata[key], key=lambda r: _hkey(r["file"], "kfold"))
        out = [r for i, r in enumerate(rs) if i % folds == fold]
        rest = [r for i, r in enumerate(rs) if i % folds != fold]
        rest = sorted(rest, key=lambda r: _hkey(r["file"], f"inner{fold}"))
        n_val = int(round(0.2 * len(rest)))
        held += out
        val += rest[:n_val]
        train += rest[n_val:]
    by = lambda rs: sorted(rs, key=lambda r: r["file"])  # noqa: E731
    return by(train), by(val), by(held)


def main_parts(rows):
    return ([r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "val"], [])


def dihedral(x, d):
    """x: (..., H, W); d in 0..7: rotate by 90*(d % 4) degrees, then flip if d >= 4."""
    x = torch.rot90(x, d % 4, dims=(-2, -1))
    return x.flip(-1) if d >= 4 else x


def drift(g, gen):
    return C.line_drift(g, gen)


def to_input(g):
    """uint8 (B, 1, H, W) -> the contract's float32 tensor ((g - 127) / 128)."""
    return (g.float() * C.LITE_PIXEL_SCALE - C.LITE_MEAN) / C.LITE_STD


def onnx_session(module, example, path, threads=2):
    """Exports `module` (a copy: the exporter may alter what it traces) with a dynamic batch
    and opens an ONNX Runtime session: ORT runs EfficientNet's depthwise convolutions several
    times faster than PyTorch's CPU kernels here."""
    import copy
    import onnxruntime as ort
    m = copy.deepcopy(module).eval()
    torch.onnx.export(m, (example,), path, input_names=["x"], output_names=["y"], opset_version=18,
                      dynamo=True, external_data=False, dynamic_shapes={"x": {0: torch.export.Dim("N")}})
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


class _Lower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.lower(x)


@torch.no_grad()
def lower_features(model, files, variants, seed, bs=32):
    """(N, V, C, h, w) float16 frozen features, computed with ONNX Runtime; variant
    0..7 = dihedral d as recorded, 8..15 = dihedral d with drift (if variants == 16)."""
    import tempfile
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    with tempfile.TemporaryDirectory() as td:
        x0 = to_input(torch.zeros(2, 1, C.LITE_INPUT, C.LITE_INPUT, dtype=torch.uint8))
        sess = onnx_session(_Lower(model), x0, os.path.join(td, "lower.onnx"))
        ref = model.lower(x0).numpy()
        got = sess.run(["y"], {"x": x0.numpy()})[0]
        assert np.abs(ref - got).max() < 1e-3, np.abs(ref - got).max()
        out = None
        t0 = time.time()
        for s in range(0, len(files), bs):
            g = torch.from_numpy(np.stack([C.load_gray_u8(C.image_path(f)) for f in files[s:s + bs]]))[:, None]
            per_v = []
            for v in range(variants):
                gv = drift(g, gen) if v >= 8 else g
                xin = to_input(dihedral(gv, v % 8)).contiguous().numpy()
                per_v.append(torch.from_numpy(sess.run(["y"], {"x": xin})[0]).half())
            feats = torch.stack(per_v, 1)
            if out is None:
                out = torch.empty((len(files),) + feats.shape[1:], dtype=torch.float16)
            out[s:s + len(feats)] = feats
            if s // bs % 10 == 0:
                print(f"  features {s + len(feats)}/{len(files)} ({time.time() - t0:.0f}s)", flush=True)
    return out


def cached_features(model, files, args):
    key = hashlib.sha256(json.dumps({"files": files, "res": args.res, "cut": args.cut,
                                     "variants": args.variants, "seed": args.feature_seed,
                                     "weights": C.sha256_file(C.LITE_WEIGHTS)}).encode()).hexdigest()[:16]
    path = os.path.join(CACHE_DIR, f"lite0-lower-{key}.pt")
    if os.path.exists(path):
        return torch.load(path)
    t = time.time()
    feats = lower_features(model, files, args.variants, args.feature_seed)
    os.makedirs(CACHE_DIR, exist_ok=True)
    torch.save(feats, path + ".part")
    os.replace(path + ".part", path)
    print(f"frozen features {tuple(feats.shape)} in {time.time() - t:.0f}s -> {path}", flush=True)
    return feats


# ----------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------

def set_train_mode(model, bn_train):
    """The frozen part always in eval mode. The trained blocks: with bn_train, batch norm
    re-estimates its statistics on ELPV (train mode); without, the ImageNet statistics stay
    and only drop-connect is active."""
    model.eval()
    for b in model.blocks[model.cut:]:
        b.train(bool(bn_train))
        b.training = bool(model.drop_connect) or bn_train
    model.bn1.train(bool(bn_train))


@torch.no_grad()
def embed_feats(model, feats, bs=128):
    model.eval()
    return torch.cat([model.upper(feats[s:s + bs].float()) for s in range(0, len(feats), bs)]).numpy()


def val_metrics(model, F_ref, F_val, y_val):
    return nearest_eta_metrics(embed_feats(model, F_ref), embed_feats(model, F_val), y_val)


RECIPE_KEYS = ("epochs", "res", "cut", "dim", "variants", "batch_good", "batch_def", "lr", "backbone_lr_mult",
               "weight_decay", "aux", "drop_connect", "bn_train", "seed", "feature_seed")


def parser():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--res", type=int, default=224, help="backbone resolution (the graph resizes its 300 px input)")
    ap.add_argument("--cut", type=int, default=13, help="frozen blocks [0, cut)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--variants", type=int, default=16)
    ap.add_argument("--batch-good", type=int, default=40)
    ap.add_argument("--batch-def", type=int, default=24)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--backbone-lr-mult", type=float, default=0.3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--aux", type=float, default=0.5, help="weight of the auxiliary BCE term")
    ap.add_argument("--drop-connect", type=float, default=0.2)
    ap.add_argument("--bn-train", type=int, default=0, help="1: batch norm of the trained blocks in train mode")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--feature-seed", type=int, default=99)
    ap.add_argument("--fold", type=int, default=-1)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--limit", type=int, default=0, help="smoke test: N train images")
    ap.add_argument("--out", default=C.LITE_CKPT_PATH)
    return ap


def main():
    args = parser().parse_args()

    t_start = time.time()
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    seed_everything(args.seed)

    rows = C.read_split()
    train, val, held = fold_parts(rows, args.fold, args.folds) if args.fold >= 0 else main_parts(rows)
    if args.limit:
        train, val = train[:args.limit], val[:max(40, args.limit // 4)]
    print(f"train {len(train)}  val {len(val)}  held-out fold {len(held)}", flush=True)

    model = C.build_lite_encoder(embedding_dim=args.dim, cut=args.cut, res=args.res,
                                 drop_connect=args.drop_connect)
    # frozen features for every train+val image, whichever part it plays in this run
    pool = sorted({r["file"] for r in rows if r["split"] in ("train", "val")})
    if args.limit:
        pool = sorted({r["file"] for r in train + val})
    feats = cached_features(model, pool, args)
    model = model.to(memory_format=torch.channels_last)  # ~10 % faster upper blocks on CPU
    pos = {f: i for i, f in enumerate(pool)}
    tr_i = np.array([pos[r["file"]] for r in train])
    va_i = np.array([pos[r["file"]] for r in val])
    ytr = np.array([r["label"] == "defective" for r in train])
    yva = np.array([r["label"] == "defective" for r in val])
    good_tr = tr_i[~ytr]
    bad_tr = tr_i[ytr]
    F_ref = feats[good_tr, 0]   # references at validation time: good train images, as recorded
    F_val = feats[va_i, 0]

    for p in model.parameters():
        p.requires_grad_(False)
    upper_params = [p for b in model.blocks[args.cut:] for p in b.parameters()] + \
        list(model.conv_head.parameters()) + list(model.bn1.parameters())
    for p in upper_params + list(model.proj.parameters()):
        p.requires_grad_(True)
    aux = torch.nn.Linear(args.dim, 1)
    n_train = sum(p.numel() for p in upper_params) + sum(p.numel() for p in model.proj.parameters())
    n_all = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_all} total, {n_train} trained (blocks {args.cut}..15 + head + projection)", flush=True)

    steps_per_epoch = max(1, len(train) // (args.batch_good + args.batch_def))
    total = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW([
        {"params": upper_params, "lr": args.lr * args.backbone_lr_mult},
        {"params": list(model.proj.parameters()) + list(aux.parameters()), "lr": args.lr},
    ], weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[args.lr * args.backbone_lr_mult, args.lr], total_steps=total,
        pct_start=0.15, anneal_strategy="cos")
    rng = np.random.default_rng(args.seed)

    auc0, acc0 = val_metrics(model, F_ref, F_val, yva)
    print(json.dumps({"epoch": 0, "val_auroc": round(auc0, 4), "val_best_acc": round(acc0, 4)}), flush=True)
    best = {"auc": -1.0}
    log = [{"epoch": 0, "val_auroc": auc0, "val_best_acc": acc0}]
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        agg = {}
        for _ in range(steps_per_epoch):
            set_train_mode(model, args.bn_train)
            gi = rng.choice(good_tr, args.batch_good, replace=False)
            bi = rng.choice(bad_tr, min(args.batch_def, len(bad_tr)), replace=False)
            idx = np.concatenate([gi, bi])
            var = rng.integers(0, args.variants, len(idx))
            fb = feats[torch.from_numpy(idx), torch.from_numpy(var)].float().contiguous(
                memory_format=torch.channels_last)
            is_def = torch.cat([torch.zeros(len(gi), dtype=torch.bool), torch.ones(len(bi), dtype=torch.bool)])
            emb = model.upper(fb)
            loss, st = siamese_loss(emb, is_def)
            bce = F.binary_cross_entropy_with_logits(aux(emb)[:, 0], is_def.float())
            loss = loss + args.aux * bce
            st["bce"] = bce.item()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            st["loss"] = loss.item()
            for k, v in st.items():
                agg[k] = agg.get(k, 0.0) + v / steps_per_epoch
        auc, acc = val_metrics(model, F_ref, F_val, yva)
        entry = {"epoch": epoch, "train_s": round(time.time() - t0, 1), **{k: round(v, 5) for k, v in agg.items()},
                 "val_auroc": round(auc, 4), "val_best_acc": round(acc, 4)}
        if (auc, acc) > (best["auc"], best.get("acc", -1)):
            best = {"auc": auc, "acc": acc, "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        log.append(entry)
        print(json.dumps(entry), flush=True)

    wall = time.time() - t_start
    print(f"best epoch {best['epoch']} val AUROC {best['auc']:.4f} val best acc {best['acc']:.4f}; wall {wall:.0f}s")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save({
        "kind": "lite0", "state_dict": best["state"], "embedding_dim": args.dim, "cut": args.cut, "res": args.res,
        "best_epoch": best["epoch"], "best_val_auroc": best["auc"], "best_val_acc_k1_eta": best["acc"],
        "epochs": args.epochs, "args": vars(args), "log": log, "train_wall_seconds": wall,
        "n_params": n_all, "n_trained": n_train,
        "fold": args.fold, "folds": args.folds,
        "parts": {"train": [r["file"] for r in train], "val": [r["file"] for r in val],
                  "heldout": [r["file"] for r in held]},
        "split_sha256": C.sha256_file(C.SPLIT_CSV), "weights_sha256": C.sha256_file(C.LITE_WEIGHTS),
    }, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
