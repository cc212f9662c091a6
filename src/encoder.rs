//! The ONNX encoder: loading the model, checking it against its own contract, and running it.
//!
//! [`Model`] is loaded once (bytes, SHA-256, contract, input/output names); each worker then
//! gets its own [`Encoder`] (one ONNX Runtime session, warmed up) from [`Model::encoder`].

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};

use crate::config::defaults;
use crate::contract::{ContractError, ModelContract};
use crate::input_file::{self, InputError};
use crate::onnxruntime::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model {path}")]
    Read { path: PathBuf, source: InputError },
    #[error("ONNX Runtime cannot load model {path}")]
    Session {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error("model {path}: the warm-up run failed")]
    WarmUp {
        path: PathBuf,
        #[source]
        source: EncodeError,
    },
    #[error("model {path} does not state a valid preprocessing contract")]
    Contract {
        path: PathBuf,
        source: ContractError,
    },
    #[error("model {path} does not match its own metadata: {reason}")]
    Mismatch { path: PathBuf, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("inference failed")]
    Run(#[source] ort::Error),
    #[error("the model has no output `{0}`")]
    MissingOutput(String),
    #[error("model returned {got} values, expected an embedding of {want}")]
    Dimension { got: usize, want: usize },
    #[error("model returned a non-finite embedding (value {value} at index {index})")]
    NonFinite { index: usize, value: f32 },
}

/// A loaded, validated model, shared by all workers.
pub struct Model {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of the `.onnx` file; reference sets record it.
    pub sha256: String,
    pub contract: ModelContract,
    pub input_name: String,
    pub output_name: String,
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Model {
    /// Reads the model file (a regular file of at most `defaults::MODEL_MAX_BYTES`), opens one session to read its metadata, and checks that the
    /// graph's input and output shapes agree with the contract.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<Model, ModelError> {
        let bytes = input_file::read(path, defaults::MODEL_MAX_BYTES).map_err(|source| {
            ModelError::Read {
                path: path.into(),
                source,
            }
        })?;
        let session = new_session(runtime, &bytes, 1).map_err(|source| ModelError::Session {
            path: path.into(),
            source,
        })?;
        let metadata = session.metadata().map_err(|source| ModelError::Session {
            path: path.into(),
            source,
        })?;
        let contract = ModelContract::from_metadata(|k| metadata.custom(k)).map_err(|source| {
            ModelError::Contract {
                path: path.into(),
                source,
            }
        })?;
        drop(metadata);

        let mismatch = |reason: String| ModelError::Mismatch {
            path: path.into(),
            reason,
        };
        let [input] = session.inputs() else {
            return Err(mismatch(format!(
                "expected one input, found {}",
                session.inputs().len()
            )));
        };
        let [output] = session.outputs() else {
            return Err(mismatch(format!(
                "expected one output, found {}",
                session.outputs().len()
            )));
        };
        let in_shape = input
            .dtype()
            .tensor_shape()
            .ok_or_else(|| mismatch(format!("input `{}` is not a tensor", input.name())))?;
        let want = [
            i64::from(contract.channels),
            i64::from(contract.height),
            i64::from(contract.width),
        ];
        if in_shape.len() != 4 || in_shape[1..] != want {
            return Err(mismatch(format!(
                "input `{}` has shape {:?}; the metadata says [N, {}, {}, {}] (channels, input_height, input_width)",
                input.name(),
                &in_shape[..],
                want[0],
                want[1],
                want[2]
            )));
        }
        if input.dtype().tensor_type() != Some(ort::value::TensorElementType::Float32) {
            return Err(mismatch(format!("input `{}` is not float32", input.name())));
        }
        let out_shape = output
            .dtype()
            .tensor_shape()
            .ok_or_else(|| mismatch(format!("output `{}` is not a tensor", output.name())))?;
        let dim = out_shape.last().copied().unwrap_or(-1);
        if out_shape.len() != 2 || (dim >= 0 && dim as usize != contract.embedding_dim) {
            return Err(mismatch(format!(
                "output `{}` has shape {:?}; the metadata says [N, {}] (embedding_dim)",
                output.name(),
                &out_shape[..],
                contract.embedding_dim
            )));
        }
        Ok(Model {
            path: path.into(),
            sha256: sha256_hex(&bytes),
            input_name: input.name().to_string(),
            output_name: output.name().to_string(),
            bytes,
            contract,
        })
    }

    /// A new session for one worker, warmed up with one run on a zero frame.
    pub fn encoder(
        &self,
        runtime: &Runtime,
        intra_op_threads: usize,
    ) -> Result<Encoder, ModelError> {
        let session = new_session(runtime, &self.bytes, intra_op_threads).map_err(|source| {
            ModelError::Session {
                path: self.path.clone(),
                source,
            }
        })?;
        let mut encoder = Encoder {
            session,
            input_name: self.input_name.clone(),
            output_name: self.output_name.clone(),
            shape: [
                1,
                self.contract.channels as usize,
                self.contract.height as usize,
                self.contract.width as usize,
            ],
            dim: self.contract.embedding_dim,
        };
        let zeros = vec![0.0f32; self.contract.input_len()];
        encoder.embed(&zeros).map_err(|source| ModelError::WarmUp {
            path: self.path.clone(),
            source,
        })?;
        Ok(encoder)
    }
}

fn new_session(
    runtime: &Runtime,
    bytes: &[u8],
    intra_op_threads: usize,
) -> Result<Session, ort::Error> {
    Session::builder(&runtime.environment)
        .and_then(|b| Ok(b.with_intra_threads(intra_op_threads)?))
        .and_then(|b| Ok(b.with_inter_threads(1)?))
        .and_then(|mut b| b.commit_from_memory(bytes))
}

/// One ONNX Runtime session; owned by one worker thread.
pub struct Encoder {
    session: Session,
    input_name: String,
    output_name: String,
    shape: [usize; 4],
    dim: usize,
}

impl Encoder {
    /// Runs the model on one preprocessed tensor (C·H·W values) and returns its embedding,
    /// checked for dimension and finiteness.
    pub fn embed(&mut self, tensor: &[f32]) -> Result<Vec<f32>, EncodeError> {
        let input = TensorRef::from_array_view((self.shape, tensor)).map_err(EncodeError::Run)?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => input])
            .map_err(EncodeError::Run)?;
        let value = outputs
            .get(&self.output_name)
            .ok_or_else(|| EncodeError::MissingOutput(self.output_name.clone()))?;
        let (_, data) = value
            .try_extract_tensor::<f32>()
            .map_err(EncodeError::Run)?;
        if data.len() != self.dim {
            return Err(EncodeError::Dimension {
                got: data.len(),
                want: self.dim,
            });
        }
        if let Some((index, &value)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(EncodeError::NonFinite { index, value });
        }
        Ok(data.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `main` prints the chain one cause a line: no message restates the one it wraps.
    #[test]
    fn a_contract_error_says_it_once() {
        let e = ModelError::Contract {
            path: "m.onnx".into(),
            source: ContractError {
                problems: vec!["input_width is missing".into()],
            },
        };
        let chain = crate::error::chain(&e);
        assert_eq!(chain.matches("contract").count(), 1, "{chain}");
        assert!(chain.ends_with(": input_width is missing"), "{chain}");
    }
}
