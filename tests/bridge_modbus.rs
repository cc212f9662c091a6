//! `inspectord bridge modbus` end to end: the real daemon (trigger mode, replaying held-out ELPV
//! images through the real model) and two real bridges (high-first and low-first word order),
//! driven by two real third-party Modbus clients: `mbpoll` (libmodbus, a Debian package) and
//! `pymodbus` (PyPI, in a venv this test creates in target/plc-venv). Neither is ours.
//!
//! The PLC sees: each trigger acknowledged and its result with the right part id, acquisition
//! id and the verdict the Python evaluation predicts; buffer overrun (FIFO kept, the gap in
//! AcquisitionId); a missed trigger while not ready; the PLC watchdog expiring and recovering
//! (reported to the daemon); the daemon SIGKILLed and restarted (every result once); and a
//! float and a u32 read back equal to what the daemon sent, in both word orders.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Artifacts, Daemon, TestConfig};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(110);
const WAIT: Duration = Duration::from_secs(20);
/// The pinned pymodbus (the venv is rebuilt when another is installed).
const PYMODBUS: &str = "3.16.1";
const PLC_TIMEOUT_MS: u64 = 1000;
const BUFFER: usize = 4;

// ---- the third-party clients ----------------------------------------------------------------

fn mbpoll_bin() -> PathBuf {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("mbpoll"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "mbpoll is not installed: scripts/system-deps.sh installs it (apt-get install mbpoll)"
        )
    })
}

/// `mbpoll -m tcp -p PORT -a 1 -0 -1 ARGS… 127.0.0.1 [VALUES…]`: the (address, value) pairs
/// it printed, or its error output.
fn mbpoll(port: u16, args: &[&str], values: &[&str]) -> Result<Vec<(u16, String)>, String> {
    let port = port.to_string();
    let out = Command::new(mbpoll_bin())
        .args(["-m", "tcp", "-p", &port, "-a", "1", "-0", "-1", "-o", "2"])
        .args(args)
        .arg("127.0.0.1")
        .args(values)
        .output()
        .expect("run mbpoll");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(text
        .lines()
        .filter_map(|l| {
            let (addr, value) = l.trim().strip_prefix('[')?.split_once("]:")?;
            // A register over 32767 is printed as `59454 (-6082)`: the first is unsigned.
            let value = value.split_whitespace().next()?;
            Some((addr.parse().ok()?, value.to_string()))
        })
        .collect())
}

fn mb_read(port: u16, args: &[&str]) -> Vec<(u16, String)> {
    mbpoll(port, args, &[]).unwrap_or_else(|e| panic!("mbpoll {args:?}: {e}"))
}

fn mb_write(port: u16, args: &[&str], values: &[&str]) {
    mbpoll(port, args, values).unwrap_or_else(|e| panic!("mbpoll {args:?} {values:?}: {e}"));
}

fn mb_u(port: u16, kind: &str, addr: u16) -> i64 {
    let a = addr.to_string();
    let rows = mb_read(port, &["-t", kind, "-B", "-r", &a]);
    rows[0].1.parse().expect("an integer")
}

fn mb_bits(port: u16) -> Vec<bool> {
    let rows = mb_read(port, &["-t", "1", "-r", "0", "-c", "12"]);
    rows.iter().map(|(_, v)| v == "1").collect()
}

fn mb_wait_bit(port: u16, bit: usize, value: bool, what: &str) {
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        if mb_bits(port)[bit] == value {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "timed out waiting for {what} = {value}: {:?}",
        mb_bits(port)
    );
}

/// The venv with pymodbus: created here (target/plc-venv) when missing, so a fresh machine with
/// python3-venv works; a failure to create it fails the test.
fn plc_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/plc-venv");
    let python = venv.join("bin/python");
    let has = |python: &Path| {
        Command::new(python)
            .args([
                "-c",
                "import pymodbus, sys; sys.exit(pymodbus.__version__ != sys.argv[1])",
            ])
            .arg(PYMODBUS)
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.is_file() && has(&python) {
        return python;
    }
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed (scripts/system-deps.sh installs python3-venv):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "python3 -m venv target/plc-venv",
    );
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("pymodbus=={PYMODBUS}")),
        "pip install pymodbus",
    );
    assert!(
        has(&python),
        "pymodbus {PYMODBUS} is not importable from {}",
        venv.display()
    );
    python
}

/// tests/plc/handshake.py (pymodbus) against a bridge: its JSON answer.
fn pymodbus(python: &Path, port: u16, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plc/handshake.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .args(["--port", &port.to_string()])
        .output()
        .expect("run handshake.py");
    assert!(
        out.status.success(),
        "handshake.py {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("handshake.py prints JSON")
}

// ---- the daemon and a socket client that watches it ----------------------------------------

/// A protocol v2 client of the daemon: every line it received, and a way to send commands.
struct Observer {
    lines: Arc<Mutex<Vec<Value>>>,
    stream: UnixStream,
    next_id: u64,
}

impl Observer {
    fn connect(daemon: &Daemon, socket: &Path) -> Observer {
        let stream = daemon.connect(socket, LIMIT);
        stream.set_read_timeout(None).expect("blocking reads");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (into, reader) = (lines.clone(), stream.try_clone().expect("clone"));
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    into.lock().unwrap().push(v);
                }
            }
        });
        let o = Observer {
            lines,
            stream,
            next_id: 1,
        };
        o.wait_for("hello", |v| v["type"] == "hello");
        o
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            {
                let lines = self.lines.lock().unwrap();
                if let Some(v) = lines.iter().find(|v| cond(v)) {
                    // Every line the daemon sent so far must be valid against the schema.
                    lines.iter().for_each(common::assert_valid_message);
                    return v.clone();
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let lines = self.lines.lock().unwrap();
        let last: Vec<String> = lines.iter().rev().take(8).map(Value::to_string).collect();
        panic!(
            "the daemon never sent {what}; the last lines, newest first:\n{}",
            last.join("\n")
        )
    }

    fn verdict(&self, acq_id: u64) -> Value {
        self.wait_for(&format!("the verdict of acquisition {acq_id}"), |v| {
            v["type"] == "verdict" && v["acq_id"] == acq_id
        })
    }

    /// Triggers a part as another client would; returns its acquisition id.
    fn trigger(&mut self, part: u32) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let command = json!({"type": "trigger", "part_id": part.to_string(), "id": id});
        common::assert_valid_command(&command);
        let line = command.to_string();
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send trigger");
        let ack = self.wait_for("trigger_ack", |v| v["id"] == id);
        assert_eq!(ack["type"], "trigger_ack", "{ack}");
        ack["acq_id"].as_u64().expect("acq_id")
    }
}

fn start_daemon(tmp: &Path, config: &Path) -> Daemon {
    let c = config.to_str().expect("UTF-8");
    common::spawn(common::command(tmp, ["run", "--config", c]), LIMIT)
}

fn start_bridge(tmp: &Path, name: &str, socket: &Path, word_order: &str) -> (Daemon, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let text = format!(
        "[daemon]\nsocket = {}\nsource = \"{name}\"\nreconnect_initial_ms = 50\nreconnect_max_ms = 400\n\n[modbus]\nlisten = \"127.0.0.1:{port}\"\nword_order = \"{word_order}\"\nbuffer = {BUFFER}\nplc_timeout_ms = {PLC_TIMEOUT_MS}\n",
        common::toml_str(socket.to_str().expect("UTF-8")),
    );
    let path = tmp.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write bridge config");
    let c = path.to_str().expect("UTF-8");
    let bridge = common::spawn(
        common::command(tmp, ["bridge", "modbus", "--config", c]),
        LIMIT,
    );
    // Serving once mbpoll gets an answer.
    let end = Instant::now() + WAIT;
    while mbpoll(port, &["-t", "1", "-r", "0"], &[]).is_err() {
        assert!(
            Instant::now() < end,
            "bridge {name} never served:\n{}",
            bridge.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (bridge, port)
}

/// ResultCode name of the verdict the Python evaluation predicts for a frame.
fn predicted(predictions: &HashMap<String, bool>, frame: &str) -> &'static str {
    let name = Path::new(frame)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a frame name");
    match predictions.get(name) {
        Some(true) => "fail",
        Some(false) => "pass",
        None => panic!("{frame} has no prediction"),
    }
}

// ---- the test -------------------------------------------------------------------------------

#[test]
fn a_plc_drives_the_handshake_through_the_bridge_with_mbpoll_and_pymodbus() {
    mbpoll_bin();
    let python = plc_python();
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    let files = art.copy_heldout(&images, 4, 4);
    let predictions: HashMap<String, bool> = files
        .iter()
        .map(|f| (f.clone(), art.prediction(f).defective()))
        .collect();

    let socket = tmp.path().join("v.sock");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.socket = Some(socket.clone());
    cfg.looping = true;
    let toml = cfg.to_toml().replace(
        "kind = \"replay\"\n",
        "kind = \"replay\"\ntrigger = \"command\"\n",
    );
    let config = tmp.path().join("inspectord.toml");
    std::fs::write(&config, toml).expect("write config");

    let daemon = start_daemon(tmp.path(), &config);
    let mut observer = Observer::connect(&daemon, &socket);
    let (bridge_a, a) = start_bridge(tmp.path(), "bridge-a", &socket, "high-first");
    let (bridge_b, b) = start_bridge(tmp.path(), "bridge-b", &socket, "low-first");
    mb_wait_bit(a, 0, true, "Online (bridge a)");
    mb_wait_bit(b, 0, true, "Online (bridge b)");

    handshake_with_mbpoll(a, &observer, &predictions);
    handshake_with_pymodbus(&python, a, &observer, &predictions);
    missed_trigger(&python, a);
    overrun(&python, a, &observer);
    word_order(&python, a, b, &observer);
    watchdog(a, &observer, &bridge_a);
    daemon_restart(
        &python,
        a,
        tmp.path(),
        &config,
        &socket,
        daemon,
        &mut observer,
    );

    for (name, bridge) in [("a", bridge_a), ("b", bridge_b)] {
        bridge.signal(libc::SIGTERM);
        let done = bridge.wait(WAIT);
        assert!(
            done.status.success(),
            "bridge {name}: {}\n{}",
            done.status,
            done.stderr
        );
    }
}

/// mbpoll as the PLC, no buffering: PartId, Trigger, TriggerAck, the result block, ResultsAck.
fn handshake_with_mbpoll(a: u16, observer: &Observer, predictions: &HashMap<String, bool>) {
    mb_write(a, &["-t", "0", "-r", "0"], &["1", "0", "0"]); // TriggerEnable, no buffering
    for part in [1001u32, 1002, 70_000] {
        mb_wait_bit(a, 1, true, "TriggerReady");
        mb_write(a, &["-t", "4:int", "-B", "-r", "1"], &[&part.to_string()]);
        assert_eq!(mb_u(a, "4:int", 1), i64::from(part), "PartId reads back");
        mb_write(a, &["-t", "0", "-r", "1"], &["1"]);
        mb_wait_bit(a, 2, true, "TriggerAck");
        let acq = mb_u(a, "3:int", 146) as u64;
        mb_write(a, &["-t", "0", "-r", "1"], &["0"]);
        mb_wait_bit(a, 2, false, "TriggerAck off after Trigger drops");
        let verdict = observer.verdict(acq);
        mb_wait_bit(a, 6, true, "ResultsValid");
        let regs: HashMap<u16, i64> = mb_read(a, &["-t", "3", "-r", "100", "-c", "48"])
            .into_iter()
            .map(|(addr, v)| (addr, v.parse().expect("a register")))
            .collect();
        let u32_at = |addr: u16| (regs[&addr] << 16) | regs[&(addr + 1)];
        assert_eq!(u32_at(102) as u64, acq, "AcquisitionId");
        assert_eq!(u32_at(106), i64::from(part), "PartId echo");
        assert_eq!(u32_at(104) as u64, verdict["seq"].as_u64().unwrap(), "Seq");
        let code = ["none", "pass", "fail", "error", "skipped"][regs[&108] as usize];
        assert_eq!(
            code, verdict["verdict"],
            "ResultCode is the daemon's verdict"
        );
        let frame = verdict["frame"].as_str().expect("frame");
        assert_eq!(
            code,
            predicted(predictions, frame),
            "{frame}: the predicted verdict"
        );
        assert_eq!(verdict["part_id"], part.to_string());
        // Holding registers mirror the input registers.
        assert_eq!(mb_u(a, "4:int", 102) as u64, acq, "holding mirror");
        mb_write(a, &["-t", "0", "-r", "3"], &["1"]);
        mb_wait_bit(a, 6, false, "ResultsValid off after ResultsAck");
        mb_write(a, &["-t", "0", "-r", "3"], &["0"]);
    }
    let refused = mbpoll(a, &["-t", "4", "-r", "100"], &["5"]);
    let err = refused.expect_err("a write to a read-only register is refused");
    assert!(err.contains("Illegal data address"), "{err}");
    assert!(
        mbpoll(a, &["-t", "3", "-r", "148"], &[]).is_err(),
        "beyond the map"
    );
}

/// pymodbus as the PLC, buffered.
fn handshake_with_pymodbus(
    python: &Path,
    a: u16,
    observer: &Observer,
    predictions: &HashMap<String, bool>,
) {
    let parts = [2001u32, 2002, 2003, 2004, 2005];
    let list: Vec<String> = parts.iter().map(u32::to_string).collect();
    let out = pymodbus(
        python,
        a,
        &["cycle", "--buffered", "--parts", &list.join(",")],
    );
    let cycles = out["cycles"].as_array().expect("cycles");
    assert_eq!(cycles.len(), parts.len());
    for (c, part) in cycles.iter().zip(parts) {
        let results = c["results"].as_array().expect("results");
        assert_eq!(results.len(), 1, "one result per trigger: {c}");
        let r = &results[0];
        let acq = c["acq_id"].as_u64().expect("acq_id");
        let verdict = observer.verdict(acq);
        assert_eq!(r["acq_id"], acq);
        assert_eq!(r["part_id"], part);
        assert_eq!(r["seq"], verdict["seq"]);
        assert_eq!(r["verdict"], verdict["verdict"]);
        let frame = verdict["frame"].as_str().expect("frame");
        assert_eq!(r["verdict"], predicted(predictions, frame), "{frame}");
        let score = verdict["score"].as_f64().expect("score");
        assert_eq!(r["score_scaled"], (score * 1e6).round() as i64);
    }
}

fn missed_trigger(python: &Path, a: u16) {
    let m = pymodbus(python, a, &["missed"]);
    assert_eq!(m["ready_before"], false, "TriggerEnable off: not ready");
    assert_eq!(m["status"]["missed_trigger"], true, "{m}");
    assert_eq!(m["ack"], false);
    assert_eq!(m["busy"], false, "no command was sent");
    assert_eq!(
        m["missed_after"].as_u64().unwrap(),
        m["missed_before"].as_u64().unwrap() + 1
    );
    assert_eq!(m["missed_after_clear"], false, "ClearError clears it");
}

/// More triggers than the buffer holds, none acknowledged: the newest are dropped, FIFO kept.
fn overrun(python: &Path, a: u16, observer: &Observer) {
    let parts = ["3001", "3002", "3003", "3004", "3005", "3006", "3007"];
    let o = pymodbus(python, a, &["overrun", "--parts", &parts.join(",")]);
    let acqs: Vec<u64> = o["acq_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let dropped = (parts.len() - BUFFER) as u64;
    assert_eq!(o["status"]["overrun"], true, "{o}");
    assert_eq!(
        o["full"]["counters"]["overruns"].as_u64().unwrap(),
        o["overrun_counter_before"].as_u64().unwrap() + dropped
    );
    assert_eq!(
        o["full"]["waiting"],
        (BUFFER - 1) as u64,
        "one presented, the rest waiting"
    );
    let drained: Vec<u64> = o["drained"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["acq_id"].as_u64().unwrap())
        .collect();
    assert_eq!(drained, acqs[..BUFFER], "the oldest kept, in order");
    assert_eq!(o["overrun_after_clear"], false);
    // The gap is visible in the next result's AcquisitionId and Seq.
    let next = pymodbus(python, a, &["cycle", "--buffered", "--parts", "3008"]);
    let r = &next["cycles"][0]["results"][0];
    let last_kept = o["drained"][BUFFER - 1].clone();
    assert_eq!(
        r["acq_id"].as_u64().unwrap(),
        acqs[BUFFER - 1] + dropped + 1
    );
    assert_eq!(
        r["seq"].as_u64().unwrap(),
        last_kept["seq"].as_u64().unwrap() + dropped + 1
    );
    assert_eq!(observer.verdict(acqs[parts.len() - 1])["part_id"], "3007");
}

/// The latest result read back through both bridges with both clients equals the daemon's.
fn word_order(python: &Path, a: u16, b: u16, observer: &Observer) {
    let latest = observer
        .lines
        .lock()
        .unwrap()
        .iter()
        .rfind(|v| v["type"] == "verdict")
        .cloned()
        .expect("a verdict");
    let acq = latest["acq_id"].as_u64().unwrap();
    let score = latest["score"].as_f64().unwrap() as f32;
    let mb_float = |port: u16, order: &[&str]| -> f32 {
        let mut args = vec!["-t", "3:float", "-r", "113"];
        args.extend_from_slice(order);
        mb_read(port, &args)[0].1.parse().expect("a float")
    };
    let mb_int = |port: u16, order: &[&str]| -> u64 {
        let mut args = vec!["-t", "3:int", "-r", "102"];
        args.extend_from_slice(order);
        mb_read(port, &args)[0].1.parse().expect("an int")
    };
    // mbpoll: -B = high word first; without it, low word first.
    let close = |x: f32| (x - score).abs() <= score.abs() * 1e-5;
    assert!(
        close(mb_float(a, &["-B"])),
        "high-first float {} vs {score}",
        mb_float(a, &["-B"])
    );
    assert!(
        close(mb_float(b, &[])),
        "low-first float {} vs {score}",
        mb_float(b, &[])
    );
    assert_eq!(mb_int(a, &["-B"]), acq);
    assert_eq!(mb_int(b, &[]), acq);
    for (port, order) in [(a, "big"), (b, "little")] {
        let r = pymodbus(python, port, &["read", "--word-order", order]);
        for kind in ["block", "holding"] {
            assert_eq!(r[kind]["acq_id"], acq, "{order} {kind}");
            assert_eq!(
                r[kind]["score_f32"].as_f64().unwrap() as f32,
                score,
                "{order} {kind}"
            );
            assert_eq!(r[kind]["seq"], latest["seq"], "{order} {kind}");
        }
    }
}

/// No request for plc_timeout: the first response after shows PlcWatchdogExpired, the daemon
/// hears plc_link_lost, and the request brings it back (plc_link_restored).
fn watchdog(a: u16, observer: &Observer, bridge: &Daemon) {
    std::thread::sleep(Duration::from_millis(PLC_TIMEOUT_MS * 3 / 2 + 200));
    let bits = mb_bits(a);
    assert!(bits[11], "PlcWatchdogExpired: {bits:?}");
    assert!(!bits[1], "TriggerReady off while expired");
    let after = mb_bits(a);
    assert!(!after[11] && after[1], "back on the request: {after:?}");
    let lost = observer.wait_for("plc_link_lost", |v| {
        v["event"] == "plc_link_lost" && v["source"] == "bridge-a"
    });
    assert_eq!(lost["type"], "status");
    observer.wait_for("plc_link_restored", |v| {
        v["event"] == "plc_link_restored" && v["source"] == "bridge-a"
    });
    assert!(bridge.stderr_so_far().contains("PLC watchdog expired"));
}

/// Results queued in the bridge from the first run, the daemon SIGKILLed, restarted, more
/// verdicts from the new run (some before the bridge is back): the PLC sees each exactly once.
fn daemon_restart(
    python: &Path,
    a: u16,
    tmp: &Path,
    config: &Path,
    socket: &Path,
    daemon: Daemon,
    observer: &mut Observer,
) {
    mb_write(a, &["-t", "0", "-r", "2"], &["1"]); // BufferResultsEnable
    let before = [observer.trigger(7001), observer.trigger(7002)];
    for acq in before {
        observer.verdict(acq);
    }
    let old_run = observer.wait_for("hello", |v| v["type"] == "hello")["run_id"].clone();
    daemon.signal(libc::SIGKILL);
    mb_wait_bit(a, 0, false, "Online off with the daemon gone");
    assert_eq!(mb_u(a, "3", 101), 1, "ErrorCode 1: daemon unreachable");
    let daemon = start_daemon(tmp, config);
    *observer = Observer::connect(&daemon, socket);
    let new_run = observer.wait_for("hello", |v| v["type"] == "hello")["run_id"].clone();
    assert_ne!(old_run, new_run);
    observer.trigger(7003);
    observer.trigger(7004);
    mb_wait_bit(a, 0, true, "Online again");
    let out = pymodbus(python, a, &["cycle", "--buffered", "--parts", "8001"]);
    let seen: Vec<(u64, String)> = out["cycles"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["part_id"].as_u64().unwrap(),
                r["run_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let parts: Vec<u64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(
        parts,
        [7001, 7002, 7003, 7004, 8001],
        "each result once, in order: {out}"
    );
    let new_run = new_run.as_str().unwrap();
    assert_eq!(seen[4].1, new_run, "RunId shows the new run");
    let last = &out["cycles"][0]["results"][4];
    assert_eq!(last["seq"], 3, "the new run's third verdict");
    daemon.signal(libc::SIGTERM);
    let done = daemon.wait(WAIT);
    done.assert_success();
}

/// The port passed by socket activation (`systemd-socket-activate`, as inspectord-modbus.socket
/// does it), served with no daemon: Online off, ErrorCode 1, writes of read-only registers
/// refused; a bad bridge config names its keys.
#[test]
fn a_socket_activated_bridge_without_a_daemon_says_why() {
    let tmp = common::temp_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = tmp.path().join("modbus.toml");
    let text = "[daemon]\nsocket = \"absent.sock\"\n\n[modbus]\nlisten = \"127.0.0.1:1\"\n";
    std::fs::write(&config, text).expect("write config");
    let mut sa = Command::new("systemd-socket-activate");
    sa.current_dir(tmp.path())
        .stdin(std::process::Stdio::null())
        .args(["-l", &format!("127.0.0.1:{port}")])
        .arg(common::bin())
        .args(["bridge", "modbus", "--config"])
        .arg(&config);
    let bridge = common::spawn(sa, LIMIT);
    let end = Instant::now() + WAIT;
    let bits = loop {
        match mbpoll(port, &["-t", "1", "-r", "0", "-c", "12"], &[]) {
            Ok(rows) => break rows,
            Err(e) => assert!(
                Instant::now() < end,
                "never served: {e}\n{}",
                bridge.stderr_so_far()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let bit = |i: usize| bits[i].1 == "1";
    assert!(
        !bit(0) && !bit(1) && bit(9),
        "not Online, not ready, Error: {bits:?}"
    );
    assert_eq!(mb_u(port, "3", 101), 1, "ErrorCode 1: daemon unreachable");
    assert_eq!(mb_u(port, "4", 101), 1, "the holding mirror");
    let err = mbpoll(port, &["-t", "4", "-r", "3"], &["1"]).expect_err("read-only");
    assert!(err.contains("Illegal data address"), "{err}");
    mb_write(port, &["-t", "4:int", "-B", "-r", "1"], &["123456"]);
    assert_eq!(mb_u(port, "4:int", 1), 123_456, "PartId is writable");
    // A trigger while the daemon is away is missed, and counted.
    mb_write(port, &["-t", "4", "-r", "0"], &["3"]); // TriggerEnable + Trigger in one write
    assert_eq!(
        mb_read(port, &["-t", "1", "-r", "3"])[0].1,
        "1",
        "MissedTrigger"
    );
    assert_eq!(mb_u(port, "3:int", 130), 1, "MissedTriggerCount");
    assert_eq!(mb_read(port, &["-t", "0", "-r", "0", "-c", "2"]).len(), 2);
    bridge.signal(libc::SIGTERM);
    let done = bridge.wait(WAIT);
    assert!(done.status.success(), "{}\n{}", done.status, done.stderr);
    assert!(
        done.stderr.contains("daemon unreachable"),
        "{}",
        done.stderr
    );
    assert!(
        !done.stderr.contains("127.0.0.1:1"),
        "the passed socket is used, not `listen`"
    );

    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[modbus]\nunit_id = 300\nword_order = \"middle\"\n").expect("write");
    let b = bad.to_str().expect("UTF-8");
    let out = common::run(
        common::command(tmp.path(), ["bridge", "modbus", "--config", b]),
        WAIT,
    );
    assert!(!out.status.success());
    for key in ["modbus.unit_id", "modbus.word_order"] {
        assert!(out.stderr.contains(key), "{key} not named:\n{}", out.stderr);
    }
}
