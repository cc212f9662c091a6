#!/usr/bin/env python3
"""Soak test: many frames through the real daemon while clients misbehave around a steady one.

The daemon replays the held-out ELPV images in a loop (the fast encoder: the plumbing is what is
soaked, not the model) with its verdict socket on. Around it, for the whole run:
  - a steady client reads every line and checks that it sees every verdict exactly once, in
    order, from seq 1 (it is the one `--wait-clients 1` waits for);
  - a churning client connects, reads a few lines, disconnects, again and again;
  - a stalled client connects and never reads (the daemon evicts it when its queue is full; it
    then connects again and stalls again).
After warm-up and at the end it samples the daemon's resident memory, open file descriptors and
threads from /proc. At the target frame count it sends SIGTERM; the daemon drains, and the steady
client must have seen exactly the frames the daemon reports.

    python3 scripts/soak.py                      # 200,000 frames (release build)
    python3 scripts/soak.py --frames 20000       # the short version the test suite runs

Prints one JSON object with the figures; exits 1 if an invariant broke.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def proc_figures(pid):
    with open(f"/proc/{pid}/status") as f:
        status = f.read()
    rss_kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_kb": rss_kb, "fds": fds, "threads": threads}


def connect(path, deadline):
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Steady(threading.Thread):
    """Reads every line to EOF; records seq order, gaps and duplicates."""

    def __init__(self, path):
        super().__init__(name="steady", daemon=True)
        self.sock = connect(path, time.monotonic() + 60)
        self.verdicts = 0
        self.last_seq = 0
        self.gaps = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.status_lines = 0
        self.error = None

    def run(self):
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    m = json.loads(line)
                    if m.get("type") != "verdict":
                        self.status_lines += m.get("type") == "status"
                        continue
                    seq = m["seq"]
                    if seq == self.last_seq + 1:
                        pass
                    elif seq <= self.last_seq:
                        self.duplicates += 1
                        continue
                    else:
                        self.gaps += 1
                    self.last_seq = seq
                    self.verdicts += 1
        except Exception as e:  # noqa: BLE001 - reported in the figures
            self.error = repr(e)


class Churner(threading.Thread):
    """Connects, reads a few lines, disconnects; counts its cycles."""

    def __init__(self, path, stop):
        super().__init__(name="churner", daemon=True)
        self.path, self.stop, self.cycles = path, stop, 0

    def run(self):
        while not self.stop.is_set():
            try:
                s = connect(self.path, time.monotonic() + 5)
                s.settimeout(2)
                got = 0
                while got < 5:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk.count(b"\n")
                s.close()
                self.cycles += 1
            except OSError:
                if self.stop.is_set():
                    return
                time.sleep(0.05)


class Staller(threading.Thread):
    """Connects and never reads; when the daemon evicts it, connects again."""

    def __init__(self, path, stop):
        super().__init__(name="staller", daemon=True)
        self.path, self.stop, self.connections = path, stop, 0

    def run(self):
        while not self.stop.is_set():
            try:
                s = connect(self.path, time.monotonic() + 5)
                self.connections += 1
                s.setblocking(False)
                # Never read; look every second whether the daemon has closed the connection.
                while not self.stop.wait(1.0):
                    try:
                        s.send(b"")
                        if s.recv(1, socket.MSG_PEEK) == b"":
                            break
                    except BlockingIOError:
                        continue
                    except OSError:
                        break
                s.close()
            except OSError:
                time.sleep(0.1)


def write_config(tmp, sock_path, workers):
    model = os.path.join(ROOT, "models", "elpv-siamese.onnx")
    refs = os.path.join(ROOT, "models", "elpv-references.safetensors")
    source = os.path.join(ROOT, "data", "elpv", "test.txt")
    path = os.path.join(tmp, "soak.toml")
    with open(path, "w") as f:
        f.write(
            f'[source]\nkind = "replay"\npath = {json.dumps(source)}\nloop = true\n\n'
            f"[model]\npath = {json.dumps(model)}\n\n[references]\npath = {json.dumps(refs)}\n\n"
            f"[output]\nsocket = {json.dumps(sock_path)}\nclient_buffer = 256\n\n"
            f"[runtime]\nworkers = {workers}\n"
        )
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "inspectord"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-rss-drift-mb", type=float, default=5.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="inspectord-soak-") as tmp:
        sock_path = os.path.join(tmp, "v.sock")
        config = write_config(tmp, sock_path, args.workers)
        log = open(os.path.join(tmp, "daemon.log"), "w+")
        daemon = subprocess.Popen(
            [args.binary, "replay", "--config", config, "--wait-clients", "1"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "INSPECTORD_LOG": "warn,inspectord::commands=info"},
        )
        started = time.monotonic()
        steady = Steady(sock_path)
        steady.start()
        stop = threading.Event()
        churner, staller = Churner(sock_path, stop), Staller(sock_path, stop)
        churner.start()
        staller.start()

        warm = max(args.frames // 10, 1000)
        warm_figures = None
        while steady.verdicts < args.frames and daemon.poll() is None:
            if warm_figures is None and steady.verdicts >= warm:
                warm_figures = proc_figures(daemon.pid)
                warm_figures["at_frame"] = steady.verdicts
            time.sleep(0.2)
        end_figures = proc_figures(daemon.pid) if daemon.poll() is None else None
        if end_figures:
            end_figures["at_frame"] = steady.verdicts
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
        stop.set()
        steady.join(timeout=30)
        wall = time.monotonic() - started
        log.seek(0)
        text = log.read()
        m = re.findall(r"stopped frames=(\d+)", text)
        daemon_frames = int(m[-1]) if m else None

    figures = {
        "frames_target": args.frames,
        "daemon_frames": daemon_frames,
        "steady_verdicts": steady.verdicts,
        "steady_last_seq": steady.last_seq,
        "gaps": steady.gaps,
        "duplicates": steady.duplicates,
        "steady_error": steady.error,
        "churn_cycles": churner.cycles,
        "stalled_connections": staller.connections,
        "exit_code": code,
        "wall_s": round(wall, 1),
        "fps": round(steady.verdicts / wall, 1) if wall else None,
        "after_warmup": warm_figures,
        "end": end_figures,
    }
    problems = []
    if code != 0:
        problems.append(f"daemon exit code {code}")
    if steady.error or steady.gaps or steady.duplicates:
        problems.append("the steady client missed, repeated or broke")
    if daemon_frames != steady.verdicts or steady.last_seq != steady.verdicts:
        problems.append("the steady client did not see exactly the frames the daemon reported")
    if steady.verdicts < args.frames:
        problems.append("fewer frames than asked for")
    if warm_figures and end_figures:
        drift_mb = (end_figures["rss_kb"] - warm_figures["rss_kb"]) / 1024
        figures["rss_drift_mb"] = round(drift_mb, 2)
        if drift_mb > args.max_rss_drift_mb:
            problems.append(f"RSS drifted {drift_mb:.1f} MB")
        if end_figures["threads"] != warm_figures["threads"]:
            problems.append("thread count changed")
        # The churning and stalled clients hold a connection or not at the sampling instant.
        if abs(end_figures["fds"] - warm_figures["fds"]) > 2:
            problems.append("open file descriptors changed")
    else:
        problems.append("no figures sampled (daemon ended early?)")
    figures["problems"] = problems
    print(json.dumps(figures, indent=1))
    if problems:
        print("\n".join(text.splitlines()[-20:]), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
