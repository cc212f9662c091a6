//! Distributions the socket thread keeps over every verdict of the run, for `snapshot`'s
//! `stats` (the gateway's Prometheus histograms): end-to-end latency, the worker's time on a
//! frame, and the score per reference set. Fixed buckets, constant memory, one bucket search
//! per verdict; pure.

use std::sync::Arc;
use std::time::Duration;

use crate::wire::{ScoreHistogram, Stats, WireHistogram};

/// Upper bounds in seconds for latency and inspection time: 1 ms to 10 s.
const SECONDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];
/// Upper bounds of the score buckets as multiples of the threshold: relative to the threshold so
/// that drift toward it shows whatever the model's scale (1.0 is the threshold itself).
const SCORE_FRACTIONS: [f64; 14] = [
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0,
];
/// Score histograms kept: the set in force and the ones before it (reloads).
const SCORE_SETS: usize = 4;

/// One histogram: `counts[i]` observations in `(bounds[i-1], bounds[i]]`, the last count above
/// the last bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts a finite value (others are not a measurement and are left out).
    pub fn observe(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn to_wire(&self) -> WireHistogram {
        WireHistogram {
            bounds: self.bounds.clone(),
            counts: self.counts.clone(),
            sum: self.sum,
            count: self.count,
        }
    }
}

/// What one verdict adds to the distributions.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub latency: Duration,
    pub inspection: Option<Duration>,
    /// Score and threshold of an inspected frame.
    pub score: Option<(f64, f64)>,
    pub queued: usize,
}

pub struct RunStats {
    latency: Histogram,
    inspection: Histogram,
    /// (reference set, threshold, histogram), the newest last.
    scores: Vec<(Arc<str>, f64, Histogram)>,
    queued: usize,
    queue_capacity: usize,
}

impl RunStats {
    pub fn new(queue_capacity: usize) -> RunStats {
        RunStats {
            latency: Histogram::new(&SECONDS),
            inspection: Histogram::new(&SECONDS),
            scores: Vec::new(),
            queued: 0,
            queue_capacity,
        }
    }

    pub fn observe(&mut self, reference_set: &Arc<str>, o: Observation) {
        self.latency.observe(o.latency.as_secs_f64());
        if let Some(t) = o.inspection {
            self.inspection.observe(t.as_secs_f64());
        }
        self.queued = o.queued;
        let Some((score, threshold)) = o.score else {
            return;
        };
        let known = self
            .scores
            .iter()
            .position(|(set, t, _)| set == reference_set && *t == threshold);
        let i = match known {
            Some(i) => i,
            None => {
                if self.scores.len() == SCORE_SETS {
                    self.scores.remove(0);
                }
                let bounds: Vec<f64> = SCORE_FRACTIONS.iter().map(|f| f * threshold).collect();
                let mut bounds = bounds;
                // A threshold of 0 or below has no scale: fall back to the fractions themselves.
                if !(threshold > 0.0 && threshold.is_finite()) {
                    bounds = SCORE_FRACTIONS.to_vec();
                }
                self.scores
                    .push((reference_set.clone(), threshold, Histogram::new(&bounds)));
                self.scores.len() - 1
            }
        };
        self.scores[i].2.observe(score);
    }

    pub fn to_wire(&self) -> Stats {
        Stats {
            queue_depth: self.queued as u64,
            queue_capacity: self.queue_capacity as u64,
            latency_seconds: self.latency.to_wire(),
            inspection_seconds: self.inspection.to_wire(),
            scores: self
                .scores
                .iter()
                .map(|(set, threshold, h)| ScoreHistogram {
                    reference_set: set.to_string(),
                    threshold: *threshold,
                    histogram: h.to_wire(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_inclusive_and_skip_non_finite() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 2.0, 3.0, f64::NAN, f64::INFINITY] {
            h.observe(v);
        }
        let w = h.to_wire();
        assert_eq!(w.counts, vec![2, 2, 1]);
        assert_eq!((w.count, w.sum), (5, 8.0));
    }

    #[test]
    fn score_histograms_follow_the_threshold_and_keep_the_last_sets() {
        let mut s = RunStats::new(8);
        let obs = |score, threshold| Observation {
            latency: Duration::from_millis(3),
            inspection: Some(Duration::from_millis(2)),
            score: Some((score, threshold)),
            queued: 1,
        };
        let a: Arc<str> = Arc::from("a");
        s.observe(&a, obs(0.5, 2.0));
        s.observe(&a, obs(2.5, 2.0));
        let w = s.to_wire();
        assert_eq!(w.scores.len(), 1);
        assert_eq!(w.scores[0].histogram.bounds[9], 2.0, "1.0 × threshold");
        assert_eq!(w.scores[0].histogram.count, 2);
        assert_eq!(w.latency_seconds.count, 2);
        assert_eq!((w.queue_depth, w.queue_capacity), (1, 8));
        for i in 0..5 {
            s.observe(&Arc::from(format!("s{i}").as_str()), obs(0.1, 1.0));
        }
        let w = s.to_wire();
        assert_eq!(w.scores.len(), SCORE_SETS);
        assert_eq!(
            w.scores.last().map(|h| h.reference_set.as_str()),
            Some("s4")
        );
    }
}
