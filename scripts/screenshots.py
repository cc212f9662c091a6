#!/usr/bin/env python3
"""Screenshots of the gateway's operator page during a replay, for docs/img/.

Runs the real daemon (a paced replay of the 655 held-out ELPV images, saving fail images; the
production encoder by default), the real gateway, and headless Debian chromium through
chromedriver (W3C WebDriver over plain HTTP, standard library only). Writes
  OUT/gateway-running.png      after SECONDS of replay,
  OUT/gateway-unreachable.png  a few seconds after the daemon is stopped.

    python3 scripts/screenshots.py [--out docs/img] [--seconds 60] [--fps 8]

Needs `cargo build --release` (or --bin PATH), chromium and chromium-driver
(scripts/system-deps.sh)."""

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, timeout, cond):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"screenshots: {what} did not happen within {timeout} s")


class WebDriver:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.sid = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r).get("value")

    def session(self, width, height, profile):
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": [
            "--remote-debugging-pipe", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-background-networking", "--disable-sync",
            "--disable-component-update", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--window-size={width},{height}"]}}}}
        self.sid = self.call("POST", "/session", caps)["sessionId"]

    def cmd(self, method, path, body=None):
        return self.call(method, f"/session/{self.sid}{path}", body)

    def script(self, js):
        return self.cmd("POST", "/execute/sync", {"script": js, "args": []})

    def screenshot(self, path):
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        Path(path).write_bytes(png)
        print(f"screenshots: wrote {path} ({len(png)} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fps", type=float, default=8.0)
    ap.add_argument("--bin", default=str(REPO / "target/release/inspectord"))
    ap.add_argument("--size", default="1280x800")
    ap.add_argument("--model", default="elpv-lite0",
                    help="models/NAME.onnx with models/NAME-references.safetensors")
    a = ap.parse_args()
    width, height = (int(x) for x in a.size.split("x"))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="isd-shots-"))
    sock, fails, http_port, wd_port = tmp / "v.sock", tmp / "failures", free_port(), free_port()
    refs = "elpv-references.safetensors" if a.model == "elpv-siamese" else f"{a.model}-references.safetensors"
    (tmp / "inspectord.toml").write_text(f"""
[source]
kind = "replay"
path = "{REPO}/data/elpv/test.txt"
fps = {a.fps}
loop = true
[model]
path = "{REPO}/models/{a.model}.onnx"
[references]
path = "{REPO}/models/{refs}"
[output]
socket = "{sock}"
[failures]
dir = "{fails}"
quota_mb = 50
""")
    (tmp / "gateway.toml").write_text(f"""
[daemon]
socket = "{sock}"
[http]
listen = "127.0.0.1:{http_port}"
failures_dir = "{fails}"
""")
    procs = []
    try:
        daemon = subprocess.Popen([a.bin, "replay", "--config", tmp / "inspectord.toml"],
                                  stdout=subprocess.DEVNULL, stderr=open(tmp / "daemon.log", "w"))
        procs.append(daemon)
        wait("the daemon's socket", 30, sock.exists)
        procs.append(subprocess.Popen([a.bin, "gateway", "--config", tmp / "gateway.toml"],
                                      stderr=open(tmp / "gateway.log", "w")))
        procs.append(subprocess.Popen(["/usr/bin/chromedriver", f"--port={wd_port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wd = WebDriver(wd_port)
        wait("chromedriver", 20, lambda: wd.call("GET", "/status")["ready"])
        wd.session(width, height, tmp / "profile")
        wd.cmd("POST", "/url", {"url": f"http://127.0.0.1:{http_port}/"})
        time.sleep(a.seconds)
        wait("a gallery image", 30, lambda: wd.script(
            "return [...document.querySelectorAll('#gallery img')].some(i => i.naturalWidth > 0)"))
        wd.screenshot(out / "gateway-running.png")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        wait("the page to say the daemon is unreachable", 15, lambda: wd.script(
            "return document.getElementById('daemon-state').textContent.startsWith('Daemon unreachable')"))
        time.sleep(1)
        wd.screenshot(out / "gateway-unreachable.png")
        wd.cmd("DELETE", "")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
