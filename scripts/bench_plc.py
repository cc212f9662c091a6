#!/usr/bin/env python3
"""Trigger-to-result latency as the PLC sees it, through `inspectord bridge modbus`.

A pymodbus client (the PLC) runs the handshake of docs/PLC.md N times: write PartId, raise
Trigger, wait for TriggerAck, drop Trigger, wait for ResultsValid with the acked AcquisitionId,
read the result block, ResultsAck. The time from the Trigger write to the result read is the
PLC's latency (polling as fast as Modbus/TCP answers); the daemon's own inference latency
(LatencyMs of each result: frame taken → verdict) is printed beside it.

  scripts/bench_plc.py --port 1502 [--count 1000]

Needs a running daemon in trigger mode (`[source] trigger = "command"`) and a bridge; run it
from the venv tests/bridge_modbus.rs creates (target/plc-venv/bin/python) or any venv with
pymodbus. Without --port it starts both itself from this checkout (replaying held-out ELPV
images in a loop) and stops them at the end.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "plc"))
import handshake  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def start_stack(tmp, binary, images):
    sock = os.path.join(tmp, "v.sock")
    with open(os.path.join(tmp, "inspectord.toml"), "w") as f:
        f.write(f"""[source]
kind = "replay"
trigger = "command"
path = "{images}"
loop = true

[model]
path = "{ROOT}/models/elpv-lite0.onnx"

[references]
path = "{ROOT}/models/elpv-lite0-references.safetensors"

[output]
socket = "{sock}"
""")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with open(os.path.join(tmp, "modbus.toml"), "w") as f:
        f.write(f'[daemon]\nsocket = "{sock}"\n\n[modbus]\nlisten = "127.0.0.1:{port}"\n')
    env = dict(os.environ, INSPECTORD_LOG="warn")
    daemon = subprocess.Popen([binary, "run", "--config", os.path.join(tmp, "inspectord.toml")], env=env)
    bridge = subprocess.Popen([binary, "bridge", "modbus", "--config", os.path.join(tmp, "modbus.toml")], env=env)
    return [daemon, bridge], port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "inspectord"))
    a = ap.parse_args()
    procs, tmp = [], None
    port = a.port
    if port is None:
        tmp = tempfile.mkdtemp(prefix="bench-plc-")
        images = os.path.join(tmp, "images")
        os.mkdir(images)
        heldout = [l.split(",")[0] for l in open(os.path.join(ROOT, "models/report/heldout-predictions.csv")).read().splitlines()[1:]]
        for name in heldout[:32]:
            shutil.copy(os.path.join(ROOT, "data/elpv/images", name), images)
        procs, port = start_stack(tmp, a.binary, images)
    try:
        end = time.monotonic() + 60
        while True:
            try:
                plc = handshake.Plc(port)
                plc.wait("Online", lambda s: s["online"], timeout=60)
                break
            except (SystemExit, OSError, RuntimeError):
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)
        plc.coil(handshake.BUFFER_ENABLE, False)
        plc.coil(handshake.TRIGGER_ENABLE, True)
        plc_ms, daemon_ms, verdicts = [], [], {}
        for i in range(a.count):
            t0 = time.perf_counter()
            acq = plc.trigger(100000 + i)
            res = plc.results_until(acq)[-1]
            plc_ms.append((time.perf_counter() - t0) * 1000)
            daemon_ms.append(res["latency_ms"])
            verdicts[res["verdict"]] = verdicts.get(res["verdict"], 0) + 1
        n = len(plc_ms)
        print(f"{n} triggers through the Modbus bridge (pymodbus PLC, port {port}); verdicts {verdicts}")
        print(f"{'':34} {'p50':>8} {'p99':>8} {'max':>8}")
        print(f"{'PLC: Trigger write -> result read':34} {quantile(plc_ms, .5):8.2f} {quantile(plc_ms, .99):8.2f} {max(plc_ms):8.2f}  ms")
        print(f"{'daemon: frame -> verdict (LatencyMs)':34} {quantile(daemon_ms, .5):8.0f} {quantile(daemon_ms, .99):8.0f} {max(daemon_ms):8.0f}  ms (whole ms)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
