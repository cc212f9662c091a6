#!/usr/bin/env python3
"""What the gateway costs the daemon: `inspectord replay` throughput with the whole plant view
attached vs with no socket client, measured side by side in one run (scripts/bench_gateway.sh).

  attached  the daemon's config has `[output] socket`; it runs `replay --wait-clients 2`; the
            gateway (`nice -n 10`, as the unit's Nice=10) holds its two links (live + MQTT
            delivery), publishes every verdict QoS 1 to a real mosquitto broker (its own port),
            a real `mosquitto_sub -q 1` writes what it gets to a file, and a headless chromium
            keeps the operator page open (its `/events` stream).
  none      the same daemon config (the socket configured, its own path) and the same replay,
            with NO client connected: the ratio isolates the clients, not the socket.

Everything else is the same: the release binary, the fast model (models/elpv-siamese.onnx, its
references), the held-out ELPV images (data/elpv/test.txt, the split the demo replays) listed
--repeat times, fps = 0 (as fast as possible), the verdicts on stdout written to a file.
Throughput is the replay's own summary line (first frame taken → last verdict), so start-up and
the gateway's lag after the last verdict are not in it. The repetitions are interleaved, the
order rotating (attached first on even repetitions, none first on odd ones); the table shows
medians and the ratio of the medians (target ≥ 0.97).

For each attached run it also checks delivery: every seq 1..frames of the daemon's run on
`inspectord/bench/verdict` exactly once (duplicates are counted and reported; a missing seq fails
the run), no client evicted or closed by the daemon (its log; e.g. `rate limited`: the gateway's
`ack`s count against `[control] commands_per_second`, and refused ones are reported); the broker
runs with `max_queued_messages 0` so a lagging subscriber is never dropped by mosquitto after it
PUBACKed the gateway; and it reads the gateway's VmHWM (peak RSS) and VmRSS
(after delivery completed) from /proc/<pid>/status, and the CPU seconds each attached process
used during the replay.

Standard library only. Table on stdout, JSON to --out, progress on stderr.
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "models/elpv-siamese.onnx"
REFS = "models/elpv-references.safetensors"
LINE = "bench"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"
CLK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"bench_gateway: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# /proc helpers
# ---------------------------------------------------------------------------------------------

def proc_mem(pid):
    """(VmRSS, VmHWM) in KiB, or (None, None) if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            s = f.read()
    except OSError:
        return None, None
    kb = lambda k: int(re.search(rf"{k}:\s+(\d+) kB", s).group(1))  # noqa: E731
    return kb("VmRSS"), kb("VmHWM")


def cpu_seconds(pids):
    """utime + stime (+ waited-for children) of these processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after ")": state(0) ppid … utime(11) stime(12) cutime(13) cstime(14)
        total += sum(int(x) for x in fields[11:15])
    return total / CLK


def session_pids(sid):
    """Every process in session `sid` (chromium and its zygote, renderer, utility processes)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # state(0) ppid(1) pgrp(2) session(3)
            out.append(int(d))
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench_gateway: {what} exited ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench_gateway: {what} did not listen on {port} within {timeout} s")


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def stop(proc, sig=signal.SIGTERM, timeout=15.0, group=False):
    """Stops a process we started (by its pid, or its own process group for chromium)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def image_list(work, n_images, repeat):
    """The first n held-out images (data/elpv/test.txt; 0 = all 655), repeated `repeat` times."""
    src = os.path.join(ROOT, "data", "elpv", "test.txt")
    base = os.path.dirname(src)
    with open(src) as f:
        files = [os.path.join(base, l.strip()) for l in f if l.strip()]
    files = files[:n_images] if n_images else files
    path = os.path.join(work, "images.txt")
    with open(path, "w") as f:
        f.write("\n".join(files * repeat) + "\n")
    return path, len(files) * repeat


def daemon_config(path, images, sock, workers, threads):
    text = (f'[source]\nkind = "replay"\npath = {json.dumps(images)}\nfps = 0\nloop = false\n\n'
            f"[model]\npath = {json.dumps(os.path.join(ROOT, MODEL))}\n\n"
            f"[references]\npath = {json.dumps(os.path.join(ROOT, REFS))}\n\n"
            f"[runtime]\nworkers = {workers}\nintra_op_threads = {threads}\n\n"
            # Every other [output] key at its default (client_buffer 1024, retain 6000,
            # heartbeat_ms 1000), as shipped.
            f"[output]\nsocket = {json.dumps(sock)}\n")
    with open(path, "w") as f:
        f.write(text)
    return path


SUMMARY = re.compile(r"(\d+) frames in ([\d.]+) s \(([\d.]+) frames/s\)")


def run_replay(binary, config, work, tag, wait_clients=0, on_start=None):
    """`inspectord replay --config C [--wait-clients N]`: frames/s from its summary line."""
    out = os.path.join(work, f"{tag}.verdicts.jsonl")
    err = os.path.join(work, f"{tag}.stderr")
    cmd = [binary, "replay", "--config", config]
    if wait_clients:
        cmd += ["--wait-clients", str(wait_clients)]
    env = {**os.environ, "INSPECTORD_LOG": "warn,inspectord::commands=info"}
    with open(out, "w") as o, open(err, "w") as e:
        p = subprocess.Popen(cmd, stdout=o, stderr=e, env=env, cwd=work)
        watch = on_start(p) if on_start else None
        # wait4: the exit status and the daemon's own CPU time (user + system, all its threads).
        timer = threading.Timer(900, lambda: p.poll() is None and p.kill())
        timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        timer.cancel()
        p.returncode = code = os.waitstatus_to_exitcode(status)
        if code == -signal.SIGKILL:
            raise SystemExit(f"bench_gateway: replay {tag} did not finish:\n{read(err)[-3000:]}")
    stderr = read(err)
    if code != 0:
        raise SystemExit(f"bench_gateway: replay {tag} exited {code}:\n{stderr[-3000:]}")
    m = SUMMARY.search(stderr)
    if not m:
        raise SystemExit(f"bench_gateway: no summary line in replay {tag}'s stderr:\n{stderr[-3000:]}")
    frames, secs, fps = int(m.group(1)), float(m.group(2)), float(m.group(3))
    # The summary prints seconds to 2 decimals and frames/s to 1: take the more precise one.
    if secs > 0 and 0.005 / secs < 0.05 / max(fps, 1e-9):
        fps = frames / secs
    verdicts = sum(1 for l in open(out) if l.startswith('{"type":"verdict"'))
    evicted = ("slow verdict clients were disconnected" in stderr) or ("evicted" in stderr)
    # Any client the daemon closed (e.g. `reason="rate limited"`: more commands than
    # [control] commands_per_second, 1,000 refused) or whose commands it refused.
    closed = re.findall(r'closing a verdict client.*?reason="?([^"\n]*)', stderr)
    refused = [int(x) for x in re.findall(r"refused=(\d+)", stderr)]
    return {"frames": frames, "seconds": secs, "fps": fps, "stdout_verdicts": verdicts,
            "evicted": evicted, "clients_closed": closed, "commands_refused": max(refused, default=0),
            "daemon_cpu_s": round(ru.ru_utime + ru.ru_stime, 3)}, watch


# ---------------------------------------------------------------------------------------------
# The attached side: broker, subscriber, gateway, browser
# ---------------------------------------------------------------------------------------------

class Attached:
    """mosquitto + mosquitto_sub + the gateway (nice 10) + headless chromium on the page, all in
    `work`; the daemon's socket is `sock`."""

    def __init__(self, binary, work, sock, max_inflight, settle_s):
        self.binary, self.work, self.sock = binary, work, sock
        self.procs = {}
        os.makedirs(work, exist_ok=True)
        # The broker, on its own port, anonymous, no persistence (nothing outlives the run).
        self.port = free_port()
        conf = os.path.join(work, "mosquitto.conf")
        text = (f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                # No limit on the QoS 1 messages queued for a subscriber that falls behind
                # (mosquitto's default of 1000 drops the rest after its PUBACK to the gateway);
                # a drop would still show as a notice in mosquitto.log.
                "max_queued_messages 0\n"
                "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n")
        if os.geteuid() == 0:
            text += "user root\n"  # started as root it would drop to `mosquitto`
        with open(conf, "w") as f:
            f.write(text)
        self.procs["mosquitto"] = subprocess.Popen(
            [MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(work, "mosquitto.log"), "w"))
        wait_port(self.port, self.procs["mosquitto"], "mosquitto")
        # The subscriber: QoS 1, every topic of the line, "<topic> <payload>" per line to a file.
        self.sub_file = os.path.join(work, "sub.txt")
        self.procs["mosquitto_sub"] = subprocess.Popen(
            [MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(self.port), "-q", "1",
             "-i", f"bench-sub-{os.getpid()}", "-t", f"inspectord/{LINE}/#", "-F", "%t %p"],
            stdout=open(self.sub_file, "w"), stderr=open(os.path.join(work, "sub.stderr"), "w"),
            stdin=subprocess.DEVNULL)
        self._wait_subscribed()
        # The gateway, reniced as under its unit; JSON log to read its HTTP port.
        self.state_file = os.path.join(work, "gateway", "mqtt.state")
        os.makedirs(os.path.dirname(self.state_file), exist_ok=True)
        gconf = os.path.join(work, "gateway.toml")
        with open(gconf, "w") as f:
            f.write(f"[daemon]\nsocket = {json.dumps(sock)}\n"
                    # reconnect fast: the daemon is started after the gateway
                    "reconnect_initial_ms = 50\nreconnect_max_ms = 100\n\n"
                    '[http]\nlisten = "127.0.0.1:0"\n\n'
                    f'[mqtt]\nbroker = "127.0.0.1:{self.port}"\nline = "{LINE}"\n'
                    f"max_inflight = {max_inflight}\nstate_file = {json.dumps(self.state_file)}\n")
        self.gw_log = os.path.join(work, "gateway.log")
        self.procs["gateway"] = subprocess.Popen(
            ["nice", "-n", "10", binary, "--log-format", "json", "gateway", "--config", gconf],
            stdout=subprocess.DEVNULL, stderr=open(self.gw_log, "w"), stdin=subprocess.DEVNULL,
            env={**os.environ, "INSPECTORD_LOG": "info"}, cwd=work)
        self.http = self._wait_listening()
        self._wait_mqtt()
        # The browser, its own session (one process group: chromium forks many processes).
        self.chrome_dir = os.path.join(work, "chromium")
        self.procs["chromium"] = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
             "--no-first-run", "--no-default-browser-check", f"--user-data-dir={self.chrome_dir}",
             f"http://{self.http}/"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "chromium.log"), "w"),
            stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_page()
        self._settle(settle_s)

    # -- start-up waits --

    def _wait_subscribed(self, timeout=15.0):
        probe = f"inspectord/{LINE}/probe"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            subprocess.run([MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(self.port), "-q", "1",
                            "-t", probe, "-m", "probe"], capture_output=True)
            t = time.monotonic() + 0.5
            while time.monotonic() < t:
                if f"{probe} probe" in read(self.sub_file):
                    return
                time.sleep(0.02)
        raise SystemExit("bench_gateway: mosquitto_sub never subscribed")

    def _events(self):
        for line in read(self.gw_log).splitlines():
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except ValueError:
                    pass

    def _wait_event(self, message, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self._events():
                if (e.get("fields") or {}).get("message", e.get("message")) == message:
                    return e
            if self.procs["gateway"].poll() is not None:
                break
            time.sleep(0.02)
        raise SystemExit(f"bench_gateway: the gateway never logged {message!r}:\n{read(self.gw_log)[-3000:]}")

    def _wait_listening(self):
        e = self._wait_event("gateway listening")
        return (e.get("fields") or {}).get("listen") or e.get("listen")

    def _wait_mqtt(self):
        self._wait_event("MQTT connected")

    def metrics(self):
        with urllib.request.urlopen(f"http://{self.http}/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("inspectord_gateway_") or line.startswith("process_"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def _wait_page(self, timeout=60.0):
        """Until chromium holds the page's event stream: the gateway counts 2 HTTP clients while
        we scrape (our scrape + chromium's /events), three times in a row 0.3 s apart."""
        deadline, ok = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            if self.procs["chromium"].poll() is not None:
                raise SystemExit(f"bench_gateway: chromium exited:\n{read(os.path.join(self.work, 'chromium.log'))[-3000:]}")
            ok = ok + 1 if self.metrics().get("inspectord_gateway_http_clients", 0) >= 2 else 0
            if ok >= 3:
                return
            time.sleep(0.3)
        raise SystemExit("bench_gateway: chromium never opened the page's event stream")

    def chromium_pids(self):
        return session_pids(self.procs["chromium"].pid)

    def _settle(self, max_s):
        """Until the attached processes are idle again (chromium's start-up done): < 3 % of a
        core over 0.5 s, at most max_s."""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            pids = self.all_pids()
            a = cpu_seconds(pids)
            time.sleep(0.5)
            if cpu_seconds(pids) - a < 0.015:
                return
        log(f"the attached processes were still busy after {max_s} s; measuring anyway")

    def all_pids(self):
        return ([self.procs[k].pid for k in ("gateway", "mosquitto", "mosquitto_sub")]
                + self.chromium_pids())

    def cpu_by_process(self):
        return {"gateway": cpu_seconds([self.procs["gateway"].pid]),
                "mosquitto": cpu_seconds([self.procs["mosquitto"].pid]),
                "mosquitto_sub": cpu_seconds([self.procs["mosquitto_sub"].pid]),
                "chromium": cpu_seconds(self.chromium_pids())}

    # -- after the replay --

    def delivered(self):
        """The verdict messages on the subscriber: (run_id, seq) → copies."""
        topic = f"inspectord/{LINE}/verdict "
        seen = {}
        for line in read(self.sub_file).splitlines():
            if not line.startswith(topic):
                continue
            try:
                v = json.loads(line[len(topic):])
            except ValueError:
                continue
            k = (v.get("run_id"), v.get("seq"))
            seen[k] = seen.get(k, 0) + 1
        return seen

    def wait_delivered(self, frames, timeout):
        deadline = time.monotonic() + timeout
        while True:
            seen = self.delivered()
            if len(seen) >= frames or time.monotonic() > deadline:
                return seen
            time.sleep(0.1)

    def close(self):
        stop(self.procs.get("chromium"), group=True)
        stop(self.procs.get("gateway"))
        stop(self.procs.get("mosquitto_sub"))
        stop(self.procs.get("mosquitto"))


# ---------------------------------------------------------------------------------------------
# One repetition of each
# ---------------------------------------------------------------------------------------------

def run_none(ctx, rep):
    work = os.path.join(ctx.work, f"none-{rep}")
    os.makedirs(work, exist_ok=True)
    sock = os.path.join(work, "v.sock")
    cfg = daemon_config(os.path.join(work, "inspectord.toml"), ctx.images, sock, ctx.workers,
                        ctx.threads)
    load = os.getloadavg()[0]
    r, _ = run_replay(ctx.binary, cfg, work, "replay")
    r["load1"] = load
    return r


def run_attached(ctx, rep):
    work = os.path.join(ctx.work, f"attached-{rep}")
    os.makedirs(work, exist_ok=True)
    sock = os.path.join(work, "v.sock")
    cfg = daemon_config(os.path.join(work, "inspectord.toml"), ctx.images, sock, ctx.workers,
                        ctx.threads)
    att = Attached(ctx.binary, work, sock, ctx.max_inflight, ctx.settle)
    try:
        load = os.getloadavg()[0]
        cpu0 = att.cpu_by_process()
        r, _ = run_replay(ctx.binary, cfg, work, "replay", wait_clients=2)
        cpu1 = att.cpu_by_process()
        gw = att.procs["gateway"].pid
        _, hwm_replay = proc_mem(gw)
        t_end = time.monotonic()
        seen = att.wait_delivered(r["frames"], timeout=ctx.delivery_timeout)
        lag = time.monotonic() - t_end
        cpu2 = att.cpu_by_process()
        rss, hwm = proc_mem(gw)
        metrics = att.metrics()
        run_ids = sorted({k[0] for k in seen})
        seqs = sorted(k[1] for k in seen)
        unique = len(seen)
        total = sum(seen.values())
        exact = (len(run_ids) == 1 and seqs == list(range(1, r["frames"] + 1))
                 and total == unique)
        r.update({
            "load1": load,
            "gateway_vmhwm_kib": hwm, "gateway_vmhwm_at_replay_end_kib": hwm_replay,
            "gateway_vmrss_final_kib": rss,
            "delivered_unique": unique, "delivered_total": total,
            "duplicates": total - unique,
            "missing": r["frames"] - len([s for s in seqs if 1 <= s <= r["frames"]]),
            "run_ids": run_ids, "exactly_once": exact,
            "broker_drop_notices": read(os.path.join(work, "mosquitto.log")).count("are being dropped"),
            "cpu_s_during_replay": {k: round(cpu1[k] - cpu0[k], 3) for k in cpu0},
            "cpu_s_until_delivered": {k: round(cpu2[k] - cpu0[k], 3) for k in cpu0},
            # replay exit → the last verdict on the subscriber (0.1 s polling)
            "delivery_lag_s": round(lag, 2),
            "gateway_metrics": {k: v for k, v in metrics.items()
                                if k.startswith("inspectord_gateway_")},
        })
        if unique < r["frames"]:
            log(f"attached run {rep}: only {unique} of {r['frames']} verdicts reached the "
                f"subscriber within {ctx.delivery_timeout} s (work dir {work})")
    finally:
        att.close()
    return r


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def machine(binary):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
    vers = {}
    for name, cmd in [("inspectord", [binary, "--version"]), ("chromium", [CHROMIUM, "--version"]),
                      ("mosquitto", [MOSQUITTO, "-h"])]:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            vers[name] = (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            vers[name] = "?"
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem_kb / 1048576, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "commit": commit, "versions": vers,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=1):
    return "-" if x is None else f"{x:,.{nd}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/inspectord"))
    ap.add_argument("--smoke", action="store_true", help="50 frames, 1 run each (CI, < 1 min)")
    ap.add_argument("--runs", type=int, help="repetitions of each (default 5; smoke 1)")
    ap.add_argument("--images", type=int, help="held-out images (default all 655; smoke 50)")
    ap.add_argument("--repeat", type=int, help="times the list is replayed (default 4; smoke 1)")
    ap.add_argument("--workers", type=int, default=2, help="daemon workers (default 2, as shipped)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per worker (1)")
    ap.add_argument("--max-inflight", type=int, default=64, help="gateway [mqtt] max_inflight")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="max seconds to wait for the attached processes to go idle")
    ap.add_argument("--delivery-timeout", type=float, default=60.0)
    ap.add_argument("--out", default=os.path.join(ROOT, "target/bench/gateway.json"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    runs = a.runs or (1 if a.smoke else 5)
    n_images = a.images if a.images is not None else (50 if a.smoke else 0)
    repeat = a.repeat or (1 if a.smoke else 4)

    for exe in (a.binary, MOSQUITTO, MOSQUITTO_SUB, MOSQUITTO_PUB, CHROMIUM):
        if not os.access(exe, os.X_OK):
            raise SystemExit(f"bench_gateway: {exe} is missing (scripts/system-deps.sh installs "
                             "mosquitto, mosquitto-clients and chromium)")

    class Ctx:
        pass
    ctx = Ctx()
    ctx.binary, ctx.workers, ctx.threads = os.path.abspath(a.binary), a.workers, a.threads
    ctx.max_inflight, ctx.settle, ctx.delivery_timeout = a.max_inflight, a.settle, a.delivery_timeout
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    ctx.work = tempfile.mkdtemp(prefix="gateway-", dir=os.path.join(ROOT, "target/bench"))
    ctx.images, frames = image_list(ctx.work, n_images, repeat)

    facts = machine(ctx.binary)
    load_start = os.getloadavg()
    log(f"{frames} frames a replay, {runs} run(s) each, {ctx.workers} worker(s) x "
        f"{ctx.threads}; load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}; "
        f"work dir {ctx.work}")

    # Warm-up (not measured): the images into the page cache, the model file too.
    w = os.path.join(ctx.work, "warmup")
    os.makedirs(w)
    run_replay(ctx.binary, daemon_config(os.path.join(w, "c.toml"), ctx.images,
                                         os.path.join(w, "v.sock"), ctx.workers, ctx.threads),
               w, "replay")

    results = {"attached": [], "none": []}
    failures = []
    for rep in range(runs):
        order = ["attached", "none"] if rep % 2 == 0 else ["none", "attached"]
        for kind in order:
            r = run_attached(ctx, rep) if kind == "attached" else run_none(ctx, rep)
            r["rep"], r["position"] = rep, order.index(kind)
            results[kind].append(r)
            extra = ""
            if kind == "attached":
                extra = (f", delivered {r['delivered_unique']}/{r['frames']} unique "
                         f"({r['duplicates']} dup), gateway VmHWM {r['gateway_vmhwm_kib']/1024:.1f} MiB, "
                         f"cpu s {r['cpu_s_during_replay']}")
                if not r["exactly_once"]:
                    failures.append(f"rep {rep}: delivery not exactly once "
                                    f"({r['delivered_unique']} unique, {r['duplicates']} dup, "
                                    f"{r['missing']} missing, run_ids {r['run_ids']})")
            if r["evicted"]:
                failures.append(f"rep {rep} {kind}: the daemon evicted a client")
            if r["commands_refused"] and not r["clients_closed"]:
                failures.append(f"rep {rep} {kind}: the daemon refused {r['commands_refused']} commands "
                                f"(rate limit)")
            if r["clients_closed"]:
                failures.append(f"rep {rep} {kind}: the daemon closed a client: {r['clients_closed']} "
                                f"({r['commands_refused']} commands refused)")
            if r["stdout_verdicts"] != r["frames"]:
                failures.append(f"rep {rep} {kind}: {r['stdout_verdicts']} verdicts on stdout "
                                f"for {r['frames']} frames")
            log(f"rep {rep + 1}/{runs} {kind:8s} {r['fps']:7.1f} frames/s "
                f"({r['frames']} frames in {r['seconds']:.2f} s, load1 {r['load1']:.2f}){extra}")

    load_end = os.getloadavg()
    fps_a = med([r["fps"] for r in results["attached"]])
    fps_n = med([r["fps"] for r in results["none"]])
    ratio = fps_a / fps_n if fps_a and fps_n else None
    # The same ratio per repetition (each attached run against the none run next to it).
    pair_ratios = [ra["fps"] / rn["fps"] for ra, rn in zip(results["attached"], results["none"])]
    hwm = [r["gateway_vmhwm_kib"] / 1024 for r in results["attached"] if r["gateway_vmhwm_kib"]]
    rss = [r["gateway_vmrss_final_kib"] / 1024 for r in results["attached"]
           if r["gateway_vmrss_final_kib"]]
    delivered = [r["delivered_unique"] for r in results["attached"]]
    dups = sum(r["duplicates"] for r in results["attached"])
    cpu = {k: med([r["cpu_s_during_replay"][k] for r in results["attached"]])
           for k in ("gateway", "mosquitto", "mosquitto_sub", "chromium")}
    cpu_all = {k: med([r["cpu_s_until_delivered"][k] for r in results["attached"]])
               for k in ("gateway", "mosquitto", "mosquitto_sub", "chromium")}
    secs_a = med([r["seconds"] for r in results["attached"]])
    lag = med([r["delivery_lag_s"] for r in results["attached"]])
    # CPU the attached processes used while the replay ran ÷ the daemon's own CPU for the run: a
    # figure the machine's other load disturbs much less than frames/s.
    share = med([sum(r["cpu_s_during_replay"].values()) / r["daemon_cpu_s"]
                 for r in results["attached"] if r["daemon_cpu_s"]])
    dcpu_a = med([r["daemon_cpu_s"] for r in results["attached"]])
    dcpu_n = med([r["daemon_cpu_s"] for r in results["none"]])
    gm = lambda k: max((r["gateway_metrics"].get(k, 0) for r in results["attached"]), default=0)  # noqa: E731

    rows = [
        ("daemon replay, no socket client", fmt(fps_n), "fps", "x1.00",
         f"median of {runs}; socket configured, nobody connected"),
        ("daemon replay, all attached", fmt(fps_a), "fps", f"x{ratio:.3f}" if ratio else "-",
         "gateway(nice 10)+mosquitto+mosquitto_sub -q 1+chromium page"),
        ("  ratio per repetition", " ".join(f"{x:.3f}" for x in pair_ratios), "", "",
         f"target >= 0.97 ({'met' if ratio and ratio >= 0.97 else 'NOT met'})"),
        ("daemon CPU per run, none / attached", f"{fmt(dcpu_n, 2)} / {fmt(dcpu_a, 2)}", "s",
         f"x{dcpu_a / dcpu_n:.3f}" if dcpu_a and dcpu_n else "-",
         "median user+sys of the replay process (wait4), start-up included"),
        ("attached processes' CPU / daemon's CPU", fmt(100 * share if share else None, 1), "%", "",
         "median; gateway+mosquitto+mosquitto_sub+chromium while the daemon ran"),
        ("gateway peak RSS (VmHWM)", fmt(max(hwm) if hwm else None), "MiB", "",
         f"max over runs; median {fmt(med(hwm))}"),
        ("gateway RSS after delivery (VmRSS)", fmt(med(rss)), "MiB", "", "median over runs"),
        ("verdicts delivered to subscriber", f"{min(delivered) if delivered else 0}",
         "msgs", "", f"min over runs, of {frames} frames; {dups} duplicate(s) in all"),
        ("exactly once, every seq", "yes" if not failures else "NO", "", "",
         "unique (run_id, seq) on the verdict topic = 1..frames"),
        ("replay end → last verdict on subscriber", fmt(lag, 2), "s", "", "median; polled every 0.1 s"),
        ("daemon: clients closed / commands refused",
         f"{sum(len(r['clients_closed']) for r in results['attached'])} / "
         f"{max((r['commands_refused'] for r in results['attached']), default=0)}", "", "",
         "all attached runs / max; the gateway's acks count against commands_per_second"),
        ("page streams / daemon links dropped", f"{gm('inspectord_gateway_sse_evicted_total'):.0f} / "
         f"{gm('inspectord_gateway_daemon_reconnects_total'):.0f}", "", "",
         "gateway's sse_evicted_total / daemon_reconnects_total, max over runs"),
    ] + [
        (f"cpu s: {k}", f"{fmt(cpu[k], 2)} / {fmt(cpu_all[k], 2)}", "s", "",
         (f"median; while the daemon ran (replay {fmt(secs_a, 2)} s) / until delivered"
          if k == "gateway" else "all its processes" if k == "chromium" else ""))
        for k in ("gateway", "mosquitto", "mosquitto_sub", "chromium")
    ]
    print(f"machine: {facts['cpu']}, {facts['cores']} cores, {facts['ram_gib']} GiB, "
          f"kernel {facts['kernel']}, commit {facts['commit']}, {facts['versions']['inspectord']}, "
          f"{facts['versions']['chromium']}, {facts['versions']['mosquitto']}")
    print(f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, "
          f"at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}"
          + ("  (above the core count: figures not comparable)"
             if max(load_start[0], load_end[0]) > (os.cpu_count() or 1) else ""))
    print(f"{frames} frames a replay (held-out ELPV x{repeat}), fps = 0, {ctx.workers} worker(s) x "
          f"{ctx.threads} intra-op, {MODEL}; {runs} interleaved run(s) each, order rotating"
          f"{'; SMOKE: not a measurement' if a.smoke else ''}")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'measurement':<{w0}}  {'value':>{w1}}  {'unit':<4}  {'ratio':>6}  conditions")
    print("-" * (w0 + w1 + 30 + 40))
    for name, val, unit, rat, cond in rows:
        print(f"{name:<{w0}}  {val:>{w1}}  {unit:<4}  {rat:>6}  {cond}")
    for f in failures:
        print(f"FAIL: {f}")

    doc = {"machine": facts, "loadavg_start": load_start, "loadavg_end": load_end,
           "mode": "smoke" if a.smoke else "full", "frames": frames, "runs": runs,
           "workers": ctx.workers, "intra_op_threads": ctx.threads, "model": MODEL,
           "max_inflight": ctx.max_inflight,
           "baseline": "socket configured, no client connected",
           "median_fps": {"attached": fps_a, "none": fps_n}, "ratio": ratio,
           "ratio_per_rep": pair_ratios,
           "gateway_vmhwm_mib_max": max(hwm) if hwm else None,
           "gateway_vmrss_final_mib_median": med(rss),
           "delivered_min": min(delivered) if delivered else 0, "duplicates": dups,
           "exactly_once": not failures, "failures": failures,
           "cpu_s_during_replay_median": cpu, "cpu_s_until_delivered_median": cpu_all,
           "delivery_lag_s_median": lag, "daemon_cpu_s_median": {"attached": dcpu_a, "none": dcpu_n},
           "attached_cpu_share_of_daemon_median": share, "runs_detail": results}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    log(f"wrote {a.out}")
    if not a.keep and not failures:
        shutil.rmtree(ctx.work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
