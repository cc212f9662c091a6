//! The model's preprocessing contract, read from the ONNX file's `metadata_props`.
//!
//! The training scripts write these keys (see `models/README.md`); the daemon reads them so
//! that one file says how a frame becomes a tensor. Every problem is collected, not just the
//! first.

use std::fmt;

/// How an image is resampled to the model's input size (the `fast_image_resize` filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeFilter {
    /// Area average; for integer factors exactly the mean of each block.
    Box,
    Bilinear,
    Hamming,
    CatmullRom,
    Mitchell,
    Gaussian,
    Lanczos3,
}

impl ResizeFilter {
    pub const NAMES: &'static [&'static str] = &[
        "box",
        "bilinear",
        "hamming",
        "catmull-rom",
        "mitchell",
        "gaussian",
        "lanczos3",
    ];

    /// The name the metadata uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Box => "box",
            Self::Bilinear => "bilinear",
            Self::Hamming => "hamming",
            Self::CatmullRom => "catmull-rom",
            Self::Mitchell => "mitchell",
            Self::Gaussian => "gaussian",
            Self::Lanczos3 => "lanczos3",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "box" | "area" => Self::Box,
            "bilinear" | "triangle" => Self::Bilinear,
            "hamming" => Self::Hamming,
            "catmull-rom" | "bicubic" => Self::CatmullRom,
            "mitchell" => Self::Mitchell,
            "gaussian" => Self::Gaussian,
            "lanczos3" => Self::Lanczos3,
            _ => return None,
        })
    }
}

/// What the model expects as input and produces as output.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelContract {
    pub width: u32,
    pub height: u32,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: u32,
    pub resize: ResizeFilter,
    /// Multiplies the 8-bit pixel value (usually 1/255).
    pub pixel_scale: f32,
    /// One value per channel.
    pub mean: Vec<f32>,
    /// One value per channel, all > 0.
    pub std: Vec<f32>,
    pub embedding_dim: usize,
    pub name: String,
    pub version: String,
    /// SHA-256 of the split CSV the model was trained on, if recorded.
    pub split_sha256: Option<String>,
}

/// Every problem found in a model's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractError {
    pub problems: Vec<String>,
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The wrapping error says whose contract this is; this says what is wrong with it.
        write!(f, "{}", self.problems.join("; "))
    }
}

impl std::error::Error for ContractError {}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    problems: &mut Vec<String>,
    key: &str,
    v: Option<String>,
) -> Option<T> {
    let v = v?;
    match v.trim().parse::<T>() {
        Ok(x) if x > T::default() => Some(x),
        _ => {
            problems.push(format!("key `{key}` must be a positive number, got {v:?}"));
            None
        }
    }
}
fn floats(problems: &mut Vec<String>, key: &str, v: Option<String>) -> Option<Vec<f32>> {
    let v = v?;
    let parsed: Result<Vec<f32>, _> = v.split(',').map(|s| s.trim().parse::<f32>()).collect();
    match parsed {
        Ok(xs) if xs.iter().all(|x| x.is_finite()) => Some(xs),
        _ => {
            problems.push(format!(
                "key `{key}` must be comma-separated finite numbers, got {v:?}"
            ));
            None
        }
    }
}

/// `std` > 0, and `mean`/`std` with one value or one per channel.
fn check_normalisation(
    problems: &mut Vec<String>,
    channels: Option<u32>,
    mean: Option<&[f32]>,
    std: Option<&[f32]>,
) {
    if std.is_some_and(|s| s.iter().any(|x| *x <= 0.0)) {
        problems.push("key `std` must be > 0 for every channel".to_string());
    }
    let Some(c) = channels else {
        return;
    };
    for (key, v) in [("mean", mean), ("std", std)] {
        if let Some(v) = v
            && v.len() != 1
            && v.len() != c as usize
        {
            problems.push(format!(
                "key `{key}` has {} values for {c} channel(s)",
                v.len()
            ));
        }
    }
}

impl ModelContract {
    /// Reads the contract through `get`, which returns the value of one `metadata_props` key.
    pub fn from_metadata(get: impl Fn(&str) -> Option<String>) -> Result<Self, ContractError> {
        let mut problems = Vec::new();
        let mut need = |key: &str| -> Option<String> {
            let v = get(key);
            if v.is_none() {
                problems.push(format!("key `{key}` is missing"));
            }
            v
        };
        let width = need("input_width");
        let height = need("input_height");
        let channels = need("channels");
        let resize = need("resize_filter");
        let pixel_scale = need("pixel_scale");
        let mean = need("mean");
        let std = need("std");
        let embedding_dim = need("embedding_dim");
        let name = need("model_name");
        let version = need("model_version");
        let split_sha256 = get("split_sha256");
        let layout = get("layout");

        let width = positive::<u32>(&mut problems, "input_width", width);
        let height = positive::<u32>(&mut problems, "input_height", height);
        let channels = positive::<u32>(&mut problems, "channels", channels);
        if let Some(c) = channels
            && c != 1
            && c != 3
        {
            problems.push(format!("key `channels` must be 1 or 3, got {c}"));
        }
        let resize = resize.and_then(|r| {
            let f = ResizeFilter::parse(r.trim());
            if f.is_none() {
                problems.push(format!(
                    "key `resize_filter` must be one of {}, got {r:?}",
                    ResizeFilter::NAMES.join(", ")
                ));
            }
            f
        });
        let pixel_scale = positive::<f32>(&mut problems, "pixel_scale", pixel_scale);
        let mean = floats(&mut problems, "mean", mean);
        let std = floats(&mut problems, "std", std);
        check_normalisation(&mut problems, channels, mean.as_deref(), std.as_deref());
        if let Some(l) = layout
            && l.trim() != "NCHW"
        {
            problems.push(format!("key `layout` must be NCHW, got {l:?}"));
        }
        let embedding_dim = positive::<usize>(&mut problems, "embedding_dim", embedding_dim);

        match (
            width,
            height,
            channels,
            resize,
            pixel_scale,
            mean,
            std,
            embedding_dim,
            name,
            version,
        ) {
            (
                Some(width),
                Some(height),
                Some(channels),
                Some(resize),
                Some(pixel_scale),
                Some(mean),
                Some(std),
                Some(embedding_dim),
                Some(name),
                Some(version),
            ) if problems.is_empty() => {
                let per_channel = |v: Vec<f32>| {
                    if v.len() == 1 {
                        vec![v[0]; channels as usize]
                    } else {
                        v
                    }
                };
                Ok(ModelContract {
                    width,
                    height,
                    channels,
                    resize,
                    pixel_scale,
                    mean: per_channel(mean),
                    std: per_channel(std),
                    embedding_dim,
                    name,
                    version,
                    split_sha256,
                })
            }
            _ => Err(ContractError { problems }),
        }
    }

    /// Number of `f32` values of one input tensor (C·H·W).
    pub fn input_len(&self) -> usize {
        self.channels as usize * self.height as usize * self.width as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn good() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("input_width", "150"),
            ("input_height", "150"),
            ("channels", "1"),
            ("resize_filter", "box"),
            ("pixel_scale", "0.00392156862745098"),
            ("mean", "0.5"),
            ("std", "0.25"),
            ("embedding_dim", "64"),
            ("model_name", "m"),
            ("model_version", "1"),
            ("layout", "NCHW"),
        ])
    }

    fn read(m: &HashMap<&'static str, &'static str>) -> Result<ModelContract, ContractError> {
        ModelContract::from_metadata(|k| m.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn reads_a_complete_contract() {
        let c = read(&good()).unwrap();
        assert_eq!((c.width, c.height, c.channels), (150, 150, 1));
        assert_eq!(c.resize, ResizeFilter::Box);
        assert_eq!(c.mean, vec![0.5]);
        assert_eq!(c.input_len(), 150 * 150);
    }

    #[test]
    fn collects_every_problem() {
        let mut m = good();
        m.remove("embedding_dim");
        m.insert("channels", "2");
        m.insert("resize_filter", "nearest-ish");
        m.insert("std", "0.0");
        let e = read(&m).unwrap_err();
        let text = e.to_string();
        for needle in ["embedding_dim", "channels", "resize_filter", "std"] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        assert_eq!(e.problems.len(), 4, "{:?}", e.problems);
    }
}
