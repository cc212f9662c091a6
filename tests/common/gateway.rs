//! `inspectord gateway` for the tests: its config, the process with its JSON log, HTTP requests
//! to it; the daemon's replay summary and JSON log; a protocol v2 client that triggers parts.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{self, Response};
use super::{Daemon, Finished, toml_str};

/// The `[mqtt]` section of a gateway config.
#[derive(Debug, Clone)]
pub struct MqttSection {
    /// `127.0.0.1:PORT`.
    pub broker: String,
    pub line: String,
    pub state_file: PathBuf,
    pub keep_alive_s: u64,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    /// `(max_inflight, outbox)`, when not the defaults.
    pub limits: Option<(usize, usize)>,
}

impl MqttSection {
    /// Fast reconnects and a short keep-alive, for tests.
    pub fn new(broker: &str, line: &str, state_file: &Path) -> MqttSection {
        MqttSection {
            broker: broker.to_string(),
            line: line.to_string(),
            state_file: state_file.to_path_buf(),
            keep_alive_s: 2,
            reconnect_initial_ms: 100,
            reconnect_max_ms: 500,
            limits: None,
        }
    }
}

/// A gateway config: listens on 127.0.0.1:0 (the real port comes from the log).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub socket: PathBuf,
    pub listen: String,
    pub failures_dir: Option<PathBuf>,
    pub mqtt: Option<MqttSection>,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    pub status_poll_ms: u64,
}

impl GatewayConfig {
    pub fn new(socket: &Path) -> GatewayConfig {
        GatewayConfig {
            socket: socket.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            failures_dir: None,
            mqtt: None,
            reconnect_initial_ms: 50,
            reconnect_max_ms: 500,
            status_poll_ms: 500,
        }
    }

    pub fn to_toml(&self) -> String {
        let path = |p: &Path| toml_str(p.to_str().expect("UTF-8 path"));
        let mut s = format!(
            "[daemon]\nsocket = {}\nreconnect_initial_ms = {}\nreconnect_max_ms = {}\nstatus_poll_ms = {}\n\n[http]\nlisten = {}\n",
            path(&self.socket),
            self.reconnect_initial_ms,
            self.reconnect_max_ms,
            self.status_poll_ms,
            toml_str(&self.listen),
        );
        if let Some(dir) = &self.failures_dir {
            s += &format!("failures_dir = {}\n", path(dir));
        }
        if let Some(m) = &self.mqtt {
            s += &format!(
                "\n[mqtt]\nbroker = {}\nline = {}\nstate_file = {}\nkeep_alive_s = {}\nreconnect_initial_ms = {}\nreconnect_max_ms = {}\n",
                toml_str(&m.broker),
                toml_str(&m.line),
                path(&m.state_file),
                m.keep_alive_s,
                m.reconnect_initial_ms,
                m.reconnect_max_ms,
            );
            if let Some((inflight, outbox)) = m.limits {
                s += &format!("max_inflight = {inflight}\noutbox = {outbox}\n");
            }
        }
        s
    }

    /// Writes the config to `path` and returns `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.to_toml()).expect("write gateway config");
        path.to_path_buf()
    }
}

/// The JSON log events (`--log-format json`) in some stderr text; other lines (the replay
/// summary) are left out.
pub fn log_events(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The message of a JSON log event (tracing-subscriber's `fields.message`, or a flattened one).
pub fn event_message(e: &Value) -> Option<&str> {
    e.pointer("/fields/message")
        .or_else(|| e.get("message"))
        .and_then(Value::as_str)
}

/// A field of a JSON log event.
pub fn event_field<'a>(e: &'a Value, name: &str) -> Option<&'a Value> {
    e.get("fields")
        .and_then(|f| f.get(name))
        .or_else(|| e.get(name))
}

/// A field as an integer (tracing writes `u64` as a number; accepts a string of digits too).
pub fn field_u64(e: &Value, name: &str) -> Option<u64> {
    let v = event_field(e, name)?;
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The counts of the replay summary (`N frames in … s (…): P pass, F fail, E error, S skipped`),
/// the last one in `stderr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub frames: u64,
    pub pass: u64,
    pub fail: u64,
    pub error: u64,
    pub skipped: u64,
}

pub fn parse_summary(stderr: &str) -> Summary {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains(" frames in ") && l.ends_with(" skipped"))
        .unwrap_or_else(|| panic!("no replay summary in the daemon's stderr:\n{stderr}"));
    let frames = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary line {line:?}"));
    let counts = line
        .rsplit_once("): ")
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("summary line {line:?}"));
    let mut s = Summary {
        frames,
        ..Summary::default()
    };
    for part in counts.split(", ") {
        let (n, what) = part
            .split_once(' ')
            .unwrap_or_else(|| panic!("summary line {line:?}"));
        let n: u64 = n
            .parse()
            .unwrap_or_else(|_| panic!("summary line {line:?}"));
        match what {
            "pass" => s.pass = n,
            "fail" => s.fail = n,
            "error" => s.error = n,
            "skipped" => s.skipped = n,
            other => panic!("summary line {line:?}: unknown count {other:?}"),
        }
    }
    assert_eq!(
        s.pass + s.fail + s.error + s.skipped,
        s.frames,
        "summary line {line:?}"
    );
    s
}

/// The daemon's `run_id`, from its JSON log ("verdict socket serving protocol v2").
pub fn daemon_run_id(daemon_stderr: &str) -> Option<String> {
    log_events(daemon_stderr)
        .iter()
        .find(|e| event_message(e) == Some("verdict socket serving protocol v2"))
        .and_then(|e| event_field(e, "run_id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Waits for the daemon's `run_id` in its JSON log.
pub fn wait_daemon_run_id(daemon: &Daemon, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(id) = daemon_run_id(&daemon.stderr_so_far()) {
            assert!(
                id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "run_id {id:?}"
            );
            return id;
        }
        assert!(
            Instant::now() < deadline && daemon.try_status().is_none(),
            "the daemon logged no run_id (is it run with --log-format json?):\n{}",
            daemon.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `inspectord --log-format json <args>` (the gateway and daemons whose log the tests read).
pub fn json_command(cwd: &Path, args: &[&std::ffi::OsStr]) -> std::process::Command {
    let mut all: Vec<&std::ffi::OsStr> = vec!["--log-format".as_ref(), "json".as_ref()];
    all.extend_from_slice(args);
    super::command(cwd, all)
}

/// A running `inspectord gateway`.
pub struct Gateway {
    proc: Option<Daemon>,
    addr: SocketAddr,
    config: PathBuf,
}

impl Gateway {
    /// `inspectord --log-format json gateway --config CONFIG` (run from the config's directory);
    /// returns once it logged "gateway listening", with the address from its `listen` field.
    pub fn start(config: &Path, limit: Duration) -> Gateway {
        let cwd = config.parent().expect("config in a directory");
        let proc = super::spawn(
            json_command(
                cwd,
                &["gateway".as_ref(), "--config".as_ref(), config.as_os_str()],
            ),
            limit,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let events = log_events(&proc.stderr_so_far());
            let listening = events
                .iter()
                .find(|e| event_message(e) == Some("gateway listening"));
            if let Some(e) = listening {
                let listen = event_field(e, "listen")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("\"gateway listening\" without `listen`: {e}"));
                break listen
                    .parse::<SocketAddr>()
                    .unwrap_or_else(|err| panic!("listen = {listen:?}: {err}"));
            }
            if let Some(status) = proc.try_status() {
                panic!("the gateway exited ({status}):\n{}", proc.stderr_so_far());
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not log \"gateway listening\" within 20 s:\n{}",
                proc.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Gateway {
            proc: Some(proc),
            addr,
            config: config.to_path_buf(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> &Path {
        &self.config
    }

    fn proc(&self) -> &Daemon {
        self.proc.as_ref().expect("the gateway is running")
    }

    pub fn stderr(&self) -> String {
        self.proc().stderr_so_far()
    }

    /// Its JSON log events so far.
    pub fn events(&self) -> Vec<Value> {
        log_events(&self.stderr())
    }

    /// Waits for a log event with `message` for which `pred` holds; returns it.
    pub fn wait_log(
        &self,
        message: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| event_message(e) == Some(message) && pred(e))
            {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not log {message:?} within {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET path` (HTTP/1.1, `Connection: close`).
    pub fn http_get(&self, path: &str) -> Response {
        http::get(self.addr, path)
    }

    /// Any method (the gateway answers GET and HEAD).
    pub fn http(&self, method: &str, path: &str) -> Response {
        http::request(self.addr, method, path, None, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.stderr()))
    }

    /// SIGKILL (no clean-up, no MQTT DISCONNECT: the broker publishes the Last Will).
    pub fn kill(&mut self) {
        let proc = self.proc.take().expect("the gateway is running");
        proc.signal(libc::SIGKILL);
        let done = proc.wait(Duration::from_secs(10));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&done.status),
            Some(libc::SIGKILL),
            "{}",
            done.stderr
        );
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(mut self) -> Finished {
        let proc = self.proc.take().expect("the gateway is running");
        proc.signal(libc::SIGTERM);
        proc.wait(Duration::from_secs(15))
    }
}

/// The daemon's config with `[source] trigger = "command"` (one image per trigger; a replay
/// without loop then stays up after its last image until stopped).
pub fn trigger_mode(toml: &str) -> String {
    assert!(toml.contains("kind = \"replay\"\n"), "{toml}");
    toml.replace(
        "kind = \"replay\"\n",
        "kind = \"replay\"\ntrigger = \"command\"\n",
    )
}

/// A protocol v2 client of the daemon: keeps every line it receives; triggers parts.
pub struct Observer {
    lines: Arc<Mutex<Vec<Value>>>,
    stream: UnixStream,
    next_id: u64,
}

impl Observer {
    /// Connects (retrying while the daemon starts) and waits for `hello`.
    pub fn connect(daemon: &Daemon, socket: &Path) -> Observer {
        let stream = daemon.connect(socket, Duration::from_secs(60));
        stream.set_read_timeout(None).expect("blocking reads");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (into, reader) = (lines.clone(), stream.try_clone().expect("clone"));
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("the daemon sent a non-JSON line ({e}): {line}"));
                into.lock().unwrap().push(v);
            }
        });
        let o = Observer {
            lines,
            stream,
            next_id: 1,
        };
        o.wait_for("hello", Duration::from_secs(20), |v| v["type"] == "hello");
        o
    }

    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// The verdicts received so far.
    pub fn verdicts(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| v["type"] == "verdict")
            .collect()
    }

    pub fn hello(&self) -> Value {
        self.lines()
            .into_iter()
            .find(|v| v["type"] == "hello")
            .expect("hello")
    }

    pub fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.lines().into_iter().find(|v| cond(v)) {
                return v;
            }
            if Instant::now() >= deadline {
                let lines = self.lines();
                let last: Vec<String> = lines.iter().rev().take(8).map(Value::to_string).collect();
                panic!(
                    "the daemon never sent {what}; the last lines, newest first:\n{}",
                    last.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Triggers one part and waits for its verdict (trigger mode).
    pub fn trigger_and_wait(&mut self, part: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let command = json!({"type": "trigger", "part_id": part, "id": id});
        super::assert_valid_command(&command);
        self.stream
            .write_all(format!("{command}\n").as_bytes())
            .expect("send trigger");
        let reply = self.wait_for("the trigger's reply", Duration::from_secs(20), |v| {
            v["id"] == id
        });
        assert_eq!(reply["type"], "trigger_ack", "trigger {part}: {reply}");
        let acq = reply["acq_id"].clone();
        self.wait_for(
            &format!("the verdict of acquisition {acq}"),
            Duration::from_secs(30),
            |v| v["type"] == "verdict" && v["acq_id"] == acq,
        )
    }
}

/// The tally of some verdicts, as the summary counts them.
pub fn tally(verdicts: &[Value]) -> Summary {
    let mut s = Summary::default();
    for v in verdicts {
        s.frames += 1;
        match v["verdict"].as_str() {
            Some("pass") => s.pass += 1,
            Some("fail") => s.fail += 1,
            Some("error") => s.error += 1,
            Some("skipped") => s.skipped += 1,
            _ => panic!("not a verdict: {v}"),
        }
    }
    s
}

/// Where the tests put their screenshots: `<target dir>/gateway-screenshots/` (the target dir
/// is the one holding the `inspectord` binary under test).
pub fn screenshot_dir() -> PathBuf {
    let target = super::bin()
        .parent()
        .and_then(Path::parent)
        .expect("the binary lies in <target>/<profile>/");
    let dir = target.join("gateway-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot dir");
    dir
}
