//! What the gateway knows of the daemon, from its live link: the last hello, heartbeat and
//! snapshot, the camera and PLC links, the recent scores for the page's chart, and whether the
//! daemon is reachable. Pure: the event loop feeds it parsed lines and reads the page's state
//! and the metrics from it.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::wire::{self, Counters, WireEvent, WireVerdict, WireVerdictKind, page};

/// Scores of failed frames remembered for the gallery's captions.
const FAIL_SCORES: usize = 1024;

#[derive(Debug)]
pub struct LiveView {
    chart_points: usize,
    up: bool,
    since: SystemTime,
    hello: Option<wire::Hello>,
    snapshot: Option<wire::Snapshot>,
    counters: Counters,
    /// A heartbeat or snapshot of this run arrived: `counters` are the daemon's, not zeros.
    counters_known: bool,
    camera: Option<String>,
    reference_set: Option<String>,
    threshold: Option<f64>,
    /// The last `seq` taken into the chart in this run (repeats after a resubscribe dropped).
    last_seq: u64,
    chart: VecDeque<page::Point>,
    /// Points not yet sent to the pages' streams.
    fresh: Vec<page::Point>,
    fail_scores: VecDeque<(u64, Option<f64>)>,
    /// A failed frame arrived since the gallery was last looked at.
    pub new_failure: bool,
}

impl LiveView {
    pub fn new(chart_points: usize) -> LiveView {
        LiveView {
            chart_points,
            up: false,
            since: SystemTime::now(),
            hello: None,
            snapshot: None,
            counters: Counters::default(),
            counters_known: false,
            camera: None,
            reference_set: None,
            threshold: None,
            last_seq: 0,
            chart: VecDeque::new(),
            fresh: Vec::new(),
            fail_scores: VecDeque::new(),
            new_failure: false,
        }
    }

    pub fn up(&self) -> bool {
        self.up
    }

    pub fn hello(&self) -> Option<&wire::Hello> {
        self.hello.as_ref()
    }

    pub fn snapshot(&self) -> Option<&wire::Snapshot> {
        self.snapshot.as_ref()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether the counters are the daemon's (a heartbeat or snapshot of this run arrived):
    /// before that they are zeros, which Prometheus would take for a counter reset.
    pub fn counters_known(&self) -> bool {
        self.counters_known
    }

    /// The daemon greeted the live link: a new run starts an empty chart.
    pub fn on_hello(&mut self, h: wire::Hello) {
        let new_run = self.hello.as_ref().is_none_or(|old| old.run_id != h.run_id);
        if new_run {
            self.chart.clear();
            self.fresh.clear();
            self.fail_scores.clear();
            self.last_seq = 0;
            self.snapshot = None;
            self.counters = Counters::default();
            self.counters_known = false;
            self.threshold = None;
            self.camera = None;
        }
        self.reference_set = Some(h.reference_set.clone());
        self.hello = Some(h);
        self.up = true;
        self.since = SystemTime::now();
    }

    /// The live link is down.
    pub fn on_unreachable(&mut self) {
        if self.up {
            self.up = false;
            self.since = SystemTime::now();
        }
    }

    pub fn on_verdict(&mut self, v: &WireVerdict) {
        if v.seq <= self.last_seq {
            return;
        }
        self.last_seq = v.seq;
        if v.threshold.is_some() {
            self.threshold = v.threshold;
        }
        let point = page::Point {
            seq: v.seq,
            t: v.captured_at.clone(),
            verdict: v.verdict,
            score: v.score.filter(|s| s.is_finite()),
            threshold: v.threshold,
        };
        if matches!(v.verdict, WireVerdictKind::Fail | WireVerdictKind::Error) {
            if self.fail_scores.len() == FAIL_SCORES {
                self.fail_scores.pop_front();
            }
            self.fail_scores.push_back((v.seq, point.score));
            self.new_failure = true;
        }
        if self.chart.len() == self.chart_points {
            self.chart.pop_front();
        }
        self.chart.push_back(point.clone());
        self.fresh.push(point);
    }

    pub fn on_status(&mut self, event: WireEvent, reference_set: Option<String>) {
        match event {
            WireEvent::CameraLost => self.camera = Some("lost".into()),
            WireEvent::CameraRestored => self.camera = Some("running".into()),
            WireEvent::ReferencesReloaded if reference_set.is_some() => {
                self.reference_set = reference_set;
            }
            _ => {}
        }
    }

    pub fn on_heartbeat(&mut self, h: &wire::Heartbeat) {
        self.counters = h.counters;
        self.counters_known = true;
    }

    pub fn on_snapshot(&mut self, s: wire::Snapshot) {
        self.counters = s.counters;
        self.counters_known = true;
        self.camera = Some(s.camera.clone());
        self.reference_set = Some(s.reference_set.clone());
        self.snapshot = Some(s);
    }

    /// The points that arrived since the last call (for the pages' streams).
    pub fn take_fresh(&mut self) -> Vec<page::Point> {
        std::mem::take(&mut self.fresh)
    }

    pub fn chart(&self) -> impl Iterator<Item = &page::Point> {
        self.chart.iter()
    }

    /// A failed frame's score, if the gateway saw its verdict in the current run.
    pub fn fail_score(&self, seq: u64) -> Option<f64> {
        self.fail_scores
            .iter()
            .find(|(s, _)| *s == seq)
            .and_then(|(_, score)| *score)
    }

    /// The page's state; `mqtt` is the delivery's, when MQTT is on.
    pub fn state(&self, mqtt: Option<page::Mqtt>) -> page::State {
        let snap = self.snapshot.as_ref();
        let hello = self.hello.as_ref();
        let score_histogram = snap.and_then(|s| {
            let stats = s.stats.as_ref()?;
            let set = self.reference_set.as_deref()?;
            let h = stats.scores.iter().rev().find(|h| h.reference_set == set)?;
            Some(page::Histogram {
                bounds: h.histogram.bounds.clone(),
                counts: h.histogram.counts.clone(),
            })
        });
        page::State {
            daemon: page::Daemon {
                up: self.up,
                since: wire::rfc3339_micros(self.since),
                version: hello.map(|h| h.daemon.clone()),
                run_id: hello.map(|h| h.run_id.clone()),
                trigger_mode: hello.map(|h| h.trigger_mode),
            },
            camera: self.camera.clone().unwrap_or_else(|| "unknown".into()),
            plc_links: snap.map(|s| s.plc_links.clone()).unwrap_or_default(),
            model: hello.map(|h| page::Model {
                name: snap.and_then(|s| s.model.as_ref()).map(|m| m.name.clone()),
                version: snap
                    .and_then(|s| s.model.as_ref())
                    .map(|m| m.version.clone()),
                sha256: h.model_sha256.clone(),
            }),
            reference_set: self.reference_set.clone(),
            threshold: self.threshold,
            counters: self.counters,
            fps: if self.up {
                snap.map_or(0.0, |s| s.fps)
            } else {
                0.0
            },
            uptime_s: snap.map_or(0.0, |s| s.uptime_s),
            seq: self.counters.frames.max(self.last_seq),
            score_histogram,
            mqtt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon_link::{Inbound, parse};

    fn hello(run: &str) -> wire::Hello {
        let line = format!(
            r#"{{"type":"hello","v":2,"daemon":"inspectord 0.1.0","protocols":[1,2],"run_id":"{run}","seq":0,"trigger_mode":"free-run","retained":null,"model_sha256":"ab","reference_set":"f0","control":false}}"#
        );
        match parse(&line) {
            Ok(Inbound::Hello(h)) => h,
            other => panic!("{other:?}"),
        }
    }

    fn verdict(seq: u64, kind: &str, score: f64) -> WireVerdict {
        let line = format!(
            r#"{{"type":"verdict","v":2,"seq":{seq},"source":"replay","frame":"a.png","captured_at":"2026-11-29T10:00:00.000000Z","verdict":"{kind}","score":{score},"threshold":0.5,"soart3":null,"reference_index":null,"latency_us":10,"model_sha256":"ab","reference_set":"f0"}}"#
        );
        match parse(&line) {
            Ok(Inbound::Verdict(v)) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_chart_keeps_the_last_points_once_each_and_a_new_run_starts_over() {
        let mut v = LiveView::new(3);
        v.on_hello(hello("aaaa"));
        for seq in 1..=5 {
            v.on_verdict(&verdict(seq, "pass", 0.1));
        }
        v.on_verdict(&verdict(4, "pass", 0.1));
        let seqs: Vec<u64> = v.chart().map(|p| p.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(v.take_fresh().len(), 5);
        v.on_verdict(&verdict(6, "fail", 0.9));
        assert_eq!(v.fail_score(6), Some(0.9));
        assert!(v.new_failure);
        v.on_unreachable();
        let s = v.state(None);
        assert!(!s.daemon.up);
        assert_eq!(s.threshold, Some(0.5));
        v.on_hello(hello("aaaa"));
        assert_eq!(v.chart().count(), 3, "same run: the chart stays");
        v.on_hello(hello("bbbb"));
        assert_eq!(v.chart().count(), 0, "a new run: from scratch");
        v.on_verdict(&verdict(1, "pass", 0.1));
        assert_eq!(v.chart().count(), 1);
    }
}
