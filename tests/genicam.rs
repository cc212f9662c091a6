//! GenICam cameras through Aravis, against the real GigE Vision simulator
//! (`arv-fake-gv-camera-0.8 -i 127.0.0.1`, package aravis-tools) and the real model: frames become
//! verdicts on a real socket; killing the simulator is detected as `camera_lost` and restarting it
//! as `camera_restored`; repeated loss leaks no threads or file descriptors; `record` → `enroll`
//! → `replay` round-trips; a camera missing at start is picked up when it appears.
//!
//! The simulator binds fixed ports, so the tests take [`SIMULATOR`] one at a time.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{Artifacts, Daemon};
use serde_json::Value;

/// Serialises the tests: one simulator at a time.
static SIMULATOR: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    SIMULATOR.lock().unwrap_or_else(|p| p.into_inner())
}

const FRAME_TIMEOUT: Duration = Duration::from_millis(1000);
/// A daemon never lives longer than this (watchdog).
const DAEMON_LIMIT: Duration = Duration::from_secs(240);
/// Slack on top of the frame timeout for the loss to reach the socket.
const LOSS_SLACK: Duration = Duration::from_secs(2);
/// From restarting the simulator to `camera_restored` (backoff ≤ 500 ms, open, first frame).
const RESTORE_LIMIT: Duration = Duration::from_secs(15);

/// `arv-fake-gv-camera-0.8 -i 127.0.0.1`, killed when dropped.
struct Simulator(Child);

impl Simulator {
    fn start() -> Simulator {
        let child = Command::new("arv-fake-gv-camera-0.8")
            .args(["-i", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start arv-fake-gv-camera-0.8 (apt package aravis-tools; scripts/system-deps.sh)",
            );
        let sim = Simulator(child);
        // Ready once its GVCP port (3956) is bound on 127.0.0.1.
        assert!(
            common::wait_until(Duration::from_secs(10), gvcp_bound),
            "the simulator did not bind 127.0.0.1:3956 within 10 s"
        );
        sim
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether a UDP socket is bound to 127.0.0.1:3956 (GVCP).
fn gvcp_bound() -> bool {
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("0100007F:0F74"))
    })
}

fn camera_config(art: &Artifacts, dir: &Path, references: Option<&Path>) -> PathBuf {
    let path = |p: &Path| common::toml_str(p.to_str().unwrap());
    let toml = format!(
        r#"[source]
kind = "genicam"
device = "127.0.0.1"
width = 300
height = 300
frame_rate = 10.0
pixel_format = "mono8"
frame_timeout_ms = {}
open_timeout_ms = 5000
reconnect_initial_ms = 100
reconnect_max_ms = 500

[model]
path = {}

[references]
path = {}

[output]
socket = {}

[runtime]
workers = 2
"#,
        FRAME_TIMEOUT.as_millis(),
        path(&art.model),
        path(references.unwrap_or(&art.references)),
        path(&dir.join("v.sock")),
    );
    let config = dir.join("genicam.toml");
    std::fs::write(&config, toml).unwrap();
    config
}

fn start_daemon(dir: &Path, config: &Path) -> Daemon {
    common::spawn(
        common::command(
            dir,
            ["run".as_ref(), "--config".as_ref(), config.as_os_str()],
        ),
        DAEMON_LIMIT,
    )
}

/// Socket lines with their arrival time, read on a thread (the socket closes when the daemon
/// ends, so the thread never outlives it).
struct Lines {
    rx: Receiver<(Instant, Value)>,
}

impl Lines {
    fn connect(daemon: &Daemon, dir: &Path) -> Lines {
        let stream = daemon.connect(&dir.join("v.sock"), Duration::from_secs(60));
        Lines::read(stream)
    }

    /// Reads `stream` on a thread; the first line must be `hello`.
    fn read(stream: std::os::unix::net::UnixStream) -> Lines {
        stream.set_read_timeout(None).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
                common::assert_valid_message(&v);
                if tx.send((Instant::now(), v)).is_err() {
                    break;
                }
            }
        });
        let lines = Lines { rx };
        let (_, hello) = lines.next(Duration::from_secs(10)).expect("hello line");
        assert_eq!(hello["type"], "hello", "{hello}");
        lines
    }

    fn next(&self, timeout: Duration) -> Option<(Instant, Value)> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The first line matching `pred` within `timeout` (lines before it are checked verdicts or
    /// statuses and skipped); panics naming `what` when none comes.
    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        daemon: &Daemon,
        pred: impl Fn(&Value) -> bool,
    ) -> (Instant, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some((t, v)) => {
                    if v["type"] == "verdict" {
                        check_verdict(&v);
                    }
                    if pred(&v) {
                        return (t, v);
                    }
                }
                None => panic!(
                    "no {what} within {timeout:?}; daemon stderr:\n{}",
                    daemon.stderr_so_far()
                ),
            }
        }
    }

    /// `n` verdicts (checked) within `timeout`.
    fn verdicts(&self, n: usize, timeout: Duration, daemon: &Daemon) -> Vec<Value> {
        (0..n)
            .map(|_| self.wait_for("verdict", timeout, daemon, is_verdict).1)
            .collect()
    }
}

fn is_verdict(v: &Value) -> bool {
    v["type"] == "verdict"
}

fn is_status(event: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == "status" && v["event"] == event
}

/// A camera frame's verdict: complete, from `genicam`, and pass or fail (never error); in
/// trigger mode (it has an `acq_id`) also `skipped`, which the test itself checks.
fn check_verdict(v: &Value) {
    if v["verdict"] == "skipped" && v["acq_id"].is_u64() {
        common::assert_wire_verdict(v);
        return;
    }
    common::assert_wire_verdict(v);
    assert_eq!(v["source"], "genicam", "{v}");
    assert!(
        matches!(v["verdict"].as_str(), Some("pass" | "fail")),
        "a simulator frame must be inspected, not an error: {v}"
    );
}

fn threads_and_fds(pid: u32) -> (usize, usize) {
    let count = |what: &str| {
        std::fs::read_dir(format!("/proc/{pid}/{what}"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/{what}: {e}"))
            .count()
    };
    (count("task"), count("fd"))
}

/// Thread and fd counts once unchanged for `quiet` (abandoned captures tear down for seconds).
fn settled(pid: u32, quiet: Duration, limit: Duration) -> (usize, usize) {
    let deadline = Instant::now() + limit;
    let mut last = threads_and_fds(pid);
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = threads_and_fds(pid);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "thread/fd counts did not settle within {limit:?} (last {last:?})"
        );
    }
}

/// Kills the simulator, waits for `camera_lost`; returns the detection latency.
fn lose(sim: Simulator, lines: &Lines, daemon: &Daemon) -> Duration {
    drop(sim);
    let killed = Instant::now();
    let (t, v) = lines.wait_for(
        "camera_lost",
        FRAME_TIMEOUT + LOSS_SLACK,
        daemon,
        is_status("camera_lost"),
    );
    assert_eq!(v["source"], "genicam", "{v}");
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    t.duration_since(killed)
}

/// Starts the simulator, waits for `camera_restored` and a verdict after it; returns the
/// simulator and the restore latency.
fn restore(lines: &Lines, daemon: &Daemon) -> (Simulator, Duration) {
    let sim = Simulator::start();
    let started = Instant::now();
    let (t, v) = lines.wait_for(
        "camera_restored",
        RESTORE_LIMIT,
        daemon,
        is_status("camera_restored"),
    );
    assert_eq!(v["source"], "genicam", "{v}");
    lines.verdicts(1, Duration::from_secs(10), daemon);
    (sim, t.duration_since(started))
}

fn stop(daemon: Daemon) {
    daemon.signal(libc::SIGTERM);
    let finished = daemon.wait(Duration::from_secs(60));
    finished.assert_success();
}

#[test]
fn verdicts_flow_and_camera_loss_is_reported_and_recovered() {
    let _one = exclusive();
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let config = camera_config(&art, tmp.path(), None);
    let sim = Simulator::start();
    let daemon = start_daemon(tmp.path(), &config);
    let lines = Lines::connect(&daemon, tmp.path());

    let first = lines.verdicts(5, Duration::from_secs(30), &daemon);
    let seqs: Vec<u64> = first.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "seq {seqs:?}");

    let lost = lose(sim, &lines, &daemon);
    let (_sim, restored) = restore(&lines, &daemon);
    lines.verdicts(5, Duration::from_secs(10), &daemon);
    eprintln!("loss detected after {lost:?}; restored {restored:?} after the simulator started");
    assert!(lost <= FRAME_TIMEOUT + LOSS_SLACK);
    stop(daemon);
}

#[test]
fn repeated_camera_loss_leaks_no_threads_or_fds() {
    const CYCLES: usize = 20;
    let _one = exclusive();
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let config = camera_config(&art, tmp.path(), None);
    let sim = Simulator::start();
    let daemon = start_daemon(tmp.path(), &config);
    let lines = Lines::connect(&daemon, tmp.path());
    lines.verdicts(1, Duration::from_secs(30), &daemon);

    // Baseline: after a first loss and restore, so every lazily created pool (glib's worker
    // threads, Aravis' discovery sockets) already exists.
    lose(sim, &lines, &daemon);
    let (mut sim, _) = restore(&lines, &daemon);
    let settle_limit = Duration::from_secs(60);
    let baseline = settled(daemon.pid(), Duration::from_secs(3), settle_limit);

    let started = Instant::now();
    let (mut lost_max, mut restored_max) = (Duration::ZERO, Duration::ZERO);
    let mut peak = baseline;
    for _ in 0..CYCLES {
        lost_max = lost_max.max(lose(sim, &lines, &daemon));
        let now = threads_and_fds(daemon.pid());
        peak = (peak.0.max(now.0), peak.1.max(now.1));
        let (s, r) = restore(&lines, &daemon);
        sim = s;
        restored_max = restored_max.max(r);
    }
    let cycles = started.elapsed();
    lines.verdicts(3, Duration::from_secs(10), &daemon);
    let after = settled(daemon.pid(), Duration::from_secs(3), settle_limit);
    eprintln!(
        "{CYCLES} cycles in {cycles:?}; worst loss detection {lost_max:?}, worst restore {restored_max:?}; \
         threads/fds: baseline {baseline:?}, peak {peak:?}, after {after:?}"
    );
    assert_eq!(
        after, baseline,
        "(threads, fds) after {CYCLES} kill/restart cycles vs the baseline"
    );
    drop(sim);
    stop(daemon);
}

#[test]
fn recorded_frames_enrolled_then_replayed_all_pass() {
    const COUNT: usize = 12;
    let _one = exclusive();
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let config = camera_config(&art, tmp.path(), None);
    let frames = tmp.path().join("frames");
    let _sim = Simulator::start();

    let record = common::run(
        common::command(
            tmp.path(),
            [
                "record".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                "--out".as_ref(),
                frames.as_os_str(),
                "--count".as_ref(),
                COUNT.to_string().as_ref(),
            ],
        ),
        Duration::from_secs(60),
    );
    record.assert_success();
    let mut files: Vec<String> = std::fs::read_dir(&frames)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let expected: Vec<String> = (1..=COUNT).map(|i| format!("frame-{i:06}.png")).collect();
    assert_eq!(files, expected);
    for f in &files {
        let img = image::open(frames.join(f)).unwrap();
        assert_eq!((img.width(), img.height()), (300, 300), "{f}");
        assert_eq!(img.color(), image::ColorType::L8, "{f}");
    }

    let references = tmp.path().join("recorded.safetensors");
    let enroll = common::run(
        common::command(
            tmp.path(),
            [
                "enroll".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                "--images".as_ref(),
                frames.as_os_str(),
                "--out".as_ref(),
                references.as_os_str(),
            ],
        ),
        Duration::from_secs(120),
    );
    enroll.assert_success();

    let replay_config = tmp.path().join("replay");
    std::fs::create_dir_all(&replay_config).unwrap();
    let replay_config = camera_config(&art, &replay_config, Some(&references));
    let replay = common::run(
        common::command(
            tmp.path(),
            [
                "replay".as_ref(),
                "--config".as_ref(),
                replay_config.as_os_str(),
                "--images".as_ref(),
                frames.as_os_str(),
            ],
        ),
        Duration::from_secs(120),
    );
    replay.assert_success();
    let verdicts: Vec<Value> = common::parse_json_lines(&replay.stdout)
        .into_iter()
        .filter(is_verdict)
        .collect();
    assert_eq!(verdicts.len(), COUNT, "stderr:\n{}", replay.stderr);
    for v in &verdicts {
        common::assert_wire_verdict(v);
        assert_eq!(v["verdict"], "pass", "a frame is its own reference: {v}");
    }
}

#[test]
fn camera_missing_at_start_is_picked_up_when_it_appears() {
    let _one = exclusive();
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let config = camera_config(&art, tmp.path(), None);
    assert!(
        !gvcp_bound(),
        "a GigE Vision device already serves 127.0.0.1:3956"
    );
    let daemon = start_daemon(tmp.path(), &config);
    let lines = Lines::connect(&daemon, tmp.path());
    let (_, lost) = lines.wait_for(
        "camera_lost",
        Duration::from_secs(30),
        &daemon,
        is_status("camera_lost"),
    );
    assert!(
        lost["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{lost}"
    );
    // Still running without a camera, still retrying.
    std::thread::sleep(Duration::from_secs(1));
    assert!(daemon.try_status().is_none(), "{}", daemon.stderr_so_far());
    let (_sim, restored) = restore(&lines, &daemon);
    lines.verdicts(3, Duration::from_secs(10), &daemon);
    eprintln!("restored {restored:?} after the simulator started");
    stop(daemon);
}

/// What the in-process trigger-mode run saw: wire verdict lines, status events, trigger answers.
enum Seen {
    Verdict(Value),
    Status(inspectord::verdict::StatusKind),
    Answer(String, inspectord::pipeline::TriggerAnswer),
}

struct Collect(mpsc::Sender<Seen>);

impl inspectord::sink::Sink for Collect {
    fn name(&self) -> &'static str {
        "collect"
    }
    fn verdict(&mut self, r: &inspectord::sink::Ready<'_>) {
        let v: Value = serde_json::from_str(r.line).unwrap();
        let _ = self.0.send(Seen::Verdict(v));
    }
    fn status(&mut self, e: &inspectord::verdict::StatusEvent, _line: &std::sync::Arc<str>) {
        let _ = self.0.send(Seen::Status(e.kind));
    }
}

/// Trigger mode against the real simulator, in process (the socket's `trigger` command is
/// another branch's work; it only sends `Control::Trigger` into the same channel): the config
/// says `trigger = "command"` with `acquisition = "software-trigger"`, so each acknowledged
/// trigger fires one software trigger. Killing the simulator after some triggers: each
/// acknowledged trigger still gets exactly one verdict (`skipped` within the trigger timeout
/// plus slack), triggers while the camera is lost are missed ("camera lost"), and after a
/// restart triggers are taken again. Every verdict is counted against the acks.
#[test]
fn trigger_mode_simulator_killed_skips_acknowledged_triggers_and_misses_while_lost() {
    use inspectord::pipeline::{self, Control, Input, Pipeline, Signals, Trigger, TriggerAnswer};
    use inspectord::verdict::StatusKind;
    const TRIGGER_TIMEOUT: Duration = Duration::from_millis(1000);

    let _one = exclusive();
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let config = camera_config(&art, tmp.path(), None);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[source]\n",
        "[source]\ntrigger = \"command\"\ntrigger_timeout_ms = 1000\nacquisition = \"software-trigger\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let config = inspectord::config::Config::load(&config).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let (backend, supervision) = inspectord::source::camera_backend(&config.source).unwrap();
    assert_eq!(config.source.trigger().timeout, TRIGGER_TIMEOUT);

    let runtime = inspectord::onnxruntime::init(None).expect("ONNX Runtime");
    let model = inspectord::encoder::Model::load(runtime, &art.model).expect("model");
    let set = inspectord::references::ReferenceSet::load(
        &art.references,
        &model.sha256,
        &model.path,
        model.contract.embedding_dim,
    )
    .expect("references");
    let inspectors = (0..2)
        .map(|_| {
            inspectord::inspect::Inspector::new(
                inspectord::preprocess::Preprocessor::new(model.contract.clone()),
                model.encoder(runtime, 1).expect("session"),
            )
        })
        .collect();
    let scorer = inspectord::inspect::Scorer::new(set, &config.scoring).unwrap();
    let (tx, seen) = mpsc::channel();
    let (control_tx, control) = pipeline::control_channel();
    let stop = inspectord::stop::StopSignal::new();
    let p = Pipeline {
        source: Input::Camera {
            backend,
            supervision,
        },
        triggering: pipeline::Triggering::Control,
        trigger_timeout: TRIGGER_TIMEOUT,
        overload: config.runtime.overload,
        control,
        inspectors,
        scorer: pipeline::shared_scorer(scorer),
        model_sha256: std::sync::Arc::from(model.sha256.as_str()),
        queue_depth: 4,
        sinks: vec![Box::new(Collect(tx.clone()))],
        socket: None,
        wait_clients: None,
        stop: stop.clone(),
        signals: Signals::Ignore,
        notifier: None,
        stall_timeout: Duration::from_secs(10),
    };
    let sim = Simulator::start();
    let daemon = std::thread::spawn(move || pipeline::run(p));

    let acked = std::cell::RefCell::new(Vec::new());
    let mut verdicts: Vec<Value> = Vec::new();
    let mut statuses = Vec::new();
    // Sends a trigger and returns its answer; verdicts and statuses seen meanwhile are kept.
    let fire =
        |part: &str, verdicts: &mut Vec<Value>, statuses: &mut Vec<StatusKind>| -> TriggerAnswer {
            let tx = tx.clone();
            let name = part.to_string();
            let t = Trigger {
                part_id: Some(part.into()),
                answer: Box::new(move |a| {
                    let _ = tx.send(Seen::Answer(name, a));
                }),
            };
            control_tx.send(Control::Trigger(t)).unwrap();
            loop {
                match seen.recv_timeout(Duration::from_secs(30)) {
                    Ok(Seen::Answer(p, a)) => {
                        assert_eq!(p, part);
                        if let TriggerAnswer::Acked { acq_id } = a {
                            acked.borrow_mut().push(acq_id);
                        }
                        return a;
                    }
                    Ok(Seen::Verdict(v)) => verdicts.push(v),
                    Ok(Seen::Status(k)) => statuses.push(k),
                    Err(_) => panic!("no answer to {part}"),
                }
            }
        };
    // Collects until `pred` holds for what was seen, or panics after `limit`.
    let collect_until = |what: &str,
                         limit: Duration,
                         verdicts: &mut Vec<Value>,
                         statuses: &mut Vec<StatusKind>,
                         pred: &dyn Fn(&[Value], &[StatusKind]) -> bool| {
        let deadline = Instant::now() + limit;
        while !pred(verdicts, statuses) {
            match seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Seen::Verdict(v)) => verdicts.push(v),
                Ok(Seen::Status(k)) => statuses.push(k),
                Ok(Seen::Answer(p, a)) => panic!("an answer without a trigger: {p} {a:?}"),
                Err(_) => panic!("no {what} within {limit:?}: {verdicts:?} {statuses:?}"),
            }
        }
    };
    let inspected = |v: &Value| matches!(v["verdict"].as_str(), Some("pass" | "fail"));

    // Warm-up: the device opens (triggers meanwhile are missed, `camera opening`); triggers
    // until one frame is inspected (the first exposure of a fresh stream may be skipped).
    let started = Instant::now();
    let mut i = 0;
    while !verdicts.iter().any(inspected) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no inspected frame: {verdicts:?}"
        );
        i += 1;
        let a = fire(&format!("W{i}"), &mut verdicts, &mut statuses);
        if a == (TriggerAnswer::Missed {
            reason: "camera opening".into(),
        }) {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        assert!(matches!(a, TriggerAnswer::Acked { .. }), "{a:?}");
        let n = acked.borrow().len();
        collect_until(
            "warm-up verdict",
            TRIGGER_TIMEOUT + LOSS_SLACK,
            &mut verdicts,
            &mut statuses,
            &|v, _| v.len() >= n,
        );
    }
    // Steady: each trigger one inspected frame with its acquisition id and part id.
    for k in 1..=3 {
        let part = format!("S{k}");
        let a = fire(&part, &mut verdicts, &mut statuses);
        let TriggerAnswer::Acked { acq_id } = a else {
            panic!("{part}: {a:?}")
        };
        let n = acked.borrow().len();
        collect_until(
            "verdict",
            Duration::from_secs(10),
            &mut verdicts,
            &mut statuses,
            &|v, _| v.len() >= n,
        );
        let v = verdicts.last().unwrap();
        check_verdict(v);
        assert_eq!(
            (v["acq_id"].as_u64(), v["part_id"].as_str()),
            (Some(acq_id), Some(part.as_str())),
            "{v}"
        );
    }

    // The camera dies after an acknowledged trigger's read was asked for.
    drop(sim);
    let killed = Instant::now();
    let a = fire("K1", &mut verdicts, &mut statuses);
    let TriggerAnswer::Acked { acq_id } = a else {
        panic!("K1 right after the kill: {a:?}")
    };
    let n = acked.borrow().len();
    collect_until(
        "verdict for K1",
        TRIGGER_TIMEOUT + LOSS_SLACK,
        &mut verdicts,
        &mut statuses,
        &|v, _| v.len() >= n,
    );
    let v = verdicts.last().unwrap();
    common::assert_wire_verdict(v);
    assert_eq!(
        (v["verdict"].as_str(), v["acq_id"].as_u64()),
        (Some("skipped"), Some(acq_id)),
        "{v}"
    );
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("camera lost: ") || reason.starts_with("trigger timeout: "),
        "{v}"
    );
    eprintln!("K1 skipped after {:?}: {reason}", killed.elapsed());
    collect_until(
        "camera_lost",
        FRAME_TIMEOUT + LOSS_SLACK,
        &mut verdicts,
        &mut statuses,
        &|_, s| s.contains(&StatusKind::CameraLost),
    );
    // While lost: missed, no image.
    for k in 1..=3 {
        let a = fire(&format!("L{k}"), &mut verdicts, &mut statuses);
        assert_eq!(
            a,
            TriggerAnswer::Missed {
                reason: "camera lost".into()
            }
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Back: restored, and triggers are taken again.
    let _sim = Simulator::start();
    collect_until(
        "camera_restored",
        RESTORE_LIMIT,
        &mut verdicts,
        &mut statuses,
        &|_, s| s.contains(&StatusKind::CameraRestored),
    );
    let before = verdicts.len();
    let mut taken = false;
    let started = Instant::now();
    while !taken {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no inspected frame after restore"
        );
        let a = fire("R", &mut verdicts, &mut statuses);
        let n = acked.borrow().len();
        if matches!(a, TriggerAnswer::Acked { .. }) {
            collect_until(
                "verdict after restore",
                TRIGGER_TIMEOUT + LOSS_SLACK,
                &mut verdicts,
                &mut statuses,
                &|v, _| v.len() >= n,
            );
            taken = verdicts[before..].iter().any(inspected);
        }
    }

    std::thread::sleep(Duration::from_millis(500));
    stop.raise();
    let tally = daemon.join().unwrap().unwrap();
    drop(control_tx);
    while let Ok(s) = seen.try_recv() {
        if let Seen::Verdict(v) = s {
            verdicts.push(v);
        }
    }
    // Exactly one verdict per acknowledged trigger, in seq order without gaps.
    let acqs: Vec<u64> = verdicts
        .iter()
        .map(|v| v["acq_id"].as_u64().unwrap())
        .collect();
    let acked = acked.into_inner();
    assert_eq!(acqs, acked, "verdicts per acknowledged trigger");
    assert_eq!(acked, (1..=acked.len() as u64).collect::<Vec<_>>());
    common::assert_seq_contiguous(&verdicts);
    assert_eq!(tally.frames, acked.len() as u64);
    let skipped = verdicts
        .iter()
        .filter(|v| v["verdict"] == "skipped")
        .count();
    assert_eq!(tally.skipped, skipped as u64);
    assert!(skipped >= 1);
}

/// The whole fail-safe through the real daemon binary and a real socket client: in trigger mode
/// (`trigger = "command"`, the camera's software trigger), a trigger gets `trigger_ack` and one
/// verdict with its `acq_id` and `part_id`; with the camera process stopped (SIGSTOP: it keeps
/// its sockets but answers nothing), an acknowledged trigger gets a `skipped` verdict within the
/// trigger timeout (+ slack), and triggers while the camera is lost are missed; after SIGCONT the
/// camera is back and triggers are inspected again. One verdict per acknowledged trigger, always.
#[test]
fn socket_triggers_with_the_camera_stopped_are_skipped_within_the_timeout() {
    use std::io::Write;
    const TRIGGER_TIMEOUT: Duration = Duration::from_millis(1000);
    let _one = exclusive();
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let config = camera_config(&art, tmp.path(), None);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[source]\n",
        "[source]\ntrigger = \"command\"\ntrigger_timeout_ms = 1000\nacquisition = \"software-trigger\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let sim = Simulator::start();
    let daemon = start_daemon(tmp.path(), &config);
    let stream = daemon.connect(&tmp.path().join("v.sock"), Duration::from_secs(60));
    let mut writer = stream.try_clone().unwrap();
    let lines = Lines::read(stream);
    let mut acks = 0;
    let mut verdicts = 0;
    // Sends a trigger for `part`, returns its reply and, when acknowledged, its verdict with the
    // time from sending to the verdict.
    let mut trigger = |part: &str| -> (Value, Option<(Duration, Value)>) {
        let command = serde_json::json!({"type": "trigger", "part_id": part, "id": part});
        common::assert_valid_command(&command);
        let sent = Instant::now();
        writer.write_all(format!("{command}\n").as_bytes()).unwrap();
        let (_, reply) = lines.wait_for("trigger reply", Duration::from_secs(20), &daemon, |v| {
            matches!(v["type"].as_str(), Some("trigger_ack" | "trigger_missed")) && v["id"] == part
        });
        if reply["type"] != "trigger_ack" {
            assert_eq!(reply["part_id"], part, "{reply}");
            return (reply, None);
        }
        acks += 1;
        assert_eq!(
            reply["acq_id"], acks,
            "acquisition ids count up per run: {reply}"
        );
        let (at, verdict) = lines.wait_for(
            "the verdict of an acknowledged trigger",
            TRIGGER_TIMEOUT + LOSS_SLACK + Duration::from_secs(10),
            &daemon,
            |v| v["type"] == "verdict" && v["acq_id"] == reply["acq_id"],
        );
        verdicts += 1;
        assert_eq!(verdict["part_id"], part, "{verdict}");
        (reply, Some((at.duration_since(sent), verdict)))
    };

    // Warm-up: until the camera is open, triggers are missed (`camera opening`); the first
    // exposure of a fresh stream may still be skipped at its timeout.
    let started = Instant::now();
    for i in 1.. {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no frame inspected"
        );
        let (reply, verdict) = trigger(&format!("W{i}"));
        match verdict {
            Some((_, v)) if v["verdict"] != "skipped" => break,
            Some(_) => {}
            None => assert_eq!(reply["reason"], "camera opening", "{reply}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Camera up: each trigger inspected.
    for part in ["P1", "P2", "P3"] {
        let (_, verdict) = trigger(part);
        let (_, v) = verdict.expect("acknowledged while the camera runs");
        assert!(
            matches!(v["verdict"].as_str(), Some("pass" | "fail")),
            "{v}"
        );
    }
    // Camera stopped: the next acknowledged trigger is skipped within the timeout.
    // SAFETY: kill(2) on the simulator's own pid.
    assert_eq!(unsafe { libc::kill(sim.0.id() as i32, libc::SIGSTOP) }, 0);
    let (reply, verdict) = trigger("P4");
    assert_eq!(
        reply["type"], "trigger_ack",
        "the camera is not known lost yet: {reply}"
    );
    let (took, v) = verdict.unwrap();
    assert_eq!(v["verdict"], "skipped", "{v}");
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    assert!(v["score"].is_null(), "{v}");
    assert!(
        took <= TRIGGER_TIMEOUT + LOSS_SLACK,
        "skipped after {took:?}, timeout {TRIGGER_TIMEOUT:?}"
    );
    // While lost: missed with `camera lost` (no image); until the loss is noticed, acknowledged
    // and skipped. Never silent.
    let mut missed = false;
    for i in 5..12 {
        let (reply, verdict) = trigger(&format!("P{i}"));
        if reply["type"] == "trigger_missed" {
            assert_eq!(reply["reason"], "camera lost", "{reply}");
            missed = true;
            break;
        }
        assert_eq!(verdict.unwrap().1["verdict"], "skipped");
    }
    assert!(missed, "no trigger was missed while the camera was stopped");
    // Camera back.
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(sim.0.id() as i32, libc::SIGCONT) }, 0);
    lines.wait_for(
        "camera_restored",
        RESTORE_LIMIT,
        &daemon,
        is_status("camera_restored"),
    );
    let mut inspected = None;
    for i in 20..26 {
        let (_, verdict) = trigger(&format!("P{i}"));
        if let Some((_, v)) = verdict
            && v["verdict"] != "skipped"
        {
            inspected = Some(v);
            break;
        }
    }
    let v = inspected.expect("a trigger inspected after the camera came back");
    assert!(
        matches!(v["verdict"].as_str(), Some("pass" | "fail")),
        "{v}"
    );
    assert_eq!(acks, verdicts, "one verdict per acknowledged trigger");
    // Nothing more: no verdict without a trigger.
    assert!(
        lines
            .next(Duration::from_millis(1500))
            .is_none_or(|(_, v)| v["type"] != "verdict"),
        "a verdict without a trigger"
    );
    drop(sim);
    stop(daemon);
}
