//! Raw TOML → validated [`Config`], once, collecting *every* problem with its key path and line.
//!
//! `inspectord check` runs exactly [`Config::load`] (plus loading the model and references).
//! Unknown sections and keys are errors. Relative paths are resolved against the directory of
//! the config file, so a config works from any working directory.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::score::ScoreKind;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub source: SourceConfig,
    pub model: ModelConfig,
    pub references: ReferencesConfig,
    pub scoring: ScoringConfig,
    pub output: OutputConfig,
    pub runtime: RuntimeConfig,
    /// Failure-image logging; `None` = off.
    pub failures: Option<FailuresConfig>,
}

/// Where and which failure images are saved.
#[derive(Debug, Clone, PartialEq)]
pub struct FailuresConfig {
    pub dir: PathBuf,
    /// Verdict labels whose frames are saved (`fail`, `error`).
    pub verdicts: Vec<String>,
    pub quota_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    Replay(ReplayConfig),
    Camera(CameraConfig),
}

/// Which camera back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraKind {
    /// UVC / V4L2 through nokhwa (`kind = "camera"`).
    Uvc,
    /// GenICam / GigE Vision through Aravis (`kind = "genicam"`).
    GenIcam,
}

/// How frames are acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquisition {
    /// The camera streams at its frame rate.
    FreeRun,
    /// One frame per software trigger (GenICam `TriggerSoftware`).
    SoftwareTrigger,
}

/// A software region of interest, cropped before preprocessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roi {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Image file extensions replay takes from a directory by default.
pub fn default_extensions() -> Vec<String> {
    ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "pgm", "ppm"]
        .map(String::from)
        .to_vec()
}

impl ReplayConfig {
    /// Replay of `path` as fast as possible, once, with the default extensions.
    pub fn of(path: PathBuf) -> Self {
        Self {
            path,
            fps: 0.0,
            looping: false,
            extensions: default_extensions(),
        }
    }
}

/// A line camera.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    pub kind: CameraKind,
    /// nokhwa: index, `/dev/videoN`, a `/dev/v4l/by-id/...` path or a name substring;
    /// Aravis: device id, serial or address. `None` = the first camera found.
    pub device: Option<String>,
    /// Requested resolution (GenICam: the sensor region's size).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// GenICam sensor region offset.
    pub offset_x: u32,
    pub offset_y: u32,
    /// Requested frame rate (frames per second).
    pub frame_rate: Option<f64>,
    /// `mjpeg`, `yuyv`, `grey` (UVC) or `mono8` (GenICam); `None` = the camera's default.
    pub pixel_format: Option<String>,
    /// GenICam exposure time in microseconds.
    pub exposure_us: Option<f64>,
    /// GenICam gain (camera units, usually dB).
    pub gain: Option<f64>,
    /// GigE Vision: use the Linux packet socket for the stream (off by default: on some hosts no
    /// frames arrive with it).
    pub packet_socket: bool,
    pub acquisition: Acquisition,
    /// Inspect every Nth frame.
    pub every_nth: u32,
    pub frame_timeout: Duration,
    pub open_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub roi: Option<Roi>,
}

/// Replay of recorded images (test mode).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// A directory of images, or a list file (one path per line, relative to the list file).
    pub path: PathBuf,
    /// Frames per second; 0 = as fast as the pipeline takes them.
    pub fps: f64,
    /// Start again from the first image after the last one.
    pub looping: bool,
    /// File extensions taken from a directory (lower case, without the dot).
    pub extensions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReferencesConfig {
    pub path: PathBuf,
}

/// Overrides of the scoring settings recorded in the reference file; `None` = use the file's.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoringConfig {
    pub score: Option<ScoreKind>,
    pub k: Option<usize>,
    pub eta_p: Option<f64>,
    pub gamma_p: Option<f64>,
    pub threshold: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputConfig {
    /// The verdict socket; `None` = no socket.
    pub socket: Option<PathBuf>,
    /// Permission bits of the socket file.
    pub socket_mode: u32,
    /// Verdicts queued for one client before it is disconnected as too slow.
    pub client_buffer: usize,
    /// Clients served at once; further connections are refused.
    pub max_clients: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Explicit path of `libonnxruntime.so`.
    pub onnxruntime: Option<PathBuf>,
    /// Encoder worker threads, each with its own ONNX Runtime session.
    pub workers: usize,
    /// ONNX Runtime intra-op threads per session.
    pub intra_op_threads: usize,
    /// Frames waiting between the source and the workers.
    pub queue_depth: usize,
    /// A stage busy this long on one frame counts as wedged: the systemd watchdog is no longer
    /// fed, so systemd restarts the daemon.
    pub stall_timeout: Duration,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `scoring.k`.
    pub key: String,
    /// 1-based line, when the problem is at a place in the file.
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors {
    pub path: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            match e.line {
                Some(line) => write!(f, "\n  line {line}: {}: {}", e.key, e.message)?,
                None => write!(f, "\n  {}: {}", e.key, e.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

const SECTIONS: &[&str] = &[
    "source",
    "model",
    "references",
    "scoring",
    "output",
    "runtime",
    "failures",
];

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            path: path.into(),
            errors: vec![ConfigError {
                key: "(file)".into(),
                line: None,
                message: format!("cannot read: {e}"),
            }],
        })?;
        Self::parse(path, &text)
    }

    /// Validates config text; `path` names the file and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut r = Reader {
            text,
            base,
            errors: Vec::new(),
        };
        let root = match DeTable::parse(text) {
            Ok(t) => t,
            Err(e) => {
                let line = e.span().map(|s| r.line(&s));
                let message = e.message().trim().to_string();
                return Err(ConfigErrors {
                    path: path.into(),
                    errors: vec![ConfigError {
                        key: "(syntax)".into(),
                        line,
                        message,
                    }],
                });
            }
        };
        let root = root.get_ref();
        for (key, value) in root.iter() {
            let name = key.get_ref().as_ref();
            if !SECTIONS.contains(&name) {
                r.error(
                    name,
                    Some(key.span()),
                    format!("unknown section; expected one of {}", SECTIONS.join(", ")),
                );
            } else if !matches!(value.get_ref(), DeValue::Table(_)) {
                r.error(name, Some(key.span()), "must be a table ([section])".into());
            }
        }
        let section = |name: &'static str| Section {
            name,
            table: root.get(name).and_then(|v| match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            }),
            used: Vec::new(),
        };

        // [source]
        let mut s = section("source");
        let kind = r
            .string(&mut s, "kind")
            .unwrap_or_else(|| ("replay".into(), None));
        let source = match kind.0.as_str() {
            "replay" => {
                let path = r.path(&mut s, "path", true);
                let fps = r.float(
                    &mut s,
                    "fps",
                    |v| v >= 0.0 && v.is_finite(),
                    ">= 0 (0 = as fast as possible)",
                );
                let looping = r.boolean(&mut s, "loop");
                let extensions = r.string_list(&mut s, "extensions");
                path.map(|path| {
                    SourceConfig::Replay(ReplayConfig {
                        path,
                        fps: fps.unwrap_or(0.0),
                        looping: looping.unwrap_or(false),
                        extensions: extensions
                            .map(|v| {
                                v.into_iter()
                                    .map(|e| e.trim_start_matches('.').to_lowercase())
                                    .collect()
                            })
                            .unwrap_or_else(|| {
                                ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "pgm", "ppm"]
                                    .map(String::from)
                                    .to_vec()
                            }),
                    })
                })
            }
            "camera" | "genicam" => {
                let name = kind.0.clone();
                let kind = if name == "camera" {
                    CameraKind::Uvc
                } else {
                    CameraKind::GenIcam
                };
                let device = r.string(&mut s, "device").map(|(v, _)| v);
                let width = r.integer(&mut s, "width", 1, 65535).map(|v| v as u32);
                let height = r.integer(&mut s, "height", 1, 65535).map(|v| v as u32);
                let offset_x = r.integer(&mut s, "offset_x", 0, 65535).unwrap_or(0) as u32;
                let offset_y = r.integer(&mut s, "offset_y", 0, 65535).unwrap_or(0) as u32;
                let frame_rate = r.float(
                    &mut s,
                    "frame_rate",
                    |v| v > 0.0 && v <= 10_000.0,
                    "a rate above 0",
                );
                let formats: &[&str] = match kind {
                    CameraKind::Uvc => &["mjpeg", "yuyv", "grey"],
                    CameraKind::GenIcam => &["mono8"],
                };
                let pixel_format = r.string(&mut s, "pixel_format").and_then(|(v, span)| {
                    let v = v.to_lowercase();
                    if formats.contains(&v.as_str()) {
                        Some(v)
                    } else {
                        let msg = format!(
                            "must be one of {} for kind = {:?}, got {v:?}",
                            formats.join(", "),
                            name
                        );
                        r.error("source.pixel_format", span, msg);
                        None
                    }
                });
                let (exposure_us, gain, packet_socket) = if kind == CameraKind::GenIcam {
                    (
                        r.float(
                            &mut s,
                            "exposure_us",
                            |v| v > 0.0,
                            "a time in microseconds above 0",
                        ),
                        r.float(&mut s, "gain", |v| v >= 0.0, "a gain >= 0"),
                        r.boolean(&mut s, "packet_socket").unwrap_or(false),
                    )
                } else {
                    (None, None, false)
                };
                let acquisition =
                    r.string(&mut s, "acquisition")
                        .and_then(|(v, span)| match v.as_str() {
                            "free-run" => Some(Acquisition::FreeRun),
                            "software-trigger" if kind == CameraKind::GenIcam => {
                                Some(Acquisition::SoftwareTrigger)
                            }
                            _ => {
                                let msg = match kind {
                                    CameraKind::GenIcam => format!(
                                        "must be \"free-run\" or \"software-trigger\", got {v:?}"
                                    ),
                                    CameraKind::Uvc => format!(
                                        "must be \"free-run\" for kind = \"camera\", got {v:?}"
                                    ),
                                };
                                r.error("source.acquisition", span, msg);
                                None
                            }
                        });
                let every_nth = r.integer(&mut s, "every_nth", 1, 1_000_000).unwrap_or(1) as u32;
                let ms = |r: &mut Reader, s: &mut Section, key: &'static str, default: u64| {
                    Duration::from_millis(
                        r.integer(s, key, 1, 3_600_000)
                            .map_or(default, |v| v as u64),
                    )
                };
                let frame_timeout = ms(&mut r, &mut s, "frame_timeout_ms", 2000);
                let open_timeout = ms(&mut r, &mut s, "open_timeout_ms", 10_000);
                let backoff_initial = ms(&mut r, &mut s, "reconnect_initial_ms", 500);
                let backoff_max = ms(&mut r, &mut s, "reconnect_max_ms", 10_000);
                let roi = r.roi(&mut s, "roi");
                Some(SourceConfig::Camera(CameraConfig {
                    kind,
                    device,
                    width,
                    height,
                    offset_x,
                    offset_y,
                    frame_rate,
                    pixel_format,
                    exposure_us,
                    gain,
                    packet_socket,
                    acquisition: acquisition.unwrap_or(Acquisition::FreeRun),
                    every_nth,
                    frame_timeout,
                    open_timeout,
                    backoff_initial,
                    backoff_max: backoff_max.max(backoff_initial),
                    roi,
                }))
            }
            other => {
                let span = s.span_of("kind");
                r.error(
                    "source.kind",
                    span,
                    format!("unknown source kind {other:?}; expected \"replay\", \"camera\" (UVC/V4L2) or \"genicam\" (GigE Vision)"),
                );
                None
            }
        };
        r.finish(s);

        // [model]
        let mut s = section("model");
        let model = r
            .path(&mut s, "path", true)
            .map(|path| ModelConfig { path });
        r.finish(s);

        // [references]
        let mut s = section("references");
        let references = r
            .path(&mut s, "path", true)
            .map(|path| ReferencesConfig { path });
        r.finish(s);

        // [scoring]
        let mut s = section("scoring");
        let score = r.string(&mut s, "score").and_then(|(v, span)| {
            let kind = ScoreKind::parse(&v);
            if kind.is_none() {
                r.error(
                    "scoring.score",
                    span,
                    format!("must be \"eta\" or \"gamma\", got {v:?}"),
                );
            }
            kind
        });
        let k = r.integer(&mut s, "k", 1, 1_000_000).map(|v| v as usize);
        let eta_p = r.float(
            &mut s,
            "eta_p",
            |v| (1.0..=64.0).contains(&v),
            "a Minkowski order between 1 and 64",
        );
        let gamma_p = r.float(
            &mut s,
            "gamma_p",
            |v| (1.0..=64.0).contains(&v),
            "a Minkowski order between 1 and 64",
        );
        let threshold = r.float(&mut s, "threshold", f64::is_finite, "a finite number");
        let scoring = ScoringConfig {
            score,
            k,
            eta_p,
            gamma_p,
            threshold,
        };
        r.finish(s);

        // [output]
        let mut s = section("output");
        let socket = r.path(&mut s, "socket", false);
        let socket_mode = r.mode(&mut s, "socket_mode").unwrap_or(0o660);
        let client_buffer = r
            .integer(&mut s, "client_buffer", 1, 1 << 20)
            .unwrap_or(1024) as usize;
        let max_clients = r.integer(&mut s, "max_clients", 1, 1024).unwrap_or(16) as usize;
        let output = OutputConfig {
            socket,
            socket_mode,
            client_buffer,
            max_clients,
        };
        r.finish(s);

        // [runtime]
        let mut s = section("runtime");
        let onnxruntime = r.path(&mut s, "onnxruntime", false);
        let workers = r.integer(&mut s, "workers", 1, 256).unwrap_or(2) as usize;
        let intra_op_threads = r.integer(&mut s, "intra_op_threads", 1, 256).unwrap_or(1) as usize;
        let queue_depth = r.integer(&mut s, "queue_depth", 1, 65536).unwrap_or(8) as usize;
        let stall_timeout = Duration::from_millis(
            r.integer(&mut s, "stall_timeout_ms", 100, 3_600_000)
                .unwrap_or(10_000) as u64,
        );
        let runtime = RuntimeConfig {
            onnxruntime,
            workers,
            intra_op_threads,
            queue_depth,
            stall_timeout,
        };
        r.finish(s);

        // [failures]
        let mut s = section("failures");
        let dir = r.path(&mut s, "dir", false);
        let verdicts = r.string_list(&mut s, "verdicts").map(|v| {
            let (ok, bad): (Vec<String>, Vec<String>) =
                v.into_iter().partition(|v| v == "fail" || v == "error");
            if !bad.is_empty() {
                let span = s.span_of("verdicts");
                let msg = format!("may hold \"fail\" and \"error\", got {bad:?}");
                r.error("failures.verdicts", span, msg);
            }
            ok
        });
        let quota_mb = r.integer(&mut s, "quota_mb", 1, 1 << 30).unwrap_or(256) as u64;
        let failures = dir.map(|dir| FailuresConfig {
            dir,
            verdicts: verdicts.unwrap_or_else(|| vec!["fail".into(), "error".into()]),
            quota_bytes: quota_mb * 1024 * 1024,
        });
        r.finish(s);

        match (source, model, references) {
            (Some(source), Some(model), Some(references)) if r.errors.is_empty() => Ok(Config {
                path: path.into(),
                source,
                model,
                references,
                scoring,
                output,
                runtime,
                failures,
            }),
            _ => {
                r.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
                Err(ConfigErrors {
                    path: path.into(),
                    errors: r.errors,
                })
            }
        }
    }
}

/// One `[section]` being read; remembers which keys were consumed.
struct Section<'a, 'i> {
    name: &'static str,
    table: Option<&'a DeTable<'i>>,
    used: Vec<&'static str>,
}

impl<'a, 'i> Section<'a, 'i> {
    fn take(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.used.push(key);
        self.table?.get(key)
    }

    fn span_of(&self, key: &str) -> Option<Range<usize>> {
        self.table?.get(key).map(Spanned::span)
    }
}

struct Reader<'t> {
    text: &'t str,
    base: PathBuf,
    errors: Vec<ConfigError>,
}

impl Reader<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].bytes().filter(|&b| b == b'\n').count() + 1
    }

    fn error(&mut self, key: &str, span: Option<Range<usize>>, message: String) {
        let line = span.map(|s| self.line(&s));
        self.errors.push(ConfigError {
            key: key.to_string(),
            line,
            message,
        });
    }

    fn type_error(&mut self, sec: &Section, key: &str, v: &Spanned<DeValue>, want: &str) {
        let got = match v.get_ref() {
            DeValue::String(_) => "a string",
            DeValue::Integer(_) => "an integer",
            DeValue::Float(_) => "a float",
            DeValue::Boolean(_) => "a boolean",
            DeValue::Datetime(_) => "a datetime",
            DeValue::Array(_) => "an array",
            DeValue::Table(_) => "a table",
        };
        self.error(
            &format!("{}.{key}", sec.name),
            Some(v.span()),
            format!("must be {want}, got {got}"),
        );
    }

    /// Reports every key of the section that no reader asked for.
    fn finish(&mut self, sec: Section) {
        let Some(table) = sec.table else { return };
        for (key, _) in table.iter() {
            let name = key.get_ref().as_ref();
            if !sec.used.contains(&name) {
                let known = sec.used.join(", ");
                self.error(
                    &format!("{}.{name}", sec.name),
                    Some(key.span()),
                    format!("unknown key; known keys: {known}"),
                );
            }
        }
    }

    fn string(
        &mut self,
        sec: &mut Section,
        key: &'static str,
    ) -> Option<(String, Option<Range<usize>>)> {
        let v = sec.take(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), Some(v.span()))),
            _ => {
                self.type_error(sec, key, v, "a string");
                None
            }
        }
    }

    fn path(&mut self, sec: &mut Section, key: &'static str, required: bool) -> Option<PathBuf> {
        let present = sec.table.is_some_and(|t| t.get(key).is_some());
        if !present {
            if required {
                self.error(&format!("{}.{key}", sec.name), None, "is required".into());
            }
            sec.used.push(key);
            return None;
        }
        let (s, span) = self.string(sec, key)?;
        if s.is_empty() {
            self.error(
                &format!("{}.{key}", sec.name),
                span,
                "must not be empty".into(),
            );
            return None;
        }
        Some(self.base.join(s))
    }

    fn integer(&mut self, sec: &mut Section, key: &'static str, min: i64, max: i64) -> Option<i64> {
        let v = sec.take(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => {
                i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
            }
            _ => {
                self.type_error(sec, key, v, "an integer");
                return None;
            }
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let msg = format!("must be an integer from {min} to {max}, got {}", show(v));
                self.error(&format!("{}.{key}", sec.name), Some(v.span()), msg);
                None
            }
        }
    }

    fn float(
        &mut self,
        sec: &mut Section,
        key: &'static str,
        ok: impl Fn(f64) -> bool,
        want: &str,
    ) -> Option<f64> {
        let v = sec.take(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            _ => {
                self.type_error(sec, key, v, "a number");
                return None;
            }
        };
        match parsed {
            Some(x) if ok(x) => Some(x),
            _ => {
                let msg = format!("must be {want}, got {}", show(v));
                self.error(&format!("{}.{key}", sec.name), Some(v.span()), msg);
                None
            }
        }
    }

    fn boolean(&mut self, sec: &mut Section, key: &'static str) -> Option<bool> {
        let v = sec.take(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(sec, key, v, "true or false");
                None
            }
        }
    }

    fn string_list(&mut self, sec: &mut Section, key: &'static str) -> Option<Vec<String>> {
        let v = sec.take(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(sec, key, v, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(s.to_string()),
                _ => {
                    self.type_error(sec, key, item, "an array of strings");
                    return None;
                }
            }
        }
        Some(out)
    }

    /// A region of interest: `{ x = 0, y = 0, width = 100, height = 100 }`.
    fn roi(&mut self, sec: &mut Section, key: &'static str) -> Option<Roi> {
        let v = sec.take(key)?;
        let DeValue::Table(t) = v.get_ref() else {
            self.type_error(sec, key, v, "a table { x, y, width, height }");
            return None;
        };
        let mut inner = Section {
            name: "source.roi",
            table: Some(t),
            used: Vec::new(),
        };
        let x = self.integer(&mut inner, "x", 0, 65535);
        let y = self.integer(&mut inner, "y", 0, 65535);
        let w = self.integer(&mut inner, "width", 1, 65535);
        let h = self.integer(&mut inner, "height", 1, 65535);
        self.finish(inner);
        match (x, y, w, h) {
            (Some(x), Some(y), Some(w), Some(h)) => Some(Roi {
                x: x as u32,
                y: y as u32,
                width: w as u32,
                height: h as u32,
            }),
            _ => {
                self.error(
                    &format!("{}.{key}", sec.name),
                    Some(v.span()),
                    "needs integer x, y, width and height".into(),
                );
                None
            }
        }
    }

    /// File permission bits: an octal integer (`0o660`) or an octal string (`"0660"`).
    fn mode(&mut self, sec: &mut Section, key: &'static str) -> Option<u32> {
        let v = sec.take(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => {
                u32::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
            }
            DeValue::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
            _ => None,
        };
        match parsed {
            Some(m) if m <= 0o777 => Some(m),
            _ => {
                let msg = format!(
                    "must be permission bits such as 0o660 or \"0660\", got {}",
                    show(v)
                );
                self.error(&format!("{}.{key}", sec.name), Some(v.span()), msg);
                None
            }
        }
    }
}

fn show(v: &Spanned<DeValue>) -> String {
    match v.get_ref() {
        DeValue::String(s) => format!("{s:?}"),
        DeValue::Integer(i) => i.as_str().to_string(),
        DeValue::Float(f) => f.as_str().to_string(),
        DeValue::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[source]
kind = "replay"
path = "images"
fps = 10

[model]
path = "m.onnx"

[references]
path = "r.safetensors"

[scoring]
k = 3
score = "gamma"

[output]
socket = "/tmp/x.sock"
socket_mode = 0o600

[runtime]
workers = 3
"#;

    #[test]
    fn reads_a_good_config() {
        let c = Config::parse(Path::new("/etc/i/c.toml"), GOOD).unwrap();
        let SourceConfig::Replay(r) = &c.source else {
            panic!("not replay: {:?}", c.source)
        };
        assert_eq!(r.path, Path::new("/etc/i/images"));
        assert_eq!(r.fps, 10.0);
        assert_eq!(c.model.path, Path::new("/etc/i/m.onnx"));
        assert_eq!(c.scoring.k, Some(3));
        assert_eq!(c.scoring.score, Some(ScoreKind::Gamma));
        assert_eq!(c.scoring.threshold, None);
        assert_eq!(c.output.socket.as_deref(), Some(Path::new("/tmp/x.sock")));
        assert_eq!(c.output.socket_mode, 0o600);
        assert_eq!(c.runtime.workers, 3);
        assert_eq!(c.runtime.intra_op_threads, 1);
        assert_eq!(c.runtime.stall_timeout, Duration::from_secs(10));
        let c = Config::parse(
            Path::new("c.toml"),
            &GOOD.replace("workers = 3", "stall_timeout_ms = 2500"),
        )
        .unwrap();
        assert_eq!(c.runtime.stall_timeout, Duration::from_millis(2500));
        let e = Config::parse(
            Path::new("c.toml"),
            &GOOD.replace("workers = 3", "stall_timeout_ms = 5"),
        )
        .unwrap_err();
        assert_eq!(e.errors[0].key, "runtime.stall_timeout_ms", "{e}");
    }

    #[test]
    fn collects_every_problem_with_key_and_line() {
        let bad = GOOD
            .replace("k = 3", "k = 0\nbogus = 1")
            .replace("fps = 10", "fps = \"fast\"")
            .replace("[runtime]", "[runtim]");
        let e = Config::parse(Path::new("c.toml"), &bad).unwrap_err();
        let keys: Vec<_> = e.errors.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"scoring.k"), "{e}");
        assert!(keys.contains(&"scoring.bogus"), "{e}");
        assert!(keys.contains(&"source.fps"), "{e}");
        assert!(keys.contains(&"runtim"), "{e}");
        let k = e.errors.iter().find(|e| e.key == "scoring.k").unwrap();
        assert_eq!(
            k.line,
            Some(bad.lines().position(|l| l == "k = 0").unwrap() + 1)
        );
        assert_eq!(e.errors.len(), 4, "{e}");
    }

    #[test]
    fn missing_required_keys_are_named() {
        let e = Config::parse(Path::new("c.toml"), "[source]\nkind = \"replay\"\n").unwrap_err();
        let keys: Vec<_> = e.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["source.path", "model.path", "references.path"],
            "{e}"
        );
    }

    #[test]
    fn camera_sources() {
        let genicam = GOOD.replace(
            "kind = \"replay\"\npath = \"images\"\nfps = 10",
            "kind = \"genicam\"\ndevice = \"127.0.0.1\"\npixel_format = \"Mono8\"\nexposure_us = 5000\nframe_timeout_ms = 1500\nacquisition = \"software-trigger\"\nroi = { x = 10, y = 20, width = 100, height = 50 }",
        );
        let c = Config::parse(Path::new("c.toml"), &genicam).unwrap();
        let SourceConfig::Camera(cam) = &c.source else {
            panic!("not a camera: {:?}", c.source)
        };
        assert_eq!(cam.kind, CameraKind::GenIcam);
        assert_eq!(cam.device.as_deref(), Some("127.0.0.1"));
        assert_eq!(cam.pixel_format.as_deref(), Some("mono8"));
        assert_eq!(cam.exposure_us, Some(5000.0));
        assert_eq!(cam.frame_timeout, Duration::from_millis(1500));
        assert_eq!(cam.acquisition, Acquisition::SoftwareTrigger);
        assert_eq!(
            cam.roi,
            Some(Roi {
                x: 10,
                y: 20,
                width: 100,
                height: 50
            })
        );
        assert!(!cam.packet_socket);

        // GenICam-only keys and formats are errors for a UVC camera
        let uvc = genicam.replace("kind = \"genicam\"", "kind = \"camera\"");
        let e = Config::parse(Path::new("c.toml"), &uvc).unwrap_err();
        let keys: Vec<_> = e.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "source.pixel_format",
                "source.exposure_us",
                "source.acquisition"
            ],
            "{e}"
        );
    }

    #[test]
    fn shipped_configs_are_valid() {
        for (name, text) in [
            ("inspectord.toml", include_str!("../config/inspectord.toml")),
            (
                "genicam.example.toml",
                include_str!("../config/genicam.example.toml"),
            ),
            (
                "uvc.example.toml",
                include_str!("../config/uvc.example.toml"),
            ),
            (
                "inspectord.production.toml",
                include_str!("../config/inspectord.production.toml"),
            ),
        ] {
            if let Err(e) = Config::parse(Path::new(name), text) {
                panic!("{e}");
            }
        }
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = Config::parse(Path::new("c.toml"), "[source]\npath = \n").unwrap_err();
        assert_eq!(e.errors[0].key, "(syntax)");
        assert_eq!(e.errors[0].line, Some(2), "{e}");
    }
}
