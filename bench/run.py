#!/usr/bin/env python3
"""inspectord's benchmark suite: ONE table from ONE run (scripts/bench.sh; docs/BENCHMARKS.md).

Every figure is measured in this run, side by side, on the same held-out ELPV images, models,
references and thread counts; repeated measurements are interleaved (the contenders take turns,
the order rotating each repetition) and summarised by their median. Sections (rows):

  1 peers     seed-style Python, plain numpy Python, `inspectord replay`: frames/s, ratios,
              verdicts compared frame by frame (a mismatch fails the run)
  2 limit     decode, preprocess, raw ONNX Runtime (batch 1, best of larger batches), scoring,
              each alone (benches/pipeline_parts.rs); end-to-end ÷ sum of parts = overhead
  3 scoring   scoring alone (criterion, benches/scoring.rs) at 1k, 10k, 100k, 1M references:
              time, ratio to a read of the same bytes, ns per reference-dimension
  3 refs      replay throughput with 1k, 10k, 100k (1M) synthetic references (and, with
              --before-binary, the binary from before the scoring work, interleaved)
  4 cores     workers × intra-op threads, each shipped model
  5 latency   frames paced at 50 % and 90 % of the measured max rate: latency_us median/p99/max
  6 start/mem process start → READY log line and → first `hello` on the socket; RSS peak,
              steady, drift over a loop

Run with the venv scripts/bench.sh makes (numpy for the synthetic references and the peers).
Prints the table on stdout and writes the same figures as JSON to target/bench/.
"""
import argparse
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
MODELS = {
    "siamese": ("models/elpv-siamese.onnx", "models/elpv-references.safetensors"),
    "lite0": ("models/elpv-lite0.onnx", "models/elpv-lite0-references.safetensors"),
}
LOG_ENV = "warn,inspectord::commands=info"

# What each mode runs. "smoke": a few seconds a row, so CI can run it (scripts/test.sh).
SIZES = {
    "smoke": dict(images=8, reps=1, parts_reps=1, parts_images=8, refs=[1000, 10000],
                  scale_images=8, cores_images=8, latency_s=3.0, latency_max_s=3.0, memory_s=3.0, batches=[4],
                  memory_refs=10000,
                  memory_refs_s=3.0,
                  criterion=["--warm-up-time", "0.2", "--measurement-time", "0.5"]),
    "full": dict(images=655, reps=5, parts_reps=5, parts_images=655,
                 refs=[1000, 10000, 100000, 1000000], scale_images=50, cores_images=655,
                 latency_s=60.0, latency_max_s=20.0, batches=[4, 8, 16], memory_refs=100000,
                 # the fast model's loop covers > 200k frames; the production model's, its warm-up
                 memory_s={"siamese": 360.0, "lite0": 120.0},
                 memory_refs_s=120.0,
                 criterion=["--warm-up-time", "2", "--measurement-time", "5"]),
}


# ---------------------------------------------------------------------------------------------
# Machine facts
# ---------------------------------------------------------------------------------------------

def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    import onnxruntime
    return {
        "cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem_kb / 1048576, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "onnxruntime_python": onnxruntime.__version__, "numpy": np.__version__,
        "loadavg": os.getloadavg(), "commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ---------------------------------------------------------------------------------------------
# Inputs: image lists, configs, synthetic references
# ---------------------------------------------------------------------------------------------

def image_list(work, n, name):
    """The first n held-out images (data/elpv/test.txt) as a list file of absolute paths."""
    src = os.path.join(ROOT, "data", "elpv", "test.txt")
    base = os.path.dirname(src)
    with open(src) as f:
        files = [os.path.join(base, l.strip()) for l in f if l.strip()]
    files = files[:n] if n else files
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write("\n".join(files) + "\n")
    return path, len(files)


def write_config(work, name, model, refs, images, workers, threads, fps=0.0, loop=False,
                 sock=None, queue_depth=8):
    path = os.path.join(work, name + ".toml")
    text = (f'[source]\nkind = "replay"\npath = {json.dumps(images)}\nfps = {fps}\n'
            f"loop = {'true' if loop else 'false'}\n\n"
            f"[model]\npath = {json.dumps(os.path.join(ROOT, model))}\n\n"
            f"[references]\npath = {json.dumps(refs if os.path.isabs(refs) else os.path.join(ROOT, refs))}\n\n"
            f"[runtime]\nworkers = {workers}\nintra_op_threads = {threads}\nqueue_depth = {queue_depth}\n")
    if sock:
        text += f"\n[output]\nsocket = {json.dumps(sock)}\nclient_buffer = 100000\nheartbeat_ms = 0\n"
    with open(path, "w") as f:
        f.write(text)
    return path


def read_safetensors(path):
    import struct
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    t = header["references"]
    lo, hi = t["data_offsets"]
    emb = np.frombuffer(blob, dtype="<f4", count=(hi - lo) // 4, offset=8 + n + lo)
    return emb.reshape(t["shape"]), header["__metadata__"]


def write_safetensors(path, emb, meta):
    """The daemon's reference format (src/references.rs): one F32 tensor `references`
    [count, dim] and string metadata."""
    import struct
    emb = np.ascontiguousarray(emb, dtype="<f4")
    header = {"__metadata__": meta,
              "references": {"dtype": "F32", "shape": list(emb.shape),
                             "data_offsets": [0, emb.nbytes]}}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        f.write(emb.tobytes())
    os.replace(path + ".tmp", path)


def synthetic_references(out_dir, refs_path, count, seed=13, noise=0.05):
    """count references derived from the real ones: a real embedding (drawn with replacement)
    plus Gaussian noise, renormalised to unit length like the encoder's output; the metadata
    (model_sha256, scoring, threshold) of the real file, count updated. Cached by name."""
    path = os.path.join(out_dir, f"{os.path.basename(refs_path).split('.')[0]}-{count}.safetensors")
    if os.path.exists(path):
        return path
    emb, meta = read_safetensors(os.path.join(ROOT, refs_path))
    rng = np.random.default_rng(seed)
    out = np.empty((count, emb.shape[1]), dtype=np.float32)
    step = 65536
    for s in range(0, count, step):
        n = min(step, count - s)
        x = emb[rng.integers(0, len(emb), n)].astype(np.float64)
        x += rng.normal(0.0, noise, x.shape)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s:s + n] = x
    meta = dict(meta, count=str(count), created_by="bench/run.py (synthetic)",
                source=f"synthetic: {refs_path} rows + N(0, {noise}) noise, unit norm, seed {seed}")
    write_safetensors(path, out, meta)
    return path


# ---------------------------------------------------------------------------------------------
# Running the contenders
# ---------------------------------------------------------------------------------------------

def run_daemon_replay(binary, config, verdicts_out=None):
    """`inspectord replay` to its end: frames/s from its summary (first frame taken → last
    verdict), process wall time, verdicts by frame."""
    t0 = time.perf_counter()
    p = subprocess.run([binary, "replay", "--config", config], capture_output=True, text=True,
                       env={**os.environ, "INSPECTORD_LOG": LOG_ENV})
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"bench: inspectord replay failed ({p.returncode}):\n{p.stderr[-3000:]}")
    m = re.search(r"(\d+) frames in ([\d.]+) s \(([\d.]+) frames/s\)", p.stderr)
    if not m:
        raise SystemExit(f"bench: no summary line in replay's stderr:\n{p.stderr[-3000:]}")
    verdicts = {}
    for line in p.stdout.splitlines():
        v = json.loads(line)
        if v.get("type") == "verdict":
            verdicts[v["frame"]] = (v["verdict"], v.get("score"))
    if verdicts_out:
        with open(verdicts_out, "w") as f:
            f.write(p.stdout)
    frames, secs, fps = int(m.group(1)), float(m.group(2)), float(m.group(3))
    # The summary prints seconds to 2 decimals and frames/s to 1: take the more precise one
    # (slow runs, e.g. a million references, print "0.7 frames/s" but "100 frames in 140.21 s").
    if secs > 0 and 0.005 / secs < 0.05 / max(fps, 1e-9):
        fps = frames / secs
    return {"frames": frames, "fps": fps, "wall_s": wall}, verdicts


def run_peer(python, script, model, refs, images, threads, out):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    p = subprocess.run([python, os.path.join(BENCH, script), "--model", os.path.join(ROOT, model),
                        "--references", os.path.join(ROOT, refs), "--images", images,
                        "--threads", str(threads), "--out", out],
                       capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"bench: {script} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    verdicts = {}
    with open(out) as f:
        for line in f:
            v = json.loads(line)
            verdicts[v["frame"]] = (v["verdict"], v["score"])
    return {"frames": summary["frames"], "fps": summary["fps"], "wall_s": wall,
            "startup_s": summary["startup_s"]}, verdicts


def med(xs):
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------

def section_peers(ctx, model_key):
    model, refs = MODELS[model_key]
    images, n = image_list(ctx.work, ctx.size["images"], "peers.txt")
    cfg = write_config(ctx.work, f"peers-{model_key}", model, refs, images, 1, ctx.threads)
    contenders = ["seed", "numpy", "daemon"]
    fps = {c: [] for c in contenders}
    verdicts = {}
    for rep in range(ctx.size["reps"]):
        order = contenders[rep % 3:] + contenders[:rep % 3]
        for c in order:
            out = os.path.join(ctx.work, f"peer-{model_key}-{c}.jsonl")
            if c == "daemon":
                r, v = run_daemon_replay(ctx.binary, cfg)
            else:
                script = "seed_style.py" if c == "seed" else "plain_numpy.py"
                r, v = run_peer(sys.executable, script, model, refs, images, ctx.threads, out)
            fps[c].append(r["fps"])
            verdicts[c] = v
    mismatches = []
    for frame, (dv, ds) in sorted(verdicts["daemon"].items()):
        for c in ("seed", "numpy"):
            pv, ps = verdicts[c].get(frame, (None, None))
            if pv != dv:
                mismatches.append({"frame": frame, "daemon": [dv, ds], c: [pv, ps]})
    for c in ("seed", "numpy"):
        if set(verdicts[c]) != set(verdicts["daemon"]):
            mismatches.append({"frames_differ": c})
    max_score_diff = max(abs(verdicts["daemon"][f][1] - verdicts[c][f][1])
                         for c in ("seed", "numpy") for f in verdicts["daemon"] if f in verdicts[c])
    m = {c: med(v) for c, v in fps.items()}
    rows = [
        row(f"1 peers {model_key}", "seed-style Python (scipy minkowski loop)", m["seed"], "fps",
            ratio=1.0, note=f"{n} images, 1 process, {ctx.threads} intra-op thread(s)"),
        row(f"1 peers {model_key}", "plain numpy Python (vectorised SOART3)", m["numpy"], "fps",
            ratio=m["numpy"] / m["seed"]),
        row(f"1 peers {model_key}", "inspectord replay (1 worker)", m["daemon"], "fps",
            ratio=m["daemon"] / m["seed"],
            note=f"x{m['daemon'] / m['numpy']:.2f} vs numpy"),
        row(f"1 peers {model_key}", "verdicts identical (3 ways)",
            "yes" if not mismatches else f"NO: {len(mismatches)}", "",
            note=f"{len(verdicts['daemon'])} frames; max |score diff| {max_score_diff:.2e}"),
    ]
    for mm in mismatches:
        print(f"bench: VERDICT MISMATCH {model_key}: {json.dumps(mm)}", file=sys.stderr)
    ctx.failures += len(mismatches)
    ctx.data.setdefault("peers", {})[model_key] = {
        "fps_runs": fps, "fps_median": m, "frames": n, "threads": ctx.threads,
        "mismatches": mismatches, "max_score_diff": max_score_diff}
    return rows


def section_limit(ctx, model_key):
    model, refs = MODELS[model_key]
    images, n = image_list(ctx.work, ctx.size["parts_images"], "parts.txt")
    out = os.path.join(ctx.work, f"parts-{model_key}.json")
    cmd = [ctx.parts, "--model", os.path.join(ROOT, model), "--references",
           os.path.join(ROOT, refs), "--images", images, "--threads", str(ctx.threads),
           "--reps", str(ctx.size["parts_reps"]), "--json", out,
           "--batches", ",".join(map(str, ctx.size["batches"]))]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"bench: pipeline_parts failed:\n{p.stderr[-3000:]}")
    with open(out) as f:
        parts = json.load(f)
    cfg = write_config(ctx.work, f"limit-{model_key}", model, refs, images, 1, ctx.threads)
    e2e = med([run_daemon_replay(ctx.binary, cfg)[0]["fps"] for _ in range(ctx.size["reps"])])
    e2e_us = 1e6 / e2e
    s = parts["sum_of_parts_us"]
    best = parts["ort_best_batch"]
    g = f"2 limit {model_key}"
    rows = [
        row(g, "decode alone (PNG bytes in memory)", parts["decode_us"], "us/img",
            ratio=parts["decode_us"] / s, note="ratio = share of the sum of parts"),
        row(g, "preprocess alone (decoded → tensor)", parts["preprocess_us"], "us/img",
            ratio=parts["preprocess_us"] / s),
        row(g, "ONNX Runtime alone, batch 1", parts["ort_batch1_us"], "us/img",
            ratio=parts["ort_batch1_us"] / s),
        row(g, f"ONNX Runtime alone, best batch ({best['batch']})", best["us_per_image"], "us/img",
            ratio=best["us_per_image"] / parts["ort_batch1_us"], note="ratio vs batch 1"),
        row(g, f"scoring alone ({parts['references']} refs)", parts["score_us"], "us/img",
            ratio=parts["score_us"] / s),
        row(g, "sum of parts (batch 1)", s, "us/img", ratio=1.0),
        row(g, "inspectord replay end-to-end, 1 worker", e2e_us, "us/img", ratio=e2e_us / s,
            note="ratio = overhead (e2e ÷ sum of parts)"),
    ]
    ctx.data.setdefault("limit", {})[model_key] = dict(parts, e2e_us=e2e_us, overhead=e2e_us / s)
    return rows


def section_refs(ctx, model_key):
    """End-to-end replay throughput with growing reference sets; with --before-binary, the
    binary before the scoring work measured in the same run, interleaved."""
    model, refs = MODELS[model_key]
    images, n = image_list(ctx.work, ctx.size["scale_images"], "scale.txt")
    sets = {c: synthetic_references(ctx.refs_dir, refs, c) for c in ctx.size["refs"]}
    cfgs = {c: write_config(ctx.work, f"refs-{model_key}-{c}", model, p, images, 1, ctx.threads)
            for c, p in sets.items()}
    binaries = {"now": ctx.binary}
    if ctx.before:
        binaries["before"] = ctx.before
    runs = [(b, c) for c in sets for b in binaries
            # the old scalar scoring at 1M references takes minutes per run: not worth it
            if not (b == "before" and c > 100_000)]
    fps = {r: [] for r in runs}
    for rep in range(ctx.size["reps"]):
        for r in runs[rep % len(runs):] + runs[:rep % len(runs)]:
            fps[r].append(run_daemon_replay(binaries[r[0]], cfgs[r[1]])[0]["fps"])
    m = {r: med(v) for r, v in fps.items()}
    counts = list(sets)
    first = m[("now", counts[0])]
    rows = []
    for b, c in runs:
        label = f"replay with {c:,} references" + (" (before)" if b == "before" else "")
        base = m[(b, counts[0])]
        rows.append(row(f"3 refs {model_key}", label, m[(b, c)], "fps", ratio=m[(b, c)] / base,
                        note=(f"ratio vs {counts[0]:,} of the same binary; {n} images, 1 worker"
                              if c == counts[0] and b == "now" else "")))
    ctx.data.setdefault("refs", {})[model_key] = {
        "frames": n,
        "fps_median": {f"{b}:{c}": v for (b, c), v in m.items()},
        "fps_runs": {f"{b}:{c}": v for (b, c), v in fps.items()},
        "ratio_100k_vs_1k": (m.get(("now", 100_000), 0) / first) if first else None,
    }
    return rows


def section_kernel(ctx):
    """The criterion benchmark of scoring alone (benches/scoring.rs) at each size: the
    prefiltered path, the old f64 path and a read of the same bytes (memory bandwidth)."""
    env = dict(os.environ)
    sizes = ctx.size["refs"]
    if 100_000 not in sizes:
        env["INSPECTORD_BENCH_SMALL"] = "1"
    if 1_000_000 in sizes:
        env["INSPECTORD_BENCH_1M"] = "1"
    args = [ctx.scoring, "--bench"] + ctx.size["criterion"]
    subprocess.run(args, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    crit = os.path.join(ROOT, "target", "criterion")
    rows = []
    out = {}
    for name, dim in (("small", 64), ("lite0", 128)):
        group = f"scoring_{name}"
        for c in sizes:
            def est(bench):
                p = os.path.join(crit, group, bench, str(c), "new", "estimates.json")
                if not os.path.exists(p):
                    return None
                with open(p) as f:
                    return json.load(f)["median"]["point_estimate"] / 1000.0  # ns → µs
            new, bw, old = est("new"), est("bandwidth"), est("old")
            if new is None or bw is None:
                continue
            out[f"{name}:{c}"] = {"new_us": new, "bandwidth_us": bw, "old_us": old}
            g = f"3 scoring {name}"
            rows.append(row(g, f"{c:,} refs x {dim}: scoring", new, "us",
                            ratio=new / bw, note="ratio = x the memory-bandwidth read"))
            rows.append(row(g, f"{c:,} refs x {dim}: ns per ref-dimension", new * 1000 / (c * dim),
                            "ns", ratio=(old / new) if old else None,
                            note="ratio = speed-up over the old f64 path" if old else ""))
    ctx.data["kernel"] = out
    return rows


def section_cores(ctx):
    images, n = image_list(ctx.work, ctx.size["cores_images"], "cores.txt")
    rows = []
    for model_key, (model, refs) in MODELS.items():
        combos = [(w, t) for w in (1, 2) for t in (1, 2)]
        cfgs = {wt: write_config(ctx.work, f"cores-{model_key}-{wt[0]}x{wt[1]}", model, refs,
                                 images, wt[0], wt[1]) for wt in combos}
        fps = {wt: [] for wt in combos}
        for rep in range(ctx.size["reps"]):
            for wt in combos[rep % 4:] + combos[:rep % 4]:
                fps[wt].append(run_daemon_replay(ctx.binary, cfgs[wt])[0]["fps"])
        m = {wt: med(v) for wt, v in fps.items()}
        for wt in combos:
            rows.append(row(f"4 cores {model_key}", f"{wt[0]} worker(s) x {wt[1]} intra-op", m[wt],
                            "fps", ratio=m[wt] / m[(1, 1)],
                            note=f"ratio vs 1x1; {n} images" if wt == (1, 1) else ""))
        ctx.data.setdefault("cores", {})[model_key] = {f"{w}x{t}": m[(w, t)] for w, t in combos}
    return rows


class Reader(threading.Thread):
    """Reads a verdict socket to EOF: hello time, latency_us of every verdict."""

    def __init__(self, path, deadline):
        super().__init__(daemon=True)
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.002)
        self.connected = time.perf_counter()
        self.hello_at = None
        self.latencies = []

    def run(self):
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                m = json.loads(line)
                if m.get("type") == "hello" and self.hello_at is None:
                    self.hello_at = time.perf_counter()
                elif m.get("type") == "verdict" and "latency_us" in m:
                    self.latencies.append(m["latency_us"])


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        s = f.read()
    kb = lambda k: int(re.search(rf"{k}:\s+(\d+) kB", s).group(1))  # noqa: E731
    return kb("VmRSS"), kb("VmHWM")


def paced_run(ctx, name, model, refs, images, workers, threads, fps, seconds, sample=False):
    """Replay in a loop at `fps` (0: free-run) with a socket client; SIGTERM after `seconds`.
    Returns latencies, start-up times, RSS samples."""
    sock = os.path.join(ctx.work, f"{name}.sock")
    cfg = write_config(ctx.work, name, model, refs, images, workers, threads, fps=fps, loop=True,
                       sock=sock)
    t0 = time.perf_counter()
    p = subprocess.Popen([ctx.binary, "replay", "--config", cfg, "--wait-clients", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "INSPECTORD_LOG": LOG_ENV})
    ready = {}

    def watch_stderr():
        for line in p.stderr:
            if "ready" in line and "t" not in ready:
                ready["t"] = time.perf_counter()
                m = re.search(r"startup_ms=(\d+)", line)
                ready["startup_ms"] = int(m.group(1)) if m else None
            ready.setdefault("tail", []).append(line)
    w = threading.Thread(target=watch_stderr, daemon=True)
    w.start()
    reader = Reader(sock, time.monotonic() + 120)
    reader.start()
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and p.poll() is None:
        if sample:
            samples.append((time.perf_counter() - t0, *proc_status(p.pid)))
        time.sleep(0.2 if sample else 0.05)
    hwm = proc_status(p.pid)[1] if p.poll() is None else None
    p.send_signal(signal.SIGTERM)
    code = p.wait(timeout=60)
    reader.join(timeout=30)
    w.join(timeout=5)
    if code != 0:
        raise SystemExit(f"bench: replay {name} exited {code}:\n{''.join(ready.get('tail', [])[-20:])}")
    return {
        "latencies_us": reader.latencies,
        "hello_ms": (reader.hello_at - t0) * 1e3 if reader.hello_at else None,
        "ready_ms": (ready["t"] - t0) * 1e3 if "t" in ready else None,
        "startup_ms_logged": ready.get("startup_ms"),
        "samples": samples, "hwm_kb": hwm,
    }


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else None


def section_latency(ctx, model_key, max_fps, workers, threads):
    model, refs = MODELS[model_key]
    images, n = image_list(ctx.work, 0 if ctx.mode == "full" else 64, "latency.txt")
    rows = []
    for share in (0.5, 0.9):
        fps = max_fps * share
        r = paced_run(ctx, f"lat-{model_key}-{int(share * 100)}", model, refs, images, workers,
                      threads, round(fps, 3), ctx.size["latency_s"])
        lat = [x / 1000 for x in r["latencies_us"]]
        g = f"5 latency {model_key}"
        cond = f"{fps:.1f} fps = {int(share * 100)}% of {max_fps:.1f}; {len(lat)} verdicts"
        infer = ctx.data.get("limit", {}).get(model_key, {}).get("ort_batch1_us")
        p99 = pct(lat, 0.99)
        rows += [row(g, f"@{int(share * 100)}% median latency", med(lat), "ms", note=cond),
                 row(g, f"@{int(share * 100)}% p99 latency", p99, "ms",
                     ratio=(p99 * 1000 / infer) if infer and p99 else None,
                     note="ratio = p99 / ONNX Runtime batch 1 (row 2)" if infer else ""),
                 row(g, f"@{int(share * 100)}% max latency", max(lat) if lat else None, "ms")]
        ctx.data.setdefault("latency", {}).setdefault(model_key, {})[str(share)] = {
            "fps": fps, "max_fps": max_fps, "workers": workers, "threads": threads,
            "verdicts": len(lat), "median_ms": med(lat), "p99_ms": pct(lat, 0.99),
            "max_ms": max(lat) if lat else None}
    return rows


def section_memory(ctx, model_key, workers, threads, refs_count=None):
    """Start-up and memory with the model's own references, or (refs_count) with a synthetic
    set of that size (row 3's), for a shorter loop."""
    model, refs = MODELS[model_key]
    seconds = ctx.size["memory_s"]
    if isinstance(seconds, dict):
        seconds = seconds[model_key]
    key = model_key
    if refs_count:
        refs = synthetic_references(ctx.refs_dir, refs, refs_count)
        seconds = ctx.size["memory_refs_s"]
        key = f"{model_key} {refs_count // 1000}k refs"
    images, _ = image_list(ctx.work, 0, "memory.txt")
    r = paced_run(ctx, f"mem-{key.replace(' ', '-')}", model, refs, images, workers, threads, 0,
                  seconds, sample=True)
    s = r["samples"]
    warm = [x for x in s if x[0] >= 0.2 * seconds] or s
    steady_kb = warm[0][1] if warm else None
    end_kb = s[-1][1] if s else None
    g = f"6 start/mem {key}"
    rows = [
        row(g, "start → READY log line", r["ready_ms"], "ms",
            note=f"daemon's own startup_ms={r['startup_ms_logged']}"),
        row(g, "start → first hello on socket", r["hello_ms"], "ms"),
        row(g, "peak RSS (VmHWM)", r["hwm_kb"] / 1024 if r["hwm_kb"] else None, "MiB",
            note=f"{workers} worker(s) x {threads}, free-run loop {seconds:.0f} s"),
        row(g, "steady RSS (after 20% of the loop)", steady_kb / 1024 if steady_kb else None, "MiB"),
        row(g, "RSS drift (end − steady)", (end_kb - steady_kb) / 1024 if s else None, "MiB",
            note=f"{len(r['latencies_us'])} frames in the loop"),
    ]
    ctx.data.setdefault("memory", {})[key] = {
        "ready_ms": r["ready_ms"], "hello_ms": r["hello_ms"], "startup_ms_logged":
        r["startup_ms_logged"], "hwm_kb": r["hwm_kb"], "steady_kb": steady_kb, "end_kb": end_kb,
        "frames": len(r["latencies_us"]), "samples": s}
    return rows


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------

def row(group, what, value, unit, ratio=None, note=""):
    return {"group": group, "what": what, "value": value, "unit": unit, "ratio": ratio, "note": note}


def fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(rows):
    head = ("section", "measurement", "value", "unit", "ratio", "conditions")
    cells = [(r["group"], r["what"], fmt(r["value"]), r["unit"],
              "" if r["ratio"] is None else f"x{r['ratio']:.2f}", r["note"]) for r in rows]
    widths = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(5)]
    out = []
    line = lambda c: "  ".join(  # noqa: E731
        (c[i].rjust(widths[i]) if i in (2, 4) else c[i].ljust(widths[i])) for i in range(5)) + "  " + c[5]
    out.append(line(head))
    out.append("-" * (sum(widths) + 12 + 10))
    last = None
    for c in cells:
        if last and c[0].split()[0] != last:
            out.append("")
        last = c[0].split()[0]
        out.append(line(c))
    return "\n".join(out)


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds a row (CI)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "inspectord"))
    ap.add_argument("--parts", required=True, help="the pipeline_parts bench executable")
    ap.add_argument("--scoring", required=True, help="the scoring (criterion) bench executable")
    ap.add_argument("--before-binary", default=None,
                    help="an inspectord built before a change: row 3 measures it beside --binary")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads for rows 1-3 (all contenders alike)")
    ap.add_argument("--sections", default="peers,limit,kernel,refs,cores,latency,memory")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench"))
    args = ap.parse_args()

    ctx = Ctx()
    ctx.mode = "smoke" if args.smoke else "full"
    ctx.size = SIZES[ctx.mode]
    ctx.binary, ctx.parts, ctx.threads = args.binary, args.parts, args.threads
    ctx.scoring, ctx.before = args.scoring, args.before_binary
    ctx.failures = 0
    ctx.data = {}
    os.makedirs(args.out, exist_ok=True)
    ctx.refs_dir = os.path.join(args.out, "references")  # git-ignored (target/)
    os.makedirs(ctx.refs_dir, exist_ok=True)
    facts = machine()
    sections = args.sections.split(",")
    print(f"inspectord bench ({ctx.mode}) — commit {facts['commit']}, {facts['date']}")
    print(f"machine: {facts['cpu']}; {facts['cores']} cores; {facts['ram_gib']} GiB RAM; "
          f"kernel {facts['kernel']}; load average at start {facts['loadavg'][0]:.2f}")
    print(f"python {facts['python']}, onnxruntime (python) {facts['onnxruntime_python']}, "
          f"numpy {facts['numpy']}; intra-op threads for rows 1-3: {ctx.threads}")
    sys.stdout.flush()
    rows = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="isd-bench-") as work:
        ctx.work = work
        timings = {}

        def timed(name, f):
            t = time.perf_counter()
            r = f()
            timings[name] = round(time.perf_counter() - t, 1)
            print(f"bench: {name} done in {timings[name]} s", file=sys.stderr)
            return r

        if "peers" in sections:
            for mk in MODELS:
                rows += timed(f"peers {mk}", lambda: section_peers(ctx, mk))
        if "limit" in sections:
            for mk in MODELS:
                rows += timed(f"limit {mk}", lambda: section_limit(ctx, mk))
        if "kernel" in sections:
            rows += timed("kernel", lambda: section_kernel(ctx))
        if "refs" in sections:
            rows += timed("refs", lambda: section_refs(ctx, "siamese"))
        if "cores" in sections:
            rows += timed("cores", lambda: section_cores(ctx))
        # Latency and memory run the demo's layout (2 workers x 1 intra-op thread).
        workers, threads = 2, 1
        if "latency" in sections:
            for mk in MODELS:
                # The maximum rate in the same set-up as the paced runs: free-run, looping, with
                # the socket client reading every verdict (it shares the cores).
                secs = ctx.size["latency_max_s"]
                r = timed(f"max rate {mk}", lambda: paced_run(
                    ctx, f"max-{mk}", *MODELS[mk],
                    image_list(work, 0 if ctx.mode == "full" else 64, "max.txt")[0],
                    workers, threads, 0, secs))
                max_fps = len(r["latencies_us"]) / (secs - (r["ready_ms"] or 0) / 1e3)
                rows += timed(f"latency {mk}",
                              lambda: section_latency(ctx, mk, max_fps, workers, threads))
        if "memory" in sections:
            for mk in MODELS:
                rows += timed(f"memory {mk}", lambda: section_memory(ctx, mk, workers, threads))
            big = ctx.size["memory_refs"]
            rows += timed("memory refs", lambda: section_memory(ctx, "siamese", workers, threads,
                                                                refs_count=big))
    facts["loadavg_end"] = os.getloadavg()
    print()
    print(table(rows))
    print()
    print(f"{ctx.mode} run: {time.perf_counter() - t_start:.0f} s; load average at end "
          f"{facts['loadavg_end'][0]:.2f}")
    result = {"mode": ctx.mode, "machine": facts, "sizes": ctx.size, "threads": ctx.threads,
              "rows": rows, "sections": ctx.data, "section_seconds": timings,
              "verdict_mismatches": ctx.failures}
    path = os.path.join(args.out, f"results-{ctx.mode}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(f"JSON: {os.path.relpath(path, ROOT)}")
    if ctx.failures:
        print(f"bench: {ctx.failures} verdict mismatch(es) between the Python peers and the daemon",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
