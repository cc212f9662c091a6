//! Finding and loading the ONNX Runtime shared library (`ort` with `load-dynamic`).
//!
//! Search order, first hit wins:
//! 1. the config key `runtime.onnxruntime`,
//! 2. the `ORT_DYLIB_PATH` environment variable,
//! 3. next to the executable,
//! 4. the provisioned folders (`third_party/onnxruntime/lib` of the source tree this binary was
//!    built from, where `make onnxruntime` unpacks it, and `/usr/lib/inspectord`),
//! 5. the system library path (`dlopen("libonnxruntime.so")`).
//!
//! An explicit choice (1 or 2) that fails is an error, not a reason to keep searching: the user
//! asked for that file. The library's version is checked against the API version `ort` needs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The library's file name on this platform (`libonnxruntime.so` on Linux).
pub fn library_file_name() -> String {
    format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Where a candidate came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    ConfigKey,
    EnvVar,
    NextToExecutable,
    Provisioned,
    SystemPath,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::ConfigKey => "config key runtime.onnxruntime",
            Origin::EnvVar => "ORT_DYLIB_PATH",
            Origin::NextToExecutable => "next to the executable",
            Origin::Provisioned => "provisioned folder",
            Origin::SystemPath => "system library path",
        })
    }
}

/// One place to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub origin: Origin,
    pub path: PathBuf,
}

impl Candidate {
    /// Explicit choices must load; implicit ones may be absent.
    fn explicit(&self) -> bool {
        matches!(self.origin, Origin::ConfigKey | Origin::EnvVar)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found; looked in:\n{}\nfix: run `make onnxruntime` in the source tree, \
         or set `runtime.onnxruntime` in the config or ORT_DYLIB_PATH to a libonnxruntime.so of version 1.{} or newer",
        .tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n"),
        ort::MINOR_VERSION
    )]
    NotFound { tried: Vec<String> },
    #[error("cannot load ONNX Runtime from {path} ({origin}): {reason}")]
    Load {
        origin: Origin,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot create the ONNX Runtime environment: {0}")]
    Environment(String),
}

/// The candidates in search order, given the configured path and the environment.
pub fn candidates(
    configured: Option<&Path>,
    env_path: Option<&str>,
    exe_dir: Option<&Path>,
) -> Vec<Candidate> {
    let name = library_file_name();
    let mut out = Vec::new();
    if let Some(p) = configured {
        out.push(Candidate {
            origin: Origin::ConfigKey,
            path: p.to_path_buf(),
        });
    }
    if let Some(p) = env_path.filter(|s| !s.is_empty()) {
        out.push(Candidate {
            origin: Origin::EnvVar,
            path: PathBuf::from(p),
        });
    }
    if let Some(dir) = exe_dir {
        out.push(Candidate {
            origin: Origin::NextToExecutable,
            path: dir.join(&name),
        });
    }
    for dir in provisioned_dirs() {
        out.push(Candidate {
            origin: Origin::Provisioned,
            path: dir.join(&name),
        });
    }
    out.push(Candidate {
        origin: Origin::SystemPath,
        path: PathBuf::from(&name),
    });
    out
}

/// Folders the set-up scripts and packages unpack the library into.
pub fn provisioned_dirs() -> Vec<PathBuf> {
    vec![
        Path::new(env!("CARGO_MANIFEST_DIR")).join("third_party/onnxruntime/lib"),
        PathBuf::from("/usr/lib/inspectord"),
    ]
}

/// What was loaded.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub path: PathBuf,
    pub origin: Origin,
    pub environment: ort::environment::Environment,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Loads the library once per process (ONNX Runtime allows one environment per process) and
/// returns it; later calls return the first result.
pub fn init(configured: Option<&Path>) -> Result<&'static Runtime, RuntimeError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let env_path = std::env::var("ORT_DYLIB_PATH").ok();
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let mut tried = Vec::new();
    for cand in candidates(configured, env_path.as_deref(), exe_dir.as_deref()) {
        let is_bare_name = cand.origin == Origin::SystemPath;
        if !is_bare_name && !cand.path.exists() {
            if cand.explicit() {
                return Err(RuntimeError::Load {
                    origin: cand.origin,
                    path: cand.path,
                    reason: "no such file".into(),
                });
            }
            tried.push(format!(
                "{} ({}): not there",
                cand.path.display(),
                cand.origin
            ));
            continue;
        }
        match ort::init_from(&cand.path) {
            Ok(builder) => {
                let environment = builder
                    .with_name("inspectord")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| RuntimeError::Environment(e.to_string()))?;
                tracing::info!(
                    path = %cand.path.display(),
                    origin = %cand.origin,
                    build = ort::info(),
                    "loaded ONNX Runtime"
                );
                let rt = Runtime {
                    path: cand.path,
                    origin: cand.origin,
                    environment,
                };
                return Ok(RUNTIME.get_or_init(|| rt));
            }
            Err(e) if cand.explicit() || !is_bare_name && version_problem(&e) => {
                return Err(RuntimeError::Load {
                    origin: cand.origin,
                    path: cand.path,
                    reason: e.to_string(),
                });
            }
            Err(e) => tried.push(format!("{} ({}): {e}", cand.path.display(), cand.origin)),
        }
    }
    Err(RuntimeError::NotFound { tried })
}

/// A library that exists but is too old is worth reporting as such rather than as "not found".
fn version_problem(e: &ort::LoadDynamicError) -> bool {
    matches!(e, ort::LoadDynamicError::BadVersion { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_order_is_config_env_exe_provisioned_system() {
        let c = candidates(
            Some(Path::new("/cfg/lib.so")),
            Some("/env/lib.so"),
            Some(Path::new("/opt/bin")),
        );
        let origins: Vec<_> = c.iter().map(|c| c.origin.clone()).collect();
        assert_eq!(origins[0], Origin::ConfigKey);
        assert_eq!(origins[1], Origin::EnvVar);
        assert_eq!(origins[2], Origin::NextToExecutable);
        assert_eq!(c[2].path, Path::new("/opt/bin").join(library_file_name()));
        assert!(
            origins[3..origins.len() - 1]
                .iter()
                .all(|o| *o == Origin::Provisioned)
        );
        assert_eq!(*origins.last().unwrap(), Origin::SystemPath);
    }

    #[test]
    fn empty_env_var_is_ignored() {
        let c = candidates(None, Some(""), None);
        assert!(
            c.iter()
                .all(|c| c.origin != Origin::EnvVar && c.origin != Origin::ConfigKey)
        );
    }
}
