//! `GET /metrics`: the Prometheus text format (0.0.4), written by the `prometheus` crate's
//! `TextEncoder` from metric families built at each scrape. The daemon's counters and
//! histograms come from its heartbeat and snapshot, so they count since the daemon started and a
//! gateway restart resets nothing; while the daemon is unreachable they are left out (the series
//! go stale instead of lying) and `inspectord_daemon_up` is 0. The gateway's own figures
//! (`inspectord_gateway_*`, `process_*`) describe this process.

use prometheus::core::Collector;
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use super::view::LiveView;
use crate::wire::WireHistogram;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The gateway's own figures since it started.
#[derive(Debug, Default, Clone)]
pub struct GatewayStats {
    pub daemon_reconnects: u64,
    pub http_clients: usize,
    pub sse_evicted: u64,
    pub mqtt: Option<MqttStats>,
}

#[derive(Debug, Default, Clone)]
pub struct MqttStats {
    pub connected: bool,
    pub acked_seq: u64,
    pub outbox: usize,
    pub published: u64,
    pub reconnects: u64,
    /// Verdicts the daemon no longer retained when the gateway asked for them.
    pub lost: u64,
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn counter(value: f64, pairs: &[(&str, &str)]) -> Metric {
    let mut c = Counter::default();
    c.set_value(value);
    let mut m = Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

fn gauge(value: f64, pairs: &[(&str, &str)]) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_label(labels(pairs));
    m.set_gauge(g);
    m
}

/// A wire histogram (per-bucket counts) as a Prometheus one (cumulative, `+Inf` implied).
fn histogram(h: &WireHistogram, pairs: &[(&str, &str)]) -> Metric {
    let mut cumulative = 0;
    let buckets = h
        .bounds
        .iter()
        .zip(&h.counts)
        .map(|(bound, n)| {
            cumulative += n;
            let mut b = Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut p = Histogram::default();
    p.set_bucket(buckets);
    p.set_sample_count(h.count);
    p.set_sample_sum(h.sum);
    let mut m = Metric::from_label(labels(pairs));
    m.set_histogram(p);
    m
}

/// The daemon's families (empty while it is unreachable, but for `inspectord_daemon_up`).
fn daemon_families(view: &LiveView) -> Vec<MetricFamily> {
    use MetricType::{COUNTER, GAUGE};
    let up = view.up();
    let mut out = vec![family(
        "inspectord_daemon_up",
        "Whether the gateway is connected to the daemon.",
        GAUGE,
        vec![gauge(if up { 1.0 } else { 0.0 }, &[])],
    )];
    let (Some(hello), true, true) = (view.hello(), up, view.counters_known()) else {
        return out;
    };
    let c = view.counters();
    let n = |v: u64| v as f64;
    let simple = [
        (
            "inspectord_frames_total",
            "Verdicts emitted since the daemon started (every kind).",
            c.frames,
        ),
        (
            "inspectord_triggers_total",
            "Trigger commands received.",
            c.triggers,
        ),
        (
            "inspectord_triggers_missed_total",
            "Trigger commands answered missed.",
            c.triggers_missed,
        ),
        (
            "inspectord_camera_lost_total",
            "Times the camera was lost.",
            c.camera_lost,
        ),
        (
            "inspectord_camera_restored_total",
            "Times the camera came back.",
            c.camera_restored,
        ),
        (
            "inspectord_clients_evicted_total",
            "Socket clients disconnected for not reading.",
            c.evicted,
        ),
    ];
    for (name, help, value) in simple {
        out.push(family(name, help, COUNTER, vec![counter(n(value), &[])]));
    }
    let kinds = [
        ("pass", c.pass),
        ("fail", c.fail),
        ("error", c.error),
        ("skipped", c.skipped),
    ];
    out.push(family(
        "inspectord_verdicts_total",
        "Verdicts by kind since the daemon started.",
        COUNTER,
        kinds
            .iter()
            .map(|(k, v)| counter(n(*v), &[("verdict", k)]))
            .collect(),
    ));
    out.push(family(
        "inspectord_reloads_total",
        "Reference reloads (SIGHUP) by result.",
        COUNTER,
        vec![
            counter(n(c.reloads), &[("result", "ok")]),
            counter(n(c.reloads_refused), &[("result", "refused")]),
        ],
    ));
    out.push(family(
        "inspectord_clients",
        "Verdict socket clients connected now.",
        GAUGE,
        vec![gauge(n(c.clients), &[])],
    ));
    let run = [
        ("version", hello.daemon.as_str()),
        ("run_id", hello.run_id.as_str()),
    ];
    let mode = match hello.trigger_mode {
        crate::wire::TriggerMode::FreeRun => "free-run",
        crate::wire::TriggerMode::Command => "command",
    };
    let mut info = run.to_vec();
    info.push(("trigger_mode", mode));
    out.push(family(
        "inspectord_daemon_info",
        "The daemon's version, run and trigger mode (value 1).",
        GAUGE,
        vec![gauge(1.0, &info)],
    ));
    if let Some(s) = view.snapshot() {
        out.extend(snapshot_families(s));
    }
    out
}

/// What only the snapshot has: rates, state, identity and the distributions.
fn snapshot_families(s: &crate::wire::Snapshot) -> Vec<MetricFamily> {
    use MetricType::GAUGE;
    let mut out = Vec::new();
    out.push(family(
        "inspectord_frames_per_second",
        "Verdicts per second over the last 10 s.",
        GAUGE,
        vec![gauge(s.fps, &[])],
    ));
    out.push(family(
        "inspectord_uptime_seconds",
        "Seconds since the daemon started.",
        GAUGE,
        vec![gauge(s.uptime_s, &[])],
    ));
    let camera_up = if s.camera == "lost" { 0.0 } else { 1.0 };
    out.push(family(
        "inspectord_camera_up",
        "Whether the source delivers frames (0: camera lost).",
        GAUGE,
        vec![gauge(camera_up, &[("state", s.camera.as_str())])],
    ));
    if !s.plc_links.is_empty() {
        let links = s
            .plc_links
            .iter()
            .map(|l| {
                gauge(
                    if l.up { 1.0 } else { 0.0 },
                    &[("source", l.source.as_str())],
                )
            })
            .collect();
        out.push(family(
            "inspectord_plc_link_up",
            "Each bridge's PLC link as it last reported it.",
            GAUGE,
            links,
        ));
    }
    let (name, version) = s
        .model
        .as_ref()
        .map_or(("", ""), |m| (m.name.as_str(), m.version.as_str()));
    out.push(family(
        "inspectord_model_info",
        "The model in use (value 1).",
        GAUGE,
        vec![gauge(
            1.0,
            &[
                ("model", name),
                ("version", version),
                ("sha256", s.model_sha256.as_str()),
            ],
        )],
    ));
    out.extend(stats_families(s));
    out
}

fn stats_families(s: &crate::wire::Snapshot) -> Vec<MetricFamily> {
    use MetricType::{GAUGE, HISTOGRAM};
    let mut out = Vec::new();
    let Some(st) = &s.stats else {
        return out;
    };
    out.push(family(
        "inspectord_queue_depth",
        "Frames waiting for a worker when the last frame was queued.",
        GAUGE,
        vec![gauge(st.queue_depth as f64, &[])],
    ));
    out.push(family(
        "inspectord_queue_capacity",
        "The workers' queue capacity.",
        GAUGE,
        vec![gauge(st.queue_capacity as f64, &[])],
    ));
    out.push(family(
        "inspectord_latency_seconds",
        "Frame taken to verdict emitted.",
        HISTOGRAM,
        vec![histogram(&st.latency_seconds, &[])],
    ));
    out.push(family(
        "inspectord_inference_duration_seconds",
        "A worker's time on a frame: decode, preprocessing, inference and scoring.",
        HISTOGRAM,
        vec![histogram(&st.inspection_seconds, &[])],
    ));
    if !st.scores.is_empty() {
        let mut sets = Vec::new();
        let mut infos = Vec::new();
        let active = st
            .scores
            .iter()
            .rposition(|h| h.reference_set == s.reference_set);
        for (i, h) in st.scores.iter().enumerate() {
            let t = format!("{}", h.threshold);
            let pairs = [
                ("reference_set", h.reference_set.as_str()),
                ("threshold", t.as_str()),
            ];
            sets.push(histogram(&h.histogram, &pairs));
            let active = if active == Some(i) { "1" } else { "0" };
            let mut info = pairs.to_vec();
            info.push(("active", active));
            infos.push(gauge(1.0, &info));
        }
        out.push(family(
            "inspectord_score",
            "Scores of inspected frames per reference set (buckets relative to the threshold).",
            HISTOGRAM,
            sets,
        ));
        out.push(family(
            "inspectord_reference_set_info",
            "Reference sets scored against in this run; active=1 is in force (value 1).",
            GAUGE,
            infos,
        ));
    }
    out
}

fn gateway_families(g: &GatewayStats) -> Vec<MetricFamily> {
    use MetricType::{COUNTER, GAUGE};
    let mut out = vec![
        family(
            "inspectord_gateway_daemon_reconnects_total",
            "Times the gateway reconnected to the daemon.",
            COUNTER,
            vec![counter(g.daemon_reconnects as f64, &[])],
        ),
        family(
            "inspectord_gateway_http_clients",
            "HTTP connections open now (page streams included).",
            GAUGE,
            vec![gauge(g.http_clients as f64, &[])],
        ),
        family(
            "inspectord_gateway_sse_evicted_total",
            "Page streams closed for not reading.",
            COUNTER,
            vec![counter(g.sse_evicted as f64, &[])],
        ),
    ];
    if let Some(m) = &g.mqtt {
        out.extend([
            family(
                "inspectord_gateway_mqtt_connected",
                "Whether the broker connection is up.",
                GAUGE,
                vec![gauge(if m.connected { 1.0 } else { 0.0 }, &[])],
            ),
            family(
                "inspectord_gateway_mqtt_acked_seq",
                "The last verdict seq the broker acknowledged (and the daemon was told).",
                GAUGE,
                vec![gauge(m.acked_seq as f64, &[])],
            ),
            family(
                "inspectord_gateway_mqtt_outbox",
                "Messages waiting for the broker.",
                GAUGE,
                vec![gauge(m.outbox as f64, &[])],
            ),
            family(
                "inspectord_gateway_mqtt_published_total",
                "QoS 1 messages the broker acknowledged.",
                COUNTER,
                vec![counter(m.published as f64, &[])],
            ),
            family(
                "inspectord_gateway_mqtt_reconnects_total",
                "Broker connections made after the first.",
                COUNTER,
                vec![counter(m.reconnects as f64, &[])],
            ),
            family(
                "inspectord_gateway_mqtt_lost_total",
                "Verdicts gone from the daemon's retention before the broker had them.",
                COUNTER,
                vec![counter(m.lost as f64, &[])],
            ),
        ]);
    }
    out
}

/// The scrape's text.
pub fn render(view: &LiveView, g: &GatewayStats, process: &ProcessCollector) -> String {
    let mut families = daemon_families(view);
    families.extend(gateway_families(g));
    families.extend(process.collect());
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
        tracing::warn!(error = %e, "encoding the metrics");
    }
    String::from_utf8_lossy(&buf).into_owned()
}
