//! The per-frame work: pixels → tensor → embedding → score → outcome.
//!
//! [`Inspector`] owns one worker's preprocessing buffers and ONNX Runtime session; the pipeline
//! gives one to each encoder thread, and `enroll` uses one directly, so both embed with the
//! same code. [`Scorer`] is the reference set with its effective scoring settings; the pipeline
//! shares it between workers and can swap it between frames.

use std::sync::Arc;

use crate::config::ScoringConfig;
use crate::encoder::{EncodeError, Encoder};
use crate::prefilter::Prepared;
use crate::preprocess::{PreprocessError, Preprocessor};
use crate::references::ReferenceSet;
use crate::score::{self, Scoring};
use crate::soart3::Orders;
use crate::source::Payload;
use crate::verdict::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// One worker's preprocessing and encoder.
pub struct Inspector {
    pre: Preprocessor,
    encoder: Encoder,
    tensor: Vec<f32>,
}

impl Inspector {
    pub fn new(pre: Preprocessor, encoder: Encoder) -> Self {
        Self {
            pre,
            encoder,
            tensor: Vec::new(),
        }
    }

    /// The embedding of one frame.
    pub fn embed(&mut self, payload: &Payload) -> Result<Vec<f32>, InspectError> {
        match payload {
            Payload::Encoded(bytes) => {
                let image = self.pre.decode(bytes)?;
                self.pre.tensor(&image, &mut self.tensor)?;
            }
            Payload::Decoded(image) => self.pre.tensor(image, &mut self.tensor)?,
        }
        Ok(self.encoder.embed(&self.tensor)?)
    }

    /// Embeds and scores one frame; never fails: a problem becomes an `Error` outcome.
    pub fn inspect(&mut self, payload: Result<&Payload, &str>, scorer: &Scorer) -> Outcome {
        let payload = match payload {
            Ok(p) => p,
            Err(reason) => {
                return Outcome::Error {
                    reason: reason.to_string(),
                };
            }
        };
        match self.embed(payload) {
            Ok(embedding) => scorer.outcome(&embedding),
            Err(e) => Outcome::Error {
                reason: crate::error::chain(&e),
            },
        }
    }
}

/// A scoring setting that cannot be used with the reference set it would score against.
#[derive(Debug, thiserror::Error)]
#[error("{setting} = {value} {problem}")]
pub struct ScoringError {
    /// `scoring.k` when the config sets it, else the reference file's metadata key.
    pub setting: String,
    pub value: String,
    pub problem: String,
}

/// A reference set and the scoring settings in force with it.
#[derive(Debug, Clone)]
pub struct Scorer {
    pub set: ReferenceSet,
    pub scoring: Scoring,
    /// Per-reference values for the prefilter (one `f64` per reference).
    prepared: Prepared,
    pub id: Arc<str>,
}

impl Scorer {
    /// Settings: the config's `[scoring]` keys where given, else what the reference file
    /// records (the setting its threshold was chosen for). Each effective setting is checked
    /// against the set (`k` at most the number of references, orders in range, a finite
    /// threshold), and the set is scored against itself once: a scorer that is built scores.
    pub fn new(set: ReferenceSet, overrides: &ScoringConfig) -> Result<Self, ScoringError> {
        let file = set.meta.scoring();
        let scoring = Scoring {
            kind: overrides.score.unwrap_or(file.kind),
            k: overrides.k.unwrap_or(file.k),
            orders: Orders {
                eta_p: overrides.eta_p.unwrap_or(file.orders.eta_p),
                gamma_p: overrides.gamma_p.unwrap_or(file.orders.gamma_p),
            },
            threshold: overrides.threshold.unwrap_or(file.threshold),
        };
        check_scoring(&set, overrides, &scoring)?;
        let id = Arc::from(set.id.as_str());
        let prepared = Prepared::new(&set.embeddings);
        Ok(Self {
            set,
            scoring,
            prepared,
            id,
        })
    }

    pub fn outcome(&self, embedding: &[f32]) -> Outcome {
        let refs = &self.set.embeddings;
        match crate::prefilter::score(refs, &self.prepared, embedding, &self.scoring, None) {
            Ok(s) => Outcome::Inspected {
                decision: s.decision,
                score: s.score,
                threshold: self.scoring.threshold,
                soart3: s.soart3,
                reference_index: s.nearest,
            },
            Err(e) => Outcome::Error {
                reason: crate::error::chain(&e),
            },
        }
    }
}

/// The effective settings against the set they score with; names the config key when the
/// config set the value, else the reference file's metadata key.
fn check_scoring(
    set: &ReferenceSet,
    overrides: &ScoringConfig,
    s: &Scoring,
) -> Result<(), ScoringError> {
    let refused = |key: &str, from_config: bool, value: String, problem: String| {
        let setting = if from_config {
            format!("scoring.{key} (config)")
        } else {
            format!("`{key}` of references {}", set.path.display())
        };
        Err(ScoringError {
            setting,
            value,
            problem,
        })
    };
    let count = set.embeddings.len();
    if s.k == 0 || s.k > count {
        let problem = format!(
            "must be from 1 to the number of references in {} ({count})",
            set.path.display()
        );
        return refused("k", overrides.k.is_some(), s.k.to_string(), problem);
    }
    for (key, value, from_config) in [
        ("eta_p", s.orders.eta_p, overrides.eta_p.is_some()),
        ("gamma_p", s.orders.gamma_p, overrides.gamma_p.is_some()),
    ] {
        if !crate::soart3::ORDER_RANGE.contains(&value) {
            let problem = "must be a Minkowski order from 1 to 64".to_string();
            return refused(key, from_config, value.to_string(), problem);
        }
    }
    if !s.threshold.is_finite() {
        let (value, from_config) = (s.threshold.to_string(), overrides.threshold.is_some());
        return refused("threshold", from_config, value, "must be finite".into());
    }
    // One trial: the first reference against the set (a score of 0 for k = 1).
    if let Some(first) = set.embeddings.rows().next()
        && let Err(e) = score::score(&set.embeddings, first, s)
    {
        let problem = format!("cannot score the references themselves: {e}");
        return refused(
            "score",
            overrides.score.is_some(),
            s.kind.as_str().into(),
            problem,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::references::ReferenceMeta;
    use crate::score::{Decision, Embeddings, ScoreKind};

    fn scorer(kind: ScoreKind, orders: Orders) -> Scorer {
        let set = ReferenceSet {
            path: "r.safetensors".into(),
            id: "0123456789abcdef".into(),
            embeddings: Embeddings {
                dim: 2,
                data: vec![1.0, 0.0, 0.0, 1.0],
            },
            meta: ReferenceMeta {
                model_sha256: "ab".repeat(32),
                threshold: 0.5,
                kind,
                k: 1,
                orders,
                threshold_method: String::new(),
                created_by: String::new(),
                created_at: String::new(),
                source: String::new(),
                coreset: None,
            },
        };
        Scorer::new(set, &ScoringConfig::default()).unwrap()
    }

    /// Orders the config allows, a finite embedding, and still an infinite or NaN score (the
    /// Minkowski sum overflows): never a pass.
    #[test]
    fn a_non_finite_score_is_an_error_verdict_not_a_pass() {
        let huge = [f32::MAX, -f32::MAX];
        for (kind, orders) in [
            (
                ScoreKind::Gamma,
                Orders {
                    eta_p: 2.0,
                    gamma_p: 64.0,
                },
            ),
            (
                ScoreKind::Eta,
                Orders {
                    eta_p: 64.0,
                    gamma_p: 6.0,
                },
            ),
        ] {
            match scorer(kind, orders).outcome(&huge) {
                Outcome::Error { reason } => {
                    assert!(reason.contains("not finite"), "{reason}")
                }
                other => panic!("{kind:?} {orders:?}: {other:?}"),
            }
        }
        // An ordinary embedding still passes.
        let ok = scorer(ScoreKind::Eta, Orders::DEFAULT).outcome(&[1.0, 0.0]);
        assert!(
            matches!(
                ok,
                Outcome::Inspected {
                    decision: Decision::Pass,
                    ..
                }
            ),
            "{ok:?}"
        );
    }

    #[test]
    fn settings_are_checked_against_the_set() {
        let mut base = scorer(ScoreKind::Eta, Orders::DEFAULT).set;
        let over_k = ScoringConfig {
            k: Some(3),
            ..ScoringConfig::default()
        };
        let e = Scorer::new(base.clone(), &over_k).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("scoring.k (config) = 3 must be from 1"),
            "{e}"
        );
        assert!(e.to_string().contains("(2)"), "{e}");
        base.meta.k = 5;
        let e = Scorer::new(base.clone(), &ScoringConfig::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("`k` of references r.safetensors = 5"),
            "{e}"
        );
        // The config's k = 2 replaces the file's 5 and fits.
        let two = ScoringConfig {
            k: Some(2),
            ..ScoringConfig::default()
        };
        Scorer::new(base.clone(), &two).unwrap();
        base.meta.k = 1;
        base.meta.threshold = f64::NAN;
        let e = Scorer::new(base, &ScoringConfig::default()).unwrap_err();
        assert!(e.to_string().contains("threshold"), "{e}");
    }
}
