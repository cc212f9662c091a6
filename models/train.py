#!/usr/bin/env python3
"""Train the shared-weight (Siamese) ELPV encoder with a SOART3 pair loss.

Uses only the ``train`` and ``val`` parts of models/elpv-split.csv; the held-out
``test`` part is never read here.  Writes models/.cache/encoder.pt (weights,
mean/std, training log) which export.py turns into the ONNX file.
"""
import argparse
import json
import math
import os
import random
import time

import numpy as np
import torch

import common as C

# Loss hyper-parameters (documented in README.md).
ETA_P = 2            # p of the eta norm inside the loss (daemon default)
M_POS = math.log1p(0.15)   # good-good pairs: hinge eta above this
M_NEG = math.log1p(0.60)   # good(ref)-defective(frame) pairs: hinge eta below this
HARD_WEIGHT = 1.0    # weight of the nearest-reference (hard) terms


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def soart3_eta_torch(X, Y, p=ETA_P):
    """eta[i, j] = SOART3 eta with reference X[i] and frame Y[j] (float32, differentiable)."""
    xy = X @ Y.T                                   # (R, F)
    xx = (X * X).sum(1, keepdim=True)              # (R, 1)
    beta = (xy + C.SOART3_EPS) / (xx + C.SOART3_EPS)
    r = Y[None, :, :] - beta[:, :, None] * X[:, None, :]   # (R, F, D)
    if p == 2:
        n = torch.sqrt((r * r).sum(-1) + 1e-12)
    else:
        n = (r.abs().pow(p).sum(-1) + 1e-12).pow(1.0 / p)
    return torch.log1p(n)


def siamese_loss(emb, is_def, bank=None, bank_mask=None):
    """emb: (B, D) embeddings of one shared encoder; is_def: (B,) bool.

    Every (good, good) pair is a positive pair, every (good reference,
    defective frame) pair a negative pair.  Contrastive hinge on SOART3 eta:
      pos: relu(eta - M_POS)^2   (pull goods together)
      neg: relu(M_NEG - eta)^2   (push defectives away from every good)
    plus the same hinges on the nearest good (what the daemon scores with k=1).

    bank (optional): (N_good, D) detached embeddings of *all* good train images
    (memory bank); bank_mask: (N_good,) bool, False for the goods in this batch.
    The nearest-good term for defective frames then takes the minimum over the
    batch goods and the bank, as the daemon does over all references.
    """
    good = emb[~is_def]
    bad = emb[is_def]
    ng = good.shape[0]
    eta_gg = soart3_eta_torch(good, good)                      # (ng, ng)
    off = ~torch.eye(ng, dtype=torch.bool)
    pos = torch.relu(eta_gg[off] - M_POS).pow(2).mean()
    # nearest other good for each good frame
    eta_gg_masked = eta_gg.masked_fill(~off, float("inf"))
    pos_hard = torch.relu(eta_gg_masked.min(0).values - M_POS).pow(2).mean()
    loss = pos + HARD_WEIGHT * pos_hard
    stats = {"pos": pos.item(), "pos_hard": pos_hard.item()}
    if bad.shape[0] > 0:
        eta_gb = soart3_eta_torch(good, bad)                   # (ng, nb)
        neg = torch.relu(M_NEG - eta_gb).pow(2).mean()
        nearest = eta_gb.min(0).values
        if bank is not None:
            eta_mb = soart3_eta_torch(bank[bank_mask], bad)    # (N_good - ng, nb), grads to bad only
            nearest = torch.minimum(nearest, eta_mb.min(0).values)
        neg_hard = torch.relu(M_NEG - nearest).pow(2).mean()
        loss = loss + neg + HARD_WEIGHT * neg_hard
        stats.update(neg=neg.item(), neg_hard=neg_hard.item())
    return loss, stats


def augment(x, gen, mean, std, shift=0, noise=0.0):
    """x: (B,1,H,W) normalised. Random h/v flips, 90-degree rotations and
    brightness/contrast jitter (applied in the [0,1] pixel domain); optionally
    a random translation of up to +-shift pixels (reflect padding) and
    Gaussian pixel noise of std `noise`."""
    B = x.shape[0]
    H, W = x.shape[-2:]
    out = torch.empty_like(x)
    r = torch.rand(B, 5, generator=gen)
    rs = torch.rand(B, 2, generator=gen) if shift else None
    for i in range(B):
        t = x[i]
        if shift:
            dy = int(rs[i, 0] * (2 * shift + 1)) - shift
            dx = int(rs[i, 1] * (2 * shift + 1)) - shift
            t = torch.nn.functional.pad(t[None], (shift, shift, shift, shift), mode="reflect")[0]
            t = t[:, shift + dy:shift + dy + H, shift + dx:shift + dx + W]
        if r[i, 0] < 0.5:
            t = t.flip(-1)
        if r[i, 1] < 0.5:
            t = t.flip(-2)
        k = int(r[i, 2] * 4) % 4
        if k:
            t = torch.rot90(t, k, dims=(-2, -1))
        a = t * std + mean                     # back to [0, 1] pixel domain
        c = 0.8 + 0.4 * r[i, 3]                # contrast in [0.8, 1.2]
        b = -0.08 + 0.16 * r[i, 4]             # brightness in [-0.08, 0.08]
        m = a.mean()
        a = (a - m) * c + m + b
        if noise:
            a = a + noise * torch.randn(a.shape, generator=gen)
        out[i] = (a - mean) / std
    return out


@torch.no_grad()
def embed(model, X, bs=128):
    model.eval()
    outs = [model(torch.from_numpy(X[s:s + bs])) for s in range(0, len(X), bs)]
    return torch.cat(outs).numpy()


def val_metrics(model, X_ref, X_val, y_val):
    return nearest_eta_metrics(embed(model, X_ref), embed(model, X_val), y_val)


def nearest_eta_metrics(R, V, y_val):
    """Val AUROC and best accuracy over thresholds of the nearest-reference SOART3 eta (k = 1,
    p = 2): the figure both trainings pick their checkpoint by."""
    from sklearn.metrics import roc_auc_score
    eta, _ = C.soart3_matrix(V, R, 2, 6)
    s, _ = C.knn_score(eta, 1)
    auc = roc_auc_score(y_val, s)
    # best accuracy over thresholds (val only)
    order = np.sort(np.unique(s))
    thr = np.concatenate([[order[0] - 1e-9], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-9]])
    accs = [((s > t) == y_val).mean() for t in thr]
    return float(auc), float(max(accs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=45)
    ap.add_argument("--batch-good", type=int, default=40)
    ap.add_argument("--batch-def", type=int, default=24)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-every", type=int, default=3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--shift", type=int, default=0, help="max random translation (pixels)")
    ap.add_argument("--noise", type=float, default=0.0, help="Gaussian pixel noise std ([0,1] domain)")
    ap.add_argument("--bank", type=int, default=0,
                    help="1: nearest-good term for defectives over a memory bank of all good train embeddings (tried, worse on val; see README)")
    ap.add_argument("--limit", type=int, default=0, help="smoke test: use only N train images")
    ap.add_argument("--out", default=C.CKPT_PATH)
    args = ap.parse_args()

    t_start = time.time()
    torch.set_num_threads(2)
    seed_everything(args.seed)

    rows = C.read_split()
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    if args.limit:
        train = train[:args.limit]
        val = val[:max(40, args.limit // 4)]
    print(f"train {len(train)}  val {len(val)}", flush=True)

    Xtr_s = C.load_scaled_many([r["file"] for r in train])
    Xva_s = C.load_scaled_many([r["file"] for r in val])
    # mean/std over train images after scaling+resizing, rounded to float32
    mean = float(np.float32(Xtr_s.astype(np.float64).mean()))
    std = float(np.float32(Xtr_s.astype(np.float64).std()))
    print(f"mean {mean!r} std {std!r}  (load {time.time() - t_start:.1f}s)", flush=True)
    Xtr = np.stack([C.normalize(a, mean, std) for a in Xtr_s])
    Xva = np.stack([C.normalize(a, mean, std) for a in Xva_s])
    ytr = np.array([r["label"] == "defective" for r in train])
    yva = np.array([r["label"] == "defective" for r in val])
    good_idx = np.flatnonzero(~ytr)
    bad_idx = np.flatnonzero(ytr)
    X_ref = Xtr[good_idx]  # references at validation time: good train images

    model = C.build_encoder(dropout=args.dropout)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"encoder parameters: {n_params}", flush=True)
    steps_per_epoch = max(1, len(train) // (args.batch_good + args.batch_def))
    total_steps = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total_steps,
                                                pct_start=0.1, anneal_strategy="cos")
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    Xtr_t = torch.from_numpy(Xtr)

    # memory bank of good train embeddings (detached); filled by one eval pass,
    # then each step overwrites the rows of the batch goods with their new embeddings.
    bank = torch.from_numpy(embed(model, Xtr[good_idx])) if args.bank else None
    bank_pos = {int(g): i for i, g in enumerate(good_idx)}

    best = {"auc": -1.0}
    log = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.time()
        agg = {}
        for step in range(steps_per_epoch):
            gi = rng.choice(good_idx, args.batch_good, replace=False)
            bi = rng.choice(bad_idx, min(args.batch_def, len(bad_idx)), replace=False)
            idx = np.concatenate([gi, bi])
            xb = augment(Xtr_t[idx], gen, mean, std, args.shift, args.noise)
            is_def = torch.from_numpy(ytr[idx])
            emb = model(xb)
            if bank is not None:
                rows_b = torch.tensor([bank_pos[int(g)] for g in gi])
                mask = torch.ones(len(bank), dtype=torch.bool)
                mask[rows_b] = False
                loss, st = siamese_loss(emb, is_def, bank, mask)
                bank[rows_b] = emb[:len(gi)].detach()
            else:
                loss, st = siamese_loss(emb, is_def)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            st["loss"] = loss.item()
            for k, v in st.items():
                agg[k] = agg.get(k, 0.0) + v / steps_per_epoch
        entry = {"epoch": epoch, "train_s": round(time.time() - t0, 1), **{k: round(v, 5) for k, v in agg.items()}}
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            auc, acc = val_metrics(model, X_ref, Xva, yva)
            entry.update(val_auroc=round(auc, 4), val_best_acc=round(acc, 4))
            if auc > best["auc"]:
                best = {"auc": auc, "acc": acc, "epoch": epoch,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        log.append(entry)
        print(json.dumps(entry), flush=True)

    wall = time.time() - t_start
    print(f"best epoch {best['epoch']} val AUROC {best['auc']:.4f} val best acc {best['acc']:.4f}; wall {wall:.0f}s")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save({
        "state_dict": best["state"],
        "mean": mean, "std": std,
        "embedding_dim": C.EMBEDDING_DIM,
        "best_epoch": best["epoch"], "best_val_auroc": best["auc"], "best_val_acc_k1_eta": best["acc"],
        "epochs": args.epochs, "args": vars(args), "log": log,
        "train_wall_seconds": wall, "n_params": n_params,
        "loss": {"eta_p": ETA_P, "m_pos": M_POS, "m_neg": M_NEG, "hard_weight": HARD_WEIGHT, "bank": args.bank},
        "split_sha256": C.sha256_file(C.SPLIT_CSV),
    }, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
