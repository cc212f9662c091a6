#!/usr/bin/env python3
"""A PLC played by pymodbus (a real third-party Modbus/TCP client) against `inspectord bridge
modbus`: the trigger / result handshake of docs/PLC.md. Used by tests/bridge_modbus.rs (run from
the venv it creates, target/plc-venv) and by scripts/bench_plc.py.

Each subcommand prints one JSON object on stdout; any protocol violation raises (exit != 0).

  cycle   --parts 1,2,3 [--buffered]  trigger each part, wait for TriggerAck, read the results
                                      until the one with the acked AcquisitionId (all printed)
  overrun --parts ...                 buffered, trigger them all without acking, then drain
  missed                              a Trigger edge while TriggerEnable is off
  read                                the status bits and the decoded result block
"""

import argparse
import json
import sys
import time

from pymodbus.client import ModbusTcpClient

# docs/PLC.md, 0-based.
TRIGGER_ENABLE, TRIGGER, BUFFER_ENABLE, RESULTS_ACK, CLEAR_ERROR = range(5)
BITS = ["online", "trigger_ready", "trigger_ack", "missed_trigger", "busy",
        "inspection_completed", "results_valid", "overrun", "camera_lost", "error",
        "heartbeat", "plc_watchdog_expired"]
BLOCK, BLOCK_LEN = 100, 48
CODES = {0: "none", 1: "pass", 2: "fail", 3: "error", 4: "skipped"}
TIMEOUT = 20.0


class Plc:
    def __init__(self, port, word_order="big", unit=1):
        self.c = ModbusTcpClient("127.0.0.1", port=port, timeout=5)
        if not self.c.connect():
            raise SystemExit(f"cannot connect to 127.0.0.1:{port}")
        self.word_order = word_order
        self.unit = unit

    def ok(self, rr):
        if rr.isError():
            raise RuntimeError(f"Modbus error: {rr}")
        return rr

    def coil(self, addr, value):
        self.ok(self.c.write_coil(addr, value, device_id=self.unit))

    def status(self):
        rr = self.ok(self.c.read_discrete_inputs(0, count=12, device_id=self.unit))
        return {name: bool(b) for name, b in zip(BITS, rr.bits[:12])}

    def u32(self, regs):
        return self.c.convert_from_registers(regs, self.c.DATATYPE.UINT32, word_order=self.word_order)

    def write_part(self, part_id):
        regs = self.c.convert_to_registers(part_id, self.c.DATATYPE.UINT32, word_order=self.word_order)
        self.ok(self.c.write_registers(1, regs, device_id=self.unit))

    def block(self, input_registers=True):
        read = self.c.read_input_registers if input_registers else self.c.read_holding_registers
        r = self.ok(read(BLOCK, count=BLOCK_LEN, device_id=self.unit)).registers
        at = lambda a: r[a - BLOCK:a - BLOCK + 2]
        i32 = lambda a: self.c.convert_from_registers(at(a), self.c.DATATYPE.INT32, word_order=self.word_order)
        f32 = lambda a: self.c.convert_from_registers(at(a), self.c.DATATYPE.FLOAT32, word_order=self.word_order)
        return {
            "status": r[0],
            "error_code": r[1],
            "acq_id": self.u32(at(102)),
            "seq": self.u32(at(104)),
            "part_id": self.u32(at(106)),
            "verdict": CODES.get(r[108 - BLOCK], "?"),
            "score_scaled": i32(109),
            "threshold_scaled": i32(111),
            "score_f32": f32(113),
            "threshold_f32": f32(115),
            "latency_ms": self.u32(at(117)),
            "waiting": r[119 - BLOCK],
            "counters": {name: self.u32(at(120 + 2 * i)) for i, name in enumerate(
                ["triggers", "pass", "fail", "error", "skipped", "missed", "overruns"])},
            "last_ack_acq_id": self.u32(at(146)),
            "model_id": "".join(f"{w:04x}" for w in r[134 - BLOCK:138 - BLOCK]),
            "reference_set": "".join(f"{w:04x}" for w in r[138 - BLOCK:142 - BLOCK]),
            "run_id": "".join(f"{w:04x}" for w in r[142 - BLOCK:146 - BLOCK]),
        }

    def wait(self, what, cond, timeout=TIMEOUT):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.status()
            if cond(s):
                return s
            time.sleep(0.002)
        raise RuntimeError(f"timed out waiting for {what}: {self.status()}")

    def trigger(self, part_id):
        """Trigger one part; returns its acquisition id (TriggerAck seen)."""
        self.wait("TriggerReady", lambda s: s["trigger_ready"])
        self.write_part(part_id)
        self.coil(TRIGGER, True)
        self.wait("TriggerAck", lambda s: s["trigger_ack"] or s["missed_trigger"])
        if self.status()["missed_trigger"]:
            raise RuntimeError(f"trigger for part {part_id} missed")
        acq = self.block()["last_ack_acq_id"]
        self.coil(TRIGGER, False)
        self.wait("TriggerAck off", lambda s: not s["trigger_ack"])
        return acq

    def take_result(self, timeout=TIMEOUT):
        """Waits for ResultsValid, reads the block, acknowledges it."""
        self.wait("ResultsValid", lambda s: s["results_valid"], timeout)
        res = self.block()
        self.coil(RESULTS_ACK, True)
        self.wait("ResultsValid off", lambda s: not s["results_valid"])
        self.coil(RESULTS_ACK, False)
        return res

    def results_until(self, acq_id):
        out = []
        while True:
            res = self.take_result()
            out.append(res)
            if res["acq_id"] == acq_id:
                return out


def cycle(plc, parts, buffered):
    plc.coil(BUFFER_ENABLE, buffered)
    plc.coil(TRIGGER_ENABLE, True)
    out = []
    for part in parts:
        t0 = time.monotonic()
        acq = plc.trigger(part)
        results = plc.results_until(acq)
        out.append({"part_id": part, "acq_id": acq, "results": results,
                    "seconds": time.monotonic() - t0})
    return {"cycles": out}


def overrun(plc, parts):
    plc.coil(BUFFER_ENABLE, True)
    plc.coil(TRIGGER_ENABLE, True)
    plc.coil(CLEAR_ERROR, True)
    plc.coil(CLEAR_ERROR, False)
    before = plc.block()["counters"]
    done = lambda c: sum(c[k] for k in ("pass", "fail", "error", "skipped"))
    acqs = [plc.trigger(p) for p in parts]  # never acknowledging a result
    end = time.monotonic() + TIMEOUT
    while done(plc.block()["counters"]) < done(before) + len(parts):
        if time.monotonic() > end:
            raise RuntimeError("not every triggered result arrived")
        time.sleep(0.01)
    full = plc.block()
    status = plc.status()
    drained = []
    while plc.status()["results_valid"]:
        drained.append(plc.take_result())
    plc.coil(CLEAR_ERROR, True)
    cleared = plc.status()
    plc.coil(CLEAR_ERROR, False)
    return {"acq_ids": acqs, "full": full, "status": status, "drained": drained,
            "overrun_counter_before": before["overruns"],
            "overrun_after_clear": cleared["overrun"]}


def missed(plc):
    plc.coil(TRIGGER_ENABLE, False)
    before = plc.block()["counters"]["missed"]
    ready = plc.status()["trigger_ready"]
    plc.write_part(999)
    plc.coil(TRIGGER, True)
    time.sleep(0.2)
    s = plc.status()
    after = plc.block()
    plc.coil(TRIGGER, False)
    plc.coil(CLEAR_ERROR, True)
    cleared = plc.status()["missed_trigger"]
    plc.coil(CLEAR_ERROR, False)
    plc.coil(TRIGGER_ENABLE, True)
    return {"ready_before": ready, "status": s, "missed_before": before,
            "missed_after": after["counters"]["missed"], "busy": s["busy"],
            "ack": s["trigger_ack"], "missed_after_clear": cleared,
            "last_ack_acq_id": after["last_ack_acq_id"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["cycle", "overrun", "missed", "read"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--parts", default="")
    ap.add_argument("--buffered", action="store_true")
    ap.add_argument("--word-order", choices=["big", "little"], default="big")
    a = ap.parse_args()
    plc = Plc(a.port, a.word_order)
    parts = [int(p) for p in a.parts.split(",") if p]
    if a.command == "cycle":
        out = cycle(plc, parts, a.buffered)
    elif a.command == "overrun":
        out = overrun(plc, parts)
    elif a.command == "missed":
        out = missed(plc)
    else:
        out = {"status": plc.status(), "block": plc.block(),
               "holding": plc.block(input_registers=False)}
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
