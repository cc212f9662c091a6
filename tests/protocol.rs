//! Protocol v2 of the verdict socket, with real clients against the real daemon replaying real
//! ELPV images: resuming with `subscribe` (no duplicates, no loss; a gap when retention is too
//! short), the commands and their replies, heartbeats, permissions of another user's client,
//! and bad input or a flood isolated to the client that sent it.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Artifacts, Daemon, TestConfig};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(120);

/// A looping replay of a few held-out images at `fps`, with `extra` TOML appended to
/// `[output]` and `tail` after the whole config.
struct Setup {
    tmp: tempfile::TempDir,
    socket: PathBuf,
    config: PathBuf,
}

fn setup(fps: f64, output_extra: &str, tail: &str) -> Setup {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    art.copy_heldout(&images, 2, 2);
    let socket = tmp.path().join("v.sock");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.fps = fps;
    cfg.looping = true;
    cfg.socket = Some(socket.clone());
    let text = cfg
        .to_toml()
        .replace("[output]\n", &format!("[output]\n{output_extra}\n"))
        + tail;
    let config = tmp.path().join("inspectord.toml");
    std::fs::write(&config, text).unwrap();
    Setup {
        tmp,
        socket,
        config,
    }
}

fn start(s: &Setup) -> Daemon {
    common::spawn(
        common::command(
            s.tmp.path(),
            ["replay".as_ref(), "--config".as_ref(), s.config.as_os_str()],
        ),
        LIMIT,
    )
}

/// The daemon's stdout verdicts (replay mode), by seq.
fn stdout_verdicts(stdout: &[String]) -> Vec<Value> {
    common::parse_json_lines(stdout)
        .into_iter()
        .filter(|v| v["type"] == "verdict")
        .collect()
}

/// A line-oriented client.
struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(daemon: &Daemon, path: &Path) -> Client {
        let stream = daemon.connect(path, LIMIT);
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// The next message; `None` at the end of the stream.
    fn next(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert!(line.ends_with('\n'), "a partial line: {line:?}");
                let message: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                common::assert_valid_message(&message);
                Some(message)
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
            Err(e) => panic!("reading the socket: {e}"),
        }
    }

    fn expect(&mut self) -> Value {
        self.next().expect("the daemon closed the connection")
    }

    /// Skips messages until one of type `ty`; returns it and the verdicts skipped.
    fn until(&mut self, ty: &str) -> (Value, Vec<Value>) {
        let mut verdicts = Vec::new();
        loop {
            let m = self.expect();
            if m["type"] == ty {
                return (m, verdicts);
            }
            if m["type"] == "verdict" {
                verdicts.push(m);
            }
        }
    }

    /// Sends a well-formed command: it must be valid against the committed commands schema.
    fn send(&mut self, command: Value) {
        common::assert_valid_command(&command);
        let mut line = command.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).unwrap();
    }
}

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {v}"))
}

#[test]
fn resume_after_a_reconnect_has_no_duplicates_and_no_loss() {
    let s = setup(40.0, "", "");
    let daemon = start(&s);
    // A v1-style reader: never sends, reads everything.
    let passive = daemon.connect(&s.socket, LIMIT);
    let passive = common::spawn_reader(passive, LIMIT);

    let mut a = Client::connect(&daemon, &s.socket);
    let hello = a.expect();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["v"], 2);
    assert_eq!(hello["protocols"], json!([1, 2]));
    assert_eq!(hello["trigger_mode"], "free-run");
    assert_eq!(hello["control"], true, "root may command: {hello}");
    let run_id = hello["run_id"].as_str().unwrap().to_string();
    assert_eq!(run_id.len(), 16);
    assert!(run_id.chars().all(|c| c.is_ascii_hexdigit()));
    let mut last = 0;
    for _ in 0..8 {
        let (v, _) = a.until("verdict");
        last = seq(&v);
    }
    drop(a);
    std::thread::sleep(Duration::from_millis(400)); // verdicts go by while disconnected

    let mut b = Client::connect(&daemon, &s.socket);
    let hello = b.expect();
    assert_eq!(hello["run_id"], run_id.as_str(), "same run, same run_id");
    assert!(seq(&hello) > last, "no verdict while away? {hello}");
    let retained = &hello["retained"];
    assert!(
        retained["from_seq"].as_u64().unwrap() <= last + 1,
        "{hello}"
    );
    b.send(json!({"type": "subscribe", "from_seq": last, "id": "r1"}));
    let (sub, _) = b.until("subscribed");
    assert_eq!(sub["id"], "r1");
    assert_eq!(sub["from_seq"], last);
    let to_seq = sub["to_seq"].as_u64().unwrap();
    assert!(to_seq > last);
    let mut expect = last + 1;
    while expect <= to_seq + 20 {
        let m = b.expect();
        match m["type"].as_str() {
            Some("verdict") => {
                assert_eq!(seq(&m), expect, "after subscribe: {m}");
                expect += 1;
            }
            Some("heartbeat") | Some("status") => {}
            other => panic!("unexpected {other:?} after subscribe: {m}"),
        }
    }
    drop(b);
    daemon.signal(libc::SIGTERM);
    let got = passive.join().unwrap();
    let done = daemon.wait(LIMIT);
    done.assert_success();
    // The passive v1-style reader got every verdict, in order, once.
    let lines = common::socket_lines(&got);
    let msgs = common::parse_json_lines(&lines);
    let verdicts: Vec<Value> = msgs
        .into_iter()
        .filter(|m| m["type"] == "verdict")
        .collect();
    verdicts.iter().for_each(common::assert_wire_verdict);
    common::assert_seq_contiguous(&verdicts);
    let emitted = stdout_verdicts(&done.stdout);
    assert_eq!(
        verdicts.last().map(seq),
        emitted.last().map(seq),
        "the passive reader missed the end"
    );
}

#[test]
fn a_from_seq_older_than_retention_gets_a_gap() {
    let s = setup(50.0, "retain = 5", "");
    let daemon = start(&s);
    let mut c = Client::connect(&daemon, &s.socket);
    c.expect();
    loop {
        let (v, _) = c.until("verdict");
        if seq(&v) >= 20 {
            break;
        }
    }
    c.send(json!({"type": "subscribe", "from_seq": 0, "id": 1}));
    let (sub, _) = c.until("subscribed");
    assert_eq!(
        (sub["id"].clone(), sub["from_seq"].clone()),
        (json!(1), json!(0))
    );
    let to_seq = sub["to_seq"].as_u64().unwrap();
    let gap = c.expect();
    assert_eq!(gap["type"], "gap", "{gap}");
    // Five lines retained, all verdicts (a replay has no status events): to_seq-4..=to_seq.
    assert_eq!(gap["from_seq"], 1);
    assert_eq!(gap["to_seq"], to_seq - 5, "{gap}");
    assert_eq!(gap["count"], to_seq - 5);
    let mut expect = to_seq - 4;
    while expect <= to_seq + 5 {
        let m = c.expect();
        if m["type"] == "verdict" {
            assert_eq!(seq(&m), expect, "{m}");
            expect += 1;
        }
    }
    // A status's snapshot says what is retained now.
    c.send(json!({"type": "status"}));
    let (snap, _) = c.until("snapshot");
    let r = &snap["retained"];
    assert_eq!(
        r["to_seq"].as_u64().unwrap() - r["from_seq"].as_u64().unwrap(),
        4,
        "{snap}"
    );
    drop(c);
    daemon.signal(libc::SIGTERM);
    daemon.wait(LIMIT).assert_success();
}

#[test]
fn commands_get_their_replies_and_heartbeats_count_what_was_emitted() {
    let s = setup(30.0, "heartbeat_ms = 200", "");
    let daemon = start(&s);
    let mut c = Client::connect(&daemon, &s.socket);
    let mut other = Client::connect(&daemon, &s.socket);
    let hello = c.expect();
    other.expect();

    c.send(json!({"type": "ping", "id": 7}));
    let (pong, _) = c.until("pong");
    assert_eq!(pong["id"], 7);
    assert!(pong["at"].as_str().unwrap().ends_with('Z'));
    c.send(json!({"type": "ping", "id": "x", "v": 2}));
    assert_eq!(c.until("pong").0["id"], "x");

    c.send(json!({"type": "trigger", "part_id": "p1", "id": 9}));
    let (missed, _) = c.until("trigger_missed");
    assert_eq!(missed["id"], 9);
    assert_eq!(missed["part_id"], "p1");
    assert_eq!(missed["reason"], "not in trigger mode");

    c.send(json!({"type": "ack", "seq": 3, "id": "a"}));
    let (acked, _) = c.until("acked");
    assert_eq!(
        (acked["id"].clone(), acked["seq"].clone()),
        (json!("a"), json!(3))
    );

    c.send(json!({"type": "report", "event": "plc_link_lost", "source": "bridge-test", "reason": "no request for 3 s", "id": 4}));
    let (reported, _) = c.until("reported");
    assert_eq!(reported["id"], 4);
    assert_eq!(reported["event"], "plc_link_lost");
    let (status, _) = other.until("status");
    assert_eq!(status["event"], "plc_link_lost");
    assert_eq!(status["source"], "bridge-test");
    assert_eq!(status["reason"], "no request for 3 s");

    c.send(json!({"type": "status", "id": 5}));
    let (snap, _) = c.until("snapshot");
    assert_eq!(snap["id"], 5);
    assert_eq!(snap["run_id"], hello["run_id"]);
    assert_eq!(snap["trigger_mode"], "free-run");
    assert_eq!(snap["camera"], "replay");
    assert_eq!(snap["model_sha256"], hello["model_sha256"]);
    assert_eq!(snap["reference_set"], hello["reference_set"]);
    assert!(snap["uptime_s"].as_f64().unwrap() > 0.0);
    assert!(snap["fps"].as_f64().unwrap() > 0.0, "{snap}");
    let counters = &snap["counters"];
    assert_eq!(counters["triggers"], 1);
    assert_eq!(counters["triggers_missed"], 1);
    assert_eq!(counters["clients"], 2);
    assert_eq!(counters["frames"], snap["seq"]);
    let clients = snap["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 2);
    let me = clients
        .iter()
        .find(|x| x["acked_seq"] == 3)
        .expect("my ack");
    assert_eq!(
        (me["uid"].clone(), me["control"].clone()),
        (json!(0), json!(true))
    );

    // Heartbeats: the counters are what went out on this very stream before them.
    let mut checked = 0;
    let mut last_seq = None;
    let mut beats = Vec::new();
    while checked < 3 {
        let m = c.expect();
        match m["type"].as_str() {
            Some("verdict") => last_seq = Some(seq(&m)),
            Some("heartbeat") => {
                if let Some(last) = last_seq {
                    assert_eq!(m["seq"], last, "{m}");
                    assert_eq!(m["counters"]["frames"], last, "{m}");
                    beats.push(m);
                    checked += 1;
                }
            }
            _ => {}
        }
    }
    drop((c, other));
    daemon.signal(libc::SIGTERM);
    let done = daemon.wait(LIMIT);
    done.assert_success();
    let emitted = stdout_verdicts(&done.stdout);
    for beat in beats {
        let upto = seq(&beat);
        for kind in ["pass", "fail", "error", "skipped"] {
            let n = emitted
                .iter()
                .filter(|v| seq(v) <= upto && v["verdict"] == kind)
                .count();
            assert_eq!(beat["counters"][kind], n, "{kind} in {beat}");
        }
    }
}

#[test]
fn another_users_client_may_read_but_not_command() {
    let s = setup(20.0, "socket_mode = 0o666", "");
    // The client runs as nobody: it must reach the socket through the test's directory.
    std::fs::set_permissions(
        s.tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let daemon = start(&s);
    drop(daemon.connect(&s.socket, LIMIT)); // serving
    let script = r#"
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
f = s.makefile("rwb")
def send(m):
    f.write((json.dumps(m) + "\n").encode()); f.flush()
out = [json.loads(f.readline())]
send({"type": "trigger", "part_id": "x", "id": 1})
send({"type": "report", "event": "plc_link_lost", "source": "evil", "id": 2})
send({"type": "ping", "id": 3})
while len(out) < 4:
    m = json.loads(f.readline())
    if m["type"] not in ("verdict", "heartbeat", "status"):
        out.append(m)
print(json.dumps(out))
"#;
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            // The system's interpreter: one under /root (pyenv) is out of nobody's reach.
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .arg(&s.socket)
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "client as nobody failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msgs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(msgs[0]["type"], "hello");
    assert_eq!(msgs[0]["control"], false, "{}", msgs[0]);
    for (m, id) in msgs[1..3].iter().zip([1, 2]) {
        assert_eq!(m["type"], "error", "{m}");
        assert_eq!(m["reason"], "not permitted");
        assert_eq!(m["id"], id);
    }
    assert_eq!(msgs[3]["type"], "pong");
    assert_eq!(msgs[3]["id"], 3);
    // Nothing was reported, and no trigger counted.
    let mut c = Client::connect(&daemon, &s.socket);
    c.send(json!({"type": "status"}));
    let (snap, _) = c.until("snapshot");
    assert_eq!(snap["counters"]["triggers"], 0, "{snap}");
    drop(c);
    daemon.signal(libc::SIGTERM);
    let done = daemon.wait(LIMIT);
    done.assert_success();
    assert!(!done.stderr.contains("evil"), "{}", done.stderr);
}

#[test]
fn bad_input_and_floods_stay_with_their_sender() {
    let s = setup(40.0, "", "\n[control]\ncommands_per_second = 20\n");
    let daemon = start(&s);
    let passive = common::spawn_reader(daemon.connect(&s.socket, LIMIT), LIMIT);

    // Malformed lines: an error each (with the id when readable); the connection stays.
    let mut m = Client::connect(&daemon, &s.socket);
    m.expect();
    m.writer
        .write_all(b"{not json\n{\"type\":\"fly\",\"id\":1}\n{\"type\":\"ack\",\"seq\":\"x\",\"id\":2}\n[]\n{\"type\":\"ping\",\"id\":3}\n")
        .unwrap();
    let mut errors = Vec::new();
    let pong = loop {
        let msg = m.expect();
        match msg["type"].as_str() {
            Some("error") => errors.push(msg),
            Some("pong") => break msg,
            _ => {}
        }
    };
    assert_eq!(pong["id"], 3);
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON")
    );
    assert!(errors[0].get("id").is_none());
    assert_eq!(errors[1]["id"], 1);
    assert!(
        errors[1]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown type")
    );
    assert_eq!(errors[2]["id"], 2);
    assert!(
        errors[2]["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid ack")
    );

    // A line over 64 KiB: "line too long", then the connection is closed.
    let mut long = Client::connect(&daemon, &s.socket);
    long.expect();
    long.writer.write_all(&vec![b'x'; 70 * 1024]).unwrap();
    let (err, _) = long.until("error");
    assert_eq!(err["reason"], "line too long");
    let deadline = Instant::now() + Duration::from_secs(20);
    while long.next().is_some() {
        assert!(Instant::now() < deadline, "still open after line too long");
    }

    // A flood: 1,200 pings at once; the burst (40) is answered, the rest refused, and the
    // client is closed at 1,000 refusals.
    let mut flood = Client::connect(&daemon, &s.socket);
    flood.expect();
    let pings: String = (0..1200)
        .map(|i| format!("{{\"type\":\"ping\",\"id\":{i}}}\n"))
        .collect();
    flood.writer.write_all(pings.as_bytes()).unwrap();
    let (mut pongs, mut limited) = (0, 0);
    while let Some(msg) = flood.next() {
        match msg["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert_eq!(msg["reason"], "rate limited", "{msg}");
                limited += 1;
            }
            _ => {}
        }
    }
    assert!((40..=60).contains(&pongs), "{pongs} pongs");
    assert_eq!(limited, 1000, "refused lines until closed");

    // Meanwhile the others were served: m still answers, the passive reader got everything.
    m.send(json!({"type": "ping", "id": "after"}));
    assert_eq!(m.until("pong").0["id"], "after");
    drop(m);
    daemon.signal(libc::SIGTERM);
    let got = passive.join().unwrap();
    let done = daemon.wait(LIMIT);
    done.assert_success();
    let lines = common::socket_lines(&got);
    let verdicts: Vec<Value> = common::parse_json_lines(&lines)
        .into_iter()
        .filter(|m| m["type"] == "verdict")
        .collect();
    common::assert_seq_contiguous(&verdicts);
    let emitted = stdout_verdicts(&done.stdout);
    assert_eq!(
        verdicts.len(),
        emitted.len(),
        "the passive reader missed verdicts"
    );
}

/// Trigger mode is not a config key yet (the `[source] trigger` key comes with the pipeline's
/// side), so this runs the library's pipeline in trigger mode behind a real socket, with the
/// real model and images: trigger → trigger_ack → exactly one verdict with that acq_id and
/// part_id; a trigger without control permission is refused.
#[test]
fn in_trigger_mode_a_trigger_is_acked_and_gets_exactly_one_verdict() {
    use inspectord::config::{ReplayConfig, ScoringConfig};
    use inspectord::encoder::Model;
    use inspectord::inspect::{Inspector, Scorer};
    use inspectord::pipeline::{self, Input, Pipeline, Signals, Triggering};
    use inspectord::preprocess::Preprocessor;
    use inspectord::references::ReferenceSet;
    use inspectord::sink::socket::SocketSink;
    use inspectord::socket::{self, ControlPolicy, RunInfo, SocketServer, SocketSettings};
    use inspectord::source::replay::ReplaySource;
    use inspectord::stop::StopSignal;
    use inspectord::wire::TriggerMode;
    use std::sync::Arc;

    let dir = common::temp_dir();
    let art = Artifacts::snapshot(dir.path());
    let images = dir.path().join("images");
    let names = art.copy_heldout(&images, 2, 2);
    let runtime = inspectord::onnxruntime::init(None).expect("ONNX Runtime");
    let model = Model::load(runtime, &art.model).unwrap();
    let set = ReferenceSet::load(
        &art.references,
        &model.sha256,
        &model.path,
        model.contract.embedding_dim,
    )
    .unwrap();
    let scorer = Scorer::new(set, &ScoringConfig::default()).unwrap();
    let path = dir.path().join("v.sock");
    let listener = socket::bind(&path, 0o660).unwrap();
    let (control_tx, control) = pipeline::control_channel();
    let run = RunInfo {
        trigger_mode: TriggerMode::Command,
        control: Some(control_tx),
        ..RunInfo::new(&model.sha256, &scorer.id)
    };
    let settings = SocketSettings::default();
    assert_eq!(settings.policy, ControlPolicy::new(vec![], vec![]));
    let (server, broadcaster) =
        SocketServer::new(listener, Some(path.clone()), run, settings).unwrap();
    let source = ReplaySource::new(&ReplayConfig {
        looping: true,
        ..ReplayConfig::of(images)
    })
    .unwrap();
    let stop = StopSignal::new();
    let p = Pipeline {
        source: Input::Frames(Box::new(source)),
        triggering: Triggering::Control,
        trigger_timeout: Duration::from_secs(1),
        overload: inspectord::config::Overload::Wait,
        control,
        inspectors: vec![Inspector::new(
            Preprocessor::new(model.contract.clone()),
            model.encoder(runtime, 1).unwrap(),
        )],
        scorer: pipeline::shared_scorer(scorer),
        model_sha256: Arc::from(model.sha256.as_str()),
        queue_depth: 4,
        sinks: vec![Box::new(SocketSink::new(broadcaster))],
        socket: Some(server),
        wait_clients: None,
        stop: stop.clone(),
        signals: Signals::Ignore,
        notifier: None,
        stall_timeout: Duration::from_secs(10),
    };
    let daemon = std::thread::spawn(move || pipeline::run(p));

    let stream = UnixStream::connect(&path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut c = Client {
        writer: stream.try_clone().unwrap(),
        reader: BufReader::new(stream),
    };
    let hello = c.expect();
    assert_eq!(hello["trigger_mode"], "command");
    assert_eq!(hello["control"], true);
    let mut acq_ids = Vec::new();
    for i in 0..5 {
        c.send(json!({"type": "trigger", "part_id": format!("P{i}"), "id": i}));
        let (ack, before) = c.until("trigger_ack");
        assert!(before.is_empty(), "a verdict before its ack: {before:?}");
        assert_eq!(ack["id"], i);
        assert_eq!(ack["part_id"], format!("P{i}"));
        let acq_id = ack["acq_id"].as_u64().unwrap();
        let (verdict, _) = c.until("verdict");
        assert_eq!(verdict["acq_id"], acq_id, "{verdict}");
        assert_eq!(verdict["part_id"], format!("P{i}"));
        assert_eq!(verdict["frame"], names[i as usize % names.len()].as_str());
        acq_ids.push(acq_id);
    }
    acq_ids.dedup();
    assert_eq!(acq_ids.len(), 5, "acquisition ids repeat");
    // No verdict without a trigger.
    c.writer
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    c.send(json!({"type": "status", "id": "s"}));
    let (snap, extra) = c.until("snapshot");
    assert!(extra.is_empty(), "verdicts without a trigger: {extra:?}");
    assert_eq!(snap["counters"]["triggers"], 5);
    assert_eq!(snap["counters"]["triggers_missed"], 0);
    assert_eq!(snap["counters"]["frames"], 5);
    std::thread::sleep(Duration::from_millis(700));
    c.send(json!({"type": "ping", "id": "last"}));
    let (_, extra) = c.until("pong");
    assert!(extra.is_empty(), "verdicts without a trigger: {extra:?}");
    stop.raise();
    drop(c);
    let tally = daemon.join().unwrap().unwrap();
    assert_eq!(tally.frames, 5);
}
