//! Reference sets: embeddings of good parts and the threshold, stored as safetensors.
//!
//! Format (shared with `models/evaluate.py`, documented in `models/README.md`): one `f32`
//! tensor `references` of shape `[count, embedding_dim]` and string metadata:
//! `format = "inspectord-references"`, `format_version = "1"`, `model_sha256`, `embedding_dim`,
//! `count`, `threshold`, `score` (`eta`|`gamma`), `k`, `eta_p`, `gamma_p`, `threshold_method`,
//! `created_by`, `created_at`, `source`; files written by `inspectord enroll` add
//! `enrolled_count` (good parts embedded) and `coreset` (`k-center` when `--max-references`
//! kept fewer than were enrolled, else `none`), both or neither. Loading refuses values the scoring cannot use, naming
//! the key: `count` and `embedding_dim` must match the tensor, `k` must be from 1 to `count`,
//! `eta_p` and `gamma_p` Minkowski orders from 1 to 64, `threshold` finite. The file must be a
//! regular file of at most `config::defaults::REFERENCES_MAX_BYTES`. The reference-set id is the first 16 hex digits of the
//! SHA-256 of the whole file, so it changes whenever anything in the file does.

use crate::config::defaults;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensorError, SafeTensors, tensor::TensorView};

use crate::encoder::sha256_hex;
use crate::input_file::{self, InputError};
use crate::score::{Embeddings, ScoreKind, Scoring};
use crate::soart3::Orders;

pub const FORMAT: &str = "inspectord-references";
pub const FORMAT_VERSION: &str = "1";
pub const TENSOR: &str = "references";

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read references {path}")]
    Read { path: PathBuf, source: InputError },
    #[error("references {path} are not a valid safetensors file")]
    Safetensors {
        path: PathBuf,
        source: SafeTensorError,
    },
    #[error("cannot write references {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("references {path} are not a valid safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("references {path}: metadata `{key}` {problem}")]
    Metadata {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
    #[error(
        "references {path} were made by a different model (their model_sha256 is {theirs}, the loaded model {model} \
         has {ours}); enroll them again with this model: inspectord enroll --config ... --images ... --out {path}"
    )]
    OtherModel {
        path: PathBuf,
        model: PathBuf,
        theirs: String,
        ours: String,
    },
    #[error("references {path} hold embeddings of dimension {theirs}, the model produces {ours}")]
    Dimension {
        path: PathBuf,
        theirs: usize,
        ours: usize,
    },
}

/// What a reference file says besides its embeddings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceMeta {
    pub model_sha256: String,
    pub threshold: f64,
    /// The scoring the threshold was chosen for.
    pub kind: ScoreKind,
    pub k: usize,
    pub orders: Orders,
    pub threshold_method: String,
    pub created_by: String,
    pub created_at: String,
    pub source: String,
    /// How the rows were chosen from the enrolled good parts (`enrolled_count`, `coreset`);
    /// `None` in a file that does not say (e.g. one written by `models/evaluate.py`).
    pub coreset: Option<CoresetMeta>,
}

/// The `enrolled_count` and `coreset` metadata: how many good parts were enrolled, and the
/// method that selected the file's `count` rows from them (`"k-center"`, or `"none"` when all
/// were kept).
#[derive(Debug, Clone, PartialEq)]
pub struct CoresetMeta {
    pub enrolled_count: usize,
    pub method: String,
}

impl ReferenceMeta {
    pub fn scoring(&self) -> Scoring {
        Scoring {
            kind: self.kind,
            k: self.k,
            orders: self.orders,
            threshold: self.threshold,
        }
    }
}

/// A loaded reference set.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceSet {
    pub path: PathBuf,
    /// First 16 hex digits of the file's SHA-256.
    pub id: String,
    pub embeddings: Embeddings,
    pub meta: ReferenceMeta,
}

impl ReferenceSet {
    /// Loads and validates a reference file against the model that will score with it.
    pub fn load(
        path: &Path,
        model_sha256: &str,
        model_path: &Path,
        dim: usize,
    ) -> Result<Self, ReferenceError> {
        let bytes = input_file::read(path, defaults::REFERENCES_MAX_BYTES).map_err(|source| {
            ReferenceError::Read {
                path: path.into(),
                source,
            }
        })?;
        let set = Self::parse(path, &bytes)?;
        if set.meta.model_sha256 != model_sha256 {
            return Err(ReferenceError::OtherModel {
                path: path.into(),
                model: model_path.into(),
                theirs: set.meta.model_sha256,
                ours: model_sha256.to_string(),
            });
        }
        if set.embeddings.dim != dim {
            return Err(ReferenceError::Dimension {
                path: path.into(),
                theirs: set.embeddings.dim,
                ours: dim,
            });
        }
        Ok(set)
    }

    /// Parses a reference file's bytes (no model check).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ReferenceError> {
        let format_err = |reason: String| ReferenceError::Format {
            path: path.into(),
            reason,
        };
        let safetensors_err = |source| ReferenceError::Safetensors {
            path: path.into(),
            source,
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(safetensors_err)?;
        let tensors = SafeTensors::deserialize(bytes).map_err(safetensors_err)?;
        let (count, dim, data) = embeddings_of(&tensors, format_err)?;
        let empty = HashMap::new();
        let md = header.metadata().as_ref().unwrap_or(&empty);
        let meta = meta_of(path, md, count, dim)?;
        Ok(ReferenceSet {
            path: path.into(),
            id: sha256_hex(bytes)[..16].to_string(),
            embeddings: Embeddings { dim, data },
            meta,
        })
    }

    /// Writes a reference file atomically (temporary file + rename) and returns its bytes.
    pub fn write(
        path: &Path,
        embeddings: &Embeddings,
        meta: &ReferenceMeta,
    ) -> Result<Vec<u8>, ReferenceError> {
        let bytes = serialize(embeddings, meta).map_err(|reason| ReferenceError::Format {
            path: path.into(),
            reason,
        })?;
        let tmp = path.with_extension("safetensors.tmp");
        let write_err = |source| ReferenceError::Write {
            path: path.into(),
            source,
        };
        std::fs::write(&tmp, &bytes).map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)?;
        Ok(bytes)
    }
}

/// The embeddings tensor: (count, dim, values), all finite.
fn embeddings_of(
    tensors: &SafeTensors,
    format_err: impl Fn(String) -> ReferenceError,
) -> Result<(usize, usize, Vec<f32>), ReferenceError> {
    let view = tensors
        .tensor(TENSOR)
        .map_err(|_| format_err(format!("no tensor named `{TENSOR}`")))?;
    if view.dtype() != Dtype::F32 {
        return Err(format_err(format!(
            "tensor `{TENSOR}` is {:?}, expected F32",
            view.dtype()
        )));
    }
    let &[count, dim] = view.shape() else {
        return Err(format_err(format!(
            "tensor `{TENSOR}` has shape {:?}, expected [count, dim]",
            view.shape()
        )));
    };
    if count == 0 || dim == 0 {
        return Err(format_err(format!(
            "tensor `{TENSOR}` is empty ({count}x{dim})"
        )));
    }
    let data: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(format_err(format!(
            "embedding {} holds a non-finite value",
            i / dim
        )));
    }
    Ok((count, dim, data))
}

/// The string metadata, checked against the tensor's shape.
fn meta_of(
    path: &Path,
    md: &HashMap<String, String>,
    count: usize,
    dim: usize,
) -> Result<ReferenceMeta, ReferenceError> {
    let meta_err = |key: &'static str, problem: String| ReferenceError::Metadata {
        path: path.into(),
        key,
        problem,
    };
    let get = |key: &'static str| {
        md.get(key)
            .map(String::as_str)
            .ok_or_else(|| meta_err(key, "is missing".into()))
    };
    fn parse<T: std::str::FromStr>(
        key: &'static str,
        v: &str,
        err: impl Fn(&'static str, String) -> ReferenceError,
    ) -> Result<T, ReferenceError> {
        v.trim()
            .parse::<T>()
            .map_err(|_| err(key, format!("is not valid: {v:?}")))
    }

    let format = get("format")?;
    if format != FORMAT {
        return Err(meta_err(
            "format",
            format!("is {format:?}, expected {FORMAT:?}"),
        ));
    }
    let version = get("format_version")?;
    if version != FORMAT_VERSION {
        return Err(meta_err(
            "format_version",
            format!("is {version:?}, this daemon reads {FORMAT_VERSION:?}"),
        ));
    }
    let declared_dim: usize = parse("embedding_dim", get("embedding_dim")?, meta_err)?;
    if declared_dim != dim {
        return Err(meta_err(
            "embedding_dim",
            format!("says {declared_dim}, the tensor has {dim}"),
        ));
    }
    let declared_count: usize = parse("count", get("count")?, meta_err)?;
    if declared_count != count {
        return Err(meta_err(
            "count",
            format!("says {declared_count}, the tensor has {count}"),
        ));
    }
    let threshold: f64 = parse("threshold", get("threshold")?, meta_err)?;
    if !threshold.is_finite() {
        return Err(meta_err(
            "threshold",
            format!("is {threshold}; it must be finite"),
        ));
    }
    let kind = match md.get("score") {
        None => defaults::SCORE,
        Some(s) => ScoreKind::parse(s)
            .ok_or_else(|| meta_err("score", format!("must be eta or gamma, got {s:?}")))?,
    };
    let k: usize = md
        .get("k")
        .map(|v| parse("k", v, meta_err))
        .transpose()?
        .unwrap_or(defaults::K);
    if k == 0 || k > count {
        return Err(meta_err(
            "k",
            format!("is {k}; it must be from 1 to the number of references ({count})"),
        ));
    }
    let order = |key: &'static str, default: f64| -> Result<f64, ReferenceError> {
        let p: f64 = md
            .get(key)
            .map(|v| parse(key, v, meta_err))
            .transpose()?
            .unwrap_or(default);
        if !crate::soart3::ORDER_RANGE.contains(&p) {
            return Err(meta_err(
                key,
                format!("is {p}; it must be a Minkowski order from 1 to 64"),
            ));
        }
        Ok(p)
    };
    let eta_p = order("eta_p", defaults::ORDERS.eta_p)?;
    let gamma_p = order("gamma_p", defaults::ORDERS.gamma_p)?;
    let text = |key: &str| md.get(key).cloned().unwrap_or_default();
    let meta = ReferenceMeta {
        model_sha256: get("model_sha256")?.to_string(),
        threshold,
        kind,
        k,
        orders: Orders { eta_p, gamma_p },
        threshold_method: text("threshold_method"),
        created_by: text("created_by"),
        created_at: text("created_at"),
        source: text("source"),
        coreset: coreset_of(md, count, meta_err)?,
    };
    Ok(meta)
}

/// `enrolled_count` and `coreset`: both or neither; at least `count` enrolled.
fn coreset_of(
    md: &HashMap<String, String>,
    count: usize,
    meta_err: impl Fn(&'static str, String) -> ReferenceError,
) -> Result<Option<CoresetMeta>, ReferenceError> {
    match (md.get("enrolled_count"), md.get("coreset")) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(meta_err(
            "coreset",
            "is missing (the file has `enrolled_count`)".into(),
        )),
        (None, Some(_)) => Err(meta_err(
            "enrolled_count",
            "is missing (the file has `coreset`)".into(),
        )),
        (Some(n), Some(method)) => match n.trim().parse::<usize>() {
            Ok(enrolled_count) if enrolled_count >= count => Ok(Some(CoresetMeta {
                enrolled_count,
                method: method.clone(),
            })),
            _ => Err(meta_err(
                "enrolled_count",
                format!("is {n:?}; it must be a whole number of at least `count` ({count})"),
            )),
        },
    }
}

fn serialize(embeddings: &Embeddings, meta: &ReferenceMeta) -> Result<Vec<u8>, String> {
    let raw: &[u8] = bytemuck::cast_slice(&embeddings.data);
    let view = TensorView::new(Dtype::F32, vec![embeddings.len(), embeddings.dim], raw)
        .map_err(|e| e.to_string())?;
    let md: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("format_version", FORMAT_VERSION.to_string()),
        ("model_sha256", meta.model_sha256.clone()),
        ("embedding_dim", embeddings.dim.to_string()),
        ("count", embeddings.len().to_string()),
        ("threshold", format!("{:?}", meta.threshold)),
        ("score", meta.kind.as_str().to_string()),
        ("k", meta.k.to_string()),
        ("eta_p", format!("{:?}", meta.orders.eta_p)),
        ("gamma_p", format!("{:?}", meta.orders.gamma_p)),
        ("threshold_method", meta.threshold_method.clone()),
        ("created_by", meta.created_by.clone()),
        ("created_at", meta.created_at.clone()),
        ("source", meta.source.clone()),
    ]
    .into_iter()
    .chain(meta.coreset.iter().flat_map(|c| {
        [
            ("enrolled_count", c.enrolled_count.to_string()),
            ("coreset", c.method.clone()),
        ]
    }))
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    safetensors::serialize([(TENSOR, view)], Some(md)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ReferenceMeta {
        ReferenceMeta {
            model_sha256: "ab".repeat(32),
            threshold: 0.125,
            kind: ScoreKind::Gamma,
            k: 2,
            orders: Orders::LEGACY,
            threshold_method: "test".into(),
            created_by: "unit test".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            source: "synthetic".into(),
            coreset: Some(CoresetMeta {
                enrolled_count: 5,
                method: "k-center".into(),
            }),
        }
    }

    #[test]
    fn round_trip_and_model_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.safetensors");
        let emb = Embeddings {
            dim: 2,
            data: vec![1.0, 2.0, -3.5, 4.25],
        };
        let bytes = ReferenceSet::write(&path, &emb, &meta()).unwrap();
        let set = ReferenceSet::load(&path, &"ab".repeat(32), Path::new("m.onnx"), 2).unwrap();
        assert_eq!(set.embeddings, emb);
        assert_eq!(set.meta, meta());
        assert_eq!(set.id, sha256_hex(&bytes)[..16]);

        let err = ReferenceSet::load(&path, &"cd".repeat(32), Path::new("m.onnx"), 2).unwrap_err();
        assert!(matches!(err, ReferenceError::OtherModel { .. }), "{err}");
        assert!(err.to_string().contains("different model"));
        let err = ReferenceSet::load(&path, &"ab".repeat(32), Path::new("m.onnx"), 3).unwrap_err();
        assert!(matches!(err, ReferenceError::Dimension { .. }), "{err}");
    }

    /// A valid two-reference file with one metadata value replaced.
    fn with_metadata(key: &str, value: &str) -> Vec<u8> {
        let emb = Embeddings {
            dim: 2,
            data: vec![1.0, 2.0, -3.5, 4.25],
        };
        let bytes = serialize(&emb, &meta()).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut md = header.metadata().clone().unwrap();
        md.insert(key.into(), value.into());
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        safetensors::serialize(tensors.tensors(), Some(md)).unwrap()
    }

    #[test]
    fn out_of_range_metadata_is_refused_naming_the_key() {
        let path = Path::new("r.safetensors");
        for (key, value) in [
            ("eta_p", "NaN"),
            ("eta_p", "inf"),
            ("eta_p", "-inf"),
            ("eta_p", "0.5"),
            ("eta_p", "65"),
            ("gamma_p", "NaN"),
            ("gamma_p", "inf"),
            ("gamma_p", "0"),
            ("threshold", "NaN"),
            ("threshold", "-inf"),
            ("k", "0"),
            ("k", "3"),
            ("k", "1000000000000"),
            ("k", "2000000000000000000"),
            ("k", "1e12"),
            ("count", "3"),
            ("embedding_dim", "3"),
            ("enrolled_count", "1"),
            ("enrolled_count", "-2"),
            ("enrolled_count", "many"),
        ] {
            match ReferenceSet::parse(path, &with_metadata(key, value)) {
                Err(ReferenceError::Metadata { key: named, .. }) if named == key => {}
                other => {
                    panic!("{key} = {value}: expected a refusal naming `{key}`, got {other:?}")
                }
            }
        }
        // In range: accepted.
        for (key, value) in [
            ("eta_p", "64"),
            ("gamma_p", "1"),
            ("k", "2"),
            ("enrolled_count", "2"),
        ] {
            let set = ReferenceSet::parse(path, &with_metadata(key, value));
            assert!(set.is_ok(), "{key} = {value}: {set:?}");
        }
    }

    #[test]
    fn garbage_is_a_safetensors_error_with_its_cause() {
        let err = ReferenceSet::parse(Path::new("x"), b"definitely not safetensors").unwrap_err();
        assert!(matches!(err, ReferenceError::Safetensors { .. }), "{err}");
        // The parser's own error is the cause, not a copy of it in the message.
        let cause = std::error::Error::source(&err)
            .expect("a cause")
            .to_string();
        assert!(!err.to_string().contains(&cause), "{err} / {cause}");
    }
}
