//! Shared helpers of the integration tests: real binary, real model, real ELPV images, real
//! Unix sockets, real child processes and signals. Nothing here imitates the daemon.
//!
//! * [`Artifacts::snapshot`] copies the model, its references and the Python evaluation's
//!   outputs into the test's own temp dir, after checking that they belong together (the model
//!   may be retrained and replaced while the tests run; every expectation is read from these
//!   files at run time, never copied into the tests).
//! * [`TestConfig`] writes a config with absolute paths.
//! * [`spawn`] / [`run`] start `inspectord` with piped output and a watchdog; every wait has a
//!   deadline, and a child still running when its [`Daemon`] is dropped is killed.
//! * [`read_to_eof`] / [`spawn_reader`] read a verdict socket with read timeouts.

#![allow(dead_code)] // each test binary uses a different part of this module

// The gateway's tests (tests/gateway_*.rs): its process and config, and the real third-party
// peers it is checked against (mosquitto, chromium through chromedriver, prometheus/promtool).
pub mod gateway;
pub mod http;
pub mod mosquitto;
pub mod proc;
pub mod prometheus;
pub mod webdriver;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// The repository root (this crate's manifest directory).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `inspectord` binary cargo built for these tests.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_inspectord"))
}

/// `data/elpv/images` (fetched by `scripts/test.sh`; git-ignored).
pub fn images_dir() -> PathBuf {
    repo().join("data/elpv/images")
}

/// `data/elpv/<split>.txt`: list file of one split, paths relative to `data/elpv`.
pub fn split_list(split: &str) -> PathBuf {
    repo().join("data/elpv").join(format!("{split}.txt"))
}

/// `models/elpv-split.csv`: file,label,type,defect_probability,split.
pub fn split_csv() -> PathBuf {
    repo().join("models/elpv-split.csv")
}

/// The path of an ELPV image by file name, checked to exist.
pub fn image(file: &str) -> PathBuf {
    let p = images_dir().join(file);
    assert!(
        p.is_file(),
        "{} is missing: fetch the ELPV images first (python3 models/fetch_elpv.py --root .)",
        p.display()
    );
    p
}

/// A fresh temp dir with a short path (Unix socket paths are limited to 108 bytes).
pub fn temp_dir() -> tempfile::TempDir {
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() <= 40 {
        base
    } else {
        PathBuf::from("/tmp")
    };
    tempfile::Builder::new()
        .prefix("isd-")
        .tempdir_in(base)
        .expect("create temp dir")
}

// ---------------------------------------------------------------------------------------------
// Hashes, safetensors headers, JSON lines
// ---------------------------------------------------------------------------------------------

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}

/// The JSON header of a safetensors file (read independently of the crate's own parser).
pub fn safetensors_header(bytes: &[u8]) -> Value {
    assert!(
        bytes.len() >= 8,
        "safetensors file shorter than its length prefix"
    );
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert!(
        bytes.len() >= 8 + n,
        "safetensors header runs past the end of the file"
    );
    serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors header is JSON")
}

/// The string metadata (`__metadata__`) of a safetensors file.
pub fn safetensors_metadata(bytes: &[u8]) -> HashMap<String, String> {
    let header = safetensors_header(bytes);
    let md = header
        .get("__metadata__")
        .and_then(Value::as_object)
        .expect("safetensors file has __metadata__");
    md.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().expect("metadata values are strings").to_string(),
            )
        })
        .collect()
}

/// Writes a copy of the reference file `src` to `dst` with some metadata values replaced, through
/// the safetensors crate rather than the daemon's own writer (which writes only valid sets).
pub fn references_with_metadata(src: &Path, dst: &Path, changes: &[(&str, &str)]) {
    let bytes = std::fs::read(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    let mut md = safetensors_metadata(&bytes);
    for (key, value) in changes {
        md.insert(key.to_string(), value.to_string());
    }
    let out = safetensors::serialize(tensors.tensors(), Some(md)).expect("serialize");
    std::fs::write(dst, out).unwrap_or_else(|e| panic!("write {}: {e}", dst.display()));
}

/// Makes a FIFO (named pipe) at `path`.
pub fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Parses JSON Lines; panics naming the line that is not JSON.
pub fn parse_json_lines<S: AsRef<str>>(lines: &[S]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| l.as_ref())
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect()
}

/// Splits bytes read from a socket into lines; every line must end with `\n` and be a message
/// valid against the committed JSON Schema (docs/protocol/messages.schema.json). Heartbeats
/// (every `output.heartbeat_ms`, timing-dependent and not part of the verdict stream) are
/// validated, then left out, as a v1 reader ignores them.
pub fn socket_lines(bytes: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(bytes).expect("the verdict socket sends UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the stream ends in the middle of a line: {:?}",
        tail(text)
    );
    let mut lines = Vec::new();
    for line in text.lines() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("the socket sent a line that is not JSON ({e}): {line}"));
        assert_valid_message(&value);
        if value["type"] != "heartbeat" {
            lines.push(line.to_string());
        }
    }
    lines
}

/// The committed schema of one direction of the socket protocol, compiled once.
fn protocol_validator(file: &str) -> jsonschema::Validator {
    let path = repo().join("docs/protocol").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("the committed schema is JSON");
    jsonschema::validator_for(&schema).expect("the committed schema compiles")
}

/// Panics unless `message` is valid against docs/protocol/messages.schema.json.
pub fn assert_valid_message(message: &Value) {
    static MESSAGES: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = MESSAGES.get_or_init(|| protocol_validator("messages.schema.json"));
    let errors: Vec<String> = validator
        .iter_errors(message)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the daemon sent a message its schema rejects: {message}\n{}",
        errors.join("\n")
    );
}

/// Panics unless `command` is valid against docs/protocol/commands.schema.json.
pub fn assert_valid_command(command: &Value) {
    static COMMANDS: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = COMMANDS.get_or_init(|| protocol_validator("commands.schema.json"));
    let errors: Vec<String> = validator
        .iter_errors(command)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "a test command its schema rejects: {command}\n{}",
        errors.join("\n")
    );
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(300);
    let start = (start..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}

/// Removes ANSI colour sequences (the text log format colours its output).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------------

/// Checks the shape of `captured_at`: RFC 3339, UTC, microseconds (`2026-11-28T16:16:45.276158Z`);
/// returns the instant.
pub fn parse_captured_at(s: &str) -> SystemTime {
    let pattern = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    let ok = s.len() == pattern.len()
        && s.chars()
            .zip(pattern.chars())
            .all(|(c, p)| if p == 'd' { c.is_ascii_digit() } else { c == p });
    assert!(
        ok,
        "captured_at {s:?} is not RFC 3339 UTC with microseconds ({pattern})"
    );
    humantime::parse_rfc3339(s)
        .unwrap_or_else(|e| panic!("captured_at {s:?} is not a valid time: {e}"))
}

/// Asserts that a verdict line holds every field of protocol v1 with the right JSON type.
pub fn assert_wire_verdict(v: &Value) {
    assert_valid_message(v);
    let ctx = || v.to_string();
    assert_eq!(v["type"], "verdict", "{}", ctx());
    assert_eq!(v["v"], 2, "{}", ctx());
    for key in [
        "seq",
        "source",
        "frame",
        "captured_at",
        "verdict",
        "score",
        "threshold",
        "soart3",
        "reference_index",
        "latency_us",
        "model_sha256",
        "reference_set",
    ] {
        assert!(v.get(key).is_some(), "verdict lacks `{key}`: {}", ctx());
    }
    assert!(v["seq"].as_u64().is_some_and(|s| s >= 1), "seq: {}", ctx());
    assert!(
        v["source"].as_str().is_some_and(|s| !s.is_empty()),
        "source: {}",
        ctx()
    );
    assert!(
        v["frame"].as_str().is_some_and(|s| !s.is_empty()),
        "frame: {}",
        ctx()
    );
    parse_captured_at(v["captured_at"].as_str().expect("captured_at is a string"));
    assert!(v["latency_us"].as_u64().is_some(), "latency_us: {}", ctx());
    let hex = |s: &Value, n: usize| {
        s.as_str()
            .is_some_and(|s| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    assert!(hex(&v["model_sha256"], 64), "model_sha256: {}", ctx());
    assert!(hex(&v["reference_set"], 16), "reference_set: {}", ctx());
    match v["verdict"].as_str() {
        Some("pass" | "fail") => {
            let score = v["score"].as_f64().expect("score is a number");
            let threshold = v["threshold"].as_f64().expect("threshold is a number");
            assert!(score.is_finite() && threshold.is_finite(), "{}", ctx());
            assert_eq!(
                v["verdict"] == "fail",
                score > threshold,
                "fail ⇔ score > threshold: {}",
                ctx()
            );
            for k in ["beta", "eta", "gamma"] {
                assert!(
                    v["soart3"][k].as_f64().is_some_and(f64::is_finite),
                    "soart3.{k}: {}",
                    ctx()
                );
            }
            assert!(
                v["reference_index"].as_u64().is_some(),
                "reference_index: {}",
                ctx()
            );
            assert!(
                v.get("error").is_none_or(Value::is_null),
                "error on an inspected frame: {}",
                ctx()
            );
        }
        Some("error") => {
            for k in ["score", "threshold", "soart3", "reference_index"] {
                assert!(
                    v[k].is_null(),
                    "{k} must be null on an error verdict: {}",
                    ctx()
                );
            }
            assert!(
                v["error"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "error reason: {}",
                ctx()
            );
        }
        Some("skipped") => {
            for k in ["score", "threshold", "soart3", "reference_index"] {
                assert!(
                    v[k].is_null(),
                    "{k} must be null on a skipped verdict: {}",
                    ctx()
                );
            }
            assert!(
                v["reason"].as_str().is_some_and(|r| !r.trim().is_empty()),
                "skip reason: {}",
                ctx()
            );
        }
        _ => panic!("verdict must be pass, fail, error or skipped: {}", ctx()),
    }
}

/// Asserts `seq` runs 1, 2, 3, … without gaps over the given verdicts.
pub fn assert_seq_contiguous(verdicts: &[Value]) {
    for (i, v) in verdicts.iter().enumerate() {
        assert_eq!(
            v["seq"].as_u64(),
            Some(i as u64 + 1),
            "verdict #{} has the wrong seq: {v}",
            i + 1
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The model artifacts and the Python evaluation's expectations
// ---------------------------------------------------------------------------------------------

/// One row of `models/report/heldout-predictions.csv`.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub file: String,
    pub label: String,
    pub kind: String,
    pub score: f64,
    pub nearest_ref: usize,
    /// `defective` or `good`.
    pub prediction: String,
}

impl Prediction {
    pub fn defective(&self) -> bool {
        match self.prediction.as_str() {
            "defective" => true,
            "good" => false,
            other => panic!("unknown prediction {other:?} for {}", self.file),
        }
    }
}

/// One row of `models/elpv-split.csv`.
#[derive(Debug, Clone)]
pub struct SplitRow {
    pub file: String,
    pub label: String,
    pub kind: String,
    pub split: String,
}

fn csv_rows(bytes: &[u8], what: &str, columns: &[&str]) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader
        .headers()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .clone();
    for c in columns {
        assert!(
            headers.iter().any(|h| h.trim() == *c),
            "{what} has no `{c}` column (columns: {headers:?})"
        );
    }
    reader
        .records()
        .map(|r| {
            let r = r.unwrap_or_else(|e| panic!("{what}: {e}"));
            headers
                .iter()
                .map(|h| h.trim().to_string())
                .zip(r.iter().map(|f| f.trim().to_string()))
                .collect()
        })
        .collect()
}

pub fn parse_predictions(bytes: &[u8]) -> Vec<Prediction> {
    let what = "heldout-predictions.csv";
    csv_rows(
        bytes,
        what,
        &[
            "file",
            "label",
            "type",
            "score",
            "nearest_ref",
            "prediction",
        ],
    )
    .into_iter()
    .map(|r| Prediction {
        file: r["file"].clone(),
        label: r["label"].clone(),
        kind: r["type"].clone(),
        score: r["score"]
            .parse()
            .unwrap_or_else(|e| panic!("{what}: score {:?}: {e}", r["score"])),
        nearest_ref: r["nearest_ref"]
            .parse()
            .unwrap_or_else(|e| panic!("{what}: nearest_ref: {e}")),
        prediction: r["prediction"].clone(),
    })
    .collect()
}

pub fn load_split() -> Vec<SplitRow> {
    let bytes = std::fs::read(split_csv()).expect("read models/elpv-split.csv");
    csv_rows(
        &bytes,
        "elpv-split.csv",
        &["file", "label", "type", "split"],
    )
    .into_iter()
    .map(|r| SplitRow {
        file: r["file"].clone(),
        label: r["label"].clone(),
        kind: r["type"].clone(),
        split: r["split"].clone(),
    })
    .collect()
}

/// A shipped encoder: its model, its references and the Python evaluation's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// `models/elpv-siamese.onnx`: the small from-scratch CNN, the fast option (most tests use
    /// it: they test the daemon, not the model).
    Small,
    /// `models/elpv-lite0.onnx`: the fine-tuned EfficientNet-Lite0, the demo's default.
    Lite0,
}

impl Encoder {
    /// (model, references, held-out predictions, metrics), relative to the repository.
    fn files(self) -> [&'static str; 4] {
        match self {
            Encoder::Small => [
                "models/elpv-siamese.onnx",
                "models/elpv-references.safetensors",
                "models/report/heldout-predictions.csv",
                "models/report/metrics.json",
            ],
            Encoder::Lite0 => [
                "models/elpv-lite0.onnx",
                "models/elpv-lite0-references.safetensors",
                "models/report/lite0/heldout-predictions.csv",
                "models/report/lite0/metrics.json",
            ],
        }
    }
}

/// A consistent copy of a model, its references and the Python evaluation's outputs.
#[derive(Debug)]
pub struct Artifacts {
    /// Copy of the model (`models/elpv-siamese.onnx` unless another encoder was asked for).
    pub model: PathBuf,
    /// Copy of the model's references.
    pub references: PathBuf,
    /// SHA-256 of the model file.
    pub model_sha256: String,
    /// First 16 hex digits of the reference file's SHA-256.
    pub reference_set: String,
    /// The reference file's metadata.
    pub references_meta: HashMap<String, String>,
    /// The model's `heldout-predictions.csv`, in file order.
    pub predictions: Vec<Prediction>,
    /// The model's `metrics.json`.
    pub metrics: Value,
}

/// How long a snapshot waits for a retraining in progress to finish writing its files.
const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(150);

impl Artifacts {
    /// [`Artifacts::snapshot_of`] the small encoder.
    pub fn snapshot(dir: &Path) -> Artifacts {
        Self::snapshot_of(dir, Encoder::Small)
    }

    /// Copies an encoder's artifacts into `dir` once they are consistent: the references were
    /// made by this model (their `model_sha256`) and `metrics.json` (written last by
    /// `models/evaluate.py`) names this model and these references. Waits while a retraining is
    /// replacing them.
    pub fn snapshot_of(dir: &Path, encoder: Encoder) -> Artifacts {
        let started = Instant::now();
        loop {
            match Self::try_snapshot(dir, encoder) {
                Ok(a) => return a,
                Err(why) if started.elapsed() < SNAPSHOT_PATIENCE => {
                    eprintln!(
                        "model artifacts not consistent yet ({why}); waiting for the retraining to finish"
                    );
                    std::thread::sleep(Duration::from_secs(2));
                }
                Err(why) => panic!("model artifacts in models/ do not belong together: {why}"),
            }
        }
    }

    fn try_snapshot(dir: &Path, encoder: Encoder) -> Result<Artifacts, String> {
        let [model_rel, references_rel, predictions_rel, metrics_rel] = encoder.files();
        let read = |rel: &str| {
            std::fs::read(repo().join(rel)).map_err(|e| format!("cannot read {rel}: {e}"))
        };
        let model = read(model_rel)?;
        let references = read(references_rel)?;
        let predictions = read(predictions_rel)?;
        let metrics = read(metrics_rel)?;
        // A file replaced while we were reading the others shows up here.
        if read(model_rel)? != model || read(references_rel)? != references {
            return Err("the model or the references changed while being read".into());
        }
        let model_sha256 = sha256_hex(&model);
        let references_sha256 = sha256_hex(&references);
        let references_meta = safetensors_metadata(&references);
        let metrics: Value =
            serde_json::from_slice(&metrics).map_err(|e| format!("{metrics_rel}: {e}"))?;
        if references_meta.get("model_sha256") != Some(&model_sha256) {
            return Err(format!(
                "the references were made by model {:?}, not {model_sha256}",
                references_meta.get("model_sha256")
            ));
        }
        if let Some(m) = metrics.pointer("/model/sha256").and_then(Value::as_str)
            && m != model_sha256
        {
            return Err(format!(
                "{metrics_rel} describes model {m}, not {model_sha256}"
            ));
        }
        if let Some(r) = metrics
            .pointer("/references/sha256")
            .and_then(Value::as_str)
            && r != references_sha256
        {
            return Err(format!(
                "{metrics_rel} describes references {r}, not {references_sha256}"
            ));
        }
        let predictions = parse_predictions(&predictions);
        let dir = dir.join("artifacts");
        std::fs::create_dir_all(&dir).expect("create artifacts dir");
        let file_name = |rel: &str| Path::new(rel).file_name().expect("a file").to_owned();
        let (model_path, references_path) = (
            dir.join(file_name(model_rel)),
            dir.join(file_name(references_rel)),
        );
        std::fs::write(&model_path, &model).expect("copy model");
        std::fs::write(&references_path, &references).expect("copy references");
        Ok(Artifacts {
            model: model_path,
            references: references_path,
            model_sha256,
            reference_set: references_sha256[..16].to_string(),
            references_meta,
            predictions,
            metrics,
        })
    }

    pub fn prediction(&self, file: &str) -> &Prediction {
        self.predictions
            .iter()
            .find(|p| p.file == file)
            .unwrap_or_else(|| panic!("{file} is not in heldout-predictions.csv"))
    }

    pub fn predictions_by_file(&self) -> HashMap<&str, &Prediction> {
        self.predictions
            .iter()
            .map(|p| (p.file.as_str(), p))
            .collect()
    }

    /// The threshold recorded in the reference file.
    pub fn threshold(&self) -> f64 {
        self.references_meta["threshold"]
            .parse()
            .expect("references threshold is a number")
    }

    /// `n_good` predicted-good and `n_defective` predicted-defective held-out images, spread
    /// evenly over the file order.
    /// Copies `n_good` good and `n_defective` defective held-out images into `dir` (created);
    /// returns their file names, sorted (the replay order).
    pub fn copy_heldout(&self, dir: &Path, n_good: usize, n_defective: usize) -> Vec<String> {
        std::fs::create_dir_all(dir).expect("create image dir");
        let mut names: Vec<String> = self
            .pick_heldout(n_good, n_defective)
            .iter()
            .map(|p| p.file.clone())
            .collect();
        for n in &names {
            std::fs::copy(image(n), dir.join(n)).expect("copy image");
        }
        names.sort();
        names
    }

    pub fn pick_heldout(&self, n_good: usize, n_defective: usize) -> Vec<&Prediction> {
        let spread = |defective: bool, n: usize| -> Vec<&Prediction> {
            let all: Vec<&Prediction> = self
                .predictions
                .iter()
                .filter(|p| p.defective() == defective)
                .collect();
            assert!(
                all.len() >= n,
                "only {} held-out images predicted defective={defective}",
                all.len()
            );
            (0..n).map(|i| all[i * all.len() / n]).collect()
        };
        let mut picked = spread(false, n_good);
        picked.extend(spread(true, n_defective));
        picked
    }
}

// ---------------------------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------------------------

/// A TOML basic string (JSON string escaping is valid TOML).
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn toml_path(p: &Path) -> String {
    assert!(
        p.is_absolute(),
        "test configs use absolute paths: {}",
        p.display()
    );
    toml_str(p.to_str().expect("UTF-8 path"))
}

/// A config for one test, with absolute paths to the snapshot of the model and references.
#[derive(Debug, Clone)]
pub struct TestConfig {
    /// A directory of images or a list file.
    pub source: PathBuf,
    pub fps: f64,
    pub looping: bool,
    pub model: PathBuf,
    pub references: PathBuf,
    pub socket: Option<PathBuf>,
    pub client_buffer: Option<usize>,
    pub workers: usize,
}

impl TestConfig {
    pub fn new(artifacts: &Artifacts, source: impl Into<PathBuf>) -> Self {
        TestConfig {
            source: source.into(),
            fps: 0.0,
            looping: false,
            model: artifacts.model.clone(),
            references: artifacts.references.clone(),
            socket: None,
            client_buffer: None,
            workers: 2,
        }
    }

    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "[source]\nkind = \"replay\"\npath = {}\nfps = {:?}\nloop = {}\n\n[model]\npath = {}\n\n[references]\npath = {}\n\n[output]\n",
            toml_path(&self.source),
            self.fps,
            self.looping,
            toml_path(&self.model),
            toml_path(&self.references),
        );
        if let Some(socket) = &self.socket {
            s += &format!("socket = {}\n", toml_path(socket));
        }
        if let Some(n) = self.client_buffer {
            s += &format!("client_buffer = {n}\n");
        }
        s += &format!("\n[runtime]\nworkers = {}\n", self.workers);
        s
    }

    /// Writes the config to `path` and returns `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.to_toml()).expect("write config");
        path.to_path_buf()
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// `inspectord <args>` with a clean logging environment, stdin closed, run from `cwd`.
/// `INSPECTORD_TEST_LOG` (e.g. `inspectord=debug`), when set, becomes the daemons' log filter.
pub fn command<I, S>(cwd: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .env_remove("INSPECTORD_LOG")
        .env_remove("RUST_LOG");
    if let Some(filter) = std::env::var_os("INSPECTORD_TEST_LOG") {
        c.env("INSPECTORD_LOG", filter);
    }
    c
}

/// A running `inspectord`: output collected by reader threads; killed by a watchdog after its
/// time limit and when dropped.
pub struct Daemon {
    child: Arc<Mutex<Child>>,
    pid: u32,
    lines: Receiver<String>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    watchdog: Option<(Sender<()>, JoinHandle<bool>)>,
    started: Instant,
    finished: bool,
}

/// A finished `inspectord`.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Every stdout line, in order.
    pub stdout: Vec<String>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "inspectord failed ({}):\n{}",
            self.status,
            self.stderr
        );
        self
    }

    pub fn assert_failure(&self) -> &Self {
        assert!(
            self.status.code().is_some_and(|c| c != 0),
            "inspectord should have failed ({}):\n{}",
            self.status,
            self.stderr
        );
        self
    }
}

/// `inspectord replay --config CONFIG --wait-clients N`, started in `cwd`: the replay is held
/// until `clients` socket clients are connected.
pub fn replay_waiting(cwd: &Path, config: &Path, clients: usize, limit: Duration) -> Daemon {
    let n = clients.to_string();
    let args: [&OsStr; 5] = [
        "replay".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--wait-clients".as_ref(),
        n.as_ref(),
    ];
    spawn(command(cwd, args), limit)
}

/// Starts `cmd` with piped stdout/stderr; the watchdog kills it after `limit`.
pub fn spawn(mut cmd: Command, limit: Duration) -> Daemon {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inspectord");
    let pid = child.id();
    let (tx, lines) = mpsc::channel();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let out_pipe = child.stdout.take().unwrap();
    let err_pipe = child.stderr.take().unwrap();
    let all = stdout.clone();
    let out_reader = std::thread::spawn(move || {
        for line in BufReader::new(out_pipe).lines() {
            let Ok(line) = line else { break };
            all.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    let err = stderr.clone();
    let err_reader = std::thread::spawn(move || {
        let mut pipe = err_pipe;
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => err
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
    let child = Arc::new(Mutex::new(child));
    let (cancel, cancelled) = mpsc::channel::<()>();
    let victim = child.clone();
    // `Child::kill` does nothing once the child has been reaped, so the watchdog can never hit
    // a recycled pid.
    let watchdog = std::thread::spawn(move || match cancelled.recv_timeout(limit) {
        Err(RecvTimeoutError::Timeout) => {
            let _ = victim.lock().unwrap().kill();
            true
        }
        _ => false,
    });
    Daemon {
        child,
        pid,
        lines,
        stdout,
        stderr,
        readers: vec![out_reader, err_reader],
        watchdog: Some((cancel, watchdog)),
        started: Instant::now(),
        finished: false,
    }
}

/// Runs `cmd` to completion (at most `limit`).
pub fn run(cmd: Command, limit: Duration) -> Finished {
    spawn(cmd, limit).wait(limit)
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The next stdout line, or `None` if none arrived within `timeout` (or stdout closed).
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The exit status if the process has ended.
    pub fn try_status(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().expect("try_wait")
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        assert!(
            self.try_status().is_none(),
            "cannot signal: inspectord already exited:\n{}",
            self.stderr_so_far()
        );
        // The child is not reaped yet (checked above, under our ownership), so the pid is ours.
        let pid = libc::pid_t::try_from(self.pid).expect("pid fits pid_t");
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Connects to the verdict socket at `path`, retrying while the daemon starts up.
    pub fn connect(&self, path: &Path, timeout: Duration) -> UnixStream {
        let deadline = Instant::now() + timeout;
        loop {
            match UnixStream::connect(path) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_millis(500)))
                        .unwrap();
                    return s;
                }
                Err(e) => {
                    if let Some(status) = self.try_status() {
                        panic!(
                            "inspectord exited ({status}) before serving {}:\n{}",
                            path.display(),
                            self.stderr_so_far()
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "cannot connect to {} within {timeout:?} ({e}); stderr so far:\n{}",
                        path.display(),
                        self.stderr_so_far()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Waits for the process to end (at most `timeout`; then kills it and panics).
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.try_status() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.lock().unwrap().kill();
                panic!(
                    "inspectord did not exit within {timeout:?}; killed it. stderr:\n{}",
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = self.started.elapsed();
        self.finished = true;
        let killed = self.stop_watchdog();
        for r in self.readers.drain(..) {
            r.join().expect("output reader thread");
        }
        let stderr = self.stderr_so_far();
        let stdout = self.stdout.lock().unwrap().clone();
        assert!(
            !killed,
            "the watchdog killed inspectord (time limit exceeded) after {} stdout lines. stderr:\n{stderr}",
            stdout.len()
        );
        Finished {
            status,
            stdout,
            stderr,
            elapsed,
        }
    }

    /// Stops the watchdog; `true` if it had fired.
    fn stop_watchdog(&mut self) -> bool {
        self.watchdog.take().is_some_and(|(cancel, thread)| {
            drop(cancel);
            thread.join().unwrap_or(false)
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.finished {
            if let Ok(mut child) = self.child.lock() {
                let _ = child.kill();
                let _ = child.wait();
            }
            self.stop_watchdog();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Socket clients
// ---------------------------------------------------------------------------------------------

/// Reads until EOF (the daemon closes the connection at exit); panics after `timeout`.
pub fn read_to_eof(mut stream: UnixStream, timeout: Duration) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            // The daemon disconnected us without a clean shutdown: what arrived is what we got.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("reading the verdict socket: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "no EOF on the verdict socket within {timeout:?} ({} bytes read)",
            out.len()
        );
    }
}

/// [`read_to_eof`] on its own thread.
pub fn spawn_reader(stream: UnixStream, timeout: Duration) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || read_to_eof(stream, timeout))
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
