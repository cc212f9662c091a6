//! Run summaries: verdict counts, throughput, latency, and — with labels — the confusion matrix
//! and the usual rates, overall and per group (e.g. mono/poly).
//!
//! "Positive" means defective: a `fail` verdict predicts defective, `pass` predicts good.
//! `error` verdicts are counted but left out of the rates.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::score::Decision;
use crate::verdict::{Outcome, Verdict};

/// Ground truth for replayed frames, keyed by file name.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    pub path: PathBuf,
    rows: HashMap<String, Label>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub defective: bool,
    /// The `type` column, when present (ELPV: mono/poly).
    pub group: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("cannot read labels {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("labels {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl Labels {
    /// Reads a CSV with a header holding `file` and `label` columns (and optionally `type`).
    /// Labels: `good`/`pass`/`0` or `defective`/`fail`/`1`. `file` is matched against the
    /// frame id (the file name).
    pub fn load(path: &Path) -> Result<Labels, LabelsError> {
        let read = |reason: String| LabelsError::Read {
            path: path.into(),
            reason,
        };
        let invalid = |reason: String| LabelsError::Invalid {
            path: path.into(),
            reason,
        };
        let mut reader = csv::Reader::from_path(path).map_err(|e| read(e.to_string()))?;
        let headers = reader.headers().map_err(|e| read(e.to_string()))?.clone();
        let col = |name: &str| headers.iter().position(|h| h.trim() == name);
        let file_col = col("file").ok_or_else(|| invalid("no `file` column".into()))?;
        let label_col = col("label").ok_or_else(|| invalid("no `label` column".into()))?;
        let group_col = col("type");
        let mut rows = HashMap::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| read(e.to_string()))?;
            let line = i + 2;
            let file = record.get(file_col).unwrap_or("").trim();
            let name = Path::new(file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let defective = match record.get(label_col).unwrap_or("").trim() {
                "defective" | "fail" | "1" => true,
                "good" | "pass" | "0" => false,
                other => return Err(invalid(format!("line {line}: unknown label {other:?}"))),
            };
            let group = group_col
                .and_then(|c| record.get(c))
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty());
            rows.insert(name, Label { defective, group });
        }
        Ok(Labels {
            path: path.into(),
            rows,
        })
    }

    pub fn get(&self, frame: &str) -> Option<&Label> {
        self.rows.get(frame)
    }
}

/// A 2×2 confusion matrix, defective = positive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    pub true_pos: u64,
    pub false_pos: u64,
    pub true_neg: u64,
    pub false_neg: u64,
}

impl Confusion {
    fn add(&mut self, actual_defective: bool, predicted_defective: bool) {
        match (actual_defective, predicted_defective) {
            (true, true) => self.true_pos += 1,
            (false, true) => self.false_pos += 1,
            (false, false) => self.true_neg += 1,
            (true, false) => self.false_neg += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.true_pos + self.false_pos + self.true_neg + self.false_neg
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.true_pos + self.true_neg, self.total())
    }

    pub fn precision(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_pos)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_neg)
    }

    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The latency histogram's range: 1 µs to an hour (longer saturates), 3 significant digits.
const LATENCY_MAX_US: u64 = 3_600_000_000;
const LATENCY_DIGITS: u8 = 3;

/// Latencies of every frame in constant memory (an HDR histogram, ±0.1 %): a looping replay
/// runs for days without its summary growing.
/// (`None` only if the constant bounds were invalid, which a unit test rules out.)
#[derive(Debug)]
struct Latencies(Option<hdrhistogram::Histogram<u64>>);

impl Default for Latencies {
    fn default() -> Self {
        Self(hdrhistogram::Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_DIGITS).ok())
    }
}

/// Accumulates a run's figures as verdicts are emitted.
#[derive(Debug, Default)]
pub struct Summary {
    pub frames: u64,
    pub pass: u64,
    pub fail: u64,
    pub error: u64,
    pub skipped: u64,
    pub elapsed: Duration,
    latencies: Latencies,
    pub labelled: Option<LabelledSummary>,
}

#[derive(Debug, Default)]
pub struct LabelledSummary {
    pub labels_path: PathBuf,
    pub overall: Confusion,
    pub by_group: BTreeMap<String, Confusion>,
    pub unlabelled: u64,
    /// Labelled frames without a decision (`error` or `skipped`).
    pub errors_labelled: u64,
}

impl Summary {
    pub fn new(with_labels: Option<&Labels>) -> Self {
        Summary {
            labelled: with_labels.map(|l| LabelledSummary {
                labels_path: l.path.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn record(&mut self, v: &Verdict, latency: Duration, labels: Option<&Labels>) {
        self.frames += 1;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(h) = &mut self.latencies.0 {
            h.saturating_record(us);
        }
        let predicted = match &v.outcome {
            Outcome::Inspected {
                decision: Decision::Pass,
                ..
            } => {
                self.pass += 1;
                Some(false)
            }
            Outcome::Inspected {
                decision: Decision::Fail,
                ..
            } => {
                self.fail += 1;
                Some(true)
            }
            Outcome::Error { .. } => {
                self.error += 1;
                None
            }
            Outcome::Skipped { .. } => {
                self.skipped += 1;
                None
            }
        };
        let (Some(labels), Some(ls)) = (labels, self.labelled.as_mut()) else {
            return;
        };
        match (labels.get(&v.frame), predicted) {
            (None, _) => ls.unlabelled += 1,
            (Some(_), None) => ls.errors_labelled += 1,
            (Some(label), Some(pred)) => {
                ls.overall.add(label.defective, pred);
                if let Some(g) = &label.group {
                    ls.by_group
                        .entry(g.clone())
                        .or_default()
                        .add(label.defective, pred);
                }
            }
        }
    }

    /// The `q`-quantile (0..=1) of every frame's latency, to 3 significant digits.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let h = self.latencies.0.as_ref().filter(|h| !h.is_empty())?;
        Some(Duration::from_micros(h.value_at_quantile(q)))
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let fps = if secs > 0.0 {
            self.frames as f64 / secs
        } else {
            0.0
        };
        writeln!(
            f,
            "{} frames in {secs:.2} s ({fps:.1} frames/s): {} pass, {} fail, {} error, {} skipped",
            self.frames, self.pass, self.fail, self.error, self.skipped
        )?;
        if let (Some(p50), Some(p99)) = (self.latency_quantile(0.5), self.latency_quantile(0.99)) {
            writeln!(
                f,
                "latency (taken → verdict): median {:.2} ms, p99 {:.2} ms",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            )?;
        }
        if let Some(ls) = &self.labelled {
            let c = ls.overall;
            writeln!(
                f,
                "labels {}: {} scored, {} unlabelled, {} labelled frames with errors or skipped (left out)",
                ls.labels_path.display(),
                c.total(),
                ls.unlabelled,
                ls.errors_labelled
            )?;
            writeln!(f, "confusion matrix (positive = defective):")?;
            writeln!(
                f,
                "                     predicted good  predicted defective"
            )?;
            writeln!(
                f,
                "  actual good        {:>14}  {:>19}",
                c.true_neg, c.false_pos
            )?;
            writeln!(
                f,
                "  actual defective   {:>14}  {:>19}",
                c.false_neg, c.true_pos
            )?;
            write_rates(f, "all", &c)?;
            for (group, c) in &ls.by_group {
                write_rates(f, group, c)?;
            }
        }
        Ok(())
    }
}

fn write_rates(f: &mut fmt::Formatter<'_>, name: &str, c: &Confusion) -> fmt::Result {
    writeln!(
        f,
        "{name:>6}: n={:<5} accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}  (tp {} fp {} tn {} fn {})",
        c.total(),
        c.accuracy(),
        c.precision(),
        c.recall(),
        c.f1(),
        c.true_pos,
        c.false_pos,
        c.true_neg,
        c.false_neg
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_cover_every_frame_in_constant_memory() {
        let mut s = Summary::default();
        assert_eq!(s.latency_quantile(0.5), None);
        let h = s
            .latencies
            .0
            .as_mut()
            .expect("the constant bounds are valid");
        let slots = h.distinct_values();
        // 2M frames: the first million fast, the second slow; both halves count.
        for i in 0..2_000_000u64 {
            h.saturating_record(if i < 1_000_000 { 1_000 } else { 20_000 });
        }
        h.saturating_record(u64::MAX);
        assert_eq!(h.distinct_values(), slots, "the histogram did not grow");
        assert_eq!(h.len(), 2_000_001);
        let near = |d: Option<Duration>, us: u64| {
            let got = d.unwrap().as_micros() as f64;
            assert!((got - us as f64).abs() <= us as f64 * 1e-3, "{got} vs {us}");
        };
        near(s.latency_quantile(0.25), 1_000);
        near(s.latency_quantile(0.75), 20_000);
        near(s.latency_quantile(1.0), LATENCY_MAX_US);
    }

    #[test]
    fn rates_from_a_known_matrix() {
        let c = Confusion {
            true_pos: 8,
            false_pos: 2,
            true_neg: 85,
            false_neg: 5,
        };
        assert_eq!(c.total(), 100);
        assert!((c.accuracy() - 0.93).abs() < 1e-12);
        assert!((c.precision() - 0.8).abs() < 1e-12);
        assert!((c.recall() - 8.0 / 13.0).abs() < 1e-12);
        let f1 = 2.0 * 0.8 * (8.0 / 13.0) / (0.8 + 8.0 / 13.0);
        assert!((c.f1() - f1).abs() < 1e-12);
        assert_eq!(Confusion::default().f1(), 0.0);
    }

    #[test]
    fn labels_csv_with_groups() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.csv");
        std::fs::write(&p, "file,label,type,split\ncell0001.png,defective,mono,test\nimages/cell0002.png,good,poly,train\n").unwrap();
        let l = Labels::load(&p).unwrap();
        assert_eq!(
            l.get("cell0001.png"),
            Some(&Label {
                defective: true,
                group: Some("mono".into())
            })
        );
        assert_eq!(l.get("cell0002.png").map(|l| l.defective), Some(false));
        std::fs::write(&p, "file,label\nx.png,maybe\n").unwrap();
        assert!(matches!(Labels::load(&p), Err(LabelsError::Invalid { .. })));
    }
}
