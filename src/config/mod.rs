//! The config compiler: raw TOML → validated [`Config`], once, collecting *every* problem with its
//! dotted key path and line.
//!
//! `inspectord check` runs exactly [`Config::load`] (plus loading the model and references).
//! Unknown sections and keys are errors. Relative paths are resolved against the directory of
//! the config file, so a config works from any working directory. Things that are accepted but
//! deserve attention (a deprecated alias, a key the back end ignores) land in
//! [`Config::warnings`].
//!
//! - this file: the validated types, [`Config::load`] / [`Config::parse`], the error and warning
//!   types, and [`defaults`], the one home of every default value;
//! - `reader.rs`: walking the TOML document (the only place that knows the TOML crate);
//! - `sections.rs`: one function per section, turning its keys into a validated struct.

pub mod accounts;
mod bridge;
mod gateway;
mod reader;
mod sections;

pub use bridge::{BridgeConfig, WordOrder};
pub use gateway::{GatewayConfig, MqttConfig};

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::score::ScoreKind;
use crate::verdict::VerdictKind;

/// Every default value of the config, in one place.
pub mod defaults {
    use std::time::Duration;

    use super::{Acquisition, Overload, TriggerMode};
    use crate::score::ScoreKind;
    use crate::soart3::Orders;
    use crate::verdict::VerdictKind;

    /// Scoring where neither the config's `[scoring]` nor the reference file says (`enroll`'s
    /// settings, and a reference file without those keys).
    pub const SCORE: ScoreKind = ScoreKind::Eta;
    pub const K: usize = 1;
    /// SOART3's (p1, p2) = (2, 6).
    pub const ORDERS: Orders = Orders::DEFAULT;

    /// `[source] kind` when absent.
    pub const SOURCE_KIND: &str = "replay";
    /// Replay pace (0 = as fast as the pipeline takes frames).
    pub const REPLAY_FPS: f64 = 0.0;
    /// The slowest replay pace accepted: one frame an hour. Any rate at or above it has an
    /// interval (1 / fps) that a `Duration` holds exactly enough and a sleep can wait for; a
    /// rate of 1e-300 would be an interval of 1e300 seconds.
    pub const REPLAY_FPS_MIN: f64 = 1.0 / 3600.0;
    pub const REPLAY_LOOP: bool = false;
    /// Largest replay file read (MiB); a bigger one is an `error` verdict, never read.
    pub const REPLAY_MAX_FILE_MB: u64 = 64;
    /// Image file extensions replay takes from a directory.
    pub const EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "pgm", "ppm"];

    /// Inspect every Nth camera frame.
    pub const EVERY_NTH: u32 = 1;
    pub const FRAME_TIMEOUT: Duration = Duration::from_millis(2000);
    pub const OPEN_TIMEOUT: Duration = Duration::from_millis(10_000);
    pub const RECONNECT_INITIAL: Duration = Duration::from_millis(500);
    pub const RECONNECT_MAX: Duration = Duration::from_millis(10_000);
    /// A UVC request constrained by only some of width, height and frame rate asks for these
    /// for the others.
    pub const UVC_WIDTH: u32 = 640;
    pub const UVC_HEIGHT: u32 = 480;
    pub const UVC_FRAME_RATE: u32 = 30;
    /// GenICam sensor region offset.
    pub const OFFSET: u32 = 0;
    pub const PACKET_SOCKET: bool = false;
    pub const ACQUISITION: Acquisition = Acquisition::FreeRun;
    /// `[source] trigger`: frames as fast as the source gives them.
    pub const TRIGGER: TriggerMode = TriggerMode::FreeRun;
    /// An acknowledged trigger whose frame has not come within this becomes a `skipped`
    /// verdict.
    pub const TRIGGER_TIMEOUT: Duration = Duration::from_millis(1000);

    pub const SOCKET_MODE: u32 = 0o660;
    /// Bytes of `sun_path` in a Unix socket address on Linux, the terminating NUL included:
    /// `output.socket` may be at most one byte shorter, or binding it fails.
    pub const SUN_PATH_LEN: usize = 108;
    pub const CLIENT_BUFFER: usize = 1024;
    pub const MAX_CLIENTS: usize = 16;
    /// Verdict and status lines kept for `subscribe` (a minute at 100 frames/s).
    pub const RETAIN: usize = 6000;
    pub const RETAIN_MAX: i64 = 1_000_000;
    /// Between heartbeats to every client; zero disables them.
    pub const HEARTBEAT: Duration = Duration::from_millis(1000);
    /// Commands one client may send per second (its burst: twice that).
    pub const COMMANDS_PER_SECOND: u32 = 200;

    pub const WORKERS: usize = 2;
    pub const INTRA_OP_THREADS: usize = 1;
    pub const QUEUE_DEPTH: usize = 8;
    pub const STALL_TIMEOUT: Duration = Duration::from_millis(10_000);
    /// A frame that finds the workers' queue full waits (back-pressure).
    pub const OVERLOAD: Overload = Overload::Wait;
    /// Largest image decoded or preprocessed (pixels); a bigger one is an `error` verdict,
    /// refused from its header before any pixel memory is allocated.
    pub const MAX_IMAGE_WIDTH: u32 = 8192;
    pub const MAX_IMAGE_HEIGHT: u32 = 8192;

    pub const FAILURE_VERDICTS: [VerdictKind; 2] = [VerdictKind::Fail, VerdictKind::Error];
    pub const FAILURE_QUOTA_MB: u64 = 256;

    /// Largest input files, checked before they are read (a device or a runaway file is
    /// refused rather than read until memory runs out). Generous: far above any real file.
    /// The config file itself.
    pub const CONFIG_MAX_BYTES: u64 = 1 << 20;

    /// `inspectord bridge modbus`: `[daemon] socket`.
    pub const BRIDGE_SOCKET: &str = "/run/inspectord/verdicts.sock";
    /// `[daemon] source`: who the bridge is in `report` commands.
    pub const BRIDGE_SOURCE: &str = "bridge-modbus";
    pub const BRIDGE_RECONNECT_INITIAL: Duration = Duration::from_millis(200);
    pub const BRIDGE_RECONNECT_MAX: Duration = Duration::from_millis(5000);
    /// Longest reconnect wait accepted (a minute).
    pub const BRIDGE_RECONNECT_CAP_MS: u64 = 60_000;
    /// `[modbus] listen` for a manual run (the .socket unit passes port 502).
    pub const BRIDGE_LISTEN: std::net::SocketAddr = std::net::SocketAddr::V4(
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 1502),
    );
    pub const BRIDGE_UNIT_ID: u8 = 1;
    /// `[modbus] buffer`: results held with BufferResultsEnable.
    pub const BRIDGE_BUFFER: usize = 8;
    pub const BRIDGE_PLC_TIMEOUT: Duration = Duration::from_millis(3000);
    /// `inspectord gateway`: `[http] listen`, localhost only unless configured otherwise.
    pub const GATEWAY_LISTEN: std::net::SocketAddr = std::net::SocketAddr::V4(
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9851),
    );
    /// `[daemon] status_poll_ms`: how fresh `/metrics` and the page are.
    pub const GATEWAY_STATUS_POLL: Duration = Duration::from_millis(1000);
    /// `[http] chart_points`: scores in the page's chart.
    pub const GATEWAY_CHART_POINTS: usize = 600;
    /// `[http] gallery`: failed frames shown.
    pub const GATEWAY_GALLERY: usize = 12;
    /// `[http] max_clients`: HTTP connections at once (page streams included).
    pub const GATEWAY_MAX_CLIENTS: usize = 32;
    /// `[mqtt]` defaults.
    pub const MQTT_TOPIC_PREFIX: &str = "inspectord";
    pub const MQTT_KEEP_ALIVE: Duration = Duration::from_secs(10);
    pub const MQTT_MAX_INFLIGHT: usize = 64;
    pub const MQTT_OUTBOX: usize = 10_000;
    pub const MQTT_RECONNECT_INITIAL: Duration = Duration::from_millis(200);
    pub const MQTT_RECONNECT_MAX: Duration = Duration::from_millis(30_000);
    pub const MQTT_STATE_FILE: &str = "/var/lib/inspectord-gateway/mqtt.state";
    /// An ONNX model (protobuf cannot exceed 2 GiB anyway).
    pub const MODEL_MAX_BYTES: u64 = 2 << 30;
    /// A reference set (a million 256-dimensional `f32` embeddings are 1 GiB).
    pub const REFERENCES_MAX_BYTES: u64 = 1 << 30;
    /// A replay list file (one path per line).
    pub const REPLAY_LIST_MAX_BYTES: u64 = 16 << 20;

    /// [`EXTENSIONS`] as owned strings.
    pub fn extensions() -> Vec<String> {
        EXTENSIONS.map(String::from).to_vec()
    }
}

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
    pub control: ControlConfig,
    pub runtime: RuntimeConfig,
    /// Failure-image logging; `None` = off.
    pub failures: Option<FailuresConfig>,
    /// Accepted, but worth a look (a deprecated alias, a key that has no effect); in file order.
    pub warnings: Vec<ConfigWarning>,
}

/// Where and which failure images are saved.
#[derive(Debug, Clone, PartialEq)]
pub struct FailuresConfig {
    pub dir: PathBuf,
    /// The verdicts whose frames are saved: [`VerdictKind::Fail`] and/or [`VerdictKind::Error`].
    pub verdicts: Vec<VerdictKind>,
    pub quota_bytes: u64,
}

/// Where frames come from: `[source] kind = "replay" | "uvc" | "genicam"`.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    Replay(ReplayConfig),
    /// `kind = "uvc"` (also accepted: the deprecated `kind = "camera"`, with a warning).
    Uvc(UvcConfig),
    /// `kind = "genicam"`.
    Genicam(GenicamConfig),
}

impl SourceConfig {
    /// When frames are taken (`trigger`, `trigger_timeout_ms`): every source kind has them.
    pub fn trigger(&self) -> &TriggerConfig {
        match self {
            SourceConfig::Replay(r) => &r.trigger,
            SourceConfig::Uvc(c) => &c.camera.trigger,
            SourceConfig::Genicam(c) => &c.camera.trigger,
        }
    }

    /// The keys every camera has; `None` for a replay source.
    pub fn camera(&self) -> Option<&CameraConfig> {
        match self {
            SourceConfig::Replay(_) => None,
            SourceConfig::Uvc(c) => Some(&c.camera),
            SourceConfig::Genicam(c) => Some(&c.camera),
        }
    }
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
    /// Largest file read (bytes, `max_file_mb`); only regular files are read at all.
    pub max_file_bytes: u64,
    /// Free-run (at `fps`) or one image per trigger command.
    pub trigger: TriggerConfig,
}

/// `[source] trigger` and `trigger_timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerConfig {
    pub mode: TriggerMode,
    /// Trigger mode: an acknowledged trigger whose frame has not come within this becomes a
    /// `skipped` verdict.
    pub timeout: Duration,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        Self {
            mode: defaults::TRIGGER,
            timeout: defaults::TRIGGER_TIMEOUT,
        }
    }
}

/// `[source] trigger`: when the source takes a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    /// As fast as the source gives them (a replay's pace, a camera's frame rate).
    FreeRun,
    /// One frame per `trigger` command from a socket client.
    Command,
}

impl TriggerMode {
    pub const ALL: [TriggerMode; 2] = [Self::FreeRun, Self::Command];

    /// The config's (and the wire's) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FreeRun => "free-run",
            Self::Command => "command",
        }
    }
}

/// `[runtime] overload`: what a free-running source does with a frame that finds the workers'
/// queue full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// Wait for room (back-pressure: a camera's driver buffers or drops frames).
    Wait,
    /// Emit the frame as a `skipped` verdict ("overload: N frames queued") at once.
    Skip,
}

impl Overload {
    pub const ALL: [Overload; 2] = [Self::Wait, Self::Skip];

    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wait => "wait",
            Self::Skip => "skip",
        }
    }
}

impl ReplayConfig {
    /// Replay of `path` with the defaults: as fast as possible, once, the default extensions.
    pub fn of(path: PathBuf) -> Self {
        Self {
            path,
            fps: defaults::REPLAY_FPS,
            looping: defaults::REPLAY_LOOP,
            extensions: defaults::extensions(),
            max_file_bytes: defaults::REPLAY_MAX_FILE_MB * 1024 * 1024,
            trigger: TriggerConfig::default(),
        }
    }
}

/// The keys every camera back end has: which device, the requested mode, and how the pipeline
/// supervises it.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    /// UVC: index, `/dev/videoN`, a `/dev/v4l/by-id/...` path or a name substring;
    /// GenICam: device id, serial or address. `None` = the first camera found.
    pub device: Option<String>,
    /// Requested resolution (GenICam: the sensor region's size).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Requested frame rate (frames per second).
    pub frame_rate: Option<f64>,
    /// Inspect every Nth frame.
    pub every_nth: u32,
    /// A camera silent this long is lost.
    pub frame_timeout: Duration,
    /// Extra time allowed for the first frame after opening.
    pub open_timeout: Duration,
    /// Reconnect backoff: first wait, doubled up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Software region of interest, cropped before preprocessing.
    pub roi: Option<Roi>,
    /// Free-run (at the camera's rate) or one frame per trigger command.
    pub trigger: TriggerConfig,
}

/// A USB (UVC / V4L2) camera through nokhwa.
#[derive(Debug, Clone, PartialEq)]
pub struct UvcConfig {
    pub camera: CameraConfig,
    /// `None` = try each convertible format, MJPEG first.
    pub pixel_format: Option<UvcPixelFormat>,
}

/// A GenICam (GigE Vision, USB3 Vision) camera through Aravis.
#[derive(Debug, Clone, PartialEq)]
pub struct GenicamConfig {
    pub camera: CameraConfig,
    /// `None` = ask for Mono8 but keep the camera's format if it refuses.
    pub pixel_format: Option<GenicamPixelFormat>,
    /// Sensor region offset.
    pub offset_x: u32,
    pub offset_y: u32,
    /// Exposure time in microseconds.
    pub exposure_us: Option<f64>,
    /// Gain (camera units, usually dB).
    pub gain: Option<f64>,
    /// GigE Vision: use the Linux packet socket for the stream (off by default: on some hosts no
    /// frames arrive with it).
    pub packet_socket: bool,
    pub acquisition: Acquisition,
}

/// The raw formats a UVC camera is read in (each converted by `source::pixel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UvcPixelFormat {
    Mjpeg,
    Yuyv,
    Grey,
}

impl UvcPixelFormat {
    /// In the order tried when none is configured (MJPEG first: the least USB bandwidth).
    pub const ALL: [UvcPixelFormat; 3] = [Self::Mjpeg, Self::Yuyv, Self::Grey];

    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mjpeg => "mjpeg",
            Self::Yuyv => "yuyv",
            Self::Grey => "grey",
        }
    }
}

impl fmt::Display for UvcPixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mjpeg => "MJPEG",
            Self::Yuyv => "YUYV",
            Self::Grey => "GREY",
        })
    }
}

/// The raw formats a GenICam camera is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenicamPixelFormat {
    Mono8,
}

impl GenicamPixelFormat {
    pub const ALL: [GenicamPixelFormat; 1] = [Self::Mono8];

    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mono8 => "mono8",
        }
    }
}

/// How frames are acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquisition {
    /// The camera streams at its frame rate.
    FreeRun,
    /// One frame per software trigger (GenICam `TriggerSoftware`).
    SoftwareTrigger,
}

impl Acquisition {
    pub const ALL: [Acquisition; 2] = [Self::FreeRun, Self::SoftwareTrigger];

    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FreeRun => "free-run",
            Self::SoftwareTrigger => "software-trigger",
        }
    }
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
    defaults::extensions()
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
    /// Verdict and status lines kept for `subscribe`.
    pub retain: usize,
    /// Between heartbeats; `None` = no heartbeats.
    pub heartbeat: Option<Duration>,
}

/// Who may command the daemon through the socket (`trigger`, `report`), and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    /// User ids allowed to command (names resolved when the config is read).
    pub users: Vec<u32>,
    /// Group ids (primary or supplementary) allowed to command.
    pub groups: Vec<u32>,
    /// Commands one client may send per second; the burst is twice that.
    pub commands_per_second: u32,
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
    /// What a free-running source does with a frame that finds the queue full.
    pub overload: Overload,
    /// A stage busy this long on one frame counts as wedged: the systemd watchdog is no longer
    /// fed, so systemd restarts the daemon.
    pub stall_timeout: Duration,
    /// Largest image decoded or preprocessed, in pixels (`max_image_width`, `max_image_height`).
    pub max_image_width: u32,
    pub max_image_height: u32,
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

/// Something accepted in a config file that deserves attention.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigWarning {
    /// Dotted key path, e.g. `source.kind`.
    pub key: String,
    /// 1-based line.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    /// `<key> (line N): <message>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
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

/// A config file's text (a regular file within the size cap), or the one error saying why not.
pub(crate) fn read_config_file(path: &Path) -> Result<String, ConfigErrors> {
    crate::input_file::read_to_string(path, defaults::CONFIG_MAX_BYTES).map_err(|e| ConfigErrors {
        path: path.into(),
        errors: vec![ConfigError {
            key: "(file)".into(),
            line: None,
            message: format!("cannot read: {}", crate::error::chain(&e)),
        }],
    })
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::parse(path, &read_config_file(path)?)
    }

    /// Validates config text; `path` names the file and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let fail = |errors| ConfigErrors {
            path: path.into(),
            errors,
        };
        let doc = reader::Document::parse(text).map_err(|e| fail(vec![e]))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut r = reader::Reader::new(text, base);
        r.check_sections(&doc, sections::NAMES);
        let source = sections::source(&mut r, doc.section("source"));
        let model = sections::model(&mut r, doc.section("model"));
        let references = sections::references(&mut r, doc.section("references"));
        let scoring = sections::scoring(&mut r, doc.section("scoring"));
        let output = sections::output(&mut r, doc.section("output"));
        let control = sections::control(&mut r, doc.section("control"));
        let runtime = sections::runtime(&mut r, doc.section("runtime"));
        let failures = sections::failures(&mut r, doc.section("failures"));
        let (errors, warnings) = r.finish_document();
        match (source, model, references) {
            (Some(source), Some(model), Some(references)) if errors.is_empty() => Ok(Config {
                path: path.into(),
                source,
                model,
                references,
                scoring,
                output,
                control,
                runtime,
                failures,
                warnings,
            }),
            _ => Err(fail(errors)),
        }
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
        let SourceConfig::Genicam(cam) = &c.source else {
            panic!("not a GenICam camera: {:?}", c.source)
        };
        assert_eq!(cam.camera.device.as_deref(), Some("127.0.0.1"));
        assert_eq!(cam.pixel_format, Some(GenicamPixelFormat::Mono8));
        assert_eq!(cam.exposure_us, Some(5000.0));
        assert_eq!(cam.camera.frame_timeout, Duration::from_millis(1500));
        assert_eq!(cam.camera.open_timeout, defaults::OPEN_TIMEOUT);
        assert_eq!(cam.acquisition, Acquisition::SoftwareTrigger);
        assert_eq!(
            cam.camera.roi,
            Some(Roi {
                x: 10,
                y: 20,
                width: 100,
                height: 50
            })
        );
        assert!(!cam.packet_socket);
        assert_eq!(c.source.camera(), Some(&cam.camera));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // GenICam-only keys and formats are errors for a UVC camera
        let uvc = genicam.replace("kind = \"genicam\"", "kind = \"uvc\"");
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
        assert!(
            e.errors[1].message.contains("only kind = \"genicam\""),
            "{e}"
        );

        let uvc = GOOD.replace(
            "kind = \"replay\"\npath = \"images\"\nfps = 10",
            "kind = \"uvc\"\ndevice = \"/dev/video2\"\npixel_format = \"YUYV\"\nwidth = 1280\nacquisition = \"free-run\"",
        );
        let c = Config::parse(Path::new("c.toml"), &uvc).unwrap();
        let SourceConfig::Uvc(cam) = &c.source else {
            panic!("not a UVC camera: {:?}", c.source)
        };
        assert_eq!(cam.pixel_format, Some(UvcPixelFormat::Yuyv));
        assert_eq!(cam.camera.width, Some(1280));
        assert_eq!(cam.camera.every_nth, defaults::EVERY_NTH);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        for bad in ["mono8", "gray", "y8"] {
            let e = Config::parse(
                Path::new("c.toml"),
                &uvc.replace("\"YUYV\"", &format!("{bad:?}")),
            )
            .unwrap_err();
            assert_eq!(e.errors[0].key, "source.pixel_format", "{e}");
        }
    }

    #[test]
    fn camera_kind_is_a_deprecated_alias_of_uvc_with_a_warning() {
        let text = GOOD.replace(
            "kind = \"replay\"\npath = \"images\"\nfps = 10",
            "kind = \"camera\"\ndevice = \"0\"\noffset_x = 8",
        );
        let c = Config::parse(Path::new("c.toml"), &text).unwrap();
        let SourceConfig::Uvc(cam) = &c.source else {
            panic!("kind = camera is not UVC: {:?}", c.source)
        };
        assert_eq!(cam.camera.device.as_deref(), Some("0"));
        let line = |l: &str| text.lines().position(|x| x == l).map(|i| i + 1);
        assert_eq!(
            c.warnings
                .iter()
                .map(|w| (w.key.as_str(), w.line))
                .collect::<Vec<_>>(),
            [
                ("source.kind", line("kind = \"camera\"")),
                ("source.offset_x", line("offset_x = 8")),
            ]
        );
        assert!(
            c.warnings[0].message.contains("kind = \"uvc\""),
            "{}",
            c.warnings[0]
        );
        assert_eq!(
            c.warnings[0].to_string(),
            format!(
                "source.kind (line {}): {}",
                line("kind = \"camera\"").unwrap(),
                c.warnings[0].message
            )
        );
        // Same config under the new name: same source, no warning about the kind.
        let renamed =
            Config::parse(Path::new("c.toml"), &text.replace("\"camera\"", "\"uvc\"")).unwrap();
        assert_eq!(renamed.source, c.source);
        assert_eq!(renamed.warnings.len(), 1);
    }

    #[test]
    fn control_names_resolve_and_unknown_ones_are_errors() {
        let c = Config::parse(Path::new("/c.toml"), GOOD).unwrap();
        assert_eq!(c.output.retain, defaults::RETAIN);
        assert_eq!(c.output.heartbeat, Some(defaults::HEARTBEAT));
        assert!(c.control.users.is_empty() && c.control.groups.is_empty());
        assert_eq!(c.control.commands_per_second, defaults::COMMANDS_PER_SECOND);
        let text = format!(
            "{GOOD}\n[control]\nusers = [\"root\", 1234]\ngroups = [\"root\"]\ncommands_per_second = 5\n"
        )
        .replace("[output]\n", "[output]\nretain = 10\nheartbeat_ms = 0\n");
        let c = Config::parse(Path::new("/c.toml"), &text).unwrap();
        assert_eq!((c.output.retain, c.output.heartbeat), (10, None));
        assert_eq!(c.control.users, vec![0, 1234]);
        assert_eq!(c.control.groups, vec![0]);
        assert_eq!(c.control.commands_per_second, 5);
        let bad = format!(
            "{GOOD}\n[control]\nusers = [\"no-such-user-x\"]\ngroups = [\"no-such-group-x\"]\n"
        )
        .replace("[output]\n", "[output]\nretain = 0\n");
        let msg = Config::parse(Path::new("/c.toml"), &bad)
            .unwrap_err()
            .to_string();
        for needle in [
            "control.users",
            "no-such-user-x",
            "control.groups",
            "output.retain",
        ] {
            assert!(msg.contains(needle), "{needle} not in {msg}");
        }
    }

    #[test]
    fn defaults_come_from_one_place() {
        let c = Config::parse(Path::new("/c.toml"), GOOD).unwrap();
        let SourceConfig::Replay(r) = &c.source else {
            panic!()
        };
        assert_eq!(r.extensions, defaults::extensions());
        assert!(!r.looping);
        assert_eq!(c.output.client_buffer, defaults::CLIENT_BUFFER);
        assert_eq!(c.runtime.queue_depth, defaults::QUEUE_DEPTH);
        assert_eq!(
            (c.runtime.max_image_width, c.runtime.max_image_height),
            (defaults::MAX_IMAGE_WIDTH, defaults::MAX_IMAGE_HEIGHT)
        );
        assert_eq!(r.max_file_bytes, defaults::REPLAY_MAX_FILE_MB << 20);
        let limited = GOOD
            .replace("fps = 10", "fps = 10\nmax_file_mb = 2")
            .replace(
                "workers = 3",
                "max_image_width = 640\nmax_image_height = 480",
            );
        let c = Config::parse(Path::new("/c.toml"), &limited).unwrap();
        let SourceConfig::Replay(r) = &c.source else {
            panic!()
        };
        assert_eq!(r.max_file_bytes, 2 << 20);
        assert_eq!(
            (c.runtime.max_image_width, c.runtime.max_image_height),
            (640, 480)
        );
        assert_eq!(c.failures, None);
        let with_failures = format!("{GOOD}\n[failures]\ndir = \"f\"\n");
        let f = Config::parse(Path::new("/c.toml"), &with_failures)
            .unwrap()
            .failures
            .unwrap();
        assert_eq!(f.verdicts, [VerdictKind::Fail, VerdictKind::Error]);
        assert_eq!(f.quota_bytes, defaults::FAILURE_QUOTA_MB * 1024 * 1024);
        let e = Config::parse(
            Path::new("/c.toml"),
            &format!("{with_failures}verdicts = [\"pass\", \"error\"]\n"),
        )
        .unwrap_err();
        assert_eq!(e.errors[0].key, "failures.verdicts", "{e}");
        let one = Config::parse(
            Path::new("/c.toml"),
            &format!("{with_failures}verdicts = [\"error\"]\n"),
        )
        .unwrap();
        assert_eq!(one.failures.unwrap().verdicts, [VerdictKind::Error]);
    }

    #[test]
    fn shipped_configs_are_valid() {
        for (name, text) in [
            (
                "inspectord.toml",
                include_str!("../../config/inspectord.toml"),
            ),
            (
                "genicam.example.toml",
                include_str!("../../config/genicam.example.toml"),
            ),
            (
                "uvc.example.toml",
                include_str!("../../config/uvc.example.toml"),
            ),
            (
                "inspectord.production.toml",
                include_str!("../../config/inspectord.production.toml"),
            ),
        ] {
            match Config::parse(Path::new(name), text) {
                Ok(c) => assert!(c.warnings.is_empty(), "{name}: {:?}", c.warnings),
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Values `run` cannot use are refused here, by key, with the reason.
    #[test]
    fn refuses_tiny_fps_no_extensions_long_socket_paths_and_special_mode_bits() {
        let refused = |from: &str, to: &str, key: &str| {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "{from:?} not in the config");
            match Config::parse(Path::new("/etc/i/c.toml"), &text) {
                Ok(_) => panic!("{to:?} accepted"),
                Err(e) => {
                    assert_eq!(e.errors.len(), 1, "{e}");
                    assert_eq!(e.errors[0].key, key, "{e}");
                    e.errors.into_iter().next().unwrap().message
                }
            }
        };
        for fps in ["1e-300", "5e-324", "1e-19", "1e-6", "-1", "inf", "nan"] {
            refused("fps = 10", &format!("fps = {fps}"), "source.fps");
        }
        for fps in ["0", "0.001", "1000"] {
            let text = GOOD.replace("fps = 10", &format!("fps = {fps}"));
            Config::parse(Path::new("c.toml"), &text).unwrap();
        }
        let msg = refused("fps = 10", "fps = 10\nextensions = []", "source.extensions");
        assert!(msg.contains("at least one"), "{msg}");
        let long = format!("/run/{}.sock", "s".repeat(98));
        assert_eq!(long.len(), 108);
        let msg = refused("\"/tmp/x.sock\"", &format!("{long:?}"), "output.socket");
        assert!(msg.contains("108") && msg.contains("107"), "{msg}");
        // 107 bytes and the terminating NUL fit.
        let text = GOOD.replace("\"/tmp/x.sock\"", &format!("{:?}", &long[1..]));
        Config::parse(Path::new("c.toml"), &text).unwrap();
        let msg = refused("0o600", "0o7777", "output.socket_mode");
        assert!(msg.contains("0o7777") && msg.contains("setuid"), "{msg}");
        let msg = refused("0o600", "\"7777\"", "output.socket_mode");
        assert!(msg.contains("0o7777"), "{msg}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = Config::parse(Path::new("c.toml"), "[source]\npath = \n").unwrap_err();
        assert_eq!(e.errors[0].key, "(syntax)");
        assert_eq!(e.errors[0].line, Some(2), "{e}");
    }

    #[test]
    fn trigger_and_overload_keys() {
        // Defaults: free-run, 1000 ms, wait.
        let c = Config::parse(Path::new("c.toml"), GOOD).unwrap();
        assert_eq!(*c.source.trigger(), TriggerConfig::default());
        assert_eq!(c.source.trigger().mode, TriggerMode::FreeRun);
        assert_eq!(c.source.trigger().timeout, defaults::TRIGGER_TIMEOUT);
        assert_eq!(c.runtime.overload, Overload::Wait);

        let text = GOOD
            .replace(
                "fps = 10",
                "fps = 0\ntrigger = \"command\"\ntrigger_timeout_ms = 250",
            )
            .replace("workers = 3", "workers = 3\noverload = \"skip\"");
        let c = Config::parse(Path::new("c.toml"), &text).unwrap();
        assert_eq!(c.source.trigger().mode, TriggerMode::Command);
        assert_eq!(c.source.trigger().timeout, Duration::from_millis(250));
        assert_eq!(c.runtime.overload, Overload::Skip);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        // Bad values name their key paths, all at once.
        let bad = GOOD
            .replace(
                "fps = 10",
                "fps = 10\ntrigger = \"plc\"\ntrigger_timeout_ms = 0",
            )
            .replace("workers = 3", "overload = \"drop\"");
        let e = Config::parse(Path::new("c.toml"), &bad).unwrap_err();
        let keys: Vec<_> = e.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "source.trigger",
                "source.trigger_timeout_ms",
                "runtime.overload"
            ],
            "{e}"
        );
        assert!(
            e.errors[0].message.contains("\"free-run\" or \"command\""),
            "{e}"
        );

        // Paced replay in trigger mode delays triggers: a warning.
        let paced = GOOD.replace("fps = 10", "fps = 10\ntrigger = \"command\"");
        let c = Config::parse(Path::new("c.toml"), &paced).unwrap();
        let keys: Vec<_> = c.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["source.fps"]);

        // A timeout without trigger mode has no effect: a warning.
        let idle = GOOD.replace("fps = 10", "fps = 10\ntrigger_timeout_ms = 500");
        let c = Config::parse(Path::new("c.toml"), &idle).unwrap();
        let keys: Vec<_> = c.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["source.trigger_timeout_ms"]);

        // Cameras: the same keys; GenICam command mode wants a software trigger, and every_nth
        // means nothing per trigger: warnings.
        let genicam = GOOD.replace(
            "kind = \"replay\"\npath = \"images\"\nfps = 10",
            "kind = \"genicam\"\ntrigger = \"command\"\nacquisition = \"software-trigger\"",
        );
        let c = Config::parse(Path::new("c.toml"), &genicam).unwrap();
        assert_eq!(c.source.trigger().mode, TriggerMode::Command);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let streaming = genicam.replace("\"software-trigger\"", "\"free-run\"\nevery_nth = 2");
        let c = Config::parse(Path::new("c.toml"), &streaming).unwrap();
        let keys: Vec<_> = c.warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(
            keys,
            ["source.trigger", "source.every_nth"],
            "{:?}",
            c.warnings
        );
        let uvc = GOOD.replace(
            "kind = \"replay\"\npath = \"images\"\nfps = 10",
            "kind = \"uvc\"\ntrigger = \"command\"\ntrigger_timeout_ms = 2000",
        );
        let c = Config::parse(Path::new("c.toml"), &uvc).unwrap();
        assert_eq!(c.source.trigger().timeout, Duration::from_millis(2000));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }
}
