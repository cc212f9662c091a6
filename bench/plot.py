#!/usr/bin/env python3
"""Draws docs/benchmarks-refs.svg from a full run's JSON (scripts/bench.sh writes
target/bench/results-full.json): per-frame time against the number of references, end to end
(`inspectord replay`, small encoder, 1 worker) before and after the scoring work, and scoring
alone next to a read of the same bytes (memory bandwidth).

    target/bench/venv/bin/python bench/plot.py [results.json] [out.svg]
"""
import json
import os
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def series(d, prefix):
    pts = sorted((int(k.split(":")[1]), v) for k, v in d.items() if k.startswith(prefix + ":"))
    return [p[0] for p in pts], [p[1] for p in pts]


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/bench/results-full.json")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "docs/benchmarks-refs.svg")
    with open(src) as f:
        r = json.load(f)
    sec = r["sections"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    refs = sec["refs"]["siamese"]["fps_median"]
    for label, key, style in (("after", "now", "o-"), ("before", "before", "s--")):
        x, fps = series(refs, key)
        if x:
            a.plot(x, [1000.0 / v for v in fps], style, label=f"{label}: inspectord replay")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("references")
    a.set_ylabel("ms per frame (median)")
    a.set_title("End to end, small encoder, 1 worker")
    a.grid(True, which="both", alpha=0.3)
    a.legend()
    k = sec.get("kernel", {})
    for name, marker in (("small", "o"), ("lite0", "^")):
        pts = sorted((int(key.split(":")[1]), v) for key, v in k.items()
                     if key.startswith(name + ":"))
        if not pts:
            continue
        x = [p[0] for p in pts]
        b.plot(x, [p[1]["new_us"] / 1000 for p in pts], marker + "-", label=f"{name}: scoring now")
        old = [(p[0], p[1]["old_us"] / 1000) for p in pts if p[1].get("old_us")]
        if old:
            b.plot([o[0] for o in old], [o[1] for o in old], marker + "--",
                   label=f"{name}: scoring before (f64)")
        b.plot(x, [p[1]["bandwidth_us"] / 1000 for p in pts], marker + ":",
               label=f"{name}: read of the same bytes")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("references")
    b.set_ylabel("ms per frame (criterion median)")
    b.set_title("Scoring alone")
    b.grid(True, which="both", alpha=0.3)
    b.legend(fontsize=8)
    m = r["machine"]
    fig.suptitle(f"inspectord {m['commit']}, {m['date']}, {m['cpu']}, {m['cores']} cores",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, metadata={"Date": None})
    print(os.path.relpath(out, ROOT))


if __name__ == "__main__":
    main()
