#!/usr/bin/env python3
"""Write SOART3 test vectors for the Rust unit tests (tests/data/soart3/vectors.json).

Run with the model venv:  models/.venv/bin/python tests/data/soart3/make_vectors.py

Embeddings are float32 in the daemon (`inspectord::soart3::soart3` takes f32 slices), so every
input vector is first rounded to float32; the JSON holds those rounded values (exact in both f32
and f64) and the expected results are computed from them in float64. Without the rounding the
expectations would be for inputs the Rust code never sees (up to ~0.2% off).

For a frame embedding y and a reference embedding x (float64 arithmetic on the rounded inputs):
    beta  = (x.y + 0.0001) / (x.x + 0.0001)
    r     = y - beta * x
    eta   = ln(1 + ||r||_eta_p)
    gamma = eta - ln(1 + ||r||_gamma_p)
with ||r||_p = scipy.spatial.distance.minkowski(r, 0, p).
Both orders (eta_p, gamma_p) = (2, 6) (default) and (1, 4) (older variant).
"""
import json
import os

import numpy as np
from scipy.spatial.distance import minkowski

EPS = 0.0001
ORDERS = [(2, 6), (1, 4)]


def soart3(x, y, eta_p, gamma_p):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    beta = (float(np.dot(x, y)) + EPS) / (float(np.dot(x, x)) + EPS)
    r = y - beta * x
    zero = np.zeros_like(r)
    eta = float(np.log(1.0 + minkowski(r, zero, eta_p)))
    gamma = float(eta - np.log(1.0 + minkowski(r, zero, gamma_p)))
    return beta, eta, gamma


def f32_exact(v):
    """The vector rounded to float32, held as float64 (each value exactly representable in f32)."""
    return np.asarray(v, dtype=np.float64).astype(np.float32).astype(np.float64)


def main():
    rng = np.random.default_rng(20240917)
    pairs = []  # (name, x, y)
    for d in (1, 3, 8, 64):
        for i in range(2):
            pairs.append((f"random-normal-d{d}-{i}", rng.standard_normal(d), rng.standard_normal(d)))
    x8 = rng.standard_normal(8)
    pairs += [
        ("y-equals-x-d8", x8, x8.copy()),
        ("y-zero-d8", x8, np.zeros(8)),
        ("x-zero-d8", np.zeros(8), x8),
        ("both-zero-d3", np.zeros(3), np.zeros(3)),
        ("orthogonal-d3", np.array([1.0, 0.0, 0.0]), np.array([0.0, 2.5, -1.5])),
        ("y-scaled-x-d8", x8, -3.0 * x8),
        ("negative-values-d8", -np.abs(rng.standard_normal(8)), -np.abs(rng.standard_normal(8))),
        ("large-magnitude-d8", 1e6 * rng.standard_normal(8), 1e6 * rng.standard_normal(8)),
        ("small-magnitude-d8", 1e-6 * rng.standard_normal(8), 1e-6 * rng.standard_normal(8)),
        ("mixed-magnitude-d3", np.array([1e-3, 5.0, -2.0]), np.array([1e3, -0.5, 7.0])),
        ("unit-norm-d64", *(v / np.linalg.norm(v) for v in (rng.standard_normal(64), rng.standard_normal(64)))),
        ("scalar-d1", np.array([2.0]), np.array([-3.0])),
    ]
    cases = []
    for name, x, y in pairs:
        x = f32_exact(x)
        y = f32_exact(y)
        for eta_p, gamma_p in ORDERS:
            beta, eta, gamma = soart3(x, y, eta_p, gamma_p)
            cases.append({"name": name, "x": [float(v) for v in x], "y": [float(v) for v in y],
                          "eta_p": eta_p, "gamma_p": gamma_p, "beta": beta, "eta": eta, "gamma": gamma})
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")
    # json.dumps writes floats with repr(), i.e. shortest round-trip (full float64 precision)
    with open(out, "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(c) for c in cases) + "\n]\n")
    print(f"wrote {out} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
