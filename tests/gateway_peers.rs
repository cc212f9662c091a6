//! The third-party peers the gateway's tests rely on, checked on their own (no gateway): when a
//! gateway test fails, this says whether the peers still behave as those tests assume.
//!
//! * mosquitto + mosquitto_sub: a persistent QoS 1 session gets what was published while the
//!   broker was stopped (SIGTERM, database saved) and restarted, including messages published
//!   before the subscriber reconnected; retained messages are read back.
//! * headless chromium through chromedriver: navigate, find, text, script, screenshot, and the
//!   console log with a SEVERE entry for `console.error`.
//! * promtool accepts a valid exposition and rejects one without HELP.

mod common;

use std::process::Command;
use std::time::Duration;

use common::mosquitto::{Mosquitto, MosquittoSub, retained, wait_retained};
use common::webdriver::ChromeDriver;

fn publish(port: u16, topic: &str, payload: &str, retain: bool) {
    let mut cmd = Command::new("/usr/bin/mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", topic, "-q", "1", "-m", payload]);
    if retain {
        cmd.arg("-r");
    }
    let out = cmd.output().expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_persistent_subscriber_gets_everything_across_a_broker_restart() {
    let tmp = common::temp_dir();
    let mut broker = Mosquitto::start(&tmp.path().join("broker"));
    let port = broker.port();
    let mut sub = MosquittoSub::start(port, "t/#");
    sub.wait_subscribed("t/probe", Duration::from_secs(10));
    publish(port, "t/a", "1", false);
    publish(port, "t/online", "true", true);
    sub.wait_for("1", Duration::from_secs(5), |m| {
        m.iter().any(|m| m.topic == "t/a" && m.payload == "1")
    });
    assert_eq!(retained(port, "t/online", 2).as_deref(), Some("true"));
    assert_eq!(retained(port, "t/none", 1), None);

    broker.stop();
    std::thread::sleep(Duration::from_millis(1500));
    broker.restart();
    // Published at once, before mosquitto_sub has reconnected: queued in its restored session.
    publish(port, "t/a", "2", false);
    publish(port, "t/a", "3", false);
    let msgs = sub.wait_for("2 and 3", Duration::from_secs(15), |m| {
        m.iter().filter(|m| m.topic == "t/a").count() >= 3
    });
    let a: Vec<&str> = msgs
        .iter()
        .filter(|m| m.topic == "t/a")
        .map(|m| m.payload.as_str())
        .collect();
    assert_eq!(a, ["1", "2", "3"]);
    assert_eq!(sub.restarts(), 0, "mosquitto_sub reconnects by itself");
    wait_retained(port, "t/online", "true", Duration::from_secs(5));
    let live = msgs.iter().find(|m| m.topic == "t/online").expect("online");
    assert!(!live.retained, "forwarded live: retain flag clear");
}

#[test]
fn headless_chromium_answers_webdriver() {
    let tmp = common::temp_dir();
    let driver = ChromeDriver::start(&tmp.path().join("chromedriver"));
    let mut session = driver.session();
    session.navigate(
        "data:text/html,<title>t</title><p id=x>hello <b>world</b></p><img id=i><script>console.error('boom')</script>",
    );
    assert_eq!(session.title(), "t");
    assert_eq!(session.text("#x").as_deref(), Some("hello world"));
    assert_eq!(session.find_all("p, b").len(), 2);
    assert!(session.find("#nothing").is_none());
    let v = session.execute(
        "return [arguments[0] + 1, document.getElementById('i').naturalWidth]",
        vec![serde_json::json!(41)],
    );
    assert_eq!(v, serde_json::json!([42, 0]));
    let severe = session.severe();
    assert!(
        severe
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains("boom"))),
        "console.error is SEVERE: {severe:?}"
    );
    assert_eq!(session.severe().len(), severe.len(), "kept across reads");
    let shot = tmp.path().join("shot.png");
    session.screenshot(&shot);
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 1000);
    session.delete();
}

#[test]
fn promtool_checks_an_exposition() {
    let good = "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"b\"} 3\n";
    let (status, out) = common::prometheus::promtool_check(good);
    assert!(status.success() && out.is_empty(), "{status}: {out}");
    let (status, out) = common::prometheus::promtool_check("x_total 3\n");
    assert!(
        !status.success() || !out.is_empty(),
        "no HELP must be reported"
    );
    let samples = common::prometheus::parse_metrics(good);
    assert_eq!(
        common::prometheus::value(&samples, "x_total", &[("a", "b")]),
        3.0
    );
}
