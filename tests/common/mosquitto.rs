//! A real MQTT broker (Debian's `mosquitto`) and a real subscriber (`mosquitto_sub`) for the
//! gateway's tests.
//!
//! * [`Mosquitto::start`] runs `/usr/sbin/mosquitto -c CONF` on a free port of 127.0.0.1 with
//!   anonymous access and persistence in the test's dir; [`Mosquitto::stop`] (SIGTERM: the broker
//!   saves its database) and [`Mosquitto::restart`] (same port, same database) simulate a broker
//!   outage without losing the sessions it held.
//! * [`MosquittoSub::start`] subscribes with a persistent session (`-c`, fixed client id, QoS 1):
//!   what is published while it is away (broker restarting) is queued for it by the broker.
//!   Checked on mosquitto 2.0.11: `mosquitto_sub` does not exit when the broker goes away, it
//!   reconnects by itself (about once a second) and re-subscribes; were it to exit anyway, the
//!   waits here restart it with the same client id.
//! * [`retained`] reads the retained message of one topic with a one-shot `mosquitto_sub`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{free_port, wait_for_port};
use super::proc::Proc;

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
pub const MOSQUITTO_SUB: &str = "/usr/bin/mosquitto_sub";

fn require(path: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: scripts/system-deps.sh installs it (apt-get install mosquitto mosquitto-clients)"
    );
}

/// A running mosquitto broker.
pub struct Mosquitto {
    port: u16,
    dir: PathBuf,
    conf: PathBuf,
    proc: Option<Proc>,
}

impl Mosquitto {
    /// Starts a broker with its config, database and log in `dir` (created); returns once its
    /// port accepts connections.
    pub fn start(dir: &Path) -> Mosquitto {
        require(MOSQUITTO);
        std::fs::create_dir_all(dir).expect("create broker dir");
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        let mut text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nlog_dest stderr\nlog_type all\n",
            dir.display()
        );
        // Started as root, mosquitto drops to user `mosquitto`, which cannot write the test's
        // database dir: stay the user we are.
        if unsafe { libc::geteuid() } == 0 {
            text += "user root\n";
        }
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let mut m = Mosquitto {
            port,
            dir: dir.to_path_buf(),
            conf,
            proc: None,
        };
        m.launch();
        m
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(MOSQUITTO);
        cmd.arg("-c").arg(&self.conf);
        let mut proc = Proc::spawn("mosquitto", cmd, &self.dir.join("mosquitto.log"));
        wait_for_port(self.port, Duration::from_secs(10), "mosquitto", || {
            proc.alive()
        });
        self.proc = Some(proc);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as the gateway's `mqtt.broker` takes it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.alive().is_ok())
    }

    /// SIGTERM and wait: the broker saves its sessions and queued messages and exits.
    pub fn stop(&mut self) {
        let mut proc = self.proc.take().expect("the broker is running");
        let status = proc.terminate(Duration::from_secs(10));
        assert!(
            status.success(),
            "mosquitto exited with {status}:\n{}",
            proc.log()
        );
    }

    /// Starts the broker again on the same port with the same database (stops it first if it is
    /// running).
    pub fn restart(&mut self) {
        if self.proc.is_some() {
            self.stop();
        }
        self.launch();
    }

    /// The broker's log (every run appends to the same file).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

/// One message a [`MosquittoSub`] received.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: String,
    /// The retain flag as delivered: set for a retained message sent on (re)subscribing, clear
    /// for one forwarded live.
    pub retained: bool,
    pub at: Instant,
}

static SUB_IDS: AtomicU32 = AtomicU32::new(0);

/// A `mosquitto_sub` with a persistent session, collecting what it prints.
pub struct MosquittoSub {
    port: u16,
    filter: String,
    id: String,
    child: Option<Child>,
    messages: Arc<Mutex<Vec<Message>>>,
    stderr: Arc<Mutex<String>>,
    restarts: u32,
}

impl MosquittoSub {
    /// Starts `mosquitto_sub` on `filter` at QoS 1 with a persistent session and a client id
    /// unique to this test process. Returns at once: [`MosquittoSub::wait_subscribed`] waits
    /// until the broker forwards to it.
    pub fn start(port: u16, filter: &str) -> MosquittoSub {
        require(MOSQUITTO_SUB);
        // At most 23 characters: the MQTT 3.1.1 limit every broker must accept.
        let id = format!(
            "isd{}s{}",
            std::process::id(),
            SUB_IDS.fetch_add(1, Ordering::SeqCst)
        );
        let mut s = MosquittoSub {
            port,
            filter: filter.to_string(),
            id,
            child: None,
            messages: Arc::new(Mutex::new(Vec::new())),
            stderr: Arc::new(Mutex::new(String::new())),
            restarts: 0,
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        // `-F '%r %t %p'`: the retain flag, the topic, the payload (what `-v` prints, plus the
        // flag); `-c -q 1 -i ID`: a persistent session the broker queues QoS 1 messages for.
        let mut child = Command::new(MOSQUITTO_SUB)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", &self.filter, "-q", "1", "-c", "-i", &self.id])
            .args(["-F", "%r %t %p"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mosquitto_sub");
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let messages = self.messages.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let (flag, rest) = line.split_once(' ').unwrap_or((&line, ""));
                let (topic, payload) = rest.split_once(' ').unwrap_or((rest, ""));
                messages.lock().unwrap().push(Message {
                    topic: topic.to_string(),
                    payload: payload.to_string(),
                    retained: flag == "1",
                    at: Instant::now(),
                });
            }
        });
        let stderr = self.stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = stderr.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        self.child = Some(child);
    }

    pub fn client_id(&self) -> &str {
        &self.id
    }

    /// How many times it had exited and was started again (0 with mosquitto 2.0: it reconnects
    /// by itself).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Starts it again with the same client id if it has exited.
    pub fn keep_running(&mut self) {
        let exited = self
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some());
        if exited {
            self.restarts += 1;
            self.launch();
        }
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// The messages received so far on `topic`.
    pub fn on(&self, topic: &str) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Waits until `pred` holds for the messages so far (restarting the subscriber if it exited);
    /// returns them. Panics after `timeout` naming `what` and the last messages.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Message]) -> bool,
    ) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.messages();
            if pred(&msgs) {
                return msgs;
            }
            if Instant::now() >= deadline {
                let last: Vec<String> = msgs
                    .iter()
                    .rev()
                    .take(10)
                    .map(|m| format!("{} {} (retained {})", m.topic, m.payload, m.retained))
                    .collect();
                panic!(
                    "mosquitto_sub ({} on {}) never saw {what} within {timeout:?}; {} messages, the last newest first:\n{}\nits stderr:\n{}",
                    self.id,
                    self.filter,
                    msgs.len(),
                    last.join("\n"),
                    self.stderr.lock().unwrap()
                );
            }
            self.keep_running();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the broker forwards to this subscriber: publishes a probe message (not
    /// retained) with `mosquitto_pub` on `probe_topic` (under the filter) until it comes back.
    pub fn wait_subscribed(&mut self, probe_topic: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let payload = format!("probe-{}", self.id);
        loop {
            let _ = Command::new("/usr/bin/mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-t", probe_topic, "-q", "1", "-m", &payload])
                .output();
            let seen = || {
                self.messages()
                    .iter()
                    .any(|m| m.topic == probe_topic && m.payload == payload)
            };
            if super::wait_until(Duration::from_millis(500), seen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto_sub did not subscribe within {timeout:?}: {}",
                self.stderr.lock().unwrap()
            );
        }
    }
}

impl Drop for MosquittoSub {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The retained message on `topic` (its payload), or `None` if the broker holds none: a one-shot
/// `mosquitto_sub --retained-only -C 1` that gives up after `wait_s` seconds.
pub fn retained(port: u16, topic: &str, wait_s: u32) -> Option<String> {
    require(MOSQUITTO_SUB);
    let out = Command::new(MOSQUITTO_SUB)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", topic, "-C", "1", "-W", &wait_s.max(1).to_string()])
        .args(["--retained-only", "-F", "%p"])
        .output()
        .expect("run mosquitto_sub");
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        Some(text.strip_suffix('\n').unwrap_or(&text).to_string())
    } else {
        None
    }
}

/// Polls [`retained`] until it returns `want`; panics after `timeout` with the last value.
pub fn wait_retained(port: u16, topic: &str, want: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < timeout {
        last = retained(port, topic, 1);
        if last.as_deref() == Some(want) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the retained message on {topic} is {last:?}, not {want:?}, after {timeout:?}");
}
