//! The per-frame work: pixels → tensor → embedding → score → outcome.
//!
//! [`Inspector`] owns one worker's preprocessing buffers and ONNX Runtime session; the pipeline
//! gives one to each encoder thread, and `enroll` uses one directly, so both embed with the
//! same code. [`Scorer`] is the reference set with its effective scoring settings; the pipeline
//! shares it between workers and can swap it between frames.

use std::sync::Arc;

use crate::config::ScoringConfig;
use crate::encoder::{EncodeError, Encoder};
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

/// A reference set and the scoring settings in force with it.
#[derive(Debug, Clone)]
pub struct Scorer {
    pub set: ReferenceSet,
    pub scoring: Scoring,
    pub id: Arc<str>,
}

impl Scorer {
    /// Settings: the config's `[scoring]` keys where given, else what the reference file
    /// records (the setting its threshold was chosen for).
    pub fn new(set: ReferenceSet, overrides: &ScoringConfig) -> Self {
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
        let id = Arc::from(set.id.as_str());
        Self { set, scoring, id }
    }

    pub fn outcome(&self, embedding: &[f32]) -> Outcome {
        match score::score(&self.set.embeddings, embedding, &self.scoring) {
            Some(s) => Outcome::Inspected {
                decision: s.decision,
                score: s.score,
                threshold: self.scoring.threshold,
                soart3: s.soart3,
                reference_index: s.nearest,
            },
            None => Outcome::Error {
                reason: "the reference set is empty".into(),
            },
        }
    }
}
