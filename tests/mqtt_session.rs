//! The gateway's MQTT session (`inspectord::gateway::mqtt`) against a real broker: a
//! `mosquitto` started per test on a free local port, driven by a small `mio` loop like the
//! gateway's. Checked: 10,000 QoS 1 publishes each get exactly one PUBACK and reach a
//! `mosquitto_sub` subscriber in order (the rate is printed); the will is published when the
//! socket drops without DISCONNECT and not after `disconnect()`; keep-alive holds an idle
//! session; a refusal and a killed broker end the session.

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inspectord::gateway::mqtt::{MqttError, MqttEvent, MqttSettings, Session, Will};
use mio::{Events, Poll, Token};

const WAIT: Duration = Duration::from_secs(20);
const TOKEN: Token = Token(3);

fn find_bin(name: &str) -> PathBuf {
    let dirs = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .collect::<Vec<_>>();
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: scripts/system-deps.sh installs it \
                 (apt-get install mosquitto mosquitto-clients)"
            )
        })
}

/// A mosquitto of its own, killed on drop; its log (subscriptions, connects) in a file.
struct Broker {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start(extra_conf: &str) -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\n\
                 log_type subscribe\nlog_type notice\nmax_queued_messages 20000\n{extra_conf}\n"
            ),
        )
        .unwrap();
        // The log goes to a file the test opened (mosquitto may drop root for its own user).
        let log = dir.path().join("mosquitto.log");
        let child = Command::new(find_bin("mosquitto"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let broker = Broker {
            child,
            port,
            log,
            _dir: dir,
        };
        let end = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    fn settings(&self, client_id: &str) -> MqttSettings {
        MqttSettings::new(format!("127.0.0.1:{}", self.port), client_id)
    }

    /// Waits until the broker's log has a line containing `needle`.
    fn wait_log(&self, needle: &str) {
        let end = Instant::now() + WAIT;
        loop {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < end,
                "no {needle:?} in mosquitto's log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `mosquitto_sub -i ID -q 1 -t TOPIC -C COUNT -v -W 60`, started and subscribed; its
    /// output goes to a file (a pipe read only at the end would fill and stall it).
    fn subscribe(&self, id: &str, topic: &str, count: usize) -> Subscriber {
        let out = self._dir.path().join(format!("{id}.out"));
        let child = Command::new(find_bin("mosquitto_sub"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-i",
                id,
                "-q",
                "1",
            ])
            .args(["-t", topic, "-C", &count.to_string(), "-v", "-W", "60"])
            .stdout(fs::File::create(&out).unwrap())
            .spawn()
            .unwrap();
        self.wait_log(&format!("{id} 1 {topic}"));
        Subscriber { child, out }
    }
}

struct Subscriber {
    child: Child,
    out: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a subscriber printed, once it has exited.
fn output(mut sub: Subscriber) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(90);
    while sub.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "mosquitto_sub did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = fs::read_to_string(&sub.out).unwrap();
    text.lines().map(str::to_string).collect()
}

/// The retained message on `topic` now.
fn retained(broker: &Broker, topic: &str) -> Vec<String> {
    let out = Command::new(find_bin("mosquitto_sub"))
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", topic, "-C", "1", "-v", "-W", "3", "--retained-only"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A session in a one-token `mio` loop, like the gateway's.
struct Client {
    poll: Poll,
    events: Events,
    session: Session,
}

impl Client {
    fn connect(settings: &MqttSettings) -> Client {
        let poll = Poll::new().unwrap();
        let session = Session::connect(settings, poll.registry(), TOKEN).unwrap();
        let mut c = Client {
            poll,
            events: Events::with_capacity(64),
            session,
        };
        let ev = c.pump_until(|e| !e.is_empty());
        assert!(
            matches!(ev[..], [MqttEvent::Connected { .. }]),
            "not connected: {ev:?}"
        );
        assert!(c.session.connected());
        c
    }

    /// One turn of the loop: waits for socket events or the session's deadline (at most
    /// `max`), handles them; the session's end (from `tick`) comes as `Closed` too.
    fn turn(&mut self, max: Duration) -> Vec<MqttEvent> {
        let now = Instant::now();
        let timeout = self
            .session
            .next_deadline()
            .map_or(max, |d| d.saturating_duration_since(now).min(max));
        self.poll.poll(&mut self.events, Some(timeout)).unwrap();
        let mut out = Vec::new();
        for e in self.events.iter() {
            assert_eq!(e.token(), TOKEN);
            out.extend(self.session.ready(self.poll.registry()));
        }
        if let Err(e) = self.session.tick(Instant::now()) {
            out.push(MqttEvent::Closed(e));
        }
        out
    }

    fn pump_until(&mut self, done: impl Fn(&[MqttEvent]) -> bool) -> Vec<MqttEvent> {
        let end = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while !done(&seen) {
            assert!(Instant::now() < end, "timed out; events so far: {seen:?}");
            seen.extend(self.turn(Duration::from_millis(100)));
        }
        seen
    }

    fn pump_for(&mut self, d: Duration) -> Vec<MqttEvent> {
        let end = Instant::now() + d;
        self.pump_until(|_| Instant::now() >= end)
    }

    /// Publishes QoS 1 and waits for its PUBACK.
    fn publish_acked(&mut self, topic: &str, payload: &[u8], retain: bool) {
        let pid = self.session.publish(topic, payload, true, retain).unwrap();
        let pid = pid.unwrap();
        let ev = self.pump_until(|e| !e.is_empty());
        assert!(
            matches!(ev[..], [MqttEvent::PubAck(p)] if p == pid),
            "{ev:?}"
        );
    }
}

#[test]
fn ten_thousand_qos1_publishes_are_each_acked_once_and_arrive_in_order() {
    const N: usize = 10_000;
    const WINDOW: usize = 64;
    let broker = Broker::start("allow_anonymous true");
    let sub = broker.subscribe("sub-all", "t/#", N);
    let mut c = Client::connect(&broker.settings("gw-bulk"));

    let mut pending: HashMap<u16, usize> = HashMap::new();
    let mut acked = vec![false; N];
    let (mut sent, mut done, mut max_buffered) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    while done < N {
        while sent < N && c.session.in_flight() < WINDOW {
            let pid = c
                .session
                .publish("t/seq", sent.to_string().as_bytes(), true, false)
                .unwrap()
                .unwrap();
            assert!(
                pending.insert(pid, sent).is_none(),
                "pid {pid} reused in flight"
            );
            sent += 1;
        }
        max_buffered = max_buffered.max(c.session.buffered());
        assert!(
            Instant::now() - started < Duration::from_secs(60),
            "stalled at {done}"
        );
        for e in c.turn(Duration::from_millis(100)) {
            match e {
                MqttEvent::PubAck(pid) => {
                    let i = pending
                        .remove(&pid)
                        .expect("PUBACK for a pid not in flight");
                    assert!(!acked[i], "message {i} acked twice");
                    acked[i] = true;
                    done += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(c.session.in_flight(), pending.len());
    }
    let elapsed = started.elapsed();
    assert!(acked.iter().all(|a| *a));
    eprintln!(
        "MQTT QoS 1 to local mosquitto: {N} messages, {WINDOW} in flight, {:.0} msgs/s \
         ({:.3} s; at most {max_buffered} bytes buffered)",
        N as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );

    let lines = output(sub);
    assert_eq!(lines.len(), N);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line, &format!("t/seq {i}"), "message {i} out of order");
    }
    assert!(c.session.disconnect(c.poll.registry()));
}

fn will_settings(broker: &Broker, id: &str) -> MqttSettings {
    let mut s = broker.settings(id);
    s.will = Some(Will {
        topic: "x/online".into(),
        payload: b"false".to_vec(),
        qos1: true,
        retain: true,
    });
    s
}

#[test]
fn the_will_is_published_on_a_dropped_socket_but_not_after_disconnect() {
    let broker = Broker::start("allow_anonymous true");

    // Dropped without DISCONNECT: the broker publishes the will over the retained `true`.
    let mut c = Client::connect(&will_settings(&broker, "gw-drop"));
    c.publish_acked("x/online", b"true", true);
    assert_eq!(retained(&broker, "x/online"), ["x/online true"]);
    drop(c);
    broker.wait_log("Client gw-drop closed its connection");
    let end = Instant::now() + WAIT;
    while retained(&broker, "x/online") != ["x/online false"] {
        assert!(Instant::now() < end, "the will was not published");
    }

    // Disconnected cleanly: the retained `true` stays.
    let mut c = Client::connect(&will_settings(&broker, "gw-clean"));
    c.publish_acked("x/online", b"true", true);
    assert!(c.session.disconnect(c.poll.registry()));
    assert!(!c.session.connected());
    broker.wait_log("Client gw-clean disconnected");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(retained(&broker, "x/online"), ["x/online true"]);
}

#[test]
fn keep_alive_holds_an_idle_session_and_a_killed_broker_closes_it() {
    let mut broker = Broker::start("allow_anonymous true");
    let mut s = broker.settings("gw-idle");
    s.keep_alive = Duration::from_secs(1);
    let mut c = Client::connect(&s);
    // Idle for 3.5 keep-alive periods: mosquitto drops a client silent for 1.5.
    assert!(c.pump_for(Duration::from_millis(3500)).is_empty());
    assert!(c.session.connected());
    assert_eq!(c.session.publish("t/q0", b"x", false, false).unwrap(), None);

    broker.child.kill().unwrap();
    broker.child.wait().unwrap();
    let ev = c.pump_until(|e| !e.is_empty());
    assert!(
        matches!(
            ev[..],
            [MqttEvent::Closed(
                MqttError::ClosedByBroker | MqttError::Io(_)
            )]
        ),
        "{ev:?}"
    );
    assert!(!c.session.connected());
    assert_eq!(c.session.next_deadline(), None);
}

#[test]
fn a_refusing_broker_ends_the_session_with_its_return_code() {
    let broker = Broker::start("allow_anonymous false");
    let poll = Poll::new().unwrap();
    let session = Session::connect(&broker.settings("gw-anon"), poll.registry(), TOKEN).unwrap();
    let mut c = Client {
        poll,
        events: Events::with_capacity(8),
        session,
    };
    let ev = c.pump_until(|e| !e.is_empty());
    assert!(
        matches!(ev[..], [MqttEvent::Closed(MqttError::Refused(5))]),
        "{ev:?}"
    );
}
