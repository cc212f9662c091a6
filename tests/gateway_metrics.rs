//! The gateway's `/metrics` against the real daemon (trigger-mode replay of held-out ELPV
//! images, so the daemon stays up after its last image), checked by Prometheus's own tools:
//! `promtool check metrics` finds nothing to report; the counters equal the daemon's replay
//! summary and what a protocol client saw; a restarted gateway shows the same counters (they are
//! the daemon's, not the gateway's); a real `prometheus` server scrapes it (target up) and
//! answers `inspectord_frames_total` = N.

mod common;

use std::time::Duration;

use common::gateway::{self, Gateway, GatewayConfig, Observer, Summary};
use common::prometheus::{self as prom, Prometheus, Sample};
use common::{Artifacts, Daemon, TestConfig};

const LIMIT: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(20);

const COUNTERS: &[&str] = &[
    "inspectord_frames_total",
    "inspectord_triggers_total",
    "inspectord_triggers_missed_total",
    "inspectord_camera_lost_total",
    "inspectord_camera_restored_total",
    "inspectord_clients_evicted_total",
];
const GAUGES: &[&str] = &[
    "inspectord_daemon_up",
    "inspectord_clients",
    "inspectord_frames_per_second",
    "inspectord_uptime_seconds",
    "inspectord_camera_up",
    "inspectord_queue_depth",
];
const HISTOGRAMS: &[&str] = &[
    "inspectord_latency_seconds",
    "inspectord_inference_duration_seconds",
    "inspectord_score",
];
const VERDICTS: [&str; 4] = ["pass", "fail", "error", "skipped"];

/// Scrapes until `ready` holds (at most `WAIT`); returns the text and its samples.
fn scrape_until(
    gw: &Gateway,
    what: &str,
    ready: impl Fn(&[Sample]) -> bool,
) -> (String, Vec<Sample>) {
    let mut last = String::new();
    let ok = common::wait_until(WAIT, || {
        let r = gw.http_get("/metrics");
        last = r.text();
        r.status == 200 && ready(&prom::parse_metrics(&last))
    });
    assert!(
        ok,
        "/metrics never showed {what}:\n{last}\ngateway log:\n{}",
        gw.stderr()
    );
    let samples = prom::parse_metrics(&last);
    (last, samples)
}

fn get(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = prom::find(samples, name, labels);
    (found.len() == 1).then(|| found[0].value)
}

/// The daemon's counters as the gateway exposes them.
fn counted(samples: &[Sample]) -> (Summary, u64, u64) {
    let v = |name: &str, labels: &[(&str, &str)]| prom::value(samples, name, labels) as u64;
    let s = Summary {
        frames: v("inspectord_frames_total", &[]),
        pass: v("inspectord_verdicts_total", &[("verdict", "pass")]),
        fail: v("inspectord_verdicts_total", &[("verdict", "fail")]),
        error: v("inspectord_verdicts_total", &[("verdict", "error")]),
        skipped: v("inspectord_verdicts_total", &[("verdict", "skipped")]),
    };
    (
        s,
        v("inspectord_triggers_total", &[]),
        v("inspectord_triggers_missed_total", &[]),
    )
}

/// `# TYPE` of every metric the spec names, and a sample of each.
fn assert_every_metric(text: &str, samples: &[Sample]) {
    let has_type = |name: &str, kinds: &[&str]| {
        kinds
            .iter()
            .any(|k| text.lines().any(|l| l == format!("# TYPE {name} {k}")))
    };
    for name in COUNTERS {
        assert!(
            has_type(name, &["counter"]),
            "# TYPE {name} counter:\n{text}"
        );
        assert!(get(samples, name, &[]).is_some(), "{name}:\n{text}");
    }
    for name in GAUGES {
        assert!(has_type(name, &["gauge"]), "# TYPE {name} gauge:\n{text}");
        assert!(get(samples, name, &[]).is_some(), "{name}:\n{text}");
    }
    for name in HISTOGRAMS {
        assert!(
            has_type(name, &["histogram"]),
            "# TYPE {name} histogram:\n{text}"
        );
        for part in ["_bucket", "_sum", "_count"] {
            let n = format!("{name}{part}");
            assert!(!prom::find(samples, &n, &[]).is_empty(), "{n}:\n{text}");
        }
    }
    assert!(
        has_type("inspectord_verdicts_total", &["counter"]),
        "{text}"
    );
    for v in VERDICTS {
        assert!(
            get(samples, "inspectord_verdicts_total", &[("verdict", v)]).is_some(),
            "verdict {v}:\n{text}"
        );
    }
    assert!(has_type("inspectord_reloads_total", &["counter"]), "{text}");
    for r in ["ok", "refused"] {
        assert_eq!(
            get(samples, "inspectord_reloads_total", &[("result", r)]),
            Some(0.0),
            "no reload in this run ({r}):\n{text}"
        );
    }
    for name in ["inspectord_model_info", "inspectord_reference_set_info"] {
        assert!(
            has_type(name, &["gauge", "untyped"]),
            "# TYPE {name}:\n{text}"
        );
    }
}

fn start_daemon(tmp: &std::path::Path, config: &std::path::Path) -> Daemon {
    common::spawn(
        gateway::json_command(
            tmp,
            &["replay".as_ref(), "--config".as_ref(), config.as_os_str()],
        ),
        LIMIT,
    )
}

#[test]
fn metrics_are_the_daemons_counters_and_prometheus_scrapes_them() {
    let tmp = common::temp_dir();
    let art = Artifacts::snapshot(tmp.path());
    let images = tmp.path().join("images");
    let n = art.copy_heldout(&images, 6, 4).len();
    let socket = tmp.path().join("v.sock");
    let mut cfg = TestConfig::new(&art, &images);
    cfg.socket = Some(socket.clone());
    let config = tmp.path().join("inspectord.toml");
    std::fs::write(&config, gateway::trigger_mode(&cfg.to_toml())).unwrap();
    let daemon = start_daemon(tmp.path(), &config);
    let mut observer = Observer::connect(&daemon, &socket);
    let gw_config = GatewayConfig::new(&socket).write(&tmp.path().join("gateway.toml"));
    let gw = Gateway::start(&gw_config, LIMIT);
    assert!(
        common::wait_until(WAIT, || gw.http_get("/healthz").status == 200),
        "/healthz never 200 with the daemon up:\n{}",
        gw.stderr()
    );

    let verdicts: Vec<_> = (0..n)
        .map(|i| observer.trigger_and_wait(&format!("part-{i}")))
        .collect();
    let seen = gateway::tally(&verdicts);
    assert!(
        seen.pass > 0 && seen.fail > 0,
        "both verdicts in the replay: {seen:?}"
    );

    // The daemon's counters reach the gateway with its heartbeat / status poll.
    let nf = n as f64;
    let (text, samples) = scrape_until(&gw, "every frame and both clients", |s| {
        get(s, "inspectord_frames_total", &[]) == Some(nf)
            && get(s, "inspectord_clients", &[]) == Some(2.0)
            && get(s, "inspectord_daemon_up", &[]) == Some(1.0)
    });
    let r = gw.http_get("/metrics");
    let ctype = r.header("content-type").unwrap_or_default().to_string();
    assert!(
        ctype.starts_with("text/plain") && ctype.contains("version=0.0.4"),
        "{ctype}"
    );
    let (status, printed) = prom::promtool_check(&text);
    assert!(
        status.success() && printed.is_empty(),
        "promtool check metrics: {status}\n{printed}\n{text}"
    );
    assert_every_metric(&text, &samples);
    let (counts, triggers, missed) = counted(&samples);
    assert_eq!(
        counts, seen,
        "the verdict counters are what the daemon sent"
    );
    assert_eq!((triggers, missed), (n as u64, 0), "triggers, missed");
    // The score histogram of the reference set in force: one observation per scored frame.
    assert_eq!(
        get(
            &samples,
            "inspectord_score_count",
            &[("reference_set", &art.reference_set)]
        ),
        Some((seen.pass + seen.fail) as f64),
        "{text}"
    );
    // Latency: every verdict; a worker's time: every frame a worker saw (all but skipped).
    assert_eq!(
        get(&samples, "inspectord_latency_seconds_count", &[]),
        Some(seen.frames as f64),
        "{text}"
    );
    assert_eq!(
        get(&samples, "inspectord_inference_duration_seconds_count", &[]),
        Some((seen.frames - seen.skipped) as f64),
        "{text}"
    );
    let labelled = |name: &str, want: &str| {
        prom::find(&samples, name, &[])
            .iter()
            .any(|s| s.value == 1.0 && s.labels.values().any(|v| v == want))
    };
    assert!(
        labelled("inspectord_model_info", &art.model_sha256),
        "model_info:\n{text}"
    );
    assert!(
        labelled("inspectord_reference_set_info", &art.reference_set),
        "reference_set_info:\n{text}"
    );
    assert_eq!(gw.http("POST", "/metrics").status, 405, "POST is refused");
    assert_eq!(gw.http("HEAD", "/metrics").status, 200);

    // A restarted gateway: the same counters, from the daemon.
    let stopped = gw.terminate();
    assert!(
        stopped.status.success(),
        "gateway: {}\n{}",
        stopped.status,
        stopped.stderr
    );
    let gw = Gateway::start(&gw_config, LIMIT);
    let (_, again) = scrape_until(&gw, "the daemon's counters again", |s| {
        get(s, "inspectord_frames_total", &[]) == Some(nf)
            && get(s, "inspectord_daemon_up", &[]) == Some(1.0)
    });
    assert_eq!(
        counted(&again),
        counted(&samples),
        "after the gateway's restart"
    );

    // A real Prometheus server scrapes the gateway.
    let prometheus = Prometheus::start(&tmp.path().join("prometheus"), gw.addr());
    let target = prometheus.wait_target_up(WAIT);
    assert_eq!(target["lastError"], "", "{target}");
    let mut result = Vec::new();
    let answered = common::wait_until(WAIT, || {
        result = prometheus.query("inspectord_frames_total");
        result.len() == 1
    });
    assert!(
        answered,
        "query inspectord_frames_total: {result:?}\n{}",
        prometheus.log()
    );
    assert_eq!(result[0]["value"][1], n.to_string(), "{result:?}");
    assert_eq!(
        result[0]["metric"]["job"], "inspectord-gateway",
        "{result:?}"
    );
    let fails = prometheus.query("inspectord_verdicts_total{verdict=\"fail\"}");
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert_eq!(fails[0]["value"][1], seen.fail.to_string(), "{fails:?}");

    // The daemon stops: its summary is what the gateway exposed; the gateway says it is gone.
    daemon.signal(libc::SIGTERM);
    let done = daemon.wait(LIMIT);
    done.assert_success();
    assert_eq!(
        gateway::parse_summary(&done.stderr),
        counts,
        "the replay summary"
    );
    scrape_until(&gw, "daemon_up 0", |s| {
        get(s, "inspectord_daemon_up", &[]) == Some(0.0)
    });
    assert!(
        common::wait_until(Duration::from_secs(8), || gw.http_get("/healthz").status
            == 503),
        "/healthz is not 503 with the daemon gone"
    );
    drop(prometheus);
    let stopped = gw.terminate();
    assert!(
        stopped.status.success(),
        "gateway: {}\n{}",
        stopped.status,
        stopped.stderr
    );
}
