#!/usr/bin/env python3
"""How many verdicts a second one `inspectord gateway` publishes to a local mosquitto, whatever
the daemon's speed.

A stand-in for the daemon serves protocol v2 (docs/PROTOCOL.md) on a Unix socket: `hello` on
connect, `subscribe` → `subscribed`, `status` → a minimal valid `snapshot`, `ping` → `pong`,
`ack {seq}` → `acked` (every ack is recorded with its time), and a `heartbeat` every second. The
gateway opens two connections (live: the page and /metrics; delivery: MQTT, the one that acks);
once both have subscribed, both get the same N verdict lines (seq 1..N, the daemon's own verdict
line format, about 440 bytes; about 480 once the gateway puts `line` and `run_id` in), written as
fast as each connection takes them (the delivery link stops reading while the gateway's outbox is
full, as against the real daemon).

Measured: first verdict written → the gateway's ack of seq N (it acks only what the broker has
PUBACKed) → N ÷ that time, messages/s. For each `[mqtt] max_inflight` in --inflight, with a
`mosquitto_sub -q 1` subscribed to the verdict topic (the broker then forwards every message,
QoS 1, and waits for the subscriber's PUBACK too) and with no subscriber. The configurations take
turns (the order rotating each repetition); medians over --runs. A fresh broker, gateway (and
subscriber) for every measurement. Also: the gateway's RSS (VmRSS, VmHWM) at the end, how often
its outbox filled (it then stops reading the daemon), and the verdicts the subscriber got.

With --window W the stand-in stays at most W verdicts ahead of the gateway's acks (like a daemon
that is not far ahead of its client), so the outbox never fills and the measurement is the MQTT
path alone. The broker runs with `max_queued_messages 0` (mosquitto's default of 1000 drops QoS 1
messages for a subscriber that falls behind, after it PUBACKed the gateway). acks/s is reported:
a real daemon refuses more than `[control] commands_per_second` (200) and closes a client after
1,000 refused commands.

  python3 bench/mqtt_rate.py            N = 20000, max_inflight 1, 16, 64, 3 runs each
  python3 bench/mqtt_rate.py --window 1000
  python3 bench/mqtt_rate.py --smoke    N = 500, one run

Standard library only (asyncio). Table on stdout, JSON to --out, progress on stderr.
"""
import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"
LINE = "rate"
# The fast model's file and reference set, as a real daemon's replay of them reports them.
MODEL_SHA256 = "1cb6db44fcd62a7e8c8cb8e06b7f59911d576272ff2bf431c6349ea8e9ef646d"
REFERENCE_SET = "4c1b58333f7eed6f"
THRESHOLD = 0.8418058043555654
COUNTER_KEYS = ("frames", "pass", "fail", "error", "skipped", "triggers", "triggers_missed",
                "clients", "evicted", "camera_lost", "camera_restored", "reloads",
                "reloads_refused")


def log(msg):
    print(f"mqtt_rate: {msg}", file=sys.stderr, flush=True)


def now_rfc3339(t=None):
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def verdict_lines(n, seed=7):
    """N verdict lines in the daemon's format (`inspectord replay` of the fast model, as on its
    socket), seq 1..N; scores drawn around the threshold, the verdict consistent with them."""
    rng = random.Random(seed)
    t0 = time.time()
    out = []
    for seq in range(1, n + 1):
        score = rng.uniform(0.3, 1.6)
        beta = rng.uniform(0.9, 1.0)
        line = {
            "type": "verdict", "v": 2, "seq": seq, "source": "replay",
            "frame": f"cell{(seq - 1) % 2624 + 1:04d}.png",
            "captured_at": now_rfc3339(t0 + seq * 0.002),
            "verdict": "fail" if score > THRESHOLD else "pass",
            "score": score, "threshold": THRESHOLD,
            "soart3": {"beta": beta, "eta": score * rng.uniform(1.0, 1.2), "gamma": score},
            "reference_index": rng.randrange(1082), "latency_us": rng.randrange(3000, 30000),
            "model_sha256": MODEL_SHA256, "reference_set": REFERENCE_SET,
        }
        out.append((json.dumps(line, separators=(",", ":")) + "\n").encode())
    return out


# ---------------------------------------------------------------------------------------------
# The daemon stand-in
# ---------------------------------------------------------------------------------------------

class FakeDaemon:
    def __init__(self, path, lines, window=0):
        self.path, self.lines, self.window = path, lines, window
        self.acked_max = 0
        self.ack_cond = asyncio.Condition()
        self.n = len(lines)
        self.run_id = os.urandom(8).hex()
        self.started = time.monotonic()
        self.conns = []                  # per connection: dict
        self.subscribed = asyncio.Event()
        self.go = asyncio.Event()        # start streaming
        self.done = asyncio.Event()      # seq N acked
        self.acks = []                   # (seq, perf_counter)
        self.t_first = None              # first verdict written
        self.lines_sent = 0              # verdict lines written, every connection
        self.subscribes = 0
        self.server = None
        self.tasks = set()

    async def start(self):
        self.server = await asyncio.start_unix_server(self.handle, path=self.path)

    async def close(self):
        self.server.close()
        for c in self.conns:
            c["writer"].close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.sleep(0)

    def emitted(self):
        """The last seq "emitted": all N as soon as streaming starts (an infinitely fast daemon
        that retains everything), 0 before."""
        return self.n if self.go.is_set() else 0

    def seq(self):
        return self.emitted()

    def counters(self):
        c = dict.fromkeys(COUNTER_KEYS, 0)
        c["frames"] = self.seq()
        c["clients"] = len([x for x in self.conns if not x["closed"]])
        return c

    def send(self, conn, obj):
        if not conn["closed"]:
            conn["writer"].write((json.dumps(obj, separators=(",", ":")) + "\n").encode())

    async def handle(self, reader, writer):
        conn = {"id": len(self.conns), "writer": writer, "closed": False, "subscribed": False,
                "acks": 0}
        self.conns.append(conn)
        seq = self.seq()
        self.send(conn, {"type": "hello", "v": 2, "daemon": "inspectord 0.1.0 (mqtt_rate stand-in)",
                         "protocols": [1, 2], "run_id": self.run_id, "seq": seq,
                         "trigger_mode": "free-run",
                         "retained": {"from_seq": 1, "to_seq": seq} if seq else None,
                         "model_sha256": MODEL_SHA256, "reference_set": REFERENCE_SET,
                         "control": False})
        hb = asyncio.ensure_future(self.heartbeats(conn))
        self.tasks.add(hb)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    cmd = json.loads(line)
                except ValueError:
                    self.send(conn, {"type": "error", "v": 2, "reason": "not JSON"})
                    continue
                await self.command(conn, cmd)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            conn["closed"] = True
            hb.cancel()

    async def command(self, conn, cmd):
        kind, cid = cmd.get("type"), cmd.get("id")
        reply = {"v": 2} | ({"id": cid} if cid is not None else {})
        if kind == "subscribe":
            # The cut: everything after from_seq that is emitted (all N once streaming started;
            # this stand-in retains every line), then nothing live (all were emitted at once).
            from_seq = min(max(int(cmd.get("from_seq", 0)), 0), self.n)
            self.send(conn, {"type": "subscribed", **reply, "from_seq": from_seq,
                             "to_seq": self.emitted()})
            if conn.get("stream"):
                conn["stream"].cancel()
            conn["subscribed"] = True
            conn["subscribes"] = conn.get("subscribes", 0) + 1
            self.subscribes += 1
            if sum(c["subscribed"] for c in self.conns) >= 2:
                self.subscribed.set()
            t = asyncio.ensure_future(self.stream(conn, from_seq))
            conn["stream"] = t
            self.tasks.add(t)
        elif kind == "ack":
            s = cmd["seq"]
            self.acks.append((s, time.perf_counter()))
            conn["acks"] += 1
            if s > self.acked_max:
                self.acked_max = s
                async with self.ack_cond:
                    self.ack_cond.notify_all()
            self.send(conn, {"type": "acked", **reply, "seq": s})
            if s >= self.n:
                self.done.set()
        elif kind == "ping":
            self.send(conn, {"type": "pong", **reply, "at": now_rfc3339()})
        elif kind == "status":
            seq = self.seq()
            self.send(conn, {"type": "snapshot", **reply, "run_id": self.run_id, "seq": seq,
                             "uptime_s": round(time.monotonic() - self.started, 3),
                             "trigger_mode": "free-run", "camera": "replay",
                             "model_sha256": MODEL_SHA256, "reference_set": REFERENCE_SET,
                             "counters": self.counters(), "fps": 0.0,
                             "retained": {"from_seq": 1, "to_seq": seq} if seq else None,
                             "clients": [{"client": c["id"] + 1, "uid": os.getuid(),
                                          "control": False, "acked_seq": None}
                                         for c in self.conns if not c["closed"]]})
        else:
            self.send(conn, {"type": "error", **reply, "reason": f"unknown type {kind!r}"})

    async def heartbeats(self, conn):
        while not conn["closed"]:
            await asyncio.sleep(1.0)
            self.send(conn, {"type": "heartbeat", "v": 2, "at": now_rfc3339(), "seq": self.seq(),
                             "counters": self.counters()})

    async def stream(self, conn, from_seq, chunk=64):
        """The verdict lines after from_seq to this connection, as fast as it reads them."""
        await self.go.wait()
        w = conn["writer"]
        if self.t_first is None:
            self.t_first = time.perf_counter()
        for i in range(from_seq, self.n, chunk):
            if conn["closed"]:
                return
            if self.window:
                # --window: never more than W verdicts ahead of the gateway's acks.
                async with self.ack_cond:
                    await self.ack_cond.wait_for(lambda: i - self.acked_max < self.window)
            w.write(b"".join(self.lines[i:i + chunk]))
            self.lines_sent += min(chunk, self.n - i)
            await w.drain()


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def proc_mem(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            s = f.read()
    except OSError:
        return None, None
    kb = lambda k: int(re.search(rf"{k}:\s+(\d+) kB", s).group(1))  # noqa: E731
    return kb("VmRSS"), kb("VmHWM")


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def stop(p, timeout=10.0):
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)


async def wait_for(cond, timeout, what, poll=0.02):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(poll)


async def sample_outbox(http, samples, done, every=0.25):
    """The gateway's outbox length (inspectord_gateway_mqtt_outbox) every `every` s."""
    host, port = http.rsplit(":", 1)
    while not done.is_set():
        try:
            r, w = await asyncio.open_connection(host, int(port))
            w.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            body = (await r.read()).decode(errors="replace")
            w.close()
            m = re.search(r"^inspectord_gateway_mqtt_outbox (\d+)", body, re.M)
            if m:
                samples.append(int(m.group(1)))
        except OSError:
            pass
        await asyncio.sleep(every)


def gateway_events(path):
    for line in read(path).splitlines():
        if line.startswith("{"):
            try:
                e = json.loads(line)
            except ValueError:
                continue
            f = e.get("fields") or {}
            yield f.get("message", e.get("message")), f


async def measure(ctx, inflight, with_sub, rep):
    work = tempfile.mkdtemp(prefix=f"i{inflight}-{'sub' if with_sub else 'nosub'}-{rep}-",
                            dir=ctx.work)
    procs = {}
    fake = None
    keep = True  # kept when the measurement failed or a verdict did not reach the subscriber
    try:
        port = free_port()
        conf = os.path.join(work, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    # mosquitto's default max_queued_messages (1000) drops QoS 1 messages for a
                    # subscriber that falls behind ("Outgoing messages are being dropped", a
                    # notice): after the broker's PUBACK, so not the gateway's loss. No limit here.
                    "max_queued_messages 0\n"
                    "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
                    + ("user root\n" if os.geteuid() == 0 else ""))
        procs["mosquitto"] = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL,
                                              stderr=open(os.path.join(work, "mosquitto.log"), "w"))

        def port_open():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return True
            except OSError:
                return False
        await wait_for(port_open, 10, "mosquitto")
        sub_file = os.path.join(work, "sub.txt")
        if with_sub:
            procs["sub"] = subprocess.Popen(
                [MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                 "-i", f"rate-sub-{os.getpid()}", "-t", f"inspectord/{LINE}/#", "-F", "%t %p"],
                stdout=open(sub_file, "w"), stderr=open(os.path.join(work, "sub.stderr"), "w"),
                stdin=subprocess.DEVNULL)
            probe = f"inspectord/{LINE}/probe"
            deadline = time.monotonic() + 15
            while f"{probe} probe" not in read(sub_file):
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto_sub never subscribed")
                subprocess.run([MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                                "-t", probe, "-m", "probe"], capture_output=True)
                await asyncio.sleep(0.3)

        sock = os.path.join(work, "v.sock")
        fake = FakeDaemon(sock, ctx.lines, ctx.window)
        await fake.start()
        gconf = os.path.join(work, "gateway.toml")
        with open(gconf, "w") as f:
            f.write(f"[daemon]\nsocket = {json.dumps(sock)}\n\n"
                    '[http]\nlisten = "127.0.0.1:0"\n\n'
                    f'[mqtt]\nbroker = "127.0.0.1:{port}"\nline = "{LINE}"\n'
                    f"max_inflight = {inflight}\n"
                    f"state_file = {json.dumps(os.path.join(work, 'mqtt.state'))}\n")
        glog = os.path.join(work, "gateway.log")
        procs["gateway"] = subprocess.Popen(
            [ctx.binary, "--log-format", "json", "gateway", "--config", gconf],
            stdout=subprocess.DEVNULL, stderr=open(glog, "w"), stdin=subprocess.DEVNULL,
            env={**os.environ, "INSPECTORD_LOG": "info"}, cwd=work)
        gw = procs["gateway"]
        await wait_for(lambda: any(m == "MQTT connected" for m, _ in gateway_events(glog))
                       or gw.poll() is not None, 20, "the gateway's MQTT connection")
        if gw.poll() is not None:
            raise RuntimeError(f"the gateway exited:\n{read(glog)[-2000:]}")
        http = next(f.get("listen") for m, f in gateway_events(glog) if m == "gateway listening")
        await asyncio.wait_for(fake.subscribed.wait(), 20)
        await asyncio.sleep(0.2)  # the first status poll, online published: quiet again
        cpu0 = cpu_seconds(gw.pid)
        samples = []
        sampler = asyncio.ensure_future(sample_outbox(http, samples, fake.done))
        fake.go.set()
        try:
            await asyncio.wait_for(fake.done.wait(), ctx.timeout)
        except asyncio.TimeoutError:
            last = max((s for s, _ in fake.acks), default=0)
            raise RuntimeError(f"seq {ctx.n} not acked within {ctx.timeout} s (last ack {last})")
        sampler.cancel()
        t_last = fake.acks[-1][1]
        secs = t_last - fake.t_first
        cpu = cpu_seconds(gw.pid) - cpu0
        rss, hwm = proc_mem(gw.pid)
        delivered = None
        if with_sub:
            topic = f"inspectord/{LINE}/verdict "

            def seqs():
                s = set()
                for l in read(sub_file).splitlines():
                    if l.startswith(topic):
                        s.add(json.loads(l[len(topic):])["seq"])
                return s
            deadline = time.monotonic() + 30
            got = seqs()
            while len(got) < ctx.n and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                got = seqs()
            delivered = len(got)
        events = list(gateway_events(glog))
        # The outbox filled and the delivery link was closed, then reopened once drained to half.
        full = sum(1 for m, _ in events if m and m.startswith("MQTT outbox drained"))
        delivery_conn = [c for c in fake.conns if c["acks"]]
        keep = with_sub and delivered != ctx.n
        dropped = read(os.path.join(work, "mosquitto.log")).count("are being dropped")
        return {"inflight": inflight, "subscriber": with_sub, "rep": rep, "n": ctx.n,
                "seconds": secs, "msgs_per_s": ctx.n / secs,
                "acks": len(fake.acks), "ack_connections": len(delivery_conn),
                "connections": len(fake.conns), "subscribes": fake.subscribes,
                "lines_sent": fake.lines_sent,
                "outbox_max_sampled": max(samples, default=None),
                "gateway_cpu_s": cpu, "gateway_vmrss_kib": rss, "gateway_vmhwm_kib": hwm,
                "outbox_pauses": full, "subscriber_unique_verdicts": delivered,
                "broker_drop_notices": dropped}
    finally:
        if fake:
            await fake.close()
        for k in ("gateway", "sub", "mosquitto"):
            stop(procs.get(k))
        if not ctx.keep and not keep:
            shutil.rmtree(work, ignore_errors=True)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


async def amain(a):
    class Ctx:
        pass
    ctx = Ctx()
    ctx.binary = os.path.abspath(a.binary)
    ctx.n = a.n or (500 if a.smoke else 20000)
    runs = a.runs or (1 if a.smoke else 3)
    ctx.timeout, ctx.keep, ctx.window = a.timeout, a.keep, a.window
    inflights = [int(x) for x in a.inflight.split(",")]
    for exe in (ctx.binary, MOSQUITTO, MOSQUITTO_SUB, MOSQUITTO_PUB):
        if not os.access(exe, os.X_OK):
            raise SystemExit(f"mqtt_rate: {exe} is missing (cargo build --release; "
                             "scripts/system-deps.sh installs mosquitto, mosquitto-clients)")
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    ctx.work = tempfile.mkdtemp(prefix="mqtt-rate-", dir=os.path.join(ROOT, "target/bench"))
    ctx.lines = verdict_lines(ctx.n)
    line_bytes = statistics.mean(len(l) for l in ctx.lines)
    configs = [(i, s) for i in inflights for s in (True, False)]
    load_start = os.getloadavg()
    log(f"N = {ctx.n} verdicts ({line_bytes:.0f} bytes a line), max_inflight {inflights}, "
        f"{runs} run(s); load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    results = []
    failures = []
    for rep in range(runs):
        k = rep % len(configs)
        for inflight, with_sub in configs[k:] + configs[:k]:
            try:
                r = await measure(ctx, inflight, with_sub, rep)
            except RuntimeError as e:
                failures.append(f"max_inflight {inflight}, subscriber {with_sub}, rep {rep}: {e}")
                log(failures[-1])
                continue
            r["load1"] = os.getloadavg()[0]
            results.append(r)
            if with_sub and r["subscriber_unique_verdicts"] != ctx.n:
                failures.append(f"max_inflight {inflight}, rep {rep}: the subscriber got "
                                f"{r['subscriber_unique_verdicts']} of {ctx.n} verdicts")
            log(f"rep {rep + 1}/{runs} max_inflight {inflight:3d} "
                f"{'with' if with_sub else 'no  '} subscriber: {r['msgs_per_s']:9.0f} msgs/s "
                f"({r['seconds']:.2f} s, {r['acks']} acks, gateway cpu {r['gateway_cpu_s']:.2f} s, "
                f"RSS {r['gateway_vmrss_kib'] / 1024:.1f} MiB, outbox max {r['outbox_max_sampled']}, "
                f"pauses x{r['outbox_pauses']}, {r['subscribes']} subscribes, {r['lines_sent']} lines sent)")
    load_end = os.getloadavg()

    out = subprocess.run([ctx.binary, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"gateway: {out}; {platform.node()} {os.cpu_count()} cores, kernel {platform.release()}; "
          f"N = {ctx.n} verdicts of {line_bytes:.0f} bytes, QoS 1 to a local mosquitto; "
          f"stand-in {'at most ' + str(ctx.window) + ' verdicts ahead of the acks' if ctx.window else 'writing as fast as the socket takes it'}; "
          f"{runs} run(s) each, interleaved{'; SMOKE: not a measurement' if a.smoke else ''}")
    print(f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, "
          f"at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    hdr = (f"{'max_inflight':>12}  {'subscriber':<13}  {'msgs/s (median)':>15}  {'runs':<26}  "
           f"{'gw cpu s':>8}  {'RSS MiB':>7}  {'HWM MiB':>7}  {'outbox pauses':>13}  {'outbox max':>10}  {'acks/s':>7}  delivered")
    print(hdr)
    print("-" * len(hdr))
    table = []
    for inflight, with_sub in configs:
        rs = [r for r in results if r["inflight"] == inflight and r["subscriber"] == with_sub]
        if not rs:
            continue
        row = {"max_inflight": inflight, "subscriber": with_sub,
               "msgs_per_s_median": med([r["msgs_per_s"] for r in rs]),
               "msgs_per_s_runs": [r["msgs_per_s"] for r in rs],
               "gateway_cpu_s_median": med([r["gateway_cpu_s"] for r in rs]),
               "gateway_vmrss_mib_median": med([r["gateway_vmrss_kib"] / 1024 for r in rs]),
               "gateway_vmhwm_mib_max": max(r["gateway_vmhwm_kib"] / 1024 for r in rs),
               "outbox_pauses": sum(r["outbox_pauses"] for r in rs),
               "acks_per_s_median": med([r["acks"] / r["seconds"] for r in rs]),
               "outbox_max_sampled": max((r["outbox_max_sampled"] or 0) for r in rs),
               "subscriber_min": min((r["subscriber_unique_verdicts"] for r in rs), default=None)
               if with_sub else None}
        table.append(row)
        runs_s = " ".join(f"{x:,.0f}" for x in row["msgs_per_s_runs"])
        deliv = f"{row['subscriber_min']}/{ctx.n}" if with_sub else "-"
        print(f"{inflight:>12}  {'mosquitto_sub' if with_sub else 'none':<13}  "
              f"{row['msgs_per_s_median']:>15,.0f}  {runs_s:<26}  "
              f"{row['gateway_cpu_s_median']:>8.2f}  {row['gateway_vmrss_mib_median']:>7.1f}  "
              f"{row['gateway_vmhwm_mib_max']:>7.1f}  {row['outbox_pauses']:>13}  {row['outbox_max_sampled']:>10}  {row['acks_per_s_median']:>7,.0f}  {deliv}")
    print("acks/s: `ack` commands the gateway sent the stand-in a second; a real daemon allows "
          "[control] commands_per_second (200, bursts of 400) and closes a client after 1,000 refused")
    for f in failures:
        print(f"FAIL: {f}")
    doc = {"n": ctx.n, "line_bytes_mean": line_bytes, "window": ctx.window, "runs": runs, "inflight": inflights,
           "mode": "smoke" if a.smoke else "full", "gateway": out,
           "cores": os.cpu_count(), "kernel": platform.release(),
           "loadavg_start": load_start, "loadavg_end": load_end,
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "table": table, "runs_detail": results, "failures": failures}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    log(f"wrote {a.out}")
    if not ctx.keep and not failures:
        shutil.rmtree(ctx.work, ignore_errors=True)
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/inspectord"))
    ap.add_argument("--smoke", action="store_true", help="N = 500, one run")
    ap.add_argument("--n", type=int, help="verdicts per measurement (default 20000)")
    ap.add_argument("--runs", type=int, help="repetitions (default 3)")
    ap.add_argument("--inflight", default="1,16,64", help="[mqtt] max_inflight values")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds for one measurement")
    ap.add_argument("--out", default=os.path.join(ROOT, "target/bench/mqtt_rate.json"))
    ap.add_argument("--window", type=int, default=0,
                    help="the stand-in stays at most W verdicts ahead of the gateway's acks "
                         "(0: none, every line written as fast as the socket takes it)")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    sys.exit(asyncio.run(amain(ap.parse_args())))


if __name__ == "__main__":
    main()
