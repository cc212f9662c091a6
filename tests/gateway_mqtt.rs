//! `inspectord gateway` publishing to a real MQTT broker (Debian's mosquitto), watched by a real
//! subscriber (mosquitto_sub with a persistent QoS 1 session), while the real daemon replays
//! held-out ELPV images through the real model:
//!
//! (a) every verdict arrives on `inspectord/<line>/verdict` exactly once and in order, each the
//!     daemon's own verdict line with `"line"` and `"run_id"` put first; `online` is retained
//!     `true` while the daemon runs and the state file ends at `acked_seq` = N;
//! (b) the broker stopped mid-run and restarted 3 s later: every seq still arrives (duplicates
//!     only identical), and the daemon evicted nobody;
//! (c) the gateway SIGKILLed mid-run: the broker publishes its Last Will (`online` false); the
//!     restarted gateway resumes from the state file's `acked_seq` and every seq arrives;
//! (d) the daemon gone: `online` becomes retained `false`;
//! (e) the broker away longer than the gateway's outbox and the daemon's retention hold: the
//!     daemon is not slowed and evicts nobody, the gateway counts exactly the verdicts that are
//!     gone (a `gap` on the status topic, `inspectord_gateway_mqtt_lost_total`), and delivers
//!     every other one.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::gateway::{self, Gateway, GatewayConfig, MqttSection};
use common::mosquitto::{Message, Mosquitto, MosquittoSub, retained, wait_retained};
use common::{Artifacts, Daemon, Finished, TestConfig};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(20);

/// One line PC: images, the daemon's config, a broker, a subscriber and the gateway's config.
struct Line {
    tmp: tempfile::TempDir,
    daemon_config: PathBuf,
    broker: Mosquitto,
    sub: MosquittoSub,
    gateway_config: PathBuf,
    state_file: PathBuf,
    line: String,
    frames: usize,
}

impl Line {
    /// `n_good` + `n_defective` held-out images replayed at `fps` (0: as fast as possible).
    fn new(line: &str, n_good: usize, n_defective: usize, fps: f64) -> Line {
        let tmp = common::temp_dir();
        let art = Artifacts::snapshot(tmp.path());
        let images = tmp.path().join("images");
        let frames = art.copy_heldout(&images, n_good, n_defective).len();
        let socket = tmp.path().join("v.sock");
        let mut cfg = TestConfig::new(&art, &images);
        cfg.socket = Some(socket.clone());
        cfg.fps = fps;
        let daemon_config = cfg.write(&tmp.path().join("inspectord.toml"));
        let broker = Mosquitto::start(&tmp.path().join("broker"));
        let mut sub = MosquittoSub::start(broker.port(), &format!("inspectord/{line}/#"));
        sub.wait_subscribed(&format!("inspectord/{line}/probe"), WAIT);
        let state_file = tmp.path().join("gateway/mqtt.state");
        std::fs::create_dir_all(state_file.parent().unwrap()).unwrap();
        let mut g = GatewayConfig::new(&socket);
        g.mqtt = Some(MqttSection::new(&broker.addr(), line, &state_file));
        let gateway_config = g.write(&tmp.path().join("gateway.toml"));
        Line {
            tmp,
            daemon_config,
            broker,
            sub,
            gateway_config,
            state_file,
            line: line.to_string(),
            frames,
        }
    }

    fn topic(&self, what: &str) -> String {
        format!("inspectord/{}/{what}", self.line)
    }

    /// `inspectord --log-format json replay --wait-clients 2` (the gateway's live and delivery
    /// connections).
    fn start_daemon(&self) -> Daemon {
        common::spawn(
            gateway::json_command(
                self.tmp.path(),
                &[
                    "replay".as_ref(),
                    "--config".as_ref(),
                    self.daemon_config.as_os_str(),
                    "--wait-clients".as_ref(),
                    "2".as_ref(),
                ],
            ),
            LIMIT,
        )
    }

    fn start_gateway(&self) -> Gateway {
        Gateway::start(&self.gateway_config, LIMIT)
    }

    /// The state file: (run_id, acked_seq).
    fn state(&self) -> Option<(String, u64)> {
        let text = std::fs::read_to_string(&self.state_file).ok()?;
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the state file is not JSON ({e}): {text:?}"));
        Some((
            v["run_id"].as_str().expect("state run_id").to_string(),
            v["acked_seq"].as_u64().expect("state acked_seq"),
        ))
    }

    /// Waits for the verdict of every seq 1..=frames on the verdict topic; returns the
    /// messages by seq (every copy).
    fn wait_every_seq(&mut self, timeout: Duration) -> BTreeMap<u64, Vec<String>> {
        let topic = self.topic("verdict");
        let n = self.frames as u64;
        let msgs = self
            .sub
            .wait_for(&format!("every seq 1..={n} on {topic}"), timeout, |m| {
                by_seq(m, &topic).len() as u64 == n
                    && by_seq(m, &topic).keys().all(|s| (1..=n).contains(s))
            });
        by_seq(&msgs, &topic)
    }
}

fn by_seq(msgs: &[Message], topic: &str) -> BTreeMap<u64, Vec<String>> {
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for m in msgs.iter().filter(|m| m.topic == topic) {
        let v: Value = serde_json::from_str(&m.payload)
            .unwrap_or_else(|e| panic!("a verdict payload that is not JSON ({e}): {}", m.payload));
        let seq = v["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq: {}", m.payload));
        out.entry(seq).or_default().push(m.payload.clone());
    }
    out
}

/// The payload the gateway must publish for one of the daemon's verdict lines.
fn expected_payload(daemon_line: &str, line: &str, run_id: &str) -> String {
    let rest = daemon_line
        .strip_prefix('{')
        .unwrap_or_else(|| panic!("not a JSON object line: {daemon_line}"));
    format!("{{\"line\":\"{line}\",\"run_id\":\"{run_id}\",{rest}")
}

/// The daemon's verdict lines (stdout), checked against the protocol.
fn daemon_verdicts(done: &Finished) -> Vec<String> {
    let lines: Vec<String> = done
        .stdout
        .iter()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["type"] == "verdict"))
        .cloned()
        .collect();
    let parsed = common::parse_json_lines(&lines);
    parsed.iter().for_each(common::assert_wire_verdict);
    common::assert_seq_contiguous(&parsed);
    lines
}

/// Every seq arrived; the copies of one seq are identical and each is the daemon's line.
fn assert_every_seq(got: &BTreeMap<u64, Vec<String>>, daemon: &[String], line: &str, run_id: &str) {
    assert_eq!(
        got.len(),
        daemon.len(),
        "verdicts on the broker: seqs {:?}",
        got.keys()
    );
    for (i, daemon_line) in daemon.iter().enumerate() {
        let seq = i as u64 + 1;
        let want = expected_payload(daemon_line, line, run_id);
        let copies = got
            .get(&seq)
            .unwrap_or_else(|| panic!("seq {seq} never arrived"));
        for c in copies {
            assert_eq!(c, &want, "seq {seq} (one of {} copies)", copies.len());
        }
    }
}

fn assert_no_eviction(done: &Finished) {
    assert!(
        !done
            .stderr
            .contains("slow verdict clients were disconnected")
            && !done.stderr.contains("evicted_total"),
        "the daemon evicted a client:\n{}",
        done.stderr
    );
}

#[test]
fn every_verdict_arrives_once_in_order_and_online_follows_the_daemon() {
    // 12 frames at 5 fps: about 2.4 s of replay once the gateway is connected.
    let mut l = Line::new("line-a", 8, 4, 5.0);
    let daemon = l.start_daemon();
    let gw = l.start_gateway();
    let run_id = gateway::wait_daemon_run_id(&daemon, WAIT);
    // (a) online, retained, while the daemon runs.
    wait_retained(
        l.broker.port(),
        &l.topic("online"),
        "true",
        Duration::from_secs(10),
    );
    assert!(
        daemon.try_status().is_none(),
        "the replay ended before `online` was true: slow machine? (raise the frame count)"
    );
    let done = daemon.wait(LIMIT);
    done.assert_success();
    let daemon_lines = daemon_verdicts(&done);
    assert_eq!(daemon_lines.len(), l.frames);

    let got = l.wait_every_seq(WAIT);
    // Exactly once, in order: nothing more arrives.
    std::thread::sleep(Duration::from_secs(1));
    let topic = l.topic("verdict");
    let payloads: Vec<String> = l.sub.on(&topic).into_iter().map(|m| m.payload).collect();
    let want: Vec<String> = daemon_lines
        .iter()
        .map(|d| expected_payload(d, &l.line, &run_id))
        .collect();
    assert_eq!(payloads, want, "the verdict topic, in order, once each");
    assert!(got.values().all(|c| c.len() == 1));
    assert!(
        l.sub.on(&topic).iter().all(|m| !m.retained),
        "verdicts are not retained"
    );

    // The heartbeat: the daemon's, with the gateway's delivery state; retained.
    let beats = l.sub.on(&l.topic("heartbeat"));
    assert!(!beats.is_empty(), "no heartbeat published");
    for b in &beats {
        let v: Value = serde_json::from_str(&b.payload).expect("heartbeat JSON");
        assert_eq!(v["type"], "heartbeat", "{}", b.payload);
        assert!(
            v["gateway"]["acked_seq"].as_u64().is_some(),
            "{}",
            b.payload
        );
        assert!(v["gateway"]["outbox"].as_u64().is_some(), "{}", b.payload);
    }
    assert!(
        retained(l.broker.port(), &l.topic("heartbeat"), 2).is_some(),
        "heartbeat retained"
    );

    // The state file: every verdict acknowledged by the broker, so acked up to N.
    let n = l.frames as u64;
    let acked = common::wait_until(Duration::from_secs(10), || {
        l.state() == Some((run_id.clone(), n))
    });
    assert!(acked, "state file {:?}, want ({run_id}, {n})", l.state());

    // (d) The daemon is gone: online false, retained.
    wait_retained(
        l.broker.port(),
        &l.topic("online"),
        "false",
        Duration::from_secs(8),
    );
    let online: Vec<String> = l
        .sub
        .on(&l.topic("online"))
        .into_iter()
        .map(|m| m.payload)
        .collect();
    // `false` first only if the gateway looked before the daemon's socket was there; then
    // `true` while the daemon ran, and `false` once it had gone.
    let first_true = online.iter().position(|p| p == "true");
    assert!(
        first_true.is_some_and(|i| online[..i].iter().all(|p| p == "false")),
        "online: {online:?}"
    );
    assert_eq!(
        online.last().map(String::as_str),
        Some("false"),
        "online: {online:?}"
    );
    assert_no_eviction(&done);
    let stopped = gw.terminate();
    assert!(
        stopped.status.success(),
        "gateway: {}\n{}",
        stopped.status,
        stopped.stderr
    );
}

#[test]
fn a_broker_restart_loses_no_verdict() {
    // 30 frames at 6 fps: 5 s, the broker away for 3 s of it.
    let mut l = Line::new("line-b", 22, 8, 6.0);
    let daemon = l.start_daemon();
    let gw = l.start_gateway();
    let run_id = gateway::wait_daemon_run_id(&daemon, WAIT);
    let topic = l.topic("verdict");
    l.sub.wait_for("the first 6 verdicts", WAIT, |m| {
        by_seq(m, &topic).len() >= 6
    });
    l.broker.stop();
    let stopped_at = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        daemon.try_status().is_none(),
        "the replay ended while the broker was away: it must outlast the outage"
    );
    l.broker.restart();
    eprintln!("broker away for {:?}", stopped_at.elapsed());
    let done = daemon.wait(LIMIT);
    done.assert_success();
    let daemon_lines = daemon_verdicts(&done);
    let got = l.wait_every_seq(WAIT);
    assert_every_seq(&got, &daemon_lines, &l.line, &run_id);
    assert_no_eviction(&done);
    let n = l.frames as u64;
    assert!(
        common::wait_until(Duration::from_secs(10), || l.state()
            == Some((run_id.clone(), n))),
        "state file {:?}, want ({run_id}, {n})",
        l.state()
    );
    drop(gw);
}

#[test]
fn a_killed_gateway_resumes_from_its_acked_seq() {
    // 36 frames at 6 fps: 6 s; the gateway is away for a moment of it.
    let mut l = Line::new("line-c", 26, 10, 6.0);
    let daemon = l.start_daemon();
    let mut gw = l.start_gateway();
    let run_id = gateway::wait_daemon_run_id(&daemon, WAIT);
    let topic = l.topic("verdict");
    let online = l.topic("online");
    l.sub.wait_for("the first 8 verdicts", WAIT, |m| {
        by_seq(m, &topic).len() >= 8
    });
    // Taken before the kill: the broker may publish the will before kill() returns.
    let killed_at = Instant::now();
    gw.kill();
    // The Last Will: `false`, published by the broker (to the live subscriber, and retained).
    l.sub.wait_for(
        "online false (the Last Will)",
        Duration::from_secs(6),
        |m| {
            m.iter()
                .any(|m| m.topic == online && m.payload == "false" && m.at > killed_at)
        },
    );
    assert_eq!(
        retained(l.broker.port(), &online, 2).as_deref(),
        Some("false")
    );
    let (state_run, acked) = l.state().expect("the killed gateway left its state file");
    assert_eq!(state_run, run_id);
    assert!(acked >= 1, "nothing acknowledged before the kill");
    assert!(
        daemon.try_status().is_none(),
        "the replay ended while the gateway was away: it must outlast the kill"
    );

    let restarted_at = Instant::now();
    let gw = l.start_gateway();
    let e = gw.wait_log("delivery subscribed", WAIT, |_| true);
    assert_eq!(
        gateway::field_u64(&e, "from_seq"),
        Some(acked),
        "resumes from the state file's acked_seq: {e}"
    );
    assert_eq!(
        gateway::event_field(&e, "run_id").and_then(Value::as_str),
        Some(run_id.as_str()),
        "{e}"
    );
    let done = daemon.wait(LIMIT);
    done.assert_success();
    let daemon_lines = daemon_verdicts(&done);
    let got = l.wait_every_seq(WAIT);
    assert_every_seq(&got, &daemon_lines, &l.line, &run_id);
    assert_no_eviction(&done);
    // Online again after the restart (then false once the replay ended).
    let msgs = l.sub.messages();
    assert!(
        msgs.iter()
            .any(|m| m.topic == online && m.payload == "true" && m.at > restarted_at),
        "the restarted gateway published online true"
    );
    drop(gw);
}

#[test]
fn a_broker_away_longer_than_the_retention_costs_only_counted_verdicts() {
    // 60 frames at 15 fps: 4 s. The gateway holds 6 verdicts, the daemon retains 10: a broker
    // away for 2 s (30 frames) loses some, and only those are lost.
    let mut l = Line::new("line-e", 45, 15, 15.0);
    let toml = std::fs::read_to_string(&l.daemon_config).unwrap();
    std::fs::write(
        &l.daemon_config,
        toml.replace("[output]\n", "[output]\nretain = 10\n"),
    )
    .unwrap();
    let mut g = GatewayConfig::new(&l.tmp.path().join("v.sock"));
    let mut m = MqttSection::new(&l.broker.addr(), &l.line, &l.state_file);
    m.limits = Some((2, 6));
    g.mqtt = Some(m);
    g.write(&l.gateway_config);
    let daemon = l.start_daemon();
    let gw = l.start_gateway();
    let run_id = gateway::wait_daemon_run_id(&daemon, WAIT);
    let topic = l.topic("verdict");
    l.sub.wait_for("the first 3 verdicts", WAIT, |m| {
        by_seq(m, &topic).len() >= 3
    });
    l.broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        daemon.try_status().is_none(),
        "the replay ended while the broker was away: it must outlast the outage"
    );
    l.broker.restart();
    let done = daemon.wait(LIMIT);
    done.assert_success();
    assert_no_eviction(&done);
    let daemon_lines = daemon_verdicts(&done);
    let n = daemon_lines.len() as u64;

    // The gap: published on the status topic, with the line and run.
    let status = l.topic("status");
    let msgs = l.sub.wait_for("a gap on the status topic", WAIT, |m| {
        m.iter()
            .any(|m| m.topic == status && m.payload.contains("\"type\":\"gap\""))
    });
    let gaps: Vec<Value> = msgs
        .iter()
        .filter(|m| m.topic == status)
        .filter_map(|m| serde_json::from_str::<Value>(&m.payload).ok())
        .filter(|v| v["type"] == "gap")
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    let (from, to, count) = (
        gaps[0]["from_seq"].as_u64().unwrap(),
        gaps[0]["to_seq"].as_u64().unwrap(),
        gaps[0]["count"].as_u64().unwrap(),
    );
    assert_eq!(
        (gaps[0]["line"].as_str(), gaps[0]["run_id"].as_str()),
        (Some("line-e"), Some(run_id.as_str()))
    );
    assert_eq!(count, to - from + 1);
    assert!(count > 0 && to < n, "gap {from}..={to} of {n}");

    // Every verdict but the gap's arrives, each the daemon's line; the gap's never do.
    let got = l.sub.wait_for("every verdict outside the gap", WAIT, |m| {
        by_seq(m, &topic).len() as u64 == n - count
    });
    let got = by_seq(&got, &topic);
    for (i, daemon_line) in daemon_lines.iter().enumerate() {
        let seq = i as u64 + 1;
        let in_gap = (from..=to).contains(&seq);
        match got.get(&seq) {
            Some(copies) => {
                assert!(!in_gap, "seq {seq} in the gap arrived");
                let want = expected_payload(daemon_line, &l.line, &run_id);
                assert!(copies.iter().all(|c| c == &want), "seq {seq}");
            }
            None => assert!(
                in_gap,
                "seq {seq} outside the gap {from}..={to} never arrived"
            ),
        }
    }

    // The gateway counted exactly those, and the daemon was told everything else.
    let metrics = gw.http_get("/metrics").text();
    let lost = metrics
        .lines()
        .find_map(|l| l.strip_prefix("inspectord_gateway_mqtt_lost_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(lost, Some(count as f64), "{metrics}");
    assert!(
        common::wait_until(Duration::from_secs(10), || l.state()
            == Some((run_id.clone(), n))),
        "state file {:?}, want ({run_id}, {n})",
        l.state()
    );
    drop(gw);
}
