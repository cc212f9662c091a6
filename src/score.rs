//! Nearest-reference scoring and the pass/fail decision. Pure: no I/O.
//!
//! The score of a frame is eta (or gamma) of SOART3 against the references: the smallest one
//! for `k = 1`, the mean of the `k` smallest otherwise. The frame fails when the score is above
//! the threshold; a score that is not finite (NaN, ±inf) is neither a pass nor a fail but an
//! error. The verdict reports beta, eta and gamma against the nearest reference (the one
//! with the smallest score) and its index.

use crate::soart3::{Orders, Soart3, soart3};

/// Which SOART3 quantity is the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreKind {
    Eta,
    Gamma,
}

impl ScoreKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "eta" => Some(Self::Eta),
            "gamma" => Some(Self::Gamma),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eta => "eta",
            Self::Gamma => "gamma",
        }
    }

    fn pick(self, s: &Soart3) -> f64 {
        match self {
            Self::Eta => s.eta,
            Self::Gamma => s.gamma,
        }
    }
}

/// The effective scoring settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scoring {
    pub kind: ScoreKind,
    pub k: usize,
    pub orders: Orders,
    pub threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Pass,
    Fail,
}

/// Why an embedding has no decision.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ScoreError {
    #[error("no reference to score against")]
    NoReferences,
    /// NaN or infinite: `score > threshold` would call NaN a pass, so it is neither.
    #[error("the score is not finite ({score}), so it is neither a pass nor a fail")]
    NotFinite { score: f64 },
}

/// The outcome of scoring one embedding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub decision: Decision,
    /// Index of the nearest reference (row in the reference set).
    pub nearest: usize,
    /// SOART3 against the nearest reference.
    pub soart3: Soart3,
}

/// Reference embeddings as one row-major matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim)
    }
}

/// The `k` smallest scores and the nearest reference, fed references in index order.
pub(crate) struct Nearest {
    k: usize,
    /// The k smallest scores seen so far, ascending; k is small (default 1).
    smallest: Vec<f64>,
    nearest: Option<(usize, Soart3, f64)>,
}

impl Nearest {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            smallest: Vec::with_capacity(k + 1),
            nearest: None,
        }
    }

    pub(crate) fn push(&mut self, i: usize, m: Soart3, kind: ScoreKind) {
        let v = kind.pick(&m);
        if self.nearest.is_none_or(|(_, _, best)| v < best) {
            self.nearest = Some((i, m, v));
        }
        let smallest = &mut self.smallest;
        if smallest.len() < self.k || v < smallest[smallest.len() - 1] {
            let pos = smallest.partition_point(|&w| w <= v);
            smallest.insert(pos, v);
            smallest.truncate(self.k);
        }
    }

    pub(crate) fn finish(self, threshold: f64) -> Result<Scored, ScoreError> {
        let (nearest, soart3, _) = self.nearest.ok_or(ScoreError::NoReferences)?;
        let score = self.smallest.iter().sum::<f64>() / self.smallest.len() as f64;
        if !score.is_finite() {
            return Err(ScoreError::NotFinite { score });
        }
        let decision = if score > threshold {
            Decision::Fail
        } else {
            Decision::Pass
        };
        Ok(Scored {
            score,
            decision,
            nearest,
            soart3,
        })
    }
}

/// The reference implementation: SOART3 of `y` against every reference except `skip` (for
/// leave-one-out). A score that is not finite is an error, never a decision.
pub fn score_excluding(
    refs: &Embeddings,
    y: &[f32],
    s: &Scoring,
    skip: Option<usize>,
) -> Result<Scored, ScoreError> {
    // k larger than the set means all of it; never allocate for more than there is.
    let mut best = Nearest::new(s.k.clamp(1, refs.len().max(1)));
    for (i, x) in refs.rows().enumerate() {
        if Some(i) != skip {
            best.push(i, soart3(x, y, s.orders), s.kind);
        }
    }
    best.finish(s.threshold)
}

/// Scores `y` against all references (the reference implementation).
pub fn score(refs: &Embeddings, y: &[f32], s: &Scoring) -> Result<Scored, ScoreError> {
    score_excluding(refs, y, s, None)
}

/// Leave-one-out scores of each reference against the others (those that are finite).
pub fn leave_one_out(refs: &Embeddings, s: &Scoring) -> Vec<f64> {
    (0..refs.len())
        .filter_map(|i| score_excluding(refs, refs.row(i), s, Some(i)).ok())
        .map(|r| r.score)
        .collect()
}

/// The threshold that lets at least `1 − false_reject_rate` of `scores` pass (`score <=
/// threshold` passes): the ⌈(1 − rate)·n⌉-th smallest score.
pub fn threshold_for_false_reject_rate(scores: &[f64], false_reject_rate: f64) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let keep = ((1.0 - false_reject_rate) * n as f64).ceil() as usize;
    Some(sorted[keep.clamp(1, n) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs() -> Embeddings {
        // three references along the axes
        Embeddings {
            dim: 3,
            data: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        }
    }

    fn scoring(k: usize, threshold: f64) -> Scoring {
        Scoring {
            kind: ScoreKind::Eta,
            k,
            orders: Orders::DEFAULT,
            threshold,
        }
    }

    #[test]
    fn nearest_reference_wins_with_k1() {
        let y = [0.1f32, 2.0, 0.1];
        let r = score(&refs(), &y, &scoring(1, 0.5)).unwrap();
        assert_eq!(r.nearest, 1);
        assert_eq!(r.score, soart3(refs().row(1), &y, Orders::DEFAULT).eta);
        assert_eq!(r.decision, Decision::Pass, "{r:?}");
    }

    #[test]
    fn k_is_the_mean_of_the_k_smallest() {
        let y = [0.1f32, 2.0, 0.3];
        let etas: Vec<f64> = refs()
            .rows()
            .map(|x| soart3(x, &y, Orders::DEFAULT).eta)
            .collect();
        let mut sorted = etas.clone();
        sorted.sort_by(f64::total_cmp);
        let r = score(&refs(), &y, &scoring(2, 0.0)).unwrap();
        assert!((r.score - (sorted[0] + sorted[1]) / 2.0).abs() < 1e-15);
        assert_eq!(r.decision, Decision::Fail);
        // k larger than the set: mean of all
        let r = score(&refs(), &y, &scoring(10, 0.0)).unwrap();
        assert!((r.score - etas.iter().sum::<f64>() / 3.0).abs() < 1e-15);
    }

    #[test]
    fn gamma_can_be_the_score() {
        let y = [0.5f32, 1.0, -0.25];
        let mut s = scoring(1, 10.0);
        s.kind = ScoreKind::Gamma;
        let r = score(&refs(), &y, &s).unwrap();
        let best = refs()
            .rows()
            .map(|x| soart3(x, &y, Orders::DEFAULT).gamma)
            .fold(f64::INFINITY, f64::min);
        assert_eq!(r.score, best);
        assert_eq!(r.soart3.gamma, best);
    }

    #[test]
    fn a_huge_k_is_the_mean_of_all_without_allocating_for_k() {
        let y = [0.1f32, 2.0, 0.3];
        let all = score(&refs(), &y, &scoring(3, 0.0)).unwrap();
        for k in [1usize << 40, 2_000_000_000_000_000_000, usize::MAX] {
            let r = score(&refs(), &y, &scoring(k, 0.0)).unwrap();
            assert_eq!(r.score, all.score, "k = {k}");
        }
    }

    #[test]
    fn equal_to_threshold_passes() {
        let y = [0.0f32, 1.0, 0.5];
        let r0 = score(&refs(), &y, &scoring(1, 0.0)).unwrap();
        let r = score(&refs(), &y, &scoring(1, r0.score)).unwrap();
        assert_eq!(r.decision, Decision::Pass);
    }

    #[test]
    fn leave_one_out_skips_self() {
        let loo = leave_one_out(&refs(), &scoring(1, 0.0));
        assert_eq!(loo.len(), 3);
        assert!(loo.iter().all(|s| *s > 0.1), "{loo:?}");
        let single = Embeddings {
            dim: 3,
            data: vec![1.0, 0.0, 0.0],
        };
        assert!(leave_one_out(&single, &scoring(1, 0.0)).is_empty());
    }

    #[test]
    fn quantile_threshold() {
        let scores: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(threshold_for_false_reject_rate(&scores, 0.01), Some(99.0));
        assert_eq!(threshold_for_false_reject_rate(&scores, 0.0), Some(100.0));
        assert_eq!(threshold_for_false_reject_rate(&scores, 0.5), Some(50.0));
        assert_eq!(threshold_for_false_reject_rate(&[3.0], 0.05), Some(3.0));
        assert_eq!(threshold_for_false_reject_rate(&[], 0.05), None);
    }
}
